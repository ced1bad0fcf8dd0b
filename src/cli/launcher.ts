// The installed command (dist/vfioctl, the package's /usr/sbin/vfioctl): starts the bundle
// (vfioctl.js) from V8's code cache when one was made for this very bundle and this very node.
// Parsing the ~390 KB bundle and compiling the functions a command calls is most of what a short
// command costs above `node -e 0`; deserialising them from the cache is a fraction of it
// (`show --json` on a small host: 221 M instructions without, 147 M with; `node -e 0` 90 M).
// Node 20 has no compile cache of its own (module.enableCompileCache came in Node 22), and a
// user-land start-up snapshot (`--snapshot-blob`) starts slower than this: measured, an empty
// one adds ~25 ms to `node -e 0` (a 4 MB blob read from disk, without node's embedded one).
//
// The cache is code: V8 checks only its own version and flags and the source's length, not the
// source, so a cache is read only when root or this user owns it and its directory and no one
// else can write either, and its name carries the bundle's hash and the node version. Anything
// else (none made yet, another node, a stale or damaged file) and the bundle is compiled as
// plain `node vfioctl.js` would. `vfioctl --write-code-cache` makes it (the package's postinst,
// again on every nodejs upgrade). Its interpreter line starts node without Sparkplug
// (scripts/bundle.mjs); V8 accepts a cache only under the flags it was made with, so a start
// without them (`node vfioctl ...`) compiles the bundle as if there were none.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type * as vm from 'node:vm';

/**
 * Where the bundle and the cache live: beside this file (a build tree), or the package's paths
 * (scripts/stage-package.mjs rewrites this one line).
 */
const LAYOUT: { bundle: string | null; cacheDir: string | null } = { bundle: null, cacheDir: null };
declare const BUNDLE_ID: string;
/**
 * The V8 flags the interpreter line starts node with (scripts/bundle.mjs: no Sparkplug). V8
 * accepts a cache only under the flags it was made with, so it is made under these.
 */
declare const NODE_FLAGS: readonly string[];
/** Internal: does a fresh node accept this cache? (--write-code-cache asks before keeping one.) */
const CHECK = '--check-code-cache';
declare const VERSION: string;

const bundleFile = LAYOUT.bundle ?? path.join(__dirname, 'vfioctl.js');
const cacheDir = LAYOUT.cacheDir ?? __dirname;
const cacheFile = path.join(
  cacheDir,
  `vfioctl.js.${BUNDLE_ID}.${process.version}.${process.arch}.code-cache`,
);

function write(fd: number, s: string): void {
  try {
    fs.writeSync(fd, s);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EPIPE') throw e;
  }
}

/** Owned by root or by us, writable by no one else (what StrictModes asks of ~/.ssh). */
function trusted(st: fs.Stats): boolean {
  const euid = process.geteuid?.() ?? 0;
  return (st.uid === 0 || st.uid === euid) && (st.mode & 0o022) === 0;
}

/**
 * The cache's bytes when it can be trusted, else undefined (never an error: it is optional).
 * Read into `spare` when it fits: every fresh page costs a fault, and the bundle's bytes, once
 * they are a string, are not needed again. `file` is the cache or, for --check-code-cache, the
 * file given (--write-code-cache's new one, beside it), read the same way; the directory checked
 * is the cache's.
 */
