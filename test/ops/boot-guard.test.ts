// The boot-device guard outside boot (ConvergeOptions.guardBootDevices, `apply
// --guard-boot-devices`): the devices the host boots from (root=/resume= on the kernel command
// line, fstab, crypttab) are refused by an apply whatever a broad rule matches, while the rest of
// what that rule selects is applied (unlike --boot, no acknowledgement is needed).
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { disk, nvme } from '../support/devices';
import { E1, E2, modelHosts, type ModelHost } from '../support/model-host';
import { EXIT, openHost } from '../../src/ops/index';

const host = modelHosts({ trustSelf: true });
const ROOTDISK = '0000:00:0a.0'; // root= on the kernel command line
const CRYPT = '0000:00:0b.0'; // an encrypted volume in crypttab, by UUID
const SWAP = '0000:00:0c.0'; // swap in fstab, by UUID
const SPARE = '0000:00:0d.0'; // an NVMe the host does not boot from

/**
 * Four NVMe controllers, three of which the host boots from, none mounted in the live view; a broad
 * class rule takes all NVMe.
 */
function bootHost(): ModelHost {
  const h = host();
  const disks = [
    [ROOTDISK, 'nvme0n1', '259', '10'],
    [CRYPT, 'nvme1n1', '260', '11'],
    [SWAP, 'nvme2n1', '261', '12'],
    [SPARE, 'nvme3n1', '262', '13'],
  ] as const;
  for (const [address, name, major, group] of disks) {
    h.f.device(nvme(address, group, { blockdevs: disk(name, major) }));
    h.f.tree.write(`/dev/${name}p1`, '');
  }
  h.f.tree.link('/dev/disk/by-uuid/1111-crypt', '/dev/nvme1n1p1');
  h.f.tree.link('/dev/disk/by-uuid/2222-swap', '/dev/nvme2n1p1');
  h.f.tree.write('/proc/cmdline', 'BOOT_IMAGE=/vmlinuz root=/dev/nvme0n1p1 ro\n');
  h.f.tree.write(
    '/etc/crypttab',
    '# <target> <source> <key> <options>\ncryptdata UUID=1111-crypt none luks\n',
  );
  h.f.fstab('UUID=2222-swap none swap sw 0 0\n');
  h.config([
    { match: { class: '0108' }, intent: 'vfio-pci' },
    { match: { id: '8086:10d3' }, intent: 'vfio' },
  ]);
  return h;
}

const byAddress = (results: { address: string }[], a: string) =>
  results.find((r) => r.address === a) as
    | { status: string; refusals: { check: string; message: string; forceable: boolean }[] }
    | undefined;

test('apply --guard-boot-devices refuses the root=, crypttab and fstab devices a broad rule selects, and applies the rest', async () => {
  const h = bootHost();
  const r = await h.run(['apply', '--guard-boot-devices', '--json']);
  assert.equal(r.code, EXIT.REFUSED, r.stdout + r.stderr);
  const j = r.json();
  assert.equal(j.guardBootDevices, true);
  assert.equal(j.boot, false);
  const why: Record<string, RegExp> = {
    [ROOTDISK]: /root on the kernel command line: \/dev\/nvme0n1p1/,
    [CRYPT]: /encrypted volume cryptdata \(crypttab\): UUID=1111-crypt/,
    [SWAP]: /swap \(fstab\): UUID=2222-swap/,
  };
  for (const [a, re] of Object.entries(why)) {
    const d = byAddress(j.results, a)!;
    assert.equal(d.status, 'refused', a);
    assert.equal(d.refusals[0]!.check, 'boot-device');
    assert.equal(d.refusals[0]!.forceable, false);
    assert.match(d.refusals[0]!.message, re);
    assert.match(
      d.refusals[0]!.message,
      /the host boots from it .*an apply that guards boot devices \(--guard-boot-devices, the node agent's\) never moves it: narrow the rule that selects it/,
    );
    assert.equal(h.k.driverOf(a), 'nvme', `${a} stays on nvme`);
  }
  // The same broad rules move everything else, with no acknowledgement (that is --boot's rule).
  assert.deepEqual(j.skipped, []);
  for (const a of [E1, E2]) assert.equal(byAddress(j.results, a)!.status, 'ok', a);
  assert.equal(h.k.driverOf(E1), 'vfio-pci');
  assert.equal(byAddress(j.results, SPARE)!.status, 'ok');
  assert.equal(h.k.driverOf(SPARE), 'vfio-pci');
});

test('without the guard the same apply plans the boot devices: the guard is what refuses them', async () => {
  const h = bootHost();
  const r = await h.run(['apply', '--dry-run', '--json']);
  const j = r.json();
  assert.equal(j.guardBootDevices, false);
  for (const a of [ROOTDISK, CRYPT, SWAP, SPARE])
    assert.equal(byAddress(j.results, a)!.status, 'planned', a);
  const guarded = (await h.run(['apply', '--dry-run', '--guard-boot-devices', '--json'])).json();
  for (const a of [ROOTDISK, CRYPT, SWAP])
    assert.equal(byAddress(guarded.results, a)!.status, 'refused', a);
  assert.equal(byAddress(guarded.results, SPARE)!.status, 'planned');
});

test('the library: converge(config, { guardBootDevices: true }); --boot keeps its own wording', async () => {
  const h = bootHost();
  const api = openHost({ root: h.f.dir, kernelIo: h.k, trust: { uids: [0, process.getuid!()] } });
  const dry = await api.converge(undefined, { dryRun: true, guardBootDevices: true });
  assert.equal(dry.guardBootDevices, true);
  assert.deepEqual(
    dry.results.filter((x) => x.status === 'refused').map((x) => x.address),
    [ROOTDISK, CRYPT, SWAP],
  );
  // An untraceable spec is a warning, as at boot (the fixture's fstab names no such disk here).
  h.f.fstab('UUID=2222-swap none swap sw 0 0\nUUID=9999-gone /srv ext4 defaults 0 2\n');
  const again = await api.converge(undefined, { dryRun: true, guardBootDevices: true });
  assert.ok(
    again.warnings.some((w) =>
      /boot device UUID=9999-gone \(\/srv \(fstab\)\) could not be traced to a PCI device/.test(w),
    ),
    again.warnings.join('\n'),
  );
  // At boot a broad rule needs acknowledging before it applies at all.
  h.config([{ match: { class: '0108' }, intent: 'vfio-pci', acknowledgeBroadMatch: true }]);
  const boot = await api.converge(undefined, { dryRun: true, boot: true, guardBootDevices: true });
  const root = boot.results.find((x) => x.address === ROOTDISK)!;
  assert.match(root.refusals[0]!.message, /a boot-time apply never moves it$/);
});
