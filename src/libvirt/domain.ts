// Pure: a libvirt domain XML document (what libvirt hands a qemu hook on standard input) -> the
// PCI host devices vfioctl prepares for it, and the domain's vfioctl opt-ins. Parsed by saxes, a
// strict, namespace-aware XML 1.0 parser (never regular expressions): a document that is not
// well-formed is bad input with the parser's line and column. saxes expands no external entities
// and reads no DTD, so a domain document cannot make vfioctl read files.
import type { SaxesParser as Parser, SaxesTagNS } from 'saxes';
import { EXIT, VfioctlError } from '../util/diag';

/**
 * The namespace of vfioctl's element in a domain's `<metadata>` (libvirt keeps one element per
 * namespace).
 */
export const VFIOCTL_XMLNS = 'urn:vfioctl:libvirt:1';
export const VFIOCTL_ELEMENT = 'passthrough';

export interface DomainHostdev {
  /** Canonical sysfs address (`0000:03:00.1`). */
  readonly address: string;
  /** `<driver model='NAME'/>`: a named VFIO driver (libvirt 10's variant selection), else null. */
  readonly model: string | null;
  /** managed='yes': libvirt binds it itself; vfioctl leaves it alone. */
  readonly managed: boolean;
  /** Where the `<hostdev>` element ends its start tag (for messages). */
  readonly line: number;
}

export interface DomainOptions {
  /** Move the whole IOMMU group of each device (a GPU with its audio function). */
  readonly group: boolean;
  /** Go ahead despite forceable refusals (as `bind --force`). */
  readonly force: boolean;
}

