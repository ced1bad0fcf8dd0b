// The admin's everyday jobs (issue 12): `set --group` persists q35's shared IOMMU group (00:1f.x)
// as one; the bulk selectors and an interface name select what the kernel says they should; and
// intent `host` exempts one NIC from a class rule, keeping it on (or returning it to) e1000e.
import * as fs from 'node:fs';
import type { Scenario } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { MACHINE } from '../machine';
import {
  expectOnHost,
  expectOnVfio,
  expectUnchanged,
  resultFor,
  withWritable,
  type ApplyJson,
} from './common';
import { withHooksDir } from './hooks';
import { statusJson } from './reboot';

const CONF = '/etc/vfioctl/vfioctl.json';

interface SelectedJson extends ApplyJson {
  readonly selected?: readonly { readonly by: string; readonly addresses: readonly string[] }[];
}

const rulesOf = (): unknown[] =>
  fs.existsSync(CONF) ? JSON.parse(fs.readFileSync(CONF, 'utf8')).rules : [];

export const adminSetGroup: Scenario = {
  name: 'admin-set-group',
  title:
    "set --group persists q35's shared IOMMU group as one; an interface name, --id and --class select what sysfs says",
  boots: ['iommu'],
  kernels: ['6.12'],
  run(ctx) {
    const roles = ['lpc', 'sata', 'smbus'] as const;
    const members = roles.map((r) => ctx.dev(r));
    const smbus = ctx.dev('smbus');
    const nic = ctx.dev('e1000e');
    const upNic = ctx.dev('e1000eNic');

    // Selection is read-only with --dry-run: an interface name is its PCI function, --id and
    // --class select what sysfs says they should.
    const ifname =
      fs.readdirSync(`/sys/bus/pci/devices/${nic}/net`)[0] ??
      ctx.fail(`${nic} has no network interface`);
    const before = sysfs.snapshot();
    const byName = ctx.cliJson<SelectedJson>(['bind', ifname, '--dry-run', '--json']).json;
    ctx.eq(
      byName.selected,
      [{ by: ifname, addresses: [nic] }],
      `bind ${ifname} --dry-run selects its PCI function`,
    );
    // Exit 3 when a scenario before this one left 00:05.0 up with an address (in use), else 0.
    const idRun = ctx.cli([
      'bind',
      '--id',
      `${MACHINE.e1000e.vendor}:${MACHINE.e1000e.device}`,
      '--dry-run',
      '--json',
    ]);
    ctx.ok(idRun.code === 0 || idRun.code === 3, `bind --id --dry-run: exit ${idRun.code}`);
    const byId = JSON.parse(idRun.stdout) as SelectedJson;
    ctx.eq(byId.selected?.[0]?.addresses, [nic, upNic], '--id 8086:10d3 selects both 82574L');
    ctx.eq(resultFor(ctx, byId, nic).status, 'planned', `${nic} would be bound`);
    const byClass = ctx.cliJson<SelectedJson>([
      'unbind',
      '--class',
      '0c05',
      '--dry-run',
      '--json',
    ]).json;
    ctx.eq(byClass.selected?.[0]?.addresses, [smbus], '--class 0c05 selects the SMBus controller');
    const none = ctx.cli(['bind', '--id', '1234:5678', '--dry-run']);
    ctx.expectExit(none, 2);
    ctx.ok(
      none.stderr.includes('--id 1234:5678 selects no PCI device on this host'),
      `a selector that selects nothing says so (${none.stderr.trim()})`,
    );
    expectUnchanged(ctx, before, 'after the dry runs');

    withWritable(ctx, '/var/lib', () =>
      withHooksDir(ctx, () => {
        // One member alone is refused (the group would not be viable), and nothing is saved.
        const alone = ctx.cliJson<ApplyJson>(['set', smbus, 'vfio', '--json'], 3).json;
        ctx.eq(
          resultFor(ctx, alone, smbus).refusals?.map((r) => r.check),
          ['iommu-group'],
          `set ${smbus} alone: refused`,
        );
        ctx.eq(rulesOf(), [], 'nothing saved for the refused set');
        const dry = ctx.cli(['set', smbus, 'vfio', '--group', '--dry-run']);
        ctx.expectExit(dry, 0);
        ctx.ok(
          dry.stdout.includes(
            `--group of ${smbus} selects: ${[smbus, ...members.filter((m) => m !== smbus)].join(', ')}`,
          ),
          `--dry-run lists the group (${dry.stdout.split('\n').find((l) => l.includes('selects')) ?? dry.stdout})`,
        );
        const set = ctx.cliJson<ApplyJson>(['set', smbus, 'vfio', '--group', '--json']).json;
        for (const a of members) {
          ctx.eq(resultFor(ctx, set, a).status, 'ok', `set --group: ${a} status`);
          expectOnVfio(ctx, a, 'vfio-pci');
        }
        ctx.eq(
          rulesOf(),
          [smbus, ...members.filter((m) => m !== smbus)].map((address) => ({
            match: { address },
            intent: 'vfio',
          })),
          'an address rule per member, saved after the group was applied',
        );
        const again = ctx.cliJson<ApplyJson>(['apply', '--json']).json;
        for (const a of members)
          ctx.eq(resultFor(ctx, again, a).status, 'noop', `apply after set --group: ${a}`);

        // No rules: apply gives back the group it bound.
        fs.writeFileSync(CONF, JSON.stringify({ version: 1, rules: [] }), { mode: 0o644 });
        ctx.cliJson<ApplyJson>(['apply', '--json']);
        for (const role of roles) expectOnHost(ctx, ctx.dev(role), MACHINE[role].hostDriver);
      }),
    );
  },
};

