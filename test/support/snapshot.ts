// A Snapshot built in memory from a few readable lines, for tests of the pure core (planner,
// converge planning, boot map): no host tree, no reader. Fields left out take the values a
// plain device on a 6.12 host has. The module state is made by the same parsers the reader uses.
import type { PciDevice } from '../../src/host/pci';
import type { NetdevUse } from '../../src/host/usage';
import type { Hook } from '../../src/hooks/discover';
import type { BindRecord } from '../../src/persist/records';
import { AliasCollector, parseModulesAlias, VFIO_PCI_MODULE } from '../../src/modules/alias';
import { Diagnostics } from '../../src/util/diag';
import type { Snapshot } from '../../src/read/snapshot';

export type DeviceLine = Partial<PciDevice> & {
  readonly address: string;
  readonly vendor: string;
  readonly device: string;
};

export interface SnapshotSpec {
  readonly kernel?: string;
  /** modules.alias lines (`alias vfio_pci:... module`). */
  readonly aliases?: readonly string[];
  readonly builtin?: readonly string[];
  /** Registered PCI drivers: driver -> module. */
  readonly drivers?: Readonly<Record<string, string>>;
  /** module -> where it was blacklisted. */
  readonly blacklist?: Readonly<Record<string, string>>;
  /** Default true: IOMMU groups are taken from the devices. */
  readonly iommu?: boolean;
  readonly devices: readonly DeviceLine[];
  /** Interfaces below a device: address -> interfaces (up, with addresses or routes). */
  readonly netdevs?: Readonly<Record<string, readonly Partial<NetdevUse>[]>>;
  readonly hooks?: readonly string[];
  readonly records?: readonly BindRecord[];
}

function device(d: DeviceLine): PciDevice {
  return {
    subsystemVendor: null,
    subsystemDevice: null,
    class: '020000',
    revision: null,
    modalias: null,
    headerType: 0,
    driver: null,
    driverOverride: null,
    iommuGroup: null,
    numaNode: null,
    resetMethods: null,
    sriov: null,
    physfn: null,
    vfioDev: null,
    bootVga: false,
    ...d,
  };
}

export function snapshot(spec: SnapshotSpec): Snapshot {
  const diag = new Diagnostics();
  const col = new AliasCollector(diag);
  parseModulesAlias((spec.aliases ?? []).join('\n') + '\n', 'modules.alias', col, diag);
  const drivers = spec.drivers ?? {};
  const moduleDrivers = new Map<string, string[]>();
  for (const [drv, mod] of Object.entries(drivers))
    moduleDrivers.set(mod, [...(moduleDrivers.get(mod) ?? []), drv]);
  const builtin = new Set(spec.builtin ?? []);
  const devices = new Map(spec.devices.map((d) => [d.address, device(d)]));
  const groups = new Map<string, string[]>();
  for (const d of devices.values())
    if (d.iommuGroup)
      groups.set(d.iommuGroup, [...(groups.get(d.iommuGroup) ?? []), d.address].sort());
  const hasVfioAlias = col.vfioByModule.has(VFIO_PCI_MODULE);
  return {
    devices,
    iommu: { present: spec.iommu ?? true, groups },
    modules: {
      release: spec.kernel ?? '6.12.0-test',
      aliases: {
        vfio: col.vfio,
        pciByModule: col.pciByModule,
        vfioByModule: col.vfioByModule,
        present: true,
      },
      builtin,
      blacklist: { entries: new Map(Object.entries(spec.blacklist ?? {})) },
      drivers: {
        driverModule: new Map(Object.entries(drivers)),
        moduleDrivers,
        loadedModules: new Set(moduleDrivers.keys()),
      },
      moduleFiles: new Set([
        ...col.vfioByModule.keys(),
        ...col.pciByModule.keys(),
        ...Object.values(drivers),
      ]),
      vfioPciWithoutTable: hasVfioAlias
        ? null
        : builtin.has(VFIO_PCI_MODULE)
          ? 'builtin'
          : 'absent',
    },
    use: {
      netdevs: new Map(
        Object.entries(spec.netdevs ?? {}).map(([a, ns]) => [
          a,
          ns.map((n) => ({
            name: 'eth0',
            up: false,
            addresses: [],
            routes: [],
            ...n,
          })),
        ]),
      ),
      blockdevs: new Map(),
      filesystems: new Map(),
    },
    vfioUsers: new Map(),
    hooks: (spec.hooks ?? []).map(
      (path): Hook => ({
        path,
        name: path.slice(path.lastIndexOf('/') + 1),
        source: 'hooks.d',
        problem: null,
      }),
    ),
    records: new Map((spec.records ?? []).map((r) => [r.address, r])),
    warnings: diag.warnings,
  };
}
