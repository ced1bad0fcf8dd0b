// `vfioctl set` / `unset` edit the configuration file in place: comments and formatting that an
// admin wrote are kept, byte for byte outside the rule that changes. jsonc-parser's modify()
// re-formats the whole array on an insertion or removal (and drops neighbours' line comments), so
// whole-line rules are added and removed here by offsets from its parse tree; modify() is used
// only where its edit stays inside the changed value. The result is validated before it is
// written, and written atomically.
import { applyEdits, modify, parseTree, type Edit, type Node } from 'jsonc-parser';
import type { HostRoot } from '../host/root';
import { atomicWrite } from '../persist/records';
import { parseConfig } from './load';
import { CONFIG_FILE, type Config, type Selector } from './types';
import { intentName } from './intent';

const FORMAT = { formattingOptions: { insertSpaces: true, tabSize: 2, eol: '\n' } };
export const EMPTY_CONFIG = '{\n  "version": 1,\n  "rules": []\n}\n';

/** Do two selectors select by the same thing (the same rule's match)? */
export function sameSelector(a: Selector, b: Selector): boolean {
  switch (a.kind) {
    case 'address':
      return b.kind === 'address' && b.address === a.address;
    case 'vfsOf':
      return b.kind === 'vfsOf' && b.pf === a.pf;
    case 'id':
      return (
        b.kind === 'id' &&
        b.vendor === a.vendor &&
        b.device === a.device &&
        b.subvendor === a.subvendor &&
        b.subdevice === a.subdevice
      );
    case 'class':
      return b.kind === 'class' && b.prefix === a.prefix;
  }
}

/** Index of the rule with exactly this selector (an address rule: not its VFs), or -1. */
function ruleIndex(config: Config, selector: Selector): number {
  return config.rules.findIndex((r) => sameSelector(r.selector, selector));
}

/** The `match` object of a rule, as the file spells it. */
export function matchOf(s: Selector): Record<string, string> {
  switch (s.kind) {
    case 'address':
      return { address: s.address };
    case 'vfsOf':
      return { vfsOf: s.pf };
    case 'id':
      return {
        id: `${s.vendor}:${s.device}${s.subvendor ? `:${s.subvendor}:${s.subdevice}` : ''}`,
      };
    case 'class':
      return { class: s.prefix };
  }
}

/** The `rules` array node of a valid configuration text. */
function rulesNode(text: string): Node {
  const tree = parseTree(text, [], { disallowComments: false })!;
  return tree.children!.find((p) => p.children?.[0]?.value === 'rules')!.children![1]!;
}

const lineStart = (text: string, at: number) => text.lastIndexOf('\n', at - 1) + 1;
const lineEnd = (text: string, at: number) => {
  const nl = text.indexOf('\n', at);
  return nl < 0 ? text.length : nl;
};
/** After `at` on its line: nothing but whitespace, an optional comma and a line comment? */
const restIsTrivia = (text: string, at: number) =>
  /^\s*,?\s*(\/\/.*)?$/.test(text.slice(at, lineEnd(text, at)));
const onlySpaceBefore = (text: string, at: number) =>
  /^[ \t]*$/.test(text.slice(lineStart(text, at), at));

/**
 * A new last rule on its own line, indented as the current last one; null when the layout is not
 * line-per-rule.
 */
