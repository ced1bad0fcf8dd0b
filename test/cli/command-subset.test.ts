// `run` builds only the invoked command beside the global options (src/cli/main.ts). These tests
// hold that to the whole program: the same command names, and for every command the same help,
// the same usage errors and the same exit, with global options before or after the command.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { CommanderError } from 'commander';
import { buildProgram, COMMAND_NAMES, invokedCommand } from '../../src/cli/main';

interface Outcome {
  out: string;
  err: string;
  exit: number | 'none';
}

async function parse(argv: string[], only?: string): Promise<Outcome> {
  const o: Outcome = { out: '', err: '', exit: 'none' };
  const program = buildProgram(
    {
      out: (s) => void (o.out += s),
      err: (s) => void (o.err += s),
      env: {},
    },
    () => {},
    only,
  );
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (e) {
    if (!(e instanceof CommanderError)) throw e;
    o.exit = e.exitCode;
  }
  return o;
}

test('COMMAND_NAMES is exactly the commands the whole program defines', () => {
  const all = buildProgram({ out: () => {}, err: () => {}, env: {} }, () => {});
  assert.deepEqual(new Set(all.commands.map((c) => c.name())), COMMAND_NAMES);
  for (const name of COMMAND_NAMES) {
    const one = buildProgram({ out: () => {}, err: () => {}, env: {} }, () => {}, name);
    assert.deepEqual(
      one.commands.map((c) => c.name()),
      [name],
    );
    // The global options stay, whatever the command.
    assert.deepEqual(
      one.options.map((o) => o.flags),
      all.options.map((o) => o.flags),
    );
  }
});

test('invokedCommand names the command only when the words before it are certain', () => {
  const cases: [string[], string | undefined][] = [
    [['show', '0000:01:00.0', '--json'], 'show'],
    [['list'], 'list'],
    [['--root', '/t', 'list', '--json'], 'list'],
    [['--root=/t', '--kernel', '6.1.0', 'status'], 'status'],
    [['--host-root', '/host', '--wait', '5', 'apply'], 'apply'],
    [['--nosave', '--noprobe', 'set-override', '0000:01:00.0', 'vfio-pci'], 'set-override'],
    [['-v', '-b', 'pci', 'list-devices'], 'list-devices'],
    [['--debug', '--bus=pci', 'list-overrides'], 'list-overrides'],
    // Left to the whole program: help, version, unknown words and options, `--`, a missing value.
    [[], undefined],
    [['--help'], undefined],
    [['-h'], undefined],
    [['help', 'show'], undefined],
    [['-V'], undefined],
    [['--version'], undefined],
    [['lsit'], undefined],
    [['--bogus', 'list'], undefined],
    [['-bpci', 'list'], undefined],
    [['--', 'list'], undefined],
    [['--root'], undefined],
    [['--root=', 'list'], 'list'],
    [['--rootx=/t', 'list'], undefined],
    // A word one letter longer than a global option is no global option.
    [['--roots', 'list'], undefined],
    [['--kernelx', '6.1', 'list'], undefined],
  ];
  for (const [argv, want] of cases) assert.equal(invokedCommand(argv), want, argv.join(' '));
});

test('every global option but --version, before the command, still lets invokedCommand name it', () => {
  const all = buildProgram({ out: () => {}, err: () => {}, env: {} }, () => {});
  const globals = all.options.filter((o) => o.long !== '--version');
  assert.ok(globals.length >= 9);
  for (const o of globals)
    for (const flag of [o.long, o.short].filter((f): f is string => f !== undefined)) {
      const value = o.required || o.optional ? ['v'] : [];
      assert.equal(invokedCommand([flag, ...value, 'list']), 'list', flag);
      if (value.length > 0 && flag.startsWith('--'))
        assert.equal(invokedCommand([`${flag}=v`, 'list']), 'list', `${flag}=v`);
    }
});

test('each command alone answers its help and usage errors as the whole program does', async () => {
  for (const name of COMMAND_NAMES) {
    for (const argv of [
      [name, '--help'],
      ['--root', '/nonexistent', name, '-h'],
      [name, '--no-such-option'],
      [name, '--jsno'],
      ['--nosave', name, '--root'],
      ['--roots', name, '--help'],
    ]) {
      const whole = await parse(argv);
      const alone = await parse(argv, invokedCommand(argv));
      assert.notEqual(whole.exit, 'none', `${argv.join(' ')}: commander answered`);
      assert.deepEqual(alone, whole, argv.join(' '));
    }
  }
});

test('the whole program still answers what no single command can: help, version, an unknown command', async () => {
  const help = await parse(['--help']);
  for (const name of COMMAND_NAMES) assert.match(help.out, new RegExp(`^  ${name}\\b`, 'm'));
  const unknown = await parse(['lsit']);
  assert.match(unknown.err, /unknown command 'lsit'/);
  assert.match(unknown.err, /Did you mean list\?/);
});
