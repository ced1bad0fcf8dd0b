// The man pages (man/*.md, rendered by pandoc at package build time) against the program: every
// command and option the commander tree has is documented, and nothing the tree lacks.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Command, Option } from 'commander';
import { buildProgram } from '../../src/cli/main';
import { HOOK_DIRS, HOOK_EVENTS } from '../../src/hooks/discover';
import { EXIT } from '../../src/util/diag';

const repo = path.join(__dirname, '../../..');
const page = (name: string) => fs.readFileSync(path.join(repo, 'man', `${name}.md`), 'utf8');
const program = buildProgram({ out: () => {}, err: () => {}, env: {} }, () => {});

/** Top-level `# NAME` sections of a page. */
function sections(md: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of md.split(/^# /m).slice(1))
    out.set(part.slice(0, part.indexOf('\n')).trim(), part);
  return out;
}
/** The flags in a section's definition-list terms (lines that start with a backticked option). */
const documentedFlags = (text: string) =>
  new Set(
    [...text.matchAll(/^`(-[^`]*)`.*$/gm)].flatMap((m) =>
      [...m[0].matchAll(/`(--?[A-Za-z][\w-]*)`/g)].map((f) => f[1]!),
    ),
  );
const flags = (opts: readonly Option[]) =>
  new Set(opts.flatMap((o) => [o.short, o.long].filter((f): f is string => !!f)));

test("vfioctl(8) documents every command and each one's options exactly as the commander tree has them", () => {
  const s = sections(page('vfioctl.8'));
  for (const name of [
    'NAME',
    'SYNOPSIS',
    'DESCRIPTION',
    'OPTIONS',
    'COMMANDS',
    'EXIT STATUS',
    'ENVIRONMENT',
    'FILES',
    'JSON OUTPUT',
    'EXAMPLES',
    'SEE ALSO',
  ])
    assert.ok(s.has(name), `section ${name}`);
  assert.deepEqual(
    documentedFlags(s.get('OPTIONS')!),
    new Set([...flags(program.options), '-h', '--help']),
    'global options',
  );
  const documented = new Map<string, string>();
  for (const part of s.get('COMMANDS')!.split(/^## /m).slice(1))
    documented.set(part.split(/\s/)[0]!, part);
  assert.deepEqual(
    [...documented.keys()].sort(),
    program.commands.map((c: Command) => c.name()).sort(),
    'commands',
  );
  for (const c of program.commands) {
    assert.deepEqual(
      documentedFlags(documented.get(c.name())!),
      flags(c.options),
      `options of ${c.name()}`,
    );
    // The heading names the arguments as --help does: required <x> as X, optional [x] in brackets.
    const heading = documented.get(c.name())!.split('\n')[0]!;
    for (const a of c.registeredArguments)
      assert.ok(
        heading.toLowerCase().includes(a.name()),
        `${c.name()}: argument ${a.name()} in "${heading}"`,
      );
  }
  // Exit codes: every one the program uses.
  for (const code of Object.values(EXIT).map((c) => `**${c}**`))
    assert.ok(s.get('EXIT STATUS')!.includes(code), code);
});

test('vfioctl.json(5) documents every field of the configuration schema, and no other', () => {
  const schema = JSON.parse(fs.readFileSync(path.join(repo, 'schema/config.schema.json'), 'utf8'));
  const fields = new Set<string>();
  const walk = (o: unknown): void => {
    if (!o || typeof o !== 'object') return;
    const props = (o as { properties?: Record<string, unknown> }).properties;
    if (props) for (const k of Object.keys(props)) fields.add(k);
    for (const v of Object.values(o)) walk(v);
  };
  walk(schema);
  const doc = sections(page('vfioctl.json.5')).get('FIELDS')!;
  const terms = new Set([...doc.matchAll(/^\s*`([$\w]+)`\s*$/gm)].map((m) => m[1]!));
  assert.deepEqual(terms, fields);
});

test('vfioctl-hooks(7) documents every hook event and directory', () => {
  const md = page('vfioctl-hooks.7');
  const events = new Set(
    [
      ...sections(md)
        .get('EVENTS')!
        .matchAll(/^`([\w-]+)`$/gm),
    ].map((m) => m[1]!),
  );
  assert.deepEqual(events, new Set(HOOK_EVENTS));
  for (const d of HOOK_DIRS) assert.ok(md.includes(`*${d}/*`), d);
});
