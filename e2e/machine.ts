// The emulated machine: which PCI device sits where, what it is, and which host driver owns it
// after boot. Shared by the host (QEMU arguments) and the guest (scenarios name devices by role).

export interface DeviceSpec {
  readonly address: string;
  readonly vendor: string;
  readonly device: string;
  /** Driver bound after the guest's coldplug; null when no driver matches. */
  readonly hostDriver: string | null;
  /** QEMU -device value, or null for devices the q35 machine always has. */
  readonly qemu: string | null;
  readonly note: string;
}

/** Devices by role. Slots 0x10/0x11 carry the guest's own root and results share: never unbound. */
export const MACHINE = {
  e1000e: {
    address: '0000:00:02.0',
    vendor: '8086',
    device: '10d3',
    hostDriver: 'e1000e',
    qemu: 'e1000e,addr=0x02,romfile=,netdev=hub0',
    note: 'Intel 82574L NIC',
  },
  virtioNetModern: {
    address: '0000:00:03.0',
    vendor: '1af4',
    device: '1041',
    hostDriver: 'virtio-pci',
    qemu: 'virtio-net-pci,disable-legacy=on,addr=0x03,romfile=,netdev=hub1',
    note: "modern virtio-net, in virtio_vfio_pci's ID table",
  },
  virtioNetLegacy: {
    address: '0000:00:04.0',
    vendor: '1af4',
    device: '1000',
    hostDriver: 'virtio-pci',
    qemu: 'virtio-net-pci,addr=0x04,romfile=,netdev=hub2',
    note: 'transitional virtio-net',
  },
  e1000eNic: {
    address: '0000:00:05.0',
    vendor: '8086',
    device: '10d3',
    hostDriver: 'e1000e',
    qemu: 'e1000e,addr=0x05,romfile=,netdev=hub3',
    note: 'second 82574L, configured up with an address',
  },
  edu: {
    address: '0000:00:06.0',
    vendor: '1234',
    device: '11e8',
    hostDriver: null,
    qemu: 'edu,addr=0x06',
    note: 'QEMU edu device, no host driver',
  },
  nvme: {
    address: '0000:00:07.0',
    vendor: '1b36',
    device: '0010',
    hostDriver: 'nvme',
    // SR-IOV needs an NVM subsystem and flexible queue/interrupt resources for the VFs (QEMU wants
    // vq_flexible >= 2 per VF, vi_flexible >= 1 per VF, and 2 queue pairs and 1 vector left for the
    // PF). VF n sits at devfn 07.0 + n: 16 VFs occupy 07.1-07.7, 08.0-08.7 and 09.0, so slots 8
    // and 9 must stay free.
    qemu: 'nvme,addr=0x07,serial=e2e0001,subsys=nvmesubsys,sriov_max_vfs=16,sriov_vq_flexible=32,sriov_vi_flexible=16,max_ioqpairs=34,msix_qsize=18',
    note: 'NVMe controller with SR-IOV (up to 16 VFs)',
  },
  rootfs: {
    address: '0000:00:10.0',
    vendor: '1af4',
    device: '1009',
    hostDriver: 'virtio-pci',
    qemu: null,
    note: "virtio-9p: the guest's root filesystem",
  },
  results: {
    address: '0000:00:11.0',
    vendor: '1af4',
    device: '1009',
    hostDriver: 'virtio-pci',
    qemu: null,
    note: 'virtio-9p: the results share',
  },
  lpc: {
    address: '0000:00:1f.0',
    vendor: '8086',
    device: '2918',
    hostDriver: 'lpc_ich',
    qemu: null,
    note: 'ICH9 LPC, shares an IOMMU group with 1f.2 and 1f.3',
  },
  sata: {
    address: '0000:00:1f.2',
    vendor: '8086',
    device: '2922',
    hostDriver: 'ahci',
    qemu: null,
    note: 'ICH9 AHCI',
  },
  smbus: {
    address: '0000:00:1f.3',
    vendor: '8086',
    device: '2930',
    hostDriver: 'i801_smbus',
    qemu: null,
    note: 'ICH9 SMBus',
  },
} as const satisfies Record<string, DeviceSpec>;

export type DeviceRole = keyof typeof MACHINE;

/** NICs are ports of one QEMU hub (no host network): their links come up like real cabled NICs. */
export const NIC_NETDEVS = ['hub0', 'hub1', 'hub2', 'hub3'] as const;

/** 9p mount tags; the guest's /init mounts them. */
export const ROOT_TAG = 'hostroot';
export const RESULTS_TAG = 'results';
/** Where the results share is mounted inside the guest. */
export const GUEST_RESULTS_DIR = '/run/e2e';
