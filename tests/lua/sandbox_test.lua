-- The recipe sandbox: what a recipe may not call (and the gated way each
-- error names), the doors out of it that stay shut, effects refused while a
-- recipe file loads, and the full library that `relish lua` and tests keep.
local support = require "support"

local relish, write, read = support.relish, support.write, support.read

-- A recipe whose one step runs body (Lua text, with `dir` the test's
-- directory); returns its path and the line body starts on.
local function step_recipe(d, body)
  local text = string.format([[
local fs = require "relish.fs"
local sh = require "relish.sh"
local dir = %q
return recipe "s" {
  step "a" { run = function(ctx)
%s
  end },
}
]], d, body)
  return support.recipe(d, "s.lua", text), 6
end

describe("the sandbox refuses", function()
  -- call, the message after "NAME is not available in recipes: ", what must
  -- still be as it was
  local CASES = {
    { "os.remove(dir .. '/victim')", "os.remove", "use relish.fs.remove, which dry%-runs and undoes" },
    { "os.rename(dir .. '/victim', dir .. '/out')", "os.rename",
      "use relish.fs.copy then relish.fs.remove %(or relish.fs.symlink to switch a link%)" },
    { "os.execute('touch ' .. dir .. '/out')", "os.execute", "use relish.sh.run, which dry%-runs and journals" },
    { "io.popen('touch ' .. dir .. '/out')", "io.popen", "use relish.sh.run, which dry%-runs and journals" },
    { "os.exit(0)", "os.exit", "raise an error, error%(\"why\"%), to fail the step and roll back" },
    { "os.tmpname()", "os.tmpname", "it creates a file: use io.tmpfile for scratch space" },
    { "io.open(dir .. '/out', 'w')", "io.open for writing", "use relish.fs.write, which dry%-runs and undoes" },
    { "io.open(dir .. '/out', 'wb')", "io.open for writing", "use relish.fs.write" },
    { "io.open(dir .. '/out', 'a')", "io.open for writing", "use relish.fs.write" },
    { "io.open(dir .. '/victim', 'r+')", "io.open for writing", "use relish.fs.write" },
    { "io.output(dir .. '/out')", "io.output to a file", "use relish.fs.write" },
    { "os.setlocale('C')", "os.setlocale", "os%.setlocale%(%) reads the locale, but changing it changes how" },
  }
  for _, c in ipairs(CASES) do
    test(c[1] .. " in a step: the step fails at the caller's line naming the gated way", function()
      local d = tmpdir()
      write(d .. "/victim", "kept\n")
      local f, line = step_recipe(d, "    " .. c[1])
      local r = relish { "run", f, "--state", support.state(d) }
      assert_eq(r.code, 1, r.stdout .. r.stderr)
      assert_match(r.stdout .. r.stderr, "s%.lua:" .. line .. ": " .. c[2]:gsub("%.", "%%.") ..
        "[^\n]* is not available in recipes: " .. c[3])
      assert_eq(read(d .. "/victim"), "kept\n")
      assert_nil(read(d .. "/out"))
    end)
  end

  test("at the top level: exit 2, the file and line, nothing done", function()
    local d = tmpdir()
    write(d .. "/victim", "kept\n")
    local f = support.recipe(d, "t.lua", string.format([[
local dir = %q
os.remove(dir .. "/victim")
return recipe "t" { step "a" { run = function() end } }
]], d))
    local r = relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "t%.lua:2: os%.remove is not available in recipes: use relish%.fs%.remove")
    assert_eq(read(d .. "/victim"), "kept\n")
  end)
end)

