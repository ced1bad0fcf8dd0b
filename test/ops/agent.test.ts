// The node agent against the kernel model: policy validation and the atomic write of the host's
// file, the readiness mapping (converged, refused, drift, emergency stop, invalid policy), the
// node-feature-discovery file, and that stopping or restarting it unbinds nothing.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  Agent,
  NFD_FEATURES_FILE,
  policyHash,
  probeReadiness,
  type AgentClock,
  type AgentLogLine,
  type AgentOptions,
} from '../../src/ops/agent';
import { openHost } from '../../src/ops/index';
import { trustPolicy } from '../../src/host/trust';
import { E1, E2, VN, modelHosts, type ModelHost } from '../support/model-host';

const host = modelHosts({ trustSelf: true });

/**
 * Simulated time: sleep() returns at once after advancing the clock, and the loop stops after
 * `polls` sleeps.
 */
class TestClock implements AgentClock {
  t = Date.parse('2026-12-02T10:00:00Z');
  sleeps: number[] = [];
  onSleep: (n: number) => void = () => {};
  now(): number {
    return this.t;
  }
  random(): number {
    return 0.5;
  }
  sleep(ms: number): Promise<void> {
    this.t += ms;
    this.sleeps.push(ms);
    this.onSleep(this.sleeps.length);
    return Promise.resolve();
  }
}

interface Rig {
  h: ModelHost;
  agent: Agent;
  logs: AgentLogLine[];
  clock: TestClock;
  policy: string;
  ready: string;
  opts: AgentOptions;
  writePolicy(rules: unknown[] | string): string;
  make(extra?: Partial<AgentOptions>): Agent;
}

function rig(h: ModelHost, extra: Partial<AgentOptions> = {}): Rig {
  const side = `${h.f.dir}.container`;
  fs.mkdirSync(side, { recursive: true });
  const policy = path.join(side, 'policy', 'vfioctl.json');
  const ready = path.join(side, 'run', 'ready.json');
  const logs: AgentLogLine[] = [];
  const clock = new TestClock();
  const vfioHost = openHost({
    root: h.f.dir,
    kernelIo: h.k,
    trust: trustPolicy(h.env),
    env: h.env,
    waitMs: 2000,
  });
  const opts: AgentOptions = {
    policyFile: policy,
    intervalMs: 60_000,
    jitterMs: 6_000,
    reapply: false,
    readyFile: ready,
    stopFile: '/etc/vfioctl/agent-stop',
    featuresFile: NFD_FEATURES_FILE,
    clock,
    log: (l) => logs.push(l),
    ...extra,
  };
  const r: Rig = {
    h,
    logs,
    clock,
    policy,
    ready,
    opts,
    agent: new Agent(vfioHost, opts),
    writePolicy(rules) {
      const text =
        typeof rules === 'string' ? rules : JSON.stringify({ version: 1, rules }, null, 2) + '\n';
      fs.mkdirSync(path.dirname(policy), { recursive: true });
      fs.writeFileSync(policy, text, { mode: 0o644 });
      fs.chmodSync(policy, 0o644);
      return text;
    },
    make(more = {}) {
      return new Agent(vfioHost, { ...opts, ...more });
    },
  };
  return r;
}

const unbinds = (h: ModelHost) =>
  h.k.writes.filter((w) => w.rel.endsWith('/unbind') || w.rel.endsWith('/remove'));
const features = (h: ModelHost) => h.f.tree.read(NFD_FEATURES_FILE);

test('a valid policy becomes the host file (atomically), is applied, and the node reports ready with its labels', async () => {
  const h = host();
  const r = rig(h);
  const text = r.writePolicy([{ match: { address: E2 }, intent: 'vfio' }]);
  h.f.tree.mkdir('/etc/vfioctl/boot'); // the boot layers are installed: the maps follow the policy
  const ready = await r.agent.cycle();
  assert.equal(ready.ready, true, JSON.stringify(r.logs, null, 1));
  assert.equal(ready.reason, 'converged');
  assert.equal(ready.policy, policyHash(text));
  assert.equal(h.f.tree.read('/etc/vfioctl/vfioctl.json'), text);
  assert.equal(
    (fs.statSync(h.f.tree.abs('/etc/vfioctl/vfioctl.json')).mode & 0o777).toString(8),
    '644',
  );
  assert.deepEqual(
    h.f.tree.list('/etc/vfioctl').filter((f) => f.endsWith('.tmp')),
    [],
  );
  assert.match(h.f.tree.read('/etc/vfioctl/boot/6.12.0-test.map') ?? '', new RegExp(E2));
  assert.equal(h.state(E2).driver, 'vfio-pci');
  assert.equal(
    features(h),
    `# written by vfioctl agent: do not edit\nvfioctl.io/converged=true\nvfioctl.io/vfio-capable=true\nvfioctl.io/config=${policyHash(text)}\n`,
  );
  // Dot-file and rename: nothing else is left in features.d for NFD to read.
  assert.deepEqual(h.f.tree.list(path.dirname(NFD_FEATURES_FILE)), ['vfioctl']);
  assert.deepEqual(
    r.logs.filter((l) => l.event !== 'warning').map((l) => l.event),
    ['config-written', 'applied'],
  );
  // The map refresh says the fixture's root=/dev/sda1 has no PCI device behind it.
  assert.deepEqual(
    r.logs.filter((l) => l.event === 'warning').map((l) => l.msg),
    [
      // Once for the boot maps (refreshed with the policy), once for this apply's boot-device
      // guard.
      'boot device /dev/sda1 (root on the kernel command line) could not be traced to a PCI device: it is not protected by name at boot',
      'boot device /dev/sda1 (root on the kernel command line) could not be traced to a PCI device: this apply cannot refuse it by name',
    ],
  );
  assert.equal(probeReadiness(r.ready, r.clock.now()).ready, true);
  // The same policy again: nothing written to the kernel, nothing rewritten.
  const before = h.k.writes.length;
  const again = await r.agent.cycle();
  assert.equal(again.ready, true);
  assert.equal(h.k.writes.length, before);
});

