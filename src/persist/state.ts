// What `apply` last did per configured device (kept across reboots, so `status` can tell a kernel
// upgrade that changed the resolution, or a device something else rebound), and what the boot-time
// layers achieved this boot (under /run: it describes this boot only).
import type { HostRoot } from '../host/root';
import { atomicWrite } from './records';

export const STATE_FILE = '/var/lib/vfioctl/state.json';
export const BOOT_FILE = '/run/vfioctl/boot.json';

export interface AppliedDevice {
  readonly address: string;
  readonly intent: string | null;
  /** The rule, as `rules[N] (line L): SELECTOR`. */
  readonly rule: string;
  readonly kernel: string | null;
  /** The driver the intent resolved to (null for `none`, or when it could not be resolved). */
  readonly driver: string | null;
  readonly module: string | null;
  readonly status: string;
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

export interface BootState {
  readonly at: string;
  readonly kernel: string | null;
  readonly devices: Readonly<Record<string, { readonly outcome: BootOutcome; readonly driver: string | null; readonly hostDriverBuiltin: boolean }>>;
}

function readJson<T>(root: HostRoot, rel: string): T | null {
  const text = root.readFile(rel);
  if (text === undefined) return null;
  try {
    return JSON.parse(text) as T;
  } catch {
    return null; // written atomically; anything else is not ours and is rebuilt by the next apply
  }
}

export function readState(root: HostRoot): AppliedState {
  const s = readJson<AppliedState>(root, STATE_FILE);
  return s && typeof s.devices === 'object' && s.devices !== null ? s : { devices: {} };
}

export function writeState(root: HostRoot, s: AppliedState): void {
  atomicWrite(root.path(STATE_FILE), JSON.stringify(s, null, 2) + '\n', 0o644, 0o755);
}

export function readBootState(root: HostRoot): BootState | null {
  return readJson<BootState>(root, BOOT_FILE);
}

export function writeBootState(root: HostRoot, s: BootState): void {
  atomicWrite(root.path(BOOT_FILE), JSON.stringify(s, null, 2) + '\n');
}
