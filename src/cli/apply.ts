// `vfioctl apply`: converge the live system to the configuration, idempotently. Same journal,
// lock, rollback and exit codes as `bind`; a broken configuration is bad input (exit 2) and
// nothing is applied from it. `--boot` is the late boot unit's mode.
import { readSnapshot, type Snapshot } from '../host/snapshot';
import { readBootDevices, type BootDevices } from '../host/boot-devices';
import { BOOT_DIR, parseBootMap } from '../boot/map';
import { isPciAddress, printable } from '../host/address';
import { isDriverName } from '../persist/validate';
import { execute, type DeviceResult } from '../apply/executor';
import type { Recovery } from '../apply/recover';
import type { WriteSession } from '../apply/session';
import { desiredState, type Desire, type DesiredState } from '../config/desired';
import { isBroad, type Config } from '../config/types';
import { ruleHook, type Hook } from '../hooks/discover';
import { planBindPhase, planSriovPhase, ruleLabel, type Skipped } from '../plan/converge';
import { resolveIntent } from '../plan/target';
import type { Plan } from '../plan/types';
import { readState, readStateChecked, writeBootState, writeState, type AppliedDevice, type BootState } from '../persist/state';
import { type Context, printWarnings, refuseForeignKernelWrite } from './context';
import { execOptions, exitCodeOf, planResults, render, trust, uniqueAddresses, warnPending, withWriteSession } from './bind';
import type { TrustPolicy } from '../util/trust';
import { configFor } from './config-check';

export interface ApplyOptions {
  dryRun?: boolean;
  json?: boolean;
  /** The late boot unit: boot devices from fstab/crypttab/root= are refused, broad rules need an acknowledgement. */
  boot?: boolean;
  /** --config FILE: converge to FILE instead of /etc/vfioctl/vfioctl.json. */
  config?: string;
}

interface PhaseResult {
  readonly kind: Plan['kind'];
  readonly plan: Plan;
  readonly results: DeviceResult[];
}

function ruleHooks(ctx: Context, desired: DesiredState, policy: TrustPolicy): Map<string, Hook[]> {
  const out = new Map<string, Hook[]>();
  for (const d of desired.desires.values()) if (d.rule.hooks.length) out.set(d.address, d.rule.hooks.map((p) => ruleHook(ctx.root, p, policy)));
  return out;
}

function resolvedDriver(snap: Snapshot, d: Desire): { driver: string | null; module: string | null } {
  if (d.intent === null || d.intent === 'none') return { driver: null, module: null };
  const dev = snap.devices.get(d.address);
  if (!dev) return { driver: null, module: null };
  const t = resolveIntent(dev, snap, d.intent).target;
  return { driver: t?.driver ?? null, module: t?.module ?? null };
}

/**
 * At boot: the devices the host boots from, plus those the boot map recorded as in use when it
 * was made (networking may not have configured them yet when the late unit runs).
 */
function bootProtected(ctx: Context): BootDevices {
  const b = readBootDevices(ctx.root);
  const devices = new Map(b.devices);
  const release = ctx.root.kernelRelease(ctx.kernel);
  const map = release ? ctx.root.readFile(`${BOOT_DIR}/${release}.map`) : undefined;
  for (const s of parseBootMap(map ?? '', release ?? '').skipped) {
    const m = /^(\S+): the host uses it now \((.*)\); left to the late apply/.exec(s);
    if (m) devices.set(m[1]!, [...(devices.get(m[1]!) ?? []), `in use when the boot map was made: ${m[2]}; 'vfioctl apply ${m[1]}' once it is free`]);
  }
  return { devices, unresolved: b.unresolved };
}

/** What the early layers took this boot (`ADDRESS DRIVER` lines); other lines are named, not used. */
function readBootTaken(ctx: Context, warnings: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const file = '/run/vfioctl/boot-taken';
  (ctx.root.readFile(file) ?? '').split('\n').forEach((line, i) => {
    if (line === '') return;
    const [address, driver, ...rest] = line.split(' ');
    if (address && driver && rest.length === 0 && isPciAddress(address) && isDriverName(driver)) out.set(address, driver);
    else warnings.push(`${ctx.root.path(file)}:${i + 1}: not 'ADDRESS DRIVER' (${printable(line.slice(0, 80))}); ignored`);
  });
  return out;
}

