# -*- coding: utf-8 -*-
# Copyright: vfioctl developers
# GNU General Public License v2.0 or later (see https://www.gnu.org/licenses/old-licenses/gpl-2.0.txt)
"""Running the vfioctl CLI from a module: argument arrays only, --json output, exit codes.

The modules never resolve drivers or bind devices themselves: vfioctl does, and it is the
only thing that writes to sysfs. This file only builds argument lists and reads JSON.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json
import os

# vfioctl's exit codes (README.md, "Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_REFUSED = 3
EXIT_LOCKED = 4
# `status` only: it ran, and some configured device is not as configured (the JSON says which).
EXIT_DRIFT = 5

EXIT_MEANING = {
    EXIT_FAILED: 'failed and rolled back',
    EXIT_BAD_INPUT: 'bad input',
    EXIT_REFUSED: 'refused by a safety check',
    EXIT_LOCKED: 'another vfioctl held the lock for longer than the wait; nothing was done',
    EXIT_DRIFT: 'some configured device is not as configured',
}

# `vfioctl status` exits 5 when something drifts: that is its report, not a failure.
STATUS_RCS = (EXIT_OK, EXIT_DRIFT)

LOCK_HINT = ('another vfioctl (an admin, the boot unit, another play) held the lock: nothing was done; '
             'retry the task (retries/until), or raise lock_wait')

CONFIG_FILE = 'etc/vfioctl/vfioctl.json'

COMMON_ARGS = dict(
    # host_root: the name the Kubernetes side uses for the same thing.
    root=dict(type='path', default='/', aliases=['host_root']),
    executable=dict(type='path'),
    lock_wait=dict(type='int'),
)


class VfioctlError(Exception):
    def __init__(self, msg, rc=None, cmd=None, stdout='', stderr='', data=None):
        super(VfioctlError, self).__init__(msg)
        self.msg = msg
        self.rc = rc
        self.cmd = cmd
        self.stdout = stdout
        self.stderr = stderr
        self.data = data


class Vfioctl(object):
    """One module's view of one host's vfioctl."""

    def __init__(self, module):
        self.module = module
        p = module.params
        self.root = p['root']
        exe = p.get('executable')
        if exe is None:
            # /usr/sbin: where the Debian package puts it, often not on a non-login PATH.
            exe = module.get_bin_path('vfioctl', required=True, opt_dirs=['/usr/sbin', '/usr/local/sbin', '/usr/local/bin'])
        self.executable = exe
        self.lock_wait = p.get('lock_wait')

    def path(self, rel):
        """A path under the host root, as vfioctl --root sees it."""
        return os.path.join(self.root, rel)

    @property
    def config_path(self):
        return self.path(CONFIG_FILE)

    def argv(self, *args):
        argv = [self.executable]
        if self.root != '/':
            argv += ['--root', self.root]
        if self.lock_wait is not None:
            argv += ['--wait', str(self.lock_wait)]
        return argv + list(args)

    def run(self, *args):
        """Runs vfioctl with an argument list (never a shell string): (rc, stdout, stderr, argv)."""
        argv = self.argv(*args)
        # LC_ALL=C: messages the play shows are the ones the README documents.
        rc, out, err = self.module.run_command(argv, check_rc=False, environ_update={'LC_ALL': 'C'})
        return rc, out, err, argv

    def run_json(self, *args, **kwargs):
        """Runs a --json command; exit codes in `ok_rcs` return (rc, data, stderr), others raise."""
        ok_rcs = kwargs.get('ok_rcs', (EXIT_OK,))
        rc, out, err, argv = self.run(*args)
        data = None
        if out.strip():
            try:
                data = json.loads(out)
            except ValueError:
                raise VfioctlError('vfioctl printed no JSON (exit %s): %s' % (rc, (err or out).strip()[:2000]), rc=rc, cmd=argv, stdout=out, stderr=err)
        if rc not in ok_rcs:
            raise VfioctlError(describe_exit(rc, err), rc=rc, cmd=argv, stdout=out, stderr=err, data=data)
        if data is None:
            raise VfioctlError('vfioctl printed nothing (exit %s): %s' % (rc, err.strip()[:2000]), rc=rc, cmd=argv, stdout=out, stderr=err)
        return rc, data, err


def describe_exit(rc, stderr):
    meaning = EXIT_MEANING.get(rc, 'unexpected exit code')
    text = 'vfioctl exit %s (%s)' % (rc, meaning)
    detail = (stderr or '').strip()
    if detail:
        text += ': ' + detail[:4000]
    if rc == EXIT_LOCKED:
        text += '; ' + LOCK_HINT
    return text


def fail_from(module, e, **result):
    """fail_json for a VfioctlError, with what vfioctl printed."""
    extra = dict(result)
    if e.rc is not None:
        extra['rc'] = e.rc
    if e.cmd is not None:
        extra['cmd'] = e.cmd
    extra['stderr'] = e.stderr
    if e.data is not None:
        extra['vfioctl'] = e.data
    module.fail_json(msg=e.msg, **extra)
