// The modules.alias index is written only by a read made in a write session (under the lock): a dry
// run reads for writing too (records, hooks, VFIO users) but must leave the host as it was.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { E1, isRoot, type ModelHost, modelHosts } from '../support/model-host';

const host = modelHosts({ trustSelf: true });
const INDEX = '/run/vfioctl/alias-index.6.12.0-test.json';
// The index is used only when root wrote it (src/modules/alias-index.ts).
const rootOnly = isRoot ? {} : { skip: 'writing the index needs root' };

/** modules.alias as depmod left it an hour ago: settled, so it may be indexed. */
function settled(h: ModelHost): ModelHost {
  const hourAgo = new Date(Date.now() - 3600_000);
  fs.utimesSync(h.f.tree.abs('/lib/modules/6.12.0-test/modules.alias'), hourAgo, hourAgo);
  fs.mkdirSync(h.f.tree.abs('/run/vfioctl'), { recursive: true, mode: 0o700 });
  return h;
}

test(
  'dry runs (bind, unbind, set, apply) write no index; a bind in its session does',
  rootOnly,
  async () => {
    const h = settled(host());
    h.config([{ match: { address: E1 }, intent: 'vfio' }]);
    for (const args of [
      ['bind', E1, '--dry-run'],
      ['unbind', E1, '--dry-run'],
      ['set', E1, 'vfio', '--dry-run'],
      ['apply', '--dry-run'],
    ]) {
      assert.equal((await h.run(args)).code, 0, args.join(' '));
      assert.ok(!h.f.tree.exists(INDEX), `${args.join(' ')} wrote the index`);
    }
    assert.equal(h.k.writes.length, 0);
    const r = await h.run(['bind', E1]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.ok(h.f.tree.exists(INDEX), 'the bind wrote the index');
  },
);

test('apply (converge) refreshes the index in its session', rootOnly, async () => {
  const h = settled(host());
  h.config([{ match: { address: E1 }, intent: 'vfio' }]);
  const r = await h.run(['apply']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.ok(h.f.tree.exists(INDEX));
});
