// What reading the devices costs in syscalls, and that the cheaper reads give the same answers:
// fs is wrapped here to record every open and readlink of a snapshot read.
import { test, afterEach } from 'node:test';
import * as assert from 'node:assert/strict';
import type * as fs from 'node:fs';
import { Fixture } from '../support/fixture';
import { HostRoot } from '../../src/host/root';
import { readSnapshot } from '../../src/read/snapshot';

const fixtures: Fixture[] = [];
afterEach(() => fixtures.splice(0).forEach((f) => f.cleanup()));

const PF = '0000:05:00.0';
const VFS = ['0000:05:00.1', '0000:05:00.2', '0000:05:00.3'];

/** A PF with three VFs (one on vfio-pci), a bridge, and a device whose config is unreadable. */
function sriovHost(): Fixture {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.12.0-test');
  f.device({
    address: PF,
    vendor: '15b3',
    device: '101d',
    revision: '0a',
    driver: 'mlx5_core',
    iommuGroup: '20',
    sriov: { totalVfs: 8, numVfs: VFS.length },
  });
  VFS.forEach((a, i) =>
    f.device({
      address: a,
      vendor: '15b3',
      device: '101e',
      revision: '0b',
      physfn: PF,
      iommuGroup: String(21 + i),
      ...(i === 2 ? { driver: 'vfio-pci', vfioDev: 'vfio0' } : { driver: 'mlx5_core' }),
    }),
  );
  f.device({
    address: '0000:00:1c.0',
    vendor: '8086',
    device: 'a110',
    class: '060400',
    revision: 'f0',
    headerType: 0x81,
    iommuGroup: '7',
  });
  f.device({
    address: '0000:00:1d.0',
    vendor: '8086',
    device: 'a111',
    class: '060400',
    revision: 'f1',
    config: false,
    iommuGroup: '8',
  });
  return f;
}

/** Runs `fn` recording the absolute paths opened and readlink'ed. */
function recorded<T>(fn: () => T): { result: T; opened: string[]; linked: string[] } {
  const nodeFs: typeof fs = require('node:fs');
  const open = nodeFs.openSync;
  const readlink = nodeFs.readlinkSync;
  const opened: string[] = [];
  const linked: string[] = [];
  nodeFs.openSync = ((p: fs.PathLike, ...rest: any[]) => {
    opened.push(String(p));
    return (open as any)(p, ...rest);
  }) as typeof fs.openSync;
  nodeFs.readlinkSync = ((p: fs.PathLike, ...rest: any[]) => {
    linked.push(String(p));
    return (readlink as any)(p, ...rest);
  }) as typeof fs.readlinkSync;
  try {
    return { result: fn(), opened, linked };
  } finally {
    nodeFs.openSync = open;
    nodeFs.readlinkSync = readlink;
  }
}

test('revision and header type come from one read of config space, as the revision attribute says', () => {
  const f = sriovHost();
  const { result: snap, opened } = recorded(() => readSnapshot(new HostRoot(f.dir)));
  const dev = (a: string) => snap.devices.get(a)!;
  assert.equal(dev(PF).revision, '0a');
  for (const a of VFS) assert.equal(dev(a).revision, '0b', a);
  assert.deepEqual([dev('0000:00:1c.0').revision, dev('0000:00:1c.0').headerType], ['f0', 1]);
  // No config file: the revision attribute, and the header type from the bridge class.
  assert.deepEqual([dev('0000:00:1d.0').revision, dev('0000:00:1d.0').headerType], ['f1', 1]);
  const revisionReads = opened.filter((p) => p.endsWith('/revision'));
  assert.deepEqual(
    revisionReads.map((p) => p.split('/').at(-2)),
    ['0000:00:1d.0'],
    'the revision attribute is read only where config space is not there',
  );
  for (const a of [PF, ...VFS, '0000:00:1c.0'])
    assert.equal(
      opened.filter((p) => p.endsWith(`/${a}/config`)).length,
      1,
      `${a}: one config read`,
    );
});

test('a config shorter than the revision byte falls back to the revision attribute', () => {
  const f = sriovHost();
  // A config file cut short (as a tree copied without it whole might have).
  const cfg = f.tree.devDir('0000:00:1c.0') + '/config';
  f.tree.write(cfg, Buffer.alloc(4));
  const d = readSnapshot(new HostRoot(f.dir)).devices.get('0000:00:1c.0')!;
  assert.deepEqual([d.revision, d.headerType], ['f0', 1]);
});

