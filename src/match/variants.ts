// What the kernel's VFIO drivers need before their probe() succeeds: one data table, so the
// knowledge lives in one place (kernel-facts.md "Known variant drivers"; each row cites the probe
// path it mirrors). modules.alias stays the source of truth for *which* devices a variant claims;
// `ids` here is used only for a built-in variant whose aliases the kernel does not publish.

export interface PfRequirement {
  /** PCI driver names the PF must be bound to. */
  readonly drivers: readonly string[];
  /**
   * true: probe fails without it (unusable); false: it binds, but a feature (migration) is lost.
   */
  readonly required: boolean;
  readonly why: string;
}

export interface VariantRule {
  readonly module: string;
  /** Known vendor:device ids (lower-case hex), for built-in variants on kernels before ~v6.18. */
  readonly ids: readonly string[];
  /** The probe refuses anything but an SR-IOV VF; the text says why. */
  readonly vfOnly?: string;
  /** For a VF: what its PF must run. */
  readonly pf?: PfRequirement;
  /** Said about a non-VF that binds but loses something. */
  readonly nonVfNote?: string;
}

export const VARIANT_RULES: readonly VariantRule[] = [
  {
    module: 'mlx5_vfio_pci',
    ids: ['15b3:101e'],
    // mlx5vf_cmd_set_migratable(): migration only when the PF's mlx5_core exposes the VF.
    pf: {
      drivers: ['mlx5_core'],
      required: false,
      why: 'live migration needs the PF on mlx5_core',
    },
    nonVfNote: 'not a VF: binds without live migration',
  },
  {
    module: 'hisi_acc_vfio_pci',
    ids: ['19e5:a256', '19e5:a259', '19e5:a251', '19e5:a255', '19e5:a258', '19e5:a250'],
    pf: {
      drivers: ['hisi_zip', 'hisi_sec2', 'hisi_hpre'],
      required: false,
      why: 'live migration needs the PF on its HiSilicon QM driver',
    },
  },
  {
    module: 'pds_vfio_pci',
    ids: ['1dd8:1003'],
    // pds_vfio_init_device(): pci_iov_vf_id() fails on a non-VF; pdsc_get_pf_struct() needs
    // pds_core.
    vfOnly: 'pds_vfio_pci probes only SR-IOV VFs (pci_iov_vf_id fails on a PF)',
    pf: { drivers: ['pds_core'], required: true, why: 'probe fails unless the PF runs pds_core' },
  },
  {
    module: 'virtio_vfio_pci',
    ids: ['1af4:1041', '1af4:1042'],
    nonVfNote: 'not a VF: legacy I/O emulation and live migration are only for VFs',
  },
  {
    module: 'nvgrace_gpu_vfio_pci',
    ids: ['10de:2342', '10de:2345', '10de:2348', '10de:2941', '10de:31c2'],
  },
  {
    module: 'qat_vfio_pci',
    ids: ['8086:4941', '8086:4943', '8086:4945', '8086:4949'],
    // qat_vf_pci_init_dev(): qat_vfmig_create() needs the PF's adf_accel_dev; fails on a non-VF.
    vfOnly: 'qat_vfio_pci initialises only SR-IOV VFs (init fails on anything else)',
    pf: {
      drivers: ['4xxx', '420xx', '6xxx'],
      required: true,
      why: 'init fails unless the PF runs a QAT PF driver (4xxx, 420xx, 6xxx)',
    },
  },
  {
    module: 'xe_vfio_pci',
    ids: [],
    pf: {
      drivers: ['xe'],
      required: true,
      why: 'on a VF, probe returns -ENODEV unless the PF runs xe',
    },
  },
  {
    module: 'ism_vfio_pci',
    ids: ['1014:04ed'],
  },
];

const BY_MODULE = new Map(VARIANT_RULES.map((r) => [r.module, r]));

export function variantRule(module: string): VariantRule | undefined {
  return BY_MODULE.get(module);
}
