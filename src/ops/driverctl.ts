// driverctl users come along: `import-driverctl` turns /etc/driverctl.d/* into vfioctl rules, and
// driverctl's verbs read what driverctl would show. driverctl (0.111) keeps one file per device,
// `<bus>-<device>` holding the driver name, and loads exactly that name for a device
// (`driverctl load-override` from its udev rule): a backup beside it is never loaded, and a bus
// other than pci is not vfioctl's.
import { isPciAddress, parseAddress, printable } from '../host/address';
import { loadPciNames } from '../host/pciids';
import { CONFIG_FILE, type Config } from '../config/types';
import { loadConfig, parseConfig, readConfigText } from '../config/load';
import { withIntent } from '../config/edit';
import { validateDriverName } from '../plan/target';
import { intentName } from '../config/intent';
import { EXIT, VfioctlError } from '../util/diag';
import { isBackupName } from '../util/backup-name';
import { untrustedReason } from '../host/trust';
import { saveConfig } from './boot-layers';
import type { Host } from './host';

export const DRIVERCTL_DIR = '/etc/driverctl.d';

export interface DriverctlImported {
  readonly file: string;
  readonly address: string;
  /** What driverctl's file says. */
  readonly driver: string;
  /** The rule's intent: the driver, or `vfio` for driverctl's vfio-pci with `vfio`. */
  readonly intent: string;
}

export interface DriverctlImportReport {
  readonly dryRun: boolean;
  readonly imported: readonly DriverctlImported[];
  /** Files left alone, each with why (backups, other buses): warnings, not errors. */
  readonly skipped: readonly { readonly file: string; readonly reason: string }[];
  /** The configuration file changed (or would). */
  readonly changed: boolean;
  /** How to stop driverctl applying the same devices. */
  readonly next: readonly string[];
  readonly warnings: readonly string[];
}

export interface DriverctlImportOptions {
  readonly dryRun?: boolean;
  /** driverctl's vfio-pci becomes intent `vfio` (the best VFIO driver, variants included). */
  readonly vfio?: boolean;
}

/**
 * Reads every file, then imports all of them or none: a problem in any file (not a driver name,
 * untrusted, two files for one device, a conflicting rule) is bad input naming the file(s) and
 * nothing is changed. The configuration's read-modify-write runs under the lock, as set's does.
 */
export function importDriverctl(
  host: Host,
  opts: DriverctlImportOptions,
): Promise<DriverctlImportReport> {
  return opts.dryRun
    ? Promise.resolve(importIn(host, opts))
    : host.session(async () => importIn(host, opts));
}

function importIn(host: Host, opts: DriverctlImportOptions): DriverctlImportReport {
  const root = host.root;
  const original = readConfigText(root, host.trust);
  const config =
    original === undefined ? { rules: [] as Config['rules'] } : parseConfig(original, CONFIG_FILE);
  const problems: string[] = [];
  const skipped: { file: string; reason: string }[] = [];
  const found: DriverctlImported[] = [];
  const byAddress = new Map<string, string>();
  for (const name of root.list(DRIVERCTL_DIR).sort()) {
    const file = `${DRIVERCTL_DIR}/${name}`;
    if (isBackupName(name)) {
      skipped.push({ file, reason: 'a backup or editor file: driverctl never loads it' });
      continue;
    }
    const m = /^([^-]+)-(.+)$/.exec(name);
    if (m?.[1] !== 'pci') {
      skipped.push({
        file,
        reason: m
          ? `an override on the ${printable(m[1]!)} bus: vfioctl handles PCI only, driverctl keeps applying it`
          : 'not a driverctl override (driverctl names them BUS-DEVICE, e.g. pci-0000:03:00.0)',
      });
      continue;
    }
    let address: string;
    try {
      address = parseAddress(m[2]!);
    } catch {
      problems.push(
        `${file}: '${printable(m[2]!)}' is not a PCI address (driverctl names them pci-DOMAIN:BUS:DEV.FN); remove or rename it`,
      );
      continue;
    }
    // driverctl writes the sysfs name; `pci-0000:0A:00.0` or `pci-0a:00.0` beside it is the same
    // device.
    const twin = byAddress.get(address);
    if (twin !== undefined) {
      problems.push(
        `${twin} and ${file} are both for ${address}: remove the one driverctl does not use (it loads ${DRIVERCTL_DIR}/pci-${address})`,
      );
      continue;
    }
    byAddress.set(address, file);
    const why = untrustedReason(root, file, host.trust);
    if (why) {
      problems.push(`${file}: not imported: ${why}`);
      continue;
    }
    const driver = (root.readFile(file) ?? '').replace(/\n$/, '');
    try {
      validateDriverName(driver);
    } catch (e) {
      problems.push(`${file}: ${(e as Error).message}`);
      continue;
    }
    // driverctl's vfio-pci is a literal driver; the best VFIO driver only when asked (--vfio).
    const intent = opts.vfio && driver === 'vfio-pci' ? 'vfio' : driver;
    const existing = config.rules.find(
      (r) => r.selector.kind === 'address' && r.selector.address === address,
    );
    if (existing && (existing.intent && intentName(existing.intent)) !== intent) {
      problems.push(
        `${file}: ${address} is already configured as '${existing.intent ? intentName(existing.intent) : 'sriov only'}' (${CONFIG_FILE} line ${existing.line}), driverctl says '${driver}': resolve it by hand`,
      );
      continue;
    }
    found.push({ file, address, driver, intent });
  }
  // Bad input changes nothing: all files import, or none.
  if (problems.length)
    throw new VfioctlError(
      `cannot import ${DRIVERCTL_DIR} (nothing was changed):\n${problems.map((p) => `  ${p}`).join('\n')}`,
      EXIT.BAD_INPUT,
    );
  let text = original;
  let changed = false;
  for (const f of found) {
    const e = withIntent(text, f.address, f.intent);
    text = e.text;
    changed ||= e.changed;
  }
  const warnings = skipped.map((s) => `${s.file}: skipped: ${s.reason}`);
  if (!opts.dryRun && changed) warnings.push(...saveConfig(host, text!));
  const next = found.length
    ? [
        `driverctl's udev rule (89-driverctl.rules) still applies these files at boot. Remove them (do not use 'driverctl unset-override', which rebinds the device now):`,
        `  rm ${found.map((f) => f.file).join(' ')}`,
        `or mask driverctl's rule for every device: ln -s /dev/null /etc/udev/rules.d/89-driverctl.rules`,
        `then 'vfioctl apply' (and 'vfioctl install' for the boot layers).`,
      ]
    : [];
  return { dryRun: !!opts.dryRun, imported: found, skipped, changed, next, warnings };
}

