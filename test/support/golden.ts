// Golden outputs (test/golden/, as mdevctl's testdata/): a readable rendering of a pure function's
// result, compared byte for byte. VFIOCTL_UPDATE_GOLDEN=1 rewrites the files instead (then read
// the diff before committing it).
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describeStep, type DevicePlan, type Plan } from '../../src/plan/types';

// Tests run from build/test/support; the golden files stay in the source tree.
const DIR = path.resolve(__dirname, '../../../test/golden');

export function golden(name: string, actual: string): void {
  const file = path.join(DIR, name);
  if (process.env.VFIOCTL_UPDATE_GOLDEN === '1') {
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, actual);
    return;
  }
  const want = fs.existsSync(file)
    ? fs.readFileSync(file, 'utf8')
    : `(no golden file test/golden/${name}; run with VFIOCTL_UPDATE_GOLDEN=1 and read what it wrote)`;
  assert.equal(actual, want, `test/golden/${name}`);
}

/** One device plan as a person reads it: status and target, steps, refusals, warnings. */
export function renderDevicePlan(d: DevicePlan): string {
  const t = d.target;
  const target =
    t === null
      ? '(no target)'
      : t.driver === null
        ? 'no driver'
        : `${t.driver}${t.module && t.module !== t.driver ? ` (module ${t.module})` : ''}${t.vfio ? ' [vfio]' : ''}`;
  const lines = [
    `${d.address} ${d.status} -> ${target}; from ${d.from.driver ?? 'no driver'}${d.unit !== d.address ? `; unit ${d.unit}` : ''}`,
  ];
  d.steps.forEach((s, i) => lines.push(`  ${i + 1}. ${describeStep(s)}`));
  for (const r of d.refusals)
    lines.push(`  refused by ${r.check}${r.forceable ? ' (forceable)' : ''}: ${r.message}`);
  for (const w of d.warnings) lines.push(`  warning: ${w}`);
  if (d.resolution)
    lines.push(
      `  candidates: ${d.resolution.candidates.map((c) => `${c.module}${c.usable ? '' : ' (unusable)'}`).join(', ') || '(none)'}`,
    );
  return lines.join('\n');
}

export function renderPlan(p: Plan): string {
  return `${p.kind} plan\n${p.devices.map(renderDevicePlan).join('\n')}\n`;
}
