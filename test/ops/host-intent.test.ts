// Intent `host`: a device exempt from a broader rule stays on (or goes back to) its host driver,
// never driverless; converge, status and the boot maps all read it the same way (isPlaced()).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { E1, E2, type ModelHost, modelHosts, VN } from '../support/model-host';
import { intentName, isPlaced, parseIntent } from '../../src/config/intent';

const host = modelHosts({ trustSelf: true });
const drifts = async (h: ModelHost) =>
  Object.fromEntries(
    (await h.run(['status', '--json']))
      .json()
      .devices.map((d: any) => [d.address, [d.resolved, d.drift]]),
  );

test('a class rule takes every NIC but the one exempted with intent host', async () => {
  const h = host();
  h.config([
    { match: { class: '02' }, intent: 'vfio', acknowledgeBroadMatch: true },
    { match: { address: E1 }, intent: 'host' },
  ]);
  const a = await h.run(['apply', '--json']);
  assert.equal(a.code, 0, a.stdout + a.stderr);
  assert.deepEqual(
    a.json().results.map((r: any) => [r.address, r.phase, r.status, r.intent]),
    [
      [E1, 'release', 'noop', 'host'],
      [VN, 'bind', 'ok', 'vfio'],
      [E2, 'bind', 'ok', 'vfio'],
    ],
  );
  assert.deepEqual(
    [h.state(E1).driver, h.state(VN).driver, h.state(E2).driver],
    ['e1000e', 'virtio_vfio_pci', 'vfio-pci'],
  );
  assert.deepEqual(await drifts(h), {
    [E1]: ['host', 'ok'],
    [VN]: ['virtio_vfio_pci', 'ok'],
    [E2]: ['vfio-pci', 'ok'],
  });
  // Someone binds it to VFIO by hand: status says so, apply gives it back to its host driver.
  assert.equal((await h.run(['bind', E1])).code, 0);
  assert.deepEqual((await drifts(h))[E1], ['host', 'rebound']);
  const again = await h.run(['apply', '--json']);
  assert.equal(again.code, 0, again.stdout + again.stderr);
  assert.deepEqual(
    again
      .json()
      .results.filter((r: any) => r.status !== 'noop')
      .map((r: any) => [r.address, r.phase, r.status]),
    [[E1, 'release', 'ok']],
  );
  assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
  assert.deepEqual((await drifts(h))[E1], ['host', 'ok']);
  // The boot layers leave it out (no override at boot): its host driver probes it.
  assert.equal((await h.run(['install', '--exec', '/usr/local/bin/vfioctl'])).code, 0);
  assert.deepEqual(h.mapEntries(), [
    `address ${VN} virtio_vfio_pci virtio_vfio_pci`,
    `address ${E2} vfio-pci vfio_pci`,
  ]);
  assert.match(h.f.tree.read(h.bootMap)!, /# skipped 0000:00:02\.0: intent host/);
});

test('host never leaves a device driverless: one with no driver (driver_override=none) is probed for its host driver', async () => {
  const h = host();
  assert.equal((await h.run(['set', E2, 'none'])).code, 0);
  assert.deepEqual(h.state(E2), { driver: null, override: 'none', vfioDev: false });
  assert.deepEqual((await drifts(h))[E2], ['none', 'ok']);
  const s = await h.run(['set', E2, 'host', '--json']);
  assert.equal(s.code, 0, s.stdout + s.stderr);
  assert.deepEqual(
    s.json().results.map((r: any) => [r.address, r.phase, r.status, r.intent]),
    [[E2, 'release', 'ok', 'host']],
  );
  assert.deepEqual(h.state(E2), { driver: 'e1000e', override: null, vfioDev: false });
  // Driverless with no override and no record of a host driver: probed too (not left as it is).
  await h.k.write(`/sys/bus/pci/drivers/e1000e/unbind`, E2);
  assert.deepEqual((await drifts(h))[E2], ['host', 'rebound']);
  assert.equal((await h.run(['apply'])).code, 0);
  assert.equal(h.state(E2).driver, 'e1000e');
  // An id rule and an exempted device of that id: no id entry (it would reach the exempted one).
  h.config([
    { match: { id: '8086:10d3' }, intent: 'vfio', acknowledgeBroadMatch: true },
    { match: { address: E2 }, intent: 'host' },
  ]);
  assert.equal((await h.run(['install', '--exec', '/usr/local/bin/vfioctl'])).code, 0);
  assert.deepEqual(h.mapEntries(), [`address ${E1} vfio-pci vfio_pci`]);
  assert.match(h.f.tree.read(h.bootMap)!, /no id entry \(0000:00:05\.0 of this id is left out\)/);
});

test('unset hints at host when a broader rule still selects the device; a PF may not give its VFs host', async () => {
  const h = host();
  h.config([
    { match: { class: '02' }, intent: 'vfio' },
    { match: { address: E1 }, intent: 'vfio-pci' },
  ]);
  const u = await h.run(['unset', E1, '--noprobe']);
  assert.equal(u.code, 0, u.stderr);
  assert.match(
    u.stderr,
    /0000:00:02\.0 is still selected by rules\[0\] \(line \d+\): class 02 \(intent vfio\).*keep it on its host driver with 'vfioctl set 0000:00:02\.0 host'/,
  );
  h.config([{ match: { address: '0000:00:07.0' }, sriov: { numVfs: 2, vfIntent: 'host' } }]);
  const bad = await h.run(['apply']);
  assert.equal(bad.code, 2);
  assert.match(
    bad.stderr,
    /rules\[0\]\.sriov\.vfIntent: 'host' cannot apply to VFs created with autoprobe off/,
  );
});

test('isPlaced: the one judgement of "where its intent wants it"', () => {
  const at = (driver: string | null, override: string | null, onVfio = false) => ({
    driver,
    override,
    onVfio,
  });
  const host = parseIntent('host');
  assert.equal(isPlaced(host, null, at('e1000e', null)), true);
  assert.equal(isPlaced(host, null, at('e1000e', 'e1000e')), true);
  assert.equal(
    isPlaced(host, null, at('e1000e', 'vfio-pci')),
    false,
    'the next probe would hand it to vfio-pci',
  );
  assert.equal(isPlaced(host, null, at('vfio-pci', 'vfio-pci', true)), false);
  assert.equal(isPlaced(host, null, at(null, null)), false, 'driverless is not host');
  assert.equal(isPlaced(parseIntent('none'), null, at(null, 'none')), true);
  assert.equal(
    isPlaced(parseIntent('none'), null, at(null, null)),
    false,
    'unbound without the override: the next probe binds it',
  );
  assert.equal(
    isPlaced(
      parseIntent('vfio'),
      'virtio_vfio_pci',
      at('virtio_vfio_pci', 'virtio_vfio_pci', true),
    ),
    true,
  );
  assert.equal(
    isPlaced(parseIntent('vfio'), null, at('vfio-pci', 'vfio-pci', true)),
    false,
    'unresolvable is never placed',
  );
  assert.equal(isPlaced(parseIntent('vfio-pci'), 'vfio-pci', at('e1000e', null)), false);
  assert.deepEqual(
    ['vfio', 'none', 'host', 'mlx5_vfio_pci'].map((s) => intentName(parseIntent(s))),
    ['vfio', 'none', 'host', 'mlx5_vfio_pci'],
  );
  assert.throws(() => parseIntent('vfio pci'), /is not a driver name/);
});
