// Turns the requested driver (`vfio` or a name) into the driver and module to bind, checking the
// ID table the kernel never checks: with driver_override set, pci_match_device() falls back to a
// dummy id (since v3.16), so any named driver binds; only its probe() may refuse.
import type { PciDevice } from '../host/pci';
import { modaliasOf } from '../host/pci';
import type { Snapshot } from '../read/snapshot';
import { moduleNormalize } from '../modules/fnmatch';
import {
  aliasMatches,
  resolve,
  VFIO_PCI_MODULE,
  type Candidate,
  type Resolution,
} from '../match/resolve';
import { DRIVER_NAME_EXCEPTIONS, driverNameForModule } from '../modules/loaded';
import { variantRule } from '../match/variants';
import { EXIT, VfioctlError } from '../util/diag';
import type { Intent } from '../config/intent';
import type { Refusal } from './types';

export { validateDriverName } from '../config/intent';

export interface Target {
  readonly driver: string;
  readonly module: string | null;
  readonly vfio: boolean;
}

/** Drivers meant to be bound by override, with no ID table of their own. */
export const OVERRIDE_DRIVERS: ReadonlySet<string> = new Set([
  'vfio_pci',
  'pci_stub',
  'uio_pci_generic',
]);

export function isVfioModule(snap: Snapshot, module: string | null, driver: string): boolean {
  if (
    module !== null &&
    (module === VFIO_PCI_MODULE ||
      snap.modules.aliases.vfioByModule.has(module) ||
      variantRule(module))
  )
    return true;
  return /vfio/.test(driver);
}

/** Module and driver for an explicit name: a registered driver, a module, or bad input. */
export function lookupDriver(
  snap: Snapshot,
  name: string,
): { driver: string; module: string | null } {
  const reg = snap.modules.drivers;
  if (reg.driverModule.has(name))
    return { driver: name, module: reg.driverModule.get(name) ?? null };
  const asModule = moduleNormalize(name);
  // A driver name that differs from its module (vfio-pci <- vfio_pci, xe-vfio-pci <- xe_vfio_pci).
  const fromException = Object.entries(DRIVER_NAME_EXCEPTIONS).find(([, d]) => d === name)?.[0];
  const module = fromException ?? asModule;
  const m = snap.modules;
  if (
    m.moduleFiles.has(module) ||
    m.builtin.has(module) ||
    m.aliases.pciByModule.has(module) ||
    m.aliases.vfioByModule.has(module) ||
    reg.moduleDrivers.has(module)
  ) {
    return { driver: driverNameForModule(reg, module), module };
  }
  throw new VfioctlError(
    `unknown driver '${name}': no PCI driver of that name is registered and kernel ${m.release ?? '(unknown)'} has no module '${module}' (see 'vfioctl show DEVICE' for the drivers that fit)`,
    EXIT.BAD_INPUT,
  );
}

export interface TargetChoice {
  readonly target: Target | null;
  /** The device's VFIO candidates the choice was made from (resolved once, carried in the plan). */
  readonly resolution: Resolution | null;
  readonly refusals: Refusal[];
  readonly warnings: string[];
}

/** `vfio`: the best usable candidate; warns about better-ranked ones that cannot be used. */
function chooseVfio(dev: PciDevice, snap: Snapshot, force: boolean): TargetChoice {
  const r = resolve(dev, snap, { ignoreSriovEnabled: force, explain: true });
  const warnings: string[] = [];
  if (!r.vfio) {
    return {
      target: null,
      resolution: r,
      refusals: [
        {
          check: 'no-vfio-driver',
          message: `no usable VFIO driver: ${r.reason}`,
          forceable: false,
        },
      ],
      warnings,
    };
  }
  const chosen = r.candidates.find((c) => c.usable) as Candidate;
  for (const c of r.candidates) {
    if (c === chosen) break;
    warnings.push(
      `${c.module} fits better but cannot be used (${c.reason}); using ${chosen.driver}`,
    );
  }
  for (const n of chosen.notes) warnings.push(`${chosen.driver}: ${n}`);
  return {
    target: { driver: r.vfio.driver, module: r.vfio.module, vfio: true },
    resolution: r,
    refusals: [],
    warnings,
  };
}

