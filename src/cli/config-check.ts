// `vfioctl config check FILE [--json]` and `--config FILE` (apply, status, install): a
// configuration that is not the host's /etc/vfioctl/vfioctl.json. Configuration management
// (Ansible, an operator) validates a candidate and previews it before it replaces the real one.
import * as path from 'node:path';
import { HostRoot } from '../host/root';
import { ConfigError, loadConfig, readConfigText, parseConfig } from '../config/load';
import type { Config, Rule } from '../config/types';
import { intentName } from '../config/intent';
import { EXIT, VfioctlError } from '../util/diag';
import type { TrustPolicy } from '../host/trust';
import { type Context, trust } from './context';

/**
 * `--config FILE` is a path on the running system, not under --root: the candidate is kept beside
 * whatever manages it, the host tree stays untouched. It is read with the same checks as the
 * host's file (regular file, size, owner and modes up to `/`, UTF-8). A missing FILE is an error,
 * never "no rules": applying no rules would release every device an earlier apply bound.
 */
export function loadConfigFile(policy: TrustPolicy, file: string): Config {
  const abs = path.resolve(file);
  const live = new HostRoot('/');
  if (!live.hasEntry(abs)) throw new ConfigError(abs, [`${abs}: no such file`]);
  return loadConfig(live, policy, abs);
}

/** The configuration a command works from: FILE when --config was given, else the host's. */
export function configFor(ctx: Context, policy: TrustPolicy, file: string | undefined): Config {
  return file === undefined ? loadConfig(ctx.root, policy) : loadConfigFile(policy, file);
}

/** A rule as `config check --json` prints it: what it selects and asks for, where it is. */
function ruleJson(r: Rule): Record<string, unknown> {
  return {
    index: r.index,
    line: r.line,
    selector: r.selector,
    intent: r.intent ? intentName(r.intent) : null,
    sriov: r.sriov
      ? { ...r.sriov, vfIntent: r.sriov.vfIntent ? intentName(r.sriov.vfIntent) : null }
      : null,
    hooks: r.hooks,
    acknowledgeBroadMatch: r.acknowledgeBroadMatch,
    consumer: r.consumer,
  };
}

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
  const abs = path.resolve(file);
  let problems: string[] = [];
  let config: Config | null = null;
  try {
    const live = new HostRoot('/');
    const text = live.hasEntry(abs) ? readConfigText(live, trust(ctx), abs) : undefined;
    if (text === undefined) problems = [`${abs}: no such file`];
    else config = parseConfig(text, abs);
  } catch (e) {
    if (e instanceof ConfigError) problems = [...e.problems];
    // Refused before reading (owner, modes): one problem, the reason.
    else if (e instanceof VfioctlError) problems = [e.message];
    else throw e;
  }
  if (opts.json)
    ctx.io.out(
      JSON.stringify(
        {
          file: abs,
          valid: config !== null,
          problems,
          rules: config ? config.rules.map(ruleJson) : [],
        },
        null,
        2,
      ) + '\n',
    );
  else if (config)
    ctx.io.out(
      `${abs}: valid, ${config.rules.length} rule${config.rules.length === 1 ? '' : 's'}\n`,
    );
  else for (const p of problems) ctx.io.err(`${p}\n`);
  return config ? EXIT.OK : EXIT.BAD_INPUT;
}
