// The Debian package, for real (run by `npm run test:package`, as root): lintian, then an install
// into a fresh Debian 12 tree made with debootstrap, where apt pulls Debian's own nodejs 18, the
// packaged CLI runs, dpkg neither enables nor starts a unit, `vfioctl install` in packaged mode
// writes only the host's parts, the pages render with man, and purge leaves only the admin's
// configuration behind.
import { after, before, test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { e1000e, virtioNet } from '../support/devices';
import { ALIASES, Fixture } from '../support/fixture';
import { interpreterFlags } from '../support/interpreter';
import { PACKAGED_EXEC } from '../../src/boot/files';

const repo = path.join(__dirname, '../../..');
const version: string = JSON.parse(
  fs.readFileSync(path.join(repo, 'package.json'), 'utf8'),
).version;
const deb = path.join(repo, 'dist', `vfioctl_${version}_all.deb`);
const cockpitDeb = path.join(repo, 'dist', `cockpit-vfioctl_${version}_all.deb`);
const cache = process.env.VFIOCTL_DEB_CACHE ?? '/var/cache/vfioctl-deb';
const archives = path.join(cache, 'archives');
let work = '';
let R = '';

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): SpawnSyncReturns<string> {
  const r = spawnSync(cmd, args, {
    encoding: 'utf8',
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', ...env },
  });
  if (r.error) throw r.error;
  return r;
}
const ok = (r: SpawnSyncReturns<string>, what: string) =>
  assert.equal(r.status, 0, `${what}: exit ${r.status}\n${r.stdout}\n${r.stderr}`);
/** A command inside the Debian 12 tree. */
const chroot = (args: string[], env: NodeJS.ProcessEnv = {}) =>
  run('chroot', [R, ...args], { DEBIAN_FRONTEND: 'noninteractive', ...env });
/** apt installs a .deb copied into the tree's /tmp (by before()), with its dependencies. */
const aptInstall = (file: string) =>
  chroot([
    'apt-get',
    'install',
    '-y',
    '-qq',
    '--no-install-recommends',
    `/tmp/${path.basename(file)}`,
  ]);
/** libvirt's qemu hook as libvirt runs it: argv, the domain XML on stdin, LC_ALL=C. */
const LIBVIRT_HOOK = '/etc/libvirt/hooks/qemu.d/50-vfioctl';
const libvirtHook = (input: string) =>
  spawnSync('chroot', [R, LIBVIRT_HOOK, 'g', 'prepare', 'begin', '-'], {
    input,
    encoding: 'utf8',
    env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' },
  });
const DOMAIN =
  "<domain type='kvm'><name>g</name><uuid>c7a5fdbd-cdaf-9455-926a-d65c16db1809</uuid><devices/></domain>";
/** Every path in the tree that names vfioctl, outside the fixture host. */
function vfioctlPaths(): string[] {
  const r = run('find', [
    R,
    '-xdev',
    '(',
    '-path',
    `${R}/srv`,
    '-o',
    '-path',
    `${R}/proc`,
    ')',
    '-prune',
    '-o',
    '-name',
    '*vfioctl*',
    '-print',
  ]);
  return r.stdout
    .split('\n')
    .filter(Boolean)
    .map((p) => p.slice(R.length))
    .sort();
}

before(() => {
  assert.ok(fs.existsSync(deb), `${deb}: run 'npm run package:deb' first`);
  const base = run('bash', [path.join(repo, 'test/package/debian-root.sh')]);
  ok(base, 'debian-root.sh');
  work = fs.mkdtempSync('/var/tmp/vfioctl-deb-');
  R = path.join(work, 'root');
  ok(run('cp', ['-a', base.stdout.trim(), R]), 'copy the Debian tree');
  fs.copyFileSync('/etc/resolv.conf', path.join(R, 'etc/resolv.conf'));
  // Downloaded .debs are kept between runs (apt checks them against the fresh indexes).
  fs.mkdirSync(archives, { recursive: true });
  for (const f of fs.readdirSync(archives))
    fs.copyFileSync(path.join(archives, f), path.join(R, 'var/cache/apt/archives', f));
  fs.copyFileSync(deb, path.join(R, 'tmp', path.basename(deb)));
  fs.copyFileSync(cockpitDeb, path.join(R, 'tmp', path.basename(cockpitDeb)));
});

