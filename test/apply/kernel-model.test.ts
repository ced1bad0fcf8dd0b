// The model must behave as the real kernel was seen to (docs/kernel-behaviour.md); these pin it.
import { test, afterEach } from 'node:test';
import * as assert from 'node:assert/strict';
import { DRIVERS } from '../support/kernel-model';
import { E1, E2, ModelHost, VN } from '../support/model-host';

const hosts: ModelHost[] = [];
afterEach(() => hosts.splice(0).forEach((h) => h.cleanup()));
function host(): ModelHost {
  const h = new ModelHost();
  hosts.push(h);
  return h;
}
const ov = (a: string) => `/sys/bus/pci/devices/${a}/driver_override`;

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
  await k.write(ov(E1), 'x'.repeat(4094));
  await assert.rejects(k.write(ov(E1), 'x'.repeat(4095)), { code: 'EINVAL' });
  assert.equal(k.driverOf(E1), 'e1000e', 'writing an override never unbinds or probes');
});

test('bind/unbind errnos and drivers_probe that succeeds when the probe failed', async () => {
  const { k } = host();
  await k.modprobe(['vfio_pci']);
  await assert.rejects(k.write('/sys/bus/pci/drivers/vfio-pci/bind', E1), { code: 'ENODEV' }, 'match is checked before already-bound');
  await assert.rejects(k.write('/sys/bus/pci/drivers/e1000e/bind', E1), { code: 'EBUSY' });
  await assert.rejects(k.write('/sys/bus/pci/drivers/vfio-pci/unbind', E1), { code: 'ENODEV' });
  await k.write('/sys/bus/pci/drivers/e1000e/unbind', E1);
  await assert.rejects(k.write('/sys/bus/pci/drivers/vfio-pci/bind', E1), { code: 'ENODEV' }, 'override-only: no match without the override');
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
  assert.equal(k.driverOf(E1), 'virtio_vfio_pci', 'an e1000e on virtio_vfio_pci, as the real kernel allows');
});

test('a module loaded after an override was set binds the waiting device at once', async () => {
  const h = new ModelHost({ loaded: [DRIVERS.e1000e] });
  hosts.push(h);
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
  const fs = await import('node:fs');
  fs.symlinkSync(`../../../devices/pci0000:00/${E2}`, `${k.tree.abs('/sys/kernel/iommu_groups/2/devices')}/${E2}`);
  fs.rmSync(k.tree.abs(`/sys/bus/pci/devices/${E2}/iommu_group`));
  fs.symlinkSync('../../../kernel/iommu_groups/2', k.tree.abs(`/sys/devices/pci0000:00/${E2}/iommu_group`));
  await assert.rejects(k.write('/sys/bus/pci/drivers/e1000e/bind', E2), { code: 'EBUSY' });
});
