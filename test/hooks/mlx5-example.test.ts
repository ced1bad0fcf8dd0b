// The shipped ConnectX-7 example hook (hooks/examples/mlx5-migratable) against a fake devlink.
import { test, afterEach } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ModelHost } from '../support/model-host';
import { FakeDevlink, type DevlinkState } from '../support/fake-devlink';

const hosts: ModelHost[] = [];
afterEach(() => hosts.splice(0).forEach((h) => h.cleanup()));

const PF = '0000:08:00.0';
const VF0 = '0000:08:00.1';
const VF1 = '0000:08:00.2';
const HOOK = path.join(__dirname, '../../../hooks/examples/mlx5-migratable');

function host(mode: 'legacy' | 'switchdev'): { h: ModelHost; devlink: FakeDevlink } {
  const h = new ModelHost();
  hosts.push(h);
  h.k.define(
    {
      name: 'mlx5_core',
      module: 'mlx5_core',
      ids: ['pci:v000015B3d0000101Dsv*sd*bc*sc*i*', 'pci:v000015B3d0000101Esv*sd*bc*sc*i*'],
      overrideOnlyIds: [],
      vfio: false,
    },
    true,
  );
  h.f.device({
    address: PF,
    vendor: '15b3',
    device: '101d',
    driver: 'mlx5_core',
    iommuGroup: '30',
    sriov: { totalVfs: 8, numVfs: 2 },
  });
  h.f.device({
    address: VF0,
    vendor: '15b3',
    device: '101e',
    driver: 'mlx5_core',
    iommuGroup: '31',
    physfn: PF,
  });
  h.f.device({
    address: VF1,
    vendor: '15b3',
    device: '101e',
    driver: 'mlx5_core',
    iommuGroup: '32',
    physfn: PF,
  });
  h.f.tree.write('/etc/vfioctl/hooks.d/50-mlx5-migratable', fs.readFileSync(HOOK), 0o755);
  const state: DevlinkState = {
    eswitch: { [`pci/${PF}`]: mode },
    ports: {
      [`pci/${PF}/65535`]: { flavour: 'physical', pfnum: 0 },
      [`pci/${PF}/1`]: {
        flavour: 'pcivf',
        pfnum: 0,
        vfnum: 0,
        function: { hw_addr: '00:00:00:00:00:00', migratable: false },
      },
      [`pci/${PF}/2`]: {
        flavour: 'pcivf',
        pfnum: 0,
        vfnum: 1,
        function: { hw_addr: '00:00:00:00:00:00', migratable: false },
      },
    },
  };
  const devlink = FakeDevlink.install(h.f.tree.abs('/fakebin'), state);
  const uid = process.getuid?.() ?? 0;
  h.env = {
    PATH: `${devlink.dir}:${process.env.PATH}`,
    ...(uid !== 0 ? { VFIOCTL_TRUST_UID: String(uid) } : {}),
  };
  return { h, devlink };
}

test('binding an mlx5 VF enables migratable on its port function before the probe; unbind disables it', async () => {
  const { h, devlink } = host('switchdev');
  const r = await h.run(['bind', VF1, '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(h.state(VF1).driver, 'mlx5_vfio_pci');
  assert.deepEqual(devlink.calls(), [
    ['-j', 'dev', 'eswitch', 'show', `pci/${PF}`],
    ['-j', 'port', 'show'],
    ['port', 'function', 'set', `pci/${PF}/2`, 'migratable', 'enable'],
    ['-j', 'port', 'show'],
  ]);
  assert.equal(devlink.state().ports[`pci/${PF}/2`]!.function!.migratable, true);
  assert.equal(
    devlink.state().ports[`pci/${PF}/1`]!.function!.migratable,
    false,
    'the other VF is untouched',
  );
  const u = await h.run(['unbind', VF1]);
  assert.equal(u.code, 0, u.stdout);
  assert.equal(h.state(VF1).driver, 'mlx5_core');
  assert.deepEqual(devlink.calls().slice(4), [
    ['-j', 'port', 'show'],
    ['port', 'function', 'set', `pci/${PF}/2`, 'migratable', 'disable'],
    ['-j', 'port', 'show'],
  ]);
  assert.equal(devlink.state().ports[`pci/${PF}/2`]!.function!.migratable, false);
});

test('eswitch in legacy mode: the pre-bind hook stops the bind with the fix, nothing changed', async () => {
  const { h, devlink } = host('legacy');
  const r = await h.run(['bind', VF0]);
  assert.equal(r.code, 1);
  assert.match(
    r.stdout,
    new RegExp(
      `eswitch is in 'legacy' mode; migratable VFs need switchdev: devlink dev eswitch set pci/${PF} mode switchdev`,
    ),
  );
  assert.deepEqual(h.state(VF0), { driver: 'mlx5_core', override: null, vfioDev: false });
  assert.equal(h.k.writes.length, 0);
  assert.deepEqual(devlink.calls(), [['-j', 'dev', 'eswitch', 'show', `pci/${PF}`]]);
});

test('other devices are "not my device" (exit 2) and devlink is never called', async () => {
  const { h, devlink } = host('switchdev');
  const r = await h.run(['bind', '0000:00:05.0', '--json']);
  assert.equal(r.code, 0);
  assert.match(r.json().results[0].warnings.join(), /50-mlx5-migratable: not my device \(exit 2\)/);
  assert.deepEqual(devlink.calls(), []);
});