after(() => {
  if (R)
    for (const f of fs
      .readdirSync(path.join(R, 'var/cache/apt/archives'))
      .filter((f) => f.endsWith('.deb')))
      fs.copyFileSync(path.join(R, 'var/cache/apt/archives', f), path.join(archives, f));
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test('lintian: no error, no warning', () => {
  const r = run('lintian', ['--fail-on', 'error,warning', '--display-info', deb]);
  const tags = r.stdout.split('\n').filter((l) => /^[EWIP]: /.test(l));
  assert.deepEqual(
    tags.filter((l) => /^[EW]: /.test(l)),
    [],
  );
  ok(r, 'lintian');
  // The info tags that remain are printed for the report (README, "Debian package").
  for (const t of tags) console.log(`lintian ${t}`);
});

test("apt installs the package into Debian 12 with Debian's own nodejs, and dpkg enables and starts nothing", () => {
  ok(chroot(['apt-get', 'update', '-qq']), 'apt-get update');
  ok(aptInstall(deb), 'apt-get install ./vfioctl.deb');
  const node = chroot(['dpkg-query', '-W', '-f=${Version} ${Maintainer}', 'nodejs']);
  ok(node, 'nodejs installed');
  assert.match(node.stdout, /^18\.\d+\.\d+\+dfsg-\S+ Debian/, "Debian's nodejs 18");
  assert.match(chroot(['node', '--version']).stdout, /^v18\./);
  const v = chroot(['vfioctl', '--version']);
  ok(v, 'vfioctl --version');
  assert.equal(v.stdout.trim(), version);
  // Shipped, disabled, not run: no enable links, no runtime state, and systemctl agrees offline.
  for (const u of ['vfioctl-early.service', 'vfioctl-apply.service']) {
    assert.ok(fs.existsSync(path.join(R, 'lib/systemd/system', u)), u);
    assert.equal(
      run('systemctl', [`--root=${R}`, 'is-enabled', u]).stdout.trim(),
      'disabled',
      `${u} is not enabled by dpkg`,
    );
  }
  assert.deepEqual(
    vfioctlPaths().filter((p) => /\.wants\/|^\/run\/|^\/var\/lib\/vfioctl|^\/etc\/vfioctl/.test(p)),
    [],
  );
  const postinst = fs.readFileSync(path.join(R, 'var/lib/dpkg/info/vfioctl.postinst'), 'utf8');
  assert.doesNotMatch(
    postinst,
    /deb-systemd-invoke (start|restart)|systemctl (start|restart)|apply --boot/,
    'the maintainer scripts never start a unit',
  );
  ok(chroot(['dpkg', '--verify', 'vfioctl']), 'dpkg --verify');
  // The libvirt qemu hook, a conffile: vfioctl gets libvirt's argv and stdin; nothing on stdout.
  assert.equal(fs.statSync(path.join(R, LIBVIRT_HOOK)).mode & 0o777, 0o755);
  assert.match(
    fs.readFileSync(path.join(R, 'var/lib/dpkg/info/vfioctl.conffiles'), 'utf8'),
    /^\/etc\/libvirt\/hooks\/qemu\.d\/50-vfioctl$/m,
  );
  const h = libvirtHook(DOMAIN);
  assert.deepEqual([h.status, h.stdout, h.stderr], [0, '', '']);
  const bad = libvirtHook(DOMAIN.replace('</domain>', ''));
  assert.deepEqual([bad.status, bad.stdout], [2, '']);
  assert.match(bad.stderr, /domain XML:1:\d+: unclosed tag: domain/);
});

test("cockpit-vfioctl: lintian clean, installs beside vfioctl, Cockpit's bridge finds the page, and purge takes it all", () => {
  const l = run('lintian', ['--fail-on', 'error,warning', '--display-info', cockpitDeb]);
  assert.deepEqual(
    l.stdout.split('\n').filter((t) => /^[EW]: /.test(t)),
    [],
  );
  ok(l, 'lintian cockpit-vfioctl');
  ok(aptInstall(cockpitDeb), 'apt-get install ./cockpit-vfioctl.deb');
  const manifest = JSON.parse(
    fs.readFileSync(path.join(R, 'usr/share/cockpit/vfioctl/manifest.json'), 'utf8'),
  );
  assert.ok(manifest.menu, 'a menu entry');
  // The bridge lists the packages it would serve: ours among them, by its directory name.
  const listed = chroot(['cockpit-bridge', '--packages']);
  ok(listed, 'cockpit-bridge --packages');
  assert.match(listed.stdout, /^vfioctl\b/m);
  ok(chroot(['apt-get', 'purge', '-y', '-qq', 'cockpit-vfioctl']), 'apt-get purge cockpit-vfioctl');
  assert.equal(fs.existsSync(path.join(R, 'usr/share/cockpit/vfioctl')), false);
  assert.equal(
    chroot(['dpkg-query', '-W', '-f=${Status}', 'vfioctl']).stdout,
    'install ok installed',
    'vfioctl stays',
  );
  fs.rmSync(path.join(R, 'tmp', path.basename(cockpitDeb)));
});

test('the packaged CLI reads a fixture host under --root: list and show', () => {
  const f = new Fixture(path.join(R, 'srv/host'));
  f.kernel('6.1.0-test')
    .modulesAlias([ALIASES.vfioPci, ALIASES.virtio1041, ALIASES.e1000e])
    .iommu();
  f.device(e1000e('0000:00:02.0', '2')).device(virtioNet('0000:00:03.0', '3'));
  const list = chroot(['vfioctl', '--root', '/srv/host', 'list', '--json']);
  ok(list, 'list --json');
  const devices = JSON.parse(list.stdout) as { address: string; vfio: { driver: string } | null }[];
  assert.deepEqual(
    devices.map((d) => [d.address, d.vfio?.driver]),
    [
      ['0000:00:02.0', 'vfio-pci'],
      ['0000:00:03.0', 'virtio_vfio_pci'],
    ],
  );
  const show = chroot(['vfioctl', 'show', '00:03.0', '--json'], { VFIOCTL_ROOT: '/srv/host' });
  ok(show, 'show --json (root from VFIOCTL_ROOT)');
  assert.deepEqual(
    (JSON.parse(show.stdout).candidates as { module: string }[]).map((c) => c.module),
    ['virtio_vfio_pci', 'vfio_pci'],
  );
  // The other read paths on Debian's nodejs 18 too (no Node 20-only API on the way).
  for (const args of [
    ['doctor', '--json'],
    ['bind', '--dry-run', '--json', '00:03.0'],
    ['apply', '--dry-run', '--json'],
    ['status', '--json'],
  ]) {
    const r = chroot(['vfioctl', '--root', '/srv/host', ...args]);
    assert.doesNotMatch(r.stderr, /internal error|TypeError|is not a function/, args.join(' '));
    // status: 5 when some configured device drifts (the fixture's configuration is not applied).
    assert.ok(
      r.status !== null && [0, 1, ...(args[0] === 'status' ? [5] : [])].includes(r.status),
      `${args.join(' ')}: exit ${r.status}\n${r.stdout}${r.stderr}`,
    );
    JSON.parse(r.stdout);
  }
  const bad = chroot(['vfioctl', '--root', '/srv/host', 'show', '00:09.0']);
  assert.equal(bad.status, 2, 'an unknown device is bad input');
  // The postinst made V8's code cache with Debian's node; the launcher's answers are the
  // bundle's own, run directly.
  const node = chroot(['node', '--version']).stdout.trim();
  const made = fs
    .readdirSync(path.join(R, 'var/cache/vfioctl'))
    .filter((n) => n.endsWith('.code-cache'));
  assert.equal(made.length, 1, `one code cache: ${made.join(', ')}`);
  assert.match(
    made[0]!,
    new RegExp(`^vfioctl\\.js\\.[0-9a-f]{16}\\.${node.replace(/\./g, '\\.')}\\.`),
  );
  const st = fs.statSync(path.join(R, 'var/cache/vfioctl', made[0]!));
  assert.deepEqual([st.uid, st.mode & 0o777], [0, 0o644]);
  // Made under the flags the command's interpreter line starts Debian's node with (V8 takes a
  // cache only under its own): the build's line, its node made the distribution's.
  const built = interpreterFlags(path.join(repo, 'dist/vfioctl'));
  assert.ok(built, "the build's launcher has a node interpreter line");
  assert.deepEqual(interpreterFlags(path.join(R, PACKAGED_EXEC)), built);
  assert.match(fs.readFileSync(path.join(R, PACKAGED_EXEC), 'latin1'), /^#!\/usr\/bin\/node[ \n]/);
  for (const args of [
    ['list', '--json'],
    ['show', '00:03.0', '--json'],
    ['show', '00:09.0'],
  ]) {
    const a = chroot(['vfioctl', '--root', '/srv/host', ...args]);
    const b = chroot(['node', '/usr/lib/vfioctl/vfioctl.js', '--root', '/srv/host', ...args]);
    assert.deepEqual(
      [a.status, a.stdout, a.stderr],
      [b.status, b.stdout, b.stderr],
      args.join(' '),
    );
  }
});

test('the man pages render with man', () => {
  for (const [page, words] of [
    ['man8/vfioctl.8.gz', ['bind', 'import-driverctl', 'EXIT STATUS']],
    ['man5/vfioctl.json.5.gz', ['acknowledgeBroadMatch', 'vfIntent']],
    ['man7/vfioctl-hooks.7.gz', ['pre-probe', 'VFIOCTL_HOOK_TIMEOUT']],
  ] as const) {
    const r = chroot(['man', '--warnings', '-l', `/usr/share/man/${page}`], {
      MANWIDTH: '80',
      MAN_KEEP_FORMATTING: '',
    });
    ok(r, `man -l ${page}`);
    assert.equal(r.stderr, '', `${page}: no groff warnings`);
    for (const w of words) assert.ok(r.stdout.includes(w), `${page} mentions ${w}`);
  }
});

test('packaged install writes only the host parts; remove drops the udev rule and a new install refreshes it; purge leaves only the configuration', () => {
  // The tree as a host of its own: a kernel, a device, a configuration.
  const host = new Fixture(R);
  host.kernel('6.1.0-test').modulesAlias([ALIASES.vfioPci, ALIASES.e1000e]).iommu();
  host.device(e1000e('0000:00:02.0', '2', { driver: null }));
  const conf = path.join(R, 'etc/vfioctl/vfioctl.json');
  fs.mkdirSync(path.dirname(conf), { recursive: true });
  fs.writeFileSync(
    conf,
    '{ "version": 1, "rules": [ { "match": { "address": "0000:00:02.0" }, "intent": "vfio" } ] }\n',
    { mode: 0o644 },
  );
  const inst = chroot(['vfioctl', 'install', '--json']);
  ok(inst, 'vfioctl install');
  assert.deepEqual(
    (JSON.parse(inst.stdout).files as { path: string }[]).map((f) => f.path).sort(),
    [
      '/etc/systemd/system/multi-user.target.wants/vfioctl-apply.service',
      '/etc/systemd/system/sysinit.target.wants/vfioctl-early.service',
      '/etc/udev/rules.d/60-vfioctl.rules',
      '/etc/vfioctl/boot/6.1.0-test.json',
      '/etc/vfioctl/boot/6.1.0-test.map',
    ],
  );
  assert.match(
    fs.readFileSync(path.join(R, 'etc/vfioctl/boot/6.1.0-test.map'), 'utf8'),
    /^address 0000:00:02\.0 vfio-pci vfio_pci$/m,
  );
  for (const u of ['vfioctl-early.service', 'vfioctl-apply.service'])
    assert.equal(run('systemctl', [`--root=${R}`, 'is-enabled', u]).stdout.trim(), 'enabled', u);
  const verify = chroot(['dpkg', '--verify', 'vfioctl']);
  ok(verify, 'dpkg --verify');
  assert.equal(verify.stdout, '', 'no file of the package was changed');
  // remove: the udev rule goes (its helper is gone), the maps and the configuration stay...
  const rule = path.join(R, 'etc/udev/rules.d/60-vfioctl.rules');
  ok(chroot(['apt-get', 'remove', '-y', '-qq', 'vfioctl']), 'apt-get remove');
  assert.ok(!fs.existsSync(rule), 'remove takes the udev rule away');
  assert.ok(fs.existsSync(path.join(R, 'etc/vfioctl/boot/6.1.0-test.map')) && fs.existsSync(conf));
  // The hook (a conffile) stays after remove, and guests start as before without vfioctl.
  const gone = libvirtHook(DOMAIN.replace('</domain>', ''));
  assert.deepEqual([gone.status, gone.stdout, gone.stderr], [0, '', '']);
  // ...and postinst regenerates the host's parts where install ran.
  ok(aptInstall(deb), 'install again');
  assert.match(fs.readFileSync(rule, 'utf8'), /KERNEL=="0000:00:02\.0"/);
  ok(chroot(['dpkg', '--verify', 'vfioctl']), 'dpkg --verify after postinst');
  // The fake /proc and /sys of this host are no longer needed (and apt must not read them).
  for (const d of ['proc', 'sys'])
    for (const e of fs.readdirSync(path.join(R, d)))
      fs.rmSync(path.join(R, d, e), { recursive: true, force: true });
  fs.writeFileSync(
    path.join(R, 'var/lib/vfioctl-admin-note'),
    'not under a vfioctl directory: must stay\n',
  );
  fs.mkdirSync(path.join(R, 'etc/vfioctl/hooks.d'));
  fs.writeFileSync(path.join(R, 'etc/vfioctl/hooks.d/50-admin'), '#!/bin/sh\nexit 0\n', {
    mode: 0o755,
  });
  ok(chroot(['apt-get', 'purge', '-y', '-qq', 'vfioctl']), 'apt-get purge');
  assert.deepEqual(vfioctlPaths(), [
    '/etc/vfioctl',
    '/etc/vfioctl/vfioctl.json',
    '/tmp/' + path.basename(deb),
    '/var/lib/vfioctl-admin-note',
  ]);
  assert.ok(fs.existsSync(path.join(R, 'etc/vfioctl/hooks.d/50-admin')), "the admin's hook stays");
  assert.equal(chroot(['dpkg-query', '-W', 'vfioctl']).status, 1, 'dpkg forgot the package');
});
