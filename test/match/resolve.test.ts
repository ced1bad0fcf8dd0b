import { test, afterEach } from 'node:test';
import * as assert from 'node:assert/strict';
import { Fixture, ALIASES } from '../support/fixture';
import { HostRoot } from '../../src/host/root';
import { readSnapshot } from '../../src/read/snapshot';
import { resolve, wildcardCount } from '../../src/match/resolve';
import { e1000e, virtioNet } from '../support/devices';
import { cli } from '../support/cli';
import { deviceView } from '../../src/report/device-view';

const fixtures: Fixture[] = [];
afterEach(() => fixtures.splice(0).forEach((f) => f.cleanup()));

function host(): Fixture {
  const f = Fixture.create();
  fixtures.push(f);
  return f.kernel('6.12.0-test');
}

function resolveOn(f: Fixture, address: string) {
  const snap = readSnapshot(new HostRoot(f.dir));
  const d = snap.devices.get(address);
  assert.ok(d, `device ${address} in snapshot`);
  return { r: resolve(d, snap), snap };
}

test('wildcardCount counts whole wildcard fields, not the trailing * of a full-class alias', () => {
  assert.equal(wildcardCount('vfio_pci:v*d*sv*sd*bc*sc*i*'), 7);
  assert.equal(wildcardCount('vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*'), 5);
  assert.equal(wildcardCount('vfio_pci:v00008086d*sv*sd*bc02sc00i00*'), 3);
});

test('modern virtio-net resolves to virtio_vfio_pci over the vfio_pci catch-all', () => {
  const f = host().modulesAlias([ALIASES.vfioPci, ALIASES.virtio1041, ALIASES.virtioPci]);
  f.device(virtioNet('0000:00:03.0', '3'));
  const { r } = resolveOn(f, '0000:00:03.0');
  assert.deepEqual(r.vfio, { module: 'virtio_vfio_pci', driver: 'virtio_vfio_pci' });
  assert.deepEqual(
    r.candidates.map((c) => [c.module, c.wildcards]),
    [
      ['virtio_vfio_pci', 5],
      ['vfio_pci', 7],
    ],
  );
  assert.equal(r.candidates[1]!.driver, 'vfio-pci', 'module vfio_pci registers driver vfio-pci');
});

test('an e1000e gets plain vfio-pci; pci: aliases are never vfio candidates', () => {
  const f = host().modulesAlias([ALIASES.e1000e, ALIASES.virtio1041, ALIASES.vfioPci]);
  f.device(e1000e('0000:00:02.0', '2'));
  const { r } = resolveOn(f, '0000:00:02.0');
  assert.deepEqual(r.vfio, { module: 'vfio_pci', driver: 'vfio-pci' });
  assert.equal(r.candidates.length, 1);
});

test('on a wildcard tie the earlier modules.alias line wins, and show says so', () => {
  const f = host().modulesAlias([
    ALIASES.vfioPci,
    'alias vfio_pci:v00001AF4d00001041sv*sd*bc*sc*i* zeta_vfio_pci',
    'alias vfio_pci:v00001AF4d00001041sv*sd*bc*sc*i* alpha_vfio_pci',
  ]);
  f.device({ address: '0000:00:03.0', vendor: '1af4', device: '1041', iommuGroup: '3' });
  const { r, snap } = resolveOn(f, '0000:00:03.0');
  assert.equal(r.vfio?.module, 'zeta_vfio_pci');
  assert.deepEqual(
    r.candidates.map((c) => c.module),
    ['zeta_vfio_pci', 'alpha_vfio_pci', 'vfio_pci'],
  );
  assert.deepEqual(r.explanation, [], 'only show asks why');
  // `show` explains the tie (modules.alias line 1 is depmod's comment).
  assert.deepEqual(
    resolve(snap.devices.get('0000:00:03.0')!, snap, { explain: true }).explanation,
    [
      'zeta_vfio_pci and alpha_vfio_pci tie at 5 wildcard fields: the earlier alias wins (modules.alias line 3 before modules.alias line 4), as in libvirt and go-nvlib',
    ],
  );
});

