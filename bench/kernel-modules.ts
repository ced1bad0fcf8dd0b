// A real Debian kernel's module index for the synthetic host: the current linux-image-*-amd64
// package is downloaded with apt, unpacked with dpkg-deb and indexed with depmod (kmod), and the
// resulting modules.alias / modules.dep / modules.builtin / modules.builtin.modinfo are cached.
// Nothing of it is committed to the repository.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

/**
 * What vfioctl reads; the cache keeps every modules.* file depmod writes (libkmod needs the .bin
 * ones).
 */
export const MODULE_FILES = [
  'modules.alias',
  'modules.dep',
  'modules.builtin',
  'modules.builtin.modinfo',
  'modules.alias.bin',
  'modules.dep.bin',
] as const;
const CACHE_FORMAT = 2;

/**
 * Variant VFIO drivers' override-only aliases, as depmod writes them from the drivers' ID tables
 * (PCI_DRIVER_OVERRIDE_DEVICE_VFIO) in kernels newer than Debian 12's 6.1.
 */
export const VARIANT_ALIASES: readonly string[] = [
  // drivers/vfio/pci/mlx5/main.c: ConnectX-5..8 and BlueField VFs
  'alias vfio_pci:v000015B3d0000101Esv*sd*bc*sc*i* mlx5_vfio_pci',
  'alias vfio_pci:v000015B3d00002101sv*sd*bc*sc*i* mlx5_vfio_pci',
  'alias vfio_pci:v000015B3d00001021sv*sd*bc*sc*i* mlx5_vfio_pci',
  'alias vfio_pci:v000015B3d00001023sv*sd*bc*sc*i* mlx5_vfio_pci',
  // drivers/vfio/pci/virtio/main.c: virtio-net and virtio-blk VFs
  'alias vfio_pci:v00001AF4d00001041sv*sd*bc*sc*i* virtio_vfio_pci',
  'alias vfio_pci:v00001AF4d00001042sv*sd*bc*sc*i* virtio_vfio_pci',
  // drivers/vfio/pci/qat/main.c: QAT 4xxx/401xx/402xx/420xx VFs
  'alias vfio_pci:v00008086d00004941sv*sd*bc*sc*i* qat_vfio_pci',
  'alias vfio_pci:v00008086d00004943sv*sd*bc*sc*i* qat_vfio_pci',
  'alias vfio_pci:v00008086d00004945sv*sd*bc*sc*i* qat_vfio_pci',
  'alias vfio_pci:v00008086d00004947sv*sd*bc*sc*i* qat_vfio_pci',
  // drivers/vfio/pci/hisilicon: SEC, HPRE, ZIP VFs
  'alias vfio_pci:v000019E5d0000A22Fsv*sd*bc*sc*i* hisi_acc_vfio_pci',
  'alias vfio_pci:v000019E5d0000A251sv*sd*bc*sc*i* hisi_acc_vfio_pci',
  'alias vfio_pci:v000019E5d0000A256sv*sd*bc*sc*i* hisi_acc_vfio_pci',
  // drivers/vfio/pci/pds: AMD/Pensando VF
  'alias vfio_pci:v00001DD8d00001003sv*sd*bc*sc*i* pds_vfio_pci',
  // drivers/vfio/pci/nvgrace-gpu
  'alias vfio_pci:v000010DEd00002342sv*sd*bc*sc*i* nvgrace_gpu_vfio_pci',
  'alias vfio_pci:v000010DEd00002345sv*sd*bc*sc*i* nvgrace_gpu_vfio_pci',
  'alias vfio_pci:v000010DEd00002348sv*sd*bc*sc*i* nvgrace_gpu_vfio_pci',
];

export interface KernelModules {
  release: string;
  /** Debian package the files came from, e.g. linux-image-6.1.0-56-amd64 6.1.192-2. */
  source: string;
  /** Cache directory holding MODULE_FILES. */
  dir: string;
  aliasLines: number;
  /** Every modules.* file in dir. */
  files: string[];
  format: number;
}

