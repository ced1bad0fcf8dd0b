// One kernel, ready to boot: the Debian image unpacked (never installed), the vfio variant drivers
// Debian lacks built out of tree from the same version's source, depmod run, an initramfs built.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { log } from '../lib/log';
import { pipeline, runChecked } from '../lib/proc';
import type { KernelSpec, VariantSource } from '../kernels';
import {
  candidate,
  debFileName,
  dependsOf,
  download,
  hasVersion,
  HOST_APT,
  type AptView,
  type PackageVersion,
} from './apt';
import { freshDir, hashOf, readStamp, writeStamp } from './cache';
import { BOOT_MODULES, BUSYBOX, buildInitramfs, readModuleIndex } from './initramfs';

/** Bump when the layout or the build recipe changes: every cached kernel is rebuilt. */
const KERNEL_FORMAT = 'kernel-v1';

export interface ResolvedKernel {
  readonly spec: KernelSpec;
  /** e.g. 6.12.117+deb12-amd64 */
  readonly release: string;
  readonly image: PackageVersion;
  /**
   * linux-headers-<release>, its -common and linux-kbuild packages (none when nothing is built).
   */
  readonly headers: readonly PackageVersion[];
  /** The source package (null when nothing is built). */
  readonly source: PackageVersion | null;
  /** Where these packages come from. */
  readonly apt: AptView;
}

export interface KernelArtifacts {
  readonly id: string;
  readonly release: string;
  /** Debian package version of the image, e.g. 6.12.117-1~deb12u1 */
  readonly version: string;
  /** Directory holding boot/ and lib/modules/<release>/ */
  readonly root: string;
  readonly vmlinuz: string;
  readonly initrd: string;
  /** Variant drivers available in this kernel (built here or shipped by Debian). */
  readonly variants: readonly string[];
  /** Every `alias vfio_pci:... module` line of modules.alias. */
  readonly vfioAliases: readonly string[];
}

/** The package with the same version as the image (they come from one source build). */
async function sameVersion(name: string, version: string, apt: AptView): Promise<PackageVersion> {
  const c = await candidate(name, apt);
  if (c.version === version) return c;
  if (await hasVersion(name, version, apt)) return { ...c, version };
  throw new Error(
    `${name} ${version} (the kernel image's version) is not available; apt offers ${c.version}`,
  );
}

/** Finds the exact packages behind a kernel spec (they change with every Debian kernel update). */
export async function resolveKernel(
  spec: KernelSpec,
  apt: AptView = HOST_APT,
): Promise<ResolvedKernel> {
  const imageName = (await dependsOf(spec.metaPackage, apt)).find((d) =>
    /^linux-image-\d.*-amd64$/.test(d),
  );
  if (!imageName) throw new Error(`${spec.metaPackage} depends on no linux-image-*-amd64 package`);
  const release = imageName.slice('linux-image-'.length);
  const image = await candidate(imageName, apt);
  // Headers and source only serve the variant build: a kernel without variants needs neither.
  if (spec.variants.length === 0) return { spec, release, image, headers: [], source: null, apt };
  const headerNames = [
    `linux-headers-${release}`,
    ...(await dependsOf(`linux-headers-${release}`, apt)).filter((d) =>
      /^linux-(headers|kbuild)-/.test(d),
    ),
  ];
  const headers = await Promise.all(
    [...new Set(headerNames)].map((n) => sameVersion(n, image.version, apt)),
  );
  const source = await sameVersion(spec.sourcePackage, image.version, apt);
  return { spec, release, image, headers, source, apt };
}

/** Every package a resolved kernel downloads. */
export function packagesOf(k: ResolvedKernel): PackageVersion[] {
  return [k.image, ...k.headers, ...(k.source ? [k.source] : [])];
}

