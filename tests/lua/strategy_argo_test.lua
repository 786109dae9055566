-- relish.strategy.argo against the Kubernetes double, the test playing the
-- Argo Rollouts controller: a task here watches the Rollout and writes its
-- status subresource as Argo does, while relish runs a recipe in a
-- subprocess. End states are read back from the API; the promote patches
-- from the double's request log.
local json = require "relish.json"
local task = require "relish.task"
local host = require "relish._host"
local support = require "support"
local k8s_fixture = require "k8s_fixture"

local relish = support.relish

local function start()
  if not k8s_fixture.available() then skip("openssl or python3 is not installed") end
  return k8s_fixture.start { time_scale = 0.05 }
end

local PATH = "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts/web"

local STEPS = { { setWeight = 25 }, { pause = json.object {} }, { setWeight = 50 }, { pause = { duration = "1s" } } }

local function rollout(strategy)
  return { apiVersion = "argoproj.io/v1alpha1", kind = "Rollout", metadata = { name = "web" },
    spec = { replicas = 4, selector = { matchLabels = { app = "web" } },
      template = { metadata = { labels = { app = "web" } }, spec = { containers = { { name = "web", image = "web:1" } } } },
      strategy = strategy or { canary = { steps = STEPS } } } }
end

local function image(r) return r.spec.template.spec.containers[1].image end
-- the pod-template-hash of the template, as far as this test needs one
local function hash(r) return "h-" .. image(r):gsub("%W", "-") end

local function put_status(k, r, st)
  r.status = st
  local code = k:json("PUT", PATH .. "/status", { json = r })
  return code == 200
end

-- A Rollout web (canary STEPS unless strategy says otherwise), Healthy on
-- web:1 as the controller leaves it.
local function world(k, strategy)
  local code, body = k:json("POST", "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts",
    { json = rollout(strategy) })
  assert_eq(code, 201, body)
  local r = k:get(PATH)
  local n = r.spec.strategy.canary and #r.spec.strategy.canary.steps or nil
  assert_true(put_status(k, r, { observedGeneration = tostring(r.metadata.generation), phase = "Healthy",
    currentPodHash = hash(r), stableRS = hash(r), currentStepIndex = n }))
end

