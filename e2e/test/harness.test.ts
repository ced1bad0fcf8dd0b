// Unit tests of the harness itself (no QEMU, no root): node --test build/e2e/test/
import { execFileSync } from 'node:child_process';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, it } from 'node:test';
import {
  hostPersistDir,
  runChain,
  ScenarioWatchdog,
  vmTimeoutMs,
  type BootEnv,
  type BootOutcome,
  type BootPlan,
} from '../boot';
import type { Scenario } from '../guest/scenario';
import { MACHINE } from '../machine';
import { chains, planBoots, pool } from '../plan';
import { printReport, totals } from '../report';
import { debFileName, parseDepends, privateApt } from '../setup/apt';
import { run } from '../lib/proc';
import { KERNELS } from '../kernels';
import { cpioArchive } from '../setup/cpio';
import { loadOrder, moduleName, type ModuleIndex } from '../setup/initramfs';
import type { KernelArtifacts } from '../setup/kernel';
import { SCENARIOS } from '../scenarios';
import { kernelCmdline, qemuArgv, type VmConfig } from '../vm';

const kernel = (id: string): KernelArtifacts => ({
  id,
  release: `${id}.0-1-amd64`,
  version: `${id}.1-1`,
  root: `/cache/${id}/root`,
  vmlinuz: `/cache/${id}/root/boot/vmlinuz`,
  initrd: `/cache/${id}/initrd.cpio.gz`,
  variants: [],
  vfioAliases: [],
});

/** Reads a newc archive back: name -> {mode, data}. */
function readCpio(
  buf: Buffer,
): Map<string, { mode: number; data: Buffer; rdev: [number, number] }> {
  const out = new Map<string, { mode: number; data: Buffer; rdev: [number, number] }>();
  let off = 0;
  const pad = (n: number): number => (n + 3) & ~3;
  for (;;) {
    assert.equal(buf.toString('ascii', off, off + 6), '070701');
    const f = (i: number): number =>
      Number.parseInt(buf.toString('ascii', off + 6 + i * 8, off + 14 + i * 8), 16);
    const namesize = f(11);
    const filesize = f(6);
    const name = buf.toString('utf8', off + 110, off + 110 + namesize - 1);
    const dataOff = pad(off + 110 + namesize);
    if (name === 'TRAILER!!!') return out;
    out.set(name, {
      mode: f(1),
      data: buf.subarray(dataOff, dataOff + filesize),
      rdev: [f(9), f(10)],
    });
    off = pad(dataOff + filesize);
  }
}

