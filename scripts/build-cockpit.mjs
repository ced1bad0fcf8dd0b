// Builds the Cockpit page (cockpit/) into dist/cockpit/vfioctl/: one script and one stylesheet
// (Cockpit's CSP allows no inline code), PatternFly 4's CSS bundled from npm since Cockpit 287
// ships none a page can link to. Fonts come from Cockpit's own /cockpit/static/fonts, as
// Cockpit's pages do, instead of copying PatternFly's.
import { build } from 'esbuild';
import { copyFileSync, existsSync, mkdirSync, rmSync } from 'node:fs';
import * as path from 'node:path';

const out = 'dist/cockpit/vfioctl';
rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });

// Cockpit's static/fonts has RedHat{Display,Text,Mono}-<Weight>.woff2; PatternFly's other faces
// (Overpass, the "updated" variants, .woff fallbacks) are not used by the default theme.
const COCKPIT_FONTS = /^RedHat(Display|Text|Mono)-(Regular|Medium|Bold)\.woff2$/;
const cockpitFonts = {
  name: 'cockpit-fonts',
  setup(b) {
    b.onResolve({ filter: /\.(woff2?|ttf|eot|otf)$/ }, (args) => {
      const base = path.basename(args.path).replace('-updated', '');
      return {
        path: COCKPIT_FONTS.test(base) ? `../../static/fonts/${base}` : 'data:font/woff2;base64,',
        external: true,
      };
    });
  },
};

await build({
  entryPoints: { index: 'cockpit/src/index.ts', style: 'cockpit/src/style.css' },
  bundle: true,
  format: 'iife',
  target: 'chrome100',
  outdir: out,
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
  // PatternFly's form controls draw the select arrow and search icon from one SVG sprite.
  loader: { '.svg': 'file' },
  assetNames: 'assets/[name]-[hash]',
  plugins: [cockpitFonts],
});
for (const f of ['index.html', 'manifest.json'])
  copyFileSync(path.join('cockpit', f), path.join(out, f));
if (!existsSync(path.join(out, 'index.js')) || !existsSync(path.join(out, 'style.css')))
  throw new Error('cockpit build: output missing');
