// The modules.alias index (src/modules/alias-index.ts): used only when it is root's, names the
// very file, and is well formed; rebuilt when stale or broken; never created where vfioctl has
// no run directory. Writing it needs root (the suite's CI runs as root); as a normal user only
// the "never written" cases run.
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { ALIASES, Fixture } from '../support/fixture';
import { HostRoot } from '../../src/host/root';
import { Diagnostics } from '../../src/util/diag';
import { loadAliasDb, type AliasDb } from '../../src/modules/alias';

const fixtures: Fixture[] = [];
after(() => {
  for (const f of fixtures) f.cleanup();
});

const RELEASE = '6.12.0-test';
const INDEX = `/run/vfioctl/alias-index.${RELEASE}.json`;
const asRoot = process.geteuid?.() === 0;
const rootOnly = asRoot ? {} : { skip: 'writing the index needs root' };

/**
 * A module index as depmod leaves it: settled (an hour old), pci: lines around the vfio_pci: ones.
 */
function host(opts: { runDir?: boolean; fresh?: boolean } = {}): Fixture {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel(RELEASE).modulesAlias([
    ALIASES.e1000e,
    ALIASES.vfioPci,
    ALIASES.virtioPci,
    ALIASES.mlx5,
    ALIASES.mlx5Core,
    ...ALIASES.qat,
    'alias usb:v1D6Bp0002d*dc*dsc*dp*ic*isc*ip*in* ehci_hcd',
  ]);
  if (opts.runDir !== false) fs.mkdirSync(f.tree.abs('/run/vfioctl'), { mode: 0o700 });
  if (!opts.fresh) settle(f);
  return f;
}

function settle(f: Fixture): void {
  const hourAgo = new Date(Date.now() - 3600_000);
  fs.utimesSync(f.tree.abs(`/lib/modules/${RELEASE}/modules.alias`), hourAgo, hourAgo);
}

const load = (f: Fixture): AliasDb =>
  loadAliasDb(new HostRoot(f.dir), RELEASE, new Diagnostics(), { writeIndex: true });
/** Everything a caller can see of the database, pci: tables included. */
const view = (db: AliasDb) => ({
  vfio: db.vfio,
  pci: [...db.pciByModule].sort(),
  vfioByModule: [...db.vfioByModule].sort(),
  present: db.present,
});

test(
  'the index is written once and then answers exactly as parsing the file does',
  rootOnly,
  () => {
    const f = host();
    const parsed = view(load(f));
    const index = f.tree.abs(INDEX);
    assert.ok(fs.existsSync(index), 'written by the first call');
    assert.equal(fs.statSync(index).mode & 0o777, 0o644);
    const stored = JSON.parse(fs.readFileSync(index, 'utf8'));
    assert.equal(stored.vfio.length, 5);
    assert.equal(
      stored.file.ino,
      String(fs.statSync(f.tree.abs(`/lib/modules/${RELEASE}/modules.alias`)).ino),
    );
    // That the second call reads the index is shown by the next test.
    const fromIndex = view(load(f));
    assert.deepEqual(
      fromIndex,
      parsed,
      'vfio_pci: aliases and the pci: tables (read lazily) are the same, order numbers and lines included',
    );
  },
);

test(
  'read-only callers (list, show, status, doctor) use the index but never write one',
  rootOnly,
  () => {
    const f = host();
    const parsed = view(loadAliasDb(new HostRoot(f.dir), RELEASE, new Diagnostics()));
    assert.ok(!fs.existsSync(f.tree.abs(INDEX)), 'a reader wrote the index');
    load(f);
    assert.ok(fs.existsSync(f.tree.abs(INDEX)), 'a writer writes it');
    assert.deepEqual(view(loadAliasDb(new HostRoot(f.dir), RELEASE, new Diagnostics())), parsed);
  },
);

test(
  'an index is used: a (root-written) entry it holds is what the next call sees',
  rootOnly,
  () => {
    const f = host();
    load(f);
    const index = f.tree.abs(INDEX);
    const stored = JSON.parse(fs.readFileSync(index, 'utf8'));
    stored.vfio[stored.vfio.length - 1][1] = 'renamed_vfio_pci';
    fs.writeFileSync(index, JSON.stringify(stored), { mode: 0o644 });
    assert.ok(load(f).vfioByModule.has('renamed_vfio_pci'), 'the index, not the file, answered');
  },
);

test('a changed modules.alias is parsed again and the index rebuilt', rootOnly, () => {
  const f = host();
  load(f);
  f.modulesAlias([ALIASES.vfioPci, ALIASES.virtio1041]);
  settle(f);
  const db = load(f);
  assert.deepEqual(
    db.vfio.map((a) => a.module),
    ['vfio_pci', 'virtio_vfio_pci'],
  );
  assert.deepEqual(
    JSON.parse(fs.readFileSync(f.tree.abs(INDEX), 'utf8')).vfio.map((e: unknown[]) => e[1]),
    ['vfio_pci', 'virtio_vfio_pci'],
  );
});

test('an index that is not root-only, or broken, is ignored and rebuilt', rootOnly, () => {
  for (const spoil of [
    (p: string) => fs.chmodSync(p, 0o666),
    (p: string) => fs.writeFileSync(p, '{"format":1,'),
    (p: string) => {
      const x = JSON.parse(fs.readFileSync(p, 'utf8'));
      x.vfio[0][0] = 'pci:v*d*sv*sd*bc*sc*i*'; // not a vfio_pci: alias
      fs.writeFileSync(p, JSON.stringify(x));
    },
    (p: string) => {
      const x = JSON.parse(fs.readFileSync(p, 'utf8'));
      x.vfio[1][2] = x.vfio[0][2]; // order numbers must rise
      fs.writeFileSync(p, JSON.stringify(x));
    },
  ]) {
    const f = host();
    const parsed = view(load(f));
    const index = f.tree.abs(INDEX);
    const x = JSON.parse(fs.readFileSync(index, 'utf8'));
    x.vfio[x.vfio.length - 1][1] = 'forged_vfio_pci';
    fs.writeFileSync(index, JSON.stringify(x));
    spoil(index);
    assert.deepEqual(view(load(f)), parsed, `${spoil}: the file answered`);
    assert.equal(fs.statSync(index).mode & 0o777, 0o644, 'rebuilt');
    assert.ok(!fs.readFileSync(index, 'utf8').includes('forged'));
  }
});

test('no index without a run directory or from a file changed just now (list reads only)', () => {
  const none = host({ runDir: false });
  load(none);
  assert.ok(!fs.existsSync(none.tree.abs('/run/vfioctl')), 'no directory made');
  const fresh = host({ fresh: true });
  load(fresh);
  assert.ok(
    !fs.existsSync(fresh.tree.abs(INDEX)),
    'a file written within the last seconds could change again within its mtime tick',
  );
});

test(
  'a modules.alias with lines depmod never writes is not indexed (its warnings come every time)',
  rootOnly,
  () => {
    const f = host();
    f.modulesAlias([
      ALIASES.vfioPci,
      'alias vfio_pci:v0000ABCDd[0001*sv*sd*bc*sc*i* broken_vfio_pci',
    ]);
    settle(f);
    const d = new Diagnostics();
    loadAliasDb(new HostRoot(f.dir), RELEASE, d, { writeIndex: true });
    assert.ok(d.warnings.length > 0);
    assert.ok(!fs.existsSync(f.tree.abs(INDEX)));
  },
);
