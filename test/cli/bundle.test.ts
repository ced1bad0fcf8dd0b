// The shipped single file (dist/vfioctl.js) must run every command path, not just the one the
// unit tests import from source: a dependency that esbuild cannot bundle fails only here.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { E1, ModelHost } from '../support/model-host';

const DIST = path.resolve(__dirname, '../../../dist/vfioctl.js');

test('the bundle starts and runs the configuration commands (jsonc-parser, generated validator)', () => {
  const h = new ModelHost();
  try {
    const env = { ...process.env, VFIOCTL_TRUST_UID: String(process.getuid?.()) };
    const run = (args: string[]) => spawnSync(process.execPath, [DIST, '--root', h.f.dir, ...args], { env, encoding: 'utf8' });
    const v = run(['--version']);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^\d+\.\d+\.\d+/);
    const s = run(['set', E1, 'vfio', '--noprobe']);
    assert.equal(s.status, 0, s.stderr);
    const st = run(['status', '--json']);
    assert.equal(st.status, 5, `configured, never applied: drift (exit 5)\n${st.stderr}`);
    assert.deepEqual(JSON.parse(st.stdout).devices.map((d: { address: string; drift: string }) => [d.address, d.drift]), [[E1, 'pending']]);
    h.f.tree.write('/etc/vfioctl/vfioctl.json', '{ "version": 1, "rules": [ { "match": { "id": "x" } } ] }', 0o644);
    const bad = run(['apply']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /vfioctl\.json:1:\d+: rules\[0\]\.match\.id: must match pattern/);
  } finally {
    h.cleanup();
  }
});
