// One QEMU guest: q35 under TCG (these machines have no usable KVM), an emulated Intel IOMMU or
// none, the machine's PCI devices, the host's / as the guest's root over read-only 9p, and a
// writable 9p share for results. The serial console is collected (and streamed to a file).
import * as fs from 'node:fs';
import { run, type RunResult } from './lib/proc';
import { MACHINE, NIC_NETDEVS, RESULTS_TAG, ROOT_TAG } from './machine';
import type { KernelArtifacts } from './setup/kernel';

export interface VmConfig {
  readonly name: string;
  readonly kernel: KernelArtifacts;
  /** Emulate an Intel IOMMU (and enable it on the kernel command line). */
  readonly iommu: boolean;
  /** More kernel command-line words (a reboot boot names its root). */
  readonly extraCmdline?: readonly string[];
  /** An initramfs other than the suite's own (one the guest built with mkinitramfs or dracut). */
  readonly initrd?: string;
  /** Host directory shared writable with the guest (mounted at /run/e2e). */
  readonly shareDir: string;
  readonly consoleFile: string;
  readonly timeoutMs: number;
  /** Stops the VM early (a scenario over its own time limit). */
  readonly signal?: AbortSignal;
  readonly cpus: number;
  readonly memoryMb: number;
}

export interface VmResult {
  readonly ms: number;
  readonly exitCode: number | null;
  readonly timedOut: boolean;
  readonly console: string;
}

export function kernelCmdline(cfg: VmConfig): string {
  return [
    'console=ttyS0',
    'panic=-1', // reboot (and with -no-reboot: exit) at once on a panic
    'quiet', // console: warnings and worse; the full log goes to dmesg, collected per scenario
    // io_apic.c timer_irq_works() wants 4 timer ticks within a TSC-timed delay; under TCG on a
    // busy host they come late and check_timer() panics ("IO-APIC + timer doesn't work!", seen
    // on 5.10). This skips that boot-time check only.
    'no_timer_check',
    cfg.iommu ? 'intel_iommu=on' : 'intel_iommu=off',
    ...(cfg.extraCmdline ?? []),
  ].join(' ');
}

export function qemuArgv(cfg: VmConfig): string[] {
  const devices: string[] = [];
  if (cfg.iommu) devices.push('-device', 'intel-iommu,intremap=off');
  devices.push('-device', 'nvme-subsys,id=nvmesubsys,nqn=vfioctl-e2e');
  for (const id of NIC_NETDEVS) devices.push('-netdev', `hubport,id=${id},hubid=0`);
  for (const d of Object.values(MACHINE)) if (d.qemu) devices.push('-device', d.qemu);
  const slot = (a: string): string => `0x${a.split(':')[2]!.split('.')[0]}`;
  return [
    'qemu-system-x86_64',
    ...[
      '-machine',
      'q35',
      '-accel',
      'tcg',
      '-cpu',
      'max',
      '-smp',
      String(cfg.cpus),
      '-m',
      `${cfg.memoryMb}M`,
    ],
    ...['-nodefaults', '-display', 'none', '-no-reboot', '-monitor', 'none', '-serial', 'stdio'],
    ...[
      '-kernel',
      cfg.kernel.vmlinuz,
      '-initrd',
      cfg.initrd ?? cfg.kernel.initrd,
      '-append',
      kernelCmdline(cfg),
    ],
    ...['-fsdev', 'local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap'],
    ...[
      '-device',
      `virtio-9p-pci,fsdev=hostroot,mount_tag=${ROOT_TAG},addr=${slot(MACHINE.rootfs.address)}`,
    ],
    ...['-fsdev', `local,id=results,path=${cfg.shareDir},security_model=none,multidevs=remap`],
    ...[
      '-device',
      `virtio-9p-pci,fsdev=results,mount_tag=${RESULTS_TAG},addr=${slot(MACHINE.results.address)}`,
    ],
    ...devices,
  ];
}

/** Boots the VM and waits for it to power off (or kills it at the time limit). */
export async function runVm(cfg: VmConfig, onLine?: (line: string) => void): Promise<VmResult> {
  const file = fs.openSync(cfg.consoleFile, 'w');
  let partial = '';
  let r: RunResult;
  try {
    r = await run(qemuArgv(cfg), {
      timeoutMs: cfg.timeoutMs,
      ...(cfg.signal && { signal: cfg.signal }),
      onOutput: (chunk) => {
        fs.writeSync(file, chunk);
        if (!onLine) return;
        const lines = (partial + chunk.toString('utf8')).split('\n');
        partial = lines.pop() ?? '';
        for (const l of lines) onLine(l.replace(/\r$/, ''));
      },
    });
  } finally {
    fs.closeSync(file);
  }
  return {
    ms: r.ms,
    exitCode: r.code,
    timedOut: r.timedOut,
    console: (r.stdout + r.stderr).replace(/\r\n/g, '\n'),
  };
}
