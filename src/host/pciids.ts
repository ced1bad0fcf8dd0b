// Human-readable names from the system's pci.ids (Debian: pci.ids package -> /usr/share/misc,
// hwdata -> /usr/share/hwdata). No hand-written name tables: no database, no names.
import type { HostRoot } from './root';

export const PCI_IDS_PATHS = [
  '/usr/share/misc/pci.ids',
  '/usr/share/hwdata/pci.ids',
  '/usr/share/pci.ids',
  '/usr/local/share/pci.ids',
];

export interface PciNames {
  vendorName(vendor: string): string | null;
  deviceName(vendor: string, device: string): string | null;
  subsystemName(vendor: string, device: string, sv: string, sd: string): string | null;
  className(cls: string): string | null;
}

interface NameMaps {
  readonly vendorNames: Map<string, string>;
  readonly deviceNames: Map<string, string>;
  readonly subsysNames: Map<string, string>;
  readonly classNames: Map<string, string>;
}

const newMaps = (): NameMaps => ({
  vendorNames: new Map(),
  deviceNames: new Map(),
  subsysNames: new Map(),
  classNames: new Map(),
});

/**
 * The pci.ids line grammar: vendor lines, tab-indented device and subsystem lines below the
 * wanted vendors, then `C xx` class lines with their subclasses and prog-ifs.
 */
function parseLines(text: string, want: ReadonlySet<string>, into: NameMaps): void {
  const { vendorNames, deviceNames, subsysNames, classNames } = into;
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
}

// A line that starts a new vendor or class: not indented, not a comment, not empty.
const SECTION_END = /\n(?![\t#\n])/;
/** Bytes decoded at a time while looking for a section's end (most sections are a few KB). */
const CHUNK = 16384;

/**
 * Names of the vendors asked for (plus the classes). The ~1.3 MB file is searched in place as
 * bytes and only the lines used are decoded, on first use: `show` needs one vendor's and one
 * device's. (Decoding the whole file into one string cost more than the rest of `show`'s reads:
 * a 1.3 MB heap string to allocate, copy and collect.)
 */
export function loadPciNames(root: HostRoot, vendors: Iterable<string>): PciNames | null {
  let bytes: Buffer | undefined;
  for (const p of PCI_IDS_PATHS) {
    bytes = root.readFileBuffer(p);
    if (bytes !== undefined) break;
  }
  if (bytes === undefined) return null;
  const file = bytes;
  // Byte offsets throughout; needles are ASCII, so they match as the same bytes.
  const startsWith = (s: string) => file.toString('latin1', 0, s.length) === s;
  const want = new Set(vendors);
  // Everything from the first class line on, parsed as a whole (it is small, and a vendor line
  // after it, in an odd file, would be parsed there too); its names win, as later lines do.
  const c = file.indexOf('\nC ');
  const classAt = startsWith('C ') ? 0 : c >= 0 ? c + 1 : -1;
  const headEnd = classAt >= 0 ? classAt : file.length;
  let tail: NameMaps | undefined;
  const tailMaps = (): NameMaps =>
    (tail ??= parseInto(classAt >= 0 ? file.toString('utf8', classAt) : '', newMaps()));
  const parseInto = (t: string, m: NameMaps): NameMaps => (parseLines(t, want, m), m);
  /**
   * The first `\n` at or after `at` that starts a new vendor or class (or ends the file), else -1.
   */
  const sectionEnd = (at: number): number => {
    for (let from = at; from < file.length; from += CHUNK) {
      // One byte more than the chunk: the look-ahead needs the byte after a chunk's last `\n`.
      const to = Math.min(file.length, from + CHUNK + 1);
      const m = SECTION_END.exec(file.toString('latin1', from, to));
      if (m && (m.index < to - from - 1 || to === file.length)) return from + m.index;
    }
    return -1;
  };
  // Each wanted vendor's sections: from each line before the classes that starts with its id
  // (one, in a sane file) up to the next unindented line. Found once, then searched in place.
  const sectionsOf = new Map<string, { at: number; end: number }[]>();
  const sections = (v: string) => {
    let l = sectionsOf.get(v);
    if (!l) {
      l = [];
      if (want.has(v)) {
        const starts = startsWith(v) ? [0] : [];
        for (
          let i = file.indexOf('\n' + v);
          i >= 0 && i + 1 < headEnd;
          i = file.indexOf('\n' + v, i + 1)
        )
          starts.push(i + 1);
        for (const at of starts) {
          const e = sectionEnd(at);
          l.push({ at, end: e >= 0 && e < headEnd ? e : headEnd });
        }
      }
      sectionsOf.set(v, l);
    }
    return l;
  };
  const lineAt = (i: number): string => {
    const e = file.indexOf(10, i);
    return file.toString('utf8', i, e < 0 ? file.length : e);
  };
  // `list` asks once per device: thousands of VFs share a few vendor:device pairs.
  const vendorCache = new Map<string, string | null>();
  const deviceCache = new Map<string, string | null>();
  let subsys: NameMaps | undefined;
  const parsedSubsys = new Set<string>();
  // Later lines win (the names were a Map filled in file order): the tail, then the last section.
  return {
    vendorName: (v) => {
      let name = vendorCache.get(v);
      if (name === undefined) {
        const l = sections(v);
        name =
          tailMaps().vendorNames.get(v) ??
          (l.length
            ? lineAt(l[l.length - 1]!.at)
                .slice(6)
                .trim()
            : null);
        vendorCache.set(v, name);
      }
      return name;
    },
    deviceName: (v, d) => {
      const key = `${v}:${d}`;
      let name = deviceCache.get(key);
      if (name === undefined) {
        name = tailMaps().deviceNames.get(key) ?? null;
        const l = sections(v);
        for (let k = l.length - 1; name === null && k >= 0; k--) {
          // A device line is `\tdddd  name`; subsystem lines have two tabs, so cannot match.
          const i = file.lastIndexOf('\n\t' + d, Math.max(0, l[k]!.end - 1));
          if (i >= l[k]!.at)
            name = lineAt(i + 1)
              .slice(7)
              .trim();
        }
        deviceCache.set(key, name);
      }
      return name;
    },
    subsystemName: (v, d, sv, sd) => {
      const t = tailMaps().subsysNames.get(`${v}:${d}:${sv}:${sd}`);
      if (t !== undefined) return t;
      subsys ??= newMaps();
      if (!parsedSubsys.has(v)) {
        parsedSubsys.add(v);
        for (const s of sections(v)) parseInto(file.toString('utf8', s.at, s.end), subsys);
      }
      return subsys.subsysNames.get(`${v}:${d}:${sv}:${sd}`) ?? null;
    },
    // Most specific class name known: prog-if, then subclass, then base class.
    className: (c) => {
      const names = tailMaps().classNames;
      return names.get(c) ?? names.get(c.slice(0, 4)) ?? names.get(c.slice(0, 2)) ?? null;
    },
  };
}
