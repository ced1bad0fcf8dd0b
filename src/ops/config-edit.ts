// Configuration edits (`set`, `unset`, and driverctl's verbs over them): read, edit and write
// vfioctl.json under the lock, applying first and saving only what was applied (as driverctl
// does), with --nosave (apply, do not save) and --noprobe (save, do not apply).
import { CONFIG_FILE } from '../config/types';
import { parseConfig, readConfigText } from '../config/load';
import { withIntent, withoutDevice } from '../config/edit';
import { desiredState } from '../config/desired';
import { readSnapshot } from '../read/snapshot';
import { ruleLabel } from '../plan/converge';
import { intentName } from '../config/intent';
import { validateDriverName } from '../plan/target';
import { readState, writeState } from '../persist/state';
import { EXIT, VfioctlError } from '../util/diag';
import type { WriteSession } from '../apply/session';
import { saveConfig } from './boot-layers';
import { converge, convergeExitCode, type ConvergeReport } from './converge';
import { operationExitCode, type Host, type OperationResult } from './host';

export interface ConfigEditOptions {
  readonly nosave?: boolean;
  readonly noprobe?: boolean;
  readonly dryRun?: boolean;
}

export interface ConfigEditReport {
  readonly address: string;
  /** The rule changed (or would): false when the file already said so. */
  readonly changed: boolean;
  readonly saved: boolean;
  /** What `set` applied (a converge of this device), or what `unset` released. */
  readonly applied: ConvergeReport | null;
  readonly released: OperationResult | null;
  /** What was (or would be) done with the file, before and after the device's change. */
  readonly before: readonly string[];
  readonly after: readonly string[];
  readonly warnings: readonly string[];
}

export function editExitCode(r: ConfigEditReport): number {
  return r.applied ? convergeExitCode(r.applied) : r.released ? operationExitCode(r.released) : EXIT.OK;
}

/** DEVICE's intent in the configuration, applied (unless noprobe) and saved (unless nosave). */
export async function setIntent(host: Host, address: string, intent: string, opts: ConfigEditOptions): Promise<ConfigEditReport> {
  validateDriverName(intent);
  const edit = () => {
    // Refuses a broken, untrusted or hostile file before it is edited.
    const text = readConfigText(host.root, host.trust);
    if (text !== undefined) parseConfig(text, CONFIG_FILE);
    if (!opts.noprobe && !host.root.exists(`/sys/bus/pci/devices/${address}`)) {
      throw new VfioctlError(`no PCI device ${address}: nothing to apply; use --noprobe to configure it for when it appears`, EXIT.BAD_INPUT);
    }
    return withIntent(text, address, intent);
  };
  const base = { address, released: null, warnings: [] as string[] };
  if (opts.dryRun) {
    const edited = edit();
    const before = [edited.changed ? `would ${opts.nosave ? 'apply (not save)' : 'save'} rule: ${address} -> ${intent}` : `${address} is already configured as ${intent}`];
    const applied = opts.noprobe ? null : await converge(host, edited.config, { only: [address], dryRun: true });
    return { ...base, changed: edited.changed, saved: false, applied, before, after: [] };
  }
  // The whole read-modify-write happens under the lock: parallel `set`s each keep their rule.
  return host.session(async (session: WriteSession) => {
    const edited = edit();
    const after: string[] = [];
    const warnings: string[] = [];
    const save = () => {
      warnings.push(...saveConfig(host, edited.text));
      after.push(`saved ${CONFIG_FILE}`);
      return true;
    };
    if (opts.noprobe) {
      const saved = !opts.nosave && edited.changed && save();
      after.push(`${address}: not applied now (--noprobe); 'vfioctl apply ${address}' applies it`);
      return { ...base, changed: edited.changed, saved, applied: null, before: [], after, warnings };
    }
    // Applied first, saved only when that worked: a refused or failed device never comes back at
    // the next boot.
    const applied = await converge(host, edited.config, { only: [address] }, session);
    let saved = false;
    if (!opts.nosave && edited.changed) {
      if (convergeExitCode(applied) === EXIT.OK) saved = save();
      else warnings.push(`${address}: not saved to ${CONFIG_FILE}, because it was not applied`);
    }
    return { ...base, changed: edited.changed, saved, applied, before: [], after, warnings };
  });
}

/** Removes DEVICE's own rule (unless nosave) and returns it to its host driver (unless noprobe). */
export async function unsetDevice(host: Host, address: string, opts: ConfigEditOptions): Promise<ConfigEditReport> {
  const edit = () => {
    const edited = withoutDevice(readConfigText(host.root, host.trust), address);
    const warnings: string[] = [];
    if (!edited.changed) warnings.push(`${address} has no rule of its own in ${CONFIG_FILE}${opts.noprobe ? '' : '; returning it to its host driver anyway'}`);
    const still = desiredState(edited.config, readSnapshot(host.root, { kernel: host.kernel, only: [address], shallow: true }).devices).desires.get(address);
    if (still?.intent) {
      warnings.push(`${address} is still selected by ${ruleLabel(still)} (intent ${intentName(still.intent)}): 'vfioctl apply' and the next boot bind it again; keep it on its host driver with 'vfioctl set ${address} host', or change that rule`);
    }
    return { edited, warnings };
  };
  if (opts.dryRun) {
    const { edited, warnings } = edit();
    const before = [edited.changed ? `would ${opts.nosave ? 'leave' : 'remove'} the rule for ${address} ${opts.nosave ? 'in place' : `from ${CONFIG_FILE}`}` : `no rule to remove`];
    const released = opts.noprobe ? null : await host.unbind({ addresses: [address] }, { dryRun: true });
    return { address, changed: edited.changed, saved: false, applied: null, released, before, after: [], warnings };
  }
  return host.session(async (session) => {
    const { edited, warnings } = edit();
    const after: string[] = [];
    let saved = false;
    if (!opts.nosave && edited.changed) {
      warnings.push(...saveConfig(host, edited.text));
      after.push(`saved ${CONFIG_FILE}`);
      saved = true;
    }
    if (opts.noprobe) return { address, changed: edited.changed, saved, applied: null, released: null, before: [], after, warnings };
    // As driverctl's unset-override: the device goes back to its host driver now.
    const released = await host.unbind({ addresses: [address] }, {}, session);
    if (operationExitCode(released) === EXIT.OK) {
      const state = readState(host.root);
      if (state.devices[address]) {
        const { [address]: _gone, ...devices } = state.devices;
        writeState(host.root, { devices });
      }
    }
    return { address, changed: edited.changed, saved, applied: null, released, before: [], after, warnings };
  });
}
