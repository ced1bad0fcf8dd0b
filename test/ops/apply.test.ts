import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { disk, nvme } from '../support/devices';
import { E1, E2, isRoot, MGMT, type ModelHost, modelHosts, VN } from '../support/model-host';

const CONF = '/etc/vfioctl/vfioctl.json';
const ROOTDISK = '0000:00:06.0';
const host = modelHosts({ trustSelf: true });
const config = (h: ModelHost) => JSON.parse(h.f.tree.read(CONF)!);
const state = (h: ModelHost) => JSON.parse(h.f.tree.read('/var/lib/vfioctl/state.json')!).devices;

test('set saves the intent and applies it; apply again changes nothing; unset gives the device back', async () => {
  const h = host();
  const r = await h.run(['set', E1, 'vfio']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  if (!isRoot) assert.match(r.stderr, /VFIOCTL_TRUST_UID=\d+: trusting/);
  assert.deepEqual(config(h).rules, [{ match: { address: E1 }, intent: 'vfio' }]);
  assert.deepEqual(h.state(E1), { driver: 'vfio-pci', override: 'vfio-pci', vfioDev: true });
  assert.equal(state(h)[E1].driver, 'vfio-pci');
  assert.equal(state(h)[E1].kernel, '6.12.0-test');
  const writes = h.k.writes.length;
  const again = await h.run(['apply', '--json']);
  assert.equal(again.code, 0, again.stdout);
  assert.deepEqual(
    again.json().results.map((x: any) => [x.address, x.phase, x.status]),
    [[E1, 'bind', 'noop']],
  );
  assert.equal(h.k.writes.length, writes, 'an idempotent apply writes nothing');
  const u = await h.run(['unset', E1]);
  assert.equal(u.code, 0, u.stdout + u.stderr);
  assert.deepEqual(config(h).rules, []);
  assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
  assert.equal(state(h)[E1], undefined);
});

test('--noprobe saves without applying; --nosave applies without saving; --dry-run does neither', async () => {
  const h = host();
  assert.equal((await h.run(['set', E1, 'vfio', '--noprobe'])).code, 0);
  assert.equal(config(h).rules.length, 1);
  assert.equal(h.state(E1).driver, 'e1000e');
  const dry = await h.run(['set', E2, 'vfio', '--dry-run']);
  assert.equal(dry.code, 0, dry.stdout);
  assert.match(dry.stdout, /would save rule: 0000:00:05\.0 -> vfio/);
  assert.match(dry.stdout, /would bind to vfio-pci/);
  assert.equal(config(h).rules.length, 1);
  assert.equal(h.k.writes.length, 0);
  const ns = await h.run(['set', E2, 'vfio', '--nosave']);
  assert.equal(ns.code, 0, ns.stdout);
  assert.equal(h.state(E2).driver, 'vfio-pci');
  assert.equal(config(h).rules.length, 1);
  // apply converges to the saved configuration: E1 bound; E2 (never saved) released.
  const a = await h.run(['apply', '--json']);
  assert.equal(a.code, 0, a.stdout);
  assert.deepEqual(
    a
      .json()
      .results.map((x: any) => [x.address, x.phase, x.status])
      .sort(),
    [
      [E1, 'bind', 'ok'],
      [E2, 'release', 'ok'],
    ],
  );
  assert.equal(h.state(E1).driver, 'vfio-pci');
  assert.deepEqual(h.state(E2), { driver: 'e1000e', override: null, vfioDev: false });
});

test('intent none leaves the device without any driver (driver_override=none); unset brings the host driver back', async () => {
  const h = host();
  const r = await h.run(['set', E2, 'none', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(h.state(E2), { driver: null, override: 'none', vfioDev: false });
  // A probe (hotplug, module load) binds nothing while the override names no driver.
  await h.k.write('/sys/bus/pci/drivers_probe', E2);
  assert.equal(h.state(E2).driver, null);
  assert.equal((await h.run(['apply', '--json'])).json().results[0].status, 'noop');
  assert.equal((await h.run(['unset', E2])).code, 0);
  assert.deepEqual(h.state(E2), { driver: 'e1000e', override: null, vfioDev: false });
});

test('a broken or untrusted configuration is bad input (exit 2) and nothing is applied from it', async () => {
  const h = host();
  h.f.tree.write(
    CONF,
    '{ "version": 1, "rules": [ { "match": { "address": "0000:00:02.0" }, "intent": "vfio" }, { "match": { "id": "8086" }, "intent": "vfio" } ] }',
  );
  fs.chmodSync(h.f.tree.abs(CONF), 0o644);
  for (const args of [['apply'], ['status'], ['set', E2, 'vfio'], ['install', '--dry-run']]) {
    const r = await h.run(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(
      r.stderr,
      /invalid configuration \/etc\/vfioctl\/vfioctl\.json \(nothing was applied from it\):\n {2}\/etc\/vfioctl\/vfioctl\.json:1:\d+: rules\[1\]\.match\.id/,
    );
  }
  assert.equal(h.k.writes.length, 0);
  assert.equal(h.state(E1).driver, 'e1000e');
  h.config([{ match: { address: E1 }, intent: 'vfio' }]);
  fs.chmodSync(h.f.tree.abs(CONF), 0o664);
  const g = await h.run(['apply']);
  assert.equal(g.code, 2);
  assert.match(
    g.stderr,
    /refusing to read \/etc\/vfioctl\/vfioctl\.json: \/etc\/vfioctl\/vfioctl\.json is writable by its group/,
  );
  h.env = {}; // not trusting the test user: the file is not root's
  fs.chmodSync(h.f.tree.abs(CONF), 0o644);
  if (isRoot) fs.chownSync(h.f.tree.abs(CONF), 65534, 65534);
  assert.match((await h.run(['apply'])).stderr, /is owned by uid \d+, not root/);
  assert.equal(h.k.writes.length, 0);
});

test('a rule removed from the file: apply returns the device it had bound; one rebound by someone else is left alone', async () => {
  const h = host();
  h.config([
    { match: { address: E1 }, intent: 'vfio' },
    { match: { address: E2 }, intent: 'vfio' },
  ]);
  assert.equal((await h.run(['apply'])).code, 0);
  // Someone (libvirt) hands E2 back to e1000e by hand.
  await h.handBack(E2);
  const st = (await h.run(['status', '--json'])).json();
  assert.deepEqual(
    st.devices.map((d: any) => [d.address, d.drift]),
    [
      [E1, 'ok'],
      [E2, 'rebound'],
    ],
  );
  h.config([]);
  const st2 = (await h.run(['status', '--json'])).json();
  assert.deepEqual(
    st2.devices.map((d: any) => [d.address, d.drift]),
    [
      [E1, 'unconfigured'],
      [E2, 'unconfigured'],
    ],
  );
  const a = await h.run(['apply', '--json']);
  assert.equal(a.code, 0, a.stdout);
  assert.deepEqual(
    a.json().results.map((x: any) => [x.address, x.phase, x.status]),
    [[E1, 'release', 'ok']],
  );
  assert.equal(h.state(E1).driver, 'e1000e');
  assert.equal(h.state(E2).driver, 'e1000e');
});

test('status: a kernel change that changes the resolution is reported, and apply follows it', async () => {
  const h = host();
  h.config([{ match: { address: VN }, intent: 'vfio' }]);
  // The last apply ran on an older kernel without virtio_vfio_pci: it chose vfio-pci.
  await h.run(['bind', VN, '--driver', 'vfio-pci']);
  h.f.tree.write(
    '/var/lib/vfioctl/state.json',
    JSON.stringify({
      devices: {
        [VN]: {
          address: VN,
          intent: 'vfio',
          rule: 'rules[0]',
          kernel: '6.1.0-old',
          driver: 'vfio-pci',
          module: 'vfio_pci',
          status: 'ok',
          error: null,
          at: '2026-01-01T00:00:00Z',
        },
      },
    }),
  );
  const st = await h.run(['status', '--json']);
  const d = st.json().devices[0];
  assert.equal(d.drift, 'kernel-changed', JSON.stringify(d));
  assert.equal(d.resolved, 'virtio_vfio_pci');
  assert.match(
    d.detail,
    /resolves to virtio_vfio_pci on 6\.12\.0-test; the last apply \(kernel 6\.1\.0-old\) chose vfio-pci/,
  );
  const human = await h.run(['status']);
  assert.match(human.stdout, /0000:00:03\.0 +vfio +virtio_vfio_pci +vfio-pci +kernel-changed/);
  const a = await h.run(['apply']);
  assert.equal(a.code, 0, a.stdout + a.stderr);
  assert.equal(h.state(VN).driver, 'virtio_vfio_pci');
  assert.equal(state(h)[VN].kernel, '6.12.0-test');
  assert.equal((await h.run(['status', '--json'])).json().devices[0].drift, 'ok');
});

test('apply --boot: boot devices (root=, fstab) are refused, broad rules need acknowledging, boot outcome recorded', async () => {
  const h = host();
  h.f.device(nvme(ROOTDISK, '6', { blockdevs: disk('nvme0n1', 259) }));
  h.f.tree.write('/proc/cmdline', 'BOOT_IMAGE=/vmlinuz root=/dev/nvme0n1p1 ro quiet\n');
  h.config([
    { match: { address: ROOTDISK }, intent: 'vfio' },
    { match: { id: '8086:10d3' }, intent: 'vfio' },
    { match: { address: VN }, intent: 'vfio' },
  ]);
  const a = await h.run(['apply', '--boot', '--json']);
  assert.equal(a.code, 3, a.stdout);
  const j = a.json();
  const nv = j.results.find((x: any) => x.address === ROOTDISK);
  assert.equal(nv.status, 'refused');
  assert.match(
    nv.refusals[0].message,
    /the host boots from it \(root on the kernel command line: \/dev\/nvme0n1p1\)/,
  );
  assert.deepEqual(
    j.skipped.map((s: any) => s.address),
    [E1, E2],
  );
  assert.match(
    j.skipped[0].reason,
    /selects by id and is not applied at boot without "acknowledgeBroadMatch": true/,
  );
  assert.equal(h.state(VN).driver, 'virtio_vfio_pci');
  assert.equal(h.state(E1).driver, 'e1000e');
  assert.equal(h.state(ROOTDISK).driver, 'nvme');
  const boot = JSON.parse(h.f.tree.read('/run/vfioctl/boot.json')!);
  assert.equal(boot.devices[VN].outcome, 'host-first');
  assert.equal(boot.devices[VN].driver, 'virtio-pci');
  const st = await h.run(['status']);
  assert.match(st.stdout, /0000:00:03\.0 .* host driver had it first \(virtio-pci\)/);
  // Without --boot the same id rule applies (the NIC is not in use); the boot device is still
  // protected by the live checks only if it is in use, which here it is not mounted: not --boot's
  // business.
  const live = await h.run(['apply', E1, '--json']);
  assert.equal(live.json().results[0].status, 'ok', live.stdout);
});

test('status: a device refused and then unconfigured leaves no row; one the boot gave its host driver is boot-pending', async () => {
  const h = host();
  h.mgmtNic();
  h.config([
    { match: { address: MGMT }, intent: 'vfio' },
    { match: { address: E1 }, intent: 'vfio' },
  ]);
  assert.equal((await h.run(['apply'])).code, 3);
  h.config([{ match: { address: E1 }, intent: 'vfio' }]);
  assert.equal((await h.run(['apply'])).code, 0);
  assert.equal(state(h)[MGMT], undefined, 'nothing was applied to it, nothing is kept');
  assert.deepEqual(
    (await h.run(['status', '--json'])).json().devices.map((d: any) => d.address),
    [E1],
  );
  // Reboot: the host driver got E1 back; this boot started after the last apply; no late apply yet.
  await h.handBack(E1);
  h.f.tree.write('/proc/stat', `cpu  1 2 3 4\nbtime ${Math.floor(Date.now() / 1000) + 5}\n`);
  h.f.tree.write(
    '/run/vfioctl/boot.json',
    JSON.stringify({
      at: '2020-01-01T00:00:00Z',
      kernel: 'x',
      devices: { [E1]: { outcome: 'won', driver: 'vfio-pci', hostDriverBuiltin: false } },
    }),
  );
  const d = (await h.run(['status', '--json'])).json().devices[0];
  assert.equal(d.drift, 'boot-pending', JSON.stringify(d));
  assert.equal(d.boot, null, "an earlier boot's record does not describe this boot");
  h.f.tree.write('/proc/stat', 'cpu  1 2 3 4\nbtime 1000\n');
  assert.equal((await h.run(['status', '--json'])).json().devices[0].drift, 'rebound');
});

test('status exits 5 (documented) when any configured device is not as configured, 0 when all are, 2 on a broken configuration', async () => {
  const h = host();
  const code = async (args: string[] = []) => {
    const [j, t] = [await h.run(['status', '--json', ...args]), await h.run(['status', ...args])];
    assert.equal(j.code, t.code, 'the same exit code with and without --json');
    return {
      code: j.code,
      drift: j.code === 2 ? [] : j.json().devices.map((d: any) => [d.address, d.drift]),
    };
  };
  assert.deepEqual(await code(), { code: 0, drift: [] }, 'no configuration: nothing drifts');
  h.config([{ match: { address: E1 }, intent: 'vfio' }]);
  assert.deepEqual(await code(), { code: 5, drift: [[E1, 'pending']] });
  assert.equal((await h.run(['apply'])).code, 0);
  assert.deepEqual(await code(), { code: 0, drift: [[E1, 'ok']] });
  // A rule for a device this host does not have: absent.
  h.config([
    { match: { address: E1 }, intent: 'vfio' },
    { match: { address: '0000:00:0a.0' }, intent: 'vfio' },
  ]);
  assert.deepEqual(await code(), {
    code: 5,
    drift: [
      [E1, 'ok'],
      ['0000:00:0a.0', 'absent'],
    ],
  });
  // A driver this kernel does not have: unresolvable.
  h.config([
    { match: { address: E1 }, intent: 'vfio' },
    { match: { address: E2 }, intent: 'no_such_drv' },
  ]);
  assert.deepEqual(await code(), {
    code: 5,
    drift: [
      [E1, 'ok'],
      [E2, 'unresolvable'],
    ],
  });
  // Someone else moved E1: rebound.
  h.config([{ match: { address: E1 }, intent: 'vfio' }]);
  await h.handBack(E1);
  assert.deepEqual(await code(), { code: 5, drift: [[E1, 'rebound']] });
  h.f.tree.write(CONF, '{ "version": 1, "rules": [ { "match": { "id": "x" } } ] }', 0o644);
  assert.equal((await code()).code, 2, 'status could not tell: bad input, not drift');
});

test('an apply records devices already in place with one write of state.json, and a moved device at once', async () => {
  const h = host();
  assert.equal((await h.run(['set', E1, 'vfio'])).code, 0);
  assert.equal((await h.run(['set', E2, 'vfio', '--noprobe'])).code, 0);
  const before = state(h)[E1].at;
  // The product writes state.json with an fsync'd rename (persist/records.ts atomicWrite): count them.
  const nodeFs: typeof fs = require('node:fs');
  const real = nodeFs.renameSync;
  const renamed: string[] = [];
  nodeFs.renameSync = (from: fs.PathLike, to: fs.PathLike) => {
    renamed.push(String(to));
    real(from, to);
  };
  const writes = () => renamed.filter((t) => t.endsWith('/var/lib/vfioctl/state.json')).length;
  try {
    // E1 in place (noop), E2 moves: E2's record is written when it moves, E1's with it or after.
    const r = await h.run(['apply', '--json']);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.deepEqual(
      r.json().results.map((x: any) => [x.address, x.status]),
      [
        [E1, 'noop'],
        [E2, 'ok'],
      ],
    );
    assert.ok(writes() >= 1 && writes() <= 2, `state.json writes: ${writes()}`);
    assert.equal(state(h)[E2].status, 'ok');
    assert.equal(state(h)[E1].status, 'ok');
    assert.ok(state(h)[E1].at >= before, 'the record of the device in place is refreshed');
    // Both in place: one write for both, not one per device.
    renamed.length = 0;
    const again = await h.run(['apply', '--json']);
    assert.equal(again.code, 0, again.stdout + again.stderr);
    assert.equal(writes(), 1, 'state.json written once for two devices in place');
    assert.deepEqual(
      [state(h)[E1].status, state(h)[E2].status, state(h)[E2].driver],
      ['ok', 'ok', 'vfio-pci'],
    );
  } finally {
    nodeFs.renameSync = real;
  }
});