-- One step of the fake controller: the Rollout's next status, or nil to
-- leave it. sc: {degrade_at = step index, abort_at = step index} (0-based,
-- as currentStepIndex), W: what the controller remembers.
local function next_status(r, sc, W)
  local st = json.decode(json.encode(r.status or {}))
  local gen, h = tostring(r.metadata.generation), hash(r)
  local steps = r.spec.strategy.canary and r.spec.strategy.canary.steps
  if st.observedGeneration ~= gen then
    st.observedGeneration = gen
    if h == st.stableRS then
      -- the stable template back: a rollback, at once, no steps
      return { observedGeneration = gen, phase = "Healthy", currentPodHash = h, stableRS = h,
        currentStepIndex = steps and #steps or nil }
    end
    if st.currentPodHash ~= h then
      st.currentPodHash, st.currentStepIndex, st.phase = h, steps and 0 or nil, "Progressing"
      st.message, st.pauseConditions, st.abort, st.controllerPause = "more replicas need to be updated", nil, nil, nil
    end
    return st
  end
  if st.phase == "Healthy" or st.phase == "Degraded" then return nil end
  if r.spec.paused then
    -- paused by hand: Argo goes no further
    if st.phase == "Paused" then return nil end
    st.phase, st.message = "Paused", "manually paused"
    return st
  end
  if st.abort then
    st.phase, st.message, st.pauseConditions = "Degraded", "RolloutAborted: Rollout aborted update to revision 2", nil
    return st
  end
  local function healthy()
    st.phase, st.stableRS, st.message, st.pauseConditions, st.promoteFull = "Healthy", h, nil, nil, nil
    st.currentStepIndex = steps and #steps or nil
    return st
  end
  if st.promoteFull then return healthy() end
  if not steps then
    -- blue-green: a pre-promotion pause when auto-promotion is off
    if r.spec.strategy.blueGreen.autoPromotionEnabled == false and not st.controllerPause then
      st.phase, st.message, st.controllerPause = "Paused", "BlueGreenPause", true
      st.pauseConditions = { { reason = "BlueGreenPause", startTime = "2026-01-01T00:00:00Z" } }
      return st
    end
    if st.pauseConditions then return nil end
    return healthy()
  end
  local i = st.currentStepIndex
  if sc.abort_at == i and not W.aborted then return nil end -- someone aborts here (below)
  if sc.degrade_at == i then
    st.phase, st.message = "Degraded", 'ProgressDeadlineExceeded: ReplicaSet "web-' .. h .. '" has timed out progressing.'
    return st
  end
  if i >= #steps then return healthy() end
  local step = steps[i + 1]
  if step.pause then
    if st.pauseConditions then
      local d = step.pause.duration and tonumber(step.pause.duration:match("%d+"))
      if not (d and host.now() - W.paused_at >= d) then return nil end
      st.pauseConditions = nil -- a timed pause is over: Argo resumes
    end
    if st.controllerPause then
      st.controllerPause, st.currentStepIndex, st.phase, st.message = nil, i + 1, "Progressing", nil
      return st
    end
    W.paused_at = host.now()
    st.phase, st.message, st.controllerPause = "Paused", "CanaryPauseStep", true
    st.pauseConditions = { { reason = "CanaryPauseStep", startTime = "2026-01-01T00:00:0" .. (i % 10) .. "Z" } }
    return st
  end
  st.currentStepIndex, st.phase = i + 1, "Progressing"
  return st
end

-- the controller, until cancelled: a look every 20 ms, a status write when
-- something changed (a 409 is tried again at the next look)
local function controller(k, sc)
  local W = {}
  while true do
    local r = k:get(PATH)
    local st = next_status(r, sc, W)
    if st then
      put_status(k, r, st)
    elseif sc.abort_at and r.status.currentStepIndex == sc.abort_at and not W.aborted then
      -- someone runs kubectl argo rollouts abort web
      local code = k:json("PATCH", PATH .. "/status", { body = '{"status":{"abort":true}}',
        headers = { ["Content-Type"] = "application/merge-patch+json" } })
      assert_eq(code, 200)
      W.aborted = true
    end
    task.sleep(0.02)
  end
end

local RECIPE = [[
local k8s = require "relish.k8s"
local strategy = require "relish.strategy"
return recipe "release" {
  params = { kubeconfig = param.string { required = true }, image = param.string { required = true } },
  step "release" { run = function(ctx)
    local c = k8s.connect { kubeconfig = ctx.params.kubeconfig }
    return strategy.argo(ctx, { client = c, rollout = "web", image = ctx.params.image, timeout = "30s", %s })
  end },
}
]]

-- release(k, dir, options text, image, more args...) -> relish's result,
-- with the fake controller running (sc) while relish does
local function release(k, dir, opts, img, sc, ...)
  local f = support.recipe(dir, "release.lua", string.format(RECIPE, opts or ""))
  local args = { "run", f, "-p", "kubeconfig=" .. k.kubeconfig, "-p", "image=" .. img, "--state", support.state(dir),
    input = "" }
  for _, a in ipairs { ... } do args[#args + 1] = a end
  if not sc then return relish(args) end
  local ctl = task.spawn(controller, k, sc)
  local guard <close> = setmetatable({}, { __close = function() ctl:cancel() end })
  return relish(args)
end

-- the promote patches relish sent: "PATCH path body" each
local function promotes(k)
  local out = {}
  for _, r in ipairs(k:requests(function(r) return r.method == "PATCH" and r.user_agent == "relish-k8s" end)) do
    local body = type(r.body) == "string" and r.body or json.encode(r.body)
    out[#out + 1] = r.path:gsub("^/apis/argoproj.io/v1alpha1/namespaces/default/", "") .. " " ..
      json.encode(json.decode(body))
  end
  return out
end

local function eventually_healthy_on(k, img)
  -- the controller goes on (relish is done)
  local ctl = task.spawn(controller, k, {})
  local guard <close> = setmetatable({}, { __close = function() ctl:cancel() end })
  return k8s_fixture.eventually("rollout web Healthy on " .. img, function()
    local r = k:get(PATH)
    return image(r) == img and r.status.phase == "Healthy" and r.status.stableRS == hash(r)
      and r.status.observedGeneration == tostring(r.metadata.generation)
  end)
end

describe("argo: promote = auto", function()
  test("the Rollout pauses at its step, relish promotes, Argo resumes the timed pause, Healthy on web:2", function()
    local k <close> = start()
    world(k)
    local dir = tmpdir()
    local r = release(k, dir, "", "web:2", {})
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    eventually_healthy_on(k, "web:2")
    local out = r.stdout
    assert_match(out, "argo rollout web: web:1 %-> web:2, canary with 4 steps, promote auto")
    assert_match(out, "rollout web: Progressing, step 1/4 %(setWeight 25%), weight 25%%")
    assert_match(out, "rollout web: Paused, step 2/4 %(pause for a person%), weight 25%%: CanaryPauseStep")
    assert_match(out, "promote rollouts%.argoproj%.io/web in default at step 2/4 %(CanaryPauseStep%)")
    assert_match(out, "rollout web paused at step 4/4 %(pause 1s%): Argo resumes it after 1s")
    assert_match(out, "rollout web is Healthy on web:2 %(stable ReplicaSet h%-web%-2%)")
    -- one promote, as kubectl argo rollouts promote sends it: the pause
    -- conditions cleared through the status subresource, nothing else
    assert_eq(promotes(k), { 'rollouts/web/status {"status":{"pauseConditions":null}}' })
    -- the journal has the promote as an action of its own
    local show = relish { "show", "last", "--state", support.state(dir) }
    assert_match(show.stdout, "promote rollouts%.argoproj%.io/web in default at step 2/4")
    -- the same image again: nothing to do
    r = release(k, dir, "", "web:2")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "rollout web already runs web:2: nothing to roll")
  end)

  test("a spec.paused Rollout is unpaused as kubectl does: status patch first, then spec", function()
    local k <close> = start()
    world(k, { canary = { steps = { { setWeight = 50 } } } })
    local code = k:json("PATCH", PATH, { body = '{"spec":{"paused":true}}',
      headers = { ["Content-Type"] = "application/merge-patch+json" } })
    assert_eq(code, 200)
    local dir = tmpdir()
    local r = release(k, dir, "", "web:2", {})
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "promote rollouts%.argoproj%.io/web in default at step 1/1 %(spec%.paused%)")
    -- no pause condition: the step index goes one on, as kubectl's promote
    assert_eq(promotes(k), { 'rollouts/web/status {"status":{"currentStepIndex":1,"pauseConditions":null}}',
      'rollouts/web {"spec":{"paused":false}}' })
    eventually_healthy_on(k, "web:2")
    assert_eq(k:get(PATH).spec.paused, false)
  end)

  test("promote = full at the first pause: promoteFull, no other step", function()
    local k <close> = start()
    world(k)
    local dir = tmpdir()
    local r = release(k, dir, [[promote = "full"]], "web:2", {})
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "promote fully rollouts%.argoproj%.io/web in default at step 2/4 %(CanaryPauseStep%)")
    assert_eq(promotes(k), { 'rollouts/web/status {"status":{"promoteFull":true}}' })
    eventually_healthy_on(k, "web:2")
    assert_nil(r.stdout:find("step 3/4", 1, true), "no step after the full promotion")
  end)

  test("blue-green with auto-promotion off: the pre-promotion pause is promoted", function()
    local k <close> = start()
    world(k, { blueGreen = { activeService = "web", autoPromotionEnabled = false } })
    local dir = tmpdir()
    local r = release(k, dir, "", "web:2", {})
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "argo rollout web: web:1 %-> web:2, blue%-green, promote auto")
    assert_match(r.stdout, "promote rollouts%.argoproj%.io/web in default at its pre%-promotion pause %(BlueGreenPause%)")
    assert_eq(promotes(k), { 'rollouts/web/status {"status":{"pauseConditions":null}}' })
    eventually_healthy_on(k, "web:2")
  end)
