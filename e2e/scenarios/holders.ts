// Who holds a device (issue 12, item 7): a process with the device's /dev/vfio/<group> open is
// named by list and show (pid, command), distinct from merely being on vfio-pci, and unbind
// refuses it (the kernel would block uninterruptibly until the fd is closed) instead of hanging.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { OLDEST_AND_NEWEST, type Scenario, type ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { MACHINE } from '../machine';
import { expectOnHost, expectOnVfio, resultFor, type ApplyJson } from './common';

interface ListedDevice {
  readonly address: string;
  readonly onVfio: boolean;
  readonly vfioUsers: readonly {
    readonly node: string;
    readonly pid: number;
    readonly comm: string;
  }[];
}

function waitFor(ctx: ScenarioContext, what: string, cond: () => boolean, ms = 10_000): void {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) ctx.fail(`timed out after ${ms} ms waiting for ${what}`);
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 50);
  }
}

function fdTargets(pid: number): string[] {
  try {
    return fs.readdirSync(`/proc/${pid}/fd`).map((fd) => {
      try {
        return fs.readlinkSync(`/proc/${pid}/fd/${fd}`);
      } catch {
        return '';
      }
    });
  } catch {
    return []; // gone (or a zombie: its fds are closed)
  }
}

/** One `list --json`: the devices named, in order. */
function listed(ctx: ScenarioContext, ...addresses: string[]): ListedDevice[] {
  const all = ctx.cliJson<ListedDevice[]>(['list', '--json']).json;
  return addresses.map(
    (a) => all.find((x) => x.address === a) ?? ctx.fail(`list --json has no ${a}`),
  );
}

export const vfioHolder: Scenario = {
  name: 'vfio-holder',
  title:
    'a process holding /dev/vfio/<group> open is named by list and show (pid, command); unbind refuses instead of blocking; closed, it is free again',
  boots: ['iommu'],
  kernels: OLDEST_AND_NEWEST,
  run(ctx) {
    const nic = ctx.dev('e1000e');
    ctx.cliJson<ApplyJson>(['bind', nic, '--json']);
    expectOnVfio(ctx, nic, 'vfio-pci');
    const group = sysfs.stateOf(nic).group;
    if (group === null) return ctx.fail(`${nic} has no IOMMU group`);
    const node = `/dev/vfio/${group}`;
    ctx.eq(listed(ctx, nic)[0]!.vfioUsers, [], `${nic} on vfio-pci, nobody holds it: vfioUsers`);

    // A VMM stand-in: busybox sh opens the group node on fd 3 and execs sleep, which inherits it.
    const holder = spawn(
      'busybox',
      ['sh', '-c', 'exec 3<>"$1" && exec sleep 600', 'vfio-holder', node],
      { stdio: 'ignore' },
    );
    const pid = holder.pid;
    if (pid === undefined) return ctx.fail('could not start busybox sh');
    try {
      // The shell opens the node before it execs sleep: wait for the exec too (its comm changes).
      const commOf = () => {
        try {
          return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
        } catch {
          return '';
        }
      };
      waitFor(
        ctx,
        `pid ${pid} to be sleep, holding ${node} open`,
        () => commOf() === 'sleep' && fdTargets(pid).includes(node),
      );
      const comm = commOf();
      ctx.note(`pid ${pid} (${comm}) holds ${node}`);
      const [d, other] = listed(ctx, nic, ctx.dev('e1000eNic')) as [ListedDevice, ListedDevice];
      ctx.eq(
        [d.onVfio, d.vfioUsers],
        [true, [{ node, pid, comm }]],
        `list --json ${nic}: [onVfio, vfioUsers]`,
      );
      ctx.eq(other.vfioUsers, [], `${other.address} (not on VFIO) is held by nobody`);
      const text = ctx.cli(['list']);
      ctx.ok(
        text.stdout
          .split('\n')
          .some((l) => l.startsWith(nic) && l.includes(`held:${pid}(${comm})`)),
        `list marks ${nic} held:${pid}(${comm})`,
      );
      const show = ctx.cli(['show', nic]);
      ctx.ok(
        show.stdout.includes(`pid ${pid} (${comm}) through ${node}`),
        `show ${nic} names pid ${pid} (${comm}) through ${node}`,
      );
      ctx.eq(
        ctx.cliJson<{ vfioUsers: unknown }>(['show', nic, '--json']).json.vfioUsers,
        [{ node, pid, comm }],
        `show --json ${nic}: vfioUsers`,
      );

      // Unbinding now would block in the kernel until the fd closes: refused, not hung.
      const refused = ctx.cliJson<ApplyJson>(['unbind', nic, '--json'], 3).json;
      const r = resultFor(ctx, refused, nic);
      ctx.eq(
        [r.status, r.refusals?.map((x) => x.check)],
        ['refused', ['vfio-user']],
        `unbind ${nic} while held: [status, checks]`,
      );
      ctx.ok(
        (r.refusals?.[0]?.message ?? '').includes(`pid ${pid} (${comm})`),
        'the refusal names the holder',
      );
      expectOnVfio(ctx, nic, 'vfio-pci');
    } finally {
      holder.kill('SIGKILL');
    }
    waitFor(ctx, `pid ${pid} to close ${node}`, () => !fdTargets(pid).includes(node));
    ctx.eq(listed(ctx, nic)[0]!.vfioUsers, [], `${nic} after the holder exited: vfioUsers`);
    ctx.cliJson<ApplyJson>(['unbind', nic, '--json']);
    expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);
  },
};
