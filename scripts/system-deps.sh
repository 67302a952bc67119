#!/usr/bin/env bash
# Debian packages the tests and benchmarks use, installed only when missing (idempotent):
#   junit4 + a JDK        the android_demo Java core's JUnit tests
#   openssh-server, adb   stand-in SSH board and the real adb client for the remote-target tests
#   dataset-fashion-mnist the Fashion-MNIST benchmark data (benchmarks/)
#   linux-perf            perf record/report for benchmarks/investigations/xnnpack_kernels.py (which XNNPACK kernels run)
#   cmake g++ binutils    the native runner's build (`make native`; readelf for its bundle)
#   g++-aarch64-linux-gnu the aarch64 cross-compiler and glibc (libc6-arm64-cross) for `make native-aarch64`;
#                         the runner bundle ships that glibc (runtimes/cpp/make_bundle.py)
#   qemu-user-static      runs the aarch64 bundle here (binfmt_misc; the slow tier registers it with the F flag)
#   busybox-static:arm64  the only userland of the bare arm64 root in tests/test_native_aarch64.py; needs the
#                         arm64 architecture enabled: dpkg --add-architecture arm64 (done below)
# Needs root (or sudo) and apt; elsewhere it prints what to install and exits 0, and the tests that
# need a missing tool say so when they run.
set -euo pipefail
pkgs=(junit4 default-jdk-headless openssh-server openssh-client adb dataset-fashion-mnist fortunes linux-perf
      cmake g++ binutils g++-aarch64-linux-gnu qemu-user-static busybox-static:arm64)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "system-deps: not a Debian-like system; please install: ${missing[*]}" >&2; exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "system-deps: run as root to install: ${missing[*]}" >&2; exit 0; fi
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if [[ " ${missing[*]} " == *":arm64 "* ]] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  $SUDO dpkg --add-architecture arm64  # for busybox-static:arm64
fi
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
