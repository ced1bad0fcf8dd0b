import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { parseConfig, ConfigError } from '../../src/config/load';
import { withIntent, withoutDevice, withRuleIntent } from '../../src/config/edit';
import { desiredState } from '../../src/config/desired';
import type { PciDevice } from '../../src/host/pci';
import { intentName, type Intent } from '../../src/config/intent';

const F = '/etc/vfioctl/vfioctl.json';
/** An intent as the file spells it (the parsed form is the Intent union). */
const spelt = (i: Intent | null) => (i === null ? null : intentName(i));

function problems(text: string): string[] {
  try {
    parseConfig(text, F);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.exitCode, 2);
    return [...e.problems];
  }
  assert.fail('expected the configuration to be rejected');
}

test('a valid file with comments parses into rules with normalised selectors and line numbers', () => {
  const c = parseConfig(
    `// fleet defaults
{
  "version": 1,
  "rules": [
    { "match": { "address": "03:00.0" }, "intent": "vfio" },
    /* ConnectX-7 VFs */
    { "match": { "id": "15B3:101E" }, "intent": "vfio", "acknowledgeBroadMatch": true, "hooks": ["/etc/vfioctl/cx7"] },
    { "match": { "class": "0x0200" }, "intent": "none" },
    { "match": { "address": "0000:3b:00.0" }, "sriov": { "numVfs": 4, "vfIntent": "vfio" } }
  ]
}`,
    F,
  );
  assert.deepEqual(
    c.rules.map((r) => [r.line, r.selector, spelt(r.intent)]),
    [
      [5, { kind: 'address', address: '0000:03:00.0' }, 'vfio'],
      [7, { kind: 'id', vendor: '15b3', device: '101e', subvendor: null, subdevice: null }, 'vfio'],
      [8, { kind: 'class', prefix: '0200' }, 'none'],
      [9, { kind: 'address', address: '0000:3b:00.0' }, null],
    ],
  );
  assert.deepEqual(c.rules[1]!.hooks, ['/etc/vfioctl/cx7']);
  assert.equal(c.rules[1]!.acknowledgeBroadMatch, true);
  assert.deepEqual(c.rules[3]!.sriov, { numVfs: 4, vfIntent: { kind: 'vfio' } });
});

test('errors name the file, line:column, the field and the fix; all of them at once', () => {
  const p = problems(`{
  "version": 1,
  "rules": [
    { "match": { "address": "3:0.0" }, "intent": "vfio" },
    { "match": { "id": "15b3" }, "intent": "vfio pci" },
    { "match": { "address": "0000:01:00.0", "id": "8086:10d3" }, "intent": "vfio" },
    { "match": { "class": "02" } },
    { "match": { "address": "0000:01:00.1" }, "intent": "vfio", "colour": "red" }
  ]
}`);
  const text = p.join('\n');
  assert.match(
    text,
    /vfioctl\.json:4:\d+: rules\[0\]\.match\.address: must match pattern .*fix: use DOMAIN:BUS:DEV\.FN/,
  );
  assert.match(text, /vfioctl\.json:5:\d+: rules\[1\]\.match\.id: .*fix: use VENDOR:DEVICE/);
  assert.match(text, /vfioctl\.json:5:\d+: rules\[1\]\.intent: .*no spaces or newlines/);
  assert.match(text, /vfioctl\.json:6:\d+: rules\[2\]\.match: a match needs exactly one of/);
  assert.match(text, /vfioctl\.json:7:\d+: rules\[3\]: a rule needs an 'intent'/);
  assert.match(text, /vfioctl\.json:8:\d+: rules\[4\]\.colour: unknown field 'colour'/);
  assert.equal(p.length, 6, text);
});

