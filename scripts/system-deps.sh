#!/usr/bin/env bash
# Debian packages the tests and benchmarks use, installed only when missing (idempotent):
#   junit4 + a JDK        the android_demo Java core's JUnit tests
#   openssh-server, adb   stand-in SSH board and the real adb client for the remote-target tests
#   dataset-fashion-mnist the Fashion-MNIST benchmark data (benchmarks/)
#   linux-perf            perf record/report for benchmarks/kernels.py (which XNNPACK kernels run)
# Needs root (or sudo) and apt; elsewhere it prints what to install and exits 0, and the tests that
# need a missing tool say so when they run.
set -euo pipefail
pkgs=(junit4 default-jdk-headless openssh-server openssh-client adb dataset-fashion-mnist fortunes linux-perf)
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
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
