#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds relish twice (normal,
# and with AddressSanitizer + UndefinedBehaviorSanitizer) and runs every test
# (ctest) on both builds; then fuzzes every parser briefly with clang
# (libFuzzer, ASan and clang's UBSan, which checks more than gcc's).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# most tests wait (on servers, rollouts, scrapes) rather than compute: twice
# as many at once as there are cores keeps the cores busy (measured: 345 s at
# -j2, 192 s at -j4 on 2 cores, 172 s of CPU)
jobs=$(( $(nproc) * 2 ))

echo "== style (clang-format, .clang-format)"
clang-format --dry-run --Werror host/*.[ch] modules/*.c modules/*/*.[ch] tests/c/*.[ch] tests/fuzz/*.c cmake/*.c

echo "== build (release, warnings as errors)"
scripts/build.sh build -DCMAKE_BUILD_TYPE=RelWithDebInfo
echo "== tests"
ctest --test-dir build --output-on-failure -j"$jobs"

echo "== build (AddressSanitizer + UndefinedBehaviorSanitizer)"
scripts/build.sh build-asan -DCMAKE_BUILD_TYPE=Debug -DRELISH_SANITIZE=ON
echo "== tests under sanitizers"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  ctest --test-dir build-asan --output-on-failure -j"$jobs"

echo "== fuzzing (clang: libFuzzer + ASan + UBSan), ${RELISH_FUZZ_SECONDS:-15}s per harness"
scripts/fuzz.sh "${RELISH_FUZZ_SECONDS:-15}"

# The whole suite on the clang build too (ASan + clang's UBSan): about 5 more
# minutes, so not by default
if [ -n "${RELISH_CLANG_SUITE:-}" ]; then
  echo "== tests under clang (ASan + UBSan)"
  cmake --build build-fuzz -j"$jobs" >/dev/null
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    ctest --test-dir build-fuzz --output-on-failure -j"$jobs"
fi
