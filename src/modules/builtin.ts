// modules.builtin lists the modules compiled into the kernel
// (`kernel/drivers/vfio/pci/vfio-pci.ko`). Built-in drivers never appear in modules.alias.
import type { HostRoot } from '../host/root';
import { moduleNormalize } from './fnmatch';

export function parseModulesBuiltin(text: string): Set<string> {
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const t = line.trim();
    if (!t.endsWith('.ko')) continue;
    const base = t.slice(t.lastIndexOf('/') + 1, -3);
    out.add(moduleNormalize(base));
  }
  return out;
}

export function loadBuiltin(root: HostRoot, release: string | undefined): Set<string> {
  if (release === undefined) return new Set();
  const text = root.readFile(`/lib/modules/${release}/modules.builtin`);
  return text === undefined ? new Set() : parseModulesBuiltin(text);
}
