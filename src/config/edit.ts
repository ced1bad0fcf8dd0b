// `vfioctl set` / `unset` edit the configuration file in place: comments and formatting that an
// admin wrote are kept (jsonc-parser edits the text, it does not re-serialise it). The result is
// validated before it is written, and written atomically.
import { applyEdits, modify } from 'jsonc-parser';
import type { HostRoot } from '../host/root';
import { atomicWrite } from '../persist/records';
import { parseConfig } from './load';
import { CONFIG_FILE, type Config } from './types';

const FORMAT = { formattingOptions: { insertSpaces: true, tabSize: 2, eol: '\n' } };
export const EMPTY_CONFIG = '{\n  "version": 1,\n  "rules": []\n}\n';

/** Index of the rule matching exactly this address (not its VFs), or -1. */
function addressRuleIndex(config: Config, address: string): number {
  return config.rules.findIndex((r) => r.selector.kind === 'address' && r.selector.address === address);
}

/** New file text with `address` given `intent` (an existing rule for it is updated in place). */
export function withIntent(text: string | undefined, address: string, intent: string): { text: string; config: Config; changed: boolean } {
  const base = text ?? EMPTY_CONFIG;
  const config = parseConfig(base, CONFIG_FILE);
  const i = addressRuleIndex(config, address);
  let next: string;
  if (i >= 0) {
    if (config.rules[i]!.intent === intent) return { text: base, config, changed: false };
    next = applyEdits(base, modify(base, ['rules', i, 'intent'], intent, FORMAT));
  } else {
    next = applyEdits(base, modify(base, ['rules', -1], { match: { address }, intent }, { ...FORMAT, isArrayInsertion: true }));
  }
  return { text: next, config: parseConfig(next, CONFIG_FILE), changed: true };
}

/** New file text without the rule for `address` (its SR-IOV settings go with it). */
export function withoutDevice(text: string | undefined, address: string): { text: string; config: Config; changed: boolean } {
  const base = text ?? EMPTY_CONFIG;
  const config = parseConfig(base, CONFIG_FILE);
  const i = addressRuleIndex(config, address);
  if (i < 0) return { text: base, config, changed: false };
  const next = applyEdits(base, modify(base, ['rules', i], undefined, FORMAT));
  return { text: next, config: parseConfig(next, CONFIG_FILE), changed: true };
}

export function writeConfig(root: HostRoot, text: string): void {
  // New: root-owned (we run as root), world-readable, writable by root only (what loadConfig
  // trusts). Existing: its owner and mode are kept.
  atomicWrite(root.confine(CONFIG_FILE), text, 0o644, 0o755, true);
}
