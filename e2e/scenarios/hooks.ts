// Hooks against the real kernel (issue 6): executables in /etc/vfioctl/hooks.d/, installed the way
// an admin would (root-owned, mode 0755, in root-owned directories), that record their argv and
// standard input so the scenario can check the contract, and change real kernel state.
//
// The guest's / is the host's, read-only: /etc gets a tmpfs overlay for the length of a scenario
// (the host's /etc is never written), and the hooks log to /run (the guest's own tmpfs).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import type { Scenario, ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { MACHINE } from '../machine';
import { expectOnHost, expectOnVfio, resultFor, type ApplyJson } from './common';

const HOOKS_DIR = '/etc/vfioctl/hooks.d';
const ETC_OVERLAY = '/run/e2e-etc';
/** Where the hooks write what they saw (one JSON line per call) and their own state. */
const HOOK_LOG_DIR = '/run/e2e-hooks';
const CALLS = `${HOOK_LOG_DIR}/calls.jsonl`;
const RECORDS = '/run/vfioctl/bound';
const JOURNAL = '/run/vfioctl/journal';

/** What one hook call recorded. */
interface HookCall {
  readonly argc: number;
  readonly argv: readonly string[];
  /** The device's driver link when the hook ran. */
  readonly driver: string;
  readonly stdin: {
    readonly event: string;
    readonly address: string;
    readonly targetDriver: string | null;
    readonly previousDriver: string | null;
    readonly device: {
      readonly address?: string;
      readonly driver?: string | null;
      readonly sriov?: { readonly numVfs?: number } | null;
    } | null;
    readonly steps: readonly string[];
  };
}

/**
 * The first lines of every test hook: record argc, argv, the device's driver right now, and the
 * JSON on stdin (vfioctl writes it as one line; it is embedded as is) to calls.jsonl.
 */
const RECORD_CALL = `event=$1 addr=$2 target=$3 previous=$4
dev=/sys/bus/pci/devices/$addr
drv=$(readlink "$dev/driver"); drv=\${drv##*/}
printf '{"argc":%d,"argv":["%s","%s","%s","%s"],"driver":"%s","stdin":%s}\\n' $# "$1" "$2" "$3" "$4" "$drv" "$(cat)" >> ${CALLS}`;

function sh(ctx: ScenarioContext, argv: readonly string[]): void {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  ctx.note(
    `$ ${argv.join(' ')} -> exit ${r.status}${`${r.stderr ?? ''}`.trim() ? `: ${r.stderr.trim()}` : ''}`,
  );
  if (r.status !== 0)
    ctx.fail(
      `${argv.join(' ')} failed (exit ${r.status}): ${`${r.stderr ?? ''}${r.stdout ?? ''}`.trim()}`,
    );
}

function mountedAt(dir: string): boolean {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === dir);
}

/**
 * Runs `body` with a writable /etc (a tmpfs overlay over the read-only host /etc) holding an empty
 * root-owned /etc/vfioctl/hooks.d; afterwards the overlay, the hooks and their log are gone.
 */
export function withHooksDir(ctx: ScenarioContext, body: () => void): void {
  if (mountedAt('/etc'))
    ctx.fail('/etc is already a mount point: an earlier scenario did not clean up');
  fs.rmSync(ETC_OVERLAY, { recursive: true, force: true });
  for (const d of [ETC_OVERLAY, `${ETC_OVERLAY}/upper`, `${ETC_OVERLAY}/work`])
    fs.mkdirSync(d, { mode: 0o755 });
  // The overlay's root takes the upper directory's owner and mode: root, 0755, like the host's.
  fs.chmodSync(`${ETC_OVERLAY}/upper`, 0o755);
  sh(ctx, [
    'mount',
    '-t',
    'overlay',
    'overlay',
    '-o',
    `lowerdir=/etc,upperdir=${ETC_OVERLAY}/upper,workdir=${ETC_OVERLAY}/work`,
    '/etc',
  ]);
  try {
    fs.mkdirSync(HOOKS_DIR, { recursive: true, mode: 0o755 });
    fs.chmodSync('/etc/vfioctl', 0o755);
    fs.chmodSync(HOOKS_DIR, 0o755);
    fs.rmSync(HOOK_LOG_DIR, { recursive: true, force: true });
    fs.mkdirSync(HOOK_LOG_DIR, { mode: 0o755 });
    body();
  } finally {
    fs.rmSync(HOOKS_DIR, { recursive: true, force: true });
    const r = spawnSync('umount', ['/etc'], { encoding: 'utf8' });
    ctx.note(
      `clean-up: umount /etc -> exit ${r.status}${r.stderr.trim() ? `: ${r.stderr.trim()}` : ''}`,
    );
    fs.rmSync(ETC_OVERLAY, { recursive: true, force: true });
    fs.rmSync(HOOK_LOG_DIR, { recursive: true, force: true });
  }
  ctx.ok(
    !mountedAt('/etc') && !fs.existsSync(HOOKS_DIR),
    `clean-up: no overlay on /etc, no ${HOOKS_DIR} left`,
  );
}

