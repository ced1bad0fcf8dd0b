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
  driver: string | null;
  driverOverride: string | null;
  iommuGroup: string | null;
  iommuGroupPeers: string[];
  physfn: string | null;
  sriov: { totalVfs: number; numVfs: number; driversAutoprobe: boolean | null; vfs: string[] } | null;
  onVfio: boolean;
  vfioDev: string | null;
  netdevs: string[];
  blockdevs: string[];
  candidates?: { module: string; driver: string }[];
}

function hex(v: string | null): string | null {
  return v === null ? null : v.replace(/^0x/, '').toLowerCase();
}

/** Block devices whose sysfs path runs through the PCI device (nvme namespaces, virtio-blk, ...). */
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
  return {
    address,
    vendor: hex(sysfs.attr(address, 'vendor'))!,
    device: hex(sysfs.attr(address, 'device'))!,
    class: hex(sysfs.attr(address, 'class'))!,
    driver: sysfs.driverOf(address),
    driverOverride: sysfs.overrideOf(address),
    iommuGroup: group,
    iommuGroupPeers: group ? sysfs.groupMembers(group).filter((a) => a !== address) : [],
    physfn: sysfs.physfnOf(address),
    sriov:
      total === null
        ? null
        : { totalVfs: Number(total), numVfs: Number(sysfs.attr(address, 'sriov_numvfs')), driversAutoprobe: autoprobe === null ? null : autoprobe === '1', vfs: sysfs.vfsOf(address) },
    onVfio: sysfs.vfioDevOf(address) !== null,
    vfioDev: sysfs.vfioDevOf(address),
    netdevs: sysfs.netdevsOf(address),
    blockdevs: blockdevsOf(address),
  };
}

/** Order does not matter in lists (peers, VFs, interfaces): compare them sorted. */
function normalize(d: Omit<DeviceJson, 'candidates'>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(d)) out[k] = Array.isArray(v) ? [...(v as string[])].sort() : v;
  if (d.sriov) out.sriov = { ...d.sriov, vfs: [...d.sriov.vfs].sort() };
  return out;
}

/** Compares `list --json` with sysfs for every device; reports every mismatch at once. */
export function checkListAgainstSysfs(ctx: ScenarioContext): void {
  const { json } = ctx.cliJson<DeviceJson[]>(['list', '--json']);
  ctx.eq(json.map((d) => d.address).sort(), sysfs.allDevices(), 'addresses listed = /sys/bus/pci/devices');
  const mismatches: string[] = [];
  for (const listed of json) {
    const want = normalize(kernelView(listed.address));
    const got = normalize(listed);
    for (const k of Object.keys(want)) {
      if (JSON.stringify(got[k]) !== JSON.stringify(want[k])) mismatches.push(`${listed.address} ${k}: sysfs ${JSON.stringify(want[k])}, list ${JSON.stringify(got[k])}`);
    }
  }
  if (mismatches.length > 0) ctx.fail(`list --json disagrees with sysfs:\n  ${mismatches.join('\n  ')}`);
  ctx.note(`ok: ${json.length} devices agree with sysfs on ${Object.keys(kernelView(json[0]!.address)).join(', ')}`);
}

export const listAgreesWithSysfs: Scenario = {
  name: 'list-agrees-with-sysfs',
  title: 'list --json agrees with sysfs for every device',
  boots: ['iommu', 'no-iommu'],
  run: checkListAgainstSysfs,
};

/** Module names kmod matches for the device's vfio_pci: alias (blacklisted ones included). */
function modprobeR(ctx: ScenarioContext, modalias: string): string[] {
  const alias = `vfio_pci:${modalias.replace(/^pci:/, '')}`;
  const r = spawnSync('modprobe', ['-R', alias], { encoding: 'utf8' });
  ctx.note(`$ modprobe -R ${alias} -> exit ${r.status}: ${(r.stdout || r.stderr).trim().split('\n').join(' ')}`);
  if (r.status !== 0) return [];
  return r.stdout.split('\n').filter(Boolean).map((m) => m.trim().replace(/-/g, '_'));
}

export const candidatesAgreeWithKmod: Scenario = {
  name: 'candidates-agree-with-kmod',
  title: 'show --json candidates agree with kmod `modprobe -R vfio_pci:<modalias>`',
  boots: ['iommu'],
  run(ctx) {
    const mismatches: string[] = [];
    for (const address of sysfs.allDevices()) {
      const modalias = sysfs.attr(address, 'modalias');
      if (!modalias) continue;
      const { json } = ctx.cliJson<DeviceJson>(['show', address, '--json']);
      const shown = [...new Set((json.candidates ?? []).map((c) => c.module.replace(/-/g, '_')))].sort();
      const kmod = [...new Set(modprobeR(ctx, modalias))].sort();
      if (JSON.stringify(shown) !== JSON.stringify(kmod)) mismatches.push(`${address} (${modalias}): kmod ${kmod.join(',') || '-'}, show ${shown.join(',') || '-'}`);
      else ctx.note(`ok: ${address} candidates ${shown.join(',')}`);
    }
    if (mismatches.length > 0) ctx.fail(`candidates differ from modprobe -R:\n  ${mismatches.join('\n  ')}`);
    // The variant this kernel was given must be among the candidates of the device it exists for.
    if (ctx.hasVariant('virtio_vfio_pci')) {
      const { json } = ctx.cliJson<DeviceJson & { vfio: { module: string; driver: string } | null }>(['show', ctx.dev('virtioNetModern'), '--json']);
      ctx.eq(json.vfio?.module, 'virtio_vfio_pci', `best VFIO module for ${ctx.dev('virtioNetModern')}`);
    }
  },
};
