// pci.ids is streamed and only the wanted vendors' and devices' lines are kept: the names must be
// the ones a parse of the whole file gives (later lines win), whatever the file holds and wherever
// its 64 KiB read windows fall.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { HostRoot } from '../../src/host/root';
import { loadPciNames, type PciIds } from '../../src/host/pciids';

/**
 * The pci.ids grammar over the whole text, written out plainly: what the names must be. Ids are
 * lowercase hex in the file and from sysfs; an uppercase `15B3` line is another (odd) id.
 */
function wholeFile(text: string) {
  const vendors = new Map<string, string>();
  const devices = new Map<string, string>();
  const classes = new Map<string, string>();
  let vendor: string | null = null;
  let cls: string | null = null;
  let sub: string | null = null;
  let inClasses = false;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    if (line.startsWith('C ')) {
      inClasses = true;
      cls = line.slice(2, 4).toLowerCase();
      sub = null;
      classes.set(cls, line.slice(6).trim());
    } else if (!line.startsWith('\t')) {
      inClasses = false;
      vendor = line.slice(0, 4);
      vendors.set(vendor, line.slice(6).trim());
    } else if (inClasses) {
      if (cls === null) continue;
      if (!line.startsWith('\t\t')) {
        sub = cls + line.slice(1, 3).toLowerCase();
        classes.set(sub, line.slice(5).trim());
      } else if (sub) classes.set(sub + line.slice(2, 4).toLowerCase(), line.slice(6).trim());
    } else if (vendor && !line.startsWith('\t\t'))
      devices.set(`${vendor}:${line.slice(1, 5)}`, line.slice(7).trim());
  }
  return { vendors, devices, classes };
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-pciids-'));
process.on('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
let n = 0;

function rootWith(text: string | Buffer): HostRoot {
  const dir = path.join(tmp, String(n++));
  fs.mkdirSync(path.join(dir, 'usr/share/misc'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'usr/share/misc/pci.ids'), text);
  return new HostRoot(dir);
}

function assertSameNames(text: string, asked: readonly PciIds[], classes: readonly string[]): void {
  const names = loadPciNames(rootWith(text), asked);
  assert.ok(names, 'pci.ids was found');
  const ref = wholeFile(text);
  for (const { vendor, device } of asked) {
    assert.equal(names.vendorName(vendor), ref.vendors.get(vendor) ?? null, `vendor ${vendor}`);
    assert.equal(
      names.deviceName(vendor, device),
      ref.devices.get(`${vendor}:${device}`) ?? null,
      `device ${vendor}:${device}`,
    );
  }
  for (const c of classes) {
    const want =
      ref.classes.get(c) ??
      ref.classes.get(c.slice(0, 4)) ??
      ref.classes.get(c.slice(0, 2)) ??
      null;
    assert.equal(names.className(c), want, `class ${c}`);
  }
}

const IDS = ['15b3', '8086', '1af4', '10de', '0001', 'ffff'];
const hex4 = fc.constantFrom(...IDS, '101d', '1000', 'a182');
const name = fc
  .array(fc.constantFrom('Intel', 'Mellanox', 'ConnectX-6', 'é', 'ü', '[AHCI mode]', ' ', 'x'), {
    minLength: 1,
    maxLength: 6,
  })
  .map((w) => w.join(' '));
/** Lines in the shapes pci.ids has, and a few it should not (in odd orders). */
const line = fc.oneof(
  { weight: 3, arbitrary: fc.tuple(hex4, name).map(([v, s]) => `${v}  ${s}`) },
  { weight: 8, arbitrary: fc.tuple(hex4, name).map(([d, s]) => `\t${d}  ${s}`) },
  {
    weight: 3,
    arbitrary: fc.tuple(hex4, hex4, name).map(([a, b, s]) => `\t\t${a} ${b}  ${s}`),
  },
  { weight: 1, arbitrary: name.map((s) => `# ${s}`) },
  { weight: 1, arbitrary: fc.constant('') },
  { weight: 1, arbitrary: fc.constantFrom('C 02  Network controller', 'C 01  Mass storage') },
  { weight: 1, arbitrary: fc.constantFrom('\t00  Ethernet controller', '\t\t02  NVM Express') },
  { weight: 1, arbitrary: fc.constantFrom('garbage line', 'A0B1  upper case', '15B3  Upper') },
);
/** Long runs of other vendors' lines, so that sections and lines cross the read windows. */
const filler = fc
  .integer({ min: 0, max: 2500 })
  .map((k) =>
    Array.from(
      { length: k },
      (_, i) =>
        `${(0x2000 + (i % 0x5000)).toString(16)}  Filler vendor ${i}\n\t${(i % 0x10000).toString(16).padStart(4, '0')}  Filler device`,
    ),
  );
const asked = fc.array(fc.record({ vendor: fc.constantFrom(...IDS), device: hex4 }), {
  minLength: 1,
  maxLength: 6,
});

test('names from a streamed pci.ids are those of a parse of the whole file (generated files)', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(filler, fc.array(line, { maxLength: 40 })), { minLength: 1, maxLength: 4 }),
      asked,
      fc.boolean(),
      (parts, want, newlineAtEnd) => {
        const text =
          parts.flatMap(([f, ls]) => [...f, ...ls]).join('\n') + (newlineAtEnd ? '\n' : '');
        assertSameNames(text, want, ['020000', '0108', '010802', '01', '99', '0200ff']);
      },
    ),
    { numRuns: 60 },
  );
});

