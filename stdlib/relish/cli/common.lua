-- relish.cli.common: what several commands share: -p parsing.
local M = {}

-- -p key=value list -> table (a repeated key makes a list)
function M.params(list)
  local out = {}
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then
      error({ kind = "usage", exit = 2, message = string.format("-p %s: expected KEY=VALUE", kv) }, 0)
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

return M
