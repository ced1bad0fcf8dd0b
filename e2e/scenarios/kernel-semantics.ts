// The driver-core semantics vfioctl (and the kernel model its unit tests run against,
// test/support/kernel-model.ts) rely on, checked with plain sysfs writes on the real kernel.
// Every fact here is written down in docs/kernel-behaviour.md; a kernel that behaves differently
// fails this scenario, and the table in its transcript shows exactly where.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { Scenario, ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';

const DEV = sysfs.PCI_DEVICES;
const PROBE = '/sys/bus/pci/drivers_probe';

/** "OK" or the errno code of a sysfs write. */
function w(path: string, value: string): string {
  return sysfs.write(path, value) ?? 'OK';
}

function sysfsParam(module: string, param: string): string {
  try {
    return fs.readFileSync(`/sys/module/${module}/parameters/${param}`, 'utf8').trim();
  } catch {
    return 'absent';
  }
}

const drv = (a: string): string => sysfs.driverOf(a) ?? 'no driver';

/** 5.10's bind_store() answers ENODEV for a bound device and for a failed probe (see below). */
const bind510 = (ctx: ScenarioContext): boolean => ctx.plan.kernel.id === '5.10';
const ovr = (a: string): string => JSON.stringify(sysfs.attr(a, 'driver_override'));

function modprobe(ctx: ScenarioContext, args: readonly string[]): void {
  const r = spawnSync('modprobe', args, { encoding: 'utf8' });
  ctx.note(
    `$ modprobe ${args.join(' ')} -> exit ${r.status}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ''}`,
  );
}

class Facts {
  private readonly differ: string[] = [];
  private count = 0;
  constructor(private readonly ctx: ScenarioContext) {}

  expect(fact: string, expected: string, observed: string): void {
    this.count++;
    if (expected !== observed)
      this.differ.push(`${fact}: expected ${expected}, kernel did ${observed}`);
    this.ctx.note(
      `${expected === observed ? 'holds' : 'DIFFERS'}: ${fact}: ${observed}${expected === observed ? '' : ` (expected ${expected})`}`,
    );
  }

  finish(): void {
    if (this.differ.length > 0)
      this.ctx.fail(
        `${this.differ.length} of ${this.count} kernel facts do not hold on ${this.ctx.plan.kernel.release}:\n  ${this.differ.join('\n  ')}`,
      );
  }
}

function driverOverride(ctx: ScenarioContext, f: Facts): void {
  const nic = ctx.dev('e1000e');
  const ov = `${DEV}/${nic}/driver_override`;
  f.expect('unset driver_override reads', '"(null)"', ovr(nic));
  w(ov, 'vfio-pci\n');
  f.expect('"vfio-pci\\n" is stored as', '"vfio-pci"', ovr(nic));
  w(ov, '');
  f.expect('a zero-length write changes nothing', '"vfio-pci"', ovr(nic));
  w(ov, '\n');
  f.expect('"\\n" clears it', '"(null)"', ovr(nic));
  f.expect('" " is stored as is', 'OK " "', `${w(ov, ' ')} ${ovr(nic)}`);
  f.expect('"a\\nb" is cut at the newline', 'OK "a"', `${w(ov, 'a\nb')} ${ovr(nic)}`);
  f.expect('4094 bytes', 'OK', w(ov, 'x'.repeat(4094)));
  f.expect('4095 bytes', 'EINVAL', w(ov, 'x'.repeat(4095)));
  w(ov, '\n');
  f.expect('override writes never unbind or probe', 'e1000e', drv(nic));
}

