// The pure planner: snapshot + request -> per-device ordered steps, refusals and warnings.
// No I/O here; the executor is the only code that writes.
import type { PciDevice } from '../host/pci';
import { modaliasOf } from '../host/pci';
import type { Snapshot } from '../read/snapshot';
import { aliasMatches } from '../match/resolve';
import { VfioctlError } from '../util/diag';
import {
  checkGroupViable,
  checkHostUse,
  checkIommu,
  checkSriovPf,
  checkVfioUsers,
  isOnVfio,
} from './checks';
import { bindIntent, chooseTarget } from './target';
import { intentName, isPlaced } from '../config/intent';
import type { Hook, HookEvent } from '../hooks/discover';
import type { Resolution } from '../match/resolve';
import type {
  BindRequest,
  DevicePlan,
  Plan,
  PlanTarget,
  Refusal,
  RefusalCheck,
  Step,
  UnbindRequest,
} from './types';

/** Where the device is now, as isPlaced() judges it. */
export function placement(
  dev: PciDevice,
  snap: Snapshot,
): { driver: string | null; override: string | null; onVfio: boolean } {
  return { driver: dev.driver, override: dev.driverOverride, onVfio: isOnVfio(dev, snap) };
}

function loaded(snap: Snapshot, module: string | null): boolean {
  if (module === null) return true;
  return (
    snap.modules.drivers.moduleDrivers.has(module) ||
    snap.modules.builtin.has(module) ||
    snap.modules.drivers.loadedModules.has(module)
  );
}

/**
 * A device plan's own part: what the planner decided (DevicePlan without what comes from the
 * device).
 */
type Decision<P = DevicePlan> = P extends DevicePlan
  ? Omit<P, 'address' | 'from' | 'original' | 'resolution' | 'device'>
  : never;

function devicePlan(
  dev: PciDevice,
  snap: Snapshot,
  p: Decision,
  resolution: Resolution | null = null,
): DevicePlan {
  const from = { driver: dev.driver, override: dev.driverOverride };
  const rec = snap.records.get(dev.address);
  const original = rec ? { driver: rec.originalDriver, override: rec.originalOverride } : from;
  return { address: dev.address, from, original, resolution, ...p };
}

/** What a decided plan may add: its unit (default: the device), warnings, candidates (bind). */
type More = {
  readonly unit?: string;
  readonly warnings?: readonly string[];
  readonly resolution?: Resolution | null;
};

/** Refused: no steps, only the refusals (and, for a bind, the warnings and candidates so far). */
function refusedPlan(
  dev: PciDevice,
  snap: Snapshot,
  target: PlanTarget | null,
  refusals: readonly Refusal[],
  { unit = dev.address, warnings = [], resolution }: More = {},
): DevicePlan {
  const p: Decision = { status: 'refused', target, steps: [], refusals, warnings, unit };
  return devicePlan(dev, snap, p, resolution);
}

/** Planned: these steps, no refusals. */
function plannedPlan(
  dev: PciDevice,
  snap: Snapshot,
  target: PlanTarget,
  steps: readonly Step[],
  { unit = dev.address, warnings = [], resolution }: More = {},
): DevicePlan {
  const p: Decision = { status: 'planned', target, steps, refusals: [], warnings, unit };
  return devicePlan(dev, snap, p, resolution);
}

function invalid(address: string, message: string, unit: string): DevicePlan {
  return {
    address,
    status: 'invalid',
    from: { driver: null, override: null },
    original: { driver: null, override: null },
    target: null,
    steps: [],
    refusals: [{ check: 'input', message, forceable: false }],
    warnings: [],
    resolution: null,
    unit,
  };
}

function hookSteps(hooks: readonly Hook[], address: string): (event: HookEvent) => Step[] {
  return (event) => hooks.map((h) => ({ op: 'hook', address, event, path: h.path }));
}

/** A hook that a non-root user could have written is never run: the device is refused. */
function checkHooks(hooks: readonly Hook[]): Refusal[] {
  return hooks
    .filter((h) => h.problem !== null)
    .map((h) => ({
      check: 'hook-trust',
      message: `hook ${h.path} will not be run: ${h.problem}; make it root-owned and not group/other-writable (chown root: ; chmod go-w), or remove it`,
      forceable: false,
    }));
}

/**
 * With --group: the device plus every group member that is not already viable, bridges excluded.
 */
