// The page's only way to vfioctl: its CLI with --json, spawned through the Cockpit bridge with an
// argument array. It never writes sysfs or the configuration itself.
import type { CliOutcome } from './logic';

export interface PageConfig {
  /** argv prefix that runs vfioctl (default ["vfioctl"]). */
  command: string[];
  /**
   * The host root vfioctl works on; watched files are under it, and VFIOCTL_ROOT is set when it is
   * not "/".
   */
  root: string;
  /** Extra environment for vfioctl, "NAME=value". */
  environ: string[];
  /** Production: "require" (vfioctl runs as root); "none" spawns as the session's own user. */
  superuser: 'require' | 'try' | 'none';
}

const DEFAULTS: PageConfig = { command: ['vfioctl'], root: '/', environ: [], superuser: 'require' };

const strings = (v: unknown): v is string[] =>
  Array.isArray(v) && v.every((s) => typeof s === 'string');

/**
 * The manifest's "config", which an administrator (or a test) overrides in
 * /etc/cockpit/vfioctl.override.json or ~/.config/cockpit/vfioctl.override.json.
 */
export function pageConfig(): PageConfig {
  const c = (cockpit.manifests?.vfioctl?.config ?? {}) as Record<string, unknown>;
  return {
    command: strings(c.command) && c.command.length > 0 ? c.command : DEFAULTS.command,
    root: typeof c.root === 'string' && c.root.startsWith('/') ? c.root : DEFAULTS.root,
    environ: strings(c.environ) ? c.environ : DEFAULTS.environ,
    // A string, not null: Cockpit merges overrides as a JSON merge patch, where null deletes the
    // key.
    superuser:
      c.superuser === 'try' || c.superuser === 'require' || c.superuser === 'none'
        ? c.superuser
        : DEFAULTS.superuser,
  };
}

/** A path on the managed host: under the configured root. */
export function hostPath(cfg: PageConfig, p: string): string {
  return cfg.root === '/' ? p : cfg.root.replace(/\/+$/, '') + p;
}

/**
 * Runs `vfioctl ARGS...` and resolves with its exit code, parsed JSON stdout (null when stdout is
 * not JSON, e.g. a usage error) and stderr. Exit codes 1-3 still carry JSON, so they resolve too;
 * only a failure to run vfioctl at all rejects.
 */
export function runVfioctl<T>(cfg: PageConfig, args: string[]): Promise<CliOutcome<T>> {
  const environ = [...(cfg.root !== '/' ? [`VFIOCTL_ROOT=${cfg.root}`] : []), ...cfg.environ];
  const opts: cockpit.SpawnOptions = { environ, err: 'message' };
  if (cfg.superuser !== 'none') opts.superuser = cfg.superuser;
  const proc = cockpit.spawn([...cfg.command, ...args], opts);
  let out = '';
  proc.stream((chunk) => {
    out += chunk;
  });
  const parse = (): T | null => {
    try {
      return JSON.parse(out) as T;
    } catch {
      return null;
    }
  };
  return new Promise((resolve, reject) => {
    proc.then(
      (_data, message) => resolve({ code: 0, data: parse(), stderr: message ?? '' }),
      (ex: cockpit.ProcessError) => {
        if (typeof ex?.exit_status === 'number')
          resolve({ code: ex.exit_status, data: parse(), stderr: ex.message ?? '' });
        else
          reject(
            new Error(
              ex?.problem === 'not-found'
                ? `${cfg.command[0]} is not installed`
                : ex?.problem === 'access-denied'
                  ? 'administrative access is needed to run vfioctl'
                  : (ex?.message ?? String(ex)),
            ),
          );
      },
    );
  });
}
