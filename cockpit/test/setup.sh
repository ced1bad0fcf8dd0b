#!/usr/bin/env bash
# What the browser tests need from Debian, installed when missing (idempotent): Cockpit's web
# server, bridge and shell (287 on Debian 12) and Chromium. playwright-core comes from npm (a
# devDependency) and drives /usr/bin/chromium; it never downloads a browser.
set -euo pipefail
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
need=()
[ -x /usr/lib/cockpit/cockpit-ws ] || need+=(cockpit-ws)
command -v cockpit-bridge >/dev/null 2>&1 || need+=(cockpit-bridge)
[ -x /usr/bin/chromium ] || need+=(chromium)
# The shell (menu and frame) for the test that opens the page the way an administrator does.
[ -d /usr/share/cockpit/shell ] || need+=(cockpit-system)
if [ ${#need[@]} -gt 0 ]; then
  echo "test:cockpit: installing ${need[*]}"
  # Another apt run (an unattended upgrade, a colleague) may hold the lock: wait for it.
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}"
fi