test('an invalid policy is refused with every problem; nothing is written to the host or the kernel', async () => {
  const h = host();
  const r = rig(h);
  h.config([{ match: { address: E2 }, intent: 'vfio' }]);
  const hostFile = h.f.tree.read('/etc/vfioctl/vfioctl.json');
  r.writePolicy(
    '{ "version": 1, "rules": [ { "match": { "address": "00:05.0" }, "intnet": "vfio" }, { "match": { "adress": "x" }, "intent": "vfio" } ] }',
  );
  const ready = await r.agent.cycle();
  assert.equal(ready.ready, false);
  assert.equal(ready.reason, 'invalid-policy');
  assert.ok(
    ready.detail.some((d) => /rules\[0\]\.intnet: unknown field/.test(d)),
    ready.detail.join('\n'),
  );
  assert.ok(
    ready.detail.some((d) => /rules\[1\]\.match\.adress: unknown field/.test(d)),
    ready.detail.join('\n'),
  );
  assert.ok(
    ready.detail.every((d) => d.startsWith(r.policy)),
    'each problem names the policy file',
  );
  assert.equal(h.f.tree.read('/etc/vfioctl/vfioctl.json'), hostFile);
  assert.deepEqual(h.k.writes, []);
  assert.equal(r.logs[0]!.event, 'policy-invalid');
  assert.match(features(h) ?? '', /vfioctl\.io\/converged=false/);
  // A policy in a directory others may write (on a writable mount) is refused, naming the fix.
  r.writePolicy([{ match: { address: E2 }, intent: 'vfio' }]);
  fs.chmodSync(path.dirname(r.policy), 0o777);
  const open = await r.agent.cycle();
  assert.equal(open.reason, 'invalid-policy');
  assert.match(open.detail[0]!, /writable by others \(mode 777\).*fix: chown root: and chmod go-w/);
  assert.deepEqual(h.k.writes, []);
  fs.chmodSync(path.dirname(r.policy), 0o755);
  // A missing policy file is not "no rules" (that would release every device an apply bound).
  fs.rmSync(r.policy);
  const missing = await r.agent.cycle();
  assert.equal(missing.reason, 'invalid-policy');
  assert.match(missing.detail[0]!, /no such file/);
  assert.deepEqual(h.k.writes, []);
});

