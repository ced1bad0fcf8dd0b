// `vfioctl libvirt-hook GUEST OPERATION SUB-OPERATION [EXTRA...]` (libvirt's qemu hook, from
// /etc/libvirt/hooks/qemu.d/50-vfioctl) and `vfioctl libvirt-xml DEVICE...`. The hook writes
// only to standard error: libvirt logs it, and takes a hook's standard output as domain XML.
import { uniqueAddresses } from '../ops/host';
import { libvirtHook, libvirtXml } from '../ops/libvirt';
import { EXIT, VfioctlError } from '../util/diag';
import { type Context, trust } from './context';

/** libvirt's domain XML is a few KiB; anything near this is not one. */
const MAX_XML = 16 * 1024 * 1024;

export async function libvirtHookCommand(
  ctx: Context,
  guest: string,
  operation: string,
  subOperation: string,
): Promise<number> {
  const say = (s: string) => ctx.io.err(`vfioctl libvirt-hook: ${s}\n`);
  const r = await libvirtHook(ctx.host, {
    guest,
    operation,
    subOperation,
    xml: () => {
      trust(ctx);
      const text = ctx.io.stdin?.() ?? '';
      if (text.length > MAX_XML)
        throw new VfioctlError(
          `standard input holds ${text.length} characters: not a libvirt domain XML`,
          EXIT.BAD_INPUT,
        );
      return text;
    },
  });
  for (const w of r.warnings) say(`guest '${r.domain ?? guest}': warning: ${w}`);
  for (const p of r.problems) say(`guest '${r.domain ?? guest}': ${p}`);
  return r.exitCode;
}

export function libvirtXmlCommand(
  ctx: Context,
  devices: string[],
  opts: { driverModel?: boolean; json?: boolean },
): number {
  const r = libvirtXml(ctx.host, uniqueAddresses(devices), opts);
  for (const w of r.warnings) ctx.io.err(`vfioctl: warning: ${w}\n`);
  if (opts.json) ctx.io.out(JSON.stringify({ devices: r.devices }, null, 2) + '\n');
  else ctx.io.out(r.devices.map((d) => d.xml + '\n').join(''));
  return EXIT.OK;
}
