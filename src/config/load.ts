// Reads and validates the configuration file. A broken file is rejected as a whole (exit 2) with
// every problem named by file, line:column, field and the fix; nothing is applied from it.
import { findNodeAtLocation, getNodeValue, parseTree, printParseErrorCode, type Node, type ParseError } from 'jsonc-parser';
import validateSchema = require('./schema-validator.generated');
import type { HostRoot } from '../host/root';
import { untrustedReason, type TrustPolicy } from '../util/trust';
import { EXIT, VfioctlError } from '../util/diag';
import { CONFIG_FILE, type Config, type Rule, type Selector } from './types';

export class ConfigError extends VfioctlError {
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(`invalid configuration ${file} (nothing was applied from it):\n${problems.map((p) => `  ${p}`).join('\n')}`, EXIT.BAD_INPUT);
  }
}

/** offset -> line:column, from line starts found once (a fleet's file can hold thousands of rules). */
function lineLocator(text: string): (offset: number) => { line: number; col: number } {
  const starts = [0];
  for (let i = text.indexOf('\n'); i >= 0; i = text.indexOf('\n', i + 1)) starts.push(i + 1);
  return (offset) => {
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= offset) lo = mid;
      else hi = mid - 1;
    }
    return { line: lo + 1, col: offset - starts[lo]! + 1 };
  };
}

