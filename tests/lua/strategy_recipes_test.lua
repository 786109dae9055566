-- recipes/canary-release.lua and recipes/blue-green-release.lua against the
-- Kubernetes double's traffic and a real Prometheus scraping it: a good
-- version is promoted, a bad one aborted with its verdict printed while the
-- stable version served every request; a dry-run changes nothing.
local support = require "support"
local k8s_fixture = require "k8s_fixture"
local pf = require "prom_fixture"

local relish = support.relish
local here = debug.getinfo(1, "S").source:match("^@(.*)/tests/lua/[^/]*$")

local sf = require "strategy_fixture"
local deployments, served_throughout = sf.deployments, sf.served_throughout

-- the double with the world and its traffic, and Prometheus scraping it
local function setup()
  if not (k8s_fixture.available() and pf.available()) then skip("openssl, python3 or prometheus is not installed") end
  local k = k8s_fixture.start { time_scale = 0.05 }
  sf.world(k)
  k:control("POST", "/images", { ["web:bad"] = { error_ratio = 0.3 }, ["web:slow"] = { latency = { p50 = 0.4, p99 = 2 } } })
  k:traffic { targets = { { kind = "Service", name = "web", rps = 100 }, { kind = "Service", name = "web-preview", rps = 20 } } }
  local p = pf.prometheus { targets = { double = k.metrics_target } }
  local metrics = require "relish.metrics"
  local prom = metrics.prometheus { url = p.url }
  pf.eventually("the double scraped", function() return #prom:query('http_requests_total{service="web"}').series > 0 end)
  return setmetatable({ k = k, p = p }, { __close = function() p:stop(); k:stop() end })
end

local function run(env, recipe, image, ...)
  local dir = tmpdir()
  local args = { "run", here .. "/recipes/" .. recipe, "-p", "image=" .. image, "-p", "kubeconfig=" .. env.k.kubeconfig,
    "-p", "prometheus=" .. env.p.url, "-p", "interval=1s", "-p", "window=5s", "--state", support.state(dir), ... }
  args.timeout = 300
  return relish(args), dir
end

describe("canary-release", function()
  test("a good version is measured, promoted and becomes the stable one", function()
    local env <close> = setup()
    local r = run(env, "canary-release.lua", "web:2", "-p", "pause=3s")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "request%-success%-rate  1  >= 0%.99  ✓ %(%d+%)")
    assert_match(r.stdout, "promote: web:2 becomes the stable version of web")
    assert_eq(deployments(env.k), { web = { replicas = 4, image = "web:2" } })
    served_throughout(env.k)
  end)

  test("a bad version is aborted by its verdict, printed; the stable version served every request", function()
    local env <close> = setup()
    local r = run(env, "canary-release.lua", "web:bad", "-p", "pause=30s")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    local out = r.stdout .. r.stderr
    assert_match(out, "request%-success%-rate  0%.[67]%d*  >= 0%.99  ✗") -- 0.7, give or take a float
    assert_match(out, "canary web%-canary aborted by its background analysis: analysis failed: request%-success%-rate failed")
    assert_eq(deployments(env.k), { web = { replicas = 4, image = "web:1" } })
    served_throughout(env.k)
  end)

  test("a dry-run measures once, shows the plan and changes nothing", function()
    local env <close> = setup()
    local writes = env.k:control("GET", "/stats").writes
    local r = run(env, "canary-release.lua", "web:2", "--dry-run", "-p", "gate=true")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "create deployments%.apps/web%-canary in default")
    assert_match(r.stdout, "would wait for a person")
    assert_match(r.stdout, "%(dry%-run: not failing the plan%)")
    assert_eq(env.k:control("GET", "/stats").writes, writes)
  end)
end)

