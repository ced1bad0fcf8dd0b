// Reads one PCI device's sysfs directory (drivers/pci/pci-sysfs.c) into a plain record.
import { routingIdOf, vfRoutingAddress } from './address';
import type { HostDir, HostRoot } from './root';

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

// pci:v%08Xd%08Xsv%08Xsd%08Xbc%02Xsc%02Xi%02X (drivers/pci/pci-sysfs.c modalias_show); the
// 16-bit ids leave the upper four digits 0.
const MODALIAS =
  /^pci:v0000[0-9A-Fa-f]{4}d0000[0-9A-Fa-f]{4}sv0000[0-9A-Fa-f]{4}sd0000[0-9A-Fa-f]{4}bc[0-9A-Fa-f]{2}sc[0-9A-Fa-f]{2}i[0-9A-Fa-f]{2}$/;

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

// Config space header (PCI 3.0 6.1): revision ID at 0x08, header type at 0x0e. The first 64
// bytes are readable without CAP_SYS_ADMIN (pci-sysfs.c pci_read_config).
const PCI_REVISION_ID = 0x08;
const PCI_HEADER_TYPE = 0x0e;

// The last reset_method read and its methods: the VFs of a PF read the same line, so they share
// one (frozen) list instead of thousands of equal ones.
let lastReset: string | undefined;
let lastResetMethods: readonly string[] = Object.freeze([]);

/** reset_method_show (pci.c) prints the methods in order, space-separated. */
function resetMethodsOf(reset: string): readonly string[] {
  if (reset !== lastReset) {
    lastReset = reset;
    lastResetMethods = Object.freeze(reset.trim().split(/\s+/).filter(Boolean));
  }
  return lastResetMethods;
}

/** Header type inferred from the class when config space cannot be read (bridges are 1/2). */
function headerTypeOfClass(cls: string): number {
  if (cls.startsWith('0604') || cls.startsWith('0609')) return 1;
  if (cls.startsWith('0607')) return 2;
  return 0;
}

/**
 * What a caller reading many devices already knows from one directory read each, instead of a
 * link per device: the driver from /sys/bus/pci/drivers/<driver>/<address> (created and removed
 * with the device's `driver` link, drivers/base/dd.c driver_sysfs_add/remove), the PF from the
 * PF's virtfnN links (created with the VF's `physfn` link, drivers/pci/iov.c pci_iov_add_virtfn).
 */
export interface KnownLinks {
  /** Driver name or null for unbound; absent: read the `driver` link. */
  readonly driver?: string | null;
  /** PF address; absent: read the `physfn` link. */
  readonly physfn?: string;
  /**
   * The device's own directory (root-relative /sys/devices/... path), e.g. from its PF's
   * virtfnN link; absent: read the /sys/bus/pci/devices link.
   */
  readonly dir?: string;
  /** The device's vfioN (null: none), e.g. from the /sys/class/vfio-dev links; absent: look. */
  readonly vfioDev?: string | null;
}

/**
 * A PF's VFs (virtfnN, N in `ids`, ascending) with their directories, by arithmetic instead of a
 * readlink per link: pci_iov_add_virtfn (drivers/pci/iov.c) places VF N by its PF's routing ID,
 * sriov_offset and sriov_stride (address.ts vfRoutingAddress), makes it its PF's sibling
 * (virtfn->dev.parent = dev->dev.parent) and links virtfnN to it. The attributes (v4.17+) show
 * the values for the current NumVFs (pci_iov_set_numvfs). The first and last links are read all
 * the same and must name what the arithmetic does; otherwise, and without the attributes,
 * undefined: the caller reads every link. So does a PF with one or two VFs: the check reads all
 * of its links anyway, and the attributes would be two reads more.
 */
