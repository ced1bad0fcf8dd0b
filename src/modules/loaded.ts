// Which PCI drivers are registered now and which module provides each. modules.alias names
// *modules*; driver_override needs the *driver* name (pci_driver.name): vfio_pci registers
// `vfio-pci`, xe_vfio_pci registers `xe-vfio-pci`.
import type { HostRoot } from '../host/root';
import { moduleNormalize } from './fnmatch';

export interface DriverRegistry {
  /** driver name -> module name (normalised); module is null for a driver with no module link. */
  readonly driverModule: ReadonlyMap<string, string | null>;
  /** module -> PCI drivers it registered. */
  readonly moduleDrivers: ReadonlyMap<string, readonly string[]>;
  /** Modules loaded now (/sys/module/<name>/initstate == live, or built in). */
  readonly loadedModules: ReadonlySet<string>;
}

export function loadDriverRegistry(root: HostRoot): DriverRegistry {
  const driverModule = new Map<string, string | null>();
  const moduleDrivers = new Map<string, string[]>();
  for (const drv of root.list('/sys/bus/pci/drivers')) {
    const mod = root.linkName(`/sys/bus/pci/drivers/${drv}/module`);
    const m = mod === undefined ? null : moduleNormalize(mod);
    driverModule.set(drv, m);
    if (m !== null) {
      const l = moduleDrivers.get(m);
      if (l) l.push(drv);
      else moduleDrivers.set(m, [drv]);
    }
  }
  const loadedModules = new Set<string>();
  for (const m of root.list('/sys/module')) loadedModules.add(moduleNormalize(m));
  return { driverModule, moduleDrivers, loadedModules };
}

/** Modules whose PCI driver name differs from the module name (kernel-facts: module != driver). */
export const DRIVER_NAME_EXCEPTIONS: Readonly<Record<string, string>> = {
  vfio_pci: 'vfio-pci',
  xe_vfio_pci: 'xe-vfio-pci',
  // drivers/pci/pci-stub.c registers "pci-stub" (often built in, so not visible in sysfs until
  // used).
  pci_stub: 'pci-stub',
};

/** Driver name for a module: sysfs when it is loaded, else the known exceptions, else the name. */
export function driverNameForModule(reg: DriverRegistry, module: string): string {
  const live = reg.moduleDrivers.get(module);
  if (live && live.length > 0) {
    // A module may register several PCI drivers; prefer one that looks like a vfio driver.
    return live.find((d) => /vfio/.test(d)) ?? live[0]!;
  }
  return DRIVER_NAME_EXCEPTIONS[module] ?? module;
}
