-- relish history: past runs, newest first, each with what it did: its outcome
-- and exit code, how long it took, its key params, and whether it was rolled
-- back later (by `relish rollback`) or failed before changing anything.
local invalid = require("relish._errors").invalid
local J = require "relish.journal"
local json = require "relish.json"

local PARAMS_WIDTH, VALUE_WIDTH = 60, 16

local function clip(s, n)
  if #s <= n then return s end
  return s:sub(1, n - 3) .. "..."
end

-- k=v, sorted, empty values left out; secrets are *** in the journal already
local function key_params(text)
  local p = J.decode_params(text)
  local keys = {}
  for k in pairs(p) do keys[#keys + 1] = k end
  table.sort(keys)
  local parts = {}
  for _, k in ipairs(keys) do
    local v = p[k]
    if type(v) == "table" then v = json.encode(v) end
    if type(v) == "string" then v = require("relish.output").text(v) end
    if v ~= "" then parts[#parts + 1] = k .. "=" .. clip(tostring(v), VALUE_WIDTH) end
  end
  return clip(table.concat(parts, " "), PARAMS_WIDTH)
end

-- a journal time to the second, as people read it
local function when(t) return (t:gsub("T", " "):gsub("%.%d+Z$", "")) end

-- What a run did, then what a later `relish rollback` did to it.
local function summary(r, rollbacks)
  local outcome = r.outcome or J.shown_status(r)
  if r.dry_run or outcome == "running" or outcome == "crashed" or r.status == "paused" then
    return { status = J.shown_status(r) .. (r.dry_run and " (dry)" or ""), outcome = outcome,
      nothing_changed = false }
  end
  -- nothing done through the gate, and nothing for its own rollback to undo
  -- (a step's own undo counts: its step may have changed something)
  local nothing = outcome ~= "succeeded" and outcome ~= "rollback_failed" and r.changed == 0
  for _, rb in ipairs(rollbacks) do
    if (rb.undone or 0) > 0 then nothing = false end
  end
  local text
  if nothing then
    text = (outcome == "rolled_back" and "failed" or outcome) .. " (nothing changed)"
  elseif outcome == "rolled_back" then
    text = "failed, rolled back"
  elseif outcome == "rollback_failed" then
    text = "failed, rollback incomplete"
  else
    text = outcome
  end
  local later
  for _, rb in ipairs(rollbacks) do
    if rb.requested then later = rb end
  end
  if later then
    if later.status == "complete" then
      text = string.format("%s, then rolled back at %s by %s", text, when(later.started_at), later.actor or "?")
    else
      text = string.format("%s, then a rollback at %s by %s: %s", text, when(later.started_at), later.actor or "?",
        later.status == "running" and "did not finish" or "incomplete")
    end
  end
  return { status = text, outcome = outcome, nothing_changed = nothing, rolled_back = later and {
    at = later.started_at, by = later.actor or json.null, status = later.status,
    finished_at = later.finished_at or json.null } or json.null }
end

return {
  main = function(opts)
    local f = opts.flags
    local limit = 20
    if f.limit then
      limit = math.tointeger(tonumber(f.limit))
      if not limit or limit < 1 then
        invalid("--limit must be a positive integer, got '" .. f.limit .. "'")
      end
    end
    local journal = J.open(f.state)
    local rows = journal:list_runs { recipe = f.recipe, limit = limit }
    for _, r in ipairs(rows) do r.summary = summary(r, journal:rollbacks(r.id)) end
    journal:close()
    if f.format == "html" then
      io.write(require("relish.report_html").history(rows, f.recipe and ("relish history: " .. f.recipe) or
        "relish history"))
      return 0
    end
    if f.format == "json" then
      for _, r in ipairs(rows) do
        local s = r.summary
        io.write(json.encode(require("relish.output").json_safe({ run_id = r.id, short_id = J.short_id(r.id), recipe = r.recipe,
          status = J.shown_status(r), outcome = s.outcome, summary = s.status, nothing_changed = s.nothing_changed,
          rolled_back = s.rolled_back or json.null, exit_code = r.exit_code or json.null, dry_run = r.dry_run,
          user = r.user, started_at = r.started_at, finished_at = r.finished_at or json.null,
          duration_s = J.duration(r.started_at, r.finished_at) or json.null, params = json.decode(r.params) }),
          { sort_keys = true }), "\n")
      end
      return 0
    end
    if #rows == 0 then
      io.write(f.recipe and string.format("no runs of recipe '%s'\n", f.recipe) or "no runs yet\n")
      return 0
    end
    local table_ = { { "RUN", "RECIPE", "STATUS", "EXIT", "TOOK", "STARTED", "USER", "PARAMS" } }
    for _, r in ipairs(rows) do
      table_[#table_ + 1] = { J.short_id(r.id), r.recipe, r.summary.status, r.exit_code and tostring(r.exit_code) or "-",
        J.duration_text(J.duration(r.started_at, r.finished_at)), when(r.started_at),
        r.user or "?", key_params(r.params) }
    end
    local widths = {}
    for _, row in ipairs(table_) do
      for i, c in ipairs(row) do widths[i] = math.max(widths[i] or 0, #c) end
    end
    for _, row in ipairs(table_) do
      local cells = {}
      for i, c in ipairs(row) do cells[i] = i < #row and (c .. string.rep(" ", widths[i] - #c)) or c end
      io.write((table.concat(cells, "  "):gsub("%s+$", "")), "\n")
    end
    return 0
  end,
}
