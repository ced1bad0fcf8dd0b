// Human-readable names from the system's pci.ids (Debian: pci.ids package -> /usr/share/misc,
// hwdata -> /usr/share/hwdata). No hand-written name tables: no database, no names.
import type { HostRoot } from './root';

export const PCI_IDS_PATHS = ['/usr/share/misc/pci.ids', '/usr/share/hwdata/pci.ids', '/usr/share/pci.ids', '/usr/local/share/pci.ids'];

export interface PciNames {
  vendorName(vendor: string): string | null;
  deviceName(vendor: string, device: string): string | null;
  subsystemName(vendor: string, device: string, sv: string, sd: string): string | null;
  className(cls: string): string | null;
}

/**
 * Parses only the vendor sections that are asked for (plus the class section), so `list` on a
 * host with a handful of vendors does not build a map of all ~40k entries.
 */
export function loadPciNames(root: HostRoot, vendors: Iterable<string>): PciNames | null {
  let text: string | undefined;
  for (const p of PCI_IDS_PATHS) {
    text = root.readFile(p);
    if (text !== undefined) break;
  }
  if (text === undefined) return null;
  const want = new Set(vendors);
  const vendorNames = new Map<string, string>();
  const deviceNames = new Map<string, string>();
  const subsysNames = new Map<string, string>();
  const classNames = new Map<string, string>();
  let vendor: string | null = null;
  let device: string | null = null;
  let cls: string | null = null;
  let sub: string | null = null;
  let inClasses = false;
  for (const line of text.split('\n')) {
    if (line === '' || line[0] === '#') continue;
    if (!inClasses) {
      if (line[0] !== '\t') {
        if (line.startsWith('C ')) {
          inClasses = true;
          cls = line.slice(2, 4).toLowerCase();
          classNames.set(cls, line.slice(6).trim());
          continue;
        }
        const v = line.slice(0, 4).toLowerCase();
        vendor = want.has(v) ? v : null;
        if (vendor) vendorNames.set(vendor, line.slice(6).trim());
        device = null;
      } else if (vendor) {
        if (line[1] !== '\t') {
          device = line.slice(1, 5).toLowerCase();
          deviceNames.set(`${vendor}:${device}`, line.slice(7).trim());
        } else if (device) {
          const ids = line.slice(2, 11).toLowerCase().replace(' ', ':');
          subsysNames.set(`${vendor}:${device}:${ids}`, line.slice(13).trim());
        }
      }
    } else if (line.startsWith('C ')) {
      cls = line.slice(2, 4).toLowerCase();
      sub = null;
      classNames.set(cls, line.slice(6).trim());
    } else if (line[0] === '\t' && cls) {
      if (line[1] !== '\t') {
        sub = cls + line.slice(1, 3).toLowerCase();
        classNames.set(sub, line.slice(5).trim());
      } else if (sub) {
        classNames.set(sub + line.slice(2, 4).toLowerCase(), line.slice(6).trim());
      }
    } else inClasses = line.startsWith('C ');
  }
  return {
    vendorName: (v) => vendorNames.get(v) ?? null,
    deviceName: (v, d) => deviceNames.get(`${v}:${d}`) ?? null,
    subsystemName: (v, d, sv, sd) => subsysNames.get(`${v}:${d}:${sv}:${sd}`) ?? null,
    // Most specific class name known: prog-if, then subclass, then base class.
    className: (c) => classNames.get(c) ?? classNames.get(c.slice(0, 4)) ?? classNames.get(c.slice(0, 2)) ?? null,
  };
}
