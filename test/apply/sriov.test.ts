// vfioctl against SR-IOV as the kernel model now does it (VFs created by sriov_numvfs, autoprobe,
// PF drivers that keep their VFs): the e2e sriov-vf-binding scenario, and SR-IOV sizing by apply.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { type ModelHost, modelHosts, NVME } from '../support/model-host';

const newHost = modelHosts({ trustSelf: true });
const host = (totalVfs = 2): ModelHost => newHost({ nvme: totalVfs });
const attr = (a: string, n: string) => `/sys/bus/pci/devices/${a}/${n}`;

async function makeVfs(h: ModelHost, n: number): Promise<string[]> {
  await h.k.write(attr(NVME, 'sriov_drivers_autoprobe'), '0');
  await h.k.write(attr(NVME, 'sriov_numvfs'), String(n));
  return h.k.vfsOf(NVME);
}

test('a VF binds alone: the PF and the other VF are untouched; the PF with VFs is refused; unbind leaves the VF driverless (autoprobe 0)', async () => {
  const h = host();
  const [vf0, vf1] = (await makeVfs(h, 2)) as [string, string];
  const list = (await h.run(['list', '--json'])).json<any[]>();
  assert.deepEqual(list.find((d) => d.address === NVME).sriov, {
    totalVfs: 2,
    numVfs: 2,
    driversAutoprobe: false,
    vfs: [vf0, vf1],
  });
  assert.deepEqual(
    list.filter((d) => d.physfn === NVME).map((d) => [d.address, d.driver, d.iommuGroup]),
    [
      [vf0, null, '10'],
      [vf1, null, '11'],
    ],
  );

  const b = await h.run(['bind', vf0, '--json']);
  assert.equal(b.code, 0, b.stdout + b.stderr);
  assert.deepEqual(h.state(vf0), { driver: 'vfio-pci', override: 'vfio-pci', vfioDev: true });
  assert.deepEqual(
    [h.state(NVME), h.state(vf1)],
    [
      { driver: 'nvme', override: null, vfioDev: false },
      { driver: null, override: null, vfioDev: false },
    ],
  );
  assert.equal(h.k.tree.read(attr(NVME, 'sriov_numvfs')), '2\n');

  const writes = h.k.writes.length;
  const pf = await h.run(['bind', NVME, '--json']);
  assert.equal(pf.code, 3);
  // vfio-pci cannot take a PF with VFs (-EBUSY), and moving it would destroy them.
  assert.deepEqual(
    pf
      .json()
      .results[0].refusals.map((r: any) => r.check)
      .sort(),
    ['no-vfio-driver', 'sriov-pf'],
  );
  assert.equal(h.k.writes.length, writes, 'nothing written for the refused PF');

  const u = await h.run(['unbind', vf0, '--json']);
  assert.equal(u.code, 0, u.stdout + u.stderr);
  assert.equal(u.json().results[0].status, 'ok');
  assert.deepEqual(
    h.state(vf0),
    { driver: null, override: null, vfioDev: false },
    'it had no driver before: none now',
  );
  assert.deepEqual(h.k.tree.list('/dev/vfio').sort(), ['devices']);
});

test('--force on the PF: vfio-pci refuses a PF with VFs, the run fails and nvme gets the PF back with its VFs intact', async () => {
  const h = host();
  const [vf0] = (await makeVfs(h, 2)) as [string];
  assert.equal((await h.run(['bind', vf0])).code, 0);
  const r = await h.run(['bind', NVME, '--force', '--json']);
  assert.equal(r.code, 1, r.stdout);
  assert.equal(r.json().results[0].status, 'failed');
  assert.deepEqual(h.state(NVME), { driver: 'nvme', override: null, vfioDev: false });
  assert.equal(
    h.k.vfsOf(NVME).length,
    2,
    'nvme leaves SR-IOV enabled on remove: the VFs were never destroyed',
  );
  assert.equal(h.state(vf0).driver, 'vfio-pci');
});

test('apply sizes SR-IOV with autoprobe off, binds every new VF to its vfIntent, and resizes through 0', async () => {
  const h = host(4);
  const conf = '/etc/vfioctl/vfioctl.json';
  const configure = (numVfs: number) => {
    h.f.tree.write(
      conf,
      JSON.stringify({
        version: 1,
        rules: [{ match: { address: NVME }, sriov: { numVfs, vfIntent: 'vfio' } }],
      }),
    );
    fs.chmodSync(h.f.tree.abs(conf), 0o644);
  };
  configure(2);
  const a = await h.run(['apply', '--json']);
  assert.equal(a.code, 0, a.stdout + a.stderr);
  const vfs = h.k.vfsOf(NVME);
  assert.deepEqual(vfs, ['0000:00:07.1', '0000:00:07.2']);
  assert.equal(
    h.k.tree.read(attr(NVME, 'sriov_drivers_autoprobe')),
    '0\n',
    'no VF touched the host driver',
  );
  for (const vf of vfs)
    assert.deepEqual(h.state(vf), { driver: 'vfio-pci', override: 'vfio-pci', vfioDev: true }, vf);
  assert.equal(h.state(NVME).driver, 'nvme');
  const writes = h.k.writes.length;
  assert.equal((await h.run(['apply'])).code, 0);
  assert.equal(h.k.writes.length, writes, 'applied again: nothing to do');

  configure(3);
  const r = await h.run(['apply', '--json']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(
    h.k.writes
      .slice(writes)
      .filter((w) => w.rel.endsWith('sriov_numvfs'))
      .map((w) => w.value),
    ['0', '3'],
    '2 -> 3 is EBUSY in one step',
  );
  assert.deepEqual(
    h.k.vfsOf(NVME).map((vf) => h.state(vf).driver),
    ['vfio-pci', 'vfio-pci', 'vfio-pci'],
  );
});

test('unbind returns a VF to its host driver when sriov_drivers_autoprobe is 0 (only an override naming nvme gets it probed)', async () => {
  const h = host();
  await h.k.write(attr(NVME, 'sriov_numvfs'), '2'); // autoprobe 1: the VFs come up on nvme
  const [vf0] = h.k.vfsOf(NVME) as [string];
  assert.equal(h.state(vf0).driver, 'nvme');
  await h.k.write(attr(NVME, 'sriov_drivers_autoprobe'), '0'); // the usual preparation for VFIO
  assert.equal((await h.run(['bind', vf0])).code, 0);
  const u = await h.run(['unbind', vf0, '--json']);
  assert.equal(u.code, 0, u.stdout);
  assert.deepEqual(h.state(vf0), { driver: 'nvme', override: null, vfioDev: false });
});
