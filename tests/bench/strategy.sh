#!/usr/bin/env bash
# Progressive delivery (issue 12), against the Kubernetes API double with
# traffic (tests/fixtures/k8s_api.py, time scale 0.1) and a real Prometheus
# scraping it every second, as scripts/demo.sh starts them:
#  1. abort latency: recipes/canary-release.lua (replica router, window 10s)
#     of a bad image (20% errors), for each analysis interval in INTERVALS
#     (default "2s 5s"), RUNS times each (default 5): the time from the run's
#     first failing measurement (`request-success-rate ... ✗`, its --output
#     json event) to the first instant after which the canary version gets
#     no more requests (GET /_control/traffic every 50 ms). Then (FLIP=1,
#     the default) the same with an image that starts good and turns bad at
#     a chosen instant mid-pause: the time from the turn to traffic back on
#     stable, which adds the detection (up to one interval).
#  2. relish's CPU time (user + system, /usr/bin/time) over a good canary
#     whose pauses sum to CPU_PAUSE (default 60 s) of real time, interval
#     5 s, against the same canary without analysis and with 1 s pauses.
# Prints each run, then the "medians" block. Asserts nothing about figures.
# Usage: tests/bench/strategy.sh [RELISH]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
relish=$(realpath "${1:-build/relish}")
runs=${RUNS:-5}
intervals=${INTERVALS:-"2s 5s"}
flip=${FLIP:-1}
cpu_pause=${CPU_PAUSE:-60} # seconds of pauses in the CPU run, over 4 weights
helper="$here/strategy_bench.py"

dir=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
# shellcheck source=scripts/sim-cluster.sh
. "$repo/scripts/sim-cluster.sh"
sim_start "$dir" 0.1
control() { sim_control "$@"; }

state="sqlite:$dir/journal.db"
cd "$repo"
"$relish" run recipes/rolling-release.lua -p image=web:1.0 -p "kubeconfig=$kubeconfig" --state "$state" >/dev/null
control traffic '{"targets": [{"kind": "Service", "namespace": "default", "name": "web", "rps": 50}]}'
# every image named web:bad-* answers 20% errors; web:flip-* is good until told
control images '{"web:bad-*": {"error_ratio": 0.2}}'
sleep 3

results="$dir/results"
: >"$results"
canary() { # IMAGE INTERVAL PAUSE [more -p]: one canary run, its JSON events on stdout
  local image=$1 interval=$2 pause=$3
  shift 3
  "$relish" run recipes/canary-release.lua -p "image=$image" -p "kubeconfig=$kubeconfig" --state "$state" \
    -p weights=25,50 -p "pause=$pause" -p "interval=$interval" -p window=10s "$@" --output json
}
abort_run() { # MODE INTERVAL N
  local mode=$1 interval=$2 n=$3 version t_flip=
  version="$mode-${interval}-$n"
  rm -f "$dir/stop"
  python3 "$helper" poll "$server" "$ca" "$version" "$dir/trace" "$dir/stop" &
  local poller=$!
  if [ "$mode" = bad ]; then
    canary "web:$version" "$interval" 60s -p "prometheus=$prom" >"$dir/events" || true
  else
    canary "web:$version" "$interval" 60s -p "prometheus=$prom" >"$dir/events" &
    local run=$!
    # turn bad at a different point of the interval each run, after the
    # first (good) measurement at 10 s
    sleep "$(python3 -c "print(12 + ($n - 1) * 0.77)")"
    control images "{\"web:$version\": {\"error_ratio\": 0.2}}"
    t_flip=$(date +%s.%N)
    wait "$run" || true
  fi
  touch "$dir/stop"
  wait "$poller"
  python3 "$helper" abort "$dir/events" "$dir/trace" "$server" "$ca" "$version" "$mode-$interval" ${t_flip:+"$t_flip"} |
    tee -a "$results"
}

echo "== abort latency ($runs runs per interval; load: $(cut -d' ' -f1-3 /proc/loadavg))"
for interval in $intervals; do
  for n in $(seq "$runs"); do abort_run bad "$interval" "$n"; done
done
if [ "$flip" = 1 ]; then
  echo "== from the version turning bad mid-pause to traffic back on stable"
  for interval in $intervals; do
    for n in $(seq "$runs"); do abort_run flip "$interval" "$n"; done
  done
fi

