// apt, used the way an unattended CI job can: `apt-get update` only when something is missing,
// `--no-install-recommends`, exact versions for everything downloaded, and loud failures.
// Packages of another Debian release (Debian 11's kernel) are looked up and downloaded through a
// private apt configuration under the cache (its own sources.list, package lists and status),
// never by changing the host's.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { log } from '../lib/log';
import { CommandError, run, runChecked } from '../lib/proc';

const APT_ENV = { ...process.env, DEBIAN_FRONTEND: 'noninteractive', LC_ALL: 'C' };

export class AptError extends Error {
  override name = 'AptError';
}

/** A Debian release apt does not know on the host: sources.list lines (one-line style). */
export interface AptRepo {
  readonly name: string;
  readonly sources: readonly string[];
}

/** How apt is asked: the host's configuration, or a private one for an AptRepo. */
export interface AptView {
  readonly label: string;
  /** `-o` options for apt-get and apt-cache (none for the host). */
  readonly options: readonly string[];
  /** Private views: their package lists, refreshed before use when older than a day. */
  readonly listsDir?: string;
  listsUpdated: boolean;
}

// Another apt (unattended-upgrades on a fresh CI machine, a parallel job) may hold the dpkg lock:
// wait for it instead of failing.
const LOCK_WAIT = ['-o', 'DPkg::Lock::Timeout=600'];

export const HOST_APT: AptView = { label: 'host', options: [], listsUpdated: false };

const privateViews = new Map<string, AptView>();

/**
 * A private apt configuration for `repo` in `<cache>/apt/<name>/`: apt reads only that
 * sources.list, keeps its lists, package cache and (empty) dpkg status there, and ignores the
 * host's sources and pins, so the host's installed packages never become candidates.
 */
export function privateApt(repo: AptRepo, cache: string): AptView {
  const dir = path.join(cache, 'apt', repo.name);
  const known = privateViews.get(dir);
  if (known) return known;
  for (const d of ['lists/partial', 'cache/archives/partial', 'sources.list.d', 'preferences.d'])
    fs.mkdirSync(path.join(dir, d), { recursive: true });
  const list = path.join(dir, 'sources.list');
  const text = repo.sources.map((l) => l + '\n').join('');
  if (!fs.existsSync(list) || fs.readFileSync(list, 'utf8') !== text) {
    fs.writeFileSync(list, text);
    // Other sources: the lists fetched for the old ones must not answer for the new ones.
    for (const f of fs.readdirSync(path.join(dir, 'lists')))
      if (f !== 'partial') fs.rmSync(path.join(dir, 'lists', f), { force: true });
  }
  const status = path.join(dir, 'status');
  if (!fs.existsSync(status)) fs.writeFileSync(status, '');
  const o = (k: string, v: string) => ['-o', `${k}=${v}`];
  const view: AptView = {
    label: repo.name,
    options: [
      ...o('Dir::Etc::SourceList', list),
      ...o('Dir::Etc::SourceParts', path.join(dir, 'sources.list.d')),
      ...o('Dir::Etc::Preferences', path.join(dir, 'preferences')),
      ...o('Dir::Etc::PreferencesParts', path.join(dir, 'preferences.d')),
      ...o('Dir::State::Lists', path.join(dir, 'lists')),
      ...o('Dir::State::status', status),
      ...o('Dir::Cache', path.join(dir, 'cache')),
      ...o('Acquire::Languages', 'none'),
    ],
    listsDir: path.join(dir, 'lists'),
    listsUpdated: false,
  };
  privateViews.set(dir, view);
  return view;
}

const MAX_LIST_AGE_MS = 24 * 3600_000;

/**
 * Time since the lists in `dir` were last updated by us (apt dates the files by the server's
 * clock).
 */
function listAgeMs(dir: string): number {
  try {
    return Date.now() - fs.statSync(path.join(dir, '.updated')).mtimeMs;
  } catch {
    return Infinity;
  }
}

async function aptGetUpdate(view: AptView = HOST_APT): Promise<void> {
  if (view.listsUpdated) return;
  log(`apt-get update${view === HOST_APT ? '' : ` (${view.label}, private lists)`}`);
  await runChecked(['apt-get', ...LOCK_WAIT, ...view.options, 'update', '-q'], {
    env: APT_ENV,
    timeoutMs: 5 * 60_000,
  });
  if (view.listsDir !== undefined) fs.writeFileSync(path.join(view.listsDir, '.updated'), '');
  view.listsUpdated = true;
}

