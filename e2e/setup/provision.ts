// Everything the suite needs on the host, idempotently: apt packages, then per kernel the exact
// Debian packages (downloaded once into the cache) and the built artifacts (rebuilt when stale).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { formatMs, log } from '../lib/log';
import { HOST_PACKAGES, KERNELS, type KernelSpec } from '../kernels';
import { debFileName, ensureInstalled, HOST_APT, privateApt } from './apt';
import { prune, withCacheLock } from './cache';
import { packagesOf, provisionKernel, resolveKernel, type KernelArtifacts } from './kernel';

export interface ProvisionOptions {
  readonly cache: string;
  readonly kernels: readonly KernelSpec[];
  /** Contents of e2e/guest/init. */
  readonly initScript: Buffer;
}

export async function provision(opts: ProvisionOptions): Promise<KernelArtifacts[]> {
  const t0 = Date.now();
  await ensureInstalled(HOST_PACKAGES);
  fs.mkdirSync(opts.cache, { recursive: true });
  return withCacheLock(
    opts.cache,
    () => provisionLocked(opts, t0),
    (pid) => log(`waiting for process ${pid}, which is provisioning ${opts.cache}`),
  );
}

async function provisionLocked(opts: ProvisionOptions, t0: number): Promise<KernelArtifacts[]> {
  const debs = path.join(opts.cache, 'debs');
  const kernelsDir = path.join(opts.cache, 'kernels');

  const resolved = await Promise.all(
    opts.kernels.map((k) => resolveKernel(k, k.apt ? privateApt(k.apt, opts.cache) : HOST_APT)),
  );
  for (const k of resolved) log(`kernel ${k.spec.id}: ${k.release} (${k.image.version})`);
  // Both kernels in parallel: downloads overlap, and each build step is short.
  const artifacts = await Promise.all(
    resolved.map((k) =>
      provisionKernel(k, path.join(kernelsDir, k.release), debs, opts.initScript),
    ),
  );

  // Superseded kernels and packages (Debian moved on) are dropped; selecting fewer kernels keeps
  // all.
  if (KERNELS.every((k) => opts.kernels.includes(k))) {
    const gone = [
      ...prune(kernelsDir, new Set(resolved.map((k) => k.release))),
      ...prune(debs, new Set(resolved.flatMap((k) => packagesOf(k).map(debFileName)))),
    ];
    if (gone.length > 0) log(`cache: removed stale ${gone.join(' ')}`);
  }
  log(`provisioned in ${formatMs(Date.now() - t0)}`);
  return artifacts;
}
