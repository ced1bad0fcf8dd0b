// `vfioctl set DEVICE INTENT` / `unset DEVICE`: edit the configuration and apply it, with
// driverctl's --nosave (apply, do not save) and --noprobe (save, do not apply).
import { parseAddress } from '../host/address';
import { CONFIG_FILE } from '../config/types';
import { parseConfig, readConfigText } from '../config/load';
import { withIntent, withoutDevice } from '../config/edit';
import { validateDriverName } from '../plan/target';
import { readState, writeState } from '../persist/state';
import { EXIT, VfioctlError } from '../util/diag';
import { type Context, refuseForeignKernelWrite } from './context';
import { trust, unbindCommand, withWriteSession } from './bind';
import { converge } from './apply';
import { desiredState } from '../config/desired';
import { readSnapshot } from '../host/snapshot';
import { ruleLabel } from '../plan/converge';
import { saveConfig } from './install';

export interface SetOptions {
  nosave?: boolean;
  noprobe?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

function note(ctx: Context, opts: SetOptions, s: string): void {
  // With --json stdout is one JSON document; the notes go to stderr.
  (opts.json ? ctx.io.err : ctx.io.out)(`${s}\n`);
}

/** Writes the edited configuration and regenerates the boot maps from it. */
function save(ctx: Context, text: string, opts: SetOptions): void {
  saveConfig(ctx, text);
  note(ctx, opts, `saved ${CONFIG_FILE}`);
}

/** --nosave/--noprobe may also come before the verb (driverctl style); commander hands those to the program. */
function withFlags(ctx: Context, opts: SetOptions): SetOptions {
  return { ...opts, nosave: !!(opts.nosave || ctx.flags.nosave), noprobe: !!(opts.noprobe || ctx.flags.noprobe) };
}

export async function setCommand(ctx: Context, device: string, intent: string, given: SetOptions): Promise<number> {
  const opts = withFlags(ctx, given);
  const address = parseAddress(device);
  validateDriverName(intent);
  const policy = trust(ctx);
  refuseForeignKernelWrite(ctx, opts.dryRun || opts.noprobe);
  // The whole read-modify-write happens under the lock: parallel `set`s each keep their rule.
  const edit = () => {
    // Refuses a broken, untrusted or hostile file before it is edited.
    const text = readConfigText(ctx.root, policy);
    if (text !== undefined) parseConfig(text, CONFIG_FILE);
    if (!opts.noprobe && !ctx.root.exists(`/sys/bus/pci/devices/${address}`)) {
      throw new VfioctlError(`no PCI device ${address}: nothing to apply; use --noprobe to configure it for when it appears`, EXIT.BAD_INPUT);
    }
    return withIntent(text, address, intent);
  };
  if (opts.dryRun) {
    const edited = edit();
    note(ctx, opts, edited.changed ? `would ${opts.nosave ? 'apply (not save)' : 'save'} rule: ${address} -> ${intent}` : `${address} is already configured as ${intent}`);
    return opts.noprobe ? EXIT.OK : converge(ctx, policy, edited.config, [address], { dryRun: true, json: !!opts.json });
  }
  return withWriteSession(ctx, async (session) => {
    const edited = edit();
    if (opts.noprobe) {
      if (!opts.nosave && edited.changed) save(ctx, edited.text, opts);
      note(ctx, opts, `${address}: not applied now (--noprobe); 'vfioctl apply ${address}' applies it`);
      return EXIT.OK;
    }
    // As driverctl: applied first, saved only when that worked, so a refused or failed device never
    // comes back at the next boot.
    const code = await converge(ctx, policy, edited.config, [address], { json: !!opts.json }, session);
    if (opts.nosave || !edited.changed) return code;
    if (code === EXIT.OK) save(ctx, edited.text, opts);
    else ctx.io.err(`vfioctl: ${address}: not saved to ${CONFIG_FILE}, because it was not applied\n`);
    return code;
  });
}

export async function unsetCommand(ctx: Context, device: string, given: SetOptions): Promise<number> {
  const opts = withFlags(ctx, given);
  const address = parseAddress(device);
  const policy = trust(ctx);
  refuseForeignKernelWrite(ctx, opts.dryRun || opts.noprobe);
  const edit = () => {
    const edited = withoutDevice(readConfigText(ctx.root, policy), address);
    if (!edited.changed) ctx.io.err(`vfioctl: warning: ${address} has no rule of its own in ${CONFIG_FILE}${opts.noprobe ? '' : '; returning it to its host driver anyway'}\n`);
    const still = desiredState(edited.config, readSnapshot(ctx.root, { kernel: ctx.kernel, only: [address], shallow: true }).devices).desires.get(address);
    if (still?.intent) {
      ctx.io.err(`vfioctl: warning: ${address} is still selected by ${ruleLabel(still)} (intent ${still.intent}): 'vfioctl apply' and the next boot bind it again; add an address rule for it (e.g. 'vfioctl set ${address} none') or change that rule\n`);
    }
    return edited;
  };
  if (opts.dryRun) {
    const edited = edit();
    note(ctx, opts, edited.changed ? `would ${opts.nosave ? 'leave' : 'remove'} the rule for ${address} ${opts.nosave ? 'in place' : `from ${CONFIG_FILE}`}` : `no rule to remove`);
    return opts.noprobe ? EXIT.OK : unbindCommand(ctx, [address], { dryRun: true, json: !!opts.json });
  }
  return withWriteSession(ctx, async (session) => {
    const edited = edit();
    if (!opts.nosave && edited.changed) save(ctx, edited.text, opts);
    if (opts.noprobe) return EXIT.OK;
    // As driverctl's unset-override: the device goes back to its host driver now.
    const code = await unbindCommand(ctx, [address], { json: !!opts.json }, session);
    if (code === EXIT.OK) {
      const state = readState(ctx.root);
      if (state.devices[address]) {
        const { [address]: _gone, ...devices } = state.devices;
        writeState(ctx.root, { devices });
      }
    }
    return code;
  });
}
