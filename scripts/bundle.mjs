// Bundles the CLI into one file (dist/vfioctl.js) so that start-up reads one script, not a module
// tree.
import { build } from 'esbuild';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';

const VERSION = /VERSION = '([^']+)'/.exec(readFileSync('src/cli/version.ts', 'utf8'))[1];

/**
 * Start-up work that the bundle's own code never needs, taken out of the text esbuild wrote
 * (each measured against `node -e 0`; every command pays it, and most calls are short):
 * - `import * as fs` becomes `__toESM(require("node:fs"))`, which copies the ~100 properties of
 *   the built-in into a fresh object at each of ~20 import sites: a built-in is already the
 *   object the namespace stands for, so it is used as it is (nothing here reads `.default`).
 * - node:child_process (with net, stream, dgram behind it) is loaded only when something is
 *   spawned: commander requires it at the top for external subcommands, which vfioctl has none of.
 *   node:crypto (~6 ms: only the agent hashes) and node:v8 (~4 ms, stream behind it: only big
 *   hosts set a heap flag) likewise load on first use.
 * - `vfioctl --version` (and `-V`), alone, answers before any module or the command tree is
 *   set up: commander would print the same line, after all of that.
 * - jsonc-parser's formatter interns 1,200 indentation strings when its module loads (11.6 M
 *   instructions, 5 % of `show`; `node -e 0` is 83 M): only `set` formats, so its six tables
 *   are built on first use.
 */
const ESM_BUILTIN = /__toESM\((require\("node:[a-z0-9_/]+"\))\)/g;
function trimStartUp(text) {
  const lazy =
    'var __lazyRequire = (id) => { let m; return new Proxy({}, { get: (_, k) => (m ??= require(id))[k] }); };\n';
  // fs.writeSync, not process.stdout: making the stdout stream costs as much again as the rest.
  const fast = `if (process.argv.length === 3 && (process.argv[2] === "--version" || process.argv[2] === "-V")) { try { require("node:fs").writeSync(1, ${JSON.stringify(VERSION + '\n')}); } catch (e) { if (e.code !== "EPIPE") throw e; } return; }\n`;
  // The directive, followed by a newline or (minified) directly by code.
  const head = '"use strict";';
  if (!text.includes(head))
    throw new Error('bundle.mjs: no "use strict" line to put the start-up path after');
  const interned = 'new Array(maxCachedValues).fill(0).map(';
  const tables = text.split(interned).length - 1;
  if (tables !== 6)
    throw new Error(
      `bundle.mjs: jsonc-parser's string-intern tables changed (${tables} instead of 6): review trimStartUp`,
    );
  const lazyArray =
    'var __lazyArray = (n, f) => { let a; return new Proxy([], { get: (_, k) => (a ??= Array.from({ length: n }, (_, i) => f(0, i)))[k] }); };\n';
  return text
    .replaceAll(interned, '__lazyArray(maxCachedValues, ')
    .replace(ESM_BUILTIN, '$1')
    .replace(/require\("(node:(?:child_process|crypto|v8))"\)/g, '__lazyRequire("$1")')
    .replace(head, head + fast + lazy + lazyArray);
}

const CLI_OPTIONS = {
  entryPoints: ['src/cli/main.ts'],
  bundle: true,
  platform: 'node',
  // Debian 12 ships Node.js 18.20 and Ubuntu 24.04 18.19: the package runs on the distribution's
  // nodejs.
  target: 'node18.19',
  format: 'cjs',
  // ESM builds first: jsonc-parser's `main` is a UMD file whose require()s esbuild cannot follow.
  mainFields: ['module', 'main'],
  outfile: 'dist/vfioctl.js',
  // Every command first turns the file into a string and V8's heap objects: on the machines
  // measured a fresh page costs ~15 us, and whitespace is a third of the text (565 KB -> 386 KB,
  // show --json 5 % faster). Names stay, so an internal error's stack still names its functions.
  minifyWhitespace: true,
  // ASCII only (esbuild escapes the rest): the launcher reads the file as latin1, which makes
  // the string in one copy where UTF-8 needs two.
  charset: 'ascii',
  legalComments: 'none',
  logLevel: 'warning',
  write: false,
};
const cli = await build(CLI_OPTIONS);
// write: false leaves the output directory to us (a fresh clone has no dist/).
// 0755 under any umask: the launcher keeps its code cache here only when no one else can write
// the directory (src/cli/launcher.ts).
mkdirSync('dist', { recursive: true, mode: 0o755 });
const body = trimStartUp(cli.outputFiles[0].text);
if (!Buffer.from(body, 'latin1').equals(Buffer.from(body, 'utf8')))
  throw new Error('bundle.mjs: the bundle is not ASCII (see charset)');