describe('cpio newc writer', () => {
  const archive = cpioArchive([
    { kind: 'dir', path: 'bin' },
    { kind: 'file', path: '/init', data: Buffer.from('#!/bin/sh\n'), mode: 0o755 },
    { kind: 'symlink', path: 'bin/sh', target: 'busybox' },
    { kind: 'chardev', path: 'dev/console', major: 5, minor: 1 },
    { kind: 'file', path: 'odd', data: Buffer.from('abcde') },
  ]);

  it('round-trips names, modes, contents and device numbers', () => {
    const e = readCpio(archive);
    assert.deepEqual([...e.keys()], ['bin', 'init', 'bin/sh', 'dev/console', 'odd']);
    assert.equal(e.get('init')!.mode, 0o100755);
    assert.equal(e.get('init')!.data.toString(), '#!/bin/sh\n');
    assert.equal(e.get('bin/sh')!.mode, 0o120777);
    assert.equal(e.get('bin/sh')!.data.toString(), 'busybox');
    assert.deepEqual(e.get('dev/console')!.rdev, [5, 1]);
    assert.equal(e.get('odd')!.data.toString(), 'abcde');
  });

  it('is what cpio(1) reads', { skip: !fs.existsSync('/bin/busybox') && 'no busybox' }, () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cpio-'));
    try {
      fs.writeFileSync(path.join(dir, 'a.cpio'), archive);
      const list = execFileSync('/bin/busybox', ['cpio', '-t', '-F', path.join(dir, 'a.cpio')], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      });
      assert.deepEqual(list.trim().split('\n'), ['bin', 'init', 'bin/sh', 'dev/console', 'odd']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('initramfs module closure', () => {
  const index: ModuleIndex = {
    paths: new Map([
      ['9p', 'kernel/fs/9p/9p.ko.xz'],
      ['9pnet', 'kernel/net/9p/9pnet.ko.xz'],
      ['9pnet_virtio', 'kernel/net/9p/9pnet_virtio.ko.xz'],
      ['netfs', 'kernel/fs/netfs/netfs.ko.xz'],
    ]),
    deps: new Map([
      ['kernel/fs/9p/9p.ko.xz', ['kernel/net/9p/9pnet.ko.xz', 'kernel/fs/netfs/netfs.ko.xz']],
      ['kernel/net/9p/9pnet_virtio.ko.xz', ['kernel/net/9p/9pnet.ko.xz']],
      ['kernel/net/9p/9pnet.ko.xz', []],
      ['kernel/fs/netfs/netfs.ko.xz', []],
    ]),
    builtin: new Set(['virtio_pci']),
  };

  it('orders dependencies first, once each, skipping built-ins', () => {
    assert.deepEqual(loadOrder(index, ['virtio_pci', '9pnet_virtio', '9p']), [
      'kernel/net/9p/9pnet.ko.xz',
      'kernel/net/9p/9pnet_virtio.ko.xz',
      'kernel/fs/netfs/netfs.ko.xz',
      'kernel/fs/9p/9p.ko.xz',
    ]);
  });

  it('fails on a module that is neither loadable nor built in', () => {
    assert.throws(() => loadOrder(index, ['overlay']), /overlay/);
  });

  it('names modules like kmod does', () => {
    assert.equal(moduleName('updates/vfio-variants/mlx5-vfio-pci.ko'), 'mlx5_vfio_pci');
    assert.equal(moduleName('kernel/fs/9p/9p.ko.zst'), '9p');
  });
});

describe('apt helpers', () => {
  it('parses apt-cache depends, alternatives and virtual packages included', () => {
    const out =
      'linux-headers-6.12.1-amd64\n  Depends: linux-base\n |Depends: linux-image-6.12.1-amd64\n  Depends: <linux-kbuild-6.12.1>\n  PreDepends: dpkg\n  Recommends: x\n';
    assert.deepEqual(parseDepends(out), [
      'linux-base',
      'linux-image-6.12.1-amd64',
      'linux-kbuild-6.12.1',
      'dpkg',
    ]);
  });

  it('names .deb files like apt-get download', () => {
    assert.equal(
      debFileName({ name: 'qemu-system-x86', version: '1:7.2+dfsg-7', architecture: 'amd64' }),
      'qemu-system-x86_1%3a7.2+dfsg-7_amd64.deb',
    );
  });
});

describe('QEMU command line', () => {
  const cfg = (iommu: boolean): VmConfig => ({
    name: 't',
    kernel: kernel('6.12'),
    iommu,
    shareDir: '/tmp/share',
    consoleFile: '/tmp/c',
    timeoutMs: 1,
    cpus: 1,
    memoryMb: 1024,
  });

  it('emulates an IOMMU only when asked, and says so on the kernel command line', () => {
    assert.ok(qemuArgv(cfg(true)).includes('intel-iommu,intremap=off'));
    assert.ok(!qemuArgv(cfg(false)).some((a) => a.startsWith('intel-iommu')));
    assert.match(kernelCmdline(cfg(true)), /\bintel_iommu=on\b/);
    assert.match(kernelCmdline(cfg(false)), /\bintel_iommu=off\b/);
    assert.match(
      kernelCmdline(cfg(true)),
      /\bno_timer_check\b/,
      'a slow TCG host must not make the IO-APIC timer check panic',
    );
  });

  it('shares the host root read-only at the root device slot, results writable at theirs', () => {
    const argv = qemuArgv(cfg(true));
    assert.ok(
      argv.includes('local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap'),
    );
    assert.ok(argv.includes('virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot,addr=0x10'));
    assert.ok(argv.includes('virtio-9p-pci,fsdev=results,mount_tag=results,addr=0x11'));
    assert.ok(
      argv.includes('local,id=results,path=/tmp/share,security_model=none,multidevs=remap'),
    );
  });

  it('adds the words a reboot boot needs to the kernel command line', () => {
    assert.doesNotMatch(kernelCmdline(cfg(true)), /root=/);
    assert.match(
      kernelCmdline({ ...cfg(true), extraCmdline: ['root=hostroot', 'rootfstype=9p'] }),
      /intel_iommu=on root=hostroot rootfstype=9p$/,
    );
  });

  it('places every emulated device at its machine address', () => {
    const argv = qemuArgv(cfg(true));
    for (const d of Object.values(MACHINE)) {
      if (!d.qemu) continue;
      assert.ok(argv.includes(d.qemu), d.qemu);
      assert.ok(d.qemu.includes(`addr=0x${d.address.slice(8, 10)}`), `${d.address} vs ${d.qemu}`);
    }
  });
});

describe('boot planning', () => {
  const s = (name: string, boots: Scenario['boots']): Scenario => ({
    name,
    title: name,
    boots,
    run: () => undefined,
  });
  const scenarios = [s('a', ['iommu']), s('b', ['iommu', 'no-iommu']), s('c', ['no-iommu'])];

  it('boots every kernel with an IOMMU, then without, each with its scenarios', () => {
    const boots = planBoots([kernel('6.1'), kernel('6.12')], [], scenarios);
    assert.deepEqual(
      boots.map((b) => [b.name, b.iommu, b.scenarios.map((x) => x.name)]),
      [
        ['6.1', true, ['a', 'b']],
        ['6.12', true, ['a', 'b']],
        ['6.1-no-iommu', false, ['b', 'c']],
        ['6.12-no-iommu', false, ['b', 'c']],
      ],
    );
  });

  it('plans a reboot pair per kernel (same) or per kernel pair, between the IOMMU and no-IOMMU boots', () => {
    const same: Scenario = { ...s('r', ['reboot']), reboot: { kernels: 'same' } };
    const change: Scenario = { ...s('k', ['reboot']), reboot: { kernels: ['6.1', '6.12'] } };
    const boots = planBoots([kernel('6.1'), kernel('6.12')], [], [...scenarios, same, change]);
    assert.deepEqual(
      boots.map((b) => [
        b.name,
        b.kernel.id,
        b.scenarios.map((x) => x.name).join(','),
        b.reboot
          ? `${b.reboot.chain}#${b.reboot.stage} other=${b.reboot.other.id} installed=${b.reboot.installed.map((k) => k.id).join('+')}`
          : '-',
      ]),
      [
        ['6.1', '6.1', 'a,b', '-'],
        ['6.12', '6.12', 'a,b', '-'],
        ['6.1-reboot1', '6.1', 'r', '6.1-reboot#1 other=6.1 installed=6.1'],
        ['6.1-reboot2', '6.1', 'r', '6.1-reboot#2 other=6.1 installed=6.1'],
        ['6.12-reboot1', '6.12', 'r', '6.12-reboot#1 other=6.12 installed=6.12'],
        ['6.12-reboot2', '6.12', 'r', '6.12-reboot#2 other=6.12 installed=6.12'],
        // the first kernel stays installed next to the second
        ['6.1-6.12-reboot1', '6.1', 'k', '6.1-6.12-reboot#1 other=6.12 installed=6.1'],
        ['6.1-6.12-reboot2', '6.12', 'k', '6.1-6.12-reboot#2 other=6.1 installed=6.1+6.12'],
        ['6.1-no-iommu', '6.1', 'b,c', '-'],
        ['6.12-no-iommu', '6.12', 'b,c', '-'],
      ],
    );
    assert.ok(boots.every((b) => !b.reboot || b.iommu));
    assert.deepEqual(
      chains(boots).map((c) => c.map((b) => b.name)),
      [
        ['6.1'],
        ['6.12'],
        ['6.1-reboot1', '6.1-reboot2'],
        ['6.12-reboot1', '6.12-reboot2'],
        ['6.1-6.12-reboot1', '6.1-6.12-reboot2'],
        ['6.1-no-iommu'],
        ['6.12-no-iommu'],
      ],
    );
    // A kernel change needs both kernels.
    assert.deepEqual(planBoots([kernel('6.12')], ['k'], [change]), []);
    // `only` limits a same-kernel pair to those kernels; a kernel change is unaffected.
    const some: Scenario = { ...s('o', ['reboot']), reboot: { kernels: 'same', only: ['6.12'] } };
    assert.deepEqual(
      planBoots([kernel('5.10'), kernel('6.1'), kernel('6.12')], ['o', 'k'], [some, change]).map(
        (b) => b.name,
      ),
      ['6.12-reboot1', '6.12-reboot2', '6.1-6.12-reboot1', '6.1-6.12-reboot2'],
    );
  });

  it('a scenario limited to some kernels runs only on their boots', () => {
    const only: Scenario = { ...s('x', ['iommu']), kernels: ['6.12'] };
    assert.deepEqual(
      planBoots([kernel('6.1'), kernel('6.12')], ['x'], [only]).map((b) => [
        b.name,
        b.scenarios.map((y) => y.name).join(','),
      ]),
      [['6.12', 'x']],
    );
  });

  it('drops boots with nothing selected', () => {
    assert.deepEqual(
      planBoots([kernel('6.12')], ['a'], scenarios).map((b) => b.name),
      ['6.12'],
    );
  });

  it('every scenario of the suite has a unique name and a boot', () => {
    assert.equal(new Set(SCENARIOS.map((x) => x.name)).size, SCENARIOS.length);
    for (const x of SCENARIOS) assert.ok(x.boots.length > 0, x.name);
  });

  it('runs at most N tasks at once and keeps their order', async () => {
    let running = 0;
    let peak = 0;
    const task = (v: number) => async (): Promise<number> => {
      peak = Math.max(peak, ++running);
      await new Promise((r) => setTimeout(r, 5 * (4 - v)));
      running--;
      return v;
    };
    assert.deepEqual(await pool(2, [0, 1, 2, 3].map(task)), [0, 1, 2, 3]);
    assert.equal(peak, 2);
  });
});

describe('reboot pairs on the host', () => {
  const k = kernel('6.12');
  const pair: BootPlan[] = [1, 2].map((stage) => ({
    name: `6.12-reboot${stage}`,
    kernel: k,
    iommu: true,
    scenarios: [SCENARIOS[0]!],
    reboot: { chain: '6.12-reboot', stage: stage as 1 | 2, installed: [k], other: k },
  }));
  const withRunDir = async (body: (env: BootEnv) => Promise<void>): Promise<void> => {
    const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'chain-'));
    try {
      await body({
        runDir,
        vfioctl: '/x/vfioctl.js',
        runner: '/x/main.js',
        node: '/usr/bin/node',
        cpus: 1,
        memoryMb: 1024,
        scenarioTimeoutMs: 1000,
        bootTimeoutMs: 1000,
      });
    } finally {
      fs.rmSync(runDir, { recursive: true, force: true });
    }
  };
  /** Stands in for runBoot: moves the layer as it does, writes into it, passes or fails. */
  const fakeBoot =
    (env: BootEnv, pass: boolean[], seen: (string | undefined)[]) =>
    async (
      plan: BootPlan,
      _e: BootEnv,
      _l?: (line: string) => void,
      from?: string,
    ): Promise<BootOutcome> => {
      seen.push(from && fs.readdirSync(from).join(','));
      const persist = hostPersistDir(path.join(env.runDir, plan.name));
      fs.mkdirSync(path.dirname(persist), { recursive: true });
      if (from) fs.renameSync(from, persist);
      else fs.mkdirSync(persist);
      fs.writeFileSync(path.join(persist, `from-${plan.name}`), '');
      const status = pass[seen.length - 1] ? 'pass' : 'fail';
      return {
        plan,
        vm: { ms: 1, exitCode: 0, timedOut: false, console: '' },
        consoleFile: '/dev/null',
        facts: null,
        problem: null,
        results: [
          {
            scenario: plan.scenarios[0]!.name,
            boot: plan.name,
            status,
            message: null,
            ms: 1,
            transcript: [],
            kmsg: [],
          },
        ],
      };
    };

  it("hands the first boot's persistent layer to the second, then deletes it", () =>
    withRunDir(async (env) => {
      const seen: (string | undefined)[] = [];
      const out = await runChain(pair, env, {}, fakeBoot(env, [true, true], seen));
      assert.deepEqual(seen, [undefined, 'from-6.12-reboot1']);
      assert.deepEqual(
        out.map((o) => o.results[0]!.status),
        ['pass', 'pass'],
      );
      for (const b of pair)
        assert.ok(
          !fs.existsSync(hostPersistDir(path.join(env.runDir, b.name))),
          `${b.name}: persistent layer deleted`,
        );
    }));

  it('skips the second boot when the first did not pass, and still deletes the layer', () =>
    withRunDir(async (env) => {
      const seen: (string | undefined)[] = [];
      const out = await runChain(pair, env, {}, fakeBoot(env, [false], seen));
      assert.equal(seen.length, 1);
      assert.deepEqual(
        out.map((o) => o.results[0]!.status),
        ['fail', 'skip'],
      );
      assert.match(out[1]!.results[0]!.message ?? '', /\(6\.12-reboot1\) did not pass/);
      assert.ok(!fs.existsSync(hostPersistDir(path.join(env.runDir, '6.12-reboot1'))));
    }));
});

describe('time limits', () => {
  it('a VM gets its boot allowance plus one scenario limit per scenario', () => {
    assert.equal(
      vmTimeoutMs({ bootTimeoutMs: 180_000, scenarioTimeoutMs: 300_000 }, 17),
      180_000 + 17 * 300_000,
    );
    assert.equal(vmTimeoutMs({ bootTimeoutMs: 180_000, scenarioTimeoutMs: 300_000 }, 1), 480_000);
  });

  it('the watchdog times each scenario from its start line, not the VM from its boot', async () => {
    const over: string[] = [];
    const w = new ScenarioWatchdog(60, (s) => over.push(s));
    const wait = (ms: number) => new Promise((r) => setTimeout(r, ms));
    // Three scenarios of 40 ms each: 120 ms in all, each under its 60 ms limit.
    for (const name of ['a', 'b', 'c']) {
      w.line(`E2E: scenario ${name} ...`);
      await wait(40);
      w.line(`E2E: scenario ${name}: PASS (0.0s)`);
      w.line(`E2E: scenario ${name}: figure: x`);
    }
    await wait(80);
    assert.deepEqual(over, [], 'finished scenarios never time out');
    w.line('E2E: scenario slow ...');
    w.line('some kernel line');
    await wait(100);
    assert.deepEqual(over, ['slow']);
    assert.equal(w.overrun, 'slow');
    w.stop();
  });

  it('an aborted command is killed like a timed-out one', async () => {
    const stop = new AbortController();
    setTimeout(() => stop.abort(), 50);
    const r = await run(['sleep', '10'], { signal: stop.signal, timeoutMs: 20_000 });
    assert.equal(r.signal, 'SIGKILL');
    assert.ok(r.ms < 5000, `killed after ${r.ms} ms`);
  });
});

describe('private apt configuration (Debian 11 kernel)', () => {
  it("points apt at its own sources, lists, cache and empty status, never the host's", () => {
    const cache = fs.mkdtempSync(path.join(os.tmpdir(), 'apt-'));
    try {
      const spec = KERNELS.find((k) => k.id === '5.10');
      assert.ok(spec?.apt, '5.10 comes from a private apt configuration');
      const v = privateApt(spec.apt, cache);
      const dir = path.join(cache, 'apt', 'bullseye');
      assert.equal(
        fs.readFileSync(path.join(dir, 'sources.list'), 'utf8'),
        spec.apt.sources.map((l) => l + '\n').join(''),
      );
      assert.match(
        spec.apt.sources.join('\n'),
        /deb \[signed-by=\/usr\/share\/keyrings\/debian-archive-keyring\.gpg\] http:\/\/deb\.debian\.org\/debian bullseye main/,
      );
      assert.match(spec.apt.sources.join('\n'), /debian-security bullseye-security main/);
      const opts: Record<string, string> = Object.fromEntries(
        v.options.filter((_, i) => i % 2 === 1).map((o) => o.split(/=(.*)/s).slice(0, 2)),
      );
      assert.equal(opts['Dir::Etc::SourceList'], path.join(dir, 'sources.list'));
      assert.equal(opts['Dir::State::Lists'], path.join(dir, 'lists'));
      assert.equal(opts['Dir::State::status'], path.join(dir, 'status'));
      assert.equal(
        fs.readFileSync(opts['Dir::State::status']!, 'utf8'),
        '',
        'no installed package can be a candidate',
      );
      for (const [k, val] of Object.entries(opts))
        if (k.startsWith('Dir::'))
          assert.ok(val!.startsWith(dir), `${k}=${val} is inside the private directory`);
      assert.equal(
        privateApt(spec.apt, cache),
        v,
        'one view per directory (its lists are updated once)',
      );
      assert.ok(
        KERNELS.filter((k) => k.id !== '5.10').every((k) => !k.apt),
        'the bookworm kernels use the host apt',
      );
    } finally {
      fs.rmSync(cache, { recursive: true, force: true });
    }
  });
});

describe('report', () => {
  const outcome = (
    statuses: ('pass' | 'fail' | 'skip')[],
    problem: string | null = null,
  ): BootOutcome => ({
    plan: { name: '6.12', kernel: kernel('6.12'), iommu: true, scenarios: [] },
    vm: { ms: 1000, exitCode: 0, timedOut: false, console: 'E2E: runner done\n' },
    consoleFile: '/tmp/c',
    facts: null,
    problem,
    results: statuses.map((status, i) => ({
      scenario: SCENARIOS[i]!.name,
      boot: '6.12',
      status,
      message: status === 'pass' ? null : 'why',
      ms: 10,
      transcript: ['step'],
      kmsg: [],
    })),
  });

  it('ends with the line CI reads', () => {
    let out = '';
    printReport([outcome(['pass', 'fail', 'skip'])], 5000, (s) => (out += s));
    assert.equal(out.trimEnd().split('\n').pop(), '1 passed, 1 failed, 1 skipped');
    assert.match(out, /guest console/);
  });

  it('lists the figures of passing scenarios, measured and not asserted', () => {
    const o = outcome(['pass']);
    const withFigure: BootOutcome = {
      ...o,
      results: [{ ...o.results[0]!, figures: ['16 devices: vfioctl 1.00 s vs driverctl 4.00 s'] }],
    };
    let out = '';
    printReport([withFigure], 5000, (s) => (out += s));
    assert.match(
      out,
      new RegExp(
        `figures \\(measured, not asserted\\):\\n  ${SCENARIOS[0]!.name} on 6\\.12: 16 devices: vfioctl 1\\.00 s vs driverctl 4\\.00 s\\n`,
      ),
    );
  });

  it('counts a broken boot as a failure even when no scenario result says so', () => {
    assert.deepEqual(totals([outcome(['pass'], 'the VM did not power off')]), {
      passed: 1,
      failed: 1,
      skipped: 0,
    });
  });
});