describe("the sandbox keeps reading", function()
  test("io.open for reading, io.lines, io.input, os.getenv, os.time, os.date, os.clock", function()
    local d = tmpdir()
    write(d .. "/in", "one\ntwo\n")
    local f = step_recipe(d, [[
    local fh = assert(io.open(dir .. "/in"))
    local a = fh:read("l") fh:close()
    local b = assert(io.open(dir .. "/in", "rb")):read("a")
    local lines = {}
    for l in io.lines(dir .. "/in") do lines[#lines + 1] = l end
    io.input(dir .. "/in")
    local c = io.read("l")
    io.write("written to the terminal\n")
    io.stdout:write("and on stdout\n")
    ctx.log("read %s %d %s %s env=%s %s %s %s locale=%s", a, #b, table.concat(lines, "+"), c, os.getenv("SANDBOX_T"),
      math.type(os.time()), os.date("!%Y", 0), type(os.clock()), type(os.setlocale()))]])
    local r = relish { "run", f, "--state", support.state(d), env = { SANDBOX_T = "yes" } }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "read one 8 one%+two one env=yes integer 1970 number locale=string")
    assert_match(r.stdout, "written to the terminal\n")
    assert_match(r.stdout, "and on stdout\n")
  end)

  test("debug.getinfo without functions, so a recipe can find its own file", function()
    local d = tmpdir()
    local f = step_recipe(d, [[
    ctx.log("source %s line %d", debug.getinfo(1, "S").source, debug.getinfo(1, "l").currentline)
    ctx.log("%s", debug.traceback("tb"):match("^tb\nstack traceback:") and "traceback" or "no traceback")]])
    local r = relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "source @" .. d:gsub("%p", "%%%0") .. "/s%.lua line 6")
    assert_match(r.stdout, "traceback")
  end)
end)

describe("the doors out of the sandbox stay shut", function()
  -- Each probe is run with pcall in one step; it prints "NAME: refused <why>"
  -- or "NAME: open"; every one must be refused or give the sandbox's own.
  local PROBES = {
    { "_G.os.remove", "_G.os.remove(dir .. '/victim')" },
    { "rawget(_G, 'os')", "rawget(_G, 'os').remove(dir .. '/victim')" },
    { "_ENV.os", "_ENV.os.remove(dir .. '/victim')" },
    { "package.loaded.os", "package.loaded.os.remove(dir .. '/victim')" },
    { "package.loaded._G", "package.loaded._G.os.remove(dir .. '/victim')" },
    { "require 'os'", "require('os').remove(dir .. '/victim')" },
    { "require 'io'", "require('io').open(dir .. '/out', 'w')" },
    { "require '_G'", "require('_G').io.popen('touch ' .. dir .. '/out')" },
    { "getmetatable(_ENV)", "if getmetatable(_ENV) ~= false then return end error('protected')" },
    { "setmetatable(_ENV)", "setmetatable(_ENV, nil)" },
    { "debug.getregistry", "debug.getregistry()" },
    { "debug.getupvalue", "debug.getupvalue(io.open, 1)" },
    { "debug.getlocal", "debug.getlocal(2, 1)" },
    { "debug.sethook", "debug.sethook(function() end, 'c')" },
    { "debug.getinfo f", "debug.getinfo(1, 'f')" },
    { "load", "load('return os')().remove(dir .. '/victim')" },
    { "load mode b", "load('return 1', 'x', 'b')" },
    { "load bytecode", "assert(load(string.dump(function() return 1 end)))" },
    { "loadfile", "loadfile(dir .. '/helper.lua')()" },
    { "dofile", "dofile(dir .. '/helper.lua')" },
    { "require user module", "require 'helper'" },
    { "relish.* from package.path", "require 'relish.evil'" },
    { "relish._host", "require('relish._host').strict_env().os.remove(dir .. '/victim')" },
    { "relish._gate", "require('relish._gate').close(nil)" },
    { "relish._journal", "require 'relish._journal'" },
    { "relish._http", "require 'relish._http'" },
    { "relish.cli.test", "require('relish.cli.test')" },
    { "relish.engine", "require 'relish.engine'" },
    { "relish.journal", "require 'relish.journal'" },
    { "effect.undo", "require('relish.effect').register { kind = 'probe.rm', apply = function() end, " ..
      "undo = function(r) os.remove(r.path) end } require('relish.effect').undo('probe.rm', { path = dir .. '/victim' })" },
    { "fs.undo", "fs.undo('fs.write', { path = dir .. '/victim' })" },
    { "sh.undo", "sh.undo('sh.run', { argv = { 'rm', dir .. '/victim' } })" },
    { "git.undo", "require('relish.git').undo('git.tag', { path = dir, name = 'v1' })" },
    { "package.loadlib", "package.loadlib('libc.so.6', 'system')" },
    { "C loaders", "if package.cpath or package.searchers or package.preload then return end error('none')" },
  }

  test("each probe is refused and the victim is untouched", function()
    local d = tmpdir()
    write(d .. "/victim", "kept\n")
    -- a helper on package.path, and one that borrows a stdlib name: both
    -- remove the victim if they ever run with the real os
    write(d .. "/helper.lua", "os.remove(" .. string.format("%q", d .. "/victim") .. ")\nreturn {}\n")
    os.execute("mkdir -p " .. d .. "/relish")
    write(d .. "/relish/evil.lua", "os.remove(" .. string.format("%q", d .. "/victim") .. ")\nreturn {}\n")
    local lines = { "    package.path = dir .. '/?.lua;' .. package.path" }
    for _, p in ipairs(PROBES) do
      lines[#lines + 1] = string.format(
        "    do local ok, err = pcall(function() %s end) print(%q .. ': ' .. (ok and 'open' or 'refused ' .. tostring(err))) end",
        p[2], p[1])
    end
    local f = step_recipe(d, table.concat(lines, "\n"))
    local r = relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    for _, p in ipairs(PROBES) do
      local line = r.stdout:match("\n" .. p[1]:gsub("%p", "%%%0") .. ": ([^\n]*)")
      assert_match(line or "missing", "^refused", p[1])
    end
    assert_eq(read(d .. "/victim"), "kept\n")
    assert_nil(read(d .. "/out"))
    -- the messages say why
    assert_match(r.stdout, "\nrequire user module: refused [^\n]*helper%.lua:1: os%.remove is not available in recipes")
    assert_match(r.stdout, "\nrelish%._host: refused [^\n]*relish%._host is internal to relish and not available in recipes")
    assert_match(r.stdout, "\neffect%.undo: refused [^\n]*relish%.effect%.undo is not available in recipes: undos " ..
      "run in a rollback")
    assert_match(r.stdout, "\ndebug%.getregistry: refused [^\n]*debug%.getregistry is not available in recipes")
    assert_match(r.stdout, "\nload mode b: refused [^\n]*s%.lua:%d+: bytecode is refused")
    assert_match(r.stdout, "\nrelish%.%* from package%.path: refused [^\n]*module 'relish%.evil' not found")
  end)

  test("each recipe gets fresh os and io tables; relish's own stay whole", function()
    local d = tmpdir()
    write(d .. "/out", "x")
    local f = step_recipe(d, [[
    os.getenv = nil
    io.lines = nil
    ctx.log("changed")]])
    local g = support.recipe(d, "g.lua", [[
return recipe "g" { step "a" { run = function(ctx)
  ctx.log("getenv %s lines %s", type(os.getenv), type(io.lines))
end } }
]])
    -- both in one process: a test file loads recipes as the engine does
    local dsl = require "relish.dsl"
    local first = dsl.load(f)
    first.steps[1].run { log = function() end }
    assert_eq(type(os.getenv), "function")
    assert_eq(type(io.lines), "function")
    local second = dsl.load(g)
    local said
    second.steps[1].run { log = function(fmt, ...) said = string.format(fmt, ...) end }
    assert_eq(said, "getenv function lines function")
  end)
end)