export function kernelKey(k: ResolvedKernel): string {
  return hashOf(
    KERNEL_FORMAT,
    ...packagesOf(k).map(debFileName),
    ...k.spec.variants.map((v) => `${v.module}:${v.dir}:${v.config}`),
  );
}

/**
 * Returns the kernel's artifacts, building them into `dir` unless a complete build for the same
 * key is already there. `debs` is the download cache.
 */
export async function provisionKernel(
  k: ResolvedKernel,
  dir: string,
  debs: string,
  initScript: Buffer,
): Promise<KernelArtifacts> {
  const key = kernelKey(k);
  const cached = readStamp<Omit<KernelArtifacts, 'initrd'>>(dir, key);
  if (cached) return { ...cached, initrd: ensureInitramfs(k, dir, cached.root, initScript) };

  log(`kernel ${k.spec.id}: building ${k.release} (cache key ${key})`);
  freshDir(dir);
  const root = path.join(dir, 'root');
  const modulesDir = path.join(root, 'lib/modules', k.release);
  await runChecked(['dpkg-deb', '-x', await download(k.image, debs, k.apt), root]);
  await runChecked(['depmod', '-b', root, k.release]);

  const present = readModuleIndex(modulesDir);
  const toBuild = k.spec.variants.filter(
    (v) => !present.paths.has(v.module) && !present.builtin.has(v.module),
  );
  for (const v of k.spec.variants)
    if (!toBuild.includes(v)) log(`kernel ${k.spec.id}: Debian ships ${v.module}; not building it`);
  if (toBuild.length > 0) {
    const built = await buildVariants(k, toBuild, path.join(dir, 'build'), debs);
    const dest = path.join(modulesDir, 'updates/vfio-variants');
    fs.mkdirSync(dest, { recursive: true });
    for (const ko of built) fs.copyFileSync(ko, path.join(dest, path.basename(ko)));
    await runChecked(['depmod', '-b', root, k.release]);
    fs.rmSync(path.join(dir, 'build'), { recursive: true, force: true });
  }

  const aliases = fs
    .readFileSync(path.join(modulesDir, 'modules.alias'), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('alias vfio_pci:'));
  for (const v of k.spec.variants) {
    if (!aliases.some((a) => a.endsWith(` ${v.module}`)))
      throw new Error(`kernel ${k.spec.id}: ${v.module} has no vfio_pci: alias after depmod`);
  }

  const vmlinuz = path.join(root, 'boot', `vmlinuz-${k.release}`);
  if (!fs.existsSync(vmlinuz))
    throw new Error(`${debFileName(k.image)} has no boot/vmlinuz-${k.release}`);
  const artifacts: Omit<KernelArtifacts, 'initrd'> = {
    id: k.spec.id,
    release: k.release,
    version: k.image.version,
    root,
    vmlinuz,
    variants: k.spec.variants.map((v) => v.module),
    vfioAliases: aliases,
  };
  writeStamp(dir, key, artifacts);
  return { ...artifacts, initrd: ensureInitramfs(k, dir, root, initScript) };
}

/** The initramfs for this kernel and /init, named by what it was built from (cheap to rebuild). */
function ensureInitramfs(k: ResolvedKernel, dir: string, root: string, initScript: Buffer): string {
  const key = hashOf(initScript, fs.readFileSync(BUSYBOX), ...BOOT_MODULES);
  const initrd = path.join(dir, `initrd-${key}.cpio.gz`);
  // The cache is shared by checkouts with other /init scripts, whose runs may be booting theirs
  // right now: only initramfs images unused for a day go (each use renews the mark).
  pruneInitramfs(dir, Date.now() - 24 * 3600_000);
  if (fs.existsSync(initrd)) {
    const now = new Date();
    fs.utimesSync(initrd, now, now);
    return initrd;
  }
  const tmp = `${initrd}.tmp`;
  const ir = buildInitramfs(
    { release: k.release, modulesDir: path.join(root, 'lib/modules', k.release), init: initScript },
    tmp,
  );
  fs.renameSync(tmp, initrd);
  log(
    `kernel ${k.spec.id}: initramfs ${(ir.bytes / 1e6).toFixed(1)} MB with ${ir.modules.join(' ') || 'no modules'}`,
  );
  return initrd;
}

