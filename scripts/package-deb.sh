#!/usr/bin/env bash
# npm run package:deb: builds dist/vfioctl_<version>_all.deb with debhelper. Installs the build
# tools it needs (Debian's debhelper, build-essential, pandoc) when they are missing. The tree is built
# here with npm, then laid out by scripts/stage-package.mjs in build/deb/vfioctl-<version>/ and
# packaged there, so dpkg-buildpackage's outputs never land outside the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
need=()
command -v dh >/dev/null 2>&1 || need+=(debhelper)
# dpkg-checkbuilddeps requires build-essential for every package (make runs debian/rules).
dpkg-query -W -f='${Status}' build-essential 2>/dev/null | grep -q 'ok installed' || need+=(build-essential)
command -v pandoc >/dev/null 2>&1 || need+=(pandoc)
if [ ${#need[@]} -gt 0 ]; then
  echo "package:deb: installing ${need[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
npm run --silent build
npm run --silent build:cockpit
version=$(node -p 'require("./package.json").version')
src=build/deb/vfioctl-$version
node scripts/stage-package.mjs "$src"
(cd "$src" && dpkg-buildpackage -us -uc -b --no-sign >../dpkg-buildpackage.log 2>&1) || {
  tail -n 40 build/deb/dpkg-buildpackage.log >&2
  exit 1
}
mkdir -p dist
cp "build/deb/vfioctl_${version}_all.deb" "build/deb/cockpit-vfioctl_${version}_all.deb" dist/
echo "dist/vfioctl_${version}_all.deb dist/cockpit-vfioctl_${version}_all.deb"
