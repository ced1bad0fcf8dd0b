// The operations layer: what the CLI, the agent, the libvirt hook and the web console do, as
// typed data and nothing printed. A Host is one host root with its options; every writing
// operation runs in a write session (lock, repair of a killed run, signals) and goes
// read -> pure plan -> the executor, the only writer.
import { readSnapshot, type Snapshot } from '../read/snapshot';
import { HostRoot, hostRootProblem } from '../host/root';
import { parseAddress } from '../host/address';
import { execute, type DeviceResult, type ExecOptions } from '../apply/executor';
import { CORRUPT_JOURNAL_ACTION, Journal } from '../apply/journal';
import { SysfsKernelIo, type KernelIo } from '../apply/kernel-io';
import { lockHeld, type LockHolder } from '../apply/lock';
import type { Recovery, RecoveryReport } from '../apply/recover';
import { writeSession, type Interruption, type WriteSession } from '../apply/session';
import { planBind, planUnbind } from '../plan/planner';
import { describeStep, type BindRequest, type Plan, type UnbindRequest } from '../plan/types';
import { deviceView } from '../report/device-view';
import { describeCorrupt } from '../persist/validate';
import { EXIT, VfioctlError } from '../util/diag';
import { trustPolicy, type TrustPolicy } from '../host/trust';

export type { DeviceResult } from '../apply/executor';
export type { Recovery, RecoveryReport } from '../apply/recover';

export interface HostEvents {
  /** Another vfioctl holds the lock; told once, after a second of waiting. */
  readonly lockWait?: (holder: LockHolder, waitMs: number) => void;
  /** A signal arrived: the step in flight finishes, then the device is rolled back. */
  readonly signal?: (signal: Interruption) => void;
  /** What a session repaired (or could not read) before its work. */
  readonly recovered?: (r: RecoveryReport) => void;
  /** A device's work began (`current`) or ended, within one plan being carried out. */
  readonly progress?: (p: Progress) => void;
}

/**
 * Where a bind, unbind or apply phase is: `done` of `total` devices, `current` the one begun last.
 */
export interface Progress {
  readonly kind: Plan['kind'];
  readonly done: number;
  readonly total: number;
  /** The device most recently begun and not finished, or null between devices and at the end. */
  readonly current: string | null;
}

export interface HostOptions {
  /** The host root (default `/`). */
  readonly root?: string;
  /**
   * `root` is the running host's `/` mounted into this process's filesystem (a privileged
   * container, `--host-root`), not a tree of files: modules are loaded with `chroot ROOT modprobe`,
   * hooks run chrooted into it, and mounts and routes are read as the host's init sees them
   * (ROOT/proc/1), not as this process does. ROOT must be a root-owned directory with proc/1.
   */
  readonly hostRoot?: boolean;
  /** Kernel release whose modules to use (default: the running kernel's). */
  readonly kernel?: string;
  /** Whose hooks and configuration files are trusted (default: root's only). */
  readonly trust?: TrustPolicy;
  /** Environment for hooks (PATH) and VFIOCTL_HOOK_TIMEOUT. */
  readonly env?: NodeJS.ProcessEnv;
  /** How long to wait for another vfioctl's lock, in ms (default 30 s). */
  readonly waitMs?: number;
  readonly events?: HostEvents;
  /** What writes to the kernel (default: sysfs under the root, and modprobe). */
  readonly kernelIo?: KernelIo;
  /** Called before each step is taken: the kill-at-step tests stop a run here. */
  readonly beforeStep?: ExecOptions['beforeStep'];
}

/** The outcome of a bind/unbind (or of a dry run: status `planned`). */
export interface OperationResult {
  readonly kind: Plan['kind'];
  readonly dryRun: boolean;
  readonly plan: Plan;
  readonly results: DeviceResult[];
  readonly recovered: readonly Recovery[];
  readonly unreadableJournal: readonly string[];
  readonly warnings: readonly string[];
  /** The signal that stopped the operation, if one did. */
  readonly interrupted: Interruption | null;
}

