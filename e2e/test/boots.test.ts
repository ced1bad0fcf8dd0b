// Unit tests of the harness parts the boot-* scenarios add (no QEMU, no root).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import { builtInitramfs, hostPersistDir, SYSTEMD_BOOT_SCRIPT, type BootPlan } from '../boot';
import type { Scenario } from '../guest/scenario';
import { planBoots } from '../plan';
import { SCENARIOS } from '../scenarios';
import { pruneInitramfs, type KernelArtifacts } from '../setup/kernel';

const kernel = (id: string): KernelArtifacts => ({
  id,
  release: `${id}.0-1-amd64`,
  version: `${id}.1-1`,
  root: `/c/${id}`,
  vmlinuz: `/c/${id}/vmlinuz`,
  initrd: `/c/${id}/initrd`,
  variants: [],
  vfioAliases: [],
});
const reboot = (name: string, systemd?: boolean): Scenario => ({
  name,
  title: name,
  boots: ['reboot'],
  reboot: { kernels: 'same', ...(systemd && { systemd }) },
  run() {},
});

describe('boot-* pairs', () => {
  it('names a second same-kernel pair after its scenario, so no two boots share a results directory', () => {
    const boots = planBoots(
      [kernel('6.1')],
      [],
      [reboot('reboot-same-kernel'), reboot('boot-systemd', true)],
    );
    assert.deepEqual(
      boots.map((b) => b.name),
      ['6.1-reboot1', '6.1-reboot2', '6.1-reboot-boot-systemd1', '6.1-reboot-boot-systemd2'],
    );
    assert.equal(new Set(boots.map((b) => b.name)).size, boots.length);
  });

  it('a default run boots each pair on its byDefault kernels; --all-pairs or naming it with --scenario, on all', () => {
    const r: Scenario = {
      ...reboot('boot-x', true),
      reboot: { kernels: 'same', only: ['6.1', '6.12'], byDefault: ['6.1'], systemd: true },
    };
    const ks = [kernel('5.10'), kernel('6.1'), kernel('6.12')];
    const names = (b: readonly BootPlan[]) => b.map((x) => x.name);
    assert.deepEqual(names(planBoots(ks, [], [r])), ['6.1-reboot1', '6.1-reboot2']);
    const all = ['6.1-reboot1', '6.1-reboot2', '6.12-reboot1', '6.12-reboot2'];
    assert.deepEqual(names(planBoots(ks, [], [r], { allPairs: true })), all);
    assert.deepEqual(names(planBoots(ks, ['boot-x'], [r])), all);
    // Selecting only kernels outside the rotation boots no pair of it by default.
    assert.deepEqual(names(planBoots([kernel('6.12')], [], [r])), []);
  });

  it("the suite's default run: each Debian 12 kernel boots under systemd, both directions of a kernel change, 5.10 and 6.12 same-kernel pairs", () => {
    const ks = [kernel('5.10'), kernel('6.1'), kernel('6.12')];
    const second = (all: boolean) =>
      planBoots(ks, [], SCENARIOS, { allPairs: all })
        .filter((b) => b.reboot?.stage === 2)
        .map((b) => `${b.scenarios[0]!.name}@${b.reboot!.other.id}->${b.kernel.id}`)
        .sort();
    assert.deepEqual(second(false), [
      'boot-broken-config@6.12->6.1',
      'boot-dracut@6.12->6.12',
      'boot-failures@6.12->6.12',
      'boot-initramfs-tools@6.1->6.1',
      'boot-systemd@6.1->6.1',
      'reboot-kernel-change@6.1->6.12',
      'reboot-same-kernel@5.10->5.10',
      'reboot-same-kernel@6.12->6.12',
    ]);
    // --all-pairs: every boot layer on both Debian 12 kernels, reboot-same-kernel on all three.
    assert.equal(second(true).length, 13);
    assert.ok(second(true).includes('boot-dracut@6.1->6.1'));
    assert.ok(second(true).includes('reboot-same-kernel@6.1->6.1'));
  });

  it('the systemd hand-over script exists where boot.env points the guest', () => {
    assert.ok(fs.existsSync(SYSTEMD_BOOT_SCRIPT), SYSTEMD_BOOT_SCRIPT);
  });

  it('a second boot starts from the initramfs its first boot left, with the words it asked for; others do not', () => {
    const k = kernel('6.12');
    const share = fs.mkdtempSync(path.join(os.tmpdir(), 'share-'));
    try {
      const plan = (stage: 1 | 2): BootPlan => ({
        name: `x${stage}`,
        kernel: k,
        iommu: true,
        scenarios: [],
        reboot: { chain: 'x', stage, installed: [k], other: k },
      });
      const dir = hostPersistDir(share);
      fs.mkdirSync(dir);
      assert.deepEqual(builtInitramfs(plan(2), share), { cmdline: [] });
      fs.writeFileSync(path.join(dir, 'initrd.img'), 'x');
      fs.writeFileSync(path.join(dir, 'initrd.cmdline'), 'boot=e2e9p\n');
      assert.deepEqual(builtInitramfs(plan(2), share), {
        initrd: path.join(dir, 'initrd.img'),
        cmdline: ['boot=e2e9p'],
      });
      assert.deepEqual(builtInitramfs(plan(1), share), { cmdline: [] });
      // Stored in the cache under its inputs' key, once.
      const cache = path.join(share, 'cache');
      fs.writeFileSync(path.join(dir, 'initrd.key'), '0123456789abcdef\n');
      builtInitramfs(plan(2), share, cache);
      assert.equal(
        fs.readFileSync(path.join(cache, 'initramfs/0123456789abcdef.img'), 'utf8'),
        'x',
      );
      fs.writeFileSync(path.join(dir, 'initrd.key'), '../../etc/passwd\n');
      builtInitramfs(plan(2), share, cache);
      assert.deepEqual(
        fs.readdirSync(path.join(cache, 'initramfs')),
        ['0123456789abcdef.img'],
        'a key that is not one is ignored',
      );
      fs.writeFileSync(path.join(dir, 'initrd.cmdline'), 'init=/bin/sh;reboot\n');
      assert.throws(() => builtInitramfs(plan(2), share), /unexpected word/);
    } finally {
      fs.rmSync(share, { recursive: true, force: true });
    }
  });
});

describe('the shared cache', () => {
  it('keeps initramfs images other checkouts used lately; drops those unused for longer', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kcache-'));
    try {
      for (const f of ['initrd-aaaa.cpio.gz', 'initrd-bbbb.cpio.gz', 'stamp.json'])
        fs.writeFileSync(path.join(dir, f), '');
      const old = new Date(Date.now() - 2 * 24 * 3600_000);
      fs.utimesSync(path.join(dir, 'initrd-aaaa.cpio.gz'), old, old);
      assert.deepEqual(pruneInitramfs(dir, Date.now() - 24 * 3600_000), ['initrd-aaaa.cpio.gz']);
      assert.deepEqual(fs.readdirSync(dir).sort(), ['initrd-bbbb.cpio.gz', 'stamp.json']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
