// The shipped single file (dist/vfioctl.js) must run every command path, not just the one the
// unit tests import from source: a dependency that esbuild cannot bundle fails only here.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { E1, E2, ModelHost } from '../support/model-host';

const DIST = path.resolve(__dirname, '../../../dist/vfioctl.js');

test('the bundle starts and runs the configuration commands (jsonc-parser, generated validator)', () => {
  const h = new ModelHost();
  try {
    const env = { ...process.env, VFIOCTL_TRUST_UID: String(process.getuid?.()) };
    const run = (args: string[]) =>
      spawnSync(process.execPath, [DIST, '--root', h.f.dir, ...args], { env, encoding: 'utf8' });
    const v = run(['--version']);
    assert.equal(v.status, 0, v.stderr);
    assert.match(v.stdout, /^\d+\.\d+\.\d+/);
    const s = run(['set', E1, 'vfio', '--noprobe']);
    assert.equal(s.status, 0, s.stderr);
    const st = run(['status', '--json']);
    assert.equal(st.status, 5, `configured, never applied: drift (exit 5)\n${st.stderr}`);
    assert.deepEqual(
      JSON.parse(st.stdout).devices.map((d: { address: string; drift: string }) => [
        d.address,
        d.drift,
      ]),
      [[E1, 'pending']],
    );
    h.f.tree.write(
      '/etc/vfioctl/vfioctl.json',
      '{ "version": 1, "rules": [ { "match": { "id": "x" } } ] }',
      0o644,
    );
    const bad = run(['apply']);
    assert.equal(bad.status, 2);
    assert.match(bad.stderr, /vfioctl\.json:1:\d+: rules\[0\]\.match\.id: must match pattern/);
  } finally {
    h.cleanup();
  }
});

test('the bundle runs the libvirt hook (saxes, loaded when the XML is parsed): nothing on stdout, malformed XML is exit 2 with its position', () => {
  const h = new ModelHost();
  try {
    const env = { ...process.env, VFIOCTL_TRUST_UID: String(process.getuid?.()) };
    const hook = (input: string) =>
      spawnSync(
        process.execPath,
        [DIST, '--root', h.f.dir, 'libvirt-hook', '--', 'g', 'prepare', 'begin', '-'],
        { env, input, encoding: 'utf8' },
      );
    const xml = `<domain type='kvm'><name>g</name><uuid>0b1c7a3e-2b52-4c9b-8a58-6f0f6b2f8a11</uuid><devices><hostdev mode='subsystem' type='pci' managed='no'><source><address domain='0x0000' bus='0x00' slot='0x05' function='0x0'/></source></hostdev></devices></domain>`;
    const dry = hook(xml.replace("managed='no'", "managed='yes'"));
    assert.deepEqual([dry.status, dry.stdout, dry.stderr], [0, '', '']);
    const bad = hook(xml.replace('</devices>', ''));
    assert.deepEqual([bad.status, bad.stdout], [2, '']);
    assert.match(bad.stderr, /^vfioctl: domain XML:1:\d+: unexpected close tag/);
  } finally {
    h.cleanup();
  }
});

test("the bundle edits an admin's vfioctl.json byte for byte as the sources do (jsonc-parser's formatter, its tables built on first use)", async () => {
  const bundled = new ModelHost();
  const source = new ModelHost();
  try {
    // Rules laid out on one line are edited by jsonc-parser's modify(), whose formatter indents
    // from its interned tables; the admin's comment stays.
    const text =
      '{\n  // the admin\'s note\n  "version": 1, "rules": [{ "match": { "address": "0000:00:03.0" }, "intent": "host" }] }\n';
    for (const h of [bundled, source]) h.f.tree.write('/etc/vfioctl/vfioctl.json', text, 0o644);
    const env = { ...process.env, VFIOCTL_TRUST_UID: String(process.getuid?.()) };
    const steps = [
      ['set', E1, 'vfio', '--noprobe'],
      ['set', E2, 'none', '--noprobe'],
      ['set', E1, 'host', '--noprobe'],
    ];
    for (const args of steps) {
      const b = spawnSync(process.execPath, [DIST, '--root', bundled.f.dir, ...args], {
        env,
        encoding: 'utf8',
      });
      const s = await source.run(args);
      assert.equal(b.status, s.code, `${args.join(' ')}: ${b.stderr} / ${s.stderr}`);
      assert.equal(
        bundled.f.tree.read('/etc/vfioctl/vfioctl.json'),
        source.f.tree.read('/etc/vfioctl/vfioctl.json'),
        args.join(' '),
      );
    }
    assert.match(bundled.f.tree.read('/etc/vfioctl/vfioctl.json')!, /\n {6}"match": \{\n/);
    assert.match(bundled.f.tree.read('/etc/vfioctl/vfioctl.json')!, /the admin's note/);
  } finally {
    bundled.cleanup();
    source.cleanup();
  }
});
