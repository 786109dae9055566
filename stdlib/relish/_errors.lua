-- relish._errors: what the Lua stdlib modules share for their failures:
-- error values like the host's, and usage errors that point at the caller.
local M = {}

-- The metatable of every error value: named like the host's, printing as
-- its message.
M.MT = { __name = "relish.Error", __tostring = function(e) return e.message end }

-- value(kind, fmt, ...) -> {kind=, code=, message=}, printing as its message
function M.value(kind, fmt, ...)
  return setmetatable({ kind = kind, code = kind, message = string.format(fmt, ...) }, M.MT)
end

-- usage_for(source) -> usage(fname, msg), which raises "fname: msg" located
-- at the first caller outside the file of that chunk source (a module passes
-- its own, debug.getinfo(1, "S").source, so calls between its functions are
-- skipped).
function M.usage_for(source)
  return function(fname, msg)
    local level = 2
    while true do
      local info = debug.getinfo(level, "S")
      if not info or info.source ~= source then break end
      level = level + 1
    end
    error(fname .. ": " .. msg, level)
  end
end

-- invalid(msg): raises the error of bad input from a user (a recipe, a param,
-- a flag, a run id): exit 2, nothing changed; printed as the message alone.
function M.invalid(msg)
  error({ kind = "usage", exit = 2, message = msg }, 0)
end

return M
