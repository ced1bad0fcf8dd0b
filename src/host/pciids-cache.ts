// The pci.ids names of the host's own devices, kept in vfioctl's run directory so that `list` and
// `show` need not scan the ~1.3 MB file on every call (a small host's `list --json` is ~3 %
// faster). What a writing command reads anyway (every device, under the lock) is what it
// keeps: each vendor's name, each vendor:device's (null: the file has none) and the file's whole
// class table. A cache and never an authority (run-cache.ts): it must name the very file the
// names would be read from, the first pci.ids that exists, and hold every id asked for;
// otherwise the file is read as before.
import type { NameMaps, WantedIds } from './pciids';
import type { HostRoot } from './root';
import {
  type FileIdentity,
  fileIdentity,
  RUN_DIR,
  readRunCache,
  sameIdentity,
  writeRunCache,
} from './run-cache';

const FORMAT = 1;
const CACHE = `${RUN_DIR}/pci-names.json`;

interface CacheFile {
  readonly format: number;
  readonly source: string;
  readonly file: FileIdentity;
  readonly vendors: Record<string, string | null>;
  readonly devices: Record<string, string | null>;
  readonly classes: Record<string, string>;
}

const ID = /^[0-9a-f]{4}$/;
const CLASS = /^[0-9a-f]{2}(?:[0-9a-f]{2}){0,2}$/;
const deviceKey = (k: string) =>
  k.length === 9 && k[4] === ':' && ID.test(k.slice(0, 4)) && ID.test(k.slice(5));
const isName = (v: unknown): v is string => typeof v === 'string' && !v.includes('\n');

const isRecord = (o: unknown): o is Record<string, unknown> =>
  typeof o === 'object' && o !== null && !Array.isArray(o);

/** Every key well formed and every value a name (or null where nulls are allowed). */
function wellFormed(
  o: unknown,
  key: (k: string) => boolean,
  nullable: boolean,
): o is Record<string, string | null> {
  if (!isRecord(o)) return false;
  for (const [k, v] of Object.entries(o))
    if (!key(k) || !(isName(v) || (nullable && v === null))) return false;
  return true;
}

/** The names of every id in `want`, from a trustworthy cache of the file they would come from. */
export function readPciNamesCache(
  root: HostRoot,
  paths: readonly string[],
  want: WantedIds,
): NameMaps | undefined {
  if (want.size === 0) return undefined;
  const x = readRunCache(root, CACHE) as Partial<CacheFile> | undefined;
  if (typeof x !== 'object' || x === null || x.format !== FORMAT) return undefined;
  // The first pci.ids that exists is the one loadPciNames would read: it must be the cache's.
  let id: FileIdentity | undefined;
  const source = paths.find((p) => (id = fileIdentity(root, p)) !== undefined);
  if (id === undefined || x.source !== source || !sameIdentity(x.file, id)) return undefined;
  const { vendors, devices, classes } = x;
  if (!isRecord(vendors) || !isRecord(devices) || !isRecord(classes)) return undefined;
  const m: NameMaps = { vendorNames: new Map(), deviceNames: new Map(), classNames: new Map() };
  // Only the ids asked for are looked at (and must be there); the class table is used whole.
  const take = (o: Record<string, unknown>, k: string, into: Map<string, string>): boolean => {
    if (!Object.hasOwn(o, k)) return false;
    const v = o[k];
    if (isName(v)) into.set(k, v);
    return isName(v) || v === null;
  };
  for (const [v, ds] of want) {
    if (!take(vendors, v, m.vendorNames)) return undefined;
    for (const d of ds) if (!take(devices, `${v}:${d}`, m.deviceNames)) return undefined;
  }
  for (const c in classes) {
    const n = classes[c];
    if (!CLASS.test(c) || !isName(n)) return undefined;
    m.classNames.set(c, n);
  }
  return m;
}

/** Keeps the names `m` read from `source` (of identity `id`) for the ids in `want`. */
export function writePciNamesCache(
  root: HostRoot,
  source: string,
  id: FileIdentity & { readonly mtime: bigint },
  want: WantedIds,
  m: NameMaps,
): void {
  const vendors: Record<string, string | null> = {};
  const devices: Record<string, string | null> = {};
  for (const [v, ds] of want) {
    vendors[v] = m.vendorNames.get(v) ?? null;
    for (const d of ds) devices[`${v}:${d}`] = m.deviceNames.get(`${v}:${d}`) ?? null;
  }
  const { mtime: _, ...file } = id;
  const classes = Object.fromEntries(m.classNames);
  // What a reader would refuse (an odd file's class keys, say) is not written: it would be
  // rewritten by every writing command.
  if (
    !wellFormed(vendors, (k) => ID.test(k), true) ||
    !wellFormed(devices, deviceKey, true) ||
    !wellFormed(classes, (k) => CLASS.test(k), false)
  )
    return;
  const cache: CacheFile = {
    format: FORMAT,
    source,
    file,
    vendors,
    devices,
    classes,
  };
  writeRunCache(root, CACHE, id, cache);
}
