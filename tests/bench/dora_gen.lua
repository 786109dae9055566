-- Makes a journal of N deployment runs over the last year, through
-- relish.journal (its schema, its handle): services x environments, about 1
-- in 7 failing (its own rollback), 1 in 20 of the successes rolled back
-- later by `relish rollback`, 3 recorded commits per run. Fixed seed.
-- Usage: relish lua dora_gen.lua PATH [N]
local J = require "relish.journal"
local host = require "relish._host"
local path, n = ...
n = math.tointeger(tonumber(n or "100000"))
local j = J.open("sqlite:" .. path)
local now = math.floor(host.time())
local YEAR = 365 * 86400
local services = { "api", "web", "worker", "billing", "search" }
local envs = { "prod", "staging" }
local function iso(t) return os.date("!%Y-%m-%dT%H:%M:%S", t) .. ".000Z" end
math.randomseed(42)
j:tx(function()
  local db = j.db
  for i = 1, n do
    local at = now - YEAR + (i * YEAR) // n
    local id = string.format("bench-%07d", i)
    local failed = math.random(7) == 1
    local later = not failed and math.random(20) == 1
    local status = failed and "rolled_back" or (later and "rolled_back" or "succeeded")
    db:exec("INSERT INTO runs (id, recipe, file, params, dry_run, status, outcome, exit_code, started_at," ..
      " finished_at, service, environment) VALUES (?, 'deploy', '/deploy.lua', '{}', 0, ?, ?, ?, ?, ?, ?, ?)",
      id, status, failed and "rolled_back" or "succeeded", failed and 1 or 0, iso(at - 90), iso(at),
      services[i % #services + 1], envs[(i // #services) % #envs + 1])
    for c = 1, 3 do
      db:exec("INSERT INTO run_commits (run_id, commit_id, committed_at) VALUES (?, ?, ?)", id,
        string.format("%07d-%d", i, c), at - math.random(600, 3 * 86400))
    end
    j:ship_commits(id) -- what finish_run does
    if later then
      db:exec("INSERT INTO rollbacks (run_id, requested, actor, first_seq, status, started_at, finished_at)" ..
        " VALUES (?, 1, 'bench', 1, 'complete', ?, ?)", id, iso(at + math.random(60, 2 * 86400)), iso(at + 7200))
    end
  end
end)
j:close()
