#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz, clang with ASan and UBSan) into
# build-fuzz/ and runs each for a time budget, starting from its saved corpus.
# Usage: scripts/fuzz.sh [SECONDS_EACH] [NAME]...   (default 20 s, every harness)
# New inputs found go to build-fuzz/corpus/NAME (not committed); a crash
# stops the run and leaves its input in build-fuzz/crashes/, to fix and to
# commit as a regression seed in tests/fuzz/corpus/NAME/.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
shift || true
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for f in tests/fuzz/*.lua; do
    n=$(basename "$f" .lua)
    [ "$n" = common ] || names+=("$n")
  done
fi
targets=()
for n in "${names[@]}"; do targets+=("fuzz_$n"); done
# only the harnesses (and the library under them) are built
cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRELISH_FUZZ=ON \
  -DRELISH_WERROR=ON >/dev/null
cmake --build build-fuzz -j"$(nproc)" --target "${targets[@]}" >/dev/null
mkdir -p build-fuzz/crashes
# leaks: the Lua state lives across inputs (its collector frees later), so
# libFuzzer's per-input leak check would only see noise; the sanitizer build
# of the test suite checks leaks
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}"
status=0
for n in "${names[@]}"; do
  mkdir -p "build-fuzz/corpus/$n"
  echo "== fuzz $n (${seconds}s)"
  if ! build-fuzz/fuzz_"$n" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
    -print_final_stats=1 -artifact_prefix="build-fuzz/crashes/$n-" \
    "build-fuzz/corpus/$n" "tests/fuzz/corpus/$n" >"build-fuzz/$n.log" 2>&1; then
    echo "fuzz $n: FAILED; the input is in build-fuzz/crashes/, the log in build-fuzz/$n.log" >&2
    grep -E -A12 "^fuzz:|ERROR: |runtime error" "build-fuzz/$n.log" | head -40 >&2
    status=1
  else
    echo "   $(sed -n 's/^stat::number_of_executed_units: *//p' "build-fuzz/$n.log") inputs, no crash"
  fi
done
exit $status
