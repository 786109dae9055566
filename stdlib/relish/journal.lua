-- relish.journal: where runs are remembered. Opens the SQLite journal
-- ($RELISH_STATE, $XDG_STATE_HOME/relish/journal.db or --state sqlite:PATH),
-- migrates its schema, and answers the engine's and the CLI's questions.
local native = require "relish._journal"
local host = require "relish._host"
local invalid = require("relish._errors").invalid

local M = {}

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
}

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

local Journal = {}
Journal.__index = Journal

function M.open(url)
  local path, create = M.resolve(url)
  if not create then
    local dir = path:match("^(.*)/[^/]*$") or "."
    if dir ~= "" and host.filetype(dir, true) ~= "dir" then
      invalid(string.format("journal %s: the directory %s does not exist", path, dir))
    end
  end
  local db, err = native.open(path, create)
  if not db then error({ kind = "journal", exit = 2, message = tostring(err) }, 0) end
  local j = setmetatable({ db = db, path = path }, Journal)
  j:migrate()
  return j
end

function Journal:migrate()
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

function Journal:close() self.db:close() end
function Journal:exec(sql, ...) return self.db:exec(sql, ...) end
function Journal:query(sql, ...) return self.db:query(sql, ...) end

-- Runs fn inside BEGIN IMMEDIATE ... COMMIT (rolled back on error).
function Journal:tx(fn, ...)
  self.db:exec("BEGIN IMMEDIATE")
  local ok, a, b = pcall(fn, ...)
  if ok then
    self.db:exec("COMMIT")
    return a, b
  end
  pcall(self.db.exec, self.db, "ROLLBACK")
  error(a, 0)
end

function M.now_iso()
  local t = host.time()
  return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. string.format(".%03dZ", math.floor((t % 1) * 1000))
end

function Journal:event(run_id, type_, text, actor)
  self.db:exec("INSERT INTO events (run_id, ts, type, actor, text) VALUES (?, ?, ?, ?, ?)",
    run_id, M.now_iso(), type_, actor or M.actor(), text)
end

function M.actor()
  return os.getenv("USER") or os.getenv("LOGNAME") or host.username()
end

-- Resolves "last" (the newest run that acted, not a dry-run) or an id prefix.
function Journal:find_run(id)
  local rows
  if id == "last" then
    rows = self:query("SELECT * FROM runs WHERE dry_run = 0 ORDER BY started_at DESC, rowid DESC LIMIT 1")
  else
    rows = self:query("SELECT * FROM runs WHERE id = ?", id)
    if #rows == 0 then rows = self:query("SELECT * FROM runs WHERE id LIKE ? || '%' LIMIT 2", id) end
    if #rows > 1 then
      invalid("run id '" .. id .. "' is ambiguous")
    end
  end
  if #rows == 0 then
    invalid((id == "last" and "no runs in the journal " .. self.path)
      or ("no run '" .. id .. "' in the journal " .. self.path))
  end
  return rows[1]
end

-- The status to show: a run still marked running whose process is gone from
-- this host crashed (rollback and resume treat it so).
function M.shown_status(run)
  if run.status == "running" and run.host == host.hostname() and not host.pid_alive(run.pid) then
    return "crashed"
  end
  return run.status
end

function Journal:steps(run_id)
  return self:query("SELECT * FROM steps WHERE run_id = ? ORDER BY idx", run_id)
end

function Journal:actions(run_id)
  return self:query("SELECT * FROM actions WHERE run_id = ? ORDER BY seq", run_id)
end

function Journal:events(run_id)
  return self:query("SELECT * FROM events WHERE run_id = ? ORDER BY id", run_id)
end

return M
