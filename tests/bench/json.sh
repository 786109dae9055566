#!/usr/bin/env bash
# JSON decode+encode: relish.json against Python's json on the same ~5 MB
# Kubernetes-style document (a List of Deployments and ConfigMaps, compact as
# the API server sends it), generated once into a temp dir with a fixed seed.
# Timing is in-process (start-up excluded): 2 warm-up iterations, then
# $ITERATIONS (default 10) timed ones; the medians are compared.
# Usage: tests/bench/json.sh [RELISH]   (default: build/relish in the repo)
# A measurement, not a test: it prints figures and asserts nothing about them.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
relish="${1:-$repo/build/relish}"
iterations="${ITERATIONS:-10}"

die() { echo "json.sh: $*" >&2; exit 2; }
[ -x "$relish" ] || die "no relish binary at $relish (build it, or pass its path)"
command -v python3 >/dev/null || die "python3 not found"

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
doc="$tmp/k8s-list.json"

python3 "$here/gen_k8s_json.py" --seed 42 --size 5000000 >"$doc"
echo "document: $(wc -c <"$doc") bytes, sha256 $(sha256sum "$doc" | cut -c1-16)"
echo "relish:   $("$relish" version | head -n1), $("$relish" version | awk '/Lua /{print $2, $3}')"
echo "python:   $(python3 -c 'import sys; print(sys.version.split()[0])') ($(command -v python3))"
echo "iterations: 2 warm-up + $iterations timed, full GC between iterations (untimed)"

run() { # NAME COMMAND... : prints its per-iteration lines, keeps the median line
  local name="$1"; shift
  echo
  echo "== $name"
  "$@" | tee "$tmp/out.txt"
  awk -v n="$name" '/^median/ {print n "\t" $3 "\t" $6 "\t" $9}' "$tmp/out.txt" >>"$tmp/medians.tsv"
}

run "relish json (sorted keys, default)" \
  "$relish" lua "$here/json_roundtrip.lua" "$doc" "$iterations" --out "$tmp/relish.out"
run "relish json (sort_keys=false)" \
  "$relish" lua "$here/json_roundtrip.lua" "$doc" "$iterations" --unsorted
run "python3 json (dumps defaults)" \
  python3 "$here/json_roundtrip.py" "$doc" "$iterations"
run "python3 json (same output as relish)" \
  python3 "$here/json_roundtrip.py" "$doc" "$iterations" --same --out "$tmp/python.out"

echo
if cmp -s "$tmp/relish.out" "$tmp/python.out"; then
  echo "relish and python3 (same output) wrote identical bytes ($(wc -c <"$tmp/relish.out") bytes)"
else
  echo "NOTE: relish and python3 (same output) wrote different texts"
fi

echo
echo "Medians (ms); ratio = that time / relish default total (>1: relish faster)"
awk -F'\t' '
  NR == 1 { base = $4 }
  { printf "  %-38s decode %7.2f  encode %7.2f  total %7.2f  ratio %.2f\n", $1, $2, $3, $4, $4 / base }
' "$tmp/medians.tsv"