/** How far the early layers got this boot, judged before the late apply changes anything. */
function bootOutcomes(snap: Snapshot, desired: DesiredState, boot: BootDevices): BootState {
  const devices: Record<string, BootState['devices'][string]> = {};
  for (const d of desired.desires.values()) {
    const dev = snap.devices.get(d.address);
    // Devices the boot layers never try (boot devices, unacknowledged broad rules) have no outcome.
    if (!dev || d.intent === null || boot.devices.has(d.address) || (isBroad(d.rule.selector) && !d.rule.acknowledgeBroadMatch)) continue;
    const want = resolvedDriver(snap, d).driver;
    const won = d.intent === 'none' ? dev.driver === null && dev.driverOverride === 'none' : dev.driver !== null && dev.driver === want;
    const module = dev.driver ? (snap.modules.drivers.driverModule.get(dev.driver) ?? null) : null;
    devices[d.address] = {
      outcome: won ? 'won' : dev.driver === null ? 'unbound' : 'host-first',
      driver: dev.driver,
      hostDriverBuiltin: !won && module !== null && snap.modules.builtin.has(module),
    };
  }
  return { at: new Date().toISOString(), kernel: snap.modules.release ?? null, devices };
}

/** What apply did to one device, in state.json at once: an interrupted apply leaves nothing unseen. */
function recordResult(ctx: Context, snap: Snapshot, desired: DesiredState, kind: Plan['kind'], r: DeviceResult): void {
  if (kind === 'sriov') return;
  const devices: Record<string, AppliedDevice> = { ...readState(ctx.root).devices };
  if (kind === 'unbind') {
    if (r.status !== 'ok' && r.status !== 'noop') return;
    delete devices[r.address];
  } else {
    const d = desired.desires.get(r.address);
    if (!d) return;
    const { driver, module } = resolvedDriver(snap, d);
    devices[r.address] = { address: r.address, intent: d.intent, rule: ruleLabel(d), kernel: snap.modules.release ?? null, driver, module, status: r.status === 'noop' ? 'ok' : r.status, error: r.error, at: new Date().toISOString() };
  }
  writeState(ctx.root, { devices });
}

/** After an apply: devices configured once, never applied (refused, failed) and not configured now have nothing to release. */
function pruneState(ctx: Context, snap: Snapshot, desired: DesiredState): void {
  const state = readState(ctx.root);
  const devices = Object.fromEntries(Object.entries(state.devices).filter(([a, d]) => desired.desires.has(a) || d.status === 'ok' || !snap.devices.has(a)));
  if (Object.keys(devices).length !== Object.keys(state.devices).length) writeState(ctx.root, { devices });
}

function absentWarnings(desired: DesiredState): string[] {
  return [...desired.absent].map(([address, r]) => `rules[${r.index}] (line ${r.line}): no device ${address} on this host (yet)`);
}

/**
 * Converges `only` (or every configured device) to `config`. Used by `apply`, and by `set` with
 * the edited configuration (which `--nosave` never writes).
 */
export async function converge(ctx: Context, policy: TrustPolicy, config: Config, only: readonly string[] | null, opts: ApplyOptions, held?: WriteSession): Promise<number> {
  refuseForeignKernelWrite(ctx, opts.dryRun);
  if (opts.dryRun) {
    warnPending(ctx);
    return convergeIn(ctx, policy, config, only, opts, null);
  }
  return held ? convergeIn(ctx, policy, config, only, opts, held) : withWriteSession(ctx, (s) => convergeIn(ctx, policy, config, only, opts, s));
}

