-- relish.strategy against the Kubernetes double: recipes run by relish
-- (journal, dry-run, rollback), end states read back from the API.
local json = require "relish.json"
local support = require "support"
local routers = require "relish.strategy.routers"
local J = require "relish.journal"

local relish = support.relish

local sf = require "strategy_fixture"
local deployments, selector, served = sf.deployments, sf.selector, sf.served

local function start(opts)
  if not sf.available() then skip("openssl or python3 is not installed") end
  return sf.start(opts)
end

-- a recipe calling one strategy with the options in OPTS (Lua text)
local RECIPE = [[
local k8s = require "relish.k8s"
local strategy = require "relish.strategy"
return recipe "release" {
  params = { kubeconfig = param.string { required = true }, image = param.string { required = true } },
  step "release" { run = function(ctx)
    local c = k8s.connect { kubeconfig = ctx.params.kubeconfig }
    strategy.%s(ctx, { client = c, deployment = "web", image = ctx.params.image, timeout = "60s", %s })
  end },
}
]]

local world = sf.world

-- release(k, dir, strategy, options text, image, more args... [, {env=}])
local function release(k, dir, fn, opts, image, ...)
  local f = support.recipe(dir, "release.lua", string.format(RECIPE, fn, opts or ""))
  local args = { "run", f, "-p", "kubeconfig=" .. k.kubeconfig, "-p", "image=" .. image, "--state", support.state(dir) }
  local more = { ... }
  local last = more[#more]
  if type(last) == "table" then
    more[#more] = nil
    args.env = last.env
  end
  for _, a in ipairs(more) do args[#args + 1] = a end
  return relish(args)
end

describe("arithmetic", function()
  test("replica ratio rounds both sides up, as Argo Rollouts does", function()
    local function split(R, w) return { routers.split(R, w) } end
    assert_eq(split(10, 10), { 1, 9 })
    assert_eq(split(5, 20), { 1, 4 })
    assert_eq(split(4, 20), { 1, 4 }) -- 0.8 and 3.2: one over
    assert_eq(split(3, 50), { 2, 2 })
    assert_eq(split(1, 5), { 1, 1 })
    assert_eq(split(4, 0), { 0, 4 })
    assert_eq(split(4, 100), { 4, 0 })
    assert_eq(split(10, 33), { 4, 7 })
  end)

  test("version_of: an image's tag as a label value", function()
    local strategy = require "relish.strategy"
    assert_eq(strategy.version_of("registry.example.com:5000/web:1.4.2"), "1.4.2")
    assert_eq(strategy.version_of("web"), "latest")
    assert_eq(strategy.version_of("web@sha256:abc123"), "abc123")
    assert_eq(strategy.version_of("web:v1+build"), "v1-build")
  end)
end)

describe("canary, replica ratio", function()
  test("a good version goes through its steps and is promoted; the log tells each weight", function()
    local k <close> = start()
    world(k)
    local dir = tmpdir()
    local r = release(k, dir, "canary", [[steps = { { set_weight = 25 }, { pause = "1s" }, { set_weight = 50 } }]],
      "web:2")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:2" } })
    assert_match(r.stdout, "weight 25%% on web%-canary  %(canary 1, stable 3 ready pods: 25%% of them%)")
    assert_match(r.stdout, "weight 50%% on web%-canary  %(canary 2, stable 2 ready pods: 50%% of them%)")
    assert_match(r.stdout, "promote: web:2 becomes the stable version of web")
    -- the journal keeps the story for relish show
    local show = relish { "show", "last", "--state", support.state(dir) }
    assert_match(show.stdout, "weight 50%% on web%-canary")
  end)

  test("a version that cannot start fails fast and the rollback leaves only the stable version", function()
    local k <close> = start()
    world(k)
    k:control("POST", "/images", { ["web:bad"] = { state = "CrashLoopBackOff" } })
    local dir = tmpdir()
    local r = release(k, dir, "canary", [[steps = { { set_weight = 25 }, { set_weight = 50 } }]], "web:bad")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout .. r.stderr, "canary web%-canary aborted at step 1/2 %(set_weight 25%)")
    assert_match(r.stdout .. r.stderr, "CrashLoopBackOff")
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:1" } })
  end)

  test("a dry-run shows every write of the canary and changes nothing", function()
    local k <close> = start()
    world(k)
    local writes = k:control("GET", "/stats").writes
    local dir = tmpdir()
    local r = release(k, dir, "canary", [[steps = { { set_weight = 25 }, { pause = true }, { set_weight = 50 } }]],
      "web:2", "--dry-run")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(k:control("GET", "/stats").writes, writes)
    local out = r.stdout
    for _, want in ipairs {
      "create deployments%.apps/web%-canary in default",
      "scale deployments%.apps/web%-canary in default from 0 to 1",
      "scale deployments%.apps/web in default from 4 to 3",
      "would wait for a person: canary web%-canary at step 2/3: promote%?",
      "scale deployments%.apps/web%-canary in default from 1 to 2",
      "scale deployments%.apps/web in default from 3 to 2",
      "update deployments%.apps/web in default",
      "delete deployments%.apps/web%-canary in default",
    } do
      assert_match(out, want)
    end
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:1" } })
  end)

  test("pause = true without a terminal: exit 5 holding the canary; resume promotes, rollback aborts", function()
    local k <close> = start()
    world(k)
    local opts = [[steps = { { set_weight = 25 }, { pause = true }, { set_weight = 50 } }]]
    for _, how in ipairs { "resume", "rollback" } do
      local dir = tmpdir()
      local r = release(k, dir, "canary", opts, "web:2")
      assert_eq(r.code, 5, r.stdout .. r.stderr)
      assert_nil((r.stdout .. r.stderr):find("abort: canary", 1, true), "a pause is not an abort")
      assert_eq(deployments(k), { web = { replicas = 3, image = "web:1" }, ["web-canary"] = { replicas = 1, image = "web:2" } })
      local id = J.open(support.state(dir)):find_run("last").id
      r = relish { how, id, "--state", support.state(dir) }
      assert_eq(r.code, 0, how .. ": " .. r.stdout .. r.stderr)
      if how == "resume" then
        -- the stable Deployment back at its size from before the canary
        assert_eq(deployments(k), { web = { replicas = 4, image = "web:2" } })
      else
        assert_eq(deployments(k), { web = { replicas = 4, image = "web:1" } })
      end
      local show = relish { "show", id, "--state", support.state(dir) }
      assert_match(show.stdout, how == "resume" and "promote" or "abort")
      -- the next round starts from web:1 again
      if how == "resume" then
        world(k)
      end
    end
  end)

  test("killed mid-canary, relish resume goes on with the stable size from before and promotes", function()
    local k <close> = start()
    world(k)
    local opts = [[steps = { { set_weight = 50 }, { pause = "1s" }, { set_weight = 75 } }]]
    for _, n in ipairs { 3, 6 } do -- after the stable Deployment was scaled down; during the promotion
      local dir = tmpdir()
      local r = release(k, dir, "canary", opts, "web:2", { env = { RELISH_FAULT = "crash-after-action:" .. n } })
      assert_eq(r.signal, "KILL", r.stdout .. r.stderr)
      r = relish { "resume", "last", "--state", support.state(dir) }
      assert_eq(r.code, 0, n .. ": " .. r.stdout .. r.stderr)
      assert_eq(deployments(k), { web = { replicas = 4, image = "web:2" } }, "after action " .. n)
      world(k)
    end
  end)

  test("misuse raises at the caller", function()
    local k <close> = start()
    world(k)
    local dir = tmpdir()
    local r = release(k, dir, "canary", [[steps = { { set_weight = 120 } }]], "web:2")
    assert_eq(r.code, 1)
    assert_match(r.stdout .. r.stderr, "release%.lua:%d+: strategy%.canary: steps%[1%]: set_weight must be a number from 0 to 100")
    r = release(k, dir, "canary", [[steps = { { set_wieght = 20 } }]], "web:2")
    assert_match(r.stdout .. r.stderr, "steps%[1%]: unknown step 'set_wieght'")
    r = release(k, dir, "canary", [[stepz = {}]], "web:2")
    assert_match(r.stdout .. r.stderr, "unknown option 'stepz' %(did you mean 'steps'%?%)")
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:1" } })
  end)
end)

describe("blue/green", function()
  test("the preview comes up, the active selector switches, the old version stays until the delay, then one Deployment", function()
    local k <close> = start()
    world(k)
    local dir = tmpdir()
    local r = release(k, dir, "blue_green", [[active_service = "web", preview_service = "web-preview",
      scale_down_delay = "1s"]], "web:2")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "switch: service web %-> web%-preview %(web:2%); web kept ready for 1s")
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:2" } })
    assert_eq(selector(k, "web"), { app = "web" })
    assert_eq(selector(k, "web-preview"), { app = "web" })
  end)

  test("a gate before the switch: paused (exit 5), the active Service still on the old pods; resume switches", function()
    local k <close> = start()
    world(k)
    local dir = tmpdir()
    local r = release(k, dir, "blue_green", [[active_service = "web", auto_promote = false, scale_down_delay = "1s"]],
      "web:2")
    assert_eq(r.code, 5, r.stdout .. r.stderr)
    local sel = selector(k, "web")
    assert_true(sel["pod-template-hash"] ~= nil and sel["relish.dev/preview"] == nil, "pinned to the old pods")
    r = relish { "resume", "last", "--state", support.state(dir) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:2" } })
    assert_eq(selector(k, "web"), { app = "web" })
  end)

  test("a Service that would not select the new pods is refused before anything changes", function()
    local k <close> = start()
    world(k)
    local writes = k:control("GET", "/stats").writes
    local dir = tmpdir()
    local r = release(k, dir, "blue_green", [[active_service = "web", template = function(t) t.metadata.labels.app = "web2" end]],
      "web:2")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout .. r.stderr, "service web selects app=web, which the new pods' labels do not match")
    assert_eq(k:control("GET", "/stats").writes, writes)
  end)

  test("a failing pre-promotion step rolls back: the active selector never moved", function()
    local k <close> = start()
    world(k)
    k:control("POST", "/images", { ["web:bad"] = { state = "ImagePullBackOff" } })
    local dir = tmpdir()
    local r = release(k, dir, "blue_green", [[active_service = "web"]], "web:bad")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout .. r.stderr, "ImagePullBackOff")
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:1" } })
    assert_eq(selector(k, "web"), { app = "web" })
  end)
end)

