-- Stopping a run: a step's timeout and SIGTERM/SIGINT end it within a
-- bounded time, whatever the step does (a pure-Lua loop in a task, a pcall
-- that swallows the stop, a C call that never returns to the VM), and the
-- run is left rolled back, or crashed with its journal consistent so that
-- `relish rollback` repairs it. Bounds are generous: never a speed test.
local support = require "support"
local json = require "relish.json"
local sh = require "relish.sh"

local relish, read, recipe = support.relish, support.read, support.recipe

-- a catastrophic backtracking pattern: one string.find call, in C, that runs
-- for hours (the Lua hook never fires inside it)
local STUCK_IN_C = [[string.rep("a", 40):find(".-.-.-.-.-.-.-.-.-.-.-b")]]

-- A recipe whose step "write" writes d/made, then step "spin" touches
-- d/ready and runs body (Lua source) with the given step options.
local function spinner(d, body, opts)
  return recipe(d, "spin.lua", string.format([[
local fs = require "relish.fs"
local sh = require "relish.sh"
local task = require "relish.task"
return recipe "spin" {
  params = { dir = param.string { required = true } },
  step "write" { run = function(ctx) fs.write(ctx.params.dir .. "/made", "x") end },
  step "spin" { %s run = function(ctx)
    sh.run { argv = { "touch", ctx.params.dir .. "/ready" }, readonly = true }
    %s
  end },
}
]], opts or "", body))
end

-- Runs the recipe f in the background (killed after 50 s whatever happens),
-- sends sig a second after d/ready exists (the step is past its command, in
-- the code under test), and returns the exit code and output.
local function run_and_signal(d, f, sig)
  local script = string.format("timeout -s KILL 50 %s run %s -p dir=%s --state %s & pid=$!; " ..
    "for i in $(seq 400); do [ -e %s/ready ] && break; sleep 0.05; done; sleep 1; kill -%s $pid; wait $pid; echo \"code=$?\"",
    sh.quote(relish_exe()), sh.quote(f), sh.quote(d), sh.quote(support.state(d)), sh.quote(d), sig)
  local r = assert(sh.run { argv = { "sh", "-c", script }, env = { NO_COLOR = "1", RELISH_STOP_GRACE = "1" },
    timeout = 60, check = false })
  return tonumber(r.stdout:match("code=(%d+)")), r
end

local function rollback_repairs(d)
  local rb = relish { "rollback", "last", "--state", support.state(d) }
  assert_eq(rb.code, 0, rb.stderr .. rb.stdout)
  assert_nil(read(d .. "/made"), "rolled back")
end

describe("a step's timeout", function()
  test("a pcall in the step cannot swallow it: raised again in the recipe's code", function()
    local d = tmpdir()
    local f = spinner(d, [[
    for i = 1, 3 do pcall(function() while true do end end) end
    while true do end]], [[timeout = "1s",]])
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d), timeout = 60 }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, "step \"spin\": timed out after the step's timeout of 1%.0s")
    assert_nil(read(d .. "/made"), "rolled back")
  end)

  test("a step stuck in one C call is ended after its timeout and a grace: exit 3, rollback repairs it", function()
    local d = tmpdir()
    local f = spinner(d, "return " .. STUCK_IN_C, [[timeout = "1s",]])
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d), timeout = 60,
      env = { RELISH_STOP_GRACE = "1" } }
    assert_eq(r.code, 3, r.stderr .. r.stdout)
    assert_match(r.stderr, "step \"spin\" of run [%w-]+ did not stop within 1s of its deadline")
    assert_match(r.stderr, "The journal is consistent")
    assert_eq(read(d .. "/made"), "x", "nothing could roll back inside the process")
    local s = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_eq(s.status, "crashed")
    rollback_repairs(d)
  end)
end)

describe("SIGTERM and SIGINT", function()
  test("SIGTERM reaches a pure-Lua loop inside a task: exit 130, rolled back", function()
    local d = tmpdir()
    local f = spinner(d, "task.parallel { function() while true do end end }")
    local code, r = run_and_signal(d, f, "TERM")
    assert_eq(code, 130, r.stderr .. r.stdout)
    assert_nil(read(d .. "/made"), "rolled back")
    local s = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_eq(s.status, "interrupted")
  end)

  for _, sig in ipairs { "TERM", "INT" } do
    test("SIG" .. sig .. " while stuck in one C call ends the process after a grace: exit 130, rollback works",
      function()
        local d = tmpdir()
        local f = spinner(d, "return " .. STUCK_IN_C)
        local code, r = run_and_signal(d, f, sig)
        assert_eq(code, 130, r.stderr .. r.stdout)
        assert_match(r.stderr, "step \"spin\" of run [%w-]+ did not stop within 1s of the signal")
        assert_eq(read(d .. "/made"), "x")
        rollback_repairs(d)
      end)
  end

  test("SIGTERM with a pcall swallowing every stop in a loop still ends the process: exit 130", function()
    local d = tmpdir()
    local f = spinner(d, "while true do pcall(function() while true do end end) end")
    local code, r = run_and_signal(d, f, "TERM")
    assert_eq(code, 130, r.stderr .. r.stdout)
    rollback_repairs(d)
  end)
end)
