// The page's pure logic: what it reads from vfioctl's JSON (README "JSON";
// schema/device.schema.json) and what it decides from it. No DOM and no Cockpit here, so `npm test`
// checks it in Node.

export interface Vfio {
  module: string;
  driver: string;
}

export interface Device {
  address: string;
  vendor: string;
  device: string;
  class: string;
  vendorName: string | null;
  deviceName: string | null;
  className: string | null;
  driver: string | null;
  driverOverride: string | null;
  iommuGroup: string | null;
  iommuGroupPeers: string[];
  sriov: { totalVfs: number; numVfs: number } | null;
  physfn: string | null;
  onVfio: boolean;
  netdevs: string[];
  blockdevs: string[];
  inUse: string[];
  vfio: Vfio | null;
  vfioReason: string | null;
}

export interface Candidate {
  module: string;
  driver: string;
  alias: string;
  wildcards: number;
  source: string;
  usable: boolean;
  reason: string | null;
  notes: string[];
}

export interface ShownDevice extends Device {
  modalias: string;
  candidates: Candidate[];
  hooks?: { path: string; source: string; problem: string | null }[];
}

export interface Refusal {
  check: string;
  message: string;
  forceable: boolean;
}

export interface Step {
  op: string;
  description: string;
  done: boolean;
  error?: string;
}

export interface Result {
  address: string;
  status: 'ok' | 'noop' | 'planned' | 'failed' | 'refused' | 'invalid';
  driver: string | null;
  target: string | null;
  steps: Step[];
  refusals: Refusal[];
  warnings: string[];
  error: string | null;
  phase?: string;
  intent?: string;
  rule?: string;
}

/**
 * bind/unbind print {command, results}; set/unset print apply's shape, which adds `skipped` and
 * `warnings`.
 */
export interface ActionOutput {
  command: string;
  dryRun: boolean;
  results: Result[];
  warnings?: string[];
  skipped?: { address: string; reason: string }[];
}

export interface DoctorCheck {
  id: string;
  status: 'ok' | 'warn' | 'fail';
  message: string;
}

export interface Doctor {
  ok: boolean;
  kernel: string | null;
  checks: DoctorCheck[];
}

export interface DeviceStatus {
  address: string;
  intent: string | null;
  rule: string | null;
  resolved: string | null;
  reason: string | null;
  live: { driver: string | null; override: string | null } | null;
  lastApplied: {
    driver: string | null;
    kernel: string | null;
    status: string;
    error: string | null;
    at: string | null;
  } | null;
  boot: { outcome: string; driver: string | null; hostDriverBuiltin: boolean } | null;
  drift: string;
  detail: string;
}

export interface Status {
  kernel: string | null;
  config: string | null;
  bootAt: string | number | null;
  devices: DeviceStatus[];
  warnings?: string[];
}

// ---- the device table ----

/** PCI base classes (the first two hex digits of `class`), as lspci names them. */
const BASE_CLASSES: Record<string, string> = {
  '00': 'Unclassified',
  '01': 'Mass storage',
  '02': 'Network',
  '03': 'Display',
  '04': 'Multimedia',
  '05': 'Memory',
  '06': 'Bridge',
  '07': 'Communication',
  '08': 'System peripheral',
  '09': 'Input',
  '0a': 'Docking station',
  '0b': 'Processor',
  '0c': 'Serial bus',
  '0d': 'Wireless',
  '0e': 'Intelligent controller',
  '0f': 'Satellite',
  '10': 'Encryption',
  '11': 'Signal processing',
  '12': 'Processing accelerator',
  '13': 'Non-essential instrumentation',
  '40': 'Co-processor',
  ff: 'Unassigned',
};

export function baseClass(d: Pick<Device, 'class'>): string {
  const b = d.class.slice(0, 2).toLowerCase();
  return BASE_CLASSES[b] ?? `Class ${b}`;
}

/** What the table shows as the device's name: pci.ids' names when known, else the ids. */
export function deviceLabel(d: Device): string {
  const v = d.vendorName ?? d.vendor;
  const n = d.deviceName ?? d.device;
  return d.vendorName || d.deviceName ? `${v} ${n}` : `${d.vendor}:${d.device}`;
}