/** A plan made from one reading of the host; apply() refuses it when the host moved since. */
export interface PlannedOperation {
  readonly request: Readonly<BindRequest> | Readonly<UnbindRequest>;
  readonly plan: Plan;
  readonly warnings: readonly string[];
}

/** The host changed between plan() and apply(): nothing was done; plan again. */
export class StalePlanError extends VfioctlError {
  constructor(readonly addresses: readonly string[]) {
    super(
      `the host changed since the plan was made (${addresses.join(', ')}); nothing was done: plan again`,
      EXIT.FAILED,
    );
  }
}

/** The exit code of a set of results: the worst wins (2 > 3 > 1 > 0). */
export function exitCodeOf(statuses: readonly string[]): number {
  if (statuses.includes('invalid')) return EXIT.BAD_INPUT;
  if (statuses.includes('refused')) return EXIT.REFUSED;
  if (statuses.includes('failed')) return EXIT.FAILED;
  return EXIT.OK;
}

/** What a plan would do, as results with status `planned` (or its refusals). */
export function planResults(plan: Plan): DeviceResult[] {
  return plan.devices.map((d) => ({
    address: d.address,
    status: d.status,
    from: d.from.driver,
    driver: d.from.driver,
    target: d.target?.driver ?? null,
    steps: d.steps.map((s) => ({ op: s.op, description: describeStep(s), done: false })),
    refusals: d.refusals,
    warnings: [...d.warnings],
    error: d.refusals.map((r) => r.message).join('; ') || null,
  }));
}

/** The same device twice (full and short address) is one device. */
export function uniqueAddresses(devices: readonly string[]): string[] {
  return [...new Set(devices.map(parseAddress))];
}

export class Host {
  readonly root: HostRoot;
  readonly kernel: string | undefined;
  readonly trust: TrustPolicy;
  readonly waitMs: number;
  private readonly io: KernelIo;

  constructor(readonly options: HostOptions = {}) {
    this.trust = options.trust ?? trustPolicy(options.env ?? {});
    if (options.hostRoot) {
      const why = hostRootProblem(options.root ?? '/', this.trust.uids);
      if (why) throw new VfioctlError(`--host-root ${why}`, EXIT.BAD_INPUT);
    }
    this.root = new HostRoot(options.root ?? '/', { hostMount: !!options.hostRoot });
    this.kernel = options.kernel;
    this.waitMs = options.waitMs ?? 30_000;
    this.io = options.kernelIo ?? new SysfsKernelIo(this.root);
  }

  get hookTimeoutMs(): number {
    const s = Number(this.options.env?.VFIOCTL_HOOK_TIMEOUT);
    return Number.isFinite(s) && s > 0 ? s * 1000 : 30_000;
  }

  /**
   * The host read for writing: records, VFIO users and hooks included. `session`: the write
   * session the read is made in, or null for a dry run, which reads the same but writes nothing:
   * the modules.alias index is refreshed only under the session's lock.
   */
  readForWrite(session: WriteSession | null, only?: readonly string[]): Snapshot {
    return readSnapshot(this.root, {
      kernel: this.kernel,
      ...(only ? { only } : {}),
      forWrite: true,
      writeIndex: session !== null,
      trust: this.trust,
    });
  }

  /**
   * Runs `work` holding the lock, after repairing what a killed run left. A signal makes the
   * executor stop at its next step; the session then still releases the lock.
   */
  session<T>(work: (s: WriteSession) => Promise<T>): Promise<T> {
    const ev = this.options.events;
    return writeSession(
      this.root,
      {
        kernelIo: this.io,
        waitMs: this.waitMs,
        onWait: (h) => ev?.lockWait?.(h, this.waitMs),
        onSignal: (s) => ev?.signal?.(s),
      },
      async (s) => {
        ev?.recovered?.(s.recovery);
        return work(s);
      },
    );
  }

