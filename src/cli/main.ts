// vfioctl command line. Global options (--root, --host-root, --kernel) work before or after the
// command.
import * as fs from 'node:fs';
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
import { agentCommand } from './agent';
import { importDriverctlCommand, listDevicesCommand } from './driverctl';
import { driverctlDevice, hasAddressRule } from '../ops/driverctl';
import { parseAddress } from '../host/address';
import { libvirtHookCommand, libvirtXmlCommand } from './libvirt';

// commander hands an action its arguments untyped; each command's handler gives them types.
// biome-ignore lint/suspicious/noExplicitAny: commander's action arguments
type Action = (ctx: Context, ...args: any[]) => number | Promise<number>;

/** Every command buildProgram defines (test/cli/command-subset.test.ts holds the two together). */
export const COMMAND_NAMES: ReadonlySet<string> = new Set([
  'list',
  'show',
  'bind',
  'unbind',
  'recover',
  'doctor',
  'set',
  'unset',
  'apply',
  'status',
  'install',
  'libvirt-hook',
  'libvirt-xml',
  'config',
  'agent',
  'import-driverctl',
  'set-override',
  'unset-override',
  'load-override',
  'list-devices',
  'list-overrides',
]);

/** The global options (before the command) that take a value, and those that take none. */
const GLOBAL_WITH_VALUE = new Set(['--root', '--host-root', '--kernel', '--wait', '-b', '--bus']);
const GLOBAL_FLAGS = new Set(['--nosave', '--noprobe', '-v', '--verbose', '--debug']);

/**
 * The command argv invokes, when that is certain from the global options before it; otherwise
 * (help, --version, an unknown word or option, `--`) undefined, and the whole program is built, so
 * commander answers exactly as it always has.
 */
export function invokedCommand(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const t = argv[i] as string;
    if (!t.startsWith('-')) return COMMAND_NAMES.has(t) ? t : undefined;
    if (GLOBAL_FLAGS.has(t)) continue;
    const eq = t.indexOf('=');
    if (GLOBAL_WITH_VALUE.has(t)) i++;
    else if (!(t.startsWith('--') && eq > 0 && GLOBAL_WITH_VALUE.has(t.slice(0, eq)))) return;
  }
  return undefined;
}

/**
 * The command line. With `only`, just that command is defined beside the global options: a
 * subcommand's parsing, help and errors never look at its siblings, and each short call then
 * skips making ~20 commands' options (~200 KB of the young generation, which otherwise fills
 * during a small host's `show` and costs a scavenge).
 */