function expandGroups(
  addresses: readonly string[],
  snap: Snapshot,
): { address: string; unit: string }[] {
  const out: { address: string; unit: string }[] = [];
  const seen = new Set<string>();
  for (const a of addresses) {
    const d = snap.devices.get(a);
    const unit = d?.iommuGroup ? `group ${d.iommuGroup}` : a;
    const members = d?.iommuGroup ? (snap.iommu.groups.get(d.iommuGroup) ?? [a]) : [a];
    for (const m of members) {
      if (seen.has(m)) continue;
      const md = snap.devices.get(m);
      if (m !== a && md && (md.headerType ?? 0) !== 0) continue; // bridges stay on pcieport
      seen.add(m);
      out.push({ address: m, unit });
    }
  }
  return out;
}

export function planBind(snap: Snapshot, req: BindRequest): Plan {
  const items = req.group
    ? expandGroups(req.addresses, snap)
    : req.addresses.map((a) => ({ address: a, unit: req.units?.get(a) ?? a }));
  const moving = new Set([...items.map((i) => i.address), ...(req.alsoMoving ?? [])]);
  const plans = items.map(({ address, unit }): DevicePlan => {
    const dev = snap.devices.get(address);
    if (!dev) return invalid(address, `no PCI device ${address}`, unit);
    const driver = intentName(req.perDevice?.get(address) ?? bindIntent(req.driver));
    let choice: ReturnType<typeof chooseTarget>;
    try {
      choice = chooseTarget(dev, snap, driver, req.force);
    } catch (e) {
      if (e instanceof VfioctlError) return invalid(address, e.message, unit);
      throw e;
    }
    const { target, resolution } = choice;
    const warnings = [...choice.warnings];
    if (target && isPlaced(bindIntent(driver), target.driver, placement(dev, snap))) {
      const steps = ownerSteps(dev, req);
      const already = [`already on ${target.driver}`];
      if (steps.length)
        return plannedPlan(dev, snap, target, steps, { unit, warnings: already, resolution });
      return devicePlan(
        dev,
        snap,
        { status: 'noop', target, steps: [], refusals: [], warnings: already, unit },
        resolution,
      );
    }
    const hooks = [...snap.hooks, ...(req.ruleHooks?.get(address) ?? [])];
    const refusals: Refusal[] = [...choice.refusals, ...checkHooks(hooks)];
    const wantsVfio = target?.vfio ?? driver === 'vfio';
    if (wantsVfio) refusals.push(...checkIommu(dev, snap));
    refusals.push(...checkHostUse(dev, snap));
    if (isOnVfio(dev, snap)) refusals.push(...checkVfioUsers(dev, snap));
    refusals.push(...checkSriovPf(dev));
    if (wantsVfio) refusals.push(...checkGroupViable(dev, snap, moving));
    const blocking = refusals.filter((r) => !r.forceable || !req.force);
    for (const r of refusals)
      if (r.forceable && req.force) warnings.push(`forced past: ${r.message}`);
    if (!target || blocking.length > 0) {
      return refusedPlan(dev, snap, target, blocking, { unit, warnings, resolution });
    }
    const steps: Step[] = [];
    const hook = hookSteps(hooks, address);
    steps.push(...hook('pre-bind'));
    if (!loaded(snap, target.module)) steps.push({ op: 'modprobe', module: target.module! });
    // Override first: once it is set, no other driver can grab the device between unbind and probe.
    steps.push({ op: 'set-override', address, driver: target.driver });
    if (dev.driver) steps.push({ op: 'unbind', address, driver: dev.driver });
    steps.push(...hook('pre-probe'));
    steps.push({ op: 'probe', address });
    steps.push({ op: 'verify', address, driver: target.driver, vfio: target.vfio });
    steps.push(...hook('post-bind'));
    steps.push(...ownerSteps(dev, req));
    return plannedPlan(dev, snap, target, steps, { unit, warnings, resolution });
  });
  return { kind: 'bind', devices: groupAtomic(plans) };
}

/** VFIO nodes handed to an unprivileged VMM with --owner. vfioN is known only after the bind. */
function ownerSteps(dev: PciDevice, req: BindRequest): Step[] {
  if (!req.owner || !dev.iommuGroup) return [];
  const { uid, gid } = req.owner;
  const group = dev.iommuGroup;
  return [
    { op: 'chown', address: dev.address, node: 'group', group, uid, gid },
    { op: 'chown', address: dev.address, node: 'cdev', group, uid, gid },
  ];
}

