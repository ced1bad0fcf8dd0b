// `vfioctl libvirt-hook`, invoked as libvirt invokes a qemu.d hook (GUEST OPERATION SUB-OPERATION
// EXTRA, the domain XML on standard input), against the kernel model; and `libvirt-xml`.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { spawnSync } from 'node:child_process';
import * as files from '../../src/boot/files';
import { E1, E2, LPC, type ModelHost, modelHosts, SMB, VN } from '../support/model-host';
import { parseDomain, VFIOCTL_XMLNS } from '../../src/libvirt/domain';
import { openHost } from '../../src/ops/index';

const host = modelHosts({ trustSelf: true });
const UUID = '0b1c7a3e-2b52-4c9b-8a58-6f0f6b2f8a11';
const REC = `/run/vfioctl/libvirt/${UUID}.json`;

function addr(a: string): string {
  const [d, b, rest] = a.split(':') as [string, string, string];
  const [s, f] = rest.split('.') as [string, string];
  return `<address domain='0x${d}' bus='0x${b}' slot='0x${s}' function='0x${f}'/>`;
}

/**
 * A hostdev as libvirt formats it (managed given explicitly unless null: libvirt's default is
 * 'no').
 */
function hostdev(a: string, managed: 'yes' | 'no' | null = 'no', model?: string): string {
  const m = managed === null ? '' : ` managed='${managed}'`;
  return `    <hostdev mode='subsystem' type='pci'${m}>
      ${model ? `<driver name='vfio' model='${model}'/>` : ''}
      <source>
        ${addr(a)}
      </source>
      <address type='pci' domain='0x0000' bus='0x05' slot='0x00' function='0x0'/>
    </hostdev>`;
}

function domain(devices: string[], metadata = ''): string {
  return `<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>win11</name>
  <uuid>${UUID}</uuid>
  <metadata>
${metadata}
  </metadata>
  <memory unit='KiB'>4194304</memory>
  <os><type arch='x86_64' machine='pc-q35-7.2'>hvm</type></os>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <interface type='network'><source network='default'/></interface>
${devices.join('\n')}
  </devices>
  <qemu:commandline><qemu:arg value='-s'/></qemu:commandline>
</domain>
`;
}

const opt = (attrs: string) =>
  `    <vfioctl:passthrough xmlns:vfioctl='${VFIOCTL_XMLNS}' ${attrs}/>`;

/** libvirt's argv for a qemu hook: GUEST OPERATION SUB-OPERATION EXTRA. */
const hook = (h: ModelHost, op: string, sub: string, xml: string | (() => string)) =>
  h.run(['libvirt-hook', '--', 'win11', op, sub, '-'], xml);

function record(h: ModelHost): string[] | null {
  const t = h.f.tree.read(REC);
  return t === undefined ? null : JSON.parse(t).devices;
}

test('prepare begin binds every managed=no PCI hostdev (driver model as --driver); managed=yes, USB and hostdevs inside metadata are left alone; release end gives them back', async () => {
  const h = host();
  const xml = domain(
    [
      hostdev(E2, null),
      hostdev(VN, 'no', 'virtio_vfio_pci'),
      hostdev(E1, 'yes'),
      `    <hostdev mode='subsystem' type='usb' managed='no'><source><vendor id='0x046d'/><product id='0xc52b'/></source></hostdev>`,
    ],
    `    <other:thing xmlns:other='https://example.org/x'><hostdev mode='subsystem' type='pci' managed='no'><source>${addr(SMB)}</source></hostdev></other:thing>`,
  );
  const r = await hook(h, 'prepare', 'begin', xml);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, '');
  assert.equal(h.state(E2).driver, 'vfio-pci');
  assert.equal(h.state(VN).driver, 'virtio_vfio_pci');
  assert.equal(h.state(E1).driver, 'e1000e', "managed='yes' is libvirt's");
  assert.equal(
    h.state(SMB).driver,
    'i801_smbus',
    'a hostdev inside <metadata> is not a device of the domain',
  );
  assert.deepEqual(record(h), [E2, VN]);
  const rel = await hook(h, 'release', 'end', xml);
  assert.equal(rel.code, 0, rel.stderr);
  assert.equal(rel.stdout, '');
  assert.deepEqual(h.state(E2), { driver: 'e1000e', override: null, vfioDev: false });
  assert.deepEqual(h.state(VN), { driver: 'virtio-pci', override: null, vfioDev: false });
  assert.equal(record(h), null, 'nothing left to give back: the record is gone');
});

