// Many vfioctl processes on one host at once (an agent, Ansible and an admin): every kernel write
// happens under the lock, configuration edits are never lost, signals roll back cleanly.
import { test, afterEach } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import fc from 'fast-check';
import { lockHeld } from '../../src/apply/lock';
import { HostRoot } from '../../src/host/root';
import { E1, E2, modelHosts, VN, type ModelHost } from '../support/model-host';
import { ModelServer } from '../support/remote-kernel';

const REMOTE_CLI = path.resolve(__dirname, '../support/remote-cli.js');
const BUNDLE = path.resolve(__dirname, '../../../dist/vfioctl.js');
const host = modelHosts({ trustSelf: true });
const servers: ModelServer[] = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await s.close();
});

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function spawnCli(
  script: string,
  h: ModelHost,
  server: ModelServer | null,
  args: string[],
  onSpawn?: (pid: number) => void,
): Promise<Run> {
  return new Promise((resolve) => {
    const env = {
      ...h.env,
      PATH: process.env.PATH,
      ...(server ? { VFIOCTL_MODEL_SOCKET: server.socket } : {}),
    };
    const c = spawn(process.execPath, [script, '--root', h.f.dir, ...args], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    onSpawn?.(c.pid!);
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}

async function served(h: ModelHost): Promise<ModelServer> {
  const s = await new ModelServer(h.f.dir, h.k).start();
  servers.push(s);
  return s;
}

test('stress: 10 processes bind, unbind, set, unset and apply at random; every write is locked and the end state is the configuration', {
  timeout: 240_000,
}, async () => {
  const DEVICES = [E1, VN, E2];
  const OPS = (d: string): string[][] => [
    ['bind', d],
    ['unbind', d],
    ['set', d, 'vfio'],
    ['set', d, 'vfio-pci'],
    ['unset', d],
    ['apply'],
    ['set', d, 'none'],
  ];
  const rounds = 2;
  for (let round = 0; round < rounds; round++) {
    const h = host();
    const server = await served(h);
    const plans = fc.sample(
      fc.array(fc.tuple(fc.nat(DEVICES.length - 1), fc.nat(OPS('').length - 1)), {
        minLength: 4,
        maxLength: 4,
      }),
      { numRuns: 10, seed: 20261202 + round },
    );
    const failures: string[] = [];
    let invocations = 0;
    await Promise.all(
      plans.map(async (plan) => {
        for (const [d, o] of plan) {
          const args = OPS(DEVICES[d]!)[o]!;
          const r = await spawnCli(REMOTE_CLI, h, server, ['--wait', '120', ...args]);
          invocations++;
          if (r.code !== 0) failures.push(`vfioctl ${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
        }
      }),
    );
    assert.deepEqual(failures, [], 'every invocation succeeded');
    assert.equal(invocations, 40);
    assert.deepEqual(server.violations, [], 'no kernel write without the lock');
    const final = await spawnCli(REMOTE_CLI, h, server, ['apply', '--json']);
    assert.equal(final.code, 0, final.stderr);
    const status = JSON.parse((await spawnCli(REMOTE_CLI, h, server, ['status', '--json'])).stdout);
    // Every configured device is where its rule says. (A device a rule no longer names but a manual
    // `bind` moved after an apply had bound it is left alone by design: 'unconfigured'.)
    for (const d of status.devices.filter((x: any) => x.drift !== 'unconfigured'))
      assert.equal(
        d.drift,
        'ok',
        `${d.address}: ${d.detail}\nfinal apply: ${final.stdout}\nstate: ${h.f.tree.read('/var/lib/vfioctl/state.json')}\nconfig: ${h.f.tree.read('/etc/vfioctl/vfioctl.json')}\nlive: ${JSON.stringify(DEVICES.map((x) => h.state(x)))}`,
      );
    assert.deepEqual(h.f.tree.list('/run/vfioctl/journal'), [], 'nothing half-done');
    assert.equal(lockHeld(new HostRoot(h.f.dir)), false);
    for (const d of DEVICES) {
      const rule = status.devices.find((s: any) => s.address === d);
      if (rule?.intent !== 'none')
        assert.notEqual(h.state(d).driver, null, `${d} is not left driverless`);
    }
  }
});

test('8 parallel `set` processes keep all 8 rules, and the file keeps its comments, mode and neighbours', {
  timeout: 60_000,
}, async () => {
  const h = host();
  const original =
    '// fleet policy: do not reformat\n{\n  "version": 1,\n  /* keep */ "rules": [\n    { "match": { "class": "0c03" }, "intent": "none" } // USB\n  ]\n}\n';
  h.f.tree.write('/etc/vfioctl/vfioctl.json', original);
  fs.chmodSync(h.f.tree.abs('/etc/vfioctl/vfioctl.json'), 0o640);
  const addresses = Array.from({ length: 8 }, (_, i) => `0000:3b:00.${i}`);
  const runs = await Promise.all(
    addresses.map((a) => spawnCli(BUNDLE, h, null, ['set', a, 'vfio', '--noprobe'])),
  );
  for (const r of runs) assert.equal(r.code, 0, r.stderr);
  const text = h.f.tree.read('/etc/vfioctl/vfioctl.json')!;
  for (const a of addresses) assert.ok(text.includes(`"address": "${a}"`), `${a} kept`);
  assert.ok(
    text.startsWith(
      '// fleet policy: do not reformat\n{\n  "version": 1,\n  /* keep */ "rules": [\n    { "match": { "class": "0c03" }, "intent": "none" }, // USB\n',
    ),
    'bytes outside the new rules unchanged (but the comma the next rule needs)',
  );
  assert.equal(
    fs.statSync(h.f.tree.abs('/etc/vfioctl/vfioctl.json')).mode & 0o777,
    0o640,
    'mode kept',
  );
  assert.deepEqual(
    h.f.tree.list('/etc/vfioctl').filter((f) => f.endsWith('.tmp')),
    [],
    'no temp files left',
  );
  // unset of one rule leaves every other byte as it was.
  const before = text;
  assert.equal((await spawnCli(BUNDLE, h, null, ['unset', addresses[3]!, '--noprobe'])).code, 0);
  const after = h.f.tree.read('/etc/vfioctl/vfioctl.json')!;
  assert.ok(!after.includes(addresses[3]!));
  // Exactly the removed rule's line goes; every other line stays byte for byte (the new last rule
  // only loses the comma it no longer needs).
  const gone = before.split('\n').filter((l) => l.includes(addresses[3]!));
  assert.equal(gone.length, 1);
  const kept = before.split('\n').filter((l) => l !== gone[0]);
  assert.equal(after.split('\n').length, kept.length);
  after
    .split('\n')
    .forEach((l, i) =>
      assert.ok(
        l === kept[i] || `${l},` === kept[i],
        `line ${i + 1}: ${JSON.stringify(l)} vs ${JSON.stringify(kept[i])}`,
      ),
    );
});

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  test(`${signal} at every kernel write of a bind: the step finishes, the bind rolls back or completes, the lock is released, exit non-zero`, {
    timeout: 60_000,
  }, async () => {
    // bind E1 writes: set-override, unbind, probe (modprobe is not a write).
    for (let n = 1; n <= 3; n++) {
      const h = host();
      const server = await served(h);
      server.signalAt = { n, signal };
      const r = await spawnCli(REMOTE_CLI, h, server, ['bind', E1, '--json']);
      assert.notEqual(r.code, 0, `write ${n}: exit non-zero\n${r.stdout}\n${r.stderr}`);
      assert.equal(r.signal, null, `write ${n}: vfioctl handled ${signal} instead of dying`);
      const result = JSON.parse(r.stdout).results[0];
      if (result.status === 'failed') {
        assert.match(result.error, new RegExp(`interrupted by ${signal}`));
        assert.deepEqual(
          h.state(E1),
          { driver: 'e1000e', override: null, vfioDev: false },
          `write ${n}: rolled back`,
        );
      } else {
        // The signal came with the last write: the bind was complete, and is recorded as such.
        assert.equal(result.status, 'ok');
        assert.equal(h.state(E1).driver, 'vfio-pci');
        assert.ok(h.f.tree.exists(`/run/vfioctl/bound/${E1}.json`));
      }
      if (n === 1) assert.equal(result.status, 'failed', 'a signal at the first write rolls back');
      assert.deepEqual(h.f.tree.list('/run/vfioctl/journal'), [], `write ${n}: journal clear`);
      assert.equal(lockHeld(new HostRoot(h.f.dir)), false, `write ${n}: lock released`);
      assert.deepEqual(server.violations, []);
    }
  });
}

test('SIGTERM during an apply: state.json records every device it moved, so status and the next apply see them', {
  timeout: 60_000,
}, async () => {
  const h = host();
  h.config([
    { match: { address: E1 }, intent: 'vfio' },
    { match: { address: E2 }, intent: 'vfio' },
  ]);
  const server = await served(h);
  // E1 and E2 are bound side by side (separate IOMMU groups): the 4th write is in the middle.
  server.signalAt = { n: 4, signal: 'SIGTERM' };
  const r = await spawnCli(REMOTE_CLI, h, server, ['apply', '--json']);
  assert.notEqual(r.code, 0);
  const state = JSON.parse(h.f.tree.read('/var/lib/vfioctl/state.json')!);
  for (const a of [E1, E2]) {
    const on = h.state(a).driver;
    if (on === 'vfio-pci')
      assert.equal(state.devices[a]?.status, 'ok', `${a} is on VFIO and state.json says so`);
    else assert.equal(on, 'e1000e');
  }
  const results = JSON.parse(r.stdout).results as { status: string; error: string | null }[];
  assert.ok(
    results.some((x) => x.status === 'failed' && /interrupted by SIGTERM/.test(x.error ?? '')),
    'the device in flight was rolled back',
  );
  assert.equal(lockHeld(new HostRoot(h.f.dir)), false);
});
