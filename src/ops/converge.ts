// Converge the host to a configuration, idempotently: SR-IOV sizes, then releases of devices no
// rule names any more, then one bind plan in which every configured device has its own target
// (so the IOMMU-group check sees every device moving in this apply). Same lock, journal, rollback
// and statuses as bind; what apply did is recorded per device as it goes (state.json).
import type { Snapshot } from '../read/snapshot';
import { readBootDevices, type BootDevices } from '../host/boot-devices';
import { isPciAddress, printable } from '../host/address';
import { isDriverName } from '../persist/validate';
import { execute, type DeviceResult } from '../apply/executor';
import type { Recovery } from '../apply/recover';
import type { Interruption, WriteSession } from '../apply/session';
import { desiredState, type Desire, type DesiredState } from '../config/desired';
import { isBroad, type Config } from '../config/types';
import { ruleHook, type Hook } from '../hooks/discover';
import { planBindPhase, planSriovPhase, ruleLabel, type Skipped } from '../plan/converge';
import { resolveIntent } from '../plan/target';
import { placement } from '../plan/planner';
import { intentName, isPlaced } from '../config/intent';
import type { DevicePlan, Plan } from '../plan/types';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  readState,
  readStateChecked,
  STATE_FILE,
  writeBootState,
  writeState,
  type AppliedDevice,
  type BootState,
} from '../persist/state';
import { exitCodeOf, planResults, withHookViews, type Host } from './host';
import { readStoredMap } from './boot-layers';
import { EXIT, VfioctlError } from '../util/diag';

export interface ConvergeOptions {
  /** Only these devices (and, for a PF, its SR-IOV size); every configured device when null. */
  readonly only?: readonly string[] | null;
  readonly dryRun?: boolean;
  /**
   * The late boot unit: boot devices from fstab/crypttab/root= are refused, broad rules need an
   * acknowledgement.
   */
  readonly boot?: boolean;
  /**
   * Refuse the devices the host boots from (fstab, crypttab, root=/resume= on the kernel command
   * line) in this apply too, whatever a rule matches, as `boot` does: for an apply nobody watches
   * (the node agent sets it always). Unlike `boot`, broad rules apply as usual.
   */
  readonly guardBootDevices?: boolean;
  /** Past forceable refusals, as `bind --force` (`set --force`; never at boot). */
  readonly force?: boolean;
  /** Devices that succeed or fail together (`set --group`): address -> unit name. */
  readonly units?: ReadonlyMap<string, string>;
}

export interface PhaseResult {
  readonly kind: Plan['kind'];
  readonly plan: Plan;
  readonly results: DeviceResult[];
}

/** One device's line of an apply: its result with the phase, intent and rule it came from. */
export type ConvergeResult = DeviceResult & {
  readonly phase: 'sriov' | 'release' | 'bind';
  readonly intent: string | null;
  readonly rule: string | null;
};

export interface ConvergeReport {
  readonly dryRun: boolean;
  readonly boot: boolean;
  /** The boot devices were refused (ConvergeOptions.guardBootDevices, or `boot`). */
  readonly guardBootDevices: boolean;
  readonly phases: readonly PhaseResult[];
  readonly results: readonly ConvergeResult[];
  readonly skipped: readonly Skipped[];
  readonly warnings: readonly string[];
  readonly recovered: readonly Recovery[];
  /** Devices named in `only` that are not on this host (bad input) or not configured. */
  readonly notFound: readonly string[];
  readonly notConfigured: readonly string[];
  readonly interrupted: Interruption | null;
}

export function convergeExitCode(r: ConvergeReport): number {
  const code = exitCodeOf([
    ...r.results.map((x) => x.status),
    ...(r.notFound.length ? ['invalid'] : []),
  ]);
  return r.interrupted !== null && code === EXIT.OK ? EXIT.FAILED : code;
}

function ruleHooks(host: Host, desired: DesiredState): Map<string, Hook[]> {
  const out = new Map<string, Hook[]>();
  for (const d of desired.desires.values())
    if (d.rule.hooks.length)
      out.set(
        d.address,
        d.rule.hooks.map((p) => ruleHook(host.root, p, host.trust)),
      );
  return out;
}

