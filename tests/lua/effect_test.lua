-- Effects declared in Lua, commands as effects, the journal's schema, and a
-- second signal during a rollback.
local support = require "support"
local json = require "relish.json"
local sh = require "relish.sh"

local relish, write, read = support.relish, support.write, support.read

local recipe = support.recipe

describe("effect{}", function()
  local FLAGS = [[
local fs = require "relish.fs"
local flags = os.getenv("FLAGS")
local function get() local f = io.open(flags) local s = f and f:read("a") or "" if f then f:close() end return s end
local function put(s) local f = assert(io.open(flags, "w")) f:write(s) f:close() end
effect.define("flags.set", function(data) put(data.was) end)

return recipe "flags" {
  params = { fail = param.boolean { default = false } },
  step "enable" { run = function(ctx)
    local was = get()
    local r = effect { kind = "flags.set", target = flags, describe = "enable feature-x",
      data = { was = was }, fingerprint = function() return was end,
      apply = function() put(was .. "feature-x\n") return "applied" end,
      undo = function(data) put(data.was) end, planned = "planned" }
    ctx.log("effect returned %s", r)
  end },
  step "after" { run = function(ctx)
    if os.getenv("CRASH") then require("relish.sh").run { argv = { "sh", "-c", "kill -9 $PPID" }, readonly = true } end
    if ctx.params.fail then error("fail after the effect") end
  end },
}
]]

  test("is journaled, planned in a dry-run, undone by a rollback", function()
    local d = tmpdir()
    local f = recipe(d, "flags.lua", FLAGS)
    local env = { FLAGS = d .. "/flags" }
    write(d .. "/flags", "base\n")
    local r = relish { "run", f, "--dry-run", "--state", support.state(d), env = env }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(r.stdout, "%+ enable feature%-x")
    assert_match(r.stdout, "effect returned planned")
    assert_eq(read(d .. "/flags"), "base\n")
    r = relish { "run", f, "-p", "fail=true", "--state", support.state(d), env = env }
    assert_eq(r.code, 1)
    assert_eq(read(d .. "/flags"), "base\n", "undone")
    r = relish { "run", f, "--state", support.state(d), env = env }
    assert_eq(r.code, 0)
    assert_match(r.stdout, "effect returned applied")
    assert_eq(read(d .. "/flags"), "base\nfeature-x\n")
  end)

  test("relish rollback in a new process finds the undo declared with effect.define", function()
    local d = tmpdir()
    local f = recipe(d, "flags.lua", FLAGS)
    write(d .. "/flags", "base\n")
    local r = relish { "run", f, "--state", support.state(d), env = { FLAGS = d .. "/flags", CRASH = "1" } }
    assert_eq(r.signal, "KILL")
    assert_eq(read(d .. "/flags"), "base\nfeature-x\n")
    r = relish { "rollback", "last", "--state", support.state(d), env = { FLAGS = d .. "/flags" } }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(read(d .. "/flags"), "base\n")
  end)
end)

