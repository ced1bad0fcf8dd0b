// `vfioctl set DEVICE INTENT` / `unset DEVICE` (ops/config-edit.ts), rendered; driverctl's
// --nosave/--noprobe work before the verb too. DEVICE may be a network interface name; --group
// configures DEVICE's whole IOMMU group, --id/--class/--vfs-of write (or remove) a rule of that
// kind.
import {
  editExitCode,
  setIntent,
  unsetDevice,
  type ConfigEditReport,
  type EditTarget,
} from '../ops/config-edit';
import { deviceAddress, selectorOption, selectorsOf, type SelectorArgs } from '../ops/select';
import { EXIT, VfioctlError } from '../util/diag';
import { type Context, printWarnings, refuseForeignKernelWrite, trust } from './context';
import { renderConverge, renderResults } from './render';

export interface SetOptions extends SelectorArgs {
  nosave?: boolean;
  noprobe?: boolean;
  dryRun?: boolean;
  json?: boolean;
  force?: boolean;
  group?: boolean;
  /** set only: "acknowledgeBroadMatch": true on the rule by --id or --class. */
  acknowledgeBroadMatch?: boolean;
}

/**
 * --nosave/--noprobe may also come before the verb (driverctl style); commander hands those to the
 * program.
 */
function withFlags(ctx: Context, opts: SetOptions): SetOptions {
  return {
    ...opts,
    nosave: !!(opts.nosave || ctx.flags.nosave),
    noprobe: !!(opts.noprobe || ctx.flags.noprobe),
  };
}

function render(ctx: Context, r: ConfigEditReport, opts: SetOptions): number {
  // With --json stdout is one JSON document; the notes go to stderr.
  const note = (s: string) => (opts.json ? ctx.io.err : ctx.io.out)(`${s}\n`);
  r.before.forEach(note);
  if (r.applied) renderConverge(ctx, r.applied, opts.json);
  if (r.released) {
    printWarnings(ctx, r.released.warnings);
    if (opts.json)
      ctx.io.out(
        JSON.stringify(
          { command: 'unbind', dryRun: r.released.dryRun, results: r.released.results },
          null,
          2,
        ) + '\n',
      );
    else renderResults(ctx, 'unbind', r.released.plan, r.released.results, r.released.dryRun);
  }
  r.after.forEach(note);
  printWarnings(ctx, r.warnings);
  return editExitCode(r);
}

/**
 * One DEVICE (address or interface name), or exactly one selector: the rule `set`/`unset` edits.
 */
function target(
  ctx: Context,
  verb: string,
  device: string | undefined,
  opts: SetOptions,
): EditTarget {
  const selectors = selectorsOf(opts);
  if (selectors.length + (device === undefined ? 0 : 1) !== 1) {
    throw new VfioctlError(
      `${verb}: give one DEVICE (PCI address or network interface) or one of --id, --class, --vfs-of: each edits one rule`,
      EXIT.BAD_INPUT,
    );
  }
  const s = selectors[0];
  if (s !== undefined) {
    if (opts.group)
      throw new VfioctlError(
        `${verb}: --group goes with a DEVICE, not with ${selectorOption(s)}`,
        EXIT.BAD_INPUT,
      );
    return { kind: 'rule', selector: s as Extract<EditTarget, { kind: 'rule' }>['selector'] };
  }
  return { kind: 'device', address: deviceAddress(ctx.root, device!), group: !!opts.group };
}

/**
 * `set DEVICE INTENT`, or `set --id|--class|--vfs-of X INTENT` (then the first argument is the
 * intent).
 */
export async function setCommand(
  ctx: Context,
  device: string,
  intent: string | undefined,
  given: SetOptions,
): Promise<number> {
  const opts = withFlags(ctx, given);
  const [dev, want] = intent === undefined ? [undefined, device] : [device, intent];
  if (dev === undefined && selectorsOf(opts).length === 0)
    throw new VfioctlError(
      `set: missing INTENT: 'vfioctl set DEVICE INTENT' (vfio, none, host or a driver name)`,
      EXIT.BAD_INPUT,
    );
  const t = target(ctx, 'set', dev, opts);
  trust(ctx);
  refuseForeignKernelWrite(ctx, opts.dryRun || opts.noprobe);
  return render(ctx, await setIntent(ctx.host, t, want, opts), opts);
}

export async function unsetCommand(
  ctx: Context,
  device: string | undefined,
  given: SetOptions,
): Promise<number> {
  const opts = withFlags(ctx, given);
  const t = target(ctx, 'unset', device, opts);
  trust(ctx);
  refuseForeignKernelWrite(ctx, opts.dryRun || opts.noprobe);
  return render(ctx, await unsetDevice(ctx.host, t, opts), opts);
}
