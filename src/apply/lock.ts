// One vfioctl at a time writes a host. The lock is flock(2) on <root>/run/vfioctl/lock: the kernel
// holds it for exactly as long as the open file description lives, so a killed holder releases it
// and no stale-lock detection (which could remove a live holder's lock) is ever needed.
// Node has no flock(); util-linux's flock(1) takes it on a descriptor we pass it: the lock belongs
// to the open file description, which the child shares with us (flock(2): "locks created by
// flock() are associated with an open file description"), so it stays ours after the child exits.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HostRoot } from '../host/root';
import { RUN_DIR } from '../host/run-cache';
import { EXIT, VfioctlError } from '../util/diag';

export { RUN_DIR };
export const LOCK_FILE = `${RUN_DIR}/lock`;

/** flock(1)'s exit status when the lock is held by someone else (--conflict-exit-code). */
const CONFLICT = 75;

export interface LockHolder {
  readonly pid: number | null;
  readonly command: string;
}

export interface Lock {
  release(): void;
}

export interface LockOptions {
  /** How long to wait for another holder, in ms (0: fail at once). */
  readonly waitMs: number;
  /** Told once, after a second of waiting, who holds the lock. */
  readonly onWait?: (holder: LockHolder) => void;
  /** Stops the wait (SIGINT while waiting): acquireLock then throws Interrupted. */
  readonly abort?: AbortSignal;
}

/** The wait for the lock was cut short by a signal; nothing was done. */
export class Interrupted extends VfioctlError {
  constructor(what: string) {
    super(`interrupted (${what}) while waiting for the lock; nothing was done`, EXIT.FAILED);
  }
}

/** The lock could not be had within --wait: its own exit code, so callers can retry. */
export class LockTimeout extends VfioctlError {
  constructor(message: string) {
    super(message, EXIT.LOCKED);
  }
}

/** The run directory under the root, refused when it is anything but a real directory. */
export function runDir(root: HostRoot): string {
  const dir = root.confine(RUN_DIR);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = fs.lstatSync(dir);
  if (!st.isDirectory())
    throw new VfioctlError(
      `${dir} is not a directory (a ${st.isSymbolicLink() ? 'symlink' : 'file'}); remove it so vfioctl can keep its lock and journal there`,
      EXIT.FAILED,
    );
  return dir;
}

/** Opens the lock file without following a symlink; anything but a regular file is an error. */
function openLockFile(root: HostRoot, create: boolean): number | null {
  const file = create ? `${runDir(root)}/lock` : root.path(LOCK_FILE);
  let fd: number;
  try {
    fd = fs.openSync(
      file,
      fs.constants.O_RDWR | fs.constants.O_NOFOLLOW | (create ? fs.constants.O_CREAT : 0),
      0o600,
    );
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (!create && code === 'ENOENT') return null;
    const what =
      code === 'ELOOP' ? 'a symlink' : code === 'EISDIR' ? 'a directory' : `unusable (${code})`;
    throw new VfioctlError(
      `the lock ${file} is ${what}; it must be a regular file: remove it (no vfioctl can be running with it)`,
      EXIT.FAILED,
    );
  }
  if (!fs.fstatSync(fd).isFile()) {
    fs.closeSync(fd);
    throw new VfioctlError(
      `the lock ${file} is not a regular file; remove it (no vfioctl can be running with it)`,
      EXIT.FAILED,
    );
  }
  return fd;
}

function flockArgs(waitSeconds: number | null): string[] {
  const base = ['--exclusive', '--conflict-exit-code', String(CONFLICT)];
  return waitSeconds === null
    ? [...base, '--nonblock', '3']
    : [...base, '--wait', String(waitSeconds), '3'];
}

function flockError(status: number | null, stderr: string): VfioctlError {
  return new VfioctlError(
    `cannot take the lock with flock(1) (util-linux): ${stderr.trim() || `exit ${status}`}`,
    EXIT.FAILED,
  );
}

/** Takes the lock on `fd` now if it is free: true when taken. */
function tryFlock(fd: number): boolean {
  const r = spawnSync('flock', flockArgs(null), {
    stdio: ['ignore', 'ignore', 'pipe', fd],
    encoding: 'utf8',
  });
  if (r.error) throw flockError(null, r.error.message);
  if (r.status === 0) return true;
  if (r.status === CONFLICT) return false;
  throw flockError(r.status, r.stderr);
}

/** Waits up to `seconds` for the lock on `fd`; resolves true when taken. */
function waitFlock(fd: number, seconds: number, abort?: AbortSignal): Promise<boolean> {
  return new Promise((resolve, reject) => {
    if (abort?.aborted) return reject(new Interrupted(String(abort.reason)));
    const child = spawn('flock', flockArgs(seconds), { stdio: ['ignore', 'ignore', 'pipe', fd] });
    const stop = () => child.kill('SIGTERM');
    abort?.addEventListener('abort', stop, { once: true });
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => reject(flockError(null, e.message)));
    child.on('close', (code) => {
      abort?.removeEventListener('abort', stop);
      // Killed before it took the lock: flock(2) was never granted to our file description.
      if (abort?.aborted) reject(new Interrupted(String(abort.reason)));
      else if (code === 0) resolve(true);
      else if (code === CONFLICT) resolve(false);
      else reject(flockError(code, stderr));
    });
  });
}

/** Who holds the lock, from what the holder wrote into the file (informational only). */
export function lockHolder(root: HostRoot): LockHolder {
  const [pid, ...cmd] = (root.readFile(LOCK_FILE) ?? '').split('\n');
  const n = Number(pid);
  return { pid: Number.isInteger(n) && n > 0 ? n : null, command: cmd.join(' ').trim() };
}

export function describeHolder(h: LockHolder): string {
  return h.pid === null
    ? 'a vfioctl that is just starting'
    : `pid ${h.pid}${h.command ? ` (${h.command})` : ''}`;
}

/** Is the lock held by a live process right now? (Read-only: never creates the file.) */
export function lockHeld(root: HostRoot): boolean {
  let fd: number | null;
  try {
    fd = openLockFile(root, false);
  } catch {
    return false; // not ours to open (a reader without root): say what is pending rather than hide it
  }
  if (fd === null) return false;
  try {
    // Taking it for an instant is the only question flock answers; closing gives it straight back.
    return !tryFlock(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export async function acquireLock(root: HostRoot, opts: LockOptions): Promise<Lock> {
  const fd = openLockFile(root, true)!;
  try {
    let taken = tryFlock(fd);
    if (!taken && opts.waitMs > 0) {
      const told = setTimeout(() => opts.onWait?.(lockHolder(root)), Math.min(1000, opts.waitMs));
      try {
        taken = await waitFlock(fd, opts.waitMs / 1000, opts.abort);
      } finally {
        clearTimeout(told);
      }
    }
    if (!taken) {
      throw new LockTimeout(
        `another vfioctl holds ${root.path(LOCK_FILE)}: ${describeHolder(lockHolder(root))}; gave up after ${opts.waitMs / 1000} s (--wait SECONDS waits longer)`,
      );
    }
  } catch (e) {
    fs.closeSync(fd);
    throw e;
  }
  // Who we are, for whoever waits next; the content never decides ownership.
  fs.ftruncateSync(fd, 0);
  fs.writeSync(
    fd,
    `${process.pid}\n${[path.basename(process.argv[0] ?? 'node'), ...process.argv.slice(1)].join(' ')}\n`,
    0,
  );
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      try {
        fs.ftruncateSync(fd, 0);
      } finally {
        fs.closeSync(fd); // the last descriptor of the open file description: the lock goes with it
      }
    },
  };
}
