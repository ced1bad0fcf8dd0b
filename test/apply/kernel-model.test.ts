// The model must behave as the real kernel was seen to (docs/kernel-behaviour.md); these pin it.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { DRIVERS, KernelHang } from '../support/kernel-model';
import { E1, E2, modelHosts, NVME, VN } from '../support/model-host';

const host = modelHosts();
const ov = (a: string) => `/sys/bus/pci/devices/${a}/driver_override`;
const attr = (a: string, n: string) => `/sys/bus/pci/devices/${a}/${n}`;
const PROBE = '/sys/bus/pci/drivers_probe';

test('driver_override: truncated at newline, lone newline clears, empty write is a no-op, spaces kept, 4095 bytes EINVAL', async () => {
  const { k } = host();
  await k.write(ov(E1), 'vfio-pci\n');
  assert.equal(k.overrideOf(E1), 'vfio-pci');
  await k.write(ov(E1), '');
  assert.equal(k.overrideOf(E1), 'vfio-pci');
  await k.write(ov(E1), '\n');
  assert.equal(k.overrideOf(E1), null);
  await k.write(ov(E1), ' ');
  assert.equal(k.overrideOf(E1), ' ');
  await k.write(ov(E1), 'a\nb');
  assert.equal(k.overrideOf(E1), 'a');
  await k.write(ov(E1), 'x'.repeat(4094));
  await assert.rejects(k.write(ov(E1), 'x'.repeat(4095)), { code: 'EINVAL' });
  assert.equal(k.driverOf(E1), 'e1000e', 'writing an override never unbinds or probes');
});

test('bind/unbind errnos and drivers_probe that succeeds when the probe failed', async () => {
  const { k } = host();
  await k.modprobe(['vfio_pci']);
  await assert.rejects(
    k.write('/sys/bus/pci/drivers/vfio-pci/bind', E1),
    { code: 'ENODEV' },
    'match is checked before already-bound',
  );
  await assert.rejects(k.write('/sys/bus/pci/drivers/e1000e/bind', E1), { code: 'EBUSY' });
  await assert.rejects(k.write('/sys/bus/pci/drivers/vfio-pci/unbind', E1), { code: 'ENODEV' });
  await k.write('/sys/bus/pci/drivers/e1000e/unbind', E1);
  await assert.rejects(
    k.write('/sys/bus/pci/drivers/vfio-pci/bind', E1),
    { code: 'ENODEV' },
    'override-only: no match without the override',
  );
  await k.write(ov(E1), 'vfio-pci');
  await k.write('/sys/bus/pci/drivers/vfio-pci/bind', E1);
  assert.equal(k.driverOf(E1), 'vfio-pci');
  await assert.rejects(k.write('/sys/bus/pci/drivers_probe', '0000:99:00.0'), { code: 'ENODEV' });
  k.failProbe('vfio-pci', E2);
  await k.write(ov(E2), 'vfio-pci');
  await k.write('/sys/bus/pci/drivers/e1000e/unbind', E2);
  await k.write('/sys/bus/pci/drivers_probe', E2);
  assert.equal(k.driverOf(E2), null, 'drivers_probe said OK, nothing bound');
});

test('any named driver binds through the dummy id; without an override autoprobe picks the host driver', async () => {
  const { k } = host();
  await k.modprobe(['virtio_vfio_pci']);
  await k.write('/sys/bus/pci/drivers/virtio-pci/unbind', VN);
  await k.write('/sys/bus/pci/drivers_probe', VN);
  assert.equal(k.driverOf(VN), 'virtio-pci', 'no override: the variant never matches');
  await k.write(ov(E1), 'virtio_vfio_pci');
  await k.write('/sys/bus/pci/drivers/e1000e/unbind', E1);
  await k.write('/sys/bus/pci/drivers_probe', E1);
  assert.equal(
    k.driverOf(E1),
    'virtio_vfio_pci',
    'an e1000e on virtio_vfio_pci, as the real kernel allows',
  );
});

