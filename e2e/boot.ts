// One boot of the suite: prepare the results share (boot.env for /init, plan.json for the guest
// runner), run the VM, and turn what the guest wrote into one result per planned scenario.
// A reboot pair is two boots run one after the other (runChain): the directory holding the
// guest's persistent /etc, /usr/lib and /var/lib moves from the first boot's share to the
// second's, and is deleted when the pair is done.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GuestPlan, Scenario, ScenarioResult } from './guest/scenario';
import { GUEST_RESULTS_DIR } from './machine';
import type { KernelArtifacts } from './setup/kernel';
import { cacheDir } from './setup/cache';
import { runVm, type VmResult } from './vm';

export interface BootPlan {
  /** e.g. "6.12" or "6.12-no-iommu" */
  readonly name: string;
  readonly kernel: KernelArtifacts;
  readonly iommu: boolean;
  readonly scenarios: readonly Scenario[];
  /** Set for the two boots of a reboot pair. */
  readonly reboot?: RebootPlan;
}

export interface RebootPlan {
  /** Name of the pair ("6.12-reboot"); its boots are named `${chain}1` and `${chain}2`. */
  readonly chain: string;
  readonly stage: 1 | 2;
  /** Kernels whose module trees are under /lib/modules when this boot starts ("installed"). */
  readonly installed: readonly KernelArtifacts[];
  /** The kernel of the other boot of the pair. */
  readonly other: KernelArtifacts;
}

/** Where the persistent layer sits on a reboot boot's results share (guest path). */
export const GUEST_PERSIST_DIR = `${GUEST_RESULTS_DIR}/persist`;
/**
 * Hands a boot to systemd as PID 1 (sourced by guest/init; the guest sees the repository at this
 * path).
 */
export const SYSTEMD_BOOT_SCRIPT = path.resolve(__dirname, '../../e2e/guest/systemd-boot.sh');
/** The kernel command line of a reboot boot also names its root, as a 9p-root VM's does. */
export const REBOOT_CMDLINE = ['root=hostroot', 'rootfstype=9p'] as const;

export interface BootOutcome {
  readonly plan: BootPlan;
  readonly vm: VmResult;
  readonly consoleFile: string;
  readonly results: readonly ScenarioResult[];
  /** Facts the guest recorded before the first scenario (kernel, devices, groups). */
  readonly facts: Record<string, unknown> | null;
  /** Why the boot as a whole went wrong (timeout, guest runner never finished), else null. */
  readonly problem: string | null;
}

export interface BootEnv {
  /** Directory of this run (the vfioctl copy, one share directory per boot, console logs). */
  readonly runDir: string;
  /** The bundled vfioctl to test (a copy, so a rebuild during the run cannot change it). */
  readonly vfioctl: string;
  /** The compiled guest runner (build/e2e/guest/main.js). */
  readonly runner: string;
  readonly node: string;
  readonly cpus: number;
  readonly memoryMb: number;
  /** Time limit of one scenario, counted from the guest's "scenario NAME ..." line. */
  readonly scenarioTimeoutMs: number;
  /** What a VM gets besides its scenarios: boot, coldplug, power-off. */
  readonly bootTimeoutMs: number;
}

/** A VM's own limit follows from its scenarios: a slow machine gives slow results, not failures. */
export function vmTimeoutMs(
  env: Pick<BootEnv, 'scenarioTimeoutMs' | 'bootTimeoutMs'>,
  scenarios: number,
): number {
  return env.bootTimeoutMs + scenarios * env.scenarioTimeoutMs;
}

/**
 * Watches the guest's console for `E2E: scenario NAME ...` (started) and `E2E: scenario NAME:
 * STATUS` (finished) and calls `overrun(NAME)` when one runs longer than `limitMs`.
 */
export class ScenarioWatchdog {
  private timer: NodeJS.Timeout | undefined;
  /** The scenario that ran over its limit, if one did. */
  overrun: string | null = null;

  constructor(
    private readonly limitMs: number,
    private readonly onOverrun: (scenario: string) => void,
  ) {}

  line(line: string): void {
    const m = /^E2E: scenario (\S+)( \.\.\.|: )/.exec(line);
    if (!m) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    if (m[2] !== ' ...') return;
    const name = m[1]!;
    this.timer = setTimeout(() => {
      this.overrun = name;
      this.onOverrun(name);
    }, this.limitMs);
  }

  stop(): void {
    clearTimeout(this.timer);
  }
}

function shellQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

