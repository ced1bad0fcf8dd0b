// The JSON contract of `list --json` / `show --json` (schema/device.schema.json) and its table.
import type { PciDevice } from '../host/pci';
import type { Snapshot } from '../read/snapshot';
import type { PciNames } from '../host/pciids';
import { deviceInUse } from '../host/usage';
import { holdersOf } from '../host/vfio-users';
import { resolve, type Candidate, type Resolution } from '../match/resolve';
import { isOnVfio } from '../plan/checks';

export interface DeviceView {
  address: string;
  vendor: string;
  device: string;
  subsystemVendor: string | null;
  subsystemDevice: string | null;
  class: string;
  revision: string | null;
  vendorName: string | null;
  deviceName: string | null;
  className: string | null;
  modalias: string | null;
  headerType: number | null;
  driver: string | null;
  driverOverride: string | null;
  iommuGroup: string | null;
  /** Other members of the device's IOMMU group. */
  iommuGroupPeers: string[];
  numaNode: number | null;
  resetMethods: string[] | null;
  sriov: {
    totalVfs: number;
    numVfs: number;
    driversAutoprobe: boolean | null;
    vfs: string[];
  } | null;
  physfn: string | null;
  onVfio: boolean;
  vfioDev: string | null;
  netdevs: string[];
  blockdevs: string[];
  bootVga: boolean;
  inUse: string[];
  /**
   * Processes holding the device's VFIO group or cdev open (a VMM using it), distinct from merely
   * being on a VFIO driver; empty when nobody does. Unbinding it now would block in the kernel.
   */
  vfioUsers: { node: string; pid: number; comm: string }[];
  vfio: { module: string; driver: string } | null;
  vfioReason: string | null;
  candidates?: Candidate[];
  /** `show` only: why the candidates rank as they do, where it is not obvious. */
  explanation?: string[];
  /** `show` only: hooks that run when this device is bound or released. */
  hooks?: { path: string; source: string; problem: string | null }[];
}

/** `resolution`: the one a plan already carries for this device (else it is resolved here). */
export function deviceView(
  d: PciDevice,
  snap: Snapshot,
  names: PciNames | null,
  withCandidates: boolean,
  resolution: Resolution | null = null,
): DeviceView {
  const r = resolution ?? resolve(d, snap, { explain: withCandidates });
  const peers = d.iommuGroup
    ? (snap.iommu.groups.get(d.iommuGroup) ?? []).filter((a) => a !== d.address)
    : [];
  const v: DeviceView = {
    address: d.address,
    vendor: d.vendor,
    device: d.device,
    subsystemVendor: d.subsystemVendor,
    subsystemDevice: d.subsystemDevice,
    class: d.class,
    revision: d.revision,
    vendorName: names?.vendorName(d.vendor) ?? null,
    deviceName: names?.deviceName(d.vendor, d.device) ?? null,
    className: names?.className(d.class) ?? null,
    modalias: d.modalias,
    headerType: d.headerType,
    driver: d.driver,
    driverOverride: d.driverOverride,
    iommuGroup: d.iommuGroup,
    iommuGroupPeers: peers,
    numaNode: d.numaNode,
    resetMethods: d.resetMethods ? [...d.resetMethods] : null,
    sriov: d.sriov ? { ...d.sriov, vfs: [...d.sriov.vfs] } : null,
    physfn: d.physfn,
    // vfio-dev/ exists from Linux 6.1 on; before that the driver says it (5.10: vfio-pci).
    onVfio: isOnVfio(d, snap),
    vfioDev: d.vfioDev,
    netdevs: (snap.use.netdevs.get(d.address) ?? []).map((n) => n.name),
    blockdevs: (snap.use.blockdevs.get(d.address) ?? []).map((b) => b.name),
    bootVga: d.bootVga,
    inUse: deviceInUse(snap.use, d.address, d.bootVga),
    vfioUsers: holdersOf(snap.vfioUsers, d),
    // A copy: the resolution may be shared by many devices (the VFs of one PF).
    vfio: r.vfio && { module: r.vfio.module, driver: r.vfio.driver },
    vfioReason: r.reason,
  };
  if (withCandidates) (v.candidates = [...r.candidates]), (v.explanation = [...r.explanation]);
  return v;
}

/**
 * A device with no usable reset (reset_method, v5.15): the kernel hides the attribute when it found
 * no reset method at all (pci_dev_reset_method_attr_is_visible: !pci_reset_supported()), and it
 * reads empty after an admin wrote an empty string to it (all methods disabled). vfio-pci cannot
 * reset such a device between VM runs, so it may come back in a state its driver or the next
 * guest cannot handle. Before 5.15 the attribute does not exist: nothing to tell. Bridges are not
 * passed through: not reported.
 */
export function resetWarning(d: PciDevice, runningRelease: string | undefined): string | null {
  if ((d.headerType ?? 0) !== 0) return null;
  if (d.resetMethods !== null && d.resetMethods.length > 0) return null;
  if (d.resetMethods !== null) {
    return (
      "no reset method: reset_method is empty (every method was disabled by writing an empty string to it); 'echo default > /sys/bus/pci/devices/" +
      d.address +
      "/reset_method' restores the kernel's choice; without one the device may not survive a VM restart"
    );
  }
  const m = /^(\d+)\.(\d+)/.exec(runningRelease ?? '');
  if (!m || Number(m[1]) * 1000 + Number(m[2]) < 5015) return null;
  return 'no reset method: the kernel found none for it (no reset_method attribute: no FLR, no PM reset, no usable bus reset); it may not survive a VM restart: see "Devices without a reset" in the README';
}