echo "== relish's CPU over a good canary: 4 weights, pauses summing ${cpu_pause}s, interval 5s"
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# the API requests the double served (relish's only, in these runs)
api_requests() { curl -fsS --cacert "$ca" "$server/_control/stats" | python3 -c 'import json, sys; print(json.load(sys.stdin)["total"])'; }
cpu_run() { # LABEL IMAGE PAUSE [more -p]
  local label=$1 image=$2 pause=$3 k0 p0 a0 wall user sys code measurements
  shift 3
  k0=$(ticks "$k8s_pid") p0=$(ticks "$prom_pid") a0=$(api_requests)
  read -r wall user sys code < <(python3 "$helper" time "$dir/events" "$relish" run recipes/canary-release.lua \
    -p "image=$image" -p "kubeconfig=$kubeconfig" --state "$state" -p weights=20,40,60,80 -p "pause=$pause" \
    -p interval=5s -p window=10s "$@" --output json)
  measurements=$(grep -c '"message":"request-[a-z0-9-]*  ' "$dir/events" || true)
  python3 -c '
import sys
label, wall, user, sys_, code, m, dk, dp, hz, load, api = sys.argv[1:]
wall, cpu = float(wall), float(user) + float(sys_)
print("cpu %s wall=%.1f user=%.3f sys=%.3f cpu=%.3f share=%.3f%% measurements=%s exit=%s double_cpu=%.1f "
      "prometheus_cpu=%.1f load=%s api_requests=%s" % (label, wall, float(user), float(sys_), cpu, 100 * cpu / wall,
                                                       m, code, int(dk) / int(hz), int(dp) / int(hz), load, api))' \
    "$label" "$wall" "$user" "$sys" "$code" "$measurements" $(($(ticks "$k8s_pid") - k0)) \
    $(($(ticks "$prom_pid") - p0)) "$(getconf CLK_TCK)" "$(cut -d' ' -f1 /proc/loadavg)" $(($(api_requests) - a0)) |
    tee -a "$results"
}
pause=$((cpu_pause / 4))s
v=0
for variant in ${CPU_VARIANTS:-analysis no-analysis short}; do
  v=$((v + 1))
  case $variant in
  analysis) cpu_run analysis "web:2.$v" "$pause" -p "prometheus=$prom" ;;
  no-analysis) cpu_run no-analysis "web:2.$v" "$pause" ;;
  short) cpu_run short "web:2.$v" 1s -p "prometheus=$prom" ;;
  esac
done
for _ in 1 2 3 4 5; do
  read -r wall user sys code < <(python3 "$helper" time /dev/null "$relish" version)
  echo "cpu start-up user=$user sys=$sys (relish version)" | tee -a "$results"
done

echo
echo "== medians"
python3 "$helper" summary "$results"
python3 - "$results" <<'PY'
import re, sys
cpu = {}
for line in open(sys.argv[1]):
    if line.startswith("cpu ") and "wall=" in line:
        f = line.split()
        cpu[f[1]] = dict((k, float(v.rstrip("%"))) for k, v in re.findall(r"(\w+)=([\d.]+%?)", line))
a, b, s = cpu.get("analysis"), cpu.get("no-analysis"), cpu.get("short")
ups = [float(u) + float(s_) for u, s_ in re.findall(r"cpu start-up user=([\d.]+) sys=([\d.]+)", open(sys.argv[1]).read())]
if ups:
    print("start-up (relish version): %.1f ms CPU (median of %d)" % (1000 * sorted(ups)[len(ups) // 2], len(ups)))
if a:
    print("canary with analysis: %.1f s wall, %.3f s CPU: %.3f%% of one core; %d measurements"
          % (a["wall"], a["cpu"], a["share"], a["measurements"]))
if a and b and s:
    fixed = s["cpu"] - s["measurements"] * (a["cpu"] - b["cpu"]) / max(a["measurements"], 1)
    per_s = (a["cpu"] - fixed) / (a["wall"] - s["wall"] + 1e-9) if a["wall"] > s["wall"] else 0
    print("  without analysis: %.3f s CPU over %.1f s; so the %d measurements cost %.1f ms each"
          % (b["cpu"], b["wall"], a["measurements"], 1000 * (a["cpu"] - b["cpu"]) / max(a["measurements"], 1)))
    print("  1 s pauses: %.3f s CPU over %.1f s: fixed cost (start-up, API calls, journal) about %.3f s"
          % (s["cpu"], s["wall"], fixed))
    print("  extrapolated to 10 minutes of pauses: %.3f s CPU, %.3f%% of one core"
          % (fixed + per_s * 600, 100 * (fixed + per_s * 600) / (600 + s["wall"])))
PY
