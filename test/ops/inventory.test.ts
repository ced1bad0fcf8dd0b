import { test, afterEach } from 'node:test';
import * as assert from 'node:assert/strict';
import { Fixture, ALIASES } from '../support/fixture';
import { e1000e } from '../support/devices';
import { cli } from '../support/cli';
import { validateAgainst } from '../support/schema';

const fixtures: Fixture[] = [];
afterEach(() => fixtures.splice(0).forEach((f) => f.cleanup()));

/** A small host: NIC with an address, NVMe root disk, an SR-IOV PF with 2 VFs, a shared group. */
function sampleHost(): Fixture {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.12.0-test').modulesAlias([
    ALIASES.vfioPci,
    ALIASES.mlx5,
    ALIASES.virtio1041,
    ALIASES.e1000e,
  ]);
  f.pciIds(
    '# pci.ids\n15b3  Mellanox Technologies\n\t101d  MT2892 Family [ConnectX-6 Dx]\n\t101e  ConnectX Family mlx5Gen Virtual Function\n8086  Intel Corporation\n\t10d3  82574L Gigabit Network Connection\n\t\t8086 0000  Gigabit CT\nC 02  Network controller\n\t00  Ethernet controller\nC 01  Mass storage controller\n\t08  Non-Volatile memory controller\n\t\t02  NVM Express\n',
  );
  f.device(
    e1000e('0000:00:02.0', '2', { netdevs: [{ name: 'eno1', up: true, ipv4: '192.168.1.0' }] }),
  );
  f.device({
    address: '0000:01:00.0',
    vendor: '144d',
    device: 'a808',
    class: '010802',
    driver: 'nvme',
    iommuGroup: '12',
    numaNode: 0,
    blockdevs: [
      {
        name: 'nvme0n1',
        devno: '259:0',
        partitions: [
          { name: 'nvme0n1p1', devno: '259:1' },
          { name: 'nvme0n1p2', devno: '259:2' },
        ],
      },
    ],
  });
  f.mount('259:1', '/dev/nvme0n1p1', '/');
  f.swap('/dev/nvme0n1p2');
  f.device({
    address: '0000:05:00.0',
    vendor: '15b3',
    device: '101d',
    driver: 'mlx5_core',
    iommuGroup: '20',
    sriov: { totalVfs: 8, numVfs: 2 },
  });
  f.device({
    address: '0000:05:00.1',
    vendor: '15b3',
    device: '101e',
    physfn: '0000:05:00.0',
    iommuGroup: '21',
    driver: 'mlx5_core',
  });
  f.device({
    address: '0000:05:00.2',
    vendor: '15b3',
    device: '101e',
    physfn: '0000:05:00.0',
    iommuGroup: '22',
    driverOverride: 'mlx5_vfio_pci',
    driver: 'mlx5_vfio_pci',
    vfioDev: 'vfio0',
  });
  f.device({
    address: '0000:00:1f.0',
    vendor: '8086',
    device: '2918',
    class: '060100',
    driver: 'lpc_ich',
    iommuGroup: '9',
    resetMethods: null,
  });
  f.device({
    address: '0000:00:1f.3',
    vendor: '8086',
    device: '2930',
    class: '0c0500',
    driver: 'i801_smbus',
    iommuGroup: '9',
  });
  return f;
}