describe("rolling", function()
  test("a good image rolls out; a bad one fails fast and the template is put back", function()
    local k <close> = start()
    world(k)
    local dir = tmpdir()
    local r = release(k, dir, "rolling", "", "web:2")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:2" } })
    k:control("POST", "/images", { ["web:bad"] = { state = "CrashLoopBackOff" } })
    r = release(k, dir, "rolling", "", "web:bad")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:2" } })
    -- the same image again: nothing to do, nothing written
    r = release(k, dir, "rolling", "", "web:2")
    assert_eq(r.code, 0)
    assert_match(r.stdout, "already runs web:2: nothing to roll")
  end)
end)

describe("canary with a background analysis (real Prometheus)", function()
  local pf = require "prom_fixture"
  test("the analysis failing mid-pause aborts at once: no later step, the rollback leaves the stable version", function()
    if not pf.available() then skip("prometheus is not installed") end
    local k <close> = start()
    world(k)
    local ex <close> = pf.exporter()
    ex:set { requests = { { code = "200", version = "v2", value = 500 }, { code = "500", version = "v2", value = 500 } } }
    local p <close> = pf.prometheus { targets = { exporter = ex.target } }
    local metrics = require "relish.metrics"
    local prom = metrics.prometheus { url = p.url }
    pf.eventually("the first scrape", function() return #prom:query('http_requests_total{version="v2"}').series == 2 end)
    local dir = tmpdir()
    local opts = string.format([[labels = { version = "v2" }, prometheus = require("relish.metrics").prometheus { url = %q },
      steps = { { set_weight = 25 }, { pause = "60s" }, { set_weight = 50 } },
      analysis = { interval = "1s", initial_delay = "2s", args = { version = "v2" }, metrics = {
        { name = "error-rate", success = require("relish.metrics").below(0.05),
          query = 'sum(http_requests_total{version="{{args.version}}",code="500"}) / sum(http_requests_total{version="{{args.version}}"})' } } }]],
      p.url)
    local r = release(k, dir, "canary", opts, "web:2")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    local out = r.stdout .. r.stderr
    assert_match(out, "pause 1m")
    assert_match(out, "error%-rate  0%.5  < 0%.05  ✗ %(1%)")
    assert_match(out, "canary web%-canary aborted by its background analysis: analysis failed")
    assert_nil(out:find("step 3/3", 1, true), "no step after the pause")
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:1" } })
  end)
end)

describe("crashes", function()
  test("killed at any action of a canary, relish rollback last puts back the objects as they were", function()
    local k <close> = start()
    world(k)
    local before = deployments(k)
    local dir = tmpdir()
    local opts = [[steps = { { set_weight = 50 } }]]
    -- how many actions a whole canary takes
    local r = release(k, dir, "canary", opts, "web:2", "--dry-run")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local j = J.open(support.state(dir))
    local n = #j:actions(j:list_runs { limit = 1 }[1].id) -- the dry-run's planned actions
    j:close()
    assert_true(n >= 5, "actions: " .. n)
    for i = 1, n do
      for _, when in ipairs { "before", "after" } do
        local d2 = tmpdir()
        r = release(k, d2, "canary", opts, "web:2", { env = { RELISH_FAULT = string.format("crash-%s-action:%d", when, i) } })
        assert_eq(r.signal, "KILL", string.format("%s action %d: %s", when, i, r.stdout .. r.stderr))
        local rb = relish { "rollback", "last", "--state", support.state(d2) }
        assert_eq(rb.code, 0, string.format("%s action %d: %s", when, i, rb.stdout .. rb.stderr))
        assert_eq(deployments(k), before, string.format("%s action %d", when, i))
      end
    end
  end)
end)

local INGRESS = [[
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {name: web}
spec:
  ingressClassName: nginx
  rules:
  - host: web.example.com
    http:
      paths:
      - {path: /, pathType: Prefix, backend: {service: {name: web, port: {number: 80}}}}
]]

local ROUTE = [[
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: web, port: 80}]
]]

