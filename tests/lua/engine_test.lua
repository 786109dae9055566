-- The engine as a user meets it: params, dry-run, rollback, resume, locks,
-- saved plans, output, history/show, and every exit code of DESIGN.md.
local support = require "support"
local G = require "gitsupport"
local json = require "relish.json"
local sh = require "relish.sh"

local relish, write, read, snapshot = support.relish, support.write, support.read, support.snapshot
local EIGHT = fixture_path("recipes/eight.lua")

local world = support.eight_world

local recipe = support.recipe

describe("params", function()
  test("every problem is listed, exit 2, nothing runs", function()
    local d = tmpdir()
    local r = relish { "run", EIGHT, "-p", "version=2", "-p", "dri=x", "--state", support.state(d) }
    assert_eq(r.code, 2, r.stderr)
    assert_match(r.stderr, "param 'dir' is required")
    assert_match(r.stderr, "param 'version': \"2\" does not match")
    assert_match(r.stderr, "unknown param 'dri' %(did you mean 'dir'%?%)")
  end)

  test("types, ranges, enums and lists are checked", function()
    local d = tmpdir()
    local f = recipe(d, "p.lua", [[
return recipe "p" {
  params = {
    n = param.number { min = 1, max = 50 },
    i = param.integer { default = 3 },
    b = param.boolean { default = false },
    e = param.enum { choices = { "a", "b" } },
    l = param.list { default = {} },
  },
  step "show" { run = function(ctx)
    local p = ctx.params
    ctx.log("n=%s i=%s b=%s e=%s l=%s", p.n, p.i, tostring(p.b), p.e, table.concat(p.l, "+"))
  end },
}
]])
    local r = relish { "run", f, "-p", "n=99", "-p", "i=1.5", "-p", "b=maybe", "-p", "e=c", "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "param 'n': 99 is above the maximum 50")
    assert_match(r.stderr, "param 'i': \"1.5\" is not an integer")
    assert_match(r.stderr, "param 'b': \"maybe\" is not a boolean")
    assert_match(r.stderr, "param 'e': \"c\" is not one of a, b")
    r = relish { "run", f, "-p", "n=7.5", "-p", "b=yes", "-p", "e=b", "-p", "l=x, y,z", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(r.stdout, "n=7.5 i=3 b=true e=b l=x%+y%+z")
  end)

  test("a malformed recipe names the file and line, exit 2", function()
    local d = tmpdir()
    local f = recipe(d, "bad.lua", 'return recipe "bad" {\n  step "a" { run = function() end, retry = 2 },\n}\n')
    local r = relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "bad%.lua:2: step \"a\": unknown field 'retry'")
    f = recipe(d, "syntax.lua", 'return recipe "x" {\n  step "a" { run = function() end \n}\n')
    r = relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "syntax%.lua:%d+:")
    f = recipe(d, "noreturn.lua", 'local x = 1\n')
    r = relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "must return recipe")
  end)
end)

