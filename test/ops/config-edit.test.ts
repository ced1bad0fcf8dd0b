// `set`/`unset` beyond one address: --group (a rule per IOMMU-group member, applied as one),
// --force (as bind's), and rules by id, class and vfsOf written and removed by their selectors.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { E1, E2, LPC, type ModelHost, modelHosts, NVME, SMB, VN } from '../support/model-host';

const CONF = '/etc/vfioctl/vfioctl.json';
const host = modelHosts({ trustSelf: true });
const rules = (h: ModelHost) =>
  h.f.tree.read(CONF) === undefined ? [] : JSON.parse(h.f.tree.read(CONF)!).rules;
const state = (h: ModelHost) =>
  JSON.parse(h.f.tree.read('/var/lib/vfioctl/state.json') ?? '{"devices":{}}').devices;

test('set of one member of a shared IOMMU group is refused with advice; --group configures and binds the whole group', async () => {
  const h = host();
  const one = await h.run(['set', LPC, 'vfio']);
  assert.equal(one.code, 3, one.stdout + one.stderr);
  assert.match(
    one.stdout,
    /iommu-group: IOMMU group 9 would not be viable: 0000:00:1f\.3 \(i801_smbus\) is on host drivers; use --group/,
  );
  assert.deepEqual(rules(h), [], 'nothing saved');
  const dry = await h.run(['set', '00:1f.0', 'vfio', '--group', '--dry-run']);
  assert.equal(dry.code, 0, dry.stdout + dry.stderr);
  assert.match(dry.stdout, /^would save rule: 0000:00:1f\.0 -> vfio$/m);
  assert.match(dry.stdout, /^would save rule: 0000:00:1f\.3 -> vfio$/m);
  assert.match(dry.stdout, /^--group of 0000:00:1f\.0 selects: 0000:00:1f\.0, 0000:00:1f\.3$/m);
  assert.equal(h.k.writes.length, 0);
  const g = await h.run(['set', LPC, 'vfio', '--group', '--json']);
  assert.equal(g.code, 0, g.stdout + g.stderr);
  assert.deepEqual(
    g.json().results.map((r: any) => [r.address, r.phase, r.status, r.intent]),
    [
      [LPC, 'bind', 'ok', 'vfio'],
      [SMB, 'bind', 'ok', 'vfio'],
    ],
  );
  assert.deepEqual(rules(h), [
    { match: { address: LPC }, intent: 'vfio' },
    { match: { address: SMB }, intent: 'vfio' },
  ]);
  assert.deepEqual([h.state(LPC).driver, h.state(SMB).driver], ['vfio-pci', 'vfio-pci']);
  assert.deepEqual(Object.keys(state(h)).sort(), [LPC, SMB]);
  // A later apply of the saved rules: nothing to do.
  assert.deepEqual(
    (await h.run(['apply', '--json'])).json().results.map((r: any) => r.status),
    ['noop', 'noop'],
  );
});

test('set --group is all or nothing: one member refused refuses the group, nothing is written or saved', async () => {
  const h = host();
  // An interface that is up on SMB: the host uses it, so it is refused (in-use).
  const dir = `/sys/devices/pci0000:00/${SMB}/net/up0`;
  h.f.tree.write(`${dir}/flags`, '0x1003\n');
  h.f.tree.write(`${dir}/operstate`, 'up\n');
  h.f.tree.link('/sys/class/net/up0', dir);
  const r = await h.run(['set', LPC, 'vfio', '--group', '--json']);
  assert.equal(r.code, 3, r.stdout + r.stderr);
  const byAddr = Object.fromEntries(
    r.json().results.map((x: any) => [x.address, x.refusals.map((f: any) => f.check)]),
  );
  assert.deepEqual(byAddr, { [LPC]: ['group-member'], [SMB]: ['in-use'] });
  assert.equal(h.k.writes.length, 0);
  assert.deepEqual(rules(h), []);
  assert.match(r.stderr, /not saved to \/etc\/vfioctl\/vfioctl\.json, because it was not applied/);
});

test('set --force goes past forceable refusals as bind --force does, and saves the rule', async () => {
  const h = host();
  const r = await h.run(['set', LPC, 'vfio', '--force']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /warning: forced past: IOMMU group 9 would not be viable/);
  assert.deepEqual([h.state(LPC).driver, h.state(SMB).driver], ['vfio-pci', 'i801_smbus']);
  assert.deepEqual(rules(h), [{ match: { address: LPC }, intent: 'vfio' }]);
  // --group goes with a device only; one rule per set.
  for (const args of [
    ['set', '--id', '8086:2918', 'vfio', '--group'],
    ['set', E1, '--id', '8086:10d3', 'vfio'],
    ['set', E1],
    ['unset'],
  ]) {
    const bad = await h.run(args);
    assert.equal(bad.code, 2, `${args.join(' ')}: ${bad.stdout}${bad.stderr}`);
  }
});

