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
import { placement, planBind, planNone, planSriov, planUnbind } from './planner';
import { resolveIntent } from './target';
import { isPlaced, type Intent } from '../config/intent';
import type { BindIntent, DevicePlan, Plan } from './types';

export interface ConvergeOptions {
  /** Only these devices (and, for a PF, its SR-IOV size); all configured devices when null. */
  readonly only: ReadonlySet<string> | null;
  /** At boot: the devices the host boots from are never touched; broad rules need acknowledging. */
  readonly boot: BootDevices | null;
  /**
   * Outside boot (`guardBootDevices`): the devices the host boots from are refused all the same.
   */
  readonly guard?: BootDevices | null;
  readonly ruleHooks: ReadonlyMap<string, readonly Hook[]>;
  /** At boot: what the early layers wrote (address -> override), from /run/vfioctl/boot-taken. */
  readonly bootTaken?: ReadonlyMap<string, string>;
  /** `set --force`: past forceable refusals, as `bind --force`. */
  readonly force?: boolean;
  /** `set --group`: devices that succeed or fail together (address -> unit). */
  readonly units?: ReadonlyMap<string, string>;
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
    desired.sriov
      .filter((s) => wanted(o.only, s.pf))
      .map((s) => ({ address: s.pf, numVfs: s.numVfs, noAutoprobe: s.vfIntent !== null })),
  );
}

/**
 * At boot, and in every apply that guards them, a device the host boots from is refused whatever
 * the rule says (a broad rule's class or vendor match included); nothing is forced.
 */
function bootRefusals(plan: Plan, boot: BootDevices | null, guard: BootDevices | null): Plan {
  const protect = boot ?? guard;
  if (!protect) return plan;
  const devices = plan.devices.map((p): DevicePlan => {
    const why = protect.devices.get(p.address);
    if (!why || (p.status !== 'planned' && p.status !== 'refused')) return p;
    const message = boot
      ? `the host boots from it (${why.join('; ')}); a boot-time apply never moves it`
      : `the host boots from it (${why.join('; ')}); an apply that guards boot devices (--guard-boot-devices, the node agent's) never moves it: narrow the rule that selects it`;
    // First, so the reason a boot device stays is the boot, not whichever live check also fired.
    return {
      ...p,
      status: 'refused',
      steps: [],
      refusals: [{ check: 'boot-device', message, forceable: false }, ...p.refusals],
    };
  });
  return { ...plan, devices };
}

export interface BindPhase {
  /**
   * Back to a host driver: devices configured before (by an earlier apply) and not any more, and
   * devices whose intent is `host` (exempt from a broader rule) that are not on one.
   */
  readonly release: Plan;
  /** Every configured device with its own target (`none` among them), in one plan. */
  readonly bind: Plan;
  readonly skipped: readonly Skipped[];
}

export function planBindPhase(
  snap: Snapshot,
  desired: DesiredState,
  applied: AppliedState,
  o: ConvergeOptions,
): BindPhase {
  const skipped: Skipped[] = [];
  const intents = new Map<string, Intent>();
  for (const d of desired.desires.values()) {
    if (!wanted(o.only, d.address) || d.intent === null) continue;
    if (o.boot && isBroad(d.rule.selector) && !d.rule.acknowledgeBroadMatch) {
      skipped.push({
        address: d.address,
        reason: `${ruleLabel(d)} selects by ${d.rule.selector.kind} and is not applied at boot without "acknowledgeBroadMatch": true; run 'vfioctl apply' to apply it now`,
      });
      continue;
    }
    intents.set(d.address, d.intent);
  }
  const toDriver = new Map<string, BindIntent>();
  const toNone: string[] = [];
  const toHost: string[] = [];
  for (const [a, i] of intents) {
    if (i.kind === 'none') toNone.push(a);
    else if (i.kind === 'host') toHost.push(a);
    else toDriver.set(a, i);
  }
  // Every device that leaves its host driver in this apply (to a VFIO driver, or to none): two
  // members of one IOMMU group with different intents (`vfio` and `vfio-pci`) make it viable
  // together.
  const alsoMoving = new Set([
    ...toNone,
    ...[...toDriver]
      .filter(([address, intent]) => {
        const dev = snap.devices.get(address);
        return dev !== undefined && resolveIntent(dev, snap, intent, o.force).target?.vfio === true;
      })
      .map(([a]) => a),
  ]);
  const plans = [
    ...planBind(snap, {
      kind: 'bind',
      addresses: [...toDriver.keys()],
      driver: 'vfio',
      perDevice: toDriver,
      alsoMoving,
      force: !!o.force,
      group: false,
      ruleHooks: o.ruleHooks,
      ...(o.units ? { units: o.units } : {}),
    }).devices,
    ...planNone(snap, { addresses: toNone, ruleHooks: o.ruleHooks }).devices,
  ];
  // In the configuration's order, as the rules were resolved.
  const order = [...intents.keys()];
  plans.sort((a, b) => order.indexOf(a.address) - order.indexOf(b.address));
  const bind = bootRefusals({ kind: 'bind', devices: plans }, o.boot, o.guard ?? null);
  // Released: applied before, no longer configured, and still where that apply put it (a device
  // something else has rebound since is left to whoever did that).
  const release = Object.values(applied.devices)
    .filter(
      (a) => wanted(o.only, a.address) && !desired.desires.has(a.address) && a.status === 'ok',
    )
    .filter((a) => {
      const dev = snap.devices.get(a.address);
      if (dev === undefined) return false;
      // What that apply left: its host driver (`host`), no driver (`none`), or the driver it
      // recorded.
      const was: Intent =
        a.intent === 'host'
          ? { kind: 'host' }
          : a.driver === null
            ? { kind: 'none' }
            : { kind: 'driver', name: a.driver };
      return isPlaced(was, a.driver, placement(dev, snap));
    })
    .map((a) => a.address);
  // Taken at boot from an older map (an initramfs not rebuilt since) that no rule names now.
  for (const [address, driver] of o.bootTaken ?? []) {
    const dev = snap.devices.get(address);
    if (
      wanted(o.only, address) &&
      !desired.desires.has(address) &&
      !release.includes(address) &&
      dev?.driverOverride === driver
    )
      release.push(address);
  }
  const releasePlan: Plan = {
    kind: 'unbind',
    devices: [
      ...planUnbind(snap, { kind: 'unbind', addresses: release, ruleHooks: o.ruleHooks }).devices,
      ...planUnbind(snap, {
        kind: 'unbind',
        addresses: toHost,
        ruleHooks: o.ruleHooks,
        probeUnbound: true,
      }).devices,
    ],
  };
  return { release: releasePlan, bind, skipped };
}
