// What `apply` last did per configured device (kept across reboots, so `status` can tell a kernel
// upgrade that changed the resolution, or a device something else rebound), and what the boot-time
// layers achieved this boot (under /run: it describes this boot only).
import type { HostRoot } from '../host/root';
import { atomicWrite } from './records';
import {
  field,
  Invalid,
  isAddress,
  isBool,
  isDriverName,
  isObj,
  isString,
  jsonObject,
  oneOf,
  orNull,
} from './validate';

export const STATE_FILE = '/var/lib/vfioctl/state.json';
export const BOOT_FILE = '/run/vfioctl/boot.json';

/** What the last apply did to a device (a no-op counts as `ok`: it was already there). */
export type AppliedStatus = 'ok' | 'failed' | 'refused' | 'invalid';

export interface AppliedDevice {
  readonly address: string;
  readonly intent: string | null;
  /** The rule, as `rules[N] (line L): SELECTOR`. */
  readonly rule: string;
  readonly kernel: string | null;
  /** The driver the intent resolved to (null for `none`, or when it could not be resolved). */
  readonly driver: string | null;
  readonly module: string | null;
  readonly status: AppliedStatus;
  readonly error: string | null;
  readonly at: string;
}

export interface AppliedState {
  readonly devices: Readonly<Record<string, AppliedDevice>>;
}

/**
 * won: on its configured driver before any `apply` this boot (the override beat the host driver);
 * host-first: a host driver had it (built in, or loaded before the override was written);
 * unbound: no driver at all when the late apply looked.
 */
export type BootOutcome = 'won' | 'host-first' | 'unbound';

export interface DeviceBootOutcome {
  readonly outcome: BootOutcome;
  readonly driver: string | null;
  readonly hostDriverBuiltin: boolean;
}

export interface BootState {
  readonly at: string;
  readonly kernel: string | null;
  readonly devices: Readonly<Record<string, DeviceBootOutcome>>;
}

export interface StateRead<T> {
  readonly value: T;
  /** Why the file was not used (torn, foreign, wrong types), with the file's name; else null. */
  readonly problem: string | null;
}

/** A file of ours, parsed and checked; a broken one reads as `empty`, with the problem named. */
function readChecked<T>(
  root: HostRoot,
  rel: string,
  empty: T,
  parse: (o: Record<string, unknown>) => T,
  action: string,
): StateRead<T> {
  const text = root.readFile(rel);
  if (text === undefined)
    return {
      value: empty,
      problem: root.hasEntry(rel) ? `${root.path(rel)}: cannot be read; ${action}` : null,
    };
  try {
    return { value: parse(jsonObject(text)), problem: null };
  } catch (e) {
    if (!(e instanceof Invalid)) throw e;
    return { value: empty, problem: `${root.path(rel)}: ${e.message}; ${action}` };
  }
}

function parseApplied(key: string, v: unknown): AppliedDevice {
  if (!isObj(v)) throw new Invalid(`devices['${key}'] is not an object`);
  const d = {
    address: field(v, 'address', isAddress, 'a PCI address'),
    intent: field(v, 'intent', orNull(isString), 'an intent or null'),
    rule: field(v, 'rule', isString, 'a rule label'),
    kernel: field(v, 'kernel', orNull(isString), 'a kernel release or null'),
    driver: field(v, 'driver', orNull(isDriverName), 'a driver name or null'),
    module: field(v, 'module', orNull(isDriverName), 'a module name or null'),
    status: field(
      v,
      'status',
      oneOf<AppliedStatus>('ok', 'failed', 'refused', 'invalid'),
      "'ok', 'failed', 'refused' or 'invalid'",
    ),
    error: field(v, 'error', orNull(isString), 'a message or null'),
    at: field(v, 'at', isString, 'a time'),
  };
  if (d.address !== key) throw new Invalid(`devices['${key}'] names device ${d.address}`);
  return d;
}

export function parseState(o: Record<string, unknown>): AppliedState {
  const devices = field(o, 'devices', isObj, 'an object');
  return {
    devices: Object.fromEntries(Object.entries(devices).map(([k, v]) => [k, parseApplied(k, v)])),
  };
}

export function parseBootState(o: Record<string, unknown>): BootState {
  const devices = field(o, 'devices', isObj, 'an object');
  const out: Record<string, BootState['devices'][string]> = {};
  for (const [k, v] of Object.entries(devices)) {
    if (!isAddress(k) || !isObj(v))
      throw new Invalid(`devices['${k}'] is not a PCI address with an object`);
    out[k] = {
      outcome: field(
        v,
        'outcome',
        oneOf<BootOutcome>('won', 'host-first', 'unbound'),
        "'won', 'host-first' or 'unbound'",
      ),
      driver: field(v, 'driver', orNull(isDriverName), 'a driver name or null'),
      hostDriverBuiltin: field(v, 'hostDriverBuiltin', isBool, 'true or false'),
    };
  }
  return {
    at: field(o, 'at', isString, 'a time'),
    kernel: field(o, 'kernel', orNull(isString), 'a kernel release or null'),
    devices: out,
  };
}

/** What apply last did; a broken file is named in `problem` and rebuilt by the next apply. */
export function readStateChecked(root: HostRoot): StateRead<AppliedState> {
  return readChecked(
    root,
    STATE_FILE,
    { devices: {} },
    parseState,
    "ignored: 'vfioctl apply' rewrites it (devices an earlier apply bound are not released until then)",
  );
}

export function readState(root: HostRoot): AppliedState {
  return readStateChecked(root).value;
}

export function writeState(root: HostRoot, s: AppliedState): void {
  atomicWrite(root.confine(STATE_FILE), JSON.stringify(s, null, 2) + '\n', 0o644, 0o755);
}

export function readBootStateChecked(root: HostRoot): StateRead<BootState | null> {
  return readChecked<BootState | null>(
    root,
    BOOT_FILE,
    null,
    parseBootState,
    'ignored: the next boot rewrites it',
  );
}

export function writeBootState(root: HostRoot, s: BootState): void {
  atomicWrite(root.confine(BOOT_FILE), JSON.stringify(s, null, 2) + '\n');
}
