// `vfioctl bind`, `unbind` and `recover`: read -> plan (pure) -> apply (journaled, verified).
import { parseAddress } from '../host/address';
import { readSnapshot } from '../host/snapshot';
import { execute, type DeviceResult } from '../apply/executor';
import { Journal } from '../apply/journal';
import { describeHolder, lockHeld } from '../apply/lock';
import type { Recovery, RecoveryReport } from '../apply/recover';
import { writeSession, type WriteSession } from '../apply/session';
import { planBind, planUnbind } from '../plan/planner';
import { validateDriverName } from '../plan/target';
import { describeStep, type DevicePlan, type Plan } from '../plan/types';
import { EXIT } from '../util/diag';
import { type Context, kernelIoOf, printWarnings, refuseForeignKernelWrite } from './context';
import { parseOwner } from './owner';
import { relaxedTrustWarning, trustPolicy, type TrustPolicy } from '../util/trust';
import { CORRUPT_JOURNAL_ACTION } from '../apply/journal';
import { describeCorrupt } from '../persist/validate';

export interface BindOptions {
  driver?: string;
  dryRun?: boolean;
  force?: boolean;
  group?: boolean;
  json?: boolean;
  owner?: string;
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

/**
 * The lock, repair of a killed run, signals: what every writing command runs inside. A command a
 * signal reached exits non-zero even when the step in flight was its last.
 */
export function withWriteSession(ctx: Context, work: (s: WriteSession) => Promise<number>): Promise<number> {
  return writeSession(
    ctx.root,
    {
      kernelIo: kernelIoOf(ctx),
      waitMs: ctx.waitMs,
      onWait: (h) => ctx.io.err(`vfioctl: waiting for the lock held by ${describeHolder(h)} (up to ${ctx.waitMs / 1000} s; --wait SECONDS)\n`),
      onSignal: (sig) => ctx.io.err(`vfioctl: ${sig}: finishing the step in flight, then rolling back and stopping\n`),
    },
    async (s) => {
      reportRecovery(ctx, s.recovery);
      const code = await work(s);
      return s.interrupted() !== null && code === EXIT.OK ? EXIT.FAILED : code;
    },
  );
}

/** Options for execute() within a session. */
export function execOptions(ctx: Context, s: WriteSession) {
  return { root: ctx.root, io: s.io, beforeStep: ctx.io.beforeStep, hookTimeoutMs: hookTimeout(ctx), env: ctx.io.env, interrupted: s.interrupted };
}

/** Pending journal entries, for commands that do not repair (dry runs, list, show). */
export function warnPending(ctx: Context): void {
  const { entries, corrupt } = new Journal(ctx.root).pending();
  if (entries.length === 0 && corrupt.length === 0) return;
  // Entries of a live run that holds the lock are its work in progress, not damage.
  if (corrupt.length === 0 && lockHeld(ctx.root)) return;
  for (const e of entries) ctx.io.err(`vfioctl: warning: ${e.address} was left half-done by an interrupted ${e.kind} (at ${e.op}); 'vfioctl recover' (or any writing command) repairs it\n`);
  for (const c of corrupt) ctx.io.err(`vfioctl: warning: unreadable journal entry ${describeCorrupt(c, CORRUPT_JOURNAL_ACTION)}\n`);
}

export function reportRecovery(ctx: Context, r: RecoveryReport): void {
  printRecovered(ctx, r.recovered);
  for (const u of r.unreadable) ctx.io.err(`vfioctl: warning: unreadable journal entry ${u}\n`);
}

/** The same device twice on one command line is one device. */
export function uniqueAddresses(devices: readonly string[]): string[] {
  return [...new Set(devices.map(parseAddress))];
}

async function runPlan(ctx: Context, kind: Plan['kind'], addresses: string[], makePlan: (snap: ReturnType<typeof readSnapshot>) => Plan, opts: { dryRun?: boolean; json?: boolean }, held?: WriteSession): Promise<number> {
  const root = ctx.root;
  refuseForeignKernelWrite(ctx, opts.dryRun);
  if (opts.dryRun) {
    const snap = readSnapshot(root, { kernel: ctx.kernel, only: addresses, forWrite: true, trust: trust(ctx) });
    printWarnings(ctx, snap.warnings);
    warnPending(ctx);
    const plan = makePlan(snap);
    const results = planResults(plan);
    if (opts.json) ctx.io.out(JSON.stringify({ command: kind, dryRun: true, results }, null, 2) + '\n');
    else render(ctx, kind, plan, results, true, []);
    return exitCodeOf(results.map((r) => r.status));
  }
  const policy = trust(ctx);
  const work = async (s: WriteSession) => {
    const snap = readSnapshot(root, { kernel: ctx.kernel, only: addresses, forWrite: true, trust: policy });
    printWarnings(ctx, snap.warnings);
    const plan = makePlan(snap);
    const results = await execute(plan, execOptions(ctx, s));
    if (opts.json) ctx.io.out(JSON.stringify({ command: kind, dryRun: false, recovered: s.recovery.recovered, unreadableJournal: s.recovery.unreadable, results }, null, 2) + '\n');
    else render(ctx, kind, plan, results, false, []);
    return exitCodeOf(results.map((r) => r.status));
  };
  return held ? work(held) : withWriteSession(ctx, work);
}

export function bindCommand(ctx: Context, devices: string[], opts: BindOptions): Promise<number> {
  const addresses = uniqueAddresses(devices);
  const driver = validateDriverName(opts.driver ?? 'vfio');
  const owner = opts.owner !== undefined ? parseOwner(ctx.root, opts.owner) : undefined;
  return runPlan(ctx, 'bind', addresses, (snap) => planBind(snap, { kind: 'bind', addresses, driver, force: !!opts.force, group: !!opts.group, ...(owner ? { owner } : {}) }), opts);
}

export function unbindCommand(ctx: Context, devices: string[], opts: { dryRun?: boolean; json?: boolean }, held?: WriteSession): Promise<number> {
  const addresses = uniqueAddresses(devices);
  return runPlan(ctx, 'unbind', addresses, (snap) => planUnbind(snap, { kind: 'unbind', addresses }), opts, held);
}

export async function recoverCommand(ctx: Context, opts: { json?: boolean }): Promise<number> {
  // recover reports what it repaired itself, not through the session's notes.
  const rep = await writeSession(ctx.root, { kernelIo: kernelIoOf(ctx), waitMs: ctx.waitMs }, async (s) => s.recovery);
  const rec = rep.recovered;
  if (opts.json) ctx.io.out(JSON.stringify({ recovered: rec, unreadableJournal: rep.unreadable }, null, 2) + '\n');
  else {
    if (rec.length === 0 && rep.unreadable.length === 0) ctx.io.out('nothing to recover\n');
    for (const r of rec) ctx.io.out(`${r.address}: interrupted ${r.kind} at ${r.interruptedAt}; now on ${r.driver ?? 'no driver'}${r.error ? ` (${r.error})` : ''}\n`);
    for (const u of rep.unreadable) ctx.io.out(`UNREADABLE journal entry ${u}\n`);
  }
  return rec.some((r) => r.error) || rep.unreadable.length > 0 ? EXIT.FAILED : EXIT.OK;
}
