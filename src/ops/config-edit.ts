// Configuration edits (`set`, `unset`, and driverctl's verbs over them): read, edit and write
// vfioctl.json under the lock, applying first and saving only what was applied (as driverctl
// does), with --nosave (apply, do not save) and --noprobe (save, do not apply).
import { CONFIG_FILE } from '../config/types';
import { parseConfig, readConfigText } from '../config/load';
import { sameSelector, withRuleIntent, withoutRule } from '../config/edit';
import { desiredState } from '../config/desired';
import { describeSelector, isBroad, type Config, type Selector } from '../config/types';
import { readSnapshot } from '../read/snapshot';
import { ruleLabel } from '../plan/converge';
import { intentName, parseIntent } from '../config/intent';
import { readState, writeState } from '../persist/state';
import { EXIT, VfioctlError } from '../util/diag';
import type { WriteSession } from '../apply/session';
import { saveConfig } from './boot-layers';
import { converge, convergeExitCode, type ConvergeReport } from './converge';
import { operationExitCode, type Host, type OperationResult } from './host';
import { groupMembers, selectDevices, selectorOption } from './select';

export interface ConfigEditOptions {
  readonly nosave?: boolean;
  readonly noprobe?: boolean;
  readonly dryRun?: boolean;
  /** `set --force`: apply past forceable refusals, as `bind --force`. */
  readonly force?: boolean;
  /**
   * `set --acknowledge-broad-match`: the rule by id or class gets "acknowledgeBroadMatch": true,
   * so that the boot layers apply it too.
   */
  readonly acknowledgeBroadMatch?: boolean;
}

/**
 * What `set` and `unset` configure: one device's address rule, with `group` an address rule for
 * every member of its IOMMU group (bridges excluded), or a rule by id, class or vfsOf.
 */
export type EditTarget =
  | { readonly kind: 'device'; readonly address: string; readonly group?: boolean }
  | { readonly kind: 'rule'; readonly selector: Exclude<Selector, { kind: 'address' }> };

export interface ConfigEditReport {
  /** The device, or the rule's selector (`id 8086:10d3`). */
  readonly address: string;
  /** The devices the edit applied to (or would): the group's members, a selector's matches. */
  readonly addresses: readonly string[];
  /** The rule changed (or would): false when the file already said so. */
  readonly changed: boolean;
  readonly saved: boolean;
  /** What `set` applied (a converge of these devices), or what `unset` released. */
  readonly applied: ConvergeReport | null;
  readonly released: OperationResult | null;
  /** What was (or would be) done with the file, before and after the devices' change. */
  readonly before: readonly string[];
  readonly after: readonly string[];
  readonly warnings: readonly string[];
}

export function editExitCode(r: ConfigEditReport): number {
  return r.applied
    ? convergeExitCode(r.applied)
    : r.released
      ? operationExitCode(r.released)
      : EXIT.OK;
}

const label = (t: EditTarget) => (t.kind === 'device' ? t.address : describeSelector(t.selector));

interface Edited {
  readonly text: string;
  readonly config: Config;
  readonly changed: boolean;
  /** Rules (by label) the edit changes. */
  readonly rules: readonly string[];
  readonly addresses: readonly string[];
  readonly units: ReadonlyMap<string, string> | null;
}

/** The file with `target` given `intent`, and the devices to apply it to now. */
function editSet(host: Host, target: EditTarget, intent: string, opts: ConfigEditOptions): Edited {
  // Refuses a broken, untrusted or hostile file before it is edited.
  const text = readConfigText(host.root, host.trust);
  if (text !== undefined) parseConfig(text, CONFIG_FILE);
  let selectors: Selector[];
  let addresses: string[];
  let units: Map<string, string> | null = null;
  if (target.kind === 'rule') {
    selectors = [target.selector];
    addresses = [
      ...selectDevices(host.root, [], [target.selector], {
        allowEmpty: opts.noprobe,
        hint: '; use --noprobe to configure it for devices that appear later',
      }).addresses,
    ];
  } else if (target.group) {
    const g = groupMembers(host.root, target.address);
    addresses = g.members;
    selectors = g.members.map((address) => ({ kind: 'address', address }));
    // One unit: the group is applied all or nothing, as `bind --group`.
    units = new Map(g.members.map((a) => [a, `group ${g.group}`]));
  } else {
    if (!opts.noprobe && !host.root.exists(`/sys/bus/pci/devices/${target.address}`)) {
      throw new VfioctlError(
        `no PCI device ${target.address}: nothing to apply; use --noprobe to configure it for when it appears`,
        EXIT.BAD_INPUT,
      );
    }
    addresses = [target.address];
    selectors = [{ kind: 'address', address: target.address }];
  }
  let cur = text;
  let config: Config | null = null;
  const rules: string[] = [];
  for (const sel of selectors) {
    const e = withRuleIntent(cur, sel, intent, opts);
    if (e.changed) rules.push(describeSelector(sel));
    cur = e.text;
    config = e.config;
  }
  return { text: cur ?? '', config: config!, changed: rules.length > 0, rules, addresses, units };
}

