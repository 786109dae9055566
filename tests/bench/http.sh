#!/usr/bin/env bash
# HTTP waits at once: 500 GETs to the fixture server's /delay route (50 ms)
# with http.many at limit 50, against the same 500 one after another; then
# 500 at 5 ms with limit 100, where the per-request overhead shows. Each
# parallel case runs RUNS times (default 5), the sequential one once (25 s);
# the medians come last. Usage: tests/bench/http.sh [RELISH]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
relish=$(realpath "${1:-build/relish}")
runs=${RUNS:-5}

dir=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
python3 "$here/../fixtures/http_server.py" --dir "$dir" --parent $$ >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 200); do [ -e "$dir/ports.json" ] && break; sleep 0.05; done
port=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$dir/ports.json")
base="http://127.0.0.1:$port"

results="$dir/results"
: >"$results"
one() { "$relish" lua "$here/http_many.lua" "$base" "$@" | tee -a "$results"; }

echo "== parallel: 500 GETs, 50 ms each, limit 50 ($runs runs)"
for _ in $(seq "$runs"); do one parallel 500 50 50; done
echo "== sequential: the same 500 one after another (1 run)"
one sequential 500 1 50
echo "== parallel: 500 GETs, 5 ms each, limit 100 ($runs runs)"
for _ in $(seq "$runs"); do one parallel 500 100 5; done

echo
echo "== medians (wall s, ratio to ideal, cpu ms per request)"
python3 - "$results" <<'EOF'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    f = dict(re.findall(r"(\w+)=([\d.]+)", line))
    key = "%s limit=%s delay=%sms" % (line.split()[0], f["limit"], f["delay"])
    rows.setdefault(key, []).append(f)
for key, fs in rows.items():
    med = lambda k: statistics.median(float(f[k].rstrip("s")) for f in fs)
    print("%-36s wall %.3f s  ratio %.2f  cpu/request %.3f ms  (%d runs)"
          % (key, med("wall"), med("ratio"), med("cpu_per_request"), len(fs)))
EOF