/** Removes initramfs images last used (mtime) before `before` (ms since the epoch). */
export function pruneInitramfs(dir: string, before: number): string[] {
  const gone: string[] = [];
  for (const f of fs.readdirSync(dir)) {
    if (!/^initrd-.*\.cpio\.gz$/.test(f) || fs.statSync(path.join(dir, f)).mtimeMs >= before)
      continue;
    fs.rmSync(path.join(dir, f));
    gone.push(f);
  }
  return gone;
}

/** Builds variant modules out of tree against the kernel's own headers; returns the .ko paths. */
async function buildVariants(
  k: ResolvedKernel,
  variants: readonly VariantSource[],
  work: string,
  debs: string,
): Promise<string[]> {
  freshDir(work);
  const hdr = path.join(work, 'headers');
  for (const h of k.headers)
    await runChecked(['dpkg-deb', '-x', await download(h, debs, k.apt), hdr]);
  const kdir = path.join(hdr, 'usr/src', `linux-headers-${k.release}`);
  relocateHeaders(kdir, hdr);

  // Only the variant directories are taken out of the (large) source tarball.
  const top = k.spec.sourcePackage; // the tarball's top directory, e.g. linux-source-6.12
  const src = path.join(work, 'source');
  fs.mkdirSync(src);
  if (!k.source)
    throw new Error(
      `kernel ${k.spec.id}: no source package resolved to build ${variants.map((v) => v.module).join(' ')}`,
    );
  const sourceDeb = await download(k.source, debs, k.apt);
  log(
    `kernel ${k.spec.id}: extracting ${variants.map((v) => v.dir).join(' ')} from ${k.spec.sourcePackage}`,
  );
  await pipeline([
    ['dpkg-deb', '--fsys-tarfile', sourceDeb],
    ['tar', '-xO', `./usr/src/${top}.tar.xz`],
    ['tar', '-xJ', '-C', src, ...variants.map((v) => `${top}/${v.dir}`)],
  ]);

  const out: string[] = [];
  for (const v of variants) {
    const dir = path.join(src, top, v.dir);
    log(`kernel ${k.spec.id}: building ${v.module}`);
    await runChecked(
      [
        'make',
        '-C',
        kdir,
        `M=${dir}`,
        `${v.config}=m`,
        'CONFIG_DEBUG_INFO_BTF_MODULES=',
        '-j2',
        'modules',
      ],
      { timeoutMs: 15 * 60_000 },
    );
    const kos = fs.readdirSync(dir).filter((f) => f.endsWith('.ko'));
    if (kos.length === 0) throw new Error(`building ${v.module} produced no .ko in ${dir}`);
    out.push(...kos.map((f) => path.join(dir, f)));
  }
  return out;
}

/**
 * Debian's headers expect to live in /usr/src: the arch Makefile includes the -common tree by
 * absolute path and some links are absolute. Point both at the unpacked copy.
 */
function relocateHeaders(kdir: string, hdr: string): void {
  const mk = path.join(kdir, 'Makefile');
  const text = fs.readFileSync(mk, 'utf8');
  fs.writeFileSync(mk, text.replace(/(^|\s)\/usr\/src\//gm, `$1${hdr}/usr/src/`));
  const walk = (d: string, depth: number): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isSymbolicLink()) {
        const t = fs.readlinkSync(p);
        if (t.startsWith('/usr/')) {
          fs.unlinkSync(p);
          fs.symlinkSync(path.join(hdr, t), p);
        }
      } else if (e.isDirectory() && depth > 0) walk(p, depth - 1);
    }
  };
  walk(kdir, 1);
}
