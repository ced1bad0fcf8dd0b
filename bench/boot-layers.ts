// What each boot layer costs with 512 configured VFs (issue 5: "State in the README what each
// layer costs at boot with 512 configured VFs"). Two E810-like PFs with 256 VFs each, a rule per
// PF (`sriov: {numVfs: 256, vfIntent: "vfio"}`). Times are medians of alternating runs next to
// `node -e 0` and `sh -c :` from the same run. Writes bench/boot-layers.md. Run: npm run bench:boot
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { Fixture } from '../test/support/fixture';
import { BENCH_ENV, BENCH_ENV_REMOVED, writeFormatted } from './measure';

const REL = '6.12.0-bench';
const PFS = ['0000:3b:00.0', '0000:5e:00.0'];
const VFS = 256;
const ROUNDS = 7;
const VFIOCTL = path.resolve('dist/vfioctl.js');

function vfAddr(pf: string, i: number): string {
  const [dom, bus] = pf.split(':') as [string, string];
  const rid = (Number.parseInt(bus, 16) << 8) + 1 + i; // offset 1, stride 1
  return `${dom}:${((rid >> 8) & 0xff).toString(16).padStart(2, '0')}:${((rid >> 3) & 0x1f).toString(16).padStart(2, '0')}.${rid & 7}`;
}

/** vfState: where the VFs are: absent (early boot), unbound (just created), vfio (won). */
function tree(vfState: 'absent' | 'unbound' | 'vfio'): Fixture {
  const f = Fixture.create().kernel(REL).iommu(true);
  f.modulesAlias([
    'alias pci:v00008086d00001592sv*sd*bc*sc*i* ice',
    'alias pci:v00008086d00001889sv*sd*bc*sc*i* iavf',
    'alias vfio_pci:v*d*sv*sd*bc*sc*i* vfio_pci',
  ]);
  f.tree.write(
    `/lib/modules/${REL}/modules.dep`,
    'kernel/drivers/vfio/pci/vfio-pci.ko.xz:\nkernel/drivers/net/ethernet/intel/ice/ice.ko.xz:\nkernel/drivers/net/ethernet/intel/iavf/iavf.ko.xz:\n',
  );
  f.driver('ice').driver('vfio-pci', 'vfio_pci');
  let group = 10;
  for (const pf of PFS) {
    f.device({
      address: pf,
      vendor: '8086',
      device: '1592',
      driver: 'ice',
      iommuGroup: String(group++),
      sriov: { totalVfs: VFS, numVfs: vfState === 'absent' ? 0 : VFS, autoprobe: false },
    });
    for (const [k, v] of Object.entries({
      sriov_offset: '1',
      sriov_stride: '1',
      sriov_vf_device: '1889',
    }))
      f.tree.write(`/sys/bus/pci/devices/${pf}/${k}`, `${v}\n`);
    if (vfState === 'absent') continue;
    for (let i = 0; i < VFS; i++) {
      const a = vfAddr(pf, i);
      f.device({
        address: a,
        vendor: '8086',
        device: '1889',
        physfn: pf,
        iommuGroup: String(group++),
        driver: vfState === 'vfio' ? 'vfio-pci' : null,
        driverOverride: vfState === 'vfio' ? 'vfio-pci' : null,
        ...(vfState === 'vfio' ? { vfioDev: `vfio${i}` } : {}),
      });
    }
  }
  const rules = PFS.map((pf) => ({
    match: { address: pf },
    sriov: { numVfs: VFS, vfIntent: 'vfio' },
  }));
  f.tree.write('/etc/vfioctl/vfioctl.json', JSON.stringify({ version: 1, rules }, null, 2), 0o644);
  return f;
}

