// The pci.ids names cache (src/host/pciids-cache.ts): a writing command's read of every device
// keeps their names in the run directory, and list/show then answer from it exactly as from the
// file, without opening it; anything that makes the cache doubtful (another file, a new id, an
// owner or mode others could have used, a broken entry) and the file is read. Writing it needs
// root (the suite's CI runs as root); as a normal user only the "never written" cases run.
import { test, after } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { Fixture } from '../support/fixture';
import { HostRoot } from '../../src/host/root';
import { loadPciNames, type PciIds } from '../../src/host/pciids';
import { readSnapshot } from '../../src/read/snapshot';

const fixtures: Fixture[] = [];
after(() => fixtures.forEach((f) => f.cleanup()));

const asRoot = process.geteuid?.() === 0;
const rootOnly = asRoot ? {} : { skip: 'writing the cache needs root' };
const CACHE = '/run/vfioctl/pci-names.json';

const PCI_IDS = [
  '# pci.ids, a few lines of it',
  '1af4  Red Hat, Inc.',
  '\t1000  Virtio network device',
  '\t1041  Virtio 1.0 network device',
  '\t\t1af4 1100  QEMU',
  '8086  Intel Corporation',
  '\t10d3  82574L Gigabit Network Connection',
  '\t2922  82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode]',
  'C 01  Mass storage controller',
  '\t06  SATA controller',
  '\t\t01  AHCI 1.0',
  'C 02  Network controller',
  '\t00  Ethernet controller',
  '',
].join('\n');

const DEVICES = [
  { address: '0000:00:02.0', vendor: '1af4', device: '1041', class: '020000' },
  { address: '0000:00:03.0', vendor: '8086', device: '10d3', class: '020000' },
  { address: '0000:00:1f.2', vendor: '8086', device: '2922', class: '010601' },
  // Named by no line: its absence is cached too.
  { address: '0000:00:04.0', vendor: '8086', device: 'ffff', class: '020000' },
];

function host(opts: { runDir?: boolean; settled?: boolean } = {}): Fixture {
  const f = Fixture.create();
  fixtures.push(f);
  f.kernel('6.12.0-test').pciIds(PCI_IDS);
  for (const d of DEVICES) f.device(d);
  if (opts.runDir !== false) fs.mkdirSync(f.tree.abs('/run/vfioctl'), { mode: 0o700 });
  if (opts.settled !== false) settle(f, '/usr/share/misc/pci.ids');
  return f;
}

function settle(f: Fixture, rel: string): void {
  const hourAgo = new Date(Date.now() - 3600_000);
  fs.utimesSync(f.tree.abs(rel), hourAgo, hourAgo);
}

/** What a writing command reads (apply: every device, under the lock). */
const writingRead = (f: Fixture) => readSnapshot(new HostRoot(f.dir), { writeIndex: true });

/** Every name a caller can ask for these devices, and the pci.ids files opened to answer. */
function answers(f: Fixture, asked: readonly (PciIds & { class: string })[] = DEVICES) {
  const nodeFs: typeof fs = require('node:fs');
  const open = nodeFs.openSync;
  const opened: string[] = [];
  nodeFs.openSync = ((p: fs.PathLike, ...rest: unknown[]) => {
    opened.push(String(p));
    return (open as (...a: unknown[]) => number)(p, ...rest);
  }) as typeof fs.openSync;
  try {
    const names = loadPciNames(new HostRoot(f.dir), asked);
    const seen = asked.map((d) => [
      names?.vendorName(d.vendor),
      names?.deviceName(d.vendor, d.device),
      names?.className(d.class),
    ]);
    return { seen, readFile: opened.some((p) => p.endsWith('pci.ids')) };
  } finally {
    nodeFs.openSync = open;
  }
}

const EXPECTED = [
  ['Red Hat, Inc.', 'Virtio 1.0 network device', 'Ethernet controller'],
  ['Intel Corporation', '82574L Gigabit Network Connection', 'Ethernet controller'],
  [
    'Intel Corporation',
    '82801IR/IO/IH (ICH9R/DO/DH) 6 port SATA Controller [AHCI mode]',
    'AHCI 1.0',
  ],
  ['Intel Corporation', null, 'Ethernet controller'],
];

