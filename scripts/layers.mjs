#!/usr/bin/env node
// Which folder of src/ imports which: `node scripts/layers.mjs` prints the folder graph, and exits
// 1 on an import that goes up the layers below or on a cycle between folders. Type-only imports
// count: a cycle of types is still a cycle in how the code is read.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';

const src = join(dirname(new URL(import.meta.url).pathname), '..', 'src');

function* files(dir) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) yield* files(p);
    else if (/\.ts$/.test(e.name) && !e.name.endsWith('.d.ts')) yield p;
  }
}

// Bottom to top: a folder imports only folders before it. host is the ground floor (over util);
// plan is pure over a read snapshot; apply is the only writer; ops is the library API; cli renders.
const LAYERS = [
  'util',
  'host',
  'libvirt',
  'modules',
  'persist',
  'hooks',
  'read',
  'match',
  'config',
  'plan',
  'boot',
  'report',
  'apply',
  'ops',
  'cli',
];

const folderOf = (p) => relative(src, p).split('/')[0];
const edges = new Map(); // folder -> Map(folder -> [file -> target])
for (const f of files(src)) {
  const from = folderOf(f);
  const text = readFileSync(f, 'utf8');
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?from\s+'(\.[^']+)'/gm)) {
    const to = folderOf(normalize(join(dirname(f), m[1])));
    if (to === from || to.startsWith('..')) continue;
    if (!edges.has(from)) edges.set(from, new Map());
    const e = edges.get(from);
    if (!e.has(to)) e.set(to, []);
    e.get(to).push(`${relative(src, f)} -> ${m[1]}`);
  }
}

const folders = [
  ...new Set([
    ...readdirSync(src, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name),
  ]),
].sort();
for (const f of [...folders].sort((a, b) => LAYERS.indexOf(a) - LAYERS.indexOf(b)))
  console.log(
    `${f.padEnd(8)} -> ${[...(edges.get(f)?.keys() ?? [])].sort((a, b) => LAYERS.indexOf(a) - LAYERS.indexOf(b)).join(', ') || '(nothing)'}`,
  );

// Cycles: any folder that reaches itself.
const reach = (start) => {
  const seen = new Set();
  const stack = [...(edges.get(start)?.keys() ?? [])];
  while (stack.length) {
    const n = stack.pop();
    if (seen.has(n)) continue;
    seen.add(n);
    stack.push(...(edges.get(n)?.keys() ?? []));
  }
  return seen;
};
const cyclic = folders.filter((f) => reach(f).has(f));
const upward = [];
for (const [a, to] of edges) {
  for (const [b, why] of to) {
    const ia = LAYERS.indexOf(a);
    const ib = LAYERS.indexOf(b);
    if (ia < 0 || ib < 0 || ib > ia)
      upward.push(
        `  ${a} -> ${b}${ia < 0 || ib < 0 ? ' (a folder not in LAYERS: place it)' : ''}: ${why.join('; ')}`,
      );
  }
}
if (upward.length)
  console.log(`\nimports that go up the layers (${LAYERS.join(' < ')}):\n${upward.join('\n')}`);
if (cyclic.length) {
  console.log(`\nfolders on a cycle: ${cyclic.join(', ')}`);
  for (const a of cyclic)
    for (const [b, why] of edges.get(a) ?? [])
      if (cyclic.includes(b) && reach(b).has(a)) console.log(`  ${a} -> ${b}: ${why.join('; ')}`);
}
if (upward.length || cyclic.length) process.exit(1);
console.log(`\nlayers ${LAYERS.join(' < ')}: every import goes down, no cycles`);