function timeIt(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): number {
  const t = process.hrtime.bigint();
  const r = spawnSync(cmd, args, {
    // BENCH_ENV: no NODE_EXTRA_CA_CERTS (a CA bundle loaded by every Node start is no host's cost).
    env: { ...BENCH_ENV, ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const ms = Number(process.hrtime.bigint() - t) / 1e6;
  if (r.status !== 0 && r.status !== 3)
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

function main(): void {
  const absent = tree('absent');
  const unbound = tree('unbound');
  const won = tree('vfio');
  const trustEnv =
    process.getuid?.() === 0 ? {} : { VFIOCTL_TRUST_UID: String(process.getuid?.()) };
  for (const f of [absent, unbound, won])
    timeIt(
      'node',
      [VFIOCTL, '--root', f.dir, 'install', '--exec', '/usr/local/bin/vfioctl'],
      trustEnv,
    );
  const map = absent.tree.read(`/etc/vfioctl/boot/${REL}.map`)!;
  const mapEntries = map.split('\n').filter((l) => /^(address|id) /.test(l)).length;
  const rules = absent.tree.read('/etc/udev/rules.d/60-vfioctl.rules')!;
  const bin = fs.mkdtempSync(path.join(absent.dir, 'bin-'));
  fs.writeFileSync(path.join(bin, 'modprobe'), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
  const early = (f: Fixture) => () =>
    timeIt('sh', [f.tree.abs('/usr/lib/vfioctl/vfioctl-early')], {
      PATH: `${bin}:${process.env.PATH}`,
      VFIOCTL_ROOT: f.dir,
      VFIOCTL_KERNEL: REL,
    });
  const rows: [string, () => number][] = [
    ['`node -e 0` (peer: Node start-up)', () => timeIt('node', ['-e', '0'])],
    ['`sh -c :` (peer: a shell)', () => timeIt('sh', ['-c', ':'])],
    [
      'map + udev rule regeneration (`install --refresh`, one kernel)',
      () => timeIt('node', [VFIOCTL, '--root', absent.dir, 'install', '--refresh'], trustEnv),
    ],
    ['early unit / initramfs script, VFs not created yet (real early boot)', early(absent)],
    ['early unit / initramfs script, 512 unclaimed VFs present (worst case)', early(unbound)],
    [
      'late unit `apply --boot`, all 512 VFs already won (steady state)',
      () => timeIt('node', [VFIOCTL, '--root', won.dir, 'apply', '--boot'], trustEnv),
    ],
    [
      'late unit `apply --boot --dry-run`, 512 VFs to bind (planning only)',
      () =>
        timeIt('node', [VFIOCTL, '--root', unbound.dir, 'apply', '--boot', '--dry-run'], trustEnv),
    ],
  ];
  const samples = rows.map(() => [] as number[]);
  for (let r = 0; r < ROUNDS; r++) rows.forEach(([, fn], i) => samples[i]!.push(fn()));
  const node = median(samples[0]!);
  const lines = [
    '# Boot-layer costs with 512 configured VFs',
    '',
    `Generated by \`npm run bench:boot\` (bench/boot-layers.ts) on ${new Date().toISOString()}, node ${process.version}, ${ROUNDS} alternating rounds, medians${BENCH_ENV_REMOVED.length ? `, every command without ${BENCH_ENV_REMOVED.join(', ')}` : ''}. Two PFs, 256 VFs each, one \`sriov\` rule per PF (vfIntent vfio). Fixture trees, not a kernel: the sysfs writes land in files, so kernel probe time is not included (on real hardware each VF probe adds the driver's own time).`,
    '',
    `Map: ${mapEntries} entries; udev rule: ${rules.split('\n').length} lines (${(rules.length / 1024).toFixed(1)} KiB), one string comparison per line per \`add\` event, no process started unless the device matches (then \`kmod load\`, a udev builtin, and one \`sh\` for the probe).`,
    '',
    '| layer | median | vs `node -e 0` |',
    '|---|---:|---:|',
    ...rows.map(
      ([name], i) =>
        `| ${name} | ${median(samples[i]!).toFixed(1)} ms | ${(median(samples[i]!) / node).toFixed(2)}x |`,
    ),
  ];
  writeFormatted('bench/boot-layers.md', lines.join('\n') + '\n');
  process.stdout.write(lines.join('\n') + '\n');
  for (const f of [absent, unbound, won]) f.cleanup();
}

main();
