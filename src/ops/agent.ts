// The node agent (`vfioctl agent`): one process per node, run by a Kubernetes DaemonSet. It takes
// the policy mounted from a ConfigMap, validates it, makes it the host's vfioctl.json (atomically,
// under the lock, with the boot maps refreshed), converges the host to it, then polls `status` for
// drift: sysfs sends no event a watcher could use for a driver change. Kubernetes' own DaemonSet
// rollout paces a policy change node by node; the agent's part is to be Ready only when its node
// converged, so the rollout stops at the first node that refuses.
//
// It never unbinds anything because it stops: persistence across reboots stays with the boot
// layers on the host, and a restart converges to the same policy, which is a no-op. (A policy
// change that drops a rule releases that device: that is the policy, not the restart.)
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  ConfigError,
  loadConfig,
  MAX_CONFIG_BYTES,
  parseConfig,
  readConfigText,
} from '../config/load';
import { CONFIG_FILE } from '../config/types';
import { HostRoot } from '../host/root';
import { atomicWrite } from '../persist/records';
import { VfioctlError } from '../util/diag';
import { saveConfig } from './boot-layers';
import { converge, convergeExitCode, type ConvergeReport } from './converge';
import { doctor } from './doctor';
import type { Host } from './host';
import { status, type DeviceStatus, type StatusReport } from './status';

/** Where node-feature-discovery's local source reads feature files (on the host). */
export const NFD_FEATURES_FILE = '/etc/kubernetes/node-feature-discovery/features.d/vfioctl';
/**
 * The emergency stop: while this file exists on the host, the agent applies nothing and is
 * NotReady.
 */
export const AGENT_STOP_FILE = '/etc/vfioctl/agent-stop';
/** In the container (its /run is its own and starts empty): what the readiness probe reads. */
export const AGENT_READY_FILE = '/run/vfioctl-agent/ready.json';

/** Time, sleeping and randomness, injectable so the tests run a fleet in simulated time. */
export interface AgentClock {
  now(): number;
  /** Resolves after `ms`, or as soon as `signal` aborts. */
  sleep(ms: number, signal: AbortSignal): Promise<void>;
  /** In [0, 1): the jitter. */
  random(): number;
}

export const systemClock: AgentClock = {
  now: () => Date.now(),
  sleep: (ms, signal) =>
    new Promise((resolve) => {
      if (signal.aborted) return resolve();
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      signal.addEventListener('abort', done, { once: true });
    }),
  random: () => Math.random(),
};

/**
 * Why the node is (not) Ready. Closed set: the log, the readiness file and the README use these.
 */
export type ReadyReason =
  | 'converged'
  | 'starting'
  | 'invalid-policy'
  | 'emergency-stop'
  | 'refused'
  | 'failed'
  | 'interrupted'
  | 'drift'
  | 'error';

export interface Readiness {
  readonly ready: boolean;
  readonly reason: ReadyReason;
  /** One line per problem: `ADDRESS: CHECK: message`, a policy problem, a drifting device. */
  readonly detail: readonly string[];
  /**
   * Short hash of the policy file's bytes (the vfioctl.io/config label), null before one was read.
   */
  readonly policy: string | null;
  readonly at: string;
  /** The probe fails after this: a hung agent must not stay Ready. */
  readonly validUntil: string;
}

export type AgentEvent =
  | 'start'
  | 'policy-invalid'
  | 'config-written'
  | 'emergency-stop'
  | 'applied'
  | 'refused'
  | 'drift'
  | 'reapply'
  | 'warning'
  | 'error'
  | 'stop';

export interface AgentLogLine {
  readonly time: string;
  readonly level: 'info' | 'warn' | 'error';
  readonly event: AgentEvent;
  readonly msg: string;
  readonly [key: string]: unknown;
}

export interface AgentOptions {
  /** The policy: a path on the running system (the ConfigMap's mount), not under the host root. */
  readonly policyFile: string;
  /** Drift poll interval and the most random delay added to it, in ms. */
  readonly intervalMs: number;
  readonly jitterMs: number;
  /** Re-apply when status shows drift (default: report it and go NotReady). */
  readonly reapply: boolean;
  /** A path on the running system (the container's). */
  readonly readyFile: string;
  /** Root-relative (on the host). */
  readonly stopFile: string;
  /** Root-relative (on the host); null: publish nothing. */
  readonly featuresFile: string | null;
  /** Converge once and return (no drift loop). */
  readonly once?: boolean;
  readonly clock?: AgentClock;
  readonly log: (line: AgentLogLine) => void;
}

/** A directory on a read-only mount: even root cannot write it (access(2) says EROFS). */
function readOnlyMount(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EROFS';
  }
}

/**
 * sha256 of the policy's bytes, 12 hex digits: short enough for a label value (63 characters at
 * most).
 */
