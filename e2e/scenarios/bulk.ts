// Binding many devices at once (issue 7, item 3): one `vfioctl bind` of 16 devices (12 VFs of the
// emulated SR-IOV NVMe plus four single-function devices, three of them on host drivers), which
// runs independent devices concurrently, against a sequential `driverctl set-override` loop over
// the same devices. Only correctness is asserted; the two wall times are reported (TCG is noisy).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { OLDEST_AND_NEWEST, type Scenario, type ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { expectOnVfio, resultFor, type ApplyJson } from './common';

const DRIVERCTL = '/usr/sbin/driverctl';
const RECORDS = '/run/vfioctl/bound';
const VF_COUNT = 12;
const OTHERS = ['e1000e', 'virtioNetModern', 'virtioNetLegacy', 'edu'] as const;
const ROUNDS = 2;

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(2)} s`;
}

/**
 * Every device back where the scenario found it (host driver or none, override cleared): vfioctl's
 * binds with `vfioctl unbind` (which also drops its records), driverctl's with plain sysfs writes
 * (`driverctl unset-override` exits 1 for a device no host driver takes, like the VFs here).
 */
function reset(
  ctx: ScenarioContext,
  tool: 'vfioctl' | 'driverctl',
  start: ReadonlyMap<string, sysfs.DeviceState>,
  what: string,
): void {
  const devices = [...start.keys()];
  if (tool === 'vfioctl') {
    const un = ctx.cliJson<ApplyJson>(['unbind', ...devices, '--json'], 0, {
      timeoutMs: 180_000,
    }).json;
    for (const a of devices)
      ctx.ok(
        ['ok', 'noop'].includes(resultFor(ctx, un, a).status),
        `unbind ${a}: ${resultFor(ctx, un, a).status}`,
      );
  } else for (const [a, s] of start) sysfs.restore(a, s);
  const left = fs.existsSync(RECORDS) ? fs.readdirSync(RECORDS) : [];
  if (left.length > 0) ctx.fail(`${what}: vfioctl records left in ${RECORDS}: ${left.join(' ')}`);
  const wrong = [...start].filter(
    ([a, s]) => JSON.stringify(sysfs.stateOf(a)) !== JSON.stringify(s),
  );
  if (wrong.length > 0)
    ctx.fail(
      `${what}: not reset: ${wrong.map(([a]) => `${a} ${sysfs.describe(sysfs.stateOf(a))}`).join('; ')}`,
    );
  ctx.note(`ok: ${what}: all ${start.size} devices back to their starting state`);
}

function bindWithVfioctl(ctx: ScenarioContext, devices: readonly string[]): number {
  const r = ctx.cli(['bind', '--driver', 'vfio-pci', ...devices, '--json'], { timeoutMs: 180_000 });
  ctx.expectExit(r, 0);
  const json = JSON.parse(r.stdout) as ApplyJson;
  for (const a of devices) ctx.eq(resultFor(ctx, json, a).status, 'ok', `vfioctl: ${a} status`);
  return r.ms;
}

function bindWithDriverctl(ctx: ScenarioContext, devices: readonly string[]): number {
  const t0 = Date.now();
  for (const a of devices) {
    const r = spawnSync(DRIVERCTL, ['--nosave', 'set-override', a, 'vfio-pci'], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    if (r.status !== 0)
      ctx.fail(
        `driverctl --nosave set-override ${a} vfio-pci: exit ${r.status}: ${`${r.stderr ?? ''}${r.stdout ?? ''}`.trim()}`,
      );
  }
  const ms = Date.now() - t0;
  ctx.note(
    `$ for each of the ${devices.length} devices: driverctl --nosave set-override ADDR vfio-pci  -> all exit 0 (${ms}ms)`,
  );
  return ms;
}

export const bulkBind: Scenario = {
  name: 'bulk-bind-vs-driverctl',
  title:
    'one vfioctl bind of 16 devices (12 SR-IOV VFs + 4 NICs/devices) vs a driverctl loop: all end on vfio-pci',
  boots: ['iommu'],
  kernels: OLDEST_AND_NEWEST,
  run(ctx) {
    if (!fs.existsSync(DRIVERCTL))
      ctx.fail(
        `${DRIVERCTL} is missing: provisioning installs the driverctl package (e2e/kernels.ts HOST_PACKAGES)`,
      );
    const pf = ctx.dev('nvme');
    const attr = (n: string): string => `${sysfs.PCI_DEVICES}/${pf}/${n}`;
    const total = Number(sysfs.attr(pf, 'sriov_totalvfs'));
    if (total < VF_COUNT)
      ctx.fail(
        `${pf} sriov_totalvfs = ${total}, the scenario needs ${VF_COUNT} (machine.ts: sriov_max_vfs)`,
      );
    try {
      ctx.eq(
        sysfs.write(attr('sriov_drivers_autoprobe'), '0'),
        null,
        'write 0 > sriov_drivers_autoprobe',
      );
      ctx.eq(
        sysfs.write(attr('sriov_numvfs'), String(VF_COUNT)),
        null,
        `write ${VF_COUNT} > sriov_numvfs`,
      );
      const vfs = sysfs.vfsOf(pf);
      ctx.eq(vfs.length, VF_COUNT, `${pf} VFs (${vfs.join(' ')})`);
      const devices = [...vfs, ...OTHERS.map((r) => ctx.dev(r))];
      const groups = new Set(devices.map((a) => sysfs.iommuGroupOf(a)));
      ctx.ok(
        !groups.has(null) && groups.size === devices.length,
        `each of the ${devices.length} devices has its own IOMMU group (independent units)`,
      );
      const start = sysfs.snapshot(devices);
      ctx.note(
        `starting state: ${[...start].map(([a, s]) => `${a.slice(5)} ${s.driver ?? '-'}`).join(', ')}`,
      );

      // Neither tool pays for loading vfio-pci or for a cold start (node, bash and driverctl read
      // over 9p): load the module and run each once first.
      const mp = spawnSync('modprobe', ['vfio-pci'], { encoding: 'utf8' });
      ctx.eq(mp.status, 0, 'modprobe vfio-pci (before timing)');
      ctx.expectExit(ctx.cli(['list', '--json']), 0);
      spawnSync(DRIVERCTL, ['list-devices'], { encoding: 'utf8' });

      // Alternating, so neither always runs first: vfioctl, driverctl, driverctl, vfioctl, ...
      const times = { vfioctl: [] as number[], driverctl: [] as number[] };
      for (let round = 0; round < ROUNDS; round++) {
        const order =
          round % 2 === 0
            ? (['vfioctl', 'driverctl'] as const)
            : (['driverctl', 'vfioctl'] as const);
        for (const tool of order) {
          const ms =
            tool === 'vfioctl' ? bindWithVfioctl(ctx, devices) : bindWithDriverctl(ctx, devices);
          for (const a of devices) expectOnVfio(ctx, a, 'vfio-pci');
          times[tool].push(ms);
          ctx.note(
            `round ${round + 1}: ${tool}: ${devices.length} devices on vfio-pci in ${seconds(ms)}`,
          );
          // The next bind starts from the same state (plain sysfs writes, as the runner's
          // clean-up).
          reset(ctx, tool, start, `after ${tool} (round ${round + 1})`);
        }
      }
      const sum = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0);
      const v = sum(times.vfioctl) / ROUNDS;
      const d = sum(times.driverctl) / ROUNDS;
      ctx.figure(
        `${devices.length} devices to vfio-pci: one vfioctl bind ${seconds(v)} vs driverctl loop ${seconds(d)} ` +
          `(mean of ${ROUNDS}; vfioctl ${times.vfioctl.map(seconds).join(', ')}; driverctl ${times.driverctl.map(seconds).join(', ')}): ` +
          `vfioctl/driverctl = ${(v / d).toFixed(2)} (${(d / v).toFixed(1)}x faster)`,
      );
    } finally {
      for (const vf of sysfs.vfsOf(pf))
        sysfs.write(`${sysfs.PCI_DEVICES}/${vf}/driver_override`, '\n');
      sysfs.write(attr('sriov_numvfs'), '0');
      sysfs.write(attr('sriov_drivers_autoprobe'), '1');
    }
    ctx.eq(sysfs.vfsOf(pf), [], `${pf} VFs after clean-up`);
  },
};
