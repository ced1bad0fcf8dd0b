// Crash safety: every step is recorded under <root>/run/vfioctl/journal before it is taken, so a
// run killed between unbind and probe (device driverless, override set) is repaired by the next
// writing vfioctl invocation or `vfioctl recover`. A lock file serialises invocations.
import * as fs from 'node:fs';
import type { HostRoot } from '../host/root';
import { atomicWrite } from '../persist/records';
import { EXIT, VfioctlError } from '../util/diag';
import { processAlive } from '../util/process';

export const JOURNAL_DIR = '/run/vfioctl/journal';
export const LOCK_FILE = '/run/vfioctl/lock';

export interface JournalEntry {
  readonly address: string;
  readonly kind: 'bind' | 'unbind';
  /** The state to return to when a bind is interrupted. */
  readonly original: { readonly driver: string | null; readonly override: string | null };
  /** Where the device was going (an interrupted unbind is completed, not undone). */
  readonly target: { readonly driver: string | null; readonly override: string | null };
  /** Index of the step about to be taken, and its op. */
  readonly step: number;
  readonly op: string;
  readonly pid: number;
  readonly at: string;
}

export class Journal {
  constructor(private readonly root: HostRoot) {}

  record(e: JournalEntry): void {
    atomicWrite(this.root.path(`${JOURNAL_DIR}/${e.address}.json`), JSON.stringify(e) + '\n');
  }

  clear(address: string): void {
    fs.rmSync(this.root.path(`${JOURNAL_DIR}/${address}.json`), { force: true });
  }

  pending(): JournalEntry[] {
    const out: JournalEntry[] = [];
    for (const f of this.root.list(JOURNAL_DIR)) {
      if (!f.endsWith('.json')) continue;
      const text = this.root.readFile(`${JOURNAL_DIR}/${f}`);
      try {
        out.push(JSON.parse(text ?? '') as JournalEntry);
      } catch {
        // atomicWrite never leaves a torn entry; anything else here is not ours to act on.
      }
    }
    return out;
  }
}


const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** An exclusive lock (O_EXCL lock file holding our pid); a dead holder's lock is taken over. */
export async function acquireLock(root: HostRoot, timeoutMs = 30_000): Promise<() => void> {
  const file = root.path(LOCK_FILE);
  fs.mkdirSync(root.path('/run/vfioctl'), { recursive: true, mode: 0o700 });
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const fd = fs.openSync(file, 'wx', 0o600);
      fs.writeSync(fd, `${process.pid}\n`);
      fs.closeSync(fd);
      return () => {
        try {
          if (fs.readFileSync(file, 'utf8').trim() === String(process.pid)) fs.unlinkSync(file);
        } catch {
          /* already gone */
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let holder = NaN;
    try {
      holder = Number(fs.readFileSync(file, 'utf8').trim());
    } catch {
      continue; // released between our open and read
    }
    if (!Number.isInteger(holder) || holder <= 0 || !processAlive(holder)) {
      // A killed vfioctl leaves its lock behind; the pid check tells us it is stale.
      try {
        fs.unlinkSync(file);
      } catch {
        /* someone else took it over */
      }
      continue;
    }
    if (Date.now() > deadline) {
      throw new VfioctlError(`another vfioctl (pid ${holder}) holds ${root.path(LOCK_FILE)}; try again when it is done`, EXIT.FAILED);
    }
    await sleep(50);
  }
}