export function policyHash(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 12);
}

/**
 * What a drift poll treats as converged: `absent` is an address rule for a device this node lacks
 * (a fleet-wide policy names every node's devices).
 */
function settled(d: DeviceStatus): boolean {
  return d.drift === 'ok' || d.drift === 'absent';
}

/** The `ADDRESS: CHECK: message` lines of an apply that did not fully succeed. */
export function applyProblems(r: ConvergeReport): string[] {
  const out: string[] = [];
  for (const x of r.results) {
    if (x.status === 'refused')
      for (const f of x.refusals) out.push(`${x.address}: ${f.check}: ${f.message}`);
    else if (x.status === 'failed' || x.status === 'invalid')
      out.push(`${x.address}: ${x.status}: ${x.error ?? 'no detail'}`);
  }
  return out;
}

function driftLines(s: StatusReport): string[] {
  return s.devices.filter((d) => !settled(d)).map((d) => `${d.address}: ${d.drift}: ${d.detail}`);
}

export class Agent {
  private readonly clock: AgentClock;
  private readonly abort = new AbortController();
  private readonly live = new HostRoot('/');
  /** The hash of the policy the last apply converged to, and whether that apply succeeded. */
  private applied: {
    hash: string;
    ok: boolean;
    reason: ReadyReason;
    detail: readonly string[];
  } | null = null;
  private last: Readiness | null = null;

  constructor(
    private readonly host: Host,
    private readonly o: AgentOptions,
  ) {
    this.clock = o.clock ?? systemClock;
  }

  /** The readiness last written (null before the first cycle). */
  get readiness(): Readiness | null {
    return this.last;
  }

  get stopped(): boolean {
    return this.abort.signal.aborted;
  }

  /**
   * Ends the loop after the cycle in flight (SIGTERM, pod deletion). Nothing is undone: an apply
   * in flight stops at its next step as any vfioctl does on a signal (its session rolls back only
   * the device it was moving), and every converged device stays where it is.
   */
  stop(): void {
    this.abort.abort();
  }

  private log(
    level: AgentLogLine['level'],
    event: AgentEvent,
    msg: string,
    extra: Record<string, unknown> = {},
  ): void {
    this.o.log({ time: new Date(this.clock.now()).toISOString(), level, event, msg, ...extra });
  }

  /** Runs until stop() (or one cycle with `once`); returns the last readiness. */
  async run(): Promise<Readiness> {
    // A restarted agent is NotReady until it has converged again.
    fs.rmSync(this.o.readyFile, { force: true });
    this.log(
      'info',
      'start',
      `vfioctl agent on ${this.host.root.dir}: policy ${this.o.policyFile}, drift poll every ${this.o.intervalMs / 1000} s (+ up to ${this.o.jitterMs / 1000} s), re-apply on drift: ${this.o.reapply ? 'yes' : 'no'}`,
    );
    await this.cycle();
    while (!this.o.once && !this.stopped) {
      await this.clock.sleep(
        this.o.intervalMs + Math.floor(this.clock.random() * this.o.jitterMs),
        this.abort.signal,
      );
      if (this.stopped) break;
      await this.cycle();
    }
    this.log(
      'info',
      'stop',
      this.o.once
        ? 'converged once; exiting'
        : 'stopping; nothing is unbound (the devices stay as they are)',
    );
    return this.last!;
  }

  /**
   * One round: an apply when the policy is new to this process (or after a refused, failed or
   * stopped one when re-applying is on), else a drift poll that re-applies only when configured.
   */
  async cycle(): Promise<Readiness> {
    try {
      const policy = this.readPolicy();
      if (!policy.ok) return this.publish(false, 'invalid-policy', policy.problems, policy.hash);
      const { text, hash } = policy;
      // Stopped: no apply, and NotReady, so a rollout in progress halts at this node.
      if (this.stopRequested()) return this.emergencyStop(hash);
      if (this.applied?.hash !== hash) return await this.apply(text, hash);
      const s = status(this.host);
      const drift = driftLines(s);
      const hostText = this.hostConfigText();
      if (hostText !== text)
        drift.push(`${CONFIG_FILE}: differs from the policy (edited on the host?)`);
      this.consumerWarnings(s);
      if (drift.length === 0 && this.applied.ok) return this.publish(true, 'converged', [], hash);
      if (drift.length)
        this.log(
          'warn',
          'drift',
          `${drift.length} problem${drift.length === 1 ? '' : 's'} since the last apply`,
          { drift },
        );
      if (this.o.reapply) {
        this.log('info', 'reapply', 're-applying the policy (--reapply)');
        return await this.apply(text, hash);
      }
      // After a refused or failed apply its reason stays the headline (status repeats it as drift).
      return this.applied.ok
        ? this.publish(false, 'drift', drift, hash)
        : this.publish(false, this.applied.reason, this.applied.detail, hash);
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      this.log('error', 'error', msg);
      return this.publish(false, 'error', [msg], this.last?.policy ?? null);
    }
  }

