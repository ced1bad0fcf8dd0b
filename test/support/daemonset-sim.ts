// A small stand-in for what Kubernetes does with the vfioctl DaemonSet, in simulated time: the
// kubelet starts a pod (an Agent running its loop) per node and probes its readiness every
// periodSeconds; the DaemonSet controller's RollingUpdate (maxSurge 0) deletes an old pod only
// while fewer than maxUnavailable pods are unavailable, where a pod is available once it has been
// Ready for minReadySeconds (pkg/controller/daemon/update.go's rollingUpdate, reduced to one
// container per node). No Kubernetes code is used: this models the rules the manifests rely on.
import {
  Agent,
  probeReadiness,
  type AgentClock,
  type AgentLogLine,
  type AgentOptions,
} from '../../src/ops/agent';
import type { Host } from '../../src/ops/host';

/** Simulated time shared by every agent: sleep() parks until the simulation advances past it. */
export class SimClock {
  t = Date.parse('2026-12-02T10:00:00Z');
  private sleepers: { until: number; resolve: () => void }[] = [];
  private seed = 1;

  clock(): AgentClock {
    return {
      now: () => this.t,
      random: () => {
        // A fixed LCG: the run is the same every time.
        this.seed = (this.seed * 1103515245 + 12345) % 2 ** 31;
        return this.seed / 2 ** 31;
      },
      sleep: (ms, signal) =>
        new Promise<void>((resolve) => {
          const s = { until: this.t + ms, resolve };
          const wake = () => {
            this.sleepers = this.sleepers.filter((x) => x !== s);
            resolve();
          };
          if (signal.aborted) return resolve();
          signal.addEventListener('abort', wake, { once: true });
          this.sleepers.push(s);
        }),
    };
  }

  get sleeping(): number {
    return this.sleepers.length;
  }

  /** Moves time to `to`, waking every sleeper due by then. */
  advance(to: number): void {
    this.t = to;
    const due = this.sleepers.filter((s) => s.until <= to);
    this.sleepers = this.sleepers.filter((s) => s.until > to);
    for (const s of due) s.resolve();
  }
}

export interface SimNode {
  readonly name: string;
  readonly host: Host;
  /** The container's ready file (its own /run). */
  readonly readyFile: string;
}

interface Pod {
  readonly node: SimNode;
  readonly revision: string;
  readonly agent: Agent;
  readonly done: Promise<unknown>;
  finished: boolean;
  ready: boolean;
  readySince: number | null;
}

export interface RolloutResult {
  /** Nodes whose pod runs the new revision and is available. */
  readonly updated: number;
  readonly complete: boolean;
  /** Simulated seconds from the template change to the end (complete, or the deadline). */
  readonly seconds: number;
  /** The node whose new pod never became Ready (the rollout stopped there), if any. */
  readonly haltedAt: string | null;
  readonly haltReason: string | null;
}

export class DaemonSetSim {
  readonly pods = new Map<string, Pod>();
  readonly logs: (AgentLogLine & { node: string })[] = [];

  constructor(
    readonly sim: SimClock,
    readonly nodes: readonly SimNode[],
    readonly spec: {
      maxUnavailable: number;
      minReadySeconds: number;
      probePeriodSeconds: number;
      agent: Omit<AgentOptions, 'policyFile' | 'readyFile' | 'clock' | 'log'>;
    },
  ) {}

  private alive(): number {
    return [...this.pods.values()].filter((p) => !p.finished).length;
  }

  /**
   * Lets every woken agent run until it sleeps again (or ends): the simulation's "now" is settled.
   */
  async settle(): Promise<void> {
    for (let i = 0; this.sim.sleeping < this.alive(); i++) {
      if (i > 200_000) throw new Error('agents did not settle');
      await new Promise((r) => setImmediate(r));
    }
  }

