-- Manual gates (ctx.decide) as a person meets them: without a terminal the run
-- pauses (exit 5, status paused, its lock kept) until `relish resume`
-- promotes or `relish rollback` aborts; on a terminal (a pty driven by
-- python3) it asks promote / abort / wait while the run's other tasks go on.
-- Every decision is in the journal, and `relish show` tells it.
local support = require "support"
local json = require "relish.json"
local sh = require "relish.sh"
local host = require "relish._host"

local relish, read = support.relish, support.read

-- Step "canary" writes d/before once (ctx.state remembers it: its re-run
-- after a resume does not write it again), asks at gate canary-50 and writes
-- the answer to d/after. background = "ticks": a task appends a line to
-- d/ticks every 50 ms while the gate waits; "fails": an analysis beside the
-- gate fails after half a second. two = "yes": step "later" asks at a second
-- gate, "final".
local RECIPE = [[
local fs = require "relish.fs"
local sh = require "relish.sh"
local task = require "relish.task"
return recipe "gated" {
  lock = "gated-lock",
  params = {
    dir = param.string { required = true },
    background = param.string { default = "none" },
    two = param.string { default = "no" },
  },
  step "prepare" { run = function(ctx) fs.write(ctx.params.dir .. "/prepared", "yes") end },
  step "canary" { run = function(ctx)
    local dir = ctx.params.dir
    if not ctx.state.before then
      fs.write(dir .. "/before", "1")
      ctx.state.before = true
    end
    local function gate() return ctx.decide { id = "canary-50", question = "Canary at 50%: promote?" } end
    local d
    if ctx.params.background == "ticks" then
      local bg = task.spawn(function()
        while true do
          sh.run { argv = { "sh", "-c", "echo tick >> " .. dir .. "/ticks" }, readonly = true }
          task.sleep(0.05)
        end
      end)
      d = gate()
      bg:cancel()
    elseif ctx.params.background == "fails" then
      task.parallel {
        function() task.sleep(0.5) error("analysis failed: error rate 12% > 5%") end,
        function() d = gate() end,
      }
    else
      d = gate()
    end
    fs.write(dir .. "/after", d)
  end },
  step "later" {
    when = function(ctx) return ctx.params.two == "yes" end,
    run = function(ctx)
      fs.write(ctx.params.dir .. "/final", ctx.decide { id = "final", question = "Go to 100%?" })
    end,
  },
  step "finish" { run = function(ctx) fs.write(ctx.params.dir .. "/finished", "yes") end },
}
]]

local function setup()
  local d = tmpdir()
  return d, support.recipe(d, "gated.lua", RECIPE)
end

