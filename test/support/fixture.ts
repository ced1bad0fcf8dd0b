// Builds fixture host trees (sys/, proc/, lib/modules/, etc/) in a temp directory so that every
// test runs as a normal user. The shapes follow the real kernel's sysfs (see sysfs-tree.ts).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { SysfsTree } from './sysfs-tree';

export interface NetdevSpec {
  name: string;
  up?: boolean;
  ipv4?: string; // adds a connected route
  ipv6?: string;
}

export interface DeviceSpec {
  address: string;
  vendor: string;
  device: string;
  subsystemVendor?: string;
  subsystemDevice?: string;
  /** 6 hex digits; default 020000 (Ethernet). */
  class?: string;
  revision?: string;
  headerType?: number;
  driver?: string | null;
  driverOverride?: string | null;
  iommuGroup?: string | null;
  numaNode?: number;
  /** null: the kernel lacks the attribute (pre-5.15). */
  resetMethods?: string[] | null;
  /**
   * offset/stride: sriov_offset and sriov_stride (v4.17+), written only when given: the VFs' own
   * addresses must then be what they say (PF routing ID + offset + N * stride for virtfnN).
   */
  sriov?: {
    totalVfs: number;
    numVfs?: number;
    autoprobe?: boolean;
    offset?: number;
    stride?: number;
  };
  physfn?: string;
  netdevs?: NetdevSpec[];
  /** Block devices below it: name, optional partitions, and how they are used. */
  blockdevs?: { name: string; devno: string; partitions?: { name: string; devno: string }[] }[];
  bootVga?: boolean;
  /** Address of an upstream bridge to nest this device under. */
  parent?: string;
  /** Write a `config` file (header type byte); default true. */
  config?: boolean;
  vfioDev?: string;
}

const hex8 = (h: string) => h.toUpperCase().padStart(8, '0');

export class Fixture {
  readonly tree: SysfsTree;
  private release: string | undefined;
  private readonly mountinfo: string[] = [];
  private readonly swaps: string[] = [];
  private readonly routes: string[] = [];
  private readonly routes6: string[] = [];
  private readonly inet6: string[] = [];
  /** Set by containerReader(): the reading process has namespaces of its own. */
  private readerMounts: string[] | null = null;

  constructor(readonly dir: string) {
    this.tree = new SysfsTree(dir);
    for (const d of [
      '/sys/bus/pci/devices',
      '/sys/bus/pci/drivers',
      '/sys/kernel/iommu_groups',
      '/sys/module',
      '/sys/class/net',
      '/sys/class/block',
      '/sys/block',
      '/proc/self',
      '/proc/net',
      '/etc',
      '/run',
      '/dev',
    ]) {
      this.tree.mkdir(d);
    }
    this.tree.write('/sys/bus/pci/drivers_probe', '');
    this.tree.write('/sys/bus/pci/drivers_autoprobe', '1\n');
    this.tree.write('/proc/cmdline', 'BOOT_IMAGE=/vmlinuz root=/dev/sda1 ro intel_iommu=on\n');
    this.flushProc();
  }

  static create(prefix = 'vfioctl-test-'): Fixture {
    return new Fixture(fs.mkdtempSync(path.join(os.tmpdir(), prefix)));
  }

  cleanup(): void {
    fs.rmSync(this.dir, { recursive: true, force: true });
  }

  kernel(release: string): this {
    this.release = release;
    this.tree.write('/proc/sys/kernel/osrelease', release + '\n');
    this.tree.mkdir(`/lib/modules/${release}`);
    return this;
  }

  private modDir(): string {
    if (!this.release) throw new Error('fixture: call kernel() first');
    return `/lib/modules/${this.release}`;
  }

  modulesAlias(lines: string[]): this {
    this.tree.write(
      `${this.modDir()}/modules.alias`,
      '# Aliases extracted from modules themselves.\n' + lines.map((l) => l + '\n').join(''),
    );
    return this;
  }

  modulesBuiltin(modulePaths: string[]): this {
    this.tree.write(`${this.modDir()}/modules.builtin`, modulePaths.map((l) => l + '\n').join(''));
    return this;
  }

  builtinModinfo(records: string[]): this {
    this.tree.write(
      `${this.modDir()}/modules.builtin.modinfo`,
      records.map((r) => r + '\0').join(''),
    );
    return this;
  }

  modprobeConf(rel: string, text: string): this {
    this.tree.write(rel, text);
    return this;
  }

  cmdline(text: string): this {
    this.tree.write('/proc/cmdline', text + '\n');
    return this;
  }

  /** A registered PCI driver (module loaded or built in). */
  driver(name: string, module: string | null = name.replace(/-/g, '_')): this {
    this.tree.registerDriver(name, module);
    return this;
  }

  iommu(present = true): this {
    if (present) this.tree.mkdir('/sys/class/iommu/dmar0');
    else this.tree.rm('/sys/class/iommu');
    return this;
  }

