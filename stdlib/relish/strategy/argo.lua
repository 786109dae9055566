-- relish.strategy.argo: scripting around an existing Argo Rollouts Rollout.
-- The new pod template is a k8s effect (its undo puts the old one back,
-- which Argo takes as a rollback to the stable ReplicaSet); relish then
-- follows the status the Argo controller writes and, where the Rollout
-- pauses, promotes it as `kubectl argo rollouts promote` does, each promote
-- an effect of its own kind (a decision: nothing to take back). See
-- docs/reference/strategy-argo.md.
local errors = require "relish._errors"
local json = require "relish.json"
local effect = require "relish.effect"
local host = require "relish._host"
local common = require "relish.strategy.common"

local M = {}
local usage, fail, copy, say = common.usage, common.fail, common.copy, common.say
local images_of, span = common.images_of, common.span

local ROLLOUT = { option = "rollout", ref = "rollouts.argoproj.io/", kind = "Rollout",
  no_template = " (a Rollout with a workloadRef: release its Deployment's template instead)" }
local MERGE = "application/merge-patch+json"

-- ---- the promote effect ----------------------------------------------------------

-- apply: the patches kubectl argo rollouts promote sends, status first
local function send_patches(a)
  local out
  for _, p in ipairs(a.patches) do
    out = a.client:send("PATCH", p.path, { body = p.body, content_type = MERGE, what = a.what })
  end
  return out and out.body ~= "" and json.decode(out.body) or true
end

effect.register {
  kind = "argo.promote", module = "relish.strategy.argo", fields = { "rollout", "namespace", "promote" },
  apply = send_patches,
  plan = function() return true end,
  -- a promotion is a decision the Rollout acted on: relish cannot take it
  -- back; the undo of the template (an earlier action) is the rollback
  undo = function(rec)
    return { note = string.format("%s of rollout %s in %s is not taken back (a decision): the template's undo " ..
      "rolls the Rollout back", tostring(rec.promote), tostring(rec.rollout), tostring(rec.namespace)) }
  end,
}

local function int(v) return math.type(v) == "integer" and v or (type(v) == "number" and math.tointeger(v)) or nil end

local function list(v) return type(v) == "table" and v or {} end

local function canary_steps(r)
  local c = r.spec and r.spec.strategy and r.spec.strategy.canary
  return type(c) == "table" and list(c.steps) or nil
end

-- The patches of kubectl argo rollouts promote [--full] for the Rollout r
-- (its getPatches): {spec=, status=}, each a table or nil.
local function promote_patches(r, full)
  local st, spec = type(r.status) == "table" and r.status or {}, r.spec or {}
  if full then
    if st.currentPodHash ~= st.stableRS then return { status = { status = { promoteFull = true } } } end
    return {}
  end
  local out = {}
  if spec.paused == true then out.spec = { spec = { paused = false } } end
  local steps = canary_steps(r)
  if #list(st.pauseConditions) > 0 then
    out.status = { status = { pauseConditions = json.null } }
  elseif steps and #steps > 0 then
    -- no pause condition: the step the Rollout is at is skipped
    local idx = int(st.currentStepIndex) or 0
    if idx < #steps then idx = idx + 1 end
    out.status = { status = { pauseConditions = json.null, currentStepIndex = idx } }
  end
  return out
end

