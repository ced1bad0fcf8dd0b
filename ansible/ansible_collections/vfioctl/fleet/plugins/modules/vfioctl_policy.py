#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: vfioctl developers
# GNU General Public License v2.0 or later (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: vfioctl_policy
short_description: Converge a host's vfioctl policy (which PCI devices go to which VFIO driver)
version_added: 0.1.0
description:
  - Makes C(/etc/vfioctl/vfioctl.json) hold exactly C(rules) and converges the host to it with
    C(vfioctl apply). Devices move to the best VFIO driver (or the driver a rule names), SR-IOV
    sizes are set, and devices an earlier apply bound that no rule names any more go back to their
    host driver.
  - B(Removing a rule releases the device it bound.) This is vfioctl's converge semantics, not an
    accident; the policy is the whole truth for the host. To keep a device on VFIO, keep its rule.
    C(state=absent) removes the policy file and releases every device vfioctl bound.
  - The candidate policy is validated first (C(vfioctl config check)); a broken one fails the task
    with every problem and nothing is written or applied.
  - The candidate is compared with the host's policy by its parsed rules, not its bytes; a change
    of formatting, key order or a C(comment) field is no change and the file is not rewritten.
  - In check mode nothing is written; C(vfioctl apply --dry-run --config CANDIDATE --json) shows
    what would move, and a refusal fails the task as a real run would.
  - Otherwise the file is written atomically (root-owned, mode 0644), the boot maps are refreshed
    (C(vfioctl install --refresh)) when the boot layers are installed, and C(vfioctl apply --json)
    converges the host. A final C(vfioctl status --json) reports what is not converged.
  - C(changed) is true only when the file changed, a boot map changed or a device moved; a second
    run with the same policy reports C(changed=false).
  - The module runs vfioctl with argument lists (never a shell) and never writes sysfs itself.
author:
  - vfioctl developers
requirements:
  - vfioctl (the C(vfioctl) Debian package, or the bundled CLI) on the managed host
  - root on the managed host (C(become=true))
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
options:
  rules:
    description:
      - The host's vfioctl rules, each as in C(vfioctl.json) (C(schema/config.schema.json),
        C(vfioctl.json(5))), for example a C(match) by C(address) with C(intent=vfio); see EXAMPLES.
      - The list is the whole policy; a device whose rule is dropped is released.
      - Required with C(state=present).
    type: list
    elements: dict
  state:
    description:
      - C(present) makes the policy hold C(rules); C(absent) removes the policy file, so every
        device an earlier apply bound is released.
    type: str
    choices: [present, absent]
    default: present
  apply:
    description:
      - Converge the host to the policy now (C(vfioctl apply)). With C(false) only the file (and the
        boot maps) change; the devices move at the next apply or boot.
    type: bool
    default: true
  boot_layers:
    description:
      - C(refresh) regenerates the boot maps (C(vfioctl install --refresh)) after the file changed,
        when the boot layers are installed (C(etc/vfioctl/boot) exists under C(root)); C(ignore)
        leaves them alone. Rebuilding the initramfs is the role's handler's job.
    type: str
    choices: [refresh, ignore]
    default: refresh
  fail_on_refusal:
    description:
      - A device that vfioctl refuses to move (exit 3; in use, IOMMU group not viable, ...) fails
        the task. With C(false) the task succeeds and lists the refusals in C(refused).
    type: bool
    default: true
  root:
    description:
      - The host root vfioctl works on (C(vfioctl --root)); the policy file is
        C(ROOT/etc/vfioctl/vfioctl.json). C(/) on a real host; a fixture tree in tests.
    type: path
    default: /
    aliases: [host_root]
  executable:
    description:
      - The vfioctl to run. Default is C(vfioctl) from C(PATH), C(/usr/sbin), C(/usr/local/sbin)
        or C(/usr/local/bin).
    type: path
  lock_wait:
    description:
      - Seconds to wait for another vfioctl's lock (C(vfioctl --wait)); vfioctl's default is 30.
        When it runs out the task fails (exit 4) with a hint to retry; nothing was done.
    type: int
