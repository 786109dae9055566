-- A runbook run as the runbook engine journals one, written through the
-- journal's API: a runbook's facts (runs.meta), checks with their findings,
-- prompts and answers with who answered (one of them secret), actions (one
-- irreversible), a note, a skipped step, and a person's stop before the
-- last step. Shared by show_markdown_test and report_html_test.
local J = require "relish.journal"
local json = require "relish.json"
local task = require "relish.task"
local support = require "support"

local M = { RUN = "20261203-100000-0a0b0c0d" }

-- each write a little later than the one before: a report's order is the
-- time's, across the tables the rows come from
local function later() task.sleep(0.005) end

function M.run(d)
  local RUN = M.RUN
  local j = J.open(support.state(d))
  j:create_run({ id = RUN, recipe = "api-errors", file = d .. "/api-errors.lua", recipe_hash = "h",
    params = J.encode_params { env = "prod", token = "***" }, dry_run = false, user = "alice",
    meta = json.encode { kind = "runbook", severity = "SEV2", service = "api", owner = "team-payments",
      description = "The API answers 5xx: find out why, roll back if a release is the cause.",
      links = { { title = "dashboard", url = "https://grafana.example/d/api" }, "https://wiki.example/api (old)",
        { title = "not a link", url = "javascript:alert(1)" } } } },
    { "error rate", "roll back", "purge cache", "verify" })
  local function step(i, fields) j:set_step(RUN, i, fields); later() end
  local function event(...) j:event(RUN, ...); later() end
  step(1, { status = "running", started_at = J.now_iso() })
  event("check", "error rate: [bad] 5xx at 12%\nroute   rate\n/pay    0.12\n/login  0.01", "alice", 1)
  event("check", "latency: [ok] p99 at 120ms", "alice", 1)
  step(1, { status = "done", finished_at = J.now_iso() })
  step(2, { status = "running", started_at = J.now_iso() })
  event("prompt", "Roll api back from v42 to v41?", "alice", 2)
  event("answer", "yes (via terminal)", "bob", 2)
  event("prompt", "Deploy token:", "bob", 2)
  event("answer", "*** (via terminal)", "bob", 2)
  j:action_begin(RUN, 2, 1, { kind = "fs.write", provider = "relish.fs", target = "/srv/api/current",
    describe = "write /srv/api/current (v41)", undo = '{"path":"/srv/api/current","before":"v42"}' }, "pending", true)
  later()
  j:action_end(RUN, 1, "done", nil, nil)
  later()
  j:action_begin(RUN, 2, 2, { kind = "http.post", provider = "relish.http", target = "https://status.example/api",
    describe = "POST https://status.example/api", irreversible = true }, "pending", true)
  later()
  j:action_end(RUN, 2, "done", nil, nil)
  later()
  event("note", "rolled back to v41 | error rate falling", "bob", 2)
  step(2, { status = "done", finished_at = J.now_iso() })
  event("prompt", "Purge the CDN cache?", "bob", 3)
  event("answer", "no (via terminal)", "bob", 3)
  event("skip", 'step "purge cache" skipped: bob said no', "bob", 3)
  step(3, { status = "skipped" })
  event("stop", 'stopped by carol before step "verify"', "carol", nil)
  j:finish_run(RUN, "stopped", 1, "stopped by carol")
  j:close()
end

return M