test('a VF is read through the directory its PF virtfn link names, not its bus link', () => {
  const f = sriovHost();
  const { result: snap, linked, opened } = recorded(() => readSnapshot(new HostRoot(f.dir)));
  for (const a of VFS) {
    assert.equal(
      linked.filter((p) => p.endsWith(`/sys/bus/pci/devices/${a}`)).length,
      0,
      `${a}: no readlink of its bus link`,
    );
    // Its attributes are read in its /sys/devices directory, beside the PF.
    assert.ok(
      opened.some((p) => p.endsWith(`/sys/devices/pci0000:00/${a}/modalias`)),
      `${a} read in place`,
    );
    assert.equal(snap.devices.get(a)!.physfn, PF);
  }
  assert.deepEqual(snap.devices.get(PF)!.sriov?.vfs, VFS);
  assert.equal(snap.devices.get(VFS[2]!)!.vfioDev, 'vfio0');
  // The PF itself (no virtfn link names it) is found through its bus link.
  assert.equal(linked.filter((p) => p.endsWith(`/sys/bus/pci/devices/${PF}`)).length, 1);
});

/** A PF whose VFs sit where sriov_offset/stride put them, possibly on the next bus. */
function routedHost(vfs: readonly string[], offset: number, stride: number): Fixture {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.12.0-test');
  f.device({
    address: PF,
    vendor: '8086',
    device: '1592',
    driver: 'ice',
    iommuGroup: '20',
    sriov: { totalVfs: 64, numVfs: vfs.length, offset, stride },
  });
  vfs.forEach((a, i) =>
    f.device({
      address: a,
      vendor: '8086',
      device: '1889',
      physfn: PF,
      iommuGroup: String(21 + i),
      driver: i === 1 ? null : 'iavf',
    }),
  );
  return f;
}

const virtfnReads = (linked: string[]) =>
  linked.filter((p) => p.includes(`/${PF}/virtfn`)).map((p) => p.slice(p.lastIndexOf('/') + 1));

test("a PF's VF addresses come from sriov_offset and sriov_stride: only its first and last virtfn links are read", () => {
  // Routing ID 05:00.0 + 254 + N * 3: 05:1f.6, 06:00.1 (the next bus, as pci_iov_virtfn_bus
  // allows), 06:00.4, 06:00.7.
  const vfs = ['0000:05:1f.6', '0000:06:00.1', '0000:06:00.4', '0000:06:00.7'];
  const f = routedHost(vfs, 254, 3);
  const { result: snap, linked, opened } = recorded(() => readSnapshot(new HostRoot(f.dir)));
  assert.deepEqual(snap.devices.get(PF)!.sriov?.vfs, vfs);
  assert.deepEqual(virtfnReads(linked), ['virtfn0', 'virtfn3']);
  for (const [i, a] of vfs.entries()) {
    const d = snap.devices.get(a)!;
    assert.deepEqual([d.physfn, d.driver], [PF, i === 1 ? null : 'iavf'], a);
    assert.ok(
      opened.some((p) => p.endsWith(`/sys/devices/pci0000:00/${a}/modalias`)),
      `${a} read in place`,
    );
  }
  // The same answers as a read that follows every link (the attributes taken away).
  for (const x of ['sriov_offset', 'sriov_stride']) f.tree.rm(`${f.tree.devDir(PF)}/${x}`);
  const { result: byLinks, linked: all } = recorded(() => readSnapshot(new HostRoot(f.dir)));
  assert.deepEqual(virtfnReads(all), ['virtfn0', 'virtfn1', 'virtfn2', 'virtfn3']);
  assert.deepEqual([...byLinks.devices.entries()], [...snap.devices.entries()]);
  // Two VFs: both links are read to check the arithmetic anyway, so the attributes are not.
  const two = routedHost(vfs.slice(0, 2), 254, 3);
  const {
    result: small,
    linked: twoLinks,
    opened: twoOpened,
  } = recorded(() => readSnapshot(new HostRoot(two.dir)));
  assert.deepEqual(small.devices.get(PF)!.sriov?.vfs, vfs.slice(0, 2));
  assert.deepEqual(virtfnReads(twoLinks), ['virtfn0', 'virtfn1']);
  assert.equal(twoOpened.filter((p) => /sriov_(offset|stride)$/.test(p)).length, 0);
});

test('sriov_offset and sriov_stride that do not name what the virtfn links do: every link is read and believed', () => {
  const vfs = ['0000:05:00.1', '0000:05:00.2', '0000:05:00.3'];
  for (const [offset, stride] of [
    [1, 2],
    [2, 1],
    [1, 0],
    [65535, 1],
  ] as const) {
    const f = routedHost(vfs, offset!, stride!);
    const { result: snap, linked } = recorded(() => readSnapshot(new HostRoot(f.dir)));
    assert.deepEqual(snap.devices.get(PF)!.sriov?.vfs, vfs, `offset ${offset} stride ${stride}`);
    // The first and last links, read to check the arithmetic, then all of them.
    assert.deepEqual(virtfnReads(linked).slice(-3), ['virtfn0', 'virtfn1', 'virtfn2']);
    for (const a of vfs) assert.equal(snap.devices.get(a)?.physfn, PF, a);
  }
  // Not numbers (or a newline the kernel never prints twice): the links.
  const f = routedHost(vfs, 1, 1);
  f.tree.write(`${f.tree.devDir(PF)}/sriov_stride`, '0x1\n');
  const { linked } = recorded(() => readSnapshot(new HostRoot(f.dir)));
  assert.deepEqual(virtfnReads(linked), ['virtfn0', 'virtfn1', 'virtfn2']);
});

