// The executor: the only code that writes. It takes a plan's steps one at a time, journals each
// before taking it, verifies the result by re-reading sysfs, and on any failure puts the device
// back where it was (override restored, original driver bound again).
import * as fs from 'node:fs';
import type { HostRoot } from '../host/root';
import { describeStep, type DevicePlan, type Plan, type Step } from '../plan/types';
import { removeRecord, writeRecord } from '../persist/records';
import type { KernelIo } from './kernel-io';
import { Journal, type JournalEntry } from './journal';
import { runHook, type HookInput, type HookOutcome } from '../hooks/run';

export type ResultStatus = 'ok' | 'noop' | 'planned' | 'failed' | 'refused' | 'invalid';

export interface StepResult {
  readonly op: Step['op'];
  readonly description: string;
  readonly done: boolean;
  readonly error?: string;
}

export interface DeviceResult {
  readonly address: string;
  readonly status: ResultStatus;
  /** The driver the device was on when it was read for the plan (`null`: none). */
  readonly from: string | null;
  /** The driver the device is on afterwards. */
  readonly driver: string | null;
  readonly target: string | null;
  readonly steps: StepResult[];
  readonly refusals: DevicePlan['refusals'];
  readonly warnings: string[];
  readonly error: string | null;
}

export interface ExecOptions {
  readonly root: HostRoot;
  readonly io: KernelIo;
  /**
   * Called before each step is taken (after it is journaled). Outside the step's error handling on
   * purpose: what it throws ends the run with no rollback, as a kill would (the tests' kill point).
   */
  readonly beforeStep?: (plan: DevicePlan, step: Step, index: number) => void;
  readonly concurrency?: number;
  /** Per-hook time limit (default 30 s). */
  readonly hookTimeoutMs?: number;
  /** Environment for hooks (PATH). */
  readonly env?: NodeJS.ProcessEnv;
  /** A signal asked us to stop: checked before each step (the step in flight always finishes). */
  readonly interrupted?: () => string | null;
  /** Each device's result as soon as it is final (apply records its state per device). */
  readonly onResult?: (plan: DevicePlan, result: DeviceResult) => void;
  /** A device's work begins, and ends (whatever its result): progress for a caller to show. */
  readonly onDeviceStart?: (plan: DevicePlan) => void;
  readonly onDeviceDone?: (plan: DevicePlan) => void;
}

class StepError extends Error {}

export function driverOf(root: HostRoot, address: string): string | null {
  return root.linkName(`/sys/bus/pci/devices/${address}/driver`) ?? null;
}

function overrideOf(root: HostRoot, address: string): string | null {
  const v = root.readAttr(`/sys/bus/pci/devices/${address}/driver_override`);
  return v === undefined || v === '(null)' ? null : v;
}

function vfioDevOf(root: HostRoot, address: string): string | null {
  return (
    root.list(`/sys/bus/pci/devices/${address}/vfio-dev`).find((f) => f.startsWith('vfio')) ?? null
  );
}

/**
 * On a VFIO driver: vfio-dev/ (v6.1+); a kernel without that class (5.10) only by the driver's
 * name.
 */
function onVfio(root: HostRoot, address: string): boolean {
  if (vfioDevOf(root, address) !== null) return true;
  const now = driverOf(root, address);
  return now !== null && !root.exists('/sys/class/vfio-dev') && /vfio/.test(now);
}

function errText(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return err.code
    ? `${err.code}${err.message && !err.message.startsWith(err.code) ? ` (${err.message})` : ''}`
    : String((e as Error).message ?? e);
}

class Runner {
  private readonly journal: Journal;
  private readonly modprobes = new Map<string, Promise<{ status: number; stderr: string }>>();
  /** Ownership changes to undo when the device's bind fails after them. */
  private readonly undoChown = new Map<string, (() => Promise<void>)[]>();

  constructor(private readonly o: ExecOptions) {
    this.journal = new Journal(o.root);
  }

  private async modprobe(args: string[]): Promise<{ status: number; stderr: string }> {
    const key = args.join('\0');
    let p = this.modprobes.get(key);
    if (!p) {
      p = this.o.io.modprobe(args);
      this.modprobes.set(key, p);
    }
    return p;
  }

  private get hookTimeoutMs(): number {
    return this.o.hookTimeoutMs ?? 30_000;
  }

