// The Cockpit page's decisions (cockpit/src/logic.ts) on real `vfioctl --json` output from a model
// host: filtering, sorting, the argument arrays it spawns, and what a dry-run preview allows next.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { modelHosts, E1, E2, LPC, SMB, VN } from '../support/model-host';
import {
  actionArgs,
  availableActions,
  filterChoices,
  judgePreview,
  matches,
  NO_FILTER,
  sortDevices,
  UNBOUND,
  type ActionOutput,
  type Device,
} from '../../cockpit/src/logic';

const host = modelHosts({ trustSelf: true });

async function devices(h: ReturnType<typeof host>): Promise<Device[]> {
  const r = await h.run(['list', '--json']);
  assert.equal(r.code, 0, r.stderr);
  return r.json<Device[]>();
}

test('filters by text (every word), class, driver and "on VFIO"', async () => {
  const h = host();
  const all = await devices(h);
  const addrs = (f: Partial<typeof NO_FILTER>) =>
    all.filter((d) => matches(d, { ...NO_FILTER, ...f })).map((d) => d.address);
  assert.deepEqual(
    addrs({}),
    all.map((d) => d.address),
  );
  assert.deepEqual(addrs({ text: 'e1000e' }), [E1, E2]);
  assert.deepEqual(addrs({ text: 'E1000E   00:05' }), [E2]);
  assert.deepEqual(addrs({ text: 'virtio_vfio_pci' }), [VN]);
  assert.deepEqual(addrs({ cls: 'Bridge' }), [LPC]);
  assert.deepEqual(addrs({ driver: 'i801_smbus' }), [SMB]);
  assert.deepEqual(addrs({ onVfio: true }), []);
  await h.run(['bind', VN]);
  const after = await devices(h);
  assert.deepEqual(
    after.filter((d) => matches(d, { ...NO_FILTER, onVfio: true })).map((d) => d.address),
    [VN],
  );
  assert.ok(filterChoices(after).drivers.includes('virtio_vfio_pci'));
});

test('an unbound device is found by the "(none)" driver choice', async () => {
  const h = host();
  await h.k.write('/sys/bus/pci/drivers/e1000e/unbind', E2); // left unbound, as after a manual unbind
  const all = await devices(h);
  assert.ok(filterChoices(all).drivers.includes(UNBOUND));
  assert.deepEqual(
    all.filter((d) => matches(d, { ...NO_FILTER, driver: UNBOUND })).map((d) => d.address),
    all.filter((d) => d.driver === null).map((d) => d.address),
  );
});

test('sorts by any column both ways, address breaking ties', async () => {
  const all = await devices(host());
  assert.deepEqual(
    sortDevices(all, { key: 'address', dir: 'desc' }).map((d) => d.address),
    all.map((d) => d.address).reverse(),
  );
  const byDriver = sortDevices(all, { key: 'driver', dir: 'asc' }).map(
    (d) => `${d.driver} ${d.address}`,
  );
  assert.deepEqual(byDriver, [
    `e1000e ${E1}`,
    `e1000e ${E2}`,
    `i801_smbus ${SMB}`,
    `lpc_ich ${LPC}`,
    `virtio-pci ${VN}`,
  ]);
  const groups = sortDevices(all, { key: 'group', dir: 'desc' }).map((d) => d.iommuGroup);
  assert.deepEqual(groups, ['9', '9', '5', '3', '2']);
});

test('spawns argument arrays: --dry-run first, --group and --force only for bind', () => {
  assert.deepEqual(actionArgs({ kind: 'bind', address: E1 }, true), [
    'bind',
    E1,
    '--dry-run',
    '--json',
  ]);
  assert.deepEqual(actionArgs({ kind: 'bind', address: E1, group: true, force: true }, false), [
    'bind',
    E1,
    '--group',
    '--force',
    '--json',
  ]);
  assert.deepEqual(actionArgs({ kind: 'set', address: E1, force: true }, true), [
    'set',
    E1,
    'vfio',
    '--dry-run',
    '--json',
  ]);
  assert.deepEqual(actionArgs({ kind: 'unset', address: E1 }, false), ['unset', E1, '--json']);
});

test('a preview of a bind into a non-viable group offers --group and --force; with --group it can run', async () => {
  const h = host();
  const req = { kind: 'bind' as const, address: LPC };
  const r = await h.run(actionArgs(req, true));
  assert.equal(r.code, 3);
  const v = judgePreview(req, r.json<ActionOutput>());
  assert.deepEqual([v.canRun, v.offerGroup, v.offerForce], [false, true, true]);
  assert.deepEqual(
    v.refusals.map((x) => x.check),
    ['iommu-group'],
  );
  const g = await h.run(actionArgs({ ...req, group: true }, true));
  const vg = judgePreview({ ...req, group: true }, g.json<ActionOutput>());
  assert.deepEqual([vg.canRun, vg.offerGroup, vg.offerForce], [true, false, false]);
  assert.equal(h.state(LPC).driver, 'lpc_ich', 'a preview binds nothing');
});

test('never offers --force past a vfio-user refusal', async () => {
  const h = host();
  await h.run(['bind', VN]);
  h.k.openGroup('3');
  const req = { kind: 'unbind' as const, address: VN };
  const out: ActionOutput = {
    command: 'bind',
    dryRun: true,
    results: [
      {
        address: VN,
        status: 'refused',
        driver: 'virtio_vfio_pci',
        target: 'vfio-pci',
        steps: [],
        refusals: [{ check: 'vfio-user', message: 'open', forceable: true }],
        warnings: [],
        error: 'open',
      },
    ],
  };
  // Even if a CLI ever marked it forceable, the page does not offer it.
  assert.equal(judgePreview({ kind: 'bind', address: VN }, out).offerForce, false);
  const r = await h.run(actionArgs(req, true));
  const v = judgePreview(req, r.json<ActionOutput>());
  assert.equal(v.offerForce, false);
  assert.equal(v.canRun, false);
  assert.ok(
    v.refusals.some((x) => x.check === 'vfio-user'),
    JSON.stringify(r.json()),
  );
});

test('the actions offered follow the device and its rule', async () => {
  const h = host();
  const vn = () => devices(h).then((all) => all.find((d) => d.address === VN)!);
  assert.deepEqual(availableActions(await vn(), undefined), ['bind', 'set']);
  await h.run(['set', VN, 'vfio']);
  const st = (await h.run(['status', '--json'])).json<{
    devices: { address: string; intent: string }[];
  }>();
  const rule = st.devices.find((d) => d.address === VN) as never;
  assert.deepEqual(availableActions(await vn(), rule), ['unbind', 'unset']);
});