test('a full-class alias beats a vendor:device alias: 4 wildcard fields against 5, although both have five *s', async () => {
  // file2alias appends a `*` to an alias that does not end in one: the full-class entry ends i00*.
  const device = 'alias vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_vfio_pci';
  const klass = 'alias vfio_pci:v*d*sv*sd*bc02sc00i00* ethclass_vfio_pci';
  const f = host().modulesAlias([device, klass, ALIASES.vfioPci]);
  f.device({
    address: '0000:05:00.1',
    vendor: '15b3',
    device: '101e',
    class: '020000',
    iommuGroup: '9',
  });
  const { r } = resolveOn(f, '0000:05:00.1');
  assert.deepEqual(
    r.candidates.map((c) => [c.module, c.wildcards]),
    [
      ['ethclass_vfio_pci', 4],
      ['mlx5_vfio_pci', 5],
      ['vfio_pci', 7],
    ],
  );
  assert.equal(
    r.vfio?.module,
    'ethclass_vfio_pci',
    'by "fewest *\'s" the two would tie at 5 and the earlier line (mlx5_vfio_pci) would win',
  );
  const show = await cli(f.dir, ['show', '0000:05:00.1']);
  assert.match(
    show.stdout,
    /^why: ethclass_vfio_pci \(4 wildcard fields\) ranks above mlx5_vfio_pci \(5\): vfio_pci:v\*d\*sv\*sd\*bc02sc00i00\* is a full-class alias, which file2alias ends with an extra '\*', so counting '\*' characters \(the kernel commit's "fewest \*'s"\) would give 5 against 5 \(a tie, won by the earlier line\); vfioctl counts wildcard fields, as libvirt and go-nvlib do$/m,
  );
  assert.doesNotMatch(
    show.stdout,
    /why: .*mlx5_vfio_pci.* vfio_pci \(/,
    'no explanation where both counts agree',
  );
});

test('a subsystem-specific alias beats a vendor:device one; bracket aliases match', () => {
  const f = host().modulesAlias([
    ALIASES.vfioPci,
    'alias vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_vfio_pci',
    'alias vfio_pci:v000015B3d0000101Esv000015B3sd00000042bc*sc*i* special_vfio_pci',
    'alias vfio_pci:v000015B3d0000101[EF]sv*sd*bc*sc*i* bracket_vfio_pci',
  ]);
  f.device({
    address: '0000:05:00.1',
    vendor: '15b3',
    device: '101e',
    subsystemVendor: '15b3',
    subsystemDevice: '0042',
    iommuGroup: '9',
  });
  f.device({ address: '0000:05:00.2', vendor: '15b3', device: '101f', iommuGroup: '10' });
  const a = resolveOn(f, '0000:05:00.1').r;
  assert.deepEqual(
    a.candidates.map((c) => c.module),
    ['special_vfio_pci', 'mlx5_vfio_pci', 'bracket_vfio_pci', 'vfio_pci'],
  );
  const b = resolveOn(f, '0000:05:00.2').r;
  assert.deepEqual(
    b.candidates.map((c) => c.module),
    ['bracket_vfio_pci', 'vfio_pci'],
  );
});

test('kmod normalisation: a dashed module or alias still matches', () => {
  const f = host().modulesAlias(['alias vfio-pci:v*d*sv*sd*bc*sc*i* vfio-pci']);
  f.device({ address: '0000:00:02.0', vendor: '8086', device: '10d3', iommuGroup: '2' });
  assert.deepEqual(resolveOn(f, '0000:00:02.0').r.vfio, { module: 'vfio_pci', driver: 'vfio-pci' });
});

test('blacklisted variants are listed but not best; etc, lib and the kernel command line count', () => {
  const f = host().modulesAlias([ALIASES.vfioPci, ALIASES.virtio1041, ALIASES.mlx5]);
  f.modprobeConf(
    '/etc/modprobe.d/no-virtio-vfio.conf',
    '# keep plain vfio\nblacklist virtio_vfio_pci\n',
  );
  f.modprobeConf('/lib/modprobe.d/vendor.conf', 'blacklist mlx5-vfio-pci\n');
  f.device({ address: '0000:00:03.0', vendor: '1af4', device: '1041', iommuGroup: '3' });
  f.device({ address: '0000:05:00.1', vendor: '15b3', device: '101e', iommuGroup: '4' });
  const v = resolveOn(f, '0000:00:03.0').r;
  assert.equal(v.vfio?.module, 'vfio_pci');
  assert.equal(v.candidates[0]!.usable, false);
  assert.match(
    v.candidates[0]!.reason!,
    /blacklisted \(\/etc\/modprobe\.d\/no-virtio-vfio\.conf:2\)/,
  );
  const m = resolveOn(f, '0000:05:00.1').r;
  assert.match(m.candidates[0]!.reason!, /\/lib\/modprobe\.d\/vendor\.conf:1/);
  f.modprobeConf('/etc/modprobe.d/vendor.conf', '# overrides the /lib file of the same name\n');
  assert.equal(
    resolveOn(f, '0000:05:00.1').r.vfio?.module,
    'mlx5_vfio_pci',
    '/etc file hides /lib file of the same name',
  );
  f.cmdline('root=/dev/sda1 modprobe.blacklist=foo,mlx5_vfio_pci');
  assert.match(resolveOn(f, '0000:05:00.1').r.candidates[0]!.reason!, /kernel command line/);
});

test('built-in vfio_pci is the implicit catch-all; built-in variants come from modinfo or the known table', () => {
  const f = host()
    .modulesAlias([ALIASES.e1000e])
    .modulesBuiltin([
      'kernel/drivers/vfio/pci/vfio-pci.ko',
      'kernel/drivers/vfio/pci/mlx5/mlx5-vfio-pci.ko',
    ]);
  f.device({ address: '0000:00:02.0', vendor: '8086', device: '10d3', iommuGroup: '2' });
  f.device({ address: '0000:05:00.1', vendor: '15b3', device: '101e', iommuGroup: '4' });
  const e = resolveOn(f, '0000:00:02.0').r;
  assert.deepEqual(e.vfio, { module: 'vfio_pci', driver: 'vfio-pci' });
  assert.equal(e.candidates[0]!.source, 'builtin');
  const m = resolveOn(f, '0000:05:00.1').r;
  assert.deepEqual(
    m.candidates.map((c) => [c.module, c.source]),
    [
      ['mlx5_vfio_pci', 'known-variants'],
      ['vfio_pci', 'builtin'],
    ],
  );
  // v6.18+: the built-in device tables are published in modules.builtin.modinfo and win over the
  // table.
  f.builtinModinfo([
    'vfio_pci.alias=vfio_pci:v*d*sv*sd*bc*sc*i*',
    'mlx5_vfio_pci.alias=vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*',
    'mlx5_vfio_pci.license=GPL',
  ]);
  const m2 = resolveOn(f, '0000:05:00.1').r;
  assert.deepEqual(
    m2.candidates.map((c) => [c.module, c.source]),
    [
      ['mlx5_vfio_pci', 'modules.builtin.modinfo'],
      ['vfio_pci', 'modules.builtin.modinfo'],
    ],
  );
});

test('driver name comes from sysfs when the module is loaded, then the exceptions table', () => {
  const f = host().modulesAlias([
    ALIASES.vfioPci,
    'alias vfio_pci:v00008086d0000E20Bsv*sd*bc*sc*i* xe_vfio_pci',
    'alias vfio_pci:v00001AF4d00001041sv*sd*bc*sc*i* odd_vfio_pci',
  ]);
  f.device({
    address: '0000:03:00.0',
    vendor: '8086',
    device: 'e20b',
    class: '030000',
    iommuGroup: '5',
  });
  f.device({ address: '0000:00:03.0', vendor: '1af4', device: '1041', iommuGroup: '3' });
  assert.equal(resolveOn(f, '0000:03:00.0').r.vfio?.driver, 'xe-vfio-pci');
  f.driver('odd-vfio', 'odd_vfio_pci');
  assert.equal(resolveOn(f, '0000:00:03.0').r.vfio?.driver, 'odd-vfio');
});

test('unusable candidates: variant prerequisites from the data table', () => {
  const f = host().modulesAlias([
    ALIASES.vfioPci,
    ...ALIASES.qat,
    'alias vfio_pci:v00001DD8d00001003sv*sd*bc*sc*i* pds_vfio_pci',
    ALIASES.mlx5,
  ]);
  // QAT: a PF on 4xxx with one VF, and a stray non-VF with a VF id.
  f.device({
    address: '0000:6b:00.0',
    vendor: '8086',
    device: '4940',
    class: '0b4000',
    driver: '4xxx',
    iommuGroup: '20',
    sriov: { totalVfs: 16, numVfs: 1 },
  });
  f.device({
    address: '0000:6b:00.1',
    vendor: '8086',
    device: '4941',
    class: '0b4000',
    physfn: '0000:6b:00.0',
    iommuGroup: '21',
  });
  f.device({
    address: '0000:6c:00.0',
    vendor: '8086',
    device: '4941',
    class: '0b4000',
    iommuGroup: '22',
  });
  // pds: VF whose PF is not on pds_core.
  f.device({
    address: '0000:7a:00.0',
    vendor: '1dd8',
    device: '1002',
    driver: 'vfio-pci',
    iommuGroup: '30',
    sriov: { totalVfs: 4, numVfs: 1 },
  });
  f.device({
    address: '0000:7a:00.1',
    vendor: '1dd8',
    device: '1003',
    physfn: '0000:7a:00.0',
    iommuGroup: '31',
  });
  // mlx5 VF whose PF is elsewhere: usable, with a note about migration.
  f.device({
    address: '0000:05:00.0',
    vendor: '15b3',
    device: '1021',
    driver: 'vfio-pci',
    iommuGroup: '40',
    sriov: { totalVfs: 8, numVfs: 1 },
  });
  f.device({
    address: '0000:05:00.1',
    vendor: '15b3',
    device: '101e',
    physfn: '0000:05:00.0',
    iommuGroup: '41',
  });

  assert.equal(resolveOn(f, '0000:6b:00.1').r.vfio?.module, 'qat_vfio_pci', 'VF of a 4xxx PF');
  const stray = resolveOn(f, '0000:6c:00.0').r;
  assert.equal(stray.vfio?.module, 'vfio_pci');
  assert.match(stray.candidates[0]!.reason!, /only SR-IOV VFs/);
  const pds = resolveOn(f, '0000:7a:00.1').r;
  assert.equal(pds.vfio?.module, 'vfio_pci', 'falls back to the next usable candidate');
  assert.match(pds.candidates[0]!.reason!, /pds_core; PF 0000:7a:00.0 is on vfio-pci/);
  const mlx = resolveOn(f, '0000:05:00.1').r;
  assert.equal(mlx.vfio?.module, 'mlx5_vfio_pci');
  assert.match(mlx.candidates[0]!.notes.join(), /migration needs the PF on mlx5_core/);
  // A PF with VFs enabled: vfio-pci refuses it (-EBUSY).
  const pf = resolveOn(f, '0000:6b:00.0').r;
  assert.equal(pf.vfio, null);
  assert.match(pf.reason!, /1 VFs enabled/);
});

test('bridges (header type 1) have no usable vfio driver, from config space or class', () => {
  const f = host().modulesAlias([ALIASES.vfioPci]);
  f.device({
    address: '0000:00:1c.0',
    vendor: '8086',
    device: 'a110',
    class: '060400',
    headerType: 1,
    iommuGroup: '7',
  });
  f.device({
    address: '0000:00:1c.1',
    vendor: '8086',
    device: 'a111',
    class: '060400',
    config: false,
    iommuGroup: '8',
  });
  for (const a of ['0000:00:1c.0', '0000:00:1c.1']) {
    const { r } = resolveOn(f, a);
    assert.equal(r.vfio, null);
    assert.match(r.candidates[0]!.reason!, /header type 1/);
  }
});

test('missing modules.alias: vfio null with the reason, no crash', () => {
  const f = host();
  f.device({ address: '0000:00:02.0', vendor: '8086', device: '10d3', iommuGroup: '2' });
  const { r } = resolveOn(f, '0000:00:02.0');
  assert.equal(r.vfio, null);
  assert.match(r.reason!, /no \/lib\/modules\/6\.12\.0-test\/modules\.alias/);
});

test('malformed modules.alias and modprobe.d lines are skipped with a warning', () => {
  const f = host().modulesAlias([
    'alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci extra',
    'alias vfio_pci:v0000[1AF4d00001041sv*sd*bc*sc*i* broken_vfio_pci',
    'garbage line',
    ALIASES.vfioPci,
  ]);
  f.modprobeConf('/etc/modprobe.d/x.conf', 'blacklist\nfrobnicate foo\n');
  f.device({ address: '0000:00:03.0', vendor: '1af4', device: '1041', iommuGroup: '3' });
  const { r, snap } = resolveOn(f, '0000:00:03.0');
  assert.deepEqual(
    r.candidates.map((c) => c.module),
    ['vfio_pci'],
  );
  assert.equal(snap.warnings.length, 5, snap.warnings.join('\n'));
  assert.ok(snap.warnings.some((w) => /modules\.alias:2: malformed/.test(w)));
  assert.ok(snap.warnings.some((w) => /unbalanced bracket/.test(w)));
  assert.ok(
    snap.warnings.some((w) => /x\.conf:2: unknown modprobe\.d command 'frobnicate'/.test(w)),
  );
});

test('devices resolveNow cannot tell apart share one resolution; one input apart, each gets its own', () => {
  const f = host().modulesAlias([ALIASES.vfioPci, ...ALIASES.qat]);
  const qat = (address: string, device: string, group: number, more: object) =>
    f.device({
      address,
      vendor: '8086',
      device,
      class: '0b4000',
      iommuGroup: String(group),
      ...more,
    });
  // PF A on a QAT PF driver with two VFs; PF C alike but with no VF enabled; PF B unbound with one
  // VF; a non-VF with a VF's id. The VFs share one modalias, as do the PFs.
  qat('0000:6b:00.0', '4940', 20, { driver: '4xxx', sriov: { totalVfs: 16, numVfs: 2 } });
  qat('0000:6b:00.1', '4941', 21, { physfn: '0000:6b:00.0' });
  qat('0000:6b:00.2', '4941', 22, { physfn: '0000:6b:00.0' });
  qat('0000:6c:00.0', '4940', 23, { sriov: { totalVfs: 16, numVfs: 1 } });
  qat('0000:6c:00.1', '4941', 24, { physfn: '0000:6c:00.0' });
  qat('0000:6d:00.0', '4940', 25, { driver: '4xxx', sriov: { totalVfs: 16, numVfs: 0 } });
  qat('0000:6e:00.0', '4941', 26, {});
  const snap = readSnapshot(new HostRoot(f.dir));
  const all = [...snap.devices.values()];
  const together = new Map(all.map((d) => [d.address, resolve(d, snap, { explain: true })]));
  // Each device resolved first in a snapshot of its own: nothing shared yet.
  for (const d of all) {
    const own = readSnapshot(new HostRoot(f.dir));
    assert.deepEqual(
      together.get(d.address),
      resolve(own.devices.get(d.address)!, own, { explain: true }),
      d.address,
    );
  }
  const r = (a: string) => together.get(a)!;
  assert.equal(r('0000:6b:00.1'), r('0000:6b:00.2'), 'the VFs of one PF share a resolution');
  assert.equal(r('0000:6b:00.1').vfio?.module, 'qat_vfio_pci');
  assert.equal(r('0000:6c:00.1').vfio?.module, 'vfio_pci', 'a VF of an unbound PF');
  assert.match(r('0000:6c:00.1').candidates[0]!.reason!, /PF 0000:6c:00.0 is on no driver/);
  assert.match(r('0000:6e:00.0').candidates[0]!.reason!, /only SR-IOV VFs/);
  assert.match(r('0000:6b:00.0').reason!, /2 VFs enabled/);
  assert.match(r('0000:6c:00.0').reason!, /1 VFs enabled/);
  assert.equal(r('0000:6d:00.0').vfio?.module, 'vfio_pci', 'a PF with no VF enabled');
  // Views copy what they show of it: one view's change is not another's.
  const views = ['0000:6b:00.1', '0000:6b:00.2'].map((a) =>
    deviceView(snap.devices.get(a)!, snap, null, false),
  );
  views[0]!.vfio!.driver = 'changed';
  assert.equal(views[1]!.vfio!.driver, 'qat_vfio_pci');
});
