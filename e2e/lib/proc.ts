// Child processes for the host side of the harness: always an argument array (never a shell
// string), always a time limit, and errors that say which command failed and what it printed.
import { spawn, type SpawnOptions } from 'node:child_process';

export interface RunOptions {
  readonly cwd?: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Milliseconds before the process (group) is killed. Default 10 minutes. */
  readonly timeoutMs?: number;
  /** Bytes written to stdin, then stdin is closed. Stdin is /dev/null otherwise. */
  readonly input?: string | Buffer;
  /** Called with every chunk of stdout/stderr as it arrives (progress, console capture). */
  readonly onOutput?: (chunk: Buffer, stream: 'stdout' | 'stderr') => void;
  /** Kills the process (group) when aborted, as the time limit does. */
  readonly signal?: AbortSignal;
}

export interface RunResult {
  readonly argv: readonly string[];
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly timedOut: boolean;
  readonly stdout: string;
  readonly stderr: string;
  readonly ms: number;
}

export class CommandError extends Error {
  constructor(readonly result: RunResult) {
    const tail = (s: string): string => s.trim().split('\n').slice(-15).join('\n');
    const how = result.timedOut
      ? 'timed out'
      : result.signal
        ? `was killed by ${result.signal}`
        : `exited ${result.code}`;
    const out = [tail(result.stderr), tail(result.stdout)].filter(Boolean).join('\n');
    super(
      `command ${how}: ${formatArgv(result.argv)}${out ? `\n${out.replace(/^/gm, '  | ')}` : ''}`,
    );
    this.name = 'CommandError';
  }
}

/** For messages only: quotes arguments that need it. */
export function formatArgv(argv: readonly string[]): string {
  return argv
    .map((a) => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`))
    .join(' ');
}

const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;

/** Process groups still running, killed if the harness itself is interrupted. */
const live = new Set<number>();

/** On SIGINT/SIGTERM, kill every child process group (QEMU, make, apt) before exiting. */
export function killChildrenOnSignal(): void {
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const pid of live) killGroup(pid);
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

/** Runs argv to completion and resolves with its result, whatever the exit status. */
export function run(argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  const [cmd, ...args] = argv;
  if (!cmd) throw new Error('run: empty argv');
  const t0 = Date.now();
  const spawnOpts: SpawnOptions = {
    cwd: opts.cwd,
    env: opts.env ?? process.env,
    stdio: [opts.input !== undefined ? 'pipe' : 'ignore', 'pipe', 'pipe'],
    detached: true, // own process group, so a timeout kills the whole tree
  };
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, spawnOpts);
    if (child.pid !== undefined) live.add(child.pid);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
    }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    const abort = (): void => killGroup(child.pid);
    if (opts.signal?.aborted) abort();
    else opts.signal?.addEventListener('abort', abort, { once: true });
    child.stdout?.on('data', (b: Buffer) => {
      out.push(b);
      opts.onOutput?.(b, 'stdout');
    });
    child.stderr?.on('data', (b: Buffer) => {
      err.push(b);
      opts.onOutput?.(b, 'stderr');
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    child.on('error', (e) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', abort);
      reject(new Error(`cannot run ${formatArgv(argv)}: ${e.message}`));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', abort);
      if (child.pid !== undefined) live.delete(child.pid);
      resolve({
        argv,
        code,
        signal,
        timedOut,
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        ms: Date.now() - t0,
      });
    });
  });
}

/** Runs argv and throws a CommandError unless it exits 0. */
export async function runChecked(
  argv: readonly string[],
  opts: RunOptions = {},
): Promise<RunResult> {
  const r = await run(argv, opts);
  if (r.code !== 0 || r.timedOut) throw new CommandError(r);
  return r;
}

/**
 * Runs a pipeline `a | b | c` without a shell: each stage's stdout feeds the next stage's stdin.
 * Resolves when every stage exited 0; otherwise rejects naming the first stage that failed.
 */
export async function pipeline(
  stages: readonly (readonly string[])[],
  opts: { cwd?: string; timeoutMs?: number } = {},
): Promise<void> {
  if (stages.length === 0) return;
  const children = stages.map((argv, i) => {
    const [cmd, ...args] = argv;
    if (!cmd) throw new Error('pipeline: empty stage');
    return spawn(cmd, args, {
      cwd: opts.cwd,
      stdio: [i === 0 ? 'ignore' : 'pipe', i === stages.length - 1 ? 'ignore' : 'pipe', 'pipe'],
    });
  });
  for (let i = 0; i + 1 < children.length; i++) {
    const from = children[i]!.stdout!;
    const to = children[i + 1]!.stdin!;
    from.pipe(to);
    // A later stage may exit before reading everything (tar with member names does): not an error.
    to.on('error', () => undefined);
  }
  const timer = setTimeout(
    () => children.forEach((c) => c.kill('SIGKILL')),
    opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
  );
  const results = await Promise.all(
    children.map(
      (c, i) =>
        new Promise<RunResult>((resolve) => {
          const err: Buffer[] = [];
          c.stderr?.on('data', (b: Buffer) => err.push(b));
          c.on('error', (e) => err.push(Buffer.from(String(e))));
          c.on('close', (code, signal) =>
            resolve({
              argv: stages[i]!,
              code,
              signal,
              timedOut: false,
              stdout: '',
              stderr: Buffer.concat(err).toString(),
              ms: 0,
            }),
          );
        }),
    ),
  );
  clearTimeout(timer);
  // Earlier stages killed by SIGPIPE because a later stage finished early are fine.
  const failed = results.find(
    (r, i) => r.code !== 0 && !(r.signal === 'SIGPIPE' && i < results.length - 1),
  );
  if (failed) throw new CommandError(failed);
}

function killGroup(pid: number | undefined): void {
  if (pid === undefined) return;
  try {
    process.kill(-pid, 'SIGKILL');
  } catch {
    /* already gone */
  }
}
