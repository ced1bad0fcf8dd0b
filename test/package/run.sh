#!/usr/bin/env bash
# npm run test:package: builds the Debian package and tests it for real (test/package/*.pkg.ts):
# lintian, an install into a debootstrapped Debian 12, and the shell completions driven in real
# bash, zsh and fish. Needs root (chroot). Installs the tools it needs when they are missing.
set -euo pipefail
cd "$(dirname "$0")/../.."
SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
need=()
for tool in lintian debootstrap zsh fish; do command -v "$tool" >/dev/null 2>&1 || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "test:package: installing ${need[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
start=$(date +%s)
npm run --silent package:deb
node --test --test-reporter=spec build/test/package/*.pkg.js
echo "test:package: $(( $(date +%s) - start )) s"