local function run(d, f, extra, opts)
  local args = { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  opts = opts or {}
  opts.input = opts.input or ""
  return relish(args, opts)
end

local function cmd(d, ...)
  local args = { ... }
  args[#args + 1] = "--state"
  args[#args + 1] = support.state(d)
  return relish(args, { input = "" })
end

local function show(d, id)
  local r = cmd(d, "show", id or "last", "--format", "json")
  assert_eq(r.code, 0, r.stderr)
  return json.decode(r.stdout)
end

local function run_id(r) return r.stdout:match("%(run ([%w-]+)%)") end

-- text as a Lua pattern that matches only itself
local function esc(text) return (text:gsub("%p", "%%%0")) end

local function me() return require("relish.journal").actor_at() end

-- what the journal says of the gates: {id=status, ...} and the decisions
-- as "decision via" in order
local function gates_of(s)
  local st, ds = {}, {}
  for _, g in ipairs(s.gates) do
    st[g.id] = g.status
    for _, x in ipairs(g.decisions) do
      ds[#ds + 1] = x.decision .. " via " .. x.via
      assert_eq(x.by, me())
      assert_match(x.at, "^%d%d%d%d%-%d%d%-%d%dT")
    end
  end
  return st, ds
end

describe("without a terminal", function()
  test("the run pauses: exit 5, status paused, the step's state saved, how to go on said", function()
    local d, f = setup()
    local r = run(d, f)
    assert_eq(r.code, 5, r.stdout .. r.stderr)
    local id = run_id(r)
    assert_match(r.stdout, "step 2/4 canary: PAUSED")
    assert_match(r.stdout, "Paused at gate canary%-50 %(step \"canary\"%): Canary at 50%% ?: promote%?")
    assert_match(r.stdout, "relish resume " .. esc(id) .. " +promotes")
    assert_match(r.stdout, "relish rollback " .. esc(id) .. " aborts")
    assert_match(r.stdout, "keeps its lock 'gated%-lock'")
    assert_match(r.stdout, "Paused %(exit 5%): waiting for a person")
    assert_eq({ read(d .. "/prepared"), read(d .. "/before"), read(d .. "/after") }, { "yes", "1", nil })
    local s = show(d)
    assert_eq({ s.status, s.outcome, s.exit_code, s.finished_at }, { "paused", "paused", 5, json.null })
    assert_eq({ s.steps[1].status, s.steps[2].status, s.steps[3].status }, { "done", "paused", "pending" })
    assert_eq(s.state, { before = true })
    assert_eq(#s.gates, 1)
    assert_eq({ s.gates[1].id, s.gates[1].step, s.gates[1].question, s.gates[1].status, #s.gates[1].decisions },
      { "canary-50", 2, "Canary at 50%: promote?", "paused", 0 })
    local pause
    for _, e in ipairs(s.events) do if e.type == "pause" then pause = e end end
    assert_eq(pause.text, "paused at gate canary-50 (step 2): Canary at 50%: promote?")
    local h = cmd(d, "history")
    assert_match(h.stdout, "gated +paused +5 ")
  end)

  test("--output json has a paused event and run_finished with exit 5", function()
    local d, f = setup()
    local r = run(d, f, { "--output", "json" })
    assert_eq(r.code, 5, r.stderr)
    local events = {}
    for line in r.stdout:gmatch("[^\n]+") do
      local e = json.decode(line)
      events[e.event] = e
    end
    local p = events.paused
    assert_eq({ p.gate, p.question, p.step, p.step_index, p.lock }, { "canary-50", "Canary at 50%: promote?",
      "canary", 2, "gated-lock" })
    assert_eq(p.resume, "relish resume " .. p.run_id)
    assert_eq(p.rollback, "relish rollback " .. p.run_id)
    assert_eq({ events.run_finished.status, events.run_finished.exit_code }, { "paused", 5 })
  end)

  test("the paused run keeps its lock: another run exits 4 naming it; lock list shows it", function()
    local d, f = setup()
    local id = run_id(run(d, f))
    local other = tmpdir()
    local r = relish { "run", f, "-p", "dir=" .. other, "--state", support.state(d), input = "" }
    assert_eq(r.code, 4, r.stdout .. r.stderr)
    assert_match(r.stderr, "lock 'gated%-lock' is held by paused run " .. esc(id) .. " %(waiting at a manual gate")
    assert_match(r.stderr, "`relish resume " .. esc(id) .. "` promotes, `relish rollback " .. esc(id) .. "` aborts")
    assert_nil(read(other .. "/prepared"))
    -- no process and no expiry: nothing can take it over, however long it waits
    r = relish { "run", f, "-p", "dir=" .. other, "--state", support.state(d), "--wait-lock", "1s", input = "",
      env = { RELISH_LOCK_TTL = "0.1" } }
    assert_eq(r.code, 4, r.stdout .. r.stderr)
    local l = cmd(d, "lock", "list")
    assert_match(l.stdout, "gated%-lock  held by paused run " .. esc(id))
    assert_match(l.stdout, "run:" .. esc(id) .. "  held by paused run " .. esc(id))
    assert_nil(l.stdout:find("STALE", 1, true))
    local list = json.decode(cmd(d, "lock", "list", "--output", "json").stdout)
    assert_eq(#list, 2)
    for _, x in ipairs(list) do
      assert_eq({ x.run_id, x.paused, x.stale, x.pid, x.expires_in }, { id, true, false, json.null, json.null })
    end
  end)

  test("relish resume promotes: decision journaled, the step runs again from its state, exit 0", function()
    local d, f = setup()
    local id = run_id(run(d, f))
    support.write(d .. "/before", "kept") -- the re-run must not write it again (ctx.state says it did)
    local r = cmd(d, "resume", id)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "gate canary%-50: promote by " .. esc(me()) .. " %(via resume%)")
    assert_eq({ read(d .. "/before"), read(d .. "/after"), read(d .. "/finished") }, { "kept", "promote", "yes" })
    local s = show(d, id)
    assert_eq({ s.status, s.exit_code }, { "succeeded", 0 })
    local st, ds = gates_of(s)
    assert_eq({ st, ds }, { { ["canary-50"] = "promoted" }, { "promote via resume" } })
    assert_eq(cmd(d, "lock", "list").stdout, "No locks held\n")
    -- the lock is free for the next run
    local again = run(d, f, { "-p", "background=none" })
    assert_eq(again.code, 5, again.stdout .. again.stderr)
  end)

  test("a later gate pauses again after a resume; a second resume finishes the run", function()
    local d, f = setup()
    local id = run_id(run(d, f, { "-p", "two=yes" }))
    local r = cmd(d, "resume", id)
    assert_eq(r.code, 5, r.stdout .. r.stderr)
    assert_match(r.stdout, "Paused at gate final %(step \"later\"%): Go to 100%%%?")
    assert_eq({ read(d .. "/after"), read(d .. "/final") }, { "promote", nil })
    assert_eq(show(d, id).status, "paused")
    r = cmd(d, "resume", id)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq({ read(d .. "/final"), read(d .. "/finished") }, { "promote", "yes" })
    local st, ds = gates_of(show(d, id))
    assert_eq({ st, ds }, { { ["canary-50"] = "promoted", final = "promoted" },
      { "promote via resume", "promote via resume" } })
  end)

  test("relish rollback aborts: decision journaled, what the run did before the gate undone", function()
    local d, f = setup()
    local id = run_id(run(d, f))
    local r = cmd(d, "rollback", id, "--dry-run")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(show(d, id).status, "paused", "a dry-run decides nothing")
    r = cmd(d, "rollback", id)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "gate canary%-50: abort by " .. esc(me()) .. " %(via rollback%)")
    assert_eq({ read(d .. "/prepared"), read(d .. "/before"), read(d .. "/after") }, { nil, nil, nil })
    local s = show(d, id)
    assert_eq({ s.status, s.outcome }, { "rolled_back", "paused" })
    local st, ds = gates_of(s)
    assert_eq({ st, ds }, { { ["canary-50"] = "aborted" }, { "abort via rollback" } })
    assert_eq(s.rollbacks[1].reason, "aborted by " .. me() .. " at the gate canary-50")
    assert_eq(cmd(d, "lock", "list").stdout, "No locks held\n")
    -- aborted: nothing to resume
    r = cmd(d, "resume", id)
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "only a stopped, paused or crashed run can be resumed")
  end)

  test("lock break frees a paused run's lock (with a warning); its resume takes the lock again", function()
    local d, f = setup()
    local id = run_id(run(d, f))
    local r = cmd(d, "lock", "break", "gated-lock")
    assert_eq(r.code, 0, r.stderr)
    assert_match(r.stderr, "held by run " .. esc(id) .. ", paused at a manual gate")
    r = cmd(d, "resume", id)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(read(d .. "/finished"), "yes")
  end)

  test("try() does not swallow a pause; a retry of the step finds the gate's decision", function()
    local d = tmpdir()
    local f = support.recipe(d, "retry.lua", [[
local fs = require "relish.fs"
return recipe "retry" {
  params = { dir = param.string { required = true } },
  step "s" { retries = 1, run = function(ctx)
    local dir = ctx.params.dir
    local d = try(ctx.decide, { id = "g", question = "go?" })
    fs.write(dir .. "/after-" .. tostring(d), "x")
    if not fs.exists(dir .. "/failed-once") then
      fs.write(dir .. "/failed-once", "x")
      error("flaky")
    end
  end },
}
]])
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d), input = "" }
    assert_eq(r.code, 5, r.stdout .. r.stderr)
    assert_nil(read(d .. "/after-nil"), "the code after the gate did not run")
    r = cmd(d, "resume", "last")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "step s failed %(attempt 1 of 2%): [^\n]*flaky; retrying")
    assert_eq({ read(d .. "/after-promote"), read(d .. "/failed-once") }, { "x", "x" })
    local st, ds = gates_of(show(d))
    assert_eq({ st, ds }, { { g = "promoted" }, { "promote via resume" } })
  end)

  test("a gate inside a parallel with a background analysis pauses the step, cancelling the analysis", function()
    local d, f = setup()
    local r = run(d, f, { "-p", "background=fails" })
    assert_eq(r.code, 5, r.stdout .. r.stderr)
    assert_eq(show(d).status, "paused")
  end)
end)

describe("dry-run", function()
  test("never pauses: the gate is planned and promoted, the plan goes on to the end", function()
    local d, f = setup()
    local r = run(d, f, { "--dry-run", "-p", "two=yes" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "%? would wait for a person: Canary at 50%% ?: promote%?  %(gate canary%-50%)")
    assert_match(r.stdout, "%? would wait for a person: Go to 100%%%?  %(gate final%)")
    assert_match(r.stdout, "write " .. esc(d) .. "/finished")
    assert_match(r.stdout, "Plan: 5 action%(s%), nothing changed%.")
    assert_nil(read(d .. "/prepared"))
    assert_eq(cmd(d, "lock", "list").stdout, "No locks held\n")
    local j = run(d, f, { "--dry-run", "--output", "json" })
    local gate
    for line in j.stdout:gmatch("[^\n]+") do
      local e = json.decode(line)
      if e.event == "gate" then gate = e end
    end
    assert_eq({ gate.gate, gate.question, gate.dry_run }, { "canary-50", "Canary at 50%: promote?", true })
  end)
end)

describe("misuse raises at the caller", function()
  local function misuse(body, pattern, extra)
    local d = tmpdir()
    local f = support.recipe(d, "bad.lua", string.format([[
return recipe "bad" {
  step "a" { run = function(ctx)
    %s
  end },
  step "b" { run = function(ctx) %s end },
}
]], body, extra or ""))
    local r = relish { "run", f, "--dry-run", "--state", support.state(d), input = "" }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout, pattern)
  end

  test("no id, an id that is not a string, a bad field", function()
    misuse([[ctx.decide { question = "go?" }]], "bad%.lua:3: ctx%.decide: id is required")
    misuse([[ctx.decide { id = 4, question = "go?" }]], "bad%.lua:3: ctx%.decide: id: expected a non%-empty string, got number")
    misuse([[ctx.decide { id = "", question = "go?" }]], "bad%.lua:3: ctx%.decide: id: expected a non%-empty string")
    misuse([[ctx.decide { id = "x" }]], "bad%.lua:3: ctx%.decide: question: expected a non%-empty string, got nil")
    misuse([[ctx.decide { id = "x", question = "go?", qestion = 1 }]],
      "bad%.lua:3: ctx%.decide: unknown field 'qestion' %(did you mean 'question'%?%)")
    misuse([[ctx.decide "x"]], "bad%.lua:3: ctx%.decide: expected a table {id=, question=}, got string")
  end)

  test("one id twice in a run: in one step, or in two steps", function()
    misuse([[ctx.decide { id = "g", question = "one?" }
    ctx.decide { id = "g", question = "two?" }]], "bad%.lua:4: ctx%.decide: the gate id 'g' is used twice in this run")
    misuse([[ctx.decide { id = "g", question = "one?" }]], "bad%.lua:5: ctx%.decide: the gate id 'g' is used twice in " ..
      "this run %(step \"a\" asked it already%)", [[ctx.decide { id = "g", question = "two?" }]])
  end)

  test("after a resume too: a later step reusing a promoted gate's id fails the run", function()
    local d = tmpdir()
    local f = support.recipe(d, "twice.lua", [[
local fs = require "relish.fs"
return recipe "twice" {
  params = { dir = param.string { required = true } },
  step "a" { run = function(ctx)
    fs.write(ctx.params.dir .. "/a", "1")
    ctx.decide { id = "g", question = "one?" }
  end },
  step "b" { run = function(ctx) ctx.decide { id = "g", question = "two?" } end },
}
]])
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d), input = "" }
    assert_eq(r.code, 5, r.stdout .. r.stderr)
    r = cmd(d, "resume", "last")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout, "twice%.lua:8: ctx%.decide: the gate id 'g' is used twice in this run %(step \"a\"")
    assert_nil(read(d .. "/a"), "rolled back")
  end)
