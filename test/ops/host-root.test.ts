// --host-root: the live host's / mounted into a container. The fixture's reader is a container
// (its own /proc/self/mountinfo and /proc/net) while the host's mounts and routes are pid 1's; the
// checks must see the host's. modprobe and hooks go through chroot into the host's root.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { disk, e1000e, nvme } from '../support/devices';
import { E2, isRoot, modelHosts, type ModelHost } from '../support/model-host';
import { cliArgs, type CliResult } from '../support/cli';
import { HostRoot } from '../../src/host/root';
import { SysfsKernelIo, type KernelIo, type RunProgram } from '../../src/apply/kernel-io';
import { hookCommand, type HookInput } from '../../src/hooks/run';
import { EXIT, openHost, type VfioctlError } from '../../src/ops/index';

const host = modelHosts({ trustSelf: true });
const NIC = '0000:00:08.0'; // up, with an address and a route in the host's network namespace
const ROOTDISK = '0000:00:0a.0'; // NVMe holding the host's /, mounted in the host's mount namespace
const PODDISK = '0000:00:0b.0'; // NVMe mounted in the container's mount namespace only

/**
 * The host as a pod sees it through --host-root: its NIC and root disk in use, not in the reader's
 * view.
 */
function podView(): ModelHost {
  const h = host();
  h.f.device(
    e1000e(NIC, '8', {
      netdevs: [
        {
          name: 'eno8',
          up: true,
          ipv4: '192.0.2.10',
          ipv6: '2001:0db8:0000:0000:0000:0000:0000:0010',
        },
      ],
    }),
  );
  for (const [address, name, major, group] of [
    [ROOTDISK, 'nvme0n1', '259', '10'],
    [PODDISK, 'nvme1n1', '260', '11'],
  ] as const)
    h.f.device(nvme(address, group, { blockdevs: disk(name, major) }));
  h.f.mount('259:1', '/dev/nvme0n1p1', '/');
  h.f.containerReader().readerMount('260:1', '/dev/nvme1n1p1', '/var/lib/pod-data');
  return h;
}

function runWith(
  h: ModelHost,
  args: string[],
  kernelIo?: (root: HostRoot) => KernelIo,
): Promise<CliResult> {
  return cliArgs(args, h.env, { kernelIo: kernelIo ?? (() => h.k) });
}

const refusalText = (r: CliResult, address: string) => {
  const d = r.json().results.find((x: { address: string }) => x.address === address);
  assert.ok(d, `a result for ${address}: ${r.stdout}`);
  return {
    status: d.status as string,
    text: (d.refusals as { message: string }[]).map((x) => x.message).join('; '),
  };
};

