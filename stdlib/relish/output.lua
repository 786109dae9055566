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

-- event(name, fields): the one entry point; fields are copied into the JSON.
function M:event(name, fields)
  fields = fields or {}
  if self.format == "json" then
    local e = redact_table(fields)
    e.event = name
    e.run_id = self.run_id
    e.ts = iso_now()
    self.out:write(json.encode(e, { sort_keys = true }), "\n")
    self.out:flush()
    return
  end
  local h = self["on_" .. name]
  if h then h(self, fields) end
end

local MARK = { done = "✓", failed = "✗", skipped = "-", running = "…", undone = "↺", undo_failed = "!" }
local MARK_PLAIN = { done = "ok", failed = "FAILED", skipped = "skipped", undone = "undone", undo_failed = "UNDO FAILED" }

function M:on_run_started(f)
  local what = f.dry_run and "Plan for" or (f.resumed and "Resuming" or "Running")
  self:write(string.format("%s %s (run %s)\n", what, self:paint("1", f.recipe), f.run_id or self.run_id))
end

function M:on_step_started(f)
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
  if self.tty and self.in_step then self.out:write("\r\27[K") end
  self:write(s .. "\n")
end

function M:on_action_planned(f)
  local mark = f.irreversible and self:paint("33", "!") or self:paint("32", "+")
  self:line(string.format("    %s %s%s", mark, f.describe,
    f.irreversible and self:paint("33", "  (irreversible)") or ""))
  if f.detail and f.detail ~= "" then
    for l in (f.detail:gsub("\n$", "") .. "\n"):gmatch("(.-)\n") do
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
  if f.dry_run then
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
end

return M
