// `import-driverctl` and driverctl's list verbs (ops/driverctl.ts), rendered.
import { CONFIG_FILE } from '../config/types';
import { DRIVERCTL_DIR, driverctlDevices, importDriverctl } from '../ops/driverctl';
import { EXIT } from '../util/diag';
import { type Context, printWarnings, trust } from './context';

export async function importDriverctlCommand(
  ctx: Context,
  opts: { dryRun?: boolean; json?: boolean; vfio?: boolean },
): Promise<number> {
  trust(ctx);
  const r = await importDriverctl(ctx.host, opts);
  printWarnings(ctx, r.warnings);
  if (opts.json) {
    ctx.io.out(
      JSON.stringify(
        {
          command: 'import-driverctl',
          dryRun: r.dryRun,
          imported: r.imported,
          skipped: r.skipped,
          changed: r.changed,
          next: r.next,
        },
        null,
        2,
      ) + '\n',
    );
    return EXIT.OK;
  }
  if (r.imported.length === 0) ctx.io.out(`nothing to import from ${DRIVERCTL_DIR}\n`);
  for (const f of r.imported)
    ctx.io.out(
      `${r.dryRun ? 'would import' : 'imported'} ${f.file}: ${f.address} -> ${f.intent}${f.intent !== f.driver ? ` (driverctl: ${f.driver})` : ''}\n`,
    );
  if (r.imported.length && !r.changed) ctx.io.out(`${CONFIG_FILE} already has all of them\n`);
  for (const h of r.next) ctx.io.out(`${h}\n`);
  return EXIT.OK;
}

/**
 * driverctl list-devices / list-overrides [TYPE]: `ADDRESS DRIVER` (`(none)` when unbound); devices
 * add ` [*]` when driver_override is set, overrides lists only those; with driverctl's -v/--debug,
 * the device's name in parentheses.
 */
export function listDevicesCommand(
  ctx: Context,
  type: string | undefined,
  overridesOnly: boolean,
): number {
  const debug = !!ctx.flags.debug;
  for (const d of driverctlDevices(ctx.host, type, { overridesOnly, names: debug })) {
    ctx.io.out(
      `${d.address} ${d.driver ?? '(none)'}${!overridesOnly && d.override !== null ? ' [*]' : ''}${debug ? ` (${d.name ?? ''})` : ''}\n`,
    );
  }
  return EXIT.OK;
}