export const adminHostIntent: Scenario = {
  name: 'admin-host-intent',
  title:
    'intent host exempts 00:02.0 from a class rule: kept on e1000e, given back from vfio-pci, probed when left driverless',
  boots: ['iommu'],
  kernels: ['6.12'],
  run(ctx) {
    const nic = ctx.dev('e1000e');
    const legacy = ctx.dev('virtioNetLegacy');
    withWritable(ctx, '/var/lib', () =>
      withHooksDir(ctx, () => {
        // A class rule for Ethernet controllers, with 00:02.0 exempt (host). Only these two devices
        // are applied: the others of class 0200 carry the guest's network test (00:05.0 is up).
        fs.writeFileSync(
          CONF,
          JSON.stringify(
            {
              version: 1,
              rules: [
                { match: { class: '0200' }, intent: 'vfio-pci' },
                { match: { address: nic }, intent: 'host' },
              ],
            },
            null,
            2,
          ),
          { mode: 0o644 },
        );
        const applied = ctx.cliJson<ApplyJson>(['apply', nic, legacy, '--json']).json;
        ctx.eq(
          resultFor(ctx, applied, nic).status,
          'noop',
          `${nic} (host) is already on its host driver`,
        );
        ctx.eq(resultFor(ctx, applied, legacy).status, 'ok', `${legacy} (class 0200) bound`);
        expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);
        expectOnVfio(ctx, legacy, 'vfio-pci');
        // Moved to VFIO by hand: status says rebound, apply gives it back to e1000e.
        ctx.cliJson<ApplyJson>(['bind', nic, '--json']);
        expectOnVfio(ctx, nic, 'vfio-pci');
        // (exit 5: something drifts)
        const st = statusJson(ctx);
        const row = st.devices.find((d) => d.address === nic);
        ctx.eq(
          row ? [row.resolved, row.drift] : null,
          ['host', 'rebound'],
          `status of ${nic}: resolved, drift`,
        );
        ctx.cliJson<ApplyJson>(['apply', nic, '--json']);
        expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);
        // Left driverless (its driver unbound by hand): apply probes it for e1000e again.
        fs.writeFileSync(`/sys/bus/pci/drivers/${MACHINE.e1000e.hostDriver}/unbind`, nic);
        ctx.eq(sysfs.stateOf(nic).driver, null, `${nic} unbound by hand`);
        const probed = ctx.cliJson<ApplyJson>(['apply', nic, '--json']).json;
        ctx.eq(resultFor(ctx, probed, nic).status, 'ok', `apply of the driverless ${nic}`);
        expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);

        // No rules: apply gives back what it bound.
        fs.writeFileSync(CONF, JSON.stringify({ version: 1, rules: [] }), { mode: 0o644 });
        ctx.cliJson<ApplyJson>(['apply', '--json']);
        expectOnHost(ctx, legacy, MACHINE.virtioNetLegacy.hostDriver);
        expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);
      }),
    );
  },
};
