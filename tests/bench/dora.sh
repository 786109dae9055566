#!/usr/bin/env bash
# relish dora over a journal of N deployment runs (default 100,000) spread
# over the last year (tests/bench/dora_gen.lua), --since 365d, each format;
# hyperfine when present, else the best of 10 runs of `date +%s%N`.
# Usage: tests/bench/dora.sh [RELISH]   (N=... changes the size)
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
relish=$(realpath "${1:-$repo/build/relish}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=${N:-100000}
t0=$(date +%s%N)
"$relish" lua "$repo/tests/bench/dora_gen.lua" "$work/journal.db" "$n"
echo "generated $n runs in $(( ($(date +%s%N) - t0) / 1000000 )) ms ($(du -h "$work/journal.db" | cut -f1))"
state="sqlite:$work/journal.db"
"$relish" dora --since 365d --state "$state"
for fmt in table json prometheus; do
  if command -v hyperfine >/dev/null; then
    hyperfine -N -w 2 -r 20 "$relish dora --since 365d --format $fmt --state $state" 2>/dev/null | sed -n '1,3p'
  else
    best=
    for _ in $(seq 10); do
      s=$(date +%s%N)
      "$relish" dora --since 365d --format "$fmt" --state "$state" >/dev/null
      ms=$(( ($(date +%s%N) - s) / 1000000 ))
      if [ -z "$best" ] || [ "$ms" -lt "$best" ]; then best=$ms; fi
    done
    echo "dora --since 365d --format $fmt: best of 10: $best ms"
  fi
done
