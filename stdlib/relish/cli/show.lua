-- relish show RUN_ID: one run from the journal, as text, JSON or Markdown.
local J = require "relish.journal"
local json = require "relish.json"

local function gather(journal, id)
  local run = journal:find_run(id)
  return {
    run = run,
    steps = journal:steps(run.id),
    actions = journal:actions(run.id),
    events = journal:events(run.id),
  }
end

local function as_json(d)
  local r = d.run
  local out = {
    run_id = r.id, recipe = r.recipe, file = r.file, status = J.shown_status(r), exit_code = r.exit_code or json.null,
    dry_run = r.dry_run, user = r.user, host = r.host, pid = r.pid, lock = r.lock_name or json.null,
    started_at = r.started_at, finished_at = r.finished_at or json.null, error = r.error or json.null,
    params = json.decode(r.params), state = json.decode(r.state), steps = json.array {}, actions = json.array {},
    events = json.array {},
  }
  for _, s in ipairs(d.steps) do
    table.insert(out.steps, { index = s.idx, name = s.name, status = s.status, attempts = s.attempts,
      error = s.error or json.null, started_at = s.started_at or json.null, finished_at = s.finished_at or json.null })
  end
  for _, a in ipairs(d.actions) do
    table.insert(out.actions, { seq = a.seq, step = a.step, kind = a.kind, target = a.target, describe = a.describe,
      status = a.status, irreversible = a.irreversible, fingerprint = a.fingerprint or json.null,
      error = a.error or json.null, started_at = a.started_at or json.null, finished_at = a.finished_at or json.null })
  end
  for _, e in ipairs(d.events) do
    table.insert(out.events, { ts = e.ts, type = e.type, actor = e.actor, text = e.text })
  end
  return json.encode(out, { pretty = true, sort_keys = true }) .. "\n"
end

local function as_text(d, md)
  local r = d.run
  local L = {}
  local function add(s) L[#L + 1] = s end
  if md then
    add(string.format("# Run %s: %s", r.id, r.recipe))
    add("")
    add(string.format("- **Status:** %s%s", J.shown_status(r), r.exit_code and (" (exit " .. r.exit_code .. ")") or ""))
    add(string.format("- **Recipe:** `%s`", r.file))
    add(string.format("- **By:** %s on %s (pid %s)", r.user or "?", r.host or "?", tostring(r.pid)))
    add(string.format("- **Started:** %s  **Finished:** %s", r.started_at, r.finished_at or "-"))
    add(string.format("- **Params:** `%s`", r.params))
    if r.error then add(string.format("- **Error:** %s", r.error)) end
    add("")
    add("## Steps")
    add("")
    add("| # | step | status | attempts |")
    add("|---|---|---|---|")
    for _, s in ipairs(d.steps) do add(string.format("| %d | %s | %s | %d |", s.idx, s.name, s.status, s.attempts)) end
    add("")
    add("## Actions")
    add("")
    add("| # | step | kind | target | status |")
    add("|---|---|---|---|---|")
    for _, a in ipairs(d.actions) do
      add(string.format("| %d | %d | %s | `%s` | %s%s |", a.seq, a.step, a.kind, a.target, a.status,
        a.irreversible and " (irreversible)" or ""))
    end
    if #d.events > 0 then
      add("")
      add("## Timeline")
      add("")
      for _, e in ipairs(d.events) do add(string.format("- %s **%s** (%s): %s", e.ts, e.type, e.actor or "?", e.text)) end
    end
  else
    add(string.format("run %s  %s  %s%s", r.id, r.recipe, J.shown_status(r), r.exit_code and (" (exit " .. r.exit_code .. ")") or ""))
    add(string.format("  file:    %s", r.file))
    add(string.format("  by:      %s on %s, pid %s", r.user or "?", r.host or "?", tostring(r.pid)))
    add(string.format("  started: %s   finished: %s", r.started_at, r.finished_at or "-"))
    add(string.format("  params:  %s", r.params))
    if r.lock_name then add(string.format("  lock:    %s", r.lock_name)) end
    if r.error then add(string.format("  error:   %s", r.error)) end
    add("steps:")
    for _, s in ipairs(d.steps) do
      add(string.format("  %2d %-28s %s%s", s.idx, s.name, s.status, s.error and (": " .. s.error:match("^[^\n]*")) or ""))
    end
    add("actions:")
    for _, a in ipairs(d.actions) do
      add(string.format("  %3d [step %d] %-10s %-11s %s%s", a.seq, a.step, a.kind, a.status, a.describe,
        a.irreversible and " (irreversible)" or ""))
    end
    if #d.events > 0 then
      add("timeline:")
      for _, e in ipairs(d.events) do add(string.format("  %s %-8s %s", e.ts, e.type, e.text)) end
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
    if fmt == "json" then io.write(as_json(d))
    else io.write(as_text(d, fmt == "markdown")) end
    return 0
  end,
}
