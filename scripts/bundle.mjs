// Bundles the CLI into one file (dist/vfioctl.js) so that start-up reads one script, not a module tree.
import { build } from 'esbuild';
import { chmodSync } from 'node:fs';

await build({
  entryPoints: ['src/cli/main.ts'],
  bundle: true,
  platform: 'node',
  // Debian 12 ships Node.js 18.20 and Ubuntu 24.04 18.19: the package runs on the distribution's nodejs.
  target: 'node18.19',
  format: 'cjs',
  // ESM builds first: jsonc-parser's `main` is a UMD file whose require()s esbuild cannot follow.
  mainFields: ['module', 'main'],
  outfile: 'dist/vfioctl.js',
  banner: { js: '#!/usr/bin/env node' },
  legalComments: 'none',
  logLevel: 'warning',
});
chmodSync('dist/vfioctl.js', 0o755);

// The library (`require('vfioctl')`): the operations layer, one file too; its types come from
// `tsc -p tsconfig.lib.json` (dist/lib/types).
await build({
  entryPoints: ['src/ops/index.ts'],
  bundle: true,
  platform: 'node',
  target: 'node18.19',
  format: 'cjs',
  mainFields: ['module', 'main'],
  outfile: 'dist/lib/index.js',
  legalComments: 'none',
  logLevel: 'warning',
});
