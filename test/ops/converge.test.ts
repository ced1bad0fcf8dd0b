// Converge plans every configured device together: two members of one IOMMU group with different
// intents (`vfio` and `vfio-pci`) make the group viable together instead of refusing each other.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { modelHosts } from '../support/model-host';

const host = modelHosts({ trustSelf: true });
// Two e1000 functions behind a conventional PCI bridge: one IOMMU group (as QEMU's pci-bridge
// gives).
const A = '0000:01:01.0';
const B = '0000:01:02.0';

function groupHost() {
  const h = host();
  for (const address of [A, B])
    h.f.device({ address, vendor: '8086', device: '10d3', driver: 'e1000e', iommuGroup: '11' });
  return h;
}

test('mixed intents in one IOMMU group converge together', async () => {
  const h = groupHost();
  h.config([
    { match: { address: A }, intent: 'vfio' },
    { match: { address: B }, intent: 'vfio-pci' },
  ]);
  const r = await h.run(['apply', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(
    r.json().results.map((x: any) => [x.address, x.status, x.intent]),
    [
      [A, 'ok', 'vfio'],
      [B, 'ok', 'vfio-pci'],
    ],
  );
  assert.equal(h.state(A).driver, 'vfio-pci');
  assert.equal(h.state(B).driver, 'vfio-pci');
  const again = await h.run(['apply', '--json']);
  assert.deepEqual(
    again.json().results.map((x: any) => x.status),
    ['noop', 'noop'],
  );
});

test('a group member configured with none also counts as leaving the host; one left on its host driver still refuses', async () => {
  const h = groupHost();
  h.config([
    { match: { address: A }, intent: 'vfio' },
    { match: { address: B }, intent: 'none' },
  ]);
  const r = await h.run(['apply', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(h.state(A).driver, 'vfio-pci');
  assert.equal(h.state(B).driver, null);
  const g = groupHost();
  g.config([{ match: { address: A }, intent: 'vfio' }]);
  const refused = await g.run(['apply', '--json']);
  assert.equal(refused.code, 3);
  assert.equal(refused.json().results[0].refusals[0].check, 'iommu-group');
});
