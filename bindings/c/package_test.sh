#!/usr/bin/env bash
# Installs <build-dir> into a temporary prefix, then builds examples/c/main.c
# against it twice, with find_package(sluice) (sluice::sluice_c) and with
# pkg-config and the C compiler alone, and runs both on Bookinfo.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
build=$1
cmake_bin=${CMAKE:-cmake}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$cmake_bin" --install "$build" --prefix "$tmp/prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; exit 1; }
cp -r "$root/examples/c" "$tmp/src"
"$cmake_bin" -S "$tmp/src" -B "$tmp/build" -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release >"$tmp/cfg.log" ||
  { cat "$tmp/cfg.log"; exit 1; }
"$cmake_bin" --build "$tmp/build" >"$tmp/build.log" || { cat "$tmp/build.log"; exit 1; }
"$tmp/build/sluice_c_example" "$root/examples/ingress/bookinfo"

pc_dir=$(dirname "$(find "$tmp/prefix" -name sluice_c.pc -print -quit)")
# The .pc names the prefix it was configured with; point it at this one.
export PKG_CONFIG_PATH=$pc_dir
cc -std=c99 -Wall -Werror "$tmp/src/main.c" -o "$tmp/example-pc" \
  $(pkg-config --define-variable=prefix="$tmp/prefix" --cflags --libs sluice_c)
LD_LIBRARY_PATH=$(pkg-config --define-variable=prefix="$tmp/prefix" --variable=libdir sluice_c) \
  "$tmp/example-pc" "$root/examples/ingress/bookinfo"
echo "PASS: examples/c built with find_package(sluice) and with pkg-config"
