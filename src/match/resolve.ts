// "vfio" = the best vfio-pci-class driver for a device, found the way kernel commit cc6711b0bf36
// describes: prefix the modalias with `vfio_`, fnmatch it against every `vfio_pci:` alias, and
// take the entry with the fewest wildcard fields; on a tie the earlier modules.alias line wins
// (libvirt's virPCIDeviceFindBestVFIOVariant). "Best" is the best *usable* candidate.
import type { PciDevice } from '../host/pci';
import { modaliasOf } from '../host/pci';
import type { ModuleState, Snapshot } from '../read/snapshot';
import { VFIO_PCI_MODULE, type AliasDb, type PciAlias } from '../modules/alias';

export { VFIO_PCI_MODULE } from '../modules/alias';
import { driverNameForModule } from '../modules/loaded';
import { aliasNormalize, fnmatch } from '../modules/fnmatch';
import { VARIANT_RULES, variantRule } from './variants';

export interface Candidate {
  readonly module: string;
  readonly driver: string;
  /**
   * The matching alias pattern (for an implicit built-in vfio_pci, the catch-all it stands for).
   */
  readonly alias: string;
  readonly wildcards: number;
  /**
   * Where the alias comes from. Implicit catch-alls for a vfio-pci no alias names: `builtin`
   * (its table is in no file before ~6.18), `no-id-table` (a module without an ID table: kernels
   * before 5.15), `modules.dep` (a 5.15+ module whose alias is missing: stale modules.alias),
   * `loaded` (only its registered driver says it exists).
   */
  readonly source:
    | 'modules.alias'
    | 'modules.builtin.modinfo'
    | 'builtin'
    | 'known-variants'
    | 'no-id-table'
    | 'modules.dep'
    | 'loaded';
  readonly usable: boolean;
  /** Why it is unusable (null when usable). */
  readonly reason: string | null;
  /** What binding it would still lose (e.g. migration), for a usable candidate. */
  readonly notes: readonly string[];
}

export interface Resolution {
  /** The best usable choice. */
  readonly vfio: { readonly module: string; readonly driver: string } | null;
  /** Why vfio is null. */
  readonly reason: string | null;
  readonly candidates: readonly Candidate[];
  /** Why the candidates rank as they do, where it is not obvious (implicit vfio-pci, ties). */
  readonly explanation: readonly string[];
}

const CATCH_ALL = 'vfio_pci:v*d*sv*sd*bc*sc*i*';
const FIELDS = /^(?:vfio_)?pci:v(.*)d(.*)sv(.*)sd(.*)bc(.*)sc(.*)i(.*)$/;

/** Number of wholly-wildcard fields (v, d, sv, sd, bc, sc, i); `*` count for odd patterns. */
export function wildcardCount(pattern: string): number {
  const m = FIELDS.exec(pattern);
  if (!m) return (pattern.match(/\*/g) ?? []).length;
  return m.slice(1).filter((f) => f === '*').length;
}

// The normalised queries of the last modalias: callers test one modalias against many aliases.
let lastModalias: string | undefined;
let lastQuery: string | null = null;
let lastVfioQuery: string | null = null;

/**
 * Does this (normalised) alias pattern match the device? Used for `vfio_pci:` and `pci:` tables.
 */
export function aliasMatches(alias: PciAlias, modalias: string): boolean {
  if (modalias !== lastModalias) {
    lastModalias = modalias;
    lastQuery = aliasNormalize(modalias);
    lastVfioQuery = aliasNormalize(`vfio_${modalias}`);
  }
  const q = alias.normalized.startsWith('vfio_') ? lastVfioQuery : lastQuery;
  return q !== null && fnmatch(alias.normalized, q);
}

/** Every `vfio_pci:` alias that matches this modalias, in modules.alias order (what kmod finds). */
export function matchingVfioAliases(modalias: string, db: AliasDb): PciAlias[] {
  return db.vfio.filter((a) => aliasMatches(a, modalias));
}

interface RawCandidate {
  module: string;
  alias: string;
  wildcards: number;
  order: number;
  source: Candidate['source'];
  /** Line in its file (modules.alias, or the record in modules.builtin.modinfo). */
  line?: number;
}

