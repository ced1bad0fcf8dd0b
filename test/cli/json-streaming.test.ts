// writeJsonStreaming (cli/render.ts) and list's writeJsonArray (cli/inventory.ts) must write
// exactly what JSON.stringify(value, null, 2) does.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { writeJsonStreaming } from '../../src/cli/render';
import type { Context } from '../../src/cli/context';
import { writeJsonArray } from '../../src/cli/inventory';
import type { DeviceView } from '../../src/report/device-view';

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

test("list --json's batches (cli/inventory.ts) are byte for byte JSON.stringify(views, null, 2) plus a newline", () => {
  const listed = (views: unknown[]) => {
    let out = '';
    const ctx = {
      io: { out: (s: string) => (out += s), err: () => {}, env: {} },
    } as unknown as Context;
    writeJsonArray(ctx, views as DeviceView[]);
    return out;
  };
  // Batches are 48 views: none, part of one, one exactly, one and a bit, several.
  for (const n of [0, 1, 47, 48, 49, 96, 97, 200]) {
    const views = Array.from({ length: n }, (_, i) => ({
      address: `0000:10:${i}`,
      driver: i % 3 ? 'vfio-pci' : null,
      candidates: i % 2 ? [] : [{ module: 'mlx5_vfio_pci', why: ['é', '"quoted"'] }],
    }));
    assert.equal(listed(views), JSON.stringify(views, null, 2) + '\n', `${n} views`);
  }
  fc.assert(
    fc.property(fc.array(fc.jsonValue(), { maxLength: 120 }), (views) => {
      assert.equal(listed(views), JSON.stringify(views, null, 2) + '\n');
    }),
    { numRuns: 200 },
  );
});
