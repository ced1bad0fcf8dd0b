// modules.alias (written by depmod from each module's device table) and, since about v6.18,
// built-in drivers' aliases in modules.builtin.modinfo. scripts/mod/file2alias.c do_pci_entry()
// writes override-only entries (PCI_DRIVER_OVERRIDE_DEVICE_VFIO) with the prefix `vfio_pci:`.
import type { HostRoot } from '../host/root';
import type { Diagnostics } from '../util/diag';
import { aliasNormalize, moduleNormalize } from '../match/fnmatch';

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

class AliasCollector {
  readonly vfio: PciAlias[] = [];
  readonly pciByModule = new Map<string, PciAlias[]>();
  readonly vfioByModule = new Map<string, PciAlias[]>();
  private order = 0;

  constructor(private readonly diag: Diagnostics) {}

  add(pattern: string, module: string, source: AliasSource, where: string, line: number): void {
    const normalized = aliasNormalize(pattern);
    if (normalized === null) {
      this.diag.warn(`${where}:${line}: unbalanced bracket in alias '${pattern}'; skipped (depmod skips it too)`);
      return;
    }
    // Compare normalised: kmod treats `vfio-pci:` and `vfio_pci:` alike.
    const isVfio = normalized.startsWith('vfio_pci:');
    if (!isVfio && !normalized.startsWith('pci:')) return;
    const a: PciAlias = { pattern, normalized, module: moduleNormalize(module), order: this.order++, source, line };
    if (isVfio) {
      this.vfio.push(a);
      pushTo(this.vfioByModule, a);
    } else pushTo(this.pciByModule, a);
  }
}

const MODULE_NAME = /^[A-Za-z0-9_-]+$/;

export function parseModulesAlias(text: string, where: string, col: AliasCollector, diag: Diagnostics): void {
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
    if (line.startsWith('alias pci:') || line.startsWith('alias vfio_pci:') || line.startsWith('alias vfio-pci:')) {
      const parts = line.trim().split(/\s+/);
      if (parts.length !== 3 || !MODULE_NAME.test(parts[2]!)) {
        diag.warn(`${where}:${lineNo}: malformed alias line '${line}'; skipped`);
        continue;
      }
      col.add(parts[1]!, parts[2]!, 'modules.alias', where, lineNo);
    } else if (!line.startsWith('alias ')) {
      if (line.trim() !== '') diag.warn(`${where}:${lineNo}: not an alias line '${line.slice(0, 80)}'; skipped`);
    }
  }
}

/**
 * modules.builtin.modinfo: NUL-separated `module.key=value` records. Only kernels from about
 * v6.18 put device-table aliases here; before that only explicit MODULE_ALIAS() strings.
 */
export function parseBuiltinModinfo(text: string, where: string, col: AliasCollector): void {
  let n = 0;
  for (const rec of text.split('\0')) {
    n++;
    const dot = rec.indexOf('.');
    if (dot <= 0 || !rec.startsWith('alias=', dot + 1)) continue;
    col.add(rec.slice(dot + 7), rec.slice(0, dot), 'modules.builtin.modinfo', where, n);
  }
}

export function loadAliasDb(root: HostRoot, release: string | undefined, diag: Diagnostics): AliasDb {
  const col = new AliasCollector(diag);
  let present = false;
  if (release !== undefined) {
    const dir = `/lib/modules/${release}`;
    const text = root.readFile(`${dir}/modules.alias`);
    if (text !== undefined) {
      present = true;
      parseModulesAlias(text, `${dir}/modules.alias`, col, diag);
    }
    const modinfo = root.readFile(`${dir}/modules.builtin.modinfo`);
    if (modinfo !== undefined) parseBuiltinModinfo(modinfo, `${dir}/modules.builtin.modinfo`, col);
  }
  return { vfio: col.vfio, pciByModule: col.pciByModule, vfioByModule: col.vfioByModule, present };
}

export { AliasCollector };
