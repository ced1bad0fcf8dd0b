// What the host itself uses below each PCI device: network interfaces and block devices
// (virtio puts them under a `virtioN` child, NVMe under `nvme/nvmeN`, SCSI under `hostN/...`).
import type { HostRoot } from './root';

export interface NetdevUse {
  readonly name: string;
  /**
   * IFF_UP in /sys/class/net/<if>/flags: the host configured the interface up. Its operstate is
   * not read: an interface that is up with no carrier is still the host's, and one that is down
   * is judged by its addresses and routes.
   */
  readonly up: boolean;
  /** IPv6 addresses (/proc/net/if_inet6); IPv4 addresses show up as routes. */
  readonly addresses: readonly string[];
  /** Destinations routed through this interface (/proc/net/route, /proc/net/ipv6_route). */
  readonly routes: readonly string[];
}

export interface BlockdevUse {
  readonly name: string;
  /** major:minor from /sys/class/block/<dev>/dev */
  readonly devno: string | null;
  readonly mountpoints: readonly string[];
  readonly swap: boolean;
  /** Stacked devices (dm, md) built on it, and what *they* are used for. */
  readonly holders: readonly BlockdevUse[];
  /** Partitions of a whole disk. */
  readonly partitions: readonly BlockdevUse[];
}

/** A virtio-9p share (its `mount_tag`) and where it is mounted: a root filesystem in VMs. */
export interface FilesystemUse {
  readonly tag: string;
  readonly mountpoints: readonly string[];
}

export interface HostUse {
  /** PCI address -> interfaces anywhere below it. */
  readonly netdevs: ReadonlyMap<string, readonly NetdevUse[]>;
  readonly blockdevs: ReadonlyMap<string, readonly BlockdevUse[]>;
  readonly filesystems: ReadonlyMap<string, readonly FilesystemUse[]>;
}

const PCI_COMPONENT = /^[0-9a-f]{4,8}:[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/;

/** Every PCI address on the real path of a class device (the device and all bridges above it). */
function pciAncestors(realPath: string): string[] {
  return realPath.split('/').filter((c) => PCI_COMPONENT.test(c));
}

function addTo<T>(map: Map<string, T[]>, keys: string[], v: T): void {
  for (const k of keys) {
    const l = map.get(k);
    if (l) l.push(v);
    else map.set(k, [v]);
  }
}

interface MountTable {
  readonly byDevno: Map<string, string[]>;
  readonly bySource: Map<string, string[]>;
  readonly swaps: Set<string>;
  /** 9p mounts by source (the mount tag). */
  readonly by9pTag: Map<string, string[]>;
}

function decodeMountField(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

function readMounts(root: HostRoot): MountTable {
  const byDevno = new Map<string, string[]>();
  const bySource = new Map<string, string[]>();
  const by9pTag = new Map<string, string[]>();
  // mountinfo: id parent major:minor root mountpoint opts ... - fstype source superopts
  // The host's mount namespace (a container has its own; see HostRoot.nsProc).
  const text = root.readFile(root.nsProc('mountinfo')) ?? '';
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 10) continue;
    const sep = f.indexOf('-', 6);
    const mp = decodeMountField(f[4]!);
    addTo(byDevno, [f[2]!], mp);
    const src = sep > 0 ? f[sep + 2] : undefined;
    if (src?.startsWith('/dev/')) addTo(bySource, [src.slice(5)], mp);
    if (src && sep > 0 && f[sep + 1] === '9p') addTo(by9pTag, [decodeMountField(src)], mp);
  }
  const swaps = new Set<string>();
  // Swap is not namespaced (there is no /proc/PID/swaps): every reader sees the one list. Paths
  // are rendered by d_path, from the reader's root or, when it cannot reach the host's /dev,
  // from the host's: a swap partition reads /dev/NAME either way.
  for (const line of (root.readFile('/proc/swaps') ?? '').split('\n').slice(1)) {
    const src = line.split(/\s+/)[0];
    if (src?.startsWith('/dev/')) swaps.add(src.slice(5));
  }
  return { byDevno, bySource, swaps, by9pTag };
}

