#!/bin/sh
# Mounts the guest's root on $NEWROOT with the initramfs-tools boot script's mountroot().
panic() { warn "$*"; echo o > /proc/sysrq-trigger; }
. /lib/e2e9p
rootmnt=$NEWROOT
mountroot
# switch_root moves /run onto $NEWROOT/run only when that directory is on the new root's own
# device; on the 9p root it is not (seen: the runner found no /run/e2e), and switch_root then
# drops the initramfs' /run. A bind of it (with the results share below it) survives the switch,
# as initramfs-tools' own move of /run does.
mount --rbind /run "$NEWROOT/run" || panic "cannot bind /run onto $NEWROOT/run"
