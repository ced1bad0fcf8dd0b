// The precomputed per-kernel boot map: device selector -> driver and module, resolved ahead of
// time so that nothing at boot resolves (the early script, the initramfs and the udev rule only
// look entries up). Devices the host boots from and unacknowledged broad rules are left out and
// say why in a comment line.
import type { PciDevice } from '../host/pci';
import type { Snapshot } from '../read/snapshot';
import type { BootDevices } from '../host/boot-devices';
import type { HostRoot } from '../host/root';
import { desiredState, selects, type Desire } from '../config/desired';
import { describeSelector, isBroad, type Config } from '../config/types';
import { resolveIntent } from '../plan/target';
import type { BindIntent } from '../plan/types';
import { checkIommu } from '../plan/checks';
import { deviceInUse } from '../host/usage';

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

export interface BootMap {
  readonly kernel: string;
  readonly entries: readonly MapEntry[];
  /** Human-readable reasons for what was left out. */
  readonly skipped: readonly string[];
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
  if (!Number.isInteger(offset) || !Number.isInteger(stride) || !raw || !/^[0-9a-f]{1,4}$/.test(raw)) return null;
  return { offset, stride, vfDevice: raw.padStart(4, '0') };
}

export function vfAddress(pf: string, layout: VfLayout, i: number): string {
  const [domain, bus, devfn] = pf.split(':') as [string, string, string];
  const [dev, fn] = devfn.split('.') as [string, string];
  const rid = (Number.parseInt(bus, 16) << 8) + (Number.parseInt(dev, 16) << 3) + Number(fn) + layout.offset + i * layout.stride;
  const h = (n: number, w: number) => n.toString(16).padStart(w, '0');
  return `${domain}:${h((rid >> 8) & 0xff, 2)}:${h((rid >> 3) & 0x1f, 2)}.${rid & 7}`;
}

/** A VF that does not exist yet, as it will look: the PF's ids with the VF device id. */
function futureVf(pf: PciDevice, address: string, layout: VfLayout): PciDevice {
  return { ...pf, address, device: layout.vfDevice, physfn: pf.address, sriov: null, driver: null, driverOverride: null, vfioDev: null, modalias: null, bootVga: false, iommuGroup: pf.iommuGroup };
}

function resolveEntry(dev: PciDevice, snap: Snapshot, intent: BindIntent | { readonly kind: 'none' }): { driver: string; module: string } | string {
  if (intent.kind === 'none') return { driver: 'none', module: '-' };
  const c = resolveIntent(dev, snap, intent);
  if (c.error) return c.error;
  // At boot nothing is forced: a refusal the CLI would let --force past is a skip here. Without
  // an IOMMU vfio-pci's probe fails and the host driver is kept out too: no driver at all.
  const refusals = [...c.refusals, ...(c.target?.vfio && !snap.iommu.present ? checkIommu(dev, snap) : [])];
  if (!c.target || refusals.length) return refusals[0]?.message ?? 'no target';
  const builtin = c.target.module !== null && snap.modules.builtin.has(c.target.module);
  return { driver: c.target.driver, module: c.target.module === null || builtin ? '-' : c.target.module };
}

