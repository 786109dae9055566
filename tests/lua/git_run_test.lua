-- relish.git in real runs of a recipe (commit, annotated tag, push over
-- git://): a failure after the push rolls back both repositories; a crash
-- (RELISH_FAULT) at every action followed by `relish rollback last` does
-- too; a dry-run changes nothing in either; a saved plan applies, and is
-- refused when the remote moved since.
local G = require "gitsupport"
local support = require "support"
local json = require "relish.json"

local relish = support.relish

local daemon
after_each(function()
  if daemon then daemon:stop() end
  daemon = nil
end)

local RECIPE = [[
local git = require "relish.git"
return recipe "git-release" {
  params = {
    repo = param.string { required = true },
    version = param.string { required = true },
    fail = param.boolean { default = false },
  },
  step "commit" { run = function(ctx)
    local repo <close> = assert(git.open(ctx.params.repo))
    local old = io.open(repo:path() .. "/CHANGELOG.md"):read("a")
    ctx.state.commit = assert(repo:commit { files = { ["CHANGELOG.md"] = "## " .. ctx.params.version .. "\n" .. old },
      message = "chore(release): " .. ctx.params.version })
  end },
  step "tag" { run = function(ctx)
    local repo <close> = assert(git.open(ctx.params.repo))
    assert(repo:tag(ctx.params.version, { message = "Release " .. ctx.params.version }))
  end },
  step "push" { run = function(ctx)
    local repo <close> = assert(git.open(ctx.params.repo))
    assert(repo:push { refspecs = { "main", ctx.params.version } })
  end },
  step "verify" { run = function(ctx)
    if ctx.params.fail then error("the release did not come up") end
  end },
}
]]

-- The same release with no assert anywhere: a failure raises by itself.
local UNCHECKED = [[
local git = require "relish.git"
return recipe "git-release-unchecked" {
  params = { repo = param.string { required = true }, version = param.string { required = true } },
  step "release" { run = function(ctx)
    local repo <close> = git.open(ctx.params.repo)
    repo:commit { files = { ["CHANGELOG.md"] = "## " .. ctx.params.version .. "\n" }, message = "chore(release): " .. ctx.params.version }
    repo:tag(ctx.params.version, { message = "Release " .. ctx.params.version })
    repo:push { refspecs = { "main", ctx.params.version } }
    ctx.log("reached the end of the step")
  end },
}
]]

-- A remote served by a git daemon and a clone that releases to it.
local function world(d)
  local remote = G.bare(d, "remote.git")
  local w = G.repo(d, "work", { remote = remote, files = { ["CHANGELOG.md"] = "## v1.0.0\n" } })
  G.git(w, "tag", "-a", "v1.0.0", "-m", "one")
  G.git(w, "push", "-q", "origin", "main", "v1.0.0")
  daemon = G.daemon(d)
  G.git(w, "remote", "set-url", "origin", daemon.url .. "remote.git")
  G.git(w, "fetch", "-q", "origin")
  return remote, w, support.recipe(d, "release.lua", RECIPE)
end

local function run(d, args, extra)
  local argv = { "run" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv[#argv + 1] = "--state"
  argv[#argv + 1] = support.state(d)
  argv.env = G.env(extra)
  return relish(argv)
end

-- The refs a release changes, and the remote's main as a tree: a rollback
-- either puts main back or pushes a revert whose tree is the old one.
local function local_refs(w)
  local r = G.refs(w, "refs/heads")
  for k, v in pairs(G.refs(w, "refs/tags")) do r[k] = v end
  return r
end

local function remote_view(remote)
  return { tags = G.refs(remote, "refs/tags"), tree = G.git(remote, "rev-parse", "main^{tree}") }
end

describe("a release run", function()
  test("succeeds: git sees the commit and the tag on the remote", function()
    local d = tmpdir()
    local remote, w, recipe = world(d)
    local r = run(d, { recipe, "-p", "repo=" .. w, "-p", "version=v1.1.0" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(G.rev(remote, "main"), G.rev(w, "main"))
    assert_eq(G.git(remote, "describe", "main"), "v1.1.0")
    assert_eq(G.git(remote, "show", "main:CHANGELOG.md"), "## v1.1.0\n## v1.0.0")
    assert_true(G.fsck(remote))
    assert_true(G.fsck(w))
  end)

  test("fails after the push: the tag goes here and there, the commit is reverted and pushed", function()
    local d = tmpdir()
    local remote, w, recipe = world(d)
    local lb, rb = local_refs(w), remote_view(remote)
    local pushed_before = G.rev(remote, "main")
    local r = run(d, { recipe, "-p", "repo=" .. w, "-p", "version=v1.1.0", "-p", "fail=true" })
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, "the release did not come up")
    -- the local branch follows the revert pushed (the next release starts there)
    lb["refs/heads/main"] = G.rev(remote, "main")
    assert_eq(local_refs(w), lb)
    assert_eq(G.rev(w, "refs/remotes/origin/main"), G.rev(remote, "main"))
    assert_eq(G.git(w, "status", "--porcelain"), "")
    assert_eq(G.read(w .. "/CHANGELOG.md"), "## v1.0.0\n")
    assert_eq(remote_view(remote), rb)
    assert_nil(G.rev(remote, "refs/tags/v1.1.0"))
    assert_eq(G.git(remote, "log", "--format=%s", "-2", "main"), 'Revert "chore(release): v1.1.0"\nchore(release): v1.1.0')
    assert_eq(G.git(remote, "rev-parse", "main~2"), pushed_before)
    local rb2 = relish { "rollback", "last", "--state", support.state(d), env = G.env() }
    assert_eq(rb2.code, 0, rb2.stderr .. rb2.stdout)
    assert_eq(G.git(remote, "log", "--format=%s", "-1", "main"), 'Revert "chore(release): v1.1.0"', "no second revert")
    assert_true(G.fsck(remote))
  end)

  for _, where in ipairs { "before", "after" } do
    for n = 1, 3 do
      test(string.format("crash %s action %d, then rollback last: both repositories as before", where, n), function()
        local d = tmpdir()
        local remote, w, recipe = world(d)
        local lb, rb = local_refs(w), remote_view(remote)
        local r = run(d, { recipe, "-p", "repo=" .. w, "-p", "version=v1.1.0" },
          { RELISH_FAULT = string.format("crash-%s-action:%d", where, n) })
        assert_eq(r.signal, "KILL", r.stderr .. r.stdout)
        local rb2 = relish { "rollback", "last", "--state", support.state(d), env = G.env() }
        assert_eq(rb2.code, 0, rb2.stderr .. rb2.stdout)
        if where == "after" and n == 3 then lb["refs/heads/main"] = G.rev(remote, "main") end -- on the revert
        assert_eq(local_refs(w), lb)
        assert_eq(G.git(w, "status", "--porcelain"), "")
        assert_eq(remote_view(remote), rb)
        assert_eq(G.refs(w, "refs/relish"), {})
        assert_true(G.fsck(w))
        assert_true(G.fsck(remote))
      end)
    end
  end

  test("a push refused as non-fast-forward fails its step (no assert needed) and rolls back the commit and the tag", function()
    local d = tmpdir()
    local remote, w = world(d)
    local recipe = support.recipe(d, "unchecked.lua", UNCHECKED)
    local other = G.clone(remote, d .. "/other")
    G.commit(other, { ["theirs.txt"] = "t\n" }, "theirs")
    G.git(other, "push", "-q", "origin", "main")
    local lb, rb = local_refs(w), G.refs(remote)
    local r = run(d, { recipe, "-p", "repo=" .. w, "-p", "version=v1.1.0" })
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, "git%.push [^\n]*: refs/heads/main on the remote %(at %x+%) has commits you do not have: fetch first")
    assert_nil(r.stdout:find("reached", 1, true), "the step after the push never ran")
    assert_eq(local_refs(w), lb)
    assert_eq(G.git(w, "status", "--porcelain"), "")
    assert_eq(G.read(w .. "/CHANGELOG.md"), "## v1.0.0\n")
    assert_eq(G.refs(remote), rb)
    local show = relish { "show", "last", "--format", "json", "--state", support.state(d), env = G.env() }
    local run_row = json.decode(show.stdout)
    assert_eq(run_row.status, "rolled_back", show.stdout)
    local kinds = {}
    for _, a in ipairs(run_row.actions) do kinds[#kinds + 1] = a.kind .. " " .. a.status end
    assert_eq(kinds, { "git.commit undone", "git.tag undone" }, show.stdout)
  end)

  test("a dry-run changes nothing in either repository and shows ref → commit with the diffstat", function()
    local d = tmpdir()
    local remote, w, recipe = world(d)
    G.git(w, "gc", "-q")
    local before = { local_refs(w), G.objects(w), G.refs(remote), G.objects(remote), G.git(w, "status", "--porcelain") }
    local r = run(d, { recipe, "-p", "repo=" .. w, "-p", "version=v1.1.0", "--dry-run", "--output", "json" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq({ local_refs(w), G.objects(w), G.refs(remote), G.objects(remote), G.git(w, "status", "--porcelain") }, before)
    local planned = {}
    for line in r.stdout:gmatch("[^\n]+") do
      local ev = json.decode(line)
      if ev.event == "action_planned" then planned[#planned + 1] = ev end
    end
    assert_eq(#planned, 3)
    local commit = planned[1].describe:match("→ (%x+)")
    assert_match(planned[1].describe, "^commit on main %x+ → %x+ \"chore%(release%): v1%.1%.0\" %(1 file changed, 1 insertion%(%+%), 0 deletions%(%-%)%)")
    assert_match(planned[1].detail or "", "CHANGELOG%.md | 1 %+")
    assert_match(planned[2].describe, "^tag v1%.1%.0 → " .. commit)
    assert_match(planned[3].describe, "refs/heads/main %x+ → " .. commit)
    assert_match(planned[3].describe, "refs/tags/v1%.1%.0 %(new%)")
  end)

  test("a saved plan applies; after the remote moved it is refused and nothing stays changed", function()
    local d = tmpdir()
    local remote, w, recipe = world(d)
    local p = relish { "plan", recipe, "-p", "repo=" .. w, "-p", "version=v1.1.0", "-o", d .. "/plan.json",
      "--state", support.state(d), env = G.env() }
    assert_eq(p.code, 0, p.stderr .. p.stdout)
    local plan = json.decode(G.read(d .. "/plan.json"))
    assert_eq(#plan.actions, 3)
    assert_eq(plan.actions[1].fingerprint, "refs/heads/main=" .. G.rev(w, "main"))
    assert_eq(plan.actions[2].fingerprint, "refs/tags/v1.1.0=absent")
    assert_eq(plan.actions[3].fingerprint, "refs/heads/main=" .. G.rev(remote, "main") .. " refs/tags/v1.1.0=absent")
    -- someone pushes first: applying the plan fails at the push (not a
    -- fast-forward) and rolls back the commit and the tag
    local other = G.clone(remote, d .. "/other")
    G.commit(other, { ["theirs.txt"] = "t\n" }, "theirs")
    G.git(other, "push", "-q", "origin", "main")
    local lb, rb = local_refs(w), G.refs(remote)
    local a = relish { "apply", d .. "/plan.json", "--state", support.state(d), env = G.env() }
    assert_eq(a.code, 1, a.stderr .. a.stdout)
    assert_match(a.stdout, "fetch first")
    assert_eq(local_refs(w), lb)
    assert_eq(G.refs(remote), rb)
    -- catching up moves main here: the plan's commit no longer holds at all
    G.git(w, "pull", "-q", "--rebase", "origin", "main")
    lb = local_refs(w)
    a = relish { "apply", d .. "/plan.json", "--state", support.state(d), env = G.env() }
    assert_eq(a.code, 1, a.stderr .. a.stdout)
    assert_match(a.stdout, "the live state of [^\n]*refs/heads/main changed since the plan")
    assert_eq(local_refs(w), lb)
    assert_eq(G.refs(remote), rb)
    -- a fresh plan against the new state applies
    p = relish { "plan", recipe, "-p", "repo=" .. w, "-p", "version=v1.1.0", "-o", d .. "/plan2.json",
      "--state", support.state(d), env = G.env() }
    assert_eq(p.code, 0, p.stderr .. p.stdout)
    a = relish { "apply", d .. "/plan2.json", "--state", support.state(d), env = G.env() }
    assert_eq(a.code, 0, a.stderr .. a.stdout)
    assert_eq(G.git(remote, "describe", "main"), "v1.1.0")
  end)
end)
