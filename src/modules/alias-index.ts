// The `vfio_pci:` lines of a kernel's modules.alias, kept once per kernel so that `list` and
// `show` need not scan the ~1.3 MB file (27k lines) on every call: parsing it is a sixth of
// Node's own start-up. The index is a cache and never an authority: it is used only when it
// names the very file it was built from (device, inode, size and mtime in nanoseconds; depmod
// writes modules.alias to a temporary file and renames it, so a new index is a new inode),
// when root owns it and nobody else can have written it, and when every entry is well formed;
// anything else and the file is parsed again and the index rebuilt.
import * as fs from 'node:fs';
import type { HostRoot } from '../host/root';
import { untrustedReason } from '../host/trust';
import { aliasNormalize } from './fnmatch';

const FORMAT = 1;
/** vfioctl's run directory (apply/lock.ts RUN_DIR): tmpfs, so the index goes with a reboot. */
const RUN_DIR = '/run/vfioctl';
/** A release usable as a file name (`--kernel` is the user's string). */
const RELEASE = /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$/;
const MODULE = /^[A-Za-z0-9_]+$/;
/**
 * A file changed again within the same timestamp tick would keep its identity: an index is built
 * only from a file at least this old (git's "racily clean" rule), so a later change moves mtime.
 */
const SETTLED_NS = 2_000_000_000n;

export interface FileIdentity {
  readonly dev: string;
  readonly ino: string;
  readonly size: string;
  readonly mtimeNs: string;
}

/**
 * One `vfio_pci:` line: pattern, module (normalised), order among all aliases, line, byte offset.
 */
export type IndexedAlias = readonly [
  pattern: string,
  module: string,
  order: number,
  line: number,
  offset: number,
];

export interface AliasIndex {
  /** Aliases of the file in all (the order number the next source starts at). */
  readonly count: number;
  readonly vfio: readonly IndexedAlias[];
}

export function indexPath(release: string): string | undefined {
  return RELEASE.test(release) ? `${RUN_DIR}/alias-index.${release}.json` : undefined;
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

const isInt = (x: unknown, min: number): x is number =>
  typeof x === 'number' && Number.isInteger(x) && x >= min;

/** The index for `release` when it is trustworthy and names exactly `id`, else undefined. */
export function readAliasIndex(
  root: HostRoot,
  release: string,
  id: FileIdentity,
): AliasIndex | undefined {
  const rel = indexPath(release);
  if (rel === undefined || !root.hasEntry(rel)) return undefined;
  // Root's own, in directories only root can change: what a non-root user wrote is never read.
  if (untrustedReason(root, rel, { uids: [0] }) !== null) return undefined;
  let x: {
    format?: unknown;
    release?: unknown;
    file?: Partial<FileIdentity>;
    count?: unknown;
    vfio?: unknown;
  };
  try {
    x = JSON.parse(root.readFile(rel) ?? '');
  } catch {
    return undefined;
  }
  if (
    typeof x !== 'object' ||
    x === null ||
    x.format !== FORMAT ||
    x.release !== release ||
    !isInt(x.count, 0) ||
    !Array.isArray(x.vfio)
  )
    return undefined;
  const f = x.file;
  if (!f || f.dev !== id.dev || f.ino !== id.ino || f.size !== id.size || f.mtimeNs !== id.mtimeNs)
    return undefined;
  let order = -1;
  let line = 0;
  let offset = -1;
  for (const e of x.vfio as unknown[]) {
    if (!Array.isArray(e) || e.length !== 5) return undefined;
    const [p, m, o, l, b] = e as unknown[];
    if (
      typeof p !== 'string' ||
      typeof m !== 'string' ||
      !MODULE.test(m) ||
      !isInt(o, order + 1) ||
      !isInt(l, line + 1) ||
      !isInt(b, offset + 1) ||
      o >= x.count
    )
      return undefined;
    if (!aliasNormalize(p)?.startsWith('vfio_pci:') || /\s/.test(p)) return undefined;
    order = o;
    line = l;
    offset = b;
  }
  return { count: x.count, vfio: x.vfio as IndexedAlias[] };
}

/**
 * Writes the index atomically (a new file renamed over the old), as root, only into a run
 * directory that already exists as root's (a writing command or the boot layer made it): a
 * read-only command never creates a directory.
 */
export function writeAliasIndex(
  root: HostRoot,
  release: string,
  id: FileIdentity & { readonly mtime: bigint },
  index: AliasIndex,
): void {
  const rel = indexPath(release);
  if (rel === undefined || process.geteuid?.() !== 0) return;
  if (BigInt(Date.now()) * 1_000_000n - id.mtime < SETTLED_NS) return;
  let tmp: string | undefined;
  try {
    const dir = fs.lstatSync(root.confine(RUN_DIR));
    if (!dir.isDirectory() || dir.uid !== 0 || (dir.mode & 0o022) !== 0) return;
    const file = root.confine(rel);
    tmp = `${file}.${process.pid}.tmp`;
    const { mtime: _, ...identity } = id;
    fs.writeFileSync(
      tmp,
      JSON.stringify({
        format: FORMAT,
        release,
        file: identity,
        count: index.count,
        vfio: index.vfio,
      }),
      { flag: 'wx', mode: 0o644 },
    );
    fs.renameSync(tmp, file);
    tmp = undefined;
  } catch {
    // A cache that cannot be written is only a slower next call.
  } finally {
    if (tmp !== undefined) fs.rmSync(tmp, { force: true });
  }
}