notes:
  - Roll out with the play's C(serial) (for example C([1, '10%', '100%'])) and
    C(max_fail_percentage=0), after a C(--check --diff) run over the whole fleet.
  - Diff mode shows the policy file's before and after, and one line per device that moves.
seealso:
  - module: vfioctl.fleet.vfioctl_info
'''

EXAMPLES = r'''
- name: Give the ConnectX-7 VFs and one NVMe to VFIO
  vfioctl.fleet.vfioctl_policy:
    rules:
      - match: {address: '0000:3b:00.0'}
        sriov: {numVfs: 8, vfIntent: vfio}
      - match: {address: '0000:5e:00.0'}
        intent: vfio
  become: true

- name: Write the policy now, let the next boot apply it
  vfioctl.fleet.vfioctl_policy:
    rules: "{{ vfioctl_rules }}"
    apply: false

- name: Release everything vfioctl bound and remove the policy
  vfioctl.fleet.vfioctl_policy:
    state: absent
'''

RETURN = r'''
config_changed:
  description: Whether the policy file changed (or would, in check mode), by its parsed rules.
  type: bool
  returned: always
config_file:
  description: The policy file's path.
  type: str
  returned: always
  sample: /etc/vfioctl/vfioctl.json
results:
  description:
    - One entry per device that vfioctl planned or acted on (C(apply --json)'s results).
    - C(status) is C(ok) (moved), C(noop) (already there), C(planned) (check mode), C(refused),
      C(failed) or C(invalid).
  type: list
  elements: dict
  returned: when apply is true
  contains:
    address: {description: PCI address., type: str, sample: '0000:00:02.0'}
    phase: {description: "C(sriov), C(release) or C(bind).", type: str}
    status: {description: What happened., type: str, sample: ok}
    from: {description: The driver before (null when none)., type: str}
    to: {description: The driver after (or planned)., type: str}
    steps: {description: The steps (C(op), C(description), C(done))., type: list, elements: dict}
    refusals: {description: Failing safety checks (C(check), C(message), C(forceable))., type: list, elements: dict}
    error: {description: Why it failed., type: str}
refused:
  description: The devices vfioctl refused to move, with the reasons.
  type: list
  elements: dict
  returned: always
drifted:
  description:
    - Devices C(vfioctl status --json) reports as not converged (drift other than C(ok)) after the
      run; in check mode, against the candidate policy.
  type: list
  elements: dict
  returned: when apply is true
boot:
  description: What C(vfioctl install --refresh --json) did (files, maps, warnings), when it ran.
  type: dict
  returned: when the boot maps were refreshed
elapsed:
  description: Seconds the module took on the host (vfioctl's runs included).
  type: float
  returned: always
warnings_vfioctl:
  description: Warnings vfioctl printed in its JSON.
  type: list
  elements: str
  returned: always
'''

import json
import os
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_bytes
from ansible_collections.vfioctl.fleet.plugins.module_utils.vfioctl import (
    COMMON_ARGS, EXIT_OK, EXIT_REFUSED, STATUS_RCS, Vfioctl, VfioctlError, fail_from,
)

EMPTY_POLICY = {'version': 1, 'rules': []}


def policy_text(rules):
    """The file as the module writes it: stable key order, so equal input is equal bytes."""
    return json.dumps({'version': 1, 'rules': rules}, indent=2, sort_keys=False) + '\n'


def semantic(rules):
    """Parsed rules (config check --json) without where they sit in the file."""
    return [dict((k, v) for k, v in r.items() if k not in ('index', 'line')) for r in rules]


def read_text(path):
    try:
        with open(path, 'rb') as f:
            return f.read().decode('utf-8', 'replace')
    except (IOError, OSError):
        return None


def device_moves(results):
    """One entry per device result, with from/to: each result names the driver its device was on
    when vfioctl read it (`from`), so no `list --json` call is needed for it."""
    out = []
    for r in results:
        planned = r.get('status') == 'planned'
        frm = r.get('from')
        to = r.get('target') if planned or r.get('status') in ('refused', 'failed') else r.get('driver')
        out.append({
            'address': r['address'],
            'phase': r.get('phase'),
            'status': r.get('status'),
            'intent': r.get('intent'),
            'rule': r.get('rule'),
            'from': frm,
            'to': to,
            'steps': r.get('steps', []),
            'refusals': r.get('refusals', []),
            'warnings': r.get('warnings', []),
            'error': r.get('error'),
        })
    return out


def moved(m):
    """A device that moved (or would): `noop` is one already where the policy wants it."""
    return m['status'] in ('ok', 'planned')


def move_lines(moves):
    """Diff mode: one line per device that moves (or was refused or failed to)."""
    lines = []
    for m in moves:
        if m['status'] in ('ok', 'planned', 'refused', 'failed'):
            flag = '' if moved(m) else ', ' + m['status'].upper()
            lines.append('%s: %s -> %s (%s%s)' % (m['address'], m['from'] or '(none)', m['to'] or '(none)', m['phase'], flag))
    return lines


def refusals_of(moves):
    return [{'address': m['address'], 'refusals': m['refusals'], 'error': m['error']} for m in moves if m['status'] == 'refused']


def drifted_of(status):
    return [{'address': d['address'], 'drift': d['drift'], 'detail': d.get('detail')} for d in status.get('devices', []) if d.get('drift') != 'ok']


def write_temp(module, text):
    fd, path = tempfile.mkstemp(prefix='vfioctl-policy-', suffix='.json', dir=module.tmpdir)
    try:
        os.write(fd, to_bytes(text))
        os.fchmod(fd, 0o644)
    finally:
        os.close(fd)
    return path


def install_policy(module, v, text):
    """Atomic replace of the policy file, root-owned 0644 (vfioctl refuses anything looser)."""
    dest = v.config_path
    d = os.path.dirname(dest)
    if not os.path.isdir(d):
        os.makedirs(d, 0o755)
    src = write_temp(module, text)
    module.atomic_move(src, dest)
    os.chmod(dest, 0o644)
    if os.geteuid() == 0:
        os.chown(dest, 0, 0)


def boot_layers_installed(v):
    return os.path.isdir(v.path('etc/vfioctl/boot'))


def main():
    argument_spec = dict(
        rules=dict(type='list', elements='dict'),
        state=dict(type='str', default='present', choices=['present', 'absent']),
        apply=dict(type='bool', default=True),
        boot_layers=dict(type='str', default='refresh', choices=['refresh', 'ignore']),
        fail_on_refusal=dict(type='bool', default=True),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(
        argument_spec=argument_spec,
        required_if=[('state', 'present', ('rules',))],
        supports_check_mode=True,
    )
    p = module.params
    if p['state'] == 'present' and p['rules'] is None:
        module.fail_json(msg='state=present needs rules (the whole policy; an empty list releases every device vfioctl bound)')
    if p['state'] == 'absent' and p['rules']:
        module.fail_json(msg="state=absent removes the whole policy: give no rules (or state=present with the rules to keep)")
    if not os.path.isdir(p['root']):
        module.fail_json(msg='root %s: no such directory' % p['root'])
    started = time.time()
    v = Vfioctl(module)
    result = dict(changed=False, config_changed=False, config_file=v.config_path, refused=[], warnings_vfioctl=[])

    present = p['state'] == 'present'
    new_text = policy_text(p['rules']) if present else ''
    candidate = write_temp(module, new_text if present else json.dumps(EMPTY_POLICY) + '\n')
    try:
        # 1. The candidate, as vfioctl reads it: every problem, nothing written.
        _rc, check, _err = v.run_json('config', 'check', candidate, '--json', ok_rcs=(EXIT_OK, 2))
        if not check.get('valid'):
            # The candidate's temp name means nothing to the play: call it what it is.
            problems = [x.replace(candidate, 'rules') for x in check.get('problems', [])]
            module.fail_json(msg='the policy is not a valid vfioctl configuration: %s' % '; '.join(problems), problems=problems, **result)

        # 2. The host's policy, by its parsed rules.
        old_text = read_text(v.config_path)
        if old_text is None:
            config_changed = present
        elif not present:
            config_changed = True
        else:
            _rc, host, _err = v.run_json('config', 'check', v.config_path, '--json', ok_rcs=(EXIT_OK, 2))
            # An invalid (or untrusted) host file is replaced: vfioctl would not use it anyway.
            config_changed = not host.get('valid') or semantic(host.get('rules', [])) != semantic(check.get('rules', []))
        result['config_changed'] = config_changed
        changed = config_changed

        diffs = []
        if module._diff:
            diffs.append(dict(before_header=v.config_path, after_header=v.config_path,
                              before=old_text or '', after=new_text if config_changed else (old_text or '')))

        moves = []
        if module.check_mode:
            if p['apply']:
                rc, plan, _err = v.run_json('apply', '--dry-run', '--config', candidate, '--json', ok_rcs=(EXIT_OK, EXIT_REFUSED))
                moves = device_moves(plan.get('results', []))
                result['warnings_vfioctl'] = plan.get('warnings', [])
                _rc, status, _err = v.run_json('status', '--config', candidate, '--json', ok_rcs=STATUS_RCS)
                result['drifted'] = drifted_of(status)
        else:
            if config_changed:
                if present:
                    install_policy(module, v, new_text)
                else:
                    os.unlink(v.config_path)
            if config_changed and p['boot_layers'] == 'refresh' and boot_layers_installed(v):
                _rc, boot, _err = v.run_json('install', '--refresh', '--json')
                result['boot'] = boot
                changed = changed or any(f.get('action') == 'wrote' for f in boot.get('files', []))
            # A failing apply below still reports what changed so far.
            result['changed'] = changed
            if p['apply']:
                try:
                    rc, applied, _err = v.run_json('apply', '--json', ok_rcs=(EXIT_OK, EXIT_REFUSED))
                except VfioctlError as e:
                    # Exit 1 (failed, rolled back): which device failed, and what the others did.
                    if isinstance(e.data, dict):
                        result['results'] = device_moves(e.data.get('results', []))
                        result['changed'] = changed or any(moved(m) for m in result['results'])
                    raise
                moves = device_moves(applied.get('results', []))
                result['warnings_vfioctl'] = applied.get('warnings', [])
                _rc, status, _err = v.run_json('status', '--json', ok_rcs=STATUS_RCS)
                result['drifted'] = drifted_of(status)

        changed = changed or any(moved(m) for m in moves)
        result['changed'] = changed
        if p['apply']:
            result['results'] = moves
        result['refused'] = refusals_of(moves)
        lines = move_lines(moves)
        if module._diff:
            if lines:
                diffs.append(dict(prepared='vfioctl: devices that %s:\n  %s' % ('would move' if module.check_mode else 'moved', '\n  '.join(lines))))
            result['diff'] = diffs
        result['elapsed'] = round(time.time() - started, 3)
        if result['refused'] and p['fail_on_refusal']:
            why = '; '.join('%s: %s' % (r['address'], ', '.join(x.get('message', '') for x in r['refusals']) or r['error']) for r in result['refused'])
            module.fail_json(msg='vfioctl refused (exit 3): %s' % why, rc=EXIT_REFUSED, **result)
        module.exit_json(**result)
    except VfioctlError as e:
        fail_from(module, e, **result)
    finally:
        if os.path.exists(candidate):
            os.unlink(candidate)


if __name__ == '__main__':
    main()
