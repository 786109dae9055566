-- relish.journal: where runs are remembered, behind one storage interface.
-- open(url) picks a backend from the state URL; the engine, locks and the
-- commands call only the methods listed here, never the storage itself.
--
-- A backend is an object with these methods. Records are plain tables; times
-- are UTC text from now_iso() except a lease's expires_at (unix seconds);
-- params, state, undo and result are JSON text; dry_run and irreversible are
-- booleans. Reads return copies the caller may keep.
--   close()                   tx(fn, ...) -> fn's results; all or none of fn's
--                             writes happen (nested calls join the outer one)
--   create_run(run, names)    run = {id, recipe, file, recipe_hash, params,
--                             dry_run, lock_name [, user, host, pid, service,
--                             environment, version, meta]}: status "running"
--                             and one "pending" step per name; service and
--                             environment make the run a deployment; meta
--                             is JSON text (a runbook's severity, owner...)
--   record_commits(run_id, commits)  commits = {{id=, time=unix seconds}}
--                             the run ships (a commit recorded twice is kept
--                             once)
--   ship_commits(run_id)      a deployment ended: when it succeeded, its
--                             commits that no earlier successful deployment
--                             of its service and environment shipped get
--                             their lead time (finish_run calls it; a tool
--                             importing history calls it after each run)
--   dora{since=, until=, recipe=, service=, environment=, window=}  per
--                             service and environment, the counts and
--                             medians `relish dora` reports (see below)
--   find_run(id)              "last" (newest non-dry-run), an exact id, or
--                             a unique part of one (prefix, the random suffix,
--                             any substring); raises a usage error otherwise,
--                             naming up to 5 candidates when ambiguous
--   list_runs{recipe=, limit=}  newest first; each with .changed, how many
--                             actions of its steps done or possibly done
--   set_run_state(id, json)   ctx.state after a step
--   finish_run(id, status, exit_code, error)   the run ended (finished_at
--                             now); status is also kept as .outcome. Raises
--                             {kind="journal", exit=3} instead when the
--                             journal's files were deleted, replaced or
--                             truncated while the run went (the record of
--                             the run may be lost)
--   set_run_status(id, status)  a past run's new status (after a rollback);
--                             .outcome and .exit_code stay the run's own
--   resume_run(id)            running again, in this process
--   steps(run_id)             by index
--   set_step(run_id, idx, fields)  status, error, started_at, finished_at
--                             (json.null or false clears one)
--   step_attempt(run_id, idx, n)
--   step_undone(run_id, idx)  the step and its undoable actions are undone
--                             (undone_at now); the step's error stays
--   step_undo_failed(run_id, idx, error)  its undo failed: .undo_error
--   actions(run_id [, {undoable=true}])  by seq; undoable: the actions of
--                             steps (not of a rollback), newest first
--   max_seq(run_id)           0 when there are none
--   action_begin(run_id, step, seq, action, status, durable)  action = {kind,
--                             provider, target, describe, detail, fingerprint,
--                             undo}; with durable, on disk before it returns
--   action_end(run_id, seq, status, result, error)
--   mark_action(run_id, seq, status, error)   after its undo: error is the
--                             undo's (.undo_error); the action's own stays
--   event(run_id, type, text [, actor [, step]])   events(run_id)   in order;
--                             types: log, note, lock, rollback, gate,
--                             decision, notify, check (a check's finding),
--                             prompt, answer (secrets "***"), skip; actor
--                             $RELISH_ACTOR or the login user, ts UTC
--   rollback_begin(run_id, {reason=, requested=}) -> attempt id; also a
--                             "rollback" event. Actions journaled from then
--                             on (seq >= .first_seq) are the attempt's own
--   rollback_end(attempt, status, left, undone)   "complete"|"incomplete",
--                             the list of what is left to do by hand
--   rollbacks(run_id)         attempts, oldest first; .left decoded
--   reserve()                 keeps room on the journal's disk for a
--                             rollback's own rows (SQLite: JOURNAL.reserve,
--                             RELISH_JOURNAL_RESERVE bytes, 8 MiB by
--                             default); true, or nil and why it cannot
--   release_reserve()         frees it: a rollback calls it before its first
--                             write, so a full disk still takes its rows
--   gate(run_id, id)          a manual gate (ctx.decide) or nil: {id, step,
--                             question, status = asked|paused|promoted|
--                             aborted, asked_at}
--   gate_ask(run_id, {id=, step=, question=})   asked at a terminal ("gate"
--                             event)
--   gate_pause(run_id, {id=, step=, question=})  the run pauses there
--                             ("pause" event)
--   gate_decide(run_id, id, decision, via [, actor]) -> actor: a person's
--                             promote|abort|wait (via terminal|resume|
--                             rollback; actor user@host by default), and a
--                             "decision" event
--   gates(run_id)             in the order asked, each with .decisions
--                             ({decision, actor, via, at}, oldest first)
--   pause_run(id, exit_code, lock_names)  the run stopped at a gate: status
--                             and outcome "paused", not finished; the
--                             leases this process holds of lock_names stay
--                             held for the run with no process and no
--                             expiry (.paused), until resume or rollback
--                             takes them again or lock_break
--   lock_acquire(name, run_id, {ttl=, reclaim=}) -> takeover text or nil;
--                             raises {kind="locked", exit=4} when held; the
--                             lease names this process (host, pid, start)
--   lock_renew(name, run_id, ttl) -> false when this process no longer
--                             holds the lease (broken, taken over): nothing
--                             is renewed then
--   lock_held(names, run_id) -> nil, or the first name this process does
--                             not hold for run_id (one query)
--   lock_release(name, run_id [, mine])  mine: only if this process holds it
--   lock_list()               by name     lock_break(name) -> holder or nil
--   db                        the handle gate.set_run{journal=} writes action
--                             rows through (SQLite: the native relish.Journal,
--                             whose action_begin/action_end are the gate's)
-- encode_params(params) -> JSON text, and decode_params(text) -> params:
-- how runs and plans keep params (the caller has put "***" for secrets).
-- The rules every backend shares live here once: crashed(run) and
-- shown_status(run) (running, but its process is gone from this host), and
-- lease_stale(lock) (its process is gone from this host; a lease of
-- another host: expired; a paused run's lease: never).
local native = require "relish._journal"
local host = require "relish._host"
local json = require "relish.json"
local invalid = require("relish._errors").invalid

local M = {}

-- unix seconds -> 2026-12-03T15:57:02.123Z (UTC, to the millisecond)
function M.iso(t)
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. string.format(".%03dZ", math.floor((t % 1) * 1000))
end

function M.now_iso() return M.iso(host.time()) end

-- Unix seconds of a time written by now_iso(), or nil. Computed from the
-- civil date (days from 1970-01-01), so no local time zone is involved.
function M.iso_seconds(t)
  local y, mo, d, h, mi, sec = (t or ""):match("^(%d+)-(%d+)-(%d+)T(%d+):(%d+):([%d.]+)Z$")
  if not y then return nil end
  y, mo, d = tonumber(y), tonumber(mo), tonumber(d)
  if mo <= 2 then y = y - 1 end
  local era = y // 400
  local yoe = y - era * 400
  local doy = (153 * ((mo + 9) % 12) + 2) // 5 + d - 1
  local days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
  return days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec)
end

-- Seconds from a to b (now_iso() times, to the millisecond), or nil.
function M.duration(a, b)
  local x, y = M.iso_seconds(a), M.iso_seconds(b)
  if not (x and y) then return nil end
  return math.floor((y - x) * 1000 + 0.5) / 1000
end

-- A duration for people: 850ms, 12.3s, 4m05s, 2h03m.
function M.duration_text(s)
  if not s then return "-" end
  if s < 1 then return string.format("%dms", math.floor(s * 1000 + 0.5)) end
  if s < 60 then return string.format("%.1fs", s) end
  s = math.floor(s + 0.5)
  if s < 3600 then return string.format("%dm%02ds", s // 60, s % 60) end
  return string.format("%dh%02dm", s // 3600, s % 3600 // 60)
end

-- Who acts: $RELISH_ACTOR (a shared bastion's on-call names themselves),
-- else the login user.
function M.actor()
  local a = os.getenv("RELISH_ACTOR")
  if a and a ~= "" then return a end
  return os.getenv("USER") or os.getenv("LOGNAME") or host.username()
end

-- Who made a decision at a manual gate: user@host.
function M.actor_at()
  return M.actor() .. "@" .. host.hostname()
end

-- ---- params as runs and plans keep them ---------------------------------------

-- A param's value is bytes (a path from -p need not be UTF-8): a string
-- that is not text is kept as output.json_safe writes it, k with U+FFFD for
-- each bad byte (people read that) and k_b64 with the exact bytes, which
-- output.json_restore gives back.
function M.encode_params(params)
  local output = require "relish.output" -- not at load: output requires this module
  for k, v in pairs(params) do
    if type(v) == "table" then
      for i, item in ipairs(v) do
        if type(item) == "string" and not output.is_text(item) then
          error(string.format("param '%s': item %d is not UTF-8 text", k, i), 2)
        end
      end
    end
  end
  return json.encode(json.object(output.json_safe(params)), { sort_keys = true })
end

-- text is JSON (a run's row) or its decoded table (a plan's params). Raises
-- a parse error for text that is not JSON, a journal error for a value that
-- is not an object.
function M.decode_params(text)
  local output = require "relish.output"
  local t = text
  if type(text) == "string" then t = json.decode(text) end
  if type(t) ~= "table" or getmetatable(t) == getmetatable(json.array {}) then
    error({ kind = "journal", exit = 2, message = "journal: params are not a JSON object" }, 0)
  end
  local restored, err = output.json_restore(t)
  if not restored then error({ kind = "journal", exit = 2, message = "journal: params: " .. err }, 0) end
  return restored
end

-- ---- rules shared by every backend ------------------------------------------

-- A process recorded on this host that no longer exists. On another host
-- nothing can be told: the run or lease is trusted until it expires.
local function gone(h, pid)
  return h == host.hostname() and pid ~= nil and not host.pid_alive(pid)
end

-- A run still marked running whose process is gone crashed: show, history,
-- rollback and resume all treat it so.
function M.crashed(run)
  return run.status == "running" and gone(run.host, run.pid)
end

function M.shown_status(run)
  return M.crashed(run) and "crashed" or run.status
end

function M.holder_text(l)
  if l.paused == 1 or l.paused == true then
    return string.format("paused run %s (waiting at a manual gate; user %s, host %s, since %s; `relish resume %s` " ..
      "promotes, `relish rollback %s` aborts)", l.run_id, l.user or "?", l.host or "?", l.acquired_at, l.run_id,
      l.run_id)
  end
  return string.format("run %s (user %s, host %s, pid %s, since %s)", l.run_id, l.user or "?",
    l.host or "?", tostring(l.pid or "?"), l.acquired_at)
end

-- When a process started (/proc/PID/stat field 22, clock ticks after boot),
-- or nil where that cannot be told. With the pid it names one process: a
-- pid the kernel gave to another process since is not the holder.
function M.proc_start(pid)
  local f = io.open("/proc/" .. tostring(pid) .. "/stat", "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  -- after the command name, which may itself hold spaces and ')'
  local rest = text and text:match("^.*%)%s+(.*)$")
  if not rest then return nil end
  local n = 0
  for field in rest:gmatch("%S+") do
    n = n + 1
    if n == 20 then return field end -- the fields after the name start at 3
  end
end

local self_start
local function my_start()
  self_start = self_start or M.proc_start(host.getpid()) or false
  return self_start or nil
end

-- Whether the process holding a lease is alive on this host: true, false
-- (with why), or nil when it is not on this host and nothing can be told.
local function holder_alive(l)
  if l.host ~= host.hostname() or l.pid == nil then return nil end
  if not host.pid_alive(l.pid) then return false, string.format("its process %d is gone", l.pid) end
  if l.pid_start then
    local now = M.proc_start(l.pid)
    if now and now ~= l.pid_start then
      return false, string.format("its process %d is gone (the pid is another process's now)", l.pid)
    end
  end
  return true
end

-- The lease was taken by this very process.
local function mine(l)
  return l.host == host.hostname() and l.pid == host.getpid() and (l.pid_start == nil or l.pid_start == my_start())
end

-- A lease may be taken over when its process is gone from this host. A
-- holder alive on this host is never taken over, whatever its expiry (a
-- step the loop cannot renew in, pure Lua work, keeps its lock); only a
-- lease of another host, where nothing can be told, is taken over once it
-- expired.
function M.lease_stale(l)
  -- a paused run's lease has no process and never expires
  if l.paused == 1 or l.paused == true then return false end
  local alive, why = holder_alive(l)
  if alive then return false end
  if alive == false then return true, why end
  if l.expires_at < host.time() then return true, "its lease expired" end
  return false
end

-- The holder is a process alive on this host (lock break warns of it).
function M.lease_live_here(l) return holder_alive(l) == true end

local function locked_error(name, l)
  error({ kind = "locked", exit = 4,
    message = string.format("lock '%s' is held by %s", name, M.holder_text(l)) }, 0)
end

-- ---- the SQLite backend -------------------------------------------------------
-- WAL; an action's pending row is committed with synchronous=FULL before the
-- action starts (host/journal.c), everything else rides along with NORMAL.

-- Each migration moves the schema one version up; never edit a released one.
local MIGRATIONS = {
  [[
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
  ]],
  -- the module that registered an action's effect kind, loaded to undo it
  [[ ALTER TABLE actions ADD COLUMN provider TEXT; ]],
  -- what show and history tell: the outcome a run finished with (its status
  -- changes when it is rolled back later), what an undo did and when, and
  -- every rollback attempt
  [[
  ALTER TABLE runs ADD COLUMN outcome TEXT;
  ALTER TABLE steps ADD COLUMN undo_error TEXT;
  ALTER TABLE steps ADD COLUMN undone_at TEXT;
  ALTER TABLE actions ADD COLUMN undo_error TEXT;
  ALTER TABLE actions ADD COLUMN undone_at TEXT;
  CREATE TABLE rollbacks (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    requested INTEGER NOT NULL DEFAULT 0,  -- 1: relish rollback; 0: the run's own, on failure
    reason TEXT,
    actor TEXT,
    first_seq INTEGER NOT NULL,    -- the attempt's own actions (a step's undo) have seq >= first_seq
    status TEXT NOT NULL,          -- running|complete|incomplete
    undone INTEGER,
    left TEXT,                     -- JSON list: what was left to do by hand
    started_at TEXT NOT NULL,
    finished_at TEXT
  );
  CREATE INDEX rollbacks_run ON rollbacks (run_id, id);
  ]],
  -- when a lease's process started: with the pid, it names one process
  [[ ALTER TABLE locks ADD COLUMN pid_start TEXT; ]],
  -- deployments (relish dora): what a run of a recipe with deploys= ships,
  -- and the commits it recorded (ctx.record_commits), for lead time
  [[
  ALTER TABLE runs ADD COLUMN service TEXT;
  ALTER TABLE runs ADD COLUMN environment TEXT;
  ALTER TABLE runs ADD COLUMN version TEXT;
  CREATE INDEX runs_deploys ON runs (service, environment, finished_at) WHERE service IS NOT NULL;
  CREATE TABLE run_commits (
    run_id TEXT NOT NULL,
    commit_id TEXT NOT NULL,
    committed_at REAL NOT NULL,    -- unix time
    -- set by ship_commits when the run is the first successful deployment
    -- of this commit to its service and environment:
    service TEXT, environment TEXT, -- the run's ('' for no environment)
    deployed_at TEXT,              -- the run's finished_at
    lead_s REAL,                   -- deployed_at - committed_at, seconds
    PRIMARY KEY (run_id, commit_id)
  ) WITHOUT ROWID;
  CREATE INDEX run_commits_commit ON run_commits (commit_id);
  -- the lead time median is an ordered walk of this index, not a sort
  CREATE INDEX run_commits_lead ON run_commits (service, environment, lead_s, deployed_at) WHERE lead_s IS NOT NULL;
  ]],
  -- relish dora without parsing a time per row: a run's end in unix seconds,
  -- kept by triggers whoever writes finished_at, and one covering index of
  -- the deployments (the counts are a walk of it, the "next deployment" a
  -- probe into it)
  [[
  ALTER TABLE runs ADD COLUMN finished_t REAL;
  UPDATE runs SET finished_t = ROUND((julianday(finished_at) - 2440587.5) * 86400.0, 3) WHERE finished_at IS NOT NULL;
  -- how many commits the run shipped first (ship_commits): lead times' count
  ALTER TABLE runs ADD COLUMN shipped INTEGER;
  UPDATE runs SET shipped = (SELECT COUNT(*) FROM run_commits k WHERE k.run_id = runs.id AND k.lead_s IS NOT NULL)
    WHERE service IS NOT NULL;
  CREATE TRIGGER runs_finished_t_insert AFTER INSERT ON runs WHEN NEW.finished_at IS NOT NULL BEGIN
    UPDATE runs SET finished_t = ROUND((julianday(NEW.finished_at) - 2440587.5) * 86400.0, 3) WHERE id = NEW.id;
  END;
  CREATE TRIGGER runs_finished_t_update AFTER UPDATE OF finished_at ON runs BEGIN
    UPDATE runs SET finished_t = ROUND((julianday(NEW.finished_at) - 2440587.5) * 86400.0, 3) WHERE id = NEW.id;
  END;
  DROP INDEX runs_deploys;
  CREATE INDEX runs_deployed ON runs (service, environment, finished_t, outcome, status, recipe, dry_run, shipped)
    WHERE service IS NOT NULL AND dry_run = 0;
  -- the failed ones alone (recovery times walk these, not every deployment)
  CREATE INDEX runs_deploy_failed ON runs (service, environment, finished_t, recipe, outcome, status, dry_run)
    WHERE service IS NOT NULL AND dry_run = 0 AND COALESCE(outcome, status) <> 'succeeded';
  ]],
  -- manual gates (ctx.decide): each gate a run asked at, every decision a
  -- person made there (promote|abort|wait, who, how, when), and a run paused
  -- at one (runs.status and steps.status 'paused'), whose leases stay held
  -- with no process and no expiry until it is resumed or rolled back
  [[
  ALTER TABLE locks ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
  CREATE TABLE gates (
    run_id TEXT NOT NULL,
    id TEXT NOT NULL,              -- the recipe's id, unique within the run
    step INTEGER NOT NULL,
    question TEXT NOT NULL,
    status TEXT NOT NULL,          -- asked|paused|promoted|aborted
    asked_at TEXT NOT NULL,
    PRIMARY KEY (run_id, id)
  ) WITHOUT ROWID;
  CREATE TABLE decisions (
    id INTEGER PRIMARY KEY,
    run_id TEXT NOT NULL,
    gate TEXT NOT NULL,
    decision TEXT NOT NULL,        -- promote|abort|wait
    actor TEXT NOT NULL,           -- user@host
    via TEXT NOT NULL,             -- terminal|resume|rollback
    at TEXT NOT NULL
  );
  CREATE INDEX decisions_run ON decisions (run_id, id);
  ]],
  -- runbooks: a run's own facts beyond the recipe's name (runs.meta, JSON:
  -- kind = "runbook", severity, service, owner, links), and the step an
  -- event belongs to (a prompt, an answer, a skip, a check's finding)
  [[
  ALTER TABLE runs ADD COLUMN meta TEXT;
  ALTER TABLE events ADD COLUMN step INTEGER;
  ]],
  -- recipe libraries (require "lib.NAME.x"): which ones a run loaded, from
  -- which commit and tree, in the order it loaded them
  [[
  CREATE TABLE run_libraries (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,          -- 1, 2, ...: the order of the first load
    name TEXT NOT NULL,
    version TEXT,                  -- the tag the lock resolved, or NULL (a branch or commit)
    commit_id TEXT NOT NULL,
    sha256 TEXT NOT NULL,          -- the tree's hash, as relish.lock pins it
    source TEXT,
    loaded_at TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
  ) WITHOUT ROWID;
  ]],
}
M.SCHEMA_VERSION = #MIGRATIONS

local Sqlite = {}
Sqlite.__index = Sqlite

local function open_sqlite(path, create)
  local db, err = native.open(path, create)
  if not db then error({ kind = "journal", exit = 2, message = tostring(err) }, 0) end
  local j = setmetatable({ db = db, path = path, depth = 0 }, Sqlite)
  j:migrate()
  return j
end

function Sqlite:migrate()
  local function version() return self.db:query("PRAGMA user_version")[1].user_version end
  if version() == #MIGRATIONS then return end
  -- another process may be migrating too: decide inside the write lock
  self:tx(function()
    local v = version()
    if v > #MIGRATIONS then
      error({ kind = "journal", exit = 2, message = string.format(
        "journal %s has schema version %d, newer than this relish (%d): upgrade relish", self.path, v, #MIGRATIONS) }, 0)
    end
    for i = v + 1, #MIGRATIONS do
      self.db:script(MIGRATIONS[i])
      self.db:exec(string.format("PRAGMA user_version = %d", i))
    end
  end)
end

function Sqlite:close() self.db:close() end

local RESERVE = 8 * 1024 * 1024

function Sqlite:reserve()
  local bytes = math.tointeger(tonumber(os.getenv("RELISH_JOURNAL_RESERVE") or "")) or RESERVE
  if bytes <= 0 then
    self.db:release_reserve()
    return true
  end
  return self.db:reserve(bytes)
end

function Sqlite:release_reserve() return self.db:release_reserve() end

-- BEGIN IMMEDIATE ... COMMIT, rolled back on error; a nested call joins.
function Sqlite:tx(fn, ...)
  if self.depth > 0 then return fn(...) end
  self.db:exec("BEGIN IMMEDIATE")
  self.depth = 1
  local r = table.pack(pcall(fn, ...))
  self.depth = 0
  if r[1] then
    local ok, err = pcall(self.db.exec, self.db, "COMMIT")
    if ok then return table.unpack(r, 2, r.n) end
    r[2] = err
  end
  pcall(self.db.exec, self.db, "ROLLBACK")
  error(r[2], 0)
end

local function run_record(r)
  if r then r.dry_run = r.dry_run == 1 end
  return r
end

function Sqlite:create_run(run, names)
  self:tx(function()
    self.db:exec("INSERT INTO runs (id, recipe, file, recipe_hash, params, dry_run, status, user, host, pid," ..
      " lock_name, started_at, service, environment, version, meta) VALUES (?, ?, ?, ?, ?, ?, 'running', ?, ?, ?," ..
      " ?, ?, ?, ?, ?, ?)",
      run.id, run.recipe, run.file, run.recipe_hash, run.params or "{}", run.dry_run and 1 or 0,
      run.user or M.actor(), run.host or host.hostname(), run.pid or host.getpid(), run.lock_name, M.now_iso(),
      run.service, run.environment, run.version, run.meta)
    for i, name in ipairs(names) do
      self.db:exec("INSERT INTO steps (run_id, idx, name, status) VALUES (?, ?, ?, 'pending')", run.id, i, name)
    end
  end)
end

-- The part of a run id people type: its random suffix.
function M.short_id(id)
  return id:match("%-(%x+)$") or id
end

local MAX_CANDIDATES = 5

function Sqlite:find_run(id)
  local rows
  if id == "last" then
    rows = self.db:query("SELECT * FROM runs WHERE dry_run = 0 ORDER BY started_at DESC, rowid DESC LIMIT 1")
  else
    if id == "" then invalid("the run id is empty") end
    rows = self.db:query("SELECT * FROM runs WHERE id = ?", id)
    -- instr, not LIKE: what people type is text, never a pattern ('_', '%')
    if #rows == 0 then
      rows = self.db:query("SELECT * FROM runs WHERE instr(id, ?) > 0 ORDER BY started_at DESC, rowid DESC LIMIT ?",
        id, MAX_CANDIDATES + 1)
    end
    if #rows > 1 then
      local lines = {}
      for i = 1, math.min(#rows, MAX_CANDIDATES) do
        local r = rows[i]
        lines[i] = string.format("  %s  %s  started %s%s", r.id, r.recipe, r.started_at, r.dry_run == 1 and " (dry-run)" or "")
      end
      if #rows > MAX_CANDIDATES then lines[#lines + 1] = "  and more" end
      invalid(string.format("run id '%s' is ambiguous: it matches\n%s\ntype more of the id", id,
        table.concat(lines, "\n")))
    end
  end
  if #rows == 0 then
    invalid((id == "last" and "no runs in the journal " .. self.path)
      or ("no run '" .. id .. "' in the journal " .. self.path))
  end
  return run_record(rows[1])
end

function Sqlite:list_runs(opts)
  opts = opts or {}
  local limit = opts.limit or -1 -- no limit
  local rows
  -- changed: actions of its steps that were done or may have been (in doubt);
  -- a failed action did not complete
  local cols = "SELECT runs.*, (SELECT COUNT(*) FROM actions a WHERE a.run_id = runs.id AND a.step > 0" ..
    " AND a.status IN ('done', 'pending', 'undone', 'undo_failed')) AS changed FROM runs"
  if opts.recipe then
    rows = self.db:query(cols .. " WHERE recipe = ? ORDER BY started_at DESC, rowid DESC LIMIT ?",
      opts.recipe, limit)
  else
    rows = self.db:query(cols .. " ORDER BY started_at DESC, rowid DESC LIMIT ?", limit)
  end
  for _, r in ipairs(rows) do run_record(r) end
  return rows
end

function Sqlite:set_run_state(id, text)
  self.db:exec("UPDATE runs SET state = ? WHERE id = ?", text, id)
end

function Sqlite:finish_run(id, status, exit_code, err)
  -- a run whose journal was deleted, replaced or truncated under it does
  -- not end as if all were recorded: exit 3, a person must look
  self.db:verify()
  self.db:exec("UPDATE runs SET status = ?, outcome = ?, exit_code = ?, error = ?, finished_at = ? WHERE id = ?",
    status, status, exit_code, err, M.now_iso(), id)
  if status == "succeeded" then self:ship_commits(id) end
end

function Sqlite:set_run_status(id, status)
  self.db:exec("UPDATE runs SET status = ?, finished_at = COALESCE(finished_at, ?) WHERE id = ?",
    status, M.now_iso(), id)
end

function Sqlite:resume_run(id)
  self.db:exec("UPDATE runs SET status = 'running', pid = ?, host = ?, finished_at = NULL, exit_code = NULL" ..
    " WHERE id = ?", host.getpid(), host.hostname(), id)
end

function Sqlite:steps(run_id)
  return self.db:query("SELECT * FROM steps WHERE run_id = ? ORDER BY idx", run_id)
end

local STEP_FIELDS = { status = true, error = true, started_at = true, finished_at = true }

function Sqlite:set_step(run_id, idx, fields)
  local cols, vals = {}, {}
  for k, v in pairs(fields) do
    if not STEP_FIELDS[k] then error("set_step: unknown field '" .. tostring(k) .. "'", 2) end
    if v == json.null or v == false then
      cols[#cols + 1] = k .. " = NULL"
    else
      cols[#cols + 1] = k .. " = ?"
      vals[#vals + 1] = v
    end
  end
  if #cols == 0 then return end
  vals[#vals + 1] = run_id
  vals[#vals + 1] = idx
  self.db:exec("UPDATE steps SET " .. table.concat(cols, ", ") .. " WHERE run_id = ? AND idx = ?",
    table.unpack(vals))
end

function Sqlite:step_attempt(run_id, idx, n)
  self.db:exec("UPDATE steps SET attempts = ? WHERE run_id = ? AND idx = ?", n, run_id, idx)
end

function Sqlite:step_undone(run_id, idx)
  local now = M.now_iso()
  self:tx(function()
    self.db:exec("UPDATE steps SET status = 'undone', undone_at = ? WHERE run_id = ? AND idx = ?", now, run_id, idx)
    self.db:exec("UPDATE actions SET status = 'undone', undone_at = ? WHERE run_id = ? AND step = ?" ..
      " AND status IN ('done', 'pending', 'failed', 'undo_failed')", now, run_id, idx)
  end)
end

function Sqlite:step_undo_failed(run_id, idx, err)
  self.db:exec("UPDATE steps SET status = 'undo_failed', undo_error = ? WHERE run_id = ? AND idx = ?",
    err, run_id, idx)
end

function Sqlite:actions(run_id, opts)
  local rows
  if opts and opts.undoable then
    rows = self.db:query("SELECT * FROM actions WHERE run_id = ? AND step > 0 ORDER BY seq DESC", run_id)
  else
    rows = self.db:query("SELECT * FROM actions WHERE run_id = ? ORDER BY seq", run_id)
  end
  for _, a in ipairs(rows) do a.irreversible = a.irreversible == 1 end
  return rows
end

function Sqlite:max_seq(run_id)
  return self.db:query("SELECT COALESCE(MAX(seq), 0) AS m FROM actions WHERE run_id = ?", run_id)[1].m
end

function Sqlite:action_begin(run_id, step, seq, action, status, durable)
  self.db:action_begin(run_id, step, seq, action, status, durable)
end

function Sqlite:action_end(run_id, seq, status, result, err)
  self.db:action_end(run_id, seq, status, result, err)
end

function Sqlite:mark_action(run_id, seq, status, err)
  if status == "undone" then
    self.db:exec("UPDATE actions SET status = ?, undone_at = ? WHERE run_id = ? AND seq = ?",
      status, M.now_iso(), run_id, seq)
  else
    self.db:exec("UPDATE actions SET status = ?, undo_error = ? WHERE run_id = ? AND seq = ?", status, err, run_id, seq)
  end
end

function Sqlite:event(run_id, type_, text, actor, step)
  self.db:exec("INSERT INTO events (run_id, ts, type, actor, text, step) VALUES (?, ?, ?, ?, ?, ?)",
    run_id, M.now_iso(), type_, actor or M.actor(), text, step)
end

function Sqlite:events(run_id)
  return self.db:query("SELECT * FROM events WHERE run_id = ? ORDER BY id", run_id)
end

function Sqlite:rollback_begin(run_id, opts)
  opts = opts or {}
  return self:tx(function()
    local first = self:max_seq(run_id) + 1
    self.db:exec("INSERT INTO rollbacks (run_id, requested, reason, actor, first_seq, status, started_at)" ..
      " VALUES (?, ?, ?, ?, ?, 'running', ?)", run_id, opts.requested and 1 or 0, opts.reason, M.actor(), first,
      M.now_iso())
    self:event(run_id, "rollback", "rollback started" .. (opts.reason and (": " .. opts.reason) or ""))
    return self.db:query("SELECT MAX(id) AS id FROM rollbacks WHERE run_id = ?", run_id)[1].id
  end)
end

function Sqlite:rollback_end(attempt, status, left, undone)
  self:tx(function()
    local row = self.db:query("SELECT run_id FROM rollbacks WHERE id = ?", attempt)[1]
    if not row then error("rollback_end: no rollback attempt " .. tostring(attempt), 2) end
    left = left or {}
    self.db:exec("UPDATE rollbacks SET status = ?, left = ?, undone = ?, finished_at = ? WHERE id = ?",
      status, json.encode(json.array(left)), undone or 0, M.now_iso(), attempt)
    self:event(row.run_id, "rollback", "rollback " .. status ..
      (#left > 0 and (": left to do by hand: " .. table.concat(left, "; ")) or ""))
  end)
end

function Sqlite:rollbacks(run_id)
  local rows = self.db:query("SELECT * FROM rollbacks WHERE run_id = ? ORDER BY id", run_id)
  for _, r in ipairs(rows) do
    r.requested = r.requested == 1
    r.left = r.left and json.decode(r.left) or {}
  end
  return rows
end

-- ---- manual gates ---------------------------------------------------------------

local GATE_STATUS = { promote = "promoted", abort = "aborted", wait = "paused" }

function Sqlite:gate(run_id, id)
  return self.db:query("SELECT * FROM gates WHERE run_id = ? AND id = ?", run_id, id)[1]
end

local function gate_put(self, run_id, g, status)
  self.db:exec("INSERT INTO gates (run_id, id, step, question, status, asked_at) VALUES (?, ?, ?, ?, ?, ?)" ..
    " ON CONFLICT (run_id, id) DO UPDATE SET step = excluded.step, question = excluded.question," ..
    " status = excluded.status, asked_at = excluded.asked_at", run_id, g.id, g.step, g.question, status, M.now_iso())
end

function Sqlite:gate_ask(run_id, g)
  self:tx(function()
    gate_put(self, run_id, g, "asked")
    self:event(run_id, "gate", string.format("gate %s (step %d) asks at the terminal: %s", g.id, g.step, g.question))
  end)
end

function Sqlite:gate_pause(run_id, g)
  self:tx(function()
    gate_put(self, run_id, g, "paused")
    self:event(run_id, "pause", string.format("paused at gate %s (step %d): %s", g.id, g.step, g.question))
  end)
end

function Sqlite:gate_decide(run_id, id, decision, via, actor)
  if not GATE_STATUS[decision] then error("gate_decide: unknown decision '" .. tostring(decision) .. "'", 2) end
  actor = actor or M.actor_at()
  self:tx(function()
    self.db:exec("INSERT INTO decisions (run_id, gate, decision, actor, via, at) VALUES (?, ?, ?, ?, ?, ?)",
      run_id, id, decision, actor, via, M.now_iso())
    self.db:exec("UPDATE gates SET status = ? WHERE run_id = ? AND id = ?", GATE_STATUS[decision], run_id, id)
    self:event(run_id, "decision", string.format("%s at gate %s by %s (via %s)", decision, id, actor, via), actor)
  end)
  return actor
end

function Sqlite:gates(run_id)
  local gates, by_id = self.db:query("SELECT * FROM gates WHERE run_id = ? ORDER BY asked_at, step", run_id), {}
  for _, g in ipairs(gates) do
    g.decisions = {}
    by_id[g.id] = g
  end
  for _, d in ipairs(self.db:query("SELECT * FROM decisions WHERE run_id = ? ORDER BY id", run_id)) do
    local g = by_id[d.gate]
    if g then table.insert(g.decisions, d) end
  end
  return gates
end

function Sqlite:pause_run(id, exit_code, names)
  self:tx(function()
    self.db:verify()
    self.db:exec("UPDATE runs SET status = 'paused', outcome = 'paused', exit_code = ?, error = NULL," ..
      " finished_at = NULL WHERE id = ?", exit_code, id)
    for _, name in ipairs(names or {}) do
      self.db:exec("UPDATE locks SET paused = 1, pid = NULL, pid_start = NULL WHERE name = ? AND run_id = ?" ..
        " AND host = ? AND pid = ?", name, id, host.hostname(), host.getpid())
    end
  end)
end

function Sqlite:record_commits(run_id, commits)
  self:tx(function()
    for _, c in ipairs(commits) do
      self.db:exec("INSERT OR IGNORE INTO run_commits (run_id, commit_id, committed_at) VALUES (?, ?, ?)",
        run_id, c.id, c.time)
    end
  end)
end

-- The libraries a run loaded ({name=, version=, commit=, sha256=, source=}),
-- each once (a library loaded again is already there).
function Sqlite:record_libraries(run_id, list)
  if #list == 0 then return end
  self:tx(function()
    for _, l in ipairs(list) do
      self.db:exec("INSERT OR IGNORE INTO run_libraries (run_id, seq, name, version, commit_id, sha256, source," ..
        " loaded_at) VALUES (?1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM run_libraries WHERE run_id = ?1), ?2, ?3," ..
        " ?4, ?5, ?6, ?7)", run_id, l.name, l.version, l.commit, l.sha256, l.source, M.now_iso())
    end
  end)
end

-- -> { {name=, version=, commit=, sha256=, source=, loaded_at=}, ... } in load order
function Sqlite:libraries(run_id)
  return self.db:query("SELECT name, version, commit_id AS \"commit\", sha256, source, loaded_at FROM run_libraries" ..
    " WHERE run_id = ? ORDER BY seq", run_id)
end

function Sqlite:ship_commits(run_id)
  local r = self.db:query("SELECT service, environment, finished_at, COALESCE(outcome, status) AS outcome FROM runs" ..
    " WHERE id = ? AND dry_run = 0", run_id)[1]
  if not (r and r.service and r.finished_at and r.outcome == "succeeded") then return end
  local env = r.environment or ""
  local n = self.db:exec("UPDATE run_commits SET service = ?1, environment = ?2, deployed_at = ?3," ..
    " lead_s = MAX(0, ?4 - committed_at) WHERE run_id = ?5 AND lead_s IS NULL AND NOT EXISTS (SELECT 1" ..
    " FROM run_commits k INDEXED BY run_commits_commit WHERE k.commit_id = run_commits.commit_id AND k.service = ?1 AND k.environment = ?2" ..
    " AND k.lead_s IS NOT NULL)", r.service, env, r.finished_at, M.iso_seconds(r.finished_at), run_id)
  self.db:exec("UPDATE runs SET shipped = ? WHERE id = ?", n, run_id)
end

-- ---- DORA metrics (relish dora), computed in SQL ------------------------------
-- Parameters: ?1 since, ?2 until (unix seconds), ?3 the rollback window
-- (seconds), ?4 recipe, ?5 service, ?6 environment (NULL: any).
-- The deployments: finished real runs with a service, finished in
-- [since, until] (runs_deployed, by finished_t). One failed when its own
-- outcome is not "succeeded" (it failed at its end), or when a `relish
-- rollback` of it started within the window of its end or before the next
-- deployment of its service and environment (the next to finish) started
-- (it failed when the rollback started). A failure recovered at the end of the next deployment
-- of its service and environment that succeeded and stands (not rolled back
-- since). Every "next deployment" is a probe into runs_deployed.
local function filter(t)
  return string.format(" AND (?4 IS NULL OR %s.recipe = ?4) AND (?5 IS NULL OR %s.service = ?5)" ..
    " AND (?6 IS NULL OR %s.environment = ?6)", t, t, t)
end
local function deployed(t)
  return string.format(" %s.service IS NOT NULL AND %s.dry_run = 0 AND %s.status <> 'running'" ..
    " AND %s.finished_t >= ?1 AND %s.finished_t <= ?2", t, t, t, t, t) .. filter(t)
end
local function unix(col) return "ROUND((julianday(" .. col .. ") - 2440587.5) * 86400.0, 3)" end

local COUNTS = [[
SELECT service, COALESCE(environment, '') AS environment, COUNT(*) AS deployments,
  SUM(COALESCE(outcome, status) = 'succeeded') AS succeeded, MIN(finished_t) AS first_t, MAX(finished_t) AS last_t,
  SUM(shipped) AS shipped
FROM runs r INDEXED BY runs_deployed WHERE]] .. deployed("r") .. [[ GROUP BY service, environment]]

-- each failure: service, environment, when it failed, when it recovered
-- (NULL: not yet); ordered so that a group's recovery times are in order
local FAILURES = [[
WITH f AS (
  SELECT r.service, r.environment AS env, r.finished_t AS fail_t
  FROM runs r INDEXED BY runs_deploy_failed WHERE]] .. deployed("r") .. [[ AND COALESCE(outcome, status) <> 'succeeded'
  UNION ALL
  SELECT service, env, rb_t FROM (
    SELECT r.service, r.environment AS env, r.finished_t AS t, MIN(rb.started_at) AS rb_at,
      ]] .. unix("MIN(rb.started_at)") .. [[ AS rb_t
    FROM rollbacks rb CROSS JOIN runs r ON r.id = rb.run_id
    WHERE rb.requested = 1 AND]] .. deployed("r") .. [[ AND COALESCE(r.outcome, r.status) = 'succeeded'
    GROUP BY r.id) x
  WHERE rb_t - t <= ?3 OR COALESCE((SELECT n.started_at FROM runs n INDEXED BY runs_deployed
    WHERE n.service = x.service AND n.environment IS x.env AND n.service IS NOT NULL AND n.dry_run = 0
      AND n.finished_t > x.t AND n.finished_t <= ?2]] .. filter("n") .. [[ ORDER BY n.finished_t LIMIT 1) > x.rb_at, 1)
)
SELECT service, COALESCE(env, '') AS environment, (SELECT n.finished_t FROM runs n INDEXED BY runs_deployed
    WHERE n.service = f.service AND n.environment IS f.env AND n.service IS NOT NULL AND n.dry_run = 0
      AND n.finished_t > f.fail_t AND n.finished_t <= ?2 AND n.status = 'succeeded']] .. filter("n") .. [[
    ORDER BY n.finished_t LIMIT 1) - fail_t AS v
FROM f ORDER BY 1, 2, 3]]

-- median of v per (service, environment) from a query with those columns
local MEDIAN = [[
SELECT service, environment, AVG(v) AS median, MAX(n) AS n FROM (
  SELECT service, environment, v, ROW_NUMBER() OVER (PARTITION BY service, environment ORDER BY v) AS rn,
    COUNT(*) OVER (PARTITION BY service, environment) AS n FROM (%s))
WHERE rn IN ((n + 1) / 2, (n + 2) / 2) GROUP BY service, environment
]]

local function median(sorted, from, to)
  local n = to - from + 1
  if n <= 0 then return nil end
  local mid = from + (n - 1) // 2
  return n % 2 == 1 and sorted[mid] or (sorted[mid] + sorted[mid + 1]) / 2
end

-- dora{since=, until= (unix seconds), recipe=, service=, environment=,
-- window= (seconds)} -> list sorted by service, environment of
-- {service, environment, deployments, succeeded, failed, first_t, last_t,
-- lead_median, lead_commits, recovery_median, recoveries, unrecovered}
-- (medians in seconds, nil without data).
function Sqlite:dora(opts)
  local args = { opts.since, opts["until"], opts.window, opts.recipe, opts.service, opts.environment }
  local groups, list = {}, {}
  local function group(r)
    local key = r.service .. "\0" .. r.environment
    local g = groups[key]
    if not g then
      g = { service = r.service, environment = r.environment, deployments = 0, succeeded = 0, failed = 0,
        lead_commits = 0, recoveries = 0, unrecovered = 0 }
      groups[key] = g
      list[#list + 1] = g
    end
    return g
  end
  local function query(sql) return self.db:query(sql, table.unpack(args, 1, 6)) end
  -- one read snapshot for the queries (a deferred transaction: a report
  -- takes no write lock)
  self.db:exec("BEGIN")
  local ok, res = pcall(function()
    for _, r in ipairs(query(COUNTS)) do
      local g = group(r)
      g.deployments, g.succeeded = g.deployments + r.deployments, g.succeeded + r.succeeded
      g.first_t = math.min(g.first_t or r.first_t, r.first_t)
      g.last_t = math.max(g.last_t or r.last_t, r.last_t)
      g.lead_commits = g.lead_commits + (r.shipped or 0)
    end
    -- failures and recoveries: rows in (service, environment, v) order, the
    -- unrecovered (v NULL) first in each group
    local rows = query(FAILURES)
    local i = 1
    while rows[i] do
      local g = group(rows[i])
      local vs, j = {}, i
      while rows[j] and rows[j].service == g.service and rows[j].environment == g.environment do
        if rows[j].v then vs[#vs + 1] = rows[j].v end
        j = j + 1
      end
      g.failed, g.recoveries, g.unrecovered = j - i, #vs, j - i - #vs
      g.recovery_median = median(vs, 1, #vs)
      i = j
    end
    -- lead time: each commit once per service and environment, from its
    -- time to the end of the first successful deployment that shipped it
    -- (ship_commits): the median is read off run_commits_lead in order;
    -- with --recipe, through the runs (a join and a sort)
    local since, till = M.iso(opts.since), M.iso(opts["until"])
    if opts.recipe then
      for _, r in ipairs(self.db:query(MEDIAN:format([[
        SELECT k.service, k.environment, k.lead_s AS v FROM run_commits k JOIN runs r ON r.id = k.run_id
        WHERE k.lead_s IS NOT NULL AND k.deployed_at >= ?1 AND k.deployed_at <= ?2 AND r.recipe = ?3
          AND (?4 IS NULL OR k.service = ?4) AND (?5 IS NULL OR k.environment = ?5)]]),
        since, till, opts.recipe, opts.service, opts.environment)) do
        local g = group(r)
        g.lead_median, g.lead_commits = r.median, r.n
      end
    else
      -- how many: the deployments' shipped counts; the middle one or two
      -- are an ordered walk of run_commits_lead
      for _, g in ipairs(list) do
        local n = g.lead_commits
        if n > 0 then
          local mid = self.db:query([[
            SELECT lead_s FROM run_commits INDEXED BY run_commits_lead
            WHERE service = ?1 AND environment = ?2 AND lead_s IS NOT NULL AND deployed_at >= ?3 AND deployed_at <= ?4
            ORDER BY lead_s LIMIT ?5 OFFSET ?6]], g.service, g.environment, since, till, n % 2 == 0 and 2 or 1, (n - 1) // 2)
          local sum = 0
          for _, m in ipairs(mid) do sum = sum + m.lead_s end
          g.lead_median = #mid > 0 and sum / #mid or nil
        end
      end
    end
    table.sort(list, function(a, b)
      if a.service ~= b.service then return a.service < b.service end
      return a.environment < b.environment
    end)
    return list
  end)
  pcall(self.db.exec, self.db, "COMMIT")
  if not ok then error(res, 0) end
  return res
end

function Sqlite:lock_acquire(name, run_id, opts)
  local ttl = opts and opts.ttl
  if type(ttl) ~= "number" then error("lock_acquire: opts.ttl must be a number of seconds", 2) end
  local took_over
  self:tx(function()
    local cur = self.db:query("SELECT * FROM locks WHERE name = ?", name)[1]
    -- reclaim: a lease of the same run left by an earlier process (resume,
    -- rollback after a crash), never one a live process of this host holds
    -- (two rollbacks of one run at once)
    if cur and not (opts.reclaim and cur.run_id == run_id and (mine(cur) or holder_alive(cur) ~= true)) then
      local stale, why = M.lease_stale(cur)
      if not stale then locked_error(name, cur) end
      took_over = string.format("took over stale lock '%s' from %s: %s", name, M.holder_text(cur), why)
    end
    self.db:exec("INSERT OR REPLACE INTO locks (name, run_id, user, host, pid, pid_start, acquired_at, expires_at)" ..
      " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", name, run_id, M.actor(), host.hostname(), host.getpid(), my_start(),
      M.now_iso(), host.time() + ttl)
    if took_over then self:event(run_id, "lock", took_over) end
  end)
  return took_over
end

function Sqlite:lock_renew(name, run_id, ttl)
  return self.db:exec("UPDATE locks SET expires_at = ? WHERE name = ? AND run_id = ? AND host = ? AND pid = ?",
    host.time() + ttl, name, run_id, host.hostname(), host.getpid()) > 0
end

function Sqlite:lock_held(names, run_id)
  local have = {}
  for _, r in ipairs(self.db:query("SELECT name FROM locks WHERE run_id = ? AND host = ? AND pid = ?",
    run_id, host.hostname(), host.getpid())) do
    have[r.name] = true
  end
  for _, name in ipairs(names) do
    if not have[name] then return name end
  end
  return nil
end

function Sqlite:lock_release(name, run_id, only_mine)
  if only_mine then
    self.db:exec("DELETE FROM locks WHERE name = ? AND run_id = ? AND host = ? AND pid = ?", name, run_id,
      host.hostname(), host.getpid())
  else
    self.db:exec("DELETE FROM locks WHERE name = ? AND run_id = ?", name, run_id)
  end
end

function Sqlite:lock_list()
  return self.db:query("SELECT * FROM locks ORDER BY name")
end

function Sqlite:lock_break(name)
  return self:tx(function()
    local cur = self.db:query("SELECT * FROM locks WHERE name = ?", name)[1]
    if not cur then return nil end
    self.db:exec("DELETE FROM locks WHERE name = ?", name)
    self:event(cur.run_id, "lock", string.format("lock '%s' broken by %s (was held by %s)", name,
      M.actor(), M.holder_text(cur)))
    return cur
  end)
end

-- ---- opening ------------------------------------------------------------------

-- Turns a state URL into a path: sqlite:PATH or a plain path.
local function url_path(url, what)
  local path = url
  if url:match("^sqlite:") then path = url:sub(8) end
  if url:match("^%a[%w+.-]*://") then invalid(what .. " " .. url .. ": only sqlite:PATH is supported") end
  if path == "" then invalid(what .. " " .. url .. ": the journal path is empty") end
  return path
end

-- The journal's path, and whether its directory may be created: only the
-- default location is made on demand; a path given by --state or
-- RELISH_STATE must be in a directory that exists (a typo must not make
-- directories).
function M.resolve(url)
  if url ~= nil then return url_path(url, "--state"), false end
  local env = os.getenv("RELISH_STATE")
  if env and env ~= "" then return url_path(env, "RELISH_STATE"), false end
  local base = os.getenv("XDG_STATE_HOME")
  if not base or base == "" then base = (os.getenv("HOME") or "/tmp") .. "/.local/state" end
  return base .. "/relish/journal.db", true
end

function M.open(url)
  local path, create = M.resolve(url)
  if not create then
    local dir = path:match("^(.*)/[^/]*$") or "."
    if dir ~= "" and host.filetype(dir, true) ~= "dir" then
      invalid(string.format("journal %s: the directory %s does not exist", path, dir))
    end
  end
  return open_sqlite(path, create)
end

return M
