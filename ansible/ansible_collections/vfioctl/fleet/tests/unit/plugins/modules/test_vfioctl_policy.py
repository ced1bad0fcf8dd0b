# -*- coding: utf-8 -*-
# vfioctl_policy against a stand-in vfioctl (utils.FakeVfioctl): argument handling, check and
# diff output, the file write, and how vfioctl's exit codes map to task results. The JSON the
# stand-in prints has the shape the real CLI prints (README.md, "JSON"); the fleet playbook test
# (test/ansible/fleet.ansible.ts) runs the module against the real CLI.
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

import pytest

from ansible_collections.vfioctl.fleet.plugins.modules import vfioctl_policy
from .utils import ModuleExit, patched, set_module_args

E1 = '0000:00:02.0'
E2 = '0000:00:05.0'
RULES = [{'match': {'address': E2}, 'intent': 'vfio'}]
PARSED = [{'index': 0, 'line': 4, 'selector': {'kind': 'address', 'address': E2}, 'intent': 'vfio',
           'sriov': None, 'hooks': [], 'acknowledgeBroadMatch': False}]


def result(address, status, driver, target, phase='bind', refusals=None, error=None, frm='e1000e'):
    """As vfioctl prints it: `from` is the driver the device was on when it was read."""
    steps = [{'op': 'probe', 'description': "write '%s' > /sys/bus/pci/drivers_probe" % address, 'done': status == 'ok'}] if status in ('ok', 'planned') else []
    return {'phase': phase, 'intent': 'vfio', 'rule': 'rules[0] (line 4): %s' % address, 'address': address, 'status': status,
            'from': frm, 'driver': driver, 'target': target, 'steps': steps, 'refusals': refusals or [], 'warnings': [],
            'error': error}


def apply_json(results, dry=False):
    return {'command': 'apply', 'dryRun': dry, 'boot': False, 'recovered': [], 'results': results, 'skipped': [], 'warnings': []}


def status_json(devices):
    return {'kernel': '6.12.0-test', 'config': '/etc/vfioctl/vfioctl.json', 'bootAt': None, 'devices': devices, 'warnings': []}


REFUSAL = [{'check': 'in-use', 'message': 'the host is using it: interface eth0 is up', 'forceable': True}]


@pytest.fixture
def fake(monkeypatch, tmp_path):
    f = patched(monkeypatch)
    f.root = tmp_path / 'host'
    f.root.mkdir()
    f.tmp = tmp_path / 'tmp'
    f.tmp.mkdir()
    f.on('config check candidate', 0, {'file': 'x', 'valid': True, 'problems': [], 'rules': PARSED})
    f.on('status', 0, status_json([{'address': E2, 'drift': 'ok', 'detail': 'on vfio-pci'}]))
    return f


def run(fake, check=False, diff=False, **args):
    a = dict(rules=RULES, root=str(fake.root), executable='/usr/sbin/vfioctl')
    a.update(args)
    a['_ansible_check_mode'] = check
    a['_ansible_diff'] = diff
    a['_ansible_remote_tmp'] = str(fake.tmp)
    set_module_args(a)
    with pytest.raises(ModuleExit) as e:
        vfioctl_policy.main()
    return e.value


def conf(fake):
    return fake.root / 'etc/vfioctl/vfioctl.json'


def test_rules_are_required_with_state_present(fake):
    e = run(fake, rules=None)
    assert e.failed and 'rules' in e.result['msg']
    assert fake.calls == []


def test_state_absent_takes_no_rules(fake):
    e = run(fake, state='absent')
    assert e.failed and 'absent' in e.result['msg']


def test_an_invalid_policy_fails_with_every_problem_and_writes_nothing(fake):
    problems = ['c:3:5: rules[0].match.adress: unknown field', 'c:4:1: rules[1]: missing intent']
    fake.on('config check candidate', 2, {'file': 'c', 'valid': False, 'rules': [], 'problems': problems})
    e = run(fake)
    assert e.failed
    assert e.result['problems'] == problems
    assert 'unknown field' in e.result['msg'] and 'missing intent' in e.result['msg']
    assert not conf(fake).exists()
    assert fake.called('apply') == [] and fake.called('apply --dry-run') == []