test('a module loaded after an override was set binds the waiting device at once', async () => {
  const h = host({ loaded: [DRIVERS.e1000e] });
  const { k } = h;
  await k.write(ov(E1), 'vfio-pci');
  await k.write('/sys/bus/pci/drivers/e1000e/unbind', E1);
  await k.write('/sys/bus/pci/drivers_probe', E1);
  assert.equal(k.driverOf(E1), null);
  await k.modprobe(['vfio-pci']);
  assert.equal(k.driverOf(E1), 'vfio-pci');
  assert.equal(k.driverOf(E2), 'e1000e', 'devices without the override are left alone');
});

test('a host driver cannot bind while a VFIO user holds the group (EBUSY)', async () => {
  const { k } = host();
  await k.modprobe(['vfio_pci']);
  await k.write(ov(E1), 'vfio-pci');
  await k.write('/sys/bus/pci/drivers/e1000e/unbind', E1);
  await k.write('/sys/bus/pci/drivers_probe', E1);
  k.openGroup('2');
  // (unbinding it would hang; a second, unbound member of group 2 cannot go to a host driver)
  await k.write('/sys/bus/pci/drivers/e1000e/unbind', E2);
  fs.symlinkSync(
    `../../../devices/pci0000:00/${E2}`,
    `${k.tree.abs('/sys/kernel/iommu_groups/2/devices')}/${E2}`,
  );
  fs.rmSync(k.tree.abs(`/sys/bus/pci/devices/${E2}/iommu_group`));
  fs.symlinkSync(
    '../../../kernel/iommu_groups/2',
    k.tree.abs(`/sys/devices/pci0000:00/${E2}/iommu_group`),
  );
  await assert.rejects(k.write('/sys/bus/pci/drivers/e1000e/bind', E2), { code: 'EBUSY' });
});

test('a variant that refuses the device (qat_vfio_pci, not a QAT VF): drivers_probe succeeds with no driver, its bind gives ENODEV', async () => {
  const { k } = host();
  await k.modprobe(['qat_vfio_pci']);
  await k.write(ov(E1), 'qat_vfio_pci');
  await k.write('/sys/bus/pci/drivers/e1000e/unbind', E1);
  await k.write(PROBE, E1);
  assert.equal(k.driverOf(E1), null);
  await assert.rejects(k.write('/sys/bus/pci/drivers/qat_vfio_pci/bind', E1), { code: 'ENODEV' });
  await k.write(ov(E1), '\n');
  await k.write(PROBE, E1);
  assert.equal(k.driverOf(E1), 'e1000e');
});

test('driver_override: a NUL ends the string; the 4095-byte limit counts bytes, not characters', async () => {
  const { k } = host();
  await k.write(ov(E1), 'vfio-pci\0junk');
  assert.equal(k.overrideOf(E1), 'vfio-pci');
  await k.write(ov(E1), '\0vfio-pci');
  assert.equal(k.overrideOf(E1), null, 'a leading NUL clears it, as a lone newline does');
  await k.write(ov(E1), 'é'.repeat(2047)); // 4094 bytes
  await assert.rejects(
    k.write(ov(E1), 'é'.repeat(2048)),
    { code: 'EINVAL' },
    '2048 characters are 4096 bytes',
  );
  assert.equal(k.overrideOf(E1), 'é'.repeat(2047));
});

test('bind, unbind and drivers_probe find the device as sysfs_streq() does: one trailing newline, nothing else', async () => {
  const { k } = host();
  await k.write('/sys/bus/pci/drivers/e1000e/unbind', `${E1}\n`);
  assert.equal(k.driverOf(E1), null);
  await assert.rejects(k.write(PROBE, ` ${E1}`), { code: 'ENODEV' });
  await assert.rejects(k.write(PROBE, `${E1} `), { code: 'ENODEV' });
  await assert.rejects(k.write('/sys/bus/pci/drivers/e1000e/bind', `${E1}\n\n`), {
    code: 'ENODEV',
  });
  assert.equal(k.driverOf(E1), null);
  await k.write(PROBE, `${E1}\n`);
  assert.equal(k.driverOf(E1), 'e1000e');
  await assert.rejects(k.write('/sys/bus/pci/drivers/e1000e/unbind', `\t${E1}`), {
    code: 'ENODEV',
  });
  assert.equal(k.driverOf(E1), 'e1000e');
});