describe("canary behind a traffic router", function()
  test("ingress-nginx: a canary Ingress by weight, the stable Service pinned meanwhile; promoted, all of it gone", function()
    local k <close> = start()
    world(k)
    k:kubectl({ "apply", "-f", "-" }, { input = INGRESS })
    k:traffic { targets = { { kind = "Ingress", host = "web.example.com", rps = 200 } } }
    local dir = tmpdir()
    local r = release(k, dir, "canary", [[router = strategy.nginx { ingress = "web" },
      steps = { { set_weight = 25 }, { pause = "2s" }, { set_weight = 50 }, { pause = "1s" } }]], "web:2")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "service web pinned to the stable pods %(pod%-template%-hash %w+%)")
    assert_match(r.stdout, "weight 25%% on web%-canary  %(ingress web%-canary canary%-weight 25; canary 1 pods, stable 4%)")
    local by, dropped = served(k)
    assert_true((by["2"] or 0) > 0, "the canary served some of it")
    assert_true(dropped == 0, "dropped " .. dropped)
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:2" } })
    assert_eq(selector(k, "web"), { app = "web" })
    local names = {}
    for _, i in ipairs(k:get("/apis/networking.k8s.io/v1/namespaces/default/ingresses").items) do names[#names + 1] = i.metadata.name end
    assert_eq(names, { "web" })
    assert_eq(k:json("GET", "/api/v1/namespaces/default/services/web-canary"), 404)
  end)

  test("ingress-nginx: a bad canary aborts, traffic never left the stable version", function()
    local k <close> = start()
    world(k)
    k:kubectl({ "apply", "-f", "-" }, { input = INGRESS })
    k:traffic { targets = { { kind = "Ingress", host = "web.example.com", rps = 200 } } }
    k:control("POST", "/images", { ["web:bad"] = { state = "CrashLoopBackOff" } })
    local dir = tmpdir()
    local r = release(k, dir, "canary", [[router = strategy.nginx { ingress = "web" }, steps = { { set_weight = 25 } }]],
      "web:bad")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    local by, dropped = served(k)
    assert_true((by.bad or 0) == 0, "the bad version got requests")
    assert_true(dropped == 0, "dropped " .. dropped)
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:1" } })
    assert_eq(selector(k, "web"), { app = "web" })
  end)

  test("Gateway API: the HTTPRoute's backend weights; promoted, the route as it was", function()
    local k <close> = start()
    world(k)
    k:kubectl({ "apply", "-f", "-" }, { input = ROUTE })
    k:traffic { targets = { { kind = "HTTPRoute", name = "web", rps = 200 } } }
    local before = k:get("/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/web").spec
    local dir = tmpdir()
    local r = release(k, dir, "canary", [[router = strategy.gateway { route = "web" },
      steps = { { set_weight = 20 }, { pause = "2s" } }]], "web:2")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "weight 20%% on web%-canary  %(httproute web: web 80, web%-canary 20; canary 1 pods, stable 4%)")
    local by, dropped = served(k)
    assert_true((by["2"] or 0) > 0, "the canary served some of it")
    assert_true(dropped == 0, "dropped " .. dropped)
    assert_eq(k:get("/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/web").spec, before)
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:2" } })
  end)
