// driverctl users come along: `import-driverctl` turns /etc/driverctl.d/* into vfioctl rules, and
// driverctl's verbs work with driverctl's meaning (set-override stores the literal driver name).
import { isPciAddress, printable } from '../host/address';
import { CONFIG_FILE, type Config } from '../config/types';
import { loadConfig, parseConfig, readConfigText } from '../config/load';
import { withIntent } from '../config/edit';
import { validateDriverName } from '../plan/target';
import { EXIT, VfioctlError } from '../util/diag';
import { untrustedReason } from '../host/trust';
import { type Context, trust } from './context';
import { saveConfig } from '../ops/boot-layers';

export const DRIVERCTL_DIR = '/etc/driverctl.d';

interface Imported {
  readonly file: string;
  readonly address: string;
  readonly driver: string;
  readonly intent: string;
}

type ImportOptions = { dryRun?: boolean; json?: boolean; vfio?: boolean };

export function importDriverctlCommand(ctx: Context, opts: ImportOptions): number | Promise<number> {
  // The configuration's read-modify-write happens under the lock, as set's does.
  return opts.dryRun ? importDriverctl(ctx, opts) : ctx.host.session(async () => importDriverctl(ctx, opts));
}

function importDriverctl(ctx: Context, opts: ImportOptions): number {
  const policy = trust(ctx);
  const original = readConfigText(ctx.root, policy);
  const config = original === undefined ? { rules: [] as Config['rules'] } : parseConfig(original, CONFIG_FILE);
  const problems: string[] = [];
  const found: Imported[] = [];
  for (const name of ctx.root.list(DRIVERCTL_DIR).sort()) {
    const file = `${DRIVERCTL_DIR}/${name}`;
    const m = /^pci-(.+)$/.exec(name);
    if (!m) {
      if (!name.startsWith('.')) problems.push(`${file}: not a PCI override (driverctl names them pci-DOMAIN:BUS:DEV.FN); skipped`);
      continue;
    }
    const address = m[1]!.toLowerCase();
    if (!isPciAddress(address)) {
      problems.push(`${file}: '${printable(m[1]!)}' is not a PCI address`);
      continue;
    }
    const why = untrustedReason(ctx.root, file, policy);
    if (why) {
      problems.push(`${file}: not imported: ${why}`);
      continue;
    }
    const driver = (ctx.root.readFile(file) ?? '').replace(/\n$/, '');
    try {
      validateDriverName(driver);
    } catch (e) {
      problems.push(`${file}: ${(e as Error).message}`);
      continue;
    }
    // driverctl's vfio-pci is a literal driver; the best VFIO driver only when asked (--vfio).
    const intent = opts.vfio && driver === 'vfio-pci' ? 'vfio' : driver;
    const existing = config.rules.find((r) => r.selector.kind === 'address' && r.selector.address === address);
    if (existing && existing.intent !== intent) {
      problems.push(`${file}: ${address} is already configured as '${existing.intent}' (${CONFIG_FILE} line ${existing.line}), driverctl says '${driver}': resolve it by hand`);
      continue;
    }
    found.push({ file, address, driver, intent });
  }
  // Bad input changes nothing: all files import, or none.
  if (problems.length) throw new VfioctlError(`cannot import ${DRIVERCTL_DIR} (nothing was changed):\n${problems.map((p) => `  ${p}`).join('\n')}`, EXIT.BAD_INPUT);
  let text = original;
  let changed = false;
  for (const f of found) {
    const e = withIntent(text, f.address, f.intent);
    text = e.text;
    changed ||= e.changed;
  }
  if (!opts.dryRun && changed) {
    for (const w of saveConfig(ctx.host, text!)) ctx.io.err(`vfioctl: warning: ${w}\n`);
  }
  const hint = found.length
    ? [
        `driverctl's udev rule (89-driverctl.rules) still applies these files at boot. Remove them (do not use 'driverctl unset-override', which rebinds the device now):`,
        `  rm ${found.map((f) => f.file).join(' ')}`,
        `or mask driverctl's rule for every device: ln -s /dev/null /etc/udev/rules.d/89-driverctl.rules`,
        `then 'vfioctl apply' (and 'vfioctl install' for the boot layers).`,
      ]
    : [];
  if (opts.json) {
    ctx.io.out(JSON.stringify({ command: 'import-driverctl', dryRun: !!opts.dryRun, imported: found, changed, next: hint }, null, 2) + '\n');
    return EXIT.OK;
  }
  if (found.length === 0) ctx.io.out(`nothing to import from ${DRIVERCTL_DIR}\n`);
  for (const f of found) ctx.io.out(`${opts.dryRun ? 'would import' : 'imported'} ${f.file}: ${f.address} -> ${f.intent}${f.intent !== f.driver ? ` (driverctl: ${f.driver})` : ''}\n`);
  if (found.length && !changed) ctx.io.out(`${CONFIG_FILE} already has all of them\n`);
  for (const h of hint) ctx.io.out(`${h}\n`);
  return EXIT.OK;
}

const DEVICE_TYPES: Record<string, string> = {
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

/**
 * driverctl list-devices / list-overrides [TYPE]: `ADDRESS DRIVER` (`(none)` when unbound); devices
 * add ` [*]` when driver_override is set, overrides lists only those (live, as driverctl does).
 */
export function listDevicesCommand(ctx: Context, type: string | undefined, overridesOnly: boolean): number {
  const cls = DEVICE_TYPES[type ?? 'all'];
  if (cls === undefined) throw new VfioctlError(`device type must be one of: ${Object.keys(DEVICE_TYPES).join(' ')}`, EXIT.BAD_INPUT);
  for (const a of ctx.root.list('/sys/bus/pci/devices').filter(isPciAddress).sort()) {
    const dir = `/sys/bus/pci/devices/${a}`;
    const override = ctx.root.readAttr(`${dir}/driver_override`);
    if (override === undefined || (overridesOnly && override === '(null)')) continue;
    if (cls && ctx.root.readAttr(`${dir}/class`)?.slice(2, 4) !== cls) continue;
    const driver = ctx.root.linkName(`${dir}/driver`) ?? '(none)';
    ctx.io.out(`${a} ${driver}${!overridesOnly && override !== '(null)' ? ' [*]' : ''}\n`);
  }
  return EXIT.OK;
}

/** driverctl's DEVICE may carry its bus: `pci/0000:01:00.0`. */
export function driverctlDevice(dev: string): string {
  const m = /^([^/]+)\/(.*)$/.exec(dev);
  if (!m) return dev;
  if (m[1] !== 'pci') throw new VfioctlError(`vfioctl handles the pci bus only, not '${printable(m[1]!)}'`, EXIT.BAD_INPUT);
  return m[2]!;
}

/** driverctl load-override DEVICE: apply its saved configuration; exit 1 when there is none. */
export function hasAddressRule(ctx: Context, address: string): boolean {
  return loadConfig(ctx.root, trust(ctx)).rules.some((r) => r.selector.kind === 'address' && r.selector.address === address && r.intent !== null);
}