  private hook(path: string, input: HookInput): Promise<HookOutcome> {
    return runHook(this.o.root, path, input, this.hookTimeoutMs, this.o.env ?? process.env);
  }

  private lockdownHint(): string {
    const l = this.o.root.readAttr('/sys/kernel/security/lockdown') ?? '';
    return /\[(integrity|confidentiality)\]/.test(l)
      ? '; kernel lockdown is active (Secure Boot): unsigned modules are refused'
      : '';
  }

  async step(plan: DevicePlan, s: Step, warnings: string[]): Promise<void> {
    const { root, io } = this.o;
    const dev = `/sys/bus/pci/devices/${plan.address}`;
    switch (s.op) {
      case 'modprobe': {
        const r = await this.modprobe([s.module]);
        if (r.status !== 0)
          throw new StepError(
            `module ${s.module} could not be loaded: ${r.stderr || `modprobe exited ${r.status}`}${this.lockdownHint()}`,
          );
        return;
      }
      case 'modprobe-alias': {
        const r = await this.modprobe(['-b', s.modalias]);
        if (r.status !== 0)
          warnings.push(
            `no host driver module loaded for ${s.modalias}: ${r.stderr || `modprobe exited ${r.status}`}`,
          );
        return;
      }
      case 'set-override':
        // A lone newline clears driver_override (the kernel truncates at the first \n).
        return io.write(`${dev}/driver_override`, s.driver === null ? '\n' : s.driver);
      case 'unbind':
        try {
          await io.write(`/sys/bus/pci/drivers/${s.driver}/unbind`, plan.address);
        } catch (e) {
          // ENODEV: no longer bound to that driver (something raced us); fine if it is unbound now.
          if (driverOf(root, plan.address) !== null) throw e;
        }
        return;
      case 'probe':
        // drivers_probe returns success even when no driver attached: 'verify' decides.
        return io.write('/sys/bus/pci/drivers_probe', plan.address);
      case 'verify':
        return this.verify(plan, s, warnings);
      case 'verify-none': {
        const now = driverOf(root, plan.address);
        if (now !== null) throw new StepError(`${plan.address} is still on ${now}`);
        return;
      }
      case 'sriov-autoprobe':
        return io.write(`${dev}/sriov_drivers_autoprobe`, s.value ? '1' : '0');
      case 'sriov-numvfs': {
        // N -> M with both non-zero is EBUSY: the kernel wants 0 in between.
        if (s.from > 0 && s.numVfs > 0) await io.write(`${dev}/sriov_numvfs`, '0');
        try {
          await io.write(`${dev}/sriov_numvfs`, String(s.numVfs));
        } catch (e) {
          // Undo: autoprobe back on if this plan turned it off, then the old VF count, so a failed
          // resize neither removes every VF nor brings them back without a driver.
          if (plan.steps.some((x) => x.op === 'sriov-autoprobe' && !x.value))
            await io.write(`${dev}/sriov_drivers_autoprobe`, '1').catch(() => undefined);
          if (s.from > 0 && s.numVfs > 0)
            await io.write(`${dev}/sriov_numvfs`, String(s.from)).catch(() => undefined);
          throw e;
        }
        return;
      }
      case 'hook': {
        const r = await this.hook(s.path, {
          event: s.event,
          address: plan.address,
          targetDriver: plan.target?.driver ?? null,
          previousDriver: plan.from.driver,
          device: plan.device ?? null,
          steps: plan.steps.map(describeStep),
        });
        if (r.status === 'skipped')
          warnings.push(`${s.event} hook ${s.path}: not my device (exit 2)`);
        if (r.status !== 'failed') return;
        const how = r.timedOut
          ? `timed out after ${this.hookTimeoutMs / 1000} s`
          : r.exitCode !== null
            ? `exited ${r.exitCode}`
            : `killed by ${r.signal}`;
        throw new StepError(
          `${s.event} hook ${s.path} ${how}${r.output ? `; its output:\n${r.output}` : ' (no output)'}`,
        );
      }
      case 'chown': {
        const node =
          s.node === 'group'
            ? `/dev/vfio/${s.group}`
            : vfioDevOf(root, plan.address)
              ? `/dev/vfio/devices/${vfioDevOf(root, plan.address)}`
              : null;
        if (node === null) return; // kernels before 6.1 have no per-device cdev
        const before = fs.lstatSync(root.confine(node), { throwIfNoEntry: false });
        if (!before) throw new StepError(`${node} does not exist after binding`);
        await io.chown(node, s.uid, s.gid);
        // A failure later in this bind gives the node back to its owner (it outlives the bind
        // when other devices of its group stay on VFIO).
        this.undoChown.set(plan.address, [
          ...(this.undoChown.get(plan.address) ?? []),
          () => io.chown(node, before.uid, before.gid),
        ]);
        return;
      }
    }
  }

