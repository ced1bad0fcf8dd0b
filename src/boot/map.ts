// The precomputed per-kernel boot map: device selector -> driver and module, resolved ahead of
// time so that nothing at boot resolves (the early script, the initramfs and the udev rule only
// look entries up). Devices the host boots from and unacknowledged broad rules are left out, each
// with a machine-readable reason; the map's comment lines are rendered from those reasons, and the
// whole map is also kept as JSON beside it (<release>.json), which is what vfioctl reads back.
import type { PciDevice } from '../host/pci';
import type { Snapshot } from '../read/snapshot';
import type { BootDevices } from '../host/boot-devices';
import type { HostRoot } from '../host/root';
import { vfRoutingAddress } from '../host/address';
import { desiredState, selects, type Desire } from '../config/desired';
import { describeSelector, isBroad, type Config } from '../config/types';
import { resolveIntent } from '../plan/target';
import type { BindIntent } from '../plan/types';
import { checkIommu } from '../plan/checks';
import { deviceInUse } from '../host/usage';
import {
  field,
  Invalid,
  isAddress,
  isDriverName,
  isInt,
  isObj,
  isString,
  jsonObject,
  oneOf,
} from '../persist/validate';

export const BOOT_DIR = '/etc/vfioctl/boot';

export interface MapEntry {
  /** `address 0000:03:00.0` or `id 15b3:101e` (vendor:device, optional :subvendor:subdevice). */
  readonly kind: 'address' | 'id';
  readonly selector: string;
  /** Driver name for driver_override; `none` for intent none. */
  readonly driver: string;
  /** Module to load, or `-` (built in, or none). */
  readonly module: string;
}

/** Why an id rule has no id entry (new devices of that id are then left to the late apply). */
export type NoIdEntry =
  | { readonly kind: 'left-out'; readonly addresses: readonly string[] }
  | { readonly kind: 'no-device' }
  | { readonly kind: 'drivers-differ' };

/** What the map leaves out, and why: the boot layers never take these devices. */
export type LeftOut =
  /**
   * A PF rule's VFs: sriov_offset/sriov_stride/sriov_vf_device unreadable, so their addresses are
   * unknown.
   */
  | { readonly reason: 'vf-layout-unknown'; readonly pf: string }
  /** Hooks run from the late unit only. */
  | { readonly reason: 'hooks'; readonly address: string; readonly hooks: readonly string[] }
  /** The host boots from it (fstab, crypttab, root=, ...). */
  | { readonly reason: 'boot-device'; readonly address: string; readonly why: readonly string[] }
  /**
   * The host used it when the map was made (an up NIC, a mounted disk): `apply --boot` keeps it
   * protected.
   */
  | { readonly reason: 'in-use'; readonly address: string; readonly use: readonly string[] }
  /** An id or class rule without "acknowledgeBroadMatch": true. */
  | {
      readonly reason: 'broad-rule';
      readonly address: string;
      readonly rule: number;
      readonly selector: string;
    }
  /**
   * The intent does not resolve to a driver the boot may use on this kernel (with the resolver's
   * message).
   */
  | { readonly reason: 'unresolved'; readonly address: string; readonly message: string }
  /** Intent `host`: no override at boot, its host driver probes it as if no rule named it. */
  | { readonly reason: 'host-intent'; readonly address: string; readonly rule: number }
  /** An id rule that gets no id entry. */
  | {
      readonly reason: 'no-id-entry';
      readonly rule: number;
      readonly selector: string;
      readonly why: NoIdEntry;
    };

export type LeftOutReason = LeftOut['reason'];

export interface BootMap {
  readonly kernel: string;
  readonly entries: readonly MapEntry[];
  readonly leftOut: readonly LeftOut[];
}

/** One left-out device (or rule) in words: the map's `# skipped` comment and `install`'s report. */
export function describeLeftOut(l: LeftOut): string {
  switch (l.reason) {
    case 'vf-layout-unknown':
      return `VFs of ${l.pf}: sriov_offset/sriov_stride/sriov_vf_device unreadable, so their addresses are unknown; the late apply binds them`;
    case 'hooks':
      return `${l.address}: has hooks (${l.hooks.join(', ')}); the late apply binds it so that they run`;
    case 'boot-device':
      return `${l.address}: the host boots from it (${l.why.join('; ')})`;
    case 'in-use':
      return `${l.address}: the host uses it now (${l.use.join('; ')}); left to the late apply, which refuses it while that lasts`;
    case 'broad-rule':
      return `${l.address}: rules[${l.rule}] selects by ${l.selector} without "acknowledgeBroadMatch": true`;
    case 'unresolved':
      return `${l.address}: ${l.message}`;
    case 'host-intent':
      return `${l.address}: intent host (rules[${l.rule}]); no override, its host driver probes it`;
    case 'no-id-entry': {
      const w = l.why;
      const why =
        w.kind === 'left-out'
          ? `${w.addresses.join(', ')} of this id ${w.addresses.length === 1 ? 'is' : 'are'} left out`
          : w.kind === 'no-device'
            ? 'no present device to resolve it against'
            : 'its devices resolve to different drivers';
      return `rules[${l.rule}] (${l.selector}): no id entry (${why}); new devices of this id are taken by the late apply, not at boot`;
    }
  }
}

