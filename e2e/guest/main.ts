// The guest runner: started by /init inside the guest (node, chrooted into the host's root).
// Reads the plan, coldplugs host drivers the way udev would, runs each scenario in turn, and writes
// one JSON result per scenario to the results share, so a crash loses only the scenario in flight.
// The second boot of a reboot pair is not coldplugged here: its scenario runs what systemd would
// (the early unit, the real systemd-udevd's coldplug, the late unit) and checks each step.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GUEST_RESULTS_DIR, MACHINE } from '../machine';
import { SCENARIOS } from '../scenarios';
import {
  CheckFailed,
  ScenarioContext,
  SkipScenario,
  type GuestPlan,
  type ScenarioResult,
  type Status,
} from './scenario';
import * as sysfs from './sysfs';

const RESULTS = path.join(GUEST_RESULTS_DIR, 'results');
/** The 9p devices under the guest's root: clean-up never touches them. */
const UNTOUCHABLE = new Set<string>([MACHINE.rootfs.address, MACHINE.results.address]);

function say(msg: string): void {
  process.stdout.write(`E2E: ${msg}\n`);
}

function sh(argv: readonly string[]): { code: number | null; out: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

/** Kernel log since the last call (and clears it). */
function takeKmsg(): string[] {
  return sh(['dmesg', '-c'])
    .out.split('\n')
    .filter((l) => l.trim() && !/\b9pnet|overlayfs\b/.test(l));
}

/**
 * What udev's coldplug does at boot (the guest has no udev): load the modules matching every
 * device's modalias on every bus, again for devices those drivers create (virtio children...).
 */
function coldplug(): void {
  const seen = new Set<string>();
  for (let pass = 0; pass < 3; pass++) {
    const fresh: string[] = [];
    for (const bus of fs.readdirSync('/sys/bus')) {
      const dir = `/sys/bus/${bus}/devices`;
      for (const d of fs.existsSync(dir) ? fs.readdirSync(dir) : []) {
        let alias: string;
        try {
          alias = fs.readFileSync(`${dir}/${d}/modalias`, 'utf8').trim();
        } catch {
          continue;
        }
        if (alias && !seen.has(alias)) fresh.push(alias);
        seen.add(alias);
      }
    }
    if (fresh.length === 0) return;
    for (const alias of fresh) sh(['modprobe', '-b', '-q', alias]);
  }
}

/** Facts about this boot for the report: what the kernel looks like before any scenario. */
function bootFacts(plan: GuestPlan): Record<string, unknown> {
  const devices = Object.fromEntries(
    sysfs.allDevices().map((a) => [
      a,
      {
        ids: `${sysfs.attr(a, 'vendor')?.slice(2)}:${sysfs.attr(a, 'device')?.slice(2)}`,
        ...sysfs.stateOf(a),
      },
    ]),
  );
  const groups: Record<string, string[]> = {};
  for (const g of fs.existsSync('/sys/kernel/iommu_groups')
    ? fs.readdirSync('/sys/kernel/iommu_groups')
    : [])
    groups[g] = sysfs.groupMembers(g);
  return {
    boot: plan.boot,
    coldplug: !plan.reboot || plan.reboot.stage === 1 ? 'runner' : 'none',
    uname: sh(['uname', '-r']).out.trim(),
    cmdline: fs.readFileSync('/proc/cmdline', 'utf8').trim(),
    uptime: Number(fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]),
    node: process.version,
    devices,
    iommuGroups: groups,
    vfioAliases: sh(['sh', '-c', `grep '^alias vfio_pci:' /lib/modules/$(uname -r)/modules.alias`])
      .out.trim()
      .split('\n'),
    // How the guest's root looks to a tool: mounts, and which virtio device carries which 9p tag.
    mountinfo: fs.readFileSync('/proc/self/mountinfo', 'utf8').trim().split('\n'),
    virtioMountTags: Object.fromEntries(
      fs
        .readdirSync('/sys/bus/virtio/devices')
        .filter((v) => fs.existsSync(`/sys/bus/virtio/devices/${v}/mount_tag`))
        .map((v) => [
          v,
          {
            tag: fs
              .readFileSync(`/sys/bus/virtio/devices/${v}/mount_tag`, 'utf8')
              .replace(/\0/g, '')
              .trim(),
            device: path.basename(path.dirname(fs.realpathSync(`/sys/bus/virtio/devices/${v}`))),
          },
        ]),
    ),
  };
}

function writeJson(file: string, data: unknown): void {
  fs.writeFileSync(file, JSON.stringify(data, null, 2) + '\n');
}

function runOne(plan: GuestPlan, name: string): ScenarioResult {
  const scenario = SCENARIOS.find((s) => s.name === name);
  const ctx = new ScenarioContext(plan);
  const baseline = sysfs.snapshot();
  takeKmsg();
  const t0 = Date.now();
  let status: Status = 'pass';
  let message: string | null = null;
  try {
    if (!scenario) throw new Error(`no scenario named ${name}`);
    scenario.run(ctx);
  } catch (e) {
    if (e instanceof SkipScenario) {
      status = 'skip';
      message = e.message;
    } else {
      status = 'fail';
      message = e instanceof CheckFailed ? e.message : ((e as Error).stack ?? String(e));
    }
  }
  const ms = Date.now() - t0;
  // Leave the machine as the scenario found it, whatever happened, so failures do not cascade.
  // A reboot boot runs one scenario and powers off: what it leaves is the state it tests.
  for (const [address, want] of plan.reboot ? [] : baseline) {
    if (UNTOUCHABLE.has(address) || !sysfs.exists(address)) continue;
    const did = sysfs.restore(address, want);
    if (did.length > 0) ctx.note(`clean-up ${address}: ${did.join(', ')}`);
  }
  return {
    scenario: name,
    boot: plan.boot,
    status,
    message,
    ms,
    transcript: ctx.transcript,
    kmsg: takeKmsg(),
    figures: ctx.figures,
  };
}

function main(): void {
  const plan = JSON.parse(fs.readFileSync(process.argv[2]!, 'utf8')) as GuestPlan;
  fs.mkdirSync(RESULTS, { recursive: true });
  const ownColdplug = !plan.reboot || plan.reboot.stage === 1;
  say(
    `runner up at uptime ${fs.readFileSync('/proc/uptime', 'utf8').split(' ')[0]}s; ${ownColdplug ? 'coldplug' : 'no coldplug (the scenario runs the boot layers and udev)'}`,
  );
  if (ownColdplug) coldplug();
  writeJson(path.join(GUEST_RESULTS_DIR, 'facts.json'), bootFacts(plan));
  takeKmsg();
  for (const name of plan.scenarios) {
    fs.writeFileSync(path.join(RESULTS, `${name}.started`), '');
    say(`scenario ${name} ...`);
    const r = runOne(plan, name);
    writeJson(path.join(RESULTS, `${name}.json`), r);
    say(
      `scenario ${name}: ${r.status.toUpperCase()} (${(r.ms / 1000).toFixed(1)}s)${r.message ? `: ${r.message.split('\n')[0]}` : ''}`,
    );
    for (const f of r.figures ?? []) say(`scenario ${name}: figure: ${f}`);
  }
  say('runner done');
}

main();
