#!/bin/bash
# dracut module "e2e9p" of the e2e guest (installed by the boot-dracut scenario as
# /usr/lib/dracut/modules.d/95e2e9p): root=hostroot, the host's / over 9p, mounted by the same
# mountroot() as the initramfs-tools boot script (e2e9p, copied beside this file).
check() { return 255; } # only when asked for
depends() { echo base; }
installkernel() { hostonly='' instmods 9pnet_virtio 9p overlay virtio_pci; }
install() {
    inst_binary /bin/busybox /bin/busybox
    inst_simple "$moddir/e2e9p" /lib/e2e9p
    inst_hook cmdline 90 "$moddir/e2e9p-cmdline.sh"
    inst_hook mount 90 "$moddir/e2e9p-mount.sh"
}
