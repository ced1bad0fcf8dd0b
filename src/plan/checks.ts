// Safety checks. Each returns refusals (never throws) so that one refusal never hides another.
import type { PciDevice } from '../host/pci';
import type { Snapshot } from '../read/snapshot';
import { deviceInUse } from '../host/usage';
import { vfioNodesOf } from '../host/vfio-users';
import { isVfioModule } from './target';
import type { Refusal } from './types';

/** Drivers that leave an IOMMU group viable for VFIO (they set driver_managed_dma, or none). */
const DMA_SAFE_DRIVERS = new Set(['pci-stub', 'pcieport']);

export function isOnVfio(dev: PciDevice, snap: Snapshot): boolean {
  if (dev.vfioDev !== null) return true;
  if (dev.driver === null) return false;
  return isVfioModule(snap, snap.modules.drivers.driverModule.get(dev.driver) ?? null, dev.driver);
}

/** Leaves the IOMMU group viable: unbound, a VFIO driver, a DMA-safe driver, or a bridge. */
export function isViableMember(dev: PciDevice, snap: Snapshot): boolean {
  return (
    dev.driver === null ||
    DMA_SAFE_DRIVERS.has(dev.driver) ||
    isOnVfio(dev, snap) ||
    (dev.headerType ?? 0) !== 0
  );
}

export function checkHostUse(dev: PciDevice, snap: Snapshot): Refusal[] {
  const why = deviceInUse(snap.use, dev.address, dev.bootVga);
  if (why.length === 0) return [];
  return [
    {
      check: 'in-use',
      message: `the host is using it: ${why.join('; ')}. Unbinding would cut the host off; stop using it first (take the interface down, unmount), or --force`,
      forceable: true,
    },
  ];
}

/**
 * Open VFIO nodes: unbinding blocks uninterruptibly in the kernel until they close. Never forced.
 */
export function checkVfioUsers(dev: PciDevice, snap: Snapshot): Refusal[] {
  const out: Refusal[] = [];
  for (const n of vfioNodesOf(dev)) {
    const users = snap.vfioUsers.get(n);
    if (!users || users.length === 0) continue;
    out.push({
      check: 'vfio-user',
      message: `${n} is open by ${users.map((u) => `pid ${u.pid} (${u.comm})`).join(', ')}: unbinding now would block in the kernel until it is closed; stop that VM/process first (not overridable with --force)`,
      forceable: false,
    });
  }
  return out;
}

export function checkIommu(dev: PciDevice, snap: Snapshot): Refusal[] {
  if (snap.iommu.present && dev.iommuGroup !== null) return [];
  const why = snap.iommu.present
    ? `it has no IOMMU group`
    : `this host has no IOMMU (no /sys/class/iommu, no IOMMU groups)`;
  return [
    {
      check: 'no-iommu',
      message: `VFIO needs an IOMMU and ${why}: enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on (or amd_iommu=on); 'vfioctl doctor' explains what is missing`,
      forceable: false,
    },
  ];
}

export function checkSriovPf(dev: PciDevice): Refusal[] {
  if (!dev.sriov || dev.sriov.numVfs === 0) return [];
  return [
    {
      check: 'sriov-pf',
      message: `it is an SR-IOV PF with ${dev.sriov.numVfs} VFs enabled (${dev.sriov.vfs.slice(0, 4).join(', ')}${dev.sriov.vfs.length > 4 ? ', ...' : ''}): moving it destroys its VFs and whatever uses them; set sriov_numvfs to 0 first, or --force`,
      forceable: true,
    },
  ];
}

/** Group members that would keep the group non-viable after this bind. */
export function nonViablePeers(
  dev: PciDevice,
  snap: Snapshot,
  moving: ReadonlySet<string>,
): PciDevice[] {
  if (!dev.iommuGroup) return [];
  const members = snap.iommu.groups.get(dev.iommuGroup) ?? [];
  const out: PciDevice[] = [];
  for (const a of members) {
    if (a === dev.address || moving.has(a)) continue;
    const p = snap.devices.get(a);
    if (p && !isViableMember(p, snap)) out.push(p);
  }
  return out;
}

export function checkGroupViable(
  dev: PciDevice,
  snap: Snapshot,
  moving: ReadonlySet<string>,
): Refusal[] {
  const peers = nonViablePeers(dev, snap, moving);
  if (peers.length === 0) return [];
  return [
    {
      check: 'iommu-group',
      message: `IOMMU group ${dev.iommuGroup} would not be viable: ${peers.map((p) => `${p.address} (${p.driver})`).join(', ')} ${peers.length === 1 ? 'is' : 'are'} on host drivers; use --group to move the whole group (bridges excluded), or --force`,
      forceable: true,
    },
  ];
}
