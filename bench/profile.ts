// Self time per function from `node --cpu-prof`, with bundle lines mapped back to the src/ file
// that esbuild's `// src/...` module comments name.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

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
}

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

export function profile(node: string, bundlePath: string, args: readonly string[], label: string): ProfileSummary | string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vfioctl-bench-prof-'));
  try {
    const r = spawnSync(node, ['--cpu-prof', '--cpu-prof-dir', dir, '--cpu-prof-interval', '200', bundlePath, ...args], { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
    if (r.status !== 0) return `profile run exited ${r.status}: ${(r.stderr ?? '').trim().split('\n')[0] ?? ''}`;
    const file = fs.readdirSync(dir).find((f) => f.endsWith('.cpuprofile'));
    if (!file) return 'no .cpuprofile written';
    const prof = JSON.parse(fs.readFileSync(path.join(dir, file), 'utf8')) as CpuProfile;
    const moduleOf = bundleModules(fs.readFileSync(bundlePath, 'utf8'));
    const bundleUrl = new URL(`file://${path.resolve(bundlePath)}`).href;
    const byId = new Map(prof.nodes.map((n) => [n.id, n]));
    const selfUs = new Map<number, number>();
    prof.samples.forEach((id, i) => selfUs.set(id, (selfUs.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0)));
    const fnAgg = new Map<string, ProfileEntry>();
    const fileAgg = new Map<string, ProfileEntry>();
    let total = 0;
    for (const [id, us] of selfUs) {
      const n = byId.get(id)!;
      const cf = n.callFrame;
      total += us;
      let where: string;
      if (cf.url === bundleUrl || cf.url === path.resolve(bundlePath)) where = `${moduleOf(cf.lineNumber)} (dist:${cf.lineNumber + 1})`;
      else if (cf.url) where = cf.url.replace(/^file:\/\//, '');
      else where = '';
      const area = where.startsWith('src/') || where.startsWith('node_modules/') ? where.replace(/ \(dist:\d+\)$/, '') : where.startsWith('node:') ? 'node: internals' : cf.functionName.startsWith('(') ? cf.functionName : '(native/V8)';
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
    return { command: label, totalMs, top: finish(fnAgg, 15), byFile: finish(fileAgg, 10) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
