// A configuration file is input from whoever wrote it: every hostile shape is exit 2 with the
// reason, never a hang, a stack overflow or a silent guess.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import { E2, modelHosts } from '../support/model-host';

const host = modelHosts({ trustSelf: true });
const FILE = '/etc/vfioctl/vfioctl.json';

async function expectRejected(
  write: (abs: string) => void,
  pattern: RegExp,
  what: string,
): Promise<void> {
  for (const args of [['status'], ['apply'], ['set', E2, 'vfio']]) {
    const h = host();
    const abs = h.f.tree.abs(FILE);
    fs.mkdirSync(require('node:path').dirname(abs), { recursive: true });
    write(abs);
    const t0 = Date.now();
    const r = await h.run(args);
    assert.equal(r.code, 2, `${what}: ${args[0]} exit 2 (${r.stderr})`);
    assert.match(r.stderr, pattern, `${what}: ${args[0]}`);
    assert.ok(Date.now() - t0 < 5000, `${what}: ${args[0]} did not hang`);
    assert.equal(h.k.writes.length, 0, `${what}: nothing applied`);
    assert.equal(h.state(E2).driver, 'e1000e');
  }
}

test('duplicate keys are an error naming the line', async () => {
  await expectRejected(
    (p) =>
      fs.writeFileSync(
        p,
        '{"version": 1, "rules": [], "rules": [{"match": {"address": "0000:00:05.0"}, "intent": "vfio"}]}',
        { mode: 0o644 },
      ),
    /1:\d+: duplicate key 'rules'/,
    'duplicate',
  );
});

test('deep nesting is exit 2, not a stack overflow', async () => {
  await expectRejected(
    (p) =>
      fs.writeFileSync(
        p,
        '{"version": 1, "rules": [' + '['.repeat(200_000) + ']'.repeat(200_000) + ']}',
        { mode: 0o644 },
      ),
    /nested deeper than 32 levels/,
    'deep',
  );
});

test('a FIFO, a directory or a device node is refused before it is read', async () => {
  await expectRejected(
    (p) => execFileSync('mkfifo', ['-m', '0644', p]),
    /not a regular file \(a FIFO\)/,
    'fifo',
  );
  await expectRejected((p) => fs.mkdirSync(p), /not a regular file \(a directory\)/, 'directory');
});

test('invalid UTF-8 is exit 2 with the byte offset', async () => {
  await expectRejected(
    (p) =>
      fs.writeFileSync(
        p,
        Buffer.concat([
          Buffer.from('{"version": 1, "rules": [] } // caf'),
          Buffer.from([0xc3, 0x28]),
        ]),
        { mode: 0o644 },
      ),
    /byte offset 35: not UTF-8 \(byte 0xc3\)/,
    'utf8',
  );
});

test('a file above the size limit is refused', async () => {
  await expectRejected(
    (p) =>
      fs.writeFileSync(p, '{"version": 1, "rules": []}' + ' '.repeat(5 * 1024 * 1024), {
        mode: 0o644,
      }),
    /more than the 4194304 a configuration may have/,
    'large',
  );
});
