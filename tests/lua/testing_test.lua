-- relish test itself: discovery, nesting, failures with file:line and a
-- readable table diff, the closing line, exit codes.
local sh = require "relish.sh"
local testing = require "relish.testing"

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

local function run_tests(args)
  local argv = { relish_exe(), "test" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return sh.run { argv = argv, timeout = 60, env = { NO_COLOR = "1" }, check = false }
end

describe("deep equality", function()
  test("equal tables, integers versus floats", function()
    assert_true(testing.equal({ a = { 1, 2, { b = "c" } } }, { a = { 1, 2, { b = "c" } } }))
    assert_false(testing.equal({ 1 }, { 1, 2 }))
    assert_false(testing.equal(1, 1.0), "1 and 1.0 differ in type")
    assert_true(testing.equal(0 / 0, 0 / 0), "NaN equals NaN for tests")
  end)

  test("diff lists paths of changed, missing and extra keys", function()
    local d = testing.diff({ spec = { replicas = 3, app = "web" } }, { spec = { replicas = 2, extra = true } })
    assert_eq(#d, 3)
    local text = testing.format_diff({ spec = { replicas = 3, app = "web" } }, { spec = { replicas = 2, extra = true } })
    assert_match(text, "%$%.spec%.replicas: expected 3 %(integer%), got 2 %(integer%)")
    assert_match(text, "%$%.spec%.app: missing %(expected \"web\"%)")
    assert_match(text, "%$%.spec%.extra: unexpected true")
  end)

  test("show is stable and marks cycles", function()
    local t = { b = 1, a = { 1, 2 } }
    t.self = t
    assert_eq(testing.show(t), "{a = {1, 2}, b = 1, self = <cycle>}")
  end)

  test("assert_error returns the message and checks the pattern", function()
    local msg = assert_error(function() error("kaboom 42") end, "kaboom %d+")
    assert_match(msg, "kaboom 42")
    assert_error(function() assert_error(function() end) end, "expected an error")
  end)

  test("assert_raises wants an error value of the kind named", function()
    local errors = require "relish._errors"
    local e = assert_raises(function() error(errors.value("parse", "bad at %d", 3), 0) end, "parse", "bad at %d")
    assert_eq({ e.kind, e.message }, { "parse", "bad at 3" })
    assert_error(function() assert_raises(function() end, "parse") end, "expected a parse error, but the function returned")
    assert_error(function() assert_raises(function() error("plain") end, "parse") end,
      "expected a parse error value, got \"[^\"]*plain\" %(string%)")
    assert_error(function() assert_raises(function() error(errors.value("io", "x"), 0) end, "parse") end,
      "expected a parse error, got a io error: x")
    assert_error(function() assert_raises(function() error(errors.value("parse", "x"), 0) end, "parse", "y") end,
      "error message \"x\" does not match pattern \"y\"")
  end)

  test("assert_misuse wants a plain message located at the caller", function()
    local function misused(level) error("m.f: expected a string, got number", level) end
    local text = assert_misuse(function() misused(2) end, "m.f: expected a string, got number")
    assert_match(text, "testing_test%.lua:%d+: m%.f: expected")
    -- located inside the function that raised, not at the caller
    assert_error(function() assert_misuse(function() misused(1) end, "m.f: expected a string, got number") end,
      "is not located at the caller")
    assert_error(function() assert_misuse(function() misused(2) end, "m.f: other") end,
      "expected the message \"m%.f: other\"")
    assert_error(function() assert_misuse(function() error({ kind = "x" }) end, "m") end, "a misuse error %(a string%)")
    assert_error(function() assert_misuse(function() end, "m") end, "expected a misuse error, but the function returned")
  end)
end)

describe("the runner", function()
  test("reports failures with file:line, a diff, and the closing line", function()
    local d = tmpdir()
    write(d .. "/a_test.lua", table.concat({
      'describe("outer", function()',
      '  describe("inner", function()',
      '    test("passes", function() assert_eq(1 + 1, 2) end)',
      '    test("fails", function()',
      '      assert_eq({ n = 1, list = { 1, 2 } }, { n = 2, list = { 1, 2 } })',
      '    end)',
      '  end)',
      'end)',
      'test("errors", function() local t = nil; return t.x end)',
    }, "\n"))
    local r = run_tests { d }
    assert_eq(r.code, 1)
    assert_match(r.stdout, "FAIL outer inner fails\n    [^\n]*a_test%.lua:5: values differ:")
    assert_match(r.stdout, "%$%.n: expected 2 %(integer%), got 1 %(integer%)")
    assert_match(r.stdout, "FAIL errors\n    [^\n]*a_test%.lua:9: ")
    assert_match(r.stdout, "\n1 passed, 2 failed\n$")
  end)

  test("all passing exits 0; --verbose lists tests; --filter selects", function()
    local d = tmpdir()
    write(d .. "/b_test.lua", 'test("one", function() end)\ntest("two", function() end)\n')
    local r = run_tests { d }
    assert_eq(r.code, 0)
    assert_eq(r.stdout, "2 passed, 0 failed\n")
    r = run_tests { "--verbose", d .. "/b_test.lua" }
    assert_match(r.stdout, "ok   one")
    r = run_tests { "--filter", "two", d }
    assert_eq(r.stdout, "1 passed, 0 failed\n")
  end)

  test("finds *_test.lua files recursively and ignores other files", function()
    local d = tmpdir()
    assert(os.execute("mkdir -p " .. d .. "/sub/deeper"))
    write(d .. "/sub/deeper/x_test.lua", 'test("x", function() end)\n')
    write(d .. "/sub/helper.lua", 'error("must not be run")\n')
    write(d .. "/y_test.lua", 'test("y", function() end)\n')
    local r = run_tests { d }
    assert_eq(r.stdout, "2 passed, 0 failed\n")
  end)

  test("before_each, after_each and tmpdir cleanup", function()
    local d = tmpdir()
    write(d .. "/h_test.lua", table.concat({
      'local log = {}',
      'local kept',
      'describe("d", function()',
      '  before_each(function() log[#log + 1] = "before" end)',
      '  after_each(function() log[#log + 1] = "after" end)',
      '  test("t", function() kept = tmpdir(); log[#log + 1] = "t" end)',
      'end)',
      'test("check", function()',
      '  assert_eq(log, { "before", "t", "after" })',
      '  assert_nil(io.open(kept .. "/."), "tmpdir removed after its test")',
      'end)',
    }, "\n"))
    local r = run_tests { d }
    assert_eq(r.code, 0, r.stdout)
  end)

  test("skip counts separately", function()
    local d = tmpdir()
    write(d .. "/s_test.lua", 'test("s", function() skip("no server") end)\ntest("p", function() end)\n')
    local r = run_tests { d }
    assert_eq(r.code, 0)
    assert_eq(r.stdout, "1 passed, 0 failed, 1 skipped\n")
  end)

  test("a file that does not load is a failure, not a crash", function()
    local d = tmpdir()
    write(d .. "/bad_test.lua", 'test("x", function() end\n')
    local r = run_tests { d }
    assert_eq(r.code, 1)
    assert_match(r.stdout, "FAIL [^\n]*bad_test%.lua")
    assert_match(r.stdout, "0 passed, 1 failed")
  end)

  test("undeclared globals in a test file fail that test with file:line", function()
    local d = tmpdir()
    write(d .. "/g_test.lua", 'test("g", function()\n  return nope\nend)\n')
    local r = run_tests { d }
    assert_eq(r.code, 1)
    assert_match(r.stdout, "g_test%.lua:2: [^\n]*undeclared global 'nope'")
  end)

  test("no test files, or a missing path, is a usage error", function()
    local d = tmpdir()
    local r = run_tests { d }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "no %*_test%.lua files")
    r = run_tests { d .. "/missing" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "no such file or directory")
  end)
end)
