-- relish.strategy: progressive delivery on relish.k8s, relish.metrics and
-- relish.task: rolling updates, canaries (with Argo Rollouts' step
-- vocabulary and a choice of traffic routers) and blue/green, each a
-- function a recipe's step calls with its ctx. Every change is a k8s effect
-- (journaled with its pre-image, planned in a dry-run, undone by a
-- rollback), so an abort is the run's rollback: it never measures again,
-- it puts back what the run changed, newest first. See
-- docs/reference/strategy.md.
local errors = require "relish._errors"
local json = require "relish.json"
local task = require "relish.task"
local host = require "relish._host"
local common = require "relish.strategy.common"

local M = {}
local usage = common.usage
local routers = require "relish.strategy.routers"
M.replicas, M.nginx, M.gateway = routers.replicas, routers.nginx, routers.gateway
M.argo = function(ctx, o) return require("relish.strategy.argo").argo(ctx, o) end

local copy, seconds, same, span = common.copy, common.seconds, common.same, common.span
local images_of, begin, fetch, say, decide = common.images_of, common.begin, common.fetch, common.say, common.decide
local analysis_spec, pause_for, metrics_analyze, beside =
  common.analysis_spec, common.pause_for, common.metrics_analyze, common.beside

-- version_of(image) -> its tag as a label value ("web:1.4.2" -> "1.4.2",
-- a digest's hex, else "latest"): what a canary's pods and their metrics
-- are told apart by
function M.version_of(image)
  if type(image) ~= "string" then usage("strategy.version_of", "expected an image (a string), got " .. type(image)) end
  local tag = image:match(":([^:/@]+)$") or image:match("@sha256:(%x+)$") or "latest"
  return (tag:gsub("[^%w._-]", "-"):sub(1, 63))
end

local function deploy_ref(name) return "deployments/" .. name end

local settle = common.settle

-- ---- rolling -------------------------------------------------------------------------

local ROLLING_OPTS = { analysis = true }

-- rolling(ctx, {client=, deployment=, image=|images=|labels=|template=,
-- namespace=, analysis=, timeout=, prometheus=}) -> {phase=, revision=}
function M.rolling(ctx, o)
  local S = fetch(begin("strategy.rolling", ctx, o, ROLLING_OPTS))
  if same(S.template, S.stable.spec.template) then
    say(S, "deployment %s already runs %s: nothing to roll", S.name, images_of(S.template))
    return { phase = "unchanged" }
  end
  say(S, "rolling update of deployment %s: %s -> %s", S.name, images_of(S.stable.spec.template), images_of(S.template))
  S.c:update_with_retry(deploy_ref(S.name), function(d) d.spec.template = copy(S.template) end, { namespace = S.ns })
  local a = S.o.analysis
  if a and not S.dry then
    -- the analysis runs its count beside the rollout; both must pass
    task.parallel({ function() settle(S, S.name) end, function() metrics_analyze(analysis_spec(S, a)) end })
  else
    if a then metrics_analyze(analysis_spec(S, a, 1)) end
    settle(S, S.name)
  end
  say(S, "deployment %s rolled out: %s", S.name, images_of(S.template))
  return { phase = "successful" }
end

-- ---- canary --------------------------------------------------------------------------

local CANARY_OPTS = { steps = true, router = true, analysis = true, canary_name = true }
local STEP_KEYS = { set_weight = true, pause = true, analysis = true }

local function check_steps(fname, steps)
  if steps == nil then return { { set_weight = 20 }, { pause = "1m" }, { set_weight = 50 }, { pause = "1m" } } end
  if type(steps) ~= "table" then usage(fname, "steps must be a list") end
  for i, st in ipairs(steps) do
    if type(st) ~= "table" then usage(fname, string.format("steps[%d] must be a table", i)) end
    local n = 0
    for k in pairs(st) do
      if not STEP_KEYS[k] then
        usage(fname, string.format("steps[%d]: unknown step '%s' (set_weight, pause or analysis)", i, tostring(k)))
      end
      n = n + 1
    end
    if n ~= 1 then usage(fname, string.format("steps[%d] must be one of set_weight, pause or analysis", i)) end
    local w = st.set_weight
    if w ~= nil and (type(w) ~= "number" or w < 0 or w > 100 or w ~= w) then
      usage(fname, string.format("steps[%d]: set_weight must be a number from 0 to 100", i))
    end
    if st.pause ~= nil and st.pause ~= true then seconds(fname, st.pause, string.format("steps[%d].pause", i)) end
  end
  return steps
end

local function step_text(st)
  if st.set_weight then return "set_weight " .. st.set_weight end
  if st.pause == true then return "pause for a person" end
  if st.pause then return "pause " .. tostring(st.pause) end
  return "analysis"
end

-- canary(ctx, {client=, deployment=, image=..., steps=, router=, analysis=,
-- namespace=, canary_name=, timeout=, prometheus=}) -> {phase=, weight=}
function M.canary(ctx, o)
  local S = begin("strategy.canary", ctx, o, CANARY_OPTS)
  local steps = check_steps(S.fname, S.o.steps)
  local router = S.o.router or routers.replicas()
  if type(router) ~= "table" or type(router.set_weight) ~= "function" then
    usage(S.fname, "router must be strategy.replicas(), strategy.nginx{...} or strategy.gateway{...}")
  end
  if S.o.canary_name ~= nil and (type(S.o.canary_name) ~= "string" or S.o.canary_name == "") then
    usage(S.fname, "canary_name must be a non-empty string")
  end
  fetch(S)
  S.canary = S.o.canary_name or (S.name .. "-canary")
  S.router = router
  -- a resumed run (after a pause or a crash) finds its canary: the stable
  -- size from before is kept on it, the weights having scaled the stable
  -- Deployment down
  local twin = routers.ours(S, "deployments/" .. S.canary)
  local before = twin and tonumber((twin.metadata.annotations or {})["relish.dev/stable-replicas"])
  if before then S.R = math.tointeger(before) or S.R end
  -- where a resumed run was (the steps before are done)
  local key = "canary:" .. S.c.server .. "/" .. S.ns .. "/" .. S.name
  ctx.state[key] = ctx.state[key] or { step = 0 }
  local mine = ctx.state[key]
  if same(S.template, S.stable.spec.template) then
    if not twin then
      say(S, "deployment %s already runs %s: no canary", S.name, images_of(S.template))
      return { phase = "unchanged" }
    end
    -- stopped during the promotion: finish it
    say(S, "deployment %s already runs %s, its canary %s is still there: finishing the promotion", S.name,
      images_of(S.template), S.canary)
    router:setup(S)
    router:promote(S)
    mine.step = #steps
    say(S, "canary of %s promoted: %s", S.name, images_of(S.template))
    return { phase = "promoted" }
  end
  say(S, "canary of deployment %s: %s -> %s, %d replicas, router %s, %d steps", S.name,
    images_of(S.stable.spec.template), images_of(S.template), S.R, router.name, #steps)
  router:setup(S)
  local function forward()
    for i = mine.step + 1, #steps do
      local st = steps[i]
      say(S, "step %d/%d: %s", i, #steps, step_text(st))
      local ok, err = pcall(function()
        if st.set_weight then
          local w = router:set_weight(S, st.set_weight)
          say(S, "weight %s%% on %s%s", st.set_weight, S.canary, w and ("  (" .. w .. ")") or "")
        elseif st.pause == true then
          decide(S, string.format("%s:step%d", key, i),
            string.format("canary %s at step %d/%d: promote?", S.canary, i, #steps))
        elseif st.pause then
          pause_for(S, seconds(S.fname, st.pause, "pause"))
        else
          local r, aerr = errors.try(metrics_analyze, analysis_spec(S, st.analysis))
          if not r then
            if type(aerr) == "table" and aerr.result and aerr.result.phase == "inconclusive" then
              decide(S, string.format("%s:step%d", key, i),
                string.format("analysis of canary %s inconclusive at step %d/%d: promote anyway?", S.canary, i, #steps))
            else
              error(aerr, 0)
            end
          end
        end
      end)
      if not ok then
        -- stopped from outside (the background analysis failed, a signal): as is
        -- or waiting for a person (the run pauses; it is not an abort)
        if type(err) == "table" and (err.kind == "cancelled" or err.kind == "interrupted" or err.kind == "paused") then
          error(err, 0)
        end
        local e = type(err) == "table" and copy(err) or errors.value("failed", "%s", tostring(err))
        e.message = string.format("canary %s aborted at step %d/%d (%s): %s", S.canary, i, #steps, step_text(st),
          tostring(e.message or err))
        say(S, "abort: %s; the rollback puts the traffic back on %s", e.message, S.name)
        error(setmetatable(e, errors.MT), 0)
      end
      mine.step = i
    end
  end
  local ok, err = pcall(beside, S, S.o.analysis, forward)
  if not ok then
    if type(err) == "table" and err.kind == "analysis" and not tostring(err.message):find("aborted at step", 1, true) then
      local e = copy(err)
      e.message = string.format("canary %s aborted by its background analysis: %s", S.canary, tostring(err.message))
      say(S, "abort: %s; the rollback puts the traffic back on %s", e.message, S.name)
      err = setmetatable(e, errors.MT)
    end
    error(err, 0)
  end
  say(S, "promote: %s becomes the stable version of %s", images_of(S.template), S.name)
  router:promote(S)
  mine.step = #steps
  say(S, "canary of %s promoted: %s", S.name, images_of(S.template))
  return { phase = "promoted" }
end

-- ---- blue/green ----------------------------------------------------------------------

local BG_OPTS = { active_service = true, preview_service = true, pre_promotion = true, post_promotion = true,
  scale_down_delay = true, auto_promote = true, preview_name = true }

local PREVIEW_LABEL = "relish.dev/preview"

-- blue_green(ctx, {client=, deployment=, image=..., active_service=,
-- preview_service=, pre_promotion=, post_promotion=, scale_down_delay="30s",
-- auto_promote=true, namespace=, timeout=, prometheus=}) -> {phase=}
function M.blue_green(ctx, o)
  local S = begin("strategy.blue_green", ctx, o, BG_OPTS)
  local fname, c, ns = S.fname, S.c, S.ns
  if type(S.o.active_service) ~= "string" then usage(fname, "active_service must be a Service's name") end
  if S.o.preview_service ~= nil and type(S.o.preview_service) ~= "string" then
    usage(fname, "preview_service must be a Service's name")
  end
  local delay = S.o.scale_down_delay == nil and 30 or seconds(fname, S.o.scale_down_delay, "scale_down_delay")
  if S.o.preview_name ~= nil and (type(S.o.preview_name) ~= "string" or S.o.preview_name == "") then
    usage(fname, "preview_name must be a non-empty string")
  end
  if S.o.auto_promote ~= nil and type(S.o.auto_promote) ~= "boolean" then
    usage(fname, "auto_promote must be true or false, got " .. type(S.o.auto_promote))
  end
  fetch(S)
  local preview = S.o.preview_name or (S.name .. "-preview")
  local active = c:get("services/" .. S.o.active_service, { namespace = ns })
  local twin = routers.ours(S, "deployments/" .. preview) -- a resumed run's
  local before = twin and tonumber((twin.metadata.annotations or {})["relish.dev/stable-replicas"])
  if before then S.R = math.tointeger(before) or S.R end
  local function finish()
    -- the new version becomes the Deployment's own while the Service still
    -- sends everything to the preview; then the selectors are given back
    -- and the preview goes
    c:update_with_retry(deploy_ref(S.name), function(x) x.spec.template = copy(S.template) end, { namespace = ns })
    settle(S, S.name)
    c:patch("services/" .. S.o.active_service,
      { spec = { selector = { [PREVIEW_LABEL] = json.null, ["pod-template-hash"] = json.null } } },
      { namespace = ns, type = "merge" })
    if S.o.preview_service then
      c:patch("services/" .. S.o.preview_service, { spec = { selector = { [PREVIEW_LABEL] = json.null } } },
        { namespace = ns, type = "merge" })
    end
    c:delete(deploy_ref(preview), { namespace = ns, timeout = S.timeout })
  end
  if same(S.template, S.stable.spec.template) then
    if not twin then
      say(S, "deployment %s already runs %s: nothing to switch", S.name, images_of(S.template))
      return { phase = "unchanged" }
    end
    say(S, "deployment %s already runs %s, its preview %s is still there: finishing", S.name, images_of(S.template),
      preview)
    finish()
    say(S, "blue/green of %s done: %s serves %s", S.name, S.name, images_of(S.template))
    return { phase = "promoted" }
  end
  routers.check_selects(S, S.o.active_service, active.spec.selector, { [PREVIEW_LABEL] = S.name })
  say(S, "blue/green of deployment %s: %s (active) -> %s (preview %s), service %s", S.name,
    images_of(S.stable.spec.template), images_of(S.template), preview, S.o.active_service)
  -- the active Service pinned to the stable pods first: the preview's pods
  -- carry the same app labels and must not get users' requests yet
  local switched = (active.spec.selector or {})[PREVIEW_LABEL] == S.name
  if not switched then
    local hash = routers.stable_hash(S)
    if (active.spec.selector or {})["pod-template-hash"] ~= hash then
      c:patch("services/" .. S.o.active_service, { spec = { selector = { ["pod-template-hash"] = hash } } },
        { namespace = ns })
      say(S, "service %s pinned to the active pods (pod-template-hash %s)", S.o.active_service, hash)
    end
  end
  -- the preview: the new template at full size beside the active version
  routers.create(S, routers.twin(S, preview, PREVIEW_LABEL, S.name, S.R))
  settle(S, preview)
  say(S, "preview %s ready: %d pods of %s", preview, S.R, images_of(S.template))
  if S.o.preview_service then
    c:patch("services/" .. S.o.preview_service, { spec = { selector = { [PREVIEW_LABEL] = S.name } } }, { namespace = ns })
    say(S, "service %s -> preview pods", S.o.preview_service)
  end
  if not switched then
    if S.o.pre_promotion then
      say(S, "pre-promotion analysis")
      metrics_analyze(analysis_spec(S, S.o.pre_promotion))
    end
    if S.o.auto_promote == false then
      decide(S, "blue_green:" .. ns .. "/" .. S.name, string.format("switch service %s to %s?", S.o.active_service,
        images_of(S.template)))
    end
    -- the switch: the active selector takes the preview's label instead of
    -- the stable pods' hash, so only preview pods match; the old pods stay
    -- ready for an instant abort
    c:patch("services/" .. S.o.active_service,
      { spec = { selector = { [PREVIEW_LABEL] = S.name, ["pod-template-hash"] = json.null } } },
      { namespace = ns, type = "merge" })
  end
  say(S, "switch: service %s -> %s (%s); %s kept ready for %s", S.o.active_service, preview, images_of(S.template),
    S.name, span(delay))
  local started = host.now()
  if S.o.post_promotion then
    say(S, "post-promotion analysis")
    metrics_analyze(analysis_spec(S, S.o.post_promotion))
  end
  local left = delay - (host.now() - started)
  if left > 0 then pause_for(S, left, " (scale-down delay: the old version stays ready)") end
  finish()
  say(S, "blue/green of %s done: %s serves %s", S.name, S.name, images_of(S.template))
  return { phase = "promoted" }
end

-- ---- release waves ---------------------------------------------------------------

local WAVES_OPTS = { waves = true, release = true, connect = true, kubeconfig = true, parallel = true, bake = true,
  rollback = true }

-- waves(ctx, {waves = {{"staging"}, {"eu-1", "eu-2"}, ...}, release =
-- function(client, cluster, ctx) (ctx: the step's, its log lines prefixed
-- with the cluster), connect = function(cluster) -> client (default:
-- the kubeconfig's context of that name), kubeconfig=, parallel = 2,
-- bake = "10m", rollback = "wave" | "all"}) -> {waves = n}
-- Wave by wave, the clusters of a wave at once (at most `parallel`), a bake
-- time between waves; the first failure halts everything: the failed wave
-- is rolled back, the earlier waves kept (rollback = "all": every wave).
function M.waves(ctx, o)
  local fname = "strategy.waves"
  if type(ctx) ~= "table" or type(ctx.log) ~= "function" then usage(fname, "expected the step's ctx as the first argument") end
  o = errors.check_options(usage, fname, o, WAVES_OPTS)
  if type(o.waves) ~= "table" or #o.waves == 0 then usage(fname, "waves must be a non-empty list of lists of clusters") end
  local seen = {}
  for i, wave in ipairs(o.waves) do
    if type(wave) ~= "table" or #wave == 0 then usage(fname, string.format("waves[%d] must be a non-empty list of clusters", i)) end
    for _, name in ipairs(wave) do
      if type(name) ~= "string" or name == "" then usage(fname, string.format("waves[%d]: a cluster is a non-empty string", i)) end
      if seen[name] then usage(fname, string.format("cluster %s is in two waves", name)) end
      seen[name] = true
    end
  end
  if type(o.release) ~= "function" then usage(fname, "release must be a function(client, cluster)") end
  if o.connect ~= nil and type(o.connect) ~= "function" then usage(fname, "connect must be a function(cluster) -> client") end
  local limit = o.parallel or 2
  if math.type(limit) ~= "integer" or limit < 1 then usage(fname, "parallel must be a positive integer") end
  local bake = seconds(fname, o.bake, "bake")
  local mode = o.rollback or "wave"
  if mode ~= "wave" and mode ~= "all" then usage(fname, 'rollback must be "wave" or "all"') end
  local connect = o.connect or function(name)
    return require("relish.k8s").connect { kubeconfig = o.kubeconfig, context = name }
  end
  local S = { ctx = ctx, dry = ctx.dry_run and true or false }
  for wi, wave in ipairs(o.waves) do
    say(S, "wave %d/%d: %s", wi, #o.waves, table.concat(wave, ", "))
    local mark = ctx.savepoint and ctx.savepoint()
    local fns = {}
    for _, name in ipairs(wave) do
      -- the cluster's own ctx: its log lines say which cluster they are of
      local cctx = setmetatable({ log = function(fmt, ...)
        if select("#", ...) > 0 then fmt = string.format(fmt, ...) end
        ctx.log("[%s] %s", name, fmt)
      end }, { __index = ctx })
      fns[#fns + 1] = function()
        local ok, err = pcall(function() o.release(connect(name), name, cctx) end)
        if not ok then
          if type(err) == "table" and (err.kind == "cancelled" or err.kind == "paused") then error(err, 0) end
          local e = type(err) == "table" and copy(err) or errors.value("failed", "%s", tostring(err))
          e.message = string.format("cluster %s: %s", name, tostring(e.message or err))
          error(setmetatable(e, errors.MT), 0)
        end
        say(S, "cluster %s: released", name)
      end
    end
    local ok, err = pcall(task.parallel, fns, { limit = limit })
    if not ok then
      if type(err) == "table" and (err.kind == "interrupted" or err.kind == "paused") then error(err, 0) end
      local e = type(err) == "table" and copy(err) or errors.value("failed", "%s", tostring(err))
      local why = tostring(e.message or err)
      if mode == "all" or wi == 1 or not mark then
        say(S, "wave %d/%d failed: %s; halting, every wave is rolled back", wi, #o.waves, why)
        e.message = string.format("wave %d/%d failed: %s", wi, #o.waves, why)
        error(setmetatable(e, errors.MT), 0)
      end
      say(S, "wave %d/%d failed: %s; halting, rolling back wave %d, keeping waves 1-%d", wi, #o.waves, why, wi, wi - 1)
      local status, left = ctx.rollback_to(mark, string.format("wave %d/%d failed", wi, #o.waves))
      e.message = string.format("wave %d/%d failed: %s; its changes were rolled back%s, waves 1-%d are kept " ..
        "(relish rollback %s undoes them too)", wi, #o.waves, why,
        status == "complete" and "" or (" INCOMPLETELY (" .. #left .. " left)"), wi - 1, ctx.run_id)
      e.keep_done = true
      e.rollback_incomplete = status ~= "complete" or nil
      error(setmetatable(e, errors.MT), 0)
    end
    if wi < #o.waves and bake then pause_for(S, bake, string.format(" (bake time after wave %d)", wi)) end
  end
  say(S, "all %d waves released", #o.waves)
  return { waves = #o.waves }
end

M._span = span
return M