  /** The policy file, read with the checks of `--config FILE`, and validated. */
  private readPolicy():
    | { ok: true; text: string; hash: string }
    | { ok: false; problems: string[]; hash: string | null } {
    const file = path.resolve(this.o.policyFile);
    let text: string | undefined;
    try {
      text = this.live.hasEntry(file) ? this.readPolicyText(file) : undefined;
      if (text === undefined)
        throw new ConfigError(file, [`${file}: no such file (is the ConfigMap mounted there?)`]);
      parseConfig(text, file);
      return { ok: true, text, hash: policyHash(text) };
    } catch (e) {
      if (!(e instanceof VfioctlError)) throw e;
      const problems = e instanceof ConfigError ? [...e.problems] : [e.message];
      this.log(
        'error',
        'policy-invalid',
        `the policy ${file} is refused; nothing was written or applied`,
        { problems },
      );
      return { ok: false, problems, hash: text === undefined ? null : policyHash(text) };
    }
  }

  /**
   * The policy's text, read with the checks of `--config FILE`, with one allowance: kubelet gives
   * a ConfigMap volume world-writable directories (it sits on an emptyDir, mode 0777) but mounts
   * it read-only into the container (since the fix of CVE-2017-1002102), so nobody can change it
   * through this mount. Such a directory passes when the mount is read-only (EROFS); the file
   * itself must still be root's, regular and not group/other-writable.
   */
  private readPolicyText(file: string): string | undefined {
    try {
      return readConfigText(this.live, this.host.trust, file);
    } catch (e) {
      if (!(e instanceof VfioctlError) || e instanceof ConfigError) throw e;
      const real = fs.realpathSync(file);
      const st = fs.statSync(real);
      if (
        !readOnlyMount(path.dirname(real)) ||
        !st.isFile() ||
        !this.host.trust.uids.includes(st.uid) ||
        (st.mode & 0o022) !== 0
      )
        throw e;
      if (st.size > MAX_CONFIG_BYTES)
        throw new ConfigError(file, [
          `${file}: ${st.size} bytes, more than the ${MAX_CONFIG_BYTES} a configuration may have`,
        ]);
      try {
        return new TextDecoder('utf-8', { fatal: true }).decode(fs.readFileSync(real));
      } catch {
        throw new ConfigError(file, [`${file}: not UTF-8; fix: save the file as UTF-8`]);
      }
    }
  }

  /**
   * The host's vfioctl.json as it is now, undefined when missing or unreadable (then it is
   * replaced).
   */
  private hostConfigText(): string | undefined {
    try {
      return readConfigText(this.host.root, this.host.trust);
    } catch (e) {
      if (!(e instanceof VfioctlError)) throw e;
      this.log(
        'warn',
        'warning',
        `${this.host.root.path(CONFIG_FILE)}: ${e.message.split('\n')[0]}; the policy replaces it`,
      );
      return undefined;
    }
  }

  private stopRequested(): boolean {
    return this.host.root.hasEntry(this.o.stopFile);
  }

  /**
   * Under the lock: the emergency stop, the host's file, the boot maps, then the apply (never
   * forced).
   */
  private async apply(text: string, hash: string): Promise<Readiness> {
    if (this.stopRequested()) return this.emergencyStop(hash);
    const outcome = await this.host.session(async (session) => {
      // Checked again under the lock, right before anything is written.
      if (this.stopRequested()) return null;
      if (this.hostConfigText() !== text) {
        for (const w of saveConfig(this.host, text)) this.log('warn', 'warning', w);
        this.log(
          'info',
          'config-written',
          `wrote the policy (${hash}) as ${this.host.root.path(CONFIG_FILE)} and refreshed the boot maps`,
          { policy: hash },
        );
      }
      const config = loadConfig(this.host.root, this.host.trust);
      return converge(this.host, config, { guardBootDevices: true }, session);
    });
    if (outcome === null) return this.emergencyStop(hash);
    const code = convergeExitCode(outcome);
    const problems = applyProblems(outcome);
    for (const w of outcome.warnings) this.log('warn', 'warning', w);
    const moved = outcome.results
      .filter((r) => r.status === 'ok')
      .map((r) => `${r.address}: ${r.phase} -> ${r.target ?? 'host driver'}`);
    const reason: ReadyReason =
      outcome.interrupted !== null
        ? 'interrupted'
        : code === 0
          ? 'converged'
          : outcome.results.some((r) => r.status === 'refused')
            ? 'refused'
            : 'failed';
    this.applied = {
      hash,
      ok: reason === 'converged',
      reason,
      detail:
        outcome.interrupted !== null
          ? [`interrupted by ${outcome.interrupted}`, ...problems]
          : problems,
    };
    if (outcome.interrupted !== null) {
      this.log(
        'warn',
        'refused',
        `interrupted by ${outcome.interrupted}: the device in flight was rolled back; nothing else is undone`,
        { problems },
      );
      return this.publish(false, 'interrupted', this.applied.detail, hash);
    }
    if (code !== 0) {
      this.log(
        'error',
        'refused',
        `the apply was ${reason === 'refused' ? 'refused' : 'not completed'} (exit ${code}); the node stays NotReady, which halts the rollout`,
        { policy: hash, problems, moved },
      );
      return this.publish(false, reason, problems, hash);
    }
    const s = status(this.host);
    this.consumerWarnings(s);
    const drift = driftLines(s);
    this.log(
      drift.length ? 'warn' : 'info',
      'applied',
      drift.length ? 'applied, but status still shows drift' : `converged to policy ${hash}`,
      { policy: hash, moved, ...(drift.length ? { drift } : {}) },
    );
    return this.publish(drift.length === 0, drift.length ? 'drift' : 'converged', drift, hash);
  }