  device(s: DeviceSpec): this {
    const parentDir = s.parent
      ? this.tree.devDir(s.parent)
      : `/sys/devices/pci${s.address.slice(0, s.address.indexOf(':'))}:00`;
    const dir = `${parentDir}/${s.address}`;
    const t = this.tree;
    const cls = s.class ?? '020000';
    const sv = s.subsystemVendor ?? s.vendor;
    const sd = s.subsystemDevice ?? '0000';
    t.mkdir(dir);
    t.link(`/sys/bus/pci/devices/${s.address}`, dir);
    const attrs: Record<string, string> = {
      vendor: `0x${s.vendor}`,
      device: `0x${s.device}`,
      subsystem_vendor: `0x${sv}`,
      subsystem_device: `0x${sd}`,
      class: `0x${cls}`,
      revision: `0x${s.revision ?? '01'}`,
      modalias: `pci:v${hex8(s.vendor)}d${hex8(s.device)}sv${hex8(sv)}sd${hex8(sd)}bc${cls.slice(0, 2).toUpperCase()}sc${cls.slice(2, 4).toUpperCase()}i${cls.slice(4, 6).toUpperCase()}`,
      driver_override: s.driverOverride ?? '(null)',
      numa_node: String(s.numaNode ?? -1),
      enable: '1',
      remove: '',
      rescan: '',
    };
    if (s.resetMethods !== null) attrs.reset_method = (s.resetMethods ?? ['flr', 'bus']).join(' ');
    if (s.bootVga !== undefined) attrs.boot_vga = s.bootVga ? '1' : '0';
    for (const [k, v] of Object.entries(attrs)) t.write(`${dir}/${k}`, v + '\n');
    if (s.config !== false) {
      const cfg = Buffer.alloc(64);
      cfg.writeUInt16LE(Number.parseInt(s.vendor, 16), 0);
      cfg.writeUInt16LE(Number.parseInt(s.device, 16), 2);
      cfg[8] = Number.parseInt(s.revision ?? '01', 16);
      cfg.writeUIntLE(Number.parseInt(cls, 16), 9, 3);
      cfg[14] = s.headerType ?? 0;
      t.write(`${dir}/config`, cfg);
    }
    if (s.sriov) {
      t.write(`${dir}/sriov_totalvfs`, `${s.sriov.totalVfs}\n`);
      t.write(`${dir}/sriov_numvfs`, `${s.sriov.numVfs ?? 0}\n`);
      t.write(`${dir}/sriov_drivers_autoprobe`, `${s.sriov.autoprobe === false ? 0 : 1}\n`);
      if (s.sriov.offset !== undefined) t.write(`${dir}/sriov_offset`, `${s.sriov.offset}\n`);
      if (s.sriov.stride !== undefined) t.write(`${dir}/sriov_stride`, `${s.sriov.stride}\n`);
    }
    if (s.physfn) {
      t.link(`${dir}/physfn`, this.tree.devDir(s.physfn));
      const pf = this.tree.devDir(s.physfn);
      const n = t.list(pf).filter((f) => f.startsWith('virtfn')).length;
      t.link(`${pf}/virtfn${n}`, dir);
    }
    if (s.iommuGroup !== undefined && s.iommuGroup !== null) {
      t.link(`/sys/kernel/iommu_groups/${s.iommuGroup}/devices/${s.address}`, dir);
      t.link(`${dir}/iommu_group`, `/sys/kernel/iommu_groups/${s.iommuGroup}`);
      t.write(`/sys/kernel/iommu_groups/${s.iommuGroup}/type`, 'DMA-FQ\n');
      this.iommu(true);
    }
    if (s.vfioDev) {
      // vfio_device_add (v6.1+): the device below its parent, linked from its class.
      t.mkdir(`${dir}/vfio-dev/${s.vfioDev}`);
      t.link(`/sys/class/vfio-dev/${s.vfioDev}`, `${dir}/vfio-dev/${s.vfioDev}`);
    }
    for (const n of s.netdevs ?? []) this.netdev(dir, n);
    for (const b of s.blockdevs ?? []) {
      const bdir = `${dir}/nvme/nvme0/${b.name}`;
      t.write(`${bdir}/dev`, b.devno + '\n');
      t.link(`/sys/class/block/${b.name}`, bdir);
      t.link(`/sys/block/${b.name}`, bdir);
      for (const p of b.partitions ?? []) {
        t.write(`${bdir}/${p.name}/dev`, p.devno + '\n');
        t.write(`${bdir}/${p.name}/partition`, '1\n');
        t.link(`/sys/class/block/${p.name}`, `${bdir}/${p.name}`);
      }
    }
    if (s.driver) {
      if (!t.exists(`/sys/bus/pci/drivers/${s.driver}`)) this.driver(s.driver);
      t.bindLinks(s.address, s.driver);
    }
    return this;
  }

