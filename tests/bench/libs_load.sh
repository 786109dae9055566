#!/usr/bin/env bash
# Start-up of a recipe that uses 5 recipe libraries against the same recipe
# using none: `relish run --dry-run` of a one-step recipe, measured by
# hyperfine without a shell (-N), 5 warm-ups, at least 30 runs. Each library
# is a tree of 10 modules (about 3.3 KB each) in a cache made here, pinned by
# a relish.lock written with relish.libs (tree_hash); the recipe requires one
# module of each, which requires 2 siblings. Every run of the 5-library
# recipe reads the lock and the manifest and hashes all 50 files (the check
# before the first load of each tree in a process), then loads 15 modules. A
# third row loads the same 15 modules as the recipe's own modules (plain
# require on package.path, no lock, no hash): the difference between rows 2
# and 3 is what the libraries' lock and verification cost.
# Usage: tests/bench/libs_load.sh [RELISH]   (default: build/relish in the repo)
# A measurement, not a test: it asserts nothing about the figures (it does
# check that both recipes run).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
relish="$(realpath "${1:-$repo_root/build/relish}")"

die() { echo "libs_load.sh: $*" >&2; exit 2; }
[ -x "$relish" ] || die "no relish binary at $relish (build it, or pass its path)"
for tool in hyperfine python3; do command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh --bench)"; done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export XDG_CACHE_HOME="$tmp/cache" HOME="$tmp/home"
mkdir -p "$tmp/cache/relish/libs" "$tmp/repo" "$tmp/home"

# 5 libraries x 10 modules; module k of library NAME defines 20 functions;
# the same modules as the recipe's own (own/NAME/...) for the third row
python3 - "$tmp" <<'PY'
import os, sys
tmp = sys.argv[1]
for lib in ["lib1", "lib2", "lib3", "lib4", "lib5"]:
  for prefix, d in ((f"lib.{lib}", f"{tmp}/src/{lib}"), (f"own.{lib}", f"{tmp}/repo/own/{lib}")):
    os.makedirs(d + "/util", exist_ok=True)
    for k in range(10):
        path = f"{d}/m{k}.lua" if k < 8 else f"{d}/util/u{k}.lua"
        body = ["local M = {}"]
        if k == 0:
            body += [f'local a = require "{prefix}.m1"', f'local u = require "{prefix}.util.u8"']
        for f in range(20):
            body.append(f"function M.f{f}(x, y)\n  local t = {{ x = x, y = y, n = {f} }}\n"
                        f"  if t.x then return string.format('%s-%s-%d', tostring(t.x), tostring(t.y), t.n) end\n"
                        f"  return nil\nend")
        body.append("return M")
        open(path, "w").write("\n".join(body) + "\n")
PY

