-- Tests for relish.task: tasks on the host's event loop, parallel with limits,
-- errors and cancellation that leave no process or transfer behind.
local task = require "relish.task"
local loop = require "relish._loop"
local sh = require "relish.sh"
local support = require "support"

local write, read = support.write, support.read

-- A process is gone when it has no /proc entry or is a zombie nobody reaped
-- (on some machines PID 1 never reaps orphans).
local function process_gone(pid)
  local stat = read("/proc/" .. pid .. "/stat")
  return stat == nil or stat:match("^%d+ %b() (%a)") == "Z"
end

-- A command that writes its pid to `file` and then sleeps for a long time.
local function sleeper(file, extra)
  return { argv = { "sh", "-c", (extra or "") .. 'echo $$ > "$0"; exec sleep 100', file }, readonly = true }
end

local function wait_for(path)
  for _ = 1, 200 do
    local s = read(path)
    if s and s:match("\n$") then return s end
    task.sleep(0.02)
  end
  error("no " .. path)
end

local function assert_nothing_left()
  local st = loop.stats()
  assert_eq({ tasks = st.tasks, waiters = st.waiters, transfers = st.transfers, orphans = st.orphans, ready = st.ready },
    { tasks = 0, waiters = 0, transfers = 0, orphans = 0, ready = 0 })
end

