#!/usr/bin/env bash
# Build the native runner: runtimes/cpp/build.sh [--arch x86_64|aarch64] [--python PY]
#   -> build/native/<arch>/edgekd_runner, its backend plugins and the runtime .so files (MANIFEST lists them)
#
# x86_64 (this machine): links the executorch and ai-edge-litert wheels installed in the Python
# environment (--python, default .venv/bin/python, else python3). Override their locations with
# EXECUTORCH_ROOT=... LITERT_ROOT=... in the environment.
# aarch64: cross-compiles with g++-aarch64-linux-gnu against the aarch64 wheels that
# runtimes/cpp/fetch_wheels.sh downloads (pip download --platform manylinux_2_28_aarch64; the cache is
# build/wheels/aarch64, or $EDGEKD_WHEEL_CACHE). Works from a fresh clone: no build/ folder, no cache.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
arch="$(uname -m)"
python=""
jobs="${JOBS:-2}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --arch) arch="$2"; shift 2 ;;
    --arch=*) arch="${1#*=}"; shift ;;
    --python) python="$2"; shift 2 ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    *) echo "build.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

out="$repo/build/native/$arch"
extra=()
if [[ -z "$python" ]]; then
  if [[ -x "$repo/.venv/bin/python" ]]; then python="$repo/.venv/bin/python"; else python="$(command -v python3)"; fi
fi
python="$(command -v "$python" || true)"
[[ -n "$python" && -x "$python" ]] || { echo "build.sh: no Python interpreter found (pass --python PY, or make install first)" >&2; exit 2; }
if [[ "$arch" == "$(uname -m)" ]]; then
  site="$("$python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  et_root="${EXECUTORCH_ROOT:-$site/executorch}"
  lt_root="${LITERT_ROOT:-$site/ai_edge_litert}"
elif [[ "$arch" == "aarch64" ]]; then
  if [[ ! -f "$here/fetch_wheels.sh" ]]; then
    echo "build.sh: cross-building needs runtimes/cpp/fetch_wheels.sh (the aarch64 wheels)" >&2; exit 2
  fi
  command -v aarch64-linux-gnu-g++ >/dev/null || {
    echo "build.sh: aarch64-linux-gnu-g++ not found (apt-get install g++-aarch64-linux-gnu; scripts/system-deps.sh)" >&2
    exit 2; }
  PYTHON="$python" bash "$here/fetch_wheels.sh" aarch64  # the versions installed for $python, for the device too
  sdk="$out/sdk"
  et_root="${EXECUTORCH_ROOT:-$sdk/executorch}"
  lt_root="${LITERT_ROOT:-$sdk/ai_edge_litert}"
  extra+=("-DCMAKE_TOOLCHAIN_FILE=$here/toolchains/aarch64-linux-gnu.cmake")
else
  echo "build.sh: no build for --arch $arch on $(uname -m) (x86_64 natively, aarch64 cross)" >&2; exit 2
fi

for tool in cmake "${CXX:-c++}" readelf; do
  command -v "$tool" >/dev/null || { echo "build.sh: $tool not found (apt-get install cmake g++ binutils)" >&2; exit 2; }
done
cmake -S "$here" -B "$out/cmake" -DCMAKE_BUILD_TYPE=Release \
  -DEXECUTORCH_ROOT="$et_root" -DLITERT_ROOT="$lt_root" -DEDGEKD_OUTPUT_DIR="$out" "${extra[@]}" >/dev/null
cmake --build "$out/cmake" -j "$jobs"
"$python" "$here/make_bundle.py" --arch "$arch"
echo "built $out/edgekd_runner"