test('set --id writes an id rule and applies it to every device of that id; unset --id removes it and gives them back', async () => {
  const h = host();
  h.config([{ match: { address: VN }, intent: 'vfio' }]);
  const dry = await h.run(['set', '--id', '8086:10d3', 'vfio', '--dry-run']);
  assert.equal(dry.code, 0, dry.stdout + dry.stderr);
  assert.match(dry.stdout, /^would save rule: id 8086:10d3 -> vfio$/m);
  assert.match(dry.stdout, /^--id 8086:10d3 selects: 0000:00:02\.0, 0000:00:05\.0$/m);
  const r = await h.run(['set', '--id', '8086:10d3', 'vfio']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /rules by id are applied at boot only with "acknowledgeBroadMatch": true/);
  assert.deepEqual(rules(h), [
    { match: { address: VN }, intent: 'vfio' },
    { match: { id: '8086:10d3' }, intent: 'vfio' },
  ]);
  assert.deepEqual(
    [h.state(E1).driver, h.state(E2).driver, h.state(VN).driver],
    ['vfio-pci', 'vfio-pci', 'virtio-pci'],
    'only the selected devices are applied',
  );
  // An address rule exempts E2 from the id rule: unset --id then gives back only what the id rule
  // governed.
  assert.equal((await h.run(['set', E2, 'host'])).code, 0);
  assert.equal(h.state(E2).driver, 'e1000e');
  const writes = h.k.writes.length;
  const ud = await h.run(['unset', '--id', '8086:10d3', '--dry-run']);
  assert.equal(ud.code, 0, ud.stdout + ud.stderr);
  assert.match(ud.stdout, /^--id 8086:10d3: would give back 0000:00:02\.0$/m);
  assert.equal(h.k.writes.length, writes);
  const u = await h.run(['unset', '--id', '8086:10D3', '--json']);
  assert.equal(u.code, 0, u.stdout + u.stderr);
  assert.deepEqual(
    u.json().results.map((x: any) => [x.address, x.status]),
    [[E1, 'ok']],
  );
  assert.deepEqual(rules(h), [
    { match: { address: VN }, intent: 'vfio' },
    { match: { address: E2 }, intent: 'host' },
  ]);
  assert.equal(h.state(E1).driver, 'e1000e');
  assert.equal(state(h)[E1], undefined);
  const none = await h.run(['unset', '--id', '8086:10d3']);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /has no rule matching id 8086:10d3: nothing to remove/);
});

test('set --acknowledge-broad-match: the id rule gets "acknowledgeBroadMatch": true and the boot map its id entry; without it the map leaves the rule out and the note names the option', async () => {
  const h = host();
  h.config([{ match: { address: VN }, intent: 'vfio' }]);
  assert.equal((await h.run(['install', '--exec', '/usr/local/bin/vfioctl'])).code, 0);
  const plain = await h.run(['set', '--id', '8086:10d3', 'vfio']);
  assert.equal(plain.code, 0, plain.stdout + plain.stderr);
  assert.match(
    plain.stdout,
    /rules by id are applied at boot only with "acknowledgeBroadMatch": true: 'vfioctl set --id 8086:10d3 vfio --acknowledge-broad-match' adds it/,
  );
  assert.deepEqual(h.mapEntries(), [`address ${VN} virtio_vfio_pci virtio_vfio_pci`]);
  assert.match(
    h.f.tree.read(h.bootMap)!,
    /# skipped 0000:00:02\.0: rules\[1\] selects by id 8086:10d3 without "acknowledgeBroadMatch": true/,
  );
  const dry = await h.run([
    'set',
    '--id',
    '8086:10d3',
    'vfio',
    '--acknowledge-broad-match',
    '--dry-run',
  ]);
  assert.equal(dry.code, 0, dry.stdout + dry.stderr);
  assert.match(dry.stdout, /^would save rule: id 8086:10d3 -> vfio \(acknowledgeBroadMatch\)$/m);
  assert.deepEqual(
    rules(h)[1],
    { match: { id: '8086:10d3' }, intent: 'vfio' },
    'a dry run saves nothing',
  );
  const ack = await h.run(['set', '--id', '8086:10d3', 'vfio', '--acknowledge-broad-match']);
  assert.equal(ack.code, 0, ack.stdout + ack.stderr);
  assert.match(
    ack.stdout,
    /the rule by id has "acknowledgeBroadMatch": true: the boot applies it too/,
  );
  assert.deepEqual(rules(h), [
    { match: { address: VN }, intent: 'vfio' },
    { match: { id: '8086:10d3' }, intent: 'vfio', acknowledgeBroadMatch: true },
  ]);
  // Each device of the id by address, and the id itself for one that appears later.
  assert.deepEqual(h.mapEntries(), [
    `address ${E1} vfio-pci vfio_pci`,
    `address ${VN} virtio_vfio_pci virtio_vfio_pci`,
    `address ${E2} vfio-pci vfio_pci`,
    'id 8086:10d3 vfio-pci vfio_pci',
  ]);
  // Set again without the option: the acknowledgement stays (it is the admin's).
  assert.equal((await h.run(['set', '--id', '8086:10d3', 'none'])).code, 0);
  assert.deepEqual(rules(h)[1], {
    match: { id: '8086:10d3' },
    intent: 'none',
    acknowledgeBroadMatch: true,
  });
});