def test_check_mode_previews_the_candidate_and_writes_nothing(fake):
    fake.on('apply --dry-run', 0, apply_json([result(E2, 'planned', 'e1000e', 'vfio-pci')], dry=True))
    # Against the candidate E2 is not applied yet: status says so, with exit 5 (not a failure).
    fake.on('status', 5, status_json([{'address': E2, 'drift': 'pending', 'detail': 'never applied; on e1000e'}]))
    e = run(fake, check=True, diff=True)
    assert not e.failed, e.result
    assert [d['address'] for d in e.result['drifted']] == [E2]
    assert e.result['changed'] and e.result['config_changed']
    assert not conf(fake).exists()
    dry = fake.called('apply --dry-run')[0]
    # The preview is of the candidate file, with the host root, as an argument list.
    assert dry[:3] == ['/usr/sbin/vfioctl', '--root', str(fake.root)]
    assert '--config' in dry and dry[dry.index('--config') + 1].startswith(str(fake.tmp))
    assert fake.called('apply') == [] and fake.called('install') == []
    assert ['status', '--config'] == fake.called('status')[0][3:5]
    (r,) = e.result['results']
    assert (r['address'], r['from'], r['to'], r['status']) == (E2, 'e1000e', 'vfio-pci', 'planned')
    file_diff, moves = e.result['diff']
    assert file_diff['before'] == '' and json.loads(file_diff['after']) == {'version': 1, 'rules': RULES}
    assert moves['prepared'].splitlines()[1].strip() == '%s: e1000e -> vfio-pci (bind)' % E2
    # The candidate is gone afterwards.
    assert list(fake.tmp.iterdir()) == [] or all(not p.name.startswith('vfioctl-policy-') for p in fake.tmp.rglob('*'))


def test_a_run_writes_the_file_root_owned_0644_and_applies(fake):
    fake.on('apply', 0, apply_json([result(E2, 'ok', 'vfio-pci', 'vfio-pci')]))
    e = run(fake)
    assert not e.failed, e.result
    assert e.result['changed'] and e.result['config_changed']
    assert json.loads(conf(fake).read_text()) == {'version': 1, 'rules': RULES}
    st = os.stat(str(conf(fake)))
    assert st.st_mode & 0o7777 == 0o644
    if os.geteuid() == 0:
        assert st.st_uid == 0 and st.st_gid == 0
    assert fake.called('install') == [], 'no boot layers installed: no refresh'
    (r,) = e.result['results']
    assert (r['from'], r['to'], r['status']) == ('e1000e', 'vfio-pci', 'ok')
    assert e.result['drifted'] == []
    # The candidate checked (no host file yet), apply, status: no `list`, the results carry each
    # device's driver before.
    assert [fake.key(c) for c in fake.calls] == ['config check', 'apply', 'status']


def test_an_unchanged_policy_is_not_rewritten_and_reports_no_change(fake):
    conf(fake).parent.mkdir(parents=True)
    # Same rules, other formatting and a comment: the same policy by its parsed rules.
    conf(fake).write_text('{"version": 1, "rules": [ {"match": {"address": "00:05.0"}, "intent": "vfio", "comment": "x"} ]}\n')
    inode = os.stat(str(conf(fake))).st_ino
    host = [dict(PARSED[0], line=1)]
    fake.on('config check host', 0, {'file': str(conf(fake)), 'valid': True, 'problems': [], 'rules': host})
    fake.on('apply', 0, apply_json([result(E2, 'noop', 'vfio-pci', 'vfio-pci')]))
    e = run(fake, diff=True)
    assert not e.failed, e.result
    assert e.result['changed'] is False and e.result['config_changed'] is False
    assert os.stat(str(conf(fake))).st_ino == inode
    assert len(e.result['diff']) == 1 and e.result['diff'][0]['before'] == e.result['diff'][0]['after']


def test_another_rule_is_a_change(fake):
    conf(fake).parent.mkdir(parents=True)
    conf(fake).write_text('{"version": 1, "rules": []}\n')
    fake.on('config check host', 0, {'file': str(conf(fake)), 'valid': True, 'problems': [], 'rules': []})
    fake.on('apply', 0, apply_json([result(E2, 'ok', 'vfio-pci', 'vfio-pci')]))
    e = run(fake)
    assert e.result['config_changed'] is True


