// Runs one hook with the documented contract: argv = [event, address, target driver, previous
// driver] (empty string for none), the device's `show --json` and the planned steps as JSON on
// stdin; exit 0 ok, 2 "not my device" (skipped), anything else (or the timeout) a failure.
import { spawn } from 'node:child_process';
import type { HostRoot } from '../host/root';
import type { HookEvent } from './discover';

export interface HookInput {
  readonly event: HookEvent;
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
/** After SIGTERM at the time limit, how long the hook's process group gets before SIGKILL. */
const KILL_GRACE_MS = 2000;
/** After the hook exits, how long we still read output from descendants that kept its stdout. */
const DRAIN_MS = 500;

/** Signals a whole process group; it may be gone already. */
function killGroup(pgid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pgid, signal);
  } catch {
    /* ESRCH: nothing left in the group */
  }
}

/**
 * The program, its argument array and the VFIOCTL_ROOT a hook gets. Under --host-root it runs
 * chrooted into the host's root (chroot(1) execs it: same process, same process group), so its
 * tools (ip, devlink, mlxreg) and their libraries are the host's and `/` is the host's `/`.
 */
export function hookCommand(
  root: HostRoot,
  path: string,
  input: HookInput,
): { file: string; args: string[]; rootDir: string } {
  const args = [input.event, input.address, input.targetDriver ?? '', input.previousDriver ?? ''];
  const abs = root.confine(path); // refused when it leads out of the root, chrooted or not
  return root.hostMount
    ? { file: 'chroot', args: [root.dir, path, ...args], rootDir: '/' }
    : { file: abs, args, rootDir: root.dir };
}

export function runHook(
  root: HostRoot,
  path: string,
  input: HookInput,
  timeoutMs: number,
  env: NodeJS.ProcessEnv,
): Promise<HookOutcome> {
  return new Promise((resolve) => {
    const cmd = hookCommand(root, path, input);
    const child = spawn(cmd.file, cmd.args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      // Its own process group, so the time limit reaches whatever it started (a `sleep`, a
      // daemon that forgot to detach), and a terminal's ^C reaches vfioctl, which then decides.
      detached: true,
      // A small, predictable environment: no inherited LD_PRELOAD and friends.
      env: {
        PATH: env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
        LANG: 'C.UTF-8',
        VFIOCTL_ROOT: cmd.rootDir,
        VFIOCTL_EVENT: input.event,
      },
    });
    let output = '';
    const collect = (d: Buffer) => {
      if (output.length < MAX_OUTPUT) output += d.toString().slice(0, MAX_OUTPUT - output.length);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    let timedOut = false;
    let exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
    let settled = false;
    const timers: NodeJS.Timeout[] = [];
    const finish = (outcome: HookOutcome) => {
      if (settled) return;
      settled = true;
      for (const t of timers) clearTimeout(t);
      // Descendants may hold the pipes open for ever: stop reading, do not wait for them.
      child.stdout.destroy();
      child.stderr.destroy();
      child.stdin.destroy();
      resolve(outcome);
    };
    const done = () => {
      const e = exit!;
      const status =
        !timedOut && e.code === 0 ? 'ok' : !timedOut && e.code === 2 ? 'skipped' : 'failed';
      finish({ status, exitCode: e.code, signal: e.signal, output: output.trimEnd(), timedOut });
    };
    timers.push(
      setTimeout(() => {
        timedOut = true;
        if (child.pid !== undefined) killGroup(child.pid, 'SIGTERM');
        timers.push(
          setTimeout(() => {
            if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
            // Killed for sure now; what is left can only be an unkillable (D-state) process.
            timers.push(
              setTimeout(
                () =>
                  finish({
                    status: 'failed',
                    exitCode: exit?.code ?? null,
                    signal: exit?.signal ?? 'SIGKILL',
                    output: output.trimEnd(),
                    timedOut,
                  }),
                1000,
              ),
            );
          }, KILL_GRACE_MS),
        );
      }, timeoutMs),
    );
    child.stdin.on('error', () => {
      /* a hook need not read its input */
    });
    child.stdin.end(JSON.stringify(input) + '\n');
    child.on('error', (e) =>
      finish({
        status: 'failed',
        exitCode: null,
        signal: null,
        output: `cannot run: ${e.message}`,
        timedOut: false,
      }),
    );
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      if (timedOut) {
        // The group was told to stop; make sure none of it lingers.
        if (child.pid !== undefined) killGroup(child.pid, 'SIGKILL');
        done();
      } else timers.push(setTimeout(done, DRAIN_MS));
    });
    child.on('close', () => {
      if (exit !== null) done();
    });
  });
}
