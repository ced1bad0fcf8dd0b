// Everything vfioctl reads back from its own files (journal, bind records, state, boot outcome) is
// checked field by field before it is used: an address becomes a sysfs path, a driver a path under
// /sys/bus/pci/drivers. A file that does not check out is reported by name, never acted on, and
// never a TypeError.
import { isPciAddress } from '../host/address';

/** What is wrong with one file: reported with a safe action, never acted on. */
export interface Corrupt {
  readonly file: string;
  /** The device the file names (from its name), when that much is readable. */
  readonly address: string | null;
  readonly problem: string;
}

export class Invalid extends Error {}

type Obj = Record<string, unknown>;

/** A plain object parsed from `text`, or Invalid. */
export function jsonObject(text: string): Obj {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new Invalid(
      text.trim() === '' ? 'empty (truncated)' : `not JSON (${(e as Error).message})`,
    );
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new Invalid('not a JSON object');
  return v as Obj;
}

export function field<T>(o: Obj, name: string, check: (v: unknown) => v is T, what: string): T {
  const v = o[name];
  if (!check(v))
    throw new Invalid(`field '${name}' ${v === undefined ? 'is missing' : `is not ${what}`}`);
  return v;
}

export const isString = (v: unknown): v is string => typeof v === 'string';
export const isBool = (v: unknown): v is boolean => typeof v === 'boolean';
export const isInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;
export const isObj = (v: unknown): v is Obj =>
  typeof v === 'object' && v !== null && !Array.isArray(v);
export const isAddress = (v: unknown): v is string => typeof v === 'string' && isPciAddress(v);
/**
 * A kernel driver name as /sys/bus/pci/drivers spells it: no '/', no whitespace, not '.' or '..'.
 */
export const isDriverName = (v: unknown): v is string =>
  typeof v === 'string' && /^[A-Za-z0-9_.:+-]{1,64}$/.test(v) && v !== '.' && v !== '..';
export const orNull =
  <T>(check: (v: unknown) => v is T) =>
  (v: unknown): v is T | null =>
    v === null || check(v);
export const oneOf =
  <T extends string>(...values: readonly T[]) =>
  (v: unknown): v is T =>
    typeof v === 'string' && (values as readonly string[]).includes(v);

/** A PCI address file name `<address>.json`; null when the name is not one. */
export function addressOfFile(name: string): string | null {
  const a = name.endsWith('.json') ? name.slice(0, -5) : name;
  return isPciAddress(a) ? a : null;
}

/**
 * Reads every `<address>.json` in a directory through `parse`. Files with another name, torn or
 * foreign content, or an address field that differs from the name are reported, not returned.
 */
export function readAddressFiles<T extends { address: string }>(
  names: readonly string[],
  read: (name: string) => string | undefined,
  dir: string,
  parse: (o: Obj) => T,
): { entries: T[]; corrupt: Corrupt[] } {
  const entries: T[] = [];
  const corrupt: Corrupt[] = [];
  for (const name of names) {
    if (name.endsWith('.tmp')) continue; // an atomicWrite in flight or killed before its rename
    const file = `${dir}/${name}`;
    const address = addressOfFile(name);
    try {
      if (address === null || !name.endsWith('.json'))
        throw new Invalid('not a <PCI address>.json file name');
      const text = read(name);
      if (text === undefined) throw new Invalid('cannot be read');
      const e = parse(jsonObject(text));
      if (e.address !== address)
        throw new Invalid(`names device ${e.address}, not ${address} as its file name says`);
      entries.push(e);
    } catch (err) {
      if (!(err instanceof Invalid)) throw err;
      corrupt.push({ file, address, problem: err.message });
    }
  }
  return { entries, corrupt };
}

export function describeCorrupt(c: Corrupt, action: string): string {
  return `${c.file}${c.address ? ` (device ${c.address})` : ''}: ${c.problem}; ${action}`;
}