function resolvedDriver(
  snap: Snapshot,
  d: Desire,
): { driver: string | null; module: string | null } {
  const intent = d.intent;
  if (intent === null || intent.kind === 'none' || intent.kind === 'host')
    return { driver: null, module: null };
  const dev = snap.devices.get(d.address);
  if (!dev) return { driver: null, module: null };
  const t = resolveIntent(dev, snap, intent).target;
  return { driver: t?.driver ?? null, module: t?.module ?? null };
}

/**
 * At boot: the devices the host boots from, plus those the boot map recorded as in use when it
 * was made (networking may not have configured them yet when the late unit runs).
 */
function bootProtected(host: Host, warnings: string[]): BootDevices {
  const b = readBootDevices(host.root);
  const devices = new Map(b.devices);
  const release = host.root.kernelRelease(host.kernel);
  const stored = release ? readStoredMap(host.root, release) : { map: null, problem: null };
  if (stored.problem) warnings.push(stored.problem);
  for (const l of stored.map?.leftOut ?? []) {
    if (l.reason !== 'in-use') continue;
    devices.set(l.address, [
      ...(devices.get(l.address) ?? []),
      `in use when the boot map was made: ${l.use.join('; ')}; 'vfioctl apply ${l.address}' once it is free`,
    ]);
  }
  return { devices, unresolved: b.unresolved };
}

/**
 * What the early layers took this boot (`ADDRESS DRIVER` lines); other lines are named, not used.
 */
function readBootTaken(host: Host, warnings: string[]): Map<string, string> {
  const out = new Map<string, string>();
  const file = '/run/vfioctl/boot-taken';
  (host.root.readFile(file) ?? '').split('\n').forEach((line, i) => {
    if (line === '') return;
    const [address, driver, ...rest] = line.split(' ');
    if (address && driver && rest.length === 0 && isPciAddress(address) && isDriverName(driver))
      out.set(address, driver);
    else
      warnings.push(
        `${host.root.path(file)}:${i + 1}: not 'ADDRESS DRIVER' (${printable(line.slice(0, 80))}); ignored`,
      );
  });
  return out;
}

/** How far the early layers got this boot, judged before the late apply changes anything. */
function bootOutcomes(snap: Snapshot, desired: DesiredState, boot: BootDevices): BootState {
  const devices: Record<string, BootState['devices'][string]> = {};
  for (const d of desired.desires.values()) {
    const dev = snap.devices.get(d.address);
    // Devices the boot layers never try (boot devices, unacknowledged broad rules, devices kept on
    // their host driver) have no outcome.
    if (
      !dev ||
      d.intent === null ||
      d.intent.kind === 'host' ||
      boot.devices.has(d.address) ||
      (isBroad(d.rule.selector) && !d.rule.acknowledgeBroadMatch)
    )
      continue;
    const won = isPlaced(d.intent, resolvedDriver(snap, d).driver, placement(dev, snap));
    const module = dev.driver ? (snap.modules.drivers.driverModule.get(dev.driver) ?? null) : null;
    devices[d.address] = {
      outcome: won ? 'won' : dev.driver === null ? 'unbound' : 'host-first',
      driver: dev.driver,
      hostDriverBuiltin: !won && module !== null && snap.modules.builtin.has(module),
    };
  }
  return { at: new Date().toISOString(), kernel: snap.modules.release ?? null, devices };
}

/**
 * apply records every device it moves (status, and the next apply's releases depend on it): a
 * state directory it cannot write (a read-only /var) is refused before anything changes.
 */
function stateWritable(host: Host): void {
  const dir = host.root.confine(path.dirname(STATE_FILE));
  try {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    fs.accessSync(dir, fs.constants.W_OK);
  } catch (e) {
    throw new VfioctlError(
      `cannot record what apply does in ${dir} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); nothing was changed: make ${path.dirname(STATE_FILE)} writable`,
      EXIT.FAILED,
    );
  }
}

/**
 * Records of devices that were already where their intent wants them (`noop`): nothing moved, so
 * they wait for the next write of state.json or the end of the apply. One write for all of them
 * instead of an fsync'd rename per device (a boot's apply with 512 VFs already won spent 2.6 s in
 * fsync alone).
 */
type Deferred = Map<string, AppliedDevice>;

/**
 * What apply did to one device, in state.json at once when it moved the device: an interrupted
 * apply leaves nothing unseen.
 */
