// The command as installed (dist/vfioctl, the package's /usr/sbin/vfioctl) starts the bundle from
// V8's code cache: the answers must be the bundle's own, and a cache is used only when it was
// made for this bundle and this node and no one but root or the user can have written it.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { E1, ModelHost } from '../support/model-host';
import { interpreterFlags, nodeArgv } from '../support/interpreter';

const DIST = path.resolve(__dirname, '../../../dist');
const VERSION = (
  JSON.parse(fs.readFileSync(path.resolve(__dirname, '../../../package.json'), 'utf8')) as {
    version: string;
  }
).version;

/** A copy of the two files in a directory of its own (0755, as an install has them). */
function install(): { dir: string; cli: string; bundle: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-launcher-'));
  fs.chmodSync(dir, 0o755);
  for (const f of ['vfioctl', 'vfioctl.js']) {
    fs.copyFileSync(path.join(DIST, f), path.join(dir, f));
    fs.chmodSync(path.join(dir, f), 0o755);
  }
  return { dir, cli: path.join(dir, 'vfioctl'), bundle: path.join(dir, 'vfioctl.js') };
}

/** `file args` as the kernel would start it (its interpreter line's flags), with this node. */
function node(file: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const [exe, ...argv] = nodeArgv(file);
  return spawnSync(exe!, [...argv, ...args], {
    encoding: 'utf8',
    env: { ...process.env, VFIOCTL_TRUST_UID: String(process.getuid?.()), ...env },
  });
}

function caches(dir: string): string[] {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.code-cache'));
}

test('--version answers before the bundle is read; --write-code-cache makes one cache, 0644, named for the bundle and this node, and drops older ones', () => {
  const i = install();
  const h = new ModelHost();
  try {
    fs.renameSync(i.bundle, `${i.bundle}.away`);
    const v = node(i.cli, ['--version']);
    assert.deepEqual([v.status, v.stdout, v.stderr], [0, `${VERSION}\n`, '']);
    assert.notEqual(node(i.cli, ['list']).status, 0, 'anything else needs the bundle');
    fs.renameSync(`${i.bundle}.away`, i.bundle);
    const old = path.join(i.dir, 'vfioctl.js.0123456789abcdef.v18.0.0.x64.code-cache');
    fs.writeFileSync(old, 'old', { mode: 0o644 });
    const w = node(i.cli, ['--write-code-cache'], { VFIOCTL_ROOT: h.f.dir });
    assert.equal(w.status, 0, w.stderr);
    const id = /^\/\/ vfioctl bundle ([0-9a-f]{16})$/m.exec(fs.readFileSync(i.bundle, 'utf8'))![1];
    const name = `vfioctl.js.${id}.${process.version}.${process.arch}.code-cache`;
    assert.deepEqual(caches(i.dir), [name]);
    assert.equal(
      w.stdout,
      `vfioctl: code cache ${path.join(i.dir, name)} written (${fs.statSync(path.join(i.dir, name)).size} bytes)\n`,
    );
    assert.equal(fs.statSync(path.join(i.dir, name)).mode & 0o777, 0o644);
  } finally {
    h.cleanup();
    fs.rmSync(i.dir, { recursive: true, force: true });
  }
});

test("the launcher's answers are the bundle's: output, errors and exit codes, with the cache", () => {
  const i = install();
  const h = new ModelHost();
  try {
    // The launcher reads the bundle as latin1 (one copy, not UTF-8's two): that is its text only
    // while every byte is ASCII (esbuild escapes the rest; scripts/bundle.mjs checks).
    const bytes = fs.readFileSync(i.bundle);
    assert.ok(
      bytes.every((b) => b < 0x80),
      'the bundle is ASCII',
    );
    assert.equal(node(i.cli, ['--write-code-cache'], { VFIOCTL_ROOT: h.f.dir }).status, 0);
    for (const args of [
      ['list', '--json'],
      ['list'],
      ['show', E1, '--json'],
      ['show', '0000:99:00.0'],
      ['status', '--json'],
      ['bind', E1, '--dry-run', '--json'],
      ['bind', 'eth0', '--driver', 'bad name'],
      ['no-such-command'],
      ['show', 'caf\u00e9'],
      ['--help'],
    ]) {
      const a = node(i.cli, ['--root', h.f.dir, ...args]);
      const b = node(i.bundle, ['--root', h.f.dir, ...args]);
      assert.deepEqual(
        [a.status, a.stdout, a.stderr],
        [b.status, b.stdout, b.stderr],
        args.join(' '),
      );
    }
  } finally {
    h.cleanup();
    fs.rmSync(i.dir, { recursive: true, force: true });
  }
});

