// Caches vfioctl keeps in its run directory (tmpfs: gone with a reboot) of what it would
// otherwise derive from a big file on every call: the modules.alias index, the pci.ids names of
// the host's devices. A cache is never an authority: it names the very file it was made from
// (device, inode, size and mtime in nanoseconds: a package update renames a new file into place,
// a new inode), it is read only when root owns it and nobody else can have written it, and
// anything else makes the caller derive the answer from the file itself.
import * as fs from 'node:fs';
import type { HostRoot } from './root';
import { untrustedReason } from './trust';

/** vfioctl's run directory: tmpfs, so what is kept there goes with a reboot (apply/lock.ts). */
export const RUN_DIR = '/run/vfioctl';

/**
 * A file changed again within the same timestamp tick would keep its identity: a cache is made
 * only from a file at least this old (git's "racily clean" rule), so a later change moves mtime.
 */
const SETTLED_NS = 2_000_000_000n;

export interface FileIdentity {
  readonly dev: string;
  readonly ino: string;
  readonly size: string;
  readonly mtimeNs: string;
}

export function fileIdentity(
  root: HostRoot,
  rel: string,
): (FileIdentity & { readonly mtime: bigint }) | undefined {
  try {
    const st = fs.statSync(root.path(rel), { bigint: true });
    if (!st.isFile()) return undefined;
    return {
      dev: String(st.dev),
      ino: String(st.ino),
      size: String(st.size),
      mtimeNs: String(st.mtimeNs),
      mtime: st.mtimeNs,
    };
  } catch {
    return undefined;
  }
}

export function sameIdentity(recorded: unknown, id: FileIdentity): boolean {
  if (typeof recorded !== 'object' || recorded === null) return false;
  const f = recorded as Partial<FileIdentity>;
  return f.dev === id.dev && f.ino === id.ino && f.size === id.size && f.mtimeNs === id.mtimeNs;
}

/** The cache's JSON when root's own, in directories only root can change; else undefined. */
export function readRunCache(root: HostRoot, rel: string): unknown {
  if (!root.hasEntry(rel)) return undefined;
  if (untrustedReason(root, rel, { uids: [0] }) !== null) return undefined;
  try {
    return JSON.parse(root.readFile(rel) ?? '');
  } catch {
    return undefined;
  }
}

/**
 * Writes a cache made from a file of identity `id` atomically (a new file renamed over the old),
 * as root, only into a run directory that already exists as root's (a writing command or the
 * boot layer made it): a read-only command never creates a directory. A cache that cannot be
 * written is only a slower next call.
 */
export function writeRunCache(
  root: HostRoot,
  rel: string,
  id: { readonly mtime: bigint },
  value: unknown,
): void {
  if (process.geteuid?.() !== 0) return;
  if (BigInt(Date.now()) * 1_000_000n - id.mtime < SETTLED_NS) return;
  let tmp: string | undefined;
  try {
    const dir = fs.lstatSync(root.confine(RUN_DIR));
    if (!dir.isDirectory() || dir.uid !== 0 || (dir.mode & 0o022) !== 0) return;
    const file = root.confine(rel);
    tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(value), { flag: 'wx', mode: 0o644 });
    fs.renameSync(tmp, file);
    tmp = undefined;
  } catch {
    /* see above */
  } finally {
    if (tmp !== undefined) fs.rmSync(tmp, { force: true });
  }
}
