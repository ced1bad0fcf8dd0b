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