test('the cache is used, and only when root or the user owns it and its directory, no one else can write them, and the bundle is the one it was made for', () => {
  const i = install();
  const h = new ModelHost();
  try {
    assert.equal(node(i.cli, ['--write-code-cache'], { VFIOCTL_ROOT: h.f.dir }).status, 0);
    const [cache] = caches(i.dir);
    // A bundle changed in place, to the same length: V8 itself checks no more than the length,
    // so what the cache holds shows in what runs (the program's description is compiled code).
    const text = fs.readFileSync(i.bundle, 'utf8');
    const said = 'Put PCI devices on the right VFIO driver';
    const changed = 'Qut PCI devices on the right VFIO driver';
    assert.ok(text.includes(said));
    fs.writeFileSync(i.bundle, text.replace(said, changed));
    const help = () => node(i.cli, ['--help']).stdout;
    assert.match(help(), /^Put PCI devices/m, 'the cached code ran');
    fs.chmodSync(path.join(i.dir, cache!), 0o664);
    assert.match(help(), /^Qut PCI devices/m, 'a group-writable cache is not read');
    fs.chmodSync(path.join(i.dir, cache!), 0o644);
    fs.chmodSync(i.dir, 0o777);
    assert.match(help(), /^Qut PCI devices/m, 'nor one in a directory others can write');
    fs.chmodSync(i.dir, 0o755);
    assert.match(help(), /^Put PCI devices/m);
    // The interpreter line starts node without Sparkplug (scripts/bundle.mjs), and V8 takes a cache
    // only under the flags it was made with: a bare `node vfioctl` compiles the text...
    const bare = (args: string[]) =>
      spawnSync(process.execPath, [i.cli, ...args], {
        encoding: 'utf8',
        env: { ...process.env, VFIOCTL_TRUST_UID: String(process.getuid?.()) },
      });
    assert.deepEqual(interpreterFlags(i.cli), ['--no-sparkplug']);
    assert.match(bare(['--help']).stdout, /^Qut PCI devices/m, 'not the cache, under other flags');
    // ... and `node vfioctl --write-code-cache` still makes the cache for the interpreter line's.
    fs.writeFileSync(i.bundle, text);
    assert.equal(bare(['--write-code-cache']).status, 0);
    fs.writeFileSync(i.bundle, text.replace(said, changed));
    assert.match(help(), /^Put PCI devices/m, 'made under the flags a start has');
    // Another bundle (its second line names another build): compiled from its own text.
    fs.writeFileSync(
      i.bundle,
      text
        .replace(said, changed)
        .replace(/^\/\/ vfioctl bundle [0-9a-f]{16}$/m, '// vfioctl bundle 0000000000000000'),
    );
    assert.match(help(), /^Qut PCI devices/m, 'a cache never goes with another bundle');
    // No cache is made for a bundle of another build: it would never be used.
    fs.rmSync(path.join(i.dir, cache!));
    const other = node(i.cli, ['--write-code-cache'], { VFIOCTL_ROOT: h.f.dir });
    assert.equal(other.status, 1);
    assert.match(other.stderr, /vfioctl\.js is not the build this launcher was made with/);
    assert.deepEqual(caches(i.dir), []);
    // A damaged cache is V8's to refuse: the command still runs.
    fs.writeFileSync(i.bundle, text);
    fs.writeFileSync(path.join(i.dir, cache!), Buffer.alloc(4096, 7), { mode: 0o644 });
    const r = node(i.cli, ['--root', h.f.dir, 'show', E1, '--json']);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout).address, E1);
  } finally {
    h.cleanup();
    fs.rmSync(i.dir, { recursive: true, force: true });
  }
});

test('--check-code-cache takes a cache only as a start would (made for this bundle, trusted, not through a symlink), and --write-code-cache refuses a directory no start would read', () => {
  const i = install();
  const h = new ModelHost();
  try {
    assert.equal(node(i.cli, ['--write-code-cache'], { VFIOCTL_ROOT: h.f.dir }).status, 0);
    const cache = path.join(i.dir, caches(i.dir)[0]!);
    const check = (file: string) => node(i.cli, ['--check-code-cache', file]).status;
    assert.equal(check(cache), 0, 'the cache --write-code-cache made');
    const link = path.join(i.dir, 'link.code-cache');
    fs.symlinkSync(cache, link);
    assert.equal(check(link), 1, 'read without following a symlink, as a start reads its cache');
    fs.rmSync(link);
    fs.chmodSync(cache, 0o664);
    assert.equal(check(cache), 1, 'a group-writable cache is not read');
    fs.chmodSync(cache, 0o644);
    const junk = path.join(i.dir, 'junk.code-cache');
    fs.writeFileSync(junk, Buffer.alloc(4096, 7), { mode: 0o644 });
    assert.equal(check(junk), 1, 'V8 refuses what it did not make');
    assert.equal(check(path.join(i.dir, 'none.code-cache')), 1);
    // A directory no start would read a cache from: --write-code-cache says so and keeps none.
    fs.rmSync(junk);
    fs.rmSync(cache);
    fs.chmodSync(i.dir, 0o775);
    const w = node(i.cli, ['--write-code-cache'], { VFIOCTL_ROOT: h.f.dir });
    fs.chmodSync(i.dir, 0o755);
    assert.equal(w.status, 1);
    assert.match(
      w.stderr,
      /with mode 775: a start by this user reads a cache only from a directory/,
    );
    assert.deepEqual(caches(i.dir), []);
  } finally {
    h.cleanup();
    fs.rmSync(i.dir, { recursive: true, force: true });
  }
});
