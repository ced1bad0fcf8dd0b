// Timing and memory of one command line at a time: spawnSync with argument arrays only (no shell
// string is ever built from input), stdout to /dev/null, wall time from the parent's clock.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

export interface Cmd {
  id: string;
  /** Shown in the table. */
  label: string;
  argv: readonly string[];
  /** For a command run in the mount namespace: the peer's own argv inside the wrapper. */
  inner?: readonly string[];
  /** Slow peers get fewer repetitions. */
  slow?: boolean;
  /** Exit codes of a complete run (default: 0 only). */
  okStatus?: readonly number[];
  /** Why it cannot run here; the row then says "not available". */
  unavailable?: string;
  /** Checks one captured run; returns an error text, or null when the output is right. */
  verify?: (stdout: string, stderr: string, status: number | null) => string | null;
}

export interface Sample {
  ms: number;
  status: number | null;
}

const DEV_NULL = fs.openSync('/dev/null', 'w');

/**
 * The environment every measured command runs in: this one without NODE_EXTRA_CA_CERTS. With it,
 * each Node process loads and parses that CA bundle while it starts, TLS or not (measured here:
 * `node -e 0` 5x the instructions, ~57 ms more CPU): a cost of this workplace's environment, not
 * of a host (Debian sets no such variable) and not of vfioctl (which never opens TLS), that would
 * inflate the `node -e 0` floor and every Node command beside lspci alike.
 */
export const BENCH_ENV: NodeJS.ProcessEnv = Object.fromEntries(
  Object.entries(process.env).filter(([k]) => k !== 'NODE_EXTRA_CA_CERTS'),
);
/** What BENCH_ENV left out (for the results' machine table). */
export const BENCH_ENV_REMOVED: readonly string[] =
  process.env.NODE_EXTRA_CA_CERTS === undefined ? [] : ['NODE_EXTRA_CA_CERTS'];

/** One timed run; stdout and stderr go to /dev/null, so no pipe reading is timed. */
export function timeOnce(argv: readonly string[]): Sample {
  const t0 = process.hrtime.bigint();
  const r = spawnSync(argv[0]!, argv.slice(1), {
    stdio: ['ignore', DEV_NULL, DEV_NULL],
    env: BENCH_ENV,
  });
  const t1 = process.hrtime.bigint();
  if (r.error) throw new Error(`${argv[0]}: ${r.error.message}`);
  return { ms: Number(t1 - t0) / 1e6, status: r.status };
}

export interface Captured {
  stdout: string;
  stderr: string;
  status: number | null;
}

export function capture(argv: readonly string[], env: NodeJS.ProcessEnv = {}): Captured {
  const r = spawnSync(argv[0]!, argv.slice(1), {
    encoding: 'utf8',
    maxBuffer: 1 << 30,
    env: { ...BENCH_ENV, ...env },
  });
  if (r.error) return { stdout: '', stderr: r.error.message, status: null };
  return { stdout: r.stdout, stderr: r.stderr, status: r.status };
}

/**
 * Peak resident set size in KiB from GNU time (%M: the largest RSS of the command or any
 * descendant it waited for, i.e. of the largest single process, not a sum).
 */
export function peakRssKiB(
  argv: readonly string[],
  wrap?: (argv: readonly string[]) => readonly string[],
  okStatus: readonly number[] = [0],
): number | null {
  const out = path.join(os.tmpdir(), `vfioctl-bench-rss-${process.pid}.txt`);
  const timed = ['/usr/bin/time', '-f', '%M', '-o', out, ...argv];
  const r = spawnSync(...split(wrap ? wrap(timed) : timed), {
    stdio: ['ignore', DEV_NULL, DEV_NULL],
    env: BENCH_ENV,
  });
  try {
    if (!okStatus.includes(r.status ?? -1)) return null;
    const kib = Number.parseInt(fs.readFileSync(out, 'utf8').trim().split('\n').pop() ?? '', 10);
    return Number.isFinite(kib) ? kib : null;
  } catch {
    return null;
  } finally {
    fs.rmSync(out, { force: true });
  }
}

