// Reads and validates the configuration file. A broken file is rejected as a whole (exit 2) with
// every problem named by file, line:column, field and the fix; nothing is applied from it.
import { isUtf8 } from 'node:buffer';
import * as fs from 'node:fs';
import {
  findNodeAtLocation,
  getNodeValue,
  parseTree,
  printParseErrorCode,
  type Node,
  type ParseError,
} from 'jsonc-parser';
import validateSchema = require('./schema-validator.generated');
import type { HostRoot } from '../host/root';
import { untrustedReason, type TrustPolicy } from '../host/trust';
import { EXIT, VfioctlError } from '../util/diag';
import { CONFIG_FILE, type Config, type Consumer, type Rule, type Selector } from './types';
import { parseIntent } from './intent';

export class ConfigError extends VfioctlError {
  constructor(
    readonly file: string,
    readonly problems: readonly string[],
  ) {
    super(
      `invalid configuration ${file} (nothing was applied from it):\n${problems.map((p) => `  ${p}`).join('\n')}`,
      EXIT.BAD_INPUT,
    );
  }
}

/**
 * offset -> line:column, from line starts found once (a fleet's file can hold thousands of rules).
 */
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

const MAX_DEPTH = 32;

/** Offset where brackets nest deeper than MAX_DEPTH (outside strings and comments), or -1. */
function tooDeepAt(text: string): number {
  let depth = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 34 /* " */) {
      for (i++; i < text.length && text.charCodeAt(i) !== 34; i++)
        if (text.charCodeAt(i) === 92 /* \\ */) i++;
    } else if (c === 47 /* / */ && text.charCodeAt(i + 1) === 47) {
      const nl = text.indexOf('\n', i);
      i = nl < 0 ? text.length : nl;
    } else if (c === 47 && text.charCodeAt(i + 1) === 42 /* * */) {
      const end = text.indexOf('*/', i + 2);
      i = end < 0 ? text.length : end + 1;
    } else if (c === 123 || c === 91) {
      if (++depth > MAX_DEPTH) return i;
    } else if (c === 125 || c === 93) depth--;
  }
  return -1;
}

/** Property nodes whose key an earlier sibling already used. */
function duplicateKeys(node: Node): Node[] {
  const out: Node[] = [];
  const walk = (n: Node) => {
    if (n.type === 'object') {
      const seen = new Set<string>();
      for (const p of n.children ?? []) {
        const k = String(p.children?.[0]?.value);
        if (seen.has(k)) out.push(p);
        seen.add(k);
      }
    }
    for (const c of n.children ?? []) walk(c);
  };
  walk(node);
  return out;
}

/** `rules[2].match.address` from a JSON pointer path. */
function fieldName(path: readonly (string | number)[]): string {
  return (
    path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('') ||
    '(top level)'
  );
}