// Candidates depend only on the modalias (and vendor:device, part of it) and the module
// state; thousands of VFs share one modalias, so each is matched once per module state.
const rawCache = new WeakMap<ModuleState, Map<string, readonly RawCandidate[]>>();

function rawCandidates(dev: PciDevice, mods: ModuleState): readonly RawCandidate[] {
  const modalias = modaliasOf(dev);
  const key = `${modalias} ${dev.vendor}:${dev.device}`;
  let byModalias = rawCache.get(mods);
  if (!byModalias) rawCache.set(mods, (byModalias = new Map()));
  let out = byModalias.get(key);
  if (!out) byModalias.set(key, (out = matchRaw(dev, modalias, mods)));
  return out;
}

function matchRaw(dev: PciDevice, modalias: string, mods: ModuleState): RawCandidate[] {
  const out: RawCandidate[] = [];
  for (const a of matchingVfioAliases(modalias, mods.aliases)) {
    out.push({
      module: a.module,
      alias: a.pattern,
      wildcards: wildcardCount(a.pattern),
      order: a.order,
      source: a.source,
      line: a.line,
    });
  }
  const base = mods.aliases.vfio.length;
  // vfio-pci that no alias names is the implicit catch-all (what libvirt and go-nvlib fall back
  // to): built in (before ~v6.18 a built-in driver's table appears nowhere), or a module with no
  // ID table at all (before v5.15, commit cc6711b0bf36; 5.10's vfio_pci.c: `.id_table = NULL,
  // /* only dynamic ids */`), or only loaded. With driver_override it binds any device
  // (pci_match_device()'s dummy id). A built-in variant is known only by our table.
  const implicit = mods.vfioPciWithoutTable;
  if (implicit !== null && implicit !== 'absent') {
    const source =
      implicit === 'module' ? 'no-id-table' : implicit === 'stale-alias' ? 'modules.dep' : implicit;
    out.push({
      module: VFIO_PCI_MODULE,
      alias: CATCH_ALL,
      wildcards: 7,
      order: base + 1_000_000,
      source,
    });
  }
  const id = `${dev.vendor}:${dev.device}`;
  VARIANT_RULES.forEach((r, i) => {
    if (
      !mods.builtin.has(r.module) ||
      mods.aliases.vfioByModule.has(r.module) ||
      !r.ids.includes(id)
    )
      return;
    const pattern = `vfio_pci:v0000${dev.vendor.toUpperCase()}d0000${dev.device.toUpperCase()}sv*sd*bc*sc*i*`;
    out.push({
      module: r.module,
      alias: pattern,
      wildcards: 5,
      order: base + i,
      source: 'known-variants',
    });
  });
  out.sort((a, b) => a.wildcards - b.wildcards || a.order - b.order);
  return out;
}

/** `*` characters: the kernel commit's wording ("fewest *'s"). */
const starCount = (pattern: string): number => (pattern.match(/\*/g) ?? []).length;

/** A full-class alias (bc, sc and i all given): file2alias appends a `*` after `iNN`. */
function fullClass(pattern: string): boolean {
  const m = FIELDS.exec(pattern);
  return (
    !!m &&
    /^[0-9A-F]{2}$/i.test(m[5]!) &&
    /^[0-9A-F]{2}$/i.test(m[6]!) &&
    /^[0-9A-F]{2}\*$/i.test(m[7]!)
  );
}

const where = (c: RawCandidate): string =>
  c.line !== undefined ? `${c.source} line ${c.line}` : c.source;

/**
 * Why the ranking is what it is where that is not obvious: an implicit vfio-pci, ties, star counts.
 */
