// The fleet simulation: 50 nodes, each its own kernel-model host with its own agent, driven by a
// stand-in for the DaemonSet controller's RollingUpdate (maxUnavailable 1, maxSurge 0,
// readiness-gated, minReadySeconds). A policy change converges every node; a node where the
// policy would take the boot NIC stays NotReady and the rollout stops there; restarting every
// agent unbinds nothing. The figures are printed (simulated rollout time, wall time).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { openHost } from '../../src/ops/index';
import { policyHash } from '../../src/ops/agent';
import { trustPolicy } from '../../src/host/trust';
import { E1, E2, VN, ModelHost } from '../support/model-host';
import { DaemonSetSim, SimClock, type SimNode } from '../support/daemonset-sim';

const NODES = 50;
/** The node whose E1 carries its address and default route: its boot NIC. */
const BOOT_NIC_NODE = 31;

test(`fleet of ${NODES} nodes: a rollout converges every node, a boot-NIC policy halts it at that node, restarts unbind nothing`, async (t) => {
  const wall = Date.now();
  process.setMaxListeners(4 * NODES); // every agent's write session listens for SIGTERM
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-fleet-'));
  const hosts: ModelHost[] = [];
  t.after(() => {
    for (const h of hosts) h.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const nodes: SimNode[] = [];
  for (let i = 0; i < NODES; i++) {
    const h = new ModelHost(
      i === BOOT_NIC_NODE ? { eth0: { name: 'eth0', up: true, ipv4: `10.0.${i}.2` } } : {},
    ).trustSelf();
    hosts.push(h);
    const name = `node-${String(i).padStart(2, '0')}`;
    nodes.push({
      name,
      host: openHost({
        root: h.f.dir,
        kernelIo: h.k,
        trust: trustPolicy(h.env),
        env: h.env,
        waitMs: 5000,
      }),
      readyFile: path.join(dir, name, 'run', 'ready.json'),
    });
  }
  // The ConfigMaps, one per content hash (configMapGenerator): each revision mounts its own.
  const policy = (rev: string, rules: unknown[]) => {
    const file = path.join(dir, `policy-${rev}`, 'vfioctl.json');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify({ version: 1, rules }, null, 2) + '\n', { mode: 0o644 });
    return file;
  };
  const p1 = policy('1', [{ match: { address: E2 }, intent: 'vfio' }]);
  const p2 = policy('2', [
    { match: { address: E2 }, intent: 'vfio' },
    { match: { id: '1af4:1041' }, intent: 'vfio' },
  ]);
  const p3 = policy('3', [
    { match: { address: E2 }, intent: 'vfio' },
    { match: { id: '1af4:1041' }, intent: 'vfio' },
    { match: { address: E1 }, intent: 'vfio-pci' },
  ]);
  const sim = new SimClock();
  const ds = new DaemonSetSim(sim, nodes, {
    maxUnavailable: 1,
    minReadySeconds: 10,
    probePeriodSeconds: 5,
    agent: {
      intervalMs: 300_000,
      jitterMs: 30_000,
      reapply: false,
      stopFile: '/etc/vfioctl/agent-stop',
      featuresFile: '/etc/kubernetes/node-feature-discovery/features.d/vfioctl',
    },
  });
  const drivers = () => hosts.map((h) => [E1, VN, E2].map((a) => h.k.driverOf(a)).join(' '));
  const unbindCount = () =>
    hosts.reduce((n, h) => n + h.k.writes.filter((w) => w.rel.endsWith('/unbind')).length, 0);

  // The DaemonSet is created: every node converges to policy 1 at once.
  const phase: Record<string, number> = {};
  let mark = wall;
  const lap = (name: string) => {
    phase[name] = (Date.now() - mark) / 1000;
    mark = Date.now();
  };
  lap('setup');
  const created = await ds.create('1', p1, 300);
  lap('create');
  assert.equal(created.complete, true, JSON.stringify(created));
  assert.deepEqual(new Set(drivers()), new Set(['e1000e virtio-pci vfio-pci']));

  // A policy change: rolled out node by node; every node converges.
  const r2 = await ds.rollout('2', p2, 3600);
  lap('rollout');
  assert.equal(r2.complete, true, JSON.stringify(r2));
  assert.equal(r2.updated, NODES);
  assert.deepEqual(new Set(drivers()), new Set(['e1000e virtio_vfio_pci vfio-pci']));
  for (const h of hosts)
    assert.match(
      h.f.tree.read('/etc/kubernetes/node-feature-discovery/features.d/vfioctl')!,
      new RegExp(
        `converged=true\\n.*\\nvfioctl.io/config=${policyHash(fs.readFileSync(p2, 'utf8'))}`,
      ),
    );
  // maxUnavailable 1: never two new pods coming up at once, so the rollout takes at least one
  // probe period plus minReadySeconds per node.
  assert.ok(r2.seconds >= NODES * 10, `rollout took ${r2.seconds} s`);

  // Every agent restarted (a new image, a node drain): nothing is unbound, nothing moves.
  const before = {
    drivers: drivers(),
    unbinds: unbindCount(),
    writes: hosts.map((h) => h.k.writes.length),
  };
  await ds.stopAll();
  const restarted = await ds.create('2', p2, 300);
  lap('restart');
  assert.equal(restarted.complete, true);
  assert.deepEqual(drivers(), before.drivers);
  const restartUnbinds = unbindCount() - before.unbinds;
  assert.equal(restartUnbinds, 0, 'a restart unbinds nothing');
  assert.deepEqual(
    hosts.map((h) => h.k.writes.length),
    before.writes,
    'a restart writes nothing to any kernel',
  );

  // A policy that takes E1, which is node 31's boot NIC: the nodes before it converge, node 31's
  // new pod stays NotReady (refused: in use), and the rollout stops there.
  const r3 = await ds.rollout('3', p3, 900);
  lap('halted rollout');
  assert.equal(r3.complete, false);
  assert.equal(r3.haltedAt, `node-${BOOT_NIC_NODE}`);
  assert.match(r3.haltReason!, new RegExp(`^refused: ${E1}: in-use: `));
  assert.equal(r3.updated, BOOT_NIC_NODE);
  hosts.forEach((h, i) => {
    const e1 = h.k.driverOf(E1);
    if (i < BOOT_NIC_NODE) assert.equal(e1, 'vfio-pci', `node ${i}`);
    else
      assert.equal(
        e1,
        'e1000e',
        `node ${i}: ${i === BOOT_NIC_NODE ? 'its boot NIC is kept' : 'not reached by the halted rollout'}`,
      );
  });
  const refusal = ds.logs.find((l) => l.node === `node-${BOOT_NIC_NODE}` && l.event === 'refused');
  assert.ok(refusal, 'the refusing node says why in its log');
  await ds.stopAll();
  const wallSeconds = (Date.now() - wall) / 1000;
  t.diagnostic(
    `fleet: ${NODES} nodes; rollout of a policy change: ${r2.seconds} s simulated (probe period 5 s, minReadySeconds 10, maxUnavailable 1), ${r2.updated}/${NODES} converged; restart of all ${NODES} agents: ${restartUnbinds} unbinds, ${restarted.seconds} s simulated to all Ready; boot-NIC policy: halted at ${r3.haltedAt} after ${r3.updated} nodes (${r3.haltReason}); wall time ${wallSeconds.toFixed(1)} s (${Object.entries(
      phase,
    )
      .map(([k, v]) => `${k} ${v.toFixed(1)} s`)
      .join(', ')})`,
  );
});
