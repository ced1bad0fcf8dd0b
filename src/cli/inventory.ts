// `vfioctl list` and `vfioctl show DEVICE`: read-only inventory with the resolved VFIO driver.
import { parseAddress } from '../host/address';
import { EXIT } from '../util/diag';
import { inventory, show } from '../ops/inventory';
import { type Context, printWarnings, trust } from './context';
import type { DeviceView } from '../report/device-view';
import { nameOf, roleOf, table } from './render';

export async function listCommand(ctx: Context, opts: { json?: boolean }): Promise<number> {
  // Read-only: a half-done device is named among the warnings; 'vfioctl recover' repairs it.
  const inv = inventory(ctx.host);
  printWarnings(ctx, inv.warnings);
  if (opts.json) {
    writeJsonArray(ctx, inv.devices);
    return EXIT.OK;
  }
  const views = [...inv.devices];
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
  ctx.io.out(
    table(['ADDRESS', 'NAME', 'CLASS', 'DRIVER', 'VFIO', 'GROUP', 'SR-IOV', 'IN-USE'], rows),
  );
  return EXIT.OK;
}

/**
 * Exactly `JSON.stringify(items.map(view), null, 2)`, written in batches of 48 devices (about
 * 60 KiB): the views and one multi-megabyte string are never all in memory at once, and one
 * stringify per batch instead of per device spares thousands of intermediate strings.
 */
export function writeJsonArray(ctx: Context, views: Iterable<DeviceView>): void {
  let batch: DeviceView[] = [];
  let first = true;
  // A batch stringified is `[\n  {...},\n  {...}\n]`: the first is written without its `\n]`,
  // each later one after a `,` and without its `[` and `\n]`. Slices of the one string, written
  // as they are: a `,` joined onto one would make V8 copy the whole batch into a flat string.
  const flush = () => {
    const s = JSON.stringify(batch, null, 2);
    if (!first) ctx.io.out(',');
    ctx.io.out(s.slice(first ? 0 : 1, -2));
    first = false;
    batch = [];
  };
  for (const v of views) if (batch.push(v) === 48) flush();
  if (batch.length > 0) flush();
  ctx.io.out(first ? '[]\n' : '\n]\n');
}

function marks(v: DeviceView): string {
  const m: string[] = [];
  if (v.inUse.length > 0)
    m.push(`host: ${[...v.netdevs, ...v.blockdevs].join(',') || (v.bootVga ? 'boot-vga' : 'yes')}`);
  if (v.onVfio) m.push(`vfio:${v.vfioDev ?? v.driver}`);
  // Open by a VFIO user (a VM is using it), not merely bound: one mark per process.
  for (const p of new Map(v.vfioUsers.map((u) => [u.pid, u.comm]))) m.push(`held:${p[0]}(${p[1]})`);
  return m.join(' ') || '-';
}

export async function showCommand(
  ctx: Context,
  device: string,
  opts: { json?: boolean },
): Promise<number> {
  const address = parseAddress(device);
  trust(ctx);
  const { device: v, warnings } = show(ctx.host, address);
  printWarnings(ctx, warnings);
  if (opts.json) {
    ctx.io.out(JSON.stringify(v, null, 2) + '\n');
    return EXIT.OK;
  }
  const kv: [string, string][] = [
    ['address', v.address],
    ['name', nameOf(v)],
    [
      'ids',
      `${v.vendor}:${v.device} subsystem ${v.subsystemVendor ?? '?'}:${v.subsystemDevice ?? '?'} rev ${v.revision ?? '?'}`,
    ],
    ['class', `${v.class}${v.className ? ` (${v.className})` : ''}`],
    ['modalias', v.modalias ?? '-'],
    ['header type', String(v.headerType ?? '?')],
    ['driver', v.driver ?? '(none)'],
    ['driver_override', v.driverOverride ?? '(null)'],
    [
      'iommu group',
      v.iommuGroup
        ? `${v.iommuGroup}${v.iommuGroupPeers.length ? ` (with ${v.iommuGroupPeers.join(', ')})` : ' (alone)'}`
        : '(none)',
    ],
    ['numa node', String(v.numaNode ?? '-')],
    ['reset methods', v.resetMethods?.join(' ') || '-'],
    ['sr-iov', roleOf(v) + (v.sriov?.vfs.length ? ` [${v.sriov.vfs.join(', ')}]` : '')],
    ['on vfio', v.onVfio ? `yes (${v.vfioDev ?? v.driver})` : 'no'],
    [
      'held by',
      v.vfioUsers.map((u) => `pid ${u.pid} (${u.comm}) through ${u.node}`).join(', ') ||
        (v.onVfio ? 'nobody (no process has its VFIO group or cdev open)' : '-'),
    ],
    ['interfaces', v.netdevs.join(', ') || '-'],
    ['block devices', v.blockdevs.join(', ') || '-'],
    ['boot vga', v.bootVga ? 'yes' : 'no'],
    ['host use', v.inUse.join('; ') || 'none'],
    [
      'hooks',
      (v.hooks ?? [])
        .map((h) => `${h.path}${h.problem ? ` (WILL NOT RUN: ${h.problem})` : ''}`)
        .join(', ') || '-',
    ],
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
