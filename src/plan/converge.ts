// Pure: the plans that take the live system to the configuration. Phase 1 sizes SR-IOV (its VFs
// only exist afterwards, so phase 2 is planned on a fresh snapshot); phase 2 releases devices the
// configuration no longer names, then binds every configured device to what its intent resolves
// to now (for this kernel), or to no driver at all for `none`.
import type { Snapshot } from '../read/snapshot';
import type { BootDevices } from '../host/boot-devices';
import type { DesiredState, Desire } from '../config/desired';
import { describeSelector, isBroad } from '../config/types';
import type { AppliedState } from '../persist/state';
import type { Hook } from '../hooks/discover';
import { planBind, planNone, planSriov, planUnbind } from './planner';
import type { DevicePlan, Plan } from './types';

export interface ConvergeOptions {
  /** Only these devices (and, for a PF, its SR-IOV size); all configured devices when null. */
  readonly only: ReadonlySet<string> | null;
  /** At boot: the devices the host boots from are never touched; broad rules need acknowledging. */
  readonly boot: BootDevices | null;
  readonly ruleHooks: ReadonlyMap<string, readonly Hook[]>;
  /** At boot: what the early layers wrote (address -> override), from /run/vfioctl/boot-taken. */
  readonly bootTaken?: ReadonlyMap<string, string>;
}

export interface Skipped {
  readonly address: string;
  readonly reason: string;
}

export function ruleLabel(d: Desire): string {
  return `rules[${d.rule.index}] (line ${d.rule.line}): ${describeSelector(d.rule.selector)}${d.viaPf ? ` (sriov.vfIntent)` : ''}`;
}

function wanted(only: ReadonlySet<string> | null, address: string): boolean {
  return only === null || only.has(address);
}

export function planSriovPhase(snap: Snapshot, desired: DesiredState, o: ConvergeOptions): Plan {
  return planSriov(
    snap,
    desired.sriov.filter((s) => wanted(o.only, s.pf)).map((s) => ({ address: s.pf, numVfs: s.numVfs, noAutoprobe: s.vfIntent !== null })),
  );
}

/** At boot a device the host boots from is refused whatever the rule says; nothing is forced. */
function bootRefusals(plan: Plan, boot: BootDevices | null): Plan {
  if (!boot) return plan;
  const devices = plan.devices.map((p): DevicePlan => {
    const why = boot.devices.get(p.address);
    if (!why || (p.status !== 'planned' && p.status !== 'refused')) return p;
    // First, so the reason a boot device stays is the boot, not whichever live check also fired.
    return { ...p, status: 'refused', steps: [], refusals: [{ check: 'boot-device', message: `the host boots from it (${why.join('; ')}); a boot-time apply never moves it`, forceable: false }, ...p.refusals] };
  });
  return { ...plan, devices };
}

export interface BindPhase {
  /** Devices configured before (by an earlier apply) and not any more: back to their host driver. */
  readonly release: Plan;
  /** Every configured device with its own target (`none` among them), in one plan. */
  readonly bind: Plan;
  readonly skipped: readonly Skipped[];
}

export function planBindPhase(snap: Snapshot, desired: DesiredState, applied: AppliedState, o: ConvergeOptions): BindPhase {
  const skipped: Skipped[] = [];
  const intents = new Map<string, string>();
  for (const d of desired.desires.values()) {
    if (!wanted(o.only, d.address) || d.intent === null) continue;
    if (o.boot && isBroad(d.rule.selector) && !d.rule.acknowledgeBroadMatch) {
      skipped.push({ address: d.address, reason: `${ruleLabel(d)} selects by ${d.rule.selector.kind} and is not applied at boot without "acknowledgeBroadMatch": true; run 'vfioctl apply' to apply it now` });
      continue;
    }
    intents.set(d.address, d.intent);
  }
  const toDriver = [...intents].filter(([, i]) => i !== 'none').map(([a]) => a);
  const toNone = [...intents].filter(([, i]) => i === 'none').map(([a]) => a);
  // Every device that leaves its host driver in this apply: the bind plan's own devices count as
  // moving, so two members of one IOMMU group with different intents (`vfio` and `vfio-pci`)
  // make it viable together; those going to no driver are added here.
  const alsoMoving = new Set(toNone);
  const plans = [
    ...planBind(snap, { kind: 'bind', addresses: toDriver, driver: 'vfio', perDevice: new Map(toDriver.map((a) => [a, intents.get(a)!])), alsoMoving, force: false, group: false, ruleHooks: o.ruleHooks }).devices,
    ...planNone(snap, { addresses: toNone, ruleHooks: o.ruleHooks }).devices,
  ];
  // In the configuration's order, as the rules were resolved.
  const order = [...intents.keys()];
  plans.sort((a, b) => order.indexOf(a.address) - order.indexOf(b.address));
  const bind = bootRefusals({ kind: 'bind', devices: plans }, o.boot);
  // Released: applied before, no longer configured, and still where that apply put it (a device
  // something else has rebound since is left to whoever did that).
  const release = Object.values(applied.devices)
    .filter((a) => wanted(o.only, a.address) && !desired.desires.has(a.address) && a.status === 'ok')
    .filter((a) => {
      const dev = snap.devices.get(a.address);
      return dev !== undefined && (a.driver === null ? dev.driverOverride === 'none' : dev.driver === a.driver);
    })
    .map((a) => a.address);
  // Taken at boot from an older map (an initramfs not rebuilt since) that no rule names now.
  for (const [address, driver] of o.bootTaken ?? []) {
    const dev = snap.devices.get(address);
    if (wanted(o.only, address) && !desired.desires.has(address) && !release.includes(address) && dev?.driverOverride === driver) release.push(address);
  }
  return { release: planUnbind(snap, { kind: 'unbind', addresses: release, ruleHooks: o.ruleHooks }), bind, skipped };
}
