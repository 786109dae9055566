-- A rolling release to Kubernetes: apply a Deployment and its Service from a
-- manifest directory with a new image, wait for the rollout (failing fast
-- when the new pods crash or cannot pull their image), smoke-test the
-- Service, and roll everything back to the objects as they were when any of
-- it fails. `relish rollback last` does the same later.
local k8s = require "relish.k8s"
local yaml = require "relish.yaml"
local fs = require "relish.fs"
local http = require "relish.http"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

local function connect(p)
  local function given(v) return v ~= "" and v or nil end
  return k8s.connect { kubeconfig = given(p.kubeconfig), context = given(p.context), namespace = p.namespace }
end

return recipe "rolling-release" {
  description = "Roll a new image out to a Deployment and its Service; roll back when it does not become ready",
  params = {
    image = param.string { required = true, description = "the new image, e.g. registry.example.com/web:1.4.2" },
    manifests = param.string { default = here .. "/rolling-release", description = "directory of the manifests (*.yaml)" },
    namespace = param.string { default = "default", match = "^[a-z0-9][a-z0-9-]*$" },
    kubeconfig = param.string { default = "", description = "kubeconfig file (default: $KUBECONFIG, else ~/.kube/config)" },
    context = param.string { default = "", description = "kubeconfig context (default: its current-context)" },
    timeout = param.number { default = 300, min = 1, description = "seconds the rollout may take" },
    service = param.string { default = "web", description = "the Service the smoke test goes through" },
    smoke_path = param.string { default = "/healthz", description = "path fetched through the API server's service proxy (2xx)" },
    smoke_url = param.string { default = "", description = "a URL to fetch instead, when the Service is reachable from here (2xx)" },
  },
  lock = function(p) return "k8s:" .. p.namespace end,

  step "apply manifests" {
    run = function(ctx)
      local p = ctx.params
      local docs = {}
      for _, name in ipairs(fs.list(p.manifests)) do
        if name:match("%.ya?ml$") then
          for _, d in ipairs(yaml.decode_all(fs.read(p.manifests .. "/" .. name))) do docs[#docs + 1] = d end
        end
      end
      if #docs == 0 then error("no manifests (*.yaml) in " .. p.manifests) end
      ctx.state.deployments = {}
      for _, d in ipairs(docs) do
        d.metadata.namespace = p.namespace
        if d.kind == "Deployment" then
          for _, c in ipairs(d.spec.template.spec.containers) do c.image = p.image end
          d.metadata.annotations = d.metadata.annotations or {}
          d.metadata.annotations["kubernetes.io/change-cause"] = "relish rolling-release " .. p.image
          table.insert(ctx.state.deployments, d.metadata.name)
        end
      end
      local c = connect(p)
      -- force: the release owns these fields, whoever (a rollback, kubectl edit) set them last
      for _, obj in ipairs(c:apply(docs, { force = true })) do
        ctx.log("applied %s/%s", obj.kind or "?", obj.metadata and obj.metadata.name or "?")
      end
    end,
  },

  step "wait for the rollout" {
    run = function(ctx)
      local p = ctx.params
      local c = connect(p)
      for _, name in ipairs(ctx.state.deployments) do
        local s = c:wait_rollout("deployments.apps/" .. name, { timeout = p.timeout })
        ctx.log("%s", s.message)
      end
    end,
  },

  step "smoke test" {
    run = function(ctx)
      local p = ctx.params
      if ctx.dry_run then return end -- the new pods do not exist yet
      if p.smoke_url ~= "" then
        local r = http.get(p.smoke_url, { timeout = 10, retries = 3 })
        if not r.ok then error(string.format("smoke test: GET %s answered %d", p.smoke_url, r.status)) end
        return
      end
      -- through the API server's proxy to the Service, from wherever relish runs
      local c = connect(p)
      for _ = 1, 3 do -- a few requests, so more than one pod answers
        local r = c:proxy(p.service, p.smoke_path, { port = "http" })
        if not r.ok then error(string.format("smoke test: service %s answered %d on %s", p.service, r.status, p.smoke_path)) end
      end
      ctx.log("service %s answers %s", p.service, p.smoke_path)
    end,
  },
}