/** Where a PF's VFs will appear: PCI routing IDs of VF i = PF + sriov_offset + i * sriov_stride. */
export interface VfLayout {
  readonly offset: number;
  readonly stride: number;
  /** sriov_vf_device: the VFs' device id. */
  readonly vfDevice: string;
}

export function readVfLayout(root: HostRoot, pf: string): VfLayout | null {
  const dir = `/sys/bus/pci/devices/${pf}`;
  const offset = Number(root.readAttr(`${dir}/sriov_offset`));
  const stride = Number(root.readAttr(`${dir}/sriov_stride`));
  // sriov_vf_device is printed with %x (drivers/pci/iov.c): `10`, not `0010`.
  const raw = root.readAttr(`${dir}/sriov_vf_device`)?.trim().toLowerCase().replace(/^0x/, '');
  if (
    !Number.isInteger(offset) ||
    !Number.isInteger(stride) ||
    !raw ||
    !/^[0-9a-f]{1,4}$/.test(raw)
  )
    return null;
  return { offset, stride, vfDevice: raw.padStart(4, '0') };
}

/** VF i's address once the PF has it (undefined where the kernel could not place one). */
export function vfAddress(pf: string, layout: VfLayout, i: number): string | undefined {
  return vfRoutingAddress(pf, layout.offset, layout.stride, i);
}

/** A VF that does not exist yet, as it will look: the PF's ids with the VF device id. */
function futureVf(pf: PciDevice, address: string, layout: VfLayout): PciDevice {
  return {
    ...pf,
    address,
    device: layout.vfDevice,
    physfn: pf.address,
    sriov: null,
    driver: null,
    driverOverride: null,
    vfioDev: null,
    modalias: null,
    bootVga: false,
    iommuGroup: pf.iommuGroup,
  };
}

function resolveEntry(
  dev: PciDevice,
  snap: Snapshot,
  intent: BindIntent | { readonly kind: 'none' },
): { driver: string; module: string } | string {
  if (intent.kind === 'none') return { driver: 'none', module: '-' };
  const c = resolveIntent(dev, snap, intent);
  if (c.error) return c.error;
  // At boot nothing is forced: a refusal the CLI would let --force past is a skip here. Without
  // an IOMMU vfio-pci's probe fails and the host driver is kept out too: no driver at all.
  const refusals = [
    ...c.refusals,
    ...(c.target?.vfio && !snap.iommu.present ? checkIommu(dev, snap) : []),
  ];
  if (!c.target || refusals.length) return refusals[0]?.message ?? 'no target';
  const builtin = c.target.module !== null && snap.modules.builtin.has(c.target.module);
  return {
    driver: c.target.driver,
    module: c.target.module === null || builtin ? '-' : c.target.module,
  };
}

