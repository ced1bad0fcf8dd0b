// Hooks: executables in <root>/etc/vfioctl/hooks.d/ and the vendor directory
// <root>/usr/lib/vfioctl/hooks.d/, plus per-rule hooks from the configuration. They run in one
// stable order: by file name (byte order) across both directories, an /etc file hiding a vendor
// file of the same name (as systemd drop-ins do); per-rule hooks after those, in rule order.
import { isBackupName } from '../util/backup-name';
import type { HostRoot } from '../host/root';
import { untrustedReason, type TrustPolicy } from '../host/trust';

export const HOOK_DIRS = ['/etc/vfioctl/hooks.d', '/usr/lib/vfioctl/hooks.d'] as const;

export const HOOK_EVENTS = [
  'pre-bind',
  'pre-probe',
  'post-bind',
  'pre-unbind',
  'post-unbind',
] as const;
export type HookEvent = (typeof HOOK_EVENTS)[number];

export interface Hook {
  /** Root-relative path, e.g. /etc/vfioctl/hooks.d/50-mlx5-migratable */
  readonly path: string;
  readonly name: string;
  readonly source: 'hooks.d' | 'vendor' | 'rule';
  /** Why it must not run (ownership, permissions), or null. */
  readonly problem: string | null;
}

/** Editor backups and package-manager leftovers are not hooks. */
const ignored = isBackupName;

export function discoverHooks(root: HostRoot, policy: TrustPolicy): Hook[] {
  const byName = new Map<string, Hook>();
  HOOK_DIRS.forEach((dir, i) => {
    for (const name of root.list(dir)) {
      if (ignored(name) || byName.has(name)) continue;
      const path = `${dir}/${name}`;
      byName.set(name, {
        path,
        name,
        source: i === 0 ? 'hooks.d' : 'vendor',
        problem: untrustedReason(root, path, policy, { executable: true }),
      });
    }
  });
  return [...byName.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export function ruleHook(root: HostRoot, path: string, policy: TrustPolicy): Hook {
  // '..' could walk out of --root; an absolute path names the file without it.
  const problem = path.split('/').includes('..')
    ? `${path}: '..' is not allowed in a hook path; give the absolute path`
    : untrustedReason(root, path, policy, { executable: true });
  return { path, name: path.slice(path.lastIndexOf('/') + 1), source: 'rule', problem };
}