  private emergencyStop(hash: string): Readiness {
    this.log(
      'warn',
      'emergency-stop',
      `${this.host.root.path(this.o.stopFile)} exists: nothing is applied and the node stays NotReady until it is removed`,
    );
    return this.publish(false, 'emergency-stop', [`${this.o.stopFile} exists on the host`], hash);
  }

  private consumerWarnings(s: StatusReport): void {
    for (const w of s.warnings) this.log('warn', 'warning', w);
  }

  /** The readiness file (for the probe) and the node-feature-discovery feature file. */
  private publish(
    ready: boolean,
    reason: ReadyReason,
    detail: readonly string[],
    hash: string | null,
  ): Readiness {
    const now = this.clock.now();
    // A hung agent must not stay Ready: the file says until when it holds (two polls and a lock
    // wait).
    const validUntil = now + 2 * (this.o.intervalMs + this.o.jitterMs) + this.host.waitMs + 60_000;
    const r: Readiness = {
      ready,
      reason,
      detail: [...detail],
      policy: hash,
      at: new Date(now).toISOString(),
      validUntil: new Date(validUntil).toISOString(),
    };
    atomicWrite(path.resolve(this.o.readyFile), JSON.stringify(r) + '\n', 0o644, 0o755);
    if (this.o.featuresFile !== null) this.writeFeatures(ready, hash);
    this.last = r;
    return r;
  }

  private writeFeatures(converged: boolean, hash: string | null): void {
    const labels = [
      `vfioctl.io/converged=${converged}`,
      `vfioctl.io/vfio-capable=${doctor(this.host).ok}`,
      ...(hash ? [`vfioctl.io/config=${hash}`] : []),
    ];
    writeFeatureFile(
      this.host.root,
      this.o.featuresFile!,
      `# written by vfioctl agent: do not edit\n${labels.join('\n')}\n`,
    );
  }
}

/**
 * node-feature-discovery reads every file in features.d and ignores dot-files: the labels are
 * written to a dot-file beside it and renamed over it, so NFD never reads half a file.
 */
export function writeFeatureFile(root: HostRoot, rel: string, content: string): boolean {
  if (root.readFile(rel) === content) return false;
  const file = root.confineEntry(rel);
  const dir = path.dirname(file);
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const tmp = path.join(dir, `.${path.basename(file)}.tmp`);
  fs.rmSync(tmp, { force: true });
  const fd = fs.openSync(
    tmp,
    fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW,
    0o644,
  );
  try {
    fs.writeSync(fd, content);
    fs.fchmodSync(fd, 0o644);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
  return true;
}

/** What `vfioctl agent --probe` decides from the readiness file: ready and still valid. */
export function probeReadiness(file: string, now: number): { ready: boolean; message: string } {
  let r: Readiness;
  try {
    r = JSON.parse(fs.readFileSync(file, 'utf8')) as Readiness;
  } catch (e) {
    return {
      ready: false,
      message: `${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no readiness yet (the agent has not finished its first apply)' : `unreadable (${(e as Error).message})`}`,
    };
  }
  if (typeof r?.ready !== 'boolean' || typeof r.validUntil !== 'string')
    return { ready: false, message: `${file}: not a readiness file` };
  if (Date.parse(r.validUntil) < now)
    return {
      ready: false,
      message: `stale: the agent last reported at ${r.at} (${r.reason}); is it hung?`,
    };
  const detail = r.detail.length ? `: ${r.detail.join('; ')}` : '';
  return {
    ready: r.ready,
    message: `${r.ready ? 'ready' : 'not ready'} (${r.reason}, policy ${r.policy ?? 'none'}, at ${r.at})${detail}`,
  };
}
