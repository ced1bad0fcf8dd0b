// `vfioctl config check FILE` and `--config FILE` on apply, status and install: a candidate
// configuration outside the host tree (what configuration management previews and validates).
import { test, afterEach } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { E1, E2, VN, modelHosts } from '../support/model-host';

const CONF = '/etc/vfioctl/vfioctl.json';
const MAP = '/etc/vfioctl/boot/6.12.0-test.map';
const host = modelHosts({ trustSelf: true });
const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

/** A candidate file on the running system (not under the host root), mode 0644. */
function candidate(content: unknown): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-candidate-'));
  dirs.push(dir);
  const file = path.join(dir, 'candidate.json');
  fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2), {
    mode: 0o644,
  });
  return file;
}

test('config check: a valid file is exit 0 and --json lists its parsed rules', async () => {
  const h = host();
  const file = candidate({
    version: 1,
    rules: [
      { match: { address: '00:02.0' }, intent: 'vfio' },
      { match: { id: '8086:10D3' }, intent: 'none', comment: 'x' },
    ],
  });
  const r = await h.run(['config', 'check', file, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = r.json();
  assert.equal(j.file, file);
  assert.equal(j.valid, true);
  assert.deepEqual(j.problems, []);
  // Normalised as apply reads them: full address, lower-case id.
  assert.deepEqual(
    j.rules.map((x: any) => [x.selector, x.intent]),
    [
      [{ kind: 'address', address: E1 }, 'vfio'],
      [{ kind: 'id', vendor: '8086', device: '10d3', subvendor: null, subdevice: null }, 'none'],
    ],
  );
  const text = await h.run(['config', 'check', file]);
  assert.equal(text.code, 0);
  assert.match(text.stdout, /valid, 2 rules/);
});

test('config check: every problem of a broken file, exit 2, and --json says invalid', async () => {
  const h = host();
  const file = candidate(`{
  "version": 1,
  "rules": [
    { "match": { "address": "0000:00:02.0" }, "intent": "vfio" },
    { "match": { "address": "0000:00:02.0" }, "intent": "none" },
    { "match": { "adress": "0000:00:05.0" }, "intent": "vfio" }
  ]
}`);
  const r = await h.run(['config', 'check', file, '--json']);
  assert.equal(r.code, 2);
  const j = r.json();
  assert.equal(j.valid, false);
  assert.deepEqual(j.rules, []);
  assert.ok(
    j.problems.some((p: string) => p.includes('unknown field') && p.includes('adress')),
    j.problems.join('\n'),
  );
  // The schema error stops before the duplicate check, as loadConfig does: the same problems.
  const plain = await h.run(['config', 'check', file]);
  assert.equal(plain.code, 2);
  for (const p of j.problems) assert.ok(plain.stderr.includes(p), p);
  const dup = candidate({
    version: 1,
    rules: [
      { match: { address: E1 }, intent: 'vfio' },
      { match: { address: '00:02.0' }, intent: 'none' },
    ],
  });
  const d = await h.run(['config', 'check', dup, '--json']);
  assert.equal(d.code, 2);
  assert.match(d.json().problems.join('\n'), /already configured by rules\[0\]/);
});

test('config check: a missing, group-writable or non-regular file is exit 2 with the reason', async () => {
  const h = host();
  const missing = path.join(path.dirname(candidate('{}')), 'nope.json');
  const m = await h.run(['config', 'check', missing, '--json']);
  assert.equal(m.code, 2);
  assert.deepEqual(m.json().problems, [`${missing}: no such file`]);
  const loose = candidate({ version: 1, rules: [] });
  fs.chmodSync(loose, 0o664);
  const g = await h.run(['config', 'check', loose, '--json']);
  assert.equal(g.code, 2);
  assert.match(g.json().problems[0], /writable by its group/);
  const dir = await h.run(['config', 'check', path.dirname(loose)]);
  assert.equal(dir.code, 2);
  assert.match(dir.stderr, /not a regular file \(a directory\)/);
  assert.equal((await h.run(['config', 'lint', loose])).code, 2, 'unknown action');
});

test('apply --dry-run --config previews the candidate and writes nothing; apply --config converges to it', async () => {
  const h = host();
  h.config([{ match: { address: E2 }, intent: 'vfio' }]);
  assert.equal((await h.run(['apply'])).code, 0);
  assert.equal(h.state(E2).driver, 'vfio-pci');
  const before = h.f.tree.read(CONF);
  const stateBefore = h.f.tree.read('/var/lib/vfioctl/state.json');
  // The candidate drops E2's rule and names E1: E2 is released, E1 bound.
  const file = candidate({ version: 1, rules: [{ match: { address: E1 }, intent: 'vfio' }] });
  const dry = await h.run(['apply', '--dry-run', '--config', file, '--json']);
  assert.equal(dry.code, 0, dry.stderr);
  const moves = dry.json().results.map((r: any) => [r.address, r.phase, r.status, r.target]);
  assert.deepEqual(moves, [
    [E2, 'release', 'planned', 'e1000e'],
    [E1, 'bind', 'planned', 'vfio-pci'],
  ]);
  assert.equal(h.state(E1).driver, 'e1000e');
  assert.equal(h.state(E2).driver, 'vfio-pci');
  assert.equal(h.f.tree.read(CONF), before);
  assert.equal(h.f.tree.read('/var/lib/vfioctl/state.json'), stateBefore);
  // status against the candidate: E1 pending, E2 unconfigured; against the host file: E2 ok.
  const st = await h.run(['status', '--config', file, '--json']);
  assert.equal(st.code, 5, 'against the candidate, devices drift');
  assert.equal(st.json().config, file);
  assert.deepEqual(
    st.json().devices.map((d: any) => [d.address, d.drift]),
    [
      [E1, 'pending'],
      [E2, 'unconfigured'],
    ],
  );
  const own = await h.run(['status', '--json']);
  assert.deepEqual(
    [own.code, own.json().devices.map((d: any) => [d.address, d.drift])],
    [0, [[E2, 'ok']]],
  );
  const real = await h.run(['apply', '--config', file, '--json']);
  assert.equal(real.code, 0, real.stderr);
  assert.equal(h.state(E1).driver, 'vfio-pci');
  assert.equal(h.state(E2).driver, 'e1000e');
  assert.equal(h.f.tree.read(CONF), before, 'the host file is not touched');
});

test('apply --config with a missing or broken file is exit 2 and releases nothing', async () => {
  const h = host();
  h.config([{ match: { address: VN }, intent: 'vfio' }]);
  assert.equal((await h.run(['apply'])).code, 0);
  const bound = h.state(VN).driver;
  assert.equal(bound, 'virtio_vfio_pci');
  const dir = path.dirname(candidate('{}'));
  for (const file of [path.join(dir, 'missing.json'), candidate('{"version": 1, "rules": [ ')]) {
    const r = await h.run(['apply', '--config', file]);
    assert.equal(r.code, 2, file);
    assert.equal(h.state(VN).driver, bound, `${file}: nothing released`);
    assert.equal((await h.run(['status', '--config', file])).code, 2);
  }
});

test('install --refresh --config makes the boot maps from the candidate', async () => {
  const h = host();
  h.config([{ match: { address: E1 }, intent: 'vfio' }]);
  assert.equal((await h.run(['install', '--exec', '/usr/local/bin/vfioctl'])).code, 0);
  const entries = () =>
    h.f.tree
      .read(MAP)!
      .split('\n')
      .filter((l) => /^(address|id) /.test(l));
  assert.deepEqual(entries(), [`address ${E1} vfio-pci vfio_pci`]);
  const file = candidate({ version: 1, rules: [{ match: { address: E2 }, intent: 'vfio' }] });
  const r = await h.run(['install', '--refresh', '--config', file, '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(entries(), [`address ${E2} vfio-pci vfio_pci`]);
  assert.match(
    h.f.tree.read(MAP)!,
    new RegExp(
      `^# vfioctl boot map for kernel 6\\.12\\.0-test, generated from ${file.replace(/[.]/g, '\\.')};`,
    ),
  );
  assert.equal(
    (await h.run(['install', '--refresh', '--config', path.join(path.dirname(file), 'none.json')]))
      .code,
    2,
  );
  assert.deepEqual(
    entries(),
    [`address ${E2} vfio-pci vfio_pci`],
    'a missing file leaves the maps as they were',
  );
});
