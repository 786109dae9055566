-- relish show: an honest account of a run after the fact: its own outcome and
-- exit code, each step's duration and history, the final state of each action,
-- and every rollback attempt (a failed one, then one that completed it).
local support = require "support"
local json = require "relish.json"
local relish, recipe, read, write = support.relish, support.recipe, support.read, support.write

-- upload's undo needs a token that is missing the first time: the run's own
-- rollback is incomplete (exit 3); `relish rollback` completes it later
local SHIP = support.read(fixture_path("recipes/ship.lua"))

local function failed_then_rolled_back()
  local d = tmpdir()
  local f = recipe(d, "ship.lua", SHIP)
  local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
  assert_eq(r.code, 3, r.stdout .. r.stderr)
  write(d .. "/token", "t")
  r = relish { "rollback", "last", "--state", support.state(d) }
  assert_eq(r.code, 0, r.stdout .. r.stderr)
  assert_nil(read(d .. "/uploaded"))
  assert_nil(read(d .. "/built"))
  return d
end

local function show(d, fmt)
  local r = relish { "show", "last", "--format", fmt, "--state", support.state(d) }
  assert_eq(r.code, 0, r.stdout .. r.stderr)
  return r.stdout
end

describe("show after a failed rollback completed by a second one", function()
  test("json: the run's outcome and exit code, steps' history, rollback attempts, no negative steps", function()
    local d = failed_then_rolled_back()
    local s = json.decode(show(d, "json"))
    assert_eq({ s.status, s.outcome, s.exit_code }, { "rolled_back", "rollback_failed", 3 })
    assert_true(s.duration_s >= 0)
    -- attempts: the run's own (incomplete, with what was left), then relish rollback (complete)
    assert_eq(#s.rollbacks, 2)
    local a1, a2 = s.rollbacks[1], s.rollbacks[2]
    assert_eq({ a1.n, a1.requested, a1.status, a1.undone }, { 1, false, "incomplete", 1 })
    assert_match(a1.reason, "verification failed")
    assert_eq(#a1.left, 1)
    assert_match(a1.left[1], "SHIP_TOKEN is not set")
    assert_eq({ a2.n, a2.requested, a2.status, a2.undone, a2.left }, { 2, true, "complete", 1, {} })
    assert_eq(a2.by, os.getenv("USER") or a2.by)
    assert_match(a2.started_at, "Z$")
    -- steps: durations, and upload's failed undo is history, not its state
    local up = s.steps[2]
    assert_eq({ up.name, up.status, up.error, up.undone_by }, { "upload", "undone", json.null, 2 })
    assert_match(up.undo_error, "SHIP_TOKEN is not set$")
    assert_match(up.history[1], "^undo failed: [^\n]*SHIP_TOKEN is not set$")
    assert_match(up.history[2], "^undone by rollback 2 at ")
    for _, st in ipairs(s.steps) do assert_true(st.duration_s >= 0, st.name) end
    assert_eq(s.steps[3].status, "failed")
    assert_match(s.steps[3].error, "verification failed$")
    -- actions: no negative step; the undo's remove is the second attempt's, named by its step
    local remove
    for _, a in ipairs(s.actions) do
      assert_true(a.step > 0, "action " .. a.seq .. " has step " .. a.step)
      if a.kind == "fs.remove" then remove = a end
    end
    assert_eq({ remove.phase, remove.rollback, remove.step, remove.step_name, remove.status, remove.irreversible },
      { "rollback", 2, 2, "upload", "done", false })
    assert_eq(a2.actions, { remove.seq })
    local built = s.actions[1]
    assert_eq({ built.kind, built.phase, built.status, built.undone_by }, { "fs.write", "step", "undone", 1 })
  end)

  test("text: outcome with exit code, then the later rollback; rollbacks listed; no [step -N]", function()
    local d = failed_then_rolled_back()
    local t = show(d, "text")
    assert_match(t, "^run %S+  ship  rolled_back\n")
    assert_match(t, "\n  outcome: rollback_failed %(exit 3%); then relish rollback at %S+ by %S+: complete, 1 undone\n")
    assert_nil(t:find("rolled_back (exit", 1, true))
    assert_nil(t:find("step -", 1, true))
    assert_nil(t:find("irreversible", 1, true))
    assert_match(t, "\n   2 upload%s+undone%s+%d+m?s  undo failed: [^;\n]*SHIP_TOKEN is not set; undone by rollback 2 at ")
    assert_match(t, "\n   3 verify%s+failed%s+%d+m?s  [^\n]*verification failed\n")
    assert_match(t, "\n  1%. %S+ by %S+, on failure %(step \"verify\": [^\n]*verification failed%): incomplete, 1 undone")
    assert_match(t, "\n      left: undo of step \"upload\"[^\n]*SHIP_TOKEN is not set\n")
    assert_match(t, "\n  2%. %S+ by %S+, relish rollback: complete, 1 undone")
    assert_match(t, "\n%s+%d+ undo of upload: fs%.remove done ")
  end)
  -- markdown, the postmortem draft: tests/lua/show_markdown_test.lua
end)

describe("show of a run rolled back later", function()
  test("a succeeded run rolled back by relish rollback keeps its exit code, the rollback shown apart", function()
    local d = tmpdir()
    local f = recipe(d, "ok.lua", [[
local fs = require "relish.fs"
return recipe "ok" {
  params = { dir = param.string { required = true } },
  step "write" { run = function(ctx) fs.write(ctx.params.dir .. "/x", "X") end },
}
]])
    assert_eq(relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }.code, 0)
    assert_eq(relish { "rollback", "last", "--state", support.state(d) }.code, 0)
    local t = show(d, "text")
    assert_match(t, "^run %S+  ok  rolled_back\n  outcome: succeeded %(exit 0%); then relish rollback at ")
    local s = json.decode(show(d, "json"))
    assert_eq({ s.status, s.outcome, s.exit_code, #s.rollbacks }, { "rolled_back", "succeeded", 0, 1 })
    assert_eq(s.actions[1].undone_by, 1)
  end)
end)
