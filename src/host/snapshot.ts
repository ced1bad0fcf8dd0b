// Reads the host once into an immutable snapshot that the pure planner works on.
import type { HostRoot } from './root';
import { isPciAddress } from './address';
import { readPciDevice, type PciDevice } from './pci';
import { readHostUse, type HostUse } from './usage';
import { Diagnostics } from '../util/diag';
import { moduleNormalize } from '../match/fnmatch';
import { loadAliasDb, type AliasDb } from '../modules/alias';
import { loadBuiltin } from '../modules/builtin';
import { loadBlacklist, type Blacklist } from '../modules/modprobe-conf';
import { loadDriverRegistry, type DriverRegistry } from '../modules/loaded';
import { readVfioUsers, type VfioUsers } from './vfio-users';
import { readRecords, type BindRecord } from '../persist/records';
import { discoverHooks, type Hook } from '../hooks/discover';
import type { TrustPolicy } from '../util/trust';

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
  /** Every module file of this kernel (modules.dep), to tell an unknown driver name from a real one. */
  readonly moduleFiles: ReadonlySet<string>;
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

/** All IOMMU groups, or (for commands about a few devices) only the ones named. */
function readIommu(root: HostRoot, only?: ReadonlySet<string>): IommuState {
  const groups = new Map<string, string[]>();
  const all = root.list('/sys/kernel/iommu_groups');
  for (const g of only ? all.filter((x) => only.has(x)) : all) {
    groups.set(g, root.list(`/sys/kernel/iommu_groups/${g}/devices`).sort());
  }
  return { present: all.length > 0 || root.list('/sys/class/iommu').length > 0, groups };
}

function readModuleFiles(root: HostRoot, release: string | undefined): Set<string> {
  const out = new Set<string>();
  const text = release === undefined ? undefined : root.readFile(`/lib/modules/${release}/modules.dep`);
  for (const line of (text ?? '').split('\n')) {
    const colon = line.indexOf(':');
    if (colon <= 0) continue;
    const file = line.slice(line.lastIndexOf('/', colon) + 1, colon);
    out.add(moduleNormalize(file.replace(/\.ko(\.[a-z]+)?$/, '')));
  }
  return out;
}

export function readModuleState(root: HostRoot, release: string | undefined, diag: Diagnostics, withFiles = false): ModuleState {
  return {
    moduleFiles: withFiles ? readModuleFiles(root, release) : new Set(),
    release,
    aliases: loadAliasDb(root, release, diag),
    builtin: loadBuiltin(root, release),
    blacklist: loadBlacklist(root, diag),
    drivers: loadDriverRegistry(root),
  };
}

export interface ReadOptions {
  kernel?: string;
  /** Only read these devices (and what they need); all when absent. */
  only?: readonly string[];
  /** Also read what only writing commands need (open VFIO nodes, bind records). */
  forWrite?: boolean;
  /** Discover hooks, judging their ownership by this policy. */
  trust?: TrustPolicy;
}

export function readSnapshot(root: HostRoot, opts: ReadOptions = {}): Snapshot {
  const diag = new Diagnostics();
  const release = root.kernelRelease(opts.kernel);
  if (release === undefined) diag.warn('kernel release unknown: no --kernel and no /proc/sys/kernel/osrelease');
  const devices = new Map<string, PciDevice>();
  const names = opts.only ?? root.list('/sys/bus/pci/devices').filter(isPciAddress).sort();
  const want = new Set(names);
  // For the named devices also read their PF, VFs and IOMMU group peers: checks need them.
  const queue = [...names];
  for (let i = 0; i < queue.length; i++) {
    const addr = queue[i]!;
    if (devices.has(addr)) continue;
    const d = readPciDevice(root, addr);
    if (!d) continue;
    devices.set(addr, d);
    if (opts.only) {
      const more = [d.physfn, ...(d.sriov?.vfs ?? [])];
      if (d.iommuGroup) more.push(...root.list(`/sys/kernel/iommu_groups/${d.iommuGroup}/devices`));
      for (const x of more) if (x && !want.has(x)) (want.add(x), queue.push(x));
    }
  }
  const modules = readModuleState(root, release, diag, opts.forWrite);
  return {
    devices,
    iommu: readIommu(root, opts.only ? new Set([...devices.values()].map((d) => d.iommuGroup).filter((g): g is string => g !== null)) : undefined),
    modules,
    use: readHostUse(root),
    vfioUsers: opts.forWrite ? readVfioUsers(root) : new Map(),
    hooks: opts.trust ? discoverHooks(root, opts.trust) : [],
    records: opts.forWrite ? readRecords(root) : new Map(),
    warnings: diag.warnings,
  };
}
