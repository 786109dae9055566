#!/usr/bin/env bash
# Start-up time: `relish version`, `relish lua empty.lua` and `lua5.4 -e ''`,
# measured by hyperfine without a shell (-N), 5 warm-up runs, at least 50 runs.
# Usage: tests/bench/startup.sh [RELISH]   (default: build/relish in the repo)
# A measurement, not a test: it prints figures and asserts nothing about them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
relish="${1:-$repo/build/relish}"

die() { echo "startup.sh: $*" >&2; exit 2; }
[ -x "$relish" ] || die "no relish binary at $relish (build it, or pass its path)"
relish="$(cd "$(dirname "$relish")" && pwd)/$(basename "$relish")"
for tool in hyperfine lua5.4 python3; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh --bench installs hyperfine and lua5.4)"
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

hyperfine -N --warmup 5 --min-runs 50 --export-json "$tmp/startup.json" \
  -n "relish version" "$relish version" \
  -n "relish lua empty.lua" "$relish lua $here/empty.lua" \
  -n "lua5.4 -e ''" "lua5.4 -e ''"

echo
echo "Medians (ms), $(nproc) CPUs, $(date -u +%Y-%m-%d):"
python3 - "$tmp/startup.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print("  %-22s %7.2f ms  (min %.2f, max %.2f, %d runs)" % (
        r["command"], r["median"] * 1e3, r["min"] * 1e3, r["max"] * 1e3, len(r["times"])))
PY