/** The target's intent in the configuration, applied (unless noprobe) and saved (unless nosave). */
export async function setIntent(
  host: Host,
  target: string | EditTarget,
  intent: string,
  opts: ConfigEditOptions,
): Promise<ConfigEditReport> {
  const t: EditTarget = typeof target === 'string' ? { kind: 'device', address: target } : target;
  parseIntent(intent);
  if (opts.acknowledgeBroadMatch) refuseNeedlessAcknowledge(t, opts);
  const name = label(t);
  const base = { address: name, released: null };
  if (opts.dryRun) {
    const edited = editSet(host, t, intent, opts);
    const ack = opts.acknowledgeBroadMatch ? ' (acknowledgeBroadMatch)' : '';
    const before = edited.changed
      ? edited.rules.map(
          (r) => `would ${opts.nosave ? 'apply (not save)' : 'save'} rule: ${r} -> ${intent}${ack}`,
        )
      : [`${name} is already configured as ${intent}`];
    if (t.kind === 'rule' || (t.kind === 'device' && t.group))
      before.push(
        `${t.kind === 'rule' ? selectorOption(t.selector) : `--group of ${t.address}`} selects: ${edited.addresses.join(', ') || '(no device now)'}`,
      );
    const applied =
      opts.noprobe || edited.addresses.length === 0
        ? null
        : await converge(host, edited.config, {
            only: edited.addresses,
            dryRun: true,
            force: opts.force,
            ...(edited.units ? { units: edited.units } : {}),
          });
    return {
      ...base,
      addresses: edited.addresses,
      changed: edited.changed,
      saved: false,
      applied,
      before,
      after: [],
      warnings: [],
    };
  }
  // The whole read-modify-write happens under the lock: parallel `set`s each keep their rule.
  return host.session(async (session: WriteSession) => {
    const edited = editSet(host, t, intent, opts);
    const after: string[] = [];
    const warnings: string[] = [];
    const save = () => {
      warnings.push(...saveConfig(host, edited.text));
      after.push(`saved ${CONFIG_FILE}`, ...bootNote(t, edited.config, intent));
      return true;
    };
    const report = (saved: boolean, applied: ConvergeReport | null) => ({
      ...base,
      addresses: edited.addresses,
      changed: edited.changed,
      saved,
      applied,
      before: [],
      after,
      warnings,
    });
    if (opts.noprobe || edited.addresses.length === 0) {
      const saved = !opts.nosave && edited.changed && save();
      after.push(
        `${name}: not applied now (${opts.noprobe ? '--noprobe' : 'no device selected'}); 'vfioctl apply${t.kind === 'device' ? ` ${t.address}` : ''}' applies it`,
      );
      return report(saved, null);
    }
    // Applied first, saved only when that worked: a refused or failed device never comes back at
    // the next boot.
    const applied = await converge(
      host,
      edited.config,
      {
        only: edited.addresses,
        force: opts.force,
        ...(edited.units ? { units: edited.units } : {}),
      },
      session,
    );
    let saved = false;
    if (!opts.nosave && edited.changed) {
      if (convergeExitCode(applied) === EXIT.OK) saved = save();
      else warnings.push(`${name}: not saved to ${CONFIG_FILE}, because it was not applied`);
    }
    return report(saved, applied);
  });
}

/**
 * Only a rule by id or class waits for "acknowledgeBroadMatch" at boot (it could select a device
 * the host needs); for any other rule, or with nothing saved, the option would do nothing.
 */
function refuseNeedlessAcknowledge(t: EditTarget, opts: ConfigEditOptions): void {
  const broad = t.kind === 'rule' && isBroad(t.selector);
  if (broad && !opts.nosave) return;
  const rules =
    t.kind === 'rule'
      ? `the rule ${selectorOption(t.selector)} selects by physical function`
      : `the rule${t.group ? `s for --group of ${t.address} select` : ` for ${t.address} selects`} by address`;
  const why = broad
    ? 'with --nosave no rule is saved, and the acknowledgement is for the boot, which applies saved rules'
    : `${rules}, which the boot applies without it; it is for rules by --id or --class (they could select a device the host needs)`;
  throw new VfioctlError(`set --acknowledge-broad-match: ${why}`, EXIT.BAD_INPUT);
}