describe("blue-green-release", function()
  test("a good version: judged through the preview, switched, the old one gone after the delay", function()
    local env <close> = setup()
    local r = run(env, "blue-green-release.lua", "web:2", "-p", "scale_down_delay=2s", "-p", "count=2")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "pre%-promotion analysis")
    assert_match(r.stdout, "switch: service web %-> web%-preview %(web:2%)")
    assert_eq(deployments(env.k), { web = { replicas = 4, image = "web:2" } })
    assert_eq(env.k:get("/api/v1/namespaces/default/services/web").spec.selector, { app = "web" })
    served_throughout(env.k)
  end)

  test("a slow version fails before the switch: users never reached it", function()
    local env <close> = setup()
    local r = run(env, "blue-green-release.lua", "web:slow", "-p", "count=2")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    local out = r.stdout .. r.stderr
    assert_match(out, "request%-duration%-p99  [%d.]+  <= 0%.5  ✗")
    assert_nil(out:find("switch: service web", 1, true))
    -- nobody reached it through the active Service (only through the preview's)
    for _, q in ipairs(env.k:traffic().requests) do
      if q.service == "web" then assert_true(q.version ~= "slow", "a user reached web:slow") end
    end
    assert_eq(deployments(env.k), { web = { replicas = 4, image = "web:1" } })
    assert_eq(env.k:get("/api/v1/namespaces/default/services/web").spec.selector, { app = "web" })
    served_throughout(env.k)
  end)
end)

describe("a canary's analysis step (foreground)", function()
  local RECIPE = [[
local k8s = require "relish.k8s"
local metrics = require "relish.metrics"
local strategy = require "relish.strategy"
return recipe "analysis-step" {
  params = { kubeconfig = param.string { required = true }, image = param.string { required = true },
    prometheus = param.string { required = true }, measure = param.string { default = "" } },
  step "canary" { run = function(ctx)
    local version = ctx.params.image:match(":(.*)$")
    local measured = ctx.params.measure ~= "" and ctx.params.measure or version
    strategy.canary(ctx, { client = k8s.connect { kubeconfig = ctx.params.kubeconfig }, deployment = "web",
      image = ctx.params.image, labels = { version = version }, timeout = "60s",
      prometheus = metrics.prometheus { url = ctx.params.prometheus },
      steps = { { set_weight = 50 }, { analysis = { interval = "1s", count = 2, initial_delay = "5s",
        metrics = { metrics.request_success_rate { labels = { version = measured }, window = "5s" } } } },
        { set_weight = 75 } } })
  end },
}
]]
  local function go(env, image, measure, dir)
    dir = dir or tmpdir()
    local f = support.recipe(dir, "analysis.lua", RECIPE)
    return relish { "run", f, "-p", "kubeconfig=" .. env.k.kubeconfig, "-p", "image=" .. image, "-p",
      "prometheus=" .. env.p.url, "-p", "measure=" .. (measure or ""), "--state", support.state(dir), timeout = 300 }
  end

  test("inconclusive (no data) asks a person: without a terminal the run pauses; rollback aborts", function()
    local env <close> = setup()
    local dir = tmpdir()
    local r = go(env, "web:2", "nobody", dir)
    assert_eq(r.code, 5, r.stdout .. r.stderr)
    assert_match(r.stdout, "no data %(no_data = inconclusive%)")
    r = relish { "rollback", "last", "--state", support.state(dir) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(deployments(env.k), { web = { replicas = 4, image = "web:1" } })
    served_throughout(env.k)
  end)

  test("passes and the canary goes on; fails and the canary aborts at that step", function()
    local env <close> = setup()
    local r = go(env, "web:2")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "step 2/3: analysis")
    assert_match(r.stdout, "request%-success%-rate  1  >= 0%.99  ✓ %(2/2%)")
    assert_match(r.stdout, "step 3/3: set_weight 75")
    r = go(env, "web:bad")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout .. r.stderr, "canary web%-canary aborted at step 2/3 %(analysis%): analysis failed")
    assert_nil(r.stdout:find("step 3/3", 1, true))
    assert_eq(deployments(env.k), { web = { replicas = 4, image = "web:2" } })
    served_throughout(env.k)
  end)
end)
