#!/usr/bin/env bash
# One analysis round of 100 metric queries against a real Prometheus (which
# scrapes itself every second): one after another, then all at once
# (task.parallel), RUNS times (default 5). The target: the parallel round
# within 2x of the slowest single query. Usage: tests/bench/metrics.sh [RELISH]
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
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$dir/prometheus.yml" <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: self
    static_configs: [{targets: ["127.0.0.1:$port"]}]
YML
prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
  --web.listen-address="127.0.0.1:$port" >"$dir/prometheus.log" 2>&1 &
pid=$!
for _ in $(seq 300); do curl -fs "http://127.0.0.1:$port/-/ready" >/dev/null 2>&1 && break; sleep 0.1; done
sleep 3 # a few scrapes, so that rate() has samples

results="$dir/results"
cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; } # Prometheus' CPU, in ticks
c0=$(cpu)
for _ in $(seq "$runs"); do
  "$relish" lua "$here/metrics_bench.lua" "http://127.0.0.1:$port" 100 | tee -a "$results"
done
c1=$(cpu)
echo "Prometheus CPU over the $runs runs: $(( (c1 - c0) * 1000 / $(getconf CLK_TCK) )) ms"
echo
echo "== medians"
python3 - "$results" <<'PY'
import re, statistics, sys
rows = [dict((k, float(v)) for k, v in re.findall(r"(\w+)=([\d.]+)", line)) for line in open(sys.argv[1])]
med = lambda k: statistics.median(r[k] for r in rows)
print("100 queries: sequential %.1f ms, parallel %.1f ms, slowest single %.1f ms, parallel / slowest %.2f, "
      "client CPU in the parallel round %.1f ms (%d runs)"
      % (med("sequential"), med("parallel"), med("slowest_single"), med("ratio"), med("client_cpu"), len(rows)))
PY
