// `npm run bench`: vfioctl against lspci, driverctl and dpdk-devbind on one large synthetic host,
// in one run, alternating; writes bench/results.md. Only ratios from one run mean anything on a
// shared machine; absolute times are shown for context.
//
//   node build/bench/run.js [--functions N] [--reps N] [--slow-reps N] [--scale-reps N]
//                           [--pairs N] [--out FILE] [--no-write] [--keep] [--quick]
//
// Environment: VFIOCTL_BENCH_CACHE (default /var/cache/vfioctl-bench) caches the Debian kernel's
// module index; VFIOCTL_BENCH_NO_INSTALL=1 stops it from apt-get installing missing peers.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { debianKernelModules, VARIANT_ALIASES, type KernelModules } from './kernel-modules';
import { buildHostTree, ORDINARY, VFS_PER_PF, type HostTree } from './host-tree';
import { interpreterFlags, nodeArgv } from '../test/support/interpreter';
import {
  alternate,
  backToBack,
  type BackToBack,
  BENCH_ENV_REMOVED,
  capture,
  fmtMs,
  median,
  peakRssKiB,
  stats,
  type Cmd,
  type Sample,
  type Stats,
  writeFormatted,
} from './measure';
import { profile, type ProfileSummary } from './profile';

const REPO = path.resolve(__dirname, '../..');
/** The bundle (profiled, and timed once started directly), and the command as installed. */
const DIST = path.join(REPO, 'dist/vfioctl.js');
/**
 * What is profiled: the same program as DIST with its whitespace and esbuild's `// src/...`
 * comments (scripts/bundle.mjs), so that samples map back to source files; DIST is minified.
 */
const READABLE = path.join(REPO, 'build/bench/vfioctl.readable.js');
const CLI = path.join(REPO, 'dist/vfioctl');
const NODE = process.execPath;
/** The floor-reads script (bench/floor-reads.ts), compiled beside this file. */
const FLOOR_READS = path.join(__dirname, 'floor-reads.js');
/** The same reads in C (bench/floor-reads.c), built by cFloorReads(). */
const FLOOR_READS_C = path.join(__dirname, 'floor-reads-c');
const LOAD_START = os
  .loadavg()
  .map((l) => l.toFixed(2))
  .join(' ');

/**
 * How vfioctl is started: as the Debian package starts it. The package's launcher line is
 * `#!/usr/bin/node --no-sparkplug` (scripts/stage-package.mjs), so the kernel starts node with the
 * flag directly; dist/vfioctl's `#!/usr/bin/env -S node ...` line, for development trees, adds
 * env's own exec (~4 % of `node -e 0` on the machine measured), which no installed vfioctl pays.
 * So this node with the line's flags (V8 takes the code cache only under them), which is what the
 * kernel runs for the package's line (a script started through its `#!` line and the same node
 * with the same flag started directly measured alike, 0.995x over 41 pairs).
 */
function vfioctlArgv(file = CLI): string[] {
  return nodeArgv(file);
}

interface Options {
  functions: number;
  reps: number;
  slowReps: number;
  scaleReps: number;
  /** Back-to-back pairs of the two commands of each target (but the slow peers'). */
  pairs: number;
  out: string | null;
  keep: boolean;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    functions: 4096,
    reps: 11,
    slowReps: 3,
    scaleReps: 5,
    pairs: 32,
    out: path.join(REPO, 'bench/results.md'),
    keep: false,
  };
  // --quick sets defaults: the options given beside it win, wherever they stand.
  if (argv.includes('--quick')) Object.assign(o, { reps: 3, slowReps: 1, scaleReps: 3, pairs: 10 });
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const num = () => {
      const v = Number(argv[++i]);
      if (!Number.isInteger(v) || v < 1) throw new Error(`${a} needs a positive integer`);
      return v;
    };
    if (a === '--functions') o.functions = num();
    else if (a === '--reps') o.reps = num();
    else if (a === '--slow-reps') o.slowReps = num();
    else if (a === '--scale-reps') o.scaleReps = num();
    else if (a === '--pairs') o.pairs = num();
    else if (a === '--out') o.out = path.resolve(argv[++i] ?? '');
    else if (a === '--no-write') o.out = null;
    else if (a === '--keep') o.keep = true;
    else if (a === '--quick') continue;
    else if (a === '--help' || a === '-h') {
      process.stdout.write(
        'usage: node build/bench/run.js [--functions N] [--reps N] [--slow-reps N] [--scale-reps N] [--pairs N] [--out FILE | --no-write] [--keep] [--quick]\n' +
          '  --functions N   SR-IOV functions of the main tree, a multiple of 256 up to 4096 (default 4096; 19 ordinary functions are added)\n' +
          '  --reps N        rounds for the fast commands (default 11); --slow-reps for driverctl and dpdk-devbind (default 3)\n' +
          '  --scale-reps N  rounds of the 256/1024/4096 scaling runs (default 5)\n' +
          "  --pairs N       back-to-back pairs of each target's two commands but the slow peers' (default 32)\n" +
          '  --out FILE      where to write the Markdown (default bench/results.md); --no-write: stdout only\n' +
          '  --keep          keep the generated trees; --quick: 3/1/3 rounds, 10 pairs (as defaults)\n' +
          'env: VFIOCTL_BENCH_CACHE (default /var/cache/vfioctl-bench), VFIOCTL_BENCH_NO_INSTALL=1\n',
      );
      process.exit(0);
    } else throw new Error(`unknown option ${a}`);
  }
  if (o.functions % (VFS_PER_PF + 1) !== 0 || o.functions / (VFS_PER_PF + 1) > 16) {
    throw new Error(
      `--functions must be a multiple of ${VFS_PER_PF + 1} up to 4096 (PFs with ${VFS_PER_PF} VFs each)`,
    );
  }
  return o;
}

const log = (s: string) => process.stderr.write(`bench: ${s}\n`);

function which(cmd: string): string | null {
  for (const d of (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin')
    .split(':')
    .concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(d, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* next */
    }
  }
  return null;
}

/** Debian packages providing the peers and the tools the setup needs. */
const TOOLS: Record<string, string> = {
  lspci: 'pciutils',
  driverctl: 'driverctl',
  'dpdk-devbind.py': 'dpdk',
  depmod: 'kmod',
  'dpkg-deb': 'dpkg',
  unshare: 'util-linux',
  time: 'time',
  cc: 'gcc',
};

function ensureTools(): Map<string, string | null> {
  const found = () =>
    new Map(
      Object.keys(TOOLS).map((t) => [
        t,
        t === 'time' ? (fs.existsSync('/usr/bin/time') ? '/usr/bin/time' : null) : which(t),
      ]),
    );
  let have = found();
  const missing = [...new Set([...have].filter(([, p]) => !p).map(([t]) => TOOLS[t]!))];
  if (
    missing.length > 0 &&
    process.env.VFIOCTL_BENCH_NO_INSTALL !== '1' &&
    process.getuid?.() === 0 &&
    which('apt-get')
  ) {
    log(`installing ${missing.join(' ')} with apt-get`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const inst = () =>
      spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...missing], {
        stdio: ['ignore', 'ignore', 'inherit'],
        env,
      }).status;
    if (inst() !== 0) {
      spawnSync('apt-get', ['update'], { stdio: ['ignore', 'ignore', 'inherit'], env });
      inst();
    }
    have = found();
  }
  return have;
}

function firstLine(s: string): string {
  return s.trim().split('\n')[0] ?? '';
}