async function convergeIn(ctx: Context, policy: TrustPolicy, config: Config, only: readonly string[] | null, opts: ApplyOptions, session: WriteSession | null): Promise<number> {
  const root = ctx.root;
  const onlySet = only ? new Set(only) : null;
  const read = () => readSnapshot(root, { kernel: ctx.kernel, forWrite: true, trust: policy });
  const boot = opts.boot ? bootProtected(ctx) : null;
  let snap = read();
  const warnings = [...snap.warnings];
  const state = readStateChecked(root);
  if (state.problem) warnings.push(state.problem);
  let desired = desiredState(config, snap.devices);
  if (boot) {
    for (const u of boot.unresolved) warnings.push(`boot device ${u} could not be traced to a PCI device`);
    if (session) writeBootState(root, bootOutcomes(snap, desired, boot));
  }
  const phases: PhaseResult[] = [];
  const run = async (kind: Plan['kind'], plan: Plan) => {
    if (plan.devices.length === 0) return;
    const planned = snap;
    const results = session ? await execute(plan, { ...execOptions(ctx, session), onResult: (_d, r) => recordResult(ctx, planned, desired, kind, r) }) : planResults(plan);
    phases.push({ kind, plan, results });
  };
  const bootTaken = opts.boot ? { bootTaken: readBootTaken(ctx, warnings) } : {};
  const ruleOpts = () => ({ only: onlySet, boot, ruleHooks: ruleHooks(ctx, desired, policy), ...bootTaken });
  const sriov = planSriovPhase(snap, desired, ruleOpts());
  await run('sriov', sriov);
  if (sriov.devices.some((d) => d.status === 'planned')) {
    if (!session) warnings.push('VFs that do not exist yet are planned for once they are created: run without --dry-run, then check with vfioctl status');
    else {
      snap = read(); // the new VFs exist now
      desired = desiredState(config, snap.devices);
    }
  }
  const bindPhase = planBindPhase(snap, desired, readState(root), ruleOpts());
  await run('unbind', bindPhase.release);
  for (const b of bindPhase.binds) await run('bind', b.plan);
  if (session) pruneState(ctx, snap, desired);
  report(ctx, opts, phases, bindPhase.skipped, [...warnings, ...desired.warnings, ...absentWarnings(desired)], session?.recovery.recovered ?? [], desired);
  const statuses = phases.flatMap((p) => p.results.map((r) => r.status));
  for (const a of onlySet ?? []) {
    if (phases.some((p) => p.results.some((r) => r.address === a))) continue;
    if (!snap.devices.has(a)) {
      ctx.io.err(`vfioctl: no PCI device ${a} (not in ${root.path('/sys/bus/pci/devices')}; see 'vfioctl list')\n`);
      statuses.push('invalid');
    } else if (!desired.desires.has(a)) ctx.io.err(`vfioctl: ${a}: not configured; nothing to apply ('vfioctl set ${a} vfio' configures it)\n`);
  }
  return exitCodeOf(statuses);
}

function report(ctx: Context, opts: ApplyOptions, phases: PhaseResult[], skipped: readonly Skipped[], warnings: string[], recovered: Recovery[], desired: DesiredState): void {
  if (opts.json) {
    const results = phases.flatMap((p) =>
      p.results.map((r) => {
        const d = desired.desires.get(r.address);
        return { phase: p.kind === 'unbind' ? 'release' : p.kind, intent: p.kind === 'bind' ? (d?.intent ?? null) : null, rule: d && p.kind !== 'unbind' ? ruleLabel(d) : null, ...r };
      }),
    );
    ctx.io.out(JSON.stringify({ command: 'apply', dryRun: !!opts.dryRun, boot: !!opts.boot, recovered, results, skipped, warnings }, null, 2) + '\n');
    return;
  }
  printWarnings(ctx, warnings); // (what was recovered was reported when the session began)
  for (const p of phases) render(ctx, p.kind, p.plan, p.results, !!opts.dryRun, []);
  for (const s of skipped) ctx.io.out(`${s.address}: SKIPPED at boot: ${s.reason}\n`);
  if (phases.length === 0 && skipped.length === 0) ctx.io.out('nothing configured to apply\n');
}

export function applyCommand(ctx: Context, devices: string[], opts: ApplyOptions): Promise<number> {
  const only = devices.length ? uniqueAddresses(devices) : null;
  const policy = trust(ctx);
  return converge(ctx, policy, configFor(ctx, policy, opts.config), only, opts);
}
