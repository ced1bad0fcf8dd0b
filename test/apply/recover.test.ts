import { test, afterEach } from 'node:test';
import * as assert from 'node:assert/strict';
import { E1, E2, ModelHost, VN } from '../support/model-host';

const hosts: ModelHost[] = [];
afterEach(() => hosts.splice(0).forEach((h) => h.cleanup()));

// bind E1 (e1000e -> vfio-pci, module not loaded): modprobe, set-override, unbind, probe, verify.
const BIND_STEPS = ['modprobe', 'set-override', 'unbind', 'probe', 'verify'];

for (const [i, op] of BIND_STEPS.entries()) {
  for (const via of ['recover', 'next bind']) {
    test(`bind killed before step ${i + 1} (${op}) is repaired by ${via}`, async () => {
      const h = new ModelHost();
      hosts.push(h);
      h.killBefore(i);
      const dead = await h.run(['bind', E1]);
      assert.notEqual(dead.code, 0);
      assert.deepEqual(
        h.f.tree.list('/run/vfioctl/journal'),
        [`${E1}.json`],
        'the journal survives the kill',
      );
      h.noKill();
      if (via === 'recover') {
        const r = await h.run(['recover', '--json']);
        assert.equal(r.code, 0, r.stdout);
        assert.deepEqual(
          r.json().recovered.map((x: any) => [x.address, x.kind, x.interruptedAt]),
          [[E1, 'bind', `step ${i + 1} (${op})`]],
        );
        assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
      } else {
        // The next writing invocation repairs first, then does its own work.
        const r = await h.run(['bind', E2]);
        assert.equal(r.code, 0);
        assert.match(
          r.stderr,
          new RegExp(
            `recovered ${E1} from an interrupted bind \\(step ${i + 1} \\(${op}\\)\\): now on e1000e`,
          ),
        );
        assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
        assert.equal(h.state(E2).driver, 'vfio-pci');
      }
      assert.deepEqual(h.f.tree.list('/run/vfioctl/journal'), []);
    });
  }
}

// unbind VN (virtio_vfio_pci -> virtio-pci): set-override, unbind, probe, verify.
for (const [i, op] of ['set-override', 'unbind', 'probe', 'verify'].entries()) {
  test(`unbind killed before step ${i + 1} (${op}) is completed by recover`, async () => {
    const h = new ModelHost();
    hosts.push(h);
    assert.equal((await h.run(['bind', VN])).code, 0);
    h.killBefore(i);
    await h.run(['unbind', VN]);
    h.noKill();
    const r = await h.run(['recover']);
    assert.equal(r.code, 0, r.stdout);
    assert.deepEqual(h.state(VN), { driver: 'virtio-pci', override: null, vfioDev: false });
  });
}

test('dry-run warns about a half-done device but does not repair it', async () => {
  const h = new ModelHost();
  hosts.push(h);
  h.killBefore(3);
  await h.run(['bind', E1]);
  h.noKill();
  assert.equal(h.state(E1).driver, null, 'killed between unbind and probe: driverless');
  const d = await h.run(['bind', E2, '--dry-run']);
  assert.match(d.stderr, /0000:00:02.0 was left half-done by an interrupted bind/);
  assert.equal(h.state(E1).driver, null);
  assert.equal((await h.run(['recover'])).code, 0);
  assert.equal(h.state(E1).driver, 'e1000e');
});

test('a lock file left by a killed run holds nothing: the next run takes the lock', async () => {
  const h = new ModelHost();
  hosts.push(h);
  h.f.tree.write('/run/vfioctl/lock', '999999999\n');
  const r = await h.run(['bind', E2]);
  assert.equal(r.code, 0, r.stderr);
});

test('list and show never write: a killed run is named with the fix, and repaired by the next writing command', async () => {
  const h = new ModelHost();
  hosts.push(h);
  h.killBefore(3); // between unbind and probe: driverless, override set
  await h.run(['bind', E1]);
  h.noKill();
  assert.equal(h.state(E1).driver, null);
  const before = h.k.writes.length;
  for (const args of [
    ['list', '--json'],
    ['show', E1],
  ]) {
    const r = await h.run(args);
    assert.equal(r.code, 0);
    assert.match(
      r.stderr,
      new RegExp(
        `${E1} was left half-done by an interrupted bind \\(at probe\\); 'vfioctl recover'`,
      ),
    );
  }
  assert.equal(h.k.writes.length, before, 'list and show wrote nothing');
  assert.equal(h.state(E1).driver, null);
  const r = await h.run(['unbind', E2]);
  assert.match(
    r.stderr,
    new RegExp(`recovered ${E1} from an interrupted bind \\(step 4 \\(probe\\)\\): now on e1000e`),
  );
  assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
  const n = h.k.writes.length;
  await h.run(['list']);
  await h.run(['show', E1]);
  assert.equal(h.k.writes.length, n, 'nothing pending: nothing written');
});
