// Every path vfioctl reads or writes goes through one HostRoot (`--root DIR`, default `/`),
// as mdevctl's Environment does, so every test can run as a normal user against a temp tree.
import { isAscii } from 'node:buffer';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { EXIT, VfioctlError } from '../util/diag';

/** Shared read buffer: attribute reads are synchronous, so one buffer serves them all. */
let buf = Buffer.allocUnsafe(16384);
/** Bytes read at a time by HostRoot.readLines. */
const LINES_WINDOW = 65536;

/** A root-relative path that path.join would leave as it is (no `//`, `/./`, `/../`). */
function isPlain(rel: string): boolean {
  return rel.charCodeAt(0) === 47 /* / */ && !rel.includes('//') && !rel.includes('/.');
}

/** `dir/target` normalised; sysfs targets are `../../devices/...`, so that case is cut short. */
export function resolveRelative(dir: string, target: string): string {
  let up = 0;
  while (target.startsWith('../', up * 3)) up++;
  const rest = target.slice(up * 3);
  if (
    dir.charCodeAt(0) !== 47 ||
    dir.length < 2 ||
    dir.endsWith('/') ||
    dir.includes('/.') ||
    dir.includes('//') ||
    rest === '' ||
    rest.startsWith('.') ||
    rest.includes('/.') ||
    rest.includes('//')
  ) {
    return path.posix.join(dir + '/', target);
  }
  let end = dir.length;
  for (let i = 0; i < up && end > 0; i++) end = dir.lastIndexOf('/', end - 1);
  return `${end > 0 ? dir.slice(0, end) : ''}/${rest}`;
}

// The reads themselves, on absolute paths. Failures are answers (undefined, [], false): a
// missing attribute is how the kernel says "not here".

