// Ansible in the guest (its root is the host's, so Debian's ansible-core is there once
// `npm run test:ansible` installed it): the vfioctl.fleet collection's vfioctl_policy module,
// played against localhost, really moves a device; the same play again changes nothing; the
// policy removed gives the device back.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { Scenario, ScenarioContext } from '../guest/scenario';
import * as sysfs from '../guest/sysfs';
import { MACHINE } from '../machine';
import { expectOnHost, expectOnVfio, withWritable } from './common';
import { withHooksDir } from './hooks';

/** The repository (build/e2e/scenarios -> the checkout): the collection lives in ansible/. */
const REPO = path.resolve(__dirname, '../../..');
const WORK = '/run/e2e-home/ansible';

/** Runs a play; returns the recap's changed count for localhost. */
function play(ctx: ScenarioContext, playbook: string, extra: string[] = []): number {
  const env = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    HOME: '/run/e2e-home',
    ANSIBLE_COLLECTIONS_PATH: path.join(REPO, 'ansible'),
    ANSIBLE_LOCAL_TEMP: `${WORK}/tmp`,
    ANSIBLE_REMOTE_TEMP: `${WORK}/tmp`,
    ANSIBLE_NOCOLOR: '1',
    ANSIBLE_RETRY_FILES_ENABLED: '0',
    ANSIBLE_PYTHON_INTERPRETER: '/usr/bin/python3',
    // The guest's /tmp is the host's, read-only.
    TMPDIR: `${WORK}/tmp`,
  };
  const t = Date.now();
  const r = spawnSync('ansible-playbook', ['-i', 'localhost,', '-c', 'local', playbook, ...extra], {
    encoding: 'utf8',
    env,
    timeout: 240_000,
  });
  ctx.note(
    `$ ansible-playbook ${playbook} ${extra.join(' ')} -> exit ${r.status} (${Date.now() - t} ms)\n${r.stdout}${r.stderr}`,
  );
  if (r.status !== 0)
    ctx.fail(`ansible-playbook ${path.basename(playbook)} failed (exit ${r.status})`);
  const m = /localhost\s*:\s*ok=\d+\s+changed=(\d+)/.exec(r.stdout);
  if (!m) ctx.fail(`no play recap in the output of ansible-playbook ${path.basename(playbook)}`);
  return Number(m![1]);
}

function playbook(name: string, vfioctl: string, task: Record<string, unknown>): string {
  const file = `${WORK}/${name}.yml`;
  // JSON is YAML: no YAML library needed to write a play.
  const plays = [
    {
      hosts: 'localhost',
      gather_facts: false,
      tasks: [
        {
          name,
          'vfioctl.fleet.vfioctl_policy': { executable: vfioctl, boot_layers: 'ignore', ...task },
        },
      ],
    },
  ];
  fs.writeFileSync(file, JSON.stringify(plays, null, 2));
  return file;
}

export const ansiblePolicy: Scenario = {
  name: 'ansible-policy',
  title:
    "ansible-playbook with vfioctl.fleet's vfioctl_policy moves a device, a second run is changed=0, state absent gives it back",
  boots: ['iommu'],
  // Each play takes ~35 s under TCG; what it proves does not depend on the kernel.
  kernels: ['6.12'],
  run(ctx) {
    if (spawnSync('ansible-playbook', ['--version']).status !== 0)
      ctx.skip(
        "ansible-playbook is not installed (npm run test:ansible installs Debian's ansible-core)",
      );
    const nic = ctx.dev('e1000e');
    fs.rmSync(WORK, { recursive: true, force: true });
    fs.mkdirSync(`${WORK}/tmp`, { recursive: true });
    const vfioctl = ctx.plan.vfioctl;
    // Ansible's workers need POSIX shared memory; the busybox guest has no /dev/shm of its own.
    const shm = !fs.existsSync('/dev/shm');
    if (shm) {
      fs.mkdirSync('/dev/shm', { mode: 0o1777 });
      if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'mode=1777', 'tmpfs', '/dev/shm']).status !== 0)
        ctx.fail('cannot mount a tmpfs on /dev/shm');
    }
    try {
      run();
    } finally {
      // A play killed by its time limit can leave workers holding /dev/shm: detach it lazily and
      // only note what stays, so that the clean-up never hides the failure that got us here.
      if (shm) {
        const u = spawnSync('umount', ['/dev/shm']);
        if (u.status !== 0) spawnSync('umount', ['-l', '/dev/shm']);
        try {
          fs.rmdirSync('/dev/shm');
        } catch (e) {
          ctx.note(`clean-up: /dev/shm stays (${(e as Error).message})`);
        }
      }
    }
    fs.rmSync(WORK, { recursive: true, force: true });

    function run(): void {
      withWritable(ctx, '/var/lib', () =>
        withHooksDir(ctx, () => {
          const present = playbook('present', vfioctl, {
            rules: [{ match: { address: nic }, intent: 'vfio' }],
          });
          ctx.eq(play(ctx, present, ['--check', '--diff']), 1, 'check mode reports the change');
          ctx.eq(sysfs.driverOf(nic), MACHINE.e1000e.hostDriver, `${nic} untouched by --check`);
          ctx.eq(play(ctx, present), 1, 'first run: changed=1');
          expectOnVfio(ctx, nic, 'vfio-pci');
          ctx.eq(play(ctx, present), 0, 'second run: changed=0');
          ctx.eq(
            play(ctx, playbook('absent', vfioctl, { state: 'absent' })),
            1,
            'state absent: changed=1',
          );
          expectOnHost(ctx, nic, MACHINE.e1000e.hostDriver);
        }),
      );
    }
  },
};
