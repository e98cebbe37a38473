#!/usr/bin/env bash
# Checks that host projects can use sluice both ways the README promises.
#
#   tests/package_test.sh installed <build-dir>
#       cmake --install <build-dir> into a temporary prefix, then configure,
#       build and run tests/consumer (find_package(sluice), sluice::sluice)
#       from a copy outside the source tree.
#   tests/package_test.sh subdirectory [<binary-dir>]
#       configure tests/consumer/add_subdirectory, which pulls in this source
#       tree with add_subdirectory(), then build and run its consumer.
#
# Uses $CMAKE if set (ctest passes the cmake it was configured with), and
# builds the subdirectory consumer as unity files when SLUICE_UNITY_BUILD=ON
# (CI, for build time).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cmake_bin=${CMAKE:-cmake}
jobs=${SLUICE_JOBS:-2}
generator=()
if command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi

usage() {
  echo "usage: $0 installed <build-dir> | subdirectory [<binary-dir>]" >&2
  exit 2
}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

installed() {
  local build=$1
  [[ -f "$build/CMakeCache.txt" ]] || { echo "$build is not a configured build directory" >&2; exit 2; }
  local prefix=$tmp/prefix
  "$cmake_bin" --install "$build" --prefix "$prefix" >"$tmp/install.log" ||
    { cat "$tmp/install.log"; exit 1; }

  local config
  config=$(find "$prefix" -name sluiceConfig.cmake -print -quit)
  [[ -n "$config" ]] || { echo "FAIL: no sluiceConfig.cmake under $prefix" >&2; exit 1; }
  # The package must stand alone: no paths back into the source or build tree.
  if grep -rlF -e "$root/" -e "$(cd "$build" && pwd)/" "$(dirname "$config")"; then
    echo "FAIL: installed CMake files above refer to the source or build tree" >&2
    exit 1
  fi

  # A copy, so that nothing can reach the source tree by a relative path.
  cp -r "$root/tests/consumer" "$tmp/consumer-src"
  rm -rf "$tmp/consumer-src/add_subdirectory"
  "$cmake_bin" -S "$tmp/consumer-src" -B "$tmp/consumer-build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$prefix"
  "$cmake_bin" --build "$tmp/consumer-build" -j "$jobs"
  "$tmp/consumer-build/consumer"
  echo "PASS: find_package(sluice) consumer built and ran against $prefix"
}

subdirectory() {
  local bin=${1:-$tmp/subdirectory-build}
  "$cmake_bin" -S "$root/tests/consumer/add_subdirectory" -B "$bin" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Debug -DSLUICE_SOURCE_DIR="$root" -DCMAKE_UNITY_BUILD="${SLUICE_UNITY_BUILD:-OFF}"
  "$cmake_bin" --build "$bin" -j "$jobs" --target consumer
  "$bin/consumer"
  echo "PASS: add_subdirectory(sluice) consumer built and ran"
}

case "${1:-}" in
  installed) [[ $# -eq 2 ]] || usage; installed "$2" ;;
  subdirectory) [[ $# -le 2 ]] || usage; subdirectory "${2:-}" ;;
  *) usage ;;
esac
