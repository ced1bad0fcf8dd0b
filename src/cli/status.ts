// `vfioctl status`: configured devices and their drift. Configured intent vs the live driver; the
// driver the intent resolves to now vs at the last apply (a kernel upgrade can change it); how the
// boot went (won early, or a host driver had it first); devices something else rebound since.
import { readSnapshot, type Snapshot } from '../host/snapshot';
import { configFor } from './config-check';
import { desiredState, type Desire } from '../config/desired';
import { CONFIG_FILE } from '../config/types';
import { ruleLabel } from '../plan/converge';
import { resolveIntent } from '../plan/target';
import { readBootStateChecked, readStateChecked, type AppliedDevice } from '../persist/state';
import { table } from '../report/device-view';
import { EXIT } from '../util/diag';
import { type Context, printWarnings, trust } from './context';

export type Drift = 'ok' | 'absent' | 'pending' | 'boot-pending' | 'kernel-changed' | 'rebound' | 'drift' | 'unconfigured' | 'unresolvable';

export interface DeviceStatus {
  readonly address: string;
  readonly intent: string | null;
  readonly rule: string | null;
  /** What the intent resolves to on this kernel: a driver, `none`, or null with `reason`. */
  readonly resolved: string | null;
  readonly reason: string | null;
  readonly live: { readonly driver: string | null; readonly override: string | null } | null;
  readonly lastApplied: AppliedDevice | null;
  readonly boot: { readonly outcome: string; readonly driver: string | null; readonly hostDriverBuiltin: boolean } | null;
  readonly drift: Drift;
  readonly detail: string;
}

function resolveNow(snap: Snapshot, d: Desire): { resolved: string | null; reason: string | null } {
  if (d.intent === 'none') return { resolved: 'none', reason: null };
  const c = resolveIntent(snap.devices.get(d.address)!, snap, d.intent!);
  if (c.error) return { resolved: null, reason: c.error };
  const reason = c.refusals.map((r) => r.message).join('; ');
  // apply never forces: any refusal of the target itself (ID table, blacklist) blocks it.
  return { resolved: c.target?.driver ?? null, reason: c.target && !reason ? null : reason };
}

function judge(s: Omit<DeviceStatus, 'drift' | 'detail'>, kernel: string | null, bootedAt: number | null): { drift: Drift; detail: string } {
  const last = s.lastApplied;
  if (s.intent === null && last) return { drift: 'unconfigured', detail: `no longer configured; 'vfioctl apply' returns it to its host driver` };
  if (!s.live) return { drift: 'absent', detail: 'no such device on this host now' };
  if (s.resolved === null) return { drift: 'unresolvable', detail: s.reason ?? 'cannot be resolved' };
  const on = s.resolved === 'none' ? s.live.driver === null && s.live.override === 'none' : s.live.driver === s.resolved;
  const lastDriver = last ? (last.driver ?? 'none') : null;
  if (last && last.status === 'ok' && lastDriver !== s.resolved && last.kernel !== kernel) {
    return { drift: 'kernel-changed', detail: `resolves to ${s.resolved} on ${kernel ?? 'this kernel'}; the last apply (kernel ${last.kernel}) chose ${lastDriver}: 'vfioctl apply' follows it` };
  }
  if (on) return { drift: 'ok', detail: `on ${s.live.driver ?? 'no driver'}` };
  if (!last) return { drift: 'pending', detail: `never applied; on ${s.live.driver ?? 'no driver'}` };
  if (last.status === 'ok' && lastDriver === s.resolved) {
    // Applied before this boot and no late apply yet: the boot gave it to its host driver.
    if (bootedAt !== null && Date.parse(last.at) < bootedAt && !s.boot) {
      return { drift: 'boot-pending', detail: `on ${s.live.driver ?? 'no driver'} since boot; the late unit ('vfioctl apply --boot') has not taken it yet` };
    }
    return { drift: 'rebound', detail: `something else rebound it since the last apply (${last.at}): now on ${s.live.driver ?? 'no driver'}` };
  }
  return { drift: 'drift', detail: `on ${s.live.driver ?? 'no driver'}, configured ${s.resolved}${last.error ? `; last apply: ${last.error}` : ''}` };
}

function bootText(b: DeviceStatus['boot']): string {
  if (!b) return '-';
  if (b.outcome === 'won') return 'won at boot';
  if (b.outcome === 'unbound') return 'unbound at boot';
  return `host driver had it first (${b.driver}${b.hostDriverBuiltin ? ', built in: only the late apply can take it' : ''})`;
}

