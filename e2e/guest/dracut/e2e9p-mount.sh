#!/bin/sh
# Mounts the guest's root on $NEWROOT with the initramfs-tools boot script's mountroot().
panic() { warn "$*"; echo o > /proc/sysrq-trigger; }
. /lib/e2e9p
rootmnt=$NEWROOT
mountroot
