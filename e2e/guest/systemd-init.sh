#!/bin/sh
# init= of the dracut boot: dracut's init resets the environment before switch_root, so the empty
# $container that tells systemd it is not in Docker (the shared root has /.dockerenv) is set here.
export container=
exec /lib/systemd/systemd "$@"
