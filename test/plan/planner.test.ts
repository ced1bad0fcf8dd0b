// The planner as a pure function: a small host written out below, a request, and the plan it
// makes, compared with test/golden/plan/*.txt (status, target, steps, refusals, warnings).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { resolve } from '../../src/match/resolve';
import { planBind, planNone, planSriov, planUnbind } from '../../src/plan/planner';
import { resolveIntent } from '../../src/plan/target';
import type { BindRequest } from '../../src/plan/types';
import { golden, renderPlan } from '../support/golden';
import { e1000e, virtioNet } from '../support/devices';
import { ALIASES } from '../support/fixture';
import { snapshot } from '../support/snapshot';

const NIC = '0000:00:02.0'; // e1000e, alone in group 2
const VIRTIO = '0000:00:03.0'; // virtio-net 1af4:1041: virtio_vfio_pci's table lists it
const MGMT = '0000:00:05.0'; // e1000e whose interface is up with an address: the host uses it
const F0 = '0000:01:00.0'; // two e1000e functions sharing IOMMU group 7
const F1 = '0000:01:00.1';
const PF = '0000:04:00.0'; // an SR-IOV PF with 2 VFs enabled (of 8)

const host = snapshot({
  aliases: [ALIASES.virtio1041, ALIASES.vfioPci, ALIASES.e1000e, ALIASES.virtioPci],
  drivers: { e1000e: 'e1000e', 'virtio-pci': 'virtio_pci' },
  devices: [
    e1000e(NIC, '2'),
    virtioNet(VIRTIO, '3'),
    e1000e(MGMT, '5'),
    e1000e(F0, '7'),
    e1000e(F1, '7'),
    e1000e(PF, '9', { sriov: { totalVfs: 8, numVfs: 2, driversAutoprobe: true, vfs: [] } }),
  ],
  netdevs: { [MGMT]: [{ name: 'mgmt0', up: true, routes: ['10.0.0.0/24'] }] },
});

const bind = (addresses: string[], more: Partial<BindRequest> = {}) =>
  planBind(host, { kind: 'bind', addresses, driver: 'vfio', force: false, group: false, ...more });

test('bind to vfio: the variant whose ID table lists the device beats the catch-all; vfio-pci is loaded first', () => {
  const p = bind([NIC, VIRTIO]);
  assert.deepEqual(
    p.devices.map((d) => d.target?.driver),
    ['vfio-pci', 'virtio_vfio_pci'],
  );
  golden('plan/bind-vfio.txt', renderPlan(p));
});

test('a device the host uses is refused; --force goes past it with a warning', () => {
  golden(
    'plan/bind-in-use.txt',
    renderPlan(bind([MGMT])) + renderPlan(bind([MGMT], { force: true })),
  );
});

test('one member of a shared IOMMU group is refused; --group plans both as one unit', () => {
  const alone = bind([F0]);
  assert.deepEqual(
    alone.devices[0]!.refusals.map((r) => r.check),
    ['iommu-group'],
  );
  const group = bind([F0], { group: true });
  assert.deepEqual(
    group.devices.map((d) => [d.address, d.status, d.unit]),
    [
      [F0, 'planned', 'group 7'],
      [F1, 'planned', 'group 7'],
    ],
  );
  golden('plan/bind-group.txt', renderPlan(alone) + renderPlan(group));
});

test('a named host driver whose table does not list the device is refused even with --force; bad input is invalid', () => {
  const p = bind([NIC], { driver: 'virtio-pci', force: true });
  assert.equal(p.devices[0]!.status, 'refused');
  const bad = bind(['0000:00:09.0']);
  assert.equal(bad.devices[0]!.status, 'invalid');
  golden('plan/bind-refused.txt', renderPlan(p) + renderPlan(bad));
});

test('unbind gives a device back to the driver its bind record names; intent none leaves it without one', () => {
  const bound = snapshot({
    aliases: [
      'alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci',
      'alias pci:v00008086d000010D3sv*sd*bc*sc*i* e1000e',
    ],
    drivers: { e1000e: 'e1000e', 'vfio-pci': 'vfio_pci' },
    devices: [
      {
        address: NIC,
        vendor: '8086',
        device: '10d3',
        driver: 'vfio-pci',
        driverOverride: 'vfio-pci',
        iommuGroup: '2',
        vfioDev: 'vfio0',
      },
    ],
    records: [
      {
        address: NIC,
        originalDriver: 'e1000e',
        originalOverride: null,
        driver: 'vfio-pci',
        at: '2026-01-01T00:00:00.000Z',
      },
    ],
  });
  const un = planUnbind(bound, { kind: 'unbind', addresses: [NIC] });
  assert.equal(un.devices[0]!.target?.driver, 'e1000e');
  golden(
    'plan/unbind-none.txt',
    renderPlan(un) + renderPlan(planNone(host, { addresses: [NIC, MGMT] })),
  );
});

test('SR-IOV sizing resizes through 0 and turns autoprobe off first; more than sriov_totalvfs is refused', () => {
  const p = planSriov(host, [
    { address: PF, numVfs: 4, noAutoprobe: true },
    { address: NIC, numVfs: 1, noAutoprobe: false },
  ]);
  assert.deepEqual(
    p.devices.map((d) => d.status),
    ['planned', 'refused'],
  );
  golden('plan/sriov.txt', renderPlan(p));
});

test('resolved once: the plan carries the resolution that every later question about the device gets', () => {
  const p = bind([VIRTIO]);
  const dev = host.devices.get(VIRTIO)!;
  const carried = p.devices[0]!.resolution;
  assert.ok(carried);
  assert.equal(
    resolve(dev, host, { explain: true }),
    carried,
    'the same object, not a second resolution',
  );
  assert.equal(resolveIntent(dev, host, { kind: 'vfio' }).resolution, carried);
  // Another snapshot of the host is resolved anew (nothing outlives the reading it came from).
  const again = snapshot({
    aliases: ['alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci'],
    devices: [{ address: VIRTIO, vendor: '1af4', device: '1041' }],
  });
  assert.notEqual(resolve(again.devices.get(VIRTIO)!, again, { explain: true }), carried);
});