export interface Domain {
  readonly name: string | null;
  readonly uuid: string | null;
  /** Every `<hostdev mode='subsystem' type='pci'>` directly under `<devices>`, managed or not. */
  readonly hostdevs: readonly DomainHostdev[];
  readonly options: DomainOptions;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function isUuid(s: string): boolean {
  return UUID.test(s);
}

/**
 * libvirt reads PCI address fields with base 0 (virXMLPropUInt): `0x` hex, a leading `0` octal,
 * else decimal; it writes them as hex.
 */
function addressField(raw: string | undefined, max: number): number | null {
  if (raw === undefined) return 0; // libvirt: a missing field is 0
  const s = raw.trim();
  let n: number;
  if (/^0[xX][0-9a-fA-F]+$/.test(s)) n = Number.parseInt(s.slice(2), 16);
  else if (/^0[0-7]*$/.test(s)) n = Number.parseInt(s, 8);
  else if (/^[1-9][0-9]*$/.test(s)) n = Number.parseInt(s, 10);
  else return null;
  return n <= max ? n : null;
}

const yesNo = (v: string): boolean | null => (v === 'yes' ? true : v === 'no' ? false : null);

interface Open {
  readonly tag: SaxesTagNS;
  readonly path: string;
  text: string;
}

/**
 * Throws VfioctlError (exit 2) with `LINE:COLUMN` for a document that is not well-formed or not a
 * usable domain.
 */
export function parseDomain(xml: string, source = 'domain XML'): Domain {
  if (xml.trim() === '')
    throw new VfioctlError(
      `${source}: empty document: libvirt passes the domain XML on standard input`,
      EXIT.BAD_INPUT,
    );
  // Loaded here, not at start-up: only the hook's two acting operations parse XML (saxes builds
  // its character-class tables when loaded; the bundle keeps a module's body until first require).
  const { SaxesParser } = require('saxes') as { SaxesParser: typeof Parser };
  const parser = new SaxesParser({ xmlns: true, position: true });
  const stack: Open[] = [];
  let name: string | null = null;
  let uuid: string | null = null;
  const hostdevs: DomainHostdev[] = [];
  const options = { group: false, force: false };
  let seenOptions = false;
  let hostdev: {
    managed: boolean;
    model: string | null;
    address: string | null;
    line: number;
    pci: boolean;
  } | null = null;
  const bad = (what: string): never => {
    throw new VfioctlError(`${source}:${parser.line}:${parser.column}: ${what}`, EXIT.BAD_INPUT);
  };
  const attr = (tag: SaxesTagNS, local: string): string | undefined => {
    // Unprefixed attributes have no namespace: only those are libvirt's.
    const a = Object.values(tag.attributes).find((x) => x.local === local && x.uri === '');
    return a?.value;
  };
  parser.on('opentag', (tag) => {
    const parent = stack[stack.length - 1];
    // libvirt's own elements are in no namespace; anything else (metadata, qemu:commandline) is not
    // ours to read.
    const path =
      tag.uri === '' && (parent === undefined || parent.path !== '')
        ? `${parent?.path ?? ''}/${tag.local}`
        : '';
    stack.push({ tag, path, text: '' });
    if (parent === undefined) {
      if (path !== '/domain') bad(`the document element is <${tag.name}>, not a libvirt <domain>`);
    }
    if (tag.uri === VFIOCTL_XMLNS) {
      if (parent?.path !== '/domain/metadata')
        bad(`<${tag.name}> (${VFIOCTL_XMLNS}) belongs directly in the domain's <metadata>`);
      if (tag.local !== VFIOCTL_ELEMENT)
        bad(
          `<${tag.name}>: vfioctl's metadata element is <${VFIOCTL_ELEMENT}> (attributes group='yes|no', force='yes|no')`,
        );
      if (seenOptions)
        bad(`a second <${tag.name}>: libvirt keeps one metadata element per namespace`);
      seenOptions = true;
      for (const a of Object.values(tag.attributes)) {
        if (a.prefix === 'xmlns' || a.name === 'xmlns') continue;
        if (a.uri !== '' || (a.local !== 'group' && a.local !== 'force'))
          bad(`<${tag.name}>: unknown attribute '${a.name}' (known: group, force)`);
        const v = yesNo(a.value);
        if (v === null) bad(`<${tag.name} ${a.local}='${a.value}'>: give 'yes' or 'no'`);
        options[a.local as 'group' | 'force'] = v as boolean;
      }
    }
    if (path === '/domain/devices/hostdev') {
      const managed = attr(tag, 'managed') ?? 'no'; // libvirt's default is 'no'
      const m = yesNo(managed);
      if (m === null) bad(`<hostdev managed='${managed}'>: libvirt takes 'yes' or 'no'`);
      hostdev = {
        managed: m as boolean,
        model: null,
        address: null,
        line: parser.line,
        pci: attr(tag, 'mode') === 'subsystem' && attr(tag, 'type') === 'pci',
      };
    }
    if (hostdev?.pci && path === '/domain/devices/hostdev/driver') {
      const model = attr(tag, 'model');
      if (model !== undefined) hostdev.model = model;
    }
    if (hostdev?.pci && path === '/domain/devices/hostdev/source/address') {
      const f = [attr(tag, 'domain'), attr(tag, 'bus'), attr(tag, 'slot'), attr(tag, 'function')];
      const [d, b, s, fn] = [
        addressField(f[0], 0xffffffff),
        addressField(f[1], 0xff),
        addressField(f[2], 0x1f),
        addressField(f[3], 7),
      ];
      if (d === null || b === null || s === null || fn === null) {
        bad(
          `<hostdev> (line ${hostdev.line}): source <address domain='${f[0] ?? ''}' bus='${f[1] ?? ''}' slot='${f[2] ?? ''}' function='${f[3] ?? ''}'/> is not a PCI address (domain <= 0xffffffff, bus <= 0xff, slot <= 0x1f, function <= 7)`,
        );
      }
      const hex = (n: number, w: number) => n.toString(16).padStart(w, '0');
      hostdev.address = `${hex(d!, 4)}:${hex(b!, 2)}:${hex(s!, 2)}.${fn}`;
    }
  });
  parser.on('text', (t) => {
    const top = stack[stack.length - 1];
    if (top) top.text += t;
  });
  parser.on('closetag', () => {
    const top = stack.pop()!;
    if (top.path === '/domain/name') name = top.text.trim();
    if (top.path === '/domain/uuid') uuid = top.text.trim().toLowerCase();
    if (top.path === '/domain/devices/hostdev' && hostdev) {
      const h = hostdev;
      hostdev = null;
      if (!h.pci) return;
      if (h.address === null)
        bad(
          `<hostdev mode='subsystem' type='pci'> (line ${h.line}) has no <source><address .../></source>`,
        );
      if (h.model !== null && !/^[A-Za-z0-9_.+-]{1,64}$/.test(h.model))
        bad(`<hostdev> (line ${h.line}): <driver model='${h.model}'/> is not a driver name`);
      hostdevs.push({ address: h.address!, model: h.model, managed: h.managed, line: h.line });
    }
  });
  try {
    parser.write(xml).close();
  } catch (e) {
    if (e instanceof VfioctlError) throw e;
    // saxes reports `LINE:COLUMN: what` for a document that is not well-formed.
    throw new VfioctlError(`${source}:${(e as Error).message}`, EXIT.BAD_INPUT);
  }
  if (uuid !== null && !isUuid(uuid))
    throw new VfioctlError(`${source}: <uuid>${uuid}</uuid> is not a UUID`, EXIT.BAD_INPUT);
  return { name, uuid, hostdevs, options };
}
