// The floor of `list` on a big host for any one-threaded Node program: Node reading, for every
// PCI function, the attributes vfioctl reads for each of thousands of VFs (modalias, the config
// header, driver_override, reset_method, numa_node, the iommu_group link) with the read
// vfioctl uses (open, one read into a shared buffer, close; src/host/root.ts), and nothing else:
// no parsing, no matching, no names, no output but a count. The bench times it beside lspci, so
// the report says how much of `list`'s time is Node's cost of those reads alone.
//
// Usage: node floor-reads.js ROOT   (prints the number of functions read)
import * as fs from 'node:fs';
import * as path from 'node:path';

const buf = Buffer.allocUnsafe(16384);

function attr(file: string, max = buf.length): string | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY);
  } catch {
    return undefined;
  }
  try {
    return buf.toString('latin1', 0, fs.readSync(fd, buf, 0, max, null));
  } catch {
    return undefined;
  } finally {
    fs.closeSync(fd);
  }
}

function link(file: string): string | undefined {
  try {
    return fs.readlinkSync(file);
  } catch {
    return undefined;
  }
}

const root = process.argv[2];
if (!root) {
  process.stderr.write('usage: node floor-reads.js ROOT\n');
  process.exit(2);
}
const bus = `${root}/sys/bus/pci/devices`;
let read = 0;
for (const name of fs.readdirSync(bus)) {
  // The device's own directory, as vfioctl reads its attributes (it finds a VF's from its PF's
  // links instead, so this one readlink per function is a little more than vfioctl does).
  const target = link(`${bus}/${name}`);
  if (target === undefined) continue;
  const dir = path.join(bus, target);
  if (attr(`${dir}/modalias`) === undefined) continue;
  attr(`${dir}/config`, 15);
  attr(`${dir}/driver_override`);
  attr(`${dir}/reset_method`);
  attr(`${dir}/numa_node`);
  link(`${dir}/iommu_group`);
  read++;
}
process.stdout.write(`${read}\n`);
