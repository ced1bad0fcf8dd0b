// The README against the program (issue 12, item 10): every option of the commander tree is
// documented in the README, under its command (a `vfioctl COMMAND ...` code span naming it) or
// as a global option, and every option the README's code spans give vfioctl exists there. Then
// the README's "read-only" claims are run: those commands change no file under the root and
// write nothing to the kernel, also with a half-done journal entry and a configuration present.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as crypto from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command, Option } from 'commander';
import { buildProgram } from '../../src/cli/main';
import { E1, E2, modelHosts, type ModelHost } from '../support/model-host';

const repo = path.join(__dirname, '../../..');
const README = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');
const program = buildProgram({ out: () => {}, err: () => {}, env: {} }, () => {});
const HELP = { short: '-h', long: '--help', takesValue: false }; // commander's implicit option

interface Flag {
  readonly short?: string;
  readonly long?: string;
  readonly takesValue: boolean;
}
const flagOf = (o: Option): Flag => ({
  short: o.short,
  long: o.long,
  takesValue: o.required || o.optional,
});
// The launcher's own (src/cli/launcher.ts): answered before the bundle and its commander tree.
const LAUNCHER = { long: '--write-code-cache', takesValue: false };
const globals: Flag[] = [...program.options.map(flagOf), HELP, LAUNCHER];
const commands = new Map(
  program.commands.map((c: Command) => [c.name(), [...c.options.map(flagOf), HELP]]),
);
const find = (flags: readonly Flag[], token: string) =>
  flags.find((f) => f.short === token || f.long === token);

/**
 * Inline code spans (outside fenced blocks) and fenced lines that run vfioctl or start with an
 * option: `vfioctl bind DEVICE... [--driver vfio|NAME] [--json]`, `--config FILE`, `-b pci`.
 */
function vfioctlSpans(md: string): string[] {
  const out: string[] = [];
  const fenced = /^```.*?^```/gms;
  for (const block of md.match(fenced) ?? [])
    for (const line of block.split('\n'))
      if (/^\s*(sudo )?vfioctl /.test(line))
        out.push(
          line
            .trim()
            .replace(/^sudo /, '')
            .replace(/\s+#.*$/, ''),
        );
  for (const m of md.replace(fenced, '').matchAll(/`([^`\n]+)`/g))
    if (/^(vfioctl |-)/.test(m[1]!)) out.push(m[1]!);
  return out;
}

interface Mention {
  readonly span: string;
  readonly command: string | null;
  readonly token: string;
}

/** Every option token of a span, with the command it is given to (null: before any command). */
function mentions(span: string): Mention[] {
  // Usage notation: [--x], a|b (escaped \| in tables), DEVICE..., USER[:GROUP].
  const tokens = span
    .replace(/\\\|/g, '|')
    .replace(/\[(?=-)|(?<=\S)\](?=\s|$)|^\[|\]$/g, ' ')
    .split(/\s+/)
    .filter(Boolean);
  const out: Mention[] = [];
  let command: string | null = null;
  for (let i = tokens[0] === 'vfioctl' ? 1 : 0; i < tokens.length; i++) {
    const t = tokens[i]!.replace(/[\],.;:]+$/, '');
    if (/^--?[A-Za-z]/.test(t)) {
      const flag = t.split('=')[0]!;
      out.push({ span, command, token: flag });
      const f = find(command ? [...commands.get(command)!, ...globals] : globals, flag);
      if (f?.takesValue && !t.includes('=')) i++; // its value
    } else if (command === null && commands.has(t)) command = t;
  }
  return out;
}

const all = vfioctlSpans(README).flatMap(mentions);

test('every option the README gives vfioctl exists, for the command it is given to', () => {
  assert.ok(all.length > 40, `the README's option mentions were found (${all.length})`);
  const wrong: string[] = [];
  for (const m of all) {
    const known = m.command
      ? find([...commands.get(m.command)!, ...globals], m.token)
      : (find(globals, m.token) ?? [...commands.values()].some((c) => find(c, m.token)));
    if (!known)
      wrong.push(
        `${m.token} in \`${m.span}\`${m.command ? ` (not an option of ${m.command})` : ''}`,
      );
  }
  assert.deepEqual(wrong, [], 'options the README names that the program does not have');
});

test('every option of every command, and every global option, is documented in the README', () => {
  const missing: string[] = [];
  for (const [name, flags] of commands) {
    const documented = new Set(all.filter((m) => m.command === name).map((m) => m.token));
    if (
      !vfioctlSpans(README).some((s) =>
        new RegExp(`^vfioctl (--?\\S+ (\\S+ )?)*${name}( |$)`).test(s),
      )
    )
      missing.push(`command ${name} (no \`vfioctl ${name} ...\`)`);
    for (const f of flags) {
      if (f === HELP) continue; // documented once, as a global option
      for (const flag of [f.short, f.long])
        if (flag && !documented.has(flag)) missing.push(`${name} ${flag}`);
    }
  }
  const anywhere = new Set(all.map((m) => m.token));
  for (const f of globals)
    for (const flag of [f.short, f.long])
      if (flag && !anywhere.has(flag)) missing.push(`global ${flag}`);
  assert.deepEqual(missing, [], 'options the program has that the README does not document');
});

