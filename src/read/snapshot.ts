// Reads the host once into an immutable snapshot that the pure planner works on.
import type { HostRoot } from '../host/root';
import { isPciAddress } from '../host/address';
import { readPciDevice, type KnownLinks, type PciDevice } from '../host/pci';
import { readHostUse, type HostUse } from '../host/usage';
import { refreshPciNamesCache } from '../host/pciids';
import { Diagnostics } from '../util/diag';
import { moduleNormalize } from '../modules/fnmatch';
import { loadAliasDb, VFIO_PCI_MODULE, type AliasDb } from '../modules/alias';
import { loadBuiltin } from '../modules/builtin';
import { loadBlacklist, type Blacklist } from '../modules/modprobe-conf';
import { loadDriverRegistry, type DriverRegistry } from '../modules/loaded';
import { readVfioUsers, type VfioUsers } from '../host/vfio-users';
import { readRecords, type BindRecord } from '../persist/records';
import { discoverHooks, type Hook } from '../hooks/discover';
import type { TrustPolicy } from '../host/trust';

export interface IommuState {
  /** /sys/class/iommu has an entry, or any IOMMU group exists. */
  readonly present: boolean;
  /** group -> member addresses */
  readonly groups: ReadonlyMap<string, readonly string[]>;
}

export interface ModuleState {
  readonly release: string | undefined;
  readonly aliases: AliasDb;
  readonly builtin: ReadonlySet<string>;
  readonly blacklist: Blacklist;
  readonly drivers: DriverRegistry;
  /**
   * Every module file of this kernel (modules.dep), to tell an unknown driver name from a real one.
   */
  readonly moduleFiles: ReadonlySet<string>;
  /**
   * How vfio-pci exists when no `vfio_pci:` alias names it (else null): built in, a module in
   * modules.dep with no ID table (kernels before 5.15, commit cc6711b0bf36, e.g. Debian 11's
   * 5.10: modules.alias has no vfio_pci: line at all), a module whose alias is missing although
   * vfio_pci_core (split out in the same 5.15 series) exists: a stale modules.alias; or only a
   * registered driver; 'absent'.
   */
  readonly vfioPciWithoutTable: 'builtin' | 'module' | 'stale-alias' | 'loaded' | 'absent' | null;
}

export interface Snapshot {
  readonly devices: ReadonlyMap<string, PciDevice>;
  readonly iommu: IommuState;
  readonly modules: ModuleState;
  readonly use: HostUse;
  /** Open VFIO device nodes (read only for commands that write). */
  readonly vfioUsers: VfioUsers;
  /** hooks.d hooks (read only when a trust policy is given). */
  readonly hooks: readonly Hook[];
  /** What vfioctl bound earlier, with the driver each device had before. */
  readonly records: ReadonlyMap<string, BindRecord>;
  readonly warnings: readonly string[];
}

/**
 * All IOMMU groups, or (for commands about some devices) only the ones named; `listed` holds
 * group member lists already read.
 */
function readIommu(
  root: HostRoot,
  only?: ReadonlySet<string>,
  devices?: ReadonlyMap<string, PciDevice>,
  listed?: ReadonlyMap<string, string[]>,
): IommuState {
  const groups = new Map<string, string[]>();
  const all = root.list('/sys/kernel/iommu_groups');
  const present = all.length > 0 || root.list('/sys/class/iommu').length > 0;
  if (!only && devices) {
    // Every device: its iommu_group link names its group, so members come from the devices
    // already read instead of one directory read per group (thousands with SR-IOV). Exact when
    // every group has a PCI member; if some group has none (platform devices, e.g. behind an
    // ARM SMMU) groups may mix in non-PCI members, so read them all from sysfs instead.
    for (const d of devices.values()) {
      if (d.iommuGroup === null) continue;
      const l = groups.get(d.iommuGroup);
      if (l) l.push(d.address);
      else groups.set(d.iommuGroup, [d.address]);
    }
    if (groups.size === all.length && all.every((g) => groups.has(g))) {
      for (const l of groups.values()) l.sort();
      return { present, groups };
    }
    groups.clear();
  }
  for (const g of only ? all.filter((x) => only.has(x)) : all) {
    groups.set(
      g,
      [...(listed?.get(g) ?? root.list(`/sys/kernel/iommu_groups/${g}/devices`))].sort(),
    );
  }
  return { present, groups };
}

