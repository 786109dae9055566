-- What the strategies of relish.strategy share (rolling, canary, blue/green
-- in strategy.lua, Argo Rollouts in strategy/argo.lua): options, the new pod
-- template, the run's state, log lines, manual gates, pauses and the
-- background analysis.
local errors = require "relish._errors"
local json = require "relish.json"
local task = require "relish.task"
local loop = require "relish._loop"
local host = require "relish._host"

local M = {}

-- Misuse raises at the first caller outside relish.strategy's files
-- (strategy.lua and strategy/*.lua call each other) and _errors.lua.
local DIR = debug.getinfo(1, "S").source:match("^(.*)/[^/]*$")
local ERRORS_SOURCE = debug.getinfo(errors.check_options, "S").source
local function usage(fname, msg)
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info then break end
    local src = info.source
    if src ~= ERRORS_SOURCE and src ~= DIR .. ".lua" and src:sub(1, #DIR + 1) ~= DIR .. "/" then break end
    level = level + 1
  end
  error(fname .. ": " .. msg, level)
end
M.usage = usage

local function fail(kind, fmt, ...) error(errors.value(kind, fmt, ...), 0) end
M.fail = fail

local function copy(v)
  if type(v) ~= "table" then return v end
  local t = {}
  for k, x in pairs(v) do t[k] = copy(x) end
  return setmetatable(t, getmetatable(v))
end
M.copy = copy

-- waits for a Deployment's rollout (kubectl's rules, failing fast on pods
-- that cannot start); nothing to wait for in a dry-run
function M.settle(S, name)
  if S.dry then return end
  S.c:wait_rollout({ kind = "Deployment", name = name, namespace = S.ns }, { timeout = S.timeout })
end

local function seconds(fname, v, what)
  if v == nil then return nil end
  local s, err = require("relish.dsl").duration(v, what)
  if not s then usage(fname, err) end
  return s
end
M.seconds = seconds

function M.same(a, b) return json.encode(a) == json.encode(b) end

-- "45s", "2m", "1h30m" for a number of seconds
local function span(s)
  s = math.floor(s + 0.5)
  if s < 60 then return s .. "s" end
  if s < 3600 then return string.format("%dm%s", s // 60, s % 60 > 0 and string.format("%02ds", s % 60) or "") end
  return string.format("%dh%02dm", s // 3600, (s % 3600) // 60)
end
M.span = span

-- ---- what to release -----------------------------------------------------------

local TARGET_OPTS = { image = true, images = true, container = true, labels = true, template = true }

-- The pod template to release: the stable one with image= (its only
-- container, or container=), images={name=image}, labels= added, then
-- template=function(t) for anything else.
local function new_template(fname, tpl, o)
  local t = copy(tpl)
  t.metadata = t.metadata or {}
  t.metadata.labels = t.metadata.labels or {}
  local cs = t.spec and t.spec.containers or {}
  local function container(name)
    for _, c in ipairs(cs) do if c.name == name then return c end end
    usage(fname, string.format("the pod template has no container '%s'", name))
  end
  if o.image ~= nil then
    if type(o.image) ~= "string" or o.image == "" then usage(fname, "image must be a non-empty string") end
    local c = o.container and container(o.container) or cs[1]
    if not o.container and #cs ~= 1 then
      usage(fname, string.format("the pod template has %d containers: say which with container=", #cs))
    end
    c.image = o.image
  end
  if o.images ~= nil then
    if type(o.images) ~= "table" then usage(fname, "images must be a table {container = image}") end
    for name, image in pairs(o.images) do container(name).image = image end
  end
  if o.labels ~= nil then
    if type(o.labels) ~= "table" then usage(fname, "labels must be a table {name = value}") end
    for k, v in pairs(o.labels) do t.metadata.labels[k] = tostring(v) end
  end
  if o.template ~= nil then
    if type(o.template) ~= "function" then usage(fname, "template must be a function(template)") end
    t = o.template(t) or t
  end
  return t
end
M.new_template = new_template

function M.images_of(t)
  local out = {}
  for _, c in ipairs(t.spec and t.spec.containers or {}) do out[#out + 1] = c.image end
  return table.concat(out, ",")
end

-- ---- the common state of a strategy run ------------------------------------------

local COMMON_OPTS = { client = true, namespace = true, timeout = true, prometheus = true }

-- What a strategy releases: the option naming it, its reference, its kind.
M.DEPLOYMENT = { option = "deployment", ref = "deployments/", kind = "Deployment" }

-- begin(fname, ctx, o, known [, object]) -> S: the options checked; the
-- object is a Deployment unless object says otherwise
function M.begin(fname, ctx, o, known, object)
  object = object or M.DEPLOYMENT
  if type(ctx) ~= "table" or type(ctx.log) ~= "function" then
    usage(fname, "expected the step's ctx as the first argument")
  end
  local all = { [object.option] = true }
  for k in pairs(COMMON_OPTS) do all[k] = true end
  for k in pairs(TARGET_OPTS) do all[k] = true end
  for k in pairs(known) do all[k] = true end
  o = errors.check_options(usage, fname, o, all)
  local c = o.client
  if type(c) ~= "table" or getmetatable(c) ~= require("relish.k8s").Client then
    usage(fname, "client must be a relish.k8s client (k8s.connect{...})")
  end
  local name = o[object.option]
  if type(name) ~= "string" or name == "" then
    usage(fname, string.format("%s must be a %s's name", object.option, object.kind))
  end
  local ns = o.namespace or c.namespace or "default"
  local S = { fname = fname, ctx = ctx, c = c, ns = ns, name = name, o = o, object = object,
    timeout = seconds(fname, o.timeout, "timeout") or 600, dry = ctx.dry_run and true or false }
  if o.image == nil and o.images == nil and o.labels == nil and o.template == nil then
    usage(fname, "say what to release: image=, images=, labels= or template=")
  end
  return S
end

-- the stable object and the template to release (after every option was
-- checked: misuse raises before anything is read)
function M.fetch(S)
  local object = S.object
  S.stable = S.c:get(object.ref .. S.name, { namespace = S.ns })
  if type(S.stable.spec) ~= "table" or type(S.stable.spec.template) ~= "table" then
    fail("unsupported", "%s: %s %s in %s has no spec.template%s", S.fname, object.kind:lower(), S.name, S.ns,
      object.no_template or "")
  end
  S.R = S.stable.spec.replicas or 1
  S.template = new_template(S.fname, S.stable.spec.template, S.o)
  return S
end

function M.say(S, fmt, ...) S.ctx.log(fmt, ...) end
local say = M.say

-- an analysis spec for metrics.analyze, with this step's ctx
local function analysis_spec(S, a, count)
  if type(a) ~= "table" then usage(S.fname, "an analysis must be a table of metrics.analyze options") end
  local spec = copy(a)
  spec.ctx = S.ctx
  spec.prometheus = spec.prometheus or S.o.prometheus
  if count then spec.count = count end
  return spec
end
M.analysis_spec = analysis_spec

-- A gate for a person: ctx.decide when the engine offers it.
function M.decide(S, id, question)
  if S.dry and type(S.ctx.decide) ~= "function" then
    say(S, "would wait for a person: %s", question)
    return "promote"
  end
  if S.dry then say(S, "would wait for a person: %s", question) end
  if type(S.ctx.decide) ~= "function" then
    fail("unsupported", "%s: a manual gate needs ctx.decide (this relish has none)", S.fname)
  end
  return S.ctx.decide { id = id, question = question }
end

function M.pause_for(S, secs, why)
  if S.dry then
    say(S, "would pause %s%s", span(secs), why or "")
    return
  end
  say(S, "pause %s%s", span(secs), why or "")
  local deadline = host.now() + secs
  while true do
    local left = deadline - host.now()
    if left <= 0 then break end
    host.progress_detail(string.format("paused: %s left", span(left)))
    task.sleep(math.min(left, 1))
  end
  host.progress_detail(nil)
end

local function metrics_analyze(spec) return require("relish.metrics").analyze(spec) end
M.metrics_analyze = metrics_analyze

-- runs fn() while a background analysis measures; the first to fail ends
-- both; when fn is done, the analysis stops (it has not failed)
function M.beside(S, a, fn)
  if not a then return fn() end
  if S.dry then
    metrics_analyze(analysis_spec(S, a, 1))
    return fn()
  end
  local bg = loop.spawn(function() return metrics_analyze(analysis_spec(S, a, a.count or math.huge)) end)
  local fg = loop.spawn(fn)
  local guard <close> = setmetatable({}, { __close = function() bg:cancel(); fg:cancel() end })
  local t = loop.wait_any({ fg, bg })
  if t == bg then
    local ok, err = bg:result()
    if not ok then error(err, 0) end
    -- a bounded background analysis that passed: the rest goes on without it
    return fg:wait()
  end
  return fg:wait()
end

return M
