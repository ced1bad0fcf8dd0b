// Every path vfioctl reads or writes goes through one HostRoot (`--root DIR`, default `/`),
// as mdevctl's Environment does, so every test can run as a normal user against a temp tree.
import * as fs from 'node:fs';
import * as path from 'node:path';

export class HostRoot {
  readonly dir: string;

  constructor(dir = '/') {
    this.dir = path.resolve(dir);
  }

  get isLive(): boolean {
    return this.dir === '/';
  }

  /** Absolute path of `rel` (written as if from `/`) under this root. */
  path(rel: string): string {
    return path.join(this.dir, rel);
  }

  /** Reverse of path(): the host-visible path of an absolute path under this root. */
  hostPath(abs: string): string {
    const rel = path.relative(this.dir, abs);
    return '/' + rel;
  }

  /**
   * A sysfs/procfs attribute without its trailing newline, or undefined when the kernel does not
   * have it (older kernels lack reset_method, vfio-dev, ...) or it is not readable by us.
   */
  readAttr(rel: string): string | undefined {
    try {
      const s = fs.readFileSync(this.path(rel), 'latin1');
      return s.endsWith('\n') ? s.slice(0, -1) : s;
    } catch {
      return undefined;
    }
  }

  readFile(rel: string): string | undefined {
    try {
      return fs.readFileSync(this.path(rel), 'utf8');
    } catch {
      return undefined;
    }
  }

  readBytes(rel: string, max: number): Buffer | undefined {
    let fd: number | undefined;
    try {
      fd = fs.openSync(this.path(rel), 'r');
      const buf = Buffer.alloc(max);
      const n = fs.readSync(fd, buf, 0, max, 0);
      return buf.subarray(0, n);
    } catch {
      return undefined;
    } finally {
      if (fd !== undefined) fs.closeSync(fd);
    }
  }

  /** Target of a symlink (as stored, usually relative in sysfs), or undefined. */
  readLink(rel: string): string | undefined {
    try {
      return fs.readlinkSync(this.path(rel));
    } catch {
      return undefined;
    }
  }

  /** Basename of a symlink's target: `driver` -> `vfio-pci`, `iommu_group` -> `7`. */
  linkName(rel: string): string | undefined {
    const t = this.readLink(rel);
    return t === undefined ? undefined : path.basename(t);
  }

  list(rel: string): string[] {
    try {
      return fs.readdirSync(this.path(rel));
    } catch {
      return [];
    }
  }

  exists(rel: string): boolean {
    return fs.existsSync(this.path(rel));
  }

  /** Real path of `rel` resolved inside the root, as a root-relative path (`/sys/devices/...`). */
  realpath(rel: string): string | undefined {
    try {
      return this.hostPath(fs.realpathSync(this.path(rel)));
    } catch {
      return undefined;
    }
  }

  /** Kernel release: `--kernel REL`, else `<root>/proc/sys/kernel/osrelease`. */
  kernelRelease(override?: string): string | undefined {
    return override ?? this.readAttr('/proc/sys/kernel/osrelease')?.trim();
  }
}
