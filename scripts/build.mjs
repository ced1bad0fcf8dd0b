// npm run build: the generated validator check, tsc (build/), the bundles (dist/) and the library's
// types (dist/lib/types). CI builds once and then each suite (test:package, test:ansible,
// test:cockpit, test:e2e) runs `npm run build` again, 20 to 40 s of tsc on 2 cores for nothing: a
// build whose inputs hash to what the last successful build recorded, and whose outputs are all
// there, is skipped. The hash covers the inputs' paths and bytes (not mtimes: a checkout or a copy
// changes those without changing anything). `rm -rf build` forces a full build.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Everything the four steps read: sources, tests, the schema, the scripts, configs, dependencies. */
// tsconfig.json takes in e2e/ and bench/ too: one program type-checks src/ once, not three times.
const INPUT_DIRS = ['src', 'test', 'e2e', 'bench', 'schema'];
const INPUT_FILES = [
  'scripts/build.mjs',
  'scripts/bundle.mjs',
  'scripts/gen-config-validator.mjs',
  'tsconfig.json',
  'tsconfig.lib.json',
  'package.json',
  'package-lock.json',
  // npm's record of what is installed: changes with every `npm ci`/`npm install`.
  'node_modules/.package-lock.json',
];
/** One file of each step's output: a step that never ran (or a deleted dist/) means a build. */
const OUTPUTS = [
  'build/src/cli/main.js',
  'build/test/support/fixture.js',
  'build/e2e/run.js',
  'build/bench/run.js',
  'dist/vfioctl.js',
  'dist/vfioctl',
  'dist/lib/index.js',
  'dist/lib/types/ops/index.d.ts',
  'build/test/support/remote-cli.bundle.js',
  'build/bench/vfioctl.readable.js',
];
const STAMP = 'build/.build-inputs';

const STEPS = [
  ['node', 'scripts/gen-config-validator.mjs', '--check'],
  ['tsc', '-p', 'tsconfig.json'],
  ['node', 'scripts/bundle.mjs'],
  ['tsc', '-p', 'tsconfig.lib.json'],
];

function walk(dir, out) {
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) =>
    a.name < b.name ? -1 : a.name > b.name ? 1 : 0,
  )) {
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out;
}

function inputsHash() {
  const h = createHash('sha256');
  const files = [...INPUT_DIRS.flatMap((d) => walk(d, [])), ...INPUT_FILES.filter(existsSync)];
  for (const f of files) {
    h.update(`${f}\0`);
    h.update(readFileSync(f));
    h.update('\0');
  }
  return h.digest('hex');
}

const hash = inputsHash();
const last = existsSync(STAMP) ? readFileSync(STAMP, 'utf8').trim() : '';
if (last === hash && OUTPUTS.every(existsSync)) {
  console.log('build: up to date (inputs unchanged since the last build)');
  process.exit(0);
}
for (const [cmd, ...args] of STEPS) {
  // tsc from this checkout's node_modules, as npm scripts run it; node is the one running this.
  const argv = cmd === 'tsc' ? ['node_modules/typescript/bin/tsc', ...args] : args;
  const r = spawnSync(process.execPath, argv, { stdio: 'inherit' });
  if (r.status !== 0) process.exit(r.status ?? 1);
}
mkdirSync('build', { recursive: true });
writeFileSync(STAMP, `${hash}\n`);