  private verify(plan: DevicePlan, s: Extract<Step, { op: 'verify' }>, warnings: string[]): void {
    const { root } = this.o;
    const now = driverOf(root, plan.address);
    if (s.driver !== null) {
      if (now !== s.driver) {
        const why =
          now === null
            ? `its probe failed or refused the device (no driver attached; dmesg has the driver's reason)`
            : `${now} took it instead`;
        const iommu =
          s.vfio && !root.readLink(`/sys/bus/pci/devices/${plan.address}/iommu_group`)
            ? '; it has no IOMMU group'
            : '';
        throw new StepError(`${plan.address} did not bind to ${s.driver}: ${why}${iommu}`);
      }
      // vfio-dev/ (v6.1+) shows the device registered with VFIO, whatever the driver's name.
      if (s.vfio && root.exists('/sys/class/vfio-dev') && vfioDevOf(root, plan.address) === null) {
        throw new StepError(
          `${plan.address} is on ${s.driver} but has no vfio-dev/: the driver did not register it with VFIO`,
        );
      }
      // Before it (5.10's vfio.c): the group's node, created by vfio_create_group(), decides.
      if (s.vfio && !root.exists('/sys/class/vfio-dev')) {
        const group = root.linkName(`/sys/bus/pci/devices/${plan.address}/iommu_group`);
        if (group === undefined || !root.exists(`/dev/vfio/${group}`)) {
          throw new StepError(
            `${plan.address} is on ${s.driver} but ${group === undefined ? 'has no IOMMU group' : `/dev/vfio/${group} does not exist`}: the driver did not register it with VFIO`,
          );
        }
      }
      return;
    }
    if (now === null)
      warnings.push(
        `${plan.address}: no host driver claimed it (none is available for this device)`,
      );
    else if (onVfio(root, plan.address))
      throw new StepError(`${plan.address} is still on a VFIO driver (${now})`);
  }

  private journalEntry(
    plan: DevicePlan,
    kind: Plan['kind'],
    i: number,
    op: Step['op'],
  ): JournalEntry {
    const steps: readonly Step[] = plan.steps;
    const override =
      steps.find((s): s is Extract<Step, { op: 'set-override' }> => s.op === 'set-override')
        ?.driver ?? null;
    return {
      address: plan.address,
      // An interrupted SR-IOV resize leaves the PF's driver alone: undoing it as a bind is a no-op.
      kind: kind === 'unbind' ? 'unbind' : 'bind',
      original: plan.from,
      target: {
        driver: plan.target?.driver ?? null,
        override: kind === 'unbind' ? plan.original.override : override,
      },
      step: i,
      op,
      pid: process.pid,
      at: new Date().toISOString(),
    };
  }

