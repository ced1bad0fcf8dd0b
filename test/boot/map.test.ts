// The boot map as a pure function: configuration + a small host in, the map out, both as the
// file the early script reads (test/golden/boot/map.map) and as the JSON vfioctl reads back
// (test/golden/boot/map.json): what is in it, and each left-out device with its reason.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { parseConfig } from '../../src/config/load';
import {
  computeBootMap,
  describeLeftOut,
  formatBootMap,
  formatBootMapJson,
  parseBootMapJson,
  parseMapEntries,
  vfAddress,
} from '../../src/boot/map';
import { Invalid } from '../../src/persist/validate';
import { golden } from '../support/golden';
import { e1000e, nvme, smbus, virtioNet } from '../support/devices';
import { ALIASES } from '../support/fixture';
import { snapshot } from '../support/snapshot';

const NIC = '0000:00:02.0'; // address rule, vfio: an entry
const VIRTIO = '0000:00:03.0'; // address rule, none: an entry with driver none
const MGMT = '0000:00:05.0'; // in use (interface up): left out, in-use
const ROOTDISK = '0000:00:06.0'; // the host boots from it: left out, boot-device
const CX = '0000:00:07.0'; // a rule with hooks: left out, hooks
const SMBUS = '0000:00:1f.3'; // class rule without acknowledgeBroadMatch: left out, broad-rule
const BAD = '0000:00:08.0'; // a driver whose table does not list it: left out, unresolved
const PF = '0000:04:00.0'; // PF rule with 2 VFs for vfio: their future addresses are mapped

const host = snapshot({
  aliases: [ALIASES.vfioPci, ALIASES.e1000e, ALIASES.virtioPci],
  drivers: { e1000e: 'e1000e', 'virtio-pci': 'virtio_pci', nvme: 'nvme', i801_smbus: 'i2c_i801' },
  devices: [
    e1000e(NIC, '2'),
    virtioNet(VIRTIO, '3'),
    e1000e(MGMT, '5'),
    nvme(ROOTDISK, '6'),
    { address: CX, vendor: '15b3', device: '101e', iommuGroup: '11' },
    e1000e(BAD, '8'),
    smbus(SMBUS, '9'),
    e1000e(PF, '10', { sriov: { totalVfs: 8, numVfs: 0, driversAutoprobe: true, vfs: [] } }),
  ],
  netdevs: { [MGMT]: [{ name: 'mgmt0', up: true, routes: ['10.0.0.0/24'] }] },
});

const config = parseConfig(
  `{
  "version": 1,
  "rules": [
    { "match": { "address": "${NIC}" }, "intent": "vfio" },
    { "match": { "address": "${VIRTIO}" }, "intent": "none" },
    { "match": { "address": "${MGMT}" }, "intent": "vfio" },
    { "match": { "address": "${ROOTDISK}" }, "intent": "vfio" },
    { "match": { "address": "${CX}" }, "intent": "vfio", "hooks": ["/etc/vfioctl/cx-hook"] },
    { "match": { "address": "${BAD}" }, "intent": "virtio-pci" },
    { "match": { "class": "0c05" }, "intent": "none" },
    { "match": { "id": "8086:10d3" }, "intent": "vfio", "acknowledgeBroadMatch": true },
    { "match": { "address": "${PF}" }, "sriov": { "numVfs": 2, "vfIntent": "vfio" } }
  ]
}`,
  '/etc/vfioctl/vfioctl.json',
);

const boot = { devices: new Map([[ROOTDISK, ['/ (fstab): /dev/nvme0n1p1']]]), unresolved: [] };
const layout = { offset: 128, stride: 1, vfDevice: '10ed' };
const map = computeBootMap(host, config, boot, new Map([[PF, layout]]));

test('entries and every left-out device with its reason', () => {
  assert.deepEqual(
    map.entries.map((e) => `${e.kind} ${e.selector} ${e.driver}`),
    [
      `address ${NIC} vfio-pci`,
      `address ${VIRTIO} none`,
      `address ${vfAddress(PF, layout, 0)} vfio-pci`,
      `address ${vfAddress(PF, layout, 1)} vfio-pci`,
    ],
  );
  assert.deepEqual(
    map.leftOut.map((l) => [l.reason, 'address' in l ? l.address : 'pf' in l ? l.pf : l.selector]),
    [
      ['in-use', MGMT],
      ['boot-device', ROOTDISK],
      ['hooks', CX],
      ['unresolved', BAD],
      ['broad-rule', SMBUS],
      ['no-id-entry', 'id 8086:10d3'],
    ],
  );
  golden('boot/map.map', formatBootMap(map, '/etc/vfioctl/vfioctl.json'));
  golden('boot/map.json', formatBootMapJson(map, '/etc/vfioctl/vfioctl.json'));
});

test('the map file says why in comments rendered from the reasons; its entries read back alike', () => {
  const text = formatBootMap(map, '/etc/vfioctl/vfioctl.json');
  for (const l of map.leftOut)
    assert.ok(text.includes(`# skipped ${describeLeftOut(l)}\n`), describeLeftOut(l));
  assert.deepEqual(parseMapEntries(text), map.entries);
});

test('the JSON reads back to the same map; a corrupt or foreign one is Invalid, naming what is wrong', () => {
  const json = formatBootMapJson(map, '/etc/vfioctl/vfioctl.json');
  assert.deepEqual(parseBootMapJson(json), { ...map, source: '/etc/vfioctl/vfioctl.json' });
  const o = JSON.parse(json);
  const bad = (f: (x: any) => void, why: RegExp) => {
    const c = structuredClone(o);
    f(c);
    assert.throws(
      () => parseBootMapJson(JSON.stringify(c)),
      (e: unknown) => e instanceof Invalid && why.test(e.message),
    );
  };
  assert.throws(() => parseBootMapJson(json.slice(0, 40)), /not JSON/);
  assert.throws(() => parseBootMapJson(''), /empty/);
  bad(
    (c) => (c.leftOut[0].reason = 'tired'),
    /field 'reason' is not a known reason \(leftOut\[0\]\)/,
  );
  bad(
    (c) => (c.leftOut[0].address = '../../etc'),
    /field 'address' is not a PCI address \(leftOut\[0\]\)/,
  );
  bad(
    (c) => (c.entries[0].driver = 'vfio pci; rm'),
    /field 'driver' is not a driver name \(entries\[0\]\)/,
  );
  bad((c) => delete c.entries, /field 'entries' is missing/);
  bad(
    (c) => (c.leftOut[5].why = { kind: 'left-out', addresses: 'all' }),
    /field 'addresses' is not a list of PCI addresses/,
  );
});
