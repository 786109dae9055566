-- relish show RUN_ID: one run from the journal, as text, JSON, a postmortem
-- draft in Markdown (relish.postmortem) or HTML (relish.report_html): what the
-- run did (its outcome and exit code), each step and action in its final state
-- with its history, every rollback attempt made since, and the manual gates
-- with each decision made there.
local J = require "relish.journal"
local json = require "relish.json"

local function first_line(s) return s and s:match("^[^\n]*") end

-- A run's own facts beyond the recipe (runs.meta: a runbook's kind,
-- severity, service, owner, description, links), as one shape: text fields
-- or nil, links as {title=, url=, web=} (a plain string is its own title;
-- web: an http(s) or mailto address, the only kind shown as a link). NULL
-- for recipes and older journals: no facts.
local META_TEXT = { "kind", "severity", "service", "owner", "description" }

local function run_meta(text)
  local ok, m = pcall(json.decode, text or "null")
  if not ok or type(m) ~= "table" then m = {} end
  local meta = { links = {} }
  for _, k in ipairs(META_TEXT) do
    local v = m[k]
    if type(v) == "number" then v = tostring(v) end
    if type(v) == "string" and v ~= "" then meta[k] = v end
  end
  for _, l in ipairs(type(m.links) == "table" and m.links or {}) do
    local link
    if type(l) == "string" and l ~= "" then
      link = { title = l, url = l }
    elseif type(l) == "table" and type(l.url) == "string" and l.url ~= "" then
      link = { title = type(l.title) == "string" and l.title ~= "" and l.title or l.url, url = l.url }
    end
    -- only web and mail addresses become links (never javascript: or a file)
    if link then
      link.web = link.url:match("^[Hh][Tt][Tt][Pp][Ss]?://") ~= nil or link.url:match("^mailto:") ~= nil
      meta.links[#meta.links + 1] = link
    end
  end
  return meta
end

-- Which steps have their own undo (a rollback runs it instead of the
-- automatic undos of the step's actions): the journal does not say, the
-- recipe does, when its file still loads and is the one the run ran.
-- -> {[step index] = true}, or nil and why it is not known
local function own_undos(d)
  local ok, recipe, _, source = pcall(require("relish.dsl").load, d.run.file)
  if not ok then return nil, "the recipe file " .. d.run.file .. " does not load" end
  if d.run.recipe_hash and require("relish.fs").sha256(source) ~= d.run.recipe_hash then
    return nil, "the recipe file " .. d.run.file .. " changed since the run"
  end
  local set = {}
  for i, s in ipairs(recipe.steps) do
    if s.undo and d.names[i] == s.name then set[i] = true end
  end
  return set
end

-- The journal's rows, and what they mean together: which rollback attempt
-- made each action of a rollback and undid each step and action.
local function gather(journal, id)
  local run = journal:find_run(id)
  local d = {
    run = run,
    meta = run_meta(run.meta),
    steps = journal:steps(run.id),
    actions = journal:actions(run.id),
    events = journal:events(run.id),
    rollbacks = journal:rollbacks(run.id),
    gates = journal:gates(run.id),
    libraries = journal:libraries(run.id),
    names = {},
  }
  for _, s in ipairs(d.steps) do d.names[s.idx] = s.name end
  for n, rb in ipairs(d.rollbacks) do rb.n, rb.actions = n, {} end
  return d
end

-- the last attempt started at or before ts (times compare as text)
local function attempt_at(d, ts)
  local found
  for _, rb in ipairs(d.rollbacks) do
    if ts and rb.started_at <= ts then found = rb end
  end
  return found
end

-- the attempt whose own actions a rollback action is (by seq)
local function attempt_of(d, seq)
  local found
  for _, rb in ipairs(d.rollbacks) do
    if rb.first_seq <= seq then found = rb end
  end
  return found
end

local function undone_text(d, at)
  local rb = attempt_at(d, at)
  return string.format("undone by rollback%s at %s", rb and (" " .. rb.n) or "", at)
end

-- A step's history beyond its status: an error from before, a failed undo, its undo.
local function step_notes(d, s)
  local notes = {}
  if s.error then notes[#notes + 1] = (s.status == "failed" and "" or "failed: ") .. first_line(s.error) end
  if s.undo_error then notes[#notes + 1] = "undo failed: " .. first_line(s.undo_error) end
  if s.undone_at then notes[#notes + 1] = undone_text(d, s.undone_at) end
  return notes
end

local function action_notes(d, a)
  local notes = {}
  if a.error then notes[#notes + 1] = "failed: " .. first_line(a.error) end
  if a.undo_error then notes[#notes + 1] = "undo failed: " .. first_line(a.undo_error) end
  if a.undone_at then notes[#notes + 1] = undone_text(d, a.undone_at) end
  if a.step > 0 and a.irreversible and a.status ~= "undone" then notes[#notes + 1] = "irreversible" end
  return notes
end

-- actions of steps stay by step; those a step's undo made during a rollback
-- (a negative step in the journal) go with their rollback attempt
local function split_actions(d)
  local of_steps, orphans = {}, {}
  for _, a in ipairs(d.actions) do
    if a.step > 0 then
      of_steps[#of_steps + 1] = a
    else
      local rb = attempt_of(d, a.seq)
      if rb then table.insert(rb.actions, a) else orphans[#orphans + 1] = a end
    end
  end
  return of_steps, orphans
end

local function rollback_label(rb)
  if rb.requested then return "relish rollback" end
  return "on failure" .. (rb.reason and (" (" .. first_line(rb.reason) .. ")") or "")
end

local function rollback_result(rb)
  if rb.status == "running" then return "did not finish" end
  return string.format("%s, %d undone", rb.status, rb.undone or 0)
end

-- The run's own outcome, then what later rollbacks did to it.
local function outcome_text(d)
  local r = d.run
  local t = (r.outcome or J.shown_status(r)) .. (r.exit_code and (" (exit " .. r.exit_code .. ")") or "")
  for _, rb in ipairs(d.rollbacks) do
    if rb.requested then
      t = t .. string.format("; then relish rollback at %s by %s: %s", rb.started_at, rb.actor or "?",
        rollback_result(rb))
    end
  end
  return t
end

local function undo_step_name(d, a)
  return "undo of " .. (d.names[-a.step] or ("step " .. -a.step))
end

local function null(v) if v == nil then return json.null end return v end

-- A library the run loaded: name, version (or "-": a branch or commit),
-- commit and tree hash (what code made the run's changes)
local function library_text(l)
  return string.format("%-16s %-10s commit %s  tree %s%s", l.name, l.version or "-", l.commit,
    l.sha256:sub(1, 12), l.source and ("  " .. l.source) or "")
end

-- A manual gate for people: where it is now and every decision made there.
local GATE_STATE = { asked = "asked, no answer", paused = "paused: waiting for a person", promoted = "promoted",
  aborted = "aborted" }

local function gate_text(d, g)
  return string.format("%s (step %s) %s: %s", g.id, d.names[g.step] or tostring(g.step),
    GATE_STATE[g.status] or g.status, first_line(g.question))
end

local function decision_text(x)
  return string.format("%s %s by %s (via %s)", x.at, x.decision, x.actor, x.via)
end

-- how to go on from a paused run
local function paused_text(d)
  for _, g in ipairs(d.gates) do
    if g.status == "paused" and d.run.status == "paused" then
      return string.format("at gate %s of step %q since %s: `relish resume %s` promotes, `relish rollback %s` aborts",
        g.id, d.names[g.step] or tostring(g.step), g.asked_at, d.run.id, d.run.id)
    end
  end
end

local function as_json(d)
  local r = d.run
  local of_steps, orphans = split_actions(d)
  local out = {
    run_id = r.id, short_id = J.short_id(r.id), recipe = r.recipe, file = r.file, status = J.shown_status(r),
    outcome = r.outcome or J.shown_status(r), exit_code = null(r.exit_code), dry_run = r.dry_run, user = r.user,
    host = r.host, pid = r.pid, lock = null(r.lock_name), started_at = r.started_at, finished_at = null(r.finished_at),
    duration_s = null(J.duration(r.started_at, r.finished_at)), error = null(r.error),
    params = json.decode(r.params), state = json.decode(r.state), steps = json.array {}, actions = json.array {},
    rollbacks = json.array {}, events = json.array {}, gates = json.array {},
    meta = r.meta and json.decode(r.meta) or null(nil), libraries = json.array {},
  }
  for _, l in ipairs(d.libraries) do
    table.insert(out.libraries, { name = l.name, version = null(l.version), commit = l.commit, sha256 = l.sha256,
      source = null(l.source), loaded_at = l.loaded_at })
  end
  for _, g in ipairs(d.gates) do
    local decisions = json.array {}
    for _, x in ipairs(g.decisions) do
      decisions[#decisions + 1] = { decision = x.decision, by = x.actor, via = x.via, at = x.at }
    end
    table.insert(out.gates, { id = g.id, step = g.step, step_name = null(d.names[g.step]), question = g.question,
      status = g.status, asked_at = g.asked_at, decisions = decisions })
  end
  local function action_json(a, rb)
    local undone_by = a.undone_at and attempt_at(d, a.undone_at)
    return { seq = a.seq, step = math.abs(a.step), step_name = null(d.names[math.abs(a.step)]),
      phase = a.step > 0 and "step" or "rollback", rollback = null(rb and rb.n), kind = a.kind, target = a.target,
      describe = a.describe, status = a.status, irreversible = a.step > 0 and a.irreversible,
      fingerprint = null(a.fingerprint), error = null(a.error), undo_error = null(a.undo_error),
      undone_at = null(a.undone_at), undone_by = null(undone_by and undone_by.n), started_at = null(a.started_at),
      finished_at = null(a.finished_at), duration_s = null(J.duration(a.started_at, a.finished_at)),
      history = json.array(action_notes(d, a)) }
  end
  for _, s in ipairs(d.steps) do
    local undone_by = s.undone_at and attempt_at(d, s.undone_at)
    table.insert(out.steps, { index = s.idx, name = s.name, status = s.status, attempts = s.attempts,
      error = null(s.error), undo_error = null(s.undo_error), undone_at = null(s.undone_at),
      undone_by = null(undone_by and undone_by.n), started_at = null(s.started_at), finished_at = null(s.finished_at),
      duration_s = null(J.duration(s.started_at, s.finished_at)), history = json.array(step_notes(d, s)) })
  end
  for _, a in ipairs(of_steps) do table.insert(out.actions, action_json(a)) end
  for _, rb in ipairs(d.rollbacks) do
    local seqs = json.array {}
    for _, a in ipairs(rb.actions) do
      table.insert(out.actions, action_json(a, rb))
      seqs[#seqs + 1] = a.seq
    end
    table.insert(out.rollbacks, { n = rb.n, requested = rb.requested, reason = null(rb.reason), by = null(rb.actor),
      status = rb.status, undone = null(rb.undone), left = json.array(rb.left), actions = seqs,
      started_at = rb.started_at, finished_at = null(rb.finished_at),
      duration_s = null(J.duration(rb.started_at, rb.finished_at)) })
  end
  for _, a in ipairs(orphans) do table.insert(out.actions, action_json(a)) end
  for _, e in ipairs(d.events) do
    table.insert(out.events, { ts = e.ts, type = e.type, actor = e.actor, text = e.text, step = null(e.step) })
  end
  -- paths and log lines are bytes: what is not UTF-8 is shown losslessly
  return json.encode(require("relish.output").json_safe(out), { pretty = true, sort_keys = true }) .. "\n"
end

-- continuation lines of a multi-line text, indented to stay in their place
local function indent(text, pad) return (text:gsub("\n", "\n" .. pad)) end

local function as_text(d)
  local r = d.run
  local of_steps, orphans = split_actions(d)
  local L = {}
  local function add(s) L[#L + 1] = s end
  add(string.format("run %s  %s  %s", r.id, r.recipe, J.shown_status(r)))
  add(string.format("  outcome: %s", outcome_text(d)))
  add(string.format("  file:    %s", r.file))
  add(string.format("  by:      %s on %s, pid %s", r.user or "?", r.host or "?", tostring(r.pid)))
  add(string.format("  started: %s   finished: %s   took: %s", r.started_at, r.finished_at or "-",
    J.duration_text(J.duration(r.started_at, r.finished_at))))
  add(string.format("  params:  %s", r.params))
  if r.lock_name then add(string.format("  lock:    %s", r.lock_name)) end
  if r.error then add(string.format("  error:   %s", indent(r.error, "           "))) end
  local paused = paused_text(d)
  if paused then add(string.format("  paused:  %s", paused)) end
  if #d.libraries > 0 then
    add("libraries:")
    for _, l in ipairs(d.libraries) do add("  " .. library_text(l)) end
  end
  add("steps:")
  for _, s in ipairs(d.steps) do
    local notes = step_notes(d, s)
    add(string.format("  %2d %-24s %-11s %7s%s", s.idx, s.name, s.status,
      J.duration_text(J.duration(s.started_at, s.finished_at)), #notes > 0 and ("  " .. table.concat(notes, "; ")) or ""))
  end
  add("actions:")
  for _, a in ipairs(of_steps) do
    local notes = action_notes(d, a)
    add(string.format("  %3d %-16s %-10s %-11s %s%s", a.seq, d.names[a.step] or ("step " .. a.step), a.kind, a.status,
      a.describe, #notes > 0 and ("  (" .. table.concat(notes, "; ") .. ")") or ""))
  end
  local function rollback_action(a)
    add(string.format("      %3d %s: %s %s %s%s", a.seq, undo_step_name(d, a), a.kind, a.status, a.describe,
      a.error and (": " .. first_line(a.error)) or ""))
  end
  if #d.rollbacks > 0 or #orphans > 0 then add("rollbacks:") end
  for _, rb in ipairs(d.rollbacks) do
    add(string.format("  %d. %s by %s, %s: %s%s", rb.n, rb.started_at, rb.actor or "?", rollback_label(rb),
      rollback_result(rb), rb.finished_at and (", took " .. J.duration_text(J.duration(rb.started_at, rb.finished_at)))
        or ""))
    for _, l in ipairs(rb.left) do add("      left: " .. indent(l, "            ")) end
    for _, a in ipairs(rb.actions) do rollback_action(a) end
  end
  for _, a in ipairs(orphans) do rollback_action(a) end
  if #d.gates > 0 then
    add("gates:")
    for _, g in ipairs(d.gates) do
      add("  " .. indent(gate_text(d, g), "    "))
      for _, x in ipairs(g.decisions) do add("      " .. decision_text(x)) end
    end
  end
  if #d.events > 0 then
    add("timeline:")
    -- what a person did (an answer, a skip, a note) says who
    local BY = { answer = true, skip = true, stop = true, note = true }
    for _, e in ipairs(d.events) do
      add(string.format("  %s %-8s %s%s", e.ts, e.type, indent(e.text, string.rep(" ", 35)),
        BY[e.type] and e.actor and ("  by " .. e.actor) or ""))
    end
  end
  return table.concat(L, "\n") .. "\n"
end

return {
  main = function(opts)
    local journal = J.open(opts.flags.state)
    local d = gather(journal, opts.args[1])
    journal:close()
    local fmt = opts.flags.format or "text"
    -- what the Markdown and HTML views share with the text
    local view = { outcome = outcome_text, step_notes = step_notes, action_notes = action_notes,
      split_actions = split_actions, undo_step_name = undo_step_name, rollback_label = rollback_label,
      rollback_result = rollback_result, gate_text = gate_text, library_text = library_text, decision_text = decision_text, paused = paused_text,
      attempt_at = attempt_at, own_undos = own_undos }
    if fmt == "json" then io.write(as_json(d))
    elseif fmt == "markdown" then io.write(require("relish.postmortem").markdown(d, view))
    elseif fmt == "html" then io.write(require("relish.report_html").run(d, view))
    else io.write(as_text(d)) end
    return 0
  end,
}
