// A configuration that is not the host's /etc/vfioctl/vfioctl.json: `--config FILE` (apply,
// status, install) and `config check FILE`. Configuration management (Ansible, an operator, the
// node agent) validates a candidate and previews it before it replaces the real one.
import * as path from 'node:path';
import { HostRoot } from '../host/root';
import { ConfigError, loadConfig, parseConfig, readConfigText } from '../config/load';
import type { Config, Rule } from '../config/types';
import { intentName } from '../config/intent';
import { VfioctlError } from '../util/diag';
import type { TrustPolicy } from '../host/trust';

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
export function configFor(root: HostRoot, policy: TrustPolicy, file: string | undefined): Config {
  return file === undefined ? loadConfig(root, policy) : loadConfigFile(policy, file);
}

/** A rule as `config check --json` prints it: what it selects and asks for, where it is. */
export interface RuleJson {
  readonly index: number;
  readonly line: number;
  readonly selector: Rule['selector'];
  readonly intent: string | null;
  readonly sriov:
    | (Omit<NonNullable<Rule['sriov']>, 'vfIntent'> & { readonly vfIntent: string | null })
    | null;
  readonly hooks: Rule['hooks'];
  readonly acknowledgeBroadMatch: boolean;
  readonly consumer: Rule['consumer'];
}

export interface ConfigCheck {
  readonly file: string;
  readonly valid: boolean;
  /** Every problem found (syntax, schema, duplicates, owner and modes); empty when valid. */
  readonly problems: readonly string[];
  readonly rules: readonly RuleJson[];
}

function ruleJson(r: Rule): RuleJson {
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

/** `config check FILE`: read-only; every problem at once. */
export function checkConfigFile(policy: TrustPolicy, file: string): ConfigCheck {
  const abs = path.resolve(file);
  let problems: string[] = [];
  let config: Config | null = null;
  try {
    const live = new HostRoot('/');
    const text = live.hasEntry(abs) ? readConfigText(live, policy, abs) : undefined;
    if (text === undefined) problems = [`${abs}: no such file`];
    else config = parseConfig(text, abs);
  } catch (e) {
    if (e instanceof ConfigError) problems = [...e.problems];
    // Refused before reading (owner, modes): one problem, the reason.
    else if (e instanceof VfioctlError) problems = [e.message];
    else throw e;
  }
  return {
    file: abs,
    valid: config !== null,
    problems,
    rules: config ? config.rules.map(ruleJson) : [],
  };
}
