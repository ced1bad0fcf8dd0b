// The modprobe.d blacklist. kmod applies it when it inserts a module *by alias*
// (KMOD_PROBE_APPLY_BLACKLIST_ALIAS_ONLY, and udev's kmod builtin), so a blacklisted variant is
// never loaded for a device: it cannot be "best".
import * as path from 'node:path';
import type { HostRoot } from '../host/root';
import type { Diagnostics } from '../util/diag';
import { moduleNormalize } from './fnmatch';

/** kmod's search order; a file name seen in an earlier directory hides later ones of that name. */
export const MODPROBE_DIRS = [
  '/etc/modprobe.d',
  '/run/modprobe.d',
  '/usr/local/lib/modprobe.d',
  '/usr/lib/modprobe.d',
  '/lib/modprobe.d',
];

export interface Blacklist {
  /** module -> where it was blacklisted (`/etc/modprobe.d/x.conf:3`, `kernel command line`). */
  readonly entries: ReadonlyMap<string, string>;
}

export function parseModprobeConf(
  text: string,
  where: string,
  into: Map<string, string>,
  diag: Diagnostics,
): void {
  // modprobe.d allows `\` line continuation; comments start with `#`.
  const lines = text.replace(/\\\n/g, ' ').split('\n');
  lines.forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (line === '') return;
    const words = line.split(/\s+/);
    const cmd = words[0]!;
    if (cmd === 'blacklist') {
      if (words.length !== 2) {
        diag.warn(`${where}:${i + 1}: malformed blacklist line '${raw.trim()}'; skipped`);
        return;
      }
      into.set(moduleNormalize(words[1]!), `${where}:${i + 1}`);
    } else if (
      !['alias', 'options', 'install', 'remove', 'softdep', 'weakdep', 'include'].includes(cmd)
    ) {
      diag.warn(`${where}:${i + 1}: unknown modprobe.d command '${cmd}'; skipped`);
    }
  });
}

export function loadBlacklist(root: HostRoot, diag: Diagnostics): Blacklist {
  const entries = new Map<string, string>();
  const seen = new Set<string>();
  const files: string[] = [];
  for (const dir of MODPROBE_DIRS) {
    for (const f of root.list(dir).sort()) {
      if (!f.endsWith('.conf') || seen.has(f)) continue;
      seen.add(f);
      files.push(path.posix.join(dir, f));
    }
  }
  // kmod reads the surviving files sorted by name, whatever their directory.
  files.sort((a, b) => path.posix.basename(a).localeCompare(path.posix.basename(b)));
  for (const f of files) {
    const text = root.readFile(f);
    if (text !== undefined) parseModprobeConf(text, f, entries, diag);
  }
  // kmod also honours `modprobe.blacklist=a,b` on the kernel command line.
  const cmdline = root.readAttr('/proc/cmdline') ?? '';
  for (const word of cmdline.split(/\s+/)) {
    if (!word.startsWith('modprobe.blacklist=')) continue;
    for (const m of word.slice('modprobe.blacklist='.length).split(',')) {
      if (m) entries.set(moduleNormalize(m), 'kernel command line (modprobe.blacklist=)');
    }
  }
  return { entries };
}
