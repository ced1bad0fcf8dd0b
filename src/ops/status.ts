// Configured devices and their drift: configured intent vs the live driver; the driver the intent
// resolves to now vs at the last apply (a kernel upgrade can change it); how the boot went (won
// early, or a host driver had it first); devices something else rebound since.
import { readSnapshot, type Snapshot } from '../read/snapshot';
import { loadConfig } from '../config/load';
import { CONSUMER_NAMES, type Config } from '../config/types';
import { desiredState, type Desire } from '../config/desired';
import { ruleLabel } from '../plan/converge';
import { resolveIntent } from '../plan/target';
import { isOnVfio } from '../plan/checks';
import { intentName, isPlaced, type Intent } from '../config/intent';
import {
  readBootStateChecked,
  readStateChecked,
  type AppliedDevice,
  type DeviceBootOutcome,
} from '../persist/state';
import type { Host } from './host';
import { EXIT } from '../util/diag';

export type Drift =
  | 'ok'
  | 'absent'
  | 'pending'
  | 'boot-pending'
  | 'kernel-changed'
  | 'rebound'
  | 'drift'
  | 'unconfigured'
  | 'unresolvable';

export interface DeviceStatus {
  readonly address: string;
  readonly intent: string | null;
  readonly rule: string | null;
  /**
   * What the intent resolves to on this kernel: a driver, `none`, `host`, or null with `reason`.
   */
  readonly resolved: string | null;
  readonly reason: string | null;
  readonly live: { readonly driver: string | null; readonly override: string | null } | null;
  readonly lastApplied: AppliedDevice | null;
  readonly boot: DeviceBootOutcome | null;
  readonly drift: Drift;
  readonly detail: string;
}

function resolveNow(
  snap: Snapshot,
  d: Desire,
  intent: Intent,
): { resolved: string | null; reason: string | null } {
  // `none` and `host` name no driver: they resolve to themselves on every kernel.
  if (intent.kind === 'none' || intent.kind === 'host')
    return { resolved: intent.kind, reason: null };
  const c = resolveIntent(snap.devices.get(d.address)!, snap, intent);
  if (c.error) return { resolved: null, reason: c.error };
  const reason = c.refusals.map((r) => r.message).join('; ');
  // apply never forces: any refusal of the target itself (ID table, blacklist) blocks it.
  return { resolved: c.target?.driver ?? null, reason: c.target && !reason ? null : reason };
}

/** `want`: the configured intent; `onVfio`: the live driver is a VFIO driver. */
function judge(
  s: Omit<DeviceStatus, 'drift' | 'detail'>,
  want: Intent | null,
  onVfio: boolean,
  kernel: string | null,
  bootedAt: number | null,
): { drift: Drift; detail: string } {
  const last = s.lastApplied;
  if (s.intent === null && last)
    return {
      drift: 'unconfigured',
      detail: `no longer configured; 'vfioctl apply' returns it to its host driver`,
    };
  if (!s.live) return { drift: 'absent', detail: 'no such device on this host now' };
  if (s.resolved === null || want === null)
    return { drift: 'unresolvable', detail: s.reason ?? 'cannot be resolved' };
  const on = isPlaced(want, s.resolved, { ...s.live, onVfio });
  // What the last apply put it on, in `resolved`'s terms: a driver, `none` or `host`.
  const lastDriver = last ? (last.intent === 'host' ? 'host' : (last.driver ?? 'none')) : null;
  if (
    last &&
    last.status === 'ok' &&
    want.kind !== 'host' &&
    lastDriver !== s.resolved &&
    last.kernel !== kernel
  ) {
    return {
      drift: 'kernel-changed',
      detail: `resolves to ${s.resolved} on ${kernel ?? 'this kernel'}; the last apply (kernel ${last.kernel}) chose ${lastDriver}: 'vfioctl apply' follows it`,
    };
  }
  if (on) return { drift: 'ok', detail: `on ${s.live.driver ?? 'no driver'}` };
  if (!last)
    return { drift: 'pending', detail: `never applied; on ${s.live.driver ?? 'no driver'}` };
  if (last.status === 'ok' && lastDriver === s.resolved) {
    // Applied before this boot and no late apply yet: the boot gave it to its host driver.
    if (bootedAt !== null && Date.parse(last.at) < bootedAt && !s.boot) {
      return {
        drift: 'boot-pending',
        detail: `on ${s.live.driver ?? 'no driver'} since boot; the late unit ('vfioctl apply --boot') has not taken it yet`,
      };
    }
    return {
      drift: 'rebound',
      detail: `something else rebound it since the last apply (${last.at}): now on ${s.live.driver ?? 'no driver'}`,
    };
  }
  return {
    drift: 'drift',
    detail: `on ${s.live.driver ?? 'no driver'}, configured ${s.resolved}${last.error ? `; last apply: ${last.error}` : ''}`,
  };
}

export interface StatusReport {
  readonly kernel: string | null;
  /** The configuration file read, or null when there is none. */
  readonly config: string | null;
  readonly bootAt: string | null;
  readonly devices: readonly DeviceStatus[];
  /** About the configuration (ties between rules, ...). */
  readonly warnings: readonly string[];
  /** About reading the host and vfioctl's own files. */
  readonly readWarnings: readonly string[];
}

