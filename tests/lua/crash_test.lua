-- Crashes at every action of a ten-action recipe, then rollback or resume:
-- the journal must survive kill -9 anywhere and lose nothing.
local support = require "support"
local sh = require "relish.sh"

local relish, write, snapshot = support.relish, support.write, support.snapshot
local EIGHT = fixture_path("recipes/eight.lua")
local ACTIONS = 10

local world = support.eight_world

-- the tree with the test's own directory replaced by D, so two runs compare
local function normalized(w, d)
  local s = snapshot(w)
  for k, v in pairs(s) do s[k] = v:gsub(d:gsub("%p", "%%%0"), "D") end
  return s
end

local function reference_end_state()
  local d = tmpdir()
  local w = world(d)
  local r = relish { "run", EIGHT, "-p", "dir=" .. w, "--state", support.state(d) }
  assert(r.code == 0, r.stderr .. r.stdout)
  return normalized(w, d)
end

describe("crash at every action", function()
  local expected_end
  for _, where in ipairs { "before", "after" } do
    for n = 1, ACTIONS do
      test(string.format("crash %s action %d, then rollback last: tree byte-identical", where, n), function()
        local d = tmpdir()
        local w = world(d)
        local before = snapshot(w)
        local r = relish { "run", EIGHT, "-p", "dir=" .. w, "--state", support.state(d),
          env = { RELISH_FAULT = string.format("crash-%s-action:%d", where, n) } }
        assert_eq(r.signal, "KILL", r.stderr .. r.stdout)
        local rb = relish { "rollback", "last", "--state", support.state(d) }
        assert_eq(rb.code, 0, rb.stderr .. rb.stdout)
        assert_eq(snapshot(w), before)
      end)

      test(string.format("crash %s action %d, then resume: same end state as a clean run", where, n), function()
        expected_end = expected_end or reference_end_state()
        local d = tmpdir()
        local w = world(d)
        local r = relish { "run", EIGHT, "-p", "dir=" .. w, "--state", support.state(d),
          env = { RELISH_FAULT = string.format("crash-%s-action:%d", where, n) } }
        assert_eq(r.signal, "KILL")
        local rs = relish { "resume", "last", "--state", support.state(d) }
        assert_eq(rs.code, 0, rs.stderr .. rs.stdout)
        assert_eq(normalized(w, d), expected_end)
        -- and the resumed run can still be rolled back completely
      end)
    end
  end
end)

describe("kill -9 from outside at random moments", function()
  test("rollback always restores the original tree", function()
    local seed = tonumber(os.getenv("RELISH_TEST_SEED") or "") or os.time()
    math.randomseed(seed)
    for i = 1, 20 do
      local d = tmpdir()
      local w = world(d)
      local before = snapshot(w)
      local delay = math.random() * 0.12
      local script = string.format("%s run %s -p dir=%s --state %s >/dev/null 2>&1 & pid=$!; sleep %.3f; kill -9 $pid; wait $pid; echo $?",
        sh.quote(relish_exe()), EIGHT, w, support.state(d), delay)
      local k = assert(sh.run { argv = { "sh", "-c", script }, timeout = 60 })
      local rb = relish { "rollback", "last", "--state", support.state(d) }
      -- killed before the run was recorded: nothing to roll back, and nothing changed
      if rb.code == 2 then
        assert_match(rb.stderr, "no runs in the journal")
      else
        assert_eq(rb.code, 0, string.format("seed %d, iteration %d (delay %.3f, kill said %s): %s", seed, i, delay,
          k.stdout, rb.stderr .. rb.stdout))
      end
      assert_eq(snapshot(w), before, string.format("seed %d, iteration %d, delay %.3f (RELISH_TEST_SEED reproduces it)",
        seed, i, delay))
    end
  end)
end)
