#!/usr/bin/env bash
# Builds sluice and runs every test, as CI does (.ci/run calls this):
#   1. installs the Debian packages it needs (scripts/install-deps.sh)
#   2. normal build (RelWithDebInfo) in build/ and its ctest suite, which
#      includes the installed-package consumer and the README example check
#   3. ASan + UBSan build in build-asan/ and the same suite under it
#   4. ThreadSanitizer build in build-tsan/ and the same suite under it
#   5. a host project that pulls sluice in with add_subdirectory()
#   6. the libFuzzer targets (tests/fuzz): a clang build in build-fuzz/, each
#      target over its seed corpus and then SLUICE_FUZZ_SECONDS (default 20)
#      of fuzzing; any crash fails (inputs saved in build-fuzz/fuzz-findings/)
# Exits non-zero on the first failure. SLUICE_JOBS sets parallelism (default 2).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
jobs=${SLUICE_JOBS:-2}

timings=()
current=""
started=$SECONDS

summary() {
  local rc=$?
  echo
  echo "==== timings"
  local line
  for line in "${timings[@]}"; do
    echo "  $line"
  done
  if [[ $rc -ne 0 ]]; then
    echo "  FAILED in phase: ${current:-setup} (exit $rc)"
  fi
  echo "  total: $((SECONDS - started)) s"
}
trap summary EXIT

# CPU seconds used so far by finished child processes (utime + stime of
# waited-for children, /proc/<pid>/stat fields 16 and 17). Shown next to wall
# time because a shared machine stretches wall time, not CPU time.
child_cpu_seconds() {
  local -a f
  read -r -a f </proc/$$/stat
  echo $(((f[15] + f[16]) / $(getconf CLK_TCK)))
}

# phase NAME COMMAND...: runs one step, timed.
phase() {
  current=$1
  shift
  local t0=$SECONDS c0
  c0=$(child_cpu_seconds)
  echo
  echo "==== $current"
  "$@"
  timings+=("$(printf '%-26s %5d s wall %6d s cpu' "$current" $((SECONDS - t0)) \
    $(($(child_cpu_seconds) - c0)))")
  current=""
}

# LeakSanitizer needs ptrace-like access some sandboxes deny; probe once so the
# ASan run reports real leaks where it can and does not fail spuriously where
# it cannot.
lsan_works() {
  local dir
  dir=$(mktemp -d)
  printf 'int main() { return 0; }\n' >"$dir/probe.c"
  local ok=1
  if gcc -fsanitize=address "$dir/probe.c" -o "$dir/probe" 2>/dev/null &&
      ASAN_OPTIONS=detect_leaks=1 "$dir/probe" >"$dir/out" 2>&1; then
    ok=0
  fi
  rm -rf "$dir"
  return $ok
}

configure_build() {
  local dir=$1
  shift
  cmake -S "$root" -B "$dir" -G Ninja "$@"
  cmake --build "$dir" -j "$jobs"
}

# Every build after the first compiles the library's and the tests' sources
# as unity files (CMake's batches of 8): about 40% less compile time, as
# each batch parses asio and instantiates its templates once. The first
# build stays one file per source, so a source that compiles only after
# another's includes still fails there.
unity=(-DCMAKE_UNITY_BUILD=ON)

run_ctest() {
  ctest --test-dir "$1" --output-on-failure --no-tests=error -j "$jobs"
}

phase "dependencies" bash scripts/install-deps.sh
echo "$(cmake --version | head -n1); ninja $(ninja --version); $(g++ --version | head -n1)"

# The bindings (Python module, C API) here; the C API again under ASan below.
# Line tables only (-g1): nothing here reads more, and full debug info costs
# about 30% more compile time (lib/proxy/session.cpp: 31 s against 22 s).
phase "build (RelWithDebInfo)" configure_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSLUICE_PYTHON=ON -DSLUICE_C=ON -DPython3_EXECUTABLE=/usr/bin/python3 \
  "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O2 -g1 -DNDEBUG"
phase "tests (RelWithDebInfo)" run_ctest build

if lsan_works; then
  leaks=1
else
  leaks=0
  echo "note: LeakSanitizer does not work in this environment; leak checking is off"
fi
# Set before building too: test discovery runs the sanitized test binaries.
export ASAN_OPTIONS="detect_leaks=${leaks}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# -O1 keeps the sanitized suite fast, -g1 (line tables) is all a report
# needs and builds faster; no -DNDEBUG so assertions stay on.
# The C API's tests run here too (compiled as C); the Python module does not:
# an instrumented module needs an instrumented or LD_PRELOADed interpreter.
phase "build (ASan+UBSan)" configure_build build-asan -DSLUICE_SANITIZE=ON -DSLUICE_C=ON \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo "${unity[@]}" \
  "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1"
phase "tests (ASan+UBSan)" run_ctest build-asan
unset ASAN_OPTIONS UBSAN_OPTIONS

# ThreadSanitizer over the same suite: workers, the control side and the
# shared upstream state meet here. Probed first: some kernels' address-space
# layouts stop TSan's runtime before main().
tsan_works() {
  local dir ok=1
  dir=$(mktemp -d)
  printf 'int main() { return 0; }\n' >"$dir/probe.c"
  if gcc -fsanitize=thread "$dir/probe.c" -o "$dir/probe" 2>/dev/null && "$dir/probe" >/dev/null 2>&1; then
    ok=0
  fi
  rm -rf "$dir"
  return $ok
}
if tsan_works; then
  phase "build (TSan)" configure_build build-tsan -DSLUICE_TSAN=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo "${unity[@]}" \
    "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -g1" "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -g1"
  # A race report makes the test's process exit non-zero (TSan's exitcode).
  run_ctest_tsan() {
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$root/tests/tsan.supp" \
      run_ctest build-tsan
  }
  phase "tests (TSan)" run_ctest_tsan
else
  echo "note: ThreadSanitizer does not run in this environment; the TSan phase is skipped"
fi

phase "package (add_subdirectory)" env SLUICE_UNITY_BUILD=ON \
  bash tests/package_test.sh subdirectory "$root/build-subdirectory"

# libFuzzer needs clang. The library is built again with coverage
# instrumentation and ASan+UBSan; tests and examples are not needed there.
fuzz_build() {
  configure_build build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DSLUICE_FUZZ=ON -DSLUICE_BUILD_TESTS=OFF -DSLUICE_BUILD_EXAMPLES=OFF -DSLUICE_BUILD_ISTIO=ON \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo "-DCMAKE_C_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" \
    "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" "${unity[@]}"
}
phase "fuzz (build)" fuzz_build
# Seeds are copied to a temp directory: new inputs never land in the repo.
phase "fuzz (run)" env SLUICE_FUZZ_LEAKS="$leaks" SLUICE_JOBS="$jobs" \
  bash tests/fuzz/run_fuzzers.sh build-fuzz

echo
echo "all tests passed"