/** Pure: the map for the kernel whose modules `snap` holds. */
export function computeBootMap(
  snap: Snapshot,
  config: Config,
  boot: BootDevices,
  vfLayouts: ReadonlyMap<string, VfLayout>,
): BootMap {
  const entries: MapEntry[] = [];
  const skipped: LeftOut[] = [];
  const devices = new Map(snap.devices);
  // VFs a PF rule will create: known by address before they exist.
  for (const rule of config.rules) {
    if (rule.selector.kind !== 'address' || !rule.sriov?.vfIntent) continue;
    const pf = snap.devices.get(rule.selector.address);
    const layout = vfLayouts.get(rule.selector.address);
    if (pf && !layout) skipped.push({ reason: 'vf-layout-unknown', pf: pf.address });
    if (!pf || !layout) continue;
    for (let i = 0; i < rule.sriov.numVfs; i++) {
      const a = vfAddress(pf.address, layout, i);
      if (a !== undefined && !devices.has(a)) devices.set(a, futureVf(pf, a, layout));
    }
  }
  const desired = desiredState(config, devices);
  const add = (d: Desire, dev: PciDevice) => {
    const intent = d.intent;
    if (intent === null) return;
    // Kept on its host driver: no override at boot, so the host driver probes it as if no rule
    // named it (and an id entry of a broader rule never reaches it: it has no address entry).
    if (intent.kind === 'host')
      return skipped.push({ reason: 'host-intent', address: dev.address, rule: d.rule.index });
    // Hooks run from the late unit, never from udev or the early layers: a device with hooks is
    // left to the late apply. hooks.d hooks decide per device at run time (exit 2), so any of
    // them counts for every device.
    const hooks = [...snap.hooks.map((h) => h.path), ...d.rule.hooks];
    if (hooks.length) return skipped.push({ reason: 'hooks', address: dev.address, hooks });
    const why = boot.devices.get(dev.address);
    if (why) return skipped.push({ reason: 'boot-device', address: dev.address, why: [...why] });
    // In use now (an up NIC with addresses or routes, a mounted disk): the boot layers would
    // take it before the host could use it. The late apply's live checks decide instead.
    const use = deviceInUse(snap.use, dev.address, dev.bootVga);
    if (use.length) return skipped.push({ reason: 'in-use', address: dev.address, use });
    if (isBroad(d.rule.selector) && !d.rule.acknowledgeBroadMatch) {
      return skipped.push({
        reason: 'broad-rule',
        address: dev.address,
        rule: d.rule.index,
        selector: describeSelector(d.rule.selector),
      });
    }
    const r = resolveEntry(dev, snap, intent);
    if (typeof r === 'string')
      return skipped.push({ reason: 'unresolved', address: dev.address, message: r });
    entries.push({ kind: 'address', selector: dev.address, ...r });
  };
  for (const d of [...desired.desires.values()].sort((a, b) => (a.address < b.address ? -1 : 1)))
    add(d, devices.get(d.address)!);
  // Hotplugged devices of a configured id: one id entry when every present device of that id
  // resolved alike (resolution can depend on subsystem ids and class, so only then), and only when
  // every present device of that id has its own address entry (matched first): an id entry must
  // never reach a device that was left out (the root disk, a NIC in use).
  const mapped = new Set(entries.map((e) => e.selector));
  for (const rule of config.rules) {
    const s = rule.selector;
    if (
      s.kind !== 'id' ||
      rule.intent === null ||
      rule.intent.kind === 'host' ||
      !rule.acknowledgeBroadMatch
    )
      continue;
    const all = [...devices.values()].filter((d) => selects(s, d));
    const mine = entries.filter(
      (e) => e.kind === 'address' && desired.desires.get(e.selector)?.rule === rule,
    );
    const drivers = new Set(mine.map((e) => `${e.driver} ${e.module}`));
    const unmapped = all.filter((d) => !mapped.has(d.address)).map((d) => d.address);
    const why: NoIdEntry | null = unmapped.length
      ? { kind: 'left-out', addresses: unmapped }
      : drivers.size === 0
        ? { kind: 'no-device' }
        : drivers.size > 1
          ? { kind: 'drivers-differ' }
          : null;
    if (why === null)
      entries.push({
        kind: 'id',
        selector: `${s.vendor}:${s.device}${s.subvendor ? `:${s.subvendor}:${s.subdevice}` : ''}`,
        driver: mine[0]!.driver,
        module: mine[0]!.module,
      });
    else
      skipped.push({ reason: 'no-id-entry', rule: rule.index, selector: describeSelector(s), why });
  }
  return { kernel: snap.modules.release ?? 'unknown', entries, leftOut: skipped };
}

export function formatBootMap(m: BootMap, source: string): string {
  const lines = [
    `# vfioctl boot map for kernel ${m.kernel}, generated from ${source}; do not edit:`,
    `# 'vfioctl install --refresh' regenerates it. Read by vfioctl-early and the initramfs.`,
    '# kind selector driver module',
    ...m.entries.map((e) => `${e.kind} ${e.selector} ${e.driver} ${e.module}`),
    ...m.leftOut.map((s) => `# skipped ${describeLeftOut(s).replace(/\n/g, ' ')}`),
  ];
  return lines.join('\n') + '\n';
}

const LINE = /^(address|id) (\S+) ([A-Za-z0-9_.:+-]{1,64}) (\S+)$/;

/**
 * The entries of a map file, as the early script reads them (its comments are for people). For a
 * map an older vfioctl wrote without its JSON beside it: what was left out is not known from it.
 */
