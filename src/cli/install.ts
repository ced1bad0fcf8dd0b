// `vfioctl install [--dry-run] [--uninstall] [--refresh [--kernel REL]]`: the boot layers
// (ops/boot-layers.ts), rendered.
import { failedFiles, install } from '../ops/boot-layers';
import { EXIT } from '../util/diag';
import { type Context, trust } from './context';
import { loadConfigFile } from '../ops/config-file';

export interface InstallOptions {
  dryRun?: boolean;
  uninstall?: boolean;
  refresh?: boolean;
  exec?: string;
  json?: boolean;
  /** --config FILE: the maps are made from FILE instead of /etc/vfioctl/vfioctl.json. */
  config?: string;
  /** --libvirt: the libvirt qemu hook only. */
  libvirt?: boolean;
}

export function installCommand(ctx: Context, opts: InstallOptions): number {
  const policy = trust(ctx);
  const r = install(ctx.host, {
    ...opts,
    config: opts.config === undefined ? undefined : loadConfigFile(policy, opts.config),
  });
  const failed = failedFiles(r);
  // Some of what was planned is not on disk: the boot layers are incomplete (exit 1).
  for (const f of failed)
    ctx.io.err(
      `vfioctl: ${r.uninstall ? 'could not remove' : 'could not write'} ${ctx.root.path(f.path)}: ${f.error}; make it writable and run 'vfioctl install${r.uninstall ? ' --uninstall' : ''}' again\n`,
    );
  const code = failed.length ? EXIT.FAILED : EXIT.OK;
  if (opts.json) {
    const base = {
      command: 'install',
      ...(r.uninstall ? { uninstall: true } : {}),
      packaged: r.packaged,
      dryRun: r.dryRun,
    };
    ctx.io.out(
      JSON.stringify(
        r.uninstall
          ? { ...base, files: r.files, next: r.next }
          : { ...base, refresh: r.refresh, files: r.files, maps: r.maps, warnings: r.warnings },
        null,
        2,
      ) + '\n',
    );
    return code;
  }
  for (const w of r.warnings) ctx.io.err(`vfioctl: warning: ${w}\n`);
  for (const f of r.files) ctx.io.out(`${f.action}: ${f.path}${f.error ? ` (${f.error})` : ''}\n`);
  for (const m of r.maps) {
    ctx.io.out(
      `kernel ${m.kernel}: ${m.entries} map entries${m.skipped.length ? `, ${m.skipped.length} left out:` : ''}\n`,
    );
    for (const s of m.skipped) ctx.io.out(`  - ${s}\n`);
  }
  if (r.next && !failed.length) ctx.io.out(`next: ${r.next}\n`);
  return code;
}
