// Persistence across a reboot (issue 5): the first boot of a guest saves the configuration and
// installs the boot layers; the second boot of the same guest (its /etc, /usr/lib and /var/lib kept
// on a persistent overlay, see guest/init) comes up through those layers and a real udev.
//
// The second boot does NOT run systemd as PID 1 (it was tried: on this 9p root systemd 252 takes
// ~40 s to reach basic.target under TCG, most of it in systemd-tmpfiles-setup, and it detects
// "docker" virtualisation from the shared root's /.dockerenv). Instead the runner skips its own
// coldplug and the scenario runs what systemd would, in systemd's order:
//   1. vfioctl-early.service      (DefaultDependencies=no, Before=systemd-udev-trigger.service)
//   2. systemd-udevd.service, then systemd-udev-trigger.service, then `udevadm settle`
//      (the host's own /lib/systemd/systemd-udevd, started with --daemon, and the ExecStart lines
//      of the host's own units)
//   3. vfioctl-apply.service      (After=systemd-udev-trigger.service; multi-user.target)
// Each command is taken from the ExecStart= line of the unit that would run it, and every step is
// checked in sysfs. The udev tools refuse to act in a chroot ("Running in chroot, ignoring
// request"); the runner is chrooted into the host's root, so they get SYSTEMD_IGNORE_CHROOT=1.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { Scenario, ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { GUEST_RESULTS_DIR } from '../machine';
import { expectOnVfio, expectUnchanged, resultFor, type ApplyJson } from './common';

const CONFIG = '/etc/vfioctl/vfioctl.json';
const BOOT_DIR = '/etc/vfioctl/boot';
const RULES = '/etc/udev/rules.d/60-vfioctl.rules';
const EARLY_SCRIPT = '/usr/lib/vfioctl/vfioctl-early';
const UDEV_PROBE = '/usr/lib/vfioctl/vfioctl-udev-probe';
const UNITS = '/etc/systemd/system';
const EARLY_UNIT = `${UNITS}/vfioctl-early.service`;
const LATE_UNIT = `${UNITS}/vfioctl-apply.service`;
const POSTINST_HOOK = '/etc/kernel/postinst.d/zz-vfioctl';
const STATE = '/var/lib/vfioctl/state.json';
const BOOT_STATE = '/run/vfioctl/boot.json';
/** What the early script took this boot (for the late apply). */
const BOOT_TAKEN = '/run/vfioctl/boot-taken';
/** The environment systemd gives a service (systemd 252's default PATH). */
export const SERVICE_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' };
const UDEV_ENV = { ...SERVICE_ENV, SYSTEMD_IGNORE_CHROOT: '1' };
/** Where guest/init keeps the persistent layer's upper directories while the guest runs. */
const LIVE_PERSIST = '/run/e2e-persist';
/**
 * udevd's debug log: on the guest's tmpfs while it runs, copied to the results share at the end.
 */
const UDEVD_LOG = '/run/e2e-udevd.log';

export interface StatusDevice {
  readonly address: string;
  readonly intent: string | null;
  readonly resolved: string | null;
  readonly live: { readonly driver: string | null; readonly override: string | null } | null;
  readonly lastApplied: {
    readonly driver: string | null;
    readonly kernel: string | null;
    readonly status: string;
  } | null;
  readonly boot: {
    readonly outcome: string;
    readonly driver: string | null;
    readonly hostDriverBuiltin: boolean;
  } | null;
  readonly drift: string;
  readonly detail: string;
}

export interface StatusJson {
  readonly kernel: string | null;
  readonly bootAt: string | null;
  readonly devices: readonly StatusDevice[];
}

/** `status --json`, whose exit code must be 0 when every device is `ok` and 5 (drift) otherwise. */
export function statusJson(ctx: ScenarioContext): StatusJson {
  const r = ctx.cli(['status', '--json']);
  let s: StatusJson;
  try {
    s = JSON.parse(r.stdout) as StatusJson;
  } catch {
    return ctx.fail(
      `vfioctl status --json (exit ${r.code}): stdout is not JSON:\n${r.stdout.slice(0, 2000)}${r.stderr}`,
    );
  }
  ctx.eq(
    r.code,
    s.devices.every((d) => d.drift === 'ok') ? 0 : 5,
    'vfioctl status exit code (0 when every device is ok, 5 when some drift)',
  );
  return s;
}

export interface ApplyRunJson extends ApplyJson {
  readonly skipped?: readonly { readonly address: string; readonly reason: string }[];
}

interface Ran {
  readonly code: number | null;
  readonly out: string;
  readonly ms: number;
}

/** Runs a program (not vfioctl) with an argument array; notes the command, exit code and output. */
export function run(
  ctx: ScenarioContext,
  argv: readonly string[],
  env: Record<string, string> = SERVICE_ENV,
  timeoutMs = 120_000,
): Ran {
  const t = Date.now();
  const r = spawnSync(argv[0]!, argv.slice(1), {
    encoding: 'utf8',
    env,
    timeout: timeoutMs,
    killSignal: 'SIGKILL',
  });
  const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  const res = { code: r.status, out, ms: Date.now() - t };
  ctx.note(
    `$ ${argv.join(' ')} -> ${r.error ? `error ${r.error.message}` : r.signal ? `killed by ${r.signal}` : `exit ${r.status}`} (${res.ms}ms)${
      out
        ? `\n${out
            .split('\n')
            .slice(0, 40)
            .map((l) => `    | ${l}`)
            .join('\n')}`
        : ''
    }`,
  );
  return res;
}

