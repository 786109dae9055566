-- relish.engine: runs a recipe. Steps run in order under the effect gate;
-- a failure rolls back completed and in-doubt actions newest first (a step's
-- undo replaces the automatic undos of its effects); everything is journaled
-- so rollback and resume work after a crash, from another process.
local ask = require "relish._ask"
local dsl = require "relish.dsl"
local effect = require "relish.effect"
local gate = require "relish._gate"
local host = require "relish._host"
local J = require "relish.journal"
local json = require "relish.json"
local lock = require "relish.lock"
local loop = require "relish._loop"
local output = require "relish.output"
local secret = require "relish.secret"
local errors = require "relish._errors"
local invalid = errors.invalid

local M = {}
local pause_clock -- below, with the runbooks: a deadline that waits while a person answers

local EXIT = { ok = 0, failed = 1, usage = 2, incomplete = 3, locked = 4, paused = 5, interrupted = 130 }
M.EXIT = EXIT

-- A run id sorts by time and is unique across processes: the suffix comes
-- from the kernel's random source, not from Lua's per-process seed.
local function new_run_id()
  local t = host.time()
  local f = io.open("/dev/urandom", "rb")
  local bytes = f and f:read(4) or ""
  if f then f:close() end
  local suffix = bytes:gsub(".", function(c) return string.format("%02x", c:byte()) end)
  if #suffix < 8 then suffix = string.format("%06x%02x", math.random(0, 0xffffff), host.getpid() % 256) end
  return os.date("!%Y%m%d-%H%M%S", math.floor(t)) .. "-" .. suffix
end

-- The text of an error for people: a table's message (or its fields), and no
-- position inside relish's own stdlib (the user's file:line stays).
local function errmsg(e)
  local text
  if type(e) == "table" then
    if e.message then
      text = tostring(e.message)
    elseif getmetatable(e) and getmetatable(e).__tostring then
      text = tostring(e)
    else
      text = "error object " .. require("relish.testing").show(e, 200)
    end
  else
    text = tostring(e)
  end
  return (text:gsub("^stdlib/relish/[%w_/]+%.lua:%d+: ", ""))
end

local function errkind(e)
  return type(e) == "table" and e.kind or nil
end

-- The gate's guard: before each effect is journaled, the run must still
-- hold its leases.
local function lease_guard(lease)
  return lease and function() lease:check() end or nil
end

-- Params as the journal keeps them: secrets become "***".
local function storable_params(params)
  local t = {}
  for k, v in pairs(params) do t[k] = secret.is(v) and "***" or v end
  return J.encode_params(t)
end

-- ---- manual gates (ctx.decide) ---------------------------------------------------
-- A step waits for a person's decision. On a terminal (stdin and stdout, text
-- output) it asks promote / abort / wait, polling stdin between sleeps on the
-- event loop so the run's other tasks (a background analysis) go on and may
-- fail the step meanwhile. Elsewhere, or on "wait", the run pauses: the step
-- ends "paused", ctx.state is saved, the run keeps its leases, exit 5; `relish
-- resume` promotes (the step runs again and the gate returns "promote" at
-- once), `relish rollback` aborts. Every decision is journaled with who made
-- it, how and when. A dry-run never waits: it plans the gate and promotes.

local ANSWERS = { promote = "promote", p = "promote", abort = "abort", a = "abort", wait = "wait", w = "wait" }
local DECIDE_FIELDS = { id = true, question = true }

-- The run's output and a decision, for people.
local function say_decision(E, gate_id, decision, actor, via)
  E.out:event("decision", { gate = gate_id, decision = decision, by = actor, via = via, step = E.step_name })
end

local function aborted(actor, gate_id)
  local e = errors.value("aborted", "aborted by %s at the gate %s", actor, gate_id)
  e.gate = gate_id
  return e
end

-- Asks on the terminal; returns "promote", "abort", "wait", or nil when
-- stdin ended (no answer: the run pauses).
local function prompt(E, g)
  E.journal:gate_ask(E.run_id, g)
  E.out:event("gate", { gate = g.id, question = g.question, step = E.step_name })
  local answered = false
  local a = ask.read_line(E.out, "      promote / abort / wait? ", function(line)
    local v = ANSWERS[line:lower():match("^%s*(.-)%s*$")]
    if v then return v end
    return nil, "please answer promote, abort or wait"
  end, { on_close = function()
    if E.out.tty and E.step_name then host.progress(E.step_name) end
    -- cancelled (the step failed meanwhile), interrupted, timed out
    if not answered then
      pcall(E.journal.event, E.journal, E.run_id, "gate",
        string.format("gate %s: the question was withdrawn before anyone answered (the step stopped)", g.id))
    end
  end })
  answered = true
  return a
end

