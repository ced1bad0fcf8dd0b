// parseBuiltinModinfo scans modules.builtin.modinfo without splitting it: the aliases it finds,
// with their record numbers (shown in `show`'s explanation), must be exactly those of the plain
// definition: NUL-separated `module.key=value` records, key `alias`.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import fc from 'fast-check';
import { type AliasCollector, parseBuiltinModinfo } from '../../src/modules/alias';
import { aliasNormalize } from '../../src/modules/fnmatch';

type Added = [pattern: string, module: string, record: number];

function parsed(text: string): Added[] {
  const out: Added[] = [];
  const col = {
    add: (pattern: string, module: string, _source: string, _where: string, line: number) =>
      void out.push([pattern, module, line]),
  } as unknown as AliasCollector;
  parseBuiltinModinfo(text, 'modules.builtin.modinfo', col);
  return out;
}

/** The definition, record by record. */
function reference(text: string): Added[] {
  const out: Added[] = [];
  text.split('\0').forEach((rec, i) => {
    const dot = rec.indexOf('.');
    if (dot > 0 && rec.startsWith('alias=', dot + 1))
      out.push([rec.slice(dot + 7), rec.slice(0, dot), i + 1]);
  });
  return out;
}

test('parseBuiltinModinfo: a real-looking file', () => {
  const text = [
    'vfio_pci.license=GPL v2',
    'vfio_pci.alias=vfio_pci:v*d*sv*sd*bc*sc*i*',
    'ahci.file=drivers/ata/ahci',
    'ahci.alias=pci:v*d*sv*sd*bc01sc06i01*',
    '.alias=no-module',
    'x.y.alias=not-an-alias-key',
    'mlx5_vfio_pci.alias=vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*',
    '',
  ].join('\0');
  assert.deepEqual(parsed(text), [
    ['vfio_pci:v*d*sv*sd*bc*sc*i*', 'vfio_pci', 2],
    ['pci:v*d*sv*sd*bc01sc06i01*', 'ahci', 4],
    ['vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i*', 'mlx5_vfio_pci', 7],
  ]);
});

test('parseBuiltinModinfo: the same aliases and record numbers as the record-by-record definition', () => {
  // Records from a small alphabet, so that dots, `alias=` and NULs meet in every arrangement.
  const piece = fc.constantFrom('a', 'b', '.', 'alias=', '.alias=', '=', 'x.alias', '\0', '');
  const text = fc.array(piece, { maxLength: 40 }).map((p) => p.join(''));
  fc.assert(
    fc.property(text, (t) => {
      assert.deepEqual(parsed(t), reference(t));
    }),
    { numRuns: 2000 },
  );
});

test('aliasNormalize: an alias without `-` or brackets is returned as it is', () => {
  fc.assert(
    fc.property(fc.stringMatching(/^[a-zA-Z0-9_:*?]{0,40}$/), (s) => {
      assert.equal(aliasNormalize(s), s);
    }),
  );
});
