// driverctl compatibility: import-driverctl's skips and conflicts (ops/driverctl.ts), and
// driverctl's -v/--verbose/--debug (its script's option loop: `--debug|--verbose|-v) debug=1`).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { E1, E2, modelHosts, VN } from '../support/model-host';
import { importDriverctl } from '../../src/ops/driverctl';
import { Host } from '../../src/ops/host';
import { trustPolicy } from '../../src/host/trust';

const CONF = '/etc/vfioctl/vfioctl.json';
const host = modelHosts({ trustSelf: true });

test('import-driverctl skips backup files and other buses with a warning naming each, and imports the rest', async () => {
  const h = host();
  const dir = '/etc/driverctl.d';
  h.f.tree.write(`${dir}/pci-${E1}`, 'vfio-pci\n', 0o644);
  // Backups driverctl never loads (it reads exactly pci-<sysfs name>): broken content must not
  // matter.
  for (const b of [
    `pci-${E1}~`,
    `pci-${E1}.dpkg-old`,
    `pci-${E2}.rpmsave`,
    `.pci-${E2}.swp`,
    `pci-${E2}.bak`,
  ])
    h.f.tree.write(`${dir}/${b}`, 'not a driver name\n', 0o644);
  h.f.tree.write(`${dir}/usb-1-1`, 'usbhid\n', 0o644);
  h.f.tree.write(`${dir}/platform-serial8250`, 'serial8250\n', 0o644);
  const r = await h.run(['import-driverctl', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = r.json();
  assert.deepEqual(
    j.imported.map((x: any) => [x.file, x.address, x.intent]),
    [[`${dir}/pci-${E1}`, E1, 'vfio-pci']],
  );
  assert.deepEqual(
    j.skipped.map((x: any) => x.file).sort(),
    [
      `${dir}/.pci-${E2}.swp`,
      `${dir}/pci-${E1}.dpkg-old`,
      `${dir}/pci-${E1}~`,
      `${dir}/pci-${E2}.bak`,
      `${dir}/pci-${E2}.rpmsave`,
      `${dir}/platform-serial8250`,
      `${dir}/usb-1-1`,
    ].sort(),
  );
  assert.match(
    r.stderr,
    new RegExp(
      `warning: ${dir}/pci-${E1}~: skipped: a backup or editor file: driverctl never loads it`,
    ),
  );
  assert.match(
    r.stderr,
    new RegExp(
      `warning: ${dir}/usb-1-1: skipped: an override on the usb bus: vfioctl handles PCI only, driverctl keeps applying it`,
    ),
  );
  assert.deepEqual(JSON.parse(h.f.tree.read(CONF)!).rules, [
    { match: { address: E1 }, intent: 'vfio-pci' },
  ]);
  assert.equal(h.k.writes.length, 0, 'import does not apply');
});

test('import-driverctl: two files for one device are bad input naming both, and nothing is imported', async () => {
  const h = host();
  const dir = '/etc/driverctl.d';
  h.f.tree.write(`${dir}/pci-${E1}`, 'vfio-pci\n', 0o644);
  h.f.tree.write(`${dir}/pci-${E2}`, 'vfio-pci\n', 0o644);
  h.f.tree.write(`${dir}/pci-00:05.0`, 'none\n', 0o644);
  const r = await h.run(['import-driverctl']);
  assert.equal(r.code, 2, r.stdout);
  assert.match(
    r.stderr,
    new RegExp(
      `${dir}/pci-${E2.replace(/\./g, '\\.')} and ${dir}/pci-00:05\\.0 are both for ${E2.replace(/\./g, '\\.')}`,
    ),
  );
  assert.match(r.stderr, /nothing was changed/);
  assert.ok(!h.f.tree.exists(CONF), 'all or nothing');
  // A bad address is still an error, not a skip: it says pci, so it was meant for a PCI device.
  h.f.tree.write(`${dir}/pci-00:05.0`, 'none\n', 0o644);
  h.f.tree.write(`${dir}/pci-0000:00:99.9`, 'none\n', 0o644);
  const bad = await h.run(['import-driverctl', '--dry-run']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /pci-0000:00:99\.9: '0000:00:99\.9' is not a PCI address/);
});

test('the import is an operation of the library: typed report, nothing printed', async () => {
  const h = host();
  h.f.tree.write(`/etc/driverctl.d/pci-${VN}`, 'vfio-pci\n', 0o644);
  h.f.tree.write(`/etc/driverctl.d/pci-${VN}~`, 'x\n', 0o644);
  const r = await importDriverctl(new Host({ root: h.f.dir, trust: trustPolicy(h.env) }), {
    dryRun: true,
    vfio: true,
  });
  assert.deepEqual(r.imported, [
    { file: `/etc/driverctl.d/pci-${VN}`, address: VN, driver: 'vfio-pci', intent: 'vfio' },
  ]);
  assert.deepEqual(
    r.skipped.map((s) => s.file),
    [`/etc/driverctl.d/pci-${VN}~`],
  );
  assert.equal(r.changed, true);
  assert.ok(!h.f.tree.exists(CONF), 'a dry run writes nothing');
});

test("driverctl's -v, --verbose and --debug: accepted before the verb; steps on stderr, device names in list-devices", async () => {
  const h = host();
  h.f.pciIds(
    '8086  Intel Corporation\n\t10d3  82574L Gigabit Network Connection\n1af4  Red Hat, Inc.\n\t1041  Virtio 1.0 network device\n',
  );
  const plain = await h.run(['list-devices', 'network']);
  for (const flag of ['-v', '--verbose', '--debug']) {
    const r = await h.run([flag, 'list-devices', 'network']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(
      r.stdout,
      `${E1} e1000e (82574L Gigabit Network Connection)\n${VN} virtio-pci (Virtio 1.0 network device)\n${E2} e1000e (82574L Gigabit Network Connection)\n`,
      flag,
    );
  }
  assert.equal(
    plain.stdout,
    `${E1} e1000e\n${VN} virtio-pci\n${E2} e1000e\n`,
    "without it, driverctl's plain lines",
  );
  const quiet = await h.run(['--nosave', 'set-override', E2, 'vfio-pci']);
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.doesNotMatch(quiet.stderr, /drivers_probe/);
  const v = await h.run(['-v', '--nosave', 'set-override', E1, 'vfio-pci']);
  assert.equal(v.code, 0, v.stderr);
  assert.equal(h.state(E1).driver, 'vfio-pci');
  // Each step taken, in order, as driverctl's debug lines say what it does.
  const steps = v.stderr.split('\n').filter((l) => l.startsWith(`vfioctl: ${E1}: `));
  assert.ok(steps.length >= 4, v.stderr);
  assert.match(steps.join('\n'), /driver_override[\s\S]*unbind[\s\S]*drivers_probe[\s\S]*verify/);
  const d = await h.run(['--debug', '--nosave', 'unset-override', E1]);
  assert.equal(d.code, 0, d.stderr);
  assert.match(d.stderr, new RegExp(`vfioctl: ${E1.replace(/\./g, '\\.')}: .*drivers_probe`));
  assert.equal(h.state(E1).driver, 'e1000e');
});
