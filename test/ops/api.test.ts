// The library API: the README's example, run as written against the kernel model, and the
// plan/apply contract (a plan from a host that has moved since is refused, typed).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { E1, E2, modelHosts } from '../support/model-host';
import { openHost, StalePlanError, type VfioctlError, EXIT } from '../../src/ops/index';

const host = modelHosts({ trustSelf: true });
const LIB = path.resolve(__dirname, '../../../dist/lib/index.js');

/**
 * The README's ```js block under "Library API", with require('vfioctl') pointing at the built
 * library.
 */
function readmeExample(): (address: string, options: object) => Promise<any> {
  const readme = fs.readFileSync(path.resolve(__dirname, '../../../README.md'), 'utf8');
  const block = /## Library API[\s\S]*?```js\n([\s\S]*?)```/.exec(readme)![1]!;
  const req = (m: string) => (m === 'vfioctl' ? require(LIB) : require(m));
  return new Function('require', `${block}\nreturn moveToVfio;`)(req);
}

test("the README's library example binds a device through the built library, with the CLI's exit codes", async () => {
  const h = host();
  const moveToVfio = readmeExample();
  const options = { root: h.f.dir, kernelIo: h.k, trust: { uids: [0, process.getuid!()] } };
  const r = await moveToVfio(E2, options);
  assert.equal(r.code, 0);
  assert.equal(r.driver, 'vfio-pci');
  assert.equal(h.state(E2).driver, 'vfio-pci');
  assert.deepEqual(r.status.devices, [], 'nothing configured');
  // In use: refused at plan time, nothing written.
  h.f.tree.write('/sys/class/net/eth0/flags', '0x1003\n');
  const writes = h.k.writes.length;
  const refused = await moveToVfio(E1, options);
  assert.equal(refused.code, 3);
  assert.equal(refused.refused[0].check, 'in-use');
  assert.equal(h.k.writes.length, writes);
});

test('apply refuses a plan the host moved away from (StalePlanError), and does nothing', async () => {
  const h = host();
  const api = openHost({ root: h.f.dir, kernelIo: h.k, trust: { uids: [0, process.getuid!()] } });
  const planned = api.plan({ kind: 'bind', addresses: [E2] });
  assert.equal(planned.plan.devices[0]!.status, 'planned');
  // Someone else binds it in between.
  await api.bind({ addresses: [E2], driver: 'vfio-pci', force: false, group: false });
  const writes = h.k.writes.length;
  await assert.rejects(
    api.apply(planned),
    (e: StalePlanError) =>
      e instanceof StalePlanError && e.exitCode === EXIT.FAILED && e.addresses.includes(E2),
  );
  assert.equal(h.k.writes.length, writes);
  // A fresh plan is a no-op now; bad input is a typed error with exit code 2.
  assert.equal(
    (await api.apply(api.plan({ kind: 'bind', addresses: [E2] }))).results[0]!.status,
    'noop',
  );
  assert.throws(
    () => api.plan({ kind: 'bind', addresses: ['zz:zz.z'] }),
    (e: VfioctlError) => e.exitCode === EXIT.BAD_INPUT,
  );
  assert.throws(
    () => api.show('0000:42:00.0'),
    (e: VfioctlError) => e.exitCode === EXIT.BAD_INPUT,
  );
});

test('converge and status through the API: typed reports, nothing printed', async () => {
  const h = host();
  h.config([{ match: { address: E2 }, intent: 'vfio' }]);
  const api = openHost({ root: h.f.dir, kernelIo: h.k, trust: { uids: [0, process.getuid!()] } });
  const dry = await api.converge(undefined, { dryRun: true });
  assert.equal(dry.results[0]!.status, 'planned');
  assert.equal(h.state(E2).driver, 'e1000e');
  const done = await api.converge();
  assert.deepEqual(
    done.results.map((r) => [r.address, r.phase, r.status, r.driver]),
    [[E2, 'bind', 'ok', 'vfio-pci']],
  );
  assert.deepEqual(
    api.status().devices.map((d) => [d.address, d.drift]),
    [[E2, 'ok']],
  );
});

test("bind with driver 'none' or 'host' (set's intents, no driver's names) is bad input for library callers too, and writes nothing", async () => {
  const h = host();
  const api = openHost({ root: h.f.dir, kernelIo: h.k, trust: { uids: [0, process.getuid!()] } });
  const writes = h.k.writes.length;
  for (const driver of ['none', 'host']) {
    const refused = (e: VfioctlError) =>
      e.exitCode === EXIT.BAD_INPUT &&
      e.message.startsWith(`bind ${E2}: --driver ${driver} names an intent, not a driver`);
    await assert.rejects(
      api.bind({ addresses: [E2], driver, force: false, group: false }),
      refused,
    );
    await assert.rejects(
      api.bind({ addresses: [E2], driver, force: true, group: false }, { dryRun: true }),
      refused,
    );
    assert.throws(() => api.plan({ kind: 'bind', addresses: [E2], driver }), refused);
  }
  assert.equal(h.k.writes.length, writes);
  assert.equal(h.state(E2).driver, 'e1000e');
});

test('each result names the driver its device was on when read (`from`) beside the one it is on after: planned, ok, noop, and an unbind', async () => {
  const h = host();
  const api = openHost({ root: h.f.dir, kernelIo: h.k, trust: { uids: [0, process.getuid!()] } });
  const req = { addresses: [E2], driver: 'vfio-pci', force: false, group: false };
  const pick = (r: {
    results: readonly { status: string; from: string | null; driver: string | null }[];
  }) => r.results.map(({ status, from, driver }) => ({ status, from, driver }));
  assert.deepEqual(pick(await api.bind(req, { dryRun: true })), [
    { status: 'planned', from: 'e1000e', driver: 'e1000e' },
  ]);
  assert.deepEqual(pick(await api.bind(req)), [
    { status: 'ok', from: 'e1000e', driver: 'vfio-pci' },
  ]);
  assert.deepEqual(pick(await api.bind(req)), [
    { status: 'noop', from: 'vfio-pci', driver: 'vfio-pci' },
  ]);
  assert.deepEqual(pick(await api.unbind({ addresses: [E2] })), [
    { status: 'ok', from: 'vfio-pci', driver: 'e1000e' },
  ]);
});
