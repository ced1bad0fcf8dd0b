// npm run test:e2e -- provisions what the suite needs, boots each kernel under QEMU (at most two
// VMs at a time), runs the scenarios inside, prints the report and exits non-zero on any failure.
//
// Options (after `--`): --kernel ID (5.10, 6.1, 6.12; repeatable), --scenario NAME (repeatable),
// --all-pairs (every same-kernel reboot pair on every kernel it can run on, not just the default
// rotation), --provision-only, --verbose (stream the guests' consoles).
// Environment: VFIOCTL_E2E_CACHE (default /var/cache/vfioctl-e2e), VFIOCTL_E2E_JOBS (parallel
// VMs, default 2), VFIOCTL_E2E_SCENARIO_TIMEOUT (seconds per scenario, default 300; a VM gets
// VFIOCTL_E2E_BOOT_TIMEOUT, default 180, plus that for each of its scenarios).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { runChain, type BootEnv, type BootOutcome } from './boot';
import { KERNELS } from './kernels';
import { formatMs, log } from './lib/log';
import { killChildrenOnSignal } from './lib/proc';
import { chains, planBoots, pool } from './plan';
import { printReport } from './report';
import { nodeArgv } from '../test/support/interpreter';
import { SCENARIOS } from './scenarios';
import { cacheDir, prune } from './setup/cache';
import { provision } from './setup/provision';

const REPO = path.resolve(__dirname, '../..');
const KEEP_RUNS = 5;

interface Options {
  readonly kernels: readonly string[];
  readonly scenarios: readonly string[];
  readonly provisionOnly: boolean;
  readonly verbose: boolean;
  readonly allPairs: boolean;
}

function parseOptions(argv: readonly string[]): Options {
  const { values } = parseArgs({
    args: [...argv],
    options: {
      kernel: { type: 'string', multiple: true },
      scenario: { type: 'string', multiple: true },
      'provision-only': { type: 'boolean' },
      verbose: { type: 'boolean' },
      'all-pairs': { type: 'boolean' },
    },
  });
  const kernels = values.kernel ?? KERNELS.map((k) => k.id);
  for (const k of kernels)
    if (!KERNELS.some((s) => s.id === k))
      throw new Error(`unknown --kernel ${k} (known: ${KERNELS.map((s) => s.id).join(', ')})`);
  const scenarios = values.scenario ?? [];
  for (const s of scenarios)
    if (!SCENARIOS.some((x) => x.name === s))
      throw new Error(
        `unknown --scenario ${s} (known: ${SCENARIOS.map((x) => x.name).join(', ')})`,
      );
  return {
    kernels,
    scenarios,
    provisionOnly: !!values['provision-only'],
    verbose: !!values.verbose,
    allPairs: !!values['all-pairs'],
  };
}

/** The guest sees the host's / except what its /init mounts over: those paths cannot be used. */
function checkVisibleInGuest(paths: Record<string, string>): void {
  for (const [what, p] of Object.entries(paths)) {
    const real = fs.existsSync(p) ? fs.realpathSync(p) : path.resolve(p);
    const hidden = ['/run', '/proc', '/sys', '/dev'].find(
      (m) => real === m || real.startsWith(`${m}/`),
    );
    if (hidden)
      throw new Error(
        `the ${what} is under ${hidden} (${real}), which the guest mounts its own file system over; move it elsewhere`,
      );
  }
}

function prepareRunDir(): string {
  const runs = path.join(REPO, 'build/e2e-runs');
  fs.mkdirSync(runs, { recursive: true });
  const old = fs.readdirSync(runs).sort();
  prune(runs, new Set(old.slice(-(KEEP_RUNS - 1))));
  const dir = path.join(runs, new Date().toISOString().replace(/[:.]/g, '-'));
  // 0755 whatever the umask: vfioctl keeps its code cache beside the launcher copied here only in
  // a directory no one else can write (src/cli/launcher.ts).
  fs.mkdirSync(dir, { mode: 0o755 });
  return dir;
}