/** driverctl's device types (`list-devices TYPE`): PCI base class bytes. */
export const DEVICE_TYPES: Readonly<Record<string, string>> = {
  all: '',
  storage: '01',
  network: '02',
  display: '03',
  multimedia: '04',
  memory: '05',
  bridge: '06',
  communication: '07',
  system: '08',
  input: '09',
  docking: '0a',
  processor: '0b',
  serial: '0c',
};

export interface DriverctlDevice {
  readonly address: string;
  /** The bound driver, or null. */
  readonly driver: string | null;
  /** The live driver_override, or null when unset (`(null)`). */
  readonly override: string | null;
  /**
   * With `names`: the device's pci.ids name (driverctl --debug shows udev's
   * ID_MODEL_FROM_DATABASE).
   */
  readonly name?: string | null;
}

/**
 * driverctl list-devices / list-overrides [TYPE]: live, as driverctl reads them (devices without
 * a driver_override attribute are not overridable and not listed).
 */
export function driverctlDevices(
  host: Host,
  type: string | undefined,
  opts: { overridesOnly: boolean; names?: boolean },
): DriverctlDevice[] {
  const cls = DEVICE_TYPES[type ?? 'all'];
  if (cls === undefined)
    throw new VfioctlError(
      `device type must be one of: ${Object.keys(DEVICE_TYPES).join(' ')}`,
      EXIT.BAD_INPUT,
    );
  const root = host.root;
  const out: DriverctlDevice[] = [];
  const ids = new Map<string, [string, string]>();
  for (const a of root.list('/sys/bus/pci/devices').filter(isPciAddress).sort()) {
    const dir = `/sys/bus/pci/devices/${a}`;
    const override = root.readAttr(`${dir}/driver_override`);
    if (override === undefined || (opts.overridesOnly && override === '(null)')) continue;
    if (cls && root.readAttr(`${dir}/class`)?.slice(2, 4) !== cls) continue;
    out.push({
      address: a,
      driver: root.linkName(`${dir}/driver`) ?? null,
      override: override === '(null)' ? null : override,
    });
    if (opts.names)
      ids.set(a, [hex4(root.readAttr(`${dir}/vendor`)), hex4(root.readAttr(`${dir}/device`))]);
  }
  if (!opts.names) return out;
  const names = loadPciNames(
    root,
    [...ids.values()].map(([vendor, device]) => ({ vendor, device })),
  );
  return out.map((d) => {
    const [v, dev] = ids.get(d.address)!;
    return { ...d, name: names?.deviceName(v, dev) ?? null };
  });
}

function hex4(attr: string | undefined): string {
  return (attr ?? '').replace(/^0x/, '').toLowerCase();
}

/** driverctl's DEVICE may carry its bus: `pci/0000:01:00.0`. */
export function driverctlDevice(dev: string): string {
  const m = /^([^/]+)\/(.*)$/.exec(dev);
  if (!m) return dev;
  if (m[1] !== 'pci')
    throw new VfioctlError(
      `vfioctl handles the pci bus only, not '${printable(m[1]!)}'`,
      EXIT.BAD_INPUT,
    );
  return m[2]!;
}

/** driverctl load-override DEVICE: does it have a saved rule (exit 1 when not, as driverctl)? */
export function hasAddressRule(host: Host, address: string): boolean {
  return loadConfig(host.root, host.trust).rules.some(
    (r) => r.selector.kind === 'address' && r.selector.address === address && r.intent !== null,
  );
}
