// `list --json` and `show --json` against the kernel's own view: sysfs for the device facts,
// kmod's `modprobe -R` for which VFIO modules match each device.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { Scenario, ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';

interface DeviceJson {
  address: string;
  vendor: string;
  device: string;
  class: string;
  subsystemVendor: string | null;
  subsystemDevice: string | null;
  revision: string | null;
  numaNode: number | null;
  resetMethods: string[] | null;
  driver: string | null;
  driverOverride: string | null;
  iommuGroup: string | null;
  iommuGroupPeers: string[];
  physfn: string | null;
  sriov: {
    totalVfs: number;
    numVfs: number;
    driversAutoprobe: boolean | null;
    vfs: string[];
  } | null;
  onVfio: boolean;
  vfioDev: string | null;
  netdevs: string[];
  blockdevs: string[];
  candidates?: { module: string; driver: string; source: string }[];
}

function hex(v: string | null): string | null {
  return v === null ? null : v.replace(/^0x/, '').toLowerCase();
}

/**
 * Block devices whose sysfs path runs through the PCI device (nvme namespaces, virtio-blk, ...).
 */
function blockdevsOf(address: string): string[] {
  const out: string[] = [];
  for (const b of fs.readdirSync('/sys/class/block')) {
    if (fs.existsSync(`/sys/class/block/${b}/partition`)) continue;
    if (fs.realpathSync(`/sys/class/block/${b}`).split('/').includes(address)) out.push(b);
  }
  return out.sort();
}

/** What the kernel says about a device, in the shape of `list --json`. */
function kernelView(address: string): Omit<DeviceJson, 'candidates'> {
  const group = sysfs.iommuGroupOf(address);
  const total = sysfs.attr(address, 'sriov_totalvfs');
  const autoprobe = sysfs.attr(address, 'sriov_drivers_autoprobe');
  const numa = sysfs.attr(address, 'numa_node');
  const reset = sysfs.attr(address, 'reset_method');
  return {
    address,
    vendor: hex(sysfs.attr(address, 'vendor'))!,
    device: hex(sysfs.attr(address, 'device'))!,
    class: hex(sysfs.attr(address, 'class'))!,
    subsystemVendor: hex(sysfs.attr(address, 'subsystem_vendor')),
    subsystemDevice: hex(sysfs.attr(address, 'subsystem_device')),
    // pdev->revision as enumeration read it (list takes it from config space byte 0x08).
    revision: hex(sysfs.attr(address, 'revision')),
    numaNode: numa === null ? null : Number(numa),
    resetMethods: reset === null ? null : reset.split(/\s+/).filter(Boolean),
    driver: sysfs.driverOf(address),
    driverOverride: sysfs.overrideOf(address),
    iommuGroup: group,
    iommuGroupPeers: group ? sysfs.groupMembers(group).filter((a) => a !== address) : [],
    physfn: sysfs.physfnOf(address),
    sriov:
      total === null
        ? null
        : {
            totalVfs: Number(total),
            numVfs: Number(sysfs.attr(address, 'sriov_numvfs')),
            driversAutoprobe: autoprobe === null ? null : autoprobe === '1',
            vfs: sysfs.vfsOf(address),
          },
    // vfio-dev/ from 6.1 on; before it (5.10) vfio-pci, the only VFIO PCI driver, says it.
    onVfio:
      sysfs.vfioDevOf(address) !== null ||
      (!sysfs.hasVfioDevClass() && sysfs.driverOf(address) === 'vfio-pci'),
    vfioDev: sysfs.vfioDevOf(address),
    netdevs: sysfs.netdevsOf(address),
    blockdevs: blockdevsOf(address),
  };
}

/** Order does not matter in lists (peers, VFs, interfaces): compare them sorted. */
function normalize(d: Omit<DeviceJson, 'candidates'>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(d))
    out[k] = Array.isArray(v) ? [...(v as string[])].sort() : v;
  if (d.sriov) out.sriov = { ...d.sriov, vfs: [...d.sriov.vfs].sort() };
  return out;
}

/** Compares `list --json` with sysfs for every device; reports every mismatch at once. */
export function checkListAgainstSysfs(ctx: ScenarioContext): void {
  const { json } = ctx.cliJson<DeviceJson[]>(['list', '--json']);
  ctx.eq(
    json.map((d) => d.address).sort(),
    sysfs.allDevices(),
    'addresses listed = /sys/bus/pci/devices',
  );
  const mismatches: string[] = [];
  for (const listed of json) {
    const want = normalize(kernelView(listed.address));
    const got = normalize(listed);
    for (const k of Object.keys(want)) {
      if (JSON.stringify(got[k]) !== JSON.stringify(want[k]))
        mismatches.push(
          `${listed.address} ${k}: sysfs ${JSON.stringify(want[k])}, list ${JSON.stringify(got[k])}`,
        );
    }
  }
  if (mismatches.length > 0)
    ctx.fail(`list --json disagrees with sysfs:\n  ${mismatches.join('\n  ')}`);
  ctx.note(
    `ok: ${json.length} devices agree with sysfs on ${Object.keys(kernelView(json[0]!.address)).join(', ')}`,
  );
}

