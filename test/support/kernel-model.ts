// A simulated PCI driver core behind the KernelIo interface the executor writes through. It keeps
// the fixture tree in the shape the real kernel would (driver links, driver_override, vfio-dev/,
// /dev/vfio nodes, SR-IOV VFs) and does what Debian's 6.1 and 6.12 kernels were seen to do under
// QEMU (docs/kernel-behaviour.md, "Model vs kernel"): driver_override parsing, override-only ids,
// the dummy-id fallback that binds any named driver, drivers_probe that succeeds when probe fails,
// bind/unbind errnos, SR-IOV (VF creation, sriov_drivers_autoprobe, PF drivers that keep or destroy
// their VFs on remove), module load and unload, IOMMU group ownership. With `kernel: '5.10'` it
// is Debian 11's 5.10 where that differs (no vfio-dev/, no /dev/vfio/devices, bind errnos).
// ModelHost's `kernel: '5.10'` adds the module tree's side (no vfio_pci: alias, no reset_method).
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { KernelIo } from '../../src/apply/kernel-io';
import { fnmatch } from '../../src/modules/fnmatch';
import type { SysfsTree } from './sysfs-tree';

export interface DriverModel {
  readonly name: string;
  readonly module: string;
  /** pci: patterns (normal matching) */
  readonly ids: readonly string[];
  /** vfio_pci: patterns: override-only entries, match only when driver_override names us. */
  readonly overrideOnlyIds: readonly string[];
  readonly vfio: boolean;
  /** The driver's own probe checks (a variant's init): return an errno to refuse the device. */
  readonly probe?: (address: string, k: KernelModel) => string | null;
  /**
   * SR-IOV PF support (pci_driver.sriov_configure). Absent: writing sriov_numvfs gives ENOENT (for
   * vfio-pci too: its callback returns -ENOENT unless enable_sriov=1). `onRemove` is what the
   * driver's remove() does with enabled VFs: 'disable' calls pci_disable_sriov() and destroys them
   * (virtio-pci, most NIC drivers); 'keep' leaves them (nvme; the kernel logs "driver left SR-IOV
   * enabled after remove"). A driver the tree has but the model does not define counts as
   * 'disable'.
   */
  readonly sriov?: { readonly onRemove: 'disable' | 'keep' };
}

function errno(code: string, what: string): NodeJS.ErrnoException {
  const e = new Error(`${code}: ${what}`) as NodeJS.ErrnoException;
  e.code = code;
  return e;
}

/** The kernel would block uninterruptibly here: a test that reaches it has found a vfioctl bug. */
export class KernelHang extends Error {}

const PAGE_SIZE = 4096;

/** kernfs hands store() a NUL-terminated copy: C string functions stop at the first NUL. */
const cString = (v: string): string => {
  const nul = v.indexOf('\0');
  return nul < 0 ? v : v.slice(0, nul);
};

/**
 * bus_find_device_by_name() compares with sysfs_streq(): one trailing newline is ignored, nothing
 * else.
 */
const deviceName = (v: string): string => cString(v).replace(/\n$/, '');

/** kstrtou16(buf, 0): optional '+', 0x (hex) or 0 (octal) prefix, one trailing newline. */
function kstrtou16(raw: string): number | 'EINVAL' | 'ERANGE' {
  let s = cString(raw);
  if (s.startsWith('+')) s = s.slice(1);
  let base = 10;
  if (/^0[xX][0-9a-fA-F]/.test(s)) {
    base = 16;
    s = s.slice(2);
  } else if (s.startsWith('0')) base = 8;
  const digits = (base === 16 ? /^[0-9a-fA-F]+/ : base === 8 ? /^[0-7]+/ : /^[0-9]+/).exec(s)?.[0];
  if (!digits) return 'EINVAL';
  const rest = s.slice(digits.length);
  if (rest !== '' && rest !== '\n') return 'EINVAL';
  const n = Number.parseInt(digits, base);
  return n > 0xffff ? 'ERANGE' : n;
}

/** kstrtobool(): y/Y/1/on true, n/N/0/off false, only the first one or two characters count. */
function kstrtobool(raw: string): boolean | null {
  const s = cString(raw);
  if (/^[yY1]/.test(s) || /^[oO][nN]/.test(s)) return true;
  if (/^[nN0]/.test(s) || /^[oO][fF]/.test(s)) return false;
  return null;
}

