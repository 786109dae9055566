-- common.lua: what the harnesses share: the check that an error is one the
-- parser is allowed to raise, and a deep comparison that names the first
-- difference. A harness raises only for a bug; driver.c turns that into a
-- crash libFuzzer reports.
local M = {}

-- A failed parse must be a structured error of one of kinds (a plain string
-- is a bug: a Lua error escaped from the parser, or a C error message).
function M.expect_error(what, err, kinds)
  if type(err) == "table" and kinds[err.kind] and type(err.message) == "string" then return end
  error(string.format("%s raised an unexpected error: %s", what,
    type(err) == "table" and ("{kind=" .. tostring(err.kind) .. ", message=" .. tostring(err.message) .. "}")
      or tostring(err)), 0)
end

local function same(a, b, path, seen)
  if type(a) ~= type(b) then return false, path .. ": " .. type(a) .. " vs " .. type(b) end
  if type(a) == "number" then
    if a ~= a and b ~= b then return true end -- NaN
    if math.type(a) ~= math.type(b) or a ~= b or (a == 0 and 1 / a ~= 1 / b) then
      return false, string.format("%s: %s (%s) vs %s (%s)", path, a, math.type(a), b, math.type(b))
    end
    return true
  end
  if type(a) ~= "table" then
    if a == b then return true end
    return false, string.format("%s: %q vs %q", path, tostring(a), tostring(b))
  end
  if seen[a] == b then return true end
  seen[a] = b
  for k, v in pairs(a) do
    local ok, why = same(v, b[k], path .. "[" .. tostring(k) .. "]", seen)
    if not ok then return false, why end
  end
  for k in pairs(b) do
    if a[k] == nil then return false, path .. "[" .. tostring(k) .. "]: missing on the left" end
  end
  return true
end

-- Raises unless a and b hold the same values (numbers of the same subtype).
function M.assert_same(what, a, b)
  local ok, why = same(a, b, "$", {})
  if not ok then error(what .. ": values differ at " .. why, 0) end
end

return M
