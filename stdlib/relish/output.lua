-- relish.output: how a run shows itself. On a terminal, a step list with
-- status marks and elapsed times; otherwise plain lines; with --output json,
-- one JSON object per line (event, run_id, ts, ...). Everything is redacted.
local json = require "relish.json"
local secret = require "relish.secret"
local host = require "relish._host"

local M = {}

local iso_now = require("relish.journal").now_iso

local function fmt_elapsed(s)
  if not s then return "" end
  if s < 1 then return string.format("%dms", math.floor(s * 1000 + 0.5)) end
  if s < 60 then return string.format("%.1fs", s) end
  return string.format("%dm%02ds", math.floor(s / 60), math.floor(s % 60))
end
M.fmt_elapsed = fmt_elapsed

-- new{format = "text"|"json", stream = io.stdout}
function M.new(opts)
  local o = {
    format = opts.format or "text",
    out = opts.stream or io.stdout,
    tty = opts.tty,
    run_id = nil,
  }
  if o.tty == nil then o.tty = host.isatty(1) end
  o.color = o.tty and not os.getenv("NO_COLOR") and o.format == "text"
  return setmetatable(o, { __index = M })
end

function M:paint(code, s)
  if self.color then return "\27[" .. code .. "m" .. s .. "\27[0m" end
  return s
end

local function redact(s)
  if type(s) ~= "string" then return s end
  return secret.redact(s)
end

local function redact_table(t, depth)
  depth = depth or 0
  if secret.is(t) then return "***" end
  if type(t) == "string" then return redact(t) end
  if type(t) ~= "table" or depth > 10 then return t end
  local out = {}
  for k, v in pairs(t) do out[k] = redact_table(v, depth + 1) end
  return setmetatable(out, getmetatable(t))
end
M.redact_table = redact_table

function M:write(s)
  self.out:write(redact(s))
  self.out:flush()
end

-- ---- text that is not UTF-8 -------------------------------------------------
-- A JSON event is UTF-8 text, but a path, an argv or a log line can hold any
-- bytes. Such a string field x becomes x = the text with each byte that is
-- not UTF-8 shown as U+FFFD, plus x_b64 = the exact bytes in base64 (the
-- form fs undo records use); a string in a list gets the U+FFFD form only.

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

local function base64(s)
  return (s:gsub("..?.?", function(c)
    local a, b, d = c:byte(1, 3)
    local n = a * 65536 + (b or 0) * 256 + (d or 0)
    local out = {}
    for i = 1, 4 do
      local k = (n >> (6 * (4 - i))) & 63
      out[i] = B64:sub(k + 1, k + 1)
    end
    if not b then out[3] = "=" end
    if not d then out[4] = "=" end
    return table.concat(out)
  end))
end
M.base64 = base64

local B64_VALUE = {}
for i = 1, #B64 do B64_VALUE[B64:byte(i)] = i - 1 end

