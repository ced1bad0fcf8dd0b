// Low-level sysfs layout primitives shared by the fixture builder and the kernel model: the same
// directory/link shapes the kernel creates (relative links, /sys/bus/pci/devices -> /sys/devices).
import * as fs from 'node:fs';
import * as path from 'node:path';

export class SysfsTree {
  constructor(readonly root: string) {}

  abs(rel: string): string {
    return path.join(this.root, rel);
  }

  write(rel: string, content: string | Buffer, mode?: number): void {
    const p = this.abs(rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, content);
    if (mode !== undefined) fs.chmodSync(p, mode);
  }

  read(rel: string): string | undefined {
    try {
      return fs.readFileSync(this.abs(rel), 'utf8');
    } catch {
      return undefined;
    }
  }

  mkdir(rel: string): void {
    fs.mkdirSync(this.abs(rel), { recursive: true });
  }

  /** A relative symlink at `rel` pointing to root-relative `target`, like sysfs makes. */
  link(rel: string, target: string): void {
    const p = this.abs(rel);
    fs.mkdirSync(path.dirname(p), { recursive: true });
    try {
      fs.unlinkSync(p);
    } catch {
      /* absent */
    }
    fs.symlinkSync(path.relative(path.dirname(p), this.abs(target)), p);
  }

  unlink(rel: string): void {
    try {
      fs.unlinkSync(this.abs(rel));
    } catch {
      /* absent */
    }
  }

  rm(rel: string): void {
    fs.rmSync(this.abs(rel), { recursive: true, force: true });
  }

  exists(rel: string): boolean {
    return fs.existsSync(this.abs(rel));
  }

  readLinkName(rel: string): string | null {
    try {
      return path.basename(fs.readlinkSync(this.abs(rel)));
    } catch {
      return null;
    }
  }

  list(rel: string): string[] {
    try {
      return fs.readdirSync(this.abs(rel));
    } catch {
      return [];
    }
  }

  /** Real (root-relative) directory of a PCI device. */
  devDir(address: string): string {
    const real = fs.realpathSync(this.abs(`/sys/bus/pci/devices/${address}`));
    return '/' + path.relative(this.root, real);
  }

  /** Bind links: <dev>/driver -> drivers/<drv>, drivers/<drv>/<addr> -> device. */
  bindLinks(address: string, driver: string): void {
    const dev = this.devDir(address);
    this.link(`${dev}/driver`, `/sys/bus/pci/drivers/${driver}`);
    this.link(`/sys/bus/pci/drivers/${driver}/${address}`, dev);
  }

  unbindLinks(address: string): string | null {
    const dev = this.devDir(address);
    const drv = this.readLinkName(`${dev}/driver`);
    if (drv) {
      this.unlink(`${dev}/driver`);
      this.unlink(`/sys/bus/pci/drivers/${drv}/${address}`);
    }
    return drv;
  }

  /** Register a PCI driver (directory with bind/unbind/new_id files, module links). */
  registerDriver(driver: string, module: string | null): void {
    const d = `/sys/bus/pci/drivers/${driver}`;
    this.mkdir(d);
    for (const f of ['bind', 'unbind', 'new_id', 'remove_id', 'uevent'])
      if (!this.exists(`${d}/${f}`)) this.write(`${d}/${f}`, '');
    if (module) {
      this.mkdir(`/sys/module/${module}`);
      this.link(`${d}/module`, `/sys/module/${module}`);
      this.link(`/sys/module/${module}/drivers/pci:${driver}`, d);
    }
  }

  unregisterDriver(driver: string): void {
    const mod = this.readLinkName(`/sys/bus/pci/drivers/${driver}/module`);
    if (mod) this.unlink(`/sys/module/${mod}/drivers/pci:${driver}`);
    this.rm(`/sys/bus/pci/drivers/${driver}`);
  }
}
