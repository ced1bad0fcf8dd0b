// `vfioctl agent` in the guest, as a DaemonSet pod would run it: the policy on a read-only mount
// laid out as kubelet lays out a ConfigMap volume (a world-writable directory, `..data` links),
// converged and reported Ready through `agent --probe`; the emergency stop makes it NotReady
// without touching a device; SIGTERM ends it with exit 0 and a restarted agent converges again
// without unbinding anything.
//
// It runs with `--host-root /`, as the DaemonSet runs it with `--host-root=/host`: the guest's own
// root is the host's (modprobe through `chroot / modprobe`, hooks chrooted, in-use checks from
// /proc/1).
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { Scenario, ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { MACHINE } from '../machine';
import { expectOnHost, expectOnVfio, expectUnchanged, withWritable } from './common';
import { withHooksDir } from './hooks';

const DIR = '/run/e2e-agent';
const CM = `${DIR}/configmap`;
const POLICY_MOUNT = `${DIR}/policy`;
const POLICY = `${POLICY_MOUNT}/vfioctl.json`;
const READY = `${DIR}/ready.json`;
const FEATURES = '/etc/kubernetes/node-feature-discovery/features.d/vfioctl';

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function sh(ctx: ScenarioContext, argv: string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  ctx.note(`$ ${argv.join(' ')} -> exit ${r.status}`);
  if (r.status !== 0) ctx.fail(`${argv.join(' ')}: ${r.stderr}`);
}

/**
 * The policy as kubelet's atomic writer leaves a ConfigMap volume, bind-mounted read-only as a
 * container sees it.
 */
function mountPolicy(ctx: ScenarioContext, text: string): void {
  const ts = '..2026_12_02_10_00_00.000000001';
  fs.mkdirSync(`${CM}/${ts}`, { recursive: true });
  fs.chmodSync(CM, 0o777); // an emptyDir underneath: world-writable
  fs.chmodSync(`${CM}/${ts}`, 0o755);
  fs.writeFileSync(`${CM}/${ts}/vfioctl.json`, text, { mode: 0o644 });
  fs.symlinkSync(ts, `${CM}/..data`);
  fs.symlinkSync('..data/vfioctl.json', `${CM}/vfioctl.json`);
  fs.mkdirSync(POLICY_MOUNT, { recursive: true });
  sh(ctx, ['mount', '--bind', CM, POLICY_MOUNT]);
  sh(ctx, ['mount', '-o', 'remount,bind,ro', POLICY_MOUNT]);
}

interface Running {
  readonly pid: number;
  readonly log: string;
}

/**
 * Starts the agent in the background; its JSON lines go to a file (the guest runner is
 * synchronous).
 */
function startAgent(ctx: ScenarioContext, n: number): Running {
  const log = `${DIR}/agent-${n}.log`;
  const fd = fs.openSync(log, 'w', 0o644);
  const args = [
    '--host-root',
    '/',
    'agent',
    '--policy',
    POLICY,
    '--interval',
    '2',
    '--jitter',
    '1',
    '--ready-file',
    READY,
  ];
  const child = spawn(process.execPath, [ctx.plan.vfioctl, ...args], {
    stdio: ['ignore', fd, fd],
    env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: '/run/e2e-home' },
  });
  fs.closeSync(fd);
  ctx.note(`started vfioctl ${args.join(' ')} (pid ${child.pid})`);
  return { pid: child.pid!, log };
}

/**
 * The agent's exit status, once it has exited (a zombie: this event loop is blocked, so not reaped
 * yet).
 */
function exitStatus(pid: number): number | null {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  if (fields[0] !== 'Z') return null;
  // Field 52, exit_code (Linux 3.5+), as waitpid(2) reports it; fields[0] is field 3.
  const code = Number(fields[52 - 3]);
  return (code & 0x7f) === 0 ? (code >> 8) & 0xff : 128 + (code & 0x7f);
}

function probe(ctx: ScenarioContext): { code: number | null; text: string } {
  const r = ctx.cli(['agent', '--probe', '--ready-file', READY]);
  return { code: r.code, text: (r.stdout + r.stderr).trim() };
}

function waitFor(
  ctx: ScenarioContext,
  what: string,
  timeoutMs: number,
  cond: () => boolean,
): number {
  const t = Date.now();
  while (!cond()) {
    if (Date.now() - t > timeoutMs)
      ctx.fail(`timed out after ${timeoutMs / 1000} s waiting for ${what}`);
    sleepMs(250);
  }
  ctx.note(`ok: ${what} (${Date.now() - t} ms)`);
  return Date.now() - t;
}

function logLines(
  log: string,
): { event: string; level: string; msg: string; moved?: string[]; problems?: string[] }[] {
  return fs
    .readFileSync(log, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l));
}

function stopAgent(ctx: ScenarioContext, a: Running): void {
  process.kill(a.pid, 'SIGTERM');
  let code: number | null = null;
  waitFor(
    ctx,
    `agent pid ${a.pid} to exit after SIGTERM`,
    30_000,
    () => (code = exitStatus(a.pid)) !== null,
  );
  ctx.eq(code, 0, 'the agent exits 0 on SIGTERM');
  const last = logLines(a.log).at(-1);
  ctx.eq(last?.event, 'stop', 'its last log line is the stop');
}

