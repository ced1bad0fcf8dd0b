// `vfioctl config check FILE [--json]` (ops/config-file.ts), rendered.
import { checkConfigFile } from '../ops/config-file';
import { EXIT, VfioctlError } from '../util/diag';
import { type Context, trust } from './context';

export function configCommand(
  ctx: Context,
  action: string,
  file: string,
  opts: { json?: boolean },
): number {
  if (action !== 'check')
    throw new VfioctlError(
      `config ${action}: unknown action; 'check' is the only one`,
      EXIT.BAD_INPUT,
    );
  const r = checkConfigFile(trust(ctx), file);
  if (opts.json) ctx.io.out(JSON.stringify(r, null, 2) + '\n');
  else if (r.valid)
    ctx.io.out(`${r.file}: valid, ${r.rules.length} rule${r.rules.length === 1 ? '' : 's'}\n`);
  else for (const p of r.problems) ctx.io.err(`${p}\n`);
  return r.valid ? EXIT.OK : EXIT.BAD_INPUT;
}