/** A group moved together succeeds or fails together: one refused member refuses them all. */
function groupAtomic(plans: DevicePlan[]): DevicePlan[] {
  const badUnits = new Map<string, string>();
  for (const p of plans)
    if ((p.status === 'refused' || p.status === 'invalid') && p.unit !== p.address)
      badUnits.set(p.unit, p.address);
  return plans.map((p) => {
    const bad = badUnits.get(p.unit);
    if (bad === undefined || bad === p.address || p.status === 'refused' || p.status === 'invalid')
      return p;
    return {
      ...p,
      status: 'refused',
      steps: [],
      refusals: [
        {
          check: 'group-member',
          message: `${p.unit} moves as a whole and member ${bad} was refused`,
          forceable: false,
        },
      ],
    };
  });
}

/** Does some host (non-VFIO) module claim this device by its pci: aliases, and is one loaded? */
function hostDriverLoaded(dev: PciDevice, snap: Snapshot): boolean {
  const modalias = modaliasOf(dev);
  for (const [module, aliases] of snap.modules.aliases.pciByModule) {
    // Cheap test first: a few dozen modules are loaded, thousands have aliases.
    if (loaded(snap, module) && aliases.some((a) => aliasMatches(a, modalias))) return true;
  }
  return false;
}

export function planUnbind(snap: Snapshot, req: UnbindRequest): Plan {
  const plans = req.addresses.map((address): DevicePlan => {
    const dev = snap.devices.get(address);
    if (!dev) return invalid(address, `no PCI device ${address}`, address);
    const record = snap.records.get(address);
    const onVfio = isOnVfio(dev, snap);
    const restoreOverride = record?.originalOverride ?? null;
    const hostDriver = record?.originalDriver ?? null;
    const target = { driver: hostDriver, module: null, vfio: false };
    // Intent `host`: already on its host driver (isPlaced), or nothing to probe for.
    const settled = req.probeUnbound
      ? isPlaced({ kind: 'host' }, null, placement(dev, snap))
      : !onVfio && dev.driverOverride === restoreOverride && (dev.driver !== null || !record);
    if (settled) {
      const why = req.probeUnbound
        ? `already on its host driver ${dev.driver}`
        : `not on a VFIO driver${dev.driver ? ` (on ${dev.driver})` : ''}`;
      return devicePlan(dev, snap, {
        status: 'noop',
        target,
        steps: [],
        refusals: [],
        warnings: [why],
        unit: address,
      });
    }
    const hooks = [...snap.hooks, ...(req.ruleHooks?.get(address) ?? [])];
    const refusals = [...(onVfio ? checkVfioUsers(dev, snap) : []), ...checkHooks(hooks)];
    if (refusals.length > 0) return refusedPlan(dev, snap, target, refusals);
    const clear: Step = { op: 'set-override', address, driver: restoreOverride };
    // Already on a host driver with a stale override: clearing the override is all there is to do.
    if (!onVfio && dev.driver) return plannedPlan(dev, snap, target, [clear]);
    const hook = hookSteps(hooks, address);
    // A VF whose PF has sriov_drivers_autoprobe=0 is probed only by the driver its override
    // names (pci_device_can_probe()): name the host driver for the probe, clear it afterwards.
    const pf = dev.physfn ? snap.devices.get(dev.physfn) : undefined;
    const viaOverride = hostDriver !== null && pf?.sriov?.driversAutoprobe === false;
    const steps: Step[] = [
      ...hook('pre-unbind'),
      viaOverride ? { op: 'set-override', address, driver: hostDriver } : clear,
    ];
    if (dev.driver) steps.push({ op: 'unbind', address, driver: dev.driver });
    steps.push(...hook('pre-probe'));
    // As udev would on hotplug: load the host driver by modalias when none is loaded yet.
    if (!hostDriverLoaded(dev, snap))
      steps.push({ op: 'modprobe-alias', modalias: modaliasOf(dev) });
    steps.push({ op: 'probe', address });
    steps.push({ op: 'verify', address, driver: hostDriver, vfio: false });
    if (viaOverride) steps.push(clear);
    steps.push(...hook('post-unbind'));
    return plannedPlan(dev, snap, target, steps);
  });
  return { kind: 'unbind', devices: plans };
}

/**
 * Intent `none`: no driver at all. driver_override "none" names no driver, so nothing binds the
 * device again (not a hotplug probe, not a module load) until the override is cleared.
 */