# the trees in the cache and the lock, as relish install leaves them
cat >"$tmp/lock.lua" <<'LUA'
local libs = require "relish.libs"
local json = require "relish.json"
local tmp = ...
local entries, manifest = {}, { "return {" }
for i = 1, 5 do
  local name = "lib" .. i
  local sha = libs.tree_hash(tmp .. "/src/" .. name)
  assert(os.rename(tmp .. "/src/" .. name, tmp .. "/cache/relish/libs/" .. sha))
  entries[name] = { source = "file:///srv/git/" .. name .. ".git", constraint = "^1.0.0", version = "v1.0." .. i,
    commit = string.rep(tostring(i), 40), sha256 = sha, requires = json.array {}, required_by = json.array { "(root)" } }
  manifest[#manifest + 1] = string.format("  %s = { source = %q, version = \"^1.0.0\" },", name, entries[name].source)
end
manifest[#manifest + 1] = "}"
local f = assert(io.open(tmp .. "/repo/relish.deps.lua", "w"))
f:write(table.concat(manifest, "\n"), "\n")
f:close()
libs.write_lock(tmp .. "/repo/relish.lock", entries)
LUA
"$relish" lua "$tmp/lock.lua" "$tmp"

cat >"$tmp/repo/none.lua" <<'LUA'
return recipe "none" { step "s" { run = function(ctx) ctx.log("x") end } }
LUA
{
  for i in 1 2 3 4 5; do echo "local l$i = require \"lib.lib$i.m0\""; done
  echo 'return recipe "five" { step "s" { run = function(ctx) ctx.log(l1.f1(1, 2) .. l5.f2(3, 4)) end } }'
} >"$tmp/repo/five.lua"
sed 's/"lib\.\(lib[0-9]\)/"own.\1/' "$tmp/repo/five.lua" >"$tmp/repo/own.lua"

cd "$tmp/repo" # own.lua's modules are found on package.path, ./?.lua
for r in none five own; do
  "$relish" run --dry-run "$tmp/repo/$r.lua" --state "sqlite:$tmp/$r.db" >/dev/null || die "$r.lua did not run"
done

hyperfine -N --warmup 5 --min-runs 30 --export-json "$tmp/libs.json" \
  -n "no library" "$relish run --dry-run $tmp/repo/none.lua --state sqlite:$tmp/none.db" \
  -n "5 libraries" "$relish run --dry-run $tmp/repo/five.lua --state sqlite:$tmp/five.db" \
  -n "same, own modules" "$relish run --dry-run $tmp/repo/own.lua --state sqlite:$tmp/own.db"

echo
echo "Medians (ms), $(nproc) CPUs, $(date -u +%Y-%m-%d):"
python3 - "$tmp/libs.json" <<'PY'
import json, sys
rs = json.load(open(sys.argv[1]))["results"]
for r in rs:
    print("  %-18s %7.2f ms  (min %.2f, max %.2f, %d runs; CPU user+sys mean %.2f ms)" % (
        r["command"], r["median"] * 1e3, r["min"] * 1e3, r["max"] * 1e3, len(r["times"]),
        (r["user"] + r["system"]) * 1e3))
cpu = [(r["user"] + r["system"]) * 1e3 for r in rs]
print("  5 libraries - none:              %6.2f ms median, %6.2f ms CPU (target: within 5 ms)" % (
    (rs[1]["median"] - rs[0]["median"]) * 1e3, cpu[1] - cpu[0]))
print("  5 libraries - same, own modules: %6.2f ms median, %6.2f ms CPU (the lock and the hash check)" % (
    (rs[1]["median"] - rs[2]["median"]) * 1e3, cpu[1] - cpu[2]))
PY

# In one process, CPU time (os.clock, mean of 50): what the loader adds per
# run (the lock, the 5 trees' listings and hashes) and what compiling the
# 15 modules costs (paid by a recipe's own modules too).
cat >"$tmp/parts.lua" <<'LUA'
local libs = require "relish.libs"
local repo = ...
local lock = libs.lock_for(repo)
local function cpu(fn)
  local t = os.clock()
  for _ = 1, 50 do fn() end
  return (os.clock() - t) * 1e3 / 50
end
local lk = cpu(function() libs.lock_for(repo) end)
local trees = cpu(function()
  for _, e in pairs(lock.libraries) do libs.tree_listing(libs.tree_dir(e.sha256)) end
end)
local files = {}
for i = 1, 5 do
  local d = libs.tree_dir(lock.libraries["lib" .. i].sha256)
  for _, m in ipairs { "/m0.lua", "/m1.lua", "/util/u8.lua" } do files[#files + 1] = d .. m end
end
local compile = cpu(function() for _, f in ipairs(files) do assert(loadfile(f, "t", {})) end end)
print(string.format("In one process (CPU, mean of 50): the lock %.2f ms, 5 trees' hashes (50 files) %.2f ms, " ..
  "compiling the 15 modules %.2f ms", lk, trees, compile))
LUA
"$relish" lua "$tmp/parts.lua" "$tmp/repo"

# Loading the recipe file alone (dsl.load: lock, hashes, modules), CPU in a
# fresh process each time, the best of 15: steadier than wall time on a
# shared machine.
cat >"$tmp/one.lua" <<'LUA'
local dsl = require "relish.dsl"
local c = os.clock()
dsl.load((...))
io.write(string.format("%.3f\n", (os.clock() - c) * 1e3))
LUA
for r in none five own; do
  best=$(for _ in $(seq 15); do "$relish" lua "$tmp/one.lua" "$tmp/repo/$r.lua"; done | sort -n | head -1)
  printf '  dsl.load %-5s %6.2f ms CPU (best of 15)\n' "$r" "$best"
done
