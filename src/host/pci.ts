// Reads one PCI device's sysfs directory (drivers/pci/pci-sysfs.c) into a plain record.
import type { HostRoot } from './root';

export interface SriovInfo {
  readonly totalVfs: number;
  readonly numVfs: number;
  /** sriov_drivers_autoprobe (v4.12+); null when the kernel lacks it. */
  readonly driversAutoprobe: boolean | null;
  readonly vfs: readonly string[];
}

export interface PciDevice {
  readonly address: string;
  /** 4 lower-case hex digits. */
  readonly vendor: string;
  readonly device: string;
  readonly subsystemVendor: string | null;
  readonly subsystemDevice: string | null;
  /** 6 lower-case hex digits: base class, subclass, prog-if. */
  readonly class: string;
  readonly revision: string | null;
  readonly modalias: string | null;
  /** Config-space header type (0 normal, 1 PCI bridge, 2 CardBus). */
  readonly headerType: number | null;
  readonly driver: string | null;
  /** null when unset (the kernel reads back `(null)`). */
  readonly driverOverride: string | null;
  readonly iommuGroup: string | null;
  readonly numaNode: number | null;
  /** reset_method (v5.15+); null when the kernel lacks the attribute. */
  readonly resetMethods: readonly string[] | null;
  readonly sriov: SriovInfo | null;
  /** For a VF: its PF's address (`physfn` link). */
  readonly physfn: string | null;
  /** `vfio-dev/vfioN` (v6.1+): the device is bound to some VFIO driver, whatever its name. */
  readonly vfioDev: string | null;
  readonly bootVga: boolean;
}

// pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X (drivers/pci/pci-sysfs.c modalias_show)
const MODALIAS = /^pci:v0000([0-9A-Fa-f]{4})d0000([0-9A-Fa-f]{4})sv0000([0-9A-Fa-f]{4})sd0000([0-9A-Fa-f]{4})bc([0-9A-Fa-f]{2})sc([0-9A-Fa-f]{2})i([0-9A-Fa-f]{2})$/;

function hex4(v: string | undefined): string | null {
  if (v === undefined) return null;
  const m = /^0x([0-9a-fA-F]{1,4})$/.exec(v.trim());
  return m ? m[1]!.toLowerCase().padStart(4, '0') : null;
}

function int(v: string | undefined): number | null {
  if (v === undefined) return null;
  const n = Number.parseInt(v.trim(), 10);
  return Number.isFinite(n) ? n : null;
}

/** Header type from config space byte 0x0e, else inferred from the class (bridges are type 1/2). */
function headerType(root: HostRoot, dir: string, cls: string): number | null {
  const cfg = root.readBytes(`${dir}/config`, 16);
  if (cfg && cfg.length >= 15) return cfg[14]! & 0x7f;
  if (cls.startsWith('0604') || cls.startsWith('0609')) return 1;
  if (cls.startsWith('0607')) return 2;
  return 0;
}

export function readPciDevice(root: HostRoot, address: string): PciDevice | undefined {
  const dir = `/sys/bus/pci/devices/${address}`;
  const modalias = root.readAttr(`${dir}/modalias`);
  if (modalias === undefined && !root.exists(dir)) return undefined;
  const m = modalias === undefined ? null : MODALIAS.exec(modalias);
  let vendor: string | null, device: string | null, sv: string | null, sd: string | null, cls: string | null;
  if (m) {
    vendor = m[1]!.toLowerCase();
    device = m[2]!.toLowerCase();
    sv = m[3]!.toLowerCase();
    sd = m[4]!.toLowerCase();
    cls = (m[5]! + m[6]! + m[7]!).toLowerCase();
  } else {
    vendor = hex4(root.readAttr(`${dir}/vendor`));
    device = hex4(root.readAttr(`${dir}/device`));
    sv = hex4(root.readAttr(`${dir}/subsystem_vendor`));
    sd = hex4(root.readAttr(`${dir}/subsystem_device`));
    const c = root.readAttr(`${dir}/class`);
    cls = c && /^0x[0-9a-fA-F]{6}$/.test(c.trim()) ? c.trim().slice(2).toLowerCase() : null;
  }
  const revRaw = root.readAttr(`${dir}/revision`);
  const revision = revRaw && /^0x[0-9a-fA-F]{1,2}$/.test(revRaw.trim()) ? revRaw.trim().slice(2).toLowerCase().padStart(2, '0') : null;
  const override = root.readAttr(`${dir}/driver_override`);
  const total = int(root.readAttr(`${dir}/sriov_totalvfs`));
  let sriov: SriovInfo | null = null;
  if (total !== null && total > 0) {
    const vfs = root
      .list(dir)
      .filter((f) => f.startsWith('virtfn'))
      .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)))
      .map((f) => root.linkName(`${dir}/${f}`))
      .filter((x): x is string => x !== undefined);
    const ap = root.readAttr(`${dir}/sriov_drivers_autoprobe`);
    sriov = {
      totalVfs: total,
      numVfs: int(root.readAttr(`${dir}/sriov_numvfs`)) ?? vfs.length,
      driversAutoprobe: ap === undefined ? null : ap.trim() !== '0',
      vfs,
    };
  }
  const reset = root.readAttr(`${dir}/reset_method`);
  const vfioDev = root.list(`${dir}/vfio-dev`).find((f) => f.startsWith('vfio')) ?? null;
  const klass = cls ?? '000000';
  return {
    address,
    vendor: vendor ?? '0000',
    device: device ?? '0000',
    subsystemVendor: sv,
    subsystemDevice: sd,
    class: klass,
    revision,
    modalias: m ? modalias! : null,
    headerType: headerType(root, dir, klass),
    driver: root.linkName(`${dir}/driver`) ?? null,
    // The kernel prints `(null)` for an unset override; a set one is printed with a newline.
    driverOverride: override === undefined || override === '(null)' ? null : override,
    iommuGroup: root.linkName(`${dir}/iommu_group`) ?? null,
    numaNode: int(root.readAttr(`${dir}/numa_node`)),
    resetMethods: reset === undefined ? null : reset.trim().split(/\s+/).filter(Boolean),
    sriov,
    physfn: root.linkName(`${dir}/physfn`) ?? null,
    vfioDev,
    bootVga: root.readAttr(`${dir}/boot_vga`)?.trim() === '1',
  };
}

/** Modalias string for a device record, built the way pci-sysfs.c prints it. */
export function modaliasOf(d: PciDevice): string {
  if (d.modalias) return d.modalias;
  const h8 = (x: string | null) => (x ?? '0000').toUpperCase().padStart(8, '0');
  const c = d.class.toUpperCase();
  return `pci:v${h8(d.vendor)}d${h8(d.device)}sv${h8(d.subsystemVendor)}sd${h8(d.subsystemDevice)}bc${c.slice(0, 2)}sc${c.slice(2, 4)}i${c.slice(4, 6)}`;
}
