// Human-readable names from the system's pci.ids (Debian: pci.ids package -> /usr/share/misc,
// hwdata -> /usr/share/hwdata). No hand-written name tables: no database, no names.
import type { HostRoot } from './root';
import { fileIdentity } from './run-cache';
import { readPciNamesCache, writePciNamesCache } from './pciids-cache';

export const PCI_IDS_PATHS = [
  '/usr/share/misc/pci.ids',
  '/usr/share/hwdata/pci.ids',
  '/usr/share/pci.ids',
  '/usr/local/share/pci.ids',
];

export interface PciNames {
  vendorName(vendor: string): string | null;
  /** Only for the devices loadPciNames was given. */
  deviceName(vendor: string, device: string): string | null;
  className(cls: string): string | null;
}

export interface NameMaps {
  readonly vendorNames: Map<string, string>;
  readonly deviceNames: Map<string, string>;
  readonly classNames: Map<string, string>;
}

const newMaps = (): NameMaps => ({
  vendorNames: new Map(),
  deviceNames: new Map(),
  classNames: new Map(),
});

/**
 * The pci.ids line grammar (pciutils' lib/names-parse.c): unindented vendor lines and `C xx`
 * class lines; below a vendor its devices (one tab) and their subsystems (two tabs), below a
 * class its subclasses and their prog-ifs. Later lines win. Ids are the file's lowercase hex, as
 * vfioctl reads them from sysfs.
 */
function parseLines(text: string, want: ReadonlySet<string>, into: NameMaps): void {
  const { vendorNames, deviceNames, classNames } = into;
  let vendor: string | null = null;
  let cls: string | null = null;
  let sub: string | null = null;
  let inClasses = false;
  for (const line of text.split('\n')) {
    if (line === '' || line[0] === '#') continue;
    if (line[0] !== '\t') {
      inClasses = line.startsWith('C ');
      if (inClasses) {
        cls = line.slice(2, 4).toLowerCase();
        sub = null;
        classNames.set(cls, line.slice(6).trim());
      } else {
        const v = line.slice(0, 4);
        vendor = want.has(v) ? v : null;
        if (vendor) vendorNames.set(vendor, line.slice(6).trim());
      }
    } else if (inClasses) {
      if (line[1] !== '\t') {
        sub = cls + line.slice(1, 3).toLowerCase();
        classNames.set(sub, line.slice(5).trim());
      } else if (sub) classNames.set(sub + line.slice(2, 4).toLowerCase(), line.slice(6).trim());
    } else if (vendor && line[1] !== '\t') {
      // Subsystem lines (two tabs) name what vendor:device alone does not: not asked for.
      deviceNames.set(`${vendor}:${line.slice(1, 5)}`, line.slice(7).trim());
    }
  }
}

/** A PCI function's ids, as far as names go. */
export interface PciIds {
  readonly vendor: string;
  readonly device: string;
}