function recordResult(
  host: Host,
  snap: Snapshot,
  desired: DesiredState,
  kind: Plan['kind'],
  plan: DevicePlan,
  r: DeviceResult,
  warnings: string[],
  deferred: Deferred,
): void {
  try {
    recordResultIn(host, snap, desired, kind, plan, r, deferred);
  } catch (e) {
    // The device has moved; the executor must go on (and roll back what fails), not crash mid-plan.
    warnings.push(
      `${r.address}: could not record it in ${STATE_FILE} (${(e as Error).message}); 'vfioctl status' will not show it`,
    );
  }
}

function recordResultIn(
  host: Host,
  snap: Snapshot,
  desired: DesiredState,
  kind: Plan['kind'],
  plan: DevicePlan,
  r: DeviceResult,
  deferred: Deferred,
): void {
  if (kind === 'sriov') return;
  const d = desired.desires.get(r.address);
  const devices = (): Record<string, AppliedDevice> => ({
    ...readState(host.root).devices,
    ...Object.fromEntries(deferred),
  });
  if (kind === 'unbind' && d?.intent?.kind !== 'host') {
    if (r.status !== 'ok' && r.status !== 'noop') return;
    const all = devices();
    delete all[r.address];
    deferred.clear();
    writeState(host.root, { devices: all });
  } else {
    // (`planned` is a dry run's status: nothing was done, nothing to record.)
    if (!d || d.intent === null || r.status === 'planned') return;
    // What the intent resolved to, as planned (`none` and `host` bind no driver of their own).
    const binds = d.intent.kind === 'vfio' || d.intent.kind === 'driver';
    const driver = binds ? (plan.target?.driver ?? null) : null;
    const module = binds ? (plan.target?.module ?? null) : null;
    const record: AppliedDevice = {
      address: r.address,
      intent: intentName(d.intent),
      rule: ruleLabel(d),
      kernel: snap.modules.release ?? null,
      driver,
      module,
      status: r.status === 'noop' ? 'ok' : r.status,
      error: r.error,
      at: new Date().toISOString(),
    };
    if (r.status === 'noop') {
      deferred.set(r.address, record);
      return;
    }
    const all = { ...devices(), [r.address]: record };
    deferred.clear();
    writeState(host.root, { devices: all });
  }
}

/** The deferred records, written once at the end of the apply (before the state is pruned). */
function flushDeferred(host: Host, deferred: Deferred, warnings: string[]): void {
  if (deferred.size === 0) return;
  try {
    writeState(host.root, {
      devices: { ...readState(host.root).devices, ...Object.fromEntries(deferred) },
    });
    deferred.clear();
  } catch (e) {
    warnings.push(
      `could not record ${deferred.size} device(s) already in place in ${STATE_FILE} (${(e as Error).message}); 'vfioctl status' will not show them`,
    );
  }
}

/**
 * After an apply: devices configured once, never applied (refused, failed) and not configured now
 * have nothing to release.
 */
function pruneState(host: Host, snap: Snapshot, desired: DesiredState): void {
  const state = readState(host.root);
  const devices = Object.fromEntries(
    Object.entries(state.devices).filter(
      ([a, d]) => desired.desires.has(a) || d.status === 'ok' || !snap.devices.has(a),
    ),
  );
  if (Object.keys(devices).length !== Object.keys(state.devices).length)
    writeState(host.root, { devices });
}

function absentWarnings(desired: DesiredState): string[] {
  return [...desired.absent].map(
    ([address, r]) => `rules[${r.index}] (line ${r.line}): no device ${address} on this host (yet)`,
  );
}

/**
 * Converges `only` (or every configured device) to `config`. Used by `apply`, and by `set` with
 * the edited configuration (which `--nosave` never writes). `held`: the caller's session.
 */
export function converge(
  host: Host,
  config: Config,
  opts: ConvergeOptions,
  held?: WriteSession,
): Promise<ConvergeReport> {
  if (opts.dryRun) return convergeIn(host, config, opts, null);
  stateWritable(host);
  return held
    ? convergeIn(host, config, opts, held)
    : host.session((s) => convergeIn(host, config, opts, s));
}