  /** The kubelet creates the pod: the container starts the agent's loop. */
  start(node: SimNode, revision: string, policyFile: string): void {
    const agent = new Agent(node.host, {
      ...this.spec.agent,
      policyFile,
      readyFile: node.readyFile,
      clock: this.sim.clock(),
      log: (l) => this.logs.push({ ...l, node: node.name }),
    });
    const pod: Pod = {
      node,
      revision,
      agent,
      finished: false,
      ready: false,
      readySince: null,
      done: Promise.resolve(),
    };
    (pod as { done: Promise<unknown> }).done = agent.run().finally(() => {
      pod.finished = true;
    });
    this.pods.set(node.name, pod);
  }

  /** Pod deletion: SIGTERM to the agent; the kubelet waits for it to exit. */
  async delete(node: SimNode): Promise<void> {
    const pod = this.pods.get(node.name);
    if (!pod) return;
    pod.agent.stop();
    await pod.done;
    this.pods.delete(node.name);
  }

  /** The kubelet's readiness probe (`vfioctl agent --probe`, i.e. the ready file) for every pod. */
  probe(): void {
    for (const p of this.pods.values()) {
      const ready = probeReadiness(p.node.readyFile, this.sim.t).ready;
      if (ready && !p.ready) p.readySince = this.sim.t;
      if (!ready) p.readySince = null;
      p.ready = ready;
    }
  }

  available(p: Pod): boolean {
    return (
      p.ready &&
      p.readySince !== null &&
      this.sim.t - p.readySince >= this.spec.minReadySeconds * 1000
    );
  }

  /**
   * Creates a pod on every node at once (a new DaemonSet) and runs until all are available or
   * `deadline` s pass.
   */
  async create(
    revision: string,
    policyFile: string,
    deadlineSeconds: number,
  ): Promise<RolloutResult> {
    for (const n of this.nodes) this.start(n, revision, policyFile);
    return this.runUntil(revision, policyFile, deadlineSeconds, false);
  }

  /**
   * A template change: RollingUpdate node by node, in node order (the controller's order is by node
   * name here).
   */
  rollout(revision: string, policyFile: string, deadlineSeconds: number): Promise<RolloutResult> {
    return this.runUntil(revision, policyFile, deadlineSeconds, true);
  }

  private async runUntil(
    revision: string,
    policyFile: string,
    deadlineSeconds: number,
    rolling: boolean,
  ): Promise<RolloutResult> {
    const t0 = this.sim.t;
    const step = this.spec.probePeriodSeconds * 1000;
    for (;;) {
      await this.settle();
      this.probe();
      const pods = this.nodes.map((n) => this.pods.get(n.name));
      const updated = pods.filter((p) => p && p.revision === revision && this.available(p)).length;
      if (updated === this.nodes.length)
        return {
          updated,
          complete: true,
          seconds: (this.sim.t - t0) / 1000,
          haltedAt: null,
          haltReason: null,
        };
      if (this.sim.t - t0 >= deadlineSeconds * 1000) {
        const stuck = pods.find((p) => p && p.revision === revision && !this.available(p));
        const r = stuck?.agent.readiness;
        return {
          updated,
          complete: false,
          seconds: (this.sim.t - t0) / 1000,
          haltedAt: stuck?.node.name ?? null,
          haltReason: r ? `${r.reason}: ${r.detail.join('; ')}` : null,
        };
      }
      if (rolling) {
        // maxSurge 0: an old pod is deleted (and its replacement created) only while the number
        // of unavailable pods is below maxUnavailable.
        let unavailable = pods.filter((p) => !p || !this.available(p)).length;
        for (const n of this.nodes) {
          if (unavailable >= this.spec.maxUnavailable) break;
          const p = this.pods.get(n.name);
          if (p && p.revision === revision) continue;
          await this.delete(n);
          this.start(n, revision, policyFile);
          unavailable++;
        }
        await this.settle();
        this.probe();
      }
      this.sim.advance(this.sim.t + step);
    }
  }

  async stopAll(): Promise<void> {
    for (const n of this.nodes) await this.delete(n);
  }
}
