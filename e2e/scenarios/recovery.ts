// A vfioctl killed half-way (SIGKILL at a chosen step, via VFIOCTL_TEST_KILL_AT) leaves the kernel
// half-done; the next invocation must put the device back in a consistent state.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { OLDEST_AND_NEWEST, type Scenario, type ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { MACHINE } from '../machine';
import { expectOnHost, expectOnVfio, plannedOps } from './common';

const JOURNAL = '/run/vfioctl/journal';

function journalEntries(): string[] {
  try {
    return fs.readdirSync(JOURNAL);
  } catch {
    return [];
  }
}

/**
 * The CLI with a kill point (test machinery, not in the bundle): build/test/support/kill-cli.js.
 */
const KILL_CLI = path.resolve(__dirname, '../../test/support/kill-cli.js');

function killAt(ctx: ScenarioContext, op: string, args: readonly string[]): void {
  const r = ctx.cli(args, { env: { VFIOCTL_TEST_KILL_AT: op }, entry: KILL_CLI });
  if (r.signal !== 'SIGKILL')
    ctx.fail(
      `VFIOCTL_TEST_KILL_AT=${op} vfioctl ${args.join(' ')}: expected to die by SIGKILL, got exit ${r.code} signal ${r.signal}\n${r.stderr}`,
    );
  ctx.note(
    `killed before ${op}: ${sysfs.describe(sysfs.stateOf(args[1]!))}; journal: ${journalEntries().join(' ') || '(empty)'}`,
  );
}

export const killBetweenUnbindAndProbe: Scenario = {
  name: 'kill-between-unbind-and-probe',
  title: 'vfioctl killed between unbind and probe: the next invocation repairs the device',
  boots: ['iommu'],
  run(ctx) {
    const nic = ctx.dev('e1000e');
    const ops = plannedOps(ctx, ['bind', nic], nic);
    ctx.ok(
      ops.indexOf('unbind') >= 0 && ops.indexOf('unbind') < ops.indexOf('probe'),
      `bind plans unbind before probe (${ops.join(' -> ')})`,
    );

    killAt(ctx, 'probe', ['bind', nic]);
    // The kernel state a kill at that point leaves: override set, no driver.
    ctx.eq(sysfs.driverOf(nic), null, `${nic} driver after the kill`);
    ctx.eq(sysfs.overrideOf(nic), 'vfio-pci', `${nic} driver_override after the kill`);
    ctx.ok(journalEntries().length > 0, `the journal in ${JOURNAL} records the interrupted bind`);

    // A read-only command names it and the fix, and writes nothing.
    const r = ctx.cli(['list', '--json']);
    ctx.expectExit(r, 0);
    ctx.ok(
      r.stderr.includes(`${nic} was left half-done`) && r.stderr.includes('vfioctl recover'),
      `list names the half-done ${nic} and 'vfioctl recover' (stderr: ${r.stderr.trim()})`,
    );
    ctx.eq(sysfs.driverOf(nic), null, `${nic} driver after list (list never writes)`);
    // The next writing command repairs it first (an unbind of the same device: a no-op after that).
    ctx.expectExit(ctx.cli(['unbind', nic]), 0);
    expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);
    ctx.eq(journalEntries(), [], `${JOURNAL} after the repair`);
  },
};

export const killAtEveryStep: Scenario = {
  name: 'kill-at-every-step',
  title: 'a bind or unbind killed before any of its steps is repaired by `vfioctl recover`',
  boots: ['iommu'],
  kernels: OLDEST_AND_NEWEST,
  run(ctx) {
    const nic = ctx.dev('e1000e');
    const host = MACHINE.e1000e.hostDriver;
    // bind: an interrupted bind goes back to where the device was.
    for (const op of [...new Set(plannedOps(ctx, ['bind', nic], nic))]) {
      killAt(ctx, op, ['bind', nic]);
      ctx.cliJson(['recover', '--json']);
      expectOnHost(ctx, nic, host);
      ctx.eq(journalEntries(), [], `journal after recovering a bind killed before ${op}`);
    }
    // unbind: an interrupted unbind is finished (the device was on its way home).
    ctx.cliJson(['bind', nic, '--json']);
    expectOnVfio(ctx, nic, 'vfio-pci');
    for (const op of [...new Set(plannedOps(ctx, ['unbind', nic], nic))]) {
      killAt(ctx, op, ['unbind', nic]);
      ctx.cliJson(['recover', '--json']);
      expectOnHost(ctx, nic, host);
      ctx.eq(journalEntries(), [], `journal after recovering an unbind killed before ${op}`);
      ctx.cliJson(['bind', nic, '--json']);
    }
    ctx.cliJson(['unbind', nic, '--json']);
    expectOnHost(ctx, nic, host);
  },
};