end)

-- ---- on a terminal -----------------------------------------------------------------

-- Runs argv on a pty (stdin and stdout a terminal) and answers ANSWER
-- ("none": never) once the question shows and WAIT_FILE ("-": none) has
-- WAIT_LINES lines; prints what the terminal showed, then "code=N".
local DRIVER = [[
import os, pty, select, sys, time
answer, wait_file, wait_lines, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
argv = sys.argv[sys.argv.index("--") + 1:]
pid, fd = pty.fork()
if pid == 0:
    os.execv(argv[0], argv)
def lines():
    try:
        with open(wait_file) as f:
            return len(f.read().splitlines())
    except OSError:
        return 0
out, sent, deadline = b"", False, time.time() + timeout
while time.time() < deadline:
    if select.select([fd], [], [], 0.05)[0]:
        try:
            data = os.read(fd, 4096)
        except OSError:
            break
        if not data:
            break
        out += data
    if not sent and answer != "none" and b"promote / abort / wait?" in out and (wait_file == "-" or lines() >= wait_lines):
        os.write(fd, answer.encode() + b"\n")
        sent = True
else:
    os.kill(pid, 9)
_, status = os.waitpid(pid, 0)
sys.stdout.write(out.decode("utf-8", "replace"))
print("\ncode=%d" % (os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)))
]]