const FIX: Record<string, string> = {
  address: "use DOMAIN:BUS:DEV.FN, e.g. '0000:03:00.1'",
  vfsOf: "use the physical function's address, e.g. '0000:3b:00.0'",
  id: "use VENDOR:DEVICE or VENDOR:DEVICE:SUBVENDOR:SUBDEVICE in hex, e.g. '15b3:101e'",
  class: "use a hex class prefix: '02', '0200' or '020000'",
  intent:
    "use 'vfio', 'none', 'host' or a driver name (letters, digits, '-', '_', '.'; no spaces or newlines)",
  vfIntent: "use 'vfio', 'none' or a driver name",
  numVfs: "use a whole number from 0 to the PF's sriov_totalvfs",
  hooks: 'list absolute paths of executable, root-owned hooks',
  version: 'set "version": 1',
  consumer:
    "use kubevirt, nvidia-sandbox-device-plugin, sriov-network-operator or intel-qat-plugin (each needs intent 'vfio-pci'), or leave it out",
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
      return {
        path: [...path, extra],
        text: `unknown field '${extra}'; fix: remove it or check its spelling (schema/config.schema.json lists the fields)`,
      };
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
    const [vendor, device, subvendor, subdevice] = lower(m.id).split(':') as [
      string,
      string,
      string?,
      string?,
    ];
    return {
      kind: 'id',
      vendor,
      device,
      subvendor: subvendor ?? null,
      subdevice: subdevice ?? null,
    };
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
  if (text.trim() === '')
    throw new ConfigError(file, [
      `${file}:1:1: empty file; fix: write {"version": 1, "rules": []} or delete it`,
    ]);
  // The parser recurses per nesting level: a hostile file must not overflow the stack.
  const deep = tooDeepAt(text);
  if (deep >= 0)
    throw new ConfigError(file, [
      `${at(undefined, deep)}: nested deeper than ${MAX_DEPTH} levels; a configuration needs 5`,
    ]);
  const errors: ParseError[] = [];
  const tree = parseTree(text, errors, { disallowComments: false, allowTrailingComma: false });
  for (const e of errors)
    problems.push(`${at(undefined, e.offset)}: JSON syntax error: ${printParseErrorCode(e.error)}`);
  if (problems.length || !tree)
    throw new ConfigError(file, problems.length ? problems : [`${file}:1:1: not a JSON document`]);
  // JSON.parse would keep the last of two equal keys silently; which one the admin meant is
  // unknown.
  for (const d of duplicateKeys(tree))
    problems.push(`${at(d)}: duplicate key '${d.children![0]!.value}'; fix: keep one`);
  if (problems.length) throw new ConfigError(file, problems);
  const data = getNodeValue(tree) as unknown;
  if (!validateSchema(data)) {
    for (const e of validateSchema.errors ?? []) {
      // anyOf reports its branches' `required` errors too; the anyOf line says it better.
      if (
        e.keyword === 'required' &&
        /^\/rules\/[0-9]+$/.test(e.instancePath) &&
        (e.params.missingProperty === 'intent' || e.params.missingProperty === 'sriov')
      )
        continue;
      const p = schemaProblem(e);
      const node =
        findNodeAtLocation(tree, p.path) ?? findNodeAtLocation(tree, p.path.slice(0, -1));
      problems.push(
        `${at(node?.parent?.type === 'property' ? node.parent : node)}: ${fieldName(p.path)}: ${p.text}`,
      );
    }
    throw new ConfigError(file, [...new Set(problems)]);
  }
  const raw = data as {
    rules: {
      match: Record<string, string>;
      intent?: string;
      sriov?: { numVfs: number; vfIntent?: string };
      hooks?: string[];
      acknowledgeBroadMatch?: boolean;
      consumer?: Consumer;
    }[];
  };
  const rules: Rule[] = raw.rules.map((r, index) => {
    const node = findNodeAtLocation(tree, ['rules', index]);
    return {
      index,
      line: lineCol(node?.offset ?? 0).line,
      selector: selectorOf(r.match),
      // The schema checked the spelling: parsing cannot fail here.
      intent: r.intent !== undefined ? parseIntent(r.intent) : null,
      sriov: r.sriov
        ? {
            numVfs: r.sriov.numVfs,
            vfIntent: r.sriov.vfIntent !== undefined ? parseIntent(r.sriov.vfIntent) : null,
          }
        : null,
      hooks: r.hooks ?? [],
      acknowledgeBroadMatch: r.acknowledgeBroadMatch === true,
      consumer: r.consumer ?? null,
    };
  });
  // What the schema cannot say: one rule per address / PF, sriov only on an address.
  const where = (r: Rule) => `${file}:${r.line}: rules[${r.index}]`;
  const byAddress = new Map<string, Rule>();
  const vfRule = new Map<string, Rule>();
  for (const r of rules) {
    const s = r.selector;
    // VFs created with sriov_drivers_autoprobe=0 are probed only through their override: there is
    // no host driver to keep them on (pci_device_can_probe()).
    if (r.sriov?.vfIntent?.kind === 'host')
      problems.push(
        `${where(r)}.sriov.vfIntent: 'host' cannot apply to VFs created with autoprobe off; fix: leave vfIntent out (the VFs then probe their host driver)`,
      );
    if (r.sriov && s.kind !== 'address')
      problems.push(
        `${where(r)}.sriov: only a rule matching one physical function by 'address' can size SR-IOV; fix: match the PF by address`,
      );
    if (s.kind === 'address') {
      const prev = byAddress.get(s.address);
      if (prev)
        problems.push(
          `${where(r)}.match.address: ${s.address} is already configured by rules[${prev.index}] (line ${prev.line}); fix: keep one rule per device`,
        );
      else byAddress.set(s.address, r);
    }
    const pf =
      s.kind === 'vfsOf' ? s.pf : r.sriov?.vfIntent ? (s as { address: string }).address : null;
    if (pf !== null) {
      const prev = vfRule.get(pf);
      if (prev)
        problems.push(
          `${where(r)}: the VFs of ${pf} already get an intent from rules[${prev.index}] (line ${prev.line}); fix: give them one intent, in one rule`,
        );
      else vfRule.set(pf, r);
    }
  }
  if (problems.length) throw new ConfigError(file, problems);
  return { file, rules };
}