function readModuleFiles(root: HostRoot, release: string | undefined): Set<string> {
  const out = new Set<string>();
  const text =
    release === undefined ? undefined : root.readFile(`/lib/modules/${release}/modules.dep`);
  for (const line of (text ?? '').split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const file = line.slice(line.lastIndexOf('/', colon) + 1, colon);
    out.add(moduleNormalize(file.replace(/\.ko(\.[a-z]+)?$/, '')));
  }
  return out;
}

/**
 * `writeIndex`: the caller holds the lock and writes anyway (bind, unbind, apply), so it may also
 * refresh the modules.alias index; read-only commands and dry runs only use it.
 */
export function readModuleState(
  root: HostRoot,
  release: string | undefined,
  diag: Diagnostics,
  withFiles = false,
  writeIndex = false,
): ModuleState {
  const moduleFiles = withFiles ? readModuleFiles(root, release) : null;
  const aliases = loadAliasDb(root, release, diag, { writeIndex });
  const builtin = loadBuiltin(root, release);
  const drivers = loadDriverRegistry(root);
  let vfioPciWithoutTable: ModuleState['vfioPciWithoutTable'] = null;
  if (!aliases.vfioByModule.has(VFIO_PCI_MODULE)) {
    // modules.dep (`.../vfio-pci.ko[.xz]:`) is read here only when no alias names vfio_pci.
    const files = builtin.has(VFIO_PCI_MODULE)
      ? null
      : (moduleFiles ?? readModuleFiles(root, release));
    if (builtin.has(VFIO_PCI_MODULE)) vfioPciWithoutTable = 'builtin';
    else if (files!.has(VFIO_PCI_MODULE))
      vfioPciWithoutTable =
        files!.has('vfio_pci_core') || builtin.has('vfio_pci_core') ? 'stale-alias' : 'module';
    else if (drivers.moduleDrivers.has(VFIO_PCI_MODULE) || drivers.driverModule.has('vfio-pci'))
      vfioPciWithoutTable = 'loaded';
    else vfioPciWithoutTable = 'absent';
  }
  return {
    moduleFiles: moduleFiles ?? new Set(),
    release,
    aliases,
    builtin,
    blacklist: loadBlacklist(root, diag),
    drivers,
    vfioPciWithoutTable,
  };
}

/**
 * Address -> driver for every bound PCI device: /sys/bus/pci/drivers/<driver>/ holds a link
 * named by each bound device's address. Undefined if some address appears twice (a tree being
 * changed under us): then every device's own `driver` link is read.
 */
function boundDrivers(root: HostRoot): Map<string, string> | undefined {
  const out = new Map<string, string>();
  for (const drv of root.list('/sys/bus/pci/drivers')) {
    for (const e of root.list(`/sys/bus/pci/drivers/${drv}`)) {
      if (!isPciAddress(e)) continue;
      if (out.has(e)) return undefined;
      out.set(e, drv);
    }
  }
  return out;
}

/**
 * Address -> vfioN for every PCI device a VFIO driver registered: vfio_device_add (v6.1+) puts
 * the device at <pci device>/vfio-dev/vfioN and links it from /sys/class/vfio-dev (device_add's
 * class symlink), so one directory read and a readlink per VFIO device replace a look into every
 * device. No class (before 6.1, or vfio not loaded): no device has a vfio-dev/. Undefined when a
 * link does not have that shape (then every device is looked at).
 */
function vfioDevNodes(root: HostRoot): Map<string, string> | undefined {
  const out = new Map<string, string>();
  for (const v of root.list('/sys/class/vfio-dev')) {
    const t = root.linkTarget(`/sys/class/vfio-dev/${v}`);
    if (t === undefined || !t.endsWith(`/vfio-dev/${v}`)) return undefined;
    const parent = t.slice(0, -`/vfio-dev/${v}`.length);
    const address = parent.slice(parent.lastIndexOf('/') + 1);
    // Not a PCI device's (an mdev's, a platform device's): not one of ours.
    if (!isPciAddress(address)) continue;
    if (out.has(address)) return undefined;
    out.set(address, v);
  }
  return out;
}

