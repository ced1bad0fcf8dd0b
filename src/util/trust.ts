// vfioctl runs as root: it never runs a hook or reads a configuration file that a non-root user
// could have written. A file is trusted when it and every directory above it (up to the host
// root) are owned by root and writable by no group or other user.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HostRoot } from '../host/root';

export interface TrustPolicy {
  /** uids whose files are trusted: root, plus one explicitly relaxed for tests. */
  readonly uids: readonly number[];
}

/**
 * Root only, unless VFIOCTL_TRUST_UID names one more uid (for tests as a normal user). The
 * relaxation is announced on every use by the caller, never silent.
 */
export function trustPolicy(env: NodeJS.ProcessEnv): TrustPolicy {
  const extra = env.VFIOCTL_TRUST_UID;
  return { uids: extra !== undefined && /^[0-9]+$/.test(extra) ? [0, Number(extra)] : [0] };
}

export function relaxedTrustWarning(p: TrustPolicy): string | null {
  const others = p.uids.filter((u) => u !== 0);
  return others.length ? `VFIOCTL_TRUST_UID=${others.join(',')}: trusting hooks and configuration owned by uid ${others.join(',')} as well as root (for tests only)` : null;
}

/** Why `rel` (a file under the root) must not be trusted, or null when it may be. */
export function untrustedReason(root: HostRoot, rel: string, policy: TrustPolicy, opts: { executable?: boolean } = {}): string | null {
  const abs = root.path(rel);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(abs);
  } catch (e) {
    return `cannot stat ${rel}: ${(e as NodeJS.ErrnoException).code}`;
  }
  if (st.isSymbolicLink()) {
    // A link is as trustworthy as what it points to and where it sits.
    try {
      const target = fs.realpathSync(abs);
      if (!target.startsWith(root.dir === '/' ? '/' : root.dir + path.sep)) return `${rel} is a symlink leading outside ${root.dir}`;
      const inner = untrustedReason(root, root.hostPath(target), policy, opts);
      if (inner) return `${rel} -> ${root.hostPath(target)}: ${inner}`;
      st = fs.statSync(abs);
    } catch {
      return `${rel} is a dangling symlink`;
    }
  }
  if (!st.isFile()) return `${rel} is not a regular file`;
  const owner = (s: fs.Stats, what: string): string | null => {
    if (!policy.uids.includes(s.uid)) return `${what} is owned by uid ${s.uid}, not root`;
    if ((s.mode & 0o022) !== 0) return `${what} is writable by ${(s.mode & 0o002) !== 0 ? 'others' : 'its group'} (mode ${(s.mode & 0o7777).toString(8)})`;
    return null;
  };
  const self = owner(st, rel);
  if (self) return self;
  if (opts.executable && (st.mode & 0o100) === 0) return `${rel} is not executable by its owner`;
  // Every directory from the file's up to the host root: one writable by others could swap it.
  for (let dir = path.dirname(abs); ; dir = path.dirname(dir)) {
    const ds = fs.statSync(dir);
    const r = owner(ds, `directory ${root.hostPath(dir)}`);
    if (r) return r;
    if (dir === root.dir || dir === path.dirname(dir)) break;
  }
  return null;
}
