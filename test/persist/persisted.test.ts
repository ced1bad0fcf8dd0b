// vfioctl's own files are input too: whatever bytes a journal entry, bind record, state or boot
// file holds, reading it either accepts a valid value or names the problem; never a crash, never
// a write outside the root, never an action on a foreign entry.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import fc from 'fast-check';
import { parseJournalEntry } from '../../src/apply/journal';
import { parseRecord } from '../../src/persist/records';
import { parseBootState, parseState } from '../../src/persist/state';
import { parseBootMapJson } from '../../src/boot/map';
import { Invalid, jsonObject } from '../../src/persist/validate';
import { E1, E2, modelHosts } from '../support/model-host';

const host = modelHosts({ trustSelf: true });

const VALID_JOURNAL = {
  address: E1,
  kind: 'bind',
  original: { driver: 'e1000e', override: null },
  target: { driver: 'vfio-pci', override: 'vfio-pci' },
  step: 3,
  op: 'probe',
  pid: 1,
  at: 'x',
};

const readers: [string, (o: Record<string, unknown>) => unknown][] = [
  ['journal', parseJournalEntry],
  ['record', parseRecord],
  ['state', parseState],
  ['boot', parseBootState],
];

/** JSON values near the valid shapes: real field names with random values, nested. */
const nearJson = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.constant(null),
    fc.boolean(),
    fc.integer(),
    fc.constantFrom(E1, '../../..', 'bind', 'unbind', 'e1000e', 'vfio-pci', 'none', ''),
    fc.string(),
    tie('object'),
    fc.array(tie('value'), { maxLength: 3 }),
  ),
  object: fc.dictionary(
    fc.constantFrom(
      'address',
      'kind',
      'original',
      'target',
      'driver',
      'override',
      'step',
      'op',
      'pid',
      'at',
      'devices',
      'outcome',
      'hostDriverBuiltin',
      'kernel',
      'originalDriver',
      'originalOverride',
      E1,
    ),
    tie('value'),
    { maxKeys: 8 },
  ),
}));

test('property: any bytes, and any JSON near the real shapes, are accepted as valid or rejected with a message', () => {
  const inputs = fc.oneof(
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString('latin1')),
    nearJson.object.map((o) => JSON.stringify(o)),
    fc.constant(JSON.stringify(VALID_JOURNAL)),
  );
  fc.assert(
    fc.property(inputs, (text) => {
      for (const [, parse] of readers) {
        try {
          const v = parse(jsonObject(text)) as { address?: string };
          // Accepted: every address in it is canonical, so it can never name a path outside sysfs.
          if (v && typeof v.address === 'string')
            assert.match(v.address, /^[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$/);
        } catch (e) {
          assert.ok(e instanceof Invalid, `${(e as Error).name}: ${(e as Error).message}`);
          assert.ok((e as Error).message.length > 0);
        }
      }
    }),
    { numRuns: 1500 },
  );
});

test('a journal entry that escapes (../../..), is null, truncated or of an unknown kind is reported by recover, list, doctor and bind, and never acted on', async () => {
  for (const [name, content] of [
    ['traversal', JSON.stringify({ ...VALID_JOURNAL, address: '../../..' })],
    ['null', 'null'],
    ['truncated', JSON.stringify(VALID_JOURNAL).slice(0, 40)],
    ['unknown kind', JSON.stringify({ ...VALID_JOURNAL, kind: 'format-disk' })],
    ['missing field', JSON.stringify({ ...VALID_JOURNAL, original: undefined })],
  ] as const) {
    const h = host();
    h.f.tree.write(`/run/vfioctl/journal/${E1}.json`, content);
    // A file the traversal would have reached.
    h.f.tree.write('/victim.json', 'keep\n');
    const rec = await h.run(['recover']);
    assert.equal(rec.code, 1, `${name}: recover fails loudly`);
    assert.match(
      rec.stdout,
      new RegExp(`UNREADABLE journal entry .*${E1}\\.json \\(device ${E1}\\)`),
      name,
    );
    const list = await h.run(['list', '--json']);
    assert.equal(list.code, 0);
    assert.match(list.stderr, /unreadable journal entry/, `${name}: list says so`);
    const doc = await h.run(['doctor']);
    assert.match(
      doc.stdout,
      /WARN +journal +unreadable journal entries/,
      `${name}: doctor says so`,
    );
    const bind = await h.run(['bind', E2]);
    assert.equal(bind.code, 0, `${name}: other devices still work: ${bind.stderr}`);
    assert.match(
      bind.stderr,
      /unreadable journal entry/,
      `${name}: the next writing command says so`,
    );
    assert.equal(
      h.k.writes.filter((w) => w.rel.includes(E1)).length,
      0,
      `${name}: nothing written for the entry's device`,
    );
    assert.equal(h.f.tree.read('/victim.json'), 'keep\n');
    assert.ok(h.f.tree.exists(`/run/vfioctl/journal/${E1}.json`), `${name}: left for the admin`);
    assert.doesNotMatch(rec.stderr + list.stderr + bind.stderr, /TypeError|internal error/);
  }
});

