// Kernels before 5.15 (commit cc6711b0bf36: Debian 11's 5.10, Ubuntu 20.04's 5.4, RHEL 8's 4.18)
// have vfio-pci but no ID table for it: modules.alias has no `vfio_pci:` line at all. There
// "vfio" is vfio-pci whenever vfio-pci exists (modules.dep, modules.builtin, or loaded).
import { test, afterEach } from 'node:test';
import * as assert from 'node:assert/strict';
import { Fixture, ALIASES } from '../support/fixture';
import { cli } from '../support/cli';
import { validateAgainst } from '../support/schema';
import { DRIVERS } from '../support/kernel-model';
import { E1, E2, modelHosts, VN } from '../support/model-host';

const fixtures: Fixture[] = [];
afterEach(() => fixtures.splice(0).forEach((f) => f.cleanup()));
const host = modelHosts();

const NIC = '0000:00:02.0';
const REL = '5.10.0-46-amd64';

/**
 * A 5.10-like tree: host drivers' pci: aliases only (Debian 11's modules.alias has 0 vfio_pci:
 * lines).
 */
function oldTree(vfioPci: 'module' | 'module-xz' | 'builtin' | 'loaded' | 'absent'): Fixture {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel(REL).modulesAlias([
    ALIASES.e1000e,
    ALIASES.virtioPci,
    'alias devname:vfio/vfio vfio',
    'alias char-major-10-196 vfio',
  ]);
  const dep = [
    'kernel/drivers/net/ethernet/intel/e1000e/e1000e.ko:',
    'kernel/drivers/vfio/vfio.ko:',
  ];
  if (vfioPci === 'module')
    dep.push(
      'kernel/drivers/vfio/pci/vfio-pci.ko: kernel/drivers/vfio/vfio_virqfd.ko kernel/drivers/vfio/vfio.ko kernel/virt/lib/irqbypass.ko',
    );
  if (vfioPci === 'module-xz')
    dep.push('kernel/drivers/vfio/pci/vfio-pci.ko.xz: kernel/drivers/vfio/vfio.ko.xz');
  f.tree.write(`/lib/modules/${REL}/modules.dep`, dep.join('\n') + '\n');
  f.modulesBuiltin([
    'kernel/drivers/pci/pcie/pcieportdrv.ko',
    ...(vfioPci === 'builtin' ? ['kernel/drivers/vfio/pci/vfio-pci.ko'] : []),
  ]);
  if (vfioPci === 'loaded') f.driver('vfio-pci', 'vfio_pci');
  f.device({
    address: NIC,
    vendor: '8086',
    device: '10d3',
    driver: 'e1000e',
    iommuGroup: '2',
    resetMethods: null,
  });
  return f;
}

for (const [kind, source, how] of [
  ['module', 'no-id-table', 'module'],
  ['module-xz', 'no-id-table', 'module'],
  ['builtin', 'builtin', 'built in'],
  ['loaded', 'loaded', 'loaded'],
] as const) {
  test(`no vfio_pci: alias at all, vfio-pci ${kind}: vfio is vfio-pci (candidate source ${source}); show explains it; doctor passes`, async () => {
    const f = oldTree(kind);
    const show = await cli(f.dir, ['show', NIC, '--json']);
    assert.equal(show.code, 0, show.stderr);
    const v = show.json();
    validateAgainst('device.schema.json', v);
    assert.deepEqual(v.vfio, { module: 'vfio_pci', driver: 'vfio-pci' });
    assert.deepEqual(
      v.candidates.map((c: any) => [c.module, c.source, c.wildcards, c.usable]),
      [['vfio_pci', source, 7, true]],
    );
    assert.equal(v.explanation.length, 1);
    if (source === 'no-id-table')
      assert.match(
        v.explanation[0],
        /no ID table on 5\.10\.0-46-amd64: modules\.alias has no vfio_pci: line at all .*before 5\.15.*variant drivers do not exist/,
      );
    const text = await cli(f.dir, ['show', NIC]);
    assert.match(text.stdout, /^why: /m);
    assert.match(text.stdout, /reset methods +-\n/, 'no reset_method before 5.15');

    const doc = await cli(f.dir, ['doctor', '--json']);
    const line = doc.json().checks.find((c: any) => c.id === 'vfio-pci');
    assert.equal(line.status, 'ok', line.message);
    assert.match(line.message, new RegExp(`^vfio-pci available \\(${how}`));
    if (kind.startsWith('module')) {
      assert.match(line.message, /no ID table: Linux before 5\.15/);
      assert.equal(
        doc.json().checks.find((c: any) => c.id === 'variants').status,
        'ok',
        'no variant can exist before 5.15: nothing to warn about',
      );
    }
    assert.equal(doc.code, 0, doc.stdout);

    const dry = await cli(f.dir, ['bind', NIC, '--dry-run', '--json']);
    assert.equal(dry.code, 0, dry.stdout);
    assert.equal(dry.json().results[0].target, 'vfio-pci');
  });
}

