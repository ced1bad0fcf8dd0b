// The lock excludes: flock(2) held for the holder's lifetime, never stolen, bounded waits.
import { test, afterEach } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { acquireLock, lockHeld, LockTimeout, type LockHolder } from '../../src/apply/lock';
import { HostRoot } from '../../src/host/root';
import { EXIT, type VfioctlError } from '../../src/util/diag';
import { Fixture } from '../support/fixture';
import { E2, modelHosts } from '../support/model-host';

const fixtures: Fixture[] = [];
const children: ChildProcess[] = [];
afterEach(() => {
  children.splice(0).forEach((c) => c.kill('SIGKILL'));
  fixtures.splice(0).forEach((f) => f.cleanup());
});
const host = modelHosts({ trustSelf: true });

function root(): HostRoot {
  const f = Fixture.create();
  fixtures.push(f);
  return new HostRoot(f.dir);
}

/** Another process that takes the lock and holds it until killed; resolves once it holds it. */
async function holder(r: HostRoot): Promise<ChildProcess> {
  const lockModule = path.resolve(__dirname, '../../src/apply/lock.js');
  const rootModule = path.resolve(__dirname, '../../src/host/root.js');
  const c = spawn(
    process.execPath,
    [
      '-e',
      `require(${JSON.stringify(lockModule)}).acquireLock(new (require(${JSON.stringify(rootModule)}).HostRoot)(${JSON.stringify(r.dir)}), { waitMs: 0 }).then(() => { console.log('held'); setInterval(() => {}, 1000); })`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  children.push(c);
  await new Promise<void>((resolve) => c.stdout!.once('data', () => resolve()));
  return c;
}

test('a live holder excludes: no wait is exit 4 naming its pid; its death frees the lock at once', async () => {
  const r = root();
  const c = await holder(r);
  assert.equal(lockHeld(r), true);
  await assert.rejects(
    acquireLock(r, { waitMs: 0 }),
    (e: LockTimeout) => e.exitCode === EXIT.LOCKED && e.message.includes(`pid ${c.pid}`),
  );
  c.kill('SIGKILL');
  await new Promise((resolve) => c.once('exit', resolve));
  const l = await acquireLock(r, { waitMs: 0 });
  l.release();
  assert.equal(lockHeld(r), false);
});

test('an empty or stale-looking lock file is not a lock: only flock(2) decides', async () => {
  const r = root();
  fs.mkdirSync(r.path('/run/vfioctl'), { recursive: true });
  for (const content of ['', '0\n', '999999999\n', `${process.pid}\n`]) {
    fs.writeFileSync(r.path('/run/vfioctl/lock'), content);
    const l = await acquireLock(r, { waitMs: 0 });
    // ... and while we hold it, nobody else gets it, whatever the file says.
    await assert.rejects(acquireLock(r, { waitMs: 0 }), LockTimeout);
    l.release();
  }
});

test('a waiter is told who holds the lock after a second, and gets it when the holder goes', async () => {
  const r = root();
  const c = await holder(r);
  const told: LockHolder[] = [];
  const t0 = Date.now();
  setTimeout(() => c.kill('SIGTERM'), 1500);
  const l = await acquireLock(r, { waitMs: 10_000, onWait: (h) => told.push(h) });
  l.release();
  assert.equal(told.length, 1);
  assert.equal(told[0]!.pid, c.pid);
  assert.match(told[0]!.command, /^node\b/);
  assert.ok(Date.now() - t0 < 9000, 'the wait ended when the holder died, not at the limit');
});

test('the wait is bounded: --wait gives up with exit 4', async () => {
  const r = root();
  await holder(r);
  const t0 = Date.now();
  await assert.rejects(acquireLock(r, { waitMs: 700 }), LockTimeout);
  assert.ok(Date.now() - t0 >= 600);
});

test('a lock path that is a directory, a dangling symlink, a symlink or a FIFO is an error, not a wait', async () => {
  const cases: [string, (p: string) => void][] = [
    ['directory', (p) => fs.mkdirSync(p)],
    ['dangling symlink', (p) => fs.symlinkSync('/nonexistent/lock', p)],
    ['symlink to a file', (p) => fs.symlinkSync('/etc/hostname', p)],
    ['FIFO', (p) => require('node:child_process').execFileSync('mkfifo', [p])],
  ];
  for (const [what, make] of cases) {
    const r = root();
    fs.mkdirSync(r.path('/run/vfioctl'), { recursive: true });
    make(r.path('/run/vfioctl/lock'));
    const t0 = Date.now();
    await assert.rejects(
      acquireLock(r, { waitMs: 30_000 }),
      (e: VfioctlError) => e.exitCode === EXIT.FAILED && /regular file/.test(e.message),
      what,
    );
    assert.ok(Date.now() - t0 < 5000, `${what}: no busy loop`);
  }
});

test('the CLI: --wait 0 against a held lock is exit 4 and changes nothing; --wait must be a number', async () => {
  const h = host();
  await holder(new HostRoot(h.f.dir));
  const r = await h.run(['--wait', '0', 'bind', E2]);
  assert.equal(r.code, EXIT.LOCKED, r.stderr);
  assert.match(r.stderr, /another vfioctl holds .*lock: pid \d+/);
  assert.equal(h.state(E2).driver, 'e1000e');
  assert.equal(h.k.writes.length, 0);
  assert.equal((await h.run(['--wait', 'soon', 'bind', E2])).code, EXIT.BAD_INPUT);
  // Read-only commands never wait for the lock.
  assert.equal((await h.run(['list', '--json'])).code, 0);
});