/** Runs `fn` recording the paths fs.existsSync was asked about. */
function probed<T>(fn: () => T): { result: T; exists: string[] } {
  const nodeFs: typeof fs = require('node:fs');
  const real = nodeFs.existsSync;
  const exists: string[] = [];
  nodeFs.existsSync = (p: fs.PathLike) => {
    exists.push(String(p));
    return real(p);
  };
  try {
    return { result: fn(), exists };
  } finally {
    nodeFs.existsSync = real;
  }
}

test('vfio-dev nodes come from the /sys/class/vfio-dev links, not from a look into every device', () => {
  const f = sriovHost();
  // An unbind blocked on an open VFIO device: the driver link is gone, vfio-dev/ stays.
  f.device({ address: '0000:06:00.0', vendor: '8086', device: '1572', vfioDev: 'vfio1' });
  // An mdev's VFIO device (its parent is no PCI device): not a PCI device's vfio-dev.
  const mdev = `${f.tree.devDir(PF)}/83b8f4f2-509f-382f-3c1e-e6bfe0fa1001`;
  f.tree.mkdir(`${mdev}/vfio-dev/vfio2`);
  f.tree.link('/sys/class/vfio-dev/vfio2', `${mdev}/vfio-dev/vfio2`);
  const { result: snap, exists } = probed(() => readSnapshot(new HostRoot(f.dir)));
  const vfio = [...snap.devices.values()]
    .filter((d) => d.vfioDev)
    .map((d) => [d.address, d.vfioDev]);
  assert.deepEqual(vfio, [
    ['0000:05:00.3', 'vfio0'],
    ['0000:06:00.0', 'vfio1'],
  ]);
  assert.deepEqual(
    exists.filter((p) => p.endsWith('/vfio-dev')),
    [],
    'no device directory probed for vfio-dev/',
  );
  // A few named devices: each looks at its own vfio-dev/.
  const one = readSnapshot(new HostRoot(f.dir), { only: ['0000:06:00.0'], shallow: true });
  assert.equal(one.devices.get('0000:06:00.0')!.vfioDev, 'vfio1');
});

test('a /sys/class/vfio-dev link of another shape: every device is looked at instead', () => {
  const f = sriovHost();
  // A class entry that is no link (a tree copied with links followed).
  f.tree.mkdir('/sys/class/vfio-dev/vfio9');
  const { result: snap, exists } = probed(() => readSnapshot(new HostRoot(f.dir)));
  assert.equal(snap.devices.get(VFS[2]!)!.vfioDev, 'vfio0');
  assert.equal(snap.devices.get(VFS[0]!)!.vfioDev, null);
  assert.ok(
    exists.some((p) => p.endsWith(`/${VFS[0]}/vfio-dev`)),
    'looked into the device',
  );
});

test('ids and class come from the modalias, field by field, as the attribute files give them', () => {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.12.0-test');
  // Every field different, with hex letters: a field taken from its neighbour's place shows.
  f.device({
    address: '0000:07:00.0',
    vendor: '1ab3',
    device: 'c0de',
    subsystemVendor: 'face',
    subsystemDevice: '0bad',
    class: '12ef34',
    iommuGroup: '3',
  });
  // A modalias of another shape (a wider id): the attribute files are read instead.
  f.device({
    address: '0000:08:00.0',
    vendor: '8086',
    device: '1572',
    subsystemVendor: '8086',
    subsystemDevice: '0001',
    class: '020000',
    iommuGroup: '4',
  });
  f.tree.write(
    '/sys/devices/pci0000:00/0000:08:00.0/modalias',
    'pci:v00018086d00001572sv00008086sd00000001bc02sc00i00\n',
  );
  const snap = readSnapshot(new HostRoot(f.dir));
  const fields = (a: string) => {
    const d = snap.devices.get(a)!;
    return [d.vendor, d.device, d.subsystemVendor, d.subsystemDevice, d.class, d.modalias];
  };
  assert.deepEqual(fields('0000:07:00.0'), [
    '1ab3',
    'c0de',
    'face',
    '0bad',
    '12ef34',
    'pci:v00001AB3d0000C0DEsv0000FACEsd00000BADbc12scEFi34',
  ]);
  assert.deepEqual(fields('0000:08:00.0'), ['8086', '1572', '8086', '0001', '020000', null]);
});
