// Self time per function from `node --cpu-prof`, with bundle lines mapped back to the src/ file
// that esbuild's `// src/...` module comments name.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { BENCH_ENV } from './measure';

interface ProfNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  hitCount?: number;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileEntry {
  fn: string;
  where: string;
  selfMs: number;
  pct: number;
}

export interface ProfileSummary {
  command: string;
  totalMs: number;
  top: ProfileEntry[];
  /** Self time by source file / runtime area. */
  byFile: ProfileEntry[];
  /**
   * Per src/ function: its self time plus that of the node:/native frames it calls (fs
   * syscalls, JSON, RegExp), i.e. the time the source line that function owns costs.
   */
  bySrc: ProfileEntry[];
}

const FS_BINDINGS =
  /^(open|close|read|lstat|stat|fstat|readlink|readdir|realpath|readFileUtf8|access|existsSync|writeString|writeBuffer|internalModuleStat)$/;

/** Line number (0-based) -> `src/...` module of a non-minified esbuild bundle. */
function bundleModules(bundle: string): (line: number) => string {
  const starts: { line: number; file: string }[] = [];
  bundle.split('\n').forEach((l, i) => {
    const m = /^\/\/ ((?:src|node_modules)\/\S+)$/.exec(l);
    if (m) starts.push({ line: i, file: m[1]! });
  });
  return (line) => {
    let file = '(bundle)';
    for (const s of starts) {
      if (s.line > line) break;
      file = s.file;
    }
    return file.replace(/^node_modules\/([^/]+)\/.*/, 'node_modules/$1');
  };
}

export function profile(
  node: string,
  bundlePath: string,
  args: readonly string[],
  label: string,
  okStatus: readonly number[] = [0],
): ProfileSummary | string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-bench-prof-'));
  try {
    const r = spawnSync(
      node,
      ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '200', bundlePath, ...args],
      { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', env: BENCH_ENV },
    );
    if (!okStatus.includes(r.status ?? -1))
      return `profile run exited ${r.status}: ${(r.stderr ?? '').trim().split('\n')[0] ?? ''}`;
    const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) return 'no .cpuprofile written';
    const prof = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
    const moduleOf = bundleModules(fs.readFileSync(bundlePath, 'utf8'));
    const bundleUrl = new URL(`file://${path.resolve(bundlePath)}`).href;
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const isBundle = (url: string) => url === bundleUrl || url === path.resolve(bundlePath);
    const whereOf = (cf: ProfNode['callFrame']) =>
      isBundle(cf.url)
        ? `${moduleOf(cf.lineNumber)} (dist:${cf.lineNumber + 1})`
        : cf.url
          ? cf.url.replace(/^file:\/\//, '')
          : '';
    const srcAgg = new Map<string, ProfileEntry>();
    const selfUs = new Map<number, number>();
    prof.samples.forEach((id, i) =>
      selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)),
    );
    const fnAgg = new Map<string, ProfileEntry>();
    const fileAgg = new Map<string, ProfileEntry>();
    let total = 0;
    for (const [id, us] of selfUs) {
      const n = byId.get(id)!;
      const cf = n.callFrame;
      total += us;
      const where = whereOf(cf);
      const area =
        where.startsWith('src/') || where.startsWith('node_modules/')
          ? where.replace(/ \(dist:\d+\)$/, '')
          : where.startsWith('node:')
            ? 'node: internals (JS)'
            : cf.functionName.startsWith('(')
              ? cf.functionName
              : FS_BINDINGS.test(cf.functionName)
                ? 'fs bindings (syscalls)'
                : '(native/V8)';
      // Nearest src/ (or bundled dependency) frame at or above this one owns the sample.
      let owner: ProfNode | undefined = n;
      while (
        owner &&
        !(isBundle(owner.callFrame.url) && moduleOf(owner.callFrame.lineNumber) !== '(bundle)')
      )
        owner = byId.get(parent.get(owner.id) ?? -1);
      if (owner) {
        const ow = whereOf(owner.callFrame);
        const okey = `${owner.callFrame.functionName || '(anonymous)'}@${ow}`;
        const oe = srcAgg.get(okey) ?? {
          fn: owner.callFrame.functionName || '(anonymous)',
          where: ow,
          selfMs: 0,
          pct: 0,
        };
        oe.selfMs += us / 1000;
        srcAgg.set(okey, oe);
      }
      const name = cf.functionName || '(anonymous)';
      const key = `${name}@${where}`;
      const e = fnAgg.get(key) ?? { fn: name, where, selfMs: 0, pct: 0 };
      e.selfMs += us / 1000;
      fnAgg.set(key, e);
      const fe = fileAgg.get(area) ?? { fn: area, where: '', selfMs: 0, pct: 0 };
      fe.selfMs += us / 1000;
      fileAgg.set(area, fe);
    }
    const totalMs = total / 1000;
    const finish = (m: Map<string, ProfileEntry>, k: number) =>
      [...m.values()]
        .map((e) => ({ ...e, pct: (100 * e.selfMs) / totalMs }))
        .sort((a, b) => b.selfMs - a.selfMs)
        .slice(0, k);
    return {
      command: label,
      totalMs,
      top: finish(fnAgg, 12),
      byFile: finish(fileAgg, 10),
      bySrc: finish(srcAgg, 12),
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
