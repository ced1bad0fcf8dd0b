// The guest's initramfs: static busybox, e2e/guest/init, and the few modules needed to mount the
// host's root over 9p (with their modules.dep closure, decompressed, listed in load order).
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { gzipSync } from 'node:zlib';
import { cpioArchive, type CpioEntry } from './cpio';

/** What the guest needs to reach its root over 9p (virtio_pci is built into 6.12) and to put the
 * kernel's modules on /lib/modules (overlay). */
export const BOOT_MODULES = ['virtio_pci', '9pnet_virtio', '9p', 'overlay'] as const;

export const BUSYBOX = '/bin/busybox';

export interface ModuleIndex {
  /** module name (underscores) -> path relative to lib/modules/<release> */
  readonly paths: ReadonlyMap<string, string>;
  /** module path -> dependency paths (modules.dep) */
  readonly deps: ReadonlyMap<string, readonly string[]>;
  readonly builtin: ReadonlySet<string>;
}

export function moduleName(p: string): string {
  return path
    .basename(p)
    .replace(/\.ko(\.xz|\.zst|\.gz)?$/, '')
    .replace(/-/g, '_');
}

export function readModuleIndex(modulesDir: string): ModuleIndex {
  const paths = new Map<string, string>();
  const deps = new Map<string, string[]>();
  for (const line of fs.readFileSync(path.join(modulesDir, 'modules.dep'), 'utf8').split('\n')) {
    const colon = line.indexOf(':');
    if (colon < 0) continue;
    const p = line.slice(0, colon);
    paths.set(moduleName(p), p);
    deps.set(
      p,
      line
        .slice(colon + 1)
        .trim()
        .split(/\s+/)
        .filter(Boolean),
    );
  }
  const builtin = new Set(
    fs
      .readFileSync(path.join(modulesDir, 'modules.builtin'), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map(moduleName),
  );
  return { paths, deps, builtin };
}

/**
 * Module paths needed for `names`, dependencies before dependants; built-in modules are skipped.
 */
export function loadOrder(index: ModuleIndex, names: readonly string[]): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  const visit = (p: string): void => {
    if (seen.has(p)) return;
    seen.add(p);
    for (const d of index.deps.get(p) ?? []) visit(d);
    order.push(p);
  };
  for (const n of names) {
    const name = n.replace(/-/g, '_');
    const p = index.paths.get(name);
    if (p) visit(p);
    else if (!index.builtin.has(name))
      throw new Error(`module ${n} is neither in modules.dep nor built in`);
  }
  return order;
}

function readModule(file: string): Buffer {
  if (file.endsWith('.xz')) return execFileSync('xz', ['-dc', file], { maxBuffer: 256 << 20 });
  if (file.endsWith('.zst')) return execFileSync('zstd', ['-qdc', file], { maxBuffer: 256 << 20 });
  if (file.endsWith('.gz')) return execFileSync('gzip', ['-dc', file], { maxBuffer: 256 << 20 });
  return fs.readFileSync(file);
}

export interface InitramfsInput {
  readonly release: string;
  /** The unpacked kernel's lib/modules/<release>. */
  readonly modulesDir: string;
  /** Contents of the guest's /init. */
  readonly init: Buffer;
}

/** Builds the gzip-compressed initramfs image and writes it to `out`. */
export function buildInitramfs(
  input: InitramfsInput,
  out: string,
): { modules: string[]; bytes: number } {
  const index = readModuleIndex(input.modulesDir);
  const order = loadOrder(index, BOOT_MODULES);
  const entries: CpioEntry[] = [];
  for (const d of [
    'bin',
    'dev',
    'etc',
    'proc',
    'sys',
    'run',
    'tmp',
    'newroot',
    'lib',
    'lib/modules',
    'lib/modules/e2e',
  ])
    entries.push({ kind: 'dir', path: d });
  entries.push({ kind: 'chardev', path: 'dev/console', major: 5, minor: 1 });
  entries.push({ kind: 'file', path: 'bin/busybox', data: fs.readFileSync(BUSYBOX), mode: 0o755 });
  const applets = execFileSync(BUSYBOX, ['--list'], { encoding: 'utf8' })
    .split('\n')
    .filter((a) => a && a !== 'busybox');
  for (const a of applets) entries.push({ kind: 'symlink', path: `bin/${a}`, target: 'busybox' });
  entries.push({ kind: 'file', path: 'init', data: input.init, mode: 0o755 });
  const names: string[] = [];
  for (const p of order) {
    const name = `${moduleName(p)}.ko`;
    entries.push({
      kind: 'file',
      path: `lib/modules/e2e/${name}`,
      data: readModule(path.join(input.modulesDir, p)),
    });
    names.push(name);
  }
  // /init insmods these in this order.
  entries.push({
    kind: 'file',
    path: 'etc/e2e-modules',
    data: Buffer.from(names.map((n) => `/lib/modules/e2e/${n}\n`).join('')),
  });
  const image = gzipSync(cpioArchive(entries), { level: 1 });
  fs.writeFileSync(out, image);
  return { modules: names, bytes: image.length };
}