  /** Runs one device's steps; on failure restores it. Returns the result. */
  async device(plan: DevicePlan, kind: Plan['kind']): Promise<DeviceResult> {
    const warnings = [...plan.warnings];
    const steps: StepResult[] = [];
    const base = {
      address: plan.address,
      from: plan.from.driver,
      target: plan.target?.driver ?? null,
      refusals: plan.refusals,
    };
    if (plan.status !== 'planned') {
      const status = plan.status === 'noop' ? 'noop' : plan.status;
      return {
        ...base,
        status,
        driver: plan.from.driver,
        steps,
        warnings,
        error: plan.refusals.map((r) => r.message).join('; ') || null,
      };
    }
    const stop = this.o.interrupted?.();
    if (stop)
      return {
        ...base,
        status: 'failed',
        driver: plan.from.driver,
        steps,
        warnings,
        error: `not started: interrupted by ${stop}`,
      };
    for (let i = 0; i < plan.steps.length; i++) {
      const s = plan.steps[i]!;
      this.journal.record(this.journalEntry(plan, kind, i, s.op));
      this.o.beforeStep?.(plan, s, i);
      try {
        const sig = this.o.interrupted?.();
        if (sig) throw new StepError(`interrupted by ${sig} before this step`);
        await this.step(plan, s, warnings);
        steps.push({ op: s.op, description: describeStep(s), done: true });
      } catch (e) {
        const error = errText(e);
        steps.push({ op: s.op, description: describeStep(s), done: false, error });
        const rb = await this.rollback(plan, kind);
        this.journal.clear(plan.address);
        if (kind === 'bind') await this.undoHooks(plan, i, warnings);
        const msg = `${describeStep(s)} failed: ${error}`;
        return {
          ...base,
          status: 'failed',
          driver: driverOf(this.o.root, plan.address),
          steps,
          warnings,
          error: rb ? `${msg}; ${rb}` : `${msg}; rolled back to ${plan.from.driver ?? 'no driver'}`,
        };
      }
    }
    if (kind === 'bind') {
      writeRecord(this.o.root, {
        address: plan.address,
        originalDriver: plan.original.driver,
        originalOverride: plan.original.override,
        driver: plan.target?.driver ?? null,
        at: new Date().toISOString(),
      });
    } else if (kind === 'unbind') removeRecord(this.o.root, plan.address);
    this.journal.clear(plan.address);
    return {
      ...base,
      status: 'ok',
      driver: driverOf(this.o.root, plan.address),
      steps,
      warnings,
      error: null,
    };
  }

  /**
   * A bind rolled back after hooks ran: each hook that ran gets `post-unbind` (target: the driver
   * the device went back to), so it can undo what it did at pre-bind (VFs removed, firmware
   * options set). Their failures are warnings: the device is already back.
   */
  async undoHooks(plan: DevicePlan, failedAt: number, warnings: string[]): Promise<void> {
    const ran = [
      ...new Set(
        plan.steps.slice(0, failedAt + 1).flatMap((s) => (s.op === 'hook' ? [s.path] : [])),
      ),
    ];
    for (const path of ran) {
      const r = await this.hook(path, {
        event: 'post-unbind',
        address: plan.address,
        targetDriver: plan.from.driver,
        previousDriver: plan.target?.driver ?? null,
        device: plan.device ?? null,
        steps: [],
      });
      if (r.status === 'failed')
        warnings.push(
          `post-unbind hook ${path} (after the rollback) failed${r.output ? `: ${r.output.trim()}` : ''}`,
        );
    }
  }

  /** Back to plan.from. Returns null on success, else what is wrong now. */
  async rollback(plan: DevicePlan, kind: Plan['kind']): Promise<string | null> {
    for (const undo of (this.undoChown.get(plan.address) ?? []).reverse())
      await undo().catch(() => undefined);
    this.undoChown.delete(plan.address);
    // Either way the device goes back where it was: on its VFIO driver for a failed unbind (never
    // left driverless), on its original driver for a failed bind.
    const r = await restore(this.o.root, this.o.io, plan.address, plan.from);
    // A record written by this run (no earlier one) no longer describes the device.
    if (kind === 'bind' && plan.original === plan.from) removeRecord(this.o.root, plan.address);
    return r;
  }
}

/** Put a device back on `want.driver` with `want.override`. Returns null or what went wrong. */
export async function restore(
  root: HostRoot,
  io: KernelIo,
  address: string,
  want: { driver: string | null; override: string | null },
): Promise<string | null> {
  const problems: string[] = [];
  const attempt = async (what: string, f: () => Promise<void>) => {
    try {
      await f();
    } catch (e) {
      problems.push(`${what}: ${errText(e)}`);
    }
  };
  const dev = `/sys/bus/pci/devices/${address}`;
  // Write only what differs: a rollback after a failed pre-bind hook changes nothing at all.
  if (overrideOf(root, address) !== want.override) {
    await attempt('restore driver_override', () =>
      io.write(`${dev}/driver_override`, want.override ?? '\n'),
    );
  }
  const now = driverOf(root, address);
  if (now !== want.driver) {
    if (now !== null)
      await attempt(`unbind from ${now}`, () =>
        io.write(`/sys/bus/pci/drivers/${now}/unbind`, address),
      );
    if (want.driver !== null) {
      await attempt('drivers_probe', () => io.write('/sys/bus/pci/drivers_probe', address));
      const after = driverOf(root, address);
      if (after !== want.driver) {
        if (after !== null)
          await attempt(`unbind from ${after}`, () =>
            io.write(`/sys/bus/pci/drivers/${after}/unbind`, address),
          );
        await attempt(`bind to ${want.driver}`, () =>
          io.write(`/sys/bus/pci/drivers/${want.driver}/bind`, address),
        );
      }
    }
  }
  const final = driverOf(root, address);
  // Where it should be: intermediate errors (an ENODEV race on unbind) do not matter.
  if (final === want.driver) return null;
  return `ROLLBACK INCOMPLETE: ${address} is on ${final ?? 'no driver'} instead of ${want.driver ?? 'no driver'} (${problems.join('; ') || 'no error reported'}); run 'vfioctl recover' or rebind it by hand`;
}