test('--host-root reads mounts and routes from the host (proc/1), not from the reading container (proc/self, proc/net)', async () => {
  const h = podView();
  // The two views really differ: the host's table names the root disk and the NIC's route, the
  // reader's neither.
  assert.match(h.f.tree.read('/proc/1/mountinfo')!, /nvme0n1p1/);
  assert.doesNotMatch(h.f.tree.read('/proc/self/mountinfo')!, /nvme0n1p1/);
  assert.match(h.f.tree.read('/proc/1/net/route')!, /eno8/);
  assert.doesNotMatch(h.f.tree.read('/proc/net/route')!, /eno8/);

  const hostView = await runWith(h, [
    '--host-root',
    h.f.dir,
    'bind',
    NIC,
    ROOTDISK,
    PODDISK,
    '--dry-run',
    '--json',
  ]);
  assert.equal(hostView.code, EXIT.REFUSED, hostView.stderr);
  const nic = refusalText(hostView, NIC);
  assert.equal(nic.status, 'refused');
  assert.match(nic.text, /interface eno8 carries routes \(192\.0\.2\.0\)/);
  assert.match(nic.text, /interface eno8 has address 2001:db8::10/);
  const rootDisk = refusalText(hostView, ROOTDISK);
  assert.equal(rootDisk.status, 'refused');
  assert.match(rootDisk.text, /nvme0n1p1 is mounted on \//);
  // Mounted in the container only: nothing of the host's.
  assert.equal(refusalText(hostView, PODDISK).status, 'planned');

  // The same tree as a plain --root reads the reader's namespaces: the difference is the point.
  const readerView = await runWith(h, [
    '--root',
    h.f.dir,
    'bind',
    NIC,
    ROOTDISK,
    PODDISK,
    '--dry-run',
    '--json',
  ]);
  assert.doesNotMatch(refusalText(readerView, NIC).text, /carries routes|has address/);
  assert.equal(refusalText(readerView, ROOTDISK).status, 'planned');
  assert.match(
    refusalText(readerView, PODDISK).text,
    /nvme1n1p1 is mounted on \/var\/lib\/pod-data/,
  );
});

test('swap is read from the one global /proc/swaps under --host-root too', async () => {
  const h = podView();
  h.f.swap('/dev/nvme1n1p1');
  const r = await runWith(h, ['--host-root', h.f.dir, 'bind', PODDISK, '--dry-run', '--json']);
  assert.match(refusalText(r, PODDISK).text, /nvme1n1p1 is used as swap/);
});

test("--host-root loads modules with the host's modprobe: chroot DIR modprobe ..., then binds", async () => {
  const h = podView();
  assert.equal(h.k.driverOf(E2), 'e1000e');
  assert.ok(!h.f.tree.exists('/sys/bus/pci/drivers/vfio-pci'), 'vfio-pci is not loaded yet');
  const ran: string[][] = [];
  // The real SysfsKernelIo's modprobe, with the program runner recorded; what chroot would run
  // (the host's modprobe) is the kernel model's. Sysfs writes go to the model as usual.
  const kernelIo = (root: HostRoot): KernelIo => {
    const run: RunProgram = (file, args) => {
      ran.push([file, ...args]);
      return file === 'chroot' && args[0] === root.dir && args[1] === 'modprobe'
        ? h.k.modprobe(args.slice(2))
        : Promise.resolve({ status: 127, stderr: `not the host's modprobe: ${file}` });
    };
    const sysfs = new SysfsKernelIo(root, run);
    return {
      write: (rel, v) => h.k.write(rel, v),
      chown: (rel, u, g) => h.k.chown(rel, u, g),
      modprobe: (args) => sysfs.modprobe(args),
    };
  };
  const r = await runWith(h, ['--host-root', h.f.dir, 'bind', E2, '--json'], kernelIo);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(ran, [['chroot', h.f.dir, 'modprobe', 'vfio_pci']]);
  assert.equal(h.k.driverOf(E2), 'vfio-pci');

  // A plain --root is a tree of files: nothing is run, the bind fails and is rolled back.
  ran.length = 0;
  const h2 = podView();
  const fixture = await runWith(h2, ['--root', h2.f.dir, 'bind', E2, '--json'], (root) => {
    const sysfs = new SysfsKernelIo(root, (file, args) => {
      ran.push([file, ...args]);
      return Promise.resolve({ status: 0, stderr: '' });
    });
    return {
      write: (rel, v) => h2.k.write(rel, v),
      chown: (rel, u, g) => h2.k.chown(rel, u, g),
      modprobe: (args) => sysfs.modprobe(args),
    };
  });
  assert.equal(fixture.code, EXIT.FAILED, fixture.stdout);
  assert.match(fixture.stdout, /modprobe skipped: --root .* is not the running system/);
  assert.deepEqual(ran, []);
  assert.equal(h2.k.driverOf(E2), 'e1000e');
});

test('SysfsKernelIo.modprobe: the live root runs modprobe, a host root chroot DIR modprobe, a fixture nothing', async () => {
  const ran: string[][] = [];
  const run: RunProgram = (file, args) => {
    ran.push([file, ...args]);
    return Promise.resolve({ status: 0, stderr: '' });
  };
  const dir = fs.mkdtempSync('/tmp/vfioctl-hostroot-');
  try {
    assert.equal(
      (
        await new SysfsKernelIo(new HostRoot('/'), run).modprobe([
          '-b',
          'pci:v00008086d000010D3sv*',
        ])
      ).status,
      0,
    );
    assert.equal(
      (await new SysfsKernelIo(new HostRoot(dir, { hostMount: true }), run).modprobe(['vfio_pci']))
        .status,
      0,
    );
    const fixture = await new SysfsKernelIo(new HostRoot(dir), run).modprobe(['vfio_pci']);
    assert.equal(fixture.status, 1);
    assert.deepEqual(ran, [
      ['modprobe', '-b', 'pci:v00008086d000010D3sv*'],
      ['chroot', dir, 'modprobe', 'vfio_pci'],
    ]);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('hooks run chrooted into the host root, by their path inside it, with VFIOCTL_ROOT=/', () => {
  const h = podView();
  h.hook('/etc/vfioctl/hooks.d/50-x', 'exit 0');
  const input: HookInput = {
    event: 'pre-bind',
    address: E2,
    targetDriver: 'vfio-pci',
    previousDriver: 'e1000e',
    device: {},
    steps: [],
  };
  const argv = [input.event, E2, 'vfio-pci', 'e1000e'];
  assert.deepEqual(
    hookCommand(new HostRoot(h.f.dir, { hostMount: true }), '/etc/vfioctl/hooks.d/50-x', input),
    { file: 'chroot', args: [h.f.dir, '/etc/vfioctl/hooks.d/50-x', ...argv], rootDir: '/' },
  );
  assert.deepEqual(hookCommand(new HostRoot(h.f.dir), '/etc/vfioctl/hooks.d/50-x', input), {
    file: h.f.tree.abs('/etc/vfioctl/hooks.d/50-x'),
    args: argv,
    rootDir: h.f.dir,
  });
  // A hook directory that leads out of the root is refused before anything runs, chrooted or not.
  fs.symlinkSync('/usr/bin', h.f.tree.abs('/etc/vfioctl/out'));
  for (const hostMount of [true, false])
    assert.throws(
      () => hookCommand(new HostRoot(h.f.dir, { hostMount }), '/etc/vfioctl/out/true', input),
      /outside the root/,
    );
});

test('--root with --host-root (as options or environment) is bad input, and so is a DIR that is not a host root', async () => {
  const h = podView();
  const both = await cliArgs(['--root', h.f.dir, '--host-root', h.f.dir, 'list'], h.env);
  assert.equal(both.code, EXIT.BAD_INPUT);
  assert.match(both.stderr, /--root .* and --host-root .* both name the host root: give one/);
  const env = await cliArgs(['list'], {
    ...h.env,
    VFIOCTL_ROOT: h.f.dir,
    VFIOCTL_HOST_ROOT: h.f.dir,
  });
  assert.equal(env.code, EXIT.BAD_INPUT);
  const mixed = await cliArgs(['--host-root', h.f.dir, 'list'], {
    ...h.env,
    VFIOCTL_ROOT: h.f.dir,
  });
  assert.equal(mixed.code, EXIT.BAD_INPUT);
  // VFIOCTL_HOST_ROOT alone is --host-root.
  const viaEnv = await cliArgs(
    ['bind', NIC, '--dry-run', '--json'],
    { ...h.env, VFIOCTL_HOST_ROOT: h.f.dir },
    { kernelIo: () => h.k },
  );
  assert.match(refusalText(viaEnv, NIC).text, /carries routes/);

  const missing = await cliArgs(['--host-root', `${h.f.dir}/nope`, 'list'], h.env);
  assert.equal(missing.code, EXIT.BAD_INPUT);
  assert.match(missing.stderr, /--host-root .*\/nope: no such directory/);
  const noProc = fs.mkdtempSync('/tmp/vfioctl-hostroot-');
  try {
    const r = await cliArgs(['--host-root', noProc, 'list'], h.env);
    assert.equal(r.code, EXIT.BAD_INPUT);
    assert.match(r.stderr, /has no proc\/1: mount the host's \/ recursively/);
    // Not root's: refused unless that uid is trusted (as root, the directory is given away first).
    fs.mkdirSync(`${noProc}/proc/1`, { recursive: true });
    if (isRoot) fs.chownSync(noProc, 65534, 65534);
    const owner = await cliArgs(['--host-root', noProc, 'list'], {});
    assert.equal(owner.code, EXIT.BAD_INPUT);
    assert.match(
      owner.stderr,
      /is owned by uid \d+, not root: it must be the host's \/ mounted into the container/,
    );
  } finally {
    fs.rmSync(noProc, { recursive: true, force: true });
  }
  const file = await cliArgs(['--host-root', h.f.tree.abs('/proc/cmdline'), 'list'], h.env);
  assert.equal(file.code, EXIT.BAD_INPUT);
});

test('the library: openHost({ root, hostRoot: true }) is the same host root, validated', () => {
  const h = podView();
  const trust = { uids: [0, process.getuid!()] };
  const api = openHost({ root: h.f.dir, hostRoot: true, kernelIo: h.k, trust });
  assert.equal(api.root.hostMount, true);
  assert.equal(api.root.isRunning, true);
  const plan = api.plan({ kind: 'bind', addresses: [NIC, PODDISK] });
  assert.equal(plan.plan.devices.find((d) => d.address === NIC)!.status, 'refused');
  assert.equal(plan.plan.devices.find((d) => d.address === PODDISK)!.status, 'planned');
  assert.equal(openHost({ root: h.f.dir, kernelIo: h.k, trust }).root.hostMount, false);
  assert.throws(
    () => openHost({ root: `${h.f.dir}/nope`, hostRoot: true, trust }),
    (e: VfioctlError) => e.exitCode === EXIT.BAD_INPUT && /no such directory/.test(e.message),
  );
});

test('install under --host-root: the units run vfioctl on the host, so --exec names a path on the host, checked under DIR', async () => {
  const h = podView();
  h.config([{ match: { address: E2 }, intent: 'vfio' }]);
  const none = await runWith(h, ['--host-root', h.f.dir, 'install']);
  assert.equal(none.code, EXIT.BAD_INPUT);
  assert.match(
    none.stderr,
    /the units run vfioctl on the host at boot: give --exec PATH, its path on the host/,
  );
  assert.ok(!h.f.tree.exists('/etc/systemd/system/vfioctl-early.service'));
  // DIR/usr/local/bin/vfioctl is the host's /usr/local/bin/vfioctl: one anybody may rewrite is
  // refused.
  h.f.tree.write('/usr/local/bin/vfioctl', '#!/bin/sh\n', 0o757);
  fs.chmodSync(h.f.tree.abs('/usr/local/bin/vfioctl'), 0o757);
  const writable = await runWith(h, [
    '--host-root',
    h.f.dir,
    'install',
    '--exec',
    '/usr/local/bin/vfioctl',
  ]);
  assert.equal(writable.code, EXIT.REFUSED, writable.stderr);
  assert.match(
    writable.stderr,
    /refusing to install units that run \/usr\/local\/bin\/vfioctl as root at boot: .*writable by others/,
  );
  fs.chmodSync(h.f.tree.abs('/usr/local/bin/vfioctl'), 0o755);
  // The launcher starts the bundle beside it, which runs as root at boot as well.
  h.f.tree.write('/usr/local/bin/vfioctl.js', '// vfioctl bundle\n', 0o646);
  fs.chmodSync(h.f.tree.abs('/usr/local/bin/vfioctl.js'), 0o646);
  const bundle = await runWith(h, [
    '--host-root',
    h.f.dir,
    'install',
    '--exec',
    '/usr/local/bin/vfioctl',
  ]);
  assert.equal(bundle.code, EXIT.REFUSED, bundle.stderr);
  assert.match(
    bundle.stderr,
    /refusing to install units that run \/usr\/local\/bin\/vfioctl as root at boot: \/usr\/local\/bin\/vfioctl\.js, the program it starts: .*writable by others/,
  );
  fs.chmodSync(h.f.tree.abs('/usr/local/bin/vfioctl.js'), 0o644);
  const ok = await runWith(h, [
    '--host-root',
    h.f.dir,
    'install',
    '--exec',
    '/usr/local/bin/vfioctl',
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(
    h.f.tree.read('/etc/systemd/system/vfioctl-apply.service')!,
    /ExecStart=\/usr\/local\/bin\/vfioctl apply --boot/,
  );
});
