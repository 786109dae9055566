-- relish.cli.common: what several commands share: -p and --wait-lock parsing.
local invalid = require("relish._errors").invalid
local M = {}

-- -p key=value list -> table (a repeated key makes a list)
function M.params(list)
  local out = {}
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then
      invalid(string.format("-p %s: expected KEY=VALUE", kv))
    end
    if out[k] == nil then
      out[k] = v
    elseif type(out[k]) == "table" then
      table.insert(out[k], v)
    else
      out[k] = { out[k], v }
    end
  end
  return out
end

-- --wait-lock DURATION -> seconds, or nil when not given
function M.wait_lock(flags)
  local v = flags["wait-lock"]
  if v == nil then return nil end
  local seconds, err = require("relish.dsl").duration(v, "--wait-lock")
  if not seconds then invalid(err) end
  return seconds
end

return M
