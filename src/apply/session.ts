// A writing invocation: the lock, then repair of what a killed run left, then the caller's work,
// with SIGINT/SIGTERM turned into "finish or roll back the step in flight, then stop" instead of
// death mid-step (a device left driverless). The lock goes when the work is done, whatever
// happened.
import type { HostRoot } from '../host/root';
import type { KernelIo } from './kernel-io';
import { acquireLock, type LockHolder } from './lock';
import { recoverPending, type RecoveryReport } from './recover';
import { STATE_FILE } from '../persist/state';

export type Interruption = 'SIGINT' | 'SIGTERM' | 'SIGHUP';

export interface SessionOptions {
  readonly kernelIo: KernelIo;
  /** How long to wait for another vfioctl's lock, in ms. */
  readonly waitMs: number;
  readonly onWait?: (holder: LockHolder) => void;
  /** Told once when a signal arrives (the work then stops at the next safe point). */
  readonly onSignal?: (signal: Interruption) => void;
}

export interface WriteSession {
  readonly io: KernelIo;
  readonly recovery: RecoveryReport;
  /** The signal that asked us to stop, or null: checked before every step. */
  interrupted(): Interruption | null;
}

const SIGNALS: readonly Interruption[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

export async function writeSession<T>(
  root: HostRoot,
  o: SessionOptions,
  work: (s: WriteSession) => Promise<T>,
): Promise<T> {
  let signal: Interruption | null = null;
  const waiting = new AbortController();
  const handlers = SIGNALS.map((sig) => {
    const h = () => {
      if (signal === null) o.onSignal?.(sig);
      signal ??= sig;
      waiting.abort(sig);
    };
    process.on(sig, h);
    return [sig, h] as const;
  });
  try {
    // Where this run will keep state must be inside the root before anything changes.
    root.confine(STATE_FILE);
    const lock = await acquireLock(root, {
      waitMs: o.waitMs,
      onWait: o.onWait,
      abort: waiting.signal,
    });
    try {
      const recovery = await recoverPending(root, o.kernelIo);
      const result = await work({ io: o.kernelIo, recovery, interrupted: () => signal });
      // A signal sent during the last step may still be queued in the event loop: let it land, so
      // a report's `interrupted` (read after we return) sees it.
      await new Promise((r) => setImmediate(r));
      return result;
    } finally {
      lock.release();
    }
  } finally {
    for (const [sig, h] of handlers) process.off(sig, h);
  }
}
