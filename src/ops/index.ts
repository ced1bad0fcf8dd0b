// vfioctl as a library, for orchestrators written in Node (`require('vfioctl')`): the same
// operations the CLI runs, with the same lock, journal, checks and rollback, returning typed data.
// Errors are VfioctlError with the CLI's exit code (1 failed, 2 bad input, 3 refused, 4 lock).
import { loadConfig } from '../config/load';
import { CONFIG_FILE, type Config } from '../config/types';
import { parseAddress } from '../host/address';
import { validateDriverName } from '../plan/target';
import { converge, convergeExitCode, type ConvergeOptions, type ConvergeReport } from './converge';
import {
  Host,
  operationExitCode,
  uniqueAddresses,
  type HostOptions,
  type OperationResult,
  type PlannedOperation,
} from './host';
import { list, show, type DeviceView } from './inventory';
import { status, statusExitCode, type StatusReport } from './status';
import {
  libvirtHook,
  libvirtXml,
  type HostdevXml,
  type LibvirtHookReport,
  type LibvirtHookRequest,
} from './libvirt';

export { EXIT, VfioctlError } from '../util/diag';
export { ConfigError } from '../config/load';
export { LockTimeout } from '../apply/lock';
export { StalePlanError, exitCodeOf } from './host';
export type {
  HostOptions,
  HostEvents,
  OperationResult,
  PlannedOperation,
  DeviceResult,
  Progress,
  Recovery,
  RecoveryReport,
} from './host';
export type { ConvergeOptions, ConvergeReport, ConvergeResult } from './converge';
export type { DeviceStatus, Drift, StatusReport } from './status';
export type { DeviceView } from './inventory';
export type {
  HostdevXml,
  LibvirtHookReport,
  LibvirtHookRequest,
  QemuHookOperation,
} from './libvirt';
export type { Config, Rule } from '../config/types';
export type { Intent, Placement } from '../config/intent';
export type { Plan, DevicePlan, Step, Refusal, RefusalCheck } from '../plan/types';
export type { InstallReport } from './boot-layers';
export type { LeftOut, BootMap } from '../boot/map';
export { operationExitCode, convergeExitCode, statusExitCode };

/**
 * What to plan: a bind to `vfio` (the best usable VFIO driver, the default) or a named driver, or
 * an unbind.
 */
export type PlanRequest =
  | {
      readonly kind: 'bind';
      readonly addresses: readonly string[];
      readonly driver?: string;
      readonly force?: boolean;
      readonly group?: boolean;
    }
  | { readonly kind: 'unbind'; readonly addresses: readonly string[] };

export class VfioctlHost extends Host {
  /** Every PCI device (read-only). */
  list(): { devices: DeviceView[]; warnings: readonly string[] } {
    return list(this);
  }

  /** One device with every VFIO candidate, best first (read-only; bad input when absent). */
  show(address: string): { device: DeviceView; warnings: readonly string[] } {
    return show(this, parseAddress(address));
  }

  /** Pure after one read of the host: give it to apply(). */
  override plan(request: PlanRequest | Parameters<Host['plan']>[0]): PlannedOperation {
    const addresses = uniqueAddresses(request.addresses);
    if (request.kind === 'unbind') return super.plan({ kind: 'unbind', addresses });
    const r = request as Extract<PlanRequest, { kind: 'bind' }>;
    return super.plan({
      kind: 'bind',
      addresses,
      driver: validateDriverName(r.driver ?? 'vfio'),
      force: !!r.force,
      group: !!r.group,
    });
  }

  /** The configuration under the root, or another file (refused when untrusted or broken). */
  config(file: string = CONFIG_FILE): Config {
    return loadConfig(this.root, this.trust, file);
  }

  /** Converge the host to a configuration (default: the host's own file). */
  converge(config: Config = this.config(), opts: ConvergeOptions = {}): Promise<ConvergeReport> {
    return converge(this, config, opts);
  }

  /** Configured devices and their drift (read-only). */
  status(): StatusReport {
    return status(this);
  }

  /**
   * libvirt's qemu hook: `prepare begin` binds the domain's managed='no' PCI hostdevs, `release
   * end` gives them back.
   */
  libvirtHook(request: LibvirtHookRequest): Promise<LibvirtHookReport> {
    return libvirtHook(this, request);
  }

  /** `<hostdev managed='no'>` elements for devices (read-only). */
  libvirtXml(
    addresses: readonly string[],
    opts: { driverModel?: boolean } = {},
  ): { devices: HostdevXml[]; warnings: string[] } {
    return libvirtXml(this, uniqueAddresses(addresses), opts);
  }
}

export function openHost(options: HostOptions = {}): VfioctlHost {
  return new VfioctlHost(options);
}

/** The exit code the CLI would give an operation's outcome. */
export function exitCode(r: OperationResult | ConvergeReport): number {
  return 'phases' in r ? convergeExitCode(r) : operationExitCode(r);
}