export function planNone(
  snap: Snapshot,
  req: {
    readonly addresses: readonly string[];
    readonly ruleHooks?: ReadonlyMap<string, readonly Hook[]>;
  },
): Plan {
  const plans = req.addresses.map((address): DevicePlan => {
    const dev = snap.devices.get(address);
    if (!dev) return invalid(address, `no PCI device ${address}`, address);
    const target = { driver: null, module: null, vfio: false };
    if (isPlaced({ kind: 'none' }, null, placement(dev, snap))) {
      return devicePlan(dev, snap, {
        status: 'noop',
        target,
        steps: [],
        refusals: [],
        warnings: ['already without a driver (driver_override=none)'],
        unit: address,
      });
    }
    const hooks = [...snap.hooks, ...(req.ruleHooks?.get(address) ?? [])];
    const refusals: Refusal[] = [
      ...checkHooks(hooks),
      ...checkHostUse(dev, snap),
      ...checkSriovPf(dev),
    ];
    if (isOnVfio(dev, snap)) refusals.push(...checkVfioUsers(dev, snap));
    if (refusals.length > 0) return refusedPlan(dev, snap, target, refusals);
    const hook = hookSteps(hooks, address);
    const steps: Step[] = [...hook('pre-bind'), { op: 'set-override', address, driver: 'none' }];
    if (dev.driver) steps.push({ op: 'unbind', address, driver: dev.driver });
    steps.push({ op: 'verify-none', address }, ...hook('post-bind'));
    return plannedPlan(dev, snap, target, steps);
  });
  return { kind: 'bind', devices: plans };
}

export interface SriovRequest {
  readonly address: string;
  readonly numVfs: number;
  /** Set sriov_drivers_autoprobe to 0 first, so new VFs wait for their override. */
  readonly noAutoprobe: boolean;
}

/**
 * Size a PF's SR-IOV. Its driver stays; resizing destroys the existing VFs, so they must be idle.
 */
export function planSriov(snap: Snapshot, reqs: readonly SriovRequest[]): Plan {
  const plans = reqs.map((req): DevicePlan => {
    const dev = snap.devices.get(req.address);
    if (!dev) return invalid(req.address, `no PCI device ${req.address}`, req.address);
    const target = { driver: dev.driver, module: null, vfio: false };
    const refuse = (check: RefusalCheck, message: string) =>
      refusedPlan(dev, snap, target, [{ check, message, forceable: false }]);
    if (!dev.sriov)
      return refuse(
        'sriov',
        `${req.address} is not an SR-IOV physical function (no sriov_totalvfs); fix the rule's address`,
      );
    if (req.numVfs > dev.sriov.totalVfs)
      return refuse(
        'sriov',
        `${req.address} supports at most ${dev.sriov.totalVfs} VFs (sriov_totalvfs), the configuration asks for ${req.numVfs}`,
      );
    const autoprobe = req.noAutoprobe && dev.sriov.driversAutoprobe === true;
    if (dev.sriov.numVfs === req.numVfs) {
      return devicePlan(dev, snap, {
        status: 'noop',
        target,
        steps: [],
        refusals: [],
        warnings: [`already has ${req.numVfs} VFs`],
        unit: req.address,
      });
    }
    // The PF driver implements sriov_configure: without one the write fails with ENOENT.
    if (dev.driver === null)
      return refuse(
        'sriov',
        `${req.address} has no driver, and SR-IOV is configured by the PF's driver (sriov_numvfs gives ENOENT); bind its host driver first`,
      );
    const refusals: Refusal[] = [];
    for (const vf of dev.sriov.vfs) {
      const v = snap.devices.get(vf);
      if (!v) continue;
      for (const r of [
        ...checkHostUse(v, snap),
        ...(isOnVfio(v, snap) ? checkVfioUsers(v, snap) : []),
      ]) {
        refusals.push({
          check: r.check,
          message: `resizing destroys VF ${vf}, and ${r.message.replace(/, or --force$/, '')}`,
          forceable: false,
        });
      }
    }
    if (refusals.length) return refusedPlan(dev, snap, target, refusals);
    const steps: Step[] = [];
    if (autoprobe) steps.push({ op: 'sriov-autoprobe', address: req.address, value: false });
    steps.push({
      op: 'sriov-numvfs',
      address: req.address,
      numVfs: req.numVfs,
      from: dev.sriov.numVfs,
    });
    return plannedPlan(dev, snap, target, steps);
  });
  return { kind: 'sriov', devices: plans };
}
