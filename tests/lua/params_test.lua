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

describe("values from the command line", function()
  local RECIPE = [[
local fs = require "relish.fs"
return recipe "c" {
  params = {
    dir = param.string { required = true },
    name = param.string { default = "x" },
    n = param.number { default = 1 },
    i = param.integer { default = 1 },
    note = param.string { required = true, allow_empty = true, default = "-" },
    hosts = param.list { default = "a" },
  },
  on_failure = "stop",
  step "write" { run = function(ctx)
    fs.write(ctx.params.dir .. "/out", string.format("%s|%s|%s|%s", ctx.params.name, math.type(ctx.params.n),
      ctx.params.i, ctx.params.note))
  end },
  step "second" { run = function(ctx)
    if fs.exists(ctx.params.dir .. "/stop") then error("told to stop") end
    fs.write(ctx.params.dir .. "/second", ctx.params.name)
  end },
}
]]

  local function run(d, ...)
    local args = { "run", recipe(d, "c.lua", RECIPE), "--state", support.state(d) }
    for _, kv in ipairs { ... } do args[#args + 1] = "-p"; args[#args + 1] = kv end
    return relish(args)
  end

  test("numbers that are not the number written are refused: exit 2 naming the param, no run", function()
    local d = tmpdir()
    for _, case in ipairs {
      { "n=1e400", "param 'n': 1e400 is not a finite number" },
      { "n=-1e400", "param 'n': %-1e400 is not a finite number" },
      { "n=0xffffffffffffffff", "param 'n': 0xffffffffffffffff is out of range" },
      { "i=0xffffffffffffffff", "param 'i': 0xffffffffffffffff is out of range %(integers: " ..
        "%-9223372036854775808 to 9223372036854775807%)" },
      { "i=0x10000000000000000", "param 'i': 0x10000000000000000 is out of range" },
      { "i=-9223372036854775809", "param 'i': %-9223372036854775809 is out of range" },
      { "i=9223372036854775808", "param 'i': 9223372036854775808 is out of range" },
      { "i=1e19", "param 'i': 1e19 is out of range" },
      { "i=1.5", "param 'i': \"1%.5\" is not an integer" },
    } do
      local r = run(d, "dir=" .. d, case[1])
      assert_eq(r.code, 2, case[1] .. ": " .. r.stdout .. r.stderr)
      assert_match(r.stderr, case[2])
      assert_false(r.stderr:find("traceback", 1, true) ~= nil, r.stderr)
    end
    assert_eq(runs(d), 0)
    assert_nil(support.read(d .. "/out"))
  end)

  test("integers at the ends of 64 bits are kept exactly", function()
    local d = tmpdir()
    for _, case in ipairs {
      { "i=9223372036854775807", "9223372036854775807" },
      { "i=-9223372036854775808", "-9223372036854775808" },
      { "i=0x7fffffffffffffff", "9223372036854775807" },
      { "i=-0x8000000000000000", "-9223372036854775808" },
      { "i=1e3", "1000" },
    } do
      local r = run(d, "dir=" .. d, case[1])
      assert_eq(r.code, 0, case[1] .. ": " .. r.stdout .. r.stderr)
      assert_eq(support.read(d .. "/out"), "x|integer|" .. case[2] .. "|-")
    end
  end)

  test("an empty value does not satisfy required, unless the param allows it", function()
    local d = tmpdir()
    local r = run(d, "dir=")
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "param 'dir': an empty value is not allowed for a required param " ..
      "%(allow_empty = true accepts \"\"%)")
    assert_eq(runs(d), 0)
    r = run(d, "dir=" .. d, "note=")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(support.read(d .. "/out"), "x|integer|1|")
  end)

  test("a string param is bytes: not UTF-8 is kept exactly through the journal, resume and apply", function()
    local d = tmpdir()
    local name = "caf\xe9-\xff"
    support.write(d .. "/stop", "")
    local r = run(d, "dir=" .. d, "name=" .. name)
    assert_eq(r.code, 1, r.stdout .. r.stderr) -- stopped at "second", to resume
    assert_eq(support.read(d .. "/out"), name .. "|integer|1|-")
    -- history and show read the kept params (readable text, the exact bytes in name_b64)
    local h = relish { "history", "--output", "json", "--state", support.state(d) }
    assert_eq(h.code, 0, h.stderr)
    assert_eq(json.decode(h.stdout).params.name_b64, "Y2Fm6S3/")
    local s = relish { "show", "last", "--format", "json", "--state", support.state(d) }
    assert_eq(s.code, 0, s.stderr)
    os.remove(d .. "/stop")
    r = relish { "resume", "last", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(support.read(d .. "/second"), name)
    -- a saved plan keeps them the same way
    os.remove(d .. "/out")
    r = relish { "plan", recipe(d, "c.lua", RECIPE), "-p", "dir=" .. d, "-p", "name=" .. name, "-o", d .. "/p.json",
      "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    r = relish { "apply", d .. "/p.json", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(support.read(d .. "/out"), name .. "|integer|1|-")
  end)

  test("a list item that is not UTF-8 is refused (a list is kept as text)", function()
    local d = tmpdir()
    local r = run(d, "dir=" .. d, "hosts=a,\xff")
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "param 'hosts': item 2 is not UTF%-8 text")
  end)

  test("apply of a directory, or of a file that is not a plan: exit 2 with the reason, no traceback", function()
    local d = tmpdir()
    local r = relish { "apply", d, "--state", support.state(d) }
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "^relish: cannot read plan " .. d:gsub("%p", "%%%0") .. ": Is a directory\n$")
    support.write(d .. "/x.json", "[1]")
    r = relish { "apply", d .. "/x.json", "--state", support.state(d) }
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "not a relish plan")
  end)
end)
