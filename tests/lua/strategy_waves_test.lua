-- strategy.waves across three clusters (three Kubernetes doubles): wave by
-- wave, a failure in the second wave halts everything and rolls back that
-- wave, keeping the first (or every wave, by option); relish rollback then
-- undoes the rest.
local json = require "relish.json"
local support = require "support"
local k8s_fixture = require "k8s_fixture"

local relish = support.relish

local WORLD = [[
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: "web:1"}]
]]

local RECIPE = [[
local k8s = require "relish.k8s"
local json = require "relish.json"
local strategy = require "relish.strategy"
return recipe "waves" {
  params = { clusters = param.string { required = true }, rollback = param.string { default = "wave" } },
  step "release" { run = function(ctx)
    local kubeconfigs = json.decode(ctx.params.clusters)
    strategy.waves(ctx, {
      waves = { { "staging" }, { "eu-1", "eu-2" } }, parallel = 2, bake = "1s", rollback = ctx.params.rollback,
      connect = function(name) return k8s.connect { kubeconfig = kubeconfigs[name] } end,
      release = function(c, name)
        strategy.rolling(ctx, { client = c, deployment = "web", image = "web:2", timeout = "60s" })
      end,
    })
  end },
}
]]

local function image(k)
  return k:get("/apis/apps/v1/namespaces/default/deployments/web").spec.template.spec.containers[1].image
end

local function clusters()
  if not k8s_fixture.available() then skip("openssl or python3 is not installed") end
  local ks, configs = {}, {}
  for _, name in ipairs { "staging", "eu-1", "eu-2" } do
    local k = k8s_fixture.start { time_scale = 0.05 }
    k:kubectl({ "apply", "-f", "-" }, { input = WORLD })
    ks[name], configs[name] = k, k.kubeconfig
  end
  -- eu-2 cannot run web:2
  ks["eu-2"]:control("POST", "/images", { ["web:2"] = { state = "CrashLoopBackOff" } })
  return setmetatable(ks, { __close = function(t) for _, k in pairs(t) do k:stop() end end }), json.encode(configs)
end

local function images(ks)
  return { staging = image(ks.staging), ["eu-1"] = image(ks["eu-1"]), ["eu-2"] = image(ks["eu-2"]) }
end

describe("waves", function()
  test("a failure in the second wave rolls back that wave and keeps the first; relish rollback undoes the rest", function()
    local ks <close>, configs = clusters()
    local dir = tmpdir()
    local f = support.recipe(dir, "waves.lua", RECIPE)
    local r = relish { "run", f, "-p", "clusters=" .. configs, "--state", support.state(dir) }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    local out = r.stdout .. r.stderr
    assert_match(out, "wave 1/2: staging")
    assert_match(out, "cluster staging: released")
    assert_match(out, "pause 1s %(bake time after wave 1%)")
    assert_match(out, "wave 2/2 failed: cluster eu%-2: .*CrashLoopBackOff.*; halting, rolling back wave 2, keeping waves 1%-1")
    assert_eq(images(ks), { staging = "web:2", ["eu-1"] = "web:1", ["eu-2"] = "web:1" })
    local show = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(dir) }.stdout)
    assert_eq(show.status, "stopped")
    r = relish { "rollback", "last", "--state", support.state(dir) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(images(ks), { staging = "web:1", ["eu-1"] = "web:1", ["eu-2"] = "web:1" })
  end)

  test("rollback = all: every wave is rolled back", function()
    local ks <close>, configs = clusters()
    local dir = tmpdir()
    local f = support.recipe(dir, "waves.lua", RECIPE)
    local r = relish { "run", f, "-p", "clusters=" .. configs, "-p", "rollback=all", "--state", support.state(dir) }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout .. r.stderr, "halting, every wave is rolled back")
    assert_eq(images(ks), { staging = "web:1", ["eu-1"] = "web:1", ["eu-2"] = "web:1" })
  end)

  test("a dry-run plans every cluster of every wave and changes nothing", function()
    local ks <close>, configs = clusters()
    local dir = tmpdir()
    local f = support.recipe(dir, "waves.lua", RECIPE)
    local r = relish { "run", f, "-p", "clusters=" .. configs, "--dry-run", "--state", support.state(dir) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local n = 0
    for _ in r.stdout:gmatch("update deployments%.apps/web in default") do n = n + 1 end
    assert_eq(n, 3)
    assert_eq(images(ks), { staging = "web:1", ["eu-1"] = "web:1", ["eu-2"] = "web:1" })
  end)
end)