export function buildProgram(io: Io, setExit: (code: number) => void, only?: string): Command {
  const want = (name: string) => only === undefined || only === name;
  const program = new Command('vfioctl');
  program
    .description('Put PCI devices on the right VFIO driver: variant-aware, ID-table-checked, safe.')
    .version(VERSION, '-V, --version')
    .addOption(
      new Option(
        '--root <dir>',
        'host root holding sys/, proc/, lib/modules/, etc/, run/, dev/',
      ).env('VFIOCTL_ROOT'),
    )
    .addOption(
      new Option(
        '--host-root <dir>',
        "the live host's / mounted into this container: as --root, and modprobe, hooks and in-use checks are the host's",
      ).env('VFIOCTL_HOST_ROOT'),
    )
    .option(
      '--kernel <release>',
      'kernel release whose modules to use (default: <root>/proc/sys/kernel/osrelease)',
    )
    .option(
      '--wait <seconds>',
      'how long a writing command waits for another vfioctl to finish (default 30; exit 4 when it is not done by then)',
    )
    // driverctl users write `driverctl --nosave set-override ...`: the same options before the
    // verb.
    .addOption(new Option('--nosave', 'driverctl verbs: do not save').hideHelp())
    .addOption(new Option('--noprobe', 'driverctl verbs: do not apply now').hideHelp())
    .addOption(new Option('-b, --bus <bus>', 'driverctl verbs: the bus (pci only)').hideHelp())
    // driverctl's -v/--verbose/--debug: steps taken on stderr, device names in its lists.
    .addOption(
      new Option(
        '-v, --verbose',
        "driverctl's debug output: each step taken on stderr, device names in list-devices",
      ).hideHelp(),
    )
    .addOption(new Option('--debug', 'the same as --verbose').hideHelp())
    .showHelpAfterError(false)
    .exitOverride()
    .configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });

  const wrap =
    (fn: Action) =>
    // biome-ignore lint/suspicious/noExplicitAny: commander's action arguments
    async (...args: any[]) => {
      const cmd = args[args.length - 1] as Command;
      const g = cmd.optsWithGlobals() as GlobalOptions;
      // Progress on a terminal's stderr, never beside --json (stdout is then one document for a
      // program).
      const ctx = makeContext(g, io, { progress: !cmd.opts().json });
      try {
        setExit(await fn(ctx, ...args.slice(0, -1)));
      } finally {
        ctx.finish();
      }
    };

  if (want('list'))
    program
      .command('list')
      .description('list PCI devices with their driver and best VFIO driver (read-only)')
      .option('--json', 'print a JSON array (schema/device.schema.json)')
      .action(wrap((ctx, opts) => listCommand(ctx, opts)));

  if (want('show'))
    program
      .command('show')
      .description('show one device and every matching VFIO driver candidate, best first')
      .argument('<device>', 'PCI address: DOMAIN:BUS:DEV.FN or BUS:DEV.FN')
      .option('--json', 'print one JSON object')
      .action(wrap((ctx, device, opts) => showCommand(ctx, device, opts)));

  // Bulk selection: the same selectors as the configuration's rules (vfioctl.json(5)).
  const selectorOpts = (c: Command) =>
    c
      .option(
        '--id <vendor:device>',
        "every device of this id (VENDOR:DEVICE[:SUBVENDOR:SUBDEVICE], as 'lspci -nn')",
      )
      .option(
        '--class <prefix>',
        'every device whose class code starts with this hex prefix (02, 0200, 020000)',
      )
      .option('--vfs-of <pf>', 'every SR-IOV virtual function of this physical function');

  if (want('bind'))
    selectorOpts(
      program
        .command('bind')
        .description(
          'bind devices to the best VFIO driver (or --driver NAME), safely, with rollback',
        )
        .argument('[device...]', 'PCI addresses or network interface names'),
    )
      .option('--driver <name>', "'vfio' (the best usable VFIO driver) or a driver name", 'vfio')
      .option('--dry-run', 'print the exact steps and every failing check; change nothing')
      .option('--force', 'go ahead despite refusals that can be overridden')
      .option('--group', 'move every member of the IOMMU group (bridges excluded)')
      .option(
        '--owner <user[:group]>',
        "hand the device's VFIO nodes to this user (an unprivileged VMM)",
      )
      .option('--json', 'print JSON results')
      .action(wrap((ctx, devices, opts) => bindCommand(ctx, devices, opts)));

  if (want('unbind'))
    selectorOpts(
      program
        .command('unbind')
        .description('give devices back to their host driver')
        .argument('[device...]', 'PCI addresses or network interface names'),
    )
      .option('--dry-run', 'print the exact steps; change nothing')
      .option('--json', 'print JSON results')
      .action(wrap((ctx, devices, opts) => unbindCommand(ctx, devices, opts)));

  if (want('recover'))
    program
      .command('recover')
      .description('repair devices left half-done by an interrupted vfioctl')
      .option('--json', 'print JSON')
      .action(wrap((ctx, opts) => recoverCommand(ctx, opts)));

  if (want('doctor'))
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

  if (want('set'))
    selectorOpts(
      persistOpts(
        program
          .command('set')
          .description(
            "configure DEVICE's intent (vfio | none | host | DRIVER) in /etc/vfioctl/vfioctl.json and apply it",
          )
          .argument(
            '<device>',
            'PCI address or network interface name (with --id, --class or --vfs-of: the intent)',
          )
          .argument(
            '[intent]',
            "'vfio' (best usable VFIO driver, re-resolved per kernel), 'none' (no driver), 'host' (its host driver, exempt from broader rules) or a driver name",
          ),
      )
        .option(
          '--group',
          "configure and apply every member of DEVICE's IOMMU group (bridges excluded), all or nothing",
        )
        .option('--force', 'apply despite refusals that can be overridden (as bind --force)')
        .option(
          '--acknowledge-broad-match',
          'with --id or --class: add "acknowledgeBroadMatch": true to the rule, so the boot applies it too',
        ),
    ).action(wrap((ctx, device, intent, opts) => setCommand(ctx, device, intent, opts)));

  if (want('unset'))
    selectorOpts(
      persistOpts(
        program
          .command('unset')
          .description(
            "remove DEVICE's rule (or an --id, --class or --vfs-of rule) and return its devices to their host drivers",
          )
          .argument('[device]', 'PCI address or network interface name'),
      ),
    ).action(wrap((ctx, device, opts) => unsetCommand(ctx, device, opts)));

  if (want('apply'))
    program
      .command('apply')
      .description('converge devices to the configuration (all configured devices, or those named)')
      .argument('[device...]', 'PCI addresses (default: every configured device)')
      .option('--dry-run', 'print the exact steps and every failing check; change nothing')
      .option(
        '--boot',
        'boot mode (the late unit): never touch boot devices (fstab, crypttab, root=); broad rules need acknowledgeBroadMatch',
      )
      .option(
        '--guard-boot-devices',
        'never touch the devices the host boots from (fstab, crypttab, root=, resume=), whatever a rule matches',
      )
      .option(
        '--config <file>',
        'use this configuration file (a path on the running system) instead of /etc/vfioctl/vfioctl.json',
      )
      .option('--json', 'print JSON results')
      .action(wrap((ctx, devices, opts) => applyCommand(ctx, devices, opts)));

  if (want('status'))
    program
      .command('status')
      .description(
        'configured devices: intent, what it resolves to now and at the last apply, live driver, boot outcome, drift',
      )
      .option(
        '--config <file>',
        'use this configuration file (a path on the running system) instead of /etc/vfioctl/vfioctl.json',
      )
      .option('--json', 'print JSON')
      .action(wrap((ctx, opts) => statusCommand(ctx, opts)));

  if (want('install'))
    program
      .command('install')
      .description(
        'install the boot layers: per-kernel maps, early unit, udev rule, initramfs hooks, late apply unit',
      )
      .option('--dry-run', 'list the files that would be written or removed; change nothing')
      .option('--uninstall', 'remove everything install wrote')
      .option(
        '--refresh',
        'only regenerate the boot maps and udev rule (for --kernel REL, or every installed kernel)',
      )
      .option(
        '--exec <path>',
        'the vfioctl the units run (default: this one); must be root-owned; not with the Debian package',
      )
      .option(
        '--config <file>',
        'make the boot maps from this configuration file (a path on the running system)',
      )
      .option(
        '--libvirt',
        'only the libvirt qemu hook, /etc/libvirt/hooks/qemu.d/50-vfioctl (with --uninstall: remove it)',
      )
      .option('--json', 'print JSON')
      .action(wrap((ctx, opts) => installCommand(ctx, opts)));

  if (want('libvirt-hook'))
    program
      .command('libvirt-hook')
      .description(
        "libvirt's qemu hook (/etc/libvirt/hooks/qemu.d/50-vfioctl): binds a domain's managed='no' PCI hostdevs at prepare begin, gives them back at release end; domain XML on stdin; prints nothing on stdout",
      )
      .argument('<guest>', 'the domain name (libvirt passes it first)')
      .argument('<operation>', 'prepare, release, ... (only prepare and release act)')
      .argument('<sub-operation>', 'begin, end, ...')
      .argument('[extra...]', "libvirt's extra argument ('-')")
      .action(wrap((ctx, guest, operation, sub) => libvirtHookCommand(ctx, guest, operation, sub)));

  if (want('libvirt-xml'))
    program
      .command('libvirt-xml')
      .description("print <hostdev managed='no'> elements for devices a vfioctl rule keeps on VFIO")
      .argument('<device...>', 'PCI addresses')
      .option(
        '--driver-model',
        "add <driver model='NAME'/> when the device's VFIO driver is a variant (libvirt >= 10)",
      )
      .option('--json', 'print JSON')
      .action(wrap((ctx, devices, opts) => libvirtXmlCommand(ctx, devices, opts)));

  if (want('config'))
    program
      .command('config')
      .description('check a configuration file: exit 0 when valid, 2 with every problem')
      .argument('<action>', 'check')
      .argument('<file>', 'the configuration file (a path on the running system)')
      .option('--json', 'print {file, valid, problems, rules}')
      .action(wrap((ctx, action, file, opts) => configCommand(ctx, action, file, opts)));

  if (want('agent'))
    program
      .command('agent')
      .description(
        'the node agent (a DaemonSet pod): make a policy file the host configuration, apply it, then watch for drift',
      )
      .option(
        '--policy <file>',
        'the policy (a vfioctl.json mounted from a ConfigMap; a path on the running system)',
      )
      .option('--interval <seconds>', 'drift poll interval (default 60)')
      .option(
        '--jitter <seconds>',
        'up to this much random delay added to each poll (default a tenth of the interval)',
      )
      .option('--reapply', 're-apply when status shows drift (default: report it and go NotReady)')
      .option(
        '--ready-file <file>',
        `the readiness file the probe reads (default /run/vfioctl-agent/ready.json, in the container)`,
      )
      .option(
        '--stop-file <file>',
        'emergency stop: while this file exists on the host nothing is applied (default /etc/vfioctl/agent-stop, under --root)',
      )
      .option(
        '--features-file <file>',
        'node-feature-discovery feature file on the host (default /etc/kubernetes/node-feature-discovery/features.d/vfioctl)',
      )
      .option('--no-features', 'publish no node-feature-discovery labels')
      .option('--once', 'converge once and exit: 0 ready, 2 invalid policy, 3 refused, 1 otherwise')
      .option(
        '--probe',
        'readiness probe: exit 0 when the running agent reports Ready, 1 otherwise',
      )
      .action(wrap((ctx, opts) => agentCommand(ctx, opts)));

  if (want('import-driverctl'))
    program
      .command('import-driverctl')
      .description('turn /etc/driverctl.d/* into vfioctl rules (driver names kept literally)')
      .option(
        '--vfio',
        "import driverctl's vfio-pci as intent 'vfio' (the best VFIO driver, variants included)",
      )
      .option('--dry-run', 'print what would be imported; change nothing')
      .option('--json', 'print JSON')
      .action(wrap((ctx, opts) => importDriverctlCommand(ctx, opts)));

  // driverctl's verbs, with driverctl's meaning; its options may also come before the verb.
  const dc = <T>(ctx: Context, opts: T): T => {
    if (ctx.flags.bus !== undefined && ctx.flags.bus !== 'pci')
      throw new VfioctlError(
        `vfioctl handles the pci bus only, not '${ctx.flags.bus}'`,
        EXIT.BAD_INPUT,
      );
    return opts;
  };
  if (want('set-override'))
    persistOpts(
      program
        .command('set-override')
        .description('driverctl: same as set DEVICE DRIVER (the literal driver)')
        .argument('<device>')
        .argument('<driver>'),
    ).action(
      wrap((ctx, device, driver, opts) =>
        setCommand(ctx, driverctlDevice(device), driver, dc(ctx, opts)),
      ),
    );
  if (want('unset-override'))
    persistOpts(
      program
        .command('unset-override')
        .description('driverctl: same as unset DEVICE')
        .argument('<device>'),
    ).action(
      wrap((ctx, device, opts) => unsetCommand(ctx, driverctlDevice(device), dc(ctx, opts))),
    );
  if (want('load-override'))
    program
      .command('load-override')
      .description("driverctl: apply DEVICE's saved configuration (exit 1 when it has none)")
      .argument('<device>')
      .action(
        wrap((ctx, device) => {
          const address = parseAddress(driverctlDevice(device));
          dc(ctx, {});
          return hasAddressRule(ctx.host, address) ? applyCommand(ctx, [address], {}) : EXIT.FAILED;
        }),
      );
  for (const [name, only] of [
    ['list-devices', false],
    ['list-overrides', true],
  ] as const) {
    if (!want(name)) continue;
    program
      .command(name)
      .description(
        `driverctl: ${only ? 'devices with driver_override set' : 'every PCI device'} and their driver${only ? '' : ' ([*]: driver_override set)'}`,
      )
      .argument(
        '[type]',
        'storage, network, display, multimedia, memory, bridge, communication, system, input, docking, processor, serial',
      )
      .action(
        wrap((ctx, type) => {
          dc(ctx, {});
          return listDevicesCommand(ctx, type, only);
        }),
      );
  }

  for (const c of program.commands)
    c.exitOverride().configureOutput({ writeOut: (s) => io.out(s), writeErr: (s) => io.err(s) });
  return program;
}

/** Runs the CLI with argv (without node and script) and returns the exit code. */
export async function run(argv: string[], io: Io): Promise<number> {
  let code: number = EXIT.OK;
  const program = buildProgram(io, (c) => (code = c), invokedCommand(argv));
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
  const io: Io = {
    out: (s) => writeAll(1, s),
    err: (s) => writeAll(2, s),
    env: process.env,
    stdin: () => fs.readFileSync(0, 'utf8'),
    // Asked only by commands that may show progress: process.stderr is made on first use, and
    // making it loads node's stream modules (~5 ms of every command's start-up).
    get errIsTTY() {
      return process.stderr.isTTY === true;
    },
  };
  void run(process.argv.slice(2), io).then((code) => {
    process.exitCode = code;
  });
}