export function mustRun(
  ctx: ScenarioContext,
  argv: readonly string[],
  env?: Record<string, string>,
): Ran {
  const r = run(ctx, argv, env);
  if (r.code !== 0) ctx.fail(`${argv.join(' ')} failed (exit ${r.code}): ${r.out.slice(0, 1500)}`);
  return r;
}

export function read(ctx: ScenarioContext, file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (e) {
    return ctx.fail(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code}`);
  }
}

/** The command of a unit's single ExecStart= line, without systemd's prefixes (`-`, `@`, ...). */
function execStart(ctx: ScenarioContext, unit: string): string[] {
  const lines = read(ctx, unit)
    .split('\n')
    .filter((l) => l.startsWith('ExecStart='));
  if (lines.length !== 1) ctx.fail(`${unit}: expected one ExecStart= line, found ${lines.length}`);
  return lines[0]!
    .slice('ExecStart='.length)
    .replace(/^[-@:+!]+/, '')
    .trim()
    .split(/\s+/);
}

function unitKey(ctx: ScenarioContext, unit: string, key: string): string[] {
  return read(ctx, unit)
    .split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .flatMap((l) =>
      l
        .slice(key.length + 1)
        .trim()
        .split(/\s+/),
    );
}

/** Entry lines of a boot map (`kind selector driver module`), comments left out. */
export function mapEntries(text: string): string[] {
  return text.split('\n').filter((l) => l.trim() && !l.startsWith('#'));
}

export function mapOf(ctx: ScenarioContext, release: string): string {
  return read(ctx, `${BOOT_DIR}/${release}.map`);
}

/** The lines of the udev rule's section for one kernel (from its SYSCTL{kernel/osrelease} jump). */
function rulesSection(ctx: ScenarioContext, rules: string, release: string): string[] {
  const lines = rules.split('\n');
  const jump = lines.find((l) => l.startsWith(`SYSCTL{kernel/osrelease}=="${release}"`));
  const label = jump && /GOTO="([^"]+)"/.exec(jump)?.[1];
  if (!label) ctx.fail(`${RULES} has no SYSCTL{kernel/osrelease}=="${release}" section:\n${rules}`);
  const start = lines.indexOf(`LABEL="${label}"`);
  const end = lines.findIndex((l, i) => i > start && l.startsWith('LABEL='));
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

/** The rule line for one address writes this driver into driver_override. */
function ruleSets(lines: readonly string[], address: string, driver: string): boolean {
  return lines.some(
    (l) => l.startsWith(`KERNEL=="${address}",`) && l.includes(`ATTR{driver_override}="${driver}"`),
  );
}

function configuredAddresses(ctx: ScenarioContext): { address: string; intent: string }[] {
  const c = JSON.parse(read(ctx, CONFIG)) as {
    rules: { match: { address?: string }; intent?: string }[];
  };
  return c.rules.map((r) => ({ address: r.match.address ?? '?', intent: r.intent ?? '?' }));
}

function lastApplied(
  ctx: ScenarioContext,
): Record<string, { driver: string | null; kernel: string | null; status: string }> {
  return (
    JSON.parse(read(ctx, STATE)) as {
      devices: Record<string, { driver: string | null; kernel: string | null; status: string }>;
    }
  ).devices;
}

function mounts(): { point: string; fstype: string; options: string }[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => {
      const [pre, post = ''] = l.split(' - ');
      const f = post.split(' ');
      return { point: pre!.split(' ')[4]!, fstype: f[0]!, options: f[2] ?? '' };
    });
}

/**
 * /etc, /usr/lib and /var/lib are overlays whose upper directories hold the persistent layer
 * (restored by /init from the copy on the results share, saved back at power-off).
 */
export function checkPersistentLayer(ctx: ScenarioContext): void {
  if (!ctx.plan.reboot) ctx.fail('not a reboot boot');
  const all = mounts();
  for (const p of ['/etc', '/usr/lib', '/var/lib']) {
    const m = [...all].reverse().find((x) => x.point === p);
    ctx.ok(
      m?.fstype === 'overlay' && m.options.includes(`${LIVE_PERSIST}/`),
      `${p} is an overlay with its upper directory under ${LIVE_PERSIST} (${m ? `${m.fstype} ${m.options}` : 'not a mount point'})`,
    );
  }
}

/** Variant the modern virtio-net resolves to on a kernel (Linux 6.1 predates virtio_vfio_pci). */
function virtioTarget(variants: readonly string[]): { driver: string; module: string } {
  return variants.includes('virtio_vfio_pci')
    ? { driver: 'virtio_vfio_pci', module: 'virtio_vfio_pci' }
    : { driver: 'vfio-pci', module: 'vfio_pci' };
}

function status(ctx: ScenarioContext): StatusJson {
  const s = statusJson(ctx);
  ctx.note(
    `status: bootAt=${s.bootAt} ${s.devices.map((d) => `${d.address} ${d.drift} (${d.detail}) boot=${JSON.stringify(d.boot)}`).join('; ')}`,
  );
  return s;
}

export function statusOf(ctx: ScenarioContext, s: StatusJson, address: string): StatusDevice {
  return (
    s.devices.find((d) => d.address === address) ??
    ctx.fail(`vfioctl status has no row for ${address}: ${JSON.stringify(s).slice(0, 800)}`)
  );
}

/** The unit files and scripts `vfioctl install` wrote, as systemd and udev would find them. */
export function checkInstalledLayers(ctx: ScenarioContext): void {
  ctx.eq(execStart(ctx, EARLY_UNIT), [EARLY_SCRIPT], `${EARLY_UNIT} ExecStart`);
  ctx.eq(
    unitKey(ctx, EARLY_UNIT, 'DefaultDependencies'),
    ['no'],
    `${EARLY_UNIT} DefaultDependencies`,
  );
  ctx.ok(
    unitKey(ctx, EARLY_UNIT, 'Before').includes('systemd-udev-trigger.service'),
    `${EARLY_UNIT} runs before systemd-udev-trigger.service`,
  );
  ctx.eq(
    execStart(ctx, LATE_UNIT),
    [ctx.plan.vfioctl, 'apply', '--boot'],
    `${LATE_UNIT} ExecStart`,
  );
  ctx.ok(
    unitKey(ctx, LATE_UNIT, 'After').includes('systemd-udev-trigger.service'),
    `${LATE_UNIT} runs after systemd-udev-trigger.service`,
  );
  ctx.eq(
    fs.readlinkSync(`${UNITS}/sysinit.target.wants/vfioctl-early.service`),
    '../vfioctl-early.service',
    'vfioctl-early.service is enabled (sysinit.target.wants)',
  );
  ctx.eq(
    fs.readlinkSync(`${UNITS}/multi-user.target.wants/vfioctl-apply.service`),
    '../vfioctl-apply.service',
    'vfioctl-apply.service is enabled (multi-user.target.wants)',
  );
  for (const f of [EARLY_SCRIPT, UDEV_PROBE, POSTINST_HOOK]) {
    const st = fs.statSync(f);
    ctx.ok(
      st.uid === 0 && (st.mode & 0o7777) === 0o755,
      `${f}: root-owned, mode ${(st.mode & 0o7777).toString(8)}`,
    );
  }
}

/** systemd-udevd as systemd-udevd.service starts it (plus --daemon, and --debug for the record). */
function startUdevd(ctx: ScenarioContext): void {
  const argv = [
    ...execStart(ctx, '/lib/systemd/system/systemd-udevd.service'),
    '--daemon',
    '--debug',
  ];
  const log = fs.openSync(UDEVD_LOG, 'w');
  try {
    // Output to a file, not a pipe: the daemon keeps its stdio, and a pipe would keep spawnSync
    // waiting.
    const r = spawnSync(argv[0]!, argv.slice(1), {
      env: UDEV_ENV,
      stdio: ['ignore', log, log],
      timeout: 30_000,
    });
    ctx.note(
      `$ ${argv.join(' ')} -> exit ${r.status} (debug log: ${UDEVD_LOG}, copied to the results share)`,
    );
    if (r.status !== 0)
      ctx.fail(
        `systemd-udevd did not start (exit ${r.status}): ${fs.readFileSync(UDEVD_LOG, 'utf8').slice(-1500)}`,
      );
  } finally {
    fs.closeSync(log);
  }
}

function stopUdevd(ctx: ScenarioContext): void {
  run(ctx, ['udevadm', 'control', '--exit'], UDEV_ENV);
  try {
    fs.copyFileSync(UDEVD_LOG, `${GUEST_RESULTS_DIR}/udevd-debug.log`);
  } catch {
    /* nothing logged */
  }
}

/** What udevd logged about one device, in order: our rule, the module loads, the probe helper. */
function udevTrail(address: string, since = 0): string[] {
  let text = '';
  try {
    text = fs.readFileSync(UDEVD_LOG, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .slice(since)
    .filter(
      (l) =>
        l.startsWith(`${address}:`) &&
        /60-vfioctl|80-drivers|kmod load|vfioctl-udev-probe|Processing device|Device processed/.test(
          l,
        ),
    );
}

function udevLogLines(): number {
  try {
    return fs.readFileSync(UDEVD_LOG, 'utf8').split('\n').length - 1;
  } catch {
    return 0;
  }
}

/**
 * Coldplug as systemd-udev-trigger.service does it, then wait for the queue (udevadm settle, as
 * systemd-udev-settle.service). Returns how long it took.
 */
function coldplugWithUdev(ctx: ScenarioContext): number {
  const t = Date.now();
  mustRun(ctx, execStart(ctx, '/lib/systemd/system/systemd-udev-trigger.service'), UDEV_ENV);
  mustRun(ctx, execStart(ctx, '/lib/systemd/system/systemd-udev-settle.service'), UDEV_ENV);
  return Date.now() - t;
}

/** The late unit's command, as systemd runs it (the bundle's shebang finds node on PATH). */
function lateApply(ctx: ScenarioContext): Ran {
  const r = run(ctx, execStart(ctx, LATE_UNIT));
  if (r.code !== 0)
    ctx.fail(
      `vfioctl-apply.service (${execStart(ctx, LATE_UNIT).join(' ')}) failed: exit ${r.code}`,
    );
  return r;
}

/** The boot layers are on the persistent layer and this boot has not touched anything yet. */
function checkKept(ctx: ScenarioContext, kernels: readonly string[]): void {
  checkPersistentLayer(ctx);
  ctx.ok(fs.existsSync(CONFIG), `${CONFIG} survived the reboot`);
  for (const k of kernels)
    ctx.ok(fs.existsSync(`${BOOT_DIR}/${k}.map`), `${BOOT_DIR}/${k}.map survived the reboot`);
  ctx.ok(fs.existsSync(RULES), `${RULES} survived the reboot`);
  ctx.ok(fs.existsSync(STATE), `${STATE} survived the reboot`);
  checkInstalledLayers(ctx);
  ctx.ok(!fs.existsSync(BOOT_STATE), `no ${BOOT_STATE} yet (/run is new every boot)`);
}

// ---------------------------------------------------------------------------------------------
// reboot-same-kernel

function sameKernelFirstBoot(ctx: ScenarioContext): void {
  const nic = ctx.dev('e1000e');
  const spare = ctx.dev('e1000eNic');
  const virtio = ctx.dev('virtioNetModern');
  const release = ctx.plan.kernel.release;
  const v = virtioTarget(ctx.plan.kernel.variants);

  checkPersistentLayer(ctx);
  ctx.ok(
    !fs.existsSync('/etc/vfioctl') && !fs.existsSync(STATE),
    'a fresh persistent layer: no /etc/vfioctl, no state yet',
  );
  ctx.eq(sysfs.driverOf(nic), 'e1000e', `${nic} driver after the first boot's coldplug`);
  ctx.eq(sysfs.driverOf(spare), 'e1000e', `${spare} driver after the first boot's coldplug`);

  const a = ctx.cliJson<ApplyJson>(['set', nic, 'vfio', '--json']).json;
  ctx.eq(resultFor(ctx, a, nic).status, 'ok', `set ${nic} vfio: status`);
  expectOnVfio(ctx, nic, 'vfio-pci');
  const b = ctx.cliJson<ApplyJson>(['set', virtio, 'vfio', '--json']).json;
  ctx.eq(resultFor(ctx, b, virtio).status, 'ok', `set ${virtio} vfio: status`);
  expectOnVfio(ctx, virtio, v.driver);
  ctx.eq(
    configuredAddresses(ctx),
    [
      { address: nic, intent: 'vfio' },
      { address: virtio, intent: 'vfio' },
    ],
    `${CONFIG} rules`,
  );

  const inst = ctx.cli(['install', '--exec', ctx.plan.vfioctl]);
  ctx.expectExit(inst, 0);
  ctx.note(`install output:\n${inst.stdout.trim().replace(/^/gm, '    | ')}`);

  const map = mapOf(ctx, release);
  ctx.note(`${BOOT_DIR}/${release}.map:\n${map.trim().replace(/^/gm, '    | ')}`);
  ctx.eq(
    mapEntries(map),
    [`address ${nic} vfio-pci vfio_pci`, `address ${virtio} ${v.driver} ${v.module}`],
    `${release}.map entries`,
  );
  ctx.ok(!map.includes(spare), `${spare} (not configured) is not in the map`);
  const rules = read(ctx, RULES);
  ctx.note(`${RULES}:\n${rules.trim().replace(/^/gm, '    | ')}`);
  const section = rulesSection(ctx, rules, release);
  ctx.ok(
    ruleSets(section, nic, 'vfio-pci'),
    `the udev rule's ${release} section sets ${nic}'s override to vfio-pci`,
  );
  ctx.ok(
    ruleSets(section, virtio, v.driver),
    `the udev rule's ${release} section sets ${virtio}'s override to ${v.driver}`,
  );
  ctx.ok(!rules.includes(spare), `${spare} is not in the udev rule`);
  checkInstalledLayers(ctx);
  const applied = lastApplied(ctx);
  ctx.eq(
    [applied[nic]?.driver, applied[virtio]?.driver],
    ['vfio-pci', v.driver],
    `${STATE}: the drivers the last apply chose`,
  );
}

/**
 * A hotplugged device goes through udev alone: with e1000e unloaded, remove 00:02.0 and rescan.
 * The kernel's own probe at device_add finds no driver (vfio-pci matches only an override), so
 * the device waits for udev: our rule writes the override, the probe helper binds it; the same
 * event's `kmod load` (80-drivers.rules) loads e1000e, which takes the other, unconfigured e1000e.
 */
function hotplugThroughUdev(ctx: ScenarioContext, nic: string, spare: string): void {
  ctx.ok(
    sysfs.moduleLoaded('vfio_pci'),
    "vfio_pci is loaded before the hotplug (the rule's kmod load of it will bind nothing)",
  );
  mustRun(ctx, ['modprobe', '-r', 'e1000e']);
  ctx.eq(sysfs.driverOf(spare), null, `${spare} driver after modprobe -r e1000e`);
  ctx.eq(sysfs.write(`${sysfs.PCI_DEVICES}/${nic}/remove`, '1'), null, `write 1 > ${nic}/remove`);
  ctx.ok(!sysfs.exists(nic), `${nic} is gone`);
  const from = udevLogLines();
  mustRun(ctx, execStart(ctx, '/lib/systemd/system/systemd-udev-settle.service'), UDEV_ENV);
  ctx.eq(sysfs.write('/sys/bus/pci/rescan', '1'), null, 'write 1 > /sys/bus/pci/rescan');
  mustRun(ctx, execStart(ctx, '/lib/systemd/system/systemd-udev-settle.service'), UDEV_ENV);
  const trail = udevTrail(nic, from);
  ctx.note(`udevd on the hotplugged ${nic}:\n${trail.map((l) => `    | ${l}`).join('\n')}`);
  ctx.eq(
    [sysfs.driverOf(nic), sysfs.overrideOf(nic)],
    ['vfio-pci', 'vfio-pci'],
    `hotplugged ${nic}: [driver, driver_override] (udev rule alone)`,
  );
  ctx.eq(
    sysfs.driverOf(spare),
    'e1000e',
    `${spare} driver (e1000e, loaded by the same event's kmod load)`,
  );
  const ours = trail.findIndex((l) => /60-vfioctl\.rules:\d+ ATTR .*driver_override/.test(l));
  const kmod = trail.findIndex((l) => /80-drivers\.rules:\d+ RUN 'kmod load'/.test(l));
  ctx.ok(
    ours >= 0 && kmod > ours,
    `udevd wrote the override (60-vfioctl.rules) before queuing 80-drivers.rules' kmod load (lines ${ours} < ${kmod})`,
  );
}

/**
 * The guest's root device configured on purpose: install leaves it out of the map, and
 * `apply --boot` refuses it. The dry run comes first; the real late apply runs only if the dry
 * run refused it, so the root is never pulled from under the guest.
 */
function rootDeviceRefusedAtBoot(ctx: ScenarioContext): void {
  const root = ctx.dev('rootfs');
  const release = ctx.plan.kernel.release;
  const before = sysfs.snapshot([root, ctx.dev('results')]);
  ctx.expectExit(ctx.cli(['set', root, 'vfio', '--noprobe']), 0);
  const map = mapOf(ctx, release);
  ctx.ok(
    !mapEntries(map).some((l) => l.includes(root)),
    `${root} (the guest's root, root=hostroot) has no map entry`,
  );
  const skipped = map.split('\n').find((l) => l.startsWith(`# skipped ${root}:`));
  ctx.ok(skipped !== undefined, `the map says why ${root} is left out: ${skipped}`);
  ctx.ok(!read(ctx, RULES).includes(root), `${root} is not in the udev rule`);

  const refusedIn = (j: ApplyRunJson): string | null => {
    const r = j.results?.find((x) => x.address === root);
    if (r)
      return r.status === 'refused' ? `refused: ${JSON.stringify(r.refusals ?? r.error)}` : null;
    const s = j.skipped?.find((x) => x.address === root);
    return s ? `skipped: ${s.reason}` : null;
  };
  const dry = ctx.cli(['apply', '--boot', '--dry-run', '--json']);
  const dj = JSON.parse(dry.stdout) as ApplyRunJson;
  const why = refusedIn(dj);
  if (why === null)
    ctx.fail(
      `apply --boot --dry-run (exit ${dry.code}) would not refuse ${root}; the real apply is not run:\n${dry.stdout.slice(0, 1500)}`,
    );
  ctx.note(`apply --boot --dry-run: exit ${dry.code}, ${root} ${why}`);
  const others = (dj.results ?? []).filter((r) => r.address !== root && r.status !== 'noop');
  ctx.eq(
    others.map((r) => `${r.address} ${r.status}`),
    [],
    'apply --boot --dry-run: nothing else to do',
  );

  const real = ctx.cli(['apply', '--boot', '--json']);
  const rj = JSON.parse(real.stdout) as ApplyRunJson;
  ctx.ok(refusedIn(rj) !== null, `apply --boot (exit ${real.code}): ${root} ${refusedIn(rj)}`);
  expectUnchanged(ctx, before, `the guest's root and results devices after apply --boot`);

  ctx.expectExit(ctx.cli(['unset', root, '--noprobe']), 0);
  ctx.ok(
    !mapOf(ctx, release).includes(root),
    `after unset --noprobe the map no longer mentions ${root}`,
  );
  const s = statusJson(ctx);
  const left = s.devices.find((d) => d.address === root);
  ctx.note(
    `status of ${root} after unset --noprobe: ${left ? `${left.drift} (${left.detail})` : 'no row'}`,
  );
  // What a plain apply would now do to the root device (dry run only).
  const after = ctx.cli(['apply', '--dry-run', '--json']);
  const aj = JSON.parse(after.stdout) as ApplyRunJson;
  const planned = (aj.results ?? []).filter((r) => r.address === root);
  ctx.note(
    `apply --dry-run after unset: exit ${after.code}; ${root}: ${planned.map((r) => `${r.status} ${r.steps.map((x) => x.op).join('>')}`).join(', ') || 'nothing'}`,
  );
  ctx.ok(planned.length === 0, `a plain apply would not touch ${root} after unset --noprobe`);
  ctx.expectExit(ctx.cli(['apply']), 0);
  const later = statusJson(ctx).devices.find((d) => d.address === root);
  // Refused, then unconfigured: nothing was ever applied to it, so status has nothing to say.
  ctx.ok(
    later === undefined,
    `status of ${root} after a real apply: ${later ? `${later.drift} (${later.detail})` : 'no row'}`,
  );
  expectUnchanged(ctx, before, `the guest's root and results devices at the end`);
}

function sameKernelSecondBoot(ctx: ScenarioContext): void {
  const nic = ctx.dev('e1000e');
  const spare = ctx.dev('e1000eNic');
  const virtio = ctx.dev('virtioNetModern');
  const release = ctx.plan.kernel.release;
  const v = virtioTarget(ctx.plan.kernel.variants);
  const virtioBuiltin = read(ctx, `/lib/modules/${release}/modules.builtin`)
    .split('\n')
    .some((l) => l.endsWith('/virtio_pci.ko'));
  const roots = sysfs.snapshot([ctx.dev('rootfs'), ctx.dev('results')]);

  checkKept(ctx, [release]);
  // Where the boot stands: the kernel and the initramfs ran, nothing else (no coldplug yet).
  ctx.ok(!sysfs.moduleLoaded('e1000e'), 'e1000e is not loaded yet');
  ctx.eq(
    [sysfs.driverOf(nic), sysfs.driverOf(spare)],
    [null, null],
    `[${nic}, ${spare}] drivers before the boot layers`,
  );
  ctx.eq(
    sysfs.driverOf(virtio),
    'virtio-pci',
    `${virtio} driver before the boot layers (virtio_pci ${virtioBuiltin ? 'built in' : 'loaded by the initramfs for the 9p root'})`,
  );

  // 1. vfioctl-early.service
  const early = mustRun(ctx, execStart(ctx, EARLY_UNIT));
  ctx.figure(`${release}: vfioctl-early ${early.ms} ms`);
  ctx.eq(
    [sysfs.driverOf(nic), sysfs.overrideOf(nic)],
    ['vfio-pci', 'vfio-pci'],
    `${nic} [driver, driver_override] after vfioctl-early (won before coldplug)`,
  );
  ctx.eq(
    [sysfs.driverOf(spare), sysfs.overrideOf(spare)],
    [null, null],
    `${spare} [driver, driver_override] after vfioctl-early`,
  );
  ctx.ok(!sysfs.moduleLoaded('e1000e'), 'e1000e is still not loaded');
  ctx.eq(
    [sysfs.driverOf(virtio), sysfs.overrideOf(virtio)],
    ['virtio-pci', null],
    `${virtio} [driver, driver_override] after vfioctl-early (bound already: left to the late apply)`,
  );
  ctx.note(
    `${BOOT_TAKEN}: ${fs.existsSync(BOOT_TAKEN) ? JSON.stringify(fs.readFileSync(BOOT_TAKEN, 'utf8')) : 'absent'}`,
  );

  // 2. systemd-udevd + systemd-udev-trigger (+ settle)
  startUdevd(ctx);
  try {
    const ms = coldplugWithUdev(ctx);
    ctx.figure(`${release}: udev coldplug (trigger + settle) ${ms} ms`);
    const nicTrail = udevTrail(nic);
    ctx.note(`udevd on ${nic} during coldplug:\n${nicTrail.map((l) => `    | ${l}`).join('\n')}`);
    ctx.note(
      `udevd on ${virtio} during coldplug:\n${udevTrail(virtio)
        .map((l) => `    | ${l}`)
        .join('\n')}`,
    );
    ctx.eq(
      [sysfs.driverOf(nic), sysfs.overrideOf(nic)],
      ['vfio-pci', 'vfio-pci'],
      `${nic} [driver, driver_override] after the udev coldplug`,
    );
    ctx.ok(sysfs.moduleLoaded('e1000e'), 'the coldplug loaded e1000e');
    ctx.eq(
      [sysfs.driverOf(spare), sysfs.overrideOf(spare)],
      ['e1000e', null],
      `${spare} (not configured) [driver, driver_override] after the same coldplug`,
    );
    ctx.eq(sysfs.netdevsOf(spare).length, 1, `${spare} has its interface`);
    // The rule leaves a device a driver already has alone (TEST!="driver"): the one the early unit
    // bound, and the one virtio-pci holds; the late apply takes the latter.
    ctx.eq(
      [sysfs.driverOf(virtio), sysfs.overrideOf(virtio)],
      ['virtio-pci', null],
      `${virtio} [driver, driver_override] after the udev coldplug`,
    );
    ctx.ok(
      !nicTrail.some((l) => /60-vfioctl\.rules:\d+ ATTR/.test(l)),
      `udevd wrote nothing for ${nic} (bound by the early unit) from 60-vfioctl.rules`,
    );
    ctx.ok(
      nicTrail.some((l) => /80-drivers\.rules:\d+ RUN 'kmod load'/.test(l)),
      `udevd ran 80-drivers.rules' kmod load for ${nic} (that loaded e1000e)`,
    );
    const before = status(ctx);
    ctx.eq(before.bootAt, null, 'status before the late unit: no boot record yet this boot');

    // 3. vfioctl-apply.service
    const late = lateApply(ctx);
    ctx.figure(`${release}: vfioctl apply --boot ${late.ms} ms`);
    expectOnVfio(ctx, virtio, v.driver);
    expectOnVfio(ctx, nic, 'vfio-pci');
    ctx.eq(
      [sysfs.driverOf(spare), sysfs.overrideOf(spare)],
      ['e1000e', null],
      `${spare} after the late apply`,
    );

    const s = status(ctx);
    ctx.ok(s.bootAt !== null, `status: the boot record is of this boot (${s.bootAt})`);
    const n = statusOf(ctx, s, nic);
    ctx.eq(
      [n.boot?.outcome, n.drift, n.live?.driver],
      ['won', 'ok', 'vfio-pci'],
      `status ${nic}: [boot outcome, drift, live driver]`,
    );
    const w = statusOf(ctx, s, virtio);
    ctx.eq(
      [w.boot?.outcome, w.boot?.driver, w.boot?.hostDriverBuiltin, w.drift, w.live?.driver],
      ['host-first', 'virtio-pci', virtioBuiltin, 'ok', v.driver],
      `status ${virtio}: [boot outcome, host driver at boot, built in, drift, live driver]`,
    );
    ctx.ok(
      !s.devices.some((d) => d.address === spare),
      `status does not list ${spare} (not configured)`,
    );
    const text = ctx.cli(['status']);
    ctx.note(`vfioctl status:\n${text.stdout.trim().replace(/^/gm, '    | ')}`);
    ctx.ok(
      text.stdout.includes('host driver had it first (virtio-pci'),
      'status (text) says the host driver had the virtio device first',
    );
    expectUnchanged(ctx, roots, "the guest's root and results devices after the boot layers");

    hotplugThroughUdev(ctx, nic, spare);
    rootDeviceRefusedAtBoot(ctx);
  } finally {
    stopUdevd(ctx);
  }
}

export const rebootSameKernel: Scenario = {
  name: 'reboot-same-kernel',
  title:
    'boot 1: set + install; boot 2 (early unit, real udev coldplug, late apply): e1000e won at boot, the other e1000e on e1000e, virtio host-first then taken',
  boots: ['reboot'],
  // 5.10 (Debian 11's kernel, before vfio-pci's ID table) and 6.12; 6.1 reboots in the
  // kernel-change pair and the boot-* pairs.
  reboot: { kernels: 'same', byDefault: ['5.10', '6.12'] },
  run(ctx) {
    if (ctx.plan.reboot?.stage === 1) sameKernelFirstBoot(ctx);
    else sameKernelSecondBoot(ctx);
  },
};

// ---------------------------------------------------------------------------------------------
// reboot-kernel-change: 6.1 -> 6.12

function kernelChangeFirstBoot(ctx: ScenarioContext): void {
  const virtio = ctx.dev('virtioNetModern');
  const reboot = ctx.plan.reboot!;
  const release = ctx.plan.kernel.release;
  const next = reboot.other.release;
  const now = virtioTarget(ctx.plan.kernel.variants);
  const later = virtioTarget(reboot.other.variants);
  if (now.driver === later.driver)
    ctx.skip(
      `${virtio} resolves to ${now.driver} on both ${release} and ${next}: no change to follow`,
    );

  checkPersistentLayer(ctx);
  ctx.ok(!fs.existsSync('/etc/vfioctl'), 'a fresh persistent layer');
  ctx.eq(fs.readdirSync('/lib/modules').sort(), [release], 'kernels installed (/lib/modules)');
  const set = ctx.cliJson<ApplyJson>(['set', virtio, 'vfio', '--json']).json;
  ctx.eq(resultFor(ctx, set, virtio).status, 'ok', `set ${virtio} vfio: status`);
  expectOnVfio(ctx, virtio, now.driver);
  ctx.expectExit(ctx.cli(['install', '--exec', ctx.plan.vfioctl]), 0);
  ctx.eq(
    fs.readdirSync(BOOT_DIR).sort(),
    [`${release}.json`, `${release}.map`],
    `${BOOT_DIR} before ${next} is installed (each map with its JSON)`,
  );
  ctx.eq(
    mapEntries(mapOf(ctx, release)),
    [`address ${virtio} ${now.driver} ${now.module}`],
    `${release}.map entries`,
  );

  // The new kernel's package is installed: its modules appear under /lib/modules, then Debian's
  // kernel postinst runs /etc/kernel/postinst.d/* with the version and the image's path.
  fs.mkdirSync(`/lib/modules/${next}`);
  mustRun(ctx, ['mount', '--bind', reboot.otherModules, `/lib/modules/${next}`]);
  mustRun(ctx, [POSTINST_HOOK, next, `/boot/vmlinuz-${next}`]);
  ctx.eq(
    fs.readdirSync(BOOT_DIR).sort(),
    [`${release}.json`, `${release}.map`, `${next}.json`, `${next}.map`].sort(),
    `${BOOT_DIR} after the postinst hook`,
  );
  const nextMap = mapOf(ctx, next);
  ctx.note(`${BOOT_DIR}/${next}.map:\n${nextMap.trim().replace(/^/gm, '    | ')}`);
  ctx.eq(
    mapEntries(nextMap),
    [`address ${virtio} ${later.driver} ${later.module}`],
    `${next}.map entries (resolved against ${next}'s modules)`,
  );
  ctx.eq(
    mapEntries(mapOf(ctx, release)),
    [`address ${virtio} ${now.driver} ${now.module}`],
    `${release}.map entries (kept)`,
  );
  const rules = read(ctx, RULES);
  ctx.note(`${RULES}:\n${rules.trim().replace(/^/gm, '    | ')}`);
  ctx.ok(
    ruleSets(rulesSection(ctx, rules, release), virtio, now.driver),
    `udev rule, ${release} section: ${virtio} -> ${now.driver}`,
  );
  ctx.ok(
    ruleSets(rulesSection(ctx, rules, next), virtio, later.driver),
    `udev rule, ${next} section: ${virtio} -> ${later.driver}`,
  );
  const applied = lastApplied(ctx)[virtio];
  ctx.eq(
    [applied?.driver, applied?.kernel],
    [now.driver, release],
    `${STATE}: ${virtio} [driver, kernel] of the last apply`,
  );
  checkInstalledLayers(ctx);
}

function kernelChangeSecondBoot(ctx: ScenarioContext): void {
  const virtio = ctx.dev('virtioNetModern');
  const reboot = ctx.plan.reboot!;
  const release = ctx.plan.kernel.release;
  const previous = reboot.other.release;
  const before = virtioTarget(reboot.other.variants);
  const now = virtioTarget(ctx.plan.kernel.variants);
  const roots = sysfs.snapshot([ctx.dev('rootfs'), ctx.dev('results')]);

  ctx.eq(
    fs.readdirSync('/lib/modules').sort(),
    [previous, release].sort(),
    'kernels installed (/lib/modules)',
  );
  checkKept(ctx, [previous, release]);
  ctx.eq(sysfs.driverOf(virtio), 'virtio-pci', `${virtio} driver before the boot layers`);

  mustRun(ctx, execStart(ctx, EARLY_UNIT));
  ctx.eq(
    [sysfs.driverOf(virtio), sysfs.overrideOf(virtio)],
    ['virtio-pci', null],
    `${virtio} [driver, driver_override] after vfioctl-early`,
  );
  startUdevd(ctx);
  try {
    coldplugWithUdev(ctx);
    ctx.note(
      `udevd on ${virtio} during coldplug:\n${udevTrail(virtio)
        .map((l) => `    | ${l}`)
        .join('\n')}`,
    );
    ctx.eq(
      [sysfs.driverOf(virtio), sysfs.overrideOf(virtio)],
      ['virtio-pci', null],
      `${virtio} [driver, driver_override] after the udev coldplug (bound: the rule leaves it alone)`,
    );

    // Before the late unit: status tells the resolution changed with the kernel.
    const s1 = status(ctx);
    const d1 = statusOf(ctx, s1, virtio);
    ctx.eq(
      [d1.drift, d1.resolved, d1.lastApplied?.driver, d1.lastApplied?.kernel, d1.live?.driver],
      ['kernel-changed', now.driver, before.driver, previous, 'virtio-pci'],
      `status ${virtio} before the late apply: [drift, resolves to now, last apply's driver, its kernel, live driver]`,
    );
    ctx.note(`detail: ${d1.detail}`);

    lateApply(ctx);
    expectOnVfio(ctx, virtio, now.driver);
    const s2 = status(ctx);
    const d2 = statusOf(ctx, s2, virtio);
    ctx.eq(
      [
        d2.drift,
        d2.lastApplied?.driver,
        d2.lastApplied?.kernel,
        d2.boot?.outcome,
        d2.boot?.hostDriverBuiltin,
      ],
      ['ok', now.driver, release, 'host-first', true],
      `status ${virtio} after the late apply: [drift, last apply's driver, its kernel, boot outcome, host driver built in]`,
    );
    const again = ctx.cliJson<ApplyRunJson>(['apply', '--json']).json;
    ctx.eq(
      (again.results ?? [])
        .filter((r) => r.status !== 'noop')
        .map((r) => `${r.address} ${r.status}`),
      [],
      'vfioctl apply afterwards: nothing left to do',
    );
    expectOnVfio(ctx, virtio, now.driver);
    udevOnUnclaimedDevice(ctx, virtio, release, now.driver);
    expectUnchanged(ctx, roots, "the guest's root and results devices");
  } finally {
    stopUdevd(ctx);
  }
}

/**
 * Which section of the two-kernel rule udev uses, shown on an unclaimed device: the virtio device
 * is unbound and its override cleared, then udev gets the same `add` event coldplug sends
 * (`udevadm trigger --action=add DEVICE`). The rule's section for the running kernel writes the
 * override, and the probe helper binds it (the VFIO module is loaded already).
 * (A removed and rescanned virtio device cannot show it: virtio-pci is built in and the PCI core
 * binds a rescanned device before udev sees it, even with /sys/bus/pci/drivers_autoprobe at 0.)
 */
function udevOnUnclaimedDevice(
  ctx: ScenarioContext,
  address: string,
  release: string,
  driver: string,
): void {
  const dir = `${sysfs.PCI_DEVICES}/${address}`;
  const was = sysfs.driverOf(address);
  ctx.eq(sysfs.write(`${dir}/driver/unbind`, address), null, `unbind ${address} from ${was}`);
  ctx.eq(sysfs.write(`${dir}/driver_override`, '\n'), null, `clear ${address}'s driver_override`);
  ctx.eq(
    [sysfs.driverOf(address), sysfs.overrideOf(address)],
    [null, null],
    `${address} [driver, driver_override] before the add event`,
  );
  const from = udevLogLines();
  mustRun(ctx, ['udevadm', 'trigger', '--action=add', dir], UDEV_ENV);
  mustRun(ctx, execStart(ctx, '/lib/systemd/system/systemd-udev-settle.service'), UDEV_ENV);
  const trail = udevTrail(address, from);
  ctx.note(`udevd on ${address}:\n${trail.map((l) => `    | ${l}`).join('\n')}`);
  ctx.ok(
    trail.some(
      (l) =>
        /60-vfioctl\.rules:\d+ ATTR .*driver_override/.test(l) && l.includes(`writing '${driver}'`),
    ),
    `udevd wrote '${driver}' from 60-vfioctl.rules (the SYSCTL{kernel/osrelease}=="${release}" section, not the other kernel's)`,
  );
  ctx.eq(
    [sysfs.driverOf(address), sysfs.overrideOf(address)],
    [driver, driver],
    `${address} [driver, driver_override] after the add event (udev rule alone)`,
  );
}

export const rebootKernelChange: Scenario = {
  name: 'reboot-kernel-change',
  title:
    'boot 1 on 6.1 (virtio on vfio-pci, 6.12 installed: postinst hook writes its map); boot 2 on 6.12: status says kernel-changed, apply follows to virtio_vfio_pci',
  boots: ['reboot'],
  reboot: { kernels: ['6.1', '6.12'] },
  run(ctx) {
    if (ctx.plan.reboot?.stage === 1) kernelChangeFirstBoot(ctx);
    else kernelChangeSecondBoot(ctx);
  },
};