describe("dry-run", function()
  test("shows every change with a diff and changes nothing", function()
    local d = tmpdir()
    local w = world(d)
    local before = snapshot(w)
    local r = relish { "run", EIGHT, "-p", "dir=" .. w, "--dry-run", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(snapshot(w), before)
    assert_match(r.stdout, "%+ write [^\n]*/config%.ini")
    assert_match(r.stdout, "%+ symlink [^\n]*/current")
    assert_match(r.stdout, "%-version=v1")
    assert_match(r.stdout, "%+version=v2")
    assert_match(r.stdout, "Plan: 10 action%(s%), nothing changed%.")
  end)
end)

describe("runs and rollback", function()
  test("a clean run succeeds (exit 0) and is in history", function()
    local d = tmpdir()
    local w = world(d)
    local r = relish { "run", EIGHT, "-p", "dir=" .. w, "--state", support.state(d) }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(read(w .. "/releases/v2/app.txt"), "app v2\n")
    local h = relish { "history", "--state", support.state(d) }
    assert_match(h.stdout, "eight%s+succeeded")
  end)

  test("a failing step rolls everything back: exit 1, tree byte-identical", function()
    for _, at in ipairs { "prepare", "configure", "switch" } do
      local d = tmpdir()
      local w = world(d)
      local before = snapshot(w)
      local r = relish { "run", EIGHT, "-p", "dir=" .. w, "-p", "fail_at=" .. at, "--state", support.state(d) }
      assert_eq(r.code, 1, at .. ": " .. r.stderr .. r.stdout)
      assert_match(r.stdout, "failing on purpose in " .. at)
      assert_match(r.stdout, "Rollback complete")
      assert_eq(snapshot(w), before, "after a failure in " .. at)
      local s = relish { "show", "last", "--format", "json", "--state", support.state(d) }
      assert_eq(json.decode(s.stdout).status, "rolled_back")
    end
  end)

  test("a failure before any action says nothing was changed (exit 1); one after says rolled back", function()
    local d = tmpdir()
    local f = recipe(d, "pre.lua", [[
local fs = require "relish.fs"
return recipe "pre" {
  params = { dir = param.string { required = true }, late = param.boolean { default = false } },
  step "check" { run = function(ctx) if not ctx.params.late then error("refused: not ready", 0) end end },
  step "write" { run = function(ctx) fs.write(ctx.params.dir .. "/x", "x") ; error("broke after writing", 0) end },
}
]])
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, 'failed before changing anything %(exit 1%): step "check": refused: not ready')
    assert_match(r.stdout, "Nothing to roll back: the run changed nothing")
    assert_false(r.stdout:find("Rolling back", 1, true) ~= nil, r.stdout)
    assert_false(r.stdout:find("rolled_back", 1, true) ~= nil, r.stdout)
    local s = relish { "show", "last", "--format", "json", "--state", support.state(d) }
    assert_eq(json.decode(s.stdout).status, "rolled_back", "the journal's status is unchanged")
    local j = relish { "run", f, "-p", "dir=" .. d, "--output", "json", "--state", support.state(d) }
    local last = json.decode(j.stdout:match("([^\n]+)\n$"))
    assert_eq({ last.event, last.status, last.changed }, { "run_finished", "rolled_back", false })
    r = relish { "run", f, "-p", "dir=" .. d, "-p", "late=true", "--state", support.state(d) }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, "Rolling back 1 action%(s%)")
    assert_match(r.stdout, 'rolled_back %(exit 1%): step "write": broke after writing')
    assert_false(r.stdout:find("before changing anything", 1, true) ~= nil, r.stdout)
  end)

  test("on_rollback fires only when something was rolled back, and says what", function()
    local d = tmpdir()
    local f = recipe(d, "n.lua", [[
local fs = require "relish.fs"
return recipe "n" {
  params = { dir = param.string { required = true }, late = param.boolean { default = false } },
  notify = {
    on_rollback = function(ctx, o)
      ctx.log("ROLLBACK %s undone=[%s] left=[%s]", o.rollback, table.concat(o.undone, "; "),
        table.concat(o.left, "; "))
    end,
    on_failure = function(ctx, o) ctx.log("FAILURE %s rollback=%s", o.status, tostring(o.rollback)) end,
  },
  step "check" { run = function(ctx) if not ctx.params.late then error("refused: not ready", 0) end end },
  step "write" { run = function(ctx) fs.write(ctx.params.dir .. "/x", "x") ; error("broke after writing", 0) end },
}
]])
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, "Nothing to roll back")
    assert_false(r.stdout:find("ROLLBACK", 1, true) ~= nil, r.stdout)
    assert_match(r.stdout, "FAILURE rolled_back rollback=nil")
    r = relish { "run", f, "-p", "dir=" .. d, "-p", "late=true", "--state", support.state(d) }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, "ROLLBACK complete undone=%[fs%.write [^\n]*/x %(action 1: [^\n]*%] left=%[%]")
    assert_match(r.stdout, "FAILURE rolled_back rollback=complete")
  end)

  test("relish rollback last undoes a succeeded run", function()
    local d = tmpdir()
    local w = world(d)
    local before = snapshot(w)
    assert_eq(relish { "run", EIGHT, "-p", "dir=" .. w, "--state", support.state(d) }.code, 0)
    assert_ne(snapshot(w), before)
    local dry = relish { "rollback", "last", "--dry-run", "--state", support.state(d) }
    assert_eq(dry.code, 0, dry.stderr)
    assert_ne(snapshot(w), before, "a rollback dry-run changes nothing")
    local r = relish { "rollback", "last", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(snapshot(w), before)
    r = relish { "rollback", "last", "--state", support.state(d) }
    assert_eq(r.code, 0, "rolling back twice is harmless")
    assert_eq(snapshot(w), before)
  end)

  test("a step's undo replaces the automatic undos of its effects", function()
    local d = tmpdir()
    local f = recipe(d, "u.lua", [[
local fs = require "relish.fs"
return recipe "u" {
  params = { dir = param.string { required = true } },
  step "a" {
    run = function(ctx) fs.write(ctx.params.dir .. "/a", "A") ; ctx.state.wrote = "a" end,
    undo = function(ctx) fs.write(ctx.params.dir .. "/undone-by-step", ctx.state.wrote) end,
  },
  step "b" { run = function(ctx) error("no") end },
}
]])
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_eq(read(d .. "/a"), "A", "the automatic undo did not run")
    assert_eq(read(d .. "/undone-by-step"), "a", "the step's undo ran with ctx.state")
  end)

  test("an undo that fails is exit 3 with what is left to do by hand", function()
    local d = tmpdir()
    local f = recipe(d, "x.lua", [[
local fs = require "relish.fs"
return recipe "x" {
  params = { dir = param.string { required = true } },
  step "a" { run = function(ctx) fs.mkdir(ctx.params.dir .. "/made") end },
  step "b" { run = function(ctx)
    -- something outside relish puts a file in the directory: its undo cannot rmdir it
    require("relish.sh").run { argv = { "touch", ctx.params.dir .. "/made/intruder" }, readonly = true }
    error("boom")
  end },
}
]])
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 3, r.stderr .. r.stdout)
    assert_match(r.stdout, "Rollback INCOMPLETE: left to do by hand:")
    assert_match(r.stdout, "fs%.mkdir [^\n]*/made")
  end)

  test("on_failure = 'stop' leaves the run for resume", function()
    local d = tmpdir()
    local f = recipe(d, "s.lua", [[
local fs = require "relish.fs"
return recipe "s" {
  params = { dir = param.string { required = true } },
  on_failure = "stop",
  step "a" { run = function(ctx) fs.write(ctx.params.dir .. "/a", "A"); ctx.state.n = 1 end },
  step "b" { run = function(ctx)
    if not io.open(ctx.params.dir .. "/go") then error("not yet") end
    fs.write(ctx.params.dir .. "/b", "B" .. ctx.state.n)
  end },
}
]])
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 1)
    assert_eq(read(d .. "/a"), "A", "nothing rolled back")
    write(d .. "/go", "")
    r = relish { "resume", "last", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(read(d .. "/b"), "B1", "resumed with the saved ctx.state")
    local s = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_eq(s.status, "succeeded")
    r = relish { "resume", "last", "--state", support.state(d) }
    assert_eq(r.code, 2, "a succeeded run cannot be resumed")
  end)

  test("retries and timeouts", function()
    local d = tmpdir()
    local f = recipe(d, "t.lua", [[
return recipe "t" {
  params = { dir = param.string { required = true } },
  step "flaky" { retries = 2, run = function(ctx)
    ctx.state.tries = (ctx.state.tries or 0) + 1
    if ctx.state.tries < 3 then error("flaky " .. ctx.state.tries) end
  end },
  step "slow" { timeout = "200ms", run = function(ctx) while true do end end },
}
]])
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 1)
    assert_match(r.stdout, "retrying")
    assert_match(r.stdout, "step \"slow\": timed out after the step's timeout of 200ms")
    local s = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_eq(s.steps[1].attempts, 3)
    assert_eq(s.steps[1].status, "done")
  end)
