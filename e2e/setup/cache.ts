// The download/build cache that survives between runs on one machine. Each built artifact lives in
// a directory with a stamp holding the key it was built from; a different key means rebuild.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { processAlive } from '../../src/util/process';

export const DEFAULT_CACHE_DIR = '/var/cache/vfioctl-e2e';

export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.resolve(env.VFIOCTL_E2E_CACHE || DEFAULT_CACHE_DIR);
}

export function hashOf(...parts: readonly (string | Buffer)[]): string {
  const h = createHash('sha256');
  for (const p of parts) h.update(p).update('\0');
  return h.digest('hex').slice(0, 16);
}

const STAMP = 'stamp.json';

/** The stamp's contents when `dir` was completely built from `key`, otherwise null. */
export function readStamp<T>(dir: string, key: string): T | null {
  try {
    const s = JSON.parse(fs.readFileSync(path.join(dir, STAMP), 'utf8')) as {
      key: string;
      data: T;
    };
    return s.key === key ? s.data : null;
  } catch {
    return null;
  }
}

export function writeStamp<T>(dir: string, key: string, data: T): void {
  const tmp = path.join(dir, `${STAMP}.tmp`);
  fs.writeFileSync(tmp, JSON.stringify({ key, data }, null, 2) + '\n');
  fs.renameSync(tmp, path.join(dir, STAMP));
}

/** An empty directory at `dir` (whatever was there is removed). */
export function freshDir(dir: string): string {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/** Removes entries of `dir` not in `keep` (old kernels, superseded .debs). */
export function prune(dir: string, keep: ReadonlySet<string>): string[] {
  let removed: string[] = [];
  try {
    removed = fs.readdirSync(dir).filter((n) => !keep.has(n));
  } catch {
    return [];
  }
  for (const n of removed) fs.rmSync(path.join(dir, n), { recursive: true, force: true });
  return removed;
}

/**
 * Holds `<dir>/.lock` while `fn` runs, so two suites on one machine never build into the same
 * cache at once. A lock left by a dead process is taken over.
 */
export async function withCacheLock<T>(
  dir: string,
  fn: () => Promise<T>,
  onWait: (pid: number) => void,
  timeoutMs = 30 * 60_000,
): Promise<T> {
  const lock = path.join(dir, '.lock');
  const t0 = Date.now();
  let told = false;
  for (;;) {
    try {
      fs.writeFileSync(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const holder = Number(fs.readFileSync(lock, 'utf8').trim());
      if (!holder || !processAlive(holder)) {
        fs.rmSync(lock, { force: true });
        continue;
      }
      if (Date.now() - t0 > timeoutMs)
        throw new Error(`${lock} is still held by process ${holder}`);
      if (!told) onWait(holder);
      told = true;
      await new Promise((r) => setTimeout(r, 2000));
    }
  }
  try {
    return await fn();
  } finally {
    fs.rmSync(lock, { force: true });
  }
}