export const agentNode: Scenario = {
  name: 'agent-node',
  title:
    '`vfioctl agent` converges a policy from a ConfigMap-like read-only mount, reports Ready, honours the emergency stop, survives SIGTERM and a restart without unbinding',
  boots: ['iommu'],
  // What it proves is the agent's loop over the same apply every kernel runs: one kernel suffices.
  kernels: ['6.12'],
  run(ctx) {
    const nic = ctx.dev('e1000e');
    const vnet = ctx.dev('virtioNetModern');
    const variant = ctx.hasVariant('virtio_vfio_pci') ? 'virtio_vfio_pci' : 'vfio-pci';
    fs.rmSync(DIR, { recursive: true, force: true });
    fs.mkdirSync(DIR, { recursive: true, mode: 0o755 });
    const policy = `${JSON.stringify(
      {
        version: 1,
        rules: [
          { match: { address: nic }, intent: 'vfio' },
          { match: { address: vnet }, intent: 'vfio' },
        ],
      },
      null,
      2,
    )}\n`;
    mountPolicy(ctx, policy);
    const others = sysfs.snapshot(sysfs.allDevices().filter((a) => a !== nic && a !== vnet));
    let agent: Running | null = null;
    try {
      withWritable(ctx, '/var/lib', () =>
        withHooksDir(ctx, () => {
          const t0 = Date.now();
          agent = startAgent(ctx, 1);
          const toReady = waitFor(
            ctx,
            'the first agent to report Ready',
            120_000,
            () => probe(ctx).code === 0,
          );
          ctx.figure(
            `agent: policy to Ready (write, boot maps, apply of 2 devices) ${((Date.now() - t0) / 1000).toFixed(1)} s (probe polled every 0.25 s; ${toReady} ms of waiting)`,
          );
          expectOnVfio(ctx, nic, 'vfio-pci');
          expectOnVfio(ctx, vnet, variant);
          ctx.eq(
            fs.readFileSync('/etc/vfioctl/vfioctl.json', 'utf8'),
            policy,
            "the host's vfioctl.json is the policy",
          );
          const labels = fs.readFileSync(FEATURES, 'utf8');
          // vfio-capable is doctor's verdict (false here: QEMU's intremap=off fails its
          // interrupt-remapping line).
          const doctorOk = (JSON.parse(ctx.cli(['doctor', '--json']).stdout) as { ok: boolean }).ok;
          ctx.ok(
            /^vfioctl\.io\/converged=true$/m.test(labels) &&
              new RegExp(`^vfioctl\\.io/vfio-capable=${doctorOk}$`, 'm').test(labels) &&
              /^vfioctl\.io\/config=[0-9a-f]{12}$/m.test(labels),
            `feature file: ${labels.replace(/\n/g, ' | ')}`,
          );
          ctx.eq(
            fs.readdirSync(FEATURES.slice(0, FEATURES.lastIndexOf('/'))).join(','),
            'vfioctl',
            'no dot-file left in features.d',
          );
          const first = logLines(agent.log);
          ctx.ok(
            first.some((l) => l.event === 'applied' && (l.moved ?? []).length === 2),
            `the first apply moved both devices (${JSON.stringify(first.find((l) => l.event === 'applied')?.moved)})`,
          );

          // The emergency stop: NotReady at the next poll, nothing moves; removed, Ready again.
          const before = sysfs.snapshot([nic, vnet]);
          fs.writeFileSync('/etc/vfioctl/agent-stop', '');
          waitFor(
            ctx,
            'NotReady after the stop file appeared',
            30_000,
            () => probe(ctx).code === 1,
          );
          ctx.ok(/emergency-stop/.test(probe(ctx).text), 'the probe says emergency-stop');
          expectUnchanged(ctx, before, 'the devices under the emergency stop');
          fs.rmSync('/etc/vfioctl/agent-stop');
          waitFor(
            ctx,
            'Ready again after the stop file was removed',
            30_000,
            () => probe(ctx).code === 0,
          );

          // SIGTERM: exit 0, nothing unbound.
          stopAgent(ctx, agent);
          agent = null;
          expectUnchanged(ctx, before, 'the devices after SIGTERM');

          // A restart (a new pod): NotReady until its first apply, which moves nothing. A new
          // container's /run starts empty: the old readiness file goes with the old container.
          fs.rmSync(READY);
          const t1 = Date.now();
          agent = startAgent(ctx, 2);
          waitFor(ctx, 'the restarted agent to report Ready', 120_000, () => probe(ctx).code === 0);
          ctx.figure(`agent: restart to Ready ${((Date.now() - t1) / 1000).toFixed(1)} s`);
          expectUnchanged(ctx, before, 'the devices after the restart');
          const second = logLines(agent.log);
          const applied = second.find((l) => l.event === 'applied');
          ctx.eq(JSON.stringify(applied?.moved), '[]', 'the restarted agent moved nothing');
          ctx.ok(
            !second.some((l) => l.event === 'config-written'),
            'the restarted agent left the host file alone',
          );
          stopAgent(ctx, agent);
          agent = null;
          expectUnchanged(ctx, before, 'the devices after the second SIGTERM');
          // Give the devices back for the scenarios after this one.
          ctx.cli(['unbind', nic, vnet]);
          expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);
          expectOnHost(ctx, vnet, MACHINE.virtioNetModern.hostDriver);
        }),
      );
    } finally {
      if (agent !== null) process.kill((agent as Running).pid, 'SIGKILL');
      spawnSync('umount', [POLICY_MOUNT]);
      fs.rmSync(DIR, { recursive: true, force: true });
    }
    expectUnchanged(ctx, others, 'every other device');
  },
};
