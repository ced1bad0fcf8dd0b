// The run's report: a scenario x boot table, details of every failure (transcript, kernel log,
// the guest's console), what each kernel showed, and the closing `N passed, N failed` line.
import type { BootOutcome } from './boot';
import type { ScenarioResult } from './guest/scenario';
import { formatMs } from './lib/log';
import { SCENARIOS } from './scenarios';

type Write = (s: string) => void;

const MARK = { pass: 'PASS', fail: 'FAIL', skip: 'skip' } as const;

export interface Totals {
  readonly passed: number;
  readonly failed: number;
  readonly skipped: number;
}

export function totals(outcomes: readonly BootOutcome[]): Totals {
  const all = outcomes.flatMap((o) => o.results);
  return {
    passed: all.filter((r) => r.status === 'pass').length,
    failed:
      all.filter((r) => r.status === 'fail').length +
      outcomes.filter((o) => o.problem && o.results.every((r) => r.status !== 'fail')).length,
    skipped: all.filter((r) => r.status === 'skip').length,
  };
}

function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const w = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string =>
    r
      .map((c, i) => c.padEnd(w[i]!))
      .join('  ')
      .trimEnd();
  return [line(headers), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n') + '\n';
}

export function resultTable(outcomes: readonly BootOutcome[]): string {
  const boots = outcomes.map((o) => o.plan.name);
  const rows: string[][] = [];
  for (const s of SCENARIOS) {
    const cells = outcomes.map((o) => {
      const r = o.results.find((x) => x.scenario === s.name);
      return r ? `${MARK[r.status]} ${formatMs(r.ms)}` : '-';
    });
    if (cells.every((c) => c === '-')) continue;
    rows.push([s.name, ...cells]);
  }
  return table(['SCENARIO', ...boots], rows);
}

function failureDetails(r: ScenarioResult): string {
  const out = [`--- FAIL ${r.scenario} on ${r.boot}`, r.message ?? '(no message)'];
  if (r.transcript.length > 0) out.push('transcript:', ...r.transcript.map((l) => `  ${l}`));
  if (r.kmsg.length > 0)
    out.push('kernel log during the scenario:', ...r.kmsg.map((l) => `  ${l}`));
  return out.join('\n') + '\n';
}

/** One paragraph per boot: kernel, how long it took, what the guest saw before the scenarios. */
export function bootSummary(o: BootOutcome): string {
  const f = o.facts as {
    coldplug?: string;
    uname?: string;
    uptime?: number;
    devices?: Record<string, { ids: string; driver: string | null; group: string | null }>;
    iommuGroups?: Record<string, string[]>;
    vfioAliases?: string[];
  } | null;
  const head = `${o.plan.name}: ${f?.uname ?? o.plan.kernel.release} (Debian ${o.plan.kernel.version}), VM ${formatMs(o.vm.ms)}${f?.uptime !== undefined ? `, runner up at ${f.uptime.toFixed(1)}s uptime` : ''}${o.problem ? ` -- ${o.problem}` : ''}`;
  if (!f?.devices) return head + '\n';
  const shared = Object.entries(f.iommuGroups ?? {}).filter(([, m]) => m.length > 1);
  const lines = [
    head,
    `  IOMMU groups: ${Object.keys(f.iommuGroups ?? {}).length}${shared.length ? `; shared: ${shared.map(([g, m]) => `${g}=[${m.join(' ')}]`).join(' ')}` : ''}`,
    `  drivers ${f.coldplug === 'none' ? 'when the runner started (no coldplug by the runner)' : 'after coldplug'}: ${Object.entries(
      f.devices,
    )
      .map(([a, d]) => `${a.slice(5)} ${d.ids} ${d.driver ?? '-'}`)
      .join('; ')}`,
    `  vfio_pci aliases: ${
      (f.vfioAliases ?? [])
        .filter(Boolean)
        .map((l) => l.split(' ').pop())
        .join(' ') || 'none (before 5.15: vfio-pci has no ID table)'
    }`,
  ];
  return lines.join('\n') + '\n';
}

export function printReport(
  outcomes: readonly BootOutcome[],
  wallMs: number,
  write: Write,
): Totals {
  for (const o of outcomes) {
    const failures = o.results.filter((r) => r.status === 'fail');
    if (failures.length === 0 && !o.problem) continue;
    write(
      `\n===== ${o.plan.name}: ${failures.length} failed${o.problem ? `; ${o.problem}` : ''}\n`,
    );
    for (const r of failures) write(failureDetails(r));
    write(
      `----- guest console (${o.consoleFile}):\n${o.vm.console.trimEnd()}\n----- end of console\n`,
    );
  }
  const skips = outcomes.flatMap((o) => o.results.filter((r) => r.status === 'skip'));
  write('\n' + resultTable(outcomes));
  for (const r of skips) write(`skip ${r.scenario} on ${r.boot}: ${r.message}\n`);
  const figures = outcomes.flatMap((o) =>
    o.results.flatMap((r) => (r.figures ?? []).map((f) => `${r.scenario} on ${r.boot}: ${f}`)),
  );
  if (figures.length > 0)
    write(`\nfigures (measured, not asserted):\n${figures.map((f) => `  ${f}\n`).join('')}`);
  write('\n' + outcomes.map(bootSummary).join(''));
  const t = totals(outcomes);
  write(`\nwall time ${formatMs(wallMs)}\n`);
  write(`${t.passed} passed, ${t.failed} failed${t.skipped ? `, ${t.skipped} skipped` : ''}\n`);
  return t;
}
