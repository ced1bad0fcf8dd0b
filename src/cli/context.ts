// What every command gets: the host root, the kernel release, and where to write.
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import { HostRoot, hostRootProblem } from '../host/root';
import type { KernelIo } from '../apply/kernel-io';
import type { ExecOptions } from '../apply/executor';
import { describeHolder } from '../apply/lock';
import { Host, type Progress } from '../ops/host';
import { EXIT, VfioctlError } from '../util/diag';
import { relaxedTrustWarning, trustPolicy, type TrustPolicy } from '../host/trust';

export interface GlobalOptions {
  root?: string;
  hostRoot?: string;
  kernel?: string;
  wait?: string;
  nosave?: boolean;
  noprobe?: boolean;
  bus?: string;
  verbose?: boolean;
  debug?: boolean;
}

export interface Io {
  out(s: string): void;
  err(s: string): void;
  env: NodeJS.ProcessEnv;
  /**
   * Standard error is a terminal: writing commands show their progress there (one updating line).
   */
  errIsTTY?: boolean;
  /**
   * What writes to the kernel (default: sysfs under the root, and modprobe). The unit tests put
   * the simulated driver core here, and may stop a run before a chosen step.
   */
  kernelIo?: (root: HostRoot) => KernelIo;
  beforeStep?: ExecOptions['beforeStep'];
  /** Standard input, read whole (libvirt-hook's domain XML). */
  stdin?: () => string;
}

export interface Context {
  /** The operations on this host (the library API the CLI is a client of). */
  readonly host: Host;
  readonly root: HostRoot;
  readonly kernel: string | undefined;
  readonly io: Io;
  /** Clears the progress line, if one is shown; called when the command is done. */
  finish(): void;
  /** driverctl's options given before its verb. */
  readonly flags: {
    readonly nosave?: boolean;
    readonly noprobe?: boolean;
    readonly bus?: string;
    readonly debug?: boolean;
  };
}

export const DEFAULT_WAIT_SECONDS = 30;

function waitMs(given: string | undefined): number {
  if (given === undefined) return DEFAULT_WAIT_SECONDS * 1000;
  const s = Number(given);
  if (given.trim() === '' || !Number.isFinite(s) || s < 0 || s > 86_400)
    throw new VfioctlError(
      `--wait '${given}': give a number of seconds from 0 to 86400`,
      EXIT.BAD_INPUT,
    );
  return Math.round(s * 1000);
}

/**
 * Progress of a bind, unbind or apply of several devices on a terminal's stderr: one line (count,
 * the device being worked on, time since the command began), rewritten in place, cleared before
 * anything else is written and at the end. Never with --json or when stderr is not a terminal.
 */
class ProgressLine {
  private readonly start = Date.now();
  private last: Progress | null = null;
  private shown = false;
  private timer: NodeJS.Timeout | null = null;

  constructor(private readonly err: (s: string) => void) {}

  update(p: Progress): void {
    if (p.total < 2 || p.done >= p.total) {
      this.last = null;
      this.clear();
      return;
    }
    this.last = p;
    this.draw();
    // A slow step (a modprobe, a hook) still shows the time going by.
    this.timer ??= setInterval(() => this.draw(), 1000).unref();
  }

  private draw(): void {
    const p = this.last;
    if (!p) return;
    const secs = ((Date.now() - this.start) / 1000).toFixed(1);
    this.err(
      `\r\x1b[2Kvfioctl: ${p.kind} ${p.done}/${p.total}${p.current ? `: ${p.current}` : ''} (${secs} s)`,
    );
    this.shown = true;
  }

  /** Erases the line (before other output, and at the end). */
  clear(): void {
    if (this.shown) this.err('\r\x1b[2K');
    this.shown = false;
  }

  finish(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.last = null;
    this.clear();
  }
}

/**
 * Flags for reading thousands of devices, set before the host is read. Only on big hosts:
 * elsewhere neither pays, and loading node:v8 (which the bundle does on first use) costs every
 * short command ~4 ms.
 * - V8 doubles the young generation after each scavenge that keeps much alive (up to 16 MiB a
 *   semi-space), and reading thousands of devices keeps much alive: kept at its first size, the
 *   peak RSS of `list`/`status`/`apply` over 4,115 functions falls by ~13 MiB, at no cost in time
 *   (measured: slightly faster). Read by the GC whenever it sizes the space.
 * - Sparkplug back on: the installed command starts node without it (scripts/bundle.mjs), which
 *   short commands gain by, but the per-device loops run thousands of times, and baseline code
 *   serves them until TurboFan's is ready (`list --json` over 4,115 functions ~2 % faster).
 *   V8 reads the flag each time it considers compiling a function.
 */
