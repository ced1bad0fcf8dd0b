// Lays out the Debian source tree for dpkg-buildpackage in DIR (scripts/package-deb.sh): debian/
// from the repository, a changelog for package.json's version, and stage/ holding every installed
// file rendered from the sources (after `npm run build`): the bundled CLI, the static boot layers
// (src/boot/files.ts, the same renderers `vfioctl install` uses), the JSON Schemas, the
// packaged-mode marker, man pages (man/*.md through pandoc) and shell completions (from the
// commander tree).
import {
  cpSync,
  mkdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
  readdirSync,
  chmodSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { bashCompletion, fishCompletion, zshCompletion } from './completions.mjs';

const require = createRequire(import.meta.url);
const repo = join(dirname(new URL(import.meta.url).pathname), '..');
const out = process.argv[2];
if (!out) {
  console.error('usage: node scripts/stage-package.mjs DIR');
  process.exit(2);
}
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8'));
const files = require(join(repo, 'build/src/boot/files.js'));
const { buildProgram } = require(join(repo, 'build/src/cli/main.js'));

rmSync(out, { recursive: true, force: true });
const stage = join(out, 'stage');
const put = (path, content, mode = 0o644) => {
  const abs = join(stage, path);
  mkdirSync(dirname(abs), { recursive: true });
  writeFileSync(abs, content);
  chmodSync(abs, mode);
};

cpSync(join(repo, 'debian'), join(out, 'debian'), { recursive: true });
cpSync(join(repo, 'hooks/examples'), join(out, 'hooks/examples'), { recursive: true });
// A reproducible date: the last commit's (dpkg uses the changelog's for SOURCE_DATE_EPOCH).
const git = spawnSync('git', ['-C', repo, 'log', '-1', '--format=%ct'], { encoding: 'utf8' });
const epoch = Number(git.stdout.trim()) || Math.floor(Date.now() / 1000);
const date = new Date(epoch * 1000).toUTCString().replace(/GMT$/, '+0000');
const maintainer = readFileSync(join(repo, 'debian/control'), 'utf8').match(
  /^Maintainer: (.*)$/m,
)[1];
writeFileSync(
  join(out, 'debian/changelog'),
  `vfioctl (${pkg.version}) unstable; urgency=medium\n\n  * Built from vfioctl ${pkg.version}; the project's git history has the changes.\n\n -- ${maintainer}  ${date}\n`,
);

// The distribution's node, not whichever one PATH finds first. A flag the line gives node (the
// launcher's, scripts/bundle.mjs) stays: `#!/usr/bin/node FLAG` needs no env, and the kernel
// passes what follows the interpreter as one argument, so one flag at most.
const interpreter = (file) => {
  const text = readFileSync(join(repo, file), 'utf8').replace(
    /^#!\/usr\/bin\/env (?:-S )?node( --[a-z0-9-]+)?\n/,
    '#!/usr/bin/node$1\n',
  );
  if (!/^#!\/usr\/bin\/node( --[a-z0-9-]+)?\n/.test(text))
    throw new Error(`${file}: unexpected interpreter line`);
  return text;
};
// The command is the launcher (src/cli/launcher.ts); the bundle and V8's code cache for it (made
// by the postinst with the installed node) live where the launcher's layout line says.
const BUNDLE = '/usr/lib/vfioctl/vfioctl.js';
const CODE_CACHE_DIR = '/var/cache/vfioctl';
const layout = 'var LAYOUT = { bundle: null, cacheDir: null };';
const launcher = interpreter('dist/vfioctl');
if (!launcher.includes(layout)) throw new Error(`dist/vfioctl: no "${layout}" line to set`);
put(
  files.PACKAGED_EXEC,
  launcher.replace(
    layout,
    `var LAYOUT = ${JSON.stringify({ bundle: BUNDLE, cacheDir: CODE_CACHE_DIR })};`,
  ),
  0o755,
);
// Not a command of its own (the launcher compiles it): no interpreter line, not executable.
put(
  BUNDLE,
  interpreter('dist/vfioctl.js').replace(/^.*\n/, '// Started by /usr/sbin/vfioctl.\n'),
  0o644,
);
for (const f of files.staticLayers(files.PACKAGE_LAYOUT, files.PACKAGED_EXEC))
  put(f.path, f.content, f.mode);
// The libvirt qemu hook: a conffile; it execs /usr/sbin/vfioctl only while that exists.
const hook = files.libvirtHook(files.PACKAGE_LAYOUT, files.PACKAGED_EXEC);
put(hook.path, hook.content, hook.mode);
put(
  files.PACKAGED_MARKER,
  `# vfioctl ${pkg.version} from the Debian package: dpkg owns the static boot layers;\n# 'vfioctl install' writes only this host's boot maps and udev rule and enables the units.\n`,
);
// The Cockpit page (`npm run build:cockpit`), for the cockpit-vfioctl package.
cpSync(join(repo, 'dist/cockpit/vfioctl'), join(out, 'stage-cockpit/usr/share/cockpit/vfioctl'), {
  recursive: true,
});
for (const s of readdirSync(join(repo, 'schema')))
  put(`/usr/share/vfioctl/schema/${s}`, readFileSync(join(repo, 'schema', s)));

const program = buildProgram({ out: () => {}, err: () => {}, env: {} }, () => {});
put('/usr/share/bash-completion/completions/vfioctl', bashCompletion(program));
put('/usr/share/zsh/vendor-completions/_vfioctl', zshCompletion(program));
put('/usr/share/fish/vendor_completions.d/vfioctl.fish', fishCompletion(program));

// Smart quotes off: option names and file contents must stay typable.
mkdirSync(join(out, 'stage-man'), { recursive: true });
for (const md of readdirSync(join(repo, 'man')).filter((f) => f.endsWith('.md'))) {
  const page = md.slice(0, -3);
  const r = spawnSync(
    'pandoc',
    [
      '--standalone',
      '--from',
      'markdown-smart',
      '--to',
      'man',
      '--metadata',
      `footer=vfioctl ${pkg.version}`,
      '--output',
      join(out, 'stage-man', page),
      join(repo, 'man', md),
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) throw new Error(`pandoc ${md}: ${r.error?.message ?? r.stderr}`);
}
