import { test } from 'node:test';
import * as fs from 'node:fs';
import * as assert from 'node:assert/strict';
import { DRIVERS, KernelHang } from '../support/kernel-model';
import { lockHeld } from '../../src/apply/lock';
import { HostRoot } from '../../src/host/root';
import { E1, E2, LPC, modelHosts, SMB, VN } from '../support/model-host';

const host = modelHosts();

test('bind picks virtio_vfio_pci for 1af4:1041 and vfio-pci for e1000e, loading the modules itself', async () => {
  const h = host();
  const r = await h.run(['bind', VN, E1, '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const res = r.json().results;
  assert.deepEqual(
    res.map((x: any) => [x.address, x.status, x.driver]),
    [
      [VN, 'ok', 'virtio_vfio_pci'],
      [E1, 'ok', 'vfio-pci'],
    ],
  );
  assert.deepEqual(h.state(VN), {
    driver: 'virtio_vfio_pci',
    override: 'virtio_vfio_pci',
    vfioDev: true,
  });
  assert.deepEqual(h.state(E1), { driver: 'vfio-pci', override: 'vfio-pci', vfioDev: true });
  assert.deepEqual(h.k.modprobes.map((m) => m[0]).sort(), ['vfio_pci', 'virtio_vfio_pci']);
  assert.ok(h.f.tree.exists('/dev/vfio/3') && h.f.tree.exists('/dev/vfio/2'));
  // The override is written before the unbind, so nothing can grab the device in between.
  const e1Writes = h.k.writes.filter((w) => w.rel.includes(E1) || w.value === E1).map((w) => w.rel);
  assert.deepEqual(e1Writes, [
    `/sys/bus/pci/devices/${E1}/driver_override`,
    '/sys/bus/pci/drivers/e1000e/unbind',
    '/sys/bus/pci/drivers_probe',
  ]);
});

test('binding a device already on the requested driver is a no-op that writes nothing', async () => {
  const h = host();
  assert.equal((await h.run(['bind', E1])).code, 0);
  const n = h.k.writes.length;
  const r = await h.run(['bind', E1, '--json']);
  assert.equal(r.code, 0);
  assert.equal(r.json().results[0].status, 'noop');
  assert.equal(h.k.writes.length, n);
});

test('unbind returns devices to the driver they had, clears the override, forgets the record', async () => {
  const h = host();
  await h.run(['bind', VN, E1]);
  const r = await h.run(['unbind', VN, E1, '--json']);
  assert.equal(r.code, 0, r.stdout);
  assert.deepEqual(h.state(VN), { driver: 'virtio-pci', override: null, vfioDev: false });
  assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
  assert.deepEqual(h.f.tree.list('/run/vfioctl/bound'), []);
  assert.equal((await h.run(['unbind', E1, '--json'])).json().results[0].status, 'noop');
});

test('unbind loads the host driver by modalias when no host module is loaded (as udev would)', async () => {
  const h = host({ loaded: [DRIVERS.lpc, DRIVERS.smbus] });
  assert.equal(h.state(E1).driver, null);
  assert.equal((await h.run(['bind', E1])).code, 0);
  const r = await h.run(['unbind', E1]);
  assert.equal(r.code, 0, r.stdout);
  assert.deepEqual(h.k.modprobes.at(-1), [
    '-b',
    'pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00',
  ]);
  assert.equal(h.state(E1).driver, 'e1000e');
});

test('--dry-run prints the exact ordered writes and every failing check, and writes nothing', async () => {
  const h = host();
  h.f.tree.write(`/sys/class/net/eth0/flags`, '0x1003\n');
  const r = await h.run(['bind', E1, LPC, '--dry-run']);
  assert.equal(r.code, 3);
  assert.match(r.stdout, new RegExp(`${E1}: REFUSED \\(would be\\)\\n  - in-use: .*eth0 is up`));
  assert.match(
    r.stdout,
    new RegExp(
      `${LPC}: REFUSED[^]*- iommu-group: IOMMU group 9 would not be viable: ${SMB} \\(i801_smbus\\)`,
    ),
  );
  const ok = await h.run(['bind', E2, '--dry-run']);
  assert.equal(ok.code, 0);
  assert.equal(
    ok.stdout,
    `${E2}: would bind to vfio-pci (module vfio_pci), now on e1000e\n` +
      `  1. modprobe vfio_pci\n  2. write 'vfio-pci' > /sys/bus/pci/devices/${E2}/driver_override\n` +
      `  3. write '${E2}' > /sys/bus/pci/drivers/e1000e/unbind\n  4. write '${E2}' > /sys/bus/pci/drivers_probe\n` +
      `  5. verify ${E2} is on vfio-pci registered with VFIO\n`,
  );
  assert.equal(h.k.writes.length, 0);
  assert.equal(h.k.modprobes.length, 0);
  assert.equal(h.f.tree.exists('/run/vfioctl'), false, 'dry-run does not even take the lock');
});

test('an explicit variant outside its ID table is refused (exit 3); --force binds it, as the kernel allows', async () => {
  const h = host();
  const r = await h.run(['bind', E1, '--driver', 'virtio_vfio_pci']);
  assert.equal(r.code, 3);
  assert.match(r.stdout, /id-table: virtio_vfio_pci does not list 8086:10d3 in its ID table/);
  assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
  assert.equal(h.k.writes.length, 0);
  const f = await h.run(['bind', E1, '--driver', 'virtio_vfio_pci', '--force', '--json']);
  assert.equal(f.code, 0, f.stdout);
  assert.match(f.json().results[0].warnings.join(), /forced past: virtio_vfio_pci does not list/);
  assert.equal(h.state(E1).driver, 'virtio_vfio_pci');
});

test('a non-VFIO driver outside its ID table is refused even with --force; pci-stub needs no table', async () => {
  const h = host();
  const r = await h.run(['bind', VN, '--driver', 'e1000e', '--force']);
  assert.equal(r.code, 3);
  assert.match(r.stdout, /not a VFIO driver .*refused even with --force/);
  assert.equal(h.state(VN).driver, 'virtio-pci');
  const s = await h.run(['bind', E2, '--driver', 'pci-stub']);
  assert.equal(s.code, 0, s.stdout);
  assert.equal(h.state(E2).driver, 'pci-stub');
});

test('--driver none and --driver host are intents, not drivers: exit 2 naming the devices and the command that fits; nothing written', async () => {
  const h = host();
  const cases = [
    [
      ['bind', E1, '--driver', 'host'],
      `bind ${E1}: --driver host names an intent, not a driver: 'vfioctl unbind ${E1}' gives it back to its host driver now; 'vfioctl set ${E1} host' keeps it there`,
    ],
    [
      ['bind', '--id', '8086:10d3', '--driver', 'host', '--json'],
      `bind ${E1}, ${E2}: --driver host names an intent, not a driver: 'vfioctl unbind ${E1} ${E2}' gives them back to their host drivers now; 'vfioctl set DEVICE host' keeps a device there`,
    ],
    [
      ['bind', E1, '--driver', 'none', '--dry-run'],
      `bind ${E1}: --driver none names an intent, not a driver: 'vfioctl set ${E1} none' leaves it without any driver`,
    ],
    [
      ['bind', E1, E2, '--driver', 'none'],
      `bind ${E1}, ${E2}: --driver none names an intent, not a driver: 'vfioctl set DEVICE none' leaves a device without any driver`,
    ],
  ] as const;
  for (const [args, message] of cases) {
    const r = await h.run([...args]);
    assert.equal(r.code, 2, args.join(' '));
    assert.ok(r.stderr.includes(message), `${args.join(' ')}: ${r.stderr}`);
    assert.doesNotMatch(r.stderr, /unknown driver/);
    assert.equal(r.stdout, '');
  }
  assert.equal(h.k.writes.length, 0);
  assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
});

test('a forced variant whose probe fails exits 1 and the device is back on its driver, override cleared', async () => {
  const h = host();
  h.f.tree.write(
    '/lib/modules/6.12.0-test/modules.alias',
    (h.f.tree.read('/lib/modules/6.12.0-test/modules.alias') ?? '') +
      'alias vfio_pci:v00008086d00004941sv*sd*bc*sc*i* qat_vfio_pci\n',
  );
  const r = await h.run(['bind', E1, '--driver', 'qat_vfio_pci', '--force', '--json']);
  assert.equal(r.code, 1, r.stdout);
  const res = r.json().results[0];
  assert.equal(res.status, 'failed');
  assert.match(
    res.error,
    /did not bind to qat_vfio_pci: its probe failed .*; rolled back to e1000e/,
  );
  assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
  assert.deepEqual(h.f.tree.list('/run/vfioctl/journal'), []);
});

test('an injected vfio-pci probe failure rolls back; a missing module fails before any write', async () => {
  const h = host();
  h.k.failProbe('vfio-pci', E2, 'EIO');
  const r = await h.run(['bind', E2]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /FAILED: .*did not bind to vfio-pci/);
  assert.deepEqual(h.state(E2), { driver: 'e1000e', override: null, vfioDev: false });
  // A module kmod cannot find: the run stops at modprobe, nothing in sysfs changed.
  h.f.tree.write(
    '/lib/modules/6.12.0-test/modules.alias',
    (h.f.tree.read('/lib/modules/6.12.0-test/modules.alias') ?? '') +
      'alias vfio_pci:v00008086d000010D3sv*sd*bc*sc*i* ghost_vfio_pci\n',
  );
  const before = h.k.writes.length;
  const g = await h.run(['bind', E1, '--json']);
  assert.equal(g.code, 1);
  assert.match(
    g.json().results[0].error,
    /module ghost_vfio_pci could not be loaded: modprobe: FATAL: Module ghost_vfio_pci not found/,
  );
  assert.equal(
    h.k.writes.slice(before).filter((w) => w.rel.includes('driver_override') && w.value !== '\n')
      .length,
    0,
  );
  assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
});

test('host use: a NIC that is up, with an address or routes, is refused; --force moves it', async () => {
  const h = host();
  h.f.tree.write(`/sys/class/net/eth0/flags`, '0x1003\n');
  h.f.tree.write(
    '/proc/net/route',
    'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\neth0\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n',
  );
  const r = await h.run(['bind', E1]);
  assert.equal(r.code, 3);
  assert.match(
    r.stdout,
    /in-use: the host is using it: interface eth0 is up; interface eth0 carries routes \(192\.168\.1\.0\)/,
  );
  assert.equal(h.state(E1).driver, 'e1000e');
  assert.equal((await h.run(['bind', E1, '--force'])).code, 0);
  assert.equal(h.state(E1).driver, 'vfio-pci');
});

test('a device whose VFIO group is open is refused even with --force, before anything blocks', async () => {
  const h = host();
  await h.run(['bind', E1]);
  h.k.openGroup('2');
  for (const args of [
    ['unbind', E1],
    ['bind', E1, '--driver', 'virtio_vfio_pci', '--force'],
    ['unbind', E1, '--dry-run'],
  ]) {
    const r = await h.run(args);
    assert.equal(r.code, 3, args.join(' '));
    assert.match(r.stdout, /vfio-user: \/dev\/vfio\/2 is open by pid 4242 \(qemu-system-x86\)/);
  }
  assert.equal(h.state(E1).driver, 'vfio-pci');
  await assert.rejects(
    h.k.write('/sys/bus/pci/drivers/vfio-pci/unbind', E1),
    KernelHang,
    'the model blocks where the kernel would',
  );
});

test('no IOMMU: a clear refusal before anything is written, every device stays bound', async () => {
  const h = host({ iommu: false });
  const r = await h.run(['bind', E1, E2, VN]);
  assert.equal(r.code, 3);
  assert.equal(
    r.stdout.match(/no-iommu: VFIO needs an IOMMU and this host has no IOMMU/g)?.length,
    3,
  );
  assert.equal(h.k.writes.length + h.k.modprobes.length, 0);
  assert.deepEqual(
    [E1, E2, VN].map((a) => h.state(a).driver),
    ['e1000e', 'e1000e', 'virtio-pci'],
  );
});

test('shared IOMMU group: refused naming the host-driver peers; --group moves the whole group', async () => {
  const h = host();
  const r = await h.run(['bind', SMB]);
  assert.equal(r.code, 3);
  assert.match(
    r.stdout,
    new RegExp(
      `IOMMU group 9 would not be viable: ${LPC.replace(/\./g, '\\.')} \\(lpc_ich\\) is on host drivers; use --group`,
    ),
  );
  const g = await h.run(['bind', SMB, '--group', '--json']);
  assert.equal(g.code, 0, g.stdout);
  assert.deepEqual(
    g.json().results.map((x: any) => [x.address, x.status]),
    [
      [LPC, 'ok'],
      [SMB, 'ok'],
    ],
  );
  assert.equal(h.state(LPC).driver, 'vfio-pci');
  assert.equal(h.state(SMB).driver, 'vfio-pci');
});

test('--group is all or nothing: one member failing to probe rolls the others back', async () => {
  const h = host();
  h.k.failProbe('vfio-pci', SMB, 'EIO');
  const g = await h.run(['bind', LPC, '--group', '--json']);
  assert.equal(g.code, 1);
  const res = g.json().results;
  assert.deepEqual(
    res.map((x: any) => x.status),
    ['failed', 'failed'],
  );
  assert.match(res[0].error, /rolled back because 0000:00:1f.3 failed/);
  assert.equal(h.state(LPC).driver, 'lpc_ich');
  assert.equal(h.state(SMB).driver, 'i801_smbus');
  assert.equal(h.state(LPC).override, null);
});

test('SR-IOV: a PF with VFs is refused; its VFs are bound individually without touching the PF', async () => {
  const h = host();
  h.k.define(
    {
      name: 'nvme',
      module: 'nvme',
      ids: ['pci:v00001B36d00000010sv*sd*bc*sc*i*'],
      overrideOnlyIds: [],
      vfio: false,
    },
    true,
  );
  h.f.device({
    address: '0000:01:00.0',
    vendor: '1b36',
    device: '0010',
    class: '010802',
    driver: 'nvme',
    iommuGroup: '10',
    sriov: { totalVfs: 4, numVfs: 2 },
  });
  h.f.device({
    address: '0000:01:00.1',
    vendor: '1b36',
    device: '0010',
    class: '010802',
    driver: 'nvme',
    iommuGroup: '11',
    physfn: '0000:01:00.0',
  });
  h.f.device({
    address: '0000:01:00.2',
    vendor: '1b36',
    device: '0010',
    class: '010802',
    driver: 'nvme',
    iommuGroup: '12',
    physfn: '0000:01:00.0',
  });
  const pf = await h.run(['bind', '01:00.0']);
  assert.equal(pf.code, 3);
  assert.match(
    pf.stdout,
    /sriov-pf: it is an SR-IOV PF with 2 VFs enabled \(0000:01:00.1, 0000:01:00.2\)/,
  );
  const vf = await h.run(['bind', '01:00.1']);
  assert.equal(vf.code, 0, vf.stdout);
  assert.equal(h.state('0000:01:00.1').driver, 'vfio-pci');
  assert.equal(h.state('0000:01:00.0').driver, 'nvme');
  assert.equal(h.state('0000:01:00.2').driver, 'nvme');
});

test('a variant whose prerequisite fails: vfio falls back with a warning; an explicit name is refused', async () => {
  const h = host();
  h.f.tree.write(
    '/lib/modules/6.12.0-test/modules.alias',
    (h.f.tree.read('/lib/modules/6.12.0-test/modules.alias') ?? '') +
      'alias vfio_pci:v00008086d000010D3sv*sd*bc*sc*i* qat_vfio_pci\n',
  );
  const d = await h.run(['bind', E1, '--dry-run', '--json']);
  assert.equal(d.code, 0);
  assert.equal(d.json().results[0].target, 'vfio-pci');
  assert.match(
    d.json().results[0].warnings.join(),
    /qat_vfio_pci fits better but cannot be used \(qat_vfio_pci initialises only SR-IOV VFs/,
  );
  const x = await h.run(['bind', E1, '--driver', 'qat_vfio_pci']);
  assert.equal(x.code, 3);
  assert.match(x.stdout, /prerequisite: qat_vfio_pci cannot drive this device/);
});

test('bad input exits 2 and changes nothing: driver names, addresses, unknown devices and drivers', async () => {
  const h = host();
  const cases: [string[], RegExp][] = [
    [['bind', E1, '--driver', 'vfio-pci\n'], /is not a driver name/],
    [['bind', E1, '--driver', 'vfio pci'], /is not a driver name/],
    [['bind', E1, '--driver', '../vfio-pci'], /is not a driver name/],
    [['bind', E1, '--driver', 'x'.repeat(65)], /is not a driver name/],
    [['bind', E1, '--driver', ''], /is not a driver name/],
    [['bind', E1, '--driver', 'nosuchdrv'], /unknown driver 'nosuchdrv'/],
    [['bind', '0000:00:02'], /is not a PCI address/],
    // An interface name is a DEVICE now (issue 12): one that does not exist is still bad input.
    [['unbind', 'eth9'], /is not a PCI address/],
    [['bind', E1, '--owner', 'nobody-here'], /no user 'nobody-here'/],
  ];
  for (const [args, re] of cases) {
    const r = await h.run(args);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stdout + r.stderr, re, args.join(' '));
  }
  const u = await h.run(['bind', '0000:42:00.0', '--json']);
  assert.equal(u.code, 2);
  assert.equal(u.json().results[0].status, 'invalid');
  assert.equal(h.k.writes.length, 0);
});

test('several devices: each has its own result; a refused one does not stop the others', async () => {
  const h = host();
  h.f.tree.write(`/sys/class/net/eth0/flags`, '0x1003\n');
  const r = await h.run(['bind', E1, E2, '--json']);
  assert.equal(r.code, 3);
  assert.deepEqual(
    r.json().results.map((x: any) => x.status),
    ['refused', 'ok'],
  );
  assert.equal(h.state(E2).driver, 'vfio-pci');
});

test('--owner hands /dev/vfio/<group> and the vfioN cdev to the VMM user', async () => {
  const h = host();
  h.f.tree.write('/etc/passwd', 'root:x:0:0::/root:/bin/sh\nqemu:x:107:110::/:/usr/sbin/nologin\n');
  h.f.tree.write('/etc/group', 'root:x:0:\nkvm:x:110:\n');
  const r = await h.run(['bind', E2, '--owner', 'qemu:kvm']);
  assert.equal(r.code, 0, r.stdout);
  assert.deepEqual(
    h.k.chowns.map((c) => [c.rel, c.uid, c.gid]),
    [
      ['/dev/vfio/5', 107, 110],
      ['/dev/vfio/devices/vfio0', 107, 110],
    ],
  );
});

test('concurrent invocations are serialised by the lock', async () => {
  const h = host();
  let inside = 0;
  let maxInside = 0;
  h.k.onWrite = async () => {
    inside++;
    maxInside = Math.max(maxInside, inside);
    await new Promise((r) => setTimeout(r, 5));
    inside--;
  };
  // Same device twice at once: without the lock both would plan from the same snapshot.
  const [a, b] = await Promise.all([h.run(['bind', E2, '--json']), h.run(['bind', E2, '--json'])]);
  assert.deepEqual([a.json().results[0].status, b.json().results[0].status].sort(), ['noop', 'ok']);
  assert.equal(h.state(E2).driver, 'vfio-pci');
  // The lock file stays (removing a flock file races with waiters); nobody holds it any more.
  assert.equal(lockHeld(new HostRoot(h.f.dir)), false);
});

test('--owner is undone when a later step fails: the group node goes back to its owner', async () => {
  const h = host();
  h.f.tree.write('/etc/passwd', 'root:x:0:0::/root:/bin/sh\nqemu:x:107:110::/:/usr/sbin/nologin\n');
  h.f.tree.write('/etc/group', 'root:x:0:\nkvm:x:110:\n');
  const chown = h.k.chown.bind(h.k);
  h.k.chown = async (rel, uid, gid) => {
    if (rel.startsWith('/dev/vfio/devices/'))
      throw Object.assign(new Error('EPERM'), { code: 'EPERM' });
    return chown(rel, uid, gid);
  };
  const owner = fs.statSync(h.f.tree.abs('/dev')); // the fixture's nodes belong to whoever made them
  const r = await h.run(['bind', E2, '--owner', 'qemu:kvm', '--json']);
  assert.equal(r.code, 1);
  assert.deepEqual(
    h.k.chowns.map((c) => [c.rel, c.uid, c.gid]),
    [
      ['/dev/vfio/5', 107, 110],
      ['/dev/vfio/5', owner.uid, owner.gid],
    ],
  );
  assert.equal(h.state(E2).driver, 'e1000e');
});

test('a hooks.d that is a symlink out of the root is refused (hook-trust), never run', async () => {
  const h = host();
  const outside = fs.mkdtempSync('/tmp/vfioctl-hooks-');
  try {
    fs.writeFileSync(`${outside}/10-evil`, '#!/bin/sh\ntouch "$0.ran"\n', { mode: 0o755 });
    fs.mkdirSync(h.f.tree.abs('/etc/vfioctl'), { recursive: true });
    fs.symlinkSync(outside, h.f.tree.abs('/etc/vfioctl/hooks.d'));
    const r = await h.run(['bind', E2, '--json']);
    assert.equal(r.code, 3, r.stdout);
    assert.match(JSON.stringify(r.json().results[0].refusals), /hook-trust.*outside/);
    assert.equal(fs.existsSync(`${outside}/10-evil.ran`), false);
  } finally {
    fs.rmSync(outside, { recursive: true, force: true });
  }
});
