-- relish.postmortem: a run (recipe or runbook) as a postmortem draft in
-- Markdown (relish show RUN_ID --format markdown), in the shape of Google
-- SRE's and PagerDuty's templates: what the journal knows is filled in
-- (header, summary sentence, resolution, timeline, what is still in effect
-- and how to undo it), what only people know is left blank for them.
local J = require "relish.journal"

local M = {}

local function first_line(s) return s and s:match("^[^\n]*") end

-- text for Markdown: "<" and "&" stay characters (not an HTML tag or an
-- entity a renderer would act on)
local function plain(text) return (text:gsub("[<&]", "\\%0")) end

-- Markdown: continuation lines stay in their list item (indented, a hard
-- break before each), and a line that would open a block (a heading, a list,
-- a quote) is escaped to stay text

local function md_lines(text)
  return (plain(text):gsub("\n(%s*)([#>*+%-]?)", function(sp, mark)
    return "\\\n  " .. sp .. (mark ~= "" and ("\\" .. mark) or "")
  end):gsub("\n(%s*)(%d+)([.)])", "\n%1%2\\%3"))
end

-- a table cell: one line, no column break
local function one_line(s) return (tostring(s or ""):gsub("|", "\\|"):gsub("\n", " / ")) end
local function cell(s) return plain(one_line(s)) end