/** Pure: the map for the kernel whose modules `snap` holds. */
export function computeBootMap(snap: Snapshot, config: Config, boot: BootDevices, vfLayouts: ReadonlyMap<string, VfLayout>): BootMap {
  const entries: MapEntry[] = [];
  const skipped: string[] = [];
  const devices = new Map(snap.devices);
  // VFs a PF rule will create: known by address before they exist.
  for (const rule of config.rules) {
    if (rule.selector.kind !== 'address' || !rule.sriov?.vfIntent) continue;
    const pf = snap.devices.get(rule.selector.address);
    const layout = vfLayouts.get(rule.selector.address);
    if (pf && !layout) skipped.push(`VFs of ${pf.address}: sriov_offset/sriov_stride/sriov_vf_device unreadable, so their addresses are unknown; the late apply binds them`);
    if (!pf || !layout) continue;
    for (let i = 0; i < rule.sriov.numVfs; i++) {
      const a = vfAddress(pf.address, layout, i);
      if (!devices.has(a)) devices.set(a, futureVf(pf, a, layout));
    }
  }
  const desired = desiredState(config, devices);
  const add = (d: Desire, dev: PciDevice) => {
    const intent = d.intent;
    if (intent === null) return;
    // Kept on its host driver: no override at boot, so the host driver probes it as if no rule
    // named it (and an id entry of a broader rule never reaches it: it has no address entry).
    if (intent.kind === 'host') return skipped.push(`${dev.address}: intent host (rules[${d.rule.index}]); no override, its host driver probes it`);
    // Hooks run from the late unit, never from udev or the early layers: a device with hooks is
    // left to the late apply. hooks.d hooks decide per device at run time (exit 2), so any of
    // them counts for every device.
    const hooks = [...snap.hooks.map((h) => h.path), ...d.rule.hooks];
    if (hooks.length) return skipped.push(`${dev.address}: has hooks (${hooks.join(', ')}); the late apply binds it so that they run`);
    const why = boot.devices.get(dev.address);
    if (why) return skipped.push(`${dev.address}: the host boots from it (${why.join('; ')})`);
    // In use now (an up NIC with addresses or routes, a mounted disk): the boot layers would
    // take it before the host could use it. The late apply's live checks decide instead.
    const use = deviceInUse(snap.use, dev.address, dev.bootVga);
    if (use.length) return skipped.push(`${dev.address}: the host uses it now (${use.join('; ')}); left to the late apply, which refuses it while that lasts`);
    if (isBroad(d.rule.selector) && !d.rule.acknowledgeBroadMatch) {
      return skipped.push(`${dev.address}: rules[${d.rule.index}] selects by ${describeSelector(d.rule.selector)} without "acknowledgeBroadMatch": true`);
    }
    const r = resolveEntry(dev, snap, intent);
    if (typeof r === 'string') return skipped.push(`${dev.address}: ${r}`);
    entries.push({ kind: 'address', selector: dev.address, ...r });
  };
  for (const d of [...desired.desires.values()].sort((a, b) => (a.address < b.address ? -1 : 1))) add(d, devices.get(d.address)!);
  // Hotplugged devices of a configured id: one id entry when every present device of that id
  // resolved alike (resolution can depend on subsystem ids and class, so only then), and only when
  // every present device of that id has its own address entry (matched first): an id entry must
  // never reach a device that was left out (the root disk, a NIC in use).
  const mapped = new Set(entries.map((e) => e.selector));
  for (const rule of config.rules) {
    const s = rule.selector;
    if (s.kind !== 'id' || rule.intent === null || rule.intent.kind === 'host' || !rule.acknowledgeBroadMatch) continue;
    const all = [...devices.values()].filter((d) => selects(s, d));
    const mine = entries.filter((e) => e.kind === 'address' && desired.desires.get(e.selector)?.rule === rule);
    const drivers = new Set(mine.map((e) => `${e.driver} ${e.module}`));
    const unmapped = all.filter((d) => !mapped.has(d.address)).map((d) => d.address);
    const why = unmapped.length ? `${unmapped.join(', ')} of this id ${unmapped.length === 1 ? 'is' : 'are'} left out` : drivers.size === 0 ? 'no present device to resolve it against' : drivers.size > 1 ? 'its devices resolve to different drivers' : null;
    if (why === null) entries.push({ kind: 'id', selector: `${s.vendor}:${s.device}${s.subvendor ? `:${s.subvendor}:${s.subdevice}` : ''}`, driver: mine[0]!.driver, module: mine[0]!.module });
    else skipped.push(`rules[${rule.index}] (${describeSelector(s)}): no id entry (${why}); new devices of this id are taken by the late apply, not at boot`);
  }
  return { kernel: snap.modules.release ?? 'unknown', entries, skipped };
}

export function formatBootMap(m: BootMap, source: string): string {
  const lines = [
    `# vfioctl boot map for kernel ${m.kernel}, generated from ${source}; do not edit:`,
    `# 'vfioctl install --refresh' regenerates it. Read by vfioctl-early and the initramfs.`,
    '# kind selector driver module',
    ...m.entries.map((e) => `${e.kind} ${e.selector} ${e.driver} ${e.module}`),
    ...m.skipped.map((s) => `# skipped ${s.replace(/\n/g, ' ')}`),
  ];
  return lines.join('\n') + '\n';
}

const LINE = /^(address|id) (\S+) ([A-Za-z0-9_.:+-]{1,64}) (\S+)$/;

export function parseBootMap(text: string, kernel: string): BootMap {
  const entries: MapEntry[] = [];
  const skipped: string[] = [];
  for (const line of text.split('\n')) {
    if (line.startsWith('# skipped ')) skipped.push(line.slice(10));
    const m = LINE.exec(line);
    if (m) entries.push({ kind: m[1] as MapEntry['kind'], selector: m[2]!, driver: m[3]!, module: m[4]! });
  }
  return { kernel, entries, skipped };
}