test('drivers_probe tries every matching driver until one binds: a failed probe does not end the search', async () => {
  const { k } = host();
  // A second host driver claims the e1000e id; whichever the kernel asks first, a failure moves on.
  k.define(
    {
      name: 'e1000e-alt',
      module: 'e1000e_alt',
      ids: DRIVERS.e1000e.ids,
      overrideOnlyIds: [],
      vfio: false,
    },
    true,
  );
  k.failProbe('e1000e', E1, 'EIO').failProbe('e1000e-alt', E2, 'EIO');
  for (const a of [E1, E2]) {
    await k.write('/sys/bus/pci/drivers/e1000e/unbind', a);
    await k.write(PROBE, a);
  }
  assert.equal(k.driverOf(E1), 'e1000e-alt');
  assert.equal(k.driverOf(E2), 'e1000e');
});

test('without an IOMMU vfio-pci cannot bind: drivers_probe succeeds with no driver, bind gives EINVAL', async () => {
  const { k } = host({ iommu: false });
  await k.modprobe(['vfio_pci']);
  assert.deepEqual(k.tree.list('/sys/kernel/iommu_groups'), []);
  await k.write(ov(E1), 'vfio-pci');
  await k.write('/sys/bus/pci/drivers/e1000e/unbind', E1);
  await k.write(PROBE, E1);
  assert.equal(k.driverOf(E1), null);
  await assert.rejects(k.write('/sys/bus/pci/drivers/vfio-pci/bind', E1), { code: 'EINVAL' });
});

test('VFIO nodes: /dev/vfio/<group> goes with the last VFIO device of its group; vfioN numbers are reused, lowest first', async () => {
  const { k } = host();
  await k.modprobe(['vfio_pci']);
  const toVfio = async (a: string) => {
    await k.write(ov(a), 'vfio-pci');
    await k.write(`/sys/bus/pci/drivers/${k.driverOf(a)}/unbind`, a);
    await k.write(PROBE, a);
    assert.equal(k.driverOf(a), 'vfio-pci');
  };
  const vfioDev = (a: string) => k.tree.list(attr(a, 'vfio-dev'));
  const real = (rel: string) => fs.realpathSync(k.tree.abs(rel));
  await toVfio(E1);
  await toVfio(E2);
  assert.deepEqual([vfioDev(E1), vfioDev(E2)], [['vfio0'], ['vfio1']]);
  assert.equal(real('/sys/class/vfio-dev/vfio1'), real(`${attr(E2, 'vfio-dev')}/vfio1`));
  await k.write('/sys/bus/pci/drivers/vfio-pci/unbind', E1);
  assert.equal(k.tree.exists('/dev/vfio/2'), false, "the group's node is gone");
  assert.equal(k.tree.exists('/dev/vfio/5'), true);
  assert.deepEqual(k.tree.list('/dev/vfio/devices'), ['vfio1']);
  assert.deepEqual(k.tree.list('/sys/class/vfio-dev'), ['vfio1']);
  await k.write(PROBE, E1); // the override is still vfio-pci
  assert.deepEqual(vfioDev(E1), ['vfio0'], 'the freed number again');
  // A shared group (q35's 00:1f.x) keeps its node while one member is still on VFIO.
  await toVfio('0000:00:1f.0');
  await toVfio('0000:00:1f.3');
  await k.write('/sys/bus/pci/drivers/vfio-pci/unbind', '0000:00:1f.0');
  assert.equal(k.tree.exists('/dev/vfio/9'), true);
  await k.write('/sys/bus/pci/drivers/vfio-pci/unbind', '0000:00:1f.3');
  assert.equal(k.tree.exists('/dev/vfio/9'), false);
});