local function on_terminal(d, f, answer, extra, wait_file, wait_lines)
  support.write(d .. "/drive.py", DRIVER)
  local argv = { "python3", d .. "/drive.py", answer, wait_file or "-", tostring(wait_lines or 0), "60", "--",
    host.exe(), "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local r = assert(sh.run { argv = argv, env = { NO_COLOR = "1" }, timeout = 90 })
  return tonumber(r.stdout:match("code=(%d+)%s*$")), r.stdout
end

describe("on a terminal", function()
  test("promote: asked with the question, the run goes on, the decision journaled", function()
    local d, f = setup()
    local code, out = on_terminal(d, f, "promote")
    assert_eq(code, 0, out)
    assert_match(out, "%? Canary at 50%% ?: promote%?  %(gate canary%-50%)")
    assert_match(out, "promote / abort / wait%? ")
    assert_match(out, "gate canary%-50: promote by " .. esc(me()) .. " %(via terminal%)")
    assert_eq({ read(d .. "/after"), read(d .. "/finished") }, { "promote", "yes" })
    local s = show(d)
    local st, ds = gates_of(s)
    assert_eq({ s.status, st, ds }, { "succeeded", { ["canary-50"] = "promoted" }, { "promote via terminal" } })
  end)

  test("abort: the step fails with kind aborted and the run rolls back, exit 1", function()
    local d, f = setup()
    local code, out = on_terminal(d, f, "abort")
    assert_eq(code, 1, out)
    assert_match(out, "aborted by " .. esc(me()) .. " at the gate canary%-50")
    assert_eq({ read(d .. "/prepared"), read(d .. "/before"), read(d .. "/after") }, { nil, nil, nil })
    local s = show(d)
    assert_eq(s.status, "rolled_back")
    assert_match(s.error, "step \"canary\": aborted by .* at the gate canary%-50")
    local st, ds = gates_of(s)
    assert_eq({ st, ds }, { { ["canary-50"] = "aborted" }, { "abort via terminal" } })
  end)

  test("wait: the run pauses as without a terminal; resume promotes later", function()
    local d, f = setup()
    local code, out = on_terminal(d, f, "wait")
    assert_eq(code, 5, out)
    assert_match(out, "Paused at gate canary%-50")
    local s = show(d)
    assert_eq(s.status, "paused")
    local r = cmd(d, "resume", "last")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local st, ds = gates_of(show(d))
    assert_eq({ st, ds }, { { ["canary-50"] = "promoted" }, { "wait via terminal", "promote via resume" } })
    local text = cmd(d, "show", "last").stdout
    assert_match(text, "gates:\n  canary%-50 %(step canary%) promoted: Canary at 50%% ?: promote%?\n")
    assert_match(text, "wait by [^\n]+ %(via terminal%)\n[^\n]+ promote by [^\n]+ %(via resume%)")
    assert_match(text, "decision wait at gate canary%-50 by ")
  end)

  test("an unknown answer is asked again; the answer's letter is enough", function()
    local d, f = setup()
    support.write(d .. "/drive2.py", DRIVER:gsub('os%.write%(fd, answer%.encode%(%) %+ b"\\n"%)',
      'os.write(fd, b"maybe\\n"); time.sleep(0.3); os.write(fd, answer.encode() + b"\\n")'))
    local r = assert(sh.run { argv = { "python3", d .. "/drive2.py", "p", "-", "0", "60", "--", host.exe(), "run", f,
      "-p", "dir=" .. d, "--state", support.state(d) }, env = { NO_COLOR = "1" }, timeout = 90 })
    assert_match(r.stdout, "please answer promote, abort or wait")
    assert_match(r.stdout, "code=0")
    assert_eq(read(d .. "/after"), "promote")
  end)

  test("the run's other tasks go on while the question waits", function()
    local d, f = setup()
    -- answered only once the background task has written 6 lines meanwhile
    local code, out = on_terminal(d, f, "promote", { "-p", "background=ticks" }, d .. "/ticks", 6)
    assert_eq(code, 0, out)
    local ticks = select(2, read(d .. "/ticks"):gsub("tick\n", ""))
    assert_true(ticks >= 6, "ticks: " .. ticks)
    assert_eq(read(d .. "/after"), "promote")
  end)

  test("a background analysis failing while the question waits fails the step: rolled back, exit 1", function()
    local d, f = setup()
    local code, out = on_terminal(d, f, "none", { "-p", "background=fails" })
    assert_eq(code, 1, out)
    assert_match(out, "analysis failed: error rate 12%% > 5%%")
    assert_eq({ read(d .. "/prepared"), read(d .. "/before") }, { nil, nil })
    local s = show(d)
    assert_eq({ s.status, s.gates[1].status, #s.gates[1].decisions }, { "rolled_back", "asked", 0 })
    local withdrawn
    for _, e in ipairs(s.events) do
      if e.text:find("withdrawn before anyone answered", 1, true) then withdrawn = e end
    end
    assert_true(withdrawn ~= nil, "the timeline says the question was withdrawn")
  end)
end)
