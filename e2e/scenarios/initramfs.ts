// The initramfs layer on a real boot (issue 20): the first boot installs vfioctl's boot layers and
// builds the guest's initramfs with Debian's own mkinitramfs (initramfs-tools, from the host's
// root like everything in the guest), configured the way an admin would in the guest's /etc:
// MODULES=list with e1000e in /etc/initramfs-tools/modules (so the initramfs loads the configured
// device's host module: the race its layer must win) and a boot script for the 9p root. The second
// boot starts from that initramfs (the host takes it from the persistent directory), which mounts
// the root and hands over to systemd as PID 1.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Scenario, ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { at, journal, unitProps, waitForBootFinished } from './boots';
import { expectOnVfio, expectUnchanged } from './common';
import { checkPersistentLayer, mapEntries, mapOf, mustRun, run, SERVICE_ENV, statusOf, type StatusJson } from './reboot';

/** e2e/guest/initramfs-tools in the repository (the guest sees the host's tree). */
const E2E_FILES = path.resolve(__dirname, '../../../e2e/guest/initramfs-tools');
const CONF = '/etc/initramfs-tools';
const MARK = 'E2E-INITRAMFS: ';

function initramfsToolsFirstBoot(ctx: ScenarioContext): void {
  const nic = ctx.dev('e1000e');
  const release = ctx.plan.kernel.release;
  const persist = ctx.plan.reboot!.persist;
  if (!fs.existsSync('/usr/sbin/mkinitramfs')) ctx.fail('/usr/sbin/mkinitramfs is missing: initramfs-tools belongs to the harness host packages (e2e/kernels.ts)');
  checkPersistentLayer(ctx);
  ctx.expectExit(ctx.cli(['set', nic, 'vfio']), 0);
  ctx.expectExit(ctx.cli(['install', '--exec', ctx.plan.vfioctl]), 0);
  ctx.eq(mapEntries(mapOf(ctx, release)), [`address ${nic} vfio-pci vfio_pci`], 'map entries');
  for (const f of [`${CONF}/hooks/vfioctl`, `${CONF}/scripts/init-top/00vfioctl`]) ctx.ok(fs.existsSync(f), `vfioctl install wrote ${f}`);

  // The guest's own initramfs configuration (its /etc, never the host's).
  fs.appendFileSync(`${CONF}/modules`, 'e1000e\nvirtio_pci\n9pnet_virtio\n9p\noverlay\n');
  fs.mkdirSync(`${CONF}/conf.d`, { recursive: true, mode: 0o755 });
  fs.writeFileSync(`${CONF}/conf.d/e2e`, 'MODULES=list\n', { mode: 0o644 });
  fs.copyFileSync(path.join(E2E_FILES, 'e2e9p'), `${CONF}/scripts/e2e9p`);
  fs.chmodSync(`${CONF}/scripts/e2e9p`, 0o644);
  fs.copyFileSync(path.join(E2E_FILES, 'hook'), `${CONF}/hooks/e2e`);
  fs.chmodSync(`${CONF}/hooks/e2e`, 0o755);

  const image = '/run/e2e-home/initrd.img';
  const built = mustRun(ctx, ['mkinitramfs', '-o', image, release], { ...SERVICE_ENV, TMPDIR: '/run/e2e-home' });
  ctx.figure(`${release}: mkinitramfs ${built.ms} ms, ${Math.round(fs.statSync(image).size / 1024)} KiB`);
  const list = run(ctx, ['lsinitramfs', image]).out.split('\n');
  const has = (re: RegExp): boolean => list.some((l) => re.test(l));
  ctx.ok(has(new RegExp(`^etc/vfioctl/boot/${release.replace(/[.+]/g, '\\$&')}\\.map$`)), 'the initramfs holds this kernel\'s map (vfioctl\'s hook)');
  ctx.ok(has(/^usr\/lib\/vfioctl\/vfioctl-early$/) && has(/^scripts\/init-top\/00vfioctl$/), 'the initramfs holds the early script and init-top/00vfioctl');
  ctx.ok(has(/\/vfio-pci\.ko/) || has(/\/vfio_pci\.ko/), 'the initramfs holds vfio-pci.ko (the map\'s module, added by vfioctl\'s hook)');
  ctx.ok(has(/\/e1000e\.ko/), 'the initramfs holds e1000e.ko (MODULES list)');
  fs.copyFileSync(image, `${persist}/initrd.img`);
  fs.writeFileSync(`${persist}/initrd.cmdline`, 'boot=e2e9p\n');
}