test('corrupt bind records, state and boot files are named and ignored, never a crash', async () => {
  const h = host();
  h.config([{ match: { address: E2 }, intent: 'vfio' }]);
  h.f.tree.write(`/run/vfioctl/bound/${E1}.json`, '{"address": 7}');
  h.f.tree.write('/var/lib/vfioctl/state.json', '{"devices": {"../x": null}}');
  h.f.tree.write('/run/vfioctl/boot.json', 'garbage');
  const st = await h.run(['status']);
  assert.doesNotMatch(st.stderr, /TypeError|internal error/);
  assert.match(st.stderr, /state\.json: .*rewrites it/);
  const ap = await h.run(['apply']);
  assert.equal(ap.code, 0, ap.stderr);
  assert.match(ap.stderr, new RegExp(`bound/${E1}\\.json \\(device ${E1}\\): field 'address'`));
  assert.equal(
    JSON.parse(h.f.tree.read('/var/lib/vfioctl/state.json')!).devices[E2].status,
    'ok',
    'apply rebuilt the state',
  );
  const un = await h.run(['unbind', E1, '--dry-run']);
  assert.doesNotMatch(un.stderr, /TypeError|internal error/);
});

test('writes never leave the root: symlinked run/vfioctl, var/lib/vfioctl, rules.d and boot maps are refused', async () => {
  const outside = fs.mkdtempSync('/tmp/vfioctl-outside-');
  try {
    const cases: [string, string, string[]][] = [
      ['run/vfioctl', '/run/vfioctl', ['bind', E2]],
      ['var/lib/vfioctl', '/var/lib/vfioctl', ['apply']],
      ['etc/udev/rules.d', '/etc/udev/rules.d', ['install']],
      ['etc/vfioctl/boot', '/etc/vfioctl/boot', ['install']],
    ];
    for (const [what, rel, args] of cases) {
      const h = host();
      h.config([{ match: { address: E2 }, intent: 'vfio' }]);
      const abs = h.f.tree.abs(rel);
      fs.mkdirSync(require('node:path').dirname(abs), { recursive: true });
      fs.rmSync(abs, { recursive: true, force: true });
      fs.symlinkSync(outside, abs);
      const r = await h.run(args[0] === 'install' ? [...args, '--exec', '/bin/true'] : args);
      assert.notEqual(r.code, 0, `${what}: refused (${r.stdout}${r.stderr})`);
      assert.match(r.stderr, /outside the root/, what);
      assert.deepEqual(fs.readdirSync(outside), [], `${what}: nothing written outside`);
      if (args[0] !== 'install')
        assert.equal(h.state(E2).driver, 'e1000e', `${what}: refused before anything changed`);
      fs.rmSync(outside, { recursive: true, force: true });
      fs.mkdirSync(outside);
    }
  } finally {
    fs.rmSync(outside, { recursive: true, force: true });
  }
});

