// The synthetic large host: ordinary platform devices plus N SR-IOV PFs with 255 VFs each, built
// with the test suite's Fixture (test/support/fixture.ts), so the sysfs layout is exactly the one
// the tests use (real-kernel shapes: /sys/devices/pci0000:00/<root port>/<function>, relative
// links in /sys/bus/pci/devices, drivers/<d>/<addr>, iommu_groups, virtfnN/physfn, config).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Fixture, type DeviceSpec } from '../test/support/fixture';
import { VARIANT_ALIASES, type KernelModules } from './kernel-modules';

export const VFS_PER_PF = 255;

interface Family {
  name: string;
  pf: { vendor: string; device: string; class: string; driver: string; module: string };
  vf: {
    device: string;
    class: string;
    hostDriver: string | null;
    hostModule: string | null;
    netdev: boolean;
  };
  /** Variant VFIO driver (pci_driver name, module) for some of the VFs, or plain vfio-pci. */
  variant: { driver: string; module: string } | null;
}

// Four real SR-IOV families; the PFs cycle through them.
export const FAMILIES: readonly Family[] = [
  {
    name: 'ConnectX-6 Dx',
    pf: {
      vendor: '15b3',
      device: '101d',
      class: '020000',
      driver: 'mlx5_core',
      module: 'mlx5_core',
    },
    vf: {
      device: '101e',
      class: '020000',
      hostDriver: 'mlx5_core',
      hostModule: 'mlx5_core',
      netdev: true,
    },
    variant: { driver: 'mlx5_vfio_pci', module: 'mlx5_vfio_pci' },
  },
  {
    name: 'E810',
    pf: { vendor: '8086', device: '1592', class: '020000', driver: 'ice', module: 'ice' },
    vf: { device: '1889', class: '020000', hostDriver: 'iavf', hostModule: 'iavf', netdev: true },
    variant: null,
  },
  {
    name: 'QAT 4xxx',
    pf: { vendor: '8086', device: '4940', class: '0b4000', driver: '4xxx', module: 'qat_4xxx' },
    vf: { device: '4941', class: '0b4000', hostDriver: null, hostModule: null, netdev: false },
    variant: { driver: 'qat_vfio_pci', module: 'qat_vfio_pci' },
  },
  {
    name: 'virtio-net (DPU)',
    pf: {
      vendor: '1af4',
      device: '1041',
      class: '020000',
      driver: 'virtio-pci',
      module: 'virtio_pci',
    },
    vf: {
      device: '1041',
      class: '020000',
      hostDriver: 'virtio-pci',
      hostModule: 'virtio_pci',
      netdev: false,
    },
    variant: { driver: 'virtio_vfio_pci', module: 'virtio_vfio_pci' },
  },
];

/** Number of ordinary (non-SR-IOV) functions: host bridge, VGA, SATA, 16 root ports. */
export const ORDINARY = 19;
const ROOT_PORTS = 16;

export interface HostTree {
  dir: string;
  pfs: number;
  functions: number;
  sriovFunctions: number;
  vfs: string[];
  /** A VF on its PF's driver, with a variant VFIO driver: what `show` is timed on. */
  showAddress: string;
}

const hex2 = (n: number) => n.toString(16).padStart(2, '0');
const vfAddress = (bus: number, i: number) =>
  `0000:${hex2(bus)}:${hex2((i + 1) >> 3)}.${(i + 1) & 7}`;

/**
 * Builds the tree in `dir` (which must not exist): `pfs` SR-IOV PFs with `vfsPerPf` VFs each
 * (255 by default: pfs * 256 SR-IOV functions) plus ORDINARY platform functions. One PF with one
 * VF is the small server tree (21 functions) whose start-up the small-tree targets time.
 */
