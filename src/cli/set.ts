// `vfioctl set DEVICE INTENT` / `unset DEVICE` (ops/config-edit.ts), rendered; driverctl's
// --nosave/--noprobe work before the verb too.
import { parseAddress } from '../host/address';
import { editExitCode, setIntent, unsetDevice, type ConfigEditReport } from '../ops/config-edit';
import { type Context, printWarnings, refuseForeignKernelWrite, trust } from './context';
import { renderConverge, renderResults } from './render';

export interface SetOptions {
  nosave?: boolean;
  noprobe?: boolean;
  dryRun?: boolean;
  json?: boolean;
}

/** --nosave/--noprobe may also come before the verb (driverctl style); commander hands those to the program. */
function withFlags(ctx: Context, opts: SetOptions): SetOptions {
  return { ...opts, nosave: !!(opts.nosave || ctx.flags.nosave), noprobe: !!(opts.noprobe || ctx.flags.noprobe) };
}

function render(ctx: Context, r: ConfigEditReport, opts: SetOptions): number {
  // With --json stdout is one JSON document; the notes go to stderr.
  const note = (s: string) => (opts.json ? ctx.io.err : ctx.io.out)(`${s}\n`);
  r.before.forEach(note);
  if (r.applied) renderConverge(ctx, r.applied, opts.json);
  if (r.released) {
    printWarnings(ctx, r.released.warnings);
    if (opts.json) ctx.io.out(JSON.stringify({ command: 'unbind', dryRun: r.released.dryRun, results: r.released.results }, null, 2) + '\n');
    else renderResults(ctx, 'unbind', r.released.plan, r.released.results, r.released.dryRun);
  }
  r.after.forEach(note);
  printWarnings(ctx, r.warnings);
  return editExitCode(r);
}

export async function setCommand(ctx: Context, device: string, intent: string, given: SetOptions): Promise<number> {
  const opts = withFlags(ctx, given);
  const address = parseAddress(device);
  trust(ctx);
  refuseForeignKernelWrite(ctx, opts.dryRun || opts.noprobe);
  return render(ctx, await setIntent(ctx.host, address, intent, opts), opts);
}

export async function unsetCommand(ctx: Context, device: string, given: SetOptions): Promise<number> {
  const opts = withFlags(ctx, given);
  const address = parseAddress(device);
  trust(ctx);
  refuseForeignKernelWrite(ctx, opts.dryRun || opts.noprobe);
  return render(ctx, await unsetDevice(ctx.host, address, opts), opts);
}