function prepareShare(plan: BootPlan, env: BootEnv, share: string): void {
  fs.rmSync(share, { recursive: true, force: true });
  fs.mkdirSync(share, { recursive: true });
  const trees = (plan.reboot?.installed ?? [plan.kernel]).map((k) =>
    path.join(k.root, 'lib/modules'),
  );
  for (const t of trees)
    if (/\s/.test(t))
      throw new Error(
        `${t}: the guest's /init takes module trees as a space-separated list; move the cache (VFIOCTL_E2E_CACHE) to a path without spaces`,
      );
  const vars: Record<string, string> = {
    E2E_MODULES: trees.join(' '),
    E2E_NODE: env.node,
    E2E_RUNNER: env.runner,
    E2E_PLAN: `${GUEST_RESULTS_DIR}/plan.json`,
  };
  if (plan.reboot) vars.E2E_PERSIST = GUEST_PERSIST_DIR;
  if (plan.reboot?.stage === 2 && plan.scenarios.some((s) => s.reboot?.systemd))
    vars.E2E_SYSTEMD = SYSTEMD_BOOT_SCRIPT;
  fs.writeFileSync(
    path.join(share, 'boot.env'),
    Object.entries(vars)
      .map(([k, v]) => `${k}=${shellQuote(v)}\n`)
      .join(''),
  );
  const guestPlan: GuestPlan = {
    boot: plan.name,
    kernel: { id: plan.kernel.id, release: plan.kernel.release, variants: plan.kernel.variants },
    iommu: plan.iommu,
    vfioctl: env.vfioctl,
    scenarios: plan.scenarios.map((s) => s.name),
    ...(plan.reboot && {
      reboot: {
        chain: plan.reboot.chain,
        stage: plan.reboot.stage,
        persist: GUEST_PERSIST_DIR,
        other: {
          id: plan.reboot.other.id,
          release: plan.reboot.other.release,
          variants: plan.reboot.other.variants,
        },
        otherModules: path.join(plan.reboot.other.root, 'lib/modules', plan.reboot.other.release),
      },
    }),
  };
  fs.writeFileSync(path.join(share, 'plan.json'), JSON.stringify(guestPlan, null, 2) + '\n');
}

function readJson<T>(file: string): T | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
  } catch {
    return null;
  }
}

/**
 * Runs one boot. `persistFrom`: for the second boot of a reboot pair, the host directory holding
 * the first boot's persistent layer; it is moved onto this boot's share (the first boot starts
 * with an empty one).
 */
export async function runBoot(
  plan: BootPlan,
  env: BootEnv,
  onLine?: (line: string) => void,
  persistFrom?: string,
): Promise<BootOutcome> {
  const share = path.join(env.runDir, plan.name);
  const consoleFile = path.join(env.runDir, `${plan.name}.console.log`);
  prepareShare(plan, env, share);
  if (plan.reboot) {
    const persist = hostPersistDir(share);
    if (persistFrom) fs.renameSync(persistFrom, persist);
    else fs.mkdirSync(persist, { mode: 0o755 });
  }
  const timeoutMs = vmTimeoutMs(env, plan.scenarios.length);
  const stop = new AbortController();
  const watchdog = new ScenarioWatchdog(env.scenarioTimeoutMs, () => stop.abort());
  const own = builtInitramfs(plan, share, cacheDir());
  let vm: VmResult;
  try {
    vm = await runVm(
      {
        name: plan.name,
        kernel: plan.kernel,
        iommu: plan.iommu,
        extraCmdline: plan.reboot ? [...REBOOT_CMDLINE, ...own.cmdline] : [],
        ...(own.initrd && { initrd: own.initrd }),
        shareDir: share,
        consoleFile,
        timeoutMs,
        signal: stop.signal,
        cpus: env.cpus,
        memoryMb: env.memoryMb,
      },
      (line) => {
        watchdog.line(line);
        onLine?.(line);
      },
    );
  } finally {
    watchdog.stop();
  }

  const finished = vm.console.includes('E2E: runner done');
  const problem = watchdog.overrun
    ? `scenario ${watchdog.overrun} ran longer than its time limit of ${env.scenarioTimeoutMs / 1000}s (VFIOCTL_E2E_SCENARIO_TIMEOUT) and the VM was stopped`
    : vm.timedOut
      ? `the VM did not power off within ${timeoutMs / 1000}s (${env.bootTimeoutMs / 1000}s plus ${env.scenarioTimeoutMs / 1000}s for each of its ${plan.scenarios.length} scenarios) and was killed`
      : !finished
        ? `the guest runner did not finish (QEMU exit ${vm.exitCode})`
        : null;
  const results = plan.scenarios.map((s): ScenarioResult => {
    const got = readJson<ScenarioResult>(path.join(share, 'results', `${s.name}.json`));
    if (got) return got;
    const started = fs.existsSync(path.join(share, 'results', `${s.name}.started`));
    return {
      scenario: s.name,
      boot: plan.name,
      status: 'fail',
      message: started
        ? `no result: the guest died or hung during this scenario (${problem ?? 'see the console'})`
        : `not run: ${problem ?? 'the guest runner stopped before it'}`,
      ms: 0,
      transcript: [],
      kmsg: [],
    };
  });
  return {
    plan,
    vm,
    consoleFile,
    results,
    facts: readJson(path.join(share, 'facts.json')),
    problem,
  };
}

