// The usual unit-test host for binding: the QEMU e2e machine's devices, in a fixture tree, with
// the kernel model behind the executor. Mirrors what the real-kernel suite boots.
import * as fs from 'node:fs';
import { afterEach } from 'node:test';
import { Fixture, type NetdevSpec } from './fixture';
import {
  DRIVERS,
  KernelModel,
  VARIANT_DRIVERS,
  VFIO_PCI_5_10,
  type DriverModel,
} from './kernel-model';
import { cli, type CliResult } from './cli';
import { e1000e } from './devices';
import type { DevicePlan, Step } from '../../src/plan/types';

export const E1 = '0000:00:02.0'; // e1000e, group 2, eth0 down
export const VN = '0000:00:03.0'; // virtio-net modern 1af4:1041, group 3
export const E2 = '0000:00:05.0'; // e1000e, group 5
export const LPC = '0000:00:1f.0'; // q35 ICH9 functions sharing group 9
export const SMB = '0000:00:1f.3';
/**
 * QEMU's emulated NVMe with SR-IOV (ModelHost's `nvme` option): its VFs appear at 00:07.1, 00:07.2,
 * ...
 */
export const NVME = '0000:00:07.0';
/** An e1000e the host uses: interface mgmt0 up with an address (ModelHost.mgmtNic()). */
export const MGMT = '0000:00:08.0';

export const isRoot = process.getuid?.() === 0;

/** Thrown before a step to simulate the process dying there: the executor does no rollback. */
export class SimulatedKill extends Error {}

/**
 * `kernel: '5.10'`: Debian 11's kernel: vfio-pci without an ID table, no variants, no vfio-dev/, no
 * reset_method.
 */
export type ModelHostOptions = {
  loaded?: DriverModel[];
  iommu?: boolean;
  nvme?: number;
  eth0?: NetdevSpec;
  kernel?: '6.12' | '5.10';
};

export class ModelHost {
  readonly f: Fixture;
  readonly k: KernelModel;
  /** The boot map `vfioctl install` writes for the running kernel. */
  readonly bootMap: string;

  /**
   * `loaded`: the drivers registered at start; `iommu: false`: booted without an IOMMU;
   * `nvme`: also the e2e machine's NVMe controller (1b36:0010 on nvme, group 7) with this many
   * possible VFs (QEMU's sriov_max_vfs), none enabled, sriov_drivers_autoprobe 1; `eth0`: E1's
   * interface (default down, so E1 is free).
   */
  constructor(opts: ModelHostOptions = {}) {
    const old = opts.kernel === '5.10';
    const release = old ? '5.10.0-test' : '6.12.0-test';
    this.f = Fixture.create().kernel(release);
    this.bootMap = `/etc/vfioctl/boot/${release}.map`;
    const all = old
      ? (Object.values(DRIVERS) as DriverModel[])
          .filter((d) => !VARIANT_DRIVERS.includes(d))
          .map((d) => (d === DRIVERS.vfioPci ? VFIO_PCI_5_10 : d))
      : (Object.values(DRIVERS) as DriverModel[]);
    this.f.modulesAlias(
      all.flatMap((d) => [...d.ids, ...d.overrideOnlyIds].map((p) => `alias ${p} ${d.module}`)),
    );
    this.f.tree.write(
      `/lib/modules/${release}/modules.dep`,
      all
        .map((d) => `kernel/drivers/${d.module.replace(/_/g, '-')}.ko${old ? '' : '.xz'}:`)
        .join('\n') + '\n',
    );
    this.k = new KernelModel(this.f.tree, { kernel: old ? '5.10' : '6.x' });
    const loaded = new Set(
      (
        opts.loaded ?? [DRIVERS.e1000e, DRIVERS.virtioPci, DRIVERS.lpc, DRIVERS.smbus, DRIVERS.nvme]
      ).map((d) => d.name),
    );
    for (const d of all) this.k.define(d, loaded.has(d.name));
    const g = (n: string) => (opts.iommu === false ? null : n);
    // reset_method appeared in 5.15 (pci-sysfs.c of 5.10 has no such attribute).
    const resetMethods = old ? null : undefined;
    this.f.device({
      resetMethods,
      address: E1,
      vendor: '8086',
      device: '10d3',
      driver: loaded.has('e1000e') ? 'e1000e' : null,
      iommuGroup: g('2'),
      netdevs: [opts.eth0 ?? { name: 'eth0', up: false }],
    });
    this.f.device({
      resetMethods,
      address: VN,
      vendor: '1af4',
      device: '1041',
      driver: loaded.has('virtio-pci') ? 'virtio-pci' : null,
      iommuGroup: g('3'),
    });
    this.f.device({
      resetMethods,
      address: E2,
      vendor: '8086',
      device: '10d3',
      driver: loaded.has('e1000e') ? 'e1000e' : null,
      iommuGroup: g('5'),
    });
    this.f.device({
      resetMethods,
      address: LPC,
      vendor: '8086',
      device: '2918',
      class: '060100',
      driver: 'lpc_ich',
      iommuGroup: g('9'),
    });
    this.f.device({
      resetMethods,
      address: SMB,
      vendor: '8086',
      device: '2930',
      class: '0c0500',
      driver: 'i801_smbus',
      iommuGroup: g('9'),
    });
    if (opts.nvme !== undefined) {
      this.f.device({
        address: NVME,
        vendor: '1b36',
        device: '0010',
        subsystemVendor: '1af4',
        subsystemDevice: '1100',
        class: '010802',
        revision: '02',
        driver: loaded.has('nvme') ? 'nvme' : null,
        iommuGroup: g('7'),
        resetMethods: old ? null : ['flr', 'bus'],
        sriov: { totalVfs: opts.nvme },
      });
      // QEMU's SR-IOV capability: first VF offset 1, stride 1, VF device id 0x0010.
      for (const [a, v] of [
        ['sriov_offset', '1'],
        ['sriov_stride', '1'],
        ['sriov_vf_device', '10'],
      ])
        this.f.tree.write(`/sys/bus/pci/devices/${NVME}/${a}`, `${v}\n`);
    }
    if (opts.iommu === false) this.f.iommu(false);
  }