function bindUnbindProbe(ctx: ScenarioContext, f: Facts): void {
  const nic = ctx.dev('e1000e');
  const edu = ctx.dev('edu');
  modprobe(ctx, ['vfio_pci']);
  f.expect('drivers_probe of an unknown address', 'ENODEV', w(PROBE, '0000:00:1e.7'));
  f.expect('drivers_probe of a bound device', 'OK e1000e', `${w(PROBE, nic)} ${drv(nic)}`);
  f.expect(
    'unbind through a driver the device is not on',
    'ENODEV',
    w('/sys/bus/pci/drivers/vfio-pci/unbind', nic),
  );
  f.expect(
    'vfio-pci/bind of an unbound device, no override',
    'ENODEV',
    w('/sys/bus/pci/drivers/vfio-pci/bind', edu),
  );
  w(`${DEV}/${edu}/driver_override`, 'vfio-pci');
  f.expect(
    'vfio-pci/bind with the override set',
    'OK',
    w('/sys/bus/pci/drivers/vfio-pci/bind', edu),
  );
  // What shows a device is on VFIO: vfio-dev/vfioN from 6.1 on; 5.10 has only the group's node
  // (vfio.c: class "vfio", /dev/vfio/<group>), no vfio-dev class and no /dev/vfio/devices.
  const old = ctx.plan.kernel.id === '5.10';
  const group = sysfs.iommuGroupOf(edu);
  f.expect(
    '/dev/vfio/<group> of a device on vfio-pci',
    'present',
    group !== null && fs.existsSync(`/dev/vfio/${group}`) ? 'present' : 'absent',
  );
  f.expect(
    'vfio-dev/ under a device on vfio-pci (6.1+)',
    old ? 'absent' : 'present',
    sysfs.vfioDevOf(edu) !== null ? 'present' : 'absent',
  );
  f.expect(
    '/sys/class/vfio-dev (6.1+)',
    old ? 'absent' : 'present',
    sysfs.hasVfioDevClass() ? 'present' : 'absent',
  );
  if (old)
    f.expect(
      '/dev/vfio/devices (VFIO_DEVICE_CDEV)',
      'absent',
      fs.existsSync('/dev/vfio/devices') ? 'present' : 'absent',
    );
  else
    ctx.note(
      `/dev/vfio/devices: ${fs.existsSync('/dev/vfio/devices') ? fs.readdirSync('/dev/vfio/devices').join(' ') || 'empty' : 'absent'}`,
    );
  // reset_method appeared in 5.15 (5.10's pci-sysfs.c has no such attribute).
  f.expect(
    'reset_method attribute (5.15+)',
    old ? 'absent' : 'present',
    fs.existsSync(`${DEV}/${nic}/reset_method`) ? 'present' : 'absent',
  );
  // 5.10's bind_store(): `dev->driver == NULL && driver_match_device()`, else -ENODEV (later
  // kernels match first and answer EBUSY from device_driver_attach()).
  f.expect(
    'vfio-pci/bind again',
    bind510(ctx) ? 'ENODEV' : 'EBUSY',
    w('/sys/bus/pci/drivers/vfio-pci/bind', edu),
  );
  w(`${DEV}/${edu}/driver/unbind`, edu);
  w(`${DEV}/${edu}/driver_override`, '\n');
  // bind_store() checks the match before "already bound": no override means ENODEV, not EBUSY.
  f.expect(
    'vfio-pci/bind of a device on e1000e, no override',
    'ENODEV',
    w('/sys/bus/pci/drivers/vfio-pci/bind', nic),
  );
  w(`${DEV}/${nic}/driver_override`, 'vfio-pci');
  f.expect(
    'vfio-pci/bind of a device on e1000e, override vfio-pci',
    bind510(ctx) ? 'ENODEV' : 'EBUSY',
    w('/sys/bus/pci/drivers/vfio-pci/bind', nic),
  );
  w(`${DEV}/${nic}/driver_override`, '\n');
}