function requireRoot(what: string): void {
  if (process.getuid?.() !== 0)
    throw new AptError(`${what} needs root (run the e2e suite as root; CI does)`);
}

/** Packages of `names` that dpkg does not list as installed. */
export async function missingPackages(names: readonly string[]): Promise<string[]> {
  const r = await run(['dpkg-query', '-W', '-f=${Package} ${db:Status-Status}\\n', ...names], {
    env: APT_ENV,
  });
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
    await runChecked(
      ['apt-get', ...LOCK_WAIT, 'install', '-y', '-q', '--no-install-recommends', ...missing],
      { env: APT_ENV, timeoutMs: 15 * 60_000 },
    );
  } catch (e) {
    throw new AptError(`cannot install ${missing.join(' ')}: ${(e as Error).message}`);
  }
}

/** apt-cache with one automatic `apt-get update` when the package lists do not know the package. */
async function aptCache(args: readonly string[], view: AptView = HOST_APT): Promise<string> {
  // A private view's lists are ours to keep fresh: a new point release drops the old kernel.
  if (
    view.listsDir !== undefined &&
    !view.listsUpdated &&
    listAgeMs(view.listsDir) > MAX_LIST_AGE_MS
  ) {
    requireRoot(`apt-get update (${view.label})`);
    await aptGetUpdate(view);
  }
  for (let attempt = 0; ; attempt++) {
    const r = await run(['apt-cache', ...view.options, ...args], { env: APT_ENV });
    if (r.code === 0 && r.stdout.trim()) return r.stdout;
    if (attempt > 0 || view.listsUpdated)
      throw new AptError(
        `apt-cache ${args.join(' ')} failed${view === HOST_APT ? '' : ` (${view.label})`}: ${(r.stderr || r.stdout).trim() || 'no such package'}`,
      );
    requireRoot('apt-get update');
    await aptGetUpdate(view);
  }
}

/** Direct dependencies (`Depends:` and `PreDepends:` only) of a package's candidate version. */
export async function dependsOf(pkg: string, view: AptView = HOST_APT): Promise<string[]> {
  return parseDepends(await aptCache(['depends', '--important', '--no-recommends', pkg], view));
}

/**
 * Package names on `Depends:`/`PreDepends:` lines of `apt-cache depends` output (alternatives too).
 */
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
export async function candidate(pkg: string, view: AptView = HOST_APT): Promise<PackageVersion> {
  const out = await aptCache(['show', '--no-all-versions', pkg], view);
  const field = (f: string): string => {
    const m = new RegExp(`^${f}: (.+)$`, 'm').exec(out);
    if (!m) throw new AptError(`apt-cache show ${pkg}: no ${f} field`);
    return m[1]!.trim();
  };
  return { name: field('Package'), version: field('Version'), architecture: field('Architecture') };
}

/** Whether apt knows `pkg` at exactly `version` (any configured source). */
export async function hasVersion(
  pkg: string,
  version: string,
  view: AptView = HOST_APT,
): Promise<boolean> {
  const out = await aptCache(['madison', pkg], view).catch(() => '');
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
export async function download(
  p: PackageVersion,
  dir: string,
  view: AptView = HOST_APT,
): Promise<string> {
  const file = path.join(dir, debFileName(p));
  if (fs.existsSync(file)) return file;
  fs.mkdirSync(dir, { recursive: true });
  const scratch = fs.mkdtempSync(path.join(dir, '.partial-'));
  try {
    log(`apt-get download ${p.name}=${p.version}`);
    // `_apt` cannot write into a root-only cache directory: download unsandboxed, as root.
    await runChecked(
      [
        'apt-get',
        ...view.options,
        'download',
        '-q',
        '-o',
        'APT::Sandbox::User=root',
        `${p.name}=${p.version}`,
      ],
      {
        cwd: scratch,
        env: APT_ENV,
        timeoutMs: 20 * 60_000,
      },
    );
    const got = fs.readdirSync(scratch).filter((f) => f.endsWith('.deb'));
    if (got.length !== 1)
      throw new AptError(`apt-get download ${p.name}=${p.version} left ${got.length} .deb files`);
    fs.renameSync(path.join(scratch, got[0]!), file);
    return file;
  } catch (e) {
    if (e instanceof CommandError)
      throw new AptError(
        `cannot download ${p.name}=${p.version} (is the package still in the archive?): ${e.message}`,
      );
    throw e;
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true });
  }
}
