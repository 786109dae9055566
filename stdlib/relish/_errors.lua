-- relish._errors: what the Lua stdlib modules share for their failures:
-- error values like the host's, and usage errors that point at the caller.
local M = {}

-- The metatable of every error value: named like the host's, printing as
-- its message.
M.MT = { __name = "relish.Error", __tostring = function(e) return e.message end }

-- value(kind, fmt, ...) -> {kind=, message=}, printing as its message
function M.value(kind, fmt, ...)
  return setmetatable({ kind = kind, message = string.format(fmt, ...) }, M.MT)
end

local SELF = debug.getinfo(1, "S").source

-- usage_for(source) -> usage(fname, msg), which raises "fname: msg" located
-- at the first caller outside the file of that chunk source (a module passes
-- its own, debug.getinfo(1, "S").source, so calls between its functions are
-- skipped, and so are those of this file: check_options).
function M.usage_for(source)
  return function(fname, msg)
    local level = 2
    while true do
      local info = debug.getinfo(level, "S")
      if not info or (info.source ~= source and info.source ~= SELF) then break end
      level = level + 1
    end
    error(fname .. ": " .. msg, level)
  end
end

-- check_options(usage, fname, opts, known [, within]) -> opts ({} for nil):
-- the options of fname must be a table whose keys are all in the set known,
-- else a usage error worded as the host's relish_checkopts: "fname: options
-- must be a table, got T", "fname: unknown option 'k' (did you mean 'x'?)".
-- within prefixes the keys of an option that is itself a table ("push.").
function M.check_options(usage, fname, opts, known, within)
  within = within or ""
  if opts == nil then return {} end
  if type(opts) ~= "table" then
    usage(fname, (within == "" and "options" or within:sub(1, -2)) .. " must be a table, got " .. type(opts))
  end
  for k in pairs(opts) do
    if not known[k] then
      if type(k) ~= "string" then usage(fname, "unknown option " .. within .. tostring(k)) end
      local names = {}
      for name in pairs(known) do names[#names + 1] = name end
      table.sort(names)
      local near = require("relish._host").nearest(k, names)
      usage(fname, string.format("unknown option '%s%s'%s", within, k,
        near and string.format(" (did you mean '%s%s'?)", within, near) or ""))
    end
  end
  return opts
end

-- invalid(msg): raises the error of bad input from a user (a recipe, a param,
-- a flag, a run id): exit 2, nothing changed; printed as the message alone.
function M.invalid(msg)
  error({ kind = "usage", exit = 2, message = msg }, 0)
end

-- Failures try never swallows: a stop (Ctrl-C, the step's deadline, a
-- cancelled task, a run that lost its lock, a pause at a manual gate, a
-- person who stopped a runbook), a saved plan that no longer matches, a
-- journal that cannot be written, bad input from a user, and a question
-- nobody can answer (no terminal, no answer given).
local PASS = { interrupted = true, cancelled = true, deadlock = true, drift = true,
  journal = true, usage = true, lock_lost = true, paused = true, stopped = true, unanswered = true }

local function caught(ok, ...)
  if ok then return ... end
  local e = ...
  if type(e) == "table" and type(e.kind) == "string" and not PASS[e.kind]
    -- an operation's own timeout is its failure; the step's deadline is a stop
    and not (e.kind == "timeout" and require("relish._host").deadline_passed()) then
    return nil, e
  end
  error(e, 0)
end

-- try(fn, ...) -> fn's results, or nil, err when fn fails with a structured
-- error: the one non-raising form, the same for every module
-- (`local r, err = try(fs.read, path)`, `try(repo.push, repo, "origin")`).
-- Misuse (a plain error) and stops are raised again.
function M.try(fn, ...)
  if type(fn) ~= "function" then
    local mt = getmetatable(fn)
    if not (mt and mt.__call) then error("try: expected a function, got " .. type(fn), 2) end
  end
  return caught(pcall(fn, ...))
end

return M