function machine(): Record<string, string> {
  const cpu =
    /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ??
    os.cpus()[0]?.model ??
    '?';
  let distro = '?';
  try {
    distro = /PRETTY_NAME="([^"]*)"/.exec(fs.readFileSync('/etc/os-release', 'utf8'))?.[1] ?? '?';
  } catch {
    /* none */
  }
  const ver = (pkg: string) =>
    firstLine(capture(['dpkg-query', '-W', '-f', '${Version}', pkg]).stdout) || 'not installed';
  const git = capture(['git', '-C', REPO, 'rev-parse', '--short', 'HEAD']).stdout.trim();
  // The harness too (bench/), but not the results it writes.
  const dirty = capture([
    'git',
    '-C',
    REPO,
    'status',
    '--porcelain',
    '--',
    'src',
    'bench',
    ':!bench/results.md',
  ]).stdout.trim()
    ? ' (src/ or bench/ has uncommitted changes)'
    : '';
  return {
    date: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    cpu: `${cpu} x ${os.availableParallelism()} (nproc)`,
    memory: `${(os.totalmem() / 2 ** 30).toFixed(0)} GiB`,
    kernel: `${os.release()} (${distro})`,
    node: process.version,
    vfioctl: `commit ${git || '?'}${dirty}, started as \`node${(interpreterFlags(CLI) ?? []).map((f) => ` ${f}`).join('')} dist/vfioctl\` (the launcher, as the package's \`#!/usr/bin/node\` line starts it)`,
    load: `load average ${LOAD_START} at the start, ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} at the end (1/5/15 min)`,
    peers: `pciutils ${ver('pciutils')}, driverctl ${ver('driverctl')}, dpdk ${ver('dpdk')}`,
    environment:
      BENCH_ENV_REMOVED.length === 0
        ? "this run's, unchanged"
        : `this run's without ${BENCH_ENV_REMOVED.join(', ')} (it makes every Node process load a CA bundle at start-up, TLS or not: not a host's cost, see bench/measure.ts)`,
  };
}

/**
 * Mount-namespace wrapper: the tree's sys/ over /sys, its module index under /lib/modules/$(uname
 * -r).
 */
function nsWrapper(
  tree: HostTree,
  kmodOverlay: string | null,
): (argv: readonly string[]) => readonly string[] {
  const libTarget = fs.realpathSync('/lib');
  const script = kmodOverlay
    ? 'mount --bind "$1" /sys && mount -t overlay vfioctl-bench -o "lowerdir=$2:$3" "$3" && shift 3 && exec "$@"'
    : 'mount --bind "$1" /sys && shift 3 && exec "$@"';
  return (argv) => [
    'unshare',
    '-m',
    '--propagation',
    'private',
    '--',
    'sh',
    '-c',
    script,
    'sh',
    path.join(tree.dir, 'sys'),
    kmodOverlay ?? '-',
    libTarget,
    ...argv,
  ];
}

/**
 * lowerdir holding modules/<running release> -> the tree's Debian module index (with its .bin
 * files).
 */
function makeKmodOverlay(work: string, tree: HostTree, kmods: KernelModules): string | null {
  const dir = path.join(work, 'kmod-overlay');
  if (/[:,\s]/.test(dir) || /[:,\s]/.test(tree.dir)) return null;
  fs.mkdirSync(path.join(dir, 'modules'), { recursive: true });
  fs.symlinkSync(
    path.join(tree.dir, 'lib/modules', kmods.release),
    path.join(dir, 'modules', os.release()),
  );
  return dir;
}

function nsWorks(wrap: (argv: readonly string[]) => readonly string[]): string | null {
  if (process.getuid?.() !== 0) return 'needs root (unshare -m and mount)';
  const r = capture(wrap(['test', '-e', '/sys/bus/pci/drivers_autoprobe']));
  return r.status === 0
    ? null
    : `mount namespace failed: ${firstLine(r.stderr) || `exit ${r.status}`}`;
}

/**
 * What an installed host has beside sysfs: vfioctl's run directory (made by the first writing
 * command or the boot layer; the modules.alias index and the pci.ids names cache live there), a
 * configuration giving every VF an intent (`status` and `apply` are timed on it), and a module
 * index depmod wrote and a pci.ids the package installed well before, not seconds ago (a cache
 * is made only from a settled file). Idempotent.
 */
function installed(tree: HostTree): HostTree {
  fs.mkdirSync(path.join(tree.dir, 'run/vfioctl'), { recursive: true, mode: 0o700 });
  const pfs = Array.from(
    { length: tree.pfs },
    (_, p) => `0000:${(0x10 + p).toString(16).padStart(2, '0')}:00.0`,
  );
  fs.mkdirSync(path.join(tree.dir, 'etc/vfioctl'), { recursive: true, mode: 0o755 });
  fs.writeFileSync(
    path.join(tree.dir, 'etc/vfioctl/vfioctl.json'),
    JSON.stringify(
      { version: 1, rules: pfs.map((a) => ({ match: { vfsOf: a }, intent: 'vfio' })) },
      null,
      2,
    ) + '\n',
    { mode: 0o644 },
  );
  const modDir = path.join(tree.dir, 'lib/modules');
  const hourAgo = new Date(Date.now() - 3600_000);
  for (const rel of fs.readdirSync(modDir))
    for (const f of fs.readdirSync(path.join(modDir, rel)))
      fs.utimesSync(path.join(modDir, rel, f), hourAgo, hourAgo);
  const ids = path.join(tree.dir, 'usr/share/misc/pci.ids');
  if (fs.existsSync(ids)) fs.utimesSync(ids, hourAgo, hourAgo);
  warmRunCaches(tree.dir);
  return tree;
}

/** What `vfioctl --write-code-cache` said, for the report. */
let codeCacheNote = '';
/** The cache it made (the only one beside the launcher: it removes any other). */
let codeCacheFile = '';

/**
 * V8's code cache for the bundle, as the Debian package's postinst makes it on a host (here the
 * small tree stands for the host: the functions compiled are the same on any tree).
 */
function writeCodeCache(dir: string): void {
  const r = capture([...vfioctlArgv(), '--write-code-cache'], { VFIOCTL_ROOT: dir });
  if (r.status !== 0)
    throw new Error(
      `bench: \`vfioctl --write-code-cache\` failed (exit ${r.status}): ${firstLine(r.stderr)}`,
    );
  codeCacheNote = r.stdout.trim().replace(`${REPO}/`, '');
  const beside = path.dirname(CLI);
  const made = fs.readdirSync(beside).filter((f) => /^vfioctl\.js\..*\.code-cache$/.test(f));
  if (made.length !== 1)
    throw new Error(`bench: ${made.length} code caches beside ${CLI} after --write-code-cache`);
  codeCacheFile = path.join(beside, made[0]!);
}

/**
 * The caches an installed host has in /run/vfioctl (the modules.alias index, the pci.ids names of
 * its devices): a writing command makes them under the lock (read-only ones never write), and
 * the late boot unit's `apply --boot` is one at every boot. Here `apply` of the host bridge,
 * which no rule configures: it takes the lock, reads every device for writing, writes the caches
 * and changes nothing else ("nothing to apply").
 */
function warmRunCaches(dir: string): void {
  const r = capture([...vfioctlArgv(), '--root', dir, 'apply', '0000:00:00.0']);
  const made = fs.readdirSync(path.join(dir, 'run/vfioctl'));
  if (
    r.status !== 0 ||
    !made.some((f) => f.startsWith('alias-index.')) ||
    (fs.existsSync(path.join(dir, 'usr/share/misc/pci.ids')) && !made.includes('pci-names.json'))
  )
    throw new Error(
      `bench: \`vfioctl apply 0000:00:00.0\` left no modules.alias index or pci.ids names cache in ${dir}/run/vfioctl (exit ${r.status}): ${firstLine(r.stderr)}`,
    );
}

