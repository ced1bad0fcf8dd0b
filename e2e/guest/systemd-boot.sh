# Sourced by guest/init (busybox sh) when boot.env sets E2E_SYSTEMD: the rest of this boot runs
# under the host's own systemd as PID 1 instead of the runner in a chroot. Does not return.
#
# systemd boots a small target of its own, e2e-boot.target: sysinit.target (udevd, the coldplug
# trigger, modules-load, journald, and whatever `vfioctl install` enabled there: the early unit),
# vfioctl-apply.service, and the guest runner as a service ordered after it, whose end powers the
# VM off at once (poweroff-immediate: the results are on the 9p share already; poweroff-force did
# not end the VM within a minute). Left out, to keep a TCG boot short: basic.target and
# multi-user.target (the host's own services: this root is a build machine's), and the sysinit
# units masked below, none of which orders against udev or vfioctl's units.
# Everything is written to the guest's /etc overlay (tmpfs), never to the host's /etc.
U=$R/etc/systemd/system
mkdir -p "$U" || die "cannot create $U"
for m in systemd-tmpfiles-setup.service systemd-tmpfiles-setup-dev.service systemd-journal-flush.service \
	systemd-random-seed.service systemd-pstore.service systemd-timesyncd.service systemd-firstboot.service \
	systemd-repart.service systemd-sysusers.service systemd-update-utmp.service systemd-machine-id-commit.service \
	systemd-binfmt.service proc-sys-fs-binfmt_misc.automount systemd-pcrphase-sysinit.service \
	systemd-pcrphase.service systemd-hwdb-update.service systemd-journal-catalog-update.service \
	systemd-update-done.service ldconfig.service systemd-remount-fs.service sys-kernel-debug.mount \
	sys-kernel-tracing.mount sys-kernel-config.mount sys-fs-fuse-connections.mount dev-hugepages.mount \
	dev-mqueue.mount; do
	ln -sfn /dev/null "$U/$m" || die "cannot mask $m"
done
cat > "$U/e2e-boot.target" <<EOF || die "cannot write e2e-boot.target"
[Unit]
Description=e2e: sysinit, vfioctl's late unit and the guest runner
Requires=sysinit.target
After=sysinit.target
Wants=vfioctl-apply.service e2e-runner.service
AllowIsolate=yes
JobTimeoutSec=420
JobTimeoutAction=poweroff-immediate
EOF
cat > "$U/e2e-runner.service" <<EOF || die "cannot write e2e-runner.service"
[Unit]
Description=e2e guest runner (the scenario's checks)
After=vfioctl-apply.service network-pre.target systemd-udev-settle.service

[Service]
# simple, not oneshot: its start job ends at once, so the boot can finish while it runs (and
# systemd-analyze, which wants a finished boot, works from inside it).
Type=simple
ExecStart=/usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/run/e2e-home TMPDIR=/run/e2e-home $E2E_NODE $E2E_RUNNER $E2E_PLAN
# Straight to the serial console, as the runner's output is without systemd (the host reads it).
StandardOutput=tty
StandardError=tty
TTYPath=/dev/ttyS0
RuntimeMaxSec=420
ExecStopPost=/bin/sh -c 'echo "E2E-INIT: runner service stopped: \$SERVICE_RESULT, exit \$EXIT_STATUS" > /dev/ttyS0'
ExecStopPost=/usr/bin/systemctl poweroff --force --force
SuccessAction=poweroff-immediate
FailureAction=poweroff-immediate
EOF
ln -sfn e2e-boot.target "$U/default.target" || die "cannot set the default target"
read -r up _ < /proc/uptime
say "systemd as PID 1 (default target e2e-boot.target) at uptime ${up}s"
# E2E_NO_SWITCH: the caller switches root itself (the initramfs-tools boot script).
[ -n "${E2E_NO_SWITCH:-}" ] && { export container=; return 0; }
# An empty \$container tells PID 1 it is not in a container: the shared root carries the host's
# /.dockerenv, which systemd would otherwise take for Docker.
export container=
exec switch_root "$R" /lib/systemd/systemd
