// The kernels the suite boots and the vfio variant drivers built for each of them.
// Debian builds no vfio-pci variant driver, so the suite builds them from the same kernel's source.
import type { AptRepo } from './setup/apt';

export interface VariantSource {
  /** Module name as modules.dep spells it (underscores). */
  readonly module: string;
  /** Directory below the kernel source tree. */
  readonly dir: string;
  /** The Kconfig symbol its Makefile keys on. */
  readonly config: string;
}

export interface KernelSpec {
  /** Short name used in results and on the command line: "6.1", "6.12". */
  readonly id: string;
  /**
   * Debian meta package whose dependency names the current image (its ABI changes with updates).
   */
  readonly metaPackage: string;
  /**
   * Debian package with the kernel source tarball (same version as the image); needed only to build
   * variants.
   */
  readonly sourcePackage: string;
  /** Variant drivers to build; only those present in this kernel's source tree. */
  readonly variants: readonly VariantSource[];
  /**
   * Another Debian release's archive, looked up through a private apt configuration (never the
   * host's).
   */
  readonly apt?: AptRepo;
}

const KEYRING = '[signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]';
/** Debian 11: its kernel (5.10) is in bullseye, its security updates in bullseye-security. */
const BULLSEYE: AptRepo = {
  name: 'bullseye',
  sources: [
    `deb ${KEYRING} http://deb.debian.org/debian bullseye main`,
    `deb ${KEYRING} http://deb.debian.org/debian-security bullseye-security main`,
  ],
};

const VIRTIO: VariantSource = {
  module: 'virtio_vfio_pci',
  dir: 'drivers/vfio/pci/virtio',
  config: 'CONFIG_VIRTIO_VFIO_PCI',
};
const MLX5: VariantSource = {
  module: 'mlx5_vfio_pci',
  dir: 'drivers/vfio/pci/mlx5',
  config: 'CONFIG_MLX5_VFIO_PCI',
};
const QAT: VariantSource = {
  module: 'qat_vfio_pci',
  dir: 'drivers/vfio/pci/qat',
  config: 'CONFIG_QAT_VFIO_PCI',
};

export const KERNELS: readonly KernelSpec[] = [
  // Linux 5.10 (Debian 11) predates vfio-pci's ID table and every variant driver (5.15, commit
  // cc6711b0bf36): modules.alias has no vfio_pci: line at all, and there is nothing to build.
  {
    id: '5.10',
    metaPackage: 'linux-image-amd64',
    sourcePackage: 'linux-source-5.10',
    variants: [],
    apt: BULLSEYE,
  },
  // Linux 6.1 predates virtio_vfio_pci (6.8) and qat_vfio_pci (6.10); mlx5_vfio_pci exists (5.18).
  {
    id: '6.1',
    metaPackage: 'linux-image-amd64',
    sourcePackage: 'linux-source-6.1',
    variants: [MLX5],
  },
  {
    id: '6.12',
    metaPackage: 'linux-image-6.12-amd64',
    sourcePackage: 'linux-source-6.12',
    variants: [VIRTIO, MLX5, QAT],
  },
];

/**
 * Host packages the harness itself needs (the kernel packages are only downloaded, never
 * installed).
 */
export const HOST_PACKAGES = [
  'qemu-system-x86', // the VMs
  'busybox-static', // the guest's initramfs
  'kmod', // depmod for the unpacked kernels; modprobe inside the guest (the guest runs the host's /)
  'iproute2', // `ip` inside the guest
  'systemd', // PID 1 of the boot-* scenarios' second boots (the guest runs the host's /)
  'udev',
  'initramfs-tools', // mkinitramfs for boot-initramfs-tools (run in the guest, for the guest's kernel)
  'dracut-core', // dracut for boot-dracut (the `dracut` package conflicts with initramfs-tools; -core does not)
  'driverctl', // the sequential baseline the bulk-bind scenario is timed against (issue 7)
  'xz-utils', // kernel source tarball, compressed modules
  // out-of-tree build of the variant drivers against linux-headers (what linux-headers depends on)
  'gcc-12',
  'make',
  'libc6-dev',
  'libelf1',
  'libssl3',
] as const;
