// Converge planning as a pure function: a configuration, what an earlier apply recorded and a
// small host in, the release and bind plans out (test/golden/plan/converge-*.txt).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load';
import { desiredState } from '../../src/config/desired';
import { planBindPhase, planSriovPhase, type ConvergeOptions } from '../../src/plan/converge';
import type { AppliedState } from '../../src/persist/state';
import { golden, renderPlan } from '../support/golden';
import { e1000e, smbus } from '../support/devices';
import { ALIASES } from '../support/fixture';
import { snapshot } from '../support/snapshot';

const NIC = '0000:00:02.0';
const OLD = '0000:00:04.0'; // bound by an earlier apply, no longer configured
const F0 = '0000:01:00.0'; // two functions of IOMMU group 7, configured with different intents
const F1 = '0000:01:00.1';
const SMBUS = '0000:00:1f.3'; // class 0c05: a broad rule's catch
const PF = '0000:04:00.0';

const host = snapshot({
  aliases: [ALIASES.vfioPci, ALIASES.e1000e],
  drivers: { e1000e: 'e1000e', 'vfio-pci': 'vfio_pci', i801_smbus: 'i2c_i801' },
  devices: [
    e1000e(NIC, '2'),
    e1000e(OLD, '4', { driver: 'vfio-pci', driverOverride: 'vfio-pci' }),
    e1000e(F0, '7'),
    e1000e(F1, '7'),
    smbus(SMBUS, '9'),
    e1000e(PF, '10', { sriov: { totalVfs: 8, numVfs: 0, driversAutoprobe: true, vfs: [] } }),
  ],
});

const config = parseConfig(
  `{
  "version": 1,
  "rules": [
    { "match": { "address": "${NIC}" }, "intent": "vfio" },
    { "match": { "address": "${F0}" }, "intent": "vfio" },
    { "match": { "address": "${F1}" }, "intent": "vfio-pci" },
    { "match": { "class": "0c05" }, "intent": "none" },
    { "match": { "address": "${PF}" }, "sriov": { "numVfs": 2 } }
  ]
}`,
  '/etc/vfioctl/vfioctl.json',
);

const applied: AppliedState = {
  devices: {
    [OLD]: {
      address: OLD,
      intent: 'vfio',
      rule: 'rules[1] (line 1): 0000:00:04.0',
      kernel: '6.12.0-test',
      driver: 'vfio-pci',
      module: 'vfio_pci',
      status: 'ok',
      error: null,
      at: '2026-01-01T00:00:00.000Z',
    },
  },
};

const opts = (more: Partial<ConvergeOptions> = {}): ConvergeOptions => ({
  only: null,
  boot: null,
  ruleHooks: new Map(),
  ...more,
});

test('one bind plan for every configured device: two intents in one IOMMU group make it viable together', () => {
  const desired = desiredState(config, host.devices);
  const phase = planBindPhase(host, desired, applied, opts());
  const byAddr = new Map(phase.bind.devices.map((d) => [d.address, d]));
  assert.equal(byAddr.get(F0)!.status, 'planned');
  assert.equal(byAddr.get(F1)!.status, 'planned');
  assert.deepEqual(
    phase.release.devices.map((d) => d.address),
    [OLD],
  );
  golden(
    'plan/converge.txt',
    `release: ${renderPlan(phase.release)}bind: ${renderPlan(phase.bind)}sriov: ${renderPlan(planSriovPhase(host, desired, opts()))}`,
  );
});

test('at boot: a boot device is refused first, an unacknowledged broad rule is skipped', () => {
  const desired = desiredState(config, host.devices);
  const boot = { devices: new Map([[NIC, ['/ (fstab): /dev/vda1']]]), unresolved: [] };
  const phase = planBindPhase(host, desired, { devices: {} }, opts({ boot }));
  assert.deepEqual(
    phase.skipped.map((s) => s.address),
    [SMBUS],
  );
  const nic = phase.bind.devices.find((d) => d.address === NIC)!;
  assert.equal(nic.refusals[0]!.check, 'boot-device');
  golden(
    'plan/converge-boot.txt',
    `${renderPlan(phase.bind)}skipped:\n${phase.skipped.map((s) => `  ${s.address}: ${s.reason}`).join('\n')}\n`,
  );
});

test('only the named devices are planned', () => {
  const desired = desiredState(config, host.devices);
  const phase = planBindPhase(host, desired, applied, opts({ only: new Set([F1]) }));
  assert.deepEqual(
    phase.bind.devices.map((d) => d.address),
    [F1],
  );
  assert.deepEqual(phase.release.devices, []);
  // Alone, F1's group peer F0 stays on e1000e: the group would not be viable.
  assert.deepEqual(
    phase.bind.devices[0]!.refusals.map((r) => r.check),
    ['iommu-group'],
  );
});
