import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { DRIVERS } from '../support/kernel-model';
import { disk, nvme } from '../support/devices';
import { E1, E2, LPC, type ModelHost, modelHosts, VN } from '../support/model-host';
import { vfAddress } from '../../src/boot/map';
import {
  LOCAL_LAYOUT,
  MARKER,
  PACKAGE_LAYOUT,
  PACKAGED_EXEC,
  PACKAGED_MARKER,
  staticLayers,
} from '../../src/boot/files';

const CONF = '/etc/vfioctl/vfioctl.json';
const MAP = '/etc/vfioctl/boot/6.12.0-test.map';
const host = modelHosts({ trustSelf: true });
const EXEC = ['--exec', '/usr/local/bin/vfioctl'];
/** Where install's enable links point (the early unit's, then the late apply's), as systemctl enable makes them. */
const enableLinks = (h: ModelHost) =>
  [
    'sysinit.target.wants/vfioctl-early.service',
    'multi-user.target.wants/vfioctl-apply.service',
  ].map((l) => fs.readlinkSync(h.f.tree.abs(`/etc/systemd/system/${l}`)));

test('install writes every layer: maps, units (enabled), udev rule, initramfs and kernel hooks; --dry-run writes nothing', async () => {
  const h = host();
  h.f.device(nvme('0000:00:06.0', '6', { blockdevs: disk('vda', 254) }));
  h.mgmtNic();
  h.f.tree.write(
    '/etc/fstab',
    '# <file system> <mount point> <type> <options> <dump> <pass>\n/dev/vda1 / ext4 errors=remount-ro 0 1\nserver:/srv /srv nfs defaults 0 0\n',
  );
  h.config([
    { match: { address: E1 }, intent: 'vfio' },
    { match: { address: VN }, intent: 'vfio' },
    { match: { address: '0000:00:06.0' }, intent: 'vfio' },
    { match: { id: '8086:10d3' }, intent: 'vfio-pci', acknowledgeBroadMatch: true },
    { match: { class: '0c05' }, intent: 'none' },
  ]);
  const before = h.f.tree.list('/etc');
  const dry = await h.run(['install', '--dry-run', ...EXEC]);
  assert.equal(dry.code, 0, dry.stdout + dry.stderr);
  assert.match(dry.stdout, /would write: \/etc\/systemd\/system\/vfioctl-early\.service/);
  assert.deepEqual(h.f.tree.list('/etc'), before);
  const r = await h.run(['install', ...EXEC]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const map = h.f.tree.read(MAP)!;
  const entries = map.split('\n').filter((l) => l && !l.startsWith('#'));
  assert.deepEqual(entries, [
    `address ${E1} vfio-pci vfio_pci`,
    `address ${VN} virtio_vfio_pci virtio_vfio_pci`,
    `address ${E2} vfio-pci vfio_pci`,
  ]);
  assert.match(
    map,
    /# skipped 0000:00:06\.0: the host boots from it \(\/ \(fstab\): \/dev\/vda1\)/,
  );
  assert.match(
    map,
    /# skipped 0000:00:1f\.3: rules\[4\] selects by class 0c05 without "acknowledgeBroadMatch": true/,
  );
  assert.match(
    map,
    /# skipped 0000:00:08\.0: the host uses it now \(interface mgmt0 is up.*\); left to the late apply/,
  );
  // The in-use NIC has the configured id: an id entry would let udev or the early script take it.
  assert.match(
    map,
    /# skipped rules\[3\] \(id 8086:10d3\): no id entry \(0000:00:08\.0 of this id is left out\)/,
  );
  const rules = h.f.tree.read('/etc/udev/rules.d/60-vfioctl.rules')!;
  assert.match(rules, /^SYSCTL\{kernel\/osrelease\}=="6\.12\.0-test", GOTO="vfioctl_k0"$/m);
  assert.match(
    rules,
    new RegExp(
      `^KERNEL=="${E1}", TEST!="driver", ATTR\\{driver_override\\}=="\\(null\\)", ATTR\\{driver_override\\}="vfio-pci", RUN\\{builtin\\}\\+="kmod load vfio_pci", RUN\\+="/usr/lib/vfioctl/vfioctl-udev-probe \\$kernel", GOTO="vfioctl_end"$`,
      'm',
    ),
  );
  assert.ok(!rules.includes('0000:00:06.0'), 'the root disk is in no boot layer');
  const early = h.f.tree.read('/etc/systemd/system/vfioctl-early.service')!;
  assert.match(early, /DefaultDependencies=no/);
  assert.match(early, /Before=systemd-udev-trigger\.service/);
  assert.match(
    h.f.tree.read('/etc/systemd/system/vfioctl-apply.service')!,
    /ExecStart=\/usr\/local\/bin\/vfioctl apply --boot/,
  );
  assert.deepEqual(enableLinks(h), ['../vfioctl-early.service', '../vfioctl-apply.service']);
  for (const x of [
    '/usr/lib/vfioctl/vfioctl-early',
    '/usr/lib/vfioctl/vfioctl-udev-probe',
    '/etc/initramfs-tools/hooks/vfioctl',
    '/etc/initramfs-tools/scripts/init-top/00vfioctl',
    '/etc/kernel/postinst.d/zz-vfioctl',
    '/usr/lib/dracut/modules.d/90vfioctl/module-setup.sh',
  ]) {
    const st = fs.statSync(h.f.tree.abs(x));
    assert.equal(st.mode & 0o777, 0o755, x);
    const shell = x.endsWith('module-setup.sh') ? 'bash' : 'sh';
    assert.equal(spawnSync(shell, ['-n', h.f.tree.abs(x)]).status, 0, `${x} is valid ${shell}`);
  }
  // Idempotent.
  const again = await h.run(['install', ...EXEC, '--json']);
  assert.equal(again.json().packaged, false);
  assert.ok(
    again.json().files.every((f: any) => f.action === 'unchanged'),
    again.stdout,
  );
});

test('set/unset regenerate the installed maps; a broken configuration keeps the previous map', async () => {
  const h = host();
  h.config([]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  assert.ok(!/^address/m.test(h.f.tree.read(MAP)!));
  assert.equal((await h.run(['set', E1, 'vfio', '--noprobe'])).code, 0);
  assert.match(h.f.tree.read(MAP)!, new RegExp(`^address ${E1} vfio-pci vfio_pci$`, 'm'));
  assert.match(h.f.tree.read('/etc/udev/rules.d/60-vfioctl.rules')!, new RegExp(`KERNEL=="${E1}"`));
  const good = h.f.tree.read(MAP);
  h.f.tree.write(
    CONF,
    '{ "version": 1, "rules": [ { "match": { "address": "nope" }, "intent": "vfio" } ] }',
  );
  fs.chmodSync(h.f.tree.abs(CONF), 0o644);
  const r = await h.run(['install', '--refresh']);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /rules\[0\]\.match\.address/);
  assert.equal(h.f.tree.read(MAP), good);
});

test('--uninstall removes what install wrote and nothing else', async () => {
  const h = host();
  h.config([{ match: { address: E1 }, intent: 'vfio' }]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  h.f.tree.write('/etc/kernel/postinst.d/zz-vfioctl', "#!/bin/sh\n# the admin's own\n", 0o755);
  const r = await h.run(['install', '--uninstall']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /kept \(not written by vfioctl\): \/etc\/kernel\/postinst\.d\/zz-vfioctl/);
  for (const x of [
    '/etc/systemd/system/vfioctl-early.service',
    '/etc/systemd/system/sysinit.target.wants/vfioctl-early.service',
    '/etc/udev/rules.d/60-vfioctl.rules',
    MAP,
    '/usr/lib/vfioctl/vfioctl-early',
  ]) {
    assert.ok(!fs.existsSync(h.f.tree.abs(x)), x);
  }
  assert.ok(h.f.tree.exists('/etc/kernel/postinst.d/zz-vfioctl'));
  assert.ok(h.f.tree.exists(CONF), 'the configuration stays');
});

test('the early script writes overrides from the map for unclaimed devices only, loads modules, probes', async () => {
  // No host drivers loaded yet (coldplug has not run): E1, E2 and VN are unclaimed; LPC is claimed.
  const h = host({ loaded: [DRIVERS.lpc, DRIVERS.smbus] });
  h.config([
    { match: { address: E1 }, intent: 'vfio' },
    { match: { address: E2 }, intent: 'none' },
    { match: { address: LPC }, intent: 'vfio' },
    { match: { address: VN }, intent: 'vfio' },
  ]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  // A hostile line in the map does not reach sysfs.
  const pwned = h.f.tree.abs('/pwned');
  fs.appendFileSync(
    h.f.tree.abs(MAP),
    `address 0000:00:04.0 $(touch\${IFS}${pwned}) vfio_pci\naddress 0000:00:04.0 vfio-pci ;touch\${IFS}${pwned}\naddress ../../../etc/x vfio-pci vfio_pci\n`,
  );
  h.f.device({
    address: '0000:00:04.0',
    vendor: '1af4',
    device: '1000',
    driver: null,
    iommuGroup: '4',
  });
  const bin = fs.mkdtempSync(path.join(h.f.dir, 'bin-'));
  fs.writeFileSync(path.join(bin, 'modprobe'), `#!/bin/sh\necho "$@" >> ${bin}/calls\n`, {
    mode: 0o755,
  });
  // mkdir is a process, not a shell builtin: counted (once per boot, not once per device).
  fs.writeFileSync(
    path.join(bin, 'mkdir'),
    `#!/bin/sh\necho "$@" >> ${bin}/mkdirs\nexec /bin/mkdir "$@"\n`,
    { mode: 0o755 },
  );
  const r = spawnSync('sh', [h.f.tree.abs('/usr/lib/vfioctl/vfioctl-early')], {
    env: { PATH: `${bin}:/usr/bin:/bin`, VFIOCTL_ROOT: h.f.dir, VFIOCTL_KERNEL: '6.12.0-test' },
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const ov = (a: string) => h.f.tree.read(`/sys/bus/pci/devices/${a}/driver_override`)?.trim();
  assert.equal(ov(E1), 'vfio-pci');
  assert.equal(ov(E2), 'none');
  assert.equal(ov(VN), 'virtio_vfio_pci');
  assert.notEqual(ov(LPC), 'vfio-pci', 'a device a driver already has is left to the late apply');
  assert.deepEqual(fs.readFileSync(path.join(bin, 'calls'), 'utf8').trim().split('\n').sort(), [
    '-q vfio_pci',
    '-q virtio_vfio_pci',
  ]);
  assert.deepEqual(
    h.f.tree.read('/run/vfioctl/boot-taken')!.trim().split('\n').sort(),
    [`${E1} vfio-pci`, `${E2} none`, `${VN} virtio_vfio_pci`].sort(),
    'what the early script took, for the late apply',
  );
  assert.equal(
    fs.readFileSync(path.join(bin, 'mkdirs'), 'utf8').trim().split('\n').length,
    1,
    'run/vfioctl made once for three devices',
  );
  assert.ok(!fs.existsSync(pwned), 'a map field is never evaluated');
  assert.equal(ov('0000:00:04.0'), '(null)', 'lines with bad fields are skipped');
  assert.ok(!fs.existsSync(h.f.tree.abs('/etc/x/driver_override')));
  const probe = spawnSync(
    'sh',
    [h.f.tree.abs('/usr/lib/vfioctl/vfioctl-udev-probe'), '0000:00:02.0; rm -rf /'],
    { encoding: 'utf8' },
  );
  assert.equal(probe.status, 2);
  assert.match(probe.stderr, /not a PCI address/);
});

test('the early script clears the overrides of devices whose VFIO module fails to load (their host driver takes them at coldplug)', async () => {
  const h = host({ loaded: [DRIVERS.lpc, DRIVERS.smbus] });
  h.config([
    { match: { address: E1 }, intent: 'vfio' },
    { match: { address: VN }, intent: 'vfio' },
  ]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  const bin = fs.mkdtempSync(path.join(h.f.dir, 'bin-'));
  // vfio_pci is missing on this kernel; virtio_vfio_pci loads.
  fs.writeFileSync(
    path.join(bin, 'modprobe'),
    '#!/bin/sh\n[ "$2" = vfio_pci ] && exit 1\nexit 0\n',
    { mode: 0o755 },
  );
  const r = spawnSync('sh', [h.f.tree.abs('/usr/lib/vfioctl/vfioctl-early')], {
    env: { PATH: `${bin}:/usr/bin:/bin`, VFIOCTL_ROOT: h.f.dir, VFIOCTL_KERNEL: '6.12.0-test' },
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const ov = (a: string) => h.f.tree.read(`/sys/bus/pci/devices/${a}/driver_override`)?.trim();
  assert.equal(ov(E1), '', 'cleared (a lone newline clears driver_override)');
  assert.equal(ov(VN), 'virtio_vfio_pci');
  assert.match(
    r.stderr,
    new RegExp(`modprobe vfio_pci failed[\\s\\S]*${E1} left to its host driver`),
  );
});

test('the udev probe helper clears the override when no VFIO driver took the device, and probes again for its host driver', async () => {
  const h = host({ loaded: [DRIVERS.lpc, DRIVERS.smbus] });
  h.config([{ match: { address: E1 }, intent: 'vfio' }]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  const dir = h.f.tree.abs(`/sys/bus/pci/devices/${E1}`);
  fs.writeFileSync(path.join(dir, 'driver_override'), 'vfio-pci');
  fs.rmSync(path.join(dir, 'driver'), { force: true });
  const probe = h.f.tree.abs('/sys/bus/pci/drivers_probe');
  const r = spawnSync('sh', [h.f.tree.abs('/usr/lib/vfioctl/vfioctl-udev-probe'), E1], {
    env: { PATH: '/usr/bin:/bin', VFIOCTL_ROOT: h.f.dir },
    encoding: 'utf8',
  });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /no VFIO driver bound it; override cleared/);
  assert.equal(
    fs.readFileSync(path.join(dir, 'driver_override'), 'utf8'),
    '\n',
    'a lone newline clears driver_override',
  );
  assert.equal(fs.readFileSync(probe, 'utf8'), E1, 'probed (the last write) again after clearing');
});

test('an acknowledged id rule gets an id entry (udev and the early script); an existing override stays', async () => {
  const h = host({ loaded: [DRIVERS.lpc, DRIVERS.smbus] });
  h.config([{ match: { id: '8086:10d3' }, intent: 'vfio', acknowledgeBroadMatch: true }]);
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
  assert.match(h.f.tree.read(MAP)!, /^id 8086:10d3 vfio-pci vfio_pci$/m);
  assert.match(
    h.f.tree.read('/etc/udev/rules.d/60-vfioctl.rules')!,
    /^ATTR\{vendor\}=="0x8086", ATTR\{device\}=="0x10d3", TEST!="driver", ATTR\{driver_override\}=="\(null\)", ATTR\{driver_override\}="vfio-pci", RUN\{builtin\}\+="kmod load vfio_pci"/m,
  );
  // A device of that id that appeared since (no address entry), and one the admin pinned.
  h.f.device({
    address: '0000:00:09.0',
    vendor: '8086',
    device: '10d3',
    driver: null,
    iommuGroup: '9',
  });
  h.f.tree.write(`/sys/bus/pci/devices/${E2}/driver_override`, 'e1000e\n');
  const bin = fs.mkdtempSync(path.join(h.f.dir, 'bin-'));
  fs.writeFileSync(path.join(bin, 'modprobe'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  const r = spawnSync('sh', [h.f.tree.abs('/usr/lib/vfioctl/vfioctl-early')], {
    env: { PATH: `${bin}:/usr/bin:/bin`, VFIOCTL_ROOT: h.f.dir, VFIOCTL_KERNEL: '6.12.0-test' },
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  const ov = (a: string) => h.f.tree.read(`/sys/bus/pci/devices/${a}/driver_override`)?.trim();
  assert.equal(ov('0000:00:09.0'), 'vfio-pci');
  assert.equal(ov(E1), 'vfio-pci');
  assert.equal(ov(E2), 'e1000e');
});

test('VF addresses follow sriov_offset and sriov_stride, across device and bus boundaries', () => {
  assert.equal(
    vfAddress('0000:3b:00.0', { offset: 1, stride: 1, vfDevice: '101e' }, 0),
    '0000:3b:00.1',
  );
  assert.equal(
    vfAddress('0000:3b:00.0', { offset: 1, stride: 1, vfDevice: '101e' }, 7),
    '0000:3b:01.0',
  );
  assert.equal(
    vfAddress('0000:3b:00.1', { offset: 127, stride: 2, vfDevice: '101e' }, 0),
    '0000:3b:10.0',
  );
  assert.equal(
    vfAddress('0000:3b:00.0', { offset: 128, stride: 1, vfDevice: '101e' }, 200),
    '0000:3c:09.0',
  );
});

test('import-driverctl turns /etc/driverctl.d into rules (none included); bad files change nothing', async () => {
  const h = host();
  h.f.tree.write('/etc/driverctl.d/pci-0000:00:02.0', 'vfio-pci\n', 0o644);
  h.f.tree.write('/etc/driverctl.d/pci-0000:00:05.0', 'none\n', 0o644);
  const dry = await h.run(['import-driverctl', '--dry-run']);
  assert.equal(dry.code, 0, dry.stderr);
  assert.match(
    dry.stdout,
    /would import \/etc\/driverctl\.d\/pci-0000:00:02\.0: 0000:00:02\.0 -> vfio-pci/,
  );
  assert.match(dry.stdout, /do not use 'driverctl unset-override'/);
  assert.ok(!h.f.tree.exists(CONF));
  const r = await h.run(['import-driverctl', '--vfio']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(JSON.parse(h.f.tree.read(CONF)!).rules, [
    { match: { address: E1 }, intent: 'vfio' },
    { match: { address: E2 }, intent: 'none' },
  ]);
  assert.equal(h.k.writes.length, 0, 'import does not apply');
  assert.equal(
    (await h.run(['list-overrides'])).stdout,
    '',
    'list-overrides shows live overrides, as driverctl',
  );
  h.f.tree.write('/etc/driverctl.d/pci-0000:00:03.0', 'vfio pci\n', 0o644);
  const bad = await h.run(['import-driverctl']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /pci-0000:00:03\.0: 'vfio pci' is not a driver name/);
  assert.equal(JSON.parse(h.f.tree.read(CONF)!).rules.length, 2);
});

test('driverctl verbs: set-override stores the literal driver, list-devices marks overrides, unset-override returns it', async () => {
  const h = host();
  const r = await h.run(['set-override', E1, 'vfio-pci']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(JSON.parse(h.f.tree.read(CONF)!).rules, [
    { match: { address: E1 }, intent: 'vfio-pci' },
  ]);
  assert.equal(h.state(E1).driver, 'vfio-pci');
  const list = (await h.run(['list-devices'])).stdout;
  assert.match(list, /^0000:00:02\.0 vfio-pci \[\*\]$/m);
  assert.match(list, /^0000:00:05\.0 e1000e$/m);
  assert.equal((await h.run(['list-overrides'])).stdout, `${E1} vfio-pci\n`);
  assert.equal(
    (await h.run(['list-devices', 'network'])).stdout,
    `${E1} vfio-pci [*]\n${VN} virtio-pci\n${E2} e1000e\n`,
  );
  assert.equal((await h.run(['list-devices', 'toaster'])).code, 2);
  assert.equal((await h.run(['unset-override', `pci/${E1}`])).code, 0);
  assert.equal(h.state(E1).driver, 'e1000e');
  assert.equal((await h.run(['list-overrides'])).stdout, '');
  assert.equal(
    (await h.run(['load-override', E1])).code,
    1,
    'no saved override: exit 1, as driverctl',
  );
  // driverctl's options before the verb.
  const ns = await h.run(['--nosave', 'set-override', E2, 'vfio-pci']);
  assert.equal(ns.code, 0, ns.stderr);
  assert.equal(h.state(E2).driver, 'vfio-pci');
  assert.deepEqual(JSON.parse(h.f.tree.read(CONF)!).rules, []);
  assert.equal((await h.run(['--noprobe', 'set-override', E1, 'none'])).code, 0);
  assert.equal(h.state(E1).driver, 'e1000e');
  assert.equal((await h.run(['load-override', E1])).code, 0);
  assert.deepEqual(h.state(E1), { driver: null, override: 'none', vfioDev: false });
  assert.equal((await h.run(['-b', 'usb', 'list-devices'])).code, 2);
  assert.equal((await h.run(['set-override', 'usb/1-1', 'usbhid'])).code, 2);
});

test('packaged mode: install writes only the maps, the udev rule and the enable links, never a file the package owns', async () => {
  const h = host();
  h.config([{ match: { address: E1 }, intent: 'vfio' }]);
  // What the package ships, as dpkg would have unpacked it.
  h.f.tree.write(PACKAGED_MARKER, 'vfioctl package\n');
  for (const f of staticLayers(PACKAGE_LAYOUT, PACKAGED_EXEC))
    h.f.tree.write(f.path, f.content, f.mode);
  const shipped = () =>
    staticLayers(PACKAGE_LAYOUT, PACKAGED_EXEC).map((f) => [
      f.path,
      h.f.tree.read(f.path),
      fs.statSync(h.f.tree.abs(f.path)).mtimeMs,
    ]);
  const before = shipped();
  const exec = await h.run(['install', ...EXEC]);
  assert.equal(exec.code, 2, 'the packaged units run /usr/sbin/vfioctl: --exec is bad input');
  assert.match(exec.stderr, /--exec: the packaged units run \/usr\/sbin\/vfioctl/);
  const r = await h.run(['install', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(r.json().packaged, true);
  assert.deepEqual(
    r
      .json()
      .files.map((f: any) => f.path)
      .sort(),
    [
      '/etc/systemd/system/multi-user.target.wants/vfioctl-apply.service',
      '/etc/systemd/system/sysinit.target.wants/vfioctl-early.service',
      '/etc/udev/rules.d/60-vfioctl.rules',
      MAP,
      MAP.replace(/\.map$/, '.json'),
    ].sort(),
  );
  assert.match(h.f.tree.read(MAP)!, new RegExp(`^address ${E1} vfio-pci vfio_pci$`, 'm'));
  assert.deepEqual(enableLinks(h), [
    '/lib/systemd/system/vfioctl-early.service',
    '/lib/systemd/system/vfioctl-apply.service',
  ]);
  for (const x of [
    '/etc/systemd/system/vfioctl-early.service',
    '/etc/initramfs-tools/hooks/vfioctl',
    '/etc/kernel/install.d/40-vfioctl.install',
  ])
    assert.ok(!h.f.tree.exists(x), `${x}: not written in packaged mode`);
  assert.equal((await h.run(['set', E2, 'vfio', '--noprobe'])).code, 0);
  assert.match(
    h.f.tree.read(MAP)!,
    new RegExp(`^address ${E2} vfio-pci vfio_pci$`, 'm'),
    'set refreshes the packaged maps',
  );
  // A unit left by an earlier non-packaged install hides the package's: a warning names it.
  h.f.tree.write(
    '/etc/systemd/system/vfioctl-apply.service',
    staticLayers(LOCAL_LAYOUT, '/usr/local/bin/vfioctl')[3]!.content,
  );
  assert.match(
    (await h.run(['install'])).stderr,
    /\/etc\/systemd\/system\/vfioctl-apply\.service was written by a non-packaged 'vfioctl install'/,
  );
  const u = await h.run(['install', '--uninstall']);
  assert.equal(u.code, 0, u.stdout + u.stderr);
  for (const x of [
    MAP,
    '/etc/udev/rules.d/60-vfioctl.rules',
    '/etc/systemd/system/sysinit.target.wants/vfioctl-early.service',
    '/etc/systemd/system/multi-user.target.wants/vfioctl-apply.service',
  ])
    assert.ok(!fs.existsSync(h.f.tree.abs(x)), x);
  assert.deepEqual(
    shipped(),
    before,
    'every packaged file is untouched: same content, never rewritten',
  );
  assert.ok(h.f.tree.exists(CONF));
});

test('the packaged static layers are the same renderers as the installed ones, only their directories and header differ', () => {
  const local = staticLayers(LOCAL_LAYOUT, PACKAGED_EXEC);
  const pkg = staticLayers(PACKAGE_LAYOUT, PACKAGED_EXEC);
  assert.equal(pkg.length, local.length);
  pkg.forEach((p, i) => {
    assert.equal(
      p.content.replace(
        /^# Part of the vfioctl package .*: do not edit\.$/m,
        `# ${MARKER}: do not edit.`,
      ),
      local[i]!.content,
      p.path,
    );
    assert.ok(
      !p.content.includes(MARKER),
      `${p.path}: a packaged file does not claim install wrote it`,
    );
  });
  // dpkg's files go to vendor directories; /etc only for the kernel hook (a conffile, as
  // initramfs-tools' own).
  assert.deepEqual(
    pkg.filter((p) => p.path.startsWith('/etc/')).map((p) => p.path),
    ['/etc/kernel/postinst.d/zz-vfioctl'],
  );
});

test('install exits 1 naming each file it could not write, and still writes the others', async () => {
  const h = host();
  h.config([{ match: { address: E1 }, intent: 'vfio' }]);
  // A directory where the udev rule goes: the rename over it fails, for root too.
  h.f.tree.write('/etc/udev/rules.d/60-vfioctl.rules/keep', 'x');
  const r = await h.run(['install', ...EXEC, '--json']);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  const failed = r.json().files.filter((f: any) => f.action === 'failed');
  assert.deepEqual(
    failed.map((f: any) => f.path),
    ['/etc/udev/rules.d/60-vfioctl.rules'],
  );
  assert.match(failed[0].error, /^E[A-Z]+ /);
  assert.match(
    r.stderr,
    /could not write .*\/etc\/udev\/rules\.d\/60-vfioctl\.rules: E[A-Z]+ .*run 'vfioctl install' again/,
  );
  assert.ok(
    h.f.tree.read(MAP)?.includes(`address ${E1} vfio-pci vfio_pci`),
    'the map was still written',
  );
  const text = await h.run(['install', ...EXEC]);
  assert.equal(text.code, 1);
  assert.match(text.stdout, /^failed: \/etc\/udev\/rules\.d\/60-vfioctl\.rules \(E[A-Z]+ /m);
  assert.doesNotMatch(text.stdout, /^next:/m, 'no next step while the layers are incomplete');
  fs.rmSync(h.f.tree.abs('/etc/udev/rules.d/60-vfioctl.rules'), { recursive: true });
  assert.equal((await h.run(['install', ...EXEC])).code, 0);
});
