-- relish.semver on any text: parse and range raise an `invalid` error or
-- give a value; a version prints back as text that parses to an equal
-- version, and a range prints back as text that reads as the same range.
local semver = require "relish.semver"
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local INVALID = { invalid = true }

return function(data)
  local ok, v = pcall(semver.parse, data)
  if not ok then
    common.expect_error("semver.parse", v, INVALID)
  else
    local text = tostring(v)
    local again = semver.parse(text)
    if semver.compare(v, again) ~= 0 or tostring(again) ~= text then
      error(string.format("semver.parse(%q) prints as %q, which reads back differently", data, text), 0)
    end
    if semver.valid(data) ~= true then error("semver.valid disagrees with semver.parse on " .. data, 0) end
    local bok, b = pcall(semver.bump, v, "patch")
    if not bok then common.expect_error("semver.bump", b, INVALID) end
  end
  local rok, r = pcall(semver.range, data)
  if not rok then return common.expect_error("semver.range", r, INVALID) end
  local text = tostring(r)
  local again = semver.range(text)
  if tostring(again) ~= text then
    error(string.format("semver.range(%q) prints as %q, which reads back as %q", data, text, tostring(again)), 0)
  end
  if ok then
    local a, b = semver.satisfies(v, r), semver.satisfies(v, again)
    if a ~= b then error("the printed range does not allow the same versions: " .. text, 0) end
  end
end
