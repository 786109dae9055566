-- The command line as a user meets it: help, suggestions, exit codes, errors
-- naming file:line, signals.
local sh = require "relish.sh"

local function relish(argv, opts)
  local full = { relish_exe() }
  for _, a in ipairs(argv) do full[#full + 1] = a end
  opts = opts or {}
  local r = sh.run { argv = full, cwd = opts.cwd, env = opts.env, input = opts.input, timeout = 30, check = false }
  return r
end

local function write(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

describe("help", function()
  test("no command prints the command list on stderr and exits 2", function()
    local r = relish {}
    assert_eq(r.code, 2)
    assert_match(r.stderr, "Commands:")
    assert_match(r.stderr, "lua FILE")
  end)

  test("help, --help and help COMMAND", function()
    local r = relish { "help" }
    assert_eq(r.code, 0)
    assert_match(r.stdout, "test %[PATH%]")
    r = relish { "--help" }
    assert_eq(r.code, 0)
    r = relish { "help", "lua" }
    assert_eq(r.code, 0)
    assert_match(r.stdout, "Usage: relish lua FILE %[ARG%]%.%.%.")
  end)

  test("every command answers --help with its usage", function()
    for _, cmd in ipairs { "lua", "test", "version", "help" } do
      local r = relish { cmd, "--help" }
      assert_eq(r.code, 0, cmd)
      assert_match(r.stdout, "Usage: relish " .. cmd, cmd)
      assert_match(r.stdout, "%-h, %-%-help", cmd)
    end
  end)
end)

describe("usage errors exit 2 with a suggestion", function()
  test("unknown command", function()
    local r = relish { "tset" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "unknown command 'tset' %(did you mean 'test'%?%)")
  end)

  test("unknown flag", function()
    local r = relish { "test", "--verbos" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "unknown flag '%-%-verbos' %(did you mean '%-%-verbose'%?%)")
  end)

  test("unknown flag without a near name", function()
    local r = relish { "version", "--zzzzzz" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "unknown flag '%-%-zzzzzz'")
  end)

  test("help for an unknown command", function()
    local r = relish { "help", "verison" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "did you mean 'version'")
  end)

  test("missing argument and bad choice", function()
    local r = relish { "lua" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "missing FILE")
    r = relish { "version", "--output", "xml" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "%-%-output must be one of text|json")
  end)
end)

describe("version", function()
  test("names relish and every library it runs with", function()
    local r = relish { "version" }
    assert_eq(r.code, 0)
    for _, lib in ipairs { "relish %d+%.%d+%.%d+", "Lua 5%.4", "libcurl", "libgit2", "cJSON", "libyaml", "SQLite" } do
      assert_match(r.stdout, lib)
    end
  end)

  test("--version is the same, --output json is machine-readable", function()
    assert_eq(relish { "--version" }.stdout, relish { "version" }.stdout)
    local r = relish { "version", "--output", "json" }
    local v = require("relish.json").decode(r.stdout)
    assert_match(v.lua, "^Lua 5%.4")
    assert_match(v.sqlite, "^3%.")
  end)
end)

describe("relish lua", function()
  test("passes arguments in arg and ...", function()
    local d = tmpdir()
    write(d .. "/args.lua", "local a, b = ...\nio.write(arg[0], ' ', a, ' ', b, ' ', #arg)\n")
    local r = relish { "lua", d .. "/args.lua", "one", "--two" }
    assert_eq(r.code, 0, r.stderr)
    assert_eq(r.stdout, d .. "/args.lua one --two 2")
  end)

  test("a syntax error is exit 2 and names file:line", function()
    local d = tmpdir()
    write(d .. "/bad.lua", "local x = 1\nlocal y = = 2\n")
    local r = relish { "lua", d .. "/bad.lua" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "bad%.lua:2:")
  end)

  test("a runtime error is exit 1 with file:line and a traceback", function()
    local d = tmpdir()
    write(d .. "/boom.lua", "local function f()\n  error('boom')\nend\nf()\n")
    local r = relish { "lua", d .. "/boom.lua" }
    assert_eq(r.code, 1)
    assert_match(r.stderr, "boom%.lua:2: boom")
    assert_match(r.stderr, "stack traceback")
  end)

  test("undeclared globals are errors naming the name and line", function()
    local d = tmpdir()
    write(d .. "/g.lua", "local ok = true\nprint(colour)\n")
    local r = relish { "lua", d .. "/g.lua" }
    assert_eq(r.code, 1)
    assert_match(r.stderr, "g%.lua:2: undeclared global 'colour'")
    write(d .. "/s.lua", "\n\ncount = 1\n")
    r = relish { "lua", d .. "/s.lua" }
    assert_eq(r.code, 1)
    assert_match(r.stderr, "s%.lua:3: assignment to undeclared global 'count'")
  end)

  test("a missing file is exit 2", function()
    local r = relish { "lua", "/nonexistent/x.lua" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "cannot open /nonexistent/x%.lua")
  end)

  test("a bytecode file is refused with exit 2", function()
    local d = tmpdir()
    write(d .. "/b.luac", string.dump(function() return 1 end))
    local r = relish { "lua", d .. "/b.luac" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "binary chunk")
  end)

  test("user modules load through require, strict and text only", function()
    local d = tmpdir()
    write(d .. "/mylib.lua", "local M = {}\nfunction M.twice(x) return 2 * x end\nreturn M\n")
    write(d .. "/main.lua", "package.path = arg[1] .. '/?.lua;' .. package.path\n" ..
      "io.write(require('mylib').twice(21))\n")
    local r = relish { "lua", d .. "/main.lua", d }
    assert_eq(r.code, 0, r.stderr)
    assert_eq(r.stdout, "42")
    write(d .. "/leaky.lua", "leak = 1\nreturn {}\n")
    write(d .. "/main2.lua", "package.path = arg[1] .. '/?.lua;' .. package.path\nrequire('leaky')\n")
    r = relish { "lua", d .. "/main2.lua", d }
    assert_eq(r.code, 1)
    assert_match(r.stderr, "leaky%.lua:1: assignment to undeclared global 'leak'")
  end)
end)

describe("signals", function()
  local support = require "support"
  for _, sig in ipairs { "INT", "TERM" } do
    test("SIG" .. sig .. " raises 'interrupted' at the next safe point: exit 130", function()
      local d = tmpdir()
      write(d .. "/loop.lua", "local f = io.open(arg[1], 'w') f:close()\nlocal n = 0\nwhile true do n = n + 1 end\n")
      local r = support.signal_after({ "lua", d .. "/loop.lua", d .. "/ready" }, d .. "/ready", sig)
      assert_match(r.stdout, "code=130")
      assert_match(r.stderr, "interrupted")
    end)
  end
end)

describe("show", function()
  local support = require "support"
  local json = require "relish.json"
  test("--output is the same as --format", function()
    local d = tmpdir()
    local f = support.recipe(d, "r.lua", 'return recipe "r" { step "s" { run = function() end } }\n')
    assert_eq(relish({ "run", f, "--state", support.state(d) }).code, 0)
    local a = relish { "show", "last", "--output", "json", "--state", support.state(d) }
    assert_eq(a.code, 0, a.stderr)
    assert_eq(json.decode(a.stdout).recipe, "r")
    local b = relish { "show", "last", "--format", "json", "--state", support.state(d) }
    assert_eq(a.stdout, b.stdout)
    local m = relish { "show", "last", "--format", "json", "--output=markdown", "--state", support.state(d) }
    assert_match(m.stdout, "^# Postmortem: ", "given both ways, the last wins")
    local bad = relish { "show", "last", "--output", "yaml", "--state", support.state(d) }
    assert_eq(bad.code, 2)
    assert_match(bad.stderr, "%-%-output must be one of text|json|markdown|html, got 'yaml'")
  end)
end)

describe("out of memory", function()
  -- Memory runs out for real: under a limit of the address space, or in the
  -- sanitizer build (whose shadow memory needs a huge address space) by
  -- allocations above a cap failing instead of aborting.
  local function limited(args)
    local quoted = {}
    for i, a in ipairs(args) do quoted[i] = sh.quote(a) end
    local function go(prefix)
      return sh.run { argv = { "sh", "-c", prefix .. "exec " .. table.concat(quoted, " ") }, check = false,
        timeout = 60, env = { NO_COLOR = "1", ASAN_OPTIONS = (os.getenv("ASAN_OPTIONS") or "") ..
          ":allocator_may_return_null=1:max_allocation_size_mb=300" } }
    end
    local r = go("ulimit -v 600000; ")
    -- a sanitizer build cannot start under the limit (its shadow memory)
    if r.stderr:find("ReserveShadowMemoryRange", 1, true) then r = go("") end
    return r
  end

  test("at the top level it says so and exits 1, whatever ran out (a script, a recipe's file)", function()
    local d = tmpdir()
    write(d .. "/big.lua", 'local s = string.rep("x", 1 << 30)\nprint(#s)\n')
    write(d .. "/r.lua", 'local s = string.rep("x", 1 << 30)\n' ..
      'return recipe "r" { step "s" { run = function() end } }\n')
    for _, args in ipairs { { "lua", d .. "/big.lua" }, { "run", d .. "/r.lua", "--state", "sqlite:" .. d .. "/j.db" } } do
      local r = limited { relish_exe(), table.unpack(args) }
      assert_eq(r.code, 1, args[1] .. ": " .. r.stdout .. r.stderr)
      -- (the sanitizer build warns about the failed allocation first)
      assert_eq((r.stderr:gsub("^==%d+==WARNING: AddressSanitizer failed to allocate[^\n]*\n", "")),
        "relish: out of memory\n")
    end
  end)

  test("in a step it fails the step, which is rolled back", function()
    local d = tmpdir()
    write(d .. "/r.lua", 'local fs = require "relish.fs"\nreturn recipe "r" {\n' ..
      '  step "a" { run = function() fs.write("' .. d .. '/made", "x") end },\n' ..
      '  step "b" { run = function() local s = string.rep("x", 1 << 30) end },\n}\n')
    local r = limited { relish_exe(), "run", d .. "/r.lua", "--state", "sqlite:" .. d .. "/j.db" }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout .. r.stderr, "step \"b\": not enough memory")
    assert_nil(io.open(d .. "/made"))
  end)
end)