end)

describe("argo: failures roll back", function()
  test("Degraded fails the step with Argo's message; the rollback puts the template back", function()
    local k <close> = start()
    world(k)
    local dir = tmpdir()
    local r = release(k, dir, "", "web:bad", { degrade_at = 2 })
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    local out = r.stdout .. r.stderr
    assert_match(out, 'rollout web in default is Degraded: ProgressDeadlineExceeded: ReplicaSet "web%-h%-web%-bad" ' ..
      "has timed out progressing%.")
    assert_match(out, "the rollback puts the template of rollout web back")
    -- the promote at step 2 happened (a decision, not taken back: it says so)
    assert_eq(promotes(k), { 'rollouts/web/status {"status":{"pauseConditions":null}}' })
    assert_match(out, "promote at step 2/4 %(CanaryPauseStep%) of rollout web in default is not taken back")
    local ro = k:get(PATH)
    assert_eq(image(ro), "web:1")
    assert_eq(ro.spec.paused, nil)
    -- the stable template back: Argo's rollback, at once
    eventually_healthy_on(k, "web:1")
    local s = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(dir) }.stdout)
    assert_eq(s.status, "rolled_back", s)
  end)

  test("an abort by someone (kubectl argo rollouts abort) fails the run, which rolls back", function()
    local k <close> = start()
    world(k)
    local dir = tmpdir()
    local r = release(k, dir, "", "web:2", { abort_at = 1 })
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    -- (Argo's message when its controller got there first)
    assert_match(r.stdout .. r.stderr, "rollout web in default was aborted")
    assert_eq(promotes(k), {})
    eventually_healthy_on(k, "web:1")
  end)

  test("no controller: a timeout with what was last seen", function()
    local k <close> = start()
    world(k)
    local dir = tmpdir()
    local f = support.recipe(dir, "release.lua", string.format(RECIPE, ""):gsub('timeout = "30s"', 'timeout = "1s"'))
    local r = relish { "run", f, "-p", "kubeconfig=" .. k.kubeconfig, "-p", "image=web:2", "--state",
      support.state(dir), input = "" }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout .. r.stderr, "rollout web in default is not Healthy on the new template after 1s " ..
      "%(Argo Rollouts never observed the new generation%)")
    assert_eq(image(k:get(PATH)), "web:1")
  end)
