// `vfioctl bind`, `unbind` and `recover`: read -> plan (pure) -> apply (journaled, verified).
import { parseAddress } from '../host/address';
import { readSnapshot } from '../host/snapshot';
import { execute, type DeviceResult, type ExecOptions } from '../apply/executor';
import { acquireLock, Journal } from '../apply/journal';
import { SysfsKernelIo, type KernelIo } from '../apply/kernel-io';
import { recoverPending, type Recovery } from '../apply/recover';
import { planBind, planUnbind } from '../plan/planner';
import { validateDriverName } from '../plan/target';
import { describeStep, type DevicePlan, type Plan } from '../plan/types';
import { EXIT } from '../util/diag';
import { type Context, printWarnings } from './context';
import { parseOwner } from './owner';
import { relaxedTrustWarning, trustPolicy, type TrustPolicy } from '../util/trust';

export interface BindOptions {
  driver?: string;
  dryRun?: boolean;
  force?: boolean;
  group?: boolean;
  json?: boolean;
  owner?: string;
}

/** Test seam: the kernel model replaces the real sysfs writer; kills are injected per step op. */
export interface ApplyEnv {
  kernelIo?: KernelIo;
  beforeStep?: ExecOptions['beforeStep'];
}

let applyEnv: ApplyEnv = {};
export function setApplyEnv(e: ApplyEnv): void {
  applyEnv = e;
}

export function kernelIo(ctx: Context): KernelIo {
  return applyEnv.kernelIo ?? new SysfsKernelIo(ctx.root);
}

export function beforeStep(ctx: Context): ExecOptions['beforeStep'] {
  if (applyEnv.beforeStep) return applyEnv.beforeStep;
  // For the real-kernel suite: die at a chosen step, as a crash or kill -9 would.
  const killAt = ctx.io.env.VFIOCTL_TEST_KILL_AT;
  if (!killAt) return undefined;
  return (_p, s) => {
    if (s.op === killAt) process.kill(process.pid, 'SIGKILL');
  };
}

/** The trust policy for hooks and configuration; a relaxed one is announced every time. */
export function trust(ctx: Context): TrustPolicy {
  const p = trustPolicy(ctx.io.env);
  const w = relaxedTrustWarning(p);
  if (w) ctx.io.err(`vfioctl: warning: ${w}\n`);
  return p;
}

export function hookTimeout(ctx: Context): number {
  const s = Number(ctx.io.env.VFIOCTL_HOOK_TIMEOUT);
  return Number.isFinite(s) && s > 0 ? s * 1000 : 30_000;
}

export function exitCodeOf(statuses: readonly string[]): number {
  if (statuses.includes('invalid')) return EXIT.BAD_INPUT;
  if (statuses.includes('refused')) return EXIT.REFUSED;
  if (statuses.includes('failed')) return EXIT.FAILED;
  return EXIT.OK;
}

export function planResults(plan: Plan): DeviceResult[] {
  return plan.devices.map((d) => ({
    address: d.address,
    status: d.status,
    driver: d.from.driver,
    target: d.target?.driver ?? null,
    steps: d.steps.map((s) => ({ op: s.op, description: describeStep(s), done: false })),
    refusals: d.refusals,
    warnings: [...d.warnings],
    error: d.refusals.map((r) => r.message).join('; ') || null,
  }));
}

export function printRecovered(ctx: Context, recovered: readonly Recovery[]): void {
  for (const r of recovered) {
    ctx.io.err(`vfioctl: recovered ${r.address} from an interrupted ${r.kind} (${r.interruptedAt}): now on ${r.driver ?? 'no driver'}${r.error ? `; ${r.error}` : ''}\n`);
  }
}