test('set --acknowledge-broad-match where it means nothing (address, --group, --vfs-of, --nosave) is exit 2 and changes nothing', async () => {
  const h = host({ nvme: 2 });
  h.config([{ match: { address: VN }, intent: 'vfio' }]);
  const before = h.f.tree.read(CONF);
  for (const [args, why] of [
    [
      [E1, 'vfio'],
      /the rule for 0000:00:02\.0 selects by address, which the boot applies without it; it is for rules by --id or --class/,
    ],
    [
      ['--group', E1, 'vfio'],
      /the rules for --group of 0000:00:02\.0 select by address, which the boot applies without it/,
    ],
    [
      ['--vfs-of', NVME, 'vfio', '--noprobe'],
      /the rule --vfs-of 0000:00:07\.0 selects by physical function, which the boot applies without it/,
    ],
    [
      ['--class', '0c05', 'none', '--nosave'],
      /with --nosave no rule is saved, and the acknowledgement is for the boot/,
    ],
  ] as const) {
    const r = await h.run(['set', ...args, '--acknowledge-broad-match']);
    assert.equal(r.code, 2, args.join(' '));
    assert.match(r.stderr, new RegExp(`set --acknowledge-broad-match: ${why.source}`));
  }
  assert.equal(h.f.tree.read(CONF), before);
  assert.equal(h.k.writes.length, 0);
  // unset has no such option: commander refuses it as unknown.
  assert.equal((await h.run(['unset', '--id', '8086:10d3', '--acknowledge-broad-match'])).code, 2);
});

test('set --class and --vfs-of: a rule for devices that do not exist yet needs --noprobe; unset removes it', async () => {
  const h = host({ nvme: 2 });
  const vf = await h.run(['set', '--vfs-of', NVME, 'vfio']);
  assert.equal(vf.code, 2);
  assert.match(
    vf.stderr,
    /--vfs-of 0000:00:07\.0 selects no PCI device on this host \(0000:00:07\.0 has no VFs enabled: sriov_numvfs is 0\); use --noprobe to configure it for devices that appear later/,
  );
  assert.equal((await h.run(['set', '--vfs-of', NVME, 'vfio', '--noprobe'])).code, 0);
  assert.equal((await h.run(['set', '--class', '0x0C05', 'none', '--noprobe'])).code, 0);
  assert.deepEqual(rules(h), [
    { match: { vfsOf: NVME }, intent: 'vfio' },
    { match: { class: '0c05' }, intent: 'none' },
  ]);
  assert.equal(h.k.writes.length, 0, '--noprobe applies nothing');
  // The VFs appear: apply binds them by the vfsOf rule.
  await h.k.write(`/sys/bus/pci/devices/${NVME}/sriov_drivers_autoprobe`, '0');
  await h.k.write(`/sys/bus/pci/devices/${NVME}/sriov_numvfs`, '1');
  const [v0] = h.k.vfsOf(NVME) as [string];
  assert.equal((await h.run(['apply', v0])).code, 0);
  assert.equal(h.state(v0).driver, 'vfio-pci');
  const u = await h.run(['unset', '--vfs-of', '00:07.0']);
  assert.equal(u.code, 0, u.stdout + u.stderr);
  assert.deepEqual(rules(h), [{ match: { class: '0c05' }, intent: 'none' }]);
  assert.equal(h.state(v0).driver, null, 'back to what it had: no driver (autoprobe 0)');
  assert.equal((await h.run(['unset', '--class', '0c05', '--noprobe'])).code, 0);
  assert.deepEqual(rules(h), []);
});

test('set and unset take a network interface name for its PCI function', async () => {
  const h = host();
  assert.equal((await h.run(['set', 'eth0', 'vfio'])).code, 0);
  assert.deepEqual(rules(h), [{ match: { address: E1 }, intent: 'vfio' }]);
  assert.equal(h.state(E1).driver, 'vfio-pci');
  fs.rmSync(h.f.tree.abs('/sys/class/net/eth0'), { force: true });
  assert.equal((await h.run(['unset', E1])).code, 0);
  assert.equal(h.state(E1).driver, 'e1000e');
});