/**
 * `given`: report against this configuration instead of the host's file (`status --config FILE`).
 */
export function status(host: Host, given?: Config): StatusReport {
  const root = host.root;
  const config = given ?? loadConfig(root, host.trust);
  const snap = readSnapshot(root, { kernel: host.kernel });
  const readWarnings = [...snap.warnings];
  const desired = desiredState(config, snap.devices);
  const state = readStateChecked(root);
  if (state.problem) readWarnings.push(state.problem);
  const applied = state.value.devices;
  const kernel = snap.modules.release ?? null;
  // This boot's start (/proc/stat btime); a boot record from an earlier boot does not count.
  const btime = Number(/^btime (\d+)$/m.exec(root.readFile('/proc/stat') ?? '')?.[1]);
  const bootedAt = Number.isFinite(btime) && btime > 0 ? btime * 1000 : null;
  const bootRead = readBootStateChecked(root);
  if (bootRead.problem) readWarnings.push(bootRead.problem);
  const recorded = bootRead.value;
  const boot =
    recorded && (bootedAt === null || Date.parse(recorded.at) >= bootedAt) ? recorded : null;
  const rows: DeviceStatus[] = [];
  const addresses = new Set([
    ...desired.desires.keys(),
    ...desired.absent.keys(),
    ...Object.keys(applied),
  ]);
  for (const address of [...addresses].sort()) {
    const d = desired.desires.get(address);
    const dev = snap.devices.get(address);
    // A rule removed after its device was refused or failed: nothing was applied, nothing to show.
    if (!d && !desired.absent.has(address) && applied[address] && applied[address]!.status !== 'ok')
      continue;
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
          detail:
            have === want.numVfs
              ? `${have} VFs`
              : `has ${have} VFs, configured ${want.numVfs}: 'vfioctl apply ${address}' resizes (destroying the current VFs)`,
        });
      }
      continue;
    }
    const absentRule = desired.absent.get(address);
    const want = d?.intent ?? absentRule?.intent ?? null;
    const base = {
      address,
      intent: want ? intentName(want) : null,
      rule: d
        ? ruleLabel(d)
        : absentRule
          ? `rules[${absentRule.index}] (line ${absentRule.line})`
          : null,
      ...(d && dev && d.intent !== null
        ? resolveNow(snap, d, d.intent)
        : { resolved: null, reason: null }),
      live: dev ? { driver: dev.driver, override: dev.driverOverride } : null,
      lastApplied: applied[address] ?? null,
      boot: boot?.devices[address] ?? null,
    };
    rows.push({
      ...base,
      ...judge(base, want, dev ? isOnVfio(dev, snap) : false, kernel, bootedAt),
    });
  }
  return {
    kernel,
    config: config.file,
    bootAt: boot?.at ?? null,
    devices: rows,
    warnings: [...desired.warnings, ...consumerWarnings(snap, desired.desires, rows)],
    readWarnings,
  };
}

/**
 * Devices whose rule names a consumer that finds only the literal vfio-pci driver (KubeVirt, the
 * SR-IOV operator, ...), but that are on a variant now or would be after an apply: they vanish
 * from that consumer. `intent: "vfio-pci"` is what such a rule needs.
 */
function consumerWarnings(
  snap: Snapshot,
  desires: ReadonlyMap<string, Desire>,
  rows: readonly DeviceStatus[],
): string[] {
  const out: string[] = [];
  for (const row of rows) {
    const d = desires.get(row.address);
    const consumer = d?.rule.consumer;
    const dev = snap.devices.get(row.address);
    if (!d || !consumer || !dev) continue;
    const who = `${ruleLabel(d)} says ${CONSUMER_NAMES[consumer]} uses it, and that finds only devices on the literal vfio-pci driver`;
    const fix = `fix: give the rule intent 'vfio-pci' and run 'vfioctl apply'`;
    if (dev.driver !== null && dev.driver !== 'vfio-pci' && isOnVfio(dev, snap))
      out.push(`${row.address}: on the vfio-pci variant ${dev.driver}, but ${who}; ${fix}`);
    else if (
      row.resolved !== null &&
      row.resolved !== 'vfio-pci' &&
      row.resolved !== 'none' &&
      row.resolved !== dev.driver &&
      snap.modules.aliases.vfioByModule.has(
        snap.modules.drivers.driverModule.get(row.resolved) ?? row.resolved.replace(/-/g, '_'),
      )
    ) {
      out.push(
        `${row.address}: intent ${row.intent} resolves to the vfio-pci variant ${row.resolved}, but ${who}; ${fix}`,
      );
    }
  }
  return out;
}

/**
 * `status`'s exit code: 5 (EXIT.DRIFT) when any device is not as configured (drifted, pending,
 * unresolvable, absent, no longer configured but still bound), else 0: a check a monitoring
 * system or fleet agent can run as is.
 */
export function statusExitCode(r: StatusReport): number {
  return r.devices.some((d) => d.drift !== 'ok') ? EXIT.DRIFT : EXIT.OK;
}
