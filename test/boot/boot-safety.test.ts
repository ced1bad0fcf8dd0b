// The boot layers and the late apply never take what they must not: hooked devices (hooks run
// only from the late unit), devices without an IOMMU, devices in use when the map was made,
// devices a stale initramfs map took; and `set` never saves what it could not apply.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { E1, E2, MGMT, modelHosts, NVME, VN } from '../support/model-host';

const CONF = '/etc/vfioctl/vfioctl.json';
const MAP = '/etc/vfioctl/boot/6.12.0-test.map';
const host = modelHosts({ trustSelf: true });
const EXEC = ['--exec', '/usr/local/bin/vfioctl'];

test('devices with hooks are left out of the boot map (hooks run only from the late unit)', async () => {
  const h = host();
  h.hook('/etc/vfioctl/rule-hooks/cx7', 'exit 0');
  h.config([
    { match: { address: E1 }, intent: 'vfio', hooks: ['/etc/vfioctl/rule-hooks/cx7'] },
    { match: { address: E2 }, intent: 'vfio' },
  ]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  assert.deepEqual(h.mapEntries(), [`address ${E2} vfio-pci vfio_pci`]);
  assert.match(
    h.f.tree.read(MAP)!,
    /# skipped 0000:00:02\.0: has hooks \(\/etc\/vfioctl\/rule-hooks\/cx7\); the late apply binds it so that they run/,
  );
  // A hooks.d hook decides per device when it runs: it counts for every device.
  h.hook('/etc/vfioctl/hooks.d/50-any', 'exit 2');
  assert.equal((await h.run(['install', '--refresh'])).code, 0);
  assert.deepEqual(h.mapEntries(), []);
});

test('VFs a PF rule creates get map entries from sriov_offset/stride and the %x sriov_vf_device', async () => {
  const h = host({ nvme: 4 });
  assert.equal(
    h.f.tree.read(`/sys/bus/pci/devices/${NVME}/sriov_vf_device`)?.trim().length !== 4,
    true,
    'the kernel prints it without padding',
  );
  h.config([{ match: { address: NVME }, sriov: { numVfs: 2, vfIntent: 'vfio' } }]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  assert.deepEqual(h.mapEntries(), [
    'address 0000:00:07.1 vfio-pci vfio_pci',
    'address 0000:00:07.2 vfio-pci vfio_pci',
  ]);
});

test('without an IOMMU nothing VFIO goes into the map (vfio-pci would fail and leave the device driverless)', async () => {
  const h = host({ iommu: false });
  h.config([
    { match: { address: E1 }, intent: 'vfio' },
    { match: { address: E2 }, intent: 'none' },
  ]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  assert.deepEqual(h.mapEntries(), [`address ${E2} none -`]);
  assert.match(h.f.tree.read(MAP)!, /# skipped 0000:00:02\.0: VFIO needs an IOMMU/);
});

test('set saves only what it applied: a refused device is not saved (as driverctl)', async () => {
  const h = host();
  h.mgmtNic();
  const r = await h.run(['set', MGMT, 'vfio']);
  assert.equal(r.code, 3, r.stdout);
  assert.match(
    r.stderr,
    /0000:00:08\.0: not saved to \/etc\/vfioctl\/vfioctl\.json, because it was not applied/,
  );
  assert.ok(!h.f.tree.exists(CONF));
  assert.equal(h.state(MGMT).driver, 'e1000e');
});

test('apply --boot releases what a stale (initramfs) map took and no rule names, and refuses what the map saw in use', async () => {
  const h = host();
  h.mgmtNic();
  h.config([
    { match: { address: MGMT }, intent: 'vfio' },
    { match: { address: VN }, intent: 'vfio' },
  ]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  assert.match(h.f.tree.read(MAP)!, /# skipped 0000:00:08\.0: the host uses it now/);
  // The next boot, before networking: the interface is down and has no address yet.
  h.f.tree.write(
    '/proc/net/route',
    'Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\tMTU\tWindow\tIRTT\n',
  );
  fs.writeFileSync(h.f.tree.abs('/sys/class/net/mgmt0/flags'), '0x1002\n');
  // An old initramfs map took E1 (unset since), as the early script records it.
  await h.k.write(`/sys/bus/pci/devices/${E1}/driver_override`, 'vfio-pci');
  await h.k.write('/sys/bus/pci/drivers/e1000e/unbind', E1);
  await h.k.modprobe(['vfio_pci']);
  await h.k.write('/sys/bus/pci/drivers_probe', E1);
  assert.equal(h.state(E1).driver, 'vfio-pci');
  h.f.tree.write('/run/vfioctl/boot-taken', `${E1} vfio-pci\n`);
  const r = await h.run(['apply', '--boot', '--json']);
  const res = r.json().results;
  const by = (a: string) => res.find((x: any) => x.address === a);
  assert.equal(by(E1).phase, 'release');
  assert.equal(by(E1).status, 'ok');
  assert.deepEqual(h.state(E1), { driver: 'e1000e', override: null, vfioDev: false });
  assert.equal(by(MGMT).status, 'refused');
  assert.match(
    by(MGMT)
      .refusals.map((x: any) => x.message)
      .join(),
    /in use when the boot map was made: interface mgmt0 is up/,
  );
  assert.equal(h.state(MGMT).driver, 'e1000e');
  assert.equal(by(VN).status, 'ok');
  assert.equal(r.code, 3);
});

test('apply --boot reads what the map left out from its JSON, not its comments; a corrupt or missing JSON is named', async () => {
  const h = host();
  h.mgmtNic();
  h.config([{ match: { address: MGMT }, intent: 'vfio' }]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  const JSON_FILE = MAP.replace(/\.map$/, '.json');
  const stored = JSON.parse(h.f.tree.read(JSON_FILE)!);
  assert.deepEqual(
    stored.leftOut.map((l: any) => [l.reason, l.address]),
    [['in-use', MGMT]],
  );
  // The comment alone decides nothing: with the JSON saying nothing was in use, the device is not
  // protected as in use.
  h.f.tree.write(JSON_FILE, JSON.stringify({ ...stored, leftOut: [] }));
  const dry = await h.run(['apply', '--boot', '--dry-run', '--json']);
  assert.doesNotMatch(JSON.stringify(dry.json().results), /in use when the boot map was made/);
  for (const [text, why] of [
    [
      '{"kernel": "6.12.0-test", "source": "x", "entries": [], "leftOut": [{"reason": "in-use", "address": "../../x", "use": []}]}',
      /field 'address' is not a PCI address \(leftOut\[0\]\)/,
    ],
    ['{"kernel": "6.12', /not JSON/],
  ] as const) {
    h.f.tree.write(JSON_FILE, text);
    const r = await h.run(['apply', '--boot', '--dry-run']);
    assert.match(
      r.stderr,
      new RegExp(`${JSON_FILE.replace(/[.]/g, '\\.')}: ${why.source}.*install --refresh`),
    );
  }
  fs.rmSync(h.f.tree.abs(JSON_FILE));
  const old = await h.run(['apply', '--boot', '--dry-run']);
  assert.match(
    old.stderr,
    /6\.12\.0-test\.json is missing \(the map was made by an older vfioctl\): what it left out is not known; 'vfioctl install --refresh' rewrites it/,
  );
});

test('--uninstall keeps the vendor hooks.d in /usr/lib/vfioctl', async () => {
  const h = host();
  h.config([]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  h.hook('/usr/lib/vfioctl/hooks.d/50-vendor', 'exit 0');
  const r = await h.run(['install', '--uninstall']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /update-initramfs -u -k all/);
  assert.ok(h.f.tree.exists('/usr/lib/vfioctl/hooks.d/50-vendor'));
  assert.ok(!h.f.tree.exists('/usr/lib/vfioctl/vfioctl-early'));
  assert.ok(!h.f.tree.exists('/etc/vfioctl/boot'));
});

test('a map change warns that the initramfs still carries the old one', async () => {
  const h = host();
  h.config([]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  const r = await h.run(['set', E1, 'vfio', '--noprobe']);
  assert.match(
    r.stderr,
    /the initramfs still carries the previous boot map .*update-initramfs -u -k all/,
  );
});

test('apply of a device that does not exist is bad input (exit 2), like bind', async () => {
  const h = host();
  h.config([{ match: { address: '0000:00:09.0' }, intent: 'vfio' }]);
  const r = await h.run(['apply', '0000:00:09.0']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /no PCI device 0000:00:09\.0/);
});

test('unset warns when a broader rule still selects the device', async () => {
  const h = host();
  h.config([
    { match: { address: E1 }, intent: 'none' },
    { match: { class: '02' }, intent: 'vfio' },
  ]);
  const r = await h.run(['unset', E1, '--noprobe']);
  assert.equal(r.code, 0);
  assert.match(
    r.stderr,
    /0000:00:02\.0 is still selected by rules\[0\] \(line \d+\): class 02 \(intent vfio\)/,
  );
});
