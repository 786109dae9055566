-- A canary release to Kubernetes: the new image runs beside the stable
-- Deployment and takes a growing share of the traffic (by its share of the
-- pods, or through ingress-nginx or a Gateway API HTTPRoute), while
-- Prometheus judges it: its success rate and p99 latency, measured every
-- interval for as long as the canary runs. A bad verdict, a pod that cannot
-- start or a person saying "abort" at the gate aborts: the rollback puts
-- every object back as it was, newest first, and never measures again.
-- A good canary is promoted: the stable Deployment takes its template and
-- the canary goes. `relish rollback last` undoes a promoted release too.
local k8s = require "relish.k8s"
local metrics = require "relish.metrics"
local strategy = require "relish.strategy"

local function given(v) return v ~= "" and v or nil end

return recipe "canary-release" {
  description = "Release a new image as a canary judged by Prometheus; abort and roll back on a bad verdict",
  params = {
    image = param.string { required = true, description = "the new image, e.g. registry.example.com/web:1.4.2" },
    deployment = param.string { default = "web", match = "^[a-z0-9][a-z0-9.-]*$", description = "the stable Deployment" },
    namespace = param.string { default = "default", match = "^[a-z0-9][a-z0-9-]*$" },
    kubeconfig = param.string { default = "", description = "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)" },
    context = param.string { default = "", description = "kubeconfig context (default: its current-context)" },
    weights = param.list { default = { "20", "50" }, match = "^%d+$", description = "the canary's weights (%), in order",
      validate = function(ws)
        for _, w in ipairs(ws) do
          if tonumber(w) > 100 then return nil, "a weight is at most 100, got " .. w end
        end
        return true
      end },
    pause = param.string { default = "1m", description = "how long each weight is held (30s, 5m, ...)" },
    gate = param.boolean { default = false, description = "wait for a person after the first weight (promote / abort)" },
    router = param.enum { choices = { "replicas", "nginx", "gateway" }, default = "replicas",
      description = "how traffic reaches the canary: its share of the pods, an ingress-nginx canary Ingress, an HTTPRoute" },
    ingress = param.string { default = "", description = "the Ingress (router nginx; default: the deployment's name)" },
    route = param.string { default = "", description = "the HTTPRoute (router gateway; default: the deployment's name)" },
    prometheus = param.string { default = "", description = "Prometheus' URL; none: no analysis (the canary is judged by its pods only)" },
    max_error_rate = param.number { default = 0.01, min = 0, max = 1, description = "the canary's highest share of 5xx answers" },
    max_p99 = param.number { default = 0.5, min = 0, description = "the canary's highest p99 latency, seconds" },
    interval = param.string { default = "30s", description = "between measurements" },
    window = param.string { default = "1m", description = "the rate() window of the queries" },
    timeout = param.string { default = "10m", description = "how long a scale or rollout may take" },
  },
  lock = function(p) return "k8s:" .. p.namespace .. "/" .. p.deployment end,
  deploys = { service = function(p) return p.deployment end, environment = function(p) return p.namespace end,
    version = function(p) return p.image end },

  step "canary" {
    run = function(ctx)
      local p = ctx.params
      local c = k8s.connect { kubeconfig = given(p.kubeconfig), context = given(p.context), namespace = p.namespace }
      local version = strategy.version_of(p.image)
      local steps = {}
      for i, w in ipairs(p.weights) do
        steps[#steps + 1] = { set_weight = tonumber(w) }
        if i == 1 and p.gate then steps[#steps + 1] = { pause = true } end
        steps[#steps + 1] = { pause = p.pause }
      end
      local analysis
      if p.prometheus ~= "" then
        local labels = { namespace = p.namespace, version = version }
        local rate = metrics.request_success_rate { labels = labels, window = p.window, min = 1 - p.max_error_rate }
        local p99 = metrics.request_duration_p99 { labels = labels, window = p.window, max = p.max_p99 }
        -- a canary that has just started has no rate yet: a few inconclusive
        -- measurements are allowed, then no data aborts too
        rate.inconclusive_limit, p99.inconclusive_limit = 3, 3
        analysis = { prometheus = metrics.prometheus { url = p.prometheus }, interval = p.interval,
          initial_delay = p.window, metrics = { rate, p99 } }
      end
      local router
      if p.router == "nginx" then
        router = strategy.nginx { ingress = given(p.ingress) or p.deployment }
      elseif p.router == "gateway" then
        router = strategy.gateway { route = given(p.route) or p.deployment }
      end
      strategy.canary(ctx, { client = c, deployment = p.deployment, image = p.image, labels = { version = version },
        steps = steps, router = router, analysis = analysis, timeout = p.timeout })
    end,
  },
}
