// Boot layers proven on real boots (issue 20). The second boot of these pairs comes up under the
// host's own systemd as PID 1 (guest/systemd-boot.sh: a small default target with sysinit.target,
// vfioctl-apply.service and the guest runner as a service after it); every order is read from
// systemd itself (`systemctl show`, `journalctl -o json`, `systemd-analyze critical-chain`) and
// every device from sysfs.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { DEBIAN_12_KERNELS, type Scenario, type ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { expectOnVfio, expectUnchanged, resultFor, type ApplyJson } from './common';
import {
  checkInstalledLayers,
  checkPersistentLayer,
  mapEntries,
  mapOf,
  mustRun,
  run,
  SERVICE_ENV,
  statusJson,
  statusOf,
} from './reboot';

const EARLY = 'vfioctl-early.service';
const LATE = 'vfioctl-apply.service';
const TRIGGER = 'systemd-udev-trigger.service';

/** `systemctl show` of one unit, as key -> value. */
export function unitProps(
  ctx: ScenarioContext,
  unit: string,
  props: readonly string[],
): Record<string, string> {
  // No unit: the manager's own properties.
  const r = mustRun(ctx, [
    'systemctl',
    'show',
    '--no-pager',
    ...props.flatMap((p) => ['-p', p]),
    ...(unit ? [unit] : []),
  ]);
  const out: Record<string, string> = {};
  for (const l of r.out.split('\n')) {
    const i = l.indexOf('=');
    if (i > 0) out[l.slice(0, i)] = l.slice(i + 1);
  }
  return out;
}

const mono = (p: Record<string, string>, key: string): number => Number(p[key] ?? 0);

export interface JournalEntry {
  readonly [field: string]: unknown;
}

/** This boot's journal, entry by entry (journalctl -o json); too long for the transcript. */
export function journal(ctx: ScenarioContext, extra: readonly string[] = []): JournalEntry[] {
  const argv = ['journalctl', '-b', '-o', 'json', '--no-pager', ...extra];
  const r = spawnSync(argv[0]!, argv.slice(1), {
    encoding: 'utf8',
    env: SERVICE_ENV,
    maxBuffer: 256 << 20,
    timeout: 60_000,
  });
  if (r.status !== 0) ctx.fail(`${argv.join(' ')} failed (exit ${r.status}): ${r.stderr}`);
  const entries = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as JournalEntry);
  ctx.note(`$ ${argv.join(' ')} -> ${entries.length} entries`);
  return entries;
}

const text = (e: JournalEntry | undefined, f: string): string =>
  typeof e?.[f] === 'string' ? (e[f] as string) : '';
/**
 * When it was logged, in µs since boot: a message that reached the journal through the kernel log
 * (PID 1 logs there before journald runs) carries the kernel's own timestamp.
 */
export const at = (e: JournalEntry | undefined): number =>
  !e ? NaN : Number(text(e, '_SOURCE_MONOTONIC_TIMESTAMP') || text(e, '__MONOTONIC_TIMESTAMP'));

/**
 * systemd's first message about `unit` that starts with `verb` ("Starting", "Finished", "Reached
 * target").
 */
export function pid1Message(
  entries: readonly JournalEntry[],
  verb: string,
  unit: string,
): JournalEntry | undefined {
  return (
    entries.find((e) =>
      text(e, 'SYSLOG_IDENTIFIER') === 'systemd' && text(e, '_PID') === '1'
        ? text(e, 'MESSAGE').startsWith(`${verb} ${unit}`)
        : false,
    ) ??
    entries.find(
      (e) =>
        text(e, 'SYSLOG_IDENTIFIER') === 'systemd' &&
        text(e, 'MESSAGE').startsWith(`${verb} ${unit}`),
    )
  );
}

/**
 * Waits (up to 120 s) until systemd says the boot is finished; returns `systemctl
 * is-system-running`.
 */
