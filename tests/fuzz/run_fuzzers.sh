#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build over a temporary copy of its
# seed corpus (tests/fuzz/corpus/<target>/), then fuzzes it for a bounded
# time. Exits non-zero if any target crashes, trips a sanitizer or a check,
# times out or runs out of memory; the failing inputs are copied to
# <build>/fuzz-findings/<target>/ and the end of the log is shown.
#
#   tests/fuzz/run_fuzzers.sh BUILD_DIR [TARGET...]
#
# SLUICE_FUZZ_SECONDS  fuzzing time per target after the seeds (default 20;
#                      0 runs the seeds only)
# SLUICE_JOBS          targets run at once (default 2)
# SLUICE_FUZZ_LEAKS    1/0: LeakSanitizer on or off (default 1)
# The seed corpora are never written to: new inputs stay in the temp copy.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
build=$(cd "${1:?usage: run_fuzzers.sh BUILD_DIR [TARGET...]}" && pwd)
shift
seconds=${SLUICE_FUZZ_SECONDS:-20}
jobs=${SLUICE_JOBS:-2}
leaks=${SLUICE_FUZZ_LEAKS:-1}

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
  for dir in "$here"/corpus/*/; do
    targets+=("$(basename "$dir")")
  done
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
findings="$build/fuzz-findings"

export ASAN_OPTIONS="detect_leaks=${leaks}:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

# run_one TARGET: its exit status goes to $work/TARGET.rc.
run_one() {
  local target=$1
  local bin="$build/tests/fuzz/fuzz_$target"
  local log="$work/$target.log"
  if [[ ! -x "$bin" ]]; then
    echo "missing $bin" >"$log"
    echo 1 >"$work/$target.rc"
    return
  fi
  cp -r "$here/corpus/$target" "$work/corpus-$target"
  mkdir -p "$work/artifacts-$target"
  local args=(-timeout=10 -rss_limit_mb=2560 -detect_leaks="$leaks" -print_final_stats=1
    -artifact_prefix="$work/artifacts-$target/")
  if [[ -f "$here/dict/$target.dict" ]]; then
    args+=(-dict="$here/dict/$target.dict")
  fi
  if [[ $seconds -gt 0 ]]; then
    args+=(-max_total_time="$seconds")
  else
    args+=(-runs=0)
  fi
  local rc=0
  "$bin" "${args[@]}" "$work/corpus-$target" >"$log" 2>&1 || rc=$?
  echo "$rc" >"$work/$target.rc"
}

running=0
for target in "${targets[@]}"; do
  run_one "$target" &
  running=$((running + 1))
  if [[ $running -ge $jobs ]]; then
    wait -n || true
    running=$((running - 1))
  fi
done
wait || true

failed=()
for target in "${targets[@]}"; do
  rc=$(cat "$work/$target.rc" 2>/dev/null || echo 1)
  log="$work/$target.log"
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || true)
  seeds=$(find "$here/corpus/$target" -type f | wc -l)
  if [[ $rc -eq 0 ]]; then
    printf '  %-16s ok: %s executions clean (%s seeds, %s s)\n' "$target" "${execs:-?}" "$seeds" \
      "$seconds"
  else
    failed+=("$target")
    printf '  %-16s FAILED (exit %s)\n' "$target" "$rc"
    mkdir -p "$findings/$target"
    cp "$work/artifacts-$target"/* "$findings/$target/" 2>/dev/null || true
    cp "$log" "$findings/$target/fuzz.log"
    echo "---- last lines of the $target log (all of it: $findings/$target/fuzz.log)"
    tail -n 80 "$log"
    echo "----"
  fi
done

if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: failing targets: ${failed[*]}; inputs saved under $findings/"
  exit 1
fi