/** What the boot does with the saved rule: a rule by id or class waits for its acknowledgement. */
function bootNote(t: EditTarget, config: Config, intent: string): string[] {
  if (t.kind !== 'rule' || !isBroad(t.selector)) return [];
  const kind = t.selector.kind;
  const rule = config.rules.find((r) => sameSelector(r.selector, t.selector));
  return rule?.acknowledgeBroadMatch
    ? [`the rule by ${kind} has "acknowledgeBroadMatch": true: the boot applies it too`]
    : [
        `rules by ${kind} are applied at boot only with "acknowledgeBroadMatch": true: 'vfioctl set ${selectorOption(t.selector)} ${intent} --acknowledge-broad-match' adds it`,
      ];
}

/**
 * The devices an unset gives back: the device itself, or those the removed rule governed that no
 * other rule governs now (with a warning for those another rule still selects).
 */
function editUnset(host: Host, t: EditTarget, opts: ConfigEditOptions) {
  const text = readConfigText(host.root, host.trust);
  const selector: Selector =
    t.kind === 'device' ? { kind: 'address', address: t.address } : t.selector;
  const edited = withoutRule(text, selector);
  const warnings: string[] = [];
  const name = label(t);
  let addresses: string[];
  if (t.kind === 'device') {
    if (!edited.changed)
      warnings.push(
        `${t.address} has no rule of its own in ${CONFIG_FILE}${opts.noprobe ? '' : '; returning it to its host driver anyway'}`,
      );
    addresses = [t.address];
  } else {
    if (!edited.changed)
      throw new VfioctlError(
        `${CONFIG_FILE} has no rule matching ${name}: nothing to remove ('vfioctl status' lists the configured devices and their rules)`,
        EXIT.BAD_INPUT,
      );
    addresses = [...selectDevices(host.root, [], [t.selector], { allowEmpty: true }).addresses];
  }
  const devices = readSnapshot(host.root, {
    kernel: host.kernel,
    only: addresses,
    shallow: true,
  }).devices;
  const old = text === undefined ? null : desiredState(parseConfig(text, CONFIG_FILE), devices);
  const now = desiredState(edited.config, devices);
  const release: string[] = [];
  for (const address of addresses) {
    const still = now.desires.get(address);
    // A more specific rule governed it all along: the removed rule never applied to it.
    const was = old?.desires.get(address);
    if (t.kind === 'rule' && (!was || !sameSelector(was.rule.selector, selector))) continue;
    if (still?.intent) {
      warnings.push(
        `${address} is still selected by ${ruleLabel(still)} (intent ${intentName(still.intent)}): 'vfioctl apply' and the next boot bind it again; keep it on its host driver with 'vfioctl set ${address} host', or change that rule`,
      );
      if (t.kind === 'rule') continue;
    }
    release.push(address);
  }
  return { edited, warnings, release };
}

/**
 * Removes the target's rule (unless nosave) and returns its devices to their host drivers (unless
 * noprobe).
 */
export async function unsetDevice(
  host: Host,
  target: string | EditTarget,
  opts: ConfigEditOptions,
): Promise<ConfigEditReport> {
  const t: EditTarget = typeof target === 'string' ? { kind: 'device', address: target } : target;
  const name = label(t);
  if (opts.dryRun) {
    const { edited, warnings, release } = editUnset(host, t, opts);
    const before = [
      edited.changed
        ? `would ${opts.nosave ? 'leave' : 'remove'} the rule for ${name} ${opts.nosave ? 'in place' : `from ${CONFIG_FILE}`}`
        : `no rule to remove`,
    ];
    if (t.kind === 'rule')
      before.push(
        `${selectorOption(t.selector)}: would give back ${release.join(', ') || 'no device'}`,
      );
    const released =
      opts.noprobe || release.length === 0
        ? null
        : await host.unbind({ addresses: release }, { dryRun: true });
    return {
      address: name,
      addresses: release,
      changed: edited.changed,
      saved: false,
      applied: null,
      released,
      before,
      after: [],
      warnings,
    };
  }
  return host.session(async (session) => {
    const { edited, warnings, release } = editUnset(host, t, opts);
    const after: string[] = [];
    let saved = false;
    if (!opts.nosave && edited.changed) {
      warnings.push(...saveConfig(host, edited.text));
      after.push(`saved ${CONFIG_FILE}`);
      saved = true;
    }
    const report = (released: OperationResult | null) => ({
      address: name,
      addresses: release,
      changed: edited.changed,
      saved,
      applied: null,
      released,
      before: [],
      after,
      warnings,
    });
    if (opts.noprobe || release.length === 0) return report(null);
    // As driverctl's unset-override: the devices go back to their host drivers now.
    const released = await host.unbind({ addresses: release }, {}, session);
    const ok = new Set(
      released.results
        .filter((r) => r.status === 'ok' || r.status === 'noop')
        .map((r) => r.address),
    );
    const state = readState(host.root);
    const gone = Object.keys(state.devices).filter((a) => ok.has(a));
    if (gone.length)
      writeState(host.root, {
        devices: Object.fromEntries(Object.entries(state.devices).filter(([a]) => !ok.has(a))),
      });
    return report(released);
  });
}