export interface ReadOptions {
  kernel?: string;
  /** Only read these devices (and what they need); all when absent. */
  only?: readonly string[];
  /** Also read what only writing commands need (open VFIO nodes, bind records). */
  forWrite?: boolean;
  /**
   * Refresh the modules.alias index, and with every device read the pci.ids names cache, if
   * missing or stale (only under the lock: never a dry run).
   */
  writeIndex?: boolean;
  /** Discover hooks, judging their ownership by this policy. */
  trust?: TrustPolicy;
  /**
   * With `only`: read the named devices and their PFs, not their VFs or IOMMU group peers
   * (`show`, whose checks need no more; the peers' names still come from the group).
   */
  shallow?: boolean;
}

export function readSnapshot(root: HostRoot, opts: ReadOptions = {}): Snapshot {
  const diag = new Diagnostics();
  const release = root.kernelRelease(opts.kernel);
  if (release === undefined)
    diag.warn('kernel release unknown: no --kernel and no /proc/sys/kernel/osrelease');
  const devices = new Map<string, PciDevice>();
  const names = opts.only ?? root.list('/sys/bus/pci/devices').filter(isPciAddress).sort();
  // What is queued already: only a read of named devices adds to the queue.
  const want = new Set(opts.only ? names : []);
  // Every device (or many): one directory read per driver and the PFs' virtfn links answer
  // what would otherwise be two or three link reads per device (thousands of VFs).
  const drivers = !opts.only || names.length >= 64 ? boundDrivers(root) : undefined;
  const vfioDevs = drivers ? vfioDevNodes(root) : undefined;
  const groupMembers = new Map<string, string[]>();
  const pfOf = new Map<string, string>();
  // VF -> its directory, from the PF's virtfnN links (read for sriov.vfs anyway).
  const vfDirs = new Map<string, string>();
  // For the named devices also read their PF, VFs and IOMMU group peers: checks need them.
  const queue = [...names];
  for (let i = 0; i < queue.length; i++) {
    const addr = queue[i]!;
    if (devices.has(addr)) continue;
    // Assigned field by field: four object spreads per device showed in profiles of 4,115.
    const known: { -readonly [K in keyof KnownLinks]: KnownLinks[K] } = {};
    if (drivers) {
      known.driver = drivers.get(addr) ?? null;
      const pf = pfOf.get(addr);
      if (pf) known.physfn = pf;
    }
    const vfDir = vfDirs.get(addr);
    if (vfDir) (known.dir = vfDir), vfDirs.delete(addr);
    if (vfioDevs) known.vfioDev = vfioDevs.get(addr) ?? null;
    const d = readPciDevice(root, addr, known, vfDirs);
    if (!d) continue;
    devices.set(addr, d);
    if (drivers) for (const vf of d.sriov?.vfs ?? []) pfOf.set(vf, addr);
    if (opts.only) {
      if (opts.shallow) {
        if (d.physfn && !want.has(d.physfn) && i < names.length)
          want.add(d.physfn), queue.push(d.physfn);
        continue;
      }
      const more = [d.physfn, ...(d.sriov?.vfs ?? [])];
      if (d.iommuGroup) {
        let members = groupMembers.get(d.iommuGroup);
        if (!members)
          groupMembers.set(
            d.iommuGroup,
            (members = root.list(`/sys/kernel/iommu_groups/${d.iommuGroup}/devices`)),
          );
        more.push(...members);
      }
      for (const x of more) if (x && !want.has(x)) want.add(x), queue.push(x);
    }
  }
  const modules = readModuleState(root, release, diag, opts.forWrite, opts.writeIndex);
  // Every device, under the lock: the pci.ids names list and show would otherwise scan for.
  if (opts.writeIndex && !opts.only) refreshPciNamesCache(root, devices.values());
  return {
    devices,
    iommu: opts.only
      ? readIommu(
          root,
          new Set(
            [...devices.values()].map((d) => d.iommuGroup).filter((g): g is string => g !== null),
          ),
          undefined,
          groupMembers,
        )
      : readIommu(root, undefined, devices),
    modules,
    // A few devices: only their host use (each netdev/disk costs reads; a host may have thousands).
    use: readHostUse(root, opts.only ? new Set(devices.keys()) : undefined),
    vfioUsers: opts.forWrite ? readVfioUsers(root) : new Map(),
    hooks: opts.trust ? discoverHooks(root, opts.trust) : [],
    records: opts.forWrite ? readRecords(root, (m) => diag.warn(m)) : new Map(),
    warnings: diag.warnings,
  };
}
