// One boot of the suite: prepare the results share (boot.env for /init, plan.json for the guest
// runner), run the VM, and turn what the guest wrote into one result per planned scenario.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GuestPlan, Scenario, ScenarioResult } from './guest/scenario';
import { GUEST_RESULTS_DIR } from './machine';
import type { KernelArtifacts } from './setup/kernel';
import { runVm, type VmResult } from './vm';

export interface BootPlan {
  /** e.g. "6.12" or "6.12-no-iommu" */
  readonly name: string;
  readonly kernel: KernelArtifacts;
  readonly iommu: boolean;
  readonly scenarios: readonly Scenario[];
}

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
  readonly timeoutMs: number;
}

function shellQuote(v: string): string {
  return `'${v.replace(/'/g, `'\\''`)}'`;
}

function prepareShare(plan: BootPlan, env: BootEnv, share: string): void {
  fs.rmSync(share, { recursive: true, force: true });
  fs.mkdirSync(share, { recursive: true });
  const vars = {
    E2E_MODULES: path.join(plan.kernel.root, 'lib/modules'),
    E2E_NODE: env.node,
    E2E_RUNNER: env.runner,
    E2E_PLAN: `${GUEST_RESULTS_DIR}/plan.json`,
  };
  fs.writeFileSync(path.join(share, 'boot.env'), Object.entries(vars).map(([k, v]) => `${k}=${shellQuote(v)}\n`).join(''));
  const guestPlan: GuestPlan = {
    boot: plan.name,
    kernel: { id: plan.kernel.id, release: plan.kernel.release, variants: plan.kernel.variants },
    iommu: plan.iommu,
    vfioctl: env.vfioctl,
    scenarios: plan.scenarios.map((s) => s.name),
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

export async function runBoot(plan: BootPlan, env: BootEnv, onLine?: (line: string) => void): Promise<BootOutcome> {
  const share = path.join(env.runDir, plan.name);
  const consoleFile = path.join(env.runDir, `${plan.name}.console.log`);
  prepareShare(plan, env, share);
  const vm = await runVm(
    {
      name: plan.name,
      kernel: plan.kernel,
      iommu: plan.iommu,
      shareDir: share,
      consoleFile,
      timeoutMs: env.timeoutMs,
      cpus: env.cpus,
      memoryMb: env.memoryMb,
    },
    onLine,
  );

  const finished = vm.console.includes('E2E: runner done');
  const problem = vm.timedOut
    ? `the VM did not power off within ${env.timeoutMs / 1000}s and was killed`
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
      message: started ? `no result: the guest died or hung during this scenario (${problem ?? 'see the console'})` : `not run: ${problem ?? 'the guest runner stopped before it'}`,
      ms: 0,
      transcript: [],
      kmsg: [],
    };
  });
  return { plan, vm, consoleFile, results, facts: readJson(path.join(share, 'facts.json')), problem };
}