const NL = 10;
/** The next line that is not indented, a comment or empty: a vendor's section ends there. */
const SECTION_END = /\n[^\t#\n]/;
/** Bytes decoded at a time while looking for a section's end (most sections are a few KB). */
const CHUNK = 8192;

/** Where the section that `pos` is in ends in window `w` (its `\n`), else w.length. */
function sectionEnd(w: Buffer, pos: number): number {
  for (let from = pos; from < w.length - 1; from += CHUNK) {
    // One byte more than the chunk: a line start is the byte after a `\n`.
    const m = SECTION_END.exec(w.toString('latin1', from, Math.min(w.length, from + CHUNK + 1)));
    if (m) return from + m.index;
  }
  return w.length;
}

/**
 * The lines of pci.ids that the devices asked for can be named from, in file order: each wanted
 * vendor's line, its wanted devices' lines, and everything from the first class line on (small,
 * and parsed as a whole: a vendor line after it, in an odd file, is parsed there too). The
 * ~1.3 MB file is streamed through one small buffer and searched as bytes: reading it whole cost
 * more than the rest of `show` (a fresh 1.3 MB buffer's page faults, then scans of all of it),
 * and only a few hundred bytes of it are used.
 */
function wantedLines(
  root: HostRoot,
  rel: string,
  want: ReadonlyMap<string, ReadonlySet<string>>,
): string | undefined {
  const out: string[] = [];
  const line = (w: Buffer, at: number): string => {
    const eol = w.indexOf(NL, at);
    return `${w.toString('utf8', at, eol < 0 ? w.length : eol)}\n`;
  };
  const vendors = [...want].map(([v, devices]) => ({
    needle: Buffer.from(`\n${v}`, 'latin1'),
    // A device line is `\tdddd  name`; subsystem lines have two tabs, so cannot match.
    devices: [...devices].map((d) => Buffer.from(`\n\t${d}`, 'latin1')),
  }));
  const classes = Buffer.from('\nC ', 'latin1');
  let section: (typeof vendors)[number] | null = null;
  let inClasses = false;
  const read = root.readLines(rel, (w) => {
    // w starts with the `\n` before its first line: every line start is just after a `\n`.
    if (inClasses) {
      out.push(w.toString('utf8', 1));
      return;
    }
    let pos = 0;
    for (;;) {
      if (section === null) {
        let at = w.indexOf(classes, pos);
        for (const v of vendors) {
          const i = w.indexOf(v.needle, pos);
          if (i >= 0 && (at < 0 || i < at)) {
            at = i;
            section = v;
          }
        }
        if (at < 0) return;
        if (section === null) {
          inClasses = true;
          out.push(w.toString('utf8', at + 1));
          return;
        }
        out.push(line(w, at + 1));
        pos = at + 1;
      }
      // In a wanted vendor's section: its end in this window, if there, then its wanted devices.
      const end = sectionEnd(w, pos);
      const found: [number, string][] = [];
      for (const d of section.devices)
        for (let i = w.indexOf(d, pos); i >= 0 && i < end; i = w.indexOf(d, i + 1))
          found.push([i, line(w, i + 1)]);
      // In file order: where a device is named twice, the later line wins (parseLines).
      for (const [, l] of found.sort((x, y) => x[0] - y[0])) out.push(l);
      if (end === w.length) return;
      section = null;
      pos = end;
    }
  });
  return read ? out.join('') : undefined;
}

/** vendor -> its devices: the ids names are wanted for. */
export type WantedIds = ReadonlyMap<string, ReadonlySet<string>>;

function wantedIds(devices: Iterable<PciIds>): Map<string, Set<string>> {
  const want = new Map<string, Set<string>>();
  for (const d of devices) {
    let s = want.get(d.vendor);
    if (!s) want.set(d.vendor, (s = new Set()));
    s.add(d.device);
  }
  return want;
}

/** The wanted names from the first of `paths` that can be read, else null. */
function scanPciIds(
  root: HostRoot,
  want: WantedIds,
  paths: readonly string[] = PCI_IDS_PATHS,
): NameMaps | null {
  for (const p of paths) {
    const text = wantedLines(root, p, want);
    if (text === undefined) continue;
    const m = newMaps();
    parseLines(text, new Set(want.keys()), m);
    return m;
  }
  return null;
}

function namesOf(m: NameMaps): PciNames {
  return {
    vendorName: (v) => m.vendorNames.get(v) ?? null,
    deviceName: (v, d) => m.deviceNames.get(`${v}:${d}`) ?? null,
    // Most specific class name known: prog-if, then subclass, then base class.
    className: (c) =>
      m.classNames.get(c) ??
      m.classNames.get(c.slice(0, 4)) ??
      m.classNames.get(c.slice(0, 2)) ??
      null,
  };
}

/**
 * Names for the devices asked for (their vendor and device, plus the classes), from the first
 * pci.ids found; null without one. From the run directory's cache when it names that very file
 * and every device asked for (pciids-cache.ts); else read from the file.
 */
export function loadPciNames(root: HostRoot, devices: Iterable<PciIds>): PciNames | null {
  const want = wantedIds(devices);
  const cached = readPciNamesCache(root, PCI_IDS_PATHS, want);
  if (cached) return namesOf(cached);
  const m = scanPciIds(root, want);
  return m && namesOf(m);
}

/**
 * Makes the cache hold the names of `devices` (a writing command's, under the lock, with every
 * device of the host) unless it already does: one scan of pci.ids, here, instead of one on
 * every `list` and `show`.
 */
export function refreshPciNamesCache(root: HostRoot, devices: Iterable<PciIds>): void {
  const want = wantedIds(devices);
  if (want.size === 0 || readPciNamesCache(root, PCI_IDS_PATHS, want)) return;
  for (const p of PCI_IDS_PATHS) {
    // Its identity before it is read: a file replaced meanwhile leaves a cache nothing matches.
    const id = fileIdentity(root, p);
    if (id === undefined) continue;
    const m = scanPciIds(root, want, [p]);
    if (m) writePciNamesCache(root, p, id, want, m);
    return;
  }
}