function explain(raw: readonly RawCandidate[], mods: ModuleState): string[] {
  const out: string[] = [];
  const k = mods.release ?? 'this kernel';
  for (const c of raw) {
    if (c.source === 'no-id-table') {
      out.push(
        `vfio-pci has no ID table on ${k}: modules.alias has no vfio_pci: line at all (kernels before 5.15, commit cc6711b0bf36, e.g. Debian 11's 5.10), so vfio-pci (a module in modules.dep) is the VFIO driver for every device: it binds through driver_override; variant drivers do not exist before 5.15`,
      );
    } else if (c.source === 'builtin') {
      out.push(
        `vfio_pci is built into ${k} and its ID table is in no file (built-in aliases reach modules.builtin.modinfo only from about 6.18): taken as the catch-all ${CATCH_ALL}`,
      );
    } else if (c.source === 'modules.dep') {
      out.push(
        `vfio-pci is a module of ${k} (modules.dep) with vfio_pci_core beside it (5.15+), yet modules.alias has no vfio_pci: alias for it: modules.alias looks stale (run depmod ${k}); taken as the catch-all ${CATCH_ALL}`,
      );
    } else if (c.source === 'loaded') {
      out.push(
        `vfio-pci is registered but neither modules.alias, modules.builtin nor modules.dep of ${k} names it: taken as the catch-all ${CATCH_ALL}`,
      );
    }
  }
  // Ranking: fewest wholly-wildcard fields, as libvirt (virPCIDeviceFindBestVFIOVariant) and
  // NVIDIA's go-nvlib count; the kernel commit says "fewest *'s". The two differ only for a
  // full-class alias, which file2alias ends with one more `*` (`...bc02sc00i00*`).
  for (let i = 0; i < raw.length; i++) {
    for (let j = i + 1; j < raw.length; j++) {
      const a = raw[i]!;
      const b = raw[j]!;
      if (a.wildcards === b.wildcards) {
        out.push(
          `${a.module} and ${b.module} tie at ${a.wildcards} wildcard fields: the earlier alias wins (${where(a)} before ${where(b)}), as in libvirt and go-nvlib`,
        );
      } else if (
        starCount(a.alias) >= starCount(b.alias) &&
        (fullClass(a.alias) || fullClass(b.alias))
      ) {
        out.push(
          `${a.module} (${a.wildcards} wildcard fields) ranks above ${b.module} (${b.wildcards}): ${a.alias} is a full-class alias, which file2alias ends with an extra '*', so counting '*' characters (the kernel commit's "fewest *'s") would give ${starCount(a.alias)} against ${starCount(b.alias)}${starCount(a.alias) === starCount(b.alias) ? ' (a tie, won by the earlier line)' : ''}; vfioctl counts wildcard fields, as libvirt and go-nvlib do`,
        );
      }
    }
  }
  return out;
}

/** Why the kernel would refuse this candidate for this device, or null; plus what it would lose. */
function assess(
  module: string,
  dev: PciDevice,
  snap: Snapshot,
  opts: ResolveOptions,
): { reason: string | null; notes: string[] } {
  const notes: string[] = [];
  const bl = snap.modules.blacklist.entries.get(module);
  if (bl) return { reason: `blacklisted (${bl}): modprobe never loads it by alias`, notes };
  // vfio_pci_core: only type-0 headers (vfio_pci_probe -EINVAL for bridges).
  if (dev.headerType !== null && dev.headerType !== 0) {
    return {
      reason: `header type ${dev.headerType} (a bridge): vfio-pci drivers only take type 0 devices`,
      notes,
    };
  }
  // vfio_pci_core_register_device(): "Cannot bind to PF with SR-IOV enabled" (-EBUSY).
  if (dev.sriov && dev.sriov.numVfs > 0 && !opts.ignoreSriovEnabled) {
    return {
      reason: `PF with ${dev.sriov.numVfs} VFs enabled: vfio-pci refuses it (-EBUSY) until sriov_numvfs is 0`,
      notes,
    };
  }
  const rule = variantRule(module);
  if (!rule) return { reason: null, notes };
  if (!dev.physfn) {
    if (rule.vfOnly) return { reason: rule.vfOnly, notes };
    if (rule.nonVfNote) notes.push(rule.nonVfNote);
    return { reason: null, notes };
  }
  if (rule.pf) {
    const pfDriver = snap.devices.get(dev.physfn)?.driver ?? null;
    if (pfDriver === null || !rule.pf.drivers.includes(pfDriver)) {
      const now = `PF ${dev.physfn} is on ${pfDriver ?? 'no driver'}`;
      if (rule.pf.required) return { reason: `${rule.pf.why}; ${now}`, notes };
      notes.push(`${rule.pf.why}; ${now}`);
    }
  }
  return { reason: null, notes };
}

