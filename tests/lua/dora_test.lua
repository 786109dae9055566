-- relish dora: the DORA metrics of the deployments in the journal. A journal
-- made by real runs (deploys=, ctx.record_commits, failures, relish
-- rollback), and a generated one whose answers are known to the second.
local support = require "support"
local json = require "relish.json"
local J = require "relish.journal"
local host = require "relish._host"
local relish, recipe = support.relish, support.recipe

local DEPLOY = [[
return recipe "deploy-api" {
  params = { env = param.string { default = "prod" }, fail = param.string { default = "" } },
  deploys = { service = "api", environment = function(p) return p.env end, version = "1.2.3" },
  step "ship" { run = function(ctx)
    ctx.record_commits({ { id = "c-" .. ctx.run_id, time = os.time() - 7200 },
      { id = "shared", time = "2020-01-01T00:00:00+01:00" } })
    if ctx.params.fail ~= "" then error("smoke test failed") end
  end },
}
]]

local function dora(state, ...)
  return relish { "dora", "--state", state, ... }
end

local function dora_json(state, ...)
  local r = dora(state, "--format", "json", ...)
  assert_eq(r.code, 0, r.stdout .. r.stderr)
  return json.decode(r.stdout)
end

local function by_env(rep)
  local t = {}
  for _, s in ipairs(rep.services) do t[s.service .. "/" .. s.environment] = s end
  return t
end

