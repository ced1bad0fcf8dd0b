// Binding: the default intent picks the best VFIO driver and loads it; explicit variants are
// checked against their ID table; a failed probe is rolled back; unbind gives devices back.
import type { Scenario } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { MACHINE } from '../machine';
import {
  expectOnHost,
  expectOnVfio,
  expectRegisteredWithVfio,
  expectUnchanged,
  resultFor,
  unloadModules,
  type ApplyJson,
} from './common';

export const bindDefault: Scenario = {
  name: 'bind-default-intent',
  title:
    'bind picks virtio_vfio_pci for 1af4:1041 and vfio-pci for e1000e, loading the modules itself',
  boots: ['iommu'],
  run(ctx) {
    const nic = ctx.dev('e1000e');
    const virtio = ctx.dev('virtioNetModern');
    // Linux 6.1 has no virtio_vfio_pci (added in 6.8): there the best driver is vfio-pci.
    const virtioDriver = ctx.hasVariant('virtio_vfio_pci') ? 'virtio_vfio_pci' : 'vfio-pci';
    unloadModules(ctx, ['virtio_vfio_pci', 'vfio_pci']);

    const e = ctx.cliJson<ApplyJson>(['bind', nic, '--json']).json;
    ctx.eq(resultFor(ctx, e, nic).status, 'ok', `bind ${nic} status`);
    expectOnVfio(ctx, nic, 'vfio-pci');
    ctx.ok(sysfs.moduleLoaded('vfio_pci'), 'vfioctl loaded vfio_pci');

    const v = ctx.cliJson<ApplyJson>(['bind', virtio, '--json']).json;
    ctx.eq(resultFor(ctx, v, virtio).status, 'ok', `bind ${virtio} status`);
    expectOnVfio(ctx, virtio, virtioDriver);
    if (virtioDriver !== 'vfio-pci')
      ctx.ok(sysfs.moduleLoaded(virtioDriver), `vfioctl loaded ${virtioDriver}`);

    // Binding again is a no-op.
    const again = ctx.cliJson<ApplyJson>(['bind', nic, '--json']).json;
    ctx.eq(resultFor(ctx, again, nic).status, 'noop', `second bind ${nic} status`);

    ctx.cliJson<ApplyJson>(['unbind', nic, virtio, '--json']);
    expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);
    expectOnHost(ctx, virtio, MACHINE.virtioNetModern.hostDriver);
  },
};

export const variantOutsideIdTable: Scenario = {
  name: 'variant-outside-id-table',
  title:
    'an explicit variant outside its ID table is refused (exit 3, nothing changes); --force binds it',
  boots: ['iommu'],
  run(ctx) {
    const nic = ctx.dev('e1000e');
    const variant = 'mlx5_vfio_pci'; // ID table: 15b3:101e only
    if (!ctx.hasVariant(variant))
      ctx.skip(
        `${variant} is not available for this kernel (variant drivers exist from Linux 5.15, mlx5_vfio_pci from 5.18)`,
      );
    const before = sysfs.snapshot([nic]);
    const refused = ctx.cliJson<ApplyJson>(['bind', nic, '--driver', variant, '--json'], 3).json;
    const r = resultFor(ctx, refused, nic);
    ctx.eq(r.status, 'refused', `bind ${nic} --driver ${variant} status`);
    ctx.note(`refusals: ${JSON.stringify(r.refusals ?? r.error)}`);
    expectUnchanged(ctx, before, 'after the refused bind');

    const forced = ctx.cliJson<ApplyJson>([
      'bind',
      nic,
      '--driver',
      variant,
      '--force',
      '--json',
    ]).json;
    ctx.eq(resultFor(ctx, forced, nic).status, 'ok', `bind --force ${nic} status`);
    expectOnVfio(ctx, nic, variant);

    ctx.cliJson<ApplyJson>(['unbind', nic, '--json']);
    expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);
  },
};

export const forcedProbeFails: Scenario = {
  name: 'forced-variant-probe-fails',
  title: 'a forced variant whose probe fails (qat_vfio_pci on a non-VF) exits 1 and is rolled back',
  boots: ['iommu'],
  run(ctx) {
    const nic = ctx.dev('e1000e');
    if (!ctx.hasVariant('qat_vfio_pci')) ctx.skip('qat_vfio_pci does not exist before Linux 6.10');
    const r = ctx.cli(['bind', nic, '--driver', 'qat_vfio_pci', '--force', '--json']);
    ctx.expectExit(r, 1);
    const res = resultFor(ctx, JSON.parse(r.stdout) as ApplyJson, nic);
    ctx.eq(res.status, 'failed', `bind ${nic} status`);
    ctx.note(`error: ${res.error}`);
    expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);
  },
};

export const unbindAll: Scenario = {
  name: 'unbind-returns-host-drivers',
  title: 'unbind returns every device to its host driver',
  boots: ['iommu'],
  run(ctx) {
    const roles = ['e1000e', 'virtioNetModern', 'virtioNetLegacy', 'edu'] as const;
    const addrs = roles.map((r) => ctx.dev(r));
    const bound = ctx.cliJson<ApplyJson>(['bind', ...addrs, '--json']).json;
    for (const a of addrs) {
      ctx.eq(resultFor(ctx, bound, a).status, 'ok', `bind ${a} status`);
      ctx.ok(sysfs.driverOf(a) !== null, `${a} is on ${sysfs.driverOf(a)}`);
      expectRegisteredWithVfio(ctx, a);
    }
    const un = ctx.cliJson<ApplyJson>(['unbind', ...addrs, '--json']).json;
    for (const role of roles) {
      const a = MACHINE[role].address;
      ctx.eq(resultFor(ctx, un, a).status, 'ok', `unbind ${a} status`);
      expectOnHost(ctx, a, MACHINE[role].hostDriver);
    }
    const left = sysfs.devVfio().filter((n) => /^\d+$/.test(n));
    ctx.eq(left, [], '/dev/vfio group nodes left');
    // The host drivers work again: the NICs have their interfaces back.
    ctx.ok(
      sysfs.netdevsOf(ctx.dev('e1000e')).length === 1,
      `${ctx.dev('e1000e')} has an interface again`,
    );
    ctx.ok(
      sysfs.netdevsOf(ctx.dev('virtioNetModern')).length === 1,
      `${ctx.dev('virtioNetModern')} has an interface again`,
    );
  },
};