function readBlockdev(root: HostRoot, name: string, mounts: MountTable, depth = 0): BlockdevUse {
  const base = `/sys/class/block/${name}`;
  const devno = root.readAttr(`${base}/dev`)?.trim() ?? null;
  const mp = new Set<string>([
    ...(devno ? (mounts.byDevno.get(devno) ?? []) : []),
    ...(mounts.bySource.get(name) ?? []),
  ]);
  // dm devices are mounted by /dev/mapper/<name>; map that back through dm/name.
  const dmName = root.readAttr(`${base}/dm/name`)?.trim();
  if (dmName) for (const p of mounts.bySource.get(`mapper/${dmName}`) ?? []) mp.add(p);
  const recurse = depth < 8; // holders can stack (dm on md on partitions); bound the walk.
  const holders = recurse
    ? root.list(`${base}/holders`).map((h) => readBlockdev(root, h, mounts, depth + 1))
    : [];
  const partitions = recurse
    ? root
        .list(`/sys/block/${name}`)
        .filter((p) => p.startsWith(name) && root.exists(`/sys/block/${name}/${p}/partition`))
        .map((p) => readBlockdev(root, p, mounts, depth + 1))
    : [];
  return {
    name,
    devno,
    mountpoints: [...mp],
    swap: mounts.swaps.has(name) || (dmName !== undefined && mounts.swaps.has(`mapper/${dmName}`)),
    holders,
    partitions,
  };
}

/** 32 hex digits (procfs) -> compressed IPv6 text (RFC 5952: longest zero run becomes ::). */
export function ipv6FromHex(hex: string): string {
  const groups = (hex.match(/.{1,4}/g) ?? []).map((g) => Number.parseInt(g, 16).toString(16));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < groups.length; i++) {
    let j = i;
    while (j < groups.length && groups[j] === '0') j++;
    if (j - i > bestLen) (best = i), (bestLen = j - i);
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

function routesByIface(root: HostRoot): Map<string, string[]> {
  const out = new Map<string, string[]>();
  // /proc/net/route: Iface Destination(hex, little-endian) Gateway Flags ... Mask
  for (const line of (root.readFile(root.nsProc('net/route')) ?? '').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const d = f[1]!;
    const ip =
      d.length === 8
        ? [6, 4, 2, 0].map((i) => Number.parseInt(d.slice(i, i + 2), 16)).join('.')
        : d;
    addTo(out, [f[0]!], ip === '0.0.0.0' ? 'default' : ip);
  }
  // /proc/net/ipv6_route: dest plen src plen nexthop metric ref use flags iface
  for (const line of (root.readFile(root.nsProc('net/ipv6_route')) ?? '').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10 || f[9] === 'lo') continue;
    const dest = f[0]!;
    // Link-local fe80::/64 and multicast routes exist on every up interface; they carry no traffic.
    if (dest.startsWith('fe80') || dest.startsWith('ff')) continue;
    addTo(out, [f[9]!], `${ipv6FromHex(dest)}/${Number.parseInt(f[1]!, 16)}`);
  }
  return out;
}

function inet6ByIface(root: HostRoot): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const line of (root.readFile(root.nsProc('net/if_inet6')) ?? '').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6) continue;
    addTo(out, [f[5]!], ipv6FromHex(f[0]!));
  }
  return out;
}

/** Where a class/bus link points (`/sys/devices/...`): readlink, resolved by string. */
function realOf(root: HostRoot, rel: string): string | undefined {
  return root.linkTarget(rel) ?? root.realpath(rel);
}

/**
 * What the host uses below each PCI device. With `only`, just what lies below those devices
 * (a netdev or disk elsewhere costs attribute reads and cannot matter to them).
 */
