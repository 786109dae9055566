#!/usr/bin/env bash
# The changelog over a generated repository of 20,000 commits: relish's
# relish.changelog (repo:log from libgit2, Conventional Commit parsing of
# every message, the next version) against `git log --format=...` printing
# the same fields over the same range (v1.0.0..main, 19,999 commits).
# hyperfine, no shell (-N), 3 warm-ups, at least 10 runs; both sides pay their
# process start-up. A third row leaves without freeing the Lua state (the
# share of the exit), and an in-process breakdown (log, parse, notes) follows.
# Usage: tests/bench/changelog.sh [RELISH]   (default: build/relish in the repo)
# COMMITS=N changes the size. A measurement, not a test: it asserts nothing
# about the figures (it does check that both sides see the same commits).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
relish="$(realpath "${1:-$repo_root/build/relish}")"
commits="${COMMITS:-20000}"

die() { echo "changelog.sh: $*" >&2; exit 2; }
[ -x "$relish" ] || die "no relish binary at $relish (build it, or pass its path)"
for tool in git python3 hyperfine; do command -v "$tool" >/dev/null || die "$tool not found (scripts/setup.sh --bench)"; done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
export HOME="$tmp/home" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null LC_ALL=C TZ=UTC
repo="$tmp/repo"

# A deterministic history: Conventional Commits of every kind (scopes, "!",
# bodies, BREAKING CHANGE footers, trailers), some plain messages, a dozen
# authors, one file changed per commit; v1.0.0 tags the first commit.
python3 - "$commits" >"$tmp/stream" <<'PY'
import random, sys
n = int(sys.argv[1])
rnd = random.Random(42)
out = sys.stdout.buffer
types = ["feat"] * 5 + ["fix"] * 6 + ["chore"] * 3 + ["docs", "refactor", "perf", "test", "ci", "build", "style"]
scopes = [None, None, "api", "cli", "db", "ui", "auth", "deps", "core"]
words = ("add handle drop rename cache retry parse render split merge guard log trace index "
         "orders users tokens invoices sessions limits pages queries config flags").split()
authors = [("Ada Lovelace", "ada@example.test"), ("Grace Hopper", "grace@example.test"),
           ("Linus Ünsal", "linus@example.test"), ("Margaret Hamilton", "mh@example.test"),
           ("Ken Thompson", "ken@example.test"), ("Barbara Liskov", "bl@example.test"),
           ("Dennis Ritchie", "dmr@example.test"), ("Frances Allen", "fa@example.test"),
           ("Edsger Dijkstra", "ewd@example.test"), ("Radia Perlman", "rp@example.test"),
           ("John Backus", "jb@example.test"), ("Hedy Lamarr", "hl@example.test")]
def data(b):
    out.write(b"data %d\n" % len(b) + b + b"\n")
t = 1700000000
for i in range(1, n + 1):
    t += rnd.randint(30, 4000)
    name, email = authors[rnd.randrange(len(authors))]
    r = rnd.random()
    desc = " ".join(rnd.choice(words) for _ in range(rnd.randint(2, 7)))
    if r < 0.08:
        msg = desc.capitalize()
    else:
        ty, sc = rnd.choice(types), rnd.choice(scopes)
        bang = "!" if rnd.random() < 0.01 else ""
        msg = f"{ty}{'(' + sc + ')' if sc else ''}{bang}: {desc}"
    if rnd.random() < 0.5:
        msg += "\n\n" + " ".join(rnd.choice(words) for _ in range(rnd.randint(8, 40)))
        if rnd.random() < 0.3:
            msg += "\n" + " ".join(rnd.choice(words) for _ in range(rnd.randint(8, 30)))
    footers = []
    if rnd.random() < 0.005:
        footers.append("BREAKING CHANGE: " + " ".join(rnd.choice(words) for _ in range(6)))
    if rnd.random() < 0.2:
        footers.append(f"Refs: #{rnd.randint(1, 9999)}")
    if rnd.random() < 0.3:
        footers.append(f"Signed-off-by: {name} <{email}>")
    if footers:
        msg += "\n\n" + "\n".join(footers)
    msg += "\n"
    ident = f"{name} <{email}> {t} +0000".encode()
    out.write(b"commit refs/heads/main\nmark :%d\nauthor " % i + ident + b"\ncommitter " + ident + b"\n")
    data(msg.encode())
    if i > 1:
        out.write(b"from :%d\n" % (i - 1))
    out.write(b"M 100644 inline src/f%d.txt\n" % (i % 97))
    data(b"change %d\n" % i)
    if i == 1:
        out.write(b"tag v1.0.0\nfrom :1\ntagger Ada Lovelace <ada@example.test> %d +0000\n" % t)
        data(b"release 1.0.0\n")