test('release gives back only what prepare bound: a device a vfioctl rule keeps on VFIO stays, also one configured while the guest ran', async () => {
  const h = host();
  assert.equal((await h.run(['set', E1, 'vfio'])).code, 0);
  const xml = domain([hostdev(E1), hostdev(E2), hostdev(VN)]);
  const r = await hook(h, 'prepare', 'begin', xml);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`${E1}: already on vfio-pci; left as it is`));
  assert.deepEqual(record(h), [E2, VN], 'the rule-bound device is not recorded');
  // While the guest runs, the admin makes VN persistent.
  assert.equal((await h.run(['set', VN, 'vfio', '--noprobe'])).code, 0);
  const rel = await hook(h, 'release', 'end', xml);
  assert.equal(rel.code, 0, rel.stderr);
  assert.equal(rel.stdout, '');
  assert.match(
    rel.stderr,
    new RegExp(`${VN}: kept: rules\\[1\\] \\(line \\d+\\) of the configuration wants it on 'vfio'`),
  );
  assert.equal(h.state(E1).driver, 'vfio-pci');
  assert.equal(h.state(VN).driver, 'virtio_vfio_pci');
  assert.equal(h.state(E2).driver, 'e1000e');
  assert.equal(record(h), null);
});

test('all or none: a domain naming an in-use NIC is refused with the fix, nothing is written; force=yes in the vfioctl namespace goes ahead', async () => {
  const h = host({ eth0: { name: 'eth0', up: true, ipv4: '192.0.2.5' } });
  const xml = domain([hostdev(E2), hostdev(E1)]);
  const r = await hook(h, 'prepare', 'begin', xml);
  assert.equal(r.code, 3);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trim().split('\n');
  assert.match(
    lines[0]!,
    new RegExp(
      `^vfioctl libvirt-hook: guest 'win11': ${E1}: in-use: the host is using it: interface eth0 is up.*or --force$`,
    ),
  );
  assert.match(
    lines[1]!,
    /^vfioctl libvirt-hook: guest 'win11': nothing was bound .*vfioctl:passthrough force='yes'/,
  );
  assert.equal(
    lines.length,
    2,
    'one line per problem: the free device refused alongside is not one',
  );
  assert.equal(h.k.writes.length, 0);
  assert.equal(record(h), null);
  const forced = await hook(
    h,
    'prepare',
    'begin',
    domain([hostdev(E2), hostdev(E1)], opt("force='yes'")),
  );
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(h.state(E1).driver, 'vfio-pci');
  assert.equal(h.state(E2).driver, 'vfio-pci');
});

test('all or none: a failed probe of the second device rolls the first back, and its hooks hear post-unbind', async () => {
  const h = host();
  const log = h.f.tree.abs('/hook.log');
  h.hook('/etc/vfioctl/hooks.d/10-dm', `echo "$1 $2" >> ${log}`);
  h.k.failProbe('vfio-pci', E2);
  const r = await hook(h, 'prepare', 'begin', domain([hostdev(E1), hostdev(E2)]));
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(
    r.stderr,
    new RegExp(
      `${E2}: verify ${E2} is on vfio-pci registered with VFIO failed: ${E2} did not bind to vfio-pci`,
    ),
  );
  assert.doesNotMatch(
    r.stderr,
    /rolled back because/,
    'the collateral rollback is not a problem line of its own',
  );
  for (const d of [E1, E2])
    assert.deepEqual(h.state(d), { driver: 'e1000e', override: null, vfioDev: false });
  const events = (h.f.tree.read('/hook.log') ?? '').trim().split('\n');
  assert.deepEqual(events, [
    `pre-bind ${E1}`,
    `pre-probe ${E1}`,
    `post-bind ${E1}`,
    `pre-bind ${E2}`,
    `pre-probe ${E2}`,
    `post-unbind ${E2}`,
    `post-unbind ${E1}`,
  ]);
  assert.equal(record(h), null);
  assert.deepEqual(h.f.tree.list('/run/vfioctl/bound'), []);
});