const host = modelHosts({ trustSelf: true });

/** Every entry under the root: type, mode, owner, size, mtime, content or link target. */
function treeState(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string) => {
    const abs = path.join(dir, rel);
    const st = fs.lstatSync(abs);
    const what = st.isSymbolicLink()
      ? `link ${fs.readlinkSync(abs)}`
      : st.isDirectory()
        ? 'dir'
        : `file ${st.size} ${crypto.createHash('sha256').update(fs.readFileSync(abs)).digest('hex')}`;
    out.set(rel || '/', `${what} mode ${st.mode.toString(8)} uid ${st.uid} mtime ${st.mtimeMs}`);
    if (st.isDirectory()) for (const e of fs.readdirSync(abs).sort()) walk(path.join(rel, e));
  };
  walk('');
  return out;
}

/**
 * The commands the README says never write: rows that say "Read-only."/"Writes nothing.", and its
 * "never write" list.
 */
function readOnlyClaims(md: string): string[] {
  const out = new Set<string>();
  for (const m of md.matchAll(/^\| `vfioctl ([a-z-]+)[^|]*\|.*\b(Read-only|Writes nothing)\b/gm))
    out.add(m[1]!);
  const never = /((?:`[a-z-]+`(?:, | and ))+`[a-z-]+`) never write/.exec(md);
  for (const c of never?.[1]?.matchAll(/`([a-z-]+)`/g) ?? []) out.add(c[1]!);
  return [...out].sort();
}

test("the README's read-only commands, and every --dry-run, change nothing: no file under the root, no kernel write", async () => {
  const claims = readOnlyClaims(README);
  for (const c of ['config', 'doctor', 'list', 'show', 'status'])
    assert.ok(
      claims.includes(c),
      `the README's claim that ${c} is read-only was found (${claims.join(', ')})`,
    );
  const h: ModelHost = host();
  // A host with everything a reader might be tempted to touch: a configuration, an apply's
  // state, installed boot layers, a killed bind's journal entry, driverctl files.
  h.config([{ match: { address: E2 }, intent: 'vfio' }]);
  assert.equal((await h.run(['apply'])).code, 0);
  assert.equal((await h.run(['install', '--exec', '/usr/local/bin/vfioctl'])).code, 0);
  h.f.tree.write(`/etc/driverctl.d/pci-${E1}`, 'vfio-pci\n', 0o644);
  h.killBefore(3);
  await h.run(['bind', E1]);
  h.noKill();
  const before = treeState(h.f.dir);
  const writes = h.k.writes.length;
  const cfg = h.f.tree.abs('/etc/vfioctl/vfioctl.json');
  const runs: Record<string, string[][]> = {
    list: [['list'], ['list', '--json']],
    show: [
      ['show', E1],
      ['show', E2, '--json'],
    ],
    status: [['status'], ['status', '--json'], ['status', '--config', cfg]],
    doctor: [['doctor'], ['doctor', '--json']],
    config: [
      ['config', 'check', cfg],
      ['config', 'check', cfg, '--json'],
    ],
    'libvirt-xml': [
      ['libvirt-xml', E2],
      ['libvirt-xml', E2, '--driver-model', '--json'],
    ],
  };
  for (const c of claims) assert.ok(runs[c], `a run for the README's read-only claim about ${c}`);
  const dryRuns = [...commands.keys()].filter((c) => find(commands.get(c)!, '--dry-run'));
  const dry: Record<string, string[]> = {
    bind: ['bind', E1, E2, '--dry-run'],
    unbind: ['unbind', E2, '--dry-run'],
    set: ['set', E1, 'vfio', '--dry-run'],
    unset: ['unset', E2, '--dry-run'],
    apply: ['apply', '--dry-run'],
    install: ['install', '--dry-run', '--exec', '/usr/local/bin/vfioctl'],
    'import-driverctl': ['import-driverctl', '--dry-run'],
    'set-override': ['set-override', E1, 'vfio-pci', '--dry-run'],
    'unset-override': ['unset-override', E2, '--dry-run'],
  };
  assert.deepEqual(
    dryRuns.filter((c) => !dry[c]),
    [],
    'a run for every command with --dry-run',
  );
  for (const args of [
    ...Object.values(runs).flat(),
    ...Object.values(dry),
    ['install', '--dry-run', '--uninstall'],
    ['list-devices'],
    ['list-overrides'],
  ]) {
    const r = await h.run(args);
    assert.ok([0, 1, 5].includes(r.code), `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    const after = treeState(h.f.dir);
    const changed = [...new Set([...before.keys(), ...after.keys()])].filter(
      (k) => before.get(k) !== after.get(k),
    );
    assert.deepEqual(changed, [], `vfioctl ${args.join(' ')} changed files under the root`);
    assert.equal(h.k.writes.length, writes, `vfioctl ${args.join(' ')} wrote to the kernel`);
  }
  // The same check sees a command that does write: recover repairs the killed bind.
  assert.equal((await h.run(['recover'])).code, 0);
  const repaired = treeState(h.f.dir);
  assert.ok(
    [...before.keys()].some((k) => before.get(k) !== repaired.get(k)),
    'recover changed files (the journal entry is gone)',
  );
  assert.ok(h.k.writes.length > writes, 'recover wrote to the kernel');
});
