-- recipes/local-release.lua, in dry-run and for real: releases, shared files,
-- the current switch, a failed health check, rollback to the previous release.
local support = require "support"
local json = require "relish.json"
local fs = require "relish.fs"

local relish, read = support.relish, support.read
local RECIPE = fixture_path("../../recipes/local-release.lua")

local function release(d, version, extra)
  local args = { "run", RECIPE, "-p", "deploy_to=" .. d .. "/app", "-p", "version=" .. version,
    "--state", support.state(d) }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return relish(args)
end

local function current(d)
  local st = fs.stat(d .. "/app/current")
  return st and st.target:match("[^/]+$")
end

describe("local-release", function()
  test("dry-run shows the release and changes nothing", function()
    local d = tmpdir()
    local r = release(d, "r1", { "--dry-run" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_false(fs.exists(d .. "/app"))
    assert_match(r.stdout, "%+ mkdir [^\n]*/app/releases/r1")
    assert_match(r.stdout, "%+ symlink [^\n]*/app/current → [^\n]*/releases/r1")
    assert_match(r.stdout, "%+<h1>Deployed by relish")
  end)

  test("releases, links shared files, switches current, keeps the newest", function()
    local d = tmpdir()
    assert_eq(release(d, "r1").code, 0)
    assert_eq(current(d), "r1")
    assert_eq(read(d .. "/app/current/REVISION"), "r1\n")
    assert_eq(fs.stat(d .. "/app/current/config/app.env").type, "link")
    -- a setting changed in shared/ survives the next release
    support.write(d .. "/app/shared/config/app.env", "LISTEN=0.0.0.0:9090\n")
    for _, v in ipairs { "r2", "r3", "r4" } do
      local r = release(d, v)
      assert_eq(r.code, 0, r.stderr .. r.stdout)
    end
    assert_eq(current(d), "r4")
    assert_eq(read(d .. "/app/current/config/app.env"), "LISTEN=0.0.0.0:9090\n")
    assert_eq(fs.list(d .. "/app/releases"), { "r2", "r3", "r4" }, "keep = 3")
  end)

  test("a failed health check rolls back to the previous release", function()
    local d = tmpdir()
    assert_eq(release(d, "r1").code, 0)
    local before = support.snapshot(d .. "/app")
    local r = release(d, "r2", { "-p", "health=exit 3" })
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, "`sh %-c 'exit 3'` exited with code 3")
    assert_eq(current(d), "r1")
    assert_eq(support.snapshot(d .. "/app"), before)
  end)

  test("relish rollback last returns to the previous release, pruned ones included", function()
    local d = tmpdir()
    for _, v in ipairs { "r1", "r2", "r3" } do assert_eq(release(d, v).code, 0) end
    local before = support.snapshot(d .. "/app")
    assert_eq(release(d, "r4").code, 0)
    assert_eq(current(d), "r4")
    assert_eq(fs.list(d .. "/app/releases"), { "r2", "r3", "r4" })
    local r = relish { "rollback", "last", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(current(d), "r3")
    assert_eq(support.snapshot(d .. "/app"), before, "r1 restored as it was, r4 gone")
    local h = json.decode(relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_eq(h.status, "rolled_back")
  end)

  test("an existing release version is refused without changes", function()
    local d = tmpdir()
    assert_eq(release(d, "r1").code, 0)
    local before = support.snapshot(d .. "/app")
    local r = release(d, "r1")
    assert_eq(r.code, 1)
    assert_match(r.stdout, "already exists")
    assert_eq(support.snapshot(d .. "/app"), before)
  end)
end)