function readAttrAt(abs: string): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(abs, 'r');
  } catch {
    return undefined;
  }
  try {
    // One read: sysfs hands over a whole attribute (at most a page) in one read() (kernfs
    // seq_file), so a read shorter than the buffer is the end; no fstat, no second read.
    let n = 0;
    for (;;) {
      const got = fs.readSync(fd, buf, n, buf.length - n, null);
      n += got;
      if (got === 0 || n < buf.length) break;
      const bigger = Buffer.allocUnsafe(buf.length * 2);
      buf.copy(bigger, 0, 0, n);
      buf = bigger;
    }
    const end = n > 0 && buf[n - 1] === 10 ? n - 1 : n;
    return buf.toString('latin1', 0, end);
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

function readBytesAt(abs: string, max: number): Buffer | undefined {
  let fd: number | undefined;
  try {
    fd = fs.openSync(abs, 'r');
    const out = Buffer.allocUnsafe(max);
    const n = fs.readSync(fd, out, 0, max, 0);
    return out.subarray(0, n);
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * The first `max` bytes of a file (fewer if shorter) as a view of the shared buffer, valid until
 * the next read: a binary attribute's header without allocating a buffer for it.
 */
function readHeadAt(abs: string, max: number): Buffer | undefined {
  let fd: number | undefined;
  try {
    fd = fs.openSync(abs, 'r');
    return buf.subarray(0, fs.readSync(fd, buf, 0, max, 0));
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

function readLinkAt(abs: string): string | undefined {
  try {
    return fs.readlinkSync(abs);
  } catch {
    return undefined;
  }
}

/** path.basename of a link target, without its argument checks (called thousands of times). */
function baseName(t: string): string {
  let end = t.length;
  while (end > 1 && t.charCodeAt(end - 1) === 47) end--;
  return t.slice(t.lastIndexOf('/', end - 1) + 1, end);
}

function listAt(abs: string): string[] {
  try {
    return fs.readdirSync(abs);
  } catch {
    return [];
  }
}

function hasEntryAt(abs: string): boolean {
  try {
    return fs.lstatSync(abs, { throwIfNoEntry: false }) !== undefined;
  } catch {
    return false;
  }
}

/**
 * One directory's entries, read by name (`modalias`, `driver`, ...): its absolute path is
 * built once. What a device read uses, ~20 times per device.
 */
export class HostDir {
  constructor(
    /** Root-relative path of the directory. */
    readonly rel: string,
    private readonly abs: string,
  ) {}

  readAttr(name: string): string | undefined {
    return readAttrAt(`${this.abs}/${name}`);
  }

  readBytes(name: string, max: number): Buffer | undefined {
    return readBytesAt(`${this.abs}/${name}`, max);
  }

  /** See readHeadAt: a view of the shared buffer, overwritten by the next read. */
  readHead(name: string, max: number): Buffer | undefined {
    return readHeadAt(`${this.abs}/${name}`, max);
  }

  readLink(name: string): string | undefined {
    return readLinkAt(`${this.abs}/${name}`);
  }

  linkName(name: string): string | undefined {
    const t = readLinkAt(`${this.abs}/${name}`);
    return t === undefined ? undefined : baseName(t);
  }

  /**
   * linkName of a link many devices lack (`physfn`, `driver`), else null: the entry is looked for
   * first, since a failed readlink costs a thrown error (13-18 us here against 4-5 for the lstat).
   */
  optionalLinkName(name: string): string | null {
    return this.hasEntry(name) ? (this.linkName(name) ?? null) : null;
  }

  /** Root-relative path a relative symlink in this directory points to (see HostRoot.linkTarget). */
  linkTarget(name: string): string | undefined {
    const t = readLinkAt(`${this.abs}/${name}`);
    if (t === undefined || t.charCodeAt(0) === 47) return undefined;
    return resolveRelative(this.rel, t);
  }

  /** Entries of the directory itself (no name) or of a subdirectory. */
  list(name?: string): string[] {
    return listAt(name === undefined ? this.abs : `${this.abs}/${name}`);
  }

  /** Exists (following a symlink): existsSync fails without the cost of a thrown ENOENT. */
  exists(name?: string): boolean {
    return fs.existsSync(name === undefined ? this.abs : `${this.abs}/${name}`);
  }

  /** There is an entry (a dangling symlink counts). */
  hasEntry(name: string): boolean {
    return hasEntryAt(`${this.abs}/${name}`);
  }
}

/**
 * procfs files that follow the *reading* process's namespaces: /proc/self/mountinfo is the
 * reader's mount namespace, /proc/net/* (a symlink to self/net) its network namespace.
 */
export type NamespacedProcFile = 'mountinfo' | 'net/route' | 'net/ipv6_route' | 'net/if_inet6';

export interface HostRootOptions {
  /**
   * `dir` is the running host's `/` mounted into this process's filesystem (a container's
   * `--host-root`), not a tree of files: modules are loaded and hooks run chrooted into it, and
   * what follows namespaces is read as the host's init (pid 1) sees it.
   */
  readonly hostMount?: boolean;
}

export class HostRoot {
  readonly dir: string;
  /** See HostRootOptions.hostMount. */
  readonly hostMount: boolean;
  /** `dir` without its trailing slash ('' for `/`), so path() can concatenate. */
  private readonly prefix: string;

  constructor(dir = '/', opts: HostRootOptions = {}) {
    this.dir = path.resolve(dir);
    this.prefix = this.dir === '/' ? '' : this.dir;
    this.hostMount = !!opts.hostMount;
  }

  /** This process's own `/`. */
  get isLive(): boolean {
    return this.dir === '/';
  }

  /**
   * The running system's tree, this process's own `/` or the host's mounted (`--host-root`): the
   * running kernel is the one it describes, so modules can be loaded into it.
   */
  get isRunning(): boolean {
    return this.isLive || this.hostMount;
  }

  /**
   * Root-relative path of a namespaced procfs file, in the namespaces the host's checks must see.
   * The reader's own (/proc/self, /proc/net) on the live root and in fixtures; under --host-root
   * the reader is a container with its own mount and network namespaces, so the host's are read
   * through its init, /proc/1 (the host's procfs is mounted at DIR/proc: its pid 1 is the host's).
   */
  nsProc(file: NamespacedProcFile): string {
    if (this.hostMount) return `/proc/1/${file}`;
    return file === 'mountinfo' ? '/proc/self/mountinfo' : `/proc/${file}`;
  }

  /** Absolute path of `rel` (written as if from `/`) under this root. */
  path(rel: string): string {
    // Concatenation: path.join's normalisation costs more than the read it serves.
    return isPlain(rel) ? this.prefix + rel : path.join(this.dir, rel);
  }

  /**
   * Absolute path of `rel` for writing or executing, refused when it would leave the root: the
   * deepest part of it that exists is resolved (symlinks followed) and must stay under the root,
   * so a symlinked run/vfioctl, rules.d or device directory cannot aim a write elsewhere. On the
   * live root everything is under `/`; what is checked there is `..` in `rel`.
   */
  confine(rel: string): string {
    const abs = this.path(rel);
    if (rel.split('/').includes('..'))
      throw new VfioctlError(
        `refusing path ${rel}: '..' is not allowed in a path vfioctl writes or runs`,
        EXIT.BAD_INPUT,
      );
    if (this.isLive) return abs;
    let probe = abs;
    for (;;) {
      try {
        const real = fs.realpathSync(probe);
        if (real !== this.dir && !real.startsWith(this.prefix + '/')) {
          throw new VfioctlError(
            `refusing to write ${abs}: ${probe === abs ? 'it' : probe} resolves to ${real}, outside the root ${this.dir} (a symlink leads out)`,
            EXIT.FAILED,
          );
        }
        return abs;
      } catch (e) {
        if (e instanceof VfioctlError) throw e;
        const code = (e as NodeJS.ErrnoException).code;
        // A dangling symlink is ENOENT too: where it points decides, so look at it.
        const link = code === 'ENOENT' ? readLinkAt(probe) : undefined;
        if (link !== undefined) {
          const target = path.resolve(path.dirname(probe), link);
          if (target !== this.dir && !target.startsWith(this.prefix + '/')) {
            throw new VfioctlError(
              `refusing to write ${abs}: ${probe} is a symlink to ${target}, outside the root ${this.dir}`,
              EXIT.FAILED,
            );
          }
        }
        if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
        const up = path.dirname(probe);
        if (up === probe) return abs;
        probe = up;
      }
    }
  }

  /**
   * Like confine(), for operations on the entry itself (symlink, unlink): its directory must stay
   * under the root; the entry may be a symlink pointing anywhere, since it is not followed.
   */
  confineEntry(rel: string): string {
    const cut = rel.lastIndexOf('/');
    const name = rel.slice(cut + 1);
    if (name === '..' || name === '.' || name === '')
      throw new VfioctlError(`refusing path ${rel}: not a file name`, EXIT.BAD_INPUT);
    return `${cut <= 0 ? this.confine('/').replace(/\/$/, '') : this.confine(rel.slice(0, cut))}/${name}`;
  }

  /** Reverse of path(): the host-visible path of an absolute path under this root. */
  hostPath(abs: string): string {
    const rel = path.relative(this.dir, abs);
    return '/' + rel;
  }

  /** Entries of directory `rel`, read by name (see HostDir). */
  at(rel: string): HostDir {
    const abs = this.path(rel);
    return new HostDir(rel, abs.length > 1 && abs.endsWith('/') ? abs.slice(0, -1) : abs);
  }

  /**
   * A sysfs/procfs attribute without its trailing newline, or undefined when the kernel does not
   * have it (older kernels lack reset_method, vfio-dev, ...) or it is not readable by us.
   */
  readAttr(rel: string): string | undefined {
    return readAttrAt(this.path(rel));
  }

  readFile(rel: string): string | undefined {
    let b: Buffer | undefined;
    try {
      b = fs.readFileSync(this.path(rel));
    } catch {
      return undefined;
    }
    // Pure ASCII (modules.alias, mountinfo, ...) decodes alike as latin1, which is several times
    // cheaper than UTF-8 (a 1.3 MB modules.alias: ~1 ms instead of ~7 ms).
    return b.toString(isAscii(b) ? 'latin1' : 'utf8');
  }

  /**
   * A text file in windows of whole lines through one reused buffer, so that a large file
   * (pci.ids, 1.3 MB, of which a few lines are wanted) is never in memory at once. Each window
   * starts with the `\n` that ends the line before it (one is made up before the first line) and
   * ends just after a `\n`, or at the end of the file; it is valid only during the call. False
   * when the file cannot be read (a window may have been seen by then).
   */
  readLines(rel: string, onWindow: (window: Buffer) => void): boolean {
    let fd: number;
    try {
      fd = fs.openSync(this.path(rel), 'r');
    } catch {
      return false;
    }
    try {
      let w = Buffer.allocUnsafe(LINES_WINDOW);
      w[0] = 10;
      let have = 1;
      for (;;) {
        if (have === w.length) {
          // A line longer than the window: a bigger one.
          const bigger = Buffer.allocUnsafe(w.length * 2);
          w.copy(bigger, 0, 0, have);
          w = bigger;
        }
        const n = fs.readSync(fd, w, have, w.length - have, null);
        if (n === 0) {
          if (have > 1) onWindow(w.subarray(0, have));
          return true;
        }
        have += n;
        const last = w.lastIndexOf(10, have - 1);
        if (last <= 0) continue;
        onWindow(w.subarray(0, last + 1));
        // The unfinished line goes to the front, after the `\n` that ends the window's last line.
        w.copy(w, 0, last, have);
        have -= last;
      }
    } catch {
      return false;
    } finally {
      fs.closeSync(fd);
    }
  }

  readBytes(rel: string, max: number): Buffer | undefined {
    return readBytesAt(this.path(rel), max);
  }

  /** Target of a symlink (as stored, usually relative in sysfs), or undefined. */
  readLink(rel: string): string | undefined {
    return readLinkAt(this.path(rel));
  }

  /** Basename of a symlink's target: `driver` -> `vfio-pci`, `iommu_group` -> `7`. */
  linkName(rel: string): string | undefined {
    const t = this.readLink(rel);
    return t === undefined ? undefined : baseName(t);
  }

  /**
   * Root-relative path a relative symlink points to, resolved by string (no realpath walk),
   * or undefined when `rel` is no symlink or its target is absolute. Right for sysfs, whose link
   * directories (bus/pci/devices, class/net, ...) and /sys/devices/ targets hold no symlinks.
   */
  linkTarget(rel: string): string | undefined {
    const t = this.readLink(rel);
    if (t === undefined || t.charCodeAt(0) === 47) return undefined;
    return resolveRelative(rel.slice(0, rel.lastIndexOf('/')), t);
  }

  list(rel: string): string[] {
    return listAt(this.path(rel));
  }

  exists(rel: string): boolean {
    return fs.existsSync(this.path(rel));
  }

  /** Is there an entry (a dangling symlink counts)? Cheap where absence is common. */
  hasEntry(rel: string): boolean {
    return hasEntryAt(this.path(rel));
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

/**
 * Why `dir` cannot be a --host-root, or null: it must be the host's `/` (a root-owned
 * directory) mounted recursively, so that its proc/, sys/ and dev/ come with it.
 */
export function hostRootProblem(dir: string, trustedUids: readonly number[]): string | null {
  const st = fs.statSync(dir, { throwIfNoEntry: false });
  if (!st?.isDirectory()) return `${dir}: no such directory`;
  if (!trustedUids.includes(st.uid))
    return `${dir} is owned by uid ${st.uid}, not root: it must be the host's / mounted into the container`;
  if (!fs.existsSync(path.join(dir, 'proc/1')))
    return `${dir} has no proc/1: mount the host's / recursively (rbind, as a Kubernetes hostPath volume is), so that its /proc, /sys and /dev come with it`;
  return null;
}