test('syntax errors, empty files, wrong versions and duplicate devices are rejected', () => {
  assert.match(
    problems('{ "version": 1, "rules": [ }').join(),
    /vfioctl\.json:1:\d+: JSON syntax error: ValueExpected/,
  );
  assert.match(problems('').join(), /empty file/);
  assert.match(
    problems('{ "version": 2, "rules": [] }').join(),
    /version: must be equal to constant; fix: set "version": 1/,
  );
  const dup = problems(`{ "version": 1, "rules": [
    { "match": { "address": "0000:01:00.0" }, "intent": "vfio" },
    { "match": { "address": "01:00.0" }, "intent": "none" } ] }`).join();
  assert.match(
    dup,
    /:3: rules\[1\]\.match\.address: 0000:01:00\.0 is already configured by rules\[0\] \(line 2\)/,
  );
  assert.match(
    problems(
      `{ "version": 1, "rules": [ { "match": { "class": "02" }, "sriov": { "numVfs": 2 } } ] }`,
    ).join(),
    /only a rule matching one physical function by 'address' can size SR-IOV/,
  );
  const vfs = problems(`{ "version": 1, "rules": [
    { "match": { "address": "0000:3b:00.0" }, "sriov": { "numVfs": 2, "vfIntent": "vfio" } },
    { "match": { "vfsOf": "0000:3b:00.0" }, "intent": "none" } ] }`).join();
  assert.match(vfs, /the VFs of 0000:3b:00\.0 already get an intent from rules\[0\]/);
});

test('set/unset edit the text in place: comments and other rules survive; the result is valid', () => {
  const text = `{
  // keep me
  "version": 1,
  "rules": [
    { "match": { "class": "02" }, "intent": "none" } // and me
  ]
}
`;
  const a = withIntent(text, '0000:03:00.0', 'vfio');
  assert.ok(a.changed);
  assert.match(a.text, /\/\/ keep me/);
  assert.match(a.text, /\/\/ and me/);
  assert.deepEqual(
    a.config.rules.map((r) => spelt(r.intent)),
    ['none', 'vfio'],
  );
  const b = withIntent(a.text, '0000:03:00.0', 'mlx5_vfio_pci');
  assert.deepEqual(
    b.config.rules.map((r) => spelt(r.intent)),
    ['none', 'mlx5_vfio_pci'],
  );
  assert.equal(withIntent(b.text, '0000:03:00.0', 'mlx5_vfio_pci').changed, false);
  const c = withoutDevice(b.text, '0000:03:00.0');
  assert.deepEqual(
    c.config.rules.map((r) => spelt(r.intent)),
    ['none'],
  );
  assert.match(c.text, /\/\/ keep me/);
  assert.equal(withoutDevice(c.text, '0000:03:00.0').changed, false);
  // From no file at all.
  assert.deepEqual(
    withIntent(undefined, '0000:00:02.0', 'none').config.rules.map((r) => r.selector),
    [{ kind: 'address', address: '0000:00:02.0' }],
  );
});

function dev(address: string, over: Partial<PciDevice> = {}): PciDevice {
  return {
    address,
    vendor: '8086',
    device: '10d3',
    subsystemVendor: '8086',
    subsystemDevice: '0000',
    class: '020000',
    revision: null,
    modalias: null,
    headerType: 0,
    driver: 'e1000e',
    driverOverride: null,
    iommuGroup: '1',
    numaNode: null,
    resetMethods: null,
    sriov: null,
    physfn: null,
    vfioDev: null,
    bootVga: false,
    ...over,
  };
}

