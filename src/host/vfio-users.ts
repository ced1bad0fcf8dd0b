// Who holds VFIO device nodes open. Unbinding a device that a VFIO user holds blocks
// uninterruptibly in the kernel (vfio_unregister_group_dev waits, holding the device lock), so
// this is read *before* anything is unbound.
import type { HostRoot } from './root';

export interface VfioOpener {
  readonly pid: number;
  readonly comm: string;
}

/** Device node path (`/dev/vfio/12`, `/dev/vfio/devices/vfio0`, `/dev/iommu`) -> openers. */
export type VfioUsers = ReadonlyMap<string, readonly VfioOpener[]>;

export function readVfioUsers(root: HostRoot): VfioUsers {
  const out = new Map<string, VfioOpener[]>();
  for (const p of root.list('/proc')) {
    if (!/^[0-9]+$/.test(p)) continue;
    const fds = root.list(`/proc/${p}/fd`);
    let comm: string | undefined;
    for (const fd of fds) {
      const t = root.readLink(`/proc/${p}/fd/${fd}`);
      if (t === undefined || !(t.startsWith('/dev/vfio/') || t === '/dev/iommu')) continue;
      if (t === '/dev/vfio/vfio') continue; // the container node says nothing about a device
      comm ??= root.readAttr(`/proc/${p}/comm`)?.trim() ?? '?';
      const l = out.get(t) ?? [];
      if (!l.some((o) => o.pid === Number(p))) l.push({ pid: Number(p), comm });
      out.set(t, l);
    }
  }
  return out;
}

/**
 * The nodes through which a VFIO user holds this device: its group's (`/dev/vfio/N`, or
 * `noiommu-N` in no-IOMMU mode), which holds every member of the group, and its own cdev
 * (`/dev/vfio/devices/vfioX`, CONFIG_VFIO_DEVICE_CDEV, about 6.6 on).
 */
export function vfioNodesOf(dev: {
  readonly iommuGroup: string | null;
  readonly vfioDev: string | null;
}): string[] {
  const nodes: string[] = [];
  if (dev.iommuGroup)
    nodes.push(`/dev/vfio/${dev.iommuGroup}`, `/dev/vfio/noiommu-${dev.iommuGroup}`);
  if (dev.vfioDev) nodes.push(`/dev/vfio/devices/${dev.vfioDev}`);
  return nodes;
}

/** Who holds the device open, node by node (empty when nobody does). */
export function holdersOf(
  users: VfioUsers,
  dev: { readonly iommuGroup: string | null; readonly vfioDev: string | null },
): { node: string; pid: number; comm: string }[] {
  // The usual host: nobody holds any VFIO node (or they were not read), thousands of devices.
  if (users.size === 0) return [];
  return vfioNodesOf(dev).flatMap((node) =>
    (users.get(node) ?? []).map((u) => ({ node, pid: u.pid, comm: u.comm })),
  );
}
