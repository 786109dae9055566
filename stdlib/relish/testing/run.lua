-- relish.testing's runs of a recipe: its plan as data (a dry-run) and a real
-- run against a throw-away journal, with failures injected on request. Both
-- run the relish binary as a subprocess (the test's own process keeps no
-- effect gate, lock or journal state of the run), read its JSON events, and
-- a real run's outcome back from the journal (`relish show --format json`).
local sh = require "relish.sh"
local host = require "relish._host"
local json = require "relish.json"
local cleanup = require "relish.testing.cleanup"

local M = {}

local function v(x)
  if x == json.null then return nil end
  return x
end

local function checkargs(fn, file, params, opts)
  if type(file) ~= "string" then error(string.format("%s: expected a recipe file, got %s", fn, type(file)), 3) end
  if params ~= nil and type(params) ~= "table" then
    error(string.format("%s: expected params as a table, got %s", fn, type(params)), 3)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error(string.format("%s: expected options as a table, got %s", fn, type(opts)), 3)
  end
end

local KNOWN = { dir = true, env = true, answers = true, yes = true, fail_at_step = true, fail_at_action = true,
  crash_before_action = true, journal = true, print = true, timeout = true }

local function checkopts(fn, opts)
  for k in pairs(opts) do
    if not KNOWN[k] then error(string.format("%s: unknown option %s", fn, tostring(k)), 3) end
  end
end

local function param_text(v)
  if type(v) == "table" then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = tostring(x) end
    return table.concat(parts, ",")
  end
  return tostring(v)
end

-- A journal in a directory removed when the test ends.
local function journal_url()
  local d = assert(host.mkdtemp("relish-kit"))
  cleanup.add(function() host.rmtree(d) end)
  return "sqlite:" .. d .. "/journal.db", d
end

