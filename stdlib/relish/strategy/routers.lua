-- Traffic routers for relish.strategy.canary. Each router has
--   setup(S)          makes the canary's objects (weight 0)
--   set_weight(S, w)  moves w % of the traffic to the canary; returns what
--                     it did, for the run's log
--   promote(S)        makes the canary's template the stable one and
--                     removes the canary's objects
-- S is the strategy's state (client c, namespace ns, stable Deployment
-- name and object, replicas R, new template, canary name). Every change is
-- a k8s effect, so an abort (the run's rollback) undoes them newest first.
local errors = require "relish._errors"
local json = require "relish.json"

local M = {}
local usage = errors.usage_for(debug.getinfo(1, "S").source)

local CANARY_LABEL = "relish.dev/canary"
local RUN_ANNOTATION = "relish.dev/run"
M.CANARY_LABEL = CANARY_LABEL

local common = require "relish.strategy.common"
local copy, say, settle = common.copy, common.say, common.settle

-- An object this run made before (a resumed run's setup runs again), or nil.
local function ours(S, ref)
  local obj = S.c:live(S.c:ref(ref, S.fname, S.ns))
  if not obj then return nil end
  local a = obj.metadata.annotations or {}
  if a[RUN_ANNOTATION] == S.ctx.run_id then return obj end
  error(errors.value("conflict", "%s: %s in %s exists and was not made by this run: remove it or choose another name",
    S.fname, ref, S.ns), 0)
end

-- creates obj, marked as this run's; when a resumed run made it already,
-- leaves it (returns the live one)
local function create(S, obj)
  obj.metadata.annotations = obj.metadata.annotations or {}
  obj.metadata.annotations[RUN_ANNOTATION] = S.ctx.run_id
  local ref = obj.kind:lower() .. "s/" .. obj.metadata.name
  if obj.kind == "Ingress" then ref = "ingresses.networking.k8s.io/" .. obj.metadata.name end
  local have = ours(S, ref)
  if have then return have end
  return S.c:create(obj, { namespace = S.ns })
end
M.create, M.ours = create, ours

-- whether a Service selector selects pods with these labels
function M.selects(selector, labels)
  for k, v in pairs(selector or {}) do
    if (labels or {})[k] ~= v then return false end
  end
  return true
end

-- a Service must select the new pods (else the switch or the canary serves
-- nobody): checked before anything changes
function M.check_selects(S, service, sel, extra)
  local labels = {}
  for k, v in pairs(S.template.metadata.labels or {}) do labels[k] = v end
  for k, v in pairs(extra or {}) do labels[k] = v end
  local want = {}
  for k, v in pairs(sel or {}) do if k ~= "pod-template-hash" and k ~= "relish.dev/preview" then want[k] = v end end
  if not M.selects(want, labels) then
    local parts = {}
    for k, v in pairs(want) do parts[#parts + 1] = k .. "=" .. v end
    table.sort(parts)
    error(errors.value("invalid", "%s: service %s selects %s, which the new pods' labels do not match: it would serve " ..
      "nobody (give the labels with labels=)", S.fname, service, table.concat(parts, ",")), 0)
  end
end
-- A Deployment beside the stable one running the new template: its
-- selector and pods carry key=value besides the stable's labels, so a
-- Service selecting the stable's labels selects its pods too.
function M.twin(S, name, key, value, replicas)
  local st = S.stable
  local sel = copy(st.spec.selector)
  sel.matchLabels = sel.matchLabels or {}
  sel.matchLabels[key] = value
  local t = copy(S.template)
  t.metadata = t.metadata or {}
  t.metadata.labels = t.metadata.labels or {}
  t.metadata.labels[key] = value
  local labels = copy(st.metadata.labels or {})
  labels[key] = value
  return { apiVersion = "apps/v1", kind = "Deployment",
    metadata = { name = name, labels = labels, annotations = { ["relish.dev/twin-of"] = S.name,
      -- what a resumed run needs: the stable Deployment's size from before
      ["relish.dev/stable-replicas"] = tostring(S.R), [RUN_ANNOTATION] = S.ctx.run_id } },
    spec = { replicas = replicas, selector = sel, template = t, strategy = copy(st.spec.strategy),
      minReadySeconds = st.spec.minReadySeconds, progressDeadlineSeconds = st.spec.progressDeadlineSeconds,
      revisionHistoryLimit = st.spec.revisionHistoryLimit } }
end

local function make_canary(S, replicas)
  create(S, M.twin(S, S.canary, CANARY_LABEL, S.name, replicas))
end

local function replicas_of(S, name)
  return S.c:get("deployments/" .. name, { namespace = S.ns }).spec.replicas or 0
end

local function scale(S, name, n)
  if replicas_of(S, name) ~= n then S.c:scale("deployments/" .. name, n, { namespace = S.ns }) end
end

local function ready(S, name)
  local d = S.c:get("deployments/" .. name, { namespace = S.ns })
  return d.status and d.status.readyReplicas or 0
end

-- Argo Rollouts' arithmetic: both counts rounded up, so neither side drops
-- to 0 pods while its weight is above 0 (the total may be one over)
function M.split(R, w)
  local canary = math.ceil(R * w / 100 - 1e-9)
  local stable = math.ceil(R * (100 - w) / 100 - 1e-9)
  return math.tointeger(canary) or canary, math.tointeger(stable) or stable
end

-- the new template becomes the stable Deployment's, at its full size
local function promote_stable(S)
  S.c:update_with_retry("deployments/" .. S.name, function(d)
    d.spec.template = copy(S.template)
    d.spec.replicas = S.R
  end, { namespace = S.ns })
  settle(S, S.name)
end

-- ---- replica ratio: the canary Deployment beside the stable one, behind the
-- same Service; the weight is the share of pods

local Replicas = {}
Replicas.__index = Replicas

function M.replicas()
  return setmetatable({ name = "replica ratio" }, Replicas)
end

function Replicas:setup(S) make_canary(S, 0) end

function Replicas:set_weight(S, w)
  local cn, sn = M.split(S.R, w)
  local cur = replicas_of(S, S.canary)
  -- capacity first: the side that grows before the side that shrinks
  if cn >= cur then
    scale(S, S.canary, cn)
    settle(S, S.canary)
    scale(S, S.name, sn)
    settle(S, S.name)
  else
    scale(S, S.name, sn)
    settle(S, S.name)
    scale(S, S.canary, cn)
    settle(S, S.canary)
  end
  if S.dry then return string.format("canary %d, stable %d pods", cn, sn) end
  local rc, rs = ready(S, S.canary), ready(S, S.name)
  return string.format("canary %d, stable %d ready pods: %.0f%% of them", rc, rs,
    rc + rs > 0 and 100 * rc / (rc + rs) or 0)
end

function Replicas:promote(S)
  promote_stable(S)
  S.c:delete("deployments/" .. S.canary, { namespace = S.ns, timeout = S.timeout })
end

-- ---- routers with a canary Service: ingress-nginx and the Gateway API.
-- The stable Deployment stays at full size (as Argo does with a traffic
-- router); the stable Service is pinned to the stable pods (their
-- pod-template-hash) so the canary's pods, which carry the same app
-- labels, get only what the router sends them.

-- the pod-template-hash of the stable Deployment's current ReplicaSet
function M.stable_hash(S)
  local st = S.stable
  local rev = (st.metadata.annotations or {})["deployment.kubernetes.io/revision"]
  local l = S.c:list("replicasets.apps", { namespace = S.ns, selector = st.spec.selector.matchLabels })
  for _, rs in ipairs(l.items) do
    for _, ref in ipairs(rs.metadata.ownerReferences or {}) do
      if ref.uid == st.metadata.uid and (rs.metadata.annotations or {})["deployment.kubernetes.io/revision"] == rev then
        return rs.metadata.labels["pod-template-hash"]
      end
    end
  end
  error(errors.value("not_found", "%s: the current ReplicaSet of deployment %s in %s was not found (is it rolled out?)",
    S.fname, S.name, S.ns), 0)
end

-- the canary Service (a copy of the stable one selecting the canary's pods)
-- and the stable Service pinned; returns the canary Service's name
local function services_setup(S, stable_service, annotations)
  local svc = S.c:get("services/" .. stable_service, { namespace = S.ns })
  M.check_selects(S, stable_service, svc.spec.selector, { [CANARY_LABEL] = S.name })
  local name = stable_service .. "-canary"
  local sel = copy(svc.spec.selector or {})
  sel[CANARY_LABEL] = S.name
  local ports = {}
  for i, p in ipairs(svc.spec.ports or {}) do
    ports[i] = { name = p.name, port = p.port, targetPort = p.targetPort, protocol = p.protocol }
  end
  local made = create(S, { apiVersion = "v1", kind = "Service",
    metadata = { name = name, labels = copy(svc.metadata.labels), annotations = annotations },
    spec = { selector = sel, ports = ports } })
  local hash = M.stable_hash(S)
  if (svc.spec.selector or {})["pod-template-hash"] ~= hash then
    S.c:patch("services/" .. stable_service, { spec = { selector = { ["pod-template-hash"] = hash } } },
      { namespace = S.ns })
    say(S, "service %s pinned to the stable pods (pod-template-hash %s)", stable_service, hash)
  end
  return name, made
end

local function canary_size(S, w)
  local cn = M.split(S.R, w)
  if cn > replicas_of(S, S.canary) then
    scale(S, S.canary, cn)
    settle(S, S.canary)
  end
  return cn
end

-- after the router took every request off the canary: it goes
local function canary_shrink(S, cn)
  if cn < replicas_of(S, S.canary) then
    scale(S, S.canary, cn)
    settle(S, S.canary)
  end
end

-- promotion behind a router: all traffic to the canary, the stable
-- Deployment updated and unpinned, traffic back to it, the canary's
-- objects removed
local function routed_promote(router, S, remove_route)
  canary_size(S, 100)
  router:route(S, 100)
  say(S, "weight 100%% on %s while %s takes the new template", S.canary, S.name)
  -- unpinned before the stable pods are replaced: a router whose main
  -- Service has no endpoints fails every request (ingress-nginx does)
  S.c:patch("services/" .. router.stable_service, { spec = { selector = { ["pod-template-hash"] = json.null } } },
    { namespace = S.ns, type = "merge" })
  promote_stable(S)
  router:route(S, 0)
  remove_route(S)
  S.c:delete("services/" .. router.canary_service, { namespace = S.ns, timeout = S.timeout })
  S.c:delete("deployments/" .. S.canary, { namespace = S.ns, timeout = S.timeout })
end

local function routed_weight(router, S, w)
  local before = router.weight or 0
  local cn
  if w >= before then
    cn = canary_size(S, w) -- pods before traffic
    router:route(S, w)
  else
    router:route(S, w) -- traffic before pods
    cn = M.split(S.R, w)
    canary_shrink(S, cn)
  end
  router.weight = w
  return string.format("%s; canary %d pods, stable %d", router:describe(w), cn, S.R)
end

-- ingress-nginx: a canary Ingress beside the stable one
local Nginx = {}
Nginx.__index = Nginx
local NGINX_OPTS = { ingress = true, header = true, header_value = true, header_pattern = true, cookie = true }
local A = "nginx.ingress.kubernetes.io/"

-- nginx{ingress=, header=, header_value=, header_pattern=, cookie=}
function M.nginx(o)
  o = errors.check_options(usage, "strategy.nginx", o, NGINX_OPTS)
  if type(o.ingress) ~= "string" or o.ingress == "" then usage("strategy.nginx", "ingress must be an Ingress's name") end
  for _, k in ipairs { "header", "header_value", "header_pattern", "cookie" } do
    if o[k] ~= nil and type(o[k]) ~= "string" then usage("strategy.nginx", k .. " must be a string") end
  end
  if (o.header_value or o.header_pattern) and not o.header then
    usage("strategy.nginx", "header_value and header_pattern need header= (ingress-nginx ignores them without it)")
  end
  return setmetatable({ name = "ingress-nginx " .. o.ingress, o = o }, Nginx)
end

function Nginx:setup(S)
  local ing = S.c:get("ingresses.networking.k8s.io/" .. self.o.ingress, { namespace = S.ns })
  local svc
  for _, rule in ipairs(ing.spec.rules or {}) do
    for _, p in ipairs(rule.http and rule.http.paths or {}) do
      svc = svc or (p.backend and p.backend.service and p.backend.service.name)
    end
  end
  if not svc then
    usage(S.fname, "ingress " .. self.o.ingress .. " has no rule with a backend service")
  end
  self.stable_service = svc
  make_canary(S, 0)
  self.canary_service = services_setup(S, svc)
  local spec = copy(ing.spec)
  spec.defaultBackend = nil
  for _, rule in ipairs(spec.rules or {}) do
    for _, p in ipairs(rule.http and rule.http.paths or {}) do
      if p.backend and p.backend.service and p.backend.service.name == svc then p.backend.service.name = self.canary_service end
    end
  end
  spec.tls = nil
  local ann = { [A .. "canary"] = "true", [A .. "canary-weight"] = "0" }
  -- the class the stable Ingress has by annotation (older clusters), so the
  -- same controller serves the canary
  local class = (ing.metadata.annotations or {})["kubernetes.io/ingress.class"]
  if class then ann["kubernetes.io/ingress.class"] = class end
  if self.o.header then ann[A .. "canary-by-header"] = self.o.header end
  if self.o.header_value then ann[A .. "canary-by-header-value"] = self.o.header_value end
  if self.o.header_pattern then ann[A .. "canary-by-header-pattern"] = self.o.header_pattern end
  if self.o.cookie then ann[A .. "canary-by-cookie"] = self.o.cookie end
  self.canary_ingress = self.o.ingress .. "-canary"
  local made = create(S, { apiVersion = "networking.k8s.io/v1", kind = "Ingress",
    metadata = { name = self.canary_ingress, annotations = ann, labels = copy(ing.metadata.labels) }, spec = spec })
  -- a resumed run goes on from the weight the canary Ingress has
  self.weight = tonumber(((made or {}).metadata or {}).annotations and made.metadata.annotations[A .. "canary-weight"]) or 0
end

function Nginx:route(S, w)
  S.c:patch("ingresses.networking.k8s.io/" .. self.canary_ingress,
    { metadata = { annotations = { [A .. "canary-weight"] = tostring(math.floor(w + 0.5)) } } }, { namespace = S.ns })
end

function Nginx:describe(w)
  return string.format("ingress %s canary-weight %d", self.canary_ingress, math.floor(w + 0.5))
end

function Nginx:set_weight(S, w) return routed_weight(self, S, w) end

function Nginx:promote(S)
  routed_promote(self, S, function()
    S.c:delete("ingresses.networking.k8s.io/" .. self.canary_ingress, { namespace = S.ns, timeout = S.timeout })
  end)
end

-- Gateway API: the canary Service as a weighted backend of an HTTPRoute rule
local Gateway = {}
Gateway.__index = Gateway
local GATEWAY_OPTS = { route = true, rule = true }
local ROUTES = "httproutes.gateway.networking.k8s.io/"

-- gateway{route=, rule=1}
function M.gateway(o)
  o = errors.check_options(usage, "strategy.gateway", o, GATEWAY_OPTS)
  if type(o.route) ~= "string" or o.route == "" then usage("strategy.gateway", "route must be an HTTPRoute's name") end
  if o.rule ~= nil and (math.type(o.rule) ~= "integer" or o.rule < 1) then
    usage("strategy.gateway", "rule must be a rule's index (1 is the first)")
  end
  return setmetatable({ name = "Gateway API route " .. o.route, o = o, rule = o.rule or 1 }, Gateway)
end

function Gateway:setup(S)
  local route = S.c:get(ROUTES .. self.o.route, { namespace = S.ns })
  local rule = (route.spec.rules or {})[self.rule]
  local stable = rule and (rule.backendRefs or {})[1]
  if not stable or (stable.kind and stable.kind ~= "Service") then
    usage(S.fname, string.format("httproute %s has no rule %d with a Service backend", self.o.route, self.rule))
  end
  self.stable_service = stable.name
  make_canary(S, 0)
  -- the stable backend's weight from before, kept on the canary Service for
  -- a resumed run (which finds the route changed)
  local made
  self.canary_service, made = services_setup(S, stable.name,
    { ["relish.dev/stable-weight"] = stable.weight and tostring(stable.weight) or "" })
  local kept = ((made or {}).metadata or {}).annotations and made.metadata.annotations["relish.dev/stable-weight"]
  if kept ~= nil then self.stable_weight = tonumber(kept) else self.stable_weight = stable.weight end
  if self.stable_weight then self.stable_weight = math.tointeger(self.stable_weight) or self.stable_weight end
  self.port = stable.port
  self.weight = 0
  for _, b in ipairs(rule.backendRefs or {}) do
    if b.name == self.canary_service then self.weight = b.weight or 0 end
  end
  if self.weight == 0 then self:route(S, 0) end
end

function Gateway:route(S, w)
  local svc, canary, port, idx = self.stable_service, self.canary_service, self.port, self.rule
  local total = 100
  S.c:update_with_retry(ROUTES .. self.o.route, function(r)
    local rule = r.spec.rules[idx]
    local refs = {}
    for _, b in ipairs(rule.backendRefs or {}) do
      if b.name == svc then
        b.weight = math.floor(total - w + 0.5)
        refs[#refs + 1] = b
      elseif b.name ~= canary then
        refs[#refs + 1] = b
      end
    end
    refs[#refs + 1] = { name = canary, port = port, weight = math.floor(w + 0.5) }
    rule.backendRefs = refs
  end, { namespace = S.ns })
end

function Gateway:describe(w)
  return string.format("httproute %s: %s %d, %s %d", self.o.route, self.stable_service, 100 - math.floor(w + 0.5),
    self.canary_service, math.floor(w + 0.5))
end

function Gateway:set_weight(S, w) return routed_weight(self, S, w) end

function Gateway:promote(S)
  routed_promote(self, S, function()
    local svc, canary, idx = self.stable_service, self.canary_service, self.rule
    S.c:update_with_retry(ROUTES .. self.o.route, function(r)
      local rule = r.spec.rules[idx]
      local refs = {}
      for _, b in ipairs(rule.backendRefs or {}) do
        if b.name ~= canary then
          if b.name == svc then b.weight = self.stable_weight end
          refs[#refs + 1] = b
        end
      end
      rule.backendRefs = refs
    end, { namespace = S.ns })
  end)
end

return M
