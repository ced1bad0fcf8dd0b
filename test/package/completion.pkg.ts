// The shell completions the package ships (rendered by scripts/completions.mjs from the commander
// tree), driven in real bash, zsh and fish against a fixture host: what TAB offers.
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Fixture } from '../support/fixture';

const repo = path.join(__dirname, '../../..');
const version: string = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')).version;
const stage = path.join(repo, 'build/deb', `vfioctl-${version}`, 'stage');
const BASH = path.join(stage, 'usr/share/bash-completion/completions/vfioctl');
const ZSH = path.join(stage, 'usr/share/zsh/vendor-completions/_vfioctl');
const FISH = path.join(stage, 'usr/share/fish/vendor_completions.d/vfioctl.fish');

const f = Fixture.create('vfioctl-completion-');
f.kernel('6.1.0-test').kernel('6.12.0-test');
f.device({ address: '0000:00:02.0', vendor: '8086', device: '10d3', driver: 'e1000e', iommuGroup: '2' });
f.device({ address: '0000:03:00.1', vendor: '1af4', device: '1041', driver: null, iommuGroup: '3' });
f.driver('e1000e').driver('vfio-pci', 'vfio_pci');
after(() => f.cleanup());

const env = { PATH: '/usr/bin:/bin', HOME: f.dir, LANG: 'C.UTF-8' };
const lines = (s: string) => s.split('\n').filter(Boolean).map((l) => l.split('\t')[0]!).sort();

/** What bash's TAB offers for LINE: the function runs as bash's programmable completion calls it. */
function bash(line: string, extra: NodeJS.ProcessEnv = {}): string[] {
  const script = 'source "$1"; COMP_LINE=$2; COMP_POINT=${#2}; read -ra COMP_WORDS <<<"$2"; COMP_CWORD=${#COMP_WORDS[@]}; "$(complete -p vfioctl | sed "s/.*-F \\([^ ]*\\) .*/\\1/")"; printf "%s\\n" "${COMPREPLY[@]}"';
  const r = spawnSync('bash', ['--norc', '--noprofile', '-c', script, 'bash', BASH, line], { encoding: 'utf8', env: { ...env, ...extra } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  return lines(r.stdout);
}

/** What fish's own completion engine offers for LINE (complete -C). */
function fish(line: string, extra: NodeJS.ProcessEnv = {}): string[] {
  const r = spawnSync('fish', ['--no-config', '-c', 'source $argv[1]; complete -C $argv[2]', FISH, line], { encoding: 'utf8', env: { ...env, ...extra } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  return lines(r.stdout);
}

/**
 * What zsh offers: the completion function runs in a real zsh with `words`/`CURRENT`/`PREFIX` as
 * compsys sets them; compadd (a builtin only inside a completion widget) is replaced by one that
 * keeps the words matching PREFIX, as compadd does.
 */
function zsh(line: string, extra: NodeJS.ProcessEnv = {}): string[] {
  const script = 'compadd() { local w; for w in ${(P)2}; do [[ $w == ${PREFIX}* ]] && print -r -- $w; done; return 0 }; _files() { print -r -- "<files>" }; _users() { print -r -- "<users>" }; compdef() { : }; source $1; words=(${(z)2}); [[ $2 == *" " ]] && words+=(""); CURRENT=${#words}; PREFIX=${words[CURRENT]}; _vfioctl || true';
  const r = spawnSync('zsh', ['-f', '-c', script, 'zsh', ZSH, line], { encoding: 'utf8', env: { ...env, ...extra } });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  return lines(r.stdout);
}

const COMMANDS = ['apply', 'bind', 'config', 'doctor', 'help', 'import-driverctl', 'install', 'list', 'list-devices', 'list-overrides', 'load-override', 'recover', 'set', 'set-override', 'show', 'status', 'unbind', 'unset', 'unset-override'];
const R = (line: string) => `vfioctl --root ${f.dir} ${line}`;

for (const [shell, complete] of [['bash', bash], ['zsh', zsh], ['fish', fish]] as const) {
  test(`${shell}: commands, options, addresses, drivers, kernels and intents`, () => {
    assert.deepEqual(complete('vfioctl '), COMMANDS);
    assert.deepEqual(complete('vfioctl bind --d'), ['--driver', '--dry-run']);
    assert.deepEqual(complete('vfioctl install --'), ['--config', '--dry-run', '--exec', '--help', '--json', '--kernel', '--refresh', '--root', '--uninstall', '--version']);
    assert.deepEqual(complete(R('bind ')), ['0000:00:02.0', '0000:03:00.1']);
    assert.deepEqual(complete(R('bind 0000:00:02.0 ')), ['0000:00:02.0', '0000:03:00.1'], 'bind takes several devices');
    assert.deepEqual(complete('vfioctl bind ', { VFIOCTL_ROOT: f.dir }), ['0000:00:02.0', '0000:03:00.1'], 'VFIOCTL_ROOT');
    assert.deepEqual(complete(R('bind --driver ')), ['e1000e', 'vfio', 'vfio-pci']);
    assert.deepEqual(complete(R('--kernel ')), ['6.1.0-test', '6.12.0-test']);
    assert.deepEqual(complete(R('set 0000:03:00.1 ')), ['e1000e', 'none', 'vfio', 'vfio-pci']);
    assert.deepEqual(complete(R('set 0000:03:00.1 vfio ')), [], 'set takes two arguments');
    assert.deepEqual(complete(R('show 0000:03:00.1 ')), []);
    assert.deepEqual(complete('vfioctl list-devices s'), ['serial', 'storage', 'system']);
    assert.deepEqual(complete('vfioctl recover '), []);
    assert.deepEqual(complete('vfioctl config '), ['check']);
  });
}

test('bash completes the part after the last colon, as bash replaces it (COMP_WORDBREAKS)', () => {
  assert.deepEqual(bash(R('unbind 0000:03')), ['03:00.1']);
});