test('SR-IOV: with sriov_drivers_autoprobe=0 new VFs stay unbound; a VF is probed only for the driver its override names', async () => {
  const { k } = host({ nvme: 2 });
  await k.write(attr(NVME, 'sriov_drivers_autoprobe'), '0');
  await k.write(attr(NVME, 'sriov_numvfs'), '2');
  const vfs = k.vfsOf(NVME);
  assert.deepEqual(vfs, ['0000:00:07.1', '0000:00:07.2']);
  assert.deepEqual(
    vfs.map((v) => k.groupOf(v)),
    ['10', '11'],
    'a new group each, after the existing ones',
  );
  for (const vf of vfs) {
    assert.equal(k.driverOf(vf), null, `${vf} has no driver`);
    assert.equal(k.tree.readLinkName(attr(vf, 'physfn')), NVME);
    assert.deepEqual(k.tree.list(`/sys/kernel/iommu_groups/${k.groupOf(vf)}/devices`), [vf]);
    assert.equal(
      k.tree.read(attr(vf, 'modalias'))?.trim(),
      'pci:v00001B36d00000010sv00001AF4sd00001100bc01sc08i02',
    );
  }
  const [vf0, vf1] = vfs as [string, string];
  await k.write(PROBE, vf0);
  assert.equal(k.driverOf(vf0), null, 'no override: nothing binds, though nvme matches');
  await assert.rejects(
    k.write('/sys/bus/pci/drivers/nvme/bind', vf0),
    { code: 'ENODEV' },
    "nvme's probe is refused",
  );
  await k.modprobe(['vfio_pci']);
  assert.equal(k.driverOf(vf0), null, 'loading vfio-pci takes no VF without an override');
  await k.write(ov(vf0), 'vfio-pci');
  await k.write(PROBE, vf0);
  assert.equal(k.driverOf(vf0), 'vfio-pci');
  await k.write(ov(vf1), 'nvme');
  await k.write(PROBE, vf1);
  assert.equal(k.driverOf(vf1), 'nvme', 'an override naming the host driver binds it');
  assert.equal(k.driverOf(NVME), 'nvme');
  assert.equal(k.tree.read(attr(NVME, 'sriov_numvfs')), '2\n');
});

test('SR-IOV: with sriov_drivers_autoprobe=1 new VFs are probed at once; the setting counts when a probe runs', async () => {
  const { k } = host({ nvme: 4 });
  await k.write(attr(NVME, 'sriov_numvfs'), '3');
  assert.deepEqual(
    k.vfsOf(NVME).map((v) => [v, k.driverOf(v)]),
    [
      ['0000:00:07.1', 'nvme'],
      ['0000:00:07.2', 'nvme'],
      ['0000:00:07.3', 'nvme'],
    ],
  );
  await k.write(attr(NVME, 'sriov_numvfs'), '0');
  assert.deepEqual(k.vfsOf(NVME), []);
  assert.equal(k.exists('0000:00:07.1'), false);
  assert.equal(k.tree.exists('/sys/kernel/iommu_groups/10'), false, 'emptied groups are gone');
  await k.write(attr(NVME, 'sriov_drivers_autoprobe'), '0');
  await k.write(attr(NVME, 'sriov_numvfs'), '1');
  const [vf] = k.vfsOf(NVME) as [string];
  assert.equal(k.driverOf(vf), null);
  await k.write(attr(NVME, 'sriov_drivers_autoprobe'), '1');
  await k.write(PROBE, vf);
  assert.equal(k.driverOf(vf), 'nvme');
});

