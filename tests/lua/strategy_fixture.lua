-- What the relish.strategy tests share: the Kubernetes double with a
-- world of a Deployment `web` (REPLICAS pods of web:1) and Services `web`
-- and `web-preview`, and readings of it.
--   local sf = require "strategy_fixture"
--   if not sf.available() then skip("openssl or python3 is not installed") end
--   local k <close> = sf.start()
--   sf.world(k)                     -- applied, and waited for
--   sf.deployments(k)               -- {web = {replicas=, image=}, ...}
--   sf.selector(k, "web")           -- a Service's selector
--   sf.served_throughout(k)         -- no request dropped, none to a deleted pod
local k8s_fixture = require "k8s_fixture"

local M = {}

M.WORLD = [[
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: %d
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "web:1"}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: web-preview}
spec:
  selector: {app: web}
  ports: [{port: 80}]
]]

M.available = k8s_fixture.available

-- start([opts]) -> the double (time scale 0.05 unless opts say otherwise);
-- the tests skip first when not available()
function M.start(opts)
  return k8s_fixture.start(opts or { time_scale = 0.05 })
end

-- world(k [, replicas = 4]): the world applied (again), web:1 ready on every pod
function M.world(k, replicas)
  replicas = replicas or 4
  k:kubectl({ "apply", "-f", "-" }, { input = string.format(M.WORLD, replicas) })
  k8s_fixture.eventually("web:1 ready", function()
    local d = k:get("/apis/apps/v1/namespaces/default/deployments/web")
    return d.status and d.status.readyReplicas == replicas and d.status.updatedReplicas == replicas
      and (d.status.replicas or 0) == replicas
  end)
end

function M.deployments(k)
  local out = {}
  for _, d in ipairs(k:get("/apis/apps/v1/namespaces/default/deployments").items) do
    out[d.metadata.name] = { replicas = d.spec.replicas, image = d.spec.template.spec.containers[1].image }
  end
  return out
end

function M.selector(k, svc)
  return k:get("/api/v1/namespaces/default/services/" .. svc).spec.selector
end

-- requests per version, and how many were dropped, from the double's
-- counters; a request to a pod after its deletion fails the test
function M.served(k)
  local t = k:traffic()
  local by = {}
  for _, p in pairs(t.pods) do
    by[p.version] = (by[p.version] or 0) + p.requests
    if p.after_deletion ~= 0 then error("a request went to deleted pod " .. p.name, 2) end
  end
  return by, t.dropped
end

function M.served_throughout(k)
  local _, dropped = M.served(k)
  if dropped ~= 0 then error("dropped requests: " .. tostring(dropped), 2) end
end

return M