out.write(b"done\n")
PY
git init -q -b main "$repo"
git -C "$repo" fast-import --quiet --done <"$tmp/stream"
git -C "$repo" reset -q --hard main
git -C "$repo" gc -q --aggressive 2>/dev/null || git -C "$repo" gc -q
range_count=$(git -C "$repo" rev-list --count v1.0.0..main)
echo "repository: $commits commits, v1.0.0..main has $range_count, packed ($(du -sh "$repo/.git" | cut -f1))"
echo "relish:     $("$relish" version | head -n1)"
echo "git:        $(git --version)"

format='%H%x00%h%x00%an%x00%ae%x00%at%x00%P%x00%B%x00'
cat >"$tmp/changelog.lua" <<'LUA'
-- relish side: log v1.0.0..main, parse every message, the next version;
-- with "breakdown", time each part in-process (a first, cold round, then
-- the medians of 5 more).
local git = require "relish.git"
local changelog = require "relish.changelog"
local host = require "relish._host"
local path, mode = ...
local repo = assert(git.open(path))
if mode ~= "breakdown" then
  local commits = assert(changelog.commits(repo, { from = "v1.0.0", to = "main" }))
  local next = changelog.next_version("1.0.0", commits)
  if mode == "check" then print(#commits, tostring(next)) end
  -- "exit": leave without closing the Lua state (no freeing of the 20,000
  -- records at exit, as git does not free its own), to show that share
  if mode == "exit" then os.exit(0) end
  return
end
local function median(t) table.sort(t) return t[(#t + 1) // 2] end
local tl, tp, tn = {}, {}, {}
for round = 1, 6 do
  collectgarbage()
  local t0 = host.now()
  local log = assert(repo:log { from = "v1.0.0", to = "main" })
  local t1 = host.now()
  for _, c in ipairs(log) do changelog.parse(c.message, c) end
  changelog.next_version("1.0.0", log)
  local t2 = host.now()
  local md = changelog.notes(log, { version = "v2.0.0", date = false })
  local t3 = host.now()
  assert(#md > 0)
  if round == 1 then
    print(string.format("  in-process, first round (cold): repo:log %.1f ms, parse + next version %.1f ms, notes %.1f ms",
      (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000))
  else
    tl[#tl + 1], tp[#tp + 1], tn[#tn + 1] = (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000
  end
end
print(string.format("  in-process, medians of 5 more rounds: repo:log %.1f ms, parse + next version %.1f ms, notes %.1f ms",
  median(tl), median(tp), median(tn)))
LUA

# both sides must see the same commits
git_n=$(git -C "$repo" log --format='%H' v1.0.0..main | wc -l)
read -r relish_n next <<<"$("$relish" lua "$tmp/changelog.lua" "$repo" check)"
echo "commits seen: git log $git_n, relish $relish_n; next version after 1.0.0: $next"
[ "$git_n" = "$relish_n" ] || die "git and relish disagree on the range"

echo
hyperfine -N --warmup 3 --min-runs 10 \
  -n "git log --format" "git -C $repo log --format=$format v1.0.0..main" \
  -n "relish changelog" "$relish lua $tmp/changelog.lua $repo" \
  -n "relish, no teardown" "$relish lua $tmp/changelog.lua $repo exit" \
  --export-json "$tmp/h.json" >/dev/null
python3 - "$tmp/h.json" <<'PY'
import json, sys
res = {r["command"]: r for r in json.load(open(sys.argv[1]))["results"]}
g = res["git log --format"]
for name, x in res.items():
    print(f"  {name:20} median {x['median']*1000:7.1f} ms  (mean {x['mean']*1000:.1f}, min {x['min']*1000:.1f}, max {x['max']*1000:.1f}, {len(x['times'])} runs)")
print(f"  ratio relish / git: {res['relish changelog']['median'] / g['median']:.2f} (target: at most 1.50); "
      f"without the teardown {res['relish, no teardown']['median'] / g['median']:.2f}")
PY
"$relish" lua "$tmp/changelog.lua" "$repo" breakdown
