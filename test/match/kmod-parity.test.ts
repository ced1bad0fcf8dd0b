// vfioctl's candidate set (before blacklist filtering) must equal what kmod's `modprobe -R` prints
// for `vfio_<modalias>` on depmod-built trees (libkmod reads only modules.alias.bin). Needs kmod.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { HostRoot } from '../../src/host/root';
import { loadAliasDb } from '../../src/modules/alias';
import { readModuleState } from '../../src/read/snapshot';
import { matchingVfioAliases } from '../../src/match/resolve';
import { Diagnostics } from '../../src/util/diag';
import { fakeKernelModule } from '../support/elf-module';

const haveKmod =
  spawnSync('depmod', ['--version']).status === 0 &&
  spawnSync('modprobe', ['--version']).status === 0;
const KMOD_MISSING = haveKmod
  ? false
  : 'kmod (depmod, modprobe) is not installed: run scripts/setup.sh';

function kmodCandidates(root: string, release: string, modalias: string): string[] {
  const r = spawnSync(
    'modprobe',
    [
      '--dirname',
      root,
      '--set-version',
      release,
      '-C',
      path.join(root, 'etc/modprobe.d'),
      '-R',
      `vfio_${modalias}`,
    ],
    { encoding: 'utf8' },
  );
  // modprobe -R exits 1 with no output when nothing matches, and prints a module once per
  // matching alias (a module with two matching aliases appears twice): compare sets.
  return [...new Set(r.stdout.split('\n').filter(Boolean))].sort();
}

function vfioctlCandidates(root: string, release: string, modalias: string): string[] {
  const db = loadAliasDb(new HostRoot(root), release, new Diagnostics());
  return [...new Set(matchingVfioAliases(modalias, db).map((a) => a.module))].sort();
}

// Small pools so that aliases and devices collide often.
const VENDORS = ['15B3', '1AF4', '8086', '10DE'];
const DEVICES = ['101E', '1041', '4941', '2342'];
const hex2 = ['00', '02', '03', '80'];

const idField = (pool: string[]) =>
  fc.oneof(
    fc.constant('*'),
    fc.constantFrom(...pool).map((x) => `0000${x}`),
    fc.constantFrom(...pool).map((x) => `0000${x.slice(0, 3)}?`),
    fc.constantFrom(...pool).map((x) => `0000${x.slice(0, 3)}[${x[3]}F]`),
    fc.constantFrom(...pool).map((x) => `0000${x.slice(0, 3)}[!0-9]`),
  );
const classField = fc.oneof(fc.constant('*'), fc.constantFrom(...hex2));
const aliasArb = fc
  .tuple(
    idField(VENDORS),
    idField(DEVICES),
    idField(VENDORS),
    fc.constant('*'),
    classField,
    classField,
    classField,
    fc.boolean(),
  )
  .map(([v, d, sv, sd, bc, sc, i, dash]) => {
    const body = `v${v}d${d}sv${sv}sd${sd}bc${bc}sc${sc}i${i}`;
    // file2alias appends a `*` unless the alias already ends in one.
    return `${dash ? 'vfio-pci' : 'vfio_pci'}:${body}${body.endsWith('*') ? '' : '*'}`;
  });
const modaliasArb = fc
  .tuple(
    fc.constantFrom(...VENDORS),
    fc.constantFrom(...DEVICES),
    fc.constantFrom(...VENDORS, '0000'),
    fc.constantFrom('0000', '0042'),
    fc.constantFrom(...hex2),
    fc.constantFrom(...hex2),
    fc.constantFrom(...hex2),
  )
  .map(
    ([v, d, sv, sd, bc, sc, i]) =>
      `pci:v0000${v}d0000${d}sv0000${sv}sd0000${sd}bc${bc}sc${sc}i${i}`,
  );

test('property: candidate sets equal kmod modprobe -R on depmod-built trees (blacklisted modules included)', {
  skip: KMOD_MISSING,
}, () => {
  const release = '9.9.9-prop';
  fc.assert(
    fc.property(
      fc.array(fc.array(aliasArb, { minLength: 1, maxLength: 3 }), { minLength: 1, maxLength: 6 }),
      fc.array(modaliasArb, { minLength: 1, maxLength: 8 }),
      fc.boolean(),
      (modules, modaliases, blacklistFirst) => {
        const root = fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-kmod-'));
        try {
          const dir = path.join(root, 'lib/modules', release, 'kernel');
          fs.mkdirSync(dir, { recursive: true });
          fs.mkdirSync(path.join(root, 'etc/modprobe.d'), { recursive: true });
          modules.forEach((aliases, n) =>
            fs.writeFileSync(
              path.join(dir, `m${n}_vfio_pci.ko`),
              fakeKernelModule(`m${n}_vfio_pci`, aliases),
            ),
          );
          fs.writeFileSync(
            path.join(dir, 'vfio-pci.ko'),
            fakeKernelModule('vfio_pci', ['vfio_pci:v*d*sv*sd*bc*sc*i*']),
          );
          if (blacklistFirst)
            fs.writeFileSync(path.join(root, 'etc/modprobe.d/bl.conf'), 'blacklist m0_vfio_pci\n');
          execFileSync('depmod', ['-b', root, release], { stdio: 'ignore' });
          for (const ma of modaliases) {
            assert.deepEqual(
              vfioctlCandidates(root, release, ma),
              kmodCandidates(root, release, ma),
              `modalias ${ma}\nmodules.alias:\n${fs.readFileSync(path.join(root, 'lib/modules', release, 'modules.alias'), 'utf8')}`,
            );
          }
        } finally {
          fs.rmSync(root, { recursive: true, force: true });
        }
      },
    ),
    // Includes the seed that found modprobe's one-line-per-alias output.
    {
      numRuns: 60,
      examples: [
        [
          [
            [
              'vfio_pci:v000010D?d0000101Esv00008086sd*bc*sc*i80*',
              'vfio_pci:v000010D[!0-9]d0000101?sv*sd*bc*sc*i*',
            ],
          ],
          ['pci:v000010DEd0000101Esv00008086sd00000000bc00sc00i80'],
          false,
        ],
      ],
    },
  );
});

