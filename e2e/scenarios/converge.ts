// apply plans every configured device together: members of one IOMMU group configured with
// different intents (`vfio` and `vfio-pci`) move as a viable group instead of refusing each other.
import * as fs from 'node:fs';
import type { Scenario } from '../guest/scenario';
import { MACHINE } from '../machine';
import { expectOnHost, expectOnVfio, resultFor, withWritable, type ApplyJson } from './common';
import { withHooksDir } from './hooks';

export const convergeMixedGroup: Scenario = {
  name: 'converge-mixed-group',
  title: "apply converges q35's shared IOMMU group (00:1f.x) whose members have different intents",
  boots: ['iommu'],
  run(ctx) {
    const roles = ['lpc', 'sata', 'smbus'] as const;
    const [lpc, sata, smbus] = roles.map((r) => ctx.dev(r)) as [string, string, string];
    // apply refuses to start when it cannot record what it does (the guest's /var is read-only).
    const refused = ctx.cli(['apply']);
    ctx.eq(refused.code, 1, 'apply with a read-only /var/lib: exit 1');
    ctx.ok(
      refused.stderr.includes('cannot record what apply does') &&
        refused.stderr.includes('nothing was changed'),
      `it says why (${refused.stderr.trim()})`,
    );
    withWritable(ctx, '/var/lib', () =>
      withHooksDir(ctx, () => {
        const rules = [
          { match: { address: lpc }, intent: 'vfio' },
          { match: { address: sata }, intent: 'vfio-pci' },
          { match: { address: smbus }, intent: 'vfio' },
        ];
        fs.writeFileSync(
          '/etc/vfioctl/vfioctl.json',
          JSON.stringify({ version: 1, rules }, null, 2),
          { mode: 0o644 },
        );
        fs.chmodSync('/etc/vfioctl/vfioctl.json', 0o644);
        const applied = ctx.cliJson<ApplyJson>(['apply', '--json']).json;
        for (const a of [lpc, sata, smbus]) {
          ctx.eq(resultFor(ctx, applied, a).status, 'ok', `apply: ${a} status`);
          expectOnVfio(ctx, a, 'vfio-pci');
        }
        const again = ctx.cliJson<ApplyJson>(['apply', '--json']).json;
        for (const a of [lpc, sata, smbus])
          ctx.eq(resultFor(ctx, again, a).status, 'noop', `second apply: ${a} status`);
        // Every rule removed: apply gives back what it bound.
        fs.writeFileSync('/etc/vfioctl/vfioctl.json', JSON.stringify({ version: 1, rules: [] }), {
          mode: 0o644,
        });
        ctx.cliJson<ApplyJson>(['apply', '--json']);
        for (const role of roles) expectOnHost(ctx, ctx.dev(role), MACHINE[role].hostDriver);
      }),
    );
  },
};
