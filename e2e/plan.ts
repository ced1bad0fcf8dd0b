// Which boots the suite needs, and running them at most N at a time.
import type { BootPlan } from './boot';
import type { BootKind, Scenario } from './guest/scenario';
import { SCENARIOS } from './scenarios';
import type { KernelArtifacts } from './setup/kernel';

/**
 * Boots per kernel: one with an IOMMU for most scenarios, then the reboot pairs (two boots each,
 * one pair per reboot scenario and kernel pair), then one boot without an IOMMU for the no-IOMMU
 * checks. Longest first, so that the pool's two VMs finish close together.
 */
export function planBoots(
  kernels: readonly KernelArtifacts[],
  only: readonly string[],
  scenarios: readonly Scenario[] = SCENARIOS,
  opts: { readonly allPairs?: boolean } = {},
): BootPlan[] {
  const boots: BootPlan[] = [];
  const selected = (kind: BootKind) =>
    scenarios.filter((s) => s.boots.includes(kind) && (only.length === 0 || only.includes(s.name)));
  const plain = (kind: 'iommu' | 'no-iommu') => {
    const chosen = selected(kind);
    if (chosen.length === 0) return;
    for (const kernel of kernels) {
      const here = chosen.filter((s) => !s.kernels || s.kernels.includes(kernel.id));
      if (here.length)
        boots.push({
          name: kind === 'iommu' ? kernel.id : `${kernel.id}-no-iommu`,
          kernel,
          iommu: kind === 'iommu',
          scenarios: here,
        });
    }
  };
  plain('iommu');
  // The boot with the most scenarios (6.12's: the single-kernel ones) first: the longest chain
  // must not start last (a stable sort keeps kernel order among equals).
  boots.sort((a, b) => b.scenarios.length - a.scenarios.length);
  for (const s of selected('reboot')) {
    const spec = s.reboot?.kernels ?? 'same';
    const pairs: [KernelArtifacts, KernelArtifacts][] = [];
    if (spec === 'same') {
      // A pair named with --scenario, or any with --all-pairs, runs on every kernel it can.
      const narrow = !opts.allPairs && !only.includes(s.name) ? s.reboot?.byDefault : undefined;
      for (const k of kernels)
        if ((!s.reboot?.only || s.reboot.only.includes(k.id)) && (!narrow || narrow.includes(k.id)))
          pairs.push([k, k]);
    } else {
      const a = kernels.find((k) => k.id === spec[0]);
      const b = kernels.find((k) => k.id === spec[1]);
      if (a && b) pairs.push([a, b]);
    }
    for (const [a, b] of pairs) {
      const base = a === b ? `${a.id}-reboot` : `${a.id}-${b.id}-reboot`;
      // A second pair of the same kernels is named after its scenario.
      const chain = boots.some((x) => x.reboot?.chain === base) ? `${base}-${s.name}` : base;
      boots.push({
        name: `${chain}1`,
        kernel: a,
        iommu: true,
        scenarios: [s],
        reboot: { chain, stage: 1, installed: [a], other: b },
      });
      // The first kernel stays installed next to the second (as after an upgrade).
      boots.push({
        name: `${chain}2`,
        kernel: b,
        iommu: true,
        scenarios: [s],
        reboot: { chain, stage: 2, installed: a === b ? [a] : [a, b], other: a },
      });
    }
  }
  plain('no-iommu');
  return boots;
}

/** Boots grouped into what must run in order: a reboot pair together, every other boot alone. */
export function chains(boots: readonly BootPlan[]): BootPlan[][] {
  const out: BootPlan[][] = [];
  for (const b of boots) {
    const last = out[out.length - 1];
    if (b.reboot && b.reboot.stage > 1 && last && last[0]!.reboot?.chain === b.reboot.chain)
      last.push(b);
    else out.push([b]);
  }
  return out;
}

/** Runs `tasks` with at most `limit` in flight; results in task order. */
export async function pool<T>(limit: number, tasks: readonly (() => Promise<T>)[]): Promise<T[]> {
  const results: T[] = new Array(tasks.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const i = next++;
      results[i] = await tasks[i]!();
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, tasks.length) }, worker));
  return results;
}
