import type { Hook, HookEvent } from '../hooks/discover';
import type { Resolution } from '../match/resolve';
import type { Intent } from '../config/intent';

/** An intent that names a driver to bind (`none` and `host` are planned as what they are). */
export type BindIntent = Extract<Intent, { kind: 'vfio' | 'driver' }>;

// The planner's output: ordered, explained steps per device, and every refusal (not just the
// first).

export type Step =
  /**
   * `modprobe MODULE` (explicit name: kmod ignores the blacklist here, so the planner checks it).
   */
  | { readonly op: 'modprobe'; readonly module: string }
  /** `modprobe -b MODALIAS`: load the host driver the way udev's kmod builtin would. */
  | { readonly op: 'modprobe-alias'; readonly modalias: string }
  /** Write the driver name (or `\n` to clear when null) to <dev>/driver_override. */
  | { readonly op: 'set-override'; readonly address: string; readonly driver: string | null }
  /** Write the address to /sys/bus/pci/drivers/<driver>/unbind. */
  | { readonly op: 'unbind'; readonly address: string; readonly driver: string }
  /** Write the address to /sys/bus/pci/drivers_probe (succeeds even when probe fails). */
  | { readonly op: 'probe'; readonly address: string }
  /**
   * Re-read the driver link; for a VFIO driver also require vfio-dev/ (6.1+), or /dev/vfio/<group>
   * before it. null: any non-VFIO driver.
   */
  | {
      readonly op: 'verify';
      readonly address: string;
      readonly driver: string | null;
      readonly vfio: boolean;
    }
  /** Intent `none`: re-read the driver link and require that no driver is bound. */
  | { readonly op: 'verify-none'; readonly address: string }
  /** Write 0/1 to <pf>/sriov_drivers_autoprobe (v4.12+): 0 = new VFs are not probed at all. */
  | { readonly op: 'sriov-autoprobe'; readonly address: string; readonly value: boolean }
  /** Resize SR-IOV: 0 first when VFs exist (N -> M with both non-zero is EBUSY), then numVfs. */
  | {
      readonly op: 'sriov-numvfs';
      readonly address: string;
      readonly numVfs: number;
      readonly from: number;
    }
  /** Run a hook (hooks/run.ts has the contract). */
  | {
      readonly op: 'hook';
      readonly address: string;
      readonly event: HookEvent;
      readonly path: string;
    }
  /**
   * Hand a VFIO node to an unprivileged VMM: the group node, or the vfioN cdev (known after bind).
   */
  | {
      readonly op: 'chown';
      readonly address: string;
      readonly node: 'group' | 'cdev';
      readonly group: string;
      readonly uid: number;
      readonly gid: number;
    };

export type StepOp = Step['op'];

/** Every step op, for checking one read back (the journal); the Record makes it exhaustive. */
const STEP_OP_SET: Readonly<Record<StepOp, true>> = {
  modprobe: true,
  'modprobe-alias': true,
  'set-override': true,
  unbind: true,
  probe: true,
  verify: true,
  'verify-none': true,
  'sriov-autoprobe': true,
  'sriov-numvfs': true,
  hook: true,
  chown: true,
};
export const STEP_OPS = Object.keys(STEP_OP_SET) as StepOp[];

/**
 * Every safety check that can refuse a device, by its stable id (JSON output, the web console).
 * input: the request itself is bad (no such device, unknown driver); the rest refuse a valid one.
 */
export type RefusalCheck =
  | 'input'
  | 'no-vfio-driver'
  | 'id-table'
  | 'blacklist'
  | 'prerequisite'
  | 'hook-trust'
  | 'in-use'
  | 'vfio-user'
  | 'no-iommu'
  | 'sriov-pf'
  | 'sriov'
  | 'iommu-group'
  | 'group-member'
  | 'boot-device'
  /** The libvirt hook: a domain's devices move together, and another of them cannot. */
  | 'domain';

export interface Refusal {
  readonly check: RefusalCheck;
  readonly message: string;
  /** --force lets the bind go ahead despite it. */
  readonly forceable: boolean;
}

export type PlanStatus = DevicePlan['status'];

export interface DriverState {
  readonly driver: string | null;
  readonly override: string | null;
}

/**
 * Where a device goes: a driver (and the module that provides it), or no driver (`none`, unbind to
 * whatever probes).
 */
export interface PlanTarget {
  readonly driver: string | null;
  readonly module: string | null;
  readonly vfio: boolean;
}