interface Row {
  cmd: Cmd;
  samples: Sample[];
  stats: Stats | null;
  rssKiB: number | null;
  failed: string | null;
}

const countLines = (s: string, re: RegExp) => s.split('\n').filter((l) => re.test(l)).length;

function verifyJsonArray(n: number) {
  return (out: string, _err: string, status: number | null) => {
    if (status !== 0) return `exit ${status}`;
    const a = JSON.parse(out) as unknown[];
    return Array.isArray(a) && a.length === n
      ? null
      : `expected ${n} devices, got ${Array.isArray(a) ? a.length : typeof a}`;
  };
}

/** The floor programs print how many functions they read: all `n` of the tree's. */
function verifyReadCount(n: number) {
  return (out: string, _err: string, status: number | null) =>
    status === 0 && out.trim() === String(n) ? null : `exit ${status}, read ${out.trim()} of ${n}`;
}

/**
 * bench/floor-reads.c built with the system's C compiler, or why not: the kernel's cost of
 * list's reads with no runtime around them, beside Node's (bench/floor-reads.ts).
 */
function cFloorReads(cc: string | null): string | undefined {
  if (!cc) return `not available: no C compiler (Debian package ${TOOLS.cc})`;
  const r = capture([cc, '-O2', '-o', FLOOR_READS_C, path.join(REPO, 'bench/floor-reads.c')]);
  return r.status === 0 ? undefined : `not available: cc failed: ${firstLine(r.stderr)}`;
}

function commands(
  tree: HostTree,
  small: HostTree,
  wrap: ((argv: readonly string[]) => readonly string[]) | null,
  nsProblem: string | null,
  tools: Map<string, string | null>,
  bindAvailable: string | null,
): Cmd[] {
  const n = tree.functions;
  const lspciArgs = [
    'lspci',
    '-D',
    '-nnk',
    '-A',
    'linux-sysfs',
    '-O',
    `sysfs.path=${path.join(tree.dir, 'sys/bus/pci')}`,
  ];
  const peerMissing = (t: string) =>
    tools.get(t) ? undefined : `${t} not installed (Debian package ${TOOLS[t]})`;
  const nsMissing = (t: string) => peerMissing(t) ?? nsProblem ?? undefined;
  const VF = vfioctlArgv();
  const vf = [...VF, '--root', tree.dir];
  const nsCmd = (argv: string[]) => ({ argv: wrap ? wrap(argv) : argv, inner: argv });
  const lspciOk = (out: string, _e: string, s: number | null) =>
    s !== 0
      ? `exit ${s}`
      : countLines(out, /^[0-9a-f]{4}:/) === n
        ? null
        : `listed ${countLines(out, /^[0-9a-f]{4}:/)} of ${n}`;
  return [
    { id: 'node0', label: '`node -e 0` (start-up floor)', argv: [NODE, '-e', '0'] },
    {
      id: 'version',
      label: '`vfioctl --version`',
      argv: [...VF, '--version'],
      verify: (o, _e, s) =>
        s === 0 && /^\d+\.\d+\.\d+/.test(o.trim()) ? null : `exit ${s}: ${firstLine(o)}`,
    },
    {
      // The floor under every command but --version: Node, the launcher, and vfioctl's code
      // read and compiled from its code cache, with nothing run (not even the bundle's top
      // level). What a small-tree command costs above this is its own work.
      id: 'loadfloor',
      label:
        "the launcher reading vfioctl's bundle and code cache and compiling it, nothing run (`vfioctl --check-code-cache <its cache>`)",
      argv: [...VF, '--check-code-cache', codeCacheFile],
      verify: (_o, e, s) => (s === 0 ? null : `exit ${s} (cache rejected?): ${firstLine(e)}`),
    },
    {
      id: 'smallshow',
      label: `small tree: \`vfioctl show ${small.showAddress} --json\``,
      argv: [...VF, '--root', small.dir, 'show', small.showAddress, '--json'],
      verify: (o, _e, s) =>
        s === 0 && (JSON.parse(o) as { address?: string }).address === small.showAddress
          ? null
          : `exit ${s}`,
    },
    {
      id: 'smallshowbundle',
      label: `small tree: \`vfioctl.js show ${small.showAddress} --json\`, the bundle started directly (no code cache)`,
      argv: [...vfioctlArgv(DIST), '--root', small.dir, 'show', small.showAddress, '--json'],
      verify: (o, _e, s) =>
        s === 0 && (JSON.parse(o) as { address?: string }).address === small.showAddress
          ? null
          : `exit ${s}`,
    },
    {
      id: 'smalllist',
      label: `small tree: \`vfioctl list --json\` (${small.functions} functions)`,
      argv: [...VF, '--root', small.dir, 'list', '--json'],
      verify: verifyJsonArray(small.functions),
    },
    {
      id: 'show',
      label: `\`vfioctl show ${tree.showAddress} --json\``,
      argv: [...vf, 'show', tree.showAddress, '--json'],
      verify: (o, _e, s) =>
        s === 0 && (JSON.parse(o) as { address?: string }).address === tree.showAddress
          ? null
          : `exit ${s}`,
    },
    {
      id: 'list',
      label: '`vfioctl list --json`',
      argv: [...vf, 'list', '--json'],
      verify: verifyJsonArray(n),
    },
    {
      id: 'lspci',
      label: '`lspci -D -nnk -A linux-sysfs -O sysfs.path=<tree>/sys/bus/pci`',
      argv: lspciArgs,
      unavailable: peerMissing('lspci'),
      verify: lspciOk,
    },
    {
      id: 'floor',
      label:
        'Node reading only what `list` reads for each VF (modalias, config header, driver_override, reset_method, numa_node, iommu_group link), nothing else (`bench/floor-reads.ts`)',
      argv: [NODE, FLOOR_READS, tree.dir],
      verify: verifyReadCount(n),
    },
    {
      id: 'cfloor',
      label:
        'the same reads from C: open, read and close for each attribute, with no runtime around them (`bench/floor-reads.c`)',
      argv: [FLOOR_READS_C, tree.dir],
      unavailable: cFloorReads(tools.get('cc') ?? null),
      verify: verifyReadCount(n),
    },
    {
      id: 'lspcikmod',
      label: "`lspci -D -nnk` in the namespace, with libkmod lookups in the tree's module index",
      ...nsCmd(['lspci', '-D', '-nnk']),
      unavailable: nsMissing('lspci'),
      verify: (o, e, s) =>
        lspciOk(o, e, s) ??
        (/Kernel modules:/.test(o) ? null : 'no "Kernel modules:" lines (libkmod found no index)'),
    },
    {
      id: 'bind',
      label: `\`vfioctl bind <all ${tree.vfs.length} VFs> --dry-run\``,
      argv: [...vf, 'bind', ...tree.vfs, '--dry-run'],
      unavailable: bindAvailable ?? undefined,
      // 3: some would be refused (the VFs whose host interface is up): the whole plan was made.
      okStatus: [0, 3],
      verify: (o, e, s) =>
        s !== 0 && s !== 3
          ? `exit ${s}: ${firstLine(e)}`
          : countLines(o, /^[0-9a-f]{4}:/) === tree.vfs.length
            ? null
            : `planned ${countLines(o, /^[0-9a-f]{4}:/)} of ${tree.vfs.length} VFs`,
    },
    {
      id: 'status',
      label: `\`vfioctl status --json\` (${tree.vfs.length} configured VFs)`,
      argv: [...vf, 'status', '--json'],
      // 5: something drifts (the VFs the tree leaves on their host driver): the whole report.
      okStatus: [0, 5],
      verify: (o, _e, s) =>
        (s === 0 || s === 5) &&
        (JSON.parse(o) as { devices?: unknown[] }).devices?.length === tree.vfs.length
          ? null
          : `exit ${s}, not ${tree.vfs.length} devices`,
    },
    {
      id: 'apply',
      label: `\`vfioctl apply --dry-run\` (${tree.vfs.length} configured VFs)`,
      argv: [...vf, 'apply', '--dry-run'],
      // 3: some would be refused (the VFs whose host interface is up): the whole plan was made.
      okStatus: [0, 3],
      verify: (o, e, s) =>
        s !== 0 && s !== 3
          ? `exit ${s}: ${firstLine(e)}`
          : countLines(o, /^[0-9a-f]{4}:/) === tree.vfs.length
            ? null
            : `planned ${countLines(o, /^[0-9a-f]{4}:/)} of ${tree.vfs.length} VFs`,
    },
    {
      id: 'dpdk',
      label: '`dpdk-devbind.py --status` (namespace)',
      ...nsCmd(['dpdk-devbind.py', '--status']),
      slow: true,
      unavailable: nsMissing('dpdk-devbind.py'),
      verify: (o, e, s) =>
        s === 0 && /Network devices/.test(o) ? null : `exit ${s}: ${firstLine(e)}`,
    },
    {
      id: 'driverctl',
      label: '`driverctl list-devices` (namespace)',
      ...nsCmd(['driverctl', 'list-devices']),
      slow: true,
      unavailable: nsMissing('driverctl'),
      verify: (o, _e, s) =>
        s === 0 && countLines(o, /^[0-9a-f]{4}:/) === n
          ? null
          : `exit ${s}, ${countLines(o, /^[0-9a-f]{4}:/)} of ${n} devices`,
    },
    {
      id: 'nsfloor',
      label: '`true` in the same namespace wrapper (its overhead)',
      ...nsCmd(['true']),
      unavailable: nsProblem ?? undefined,
    },
  ];
}

