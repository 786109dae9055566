-- recipes/tag-release.lua and recipes/gitops-release.lua against real
-- repositories: dry-run and real runs, bare remotes by path and through a
-- git daemon (git://), failures after the push rolled back, `relish rollback`
-- of a finished run, and a crash at every action of tag-release followed by
-- `relish rollback last` restoring both repositories' refs.
local G = require "gitsupport"
local support = require "support"
local json = require "relish.json"

local TAG_RELEASE = fixture_path("../../recipes/tag-release.lua")
local GITOPS_RELEASE = fixture_path("../../recipes/gitops-release.lua")

local function fixture(name)
  local f = assert(io.open(fixture_path("gitops/" .. name), "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local daemons = {}
after_each(function()
  for _, dm in ipairs(daemons) do dm:stop() end
  daemons = {}
end)

local function daemon(d)
  local dm = G.daemon(d)
  daemons[#daemons + 1] = dm
  return dm
end

-- relish with the git CLI's isolation (no global config, fixed identities),
-- in cwd (default: the test's)
local function relish(d, args, env, cwd)
  args.env, args.cwd = G.env(env), cwd
  args[#args + 1] = "--state"
  args[#args + 1] = support.state(d)
  return support.relish(args)
end

local function show_last(d)
  local r = relish(d, { "show", "last", "--format", "json" })
  return json.decode(r.stdout)
end

-- A project with a released v1.0.0 (and a CHANGELOG), pushed, then new work:
-- commits is a list of messages (each changes a file of its own).
local function project(d, commits, opts)
  opts = opts or {}
  local remote = G.bare(d, "project.git")
  local url = opts.url and (opts.url .. "project.git") or remote
  local work = G.repo(d, "work", { remote = url, files = { ["README.md"] = "# project\n",
    ["CHANGELOG.md"] = "# Changelog\n\nAll notable changes.\n\n## v1.0.0 (2026-01-01)\n\n- first release\n" },
    message = "feat: first release" })
  G.git(work, "tag", "-a", "v1.0.0", "-m", "Release v1.0.0")
  for i, m in ipairs(commits or {}) do
    G.commit(work, { ["src/change" .. i .. ".txt"] = m .. "\n" }, m)
  end
  G.git(work, "push", "-q", "origin", "main", "v1.0.0")
  return remote, work
end

local function tag_release(d, work, extra, env)
  local args = { "run", TAG_RELEASE, "-p", "repo=" .. work }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return relish(d, args, env)
end

describe("tag-release", function()
  test("dry-run shows the version, the notes, the commit's diffstat, the tag and the push; nothing changes", function()
    local d = tmpdir()
    local remote, work = project(d, { "feat(api): orders endpoint", "fix: empty body", "chore: tidy" })
    local before, rbefore = G.refs(work), G.refs(remote)
    local r = tag_release(d, work, { "--dry-run" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(r.stdout, "v1%.0%.0 → v1%.1%.0 %(minor, 3 commit%(s%)%)")
    assert_match(r.stdout, "### Features")
    assert_match(r.stdout, "%- %*%*api:%*%* orders endpoint %(%x+, Ada Tester%)")
    -- the notes keep their blank lines
    assert_match(r.stdout, "\n      ## v1%.1%.0 %([%d-]+%)\n    \n      ### Features\n    \n      %- %*%*api:%*%*")
    assert_match(r.stdout, "\n    \n      ### Bug fixes\n    \n      %- empty body")
    assert_match(r.stdout, "%+ commit on main %x+ → %x+ \"chore%(release%): v1%.1%.0\"")
    assert_match(r.stdout, "CHANGELOG%.md | %d+ %++")
    assert_match(r.stdout, "%+ tag v1%.1%.0 → %x+ %(annotated")
    assert_match(r.stdout, "%+ push to origin [^\n]*refs/heads/main %x+ → %x+, refs/tags/v1%.1%.0 %(new%)")
    assert_match(r.stdout, "Plan: 3 action%(s%), nothing changed%.")
    assert_eq(G.refs(work), before)
    assert_eq(G.refs(remote), rbefore)
    assert_eq(G.git(work, "status", "--porcelain"), "")
  end)

  test("releases: CHANGELOG on top, a commit, an annotated tag, both pushed; the git CLI reads them", function()
    local d = tmpdir()
    local remote, work = project(d, { "feat(api): orders endpoint", "fix: empty body" })
    local head = G.rev(work, "HEAD")
    local r = tag_release(d, work)
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    local tip = G.rev(work, "main")
    assert_eq(G.git(work, "rev-parse", "main^"), head)
    assert_eq(G.rev(remote, "main"), tip)
    assert_eq(G.rev(remote, "v1.1.0"), tip)
    assert_eq(G.git(remote, "cat-file", "-t", "v1.1.0"), "tag")
    assert_eq(G.git(work, "describe", "--tags"), "v1.1.0")
    local msg = G.git(remote, "tag", "-l", "--format=%(contents)", "v1.1.0")
    assert_match(msg, "^Release v1%.1%.0\n\n## v1%.1%.0 %(%d%d%d%d%-%d%d%-%d%d%)")
    assert_match(msg, "%- %*%*api:%*%* orders endpoint")
    assert_eq(G.git(work, "log", "-1", "--format=%s", "main"), "chore(release): v1.1.0")
    local cl = G.git(remote, "show", "main:CHANGELOG.md") .. "\n"
    assert_match(cl, "^# Changelog\n\nAll notable changes%.\n\n## v1%.1%.0 %(")
    assert_match(cl, "### Bug fixes\n\n%- empty body %(%x+, Ada Tester%)\n\n## v1%.0%.0 %(2026%-01%-01%)\n\n%- first release\n$")
    assert_eq(G.git(work, "status", "--porcelain"), "")
    assert_true(G.fsck(work))
    assert_true(G.fsck(remote))
    -- the next release starts from this one
    G.commit(work, { ["x.txt"] = "x\n" }, "feat!: new config format")
    r = tag_release(d, work)
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(r.stdout, "v1%.1%.0 → v2%.0%.0 %(major, 1 commit%(s%)%)")
    assert_match(G.git(remote, "show", "main:CHANGELOG.md"), "## v2%.0%.0 .*## v1%.1%.0 .*## v1%.0%.0")
  end)

  test("0.x: a breaking change bumps the minor version; params force a bump or a version", function()
    local d = tmpdir()
    local remote = G.bare(d, "p.git")
    local work = G.repo(d, "work", { remote = remote, message = "feat: start" })
    G.git(work, "tag", "v0.3.2")
    G.commit(work, { ["a"] = "a\n" }, "feat(core)!: rework everything")
    G.git(work, "push", "-q", "origin", "main", "v0.3.2")
    local r = tag_release(d, work, { "-p", "changelog=" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(r.stdout, "v0%.3%.2 → v0%.4%.0 %(minor")
    -- without a changelog the tag is on HEAD and only the tag is pushed
    assert_eq(G.rev(remote, "v0.4.0"), G.rev(work, "HEAD"))
    assert_nil(G.try(work, "cat-file", "-e", "HEAD:CHANGELOG.md").code == 0 or nil)
    G.commit(work, { ["b"] = "b\n" }, "fix: b")
    r = tag_release(d, work, { "-p", "bump=major" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(r.stdout, "v0%.4%.0 → v1%.0%.0 %(forced")
    G.commit(work, { ["c"] = "c\n" }, "fix: c")
    r = tag_release(d, work, { "-p", "version=1.5.0-rc.1" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_true(G.rev(remote, "v1.5.0-rc.1") ~= nil)
  end)

  test("a remote added by a relative path is the repository's, from any directory; so is the rollback", function()
    local d = tmpdir()
    local remote, work = project(d, { "fix: a" })
    G.git(work, "remote", "set-url", "origin", "../project.git") -- as `git remote add origin ../project.git`
    G.write(d .. "/x/y/.keep", "") -- where ../project.git is nothing
    local r = relish(d, { "run", TAG_RELEASE, "-p", "repo=" .. work }, nil, d .. "/x/y")
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(G.rev(remote, "v1.0.1"), G.rev(work, "HEAD"))
    assert_eq(G.rev(remote, "main"), G.rev(work, "main"))
    G.write(d .. "/a/b/c/.keep", "")
    r = relish(d, { "rollback", "last" }, nil, d .. "/a/b/c")
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_nil(G.rev(remote, "refs/tags/v1.0.1"))
    assert_match(G.git(remote, "log", "-1", "--format=%s", "main"), '^Revert "chore%(release%): v1%.0%.1"')
  end)

  test("nothing releasable: no commit, no tag, exit 0", function()
    local d = tmpdir()
    local remote, work = project(d, { "docs: typo", "chore: deps" })
    local before, rbefore = G.refs(work), G.refs(remote)
    local r = tag_release(d, work)
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(r.stdout, "nothing to release: 2 commit%(s%) since v1%.0%.0")
    assert_eq(G.refs(work), before)
    assert_eq(G.refs(remote), rbefore)
  end)

  test("refuses a dirty work tree, a branch behind its remote, an existing tag: nothing changes", function()
    local d = tmpdir()
    local remote, work = project(d, { "fix: a" })
    G.write(work .. "/README.md", "edited\n")
    local r = tag_release(d, work)
    assert_eq(r.code, 1)
    assert_match(r.stdout, "uncommitted changes")
    assert_match(r.stdout, "failed before changing anything %(exit 1%)")
    G.git(work, "checkout", "-q", "README.md")
    local other = G.clone(remote, d .. "/other")
    G.commit(other, { ["o.txt"] = "o\n" }, "fix: from elsewhere")
    G.git(other, "push", "-q", "origin", "main")
    local before, rbefore = G.refs(work), G.refs(remote)
    r = tag_release(d, work)
    assert_eq(r.code, 1)
    assert_match(r.stdout, "origin/main has commits this branch lacks %(%x+ fix: from elsewhere%): pull first")
    assert_match(r.stdout, "failed before changing anything %(exit 1%)")
    G.git(work, "pull", "-q", "--ff-only", "origin", "main")
    -- pre-releases are not releases, but their tags are taken
    G.git(work, "tag", "v1.0.1-rc.1")
    r = tag_release(d, work, { "-p", "version=1.0.1-rc.1" })
    assert_eq(r.code, 1)
    assert_match(r.stdout, "tag v1%.0%.1%-rc%.1 already exists")
    assert_eq(G.refs(remote), rbefore)
  end)

  test("a tag the remote has already makes the push fail; the local commit and tag are undone", function()
    local d = tmpdir()
    local remote, work = project(d, { "fix: a" })
    -- someone tagged v1.0.1 on a commit of their own, and pushed only the tag
    local other = G.clone(remote, d .. "/other")
    G.commit(other, { ["o.txt"] = "o\n" }, "fix: elsewhere")
    G.git(other, "tag", "-a", "v1.0.1", "-m", "theirs")
    G.git(other, "push", "-q", "origin", "v1.0.1")
    local before, rbefore = G.refs(work), G.refs(remote)
    local r = tag_release(d, work)
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, "refs/tags/v1%.0%.1")
    assert_match(r.stdout, "Rollback complete")
    assert_eq(G.refs(remote), rbefore)
    assert_eq(G.refs(work), before)
    assert_eq(G.git(work, "status", "--porcelain"), "")
  end)

  test("auth: a malformed value or a missing token variable stops before anything changes", function()
    local d = tmpdir()
    local remote, work = project(d, { "fix: a" })
    local before, rbefore = G.refs(work), G.refs(remote)
    local r = tag_release(d, work, { "-p", "auth=password" })
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, 'auth "password": use agent, key:PATH or env:VARIABLE')
    r = tag_release(d, work, { "-p", "auth=env:RELISH_TEST_NO_SUCH_TOKEN" })
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, "RELISH_TEST_NO_SUCH_TOKEN")
    -- a token is harmless where none is needed, and never printed
    r = tag_release(d, work, { "-p", "auth=env:RELISH_TEST_TOKEN" }, { RELISH_TEST_TOKEN = "s3cr3t-t0ken" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_false((r.stdout .. r.stderr):find("s3cr3t", 1, true) ~= nil)
    local shown = relish(d, { "show", "last", "--format", "json" })
    assert_false(shown.stdout:find("s3cr3t", 1, true) ~= nil)
    assert_eq(G.refs(work)["refs/heads/main"] ~= before["refs/heads/main"], true)
    assert_true(G.rev(remote, "v1.0.1") ~= nil)
    assert_true(rbefore["refs/tags/v1.0.1"] == nil)
  end)

  test("a failure after the push rolls back: tag deleted here and there, the commit reverted and pushed", function()
    local d = tmpdir()
    local remote, work = project(d, { "feat: x" })
    local head = G.rev(work, "HEAD")
    local changelog_before = G.read(work .. "/CHANGELOG.md")
    local r = tag_release(d, work, { "-p", "verify=test \"$TAG\" = v1.1.0 && echo smoke test failed >&2 && exit 3" })
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, "exited with code 3: smoke test failed")
    assert_match(r.stdout, "Rollback complete")
    assert_nil(G.rev(work, "refs/tags/v1.1.0"))
    assert_nil(G.rev(remote, "refs/tags/v1.1.0"))
    -- the remote keeps its history: the release commit and its revert; the
    -- local branch follows it, with the files as before the release
    assert_match(G.git(remote, "log", "-1", "--format=%s", "main"), '^Revert "chore%(release%): v1%.1%.0"')
    assert_eq(G.git(remote, "rev-parse", "main~2"), head)
    assert_eq(G.rev(work, "main"), G.rev(remote, "main"), "the local branch is on the revert, as the remote")
    assert_eq(G.rev(work, "refs/remotes/origin/main"), G.rev(remote, "main"))
    assert_match(r.stdout, "note: local main moved from %x+ to the revert %x+, as on origin")
    assert_eq(G.read(work .. "/CHANGELOG.md"), changelog_before)
    assert_eq(G.git(work, "status", "--porcelain"), "")
    assert_eq(G.git(remote, "diff", "--stat", head, "main"), "")
    assert_true(G.fsck(remote))
    assert_eq(show_last(d).status, "rolled_back")
  end)

  test("relish rollback of a finished release", function()
    local d = tmpdir()
    local remote, work = project(d, { "fix: y" })
    local head = G.rev(work, "HEAD")
    assert_eq(tag_release(d, work).code, 0)
    assert_true(G.rev(remote, "v1.0.1") ~= nil)
    local r = relish(d, { "rollback", "last" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_nil(G.rev(remote, "refs/tags/v1.0.1"))
    assert_nil(G.rev(work, "refs/tags/v1.0.1"))
    assert_eq(G.git(remote, "diff", "--stat", head, "main"), "")
    assert_eq(G.rev(work, "main"), G.rev(remote, "main"))
  end)

  test("after relish rollback of a pushed release, the next release needs no manual step", function()
    local d = tmpdir()
    local remote, work = project(d, { "fix: y" })
    local changelog_before = G.read(work .. "/CHANGELOG.md")
    assert_eq(tag_release(d, work).code, 0)
    local released = G.rev(work, "main")
    local r = relish(d, { "rollback", "last" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    -- the local branch, its remote-tracking ref and the work tree are on the revert
    local tip = G.rev(remote, "main")
    assert_eq(G.git(remote, "rev-parse", "main~1"), released)
    assert_eq(G.rev(work, "main"), tip)
    assert_eq(G.rev(work, "HEAD"), tip)
    assert_eq(G.rev(work, "refs/remotes/origin/main"), tip)
    assert_eq(G.git(work, "status", "--porcelain"), "")
    assert_eq(G.read(work .. "/CHANGELOG.md"), changelog_before)
    assert_match(r.stdout, "note: local main moved from " .. released:sub(1, 7) .. " to the revert " .. tip:sub(1, 7))
    -- the revert the rollback pushed is an action of the run, in show (json and text)
    local shown = show_last(d)
    local found
    for _, a in ipairs(shown.actions) do
      if a.kind == "git.push" and a.describe:find(tip:sub(1, 7), 1, true) then found = a end
    end
    assert_true(found ~= nil, "the pushed revert is listed")
    assert_eq(found.status, "done")
    assert_false(found.irreversible)
    assert_match(found.describe, "refs/heads/main " .. released:sub(1, 7) .. " → " .. tip:sub(1, 7) .. " %(the revert of ")
    local text = relish(d, { "show", "last" })
    assert_match(text.stdout, "refs/heads/main " .. released:sub(1, 7) .. " → " .. tip:sub(1, 7))
    -- the same release again: the release and its revert cancel out in the notes
    r = tag_release(d, work)
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(r.stdout, "v1%.0%.0 → v1%.0%.1 %(patch, 1 commit%(s%)%)")
    assert_eq(G.rev(remote, "main"), G.rev(work, "main"))
    assert_eq(G.rev(remote, "v1.0.1^{commit}"), G.rev(work, "main"))
    local cl = G.read(work .. "/CHANGELOG.md")
    assert_false(cl:find("Revert", 1, true) ~= nil, cl)
    assert_false(cl:find("chore(release)", 1, true) ~= nil, cl)
    assert_match(cl, "%- y %(")
  end)

  test("relish rollback leaves a local commit made since the release, and says what to run", function()
    local d = tmpdir()
    local remote, work = project(d, { "fix: y" })
    assert_eq(tag_release(d, work).code, 0)
    G.commit(work, { ["later.txt"] = "later\n" }, "feat: later work")
    local mine = G.rev(work, "main")
    local r = relish(d, { "rollback", "last" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(G.rev(work, "main"), mine, "the local commit stays")
    assert_eq(G.read(work .. "/later.txt"), "later\n")
    assert_eq(G.git(work, "status", "--porcelain"), "")
    assert_match(r.stdout, "local main %(at " .. mine:sub(1, 7) .. "%) has commits made since the run")
    assert_match(r.stdout, "run `git %-C " .. work:gsub("%p", "%%%0") .. " pull %-%-rebase origin main`")
    -- what it says works
    G.git(work, "pull", "-q", "--rebase", "origin", "main")
    assert_eq(G.git(work, "rev-parse", "main~1"), G.rev(remote, "main"))
    assert_eq(G.read(work .. "/later.txt"), "later\n")
  end)

  test("relish rollback with uncommitted changes: the branch stays, nothing is lost, the message says what to run", function()
    local d = tmpdir()
    local remote, work = project(d, { "fix: y" })
    assert_eq(tag_release(d, work).code, 0)
    local released = G.rev(work, "main")
    G.write(work .. "/README.md", "# project, edited\n")
    local r = relish(d, { "rollback", "last" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(G.rev(work, "main"), released)
    assert_eq(G.read(work .. "/README.md"), "# project, edited\n")
    assert_match(r.stdout, "local main stays at " .. released:sub(1, 7) .. ": the work tree has uncommitted changes")
    assert_match(r.stdout, "pull %-%-rebase %-%-autostash origin main`")
    G.git(work, "pull", "-q", "--rebase", "--autostash", "origin", "main")
    assert_eq(G.rev(work, "main"), G.rev(remote, "main"))
    assert_eq(G.read(work .. "/README.md"), "# project, edited\n")
  end)

  test("through a git daemon (git://): release and rollback", function()
    local d = tmpdir()
    local dm = daemon(d)
    local remote, work = project(d, { "feat: over the wire" }, { url = dm.url })
    assert_eq(G.git(work, "remote", "get-url", "origin"), dm.url .. "project.git")
    local head = G.rev(work, "HEAD")
    local r = tag_release(d, work)
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(G.rev(remote, "v1.1.0"), G.rev(work, "main"))
    G.commit(work, { ["z"] = "z\n" }, "fix: z")
    r = tag_release(d, work, { "-p", "verify=exit 1" })
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_nil(G.rev(remote, "refs/tags/v1.1.1"))
    -- relish pushed two commits (fix: z and the release): the revert takes back both
    assert_match(G.git(remote, "log", "-1", "--format=%s", "main"), "^Revert %x+%.%.%x+ on main")
    assert_eq(G.git(remote, "diff", "--stat", "v1.1.0", "main"), "")
    assert_true(G.rev(remote, "v1.1.0") ~= nil)
    assert_true(G.rev(work, "main") ~= head)
  end)
end)

describe("tag-release: a crash at every action, then relish rollback last", function()
  -- every action of a clean run, counted from its journal
  local function actions_of_a_run()
    local d = tmpdir()
    local _, work = project(d, { "feat: z" })
    assert_eq(tag_release(d, work).code, 0)
    return #show_last(d).actions
  end

  local count = nil
  for _, where in ipairs { "before", "after" } do
    test(string.format("crash %s each action: both repositories' refs come back", where), function()
      count = count or actions_of_a_run()
      assert_eq(count, 3, "commit, tag, push")
      for n = 1, count do
        local d = tmpdir()
        local remote, work = project(d, { "feat: z" })
        local refs, rrefs = G.refs(work, "refs/heads"), G.refs(remote)
        local tags = G.refs(work, "refs/tags")
        local head = refs["refs/heads/main"]
        local changelog = G.read(work .. "/CHANGELOG.md")
        local r = tag_release(d, work, {}, { RELISH_FAULT = string.format("crash-%s-action:%d", where, n) })
        assert_eq(r.signal, "KILL", string.format("%s %d: %s", where, n, r.stderr .. r.stdout))
        local rb = relish(d, { "rollback", "last" })
        assert_eq(rb.code, 0, string.format("%s %d: %s", where, n, rb.stderr .. rb.stdout))
        local what = string.format("crash %s action %d", where, n)
        local pushed = n == 3 and where == "after"
        if pushed then
          -- the local branch follows the revert pushed on the remote
          assert_eq(G.refs(work, "refs/heads"), { ["refs/heads/main"] = G.rev(remote, "main") }, what)
          assert_eq(G.git(work, "rev-parse", "main~2"), head, what)
        else
          assert_eq(G.refs(work, "refs/heads"), refs, what)
        end
        assert_eq(G.refs(work, "refs/tags"), tags, what)
        assert_eq(G.read(work .. "/CHANGELOG.md"), changelog, what)
        assert_eq(G.git(work, "status", "--porcelain"), "", what)
        if pushed then
          -- the pushed commit is reverted on the remote, never rewritten
          assert_nil(G.rev(remote, "refs/tags/v1.1.0"), what)
          assert_match(G.git(remote, "log", "-1", "--format=%s", "main"), '^Revert "chore%(release%)', what)
          assert_eq(G.git(remote, "diff", "--stat", head, "main"), "", what)
        else
          assert_eq(G.refs(remote), rrefs, what)
        end
        assert_true(G.fsck(work), what)
        assert_true(G.fsck(remote), what)
      end
    end)
  end
end)

-- A manifest repository (bare) with a Deployment, a kustomization and Helm values.
local function manifests(d, opts)
  opts = opts or {}
  local remote = G.bare(d, "manifests.git")
  local seed = G.repo(d, "seed", { remote = remote, message = "manifests", files = {
    ["apps/api/deployment.yaml"] = fixture("deployment.yaml"),
    ["apps/api/kustomization.yaml"] = fixture("kustomization.yaml"),
    ["charts/shop/values.yaml"] = fixture("values.yaml"),
  } })
  G.git(seed, "push", "-q", "origin", "main")
  return remote, seed
end

local function gitops_release(d, url, extra, env)
  local args = { "run", GITOPS_RELEASE, "-p", "repo=" .. url, "-p", "workdir=" .. d .. "/clones" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return relish(d, args, env)
end

local function at(remote, file)
  return G.git(remote, "show", "main:" .. file) .. "\n"
end

describe("gitops-release", function()
  test("dry-run shows the commit and the push; the remote does not change", function()
    local d = tmpdir()
    local remote = manifests(d)
    local before = G.refs(remote)
    local r = gitops_release(d, remote, { "-p", "file=apps/api/deployment.yaml", "-p", "container=api",
      "-p", "tag=v2.15.0", "--dry-run" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(r.stdout, "%+ commit on main %x+ → %x+ \"chore%(release%): api v2%.15%.0 in apps/api/deployment%.yaml\"")
    assert_match(r.stdout, "deployment%.yaml | 2 %+%-")
    assert_match(r.stdout, "%+ push to origin [^\n]*refs/heads/main %x+ → %x+")
    assert_match(r.stdout, "rollback: push a revert")
    assert_match(r.stdout, "apps/api/deployment%.yaml: %S+:v2%.14%.0 → %S+:v2%.15%.0, commit %x+ would be pushed to main %(planned%)")
    assert_false(r.stdout:find(" pushed to main\n", 1, true) ~= nil, r.stdout)
    assert_eq(G.refs(remote), before)
  end)

  test("a Deployment's image tag: one line changes, comments and layout survive byte for byte", function()
    local d = tmpdir()
    local remote = manifests(d)
    local before = G.rev(remote, "main")
    local r = gitops_release(d, remote, { "-p", "file=apps/api/deployment.yaml", "-p", "container=api", "-p", "tag=v2.15.0" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(G.git(remote, "diff", "--numstat", before, "main"), "1\t1\tapps/api/deployment.yaml")
    assert_eq(at(remote, "apps/api/deployment.yaml"),
      (fixture("deployment.yaml"):gsub("shop/api:v2%.14%.0 # the app", "shop/api:v2.15.0 # the app")))
    assert_true(G.fsck(remote))
  end)

  test("a kustomization's newTag and a Helm values key", function()
    local d = tmpdir()
    local remote = manifests(d)
    local r = gitops_release(d, remote, { "-p", "kind=kustomization", "-p", "file=apps/api/kustomization.yaml",
      "-p", "image=registry.example.com/shop/api", "-p", "tag=v2.15.0" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(at(remote, "apps/api/kustomization.yaml"),
      (fixture("kustomization.yaml"):gsub("newTag: v2%.14%.0   #", "newTag: v2.15.0   #")))
    r = gitops_release(d, remote, { "-p", "kind=helm", "-p", "file=charts/shop/values.yaml", "-p", "tag=2.15.0" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(at(remote, "charts/shop/values.yaml"), (fixture("values.yaml"):gsub('tag: "2%.14%.0"', 'tag: "2.15.0"')))
    -- the same tag again: nothing to commit
    local tip = G.rev(remote, "main")
    r = gitops_release(d, remote, { "-p", "kind=helm", "-p", "file=charts/shop/values.yaml", "-p", "tag=2.15.0" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(r.stdout, "already has 2%.15%.0")
    assert_eq(G.rev(remote, "main"), tip)
  end)

  test("a failed check after the push reverts the commit and pushes the revert", function()
    local d = tmpdir()
    local remote = manifests(d)
    local before = G.rev(remote, "main")
    local r = gitops_release(d, remote, { "-p", "file=apps/api/deployment.yaml", "-p", "container=api",
      "-p", "tag=v2.15.0", "-p", "verify=echo canary unhealthy >&2; exit 2" })
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_match(r.stdout, "exited with code 2: canary unhealthy")
    assert_match(r.stdout, "Rollback complete")
    assert_eq(at(remote, "apps/api/deployment.yaml"), fixture("deployment.yaml"))
    assert_eq(G.git(remote, "rev-parse", "main~2"), before)
    assert_match(G.git(remote, "log", "-1", "--format=%s", "main"), '^Revert "chore%(release%): api v2%.15%.0')
    assert_true(G.fsck(remote))
  end)

  test("relish rollback later: the revert lands on top of what others pushed since", function()
    local d = tmpdir()
    local remote, seed = manifests(d)
    assert_eq(gitops_release(d, remote, { "-p", "file=apps/api/deployment.yaml", "-p", "container=api",
      "-p", "tag=v2.15.0" }).code, 0)
    G.git(seed, "pull", "-q", "--ff-only", "origin", "main")
    G.commit(seed, { ["apps/web/deployment.yaml"] = "kind: Deployment\n" }, "feat: web app")
    G.git(seed, "push", "-q", "origin", "main")
    local r = relish(d, { "rollback", "last" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_eq(at(remote, "apps/api/deployment.yaml"), fixture("deployment.yaml"))
    assert_eq(at(remote, "apps/web/deployment.yaml"), "kind: Deployment\n")
    assert_eq(G.git(remote, "rev-list", "--count", "main"), "4")
    assert_eq(show_last(d).status, "rolled_back")
  end)

  test("through a git daemon (git://)", function()
    local d = tmpdir()
    local dm = daemon(d)
    local remote = manifests(d)
    local r = gitops_release(d, dm.url .. "manifests.git", { "-p", "kind=helm", "-p", "file=charts/shop/values.yaml",
      "-p", "tag=3.0.0", "-p", "verify=exit 1" })
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_eq(at(remote, "charts/shop/values.yaml"), fixture("values.yaml"))
    assert_eq(G.git(remote, "rev-list", "--count", "main"), "3")
    r = gitops_release(d, dm.url .. "manifests.git", { "-p", "kind=helm", "-p", "file=charts/shop/values.yaml",
      "-p", "tag=3.0.0" })
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_match(at(remote, "charts/shop/values.yaml"), '\n  tag: "3%.0%.0"\n')
  end)

  test("bad params are exit 2, nothing happens", function()
    local d = tmpdir()
    local remote = manifests(d)
    local r = gitops_release(d, remote, { "-p", "tag=bad tag!" })
    assert_eq(r.code, 2)
    assert_match(r.stderr, "param 'tag'")
    r = gitops_release(d, remote, { "-p", "kind=kustomization", "-p", "tag=v1", "-p", "file=apps/api/kustomization.yaml" })
    assert_eq(r.code, 1)
    assert_match(r.stdout, "needs %-p image=")
  end)
end)
