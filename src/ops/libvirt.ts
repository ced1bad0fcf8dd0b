// libvirt's qemu hook (`vfioctl libvirt-hook`, run from /etc/libvirt/hooks/qemu.d/) and the
// <hostdev> elements for devices vfioctl keeps on VFIO (`vfioctl libvirt-xml`). libvirt runs its
// qemu hooks as `GUEST OPERATION SUB-OPERATION EXTRA` with the domain XML on standard input; a
// non-zero exit at `prepare begin` aborts the start. The hook never calls back into libvirt
// (libvirt's hook documentation: that deadlocks) and prints nothing on standard output (for
// `migrate` and `restore`, libvirt takes a hook's standard output as the new domain XML).
import { execute, type DeviceResult } from '../apply/executor';
import { loadConfig } from '../config/load';
import { desiredState } from '../config/desired';
import { intentName } from '../config/intent';
import { parseDomain, type Domain, type DomainHostdev } from '../libvirt/domain';
import { readDomainRecord, writeDomainRecord } from '../persist/domains';
import { Invalid } from '../persist/validate';
import { readSnapshot } from '../read/snapshot';
import { isOnVfio } from '../plan/checks';
import { planBind, planUnbind } from '../plan/planner';
import type { DevicePlan, Plan } from '../plan/types';
import { resetWarning } from '../report/device-view';
import { resolve } from '../match/resolve';
import { EXIT, VfioctlError } from '../util/diag';
import { exitCodeOf, type Host } from './host';

/** The operations libvirt's qemu driver calls its hooks with (libvirt's hooks documentation). */
export type QemuHookOperation =
  | 'prepare'
  | 'start'
  | 'started'
  | 'stopped'
  | 'release'
  | 'migrate'
  | 'restore'
  | 'reconnect'
  | 'attach';

export interface LibvirtHookRequest {
  readonly guest: string;
  readonly operation: string;
  readonly subOperation: string;
  /** The domain XML (standard input); read only for the operations that act. */
  readonly xml: () => string;
}

export interface LibvirtHookReport {
  /** `ignored`: an operation vfioctl does not act on, or a domain with nothing for it. */
  readonly action: 'ignored' | 'prepare' | 'release';
  readonly domain: string | null;
  readonly results: readonly DeviceResult[];
  /** One line per problem (libvirt logs the hook's standard error). */
  readonly problems: readonly string[];
  readonly warnings: readonly string[];
  readonly exitCode: number;
}

const ignored = (domain: string | null, warnings: string[] = []): LibvirtHookReport => ({
  action: 'ignored',
  domain,
  results: [],
  problems: [],
  warnings,
  exitCode: EXIT.OK,
});

function domainOf(r: LibvirtHookRequest): Domain {
  const d = parseDomain(r.xml());
  if (d.uuid === null)
    throw new VfioctlError(
      `domain XML of guest '${r.guest}' has no <uuid>: libvirt always passes one; is this the domain XML?`,
      EXIT.BAD_INPUT,
    );
  return d;
}

/**
 * What libvirt's qemu hook asks of vfioctl: `prepare begin` binds, `release end` gives back; the
 * rest is a no-op.
 */
export function libvirtHook(host: Host, r: LibvirtHookRequest): Promise<LibvirtHookReport> {
  if (r.operation === 'prepare' && r.subOperation === 'begin')
    return prepare(host, r.guest, domainOf(r));
  if (r.operation === 'release' && r.subOperation === 'end')
    return release(host, r.guest, domainOf(r));
  return Promise.resolve(ignored(null));
}

/** Flattened for libvirt's log: one line per problem. */
const oneLine = (s: string) => s.replace(/\s*\n\s*/g, ' | ');

function problemLines(results: readonly DeviceResult[]): string[] {
  const out: string[] = [];
  for (const r of results) {
    if (r.status === 'refused' || r.status === 'invalid') {
      // A device refused only because another one was is not a problem of its own.
      for (const f of r.refusals)
        if (f.check !== 'domain') out.push(oneLine(`${r.address}: ${f.check}: ${f.message}`));
    } else if (
      r.status === 'failed' &&
      !/^(rolled back because|not attempted:)/.test(r.error ?? '')
    )
      out.push(oneLine(`${r.address}: ${r.error}`));
  }
  return out;
}

/**
 * The domain's devices move together: one refused device refuses them all (nothing is done), and
 * as one executor unit a failure puts back the ones already moved, hooks told (post-unbind).
 */
function allOrNone(plan: Plan, uuid: string): Plan {
  const bad = plan.devices.filter((d) => d.status === 'refused' || d.status === 'invalid');
  if (bad.length === 0)
    return { ...plan, devices: plan.devices.map((d) => ({ ...d, unit: `domain ${uuid}` })) };
  const names = bad.map((d) => d.address).join(', ');
  return {
    ...plan,
    devices: plan.devices.map(
      (d): DevicePlan =>
        d.status !== 'planned'
          ? d
          : {
              ...d,
              status: 'refused',
              steps: [],
              refusals: [
                {
                  check: 'domain',
                  message: `the domain's devices move together and ${names} cannot`,
                  forceable: false,
                },
              ],
            },
    ),
  };
}

