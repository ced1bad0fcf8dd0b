// vfioctl command line. Global options (--root, --kernel) work before or after the command.
import * as fs from 'node:fs';
import * as v8 from 'node:v8';
import { Command, CommanderError, Option } from 'commander';
import { EXIT, VfioctlError } from '../util/diag';
import { makeContext, type Context, type GlobalOptions, type Io } from './context';
import { listCommand, showCommand } from './inventory';
import { VERSION } from './version';
import { bindCommand, recoverCommand, unbindCommand } from './bind';
import { doctorCommand } from './doctor';
import { applyCommand } from './apply';
import { setCommand, unsetCommand } from './set';
import { statusCommand } from './status';
import { installCommand } from './install';
import { configCommand } from './config-check';
import { driverctlDevice, hasAddressRule, importDriverctlCommand, listDevicesCommand } from './driverctl';
import { parseAddress } from '../host/address';

// commander hands an action its arguments untyped; each command's handler gives them types.
// biome-ignore lint/suspicious/noExplicitAny: commander's action arguments
type Action = (ctx: Context, ...args: any[]) => number | Promise<number>;

export function buildProgram(io: Io, setExit: (code: number) => void): Command {
  const program = new Command('vfioctl');
  program
    .description('Put PCI devices on the right VFIO driver: variant-aware, ID-table-checked, safe.')
    .version(VERSION, '-V, --version')
    .addOption(new Option('--root <dir>', 'host root holding sys/, proc/, lib/modules/, etc/, run/, dev/').env('VFIOCTL_ROOT'))
    .option('--kernel <release>', 'kernel release whose modules to use (default: <root>/proc/sys/kernel/osrelease)')
    .option('--wait <seconds>', 'how long a writing command waits for another vfioctl to finish (default 30; exit 4 when it is not done by then)')
    // driverctl users write `driverctl --nosave set-override ...`: the same options before the verb.
    .addOption(new Option('--nosave', 'driverctl verbs: do not save').hideHelp())
    .addOption(new Option('--noprobe', 'driverctl verbs: do not apply now').hideHelp())
    .addOption(new Option('-b, --bus <bus>', 'driverctl verbs: the bus (pci only)').hideHelp())
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });

  const wrap =
    (fn: Action) =>
    // biome-ignore lint/suspicious/noExplicitAny: commander's action arguments
    async (...args: any[]) => {
      const cmd = args[args.length - 1] as Command;
      const g = cmd.optsWithGlobals() as GlobalOptions;
      const ctx = makeContext(g, io);
      setExit(await fn(ctx, ...args.slice(0, -1)));
    };

  program
    .command('list')
    .description('list PCI devices with their driver and best VFIO driver (read-only)')
    .option('--json', 'print a JSON array (schema/device.schema.json)')
    .action(wrap((ctx, opts) => listCommand(ctx, opts)));

  program
    .command('show')
    .description('show one device and every matching VFIO driver candidate, best first')
    .argument('<device>', 'PCI address: DOMAIN:BUS:DEV.FN or BUS:DEV.FN')
    .option('--json', 'print one JSON object')
    .action(wrap((ctx, device, opts) => showCommand(ctx, device, opts)));

  program
    .command('bind')
    .description('bind devices to the best VFIO driver (or --driver NAME), safely, with rollback')
    .argument('<device...>', 'PCI addresses')
    .option('--driver <name>', "'vfio' (the best usable VFIO driver) or a driver name", 'vfio')
    .option('--dry-run', 'print the exact steps and every failing check; change nothing')
    .option('--force', 'go ahead despite refusals that can be overridden')
    .option('--group', 'move every member of the IOMMU group (bridges excluded)')
    .option('--owner <user[:group]>', "hand the device's VFIO nodes to this user (an unprivileged VMM)")
    .option('--json', 'print JSON results')
    .action(wrap((ctx, devices, opts) => bindCommand(ctx, devices, opts)));

  program
    .command('unbind')
    .description('give devices back to their host driver')
    .argument('<device...>', 'PCI addresses')
    .option('--dry-run', 'print the exact steps; change nothing')
    .option('--json', 'print JSON results')
    .action(wrap((ctx, devices, opts) => unbindCommand(ctx, devices, opts)));

  program
    .command('recover')
    .description('repair devices left half-done by an interrupted vfioctl')
    .option('--json', 'print JSON')
    .action(wrap((ctx, opts) => recoverCommand(ctx, opts)));

  program
    .command('doctor')
    .description('can this host do VFIO at all, and why not')
    .option('--json', 'print JSON')
    .action(wrap((ctx, opts) => doctorCommand(ctx, opts)));

  const persistOpts = (c: Command) =>
    c
      .option('--nosave', 'apply now, do not change the configuration')
      .option('--noprobe', 'change the configuration, do not apply it now')
      .option('--dry-run', 'print what would be saved and the exact steps; change nothing')
      .option('--json', 'print JSON results');

  persistOpts(
    program
      .command('set')
      .description("configure DEVICE's intent (vfio | none | DRIVER) in /etc/vfioctl/vfioctl.json and apply it")
      .argument('<device>', 'PCI address')
      .argument('<intent>', "'vfio' (best usable VFIO driver, re-resolved per kernel), 'none' (no driver) or a driver name"),
  ).action(wrap((ctx, device, intent, opts) => setCommand(ctx, device, intent, opts)));

  persistOpts(program.command('unset').description("remove DEVICE's rule and return it to its host driver").argument('<device>', 'PCI address')).action(
    wrap((ctx, device, opts) => unsetCommand(ctx, device, opts)),
  );

  program
    .command('apply')
    .description('converge devices to the configuration (all configured devices, or those named)')
    .argument('[device...]', 'PCI addresses (default: every configured device)')
    .option('--dry-run', 'print the exact steps and every failing check; change nothing')
    .option('--boot', 'boot mode (the late unit): never touch boot devices (fstab, crypttab, root=); broad rules need acknowledgeBroadMatch')
    .option('--config <file>', 'use this configuration file (a path on the running system) instead of /etc/vfioctl/vfioctl.json')
    .option('--json', 'print JSON results')
    .action(wrap((ctx, devices, opts) => applyCommand(ctx, devices, opts)));

  program
    .command('status')
    .description('configured devices: intent, what it resolves to now and at the last apply, live driver, boot outcome, drift')
    .option('--config <file>', 'use this configuration file (a path on the running system) instead of /etc/vfioctl/vfioctl.json')
    .option('--json', 'print JSON')
    .action(wrap((ctx, opts) => statusCommand(ctx, opts)));

  program
    .command('install')
    .description('install the boot layers: per-kernel maps, early unit, udev rule, initramfs hooks, late apply unit')
    .option('--dry-run', 'list the files that would be written or removed; change nothing')
    .option('--uninstall', 'remove everything install wrote')
    .option('--refresh', 'only regenerate the boot maps and udev rule (for --kernel REL, or every installed kernel)')
    .option('--exec <path>', 'the vfioctl the units run (default: this one); must be root-owned; not with the Debian package')
    .option('--config <file>', 'make the boot maps from this configuration file (a path on the running system)')
    .option('--json', 'print JSON')
    .action(wrap((ctx, opts) => installCommand(ctx, opts)));

  program
    .command('config')
    .description('check a configuration file: exit 0 when valid, 2 with every problem')
    .argument('<action>', 'check')
    .argument('<file>', 'the configuration file (a path on the running system)')
    .option('--json', 'print {file, valid, problems, rules}')
    .action(wrap((ctx, action, file, opts) => configCommand(ctx, action, file, opts)));

  program
    .command('import-driverctl')
    .description('turn /etc/driverctl.d/* into vfioctl rules (driver names kept literally)')
    .option('--vfio', "import driverctl's vfio-pci as intent 'vfio' (the best VFIO driver, variants included)")
    .option('--dry-run', 'print what would be imported; change nothing')
    .option('--json', 'print JSON')
    .action(wrap((ctx, opts) => importDriverctlCommand(ctx, opts)));

  // driverctl's verbs, with driverctl's meaning; its options may also come before the verb.
  const dc = <T>(ctx: Context, opts: T): T => {
    if (ctx.flags.bus !== undefined && ctx.flags.bus !== 'pci') throw new VfioctlError(`vfioctl handles the pci bus only, not '${ctx.flags.bus}'`, EXIT.BAD_INPUT);
    return opts;
  };
  persistOpts(program.command('set-override').description('driverctl: same as set DEVICE DRIVER (the literal driver)').argument('<device>').argument('<driver>')).action(
    wrap((ctx, device, driver, opts) => setCommand(ctx, driverctlDevice(device), driver, dc(ctx, opts))),
  );
  persistOpts(program.command('unset-override').description('driverctl: same as unset DEVICE').argument('<device>')).action(
    wrap((ctx, device, opts) => unsetCommand(ctx, driverctlDevice(device), dc(ctx, opts))),
  );
  program
    .command('load-override')
    .description("driverctl: apply DEVICE's saved configuration (exit 1 when it has none)")
    .argument('<device>')
    .action(
      wrap((ctx, device) => {
        const address = parseAddress(driverctlDevice(device));
        dc(ctx, {});
        return hasAddressRule(ctx, address) ? applyCommand(ctx, [address], {}) : EXIT.FAILED;
      }),
    );
  for (const [name, only] of [['list-devices', false], ['list-overrides', true]] as const) {
    program
      .command(name)
      .description(`driverctl: ${only ? 'devices with driver_override set' : 'every PCI device'} and their driver${only ? '' : ' ([*]: driver_override set)'}`)
      .argument('[type]', 'storage, network, display, multimedia, memory, bridge, communication, system, input, docking, processor, serial')
      .action(
        wrap((ctx, type) => {
          dc(ctx, {});
          return listDevicesCommand(ctx, type, only);
        }),
      );
  }

  for (const c of program.commands) c.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  return program;
}

