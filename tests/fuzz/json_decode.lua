-- json.decode on any bytes: a parse error or a value; a value encodes, and
-- decoding what was encoded gives the same value and the same text again.
local json = require "relish.json"
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local PARSE = { parse = true }

return function(data)
  local ok, v = pcall(json.decode, data)
  -- the same inside a coroutine whose stack holds a few more values, as a
  -- task's does (a collector pause there once freed the stack under decode)
  local co = coroutine.create(function(...) return pcall(json.decode, data) end)
  local resumed, cok, cv = coroutine.resume(co, table.unpack({}, 1, #data % 32))
  if not resumed then error("json.decode in a coroutine: " .. tostring(cok), 0) end
  if cok ~= ok then error("json.decode answers differently in a coroutine", 0) end
  if ok then common.assert_same("json.decode in a coroutine", v, cv) end
  if not ok then return common.expect_error("json.decode", v, PARSE) end
  for _, opts in ipairs { {}, { pretty = true }, { ascii = true }, { sort_keys = false } } do
    local text = json.encode(v, opts)
    local back = json.decode(text)
    common.assert_same("json.decode(json.encode(v))", v, back)
    if opts.sort_keys == nil and json.encode(back, opts) ~= text then
      error("json.encode is not stable over a round trip: " .. text, 0)
    end
  end
end