describe("parallel", function()
  test("returns the results in the order of the functions", function()
    local fns = {}
    for i = 1, 5 do
      fns[i] = function()
        task.sleep((6 - i) * 0.01) -- the last finishes first
        return i * 10, "ignored"
      end
    end
    assert_eq(task.parallel(fns), { 10, 20, 30, 40, 50 })
    assert_eq(task.parallel({}), {})
    assert_nothing_left()
  end)

  test("runs at most limit functions at once", function()
    for _, limit in ipairs { 1, 3, 10 } do
      local inflight, peak = 0, 0
      local fns = {}
      for i = 1, 10 do
        fns[i] = function()
          inflight = inflight + 1
          peak = math.max(peak, inflight)
          task.sleep(0.01)
          inflight = inflight - 1
          return i
        end
      end
      local r = task.parallel(fns, { limit = limit })
      assert_eq(#r, 10)
      assert_eq(peak, limit, "limit " .. limit)
    end
  end)

  test("commands run at the same time, not one after another", function()
    -- each command waits until every other one has started: only possible
    -- when they all run at once
    local d = tmpdir()
    local fns = {}
    for i = 1, 4 do
      fns[i] = function()
        local r = sh.run { readonly = true, argv = { "sh", "-c", [[
touch "$1/ready.$2"
for i in $(seq 500); do
  [ "$(ls "$1" | grep -c ready)" = 4 ] && exit 0
  sleep 0.01
done
exit 1]], "sh", d, tostring(i) } }
        return r.code
      end
    end
    assert_eq(task.parallel(fns), { 0, 0, 0, 0 })
  end)

  test("the first error cancels the others, kills their processes and is raised", function()
    local d = tmpdir()
    local fns = {}
    for i = 1, 3 do
      fns[i] = function() sh.run(sleeper(d .. "/pid" .. i)) end
    end
    fns[4] = function()
      for i = 1, 3 do wait_for(d .. "/pid" .. i) end
      error({ kind = "boom", message = "step four failed" })
    end
    local ok, err = pcall(task.parallel, fns)
    assert_false(ok)
    assert_eq(err.kind, "boom")
    for i = 1, 3 do
      local pid = read(d .. "/pid" .. i):match("%d+")
      assert_true(process_gone(pid), "sleep " .. pid .. " survived")
    end
    assert_nothing_left()
  end)

  test("a string error keeps its position", function()
    local ok, err = pcall(task.parallel, { function() error("plain failure") end })
    assert_false(ok)
    assert_match(err, "task_test%.lua:%d+: plain failure")
  end)

  test("settle = true returns every result and every error, in order", function()
    local r = task.parallel({
      function() return "a" end,
      function() error({ kind = "x", message = "second" }) end,
      function() task.sleep(0.01) return "c" end,
    }, { settle = true })
    assert_eq(r[1], { ok = true, value = "a" })
    assert_false(r[2].ok)
    assert_eq(r[2].error.kind, "x")
    assert_eq(r[3], { ok = true, value = "c" })
  end)

  test("nested parallels, and a waiting call where a yield is impossible", function()
    local r = task.parallel {
      function()
        return task.parallel { function() task.sleep(0.01) return 1 end, function() return 2 end }
      end,
      function()
        local t = { 3, 1, 2 }
        -- the comparator cannot yield: the sleep runs the loop in place
        table.sort(t, function(a, b) task.sleep(0) return a < b end)
        return t
      end,
    }
    assert_eq(r, { { 1, 2 }, { 1, 2, 3 } })
  end)

  test("misuse raises, naming the problem", function()
    assert_error(function() task.parallel("x") end, "fns must be a list of functions")
    assert_error(function() task.parallel({ 1 }) end, "fns%[1%] must be a function, got number")
    assert_error(function() task.parallel({ print }, { limit = 0 }) end, "limit must be a positive integer")
    assert_error(function() task.parallel({ print }, { limt = 2 }) end, "unknown option 'limt'")
  end)

  test("a task cancelled before it ran leaves nothing queued behind", function()
    local t = task.spawn(function() error("never runs") end)
    assert_eq(loop.stats().ready, 1)
    assert_true(t:cancel())
    assert_eq(t:status(), "cancelled")
    assert_eq(loop.stats().ready, 0)
    t = nil
    collectgarbage()
    collectgarbage()
    -- the queue kept pointing at the collected task, and the next spawn wrote
    -- into its freed memory
    assert_eq(task.spawn(function() return 42 end):wait(), 42)
    assert_nothing_left()
  end)

  test("spawn refuses a non-function, naming task.spawn at the caller's line", function()
    local msg = assert_error(function() task.spawn(5) end)
    assert_match(msg, "^[^\n]*task_test%.lua:%d+: task%.spawn: fn must be a function, got number$")
    assert_nil(msg:find("_loop", 1, true))
  end)
end)

describe("spawn", function()
  test("wait returns the results; the task runs when someone waits", function()
    local log = {}
    local t = task.spawn(function(a, b)
      log[#log + 1] = "started"
      task.sleep(0.01)
      return a + b, "x"
    end, 1, 2)
    log[#log + 1] = "spawned"
    local s, x = t:wait()
    assert_eq({ s, x }, { 3, "x" })
    assert_eq(log, { "spawned", "started" })
    assert_eq(t:status(), "done")
    assert_eq({ t:wait() }, { 3, "x" }) -- again: the same results
  end)

  test("wait raises the task's error", function()
    local t = task.spawn(function() error({ kind = "nope", message = "no" }) end)
    local ok, err = pcall(t.wait, t)
    assert_false(ok)
    assert_eq(err.kind, "nope")
    assert_eq(t:status(), "failed")
  end)

  test("cancel stops the task, kills its process group and says it was running", function()
    local d = tmpdir()
    local t = task.spawn(function()
      -- a background child in the same group, and a command that ignores TERM
      sh.run(sleeper(d .. "/pid", 'sleep 100 & echo $! > "$0.bg"; trap "" TERM; '))
    end)
    task.sleep(0) -- let it start
    wait_for(d .. "/pid")
    local pid, bg = read(d .. "/pid"):match("%d+"), read(d .. "/pid.bg"):match("%d+")
    assert_true(t:cancel())
    assert_eq(t:status(), "cancelled")
    assert_true(process_gone(pid), "the command survived")
    assert_true(process_gone(bg), "its background child survived")
    local ok, err = pcall(t.wait, t)
    assert_false(ok)
    assert_eq(err.kind, "cancelled")
    assert_false(t:cancel()) -- already over
    assert_nothing_left()
  end)

  test("a cancelled task unwinds: pcall sees 'cancelled', <close> runs, later waits raise", function()
    local seen = {}
    local t = task.spawn(function()
      local guard <close> = setmetatable({}, { __close = function() seen[#seen + 1] = "closed" end })
      local ok, err = pcall(task.sleep, 100)
      seen[#seen + 1] = err.kind
      ok, err = pcall(task.sleep, 1)
      seen[#seen + 1] = err.kind
      return "finished anyway"
    end)
    task.sleep(0)
    t:cancel()
    assert_eq(seen, { "cancelled", "cancelled", "closed" })
    assert_eq(t:status(), "cancelled")
  end)

  test("cancelling a task cancels what it spawned", function()
    local d = tmpdir()
    local parent = task.spawn(function()
      task.parallel { function() sh.run(sleeper(d .. "/a")) end, function() sh.run(sleeper(d .. "/b")) end }
    end)
    task.sleep(0)
    wait_for(d .. "/a")
    wait_for(d .. "/b")
    parent:cancel()
    assert_true(process_gone(read(d .. "/a"):match("%d+")))
    assert_true(process_gone(read(d .. "/b"):match("%d+")))
    assert_nothing_left()
  end)

  test("a plain coroutine.yield inside a task gives way to the others", function()
    local order = {}
    local a = task.spawn(function()
      for i = 1, 3 do order[#order + 1] = "a" .. i coroutine.yield() end
    end)
    local b = task.spawn(function()
      for i = 1, 3 do order[#order + 1] = "b" .. i coroutine.yield() end
    end)
    a:wait()
    b:wait()
    assert_eq(order, { "a1", "b1", "a2", "b2", "a3", "b3" })
  end)

  test("user coroutines inside a task keep working", function()
    local r = task.parallel { function()
      local gen = coroutine.wrap(function()
        for i = 1, 3 do
          task.sleep(0) -- not the task's coroutine: runs the loop in place
          coroutine.yield(i)
        end
      end)
      return gen() + gen() + gen()
    end }
    assert_eq(r, { 6 })
  end)

  test("waiting for oneself is refused, waiting on nothing is a deadlock error", function()
    local t
    t = task.spawn(function() return pcall(t.wait, t) end)
    local ok, err = t:wait()
    assert_false(ok)
    assert_match(err, "cannot wait for itself")
    local a, b
    a = task.spawn(function() return b:wait() end)
    b = task.spawn(function() return a:wait() end)
    local ok2, err2 = pcall(a.wait, a)
    assert_false(ok2)
    assert_eq(err2.kind, "deadlock")
    a:cancel()
    b:cancel()
    assert_nothing_left()
  end)
end)

describe("sleep and with_timeout", function()
  test("sleep blocks outside a task and yields inside one", function()
    task.sleep(0.01)
    local order = {}
    task.parallel {
      function() task.sleep(0.05) order[#order + 1] = "slow" end,
      function() task.sleep(0.01) order[#order + 1] = "fast" end,
    }
    assert_eq(order, { "fast", "slow" })
  end)

  test("sleep and with_timeout refuse anything but a non-negative number of seconds", function()
    local function raises(fn, message)
      local msg = assert_error(fn)
      assert_match(msg, "^[^\n]*task_test%.lua:%d+: ")
      assert_eq((msg:gsub("^.-task_test%.lua:%d+: ", "")), message)
    end
    raises(function() task.sleep(-1) end, "task.sleep: seconds must be a non-negative number, got -1")
    raises(function() task.sleep("1") end, "task.sleep: seconds must be a non-negative number, got string")
    raises(function() task.sleep("x") end, "task.sleep: seconds must be a non-negative number, got string")
    raises(function() task.sleep() end, "task.sleep: seconds must be a non-negative number, got no value")
    assert_error(function() task.sleep(0 / 0) end, "^[^\n]*task_test%.lua:%d+: task%.sleep: seconds must be a non%-negative number, got %-?nan$")
    raises(function() task.with_timeout("1", print) end, "task.with_timeout: seconds must be a non-negative number, got string")
  end)

  test("with_timeout returns the function's results in time", function()
    assert_eq({ task.with_timeout(5, function(a) task.sleep(0.01) return a, 2 end, 1) }, { 1, 2 })
  end)

  test("with_timeout raises 'timeout' and leaves no process behind", function()
    local d = tmpdir()
    local ok, err = pcall(task.with_timeout, 2, function()
      local t = task.spawn(function() sh.run(sleeper(d .. "/pid")) end)
      wait_for(d .. "/pid")
      t:wait() -- cancelled with us when the time is up
    end)
    assert_false(ok)
    assert_eq(err.kind, "timeout")
    assert_match(tostring(err), "timed out after 2s")
    assert_true(process_gone(read(d .. "/pid"):match("%d+")))
    assert_nothing_left()
  end)

  test("with_timeout passes the function's error through", function()
    local ok, err = pcall(task.with_timeout, 5, function() error({ kind = "inner", message = "m" }) end)
    assert_false(ok)
    assert_eq(err.kind, "inner")
  end)
end)

describe("in a recipe", function()
  test("a failing step's tasks are cancelled and their processes killed", function()
    local d = tmpdir()
    local f = support.recipe(d, "r.lua", string.format([[
local task = require "relish.task"
local sh = require "relish.sh"
return recipe "tasks" {
  step "spawn and fail" { run = function(ctx)
    task.spawn(function() sh.run { readonly = true, argv = { "sh", "-c", 'echo $$ > %s/pid; exec sleep 100' } } end)
    for _ = 1, 500 do -- until the pid is written, not just the file made
      local f = io.open(%q .. "/pid") local s = f and f:read("a") if f then f:close() end
      if s and s:match("\n$") then break end
      task.sleep(0.02)
    end
    error("failing with a task still running")
  end },
}
]], d, d))
    local r = support.relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, "failing with a task still running")
    assert_true(process_gone(read(d .. "/pid"):match("%d+")), "the task's command survived the run")
  end)

  test("a step's timeout stops its parallel waits", function()
    local d = tmpdir()
    local f = support.recipe(d, "r.lua", string.format([[
local task = require "relish.task"
local sh = require "relish.sh"
return recipe "tasks" {
  step "slow" { timeout = "3s", run = function(ctx)
    task.parallel {
      function() sh.run { readonly = true, argv = { "sh", "-c", 'echo $$ > %s/pid; exec sleep 100' } } end,
      function() task.sleep(100) end,
    }
  end },
}
]], d))
    local r = support.relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, 'step "slow": timed out after the step')
    assert_true(process_gone(read(d .. "/pid"):match("%d+")))
  end)

  test("SIGINT during parallel commands: exit 130, every process gone", function()
    local d = tmpdir()
    write(d .. "/script.lua", string.format([[
local task = require "relish.task"
local sh = require "relish.sh"
local fns = {}
for i = 1, 3 do
  fns[i] = function()
    sh.run { readonly = true, argv = { "sh", "-c", 'echo $$ > %s/pid.' .. i .. '; exec sleep 100' } }
  end
end
fns[4] = function()
  for i = 1, 3 do -- until each pid is written, not just its file made
    while true do
      local f = io.open(%q .. "/pid." .. i)
      local s = f and f:read("a")
      if f then f:close() end
      if s and s:match("\n$") then break end
      task.sleep(0.02)
    end
  end
  io.open(%q .. "/ready", "w"):close()
  task.sleep(100)
end
task.parallel(fns)
]], d, d, d))
    local r = support.signal_after({ "lua", d .. "/script.lua" }, d .. "/ready", "INT")
    assert_match(r.stdout, "code=130")
    for i = 1, 3 do
      local pid = read(d .. "/pid." .. i):match("%d+")
      assert_true(process_gone(pid), "command " .. i .. " survived the interrupt")
    end
  end)
end)

describe("tickers (loop.every)", function()
  test("called while code waits, not a task: a reset leaves them, stop ends them", function()
    local loop = require "relish._loop"
    local n = 0
    local k = loop.every(0.01, function() n = n + 1 end)
    loop.sleep(0.2)
    assert_true(n > 0, "called during a sleep")
    assert_eq(loop.stats().tasks, 0)
    loop.reset()
    local before = n
    sh.run { readonly = true, argv = { "sleep", "0.2" } }
    assert_true(n > before, "still called after a reset, while a command runs")
    k:stop()
    local stopped = n
    loop.sleep(0.1)
    assert_eq(n, stopped)
    assert_error(function() loop.every(0, function() end) end, "seconds must be positive")
  end)
end)
