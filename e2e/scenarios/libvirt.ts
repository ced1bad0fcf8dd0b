// The libvirt qemu hook against the real kernel (issue 18): `vfioctl install --libvirt` writes
// /etc/libvirt/hooks/qemu.d/50-vfioctl, which is then run exactly as libvirt runs a qemu.d hook:
// the argument array GUEST OPERATION SUB-OPERATION EXTRA, the domain XML on standard input, and
// libvirt's environment (LC_ALL=C, a plain PATH). No libvirtd runs here: what libvirt does around
// the hook is its own; what the hook does to the kernel is checked here.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import { OLDEST_AND_NEWEST, type Scenario, type ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { MACHINE } from '../machine';
import { expectOnHost, expectOnVfio, expectUnchanged } from './common';
import { withHooksDir } from './hooks';
import { ip } from './safety';

const HOOK = '/etc/libvirt/hooks/qemu.d/50-vfioctl';
const RECORDS = '/run/vfioctl/libvirt';
const UUID = 'c7a5fdbd-cdaf-9455-926a-d65c16db1809';
const EVENTS = '/run/e2e-libvirt-events';

function hostdev(address: string): string {
  const [d, b, rest] = address.split(':') as [string, string, string];
  const [s, f] = rest.split('.') as [string, string];
  return `    <hostdev mode='subsystem' type='pci' managed='no'>
      <source>
        <address domain='0x${d}' bus='0x${b}' slot='0x${s}' function='0x${f}'/>
      </source>
    </hostdev>`;
}

/** A domain as `virsh dumpxml` would hand it to the hook (trimmed to what matters here). */
function domainXml(name: string, devices: readonly string[]): string {
  return `<domain type='qemu' id='1'>
  <name>${name}</name>
  <uuid>${UUID}</uuid>
  <memory unit='KiB'>131072</memory>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
${devices.map(hostdev).join('\n')}
  </devices>
</domain>
`;
}