export function parseMapEntries(text: string): MapEntry[] {
  const entries: MapEntry[] = [];
  for (const line of text.split('\n')) {
    const m = LINE.exec(line);
    if (m)
      entries.push({
        kind: m[1] as MapEntry['kind'],
        selector: m[2]!,
        driver: m[3]!,
        module: m[4]!,
      });
  }
  return entries;
}

/** The JSON kept beside a map: the same BootMap, read back without parsing any comment. */
export function bootMapJsonPath(kernel: string): string {
  return `${BOOT_DIR}/${kernel}.json`;
}

export function formatBootMapJson(m: BootMap, source: string): string {
  return (
    JSON.stringify({ kernel: m.kernel, source, entries: m.entries, leftOut: m.leftOut }, null, 2) +
    '\n'
  );
}

const isStrings = (v: unknown): v is string[] => Array.isArray(v) && v.every(isString);
const isSelector = (v: unknown): v is string =>
  typeof v === 'string' && /^[0-9a-f:.]{1,40}$/.test(v);

function parseEntry(v: unknown, i: number): MapEntry {
  if (!isObj(v)) throw new Invalid(`entries[${i}] is not an object`);
  return {
    kind: field(v, 'kind', oneOf('address', 'id'), `'address' or 'id' (entries[${i}])`),
    selector: field(v, 'selector', isSelector, `a PCI address or vendor:device id (entries[${i}])`),
    driver: field(v, 'driver', isDriverName, `a driver name (entries[${i}])`),
    module: field(v, 'module', isDriverName, `a module name or '-' (entries[${i}])`),
  };
}

function parseLeftOut(v: unknown, i: number): LeftOut {
  if (!isObj(v)) throw new Invalid(`leftOut[${i}] is not an object`);
  const at = ` (leftOut[${i}])`;
  const address = () => field(v, 'address', isAddress, `a PCI address${at}`);
  const reason = field(
    v,
    'reason',
    oneOf<LeftOutReason>(
      'vf-layout-unknown',
      'hooks',
      'boot-device',
      'in-use',
      'broad-rule',
      'unresolved',
      'host-intent',
      'no-id-entry',
    ),
    `a known reason${at}`,
  );
  switch (reason) {
    case 'vf-layout-unknown':
      return { reason, pf: field(v, 'pf', isAddress, `a PCI address${at}`) };
    case 'hooks':
      return {
        reason,
        address: address(),
        hooks: field(v, 'hooks', isStrings, `a list of paths${at}`),
      };
    case 'boot-device':
      return {
        reason,
        address: address(),
        why: field(v, 'why', isStrings, `a list of reasons${at}`),
      };
    case 'in-use':
      return { reason, address: address(), use: field(v, 'use', isStrings, `a list of uses${at}`) };
    case 'broad-rule':
      return {
        reason,
        address: address(),
        rule: field(v, 'rule', isInt, `a rule index${at}`),
        selector: field(v, 'selector', isString, `a selector${at}`),
      };
    case 'unresolved':
      return {
        reason,
        address: address(),
        message: field(v, 'message', isString, `a message${at}`),
      };
    case 'host-intent':
      return { reason, address: address(), rule: field(v, 'rule', isInt, `a rule index${at}`) };
    case 'no-id-entry': {
      const w = field(v, 'why', isObj, `an object${at}`);
      const kind = field(
        w,
        'kind',
        oneOf<NoIdEntry['kind']>('left-out', 'no-device', 'drivers-differ'),
        `'left-out', 'no-device' or 'drivers-differ'${at}`,
      );
      const why: NoIdEntry =
        kind === 'left-out'
          ? {
              kind,
              addresses: field(
                w,
                'addresses',
                (x): x is string[] => Array.isArray(x) && x.every(isAddress),
                `a list of PCI addresses${at}`,
              ),
            }
          : { kind };
      return {
        reason,
        rule: field(v, 'rule', isInt, `a rule index${at}`),
        selector: field(v, 'selector', isString, `a selector${at}`),
        why,
      };
    }
  }
}

/**
 * A map's JSON, checked field by field (it decides what `apply --boot` protects); Invalid when it
 * does not check out.
 */
export function parseBootMapJson(text: string): BootMap & { readonly source: string } {
  const o = jsonObject(text);
  const entries = field(o, 'entries', Array.isArray, 'a list');
  const leftOut = field(o, 'leftOut', Array.isArray, 'a list');
  return {
    kernel: field(o, 'kernel', isString, 'a kernel release'),
    source: field(o, 'source', isString, 'a file name'),
    entries: entries.map(parseEntry),
    leftOut: leftOut.map(parseLeftOut),
  };
}