/**
 * The first boot of a pair may leave an initramfs it built (initrd.img) and the kernel
 * command-line words it needs (initrd.cmdline) in its persistent directory: the second boot
 * starts from that initramfs instead of the suite's own.
 */
export function builtInitramfs(
  plan: BootPlan,
  share: string,
  cache?: string,
): { initrd?: string; cmdline: string[] } {
  const dir = hostPersistDir(share);
  if (plan.reboot?.stage !== 2 || !fs.existsSync(path.join(dir, 'initrd.img')))
    return { cmdline: [] };
  // Kept by its inputs' key for the next run (the key says which image a first boot may reuse).
  const key = fs.existsSync(path.join(dir, 'initrd.key'))
    ? fs.readFileSync(path.join(dir, 'initrd.key'), 'utf8').trim()
    : '';
  if (
    cache &&
    /^[0-9a-f]{16}$/.test(key) &&
    !fs.existsSync(path.join(cache, 'initramfs', `${key}.img`))
  ) {
    fs.mkdirSync(path.join(cache, 'initramfs'), { recursive: true });
    fs.copyFileSync(path.join(dir, 'initrd.img'), path.join(cache, 'initramfs', `.${key}.tmp`));
    fs.renameSync(
      path.join(cache, 'initramfs', `.${key}.tmp`),
      path.join(cache, 'initramfs', `${key}.img`),
    );
  }
  const words = (
    fs.existsSync(path.join(dir, 'initrd.cmdline'))
      ? fs.readFileSync(path.join(dir, 'initrd.cmdline'), 'utf8')
      : ''
  )
    .split(/\s+/)
    .filter(Boolean);
  for (const w of words)
    if (!/^[\w.-]+=[\w./-]+$/.test(w))
      throw new Error(`initrd.cmdline: unexpected word ${JSON.stringify(w)}`);
  return { initrd: path.join(dir, 'initrd.img'), cmdline: words };
}

/** Host path of the persistent layer on a boot's share. */
export function hostPersistDir(share: string): string {
  return path.join(share, path.basename(GUEST_PERSIST_DIR));
}

/** The result of a boot that was not started because the one before it in its pair failed. */
function notRun(plan: BootPlan, env: BootEnv, why: string): BootOutcome {
  return {
    plan,
    vm: { ms: 0, exitCode: null, timedOut: false, console: '' },
    consoleFile: path.join(env.runDir, `${plan.name}.console.log`),
    results: plan.scenarios.map((s) => ({
      scenario: s.name,
      boot: plan.name,
      status: 'skip',
      message: why,
      ms: 0,
      transcript: [],
      kmsg: [],
    })),
    facts: null,
    problem: null,
  };
}

/**
 * Runs the boots of one chain in order: a single boot, or the two boots of a reboot pair (the
 * second is skipped when the first did not pass: its failure is reported already). The pair's
 * persistent layer is deleted afterwards.
 */
export async function runChain(
  chain: readonly BootPlan[],
  env: BootEnv,
  each: {
    start?: (b: BootPlan) => void;
    line?: (b: BootPlan, line: string) => void;
    done?: (b: BootPlan, o: BootOutcome) => void;
  } = {},
  boot: typeof runBoot = runBoot,
): Promise<BootOutcome[]> {
  const outcomes: BootOutcome[] = [];
  let persist: string | undefined;
  const places: string[] = []; // everywhere the layer may be: all deleted at the end
  try {
    for (const b of chain) {
      const before = outcomes[outcomes.length - 1];
      if (before && (before.problem || before.results.some((r) => r.status !== 'pass'))) {
        outcomes.push(
          notRun(b, env, `not run: the boot before it (${before.plan.name}) did not pass`),
        );
        continue;
      }
      each.start?.(b);
      const from = persist;
      if (b.reboot) places.push((persist = hostPersistDir(path.join(env.runDir, b.name))));
      const o = await boot(b, env, each.line && ((l) => each.line!(b, l)), from);
      each.done?.(b, o);
      outcomes.push(o);
    }
  } finally {
    for (const p of places) fs.rmSync(p, { recursive: true, force: true });
  }
  return outcomes;
}
