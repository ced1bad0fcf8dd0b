// --owner USER[:GROUP] for an unprivileged VMM, looked up in <root>/etc/passwd and /etc/group.
import type { HostRoot } from '../host/root';
import { printable } from '../host/address';
import { EXIT, VfioctlError } from '../util/diag';

function lookup(root: HostRoot, file: string, name: string, field: number): number | undefined {
  if (/^[0-9]+$/.test(name)) return Number(name);
  for (const line of (root.readFile(file) ?? '').split('\n')) {
    const f = line.split(':');
    if (f[0] === name && f[field] !== undefined && /^[0-9]+$/.test(f[field]!))
      return Number(f[field]);
  }
  return undefined;
}

export function parseOwner(root: HostRoot, spec: string): { uid: number; gid: number } {
  const m = /^([A-Za-z0-9_.][A-Za-z0-9_.-]*\$?)(?::([A-Za-z0-9_.][A-Za-z0-9_.-]*))?$/.exec(spec);
  if (!m)
    throw new VfioctlError(`--owner '${printable(spec)}' is not USER[:GROUP]`, EXIT.BAD_INPUT);
  const uid = lookup(root, '/etc/passwd', m[1]!, 2);
  if (uid === undefined)
    throw new VfioctlError(`--owner: no user '${m[1]}' in /etc/passwd`, EXIT.BAD_INPUT);
  let gid: number | undefined;
  if (m[2] !== undefined) gid = lookup(root, '/etc/group', m[2], 2);
  else if (/^[0-9]+$/.test(m[1]!)) gid = uid;
  else gid = lookup(root, '/etc/passwd', m[1]!, 3);
  if (gid === undefined)
    throw new VfioctlError(`--owner: no group '${m[2] ?? m[1]}' in /etc/group`, EXIT.BAD_INPUT);
  return { uid, gid };
}
