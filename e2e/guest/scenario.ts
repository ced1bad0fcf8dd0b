// What a scenario is, and the context it runs in inside the guest.
import { spawnSync } from 'node:child_process';
import { MACHINE, type DeviceRole } from '../machine';
import { nodeArgv } from '../../test/support/interpreter';

/**
 * Which kind of boot a scenario needs. `reboot`: a pair of boots of one guest (with an IOMMU) whose
 * /etc, /usr/lib and /var/lib persist from the first boot to the second; the scenario runs in both
 * (ctx.plan.reboot.stage says which) and is the only scenario of those boots.
 */
export type BootKind = 'iommu' | 'no-iommu' | 'reboot';

export interface Scenario {
  /** Stable identifier (file-name like). */
  readonly name: string;
  /** One line: what the issue asks this scenario to prove. */
  readonly title: string;
  readonly boots: readonly BootKind[];
  /** Only on these kernels (plain boots; default: every kernel of the run). */
  readonly kernels?: readonly string[];
  /**
   * For `reboot` scenarios: the kernels of the two boots. `same`: one pair per selected kernel,
   * both boots on it; [first, second] (kernel ids): one pair, when both kernels are selected.
   */
  readonly reboot?: {
    readonly kernels: 'same' | readonly [string, string];
    /** With `same`: only these kernels (default: every kernel of the run). */
    readonly only?: readonly string[];
    /**
     * With `same`: the kernels of a default run, a subset of `only` (CI time: a pair costs 1.5 to 3
     * min under TCG). Each boot layer's pair runs on one Debian 12 kernel, the layers alternating
     * between 6.1 and 6.12 so that both kernels boot under systemd in every run; `--all-pairs`, or
     * naming the scenario with `--scenario`, runs it on every kernel of `only`.
     */
    readonly byDefault?: readonly string[];
    /**
     * The second boot comes up under systemd as PID 1 (guest/systemd-boot.sh), the runner as its
     * service.
     */
    readonly systemd?: boolean;
  };
  /** Runs in the guest; throws on failure, calls ctx.skip() when it cannot run. */
  run(ctx: ScenarioContext): void;
}

/** A kernel as the guest runner knows it. */
export interface GuestKernel {
  readonly id: string;
  readonly release: string;
  readonly variants: readonly string[];
}

/** Where a boot stands in a reboot pair. */
export interface RebootStage {
  /** The pair's name, e.g. "6.12-reboot" or "6.1-6.12-reboot". */
  readonly chain: string;
  /**
   * 1: the first boot (the runner coldplugs as usual); 2: the boot after the reboot (it does not).
   */
  readonly stage: 1 | 2;
  /**
   * Guest path of the copy of the persistent layer kept between the boots (on the results share).
   */
  readonly persist: string;
  /** The kernel of the other boot of the pair (the same one for a same-kernel reboot). */
  readonly other: GuestKernel;
  /** Host path of the other kernel's module tree (lib/modules/<release>), visible in the guest. */
  readonly otherModules: string;
}

/** Written by the host to the results share: what this boot is and what to run. */
export interface GuestPlan {
  readonly boot: string;
  readonly kernel: GuestKernel;
  readonly iommu: boolean;
  /** Set for the boots of a reboot pair. */
  readonly reboot?: RebootStage;
  /** vfioctl's bundled entry point (a copy taken when the run started). */
  readonly vfioctl: string;
  readonly scenarios: readonly string[];
}

export type Status = 'pass' | 'fail' | 'skip';

export interface ScenarioResult {
  readonly scenario: string;
  readonly boot: string;
  readonly status: Status;
  /** Failure message or skip reason. */
  readonly message: string | null;
  readonly ms: number;
  /** What happened, step by step: commands, exit codes, kernel state. */
  readonly transcript: readonly string[];
  /** Kernel log lines written while the scenario ran. */
  readonly kmsg: readonly string[];
  /** Measurements worth reading even when the scenario passes (the report lists them). */
  readonly figures?: readonly string[];
}

export class SkipScenario extends Error {
  override name = 'SkipScenario';
}

export class CheckFailed extends Error {
  override name = 'CheckFailed';
}