-- The rest of ctx.decide, once its arguments are checked.
local function decide(E, id, question)
  local g = { id = id, step = E.step_idx, question = secret.redact(question) }
  if E.preview then return "promote" end -- a runbook's preview of the step: nothing journaled
  if E.dry_run then
    E.journal:event(E.run_id, "gate", string.format("gate %s (step %d) would wait for a person: %s", id, g.step,
      g.question))
    E.out:event("gate", { gate = id, question = g.question, step = E.step_name, dry_run = true })
    return "promote"
  end
  -- decided already: promoted by `relish resume`, or at the terminal before
  -- a retry of the step
  local row = E.journal:gate(E.run_id, id)
  if row and (row.status == "promoted" or row.status == "aborted") then
    local last
    for _, x in ipairs(E.journal:gates(E.run_id)) do
      if x.id == id then last = x.decisions[#x.decisions] end
    end
    if row.status == "aborted" then error(aborted(last and last.actor or "?", id), 0) end
    E.out:event("log", { step = E.step_name, message = string.format("gate %s: already promoted%s", id,
      last and string.format(" by %s (via %s)", last.actor, last.via) or "") })
    return "promote"
  end
  local answer
  if host.isatty(0) and E.out.tty and E.out.format == "text" then
    answer = prompt(E, g)
    if answer then
      local actor = E.journal:gate_decide(E.run_id, id, answer, "terminal")
      say_decision(E, id, answer, actor, "terminal")
      if answer == "promote" then return "promote" end
      if answer == "abort" then error(aborted(actor, id), 0) end
    end
  end
  -- no terminal, "wait", or stdin ended: the run pauses here
  E.journal:gate_pause(E.run_id, g)
  E.paused = g
  local e = errors.value("paused", "paused at the gate %s: %s", id, g.question)
  e.gate = id
  error(e, 0)
end

local function make_ctx(E)
  local ctx = {
    params = E.params, run_id = E.run_id, dry_run = E.dry_run, state = E.state,
    recipe = E.recipe.name,
  }
  function ctx.log(fmt, ...)
    local msg = tostring(fmt)
    if select("#", ...) > 0 then
      local ok, text = pcall(string.format, fmt, ...)
      if not ok then error("ctx.log: " .. text:gsub("^.-: ", "", 1), 2) end
      msg = text
    end
    msg = secret.redact(msg)
    if E.preview then return end -- a runbook's preview of the step: the run says it
    E.journal:event(E.run_id, "log", msg, nil, E.step_idx)
    E.out:event("log", { message = msg, step = E.step_name })
  end
  -- ctx.note(text): into the run's timeline, with who wrote it and when
  function ctx.note(text)
    local msg = secret.redact(tostring(text))
    if E.preview then return end
    E.journal:event(E.run_id, "note", msg, nil, E.step_idx)
    E.out:event("note", { message = msg, step = E.step_name, by = J.actor() })
  end
  -- ctx.confirm(question | {question=, id=}) -> true | false; ctx.choose{
  -- question=, options=, default=, id=} -> the option's value; ctx.ask{
  -- question=, default=, match=, validate=, secret=, id=} -> the text (a
  -- secret value with secret = true). Answered as relish._ask says; "quit"
  -- stops the run where it is (kept, for resume or rollback).
  local function question(fname, spec, fields, need)
    if type(spec) == "string" and need == "confirm" then spec = { question = spec } end
    if type(spec) ~= "table" then error(string.format("ctx.%s: expected a table {question=, ...}, got %s", fname,
      type(spec)), 3) end
    for k in pairs(spec) do
      if not fields[k] then
        local names = {}
        for f in pairs(fields) do names[#names + 1] = f end
        table.sort(names)
        local near = type(k) == "string" and host.nearest(k, names)
        error(string.format("ctx.%s: unknown field '%s'%s", fname, tostring(k),
          near and string.format(" (did you mean '%s'?)", near) or ""), 3)
      end
    end
    local q = spec.question or spec.prompt
    if type(q) ~= "string" or q == "" then error(string.format("ctx.%s: question: expected a non-empty string", fname), 3) end
    if spec.id ~= nil and (type(spec.id) ~= "string" or spec.id == "") then
      error(string.format("ctx.%s: id: expected a non-empty string", fname), 3)
    end
    if not E.step_idx or not E.asker then error(string.format("ctx.%s: only a step's run can ask a person", fname), 3) end
    local s = E.recipe.steps[E.step_idx]
    return { key = s.name .. "." .. (spec.id or q), step = E.step_idx, step_name = s.name, scope = "ctx." .. fname,
      question = secret.redact(q), wildcard = need == "confirm" and (s.name .. ".*") or nil }
  end
  local function stopped_here(what)
    local e = errors.value("stopped", "stopped by %s at %s", J.actor(), what)
    e.keep_done = true
    return e
  end
  local CONFIRM_FIELDS = { question = true, prompt = true, id = true }
  function ctx.confirm(spec)
    local q = question("confirm", spec, CONFIRM_FIELDS, "confirm")
    q.kind = "confirm"
    local a = E.asker:get(q)
    if a == "quit" then error(stopped_here(string.format("%q", q.question)), 0) end
    return a == "yes"
  end
  local CHOOSE_FIELDS = { question = true, prompt = true, id = true, options = true, default = true }
  function ctx.choose(spec)
    local q = question("choose", spec, CHOOSE_FIELDS)
    local opts = spec.options
    if type(opts) ~= "table" then error("ctx.choose: options: expected a list", 2) end
    local list = { default = spec.default }
    for i, o in ipairs(opts) do list[i] = o end
    local ok, c = pcall(dsl.options, E.recipe.steps[E.step_idx].name, list, 0)
    if not ok then error("ctx." .. tostring(c), 2) end
    q.kind, q.options, q.default = "choose", c.options, c.default
    local a = E.asker:get(q)
    if a == "quit" then error(stopped_here(string.format("%q", q.question)), 0) end
    return a
  end
  local ASK_FIELDS = { question = true, prompt = true, id = true, default = true, match = true, validate = true,
    secret = true }
  function ctx.ask(spec)
    local q = question("ask", spec, ASK_FIELDS)
    if spec.match ~= nil and type(spec.match) ~= "string" then error("ctx.ask: match: expected a Lua pattern", 2) end
    if spec.validate ~= nil and type(spec.validate) ~= "function" then
      error("ctx.ask: validate: expected a function(text)", 2)
    end
    if spec.default ~= nil and type(spec.default) ~= "string" and type(spec.default) ~= "number" then
      error("ctx.ask: default: expected a string", 2)
    end
    if spec.secret and spec.default ~= nil then error("ctx.ask: a secret question takes no default", 2) end
    q.kind, q.match, q.validate, q.secret = "ask", spec.match, spec.validate, spec.secret and true or false
    q.default = spec.default ~= nil and tostring(spec.default) or nil
    return E.asker:get(q)
  end
  function ctx.secret(name) return dsl.secret(name) end
  -- ctx.decide{id=, question=} -> "promote" (see the manual gates above);
  -- misuse raises here, at the caller
  function ctx.decide(spec)
    if type(spec) ~= "table" then error("ctx.decide: expected a table {id=, question=}, got " .. type(spec), 2) end
    for k in pairs(spec) do
      if not DECIDE_FIELDS[k] then
        local near = type(k) == "string" and host.nearest(k, { "id", "question" })
        error(string.format("ctx.decide: unknown field '%s'%s", tostring(k),
          near and string.format(" (did you mean '%s'?)", near) or ""), 2)
      end
    end
    local id, question = spec.id, spec.question
    if id == nil then error("ctx.decide: id is required (a string unique within the run)", 2) end
    if type(id) ~= "string" or id == "" then
      error("ctx.decide: id: expected a non-empty string, got " .. (id == "" and "an empty string" or type(id)), 2)
    end
    if type(question) ~= "string" or question == "" then
      error("ctx.decide: question: expected a non-empty string, got " ..
        (question == "" and "an empty string" or type(question)), 2)
    end
    if not E.step_idx then error("ctx.decide: only a step's run can wait for a person", 2) end
    -- one id, one gate: the same call made again by a retry or a resume of
    -- its step finds its decision; any other call with the id is a mistake
    local function twice(step)
      local s = E.recipe.steps[step]
      error(string.format("ctx.decide: the gate id '%s' is used twice in this run (step %q asked it already)", id,
        s and s.name or tostring(step)), 3)
    end
    E.gate_calls = E.gate_calls or {}
    local prev = E.gate_calls[id]
    if prev and (prev.attempt == E.attempt_token or prev.step ~= E.step_idx) then twice(prev.step) end
    local row = not E.dry_run and E.journal:gate(E.run_id, id)
    if row and row.step ~= E.step_idx then twice(row.step) end
    E.gate_calls[id] = { attempt = E.attempt_token, step = E.step_idx }
    return (decide(E, id, question))
  end
  -- the commits this deployment ships (repo:log's entries fit as they are),
  -- for relish dora's lead time; a commit recorded twice is kept once
  function ctx.record_commits(commits)
    if E.preview then return type(commits) == "table" and #commits or 0 end
    if not E.deploys then error("ctx.record_commits: the recipe does not declare deploys = {service=...}", 2) end
    if type(commits) ~= "table" then error("ctx.record_commits: expected a list of commits, got " .. type(commits), 2) end
    local rows = {}
    for i, c in ipairs(commits) do
      if type(c) ~= "table" or type(c.id) ~= "string" or c.id == "" then
        error(string.format("ctx.record_commits: commit %d needs an id (a non-empty string)", i), 2)
      end
      local t = dsl.timestamp(c.time)
      if not t then
        error(string.format("ctx.record_commits: commit %d (%s): time must be Unix seconds or an ISO 8601 time" ..
          " (2026-01-02T15:04:05Z, +02:00), got %s", i, c.id, tostring(c.time)), 2)
      end
      rows[i] = { id = c.id, time = t }
    end
    E.journal:record_commits(E.run_id, rows)
    return #rows
  end
  -- ctx.savepoint() -> a mark: the actions so far. ctx.rollback_to(mark,
  -- reason) undoes the run's actions after it, newest first, as a rollback
  -- of the run does (journaled as an attempt), and returns "complete" or
  -- "incomplete" and what was left; the step goes on (it usually raises,
  -- with keep_done = true to keep what came before the mark). A dry-run
  -- undoes nothing.
  function ctx.savepoint()
    if type(E.journal.max_seq) ~= "function" then error("ctx.savepoint: not in a run", 2) end
    return gate.state().seq
  end
  function ctx.rollback_to(mark, reason)
    if math.type(mark) ~= "integer" or mark < 0 then error("ctx.rollback_to: expected a mark from ctx.savepoint()", 2) end
    if E.dry_run then return "complete", {} end
    local run = E.journal:find_run(E.run_id)
    -- the undo has the rollback's own budget, not what is left of the
    -- step's (a forward timeout never eats a rollback's time)
    host.set_deadline(nil)
    local ok, status, left = pcall(M.rollback, { journal = E.journal, out = E.out, run = run, recipe = E.recipe,
      params = E.params, state = E.state, reason = reason and tostring(reason) or "rollback_to", lease = E.lease,
      after_seq = mark, budget = E.recipe.rollback_timeout })
    if E.step_deadline then host.set_deadline(E.step_deadline[1], E.step_deadline[2]) end
    if not ok then error(status, 0) end
    return status, left
  end
  return ctx
end

local function save_state(E)
  local ok, text = pcall(json.encode, E.state, { sort_keys = true })
  if not ok then error("ctx.state cannot be saved: " .. tostring(text), 0) end
  E.journal:set_run_state(E.run_id, secret.redact(text))
end

local function set_step(E, idx, fields)
  E.journal:set_step(E.run_id, idx, fields)
end

-- an error as a step's failure keeps it: a table as it is, text with a
-- traceback when RELISH_TRACEBACK is set
local function catch(e)
  if type(e) == "table" then return e end
  if os.getenv("RELISH_TRACEBACK") then return debug.traceback(tostring(e), 2) end
  return tostring(e)
end

-- Runs one attempt of fn(...) (the step's run: fn = s.run, ctx, choice)
-- under the step's and the run's deadlines.
local function attempt(E, s, fn, ...)
  local deadline = 0
  if s.timeout then deadline = host.now() + s.timeout end
  if E.run_deadline and (deadline == 0 or E.run_deadline < deadline) then deadline = E.run_deadline end
  -- named, should the watchdog have to end the process (stuck in a C call)
  E.step_deadline = { deadline > 0 and deadline or nil, string.format("step %q of run %s", s.name, E.run_id) }
  host.set_deadline(E.step_deadline[1], E.step_deadline[2])
  local ok, err = xpcall(fn, catch, ...)
  host.set_deadline(nil)
  loop.reset() -- tasks the step spawned end with it: transfers closed, processes reaped
  -- later by the time people took to answer (pause_clock)
  deadline = E.step_deadline[1] or 0
  -- a command or a wait cut short by the deadline returns normally: the step
  -- still ran out of time
  if ok and deadline > 0 and host.now() >= deadline then
    ok, err = false, { kind = "timeout" }
  end
  if not ok and errkind(err) == "timeout" then
    -- the step's name goes in front where the failure is reported
    local recipe_wide = E.run_deadline and deadline == E.run_deadline
    err = { kind = "timeout", message = recipe_wide and "timed out: the recipe's timeout ran out"
      or string.format("timed out after the step's timeout of %s", output.fmt_elapsed(s.timeout)) }
  end
  return ok, err
end

-- The first line of a message, redacted BEFORE it is cut: a cut secret is
-- no longer the value the redactor knows.
local function first_line(s)
  return (secret.redact(tostring(s)):match("^[^\n]*"))
end

-- ---- runbooks: checks, and asking before a step ----------------------------------

-- While a person thinks, the step's and the run's deadlines wait: ->
-- the function that moves them on by the time it took, once answered.
function pause_clock(E)
  local t0 = host.now()
  local sd = E.step_deadline and E.step_deadline[1]
  host.set_deadline(nil)
  return function()
    local waited = host.now() - t0
    if E.run_deadline then E.run_deadline = E.run_deadline + waited end
    if sd then
      E.step_deadline[1] = sd + waited
      host.set_deadline(E.step_deadline[1], E.step_deadline[2])
    end
  end
end

-- An action without an undo of its own is irreversible, unless its step has
-- an undo: a rollback runs that instead (an HTTP write, a command).
local function irreversible(recipe, step, flag)
  local s = recipe and recipe.steps[step]
  return flag and not (s and s.undo) or false
end

-- what ends a preview or a check as it ends a step: a stop, a person who
-- quit, a question nobody can answer
local STOPS = { interrupted = true, lock_lost = true, stopped = true, unanswered = true }

-- fn(...) with the gate planning instead of acting, journaling nothing: ->
-- the effects it planned, and fn's ok and error or value. Raises a stop.
local function planned(E, s, fn, ...)
  local effects, fine, value
  local args = table.pack(...)
  local ok, err = attempt(E, s, function()
    effects, fine, value = gate.capture(function() return xpcall(fn, catch, table.unpack(args, 1, args.n)) end,
      { dry_run = true })
  end)
  if not ok then
    if STOPS[errkind(err)] or host.interrupted() then error(err, 0) end
    return effects or {}, false, err
  end
  if not fine and (STOPS[errkind(value)] or host.interrupted()) then error(value, 0) end
  return effects, fine, value
end

-- A check: its run reads and returns what it finds; it gates nothing (a check
-- that fails says so and the run goes on) and may change nothing (what it
-- would have changed is planned, never done, and makes it fail).
local function run_check(E, i, s, ctx)
  local steps = E.recipe.steps
  set_step(E, i, { status = "running", started_at = J.now_iso(), error = json.null })
  E.out:event("step_started", { index = i, total = #steps, name = s.name, check = true, since = E.since and
    host.time() - E.since })
  local started = host.now()
  E.step_idx = i
  local effects, fine, value = planned(E, s, s.run, ctx)
  E.step_idx = nil
  local text, verdict
  if #effects > 0 then
    text, verdict = string.format("a check only reads, and this one would change %s: move that into a step",
      effects[1].describe), "error"
  elseif not fine then
    text, verdict = first_line(errmsg(value)), "error"
  else
    text, verdict = output.finding(value)
  end
  text = text and secret.redact(text)
  local shown = text and (verdict and string.format("[%s] %s", verdict, text) or text) or "(nothing to show)"
  E.journal:event(E.run_id, "check", s.name .. ": " .. shown, nil, i)
  set_step(E, i, { status = "done", finished_at = J.now_iso(), error = verdict == "error" and text or json.null })
  E.out:event("step_finished", { index = i, total = #steps, name = s.name, status = "done",
    elapsed = host.now() - started, check = true })
  E.out:event("check", { index = i, name = s.name, finding = text or json.null, verdict = verdict or json.null })
end

-- A question a step asks at its start: its choose or its confirm (or, in
-- relish runbook, the confirmation of what its preview plans).
local function step_question(E, i, s, kind, fields)
  local q = { kind = kind, step = i, step_name = s.name, scope = string.format("step %q", s.name),
    key = s.name }
  if kind == "confirm" and s.choose then q.key = s.name .. ".confirm" end
  for k, v in pairs(fields) do q[k] = v end
  return q
end

-- What the step will change, planned with the answers the person gives
-- meanwhile (kept for the step's run, which gets them again without asking).
local function preview(E, i, s, ctx, choice)
  local P = setmetatable({ dry_run = true, preview = true, state = json.decode(json.encode(E.state)) },
    { __index = E })
  local pctx = make_ctx(P)
  pctx.params = ctx.params
  E.asker.recording, E.asker.replay = {}, nil
  local effects, fine, err = planned(E, s, s.run, pctx, choice)
  E.asker.replay, E.asker.recording = E.asker.recording, nil
  local shown = {}
  for n, a in ipairs(effects) do
    shown[n] = { kind = a.kind, target = a.target, describe = a.describe, detail = a.detail,
      irreversible = irreversible(E.recipe, i, a.irreversible) }
  end
  E.out:event("preview", { index = i, name = s.name, actions = json.array(shown),
    error = not fine and first_line(secret.redact(errmsg(err))) or nil })
  return effects, fine
end

-- Before a step acts: its choice, its preview (relish runbook) and its
-- confirmation. Returns "run", choice | "skip", why | "quit".
local function before_step(E, i, s, ctx)
  local choice, chosen_here
  if s.choose then
    local c = s.choose
    if type(c) == "function" then
      local effects, fine, v = planned(E, s, c, ctx)
      if #effects > 0 then error(string.format("choose: it may only read, and it would change %s",
        effects[1].describe), 0) end
      if not fine then error(v, 0) end
      c = dsl.options(s.name, v, 0)
    end
    choice = E.asker:get(step_question(E, i, s, "choose", { question = c.prompt or
      string.format("%s: which one?", s.name), options = c.options, default = c.default, skip = true }))
    if choice == "skip" then return "skip", "skipped instead of choosing" end
    if choice == "quit" then return "quit" end
    chosen_here = E.asker.last_via == "terminal"
  end
  local text = s.confirm
  if E.guided and not E.dry_run then
    local effects, fine = preview(E, i, s, ctx, choice)
    if text == nil and not fine then
      text = string.format("Planning step %q failed: run it anyway?", s.name)
    elseif text == nil and #effects > 0 and (not s.choose or chosen_here) then
      -- every change is confirmed once its plan is shown; a choice given in
      -- advance is its own confirmation
      text = #effects == 1 and "Make this change?" or string.format("Make these %d changes?", #effects)
    end
  end
  if type(text) == "function" then
    -- a question the function asks (ctx.ask with the step's id) gets the
    -- answer the preview got, and what it asks anew is the run's answer too
    local before = E.asker.replay or {}
    local copy = {}
    for k, list in pairs(before) do copy[k] = table.move(list, 1, #list, 1, {}) end
    E.asker.replay, E.asker.recording = copy, {}
    local effects, fine, v = planned(E, s, text, ctx, choice)
    for k, list in pairs(E.asker.recording) do
      before[k] = before[k] or {}
      table.move(list, 1, #list, #before[k] + 1, before[k])
    end
    E.asker.replay, E.asker.recording = before, nil
    if #effects > 0 then error(string.format("confirm: it may only read, and it would change %s",
      effects[1].describe), 0) end
    if not fine then error(v, 0) end
    if type(v) ~= "string" or v == "" then error("confirm: the function must return the question (a string)", 0) end
    text = v
  end
  if text then
    local a = E.asker:get(step_question(E, i, s, "confirm", { question = secret.redact(text) }))
    if a == "no" then return "skip", "answered no" end
    if a == "quit" then return "quit" end
  end
  return "run", choice
end

-- Runs the steps from E.start; returns nil or the failure {step=, error=}.
local function run_steps(E, ctx)
  local steps = E.recipe.steps
  for i = E.start, #steps do
    local s = steps[i]
    E.step_name = s.name
    if host.interrupted() then
      return { step = i, error = { kind = "interrupted", message = "interrupted" } }
    end
    local function fail(err, elapsed)
      local msg = secret.redact(errmsg(err))
      set_step(E, i, { status = "failed", error = msg, finished_at = J.now_iso() })
      E.out:event("step_finished", { index = i, total = #steps, name = s.name, status = "failed",
        elapsed = elapsed, error = msg })
      return { step = i, error = err }
    end
    local skip = false
    if s.when then
      local ok, v = pcall(s.when, ctx)
      if not ok then return fail("when: " .. errmsg(v)) end
      skip = not v
    end
    if skip then
      set_step(E, i, { status = "skipped", finished_at = J.now_iso() })
      E.out:event("step_finished", { index = i, total = #steps, name = s.name, status = "skipped" })
    elseif s.check then
      gate.set_step(i)
      local ok, err = pcall(run_check, E, i, s, ctx)
      if not ok then return fail(err) end
    else
      gate.set_step(i)
      -- a safe point: a run that lost its lock starts nothing more
      if E.lease and not E.lease:renew() then return { step = i, error = E.lease:error(), before = true } end
      set_step(E, i, { status = "running", started_at = J.now_iso(), error = json.null })
      E.out:event("step_started", { index = i, total = #steps, name = s.name, since = E.since and
        host.time() - E.since, guided = E.guided })
      local started = host.now()
      local ok, err
      E.step_idx = i
      local asked, what, choice = true, "run", nil
      if s.choose or s.confirm or (E.guided and not E.dry_run) then
        asked, what, choice = pcall(before_step, E, i, s, ctx)
      end
      if not asked then
        E.step_idx = nil
        return fail(what, host.now() - started)
      elseif what == "skip" then
        -- a person's choice: journaled with who and why
        E.step_idx = nil
        E.journal:event(E.run_id, "skip", string.format("step %q skipped: %s", s.name, choice), nil, i)
        set_step(E, i, { status = "skipped", finished_at = J.now_iso() })
        E.out:event("step_finished", { index = i, total = #steps, name = s.name, status = "skipped",
          by = J.actor() })
        goto next_step
      elseif what == "quit" then
        E.step_idx = nil
        local why = string.format("stopped by %s before step %q", J.actor(), s.name)
        E.journal:event(E.run_id, "stop", why, nil, i)
        set_step(E, i, { status = "pending", started_at = json.null })
        E.out:event("step_finished", { index = i, total = #steps, name = s.name, status = "stopped" })
        return { step = i, stopped = true, error = errors.value("stopped", "%s", why) }
      end
      for try = 1, s.retries + 1 do
        E.journal:step_attempt(E.run_id, i, try)
        E.attempt_token = {}
        ok, err = attempt(E, s, s.run, ctx, choice)
        if E.asker then E.asker.replay = nil end -- a retry asks again
        -- a person's abort and a pause are not retried
        if ok or E.paused or errkind(err) == "aborted" or errkind(err) == "interrupted" or errkind(err) == "lock_lost"
          or host.interrupted() then break end
        if try <= s.retries then
          ctx.log("step %s failed (attempt %d of %d): %s; retrying", s.name, try, s.retries + 1, first_line(errmsg(err)))
        end
      end
      E.step_idx = nil
      local elapsed = host.now() - started
      -- paused at a manual gate (even if the step's code caught the pause):
      -- what the step did so far stays, with ctx.state for its re-run
      if E.paused and not host.interrupted() then
        local saved, serr = pcall(save_state, E)
        if not saved then return fail(serr, elapsed) end
        set_step(E, i, { status = "paused", error = json.null, finished_at = J.now_iso() })
        E.out:event("step_finished", { index = i, total = #steps, name = s.name, status = "paused", elapsed = elapsed })
        return { step = i, paused = E.paused }
      end
      if not ok then return fail(err, elapsed) end
      if not E.dry_run then
        local saved, serr = pcall(save_state, E)
        if not saved then return fail(serr, elapsed) end
      end
      set_step(E, i, { status = "done", finished_at = J.now_iso() })
      E.out:event("step_finished", { index = i, total = #steps, name = s.name, status = "done", elapsed = elapsed })
    end
    ::next_step::
  end
  return nil
end

-- ---- rollback ---------------------------------------------------------------

local UNDOABLE = { done = true, pending = true, failed = true }

-- What a rollback has to do, newest first: a list of items
-- {type = "step", idx=, name=} (the step's own undo) or {type = "action", a=}.
local function rollback_items(journal, run, recipe, after_seq)
  local actions = journal:actions(run.id, { undoable = true })
  if after_seq then
    -- a partial rollback (ctx.rollback_to): the actions after the mark only,
    -- never a step's own undo
    local later = {}
    for _, a in ipairs(actions) do if a.seq > after_seq then later[#later + 1] = a end end
    actions, recipe = later, nil
  end
  local steps = {}
  for _, s in ipairs(journal:steps(run.id)) do steps[s.idx] = s end
  local items, seen_step = {}, {}
  local function step_undo(idx)
    local s = recipe and recipe.steps[idx]
    return s and s.undo and steps[idx] and steps[idx].name == s.name and s or nil
  end
  -- steps with their own undo that did not finish their undo yet, even with no actions
  local ordered = {}
  for idx, s in pairs(steps) do ordered[#ordered + 1] = s end
  table.sort(ordered, function(a, b) return a.idx > b.idx end)
  local by_step = {}
  for _, a in ipairs(actions) do
    by_step[a.step] = by_step[a.step] or {}
    table.insert(by_step[a.step], a)
  end
  for _, s in ipairs(ordered) do
    local su = step_undo(s.idx)
    if su then
      if (s.status == "done" or s.status == "failed" or s.status == "running" or s.status == "undo_failed"
        or s.status == "paused")
        and not seen_step[s.idx] then
        seen_step[s.idx] = true
        items[#items + 1] = { type = "step", idx = s.idx, name = s.name, step = su, actions = by_step[s.idx] or {} }
      end
    else
      for _, a in ipairs(by_step[s.idx] or {}) do
        if UNDOABLE[a.status] or a.status == "undo_failed" then
          items[#items + 1] = { type = "action", a = a }
        end
      end
    end
  end
  return items
end

-- ---- what the undos need ----------------------------------------------------
-- A rollback must not stop half-way for a credential that is not there: what
-- the undos need is checked before anything is undone. A step's undo names
-- it (needs = {secrets=, params=}); without needs.params it may read every
-- param, so every secret param of the run must come back; an automatic undo's
-- record names where its credentials come from (secret_env, secret_file).

-- The text of a secret spec (as secret() takes it), and why it is not there.
local function secret_missing(spec)
  local ok, err = pcall(dsl.secret, spec)
  if ok then return nil end
  local name = type(spec) == "string" and spec or spec.env or spec.file
  return string.format("secret %s: %s", name, errmsg(err):gsub("^secret: ", ""))
end

-- A param the journal kept as "***": a secret one (a recipe that no longer
-- loads cannot say, so "***" is taken for one).
local function kept_secret(recipe, k, v)
  if v ~= "***" then return false end
  local p = recipe and recipe.params[k]
  return p == nil or p.secret and true or false
end

-- How a secret param kept as "***" comes back: RELISH_PARAM_<NAME>, else the
-- recipe's default; nil when it cannot.
local function secret_param(recipe, k)
  local env = os.getenv("RELISH_PARAM_" .. k:upper())
  if env then return secret.value(env, k) end
  local p = recipe and recipe.params[k]
  if p and p.default ~= nil then
    return secret.is(p.default) and p.default or secret.value(tostring(p.default), k)
  end
end

-- What is missing of the credential sources an undo record names: a
-- secret_env or secret_file field anywhere in it, and a git auth.
local function record_missing(rec, out, depth)
  if type(rec) ~= "table" or depth > 8 then return out end
  if type(rec.secret_env) == "string" and os.getenv(rec.secret_env) == nil then
    out[#out + 1] = string.format("$%s is not set (its credentials came from it)", rec.secret_env)
  end
  if type(rec.secret_file) == "string" then
    local f = io.open(rec.secret_file, "rb")
    if f then f:close() else
      out[#out + 1] = string.format("%s cannot be read (its credentials came from it)", rec.secret_file)
    end
  end
  local auth = rec.auth -- git's {type=, ssh_key=, secret_env=, secret_file=}
  if type(auth) == "table" then
    if auth.type == "token" and auth.secret_env == nil and auth.secret_file == nil then
      out[#out + 1] = "its credentials were a secret value that cannot be read again: undo it by hand"
    end
    if type(auth.ssh_key) == "string" then
      local f = io.open(auth.ssh_key, "rb")
      if f then f:close() else out[#out + 1] = string.format("the SSH key %s cannot be read", auth.ssh_key) end
    end
  end
  for _, v in pairs(rec) do record_missing(v, out, depth + 1) end
  return out
end

-- Everything the rollback's items need that is not available now: a list
-- of lines (empty: go ahead).
local function preflight(run, recipe, items)
  local missing = {}
  local kept = J.decode_params(run.params)
  for _, it in ipairs(items) do
    if it.type == "step" then
      local needs = it.step.needs or {}
      local whose = string.format("for the undo of step %q", it.name)
      for _, spec in ipairs(needs.secrets or {}) do
        local why = secret_missing(spec)
        if why then missing[#missing + 1] = why .. ", " .. whose end
      end
      local names = needs.params
      if not names then
        names = {}
        for k in pairs(kept) do names[#names + 1] = k end
        table.sort(names)
      end
      for _, k in ipairs(names) do
        if kept_secret(recipe, k, kept[k]) and secret_param(recipe, k) == nil then
          missing[#missing + 1] = string.format(
            "param '%s' (a secret, not kept in the journal): set RELISH_PARAM_%s, %s%s", k, k:upper(), whose,
            needs.params and "" or " (its needs.params does not say which params it uses)")
        end
      end
    elseif it.a.undo ~= nil then
      local ok, rec = pcall(json.decode, it.a.undo)
      for _, why in ipairs(ok and record_missing(rec, {}, 0) or {}) do
        missing[#missing + 1] = string.format("%s, for the undo of action %d: %s %s", why, it.a.seq, it.a.kind,
          it.a.target)
      end
    end
  end
  return missing
end

-- A run's params for its undos: the kept ones, with each secret param back
-- (RELISH_PARAM_<NAME>, the default); one that cannot come back raises when
-- an undo reads it.
local function undo_params(run, recipe)
  local params, gone = {}, {}
  for k, v in pairs(J.decode_params(run.params)) do
    if kept_secret(recipe, k, v) then
      params[k] = secret_param(recipe, k)
      if params[k] == nil then gone[k] = true end
    else
      params[k] = v
    end
  end
  return setmetatable(params, { __index = function(_, k)
    if gone[k] then
      error(string.format("param '%s' is a secret and was not kept in the journal: set RELISH_PARAM_%s", k,
        k:upper()), 2)
    end
  end })
end

-- Before a run starts: the secrets its steps' undos need must be there, or a
-- failure could not be rolled back. Returns nothing or raises a usage error.
local function check_needs(recipe, file)
  local missing = {}
  for _, s in ipairs(recipe.steps) do
    for _, spec in ipairs(s.needs and s.needs.secrets or {}) do
      local why = secret_missing(spec)
      if why then missing[#missing + 1] = string.format("%s, for the undo of step %q", why, s.name) end
    end
  end
  if #missing > 0 then
    invalid(string.format("%s: what the undos need is missing, so a failure could not be rolled back:\n  %s",
      file or recipe.name, table.concat(missing, "\n  ")))
  end
end

local function describe_item(it)
  if it.type == "step" then return string.format("undo of step %q (its own undo function)", it.name) end
  local a = it.a
  return string.format("%s %s (action %d: %s)", a.kind, a.target, a.seq, a.describe)
end

-- Rolls a run back. E carries journal, out, run (row), recipe (or nil),
-- params, state, budget, dry_run, force (undo also what changed since).
-- Returns "complete" | "incomplete", left,
-- why it stopped early (or nil), how many items it had to undo, and what it
-- undid (one line each).
function M.rollback(E)
  local journal, out, run = E.journal, E.out, E.run
  local items = rollback_items(journal, run, E.recipe, E.after_seq)
  local left, undone, irreversible, done = {}, 0, {}, {}
  -- The world matters more than the journal's rows: a journal write that
  -- fails (a full disk) never stops the rollback; what it could not record
  -- is listed as left to do, and the rollback is not complete.
  local unrecorded = {}
  local function journaled(what, fn, ...)
    local ok, err = pcall(fn, journal, ...)
    if not ok then unrecorded[#unrecorded + 1] = string.format("%s: %s", what, first_line(errmsg(err))) end
    return ok, err
  end
  out:event("rollback_started", { actions = #items, reason = E.reason, dry_run = E.dry_run })
  -- the room kept at the run's start is for these rows
  if not E.dry_run then journal:release_reserve() end
  local began, attempt
  if not E.dry_run then began, attempt = journaled("the start of the rollback", journal.rollback_begin, run.id,
    { reason = E.reason, requested = E.requested }) end
  if not began then attempt = nil end
  host.interrupt_reset()
  local deadline = E.budget and (host.now() + E.budget) or nil
  local stopped
  for n, it in ipairs(items) do
    if host.interrupted() then stopped = "interrupted by a second signal" end
    if deadline and host.now() > deadline then stopped = "rollback_timeout reached" end
    -- a rollback that lost its lock undoes nothing more: another process
    -- may be acting on the same things now
    if E.lease and not E.dry_run and not stopped then
      local held, why = pcall(E.lease.check, E.lease)
      if not held then stopped, E.lock_lost = errmsg(why), true end
    end
    if stopped then
      for k = n, #items do left[#left + 1] = describe_item(items[k]) .. ": not attempted (" .. stopped .. ")" end
      break
    end
    if it.type == "action" and it.a.undo == nil then
      -- irreversible: nothing to undo with; listed, but not a failed undo
      irreversible[#irreversible + 1] = it.a.describe
      out:event("undo", { kind = it.a.kind, target = it.a.target, describe = it.a.describe, status = "irreversible",
        error = "irreversible, not undone" })
    elseif E.dry_run then
      out:event("action_planned", { kind = it.type == "step" and "step.undo" or it.a.kind,
        describe = it.type == "step" and ("undo of step " .. it.name) or ("undo: " .. it.a.describe),
        irreversible = false })
    else
      local ok, err
      if it.type == "step" then
        -- what a step's undo changes is journaled too, as actions of the
        -- rollback (negative step numbers), never undone by a later rollback
        local okseq, maxseq = pcall(journal.max_seq, journal, run.id)
        if not okseq then maxseq = 0 end
        gate.set_run { journal = journal.db, run_id = run.id, dry_run = false, seq = maxseq, faults = false,
          guard = lease_guard(E.lease), on_event = function(ev, a) out:event(ev, a) end }
        gate.set_step(-it.idx)
        local ctx = make_ctx({ journal = journal, out = out, run_id = run.id, params = E.params or {},
          state = E.state or {}, dry_run = false, recipe = E.recipe })
        host.set_deadline(deadline, string.format("the undo of step %q of run %s", it.name, run.id))
        ok, err = xpcall(it.step.undo, function(e) return type(e) == "table" and e or tostring(e) end, ctx)
        host.set_deadline(nil)
        loop.reset()
        gate.clear_run()
        if ok then
          journaled(describe_item(it) .. ": undone, but not recorded", journal.step_undone, run.id, it.idx)
        else
          journaled(describe_item(it) .. ": its failure not recorded", journal.step_undo_failed, run.id, it.idx,
            secret.redact(errmsg(err)))
        end
        out:event("undo", { kind = "step", target = it.name, status = ok and "undone" or "undo_failed",
          error = not ok and first_line(secret.redact(errmsg(err))) or nil })
      else
        local a = it.a
        local record = json.decode(a.undo)
        ok, err = pcall(effect.undo, a.kind, record, a.provider, E.force and { force = true } or nil)
        if ok then
          journaled(describe_item(it) .. ": undone, but not recorded", journal.mark_action, run.id, a.seq, "undone", nil)
          -- an undo that acted anew (a revert it pushed) says what it did:
          -- journaled as actions of the rollback, like a step undo's
          for _, d in ipairs(type(err) == "table" and err.actions or {}) do
            journaled(string.format("%s %s (done by the undo of action %d): not recorded", d.kind, d.target, a.seq),
              function()
                local seq = journal:max_seq(run.id) + 1
                journal:action_begin(run.id, -a.step, seq, { kind = d.kind, target = d.target,
                  describe = d.describe, detail = d.detail, irreversible = false }, "done", false)
                journal:action_end(run.id, seq, "done")
              end)
          end
        else
          journaled(describe_item(it) .. ": its failure not recorded", journal.mark_action, run.id, a.seq,
            "undo_failed", secret.redact(errmsg(err)))
        end
        out:event("undo", { kind = a.kind, target = a.target, describe = a.describe,
          status = ok and "undone" or "undo_failed", error = not ok and first_line(secret.redact(errmsg(err))) or nil })
        if ok and type(err) == "table" and err.note then
          out:event("note", { message = secret.redact(err.note) })
          journaled("a note of the undo of action " .. a.seq, journal.event, run.id, "rollback", secret.redact(err.note))
        end
      end
      if ok then
        undone = undone + 1
        done[#done + 1] = describe_item(it)
      else
        left[#left + 1] = describe_item(it) .. ": " .. first_line(secret.redact(errmsg(err)))
      end
    end
  end
  if attempt then
    local status = (#left == 0 and #unrecorded == 0) and "complete" or "incomplete"
    journaled("the end of the rollback", journal.rollback_end, attempt, status, left, undone)
  end
  if #unrecorded > 0 then
    -- undone, but a later `relish rollback` would not know: it undoes them
    -- again (an undo done twice changes nothing) and records it
    for _, u in ipairs(unrecorded) do
      left[#left + 1] = string.format("%s (the journal could not record it: run `relish rollback %s` again once "
        .. "it can be written)", u, run.id)
    end
  end
  local status = #left == 0 and "complete" or "incomplete"
  out:event("rollback_finished", { status = status, left = json.array(left), undone = undone,
    irreversible = json.array(irreversible), dry_run = E.dry_run, actions = #items })
  if not E.dry_run then pcall(journal.reserve, journal) end
  return status, left, stopped, #items, done
end

-- ---- running ------------------------------------------------------------------

local function finish_run(E, status, code, err)
  E.journal:finish_run(E.run_id, status, code, err and secret.redact(err) or nil)
end


local function start_gate(E)
  gate.set_run {
    journal = E.journal.db, run_id = E.run_id, dry_run = E.dry_run, expect = E.expect, seq = E.seq or 0,
    guard = lease_guard(E.lease),
    on_event = function(ev, a)
      if ev == "action_started" then E.acted = true end
      if ev == "action_planned" then a.irreversible = irreversible(E.recipe, a.step, a.irreversible) end
      E.out:event(ev, a)
    end,
  }
end

-- The recipe's notify handlers (on_start, on_success, on_failure,
-- on_rollback), each called with ctx and the run's outcome. Their messages are
-- effects outside the run's plan: not in a saved plan, never undone, planned
-- (not sent) in a dry-run; each is logged and journaled as a "notify" event. A
-- failing handler is logged and never changes the run's outcome.
local NOTIFY_BUDGET = 60

local function notify(E, ctx, event, outcome)
  local fn = E.recipe.notify and E.recipe.notify[event]
  if not fn then return end
  local function say(text)
    text = secret.redact(text)
    pcall(E.journal.event, E.journal, E.run_id, "notify", text)
    E.out:event("log", { message = text })
  end
  host.set_deadline(host.now() + NOTIFY_BUDGET, string.format("the %s handler of run %s", event, E.run_id))
  local ok, effects, fine, err = pcall(gate.capture, function() return pcall(fn, ctx, outcome) end,
    { dry_run = E.dry_run })
  host.set_deadline(nil)
  loop.reset()
  if not ok then fine, err, effects = false, effects, {} end
  for _, a in ipairs(effects) do
    say(string.format("notify %s: %s (%s%s)", event, a.describe, a.status, a.error and (": " .. a.error) or ""))
  end
  if not fine then say(string.format("notify %s failed: %s", event, first_line(errmsg(err)))) end
end

local execute_steps, runbook_outline

-- The common tail of run and resume: steps, then success, or failure with
-- rollback or stop. Returns the exit code. A journal found damaged once the
-- run has acted is not "nothing changed" (exit 2) but exit 3: what the run
-- did may not be recorded, and a person must look.
local function execute(E)
  local ok, code = pcall(execute_steps, E)
  if ok then return code end
  if type(code) == "table" and code.kind == "journal" and E.acted and (code.exit or 1) < 3 then
    code.exit = 3
  end
  error(code, 0)
end

function execute_steps(E)
  local ctx = make_ctx(E)
  local started = host.now()
  if E.recipe.timeout then E.run_deadline = host.now() + E.recipe.timeout end
  notify(E, ctx, "on_start", { status = "running", run_id = E.run_id, recipe = E.recipe.name,
    dry_run = E.dry_run, resumed = E.start > 1 })
  start_gate(E)
  local ok, failure = pcall(run_steps, E, ctx)
  if not ok then failure = { step = 0, error = failure } end
  if not failure and E.expect and gate.expect_left() > 0 then
    failure = { step = #E.recipe.steps, error = { kind = "drift",
      message = string.format("the recipe finished with %d planned action(s) not done: the plan no longer matches",
        gate.expect_left()) } }
  end
  gate.clear_run()
  host.set_deadline(nil)
  local planned, nirreversible = 0, 0
  if E.dry_run then
    for _, a in ipairs(E.journal:actions(E.run_id)) do
      planned = planned + 1
      if irreversible(E.recipe, a.step, a.irreversible) then nirreversible = nirreversible + 1 end
    end
  end

  local code, status, errtext, rstatus, changed, rolled
  if not failure then
    code, status = EXIT.ok, E.dry_run and "planned" or "succeeded"
  elseif failure.paused then
    code, status = EXIT.paused, "paused"
  elseif failure.stopped then
    -- a person quit before a step: what was done stays (resume goes on from
    -- that step, rollback undoes it)
    code, status, errtext = EXIT.failed, "stopped", first_line(errmsg(failure.error))
  else
    local interrupted = errkind(failure.error) == "interrupted" or host.interrupted()
    local lost = errkind(failure.error) == "lock_lost"
    errtext = first_line(errmsg(failure.error))
    if failure.step and failure.step > 0 and E.recipe.steps[failure.step] then
      errtext = string.format("step %q: %s", E.recipe.steps[failure.step].name, errtext)
    end
    if E.dry_run then
      code, status = interrupted and EXIT.interrupted or EXIT.failed, "failed"
    elseif lost then
      -- no automatic rollback without the lock: another run may hold it now.
      -- Stopped, as at a failure with on_failure = "stop": resume or roll back
      -- (each takes the lock again)
      code, status = EXIT.locked, "stopped"
    elseif not interrupted and type(failure.error) == "table" and failure.error.keep_done then
      -- the step rolled back what it meant to (ctx.rollback_to) and keeps
      -- what came before: stopped, as with on_failure = "stop" (resume it,
      -- or relish rollback it to undo the rest)
      code, status = EXIT.failed, "stopped"
      -- what it undid is not all undone: a person must look
      if failure.error.rollback_incomplete then code, status = EXIT.incomplete, "rollback_failed" end
    elseif interrupted or E.recipe.on_failure == "rollback" then
      local run = E.journal:find_run(E.run_id)
      local rs, left, _, nitems, done = M.rollback { journal = E.journal, out = E.out, run = run,
        recipe = E.recipe, params = E.params, state = E.state, budget = E.recipe.rollback_timeout,
        reason = interrupted and "interrupted" or errtext, lease = E.lease }
      -- nothing journaled, nothing to undo: the run failed before changing anything
      changed = nitems > 0
      if changed then rstatus, rolled = rs, { undone = json.array(done), left = json.array(left) } end
      if rs == "complete" then
        code = interrupted and EXIT.interrupted or EXIT.failed
        status = interrupted and "interrupted" or "rolled_back"
      else
        code, status = EXIT.incomplete, "rollback_failed"
      end
    else
      code, status = EXIT.failed, "stopped"
    end
    -- a question nobody could answer before anything changed: bad input
    if errkind(failure.error) == "unanswered" and not changed and not E.acted and code == EXIT.failed then
      code = EXIT.usage
    end
  end
  -- the journal may be full: the run's end is said anyway, and a run that
  -- changed something and cannot record how it ended needs a person
  local recorded, jerr
  if status == "paused" then
    -- not finished: the run keeps its leases, parked for it in the same
    -- transaction, until resume or rollback takes them again
    recorded, jerr = pcall(E.journal.pause_run, E.journal, E.run_id, code, E.lease and E.lease.names or {})
    if recorded and E.lease then E.lease:park() end
  else
    recorded, jerr = pcall(finish_run, E, status, code, errtext)
  end
  if not recorded then
    E.out:write(string.format("warning: the journal could not record that run %s ended (%s): relish show will "
      .. "call it crashed; relish rollback %s can still undo it\n", E.run_id, first_line(errmsg(jerr)), E.run_id))
    if changed and code ~= EXIT.ok then code = EXIT.incomplete end
    -- its files deleted, replaced or truncated under the run: what the run
    -- did may not be recorded, even when it succeeded
    if type(jerr) == "table" and jerr.tampered then code = EXIT.incomplete end
  end
  -- paused: said with how to go on; the run has not ended (no metrics, no
  -- notify handlers) and its leases stay held
  if status == "paused" and not recorded then
    code = EXIT.incomplete -- the pause is not recorded: the run will show as crashed
  elseif status == "paused" then
    local p = failure.paused
    E.out:event("paused", { gate = p.id, question = p.question, step = E.recipe.steps[p.step].name,
      step_index = p.step, resume = "relish resume " .. E.run_id, rollback = "relish rollback " .. E.run_id,
      lock = E.lock_name or json.null })
    E.out:event("run_finished", { status = status, exit_code = code, dry_run = false,
      elapsed = host.now() - started, gate = p.id })
    return code
  end
  -- the run's own metrics, when a Pushgateway is configured (never for a
  -- dry-run; a failed push is a warning, not the run's outcome)
  local pushgateway = os.getenv("RELISH_PUSHGATEWAY")
  if pushgateway and pushgateway ~= "" and not E.dry_run then
    local pushed, why = require("relish.metrics.runs").push(pushgateway, { recipe = E.recipe.name, status = status,
      elapsed = host.now() - started, finished = host.time() })
    if not pushed then E.out:write("warning: " .. secret.redact(why) .. "\n") end
  end
  local outcome = { status = status, exit_code = code, error = errtext, run_id = E.run_id,
    recipe = E.recipe.name, dry_run = E.dry_run, elapsed = host.now() - started, rollback = rstatus,
    step = failure and failure.step and E.recipe.steps[failure.step] and E.recipe.steps[failure.step].name }
  -- on_rollback only when there was something to roll back, saying what was
  -- undone and what is left to do by hand
  if rolled then
    outcome.undone, outcome.left = rolled.undone, rolled.left
    notify(E, ctx, "on_rollback", outcome)
  end
  notify(E, ctx, failure and "on_failure" or "on_success", outcome)
  -- the lock goes with the process: a stopped run takes it again on resume, so
  -- nobody is left locked out by a run that is waiting for a person
  if E.lease then pcall(E.lease.release, E.lease) end -- a full journal must not hide the outcome
  E.out:event("run_finished", { status = status, exit_code = code, error = errtext, dry_run = E.dry_run,
    planned = planned, irreversible = nirreversible, elapsed = host.now() - started, changed = changed })
  return code
end

-- The leases a process working on a run holds: the run's own (a run, its
-- resume and its rollbacks exclude each other) and the recipe's lock.
local function run_locks(run_id, lock_name)
  return { "run:" .. run_id, lock_name }
end

-- A to-be-closed value that lets go of E.lease however the command ends.
local function releasing(E)
  return setmetatable({}, { __close = function() if E.lease then pcall(E.lease.release, E.lease) end end })
end

local function lock_name_of(recipe, params)
  if not recipe.lock then return nil end
  if type(recipe.lock) == "string" then return recipe.lock end
  local ok, v = pcall(recipe.lock, params)
  if not ok or type(v) ~= "string" or v == "" then
    invalid("recipe lock function must return a non-empty string: " .. tostring(v))
  end
  return v
end

-- --wait-lock: how a wait for a held lock shows (the holder, and on a
-- terminal the spinner with the time waited), for lock.acquire.
local function lock_wait(out, seconds)
  if not seconds then return nil end
  local spinning = false
  return {
    seconds = seconds,
    on_wait = function(l)
      out:event("lock_wait", { lock = l.name, holder_run_id = l.run_id, holder = lock.holder_text(l),
        wait = seconds })
      if out.format == "json" then return end
      local label = string.format("waiting up to %s for lock '%s', held by %s", output.fmt_elapsed(seconds), l.name,
        lock.holder_text(l))
      if out.tty then
        if spinning then out:write("\r\27[K") end
        out:write("  … " .. label)
        host.progress(label)
        spinning = true
      else
        out:write(label .. "\n")
      end
    end,
    on_done = function()
      if spinning then
        host.progress(nil)
        out:write("\r\27[K")
      end
    end,
  }
end

-- Takes a past run's leases again (rollback, resume); another process
-- working on the run is named as such.
local function hold_run(journal, run, lock_name, out, wait_lock)
  local ok, lease = pcall(lock.hold, journal, run_locks(run.id, lock_name), run.id, true, lock_wait(out, wait_lock))
  if ok then return lease end
  if type(lease) == "table" and lease.kind == "locked" and type(lease.message) == "string"
    and lease.message:find("lock 'run:" .. run.id .. "'", 1, true) then
    lease.message = string.format("another process is working on run %s (a rollback or a resume): %s", run.id,
      lease.message)
  end
  error(lease, 0)
end

-- What a runbook shows at its start: its facts and its steps, each with
-- what it asks.
function runbook_outline(recipe, guided)
  local steps = {}
  for i, s in ipairs(recipe.steps) do
    local asks = {}
    if s.choose then asks[#asks + 1] = "choose" end
    if s.confirm then asks[#asks + 1] = "confirm" end
    steps[i] = { name = s.name, check = s.check or false, description = s.description, asks = json.array(asks) }
  end
  local m = recipe.meta or {}
  return { name = recipe.name, kind = recipe.kind, severity = m.severity, service = m.service, owner = m.owner,
    links = json.array(m.links or {}), description = recipe.description, steps = json.array(steps),
    guided = guided or false }
end

-- The libraries the recipe loaded, kept with the run; one a step loads
-- later (a require inside run) is added when it loads.
local function record_libraries(E)
  local S = E.recipe.libraries
  if not S then return end
  E.journal:record_libraries(E.run_id, S.libraries)
  S.hook = function(lib) E.journal:record_libraries(E.run_id, { lib }) end
end

local function sha256_text(s)
  return require("relish.fs").sha256(s)
end

-- The questions a run will ask: answers given in advance are checked (every
-- key a step, every choice one of its options) and, without a terminal,
-- every question known before the run starts must have one. Raises a usage
-- error (nothing ran); returns the asker's options.
local function askable(recipe, opts, out)
  local answers = ask.answers(opts.answers, opts.answers_file)
  ask.check_answers(recipe, answers, opts.file)
  local terminal = ask.terminal(out)
  if not terminal and not opts.dry_run then
    local missing = ask.needed(recipe, answers, { yes = opts.yes, guided = opts.guided })
    if #missing > 0 then
      invalid(string.format("%s: this %s asks a person, and stdin is not a terminal: give the answers in advance " ..
        "(-a STEP=ANSWER, --answers FILE) or run it on a terminal; nothing ran:\n  %s", opts.file, recipe.kind,
        table.concat(missing, "\n  ")))
    end
  end
  return { answers = answers, terminal = terminal, yes = opts.yes and true or false, dry_run = opts.dry_run }
end

-- run{file=, params=raw, dry_run=, output=, state=, expect=, plan_out=, wait_lock=, yes=, answers=,
-- answers_file=, guided=} -> exit code
function M.run(opts)
  local recipe, path, source = dsl.load(opts.file)
  local params = dsl.check_params(recipe, opts.params or {}, opts.file)
  if not opts.dry_run then check_needs(recipe, opts.file) end
  local out = output.new { format = opts.output }
  local asking = askable(recipe, opts, out)
  local journal = J.open(opts.state)
  local E = { recipe = recipe, params = params, journal = journal, out = out, run_id = new_run_id(),
    dry_run = opts.dry_run and true or false, state = {}, start = 1, expect = opts.expect,
    guided = opts.guided and true or false, since = host.time() }
  asking.out, asking.journal, asking.run_id = out, journal, E.run_id
  E.asker = ask.new(asking)
  E.asker.pause_clock = function() return pause_clock(E) end
  out.run_id = E.run_id
  E.lock_name = lock_name_of(recipe, params)
  E.deploys = recipe.deploys and recipe.deploys(params)
  local _ <close> = releasing(E)
  if not E.dry_run then
    E.lease = lock.hold(journal, run_locks(E.run_id, E.lock_name), E.run_id, nil, lock_wait(out, opts.wait_lock))
  end
  local hash = sha256_text(source)
  local names = {}
  for i, s in ipairs(recipe.steps) do names[i] = s.name end
  journal:create_run({ id = E.run_id, recipe = recipe.name, file = path, recipe_hash = hash,
    params = storable_params(params), dry_run = E.dry_run, lock_name = E.lock_name,
    service = E.deploys and E.deploys.service, environment = E.deploys and E.deploys.environment,
    version = E.deploys and E.deploys.version, meta = recipe.meta and json.encode(recipe.meta) }, names)
  record_libraries(E)
  out:event("run_started", { recipe = recipe.name, file = path, params = json.decode(storable_params(params)),
    dry_run = E.dry_run, run_id = E.run_id, kind = recipe.kind })
  if recipe.meta or E.guided then out:event("runbook", runbook_outline(recipe, E.guided)) end
  if not E.dry_run then
    journal:reserve() -- room for a rollback's rows, should the disk fill up
    out:check_disk(journal, E.run_id)
  end
  local code = execute(E)
  if opts.plan_out and code == 0 then
    M.save_plan(journal, E.run_id, opts.plan_out, recipe, path, hash, params)
  end
  journal:close()
  return code
end

-- Params kept in the journal or a plan have their secrets as "***": take
-- each from given (resume -p), then RELISH_PARAM_<NAME>, then the recipe's
-- default; anything else is a usage error naming the way to pass it.
local function restore_secret_params(kept, recipe, given, how)
  local raw = {}
  for k, v in pairs(kept) do raw[k] = v end
  for k, v in pairs(given or {}) do
    local p = recipe and recipe.params[k]
    if raw[k] ~= "***" and not (p == nil) and raw[k] ~= nil then
      invalid(string.format(
        "param '%s' cannot change on %s (the run has %s); only secrets, which are not kept, can be given again",
        k, how, json.encode(raw[k])))
    end
    raw[k] = v
  end
  for k, v in pairs(raw) do
    if v == "***" then
      local env = os.getenv("RELISH_PARAM_" .. k:upper())
      if env then
        raw[k] = env
      elseif recipe and recipe.params[k] and recipe.params[k].default ~= nil then
        raw[k] = nil -- the default applies again
      else
        invalid(string.format(
          "param '%s' is a secret and was not kept: %sset RELISH_PARAM_%s", k,
          how == "resume" and ("pass -p " .. k .. "=... or ") or "", k:upper()))
      end
    end
  end
  return raw
end

-- ---- saved plans -----------------------------------------------------------------

-- A plan's own hash: the sha256 of its content (everything but plan_hash:
-- params, recipe and its hash, actions with their fingerprints and pins) as
-- canonical JSON (keys sorted, compact, after one decode so that the maker
-- and apply hash the same value). apply refuses a plan whose content no
-- longer matches it: params edited in plan.json are not applied.
local function plan_hash(plan)
  local content = {}
  for k, v in pairs(plan) do
    if k ~= "plan_hash" then content[k] = v end
  end
  local canonical = json.encode(json.decode(json.encode(content, { sort_keys = true })), { sort_keys = true })
  return sha256_text(canonical)
end

local PLAN_VERSION = 2 -- 2: fingerprints carry pins, the plan its plan_hash

function M.save_plan(journal, run_id, file, recipe, path, hash, params)
  local actions = {}
  for _, a in ipairs(journal:actions(run_id)) do
    actions[#actions + 1] = { seq = a.seq, step = a.step, kind = a.kind, target = a.target,
      describe = a.describe, fingerprint = a.fingerprint or json.null,
      irreversible = irreversible(recipe, a.step, a.irreversible) }
  end
  local plan = { relish_plan = PLAN_VERSION, recipe = recipe.name, file = path, recipe_hash = hash,
    params = json.decode(storable_params(params)), created_at = J.now_iso(), run_id = run_id,
    actions = json.array(actions) }
  -- paths are bytes: json_safe keeps them exactly (x_b64, read back by
  -- json_restore in apply); the hash is over what the file holds; written
  -- whole or not at all
  local safe = require("relish.output").json_safe(plan)
  safe.plan_hash = plan_hash(safe)
  local text = json.encode(safe, { pretty = true, sort_keys = true }) .. "\n"
  local tmp = file .. ".tmp"
  local fh, err = io.open(tmp, "w")
  if not fh then invalid("cannot write plan " .. file .. ": " .. tostring(err)) end
  local ok, werr = fh:write(text)
  if ok then ok, werr = fh:close() else fh:close() end
  if ok then ok, werr = os.rename(tmp, file) end
  if not ok then
    os.remove(tmp)
    invalid("cannot write plan " .. file .. ": " .. tostring(werr))
  end
end

function M.apply(opts)
  local fh = io.open(opts.plan, "rb")
  if not fh then invalid("cannot open plan " .. opts.plan) end
  local text, rerr = fh:read("a")
  fh:close()
  if not text then invalid("cannot read plan " .. opts.plan .. ": " .. tostring(rerr)) end
  local plan, err = require("relish._errors").try(json.decode, text)
  if not plan or type(plan) ~= "table" or type(plan.relish_plan) ~= "number" or type(plan.actions) ~= "table" then
    invalid(opts.plan .. ": not a relish plan" .. (err and (" (" .. tostring(err) .. ")") or ""))
  end
  if plan.relish_plan ~= PLAN_VERSION then
    invalid(string.format("%s: a plan of format %s, made by another version of relish (this one applies format %d): "
      .. "make a new plan", opts.plan, tostring(plan.relish_plan), PLAN_VERSION))
  end
  if type(plan.plan_hash) ~= "string" or plan_hash(plan) ~= plan.plan_hash then
    invalid(string.format("%s was modified after it was made (its content does not match its plan_hash): "
      .. "nothing was applied; make a new plan", opts.plan))
  end
  plan, err = require("relish.output").json_restore(plan)
  if not plan then invalid(opts.plan .. ": not a relish plan (" .. tostring(err) .. ")") end
  local sfh = io.open(plan.file, "rb")
  if not sfh then invalid("the plan's recipe " .. tostring(plan.file) .. " is gone") end
  local source = sfh:read("a")
  sfh:close()
  if sha256_text(source) ~= plan.recipe_hash then
    invalid(string.format(
      "the recipe %s changed since the plan was made (sha256 %s, plan has %s): make a new plan",
      plan.file, sha256_text(source):sub(1, 12), tostring(plan.recipe_hash):sub(1, 12)))
  end
  local raw = restore_secret_params(J.decode_params(plan.params), (dsl.load(plan.file)), nil, "apply")
  local expect = {}
  for i, a in ipairs(plan.actions) do
    expect[i] = { kind = a.kind, target = a.target, fingerprint = a.fingerprint ~= json.null and a.fingerprint or nil }
  end
  return M.run { file = plan.file, params = raw, output = opts.output, state = opts.state, expect = expect,
    wait_lock = opts.wait_lock }
end

-- ---- rollback and resume of a past run -------------------------------------------

local crashed = J.crashed

local function load_recipe_for(run, out)
  local ok, recipe, _, source = pcall(dsl.load, run.file)
  if not ok then
    out:write(string.format("warning: cannot load recipe %s (%s): steps' own undo functions are unavailable\n",
      run.file, errmsg(recipe)))
    return nil
  end
  if run.recipe_hash and sha256_text(source) ~= run.recipe_hash then
    out:write(string.format("warning: recipe %s changed since run %s\n", run.file, run.id))
  end
  return recipe
end

local function check_not_running(run)
  if run.status == "running" and not crashed(run) then
    error({ kind = "locked", exit = 4, message = string.format(
      "run %s is still running (user %s, host %s, pid %s)", run.id, run.user or "?", run.host or "?", tostring(run.pid)) }, 0)
  end
end

function M.rollback_cmd(opts)
  local journal = J.open(opts.state)
  local out = output.new { format = opts.output }
  local run = journal:find_run(opts.run_id)
  out.run_id = run.id
  if run.dry_run then
    invalid("run " .. run.id .. " was a dry-run: nothing to roll back")
  end
  check_not_running(run)
  local R = { journal = journal, out = out, dry_run = opts.dry_run, reason = "requested", requested = true,
    force = opts.force }
  local _ <close> = releasing(R)
  if not opts.dry_run then
    -- the run's own lock (another rollback, a resume, the run itself) and
    -- its recipe's; then the run as it is now: what another process did
    -- while this one waited is not done again nor listed as left to do
    R.lease = hold_run(journal, run, run.lock_name, out, opts.wait_lock)
    run = journal:find_run(run.id)
    check_not_running(run)
  end
  -- rolling back a paused run is the decision to abort at its gate (journaled
  -- before anything is undone; a --dry-run decides nothing)
  local abort_gates = {}
  if run.status == "paused" then
    for _, g in ipairs(journal:gates(run.id)) do
      if g.status == "paused" then abort_gates[#abort_gates + 1] = g end
    end
  end
  local recipe = load_recipe_for(run, out)
  local missing = preflight(run, recipe, rollback_items(journal, run, recipe))
  if #missing > 0 then
    invalid(string.format("cannot roll back run %s: what its undos need is missing (nothing was undone):\n  %s",
      run.id, table.concat(missing, "\n  ")))
  end
  R.run, R.recipe, R.budget = run, recipe, recipe and recipe.rollback_timeout
  R.params = undo_params(run, recipe)
  R.state = json.decode(run.state) or {}
  out:write(string.format("%s run %s of %s (%s)\n", opts.dry_run and "Rollback plan for" or "Rolling back",
    run.id, run.recipe, run.status))
  if not opts.dry_run then
    for _, g in ipairs(abort_gates) do
      local actor = journal:gate_decide(run.id, g.id, "abort", "rollback")
      out:event("decision", { gate = g.id, decision = "abort", by = actor, via = "rollback" })
      R.reason = string.format("aborted by %s at the gate %s", actor, g.id)
    end
  end
  local status = M.rollback(R)
  if R.lock_lost then
    -- another process may be working on the run now: its status is theirs
    out:write(string.format("rollback of run %s stopped: %s\n", run.id, R.lease.lost))
    R.lease:release()
    journal:close()
    return EXIT.locked
  end
  if not opts.dry_run then
    local ok, err = pcall(journal.set_run_status, journal, run.id, status == "complete" and "rolled_back"
      or "rollback_failed")
    if not ok then
      out:write(string.format("the journal could not record the run's new status (%s): run `relish rollback %s` "
        .. "again once it can be written\n", first_line(errmsg(err)), run.id))
      status = "incomplete"
    end
    pcall(R.lease.release, R.lease)
  end
  journal:close()
  if status ~= "complete" then return EXIT.incomplete end
  return EXIT.ok
end

function M.resume(opts)
  local journal = J.open(opts.state)
  local out = output.new { format = opts.output }
  local run = journal:find_run(opts.run_id)
  out.run_id = run.id
  check_not_running(run)
  local function resumable(r) return r.status == "stopped" or r.status == "paused" or crashed(r) end
  if not resumable(run) then
    invalid(string.format(
      "run %s is %s: only a stopped, paused or crashed run can be resumed", run.id, run.status))
  end
  local recipe, _, source = dsl.load(run.file)
  if run.recipe_hash and sha256_text(source) ~= run.recipe_hash then
    out:write(string.format("note: recipe %s changed since the run started; resuming with the new text\n", run.file))
  end
  local raw = restore_secret_params(J.decode_params(run.params), recipe, opts.params, "resume")
  local params = dsl.check_params(recipe, raw, run.file)
  check_needs(recipe, run.file)
  local start
  for _, s in ipairs(journal:steps(run.id)) do
    if s.status ~= "done" and s.status ~= "skipped" then start = s.idx break end
  end
  start = start or (#recipe.steps + 1)
  local maxseq = journal:max_seq(run.id)
  local E = { recipe = recipe, params = params, journal = journal, out = out, run_id = run.id,
    dry_run = false, state = json.decode(run.state) or {}, start = start, seq = maxseq,
    lock_name = run.lock_name, deploys = run.service and { service = run.service },
    since = J.iso_seconds(run.started_at) }
  -- a resumed runbook asks its questions again, at the terminal (or --yes)
  E.asker = ask.new { out = out, journal = journal, run_id = run.id, terminal = ask.terminal(out), yes = opts.yes }
  E.asker.pause_clock = function() return pause_clock(E) end
  local _ <close> = releasing(E)
  E.lease = hold_run(journal, run, E.lock_name, out, opts.wait_lock)
  -- what the journal said before the lock was held may be old: another
  -- process may have resumed or rolled the run back meanwhile
  local now = journal:find_run(run.id)
  if not resumable(now) then
    check_not_running(now)
    invalid(string.format("run %s is %s now: only a stopped, paused or crashed run can be resumed", run.id,
      now.status))
  end
  journal:resume_run(run.id)
  record_libraries(E)
  journal:reserve()
  journal:event(run.id, "note", string.format("resumed by %s from step %d", J.actor(), start))
  out:event("run_started", { recipe = recipe.name, file = run.file, resumed = true, from_step = start, run_id = run.id })
  -- resuming a paused run is the decision to promote at its gate: the step
  -- that paused runs again and ctx.decide returns "promote" there at once
  if now.status == "paused" then
    for _, g in ipairs(journal:gates(run.id)) do
      if g.status == "paused" then
        local actor = journal:gate_decide(run.id, g.id, "promote", "resume")
        out:event("decision", { gate = g.id, decision = "promote", by = actor, via = "resume" })
      end
    end
  end
  local code = execute(E)
  journal:close()
  return code
end

return M
