import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { E1, E2, isRoot, type ModelHost, modelHosts } from '../support/model-host';

const H = '/etc/vfioctl/hooks.d';
const host = modelHosts({ trustSelf: true });

/** A hook that logs its argv, the device's driver/override at that moment, and its stdin. */
function recorder(h: ModelHost, name: string, dir = H, extra = ''): void {
  const log = h.f.tree.abs('/hook.log');
  h.hook(
    `${dir}/${name}`,
    `d=$VFIOCTL_ROOT/sys/bus/pci/devices/$2
drv=$(basename "$(readlink "$d/driver")" 2>/dev/null); [ -n "$drv" ] || drv=none
echo "${name} $1 $2 target=$3 prev=$4 now=$drv override=$(cat "$d/driver_override")" >> ${log}
cat > ${h.f.tree.abs('/stdin-')}${name}-$1.json
${extra}`,
  );
}

const logLines = (h: ModelHost) =>
  (h.f.tree.read('/hook.log') ?? '').trim().split('\n').filter(Boolean);

test('bind runs pre-bind, pre-probe, post-bind in name order; /etc hides a vendor hook of the same name', async () => {
  const h = host();
  recorder(h, '20-second');
  recorder(h, '10-first', '/usr/lib/vfioctl/hooks.d');
  recorder(
    h,
    '20-second',
    '/usr/lib/vfioctl/hooks.d',
    'echo vendor copy must not run >> /dev/stderr; exit 1',
  );
  const r = await h.run(['bind', E2]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(logLines(h), [
    `10-first pre-bind ${E2} target=vfio-pci prev=e1000e now=e1000e override=(null)`,
    `20-second pre-bind ${E2} target=vfio-pci prev=e1000e now=e1000e override=(null)`,
    `10-first pre-probe ${E2} target=vfio-pci prev=e1000e now=none override=vfio-pci`,
    `20-second pre-probe ${E2} target=vfio-pci prev=e1000e now=none override=vfio-pci`,
    `10-first post-bind ${E2} target=vfio-pci prev=e1000e now=vfio-pci override=vfio-pci`,
    `20-second post-bind ${E2} target=vfio-pci prev=e1000e now=vfio-pci override=vfio-pci`,
  ]);
  const stdin = JSON.parse(h.f.tree.read('/stdin-10-first-pre-bind.json')!);
  assert.equal(stdin.event, 'pre-bind');
  assert.equal(stdin.device.address, E2);
  assert.equal(stdin.device.vendor, '8086');
  assert.equal(stdin.device.vfio.driver, 'vfio-pci');
  assert.ok(stdin.steps.includes(`write 'vfio-pci' > /sys/bus/pci/devices/${E2}/driver_override`));
});

test('unbind runs pre-unbind, pre-probe, post-unbind', async () => {
  const h = host();
  assert.equal((await h.run(['bind', E2])).code, 0);
  recorder(h, '10-rec');
  assert.equal((await h.run(['unbind', E2])).code, 0);
  assert.deepEqual(logLines(h), [
    `10-rec pre-unbind ${E2} target=e1000e prev=vfio-pci now=vfio-pci override=vfio-pci`,
    `10-rec pre-probe ${E2} target=e1000e prev=vfio-pci now=none override=(null)`,
    `10-rec post-unbind ${E2} target=e1000e prev=vfio-pci now=e1000e override=(null)`,
  ]);
});

test('exit 2 means "not my device": skipped with a note, the bind goes on', async () => {
  const h = host();
  h.hook(`${H}/50-other-vendor`, 'exit 2');
  const r = await h.run(['bind', E2, '--json']);
  assert.equal(r.code, 0);
  assert.match(
    r.json().results[0].warnings.join('\n'),
    /pre-bind hook \/etc\/vfioctl\/hooks.d\/50-other-vendor: not my device \(exit 2\)/,
  );
  assert.equal(h.state(E2).driver, 'vfio-pci');
});

for (const event of ['pre-bind', 'pre-probe']) {
  test(`a failing ${event} hook aborts the device with nothing changed, and its output is shown`, async () => {
    const h = host();
    h.hook(
      `${H}/10-cfg`,
      `[ "$1" = ${event} ] && { echo "devlink: eswitch is not in switchdev mode" >&2; exit 1; }; exit 0`,
    );
    const r = await h.run(['bind', E2, E1, '--json']);
    assert.equal(r.code, 1);
    const [a, b] = r.json().results;
    assert.equal(a.status, 'failed');
    assert.match(
      a.error,
      new RegExp(
        `${event} hook /etc/vfioctl/hooks.d/10-cfg exited 1; its output:\\ndevlink: eswitch is not in switchdev mode`,
      ),
    );
    assert.equal(b.status, 'failed', 'the hook fails for every device');
    for (const d of [E1, E2])
      assert.deepEqual(h.state(d), { driver: 'e1000e', override: null, vfioDev: false });
    if (event === 'pre-bind')
      assert.equal(h.k.writes.length, 0, 'pre-bind runs before anything is written');
  });
}

test('a failing post-bind hook rolls the bind back to the host driver', async () => {
  const h = host();
  h.hook(`${H}/90-check`, '[ "$1" = post-bind ] && exit 7; exit 0');
  const r = await h.run(['bind', E2]);
  assert.equal(r.code, 1);
  assert.match(
    r.stdout,
    /post-bind hook \/etc\/vfioctl\/hooks.d\/90-check exited 7 \(no output\); rolled back to e1000e/,
  );
  assert.deepEqual(h.state(E2), { driver: 'e1000e', override: null, vfioDev: false });
  assert.deepEqual(h.f.tree.list('/run/vfioctl/bound'), []);
});

test('a hook that outlives its timeout is killed and counts as a failure', async () => {
  const h = host();
  h.env = { ...h.env, VFIOCTL_HOOK_TIMEOUT: '0.3' };
  h.hook(`${H}/10-slow`, 'exec sleep 5');
  const t0 = Date.now();
  const r = await h.run(['bind', E2]);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /pre-bind hook \/etc\/vfioctl\/hooks.d\/10-slow timed out after 0.3 s/);
  assert.ok(Date.now() - t0 < 4000, 'killed, not waited for');
  assert.equal(h.state(E2).driver, 'e1000e');
});