/** Installs a hook as an admin would: root-owned, mode 0755 (not group/other-writable). */
function installHook(ctx: ScenarioContext, name: string, script: string): string {
  const file = `${HOOKS_DIR}/${name}`;
  fs.writeFileSync(file, script, { mode: 0o755 });
  fs.chmodSync(file, 0o755);
  const st = fs.statSync(file);
  ctx.ok(
    st.uid === 0 && (st.mode & 0o7777) === 0o755,
    `installed ${file} (uid ${st.uid}, mode ${(st.mode & 0o7777).toString(8)})`,
  );
  return file;
}

function removeHook(ctx: ScenarioContext, file: string): void {
  fs.rmSync(file, { force: true });
  ctx.note(`removed ${file}`);
}

function hookCalls(ctx: ScenarioContext): HookCall[] {
  let text: string;
  try {
    text = fs.readFileSync(CALLS, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => {
      try {
        return JSON.parse(l) as HookCall;
      } catch {
        return ctx.fail(
          `a hook wrote a line that is not JSON (its stdin was not one JSON document?): ${l.slice(0, 500)}`,
        );
      }
    });
}

function clearCalls(): void {
  fs.rmSync(CALLS, { force: true });
}

/**
 * The calls the scenario expects: [event, driver link at the time] per call, and the argv of each.
 */
function expectCalls(
  ctx: ScenarioContext,
  calls: readonly HookCall[],
  address: string,
  target: string,
  previous: string,
  events: readonly [string, string][],
  what: string,
): void {
  ctx.eq(
    calls.map((c) => [c.argv[0], c.driver]),
    events,
    `${what}: hook calls [event, ${address}'s driver at that moment]`,
  );
  for (const c of calls) {
    ctx.eq(
      { argc: c.argc, argv: c.argv },
      { argc: 4, argv: [c.argv[0], address, target, previous] },
      `${what}: ${c.argv[0]} hook argv (event, address, target driver, previous driver)`,
    );
    const s = c.stdin;
    ctx.eq(
      {
        event: s.event,
        address: s.address,
        targetDriver: s.targetDriver,
        previousDriver: s.previousDriver,
        device: s.device?.address,
      },
      {
        event: c.argv[0],
        address,
        targetDriver: target,
        previousDriver: previous,
        device: address,
      },
      `${what}: ${c.argv[0]} hook stdin JSON fields`,
    );
    ctx.ok(
      Array.isArray(s.steps) && s.steps.some((d) => d.includes('drivers_probe')),
      `${what}: ${c.argv[0]} hook stdin lists the planned steps (${s.steps?.length} steps)`,
    );
  }
}

function recordExists(address: string): boolean {
  return fs.existsSync(`${RECORDS}/${address}.json`);
}

function journalEntries(): string[] {
  try {
    return fs.readdirSync(JOURNAL);
  } catch {
    return [];
  }
}

/** The kernel log so far (the runner clears it before each scenario; not cleared here). */
function kmsg(): string {
  return spawnSync('dmesg', [], { encoding: 'utf8' }).stdout ?? '';
}

/**
 * An admin's hook for an SR-IOV PF that is sometimes handed whole to a VM: vfio-pci refuses a PF
 * with VFs enabled (-EBUSY, "Cannot bind to PF with SR-IOV enabled"), so at pre-bind it removes
 * the VFs, remembering how many there were, and at post-unbind (back on the host driver) it
 * creates them again. Every other device: exit 2, not my device.
 */
function sriovPfHook(pf: string): string {
  return `#!/bin/sh
# vfioctl hook: hand the SR-IOV PF ${pf} to VFIO without its VFs, give them back on release.
${RECORD_CALL}
[ "$addr" = ${pf} ] && [ -e "$dev/sriov_numvfs" ] || exit 2
state=${HOOK_LOG_DIR}/numvfs-$addr
case $event in
pre-bind)
  n=$(cat "$dev/sriov_numvfs") && echo "$n" > "$state" || exit 1
  if [ "$n" != 0 ]; then
    echo "removing the $n VFs of $addr before it moves to $target"
    echo 0 > "$dev/sriov_numvfs" || { echo "cannot remove the VFs of $addr" >&2; exit 1; }
  fi ;;
post-unbind)
  [ -s "$state" ] || exit 0
  n=$(cat "$state"); rm -f "$state"
  if [ "$n" != 0 ]; then
    echo "re-creating $n VFs on $addr (now on $drv)"
    echo "$n" > "$dev/sriov_numvfs" || { echo "cannot re-create $n VFs on $addr" >&2; exit 1; }
  fi ;;
esac
exit 0
`;
}

export const hookPreBindSriovPf: Scenario = {
  name: 'hook-pre-bind-sriov-pf',
  title:
    'a pre-bind hook removes the VFs vfio-pci would refuse an SR-IOV PF for (-EBUSY); without it the bind fails',
  boots: ['iommu'],
  run(ctx) {
    const pf = ctx.dev('nvme');
    const host = MACHINE.nvme.hostDriver;
    const attr = (n: string): string => `${sysfs.PCI_DEVICES}/${pf}/${n}`;
    ctx.eq(sysfs.driverOf(pf), host, `${pf} driver`);
    const numVfs = 2;
    withHooksDir(ctx, () => {
      try {
        // VFs with no host driver (QEMU's stay offline until NVMe virtualization management is
        // done).
        ctx.eq(
          sysfs.write(attr('sriov_drivers_autoprobe'), '0'),
          null,
          'write 0 > sriov_drivers_autoprobe',
        );
        ctx.eq(
          sysfs.write(attr('sriov_numvfs'), String(numVfs)),
          null,
          `write ${numVfs} > sriov_numvfs`,
        );
        const vfs = sysfs.vfsOf(pf);
        ctx.eq(vfs.length, numVfs, `${pf} VFs (${vfs.join(' ')})`);

        // A hook cannot create the device it is asked to bind: the plan needs the device first.
        // (So a VF-creating pre-bind hook is no way to get VFs; hooks never run for an unknown
        // device.)
        const hook = installHook(ctx, '50-e2e-sriov-pf', sriovPfHook(pf));
        const lastVf = vfs[vfs.length - 1]!;
        const notYet = `${lastVf.slice(0, -1)}${Number(lastVf.slice(-1)) + 1}`;
        ctx.ok(!sysfs.exists(notYet), `${notYet} (the next VF) does not exist yet`);
        const invalid = ctx.cli(['bind', notYet, '--json']);
        ctx.expectExit(invalid, 2);
        ctx.eq(hookCalls(ctx), [], `hook calls for the bind of ${notYet}, which does not exist`);
        removeHook(ctx, hook);

        // Without the hook: refused (a PF with VFs), and with --force the kernel itself refuses it.
        const before = sysfs.snapshot([pf, ...vfs]);
        const refused = ctx.cliJson<ApplyJson>(['bind', pf, '--json'], 3).json;
        ctx.eq(
          resultFor(ctx, refused, pf).status,
          'refused',
          `bind ${pf} (PF with ${numVfs} VFs), no hook: status`,
        );
        const forced = ctx.cli(['bind', pf, '--force', '--json']);
        ctx.expectExit(forced, 1);
        const f = resultFor(ctx, JSON.parse(forced.stdout) as ApplyJson, pf);
        ctx.eq(f.status, 'failed', `bind ${pf} --force, no hook: status`);
        ctx.note(`error: ${f.error}`);
        ctx.ok(
          /Cannot bind to PF with SR-IOV enabled/.test(kmsg()),
          'the kernel log says vfio-pci refused the PF: "Cannot bind to PF with SR-IOV enabled"',
        );
        expectOnHost(ctx, pf, host);
        ctx.eq(sysfs.vfsOf(pf), vfs, `${pf} VFs after the failed bind`);
        ctx.ok(!recordExists(pf), `no ${RECORDS}/${pf}.json after the failed bind`);
        for (const vf of vfs) ctx.eq(sysfs.stateOf(vf), before.get(vf), `${vf} unchanged`);

        // With the hook: the plan shows it, a dry run does not run it, and the bind goes through.
        installHook(ctx, '50-e2e-sriov-pf', sriovPfHook(pf));
        const dry = ctx.cliJson<ApplyJson>(['bind', pf, '--force', '--dry-run', '--json']).json;
        const planned = resultFor(ctx, dry, pf).steps.map((s) => s.description ?? s.op);
        ctx.note(`planned: ${planned.join(' | ')}`);
        const hookSteps = planned
          .filter((d) => d.includes(hook))
          .map((d) => d.replace(/^run (\S+) hook .*$/, '$1'));
        ctx.eq(hookSteps, ['pre-bind', 'pre-probe', 'post-bind'], 'hook steps in the dry-run plan');
        ctx.ok(planned[0]!.startsWith('run pre-bind hook'), 'the pre-bind hook is the first step');
        ctx.eq(hookCalls(ctx), [], 'hook calls during the dry run');
        ctx.eq(sysfs.vfsOf(pf), vfs, `${pf} VFs after the dry run`);

        const bound = ctx.cliJson<ApplyJson>(['bind', pf, '--force', '--json']).json;
        const b = resultFor(ctx, bound, pf);
        ctx.eq(b.status, 'ok', `bind ${pf} --force with the hook: status`);
        ctx.note(`warnings: ${JSON.stringify(b.warnings)}`);
        expectOnVfio(ctx, pf, 'vfio-pci');
        ctx.eq(sysfs.attr(pf, 'sriov_numvfs'), '0', `${pf} sriov_numvfs while on vfio-pci`);
        ctx.eq(sysfs.vfsOf(pf), [], `${pf} VFs while on vfio-pci`);
        for (const vf of vfs) ctx.ok(!sysfs.exists(vf), `${vf} is gone`);
        ctx.ok(recordExists(pf), `${RECORDS}/${pf}.json records the bind`);
        const bindCalls = hookCalls(ctx);
        expectCalls(
          ctx,
          bindCalls,
          pf,
          'vfio-pci',
          host,
          [
            ['pre-bind', host],
            ['pre-probe', ''],
            ['post-bind', 'vfio-pci'],
          ],
          'bind',
        );
        ctx.eq(
          bindCalls[0]!.stdin.device?.sriov?.numVfs,
          numVfs,
          'pre-bind stdin: device.sriov.numVfs (the PF as it was)',
        );
        ctx.eq(bindCalls[0]!.stdin.device?.driver, host, 'pre-bind stdin: device.driver');
        clearCalls();

        // Release: back on nvme, and the post-unbind hook gives the VFs back.
        const un = ctx.cliJson<ApplyJson>(['unbind', pf, '--json']).json;
        ctx.eq(resultFor(ctx, un, pf).status, 'ok', `unbind ${pf} status`);
        expectOnHost(ctx, pf, host);
        ctx.eq(
          sysfs.attr(pf, 'sriov_numvfs'),
          String(numVfs),
          `${pf} sriov_numvfs after unbind (the hook re-created them)`,
        );
        ctx.eq(sysfs.vfsOf(pf), vfs, `${pf} VFs after unbind`);
        ctx.ok(!recordExists(pf), `no ${RECORDS}/${pf}.json after unbind`);
        expectCalls(
          ctx,
          hookCalls(ctx),
          pf,
          host,
          'vfio-pci',
          [
            ['pre-unbind', 'vfio-pci'],
            ['pre-probe', ''],
            ['post-unbind', host],
          ],
          'unbind',
        );
      } finally {
        fs.rmSync(`${HOOKS_DIR}/50-e2e-sriov-pf`, { force: true });
        sysfs.write(attr('sriov_numvfs'), '0');
        sysfs.write(attr('sriov_drivers_autoprobe'), '1');
      }
    });
    ctx.eq(sysfs.vfsOf(pf), [], `${pf} VFs after clean-up`);
  },
};

/**
 * A post-bind hook that cannot finish setting the device up (it would, say, register it with a VM
 * manager).
 */
function failingPostBindHook(nic: string): string {
  return `#!/bin/sh
# vfioctl hook: fails at post-bind for ${nic}.
${RECORD_CALL}
[ "$addr" = ${nic} ] || exit 2
[ "$event" = post-bind ] || exit 0
echo "e2e-hook: cannot hand $addr (now on $drv) to the VM manager"
echo "e2e-hook: giving up on $addr" >&2
exit 1
`;
}

export const hookPostBindFails: Scenario = {
  name: 'hook-post-bind-fails',
  title:
    'a failing post-bind hook: exit 1 with its output, the NIC back on e1000e, override cleared, no record',
  boots: ['iommu'],
  run(ctx) {
    const nic = ctx.dev('e1000e');
    const host = MACHINE.e1000e.hostDriver;
    ctx.eq(sysfs.driverOf(nic), host, `${nic} driver`);
    const group = sysfs.iommuGroupOf(nic) ?? ctx.fail(`${nic} has no IOMMU group`);
    withHooksDir(ctx, () => {
      installHook(ctx, '50-e2e-fail-post-bind', failingPostBindHook(nic));
      const checkRolledBack = (what: string): void => {
        expectOnHost(ctx, nic, host);
        ctx.ok(!fs.existsSync(`/dev/vfio/${group}`), `${what}: /dev/vfio/${group} is gone`);
        ctx.ok(!recordExists(nic), `${what}: no ${RECORDS}/${nic}.json`);
        ctx.eq(journalEntries(), [], `${what}: ${JOURNAL} entries`);
        ctx.eq(sysfs.netdevsOf(nic).length, 1, `${what}: ${nic} has its interface back`);
        // The hook ran after a real bind: at post-bind the device was on vfio-pci. After the
        // rollback it is called once more with post-unbind (target: the driver the device went
        // back to), so it can undo its pre-bind work (README, "Hooks").
        const calls = hookCalls(ctx);
        ctx.eq(
          calls.map((c) => [c.argv[0], c.driver]),
          [
            ['pre-bind', host],
            ['pre-probe', ''],
            ['post-bind', 'vfio-pci'],
            ['post-unbind', host],
          ],
          `${what}: hook calls [event, ${nic}'s driver at that moment]`,
        );
        expectCalls(
          ctx,
          calls.slice(0, 3),
          nic,
          'vfio-pci',
          host,
          [
            ['pre-bind', host],
            ['pre-probe', ''],
            ['post-bind', 'vfio-pci'],
          ],
          what,
        );
        const undo = calls[3]!;
        ctx.eq(
          { argc: undo.argc, argv: undo.argv },
          { argc: 4, argv: ['post-unbind', nic, host, 'vfio-pci'] },
          `${what}: post-unbind (after the rollback) hook argv`,
        );
        ctx.eq(
          [undo.stdin.event, undo.stdin.targetDriver, undo.stdin.previousDriver],
          ['post-unbind', host, 'vfio-pci'],
          `${what}: post-unbind (after the rollback) hook stdin fields`,
        );
        clearCalls();
      };

      // As a person would run it: the hook's output (stdout and stderr) is shown, exit 1.
      const r = ctx.cli(['bind', nic]);
      ctx.expectExit(r, 1);
      const shown = `${r.stdout}\n${r.stderr}`;
      ctx.note(
        `output:\n${shown
          .trim()
          .split('\n')
          .map((l) => `    | ${l}`)
          .join('\n')}`,
      );
      ctx.ok(
        shown.includes(`e2e-hook: cannot hand ${nic} (now on vfio-pci) to the VM manager`),
        "vfioctl shows the hook's stdout",
      );
      ctx.ok(shown.includes(`e2e-hook: giving up on ${nic}`), "vfioctl shows the hook's stderr");
      ctx.ok(
        /post-bind/.test(shown) && shown.includes('50-e2e-fail-post-bind'),
        'vfioctl names the failing hook and its event',
      );
      checkRolledBack('bind');

      // The same in JSON.
      const j = ctx.cli(['bind', nic, '--json']);
      ctx.expectExit(j, 1);
      const res = resultFor(ctx, JSON.parse(j.stdout) as ApplyJson, nic);
      ctx.eq(res.status, 'failed', `bind ${nic} --json status`);
      ctx.eq(res.driver, host, `bind ${nic} --json: driver afterwards`);
      ctx.ok(
        (res.error ?? '').includes('e2e-hook: giving up on'),
        `the JSON error carries the hook's output: ${res.error}`,
      );
      checkRolledBack('bind --json');
    });
  },
};
