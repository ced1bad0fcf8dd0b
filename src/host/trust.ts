// vfioctl runs as root: it never runs a hook or reads a configuration file that a non-root user
// could have written. A file is trusted when it and every directory above it (up to the host
// root) are owned by root and writable by no group or other user.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HostRoot } from './root';

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
  return others.length
    ? `VFIOCTL_TRUST_UID=${others.join(',')}: trusting hooks and configuration owned by uid ${others.join(',')} as well as root (for tests only)`
    : null;
}

/** Why `rel` (a file under the root) must not be trusted, or null when it may be. */
export function untrustedReason(
  root: HostRoot,
  rel: string,
  policy: TrustPolicy,
  opts: { executable?: boolean } = {},
): string | null {
  const abs = root.path(rel);
  let st: fs.Stats;
  try {
    st = fs.lstatSync(abs);
  } catch (e) {
    return `cannot stat ${rel}: ${(e as NodeJS.ErrnoException).code}`;
  }
  if (st.isSymbolicLink()) {
    // A link is as trustworthy as what it points to, where it sits, and who can re-point it.
    if (!policy.uids.includes(st.uid))
      return `${rel} is a symlink owned by uid ${st.uid}, not root`;
    try {
      const target = fs.realpathSync(abs);
      if (!target.startsWith(root.dir === '/' ? '/' : root.dir + path.sep))
        return `${rel} is a symlink leading outside ${root.dir}`;
      const inner = untrustedReason(root, root.hostPath(target), policy, opts);
      if (inner) return `${rel} -> ${root.hostPath(target)}: ${inner}`;
      st = fs.statSync(abs);
    } catch {
      return `${rel} is a dangling symlink`;
    }
  }
  if (!st.isFile()) return `${rel} is not a regular file`;
  const owner = (s: fs.Stats, what: string, dir = false): string | null => {
    if (!policy.uids.includes(s.uid)) return `${what} is owned by uid ${s.uid}, not root`;
    // A sticky directory (/tmp, mode 1777) lets others add entries but not rename or remove
    // ours, and every entry below it on the path is checked in turn: it cannot swap the file.
    if (dir && (s.mode & 0o1000) !== 0) return null;
    if ((s.mode & 0o022) !== 0)
      return `${what} is writable by ${(s.mode & 0o002) !== 0 ? 'others' : 'its group'} (mode ${(s.mode & 0o7777).toString(8)})`;
    return null;
  };
  const self = owner(st, rel);
  if (self) return self;
  if (opts.executable && (st.mode & 0o100) === 0) return `${rel} is not executable by its owner`;
  // Whoever owns a symlink on the way could re-point it.
  for (let dir = path.dirname(abs); ; dir = path.dirname(dir)) {
    const ls = fs.lstatSync(dir);
    if (ls.isSymbolicLink() && !policy.uids.includes(ls.uid))
      return `directory ${root.hostPath(dir)} is a symlink owned by uid ${ls.uid}, not root`;
    if (dir === root.dir || dir === path.dirname(dir)) break;
  }
  // Every directory the file really sits in, up to the host root (or /): one writable by others
  // could swap it. A directory symlink on the way must not lead out of the root either.
  const top = root.dir;
  const real = fs.realpathSync(abs);
  if (top !== '/' && !real.startsWith(top + path.sep))
    return `${rel} resolves to ${real}, outside ${top}`;
  for (let dir = path.dirname(real); ; dir = path.dirname(dir)) {
    const r = owner(
      fs.statSync(dir),
      `directory ${dir.startsWith(top) ? root.hostPath(dir) : dir}`,
      true,
    );
    if (r) return r;
    if (dir === top || dir === path.dirname(dir)) break;
  }
  return null;
}
