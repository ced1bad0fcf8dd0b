// The `vfio_pci:` lines of a kernel's modules.alias, kept once per kernel so that `list` and
// `show` need not scan the ~1.3 MB file (27k lines) on every call: parsing it is a sixth of
// Node's own start-up. The index is a cache and never an authority: it is used only when it
// names the very file it was built from (device, inode, size and mtime in nanoseconds; depmod
// writes modules.alias to a temporary file and renames it, so a new index is a new inode),
// when root owns it and nobody else can have written it, and when every entry is well formed;
// anything else and the file is parsed again and the index rebuilt.
import type { HostRoot } from '../host/root';
import {
  type FileIdentity,
  RUN_DIR,
  readRunCache,
  sameIdentity,
  writeRunCache,
} from '../host/run-cache';
import { aliasNormalize } from './fnmatch';

export { type FileIdentity, fileIdentity } from '../host/run-cache';

const FORMAT = 1;
/** A release usable as a file name (`--kernel` is the user's string). */
const RELEASE = /^[A-Za-z0-9][A-Za-z0-9._+~-]{0,127}$/;
const MODULE = /^[A-Za-z0-9_]+$/;

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

const isInt = (x: unknown, min: number): x is number =>
  typeof x === 'number' && Number.isInteger(x) && x >= min;

/** The index for `release` when it is trustworthy and names exactly `id`, else undefined. */
export function readAliasIndex(
  root: HostRoot,
  release: string,
  id: FileIdentity,
): AliasIndex | undefined {
  const rel = indexPath(release);
  if (rel === undefined) return undefined;
  const x = readRunCache(root, rel) as {
    format?: unknown;
    release?: unknown;
    file?: unknown;
    count?: unknown;
    vfio?: unknown;
  } | null;
  if (
    typeof x !== 'object' ||
    x === null ||
    x.format !== FORMAT ||
    x.release !== release ||
    !isInt(x.count, 0) ||
    !Array.isArray(x.vfio) ||
    !sameIdentity(x.file, id)
  )
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

/** Writes the index (host/run-cache.ts writeRunCache: root only, atomically, settled files). */
export function writeAliasIndex(
  root: HostRoot,
  release: string,
  id: FileIdentity & { readonly mtime: bigint },
  index: AliasIndex,
): void {
  const rel = indexPath(release);
  if (rel === undefined) return;
  const { mtime: _, ...identity } = id;
  writeRunCache(root, rel, id, {
    format: FORMAT,
    release,
    file: identity,
    count: index.count,
    vfio: index.vfio,
  });
}
