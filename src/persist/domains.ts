// What the libvirt hook bound for each domain at `prepare begin`, so `release end` gives back
// exactly those devices. Kept under /run: after a reboot no domain runs, and libvirt (whose own
// runtime state is under /run/libvirt too) calls no release for the domains the reboot ended.
// One file per domain UUID (a domain's name may hold any character but '/'; its UUID is canonical).
import * as fs from 'node:fs';
import type { HostRoot } from '../host/root';
import { isUuid } from '../libvirt/domain';
import { atomicWrite } from './records';
import { field, Invalid, isAddress, isString, jsonObject } from './validate';

export const DOMAIN_DIR = '/run/vfioctl/libvirt';

export interface DomainRecord {
  readonly uuid: string;
  readonly name: string;
  /** Devices this hook moved to VFIO for the domain (the whole IOMMU group with group='yes'). */
  readonly devices: readonly string[];
  readonly at: string;
}

const fileOf = (uuid: string) => `${DOMAIN_DIR}/${uuid}.json`;

function parseDomainRecord(o: Record<string, unknown>): DomainRecord {
  const devices = o.devices;
  if (!Array.isArray(devices) || !devices.every(isAddress))
    throw new Invalid("field 'devices' is not a list of PCI addresses");
  return {
    uuid: field(o, 'uuid', (v): v is string => isString(v) && isUuid(v), 'a UUID'),
    name: field(o, 'name', isString, 'a name'),
    devices,
    at: field(o, 'at', isString, 'a time'),
  };
}

/**
 * The domain's record; null when there is none. A file that does not check out throws Invalid with
 * its name.
 */
export function readDomainRecord(root: HostRoot, uuid: string): DomainRecord | null {
  const rel = fileOf(uuid);
  const text = root.readFile(rel);
  if (text === undefined) {
    if (root.hasEntry(rel)) throw new Invalid(`${root.path(rel)}: cannot be read`);
    return null;
  }
  try {
    const r = parseDomainRecord(jsonObject(text));
    if (r.uuid !== uuid)
      throw new Invalid(`names domain ${r.uuid}, not ${uuid} as its file name says`);
    return r;
  } catch (e) {
    if (e instanceof Invalid) throw new Invalid(`${root.path(rel)}: ${e.message}`);
    throw e;
  }
}

/** Writes (atomically) or, with no devices left, removes the domain's record. */
export function writeDomainRecord(root: HostRoot, r: DomainRecord): void {
  if (r.devices.length === 0) {
    fs.rmSync(root.confine(fileOf(r.uuid)), { force: true });
    return;
  }
  atomicWrite(root.confine(fileOf(r.uuid)), JSON.stringify(r) + '\n');
}