function variants(ctx: ScenarioContext, f: Facts): void {
  const nic = ctx.dev('e1000e');
  const virtio = ctx.dev('virtioNetModern');
  if (ctx.hasVariant('virtio_vfio_pci')) {
    modprobe(ctx, ['-r', 'virtio_vfio_pci']);
    w(`${DEV}/${virtio}/driver_override`, 'virtio_vfio_pci');
    w(`${DEV}/${virtio}/driver/unbind`, virtio);
    f.expect(
      'drivers_probe, override naming a driver not loaded',
      'OK no driver',
      `${w(PROBE, virtio)} ${drv(virtio)}`,
    );
    modprobe(ctx, ['virtio_vfio_pci']);
    f.expect('loading the module binds the waiting device', 'virtio_vfio_pci', drv(virtio));
    w(`${DEV}/${virtio}/driver_override`, '\n');
    w(`${DEV}/${virtio}/driver/unbind`, virtio);
    w(PROBE, virtio);
    f.expect('override cleared, variant loaded: drivers_probe picks', 'virtio-pci', drv(virtio));
  }
  if (ctx.hasVariant('mlx5_vfio_pci')) {
    modprobe(ctx, ['mlx5_vfio_pci']);
    w(`${DEV}/${nic}/driver_override`, 'mlx5_vfio_pci');
    w(`${DEV}/${nic}/driver/unbind`, nic);
    f.expect(
      'override mlx5_vfio_pci binds an e1000e (no ID-table check)',
      'OK mlx5_vfio_pci',
      `${w(PROBE, nic)} ${drv(nic)}`,
    );
    w(`${DEV}/${nic}/driver_override`, '\n');
    w(`${DEV}/${nic}/driver/unbind`, nic);
    w(PROBE, nic);
  }
  if (ctx.hasVariant('qat_vfio_pci')) {
    modprobe(ctx, ['qat_vfio_pci']);
    w(`${DEV}/${nic}/driver_override`, 'qat_vfio_pci');
    w(`${DEV}/${nic}/driver/unbind`, nic);
    f.expect(
      'drivers_probe, override qat_vfio_pci, not a VF: probe fails, write succeeds',
      'OK no driver',
      `${w(PROBE, nic)} ${drv(nic)}`,
    );
    f.expect(
      'qat_vfio_pci/bind of the same device',
      'ENODEV',
      w('/sys/bus/pci/drivers/qat_vfio_pci/bind', nic),
    );
    w(`${DEV}/${nic}/driver_override`, '\n');
    w(PROBE, nic);
  }
  f.expect('e1000e back on its driver', 'e1000e', drv(nic));
}

function sriov(ctx: ScenarioContext, f: Facts): void {
  const pf = ctx.dev('nvme');
  const attr = (n: string): string => `${DEV}/${pf}/${n}`;
  w(attr('sriov_drivers_autoprobe'), '0');
  f.expect('enable 2 VFs', 'OK', w(attr('sriov_numvfs'), '2'));
  try {
    const [vf0, vf1] = sysfs.vfsOf(pf) as [string, string];
    f.expect(
      'new VFs with sriov_drivers_autoprobe=0',
      'no driver, no driver',
      `${drv(vf0)}, ${drv(vf1)}`,
    );
    f.expect(
      'drivers_probe of such a VF without an override',
      'OK no driver',
      `${w(PROBE, vf0)} ${drv(vf0)}`,
    );
    w(`${DEV}/${vf0}/driver_override`, 'vfio-pci');
    f.expect(
      'drivers_probe of such a VF with override vfio-pci',
      'OK vfio-pci',
      `${w(PROBE, vf0)} ${drv(vf0)}`,
    );
    f.expect('sriov_numvfs 2 -> 1 (must go through 0)', 'EBUSY', w(attr('sriov_numvfs'), '1'));
    w(attr('driver_override'), 'vfio-pci');
    w(attr('driver/unbind'), pf);
    // nvme's remove() leaves SR-IOV enabled ("driver left SR-IOV enabled after remove").
    f.expect('VFs left after unbinding the PF from nvme', '2', String(sysfs.vfsOf(pf).length));
    f.expect(
      'vfio-pci probe of a PF with VFs enabled (-EBUSY)',
      'OK no driver',
      `${w(PROBE, pf)} ${drv(pf)}`,
    );
    f.expect('sriov_numvfs on a PF without a driver', 'ENOENT', w(attr('sriov_numvfs'), '0'));
    f.expect('the VF stays on vfio-pci through all that', 'vfio-pci', drv(vf0));
  } finally {
    for (const vf of sysfs.vfsOf(pf)) {
      w(`${DEV}/${vf}/driver_override`, '\n');
      if (sysfs.driverOf(vf)) w(`${DEV}/${vf}/driver/unbind`, vf);
    }
    w(attr('driver_override'), '\n');
    if (!sysfs.driverOf(pf)) w(PROBE, pf);
    w(attr('sriov_numvfs'), '0'); // needs the PF driver's sriov_configure
    w(attr('sriov_drivers_autoprobe'), '1');
  }
  f.expect('PF back on nvme with no VFs', 'nvme 0', `${drv(pf)} ${sysfs.vfsOf(pf).length}`);
}

