// The shell completions the package ships (rendered by scripts/completions.mjs from the commander
// tree), against a fixture host: what TAB offers in an interactive bash and zsh on a
// pseudo-terminal, and from fish's own completion engine.
import { after, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { e1000e, virtioNet } from '../support/devices';
import { Fixture } from '../support/fixture';

const repo = path.join(__dirname, '../../..');
const version: string = JSON.parse(
  fs.readFileSync(path.join(repo, 'package.json'), 'utf8'),
).version;
const stage = path.join(repo, 'build/deb', `vfioctl-${version}`, 'stage');
const BASH = path.join(stage, 'usr/share/bash-completion/completions/vfioctl');
const ZSH = path.join(stage, 'usr/share/zsh/vendor-completions/_vfioctl');
const FISH = path.join(stage, 'usr/share/fish/vendor_completions.d/vfioctl.fish');

const f = Fixture.create('vfioctl-completion-');
f.kernel('6.1.0-test').kernel('6.12.0-test');
f.device(e1000e('0000:00:02.0', '2')).device(virtioNet('0000:03:00.1', '3', { driver: null }));
f.driver('e1000e').driver('vfio-pci', 'vfio_pci');
after(() => f.cleanup());

const env = { PATH: '/usr/bin:/bin', HOME: f.dir, LANG: 'C.UTF-8' };
/** zsh's compinit dump, shared by this file's zsh runs (see tab.zsh). */
const zcompdump = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-zcompdump-')), 'dump');
after(() => fs.rmSync(path.dirname(zcompdump), { recursive: true, force: true }));

/**
 * What TAB does in an interactive bash or zsh (test/package/tab.zsh: a pseudo-terminal, the file
 * loaded as the shell loads vendor completions): the list it shows, or, when it completes a single
 * match in place, that word.
 */
function tab(shell: 'bash' | 'zsh', line: string, extra: NodeJS.ProcessEnv = {}): string[] {
  const r = spawnSync(
    'zsh',
    [
      '-f',
      path.join(repo, 'test/package/tab.zsh'),
      shell,
      shell === 'bash' ? BASH : ZSH,
      line,
      ...(shell === 'zsh' ? [zcompdump] : []),
    ],
    { encoding: 'utf8', env: { ...env, ...extra } },
  );
  assert.equal(r.status, 0, r.stderr);
  // Terminal escapes, erased characters and carriage returns out.
  // The terminal's own escapes (colours, cursor) and backspaces are what the test strips.
  // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escapes
  const escapes = /\x1b\[[0-9;?]*[A-Za-z]/g;
  // biome-ignore lint/suspicious/noControlCharactersInRegex: a backspace erases the character before it
  const erased = /.\x08/g;
  const screen = r.stdout.replace(escapes, '').replace(erased, '').replace(/\r/g, '');
  const buffer = /BUFFER<(.*)>/.exec(screen)![1]!;
  // The shell echoes and redisplays the command line around the list: only the list is kept.
  const listed = screen
    .slice(0, screen.indexOf('BUFFER<'))
    .split('\n')
    .map((l) => (l.includes('vfioctl') ? l.slice(0, l.indexOf('vfioctl')) : l))
    .join(' ')
    .split(/\s+/)
    .filter(Boolean)
    .sort();
  if (listed.length) return listed;
  return buffer === line ? [] : [buffer.trimEnd().split(' ').pop()!];
}
const bash = (line: string, extra: NodeJS.ProcessEnv = {}) => tab('bash', line, extra);
const zsh = (line: string, extra: NodeJS.ProcessEnv = {}) => tab('zsh', line, extra);

/** What fish's own completion engine offers for LINE (complete -C). */
function fish(line: string, extra: NodeJS.ProcessEnv = {}): string[] {
  const r = spawnSync(
    'fish',
    ['--no-config', '-c', 'source $argv[1]; complete -C $argv[2]', FISH, line],
    { encoding: 'utf8', env: { ...env, ...extra } },
  );
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split('\t')[0]!)
    .sort();
}

const COMMANDS = [
  'agent',
  'apply',
  'bind',
  'config',
  'doctor',
  'help',
  'import-driverctl',
  'install',
  'libvirt-hook',
  'libvirt-xml',
  'list',
  'list-devices',
  'list-overrides',
  'load-override',
  'recover',
  'set',
  'set-override',
  'show',
  'status',
  'unbind',
  'unset',
  'unset-override',
];
const R = (line: string) => `vfioctl --root ${f.dir} ${line}`;

for (const [shell, complete] of [
  ['bash', bash],
  ['zsh', zsh],
  ['fish', fish],
] as const) {
  test(`${shell}: commands, options, addresses, drivers, kernels and intents`, () => {
    assert.deepEqual(complete('vfioctl '), COMMANDS);
    assert.deepEqual(complete('vfioctl bind --d'), ['--driver', '--dry-run']);
    assert.deepEqual(complete('vfioctl set --a'), ['--acknowledge-broad-match']);
    assert.deepEqual(complete('vfioctl unset --a'), [], 'set only');
    assert.deepEqual(complete('vfioctl install --'), [
      '--config',
      '--dry-run',
      '--exec',
      '--help',
      '--host-root',
      '--json',
      '--kernel',
      '--libvirt',
      '--refresh',
      '--root',
      '--uninstall',
      '--version',
      '--wait',
    ]);
    assert.deepEqual(complete(R('bind ')), ['0000:00:02.0', '0000:03:00.1']);
    assert.deepEqual(
      complete(R('bind 0000:00:02.0 ')),
      ['0000:00:02.0', '0000:03:00.1'],
      'bind takes several devices',
    );
    assert.deepEqual(
      complete('vfioctl bind ', { VFIOCTL_ROOT: f.dir }),
      ['0000:00:02.0', '0000:03:00.1'],
      'VFIOCTL_ROOT',
    );
    assert.deepEqual(complete(R('bind --driver ')), ['e1000e', 'vfio', 'vfio-pci']);
    assert.deepEqual(complete(R('--kernel ')), ['6.1.0-test', '6.12.0-test']);
    assert.deepEqual(complete(R('set 0000:03:00.1 ')), [
      'e1000e',
      'host',
      'none',
      'vfio',
      'vfio-pci',
    ]);
    assert.deepEqual(complete(R('set 0000:03:00.1 vfio ')), [], 'set takes two arguments');
    assert.deepEqual(complete(R('show 0000:03:00.1 ')), []);
    assert.deepEqual(complete('vfioctl list-devices s'), ['serial', 'storage', 'system']);
    assert.deepEqual(complete('vfioctl recover '), []);
    assert.deepEqual(complete('vfioctl config '), ['check']);
    assert.deepEqual(complete('vfioctl --wait '), [], 'a number: no commands, no files');
  });
}

test('a single match is completed in place, across the colons of an address (bash splits words at them)', () => {
  for (const complete of [bash, zsh])
    assert.deepEqual(complete(R('unbind 0000:03')), ['0000:03:00.1']);
  assert.deepEqual(fish(R('unbind 0000:03')), ['0000:03:00.1']);
});