export function waitForBootFinished(ctx: ScenarioContext): string {
  const t = Date.now();
  for (;;) {
    const fin = unitProps(ctx, '', ['FinishTimestampMonotonic']);
    if (mono(fin, 'FinishTimestampMonotonic') > 0) break;
    if (Date.now() - t > 120_000)
      ctx.fail('systemd did not finish the boot within 120 s (FinishTimestampMonotonic=0)');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
  }
  return run(ctx, ['systemctl', 'is-system-running']).out.trim();
}

/**
 * `systemd-analyze critical-chain UNIT`, top down: [unit, activated at (ms after systemd started;
 * null for UNIT itself), took (ms; null when not shown)].
 */
export function criticalChain(
  ctx: ScenarioContext,
  unit: string,
): [string, number | null, number | null][] {
  const r = mustRun(ctx, ['systemd-analyze', 'critical-chain', '--no-pager', unit]);
  const ms = (v: string): number => {
    let t = 0;
    for (const [, n, u] of v.matchAll(/([\d.]+)(min|ms|s)/g))
      t += Number(n) * (u === 'min' ? 60_000 : u === 's' ? 1000 : 1);
    return t;
  };
  const out: [string, number | null, number | null][] = [];
  for (const l of r.out.split('\n')) {
    const m =
      /([\w@.\\-]+\.(?:service|target|socket|mount|slice))(?:\s+@(\S+))?(?:\s+\+(\S+))?\s*$/.exec(
        l,
      );
    if (m) out.push([m[1]!, m[2] ? ms(m[2]) : null, m[3] ? ms(m[3]) : null]);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// boot-systemd

function systemdFirstBoot(ctx: ScenarioContext): void {
  const nic = ctx.dev('e1000e');
  const spare = ctx.dev('e1000eNic');
  checkPersistentLayer(ctx);
  ctx.eq(
    [sysfs.driverOf(nic), sysfs.driverOf(spare)],
    ['e1000e', 'e1000e'],
    `[${nic}, ${spare}] drivers after the first boot's coldplug`,
  );
  const a = ctx.cliJson<ApplyJson>(['set', nic, 'vfio', '--json']).json;
  ctx.eq(resultFor(ctx, a, nic).status, 'ok', `set ${nic} vfio: status`);
  expectOnVfio(ctx, nic, 'vfio-pci');
  ctx.expectExit(ctx.cli(['install', '--exec', ctx.plan.vfioctl]), 0);
  ctx.eq(
    mapEntries(mapOf(ctx, ctx.plan.kernel.release)),
    [`address ${nic} vfio-pci vfio_pci`],
    'map entries',
  );
  checkInstalledLayers(ctx);
}

function systemdSecondBoot(ctx: ScenarioContext): void {
  const nic = ctx.dev('e1000e');
  const spare = ctx.dev('e1000eNic');
  const roots = sysfs.snapshot([ctx.dev('rootfs'), ctx.dev('results')]);
  const release = ctx.plan.kernel.release;

  ctx.eq(fs.readFileSync('/proc/1/comm', 'utf8').trim(), 'systemd', 'PID 1');
  const state = waitForBootFinished(ctx);
  ctx.eq(state, 'running', 'systemctl is-system-running (no unit failed)');
  checkPersistentLayer(ctx);

  const props = [
    'ActiveState',
    'Result',
    'ExecMainStatus',
    'InactiveExitTimestampMonotonic',
    'ExecMainStartTimestampMonotonic',
    'ExecMainExitTimestampMonotonic',
    'ActiveEnterTimestampMonotonic',
  ];
  const early = unitProps(ctx, EARLY, props);
  const trigger = unitProps(ctx, TRIGGER, props);
  const modulesLoad = unitProps(ctx, 'systemd-modules-load.service', props);
  const late = unitProps(ctx, LATE, [...props, 'ExecStartPre']);
  const netPre = unitProps(ctx, 'network-pre.target', [
    'ActiveState',
    'ActiveEnterTimestampMonotonic',
  ]);
  for (const [u, p] of [
    [EARLY, early],
    [TRIGGER, trigger],
    [LATE, late],
  ] as const) {
    ctx.eq(
      [p.ActiveState, p.Result, p.ExecMainStatus],
      ['active', 'success', '0'],
      `${u}: [ActiveState, Result, ExecMainStatus] (systemctl show)`,
    );
  }
  ctx.ok(
    mono(early, 'ExecMainExitTimestampMonotonic') > 0 &&
      mono(early, 'ExecMainExitTimestampMonotonic') <=
        mono(trigger, 'ExecMainStartTimestampMonotonic'),
    `${EARLY}'s process exited (${mono(early, 'ExecMainExitTimestampMonotonic')} µs) before ${TRIGGER}'s started (${mono(trigger, 'ExecMainStartTimestampMonotonic')} µs)`,
  );
  if (
    modulesLoad.ActiveState === 'active' &&
    mono(modulesLoad, 'ExecMainStartTimestampMonotonic') > 0
  ) {
    ctx.ok(
      mono(early, 'ExecMainExitTimestampMonotonic') <=
        mono(modulesLoad, 'ExecMainStartTimestampMonotonic'),
      `${EARLY} exited before systemd-modules-load.service started`,
    );
  }
  ctx.ok(
    mono(trigger, 'ActiveEnterTimestampMonotonic') <= mono(late, 'InactiveExitTimestampMonotonic'),
    `${LATE} started (${mono(late, 'InactiveExitTimestampMonotonic')} µs) after ${TRIGGER} finished (${mono(trigger, 'ActiveEnterTimestampMonotonic')} µs)`,
  );
  // ExecStartPre= is `udevadm settle`: it exits 0 only once udev's event queue is empty.
  ctx.note(`${LATE} ExecStartPre: ${late.ExecStartPre}`);
  ctx.ok(
    /udevadm settle/.test(late.ExecStartPre ?? '') &&
      /code=exited ; status=0/.test(late.ExecStartPre ?? ''),
    `${LATE}'s ExecStartPre (udevadm settle) exited 0 before its ExecStart`,
  );
  ctx.eq(netPre.ActiveState, 'active', 'network-pre.target reached');
  ctx.ok(
    mono(late, 'ActiveEnterTimestampMonotonic') <= mono(netPre, 'ActiveEnterTimestampMonotonic'),
    `${LATE} finished (${mono(late, 'ActiveEnterTimestampMonotonic')} µs) before network-pre.target was reached (${mono(netPre, 'ActiveEnterTimestampMonotonic')} µs)`,
  );

  // The same order in the journal, with the kernel's own messages between.
  const entries = journal(ctx);
  const earlyDone = pid1Message(entries, 'Finished', EARLY);
  const triggerStarted = pid1Message(entries, 'Starting', TRIGGER);
  const lateDone = pid1Message(entries, 'Finished', LATE);
  const netPreDone = pid1Message(entries, 'Reached target', 'network-pre.target');
  const e1000eUp = entries.find(
    (e) => text(e, '_TRANSPORT') === 'kernel' && text(e, 'MESSAGE').startsWith(`e1000e ${spare}`),
  );
  const order: [string, number][] = [
    [`"${text(earlyDone, 'MESSAGE')}"`, at(earlyDone)],
    [`"${text(triggerStarted, 'MESSAGE')}"`, at(triggerStarted)],
    [`kernel: "${text(e1000eUp, 'MESSAGE')}"`, at(e1000eUp)],
    [
      `(systemctl show) ${LATE}'s ExecStart= started, after its ExecStartPre= udevadm settle`,
      mono(late, 'ExecMainStartTimestampMonotonic'),
    ],
    [`"${text(lateDone, 'MESSAGE')}"`, at(lateDone)],
    [`"${text(netPreDone, 'MESSAGE')}"`, at(netPreDone)],
  ];
  ctx.note(
    `journal, in order:\n${order.map(([m, t]) => `    | ${(t / 1e6).toFixed(3)}s ${m}`).join('\n')}`,
  );
  ctx.ok(
    order.every(([, t]) => Number.isFinite(t) && t > 0),
    'the journal has every one of these messages',
  );
  ctx.ok(
    order.every(([, t], i) => i === 0 || order[i - 1]![1] <= t),
    "journal order: early unit done < coldplug trigger started < e1000e probed the unconfigured device < late unit's apply started (after settle) < done < network-pre.target",
  );
  const earlyLog = entries
    .filter((e) => text(e, '_SYSTEMD_UNIT') === EARLY || text(e, 'UNIT') === EARLY)
    .map((e) => text(e, 'MESSAGE'));
  ctx.note(`journal of ${EARLY}:\n${earlyLog.map((m) => `    | ${m}`).join('\n')}`);

  // systemd's own account of what the late unit waited for last: it reaches back to the coldplug
  // trigger (After=systemd-udev-trigger.service, directly or through sysinit.target).
  const chain = criticalChain(ctx, LATE);
  ctx.note(
    `systemd-analyze critical-chain ${LATE}: ${chain.map(([u, a, t]) => `${u}${a !== null ? ` @${a}ms` : ''}${t !== null ? ` +${t}ms` : ''}`).join(' <- ')}`,
  );
  ctx.eq(chain[0]?.[0], LATE, 'critical-chain starts at the late unit');
  ctx.ok(
    chain.some(([u]) => u === TRIGGER || u === 'sysinit.target'),
    `critical-chain of ${LATE} goes through ${TRIGGER} or sysinit.target`,
  );
  const ti = chain.findIndex(([u]) => u === TRIGGER);
  const ei = chain.findIndex(([u]) => u === EARLY);
  if (ti >= 0 && ei >= 0) ctx.ok(ei > ti, `critical-chain: ${TRIGGER} waited for ${EARLY}`);

  // What each device ended on, from sysfs.
  expectOnVfio(ctx, nic, 'vfio-pci');
  ctx.eq(
    [sysfs.driverOf(spare), sysfs.overrideOf(spare)],
    ['e1000e', null],
    `${spare} (unconfigured, same id) [driver, driver_override]`,
  );
  ctx.ok(sysfs.netdevsOf(spare).length === 1, `${spare} has its interface`);
  expectUnchanged(ctx, roots, "the guest's root and results devices");
  const taken = fs.existsSync('/run/vfioctl/boot-taken')
    ? fs.readFileSync('/run/vfioctl/boot-taken', 'utf8')
    : '';
  ctx.eq(taken, `${nic} vfio-pci\n`, 'what the early unit took (/run/vfioctl/boot-taken)');
  const s = statusJson(ctx);
  const n = statusOf(ctx, s, nic);
  ctx.eq([n.boot?.outcome, n.drift], ['won', 'ok'], `vfioctl status ${nic}: [boot outcome, drift]`);

  const time = run(ctx, ['systemd-analyze', 'time', '--no-pager']);
  ctx.figure(`${release}: systemd as PID 1: ${time.out.split('\n')[0]}`);
  for (const [u, p] of [
    [EARLY, early],
    [TRIGGER, trigger],
    [LATE, late],
  ] as const) {
    ctx.figure(
      `${release}: ${u} ran ${(mono(p, 'ExecMainStartTimestampMonotonic') / 1e6).toFixed(2)}s-${(mono(p, 'ActiveEnterTimestampMonotonic') / 1e6).toFixed(2)}s after kernel start`,
    );
  }
}

export const bootSystemd: Scenario = {
  name: 'boot-systemd',
  title:
    'boot 1: set e1000e vfio + install; boot 2 under systemd as PID 1: early unit before the coldplug trigger, late unit after settle and before network-pre; e1000e on vfio-pci, its twin on e1000e, root untouched',
  boots: ['reboot'],
  // Debian 12's default kernel; boot-failures and boot-dracut boot 6.12 (--all-pairs: both).
  reboot: { kernels: 'same', only: DEBIAN_12_KERNELS, byDefault: ['6.1'], systemd: true },
  run(ctx) {
    if (ctx.plan.reboot?.stage === 1) systemdFirstBoot(ctx);
    else systemdSecondBoot(ctx);
  },
};

// ---------------------------------------------------------------------------------------------
// Failure at boot is safe: the boot completes, the devices stay on their host drivers, and
// systemd's journal and `vfioctl status` say why.

const CONFIG = '/etc/vfioctl/vfioctl.json';
const FAILING_HOOK = '/etc/vfioctl/rule-hooks/e2e-refuse';
/**
 * Makes `modprobe vfio_pci` fail, as on a kernel without the module (udev's kmod builtin runs it
 * too).
 */
const NO_VFIO_PCI = '/etc/modprobe.d/e2e-no-vfio-pci.conf';

/** The unit's log lines in this boot's journal (what it wrote to stdout/stderr). */
function unitLog(entries: readonly JournalEntry[], unit: string): string[] {
  return entries.filter((e) => text(e, '_SYSTEMD_UNIT') === unit).map((e) => text(e, 'MESSAGE'));
}

/**
 * Under systemd: the boot finished, the early unit succeeded and the late unit failed; their logs.
 */
function failedBoot(ctx: ScenarioContext): {
  early: string[];
  late: string[];
  entries: JournalEntry[];
} {
  ctx.eq(fs.readFileSync('/proc/1/comm', 'utf8').trim(), 'systemd', 'PID 1');
  ctx.eq(
    waitForBootFinished(ctx),
    'degraded',
    'systemctl is-system-running (the boot finished; a unit failed)',
  );
  const props = ['ActiveState', 'Result', 'ExecMainStatus'];
  const early = unitProps(ctx, EARLY, props);
  ctx.eq(
    [early.ActiveState, early.Result, early.ExecMainStatus],
    ['active', 'success', '0'],
    `${EARLY}: [ActiveState, Result, ExecMainStatus]`,
  );
  const late = unitProps(ctx, LATE, props);
  ctx.eq(
    [late.ActiveState, late.Result],
    ['failed', 'exit-code'],
    `${LATE}: [ActiveState, Result]`,
  );
  ctx.note(`${LATE} ExecMainStatus=${late.ExecMainStatus}`);
  const failed = run(ctx, [
    'systemctl',
    'list-units',
    '--failed',
    '--plain',
    '--no-legend',
    '--no-pager',
  ])
    .out.split('\n')
    .map((l) => l.split(/\s+/)[0])
    .filter(Boolean);
  ctx.eq(failed, [LATE], 'failed units (systemctl list-units --failed)');
  const entries = journal(ctx);
  const out = { early: unitLog(entries, EARLY), late: unitLog(entries, LATE), entries };
  ctx.note(`journal of ${EARLY}:\n${out.early.map((m) => `    | ${m}`).join('\n')}`);
  ctx.note(`journal of ${LATE}:\n${out.late.map((m) => `    | ${m}`).join('\n')}`);
  return out;
}

function statusText(ctx: ScenarioContext): string {
  const r = ctx.cli(['status']);
  ctx.note(
    `vfioctl status (exit ${r.code}):\n${`${r.stdout}${r.stderr}`.trim().replace(/^/gm, '    | ')}`,
  );
  return `${r.stdout}${r.stderr}`;
}

function failuresFirstBoot(ctx: ScenarioContext): void {
  const nic = ctx.dev('e1000e');
  const virtio = ctx.dev('virtioNetModern');
  const root = ctx.dev('rootfs');
  checkPersistentLayer(ctx);
  ctx.expectExit(ctx.cli(['set', nic, 'vfio']), 0);
  ctx.expectExit(ctx.cli(['set', virtio, 'vfio']), 0);
  // The guest's root device, configured on purpose and never applied now.
  ctx.expectExit(ctx.cli(['set', root, 'vfio', '--noprobe']), 0);
  // A rule hook that refuses: it runs at the late apply, so the map leaves the device out.
  fs.mkdirSync('/etc/vfioctl/rule-hooks', { mode: 0o755 });
  fs.writeFileSync(FAILING_HOOK, '#!/bin/sh\necho "e2e-refuse: $1 $2: not today" >&2\nexit 1\n', {
    mode: 0o755,
  });
  const config = JSON.parse(fs.readFileSync(CONFIG, 'utf8')) as {
    rules: { match: { address?: string }; hooks?: string[] }[];
  };
  config.rules.find((r) => r.match.address === virtio)!.hooks = [FAILING_HOOK];
  fs.writeFileSync(CONFIG, JSON.stringify(config, null, 2) + '\n');
  ctx.expectExit(ctx.cli(['install', '--exec', ctx.plan.vfioctl]), 0);
  const map = mapOf(ctx, ctx.plan.kernel.release);
  ctx.note(`map:\n${map.trim().replace(/^/gm, '    | ')}`);
  ctx.eq(
    mapEntries(map),
    [`address ${nic} vfio-pci vfio_pci`],
    `map entries (${virtio}: hooks, ${root}: the root device, both left to the late apply)`,
  );
  ctx.ok(
    map.includes(`# skipped ${root}:`) && map.includes(`# skipped ${virtio}:`),
    'the map says why both are left out',
  );
  // vfio_pci cannot be loaded at the next boot.
  fs.writeFileSync(NO_VFIO_PCI, 'install vfio_pci /bin/false\n', { mode: 0o644 });
  checkInstalledLayers(ctx);
}

function failuresSecondBoot(ctx: ScenarioContext): void {
  const nic = ctx.dev('e1000e');
  const spare = ctx.dev('e1000eNic');
  const virtio = ctx.dev('virtioNetModern');
  const root = ctx.dev('rootfs');
  const roots = sysfs.snapshot([root, ctx.dev('results')]);
  const { early, late } = failedBoot(ctx);
  ctx.ok(
    early.some((l) => l.includes('modprobe vfio_pci failed')) &&
      early.some((l) => l.includes(`${nic} left to its host driver`)),
    `the journal of ${EARLY} says vfio_pci did not load and ${nic} was left to its host driver`,
  );
  const lateText = late.join('\n');
  ctx.ok(
    lateText.includes(nic) && lateText.includes(virtio) && lateText.includes(root),
    `the journal of ${LATE} names ${nic}, ${virtio} and ${root}`,
  );
  ctx.ok(/e2e-refuse/.test(lateText), `the journal of ${LATE} has the refusing hook's message`);

  // The kernel: every device on its host driver, no override left behind.
  ctx.eq(
    [sysfs.driverOf(nic), sysfs.overrideOf(nic)],
    ['e1000e', null],
    `${nic} [driver, driver_override] (its VFIO module would not load)`,
  );
  ctx.eq(
    [sysfs.driverOf(spare), sysfs.overrideOf(spare)],
    ['e1000e', null],
    `${spare} [driver, driver_override]`,
  );
  ctx.eq(
    [sysfs.driverOf(virtio), sysfs.overrideOf(virtio)],
    ['virtio-pci', null],
    `${virtio} [driver, driver_override] (its hook refused)`,
  );
  ctx.ok(!sysfs.moduleLoaded('vfio_pci'), 'vfio_pci is not loaded');
  expectUnchanged(
    ctx,
    roots,
    "the guest's root and results devices (the root device is configured)",
  );

  const s = statusJson(ctx);
  for (const a of [nic, virtio, root]) {
    const d = statusOf(ctx, s, a);
    ctx.note(`status ${a}: ${d.drift}: ${d.detail}`);
    ctx.ok(d.drift !== 'ok', `vfioctl status ${a}: not ok (${d.drift})`);
  }
  const t = statusText(ctx);
  ctx.ok(
    t.includes(nic) && t.includes(virtio),
    'vfioctl status lists the devices the boot could not take',
  );
}

export const bootFailures: Scenario = {
  name: 'boot-failures',
  title:
    'boot 2 under systemd with vfio_pci unloadable, a refusing rule hook and the root device configured: the boot completes, all on host drivers, journal and status say why',
  boots: ['reboot'],
  reboot: { kernels: 'same', only: DEBIAN_12_KERNELS, byDefault: ['6.12'], systemd: true },
  run(ctx) {
    if (ctx.plan.reboot?.stage === 1) failuresFirstBoot(ctx);
    else failuresSecondBoot(ctx);
  },
};

function brokenConfigFirstBoot(ctx: ScenarioContext): void {
  const nic = ctx.dev('e1000e');
  const next = ctx.plan.reboot!.other.release;
  checkPersistentLayer(ctx);
  ctx.expectExit(ctx.cli(['set', nic, 'vfio']), 0);
  ctx.expectExit(ctx.cli(['install', '--exec', ctx.plan.vfioctl]), 0);
  // The next kernel is not installed here, so no map is made for it.
  ctx.eq(
    fs.readdirSync('/etc/vfioctl/boot').sort(),
    [`${ctx.plan.kernel.release}.json`, `${ctx.plan.kernel.release}.map`],
    `maps, each with its JSON (none for ${next})`,
  );
  // An admin's edit that breaks the file.
  fs.appendFileSync(CONFIG, '{ "rules": [ oops\n');
  ctx.expectExit(ctx.cli(['status']), 2);
}

function brokenConfigSecondBoot(ctx: ScenarioContext): void {
  const nic = ctx.dev('e1000e');
  const spare = ctx.dev('e1000eNic');
  const roots = sysfs.snapshot([ctx.dev('rootfs'), ctx.dev('results')]);
  const { late } = failedBoot(ctx);
  ctx.ok(
    !fs.existsSync('/run/vfioctl/boot-taken'),
    `the early unit took nothing (no map for ${ctx.plan.kernel.release})`,
  );
  ctx.ok(
    late.some((l) => l.includes(`${CONFIG}:`)),
    `the journal of ${LATE} points into ${CONFIG} (file:line:column)`,
  );
  ctx.eq(
    [sysfs.driverOf(nic), sysfs.overrideOf(nic)],
    ['e1000e', null],
    `${nic} [driver, driver_override]`,
  );
  ctx.eq(
    [sysfs.driverOf(spare), sysfs.overrideOf(spare)],
    ['e1000e', null],
    `${spare} [driver, driver_override]`,
  );
  expectUnchanged(ctx, roots, "the guest's root and results devices");
  const r = ctx.cli(['status']);
  ctx.note(
    `vfioctl status (exit ${r.code}):\n${`${r.stdout}${r.stderr}`.trim().replace(/^/gm, '    | ')}`,
  );
  ctx.eq(r.code, 2, 'vfioctl status exit code (a broken configuration)');
  ctx.ok(r.stderr.includes(`${CONFIG}:`), `vfioctl status points into ${CONFIG}`);
}

export const bootBrokenConfig: Scenario = {
  name: 'boot-broken-config',
  title:
    'boot 1 on 6.12: e1000e configured, then the file broken by hand; boot 2 on 6.1 (the older kernel picked at the boot menu, no map for it) under systemd: boot completes, e1000e on e1000e, journal and status point at the file',
  boots: ['reboot'],
  // Back to the older kernel (reboot-kernel-change goes forward): 6.1's second boot under systemd.
  reboot: { kernels: ['6.12', '6.1'], systemd: true },
  run(ctx) {
    if (ctx.plan.reboot?.stage === 1) brokenConfigFirstBoot(ctx);
    else brokenConfigSecondBoot(ctx);
  },
};