end)

describe("exit codes", function()
  test("4 when the lock is held, naming the holder", function()
    local d = tmpdir()
    local f = recipe(d, "l.lua", [[
return recipe "l" {
  lock = "shared",
  step "wait" { run = function(ctx)
    local sh = require "relish.sh"
    sh.run { argv = { "touch", os.getenv("READY") }, readonly = true }
    sh.run { argv = { "sleep", "3" }, readonly = true }
  end },
}
]])
    local script = string.format("%s run %s --state %s & pid=$!; for i in $(seq 100); do [ -e %s/ready ] && break; sleep 0.05; done; " ..
      "%s run %s --state %s; echo \"second=$?\"; wait $pid; echo \"first=$?\"",
      sh.quote(relish_exe()), f, support.state(d), d, sh.quote(relish_exe()), f, support.state(d))
    local r = assert(sh.run { argv = { "sh", "-c", script }, env = { READY = d .. "/ready", NO_COLOR = "1" }, timeout = 60 })
    assert_match(r.stdout, "second=4")
    assert_match(r.stdout, "first=0")
    assert_match(r.stderr, "lock 'shared' is held by run [%w-]+ %(user [^,]+, host [^,]+, pid %d+, since ")
  end)

  test("130 on SIGINT during a run, after rolling back", function()
    local d = tmpdir()
    local f = recipe(d, "i.lua", [[
local fs = require "relish.fs"
return recipe "i" {
  params = { dir = param.string { required = true } },
  step "write" { run = function(ctx) fs.write(ctx.params.dir .. "/made", "x") end },
  step "spin" { run = function(ctx)
    require("relish.sh").run { argv = { "touch", ctx.params.dir .. "/ready" }, readonly = true }
    while true do end
  end },
}
]])
    local r = support.signal_after({ "run", f, "-p", "dir=" .. d, "--state", support.state(d) }, d .. "/ready", "INT")
    assert_match(r.stdout, "code=130")
    assert_nil(read(d .. "/made"), "rolled back")
    local s = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_eq(s.status, "interrupted")
  end)
end)