end)

describe("dry-runs", function()
  test("rolling, blue/green and the nginx and Gateway API canaries plan every write and change nothing", function()
    local k <close> = start()
    world(k)
    k:kubectl({ "apply", "-f", "-" }, { input = INGRESS })
    k:kubectl({ "apply", "-f", "-" }, { input = ROUTE })
    local writes = k:control("GET", "/stats").writes
    local cases = {
      { "rolling", "", { "update deployments%.apps/web in default" } },
      { "blue_green", [[active_service = "web", preview_service = "web-preview"]], {
        "create deployments%.apps/web%-preview in default", "patch services/web%-preview in default",
        "patch services/web in default", "update deployments%.apps/web in default",
        "delete deployments%.apps/web%-preview in default" } },
      { "canary", [[router = strategy.nginx { ingress = "web", header = "X-Canary" }, steps = { { set_weight = 30 } }]], {
        "create deployments%.apps/web%-canary in default", "create services/web%-canary in default",
        "patch services/web in default", "create ingresses%.networking%.k8s%.io/web%-canary in default",
        "patch ingresses%.networking%.k8s%.io/web%-canary in default", "update deployments%.apps/web in default",
        "delete ingresses%.networking%.k8s%.io/web%-canary in default", "delete services/web%-canary in default",
        "delete deployments%.apps/web%-canary in default" } },
      { "canary", [[router = strategy.gateway { route = "web" }, steps = { { set_weight = 30 } }]], {
        "create services/web%-canary in default", "update httproutes%.gateway%.networking%.k8s%.io/web in default",
        "delete services/web%-canary in default" } },
    }
    for _, case in ipairs(cases) do
      local dir = tmpdir()
      local r = release(k, dir, case[1], case[2], "web:2", "--dry-run")
      assert_eq(r.code, 0, case[1] .. ": " .. r.stdout .. r.stderr)
      for _, want in ipairs(case[3]) do assert_match(r.stdout, want) end
    end
    assert_eq(k:control("GET", "/stats").writes, writes)
    assert_eq(deployments(k), { web = { replicas = 4, image = "web:1" } })
  end)
end)
