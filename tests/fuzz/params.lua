-- What a command line gives a recipe: -p values checked against each kind
-- of param (dsl.check_params) and durations (--wait-lock, a step's timeout).
-- The first byte picks the param's kind, the rest is the value. A value is
-- refused with a usage error naming the param, or accepted as a value of its
-- kind that the journal can keep (json.encode of the kept params works) and
-- that reads back from the journal as the same value.
local dsl = require "relish.dsl"
local json = require "relish.json"
local J = require "relish.journal"
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local USAGE = { usage = true }
local params = {
  dsl.param.string {}, dsl.param.string { required = true }, dsl.param.number {}, dsl.param.integer {},
  dsl.param.integer { min = -5, max = 5 }, dsl.param.boolean {}, dsl.param.list {},
  dsl.param.semver {}, dsl.param.enum { choices = { "a", "b" } }, dsl.param.number { min = 0, max = 1 },
}

return function(data)
  local dok, seconds, why = pcall(dsl.duration, data, "fuzz")
  if not dok then error("dsl.duration raised: " .. tostring(seconds), 0) end
  if seconds ~= nil and (type(seconds) ~= "number" or not (seconds > 0 and seconds < math.huge)) then
    error(string.format("dsl.duration(%q) gave %s", data, tostring(seconds)), 0)
  end
  if seconds == nil and type(why) ~= "string" then error("dsl.duration gave neither seconds nor a reason", 0) end

  -- params as a journal or a plan holds them: any text is refused or read
  local jok, jv = pcall(J.decode_params, data)
  if not jok then common.expect_error("journal.decode_params", jv, { parse = true, journal = true }) end

  if #data == 0 then return end
  local p = params[data:byte(1) % #params + 1]
  local raw = data:sub(2)
  local recipe = { name = "fuzz", params = { v = p } }
  local ok, out = pcall(dsl.check_params, recipe, { v = raw }, "fuzz.lua")
  if not ok then
    common.expect_error("dsl.check_params", out, USAGE)
    if not out.message:find("param 'v'", 1, true) then error("the problem does not name the param: " .. out.message, 0) end
    return
  end
  local v = out.v
  if p.kind == "integer" and math.type(v) ~= "integer" then error("an integer param gave " .. tostring(v), 0) end
  if p.kind == "number" and not (type(v) == "number" and v == v and v > -math.huge and v < math.huge) then
    error("a number param gave " .. tostring(v), 0)
  end
  if p.kind == "integer" or p.kind == "number" then
    -- the value is the number written: printed back, it reads as the same number
    if tonumber(string.format(math.type(v) == "integer" and "%d" or "%.17g", v)) ~= v then
      error("a number param does not print back: " .. tostring(v), 0)
    end
  end
  if p.required and (v == "" or v == nil) then error("a required param accepted an empty value", 0) end
  -- kept in the journal and read back (resume, apply, rollback): the same value
  local kept = J.encode_params(out)
  local back = J.decode_params(kept)
  common.assert_same("params kept in the journal", out, back)
end
