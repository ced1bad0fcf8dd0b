// The only interface through which vfioctl changes the kernel. The real one writes sysfs files
// under the host root and runs modprobe; tests put the simulated PCI driver core behind it.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import type { HostRoot } from '../host/root';

export interface KernelIo {
  /** One write(2) of `value` to a sysfs attribute; rejects with the kernel's errno (err.code). */
  write(rel: string, value: string): Promise<void>;
  /** Runs modprobe with an argument array; resolves with its exit status and stderr. */
  modprobe(args: readonly string[]): Promise<{ status: number; stderr: string }>;
  chown(rel: string, uid: number, gid: number): Promise<void>;
}

/**
 * Runs a program with an argument array (never a shell); resolves with its exit status and stderr.
 */
export type RunProgram = (
  file: string,
  args: readonly string[],
) => Promise<{ status: number; stderr: string }>;

export const runProgram: RunProgram = (file, args) =>
  new Promise((resolve) => {
    const child = spawn(file, [...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (e) => resolve({ status: 127, stderr: `cannot run ${file}: ${e.message}` }));
    child.on('close', (code) => resolve({ status: code ?? 1, stderr: stderr.trim() }));
  });

export class SysfsKernelIo implements KernelIo {
  /** `run`: how programs are started (the tests record the argument arrays). */
  constructor(
    private readonly root: HostRoot,
    private readonly run: RunProgram = runProgram,
  ) {}

  async write(rel: string, value: string): Promise<void> {
    // A sysfs store() sees exactly one write: open, write once, close (no O_CREAT, no truncation).
    const fh = await fs.promises.open(this.root.confine(rel), fs.constants.O_WRONLY);
    try {
      await fh.write(value);
    } finally {
      await fh.close();
    }
  }

  modprobe(args: readonly string[]): Promise<{ status: number; stderr: string }> {
    // --host-root: the host's modprobe, modprobe.d and module tree. The container may have no
    // kmod, another distribution's, or no /lib/modules for the host's kernel at all.
    if (this.root.hostMount) return this.run('chroot', [this.root.dir, 'modprobe', ...args]);
    if (!this.root.isLive) {
      // Loading a module into the running kernel for some other tree would be wrong.
      return Promise.resolve({
        status: 1,
        stderr: `modprobe skipped: --root ${this.root.dir} is not the running system`,
      });
    }
    return this.run('modprobe', args);
  }

  async chown(rel: string, uid: number, gid: number): Promise<void> {
    // lchown: a /dev/vfio node replaced by a symlink must not hand its target to the user.
    const abs = this.root.confine(rel);
    if ((await fs.promises.lstat(abs)).isSymbolicLink())
      throw Object.assign(new Error(`${rel} is a symlink, not a device node`), { code: 'ELOOP' });
    await fs.promises.lchown(abs, uid, gid);
  }
}
