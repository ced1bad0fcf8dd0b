import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { aliasNormalize, fnmatch } from '../../src/modules/fnmatch';

test('fnmatch: *, ? and literal characters, case-sensitive', () => {
  assert.equal(fnmatch('vfio_pci:v*d*', 'vfio_pci:v00001AF4d00001041'), true);
  assert.equal(fnmatch('vfio_pci:v0000?AF4*', 'vfio_pci:v00001AF4d1'), true);
  assert.equal(fnmatch('vfio_pci:v0000?AF4*', 'vfio_pci:v00001af4d1'), false);
  assert.equal(fnmatch('a.b', 'axb'), false, '. is literal');
  assert.equal(fnmatch('a+b', 'a+b'), true);
  assert.equal(fnmatch('*', ''), true);
});

test('fnmatch: bracket expressions with ranges, negation and literal ]', () => {
  assert.equal(fnmatch('d0000[0-9]041', 'd00001041'), true);
  assert.equal(fnmatch('d0000[!0-9]041', 'd00001041'), false);
  assert.equal(fnmatch('d0000[^0-9]041', 'd0000A041'), true);
  assert.equal(fnmatch('x[]a]y', 'x]y'), true);
  assert.equal(fnmatch('x[a-]y', 'x-y'), true);
  assert.equal(fnmatch('d[12]', 'd3'), false);
  assert.equal(fnmatch('d[12', 'd1'), false, 'unterminated bracket never matches');
});

test('aliasNormalize: dashes become underscores outside brackets only; unbalanced is invalid', () => {
  assert.equal(aliasNormalize('vfio-pci:v*'), 'vfio_pci:v*');
  assert.equal(aliasNormalize('x[a-c]-y'), 'x[a-c]_y');
  assert.equal(aliasNormalize('x]y'), null);
  assert.equal(aliasNormalize('x[ab'), null);
});
