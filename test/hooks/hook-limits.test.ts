// A hook's time limit holds for everything it started: its process group is killed at the limit,
// and output held open by a descendant never keeps vfioctl (or the boot unit) waiting.
import { test, afterEach } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { runHook, type HookInput } from '../../src/hooks/run';
import { processAlive } from '../../src/util/process';
import { Fixture } from '../support/fixture';

const fixtures: Fixture[] = [];
afterEach(() => fixtures.splice(0).forEach((f) => f.cleanup()));

const input: HookInput = {
  event: 'pre-bind',
  address: '0000:00:02.0',
  targetDriver: 'vfio-pci',
  previousDriver: 'e1000e',
  device: null,
  steps: [],
};

function hook(body: string): { f: Fixture; path: string } {
  const f = Fixture.create();
  fixtures.push(f);
  f.tree.write('/etc/vfioctl/hooks.d/10-test', `#!/bin/sh\n${body}\n`, 0o755);
  return { f, path: '/etc/vfioctl/hooks.d/10-test' };
}

test('at the limit the whole group goes: a child that traps TERM is KILLed, and vfioctl returns within limit + grace', {
  timeout: 30_000,
}, async () => {
  const { f, path } = hook(
    `sh -c 'trap "" TERM; echo $$ > "$VFIOCTL_ROOT/child.pid"; sleep 30' &\ntrap "" TERM\nsleep 30`,
  );
  const t0 = Date.now();
  const r = await runHook(
    new (await import('../../src/host/root')).HostRoot(f.dir),
    path,
    input,
    1000,
    process.env,
  );
  const took = Date.now() - t0;
  assert.equal(r.status, 'failed');
  assert.equal(r.timedOut, true);
  assert.ok(took < 8000, `returned after ${took} ms, not after the 30 s sleep`);
  const child = Number(f.tree.read('/child.pid'));
  // Gone, or a zombie waiting for init to reap it (kill(pid, 0) still finds those).
  const dead = () =>
    !processAlive(child) || /^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${child}/stat`, 'utf8'));
  for (let i = 0; i < 20 && !dead(); i++) await new Promise((res) => setTimeout(res, 100));
  assert.equal(dead(), true, 'the forked child that ignored TERM is gone too');
});

test('a hook that exits but leaves a child holding its stdout returns at once with its own status', {
  timeout: 30_000,
}, async () => {
  const { f, path } = hook(`echo configured\nsleep 20 &\nexit 0`);
  const t0 = Date.now();
  const r = await runHook(
    new (await import('../../src/host/root')).HostRoot(f.dir),
    path,
    input,
    10_000,
    process.env,
  );
  assert.equal(r.status, 'ok');
  assert.match(r.output, /configured/);
  assert.ok(Date.now() - t0 < 5000, 'not held by the background sleep');
});

test('a hook path with .. is refused before anything runs', async () => {
  const f = Fixture.create();
  fixtures.push(f);
  const { HostRoot } = await import('../../src/host/root');
  const { ruleHook } = await import('../../src/hooks/discover');
  const h = ruleHook(new HostRoot(f.dir), '/etc/vfioctl/../../../../bin/true', {
    uids: [0, process.getuid!()],
  });
  assert.match(h.problem ?? '', /'\.\.' is not allowed/);
});
