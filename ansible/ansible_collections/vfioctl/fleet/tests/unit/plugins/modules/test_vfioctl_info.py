# -*- coding: utf-8 -*-
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import pytest

from ansible_collections.vfioctl.fleet.plugins.modules import vfioctl_info
from .utils import ModuleExit, patched, set_module_args


@pytest.fixture
def fake(monkeypatch, tmp_path):
    f = patched(monkeypatch)
    f.tmp = tmp_path
    f.on('list', 0, [{'address': '0000:00:02.0', 'driver': 'e1000e'}])
    # 0000:00:02.0 drifted: vfioctl status exits 5, and that is a fact, not a failure.
    f.on('status', 5, {'kernel': 'k', 'config': None, 'bootAt': None, 'warnings': [],
                       'devices': [{'address': '0000:00:02.0', 'drift': 'rebound'}, {'address': '0000:00:05.0', 'drift': 'ok'}]})
    f.on('doctor', 1, {'ok': False, 'checks': []})
    return f


def run(fake, **args):
    a = dict(executable='/usr/sbin/vfioctl', _ansible_remote_tmp=str(fake.tmp), _ansible_check_mode=True)
    a.update(args)
    set_module_args(a)
    with pytest.raises(ModuleExit) as e:
        vfioctl_info.main()
    return e.value


def test_gathers_all_three_read_only_in_check_mode_and_doctor_exit_1_is_a_fact(fake):
    e = run(fake)
    assert not e.failed and e.result['changed'] is False
    assert e.result['doctor_ok'] is False
    assert e.result['list'][0]['address'] == '0000:00:02.0'
    assert [d['address'] for d in e.result['drifted']] == ['0000:00:02.0']
    assert [c[1:] for c in fake.calls] == [['list', '--json'], ['status', '--json'], ['doctor', '--json']]


def test_gather_one_and_a_bad_exit_fails(fake):
    e = run(fake, gather=['status'], root='/srv/host')
    assert not e.failed, e.result
    assert fake.calls == [['/usr/sbin/vfioctl', '--root', '/srv/host', 'status', '--json']]
    fake.on('status', 2, None, err='vfioctl: /etc/vfioctl/vfioctl.json:1:1: not JSON')
    e = run(fake, gather=['status'])
    assert e.failed and e.result['rc'] == 2 and 'not JSON' in e.result['msg']
    fake.on('list', 2, None, err='vfioctl: --root /nope: no such directory')
    e = run(fake, gather=['list'])
    assert e.failed and e.result['rc'] == 2 and 'no such directory' in e.result['msg']


def test_gather_rejects_unknown_names(fake):
    e = run(fake, gather=['bind'])
    assert e.failed and fake.calls == []