describe("sh.run as an effect", function()
  test("undo argv runs in a rollback; without undo it is irreversible; readonly is not an effect", function()
    local d = tmpdir()
    local f = recipe(d, "cmd.lua", [[
local sh = require "relish.sh"
return recipe "cmd" {
  params = { dir = param.string { required = true } },
  step "commands" { run = function(ctx)
    local dir = ctx.params.dir
    sh.run { argv = { "touch", dir .. "/made" }, undo = { "rm", "-f", dir .. "/made" } }
    sh.run { argv = { "sh", "-c", "echo sent >> " .. dir .. "/outbox" } }
    sh.run { argv = { "ls", dir }, readonly = true }
    error("then fail")
  end },
}
]])
    local p = relish { "run", f, "-p", "dir=" .. d, "--dry-run", "--state", support.state(d) }
    assert_match(p.stdout, "%+ run touch [^\n]*/made")
    assert_match(p.stdout, "! run sh %-c [^\n]*%(irreversible%)")
    assert_match(p.stdout, "Plan: 2 action%(s%) %(1 irreversible%)")
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_nil(read(d .. "/made"), "the undo argv ran")
    assert_eq(read(d .. "/outbox"), "sent\n", "an irreversible command stays done")
    assert_match(r.stdout, "irreversible, not undone")
    local s = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_eq(#s.actions, 2, "the readonly command is not an action")
    assert_eq(s.actions[1].status, "undone")
    assert_true(s.actions[2].irreversible)
  end)
end)

describe("rollback under signals", function()
  test("a second signal stops the rollback (exit 3); relish rollback continues it", function()
    local d = tmpdir()
    local f = recipe(d, "slow.lua", [[
local fs = require "relish.fs"
local sh = require "relish.sh"
return recipe "slow" {
  params = { dir = param.string { required = true } },
  step "files" { run = function(ctx)
    for i = 1, 3 do fs.write(ctx.params.dir .. "/f" .. i, "x") end
  end },
  step "slow undo" {
    run = function(ctx) fs.write(ctx.params.dir .. "/ready", "x") while true do end end,
    undo = function(ctx)
      fs.write(ctx.params.dir .. "/undoing", "x")
      sh.run { argv = { "sleep", "5" }, readonly = true }
    end,
  },
}
]])
    local script = string.format([[
%s run %s -p dir=%s --state %s > %s/out 2>&1 & pid=$!
for i in $(seq 200); do [ -e %s/ready ] && break; sleep 0.05; done
kill -INT $pid
for i in $(seq 200); do [ -e %s/undoing ] && break; sleep 0.05; done
kill -INT $pid
wait $pid; echo "code=$?"]], sh.quote(relish_exe()), f, d, support.state(d), d, d, d)
    local r = assert(sh.run { argv = { "sh", "-c", script }, env = { NO_COLOR = "1" }, timeout = 60 })
    assert_match(r.stdout, "code=3")
    assert_match(read(d .. "/out"), "Rollback INCOMPLETE")
    assert_eq(read(d .. "/f1"), "x", "the rest was left for later")
    local rb = relish { "rollback", "last", "--state", support.state(d) }
    assert_eq(rb.code, 0, rb.stderr .. rb.stdout)
    assert_nil(read(d .. "/f1"))
    assert_nil(read(d .. "/f3"))
  end)
end)

describe("journal", function()
  test("a journal from a newer relish is refused with exit 2", function()
    local d = tmpdir()
    assert_eq(relish { "history", "--state", support.state(d) }.code, 0)
    local j = require("relish._journal").open(d .. "/journal.db")
    j:exec("PRAGMA user_version = 99")
    j:close()
    local r = relish { "history", "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "schema version 99, newer than this relish")
  end)

  test("the schema is created once, WAL, and an unknown --state scheme is a usage error", function()
    local d = tmpdir()
    assert_eq(relish { "history", "--state", support.state(d) }.code, 0)
    local j = require("relish._journal").open(d .. "/journal.db")
    assert_eq(j:query("PRAGMA journal_mode")[1].journal_mode, "wal")
    assert_eq(j:query("PRAGMA user_version")[1].user_version, require("relish.journal").SCHEMA_VERSION)
    j:close()
    local r = relish { "history", "--state", "etcd://127.0.0.1:1/x" }
    assert_eq(r.code, 2)
  end)
end)

describe("relish lua", function()
  test("effects outside a recipe act directly, with no journal", function()
    local d = tmpdir()
    write(d .. "/s.lua", "local fs = require 'relish.fs'\nassert(fs.write(arg[1] .. '/out', 'direct'))\n")
    local r = relish { "lua", d .. "/s.lua", d }
    assert_eq(r.code, 0, r.stderr)
    assert_eq(read(d .. "/out"), "direct")
  end)
end)

-- A provider written only from docs/internals.md ("The same from Lua"): a
-- module of the recipe's own, registered once, run through the gate.
describe("a new provider from the internals guide", function()
  local DEMOFLAG = [[
local effect = require "relish.effect"
local M = {}

local function read_flag(path)
  local f = io.open(path, "rb")
  if not f then return "absent" end
  local s = f:read("a")
  f:close()
  return s
end

local function put(path, text)
  if text == "absent" then os.remove(path) return end
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

effect.register {
  kind = "demo.flag", module = "demoflag", fields = { "path", "was" },
  apply = function(a)
    if a.on == "explode" then error({ kind = "demo", message = "the flag store refused" }, 0) end
    put(a.path, a.on)
    return "applied"
  end,
  plan = function(a) return "planned" end,
  undo = function(rec) put(rec.path, rec.was) end,
}

function M.flag(path, on)
  local was = read_flag(path)
  return effect.run("demo.flag", {
    target = path, describe = ("set %s to %s"):format(path, on),
    fingerprint = was, record = { path = path, was = was },
  }, { path = path, on = on })
end

return M
]]
  local RECIPE = [[
local demoflag = require "demoflag"
return recipe "flags" {
  params = { dir = param.string { required = true }, second = param.string { default = "off" } },
  step "first" { run = function(ctx) ctx.log("first: %s", demoflag.flag(ctx.params.dir .. "/a", "on")) end },
  step "second" { run = function(ctx)
    demoflag.flag(ctx.params.dir .. "/b", ctx.params.second)
    if os.getenv("CRASH") then require("relish.sh").run { argv = { "sh", "-c", "kill -9 $PPID" }, readonly = true } end
  end },
}
]]

  local function world()
    local d = tmpdir()
    write(d .. "/demoflag.lua", DEMOFLAG)
    local f = recipe(d, "flags.lua", RECIPE)
    write(d .. "/b", "was-b")
    return d, f
  end

  test("is planned in a dry-run and journaled with its provider and record", function()
    local d, f = world()
    local r = relish { "run", f, "-p", "dir=" .. d, "--dry-run", "--state", support.state(d), cwd = d }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(r.stdout, "%+ set [^\n]*/a to on")
    assert_match(r.stdout, "first: planned")
    assert_nil(read(d .. "/a"), "a dry-run changes nothing")
    local j = require("relish._journal").open(d .. "/journal.db")
    local planned = j:query("SELECT undo, irreversible, status FROM actions WHERE kind = 'demo.flag'")
    j:close()
    assert_eq(#planned, 2)
    assert_eq(planned[1].status, "planned")
    assert_nil(planned[1].undo, "a dry-run keeps no undo record")
    assert_eq(planned[1].irreversible, 0, "yet the action is not irreversible")
    r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d), cwd = d }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(r.stdout, "first: applied")
    assert_eq(read(d .. "/a"), "on")
    j = require("relish._journal").open(d .. "/journal.db")
    local rows = j:query("SELECT kind, provider, undo, fingerprint, status FROM actions WHERE run_id = " ..
      "(SELECT id FROM runs WHERE dry_run = 0) ORDER BY seq")
    j:close()
    assert_eq(#rows, 2)
    assert_eq(rows[1].kind, "demo.flag")
    assert_eq(rows[1].provider, "demoflag")
    assert_eq(rows[1].status, "done")
    assert_eq(rows[2].fingerprint, "was-b")
    assert_eq(json.decode(rows[2].undo).was, "was-b")
  end)

  test("a failing apply fails the step, and the run is rolled back by the registered undo", function()
    local d, f = world()
    local r = relish { "run", f, "-p", "dir=" .. d, "-p", "second=explode", "--state", support.state(d), cwd = d }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout .. r.stderr, "the flag store refused")
    assert_nil(read(d .. "/a"), "the first flag was undone")
    assert_eq(read(d .. "/b"), "was-b")
    local s = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_eq(s.actions[1].status, "undone")
    -- a failed action may have acted in part: it is undone too, from its record
    assert_eq(s.actions[2].status, "undone")
    assert_match(s.steps[2].error, "the flag store refused")
  end)

  test("relish rollback in another process loads the provider module to undo", function()
    local d, f = world()
    local r = relish { "run", f, "-p", "dir=" .. d, "-p", "second=on", "--state", support.state(d), cwd = d,
      env = { CRASH = "1" } }
    assert_eq(r.signal, "KILL")
    assert_eq(read(d .. "/a"), "on")
    assert_eq(read(d .. "/b"), "on")
    -- the recipe file is gone: only the journal's provider name leads to the undo
    os.remove(f)
    r = relish { "rollback", "last", "--state", support.state(d), cwd = d }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_nil(read(d .. "/a"))
    assert_eq(read(d .. "/b"), "was-b")
  end)
end)