export interface ResolveOptions {
  /** Rank a PF as if its VFs were gone (moving it with --force destroys them first). */
  readonly ignoreSriovEnabled?: boolean;
  /** Also say why the candidates rank as they do (`show`). */
  readonly explain?: boolean;
}

// One resolution per device and snapshot (both immutable): the planner, the boot map, status and
// the hooks' device view all ask for the same device in one invocation.
// Per device, one slot per combination of the two options (a Map and a key string per device
// showed in allocation profiles of 4,115).
const resolved = new WeakMap<Snapshot, WeakMap<PciDevice, (Resolution | undefined)[]>>();

// Devices that resolveNow cannot tell apart share one resolution: the 255 VFs of a PF have one
// modalias (their raw candidates), header type and PF. Everything resolveNow reads of a device
// is in the key: its raw candidates (by modalias and vendor:device), header type, enabled VFs
// and PF (whose driver is the snapshot's), and the options. The rest is the snapshot's.
const shared = new WeakMap<Snapshot, WeakMap<readonly RawCandidate[], Map<string, Resolution>>>();

export function resolve(dev: PciDevice, snap: Snapshot, opts: ResolveOptions = {}): Resolution {
  let bySnap = resolved.get(snap);
  if (!bySnap) resolved.set(snap, (bySnap = new WeakMap()));
  let byDev = bySnap.get(dev);
  if (!byDev) bySnap.set(dev, (byDev = [undefined, undefined, undefined, undefined]));
  const slot = (opts.ignoreSriovEnabled ? 2 : 0) + (opts.explain ? 1 : 0);
  const known = byDev[slot];
  if (known) return known;
  const raw = rawCandidates(dev, snap.modules);
  let byRaw = shared.get(snap);
  if (!byRaw) shared.set(snap, (byRaw = new WeakMap()));
  let alike = byRaw.get(raw);
  if (!alike) byRaw.set(raw, (alike = new Map()));
  const key = `${slot} ${dev.headerType} ${dev.sriov?.numVfs ?? 0} ${dev.physfn}`;
  let r = alike.get(key);
  if (!r) alike.set(key, (r = resolveNow(dev, snap, opts, raw)));
  byDev[slot] = r;
  return r;
}

function resolveNow(
  dev: PciDevice,
  snap: Snapshot,
  opts: ResolveOptions,
  raw: readonly RawCandidate[],
): Resolution {
  const mods = snap.modules;
  const candidates: Candidate[] = raw.map((c) => {
    const { reason, notes } = assess(c.module, dev, snap, opts);
    return {
      module: c.module,
      driver: driverNameForModule(mods.drivers, c.module),
      alias: c.alias,
      wildcards: c.wildcards,
      source: c.source,
      usable: reason === null,
      reason,
      notes,
    };
  });
  const explanation = opts.explain ? explain(raw, mods) : [];
  const best = candidates.find((c) => c.usable);
  if (best)
    return {
      vfio: { module: best.module, driver: best.driver },
      reason: null,
      candidates,
      explanation,
    };
  let reason: string;
  if (candidates.length > 0)
    reason = `no usable candidate: ${candidates.map((c) => `${c.module}: ${c.reason}`).join('; ')}`;
  else if (mods.release === undefined)
    reason = 'kernel release unknown (no /proc/sys/kernel/osrelease; pass --kernel)';
  else if (!mods.aliases.present && !mods.builtin.has(VFIO_PCI_MODULE)) {
    reason = `no /lib/modules/${mods.release}/modules.alias and no built-in vfio_pci: cannot tell which VFIO drivers exist (run depmod, or install the kernel's modules)`;
  } else if (mods.vfioPciWithoutTable === 'absent') {
    reason = `no vfio_pci: alias matches ${modaliasOf(dev)} and kernel ${mods.release} has no vfio-pci (not in modules.alias, modules.builtin or modules.dep, not loaded): install or build vfio-pci (CONFIG_VFIO_PCI)`;
  } else reason = `no vfio_pci: alias matches ${modaliasOf(dev)}`;
  return { vfio: null, reason, candidates, explanation };
}