test("group='yes' moves the whole IOMMU group (and release returns it); without it the group refusal names the opt-in", async () => {
  const h = host();
  const plain = await hook(h, 'prepare', 'begin', domain([hostdev(LPC)]));
  assert.equal(plain.code, 3);
  assert.match(plain.stderr, new RegExp(`${LPC}: iommu-group: .*${SMB}`));
  assert.equal(h.k.writes.length, 0);
  const xml = domain([hostdev(LPC)], opt("group='yes'"));
  const r = await hook(h, 'prepare', 'begin', xml);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(h.state(LPC).driver, 'vfio-pci');
  assert.equal(h.state(SMB).driver, 'vfio-pci');
  assert.deepEqual(record(h), [LPC, SMB]);
  assert.equal((await hook(h, 'release', 'end', xml)).code, 0);
  assert.equal(h.state(LPC).driver, 'lpc_ich');
  assert.equal(h.state(SMB).driver, 'i801_smbus');
});

test('a driver model outside its ID table is refused as --driver would be (forceable for VFIO drivers)', async () => {
  const h = host();
  const r = await hook(h, 'prepare', 'begin', domain([hostdev(E2, 'no', 'virtio_vfio_pci')]));
  assert.equal(r.code, 3);
  assert.match(r.stderr, new RegExp(`${E2}: id-table: `));
  assert.equal(h.state(E2).driver, 'e1000e');
});

test('nothing on standard output for any operation; only prepare begin and release end read the XML or touch the host', async () => {
  const h = host();
  const xml = domain([hostdev(E2)]);
  const untouched = () => {
    throw new Error('standard input read');
  };
  for (const [op, sub] of [
    ['start', 'begin'],
    ['started', 'begin'],
    ['stopped', 'end'],
    ['release', 'begin'],
    ['prepare', 'end'],
    ['migrate', 'begin'],
    ['restore', 'begin'],
    ['reconnect', 'begin'],
    ['attach', 'begin'],
    ['unknown-op', 'x'],
  ] as const) {
    const r = await hook(h, op, sub, untouched);
    assert.deepEqual([op, sub, r.code, r.stdout, r.stderr], [op, sub, 0, '', '']);
  }
  assert.equal(h.k.writes.length, 0);
  for (const [op, sub] of [
    ['prepare', 'begin'],
    ['prepare', 'begin'],
    ['release', 'end'],
    ['release', 'end'],
  ] as const) {
    const r = await hook(h, op, sub, xml);
    assert.deepEqual([op, sub, r.code, r.stdout], [op, sub, 0, '']);
  }
  const failing = await hook(h, 'prepare', 'begin', domain([hostdev('0000:00:0a.0')]));
  assert.deepEqual([failing.code, failing.stdout], [2, '']);
  assert.match(failing.stderr, /0000:00:0a\.0: input: no PCI device 0000:00:0a\.0/);
  assert.doesNotMatch(failing.stderr, /opt in/, 'bad input is not something an opt-in fixes');
  // A guest name that looks like an option (the hook script passes '--').
  const dash = await h.run(['libvirt-hook', '--', '--help', 'started', 'begin', '-'], untouched);
  assert.deepEqual([dash.code, dash.stdout], [0, '']);
});

