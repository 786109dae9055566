#!/usr/bin/env bash
# A canary release, end to end, against a SIMULATED Kubernetes cluster: the
# API double of the tests (tests/fixtures/k8s_api.py: the real protocol,
# a Deployment controller, routers sending traffic to ready pods and the
# pods' metrics) and a real Prometheus scraping it, both on loopback ports
# chosen now, both stopped at the end. Then, with relish:
#   1. recipes/rolling-release.lua puts web:1.0 in place (3 pods, a Service),
#   2. recipes/canary-release.lua releases web:1.1, a good version: promoted,
#   3. recipes/canary-release.lua releases web:1.2, which answers 20% errors:
#      the analysis fails, the canary is aborted, web:1.1 keeps serving.
# The runs go to a journal of their own (relish show/history/dora --state
# it, printed at the end). Needs what scripts/setup.sh installs; builds relish
# when build/relish is missing. Usage: scripts/demo.sh [RELISH]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
relish=${1:-$repo/build/relish}
if [ ! -x "$relish" ]; then scripts/build.sh build >/dev/null; fi
for tool in python3 prometheus openssl curl; do
  command -v "$tool" >/dev/null || { echo "demo: $tool is missing: run scripts/setup.sh" >&2; exit 2; }
done

work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
# shellcheck source=scripts/sim-cluster.sh
. "$repo/scripts/sim-cluster.sh"

say "starting a simulated Kubernetes API (tests/fixtures/k8s_api.py) and Prometheus on loopback"
# simulated time runs 10x faster than real time (pods start, deadlines pass)
sim_start "$work" 0.1
control() { sim_control "$@"; }
echo "API server $server, Prometheus $prom"

# web:1.2 answers 20% of its requests with a 500
control images '{"web:1.2": {"error_ratio": 0.2}}'

state="sqlite:$work/journal.db"
run() { "$relish" run "$@" -p "kubeconfig=$kubeconfig" --state "$state"; }

say "1. rolling-release.lua: web:1.0"
run recipes/rolling-release.lua -p image=web:1.0
# users, from now on: 50 requests a second through the Service
control traffic '{"targets": [{"kind": "Service", "namespace": "default", "name": "web", "rps": 50}]}'

canary=(-p "prometheus=$prom" -p "weights=25,50" -p pause=6s -p interval=2s -p window=10s)
say "2. canary-release.lua: web:1.1 (a good version)"
run recipes/canary-release.lua -p image=web:1.1 "${canary[@]}"

say "3. canary-release.lua: web:1.2 (answers 20% errors: expect an abort and exit 1)"
set +e
run recipes/canary-release.lua -p image=web:1.2 "${canary[@]}"
code=$?
set -e
echo "canary-release.lua exited $code"

say "what the users got"
curl -fsS --cacert "$ca" "$server/_control/traffic" | python3 -c '
import json, sys
t = json.load(sys.stdin)
by = {}
for p in t["pods"].values() if isinstance(t["pods"], dict) else t["pods"]:
    by[p["version"]] = by.get(p["version"], 0) + p["requests"]
    assert p["after_deletion"] == 0, "a request reached a deleted pod"
for v in sorted(by): print("  version %-5s %9.0f requests" % (v, by[v]))
print("  dropped       %9.0f (no request failed for want of a ready pod)" % t["dropped"])'

say "the journal"
"$relish" history --state "$state"
echo
"$relish" dora --since 1d --state "$state"
[ "$code" -eq 1 ] || { echo "demo: the bad canary should have been aborted (exit 1), got $code" >&2; exit 1; }
echo
echo "demo done: web:1.1 promoted, web:1.2 aborted and rolled back, against a simulated cluster"
