// apt, used the way an unattended CI job can: `apt-get update` only when something is missing,
// `--no-install-recommends`, exact versions for everything downloaded, and loud failures.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { log } from '../lib/log';
import { CommandError, run, runChecked } from '../lib/proc';

const APT_ENV = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' };

export class AptError extends Error {
  override name = 'AptError';
}

let listsUpdated = false;

async function aptGetUpdate(): Promise<void> {
  if (listsUpdated) return;
  log('apt-get update');
  await runChecked(['apt-get', 'update', '-q'], { env: APT_ENV, timeoutMs: 5 * 60_000 });
  listsUpdated = true;
}

function requireRoot(what: string): void {
  if (process.getuid?.() !== 0) throw new AptError(`${what} needs root (run the e2e suite as root; CI does)`);
}

/** Packages of `names` that dpkg does not list as installed. */
export async function missingPackages(names: readonly string[]): Promise<string[]> {
  const r = await run(['dpkg-query', '-W', '-f=${Package} ${db:Status-Status}\\n', ...names], { env: APT_ENV });
  const installed = new Set(
    r.stdout
      .split('\n')
      .map((l) => l.trim().split(' '))
      .filter((f) => f[1] === 'installed')
      .map((f) => f[0]!.replace(/:.*$/, '')),
  );
  return names.filter((n) => !installed.has(n));
}

/** Installs whatever of `names` is missing (apt-get update first, once, only if needed). */
export async function ensureInstalled(names: readonly string[]): Promise<void> {
  const missing = await missingPackages(names);
  if (missing.length === 0) return;
  requireRoot(`installing ${missing.join(' ')}`);
  await aptGetUpdate();
  log(`apt-get install ${missing.join(' ')}`);
  try {
    await runChecked(['apt-get', 'install', '-y', '-q', '--no-install-recommends', ...missing], { env: APT_ENV, timeoutMs: 15 * 60_000 });
  } catch (e) {
    throw new AptError(`cannot install ${missing.join(' ')}: ${(e as Error).message}`);
  }
}

/** apt-cache with one automatic `apt-get update` when the package lists do not know the package. */
async function aptCache(args: readonly string[]): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const r = await run(['apt-cache', ...args], { env: APT_ENV });
    if (r.code === 0 && r.stdout.trim()) return r.stdout;
    if (attempt > 0 || listsUpdated) throw new AptError(`apt-cache ${args.join(' ')} failed: ${(r.stderr || r.stdout).trim() || 'no such package'}`);
    requireRoot('apt-get update');
    await aptGetUpdate();
  }
}

/** Direct dependencies (`Depends:` and `PreDepends:` only) of a package's candidate version. */
export async function dependsOf(pkg: string): Promise<string[]> {
  return parseDepends(await aptCache(['depends', '--important', '--no-recommends', pkg]));
}

/** Package names on `Depends:`/`PreDepends:` lines of `apt-cache depends` output (alternatives too). */
export function parseDepends(out: string): string[] {
  const deps: string[] = [];
  for (const line of out.split('\n')) {
    const m = /^\s*\|?(?:Pre)?Depends:\s*<?([^\s>]+)>?/.exec(line);
    if (m) deps.push(m[1]!);
  }
  return deps;
}

export interface PackageVersion {
  readonly name: string;
  readonly version: string;
  readonly architecture: string;
}

/** The candidate version apt would install. */
export async function candidate(pkg: string): Promise<PackageVersion> {
  const out = await aptCache(['show', '--no-all-versions', pkg]);
  const field = (f: string): string => {
    const m = new RegExp(`^${f}: (.+)$`, 'm').exec(out);
    if (!m) throw new AptError(`apt-cache show ${pkg}: no ${f} field`);
    return m[1]!.trim();
  };
  return { name: field('Package'), version: field('Version'), architecture: field('Architecture') };
}

/** Whether apt knows `pkg` at exactly `version` (any configured source). */
export async function hasVersion(pkg: string, version: string): Promise<boolean> {
  const out = await aptCache(['madison', pkg]).catch(() => '');
  return out.split('\n').some((l) => l.split('|')[1]?.trim() === version);
}

/** The file name `apt-get download` gives a package (epoch colon escaped). */
export function debFileName(p: PackageVersion): string {
  return `${p.name}_${p.version.replace(/:/g, '%3a')}_${p.architecture}.deb`;
}

/**
 * Downloads one exact package version into `dir` unless it is already there; returns its path.
 * Downloads go to a scratch directory first, so an interrupted download never looks cached.
 */
export async function download(p: PackageVersion, dir: string): Promise<string> {
  const file = path.join(dir, debFileName(p));
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(dir, { recursive: true });
  const scratch = fs.mkdtempSync(path.join(dir, '.partial-'));
  try {
    log(`apt-get download ${p.name}=${p.version}`);
    // `_apt` cannot write into a root-only cache directory: download unsandboxed, as root.
    await runChecked(['apt-get', 'download', '-q', '-o', 'APT::Sandbox::User=root', `${p.name}=${p.version}`], {
      cwd: scratch,
      env: APT_ENV,
      timeoutMs: 20 * 60_000,
    });
    const got = fs.readdirSync(scratch).filter((f) => f.endsWith('.deb'));
    if (got.length !== 1) throw new AptError(`apt-get download ${p.name}=${p.version} left ${got.length} .deb files`);
    fs.renameSync(path.join(scratch, got[0]!), file);
    return file;
  } catch (e) {
    if (e instanceof CommandError) throw new AptError(`cannot download ${p.name}=${p.version} (is the package still in the archive?): ${e.message}`);
    throw e;
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}
