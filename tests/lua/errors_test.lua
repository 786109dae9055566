-- try(fn, ...): the one non-raising form, the same for every module.
local support = require "support"
local sh = require "relish.sh"
local errors = require "relish._errors"
local try = errors.try

describe("try", function()
  test("returns fn's results, or nil and the structured error", function()
    local a, b = try(function(x) return x, "two" end, "one")
    assert_eq(a, "one")
    assert_eq(b, "two")
    local r, err = try(function() error(errors.value("io", "disk on fire"), 0) end)
    assert_nil(r)
    assert_eq(err.kind, "io")
    assert_eq(tostring(err), "disk on fire")
  end)

  test("raises misuse and stops again", function()
    assert_error(function() try(function() error("bad argument") end) end, "bad argument")
    for _, kind in ipairs { "interrupted", "cancelled", "drift", "journal", "usage", "deadlock", "lock_lost" } do
      local _, e = assert_error(function() try(function() error({ kind = kind, message = kind }, 0) end) end)
      assert_eq(e.kind, kind)
    end
    assert_error(function() try(42) end, "try: expected a function, got number")
  end)

  test("an operation's own timeout is a failure it returns", function()
    local r, err = try(sh.run, { argv = { "sleep", "5" }, timeout = 0.2 })
    assert_nil(r)
    assert_eq(err.kind, "timeout")
  end)

  test("the step's deadline is a stop: the step times out even inside try", function()
    local d = tmpdir()
    local f = support.recipe(d, "deadline.lua", [[
local sh = require "relish.sh"
return recipe "deadline" {
  step "wait" { timeout = "1s", run = function(ctx)
    local r, err = try(sh.run, { argv = { "sleep", "5" }, readonly = true })
    ctx.log("not reached: %s", tostring(err))
  end },
}
]])
    local r = support.relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout .. r.stderr, "timed out after the step's timeout of 1")
    assert_false((r.stdout .. r.stderr):find("not reached", 1, true) ~= nil)
  end)
end)