/*
 * The file is one expression statement, a function of CommonJS's five arguments, called when
 * Node's loader runs the file (`node vfioctl.js`: `module` is the loader's), else only its value:
 * the launcher runs the file as a script, which is the function, and calls it. So the launcher
 * hands V8 the file's own string, with no wrapper to concatenate (a copy of the whole text).
 */
const wrapped =
  '((main) => typeof module === "object" && typeof require === "function" ? main(exports, require, module, __filename, __dirname) : main)(' +
  `function (exports, require, module, __filename, __dirname) {${body}\n});\n`;
// The second line names the bundle by the hash of the rest: the launcher uses a code cache only
// with the very bundle it was built with (a rebuild without the other, a package half unpacked).
const BUNDLE_ID = createHash('sha256').update(wrapped).digest('hex').slice(0, 16);
const bundleText = `#!/usr/bin/env node\n// vfioctl bundle ${BUNDLE_ID}\n${wrapped}`;
writeFileSync('dist/vfioctl.js', bundleText);
chmodSync('dist/vfioctl.js', 0o755);

// For bench/profile.ts only, never shipped: the same program with its whitespace and esbuild's
// `// src/...` module comments, so that a profile's lines map back to source files.
const readable = await build({ ...CLI_OPTIONS, minifyWhitespace: false });
mkdirSync('build/bench', { recursive: true });
writeFileSync(
  'build/bench/vfioctl.readable.js',
  `#!/usr/bin/env node\n${trimStartUp(readable.outputFiles[0].text)}`,
);

// The command itself (src/cli/launcher.ts): starts dist/vfioctl.js from V8's code cache when one
// was made for it.
//
// Node is started without Sparkplug, V8's baseline compiler: a short command calls most of its
// functions a few times, enough for V8 to compile them to baseline machine code in batches that
// the command then barely runs (code pages and their faults; `show --json` on a small host ~5 %
// faster, `list --json` ~3 %; big hosts turn it back on, cli/context.ts). One flag, as a word:
// the package's `#!/usr/bin/node FLAG` line passes at most one argument (scripts/stage-package.mjs).
// V8 stamps a code cache with its flags, so the cache is made under these (launcher.ts).
const NODE_FLAGS = ['--no-sparkplug'];
const launcher = await build({
  entryPoints: ['src/cli/launcher.ts'],
  bundle: true,
  platform: 'node',
  target: 'node18.19',
  format: 'cjs',
  outfile: 'dist/vfioctl',
  banner: { js: `#!/usr/bin/env -S node ${NODE_FLAGS.join(' ')}` },
  write: false,
  define: {
    BUNDLE_ID: JSON.stringify(BUNDLE_ID),
    NODE_FLAGS: JSON.stringify(NODE_FLAGS),
    VERSION: JSON.stringify(VERSION),
  },
  legalComments: 'none',
  logLevel: 'warning',
});
writeFileSync('dist/vfioctl', launcher.outputFiles[0].text.replace(ESM_BUILTIN, '$1'));
chmodSync('dist/vfioctl', 0o755);

// The library (`require('vfioctl')`): the operations layer, one file too; its types come from
// `tsc -p tsconfig.lib.json` (dist/lib/types).
await build({
  entryPoints: ['src/ops/index.ts'],
  bundle: true,
  platform: 'node',
  target: 'node18.19',
  format: 'cjs',
  mainFields: ['module', 'main'],
  outfile: 'dist/lib/index.js',
  legalComments: 'none',
  logLevel: 'warning',
});

// Test machinery, never shipped: the CLI whose kernel is a ModelServer's (test/support/remote-cli.ts)
// as one file with the shipped bundle's start-up, for the tests that run it as a process hundreds
// of times (the Ansible fleet, the Cockpit page, the lock stress test). Loading build/'s ~150
// modules instead cost each call about 0.13 s of CPU more (0.43 s against 0.30 s, node -e 0 0.22 s).
const remote = await build({
  entryPoints: ['test/support/remote-cli.ts'],
  bundle: true,
  // main.ts runs itself when it is the main module (`require.main === module`); bundled, `module`
  // is this file's, which is the main module: without this the command would run twice, the
  // second time on the real kernel interface instead of the model's.
  define: { 'require.main': 'undefined' },
  platform: 'node',
  target: 'node18.19',
  format: 'cjs',
  mainFields: ['module', 'main'],
  legalComments: 'none',
  logLevel: 'warning',
  write: false,
});
mkdirSync('build/test/support', { recursive: true });
writeFileSync('build/test/support/remote-cli.bundle.js', trimStartUp(remote.outputFiles[0].text));
