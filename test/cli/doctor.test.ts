import { test, afterEach } from 'node:test';
import * as assert from 'node:assert/strict';
import { Fixture, ALIASES } from '../support/fixture';
import { cli } from '../support/cli';

const fixtures: Fixture[] = [];
afterEach(() => fixtures.splice(0).forEach((f) => f.cleanup()));

test('doctor: a host with IOMMU, interrupt remapping and vfio-pci can do VFIO', async () => {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.12.0-test').modulesAlias([ALIASES.vfioPci, ALIASES.mlx5]).iommu(true);
  f.tree.write('/sys/class/iommu/dmar0/intel-iommu/ecap', 'f020df\n');
  f.device({ address: '0000:00:02.0', vendor: '8086', device: '10d3', iommuGroup: '2' });
  const r = await cli(f.dir, ['doctor', '--json']);
  assert.equal(r.code, 0, r.stdout);
  const d = r.json();
  assert.equal(d.ok, true);
  assert.deepEqual(Object.fromEntries(d.checks.map((c: any) => [c.id, c.status])), {
    iommu: 'ok',
    cmdline: 'ok',
    'interrupt-remapping': 'ok',
    lockdown: 'ok',
    'vfio-pci': 'ok',
    variants: 'ok',
  });
  assert.match(d.checks.find((c: any) => c.id === 'variants').message, /mlx5_vfio_pci/);
});

test('doctor: no IOMMU, IOMMU off on the command line, lockdown, no vfio-pci: exit 1 with reasons', async () => {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.12.0-test').modulesAlias([ALIASES.e1000e]).cmdline('root=/dev/sda1 intel_iommu=off');
  f.tree.write('/sys/kernel/security/lockdown', 'none [integrity] confidentiality\n');
  const r = await cli(f.dir, ['doctor']);
  assert.equal(r.code, 1);
  assert.match(
    r.stdout,
    /FAIL {2}iommu +no IOMMU: \/sys\/class\/iommu is empty although the kernel command line has intel_iommu=off/,
  );
  assert.match(r.stdout, /FAIL {2}cmdline +the kernel command line disables the IOMMU/);
  assert.match(r.stdout, /WARN {2}lockdown +kernel lockdown 'integrity'/);
  assert.match(r.stdout, /FAIL {2}vfio-pci +vfio-pci not found for kernel 6\.12\.0-test/);
  assert.match(r.stdout, /cannot use VFIO yet/);
});
