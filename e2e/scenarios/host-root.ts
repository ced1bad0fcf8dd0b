// --host-root against the real kernel (issue 14): vfioctl run as a pod runs it, in a mount and
// network namespace of its own (unshare --mount --net), with the guest's own / bind-mounted
// (rbind) at a second path as the "host root". The reader's namespaces differ from the host's on
// purpose: its new network namespace has no routes and none of the host's addresses, the results
// share (9p, 00:11.0) is unmounted in it, and an empty tmpfs hides /lib/modules from it (a
// container has no module tree of the host's). vfioctl --host-root must still find the NIC's
// route and the share's mount (both in use), load vfio_pci through `chroot DIR modprobe`, and run
// a hook chrooted into DIR; plain --root on the same tree sees the reader's view (the control).
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import {
  OLDEST_AND_NEWEST,
  type CliResult,
  type Scenario,
  type ScenarioContext,
} from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { MACHINE } from '../machine';
import { expectOnHost, expectOnVfio, resultFor, unloadModules, type ApplyJson } from './common';
import { withHooksDir } from './hooks';

/**
 * The host's / as the pod sees it; an empty directory on the guest's /run, mounted on only in the
 * reader's namespace.
 */
const DIR = '/run/e2e-hostroot';
const HOOK = '/etc/vfioctl/hooks.d/50-hostroot';
const HOOK_LOG = '/run/e2e-hostroot-hook.log';

function sleepMs(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function must(ctx: ScenarioContext, argv: readonly string[], expect = 0): string {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 60_000 });
  ctx.note(
    `$ ${argv.join(' ')} -> exit ${r.status}${`${r.stderr ?? ''}`.trim() ? `: ${r.stderr.trim().split('\n').slice(0, 4).join(' | ')}` : ''}`,
  );
  if (expect === 0 ? r.status !== 0 : r.status === 0)
    ctx.fail(
      `${argv.join(' ')}: exit ${r.status}, expected ${expect === 0 ? '0' : 'a failure'}: ${`${r.stderr ?? ''}${r.stdout ?? ''}`.trim().slice(0, 800)}`,
    );
  return r.stdout ?? '';
}

/**
 * The reader: a process (sleep) holding a new mount and network namespace, entered with nsenter.
 */
class Reader {
  readonly pid: number;

  constructor(private readonly ctx: ScenarioContext) {
    // unshare(1) without --fork unshares, then execs sleep: the pid is the namespaces' holder.
    const child = spawn(
      'unshare',
      ['--mount', '--net', '--propagation', 'private', '--', 'sleep', '600'],
      { stdio: 'ignore' },
    );
    if (child.pid === undefined) ctx.fail('cannot start unshare');
    this.pid = child.pid;
    const own = fs.readlinkSync('/proc/self/ns/net');
    for (let i = 0; i < 200; i++) {
      const comm = fs.readFileSync(`/proc/${this.pid}/comm`, 'utf8').trim();
      if (comm === 'sleep' && fs.readlinkSync(`/proc/${this.pid}/ns/net`) !== own) break;
      if (i === 199) ctx.fail(`unshare (pid ${this.pid}) did not enter its namespaces`);
      sleepMs(25);
    }
    ctx.note(
      `reader: pid ${this.pid}, mnt ${fs.readlinkSync(`/proc/${this.pid}/ns/mnt`)}, net ${fs.readlinkSync(`/proc/${this.pid}/ns/net`)}`,
    );
  }

  /**
   * argv inside the reader's namespaces, with its root and working directory (the guest runner's
   * chroot).
   */
  argv(cmd: readonly string[]): string[] {
    return ['nsenter', `--target=${this.pid}`, '--mount', '--net', '--root', '--wd', '--', ...cmd];
  }

  run(cmd: readonly string[], expect = 0): string {
    return must(this.ctx, this.argv(cmd), expect);
  }

