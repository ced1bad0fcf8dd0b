// `vfioctl apply`: converge the live system to the configuration (ops/converge.ts) and render
// what happened. A broken configuration is bad input (exit 2) and nothing is applied from it.
// `--boot` is the late boot unit's mode; `--guard-boot-devices` refuses boot devices outside it.
import type { Config } from '../config/types';
import type { WriteSession } from '../apply/session';
import { converge } from '../ops/converge';
import { uniqueAddresses } from '../ops/host';
import { type Context, refuseForeignKernelWrite, trust } from './context';
import { renderConverge } from './render';
import { configFor } from '../ops/config-file';

export interface ApplyOptions {
  dryRun?: boolean;
  json?: boolean;
  /**
   * The late boot unit: boot devices from fstab/crypttab/root= are refused, broad rules need an
   * acknowledgement.
   */
  boot?: boolean;
  /** Refuse the devices the host boots from, whatever a rule matches (the node agent's apply). */
  guardBootDevices?: boolean;
  /** --config FILE: converge to FILE instead of /etc/vfioctl/vfioctl.json. */
  config?: string;
}

/** Converge and render; `held`: the caller's session (set edits the file under the same lock). */
export async function convergeAndRender(
  ctx: Context,
  config: Config,
  only: readonly string[] | null,
  opts: ApplyOptions,
  held?: WriteSession,
): Promise<number> {
  refuseForeignKernelWrite(ctx, opts.dryRun);
  return renderConverge(
    ctx,
    await converge(
      ctx.host,
      config,
      { only, dryRun: opts.dryRun, boot: opts.boot, guardBootDevices: opts.guardBootDevices },
      held,
    ),
    opts.json,
  );
}

export function applyCommand(ctx: Context, devices: string[], opts: ApplyOptions): Promise<number> {
  const only = devices.length ? uniqueAddresses(devices) : null;
  return convergeAndRender(ctx, configFor(ctx.root, trust(ctx), opts.config), only, opts);
}