  /** Options for the executor within a session, carrying out `plan` (progress events for it). */
  execOptions(s: WriteSession, plan: Plan): ExecOptions {
    return {
      root: this.root,
      io: s.io,
      beforeStep: this.options.beforeStep,
      hookTimeoutMs: this.hookTimeoutMs,
      env: this.options.env ?? {},
      interrupted: s.interrupted,
      ...this.progressOptions(plan),
    };
  }

  private progressOptions(plan: Plan): Pick<ExecOptions, 'onDeviceStart' | 'onDeviceDone'> {
    const emit = this.options.events?.progress;
    if (!emit) return {};
    const total = plan.devices.length;
    // Units run concurrently: several devices may be in flight; `current` is the latest begun.
    const inFlight: string[] = [];
    let done = 0;
    const tell = () =>
      emit({ kind: plan.kind, done, total, current: inFlight[inFlight.length - 1] ?? null });
    return {
      onDeviceStart: (d) => {
        inFlight.push(d.address);
        tell();
      },
      onDeviceDone: (d) => {
        const i = inFlight.indexOf(d.address);
        if (i >= 0) inFlight.splice(i, 1);
        done++;
        tell();
      },
    };
  }

  /**
   * Journal entries left by a killed run (for commands that do not repair: dry runs, list, show).
   */
  pendingProblems(): string[] {
    const { entries, corrupt } = new Journal(this.root).pending();
    if (entries.length === 0 && corrupt.length === 0) return [];
    // Entries of a live run that holds the lock are its work in progress, not damage.
    if (corrupt.length === 0 && lockHeld(this.root)) return [];
    return [
      ...entries.map(
        (e) =>
          `${e.address} was left half-done by an interrupted ${e.kind} (at ${e.op}); 'vfioctl recover' (or any writing command) repairs it`,
      ),
      ...corrupt.map(
        (c) => `unreadable journal entry ${describeCorrupt(c, CORRUPT_JOURNAL_ACTION)}`,
      ),
    ];
  }

  /** Pure after one read: what a bind or unbind would do now. */
  plan(request: Readonly<BindRequest> | Readonly<UnbindRequest>): PlannedOperation {
    if (request.kind === 'bind') refuseIntentAsDriver(request.driver, request.addresses);
    const snap = this.readForWrite(null, request.addresses);
    return { request, plan: makePlan(snap, request), warnings: snap.warnings };
  }

  /**
   * Carries out a plan under the lock. The host is read again first; when the plan made from it
   * differs (a device moved, a group member changed), nothing is done: StalePlanError.
   */
  apply(p: PlannedOperation): Promise<OperationResult> {
    return this.session(async (s) => {
      const snap = this.readForWrite(s, p.request.addresses);
      const fresh = makePlan(snap, p.request);
      const moved = fresh.devices
        .filter(
          (d, i) =>
            JSON.stringify(stripDevice(d)) !== JSON.stringify(stripDevice(p.plan.devices[i])),
        )
        .map((d) => d.address);
      if (moved.length || fresh.devices.length !== p.plan.devices.length)
        throw new StalePlanError(moved);
      return this.run(s, fresh, snap.warnings);
    });
  }

  /**
   * Plan and carry out in one session (no window for the host to move in between). Bad input
   * rejects the promise, as failures do.
   */
  async change(
    request: Readonly<BindRequest> | Readonly<UnbindRequest>,
    opts: { dryRun?: boolean } = {},
    held?: WriteSession,
  ): Promise<OperationResult> {
    if (request.kind === 'bind') refuseIntentAsDriver(request.driver, request.addresses);
    if (opts.dryRun) {
      const p = this.plan(request);
      return this.report(p.plan, planResults(p.plan), true, p.warnings, null);
    }
    const work = (s: WriteSession) => {
      const snap = this.readForWrite(s, request.addresses);
      return this.run(s, makePlan(snap, request), snap.warnings);
    };
    return held ? work(held) : this.session(work);
  }

  bind(
    request: Omit<BindRequest, 'kind'>,
    opts: { dryRun?: boolean } = {},
  ): Promise<OperationResult> {
    return this.change({ ...request, kind: 'bind' }, opts);
  }

