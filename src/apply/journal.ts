// Crash safety: every step is recorded under <root>/run/vfioctl/journal before it is taken, so a
// run killed between unbind and probe (device driverless, override set) is repaired by the next
// writing vfioctl invocation or `vfioctl recover`. The lock (lock.ts) serialises invocations.
import * as fs from 'node:fs';
import type { HostRoot } from '../host/root';
import { atomicWrite } from '../persist/records';
import {
  field,
  isAddress,
  isDriverName,
  isInt,
  isObj,
  isString,
  oneOf,
  orNull,
  readAddressFiles,
  Invalid,
  type Corrupt,
} from '../persist/validate';
import { RUN_DIR } from './lock';
import { STEP_OPS, type StepOp } from '../plan/types';

export const JOURNAL_DIR = `${RUN_DIR}/journal`;

export interface DriverState {
  readonly driver: string | null;
  readonly override: string | null;
}

export interface JournalEntry {
  readonly address: string;
  readonly kind: 'bind' | 'unbind';
  /** The state to return to when a bind is interrupted. */
  readonly original: DriverState;
  /** Where the device was going (an interrupted unbind is completed, not undone). */
  readonly target: DriverState;
  /** Index of the step about to be taken, and its op. */
  readonly step: number;
  readonly op: StepOp;
  readonly pid: number;
  readonly at: string;
}

/** driver_override values vfioctl writes: a driver name, or 'none'. */
function driverState(v: unknown, name: string): DriverState {
  if (!isObj(v))
    throw new Invalid(`field '${name}' is ${v === undefined ? 'missing' : 'not an object'}`);
  return {
    driver: field(v, 'driver', orNull(isDriverName), `a driver name or null (in '${name}')`),
    override: field(v, 'override', orNull(isDriverName), `a driver name or null (in '${name}')`),
  };
}

export function parseJournalEntry(o: Record<string, unknown>): JournalEntry {
  return {
    address: field(o, 'address', isAddress, 'a PCI address'),
    kind: field(o, 'kind', oneOf('bind', 'unbind'), "'bind' or 'unbind'"),
    original: driverState(o.original, 'original'),
    target: driverState(o.target, 'target'),
    step: field(o, 'step', isInt, 'a step number'),
    op: field(o, 'op', oneOf<StepOp>(...STEP_OPS), 'a step name'),
    pid: field(o, 'pid', isInt, 'a pid'),
    at: field(o, 'at', isString, 'a time'),
  };
}

export interface Pending {
  readonly entries: JournalEntry[];
  /** Entries that could not be read: reported with the device they name, never acted on. */
  readonly corrupt: Corrupt[];
}

export class Journal {
  constructor(private readonly root: HostRoot) {}

  record(e: JournalEntry): void {
    atomicWrite(this.root.confine(`${JOURNAL_DIR}/${e.address}.json`), JSON.stringify(e) + '\n');
  }

  clear(address: string): void {
    fs.rmSync(this.root.confine(`${JOURNAL_DIR}/${address}.json`), { force: true });
  }

  pending(): Pending {
    const names = this.root.list(JOURNAL_DIR);
    if (names.length === 0) return { entries: [], corrupt: [] };
    return readAddressFiles(
      names,
      (n) => this.root.readFile(`${JOURNAL_DIR}/${n}`),
      this.root.path(JOURNAL_DIR),
      parseJournalEntry,
    );
  }
}

export const CORRUPT_JOURNAL_ACTION =
  "not acted on: check the device with 'vfioctl show' (it may be without a driver), fix it by hand if needed, then delete the file";