test('--dry-run lists the hooks that would run; show lists the hooks for a device', async () => {
  const h = host();
  h.hook(`${H}/10-a`, 'exit 0');
  const d = await h.run(['bind', E2, '--dry-run']);
  assert.equal(d.code, 0);
  assert.match(
    d.stdout,
    /1\. run pre-bind hook \/etc\/vfioctl\/hooks.d\/10-a\n {2}2\. modprobe vfio_pci\n.*\n.*\n {2}5\. run pre-probe hook \/etc\/vfioctl\/hooks.d\/10-a\n/,
  );
  assert.match(d.stdout, /run post-bind hook \/etc\/vfioctl\/hooks.d\/10-a/);
  assert.equal(h.f.tree.exists('/hook.log'), false);
  const s = await h.run(['show', E2, '--json']);
  assert.deepEqual(s.json().hooks, [{ path: `${H}/10-a`, source: 'hooks.d', problem: null }]);
});

test('hooks that others could have written are refused with a clear message, never run', async () => {
  const h = host();
  recorder(h, '10-ok');
  h.hook(`${H}/20-groupw`, 'exit 0', 0o775);
  fs.chmodSync(h.f.tree.abs(`${H}/20-groupw`), 0o775); // umask-proof
  const r = await h.run(['bind', E2]);
  assert.equal(r.code, 3);
  assert.match(
    r.stdout,
    /hook-trust: hook \/etc\/vfioctl\/hooks.d\/20-groupw will not be run: \/etc\/vfioctl\/hooks.d\/20-groupw is writable by its group \(mode 775\)/,
  );
  assert.equal(h.f.tree.exists('/hook.log'), false, 'no hook ran, not even the good one');
  fs.chmodSync(h.f.tree.abs(`${H}/20-groupw`), 0o755);
  fs.chmodSync(h.f.tree.abs('/etc/vfioctl'), 0o777);
  const d = await h.run(['bind', E2, '--force']);
  assert.equal(d.code, 3, '--force does not override it');
  assert.match(d.stdout, /directory \/etc\/vfioctl is writable by others \(mode 777\)/);
  fs.chmodSync(h.f.tree.abs('/etc/vfioctl'), 0o755);
  assert.equal((await h.run(['bind', E2])).code, 0);
});

test('a hook not owned by root is refused unless the owner check is relaxed explicitly (and said)', async () => {
  const h = host();
  recorder(h, '10-mine');
  if (isRoot) fs.chownSync(h.f.tree.abs(`${H}/10-mine`), 65534, 65534);
  const owner = isRoot ? 65534 : process.getuid!();
  h.env = { PATH: process.env.PATH };
  const r = await h.run(['bind', E2]);
  assert.equal(r.code, 3);
  assert.match(r.stdout, new RegExp(`10-mine is owned by uid ${owner}, not root`));
  h.env = { PATH: process.env.PATH, VFIOCTL_TRUST_UID: String(owner) };
  if (!isRoot) {
    const ok = await h.run(['bind', E2]);
    assert.equal(ok.code, 0, ok.stdout);
  } else {
    // As root the temp tree's directories are root's; the relaxed uid covers only the hook file.
    const ok = await h.run(['bind', E2]);
    assert.equal(ok.code, 0, ok.stdout);
  }
  const warned = await h.run(['show', E2]);
  assert.match(
    warned.stderr,
    new RegExp(
      `VFIOCTL_TRUST_UID=${owner}: trusting hooks and configuration owned by uid ${owner}`,
    ),
  );
});

test('trust: a sticky world-writable directory (/tmp) on the path is fine; a symlink someone else owns is not', async () => {
  const h = host();
  h.hook(`${H}/10-ok`, 'exit 0');
  fs.chmodSync(h.f.tree.abs('/etc'), 0o1777);
  const ok = await h.run(['show', E2, '--json']);
  assert.deepEqual(
    ok.json().hooks.map((x: any) => x.problem),
    [null],
  );
  fs.chmodSync(h.f.tree.abs('/etc'), 0o755);
  // The hook reached through a symlinked directory owned by another user.
  fs.renameSync(h.f.tree.abs(H), h.f.tree.abs('/etc/vfioctl/real.d'));
  fs.symlinkSync('real.d', h.f.tree.abs(H));
  if (isRoot) fs.lchownSync(h.f.tree.abs(H), 65534, 65534);
  else h.env = { PATH: process.env.PATH }; // not trusting the test user: its symlink is not root's
  const bad = await h.run(['show', E2, '--json']);
  // As root the symlink is the only thing not root's; as a normal user its files are not either.
  assert.match(
    bad.json().hooks[0].problem,
    isRoot
      ? /directory \/etc\/vfioctl\/hooks\.d is a symlink owned by uid \d+, not root/
      : /owned by uid \d+, not root/,
  );
});