end)

describe("argo: a background analysis (real Prometheus)", function()
  local pf = require "prom_fixture"
  test("failing during Argo's timed pause: the run fails at once, no promote, the template back", function()
    if not pf.available() then skip("prometheus is not installed") end
    local k <close> = start()
    world(k, { canary = { steps = { { setWeight = 25 }, { pause = { duration = "60s" } }, { setWeight = 50 } } } })
    local ex <close> = pf.exporter()
    ex:set { requests = { { code = "200", version = "v2", value = 500 }, { code = "500", version = "v2", value = 500 } } }
    local p <close> = pf.prometheus { targets = { exporter = ex.target } }
    local metrics = require "relish.metrics"
    local prom = metrics.prometheus { url = p.url }
    pf.eventually("the first scrape", function() return #prom:query('http_requests_total{version="v2"}').series == 2 end)
    local dir = tmpdir()
    local opts = string.format([[prometheus = require("relish.metrics").prometheus { url = %q },
      analysis = { interval = "1s", initial_delay = "1s", args = { version = "v2" }, metrics = {
        { name = "error-rate", success = require("relish.metrics").below(0.05),
          query = 'sum(http_requests_total{version="{{args.version}}",code="500"}) / sum(http_requests_total{version="{{args.version}}"})' } } }]],
      p.url)
    local started = host.now()
    local r = release(k, dir, opts, "web:2", {})
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    local out = r.stdout .. r.stderr
    assert_match(out, "rollout web paused at step 2/3 %(pause 60s%): Argo resumes it after 60s")
    assert_match(out, "error%-rate  0%.5  < 0%.05  ✗")
    assert_match(out, "abort: analysis failed")
    assert_true(host.now() - started < 30, "not the whole pause")
    assert_eq(promotes(k), {})
    eventually_healthy_on(k, "web:1")
  end)
end)

describe("argo: a person at the pause", function()
  test("promote = gate pauses the run at the Rollout's pause; relish resume promotes", function()
    local k <close> = start()
    world(k)
    local dir = tmpdir()
    local ctl = task.spawn(controller, k, {})
    local guard <close> = setmetatable({}, { __close = function() ctl:cancel() end })
    local f = support.recipe(dir, "release.lua", string.format(RECIPE, [[promote = "gate"]]))
    local r = relish { "run", f, "-p", "kubeconfig=" .. k.kubeconfig, "-p", "image=web:2", "--state",
      support.state(dir), input = "" }
    if r.code == 1 and (r.stdout .. r.stderr):find("a manual gate needs ctx.decide", 1, true) then
      assert_eq(image(k:get(PATH)), "web:1") -- rolled back
      skip("this relish has no ctx.decide")
    end
    assert_eq(r.code, 5, r.stdout .. r.stderr)
    assert_match(r.stdout, "rollout web paused at step 2/4 %(CanaryPauseStep%): promote%?")
    assert_eq(promotes(k), {})
    assert_eq(k:get(PATH).status.phase, "Paused")
    local id = r.stdout:match("%(run ([%w-]+)%)")
    r = relish { "resume", id, "--state", support.state(dir), input = "" }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "rollout web has the new template already: waiting again")
    assert_eq(promotes(k), { 'rollouts/web/status {"status":{"pauseConditions":null}}' })
    eventually_healthy_on(k, "web:2")
  end)
end)

