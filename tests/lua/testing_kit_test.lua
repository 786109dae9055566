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
