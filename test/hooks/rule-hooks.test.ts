import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { E1, E2, type ModelHost, modelHosts } from '../support/model-host';

const host = modelHosts({ trustSelf: true });

function logger(h: ModelHost, rel: string, extra = ''): void {
  h.hook(
    rel,
    `echo "${rel.split('/').pop()} $1 $2 target=$3 prev=$4" >> ${h.f.tree.abs('/hook.log')}\n${extra}`,
  );
}
const log = (h: ModelHost) => (h.f.tree.read('/hook.log') ?? '').trim().split('\n').filter(Boolean);

test("per-rule hooks run for apply (and apply --boot) after the hooks.d ones, only for their rule's devices", async () => {
  const h = host();
  logger(h, '/etc/vfioctl/hooks.d/10-all');
  logger(h, '/etc/vfioctl/rule-hooks/cx7');
  h.config([
    { match: { address: E2 }, intent: 'vfio', hooks: ['/etc/vfioctl/rule-hooks/cx7'] },
    { match: { address: E1 }, intent: 'vfio' },
  ]);
  const show = await h.run(['show', E2, '--json']);
  assert.deepEqual(
    show.json().hooks.map((x: any) => [x.path, x.source]),
    [
      ['/etc/vfioctl/hooks.d/10-all', 'hooks.d'],
      ['/etc/vfioctl/rule-hooks/cx7', 'rule'],
    ],
  );
  assert.deepEqual(
    (await h.run(['show', E1, '--json'])).json().hooks.map((x: any) => x.path),
    ['/etc/vfioctl/hooks.d/10-all'],
  );
  const dry = await h.run(['apply', '--dry-run']);
  assert.match(dry.stdout, /run pre-bind hook \/etc\/vfioctl\/rule-hooks\/cx7/);
  const r = await h.run(['apply', '--boot']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  const e2 = log(h).filter((l) => l.includes(E2));
  assert.deepEqual(e2, [
    `10-all pre-bind ${E2} target=vfio-pci prev=e1000e`,
    `cx7 pre-bind ${E2} target=vfio-pci prev=e1000e`,
    `10-all pre-probe ${E2} target=vfio-pci prev=e1000e`,
    `cx7 pre-probe ${E2} target=vfio-pci prev=e1000e`,
    `10-all post-bind ${E2} target=vfio-pci prev=e1000e`,
    `cx7 post-bind ${E2} target=vfio-pci prev=e1000e`,
  ]);
  assert.ok(
    !log(h).some((l) => l.startsWith('cx7') && l.includes(E1)),
    'a rule hook runs only for its own devices',
  );
  assert.ok(log(h).some((l) => l.startsWith('10-all pre-bind') && l.includes(E1)));
});

test('a failing per-rule post-bind hook rolls that device back and lets its hooks undo (post-unbind); an untrusted rule hook refuses it', async () => {
  const h = host();
  logger(
    h,
    '/etc/vfioctl/rule-hooks/fails',
    'if [ "$1" = post-bind ]; then echo "firmware said no" >&2; exit 1; fi',
  );
  h.config([{ match: { address: E2 }, intent: 'vfio', hooks: ['/etc/vfioctl/rule-hooks/fails'] }]);
  const r = await h.run(['apply']);
  assert.equal(r.code, 1, r.stdout);
  assert.match(
    r.stdout,
    /post-bind hook \/etc\/vfioctl\/rule-hooks\/fails exited 1; its output:\nfirmware said no/,
  );
  assert.deepEqual(h.state(E2), { driver: 'e1000e', override: null, vfioDev: false });
  logger(h, '/etc/vfioctl/rule-hooks/loose');
  fs.chmodSync(h.f.tree.abs('/etc/vfioctl/rule-hooks/loose'), 0o775);
  h.config([{ match: { address: E2 }, intent: 'vfio', hooks: ['/etc/vfioctl/rule-hooks/loose'] }]);
  const u = await h.run(['apply']);
  assert.equal(u.code, 3, u.stdout);
  assert.match(
    u.stdout,
    /hook-trust: hook \/etc\/vfioctl\/rule-hooks\/loose will not be run: .*writable by its group/,
  );
  // After the rollback the hook gets post-unbind (target: the driver the device went back to) to
  // undo its work.
  assert.deepEqual(
    log(h).map((l) => l.split(' ')[1]),
    ['pre-bind', 'pre-probe', 'post-bind', 'post-unbind'],
    'the untrusted hook never ran',
  );
  assert.equal(log(h)[3], `fails post-unbind ${E2} target=e1000e prev=vfio-pci`);
  assert.equal(h.state(E2).driver, 'e1000e');
});
