// `vfioctl bind`, `unbind` and `recover`: parse, call the operation, render its result.
import { operationExitCode, uniqueAddresses, type OperationResult } from '../ops/host';
import { validateDriverName } from '../plan/target';
import { EXIT } from '../util/diag';
import { type Context, printWarnings, refuseForeignKernelWrite, trust } from './context';
import { parseOwner } from './owner';
import { renderResults } from './render';

export interface BindOptions {
  driver?: string;
  dryRun?: boolean;
  force?: boolean;
  group?: boolean;
  json?: boolean;
  owner?: string;
}

function output(ctx: Context, r: OperationResult, json: boolean | undefined): number {
  printWarnings(ctx, r.warnings);
  if (json) {
    const extra = r.dryRun ? {} : { recovered: r.recovered, unreadableJournal: r.unreadableJournal };
    ctx.io.out(JSON.stringify({ command: r.kind, dryRun: r.dryRun, ...extra, results: r.results }, null, 2) + '\n');
  } else renderResults(ctx, r.kind, r.plan, r.results, r.dryRun);
  return operationExitCode(r);
}

export async function bindCommand(ctx: Context, devices: string[], opts: BindOptions): Promise<number> {
  const addresses = uniqueAddresses(devices);
  const driver = validateDriverName(opts.driver ?? 'vfio');
  const owner = opts.owner !== undefined ? parseOwner(ctx.root, opts.owner) : undefined;
  refuseForeignKernelWrite(ctx, opts.dryRun);
  trust(ctx);
  const r = await ctx.host.bind({ addresses, driver, force: !!opts.force, group: !!opts.group, ...(owner ? { owner } : {}) }, { dryRun: opts.dryRun });
  return output(ctx, r, opts.json);
}

export async function unbindCommand(ctx: Context, devices: string[], opts: { dryRun?: boolean; json?: boolean }): Promise<number> {
  const addresses = uniqueAddresses(devices);
  refuseForeignKernelWrite(ctx, opts.dryRun);
  trust(ctx);
  return output(ctx, await ctx.host.unbind({ addresses }, { dryRun: opts.dryRun }), opts.json);
}

export async function recoverCommand(ctx: Context, opts: { json?: boolean }): Promise<number> {
  const rep = await ctx.host.recover();
  const rec = rep.recovered;
  if (opts.json) ctx.io.out(JSON.stringify({ recovered: rec, unreadableJournal: rep.unreadable }, null, 2) + '\n');
  else {
    if (rec.length === 0 && rep.unreadable.length === 0) ctx.io.out('nothing to recover\n');
    for (const r of rec) ctx.io.out(`${r.address}: interrupted ${r.kind} at ${r.interruptedAt}; now on ${r.driver ?? 'no driver'}${r.error ? ` (${r.error})` : ''}\n`);
    for (const u of rep.unreadable) ctx.io.out(`UNREADABLE journal entry ${u}\n`);
  }
  return rec.some((r) => r.error) || rep.unreadable.length > 0 ? EXIT.FAILED : EXIT.OK;
}