/**
 * The pairs of rows timed back to back as well: every target's but the two slow peers' (seconds
 * each), and the load floor's against `node -e 0`.
 */
const PAIRED: readonly (readonly [string, string])[] = [
  ['version', 'node0'],
  ['loadfloor', 'node0'],
  ['smallshow', 'node0'],
  ['smalllist', 'node0'],
  ['list', 'lspci'],
  ['status', 'list'],
  ['apply', 'list'],
  ['bind', 'list'],
];

interface Target {
  what: string;
  goal: string;
  ratio: number | null;
  pairs: number[];
  /** Back-to-back pairs (the verdict, when there): `pairs` are then their ratios. */
  backToBack?: BackToBack;
  /** The rounds' median ratio, shown beside a back-to-back verdict. */
  roundsRatio?: number | null;
  pass: boolean | null;
  /** For a miss: by how much. */
  by: string;
  /** Which profile (list, show, bind) explains it. */
  prof: string | undefined;
  /** min / min: the least disturbed runs of each (context; the verdict uses the medians). */
  minRatio: number | null;
}

function pairedRatios(a: Sample[] | undefined, b: Sample[] | undefined): number[] {
  if (!a || !b) return [];
  const n = Math.min(a.length, b.length);
  return Array.from({ length: n }, (_, i) => a[i]!.ms / b[i]!.ms);
}

function fmtRatio(r: number | null): string {
  return r === null ? 'n/a' : `${r.toFixed(2)}x`;
}

function fmtPairs(p: number[]): string {
  return p.length ? `${Math.min(...p).toFixed(2)}–${Math.max(...p).toFixed(2)}` : '–';
}

/** The middle half of a set of ratios: from its 25th to its 75th percentile (nearest rank). */
function middleHalf(p: readonly number[]): string {
  const s = [...p].sort((a, b) => a - b);
  const at = (q: number) => s[Math.max(0, Math.ceil(q * s.length) - 1)]!;
  return `${at(0.25).toFixed(2)}–${at(0.75).toFixed(2)}`;
}

/**
 * A back-to-back verdict's spread cell: the pairs' middle half, the median of each order (how
 * much going first or second moved it), and the rounds' median ratio for comparison.
 */
function fmtBackToBack(bb: BackToBack, rounds: number | null | undefined): string {
  if (bb.failed > 0) return `${bb.failed} of ${bb.failed + bb.ratios.length} pairs failed`;
  if (!bb.ratios.length) return '–';
  const order = (xs: number[]) => (xs.length ? fmtRatio(median(xs)) : 'n/a');
  return `${middleHalf(bb.ratios)} (middle half of ${bb.ratios.length} pairs; measured command first ${order(bb.aFirst)}, peer first ${order(bb.bFirst)}; rounds ${fmtRatio(rounds ?? null)})`;
}

/**
 * The middle tree against the line through the smallest and the largest: above it (a concave
 * curve) the cost grows more slowly than the tree towards the top, below it faster.
 */
function linearity(deviation: number): string {
  if (Math.abs(deviation) < 0.15) return 'linear';
  return deviation > 0
    ? 'above the line, so the cost grows more slowly than the tree towards the largest: no worse than linear'
    : 'below the line, so the cost grows faster than the tree towards the largest: worse than linear';
}

function mib(kib: number | null): string {
  return kib === null ? 'n/a' : `${(kib / 1024).toFixed(1)} MiB`;
}