test('malformed domain XML is exit 2 with the parser position, and nothing is bound', async () => {
  const h = host();
  const cases: [string, RegExp][] = [
    [
      domain([hostdev(E2)]).replace('</devices>', '</device>'),
      /domain XML:\d+:\d+: unexpected close tag/,
    ],
    [domain([hostdev(E2)]).replace('</domain>', ''), /domain XML:\d+:\d+: unclosed tag: domain/],
    [
      domain([hostdev(E2)], '    <vfioctl:passthrough force="yes"/>'),
      /domain XML:5:\d+: unbound namespace prefix: "vfioctl"/,
    ],
    [
      domain([hostdev(E2)], opt("force='maybe'")),
      /domain XML:5:\d+: <vfioctl:passthrough force='maybe'>: give 'yes' or 'no'/,
    ],
    [
      domain([hostdev(E2)], opt("froce='yes'")),
      /unknown attribute 'froce' \(known: group, force\)/,
    ],
    [
      domain([hostdev(E2).replace("slot='0x05'", "slot='0x25'")]),
      /source <address .* slot='0x25'.*is not a PCI address/,
    ],
    [domain([hostdev(E2).replace(/<source>[\s\S]*?<\/source>/, '')]), /has no <source><address/],
    ['', /domain XML: empty document/],
    [
      '<network><name>default</name></network>',
      /the document element is <network>, not a libvirt <domain>/,
    ],
    [domain([hostdev(E2)]).replace(`<uuid>${UUID}</uuid>`, ''), /has no <uuid>/],
  ];
  for (const [xml, want] of cases) {
    const r = await hook(h, 'prepare', 'begin', xml);
    assert.equal(r.code, 2, `${want}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, want);
  }
  assert.equal(h.k.writes.length, 0);
  assert.equal(h.state(E2).driver, 'e1000e');
});

test('parseDomain: namespaces are resolved by URI, not prefix; libvirt address fields in hex, octal or decimal', () => {
  const xml = domain(
    [hostdev(E2).replace("slot='0x05'", "slot='5'").replace("bus='0x00'", "bus='00'")],
    `    <x:passthrough xmlns:x='${VFIOCTL_XMLNS}' group='yes'/>\n    <vfioctl:passthrough xmlns:vfioctl='https://example.org/not-ours' force='yes'/>`,
  );
  const d = parseDomain(xml);
  assert.deepEqual(d.options, { group: true, force: false });
  assert.deepEqual(
    d.hostdevs.map((x) => [x.address, x.managed, x.model]),
    [[E2, false, null]],
  );
  assert.equal(d.name, 'win11');
  assert.equal(d.uuid, UUID);
});

test('libvirt-xml prints managed=no hostdev elements, with the variant as driver model only when asked', async () => {
  const h = host();
  const r = await h.run(['libvirt-xml', '00:03.0', E2]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(
    r.stdout,
    `<hostdev mode='subsystem' type='pci' managed='no'>\n  <source>\n    <address domain='0x0000' bus='0x00' slot='0x03' function='0x0'/>\n  </source>\n</hostdev>\n<hostdev mode='subsystem' type='pci' managed='no'>\n  <source>\n    <address domain='0x0000' bus='0x00' slot='0x05' function='0x0'/>\n  </source>\n</hostdev>\n`,
  );
  assert.match(
    r.stderr,
    new RegExp(`${VN} is not on a VFIO driver \\(now: virtio-pci\\).*vfioctl set ${VN} vfio`),
  );
  const m = await h.run(['libvirt-xml', VN, E2, '--driver-model', '--json']);
  assert.equal(m.code, 0, m.stderr);
  assert.deepEqual(
    m.json().devices.map((d: { address: string; model: string | null }) => [d.address, d.model]),
    [
      [VN, 'virtio_vfio_pci'],
      [E2, null],
    ],
  );
  // What it prints is what the hook reads back.
  const back = parseDomain(domain([m.json().devices[0].xml]));
  assert.deepEqual(
    back.hostdevs.map((x) => [x.address, x.managed, x.model]),
    [[VN, false, 'virtio_vfio_pci']],
  );
  assert.equal((await h.run(['libvirt-xml', '0000:00:0a.0'])).code, 2);
});

test('show and doctor warn about devices without a reset method (none found by the kernel, or all disabled); not on kernels before 5.15', async () => {
  const h = host();
  h.f.tree.rm(`/sys/bus/pci/devices/${E2}/reset_method`); // the kernel hides it when it found no method
  h.f.tree.write(`/sys/bus/pci/devices/${VN}/reset_method`, '\n'); // an admin wrote '' to it
  const s = await h.run(['show', E2]);
  assert.equal(s.code, 0);
  assert.match(
    s.stderr,
    new RegExp(
      `warning: ${E2}: no reset method: the kernel found none for it .*may not survive a VM restart`,
    ),
  );
  const v = await h.run(['show', VN, '--json']);
  assert.match(
    v.stderr,
    /no reset method: reset_method is empty .*echo default > \/sys\/bus\/pci\/devices\/0000:00:03\.0\/reset_method/,
  );
  assert.doesNotMatch((await h.run(['show', E1])).stderr, /reset/);
  // doctor names the ones handed to VFIO or configured for it, not every device of the host.
  assert.doesNotMatch((await h.run(['doctor'])).stdout, /reset/);
  assert.equal((await h.run(['bind', E2])).code, 0);
  assert.equal((await h.run(['set', VN, 'vfio', '--noprobe'])).code, 0);
  const d = await h.run(['doctor', '--json']);
  const c = d.json().checks.find((x: { id: string }) => x.id === 'reset');
  assert.equal(c.status, 'warn');
  assert.match(
    c.message,
    new RegExp(`${VN} \\(all disabled in reset_method\\); ${E2} \\(none found by the kernel\\)`),
  );
  // The prepare hook says so too (on standard error), and still binds.
  const r = await hook(h, 'prepare', 'begin', domain([hostdev(VN)]));
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, new RegExp(`guest 'win11': warning: ${VN}: no reset method`));
  const old = host({ kernel: '5.10' });
  old.f.tree.rm(`/sys/bus/pci/devices/${E2}/reset_method`);
  assert.doesNotMatch(
    (await old.run(['show', E2])).stderr,
    /reset/,
    '5.10 has no reset_method attribute at all',
  );
});

test("install --libvirt writes the qemu.d hook, which hands libvirt's argv and standard input to vfioctl and writes nothing to standard output; --uninstall removes it", async () => {
  const h = host();
  // A stand-in vfioctl that shows what it was given, on standard output (the hook must redirect
  // it).
  const fake = h.f.tree.abs('/opt/fake-vfioctl');
  h.f.tree.write('/opt/fake-vfioctl', `#!/bin/sh\nprintf '%s|' "$@"; echo; cat\n`, 0o755);
  const HOOK = '/etc/libvirt/hooks/qemu.d/50-vfioctl';
  const dry = await h.run(['install', '--libvirt', '--dry-run', '--exec', fake]);
  assert.equal(dry.code, 0, dry.stderr);
  assert.equal(dry.stdout, `would write: ${HOOK}\n`);
  assert.equal(h.f.tree.exists(HOOK), false);
  const r = await h.run(['install', '--libvirt', '--exec', fake]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^wrote: ${HOOK}\nnext: restart libvirt's daemon`));
  assert.equal(fs.statSync(h.f.tree.abs(HOOK)).mode & 0o777, 0o755);
  assert.equal(
    h.f.tree.exists('/etc/systemd/system/vfioctl-early.service'),
    false,
    '--libvirt installs only the hook',
  );
  const p = spawnSync(h.f.tree.abs(HOOK), ['--odd name', 'prepare', 'begin', '-'], {
    input: '<domain/>',
    encoding: 'utf8',
  });
  assert.equal(p.status, 0, p.stderr);
  assert.equal(p.stdout, '');
  assert.equal(p.stderr, 'libvirt-hook|--|--odd name|prepare|begin|-|\n<domain/>');
  assert.equal(
    (await h.run(['install', '--libvirt', '--exec', fake])).stdout,
    `unchanged: ${HOOK}\n`,
  );
  const u = await h.run(['install', '--libvirt', '--uninstall']);
  assert.equal(u.stdout.split('\n')[0], `removed: ${HOOK}`);
  assert.equal(h.f.tree.exists(HOOK), false);
  // Without vfioctl (the package removed, its conffile kept) guests start as before.
  h.f.tree.write(
    HOOK,
    files.libvirtHook(files.PACKAGE_LAYOUT, '/nonexistent/vfioctl').content,
    0o755,
  );
  const gone = spawnSync(h.f.tree.abs(HOOK), ['g', 'prepare', 'begin', '-'], {
    input: '<domain/>',
    encoding: 'utf8',
  });
  assert.deepEqual([gone.status, gone.stdout, gone.stderr], [0, '', '']);
  assert.equal(
    (await h.run(['install', '--libvirt', '--uninstall'])).stdout.split('\n')[0],
    `kept (the package's): ${HOOK}`,
  );
});

test('the library API runs the same hook: typed results, problems as lines, nothing printed', async () => {
  const h = host();
  const api = openHost({ root: h.f.dir, kernelIo: h.k, trust: { uids: [0, process.getuid!()] } });
  const xml = domain([hostdev(E2)]);
  const r = await api.libvirtHook({
    guest: 'win11',
    operation: 'prepare',
    subOperation: 'begin',
    xml: () => xml,
  });
  assert.deepEqual(
    [r.action, r.domain, r.exitCode, r.results.map((x) => [x.address, x.status, x.driver])],
    ['prepare', 'win11', 0, [[E2, 'ok', 'vfio-pci']]],
  );
  const again = await api.libvirtHook({
    guest: 'win11',
    operation: 'release',
    subOperation: 'end',
    xml: () => xml,
  });
  assert.deepEqual([again.action, again.exitCode, h.state(E2).driver], ['release', 0, 'e1000e']);
  assert.equal(api.libvirtXml(['00:05.0']).devices[0]!.address, E2);
});
