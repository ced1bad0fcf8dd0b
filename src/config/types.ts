// The declarative configuration, as read from <root>/etc/vfioctl/vfioctl.json
// (schema/config.schema.json).
import type { Intent } from './intent';

export type { Intent } from './intent';

export const CONFIG_FILE = '/etc/vfioctl/vfioctl.json';

export type Selector =
  | { readonly kind: 'address'; readonly address: string }
  | { readonly kind: 'vfsOf'; readonly pf: string }
  | {
      readonly kind: 'id';
      readonly vendor: string;
      readonly device: string;
      readonly subvendor: string | null;
      readonly subdevice: string | null;
    }
  /** Lower-case hex prefix of the 6-digit class code: 2, 4 or 6 digits. */
  | { readonly kind: 'class'; readonly prefix: string };

/**
 * Device plugins and operators that hand devices to VMs but recognise only the literal `vfio-pci`
 * driver: KubeVirt's built-in host-device plugin, NVIDIA's sandbox device plugin, the SR-IOV
 * Network Operator and Intel's QAT plugin. A device on a variant (mlx5_vfio_pci, ...) vanishes
 * from them. Closed set, as the schema's enum.
 */
export type Consumer =
  | 'kubevirt'
  | 'nvidia-sandbox-device-plugin'
  | 'sriov-network-operator'
  | 'intel-qat-plugin';

export const CONSUMER_NAMES: Readonly<Record<Consumer, string>> = {
  kubevirt: "KubeVirt's host-device plugin",
  'nvidia-sandbox-device-plugin': "NVIDIA's sandbox device plugin",
  'sriov-network-operator': 'the SR-IOV Network Operator',
  'intel-qat-plugin': "Intel's QAT device plugin",
};

export interface SriovRule {
  readonly numVfs: number;
  readonly vfIntent: Intent | null;
}

export interface Rule {
  /** Position in the file's rules array (0-based) and the line it starts on, for messages. */
  readonly index: number;
  readonly line: number;
  readonly selector: Selector;
  /** null for a PF rule that only sizes SR-IOV. */
  readonly intent: Intent | null;
  readonly sriov: SriovRule | null;
  /** Root-relative hook paths for this rule's devices. */
  readonly hooks: readonly string[];
  readonly acknowledgeBroadMatch: boolean;
  /**
   * Who takes the devices from the VFIO driver, when the rule says (see
   * LITERAL_VFIO_PCI_CONSUMERS).
   */
  readonly consumer: Consumer | null;
}

export interface Config {
  /** Root-relative path of the file it came from (CONFIG_FILE), or null when there is none. */
  readonly file: string | null;
  readonly rules: readonly Rule[];
}

/**
 * Rules selecting by id or class may catch devices nobody named: at boot they need an
 * acknowledgement.
 */
export function isBroad(s: Selector): boolean {
  return s.kind === 'id' || s.kind === 'class';
}

export function describeSelector(s: Selector): string {
  switch (s.kind) {
    case 'address':
      return s.address;
    case 'vfsOf':
      return `VFs of ${s.pf}`;
    case 'id':
      return `id ${s.vendor}:${s.device}${s.subvendor ? `:${s.subvendor}:${s.subdevice}` : ''}`;
    case 'class':
      return `class ${s.prefix}`;
  }
}