function main(): void {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  for (const f of [DIST, CLI, READABLE])
    if (!fs.existsSync(f)) throw new Error(`${f} missing: run npm run build first`);
  const tools = ensureTools();
  const cache = process.env.VFIOCTL_BENCH_CACHE ?? '/var/cache/vfioctl-bench';
  const kmods = debianKernelModules(cache, log);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-bench-'));
  const cleanup = () =>
    opts.keep ? log(`trees kept in ${work}`) : fs.rmSync(work, { recursive: true, force: true });
  try {
    const pfs = opts.functions / (VFS_PER_PF + 1);
    const t = Date.now();
    const tree = installed(buildHostTree(path.join(work, `host-${opts.functions}`), pfs, kmods));
    const genMs = Date.now() - t;
    log(`built ${tree.functions}-function tree in ${fmtMs(genMs)} (${tree.dir})`);
    const small = installed(buildHostTree(path.join(work, 'host-small'), 1, kmods, 1));
    writeCodeCache(small.dir);
    log(codeCacheNote);
    const overlay = makeKmodOverlay(work, tree, kmods);
    const wrap = nsWrapper(tree, overlay);
    const nsProblem = nsWorks(wrap);
    if (nsProblem) log(`namespace peers not available: ${nsProblem}`);
    const help = capture([NODE, DIST, 'bind', '--help']);
    const bindAvailable =
      help.status === 0 && /--dry-run/.test(help.stdout)
        ? null
        : 'not available: `vfioctl bind --dry-run` is not implemented in this build';
    const cmds = commands(tree, small, nsProblem ? null : wrap, nsProblem, tools, bindAvailable);

    // One captured run each: checks the output is right, and warms the page cache.
    for (const c of cmds) {
      if (c.unavailable || !c.verify) continue;
      const r = capture(c.argv);
      let err: string | null;
      try {
        err = c.verify(r.stdout, r.stderr, r.status);
      } catch (e) {
        err = `unreadable output: ${(e as Error).message}`;
      }
      if (err) {
        log(`${c.id}: wrong output: ${err}`);
        c.unavailable = `failed: ${err}`;
      }
    }

    log(`timing, alternating: ${opts.reps} rounds (${opts.slowReps} for the slow peers)`);
    const samples = alternate(cmds, opts.reps, opts.slowReps, log);
    // Each target's two commands again, one right after the other: the verdicts (see backToBack).
    const paired = new Map<string, BackToBack>();
    for (const [a, b] of PAIRED) {
      const ca = cmds.find((c) => c.id === a);
      const cb = cmds.find((c) => c.id === b);
      if (!ca || !cb || ca.unavailable || cb.unavailable) continue;
      log(`back to back: ${a} / ${b}, ${opts.pairs} pairs`);
      paired.set(`${a}/${b}`, backToBack(ca, cb, opts.pairs));
    }
    const rows: Row[] = cmds.map((c) => {
      const s = samples.get(c.id) ?? [];
      const bad = s.find((x) => !(c.okStatus ?? [0]).includes(x.status ?? -1));
      return {
        cmd: c,
        samples: s,
        stats: s.length ? stats(s.map((x) => x.ms)) : null,
        rssKiB: null,
        failed: bad ? `exit ${bad.status}` : null,
      };
    });
    log('peak RSS (one run each under /usr/bin/time)');
    for (const r of rows) {
      if (r.cmd.unavailable || !tools.get('time')) continue;
      // Inside the namespace, time measures the peer itself (not unshare/sh).
      r.rssKiB = r.cmd.inner
        ? peakRssKiB(r.cmd.inner, wrap, r.cmd.okStatus)
        : peakRssKiB(r.cmd.argv, undefined, r.cmd.okStatus);
    }

    // Scaling: list (and lspci, for reference) at 1, 4, 16 PFs, alternating.
    const scalePfs = [1, 4, 16].filter((p) => p <= pfs);
    if (!scalePfs.includes(pfs)) scalePfs.push(pfs);
    const scale: { tree: HostTree; list: Stats; lspci: Stats | null }[] = [];
    const scaleTrees = scalePfs.map((p) =>
      p === pfs ? tree : buildHostTree(path.join(work, `host-${p * (VFS_PER_PF + 1)}`), p, kmods),
    );
    const scaleCmds: Cmd[] = scaleTrees.flatMap((st) => [
      {
        id: `list-${st.sriovFunctions}`,
        label: '',
        argv: [...vfioctlArgv(), '--root', installed(st).dir, 'list', '--json'],
      },
      {
        id: `lspci-${st.sriovFunctions}`,
        label: '',
        argv: [
          'lspci',
          '-D',
          '-nnk',
          '-A',
          'linux-sysfs',
          '-O',
          `sysfs.path=${path.join(st.dir, 'sys/bus/pci')}`,
        ],
        unavailable: tools.get('lspci') ? undefined : 'no lspci',
      },
    ]);
    for (const c of scaleCmds) if (!c.unavailable) capture(c.argv);
    log(
      `scaling: ${scalePfs.map((p) => p * (VFS_PER_PF + 1)).join(', ')} SR-IOV functions, ${opts.scaleReps} rounds`,
    );
    const ss = alternate(scaleCmds, opts.scaleReps, opts.scaleReps, log);
    for (const st of scaleTrees) {
      const l = ss.get(`list-${st.sriovFunctions}`)!;
      const p = ss.get(`lspci-${st.sriovFunctions}`) ?? [];
      scale.push({
        tree: st,
        list: stats(l.map((x) => x.ms)),
        lspci: p.length ? stats(p.map((x) => x.ms)) : null,
      });
    }

    log('profiling with --cpu-prof');
    const profiles = new Map<string, ProfileSummary | string>();
    profiles.set(
      'list',
      profile(
        NODE,
        READABLE,
        ['--root', tree.dir, 'list', '--json'],
        `vfioctl list --json (${tree.functions} functions)`,
      ),
    );
    profiles.set(
      'smalllist',
      profile(
        NODE,
        READABLE,
        ['--root', small.dir, 'list', '--json'],
        `vfioctl list --json (small tree, ${small.functions} functions)`,
      ),
    );
    profiles.set(
      'smallshow',
      profile(
        NODE,
        READABLE,
        ['--root', small.dir, 'show', small.showAddress, '--json'],
        `vfioctl show ${small.showAddress} --json (small tree)`,
      ),
    );
    profiles.set(
      'status',
      profile(
        NODE,
        READABLE,
        ['--root', tree.dir, 'status', '--json'],
        `vfioctl status --json (${tree.vfs.length} configured VFs)`,
        [0, 5],
      ),
    );
    profiles.set(
      'apply',
      profile(
        NODE,
        READABLE,
        ['--root', tree.dir, 'apply', '--dry-run'],
        `vfioctl apply --dry-run (${tree.vfs.length} configured VFs)`,
        [0, 3],
      ),
    );
    if (!rows.find((r) => r.cmd.id === 'bind')?.cmd.unavailable) {
      profiles.set(
        'bind',
        profile(
          NODE,
          READABLE,
          ['--root', tree.dir, 'bind', ...tree.vfs, '--dry-run'],
          `vfioctl bind <${tree.vfs.length} VFs> --dry-run`,
          [0, 3],
        ),
      );
    }

    const md = report({
      opts,
      tree,
      small,
      kmods,
      genMs,
      rows,
      scale,
      profiles,
      paired,
      machine: machine(),
      nsProblem,
      overlay,
      elapsedMs: Date.now() - started,
    });
    process.stdout.write(md);
    if (opts.out) {
      writeFormatted(opts.out, md);
      log(`wrote ${path.relative(process.cwd(), opts.out) || opts.out}`);
    }
  } finally {
    cleanup();
  }
}

/**
 * The figures measured elsewhere, so the performance story is in one place: the real-kernel
 * suite's bulk bind (its newest run under build/e2e-runs that has figures) and the boot-layer
 * costs `npm run bench:boot` wrote to bench/boot-layers.md.
 */
function elsewhere(): string[] {
  const L: string[] = ['## Real-kernel and boot figures (measured by other runs, copied here)', ''];
  const runs = path.join(REPO, 'build/e2e-runs');
  let found: { run: string; figures: string[] } | undefined;
  for (const run of (fs.existsSync(runs) ? fs.readdirSync(runs) : []).sort().reverse()) {
    try {
      const outcomes = JSON.parse(
        fs.readFileSync(path.join(runs, run, 'results.json'), 'utf8'),
      ) as { boot: string; results: { scenario: string; figures?: string[] }[] }[];
      const figures = outcomes.flatMap((o) =>
        o.results.flatMap((r) =>
          (r.figures ?? []).map((f) => `\`${r.scenario}\` on ${o.boot}: ${f}`),
        ),
      );
      if (figures.length > 0) {
        found = { run, figures };
        break;
      }
    } catch {
      /* a run without results */
    }
  }
  if (found) {
    L.push(
      `From the real-kernel suite (QEMU/TCG guest, so absolute times are the emulator's; run ${found.run}, \`npm run test:e2e -- --scenario bulk-bind-vs-driverctl\`):`,
      '',
    );
    for (const f of found.figures) L.push(`- ${f}`);
  } else {
    L.push(
      'No real-kernel figures: no run under build/e2e-runs recorded any (`npm run test:e2e -- --kernel 6.12 --scenario bulk-bind-vs-driverctl` as root records one).',
    );
  }
  L.push('');
  const boot = path.join(REPO, 'bench/boot-layers.md');
  if (fs.existsSync(boot)) {
    const text = fs.readFileSync(boot, 'utf8');
    const generated = /^Generated by[^\n]*/m.exec(text)?.[0] ?? '';
    const table = text.split('\n').filter((l) => l.startsWith('|'));
    L.push(
      `Boot-layer costs from bench/boot-layers.md (${generated.replace(/^Generated by /, 'generated by ').split('. ')[0]}):`,
      '',
      ...table,
    );
  } else {
    L.push('No boot-layer figures: bench/boot-layers.md is missing (`npm run bench:boot`).');
  }
  L.push('');
  return L;
}