export interface CliResult {
  readonly args: readonly string[];
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

/**
 * The kernels whose boots prove Debian 12's own systemd, initramfs-tools and dracut (the guest
 * runs the host's userland): on Debian 11's 5.10 those would be bullseye's, and each boot pair
 * costs minutes under TCG.
 */
export const DEBIAN_12_KERNELS: readonly string[] = ['6.1', '6.12'];

/**
 * The oldest and the newest kernel, for scenarios whose kernel side is the VFIO sysfs ABI that
 * 6.1 shares with 6.12 (vfio-dev/, the ID table, reset_method) and 5.10 lacks: on 6.1 they
 * would prove nothing 6.12 does not, at a minute of TCG each (CI time). The scenarios that check
 * the kernel's own behaviour (binding, refusals, groups, SR-IOV, candidates, recovery) still run
 * on all three.
 */
export const OLDEST_AND_NEWEST: readonly string[] = ['5.10', '6.12'];

export interface CliOptions {
  readonly env?: Readonly<Record<string, string>>;
  readonly timeoutMs?: number;
  /**
   * Another entry point than the tested bundle (the kill-at-step CLI of the unit tests' support).
   */
  readonly entry?: string;
}

const show = (v: unknown): string =>
  typeof v === 'string' ? JSON.stringify(v) : (JSON.stringify(v) ?? String(v));

export class ScenarioContext {
  readonly transcript: string[] = [];
  readonly figures: string[] = [];
  private readonly t0 = Date.now();

  constructor(readonly plan: GuestPlan) {}

  /** PCI address of a device of the emulated machine. */
  dev(role: DeviceRole): string {
    return MACHINE[role].address;
  }

  hasVariant(module: string): boolean {
    return this.plan.kernel.variants.includes(module);
  }

  note(msg: string): void {
    this.transcript.push(`[${((Date.now() - this.t0) / 1000).toFixed(2)}s] ${msg}`);
  }

  /** A measurement for the report (never asserted: timings under TCG are noise). */
  figure(text: string): void {
    this.figures.push(text);
    this.note(`figure: ${text}`);
  }

  skip(reason: string): never {
    throw new SkipScenario(reason);
  }

  /** Runs the real vfioctl (node + the bundled CLI) with an argument array. */
  cli(args: readonly string[], opts: CliOptions = {}): CliResult {
    const t = Date.now();
    const env = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/run/e2e-home',
      TMPDIR: '/run/e2e-home',
      ...opts.env,
    };
    // As its interpreter line starts it (the launcher's flag), with this node.
    const [node, ...argv] = nodeArgv(opts.entry ?? this.plan.vfioctl);
    const r = spawnSync(node!, [...argv, ...args], {
      encoding: 'utf8',
      env,
      timeout: opts.timeoutMs ?? 60_000,
      killSignal: 'SIGKILL',
    });
    const res: CliResult = {
      args,
      code: r.status,
      signal: r.signal,
      stdout: r.stdout ?? '',
      stderr: r.stderr ?? '',
      ms: Date.now() - t,
    };
    const envNote = opts.env
      ? `${Object.entries(opts.env)
          .map(([k, v]) => `${k}=${v}`)
          .join(' ')} `
      : '';
    this.note(
      `$ ${envNote}vfioctl ${args.join(' ')}  -> ${r.error ? `error ${r.error.message}` : r.signal ? `killed by ${r.signal}` : `exit ${r.status}`} (${res.ms}ms)`,
    );
    const err = res.stderr.trim();
    if (err)
      this.note(
        err
          .split('\n')
          .slice(0, 12)
          .map((l) => `    stderr| ${l}`)
          .join('\n'),
      );
    return res;
  }

  /** Runs vfioctl, requires the exit code, and returns its stdout parsed as JSON. */
  cliJson<T>(
    args: readonly string[],
    expectCode = 0,
    opts: CliOptions = {},
  ): { result: CliResult; json: T } {
    const r = this.cli(args, opts);
    this.expectExit(r, expectCode);
    try {
      return { result: r, json: JSON.parse(r.stdout) as T };
    } catch {
      throw new CheckFailed(
        `vfioctl ${args.join(' ')}: stdout is not JSON:\n${r.stdout.slice(0, 2000)}`,
      );
    }
  }

  expectExit(r: CliResult, code: number): void {
    if (r.code !== code) {
      const out = [r.stderr.trim(), r.stdout.trim().slice(0, 1500)].filter(Boolean).join('\n');
      throw new CheckFailed(
        `vfioctl ${r.args.join(' ')}: expected exit ${code}, got ${r.signal ? `signal ${r.signal}` : `exit ${r.code}`}${out ? `\n${out}` : ''}`,
      );
    }
  }

  /** Fails the scenario unless actual deep-equals expected. */
  eq(actual: unknown, expected: unknown, what: string): void {
    if (JSON.stringify(actual) !== JSON.stringify(expected))
      throw new CheckFailed(`${what}: expected ${show(expected)}, got ${show(actual)}`);
    this.note(`ok: ${what} = ${show(actual)}`);
  }

  ok(cond: boolean, what: string): void {
    if (!cond) throw new CheckFailed(what);
    this.note(`ok: ${what}`);
  }

  fail(msg: string): never {
    throw new CheckFailed(msg);
  }
}
