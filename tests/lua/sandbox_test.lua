-- The recipe sandbox: what a recipe may not call (and the gated way each
-- error names), the doors out of it that stay shut, effects refused while a
-- recipe file loads, and the full library that `relish lua` and tests keep.
local support = require "support"

local relish, write, read = support.relish, support.write, support.read

describe("relish lua and test files keep the full library", function()
  test("relish lua: os.remove, io.open for writing, os.execute, debug", function()
    local d = tmpdir()
    write(d .. "/victim", "x")
    local script = d .. "/script.lua"
    write(script, [[
local dir = arg[1]
assert(os.remove(dir .. "/victim"))
local f = assert(io.open(dir .. "/out", "w")) f:write("written") f:close()
assert(os.execute("touch " .. dir .. "/touched"))
print(type(debug.getregistry()), type(require("relish._host").getpid))
local r, err = try(function() error(require("relish._errors").value("not_found", "nope")) end)
print(tostring(r), err.kind)
]])
    local r = relish { "lua", script, d }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(r.stdout, "table\tfunction\nnil\tnot_found\n")
    assert_nil(read(d .. "/victim"))
    assert_eq(read(d .. "/out"), "written")
    assert_eq(read(d .. "/touched"), "")
  end)

  test("in a test file: the real os and io, and try as a global", function()
    local d = tmpdir()
    write(d .. "/victim", "x")
    assert(os.remove(d .. "/victim"))
    assert_nil(read(d .. "/victim"))
    assert_eq(type(io.popen), "function")
    local r, err = try(error, require("relish._errors").value("not_found", "nope"))
    assert_nil(r)
    assert_eq(err.kind, "not_found")
    assert_error(function() try(error, "plain") end, "plain")
  end)
end)