/** `rules[2].match.address` from a JSON pointer path. */
function fieldName(path: readonly (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('') || '(top level)';
}

const FIX: Record<string, string> = {
  address: "use DOMAIN:BUS:DEV.FN, e.g. '0000:03:00.1'",
  vfsOf: "use the physical function's address, e.g. '0000:3b:00.0'",
  id: "use VENDOR:DEVICE or VENDOR:DEVICE:SUBVENDOR:SUBDEVICE in hex, e.g. '15b3:101e'",
  class: "use a hex class prefix: '02', '0200' or '020000'",
  intent: "use 'vfio', 'none' or a driver name (letters, digits, '-', '_', '.'; no spaces or newlines)",
  vfIntent: "use 'vfio', 'none' or a driver name",
  numVfs: 'use a whole number from 0 to the PF\'s sriov_totalvfs',
  hooks: 'list absolute paths of executable, root-owned hooks',
  version: "set \"version\": 1",
};

function schemaProblem(e: validateSchema.SchemaError): { path: (string | number)[]; text: string } {
  const path = e.instancePath
    .split('/')
    .slice(1)
    .map((p) => (/^[0-9]+$/.test(p) ? Number(p) : p.replace(/~1/g, '/').replace(/~0/g, '~')));
  const last = [...path].reverse().find((p) => typeof p === 'string') as string | undefined;
  const leaf = typeof path.at(-1) === 'number' ? last : path.at(-1);
  switch (e.keyword) {
    case 'additionalProperties': {
      const extra = String(e.params.additionalProperty);
      return { path: [...path, extra], text: `unknown field '${extra}'; fix: remove it or check its spelling (schema/config.schema.json lists the fields)` };
    }
    case 'required':
      return { path, text: `missing '${String(e.params.missingProperty)}'; fix: add it` };
    case 'minProperties':
    case 'maxProperties':
      return { path, text: "a match needs exactly one of 'address', 'id', 'class', 'vfsOf'" };
    case 'anyOf':
      return { path, text: "a rule needs an 'intent' (or 'sriov' on a physical function)" };
    default: {
      const fix = leaf !== undefined ? FIX[String(leaf)] : undefined;
      return { path, text: `${e.message ?? e.keyword}${fix ? `; fix: ${fix}` : ''}` };
    }
  }
}

function lower(s: string): string {
  return s.toLowerCase();
}

function fullAddress(s: string): string {
  const a = lower(s);
  return a.length === 7 ? `0000:${a}` : a;
}

function selectorOf(m: Record<string, string>): Selector {
  if (m.address !== undefined) return { kind: 'address', address: fullAddress(m.address) };
  if (m.vfsOf !== undefined) return { kind: 'vfsOf', pf: fullAddress(m.vfsOf) };
  if (m.id !== undefined) {
    const [vendor, device, subvendor, subdevice] = lower(m.id).split(':') as [string, string, string?, string?];
    return { kind: 'id', vendor, device, subvendor: subvendor ?? null, subdevice: subdevice ?? null };
  }
  return { kind: 'class', prefix: lower(m.class!).replace(/^0x/, '') };
}

/** Parses and validates configuration text; throws ConfigError listing every problem. */
export function parseConfig(text: string, file: string): Config {
  const problems: string[] = [];
  const lineCol = lineLocator(text);
  const at = (node: Node | undefined, fallback = 0) => {
    const { line, col } = lineCol(node?.offset ?? fallback);
    return `${file}:${line}:${col}`;
  };
  if (text.trim() === '') throw new ConfigError(file, [`${file}:1:1: empty file; fix: write {"version": 1, "rules": []} or delete it`]);
  const errors: ParseError[] = [];
  const tree = parseTree(text, errors, { disallowComments: false, allowTrailingComma: false });
  for (const e of errors) problems.push(`${at(undefined, e.offset)}: JSON syntax error: ${printParseErrorCode(e.error)}`);
  if (problems.length || !tree) throw new ConfigError(file, problems.length ? problems : [`${file}:1:1: not a JSON document`]);
  const data = getNodeValue(tree) as unknown;
  if (!validateSchema(data)) {
    for (const e of validateSchema.errors ?? []) {
      // anyOf reports its branches' `required` errors too; the anyOf line says it better.
      if (e.keyword === 'required' && /^\/rules\/[0-9]+$/.test(e.instancePath) && (e.params.missingProperty === 'intent' || e.params.missingProperty === 'sriov')) continue;
      const p = schemaProblem(e);
      const node = findNodeAtLocation(tree, p.path) ?? findNodeAtLocation(tree, p.path.slice(0, -1));
      problems.push(`${at(node?.parent?.type === 'property' ? node.parent : node)}: ${fieldName(p.path)}: ${p.text}`);
    }
    throw new ConfigError(file, [...new Set(problems)]);
  }
  const raw = data as { rules: { match: Record<string, string>; intent?: string; sriov?: { numVfs: number; vfIntent?: string }; hooks?: string[]; acknowledgeBroadMatch?: boolean }[] };
  const rules: Rule[] = raw.rules.map((r, index) => {
    const node = findNodeAtLocation(tree, ['rules', index]);
    return {
      index,
      line: lineCol(node?.offset ?? 0).line,
      selector: selectorOf(r.match),
      intent: r.intent ?? null,
      sriov: r.sriov ? { numVfs: r.sriov.numVfs, vfIntent: r.sriov.vfIntent ?? null } : null,
      hooks: r.hooks ?? [],
      acknowledgeBroadMatch: r.acknowledgeBroadMatch === true,
    };
  });
  // What the schema cannot say: one rule per address / PF, sriov only on an address.
  const where = (r: Rule) => `${file}:${r.line}: rules[${r.index}]`;
  const byAddress = new Map<string, Rule>();
  const vfRule = new Map<string, Rule>();
  for (const r of rules) {
    const s = r.selector;
    if (r.sriov && s.kind !== 'address') problems.push(`${where(r)}.sriov: only a rule matching one physical function by 'address' can size SR-IOV; fix: match the PF by address`);
    if (s.kind === 'address') {
      const prev = byAddress.get(s.address);
      if (prev) problems.push(`${where(r)}.match.address: ${s.address} is already configured by rules[${prev.index}] (line ${prev.line}); fix: keep one rule per device`);
      else byAddress.set(s.address, r);
    }
    const pf = s.kind === 'vfsOf' ? s.pf : r.sriov?.vfIntent ? (s as { address: string }).address : null;
    if (pf !== null) {
      const prev = vfRule.get(pf);
      if (prev) problems.push(`${where(r)}: the VFs of ${pf} already get an intent from rules[${prev.index}] (line ${prev.line}); fix: give them one intent, in one rule`);
      else vfRule.set(pf, r);
    }
  }
  if (problems.length) throw new ConfigError(file, problems);
  return { file, rules };
}

/** The configuration under the root: none when the file does not exist; refused when untrusted. */
export function loadConfig(root: HostRoot, policy: TrustPolicy): Config {
  const text = root.readFile(CONFIG_FILE);
  if (text === undefined) {
    if (root.exists(CONFIG_FILE)) throw new ConfigError(CONFIG_FILE, [`${CONFIG_FILE}: cannot be read`]);
    return { file: null, rules: [] };
  }
  const why = untrustedReason(root, CONFIG_FILE, policy);
  if (why) throw new VfioctlError(`refusing to read ${CONFIG_FILE}: ${why}; a file a non-root user could have written is never used (fix: chown root: and chmod go-w it and its directories)`, EXIT.BAD_INPUT);
  return parseConfig(text, CONFIG_FILE);
}
