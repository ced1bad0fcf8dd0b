// Shared checks: the kernel state a scenario expects, read from sysfs and /dev/vfio.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';

/** One device's entry in the JSON output of bind/unbind. */
export interface DeviceResultJson {
  readonly address: string;
  readonly status: string;
  readonly driver: string | null;
  readonly target?: string | null;
  readonly steps: readonly {
    readonly op: string;
    readonly description?: string;
    readonly done?: boolean;
    readonly error?: string;
  }[];
  readonly refusals?: readonly {
    readonly check: string;
    readonly message: string;
    readonly forceable?: boolean;
  }[];
  readonly warnings: readonly string[];
  readonly error: string | null;
}

export interface ApplyJson {
  readonly results: readonly DeviceResultJson[];
  readonly recovered?: readonly unknown[];
}

export function resultFor(
  ctx: ScenarioContext,
  json: ApplyJson,
  address: string,
): DeviceResultJson {
  const r = json.results?.find((x) => x.address === address);
  if (!r) ctx.fail(`no result for ${address} in ${JSON.stringify(json).slice(0, 500)}`);
  return r;
}

/**
 * The device is registered with VFIO: vfio-dev/vfioN (6.1+; the class exists once vfio.ko is
 * loaded), and its group's /dev/vfio/<group>. Before 6.1 (5.10) there is no vfio-dev class at all.
 */
export function expectRegisteredWithVfio(ctx: ScenarioContext, address: string): void {
  const s = sysfs.stateOf(address);
  if (sysfs.hasVfioDevClass())
    ctx.ok(s.vfioDev !== null, `${address} has vfio-dev/${s.vfioDev ?? ''}`);
  else ctx.eq(s.vfioDev, null, `${address} vfio-dev/ (this kernel has no vfio-dev class)`);
  if (s.group === null) ctx.fail(`${address} has no IOMMU group`);
  ctx.ok(fs.existsSync(`/dev/vfio/${s.group}`), `/dev/vfio/${s.group} exists for ${address}`);
}

/** The device is on `driver`, a VFIO driver: override names it, registered with VFIO. */
export function expectOnVfio(ctx: ScenarioContext, address: string, driver: string): void {
  const s = sysfs.stateOf(address);
  ctx.eq(s.driver, driver, `${address} driver link`);
  ctx.eq(s.override, driver, `${address} driver_override`);
  expectRegisteredWithVfio(ctx, address);
}

/**
 * The device is back on its host driver (or on none, when it has none), override cleared, no vfio.
 */
export function expectOnHost(
  ctx: ScenarioContext,
  address: string,
  hostDriver: string | null,
): void {
  const s = sysfs.stateOf(address);
  ctx.eq(s.driver, hostDriver, `${address} driver link`);
  ctx.eq(s.override, null, `${address} driver_override`);
  ctx.eq(s.vfioDev, null, `${address} vfio-dev/`);
}

/** Every listed device is exactly as it was in `before`. */
export function expectUnchanged(
  ctx: ScenarioContext,
  before: ReadonlyMap<string, sysfs.DeviceState>,
  what: string,
): void {
  const changed: string[] = [];
  for (const [a, s] of before) {
    const now = sysfs.stateOf(a);
    if (JSON.stringify(now) !== JSON.stringify(s))
      changed.push(`${a}: was ${sysfs.describe(s)}, now ${sysfs.describe(now)}`);
  }
  if (changed.length > 0) ctx.fail(`${what}: device state changed:\n  ${changed.join('\n  ')}`);
  ctx.note(`ok: ${what}: ${[...before.keys()].join(' ')} unchanged`);
}

/** Step ops of a dry-run bind/unbind for one device. */
export function plannedOps(
  ctx: ScenarioContext,
  args: readonly string[],
  address: string,
): string[] {
  const { json } = ctx.cliJson<ApplyJson>([...args, '--dry-run', '--json']);
  const ops = resultFor(ctx, json, address).steps.map((s) => s.op);
  ctx.note(`planned steps for ${address}: ${ops.join(' -> ')}`);
  return ops;
}

/**
 * Unloads modules so a scenario can prove vfioctl loads them itself (fails if something holds
 * them).
 */
export function unloadModules(ctx: ScenarioContext, modules: readonly string[]): void {
  for (const m of modules) {
    if (!sysfs.moduleLoaded(m)) continue;
    const r = spawnSync('modprobe', ['-r', m], { encoding: 'utf8' });
    ctx.note(`modprobe -r ${m}: exit ${r.status}${r.stderr ? ` ${r.stderr.trim()}` : ''}`);
  }
  for (const m of modules)
    ctx.ok(!sysfs.moduleLoaded(m), `module ${m} is not loaded before the bind`);
}

/** `dir` (read-only in the guest) writable for `body`: a tmpfs-backed overlay, gone afterwards. */
export function withWritable(ctx: ScenarioContext, dir: string, body: () => void): void {
  const base = `/run/e2e-overlay${dir.replace(/\//g, '-')}`;
  fs.rmSync(base, { recursive: true, force: true });
  for (const d of [base, `${base}/upper`, `${base}/work`]) fs.mkdirSync(d, { mode: 0o755 });
  const run = (argv: string[]) => {
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
    ctx.note(`$ ${argv.join(' ')} -> exit ${r.status}`);
    if (r.status !== 0) ctx.fail(`${argv.join(' ')}: ${r.stderr}`);
  };
  run([
    'mount',
    '-t',
    'overlay',
    'overlay',
    '-o',
    `lowerdir=${dir},upperdir=${base}/upper,workdir=${base}/work`,
    dir,
  ]);
  try {
    body();
  } finally {
    spawnSync('umount', [dir]);
    fs.rmSync(base, { recursive: true, force: true });
  }
}