  /** The tested vfioctl, in the reader's namespaces. */
  cli(args: readonly string[]): CliResult {
    const t = Date.now();
    const argv = this.argv([process.execPath, this.ctx.plan.vfioctl, ...args]);
    const env = {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      HOME: '/run/e2e-home',
      TMPDIR: '/run/e2e-home',
    };
    const r = spawnSync(argv[0]!, argv.slice(1), {
      encoding: 'utf8',
      env,
      timeout: 60_000,
      killSignal: 'SIGKILL',
    });
    const res: CliResult = {
      args,
      code: r.status,
      signal: r.signal,
      stdout: r.stdout ?? '',
      stderr: r.stderr ?? '',
      ms: Date.now() - t,
    };
    this.ctx.note(
      `$ (reader) vfioctl ${args.join(' ')}  -> ${r.error ? `error ${r.error.message}` : `exit ${r.status}`} (${res.ms}ms)`,
    );
    if (res.stderr.trim())
      this.ctx.note(
        res.stderr
          .trim()
          .split('\n')
          .slice(0, 12)
          .map((l) => `    stderr| ${l}`)
          .join('\n'),
      );
    return res;
  }

  cliJson(args: readonly string[], code: number): ApplyJson {
    const r = this.cli(args);
    this.ctx.expectExit(r, code);
    return JSON.parse(r.stdout) as ApplyJson;
  }

  stop(): void {
    try {
      process.kill(this.pid, 'SIGKILL');
    } catch {
      /* gone already */
    }
  }
}

/** Every refusal message of one device in a dry run's JSON. */
function refusals(ctx: ScenarioContext, json: ApplyJson, address: string): string {
  const r = resultFor(ctx, json, address);
  const text = (r.refusals ?? []).map((x) => `${x.check}: ${x.message}`).join('; ');
  ctx.note(`${address}: ${r.status}; ${text || 'no refusals'}`);
  return text;
}

export const hostRoot: Scenario = {
  name: 'host-root',
  title:
    "--host-root from a private mount and network namespace sees the host's routes and mounts, loads modules and runs hooks through chroot",
  boots: ['iommu'],
  kernels: OLDEST_AND_NEWEST,
  run(ctx) {
    const nic = ctx.dev('e1000eNic');
    const share = ctx.dev('results');
    const free = ctx.dev('e1000e');
    const ifname = sysfs.netdevsOf(nic)[0] ?? ctx.fail(`${nic} has no interface`);
    const wasUp =
      (Number.parseInt(fs.readFileSync(`/sys/class/net/${ifname}/flags`, 'utf8'), 16) & 1) !== 0;
    must(ctx, ['ip', 'link', 'set', ifname, 'up']);
    must(ctx, ['ip', 'addr', 'replace', '192.0.2.30/24', 'dev', ifname]);
    must(ctx, ['ip', '-6', 'addr', 'replace', '2001:db8::30/64', 'dev', ifname, 'nodad']);
    unloadModules(ctx, ['vfio_pci']);
    fs.rmSync(HOOK_LOG, { force: true });
    try {
      withHooksDir(ctx, () => {
        // Chrooted into DIR, the module tree the reader hides is there.
        fs.writeFileSync(
          HOOK,
          `#!/bin/sh\nif [ -e "/lib/modules/$(uname -r)/modules.dep" ]; then where=host-root; else where=reader; fi\necho "$1 $2 $where VFIOCTL_ROOT=$VFIOCTL_ROOT" >> ${HOOK_LOG}\n`,
          { mode: 0o755 },
        );
        fs.chmodSync(HOOK, 0o755);
        fs.mkdirSync(DIR, { mode: 0o755 });
        const reader = new Reader(ctx);
        try {
          reader.run(['umount', '-l', '/run/e2e']);
          reader.run(['mount', '--rbind', '/', DIR]);
          reader.run(['mount', '-t', 'tmpfs', '-o', 'mode=0755,size=1m', 'tmpfs', '/lib/modules']);
          inReader(ctx, reader, { nic, ifname, share, free });
        } finally {
          reader.stop();
          sleepMs(100);
          fs.rmdirSync(DIR);
        }
      });
    } finally {
      fs.rmSync(HOOK_LOG, { force: true });
      spawnSync('ip', ['addr', 'flush', 'dev', ifname]);
      if (!wasUp) spawnSync('ip', ['link', 'set', ifname, 'down']);
    }
  },
};