test('a policy that takes the boot NIC is refused: NotReady with the reason, exit 3 from --once, the probe fails', async () => {
  const h = host({ eth0: { name: 'eth0', up: true, ipv4: '10.1.0.7' } });
  const r = rig(h);
  r.writePolicy([
    { match: { address: E1 }, intent: 'vfio' },
    { match: { address: E2 }, intent: 'vfio' },
  ]);
  const ready = await r.agent.cycle();
  assert.equal(ready.ready, false);
  assert.equal(ready.reason, 'refused');
  assert.ok(
    ready.detail.some((d) => d.startsWith(`${E1}: in-use: `)),
    ready.detail.join('\n'),
  );
  assert.equal(h.state(E1).driver, 'e1000e');
  const refusal = r.logs.find((l) => l.event === 'refused')!;
  assert.equal(refusal.level, 'error');
  assert.ok((refusal.problems as string[]).some((p) => p.includes('in-use')));
  const probe = probeReadiness(r.ready, r.clock.now());
  assert.equal(probe.ready, false);
  assert.match(probe.message, /refused.*in-use/);
  assert.match(features(h) ?? '', /converged=false/);
  // The same through the CLI (--once): exit 3, JSON lines on stdout, and the probe exits 1.
  const once = await h.run(['agent', '--policy', r.policy, '--once', '--ready-file', r.ready]);
  assert.equal(once.code, 3, once.stdout + once.stderr);
  const lines = once.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.ok(
    lines.some(
      (l) => l.event === 'refused' && l.problems.some((p: string) => p.startsWith(`${E1}: in-use`)),
    ),
  );
  const probeCli = await h.run(['agent', '--probe', '--ready-file', r.ready]);
  assert.equal(probeCli.code, 1);
  assert.match(probeCli.stderr, /not ready \(refused/);
});

test('drift: reported and NotReady by default; with reapply it is converged again', async () => {
  const h = host();
  const r = rig(h);
  r.writePolicy([{ match: { address: E2 }, intent: 'vfio' }]);
  assert.equal((await r.agent.cycle()).ready, true);
  // Something else gives the device back to e1000e behind vfioctl's back.
  await h.handBack(E2);
  assert.equal(h.state(E2).driver, 'e1000e');
  const drift = await r.agent.cycle();
  assert.equal(drift.ready, false);
  assert.equal(drift.reason, 'drift');
  assert.match(drift.detail[0]!, new RegExp(`^${E2}: rebound: `));
  assert.equal(h.state(E2).driver, 'e1000e', 'not re-applied without --reapply');
  assert.ok(r.logs.some((l) => l.event === 'drift'));
  const re = r.make({ reapply: true });
  assert.equal((await re.cycle()).ready, true);
  assert.equal(h.state(E2).driver, 'vfio-pci');
  // A host file edited by hand is drift too: the policy is written back on re-apply.
  h.f.tree.write('/etc/vfioctl/vfioctl.json', '{"version": 1, "rules": []}\n');
  const edited = await re.cycle();
  assert.equal(edited.ready, true);
  assert.equal(h.f.tree.read('/etc/vfioctl/vfioctl.json'), fs.readFileSync(r.policy, 'utf8'));
  assert.equal(h.state(E2).driver, 'vfio-pci');
});

test('the emergency stop file: nothing applied or written, NotReady; removing it lets the next poll apply', async () => {
  const h = host();
  const r = rig(h);
  r.writePolicy([{ match: { address: E2 }, intent: 'vfio' }]);
  h.f.tree.write('/etc/vfioctl/agent-stop', '');
  const stopped = await r.agent.cycle();
  assert.equal(stopped.ready, false);
  assert.equal(stopped.reason, 'emergency-stop');
  assert.deepEqual(h.k.writes, []);
  assert.equal(h.f.tree.read('/etc/vfioctl/vfioctl.json'), undefined);
  assert.ok(r.logs.some((l) => l.event === 'emergency-stop' && l.level === 'warn'));
  h.f.tree.rm('/etc/vfioctl/agent-stop');
  assert.equal((await r.agent.cycle()).ready, true);
  assert.equal(h.state(E2).driver, 'vfio-pci');
  // Converged, then stopped again: NotReady at once (a rollout halts), nothing undone.
  h.f.tree.write('/etc/vfioctl/agent-stop', '');
  const n = h.k.writes.length;
  assert.equal((await r.agent.cycle()).reason, 'emergency-stop');
  assert.equal(h.k.writes.length, n);
  assert.equal(h.state(E2).driver, 'vfio-pci');
});

test('the drift loop polls on the interval with jitter and stops without unbinding anything', async () => {
  const h = host();
  const r = rig(h);
  r.writePolicy([
    { match: { address: E2 }, intent: 'vfio' },
    { match: { address: VN }, intent: 'vfio' },
  ]);
  const agent = r.make();
  r.clock.onSleep = (n) => {
    if (n === 3) agent.stop();
  };
  const done = await agent.run();
  assert.equal(done.ready, true);
  // interval 60 s + random 0.5 x jitter 6 s.
  assert.deepEqual(r.clock.sleeps, [63_000, 63_000, 63_000]);
  assert.equal(h.state(E2).driver, 'vfio-pci');
  assert.equal(h.state(VN).driver, 'virtio_vfio_pci');
  const bound = h.k.writes.length;
  assert.deepEqual(
    unbinds(h)
      .map((w) => w.value)
      .sort(),
    [VN, E2],
    'only the host drivers let go, once, at the apply',
  );
  assert.equal(r.logs.at(-1)!.event, 'stop');
  assert.match(r.logs.at(-1)!.msg, /nothing is unbound/);
  // A restart (a new pod): NotReady until its first apply, which is a no-op.
  const restarted = r.make();
  r.clock.onSleep = () => restarted.stop();
  const again = await restarted.run();
  assert.equal(again.ready, true);
  assert.equal(h.k.writes.length, bound, 'a restart writes nothing to the kernel');
});

test('SIGTERM ends `vfioctl agent` with exit 0 and unbinds nothing; the restarted agent is ready again', async () => {
  const h = host();
  const r = rig(h);
  r.writePolicy([{ match: { address: E2 }, intent: 'vfio' }]);
  const args = ['agent', '--policy', r.policy, '--interval', '3600', '--ready-file', r.ready];
  for (let round = 0; round < 2; round++) {
    const running = h.run(args);
    for (let i = 0; i < 400 && !probeReadiness(r.ready, Date.now()).ready; i++)
      await new Promise((res) => setTimeout(res, 10));
    assert.equal(probeReadiness(r.ready, Date.now()).ready, true, `round ${round}`);
    const n = h.k.writes.length;
    process.emit('SIGTERM', 'SIGTERM');
    const res = await running;
    assert.equal(res.code, 0, res.stderr);
    assert.equal(h.k.writes.length, n, 'nothing written to the kernel after SIGTERM');
    assert.equal(h.state(E2).driver, 'vfio-pci');
    assert.match(res.stdout.trim().split('\n').at(-1)!, /"event":"stop"/);
  }
  assert.equal(unbinds(h).length, 1, 'only the first apply took E2 from e1000e');
  const probe = await h.run(['agent', '--probe', '--ready-file', r.ready]);
  assert.equal(probe.code, 0, probe.stderr);
  assert.match(probe.stdout, /ready \(converged/);
});

test('the probe: a missing or stale readiness file is not ready', () => {
  const h = host();
  const r = rig(h);
  assert.match(probeReadiness(r.ready, Date.now()).message, /no readiness yet/);
  fs.mkdirSync(path.dirname(r.ready), { recursive: true });
  fs.writeFileSync(
    r.ready,
    JSON.stringify({
      ready: true,
      reason: 'converged',
      detail: [],
      policy: 'abc',
      at: '2026-01-01T00:00:00Z',
      validUntil: '2026-01-01T00:05:00Z',
    }),
  );
  const p = probeReadiness(r.ready, Date.parse('2026-01-01T00:06:00Z'));
  assert.equal(p.ready, false);
  assert.match(p.message, /stale/);
  assert.equal(probeReadiness(r.ready, Date.parse('2026-01-01T00:04:00Z')).ready, true);
});

test('bad agent options are exit 2 and change nothing', async () => {
  const h = host();
  for (const args of [
    ['agent'],
    ['agent', '--policy', '/x', '--interval', '0'],
    ['agent', '--policy', '/x', '--stop-file', 'rel/path'],
  ]) {
    const res = await h.run(args);
    assert.equal(res.code, 2, args.join(' '));
    assert.match(res.stderr, /--policy FILE is required|--interval|--stop-file/);
  }
  assert.deepEqual(h.k.writes, []);
});

test('status warns when a device a literal-vfio-pci consumer uses is on a variant (or would be)', async () => {
  const h = host();
  h.config([
    { match: { address: VN }, intent: 'vfio', consumer: 'kubevirt' },
    { match: { address: E2 }, intent: 'vfio', consumer: 'kubevirt' },
  ]);
  const before = await h.run(['status', '--json']);
  assert.equal(before.json().warnings.length, 1, before.stdout);
  assert.match(
    before.json().warnings[0],
    new RegExp(
      `^${VN}: intent vfio resolves to the vfio-pci variant virtio_vfio_pci, but rules\\[0\\] \\(line \\d+\\): ${VN} says KubeVirt's host-device plugin uses it`,
    ),
  );
  assert.equal((await h.run(['apply'])).code, 0);
  const after = await h.run(['status', '--json']);
  assert.equal(after.json().warnings.length, 1);
  assert.match(
    after.json().warnings[0],
    new RegExp(
      `^${VN}: on the vfio-pci variant virtio_vfio_pci, but .*KubeVirt's host-device plugin.*intent 'vfio-pci'`,
    ),
  );
  // The fix the warning names: literal vfio-pci, and the warning is gone.
  h.config([
    { match: { address: VN }, intent: 'vfio-pci', consumer: 'kubevirt' },
    { match: { address: E2 }, intent: 'vfio', consumer: 'kubevirt' },
  ]);
  assert.equal((await h.run(['apply'])).code, 0);
  assert.equal(h.state(VN).driver, 'vfio-pci');
  assert.deepEqual((await h.run(['status', '--json'])).json().warnings, []);
  // An unknown consumer is a configuration error naming the fix.
  h.config([{ match: { address: VN }, intent: 'vfio-pci', consumer: 'kubvirt' }]);
  const bad = await h.run(['status']);
  assert.equal(bad.code, 2);
  assert.match(
    bad.stderr,
    /rules\[0\]\.consumer: .*fix: use kubevirt, nvidia-sandbox-device-plugin/,
  );
});
