// Reading (and, for clean-up only, writing) the guest kernel's PCI state. Scenarios assert on
// these values: what the kernel says, not what vfioctl printed.
import * as fs from 'node:fs';
import * as path from 'node:path';

export const PCI_DEVICES = '/sys/bus/pci/devices';

function readText(p: string): string | null {
  try {
    return fs.readFileSync(p, 'utf8');
  } catch {
    return null;
  }
}

function linkName(p: string): string | null {
  try {
    return path.basename(fs.readlinkSync(p));
  } catch {
    return null;
  }
}

function list(p: string): string[] {
  try {
    return fs.readdirSync(p).sort();
  } catch {
    return [];
  }
}

export function attr(address: string, name: string): string | null {
  const v = readText(`${PCI_DEVICES}/${address}/${name}`);
  return v === null ? null : v.replace(/\n$/, '');
}

export function allDevices(): string[] {
  return list(PCI_DEVICES);
}

export function exists(address: string): boolean {
  return fs.existsSync(`${PCI_DEVICES}/${address}`);
}

export function driverOf(address: string): string | null {
  return linkName(`${PCI_DEVICES}/${address}/driver`);
}

/** driver_override, with the kernel's "(null)" read as null. */
export function overrideOf(address: string): string | null {
  const v = attr(address, 'driver_override');
  return v === null || v === '(null)' ? null : v;
}

export function iommuGroupOf(address: string): string | null {
  return linkName(`${PCI_DEVICES}/${address}/iommu_group`);
}

export function groupMembers(group: string): string[] {
  return list(`/sys/kernel/iommu_groups/${group}/devices`);
}

/**
 * The vfio-dev class (Linux 6.1+, registered by vfio.ko): 5.10 has none, only the group class
 * "vfio".
 */
export function hasVfioDevClass(): boolean {
  return fs.existsSync('/sys/class/vfio-dev');
}

/** vfioN under <dev>/vfio-dev (Linux 6.1+): the device is bound to some vfio driver. */
export function vfioDevOf(address: string): string | null {
  return list(`${PCI_DEVICES}/${address}/vfio-dev`)[0] ?? null;
}

export function devVfio(): string[] {
  return list('/dev/vfio');
}

/** Interfaces below the device (directly, or under a virtio child). */
export function netdevsOf(address: string): string[] {
  const base = `${PCI_DEVICES}/${address}`;
  const out = list(`${base}/net`);
  for (const c of list(base).filter((n) => /^virtio\d+$/.test(n)))
    out.push(...list(`${base}/${c}/net`));
  return out.sort();
}

export function physfnOf(address: string): string | null {
  return linkName(`${PCI_DEVICES}/${address}/physfn`);
}

export function vfsOf(address: string): string[] {
  return list(`${PCI_DEVICES}/${address}`)
    .filter((n) => /^virtfn\d+$/.test(n))
    .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)))
    .map((n) => linkName(`${PCI_DEVICES}/${address}/${n}`)!)
    .filter(Boolean);
}

/** A loadable module that is loaded (built-in modules have no initstate). */
export function moduleLoaded(module: string): boolean {
  return fs.existsSync(`/sys/module/${module.replace(/-/g, '_')}/initstate`);
}

/** The part of a device's state every scenario compares before and after. */
export interface DeviceState {
  readonly driver: string | null;
  readonly override: string | null;
  readonly group: string | null;
  readonly vfioDev: string | null;
}

export function stateOf(address: string): DeviceState {
  return {
    driver: driverOf(address),
    override: overrideOf(address),
    group: iommuGroupOf(address),
    vfioDev: vfioDevOf(address),
  };
}

export function snapshot(addresses: readonly string[] = allDevices()): Map<string, DeviceState> {
  return new Map(addresses.map((a) => [a, stateOf(a)]));
}

export function describe(s: DeviceState): string {
  return `driver=${s.driver ?? '(none)'} override=${s.override ?? '(null)'}${s.vfioDev ? ` ${s.vfioDev}` : ''}`;
}

/** Writes a sysfs attribute; returns the errno code on failure instead of throwing. */
export function write(p: string, value: string): string | null {
  try {
    fs.writeFileSync(p, value);
    return null;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code ?? String(e);
  }
}

/**
 * Puts a device back to the given driver/override with plain sysfs writes (clean-up after a
 * failed scenario, so the next one starts from the boot state). Returns what it did.
 */
export function restore(address: string, want: DeviceState): string[] {
  const did: string[] = [];
  const now = stateOf(address);
  if (now.driver === want.driver && now.override === want.override) return did;
  write(`${PCI_DEVICES}/${address}/driver_override`, want.override === null ? '\n' : want.override);
  did.push(`override ${now.override ?? '(null)'} -> ${want.override ?? '(null)'}`);
  if (now.driver !== want.driver) {
    if (now.driver !== null) {
      write(`${PCI_DEVICES}/${address}/driver/unbind`, address);
      did.push(`unbound from ${now.driver}`);
    }
    if (want.driver !== null) {
      write('/sys/bus/pci/drivers_probe', address);
      did.push(`probed: now ${driverOf(address) ?? '(none)'}`);
    }
  }
  return did;
}