  private netdev(devDir: string, n: NetdevSpec): void {
    const t = this.tree;
    const ndir = `${devDir}/net/${n.name}`;
    t.write(`${ndir}/flags`, n.up ? '0x1003\n' : '0x1002\n');
    t.write(`${ndir}/operstate`, n.up ? 'up\n' : 'down\n');
    // As sysfs: the interface's parent device (SET_NETDEV_DEV).
    t.link(`${ndir}/device`, devDir);
    t.link(`/sys/class/net/${n.name}`, ndir);
    if (n.ipv4) {
      const [a, b, c] = n.ipv4.split('.');
      // /proc/net/route stores the destination little-endian.
      const dest = [0, c, b, a]
        .map((x) =>
          Number(x ?? 0)
            .toString(16)
            .toUpperCase()
            .padStart(2, '0'),
        )
        .join('');
      this.routes.push(`${n.name}\t${dest}\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0`);
    }
    if (n.ipv6) {
      const full = n.ipv6.replace(/:/g, '');
      this.inet6.push(`${full} 02 40 00 80 ${n.name}`);
    }
    this.flushProc();
  }

  /** A mount of a block device (by major:minor and /dev source). */
  mount(devno: string, source: string, mountpoint: string): this {
    this.mountinfo.push(
      `${30 + this.mountinfo.length} 1 ${devno} / ${mountpoint} rw,relatime shared:1 - ext4 ${source} rw`,
    );
    this.flushProc();
    return this;
  }

  /**
   * The reading process is a container's (for --host-root): from now on the mounts, routes and
   * addresses set up here are the host's, seen through its init (/proc/1/mountinfo,
   * /proc/1/net/*), while the reader's own (/proc/self/mountinfo, /proc/net/*) are a new mount and
   * network namespace: an overlay root and readerMount()'s mounts, no routes, no addresses.
   */
  containerReader(): this {
    this.readerMounts ??= [];
    this.flushProc();
    return this;
  }

  /** A mount in the reading container's mount namespace only (after containerReader()). */
  readerMount(devno: string, source: string, mountpoint: string): this {
    (this.readerMounts ??= []).push(
      `${60 + this.readerMounts.length} 1 ${devno} / ${mountpoint} rw,relatime shared:1 - ext4 ${source} rw`,
    );
    this.flushProc();
    return this;
  }

  swap(source: string): this {
    this.swaps.push(`${source}                               partition\t1048572\t0\t-2`);
    this.flushProc();
    return this;
  }

  fstab(text: string): this {
    this.tree.write('/etc/fstab', text);
    return this;
  }

  pciIds(text: string): this {
    this.tree.write('/usr/share/misc/pci.ids', text);
    return this;
  }

  private flushProc(): void {
    const t = this.tree;
    const routeHeader =
      'Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT';
    const write = (
      proc: string,
      mountinfo: string[],
      routes: string[],
      routes6: string[],
      inet6: string[],
    ) => {
      t.write(`${proc === '/proc' ? '/proc/self' : proc}/mountinfo`, mountinfo.join('\n') + '\n');
      t.write(`${proc}/net/route`, [routeHeader, ...routes].join('\n') + '\n');
      t.write(`${proc}/net/ipv6_route`, routes6.join('\n'));
      t.write(`${proc}/net/if_inet6`, inet6.map((l) => l + '\n').join(''));
    };
    const host = ['22 1 0:21 / / rw - ext4 /dev/root rw', ...this.mountinfo];
    if (this.readerMounts === null)
      write(
        '/proc',
        ['22 1 0:21 / / rw - overlay overlay rw', ...this.mountinfo],
        this.routes,
        this.routes6,
        this.inet6,
      );
    else {
      write('/proc/1', host, this.routes, this.routes6, this.inet6);
      write(
        '/proc',
        ['1200 1100 0:99 / / rw - overlay overlay rw', ...this.readerMounts],
        [],
        [],
        [],
      );
    }
    // Swap is global: one /proc/swaps whatever the reader's namespaces.
    t.write(
      '/proc/swaps',
      ['Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority', ...this.swaps].join('\n') + '\n',
    );
  }
}

/** The real vfio_pci:/pci: aliases of the drivers in the tests, as depmod writes them. */
export const ALIASES = {
  vfioPci: 'alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci',
  mlx5: 'alias vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_vfio_pci',
  virtio1041: 'alias vfio_pci:v00001AF4d00001041sv*sd*bc*sc*i* virtio_vfio_pci',
  qat: [
    'alias vfio_pci:v00008086d00004941sv*sd*bc*sc*i* qat_vfio_pci',
    'alias vfio_pci:v00008086d00004943sv*sd*bc*sc*i* qat_vfio_pci',
    'alias vfio_pci:v00008086d00004945sv*sd*bc*sc*i* qat_vfio_pci',
  ],
  e1000e: 'alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e',
  virtioPci: 'alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci',
  mlx5Core: 'alias pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_core',
};
