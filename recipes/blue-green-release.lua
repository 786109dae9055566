-- A blue/green release to Kubernetes: the new image comes up at full size
-- as a preview beside the active version, is judged through its own Service
-- before anyone is switched to it, then the active Service's selector moves
-- to it at once. The old version stays ready for the scale-down delay, so an
-- abort (a bad verdict after the switch, a person at the gate) is a selector
-- switched back. Then the Deployment takes the new template and the
-- preview goes. `relish rollback last` undoes it all later.
local k8s = require "relish.k8s"
local metrics = require "relish.metrics"
local strategy = require "relish.strategy"

local function given(v) return v ~= "" and v or nil end

return recipe "blue-green-release" {
  description = "Release a new image blue/green: preview, judge, switch the Service, keep the old version ready",
  params = {
    image = param.string { required = true, description = "the new image, e.g. registry.example.com/web:1.4.2" },
    deployment = param.string { default = "web", match = "^[a-z0-9][a-z0-9.-]*$", description = "the active Deployment" },
    namespace = param.string { default = "default", match = "^[a-z0-9][a-z0-9-]*$" },
    kubeconfig = param.string { default = "", description = "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)" },
    context = param.string { default = "", description = "kubeconfig context (default: its current-context)" },
    active_service = param.string { default = "", description = "the Service users reach (default: the deployment's name)" },
    preview_service = param.string { default = "", description = "a Service for the preview (default: <deployment>-preview when it exists, else none)" },
    gate = param.boolean { default = false, description = "wait for a person before the switch" },
    scale_down_delay = param.string { default = "30s", description = "how long the old version stays ready after the switch" },
    prometheus = param.string { default = "", description = "Prometheus' URL; none: no analysis" },
    max_error_rate = param.number { default = 0.01, min = 0, max = 1 },
    max_p99 = param.number { default = 0.5, min = 0 },
    interval = param.string { default = "30s", description = "between measurements" },
    count = param.integer { default = 3, min = 1, description = "measurements before and after the switch" },
    window = param.string { default = "1m", description = "the rate() window of the queries" },
    timeout = param.string { default = "10m" },
  },
  lock = function(p) return "k8s:" .. p.namespace .. "/" .. p.deployment end,
  deploys = { service = function(p) return p.deployment end, environment = function(p) return p.namespace end,
    version = function(p) return p.image end },

  step "blue/green" {
    run = function(ctx)
      local p = ctx.params
      local c = k8s.connect { kubeconfig = given(p.kubeconfig), context = given(p.context), namespace = p.namespace }
      local version = strategy.version_of(p.image)
      local preview = given(p.preview_service)
      if not preview and try(c.get, c, "services/" .. p.deployment .. "-preview") then preview = p.deployment .. "-preview" end
      -- the new version's pods are told apart by their version label, before
      -- the switch (through the preview Service) and after it; the first
      -- measurement waits one window, so that rate() has samples
      local function judged()
        if p.prometheus == "" then return nil end
        local labels = { namespace = p.namespace, version = version }
        return { prometheus = metrics.prometheus { url = p.prometheus }, interval = p.interval, count = p.count,
          initial_delay = p.window, metrics = {
            metrics.request_success_rate { labels = labels, window = p.window, min = 1 - p.max_error_rate },
            metrics.request_duration_p99 { labels = labels, window = p.window, max = p.max_p99 } } }
      end
      local active = given(p.active_service) or p.deployment
      strategy.blue_green(ctx, { client = c, deployment = p.deployment, image = p.image, labels = { version = version },
        active_service = active, preview_service = preview, auto_promote = not p.gate,
        pre_promotion = preview and judged() or nil, post_promotion = judged(),
        scale_down_delay = p.scale_down_delay, timeout = p.timeout })
    end,
  },
}
