// `vfioctl doctor`: can this host do VFIO at all, and if not, why not (ops/doctor.ts), rendered.
import { EXIT } from '../util/diag';
import { doctor } from '../ops/doctor';
import type { Context } from './context';

export function doctorCommand(ctx: Context, opts: { json?: boolean }): number {
  const { ok, kernel, checks } = doctor(ctx.host);
  if (opts.json) ctx.io.out(JSON.stringify({ ok, kernel, checks }, null, 2) + '\n');
  else {
    for (const c of checks)
      ctx.io.out(`${c.status.toUpperCase().padEnd(4)}  ${c.id.padEnd(20)} ${c.message}\n`);
    ctx.io.out(
      ok ? 'this host can use VFIO\n' : 'this host cannot use VFIO yet: fix the FAIL lines above\n',
    );
  }
  return ok ? EXIT.OK : EXIT.FAILED;
}
