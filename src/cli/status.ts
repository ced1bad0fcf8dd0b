// `vfioctl status` (ops/status.ts), rendered.
import { CONFIG_FILE } from '../config/types';
import { status, statusExitCode, type DeviceStatus } from '../ops/status';
import { table, writeJsonStreaming } from './render';
import { EXIT } from '../util/diag';
import { type Context, printWarnings, trust } from './context';
import { loadConfigFile } from '../ops/config-file';

function bootText(b: DeviceStatus['boot']): string {
  if (!b) return '-';
  if (b.outcome === 'won') return 'won at boot';
  if (b.outcome === 'unbound') return 'unbound at boot';
  return `host driver had it first (${b.driver}${b.hostDriverBuiltin ? ', built in: only the late apply can take it' : ''})`;
}

export function statusCommand(ctx: Context, opts: { json?: boolean; config?: string }): number {
  const running = ctx.root.kernelRelease();
  if (ctx.kernel !== undefined && ctx.root.isRunning && running !== ctx.kernel) {
    ctx.io.err(
      `vfioctl: note: resolving for kernel ${ctx.kernel}, not the running ${running ?? 'kernel'}: a preview of what apply would do after booting it; the live drivers are this kernel's\n`,
    );
  }
  const policy = trust(ctx);
  const r = status(
    ctx.host,
    opts.config === undefined ? undefined : loadConfigFile(policy, opts.config),
  );
  printWarnings(ctx, r.readWarnings);
  if (opts.json) {
    writeJsonStreaming(
      ctx,
      {
        kernel: r.kernel,
        config: r.config,
        bootAt: r.bootAt,
        devices: r.devices,
        warnings: r.warnings,
      },
      'devices',
    );
    return statusExitCode(r);
  }
  printWarnings(ctx, r.warnings);
  if (r.devices.length === 0) {
    ctx.io.out(
      r.config
        ? 'no configured devices\n'
        : `no configuration (${CONFIG_FILE}); 'vfioctl set DEVICE vfio' creates one\n`,
    );
    return EXIT.OK;
  }
  ctx.io.out(
    table(
      ['DEVICE', 'INTENT', 'RESOLVED', 'LIVE', 'STATE', 'BOOT'],
      r.devices.map((x) => [
        x.address,
        x.intent ?? '-',
        x.resolved ?? '?',
        x.live ? (x.live.driver ?? '(none)') : '(absent)',
        x.drift,
        bootText(x.boot),
      ]),
    ),
  );
  for (const x of r.devices) if (x.drift !== 'ok') ctx.io.out(`${x.address}: ${x.detail}\n`);
  return statusExitCode(r);
}