function run(cmd: string, args: string[], opts: { cwd?: string } = {}): string {
  const r = spawnSync(cmd, args, { cwd: opts.cwd, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.error) throw new Error(`${cmd}: ${r.error.message}`);
  if (r.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.status}: ${r.stderr.trim()}`);
  return r.stdout;
}

function imagePackage(): string {
  const look = () =>
    /Depends:\s*(linux-image-[0-9][^\s]*-amd64)/.exec(
      spawnSync('apt-cache', ['depends', 'linux-image-amd64'], { encoding: 'utf8' }).stdout ?? '',
    )?.[1];
  let pkg = look();
  if (!pkg) {
    run('apt-get', ['update']);
    pkg = look();
  }
  if (!pkg) throw new Error('cannot resolve linux-image-amd64 with apt-cache depends');
  return pkg;
}

function findDeb(dirs: string[], pkg: string): string | undefined {
  for (const d of dirs) {
    let names: string[] = [];
    try {
      names = fs.readdirSync(d);
    } catch {
      continue;
    }
    const hit = names
      .filter((n) => n.startsWith(`${pkg}_`) && n.endsWith('_amd64.deb'))
      .sort()
      .pop();
    if (hit) return path.join(d, hit);
  }
  return undefined;
}

/** Returns the cached module index of Debian's current amd64 kernel, building it when absent. */
export function debianKernelModules(cacheDir: string, log: (s: string) => void): KernelModules {
  fs.mkdirSync(cacheDir, { recursive: true });
  const stamp = path.join(cacheDir, 'modules.json');
  try {
    const k = JSON.parse(fs.readFileSync(stamp, 'utf8')) as KernelModules;
    if (k.format === CACHE_FORMAT && k.files.every((f) => fs.existsSync(path.join(k.dir, f))))
      return k;
  } catch {
    /* not cached yet */
  }
  const pkg = imagePackage();
  const release = pkg.slice('linux-image-'.length);
  let deb = findDeb([cacheDir, '/var/cache/vfioctl-e2e', '/var/cache/apt/archives'], pkg);
  if (!deb) {
    log(`downloading ${pkg} with apt-get download`);
    run('apt-get', ['download', pkg], { cwd: cacheDir });
    deb = findDeb([cacheDir], pkg);
    if (!deb) throw new Error(`apt-get download ${pkg} left no .deb in ${cacheDir}`);
  }
  const version = run('dpkg-deb', ['-f', deb, 'Version']).trim();
  log(`unpacking ${path.basename(deb)} and running depmod -b ... ${release}`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-bench-kernel-'));
  try {
    run('dpkg-deb', ['-x', deb, tmp]);
    const modDir = [
      path.join(tmp, 'lib/modules', release),
      path.join(tmp, 'usr/lib/modules', release),
    ].find((d) => fs.existsSync(d));
    if (!modDir) throw new Error(`${deb} has no lib/modules/${release}`);
    run('depmod', ['-b', path.dirname(path.dirname(path.dirname(modDir))), release]);
    const out = path.join(cacheDir, release);
    fs.mkdirSync(out, { recursive: true });
    const files = fs.readdirSync(modDir).filter((f) => f.startsWith('modules.'));
    const missing = MODULE_FILES.filter((f) => !files.includes(f));
    if (missing.length) throw new Error(`depmod wrote no ${missing.join(', ')} in ${modDir}`);
    for (const f of files) fs.copyFileSync(path.join(modDir, f), path.join(out, f));
    const aliasLines = fs
      .readFileSync(path.join(out, 'modules.alias'), 'utf8')
      .split('\n')
      .filter(Boolean).length;
    const k: KernelModules = {
      release,
      source: `${pkg} ${version}`,
      dir: out,
      aliasLines,
      files,
      format: CACHE_FORMAT,
    };
    fs.writeFileSync(stamp, JSON.stringify(k, null, 2) + '\n');
    return k;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}
