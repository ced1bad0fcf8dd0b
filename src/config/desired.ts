// Pure: which rule governs each device, and what it wants. The most specific rule wins (address,
// then vfsOf / a PF's vfIntent, then id with subsystem ids, then id, then class by prefix length);
// among equals the first in the file, with a warning.
import type { PciDevice } from '../host/pci';
import type { Config, Intent, Rule, Selector } from './types';

export interface Desire {
  readonly address: string;
  /** null: the rule claims the device but leaves its driver alone (a PF rule sizing SR-IOV). */
  readonly intent: Intent | null;
  readonly rule: Rule;
  /** Set when the intent comes from a PF rule's sriov.vfIntent. */
  readonly viaPf: string | null;
}

export interface SriovDesire {
  readonly pf: string;
  readonly numVfs: number;
  readonly vfIntent: Intent | null;
  readonly rule: Rule;
}

export interface DesiredState {
  readonly desires: ReadonlyMap<string, Desire>;
  readonly sriov: readonly SriovDesire[];
  /** Address rules whose device does not exist (yet), by address: reported, not an error. */
  readonly absent: ReadonlyMap<string, Rule>;
  readonly warnings: readonly string[];
}

function specificity(s: Selector): number {
  switch (s.kind) {
    case 'address':
      return 100;
    case 'vfsOf':
      return 80;
    case 'id':
      return s.subvendor ? 60 : 50;
    case 'class':
      return 10 + s.prefix.length;
  }
}

export function selects(s: Selector, d: PciDevice): boolean {
  switch (s.kind) {
    case 'address':
      return d.address === s.address;
    case 'vfsOf':
      return d.physfn === s.pf;
    case 'id':
      return (
        d.vendor === s.vendor &&
        d.device === s.device &&
        (s.subvendor === null ||
          (d.subsystemVendor === s.subvendor && d.subsystemDevice === s.subdevice))
      );
    case 'class':
      return d.class.startsWith(s.prefix);
  }
}

export function desiredState(
  config: Config,
  devices: ReadonlyMap<string, PciDevice>,
): DesiredState {
  const warnings: string[] = [];
  const desires = new Map<string, Desire>();
  const rank = new Map<string, number>();
  const offer = (d: PciDevice, want: Desire, spec: number) => {
    const cur = rank.get(d.address);
    if (cur !== undefined && cur >= spec) {
      if (cur === spec && desires.get(d.address)!.rule !== want.rule) {
        warnings.push(
          `${d.address} is selected by rules[${desires.get(d.address)!.rule.index}] and rules[${want.rule.index}] (line ${want.rule.line}) equally: the first one applies`,
        );
      }
      return;
    }
    desires.set(d.address, want);
    rank.set(d.address, spec);
  };
  const sorted = [...devices.values()].sort((a, b) => (a.address < b.address ? -1 : 1));
  for (const rule of config.rules) {
    const spec = specificity(rule.selector);
    for (const d of sorted) {
      if (selects(rule.selector, d))
        offer(d, { address: d.address, intent: rule.intent, rule, viaPf: null }, spec);
      // A PF rule's vfIntent governs its VFs as a vfsOf rule would.
      if (
        rule.sriov?.vfIntent &&
        rule.selector.kind === 'address' &&
        d.physfn === rule.selector.address
      ) {
        offer(
          d,
          { address: d.address, intent: rule.sriov.vfIntent, rule, viaPf: rule.selector.address },
          specificity({ kind: 'vfsOf', pf: rule.selector.address }),
        );
      }
    }
  }
  const sriov: SriovDesire[] = [];
  const absent = new Map<string, Rule>();
  for (const rule of config.rules) {
    if (rule.selector.kind !== 'address') continue;
    if (!devices.has(rule.selector.address)) absent.set(rule.selector.address, rule);
    else if (rule.sriov)
      sriov.push({
        pf: rule.selector.address,
        numVfs: rule.sriov.numVfs,
        vfIntent: rule.sriov.vfIntent,
        rule,
      });
  }
  return { desires, sriov, absent, warnings };
}
