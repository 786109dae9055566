#!/usr/bin/env bash
# Engine benchmarks (by hand, not part of ctest):
#  1. dry-run (plan) of a 50-step fs recipe: wall time (hyperfine) and peak RSS;
#  2. the journal's cost per action: 1,000 fs writes in a recipe (journaled,
#     each pending row synced to disk before the write) against the same 1,000
#     writes from `relish lua` (no journal).
# Usage: tests/bench/engine.sh [RELISH]
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
relish=$(realpath "${1:-$repo/build/relish}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export RELISH_STATE="$work/journal.db"

# a 50-step recipe, each step writing one file and linking it
{
  echo 'local fs = require "relish.fs"'
  echo 'return recipe "fifty" {'
  echo '  params = { dir = param.string { required = true } },'
  for i in $(seq 1 50); do
    echo "  step \"s$i\" { run = function(ctx) fs.write(ctx.params.dir .. \"/f$i\", \"content $i\\n\") fs.symlink(ctx.params.dir .. \"/f$i\", ctx.params.dir .. \"/l$i\") end },"
  done
  echo '}'
} > "$work/fifty.lua"
mkdir -p "$work/d"

cat > "$work/thousand.lua" <<'LUA'
local fs = require "relish.fs"
return recipe "thousand" {
  params = { dir = param.string { required = true } },
  step "write" { run = function(ctx)
    for i = 1, 1000 do assert(fs.write(ctx.params.dir .. "/f" .. (i % 50), "content " .. i .. "\n")) end
  end },
}
LUA
cat > "$work/thousand_direct.lua" <<'LUA'
local fs = require "relish.fs"
local dir = ...
for i = 1, 1000 do assert(fs.write(dir .. "/f" .. (i % 50), "content " .. i .. "\n")) end
LUA

echo "== plan of a 50-step recipe (100 actions)"
hyperfine -N --warmup 3 --runs 30 "$relish plan $work/fifty.lua -p dir=$work/d" --export-json "$work/plan.json" >/dev/null
python3 - "$work/plan.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"][0]
print(f"  wall median {r['median']*1000:.1f} ms  (mean {r['mean']*1000:.1f} ms, min {r['min']*1000:.1f} ms, {len(r['times'])} runs)")
PY
python3 - "$relish" "$work" <<'PY'
import resource, subprocess, sys
relish, work = sys.argv[1], sys.argv[2]
subprocess.run([relish, "plan", f"{work}/fifty.lua", "-p", f"dir={work}/d"], stdout=subprocess.DEVNULL, check=True)
print(f"  peak RSS {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024:.1f} MB")
PY

echo "== journal cost per action (1,000 fs writes)"
mkdir -p "$work/j" "$work/n"
hyperfine -N --warmup 1 --runs 5 \
  "$relish run $work/thousand.lua -p dir=$work/j" \
  "$relish lua $work/thousand_direct.lua $work/n" --export-json "$work/j.json" >/dev/null
python3 - "$work/j.json" <<'PY'
import json, sys
res = json.load(open(sys.argv[1]))["results"]
withj, without = res[0]["median"], res[1]["median"]
print(f"  journaled run      {withj*1000:8.1f} ms")
print(f"  no journal (lua)   {without*1000:8.1f} ms")
print(f"  journal cost       {(withj-without)/1000*1000:8.3f} ms per action")
PY