test('a device attribute symlinked out of the root is never written (sysfs writer)', async () => {
  const { HostRoot } = await import('../../src/host/root');
  const { SysfsKernelIo } = await import('../../src/apply/kernel-io');
  const h = host();
  const outside = fs.mkdtempSync('/tmp/vfioctl-outside-');
  try {
    fs.writeFileSync(`${outside}/target`, 'untouched');
    const attr = h.f.tree.abs(`/sys/bus/pci/devices/${E2}/driver_override`);
    fs.rmSync(attr);
    fs.symlinkSync(`${outside}/target`, attr);
    await assert.rejects(
      new SysfsKernelIo(new HostRoot(h.f.dir)).write(
        `/sys/bus/pci/devices/${E2}/driver_override`,
        'vfio-pci',
      ),
      /outside the root/,
    );
    assert.equal(fs.readFileSync(`${outside}/target`, 'utf8'), 'untouched');
    // Links that stay inside (sysfs's own device links) are fine.
    await new SysfsKernelIo(new HostRoot(h.f.dir)).write(
      `/sys/bus/pci/devices/${E1}/driver_override`,
      'vfio-pci',
    );
  } finally {
    fs.rmSync(outside, { recursive: true, force: true });
  }
});

test('apply refuses before changing anything when it cannot record what it does (read-only /var)', async () => {
  const h = host();
  h.config([{ match: { address: E2 }, intent: 'vfio' }]);
  fs.mkdirSync(h.f.tree.abs('/var/lib'), { recursive: true });
  fs.writeFileSync(h.f.tree.abs('/var/lib/vfioctl'), 'not a directory');
  const r = await h.run(['apply']);
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /cannot record what apply does in .*var\/lib\/vfioctl \(EEXIST\); nothing was changed/,
  );
  assert.equal(h.k.writes.length, 0);
  assert.equal(h.state(E2).driver, 'e1000e');
});

test('a journal entry naming a step vfioctl does not take is rejected, naming the field', () => {
  assert.throws(
    () => parseJournalEntry({ ...VALID_JOURNAL, op: 'format-disk' }),
    (e: unknown) => e instanceof Invalid && /field 'op' is not a step name/.test(e.message),
  );
  assert.equal(parseJournalEntry({ ...VALID_JOURNAL, op: 'set-override' }).op, 'set-override');
});

test('property: a boot map JSON near the real shape is accepted with canonical addresses, or rejected with a message', () => {
  const leftOut = fc.record(
    {
      reason: fc.constantFrom(
        'in-use',
        'boot-device',
        'hooks',
        'broad-rule',
        'unresolved',
        'vf-layout-unknown',
        'no-id-entry',
        'other',
      ),
      address: fc.constantFrom(E1, '../../..', ''),
      pf: fc.constantFrom(E1, 'x'),
      use: fc.array(fc.string(), { maxLength: 2 }),
      why: fc.oneof(
        fc.array(fc.string(), { maxLength: 2 }),
        fc.record({
          kind: fc.constantFrom('left-out', 'no-device', 'drivers-differ', 'x'),
          addresses: fc.array(fc.constantFrom(E1, '..'), { maxLength: 2 }),
        }),
      ),
      hooks: fc.array(fc.string(), { maxLength: 2 }),
      rule: fc.oneof(fc.nat(), fc.string()),
      selector: fc.string(),
      message: fc.string(),
    },
    { requiredKeys: ['reason'] },
  );
  const entry = fc.record(
    {
      kind: fc.constantFrom('address', 'id', 'class'),
      selector: fc.constantFrom(E1, '8086:10d3', '../x', ''),
      driver: fc.constantFrom('vfio-pci', 'none', '..', 'a b'),
      module: fc.constantFrom('vfio_pci', '-', ''),
    },
    { requiredKeys: [] },
  );
  const map = fc.record(
    {
      kernel: fc.oneof(fc.string(), fc.constant(null)),
      source: fc.string(),
      entries: fc.array(entry, { maxLength: 3 }),
      leftOut: fc.array(leftOut, { maxLength: 3 }),
    },
    { requiredKeys: [] },
  );
  fc.assert(
    fc.property(
      fc.oneof(
        map.map((m) => JSON.stringify(m)),
        fc.string(),
      ),
      (text) => {
        try {
          const m = parseBootMapJson(text);
          for (const l of m.leftOut)
            if ('address' in l)
              assert.match(l.address, /^[0-9a-f]{4,8}:[0-9a-f]{2}:[01][0-9a-f]\.[0-7]$/);
          for (const e of m.entries) assert.match(e.driver, /^[A-Za-z0-9_.:+-]{1,64}$/);
        } catch (e) {
          assert.ok(e instanceof Invalid, `${(e as Error).name}: ${(e as Error).message}`);
        }
      },
    ),
    { numRuns: 1000 },
  );
});
