#!/usr/bin/env bash
# Installs every Debian 12 package that building and testing sluice needs.
# Idempotent: when all packages are already installed it returns without
# touching apt. Runs as root, or through sudo when not root.
set -euo pipefail

packages=(
  build-essential            # gcc/g++ 12, make, libc headers
  cmake                      # >= 3.25
  ninja-build
  pkg-config
  libasio-dev                # standalone Asio 1.22 (header-only)
  node-llhttp                # llhttp 8.1 C sources, compiled into libsluice
  android-libboringssl-dev   # BoringSSL (TLS, crypto)
  libfmt-dev
  doctest-dev
  libre2-dev
  libyaml-cpp-dev            # Istio YAML loader (lib/istio, sluice-ingress)
  nlohmann-json3-dev
  libhiredis-dev             # Redis client protocol (global rate limit)
  libnghttp2-dev nghttp2-client  # HTTP/2 codec (lib/http2); h2load and nghttp for its tests
  redis-server               # the global rate limit's integration tests
  curl                       # end-to-end tests and the demo
  openssl                    # test certificates
  ca-certificates
  python3
  python3-grpcio             # gRPC client for the gRPC tests (/usr/bin/python3)
  prometheus                 # promtool check metrics (tests)
  pybind11-dev python3-dev python3-pytest  # bindings/python (SLUICE_PYTHON)
  python3-setuptools python3-wheel python3-venv python3-pip  # pip install ./bindings/python, offline
  clang                      # clang 14: libFuzzer targets (tests/fuzz)
  libclang-rt-14-dev         # libFuzzer and sanitizer runtimes for clang 14
  chromium chromium-driver python3-selenium  # the admin /graph page's browser test
)

missing=()
for name in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$name" 2>/dev/null || true)
  if [[ "$status" != "installed" ]]; then
    missing+=("$name")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#packages[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
as_root=()
if [[ $(id -u) -ne 0 ]]; then
  if ! command -v sudo >/dev/null 2>&1; then
    echo "install-deps: not root and sudo is not available; install as root: ${missing[*]}" >&2
    exit 1
  fi
  as_root=(sudo)
fi

"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update
"${as_root[@]}" env DEBIAN_FRONTEND=noninteractive \
  apt-get install -y --no-install-recommends "${missing[@]}"
echo "install-deps: done"
