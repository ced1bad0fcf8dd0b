// Progress of writing commands on a terminal's stderr (issue 12, item 6): one updating line with
// the count, the device being worked on and the elapsed time, cleared at the end; nothing extra
// with --json or when stderr is not a terminal. The terminal is a fake Io with errIsTTY.
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { run } from '../../src/cli/main';
import { E1, E2, modelHosts, type ModelHost, VN } from '../support/model-host';

const host = modelHosts({ trustSelf: true });
// What a progress line is: carriage return, erase line, then the text (or nothing: a clear).
const ESC = String.fromCharCode(27);
const PROGRESS = new RegExp(
  `\\r${ESC}\\[2K(vfioctl: (bind|unbind|sriov) \\d+/\\d+(: [0-9a-f:.]+)? \\(\\d+\\.\\d s\\))?`,
  'g',
);
/** Nothing a terminal would take as a control: no escape, no carriage return. */
const plainText = (s: string) => !s.includes(ESC) && !s.includes('\r');

async function runOn(
  h: ModelHost,
  args: string[],
  tty: boolean,
): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await run(['--root', h.f.dir, ...args], {
    out: (s) => (out += s),
    err: (s) => (err += s),
    env: h.env,
    errIsTTY: tty,
    kernelIo: () => h.k,
  });
  return { code, out, err };
}

/** The same command on two identical hosts, one with a terminal on stderr. */
async function both(args: string[], setup: (h: ModelHost) => Promise<void> | void = () => {}) {
  const [a, b] = [host(), host()];
  await setup(a);
  await setup(b);
  return { tty: await runOn(a, args, true), plain: await runOn(b, args, false) };
}

function progressLines(err: string): string[] {
  return [...err.matchAll(PROGRESS)].map((m) => m[1] ?? '');
}

test('bind of several devices on a terminal: count, current device, elapsed on one line, cleared at the end', async () => {
  const { tty, plain } = await both(['bind', E1, VN, E2]);
  assert.equal(tty.code, 0, tty.err);
  assert.equal(tty.out, plain.out, 'stdout is the same');
  const lines = progressLines(tty.err);
  const shown = lines.filter(Boolean);
  assert.ok(shown.length >= 3, JSON.stringify(tty.err));
  for (const a of [E1, VN, E2])
    assert.ok(
      shown.some((l) => l.includes(`: ${a} (`)),
      `${a} shown as the current device`,
    );
  assert.ok(
    shown.some((l) => l.startsWith('vfioctl: bind 2/3')),
    'the count goes up',
  );
  assert.ok(
    shown.every((l) => /^vfioctl: bind [0-2]\/3/.test(l)),
    'never past the total',
  );
  assert.equal(lines[lines.length - 1], '', 'the last thing written is the clear');
  // Without the progress decorations, stderr is exactly what a non-terminal gets.
  assert.equal(tty.err.replace(PROGRESS, ''), plain.err);
  assert.ok(plainText(plain.err), 'not a terminal: nothing extra');
});

test('unbind and apply of several devices show progress too; --json and a single device do not', async () => {
  const bound = async (h: ModelHost) => {
    assert.equal((await runOn(h, ['bind', E1, E2], false)).code, 0);
  };
  const un = await both(['unbind', E1, E2], bound);
  assert.equal(un.tty.code, 0, un.tty.err);
  assert.ok(
    progressLines(un.tty.err).some((l) => l.startsWith('vfioctl: unbind 1/2')),
    JSON.stringify(un.tty.err),
  );
  assert.equal(un.tty.err.replace(PROGRESS, ''), un.plain.err);

  const configured = (h: ModelHost) =>
    h.config([
      { match: { address: E1 }, intent: 'vfio' },
      { match: { address: E2 }, intent: 'vfio' },
    ]);
  const ap = await both(['apply'], configured);
  assert.equal(ap.tty.code, 0, ap.tty.err);
  assert.ok(
    progressLines(ap.tty.err).some((l) => /^vfioctl: bind 1\/2: /.test(l)),
    JSON.stringify(ap.tty.err),
  );
  assert.equal(ap.tty.out, ap.plain.out);

  const json = await both(['apply', '--json'], configured);
  assert.equal(json.tty.code, 0);
  assert.equal(json.tty.err, json.plain.err, '--json: stderr as without a terminal');
  assert.ok(plainText(json.tty.err));
  JSON.parse(json.tty.out);

  const one = await both(['bind', E1]);
  assert.ok(plainText(one.tty.err), 'one device: no progress line');
  const dry = await both(['bind', E1, E2, '--dry-run']);
  assert.ok(plainText(dry.tty.err), 'a dry run changes nothing: no progress');
});