// Debian's real kernels (11's 5.10, 12's 6.1 and 6.12), unpacked and depmod-ed by the e2e set-up
// (`npm run test:e2e -- --provision-only`, which `npm run test:all` runs first); the trees carry
// the variant modules built for the e2e suite too. VFIOCTL_REQUIRE_KERNEL_TREES=1 (test:all) makes
// missing trees a failure instead of a skip.
const TREES =
  process.env.VFIOCTL_KERNEL_TREES ??
  path.join(process.env.VFIOCTL_E2E_CACHE || '/var/cache/vfioctl-e2e', 'kernels');
const realTrees = fs.existsSync(TREES)
  ? fs
      .readdirSync(TREES)
      .filter((r) => fs.existsSync(path.join(TREES, r, 'root/lib/modules', r, 'modules.alias.bin')))
  : [];
const NO_TREES =
  realTrees.length === 0 &&
  `no depmod-built Debian kernel trees under ${TREES} (the e2e set-up makes them: npm run test:e2e -- --provision-only)`;
// Required (CI): never skipped, a failure when kmod or the trees are missing.
const REAL_SKIP =
  process.env.VFIOCTL_REQUIRE_KERNEL_TREES === '1' ? false : KMOD_MISSING || NO_TREES;
function requireReal(): void {
  assert.equal(KMOD_MISSING, false, KMOD_MISSING || '');
  assert.equal(NO_TREES, false, NO_TREES || '');
}

test('real Debian kernels: candidate sets equal modprobe -R for many modaliases', {
  skip: REAL_SKIP,
}, () => {
  requireReal();
  fc.assert(
    fc.property(
      fc.constantFrom(...realTrees),
      fc.array(modaliasArb, { minLength: 5, maxLength: 5 }),
      (release, modaliases) => {
        const root = path.join(TREES, release, 'root');
        fs.mkdirSync(path.join(root, 'etc/modprobe.d'), { recursive: true });
        for (const ma of modaliases)
          assert.deepEqual(
            vfioctlCandidates(root, release, ma),
            kmodCandidates(root, release, ma),
            `${release}: ${ma}`,
          );
      },
    ),
    { numRuns: 20 },
  );
});

// Before 5.15 (Debian 11's 5.10) no vfio_pci: alias exists, so modprobe -R matches no device and
// vfioctl's one candidate is the implicit vfio-pci: kmod must know that module by its name.
test('real Debian kernels: where modules.alias has no vfio_pci: line, vfio-pci is the no-ID-table candidate and kmod finds it by name', {
  skip: REAL_SKIP,
}, (t) => {
  requireReal();
  const old = realTrees.filter(
    (r) =>
      !/^alias vfio_pci:/m.test(
        fs.readFileSync(path.join(TREES, r, 'root/lib/modules', r, 'modules.alias'), 'utf8'),
      ),
  );
  if (old.length === 0)
    return t.skip(
      `no tree without vfio_pci: aliases under ${TREES} (${realTrees.join(', ')}); the 5.10 kernel provides one`,
    );
  for (const release of old) {
    const root = path.join(TREES, release, 'root');
    const mods = readModuleState(new HostRoot(root), release, new Diagnostics());
    assert.equal(mods.vfioPciWithoutTable, 'module', release);
    const r = spawnSync(
      'modprobe',
      [
        '--dirname',
        root,
        '--set-version',
        release,
        '-C',
        path.join(root, 'etc/modprobe.d'),
        '-R',
        'vfio-pci',
      ],
      { encoding: 'utf8' },
    );
    assert.equal(r.stdout.trim(), 'vfio_pci', `${release}: modprobe -R vfio-pci`);
    assert.deepEqual(
      kmodCandidates(root, release, 'pci:v00008086d000010D3sv00008086sd00000000bc02sc00i00'),
      [],
      `${release}: no vfio_pci: alias matches`,
    );
  }
});