interface DevicePlanBase {
  readonly address: string;
  /** What the device is on now. */
  readonly from: DriverState;
  /** What the device had before vfioctl first bound it (a bind record), else `from`. */
  readonly original: DriverState;
  readonly warnings: readonly string[];
  /** The VFIO candidates the target was chosen from (bind plans; null for unbind, none, SR-IOV). */
  readonly resolution: Resolution | null;
  /**
   * The device as `show --json` prints it, for hooks' standard input (added by the operations layer
   * when hooks run).
   */
  readonly device?: unknown;
  /** Devices that must succeed or fail together (an IOMMU group moved with --group). */
  readonly unit: string;
}

/**
 * One device's plan, by status: `planned` has steps and no refusals; `noop` is already there;
 * `refused` has a refusal (and no steps); `invalid` is bad input (no device, unknown driver).
 */
export type DevicePlan =
  | (DevicePlanBase & {
      readonly status: 'planned';
      readonly target: PlanTarget;
      readonly steps: readonly Step[];
      readonly refusals: readonly [];
    })
  | (DevicePlanBase & {
      readonly status: 'noop';
      readonly target: PlanTarget;
      readonly steps: readonly Step[];
      readonly refusals: readonly [];
    })
  | (DevicePlanBase & {
      readonly status: 'refused';
      readonly target: PlanTarget | null;
      readonly steps: readonly [];
      readonly refusals: readonly Refusal[];
    })
  | (DevicePlanBase & {
      readonly status: 'invalid';
      readonly target: null;
      readonly steps: readonly [];
      readonly refusals: readonly Refusal[];
    });

export interface Plan {
  /** `sriov`: PF steps that change VFs, not drivers (no bind record is kept). */
  readonly kind: 'bind' | 'unbind' | 'sriov';
  readonly devices: readonly DevicePlan[];
}

export interface BindRequest {
  readonly kind: 'bind';
  readonly addresses: readonly string[];
  /** `vfio` (best usable VFIO driver) or a driver/module name. */
  readonly driver: string;
  readonly force: boolean;
  readonly group: boolean;
  readonly owner?: { readonly uid: number; readonly gid: number };
  /** Per-device hooks from configuration rules, run after the hooks.d ones. */
  readonly ruleHooks?: ReadonlyMap<string, readonly Hook[]>;
  /** A driver (or `vfio`) per device, where it differs from `driver` (a converge). */
  readonly perDevice?: ReadonlyMap<string, BindIntent>;
  /** Other devices leaving their host drivers in the same operation (for the IOMMU-group check). */
  readonly alsoMoving?: ReadonlySet<string>;
  /** Devices that succeed or fail together (`set --group`): address -> unit name. */
  readonly units?: ReadonlyMap<string, string>;
}

export interface UnbindRequest {
  readonly kind: 'unbind';
  readonly addresses: readonly string[];
  readonly ruleHooks?: ReadonlyMap<string, readonly Hook[]>;
  /** Intent `host`: a device with no driver at all is probed for its host driver too. */
  readonly probeUnbound?: boolean;
}

export function describeStep(s: Step): string {
  const dev = (a: string) => `/sys/bus/pci/devices/${a}`;
  switch (s.op) {
    case 'modprobe':
      return `modprobe ${s.module}`;
    case 'modprobe-alias':
      return `modprobe -b ${s.modalias}`;
    case 'set-override':
      return s.driver === null
        ? `write '\\n' > ${dev(s.address)}/driver_override`
        : `write '${s.driver}' > ${dev(s.address)}/driver_override`;
    case 'unbind':
      return `write '${s.address}' > /sys/bus/pci/drivers/${s.driver}/unbind`;
    case 'probe':
      return `write '${s.address}' > /sys/bus/pci/drivers_probe`;
    case 'verify':
      return s.driver === null
        ? `verify ${s.address} is on a host driver`
        : `verify ${s.address} is on ${s.driver}${s.vfio ? ' registered with VFIO' : ''}`;
    case 'verify-none':
      return `verify ${s.address} has no driver`;
    case 'sriov-autoprobe':
      return `write '${s.value ? 1 : 0}' > ${dev(s.address)}/sriov_drivers_autoprobe`;
    case 'sriov-numvfs':
      return `${s.from > 0 ? `write '0' then ` : 'write '}'${s.numVfs}' > ${dev(s.address)}/sriov_numvfs`;
    case 'hook':
      return `run ${s.event} hook ${s.path}`;
    case 'chown':
      return s.node === 'group'
        ? `chown ${s.uid}:${s.gid} /dev/vfio/${s.group}`
        : `chown ${s.uid}:${s.gid} /dev/vfio/devices/vfioN (N from ${s.address}/vfio-dev/)`;
  }
}