test('SR-IOV: unbinding nvme (it leaves SR-IOV enabled) keeps the VFs; vfio-pci refuses the PF; sriov_numvfs needs a PF driver', async () => {
  // The kernel-semantics e2e scenario's sequence, step by step.
  const { k } = host({ nvme: 2 });
  await k.modprobe(['vfio_pci']);
  await k.write(attr(NVME, 'sriov_drivers_autoprobe'), '0');
  await k.write(attr(NVME, 'sriov_numvfs'), '2');
  const [vf0, vf1] = k.vfsOf(NVME) as [string, string];
  await k.write(ov(vf0), 'vfio-pci');
  await k.write(PROBE, vf0);
  const group = k.groupOf(vf0)!;
  await assert.rejects(
    k.write(attr(NVME, 'sriov_numvfs'), '1'),
    { code: 'EBUSY' },
    'N -> M must go through 0',
  );
  await k.write(ov(NVME), 'vfio-pci');
  await k.write('/sys/bus/pci/drivers/nvme/unbind', NVME);
  assert.deepEqual(k.vfsOf(NVME), [vf0, vf1], 'the VFs survive');
  assert.equal(k.tree.read(attr(NVME, 'sriov_numvfs')), '2\n');
  await k.write(PROBE, NVME);
  assert.equal(k.driverOf(NVME), null, 'vfio-pci refused the PF (-EBUSY); the write succeeded');
  await assert.rejects(k.write('/sys/bus/pci/drivers/vfio-pci/bind', NVME), { code: 'EBUSY' });
  await assert.rejects(k.write(attr(NVME, 'sriov_numvfs'), '0'), { code: 'ENOENT' });
  assert.equal(k.driverOf(vf0), 'vfio-pci', 'the VF stays on vfio-pci through all that');
  // The scenario's clean-up: the PF back on nvme, then no VFs (and the VF's VFIO nodes go).
  await k.write(ov(NVME), '\n');
  await k.write(PROBE, NVME);
  assert.equal(k.driverOf(NVME), 'nvme');
  await k.write(attr(NVME, 'sriov_numvfs'), '0');
  assert.deepEqual(
    [
      k.vfsOf(NVME),
      k.exists(vf0),
      k.tree.exists(`/dev/vfio/${group}`),
      k.tree.list('/dev/vfio/devices'),
    ],
    [[], false, false, []],
  );
});

test('SR-IOV: a PF driver that disables SR-IOV in remove() takes the VFs and their VFIO bindings with it', async () => {
  const { k } = host({ nvme: 2 });
  k.define(
    {
      ...DRIVERS.nvme,
      name: 'nvme-disabling',
      module: 'nvme_disabling',
      sriov: { onRemove: 'disable' },
    },
    true,
  );
  await k.modprobe(['vfio_pci']);
  await k.write('/sys/bus/pci/drivers/nvme/unbind', NVME);
  await k.write(ov(NVME), 'nvme-disabling');
  await k.write(PROBE, NVME);
  assert.equal(k.driverOf(NVME), 'nvme-disabling');
  const withVfioVf = async () => {
    await k.write(attr(NVME, 'sriov_drivers_autoprobe'), '0');
    await k.write(attr(NVME, 'sriov_numvfs'), '2');
    const [vf0] = k.vfsOf(NVME) as [string];
    await k.write(ov(vf0), 'vfio-pci');
    await k.write(PROBE, vf0);
    assert.equal(k.driverOf(vf0), 'vfio-pci');
    return [vf0, k.groupOf(vf0)!] as const;
  };
  const [vf0, group] = await withVfioVf();
  await k.write('/sys/bus/pci/drivers/nvme-disabling/unbind', NVME);
  assert.deepEqual(
    [k.vfsOf(NVME), k.exists(vf0), k.tree.read(attr(NVME, 'sriov_numvfs'))],
    [[], false, '0\n'],
  );
  assert.equal(k.tree.exists(`/dev/vfio/${group}`), false);
  assert.equal(k.tree.exists(`/sys/kernel/iommu_groups/${group}`), false);
  // With a VFIO user on a VF, the PF's remove() would wait for it forever.
  await k.write(PROBE, NVME);
  const [, g2] = await withVfioVf();
  k.openGroup(g2);
  await assert.rejects(k.write('/sys/bus/pci/drivers/nvme-disabling/unbind', NVME), KernelHang);
});

