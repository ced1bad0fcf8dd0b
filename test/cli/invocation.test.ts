// The small promises of an invocation: one device named twice is one device; a closed pipe is a
// quiet exit; a wrong --root or --kernel is bad input; --kernel OTHER on the live root only
// previews.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import { cli } from '../support/cli';
import { E2, modelHosts } from '../support/model-host';
import { Fixture } from '../support/fixture';

const host = modelHosts({ trustSelf: true });
const BUNDLE = path.resolve(__dirname, '../../../dist/vfioctl.js');

test('the same device twice (full and short address) is one device', async () => {
  const h = host();
  const r = await h.run(['bind', E2, E2.slice(5), '--json']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json().results.length, 1);
  assert.equal(h.state(E2).driver, 'vfio-pci');
});

test('output to a closed pipe exits quietly', () => {
  const f = Fixture.create().kernel('6.1.0-test');
  try {
    for (let i = 0; i < 256; i++)
      f.device({
        address: `0000:${(i >> 5).toString(16).padStart(2, '0')}:${(i & 31).toString(16).padStart(2, '0')}.0`,
        vendor: '8086',
        device: '10d3',
        driver: null,
        iommuGroup: String(i),
      });
    const r = spawnSync(
      'sh',
      ['-c', `node "$0" --root "$1" list --json | head -c 1 >/dev/null`, BUNDLE, f.dir],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0);
    assert.doesNotMatch(r.stderr, /EPIPE|Error/);
  } finally {
    f.cleanup();
  }
});

test('a nonexistent --root and an unknown --kernel are bad input (exit 2)', async () => {
  const h = host();
  const noRoot = await cli('/nonexistent/vfioctl-root', ['list']);
  assert.equal(noRoot.code, 2);
  assert.match(noRoot.stderr, /--root \/nonexistent\/vfioctl-root: no such directory/);
  const noKernel = await h.run(['--kernel', '9.9.9-nope', 'list']);
  assert.equal(noKernel.code, 2);
  assert.match(noKernel.stderr, /--kernel '9\.9\.9-nope': no module tree/);
});
