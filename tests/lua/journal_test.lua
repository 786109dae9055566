-- The journal's storage interface, called directly: a run's life cycle,
-- actions and their marks, crash detection, leases, transactions, and the
-- migration of a version-1 journal. (That no SQL is written outside
-- stdlib/relish/journal.lua is checked by grep at review, not here.)
local J = require "relish.journal"
local native = require "relish._journal"
local host = require "relish._host"
local json = require "relish.json"
local sh = require "relish.sh"

-- fn must raise; the error's message (structured or not) matches pattern
local function raises(fn, pattern)
  local ok, e = pcall(fn)
  assert_false(ok, "expected an error")
  assert_match(type(e) == "table" and tostring(e.message) or tostring(e), pattern)
  return e
end

local function open(d) return J.open("sqlite:" .. d .. "/journal.db") end

-- the pid of a process that has exited and been reaped
local function dead_pid()
  local r = sh.run { argv = { "sh", "-c", "echo $$" } }
  local pid = math.tointeger(tonumber(r.stdout:match("%d+")))
  assert_false(host.pid_alive(pid), "pid " .. pid .. " should be gone")
  return pid
end

local function new_run(j, id, extra)
  local run = { id = id, recipe = "r", file = "/x/r.lua", recipe_hash = "abc", params = '{"v":"1"}',
    dry_run = false, lock_name = nil }
  for k, v in pairs(extra or {}) do run[k] = v end
  j:create_run(run, { "build", "ship" })
end

