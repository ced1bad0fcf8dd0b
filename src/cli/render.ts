// How bind, unbind and apply results read on a terminal: one headline per device, its refusals,
// the planned steps of a dry run, and its warnings.
import type { DeviceResult } from '../ops/host';
import type { Selection } from '../ops/select';
import { convergeExitCode, type ConvergeReport } from '../ops/converge';
import type { DevicePlan, Plan } from '../plan/types';
import type { DeviceView } from '../report/device-view';
import { type Context, printWarnings } from './context';

/** What happened (or would happen) to one device, in one line. */
function headline(kind: Plan['kind'], d: DevicePlan, r: DeviceResult, dryRun: boolean): string {
  const mod =
    d.target?.module && d.target.module !== d.target.driver ? ` (module ${d.target.module})` : '';
  const was = d.from.driver ?? 'no driver';
  switch (r.status) {
    case 'planned':
      if (kind === 'sriov')
        return `would ${d.steps.map((s) => (s.op === 'sriov-numvfs' ? `set ${s.numVfs} VFs (now ${s.from})` : 'stop autoprobing new VFs')).join(', ')}`;
      if (kind === 'unbind')
        return `would return to ${d.target?.driver ?? 'its host driver'}, now on ${was}`;
      return d.target?.driver
        ? `would bind to ${d.target.driver}${mod}, now on ${was}`
        : `would leave it without a driver (driver_override=none), now on ${was}`;
    case 'ok':
      if (kind === 'sriov')
        return `SR-IOV set (${d.steps.map((s) => (s.op === 'sriov-numvfs' ? `${s.numVfs} VFs` : 'autoprobe off')).join(', ')})`;
      if (kind === 'unbind') return `returned to ${r.driver ?? 'no driver'} (was ${was})`;
      return d.target?.driver
        ? `bound to ${r.driver}${mod} (was ${was})`
        : `no driver now (driver_override=none; was ${was})`;
    case 'noop':
      return `nothing to do (${r.warnings[0] ?? 'already there'})`;
    case 'refused':
      return `REFUSED${dryRun ? ' (would be)' : ''}`;
    case 'invalid':
      return 'INVALID';
    default:
      return `FAILED: ${r.error}`;
  }
}

export function renderResults(
  ctx: Context,
  kind: Plan['kind'],
  plan: Plan,
  results: readonly DeviceResult[],
  dryRun: boolean,
): void {
  const byAddr = new Map(plan.devices.map((d) => [d.address, d]));
  // Written in pieces of about 64 KiB: one write per line is thousands of writes for a fleet of
  // VFs.
  let text = '';
  const out = (s: string) => {
    text += s;
    if (text.length >= 65536) ctx.io.out(text), (text = '');
  };
  for (const r of results) {
    out(`${r.address}: ${headline(kind, byAddr.get(r.address) as DevicePlan, r, dryRun)}\n`);
    for (const f of r.refusals) out(`  - ${f.check}: ${f.message}\n`);
    if (r.status === 'planned') r.steps.forEach((s, i) => out(`  ${i + 1}. ${s.description}\n`));
    // driverctl's -v/--debug: what was done, step by step, on stderr (as driverctl's debug lines).
    else if (ctx.flags.debug)
      for (const s of r.steps)
        ctx.io.err(
          `vfioctl: ${r.address}: ${s.done ? '' : 'FAILED: '}${s.description}${s.error ? `: ${s.error}` : ''}\n`,
        );
    for (const w of r.status === 'noop' ? r.warnings.slice(1) : r.warnings)
      out(`  warning: ${w}\n`);
  }
  if (text) ctx.io.out(text);
}

/** An apply: what happened per phase, what boot skipped; the exit code. */
export function renderConverge(ctx: Context, r: ConvergeReport, json: boolean | undefined): number {
  for (const a of r.notFound)
    ctx.io.err(
      `vfioctl: no PCI device ${a} (not in ${ctx.root.path('/sys/bus/pci/devices')}; see 'vfioctl list')\n`,
    );
  for (const a of r.notConfigured)
    ctx.io.err(
      `vfioctl: ${a}: not configured; nothing to apply ('vfioctl set ${a} vfio' configures it)\n`,
    );
  if (json) {
    writeJsonStreaming(
      ctx,
      {
        command: 'apply',
        dryRun: r.dryRun,
        boot: r.boot,
        guardBootDevices: r.guardBootDevices,
        recovered: r.recovered,
        results: r.results,
        skipped: r.skipped,
        warnings: r.warnings,
      },
      'results',
    );
  } else {
    printWarnings(ctx, r.warnings); // (what was recovered was reported when the session began)
    for (const p of r.phases) renderResults(ctx, p.kind, p.plan, p.results, r.dryRun);
    for (const s of r.skipped) ctx.io.out(`${s.address}: SKIPPED at boot: ${s.reason}\n`);
    if (r.phases.length === 0 && r.skipped.length === 0)
      ctx.io.out('nothing configured to apply\n');
  }
  return convergeExitCode(r);
}

/**
 * Lines saying what interface names and selectors chose (only when something other than an address
 * was given).
 */
export function selectionLines(sel: Selection): string[] {
  return sel.selected
    .filter((x) => x.by !== x.addresses[0] || x.addresses.length !== 1)
    .map((x) => `${x.by} selects ${x.addresses.join(', ') || 'nothing'}`);
}

/** Plain column table: no colours, no truncation of addresses or driver names. */
export function table(headers: string[], rows: string[][]): string {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const fmt = (r: string[]) =>
    r
      .map((c, i) => (i === r.length - 1 ? c : c.padEnd(w[i]!)))
      .join('  ')
      .trimEnd();
  return [fmt(headers), ...rows.map(fmt)].join('\n') + '\n';
}

export function roleOf(v: DeviceView): string {
  if (v.physfn) return `VF of ${v.physfn}`;
  if (v.sriov) return `PF ${v.sriov.numVfs}/${v.sriov.totalVfs} VFs`;
  return '-';
}

export function nameOf(v: DeviceView): string {
  const n = [v.vendorName, v.deviceName].filter(Boolean).join(' ');
  return n || `[${v.vendor}:${v.device}]`;
}

/**
 * Exactly `JSON.stringify(value, null, 2) + '\n'`, with the array `value[key]` written element by
 * element in pieces of about 64 KiB: with thousands of devices, one multi-megabyte string (and
 * the stringifier's own copies of it) set the command's peak memory.
 */
export function writeJsonStreaming<T extends object>(
  ctx: Context,
  value: T,
  key: keyof T & string,
): void {
  const items = value[key];
  if (!Array.isArray(items) || items.length === 0) {
    ctx.io.out(JSON.stringify(value, null, 2) + '\n');
    return;
  }
  // The object with an empty array where the elements go; the placeholder cannot occur in JSON
  // text.
  const mark = '\u0000items\u0000';
  const text = JSON.stringify({ ...value, [key]: mark }, null, 2);
  const at = text.indexOf(JSON.stringify(mark));
  // An element as stringify lays it out inside a key's array (indented four spaces).
  const inner = (x: unknown) =>
    JSON.stringify({ k: [x] }, null, 2).slice('{\n  "k": [\n'.length, -'\n  ]\n}'.length);
  let chunk = text.slice(0, at) + '[\n';
  for (let i = 0; i < items.length; i++) {
    chunk += (i > 0 ? ',\n' : '') + inner(items[i]);
    if (chunk.length >= 65536) {
      ctx.io.out(chunk);
      chunk = '';
    }
  }
  ctx.io.out(chunk + '\n  ]' + text.slice(at + JSON.stringify(mark).length) + '\n');
}
