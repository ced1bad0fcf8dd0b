// The layering of src/ (README, "Layout"): every folder imports only the folders below it and no
// two folders import each other, as scripts/layers.mjs checks and prints.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

test('src/ folders import only the layers below them, with no cycle (node scripts/layers.mjs)', () => {
  const r = spawnSync(process.execPath, [path.resolve(__dirname, '../../scripts/layers.mjs')], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^host {5}-> util$/m, 'host is the ground floor: it imports only util');
});
