// Bulk selection on bind and unbind: --id, --class, --vfs-of and a network interface name for its
// PCI function, each listed by --dry-run; a selector that matches nothing, or is malformed, is bad
// input (exit 2) and nothing is written.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { E1, E2, LPC, modelHosts, NVME, SMB, VN } from '../support/model-host';
import { interfaceAddress, isInterfaceName } from '../../src/host/netdev';
import { HostRoot } from '../../src/host/root';

const host = modelHosts({ trustSelf: true });

test('bind --id selects every device of that id, --dry-run lists them; unbind --id gives them back', async () => {
  const h = host();
  const dry = await h.run(['bind', '--id', '8086:10D3', '--dry-run']);
  assert.equal(dry.code, 0, dry.stdout + dry.stderr);
  assert.match(dry.stdout, /^--id 8086:10d3 selects 0000:00:02\.0, 0000:00:05\.0$/m);
  assert.match(dry.stdout, /0000:00:02\.0: would bind to vfio-pci/);
  assert.match(dry.stdout, /0000:00:05\.0: would bind to vfio-pci/);
  assert.equal(h.k.writes.length, 0, 'a dry run writes nothing');
  const j = (await h.run(['bind', '--id', '8086:10d3', '--dry-run', '--json'])).json();
  assert.deepEqual(j.selected, [{ by: '--id 8086:10d3', addresses: [E1, E2] }]);
  const b = await h.run(['bind', '--id', '8086:10d3']);
  assert.equal(b.code, 0, b.stdout + b.stderr);
  assert.deepEqual(
    [h.state(E1).driver, h.state(E2).driver, h.state(VN).driver],
    ['vfio-pci', 'vfio-pci', 'virtio-pci'],
  );
  const u = await h.run(['unbind', '--id', '8086:10d3', '--json']);
  assert.equal(u.code, 0, u.stdout + u.stderr);
  assert.deepEqual(
    u.json().results.map((r: any) => [r.address, r.status]),
    [
      [E1, 'ok'],
      [E2, 'ok'],
    ],
  );
  assert.deepEqual([h.state(E1).driver, h.state(E2).driver], ['e1000e', 'e1000e']);
});

test('--class selects by class prefix; selectors and DEVICE arguments combine, each device once', async () => {
  const h = host();
  const j = (
    await h.run(['bind', E1, '--class', '0c05', '--id', '8086:10d3', '--dry-run', '--json'])
  ).json();
  assert.deepEqual(j.selected, [
    { by: E1, addresses: [E1] },
    { by: '--id 8086:10d3', addresses: [E1, E2] },
    { by: '--class 0c05', addresses: [SMB] },
  ]);
  assert.deepEqual(
    j.results.map((r: any) => r.address),
    [E1, E2, SMB],
  );
  // SMB shares group 9 with LPC: refused like any bind of it, and said so.
  assert.equal(j.results[2].status, 'refused');
  assert.deepEqual(
    j.results[2].refusals.map((r: any) => r.check),
    ['iommu-group'],
  );
  const plain = (await h.run(['bind', E1, '--dry-run', '--json'])).json();
  assert.equal(plain.selected, undefined, 'plain addresses need no selection report');
});

test('a network interface name stands for its PCI function', async () => {
  const h = host();
  assert.equal(interfaceAddress(new HostRoot(h.f.dir), 'eth0'), E1);
  const dry = await h.run(['bind', 'eth0', '--dry-run']);
  assert.equal(dry.code, 0, dry.stdout + dry.stderr);
  assert.match(dry.stdout, /^eth0 selects 0000:00:02\.0$/m);
  assert.equal((await h.run(['bind', 'eth0'])).code, 0);
  assert.equal(h.state(E1).driver, 'vfio-pci');
  // The interface is gone once e1000e let go: the address is how to name it now.
  assert.equal((await h.run(['unbind', E1])).code, 0);
  assert.equal(h.state(E1).driver, 'e1000e');
});

test('interface names are checked as the kernel checks them (dev_valid_name)', () => {
  for (const ok of ['eth0', 'enp0s2', 'a', 'x'.repeat(15), 'wlan-1.2'])
    assert.ok(isInterfaceName(ok), ok);
  for (const bad of ['', '.', '..', 'x'.repeat(16), 'a/b', 'a b', 'eth0:1', 'tab\t'])
    assert.ok(!isInterfaceName(bad), JSON.stringify(bad));
});

test('what selects nothing, or cannot be a selector, is exit 2 with the reason, and nothing is written', async () => {
  const h = host({ nvme: 2 });
  h.f.tree.write('/sys/devices/virtual/net/br0/flags', '0x1003\n');
  h.f.tree.link('/sys/class/net/br0', '/sys/devices/virtual/net/br0');
  const cases: [string[], RegExp][] = [
    [['bind', '--id', '1234:5678'], /--id 1234:5678 selects no PCI device on this host/],
    [['unbind', '--class', '03'], /--class 03 selects no PCI device on this host/],
    [
      ['bind', '--vfs-of', NVME],
      /--vfs-of 0000:00:07\.0 selects no PCI device on this host \(0000:00:07\.0 has no VFs enabled: sriov_numvfs is 0\)/,
    ],
    [['bind', '--vfs-of', E1], /\(0000:00:02\.0 is not an SR-IOV physical function\)/],
    [['bind', '--vfs-of', '00:09.0'], /--vfs-of 0000:00:09\.0: no PCI device 0000:00:09\.0/],
    [['bind', '--vfs-of', 'eth0'], /'eth0' is not a PCI address/],
    [['bind', '--id', '8086'], /--id '8086': use VENDOR:DEVICE/],
    [['bind', '--id', '8086:10d3:8086'], /--id '8086:10d3:8086': use VENDOR:DEVICE/],
    [['bind', '--class', '0'], /--class '0': use a hex class prefix of 2, 4 or 6 digits/],
    [['bind', '--class', '02000000'], /--class '02000000'/],
    [
      ['bind', 'nosuch0'],
      /'nosuch0' is not a PCI address, and there is no network interface of that name/,
    ],
    [
      ['bind', 'br0'],
      /network interface br0 is not a PCI function \(a virtual interface: no device link\)/,
    ],
    [['bind', 'a/b'], /'a\/b' is neither a PCI address .* nor a network interface name/],
    [['bind', '03:00.9'], /'03:00\.9' is not a PCI address/],
    [
      ['bind'],
      /bind: name a DEVICE \(PCI address or network interface\), or select devices with --id, --class or --vfs-of/,
    ],
    [['unbind'], /unbind: name a DEVICE/],
  ];
  for (const [args, re] of cases) {
    const r = await h.run(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
  assert.equal(h.k.writes.length, 0);
});

test('--vfs-of selects the VFs that exist now', async () => {
  const h = host({ nvme: 2 });
  await h.k.write(`/sys/bus/pci/devices/${NVME}/sriov_drivers_autoprobe`, '0');
  await h.k.write(`/sys/bus/pci/devices/${NVME}/sriov_numvfs`, '2');
  const vfs = h.k.vfsOf(NVME);
  const r = await h.run(['bind', '--vfs-of', '00:07.0', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(
    r.json().results.map((x: any) => [x.address, x.status]),
    vfs.map((v) => [v, 'ok']),
  );
  for (const v of vfs) assert.equal(h.state(v).driver, 'vfio-pci');
  assert.equal(h.state(NVME).driver, 'nvme');
  assert.equal(h.state(LPC).driver, 'lpc_ich');
});