interface HookRun {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * As libvirt's virHookCall runs a qemu.d script: argv, the XML on stdin, LC_ALL=C and a plain PATH.
 */
function runHook(
  ctx: ScenarioContext,
  guest: string,
  op: string,
  sub: string,
  xml: string,
): HookRun {
  const t = Date.now();
  const r = spawnSync(HOOK, [guest, op, sub, '-'], {
    input: xml,
    encoding: 'utf8',
    env: { LC_ALL: 'C', PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' },
    timeout: 120_000,
    killSignal: 'SIGKILL',
  });
  ctx.note(
    `$ ${HOOK} ${guest} ${op} ${sub} - < domain.xml  -> exit ${r.status} (${Date.now() - t}ms)`,
  );
  if (r.stderr?.trim())
    ctx.note(
      r.stderr
        .trim()
        .split('\n')
        .map((l) => `    stderr| ${l}`)
        .join('\n'),
    );
  ctx.eq(
    r.stdout,
    '',
    `standard output of '${op} ${sub}' (libvirt takes it as domain XML for migrate/restore)`,
  );
  return { code: r.status, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

export const libvirtHook: Scenario = {
  name: 'libvirt-hook',
  title:
    "the qemu.d hook, run as libvirt runs it, binds the guest's e1000e at prepare begin and returns it at release end; a domain naming an in-use NIC aborts and changes nothing",
  boots: ['iommu'],
  kernels: OLDEST_AND_NEWEST,
  run(ctx) {
    const nic = ctx.dev('e1000e');
    const busy = ctx.dev('e1000eNic');
    const ifname = sysfs.netdevsOf(busy)[0] ?? ctx.fail(`${busy} has no interface`);
    withHooksDir(ctx, () => {
      const inst = ctx.cli(['install', '--libvirt', '--exec', ctx.plan.vfioctl]);
      ctx.expectExit(inst, 0);
      ctx.ok(inst.stdout.includes(`wrote: ${HOOK}`), `install --libvirt wrote ${HOOK}`);
      const st = fs.statSync(HOOK);
      ctx.ok(
        st.uid === 0 && (st.mode & 0o777) === 0o755,
        `${HOOK} is root's, mode ${(st.mode & 0o777).toString(8)}`,
      );
      // A device hook, as a single-GPU user's display-manager step would be: it must run as for any
      // bind.
      fs.writeFileSync('/etc/vfioctl/hooks.d/50-events', `#!/bin/sh\necho "$1 $2" >> ${EVENTS}\n`, {
        mode: 0o755,
      });
      fs.chmodSync('/etc/vfioctl/hooks.d/50-events', 0o755);
      fs.rmSync(EVENTS, { force: true });
      try {
        const xml = domainXml('e2e-guest', [nic]);
        for (const [op, sub] of [
          ['migrate', 'begin'],
          ['restore', 'begin'],
        ] as const)
          ctx.eq(runHook(ctx, 'e2e-guest', op, sub, xml).code, 0, `'${op} ${sub}' exit`);
        expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);

        const t0 = Date.now();
        const prep = runHook(ctx, 'e2e-guest', 'prepare', 'begin', xml);
        ctx.figure(`libvirt hook 'prepare begin' binding one e1000e: ${Date.now() - t0} ms`);
        ctx.eq(prep.code, 0, "'prepare begin' exit");
        expectOnVfio(ctx, nic, 'vfio-pci');
        ctx.eq(
          JSON.parse(fs.readFileSync(`${RECORDS}/${UUID}.json`, 'utf8')).devices,
          [nic],
          'what the hook recorded for the domain',
        );
        for (const [op, sub] of [
          ['start', 'begin'],
          ['started', 'begin'],
          ['stopped', 'end'],
        ] as const)
          ctx.eq(runHook(ctx, 'e2e-guest', op, sub, xml).code, 0, `'${op} ${sub}' exit`);
        expectOnVfio(ctx, nic, 'vfio-pci');

        const rel = runHook(ctx, 'e2e-guest', 'release', 'end', xml);
        ctx.eq(rel.code, 0, "'release end' exit");
        expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);
        ctx.ok(
          !fs.existsSync(`${RECORDS}/${UUID}.json`),
          'the domain record is gone after release',
        );
        ctx.eq(
          fs.readFileSync(EVENTS, 'utf8').trim().split('\n'),
          ['pre-bind', 'pre-probe', 'post-bind', 'pre-unbind', 'pre-probe', 'post-unbind'].map(
            (e) => `${e} ${nic}`,
          ),
          'device hooks run by prepare and release',
        );

        // A domain naming a NIC the host uses: the start aborts with the refusal, nothing moves.
        ip(ctx, ['link', 'set', ifname, 'up']);
        ip(ctx, ['addr', 'add', '192.0.2.20/24', 'dev', ifname]);
        try {
          const before = sysfs.snapshot([nic, busy]);
          const bad = runHook(
            ctx,
            'e2e-busy',
            'prepare',
            'begin',
            domainXml('e2e-busy', [nic, busy]),
          );
          ctx.eq(bad.code, 3, "'prepare begin' exit for a domain naming an in-use NIC");
          ctx.ok(
            new RegExp(`${busy}: in-use: the host is using it: .*${ifname}`).test(bad.stderr),
            `the refusal names ${busy} and ${ifname}`,
          );
          ctx.ok(
            !bad.stderr.includes(`${nic}: `),
            `no problem line for ${nic}, which was only refused alongside`,
          );
          expectUnchanged(ctx, before, 'after the aborted prepare');
          ctx.ok(
            !fs.existsSync(`${RECORDS}/${UUID}.json`),
            'nothing recorded for the aborted domain',
          );
          const malformed = runHook(
            ctx,
            'e2e-busy',
            'prepare',
            'begin',
            domainXml('e2e-busy', [nic]).replace('</devices>', '</device>'),
          );
          ctx.eq(malformed.code, 2, "'prepare begin' exit for malformed XML");
          ctx.ok(
            /domain XML:\d+:\d+: /.test(malformed.stderr),
            `the parser's position is given: ${malformed.stderr.trim()}`,
          );
          expectUnchanged(ctx, before, 'after the malformed domain XML');
        } finally {
          spawnSync('ip', ['addr', 'flush', 'dev', ifname]);
          spawnSync('ip', ['link', 'set', ifname, 'down']);
        }
      } finally {
        fs.rmSync(EVENTS, { force: true });
      }
    });
  },
};