async function convergeIn(
  host: Host,
  config: Config,
  opts: ConvergeOptions,
  session: WriteSession | null,
): Promise<ConvergeReport> {
  const root = host.root;
  const onlySet = opts.only ? new Set(opts.only) : null;
  const read = () => host.readForWrite(session);
  const mapWarnings: string[] = [];
  const boot = opts.boot ? bootProtected(host, mapWarnings) : null;
  // Outside boot the live in-use checks see the mounts and routes; the boot map's "in use when it
  // was made" entries are for a boot that has not set them up yet, so they are not added here.
  const guard = !boot && opts.guardBootDevices ? readBootDevices(host.root) : null;
  let snap = read();
  const warnings = [...snap.warnings, ...(session ? [] : host.pendingProblems()), ...mapWarnings];
  const state = readStateChecked(root);
  if (state.problem) warnings.push(state.problem);
  let desired = desiredState(config, snap.devices);
  for (const u of (boot ?? guard)?.unresolved ?? [])
    warnings.push(
      `boot device ${u} could not be traced to a PCI device${boot ? '' : ': this apply cannot refuse it by name'}`,
    );
  if (boot && session) writeBootState(root, bootOutcomes(snap, desired, boot));
  const phases: PhaseResult[] = [];
  const deferred: Deferred = new Map();
  const run = async (kind: Plan['kind'], made: Plan) => {
    if (made.devices.length === 0) return;
    const planned = snap;
    const plan = withHookViews(planned, made);
    const results = session
      ? await execute(plan, {
          ...host.execOptions(session, plan),
          onResult: (d, r) => recordResult(host, planned, desired, kind, d, r, warnings, deferred),
        })
      : planResults(plan);
    phases.push({ kind, plan, results });
  };
  const bootTaken = opts.boot ? { bootTaken: readBootTaken(host, warnings) } : {};
  const ruleOpts = () => ({
    only: onlySet,
    boot,
    guard,
    ruleHooks: ruleHooks(host, desired),
    ...bootTaken,
    force: !!opts.force && !opts.boot,
    ...(opts.units ? { units: opts.units } : {}),
  });
  const sriov = planSriovPhase(snap, desired, ruleOpts());
  await run('sriov', sriov);
  if (sriov.devices.some((d) => d.status === 'planned')) {
    if (!session)
      warnings.push(
        'VFs that do not exist yet are planned for once they are created: run without --dry-run, then check with vfioctl status',
      );
    else {
      snap = read(); // the new VFs exist now
      desired = desiredState(config, snap.devices);
    }
  }
  // state.json as read above: the SR-IOV phase records nothing in it.
  const bindPhase = planBindPhase(snap, desired, state.value, ruleOpts());
  await run('unbind', bindPhase.release);
  await run('bind', bindPhase.bind);
  if (session) {
    flushDeferred(host, deferred, warnings);
    pruneState(host, snap, desired);
  }
  const results = phases.flatMap((p) =>
    p.results.map((r): ConvergeResult => {
      const d = desired.desires.get(r.address);
      // A release names no intent or rule, except a device kept on its host driver by intent
      // `host`.
      const governs =
        d?.intent && (p.kind === 'bind' || (p.kind === 'unbind' && d.intent.kind === 'host'))
          ? d
          : null;
      return {
        phase: p.kind === 'unbind' ? 'release' : p.kind,
        intent: governs?.intent ? intentName(governs.intent) : null,
        rule: governs && p.kind !== 'sriov' ? ruleLabel(governs) : null,
        ...r,
      };
    }),
  );
  const untouched = [...(onlySet ?? [])].filter((a) => !results.some((r) => r.address === a));
  const report = {
    dryRun: !session,
    boot: !!opts.boot,
    guardBootDevices: !!opts.boot || !!opts.guardBootDevices,
    phases,
    results,
    skipped: bindPhase.skipped,
    warnings: [...warnings, ...desired.warnings, ...absentWarnings(desired)],
    recovered: session?.recovery.recovered ?? [],
    notFound: untouched.filter((a) => !snap.devices.has(a)),
    notConfigured: untouched.filter((a) => snap.devices.has(a) && !desired.desires.has(a)),
    interrupted: null as Interruption | null,
  };
  // Read when the caller looks (after the session), so a signal that came with the last step
  // counts.
  return session
    ? Object.defineProperty(report, 'interrupted', {
        get: () => session.interrupted(),
        enumerable: true,
      })
    : report;
}
