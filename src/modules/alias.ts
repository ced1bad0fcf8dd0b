// modules.alias (written by depmod from each module's device table) and, since about v6.18,
// built-in drivers' aliases in modules.builtin.modinfo. scripts/mod/file2alias.c do_pci_entry()
// writes override-only entries (PCI_DRIVER_OVERRIDE_DEVICE_VFIO) with the prefix `vfio_pci:`.
import type { HostRoot } from '../host/root';
import type { Diagnostics } from '../util/diag';
import { aliasNormalize, moduleNormalize } from './fnmatch';
import {
  fileIdentity,
  readAliasIndex,
  writeAliasIndex,
  type AliasIndex,
  type IndexedAlias,
} from './alias-index';

/** vfio-pci's module: the generic VFIO driver, the fallback when no variant's table matches. */
export const VFIO_PCI_MODULE = 'vfio_pci';

export type AliasSource = 'modules.alias' | 'modules.builtin.modinfo' | 'known-variants';

export interface PciAlias {
  /** The pattern as written, e.g. `vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*`. */
  readonly pattern: string;
  /** kmod-normalised pattern used for matching. */
  readonly normalized: string;
  readonly module: string;
  /** Order of appearance: on a wildcard tie the earlier line wins (libvirt, NVIDIA's port). */
  readonly order: number;
  readonly source: AliasSource;
  readonly line: number;
}

export interface AliasDb {
  /** `vfio_pci:` aliases: the override-only variant ID tables. */
  readonly vfio: readonly PciAlias[];
  /** `pci:` aliases by module: ordinary ID tables, used to check a named driver. */
  readonly pciByModule: ReadonlyMap<string, readonly PciAlias[]>;
  /** vfio_pci: aliases by module. */
  readonly vfioByModule: ReadonlyMap<string, readonly PciAlias[]>;
  /** Did modules.alias exist at all for this kernel? */
  readonly present: boolean;
}

function pushTo(map: Map<string, PciAlias[]>, a: PciAlias): void {
  const l = map.get(a.module);
  if (l) l.push(a);
  else map.set(a.module, [a]);
}

/** Well-formed `pci:` lines (`alias pattern module`) of a text, noted as line offsets only. */
interface NotedLines {
  readonly text: string;
  /** Offsets of lines starting with `alias pci:`; this run is [from, to). */
  readonly lines: readonly number[];
  readonly from: number;
  readonly to: number;
  /** Order number of the first; the rest follow. */
  readonly order: number;
}

class AliasCollector {
  readonly vfio: PciAlias[] = [];
  readonly vfioByModule = new Map<string, PciAlias[]>();
  private order = 0;
  /**
   * `pci:` aliases in file order. Only a named driver's ID-table check needs them, and a Debian
   * kernel has ~9,000: `list` and `show` never build them, so well-formed lines are only noted.
   */
  private pci: (PciAlias | NotedLines | (() => NotedLines[]))[] = [];
  private pciMap: Map<string, PciAlias[]> | undefined;
  /** `vfio_pci:` lines as the index keeps them (what a successful parse can be indexed as). */
  readonly indexed: IndexedAlias[] = [];

  constructor(private readonly diag: Diagnostics) {}

  get pciByModule(): Map<string, PciAlias[]> {
    if (!this.pciMap) {
      const map = new Map<string, PciAlias[]>();
      let text = '';
      let line = 1;
      let pos = 0;
      for (const p of this.pci.flatMap((x) => (typeof x === 'function' ? x() : [x]))) {
        if ('pattern' in p) {
          pushTo(map, p);
          continue;
        }
        // Line numbers are counted now; a text's runs come in file order.
        if (p.text !== text) (text = p.text), (line = 1), (pos = 0);
        for (let k = p.from; k < p.to; k++) {
          const at = p.lines[k]!;
          for (let i = text.indexOf('\n', pos); i >= 0 && i < at; i = text.indexOf('\n', i + 1))
            line++;
          pos = at;
          // `alias pattern module`: the pattern holds no whitespace, the module runs to the end.
          const space = text.indexOf(' ', at + 6);
          const nl = text.indexOf('\n', space);
          const pattern = text.slice(at + 6, space);
          const normalized = pattern.includes('-') ? aliasNormalize(pattern)! : pattern;
          const module = moduleNormalize(text.slice(space + 1, nl < 0 ? text.length : nl));
          pushTo(map, {
            pattern,
            normalized,
            module,
            order: p.order + k - p.from,
            source: 'modules.alias',
            line,
          });
        }
      }
      this.pciMap = map;
    }
    return this.pciMap;
  }

  /**
   * Lines `lines[from..to)` of `text`, checked by the caller: `alias pci:PATTERN MODULE`, brackets
   * balanced.
   */
  noteLines(text: string, lines: readonly number[], from: number, to: number): void {
    if (to <= from) return;
    this.pci.push({ text, lines, from, to, order: this.order });
    this.order += to - from;
    this.pciMap = undefined;
  }

