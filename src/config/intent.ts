// What a device should be on, parsed once from the configuration or the command line, and the
// one place that decides whether a device is where its intent wants it (status, converge, the
// planner's no-op checks, the boot outcome and the boot maps all ask here).
import { printable } from '../host/address';
import { EXIT, VfioctlError } from '../util/diag';

export type Intent =
  /** The best usable VFIO driver, re-resolved for every kernel. */
  | { readonly kind: 'vfio' }
  /** No driver at all: driver_override "none" names no driver, so nothing probes it. */
  | { readonly kind: 'none' }
  /** Its host driver, exempt from a broader rule: never driverless, never on a VFIO driver. */
  | { readonly kind: 'host' }
  /** This driver, checked against its ID table. */
  | { readonly kind: 'driver'; readonly name: string };

export type IntentKind = Intent['kind'];

/** Words that are intents, not driver names (no PCI driver is called any of them). */
export const RESERVED_INTENTS: readonly string[] = ['vfio', 'none', 'host'];

const DRIVER_NAME = /^[A-Za-z0-9_.:+-]{1,64}$/;

export function isDriverNameText(s: string): boolean {
  return DRIVER_NAME.test(s);
}

/** A driver name from the command line or a config file; bad input (exit 2) if it cannot be one. */
export function validateDriverName(name: string): string {
  if (!DRIVER_NAME.test(name)) {
    throw new VfioctlError(
      `'${printable(name)}' is not a driver name: use 'vfio' or a PCI driver/module name (letters, digits, '-', '_', '.'; at most 64 characters, no spaces, newlines or '/')`,
      EXIT.BAD_INPUT,
    );
  }
  return name;
}

/** `vfio`, `none`, `host` or a driver name; bad input (exit 2) otherwise. */
export function parseIntent(text: string): Intent {
  switch (text) {
    case 'vfio':
    case 'none':
    case 'host':
      return { kind: text };
    default:
      return { kind: 'driver', name: validateDriverName(text) };
  }
}

/** As parseIntent, null for what cannot be an intent (a persisted record from elsewhere). */
export function intentOrNull(text: string | null | undefined): Intent | null {
  return typeof text === 'string' && DRIVER_NAME.test(text) ? parseIntent(text) : null;
}

/** The intent as the configuration file and JSON output spell it. */
export function intentName(i: Intent): string {
  return i.kind === 'driver' ? i.name : i.kind;
}

/**
 * Does this intent move the device off its host driver (for the IOMMU-group check, the boot maps)?
 */
export function leavesHost(i: Intent): boolean {
  return i.kind !== 'host';
}

/** Where a device is now. */
export interface Placement {
  readonly driver: string | null;
  readonly override: string | null;
  /** Bound to some VFIO driver (vfio-dev/, or a VFIO module's driver). */
  readonly onVfio: boolean;
}

/**
 * Is the device where its intent wants it? `resolved`: the driver a `vfio` or driver intent
 * resolves to on this kernel (null when it cannot be resolved: then it is not there).
 */
export function isPlaced(intent: Intent, resolved: string | null, live: Placement): boolean {
  switch (intent.kind) {
    case 'none':
      return live.driver === null && live.override === 'none';
    case 'host':
      // A host driver bound, and no override that would hand it elsewhere at the next probe.
      return (
        live.driver !== null &&
        !live.onVfio &&
        (live.override === null || live.override === live.driver)
      );
    case 'vfio':
    case 'driver':
      return resolved !== null && live.driver === resolved;
  }
}
