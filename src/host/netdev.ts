// A network interface name as a DEVICE argument: its PCI function, from the interface's `device`
// link in sysfs (/sys/class/net/IFNAME/device -> the parent device's directory).
import type { HostRoot } from './root';
import { isPciAddress, printable } from './address';
import { EXIT, VfioctlError } from '../util/diag';

/**
 * As the kernel's dev_valid_name() (net/core/dev.c): 1 to 15 bytes (IFNAMSIZ 16 with its NUL),
 * not `.` or `..`, no `/`, `:` or whitespace. So no interface name is ever a PCI address.
 */
export function isInterfaceName(s: string): boolean {
  return s.length > 0 && Buffer.byteLength(s) < 16 && s !== '.' && s !== '..' && !/[/:\s]/.test(s);
}

/** The PCI address behind interface `name`; bad input (exit 2) naming why when there is none. */
export function interfaceAddress(root: HostRoot, name: string): string {
  if (!isInterfaceName(name)) {
    throw new VfioctlError(
      `'${printable(name)}' is neither a PCI address (DOMAIN:BUS:DEV.FN or BUS:DEV.FN) nor a network interface name (1-15 characters, no '/', ':' or spaces)`,
      EXIT.BAD_INPUT,
    );
  }
  const dir = `/sys/class/net/${name}`;
  if (!root.hasEntry(dir))
    throw new VfioctlError(
      `'${name}' is not a PCI address, and there is no network interface of that name ('ip link' lists them)`,
      EXIT.BAD_INPUT,
    );
  // Virtual interfaces (lo, bridges, veth) have no `device` link; a USB NIC's points at a USB
  // interface.
  const target = root.realpath(`${dir}/device`);
  const address = target?.slice(target.lastIndexOf('/') + 1);
  if (
    address === undefined ||
    !isPciAddress(address) ||
    !root.exists(`/sys/bus/pci/devices/${address}`)
  ) {
    throw new VfioctlError(
      `network interface ${name} is not a PCI function (${address === undefined ? 'a virtual interface: no device link' : `its device is ${printable(address)}`}); name its PCI device instead`,
      EXIT.BAD_INPUT,
    );
  }
  return address;
}
