// SR-IOV on QEMU's emulated NVMe controller: VFs get their own IOMMU groups, a VF binds alone,
// the PF and its other VFs are left alone, and the PF (which has VFs) is refused.
import type { Scenario } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { MACHINE } from '../machine';
import { expectOnVfio, expectUnchanged, resultFor, type ApplyJson } from './common';
import { checkListAgainstSysfs } from './inventory';

const VFS = 4;

export const sriov: Scenario = {
  name: 'sriov-vf-binding',
  title:
    'SR-IOV: VFs of an emulated NVMe get own IOMMU groups; a VF binds alone; moving the PF is refused',
  boots: ['iommu'],
  run(ctx) {
    const pf = ctx.dev('nvme');
    const attr = (n: string): string => `${sysfs.PCI_DEVICES}/${pf}/${n}`;
    ctx.eq(sysfs.driverOf(pf), MACHINE.nvme.hostDriver, `${pf} driver`);
    const total = Number(sysfs.attr(pf, 'sriov_totalvfs'));
    ctx.ok(total >= 2, `${pf} sriov_totalvfs = ${total}`);
    try {
      // No host driver for the VFs: QEMU's VFs stay offline until NVMe virtualization management
      // assigns them resources, and nvme would spend its whole ready-timeout on each.
      ctx.eq(
        sysfs.write(attr('sriov_drivers_autoprobe'), '0'),
        null,
        'write 0 > sriov_drivers_autoprobe',
      );
      // Four: list reads the first and last virtfn links and places the middle ones by the
      // routing-ID arithmetic (host/pci.ts vfsByRoutingId), which checkListAgainstSysfs then judges.
      ctx.eq(sysfs.write(attr('sriov_numvfs'), String(VFS)), null, `write ${VFS} > sriov_numvfs`);
      const vfs = sysfs.vfsOf(pf);
      ctx.eq(vfs.length, VFS, `${pf} VFs (${vfs.join(' ')})`);
      // pci_iov_add_virtfn: VF N at the PF's routing ID + sriov_offset + N * sriov_stride (v4.17+).
      const offset = sysfs.attr(pf, 'sriov_offset');
      const stride = sysfs.attr(pf, 'sriov_stride');
      if (offset !== null && stride !== null) {
        const [dom, bus, dev, fn] = pf.split(/[:.]/);
        const rid =
          (Number.parseInt(bus!, 16) << 8) | (Number.parseInt(dev!, 16) << 3) | Number(fn);
        const at = (n: number) => {
          const r = rid + Number(offset) + n * Number(stride);
          const h = (x: number) => x.toString(16).padStart(2, '0');
          return `${dom}:${h(r >> 8)}:${h((r >> 3) & 0x1f)}.${r & 7}`;
        };
        ctx.eq(
          vfs,
          vfs.map((_, n) => at(n)),
          `${pf} virtfnN = routing ID + ${offset} + N * ${stride}`,
        );
      } else ctx.note(`${pf}: no sriov_offset/sriov_stride (before v4.17): list reads every link`);
      const pfGroup = sysfs.iommuGroupOf(pf);
      for (const vf of vfs) {
        const g = sysfs.iommuGroupOf(vf);
        ctx.ok(g !== null && g !== pfGroup, `${vf} has IOMMU group ${g}, not the PF's ${pfGroup}`);
        ctx.eq(sysfs.groupMembers(g!), [vf], `members of ${vf}'s group ${g}`);
        ctx.eq(sysfs.physfnOf(vf), pf, `${vf} physfn`);
      }
      checkListAgainstSysfs(ctx);

      const [vf0, vf1] = vfs as [string, string];
      const others = sysfs.snapshot([pf, vf1]);
      const bound = ctx.cliJson<ApplyJson>(['bind', vf0, '--json']).json;
      ctx.eq(resultFor(ctx, bound, vf0).status, 'ok', `bind ${vf0} status`);
      expectOnVfio(ctx, vf0, 'vfio-pci');
      // A VF on vfio-pci: list takes its vfio-dev/ from /sys/class/vfio-dev, its attributes
      // from the directory the PF's virtfn link names.
      checkListAgainstSysfs(ctx);
      expectUnchanged(ctx, others, 'the PF and the other VF after binding a VF');
      ctx.eq(sysfs.attr(pf, 'sriov_numvfs'), String(VFS), `${pf} sriov_numvfs`);

      const all = sysfs.snapshot([pf, ...vfs]);
      const refused = ctx.cliJson<ApplyJson>(['bind', pf, '--json'], 3).json;
      const r = resultFor(ctx, refused, pf);
      ctx.eq(r.status, 'refused', `bind ${pf} (a PF with VFs) status`);
      ctx.note(`refusals: ${JSON.stringify(r.refusals ?? r.error)}`);
      expectUnchanged(ctx, all, 'the PF and its VFs after the refused PF bind');

      const un = ctx.cliJson<ApplyJson>(['unbind', vf0, '--json']).json;
      ctx.eq(resultFor(ctx, un, vf0).status, 'ok', `unbind ${vf0} status`);
      const s = sysfs.stateOf(vf0);
      ctx.eq(s.override, null, `${vf0} driver_override after unbind`);
      ctx.eq(s.vfioDev, null, `${vf0} vfio-dev/ after unbind`);
      // With sriov_drivers_autoprobe=0 the kernel probes a VF only for a matching override.
      ctx.note(`${vf0} after unbind (autoprobe 0): ${sysfs.describe(s)}`);
    } finally {
      sysfs.write(attr('sriov_numvfs'), '0');
      sysfs.write(attr('sriov_drivers_autoprobe'), '1');
    }
    ctx.eq(sysfs.vfsOf(pf), [], `${pf} VFs after clean-up`);
  },
};
