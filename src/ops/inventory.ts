// The read-only inventory: every PCI device with its driver, best VFIO driver, IOMMU group, SR-IOV
// role and host use (`list`), or one device in full with every VFIO candidate (`show`).
import { loadPciNames } from '../host/pciids';
import { readSnapshot, type Snapshot } from '../read/snapshot';
import { loadConfig } from '../config/load';
import { desiredState } from '../config/desired';
import { CONFIG_FILE } from '../config/types';
import { ruleHook, type Hook } from '../hooks/discover';
import { EXIT, VfioctlError } from '../util/diag';
import { deviceView, resetWarning, type DeviceView } from '../report/device-view';
import type { Host } from './host';
import { readVfioUsers, vfioNodesOf } from '../host/vfio-users';
import { isOnVfio } from '../plan/checks';

export type { DeviceView } from '../report/device-view';

export interface Inventory {
  /** The views, made one by one as they are read (a host may have thousands of functions). */
  readonly devices: Iterable<DeviceView>;
  readonly count: number;
  readonly warnings: readonly string[];
}

/**
 * Open VFIO nodes, from one scan of every process's fds: made only when some device could be held
 * (`anyBound`: a device is on a VFIO driver, whose group or cdev node then exists), so a host
 * with nothing on VFIO, the usual case, pays nothing for it.
 */
function withVfioUsers(host: Host, snap: Snapshot, anyBound: boolean): Snapshot {
  return anyBound ? { ...snap, vfioUsers: readVfioUsers(host.root) } : snap;
}

/** Every device; `devices` is lazy, so a caller can stream it. */
export function inventory(host: Host): Inventory {
  const read = readSnapshot(host.root, { kernel: host.kernel });
  const snap = withVfioUsers(
    host,
    read,
    [...read.devices.values()].some((d) => isOnVfio(d, read)),
  );
  const names = loadPciNames(host.root, snap.devices.values());
  const devices = (function* () {
    for (const d of snap.devices.values()) yield deviceView(d, snap, names, false);
  })();
  return {
    devices,
    count: snap.devices.size,
    warnings: [...snap.warnings, ...host.pendingProblems()],
  };
}

export function list(host: Host): { devices: DeviceView[]; warnings: readonly string[] } {
  const inv = inventory(host);
  return { devices: [...inv.devices], warnings: inv.warnings };
}

/**
 * One device in full: candidates best first, hooks (hooks.d and its rule's); bad input when absent.
 */
export function show(
  host: Host,
  address: string,
): { device: DeviceView; warnings: readonly string[] } {
  const read = readSnapshot(host.root, {
    kernel: host.kernel,
    only: [address],
    shallow: true,
    trust: host.trust,
  });
  const d = read.devices.get(address);
  // Its group's node exists once any member is on VFIO (the peers are not read for show).
  const snap = d
    ? withVfioUsers(
        host,
        read,
        vfioNodesOf(d).some((n) => host.root.exists(n)),
      )
    : read;
  if (!d)
    throw new VfioctlError(
      `no PCI device ${address} (not in ${host.root.path('/sys/bus/pci/devices')}; see 'vfioctl list')`,
      EXIT.BAD_INPUT,
    );
  const names = loadPciNames(host.root, [d]);
  const v = deviceView(d, snap, names, true);
  const warnings = [...host.pendingProblems(), ...snap.warnings];
  const reset = resetWarning(d, host.root.kernelRelease());
  if (reset) warnings.push(`${address}: ${reset}`);
  v.hooks = [...snap.hooks, ...configuredHooks(host, snap, address, warnings)].map((h) => ({
    path: h.path,
    source: h.source,
    problem: h.problem,
  }));
  return { device: v, warnings };
}

/** The per-rule hooks of the rule governing this device; a broken configuration only warns here. */
function configuredHooks(host: Host, snap: Snapshot, address: string, warnings: string[]): Hook[] {
  if (!host.root.exists(CONFIG_FILE)) return [];
  try {
    const d = desiredState(loadConfig(host.root, host.trust), snap.devices).desires.get(address);
    return (d?.rule.hooks ?? []).map((p) => ruleHook(host.root, p, host.trust));
  } catch (e) {
    if (!(e instanceof VfioctlError)) throw e;
    warnings.push(`per-rule hooks not shown: ${e.message}`);
    return [];
  }
}
