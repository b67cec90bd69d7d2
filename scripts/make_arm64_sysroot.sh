#!/usr/bin/env bash
# A Debian 12 (bookworm) arm64 root with Python 3.11, for running the rk3588-python SDK demo under
# qemu-aarch64 on an x86_64 machine (TOOLCHAINS.md §4). Only debootstrap's first stage runs (nothing is
# executed inside the root), then every downloaded .deb is unpacked with dpkg-deb.
#   bash scripts/make_arm64_sysroot.sh [DIR]   (default: ${TOOLBOX_CACHE:-~/.cache/toolbox}/sysroots/bookworm-arm64)
# Prints the root's path. Idempotent: a complete root (marked by .complete) is reused.
# Run:  qemu-aarch64 -L DIR DIR/usr/bin/python3.11 script.py   (qemu-user >= 10)
set -euo pipefail
R=${1:-${TOOLBOX_CACHE:-$HOME/.cache/toolbox}/sysroots/bookworm-arm64}
if [ -f "$R/.complete" ]; then echo "$R"; exit 0; fi
command -v debootstrap >/dev/null || { echo "error: debootstrap not found (apt-get install debootstrap, or bash scripts/install_test_tools.sh)" >&2; exit 1; }
uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
uri=${uri:-http://deb.debian.org/debian}
tmp="$R.tmp.$$"
rm -rf "$tmp"
mkdir -p "$(dirname "$R")"
trap 'rm -rf "$tmp"' EXIT
debootstrap --foreign --arch=arm64 --variant=minbase --include=python3.11,libpython3.11-stdlib \
  bookworm "$tmp" "$uri" >&2
for d in "$tmp"/var/cache/apt/archives/*.deb; do dpkg-deb -x "$d" "$tmp"; done
rm -f "$tmp"/var/cache/apt/archives/*.deb
[ -x "$tmp/usr/bin/python3.11" ] || { echo "error: python3.11 missing from the arm64 root" >&2; exit 1; }
touch "$tmp/.complete"
rm -rf "$R"
mv "$tmp" "$R"
trap - EXIT
echo "$R"
