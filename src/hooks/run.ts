// Runs one hook with the documented contract: argv = [event, address, target driver, previous
// driver] (empty string for none), the device's `show --json` and the planned steps as JSON on
// stdin; exit 0 ok, 2 "not my device" (skipped), anything else (or the timeout) a failure.
import { spawn } from 'node:child_process';
import type { HostRoot } from '../host/root';

export interface HookInput {
  readonly event: string;
  readonly address: string;
  readonly targetDriver: string | null;
  readonly previousDriver: string | null;
  readonly device: unknown;
  readonly steps: readonly string[];
}

export interface HookOutcome {
  readonly status: 'ok' | 'skipped' | 'failed';
  readonly exitCode: number | null;
  readonly signal: string | null;
  readonly output: string;
  readonly timedOut: boolean;
}

const MAX_OUTPUT = 64 * 1024;

export function runHook(root: HostRoot, path: string, input: HookInput, timeoutMs: number, env: NodeJS.ProcessEnv): Promise<HookOutcome> {
  return new Promise((resolve) => {
    const child = spawn(root.path(path), [input.event, input.address, input.targetDriver ?? '', input.previousDriver ?? ''], {
      stdio: ['pipe', 'pipe', 'pipe'],
      // A small, predictable environment: no inherited LD_PRELOAD and friends.
      env: { PATH: env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', VFIOCTL_ROOT: root.dir, VFIOCTL_EVENT: input.event },
    });
    let output = '';
    const collect = (d: Buffer) => {
      if (output.length < MAX_OUTPUT) output += d.toString().slice(0, MAX_OUTPUT - output.length);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdin.on('error', () => {
      /* a hook need not read its input */
    });
    child.stdin.end(JSON.stringify(input) + '\n');
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ status: 'failed', exitCode: null, signal: null, output: `cannot run: ${e.message}`, timedOut: false });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const status = !timedOut && code === 0 ? 'ok' : !timedOut && code === 2 ? 'skipped' : 'failed';
      resolve({ status, exitCode: code, signal, output: output.trimEnd(), timedOut });
    });
  });
}
