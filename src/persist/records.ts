// What a device was on before vfioctl bound it, so `unbind` can give it back to that driver.
// Kept under /run: after a reboot the host driver binds again by itself.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HostRoot } from '../host/root';

export interface BindRecord {
  readonly address: string;
  readonly originalDriver: string | null;
  readonly originalOverride: string | null;
  /** The driver it was bound to; null for intent `none` (no driver). */
  readonly driver: string | null;
  readonly at: string;
}

export const RECORD_DIR = '/run/vfioctl/bound';

export function readRecords(root: HostRoot): Map<string, BindRecord> {
  const out = new Map<string, BindRecord>();
  for (const f of root.list(RECORD_DIR)) {
    if (!f.endsWith('.json')) continue;
    try {
      const r = JSON.parse(root.readFile(`${RECORD_DIR}/${f}`) ?? '') as BindRecord;
      if (typeof r.address === 'string') out.set(r.address, r);
    } catch {
      /* a torn record is ignored: unbind then falls back to letting the kernel pick */
    }
  }
  return out;
}

export function writeRecord(root: HostRoot, r: BindRecord): void {
  atomicWrite(root.path(`${RECORD_DIR}/${r.address}.json`), JSON.stringify(r) + '\n');
}

export function removeRecord(root: HostRoot, address: string): void {
  fs.rmSync(root.path(`${RECORD_DIR}/${address}.json`), { force: true });
}

/** Write-then-rename so a crash never leaves a torn file; fsync so it survives power loss. */
export function atomicWrite(file: string, content: string, mode = 0o600, dirMode = 0o700): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: dirMode });
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.writeSync(fd, content);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}
