#!/usr/bin/env bash
# Configures and builds relish into build/ (or $1), warnings as errors.
# Extra arguments go to cmake, e.g. scripts/build.sh build-asan -DRELISH_SANITIZE=ON
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-build}"
shift || true
cmake -S . -B "$dir" -DRELISH_WERROR=ON "$@" >/dev/null
cmake --build "$dir" -j"$(nproc)" >/dev/null
