// Repairs devices left half-done by a vfioctl that was killed mid-way (see journal.ts): an
// interrupted bind goes back to its original driver and override; an interrupted unbind is
// finished.
import type { HostRoot } from '../host/root';
import type { KernelIo } from './kernel-io';
import { CORRUPT_JOURNAL_ACTION, Journal } from './journal';
import { completeRelease, driverOf, restore } from './executor';
import { describeCorrupt } from '../persist/validate';

export interface Recovery {
  readonly address: string;
  readonly kind: 'bind' | 'unbind';
  /** The step the killed run was about to take. */
  readonly interruptedAt: string;
  readonly driver: string | null;
  readonly error: string | null;
}

export interface RecoveryReport {
  readonly recovered: Recovery[];
  /** Journal entries that could not be read: named, left in place, never acted on. */
  readonly unreadable: string[];
}

/** The caller holds the lock, so the runs that wrote these entries are gone. */
export async function recoverPending(root: HostRoot, io: KernelIo): Promise<RecoveryReport> {
  const journal = new Journal(root);
  const { entries, corrupt } = journal.pending();
  const recovered: Recovery[] = [];
  for (const e of entries) {
    const error =
      e.kind === 'bind'
        ? await restore(root, io, e.address, e.original)
        : await completeRelease(root, io, e.address, e.target.override);
    journal.clear(e.address);
    recovered.push({
      address: e.address,
      kind: e.kind,
      interruptedAt: `step ${e.step + 1} (${e.op})`,
      driver: driverOf(root, e.address),
      error,
    });
  }
  return { recovered, unreadable: corrupt.map((c) => describeCorrupt(c, CORRUPT_JOURNAL_ACTION)) };
}