-- a code span in a table cell, whatever backticks the text holds
local function code(s)
  s = one_line(s)
  local longest = 0
  for run in s:gmatch("`+") do longest = math.max(longest, #run) end
  local fence = string.rep("`", longest + 1)
  local pad = (s:match("^`") or s:match("`$")) and " " or ""
  return fence .. pad .. s .. pad .. fence
end

-- a fenced block holding text as it is, indented by pad
local function fenced(text, pad)
  local longest = 2
  for run in text:gmatch("`+") do longest = math.max(longest, #run) end
  local fence = string.rep("`", longest + 1)
  return pad .. fence .. "text\n" .. pad .. text:gsub("\n", "\n" .. pad) .. "\n" .. pad .. fence
end

local function day(ts) return ts and ts:sub(1, 10) end
local function clock(ts) return ts and ts:sub(12, 19) end

-- a time in the timeline: the clock, and the day too when it is not the run's
local function at(d, ts)
  if day(ts) == day(d.run.started_at) then return clock(ts) end
  return day(ts) .. " " .. clock(ts)
end

local function elapsed(d, ts)
  local s = J.duration(d.run.started_at, ts)
  if not s then return "" end
  return "+" .. J.duration_text(math.max(s, 0))
end

-- who acted: the login user or $RELISH_ACTOR; a gate decision's user@host
-- of the run's own host counts as its user
local function who(d, actor)
  if not actor or actor == "" then return nil end
  local h = d.run.host
  if h and #actor > #h + 1 and actor:sub(-#h - 1) == "@" .. h then return actor:sub(1, -#h - 2) end
  return actor
end

-- everyone the journal saw act in the run, in the order first seen
local function authors(d)
  local seen, list = {}, {}
  local function add(actor)
    actor = who(d, actor)
    if actor and not seen[actor] then seen[actor], list[#list + 1] = true, actor end
  end
  add(d.run.user)
  for _, e in ipairs(d.events) do add(e.actor) end
  for _, rb in ipairs(d.rollbacks) do add(rb.actor) end
  for _, g in ipairs(d.gates) do
    for _, x in ipairs(g.decisions) do add(x.actor) end
  end
  return list
end

-- a check's verdict ("NAME: [bad] ..."), or nil
local function verdict(text) return text:match("^[^\n]-: %[(%a+)%] ") end

local function event_label(e)
  if e.type == "check" then
    local v = verdict(e.text)
    return v and ("check (" .. v .. ")") or "check"
  end
  return e.type
end

-- An action is still in effect until undone: done, in doubt (pending: the
-- run stopped while it ran), failed (it may have acted in part), or its
-- undo failed.
local IN_EFFECT = { done = "done", pending = "in doubt", failed = "failed (may have acted in part)",
  undo_failed = "undo failed" }

-- how a rollback undoes an action: its step's own undo when the step has
-- one (own: the set from view.own_undos, nil when not known), else the
-- automatic undo of its kind; an action with neither is irreversible
local function undo_text(a, own)
  if own and own[a.step] then return "its step's own `undo`" end
  local auto = "automatic: the `" .. cell(a.kind) .. "` undo" ..
    (a.provider and (" (" .. cell(a.provider) .. ")") or "")
  if own == nil then
    if a.irreversible then return "**irreversible** unless its step has its own `undo`: else by hand" end
    return auto .. ", or its step's own `undo` if it has one"
  end
  if a.irreversible then return "**irreversible**: no automatic undo and no step `undo`; by hand" end
  return auto
end

-- ---- the timeline: every row the journal has a time for ------------------------
-- Rows written in the same millisecond keep the order a run goes in: the
-- run's start, then step by step (its start, its events, its actions, its
-- end), then what came after the steps (a rollback's start, its actions,
-- what they undid, its end), then the run's end.
local AFTER = math.maxinteger

local function timeline_rows(d, view, rb_of)
  local r = d.run
  local rows = {}
  local function row(ts, at_step, rank, actor, step, what, text)
    if ts then
      rows[#rows + 1] = { ts = ts, at_step = at_step, rank = rank, n = #rows, who = who(d, actor) or "",
        step = step or "", what = what, text = text or "" }
    end
  end
  row(r.started_at, 0, 0, r.user, nil, "run started", (r.dry_run and "a dry-run; " or "") .. "params " .. r.params)
  for _, s in ipairs(d.steps) do
    row(s.started_at, s.idx, 1, r.user, s.name, "step started", "")
    -- its status when it finished: undone and undo_failed came later
    local ended = s.status
    if ended == "undone" or ended == "undo_failed" then ended = s.error and "failed" or "done" end
    row(s.finished_at, s.idx, 5, r.user, s.name, "step " .. ended, first_line(s.error))
    local by = s.undone_at and view.attempt_at(d, s.undone_at)
    row(s.undone_at, AFTER, 5, by and by.actor, s.name, "step undone", "")
  end
  for _, a in ipairs(d.actions) do
    local rb = rb_of[a.seq]
    local of_step = a.step > 0
    local step = of_step and (d.names[a.step] or tostring(a.step)) or view.undo_step_name(d, a)
    local actor = rb and rb.actor or r.user
    local pos = of_step and a.step or AFTER
    row(a.started_at, pos, 3, actor, step, "action " .. a.seq .. " started", a.describe)
    -- an action that took time ended before what its step journaled in
    -- the millisecond it ended; one that took none, after its start
    row(a.finished_at, pos, a.finished_at == a.started_at and 4 or 1.5, actor, step,
      "action " .. a.seq .. " " .. (a.error and "failed" or "done"),
      a.error and (a.describe .. ": " .. first_line(a.error)) or a.describe)
    local by = a.undone_at and view.attempt_at(d, a.undone_at)
    row(a.undone_at, AFTER, 5, by and by.actor, step, "action " .. a.seq .. " undone", a.describe)
  end
  -- an event journaled without its step (an older journal) was in the
  -- step running at its time (the later one, at the millisecond one ended
  -- and the next began), unless it is a rollback's
  local function step_at(ts)
    local found
    for _, s in ipairs(d.steps) do
      if s.started_at and s.started_at <= ts and (not s.finished_at or ts <= s.finished_at) then found = s.idx end
    end
    return found
  end
  for _, e in ipairs(d.events) do
    local at_step = e.step or (e.type ~= "rollback" and step_at(e.ts))
    local rank = at_step and 2 or (e.type == "rollback" and e.text:match("^rollback started") and 0 or 6)
    row(e.ts, at_step or AFTER, rank, e.actor, e.step and (d.names[e.step] or tostring(e.step)),
      event_label(e), e.text)
  end
  row(r.finished_at, AFTER, 9, r.user, nil, "run ended", (r.outcome or J.shown_status(r)) ..
    (r.exit_code and (" (exit " .. r.exit_code .. ")") or ""))
  table.sort(rows, function(x, y)
    if x.ts ~= y.ts then return x.ts < y.ts end
    if x.at_step ~= y.at_step then return x.at_step < y.at_step end
    if x.rank ~= y.rank then return x.rank < y.rank end
    return x.n < y.n
  end)
  return rows
end

-- ---- the summary sentence -----------------------------------------------------
local function plural(n, one, many) return string.format("%d %s", n, n == 1 and one or (many or one .. "s")) end

local function summary(d, view, in_effect)
  local r, m = d.run, d.meta
  local count = {}
  for _, s in ipairs(d.steps) do count[s.status] = (count[s.status] or 0) + 1 end
  local failed_at
  for _, s in ipairs(d.steps) do if s.error and not failed_at then failed_at = s.name end end
  local what = (m.kind == "runbook" and "Runbook " or "Recipe ") .. code(r.recipe)
  local facts = {}
  if m.severity then facts[#facts + 1] = m.severity end
  if m.service then facts[#facts + 1] = "service " .. m.service end
  if #facts > 0 then what = what .. " (" .. table.concat(facts, ", ") .. ")" end
  local when = string.format("ran%s on %s from %s UTC", r.dry_run and " as a dry-run" or "", day(r.started_at),
    clock(r.started_at))
  if r.finished_at then
    when = when .. " for " .. J.duration_text(J.duration(r.started_at, r.finished_at))
  else
    when = when .. " and has not finished"
  end
  local steps = string.format("%d of %s done", count.done or 0, plural(#d.steps, "step"))
  for _, st in ipairs { "skipped", "failed", "undone", "undo_failed", "pending" } do
    if count[st] then steps = steps .. string.format(", %d %s", count[st], (st:gsub("_", " "))) end
  end
  if failed_at then steps = steps .. string.format(" (it failed at step %q)", failed_at) end
  local changed = 0
  for _, a in ipairs(d.actions) do if a.step > 0 then changed = changed + 1 end end
  return string.format("%s %s; it %s %s. %s; %s, %d still in effect.", what, when, r.finished_at and "ended" or "is",
    view.outcome(d), steps, plural(changed, "action"), in_effect)
end

-- ---- the draft ------------------------------------------------------------------
-- markdown(d, view) -> the draft; d is show's gather() (with .meta), view
-- its helpers (the same as report_html.run's)
function M.markdown(d, view)
  local r, meta = d.run, d.meta
  local of_steps = view.split_actions(d)
  local rb_of = {}
  for _, rb in ipairs(d.rollbacks) do
    for _, a in ipairs(rb.actions) do rb_of[a.seq] = rb end
  end
  local in_effect, done_by_undo = {}, {}
  for _, a in ipairs(of_steps) do if IN_EFFECT[a.status] then in_effect[#in_effect + 1] = a end end
  for _, a in ipairs(d.actions) do
    if a.step < 0 and a.status == "done" then done_by_undo[#done_by_undo + 1] = a end
  end
  local L = {}
  local function add(s) L[#L + 1] = s end
  local function blank(title, hint)
    add("")
    add("## " .. title)
    add("")
    add("<!-- " .. hint .. " -->")
  end

  add(string.format("# Postmortem: %s, %s", r.recipe, day(r.started_at)))
  add("")
  add(string.format("A draft from the journal (`relish show %s --format markdown`): fill in what is blank " ..
    "and each _TODO_.", J.short_id(r.id)))
  add("")
  add("| | |")
  add("|---|---|")
  local function field(k, v) if v then add(string.format("| **%s** | %s |", k, v)) end end
  field("Status", "draft")
  field("Run status", cell(J.shown_status(r)) .. (r.dry_run and " (dry-run)" or ""))
  field("Outcome", cell(view.outcome(d)))
  field("Authors", cell(table.concat(authors(d), ", ")))
  field("Severity", meta.severity and cell(meta.severity))
  field("Service", meta.service and cell(meta.service))
  field("Owner", meta.owner and cell(meta.owner))
  field("Run", code(r.id))
  field(meta.kind == "runbook" and "Runbook" or "Recipe", code(r.recipe) .. " in " .. code(r.file))
  field("Started", cell(r.started_at))
  field("Finished", cell(r.finished_at or "-"))
  field("Took", J.duration_text(J.duration(r.started_at, r.finished_at)))
  field("Ran by", cell(string.format("%s on %s (pid %s)", r.user or "?", r.host or "?", tostring(r.pid))))
  field("Params", code(r.params))
  field("Lock", r.lock_name and code(r.lock_name))
  field("Error", r.error and cell(r.error))
  local paused = view.paused(d)
  field("Paused", paused and cell(paused))

  add("")
  add("## Summary")
  add("")
  add(md_lines(summary(d, view, #in_effect)))
  if meta.description then
    add("")
    add("About the " .. (meta.kind == "runbook" and "runbook" or "recipe") .. ": " .. md_lines(meta.description))
  end
  add("")
  add("_TODO_: what happened, in a few sentences for someone who was not there.")

  add("")
  add("## Impact")
  add("")
  add("- **Users affected:**")
  add("- **Duration of the impact:**")
  add("- **Revenue or SLO impact:**")
  add("- **Customers told:**")
  blank("Detection", "how was it noticed: an alert, a customer, a person, a check; how long after it started?")
  blank("Root cause", "why it happened: the chain of causes, not a person")
  blank("Trigger", "what set it off: a deploy, a config change, traffic, a dependency")

  add("")
  add("## Resolution")
  add("")
  add("What the run did, step by step:")
  add("")
  add("| # | step | status | took | what it changed | history |")
  add("|---|---|---|---|---|---|")
  local skipped = {}
  for _, e in ipairs(d.events) do
    if e.type == "skip" and e.step then
      skipped[e.step] = string.format("%s (by %s)", first_line(e.text), who(d, e.actor) or "?")
    end
  end
  for _, s in ipairs(d.steps) do
    local changed = {}
    for _, a in ipairs(of_steps) do
      if a.step == s.idx then
        changed[#changed + 1] = string.format("%s %s (%s)", a.kind, code(a.target), a.status)
      end
    end
    local notes = view.step_notes(d, s)
    if skipped[s.idx] then table.insert(notes, 1, skipped[s.idx]) end
    add(string.format("| %d | %s | %s | %s | %s | %s |", s.idx, cell(s.name), s.status,
      J.duration_text(J.duration(s.started_at, s.finished_at)), #changed > 0 and table.concat(changed, "; ") or "-",
      cell(table.concat(notes, "; "))))
  end
  if #d.rollbacks > 0 then
    add("")
    add("### Rollbacks")
    for _, rb in ipairs(d.rollbacks) do
      add("")
      add(string.format("%d. %s by %s, %s: %s", rb.n, rb.started_at, rb.actor or "?", md_lines(view.rollback_label(rb)),
        view.rollback_result(rb)))
      if rb.finished_at then
        add(string.format("   - took %s", J.duration_text(J.duration(rb.started_at, rb.finished_at))))
      end
      for _, l in ipairs(rb.left) do add("   - left to do by hand: " .. md_lines(l)) end
      for _, a in ipairs(rb.actions) do
        add(string.format("   - action %d (%s): %s `%s` %s%s", a.seq, view.undo_step_name(d, a), a.kind, a.target,
          a.status, a.error and (": " .. md_lines(a.error)) or ""))
      end
    end
  end
  if d.libraries and #d.libraries > 0 then
    add("")
    add("### Libraries")
    add("")
    add("The recipe libraries the run loaded (relish.lock), the code behind its changes:")
    add("")
    add("| library | version | commit | tree sha256 | source |")
    add("|---|---|---|---|---|")
    for _, l in ipairs(d.libraries) do
      add(string.format("| %s | %s | `%s` | `%s` | %s |", cell(l.name), cell(l.version or "-"), l.commit,
        l.sha256:sub(1, 12), cell(l.source or "")))
    end
  end
  if #d.gates > 0 then
    add("")
    add("### Gates")
    add("")
    for _, g in ipairs(d.gates) do
      add("- " .. md_lines(view.gate_text(d, g)))
      for _, x in ipairs(g.decisions) do add("  - " .. md_lines(view.decision_text(x))) end
    end
  end

  add("")
  add("## Timeline")
  add("")
  add(string.format("All times UTC, on %s unless a row says otherwise; elapsed since the run started.",
    day(r.started_at)))
  add("")
  add("| time | elapsed | step | who | what | details |")
  add("|---|---|---|---|---|---|")
  for _, row in ipairs(timeline_rows(d, view, rb_of)) do
    add(string.format("| %s | %s | %s | %s | %s | %s |", at(d, row.ts), elapsed(d, row.ts), cell(row.step),
      cell(row.who), cell(row.what), cell(row.text)))
  end
  local checks = {}
  for _, e in ipairs(d.events) do if e.type == "check" then checks[#checks + 1] = e end end
  if #checks > 0 then
    add("")
    add("### What the checks found")
    for _, e in ipairs(checks) do
      local name, finding = e.text:match("^([^\n]-): (.*)$")
      add("")
      add(string.format("- **%s** at %s by %s:", md_lines(name or "check"), at(d, e.ts), who(d, e.actor) or "?"))
      add("")
      add(fenced(finding or e.text, "  "))
    end
  end

  add("")
  add("## What was changed and how to undo it")
  add("")
  if r.dry_run then
    add("A dry-run: nothing was changed.")
  elseif #in_effect > 0 then
    add(string.format("Still in effect: %s. `relish rollback %s` undoes %s, newest first " ..
      "(`relish rollback %s --dry-run` shows what it would do).", plural(#in_effect, "action"), r.id,
      #in_effect == 1 and "it" or "them", r.id))
    add("")
    local own, unknown = view.own_undos(d)
    add("| # | step | kind | target | status | how to undo it |")
    add("|---|---|---|---|---|---|")
    for _, a in ipairs(in_effect) do
      add(string.format("| %d | %s | %s | %s | %s | %s |", a.seq, cell(d.names[a.step] or tostring(a.step)),
        cell(a.kind), code(a.target), IN_EFFECT[a.status], undo_text(a, own)))
    end
    if unknown then
      add("")
      add(md_lines("Which steps have their own `undo` is not known: " .. unknown .. "."))
    end
  elseif #of_steps > 0 then
    add("Nothing the run changed is still in effect: every action was undone.")
  else
    add("The run changed nothing: no action was journaled.")
  end
  if #done_by_undo > 0 then
    add("")
    add("Done by the rollbacks (a step's own `undo`), which no later rollback undoes:")
    add("")
    for _, a in ipairs(done_by_undo) do
      add(string.format("- action %d (%s): %s `%s`", a.seq, view.undo_step_name(d, a), a.kind, a.target))
    end
  end
  local last = d.rollbacks[#d.rollbacks]
  if last and last.status ~= "complete" and #last.left > 0 then
    add("")
    add(string.format("Left to do by hand (rollback %d, %s):", last.n, last.status))
    add("")
    for _, l in ipairs(last.left) do add("- " .. md_lines(l)) end
  end

  add("")
  add("## Action items")
  add("")
  add("| action item | type (mitigate, prevent, detect) | owner | priority | ticket |")
  add("|---|---|---|---|---|")
  add("| | | | | |")

  add("")
  add("## Lessons learned")
  for _, h in ipairs { "What went well", "What went wrong", "Where we got lucky" } do
    add("")
    add("### " .. h)
    add("")
    add("-")
  end

  if #meta.links > 0 then
    add("")
    add("## Links")
    add("")
    for _, l in ipairs(meta.links) do
      if l.web then
        -- <...> keeps spaces and parentheses of the address in the link
        local url = l.url:gsub("[<>%s]", function(c) return string.format("%%%02X", c:byte()) end)
        add(string.format("- [%s](<%s>)", cell(l.title):gsub("[%[%]]", "\\%0"), url))
      else
        add(string.format("- %s: %s", md_lines(l.title), code(l.url)))
      end
    end
  end
  return table.concat(L, "\n") .. "\n"
end

return M
