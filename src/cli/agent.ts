// `vfioctl agent`: the node agent (ops/agent.ts) with its options, JSON log lines on stdout, and
// SIGTERM/SIGINT/SIGHUP ending the loop (never undoing anything); `--probe` is the readiness probe.
import {
  Agent,
  AGENT_READY_FILE,
  AGENT_STOP_FILE,
  NFD_FEATURES_FILE,
  probeReadiness,
} from '../ops/agent';
import { EXIT, VfioctlError } from '../util/diag';
import { type Context, trust } from './context';

export interface AgentCliOptions {
  policy?: string;
  interval?: string;
  jitter?: string;
  reapply?: boolean;
  readyFile?: string;
  stopFile?: string;
  featuresFile?: string;
  features?: boolean;
  once?: boolean;
  probe?: boolean;
}

function seconds(name: string, given: string | undefined, dflt: number, min: number): number {
  if (given === undefined) return dflt * 1000;
  const s = Number(given);
  if (given.trim() === '' || !Number.isFinite(s) || s < min || s > 86_400)
    throw new VfioctlError(
      `--${name} '${given}': give a number of seconds from ${min} to 86400`,
      EXIT.BAD_INPUT,
    );
  return Math.round(s * 1000);
}

function rootRelative(name: string, given: string | undefined, dflt: string): string {
  const p = given ?? dflt;
  if (!p.startsWith('/') || p.split('/').includes('..'))
    throw new VfioctlError(
      `--${name} '${p}': give an absolute path on the host (it is taken under --root)`,
      EXIT.BAD_INPUT,
    );
  return p;
}

const SIGNALS = ['SIGTERM', 'SIGINT', 'SIGHUP'] as const;

export async function agentCommand(ctx: Context, opts: AgentCliOptions): Promise<number> {
  const readyFile = opts.readyFile ?? AGENT_READY_FILE;
  if (opts.probe) {
    const p = probeReadiness(readyFile, Date.now());
    (p.ready ? ctx.io.out : ctx.io.err)(`vfioctl agent: ${p.message}\n`);
    return p.ready ? EXIT.OK : EXIT.FAILED;
  }
  if (opts.policy === undefined)
    throw new VfioctlError(
      "agent: --policy FILE is required (the policy file mounted from the ConfigMap); '--probe' checks a running agent",
      EXIT.BAD_INPUT,
    );
  const intervalMs = seconds('interval', opts.interval, 60, 1);
  const agent = new Agent(ctx.host, {
    policyFile: opts.policy,
    intervalMs,
    jitterMs:
      opts.jitter === undefined
        ? Math.round(intervalMs / 10)
        : seconds('jitter', opts.jitter, 0, 0),
    reapply: !!opts.reapply,
    readyFile,
    stopFile: rootRelative('stop-file', opts.stopFile, AGENT_STOP_FILE),
    featuresFile:
      opts.features === false
        ? null
        : rootRelative('features-file', opts.featuresFile, NFD_FEATURES_FILE),
    once: !!opts.once,
    log: (line) => ctx.io.out(JSON.stringify(line) + '\n'),
  });
  trust(ctx);
  // A signal ends the loop; an apply in flight is stopped by its own session (step finished, that
  // device rolled back).
  const onSignal = () => agent.stop();
  for (const s of SIGNALS) process.on(s, onSignal);
  try {
    const r = await agent.run();
    if (!opts.once) return EXIT.OK;
    return r.ready
      ? EXIT.OK
      : r.reason === 'invalid-policy'
        ? EXIT.BAD_INPUT
        : r.reason === 'refused'
          ? EXIT.REFUSED
          : EXIT.FAILED;
  } finally {
    for (const s of SIGNALS) process.off(s, onSignal);
  }
}
