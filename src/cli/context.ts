// What every command gets: the host root, the kernel release, and where to write.
import * as fs from 'node:fs';
import { HostRoot } from '../host/root';
import type { KernelIo } from '../apply/kernel-io';
import type { ExecOptions } from '../apply/executor';
import { describeHolder } from '../apply/lock';
import { Host } from '../ops/host';
import { EXIT, VfioctlError } from '../util/diag';
import { relaxedTrustWarning, trustPolicy, type TrustPolicy } from '../host/trust';

export interface GlobalOptions {
  root?: string;
  kernel?: string;
  wait?: string;
  nosave?: boolean;
  noprobe?: boolean;
  bus?: string;
}

export interface Io {
  out(s: string): void;
  err(s: string): void;
  env: NodeJS.ProcessEnv;
  /**
   * What writes to the kernel (default: sysfs under the root, and modprobe). The unit tests put
   * the simulated driver core here, and may stop a run before a chosen step.
   */
  kernelIo?: (root: HostRoot) => KernelIo;
  beforeStep?: ExecOptions['beforeStep'];
}

export interface Context {
  /** The operations on this host (the library API the CLI is a client of). */
  readonly host: Host;
  readonly root: HostRoot;
  readonly kernel: string | undefined;
  readonly io: Io;
  /** driverctl's options given before its verb. */
  readonly flags: { readonly nosave?: boolean; readonly noprobe?: boolean; readonly bus?: string };
}

export const DEFAULT_WAIT_SECONDS = 30;

function waitMs(given: string | undefined): number {
  if (given === undefined) return DEFAULT_WAIT_SECONDS * 1000;
  const s = Number(given);
  if (given.trim() === '' || !Number.isFinite(s) || s < 0 || s > 86_400) throw new VfioctlError(`--wait '${given}': give a number of seconds from 0 to 86400`, EXIT.BAD_INPUT);
  return Math.round(s * 1000);
}

export function makeContext(g: GlobalOptions, io: Io): Context {
  const dir = g.root ?? io.env.VFIOCTL_ROOT ?? '/';
  // A mistyped --root must not read as an empty host ("no devices") or create a tree somewhere.
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) throw new VfioctlError(`--root ${dir}: no such directory`, EXIT.BAD_INPUT);
  const probe = new HostRoot(dir);
  if (g.kernel !== undefined && (!/^[A-Za-z0-9._+~-]{1,128}$/.test(g.kernel) || !probe.exists(`/lib/modules/${g.kernel}`))) {
    throw new VfioctlError(`--kernel '${g.kernel}': no module tree ${probe.path(`/lib/modules/${g.kernel}`)}; 'ls ${probe.path('/lib/modules')}' lists the kernels`, EXIT.BAD_INPUT);
  }
  const host = new Host({
    root: dir,
    kernel: g.kernel,
    trust: trustPolicy(io.env),
    env: io.env,
    waitMs: waitMs(g.wait),
    ...(io.kernelIo ? { kernelIo: io.kernelIo(probe) } : {}),
    beforeStep: io.beforeStep,
    events: {
      lockWait: (h, ms) => io.err(`vfioctl: waiting for the lock held by ${describeHolder(h)} (up to ${ms / 1000} s; --wait SECONDS)\n`),
      signal: (sig) => io.err(`vfioctl: ${sig}: finishing the step in flight, then rolling back and stopping\n`),
      recovered: (r) => {
        for (const x of r.recovered) io.err(`vfioctl: recovered ${x.address} from an interrupted ${x.kind} (${x.interruptedAt}): now on ${x.driver ?? 'no driver'}${x.error ? `; ${x.error}` : ''}\n`);
        for (const u of r.unreadable) io.err(`vfioctl: warning: unreadable journal entry ${u}\n`);
      },
    },
  });
  return { host, root: host.root, kernel: g.kernel, io, flags: { nosave: g.nosave, noprobe: g.noprobe, bus: g.bus } };
}

/** The trust policy for hooks and configuration; a relaxed one is announced every time. */
export function trust(ctx: Context): TrustPolicy {
  const w = relaxedTrustWarning(ctx.host.trust);
  if (w) ctx.io.err(`vfioctl: warning: ${w}\n`);
  return ctx.host.trust;
}

/**
 * `--kernel OTHER` on the running system is for previews: the plan is made for that kernel's
 * modules, which the running kernel cannot load. Writing commands refuse it unless dry-run.
 */
export function refuseForeignKernelWrite(ctx: Context, dryRun: boolean | undefined): void {
  if (dryRun || ctx.kernel === undefined || !ctx.root.isLive) return;
  const running = ctx.root.kernelRelease();
  if (running !== undefined && running !== ctx.kernel) {
    throw new VfioctlError(`--kernel ${ctx.kernel} is not the running kernel (${running}): its plan can only be previewed; add --dry-run`, EXIT.BAD_INPUT);
  }
}

export function printWarnings(ctx: Context, warnings: readonly string[]): void {
  for (const w of warnings) ctx.io.err(`vfioctl: warning: ${w}\n`);
}