/** Finish handing a device back to the host: clear the override, leave VFIO, reprobe. */
export async function completeRelease(
  root: HostRoot,
  io: KernelIo,
  address: string,
  override: string | null,
): Promise<string | null> {
  const dev = `/sys/bus/pci/devices/${address}`;
  try {
    await io.write(`${dev}/driver_override`, override ?? '\n');
    const now = driverOf(root, address);
    if (now !== null && onVfio(root, address))
      await io.write(`/sys/bus/pci/drivers/${now}/unbind`, address);
    if (driverOf(root, address) === null) await io.write('/sys/bus/pci/drivers_probe', address);
  } catch (e) {
    return `release of ${address} incomplete: ${errText(e)}; run 'vfioctl recover'`;
  }
  return null;
}

/**
 * Runs a plan: independent units concurrently, the devices of one unit (an IOMMU group) in order.
 */
export async function execute(plan: Plan, o: ExecOptions): Promise<DeviceResult[]> {
  const runner = new Runner(o);
  const units = new Map<string, DevicePlan[]>();
  for (const d of plan.devices) units.set(d.unit, [...(units.get(d.unit) ?? []), d]);
  const results = new Map<string, DeviceResult>();
  const queue = [...units.values()];
  const worker = async () => {
    for (let u = queue.shift(); u; u = queue.shift()) {
      const done: DevicePlan[] = [];
      for (const d of u) {
        o.onDeviceStart?.(d);
        const r = await runner.device(d, plan.kind);
        o.onDeviceDone?.(d);
        results.set(d.address, r);
        if (r.status !== 'ok' || u.length === 1) o.onResult?.(d, r);
        if (r.status === 'failed' && u.length > 1) {
          // A group moves as a whole: put the members already moved back too.
          for (const prev of done.reverse()) {
            const rb = await runner.rollback(prev, plan.kind);
            const old = results.get(prev.address)!;
            const warnings = [...old.warnings];
            // Its hooks ran to the end (post-bind too): each is told the bind was undone, as for a
            // device that failed itself.
            if (plan.kind === 'bind') await runner.undoHooks(prev, prev.steps.length - 1, warnings);
            results.set(prev.address, {
              ...old,
              status: 'failed',
              driver: driverOf(o.root, prev.address),
              warnings,
              error: `rolled back because ${d.address} failed${rb ? `; ${rb}` : ''}`,
            });
          }
          for (const prev of done) o.onResult?.(prev, results.get(prev.address)!);
          for (const rest of u.slice(u.indexOf(d) + 1)) {
            const nr: DeviceResult = {
              address: rest.address,
              status: 'failed',
              from: rest.from.driver,
              driver: rest.from.driver,
              target: rest.target?.driver ?? null,
              steps: [],
              refusals: [],
              warnings: [],
              error: `not attempted: ${d.address} in the same unit failed`,
            };
            results.set(rest.address, nr);
            o.onResult?.(rest, nr);
            o.onDeviceDone?.(rest);
          }
          break;
        }
        if (r.status === 'ok') done.push(d);
      }
      // A unit that moved as a whole is final only now.
      if (u.length > 1 && !u.some((d) => results.get(d.address)?.status === 'failed'))
        for (const d of done) o.onResult?.(d, results.get(d.address)!);
    }
  };
  await Promise.all(
    Array.from({ length: Math.max(1, Math.min(o.concurrency ?? 8, queue.length)) }, worker),
  );
  return plan.devices.map((d) => results.get(d.address)!);
}