  unbind(
    request: Omit<UnbindRequest, 'kind'>,
    opts: { dryRun?: boolean } = {},
    held?: WriteSession,
  ): Promise<OperationResult> {
    return this.change({ ...request, kind: 'unbind' }, opts, held);
  }

  /** Repairs what a killed run left (every writing operation does this first anyway). */
  recover(): Promise<RecoveryReport> {
    return writeSession(
      this.root,
      { kernelIo: this.io, waitMs: this.waitMs },
      async (s) => s.recovery,
    );
  }

  private async run(
    s: WriteSession,
    plan: Plan,
    warnings: readonly string[],
  ): Promise<OperationResult> {
    const results = await execute(plan, this.execOptions(s, plan));
    const r = {
      ...this.report(plan, results, false, warnings, null),
      recovered: s.recovery.recovered,
      unreadableJournal: s.recovery.unreadable,
    };
    // Read when the caller looks (after the session), so a signal that came with the last step
    // counts.
    return Object.defineProperty(r, 'interrupted', {
      get: () => s.interrupted(),
      enumerable: true,
    });
  }

  private report(
    plan: Plan,
    results: DeviceResult[],
    dryRun: boolean,
    warnings: readonly string[],
    interrupted: Interruption | null,
  ): OperationResult {
    return {
      kind: plan.kind,
      dryRun,
      plan,
      results,
      recovered: [],
      unreadableJournal: [],
      warnings: dryRun ? [...warnings, ...this.pendingProblems()] : warnings,
      interrupted,
    };
  }
}

function makePlan(snap: Snapshot, r: Readonly<BindRequest> | Readonly<UnbindRequest>): Plan {
  return withHookViews(
    snap,
    r.kind === 'bind' ? planBind(snap, r as BindRequest) : planUnbind(snap, r as UnbindRequest),
  );
}

/** Hooks get the device as `show --json` prints it, from the candidates the plan carries. */
export function withHookViews(snap: Snapshot, plan: Plan): Plan {
  const devices = plan.devices.map((d) => {
    const dev = snap.devices.get(d.address);
    if (d.status !== 'planned' || !dev || !d.steps.some((s) => s.op === 'hook')) return d;
    return { ...d, device: deviceView(dev, snap, null, true, d.resolution) };
  });
  return { ...plan, devices };
}

/** A device plan without its `show` view (which carries times and counters that may differ). */
function stripDevice(d: Plan['devices'][number] | undefined): unknown {
  if (!d) return null;
  const { device: _view, ...rest } = d;
  return rest;
}

/** The exit code of an operation: its results', and non-zero when a signal stopped it. */
export function operationExitCode(r: OperationResult): number {
  const code = exitCodeOf(r.results.map((x) => x.status));
  return r.interrupted !== null && code === EXIT.OK ? EXIT.FAILED : code;
}

/**
 * `none` and `host` are intents of `set`, not drivers: no PCI driver has either name (the kernel
 * would take any name for driver_override, and "none" there binds nothing), so `bind --driver`
 * with one is bad input that says which command does what was meant (for library callers too:
 * planned, it would only read as an unknown driver).
 */
function refuseIntentAsDriver(driver: string, addresses: readonly string[]): void {
  if (driver !== 'none' && driver !== 'host') return;
  const one = addresses.length === 1;
  const set = one ? `vfioctl set ${addresses[0]} ${driver}` : `vfioctl set DEVICE ${driver}`;
  const fits =
    driver === 'host'
      ? `'vfioctl unbind ${addresses.join(' ')}' gives ${one ? 'it back to its host driver' : 'them back to their host drivers'} now; '${set}' keeps ${one ? 'it' : 'a device'} there, exempt from broader rules`
      : `'${set}' leaves ${one ? 'it' : 'a device'} without any driver (driver_override "none"), with --nosave until the next boot only`;
  throw new VfioctlError(
    `bind ${addresses.join(', ')}: --driver ${driver} names an intent, not a driver: ${fits}`,
    EXIT.BAD_INPUT,
  );
}