  /** Adds MGMT, the NIC the host is using: the checks refuse it, the boot map leaves it out. */
  mgmtNic(): string {
    this.f.device(
      e1000e(MGMT, '8', { netdevs: [{ name: 'mgmt0', up: true, ipv4: '192.0.2.10' }] }),
    );
    return MGMT;
  }

  /** The boot map's entry lines (`address ...`, `id ...`), without its comments; it must exist. */
  mapEntries(): string[] {
    const map = this.f.tree.read(this.bootMap);
    if (map === undefined) throw new Error(`${this.bootMap} was not written`);
    return map.split('\n').filter((l) => /^(address|id) /.test(l));
  }

  /**
   * A device goes back to its host driver behind vfioctl's back (libvirt, driverctl
   * unset-override, a boot without vfioctl's layers): clear the override, unbind, and let
   * drivers_probe find the host driver.
   */
  async handBack(address: string): Promise<void> {
    const driver = this.k.driverOf(address);
    await this.k.write(`/sys/bus/pci/devices/${address}/driver_override`, '\n');
    if (driver) await this.k.write(`/sys/bus/pci/drivers/${driver}/unbind`, address);
    await this.k.write('/sys/bus/pci/drivers_probe', address);
  }

  /** Stops the run before a step (as kill -9 would), when set. */
  private beforeStep?: (p: DevicePlan, s: Step, i: number) => void;

  /** Environment for the CLI; tests that are not root trust their own files explicitly. */
  env: NodeJS.ProcessEnv = {};

  /** `stdin`: what the command reads from standard input (libvirt-hook's domain XML). */
  run(args: string[], stdin?: string | (() => string)): Promise<CliResult> {
    const input = typeof stdin === 'string' ? () => stdin : stdin;
    return cli(this.f.dir, args, this.env, {
      kernelIo: () => this.k,
      beforeStep: this.beforeStep,
      ...(input ? { stdin: input } : {}),
    });
  }

  /** An executable hook in etc/vfioctl/hooks.d (or another dir under the root). */
  hook(rel: string, body: string, mode = 0o755): void {
    this.f.tree.write(rel, `#!/bin/sh\n${body}\n`, mode);
  }

  /** Die (as kill -9 would) just before the step with this index of the first device. */
  killBefore(index: number): void {
    this.beforeStep = (_p: DevicePlan, _s: Step, i: number) => {
      if (i === index) {
        throw new SimulatedKill(`killed before step ${i}`);
      }
    };
  }

  noKill(): void {
    this.beforeStep = undefined;
  }

  state(address: string): { driver: string | null; override: string | null; vfioDev: boolean } {
    return {
      driver: this.k.driverOf(address),
      override: this.k.overrideOf(address),
      vfioDev: this.f.tree.list(`/sys/bus/pci/devices/${address}/vfio-dev`).length > 0,
    };
  }

  /**
   * Tests run as a normal user, whose files are not root's: trust them explicitly (the CLI
   * announces it on every use). As root nothing needs relaxing. PATH is kept for hooks.
   */
  trustSelf(): this {
    this.env = isRoot
      ? { PATH: process.env.PATH }
      : { VFIOCTL_TRUST_UID: String(process.getuid!()), PATH: process.env.PATH };
    return this;
  }

  /** etc/vfioctl/vfioctl.json with these rules, as root would leave it (mode 0644). */
  config(rules: unknown[]): void {
    this.f.tree.write('/etc/vfioctl/vfioctl.json', JSON.stringify({ version: 1, rules }, null, 2));
    fs.chmodSync(this.f.tree.abs('/etc/vfioctl/vfioctl.json'), 0o644);
  }

  cleanup(): void {
    this.f.cleanup();
  }
}

/** A ModelHost factory for one test file: every host it made is cleaned up after each test. */
export function modelHosts(
  defaults: { trustSelf?: boolean } = {},
): (opts?: ModelHostOptions) => ModelHost {
  const hosts: ModelHost[] = [];
  afterEach(() => hosts.splice(0).forEach((h) => h.cleanup()));
  return (opts) => {
    const h = new ModelHost(opts);
    if (defaults.trustSelf) h.trustSelf();
    hosts.push(h);
    return h;
  };
}