-- runs the promote of r as an argo.promote action; where says at which
-- pause ("at step 2/4 (CanaryPauseStep)"), fp is the pause's signature
local function promote(S, r, full, where, fp)
  local p = promote_patches(r, full)
  if not p.spec and not p.status then return end
  local path = S.c:path(ROLLOUT.ref .. S.name, { namespace = S.ns })
  local patches, lines = {}, {}
  if p.status then
    patches[#patches + 1] = { path = path .. "/status", body = json.encode(p.status) }
  end
  if p.spec then patches[#patches + 1] = { path = path, body = json.encode(p.spec) } end
  for _, x in ipairs(patches) do lines[#lines + 1] = "PATCH " .. x.path .. " " .. x.body end
  local verb = full and "promote fully" or "promote"
  local what = string.format("%s rollouts.argoproj.io/%s in %s %s", verb, S.name, S.ns, where)
  return effect.run("argo.promote", {
    target = S.c.server .. path, describe = what, detail = table.concat(lines, "\n"), fingerprint = fp,
    record = { rollout = S.name, namespace = S.ns, promote = verb .. " " .. where },
  }, { client = S.c, patches = patches, what = what })
end

-- ---- reading the Rollout's status --------------------------------------------------

-- the weight of the canary as Argo's GetCurrentSetWeight (or the one its
-- traffic router reports)
local function weight(r, steps)
  local st = r.status or {}
  local routed = type(st.canary) == "table" and type(st.canary.weights) == "table"
    and type(st.canary.weights.canary) == "table" and int(st.canary.weights.canary.weight)
  if routed then return routed end
  if st.abort == true then return 0 end
  local idx = int(st.currentStepIndex) or 0
  if #steps == 0 or idx >= #steps then return 100 end
  for i = idx + 1, 1, -1 do
    local w = int(steps[i].setWeight)
    if w then return w end
  end
  return 0
end

local function step_text(st)
  if type(st) ~= "table" then return "" end
  if st.setWeight ~= nil then return "setWeight " .. tostring(st.setWeight) end
  if type(st.pause) == "table" then
    return st.pause.duration ~= nil and ("pause " .. tostring(st.pause.duration)) or "pause for a person"
  end
  for k in pairs(st) do return k end
  return ""
end

local function timed(st) return type(st) == "table" and type(st.pause) == "table" and st.pause.duration ~= nil end

local function reasons(st)
  local out = {}
  for _, c in ipairs(list(st.pauseConditions)) do out[#out + 1] = tostring(type(c) == "table" and c.reason) end
  return out
end

local function has(t, v)
  for _, x in ipairs(t) do if x == v then return true end end
  return false
end

-- where the Rollout is, for the log: "step 2/4 (pause for a person)"
local function position(r, steps)
  local idx = int((r.status or {}).currentStepIndex)
  if not steps or #steps == 0 or not idx then return nil end
  if idx >= #steps then return string.format("step %d/%d (done)", #steps, #steps) end
  return string.format("step %d/%d (%s)", idx + 1, #steps, step_text(steps[idx + 1]))
end

-- ---- waiting ------------------------------------------------------------------------

-- One look at the Rollout r. Raises rollout_failed when it failed; returns
-- {done=} when it is Healthy on the new template, {pause=} when a pause
-- needs relish, nil to keep waiting.
local function look(S, W, r)
  local st = type(r.status) == "table" and r.status or {}
  local gen = r.metadata and r.metadata.generation
  if tostring(st.observedGeneration) ~= tostring(gen) then
    host.progress_detail(string.format("waiting for Argo Rollouts to observe generation %s", tostring(gen)))
    return nil
  end
  local steps = canary_steps(r)
  local phase = tostring(st.phase or "Progressing")
  local msg = type(st.message) == "string" and st.message ~= "" and st.message or nil
  local pos = position(r, steps)
  local w = steps and weight(r, steps) or nil
  local line = string.format("rollout %s: %s%s%s%s", S.name, phase, pos and (", " .. pos) or "",
    w and string.format(", weight %d%%", w) or "", msg and (": " .. msg) or "")
  W.message = line
  host.progress_detail(line)
  local key = phase .. "|" .. tostring(pos) .. "|" .. tostring(w)
  if key ~= W.last then
    W.last = key
    say(S, "%s", line)
  end
  if not common.same(r.spec.template, S.written) then
    fail("rollout_failed", "the template of rollout %s in %s was changed by someone else while relish waited (%s)",
      S.name, S.ns, images_of(r.spec.template))
  end
  if st.abort == true then
    -- Argo's message once its controller took the abort in (Degraded)
    fail("rollout_failed", "rollout %s in %s was aborted%s", S.name, S.ns,
      phase == "Degraded" and msg and (": " .. msg) or " (status.abort)")
  end
  if phase == "Degraded" then
    fail("rollout_failed", "rollout %s in %s is Degraded%s", S.name, S.ns, msg and (": " .. msg) or "")
  end
  if phase == "Healthy" and st.currentPodHash ~= nil and st.currentPodHash == st.stableRS then
    return { done = st.stableRS }
  end
  local why = reasons(st)
  if #why == 0 and r.spec.paused ~= true then return nil end
  -- the pause relish acts on once: its signature
  local conds = {}
  for _, c in ipairs(list(st.pauseConditions)) do
    conds[#conds + 1] = tostring(type(c) == "table" and c.reason) .. "@" .. tostring(type(c) == "table" and c.startTime)
  end
  local sig = string.format("gen %s step %s paused %s %s", tostring(gen), tostring(st.currentStepIndex),
    tostring(r.spec.paused == true), table.concat(conds, ","))
  if W.seen[sig] then return nil end
  local idx = int(st.currentStepIndex) or 0
  local step = steps and steps[idx + 1]
  -- a timed pause step is Argo's to end (unless promote = "full")
  if S.mode ~= "full" and #why > 0 and not has(why, "InconclusiveAnalysis") and r.spec.paused ~= true
    and has(why, "CanaryPauseStep") and timed(step) then
    W.seen[sig] = true
    say(S, "rollout %s paused at %s: Argo resumes it after %s", S.name, pos or "a step", tostring(step.pause.duration))
    return nil
  end
  return { pause = { r = r, sig = sig, reasons = why, step = steps and #steps > 0 and (idx + 1) or nil,
    n = steps and #steps or nil } }
end

local function gate_id(S, W, where)
  local id = string.format("%s:%s:%s", S.key, images_of(S.template), where)
  W.asked[id] = (W.asked[id] or 0) + 1
  if W.asked[id] > 1 then id = id .. "#" .. W.asked[id] end
  return id
end

-- what relish does at a pause of the Rollout
local function at_pause(S, W, p)
  W.seen[p.sig] = true
  local r = p.r
  local where = p.step and string.format("at step %d/%d", p.step, p.n)
    or ((p.n or #p.reasons == 0) and "while paused" or "at its pre-promotion pause")
  local why = #p.reasons > 0 and table.concat(p.reasons, ", ") or "spec.paused"
  local slot = p.step and ("step" .. p.step) or "pause"
  if S.mode == "full" then
    return promote(S, r, true, string.format("%s (%s)", where, why), p.sig)
  end
  if has(p.reasons, "InconclusiveAnalysis") then
    -- an analysis that could not tell: a person decides, as strategy.canary does
    common.decide(S, gate_id(S, W, slot .. ":inconclusive"),
      string.format("analysis of rollout %s inconclusive %s: promote anyway?", S.name, where))
  elseif S.mode == "gate" then
    common.decide(S, gate_id(S, W, slot), string.format("rollout %s paused %s (%s): promote?", S.name, where, why))
  end
  -- the Rollout as it is now (a person may have taken a while)
  local now = S.c:get(ROLLOUT.ref .. S.name, { namespace = S.ns })
  if #reasons(now.status or {}) == 0 and now.spec.paused ~= true then
    say(S, "rollout %s is no longer paused: nothing to promote", S.name)
    return
  end
  return promote(S, now, false, string.format("%s (%s)", where, why), p.sig)
end

local function wait(S)
  local W = { seen = {}, asked = {} }
  local deadline = host.now() + S.timeout
  local ref = ROLLOUT.ref .. S.name
  while true do
    local left = deadline - host.now()
    if left <= 0 then break end
    local ok, v = pcall(S.c.watch, S.c, ref, function(t, r)
      if t == "DELETED" then
        fail("rollout_failed", "rollout %s in %s was deleted while relish waited", S.name, S.ns)
      end
      return look(S, W, r)
    end, { namespace = S.ns, timeout = left })
    if not ok then
      -- the watch's own end (not the step's deadline): relish's timeout
      if not (type(v) == "table" and v.kind == "timeout" and host.now() >= deadline and not host.deadline_passed()) then
        error(v, 0)
      end
      break
    end
    if v.done then
      host.progress_detail(nil)
      return v.done
    end
    at_pause(S, W, v.pause)
  end
  host.progress_detail(nil)
  fail("timeout", "rollout %s in %s is not Healthy on the new template after %s (%s)", S.name, S.ns, span(S.timeout),
    W.message or "Argo Rollouts never observed the new generation")
end

-- ---- the plan --------------------------------------------------------------------------

-- What a dry-run says it would do at each pause of the Rollout's steps,
-- each promote planned as its action.
local function plan(S)
  local r = S.stable
  local steps = canary_steps(r)
  local bg = r.spec.strategy and r.spec.strategy.blueGreen
  local W = { seen = {}, asked = {} }
  local function pause_at(idx, reason, where)
    local fake = copy(r)
    fake.spec.paused = nil
    fake.status = { pauseConditions = { { reason = reason } }, currentStepIndex = idx, currentPodHash = "new",
      stableRS = "stable" }
    local slot = idx and ("step" .. (idx + 1)) or "pause"
    if S.mode == "full" then
      promote(S, fake, true, string.format("%s (%s)", where, reason), "planned")
      return true
    end
    if S.mode == "gate" then
      common.decide(S, gate_id(S, W, slot), string.format("rollout %s paused %s (%s): promote?", S.name, where, reason))
    end
    promote(S, fake, false, string.format("%s (%s)", where, reason), "planned")
  end
  if steps then
    if #steps == 0 then say(S, "rollout %s has no steps: Argo rolls it out at once", S.name) end
    for i, st in ipairs(steps) do
      local where = string.format("at step %d/%d", i, #steps)
      say(S, "step %d/%d: %s%s", i, #steps, step_text(st), timed(st) and S.mode ~= "full" and ": Argo resumes it" or "")
      if type(st.pause) == "table" and (S.mode == "full" or not timed(st)) then
        if pause_at(i - 1, "CanaryPauseStep", where) then break end
      end
    end
  elseif type(bg) == "table" and bg.autoPromotionEnabled == false then
    pause_at(nil, "BlueGreenPause", "at its pre-promotion pause")
  else
    say(S, "rollout %s: Argo promotes it by itself", S.name)
  end
  say(S, "would wait for rollout %s to be Healthy on %s (not waited for in a dry-run)", S.name, images_of(S.template))
end

-- ---- the strategy ------------------------------------------------------------------------

local ARGO_OPTS = { rollout = true, promote = true, analysis = true }
local MODES = { auto = true, gate = true, full = true }

-- argo(ctx, {client=, rollout=, image=|images=|labels=|template=, namespace=,
-- timeout=, promote="auto"|"gate"|"full", analysis=, prometheus=})
--   -> {phase=, stable_rs=}
function M.argo(ctx, o)
  local fname = "strategy.argo"
  local S = common.begin(fname, ctx, o, ARGO_OPTS, ROLLOUT)
  if S.o.promote ~= nil and not MODES[S.o.promote] then
    usage(fname, "promote must be \"auto\", \"gate\" or \"full\", got " .. tostring(S.o.promote))
  end
  if S.o.analysis ~= nil and type(S.o.analysis) ~= "table" then
    usage(fname, "analysis must be a table of metrics.analyze options")
  end
  S.mode = S.o.promote or "auto"
  common.fetch(S)
  local r = S.stable
  local strategy = r.spec.strategy or {}
  local steps = canary_steps(r)
  if not steps and type(strategy.blueGreen) ~= "table" then
    fail("unsupported", "%s: rollout %s in %s has neither a canary nor a blueGreen strategy", fname, S.name, S.ns)
  end
  -- what a resumed run did already (one cluster among others, say)
  S.key = "argo:" .. S.c.server .. "/" .. S.ns .. "/" .. S.name
  ctx.state[S.key] = ctx.state[S.key] or {}
  local mine = ctx.state[S.key]
  local same = common.same(S.template, r.spec.template)
  if same and mine.set ~= images_of(S.template) then
    say(S, "rollout %s already runs %s: nothing to roll", S.name, images_of(S.template))
    return { phase = "unchanged" }
  end
  say(S, "argo rollout %s: %s -> %s, %s, promote %s", S.name, images_of(r.spec.template), images_of(S.template),
    steps and string.format("canary with %d steps", #steps) or "blue-green", S.mode)
  if not same then
    -- the undo of this write is the rollback: the old template back, which
    -- Argo takes to the stable ReplicaSet at once, skipping the steps
    local after = S.c:update_with_retry(ROLLOUT.ref .. S.name, function(x) x.spec.template = copy(S.template) end,
      { namespace = S.ns })
    -- what the server stored (defaults and all): the template to see from now on
    S.written = after.spec.template
  else
    S.written = r.spec.template
    say(S, "rollout %s has the new template already: waiting again", S.name)
  end
  mine.set = images_of(S.template)
  if S.dry then
    common.beside(S, S.o.analysis, function() plan(S) end)
    return { phase = "planned" }
  end
  local ok, v = pcall(common.beside, S, S.o.analysis, function() return wait(S) end)
  if not ok then
    -- a failure (not a stop: Ctrl-C, a pause at a gate...), as try tells them
    if type(v) == "table" and pcall(errors.try, error, v, 0) then
      say(S, "abort: %s; the rollback puts the template of rollout %s back", tostring(v.message or v), S.name)
    end
    error(v, 0)
  end
  say(S, "rollout %s is Healthy on %s (stable ReplicaSet %s)", S.name, images_of(S.template), tostring(v))
  return { phase = "promoted", stable_rs = v }
end

return M