const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');

export class KernelModel implements KernelIo {
  readonly writes: { rel: string; value: string }[] = [];
  readonly modprobes: string[][] = [];
  readonly chowns: { rel: string; uid: number; gid: number }[] = [];
  private readonly drivers = new Map<string, DriverModel>();
  private readonly probeFailures = new Map<string, string>();
  private readonly blacklisted = new Set<string>();
  /** Called before every write; tests use it to interleave or delay. */
  onWrite?: (rel: string, value: string) => Promise<void> | void;

  /**
   * `kernel: '5.10'` (Debian 11; the default is 6.1/6.12): vfio.ko has no vfio-dev class, so a
   * bound device gets no vfio-dev/ and no /dev/vfio/devices/vfioN, only its group's
   * /dev/vfio/<group> (5.10's vfio_create_group(): device_create() in the "vfio" class); and
   * `drivers/<drv>/bind` answers ENODEV for everything: an already bound device, and any failed
   * probe (5.10's really_probe() "Ignore errors returned by ->probe" returns 0).
   */
  constructor(
    readonly tree: SysfsTree,
    readonly opts: { readonly kernel?: '5.10' | '6.x' } = {},
  ) {}

  private get vfioDevClass(): boolean {
    return this.opts.kernel !== '5.10';
  }

  /** Bound to a VFIO driver (what vfio-dev/ shows from 6.1 on). */
  private onVfio(address: string): boolean {
    return this.drivers.get(this.driverOf(address) ?? '')?.vfio === true;
  }

