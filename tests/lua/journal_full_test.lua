-- A full disk under the journal during a rollback: the rollback keeps undoing
-- (the world matters more than the journal's rows), says what it could not
-- record and exits 3, never "rolled back"; the room the run reserved next to
-- the journal lets a rollback record its rows. A real small tmpfs holds the
-- journal (root only: skipped elsewhere).
local support = require "support"
local json = require "relish.json"
local sh = require "relish.sh"

local relish, read, recipe = support.relish, support.read, support.recipe

-- Mounts a 4 MB tmpfs at d/mnt; nil when this test cannot (not root).
local function small_disk(d)
  local mnt = d .. "/mnt"
  assert(os.execute("mkdir -p " .. sh.quote(mnt)))
  local r = sh.run { argv = { "mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt }, check = false, timeout = 10 }
  if r.code ~= 0 then return nil end
  return mnt
end

local function unmount(mnt)
  sh.run { argv = { "umount", mnt }, check = false, timeout = 10 }
end

-- A run that writes five files in d/w, then fills the journal's disk and fails.
local function run_on_full_disk(d, mnt, env)
  assert(os.execute("mkdir -p " .. sh.quote(d .. "/w")))
  local f = recipe(d, "full.lua", [[
local fs = require "relish.fs"
local sh = require "relish.sh"
return recipe "full" {
  params = { dir = param.string { required = true }, fill = param.string { required = true } },
  step "write" { run = function(ctx) for i = 1, 5 do fs.write(ctx.params.dir .. "/f" .. i, "x") end end },
  step "fill" { run = function(ctx)
    sh.run { argv = { "sh", "-c", "dd if=/dev/zero of=" .. ctx.params.fill .. " bs=64k 2>/dev/null; true" },
      readonly = true }
    error("boom")
  end },
}
]])
  return relish { "run", f, "-p", "dir=" .. d .. "/w", "-p", "fill=" .. mnt .. "/filler",
    "--state", "sqlite:" .. mnt .. "/journal.db", env = env, timeout = 60 }
end

local function files_left(d)
  local n = 0
  for i = 1, 5 do if read(d .. "/w/f" .. i) then n = n + 1 end end
  return n
end

describe("a full disk during rollback", function()
  test("without room the rollback still undoes everything, lists what it could not record and exits 3", function()
    local d = tmpdir()
    local mnt = small_disk(d)
    if not mnt then skip("cannot mount a tmpfs (needs root)") end
    local ok, err = pcall(function()
      local r = run_on_full_disk(d, mnt, { RELISH_JOURNAL_RESERVE = "0" })
      assert_eq(r.code, 3, r.stderr .. r.stdout)
      assert_eq(files_left(d), 0, "every file undone")
      assert_match(r.stdout, "Rollback INCOMPLETE: left to do by hand:")
      assert_match(r.stdout, "fs%.write [^\n]*/w/f1 [^\n]*undone, but not recorded: journal: database or disk is full")
      assert_nil(r.stdout:find("Rollback complete", 1, true))
      assert_nil(r.stdout:find("rolled back", 1, true))
      -- with room again, `relish rollback` records it (undoing again changes nothing)
      os.remove(mnt .. "/filler")
      local rb = relish { "rollback", "last", "--state", "sqlite:" .. mnt .. "/journal.db" }
      assert_eq(rb.code, 0, rb.stderr .. rb.stdout)
      local s = json.decode(relish { "show", "last", "--format", "json", "--state", "sqlite:" .. mnt .. "/journal.db" }
        .stdout)
      assert_eq(s.status, "rolled_back")
    end)
    unmount(mnt)
    if not ok then error(err, 0) end
  end)

  test("the room reserved at the run's start takes the rollback's rows: exit 1, journaled", function()
    local d = tmpdir()
    local mnt = small_disk(d)
    if not mnt then skip("cannot mount a tmpfs (needs root)") end
    local ok, err = pcall(function()
      local r = run_on_full_disk(d, mnt, { RELISH_JOURNAL_RESERVE = "1048576" })
      assert_eq(r.code, 1, r.stderr .. r.stdout)
      assert_eq(files_left(d), 0)
      assert_match(r.stdout, "Rollback complete")
      os.remove(mnt .. "/filler")
      local s = json.decode(relish { "show", "last", "--format", "json", "--state", "sqlite:" .. mnt .. "/journal.db" }
        .stdout)
      assert_eq(s.status, "rolled_back")
      for _, a in ipairs(s.actions) do assert_eq(a.status, "undone") end
    end)
    unmount(mnt)
    if not ok then error(err, 0) end
  end)
end)
