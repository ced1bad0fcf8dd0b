// The PCI devices the host needs to boot, known before anything is mounted: at boot there are no
// mounts or routes to look at yet, so they come from /etc/fstab, /etc/crypttab and the kernel
// command line's root= (and resume=). Used to keep boot-time layers away from the root disk.
import * as path from 'node:path';
import type { HostRoot } from './root';

const PCI_COMPONENT = /^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/;
const NETWORK_FS = new Set([
  'nfs',
  'nfs4',
  'cifs',
  'smb3',
  'sshfs',
  'glusterfs',
  'ceph',
  'fuse.sshfs',
]);
const TAG_DIRS: Record<string, string> = {
  UUID: 'by-uuid',
  LABEL: 'by-label',
  PARTUUID: 'by-partuuid',
  PARTLABEL: 'by-partlabel',
};

export interface BootDevices {
  /** PCI address -> why the host needs it at boot ("/ (fstab: UUID=...)"). */
  readonly devices: ReadonlyMap<string, readonly string[]>;
  /** Specs that could not be traced to a device (reported; the boot layers then stay cautious). */
  readonly unresolved: readonly string[];
}

function unescapeFstab(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** Block device name (`sda1`, `dm-0`, `nvme0n1p2`) for an fstab/crypttab/root= spec. */
function blockName(root: HostRoot, spec: string): string | null {
  const tag = /^(UUID|LABEL|PARTUUID|PARTLABEL)=(.+)$/.exec(spec);
  const dev = tag
    ? `/dev/disk/${TAG_DIRS[tag[1]!]}/${tag[2]!.replace(/^"(.*)"$/, '$1')}`
    : spec.startsWith('/dev/')
      ? spec
      : null;
  if (dev === null) return null;
  const real = root.realpath(dev);
  if (real?.startsWith('/dev/') && root.exists(`/sys/class/block/${path.basename(real)}`))
    return path.basename(real);
  // /dev may not be populated under a test root or this early: a plain /dev/NAME still names it.
  const name = path.basename(dev);
  return !tag && root.exists(`/sys/class/block/${name}`) ? name : null;
}

/** PCI devices under a block device, through dm/md slaves and partitions' parent disks. */
function pciOfBlock(root: HostRoot, name: string, depth = 0): string[] {
  const real = root.realpath(`/sys/class/block/${name}`);
  if (!real) return [];
  const out = real.split('/').filter((c) => PCI_COMPONENT.test(c));
  if (depth < 8)
    for (const s of root.list(`/sys/class/block/${name}/slaves`))
      out.push(...pciOfBlock(root, s, depth + 1));
  return out;
}

/** A virtio-9p / virtiofs tag (a VM's root) -> the PCI device carrying it. */
function pciOfTag(root: HostRoot, tag: string): string[] {
  for (const v of root.list('/sys/bus/virtio/devices')) {
    // The kernel's mount_tag ends in a NUL byte (seen on 6.1 and 6.12).
    const t = (
      root.readAttr(`/sys/bus/virtio/devices/${v}/mount_tag`) ??
      root.readAttr(`/sys/bus/virtio/devices/${v}/tag`)
    )?.replace(/\0+$/, '');
    if (t === tag)
      return (root.realpath(`/sys/bus/virtio/devices/${v}`) ?? '')
        .split('/')
        .filter((c) => PCI_COMPONENT.test(c));
  }
  return [];
}

export function readBootDevices(root: HostRoot): BootDevices {
  const devices = new Map<string, string[]>();
  const unresolved: string[] = [];
  const need = (spec: string, why: string, fstype?: string) => {
    const name = blockName(root, spec);
    const pci = name
      ? pciOfBlock(root, name)
      : fstype === '9p' || fstype === 'virtiofs' || !/[=/]/.test(spec)
        ? pciOfTag(root, spec)
        : [];
    if (pci.length === 0) {
      unresolved.push(`${spec} (${why})`);
      return;
    }
    for (const a of new Set(pci)) devices.set(a, [...(devices.get(a) ?? []), `${why}: ${spec}`]);
  };
  const cmdline = root.readAttr('/proc/cmdline') ?? '';
  const rootfstype = /(?:^|\s)rootfstype=(\S+)/.exec(cmdline)?.[1];
  for (const m of cmdline.matchAll(/(?:^|\s)(root|resume)=(\S+)/g))
    need(m[2]!, `${m[1]} on the kernel command line`, m[1] === 'root' ? rootfstype : undefined);
  for (const line of (root.readFile('/etc/fstab') ?? '').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 3 || f[0]!.startsWith('#')) continue;
    const [spec, mp, type, opts = ''] = f.map(unescapeFstab) as [string, string, string, string?];
    if (
      NETWORK_FS.has(type) ||
      /(^|,)noauto(,|$)/.test(opts) ||
      ['proc', 'sysfs', 'tmpfs', 'devpts', 'none'].includes(spec)
    )
      continue;
    need(spec, type === 'swap' ? 'swap (fstab)' : `${mp} (fstab)`, type);
  }
  for (const line of (root.readFile('/etc/crypttab') ?? '').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 2 || f[0]!.startsWith('#')) continue;
    need(f[1]!, `encrypted volume ${f[0]} (crypttab)`);
  }
  return { devices, unresolved };
}