local function relish(args, opts)
  local argv = { host.exe() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local env = { NO_COLOR = "1" }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  local r = sh.run { argv = argv, env = env, cwd = opts.dir, timeout = opts.timeout or 300, check = false,
    readonly = true }
  if opts.print then io.write(r.stdout, r.stderr) end
  return r
end

local function run_args(file, params, state, extra)
  local args = { "run", file, "--output", "json", "--state", state }
  local names = {}
  for k in pairs(params or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    args[#args + 1] = "-p"
    args[#args + 1] = k .. "=" .. param_text(params[k])
  end
  for _, a in ipairs(extra) do args[#args + 1] = a end
  return args
end

-- The JSON event lines of a run's output (other lines are skipped).
local function events_of(stdout)
  local events = {}
  for line in stdout:gmatch("[^\n]+") do
    if line:sub(1, 1) == "{" then
      local ok, ev = pcall(json.decode, line)
      if ok and type(ev) == "table" then events[#events + 1] = ev end
    end
  end
  return events
end

-- plan(file, params [, {dir=, env=, print=}]) -> {ok=, code=, error=, steps={{name=, status=}},
-- actions={{step=, step_name=, kind=, target=, describe=, detail=, irreversible=}}}
function M.plan(file, params, opts)
  checkargs("testing.plan", file, params, opts)
  opts = opts or {}
  checkopts("testing.plan", opts)
  local state = journal_url()
  local r = relish(run_args(file, params, state, { "--dry-run" }), opts)
  local plan = { ok = r.code == 0, code = r.code, steps = {}, actions = {}, stdout = r.stdout, stderr = r.stderr }
  local names = {}
  for _, ev in ipairs(events_of(r.stdout)) do
    if ev.event == "step_started" then
      names[ev.index] = ev.name
    elseif ev.event == "step_finished" then
      names[ev.index] = ev.name
      plan.steps[#plan.steps + 1] = { name = ev.name, status = ev.status, error = v(ev.error) }
    elseif ev.event == "action_planned" then
      plan.actions[#plan.actions + 1] = { step = ev.step, step_name = names[ev.step], kind = ev.kind,
        target = ev.target, describe = ev.describe, detail = ev.detail, irreversible = ev.irreversible == true }
    elseif ev.event == "run_finished" then
      plan.error = v(ev.error)
    end
  end
  if not plan.ok and not plan.error then
    plan.error = (r.stderr:gsub("^relish: ", ""):gsub("\n$", ""))
  end
  return plan
end

local function step_index(file, params, opts, name)
  if math.type(name) == "integer" then return name end
  local plan = M.plan(file, params, { dir = opts.dir, env = opts.env })
  for i, s in ipairs(plan.steps) do
    if s.name == name then return i end
  end
  local known = {}
  for i, s in ipairs(plan.steps) do known[i] = string.format("%q", s.name) end
  error(string.format("testing.run: fail_at_step: no step named %q (the steps: %s)", name,
    table.concat(known, ", ")), 3)
end

local function fault(file, params, opts)
  local faults = {}
  if opts.fail_at_step ~= nil then
    local s = opts.fail_at_step
    if not (math.type(s) == "integer" and s >= 1) and type(s) ~= "string" then
      error("testing.run: fail_at_step: expected a step number or name, got " .. type(s), 3)
    end
    faults[#faults + 1] = "fail-step:" .. step_index(file, params, opts, s)
  end
  for k, form in pairs { fail_at_action = "fail-action:", crash_before_action = "crash-before-action:" } do
    local n = opts[k]
    if n ~= nil then
      if not (math.type(n) == "integer" and n >= 1) then
        error(string.format("testing.run: %s: expected an action number (1, 2, ...), got %s", k, tostring(n)), 3)
      end
      faults[#faults + 1] = form .. n
    end
  end
  return #faults > 0 and table.concat(faults, ",") or nil
end

local function show(state, opts, run_id)
  local r = relish({ "show", run_id or "last", "--format", "json", "--state", state }, { env = opts.env, dir = opts.dir })
  if r.code ~= 0 then return nil end
  return json.decode(r.stdout)
end

-- run(file, params [, opts]) -> {code=, status=, run_id=, error=, steps=, actions=, events=, log=,
-- stdout=, stderr=, journal=, crashed=, rollback=}
function M.run(file, params, opts)
  checkargs("testing.run", file, params, opts)
  opts = opts or {}
  checkopts("testing.run", opts)
  if opts.answers ~= nil and type(opts.answers) ~= "table" then
    error("testing.run: answers: expected a table STEP = ANSWER, got " .. type(opts.answers), 2)
  end
  local extra = {}
  if opts.yes then extra[#extra + 1] = "--yes" end
  local answers = {}
  for k in pairs(opts.answers or {}) do answers[#answers + 1] = k end
  table.sort(answers)
  for _, k in ipairs(answers) do
    extra[#extra + 1] = "--answer"
    extra[#extra + 1] = k .. "=" .. tostring(opts.answers[k])
  end
  local state = opts.journal or journal_url()
  local env = {}
  for k, v in pairs(opts.env or {}) do env[k] = v end
  env.RELISH_FAULT = fault(file, params, opts)
  local ropts = { dir = opts.dir, env = env, print = opts.print, timeout = opts.timeout }
  local r = relish(run_args(file, params, state, extra), ropts)
  local result = { code = r.code, stdout = r.stdout, stderr = r.stderr, journal = state,
    events = events_of(r.stdout), steps = {}, actions = {}, log = {} }
  if r.signal then
    -- a crash injected before an action: the journal holds what was done;
    -- `relish rollback last` undoes it as a person would
    result.crashed = r.signal
    local env2 = {}
    for k, v in pairs(opts.env or {}) do env2[k] = v end
    local rb = relish({ "rollback", "last", "--state", state }, { dir = opts.dir, env = env2, print = opts.print })
    result.rollback = { code = rb.code, stdout = rb.stdout, stderr = rb.stderr }
  end
  for _, ev in ipairs(result.events) do
    if ev.event == "run_started" then result.run_id = ev.run_id end
  end
  local run = show(state, ropts, result.run_id)
  if not run then
    result.error = (r.stderr:gsub("^relish: ", ""):gsub("\n$", ""))
    return result
  end
  result.run_id, result.status, result.error, result.state = run.run_id, run.status, v(run.error), v(run.state)
  for _, s in ipairs(run.steps or {}) do
    result.steps[#result.steps + 1] = { name = s.name, status = s.status, error = v(s.error), attempts = s.attempts }
  end
  for _, a in ipairs(run.actions or {}) do
    result.actions[#result.actions + 1] = { seq = a.seq, step = a.step, step_name = a.step_name, kind = a.kind,
      target = a.target, describe = a.describe, irreversible = a.irreversible, status = a.status, error = v(a.error),
      phase = a.phase }
  end
  for _, e in ipairs(run.events or {}) do
    result.log[#result.log + 1] = { type = e.type, step = v(e.step), text = e.text }
  end
  -- a fault asked for and not injected (the step did nothing through the
  -- gate, or the run had fewer actions) must not pass as a tested rollback
  if opts.crash_before_action and not result.crashed then
    error(string.format("testing.run: crash_before_action = %d: the run ended (exit %d) before reaching action %d",
      opts.crash_before_action, r.code, opts.crash_before_action), 2)
  end
  if opts.fail_at_step ~= nil or opts.fail_at_action ~= nil then
    local injected = false
    for _, a in ipairs(result.actions) do
      if a.error and a.error:find("^injected failure %(RELISH_FAULT=") then injected = true end
    end
    if not injected then
      error(string.format("testing.run: %s = %s: no action failed (exit %d): %s", opts.fail_at_step ~= nil and
        "fail_at_step" or "fail_at_action", tostring(opts.fail_at_step or opts.fail_at_action), r.code,
        opts.fail_at_step ~= nil and "the step does nothing through the effect gate (or it did not run)" or
        "the run has fewer actions"), 2)
    end
  end
  return result
end

return M
