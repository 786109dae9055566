# shellcheck shell=bash
# Sourced by scripts/demo.sh and tests/bench/strategy.sh: a SIMULATED
# Kubernetes cluster (the API double of the tests, tests/fixtures/k8s_api.py:
# the real protocol, a Deployment controller, routers sending traffic to
# ready pods and the pods' metrics) and a real Prometheus scraping it every
# second, both on loopback ports chosen now.
#
#   sim_start DIR TIME_SCALE    starts both under DIR; sets
#     server, kubeconfig, metrics_port, ca   (the API double)
#     prom                                    (Prometheus' URL)
#     k8s_pid, prom_pid                       (their processes)
#   and appends their pids to the caller's `pids` array (kill them at exit).
#   sim_control PATH JSON        POST /_control/PATH (traffic, images, ...)
#   free_port                    a free TCP port on 127.0.0.1

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

sim_start() {
  local dir=$1 scale=$2 repo
  repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  python3 "$repo/tests/fixtures/k8s_api.py" --dir "$dir/k8s" --time-scale "$scale" --parent $$ >"$dir/k8s.log" 2>&1 &
  k8s_pid=$!
  pids+=("$k8s_pid")
  for _ in $(seq 300); do [ -s "$dir/k8s/k8s.json" ] && break; sleep 0.1; done
  if [ ! -s "$dir/k8s/k8s.json" ]; then
    echo "the API double did not start:" >&2
    cat "$dir/k8s.log" >&2
    return 1
  fi
  _sim_field() { python3 -c "import json; print(json.load(open('$dir/k8s/k8s.json'))['$1'])"; }
  # shellcheck disable=SC2034 # set for the caller
  server=$(_sim_field server) kubeconfig=$(_sim_field kubeconfig) metrics_port=$(_sim_field metrics_port)
  ca=$(_sim_field ca)
  local prom_port
  prom_port=$(free_port)
  cat >"$dir/prometheus.yml" <<YML
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: cluster
    static_configs: [{targets: ["127.0.0.1:$metrics_port"]}]
YML
  prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/prom" \
    --web.listen-address="127.0.0.1:$prom_port" >"$dir/prometheus.log" 2>&1 &
  prom_pid=$!
  pids+=("$prom_pid")
  prom="http://127.0.0.1:$prom_port"
  for _ in $(seq 300); do curl -fs "$prom/-/ready" >/dev/null 2>&1 && return 0; sleep 0.1; done
  echo "Prometheus did not start:" >&2
  cat "$dir/prometheus.log" >&2
  return 1
}

sim_control() {
  curl -fsS --cacert "$ca" -X POST -H 'Content-Type: application/json' "$server/_control/$1" -d "$2" >/dev/null
}