function appendRule(text: string, rule: unknown): Edit[] | null {
  const rules = rulesNode(text).children ?? [];
  const last = rules.at(-1);
  if (!last) return null;
  const end = last.offset + last.length;
  if (!onlySpaceBefore(text, last.offset) || !restIsTrivia(text, end)) return null;
  const indent = text.slice(lineStart(text, last.offset), last.offset);
  const oneLine = JSON.stringify(rule)
    .replace(/([{,])"/g, '$1 "')
    .replace(/":/g, '": ')
    .replace(/}/g, ' }');
  return [
    { offset: end, length: 0, content: ',' },
    { offset: lineEnd(text, end), length: 0, content: `\n${indent}${oneLine}` },
  ];
}

/** Removes rule i's whole lines (and the comma it leaves dangling); null when it shares lines. */
function removeRule(text: string, i: number): Edit[] | null {
  const rules = rulesNode(text).children!;
  const el = rules[i]!;
  const end = el.offset + el.length;
  if (!onlySpaceBefore(text, el.offset) || !restIsTrivia(text, end)) return null;
  const from = lineStart(text, el.offset);
  const to = Math.min(text.length, lineEnd(text, end) + 1);
  const edits: Edit[] = [{ offset: from, length: to - from, content: '' }];
  if (i === rules.length - 1 && i > 0) {
    // The new last rule must not keep its comma: the first ',' after it (comments skipped).
    const prev = rules[i - 1]!;
    const m = /^(\s*(\/\/[^\n]*\n|\/\*[\s\S]*?\*\/)?)*\s*,/.exec(
      text.slice(prev.offset + prev.length, from),
    );
    if (m)
      edits.push({ offset: prev.offset + prev.length + m[0].length - 1, length: 1, content: '' });
  }
  return edits;
}

/**
 * Rule i's `key` set to `value`: an existing property's value is replaced (modify() edits only
 * the value); a new one goes last, in the rule's layout: on its line for a one-line rule, else on
 * a line of its own after the last one and its comment (modify() where the layout is other, which
 * re-formats the rule).
 */
function setRuleProperty(text: string, i: number, key: string, value: unknown): Edit[] {
  const rule = rulesNode(text).children![i]!;
  if (rule.children!.some((p) => p.children?.[0]?.value === key))
    return modify(text, ['rules', i, key], value, FORMAT);
  const last = rule.children!.at(-1)!;
  const end = last.offset + last.length;
  const pair = `${JSON.stringify(key)}: ${JSON.stringify(value)}`;
  if (!text.slice(rule.offset, rule.offset + rule.length).includes('\n'))
    return [{ offset: end, length: 0, content: `, ${pair}` }];
  if (!onlySpaceBefore(text, last.offset) || !restIsTrivia(text, end))
    return modify(text, ['rules', i, key], value, FORMAT);
  const indent = text.slice(lineStart(text, last.offset), last.offset);
  return [
    { offset: end, length: 0, content: ',' },
    { offset: lineEnd(text, end), length: 0, content: `\n${indent}${pair}` },
  ];
}

/** New file text with `address` given `intent` (an existing rule for it is updated in place). */
export function withIntent(
  text: string | undefined,
  address: string,
  intent: string,
): { text: string; config: Config; changed: boolean } {
  return withRuleIntent(text, { kind: 'address', address }, intent);
}

/**
 * New file text with the rule of this selector given `intent` (updated in place when there is one).
 * `acknowledgeBroadMatch`: the rule also gets "acknowledgeBroadMatch": true; without it an
 * acknowledgement already there stays.
 */
export function withRuleIntent(
  text: string | undefined,
  selector: Selector,
  intent: string,
  opts: { readonly acknowledgeBroadMatch?: boolean } = {},
): { text: string; config: Config; changed: boolean } {
  const base = text ?? EMPTY_CONFIG;
  const config = parseConfig(base, CONFIG_FILE);
  const i = ruleIndex(config, selector);
  let next: string;
  if (i >= 0) {
    const rule = config.rules[i]!;
    const sameIntent = rule.intent !== null && intentName(rule.intent) === intent;
    const acknowledge = !!opts.acknowledgeBroadMatch && !rule.acknowledgeBroadMatch;
    if (sameIntent && !acknowledge) return { text: base, config, changed: false };
    next = sameIntent
      ? base
      : applyEdits(base, modify(base, ['rules', i, 'intent'], intent, FORMAT));
    // One edit after the other: each is computed on the text the previous one left.
    if (acknowledge)
      next = applyEdits(next, setRuleProperty(next, i, 'acknowledgeBroadMatch', true));
  } else {
    const rule = {
      match: matchOf(selector),
      intent,
      ...(opts.acknowledgeBroadMatch ? { acknowledgeBroadMatch: true } : {}),
    };
    next = applyEdits(
      base,
      appendRule(base, rule) ??
        modify(base, ['rules', -1], rule, { ...FORMAT, isArrayInsertion: true }),
    );
  }
  return { text: next, config: parseConfig(next, CONFIG_FILE), changed: true };
}

/** New file text without the rule for `address` (its SR-IOV settings go with it). */
export function withoutDevice(
  text: string | undefined,
  address: string,
): { text: string; config: Config; changed: boolean } {
  return withoutRule(text, { kind: 'address', address });
}

/** New file text without the rule of this selector. */
export function withoutRule(
  text: string | undefined,
  selector: Selector,
): { text: string; config: Config; changed: boolean } {
  const base = text ?? EMPTY_CONFIG;
  const config = parseConfig(base, CONFIG_FILE);
  const i = ruleIndex(config, selector);
  if (i < 0) return { text: base, config, changed: false };
  const next = applyEdits(
    base,
    removeRule(base, i) ?? modify(base, ['rules', i], undefined, FORMAT),
  );
  return { text: next, config: parseConfig(next, CONFIG_FILE), changed: true };
}

export function writeConfig(root: HostRoot, text: string): void {
  // New: root-owned (we run as root), world-readable, writable by root only (what loadConfig
  // trusts). Existing: its owner and mode are kept.
  atomicWrite(root.confine(CONFIG_FILE), text, 0o644, 0o755, true);
}