describe("locks", function()
  test("a stale lock (dead pid) is taken over and logged; lock list and break", function()
    local d = tmpdir()
    local w = world(d)
    local r = relish { "run", EIGHT, "-p", "dir=" .. w, "--state", support.state(d),
      env = { RELISH_FAULT = "crash-before-action:3" } }
    assert_eq(r.code, nil, "killed")
    assert_eq(r.signal, "KILL")
    local l = relish { "lock", "list", "--state", support.state(d) }
    assert_match(l.stdout, "eight:" .. w:gsub("%p", "%%%0") .. "  held by run .*STALE: its process %d+ is gone")
    r = relish { "run", EIGHT, "-p", "dir=" .. d .. "/other", "--state", support.state(d) }
    local w2 = d .. "/w"
    r = relish { "run", EIGHT, "-p", "dir=" .. w2, "-p", "version=v3", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    local s = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_match(s.events[1].text, "took over stale lock")
    -- break
    local journal = require("relish.journal").open(support.state(d))
    journal.db:exec("INSERT INTO locks (name, run_id, user, host, pid, acquired_at, expires_at) VALUES ('manual', 'r1', 'u', 'elsewhere', 1, 'now', 9e12)")
    journal:close()
    l = relish { "lock", "list", "--state", support.state(d) }
    assert_match(l.stdout, "manual  held by run r1 %(user u, host elsewhere, pid 1")
    local b = relish { "lock", "break", "manual", "--state", support.state(d) }
    assert_eq(b.code, 0)
    assert_eq(relish { "lock", "list", "--state", support.state(d) }.stdout:find("manual"), nil)
    assert_eq(relish { "lock", "break", "manual", "--state", support.state(d) }.code, 2)
  end)

  test("twenty concurrent runs on one lock: exactly one runs, the rest exit 4", function()
    local d = tmpdir()
    local f = recipe(d, "c.lua", [[
return recipe "c" {
  lock = "one-at-a-time",
  step "hold" { run = function(ctx)
    require("relish.sh").run { argv = { "sleep", "2" }, readonly = true }
  end },
}
]])
    local script = {}
    for i = 1, 20 do
      script[#script + 1] = string.format("(%s run %s --state %s >/dev/null 2>&1; echo $? > %s/code.%d) &",
        sh.quote(relish_exe()), f, support.state(d), d, i)
    end
    script[#script + 1] = "wait"
    -- the journal exists before the race, as it does in real use
    relish { "history", "--state", support.state(d) }
    assert(sh.run { argv = { "sh", "-c", table.concat(script, "\n") }, timeout = 120 })
    local counts = {}
    for i = 1, 20 do
      local c = read(d .. "/code." .. i):gsub("%s", "")
      counts[c] = (counts[c] or 0) + 1
    end
    assert_eq(counts, { ["0"] = 1, ["4"] = 19 })
  end)
end)

describe("rollback preflight", function()
  local SHIP = [[
local fs = require "relish.fs"
return recipe "ship" {
  params = { dir = param.string { required = true }, token = param.string { secret = true, required = true } },
  step "upload" {
    needs = { secrets = { "SHIP_TOKEN" }, params = { "token" } },
    run = function(ctx) fs.write(ctx.params.dir .. "/uploaded", "v2") end,
    undo = function(ctx)
      -- the undo authenticates with both, as a DELETE to a store would
      local tok = require("relish.secret").reveal(ctx.secret("SHIP_TOKEN"))
      fs.write(ctx.params.dir .. "/deleted-with", tok .. "+" .. require("relish.secret").reveal(ctx.params.token))
    end,
  },
  step "after" { run = function(ctx) fs.write(ctx.params.dir .. "/after", "x") end },
}
]]

  test("rollback (and --dry-run) lists what its undos need that is missing: exit 2, nothing undone", function()
    local d = tmpdir()
    local f = recipe(d, "ship.lua", SHIP)
    local state = support.state(d)
    local r = relish { "run", f, "-p", "dir=" .. d, "-p", "token=param-secret", "--state", state,
      env = { SHIP_TOKEN = "ship-secret" } }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    for _, dry in ipairs { true, false } do
      local args = { "rollback", "last", "--state", state }
      if dry then args[#args + 1] = "--dry-run" end
      r = relish(args)
      assert_eq(r.code, 2, r.stderr .. r.stdout)
      assert_match(r.stderr, "cannot roll back run [%w-]+: what its undos need is missing %(nothing was undone%):")
      assert_match(r.stderr,
        "secret SHIP_TOKEN: environment variable SHIP_TOKEN is not set, for the undo of step \"upload\"")
      assert_match(r.stderr, "param 'token' %(a secret, not kept in the journal%): set RELISH_PARAM_TOKEN, " ..
        "for the undo of step \"upload\"")
      assert_false(r.stdout:find("undo of step", 1, true) ~= nil, r.stdout)
    end
    assert_eq(read(d .. "/after"), "x", "nothing was undone")
    assert_nil(read(d .. "/deleted-with"))
    assert_eq(json.decode(relish { "show", "last", "--format", "json", "--state", state }.stdout).status, "succeeded")
    -- one of the two is not enough
    r = relish { "rollback", "last", "--state", state, env = { SHIP_TOKEN = "ship-secret" } }
    assert_eq(r.code, 2, r.stderr .. r.stdout)
    assert_false(r.stderr:find("SHIP_TOKEN", 1, true) ~= nil, r.stderr)
    assert_match(r.stderr, "RELISH_PARAM_TOKEN")
    -- with both, the undo gets the real values (not "***")
    r = relish { "rollback", "last", "--state", state,
      env = { SHIP_TOKEN = "ship-secret", RELISH_PARAM_TOKEN = "param-secret" } }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(read(d .. "/deleted-with"), "ship-secret+param-secret")
    assert_nil(read(d .. "/after"))
  end)

  test("a step whose undo needs a missing secret: the run is refused before it starts (exit 2, no run)", function()
    local d = tmpdir()
    local f = recipe(d, "ship.lua", SHIP)
    local r = relish { "run", f, "-p", "dir=" .. d, "-p", "token=t", "--state", support.state(d) }
    assert_eq(r.code, 2, r.stderr .. r.stdout)
    assert_match(r.stderr, "what the undos need is missing, so a failure could not be rolled back:\n  " ..
      "secret SHIP_TOKEN: environment variable SHIP_TOKEN is not set, for the undo of step \"upload\"")
    assert_nil(read(d .. "/uploaded"))
    assert_eq(relish { "history", "--output", "json", "--state", support.state(d) }.stdout, "")
    r = relish { "run", f, "-p", "dir=" .. d, "-p", "token=t", "--dry-run", "--state", support.state(d) }
    assert_eq(r.code, 0, "a dry-run rolls nothing back: " .. r.stderr .. r.stdout)
  end)

  test("a step undo without needs.params needs every secret param back", function()
    local d = tmpdir()
    local f = recipe(d, "s.lua", [[
local fs = require "relish.fs"
return recipe "s" {
  params = { dir = param.string { required = true }, key = param.string { secret = true, required = true } },
  step "a" {
    run = function(ctx) fs.write(ctx.params.dir .. "/a", "A") end,
    undo = function(ctx) fs.write(ctx.params.dir .. "/undone", "yes") end,
  },
}
]])
    local state = support.state(d)
    assert_eq(relish { "run", f, "-p", "dir=" .. d, "-p", "key=k", "--state", state }.code, 0)
    local r = relish { "rollback", "last", "--dry-run", "--state", state }
    assert_eq(r.code, 2, r.stderr .. r.stdout)
    assert_match(r.stderr,
      "param 'key' [^\n]*RELISH_PARAM_KEY, for the undo of step \"a\" %(its needs%.params does not say")
    r = relish { "rollback", "last", "--state", state, env = { RELISH_PARAM_KEY = "k" } }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(read(d .. "/undone"), "yes")
  end)

  test("a git push's undo needs the credentials' environment variable: checked before anything is undone", function()
    local d = tmpdir()
    local TOKEN = "tok-preflight-" .. os.time()
    local remote = G.bare(d, "remote.git")
    G.git(remote, "config", "http.receivepack", "true")
    local w = G.repo(d, "work", { remote = remote, files = { ["app.yaml"] = "image: app:1.0\n" } })
    G.git(w, "push", "-q", "origin", "main")
    local web = G.http(d, "x-access-token", TOKEN)
    local ok, err = pcall(function()
      G.git(w, "remote", "set-url", "origin", web.url .. "remote.git")
      local f = recipe(d, "release.lua", [[
local git = require "relish.git"
return recipe "release" {
  params = { repo = param.string { required = true } },
  step "release" { run = function(ctx)
    local repo <close> = git.open(ctx.params.repo)
    repo:commit { files = { ["app.yaml"] = "image: app:2.0\n" }, message = "deploy 2.0" }
    repo:push { refspecs = { "main" }, auth = ctx.secret("GIT_TOKEN") }
  end },
}
]])
      local state = support.state(d)
      local r = relish { "run", f, "-p", "repo=" .. w, "--state", state, env = G.env { GIT_TOKEN = TOKEN } }
      assert_eq(r.code, 0, r.stderr .. r.stdout)
      local pushed = G.rev(remote, "refs/heads/main")
      r = relish { "rollback", "last", "--state", state, env = G.env {} }
      assert_eq(r.code, 2, r.stderr .. r.stdout)
      assert_match(r.stderr,
        "%$GIT_TOKEN is not set %(its credentials came from it%), for the undo of action %d+: git%.push ")
      assert_eq(G.rev(remote, "refs/heads/main"), pushed, "nothing undone")
      r = relish { "rollback", "last", "--state", state, env = G.env { GIT_TOKEN = TOKEN } }
      assert_eq(r.code, 0, r.stderr .. r.stdout)
      assert_eq(G.git(remote, "log", "-1", "--format=%s", "main"), 'Revert "deploy 2.0"')
    end)
    web:stop()
    if not ok then error(err, 0) end
  end)
end)

describe("saved plans", function()
  test("apply of an unchanged plan matches a direct run", function()
    local d = tmpdir()
    local w = world(d)
    local d2 = tmpdir()
    local w2 = world(d2)
    local p = relish { "plan", EIGHT, "-p", "dir=" .. w, "-o", d .. "/plan.json", "--state", support.state(d) }
    assert_eq(p.code, 0, p.stderr .. p.stdout)
    local plan = json.decode(read(d .. "/plan.json"))
    assert_eq(#plan.actions, 10)
    local a = relish { "apply", d .. "/plan.json", "--state", support.state(d) }
    assert_eq(a.code, 0, a.stderr .. a.stdout)
    assert_eq(relish { "run", EIGHT, "-p", "dir=" .. w2, "--state", support.state(d2) }.code, 0)
    local s1, s2 = snapshot(w), snapshot(w2)
    -- the same tree, but for the absolute link target
    s1.current = s1.current:gsub(d:gsub("%p", "%%%0"), "D")
    s2.current = s2.current:gsub(d2:gsub("%p", "%%%0"), "D")
    assert_eq(s1, s2)
  end)

  test("the world changed: apply stops before acting and shows the difference", function()
    local d = tmpdir()
    local w = world(d)
    assert_eq(relish { "plan", EIGHT, "-p", "dir=" .. w, "-o", d .. "/plan.json", "--state", support.state(d) }.code, 0)
    write(w .. "/config.ini", "version=changed-by-someone\n")
    local before = snapshot(w)
    local a = relish { "apply", d .. "/plan.json", "--state", support.state(d) }
    assert_eq(a.code, 1, a.stderr .. a.stdout)
    assert_match(a.stdout, "the live state of [^\n]*config%.ini changed since the plan")
    assert_match(a.stdout, "planned against: file:")
    assert_eq(snapshot(w), before, "the actions before the drift were rolled back")
  end)

  test("a changed recipe file is refused", function()
    local d = tmpdir()
    local w = world(d)
    local f = d .. "/copy.lua"
    write(f, read(EIGHT))
    assert_eq(relish { "plan", f, "-p", "dir=" .. w, "-o", d .. "/plan.json", "--state", support.state(d) }.code, 0)
    write(f, read(EIGHT) .. "\n-- edited\n")
    local a = relish { "apply", d .. "/plan.json", "--state", support.state(d) }
    assert_eq(a.code, 2)
    assert_match(a.stderr, "changed since the plan was made")
  end)

  -- issue 17 item 7: a saved plan pins what gets applied
  test("params edited in plan.json are refused, exit 2, nothing applied", function()
    local d = tmpdir()
    local w = world(d)
    local before = snapshot(w)
    assert_eq(relish { "plan", EIGHT, "-p", "dir=" .. w, "-o", d .. "/plan.json", "--state", support.state(d) }.code, 0)
    local plan = read(d .. "/plan.json")
    assert_match(plan, '"plan_hash": "%x+"')
    write(d .. "/plan.json", (plan:gsub('"version": "v2"', '"version": "v9"')))
    local a = relish { "apply", d .. "/plan.json", "--state", support.state(d) }
    assert_eq(a.code, 2, a.stderr .. a.stdout)
    assert_match(a.stderr, "plan%.json was modified after it was made")
    assert_eq(snapshot(w), before)
    -- a plan of the format before plan_hash and pins is refused too
    write(d .. "/plan.json", (plan:gsub('"relish_plan": 2', '"relish_plan": 1')))
    a = relish { "apply", d .. "/plan.json", "--state", support.state(d) }
    assert_eq(a.code, 2, a.stderr .. a.stdout)
    assert_match(a.stderr, "made by another version of relish")
  end)

  local PINNED = [[
local fs = require "relish.fs"
return recipe "pinned" {
  params = { dir = param.string { required = true } },
  step "write" { run = function(ctx)
    local d = ctx.params.dir
    fs.write(d .. "/conf/app.conf", fs.read(d .. "/input"))
  end },
}
]]

  test("a symlink re-pointed between plan and apply: apply refuses, nothing is written", function()
    local d = tmpdir()
    local f = recipe(d, "pinned.lua", PINNED)
    assert(os.execute(string.format("mkdir %s/a %s/b && ln -s %s/a %s/conf", d, d, d, d)))
    write(d .. "/input", "setting=1\n")
    assert_eq(relish { "plan", f, "-p", "dir=" .. d, "-o", d .. "/plan.json", "--state", support.state(d) }.code, 0)
    local plan = json.decode(read(d .. "/plan.json"))
    assert_match(plan.actions[1].fingerprint, "^absent #pin: new:%x+:0644 at:" .. (d .. "/a/app.conf"):gsub("%p", "%%%0") .. "$")
    assert(os.execute(string.format("ln -sfn %s/b %s/conf", d, d)))
    local a = relish { "apply", d .. "/plan.json", "--state", support.state(d) }
    assert_eq(a.code, 1, a.stderr .. a.stdout)
    assert_match(a.stdout, "what action 1 %(fs%.write [^\n]*/conf/app%.conf%) would do changed since the plan")
    assert_match(a.stdout, "now: +new:%x+:0644 at:[^\n]*/b/app%.conf")
    assert_nil(read(d .. "/b/app.conf"))
    assert_nil(read(d .. "/a/app.conf"))
  end)

  test("content different between plan and apply (its input file changed): apply refuses", function()
    local d = tmpdir()
    local f = recipe(d, "pinned.lua", PINNED)
    assert(os.execute(string.format("mkdir %s/conf", d)))
    write(d .. "/input", "setting=1\n")
    assert_eq(relish { "plan", f, "-p", "dir=" .. d, "-o", d .. "/plan.json", "--state", support.state(d) }.code, 0)
    write(d .. "/input", "setting=2\n")
    local a = relish { "apply", d .. "/plan.json", "--state", support.state(d) }
    assert_eq(a.code, 1, a.stderr .. a.stdout)
    assert_match(a.stdout, "would do changed since the plan")
    assert_nil(read(d .. "/conf/app.conf"))
    -- unchanged, the same plan applies
    write(d .. "/input", "setting=1\n")
    a = relish { "apply", d .. "/plan.json", "--state", support.state(d) }
    assert_eq(a.code, 0, a.stderr .. a.stdout)
    assert_eq(read(d .. "/conf/app.conf"), "setting=1\n")
  end)

  test("a file that is not JSON is not a plan: a usage error naming the fault", function()
    local d = tmpdir()
    write(d .. "/plan.json", '{"relish_plan": 1,\n  oops}\n')
    local a = relish { "apply", d .. "/plan.json", "--state", support.state(d) }
    assert_eq(a.code, 2, a.stderr .. a.stdout)
    assert_match(a.stderr, "plan%.json: not a relish plan %(json: unexpected character at line 2, column 3%)")
  end)
end)

describe("output", function()
  test("--output json: one event per line with event, run_id and ts", function()
    local d = tmpdir()
    local w = world(d)
    local r = relish { "run", EIGHT, "-p", "dir=" .. w, "-p", "fail_at=switch", "--output", "json", "--state", support.state(d) }
    assert_eq(r.code, 1)
    local seen, run_id = {}, nil
    for line in r.stdout:gmatch("[^\n]+") do
      local e = assert(json.decode(line), line)
      assert_true(e.event and e.run_id and e.ts, line)
      assert_match(e.ts, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$")
      run_id = run_id or e.run_id
      assert_eq(e.run_id, run_id)
      seen[e.event] = (seen[e.event] or 0) + 1
    end
    for _, ev in ipairs { "run_started", "step_started", "action_started", "action_done", "step_finished",
      "rollback_started", "rollback_finished", "run_finished" } do
      assert_true(seen[ev], "missing event " .. ev)
    end
    local last = json.decode(r.stdout:match("([^\n]+)\n$"))
    assert_eq(last.event, "run_finished")
    assert_eq(last.exit_code, 1)
    local p = relish { "run", EIGHT, "-p", "dir=" .. w, "--dry-run", "--output", "json", "--state", support.state(d) }
    assert_match(p.stdout, '"event":"action_planned"')
  end)

  test("show as text, json and markdown", function()
    local d = tmpdir()
    local w = world(d)
    assert_eq(relish { "run", EIGHT, "-p", "dir=" .. w, "--state", support.state(d) }.code, 0)
    local t = relish { "show", "last", "--state", support.state(d) }
    assert_match(t.stdout, "eight  succeeded")
    assert_match(t.stdout, "fs%.symlink")
    local m = relish { "show", "last", "--format", "markdown", "--state", support.state(d) }
    assert_match(m.stdout, "^# Postmortem: eight, ")
    assert_match(m.stdout, "| action 1 done | mkdir ")
    local j = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_eq(#j.actions, 10)
    assert_eq(relish { "show", "nope", "--state", support.state(d) }.code, 2)
  end)
end)

describe("secrets", function()
  test("a secret in params, fs content and sh env never leaks", function()
    local d = tmpdir()
    local token = "s3cr3t-T0KEN-" .. tostring(math.random(100000, 999999))
    local f = recipe(d, "sec.lua", [[
local fs = require "relish.fs"
local sh = require "relish.sh"
local secret = require "relish.secret"
return recipe "sec" {
  params = {
    dir = param.string { required = true },
    token = param.string { required = true, secret = true },
  },
  step "use" { run = function(ctx)
    local api = ctx.secret("API_TOKEN")
    fs.write(ctx.params.dir .. "/creds", api)
    fs.write(ctx.params.dir .. "/creds2", ctx.params.token)
    local r = sh.run { argv = { "sh", "-c", "echo token is $TOK" }, env = { TOK = api } }
    ctx.log("output: %s", r.stdout)
    ctx.log("param is %s", ctx.params.token)
    ctx.log("raw " .. secret.reveal(api))
  end },
  step "fail" { run = function(ctx) error("failed with " .. secret.reveal(ctx.params.token)) end },
}
]])
    local env = { API_TOKEN = token }
    local outs = {}
    for _, fmt in ipairs { "text", "json" } do
      local r = relish { "run", f, "-p", "dir=" .. d, "-p", "token=" .. token, "--output", fmt, "--state", support.state(d), env = env }
      assert_eq(r.code, 1, r.stderr .. r.stdout)
      outs[#outs + 1] = r.stdout .. r.stderr
    end
    local p = relish { "plan", f, "-p", "dir=" .. d, "-p", "token=" .. token, "-o", d .. "/plan.json", "--state", support.state(d), env = env }
    outs[#outs + 1] = p.stdout .. p.stderr .. (read(d .. "/plan.json") or "")
    local s = relish { "show", "last", "--format", "json", "--state", support.state(d) }
    outs[#outs + 1] = s.stdout
    assert_match(outs[1], "token is %*%*%*")
    for i, o in ipairs(outs) do
      assert_nil(o:find(token, 1, true), "secret leaked in output " .. i)
    end
    pcall(sh.run, { argv = { "sqlite3", "-version" }, timeout = 5 }) -- sh.run raises now; sqlite3 may be missing
    for _, file in ipairs { "journal.db", "journal.db-wal" } do
      local bytes = read(d .. "/" .. file) or ""
      assert_nil(bytes:find(token, 1, true), "secret in " .. file)
    end
  end)
end)