  get count(): number {
    return this.order;
  }

  /**
   * A file's aliases from its index: the `vfio_pci:` ones now, the `pci:` ones (read from `read`)
   * only if a named driver's ID table is asked for, numbered as a parse would number them.
   */
  restore(index: AliasIndex, where: string, read: () => string | undefined): void {
    const base = this.order;
    for (const [pattern, module, order, line] of index.vfio) {
      const a: PciAlias = {
        pattern,
        normalized: aliasNormalize(pattern)!,
        module,
        order: base + order,
        source: 'modules.alias',
        line,
      };
      this.vfio.push(a);
      pushTo(this.vfioByModule, a);
    }
    this.pci.push(() => {
      const text = read() ?? '';
      const lines = linesStartingWith(text, 'alias pci:');
      const out: NotedLines[] = [];
      let p = 0;
      let order = base;
      // Between two vfio_pci: lines, the pci: ones in between take the next numbers.
      for (const [, , vOrder, , offset] of [
        ...index.vfio,
        [where, '', index.count, 0, text.length + 1] as const,
      ]) {
        const from = p;
        while (p < lines.length && lines[p]! < offset) p++;
        if (p > from) out.push({ text, lines, from, to: p, order });
        order = base + vOrder + 1;
      }
      return out;
    });
    this.order = base + index.count;
    this.pciMap = undefined;
  }

  add(
    pattern: string,
    module: string,
    source: AliasSource,
    where: string,
    line: number,
    offset = -1,
  ): void {
    const normalized = aliasNormalize(pattern);
    if (normalized === null) {
      this.diag.warn(
        `${where}:${line}: unbalanced bracket in alias '${pattern}'; skipped (depmod skips it too)`,
      );
      return;
    }
    // Compare normalised: kmod treats `vfio-pci:` and `vfio_pci:` alike.
    const isVfio = normalized.startsWith('vfio_pci:');
    if (!isVfio && !normalized.startsWith('pci:')) return;
    const a: PciAlias = {
      pattern,
      normalized,
      module: moduleNormalize(module),
      order: this.order++,
      source,
      line,
    };
    if (isVfio) {
      this.vfio.push(a);
      pushTo(this.vfioByModule, a);
      if (offset >= 0) this.indexed.push([pattern, a.module, a.order, line, offset]);
    } else {
      this.pci.push(a);
      this.pciMap = undefined;
    }
  }
}

const MODULE_NAME = /^[A-Za-z0-9_-]+$/;
// `pci:PATTERN MODULE` alone on its line: one space, balanced brackets, a valid module name.
// Anything else (tabs, extra fields, `]` alone) takes the line-by-line path and its warnings.
const WELL_FORMED = '[^\\s[\\]]*(?:\\[[^\\s\\]]*\\][^\\s[\\]]*)* [A-Za-z0-9_-]+(?=\\n|$)';
// A line other than: blank, a comment, an alias that is not `pci:` (vfio ones are parsed on
// their own), a well-formed `pci:` alias. Depmod writes none; with one, parse line by line.
const ODD = `(?!\\n|$|#|alias (?!pci:)|alias pci:${WELL_FORMED})`;
const ODD_FIRST_LINE = new RegExp(ODD, 'y');
const ODD_LINE = new RegExp(`\\n${ODD}`);

/** One line, checked and added the way depmod's format is read (with its warnings). */
function parseLine(
  line: string,
  lineNo: number,
  where: string,
  col: AliasCollector,
  diag: Diagnostics,
  offset = -1,
): void {
  if (
    line.startsWith('alias pci:') ||
    line.startsWith('alias vfio_pci:') ||
    line.startsWith('alias vfio-pci:')
  ) {
    const parts = line.trim().split(/\s+/);
    if (parts.length !== 3 || !MODULE_NAME.test(parts[2]!)) {
      diag.warn(`${where}:${lineNo}: malformed alias line '${line}'; skipped`);
      return;
    }
    col.add(parts[1]!, parts[2]!, 'modules.alias', where, lineNo, offset);
  } else if (!line.startsWith('alias ')) {
    if (line.trim() !== '')
      diag.warn(`${where}:${lineNo}: not an alias line '${line.slice(0, 80)}'; skipped`);
  }
}

/** Offsets of the lines starting with `prefix`, ascending. */
function linesStartingWith(text: string, prefix: string): number[] {
  const out = text.startsWith(prefix) ? [0] : [];
  const needle = '\n' + prefix;
  for (let i = text.indexOf(needle); i >= 0; i = text.indexOf(needle, i + 1)) out.push(i + 1);
  return out;
}