describe("modules a recipe requires", function()
  test("load once per process into a sandbox, where the gate finds them too", function()
    local d = tmpdir()
    write(d .. "/shared.lua", "return { removes = type(os.remove) == 'function' and pcall(os.remove, 'x') }\n")
    local text = string.format([[
package.path = %q .. "/?.lua;" .. package.path
local shared = require "shared"
return recipe "m" { step "s" { run = function(ctx) ctx.got = shared end } }
]], d)
    local a, b = support.recipe(d, "a.lua", text), support.recipe(d, "b.lua", text)
    local dsl = require "relish.dsl"
    local ca, cb = {}, {}
    dsl.load(a).steps[1].run(ca)
    dsl.load(b).steps[1].run(cb)
    assert_true(ca.got == cb.got, "one copy")
    assert_true(package.loaded.shared == ca.got)
    assert_false(ca.got.removes, "the module's os.remove is the sandbox's")
  end)
end)

describe("effect{} is the gate's door", function()
  test("its apply and undo may write; the same step outside it may not", function()
    local d = tmpdir()
    write(d .. "/flag", "off\n")
    local f = support.recipe(d, "e.lua", string.format([[
local flag = %q
local function put(s) local fh = assert(io.open(flag, "w")) fh:write(s) fh:close() end
effect.define("test.flag", function(data) put(data.was) end)
return recipe "e" {
  params = { outside = param.boolean { default = false } },
  step "a" { run = function(ctx)
    effect { kind = "test.flag", target = flag, data = { was = "off\n" }, apply = function() put("on\n") end }
    if ctx.params.outside then put("outside\n") end
  end },
}
]], d .. "/flag"))
    local r = relish { "run", f, "--dry-run", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(read(d .. "/flag"), "off\n", "a dry-run plans the effect")
    r = relish { "run", f, "-p", "outside=true", "--state", support.state(d) }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout, "e%.lua:2: io%.open for writing is not available in recipes")
    assert_eq(read(d .. "/flag"), "off\n", "applied, then undone by the rollback")
    r = relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(read(d .. "/flag"), "on\n")
    r = relish { "rollback", "last", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(read(d .. "/flag"), "off\n", "undone by relish rollback in another process")
  end)
end)

describe("effects outside a step", function()
  local function loading_recipe(d, top)
    return support.recipe(d, "l.lua", string.format([[
local fs = require "relish.fs"
local sh = require "relish.sh"
local dir = %q
%s
return recipe "l" {
  step "a" { run = function() fs.write(dir .. "/stepped", "x") end },
}
]], d, top))
  end

  local TOP = {
    ["fs.write"] = 'fs.write(dir .. "/loaded", "x")',
    ["sh.run"] = 'sh.run { argv = { "touch", dir .. "/loaded" } }',
  }
  for kind, top in pairs(TOP) do
    for _, cmd in ipairs { "run", "plan" } do
      test(kind .. " at the top level under relish " .. cmd .. ": exit 2, the file and line, nothing written",
        function()
          local d = tmpdir()
          local f = loading_recipe(d, top)
          local r = relish { cmd, f, "--state", support.state(d) }
          assert_eq(r.code, 2, r.stdout .. r.stderr)
          assert_match(r.stderr, "l%.lua:4: " .. kind:gsub("%.", "%%.") .. " [^\n]*: effects are not " ..
            "allowed while the recipe file loads: move this into a step")
          assert_nil(read(d .. "/loaded"))
          assert_nil(read(d .. "/stepped"))
        end)
    end

    test(kind .. " at the top level under relish rollback: nothing written, the journal's undos still run", function()
      local d = tmpdir()
      local f = loading_recipe(d, "")
      local r = relish { "run", f, "--state", support.state(d) }
      assert_eq(r.code, 0, r.stdout .. r.stderr)
      assert_eq(read(d .. "/stepped"), "x")
      loading_recipe(d, top)
      r = relish { "rollback", "last", "--state", support.state(d) }
      assert_match(r.stdout .. r.stderr, "l%.lua:4: " .. kind:gsub("%.", "%%.") .. " [^\n]*: effects are not " ..
        "allowed while the recipe file loads")
      assert_nil(read(d .. "/loaded"))
      assert_nil(read(d .. "/stepped"), "rolled back")
    end)
  end

  test("in a module the recipe requires: the module's file and line", function()
    local d = tmpdir()
    write(d .. "/mod.lua", string.format('local fs = require "relish.fs"\n\nfs.write(%q, "x")\nreturn {}\n',
      d .. "/loaded"))
    local f = loading_recipe(d, 'package.path = dir .. "/?.lua;" .. package.path\nrequire "mod"')
    local r = relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "mod%.lua:3: fs%.write [^\n]*: effects are not allowed while the recipe file loads")
    assert_nil(read(d .. "/loaded"))
  end)

  test("in a lock function, which runs before the run starts: exit 2, nothing written", function()
    local d = tmpdir()
    local f = support.recipe(d, "k.lua", string.format([[
local fs = require "relish.fs"
return recipe "k" {
  lock = function() fs.write(%q, "x") return "k" end,
  step "a" { run = function() end },
}
]], d .. "/locked"))
    for _, cmd in ipairs { "plan", "run" } do
      local r = relish { cmd, f, "--state", support.state(d) }
      assert_eq(r.code, 2, r.stdout .. r.stderr)
      assert_match(r.stderr, "fs%.write [^\n]*/locked: effects are not allowed in a recipe's lock function")
      assert_nil(read(d .. "/locked"))
    end
  end)

  test("reads stay allowed: fs.read, fs.exists, sh.run readonly", function()
    local d = tmpdir()
    write(d .. "/in", "hello")
    local f = loading_recipe(d, [[
local text = fs.read(dir .. "/in")
local there = fs.exists(dir .. "/in")
local echoed = sh.run { argv = { "echo", "hi" }, readonly = true }.stdout
print("top: " .. text .. " " .. tostring(there) .. " " .. echoed)]])
    local r = relish { "plan", f, "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "top: hello true hi\n")
    r = relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(read(d .. "/stepped"), "x", "the gate is open again for the steps")
  end)
end)

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