test('no vfio_pci: alias and no vfio-pci anywhere: bind is refused with that reason, doctor fails its vfio-pci line', async () => {
  const f = oldTree('absent');
  const show = (await cli(f.dir, ['show', NIC, '--json'])).json();
  assert.equal(show.vfio, null);
  assert.deepEqual(show.candidates, []);
  assert.match(
    show.vfioReason,
    /kernel 5\.10\.0-46-amd64 has no vfio-pci \(not in modules\.alias, modules\.builtin or modules\.dep, not loaded\)/,
  );
  const bind = await cli(f.dir, ['bind', NIC, '--dry-run', '--json']);
  assert.equal(bind.code, 3);
  assert.equal(bind.json().results[0].refusals[0].check, 'no-vfio-driver');
  const doc = await cli(f.dir, ['doctor', '--json']);
  assert.equal(doc.code, 1);
  assert.equal(doc.json().checks.find((c: any) => c.id === 'vfio-pci').status, 'fail');
});

test('5.15+ with vfio-pci built in and no modules.builtin.modinfo: the built-in catch-all, not the pre-5.15 explanation; a variant still wins', async () => {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.1.0-test')
    .modulesAlias([ALIASES.virtio1041, ALIASES.virtioPci])
    .modulesBuiltin(['kernel/drivers/vfio/pci/vfio-pci.ko']);
  f.device({
    address: '0000:00:03.0',
    vendor: '1af4',
    device: '1041',
    driver: 'virtio-pci',
    iommuGroup: '3',
  });
  const v = (await cli(f.dir, ['show', '0000:00:03.0', '--json'])).json();
  assert.deepEqual(
    v.candidates.map((c: any) => [c.module, c.source]),
    [
      ['virtio_vfio_pci', 'modules.alias'],
      ['vfio_pci', 'builtin'],
    ],
  );
  assert.equal(v.explanation.length, 1);
  assert.match(v.explanation[0], /built into 6\.1\.0-test/);
  assert.doesNotMatch(v.explanation.join('\n'), /5\.15/);
});

test('5.15+ module tree (vfio_pci_core beside vfio-pci) whose modules.alias lacks vfio_pci: stale, not pre-5.15; vfio-pci still binds, doctor warns', async () => {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.12.0-test').modulesAlias([ALIASES.e1000e]);
  f.tree.write(
    '/lib/modules/6.12.0-test/modules.dep',
    'kernel/drivers/vfio/pci/vfio-pci-core.ko.xz:\nkernel/drivers/vfio/pci/vfio-pci.ko.xz: kernel/drivers/vfio/pci/vfio-pci-core.ko.xz\n',
  );
  f.device({ address: NIC, vendor: '8086', device: '10d3', driver: 'e1000e', iommuGroup: '2' });
  const v = (await cli(f.dir, ['show', NIC, '--json'])).json();
  validateAgainst('device.schema.json', v);
  assert.deepEqual(
    v.candidates.map((c: any) => [c.module, c.source]),
    [['vfio_pci', 'modules.dep']],
  );
  assert.match(v.explanation[0], /modules\.alias looks stale \(run depmod 6\.12\.0-test\)/);
  assert.doesNotMatch(v.explanation[0], /before 5\.15/);
  const doc = (await cli(f.dir, ['doctor', '--json'])).json();
  assert.equal(doc.checks.find((c: any) => c.id === 'vfio-pci').status, 'ok');
  assert.equal(doc.checks.find((c: any) => c.id === 'modules.alias').status, 'warn');
});

