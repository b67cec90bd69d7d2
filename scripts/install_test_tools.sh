#!/usr/bin/env bash
# System tools the tests use (Debian, as root): Chromium for the browser tests, cross compilers,
# wine and qemu-user 10 (bookworm-backports) for proving the SDK zips. Idempotent; skips what is present.
set -euo pipefail
need=()
command -v chromium >/dev/null || need+=(chromium chromium-driver fonts-dejavu-core)
command -v x86_64-w64-mingw32-g++ >/dev/null || need+=(g++-mingw-w64-x86-64 mingw-w64-tools)
command -v aarch64-linux-gnu-g++ >/dev/null || need+=(g++-aarch64-linux-gnu)
command -v wine >/dev/null || need+=(wine wine64)
command -v cmake >/dev/null || need+=(cmake)
dpkg -s fonts-wqy-microhei >/dev/null 2>&1 || need+=(fonts-wqy-microhei)
command -v debootstrap >/dev/null || need+=(debootstrap)  # arm64 Python root for the rk3588-python SDK test
SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
if [ ${#need[@]} -gt 0 ]; then
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# qemu-user >= 10 (bookworm's 7.2 crashes in ONNX Runtime's CPU detection): from bookworm-backports.
qv=$(qemu-aarch64 --version 2>/dev/null | sed -n 's/.*version \([0-9]*\).*/\1/p' || true)
if [ -z "$qv" ] || [ "$qv" -lt 10 ]; then
  uri=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
  uri=${uri:-http://deb.debian.org/debian}
  echo "deb $uri bookworm-backports main" | $SUDO tee /etc/apt/sources.list.d/toolbox-backports.list >/dev/null
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-user >/dev/null
fi
echo "test tools ready"
