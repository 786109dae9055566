#!/usr/bin/env bash
# `relish install --frozen` with 20 libraries already cached (target: <= 100 ms).
# Makes 20 libraries (bare repositories, each 10 Lua files in 3 directories and
# a tag v1.0.0), a manifest naming them by path, runs `relish install` once to
# fill a cache of its own, then times `relish install --frozen` with hyperfine
# (-N, 3 warm-ups, at least 30 runs). Every frozen run re-hashes the 20 trees.
# Usage: tests/bench/libs.sh [RELISH]   (default: build/relish in the repo)
# A measurement, not a test: it prints figures and asserts nothing about them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
relish="${1:-$repo/build/relish}"

die() { echo "libs.sh: $*" >&2; exit 2; }
[ -x "$relish" ] || die "no relish binary at $relish (build it, or pass its path)"
relish="$(cd "$(dirname "$relish")" && pwd)/$(basename "$relish")"
for tool in hyperfine git python3; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh --bench installs hyperfine)"
done

tmp="$(mktemp -d)"
trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/cache" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@example.test
export GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@example.test

mkdir -p "$tmp/app"
echo "return {" > "$tmp/app/relish.deps.lua"
for i in $(seq -w 1 20); do
  src="$tmp/src/lib$i"
  mkdir -p "$src/helpers" "$src/recipes" "$src/runbooks"
  for f in 1 2 3 4; do printf 'local M = {}\nfunction M.f%s() return %s end\nreturn M\n' "$f" "$i" > "$src/helpers/h$f.lua"; done
  for f in 1 2 3; do printf 'return recipe { name = "r%s" }\n' "$f" > "$src/recipes/r$f.lua"; done
  for f in 1 2 3; do printf 'return runbook { name = "b%s" }\n' "$f" > "$src/runbooks/b$f.lua"; done
  git -C "$src" init -q -b main
  git -C "$src" add -A
  git -C "$src" commit -q -m "lib$i"
  git -C "$src" tag v1.0.0
  git clone -q --bare "$src" "$tmp/remotes/lib$i.git"
  echo "  lib$i = { source = \"../remotes/lib$i.git\", version = \"^1.0\" }," >> "$tmp/app/relish.deps.lua"
done
echo "}" >> "$tmp/app/relish.deps.lua"

cd "$tmp/app"
"$relish" install > /dev/null
hyperfine -N --warmup 3 --min-runs 30 --export-json "$tmp/libs.json" \
  -n "relish install --frozen (20 cached)" "$relish install --frozen" \
  -n "relish version" "$relish version"

echo
echo "Medians (ms), $(nproc) CPUs, $(date -u +%Y-%m-%d):"
python3 - "$tmp/libs.json" <<'PY'
import json, sys
for r in json.load(open(sys.argv[1]))["results"]:
    print("  %-36s %7.2f ms  (min %.2f, max %.2f, %d runs)" % (
        r["command"], r["median"] * 1e3, r["min"] * 1e3, r["max"] * 1e3, len(r["times"])))
PY
