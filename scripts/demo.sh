#!/usr/bin/env bash
# Installs what the build needs, builds sluice-ingress (Release) in
# build-release/ and runs its demo: a gateway on 127.0.0.1:8080 in front of two
# in-process upstreams. Extra arguments go to sluice-ingress (e.g. --workers 2).
# Try: curl -H 'end-user: jason' http://127.0.0.1:8080/
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

bash scripts/install-deps.sh
cmake -S "$root" -B build-release -G Ninja -DCMAKE_BUILD_TYPE=Release -DSLUICE_BUILD_TESTS=OFF
cmake --build build-release -j "${SLUICE_JOBS:-2}" --target sluice-ingress
exec build-release/examples/ingress/sluice-ingress --demo "$@"
