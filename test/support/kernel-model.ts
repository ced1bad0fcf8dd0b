// A simulated PCI driver core behind the KernelIo interface the executor writes through. It keeps
// the fixture tree in the shape the real kernel would (driver links, driver_override, vfio-dev/,
// /dev/vfio nodes) and implements kernel-facts.md: driver_override parsing, override-only ids, the
// dummy-id fallback that binds any named driver, drivers_probe that succeeds when probe fails,
// bind/unbind errnos, SR-IOV autoprobe, module load/unload, IOMMU group ownership.
import * as fs from 'node:fs';
import type { KernelIo } from '../../src/apply/kernel-io';
import { fnmatch } from '../../src/match/fnmatch';
import type { SysfsTree } from './sysfs-tree';

export interface DriverModel {
  readonly name: string;
  readonly module: string;
  /** pci: patterns (normal matching) */
  readonly ids: readonly string[];
  /** vfio_pci: patterns: override-only entries, match only when driver_override names us. */
  readonly overrideOnlyIds: readonly string[];
  readonly vfio: boolean;
  /** Return an errno to refuse the device. */
  readonly probe?: (address: string, k: KernelModel) => string | null;
}

function errno(code: string, what: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: ${what}`) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

/** The kernel would block uninterruptibly here: a test that reaches it has found a vfioctl bug. */
export class KernelHang extends Error {}

const PAGE_SIZE = 4096;

export class KernelModel implements KernelIo {
  readonly writes: { rel: string; value: string }[] = [];
  readonly modprobes: string[][] = [];
  readonly chowns: { rel: string; uid: number; gid: number }[] = [];
  private readonly drivers = new Map<string, DriverModel>();
  private readonly probeFailures = new Map<string, string>();
  private readonly blacklisted = new Set<string>();
  private vfioMinor = 0;
  /** Called before every write; tests use it to interleave or delay. */
  onWrite?: (rel: string, value: string) => Promise<void> | void;

  constructor(readonly tree: SysfsTree) {}

  /** A driver the model knows; `loaded` registers it now (else modprobe loads it). */
  define(d: DriverModel, loaded = false): this {
    this.drivers.set(d.name, d);
    if (loaded) this.tree.registerDriver(d.name, d.module);
    return this;
  }

  blacklist(module: string): this {
    this.blacklisted.add(module);
    return this;
  }

  /** Make `driver`'s probe of `address` fail with errno. */
  failProbe(driver: string, address: string, code = 'EINVAL'): this {
    this.probeFailures.set(`${driver}@${address}`, code);
    return this;
  }

  /** A VMM holding /dev/vfio/<group> open. */
  openGroup(group: string, pid = 4242, comm = 'qemu-system-x86'): this {
    // /proc/<pid>/fd links are absolute host paths, dangling inside the fixture, as readlink sees them.
    fs.mkdirSync(this.tree.abs(`/proc/${pid}/fd`), { recursive: true });
    fs.symlinkSync(`/dev/vfio/${group}`, this.tree.abs(`/proc/${pid}/fd/20`));
    this.tree.write(`/proc/${pid}/comm`, comm + '\n');
    return this;
  }

  private groupOpen(group: string | null): boolean {
    if (!group) return false;
    for (const p of this.tree.list('/proc')) {
      for (const fd of this.tree.list(`/proc/${p}/fd`)) {
        try {
          if (fs.readlinkSync(this.tree.abs(`/proc/${p}/fd/${fd}`)) === `/dev/vfio/${group}`) return true;
        } catch {
          /* not a link */
        }
      }
    }
    return false;
  }

  // ---- reading the tree ----
  private dev(address: string): string {
    return `/sys/bus/pci/devices/${address}`;
  }
  exists(address: string): boolean {
    return this.tree.exists(this.dev(address));
  }
  driverOf(address: string): string | null {
    return this.tree.readLinkName(`${this.dev(address)}/driver`);
  }
  overrideOf(address: string): string | null {
    const v = this.tree.read(`${this.dev(address)}/driver_override`)?.replace(/\n$/, '');
    return v === undefined || v === '(null)' ? null : v;
  }
  private modalias(address: string): string {
    return (this.tree.read(`${this.dev(address)}/modalias`) ?? '').trim();
  }
  groupOf(address: string): string | null {
    return this.tree.readLinkName(`${this.dev(address)}/iommu_group`);
  }
  private registered(): string[] {
    return this.tree.list('/sys/bus/pci/drivers');
  }

  // ---- pci_match_device() ----
  private matches(d: DriverModel, address: string): boolean {
    const override = this.overrideOf(address);
    if (override !== null && override !== d.name) return false;
    const ma = this.modalias(address);
    if (d.ids.some((p) => fnmatch(p, ma))) return true;
    if (override === d.name && d.overrideOnlyIds.some((p) => fnmatch(p, `vfio_${ma}`))) return true;
    // Since v3.16: driver_override naming the driver matches with a dummy id, table or not.
    return override === d.name;
  }

  private probeWith(name: string, address: string): string | null {
    const d = this.drivers.get(name);
    if (!d) return 'ENODEV';
    const injected = this.probeFailures.get(`${name}@${address}`);
    if (injected) return injected;
    const group = this.groupOf(address);
    if (d.vfio) {
      if (!group) return 'EINVAL'; // no IOMMU group: vfio_pci_core refuses (-22)
      const cfg = this.tree.read(`${this.dev(address)}/config`);
      if (cfg && cfg.charCodeAt(14) !== 0) return 'EINVAL';
      if (Number(this.tree.read(`${this.dev(address)}/sriov_numvfs`) ?? 0) > 0) return 'EBUSY';
    } else if (this.groupOpen(group)) {
      return 'EBUSY'; // a host driver cannot claim DMA while a VFIO user owns the group
    }
    const r = d.probe?.(address, this);
    if (r) return r;
    this.tree.bindLinks(address, name);
    if (d.vfio && group) {
      const n = this.vfioMinor++;
      this.tree.mkdir(`${this.tree.devDir(address)}/vfio-dev/vfio${n}`);
      this.tree.write(`/dev/vfio/${group}`, '');
      this.tree.write(`/dev/vfio/devices/vfio${n}`, '');
    }
    return null;
  }

  /** device_attach(): first matching driver whose probe does not say ENODEV/ENXIO. */
  private attach(address: string): void {
    if (this.driverOf(address) !== null) return;
    for (const name of this.registered()) {
      const d = this.drivers.get(name);
      if (!d || !this.matches(d, address)) continue;
      const r = this.probeWith(name, address);
      if (r === null || (r !== 'ENODEV' && r !== 'ENXIO')) return;
    }
  }

  private release(address: string): void {
    const name = this.driverOf(address);
    if (!name) return;
    const d = this.drivers.get(name);
    const dir = this.tree.devDir(address);
    if (d?.vfio) {
      // vfio_unregister_group_dev() waits for the user to close: uninterruptible.
      if (this.groupOpen(this.groupOf(address))) throw new KernelHang(`unbind of ${address} blocks: VFIO group is open`);
      for (const v of this.tree.list(`${dir}/vfio-dev`)) this.tree.rm(`/dev/vfio/devices/${v}`);
      this.tree.rm(`${dir}/vfio-dev`);
    } else if (this.tree.exists(`${dir}/sriov_numvfs`)) {
      this.setNumVfs(address, 0); // a PF driver's remove() disables SR-IOV: its VFs are gone
    }
    this.tree.unbindLinks(address);
  }

  // ---- SR-IOV ----
  private setNumVfs(pf: string, n: number): void {
    const dir = this.tree.devDir(pf);
    for (const f of this.tree.list(dir).filter((x) => x.startsWith('virtfn'))) {
      const vf = this.tree.readLinkName(`${dir}/${f}`)!;
      if (this.driverOf(vf)) this.release(vf);
      this.tree.rm(this.tree.devDir(vf));
      this.tree.unlink(`/sys/bus/pci/devices/${vf}`);
      this.tree.unlink(`${dir}/${f}`);
      for (const g of this.tree.list('/sys/kernel/iommu_groups')) this.tree.unlink(`/sys/kernel/iommu_groups/${g}/devices/${vf}`);
    }
    this.tree.write(`${dir}/sriov_numvfs`, `${n}\n`);
  }

  // ---- KernelIo ----
  async write(rel: string, value: string): Promise<void> {
    await this.onWrite?.(rel, value);
    this.writes.push({ rel, value });
    // A zero-length write never reaches the kernel's store().
    if (value.length === 0) return;
    let m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/driver_override$/.exec(rel);
    if (m) {
      if (!this.exists(m[1]!)) throw errno('ENOENT', rel);
      if (value.length >= PAGE_SIZE - 1) throw errno('EINVAL', 'driver_override too long');
      const v = value.split('\n')[0]!;
      this.tree.write(rel, v === '' ? '(null)\n' : `${v}\n`);
      return;
    }
    m = /^\/sys\/bus\/pci\/drivers\/([^/]+)\/(bind|unbind)$/.exec(rel);
    if (m) {
      const [, name, op] = m;
      if (!this.registered().includes(name!)) throw errno('ENOENT', rel);
      const address = value.trim();
      if (!this.exists(address)) throw errno('ENODEV', address);
      if (op === 'unbind') {
        if (this.driverOf(address) !== name) throw errno('ENODEV', `${address} not bound to ${name}`);
        this.release(address);
        return;
      }
      // Real kernels check the match before "already bound" (docs/kernel-behaviour.md).
      if (!this.matches(this.drivers.get(name!)!, address)) throw errno('ENODEV', `${name} does not match ${address}`);
      if (this.driverOf(address) !== null) throw errno('EBUSY', `${address} already bound`);
      const r = this.probeWith(name!, address);
      if (r) throw errno(r, `probe of ${address} by ${name}`);
      return;
    }
    if (rel === '/sys/bus/pci/drivers_probe') {
      const address = value.trim();
      if (!this.exists(address)) throw errno('ENODEV', address);
      this.attach(address); // success whatever happened
      return;
    }
    m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/sriov_numvfs$/.exec(rel);
    if (m) {
      // sriov_numvfs_store(): ENOENT without a PF driver; non-zero to non-zero must go through 0.
      if (this.driverOf(m[1]!) === null) throw errno('ENOENT', `${m[1]} has no driver`);
      const now = Number(this.tree.read(rel) ?? 0);
      if (now !== 0 && Number(value) !== 0 && Number(value) !== now) throw errno('EBUSY', `${m[1]} has ${now} VFs`);
      this.setNumVfs(m[1]!, Number(value));
      return;
    }
    m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/sriov_drivers_autoprobe$/.exec(rel);
    if (m) {
      this.tree.write(rel, `${value.trim() === '0' ? 0 : 1}\n`);
      return;
    }
    throw errno('EACCES', `kernel model: no such writable attribute ${rel}`);
  }

  async modprobe(args: readonly string[]): Promise<{ status: number; stderr: string }> {
    this.modprobes.push([...args]);
    const byAlias = args[0] === '-b';
    const name = byAlias ? args[1]! : args[0]!;
    let mods: string[];
    if (byAlias) {
      mods = [...new Set([...this.drivers.values()].filter((d) => d.ids.some((p) => fnmatch(p, name))).map((d) => d.module))].filter((m) => !this.blacklisted.has(m));
    } else {
      const mod = name.replace(/-/g, '_');
      mods = [...this.drivers.values()].some((d) => d.module === mod) ? [mod] : [];
      if (mods.length === 0) return { status: 1, stderr: `modprobe: FATAL: Module ${name} not found in directory /lib/modules/6.12.0-test` };
    }
    for (const mod of mods) {
      for (const d of this.drivers.values()) {
        if (d.module !== mod || this.registered().includes(d.name)) continue;
        this.tree.registerDriver(d.name, d.module);
        // driver_register() attaches to every matching unbound device.
        for (const a of this.tree.list('/sys/bus/pci/devices')) {
          if (this.driverOf(a) === null && this.matches(d, a)) this.probeWith(d.name, a);
        }
      }
    }
    return { status: 0, stderr: '' };
  }

  async chown(rel: string, uid: number, gid: number): Promise<void> {
    if (!this.tree.exists(rel)) throw errno('ENOENT', rel);
    this.chowns.push({ rel, uid, gid });
  }
}

/** The drivers of the usual test host, with the ID tables their modules.alias lines declare. */
export const DRIVERS = {
  e1000e: { name: 'e1000e', module: 'e1000e', ids: ['pci:v00008086d000010D3sv*sd*bc*sc*i*'], overrideOnlyIds: [], vfio: false },
  virtioPci: { name: 'virtio-pci', module: 'virtio_pci', ids: ['pci:v00001AF4d*sv*sd*bc*sc*i*'], overrideOnlyIds: [], vfio: false },
  vfioPci: { name: 'vfio-pci', module: 'vfio_pci', ids: [], overrideOnlyIds: ['vfio_pci:v*d*sv*sd*bc*sc*i*'], vfio: true },
  virtioVfio: { name: 'virtio_vfio_pci', module: 'virtio_vfio_pci', ids: [], overrideOnlyIds: ['vfio_pci:v00001AF4d00001041sv*sd*bc*sc*i*'], vfio: true },
  mlx5Vfio: { name: 'mlx5_vfio_pci', module: 'mlx5_vfio_pci', ids: [], overrideOnlyIds: ['vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*'], vfio: true },
  qatVfio: {
    name: 'qat_vfio_pci',
    module: 'qat_vfio_pci',
    ids: [],
    overrideOnlyIds: ['vfio_pci:v00008086d00004941sv*sd*bc*sc*i*'],
    vfio: true,
    // Observed on a real kernel: on a non-VF the probe fails silently and no driver is attached.
    probe: (a: string, k: KernelModel) => (k.tree.exists(`/sys/bus/pci/devices/${a}/physfn`) ? null : 'ENODEV'),
  },
  nvme: { name: 'nvme', module: 'nvme', ids: ['pci:v*d*sv*sd*bc01sc08i02*'], overrideOnlyIds: [], vfio: false },
  lpc: { name: 'lpc_ich', module: 'lpc_ich', ids: ['pci:v00008086d00002918sv*sd*bc*sc*i*'], overrideOnlyIds: [], vfio: false },
  smbus: { name: 'i801_smbus', module: 'i2c_i801', ids: ['pci:v00008086d00002930sv*sd*bc*sc*i*'], overrideOnlyIds: [], vfio: false },
  pciStub: { name: 'pci-stub', module: 'pci_stub', ids: [], overrideOnlyIds: [], vfio: false },
} satisfies Record<string, DriverModel>;
