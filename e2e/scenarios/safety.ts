// Safety checks against real kernel state: a configured NIC, the guest's own root filesystem,
// a shared IOMMU group, and a kernel booted without an IOMMU.
import { spawnSync } from 'node:child_process';
import type { Scenario, ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { MACHINE } from '../machine';
import { expectOnHost, expectOnVfio, expectUnchanged, resultFor, type ApplyJson } from './common';

export function ip(ctx: ScenarioContext, args: readonly string[]): string {
  const r = spawnSync('ip', args, { encoding: 'utf8' });
  ctx.note(
    `$ ip ${args.join(' ')} -> exit ${r.status}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ''}`,
  );
  if (r.status !== 0) ctx.fail(`ip ${args.join(' ')} failed: ${r.stderr.trim()}`);
  return r.stdout;
}

export const nicInUse: Scenario = {
  name: 'nic-in-use-refused',
  title: 'a NIC that is up with an address is refused without --force',
  boots: ['iommu'],
  run(ctx) {
    const nic = ctx.dev('e1000eNic');
    const ifname = sysfs.netdevsOf(nic)[0] ?? ctx.fail(`${nic} has no interface`);
    ip(ctx, ['link', 'set', ifname, 'up']);
    ip(ctx, ['addr', 'add', '192.0.2.10/24', 'dev', ifname]);
    ip(ctx, ['-6', 'addr', 'add', '2001:db8::10/64', 'dev', ifname, 'nodad']);
    const before = sysfs.snapshot([nic]);
    const refused = ctx.cliJson<ApplyJson>(['bind', nic, '--json'], 3).json;
    const r = resultFor(ctx, refused, nic);
    ctx.eq(r.status, 'refused', `bind ${nic} status`);
    ctx.ok(
      JSON.stringify(r.refusals ?? r.error).includes(ifname),
      `the refusal names ${ifname}: ${JSON.stringify(r.refusals ?? r.error)}`,
    );
    expectUnchanged(ctx, before, 'after the refused bind');
    ctx.ok(
      ip(ctx, ['-o', 'addr', 'show', 'dev', ifname]).includes('192.0.2.10/24'),
      `${ifname} still has 192.0.2.10/24`,
    );

    const forced = ctx.cliJson<ApplyJson>(['bind', nic, '--force', '--json']).json;
    ctx.eq(resultFor(ctx, forced, nic).status, 'ok', `bind --force ${nic} status`);
    expectOnVfio(ctx, nic, 'vfio-pci');
    ctx.eq(sysfs.netdevsOf(nic), [], `${nic} interfaces while on vfio-pci`);

    ctx.cliJson<ApplyJson>(['unbind', nic, '--json']);
    expectOnHost(ctx, nic, MACHINE.e1000eNic.hostDriver);
  },
};

export const rootDevicesRefused: Scenario = {
  name: 'root-devices-refused',
  title: "the devices the guest's own root filesystem (and results share) live on are refused",
  boots: ['iommu'],
  run(ctx) {
    for (const role of ['rootfs', 'results'] as const) {
      const a = ctx.dev(role);
      const before = sysfs.snapshot([a]);
      // Ask for the plan first: if vfioctl would go ahead, stop here rather than pull the guest's
      // root from under it (the VM would hang and every later scenario would be lost).
      const plan = ctx.cli(['bind', a, '--dry-run', '--json']);
      if (plan.code !== 3)
        ctx.fail(
          `bind ${a} --dry-run (${MACHINE[role].note}) exits ${plan.code}, not 3: vfioctl would unbind it\n${plan.stdout.slice(0, 1500)}`,
        );
      const refused = ctx.cliJson<ApplyJson>(['bind', a, '--json'], 3).json;
      const r = resultFor(ctx, refused, a);
      ctx.eq(r.status, 'refused', `bind ${a} status`);
      ctx.note(`refusals: ${JSON.stringify(r.refusals ?? r.error)}`);
      expectUnchanged(ctx, before, `after the refused bind of ${a}`);
    }
  },
};

export const sharedIommuGroup: Scenario = {
  name: 'shared-iommu-group',
  title: "a device in a shared IOMMU group (q35's 00:1f.x) is refused alone, moved with --group",
  boots: ['iommu'],
  run(ctx) {
    const roles = ['lpc', 'sata', 'smbus'] as const;
    const members = roles.map((r) => ctx.dev(r));
    const group =
      sysfs.iommuGroupOf(ctx.dev('smbus')) ?? ctx.fail(`${ctx.dev('smbus')} has no IOMMU group`);
    ctx.eq(sysfs.groupMembers(group), members, `members of IOMMU group ${group}`);
    const before = sysfs.snapshot(members);

    const refused = ctx.cliJson<ApplyJson>(['bind', ctx.dev('smbus'), '--json'], 3).json;
    const r = resultFor(ctx, refused, ctx.dev('smbus'));
    ctx.eq(r.status, 'refused', `bind ${ctx.dev('smbus')} status`);
    ctx.note(`refusals: ${JSON.stringify(r.refusals ?? r.error)}`);
    expectUnchanged(ctx, before, 'after the refused bind');

    const moved = ctx.cliJson<ApplyJson>(['bind', ctx.dev('smbus'), '--group', '--json']).json;
    for (const a of members) {
      ctx.eq(resultFor(ctx, moved, a).status, 'ok', `bind --group: ${a} status`);
      expectOnVfio(ctx, a, 'vfio-pci');
    }

    const back = ctx.cliJson<ApplyJson>(['unbind', ...members, '--json']).json;
    for (const role of roles) {
      ctx.eq(resultFor(ctx, back, ctx.dev(role)).status, 'ok', `unbind ${ctx.dev(role)} status`);
      expectOnHost(ctx, ctx.dev(role), MACHINE[role].hostDriver);
    }
  },
};

export const noIommu: Scenario = {
  name: 'no-iommu-refused',
  title: 'a boot without an IOMMU gives the clear no-IOMMU error and leaves every device bound',
  boots: ['no-iommu'],
  run(ctx) {
    const nic = ctx.dev('e1000e');
    ctx.eq(sysfs.iommuGroupOf(nic), null, `${nic} IOMMU group (booted without an IOMMU)`);
    const before = sysfs.snapshot();
    const r = ctx.cli(['bind', nic, ctx.dev('virtioNetModern'), '--json']);
    ctx.expectExit(r, 3);
    const json = JSON.parse(r.stdout) as ApplyJson;
    const res = resultFor(ctx, json, nic);
    ctx.eq(res.status, 'refused', `bind ${nic} status`);
    const text = `${JSON.stringify(res.refusals ?? [])} ${res.error ?? ''} ${r.stderr}`;
    ctx.ok(
      /iommu/i.test(text),
      `the refusal explains the missing IOMMU: ${text.trim().slice(0, 300)}`,
    );
    // --force must not get around a missing IOMMU: vfio-pci cannot work at all.
    const forced = ctx.cli(['bind', nic, '--force', '--json']);
    ctx.ok(
      forced.code === 3 || forced.code === 1,
      `bind --force without an IOMMU fails (exit ${forced.code})`,
    );
    expectUnchanged(ctx, before, 'every device after the refused binds');
  },
};