export function readHostUse(root: HostRoot, only?: ReadonlySet<string>): HostUse {
  const netdevs = new Map<string, NetdevUse[]>();
  const wanted = (owners: string[]) =>
    owners.length > 0 && (!only || owners.some((o) => only.has(o)));
  // With a few devices, a path naming none of them is skipped before it is split and tested.
  const few = only && only.size <= 8 ? [...only] : undefined;
  const mayBeWanted = (real: string) => !few || few.some((a) => real.includes(a));
  let routes: Map<string, string[]> | undefined;
  let inet6: Map<string, string[]> | undefined;
  for (const name of root.list('/sys/class/net')) {
    const real = realOf(root, `/sys/class/net/${name}`);
    if (!real || !mayBeWanted(real)) continue;
    const owners = pciAncestors(real);
    if (!wanted(owners)) continue;
    routes ??= routesByIface(root);
    inet6 ??= inet6ByIface(root);
    const flags = Number.parseInt(root.readAttr(`/sys/class/net/${name}/flags`) ?? '0', 16);
    addTo(netdevs, owners, {
      name,
      up: (flags & 0x1) !== 0,
      addresses: (inet6.get(name) ?? []).filter((a) => !a.startsWith('fe80')),
      routes: routes.get(name) ?? [],
    });
  }
  const blockdevs = new Map<string, BlockdevUse[]>();
  const filesystems = new Map<string, FilesystemUse[]>();
  const blockNames = root.list('/sys/class/block');
  const virtio = root.list('/sys/bus/virtio/devices');
  let mounts: MountTable | undefined;
  // virtio-9p carries no block device: its share is named by the virtio device's mount_tag.
  for (const v of virtio) {
    // The kernel's mount_tag attribute ends in a NUL byte (observed on 6.1 and 6.12).
    const tag = root.readAttr(`/sys/bus/virtio/devices/${v}/mount_tag`)?.replace(/\0+$/, '');
    if (tag === undefined) continue;
    mounts ??= readMounts(root);
    const mp = mounts.by9pTag.get(tag);
    const real = mp && realOf(root, `/sys/bus/virtio/devices/${v}`);
    if (real && wanted(pciAncestors(real)))
      addTo(filesystems, pciAncestors(real), { tag, mountpoints: mp });
  }
  for (const name of blockNames) {
    const real = realOf(root, `/sys/class/block/${name}`);
    if (!real || !mayBeWanted(real)) continue;
    const owners = pciAncestors(real);
    if (!wanted(owners)) continue;
    // Partitions are reported with their disk.
    if (root.exists(`/sys/class/block/${name}/partition`)) continue;
    mounts ??= readMounts(root);
    addTo(blockdevs, owners, readBlockdev(root, name, mounts));
  }
  return { netdevs, blockdevs, filesystems };
}

/** Why a block device is in use, or [] when it is not (recursing into partitions and holders). */
export function blockInUse(b: BlockdevUse): string[] {
  const why: string[] = [];
  for (const mp of b.mountpoints) why.push(`${b.name} is mounted on ${mp}`);
  if (b.swap) why.push(`${b.name} is used as swap`);
  for (const p of b.partitions) why.push(...blockInUse(p));
  for (const h of b.holders) {
    const inner = blockInUse(h);
    why.push(
      ...(inner.length > 0
        ? inner.map((w) => `${b.name} holds ${w}`)
        : [`${b.name} is held by ${h.name}`]),
    );
  }
  return why;
}

/** Why an interface is in use by the host, or []. */
export function netdevInUse(n: NetdevUse): string[] {
  const why: string[] = [];
  if (n.up) why.push(`interface ${n.name} is up`);
  if (n.addresses.length > 0) why.push(`interface ${n.name} has address ${n.addresses.join(', ')}`);
  if (n.routes.length > 0)
    why.push(`interface ${n.name} carries routes (${n.routes.slice(0, 3).join(', ')})`);
  return why;
}

/** Every reason the host itself is using this device (or a function below it), or []. */
export function deviceInUse(use: HostUse, address: string, bootVga: boolean): string[] {
  const why: string[] = [];
  const netdevs = use.netdevs.get(address);
  const blockdevs = use.blockdevs.get(address);
  const filesystems = use.filesystems.get(address);
  // Most functions (thousands of VFs) have none of these: no iterators for them.
  if (netdevs) for (const n of netdevs) why.push(...netdevInUse(n));
  if (blockdevs) for (const b of blockdevs) why.push(...blockInUse(b));
  if (filesystems)
    for (const f of filesystems)
      why.push(`9p filesystem '${f.tag}' is mounted on ${f.mountpoints.join(', ')}`);
  if (bootVga) why.push('it is the boot VGA device (the console may be on it)');
  return why;
}
