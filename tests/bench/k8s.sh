#!/usr/bin/env bash
# relish.k8s against kubectl, both talking to the Kubernetes API double
# (tests/fixtures/k8s_api.py): 200 objects (Deployments, Services, ConfigMaps)
# applied from one multi-document file, `relish lua` (the client alone) and a
# recipe run (journaled, one action per object) against `kubectl apply
# --server-side -f` with a warm discovery cache, RUNS times each (default 5);
# then how long wait_rollout takes to return after the double marks a
# rollout complete (ROLLOUTS, default 20), and the client's CPU time per GET.
# Usage: tests/bench/k8s.sh [RELISH]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
relish=$(realpath "${1:-build/relish}")
runs=${RUNS:-5}
rollouts=${ROLLOUTS:-20}

dir=$(mktemp -d)
pid=
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
python3 "$here/../fixtures/k8s_api.py" --dir "$dir" --parent $$ >"$dir/server.log" 2>&1 &
pid=$!
for _ in $(seq 300); do [ -e "$dir/k8s.json" ] && break; sleep 0.05; done
server=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["server"])' "$dir/k8s.json")
kc="$dir/kubeconfig"
export HOME="$dir/home" KUBECACHEDIR="$dir/cache" RELISH_STATE="sqlite:$dir/journal.db"
mkdir -p "$HOME"

python3 - "$dir/objects.yaml" <<'PY'
import sys
docs = []
for i in range(67):
    docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: app-{i}, labels: {{app: app-{i}}}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: app-{i}}}}}
  template:
    metadata: {{labels: {{app: app-{i}}}}}
    spec:
      containers:
      - name: main
        image: registry.example.com/app-{i}:1.0.0
        ports: [{{containerPort: 8080}}]
        env: [{{name: MODE, value: production}}]""")
    docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: app-{i}}}
spec:
  selector: {{app: app-{i}}}
  ports: [{{port: 80, targetPort: 8080}}]""")
for i in range(66):
    docs.append(f"""apiVersion: v1
kind: ConfigMap
metadata: {{name: config-{i}}}
data: {{LOG_LEVEL: info, FEATURE_X: "on", INDEX: "{i}"}}""")
open(sys.argv[1], "w").write("\n---\n".join(docs) + "\n")
PY
cat >"$dir/apply.lua" <<'LUA'
local k8s = require "relish.k8s"
return recipe "bench-apply" {
  params = { kubeconfig = param.string { required = true }, file = param.string { required = true } },
  step "apply" { run = function(ctx) k8s.connect { kubeconfig = ctx.params.kubeconfig }:apply(ctx.params.file) end },
}
LUA

# the first apply creates; kubectl's first run also fills its cache
kubectl --kubeconfig "$kc" apply --server-side -f "$dir/objects.yaml" >/dev/null
"$relish" lua "$here/k8s_bench.lua" apply "$kc" "$dir/objects.yaml" >/dev/null

results="$dir/results"
: >"$results"
timeit() { # label command...: wall seconds into results
  local t0 t1
  t0=$(date +%s%N)
  "${@:2}" >/dev/null
  t1=$(date +%s%N)
  printf '%s %d.%09d\n' "$1" $(((t1 - t0) / 1000000000)) $(((t1 - t0) % 1000000000)) | tee -a "$results"
}
echo "== apply 200 objects ($runs runs each)"
for _ in $(seq "$runs"); do
  timeit kubectl kubectl --kubeconfig "$kc" apply --server-side -f "$dir/objects.yaml"
  timeit relish-lua "$relish" lua "$here/k8s_bench.lua" apply "$kc" "$dir/objects.yaml"
  timeit relish-run "$relish" run "$dir/apply.lua" -p "kubeconfig=$kc" -p "file=$dir/objects.yaml"
done
echo "== rollout completion detection ($rollouts rollouts)"
"$relish" lua "$here/k8s_bench.lua" rollout "$kc" "$server/_control" "$rollouts" | tee -a "$results"
echo "== client CPU per request (1000 GETs)"
"$relish" lua "$here/k8s_bench.lua" cpu "$kc" 1000 | tee -a "$results"

echo
echo "== medians"
python3 - "$results" <<'PY'
import re, statistics, sys
walls, lat, cpu = {}, [], None
for line in open(sys.argv[1]):
    f = line.split()
    if f[0] in ("kubectl", "relish-lua", "relish-run"):
        walls.setdefault(f[0], []).append(float(f[1]))
    elif f[0] == "rollout":
        lat.append(float(re.search(r"latency=([\d.-]+)", line).group(1)))
    elif f[0] == "cpu":
        cpu = line.strip()
k = statistics.median(walls["kubectl"])
for name, ws in walls.items():
    m = statistics.median(ws)
    print("apply 200: %-10s %.3f s  (kubectl / this: %.2f×, %d runs)" % (name, m, k / m, len(ws)))
print("rollout completion -> wait_rollout returned: median %.1f ms, max %.1f ms (%d rollouts)"
      % (statistics.median(lat), max(lat), len(lat)))
print(cpu)
PY
