// Boot layers proven on real boots (issue 20). The second boot of these pairs comes up under the
// host's own systemd as PID 1 (guest/systemd-boot.sh: a small default target with sysinit.target,
// vfioctl-apply.service and the guest runner as a service after it); every order is read from
// systemd itself (`systemctl show`, `journalctl -o json`, `systemd-analyze critical-chain`) and
// every device from sysfs.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { Scenario, ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { expectOnVfio, expectUnchanged, resultFor, type ApplyJson } from './common';
import { checkInstalledLayers, checkPersistentLayer, mapEntries, mapOf, mustRun, run, SERVICE_ENV, statusOf, type StatusJson } from './reboot';

const EARLY = 'vfioctl-early.service';
const LATE = 'vfioctl-apply.service';
const TRIGGER = 'systemd-udev-trigger.service';

/** `systemctl show` of one unit, as key -> value. */
export function unitProps(ctx: ScenarioContext, unit: string, props: readonly string[]): Record<string, string> {
  // No unit: the manager's own properties.
  const r = mustRun(ctx, ['systemctl', 'show', '--no-pager', ...props.flatMap((p) => ['-p', p]), ...(unit ? [unit] : [])]);
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
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: SERVICE_ENV, maxBuffer: 256 << 20, timeout: 60_000 });
  if (r.status !== 0) ctx.fail(`${argv.join(' ')} failed (exit ${r.status}): ${r.stderr}`);
  const entries = r.stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as JournalEntry);
  ctx.note(`$ ${argv.join(' ')} -> ${entries.length} entries`);
  return entries;
}

const text = (e: JournalEntry | undefined, f: string): string => (typeof e?.[f] === 'string' ? (e[f] as string) : '');
/**
 * When it was logged, in µs since boot: a message that reached the journal through the kernel log
 * (PID 1 logs there before journald runs) carries the kernel's own timestamp.
 */
export const at = (e: JournalEntry | undefined): number => (!e ? NaN : Number(text(e, '_SOURCE_MONOTONIC_TIMESTAMP') || text(e, '__MONOTONIC_TIMESTAMP')));

/** systemd's first message about `unit` that starts with `verb` ("Starting", "Finished", "Reached target"). */
export function pid1Message(entries: readonly JournalEntry[], verb: string, unit: string): JournalEntry | undefined {
  return entries.find((e) => text(e, 'SYSLOG_IDENTIFIER') === 'systemd' && text(e, '_PID') === '1' ? text(e, 'MESSAGE').startsWith(`${verb} ${unit}`) : false)
    ?? entries.find((e) => text(e, 'SYSLOG_IDENTIFIER') === 'systemd' && text(e, 'MESSAGE').startsWith(`${verb} ${unit}`));
}

/** Waits (up to 120 s) until systemd says the boot is finished; returns `systemctl is-system-running`. */
export function waitForBootFinished(ctx: ScenarioContext): string {
  const t = Date.now();
  for (;;) {
    const fin = unitProps(ctx, '', ['FinishTimestampMonotonic']);
    if (mono(fin, 'FinishTimestampMonotonic') > 0) break;
    if (Date.now() - t > 120_000) ctx.fail('systemd did not finish the boot within 120 s (FinishTimestampMonotonic=0)');
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
  }
  return run(ctx, ['systemctl', 'is-system-running']).out.trim();
}