export function buildHostTree(
  dir: string,
  pfs: number,
  kmods: KernelModules,
  vfsPerPf = VFS_PER_PF,
): HostTree {
  if (pfs < 1 || pfs > ROOT_PORTS) throw new Error(`pfs must be 1..${ROOT_PORTS}`);
  fs.mkdirSync(dir, { recursive: true });
  const f = new Fixture(dir);
  const rel = kmods.release;
  f.kernel(rel);
  const modDir = path.join(dir, 'lib/modules', rel);
  // The whole index as depmod wrote it; the variant aliases go into the text file vfioctl reads
  // (modules.alias.bin, which only libkmod users such as lspci -k read, keeps the Debian ones).
  for (const file of kmods.files)
    fs.copyFileSync(path.join(kmods.dir, file), path.join(modDir, file));
  fs.appendFileSync(
    path.join(modDir, 'modules.alias'),
    VARIANT_ALIASES.map((l) => l + '\n').join(''),
  );
  for (const ids of ['/usr/share/misc/pci.ids', '/usr/share/hwdata/pci.ids']) {
    if (fs.existsSync(ids)) {
      fs.mkdirSync(path.join(dir, 'usr/share/misc'), { recursive: true });
      fs.copyFileSync(ids, path.join(dir, 'usr/share/misc/pci.ids'));
      break;
    }
  }
  f.iommu(true);
  // Built-in drivers have no module link; the loaded modules' drivers are registered.
  f.driver('pcieport', null);
  f.driver('vfio-pci', 'vfio_pci');
  for (const fam of FAMILIES) if (fam.variant) f.driver(fam.variant.driver, fam.variant.module);

  let group = 0;
  let n = 0;
  const dev = (s: DeviceSpec) => {
    f.device({ iommuGroup: String(group++), ...s });
    n++;
  };
  dev({
    address: '0000:00:00.0',
    vendor: '8086',
    device: '09a2',
    class: '060000',
    subsystemVendor: '8086',
    subsystemDevice: '0000',
  });
  dev({
    address: '0000:00:02.0',
    vendor: '1a03',
    device: '2000',
    class: '030000',
    revision: '41',
    driver: 'ast',
    bootVga: true,
  });
  dev({
    address: '0000:00:17.0',
    vendor: '8086',
    device: 'a182',
    class: '010601',
    revision: '09',
    driver: 'ahci',
    blockdevs: [
      {
        name: 'sda',
        devno: '8:0',
        partitions: [
          { name: 'sda1', devno: '8:1' },
          { name: 'sda2', devno: '8:2' },
        ],
      },
    ],
  });
  f.mount('8:1', '/dev/sda1', '/').swap('/dev/sda2');
  const ports: string[] = [];
  for (let p = 0; p < ROOT_PORTS; p++) {
    const address = `0000:00:${p < 8 ? '1c' : '1d'}.${p % 8}`;
    ports.push(address);
    dev({
      address,
      vendor: '8086',
      device: p < 8 ? 'a110' : 'a118',
      class: '060400',
      headerType: 1,
      driver: 'pcieport',
      resetMethods: null,
    });
  }

  const vfs: string[] = [];
  let vfioN = 0;
  let showAddress = '';
  for (let p = 0; p < pfs; p++) {
    const fam = FAMILIES[p % FAMILIES.length]!;
    const bus = 0x10 + p;
    const pf = `0000:${hex2(bus)}:00.0`;
    const numa = p < pfs / 2 ? 0 : 1;
    const pfNet = fam.vf.netdev ? `ens${p + 1}f0np0` : null;
    dev({
      address: pf,
      parent: ports[p],
      vendor: fam.pf.vendor,
      device: fam.pf.device,
      class: fam.pf.class,
      driver: fam.pf.driver,
      numaNode: numa,
      // As a v4.17+ kernel shows them: VF i at routing ID PF + 1 + i (vfAddress).
      sriov: { totalVfs: VFS_PER_PF, numVfs: vfsPerPf, offset: 1, stride: 1 },
      netdevs: pfNet
        ? [{ name: pfNet, up: true, ipv4: p % 4 === 0 ? `10.${p}.0.0` : undefined }]
        : [],
    });
    if (!fs.existsSync(path.join(dir, 'sys/module', fam.pf.module)))
      f.driver(fam.pf.driver, fam.pf.module);
    if (fam.vf.hostDriver && fam.vf.hostModule) f.driver(fam.vf.hostDriver, fam.vf.hostModule);
    for (let i = 0; i < vfsPerPf; i++) {
      const address = vfAddress(bus, i);
      vfs.push(address);
      // 0-63 on the host's VF driver, 64-95 on vfio-pci, 96-127 on the variant driver, rest
      // unbound.
      let driver: string | null = null;
      let override: string | null = null;
      let vfioDev: string | undefined;
      if (i < 64) driver = fam.vf.hostDriver;
      else if (i < 128) {
        driver = i < 96 || !fam.variant ? 'vfio-pci' : fam.variant.driver;
        override = driver;
        vfioDev = `vfio${vfioN++}`;
      }
      if (!showAddress && fam.variant && driver === fam.vf.hostDriver && driver)
        showAddress = address;
      dev({
        address,
        parent: ports[p],
        vendor: fam.pf.vendor,
        device: fam.vf.device,
        class: fam.vf.class,
        physfn: pf,
        driver,
        driverOverride: override,
        vfioDev,
        numaNode: numa,
        resetMethods: ['flr'],
        netdevs:
          driver && fam.vf.netdev && driver === fam.vf.hostDriver
            ? [{ name: `ens${p + 1}f0v${i}`, up: i < 8 }]
            : [],
      });
    }
  }
  return {
    dir,
    pfs,
    functions: n,
    sriovFunctions: pfs * (vfsPerPf + 1),
    vfs,
    showAddress: showAddress || vfs[0]!,
  };
}
