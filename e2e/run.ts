// npm run test:e2e: provisions, boots each kernel under QEMU, runs the scenarios, reports.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { KERNELS } from './kernels';
import { log } from './lib/log';
import { cacheDir } from './setup/cache';
import { provision } from './setup/provision';

export const REPO = path.resolve(__dirname, '../..');

async function main(): Promise<number> {
  const initScript = fs.readFileSync(path.join(REPO, 'e2e/guest/init'));
  const kernels = await provision({ cache: cacheDir(), kernels: KERNELS, initScript });
  for (const k of kernels) log(`${k.id}: ${k.release} ${k.vmlinuz} ${k.initrd} variants=${k.variants.join(',')}`);
  return 0;
}

main().then(
  (code) => (process.exitCode = code),
  (e: unknown) => {
    log(`FATAL: ${(e as Error).stack ?? String(e)}`);
    process.exitCode = 1;
  },
);
