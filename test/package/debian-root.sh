#!/usr/bin/env bash
# Prints the path of a pristine Debian 12 (bookworm) system tree made with debootstrap, building it
# first when it is not cached. The cache key is every input of the tree (suite, mirror, packages,
# this script), so a change to any of them builds a new tree; a half-built tree is never used.
# The package test copies this tree and installs vfioctl into the copy; the tree itself stays clean.
set -euo pipefail
suite=bookworm
mirror=${VFIOCTL_DEB_MIRROR:-http://deb.debian.org/debian}
security=${VFIOCTL_DEB_SECURITY:-http://deb.debian.org/debian-security}
# man-db: the test renders the installed pages with `man -l`. Nothing else: the package's own
# dependencies (Debian's nodejs) must come from `apt-get install ./vfioctl_*.deb`.
include=man-db
cache=${VFIOCTL_DEB_CACHE:-/var/cache/vfioctl-deb}
key=$( { echo "$suite $mirror $security $include"; cat "$0"; } | sha256sum | cut -c1-16)
tree="$cache/$suite-$key"
if [ ! -e "$tree/.complete" ]; then
  rm -rf "$tree.tmp"
  mkdir -p "$cache"
  echo "debian-root: debootstrap $suite into $tree (once per input change)" >&2
  debootstrap --variant=minbase --include="$include" "$suite" "$tree.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1 || {
    tail -n 30 "$cache/debootstrap.log" >&2
    exit 1
  }
  # The package test's apt-get sees what a real Debian 12 host sees: point release, updates, security.
  printf 'deb %s %s main\ndeb %s %s-updates main\ndeb %s %s-security main\n' \
    "$mirror" "$suite" "$mirror" "$suite" "$security" "$suite" >"$tree.tmp/etc/apt/sources.list"
  rm -f "$tree.tmp/var/cache/apt/archives/"*.deb
  touch "$tree.tmp/.complete"
  rm -rf "$tree"
  mv "$tree.tmp" "$tree"
fi
echo "$tree"