const MANY_FUNCTIONS = 512;
function tuneForManyFunctions(): void {
  v8.setFlagsFromString('--semi-space-growth-factor=1');
  v8.setFlagsFromString('--sparkplug');
}

/** `progress`: show progress on stderr (it is a terminal and the output is not --json). */
export function makeContext(
  g: GlobalOptions,
  given: Io,
  opts: { progress?: boolean } = {},
): Context {
  const line = opts.progress && given.errIsTTY ? new ProgressLine((s) => given.err(s)) : null;
  // Anything else written while the line is shown goes on a clean line.
  const io: Io = line
    ? {
        ...given,
        out: (s) => (line.clear(), given.out(s)),
        err: (s) => (line.clear(), given.err(s)),
      }
    : given;
  const fixture = g.root ?? io.env.VFIOCTL_ROOT;
  const mounted = g.hostRoot ?? io.env.VFIOCTL_HOST_ROOT;
  if (fixture !== undefined && mounted !== undefined) {
    throw new VfioctlError(
      `--root ${fixture} and --host-root ${mounted} (or VFIOCTL_ROOT and VFIOCTL_HOST_ROOT) both name the host root: give one (--host-root for the live host's / mounted into a container, --root for a tree of files)`,
      EXIT.BAD_INPUT,
    );
  }
  const dir = mounted ?? fixture ?? '/';
  const trusted = trustPolicy(io.env);
  if (mounted !== undefined) {
    const why = hostRootProblem(mounted, trusted.uids);
    if (why) throw new VfioctlError(`--host-root ${why}`, EXIT.BAD_INPUT);
  }
  // A mistyped --root must not read as an empty host ("no devices") or create a tree somewhere.
  else if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory())
    throw new VfioctlError(`--root ${dir}: no such directory`, EXIT.BAD_INPUT);
  const probe = new HostRoot(dir, { hostMount: mounted !== undefined });
  if (probe.list('/sys/bus/pci/devices').length > MANY_FUNCTIONS) tuneForManyFunctions();
  if (
    g.kernel !== undefined &&
    (!/^[A-Za-z0-9._+~-]{1,128}$/.test(g.kernel) || !probe.exists(`/lib/modules/${g.kernel}`))
  ) {
    throw new VfioctlError(
      `--kernel '${g.kernel}': no module tree ${probe.path(`/lib/modules/${g.kernel}`)}; 'ls ${probe.path('/lib/modules')}' lists the kernels`,
      EXIT.BAD_INPUT,
    );
  }
  const host = new Host({
    root: dir,
    hostRoot: mounted !== undefined,
    kernel: g.kernel,
    trust: trusted,
    env: io.env,
    waitMs: waitMs(g.wait),
    ...(io.kernelIo ? { kernelIo: io.kernelIo(probe) } : {}),
    beforeStep: io.beforeStep,
    events: {
      lockWait: (h, ms) =>
        io.err(
          `vfioctl: waiting for the lock held by ${describeHolder(h)} (up to ${ms / 1000} s; --wait SECONDS)\n`,
        ),
      signal: (sig) =>
        io.err(`vfioctl: ${sig}: finishing the step in flight, then rolling back and stopping\n`),
      ...(line ? { progress: (p: Progress) => line.update(p) } : {}),
      recovered: (r) => {
        for (const x of r.recovered)
          io.err(
            `vfioctl: recovered ${x.address} from an interrupted ${x.kind} (${x.interruptedAt}): now on ${x.driver ?? 'no driver'}${x.error ? `; ${x.error}` : ''}\n`,
          );
        for (const u of r.unreadable) io.err(`vfioctl: warning: unreadable journal entry ${u}\n`);
      },
    },
  });
  return {
    host,
    root: host.root,
    kernel: g.kernel,
    io,
    finish: () => line?.finish(),
    flags: { nosave: g.nosave, noprobe: g.noprobe, bus: g.bus, debug: !!(g.verbose || g.debug) },
  };
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
  if (dryRun || ctx.kernel === undefined || !ctx.root.isRunning) return;
  const running = ctx.root.kernelRelease();
  if (running !== undefined && running !== ctx.kernel) {
    throw new VfioctlError(
      `--kernel ${ctx.kernel} is not the running kernel (${running}): its plan can only be previewed; add --dry-run`,
      EXIT.BAD_INPUT,
    );
  }
}

export function printWarnings(ctx: Context, warnings: readonly string[]): void {
  for (const w of warnings) ctx.io.err(`vfioctl: warning: ${w}\n`);
}