test('list --json: one object per device, fields as the schema says', async () => {
  const f = sampleHost();
  const r = await cli(f.dir, ['list', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const list = r.json<any[]>();
  validateAgainst('device.schema.json', list);
  assert.deepEqual(
    list.map((d) => d.address),
    [
      '0000:00:02.0',
      '0000:00:1f.0',
      '0000:00:1f.3',
      '0000:01:00.0',
      '0000:05:00.0',
      '0000:05:00.1',
      '0000:05:00.2',
    ],
  );
  const nic = list[0];
  assert.equal(nic.vendor, '8086');
  assert.equal(nic.device, '10d3');
  assert.equal(nic.driver, 'e1000e');
  assert.equal(nic.deviceName, '82574L Gigabit Network Connection');
  assert.deepEqual(nic.vfio, { module: 'vfio_pci', driver: 'vfio-pci' });
  assert.deepEqual(nic.netdevs, ['eno1']);
  assert.match(nic.inUse.join(), /eno1 is up.*carries routes \(192\.168\.1\.0\)/);
  const nvme = list[3];
  assert.equal(nvme.className, 'NVM Express');
  assert.deepEqual(nvme.blockdevs, ['nvme0n1']);
  assert.deepEqual(nvme.inUse, ['nvme0n1p1 is mounted on /', 'nvme0n1p2 is used as swap']);
  const pf = list[4];
  assert.deepEqual(pf.sriov, {
    totalVfs: 8,
    numVfs: 2,
    driversAutoprobe: true,
    vfs: ['0000:05:00.1', '0000:05:00.2'],
  });
  assert.equal(pf.vfio, null, 'a PF with VFs has no usable vfio driver');
  const vf2 = list[6];
  assert.equal(vf2.physfn, '0000:05:00.0');
  assert.equal(vf2.onVfio, true);
  assert.equal(vf2.driverOverride, 'mlx5_vfio_pci');
  assert.deepEqual(list[1].iommuGroupPeers, ['0000:00:1f.3']);
  assert.equal(list[1].resetMethods, null, 'a missing attribute is tolerated');
  assert.equal(list[6].numaNode, -1);
});

test('list (table) shows names, VFIO choice, group, PF/VF and in-use marks', async () => {
  const f = sampleHost();
  const r = await cli(f.dir, ['list']);
  assert.equal(r.code, 0);
  const line = (a: string) => r.stdout.split('\n').find((l) => l.startsWith(a)) ?? '';
  assert.match(
    line('0000:00:02.0'),
    /Intel Corporation 82574L.*e1000e\s+vfio-pci\s+2\s+-\s+host: eno1/,
  );
  assert.match(
    line('0000:05:00.2'),
    /mlx5_vfio_pci\s+mlx5_vfio_pci\s+22\s+VF of 0000:05:00.0\s+vfio:vfio0/,
  );
  assert.match(line('0000:05:00.0'), /PF 2\/8 VFs/);
});

test('show: full and short addresses, candidates best first, global options after the command', async () => {
  const f = sampleHost();
  const r = await cli(f.dir, ['show', '05:00.1', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const d = r.json();
  validateAgainst('device.schema.json', d);
  assert.equal(d.address, '0000:05:00.1');
  assert.deepEqual(
    d.candidates.map((c: any) => [c.module, c.driver, c.wildcards, c.usable]),
    [
      ['mlx5_vfio_pci', 'mlx5_vfio_pci', 5, true],
      ['vfio_pci', 'vfio-pci', 7, true],
    ],
  );
  assert.equal(d.candidates[0].alias, 'vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*');
  // --root after the command, and VFIOCTL_ROOT from the environment.
  let out = '';
  const { run } = await import('../../src/cli/main');
  const code = await run(['show', '0000:05:00.1', '--json', '--root', f.dir], {
    out: (s) => (out += s),
    err: () => {},
    env: {},
  });
  assert.equal(code, 0);
  assert.equal(JSON.parse(out).address, '0000:05:00.1');
  out = '';
  assert.equal(
    await run(['show', '0000:05:00.1', '--json'], {
      out: (s) => (out += s),
      err: () => {},
      env: { VFIOCTL_ROOT: f.dir },
    }),
    0,
  );
  assert.equal(JSON.parse(out).address, '0000:05:00.1');
});

test('show: malformed and unknown devices exit 2 naming the device', async () => {
  const f = sampleHost();
  for (const bad of ['05:00', '0000:05:00.8', 'zz:00.0', '0000:05:00.1\n', '../../etc']) {
    const r = await cli(f.dir, ['show', bad]);
    assert.equal(r.code, 2, `'${bad}' -> ${r.code}`);
    assert.match(r.stderr, /is not a PCI address/);
  }
  const r = await cli(f.dir, ['show', '0000:42:00.0']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no PCI device 0000:42:00\.0/);
  assert.equal((await cli(f.dir, ['frobnicate'])).code, 2, 'unknown command is bad input');
  assert.equal((await cli(f.dir, ['list', '--bogus'])).code, 2, 'unknown option is bad input');
});

test('--kernel picks the modules of another release', async () => {
  const f = sampleHost();
  f.tree.write('/lib/modules/6.1.0-old/modules.alias', ALIASES.vfioPci + '\n');
  const now = (await cli(f.dir, ['show', '05:00.1', '--json'])).json();
  const old = (await cli(f.dir, ['--kernel', '6.1.0-old', 'show', '05:00.1', '--json'])).json();
  assert.equal(now.vfio.module, 'mlx5_vfio_pci');
  assert.equal(old.vfio.module, 'vfio_pci');
});

test('netdevs and block devices below a virtio child and behind a bridge are found', async () => {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.12.0-test').modulesAlias([ALIASES.vfioPci]);
  f.device({
    address: '0000:00:1c.0',
    vendor: '8086',
    device: 'a110',
    class: '060400',
    headerType: 1,
    driver: 'pcieport',
    iommuGroup: '7',
  });
  f.device({
    address: '0000:02:00.0',
    vendor: '1af4',
    device: '1041',
    parent: '0000:00:1c.0',
    driver: 'virtio-pci',
    iommuGroup: '7',
  });
  // virtio-net: the netdev lives under the virtioN child device.
  const dev = f.tree.devDir('0000:02:00.0');
  f.tree.write(`${dev}/virtio3/net/ens3/flags`, '0x1002\n');
  f.tree.link('/sys/class/net/ens3', `${dev}/virtio3/net/ens3`);
  const list = (await cli(f.dir, ['list', '--json'])).json<any[]>();
  assert.deepEqual(list.find((d) => d.address === '0000:02:00.0').netdevs, ['ens3']);
  assert.deepEqual(
    list.find((d) => d.address === '0000:00:1c.0').netdevs,
    ['ens3'],
    'the bridge above sees it too',
  );
  assert.deepEqual(
    list.find((d) => d.address === '0000:02:00.0').inUse,
    [],
    'down, no address: not in use',
  );
});

test('list reads only: the fixture tree is byte-for-byte unchanged', async () => {
  const f = sampleHost();
  const { execFileSync } = await import('node:child_process');
  const snap = () =>
    execFileSync('sh', ['-c', 'find . -printf "%p %s %l %T@\\n" | sort'], {
      cwd: f.dir,
      encoding: 'utf8',
    });
  const before = snap();
  await cli(f.dir, ['list']);
  await cli(f.dir, ['list', '--json']);
  await cli(f.dir, ['show', '05:00.1']);
  assert.equal(snap(), before);
});

test('a virtio-9p device whose share is mounted (a VM root filesystem) is in use', async () => {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.12.0-test').modulesAlias([ALIASES.vfioPci]);
  f.device({
    address: '0000:00:10.0',
    vendor: '1af4',
    device: '1009',
    class: '000200',
    driver: 'virtio-pci',
    iommuGroup: '6',
  });
  f.device({
    address: '0000:00:11.0',
    vendor: '1af4',
    device: '1009',
    class: '000200',
    driver: 'virtio-pci',
    iommuGroup: '7',
  });
  for (const [addr, v, tag] of [
    ['0000:00:10.0', 'virtio1', 'hostroot'],
    ['0000:00:11.0', 'virtio2', 'unused'],
  ] as const) {
    const dir = `${f.tree.devDir(addr)}/${v}`;
    f.tree.write(`${dir}/mount_tag`, `${tag}\0`);
    f.tree.link(`/sys/bus/virtio/devices/${v}`, dir);
  }
  f.tree.write(
    '/proc/self/mountinfo',
    '22 1 0:21 / / rw - overlay overlay rw\n23 1 0:30 / /host ro,relatime - 9p hostroot ro,trans=virtio\n',
  );
  const list = (await cli(f.dir, ['list', '--json'])).json<any[]>();
  assert.deepEqual(list.find((d) => d.address === '0000:00:10.0').inUse, [
    "9p filesystem 'hostroot' is mounted on /host",
  ]);
  assert.deepEqual(list.find((d) => d.address === '0000:00:11.0').inUse, []);
});

test('list --json of many devices is written in batches, byte for byte JSON.stringify(list, null, 2)', async () => {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.12.0-test').modulesAlias([ALIASES.vfioPci]);
  // Three batches and a part (cli/inventory.ts writeJsonArray writes 48 devices at a time).
  const n = 48 * 3 + 5;
  for (let i = 0; i < n; i++)
    f.device({
      address: `0000:${(0x10 + (i >> 5)).toString(16)}:${(i & 31).toString(16).padStart(2, '0')}.0`,
      vendor: '8086',
      device: '10d3',
      iommuGroup: String(i),
    });
  const r = await cli(f.dir, ['list', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const list = r.json<any[]>();
  assert.equal(list.length, n);
  assert.equal(r.stdout, JSON.stringify(list, null, 2) + '\n');
  // An empty host: an empty array.
  const empty = Fixture.create();
  fixtures.push(empty);
  empty.kernel('6.12.0-test');
  const e = await cli(empty.dir, ['list', '--json']);
  assert.equal(e.stdout, '[]\n');
});
