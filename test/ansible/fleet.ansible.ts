// The Ansible collection against real vfioctl processes on a fleet of 20 hosts. Each host is a
// fixture tree (ModelHost) whose simulated kernel this process serves on a unix socket
// (ModelServer); ansible-playbook reaches every host with ansible_connection=local and the module
// runs the CLI (test/support/remote-cli.ts, bundled by scripts/bundle.mjs) with --root HOST.
// Needs ansible-core (Debian's); run by ansible/tests/run.sh (npm run test:ansible), not by
// `npm test`.
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { E1, E2, ModelHost, VN } from '../support/model-host';
import { ModelServer } from '../support/remote-kernel';

const N = Number(process.env.FLEET_HOSTS ?? 20);
const repo = path.resolve(__dirname, '../../..');
const playDir = path.join(repo, 'ansible/tests/fleet');
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-fleet-'));
const names = Array.from({ length: N }, (_, i) => `host${String(i + 1).padStart(2, '0')}`);
/** Its policy names E1, whose eth0 is up with an address: host05 in the fleet of 20. */
const BAD = names[Math.min(4, N - 1)]!;
const hosts = new Map<string, ModelHost>();
const servers: ModelServer[] = [];
const CONF = '/etc/vfioctl/vfioctl.json';

after(async () => {
  for (const s of servers) await s.close();
  for (const h of hosts.values()) h.cleanup();
  fs.rmSync(work, { recursive: true, force: true });
});

interface Play {
  code: number | null;
  stdout: string;
  stderr: string;
  recap: Map<string, Record<string, number>>;
  /** Seconds the policy module took per host (its `elapsed`). */
  seconds: Map<string, number>;
}

async function setUp(): Promise<void> {
  // The CLI as a host runs it: one executable path (the module's `executable`), argument arrays;
  // one bundled file, as the package installs it (about 600 calls per test run).
  const exe = path.join(work, 'vfioctl');
  fs.writeFileSync(
    exe,
    `#!/bin/sh\nexec ${process.execPath} ${path.join(repo, 'build/test/support/remote-cli.bundle.js')} "$@"\n`,
    { mode: 0o755 },
  );
  const inv: string[] = ['[fleet]'];
  for (const name of names) {
    const h = new ModelHost(
      name === BAD ? { eth0: { name: 'eth0', up: true, ipv4: '192.0.2.5/24' } } : {},
    ).trustSelf();
    hosts.set(name, h);
    const s = await new ModelServer(h.f.dir, h.k).start();
    servers.push(s);
    inv.push(`${name} ansible_connection=local vfioctl_root=${h.f.dir} model_socket=${s.socket}`);
  }
  inv.push('', '[fleet:vars]', `vfioctl_exe=${exe}`, 'ansible_python_interpreter=/usr/bin/python3');
  fs.writeFileSync(path.join(work, 'inventory.ini'), inv.join('\n') + '\n');
}

/**
 * ansible-playbook, asynchronously: this process must keep serving the hosts' kernels meanwhile.
 */
