// `vfioctl list` and `vfioctl show DEVICE`: read-only inventory with the resolved VFIO driver.
import { parseAddress } from '../host/address';
import { loadPciNames } from '../host/pciids';
import { readSnapshot, type Snapshot } from '../host/snapshot';
import { loadConfig } from '../config/load';
import { desiredState } from '../config/desired';
import { CONFIG_FILE } from '../config/types';
import { ruleHook, type Hook } from '../hooks/discover';
import type { TrustPolicy } from '../util/trust';
import { EXIT, VfioctlError } from '../util/diag';
import { type Context, printWarnings, trust, warnPending } from './context';
import { deviceView, nameOf, roleOf, table, type DeviceView } from '../report/device-view';

export async function listCommand(ctx: Context, opts: { json?: boolean }): Promise<number> {
  warnPending(ctx); // read-only: a half-done device is named, and repaired by 'vfioctl recover'
  const snap = readSnapshot(ctx.root, { kernel: ctx.kernel });
  const names = loadPciNames(ctx.root, new Set([...snap.devices.values()].map((d) => d.vendor)));
  if (opts.json) {
    printWarnings(ctx, snap.warnings);
    writeJsonArray(ctx, snap.devices.values(), (d) => deviceView(d, snap, names, false));
    return EXIT.OK;
  }
  const views = [...snap.devices.values()].map((d) => deviceView(d, snap, names, false));
  printWarnings(ctx, snap.warnings);
  const rows = views.map((v) => [
    v.address,
    nameOf(v),
    v.className ?? v.class,
    v.driver ?? '-',
    v.vfio ? v.vfio.driver : '-',
    v.iommuGroup ?? '-',
    roleOf(v),
    marks(v),
  ]);
  ctx.io.out(table(['ADDRESS', 'NAME', 'CLASS', 'DRIVER', 'VFIO', 'GROUP', 'SR-IOV', 'IN-USE'], rows));
  return EXIT.OK;
}

/**
 * Exactly `JSON.stringify(items.map(view), null, 2)`, written in pieces of about 64 KiB: the
 * views and one multi-megabyte string are never all in memory at once.
 */
function writeJsonArray<T>(ctx: Context, items: Iterable<T>, view: (x: T) => DeviceView): void {
  let chunk = '';
  let first = true;
  for (const x of items) {
    // Laid out as an array element (one level deeper): `[\n  {...}\n]` without its brackets.
    const one = JSON.stringify([view(x)], null, 2);
    chunk += (first ? '[\n' : ',\n') + one.slice(2, -2);
    first = false;
    if (chunk.length >= 65536) {
      ctx.io.out(chunk);
      chunk = '';
    }
  }
  ctx.io.out(first ? '[]\n' : chunk + '\n]\n');
}

/** The per-rule hooks of the rule governing this device; a broken configuration only warns here. */
function configuredHooks(ctx: Context, snap: Snapshot, address: string, policy: TrustPolicy): Hook[] {
  if (!ctx.root.exists(CONFIG_FILE)) return [];
  try {
    const d = desiredState(loadConfig(ctx.root, policy), snap.devices).desires.get(address);
    return (d?.rule.hooks ?? []).map((p) => ruleHook(ctx.root, p, policy));
  } catch (e) {
    if (!(e instanceof VfioctlError)) throw e;
    ctx.io.err(`vfioctl: warning: per-rule hooks not shown: ${e.message}\n`);
    return [];
  }
}

function marks(v: DeviceView): string {
  const m: string[] = [];
  if (v.inUse.length > 0) m.push(`host: ${[...v.netdevs, ...v.blockdevs].join(',') || (v.bootVga ? 'boot-vga' : 'yes')}`);
  if (v.onVfio) m.push(`vfio:${v.vfioDev ?? v.driver}`);
  return m.join(' ') || '-';
}

export async function showCommand(ctx: Context, device: string, opts: { json?: boolean }): Promise<number> {
  const address = parseAddress(device);
  warnPending(ctx);
  const policy = trust(ctx);
  const snap = readSnapshot(ctx.root, { kernel: ctx.kernel, only: [address], shallow: true, trust: policy });
  const d = snap.devices.get(address);
  if (!d) {
    throw new VfioctlError(`no PCI device ${address} (not in ${ctx.root.path('/sys/bus/pci/devices')}; see 'vfioctl list')`, EXIT.BAD_INPUT);
  }
  const names = loadPciNames(ctx.root, [d.vendor]);
  const v = deviceView(d, snap, names, true);
  v.hooks = [...snap.hooks, ...configuredHooks(ctx, snap, address, policy)].map((h) => ({ path: h.path, source: h.source, problem: h.problem }));
  printWarnings(ctx, snap.warnings);
  if (opts.json) {
    ctx.io.out(JSON.stringify(v, null, 2) + '\n');
    return EXIT.OK;
  }
  const kv: [string, string][] = [
    ['address', v.address],
    ['name', nameOf(v)],
    ['ids', `${v.vendor}:${v.device} subsystem ${v.subsystemVendor ?? '?'}:${v.subsystemDevice ?? '?'} rev ${v.revision ?? '?'}`],
    ['class', `${v.class}${v.className ? ` (${v.className})` : ''}`],
    ['modalias', v.modalias ?? '-'],
    ['header type', String(v.headerType ?? '?')],
    ['driver', v.driver ?? '(none)'],
    ['driver_override', v.driverOverride ?? '(null)'],
    ['iommu group', v.iommuGroup ? `${v.iommuGroup}${v.iommuGroupPeers.length ? ` (with ${v.iommuGroupPeers.join(', ')})` : ' (alone)'}` : '(none)'],
    ['numa node', String(v.numaNode ?? '-')],
    ['reset methods', v.resetMethods?.join(' ') || '-'],
    ['sr-iov', roleOf(v) + (v.sriov?.vfs.length ? ` [${v.sriov.vfs.join(', ')}]` : '')],
    ['on vfio', v.onVfio ? `yes (${v.vfioDev ?? v.driver})` : 'no'],
    ['interfaces', v.netdevs.join(', ') || '-'],
    ['block devices', v.blockdevs.join(', ') || '-'],
    ['boot vga', v.bootVga ? 'yes' : 'no'],
    ['host use', v.inUse.join('; ') || 'none'],
    ['hooks', v.hooks.map((h) => `${h.path}${h.problem ? ` (WILL NOT RUN: ${h.problem})` : ''}`).join(', ') || '-'],
    ['best vfio', v.vfio ? `${v.vfio.driver} (module ${v.vfio.module})` : `none: ${v.vfioReason}`],
  ];
  const w = Math.max(...kv.map(([k]) => k.length));
  ctx.io.out(kv.map(([k, val]) => `${k.padEnd(w)}  ${val}`).join('\n') + '\n');
  if (v.candidates && v.candidates.length > 0) {
    ctx.io.out('\ncandidates (best first):\n');
    ctx.io.out(
      table(
        ['MODULE', 'DRIVER', 'WILDCARDS', 'USABLE', 'ALIAS / REASON'],
        v.candidates.map((c) => [
          c.module,
          c.driver,
          String(c.wildcards),
          c.usable ? 'yes' : 'no',
          c.usable ? c.alias + (c.notes.length ? ` (${c.notes.join('; ')})` : '') : `${c.reason}`,
        ]),
      ),
    );
  }
  for (const line of v.explanation ?? []) ctx.io.out(`why: ${line}\n`);
  return EXIT.OK;
}