export function classLabel(d: Device): string {
  return d.className ?? baseClass(d);
}

export function sriovRole(d: Device): string {
  if (d.physfn) return `VF of ${d.physfn}`;
  if (d.sriov) return `PF (${d.sriov.numVfs}/${d.sriov.totalVfs} VFs)`;
  return '';
}

export const UNBOUND = '(none)';

export interface Filter {
  text: string;
  /** A base-class label from baseClass(), or '' for all. */
  cls: string;
  /** A driver name, UNBOUND for unbound devices, or '' for all. */
  driver: string;
  onVfio: boolean;
}

export const NO_FILTER: Filter = { text: '', cls: '', driver: '', onVfio: false };

/** The words a text filter matches: every column the table shows, and the raw ids. */
function haystack(d: Device): string {
  return [
    d.address,
    d.vendor,
    d.device,
    `${d.vendor}:${d.device}`,
    deviceLabel(d),
    classLabel(d),
    baseClass(d),
    d.class,
    d.driver ?? UNBOUND,
    d.vfio?.driver ?? '',
    d.iommuGroup ?? '',
    sriovRole(d),
    ...d.inUse,
    ...d.netdevs,
    ...d.blockdevs,
  ]
    .join('\n')
    .toLowerCase();
}

export function matches(d: Device, f: Filter): boolean {
  if (f.onVfio && !d.onVfio) return false;
  if (f.cls && baseClass(d) !== f.cls) return false;
  if (f.driver && (d.driver ?? UNBOUND) !== f.driver) return false;
  const words = f.text.toLowerCase().split(/\s+/).filter(Boolean);
  const hay = haystack(d);
  return words.every((w) => hay.includes(w));
}

export type SortKey =
  | 'address'
  | 'name'
  | 'class'
  | 'driver'
  | 'vfio'
  | 'group'
  | 'sriov'
  | 'inUse';
export interface Sort {
  key: SortKey;
  dir: 'asc' | 'desc';
}

const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

function sortValue(d: Device, key: SortKey): string {
  switch (key) {
    case 'address':
      return d.address; // compared by byAddress
    case 'name':
      return deviceLabel(d);
    case 'class':
      return classLabel(d);
    case 'driver':
      return d.driver ?? '';
    case 'vfio':
      return d.vfio?.driver ?? '';
    case 'group':
      return d.iommuGroup ?? '';
    case 'sriov':
      return sriovRole(d);
    case 'inUse':
      return d.inUse.join(', ');
  }
}

/**
 * Addresses are fixed-width lower-case hex: plain order is bus order (numeric collation would put
 * 00:1f before 00:05).
 */
const byAddress = (a: Device, b: Device): number =>
  a.address < b.address ? -1 : a.address > b.address ? 1 : 0;

/** A stable sort (address breaks ties); other columns numeric-aware so group 10 follows group 9. */
export function sortDevices(devices: readonly Device[], s: Sort): Device[] {
  const sign = s.dir === 'asc' ? 1 : -1;
  const cmp =
    s.key === 'address'
      ? byAddress
      : (a: Device, b: Device) => collator.compare(sortValue(a, s.key), sortValue(b, s.key));
  return [...devices].sort((a, b) => sign * cmp(a, b) || byAddress(a, b));
}

/** The choices of the class and driver filters: those present, sorted. */
export function filterChoices(devices: readonly Device[]): {
  classes: string[];
  drivers: string[];
} {
  const classes = [...new Set(devices.map(baseClass))].sort(collator.compare);
  const drivers = [...new Set(devices.map((d) => d.driver ?? UNBOUND))].sort(collator.compare);
  return { classes, drivers };
}

// ---- actions ----

export type ActionKind = 'bind' | 'unbind' | 'set' | 'unset';

export interface ActionRequest {
  kind: ActionKind;
  address: string;
  group?: boolean;
  force?: boolean;
}

/** The argument array of an action (never a shell string); `dryRun` adds --dry-run. */
export function actionArgs(r: ActionRequest, dryRun: boolean): string[] {
  const args: string[] = [r.kind, r.address];
  if (r.kind === 'set') args.push('vfio');
  if (r.kind === 'bind') {
    if (r.group) args.push('--group');
    if (r.force) args.push('--force');
  }
  if (dryRun) args.push('--dry-run');
  args.push('--json');
  return args;
}