/**
 * Above this a file is not a configuration (a fleet's thousands of rules take well under 1 MiB).
 */
export const MAX_CONFIG_BYTES = 4 * 1024 * 1024;

/** Where the first byte that is not UTF-8 is, or -1. */
function invalidUtf8At(b: Buffer): number {
  // buffer.isUtf8 (Node 18.14+) is native; TextDecoder's first use loads the encoding tables.
  if (isUtf8(b)) return -1;
  // Rare path: find the offset by decoding growing prefixes' code points by hand.
  for (let i = 0; i < b.length; ) {
    const c = b[i]!;
    const n =
      c < 0x80
        ? 1
        : c >= 0xc2 && c < 0xe0
          ? 2
          : c >= 0xe0 && c < 0xf0
            ? 3
            : c >= 0xf0 && c < 0xf5
              ? 4
              : 0;
    if (n === 0 || i + n > b.length) return i;
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(b.subarray(i, i + n));
    } catch {
      return i;
    }
    i += n;
  }
  return 0;
}

/**
 * The configuration file's text, or undefined when there is none. Refused before it is read when
 * it is not a regular file (a FIFO would block us forever), too large, or one a non-root user could
 * have written; refused after when it is not UTF-8. What set/unset edit and loadConfig parse.
 */
export function readConfigText(
  root: HostRoot,
  policy: TrustPolicy,
  rel = CONFIG_FILE,
): string | undefined {
  const abs = root.path(rel);
  const st = fs.statSync(abs, { throwIfNoEntry: false });
  if (st === undefined) {
    if (root.hasEntry(rel))
      throw new ConfigError(rel, [
        `${rel}: a dangling symlink; fix: remove it or point it at the configuration`,
      ]);
    return undefined;
  }
  if (!st.isFile())
    throw new ConfigError(rel, [
      `${rel}: not a regular file (${st.isDirectory() ? 'a directory' : st.isFIFO() ? 'a FIFO' : st.isSocket() ? 'a socket' : 'a device node'}); fix: replace it with a JSON file`,
    ]);
  if (st.size > MAX_CONFIG_BYTES)
    throw new ConfigError(rel, [
      `${rel}: ${st.size} bytes, more than the ${MAX_CONFIG_BYTES} a configuration may have; fix: check it is the right file`,
    ]);
  const why = untrustedReason(root, rel, policy);
  if (why)
    throw new VfioctlError(
      `refusing to read ${rel}: ${why}; a file a non-root user could have written is never used (fix: chown root: and chmod go-w it and its directories)`,
      EXIT.BAD_INPUT,
    );
  let b: Buffer;
  try {
    // O_NONBLOCK: should it have become a FIFO since the stat, open returns at once.
    const fd = fs.openSync(abs, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
    try {
      if (!fs.fstatSync(fd).isFile()) throw new ConfigError(rel, [`${rel}: not a regular file`]);
      b = fs.readFileSync(fd);
    } finally {
      fs.closeSync(fd);
    }
  } catch (e) {
    if (e instanceof VfioctlError) throw e;
    throw new ConfigError(rel, [
      `${rel}: cannot be read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
    ]);
  }
  if (b.length > MAX_CONFIG_BYTES)
    throw new ConfigError(rel, [`${rel}: more than ${MAX_CONFIG_BYTES} bytes`]);
  const bad = invalidUtf8At(b);
  if (bad >= 0)
    throw new ConfigError(rel, [
      `${rel}: byte offset ${bad}: not UTF-8 (byte 0x${b[bad]!.toString(16).padStart(2, '0')}); fix: save the file as UTF-8`,
    ]);
  return b.toString('utf8');
}

/** The configuration under the root: none when the file does not exist; refused when untrusted. */
export function loadConfig(root: HostRoot, policy: TrustPolicy, rel = CONFIG_FILE): Config {
  const text = readConfigText(root, policy, rel);
  return text === undefined ? { file: null, rules: [] } : parseConfig(text, rel);
}
