// writeJsonStreaming (cli/render.ts) must write exactly what JSON.stringify(value, null, 2) does.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { writeJsonStreaming } from '../../src/cli/render';
import type { Context } from '../../src/cli/context';

function written(value: Record<string, unknown>, key: string): string {
  let out = '';
  const ctx = {
    io: { out: (s: string) => (out += s), err: () => {}, env: {} },
  } as unknown as Context;
  writeJsonStreaming(ctx, value, key);
  return out;
}

test('the streamed JSON is byte for byte JSON.stringify(value, null, 2) plus a newline', () => {
  const item = fc.oneof(
    fc.jsonValue(),
    fc.constant(undefined),
    fc.record({
      address: fc.string(),
      driver: fc.option(fc.string()),
      live: fc.option(fc.record({ driver: fc.string() })),
    }),
  );
  fc.assert(
    fc.property(
      fc.array(item, { maxLength: 30 }),
      fc.dictionary(fc.string(), fc.jsonValue(), { maxKeys: 4 }),
      fc.boolean(),
      (devices, extra, last) => {
        const value = last
          ? { ...extra, devices }
          : { kernel: '6.12', devices, ...extra, warnings: ['w'] };
        if (!Object.hasOwn(value, 'devices') || value.devices !== devices) return;
        assert.equal(written(value, 'devices'), JSON.stringify(value, null, 2) + '\n');
      },
    ),
  );
  // Large enough to be written in several pieces.
  const many = {
    kernel: 'k',
    devices: Array.from({ length: 3000 }, (_, i) => ({
      address: `0000:10:${i}`,
      note: 'x'.repeat(40),
      nested: { a: [i, null, 'é'] },
    })),
    warnings: [],
  };
  assert.equal(written(many, 'devices'), JSON.stringify(many, null, 2) + '\n');
});
