// Repairs devices left half-done by a vfioctl that was killed mid-way (see journal.ts): an
// interrupted bind goes back to its original driver and override; an interrupted unbind is finished.
import type { HostRoot } from '../host/root';
import type { KernelIo } from './kernel-io';
import { Journal } from './journal';
import { completeRelease, driverOf, restore } from './executor';

export interface Recovery {
  readonly address: string;
  readonly kind: 'bind' | 'unbind';
  /** The step the killed run was about to take. */
  readonly interruptedAt: string;
  readonly driver: string | null;
  readonly error: string | null;
}

export async function recoverPending(root: HostRoot, io: KernelIo): Promise<Recovery[]> {
  const journal = new Journal(root);
  const out: Recovery[] = [];
  for (const e of journal.pending()) {
    // The caller holds the lock, so the run that wrote this entry is gone.
    const error = e.kind === 'bind' ? await restore(root, io, e.address, e.original) : await completeRelease(root, io, e.address, e.target.override);
    journal.clear(e.address);
    out.push({ address: e.address, kind: e.kind, interruptedAt: `step ${e.step + 1} (${e.op})`, driver: driverOf(root, e.address), error });
  }
  return out;
}
