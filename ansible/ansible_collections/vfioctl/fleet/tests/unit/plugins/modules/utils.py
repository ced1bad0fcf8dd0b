# -*- coding: utf-8 -*-
# Unit-test helpers: run a module's main() with arguments, catch exit_json/fail_json, and stand in
# for vfioctl behind module.run_command (recording every argument list it was given).
from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

from ansible.module_utils import basic
from ansible.module_utils.common.text.converters import to_bytes


class ModuleExit(Exception):
    def __init__(self, result, failed):
        super(ModuleExit, self).__init__(result.get('msg', ''))
        self.result = result
        self.failed = failed


def set_module_args(args):
    args = dict(args)
    args.setdefault('_ansible_remote_tmp', '/tmp')
    args.setdefault('_ansible_keep_remote_files', False)
    basic._ANSIBLE_ARGS = to_bytes(json.dumps({'ANSIBLE_MODULE_ARGS': args}))


def exit_json(self, **kwargs):
    kwargs.setdefault('changed', False)
    raise ModuleExit(kwargs, False)


def fail_json(self, **kwargs):
    kwargs['failed'] = True
    raise ModuleExit(kwargs, True)


class FakeVfioctl(object):
    """Answers vfioctl argument lists by their subcommand; `calls` keeps each list as given."""

    def __init__(self):
        self.calls = []
        self.answers = {}

    def on(self, key, rc=0, out=None, err=''):
        self.answers[key] = (rc, json.dumps(out) if out is not None else '', err)

    def key(self, argv):
        """'config check', 'apply --dry-run', 'apply', 'list', ...: options and their values dropped."""
        skip = set(i + 1 for i, a in enumerate(argv) if a in ('--root', '--wait', '--config'))
        words = [a for i, a in enumerate(argv) if i > 0 and i not in skip and not a.startswith('--')]
        name = ' '.join(words[:2]) if words[:1] == ['config'] else words[0]
        if name == 'apply' and '--dry-run' in argv:
            name = 'apply --dry-run'
        return name

    def __call__(self, args, **kwargs):
        assert isinstance(args, list), 'vfioctl must be run with an argument list, never a string'
        self.calls.append(args)
        k = self.key(args)
        if k == 'config check':
            k = 'config check host' if args[-2].endswith('etc/vfioctl/vfioctl.json') else 'config check candidate'
        if k not in self.answers:
            raise AssertionError('unexpected vfioctl call %r' % (args,))
        return self.answers[k]

    def called(self, name):
        return [c for c in self.calls if self.key(c) == name]


def patched(monkeypatch):
    """A FakeVfioctl behind AnsibleModule.run_command, with exit_json/fail_json raising ModuleExit."""
    f = FakeVfioctl()
    monkeypatch.setattr(basic.AnsibleModule, 'exit_json', exit_json)
    monkeypatch.setattr(basic.AnsibleModule, 'fail_json', fail_json)
    monkeypatch.setattr(basic.AnsibleModule, 'run_command', lambda self, args, **kw: f(args, **kw))
    return f