interface ReportInput {
  opts: Options;
  tree: HostTree;
  small: HostTree;
  kmods: KernelModules;
  genMs: number;
  rows: Row[];
  scale: { tree: HostTree; list: Stats; lspci: Stats | null }[];
  profiles: Map<string, ProfileSummary | string>;
  /** Back-to-back pairs, by `a/b` (PAIRED). */
  paired: Map<string, BackToBack>;
  machine: Record<string, string>;
  nsProblem: string | null;
  overlay: string | null;
  elapsedMs: number;
}

function report(x: ReportInput): string {
  const { tree, rows } = x;
  const row = (id: string) => rows.find((r) => r.cmd.id === id)!;
  const med = (id: string) => {
    const r = row(id);
    return r.stats && !r.failed && !r.cmd.unavailable ? r.stats.median : null;
  };
  // Over the rounds both ran (a slow peer runs only in the first rounds): same conditions.
  const ratio = (a: string, b: string) => {
    if (med(a) === null || med(b) === null) return null;
    const n = Math.min(row(a).samples.length, row(b).samples.length);
    const pick = (id: string) =>
      stats(
        row(id)
          .samples.slice(0, n)
          .map((x) => x.ms),
      ).median;
    return pick(a) / pick(b);
  };
  const targets: Target[] = [];
  const minRatio = (a: string, b: string) => {
    const ra = row(a);
    const rb = row(b);
    if (
      !ra.stats ||
      !rb.stats ||
      ra.failed ||
      rb.failed ||
      ra.cmd.unavailable ||
      rb.cmd.unavailable
    )
      return null;
    const n = Math.min(ra.samples.length, rb.samples.length);
    const min = (r: Row) => Math.min(...r.samples.slice(0, n).map((x) => x.ms));
    return min(ra) / min(rb);
  };
  const addTarget = (
    what: string,
    goal: string,
    roundsRatio: number | null,
    roundPairs: number[],
    limit: number,
    kind: 'max' | 'min',
    prof?: string,
    a = '',
    b = '',
  ) => {
    // The verdict: the median of the two commands' back-to-back pairs, where they were timed so;
    // none when either command failed, in the rounds or in a pair.
    const bb = x.paired.get(`${a}/${b}`);
    const paired = bb !== undefined;
    const failed = row(a).failed !== null || row(b).failed !== null || (bb?.failed ?? 0) > 0;
    const r =
      paired && !failed && bb.ratios.length > 0 ? median(bb.ratios) : paired ? null : roundsRatio;
    const pairs = paired ? bb.ratios : roundPairs;
    const pass = r === null ? null : kind === 'max' ? r <= limit : r >= limit;
    let by = '';
    // By how much: the speed-up vfioctl still needs to reach the goal in this run.
    if (pass === false && r !== null)
      by =
        kind === 'max'
          ? `${fmtRatio(r)} is ${((r / limit - 1) * 100).toFixed(0)}% over ${limit}x: needs ${(r / limit).toFixed(2)}x faster`
          : `${fmtRatio(r)} is ${((1 - r / limit) * 100).toFixed(0)}% under ${limit}x: needs ${(limit / r).toFixed(2)}x faster`;
    targets.push({
      what,
      goal,
      ratio: r,
      pairs,
      ...(paired ? { backToBack: bb, roundsRatio } : {}),
      pass,
      by,
      prof,
      minRatio: minRatio(a, b),
    });
  };
  const pr = (a: string, b: string) => pairedRatios(row(a).samples, row(b).samples);
  addTarget(
    '`list --json` / `lspci -D -nnk`',
    '≤ 1.0x',
    ratio('list', 'lspci'),
    pr('list', 'lspci'),
    1.0,
    'max',
    'list',
    'list',
    'lspci',
  );
  addTarget(
    '`driverctl list-devices` / `list --json`',
    '≥ 30x',
    ratio('driverctl', 'list'),
    pr('driverctl', 'list'),
    30,
    'min',
    'list',
    'driverctl',
    'list',
  );
  addTarget(
    '`dpdk-devbind.py --status` / `list --json`',
    '≥ 10x',
    ratio('dpdk', 'list'),
    pr('dpdk', 'list'),
    10,
    'min',
    'list',
    'dpdk',
    'list',
  );
  addTarget(
    `small tree (${x.small.functions} functions): \`list --json\` / \`node -e 0\``,
    '≤ 1.3x',
    ratio('smalllist', 'node0'),
    pr('smalllist', 'node0'),
    1.3,
    'max',
    'smalllist',
    'smalllist',
    'node0',
  );
  addTarget(
    'small tree: `show --json` / `node -e 0`',
    '≤ 1.2x',
    ratio('smallshow', 'node0'),
    pr('smallshow', 'node0'),
    1.2,
    'max',
    'smallshow',
    'smallshow',
    'node0',
  );
  addTarget(
    '`--version` / `node -e 0`',
    '≤ 1.1x',
    ratio('version', 'node0'),
    pr('version', 'node0'),
    1.1,
    'max',
    undefined,
    'version',
    'node0',
  );
  addTarget(
    `\`status --json\` (${tree.vfs.length} configured VFs) / \`list --json\``,
    '≤ 1.5x',
    ratio('status', 'list'),
    pr('status', 'list'),
    1.5,
    'max',
    'status',
    'status',
    'list',
  );
  addTarget(
    `\`apply --dry-run\` (${tree.vfs.length} configured VFs) / \`list --json\``,
    '≤ 1.5x',
    ratio('apply', 'list'),
    pr('apply', 'list'),
    1.5,
    'max',
    'apply',
    'apply',
    'list',
  );
  addTarget(
    `\`bind --dry-run\` (${tree.vfs.length} VFs) / \`list --json\``,
    '< 2x',
    ratio('bind', 'list'),
    pr('bind', 'list'),
    2,
    'max',
    'bind',
    'bind',
    'list',
  );
  const vfRss = rows.filter(
    (r) =>
      ['version', 'smallshow', 'smalllist', 'show', 'list', 'bind', 'status', 'apply'].includes(
        r.cmd.id,
      ) && r.rssKiB !== null,
  );
  const maxRss = vfRss.length ? Math.max(...vfRss.map((r) => r.rssKiB!)) : null;
  const maxRssRow = vfRss.find((r) => r.rssKiB === maxRss);
  targets.push({
    what: `peak RSS of every vfioctl command (largest: ${maxRssRow ? maxRssRow.cmd.id : 'n/a'})`,
    goal: '< 80 MB',
    ratio: null,
    pairs: [],
    pass: maxRss === null ? null : maxRss * 1024 < 80e6,
    prof: undefined,
    minRatio: null,
    by:
      maxRss !== null && maxRss * 1024 >= 80e6
        ? `${mib(maxRss)} = ${((maxRss * 1024) / 1e6).toFixed(1)} MB, ${(((maxRss * 1024) / 80e6 - 1) * 100).toFixed(0)}% over 80 MB (\`node -e 0\` alone: ${mib(row('node0').rssKiB)})`
        : '',
  });

  const m = x.machine;
  // lspci does the same fixed work every round, in C: its spread is the machine's, not vfioctl's.
  // The load average cannot show a neighbour on the same host taking the CPU from this guest.
  // The back-to-back pairs come after the rounds: lspci's runs there count too.
  const steadiness = (): string => {
    const s = row('lspci').stats;
    if (!s || row('lspci').failed || row('lspci').cmd.unavailable) return 'not measured (no lspci)';
    const inPairs = x.paired.get('list/lspci')?.bMs ?? [];
    const all = [...row('lspci').samples.map((r) => r.ms), ...inPairs];
    const spread = Math.max(...all) / Math.min(...all);
    const pairsPart = inPairs.length
      ? `, and ${fmtMs(Math.min(...inPairs))} to ${fmtMs(Math.max(...inPairs))} in the ${inPairs.length} back-to-back pairs after them`
      : '';
    return `lspci, the same work each time, took ${fmtMs(s.min)} to ${fmtMs(s.max)} in the rounds${pairsPart} (slowest / fastest ${spread.toFixed(2)}): ${spread <= 1.2 ? 'steady' : '**disturbed**: a ratio within a few percent of its goal is not settled by this run'}`;
  };
  const L: string[] = [];
  L.push('# vfioctl benchmark results', '');
  L.push(
    'Generated by `npm run bench` (bench/run.ts); do not edit by hand. Only the **ratios** between commands of this one run mean anything: the machines are shared and noisy, so absolute times are context only.',
    '',
  );
  L.push('## Machine', '');
  L.push('| | |', '|---|---|');
  L.push(
    `| date | ${m.date} |`,
    `| CPU | ${m.cpu} |`,
    `| memory | ${m.memory} |`,
    `| kernel | ${m.kernel} |`,
    `| node | ${m.node} |`,
    `| vfioctl | ${m.vfioctl} |`,
    `| peers | ${m.peers} |`,
    `| environment | ${m.environment} |`,
    `| load | ${m.load}; the table's commands share the machine with whatever else ran |`,
    `| steadiness | ${steadiness()} |`,
  );
  L.push('');
  L.push('## Host tree', '');
  L.push(
    `${tree.functions.toLocaleString('en')} PCI functions: ${tree.pfs} SR-IOV PFs with ${VFS_PER_PF} VFs each (${tree.sriovFunctions.toLocaleString('en')} functions: ConnectX-6 Dx, E810, QAT 4xxx, virtio-net PFs in turn; per PF VFs 0-63 on the host VF driver, 64-95 on vfio-pci, 96-127 on the variant driver, the rest unbound) plus ${ORDINARY} ordinary functions (host bridge, VGA, SATA with the root file system, ${ORDINARY - 3} root ports), built in ${fmtMs(x.genMs)} with test/support/fixture.ts: the sysfs files lspci reads including \`config\`, relative links, drivers/, iommu_groups, virtfnN/physfn.`,
  );
  L.push(
    `Module index: ${x.kmods.source} (\`apt-get download\`, \`dpkg-deb -x\`, \`depmod -b\`): modules.alias of ${x.kmods.aliasLines.toLocaleString('en')} lines plus ${VARIANT_ALIASES.length} variant \`vfio_pci:\` aliases (mlx5, virtio, qat, hisi_acc, pds, nvgrace-gpu), and the real /usr/share/misc/pci.ids.`,
  );
  L.push(
    `vfioctl is timed as installed: \`dist/vfioctl\`, the launcher, with the code cache the Debian package's postinst makes (\`vfioctl --write-code-cache\`, here on the small tree: "${codeCacheNote}"); one row starts the bundle \`dist/vfioctl.js\` directly, without it.`,
  );
  L.push(
    `driverctl and dpdk-devbind.py read /sys directly: they run in a private mount namespace (\`unshare -m\`) with the tree's \`sys/\` bind-mounted over /sys${x.overlay ? ` and an overlay giving /lib/modules/${os.release()} the tree's module index, so their \`lspci -k\` and the "libkmod" lspci row do module lookups as on a real host` : ''}. The row "\`true\` in the same namespace wrapper" is that wrapper's own cost, included in theirs.${x.nsProblem ? ` **Not available in this run: ${x.nsProblem}.**` : ''}`,
  );
  L.push('');
  L.push(
    `## Times (${x.opts.reps} alternating rounds, ${x.opts.slowReps} for the slow peers; stdout to /dev/null)`,
    '',
  );
  L.push('| command | runs | median | min–max | peak RSS |', '|---|---:|---:|---:|---:|');
  for (const r of rows) {
    if (r.cmd.unavailable) {
      L.push(
        `| ${r.cmd.label} | – | ${r.cmd.unavailable.startsWith('not available') ? r.cmd.unavailable : `not available: ${r.cmd.unavailable}`} | | |`,
      );
      continue;
    }
    const s = r.stats!;
    L.push(
      `| ${r.cmd.label} | ${s.n} | ${r.failed ? `failed (${r.failed})` : fmtMs(s.median)} | ${fmtMs(s.min)} – ${fmtMs(s.max)} | ${mib(r.rssKiB)} |`,
    );
  }
  L.push('');
  L.push('## Targets (issue 19)', '');
  L.push(
    `Ratio = median / median from this run, over the rounds both commands ran (the verdict); the spread is the range of the per-round ratios (the commands alternate, so round *i* of one pairs with round *i* of the other); "fastest / fastest" compares the least disturbed run of each, for context when the machine was busy. Where a row says "middle half of N pairs" (every target but the two slow peers'), the verdict is instead the median of N back-to-back pairs after the rounds, each the two commands run one right after the other, each going first in half of them; the cell gives the pairs' middle half, the median of each order and the rounds' median ratio. Run moments apart, the two of a pair see the same machine, where a round puts every other command between them.`,
    '',
  );
  L.push(
    '| target | goal | measured (median ratio) | per-round spread | fastest / fastest | result |',
    '|---|---|---:|---:|---:|---|',
  );
  for (const t of targets) {
    const measured =
      t.ratio !== null ? fmtRatio(t.ratio) : t.goal === '< 80 MB' ? mib(maxRss) : 'n/a';
    const res = t.pass === null ? 'not measured' : t.pass ? '**pass**' : `**miss**: ${t.by}`;
    L.push(
      `| ${t.what} | ${t.goal} | ${measured} | ${t.backToBack ? fmtBackToBack(t.backToBack, t.roundsRatio) : fmtPairs(t.pairs)} | ${t.minRatio === null ? '–' : fmtRatio(t.minRatio)} | ${res} |`,
    );
  }
  L.push('');
  L.push(`## Scaling (\`vfioctl list --json\`, ${x.opts.scaleReps} alternating rounds)`, '');
  L.push(
    '| SR-IOV functions | total functions | `list --json` median (min–max) | per function | `lspci -D -nnk` median | lspci per function | list / lspci |',
    '|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const s of x.scale) {
    L.push(
      `| ${s.tree.sriovFunctions.toLocaleString('en')} | ${s.tree.functions.toLocaleString('en')} | ${fmtMs(s.list.median)} (${fmtMs(s.list.min)} – ${fmtMs(s.list.max)}) | ${((s.list.median * 1000) / s.tree.functions).toFixed(0)} µs | ${s.lspci ? fmtMs(s.lspci.median) : 'n/a'} | ${s.lspci ? `${((s.lspci.median * 1000) / s.tree.functions).toFixed(0)} µs` : 'n/a'} | ${s.lspci ? fmtRatio(s.list.median / s.lspci.median) : 'n/a'} |`,
    );
  }
  if (x.scale.length >= 2) {
    const a = x.scale[0]!;
    const b = x.scale[x.scale.length - 1]!;
    const slope = (b.list.median - a.list.median) / (b.tree.functions - a.tree.functions);
    const fixed = a.list.median - slope * a.tree.functions;
    L.push(
      '',
      `Fit through the smallest and largest tree: ${fmtMs(fixed)} fixed + ${(slope * 1000).toFixed(0)} µs per function.`,
    );
    if (x.scale.length >= 3) {
      const mid = x.scale[1]!;
      const pred = fixed + slope * mid.tree.functions;
      L.push(
        `The middle tree (${mid.tree.functions.toLocaleString('en')} functions) predicted by that line: ${fmtMs(pred)}, measured ${fmtMs(mid.list.median)} (${(((mid.list.median - pred) / pred) * 100).toFixed(0)}%): ${linearity((mid.list.median - pred) / pred)}.`,
      );
    }
  }
  L.push('');
  L.push(...elsewhere());
  L.push(
    '## Profiles (`node --cpu-prof`, self time)',
    '',
    'Of `build/bench/vfioctl.readable.js`: the same program as `dist/vfioctl.js` with its whitespace and module comments kept (the shipped bundle is minified), started directly (no code cache), so that samples map back to `src/` files.',
    '',
  );
  for (const p of x.profiles.values()) {
    if (typeof p === 'string') {
      L.push(`- profile failed: ${p}`);
      continue;
    }
    L.push(`### ${p.command}: ${fmtMs(p.totalMs)} sampled`, '');
    L.push('| by area | self | % |', '|---|---:|---:|');
    for (const e of p.byFile) L.push(`| ${e.fn} | ${fmtMs(e.selfMs)} | ${e.pct.toFixed(1)} |`);
    L.push('', '| function (self time) | where | self | % |', '|---|---|---:|---:|');
    for (const e of p.top)
      L.push(
        `| ${e.fn.replace(/\|/g, '\\|')} | ${e.where} | ${fmtMs(e.selfMs)} | ${e.pct.toFixed(1)} |`,
      );
    L.push(
      '',
      '| src function, with the fs/node/native calls it makes | where | time | % |',
      '|---|---|---:|---:|',
    );
    for (const e of p.bySrc)
      L.push(
        `| ${e.fn.replace(/\|/g, '\\|')} | ${e.where} | ${fmtMs(e.selfMs)} | ${e.pct.toFixed(1)} |`,
      );
    L.push('');
  }
  // The fixed part no device read can remove: Node's own start-up, then the bundle from its code
  // cache and the command line (`--version` is the launcher alone).
  const startupNote = (prof: string | undefined): string => {
    const node0 = med('node0');
    const version = med('version');
    if (node0 === null || version === null) return '';
    const bundleKiB = fs.existsSync(DIST)
      ? ` (${(fs.statSync(DIST).size / 1024).toFixed(0)} KiB)`
      : '';
    const launcherKiB = fs.existsSync(CLI)
      ? ` (${(fs.statSync(CLI).size / 1024).toFixed(0)} KiB)`
      : '';
    if (prof === undefined)
      return ` Of \`--version\`'s ${fmtMs(version)}, ${fmtMs(node0)} is \`node -e 0\`: the launcher${launcherKiB} answers before it reads the bundle, so the rest is loading the launcher.`;
    const cmd = med(prof);
    if (cmd === null) return '';
    const direct = prof === 'smallshow' ? med('smallshowbundle') : null;
    // On a small tree: how much of the goal's allowance above Node merely loading the code takes.
    const load = prof.startsWith('small') ? med('loadfloor') : null;
    const loadPairs = x.paired.get('loadfloor/node0');
    const loadRatio =
      loadPairs && loadPairs.failed === 0 && loadPairs.ratios.length
        ? median(loadPairs.ratios)
        : null;
    const loadPart =
      load === null
        ? ''
        : ` Loading vfioctl's code alone, with nothing run (\`vfioctl --check-code-cache\`), takes ${fmtMs(load)}, ${fmtRatio(load / node0)} \`node -e 0\`${loadRatio === null ? '' : ` (${fmtRatio(loadRatio)} back to back, ${loadPairs!.ratios.length} pairs)`}; the bundle's top level, the command line and the command take the other ${fmtMs(cmd - load)}.`;
    return ` Of its ${fmtMs(cmd)}, ${fmtMs(node0)} (${((100 * node0) / cmd).toFixed(0)}%) is Node's own start-up (\`node -e 0\`); the rest is the bundle${bundleKiB}, started from its code cache, and the command${direct === null ? '' : ` (the bundle started directly, without the cache: ${fmtMs(direct)})`}.${loadPart}`;
  };
  // What one Node thread pays for list's per-function reads alone (bench/floor-reads.ts).
  const floorNote = (): string => {
    const floor = med('floor');
    const lspci = med('lspci');
    const list = med('list');
    if (floor === null || lspci === null || list === null) return '';
    const cfloor = med('cfloor');
    const node0 = med('node0');
    // The Node script's time is its start-up, about the C program's time (the system calls
    // themselves) and what Node does around them (argument checks, bindings, strings, GC).
    const c =
      cfloor === null || node0 === null
        ? ''
        : ` The same reads from C (\`bench/floor-reads.c\`) take ${fmtMs(cfloor)} (${fmtRatio(cfloor / lspci)} lspci), about what the system calls cost in the kernel; the Node script's other ${fmtMs(floor - cfloor)} is Node's start-up (\`node -e 0\`, ${fmtMs(node0)}) and its other costs of the same reads (${fmtMs(floor - cfloor - node0)}: each call's argument checks and binding, the paths and strings it makes, GC).`;
    return ` Node doing nothing but those reads (\`bench/floor-reads.ts\`) takes ${fmtMs(floor)}: ${fmtRatio(floor / lspci)} lspci, ${((100 * floor) / list).toFixed(0)}% of \`list\`; the rest is parsing, matching, names, the in-use checks and the JSON.${c}`;
  };
  const missed = targets.filter((t) => t.pass === false);
  L.push('## Misses', '');
  if (missed.length === 0) L.push('None: every measured target passes in this run.');
  for (const t of missed) {
    const q = t.prof === undefined ? undefined : x.profiles.get(t.prof);
    const p = typeof q === 'object' ? q : undefined;
    const bound = p
      ? ` Bounded by (profile of \`${p.command}\`): ${p.byFile
          .slice(0, 3)
          .map((e) => `${e.fn} ${e.pct.toFixed(0)}%`)
          .join(', ')}; by owning src function: ${p.bySrc
          .slice(0, 4)
          .map((e) => `${e.fn} (${e.where.replace(/ \(dist:\d+\)$/, '')}) ${e.pct.toFixed(0)}%`)
          .join(', ')}.`
      : '';
    L.push(
      `- ${t.what}: ${t.by}.${bound}${t.what.startsWith('`--version`') || t.prof ? startupNote(t.prof) : ''}${t.prof === 'list' ? floorNote() : ''}`,
    );
  }
  const notMeasured = targets.filter((t) => t.pass === null);
  for (const t of notMeasured) L.push(`- ${t.what}: not measured in this run (see the table).`);
  L.push('', `Whole bench run: ${fmtMs(x.elapsedMs)}.`, '');
  return L.join('\n');
}

try {
  main();
} catch (e) {
  log(`failed: ${(e as Error).stack ?? String(e)}`);
  process.exitCode = 1;
}