function readCache(spare: Buffer, file = cacheFile): Buffer | undefined {
  let fd: number | undefined;
  try {
    if (!trusted(fs.statSync(cacheDir))) return undefined;
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
    const st = fs.fstatSync(fd);
    if (!st.isFile() || !trusted(st)) return undefined;
    const b = st.size <= spare.length ? spare.subarray(0, st.size) : Buffer.allocUnsafe(st.size);
    return fs.readSync(fd, b, 0, st.size, 0) === st.size ? b : undefined;
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/** A whole file's bytes (the buffer may be longer: the length is the file's). */
function readBytes(file: string): { bytes: Buffer; length: number } {
  const fd = fs.openSync(file, fs.constants.O_RDONLY);
  try {
    const size = fs.fstatSync(fd).size;
    const bytes = Buffer.allocUnsafeSlow(size);
    let length = 0;
    for (let n = -1; n !== 0 && length < size; length += n)
      n = fs.readSync(fd, bytes, length, size - length, length);
    return { bytes, length };
  } finally {
    fs.closeSync(fd);
  }
}

/** Is this bundle text the build this launcher was made with? (Its second line names it.) */
const sameBuild = (text: string) =>
  text.startsWith(`// vfioctl bundle ${BUNDLE_ID}\n`, text.indexOf('\n') + 1);

/** The bundle's value when run as a script (scripts/bundle.mjs): its CommonJS body. */
type BundleMain = (
  exports: unknown,
  require: NodeJS.Require,
  module: { exports: unknown },
  filename: string,
  dirname: string,
) => void;

/**
 * The bundle as a script whose value is the function Node's CommonJS loader would make of it,
 * with the code cache `cache` gives only when the bundle is the one this launcher was built
 * with. The file is ASCII (the build checks): read as latin1 it is V8's string in one copy, and
 * V8 reads the interpreter line as a comment (hashbang grammar), so the file's text is the
 * script's.
 */
function compile(cache: (spare: Buffer) => Buffer | undefined): vm.Script {
  const { bytes, length } = readBytes(bundleFile);
  const text = bytes.toString('latin1', 0, length);
  const cachedData = sameBuild(text) ? cache(bytes) : undefined;
  // Loaded here, not for --version: node:vm is not in node's start-up snapshot, and under the
  // interpreter line's flag V8 refuses node's own code cache for it too (compiled, ~1 ms).
  const { Script } = require('node:vm') as typeof vm;
  return new Script(text, { filename: bundleFile, ...(cachedData ? { cachedData } : {}) });
}

type Run = (
  argv: string[],
  io: { out(s: string): void; err(s: string): void; env: NodeJS.ProcessEnv; stdin(): string },
) => Promise<number>;

/**
 * Runs read-only commands in this process so that the functions they call are compiled, then
 * writes what V8 compiled (atomically; older caches go). On the live host by default (the
 * CLI's own VFIOCTL_ROOT is honoured).
 */
async function writeCodeCache(): Promise<number> {
  if (!sameBuild(fs.readFileSync(bundleFile, 'latin1')))
    throw new Error(
      `${bundleFile} is not the build this launcher was made with (its second line names another): install both from one build`,
    );
  // A start reads a cache only from a directory it trusts (readCache): say so now, not after the
  // work, and keep no cache nothing would read.
  fs.mkdirSync(cacheDir, { recursive: true, mode: 0o755 });
  const dir = fs.statSync(cacheDir);
  if (!trusted(dir))
    throw new Error(
      `${cacheDir} is owned by uid ${dir.uid} with mode ${(dir.mode & 0o7777).toString(8)}: a start by this user reads a cache only from a directory root or it owns and no one else can write (chmod go-w ${cacheDir})`,
    );
  // Whoever started this (`node vfioctl --write-code-cache` has no interpreter line), the cache is
  // for the flags a start through the interpreter line has.
  const v8 = require('node:v8') as typeof import('node:v8');
  const startFlags = () => {
    for (const f of NODE_FLAGS) v8.setFlagsFromString(f);
  };
  startFlags();
  const script = compile(() => undefined);
  // Not the main module: the bundle exports run() instead of running the command line.
  const mod = { exports: {} as { run?: Run } };
  (script.runInThisContext() as BundleMain)(
    mod.exports,
    require,
    mod,
    bundleFile,
    path.dirname(bundleFile),
  );
  const run = mod.exports.run!;
  let out = '';
  const io = {
    out: (s: string) => void (out += s),
    err: () => {},
    env: process.env,
    stdin: () => '',
  };
  await run(['list', '--json'], io);
  let first: string | undefined;
  try {
    first = (JSON.parse(out) as { address: string }[])[0]?.address;
  } catch {
    first = undefined;
  }
  for (const argv of [
    ...(first
      ? [
          ['show', first, '--json'],
          ['show', first],
        ]
      : []),
    ['list'],
    ['status', '--json'],
    ['config', 'check', '--json'],
    ['--help'],
  ])
    await run(argv, io);
  // V8 stamps the cache with its flags, and a host with many functions sets two (cli/context.ts)
  // that a fresh start does not have yet: back to V8's default (flag-definitions.h) and to the
  // interpreter line's, and the cache is checked below in a fresh node started as that line
  // starts one, which is what every start will be.
  v8.setFlagsFromString('--semi-space-growth-factor=2');
  startFlags();
  const data = script.createCachedData();
  const tmp = `${cacheFile}.${process.pid}.tmp`;
  fs.writeFileSync(tmp, data, { mode: 0o644, flag: 'wx' });
  // The check a start makes, in a fresh node: accepted or not.
  const { spawnSync } = require('node:child_process') as typeof import('node:child_process');
  const check = spawnSync(process.execPath, [...NODE_FLAGS, __filename, CHECK, tmp], {
    stdio: 'ignore',
  });
  if (check.status !== 0) {
    fs.rmSync(tmp, { force: true });
    throw new Error(`a fresh ${process.execPath} rejects the cache made here: none kept`);
  }
  fs.renameSync(tmp, cacheFile);
  for (const f of fs.readdirSync(cacheDir))
    if (/^vfioctl\.js\..*\.code-cache$/.test(f) && f !== path.basename(cacheFile))
      fs.rmSync(path.join(cacheDir, f), { force: true });
  write(1, `vfioctl: code cache ${cacheFile} written (${data.length} bytes)\n`);
  return 0;
}

function main(): void {
  const [arg, ...rest] = process.argv.slice(2);
  // Answered before anything is read: commander would print the same line.
  if ((arg === '--version' || arg === '-V') && rest.length === 0) {
    write(1, `${VERSION}\n`);
    return;
  }
  if (arg === CHECK && rest.length === 1) {
    // Accepted only when given and taken (undefined: not given, the bundle is another build's).
    // Nothing is run: this is also what every command but --version pays before its own code
    // (bench/run.ts times it).
    process.exitCode =
      compile((spare) => readCache(spare, rest[0])).cachedDataRejected === false ? 0 : 1;
    return;
  }
  if (arg === '--write-code-cache' && rest.length === 0) {
    writeCodeCache().then(
      (code) => {
        process.exitCode = code;
      },
      (e: Error) => {
        write(2, `vfioctl: --write-code-cache: ${e.message}\n`);
        process.exitCode = 1;
      },
    );
    return;
  }
  const script = compile(readCache);
  // This module is the main one: the bundle runs the command line as `node vfioctl.js` does.
  (script.runInThisContext() as BundleMain)(
    module.exports,
    require,
    module,
    bundleFile,
    path.dirname(bundleFile),
  );
}

main();
