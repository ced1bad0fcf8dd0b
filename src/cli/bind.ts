// `vfioctl bind`, `unbind` and `recover`: parse, call the operation, render its result.
import { operationExitCode, type OperationResult } from '../ops/host';
import { selectDevices, selectorsOf, type Selection, type SelectorArgs } from '../ops/select';
import { validateDriverName } from '../plan/target';
import { EXIT, VfioctlError } from '../util/diag';
import { type Context, printWarnings, refuseForeignKernelWrite, trust } from './context';
import { parseOwner } from './owner';
import { renderResults, selectionLines } from './render';

export interface BindOptions extends SelectorArgs {
  driver?: string;
  dryRun?: boolean;
  force?: boolean;
  group?: boolean;
  json?: boolean;
  owner?: string;
}

function output(
  ctx: Context,
  r: OperationResult,
  json: boolean | undefined,
  sel: Selection,
): number {
  printWarnings(ctx, r.warnings);
  const chosen = selectionLines(sel);
  if (json) {
    const extra = r.dryRun
      ? {}
      : { recovered: r.recovered, unreadableJournal: r.unreadableJournal };
    ctx.io.out(
      JSON.stringify(
        {
          command: r.kind,
          dryRun: r.dryRun,
          ...extra,
          ...(chosen.length ? { selected: sel.selected } : {}),
          results: r.results,
        },
        null,
        2,
      ) + '\n',
    );
  } else {
    if (r.dryRun) for (const l of chosen) ctx.io.out(`${l}\n`);
    renderResults(ctx, r.kind, r.plan, r.results, r.dryRun);
  }
  return operationExitCode(r);
}

/** DEVICE arguments (addresses, interface names) and --id/--class/--vfs-of: at least one. */
function select(
  ctx: Context,
  verb: string,
  devices: readonly string[],
  opts: SelectorArgs,
): Selection {
  const selectors = selectorsOf(opts);
  if (devices.length === 0 && selectors.length === 0)
    throw new VfioctlError(
      `${verb}: name a DEVICE (PCI address or network interface), or select devices with --id, --class or --vfs-of`,
      EXIT.BAD_INPUT,
    );
  return selectDevices(ctx.root, devices, selectors);
}

export async function bindCommand(
  ctx: Context,
  devices: string[],
  opts: BindOptions,
): Promise<number> {
  const sel = select(ctx, 'bind', devices, opts);
  const addresses = [...sel.addresses];
  const driver = validateDriverName(opts.driver ?? 'vfio');
  const owner = opts.owner !== undefined ? parseOwner(ctx.root, opts.owner) : undefined;
  refuseForeignKernelWrite(ctx, opts.dryRun);
  trust(ctx);
  const r = await ctx.host.bind(
    { addresses, driver, force: !!opts.force, group: !!opts.group, ...(owner ? { owner } : {}) },
    { dryRun: opts.dryRun },
  );
  return output(ctx, r, opts.json, sel);
}

export async function unbindCommand(
  ctx: Context,
  devices: string[],
  opts: SelectorArgs & { dryRun?: boolean; json?: boolean },
): Promise<number> {
  const sel = select(ctx, 'unbind', devices, opts);
  refuseForeignKernelWrite(ctx, opts.dryRun);
  trust(ctx);
  return output(
    ctx,
    await ctx.host.unbind({ addresses: [...sel.addresses] }, { dryRun: opts.dryRun }),
    opts.json,
    sel,
  );
}

export async function recoverCommand(ctx: Context, opts: { json?: boolean }): Promise<number> {
  const rep = await ctx.host.recover();
  const rec = rep.recovered;
  if (opts.json)
    ctx.io.out(
      JSON.stringify({ recovered: rec, unreadableJournal: rep.unreadable }, null, 2) + '\n',
    );
  else {
    if (rec.length === 0 && rep.unreadable.length === 0) ctx.io.out('nothing to recover\n');
    for (const r of rec)
      ctx.io.out(
        `${r.address}: interrupted ${r.kind} at ${r.interruptedAt}; now on ${r.driver ?? 'no driver'}${r.error ? ` (${r.error})` : ''}\n`,
      );
    for (const u of rep.unreadable) ctx.io.out(`UNREADABLE journal entry ${u}\n`);
  }
  return rec.some((r) => r.error) || rep.unreadable.length > 0 ? EXIT.FAILED : EXIT.OK;
}
