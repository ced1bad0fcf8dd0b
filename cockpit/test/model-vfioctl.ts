// Test machinery, never installed: vfioctl as the browser tests' Cockpit page spawns it. It is the
// real CLI (src/cli/main.ts) with the simulated PCI driver core (test/support/kernel-model.ts)
// behind its writes, so a bind through the page takes effect in the fixture tree at VFIOCTL_ROOT.
// The model keeps its state in that tree, so every process sees what the last one did.
import { run } from '../../src/cli/main';
import { setApplyEnv } from '../../src/cli/bind';
import { DRIVERS, KernelModel, type DriverModel } from '../../test/support/kernel-model';
import { SysfsTree } from '../../test/support/sysfs-tree';

const root = process.env.VFIOCTL_ROOT;
if (!root || root === '/') {
  // Never let the model loose on the real /sys.
  process.stderr.write('model-vfioctl: VFIOCTL_ROOT must name a fixture tree\n');
  process.exit(2);
}
const k = new KernelModel(new SysfsTree(root));
for (const d of Object.values(DRIVERS) as DriverModel[]) k.define(d);
setApplyEnv({ kernelIo: k });
void run(process.argv.slice(2), { out: (s) => process.stdout.write(s), err: (s) => process.stderr.write(s), env: process.env }).then((code) => {
  process.exitCode = code;
});