function vfsByRoutingId(
  dir: HostDir,
  address: string,
  ids: readonly number[],
): { vf: string; dir: string }[] | undefined {
  if (ids.length <= 2) return undefined;
  const offset = dir.readAttr('sriov_offset');
  const stride = dir.readAttr('sriov_stride');
  if (offset === undefined || stride === undefined) return undefined;
  if (!/^\d{1,5}$/.test(offset) || !/^\d{1,5}$/.test(stride)) return undefined;
  const parent = dir.rel.slice(0, dir.rel.lastIndexOf('/'));
  const pf = routingIdOf(address);
  if (pf === undefined) return undefined;
  const out: { vf: string; dir: string }[] = [];
  for (const n of ids) {
    const vf = vfRoutingAddress(pf, Number(offset), Number(stride), n);
    if (vf === undefined) return undefined;
    out.push({ vf, dir: `${parent}/${vf}` });
  }
  for (const i of new Set([0, ids.length - 1]))
    if (dir.linkTarget(`virtfn${ids[i]}`) !== out[i]!.dir) return undefined;
  return out;
}

/**
 * `vfDirs`, when given, receives each VF's directory as the PF's virtfnN links name it (the
 * KnownLinks.dir of a later readPciDevice of that VF).
 */
export function readPciDevice(
  root: HostRoot,
  address: string,
  known: KnownLinks = {},
  vfDirs?: Map<string, string>,
): PciDevice | undefined {
  const link = `/sys/bus/pci/devices/${address}`;
  // The device's own directory (/sys/devices/...): each attribute read then skips the bus link.
  const dir = root.at(known.dir ?? root.linkTarget(link) ?? link);
  const modalias = dir.readAttr('modalias');
  if (modalias === undefined && !dir.exists()) return undefined;
  // The fields have fixed widths (%08X, %02X): sliced from one lower-cased copy, not captured
  // (five strings and a match array fewer per device, thousands of VFs).
  const ids = modalias !== undefined && MODALIAS.test(modalias) ? modalias.toLowerCase() : null;
  let vendor: string | null,
    device: string | null,
    sv: string | null,
    sd: string | null,
    cls: string | null;
  if (ids !== null) {
    vendor = ids.slice(9, 13);
    device = ids.slice(18, 22);
    sv = ids.slice(28, 32);
    sd = ids.slice(38, 42);
    cls = ids.slice(44, 46) + ids.slice(48, 50) + ids.slice(51, 53);
  } else {
    vendor = hex4(dir.readAttr('vendor'));
    device = hex4(dir.readAttr('device'));
    sv = hex4(dir.readAttr('subsystem_vendor'));
    sd = hex4(dir.readAttr('subsystem_device'));
    const c = dir.readAttr('class');
    cls = c && /^0x[0-9a-fA-F]{6}$/.test(c.trim()) ? c.trim().slice(2).toLowerCase() : null;
  }
  // One read of the config header answers both the revision and the header type. `revision`
  // prints pdev->revision (pci-sysfs.c pci_config_attr), which pci_setup_device (probe.c) took
  // from this same register, PCI_CLASS_REVISION's low byte: the attribute is read only when
  // config space is not (a tree without it, or one too short).
  const head = dir.readHead('config', PCI_HEADER_TYPE + 1);
  const revByte = head && head.length > PCI_REVISION_ID ? head[PCI_REVISION_ID]! : undefined;
  const htByte = head && head.length > PCI_HEADER_TYPE ? head[PCI_HEADER_TYPE]! : undefined;
  let revision: string | null;
  if (revByte !== undefined) revision = revByte.toString(16).padStart(2, '0');
  else {
    const revRaw = dir.readAttr('revision');
    revision =
      revRaw && /^0x[0-9a-fA-F]{1,2}$/.test(revRaw.trim())
        ? revRaw.trim().slice(2).toLowerCase().padStart(2, '0')
        : null;
  }
  const override = dir.readAttr('driver_override');
  // Only VFs have the link (pci_iov_add_virtfn).
  const physfn = known.physfn ?? dir.optionalLinkName('physfn');
  // sriov_* exist only on PFs (drivers/pci/iov.c sriov_pf_attrs_are_visible: dev_is_pf), and a
  // VF is never a PF: no reads for the thousands of VFs. Most other devices lack them too:
  // existsSync fails without the cost of a thrown ENOENT.
  const total =
    physfn === null && dir.exists('sriov_totalvfs') ? int(dir.readAttr('sriov_totalvfs')) : null;
  let sriov: SriovInfo | null = null;
  if (total !== null && total > 0) {
    const vfs: string[] = [];
    const ids = dir
      .list()
      .filter((f) => /^virtfn(?:0|[1-9][0-9]{0,4})$/.test(f))
      .map((f) => Number(f.slice(6)))
      .sort((a, b) => a - b);
    const computed = vfsByRoutingId(dir, address, ids);
    if (computed)
      for (const c of computed) {
        vfs.push(c.vf);
        vfDirs?.set(c.vf, c.dir);
      }
    else
      for (const n of ids) {
        // virtfnN -> ../<VF address>: the VF's own directory (pci_iov_add_virtfn links the VF's
        // kobject), so reading the VF later needs no readlink of its bus link.
        const t = dir.linkTarget(`virtfn${n}`);
        const target = t === undefined || t.endsWith('/') ? undefined : t;
        const vf =
          target === undefined
            ? dir.linkName(`virtfn${n}`)
            : target.slice(target.lastIndexOf('/') + 1);
        if (vf === undefined) continue;
        vfs.push(vf);
        if (vfDirs && target !== undefined) vfDirs.set(vf, target);
      }
    const ap = dir.readAttr('sriov_drivers_autoprobe');
    sriov = {
      totalVfs: total,
      numVfs: int(dir.readAttr('sriov_numvfs')) ?? vfs.length,
      driversAutoprobe: ap === undefined ? null : ap.trim() !== '0',
      vfs,
    };
  }
  const reset = dir.readAttr('reset_method');
  // vfio-dev/ exists only below a device a VFIO driver registered (vfio_device_add), so most
  // have none. Not skipped for unbound devices: an unbind blocked on an open VFIO device has
  // already dropped the `driver` link (driver_sysfs_remove runs before the driver's remove()).
  const vfioDev =
    known.vfioDev !== undefined
      ? known.vfioDev
      : dir.exists('vfio-dev')
        ? (dir.list('vfio-dev').find((f) => f.startsWith('vfio')) ?? null)
        : null;
  const klass = cls ?? '000000';
  // An unbound device has no driver link.
  const driver = known.driver !== undefined ? known.driver : dir.optionalLinkName('driver');
  return {
    address,
    vendor: vendor ?? '0000',
    device: device ?? '0000',
    subsystemVendor: sv,
    subsystemDevice: sd,
    class: klass,
    revision,
    modalias: ids !== null ? modalias! : null,
    headerType: htByte !== undefined ? htByte & 0x7f : headerTypeOfClass(klass),
    driver,
    // The kernel prints `(null)` for an unset override; a set one is printed with a newline.
    driverOverride: override === undefined || override === '(null)' ? null : override,
    iommuGroup: dir.linkName('iommu_group') ?? null,
    numaNode: int(dir.readAttr('numa_node')),
    resetMethods: reset === undefined ? null : resetMethodsOf(reset),
    sriov,
    physfn,
    vfioDev,
    // boot_vga is only visible on VGA-class devices (pci-sysfs.c pci_dev_attrs_are_visible:
    // class 0x0300, and 0x0001 "pre-2.0 VGA" since pci_is_vga()); unknown class: look anyway.
    bootVga:
      (cls === null || cls.startsWith('03') || cls.startsWith('0001')) &&
      dir.readAttr('boot_vga')?.trim() === '1',
  };
}

/** Modalias string for a device record, built the way pci-sysfs.c prints it. */
export function modaliasOf(d: PciDevice): string {
  if (d.modalias) return d.modalias;
  const h8 = (x: string | null) => (x ?? '0000').toUpperCase().padStart(8, '0');
  const c = d.class.toUpperCase();
  return `pci:v${h8(d.vendor)}d${h8(d.device)}sv${h8(d.subsystemVendor)}sd${h8(d.subsystemDevice)}bc${c.slice(0, 2)}sc${c.slice(2, 4)}i${c.slice(4, 6)}`;
}
