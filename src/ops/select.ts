// Which devices a command names: PCI addresses, network interface names (their PCI function),
// and the bulk selectors --id VENDOR:DEVICE, --class PREFIX and --vfs-of PF, which select as the
// configuration's rules of the same kind do (config/desired.ts selects()).
import { isPciAddress, parseAddress, printable } from '../host/address';
import { interfaceAddress } from '../host/netdev';
import { readPciDevice, type PciDevice } from '../host/pci';
import type { HostRoot } from '../host/root';
import { selects } from '../config/desired';
import type { Selector } from '../config/types';
import { EXIT, VfioctlError } from '../util/diag';

/** The selector options as given on the command line. */
export interface SelectorArgs {
  readonly id?: string;
  readonly class?: string;
  readonly vfsOf?: string;
}

export interface Selection {
  /**
   * Every selected address once, in the order asked: the DEVICE arguments, then each selector's
   * matches.
   */
  readonly addresses: readonly string[];
  /** What each argument or selector selected (`--id 8086:10d3` -> its devices), for --dry-run. */
  readonly selected: readonly { readonly by: string; readonly addresses: readonly string[] }[];
}

const ID = /^([0-9a-f]{4}):([0-9a-f]{4})(?::([0-9a-f]{4}):([0-9a-f]{4}))?$/;
const CLASS = /^(?:0x)?((?:[0-9a-f]{2}){1,3})$/;

/**
 * A selector option's value, checked as the configuration schema checks the rule's (exit 2
 * otherwise).
 */
export function parseSelector(kind: keyof SelectorArgs, value: string): Selector {
  const v = value.toLowerCase();
  switch (kind) {
    case 'id': {
      const m = ID.exec(v);
      if (!m)
        throw new VfioctlError(
          `--id '${printable(value)}': use VENDOR:DEVICE or VENDOR:DEVICE:SUBVENDOR:SUBDEVICE in hex, as 'lspci -nn' prints them (e.g. 8086:10d3)`,
          EXIT.BAD_INPUT,
        );
      return {
        kind: 'id',
        vendor: m[1]!,
        device: m[2]!,
        subvendor: m[3] ?? null,
        subdevice: m[4] ?? null,
      };
    }
    case 'class': {
      const m = CLASS.exec(v);
      if (!m)
        throw new VfioctlError(
          `--class '${printable(value)}': use a hex class prefix of 2, 4 or 6 digits: base class (02), with subclass (0200), with prog-if (020000)`,
          EXIT.BAD_INPUT,
        );
      return { kind: 'class', prefix: m[1]! };
    }
    case 'vfsOf':
      return { kind: 'vfsOf', pf: parseAddress(value) };
  }
}

export function selectorsOf(args: SelectorArgs): Selector[] {
  return (['id', 'class', 'vfsOf'] as const)
    .filter((k) => args[k] !== undefined)
    .map((k) => parseSelector(k, args[k]!));
}

/** The option that gives a selector, as the user typed it. */
export function selectorOption(s: Selector): string {
  switch (s.kind) {
    case 'address':
      return s.address;
    case 'vfsOf':
      return `--vfs-of ${s.pf}`;
    case 'id':
      return `--id ${s.vendor}:${s.device}${s.subvendor ? `:${s.subvendor}:${s.subdevice}` : ''}`;
    case 'class':
      return `--class ${s.prefix}`;
  }
}

/** A DEVICE argument: a PCI address, or a network interface name for its PCI function. */
export function deviceAddress(root: HostRoot, arg: string): string {
  const lower = arg.toLowerCase();
  if (isPciAddress(lower) || /^[0-9a-f]{2}:[0-1][0-9a-f]\.[0-7]$/.test(lower))
    return parseAddress(arg);
  // A name that looks like an address but is not one ('03:00.9') is still not an interface name
  // (':').
  if (arg.includes(':')) return parseAddress(arg);
  return interfaceAddress(root, arg);
}

/** Every PCI device, as much of it as selecting needs (no modules, no host use). */
function allDevices(root: HostRoot): PciDevice[] {
  return root
    .list('/sys/bus/pci/devices')
    .filter(isPciAddress)
    .sort()
    .map((a) => readPciDevice(root, a))
    .filter((d): d is PciDevice => d !== undefined);
}

/** What a selector matches now; for --vfs-of, the PF must exist. */
function matches(devices: readonly PciDevice[], s: Selector): string[] {
  if (s.kind === 'vfsOf' && !devices.some((d) => d.address === s.pf))
    throw new VfioctlError(`--vfs-of ${s.pf}: no PCI device ${s.pf}`, EXIT.BAD_INPUT);
  return devices.filter((d) => selects(s, d)).map((d) => d.address);
}

function nothingSelected(root: HostRoot, s: Selector, hint: string): VfioctlError {
  let why = `${selectorOption(s)} selects no PCI device on this host`;
  if (s.kind === 'vfsOf') {
    const pf = readPciDevice(root, s.pf);
    why += pf?.sriov
      ? ` (${s.pf} has no VFs enabled: sriov_numvfs is 0)`
      : ` (${s.pf} is not an SR-IOV physical function)`;
  }
  return new VfioctlError(`${why}${hint}`, EXIT.BAD_INPUT);
}

/**
 * The devices named by `names` (addresses, interface names) and by `selectors`. A selector
 * that matches nothing is bad input (exit 2) unless `allowEmpty` (set --noprobe: a rule for
 * devices that appear later); `hint` is appended to that error.
 */
export function selectDevices(
  root: HostRoot,
  names: readonly string[],
  selectors: readonly Selector[],
  opts: { allowEmpty?: boolean; hint?: string } = {},
): Selection {
  const selected: { by: string; addresses: string[] }[] = [];
  for (const n of names) {
    const a = deviceAddress(root, n);
    selected.push({ by: n, addresses: [a] });
  }
  if (selectors.length) {
    const devices = allDevices(root);
    for (const s of selectors) {
      const found = matches(devices, s);
      if (found.length === 0 && !opts.allowEmpty) throw nothingSelected(root, s, opts.hint ?? '');
      selected.push({ by: selectorOption(s), addresses: found });
    }
  }
  return { addresses: [...new Set(selected.flatMap((x) => x.addresses))], selected };
}

/**
 * The IOMMU group members of `address` that move with it (bridges stay on pcieport), itself first.
 */
export function groupMembers(
  root: HostRoot,
  address: string,
): { group: string; members: string[] } {
  const dev = readPciDevice(root, address);
  if (!dev) throw new VfioctlError(`no PCI device ${address}`, EXIT.BAD_INPUT);
  if (dev.iommuGroup === null)
    throw new VfioctlError(
      `${address} has no IOMMU group, so --group has nothing to move with it ('vfioctl doctor' says why)`,
      EXIT.BAD_INPUT,
    );
  const others = root
    .list(`/sys/kernel/iommu_groups/${dev.iommuGroup}/devices`)
    .filter((a) => isPciAddress(a) && a !== address)
    .sort()
    .filter((a) => (readPciDevice(root, a)?.headerType ?? 0) === 0);
  return { group: dev.iommuGroup, members: [address, ...others] };
}