  /** A driver the model knows; `loaded` registers it now (else modprobe loads it). */
  define(d: DriverModel, loaded = false): this {
    this.drivers.set(d.name, d);
    if (loaded) this.register(d);
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
    // /proc/<pid>/fd links are absolute host paths, dangling inside the fixture, as readlink sees
    // them.
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
          if (fs.readlinkSync(this.tree.abs(`/proc/${p}/fd/${fd}`)) === `/dev/vfio/${group}`)
            return true;
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
  /** The VFs of a PF, in virtfn order. */
  vfsOf(pf: string): string[] {
    const dir = this.tree.devDir(pf);
    return this.tree
      .list(dir)
      .filter((f) => /^virtfn\d+$/.test(f))
      .sort((a, b) => Number(a.slice(6)) - Number(b.slice(6)))
      .map((f) => this.tree.readLinkName(`${dir}/${f}`)!);
  }
  private registered(): string[] {
    return this.tree.list('/sys/bus/pci/drivers');
  }
  private moduleOfDriver(name: string): string | null {
    return this.tree.readLinkName(`/sys/bus/pci/drivers/${name}/module`);
  }

  private register(d: DriverModel): void {
    this.tree.registerDriver(d.name, d.module);
    // vfio.ko (loaded first, as a dependency) registers the vfio-dev class (v6.1+).
    if (d.vfio && this.vfioDevClass) this.tree.mkdir('/sys/class/vfio-dev');
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

  /**
   * pci_device_can_probe(): a VF whose PF has sriov_drivers_autoprobe=0 is probed only with an
   * override.
   */
  private canProbe(address: string): boolean {
    const pf = this.tree.readLinkName(`${this.dev(address)}/physfn`);
    if (pf === null) return true;
    return (
      this.tree.read(`${this.dev(pf)}/sriov_drivers_autoprobe`)?.trim() !== '0' ||
      this.overrideOf(address) !== null
    );
  }

  /**
   * really_probe() of `name` on an unbound, matching device: null when it bound, else the errno.
   */
  private probeWith(name: string, address: string): string | null {
    const d = this.drivers.get(name);
    if (!d) return 'ENODEV';
    const group = this.groupOf(address);
    // pci_dma_configure(), before the driver's probe: a DMA-API driver needs the group's default
    // domain, which a VFIO user owns (VFIO drivers set driver_managed_dma and skip this).
    if (!d.vfio && this.groupOpen(group)) return 'EBUSY';
    if (!this.canProbe(address)) return 'ENODEV';
    const injected = this.probeFailures.get(`${name}@${address}`);
    if (injected) return injected;
    // The driver's own init (a variant's checks) runs before vfio_pci_core_register_device().
    const r = d.probe?.(address, this);
    if (r) return r;
    if (d.vfio) {
      // vfio_pci_core_register_device(): header type, then enabled VFs, then the IOMMU group.
      const cfg = this.tree.read(`${this.dev(address)}/config`);
      if (cfg && cfg.charCodeAt(14) !== 0) return 'EINVAL';
      if (Number(this.tree.read(`${this.dev(address)}/sriov_numvfs`) ?? 0) > 0) return 'EBUSY'; // "Cannot bind to PF with SR-IOV enabled"
      if (!group) return 'EINVAL'; // no IOMMU group and no CONFIG_VFIO_NOIOMMU (Debian): -22
    }
    this.tree.bindLinks(address, name);
    if (d.vfio && group) {
      this.tree.write(`/dev/vfio/${group}`, '');
      if (this.vfioDevClass) {
        const n = this.freeVfioMinor();
        this.tree.mkdir(`${this.tree.devDir(address)}/vfio-dev/vfio${n}`);
        this.tree.link(
          `/sys/class/vfio-dev/vfio${n}`,
          `${this.tree.devDir(address)}/vfio-dev/vfio${n}`,
        );
        this.tree.write(`/dev/vfio/devices/vfio${n}`, '');
      }
    }
    return null;
  }

  /** vfio device minors come from an IDA: the lowest free number. */
  private freeVfioMinor(): number {
    const used = new Set([
      ...this.tree.list('/dev/vfio/devices'),
      ...this.tree.list('/sys/class/vfio-dev'),
    ]);
    for (const a of this.tree.list('/sys/bus/pci/devices'))
      for (const v of this.tree.list(`${this.dev(a)}/vfio-dev`)) used.add(v);
    let n = 0;
    while (used.has(`vfio${n}`)) n++;
    return n;
  }

  /** device_attach(): every matching driver in turn until one binds; probe errors are ignored. */
  private attach(address: string): void {
    if (this.driverOf(address) !== null) return;
    for (const name of this.registered()) {
      const d = this.drivers.get(name);
      if (!d || !this.matches(d, address)) continue;
      if (this.probeWith(name, address) === null) return;
    }
  }

  /** device_release_driver(): the driver's remove(), then the links go. */
  private release(address: string): void {
    const name = this.driverOf(address);
    if (!name) return;
    const d = this.drivers.get(name);
    const dir = this.tree.devDir(address);
    if (d?.vfio) {
      // vfio_unregister_group_dev() waits for the user to close: uninterruptible.
      const group = this.groupOf(address);
      if (this.groupOpen(group))
        throw new KernelHang(`unbind of ${address} blocks: VFIO group is open`);
      for (const v of this.tree.list(`${dir}/vfio-dev`)) {
        this.tree.rm(`/dev/vfio/devices/${v}`);
        this.tree.unlink(`/sys/class/vfio-dev/${v}`);
      }
      this.tree.rm(`${dir}/vfio-dev`);
      // The group's /dev/vfio node goes with the last VFIO device of the group.
      if (group && !this.groupMembers(group).some((m) => m !== address && this.onVfio(m)))
        this.tree.rm(`/dev/vfio/${group}`);
    } else if (
      Number(this.tree.read(`${dir}/sriov_numvfs`) ?? 0) > 0 &&
      (d?.sriov?.onRemove ?? 'disable') === 'disable'
    ) {
      this.setNumVfs(address, 0); // remove() calls pci_disable_sriov(): the VFs and their users go
    }
    this.tree.unbindLinks(address);
  }

  private groupMembers(group: string): string[] {
    return this.tree.list(`/sys/kernel/iommu_groups/${group}/devices`);
  }

  // ---- SR-IOV ----
  /** pci_iov_add_virtfn(): the VF's routing ID is the PF's plus offset + i * stride. */
  private vfAddress(pf: string, i: number): string {
    const m = /^([0-9a-f]{4,8}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/.exec(pf);
    if (!m) throw new Error(`kernel model: cannot place VFs of ${pf}`);
    const pfDir = this.tree.devDir(pf);
    const offset = Number(this.tree.read(`${pfDir}/sriov_offset`) ?? 1);
    const stride = Number(this.tree.read(`${pfDir}/sriov_stride`) ?? 1);
    const rid =
      ((Number.parseInt(m[2]!, 16) << 8) | (Number.parseInt(m[3]!, 16) << 3) | Number(m[4])) +
      offset +
      i * stride;
    return `${m[1]}:${hex((rid >> 8) & 0xff, 2)}:${hex((rid >> 3) & 0x1f, 2)}.${rid & 7}`;
  }

  /**
   * A new VF device: the PF's ids (device id from sriov_vf_device when present), own IOMMU group.
   */
  private addVf(pf: string, i: number): string {
    const t = this.tree;
    const pfDir = t.devDir(pf);
    const vf = this.vfAddress(pf, i);
    const dir = `${path.posix.dirname(pfDir)}/${vf}`;
    const attr = (n: string) => t.read(`${pfDir}/${n}`)?.trim();
    const vendor = attr('vendor') ?? '0x0000';
    const vfDevice = attr('sriov_vf_device');
    const device = vfDevice
      ? `0x${vfDevice.replace(/^0x/, '').padStart(4, '0')}`
      : (attr('device') ?? '0x0000');
    const sv = attr('subsystem_vendor') ?? vendor;
    const sd = attr('subsystem_device') ?? '0x0000';
    const cls = (attr('class') ?? '0x000000').slice(2).toUpperCase();
    const h8 = (x: string) => x.slice(2).toUpperCase().padStart(8, '0');
    t.mkdir(dir);
    t.link(`/sys/bus/pci/devices/${vf}`, dir);
    const attrs: Record<string, string> = {
      vendor,
      device,
      subsystem_vendor: sv,
      subsystem_device: sd,
      class: `0x${cls.toLowerCase()}`,
      revision: attr('revision') ?? '0x00',
      modalias: `pci:v${h8(vendor)}d${h8(device)}sv${h8(sv)}sd${h8(sd)}bc${cls.slice(0, 2)}sc${cls.slice(2, 4)}i${cls.slice(4, 6)}`,
      driver_override: '(null)',
      numa_node: attr('numa_node') ?? '-1',
      enable: '0',
      remove: '',
      rescan: '',
    };
    const reset = attr('reset_method');
    if (reset !== undefined) attrs.reset_method = reset;
    for (const [k, v] of Object.entries(attrs)) t.write(`${dir}/${k}`, v + '\n');
    const cfg = fs.existsSync(t.abs(`${pfDir}/config`))
      ? fs.readFileSync(t.abs(`${pfDir}/config`))
      : null;
    if (cfg) {
      cfg.writeUInt16LE(Number.parseInt(device, 16), 2);
      t.write(`${dir}/config`, cfg);
    }
    t.link(`${dir}/physfn`, pfDir);
    t.link(`${pfDir}/virtfn${i}`, dir);
    const pfGroup = this.groupOf(pf);
    if (pfGroup !== null) {
      // q35 VFs are root-complex integrated endpoints: a group each, numbered after all others.
      const g = String(
        Math.max(-1, ...t.list('/sys/kernel/iommu_groups').map(Number).filter(Number.isInteger)) +
          1,
      );
      t.link(`/sys/kernel/iommu_groups/${g}/devices/${vf}`, dir);
      t.link(`${dir}/iommu_group`, `/sys/kernel/iommu_groups/${g}`);
      t.write(
        `/sys/kernel/iommu_groups/${g}/type`,
        t.read(`/sys/kernel/iommu_groups/${pfGroup}/type`) ?? 'DMA-FQ\n',
      );
    }
    return vf;
  }

  /**
   * pci_disable_sriov() / pci_enable_sriov(): VFs go (their drivers released) and come (probed at
   * once).
   */
  private setNumVfs(pf: string, n: number): void {
    const dir = this.tree.devDir(pf);
    for (const vf of this.vfsOf(pf).reverse()) {
      if (this.driverOf(vf)) this.release(vf);
      const group = this.groupOf(vf);
      const vfDir = this.tree.devDir(vf);
      for (const f of this.tree.list(dir).filter((x) => /^virtfn\d+$/.test(x)))
        if (this.tree.readLinkName(`${dir}/${f}`) === vf) this.tree.unlink(`${dir}/${f}`);
      this.tree.unlink(`/sys/bus/pci/devices/${vf}`);
      this.tree.rm(vfDir);
      if (group !== null) {
        this.tree.unlink(`/sys/kernel/iommu_groups/${group}/devices/${vf}`);
        if (this.groupMembers(group).length === 0)
          this.tree.rm(`/sys/kernel/iommu_groups/${group}`);
      }
    }
    this.tree.write(`${dir}/sriov_numvfs`, `${n}\n`);
    // pci_bus_add_device() of each new VF attaches a driver (pci_device_can_probe() decides).
    for (let i = 0; i < n; i++) this.attach(this.addVf(pf, i));
  }

  /** The PF driver's sriov_configure, or null when writing sriov_numvfs gives ENOENT. */
  private sriovOps(driver: string): { onRemove: 'disable' | 'keep' } | null {
    const d = this.drivers.get(driver);
    if (!d) return { onRemove: 'disable' };
    return d.sriov ?? null;
  }

  // ---- KernelIo ----
  async write(rel: string, value: string): Promise<void> {
    await this.onWrite?.(rel, value);
    this.writes.push({ rel, value });
    // A zero-length write never reaches the kernel's store().
    if (value.length === 0) return;
    let m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/driver_override$/.exec(rel);
    if (m) {
      // driver_set_override(): the length limit counts the bytes written; a NUL ends the string; it
      // is cut at the first newline; an empty result (or a leading newline) clears it.
      if (!this.exists(m[1]!)) throw errno('ENOENT', rel);
      if (Buffer.byteLength(value) >= PAGE_SIZE - 1)
        throw errno('EINVAL', 'driver_override too long');
      const v = cString(value).split('\n')[0]!;
      this.tree.write(rel, v === '' ? '(null)\n' : `${v}\n`);
      return;
    }
    m = /^\/sys\/bus\/pci\/drivers\/([^/]+)\/(bind|unbind)$/.exec(rel);
    if (m) {
      const [, name, op] = m;
      if (!this.registered().includes(name!)) throw errno('ENOENT', rel);
      const address = deviceName(value);
      if (!this.exists(address)) throw errno('ENODEV', address);
      if (op === 'unbind') {
        if (this.driverOf(address) !== name)
          throw errno('ENODEV', `${address} not bound to ${name}`);
        this.release(address);
        return;
      }
      // Real kernels check the match before "already bound" (docs/kernel-behaviour.md).
      const d = this.drivers.get(name!);
      if (this.opts.kernel === '5.10') {
        // 5.10's bind_store(): `dev->driver == NULL && driver_match_device()`, else -ENODEV; a
        // failed probe returns 0 from really_probe(), which bind_store() also turns into -ENODEV.
        if (!d || this.driverOf(address) !== null || !this.matches(d, address))
          throw errno('ENODEV', `${name}: ${address} bound or not matching`);
        const r = this.probeWith(name!, address);
        if (r) throw errno('ENODEV', `probe of ${address} by ${name} failed (${r})`);
        return;
      }
      if (!d || !this.matches(d, address))
        throw errno('ENODEV', `${name} does not match ${address}`);
      if (this.driverOf(address) !== null) throw errno('EBUSY', `${address} already bound`);
      const r = this.probeWith(name!, address);
      if (r) throw errno(r, `probe of ${address} by ${name}`);
      return;
    }
    if (rel === '/sys/bus/pci/drivers_probe') {
      const address = deviceName(value);
      if (!this.exists(address)) throw errno('ENODEV', address);
      this.attach(address); // success whatever happened
      return;
    }
    m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/sriov_numvfs$/.exec(rel);
    if (m) {
      // sriov_numvfs_store(): parse, ERANGE above sriov_totalvfs, the same count is a no-op (even
      // without a driver), ENOENT without a PF driver that configures SR-IOV, EBUSY from N to M.
      const pf = m[1]!;
      if (!this.tree.exists(rel)) throw errno('ENOENT', rel);
      const n = kstrtou16(value);
      if (typeof n === 'string') throw errno(n, `sriov_numvfs: ${JSON.stringify(value)}`);
      if (n > Number(this.tree.read(`${this.dev(pf)}/sriov_totalvfs`) ?? 0))
        throw errno('ERANGE', `${pf}: ${n} VFs is more than sriov_totalvfs`);
      const now = Number(this.tree.read(rel) ?? 0);
      if (n === now) return;
      const drv = this.driverOf(pf);
      if (drv === null || this.sriovOps(drv) === null)
        throw errno('ENOENT', `${pf}: no driver bound to device; cannot configure SR-IOV`);
      if (n !== 0 && now !== 0) throw errno('EBUSY', `${pf}: ${now} VFs already enabled`);
      this.setNumVfs(pf, n);
      return;
    }
    m = /^\/sys\/bus\/pci\/devices\/([^/]+)\/sriov_drivers_autoprobe$/.exec(rel);
    if (m) {
      if (!this.tree.exists(rel)) throw errno('ENOENT', rel);
      const on = kstrtobool(value);
      if (on === null) throw errno('EINVAL', `sriov_drivers_autoprobe: ${JSON.stringify(value)}`);
      this.tree.write(rel, `${on ? 1 : 0}\n`);
      return;
    }
    if (!this.tree.exists(rel)) throw errno('ENOENT', rel);
    throw errno('EACCES', `kernel model: writing ${rel} is not modelled`);
  }

  async modprobe(args: readonly string[]): Promise<{ status: number; stderr: string }> {
    this.modprobes.push([...args]);
    if (args[0] === '-r') return this.unload(args.slice(1));
    const byAlias = args[0] === '-b';
    const name = byAlias ? args[1]! : args[0]!;
    let mods: string[];
    if (byAlias) {
      mods = [
        ...new Set(
          [...this.drivers.values()]
            .filter((d) => d.ids.some((p) => fnmatch(p, name)))
            .map((d) => d.module),
        ),
      ].filter((m) => !this.blacklisted.has(m));
    } else {
      const mod = name.replace(/-/g, '_');
      mods = [...this.drivers.values()].some((d) => d.module === mod) ? [mod] : [];
      if (mods.length === 0) {
        if (this.builtin(mod)) return { status: 0, stderr: '' };
        return {
          status: 1,
          stderr: `modprobe: FATAL: Module ${name} not found in directory /lib/modules/${this.osRelease()}`,
        };
      }
    }
    for (const mod of mods) {
      for (const d of this.drivers.values()) {
        if (d.module !== mod || this.registered().includes(d.name)) continue;
        this.register(d);
        // driver_register() attaches to every matching unbound device; probe errors are ignored.
        for (const a of this.tree.list('/sys/bus/pci/devices')) {
          if (this.driverOf(a) === null && this.matches(d, a)) this.probeWith(d.name, a);
        }
      }
    }
    return { status: 0, stderr: '' };
  }

  /**
   * `modprobe -r`: driver_unregister() releases every bound device (driver_override stays), then
   * the module and its drivers are gone. Refused while a VFIO user holds a device (module in use).
   */
  private unload(names: readonly string[]): { status: number; stderr: string } {
    for (const name of names) {
      const mod = name.replace(/-/g, '_');
      if (this.builtin(mod))
        return { status: 1, stderr: `modprobe: FATAL: Module ${mod} is builtin.` };
      const drivers = this.registered().filter((d) => this.moduleOfDriver(d) === mod);
      if (drivers.length === 0) {
        const known = [...this.drivers.values()].some((d) => d.module === mod);
        return {
          status: 1,
          stderr: known
            ? `modprobe: FATAL: Module ${mod} is not in kernel.`
            : `modprobe: FATAL: Module ${name} not found.`,
        };
      }
      const bound = this.tree
        .list('/sys/bus/pci/devices')
        .filter((a) => drivers.includes(this.driverOf(a) ?? ''));
      if (
        bound.some(
          (a) => this.drivers.get(this.driverOf(a)!)?.vfio && this.groupOpen(this.groupOf(a)),
        )
      ) {
        return { status: 1, stderr: `modprobe: FATAL: Module ${mod} is in use.` };
      }
      for (const a of bound) this.release(a);
      for (const d of drivers) this.tree.unregisterDriver(d);
      this.tree.rm(`/sys/module/${mod}`);
    }
    return { status: 0, stderr: '' };
  }

  private osRelease(): string {
    return this.tree.read('/proc/sys/kernel/osrelease')?.trim() ?? '6.12.0-test';
  }

  private builtin(mod: string): boolean {
    const list = this.tree.read(`/lib/modules/${this.osRelease()}/modules.builtin`) ?? '';
    return list
      .split('\n')
      .some((l) => path.posix.basename(l.trim()).replace(/\.ko$/, '').replace(/-/g, '_') === mod);
  }

  async chown(rel: string, uid: number, gid: number): Promise<void> {
    if (!this.tree.exists(rel)) throw errno('ENOENT', rel);
    this.chowns.push({ rel, uid, gid });
  }
}

/** The drivers of the usual test host, with the ID tables their modules.alias lines declare. */
export const DRIVERS = {
  e1000e: {
    name: 'e1000e',
    module: 'e1000e',
    ids: ['pci:v00008086d000010D3sv*sd*bc*sc*i*'],
    overrideOnlyIds: [],
    vfio: false,
  },
  virtioPci: {
    name: 'virtio-pci',
    module: 'virtio_pci',
    ids: ['pci:v00001AF4d*sv*sd*bc*sc*i*'],
    overrideOnlyIds: [],
    vfio: false,
    sriov: { onRemove: 'disable' },
  },
  vfioPci: {
    name: 'vfio-pci',
    module: 'vfio_pci',
    ids: [],
    overrideOnlyIds: ['vfio_pci:v*d*sv*sd*bc*sc*i*'],
    vfio: true,
  },
  virtioVfio: {
    name: 'virtio_vfio_pci',
    module: 'virtio_vfio_pci',
    ids: [],
    overrideOnlyIds: ['vfio_pci:v00001AF4d00001041sv*sd*bc*sc*i*'],
    vfio: true,
  },
  mlx5Vfio: {
    name: 'mlx5_vfio_pci',
    module: 'mlx5_vfio_pci',
    ids: [],
    overrideOnlyIds: ['vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*'],
    vfio: true,
  },
  qatVfio: {
    name: 'qat_vfio_pci',
    module: 'qat_vfio_pci',
    ids: [],
    overrideOnlyIds: ['vfio_pci:v00008086d00004941sv*sd*bc*sc*i*'],
    vfio: true,
    // Observed on a real kernel: on a non-VF the probe fails silently and no driver is attached.
    probe: (a: string, k: KernelModel) =>
      k.tree.exists(`/sys/bus/pci/devices/${a}/physfn`) ? null : 'ENODEV',
  },
  // nvme's remove() leaves SR-IOV enabled (seen on 6.1 and 6.12): unbinding the PF keeps its VFs.
  nvme: {
    name: 'nvme',
    module: 'nvme',
    ids: ['pci:v*d*sv*sd*bc01sc08i02*'],
    overrideOnlyIds: [],
    vfio: false,
    sriov: { onRemove: 'keep' },
  },
  lpc: {
    name: 'lpc_ich',
    module: 'lpc_ich',
    ids: ['pci:v00008086d00002918sv*sd*bc*sc*i*'],
    overrideOnlyIds: [],
    vfio: false,
  },
  smbus: {
    name: 'i801_smbus',
    module: 'i2c_i801',
    ids: ['pci:v00008086d00002930sv*sd*bc*sc*i*'],
    overrideOnlyIds: [],
    vfio: false,
  },
  pciStub: { name: 'pci-stub', module: 'pci_stub', ids: [], overrideOnlyIds: [], vfio: false },
} satisfies Record<string, DriverModel>;

// Before 5.15 vfio-pci has no ID table (5.10's vfio_pci.c: `.id_table = NULL, /* only dynamic ids
// */`).
export const VFIO_PCI_5_10: DriverModel = { ...DRIVERS.vfioPci, overrideOnlyIds: [] };

/** Variant drivers: none exists before 5.15. */
export const VARIANT_DRIVERS: readonly DriverModel[] = [
  DRIVERS.virtioVfio,
  DRIVERS.mlx5Vfio,
  DRIVERS.qatVfio,
];
