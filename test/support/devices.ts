// The devices tests put on their hosts, as plain data that both Fixture.device() (a sysfs tree)
// and snapshot() (an in-memory Snapshot) take: one place for each device's identity, the rest
// (`more`) said where it matters to the test.

type More = { readonly driver?: string | null } & object;

/** A device model: its IDs, class (when not Ethernet, the fixtures' default) and usual driver. */
function model(vendor: string, device: string, driver: string, cls?: string) {
  return <M extends More>(address: string, iommuGroup: string | null, more?: M) => ({
    address,
    vendor,
    device,
    ...(cls ? { class: cls } : {}),
    driver: driver as string | null,
    iommuGroup,
    ...more,
  });
}

/** Intel 82574L (8086:10d3) on e1000e: QEMU's e1000e NIC, the e2e machine's E1 and E2. */
export const e1000e = model('8086', '10d3', 'e1000e');
/** Modern virtio-net (1af4:1041) on virtio-pci: virtio_vfio_pci's ID table lists it. */
export const virtioNet = model('1af4', '1041', 'virtio-pci');
/** QEMU's NVMe controller (1b36:0010, class 010802) on nvme. */
export const nvme = model('1b36', '0010', 'nvme', '010802');
/** The ICH9 SMBus controller (8086:2930, class 0c0500) on i801_smbus: a class 0c05 rule's catch. */
export const smbus = model('8086', '2930', 'i801_smbus', '0c0500');

/**
 * Fixture.device()'s `blockdevs`: disk `name` (devno MAJOR:0) with one partition (MAJOR:1), named
 * as the kernel names it: a "p" before the number when the disk's name ends in a digit
 * (add_partition() in block/partitions/core.c: nvme0n1p1, but vda1).
 */
export function disk(name: string, major: number | string) {
  const part = /\d$/.test(name) ? `${name}p1` : `${name}1`;
  return [{ name, devno: `${major}:0`, partitions: [{ name: part, devno: `${major}:1` }] }];
}