function inReader(
  ctx: ScenarioContext,
  reader: Reader,
  d: { nic: string; ifname: string; share: string; free: string },
): void {
  // The reader's view really differs from the host's (else the checks below prove nothing).
  const routes = (pid: string) =>
    fs
      .readFileSync(`/proc/${pid}/net/route`, 'utf8')
      .split('\n')
      .slice(1)
      .filter((l) => l.trim());
  ctx.ok(
    routes('1').some((l) => l.startsWith(`${d.ifname}\t`)),
    `the host (pid 1) routes through ${d.ifname}`,
  );
  ctx.eq(routes(String(reader.pid)), [], "the reader's routes");
  const shareMounted = (pid: string) =>
    fs
      .readFileSync(`/proc/${pid}/mountinfo`, 'utf8')
      .split('\n')
      .some((l) => / - 9p results /.test(l));
  ctx.ok(shareMounted('1'), 'the host has the results share (9p) mounted');
  ctx.ok(!shareMounted(String(reader.pid)), 'the reader has not');
  reader.run(['modprobe', '-n', 'vfio_pci'], 1);
  reader.run(['chroot', DIR, 'modprobe', '-n', 'vfio_pci']);

  // The NIC: up in both views (sysfs is the host's), but its route and address are the host's only.
  const hostNic = refusals(
    ctx,
    reader.cliJson(['--host-root', DIR, 'bind', d.nic, '--dry-run', '--json'], 3),
    d.nic,
  );
  ctx.ok(
    hostNic.includes(`interface ${d.ifname} carries routes (192.0.2.0`),
    "--host-root: the refusal names the host's route",
  );
  ctx.ok(
    hostNic.includes('has address 2001:db8::30'),
    "--host-root: the refusal names the host's IPv6 address",
  );
  const readerNic = refusals(
    ctx,
    reader.cliJson(['--root', DIR, 'bind', d.nic, '--dry-run', '--json'], 3),
    d.nic,
  );
  ctx.ok(
    !readerNic.includes('carries routes') && !readerNic.includes('has address'),
    "control: --root reads the reader's network namespace (no route, no address)",
  );

  // The results share: mounted by the host, not by the reader.
  const hostShare = refusals(
    ctx,
    reader.cliJson(['--host-root', DIR, 'bind', d.share, '--dry-run', '--json'], 3),
    d.share,
  );
  ctx.ok(
    hostShare.includes("9p filesystem 'results' is mounted on"),
    "--host-root: the host's mount of the results share refuses it",
  );
  const readerShare = reader.cli(['--root', DIR, 'bind', d.share, '--dry-run', '--json']);
  ctx.ok(
    readerShare.code === 0 || readerShare.code === 3,
    `control: --root dry run exits 0 or 3 (${readerShare.code})`,
  );
  ctx.ok(
    !refusals(ctx, JSON.parse(readerShare.stdout) as ApplyJson, d.share).includes(
      "9p filesystem 'results'",
    ),
    "control: --root reads the reader's mount namespace (no results share)",
  );

  // modprobe through chroot, and the hook chrooted: a real bind and unbind.
  const t = Date.now();
  const bound = reader.cliJson(['--host-root', DIR, 'bind', d.free, '--json'], 0);
  ctx.figure(
    `--host-root bind ${d.free} (chroot modprobe vfio_pci, one hook): ${Date.now() - t} ms`,
  );
  ctx.eq(resultFor(ctx, bound, d.free).status, 'ok', `--host-root bind ${d.free} status`);
  ctx.ok(
    sysfs.moduleLoaded('vfio_pci'),
    'vfio_pci was loaded (through chroot DIR modprobe: the reader has no module tree)',
  );
  expectOnVfio(ctx, d.free, 'vfio-pci');
  const back = reader.cliJson(['--host-root', DIR, 'unbind', d.free, '--json'], 0);
  ctx.eq(resultFor(ctx, back, d.free).status, 'ok', `--host-root unbind ${d.free} status`);
  expectOnHost(ctx, d.free, MACHINE.e1000e.hostDriver);
  const log = fs.readFileSync(HOOK_LOG, 'utf8').trim().split('\n');
  ctx.note(`hook log:\n    ${log.join('\n    ')}`);
  for (const ev of ['pre-bind', 'pre-probe', 'post-bind', 'pre-unbind', 'post-unbind'])
    ctx.ok(
      log.includes(`${ev} ${d.free} host-root VFIOCTL_ROOT=/`),
      `the ${ev} hook ran chrooted into ${DIR} with VFIOCTL_ROOT=/`,
    );

  const both = reader.cli(['--root', DIR, '--host-root', DIR, 'list']);
  ctx.expectExit(both, 2);
}
