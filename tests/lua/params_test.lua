-- Params checked before anything runs: a param's own validate function and
-- param.semver, through the real CLI (exit 2, every problem listed, no run
-- recorded).
local support = require "support"
local json = require "relish.json"

local relish, recipe = support.relish, support.recipe

-- The runs the journal holds (none when it was never created).
local function runs(d)
  local h = relish { "history", "--output", "json", "--state", support.state(d) }
  assert_eq(h.code, 0, h.stderr)
  local n = 0
  for _ in h.stdout:gmatch("[^\n]+") do n = n + 1 end
  return n
end

describe("validate", function()
  local RECIPE = [[
local fs = require "relish.fs"
return recipe "v" {
  params = {
    dir = param.string { required = true },
    version = param.string { required = true, validate = function(v)
      if not v:find("^v") then return nil, "must start with v (a tag)" end
    end },
    replicas = param.integer { default = 2, validate = function(n)
      if n % 2 == 1 then error("must be even") end
      return true
    end },
    region = param.enum { choices = { "eu", "us" }, default = "eu", validate = function(r)
      return r ~= "us" -- false without a message
    end },
    hosts = param.list { default = "a", validate = function(l)
      if #l > 2 then error({ kind = "invalid", message = "at most two hosts in a canary" }) end
    end },
    token = param.string { secret = true, default = "s3cr3t-value", validate = function(t)
      return nil, "rejected " .. require("relish.secret").reveal(t)
    end },
  },
  step "write" { run = function(ctx) fs.write(ctx.params.dir .. "/out", ctx.params.version) end },
}
]]

  test("every validate problem is listed with the others: exit 2, nothing runs, no run recorded", function()
    local d = tmpdir()
    local f = recipe(d, "v.lua", RECIPE)
    local r = relish { "run", f, "-p", "dir=" .. d, "-p", "version=1.2.3", "-p", "replicas=3", "-p", "region=us",
      "-p", "hosts=a,b,c", "-p", "nope=1", "--state", support.state(d) }
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "param 'version': must start with v %(a tag%)")
    assert_match(r.stderr, "param 'replicas': must be even\n") -- the raising line's position is dropped
    assert_match(r.stderr, "param 'region': \"us\" was refused by its validate function")
    assert_match(r.stderr, "param 'hosts': at most two hosts in a canary")
    assert_match(r.stderr, "param 'token': its default rejected %*%*%*") -- the secret stays redacted
    assert_false(r.stderr:find("s3cr3t", 1, true) ~= nil, r.stderr)
    assert_match(r.stderr, "unknown param 'nope'")
    assert_nil(support.read(d .. "/out"))
    assert_eq(runs(d), 0)
  end)

  test("values that pass run; validate gets the typed value", function()
    local d = tmpdir()
    local f = recipe(d, "v.lua", RECIPE:gsub('return nil, "rejected "', 'do return true end return nil, "rejected "'))
    local r = relish { "run", f, "-p", "dir=" .. d, "-p", "version=v1.2.3", "-p", "replicas=4",
      "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(support.read(d .. "/out"), "v1.2.3")
    assert_eq(runs(d), 1)
  end)

  test("validate may not change anything, and must be a function", function()
    local d = tmpdir()
    local f = recipe(d, "e.lua", [[
return recipe "e" {
  params = { dir = param.string { required = true, validate = function(v)
    require("relish.fs").write(v .. "/made", "x")
  end } },
  step "s" { run = function() end },
}
]])
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "param 'dir': [^\n]*effects are not allowed in a param's validate function")
    assert_nil(support.read(d .. "/made"))
    f = recipe(d, "n.lua", 'return recipe "n" {\n  params = { x = param.string { validate = "yes" } },\n' ..
      '  step "s" { run = function() end },\n}\n')
    r = relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "n%.lua:2: param%.string: validate must be a function")
  end)
end)

describe("param.semver", function()
  local RECIPE = [[
return recipe "s" {
  params = {
    version = param.semver { required = true, min = "1.2.0", max = "v3.0.0" },
    next = param.semver { default = "2.0.0", range = "^2" },
  },
  step "show" { run = function(ctx)
    local semver = require "relish.semver"
    ctx.log("version=%s (%s) next=%s major=%d", ctx.params.version, type(ctx.params.version), ctx.params.next,
      semver.parse(ctx.params.version).major)
  end },
}
]]

  test("a semantic version in bounds and range passes, as the text given", function()
    local d = tmpdir()
    local f = recipe(d, "s.lua", RECIPE)
    local r = relish { "run", f, "-p", "version=v2.5.1-rc.1", "-p", "next=2.3.0", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "version=v2%.5%.1%-rc%.1 %(string%) next=2%.3%.0 major=2")
    local s = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_eq(s.params, { version = "v2.5.1-rc.1", next = "2.3.0" })
  end)

  test("not a version, out of bounds, out of range: exit 2, every problem listed, no run", function()
    local d = tmpdir()
    local f = recipe(d, "s.lua", RECIPE)
    local r = relish { "run", f, "-p", "version=1.2", "-p", "next=3.0.0", "--state", support.state(d) }
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "param 'version': \"1%.2\" is not a semantic version")
    assert_match(r.stderr, "param 'next': 3%.0%.0 is not in the range >=2%.0%.0 <3%.0%.0%-0")
    r = relish { "run", f, "-p", "version=1.1.9", "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "param 'version': 1%.1%.9 is below the minimum 1%.2%.0")
    r = relish { "run", f, "-p", "version=3.0.1", "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "param 'version': 3%.0%.1 is above the maximum 3%.0%.0")
    assert_eq(runs(d), 0)
  end)

  test("a malformed bound or range is the recipe's fault, naming its line", function()
    local d = tmpdir()
    local f = recipe(d, "b.lua", 'return recipe "b" {\n  params = { v = param.semver { min = "1.x" } },\n' ..
      '  step "s" { run = function() end },\n}\n')
    local r = relish { "run", f, "-p", "v=1.0.0", "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "b%.lua:2: param%.semver: min: ")
    f = recipe(d, "r.lua", 'return recipe "r" {\n  params = { v = param.string { range = "^1" } },\n' ..
      '  step "s" { run = function() end },\n}\n')
    r = relish { "run", f, "-p", "v=1.0.0", "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "r%.lua:2: param%.string: range is for param%.semver")
  end)
end)