function playbook(vars: Record<string, unknown>, extra: string[] = []): Promise<Play> {
  const varsFile = path.join(fs.mkdtempSync(path.join(work, 'run-')), 'vars.json');
  fs.writeFileSync(varsFile, JSON.stringify(vars));
  const env = {
    ...process.env,
    ANSIBLE_CONFIG: path.join(playDir, 'ansible.cfg'),
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_FORCE_COLOR: '0',
    ANSIBLE_LOCAL_TEMP: path.join(work, 'ansible-local'),
    ...(process.getuid?.() === 0 ? {} : { VFIOCTL_TRUST_UID: String(process.getuid!()) }),
  };
  const args = [
    '-i',
    path.join(work, 'inventory.ini'),
    path.join(playDir, 'site.yml'),
    '-e',
    `@${varsFile}`,
    ...extra,
  ];
  return new Promise((resolve) => {
    const c = spawn('/usr/bin/ansible-playbook', args, {
      cwd: playDir,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d) => (stdout += d));
    c.stderr.on('data', (d) => (stderr += d));
    c.on('close', (code) => {
      const recap = new Map<string, Record<string, number>>();
      for (const m of stdout.matchAll(/^(host\d+)\s+:\s+(.*)$/gm)) {
        recap.set(
          m[1]!,
          Object.fromEntries([...m[2]!.matchAll(/(\w+)=(\d+)/g)].map((x) => [x[1]!, Number(x[2])])),
        );
      }
      const seconds = new Map<string, number>();
      for (const m of stdout.matchAll(
        /^ok: \[(host\d+)\] => \{\n\s+"msg": "vfioctl_policy took ([\d.]+) s"/gm,
      ))
        seconds.set(m[1]!, Number(m[2]));
      resolve({ code, stdout, stderr, recap, seconds });
    });
  });
}

const both = [
  { match: { address: E2 }, intent: 'vfio' },
  { match: { address: VN }, intent: 'vfio' },
];

function timings(label: string, p: Play): void {
  const s = [...p.seconds.values()].sort((a, b) => a - b);
  const med = s[Math.floor(s.length / 2)];
  const line = [...p.seconds].map(([h, t]) => `${h}=${t.toFixed(2)}s`).join(' ');
  console.log(
    `# ${label}: policy task per host: min ${s[0]?.toFixed(2)} s, median ${med?.toFixed(2)} s, max ${s.at(-1)?.toFixed(2)} s (${line})`,
  );
}

function changedCounts(p: Play): number[] {
  return names.map((n) => p.recap.get(n)?.changed ?? -1);
}

test(`${N} hosts: --check --diff shows every host's planned moves and writes nothing`, {
  timeout: 600_000,
}, async () => {
  await setUp();
  const p = await playbook({ default_rules: both }, ['--check', '--diff']);
  assert.equal(p.code, 0, p.stdout + p.stderr);
  timings('check --diff', p);
  for (const n of names)
    assert.deepEqual([p.recap.get(n)?.failed, p.recap.get(n)?.changed], [0, 1], n);
  // One diff line per moving device, per host.
  assert.equal(
    [...p.stdout.matchAll(new RegExp(`${E2}: e1000e -> vfio-pci \\(bind\\)`, 'g'))].length,
    N,
    p.stdout,
  );
  assert.equal(
    [...p.stdout.matchAll(new RegExp(`${VN}: virtio-pci -> virtio_vfio_pci \\(bind\\)`, 'g'))]
      .length,
    N,
  );
  assert.match(p.stdout, /\+\s+"intent": "vfio"/, 'the file diff');
  for (const [n, h] of hosts) {
    assert.equal(h.f.tree.exists(CONF), false, `${n}: no policy written`);
    assert.equal(h.f.tree.exists('/var/lib/vfioctl/state.json'), false, `${n}: nothing applied`);
    assert.deepEqual([h.state(E2).driver, h.state(VN).driver], ['e1000e', 'virtio-pci'], n);
  }
});

test("a run writes each host's policy (root-owned 0644) and converges it; a second run reports changed=0 everywhere", {
  timeout: 600_000,
}, async () => {
  const first = await playbook({ default_rules: both });
  assert.equal(first.code, 0, first.stdout + first.stderr);
  timings('first run', first);
  console.log(`# first run: changed per host ${changedCounts(first).join(',')}`);
  assert.deepEqual(
    changedCounts(first),
    names.map(() => 1),
  );
  for (const [n, h] of hosts) {
    assert.deepEqual(JSON.parse(h.f.tree.read(CONF)!), { version: 1, rules: both }, n);
    const st = fs.statSync(h.f.tree.abs(CONF));
    assert.equal(st.mode & 0o7777, 0o644, n);
    if (process.getuid?.() === 0) assert.equal(st.uid, 0, n);
    assert.deepEqual([h.state(E2).driver, h.state(VN).driver], ['vfio-pci', 'virtio_vfio_pci'], n);
  }
  const mtimes = names.map((n) => fs.statSync(hosts.get(n)!.f.tree.abs(CONF)).mtimeMs);
  const second = await playbook({ default_rules: both });
  assert.equal(second.code, 0, second.stdout + second.stderr);
  timings('second run', second);
  console.log(`# second run: changed per host ${changedCounts(second).join(',')}`);
  assert.deepEqual(
    changedCounts(second),
    names.map(() => 0),
  );
  assert.deepEqual(
    names.map((n) => fs.statSync(hosts.get(n)!.f.tree.abs(CONF)).mtimeMs),
    mtimes,
    'no file rewritten',
  );
  const check = await playbook({ default_rules: both }, ['--check', '--diff']);
  assert.equal(check.code, 0);
  assert.deepEqual(
    changedCounts(check),
    names.map(() => 0),
    'a converged fleet previews no change',
  );
});

test('a host whose policy names its in-use NIC fails with the refusal; the others converge (a removed rule releases its device)', {
  timeout: 600_000,
}, async () => {
  const p = await playbook({
    default_rules: [both[0]],
    rules_by_host: { [BAD]: [both[0], { match: { address: E1 }, intent: 'vfio' }] },
    fleet_serial: 0,
    fleet_max_fail: 100,
  });
  timings('refusal run', p);
  assert.equal(p.code, 2, 'a host failed');
  assert.match(
    p.stdout,
    new RegExp(
      `fatal: \\[${BAD}\\]: FAILED! => .*vfioctl refused \\(exit 3\\): ${E1}: the host is using it: interface eth0 is up`,
    ),
  );
  for (const n of names) {
    const r = p.recap.get(n)!;
    if (n === BAD) assert.equal(r.failed, 1);
    else assert.deepEqual([r.failed, r.changed], [0, 1], n);
    // VN's rule was removed everywhere: released to its host driver, on the refused host too.
    assert.equal(hosts.get(n)!.state(VN).driver, 'virtio-pci', n);
  }
  assert.equal(hosts.get(BAD)!.state(E1).driver, 'e1000e');
});

test('with serial: 1 and max_fail_percentage: 0 the play stops at the refusing host', {
  timeout: 600_000,
}, async () => {
  const p = await playbook({
    default_rules: both,
    rules_by_host: { [BAD]: [both[0], { match: { address: E1 }, intent: 'vfio' }] },
    fleet_serial: 1,
    fleet_max_fail: 0,
  });
  timings('serial run', p);
  assert.notEqual(p.code, 0);
  const at = names.indexOf(BAD);
  for (const [i, n] of names.entries()) {
    const h = hosts.get(n)!;
    if (i < at) {
      assert.equal(p.recap.get(n)?.changed, 1, n);
      assert.equal(h.state(VN).driver, 'virtio_vfio_pci', `${n} ran before ${BAD}`);
    } else if (i > at) {
      assert.equal(p.recap.get(n)?.ok ?? 0, 0, `${n} never ran`);
      assert.equal(h.state(VN).driver, 'virtio-pci', `${n} untouched`);
      assert.deepEqual(JSON.parse(h.f.tree.read(CONF)!).rules, [both[0]], `${n}: policy untouched`);
    }
  }
  assert.equal(p.recap.get(BAD)?.failed, 1);
  assert.match(p.stdout, /NO MORE HOSTS LEFT/);
});

test('model servers saw no kernel write outside the lock', () => {
  assert.deepEqual(
    servers.flatMap((s) => s.violations),
    [],
  );
});
