-- Locks as a user meets them: `relish lock list` (text and JSON) and
-- --wait-lock, which waits for a held lock instead of exiting 4.
local support = require "support"
local json = require "relish.json"
local sh = require "relish.sh"

local relish = support.relish

-- A lease held by a live process on another host (it cannot be taken over).
local function hold(d, name, run_id, expires_at)
  local journal = require("relish.journal").open(support.state(d))
  journal.db:exec("INSERT INTO locks (name, run_id, user, host, pid, acquired_at, expires_at) " ..
    "VALUES (?, ?, 'u', 'elsewhere', 1, '2026-01-01T00:00:00.000Z', ?)", name, run_id, expires_at or 9e12)
  journal:close()
end

describe("lock list", function()
  test("nothing held: 'No locks held', and [] with --output json", function()
    local d = tmpdir()
    local r = relish { "lock", "list", "--state", support.state(d) }
    assert_eq({ r.code, r.stdout }, { 0, "No locks held\n" })
    r = relish { "lock", "list", "--output", "json", "--state", support.state(d) }
    assert_eq({ r.code, r.stdout }, { 0, "[]\n" })
  end)

  test("--output json is one array of locks, each with its holder and staleness", function()
    local d = tmpdir()
    hold(d, "b", "r2")
    hold(d, "a", "r1", 1) -- expired
    local r = relish { "lock", "list", "--output", "json", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stderr)
    local list = json.decode(r.stdout)
    assert_eq(#list, 2)
    assert_eq({ list[1].name, list[1].run_id, list[1].stale, list[1].stale_reason },
      { "a", "r1", true, "its lease expired" })
    assert_eq({ list[2].name, list[2].run_id, list[2].host, list[2].stale, list[2].stale_reason },
      { "b", "r2", "elsewhere", false, json.null })
  end)
end)

describe("--wait-lock", function()
  local RECIPE = [[
return recipe "w" {
  lock = "shared",
  params = { dir = param.string { required = true } },
  step "s" { run = function(ctx)
    local fs = require "relish.fs"
    fs.write(ctx.params.dir .. "/ran", "yes")
  end },
}
]]

  test("waits for a lock released meanwhile, showing the holder, then runs", function()
    local d = tmpdir()
    local f = support.recipe(d, "w.lua", RECIPE)
    hold(d, "shared", "holder-run")
    -- the holder lets go after a second
    local script = string.format("%s run %s -p dir=%s --wait-lock 30s --state %s & pid=$!; sleep 1; " ..
      "%s lua %s; wait $pid; echo \"code=$?\"", sh.quote(relish_exe()), f, d, support.state(d),
      sh.quote(relish_exe()), d .. "/release.lua")
    support.write(d .. "/release.lua", string.format(
      "local j = require('relish.journal').open(%q); j:lock_release('shared', 'holder-run'); j:close()\n",
      support.state(d)))
    local r = assert(sh.run { argv = { "sh", "-c", script }, env = { NO_COLOR = "1" }, timeout = 60 })
    assert_match(r.stdout, "code=0")
    assert_match(r.stdout, "waiting up to 30%.0s for lock 'shared', held by run holder%-run %(user u, host elsewhere")
    assert_eq(support.read(d .. "/ran"), "yes")
  end)

  test("gives up after DURATION: exit 4 naming the holder, nothing recorded", function()
    local d = tmpdir()
    local f = support.recipe(d, "w.lua", RECIPE)
    hold(d, "shared", "holder-run")
    local r = relish { "run", f, "-p", "dir=" .. d, "--wait-lock", "1s", "--output", "json",
      "--state", support.state(d) }
    assert_eq(r.code, 4, r.stdout .. r.stderr)
    assert_match(r.stderr, "lock 'shared' is held by run holder%-run %(user u, host elsewhere[^\n]*; waited 1%.0s")
    local ev = json.decode(r.stdout:match("^[^\n]+"))
    assert_eq({ ev.event, ev.lock, ev.holder_run_id, ev.wait }, { "lock_wait", "shared", "holder-run", 1 })
    assert_nil(support.read(d .. "/ran"))
    local h = relish { "history", "--output", "json", "--state", support.state(d) }
    assert_eq(h.stdout, "")
  end)

  test("a stale lease is taken over at once, as without --wait-lock", function()
    local d = tmpdir()
    local f = support.recipe(d, "w.lua", RECIPE)
    hold(d, "shared", "expired-run", 1)
    local r = relish { "run", f, "-p", "dir=" .. d, "--wait-lock", "10m", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_false(r.stdout:find("waiting", 1, true) ~= nil, r.stdout)
    local s = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_match(s.events[1].text, "took over stale lock 'shared' from run expired%-run")
  end)

  test("rollback and resume wait too; a malformed duration is exit 2", function()
    local d = tmpdir()
    local f = support.recipe(d, "w.lua", RECIPE)
    assert_eq(relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }.code, 0)
    hold(d, "shared", "holder-run")
    local r = relish { "rollback", "last", "--wait-lock", "300ms", "--state", support.state(d) }
    assert_eq(r.code, 4, r.stdout .. r.stderr)
    assert_match(r.stderr, "held by run holder%-run[^\n]*; waited 300ms")
    assert_eq(support.read(d .. "/ran"), "yes", "nothing undone")
    r = relish { "resume", "last", "--wait-lock", "soon", "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "%-%-wait%-lock: cannot read duration \"soon\"")
    r = relish { "run", f, "-p", "dir=" .. d, "--wait-lock", "0s", "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "%-%-wait%-lock must be positive")
  end)
end)
