// PCI addresses as the kernel names them: `%04x:%02x:%02x.%d` (domain may be wider, e.g. VMD's
// 10000).
import { EXIT, VfioctlError } from '../util/diag';

const FULL = /^([0-9a-f]{4,8}):([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$/;
const SHORT = /^([0-9a-f]{2}):([0-1][0-9a-f])\.([0-7])$/;

/**
 * A PF's routing ID (bus << 8 | devfn) and domain, parsed once for all its VFs; undefined for a
 * string that is not a full address.
 */
export function routingIdOf(pf: string): { domain: string; rid: number } | undefined {
  const a = FULL.exec(pf);
  if (!a) return undefined;
  return {
    domain: a[1]!,
    rid: (Number.parseInt(a[2]!, 16) << 8) | (Number.parseInt(a[3]!, 16) << 3) | Number(a[4]),
  };
}

/**
 * VF `n`'s address: pci_iov_add_virtfn (drivers/pci/iov.c) gives it its PF's routing ID plus
 * `offset + n * stride` (sriov_offset, sriov_stride; pci_iov_virtfn_bus/devfn), on the PF's bus or
 * a later one. undefined for a PF address that is not one, or past bus ff: sriov_enable refuses
 * VFs there. `pf` may be the PF's parsed routing ID (routingIdOf), for a PF with many VFs.
 */
export function vfRoutingAddress(
  pf: string | { readonly domain: string; readonly rid: number },
  offset: number,
  stride: number,
  n: number,
): string | undefined {
  const base = typeof pf === 'string' ? routingIdOf(pf) : pf;
  if (base === undefined) return undefined;
  const rid = base.rid + offset + n * stride;
  if (!Number.isInteger(rid) || rid < 0 || rid > 0xffff) return undefined;
  const h = (x: number) => (x < 16 ? '0' : '') + x.toString(16);
  return `${base.domain}:${h(rid >> 8)}:${h((rid >> 3) & 0x1f)}.${rid & 7}`;
}

/** Is this a syntactically valid full address (a sysfs device directory name)? */
export function isPciAddress(s: string): boolean {
  return FULL.test(s);
}

/**
 * Normalise a user-given DEVICE: a full address or a short `bus:dev.fn` (domain 0000).
 * Throws a bad-input error (exit 2) naming the argument when it is neither.
 */
export function parseAddress(input: string): string {
  // No trimming: an address with a newline or space in it is bad input, not something to guess at.
  const s = input.toLowerCase();
  if (FULL.test(s)) return s;
  const m = SHORT.exec(s);
  if (m) return `0000:${s}`;
  throw new VfioctlError(
    `'${printable(input)}' is not a PCI address: use DOMAIN:BUS:DEV.FN (e.g. 0000:03:00.1) or BUS:DEV.FN`,
    EXIT.BAD_INPUT,
  );
}

/** Show control characters in user input instead of letting them reach the terminal. */
export function printable(s: string): string {
  return JSON.stringify(s).slice(1, -1);
}