function chooseExplicit(dev: PciDevice, snap: Snapshot, name: string): TargetChoice {
  const { driver, module } = lookupDriver(snap, name);
  const vfio = isVfioModule(snap, module, driver);
  const refusals: Refusal[] = [];
  const warnings: string[] = [];
  const r = resolve(dev, snap, { explain: true });
  if (module === null || !OVERRIDE_DRIVERS.has(module)) {
    const table =
      module === null
        ? []
        : [
            ...(snap.modules.aliases.vfioByModule.get(module) ?? []),
            ...(snap.modules.aliases.pciByModule.get(module) ?? []),
          ];
    const modalias = modaliasOf(dev);
    if (table.length === 0) {
      refusals.push({
        check: 'id-table',
        message: `${driver}'s ID table is not visible (built in, or no aliases in modules.alias), so it cannot be checked against ${dev.vendor}:${dev.device}`,
        forceable: true,
      });
    } else if (!table.some((a) => aliasMatches(a, modalias))) {
      refusals.push({
        check: 'id-table',
        message: vfio
          ? `${driver} does not list ${dev.vendor}:${dev.device} in its ID table (the kernel would bind it anyway through driver_override); use --driver vfio for the best driver that does, or --force`
          : `${driver} is not a VFIO driver and does not list ${dev.vendor}:${dev.device} in its ID table: it would drive hardware it was not written for (refused even with --force)`,
        forceable: vfio,
      });
    }
  }
  if (module !== null) {
    const bl = snap.modules.blacklist.entries.get(module);
    if (bl)
      refusals.push({
        check: 'blacklist',
        message: `module ${module} is blacklisted (${bl}); remove the blacklist or use --force`,
        forceable: true,
      });
    // The same prerequisites the resolver applies to `vfio`, for an explicitly named variant.
    const c = r.candidates.find((x) => x.module === module);
    if (c && !c.usable && !c.reason?.startsWith('blacklisted')) {
      refusals.push({
        check: 'prerequisite',
        message: `${driver} cannot drive this device: ${c.reason}`,
        forceable: true,
      });
    } else if (c) for (const n of c.notes) warnings.push(`${driver}: ${n}`);
    if (!c && vfio && module !== VFIO_PCI_MODULE) {
      const rule = variantRule(module);
      if (rule?.vfOnly && !dev.physfn)
        refusals.push({
          check: 'prerequisite',
          message: `${driver} cannot drive this device: ${rule.vfOnly}`,
          forceable: true,
        });
    }
  }
  return { target: { driver, module, vfio }, resolution: r, refusals, warnings };
}

export function chooseTarget(
  dev: PciDevice,
  snap: Snapshot,
  requested: string,
  force: boolean,
): TargetChoice {
  return requested === 'vfio' ? chooseVfio(dev, snap, force) : chooseExplicit(dev, snap, requested);
}

/**
 * A bind's `--driver` (`vfio` or a name) as an intent: any other word is a driver name to look up.
 */
export function bindIntent(driver: string): Extract<Intent, { kind: 'vfio' | 'driver' }> {
  return driver === 'vfio' ? { kind: 'vfio' } : { kind: 'driver', name: driver };
}

/**
 * A configured `vfio` or driver intent (`none` and `host` name no driver: the caller's) on this
 * kernel: as chooseTarget (`force` only from `set --force`), but a name this kernel does not know
 * is an `error`, not a throw, since a configuration outlives kernels.
 */
export function resolveIntent(
  dev: PciDevice,
  snap: Snapshot,
  intent: Extract<Intent, { kind: 'vfio' | 'driver' }>,
  force = false,
): TargetChoice & { readonly error: string | null } {
  try {
    return {
      ...chooseTarget(dev, snap, intent.kind === 'vfio' ? 'vfio' : intent.name, force),
      error: null,
    };
  } catch (e) {
    if (e instanceof VfioctlError)
      return { target: null, resolution: null, refusals: [], warnings: [], error: e.message };
    throw e;
  }
}