test(
  'a writing read of every device keeps their names; list and show then answer from the cache, as from the file, without reading it',
  rootOnly,
  () => {
    const f = host();
    assert.deepEqual(answers(f), { seen: EXPECTED, readFile: true });
    writingRead(f);
    const st = fs.statSync(f.tree.abs(CACHE));
    assert.deepEqual([st.uid, st.mode & 0o777], [0, 0o644]);
    assert.deepEqual(answers(f), { seen: EXPECTED, readFile: false });
    // A subset (show of one device) and another class code of a cached class table.
    assert.deepEqual(answers(f, [{ ...DEVICES[2]!, class: '010600' }]), {
      seen: [[EXPECTED[2]![0], EXPECTED[2]![1], 'SATA controller']],
      readFile: false,
    });
    // Up to date: the next writing read leaves it as it is.
    const before = fs.statSync(f.tree.abs(CACHE)).ino;
    writingRead(f);
    assert.equal(fs.statSync(f.tree.abs(CACHE)).ino, before);
  },
);

test(
  'an id the cache does not hold (a device added since), or another pci.ids, and the file is read',
  rootOnly,
  () => {
    const f = host();
    writingRead(f);
    const added = { address: '0000:00:05.0', vendor: '1af4', device: '1000', class: '020000' };
    assert.deepEqual(answers(f, [added]), {
      seen: [['Red Hat, Inc.', 'Virtio network device', 'Ethernet controller']],
      readFile: true,
    });
    // The file replaced (a package update renames a new one into place): its names, not the cache's.
    const file = f.tree.abs('/usr/share/misc/pci.ids');
    fs.writeFileSync(`${file}.new`, PCI_IDS.replace('Virtio 1.0 network device', 'virtio-net 1.0'));
    fs.renameSync(`${file}.new`, file);
    settle(f, '/usr/share/misc/pci.ids');
    const now = answers(f);
    assert.equal(now.readFile, true);
    assert.equal(now.seen[0]![1], 'virtio-net 1.0');
    // Made from the second file of the search order; then the first appears: names come from it.
    const hwdata = f.tree.abs('/usr/share/hwdata/pci.ids');
    fs.mkdirSync(f.tree.abs('/usr/share/hwdata'));
    fs.renameSync(file, hwdata);
    writingRead(f);
    assert.deepEqual(answers(f).readFile, false);
    fs.copyFileSync(hwdata, file);
    assert.equal(answers(f).readFile, true, 'made from hwdata, misc now first');
  },
);

test('a cache others could have written, or a broken one, is not believed', rootOnly, () => {
  const f = host();
  writingRead(f);
  const cache = f.tree.abs(CACHE);
  const good = fs.readFileSync(cache, 'utf8');
  fs.chmodSync(cache, 0o664);
  assert.equal(answers(f).readFile, true, 'group-writable');
  fs.chmodSync(cache, 0o644);
  fs.chownSync(cache, 1000, 0);
  assert.equal(answers(f).readFile, true, "another user's");
  fs.chownSync(cache, 0, 0);
  assert.equal(answers(f).readFile, false);
  const lie = (edit: (o: Record<string, unknown>) => unknown) => {
    const o = JSON.parse(good) as Record<string, unknown>;
    edit(o);
    fs.writeFileSync(cache, JSON.stringify(o));
    return answers(f);
  };
  type Edit = (o: Record<string, unknown>) => unknown;
  const edits: [string, Edit][] = [
    ['another format', (o) => (o.format = 2)],
    ['a name with a newline', (o) => ((o.vendors as Record<string, string>)['8086'] = 'a\nb')],
    ['a name that is a number', (o) => ((o.devices as Record<string, unknown>)['8086:10d3'] = 7)],
    ['a class key that is not one', (o) => ((o.classes as Record<string, string>).zz = 'x')],
    ['classes that are a list', (o) => (o.classes = [])],
    ['another size', (o) => ((o.file as Record<string, string>).size = '1')],
  ];
  for (const [what, edit] of edits) {
    assert.deepEqual(lie(edit), { seen: EXPECTED, readFile: true }, what);
  }
  fs.writeFileSync(cache, '{');
  assert.deepEqual(answers(f), { seen: EXPECTED, readFile: true }, 'not JSON');
});

test('never written by a read-only command, a read of some devices, a file changed within the last 2 s, or without a run directory', () => {
  const ro = host();
  readSnapshot(new HostRoot(ro.dir));
  readSnapshot(new HostRoot(ro.dir), { writeIndex: true, only: ['0000:00:02.0'] });
  assert.equal(fs.existsSync(ro.tree.abs(CACHE)), false);
  const fresh = host({ settled: false });
  writingRead(fresh);
  assert.equal(fs.existsSync(fresh.tree.abs(CACHE)), false);
  const noRun = host({ runDir: false });
  writingRead(noRun);
  assert.equal(fs.existsSync(noRun.tree.abs('/run/vfioctl')), false);
  assert.deepEqual(answers(noRun), { seen: EXPECTED, readFile: true });
});
