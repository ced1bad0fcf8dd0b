// What a device was on before vfioctl bound it, so `unbind` can give it back to that driver.
// Kept under /run: after a reboot the host driver binds again by itself.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { HostRoot } from '../host/root';
import {
  describeCorrupt,
  field,
  isAddress,
  isDriverName,
  isString,
  orNull,
  readAddressFiles,
} from './validate';

export interface BindRecord {
  readonly address: string;
  readonly originalDriver: string | null;
  readonly originalOverride: string | null;
  /** The driver it was bound to; null for intent `none` (no driver). */
  readonly driver: string | null;
  readonly at: string;
}

export const RECORD_DIR = '/run/vfioctl/bound';

export function parseRecord(o: Record<string, unknown>): BindRecord {
  return {
    address: field(o, 'address', isAddress, 'a PCI address'),
    originalDriver: field(o, 'originalDriver', orNull(isDriverName), 'a driver name or null'),
    originalOverride: field(o, 'originalOverride', orNull(isDriverName), 'a driver name or null'),
    driver: field(o, 'driver', orNull(isDriverName), 'a driver name or null'),
    at: field(o, 'at', isString, 'a time'),
  };
}

/**
 * What vfioctl bound, by address. A record that does not check out is reported (`warn`) and left
 * out: unbind then lets the kernel pick the host driver, as for a device vfioctl never bound.
 */
export function readRecords(
  root: HostRoot,
  warn: (msg: string) => void = () => undefined,
): Map<string, BindRecord> {
  const names = root.list(RECORD_DIR);
  if (names.length === 0) return new Map();
  const { entries, corrupt } = readAddressFiles(
    names,
    (n) => root.readFile(`${RECORD_DIR}/${n}`),
    root.path(RECORD_DIR),
    parseRecord,
  );
  for (const c of corrupt)
    warn(
      describeCorrupt(
        c,
        'ignored: unbind lets the kernel pick the host driver for it; delete the file',
      ),
    );
  return new Map(entries.map((r) => [r.address, r]));
}

export function writeRecord(root: HostRoot, r: BindRecord): void {
  atomicWrite(root.confine(`${RECORD_DIR}/${r.address}.json`), JSON.stringify(r) + '\n');
}

export function removeRecord(root: HostRoot, address: string): void {
  fs.rmSync(root.confine(`${RECORD_DIR}/${address}.json`), { force: true });
}

/**
 * Write-then-rename so a crash never leaves a torn file; fsync so it survives power loss. The temp
 * file sits in the same directory (rename(2) is atomic only within one filesystem) and is created
 * exclusively, so a leftover or planted file of that name is never written through. `keep`: an
 * existing file's owner and mode carry over (an admin's chmod of vfioctl.json survives `set`).
 * Callers pass paths from HostRoot.confine(), never ones that could lead out of the root.
 */
export function atomicWrite(
  file: string,
  content: string,
  mode = 0o600,
  dirMode = 0o700,
  keep = false,
): void {
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: dirMode });
  let old: fs.Stats | undefined;
  if (keep) old = fs.lstatSync(file, { throwIfNoEntry: false });
  const tmp = `${file}.${process.pid}.${Date.now().toString(36)}.tmp`;
  const fd = fs.openSync(
    tmp,
    fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
    mode,
  );
  try {
    try {
      fs.writeSync(fd, content);
      if (old?.isFile()) {
        fs.fchownSync(fd, old.uid, old.gid);
        fs.fchmodSync(fd, old.mode & 0o7777);
      } else fs.fchmodSync(fd, mode); // the mode given to open() is filtered by the umask
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(tmp, file);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw e;
  }
  // The rename itself is durable only once the directory is.
  const dfd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(dfd);
  } finally {
    fs.closeSync(dfd);
  }
}
