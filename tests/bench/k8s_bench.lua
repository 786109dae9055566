-- The Kubernetes client's figures, for tests/bench/k8s.sh:
--   relish lua k8s_bench.lua apply KUBECONFIG FILE     one apply of every object in FILE
--   relish lua k8s_bench.lua rollout KUBECONFIG CONTROL N   rollout completion detection, N rollouts
--   relish lua k8s_bench.lua cpu KUBECONFIG N          CPU time of the client per GET
local k8s = require "relish.k8s"
local http = require "relish.http"
local json = require "relish.json"
local host = require "relish._host"

local mode, kubeconfig = arg[1], arg[2]
local c = k8s.connect { kubeconfig = kubeconfig }

if mode == "apply" then
  local t0, cpu0 = host.now(), os.clock()
  local out = c:apply(arg[3])
  print(string.format("apply objects=%d wall=%.3fs cpu=%.3fs", #out, host.now() - t0, os.clock() - cpu0))
elseif mode == "rollout" then
  local control, n = arg[3], tonumber(arg[4])
  local function events(since)
    local r = http.get(control .. "/events", { query = { since = since, kind = "Deployment", name = "bench" },
      insecure = true, effect = false })
    return json.decode(r.body)
  end
  local function complete(o)
    local st, sp = o.status or {}, o.spec or {}
    return (st.observedGeneration or 0) >= (o.metadata.generation or 0) and st.updatedReplicas == sp.replicas
      and st.replicas == sp.replicas and st.availableReplicas == sp.replicas
  end
  for i = 1, n do
    local d = { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = "bench" },
      spec = { replicas = 3, selector = { matchLabels = { app = "bench" } },
        template = { metadata = { labels = { app = "bench" } },
          spec = { containers = { { name = "main", image = "bench:" .. i } } } } } }
    local rv = c:apply(d).metadata.resourceVersion
    c:wait_rollout("deployments/bench", { timeout = 120 })
    local returned = host.time()
    local done_at
    for _, e in ipairs(events(rv)) do
      if e.object and complete(e.object) then done_at = done_at or e.time end
    end
    print(string.format("rollout %d latency=%.1fms", i, (returned - done_at) * 1000))
  end
elseif mode == "cpu" then
  local n = tonumber(arg[3])
  c:apply { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "cpu" }, data = { a = "1" } }
  c:get("configmaps/cpu")
  local t0, cpu0 = host.now(), os.clock()
  for _ = 1, n do c:get("configmaps/cpu") end
  local cpu, wall = os.clock() - cpu0, host.now() - t0
  print(string.format("cpu requests=%d cpu_per_request=%.3fms wall_per_request=%.3fms", n, cpu / n * 1000, wall / n * 1000))
end