/**
 * The whole file without a JavaScript loop over its ~27k lines, when every line is of a kind
 * depmod writes (checked by one regular expression): the `pci:` lines are only counted and
 * noted (their order numbers are needed), the few `vfio_pci:` ones parsed. Same result and
 * warnings as line by line; false (nothing added) when some line needs that.
 */
function parseDepmodOutput(
  text: string,
  where: string,
  col: AliasCollector,
  diag: Diagnostics,
): boolean {
  ODD_FIRST_LINE.lastIndex = 0;
  if (ODD_FIRST_LINE.test(text) || ODD_LINE.test(text)) return false;
  const pci = linesStartingWith(text, 'alias pci:');
  const vfio = [
    ...linesStartingWith(text, 'alias vfio_pci:'),
    ...linesStartingWith(text, 'alias vfio-pci:'),
  ].sort((a, b) => a - b);
  let p = 0;
  let counted = 0;
  let line = 1;
  for (const v of vfio) {
    const from = p;
    while (p < pci.length && pci[p]! < v) p++;
    col.noteLines(text, pci, from, p);
    for (let i = text.indexOf('\n', counted); i >= 0 && i < v; i = text.indexOf('\n', i + 1))
      line++;
    counted = v;
    const end = text.indexOf('\n', v);
    parseLine(text.slice(v, end < 0 ? text.length : end), line, where, col, diag, v);
  }
  col.noteLines(text, pci, p, pci.length);
  return true;
}

/** Returns true when the whole file was of the kinds depmod writes (the fast path). */
export function parseModulesAlias(
  text: string,
  where: string,
  col: AliasCollector,
  diag: Diagnostics,
): boolean {
  if (parseDepmodOutput(text, where, col, diag)) return true;
  let lineNo = 0;
  let start = 0;
  while (start <= text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    lineNo++;
    const line = text.slice(start, end);
    start = end + 1;
    // Cheap prefix test first: of a Debian kernel's ~27k aliases only the pci ones matter here.
    if (line.length === 0 || line.charCodeAt(0) === 35 /* # */) continue;
    parseLine(line, lineNo, where, col, diag);
  }
  return false;
}

/**
 * modules.builtin.modinfo: NUL-separated `module.key=value` records. Only kernels from about
 * v6.18 put device-table aliases here; before that only explicit MODULE_ALIAS() strings.
 */
export function parseBuiltinModinfo(text: string, where: string, col: AliasCollector): void {
  // Record by record without splitting the file (Debian 6.1's: 1,061 records, 62 of them
  // aliases): `n` is the record's number, counted up to each record that has `.alias=` in it.
  let n = 1;
  let counted = 0;
  for (let hit = text.indexOf('.alias='); hit >= 0; ) {
    const start = text.lastIndexOf('\0', hit) + 1;
    let end = text.indexOf('\0', hit);
    if (end < 0) end = text.length;
    for (let z = text.indexOf('\0', counted); z >= 0 && z < start; z = text.indexOf('\0', z + 1))
      n++;
    counted = start;
    // `module.alias=`: the first dot of the record (a module name has none).
    const dot = text.indexOf('.', start);
    if (dot > start && dot === hit)
      col.add(
        text.slice(dot + 7, end),
        text.slice(start, dot),
        'modules.builtin.modinfo',
        where,
        n,
      );
    hit = text.indexOf('.alias=', end);
  }
}

/**
 * `writeIndex`: refresh the index when it is missing or stale (writing commands only: read-only
 * ones never write).
 */
export function loadAliasDb(
  root: HostRoot,
  release: string | undefined,
  diag: Diagnostics,
  opts: { readonly writeIndex?: boolean } = {},
): AliasDb {
  const col = new AliasCollector(diag);
  let present = false;
  if (release !== undefined) {
    const dir = `/lib/modules/${release}`;
    const file = `${dir}/modules.alias`;
    const id = fileIdentity(root, file);
    const index = id && readAliasIndex(root, release, id);
    if (index) {
      present = true;
      col.restore(index, file, () => root.readFile(file));
    } else {
      const text = root.readFile(file);
      if (text !== undefined) {
        present = true;
        const warned = diag.warnings.length;
        // Only a file read without a warning is indexed: a later call must warn the same.
        if (
          parseModulesAlias(text, file, col, diag) &&
          opts.writeIndex &&
          diag.warnings.length === warned &&
          id &&
          col.indexed.length === col.vfio.length
        ) {
          writeAliasIndex(root, release, id, { count: col.count, vfio: col.indexed });
        }
      }
    }
    const modinfo = root.readFile(`${dir}/modules.builtin.modinfo`);
    if (modinfo !== undefined) parseBuiltinModinfo(modinfo, `${dir}/modules.builtin.modinfo`, col);
  }
  return {
    vfio: col.vfio,
    get pciByModule() {
      return col.pciByModule;
    },
    vfioByModule: col.vfioByModule,
    present,
  };
}

export { AliasCollector };
