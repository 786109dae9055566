-- The testing kit for recipe authors (relish.testing: plan, run, failure
-- injection, http_stub, git_repo) used on the recipes in recipes/, and the
-- gate's clean fault forms (RELISH_FAULT=fail-action:N, fail-step:N) it
-- is built on.
local support = require "support"
local json = require "relish.json"

local EIGHT = fixture_path("recipes/eight.lua")

describe("RELISH_FAULT fail-action and fail-step", function()
  test("the action fails before acting, journaled as failed; the run rolls back; fail-step hits its step",
    function()
      for _, case in ipairs {
        { fault = "fail-action:5", seq = 5, step = 2, form = "fail%-action:5" },
        { fault = "fail-step:3", seq = 8, step = 3, form = "fail%-step:3" },
      } do
        local d = tmpdir()
        local w = support.eight_world(d)
        local before = support.snapshot(w)
        local r = support.relish { "run", EIGHT, "-p", "dir=" .. w, "--state", support.state(d),
          env = { RELISH_FAULT = case.fault } }
        assert_eq(r.code, 1, r.stderr .. r.stdout)
        assert_eq(support.snapshot(w), before, case.fault .. ": the world is restored")
        local run = json.decode(support.relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
        assert_eq(run.status, "rolled_back")
        assert_eq(#run.actions, case.seq, case.fault .. ": no action after the failed one")
        local a = run.actions[case.seq]
        assert_eq(a.step, case.step)
        assert_match(a.error, "^injected failure %(RELISH_FAULT=" .. case.form .. "%) before ")
        assert_match(a.history[1], "^failed: injected failure")
        assert_match(run.error, "injected failure")
        assert_eq(run.rollbacks[1].status, "complete")
      end
      -- a dry-run is not affected, and a rollback is never injected into
      local d = tmpdir()
      local w = support.eight_world(d)
      local r = support.relish { "run", EIGHT, "-n", "-p", "dir=" .. w, "--state", support.state(d),
        env = { RELISH_FAULT = "fail-action:1" } }
      assert_eq(r.code, 0, r.stderr .. r.stdout)
      r = support.relish { "run", EIGHT, "-p", "dir=" .. w, "--state", support.state(d) }
      assert_eq(r.code, 0, r.stderr .. r.stdout)
      local rb = support.relish { "rollback", "last", "--state", support.state(d),
        env = { RELISH_FAULT = "fail-action:1,fail-step:1" } }
      assert_eq(rb.code, 0, rb.stderr .. rb.stdout)
    end)
end)

local testing = require "relish.testing"
local fs = require "relish.fs"

local LOCAL_RELEASE = fixture_path("../../recipes/local-release.lua")
local TAG_RELEASE = fixture_path("../../recipes/tag-release.lua")

-- targets with the test's directory d shown as D
local function rel(d, s)
  return (s:gsub(d:gsub("%p", "%%%0"), "D"))
end

describe("testing.plan", function()
  test("local-release's plan as data: steps, actions by step, nothing changed, no journal kept", function()
    local d = tmpdir()
    local plan = testing.plan(LOCAL_RELEASE, { deploy_to = d .. "/app", version = "v1" })
    assert_true(plan.ok, plan.error)
    assert_nil(plan.error)
    local steps = {}
    for i, s in ipairs(plan.steps) do steps[i] = s.name .. ": " .. s.status end
    assert_eq(steps, { "build release: done", "link shared files: done", "switch current: done",
      "health check: done", "clean up old releases: done" })
    local actions = {}
    for i, a in ipairs(plan.actions) do
      actions[i] = string.format("%d %s %s %s %s", a.step, a.step_name, a.kind, rel(d, a.target),
        a.irreversible and "irreversible" or "reversible")
    end
    assert_eq(actions, {
      "1 build release fs.mkdir D/app/releases/v1 reversible",
      "1 build release fs.mkdir D/app/releases/v1/assets reversible",
      "1 build release fs.copy D/app/releases/v1/assets/site.css reversible",
      "1 build release fs.mkdir D/app/releases/v1/config reversible",
      "1 build release fs.copy D/app/releases/v1/config/app.env reversible",
      "1 build release fs.copy D/app/releases/v1/index.html reversible",
      "1 build release fs.write D/app/releases/v1/REVISION reversible",
      "2 link shared files fs.mkdir D/app/shared/config reversible",
      "2 link shared files fs.copy D/app/shared/config/app.env reversible",
      "2 link shared files fs.symlink D/app/releases/v1/config/app.env reversible",
      "3 switch current fs.symlink D/app/current reversible",
    })
    assert_match(plan.actions[11].describe, "^symlink .*/app/current → .*/app/releases/v1")
    assert_false(fs.exists(d .. "/app"), "a plan changes nothing")
    -- invalid params: not ok, the exit code and the problem as data
    local bad = testing.plan(LOCAL_RELEASE, { deploy_to = d .. "/app", version = "no spaces" })
    assert_eq({ bad.ok, bad.code, #bad.actions }, { false, 2, 0 })
    assert_match(bad.error, "param 'version': \"no spaces\" does not match")
    assert_misuse(function() testing.plan(LOCAL_RELEASE, { deploy_to = d }, { dry = true }) end,
      "testing.plan: unknown option dry")
  end)
end)

describe("testing.run", function()
  test("local-release for real, then with a failure at step 3, a failed action and a crash: each rolled back",
    function()
      local d = tmpdir()
      local app = d .. "/app"
      local r = testing.run(LOCAL_RELEASE, { deploy_to = app, version = "v1" })
      assert_eq({ r.code, r.status, r.error }, { 0, "succeeded", nil }, r.stderr)
      assert_match(r.run_id, "^%d+%-%d+%-%x+$")
      assert_eq(#r.steps, 5)
      for _, s in ipairs(r.steps) do assert_eq(s.status, "done", s.name) end
      assert_eq(#r.actions, 12)
      for _, a in ipairs(r.actions) do assert_eq(a.status, "done", a.describe) end
      assert_eq(r.events[#r.events].event, "run_finished")
      local before = support.snapshot(app)
      assert_eq(before.current, "link -> " .. app .. "/releases/v1")
      local n = 0
      for k in pairs(before) do if k:match("^releases/[^/]+$") then n = n + 1 end end
      assert_eq(n, 1)

      -- step 3 ("switch current") fails: the new release and its links are undone
      local f = testing.run(LOCAL_RELEASE, { deploy_to = app, version = "v2" }, { fail_at_step = 3 })
      assert_eq({ f.code, f.status }, { 1, "rolled_back" }, f.stderr)
      assert_match(f.error, "^step \"switch current\": injected failure")
      assert_eq({ f.steps[3].status, f.steps[4].status }, { "failed", "pending" })
      local last = f.actions[#f.actions]
      assert_eq({ last.step_name, last.kind, rel(d, last.target) }, { "switch current", "fs.symlink", "D/app/current" })
      for _, a in ipairs(f.actions) do assert_eq(a.status, "undone", a.describe) end
      assert_eq(support.snapshot(app), before, "current and releases as before")

      -- the same by name, and the second action failing; the world restored each time
      local g = testing.run(LOCAL_RELEASE, { deploy_to = app, version = "v2" }, { fail_at_step = "link shared files" })
      assert_eq({ g.code, g.steps[2].status, g.actions[#g.actions].step }, { 1, "failed", 2 })
      assert_eq(support.snapshot(app), before)
      local h = testing.run(LOCAL_RELEASE, { deploy_to = app, version = "v2" }, { fail_at_action = 2 })
      assert_eq({ h.code, #h.actions, h.actions[2].status }, { 1, 2, "undone" })
      assert_match(h.actions[2].error, "RELISH_FAULT=fail%-action:2")
      assert_eq(support.snapshot(app), before)

      -- a crash (kill -9) before action 9, then `relish rollback last`
      local c = testing.run(LOCAL_RELEASE, { deploy_to = app, version = "v2" }, { crash_before_action = 9 })
      assert_eq({ c.crashed, c.rollback.code, c.status }, { "KILL", 0, "rolled_back" }, c.rollback.stderr)
      assert_eq(#c.actions, 9)
      assert_eq(support.snapshot(app), before)

      -- a step that does nothing through the gate cannot be failed: said, not passed
      assert_error(function()
        testing.run(LOCAL_RELEASE, { deploy_to = app, version = "v3" }, { fail_at_step = "health check" })
      end, "fail_at_step = health check: no action failed %(exit 0%)")
      assert_error(function() testing.run(LOCAL_RELEASE, { deploy_to = app }, { fail_at_step = "deploy" }) end,
        'no step named "deploy" %(the steps: "build release", "link shared files"')
    end)
end)

describe("fixtures", function()
  local NOTIFIED = [[
local notify = require "relish.notify"
local fs = require "relish.fs"
return recipe "notified" {
  params = { hook = param.string { required = true }, dir = param.string { required = true } },
  notify = { on_success = function(ctx, o)
    notify.webhook { url = ctx.params.hook .. "/hooks/release", json = { status = o.status, run_id = o.run_id },
      headers = { ["x-team"] = "platform" } }
  end },
  step "write" { run = function(ctx) fs.write(ctx.params.dir .. "/f", "x") end },
}
]]
  local left = {}

  test("http_stub: a recipe's notify webhook reaches it, recorded; an unknown route is a 404", function()
    local stub = testing.http_stub { routes = {
      ["POST /hooks/release"] = { status = 202, json = { ok = true }, headers = { ["x-stub"] = "1" } },
      ["GET /version"] = { body = "1.2.3\n" },
    } }
    assert_match(stub.url, "^http://127%.0%.0%.1:%d+$")
    assert_eq(stub.requests, {})
    local d = tmpdir()
    local file = support.recipe(d, "notified.lua", NOTIFIED)
    local r = testing.run(file, { hook = stub.url, dir = d })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    local seen = stub.requests
    assert_eq(#seen, 1)
    assert_eq({ seen[1].method, seen[1].path, seen[1].headers["x-team"], seen[1].headers["content-type"] },
      { "POST", "/hooks/release", "platform", "application/json" })
    assert_eq(json.decode(seen[1].body), { status = "succeeded", run_id = r.run_id })
    -- the stub answers as told, in this process too
    local http = require "relish.http"
    local v = http.request { url = stub.url .. "/version?x=1", retries = 0, effect = false }
    assert_eq({ v.status, v.body }, { 200, "1.2.3\n" })
    local p = http.request { method = "POST", url = stub.url .. "/hooks/release", json = {}, retries = 0, effect = false }
    assert_eq({ p.status, p.headers["x-stub"], json.decode(p.body) }, { 202, "1", { ok = true } })
    local nf = http.request { url = stub.url .. "/nope", retries = 0, effect = false }
    assert_eq({ nf.status, nf.body }, { 404, "no stub route for GET /nope\n" })
    assert_eq({ #stub.requests, stub.requests[2].query }, { 4, "x=1" })
    left.pid, left.dir, left.journal = stub.pid, stub.dir, r.journal:match("^sqlite:(.*)/[^/]*$")
  end)

  test("what the kit started ends with the test: the stub stopped, its files and the journal removed", function()
    assert_true(left.pid ~= nil, "the previous test ran")
    local stat = support.read("/proc/" .. left.pid .. "/stat")
    assert_true(stat == nil or stat:match("^%d+ %b() (%a)") == "Z", "the stub's process ended")
    assert_false(fs.exists(left.dir))
    assert_false(fs.exists(left.journal))
  end)

  test("git_repo: tag-release's plan, then its release, then a failure at the tag step rolled back", function()
    local repo = testing.git_repo {
      files = { ["README.md"] = "# project\n", ["CHANGELOG.md"] = "# Changelog\n" },
      message = "feat: first release", tags = { "v1.0.0" },
      commits = { { message = "feat: search", files = { ["src/search.txt"] = "search\n" } },
        { message = "fix: crash on empty input", files = { ["src/fix.txt"] = "fix\n" } } },
    }
    assert_eq(repo:tags(), { "v1.0.0" })
    assert_eq(repo:tags(true), { "v1.0.0" }, "the remote has the tag")
    assert_eq(repo:remote_git("rev-parse", "main"), repo:git("rev-parse", "HEAD"))
    assert_eq(repo:git("config", "remote.origin.url"), repo.remote)

    local plan = testing.plan(TAG_RELEASE, { repo = repo.path })
    assert_true(plan.ok, plan.error)
    local kinds = {}
    for i, a in ipairs(plan.actions) do kinds[i] = a.step_name .. ": " .. a.kind end
    assert_eq(kinds, { "commit the changelog: git.commit", "tag: git.tag", "push: git.push" })
    assert_match(plan.actions[2].target, "v1%.1%.0")

    -- the tag step fails: the changelog commit is undone, nothing reached the remote
    local head = repo:git("rev-parse", "HEAD")
    local f = testing.run(TAG_RELEASE, { repo = repo.path }, { fail_at_step = "tag" })
    assert_eq({ f.code, f.status }, { 1, "rolled_back" }, f.stderr)
    assert_eq(repo:tags(), { "v1.0.0" })
    assert_eq(repo:git("rev-parse", "HEAD"), head)
    assert_eq(repo:remote_git("rev-parse", "main"), head)

    local r = testing.run(TAG_RELEASE, { repo = repo.path })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(repo:tags(true), { "v1.0.0", "v1.1.0" })
    assert_eq(repo:remote_git("rev-parse", "main"), repo:git("rev-parse", "HEAD"))
    assert_match(repo:git("show", "HEAD:CHANGELOG.md"), "## v1%.1%.0.*search.*crash on empty input")
  end)

  test("k8s: the Kubernetes API double started for a test (its script found from the binary), stopped after", function()
    local double = require "relish.testing.k8s"
    if not double.available() then skip("python3 or openssl is not installed") end
    assert_match(double.script(), "/tests/fixtures/k8s_api%.py$")
    local k = testing.k8s { time_scale = 0.01 }
    assert_match(k.server, "^https://127%.0%.0%.1:%d+$")
    local status, body = k:json("POST", "/api/v1/namespaces/default/configmaps",
      { json = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "kit" }, data = { a = "1" } } })
    assert_eq(status, 201)
    assert_eq(k:get("/api/v1/namespaces/default/configmaps/kit").data, { a = "1" })
    left.k8s_dir = k.dir
  end)

  test("the double ended with its test", function()
    if not left.k8s_dir then skip("the double did not run") end
    assert_false(fs.exists(left.k8s_dir))
  end)
end)