test('sriov_numvfs: kstrtou16 parsing, ERANGE above sriov_totalvfs, the same count is a no-op even without a driver, ENOENT without SR-IOV support', async () => {
  const { k } = host({ nvme: 2 });
  const numvfs = attr(NVME, 'sriov_numvfs');
  for (const bad of ['two', '-1', ' 1', '1 ', '08', '1\n\n'])
    await assert.rejects(k.write(numvfs, bad), { code: 'EINVAL' }, JSON.stringify(bad));
  await assert.rejects(k.write(numvfs, '3'), { code: 'ERANGE' });
  await assert.rejects(k.write(numvfs, '65536'), { code: 'ERANGE' });
  assert.deepEqual(k.vfsOf(NVME), []);
  await k.write(numvfs, '0x2\n');
  assert.equal(k.vfsOf(NVME).length, 2);
  await k.write(numvfs, '+2'); // the same count: nothing happens
  await k.write(numvfs, '0');
  await k.write('/sys/bus/pci/drivers/nvme/unbind', NVME);
  await k.write(numvfs, '0'); // no change: fine without a driver
  await assert.rejects(k.write(numvfs, '1'), { code: 'ENOENT' });
  // vfio-pci's sriov_configure says ENOENT unless enable_sriov=1 (the default is 0).
  await k.modprobe(['vfio_pci']);
  await k.write(ov(NVME), 'vfio-pci');
  await k.write(PROBE, NVME);
  assert.equal(k.driverOf(NVME), 'vfio-pci');
  await assert.rejects(k.write(numvfs, '1'), { code: 'ENOENT' });
  await assert.rejects(
    k.write(attr(E1, 'sriov_numvfs'), '1'),
    { code: 'ENOENT' },
    'not a PF: no such attribute',
  );
  assert.equal(k.tree.exists(attr(E1, 'sriov_numvfs')), false);
});

test('sriov_drivers_autoprobe takes kstrtobool values and exists only on a PF', async () => {
  const { k } = host({ nvme: 2 });
  const ap = attr(NVME, 'sriov_drivers_autoprobe');
  for (const [v, want] of [
    ['off', '0'],
    ['on', '1'],
    ['n', '0'],
    ['Y\n', '1'],
    ['0', '0'],
    ['1', '1'],
  ] as const) {
    await k.write(ap, v);
    assert.equal(k.tree.read(ap), `${want}\n`, JSON.stringify(v));
  }
  for (const bad of ['x', '2', 'o'])
    await assert.rejects(k.write(ap, bad), { code: 'EINVAL' }, bad);
  await assert.rejects(k.write(attr(E1, 'sriov_drivers_autoprobe'), '0'), { code: 'ENOENT' });
});

test("vfio-pci checks a PF's VFs before its IOMMU group: EBUSY, even booted without an IOMMU", async () => {
  const { k } = host({ nvme: 2, iommu: false });
  await k.write(attr(NVME, 'sriov_numvfs'), '1');
  const [vf] = k.vfsOf(NVME) as [string];
  assert.equal(k.groupOf(vf), null, 'no IOMMU, no group');
  await k.modprobe(['vfio_pci']);
  await k.write(ov(NVME), 'vfio-pci');
  await k.write('/sys/bus/pci/drivers/nvme/unbind', NVME);
  await assert.rejects(k.write('/sys/bus/pci/drivers/vfio-pci/bind', NVME), { code: 'EBUSY' });
});