export function statusCommand(ctx: Context, opts: { json?: boolean; config?: string }): number {
  const running = ctx.root.kernelRelease();
  if (ctx.kernel !== undefined && ctx.root.isLive && running !== ctx.kernel) {
    ctx.io.err(`vfioctl: note: resolving for kernel ${ctx.kernel}, not the running ${running ?? 'kernel'}: a preview of what apply would do after booting it; the live drivers are this kernel's\n`);
  }
  const config = configFor(ctx, trust(ctx), opts.config);
  const snap = readSnapshot(ctx.root, { kernel: ctx.kernel });
  printWarnings(ctx, snap.warnings);
  const desired = desiredState(config, snap.devices);
  const state = readStateChecked(ctx.root);
  if (state.problem) printWarnings(ctx, [state.problem]);
  const applied = state.value.devices;
  const kernel = snap.modules.release ?? null;
  // This boot's start (/proc/stat btime); a boot record from an earlier boot does not count.
  const btime = Number(/^btime (\d+)$/m.exec(ctx.root.readFile('/proc/stat') ?? '')?.[1]);
  const bootedAt = Number.isFinite(btime) && btime > 0 ? btime * 1000 : null;
  const bootRead = readBootStateChecked(ctx.root);
  if (bootRead.problem) printWarnings(ctx, [bootRead.problem]);
  const recorded = bootRead.value;
  const boot = recorded && (bootedAt === null || Date.parse(recorded.at) >= bootedAt) ? recorded : null;
  const rows: DeviceStatus[] = [];
  const addresses = new Set([...desired.desires.keys(), ...desired.absent.keys(), ...Object.keys(applied)]);
  for (const address of [...addresses].sort()) {
    const d = desired.desires.get(address);
    const dev = snap.devices.get(address);
    // A rule removed after its device was refused or failed: nothing was applied, nothing to show.
    if (!d && !desired.absent.has(address) && applied[address] && applied[address]!.status !== 'ok') continue;
    if (d && d.intent === null && !applied[address]) {
      // A PF rule that only sizes SR-IOV: its drift is the VF count.
      const want = desired.sriov.find((x) => x.pf === address);
      if (want && dev) {
        const have = dev.sriov?.numVfs ?? 0;
        rows.push({
          address,
          intent: `sriov ${want.numVfs} VFs`,
          rule: ruleLabel(d),
          resolved: `${want.numVfs} VFs`,
          reason: null,
          live: { driver: dev.driver, override: dev.driverOverride },
          lastApplied: null,
          boot: null,
          drift: have === want.numVfs ? 'ok' : 'drift',
          detail: have === want.numVfs ? `${have} VFs` : `has ${have} VFs, configured ${want.numVfs}: 'vfioctl apply ${address}' resizes (destroying the current VFs)`,
        });
      }
      continue;
    }
    const absentRule = desired.absent.get(address);
    const base = {
      address,
      intent: d?.intent ?? absentRule?.intent ?? null,
      rule: d ? ruleLabel(d) : absentRule ? `rules[${absentRule.index}] (line ${absentRule.line})` : null,
      ...(d && dev && d.intent !== null ? resolveNow(snap, d) : { resolved: null, reason: null }),
      live: dev ? { driver: dev.driver, override: dev.driverOverride } : null,
      lastApplied: applied[address] ?? null,
      boot: boot?.devices[address] ?? null,
    };
    rows.push({ ...base, ...judge(base, kernel, bootedAt) });
  }
  if (opts.json) {
    ctx.io.out(JSON.stringify({ kernel, config: config.file, bootAt: boot?.at ?? null, devices: rows, warnings: desired.warnings }, null, 2) + '\n');
    return EXIT.OK;
  }
  printWarnings(ctx, desired.warnings);
  if (rows.length === 0) {
    ctx.io.out(config.file ? 'no configured devices\n' : `no configuration (${CONFIG_FILE}); 'vfioctl set DEVICE vfio' creates one\n`);
    return EXIT.OK;
  }
  ctx.io.out(table(['DEVICE', 'INTENT', 'RESOLVED', 'LIVE', 'STATE', 'BOOT'], rows.map((r) => [r.address, r.intent ?? '-', r.resolved ?? '?', r.live ? (r.live.driver ?? '(none)') : '(absent)', r.drift, bootText(r.boot)])));
  for (const r of rows) if (r.drift !== 'ok') ctx.io.out(`${r.address}: ${r.detail}\n`);
  return EXIT.OK;
}