describe("runs and steps", function()
  test("a run's life cycle, kept across reopening", function()
    local d = tmpdir()
    local j = open(d)
    new_run(j, "20260101-000000-aaaa0001")
    local r = j:find_run("20260101-000000-aaaa0001")
    assert_eq(r.status, "running")
    assert_eq(r.dry_run, false)
    assert_eq(r.pid, host.getpid())
    assert_eq(r.host, host.hostname())
    assert_eq(r.params, '{"v":"1"}')
    assert_eq(r.state, "{}")
    local steps = j:steps(r.id)
    assert_eq(#steps, 2)
    assert_eq({ steps[1].idx, steps[1].name, steps[1].status, steps[1].attempts }, { 1, "build", "pending", 0 })
    assert_eq(steps[2].name, "ship")

    j:set_step(r.id, 1, { status = "running", started_at = J.now_iso(), error = "earlier" })
    j:step_attempt(r.id, 1, 2)
    j:set_step(r.id, 1, { status = "done", finished_at = J.now_iso(), error = json.null })
    j:set_run_state(r.id, '{"n":1}')
    j:event(r.id, "log", "hello")
    j:event(r.id, "note", "by hand", "alice")
    j:set_step(r.id, 2, { status = "failed", error = "boom" })
    j:finish_run(r.id, "stopped", 1, "step \"ship\": boom")
    j:close()

    j = open(d)
    r = j:find_run("20260101-000000")
    assert_eq({ r.status, r.exit_code, r.error, r.state }, { "stopped", 1, 'step "ship": boom', '{"n":1}' })
    assert_match(r.finished_at, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%dZ$")
    steps = j:steps(r.id)
    assert_eq({ steps[1].status, steps[1].attempts, steps[1].error }, { "done", 2, nil })
    assert_eq({ steps[2].status, steps[2].error }, { "failed", "boom" })
    local ev = j:events(r.id)
    assert_eq({ ev[1].type, ev[1].text, ev[1].actor }, { "log", "hello", J.actor() })
    assert_eq({ ev[2].type, ev[2].text, ev[2].actor }, { "note", "by hand", "alice" })

    -- resume: running again in this process, end cleared
    j:resume_run(r.id)
    r = j:find_run(r.id)
    assert_eq({ r.status, r.exit_code, r.finished_at }, { "running", nil, nil })
    j:finish_run(r.id, "failed", 1, nil)
    local finished = j:find_run(r.id).finished_at
    -- a later rollback keeps the time the run ended
    j:set_run_status(r.id, "rolled_back")
    r = j:find_run(r.id)
    assert_eq({ r.status, r.finished_at }, { "rolled_back", finished })
    j:close()
  end)

  test("find_run: last skips dry-runs, prefixes must be unique, unknown ids are usage errors", function()
    local j = open(tmpdir())
    new_run(j, "20260101-000000-aaaa0001")
    new_run(j, "20260101-000000-aaaa0002")
    new_run(j, "20260101-000000-bbbb0003", { dry_run = true, recipe = "other" })
    assert_eq(j:find_run("last").id, "20260101-000000-aaaa0002")
    assert_eq(j:find_run("20260101-000000-b").dry_run, true)
    local e = raises(function() j:find_run("20260101-000000-aaaa") end, "ambiguous")
    assert_eq(e.kind, "usage")
    e = raises(function() j:find_run("nope") end, "no run 'nope'")
    assert_eq(e.kind, "usage")
    -- history: newest first, by recipe, limited
    local ids = {}
    for _, r in ipairs(j:list_runs {}) do ids[#ids + 1] = r.id end
    assert_eq(ids, { "20260101-000000-bbbb0003", "20260101-000000-aaaa0002", "20260101-000000-aaaa0001" })
    local rs = j:list_runs { recipe = "r", limit = 1 }
    assert_eq(#rs, 1)
    assert_eq(rs[1].id, "20260101-000000-aaaa0002")
    assert_eq(#j:list_runs { recipe = "none" }, 0)
    j:close()
  end)

  test("find_run: any unique part of an id, exact first, never a pattern", function()
    local j = open(tmpdir())
    new_run(j, "20260101-000000-851a3f07")
    new_run(j, "20260101-000001-0c2e851a", { recipe = "deploy" })
    new_run(j, "20260101-000002-77aa1234")
    new_run(j, "77aa")
    -- the random suffix, or a part of it
    assert_eq(j:find_run("3f07").id, "20260101-000000-851a3f07")
    assert_eq(j:find_run("0c2e").id, "20260101-000001-0c2e851a")
    -- an exact id wins over the runs it is a part of
    assert_eq(j:find_run("77aa").id, "77aa")
    -- ambiguous: the candidates, with recipe and start, exit 2
    local e = raises(function() j:find_run("851a") end, "run id '851a' is ambiguous")
    assert_eq({ e.kind, e.exit }, { "usage", 2 })
    assert_match(e.message, "20260101%-000000%-851a3f07  r  started 20")
    assert_match(e.message, "20260101%-000001%-0c2e851a  deploy  started 20")
    -- '_' and '%' are text, not wildcards
    raises(function() j:find_run("_") end, "no run '_'")
    raises(function() j:find_run("%") end, "no run '%%'")
    raises(function() j:find_run("0000_0") end, "no run '0000_0'")
    e = raises(function() j:find_run("") end, "empty")
    assert_eq(e.kind, "usage")
    -- at most 5 candidates are named
    for i = 1, 7 do new_run(j, string.format("20260102-000000-dddd000%d", i)) end
    e = raises(function() j:find_run("dddd") end, "ambiguous")
    local n = 0
    for _ in e.message:gmatch("dddd000") do n = n + 1 end
    assert_eq(n, 5)
    assert_match(e.message, "and more")
    assert_eq(J.short_id("20260101-000000-851a3f07"), "851a3f07")
    assert_eq(J.short_id("r1"), "r1")
    j:close()
  end)

  test("a run's outcome stays when a rollback changes its status; rollback attempts are kept", function()
    local j = open(tmpdir())
    new_run(j, "r1")
    j:action_begin("r1", 1, 1, { kind = "fs.write", target = "/a", describe = "write /a", undo = '{"path":"/a"}' },
      "pending", true)
    j:action_end("r1", 1, "done", nil, nil)
    j:finish_run("r1", "rollback_failed", 3, "step \"ship\": boom")
    local a1 = j:rollback_begin("r1", { reason = "step \"ship\": boom" })
    j:action_begin("r1", -2, 2, { kind = "http.delete", target = "u", describe = "DELETE u" }, "pending", true)
    j:action_end("r1", 2, "done", nil, nil)
    j:rollback_end(a1, "incomplete", { "undo of step \"ship\": token missing" }, 1)
    local a2 = j:rollback_begin("r1", { reason = "requested", requested = true })
    j:rollback_end(a2, "complete", {}, 2)
    j:set_run_status("r1", "rolled_back")
    local r = j:find_run("r1")
    assert_eq({ r.status, r.outcome, r.exit_code }, { "rolled_back", "rollback_failed", 3 })
    local rbs = j:rollbacks("r1")
    assert_eq(#rbs, 2)
    assert_eq({ rbs[1].status, rbs[1].requested, rbs[1].first_seq, rbs[1].undone, rbs[1].left },
      { "incomplete", false, 2, 1, { "undo of step \"ship\": token missing" } })
    assert_eq({ rbs[2].status, rbs[2].requested, rbs[2].first_seq, rbs[2].left }, { "complete", true, 3, {} })
    assert_eq(rbs[2].actor, J.actor())
    assert_match(rbs[2].finished_at, "Z$")
    -- each attempt is in the timeline too
    local texts = {}
    for _, e in ipairs(j:events("r1")) do texts[#texts + 1] = e.type .. ": " .. e.text end
    assert_eq(texts, { "rollback: rollback started: step \"ship\": boom",
      "rollback: rollback incomplete: left to do by hand: undo of step \"ship\": token missing",
      "rollback: rollback started: requested", "rollback: rollback complete" })
    -- history's count of changes: actions of steps only
    assert_eq(j:list_runs {}[1].changed, 1)
    j:close()
  end)

  test("no runs: last is a usage error naming the journal", function()
    local d = tmpdir()
    local j = open(d)
    raises(function() j:find_run("last") end, "no runs in the journal " .. d:gsub("%p", "%%%0"))
    j:close()
  end)

  test("set_step refuses a field the journal does not keep", function()
    local j = open(tmpdir())
    new_run(j, "r1")
    raises(function() j:set_step("r1", 1, { status = "done", colour = "red" }) end, "unknown field 'colour'")
    assert_eq(j:steps("r1")[1].status, "pending")
    j:close()
  end)

  test("tx: all or nothing, and a nested tx joins the outer one", function()
    local j = open(tmpdir())
    raises(function()
      j:tx(function()
        new_run(j, "r1") -- create_run's own tx joins this one
        j:event("r1", "log", "inside")
        error("stop")
      end)
    end, "stop")
    raises(function() j:find_run("r1") end, "no run 'r1'")
    assert_eq(#j:events("r1"), 0)
    assert_eq({ j:tx(function(a, b) return a + b, "x" end, 1, 2) }, { 3, "x" })
    -- the journal is usable after a failed tx
    new_run(j, "r2")
    assert_eq(j:find_run("r2").id, "r2")
    j:close()
  end)
end)

describe("actions", function()
  local function act(kind, target, undo, provider)
    return { kind = kind, target = target, describe = kind .. " " .. target, undo = undo, provider = provider,
      fingerprint = "fp:" .. target, detail = "d" }
  end

  test("begin, end, marks after an undo, and what a rollback may undo", function()
    local d = tmpdir()
    local j = open(d)
    new_run(j, "r1")
    assert_eq(j:max_seq("r1"), 0)
    j:action_begin("r1", 1, 1, act("fs.write", "/a", '{"path":"/a"}', "relish.fs"), "pending", true)
    j:action_end("r1", 1, "done", '{"ok":true}', nil)
    j:action_begin("r1", 2, 2, act("http.post", "https://x", nil, "relish.http"), "pending", true)
    j:action_end("r1", 2, "failed", nil, "refused")
    j:action_begin("r1", 2, 3, act("fs.mkdir", "/b", '{"path":"/b"}', "relish.fs"), "pending", true)
    -- an action of a rollback (negative step) is never undone itself
    j:action_begin("r1", -2, 4, act("fs.remove", "/c", '{"path":"/c"}', "relish.fs"), "pending", true)
    j:action_end("r1", 4, "done", nil, nil)
    assert_eq(j:max_seq("r1"), 4)
    j:close()

    j = open(d)
    local all = j:actions("r1")
    assert_eq(#all, 4)
    local a1 = all[1]
    assert_eq({ a1.seq, a1.step, a1.kind, a1.target, a1.describe, a1.detail, a1.fingerprint },
      { 1, 1, "fs.write", "/a", "fs.write /a", "d", "fp:/a" })
    assert_eq({ a1.status, a1.result, a1.provider, a1.irreversible }, { "done", '{"ok":true}', "relish.fs", false })
    assert_eq(json.decode(a1.undo), { path = "/a" })
    assert_match(a1.started_at, "Z$")
    assert_match(a1.finished_at, "Z$")
    assert_eq({ all[2].status, all[2].error, all[2].irreversible, all[2].undo }, { "failed", "refused", true, nil })
    assert_eq({ all[3].status, all[3].finished_at }, { "pending", nil })

    local seqs = {}
    for _, a in ipairs(j:actions("r1", { undoable = true })) do seqs[#seqs + 1] = a.seq end
    assert_eq(seqs, { 3, 2, 1 })

    -- an undo's error is kept apart from the action's own, and stays as history
    j:mark_action("r1", 2, "undo_failed", "disk full")
    local a2 = j:actions("r1")[2]
    assert_eq({ a2.status, a2.error, a2.undo_error, a2.undone_at }, { "undo_failed", "refused", "disk full", nil })
    j:mark_action("r1", 2, "undone", nil)
    a2 = j:actions("r1")[2]
    assert_eq({ a2.status, a2.error, a2.undo_error }, { "undone", "refused", "disk full" })
    assert_match(a2.undone_at, "Z$")

    -- a step's own undo covers all its actions
    j:step_undone("r1", 2)
    all = j:actions("r1")
    assert_eq({ all[2].status, all[3].status, all[4].status }, { "undone", "undone", "done" })
    assert_eq(j:steps("r1")[2].status, "undone")
    assert_match(j:steps("r1")[2].undone_at, "Z$")
    assert_eq(j:steps("r1")[1].status, "pending")
    -- a step's failed undo keeps the step's own error
    j:set_step("r1", 1, { status = "failed", error = "boom" })
    j:step_undo_failed("r1", 1, "token missing")
    local s1 = j:steps("r1")[1]
    assert_eq({ s1.status, s1.error, s1.undo_error, s1.undone_at }, { "undo_failed", "boom", "token missing", nil })
    j:close()
  end)

  test("a second action with the same seq is refused", function()
    local j = open(tmpdir())
    new_run(j, "r1")
    j:action_begin("r1", 1, 1, act("fs.write", "/a"), "pending", false)
    local e = raises(function() j:action_begin("r1", 1, 1, act("fs.write", "/a"), "pending", false) end,
      "UNIQUE")
    assert_eq(e.kind, "journal")
    j:close()
  end)
end)

describe("crash detection", function()
  test("running with its process gone from this host is crashed; elsewhere it is trusted", function()
    local j = open(tmpdir())
    new_run(j, "dead", { pid = dead_pid() })
    new_run(j, "alive")
    new_run(j, "remote", { host = "elsewhere.invalid", pid = dead_pid() })
    new_run(j, "ended", { pid = dead_pid() })
    j:finish_run("ended", "succeeded", 0, nil)
    local function shown(id)
      local r = j:find_run(id)
      return { J.crashed(r), J.shown_status(r) }
    end
    assert_eq(shown("dead"), { true, "crashed" })
    assert_eq(shown("alive"), { false, "running" })
    assert_eq(shown("remote"), { false, "running" })
    assert_eq(shown("ended"), { false, "succeeded" })
    -- history shows the same
    local by = {}
    for _, r in ipairs(j:list_runs {}) do by[r.id] = J.shown_status(r) end
    assert_eq(by, { dead = "crashed", alive = "running", remote = "running", ended = "succeeded" })
    j:close()
  end)
end)

describe("locks", function()
  test("a held lease refuses others, its holder reclaims it, a stale one is taken over and logged", function()
    local j = open(tmpdir())
    assert_nil(j:lock_acquire("deploy", "r1", { ttl = 60 }))
    local l = j:lock_list()
    assert_eq(#l, 1)
    assert_eq({ l[1].name, l[1].run_id, l[1].pid, l[1].host, l[1].user }, { "deploy", "r1", host.getpid(), host.hostname(), J.actor() })
    assert_true(l[1].expires_at > host.time() + 50)
    assert_false(J.lease_stale(l[1]))

    local e = raises(function() j:lock_acquire("deploy", "r2", { ttl = 60 }) end,
      "lock 'deploy' is held by run r1 %(user ")
    assert_eq({ e.kind, e.exit }, { "locked", 4 })
    -- the same run reclaims its lease (resume, rollback) only when asked to
    raises(function() j:lock_acquire("deploy", "r1", { ttl = 60 }) end, "held by run r1")
    assert_nil(j:lock_acquire("deploy", "r1", { ttl = 60, reclaim = true }))

    -- expired, but its process (this one) is alive on this host: still held
    assert_true(j:lock_renew("deploy", "r1", -1))
    assert_true(j:lock_list()[1].expires_at < host.time())
    assert_false(J.lease_stale(j:lock_list()[1]))
    raises(function() j:lock_acquire("deploy", "r2", { ttl = 60 }) end, "held by run r1")
    -- expired on another host, where nothing can be told
    j.db:exec("UPDATE locks SET host = 'elsewhere' WHERE name = 'deploy'")
    assert_eq(select(2, J.lease_stale(j:lock_list()[1])), "its lease expired")
    local took = j:lock_acquire("deploy", "r2", { ttl = 60 })
    assert_match(took, "^took over stale lock 'deploy' from run r1 .*: its lease expired$")
    assert_eq(j:lock_list()[1].run_id, "r2")
    local ev = j:events("r2")
    assert_eq({ #ev, ev[1].type, ev[1].text }, { 1, "lock", took })

    -- its process gone from this host (set by hand: a lease records this process)
    local pid = dead_pid()
    j.db:exec("UPDATE locks SET pid = ? WHERE name = 'deploy'", pid)
    took = j:lock_acquire("deploy", "r3", { ttl = 60 })
    assert_match(took, "from run r2 .*: its process " .. pid .. " is gone$")

    -- a live pid that is another process now (its start time differs)
    j.db:exec("UPDATE locks SET pid_start = '1' WHERE name = 'deploy'")
    assert_eq(select(2, J.lease_stale(j:lock_list()[1])),
      "its process " .. host.getpid() .. " is gone (the pid is another process's now)")
    j.db:exec("UPDATE locks SET pid_start = ? WHERE name = 'deploy'", J.proc_start(host.getpid()))
    assert_false(J.lease_stale(j:lock_list()[1]))

    -- renewing or releasing someone else's lease changes nothing; renewing
    -- tells whether this process still holds it
    j:lock_release("deploy", "r2")
    assert_false(j:lock_renew("deploy", "r2", -100))
    assert_eq(j:lock_held({ "deploy" }, "r3"), nil)
    assert_eq(j:lock_held({ "deploy", "other" }, "r3"), "other")
    assert_eq(j:lock_held({ "deploy" }, "r2"), "deploy")
    j.db:exec("UPDATE locks SET pid = ? WHERE name = 'deploy'", pid)
    assert_false(j:lock_renew("deploy", "r3", 60), "a lease of another process is not renewed")
    j:lock_release("deploy", "r3", true)
    assert_eq(#j:lock_list(), 1, "nor released when only this process's is")
    j.db:exec("UPDATE locks SET pid = ? WHERE name = 'deploy'", host.getpid())
    l = j:lock_list()
    assert_eq({ #l, l[1].run_id }, { 1, "r3" })
    assert_false(J.lease_stale(l[1]))
    j:lock_release("deploy", "r3")
    assert_eq(#j:lock_list(), 0)
    j:close()
  end)

  test("break removes a lease whoever holds it, and logs it on the holder's run", function()
    local j = open(tmpdir())
    j:lock_acquire("b", "r1", { ttl = 60 })
    j:lock_acquire("a", "r2", { ttl = 60 })
    local names = {}
    for _, l in ipairs(j:lock_list()) do names[#names + 1] = l.name end
    assert_eq(names, { "a", "b" })
    local was = j:lock_break("b")
    assert_eq(was.run_id, "r1")
    assert_nil(j:lock_break("b"))
    assert_eq(#j:lock_list(), 1)
    assert_match(j:events("r1")[1].text, "^lock 'b' broken by .* %(was held by run r1 ")
    j:close()
  end)

  test("a run's lease: check raises lock_lost once broken or taken over, release lets go of its own only", function()
    local lock = require "relish.lock"
    local j = open(tmpdir())
    local lease = lock.hold(j, { "run:r1", "deploy" }, "r1")
    assert_eq(#j:lock_list(), 2)
    lease:check()
    assert_true(lease:renew())
    j:lock_break("deploy")
    local e = raises(function() lease:check() end, "lock 'deploy' was broken %(relish lock break%) while this run held it")
    assert_eq(e.kind, "lock_lost")
    assert_false(lease:renew())
    -- taken over: named
    local l2 = lock.hold(j, { "x" }, "r2")
    j.db:exec("UPDATE locks SET run_id = 'r3' WHERE name = 'x'")
    raises(function() l2:check() end, "lock 'x' was taken over by run r3 ")
    l2:release()
    assert_eq(j:lock_list()[2].run_id, "r3", "another's lease is not released")
    lease:release()
    local names = {}
    for _, l in ipairs(j:lock_list()) do names[#names + 1] = l.name end
    assert_eq(names, { "x" })
    -- a name already held: the ones taken before are let go
    raises(function() lock.hold(j, { "run:r4", "x" }, "r4") end, "lock 'x' is held by run r3")
    assert_eq(#j:lock_list(), 1)
    j:close()
  end)

  test("the relish.lock facade takes leases with its TTL", function()
    local lock = require "relish.lock"
    local j = open(tmpdir())
    assert_nil(lock.acquire(j, "x", "r1"))
    local l = lock.list(j)[1]
    assert_near(l.expires_at, host.time() + lock.TTL, 5)
    assert_eq(lock.stale(l), false)
    assert_match(lock.holder_text(l), "^run r1 %(user ")
    j:close()
  end)
end)

describe("schema", function()
  -- the schema as relish wrote it at version 1, before actions had a provider
  local V1 = [[
  CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    recipe TEXT NOT NULL,
    file TEXT NOT NULL,
    recipe_hash TEXT,
    params TEXT NOT NULL,          -- JSON, secrets left out
    dry_run INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,          -- running|succeeded|failed|rolled_back|rollback_failed|stopped|interrupted
    exit_code INTEGER,
    user TEXT, host TEXT, pid INTEGER,
    lock_name TEXT,
    state TEXT NOT NULL DEFAULT '{}',  -- ctx.state, JSON, saved after each step
    error TEXT,
    started_at TEXT NOT NULL,
    finished_at TEXT
  );
  CREATE INDEX runs_recipe ON runs (recipe, started_at);
  CREATE TABLE steps (
    run_id TEXT NOT NULL REFERENCES runs (id),
    idx INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,          -- pending|running|done|failed|skipped|undone|undo_failed
    attempts INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    started_at TEXT, finished_at TEXT,
    PRIMARY KEY (run_id, idx)
  );
  CREATE TABLE actions (
    run_id TEXT NOT NULL REFERENCES runs (id),
    seq INTEGER NOT NULL,
    step INTEGER NOT NULL,         -- the step's index; negative for actions of a rollback
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    describe TEXT NOT NULL,
    detail TEXT,
    undo TEXT,                     -- JSON undo record; NULL when irreversible
    fingerprint TEXT,
    irreversible INTEGER NOT NULL DEFAULT 0,
    status TEXT NOT NULL,          -- planned|pending|done|failed|undone|undo_failed
    result TEXT, error TEXT,
    started_at TEXT, finished_at TEXT,
    PRIMARY KEY (run_id, seq)
  );
  CREATE TABLE events (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    ts TEXT NOT NULL,
    type TEXT NOT NULL,            -- log|note|lock|rollback|prompt|answer
    actor TEXT,
    text TEXT NOT NULL
  );
  CREATE INDEX events_run ON events (run_id, id);
  CREATE TABLE locks (
    name TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    user TEXT, host TEXT, pid INTEGER,
    acquired_at TEXT NOT NULL,
    expires_at REAL NOT NULL       -- unix time
  );
  ]]

  test("a version-1 journal is migrated on open and keeps its runs", function()
    local d = tmpdir()
    local db = native.open(d .. "/journal.db")
    db:script(V1)
    db:exec("PRAGMA user_version = 1")
    db:exec("INSERT INTO runs (id, recipe, file, params, dry_run, status, user, host, pid, started_at)" ..
      " VALUES ('old', 'r', '/r.lua', '{}', 0, 'failed', 'u', 'h', 1, '2025-01-01T00:00:00.000Z')")
    db:exec("INSERT INTO steps (run_id, idx, name, status) VALUES ('old', 1, 's', 'done')")
    db:exec("INSERT INTO actions (run_id, seq, step, kind, target, describe, undo, status)" ..
      " VALUES ('old', 1, 1, 'fs.write', '/a', 'write /a', '{\"path\":\"/a\"}', 'done')")
    db:close()

    local j = open(d)
    assert_eq(j.db:query("PRAGMA user_version")[1].user_version, J.SCHEMA_VERSION)
    assert_eq(j.db:query("PRAGMA journal_mode")[1].journal_mode, "wal")
    local r = j:find_run("last")
    assert_eq({ r.id, r.status, r.dry_run }, { "old", "failed", false })
    local a = j:actions("old")[1]
    assert_eq({ a.kind, a.status, a.provider, a.irreversible }, { "fs.write", "done", nil, false })
    -- the new column is there for new actions
    j:action_begin("old", -1, 2, { kind = "fs.remove", target = "/a", describe = "remove /a", provider = "relish.fs" },
      "pending", true)
    assert_eq(j:actions("old")[2].provider, "relish.fs")
    j:close()
    -- opening again migrates nothing
    j = open(d)
    assert_eq(#j:actions("old"), 2)
    j:close()
  end)

  test("a journal from a newer relish is refused, untouched", function()
    local d = tmpdir()
    open(d):close()
    local db = native.open(d .. "/journal.db")
    db:exec("PRAGMA user_version = " .. (J.SCHEMA_VERSION + 1))
    db:close()
    local e = raises(function() open(d) end, string.format("schema version %d, newer than this relish %%(%d%%)",
      J.SCHEMA_VERSION + 1, J.SCHEMA_VERSION))
    assert_eq({ e.kind, e.exit }, { "journal", 2 })
  end)

  test("only sqlite state URLs are known", function()
    local e = raises(function() J.open("etcd://127.0.0.1:2379/relish") end, "only sqlite:PATH")
    assert_eq(e.kind, "usage")
  end)
end)

describe("a damaged journal", function()
  local support = require "support"

  local RECIPE = [[
local fs = require "relish.fs"
local task = require "relish.task"
return recipe "d" {
  params = { dir = param.string { required = true }, last = param.boolean { default = false } },
  on_failure = "stop",
  lock = "d",
  step "a" { run = function(ctx) fs.write(ctx.params.dir .. "/a", "a") end },
  step "b" { run = function(ctx)
    fs.write(ctx.params.dir .. "/ready", "")
    for _ = 1, 400 do
      if fs.exists(ctx.params.dir .. "/go") then break end
      task.sleep(0.05)
    end
    if fs.exists(ctx.params.dir .. "/fail") then error("told to stop") end
    if not ctx.params.last then fs.write(ctx.params.dir .. "/b", "b") end
  end },
}
]]

  test("every command gives exit 2 naming the damaged journal, and changes nothing", function()
    local d = tmpdir()
    local state = "sqlite:" .. d .. "/journal.db"
    local f = support.recipe(d, "d.lua", RECIPE)
    support.write(d .. "/go", "")
    support.write(d .. "/fail", "")
    local r = support.relish { "run", f, "-p", "dir=" .. d, "--state", state } -- stopped: resumable
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    r = support.relish { "plan", f, "-p", "dir=" .. d, "-o", d .. "/plan.json", "--state", state }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    os.remove(d .. "/fail")
    assert_eq(support.relish { "plan", f, "-p", "dir=" .. d, "-o", d .. "/plan.json", "--state", state }.code, 0)
    os.remove(d .. "/a")
    -- every page but the first (the schema) overwritten: each table is unreadable
    local db = support.read(d .. "/journal.db")
    assert_nil(io.open(d .. "/journal.db-wal")) -- all of it is in the main file
    support.write(d .. "/journal.db", db:sub(1, 4096) .. ("\x5a\xa5"):rep((#db - 4096) // 2))
    for _, args in ipairs {
      { "run", f, "-p", "dir=" .. d }, { "plan", f, "-p", "dir=" .. d }, { "apply", d .. "/plan.json" },
      { "rollback", "last" }, { "resume", "last" }, { "history" }, { "show", "last" }, { "lock", "list" },
      { "lock", "break", "d" },
    } do
      args[#args + 1] = "--state"
      args[#args + 1] = state
      r = support.relish(args)
      assert_eq(r.code, 2, table.concat(args, " ") .. ": " .. r.stdout .. r.stderr)
      assert_match(r.stderr, "relish: journal " .. (d .. "/journal.db"):gsub("%p", "%%%0") ..
        " is damaged %(database disk image is malformed%): move it away or restore it from a backup")
      assert_nil(support.read(d .. "/a"), table.concat(args, " "))
    end
  end)

  -- Runs the recipe in the background; once step b is waiting, runs the
  -- shell command damage, then lets b go on. Returns the exit code and output.
  local function damage_mid_run(d, damage, extra)
    local f = support.recipe(d, "d.lua", RECIPE)
    local script = string.format("%s run %s -p dir=%s " .. (extra or "") ..
      " --state sqlite:%s/journal.db >%s/out 2>&1 & pid=$!; " ..
      "for i in $(seq 400); do [ -e %s/ready ] && break; sleep 0.05; done; %s; touch %s/go; wait $pid; " ..
      "echo \"code=$?\"; cat %s/out", sh.quote(relish_exe()), sh.quote(f), sh.quote(d), sh.quote(d), sh.quote(d),
      sh.quote(d), damage, sh.quote(d), sh.quote(d))
    local r = sh.run { argv = { "sh", "-c", script }, env = { NO_COLOR = "1" }, timeout = 60 }
    return math.tointeger(tonumber(r.stdout:match("code=(%d+)"))), r.stdout
  end

  test("the write-ahead log deleted under a run: the next effect is refused, exit 3, the run is kept", function()
    local d = tmpdir()
    local code, out = damage_mid_run(d, "rm " .. sh.quote(d .. "/journal.db-wal"))
    assert_eq(code, 3, out)
    assert_match(out, "the journal's write%-ahead log [^\n]*journal%.db%-wal was deleted or replaced")
    assert_nil(support.read(d .. "/b")) -- refused before it happened
    -- what the log held was saved into the journal first: the run is there, and nothing is left to undo
    local h = support.relish { "history", "--output", "json", "--state", "sqlite:" .. d .. "/journal.db" }
    assert_eq(h.code, 0, h.stderr)
    assert_match(h.stdout, '"recipe":"d"')
    local r = support.relish { "rollback", "last", "--state", "sqlite:" .. d .. "/journal.db" }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_nil(support.read(d .. "/a"))
  end)

  test("the journal truncated under a run: the next effect is refused and the run does not succeed", function()
    local d = tmpdir()
    local code, out = damage_mid_run(d, "truncate -s 0 " .. sh.quote(d .. "/journal.db"))
    assert_eq(code, 3, out)
    assert_match(out, "the journal file [^\n]*journal%.db was truncated")
    assert_false(out:find("Succeeded", 1, true) ~= nil, out)
    assert_nil(support.read(d .. "/b"))
    -- after the last effect: every effect happened, but the run's record is lost
    d = tmpdir()
    code, out = damage_mid_run(d, "truncate -s 0 " .. sh.quote(d .. "/journal.db"), "-p last=true")
    assert_eq(code, 3, out)
    assert_match(out, "the journal could not record that run [^\n]* ended %(the journal file [^\n]*was truncated")
    assert_false(out:find("Succeeded", 1, true) ~= nil, out)
  end)
end)