def test_boot_maps_are_refreshed_when_the_layers_are_installed_unless_ignored(fake):
    (fake.root / 'etc/vfioctl/boot').mkdir(parents=True)
    fake.on('install', 0, {'command': 'install', 'dryRun': False, 'refresh': True, 'files': [{'path': '/etc/vfioctl/boot/6.12.map', 'action': 'wrote'}],
                           'maps': [], 'warnings': []})
    fake.on('apply', 0, apply_json([result(E2, 'ok', 'vfio-pci', 'vfio-pci')]))
    e = run(fake)
    (inst,) = fake.called('install')
    assert inst[3:] == ['install', '--refresh', '--json']
    assert e.result['boot']['files'][0]['action'] == 'wrote'
    # install runs after the file is written and before apply.
    order = [fake.key(c) for c in fake.calls]
    assert order.index('install') < order.index('apply')
    conf(fake).unlink()
    fake.calls[:] = []
    run(fake, boot_layers='ignore')
    assert fake.called('install') == []


def test_apply_false_writes_the_file_only(fake):
    e = run(fake, apply=False)
    assert e.result['changed'] and conf(fake).exists()
    assert fake.called('apply') == [] and 'results' not in e.result


def test_a_refusal_fails_the_task_unless_fail_on_refusal_is_false(fake):
    fake.on('apply', 3, apply_json([result(E2, 'ok', 'vfio-pci', 'vfio-pci'),
                                    result(E1, 'refused', 'e1000e', 'vfio-pci', refusals=REFUSAL, error=REFUSAL[0]['message'])]))
    e = run(fake)
    assert e.failed and e.result['rc'] == 3
    assert 'refused' in e.result['msg'] and 'interface eth0 is up' in e.result['msg']
    assert e.result['refused'][0]['address'] == E1
    assert e.result['changed'] is True, 'the file and E2 did change'
    conf(fake).unlink()
    e = run(fake, fail_on_refusal=False, diff=True)
    assert not e.failed
    assert [r['address'] for r in e.result['refused']] == [E1]
    assert '%s: e1000e -> vfio-pci (bind, REFUSED)' % E1 in e.result['diff'][-1]['prepared']


def test_a_refusal_in_check_mode_fails_as_the_run_would(fake):
    fake.on('apply --dry-run', 3, apply_json([result(E1, 'refused', 'e1000e', 'vfio-pci', refusals=REFUSAL, error='x')], dry=True))
    e = run(fake, check=True)
    assert e.failed and e.result['rc'] == 3
    assert not conf(fake).exists()


@pytest.mark.parametrize('rc,words', [
    (1, 'failed and rolled back'),
    (2, 'bad input'),
    (4, 'retry'),
])
def test_exit_codes_1_2_4_fail_with_their_meaning(fake, rc, words):
    fake.on('apply', rc, apply_json([]), err='vfioctl: something')
    e = run(fake)
    assert e.failed and e.result['rc'] == rc
    assert words in e.result['msg'] and 'vfioctl: something' in e.result['msg']


def test_lock_wait_and_root_are_passed_as_separate_arguments(fake):
    fake.on('apply', 0, apply_json([]))
    run(fake, lock_wait=5)
    for c in fake.calls:
        assert c[:5] == ['/usr/sbin/vfioctl', '--root', str(fake.root), '--wait', '5']


def test_state_absent_removes_the_file_and_previews_with_no_rules(fake):
    conf(fake).parent.mkdir(parents=True)
    conf(fake).write_text('{"version": 1, "rules": []}\n')
    fake.on('apply --dry-run', 0, apply_json([result(E2, 'planned', 'vfio-pci', 'e1000e', phase='release', frm='vfio-pci')], dry=True))
    e = run(fake, state='absent', rules=None, check=True)
    assert e.result['changed'] and conf(fake).exists()
    fake.on('apply', 0, apply_json([result(E2, 'ok', 'e1000e', 'e1000e', phase='release', frm='vfio-pci')]))
    e = run(fake, state='absent', rules=None)
    assert e.result['config_changed'] and not conf(fake).exists()
    assert e.result['results'][0]['phase'] == 'release'


def test_a_failed_apply_reports_the_written_file_and_the_failing_device(fake):
    fake.on('apply', 1, apply_json([result(E2, 'failed', 'e1000e', 'vfio-pci', error='probe failed: no driver bound; rolled back')]),
            err='vfioctl: 0000:00:05.0: failed')
    e = run(fake)
    assert e.failed and e.result['rc'] == 1
    assert e.result['changed'] is True and e.result['config_changed'] is True, 'the file was written before apply failed'
    assert e.result['results'][0]['error'] == 'probe failed: no driver bound; rolled back'
