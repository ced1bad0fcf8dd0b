// The JSON contract of `list --json` / `show --json` (schema/device.schema.json) and its table.
import type { PciDevice } from '../host/pci';
import type { Snapshot } from '../read/snapshot';
import type { PciNames } from '../host/pciids';
import { deviceInUse } from '../host/usage';
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
  sriov: { totalVfs: number; numVfs: number; driversAutoprobe: boolean | null; vfs: string[] } | null;
  physfn: string | null;
  onVfio: boolean;
  vfioDev: string | null;
  netdevs: string[];
  blockdevs: string[];
  bootVga: boolean;
  inUse: string[];
  vfio: { module: string; driver: string } | null;
  vfioReason: string | null;
  candidates?: Candidate[];
  /** `show` only: why the candidates rank as they do, where it is not obvious. */
  explanation?: string[];
  /** `show` only: hooks that run when this device is bound or released. */
  hooks?: { path: string; source: string; problem: string | null }[];
}

/** `resolution`: the one a plan already carries for this device (else it is resolved here). */
export function deviceView(d: PciDevice, snap: Snapshot, names: PciNames | null, withCandidates: boolean, resolution: Resolution | null = null): DeviceView {
  const r = resolution ?? resolve(d, snap, { explain: withCandidates });
  const peers = d.iommuGroup ? (snap.iommu.groups.get(d.iommuGroup) ?? []).filter((a) => a !== d.address) : [];
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
    iommuGroupPeers: [...peers],
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
    vfio: r.vfio,
    vfioReason: r.reason,
  };
  if (withCandidates) (v.candidates = [...r.candidates]), (v.explanation = [...r.explanation]);
  return v;
}