async function main(): Promise<number> {
  const t0 = Date.now();
  const opts = parseOptions(process.argv.slice(2));
  killChildrenOnSignal();

  // The command as installed: the launcher and the bundle it starts (dist/vfioctl, vfioctl.js).
  const dist = ['vfioctl', 'vfioctl.js'].map((f) => path.join(REPO, 'dist', f));
  const runner = path.join(REPO, 'build/e2e/guest/main.js');
  for (const f of [...dist, runner])
    if (!fs.existsSync(f))
      throw new Error(
        `${f} is missing: run \`npm run build && tsc -p e2e/tsconfig.json\` first (npm run test:e2e does)`,
      );

  checkVisibleInGuest({
    repository: REPO,
    'node binary': process.execPath,
    'cache (VFIOCTL_E2E_CACHE)': cacheDir(),
  });

  const initScript = fs.readFileSync(path.join(REPO, 'e2e/guest/init'));
  const kernels = await provision({
    cache: cacheDir(),
    kernels: KERNELS.filter((k) => opts.kernels.includes(k.id)),
    initScript,
  });
  if (opts.provisionOnly) return 0;

  const runDir = prepareRunDir();
  const jobs = Math.max(1, Number(process.env.VFIOCTL_E2E_JOBS) || 2);
  const env: BootEnv = {
    runDir,
    vfioctl: path.join(runDir, 'vfioctl'),
    runner,
    node: process.execPath,
    cpus: Math.max(1, Math.floor(os.cpus().length / jobs)),
    memoryMb: 1536,
    scenarioTimeoutMs: (Number(process.env.VFIOCTL_E2E_SCENARIO_TIMEOUT) || 300) * 1000,
    bootTimeoutMs: (Number(process.env.VFIOCTL_E2E_BOOT_TIMEOUT) || 180) * 1000,
  };
  for (const f of dist) fs.copyFileSync(f, path.join(runDir, path.basename(f)));
  // Its code cache, as the package's postinst makes it (the guests run this same node binary), so
  // that every scenario and boot starts vfioctl the way an installed host does.
  const [node, ...argv] = nodeArgv(env.vfioctl);
  const cache = spawnSync(node!, [...argv, '--write-code-cache'], {
    encoding: 'utf8',
  });
  if (cache.status !== 0)
    throw new Error(`vfioctl --write-code-cache: exit ${cache.status}: ${cache.stderr.trim()}`);
  log(cache.stdout.trim());
  if (process.env.VFIOCTL_E2E_VM_TIMEOUT)
    log(
      "VFIOCTL_E2E_VM_TIMEOUT is no longer read: a VM's limit follows from VFIOCTL_E2E_SCENARIO_TIMEOUT and its scenario count",
    );

  const boots = planBoots(kernels, opts.scenarios, undefined, { allPairs: opts.allPairs });
  for (const s of opts.scenarios)
    if (!boots.some((b) => b.scenarios.some((x) => x.name === s)))
      log(
        `scenario ${s}: no boot of the selected kernels runs it (a kernel-change reboot needs both kernels)`,
      );
  log(
    `${boots.length} boots (${boots.map((b) => `${b.name}: ${b.scenarios.length} scenarios`).join('; ')}), ${jobs} at a time; logs in ${runDir}`,
  );
  const outcomes: BootOutcome[] = (
    await pool(
      jobs,
      chains(boots).map(
        (chain) => () =>
          runChain(chain, env, {
            start: (b) =>
              log(
                `${b.name}: booting ${b.kernel.release}${b.iommu ? ' with an emulated IOMMU' : ' without an IOMMU'}${b.reboot ? ` (reboot pair ${b.reboot.chain}, boot ${b.reboot.stage} of 2)` : ''}`,
              ),
            line: (b, line) => {
              if (opts.verbose || /^E2E: scenario \S+: /.test(line)) log(`${b.name}| ${line}`);
            },
            done: (b, o) =>
              log(`${b.name}: done in ${formatMs(o.vm.ms)}${o.problem ? ` (${o.problem})` : ''}`),
          }),
      ),
    )
  ).flat();
  fs.writeFileSync(
    path.join(runDir, 'results.json'),
    JSON.stringify(
      outcomes.map((o) => ({
        boot: o.plan.name,
        problem: o.problem,
        ms: o.vm.ms,
        facts: o.facts,
        results: o.results,
      })),
      null,
      2,
    ) + '\n',
  );
  const t = printReport(outcomes, Date.now() - t0, (s) => process.stdout.write(s));
  return t.failed > 0 ? 1 : 0;
}

main().then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    process.stderr.write(`\ne2e: ${(e as Error).stack ?? String(e)}\n`);
    process.stdout.write('0 passed, 1 failed\n');
    process.exitCode = 1;
  },
);
