#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: vfioctl developers
# GNU General Public License v2.0 or later (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: vfioctl_info
short_description: Read a host's PCI devices, vfioctl status and VFIO readiness
version_added: 0.1.0
description:
  - Runs the read-only vfioctl commands C(list --json), C(status --json) and C(doctor --json) and
    returns what they print. Nothing is written; safe in check mode.
  - C(doctor) exits 1 when the host cannot do VFIO; that is a fact here (C(doctor_ok)), not a
    failure of the task.
author:
  - vfioctl developers
requirements:
  - vfioctl on the managed host
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
options:
  gather:
    description: Which facts to read.
    type: list
    elements: str
    choices: [list, status, doctor]
    default: [list, status, doctor]
  root:
    description: The host root vfioctl reads (C(vfioctl --root)).
    type: path
    default: /
    aliases: [host_root]
  executable:
    description: The vfioctl to run (default C(vfioctl) from C(PATH) or C(/usr/sbin)).
    type: path
  lock_wait:
    description: Unused by these read-only commands; accepted so that module defaults can be shared with M(vfioctl.fleet.vfioctl_policy).
    type: int
seealso:
  - module: vfioctl.fleet.vfioctl_policy
'''

EXAMPLES = r'''
- name: Which hosts can do VFIO, and what drifted
  vfioctl.fleet.vfioctl_info:
  register: vf

- name: Hosts where something rebound a configured device
  ansible.builtin.debug:
    msg: "{{ vf.status.devices | rejectattr('drift', 'equalto', 'ok') | list }}"
'''

RETURN = r'''
list:
  description: C(vfioctl list --json) (schema/device.schema.json).
  type: list
  elements: dict
  returned: when gathered
status:
  description: C(vfioctl status --json) ({kernel, config, bootAt, devices, warnings}).
  type: dict
  returned: when gathered
doctor:
  description: C(vfioctl doctor --json).
  type: dict
  returned: when gathered
doctor_ok:
  description: Whether C(doctor) found the host able to do VFIO (exit 0).
  type: bool
  returned: when doctor is gathered
drifted:
  description: Configured devices whose drift is not C(ok).
  type: list
  elements: dict
  returned: when status is gathered
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.vfioctl.fleet.plugins.module_utils.vfioctl import (
    COMMON_ARGS, EXIT_FAILED, EXIT_OK, STATUS_RCS, Vfioctl, VfioctlError, fail_from,
)


def main():
    argument_spec = dict(
        gather=dict(type='list', elements='str', default=['list', 'status', 'doctor'], choices=['list', 'status', 'doctor']),
    )
    argument_spec.update(COMMON_ARGS)
    module = AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)
    v = Vfioctl(module)
    result = dict(changed=False)
    try:
        for what in module.params['gather']:
            if what == 'doctor':
                rc, data, _err = v.run_json('doctor', '--json', ok_rcs=(EXIT_OK, EXIT_FAILED))
                result['doctor'] = data
                result['doctor_ok'] = rc == EXIT_OK
            else:
                # status exits 5 when something drifts: `drifted` below says what.
                _rc, data, _err = v.run_json(what, '--json', ok_rcs=STATUS_RCS if what == 'status' else (EXIT_OK,))
                result[what] = data
                if what == 'status':
                    result['drifted'] = [d for d in data.get('devices', []) if d.get('drift') != 'ok']
    except VfioctlError as e:
        fail_from(module, e, **result)
    module.exit_json(**result)


if __name__ == '__main__':
    main()