describe("recipes that deploy", function()
  test("real runs: successes, a failure, a relish rollback, a dry-run and another environment", function()
    local d = tmpdir()
    local f = recipe(d, "deploy.lua", DEPLOY)
    local st = support.state(d)
    local function run(...)
      return relish { "run", f, "--state", st, ... }.code
    end
    assert_eq(run(), 0)
    assert_eq(run("-p", "fail=yes"), 1)
    assert_eq(run(), 0)
    assert_eq(run(), 0)
    assert_eq(relish { "rollback", "last", "--state", st }.code, 0)
    assert_eq(run("--dry-run"), 0)
    assert_eq(run("-p", "env=staging"), 0)
    -- the journal keeps what the run deploys
    local j = J.open(st)
    local runs = j:list_runs {}
    assert_eq(#runs, 6)
    assert_eq({ runs[1].service, runs[1].environment, runs[1].version }, { "api", "staging", "1.2.3" })
    assert_eq(#j.db:query("SELECT * FROM run_commits WHERE run_id = ?", runs[1].id), 2)
    j:close()

    local s = by_env(dora_json(st))
    local prod = s["api/prod"]
    -- 4 real deployments; the failed one and the one rolled back are failures
    assert_eq({ prod.deployments, prod.succeeded, prod.failed }, { 4, 3, 2 })
    assert_eq(prod.change_failure_rate.rate, 0.5)
    assert_eq(prod.change_failure_rate.band, "low")
    -- the failure was recovered by the next run; the rollback is not (yet)
    assert_eq({ prod.recovery_time.recoveries, prod.recovery_time.unrecovered }, { 1, 1 })
    assert_eq(prod.recovery_time.band, "elite")
    -- 3 own commits (about 2 h old) and "shared" (years old), counted once:
    -- the median is between two 2-hour lead times
    assert_eq(prod.lead_time.commits, 4)
    assert_true(prod.lead_time.median_s > 7190 and prod.lead_time.median_s < 7300, tostring(prod.lead_time.median_s))
    assert_eq(prod.lead_time.band, "elite")
    assert_eq({ s["api/staging"].deployments, s["api/staging"].failed }, { 1, 0 })
  end)

  test("record_commits takes repo:log and changelog.commits entries as they are (a real repository)", function()
    local d = tmpdir()
    local sh = require "relish.sh"
    local function git(...)
      return assert(sh.run { argv = { "git", "-C", d .. "/repo", ... }, env = { GIT_AUTHOR_DATE = "2026-01-02T10:00:00Z",
        GIT_COMMITTER_DATE = "2026-01-02T10:00:00Z", GIT_AUTHOR_NAME = "a", GIT_AUTHOR_EMAIL = "a@x",
        GIT_COMMITTER_NAME = "a", GIT_COMMITTER_EMAIL = "a@x" } }).stdout
    end
    assert(os.execute("git init -q -b main " .. d .. "/repo"))
    git("commit", "-q", "--allow-empty", "-m", "feat: one")
    git("tag", "v1.0.0")
    git("commit", "-q", "--allow-empty", "-m", "fix: two")
    git("commit", "-q", "--allow-empty", "-m", "feat: three")
    local f = recipe(d, "ship.lua", string.format([[
local git = require "relish.git"
local changelog = require "relish.changelog"
return recipe "ship" {
  deploys = { service = "api", environment = "prod" },
  step "ship" { run = function(ctx)
    local repo = git.open(%q)
    assert(ctx.record_commits(repo:log { from = "v1.0.0" }) == 2)
    assert(ctx.record_commits(changelog.commits(repo, { from = "v1.0.0" })) == 2)
  end },
}
]], d .. "/repo"))
    local st = support.state(d)
    local r = relish { "run", f, "--state", st }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local j = J.open(st)
    local rows = j.db:query("SELECT commit_id, committed_at FROM run_commits ORDER BY commit_id")
    j:close()
    local want = {}
    for id in git("rev-list", "v1.0.0..main"):gmatch("%x+") do want[#want + 1] = { commit_id = id, committed_at = 1767348000.0 } end
    table.sort(want, function(a, b) return a.commit_id < b.commit_id end)
    assert_eq(rows, want)
    local prod = by_env(dora_json(st))["api/prod"]
    assert_eq(prod.lead_time.commits, 2)
  end)

  test("deploys is checked when the recipe loads; record_commits needs deploys and readable times", function()
    local d = tmpdir()
    local bad = recipe(d, "bad.lua", [[
return recipe "x" { deploys = { service = "api", enviroment = "prod" }, step "s" { run = function() end } }]])
    local r = relish { "run", bad, "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "deploys%.enviroment is not known %(did you mean 'environment'%?%)")
    local plain = recipe(d, "plain.lua", [[
return recipe "x" { step "s" { run = function(ctx) ctx.record_commits({}) end } }]])
    r = relish { "run", plain, "--state", support.state(d) }
    assert_eq(r.code, 1)
    assert_match(r.stdout .. r.stderr, "the recipe does not declare deploys")
    local badtime = recipe(d, "badtime.lua", [[
return recipe "x" { deploys = { service = "a" },
  step "s" { run = function(ctx) ctx.record_commits({ { id = "c1", time = "yesterday" } }) end } }]])
    r = relish { "run", badtime, "--state", support.state(d) }
    assert_eq(r.code, 1)
    assert_match(r.stdout .. r.stderr, "commit 1 %(c1%): time must be Unix seconds or an ISO 8601 time")
  end)
end)

-- A generated journal. Times are whole hours before now; every deployment
-- takes a minute. web/prod, over the last 30 days:
--   1  d-29 ok       commit 2 h before
--   2  d-20 failed
--   3  d-20 +30m ok  commits 4 h and 10 h before   (recovers 2 in 30 min)
--   4  d-10 ok, relish rollback 2 h later (within 24 h: a failure)
--                    commit 6 h before
--   5  d-10 +3h ok   the commit of 4 again, one 8 h before (recovers 4 in 1 h)
--   6  d-5 ok, rolled back at d-2: after 24 h and after 7 started: no failure
--   7  d-4 ok
-- and outside the answer: a dry-run, a run of a recipe without deploys, a
-- deployment before the window, one still running. web/staging: two.
local function generate(path)
  local now = math.floor(host.time())
  local H, D = 3600, 86400
  local function iso(t)
    return os.date("!%Y-%m-%dT%H:%M:%S", math.floor(t)) .. ".000Z"
  end
  local j = J.open("sqlite:" .. path)
  local n = 0
  local function deploy(at, o)
    n = n + 1
    local id = "g-" .. n
    local finished = o.running and nil or iso(at)
    j.db:exec("INSERT INTO runs (id, recipe, file, params, dry_run, status, outcome, exit_code, started_at, finished_at," ..
      " service, environment) VALUES (?, ?, '/x.lua', '{}', ?, ?, ?, ?, ?, ?, ?, ?)", id, o.recipe or "web-deploy",
      o.dry and 1 or 0, o.status or "succeeded", o.running and nil or (o.outcome or o.status or "succeeded"),
      (o.status or "succeeded") == "succeeded" and 0 or 1, iso(at - 60), finished, o.service == nil and "web" or
      o.service or nil, o.env or "prod")
    for c, before in pairs(o.commits or {}) do
      j.db:exec("INSERT INTO run_commits (run_id, commit_id, committed_at) VALUES (?, ?, ?)", id, c, at - before)
    end
    j:ship_commits(id) -- what finish_run does
    if o.rollback then
      j.db:exec("INSERT INTO rollbacks (run_id, requested, actor, first_seq, status, started_at, finished_at)" ..
        " VALUES (?, 1, 'u', 1, 'complete', ?, ?)", id, iso(at + o.rollback), iso(at + o.rollback + 10))
    end
  end
  j:tx(function()
    deploy(now - 29 * D, { commits = { c1 = 2 * H } })
    deploy(now - 20 * D, { status = "rolled_back" })
    deploy(now - 20 * D + 30 * 60, { commits = { c2 = 4 * H, c3 = 10 * H } })
    deploy(now - 10 * D, { status = "rolled_back", outcome = "succeeded", rollback = 2 * H, commits = { c4 = 6 * H } })
    deploy(now - 10 * D + 3 * H, { commits = { c4 = 9 * H, c5 = 8 * H } })
    deploy(now - 5 * D, { status = "rolled_back", outcome = "succeeded", rollback = 3 * D })
    deploy(now - 4 * D, {})
    deploy(now - 3 * D, { dry = true, status = "failed" })
    deploy(now - 3 * D, { service = false, status = "failed" })
    deploy(now - 40 * D, { status = "failed" })
    deploy(now - 1 * D, { running = true, status = "running" })
    deploy(now - 15 * D, { env = "staging", recipe = "web-staging" })
    deploy(now - 14 * D, { env = "staging", recipe = "web-staging" })
  end)
  j:close()
end

local function generated()
  local d = tmpdir()
  generate(d .. "/gen.db")
  return "sqlite:" .. d .. "/gen.db"
end

describe("known answers", function()

  test("json: each metric and its band", function()
    local st = generated()
    local rep = dora_json(st)
    assert_eq(rep.days, 30.0)
    assert_eq(#rep.services, 2)
    local p = by_env(rep)["web/prod"]
    assert_eq({ p.deployments, p.succeeded, p.failed }, { 7, 6, 2 })
    assert_near(p.deployment_frequency.per_day, 0.2)
    assert_near(p.deployment_frequency.per_week, 1.4)
    assert_eq(p.deployment_frequency.band, "high")
    assert_near(p.lead_time.median_s, 6 * 3600, 0.01) -- 2, 4, 6, 8, 10 h (c4 counted once, from 4)
    assert_eq({ p.lead_time.commits, p.lead_time.band }, { 5, "elite" })
    assert_near(p.change_failure_rate.rate, 2 / 7)
    assert_eq(p.change_failure_rate.band, "low")
    assert_near(p.recovery_time.median_s, 45 * 60, 0.01) -- 30 min and 1 h
    assert_eq({ p.recovery_time.recoveries, p.recovery_time.unrecovered, p.recovery_time.band }, { 2, 0, "elite" })
    local s = by_env(rep)["web/staging"]
    assert_eq({ s.deployments, s.failed, s.deployment_frequency.band }, { 2, 0, "medium" })
    assert_eq({ s.lead_time.median_s, s.lead_time.band, s.change_failure_rate.band }, { json.null, json.null, "elite" })
  end)

  test("filters: --since, --service, --environment, --recipe", function()
    local st = generated()
    local p = dora_json(st, "--since", "7d").services
    assert_eq(#p, 1)
    -- 6 and 7: the rollback of 6 came after 24 h and after 7 started
    assert_eq({ p[1].environment, p[1].deployments, p[1].failed, p[1].change_failure_rate.band }, { "prod", 2, 0, "elite" })
    assert_eq(#dora_json(st, "--environment", "staging").services, 1)
    assert_eq(dora_json(st, "--environment", "staging").services[1].environment, "staging")
    assert_eq(#dora_json(st, "--service", "nope").services, 0)
    local r = dora_json(st, "--recipe", "web-staging").services
    assert_eq({ #r, r[1].environment }, { 1, "staging" })
    assert_eq(dora_json(st, "--since", "90d").services[1].deployments, 8) -- d-40 too
  end)

  test("table for people", function()
    local st = generated()
    local r = dora(st)
    assert_eq(r.code, 0, r.stderr)
    local lines = {}
    for l in r.stdout:gmatch("[^\n]+") do lines[#lines + 1] = l end
    assert_match(lines[1], "^DORA metrics, %d+%-%d+%-%d+ %d+:%d+ to .* %(30 days; bands: State of DevOps 2023%)$")
    assert_match(lines[2], "^SERVICE%s+ENV%s+DEPLOYS%s+FREQUENCY%s+LEAD TIME%s+CHANGE FAILURE%s+RECOVERY$")
    assert_match(lines[3], "^web%s+prod%s+7%s+1%.4/week%s+high%s+6%.0h%s+elite%s+28%.6%% %(2/7%)%s+low%s+45m%s+elite$")
    assert_match(lines[4], "^web%s+staging%s+2%s+0%.5/week%s+medium%s+%-%s+0%.0%% %(0/2%)%s+elite%s+%-$")
    -- the band columns line up
    assert_eq(lines[3]:find("high", 1, true) ~= nil, true)
    r = dora(st, "--service", "nope")
    assert_match(r.stdout, "no deployments in this window\n$")
  end)

  test("prometheus text exposition", function()
    local st = generated()
    local r = dora(st, "--format", "prometheus")
    assert_eq(r.code, 0, r.stderr)
    local t = r.stdout
    assert_match(t, "# TYPE relish_dora_deployments_per_day gauge\n")
    assert_match(t, '\nrelish_dora_deployments_per_day{service="web",environment="prod"} 0%.2\n')
    assert_match(t, '\nrelish_dora_lead_time_seconds{service="web",environment="prod"} 21600\n')
    assert_match(t, '\nrelish_dora_change_failure_ratio{service="web",environment="prod"} 0%.285714285714286\n')
    assert_match(t, '\nrelish_dora_recovery_time_seconds{service="web",environment="prod"} 2700\n')
    assert_match(t, '\nrelish_dora_band{service="web",environment="prod",metric="change_failure_rate",band="low"} 1\n')
    -- no lead time for staging: no sample rather than a made-up one
    assert_eq(t:find('relish_dora_lead_time_seconds{service="web",environment="staging"}', 1, true), nil)
    -- every sample line is NAME{LABELS} VALUE
    for line in t:gmatch("[^\n]+") do
      if not line:match("^#") then assert_match(line, '^relish_dora_[%w_]+{[^}]*} [%d.e+-]+$') end
    end
  end)

  test("a bad --since or --format is a usage error (exit 2)", function()
    local st = generated()
    local r = dora(st, "--since", "3 weeks")
    assert_eq(r.code, 2)
    assert_match(r.stderr, "%-%-since: cannot read duration")
    assert_eq(dora(st, "--since", "0d").code, 2)
    assert_eq(dora(st, "--format", "xml").code, 2)
  end)

  test("a journal written by schema 5 (no finished_t, no shipped) is upgraded and reports the same", function()
    local st = generated()
    local want = dora_json(st)
    -- back to schema 5: what migrations 6 to 9 added, taken away
    local path = st:sub(#"sqlite:" + 1)
    local j = J.open(st)
    j.db:script([[
      DROP TABLE run_libraries;
      ALTER TABLE runs DROP COLUMN meta; ALTER TABLE events DROP COLUMN step;
      DROP TABLE gates; DROP TABLE decisions; ALTER TABLE locks DROP COLUMN paused;
      DROP TRIGGER runs_finished_t_insert; DROP TRIGGER runs_finished_t_update;
      DROP INDEX runs_deployed; DROP INDEX runs_deploy_failed;
      ALTER TABLE runs DROP COLUMN finished_t; ALTER TABLE runs DROP COLUMN shipped;
      CREATE INDEX runs_deploys ON runs (service, environment, finished_at) WHERE service IS NOT NULL;
      PRAGMA user_version = 5;
    ]])
    j:close()
    local got = dora_json(st)
    want["until"], got["until"], want.since, got.since = nil, nil, nil, nil
    assert_eq(got, want)
    j = J.open("sqlite:" .. path)
    assert_eq(j.db:query("PRAGMA user_version")[1].user_version, J.SCHEMA_VERSION)
    assert_eq(j.db:query("SELECT SUM(shipped) AS n FROM runs")[1].n, 5)
    j:close()
  end)
end)

describe("bands (State of DevOps 2023)", function()
  local band = require("relish.cli.dora").band
  test("thresholds", function()
    assert_eq({ band("frequency", 1), band("frequency", 0.99), band("frequency", 1 / 7), band("frequency", 1 / 30),
      band("frequency", 0.01) }, { "elite", "high", "high", "medium", "low" })
    assert_eq({ band("lead_time", 86399), band("lead_time", 86400), band("lead_time", 7 * 86400 + 1),
      band("lead_time", 31 * 86400) }, { "elite", "high", "medium", "low" })
    assert_eq({ band("change_failure_rate", 0.05), band("change_failure_rate", 0.1), band("change_failure_rate", 0.15),
      band("change_failure_rate", 0.16) }, { "elite", "high", "medium", "low" })
    assert_eq({ band("recovery_time", 3599), band("recovery_time", 3600), band("recovery_time", 86400),
      band("recovery_time", 8 * 86400) }, { "elite", "high", "medium", "low" })
    assert_eq(band("lead_time", nil), nil)
  end)
  test("commit times: Unix seconds or ISO 8601 with a zone", function()
    local ts = require("relish.dsl").timestamp
    assert_eq(ts("1970-01-02T00:00:00Z"), 86400)
    assert_eq(ts("1970-01-02T01:00:00+01:00"), 86400)
    assert_eq(ts("1970-01-01T23:30:00-0030"), 86400)
    assert_eq(ts(12.5), 12.5)
    assert_eq({ ts("1970-01-02"), ts("soon"), ts({}) }, { nil, nil, nil })
  end)
end)