test('the most specific rule wins: address > vfsOf/vfIntent > id+subsystem > id > longer class; ties warn', () => {
  const c = parseConfig(
    `{ "version": 1, "rules": [
      { "match": { "class": "02" }, "intent": "c2" },
      { "match": { "class": "0200" }, "intent": "c4" },
      { "match": { "id": "8086:10d3" }, "intent": "id" },
      { "match": { "id": "8086:10d3:8086:0001" }, "intent": "idsub" },
      { "match": { "address": "0000:00:05.0" }, "intent": "addr" },
      { "match": { "address": "0000:3b:00.0" }, "sriov": { "numVfs": 2, "vfIntent": "vf" } },
      { "match": { "class": "0200" }, "intent": "c4-again" }
    ] }`,
    F,
  );
  const devices = new Map(
    [
      dev('0000:00:01.0', { vendor: '14e4', device: '1657', class: '028000' }),
      dev('0000:00:02.0', { vendor: '1af4', device: '1041' }),
      dev('0000:00:03.0'),
      dev('0000:00:04.0', { subsystemDevice: '0001' }),
      dev('0000:00:05.0', { subsystemDevice: '0001' }),
      dev('0000:3b:00.0', {
        sriov: { totalVfs: 4, numVfs: 2, driversAutoprobe: true, vfs: ['0000:3b:00.1'] },
      }),
      dev('0000:3b:00.1', { physfn: '0000:3b:00.0' }),
      dev('0000:00:06.0', { vendor: '1b36', device: '0010', class: '010802' }),
    ].map((d) => [d.address, d]),
  );
  const s = desiredState(c, devices);
  const got = Object.fromEntries([...s.desires].map(([a, d]) => [a, spelt(d.intent)]));
  assert.deepEqual(got, {
    '0000:00:01.0': 'c2',
    '0000:00:02.0': 'c4',
    '0000:00:03.0': 'id',
    '0000:00:04.0': 'idsub',
    '0000:00:05.0': 'addr',
    '0000:3b:00.0': null,
    '0000:3b:00.1': 'vf',
  });
  assert.deepEqual(
    s.sriov.map((x) => [x.pf, x.numVfs, spelt(x.vfIntent)]),
    [['0000:3b:00.0', 2, 'vf']],
  );
  assert.ok(
    s.warnings.some((w) => /0000:00:02\.0 is selected by rules\[1\] and rules\[6\]/.test(w)),
    s.warnings.join('\n'),
  );
});

test('set --acknowledge-broad-match edits the rule in its own layout: its line, or a line of its own after its comment', () => {
  const id = parseConfig(
    '{ "version": 1, "rules": [ { "match": { "id": "8086:10d3" }, "intent": "vfio" } ] }',
    'x',
  ).rules[0]!.selector;
  const ack = (text: string, intent = 'vfio') =>
    withRuleIntent(text, id, intent, { acknowledgeBroadMatch: true });
  const rules = (...lines: string[]) =>
    `{\n  "version": 1,\n  "rules": [\n${lines.join('\n')}\n  ]\n}\n`;
  const one = ack(
    rules(
      '    { "match": { "id": "8086:10d3" }, "intent": "vfio" }, // the NICs',
      '    { "match": { "address": "0000:00:03.0" }, "intent": "vfio" }',
    ),
  );
  assert.equal(
    one.text,
    rules(
      '    { "match": { "id": "8086:10d3" }, "intent": "vfio", "acknowledgeBroadMatch": true }, // the NICs',
      '    { "match": { "address": "0000:00:03.0" }, "intent": "vfio" }',
    ),
  );
  assert.equal(one.config.rules[0]!.acknowledgeBroadMatch, true);
  assert.equal(
    ack(
      rules(
        '    {',
        '      "match": { "id": "8086:10d3" },',
        '      "intent": "none" // why',
        '    }',
      ),
    ).text,
    rules(
      '    {',
      '      "match": { "id": "8086:10d3" },',
      '      "intent": "vfio", // why',
      '      "acknowledgeBroadMatch": true',
      '    }',
    ),
  );
  const no = rules(
    '    { "match": { "id": "8086:10d3" }, "intent": "vfio", "acknowledgeBroadMatch": false }',
  );
  assert.equal(ack(no).text, no.replace('false', 'true'));
  const done = ack(no.replace('false', 'true'));
  assert.equal(done.changed, false);
  assert.equal(
    ack(rules('    { "match": { "address": "0000:00:03.0" }, "intent": "vfio" }')).config.rules[1]!
      .acknowledgeBroadMatch,
    true,
    'a new rule carries it',
  );
  // Without the option an acknowledgement stays.
  const kept = withRuleIntent(done.text, id, 'none');
  assert.equal(kept.config.rules[0]!.acknowledgeBroadMatch, true);
});
