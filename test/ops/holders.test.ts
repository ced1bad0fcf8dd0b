// Who holds a device: list and show name the processes that have its VFIO group or cdev open
// (a VMM using it), as a mark distinct from being on a VFIO driver.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { E1, E2, LPC, modelHosts, SMB } from '../support/model-host';
import { validateAgainst } from '../support/schema';

const host = modelHosts({ trustSelf: true });

test('list and show name the process holding a VFIO group open; bound but unheld is not held', async () => {
  const h = host();
  assert.equal((await h.run(['bind', E1, E2])).code, 0);
  h.k.openGroup('2', 4242, 'qemu-system-x86');
  const list = await h.run(['list', '--json']);
  assert.equal(list.code, 0, list.stderr);
  const devices = list.json();
  validateAgainst('device.schema.json', devices);
  const by = (a: string) => devices.find((d: any) => d.address === a);
  assert.deepEqual(by(E1).vfioUsers, [{ node: '/dev/vfio/2', pid: 4242, comm: 'qemu-system-x86' }]);
  assert.deepEqual([by(E2).onVfio, by(E2).vfioUsers], [true, []], 'on vfio-pci, held by nobody');
  const text = (await h.run(['list'])).stdout;
  assert.match(text, /^0000:00:02\.0 .* vfio:vfio\d+ held:4242\(qemu-system-x86\)$/m);
  assert.match(text, /^0000:00:05\.0 .* vfio:vfio\d+$/m);
  const show = await h.run(['show', E1]);
  assert.match(show.stdout, /^held by +pid 4242 \(qemu-system-x86\) through \/dev\/vfio\/2$/m);
  assert.match(
    (await h.run(['show', E2])).stdout,
    /^held by +nobody \(no process has its VFIO group or cdev open\)$/m,
  );
  const one = (await h.run(['show', E1, '--json'])).json();
  validateAgainst('device.schema.json', one);
  assert.deepEqual(one.vfioUsers, [{ node: '/dev/vfio/2', pid: 4242, comm: 'qemu-system-x86' }]);
});

test('a group node holds every member; a cdev holds its own device only', async () => {
  const h = host();
  assert.equal((await h.run(['bind', LPC, '--group', '--force'])).code, 0);
  h.k.openGroup('9', 77, 'cloud-hypervisor');
  const devices = (await h.run(['list', '--json'])).json();
  for (const a of [LPC, SMB])
    assert.deepEqual(
      devices.find((d: any) => d.address === a).vfioUsers,
      [{ node: '/dev/vfio/9', pid: 77, comm: 'cloud-hypervisor' }],
      a,
    );
  // An iommufd VMM opens the device's cdev (/dev/vfio/devices/vfioN), not the group.
  assert.equal((await h.run(['bind', E2])).code, 0);
  const vfioDev = fs.readdirSync(h.f.tree.abs(`/sys/bus/pci/devices/${E2}/vfio-dev`))[0]!;
  fs.mkdirSync(h.f.tree.abs('/proc/88/fd'), { recursive: true });
  fs.symlinkSync(`/dev/vfio/devices/${vfioDev}`, h.f.tree.abs('/proc/88/fd/3'));
  fs.symlinkSync('/dev/iommu', h.f.tree.abs('/proc/88/fd/4'));
  h.f.tree.write('/proc/88/comm', 'qemu-kvm\n');
  const again = (await h.run(['list', '--json'])).json();
  assert.deepEqual(again.find((d: any) => d.address === E2).vfioUsers, [
    { node: `/dev/vfio/devices/${vfioDev}`, pid: 88, comm: 'qemu-kvm' },
  ]);
  assert.deepEqual(again.find((d: any) => d.address === E1).vfioUsers, []);
});

test('with nothing on a VFIO driver, list does not scan /proc', async () => {
  const h = host();
  // A process fd naming a group node that cannot exist now (nothing is bound to VFIO): a scan
  // would report it against E1 (group 2); without one nobody holds anything.
  h.k.openGroup('2', 4242, 'qemu-system-x86');
  const devices = (await h.run(['list', '--json'])).json();
  assert.ok(devices.every((d: any) => !d.onVfio && d.vfioUsers.length === 0));
  assert.deepEqual((await h.run(['show', E1, '--json'])).json().vfioUsers, []);
  // Once a device is on VFIO, the one scan finds it.
  assert.equal((await h.run(['bind', E2])).code, 0);
  assert.deepEqual(
    (await h.run(['list', '--json']))
      .json()
      .find((d: any) => d.address === E1)
      .vfioUsers.map((u: any) => u.pid),
    [4242],
  );
});