function initramfsToolsSecondBoot(ctx: ScenarioContext): void {
  const nic = ctx.dev('e1000e');
  const spare = ctx.dev('e1000eNic');
  const roots = sysfs.snapshot([ctx.dev('rootfs'), ctx.dev('results')]);
  ctx.eq(fs.readFileSync('/proc/1/comm', 'utf8').trim(), 'systemd', 'PID 1');
  ctx.ok(/\bboot=e2e9p\b/.test(fs.readFileSync('/proc/cmdline', 'utf8')), 'booted with boot=e2e9p (the initramfs built by mkinitramfs)');
  ctx.eq(waitForBootFinished(ctx), 'running', 'systemctl is-system-running (the boot completed, no unit failed)');

  // The kernel log, in order: what the initramfs saw before it mounted the root.
  const entries = journal(ctx).filter((e) => e._TRANSPORT === 'kernel');
  const ours = entries.filter((e) => String(e.MESSAGE).startsWith(MARK));
  ctx.note(`kernel log of the initramfs:\n${ours.map((e) => `    | ${(at(e) / 1e6).toFixed(3)}s ${String(e.MESSAGE)}`).join('\n')}`);
  const before = (a: string) => ours.find((e) => String(e.MESSAGE).startsWith(`${MARK}before the root is mounted: ${a} `));
  const mounted = ours.find((e) => String(e.MESSAGE) === `${MARK}root mounted (9p hostroot, read-only)`);
  ctx.eq(String(before(nic)?.MESSAGE ?? ''), `${MARK}before the root is mounted: ${nic} driver=vfio-pci driver_override=vfio-pci`, `${nic} in the initramfs, before the root was mounted`);
  ctx.eq(String(before(spare)?.MESSAGE ?? ''), `${MARK}before the root is mounted: ${spare} driver=e1000e driver_override=(null)`, `${spare} in the initramfs (e1000e loaded there), before the root was mounted`);
  const driverUp = entries.find((e) => /^e1000e: Intel\(R\) PRO\/1000 Network Driver/.test(String(e.MESSAGE)));
  ctx.ok(at(driverUp) <= at(before(nic)) && at(before(nic)) <= at(mounted), `kernel log order: e1000e registered (${at(driverUp)} µs) < the devices recorded (${at(before(nic))} µs) < root mounted (${at(mounted)} µs)`);

  expectOnVfio(ctx, nic, 'vfio-pci');
  ctx.eq([sysfs.driverOf(spare), sysfs.overrideOf(spare)], ['e1000e', null], `${spare} [driver, driver_override]`);
  expectUnchanged(ctx, roots, "the guest's root and results devices");
  ctx.eq(fs.readFileSync('/run/vfioctl/boot-taken', 'utf8'), `${nic} vfio-pci\n`, '/run/vfioctl/boot-taken (written in the initramfs; /run moved onto the root)');
  const late = unitProps(ctx, 'vfioctl-apply.service', ['Result', 'ExecMainStatus']);
  ctx.eq([late.Result, late.ExecMainStatus], ['success', '0'], 'vfioctl-apply.service: [Result, ExecMainStatus]');
  const s = ctx.cliJson<StatusJson>(['status', '--json']).json;
  const n = statusOf(ctx, s, nic);
  ctx.eq([n.boot?.outcome, n.drift], ['won', 'ok'], `vfioctl status ${nic}: [boot outcome, drift]`);
  ctx.figure(`${ctx.plan.kernel.release}: initramfs-tools boot: ${run(ctx, ['systemd-analyze', 'time', '--no-pager']).out.split('\n')[0]}`);
}

export const bootInitramfsTools: Scenario = {
  name: 'boot-initramfs-tools',
  title: 'boot 1: set e1000e vfio + install + mkinitramfs (e1000e in MODULES); boot 2 from that initramfs: e1000e device on vfio-pci before the root is mounted, its twin on e1000e, boot completes under systemd',
  boots: ['reboot'],
  reboot: { kernels: 'same', systemd: true },
  run(ctx) {
    if (ctx.plan.reboot?.stage === 1) initramfsToolsFirstBoot(ctx);
    else initramfsToolsSecondBoot(ctx);
  },
};