/**
 * Checks that --force must never override, whatever the CLI reports (README: vfio-user is never
 * forceable).
 */
const NEVER_FORCE = new Set(['vfio-user', 'no-iommu', 'hook-trust']);

export interface PreviewVerdict {
  /** Everything is planned or already there: a plain confirmation may run it. */
  canRun: boolean;
  /** Nothing would change (every result a no-op). */
  noop: boolean;
  /** The IOMMU group is not viable: offer the same action with --group. */
  offerGroup: boolean;
  /**
   * Every refusal is forceable (and none is a never-force check): offer --force, behind a second
   * confirmation.
   */
  offerForce: boolean;
  refusals: (Refusal & { address: string })[];
  /** A result that is neither planned, no-op nor refused (invalid/failed), with its message. */
  errors: { address: string; message: string }[];
}

/** What a --dry-run preview allows next. */
export function judgePreview(req: ActionRequest, out: ActionOutput): PreviewVerdict {
  const refusals = out.results.flatMap((r) =>
    r.refusals.map((x) => ({ ...x, address: r.address })),
  );
  const errors = out.results
    .filter((r) => r.status === 'invalid' || r.status === 'failed')
    .map((r) => ({ address: r.address, message: r.error ?? r.status }));
  const blocked = out.results.some((r) => r.status === 'refused') || errors.length > 0;
  const noop = out.results.length > 0 && out.results.every((r) => r.status === 'noop');
  return {
    canRun: !blocked && out.results.length > 0 && !noop,
    noop,
    offerGroup:
      req.kind === 'bind' &&
      !req.group &&
      !req.force &&
      refusals.some((x) => x.check === 'iommu-group'),
    offerForce:
      req.kind === 'bind' &&
      !req.force &&
      errors.length === 0 &&
      refusals.length > 0 &&
      refusals.every((x) => x.forceable && !NEVER_FORCE.has(x.check)),
    refusals,
    errors,
  };
}

/** Which actions a device's detail offers, from its list entry and its configured rule. */
export function availableActions(d: Device, rule: DeviceStatus | undefined): ActionKind[] {
  const a: ActionKind[] = [];
  if (!d.onVfio) a.push('bind');
  if (d.onVfio || d.driverOverride !== null) a.push('unbind');
  if (rule?.intent !== 'vfio') a.push('set');
  if (rule && rule.intent !== null) a.push('unset');
  return a;
}

export const ACTION_LABELS: Record<ActionKind, { button: string; title: string; run: string }> = {
  bind: { button: 'Bind to VFIO', title: 'Bind to the best VFIO driver', run: 'Bind' },
  unbind: { button: 'Unbind', title: 'Give back to the host driver', run: 'Unbind' },
  set: {
    button: 'Make persistent',
    title: 'Configure VFIO for this device and apply it',
    run: 'Save and apply',
  },
  unset: {
    button: 'Remove rule',
    title: "Remove the device's rule and return it to its host driver",
    run: 'Remove rule',
  },
};

/** A CLI run as the page sees it: the exit code, stdout parsed when it is JSON, stderr. */
export interface CliOutcome<T> {
  code: number;
  data: T | null;
  stderr: string;
}

/** vfioctl's exit codes (README "Exit codes"), for messages. */
export function exitMeaning(code: number): string {
  switch (code) {
    case 0:
      return 'done';
    case 1:
      return 'failed and rolled back';
    case 2:
      return 'bad input';
    case 3:
      return 'refused by a safety check';
    case 4:
      return 'another vfioctl held the lock; nothing was done';
    case 5:
      return 'some configured device is not as configured';
    default:
      return `exit status ${code}`;
  }
}

/** stderr lines worth showing (vfioctl's own messages, without its "vfioctl: " prefix). */
export function stderrLines(stderr: string): string[] {
  return stderr
    .split('\n')
    .map((l) => l.replace(/^vfioctl:\s*/, '').trim())
    .filter(Boolean);
}
