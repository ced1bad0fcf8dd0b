// The initramfs layer on a real boot (issue 20): the first boot installs vfioctl's boot layers and
// builds the guest's initramfs with Debian's own mkinitramfs (initramfs-tools, from the host's
// root like everything in the guest), configured the way an admin would in the guest's /etc:
// MODULES=list with e1000e in /etc/initramfs-tools/modules (so the initramfs loads the configured
// device's host module: the race its layer must win) and a boot script for the 9p root. The second
// boot starts from that initramfs (the host takes it from the persistent directory), which mounts
// the root and hands over to systemd as PID 1.
import { createHash } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { DEBIAN_12_KERNELS, type Scenario, type ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { at, journal, unitProps, waitForBootFinished } from './boots';
import { expectOnVfio, expectUnchanged } from './common';
import {
  checkPersistentLayer,
  mapEntries,
  mapOf,
  mustRun,
  run,
  SERVICE_ENV,
  statusJson,
  statusOf,
} from './reboot';

/** e2e/guest/initramfs-tools in the repository (the guest sees the host's tree). */
const E2E_FILES = path.resolve(__dirname, '../../../e2e/guest/initramfs-tools');
const CONF = '/etc/initramfs-tools';
const MARK = 'E2E-INITRAMFS: ';

/**
 * The unpacked kernel's tree in the cache: guest/init bind-mounts its lib/modules/<release> on
 * /lib/modules, and mountinfo names the source directory (a path on the host's root).
 */
function kernelTree(ctx: ScenarioContext, release: string): string {
  const suffix = `/lib/modules/${release}`;
  for (const l of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const f = l.split(' ');
    if (f[4]?.endsWith(suffix) && f[3]?.endsWith(suffix)) return f[3].slice(0, -suffix.length);
  }
  return ctx.fail(`no bind mount of a kernel tree on ${suffix} in /proc/self/mountinfo`);
}

/** How one initramfs generator is set up in the guest, run, and its image read back. */
interface Tool {
  readonly name: 'initramfs-tools' | 'dracut';
  /** What vfioctl install wrote for it. */
  readonly layerFiles: readonly string[];
  /** Everything its image is made from besides the map, vfioctl's scripts and the modules. */
  readonly inputs: readonly string[];
  /** The guest's configuration of it, as an admin's (its /etc and /usr/lib overlays). */
  configure(): void;
  build(release: string, image: string): readonly string[];
  list: readonly string[];
  /** Paths the image must hold (regexps against the listing), what vfioctl's layer packs. */
  readonly packed: readonly [RegExp, string][];
  /** Kernel command-line words of the boot from the image. */
  readonly cmdline: string;
}

const GUEST_DIR = path.resolve(__dirname, '../../../e2e/guest');
const copy = (from: string, to: string, mode: number): void => {
  fs.copyFileSync(from, to);
  fs.chmodSync(to, mode);
};

const INITRAMFS_TOOLS: Tool = {
  name: 'initramfs-tools',
  layerFiles: [`${CONF}/hooks/vfioctl`, `${CONF}/scripts/init-top/00vfioctl`],
  inputs: [CONF, '/usr/share/initramfs-tools', '/usr/sbin/mkinitramfs'],
  configure() {
    // MODULES=list with e1000e: the initramfs loads the configured device's host module.
    fs.appendFileSync(`${CONF}/modules`, 'e1000e\nvirtio_pci\n9pnet_virtio\n9p\noverlay\n');
    fs.mkdirSync(`${CONF}/conf.d`, { recursive: true, mode: 0o755 });
    fs.writeFileSync(`${CONF}/conf.d/e2e`, 'MODULES=list\n', { mode: 0o644 });
    copy(path.join(E2E_FILES, 'e2e9p'), `${CONF}/scripts/e2e9p`, 0o644);
    copy(path.join(E2E_FILES, 'hook'), `${CONF}/hooks/e2e`, 0o755);
  },
  build: (release, image) => ['mkinitramfs', '-o', image, release],
  list: ['lsinitramfs'],
  packed: [
    [/^usr\/lib\/vfioctl\/vfioctl-early$/, 'the early script'],
    [/^scripts\/init-top\/00vfioctl$/, 'init-top/00vfioctl'],
    [/\/e1000e\.ko/, 'e1000e.ko (MODULES list)'],
  ],
  cmdline: 'boot=e2e9p',
};

const DRACUT_MODULES = '/usr/lib/dracut/modules.d';
const DRACUT: Tool = {
  name: 'dracut',
  layerFiles: [
    `${DRACUT_MODULES}/90vfioctl/module-setup.sh`,
    `${DRACUT_MODULES}/90vfioctl/vfioctl-pre-udev.sh`,
  ],
  inputs: ['/etc/dracut.conf', '/etc/dracut.conf.d', '/usr/lib/dracut', '/usr/bin/dracut'],
  configure() {
    // Only the modules that matter (hostonly would probe this guest's 9p root), e1000e added.
    fs.writeFileSync(
      '/etc/dracut.conf.d/e2e.conf',
      'hostonly="no"\ndracutmodules+=" base udev-rules vfioctl e2e9p "\nadd_drivers+=" e1000e "\nearly_microcode="no"\ndo_strip="no"\nhardlink="no"\n',
      { mode: 0o644 },
    );
    const m = `${DRACUT_MODULES}/95e2e9p`;
    fs.mkdirSync(m, { mode: 0o755 });
    for (const f of ['module-setup.sh', 'e2e9p-cmdline.sh', 'e2e9p-mount.sh'])
      copy(path.join(GUEST_DIR, 'dracut', f), `${m}/${f}`, 0o755);
    copy(path.join(E2E_FILES, 'e2e9p'), `${m}/e2e9p`, 0o644);
  },
  build: (release, image) => ['dracut', '--force', image, release],
  list: ['lsinitrd'],
  packed: [
    [/usr\/lib\/vfioctl\/vfioctl-early$/, 'the early script'],
    [/hooks\/pre-udev\/00-vfioctl-pre-udev\.sh$/, 'the pre-udev hook'],
    [/\/e1000e\.ko/, 'e1000e.ko (add_drivers)'],
  ],
  // dracut's init resets the environment before switch_root: this init sets $container itself.
  cmdline: `init=${path.join(GUEST_DIR, 'systemd-init.sh')}`,
};

/**
 * Every file an image is made from, hashed (paths and contents). The path of the vfioctl under
 * test (in the hooks) changes with every run and is left out: what it puts into the image (the
 * map, the early script) is hashed itself.
 */
function inputsKey(tool: Tool, release: string, vfioctl: string): string {
  const h = createHash('sha256').update(`${tool.name}\0${release}`);
  const walk = (p: string): void => {
    const st = fs.lstatSync(p, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isDirectory()) for (const n of fs.readdirSync(p).sort()) walk(path.join(p, n));
    else
      h.update(`\0${p}\0${st.mode}\0`).update(
        st.isSymbolicLink()
          ? fs.readlinkSync(p)
          : fs.readFileSync(p).toString('latin1').split(vfioctl).join('@VFIOCTL@'),
      );
  };
  for (const p of [
    ...tool.inputs,
    '/etc/vfioctl/boot',
    '/usr/lib/vfioctl',
    `/lib/modules/${release}/modules.dep`,
  ])
    walk(p);
  return h.digest('hex').slice(0, 16);
}

function firstBoot(ctx: ScenarioContext, tool: Tool): void {
  const nic = ctx.dev('e1000e');
  const release = ctx.plan.kernel.release;
  const persist = ctx.plan.reboot!.persist;
  if (
    !fs.existsSync(`/usr/sbin/${tool.build(release, '-')[0]}`) &&
    !fs.existsSync(`/usr/bin/${tool.build(release, '-')[0]}`)
  )
    ctx.fail(
      `${tool.build(release, '-')[0]} is missing: ${tool.name} belongs to the harness host packages (e2e/kernels.ts)`,
    );
  checkPersistentLayer(ctx);
  ctx.expectExit(ctx.cli(['set', nic, 'vfio']), 0);
  ctx.expectExit(ctx.cli(['install', '--exec', ctx.plan.vfioctl]), 0);
  ctx.eq(mapEntries(mapOf(ctx, release)), [`address ${nic} vfio-pci vfio_pci`], 'map entries');
  for (const f of tool.layerFiles) ctx.ok(fs.existsSync(f), `vfioctl install wrote ${f}`);
  tool.configure();

  // The generators read /boot/config-<release>; the guest's /boot is the host's (no such kernel
  // there).
  mustRun(ctx, ['mount', '--bind', `${kernelTree(ctx, release)}/boot`, '/boot']);
  // Built images are cached by their inputs (issue 20: CI time): a generator takes minutes under
  // TCG. The host stores what this boot built under the key (builtInitramfs, e2e/boot.ts); the
  // guest reads the cache through its 9p root.
  const key = inputsKey(tool, release, ctx.plan.vfioctl);
  const cached = `${kernelTree(ctx, release).replace(/\/kernels\/[^/]+\/root$/, '')}/initramfs/${key}.img`;
  let image = '/run/e2e-home/initrd.img';
  if (fs.existsSync(cached)) {
    image = cached;
    ctx.figure(`${release}: ${tool.name} image from the cache (inputs ${key})`);
  } else {
    const argv = tool.build(release, image);
    const built = run(ctx, argv, { ...SERVICE_ENV, TMPDIR: '/run/e2e-home' }, 540_000);
    if (built.code !== 0)
      ctx.fail(
        `${argv.join(' ')} failed (exit ${built.code}, ${built.ms} ms): ${built.out.slice(-1500)}`,
      );
    ctx.figure(
      `${release}: ${argv[0]} ${built.ms} ms, ${Math.round(fs.statSync(image).size / 1024)} KiB (inputs ${key})`,
    );
  }
  const r = spawnSync(tool.list[0]!, [...tool.list.slice(1), image], {
    encoding: 'utf8',
    env: SERVICE_ENV,
    maxBuffer: 64 << 20,
    timeout: 300_000,
  });
  if (r.status !== 0)
    ctx.fail(`${tool.list.join(' ')} ${image} failed (exit ${r.status}): ${r.stderr}`);
  const list = r.stdout.split('\n').map((l) => l.trim().split(/\s+/).pop() ?? '');
  const has = (re: RegExp): boolean => list.some((l) => re.test(l));
  ctx.ok(
    has(new RegExp(`etc/vfioctl/boot/${release.replace(/[.+]/g, '\\$&')}\\.map$`)),
    "the image holds this kernel's map (vfioctl's layer)",
  );
  ctx.ok(
    has(/\/vfio-pci\.ko/) || has(/\/vfio_pci\.ko/),
    "the image holds vfio-pci.ko (the map's module, added by vfioctl's layer)",
  );
  for (const [re, what] of tool.packed) ctx.ok(has(re), `the image holds ${what}`);
  fs.copyFileSync(image, `${persist}/initrd.img`);
  fs.writeFileSync(`${persist}/initrd.cmdline`, `${tool.cmdline}\n`);
  fs.writeFileSync(`${persist}/initrd.key`, `${key}\n`);
}

function secondBoot(ctx: ScenarioContext, tool: Tool): void {
  const nic = ctx.dev('e1000e');
  const spare = ctx.dev('e1000eNic');
  const roots = sysfs.snapshot([ctx.dev('rootfs'), ctx.dev('results')]);
  ctx.eq(fs.readFileSync('/proc/1/comm', 'utf8').trim(), 'systemd', 'PID 1');
  ctx.ok(
    fs.readFileSync('/proc/cmdline', 'utf8').split(/\s+/).includes(tool.cmdline),
    `booted with ${tool.cmdline} (from the image ${tool.name} built)`,
  );
  ctx.eq(
    waitForBootFinished(ctx),
    'running',
    'systemctl is-system-running (the boot completed, no unit failed)',
  );

  // The kernel log, in order: what the initramfs saw before it mounted the root.
  // journald splits a userspace record of the kernel log at "IDENTIFIER: " (our lines are such).
  const entries = journal(ctx)
    .filter((e) => e._TRANSPORT === 'kernel')
    .map((e) =>
      e.SYSLOG_IDENTIFIER === MARK.slice(0, -2)
        ? { ...e, MESSAGE: `${MARK}${String(e.MESSAGE)}` }
        : e,
    );
  const ours = entries.filter((e) => String(e.MESSAGE).startsWith(MARK));
  ctx.note(
    `kernel log of the initramfs:\n${ours.map((e) => `    | ${(at(e) / 1e6).toFixed(3)}s ${String(e.MESSAGE)}`).join('\n')}`,
  );
  const before = (a: string) =>
    ours.find((e) => String(e.MESSAGE).startsWith(`${MARK}before the root is mounted: ${a} `));
  const mounted = ours.find(
    (e) => String(e.MESSAGE) === `${MARK}root mounted (9p hostroot, read-only)`,
  );
  ctx.eq(
    String(before(nic)?.MESSAGE ?? ''),
    `${MARK}before the root is mounted: ${nic} driver=vfio-pci driver_override=vfio-pci`,
    `${nic} in the initramfs, before the root was mounted`,
  );
  ctx.eq(
    String(before(spare)?.MESSAGE ?? ''),
    `${MARK}before the root is mounted: ${spare} driver=e1000e driver_override=(null)`,
    `${spare} in the initramfs (e1000e loaded there), before the root was mounted`,
  );
  const driverUp = entries.find((e) =>
    /^e1000e: Intel\(R\) PRO\/1000 Network Driver/.test(String(e.MESSAGE)),
  );
  ctx.ok(
    at(driverUp) <= at(before(nic)) && at(before(nic)) <= at(mounted),
    `kernel log order: e1000e registered (${at(driverUp)} µs) < the devices recorded (${at(before(nic))} µs) < root mounted (${at(mounted)} µs)`,
  );

  expectOnVfio(ctx, nic, 'vfio-pci');
  ctx.eq(
    [sysfs.driverOf(spare), sysfs.overrideOf(spare)],
    ['e1000e', null],
    `${spare} [driver, driver_override]`,
  );
  expectUnchanged(ctx, roots, "the guest's root and results devices");
  ctx.eq(
    fs.readFileSync('/run/vfioctl/boot-taken', 'utf8'),
    `${nic} vfio-pci\n`,
    '/run/vfioctl/boot-taken (written in the initramfs; /run moved onto the root)',
  );
  const late = unitProps(ctx, 'vfioctl-apply.service', ['Result', 'ExecMainStatus']);
  ctx.eq(
    [late.Result, late.ExecMainStatus],
    ['success', '0'],
    'vfioctl-apply.service: [Result, ExecMainStatus]',
  );
  const s = statusJson(ctx);
  const n = statusOf(ctx, s, nic);
  ctx.eq([n.boot?.outcome, n.drift], ['won', 'ok'], `vfioctl status ${nic}: [boot outcome, drift]`);
  ctx.figure(
    `${ctx.plan.kernel.release}: ${tool.name} boot: ${run(ctx, ['systemd-analyze', 'time', '--no-pager']).out.split('\n')[0]}`,
  );
}

export const bootInitramfsTools: Scenario = {
  name: 'boot-initramfs-tools',
  title:
    'boot 1: set e1000e vfio + install + mkinitramfs (e1000e in MODULES); boot 2 from that initramfs: e1000e device on vfio-pci before the root is mounted, its twin on e1000e, boot completes under systemd',
  boots: ['reboot'],
  // Debian 12's default kernel and generator; dracut boots 6.12 (--all-pairs: both on both).
  reboot: { kernels: 'same', only: DEBIAN_12_KERNELS, byDefault: ['6.1'], systemd: true },
  run(ctx) {
    if (ctx.plan.reboot?.stage === 1) firstBoot(ctx, INITRAMFS_TOOLS);
    else secondBoot(ctx, INITRAMFS_TOOLS);
  },
};

export const bootDracut: Scenario = {
  name: 'boot-dracut',
  title:
    'boot 1: set e1000e vfio + install + dracut (e1000e in add_drivers); boot 2 from that initramfs: e1000e device on vfio-pci before the root is mounted, its twin on e1000e, boot completes under systemd',
  boots: ['reboot'],
  reboot: { kernels: 'same', only: DEBIAN_12_KERNELS, byDefault: ['6.12'], systemd: true },
  run(ctx) {
    if (ctx.plan.reboot?.stage === 1) firstBoot(ctx, DRACUT);
    else secondBoot(ctx, DRACUT);
  },
};
