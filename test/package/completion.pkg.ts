// The shell completions the package ships (rendered by scripts/completions.mjs from the commander
// tree), against a fixture host: what TAB offers. bash: the function as its programmable completion
// calls it; zsh: a real interactive zsh on a pseudo-terminal; fish: its own completion engine.
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
 * What zsh's TAB lists: an interactive zsh on a pseudo-terminal (zsh/zpty) with compinit loading
 * _vfioctl from its directory, as from vendor-completions; the list is read off the screen.
 */
function zsh(line: string, extra: NodeJS.ProcessEnv = {}): string[] {
  const r = spawnSync('zsh', ['-f', path.join(repo, 'test/package/zsh-tab.zsh'), path.dirname(ZSH), line], { encoding: 'utf8', env: { ...env, ...extra } });
  assert.equal(r.status, 0, r.stderr);
  // Escape sequences and carriage returns out; the list is the rows after the prompt's line, the
  // last row ending where zsh redisplays the command line.
  const screen = r.stdout.trimEnd().replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/\r/g, '').split('\n');
  const prompt = screen.findIndex((l) => l.includes('> ') && l.includes('vfioctl'));
  assert.ok(prompt >= 0, r.stdout);
  const rows = screen.slice(prompt + 1);
  if (rows.length === 0) return [];
  rows[rows.length - 1] = rows[rows.length - 1]!.slice(0, rows[rows.length - 1]!.indexOf('vfioctl'));
  return rows.join(' ').split(/\s+/).filter(Boolean).sort();
}

const COMMANDS = ['apply', 'bind', 'doctor', 'help', 'import-driverctl', 'install', 'list', 'list-devices', 'list-overrides', 'load-override', 'recover', 'set', 'set-override', 'show', 'status', 'unbind', 'unset', 'unset-override'];
const R = (line: string) => `vfioctl --root ${f.dir} ${line}`;

for (const [shell, complete] of [['bash', bash], ['zsh', zsh], ['fish', fish]] as const) {
  test(`${shell}: commands, options, addresses, drivers, kernels and intents`, () => {
    assert.deepEqual(complete('vfioctl '), COMMANDS);
    assert.deepEqual(complete('vfioctl bind --d'), ['--driver', '--dry-run']);
    assert.deepEqual(complete('vfioctl install --'), ['--dry-run', '--exec', '--help', '--json', '--kernel', '--refresh', '--root', '--uninstall', '--version']);
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
  });
}

test('bash completes the part after the last colon, as bash replaces it (COMP_WORDBREAKS)', () => {
  assert.deepEqual(bash(R('unbind 0000:03')), ['03:00.1']);
});