function unmanaged(d: Domain): DomainHostdev[] {
  const byAddress = new Map<string, DomainHostdev>();
  for (const h of d.hostdevs) {
    if (h.managed) continue; // libvirt binds and reattaches managed='yes' devices itself
    const prev = byAddress.get(h.address);
    if (prev && prev.model !== h.model)
      throw new VfioctlError(
        `domain XML: ${h.address} is named twice (lines ${prev.line} and ${h.line}) with different <driver model=.../>`,
        EXIT.BAD_INPUT,
      );
    byAddress.set(h.address, h);
  }
  return [...byAddress.values()];
}

async function prepare(host: Host, guest: string, dom: Domain): Promise<LibvirtHookReport> {
  const uuid = dom.uuid!;
  const name = dom.name ?? guest;
  const mine = unmanaged(dom);
  if (mine.length === 0) return ignored(name);
  return host.session(async (s) => {
    const snap = host.readForWrite(
      s,
      mine.map((h) => h.address),
    );
    const warnings = [...snap.warnings];
    // Already on a VFIO driver (a vfioctl rule, the admin): theirs, left as it is and not recorded.
    const todo = mine.filter((h) => {
      const dev = snap.devices.get(h.address);
      if (h.model === null && dev && isOnVfio(dev, snap)) {
        warnings.push(
          `${h.address}: already on ${dev.driver ?? 'a VFIO driver'}; left as it is (this hook does not give it back)`,
        );
        return false;
      }
      return true;
    });
    for (const h of mine) {
      const dev = snap.devices.get(h.address);
      const w = dev ? resetWarning(dev, host.root.kernelRelease()) : null;
      if (w) warnings.push(`${h.address}: ${w}`);
    }
    if (todo.length === 0)
      return {
        action: 'prepare',
        domain: name,
        results: [],
        problems: [],
        warnings,
        exitCode: EXIT.OK,
      };
    const perDevice = new Map(
      todo
        .filter((h) => h.model !== null)
        .map((h) => [h.address, { kind: 'driver', name: h.model! } as const]),
    );
    const plan = allOrNone(
      planBind(snap, {
        kind: 'bind',
        addresses: todo.map((h) => h.address),
        driver: 'vfio',
        force: dom.options.force,
        group: dom.options.group,
        perDevice,
      }),
      uuid,
    );
    const planned = plan.devices.filter((d) => d.status === 'planned').map((d) => d.address);
    let before: readonly string[] = [];
    try {
      before = readDomainRecord(host.root, uuid)?.devices ?? [];
    } catch (e) {
      if (!(e instanceof Invalid)) throw e;
      warnings.push(`${e.message}; replaced`);
    }
    // Recorded before the first step: a vfioctl killed mid-way leaves devices that the next
    // `release end` still gives back (and the journal rolls back the one in flight).
    if (planned.length)
      writeDomainRecord(host.root, {
        uuid,
        name,
        devices: [...new Set([...before, ...planned])],
        at: new Date().toISOString(),
      });
    const results = await execute(plan, host.execOptions(s, plan));
    const bound = results.filter((x) => x.status === 'ok').map((x) => x.address);
    if (planned.length)
      writeDomainRecord(host.root, {
        uuid,
        name,
        devices: [...new Set([...before, ...bound])],
        at: new Date().toISOString(),
      });
    const code = exitCodeOf(results.map((x) => x.status));
    const stopped = s.interrupted();
    const problems = problemLines(results);
    if (stopped) problems.push(`interrupted by ${stopped}`);
    const optIn =
      code === EXIT.REFUSED
        ? ", or opt in through the domain's <metadata> (vfioctl:passthrough force='yes' / group='yes') where the refusal allows it"
        : '';
    if (code !== EXIT.OK || stopped)
      problems.push(
        `nothing was bound (${planned.length ? planned.join(', ') : todo.map((h) => h.address).join(', ')} left where they were): fix the above${optIn}`,
      );
    return {
      action: 'prepare',
      domain: name,
      results,
      problems,
      warnings: [
        ...warnings,
        ...results.flatMap((x) => x.warnings.map((w) => `${x.address}: ${w}`)),
      ],
      exitCode: stopped && code === EXIT.OK ? EXIT.FAILED : code,
    };
  });
}