test("modprobe -r unbinds the module's devices and keeps their overrides; loading it again binds every waiting device", async () => {
  const { k } = host();
  await k.modprobe(['vfio_pci']);
  for (const a of [E1, E2]) {
    await k.write(ov(a), 'vfio-pci');
    await k.write('/sys/bus/pci/drivers/e1000e/unbind', a);
    await k.write(PROBE, a);
  }
  assert.deepEqual(await k.modprobe(['-r', 'vfio_pci']), { status: 0, stderr: '' });
  for (const a of [E1, E2])
    assert.deepEqual(
      [k.driverOf(a), k.overrideOf(a), k.tree.list(attr(a, 'vfio-dev'))],
      [null, 'vfio-pci', []],
      a,
    );
  assert.deepEqual(
    [k.tree.exists('/sys/bus/pci/drivers/vfio-pci'), k.tree.exists('/sys/module/vfio_pci')],
    [false, false],
    'driver and module are gone',
  );
  assert.deepEqual(k.tree.list('/dev/vfio').sort(), ['devices']);
  assert.deepEqual(await k.modprobe(['-r', 'vfio_pci']), {
    status: 1,
    stderr: 'modprobe: FATAL: Module vfio_pci is not in kernel.',
  });
  await k.write(ov(E2), '\n');
  assert.equal((await k.modprobe(['vfio-pci'])).status, 0);
  assert.equal(k.driverOf(E1), 'vfio-pci', 'the waiting device binds at once');
  assert.equal(k.driverOf(E2), null, 'vfio-pci matches nothing without an override');
  // A host module: loading it binds matching devices through its ID table, not one whose override
  // names another driver.
  await k.write(PROBE, E2);
  assert.equal(k.driverOf(E2), 'e1000e');
  await k.modprobe(['-r', 'e1000e']);
  assert.deepEqual([k.driverOf(E2), k.tree.exists('/sys/bus/pci/drivers/e1000e')], [null, false]);
  await k.modprobe(['-r', 'vfio_pci']);
  await k.modprobe(['e1000e']);
  assert.equal(k.driverOf(E2), 'e1000e');
  assert.equal(k.driverOf(E1), null, 'override vfio-pci: e1000e does not take it');
});

test('modprobe -r refuses a module a VFIO user holds, a built-in one and an unknown one, and changes nothing', async () => {
  const { k } = host({ nvme: 2 });
  await k.modprobe(['vfio_pci']);
  await k.write(ov(E1), 'vfio-pci');
  await k.write('/sys/bus/pci/drivers/e1000e/unbind', E1);
  await k.write(PROBE, E1);
  k.openGroup('2');
  assert.deepEqual(await k.modprobe(['-r', 'vfio_pci']), {
    status: 1,
    stderr: 'modprobe: FATAL: Module vfio_pci is in use.',
  });
  assert.equal(k.driverOf(E1), 'vfio-pci');
  assert.deepEqual(await k.modprobe(['-r', 'ghost']), {
    status: 1,
    stderr: 'modprobe: FATAL: Module ghost not found.',
  });
  k.tree.write('/lib/modules/6.12.0-test/modules.builtin', 'kernel/drivers/virtio/virtio_pci.ko\n');
  assert.deepEqual(await k.modprobe(['-r', 'virtio_pci']), {
    status: 1,
    stderr: 'modprobe: FATAL: Module virtio_pci is builtin.',
  });
  assert.equal(k.driverOf(VN), 'virtio-pci');
  // Unloading nvme (remove() keeps SR-IOV on) leaves the VFs; reloading binds the PF, not a VF
  // without an override.
  await k.write(attr(NVME, 'sriov_drivers_autoprobe'), '0');
  await k.write(attr(NVME, 'sriov_numvfs'), '2');
  await k.modprobe(['-r', 'nvme']);
  assert.deepEqual([k.driverOf(NVME), k.vfsOf(NVME).length], [null, 2]);
  await k.modprobe(['nvme']);
  assert.deepEqual(
    [NVME, ...k.vfsOf(NVME)].map((a) => k.driverOf(a)),
    ['nvme', null, null],
  );
});