/** Runs the CLI with argv (without node and script) and returns the exit code. */
export async function run(argv: string[], io: Io): Promise<number> {
  let code: number = EXIT.OK;
  const program = buildProgram(io, (c) => (code = c));
  try {
    await program.parseAsync(argv, { from: 'user' });
    return code;
  } catch (e) {
    if (e instanceof CommanderError) {
      // --help / --version exit 0; any usage error is bad input.
      return e.exitCode === 0 ? EXIT.OK : EXIT.BAD_INPUT;
    }
    if (e instanceof VfioctlError) {
      io.err(`vfioctl: ${e.message}\n`);
      return e.exitCode;
    }
    io.err(`vfioctl: internal error: ${(e as Error).stack ?? String(e)}\n`);
    return EXIT.FAILED;
  }
}

/**
 * Writes all of `s` to a descriptor, as process.stdout would on Linux (synchronously, for files,
 * pipes and terminals alike) without setting up a stream: Node builds process.stdout on first
 * use (a pipe brings in net and stream), a cost every short call would pay. A reader that went
 * away (`vfioctl show X | head -1`) is not an error of ours: stop quietly. A non-blocking
 * descriptor inherited from the caller may be full for a moment: wait and write the rest.
 */
function writeAll(fd: number, s: string): void {
  const b = Buffer.from(s);
  for (let off = 0; off < b.length; ) {
    try {
      off += fs.writeSync(fd, b, off, b.length - off);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EPIPE') process.exit(process.exitCode ?? 0);
      if (code !== 'EAGAIN') throw e;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 5);
    }
  }
}

if (require.main === module) {
  // V8 doubles the young generation after each scavenge that keeps much alive (up to 16 MiB a
  // semi-space), and reading thousands of devices keeps much alive: kept at its first size, the
  // peak RSS of `list`/`status`/`apply` over 4,115 functions falls by ~13 MiB, at no cost in
  // time (measured: slightly faster). Read by the GC whenever it sizes the space, so set here.
  v8.setFlagsFromString('--semi-space-growth-factor=1');
  const io: Io = {
    out: (s) => writeAll(1, s),
    err: (s) => writeAll(2, s),
    env: process.env,
  };
  void run(process.argv.slice(2), io).then((code) => {
    process.exitCode = code;
  });
}
