#!/usr/bin/env bash
# One-command set-up on a fresh Debian/Ubuntu machine: installs what is missing (Node.js >= 20,
# kmod, pci.ids), builds vfioctl, then runs a read-only `vfioctl list` of this machine.
# Idempotent. `--no-list` skips the final list (CI).
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
need=()
command -v node >/dev/null 2>&1 || need+=(nodejs npm)
command -v modprobe >/dev/null 2>&1 || need+=(kmod)
[ -e /usr/share/misc/pci.ids ] || [ -e /usr/share/hwdata/pci.ids ] || need+=(pci.ids)
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}"
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  echo "setup: Node.js $(node --version) is too old; vfioctl needs Node.js 20 or newer" >&2
  exit 1
fi
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
if [ "${1:-}" != --no-list ]; then
  ./dist/vfioctl.js list
fi