export const listAgreesWithSysfs: Scenario = {
  name: 'list-agrees-with-sysfs',
  title: 'list --json agrees with sysfs for every device',
  boots: ['iommu', 'no-iommu'],
  run: checkListAgainstSysfs,
};

function sh(argv: readonly string[]): string {
  return spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' }).stdout ?? '';
}

/** Module names kmod matches for the device's vfio_pci: alias (blacklisted ones included). */
function modprobeR(ctx: ScenarioContext, modalias: string): string[] {
  const alias = `vfio_pci:${modalias.replace(/^pci:/, '')}`;
  const r = spawnSync('modprobe', ['-R', alias], { encoding: 'utf8' });
  ctx.note(
    `$ modprobe -R ${alias} -> exit ${r.status}: ${(r.stdout || r.stderr).trim().split('\n').join(' ')}`,
  );
  if (r.status !== 0) return [];
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((m) => m.trim().replace(/-/g, '_'));
}

export const candidatesAgreeWithKmod: Scenario = {
  name: 'candidates-agree-with-kmod',
  title: 'show --json candidates agree with kmod `modprobe -R vfio_pci:<modalias>`',
  boots: ['iommu'],
  run(ctx) {
    const mismatches: string[] = [];
    // Before 5.15 (5.10) no vfio_pci: alias exists: kmod matches nothing, and vfio-pci is the
    // implicit candidate of every device (source no-id-table); kmod must know it by module name.
    const noTable =
      sh([
        'sh',
        '-c',
        `grep -c '^alias vfio_pci:' /lib/modules/$(uname -r)/modules.alias`,
      ]).trim() === '0';
    if (noTable) {
      const r = spawnSync('modprobe', ['-R', 'vfio-pci'], { encoding: 'utf8' });
      ctx.eq(
        r.stdout.trim(),
        'vfio_pci',
        'no vfio_pci: alias on this kernel, and `modprobe -R vfio-pci` resolves the module',
      );
    }
    for (const address of sysfs.allDevices()) {
      const modalias = sysfs.attr(address, 'modalias');
      if (!modalias) continue;
      const { json } = ctx.cliJson<DeviceJson>(['show', address, '--json']);
      const cands = json.candidates ?? [];
      const shown = [
        ...new Set(
          cands.filter((c) => c.source === 'modules.alias').map((c) => c.module.replace(/-/g, '_')),
        ),
      ].sort();
      const implicit = cands
        .filter((c) => c.source !== 'modules.alias')
        .map((c) => `${c.module}:${c.source}`);
      ctx.eq(
        implicit,
        noTable ? ['vfio_pci:no-id-table'] : [],
        `${address} candidates not from modules.alias`,
      );
      const kmod = [...new Set(modprobeR(ctx, modalias))].sort();
      if (JSON.stringify(shown) !== JSON.stringify(kmod))
        mismatches.push(
          `${address} (${modalias}): kmod ${kmod.join(',') || '-'}, show ${shown.join(',') || '-'}`,
        );
      else ctx.note(`ok: ${address} candidates ${shown.join(',')}`);
    }
    if (mismatches.length > 0)
      ctx.fail(`candidates differ from modprobe -R:\n  ${mismatches.join('\n  ')}`);
    // The variant this kernel was given must be among the candidates of the device it exists for.
    if (ctx.hasVariant('virtio_vfio_pci')) {
      const { json } = ctx.cliJson<
        DeviceJson & { vfio: { module: string; driver: string } | null }
      >(['show', ctx.dev('virtioNetModern'), '--json']);
      ctx.eq(
        json.vfio?.module,
        'virtio_vfio_pci',
        `best VFIO module for ${ctx.dev('virtioNetModern')}`,
      );
    }
  },
};

export const doctorVfioPci: Scenario = {
  name: 'doctor-vfio-pci',
  title:
    "doctor's vfio-pci and variants lines pass on every kernel (before 5.15: vfio-pci without an ID table)",
  boots: ['iommu'],
  run(ctx) {
    interface Doctor {
      checks: { id: string; status: string; message: string }[];
    }
    // The exit code is not asserted: QEMU's intremap=off makes the interrupt-remapping line fail.
    const r = ctx.cli(['doctor', '--json']);
    const checks = (JSON.parse(r.stdout) as Doctor).checks;
    const line = (id: string) =>
      checks.find((c) => c.id === id) ?? ctx.fail(`doctor has no ${id} line: ${r.stdout}`);
    ctx.eq(line('vfio-pci').status, 'ok', `doctor vfio-pci line (${line('vfio-pci').message})`);
    ctx.eq(line('iommu').status, 'ok', `doctor iommu line (${line('iommu').message})`);
    const noTable =
      sh([
        'sh',
        '-c',
        `grep -c '^alias vfio_pci:' /lib/modules/$(uname -r)/modules.alias`,
      ]).trim() === '0';
    ctx.eq(
      /no ID table: Linux before 5\.15/.test(line('vfio-pci').message),
      noTable,
      'the vfio-pci line says "no ID table" exactly when modules.alias has no vfio_pci: line',
    );
    const variants = line('variants');
    ctx.note(`doctor variants line: ${variants.status} ${variants.message}`);
    ctx.eq(
      variants.status,
      ctx.plan.kernel.variants.length > 0 || noTable ? 'ok' : 'warn',
      'doctor variants line',
    );
  },
};
