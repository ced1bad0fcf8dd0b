// Which boots the suite needs, and running them at most N at a time.
import type { BootPlan } from './boot';
import type { BootKind, Scenario } from './guest/scenario';
import { SCENARIOS } from './scenarios';
import type { KernelArtifacts } from './setup/kernel';

/** Boots per kernel: one with an IOMMU for most scenarios, one without for the no-IOMMU checks. */
export function planBoots(kernels: readonly KernelArtifacts[], only: readonly string[], scenarios: readonly Scenario[] = SCENARIOS): BootPlan[] {
  const boots: BootPlan[] = [];
  for (const kind of ['iommu', 'no-iommu'] as BootKind[]) {
    for (const kernel of kernels) {
      const selected = scenarios.filter((s) => s.boots.includes(kind) && (only.length === 0 || only.includes(s.name)));
      if (selected.length === 0) continue;
      boots.push({ name: kind === 'iommu' ? kernel.id : `${kernel.id}-no-iommu`, kernel, iommu: kind === 'iommu', scenarios: selected });
    }
  }
  return boots;
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