function moduleUnload(ctx: ScenarioContext, f: Facts): void {
  const edu = ctx.dev('edu');
  w(`${DEV}/${edu}/driver_override`, 'vfio-pci');
  w(PROBE, edu);
  modprobe(ctx, ['-r', 'vfio_pci']);
  f.expect(
    'modprobe -r vfio_pci with a device bound: unbound, override kept',
    'no driver "vfio-pci"',
    `${drv(edu)} ${ovr(edu)}`,
  );
  modprobe(ctx, ['vfio_pci']);
  f.expect('modprobe vfio_pci binds it again', 'vfio-pci', drv(edu));
  w(`${DEV}/${edu}/driver/unbind`, edu);
  w(`${DEV}/${edu}/driver_override`, '\n');
}

function withoutIommu(ctx: ScenarioContext, f: Facts): void {
  const edu = ctx.dev('edu');
  modprobe(ctx, ['vfio_pci']);
  f.expect('IOMMU groups', '0', String(fs.readdirSync('/sys/kernel/iommu_groups').length));
  f.expect(
    'vfio no-IOMMU mode (Debian: CONFIG_VFIO_NOIOMMU unset)',
    'absent',
    sysfsParam('vfio', 'enable_unsafe_noiommu_mode'),
  );
  w(`${DEV}/${edu}/driver_override`, 'vfio-pci');
  f.expect(
    'drivers_probe with override vfio-pci: probe fails (-EINVAL), write succeeds',
    'OK no driver',
    `${w(PROBE, edu)} ${drv(edu)}`,
  );
  // 5.10's really_probe() ignores the probe's error ("so that the next driver can try its
  // luck") and returns 0, which bind_store() reports as -ENODEV; later kernels pass -EINVAL on.
  f.expect(
    'vfio-pci/bind of the same device',
    bind510(ctx) ? 'ENODEV' : 'EINVAL',
    w('/sys/bus/pci/drivers/vfio-pci/bind', edu),
  );
  w(`${DEV}/${edu}/driver_override`, '\n');
}

export const kernelSemantics: Scenario = {
  name: 'kernel-semantics',
  title:
    'the driver-core semantics vfioctl and its kernel model rely on hold (docs/kernel-behaviour.md)',
  boots: ['iommu'],
  run(ctx) {
    const f = new Facts(ctx);
    driverOverride(ctx, f);
    bindUnbindProbe(ctx, f);
    variants(ctx, f);
    sriov(ctx, f);
    moduleUnload(ctx, f);
    f.finish();
  },
};

export const kernelSemanticsNoIommu: Scenario = {
  name: 'kernel-semantics-no-iommu',
  title: 'without an IOMMU, vfio-pci cannot bind and the write that asks for it still succeeds',
  boots: ['no-iommu'],
  run(ctx) {
    const f = new Facts(ctx);
    withoutIommu(ctx, f);
    f.finish();
  },
};
