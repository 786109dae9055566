-- Scale a Deployment up under load. It shows the replicas (wanted, ready,
-- available) and the CPU the pods use against what they request, from
-- Prometheus; the person confirms the live numbers and the new count (twice
-- the current one by default, never above `max`); the scale is journaled, so a
-- rollback (`relish rollback last`) puts the old count back.
local k8s = require "relish.k8s"
local metrics = require "relish.metrics"

local function client(p)
  return k8s.connect { kubeconfig = p.kubeconfig, context = p.context, namespace = p.namespace }
end

-- "250m" -> 0.25, "2" -> 2 (cores)
local function cores(q)
  if q == nil then return nil end
  local n, unit = tostring(q):match("^([%d.]+)(m?)$")
  if not n then return nil end
  return tonumber(n) / (unit == "m" and 1000 or 1)
end

-- the Deployment's numbers: {replicas=, ready=, available=, request= (cores a pod asks for, or nil)}
local function live(p)
  local d = client(p):get("deployments/" .. p.deployment)
  local st = d.status or {}
  local request
  for _, c in ipairs(d.spec.template.spec.containers or {}) do
    local r = cores(c.resources and c.resources.requests and c.resources.requests.cpu)
    if r then request = (request or 0) + r end
  end
  return { replicas = d.spec.replicas or 0, ready = st.readyReplicas or 0, available = st.availableReplicas or 0,
    request = request }
end

local function cpu_query(p)
  if p.cpu_query then return p.cpu_query end
  return string.format('sum(rate(container_cpu_usage_seconds_total{namespace="%s",pod=~"%s-.*",container!=""}[%s]))',
    p.namespace, p.deployment, p.window)
end

-- the CPU the Deployment's pods use: {used = cores, percent = of what the ready pods request, or nil}
local function cpu(p, l)
  local prom = metrics.prometheus { url = p.prometheus }
  local used = prom:query(cpu_query(p)):value()
  local percent = l.request and l.ready > 0 and (100 * used / (l.request * l.ready)) or nil
  return { used = used, percent = percent }
end

local function cpu_text(c)
  if c.percent then return string.format("CPU %.0f%% of requests", c.percent) end
  return string.format("CPU %.2f cores (no CPU requests to compare with)", c.used)
end

-- the new count: asked once (the default twice the current count, at most
-- max) and kept in the run's state for the step's run
local function wanted(ctx, l)
  if ctx.state.replicas then return ctx.state.replicas end
  local p = ctx.params
  local proposal = math.max(1, math.min(l.replicas * 2, p.max))
  local text = ctx.ask { id = "replicas", default = tostring(proposal), match = "^%d+$",
    question = string.format("Replicas for %s (now %d, at most %d)", p.deployment, l.replicas, p.max),
    validate = function(t)
      local n = math.tointeger(tonumber(t))
      if not n or n < 1 or n > p.max then return false, string.format("between 1 and %d, please", p.max) end
      return true
    end }
  ctx.state.replicas = math.tointeger(tonumber(text))
  return ctx.state.replicas
end

return runbook "scale-up" {
  description = "Scale a Deployment up under load, after a look at its replicas and CPU",
  severity = "SEV2",
  service = "api",
  owner = "platform team",
  links = {
    { title = "Scaling (k8s reference)", url = "docs/reference/k8s.md#cscaleref-replicas--namespace--scale" },
    { title = "Prometheus queries (metrics reference)", url = "docs/reference/metrics.md" },
  },
  params = {
    deployment = param.string { default = "api", description = "the Deployment to scale" },
    namespace = param.string { default = "default", description = "its namespace" },
    kubeconfig = param.string { description = "the kubeconfig (default: $KUBECONFIG, else ~/.kube/config)" },
    context = param.string { description = "the kubeconfig context (default: its current-context)" },
    prometheus = param.string { default = "http://127.0.0.1:9090", description = "the Prometheus server" },
    window = param.string { default = "5m", match = "^%d+[smh]$", description = "the rate window of the CPU query" },
    cpu_query = param.string { description = "PromQL giving the cores the pods use (default: the rate of " ..
      "container_cpu_usage_seconds_total of the Deployment's pods)" },
    max = param.integer { default = 10, min = 1, description = "the most replicas a person may ask for" },
    timeout = param.integer { default = 300, min = 1, description = "seconds to wait for the new pods to be ready" },
  },
  lock = function(p) return "scale:" .. p.namespace .. "/" .. p.deployment end,

  check "replicas" {
    description = "Replicas wanted, ready and available.",
    run = function(ctx)
      local l = live(ctx.params)
      return { verdict = l.ready < l.replicas and "warn" or "ok", text = string.format(
        "%s: %d replicas, %d ready, %d available", ctx.params.deployment, l.replicas, l.ready, l.available) }
    end,
  },

  check "cpu" {
    description = "CPU used by the pods (Prometheus) against what the ready pods request.",
    run = function(ctx)
      local l = live(ctx.params)
      local c = cpu(ctx.params, l)
      local verdict = not c.percent and "ok" or c.percent >= 90 and "bad" or c.percent >= 70 and "warn" or "ok"
      return { verdict = verdict, text = string.format("%s (%.2f cores used, %s requested)", cpu_text(c), c.used,
        l.request and string.format("%.2f", l.request * l.ready) or "none") }
    end,
  },

  step "scale up" {
    description = "Asks the new count (default: twice the current, at most `max`), scales the Deployment " ..
      "(undo: the old count back) and waits for the new pods to be ready. In advance: " ..
      "`-a 'scale up.replicas=N' -a 'scale up=yes'`.",
    confirm = function(ctx)
      local p = ctx.params
      local l = live(p)
      local n = wanted(ctx, l)
      return string.format("%s: %d replicas, %s -> scale to %d?", p.deployment, l.replicas, cpu_text(cpu(p, l)), n)
    end,
    run = function(ctx)
      local p = ctx.params
      local c = client(p)
      local l = live(p)
      local n = wanted(ctx, l)
      c:scale("deployments/" .. p.deployment, n)
      local st = c:wait_rollout("deployments/" .. p.deployment, { timeout = p.timeout })
      ctx.log("%s", st.message)
      ctx.note(string.format("scaled %s from %d to %d replicas", p.deployment, l.replicas, n))
    end,
  },

  check "after" {
    description = "Replicas and CPU once scaled.",
    run = function(ctx)
      local l = live(ctx.params)
      local c = try(cpu, ctx.params, l)
      return { verdict = l.ready < l.replicas and "bad" or "ok", text = string.format(
        "%s: %d replicas, %d ready; %s", ctx.params.deployment, l.replicas, l.ready,
        c and cpu_text(c) or "CPU unknown") }
    end,
  },
}