test('a line longer than the read window, and a section that spans windows', () => {
  const long = `15b3  Mellanox ${'m'.repeat(150_000)}`;
  const spanning = Array.from(
    { length: 6000 },
    (_, i) => `\t${(i % 0x10000).toString(16).padStart(4, '0')}  Device ${i}`,
  );
  const text = [
    '# comment',
    `# ${'c'.repeat(70_000)}`,
    long,
    '\t101d  ConnectX-6 Dx',
    '8086  Intel Corporation',
    ...spanning,
    '\t1572  last Intel device',
    'ffff  Illegal Vendor ID',
    'C 02  Network controller',
    '\t00  Ethernet controller',
  ].join('\n');
  assert.ok(text.length > 3 * 65536);
  assertSameNames(
    text,
    [
      { vendor: '15b3', device: '101d' },
      { vendor: '8086', device: '0003' },
      { vendor: '8086', device: '1572' },
      { vendor: '8086', device: '1770' },
      { vendor: 'ffff', device: '1572' },
    ],
    ['020000', '0300'],
  );
  const names = loadPciNames(rootWith(text), [{ vendor: '8086', device: '1572' }]);
  assert.equal(names?.deviceName('8086', '1572'), 'last Intel device');
  assert.equal(names?.vendorName('15b3'), null, 'only the vendors asked for');
});

test("the system's pci.ids (installed by scripts/setup.sh) names devices as a whole parse does", () => {
  const file = ['/usr/share/misc/pci.ids', '/usr/share/hwdata/pci.ids'].find((f) =>
    fs.existsSync(f),
  );
  assert.ok(
    file,
    'no pci.ids on this machine: run scripts/setup.sh (it installs the pci.ids package)',
  );
  const text = fs.readFileSync(file, 'utf8');
  const ref = wholeFile(text);
  // Every 97th known device, plus ones of the biggest sections (Intel's is a third of the file).
  const known = [...ref.devices.keys()].filter((_, i) => i % 97 === 0);
  const want = [...known, '8086:1572', '8086:a182', '15b3:101e', '1af4:1041'].map((k) => ({
    vendor: k.slice(0, 4),
    device: k.slice(5),
  }));
  assertSameNames(text, want, ['020000', '010802', '0c0330', '060400']);
  assert.equal(
    loadPciNames(rootWith(text), [{ vendor: '15b3', device: '101e' }])?.deviceName('15b3', '101e'),
    ref.devices.get('15b3:101e'),
  );
});

test('no pci.ids: no names', () => {
  assert.equal(loadPciNames(new HostRoot(fs.mkdtempSync(path.join(tmp, 'none-'))), []), null);
});