/** `systemd-analyze critical-chain UNIT`: unit -> [activated at, took] in ms (the "@1.2s +3ms" columns). */
export function criticalChain(ctx: ScenarioContext, unit: string): Map<string, { at: number; took: number | null }> {
  const r = mustRun(ctx, ['systemd-analyze', 'critical-chain', '--no-pager', unit]);
  const secs = (v: string): number => {
    let ms = 0;
    for (const [, n, u] of v.matchAll(/([\d.]+)(min|ms|s)/g)) ms += Number(n) * (u === 'min' ? 60_000 : u === 's' ? 1000 : 1);
    return ms;
  };
  const out = new Map<string, { at: number; took: number | null }>();
  for (const l of r.out.split('\n')) {
    const m = /([\w@.\\-]+\.(?:service|target|socket|mount))\s+@(\S+)(?:\s+\+(\S+))?/.exec(l);
    if (m) out.set(m[1]!, { at: secs(m[2]!), took: m[3] ? secs(m[3]) : null });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// boot-systemd

function systemdFirstBoot(ctx: ScenarioContext): void {
  const nic = ctx.dev('e1000e');
  const spare = ctx.dev('e1000eNic');
  checkPersistentLayer(ctx);
  ctx.eq([sysfs.driverOf(nic), sysfs.driverOf(spare)], ['e1000e', 'e1000e'], `[${nic}, ${spare}] drivers after the first boot's coldplug`);
  const a = ctx.cliJson<ApplyJson>(['set', nic, 'vfio', '--json']).json;
  ctx.eq(resultFor(ctx, a, nic).status, 'ok', `set ${nic} vfio: status`);
  expectOnVfio(ctx, nic, 'vfio-pci');
  ctx.expectExit(ctx.cli(['install', '--exec', ctx.plan.vfioctl]), 0);
  ctx.eq(mapEntries(mapOf(ctx, ctx.plan.kernel.release)), [`address ${nic} vfio-pci vfio_pci`], 'map entries');
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

  const props = ['ActiveState', 'Result', 'ExecMainStatus', 'InactiveExitTimestampMonotonic', 'ExecMainStartTimestampMonotonic', 'ExecMainExitTimestampMonotonic', 'ActiveEnterTimestampMonotonic'];
  const early = unitProps(ctx, EARLY, props);
  const trigger = unitProps(ctx, TRIGGER, props);
  const modulesLoad = unitProps(ctx, 'systemd-modules-load.service', props);
  const late = unitProps(ctx, LATE, [...props, 'ExecStartPre']);
  const netPre = unitProps(ctx, 'network-pre.target', ['ActiveState', 'ActiveEnterTimestampMonotonic']);
  for (const [u, p] of [[EARLY, early], [TRIGGER, trigger], [LATE, late]] as const) {
    ctx.eq([p.ActiveState, p.Result, p.ExecMainStatus], ['active', 'success', '0'], `${u}: [ActiveState, Result, ExecMainStatus] (systemctl show)`);
  }
  ctx.ok(
    mono(early, 'ExecMainExitTimestampMonotonic') > 0 && mono(early, 'ExecMainExitTimestampMonotonic') <= mono(trigger, 'ExecMainStartTimestampMonotonic'),
    `${EARLY}'s process exited (${mono(early, 'ExecMainExitTimestampMonotonic')} µs) before ${TRIGGER}'s started (${mono(trigger, 'ExecMainStartTimestampMonotonic')} µs)`,
  );
  if (modulesLoad.ActiveState === 'active' && mono(modulesLoad, 'ExecMainStartTimestampMonotonic') > 0) {
    ctx.ok(mono(early, 'ExecMainExitTimestampMonotonic') <= mono(modulesLoad, 'ExecMainStartTimestampMonotonic'), `${EARLY} exited before systemd-modules-load.service started`);
  }
  ctx.ok(mono(trigger, 'ActiveEnterTimestampMonotonic') <= mono(late, 'InactiveExitTimestampMonotonic'), `${LATE} started (${mono(late, 'InactiveExitTimestampMonotonic')} µs) after ${TRIGGER} finished (${mono(trigger, 'ActiveEnterTimestampMonotonic')} µs)`);
  // ExecStartPre= is `udevadm settle`: it exits 0 only once udev's event queue is empty.
  ctx.note(`${LATE} ExecStartPre: ${late.ExecStartPre}`);
  ctx.ok(/udevadm settle/.test(late.ExecStartPre ?? '') && /code=exited ; status=0/.test(late.ExecStartPre ?? ''), `${LATE}'s ExecStartPre (udevadm settle) exited 0 before its ExecStart`);
  ctx.eq(netPre.ActiveState, 'active', 'network-pre.target reached');
  ctx.ok(mono(late, 'ActiveEnterTimestampMonotonic') <= mono(netPre, 'ActiveEnterTimestampMonotonic'), `${LATE} finished (${mono(late, 'ActiveEnterTimestampMonotonic')} µs) before network-pre.target was reached (${mono(netPre, 'ActiveEnterTimestampMonotonic')} µs)`);

  // The same order in the journal, with the kernel's own messages between.
  const entries = journal(ctx);
  const earlyDone = pid1Message(entries, 'Finished', EARLY);
  const triggerStarted = pid1Message(entries, 'Starting', TRIGGER);
  const lateDone = pid1Message(entries, 'Finished', LATE);
  const netPreDone = pid1Message(entries, 'Reached target', 'network-pre.target');
  const e1000eUp = entries.find((e) => text(e, '_TRANSPORT') === 'kernel' && text(e, 'MESSAGE').startsWith(`e1000e ${spare}`));
  const order: [string, number][] = [
    [`"${text(earlyDone, 'MESSAGE')}"`, at(earlyDone)],
    [`"${text(triggerStarted, 'MESSAGE')}"`, at(triggerStarted)],
    [`kernel: "${text(e1000eUp, 'MESSAGE')}"`, at(e1000eUp)],
    [`(systemctl show) ${LATE}'s ExecStart= started, after its ExecStartPre= udevadm settle`, mono(late, 'ExecMainStartTimestampMonotonic')],
    [`"${text(lateDone, 'MESSAGE')}"`, at(lateDone)],
    [`"${text(netPreDone, 'MESSAGE')}"`, at(netPreDone)],
  ];
  ctx.note(`journal, in order:\n${order.map(([m, t]) => `    | ${(t / 1e6).toFixed(3)}s ${m}`).join('\n')}`);
  ctx.ok(order.every(([, t]) => Number.isFinite(t) && t > 0), 'the journal has every one of these messages');
  ctx.ok(order.every(([, t], i) => i === 0 || order[i - 1]![1] <= t), 'journal order: early unit done < coldplug trigger started < e1000e probed the unconfigured device < late unit\'s apply started (after settle) < done < network-pre.target');
  const earlyLog = entries.filter((e) => text(e, '_SYSTEMD_UNIT') === EARLY || text(e, 'UNIT') === EARLY).map((e) => text(e, 'MESSAGE'));
  ctx.note(`journal of ${EARLY}:\n${earlyLog.map((m) => `    | ${m}`).join('\n')}`);

  const chain = criticalChain(ctx, LATE);
  ctx.note(`systemd-analyze critical-chain ${LATE}: ${[...chain].map(([u, v]) => `${u} @${v.at}ms${v.took !== null ? ` +${v.took}ms` : ''}`).join(' <- ')}`);
  const c = chain.get(LATE);
  ctx.ok(c !== undefined, `critical-chain lists ${LATE}`);
  const before = [...chain.entries()].filter(([u]) => u !== LATE);
  ctx.ok(before.every(([, v]) => v.at <= c!.at), `every unit critical-chain puts before ${LATE} became active before it`);

  // What each device ended on, from sysfs.
  expectOnVfio(ctx, nic, 'vfio-pci');
  ctx.eq([sysfs.driverOf(spare), sysfs.overrideOf(spare)], ['e1000e', null], `${spare} (unconfigured, same id) [driver, driver_override]`);
  ctx.ok(sysfs.netdevsOf(spare).length === 1, `${spare} has its interface`);
  expectUnchanged(ctx, roots, "the guest's root and results devices");
  const taken = fs.existsSync('/run/vfioctl/boot-taken') ? fs.readFileSync('/run/vfioctl/boot-taken', 'utf8') : '';
  ctx.eq(taken, `${nic} vfio-pci\n`, 'what the early unit took (/run/vfioctl/boot-taken)');
  const s = ctx.cliJson<StatusJson>(['status', '--json']).json;
  const n = statusOf(ctx, s, nic);
  ctx.eq([n.boot?.outcome, n.drift], ['won', 'ok'], `vfioctl status ${nic}: [boot outcome, drift]`);

  const time = run(ctx, ['systemd-analyze', 'time', '--no-pager']);
  ctx.figure(`${release}: systemd as PID 1: ${time.out.split('\n')[0]}`);
  for (const [u, p] of [[EARLY, early], [TRIGGER, trigger], [LATE, late]] as const) {
    ctx.figure(`${release}: ${u} ran ${((mono(p, 'ExecMainStartTimestampMonotonic')) / 1e6).toFixed(2)}s-${((mono(p, 'ActiveEnterTimestampMonotonic')) / 1e6).toFixed(2)}s after kernel start`);
  }
}

export const bootSystemd: Scenario = {
  name: 'boot-systemd',
  title: 'boot 1: set e1000e vfio + install; boot 2 under systemd as PID 1: early unit before the coldplug trigger, late unit after settle and before network-pre; e1000e on vfio-pci, its twin on e1000e, root untouched',
  boots: ['reboot'],
  reboot: { kernels: 'same', systemd: true },
  run(ctx) {
    if (ctx.plan.reboot?.stage === 1) systemdFirstBoot(ctx);
    else systemdSecondBoot(ctx);
  },
};