test('a vfio_pci: alias for vfio_pci itself (5.15+): the module tree is not read for vfio-pci, no implicit candidate', async () => {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.12.0-test').modulesAlias([ALIASES.vfioPci, ALIASES.e1000e]);
  // A modules.dep that would make an implicit candidate if it were consulted.
  f.tree.write('/lib/modules/6.12.0-test/modules.dep', 'kernel/drivers/vfio/pci/vfio-pci.ko:\n');
  f.device({ address: NIC, vendor: '8086', device: '10d3', driver: 'e1000e', iommuGroup: '2' });
  const v = (await cli(f.dir, ['show', NIC, '--json'])).json();
  assert.deepEqual(
    v.candidates.map((c: any) => [c.module, c.source]),
    [['vfio_pci', 'modules.alias']],
  );
  assert.deepEqual(v.explanation, []);
});

test('5.10 kernel model: the default bind gives vfio-pci, verified without vfio-dev/ (by the driver link and /dev/vfio/<group>); unbind gives it back', async () => {
  const h = host({ kernel: '5.10' });
  const r = await h.run(['bind', E1, VN, '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(
    r.json().results.map((x: any) => [x.address, x.status, x.driver]),
    [
      [E1, 'ok', 'vfio-pci'],
      [VN, 'ok', 'vfio-pci'],
    ],
  );
  assert.deepEqual(h.state(E1), { driver: 'vfio-pci', override: 'vfio-pci', vfioDev: false });
  assert.ok(!h.f.tree.exists('/sys/class/vfio-dev'), 'no vfio-dev class before 6.1');
  assert.deepEqual(
    h.f.tree.list('/dev/vfio').sort(),
    ['2', '3'],
    'group nodes only: no /dev/vfio/devices before 6.1',
  );
  assert.deepEqual(h.k.modprobes, [['vfio_pci']]);
  const list = (await h.run(['list', '--json'])).json();
  validateAgainst('device.schema.json', list);
  assert.deepEqual(
    list.filter((d: any) => d.onVfio).map((d: any) => [d.address, d.vfioDev]),
    [
      [E1, null],
      [VN, null],
    ],
    'on vfio by its driver, no vfio-dev/',
  );
  const show = await h.run(['show', E1]);
  assert.match(show.stdout, /on vfio +yes \(vfio-pci\)/);
  const un = await h.run(['unbind', E1, VN, '--json']);
  assert.equal(un.code, 0, un.stdout);
  assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
  assert.deepEqual(h.state(VN), { driver: 'virtio-pci', override: null, vfioDev: false });
  assert.deepEqual(
    h.f.tree.list('/dev/vfio'),
    [],
    'the group nodes go with their last VFIO device',
  );
});

test('5.10 kernel model: a VFIO-named driver that binds without registering the group with VFIO fails verification and is rolled back', async () => {
  const h = host({ kernel: '5.10' });
  // Its probe succeeds but it is no VFIO driver in the model: no /dev/vfio/<group> appears.
  h.k.define({
    name: 'fake_vfio_pci',
    module: 'fake_vfio_pci',
    ids: [],
    overrideOnlyIds: [],
    vfio: false,
  });
  h.f.tree.write(
    '/lib/modules/5.10.0-test/modules.dep',
    (h.f.tree.read('/lib/modules/5.10.0-test/modules.dep') ?? '') +
      'kernel/drivers/fake-vfio-pci.ko:\n',
  );
  const r = await h.run(['bind', E1, '--driver', 'fake_vfio_pci', '--force', '--json']);
  assert.equal(r.code, 1, r.stdout);
  const res = r.json().results[0];
  assert.equal(res.status, 'failed');
  assert.match(
    res.error,
    /is on fake_vfio_pci but \/dev\/vfio\/2 does not exist: the driver did not register it with VFIO/,
  );
  assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
});

for (const [i, op] of ['set-override', 'unbind', 'probe', 'verify'].entries()) {
  test(`5.10 kernel model: an unbind killed before step ${i + 1} (${op}) is completed by recover (no vfio-dev/ to tell a VFIO driver by)`, async () => {
    const h = host({ kernel: '5.10' });
    assert.equal((await h.run(['bind', E2])).code, 0);
    h.killBefore(i);
    await h.run(['unbind', E2]);
    h.noKill();
    const r = await h.run(['recover']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(h.state(E2), { driver: 'e1000e', override: null, vfioDev: false });
  });
}

test('5.10 kernel model: vfio-pci binds any device by override (no table), and nothing by loading it without one', async () => {
  const h = host({
    kernel: '5.10',
    loaded: [DRIVERS.e1000e, DRIVERS.virtioPci, DRIVERS.lpc, DRIVERS.smbus],
  });
  await h.k.write(`/sys/bus/pci/drivers/e1000e/unbind`, E1);
  assert.equal((await h.k.modprobe(['vfio_pci'])).status, 0);
  await h.k.write('/sys/bus/pci/drivers_probe', E1);
  assert.equal(
    h.k.driverOf(E1),
    'e1000e',
    'without an override vfio-pci (no ID table) does not match: e1000e takes it back',
  );
  await h.k.write(`/sys/bus/pci/devices/${E1}/driver_override`, 'vfio-pci');
  await h.k.write(`/sys/bus/pci/drivers/e1000e/unbind`, E1);
  await h.k.write('/sys/bus/pci/drivers_probe', E1);
  assert.equal(h.k.driverOf(E1), 'vfio-pci');
});

test('5.10 kernel model: without an IOMMU vfio-pci cannot bind; drivers/vfio-pci/bind says ENODEV (5.10 swallows the probe errno; 6.1 says EINVAL)', async () => {
  const h = host({ kernel: '5.10', iommu: false });
  await h.k.modprobe(['vfio_pci']);
  await h.k.write(`/sys/bus/pci/devices/${E1}/driver_override`, 'vfio-pci');
  await h.k.write('/sys/bus/pci/drivers/e1000e/unbind', E1);
  await h.k.write('/sys/bus/pci/drivers_probe', E1);
  assert.equal(h.k.driverOf(E1), null);
  await assert.rejects(h.k.write('/sys/bus/pci/drivers/vfio-pci/bind', E1), { code: 'ENODEV' });
});

test('5.10 kernel model: drivers/vfio-pci/bind of a bound device is ENODEV, not EBUSY (bind_store() tests dev->driver first)', async () => {
  const h = host({ kernel: '5.10' });
  await h.k.modprobe(['vfio_pci']);
  await h.k.write(`/sys/bus/pci/devices/${E1}/driver_override`, 'vfio-pci');
  await assert.rejects(
    h.k.write('/sys/bus/pci/drivers/vfio-pci/bind', E1),
    { code: 'ENODEV' },
    'on e1000e with the override set',
  );
  await h.k.write('/sys/bus/pci/drivers/e1000e/unbind', E1);
  await h.k.write('/sys/bus/pci/drivers/vfio-pci/bind', E1);
  assert.equal(h.k.driverOf(E1), 'vfio-pci');
  await assert.rejects(
    h.k.write('/sys/bus/pci/drivers/vfio-pci/bind', E1),
    { code: 'ENODEV' },
    'bound already',
  );
});