describe("argo: dry-run and misuse", function()
  test("a dry-run plans the template and a promote at each pause, changes nothing", function()
    local k <close> = start()
    world(k)
    local writes = k:control("GET", "/stats").writes
    local dir = tmpdir()
    local r = release(k, dir, "", "web:2", nil, "--dry-run")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local out = r.stdout
    for _, want in ipairs {
      "update rollouts%.argoproj%.io/web in default",
      "%-%s+%- image: web:1",
      "%+%s+%- image: web:2",
      "step 1/4: setWeight 25",
      "step 2/4: pause for a person",
      "promote rollouts%.argoproj%.io/web in default at step 2/4 %(CanaryPauseStep%)",
      "step 3/4: setWeight 50",
      "step 4/4: pause 1s: Argo resumes it",
      "would wait for rollout web to be Healthy on web:2",
    } do
      assert_match(out, want)
    end
    r = release(k, dir, [[promote = "gate"]], "web:2", nil, "--dry-run")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "would wait for a person: rollout web paused at step 2/4 %(CanaryPauseStep%): promote%?")
    assert_eq(k:control("GET", "/stats").writes, writes)
    assert_eq(image(k:get(PATH)), "web:1")
    assert_eq(promotes(k), {})
  end)

  test("misuse raises at the caller, before anything is read or written", function()
    local k <close> = start()
    world(k)
    local dir = tmpdir()
    local r = release(k, dir, [[promote = "maybe"]], "web:2")
    assert_eq(r.code, 1)
    assert_match(r.stdout .. r.stderr, 'strategy%.argo: promote must be "auto", "gate" or "full", got maybe')
    r = release(k, dir, [[rollot = "x"]], "web:2")
    assert_match(r.stdout .. r.stderr, "strategy%.argo: unknown option 'rollot' %(did you mean 'rollout'%?%)")
    r = release(k, dir, [[container = "nope"]], "web:2")
    assert_match(r.stdout .. r.stderr, "strategy%.argo: the pod template has no container 'nope'")
    r = release(k, dir, [[analysis = "yes"]], "web:2")
    assert_match(r.stdout .. r.stderr, "strategy%.argo: analysis must be a table of metrics%.analyze options")
    assert_eq(image(k:get(PATH)), "web:1")
    assert_eq(k:get(PATH).metadata.generation, 1)
    -- at the caller's line (here, in this process)
    local strategy = require "relish.strategy"
    local c = require("relish.k8s").connect { kubeconfig = k.kubeconfig }
    local ctx = { log = function() end, state = {} }
    local here = debug.getinfo(1, "S").short_src
    for _, o in ipairs {
      { client = c, rollout = "web", image = "web:2", promote = "maybe" },
      { client = c, rollot = "web", image = "web:2" },
      { client = c, rollout = "web", image = "web:2", container = "nope" },
      { client = "c", rollout = "web", image = "web:2" },
      { client = c, image = "web:2" },
    } do
      local line = debug.getinfo(1, "l").currentline + 1
      local ok, err = pcall(function() strategy.argo(ctx, o) end)
      assert_false(ok)
      assert_eq(err:sub(1, #here + 1 + #tostring(line) + 16), here .. ":" .. line .. ": strategy.argo:", err)
    end
  end)
end)