-- unbase64(s) -> the bytes, or nil when s is not base64
local function unbase64(s)
  if #s % 4 ~= 0 or s:find("[^%w+/=]") or s:find("=[^=]") then return nil end
  local out = {}
  for i = 1, #s, 4 do
    local n, pad = 0, 0
    for j = i, i + 3 do
      local v = B64_VALUE[s:byte(j)]
      if not v then pad = pad + 1 end
      n = n * 64 + (v or 0)
    end
    local bytes = string.char(n >> 16, (n >> 8) & 255, n & 255)
    out[#out + 1] = bytes:sub(1, 3 - pad)
  end
  return table.concat(out)
end
M.unbase64 = unbase64

-- is_text(s): valid UTF-8; text(s): s with each byte that is not UTF-8
-- replaced by U+FFFD
local function is_text(s) return utf8.len(s) ~= nil end
M.is_text = is_text

local function text(s)
  local out, i = {}, 1
  while i <= #s do
    local n, bad = utf8.len(s, i)
    if n then
      out[#out + 1] = s:sub(i)
      break
    end
    out[#out + 1] = s:sub(i, bad - 1)
    out[#out + 1] = "\u{FFFD}"
    i = bad + 1
  end
  return table.concat(out)
end
M.text = text

local function utf8_table(t, depth)
  if type(t) == "string" then return is_text(t) and t or text(t) end
  if type(t) ~= "table" or depth > 10 then return t end
  local out = {}
  for k, v in pairs(t) do
    if type(v) == "string" and not is_text(v) then
      out[k] = text(v)
      if type(k) == "string" then out[k .. "_b64"] = base64(v) end
    else
      out[k] = utf8_table(v, depth + 1)
    end
  end
  return setmetatable(out, getmetatable(t))
end
-- json_safe(t): a copy of t that json.encode accepts whatever bytes its
-- strings hold (for show and history, which encode journal rows)
function M.json_safe(t) return utf8_table(t, 0) end

-- json_restore(t): the inverse of json_safe, in place, for what relish reads
-- back (a saved plan): each x_b64 beside a string x gives x its exact bytes
-- again. Returns t; nil and a message when an x_b64 is not base64.
function M.json_restore(t, depth)
  depth = depth or 0
  if type(t) ~= "table" or depth > 10 then return t end
  for k, v in pairs(t) do
    if type(v) == "table" then
      if not M.json_restore(v, depth + 1) then return nil, "bad base64 under " .. tostring(k) end
    end
  end
  for k, v in pairs(t) do
    local name = type(k) == "string" and k:match("^(.+)_b64$")
    if name and type(v) == "string" and type(t[name]) == "string" then
      local bytes = unbase64(v)
      if not bytes then return nil, "field " .. k .. " is not base64" end
      t[name], t[k] = bytes, nil
    end
  end
  return t
end

-- encode(name, fields) -> one line of JSON; never raises: an event that
-- still cannot be encoded becomes a minimal event saying so
local function encode(e)
  local ok, line = pcall(json.encode, utf8_table(e, 0), { sort_keys = true })
  if ok then return line end
  return json.encode({ event = type(e.event) == "string" and text(e.event) or "?",
    run_id = e.run_id, ts = e.ts, unencodable = true, error = text(tostring(line)) }, { sort_keys = true })
end
M.encode = encode

-- event(name, fields): the one entry point; fields are copied into the JSON.
-- Encoding an event never fails the run (see encode).
function M:event(name, fields)
  fields = fields or {}
  if self.format == "json" then
    local e = redact_table(fields)
    e.event = name
    e.run_id = self.run_id
    e.ts = iso_now()
    self.out:write(encode(e), "\n")
    self.out:flush()
    return
  end
  local h = self["on_" .. name]
  if h then h(self, fields) end
end

-- ---- the journal's own disk ---------------------------------------------------
-- Every action journals its undo record, so a run needs room on the journal's
-- filesystem. A real run starts with a warning when that room is low (below
-- 5% or 64 MiB; RELISH_LOW_DISK_BYTES sets the byte threshold) and goes on:
-- a runbook that frees disk must be able to run.

local LOW_BYTES, LOW_FRACTION = 64 * 1024 * 1024, 0.05

local function human(n)
  local units, i = { "B", "kB", "MB", "GB", "TB", "PB" }, 1
  while n >= 1000 and i < #units do n, i = n / 1000, i + 1 end
  return i == 1 and string.format("%d B", n) or string.format("%.1f %s", n, units[i])
end

-- low_disk(path, free, total [, min_bytes]) -> warning text | nil
function M.low_disk(path, free, total, min_bytes)
  min_bytes = min_bytes or LOW_BYTES
  if free >= min_bytes and (total <= 0 or free >= total * LOW_FRACTION) then return nil end
  return string.format("warning: the journal's disk is nearly full: %s free of %s (%d%%) on the filesystem "
    .. "of %s; every action journals its undo record there (use undo = false for what need not be "
    .. "undone, or put the journal elsewhere with --state)", human(free), human(total),
    total > 0 and math.floor(free * 100 / total) or 0, path)
end

-- check_disk(journal, run_id): says so, on the output and in the journal,
-- when the journal's disk is nearly full; never fails the run
function M:check_disk(journal, run_id)
  local path = journal.path
  local dir = path:match("^(.*)/[^/]*$") or "."
  local ok, free, total = pcall(host.disk_free, dir == "" and "/" or dir)
  if not ok or type(free) ~= "number" then return end
  local min = tonumber(os.getenv("RELISH_LOW_DISK_BYTES") or "")
  local msg = M.low_disk(path, free, total, min)
  if not msg then return end
  pcall(journal.event, journal, run_id, "log", msg)
  self:event("log", { message = msg })
end

local MARK = { done = "✓", failed = "✗", skipped = "-", running = "…", undone = "↺", undo_failed = "!", paused = "‖",
  stopped = "■" }
local MARK_PLAIN = { done = "ok", failed = "FAILED", skipped = "skipped", undone = "undone", undo_failed = "UNDO FAILED",
  paused = "PAUSED", stopped = "STOPPED" }

-- ---- a check's finding --------------------------------------------------------------
-- What a check returns, as text: a value; a list (of values, of rows as
-- maps or lists); a map (key: value lines); or a verdict {verdict = "ok"|
-- "warn"|"bad", text=, value=, rows=, columns=}. Returns text (or nil for
-- nothing) and the verdict.

local MAX_ROWS, MAX_CELL = 50, 60
local VERDICTS = { ok = true, warn = true, bad = true }

local function scalar(v)
  if type(v) == "number" and math.type(v) == "float" and v == math.floor(v) and math.abs(v) < 1e15 then
    return string.format("%d", v)
  end
  local t = secret.is(v) and "***" or tostring(v)
  t = t:gsub("\n", " ")
  if utf8.len(t) and utf8.len(t) > MAX_CELL then t = t:sub(1, utf8.offset(t, MAX_CELL) - 1) .. "…" end
  return t
end

local function width(t) return utf8.len(t) or #t end

-- rows (maps or lists) as an aligned table; columns: the order of a map's keys
local function table_text(rows, columns)
  if not columns then
    local seen
    columns, seen = {}, {}
    for _, r in ipairs(rows) do
      if type(r) == "table" and #r > 0 then columns = nil break end
      for k in pairs(type(r) == "table" and r or {}) do
        if not seen[k] then seen[k], columns[#columns + 1] = true, k end
      end
    end
    if columns then table.sort(columns, function(a, b) return tostring(a) < tostring(b) end) end
  end
  local grid = {}
  if columns then
    local head = {}
    for c, k in ipairs(columns) do head[c] = tostring(k) end
    grid[1] = head
  end
  for n, r in ipairs(rows) do
    if n > MAX_ROWS then break end
    local line = {}
    if type(r) ~= "table" then
      line[1] = scalar(r)
    elseif columns then
      for c, k in ipairs(columns) do line[c] = r[k] == nil and "" or scalar(r[k]) end
    else
      for c, v in ipairs(r) do line[c] = scalar(v) end
    end
    grid[#grid + 1] = line
  end
  local widths = {}
  for _, line in ipairs(grid) do
    for c, cell in ipairs(line) do widths[c] = math.max(widths[c] or 0, width(cell)) end
  end
  local out = {}
  for _, line in ipairs(grid) do
    local cells = {}
    for c, cell in ipairs(line) do
      cells[c] = c < #line and (cell .. string.rep(" ", widths[c] - width(cell))) or cell
    end
    out[#out + 1] = table.concat(cells, "  ")
  end
  if #rows > MAX_ROWS then out[#out + 1] = string.format("… and %d more", #rows - MAX_ROWS) end
  return table.concat(out, "\n")
end

local function is_list(t)
  return #t > 0 or next(t) == nil
end

local function value_text(v)
  if type(v) ~= "table" or secret.is(v) then return scalar(v) end
  if is_list(v) then return table_text(v) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local rows = {}
  for i, k in ipairs(keys) do rows[i] = { tostring(k) .. ":", type(v[k]) == "table" and "{…}" or scalar(v[k]) } end
  return table_text(rows)
end

function M.finding(v)
  if v == nil then return nil end
  if type(v) == "table" and not secret.is(v) and VERDICTS[v.verdict] then
    local parts = { v.text ~= nil and scalar(v.text) or "" } -- the verdict's line; a table starts below it
    if v.value ~= nil then parts[#parts + 1] = value_text(v.value) end
    if v.rows ~= nil then parts[#parts + 1] = type(v.rows) == "table" and table_text(v.rows, v.columns) or scalar(v.rows) end
    return table.concat(parts, "\n"), v.verdict
  end
  if type(v) == "table" and not secret.is(v) and v.rows ~= nil and type(v.rows) == "table" then
    return table_text(v.rows, v.columns), nil
  end
  return value_text(v), nil
end

-- ---- runbooks ---------------------------------------------------------------

local VERDICT_COLOR = { ok = "32", warn = "33", bad = "31", error = "31" }

function M:on_runbook(f)
  local facts = {}
  for _, k in ipairs { "severity", "service", "owner" } do
    if f[k] then facts[#facts + 1] = (k == "severity" and "" or (k .. " ")) .. f[k] end
  end
  if #facts > 0 then self:write("  " .. self:paint("1", table.concat(facts, " · ")) .. "\n") end
  if f.description then self:write("  " .. f.description .. "\n") end
  for _, l in ipairs(f.links or {}) do
    self:write(string.format("  %s%s\n", l.title and (l.title .. ": ") or "", l.url))
  end
  if not f.guided and f.kind ~= "runbook" then return end
  self:write("  Steps:\n")
  for i, st in ipairs(f.steps or {}) do
    local asks = #(st.asks or {}) > 0 and self:paint("2", "  (" .. table.concat(st.asks, ", ") .. ")") or ""
    self:write(string.format("  %3d. %-5s %s%s\n", i, st.check and "check" or "step", st.name, asks))
  end
end

-- "T+2m10s": how long the incident has been going (since the run started)
local function since_text(s)
  if not s then return "" end
  s = math.max(0, math.floor(s))
  if s < 3600 then return string.format("T+%dm%02ds", s // 60, s % 60) end
  return string.format("T+%dh%02dm", s // 3600, s % 3600 // 60)
end

function M:on_check(f)
  if not f.finding or f.finding == json.null then return end
  local verdict = f.verdict ~= json.null and f.verdict or nil
  local lines = {}
  for l in (tostring(f.finding) .. "\n"):gmatch("(.-)\n") do lines[#lines + 1] = l end
  local first = table.remove(lines, 1)
  if verdict then first = self:paint(VERDICT_COLOR[verdict] or "0", "[" .. verdict .. "]") .. " " .. first end
  self:line("      " .. first)
  for _, l in ipairs(lines) do self:line("      " .. l) end
end

function M:on_preview(f)
  if f.error then
    self:line("    " .. self:paint("31", "planning this step failed: " .. tostring(f.error)))
  end
  if #(f.actions or {}) == 0 then
    if not f.error then self:line("    " .. self:paint("2", "this step changes nothing")) end
    return
  end
  self:line(#f.actions == 1 and "    this step will make 1 change:" or
    string.format("    this step will make %d changes:", #f.actions))
  for _, a in ipairs(f.actions) do self:on_action_planned(a) end
end

-- an answer not typed at this terminal (given in advance, --yes, a
-- dry-run's assumption) is said with where it came from
function M:on_answer(f)
  if f.shown then return end
  self:line(string.format("    %s %s %s %s", self:paint("1;33", "?"), f.question, self:paint("2", "→"),
    f.answer .. self:paint("2", " (" .. f.via .. ")")))
end

function M:on_run_started(f)
  local what = f.dry_run and "Plan for" or (f.resumed and "Resuming" or "Running")
  self:write(string.format("%s %s (run %s)\n", what, self:paint("1", f.recipe), f.run_id or self.run_id))
end

function M:on_step_started(f)
  if f.guided or (f.since and f.check) then
    -- a runbook's step: a header of its own, with the incident's time
    self:write(string.format("%s %d/%d %s  %s\n", self:paint("36", "──"), f.index, f.total,
      self:paint("1", f.name), self:paint("2", since_text(f.since))))
    self.in_step = false
    if self.tty then host.progress(f.name) end
    return
  end
  if self.tty then
    self:write(string.format("  %s %s", self:paint("36", "…"), f.name))
    host.progress(f.name)
  else
    self:write(string.format("step %d/%d %s: started\n", f.index, f.total, f.name))
  end
  self.in_step = true
end

function M:on_step_finished(f)
  local status = f.status
  host.progress(nil)
  if self.tty then
    local code = status == "done" and "32" or status == "failed" and "31" or "33"
    self:write(string.format("\r\27[K  %s %s %s\n", self:paint(code, MARK[status] or "?"), f.name,
      self:paint("2", fmt_elapsed(f.elapsed))))
  else
    self:write(string.format("step %d/%d %s: %s%s\n", f.index, f.total, f.name, MARK_PLAIN[status] or status,
      f.elapsed and (" (" .. fmt_elapsed(f.elapsed) .. ")") or ""))
  end
  if f.error then self:write("      " .. self:paint("31", (tostring(f.error):gsub("\n", "\n      "))) .. "\n") end
  self.in_step = false
end

function M:line(s)
  if self.tty and (self.in_step or self.asking) then self.out:write("\r\27[K") end
  self:write(s .. "\n")
  -- a question waiting for its answer is asked again below what came meanwhile
  if self.tty and self.asking then self:write(self.asking) end
end

-- prompt(text | nil): text waits for a person's answer on the terminal; the
-- lines written meanwhile go above it. nil: answered.
function M:prompt(text)
  if text and self.tty and self.in_step then
    -- the step's "… name" line makes way; its mark comes back when it ends
    self.out:write("\r\27[K")
    self.in_step = false
  end
  self.asking = text
  if text and self.format == "text" then self:write(text) end
end

function M:on_action_planned(f)
  local mark = f.irreversible and self:paint("33", "!") or self:paint("32", "+")
  self:line(string.format("    %s %s%s", mark, f.describe,
    f.irreversible and self:paint("33", "  (irreversible)") or ""))
  local detail = f.detail
  -- never raw bytes on a terminal: fs summarizes binary content itself, so
  -- what is left is a path or a line with a few bytes that are not UTF-8
  if type(detail) == "string" and not is_text(detail) then detail = text(detail) end
  if detail and detail ~= "" then
    for l in (detail:gsub("\n$", "") .. "\n"):gmatch("(.-)\n") do
      local c = l:sub(1, 1)
      local painted = (c == "+" and not l:match("^%+%+%+")) and self:paint("32", l)
        or (c == "-" and not l:match("^%-%-%-")) and self:paint("31", l) or l
      self:line("        " .. painted)
    end
  end
end

function M:on_action_started(f)
  if not self.tty then self:line("    " .. f.describe) end
end

function M:on_action_failed(f)
  self:line("    " .. self:paint("31", "failed: " .. tostring(f.error)))
end

function M:on_log(f)
  self:line("    " .. f.message)
end

function M:on_note(f)
  self:line("    note: " .. f.message)
end

-- a manual gate: asked on the terminal, or planned in a dry-run
function M:on_gate(f)
  if f.dry_run then
    self:line(string.format("    %s would wait for a person: %s  (gate %s)", self:paint("33", "?"), f.question, f.gate))
  else
    self:line(string.format("    %s %s  (gate %s)", self:paint("1;33", "?"), f.question, f.gate))
  end
end

function M:on_decision(f)
  self:line(string.format("    gate %s: %s by %s (via %s)", f.gate, self:paint(f.decision == "abort" and "31"
    or f.decision == "promote" and "32" or "33", f.decision), f.by, f.via))
end

function M:on_paused(f)
  self:write(self:paint("33", string.format("Paused at gate %s (step %q): %s", f.gate, f.step, f.question)) .. "\n")
  self:write(string.format("  %s   promotes: the run goes on from step %q\n", f.resume, f.step))
  self:write(string.format("  %s aborts: what the run did is rolled back\n", f.rollback))
  if f.lock and f.lock ~= json.null then
    self:write(string.format("  The run keeps its lock '%s' until then.\n", f.lock))
  end
end

function M:on_rollback_started(f)
  if f.dry_run then
    self:write(self:paint("33", string.format("Would undo %d action(s), newest first:", f.actions or 0)) .. "\n")
    return
  end
  if f.actions == 0 then
    self:write(self:paint("33", "Nothing to roll back: the run changed nothing") .. "\n")
    return
  end
  self:write(self:paint("33", string.format("Rolling back %d action(s)%s", f.actions or 0,
    f.reason and (": " .. f.reason) or "")) .. "\n")
end

function M:on_undo(f)
  local mark
  if f.status == "undone" then mark = self:paint("32", MARK.undone)
  elseif f.status == "irreversible" then mark = self:paint("33", "!")
  else mark = self:paint("31", MARK.undo_failed) end
  self:line(string.format("  %s undo: %s%s", mark, f.describe or (f.kind .. " " .. f.target),
    f.error and (": " .. f.error) or ""))
end

function M:on_rollback_finished(f)
  local irr = f.irreversible or {}
  if f.dry_run then
    self:write(self:paint("33", "Rollback plan only: nothing changed.") .. "\n")
  elseif f.status == "complete" and f.actions == 0 then
    return -- said when it started: nothing to roll back
  elseif f.status == "complete" then
    self:write(self:paint("33", #irr == 0 and "Rollback complete" or string.format(
      "Rollback complete, but for %d irreversible action(s) that cannot be undone:", #irr)) .. "\n")
    for _, item in ipairs(irr) do self:write("  - " .. item .. "\n") end
  else
    self:write(self:paint("31", "Rollback INCOMPLETE: left to do by hand:") .. "\n")
    for _, item in ipairs(f.left or {}) do self:write("  - " .. item .. "\n") end
    for _, item in ipairs(irr) do self:write("  - " .. item .. " (irreversible: check it by hand)\n") end
  end
end

function M:on_run_finished(f)
  local s
  if f.status == "paused" then
    s = self:paint("33", string.format("Paused (exit %d): waiting for a person.", f.exit_code))
  elseif f.dry_run then
    s = string.format("Plan: %d action(s)%s, nothing changed.", f.planned or 0,
      (f.irreversible or 0) > 0 and string.format(" (%d irreversible)", f.irreversible) or "")
  elseif f.exit_code == 0 then
    s = self:paint("32", string.format("Succeeded in %s.", fmt_elapsed(f.elapsed)))
  elseif f.changed == false then
    s = self:paint("31", string.format("%s before changing anything (exit %d): %s",
      f.status == "interrupted" and "interrupted" or "failed", f.exit_code, f.error or ""))
  else
    s = self:paint("31", string.format("%s (exit %d): %s", f.status, f.exit_code, f.error or ""))
  end
  self:write(s .. "\n")
  if f.status == "stopped" and not f.dry_run and self.run_id then
    self:write(string.format("  relish resume %s   goes on from where it stopped\n", self.run_id))
    self:write(string.format("  relish rollback %s undoes what it did\n", self.run_id))
  end
end

return M