async function release(host: Host, guest: string, dom: Domain): Promise<LibvirtHookReport> {
  const uuid = dom.uuid!;
  const name = dom.name ?? guest;
  let rec: ReturnType<typeof readDomainRecord>;
  try {
    rec = readDomainRecord(host.root, uuid);
  } catch (e) {
    if (!(e instanceof Invalid)) throw e;
    throw new VfioctlError(
      `${e.message}: nothing given back; 'vfioctl unbind' the domain's devices by hand, then delete the file`,
      EXIT.FAILED,
    );
  }
  if (rec === null || rec.devices.length === 0) return ignored(name);
  const record = rec;
  // A rule added while the guest ran keeps its device: decided by the configuration, not by us.
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(host.root, host.trust);
  } catch (e) {
    if (!(e instanceof VfioctlError)) throw e;
    throw new VfioctlError(
      `${e.message}; nothing given back (${record.devices.join(', ')} stay on VFIO): fix the configuration, then 'vfioctl unbind' them`,
      e.exitCode,
    );
  }
  return host.session(async (s) => {
    const snap = host.readForWrite(s, record.devices);
    const desired = desiredState(config, snap.devices);
    const warnings = [...snap.warnings];
    const give: string[] = [];
    for (const a of record.devices) {
      const rule = desired.desires.get(a);
      // Intent host asks for exactly what release does (its host driver); any other rule owns the
      // device now.
      if (rule && rule.intent !== null && rule.intent.kind !== 'host')
        warnings.push(
          `${a}: kept: rules[${rule.rule.index}] (line ${rule.rule.line}) of the configuration wants it on '${intentName(rule.intent)}'`,
        );
      else give.push(a);
    }
    const plan = planUnbind(snap, { kind: 'unbind', addresses: give });
    const results = give.length ? await execute(plan, host.execOptions(s, plan)) : [];
    // Still ours: what could not be given back (the next release tries again). Gone: devices
    // removed from the host.
    const left = results
      .filter((x) => x.status === 'failed' || x.status === 'refused')
      .map((x) => x.address);
    writeDomainRecord(host.root, { ...record, devices: left, at: new Date().toISOString() });
    const problems = problemLines(results.filter((x) => x.status !== 'invalid'));
    for (const x of results)
      if (x.status === 'invalid') warnings.push(`${x.address}: no longer on this host; forgotten`);
    if (left.length)
      problems.push(
        `${left.join(', ')} not given back: fix the above, then 'vfioctl unbind ${left.join(' ')}'`,
      );
    const code = exitCodeOf(results.filter((x) => x.status !== 'invalid').map((x) => x.status));
    return {
      action: 'release',
      domain: name,
      results,
      problems,
      warnings: [
        ...warnings,
        ...results.flatMap((x) => x.warnings.map((w) => `${x.address}: ${w}`)),
      ],
      exitCode: s.interrupted() && code === EXIT.OK ? EXIT.FAILED : code,
    };
  });
}

export interface HostdevXml {
  readonly address: string;
  /** The `<driver model=.../>` given (a variant), or null. */
  readonly model: string | null;
  readonly xml: string;
}

/**
 * `<hostdev mode='subsystem' type='pci' managed='no'>` for devices: libvirt then uses them as they
 * are (a vfioctl rule keeps them on VFIO) and never rebinds them. With `driverModel`, a device
 * whose VFIO driver (its current one, else the best usable) is a variant gets `<driver
 * model=.../>`.
 */
export function libvirtXml(
  host: Host,
  addresses: readonly string[],
  opts: { driverModel?: boolean } = {},
): { devices: HostdevXml[]; warnings: string[] } {
  const snap = readSnapshot(host.root, { kernel: host.kernel, only: addresses, shallow: true });
  const warnings = [...snap.warnings];
  const devices = addresses.map((a): HostdevXml => {
    const d = snap.devices.get(a);
    if (!d)
      throw new VfioctlError(
        `no PCI device ${a} (not in ${host.root.path('/sys/bus/pci/devices')}; see 'vfioctl list')`,
        EXIT.BAD_INPUT,
      );
    const driver = isOnVfio(d, snap)
      ? d.driver
      : (resolve(d, snap, { explain: false }).vfio?.driver ?? null);
    if (!isOnVfio(d, snap))
      warnings.push(
        `${a} is not on a VFIO driver (now: ${d.driver ?? 'none'}): with managed='no' libvirt expects it there; 'vfioctl set ${a} vfio' keeps it there`,
      );
    const w = resetWarning(d, host.root.kernelRelease());
    if (w) warnings.push(`${a}: ${w}`);
    const model = opts.driverModel && driver !== null && driver !== 'vfio-pci' ? driver : null;
    const [dom, bus, rest] = a.split(':') as [string, string, string];
    const [slot, fn] = rest.split('.') as [string, string];
    const xml = [
      `<hostdev mode='subsystem' type='pci' managed='no'>`,
      `  <source>`,
      `    <address domain='0x${dom}' bus='0x${bus}' slot='0x${slot}' function='0x${fn}'/>`,
      `  </source>`,
      ...(model ? [`  <driver model='${model}'/>`] : []),
      `</hostdev>`,
    ].join('\n');
    return { address: a, model, xml };
  });
  return { devices, warnings };
}