/** What happened (or would happen) to one device, in one line. */
function headline(kind: Plan['kind'], d: DevicePlan, r: DeviceResult, dryRun: boolean): string {
  const mod = d.target?.module && d.target.module !== d.target.driver ? ` (module ${d.target.module})` : '';
  const was = d.from.driver ?? 'no driver';
  switch (r.status) {
    case 'planned':
      if (kind === 'sriov') return `would ${d.steps.map((s) => (s.op === 'sriov-numvfs' ? `set ${s.numVfs} VFs (now ${s.from})` : 'stop autoprobing new VFs')).join(', ')}`;
      if (kind === 'unbind') return `would return to ${d.target?.driver ?? 'its host driver'}, now on ${was}`;
      return d.target?.driver ? `would bind to ${d.target.driver}${mod}, now on ${was}` : `would leave it without a driver (driver_override=none), now on ${was}`;
    case 'ok':
      if (kind === 'sriov') return `SR-IOV set (${d.steps.map((s) => (s.op === 'sriov-numvfs' ? `${s.numVfs} VFs` : 'autoprobe off')).join(', ')})`;
      if (kind === 'unbind') return `returned to ${r.driver ?? 'no driver'} (was ${was})`;
      return d.target?.driver ? `bound to ${r.driver}${mod} (was ${was})` : `no driver now (driver_override=none; was ${was})`;
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

export function render(ctx: Context, kind: Plan['kind'], plan: Plan, results: DeviceResult[], dryRun: boolean, recovered: readonly Recovery[]): void {
  printRecovered(ctx, recovered);
  const byAddr = new Map(plan.devices.map((d) => [d.address, d]));
  for (const r of results) {
    const head = headline(kind, byAddr.get(r.address) as DevicePlan, r, dryRun);
    ctx.io.out(`${r.address}: ${head}\n`);
    for (const f of r.refusals) ctx.io.out(`  - ${f.check}: ${f.message}\n`);
    if (r.status === 'planned') r.steps.forEach((s, i) => ctx.io.out(`  ${i + 1}. ${s.description}\n`));
    for (const w of r.status === 'noop' ? r.warnings.slice(1) : r.warnings) ctx.io.out(`  warning: ${w}\n`);
  }
}

async function runPlan(ctx: Context, kind: Plan['kind'], addresses: string[], makePlan: (snap: ReturnType<typeof readSnapshot>) => Plan, opts: { dryRun?: boolean; json?: boolean }): Promise<number> {
  const root = ctx.root;
  if (opts.dryRun) {
    const pending = new Journal(root).pending();
    const snap = readSnapshot(root, { kernel: ctx.kernel, only: addresses, forWrite: true, trust: trust(ctx) });
    printWarnings(ctx, snap.warnings);
    for (const e of pending) ctx.io.err(`vfioctl: warning: ${e.address} was left half-done by an interrupted ${e.kind}; a real run (or 'vfioctl recover') repairs it first\n`);
    const plan = makePlan(snap);
    const results = planResults(plan);
    if (opts.json) ctx.io.out(JSON.stringify({ command: kind, dryRun: true, results }, null, 2) + '\n');
    else render(ctx, kind, plan, results, true, []);
    return exitCodeOf(results.map((r) => r.status));
  }
  const release = await acquireLock(root);
  try {
    const io = kernelIo(ctx);
    const recovered = await recoverPending(root, io);
    const snap = readSnapshot(root, { kernel: ctx.kernel, only: addresses, forWrite: true, trust: trust(ctx) });
    printWarnings(ctx, snap.warnings);
    const plan = makePlan(snap);
    const results = await execute(plan, { root, io, beforeStep: beforeStep(ctx), hookTimeoutMs: hookTimeout(ctx), env: ctx.io.env });
    if (opts.json) ctx.io.out(JSON.stringify({ command: kind, dryRun: false, recovered, results }, null, 2) + '\n');
    else render(ctx, kind, plan, results, false, recovered);
    return exitCodeOf(results.map((r) => r.status));
  } finally {
    // (A SimulatedKill in tests also passes through here: the journal stays, as after a real kill.)
    release();
  }
}

export function bindCommand(ctx: Context, devices: string[], opts: BindOptions): Promise<number> {
  const addresses = devices.map(parseAddress);
  const driver = validateDriverName(opts.driver ?? 'vfio');
  const owner = opts.owner !== undefined ? parseOwner(ctx.root, opts.owner) : undefined;
  return runPlan(ctx, 'bind', addresses, (snap) => planBind(snap, { kind: 'bind', addresses, driver, force: !!opts.force, group: !!opts.group, ...(owner ? { owner } : {}) }), opts);
}

export function unbindCommand(ctx: Context, devices: string[], opts: { dryRun?: boolean; json?: boolean }): Promise<number> {
  const addresses = devices.map(parseAddress);
  return runPlan(ctx, 'unbind', addresses, (snap) => planUnbind(snap, { kind: 'unbind', addresses }), opts);
}

/**
 * Read-only commands stay read-only on a healthy host; but a device left driverless by a killed
 * vfioctl is repaired by whichever invocation comes next (if it may write; else it says so).
 */
export async function repairIfPending(ctx: Context): Promise<void> {
  if (new Journal(ctx.root).pending().length === 0) return;
  try {
    const release = await acquireLock(ctx.root, 5_000);
    try {
      for (const r of await recoverPending(ctx.root, kernelIo(ctx))) {
        ctx.io.err(`vfioctl: recovered ${r.address} from an interrupted ${r.kind} (${r.interruptedAt}): now on ${r.driver ?? 'no driver'}${r.error ? `; ${r.error}` : ''}\n`);
      }
    } finally {
      release();
    }
  } catch (e) {
    ctx.io.err(`vfioctl: warning: a device was left half-done by an interrupted vfioctl and could not be repaired now (${(e as Error).message}); run 'vfioctl recover' as root\n`);
  }
}

export async function recoverCommand(ctx: Context, opts: { json?: boolean }): Promise<number> {
  const release = await acquireLock(ctx.root);
  try {
    const rec = await recoverPending(ctx.root, kernelIo(ctx));
    if (opts.json) ctx.io.out(JSON.stringify({ recovered: rec }, null, 2) + '\n');
    else if (rec.length === 0) ctx.io.out('nothing to recover\n');
    else for (const r of rec) ctx.io.out(`${r.address}: interrupted ${r.kind} at ${r.interruptedAt}; now on ${r.driver ?? 'no driver'}${r.error ? ` (${r.error})` : ''}\n`);
    return rec.some((r) => r.error) ? EXIT.FAILED : EXIT.OK;
  } finally {
    release();
  }
}
