// `doctor`: can this host do VFIO at all, and if not, why not (read-only). The CLI renders it;
// the node agent publishes its verdict as the vfioctl.io/vfio-capable label.
import { readModuleState, readSnapshot } from '../read/snapshot';
import { Diagnostics, VfioctlError } from '../util/diag';
import { isOnVfio } from '../plan/checks';
import { resetWarning } from '../report/device-view';
import { loadConfig } from '../config/load';
import { desiredState } from '../config/desired';
import { VFIO_PCI_MODULE } from '../match/resolve';
import { CORRUPT_JOURNAL_ACTION, Journal } from '../apply/journal';
import { lockHeld } from '../apply/lock';
import { describeCorrupt } from '../persist/validate';
import type { Host } from './host';

export type DoctorStatus = 'ok' | 'warn' | 'fail';

export interface DoctorCheck {
  readonly id: string;
  readonly status: DoctorStatus;
  readonly message: string;
}

export interface DoctorReport {
  /** No check failed: this host can use VFIO. */
  readonly ok: boolean;
  readonly kernel: string | null;
  readonly checks: readonly DoctorCheck[];
}

export function doctor(host: Host): DoctorReport {
  const root = host.root;
  const checks: DoctorCheck[] = [];
  const add = (id: string, status: DoctorStatus, message: string) =>
    checks.push({ id, status, message });
  const cmdline = root.readAttr('/proc/cmdline') ?? '';
  const units = root.list('/sys/class/iommu');
  const groups = root.list('/sys/kernel/iommu_groups');
  const iommuArg = cmdline.split(/\s+/).filter((w) => /^(intel_iommu|amd_iommu|iommu)=/.test(w));
  if (units.length > 0 && groups.length > 0)
    add('iommu', 'ok', `IOMMU enabled: ${units.join(', ')}, ${groups.length} groups`);
  else if (units.length > 0)
    add(
      'iommu',
      'fail',
      `IOMMU hardware ${units.join(', ')} is present but no IOMMU groups exist: boot with intel_iommu=on (or amd_iommu=on)`,
    );
  else {
    add(
      'iommu',
      'fail',
      `no IOMMU: /sys/class/iommu is empty${iommuArg.length ? ` although the kernel command line has ${iommuArg.join(' ')}` : ''}; enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on (or amd_iommu=on)`,
    );
  }
  if (iommuArg.some((w) => /=off$/.test(w)))
    add('cmdline', 'fail', `the kernel command line disables the IOMMU: ${iommuArg.join(' ')}`);
  else
    add(
      'cmdline',
      'ok',
      iommuArg.length
        ? `kernel command line: ${iommuArg.join(' ')}`
        : 'no IOMMU option on the kernel command line (AMD enables by default; Intel needs intel_iommu=on on many kernels)',
    );
  // Interrupt remapping: Intel ecap bit 3 (IR); without it vfio_iommu_type1 refuses unless
  // allow_unsafe_interrupts=1.
  const ecaps = units
    .map((u) => root.readAttr(`/sys/class/iommu/${u}/intel-iommu/ecap`))
    .filter((e): e is string => e !== undefined);
  const unsafe = root
    .readAttr('/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts')
    ?.trim();
  if (ecaps.length > 0) {
    const ir = ecaps.every((e) => (BigInt(`0x${e.trim()}`) & 8n) !== 0n);
    add(
      'interrupt-remapping',
      ir ? 'ok' : unsafe === 'Y' ? 'warn' : 'fail',
      ir
        ? 'interrupt remapping supported'
        : `interrupt remapping not supported${unsafe === 'Y' ? ' (allow_unsafe_interrupts=Y: a device can inject interrupts)' : ': vfio_iommu_type1 refuses devices unless allow_unsafe_interrupts=1'}`,
    );
  } else if (units.length > 0)
    add(
      'interrupt-remapping',
      'warn',
      'cannot tell whether interrupt remapping is on (not an Intel IOMMU); see dmesg',
    );
  const lockdown = root.readAttr('/sys/kernel/security/lockdown');
  const mode = /\[(\w+)\]/.exec(lockdown ?? '')?.[1];
  if (mode && mode !== 'none')
    add(
      'lockdown',
      'warn',
      `kernel lockdown '${mode}' (Secure Boot): only signed modules load; out-of-tree variant drivers must be signed`,
    );
  else
    add(
      'lockdown',
      'ok',
      lockdown === undefined ? 'no lockdown LSM' : 'lockdown none: unsigned modules may load',
    );
  const diag = new Diagnostics();
  const release = root.kernelRelease(host.kernel);
  const mods = readModuleState(root, release, diag);
  const variants = [...mods.aliases.vfioByModule.keys()].filter((m) => m !== VFIO_PCI_MODULE);
  // Before 5.15 vfio-pci has no ID table (no vfio_pci: alias): modules.dep says it exists.
  const haveVfio = mods.vfioPciWithoutTable !== 'absent';
  const noTable =
    mods.vfioPciWithoutTable === 'module'
      ? ', no ID table: Linux before 5.15, it takes any device through driver_override'
      : '';
  add(
    'vfio-pci',
    haveVfio ? 'ok' : 'fail',
    haveVfio
      ? `vfio-pci available (${mods.builtin.has(VFIO_PCI_MODULE) ? 'built in' : mods.drivers.driverModule.has('vfio-pci') ? 'loaded' : 'module'}${noTable})`
      : `vfio-pci not found for kernel ${release ?? '?'} (no vfio_pci alias, not built in, not in modules.dep, not loaded)`,
  );
  if (mods.vfioPciWithoutTable === 'stale-alias')
    add(
      'modules.alias',
      'warn',
      `modules.alias of ${release} has no vfio_pci: alias for vfio-pci although vfio_pci_core (5.15+) is installed: run depmod ${release}`,
    );
  if (noTable && variants.length === 0)
    add(
      'variants',
      'ok',
      'no vfio-pci variant drivers: none exist before Linux 5.15 (plain vfio-pci: no live migration)',
    );
  else
    add(
      'variants',
      variants.length ? 'ok' : 'warn',
      variants.length
        ? `variant drivers: ${variants.join(', ')}`
        : 'no vfio-pci variant drivers in modules.alias (plain vfio-pci only: no live migration)',
    );
  const blacklisted = [VFIO_PCI_MODULE, ...variants].filter((m) => mods.blacklist.entries.has(m));
  if (blacklisted.length)
    add(
      'blacklist',
      'warn',
      `blacklisted: ${blacklisted.map((m) => `${m} (${mods.blacklist.entries.get(m)})`).join(', ')}`,
    );
  if (root.readAttr('/sys/module/vfio/parameters/enable_unsafe_noiommu_mode')?.trim() === 'Y')
    add('noiommu', 'warn', 'vfio no-IOMMU mode is on: devices are unprotected');
  // Half-done devices: a killed vfioctl's journal entries, or entries that cannot be read.
  const { entries, corrupt } = new Journal(root).pending();
  if (corrupt.length)
    add(
      'journal',
      'warn',
      `unreadable journal entries (never acted on): ${corrupt.map((c) => describeCorrupt(c, CORRUPT_JOURNAL_ACTION)).join('; ')}`,
    );
  else if (entries.length && !lockHeld(root))
    add(
      'journal',
      'warn',
      `left half-done by an interrupted vfioctl: ${entries.map((e) => `${e.address} (${e.kind} at ${e.op})`).join(', ')}; run 'vfioctl recover'`,
    );
  // Devices handed (or to be handed) to VMs without a reset method may not survive a VM restart.
  const noReset = devicesWithoutReset(host);
  if (noReset.length)
    add(
      'reset',
      'warn',
      `no reset method (may not survive a VM restart; see "Devices without a reset" in the README): ${noReset.join('; ')}`,
    );
  return { ok: !checks.some((c) => c.status === 'fail'), kernel: release ?? null, checks };
}

/** Devices on a VFIO driver or configured by a rule, whose reset_method says they have no reset. */
function devicesWithoutReset(host: Host): string[] {
  const snap = readSnapshot(host.root, { kernel: host.kernel });
  let configured = new Set<string>();
  try {
    const desired = desiredState(loadConfig(host.root, host.trust), snap.devices);
    configured = new Set(
      [...desired.desires.values()]
        .filter((d) => d.intent !== null && d.intent.kind !== 'none' && d.intent.kind !== 'host')
        .map((d) => d.address),
    );
  } catch (e) {
    if (!(e instanceof VfioctlError)) throw e; // a broken configuration is status's and apply's to report
  }
  const release = host.root.kernelRelease(host.kernel);
  const out: string[] = [];
  for (const d of snap.devices.values()) {
    if (!isOnVfio(d, snap) && !configured.has(d.address)) continue;
    const w = resetWarning(d, release);
    if (w)
      out.push(
        `${d.address} (${d.resetMethods === null ? 'none found by the kernel' : 'all disabled in reset_method'})`,
      );
  }
  return out;
}