function split(argv: readonly string[]): [string, string[]] {
  return [argv[0]!, argv.slice(1)];
}

export interface Stats {
  n: number;
  median: number;
  min: number;
  max: number;
}

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export function stats(xs: readonly number[]): Stats {
  return { n: xs.length, median: median(xs), min: Math.min(...xs), max: Math.max(...xs) };
}

/**
 * Runs every command `reps` times (slow ones `slowReps` times), alternating: in each round every
 * command that still needs a sample runs once, in an order rotated from round to round, so drift
 * in the machine's load spreads over all of them alike.
 */
export function alternate(
  cmds: readonly Cmd[],
  reps: number,
  slowReps: number,
  progress: (s: string) => void,
): Map<string, Sample[]> {
  const out = new Map<string, Sample[]>(cmds.map((c) => [c.id, []]));
  const rounds = Math.max(reps, slowReps);
  for (let r = 0; r < rounds; r++) {
    const due = cmds.filter((c) => !c.unavailable && r < (c.slow ? slowReps : reps));
    const k = due.length ? r % due.length : 0;
    const order = [...due.slice(k), ...due.slice(0, k)];
    for (const c of order) out.get(c.id)!.push(timeOnce(c.argv));
    progress(
      `round ${r + 1}/${rounds}: ${order.map((c) => `${c.id} ${fmtMs(out.get(c.id)!.at(-1)!.ms)}`).join(', ')}`,
    );
  }
  return out;
}

/** What backToBack measured: each pair's ratio a/b, and the runs themselves. */
export interface BackToBack {
  /** a/b of each complete pair. */
  readonly ratios: number[];
  /** Of those pairs, the ratios where `a` ran first and where `b` did. */
  readonly aFirst: number[];
  readonly bFirst: number[];
  /** Wall times of `b`'s runs (its spread says how steady the machine was meanwhile). */
  readonly bMs: number[];
  /** Pairs with a run that did not exit as it should (left out of the ratios). */
  readonly failed: number;
}

/**
 * `a` against its peer `b` in `n` back-to-back pairs, which of the two goes first alternating from
 * pair to pair (with `n` even, as often one as the other): each ratio compares two runs moments
 * apart, so a machine whose speed drifts over seconds (a neighbour on the host) moves both alike,
 * where the rounds of `alternate` put the whole command list between two runs of the same pair.
 */
export function backToBack(a: Cmd, b: Cmd, n: number): BackToBack {
  const ratios: number[] = [];
  const aFirst: number[] = [];
  const bFirst: number[] = [];
  const bMs: number[] = [];
  let failed = 0;
  const ok = (c: Cmd, r: Sample) => (c.okStatus ?? [0]).includes(r.status ?? -1);
  for (let i = 0; i < n; i++) {
    const first = i % 2 ? a : b;
    const second = first === a ? b : a;
    const x = timeOnce(first.argv);
    const y = timeOnce(second.argv);
    // A failed run (each command's output was verified before, so rare) says nothing of the
    // pair: counted, and the caller gives no verdict.
    if (!ok(first, x) || !ok(second, y)) {
      failed++;
      continue;
    }
    const [ta, tb] = first === a ? [x.ms, y.ms] : [y.ms, x.ms];
    ratios.push(ta / tb);
    (first === a ? aFirst : bFirst).push(ta / tb);
    bMs.push(tb);
  }
  return { ratios, aFirst, bFirst, bMs, failed };
}

export function fmtMs(ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  return `${ms.toFixed(1)} ms`;
}

/**
 * Writes a results file as `biome format` lays it out (bench/ is under `biome ci`, markdown
 * included): a fresh run then passes the lint CI runs, with no hand step between.
 */
export function writeFormatted(file: string, text: string): void {
  fs.writeFileSync(file, text);
  const biome = path.resolve(__dirname, '../../node_modules/@biomejs/biome/bin/biome');
  const r = spawnSync(process.execPath, [biome, 'format', '--write', file], { encoding: 'utf8' });
  if (r.status !== 0)
    throw new Error(`biome format ${file} failed (exit ${r.status}): ${r.stderr.trim()}`);
}
