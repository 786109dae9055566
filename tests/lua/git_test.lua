-- relish.git against real git: reads of what the git CLI wrote, what relish
-- writes read back by the CLI (and passing git fsck), misuse and error kinds.
-- Effects, undo, dry-run and the network are in git_effects_test.lua and
-- git_remote_test.lua.
local G = require "gitsupport"
local git = require "relish.git"
local gate = require "relish._gate"
local effect = require "relish.effect"
local try = require("relish._errors").try

local function lines(s)
  local out = {}
  for l in (s .. "\n"):gmatch("([^\n]*)\n") do
    if l ~= "" then out[#out + 1] = l end
  end
  return out
end

describe("open and the handle", function()
  test("open discovers the repository upwards from a subdirectory, like git", function()
    local d = tmpdir()
    local w = G.repo(d, "w", { files = { ["sub/deep/f.txt"] = "x\n" } })
    local repo <close> = assert(git.open(w .. "/sub/deep"))
    assert_eq(repo:path(), G.git(w, "rev-parse", "--show-toplevel"))
    local bare = G.bare(d, "b.git")
    local b <close> = assert(git.open(bare))
    assert_eq(b:path(), bare)
  end)

  test("a directory outside any repository is not_a_repo, a missing path not_found", function()
    local d = tmpdir()
    local r, err = try(git.open, d)
    assert_nil(r)
    assert_eq(err.kind, "not_a_repo")
    assert_match(err.message, "^git%.open " .. d:gsub("%p", "%%%0") .. ": not a git repository")
    r, err = try(git.open, d .. "/missing")
    assert_nil(r)
    assert_eq(err.kind, "not_found")
  end)

  test("close, <close> and collection share one idempotent close; a closed handle raises", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    local repo = assert(git.open(w))
    repo:close()
    repo:close()
    assert_error(function() repo:head() end, "repository is closed")
    assert_match(tostring(repo), "closed")
    do
      local r2 <close> = assert(git.open(w))
      assert_match(tostring(r2), "relish%.git%.Repository %(" .. w:gsub("%p", "%%%0"))
    end
    for _ = 1, 50 do git.open(w) end
    collectgarbage()
    collectgarbage()
  end)

  test("init makes work and bare repositories on the branch asked for", function()
    local d = tmpdir()
    local r <close> = assert(git.init(d .. "/new/w", { branch = "trunk" }))
    assert_eq(r:head(), { ref = "refs/heads/trunk", branch = "trunk", detached = false })
    assert_eq(G.git(d .. "/new/w", "symbolic-ref", "HEAD"), "refs/heads/trunk")
    local b <close> = assert(git.init(d .. "/b.git", { bare = true }))
    assert_eq(G.git(d .. "/b.git", "rev-parse", "--is-bare-repository"), "true")
  end)
end)

describe("reads of what git wrote", function()
  test("head: branch, detached and unborn", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    local id = G.rev(w, "HEAD")
    local repo <close> = assert(git.open(w))
    assert_eq(repo:head(), { id = id, short = id:sub(1, 7), ref = "refs/heads/main", branch = "main", detached = false })
    assert_eq(repo:branch(), "main")
    G.git(w, "checkout", "-q", "--detach")
    assert_eq(repo:head(), { id = id, short = id:sub(1, 7), ref = "HEAD", detached = true })
    assert_nil(repo:branch())
    local e = G.repo(d, "e", { empty = true })
    local empty <close> = assert(git.open(e))
    assert_eq(empty:head(), { ref = "refs/heads/main", branch = "main", detached = false })
    assert_eq(empty:log(), {})
  end)

  test("status matches git status --porcelain", function()
    local d = tmpdir()
    local w = G.repo(d, "w", { files = { ["keep.txt"] = "k\n", ["mod.txt"] = "m\n", ["del.txt"] = "d\n",
      ["old.txt"] = string.rep("rename me\n", 20), ["staged.txt"] = "s\n" } })
    G.write(w .. "/mod.txt", "m2\n")
    os.remove(w .. "/del.txt")
    G.git(w, "mv", "old.txt", "new.txt")
    G.write(w .. "/staged.txt", "s2\n")
    G.git(w, "add", "staged.txt")
    G.write(w .. "/staged.txt", "s3\n")
    G.write(w .. "/added.txt", "a\n")
    G.git(w, "add", "added.txt")
    G.write(w .. "/untracked/u.txt", "u\n")
    local repo <close> = assert(git.open(w))
    local got = {}
    for _, e in ipairs(repo:status()) do got[#got + 1] = e.index .. e.worktree .. " " .. e.path end
    table.sort(got)
    local want = {}
    for _, l in ipairs(lines(G.git(w, "status", "--porcelain", "-uall"))) do
      want[#want + 1] = (l:gsub("^(R.) .* %-> ", "%1 "))
    end
    table.sort(want)
    assert_eq(got, want)
    local renamed
    for _, e in ipairs(repo:status()) do if e.index == "R" then renamed = e end end
    assert_eq(renamed, { path = "new.txt", from = "old.txt", index = "R", worktree = " " })
    local tracked = {}
    for _, e in ipairs(repo:status { untracked = false }) do tracked[#tracked + 1] = e.path end
    assert_eq(#tracked, #want - 1)
  end)

  test("is_dirty: tracked changes count, untracked files only when asked", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    local repo <close> = assert(git.open(w))
    assert_false(repo:is_dirty())
    G.write(w .. "/new.txt", "n\n")
    assert_false(repo:is_dirty())
    assert_true(repo:is_dirty { untracked = true })
    G.write(w .. "/README.md", "changed\n")
    assert_true(repo:is_dirty())
  end)

  test("describe matches git describe", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    local repo <close> = assert(git.open(w))
    local none, err = try(repo.describe, repo)
    assert_nil(none)
    assert_eq(err.kind, "not_found")
    assert_eq(repo:describe { always = true }, G.git(w, "describe", "--always"))
    G.git(w, "tag", "-a", "v1.0.0", "-m", "one")
    G.commit(w, { ["a"] = "a\n" }, "feat: a")
    G.git(w, "tag", "light")
    G.commit(w, { ["b"] = "b\n" }, "fix: b")
    assert_eq(repo:describe(), G.git(w, "describe"))
    assert_eq(repo:describe { tags = true }, G.git(w, "describe", "--tags"))
    assert_eq(repo:describe { abbrev = 0 }, G.git(w, "describe", "--abbrev=0"))
    G.write(w .. "/a", "dirty\n")
    assert_eq(repo:describe { dirty = true }, G.git(w, "describe", "--dirty"))
    assert_eq(repo:describe { match = "v*", tags = true }, G.git(w, "describe", "--tags", "--match", "v*"))
  end)

  test("tags: names, targets, annotations and taggers as git sees them", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    local first = G.rev(w, "HEAD")
    G.git(w, "tag", "-a", "v1.2.0", "-m", "release 1.2.0\n\nnotes")
    G.git(w, "tag", "light")
    local second = G.commit(w, { ["x"] = "x\n" }, "next")
    G.git(w, "tag", "-a", "v1.10.0", "-m", "ten")
    G.git(w, "tag", "-a", "nested", "-m", "tag of a tag", "v1.2.0")
    local repo <close> = assert(git.open(w))
    local tags = repo:tags()
    local names = {}
    for _, t in ipairs(tags) do names[#names + 1] = t.name end
    assert_eq(names, { "light", "nested", "v1.10.0", "v1.2.0" })
    local by = {}
    for _, t in ipairs(tags) do by[t.name] = t end
    assert_eq(by.light, { name = "light", target = first, annotated = false })
    assert_eq(by["v1.2.0"].target, first)
    assert_eq(by["v1.2.0"].id, G.git(w, "rev-parse", "refs/tags/v1.2.0"))
    assert_eq(by["v1.2.0"].message, "release 1.2.0\n\nnotes\n")
    assert_eq(by["v1.2.0"].tagger.name, G.COMMITTER.name)
    assert_eq(by["v1.2.0"].tagger.email, G.COMMITTER.email)
    assert_eq(math.type(by["v1.2.0"].tagger.time), "integer")
    assert_eq(by["v1.10.0"].target, second)
    assert_eq(by.nested.target, first, "a tag of a tag peels to the commit")
  end)

  test("resolve: branches, tags, short ids and expressions; unknown is not_found", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    G.git(w, "tag", "-a", "v1", "-m", "v1")
    G.commit(w, { ["a"] = "1" }, "two")
    G.commit(w, { ["a"] = "2" }, "three")
    local repo <close> = assert(git.open(w))
    for _, rev in ipairs { "HEAD", "main", "HEAD~2", "v1", "refs/tags/v1", G.rev(w, "HEAD~1"):sub(1, 8) } do
      assert_eq(repo:resolve(rev), G.rev(w, rev), rev)
    end
    local r, err = try(repo.resolve, repo, "nope")
    assert_nil(r)
    assert_eq(err.kind, "not_found")
    assert_match(err.message, "revision 'nope' not found")
  end)

  test("log: fields and order as git log prints them", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    for i = 1, 5 do G.commit(w, { ["f" .. i] = tostring(i) }, "feat(" .. i .. "): change " .. i .. "\n\nbody " .. i) end
    local repo <close> = assert(git.open(w))
    local log = repo:log()
    assert_eq(#log, 6)
    local want = lines(G.git(w, "log", "--format=%H|%h|%an|%ae|%at|%s|%P"))
    for i, c in ipairs(log) do
      assert_eq(table.concat({ c.id, c.short, c.author, c.email, tostring(c.time), c.summary,
        table.concat(c.parents, " ") }, "|"), want[i])
    end
    assert_eq(log[1].message, "feat(5): change 5\n\nbody 5\n")
    G.commit(w, { x = "x" }, "  a subject   \nwrapped over\n  two lines\n\nand a body")
    assert_eq(repo:log { max = 1 }[1].summary, G.git(w, "log", "-1", "--format=%s"))
  end)

  -- the joined summary is built in a luaL_Buffer: past LUAL_BUFFERSIZE the
  -- buffer moves to a box on the stack, where touching the stack would break it
  test("log: a wrapped subject of any length is joined as git joins it", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    local repo <close> = assert(git.open(w))
    for _, n in ipairs { 1000, 1020, 2020, 4096, 8200, 70000 } do
      local a, b = string.rep("a", n), string.rep("b", n // 3 + 1)
      G.commit(w, { x = tostring(n) }, a .. "\n" .. b .. "\nc\n\nbody " .. n)
      local s = repo:log { max = 1 }[1].summary
      assert_eq(#s, n + 1 + #b + 2, "length " .. n)
      assert_eq(s, a .. " " .. b .. " c", "length " .. n)
      assert_eq(s, G.git(w, "log", "-1", "--format=%s"), "length " .. n)
    end
  end)

  test("log from..to, max, paths and first_parent", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    G.git(w, "tag", "v1")
    G.commit(w, { ["docs/a.md"] = "a" }, "docs: a")
    G.commit(w, { ["src/b.c"] = "b" }, "feat: b")
    G.git(w, "checkout", "-q", "-b", "side")
    G.commit(w, { ["src/side.c"] = "s" }, "feat: side")
    G.git(w, "checkout", "-q", "main")
    G.commit(w, { ["src/c.c"] = "c" }, "fix: c")
    G.git(w, "merge", "-q", "--no-ff", "-m", "merge side", "side")
    local repo <close> = assert(git.open(w))
    local function ids(list)
      local out = {}
      for _, c in ipairs(list) do out[#out + 1] = c.id end
      table.sort(out)
      return out
    end
    local function cli(...)
      local out = lines(G.git(w, "log", "--format=%H", ...))
      table.sort(out)
      return out
    end
    assert_eq(ids(repo:log { from = "v1" }), cli("v1..HEAD"))
    assert_eq(ids(repo:log { from = "v1", to = "side" }), cli("v1..side"))
    assert_eq(#repo:log { max = 2 }, 2)
    assert_eq(ids(repo:log { from = "v1", paths = { "src" } }), cli("v1..HEAD", "--", "src"))
    assert_eq(ids(repo:log { from = "v1", paths = "docs" }), cli("v1..HEAD", "--", "docs"))
    assert_eq(ids(repo:log { from = "v1", first_parent = true }), cli("--first-parent", "v1..HEAD"))
    local r, err = try(repo.log, repo, { from = "nope" })
    assert_nil(r)
    assert_eq(err.kind, "not_found")
  end)

  test("diff_stat matches git diff --numstat, renames and binaries included", function()
    local d = tmpdir()
    local w = G.repo(d, "w", { files = { ["a.txt"] = "1\n2\n3\n", ["moved.txt"] = string.rep("same line\n", 30),
      ["gone.txt"] = "bye\n" } })
    G.git(w, "tag", "base")
    G.write(w .. "/a.txt", "1\nTWO\n3\n4\n")
    G.git(w, "mv", "moved.txt", "renamed.txt")
    G.git(w, "rm", "-q", "gone.txt")
    G.write(w .. "/bin.dat", "\0\1\2binary\0")
    G.git(w, "add", "-A")
    G.git(w, "commit", "-q", "-m", "changes")
    local repo <close> = assert(git.open(w))
    local s = assert(repo:diff_stat("base", "HEAD"))
    local got = {}
    for _, f in ipairs(s.files) do
      got[#got + 1] = string.format("%s\t%s\t%s", f.binary and "-" or f.added, f.binary and "-" or f.deleted,
        f.from and (f.from .. " => " .. f.path) or f.path)
    end
    table.sort(got)
    local want = lines(G.git(w, "diff", "--numstat", "-M", "base", "HEAD"))
    table.sort(want)
    assert_eq(got, want)
    assert_eq(s.changed, 4)
    assert_eq({ s.added, s.deleted }, { 2, 2 })
    assert_eq(repo:diff_stat("HEAD").changed, 0)
  end)

  test("tree lists every file of a revision as git ls-tree -r does, blob reads each one", function()
    local d = tmpdir()
    local w = G.repo(d, "w", { files = { ["a.txt"] = "a\n", ["sub/deep/run.sh"] = "#!/bin/sh\n",
      ["bin.dat"] = "\0\1binary\0" } })
    G.git(w, "update-index", "--chmod=+x", "sub/deep/run.sh")
    G.git(w, "commit", "-q", "-m", "exec")
    assert(require("relish.sh").run { argv = { "ln", "-s", "sub/deep/run.sh", w .. "/link" } })
    G.git(w, "add", "link")
    G.git(w, "commit", "-q", "-m", "link")
    G.git(w, "tag", "-a", "-m", "one", "v1")
    G.commit(w, { ["a.txt"] = false }, "later")
    local repo <close> = assert(git.open(w))
    local got = {}
    for _, e in ipairs(repo:tree("v1")) do
      got[#got + 1] = string.format("%s %s %s\t%s", e.mode, e.type, e.id, e.path)
    end
    assert_eq(got, lines(G.git(w, "ls-tree", "-r", "v1")))
    local by = {}
    for _, e in ipairs(repo:tree("v1")) do by[e.path] = e end
    assert_eq(repo:blob(by["bin.dat"].id), "\0\1binary\0")
    assert_eq(repo:blob(by["link"].id), "sub/deep/run.sh")
    assert_eq(by["sub/deep/run.sh"].mode, "100755")
    assert_eq(#repo:tree("HEAD"), 3)
    local r, err = try(repo.tree, repo, "nope")
    assert_nil(r)
    assert_eq(err.kind, "not_found")
    r, err = try(repo.blob, repo, string.rep("0", 40))
    assert_nil(r)
    assert_eq(err.kind, "not_found")
    r, err = try(repo.blob, repo, "abc")
    assert_eq(err.kind, "invalid")
  end)

  test("remote_url gives the configured URL without a password", function()
    local d = tmpdir()
    local w = G.repo(d, "w", { remote = "https://bot:s3cr3t@git.example.test/org/app.git" })
    G.git(w, "remote", "add", "plain", "git@github.com:org/app.git")
    local repo <close> = assert(git.open(w))
    assert_eq(repo:remote_url("origin"), "https://bot@git.example.test/org/app.git")
    assert_eq(repo:remote_url("plain"), "git@github.com:org/app.git")
    local u, err = try(repo.remote_url, repo, "nope")
    assert_nil(u)
    assert_eq(err.kind, "not_found")
  end)

  test("reads are never gated, even in a dry-run", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    G.git(w, "tag", "v1")
    local effects = gate.capture(function()
      local repo <close> = assert(git.open(w))
      repo:head(); repo:status(); repo:is_dirty(); repo:describe { tags = true }; repo:tags()
      repo:log(); repo:diff_stat("HEAD"); repo:resolve("v1")
    end, { dry_run = true })
    assert_eq(#effects, 0)
  end)
end)

describe("what relish writes, git reads", function()
  test("an annotated tag: git sees its message, tagger and target; fsck is clean", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    local repo <close> = assert(git.open(w))
    local t = assert(repo:tag("v1.2.0", { message = "Release 1.2.0\n\n- fixes  \n\n\n" }))
    assert_eq(t.annotated, true)
    assert_eq(t.target, G.rev(w, "HEAD"))
    assert_eq(G.git(w, "cat-file", "-t", "v1.2.0"), "tag")
    assert_eq(G.git(w, "tag", "-l", "--format=%(contents)", "v1.2.0"), "Release 1.2.0\n\n- fixes\n")
    assert_eq(G.git(w, "tag", "-l", "--format=%(taggername) %(taggeremail)", "v1.2.0"),
      G.COMMITTER.name .. " <" .. G.COMMITTER.email .. ">")
    assert_eq(G.git(w, "rev-parse", "v1.2.0^{commit}"), G.rev(w, "HEAD"))
    assert_eq(G.git(w, "describe"), "v1.2.0")
    assert_eq(t.id, G.git(w, "rev-parse", "refs/tags/v1.2.0"))
    local light = assert(repo:tag("light", { target = "HEAD" }))
    assert_eq(light.annotated, false)
    assert_eq(G.git(w, "cat-file", "-t", "light"), "commit")
    assert_true(G.fsck(w))
  end)

  test("a commit: git log shows it, git status is clean, fsck is clean", function()
    local d = tmpdir()
    local w = G.repo(d, "w", { files = { ["CHANGELOG.md"] = "# Changelog\n", ["bin/run.sh"] = "#!/bin/sh\n" } })
    G.git(w, "update-index", "--chmod=+x", "bin/run.sh")
    G.git(w, "commit", "-q", "-m", "exec bit")
    os.execute("chmod +x " .. w .. "/bin/run.sh")
    local repo <close> = assert(git.open(w))
    local id = assert(repo:commit {
      files = { ["CHANGELOG.md"] = "# Changelog\n\n## 1.1.0\n- new\n", ["docs/new/page.md"] = "page\n",
        ["bin/run.sh"] = "#!/bin/sh\necho hi\n" },
      message = "chore(release): 1.1.0\n\nbody text",
      author = { name = "Rel Ease", email = "release@example.test" },
    })
    assert_eq(G.rev(w, "HEAD"), id)
    assert_eq(G.git(w, "log", "-1", "--format=%an <%ae>|%cn <%ce>|%s|%b"),
      "Rel Ease <release@example.test>|" .. G.COMMITTER.name .. " <" .. G.COMMITTER.email .. ">|chore(release): 1.1.0|body text\n")
    assert_eq(G.git(w, "status", "--porcelain"), "")
    assert_eq(G.git(w, "show", "HEAD:docs/new/page.md"), "page")
    assert_eq(G.read(w .. "/CHANGELOG.md"), "# Changelog\n\n## 1.1.0\n- new\n")
    assert_eq(G.git(w, "ls-files", "-s", "bin/run.sh"):match("^(%d+)"), "100755", "the exec bit stays")
    assert_true(G.fsck(w))
  end)

  test("commit add= stages work tree changes like git add -A; add = true takes everything", function()
    local d = tmpdir()
    local w = G.repo(d, "w", { files = { ["a/1.txt"] = "1\n", ["b/2.txt"] = "2\n", ["gone.txt"] = "g\n" } })
    G.write(w .. "/a/1.txt", "one\n")
    G.write(w .. "/a/new.txt", "new\n")
    G.write(w .. "/b/2.txt", "two\n")
    os.remove(w .. "/gone.txt")
    G.write(w .. "/.gitignore", "*.log\n")
    G.write(w .. "/x.log", "ignored\n")
    local repo <close> = assert(git.open(w))
    assert(repo:commit { add = { "a" }, message = "a only" })
    assert_eq(lines(G.git(w, "show", "--name-status", "--format=", "HEAD")), { "M\ta/1.txt", "A\ta/new.txt" })
    assert(repo:commit { add = true, message = "everything else" })
    assert_eq(lines(G.git(w, "show", "--name-status", "--format=", "HEAD")), { "A\t.gitignore", "M\tb/2.txt", "D\tgone.txt" })
    assert_eq(G.git(w, "status", "--porcelain", "--ignored"), "!! x.log")
    assert_true(G.fsck(w))
  end)

  test("nothing to commit is an error with empty = true, unless allow_empty", function()
    local d = tmpdir()
    local w = G.repo(d, "w", { files = { ["a"] = "a\n" } })
    local repo <close> = assert(git.open(w))
    local id, err = try(repo.commit, repo, { files = { a = "a\n" }, message = "same" })
    assert_nil(id)
    assert_eq({ err.kind, err.empty }, { "invalid", true })
    assert_match(err.message, "nothing to commit")
    id = assert(repo:commit { message = "empty on purpose", allow_empty = true })
    assert_eq(G.rev(w, "HEAD"), id)
  end)

  test("the first commit of an unborn branch; a detached HEAD moves itself", function()
    local d = tmpdir()
    local w = G.repo(d, "w", { empty = true })
    local repo <close> = assert(git.open(w))
    local id = assert(repo:commit { files = { ["hello.txt"] = "hi\n" }, message = "root" })
    assert_eq(G.rev(w, "refs/heads/main"), id)
    assert_eq(G.git(w, "log", "--format=%P", "-1"), "")
    G.git(w, "checkout", "-q", "--detach")
    local id2 = assert(repo:commit { files = { ["hello.txt"] = "hello\n" }, message = "detached" })
    assert_eq(G.rev(w, "HEAD"), id2)
    assert_eq(G.rev(w, "refs/heads/main"), id)
    assert_true(G.fsck(w))
  end)

  test("a revert: git shows the inverse change and the usual message", function()
    local d = tmpdir()
    local w = G.repo(d, "w", { files = { ["app.yaml"] = "image: app:1.0\n" } })
    local bad = G.commit(w, { ["app.yaml"] = "image: app:1.1\n", ["extra.txt"] = "x\n" }, "deploy 1.1")
    G.commit(w, { ["other.txt"] = "o\n" }, "unrelated")
    local repo <close> = assert(git.open(w))
    local id = assert(repo:revert(bad))
    assert_eq(G.rev(w, "HEAD"), id)
    assert_eq(G.git(w, "log", "-1", "--format=%s%n%b"), 'Revert "deploy 1.1"\nThis reverts commit ' .. bad .. ".\n")
    assert_eq(G.read(w .. "/app.yaml"), "image: app:1.0\n")
    assert_nil(G.read(w .. "/extra.txt"))
    assert_eq(G.read(w .. "/other.txt"), "o\n")
    assert_eq(G.git(w, "status", "--porcelain"), "")
    assert_eq(G.git(w, "diff", bad .. "~1", "HEAD", "--", "app.yaml", "extra.txt"), "")
    assert_true(G.fsck(w))
  end)

  test("branches: made and deleted as git sees them", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    local first = G.rev(w, "HEAD")
    G.commit(w, { a = "a" }, "two")
    local repo <close> = assert(git.open(w))
    assert_eq(repo:create_branch("release/1.x", { target = first }), first)
    assert_eq(G.rev(w, "refs/heads/release/1.x"), first)
    assert_true(repo:delete_branch("release/1.x"))
    assert_nil(G.rev(w, "refs/heads/release/1.x"))
    assert_true(repo:delete_branch("release/1.x"), "deleting a missing branch is no effect")
    assert_true(G.fsck(w))
  end)
end)

describe("errors and misuse", function()
  test("error kinds: exists, invalid, not_found, conflict", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    local repo <close> = assert(git.open(w))
    assert(repo:tag("v1", { message = "one" }))
    local r, err = try(repo.tag, repo, "v1", { message = "other" })
    assert_nil(r)
    assert_eq(err.kind, "exists")
    -- named by the commit the tag names, not by the tag object's id
    local head = G.rev(w, "HEAD")
    assert_eq(err.message, "git.tag v1: tag already exists (at " .. head:sub(1, 7) .. "); give force = true to move it")
    assert(repo:tag("v1", { message = "one" }), "the same tag again is no error and no effect")
    G.git(w, "tag", "light")
    r, err = try(repo.tag, repo, "light", { message = "annotated now" })
    assert_eq(err.message, "git.tag light: tag already exists (at " .. head:sub(1, 7) .. "); give force = true to move it")
    r, err = try(repo.tag, repo, "bad..name")
    assert_eq(err.kind, "invalid")
    assert_match(err.message, "not a valid tag name")
    r, err = try(repo.tag, repo, "v2", { target = "nope" })
    assert_eq(err.kind, "not_found")
    r, err = try(repo.delete_branch, repo, "main")
    assert_eq(err.kind, "invalid")
    assert_match(err.message, "checked%-out branch")
    r = repo:create_branch("main", { target = "HEAD" })
    assert_eq(r, G.rev(w, "HEAD"), "the branch already there is no effect")
    G.commit(w, { a = "1" }, "two")
    r, err = try(repo.create_branch, repo, "main", { target = "HEAD~1" })
    assert_eq(err.kind, "exists")
    r, err = try(repo.create_branch, repo, "main", { target = "HEAD~1", force = true })
    assert_eq(err.kind, "invalid")
    assert_eq(tostring(err), err.message)
  end)

  test("a bare repository has no work tree to commit in", function()
    local d = tmpdir()
    local b = G.bare(d, "b.git")
    local repo <close> = assert(git.open(b))
    local r, err = try(repo.commit, repo, { files = { a = "a" }, message = "x" })
    assert_nil(r)
    assert_eq(err.kind, "invalid")
    r, err = try(repo.status, repo)
    assert_eq(err.kind, "invalid")
  end)

  test("misuse raises naming the field", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    local repo <close> = assert(git.open(w))
    assert_error(function() repo:tag() end, "string expected")
    assert_error(function() repo:tag("v", { mesage = "x" }) end, "unknown option 'mesage'")
    assert_error(function() repo:tag("v", { message = 1 }) end, "field 'message' must be a string")
    assert_error(function() repo:commit { files = { a = "a" } } end, "field 'message' is required")
    assert_error(function() repo:commit { files = { a = 1 }, message = "m" } end, "files%['a'%] must be a string")
    assert_error(function() repo:commit { files = { ["../x"] = "x" }, message = "m" } end, "may not contain")
    assert_error(function() repo:commit { files = { ["/etc/x"] = "x" }, message = "m" } end, "relative")
    assert_error(function() repo:commit { files = { [".git/config"] = "x" }, message = "m" } end, "%.git")
    assert_error(function() repo:commit { add = 3, message = "m" } end, "field 'add'")
    assert_error(function() repo:log { form = "x" } end, "unknown option 'form'")
    assert_error(function() repo:log { max = -1 } end, "max must be")
    assert_error(function() repo:push { refspecs = 3 } end, "refspecs must be")
    assert_error(function() repo:push { auth = "plain-token" } end, "auth must be a secret")
    assert_error(function() repo:push { auth = { token = "plain" } } end, "must be a secret")
    assert_error(function() repo:push { rollback = "drop" } end, "rollback must be")
    assert_error(function() repo:revert("HEAD", { mainline = 0 }) end, "mainline")
    assert_error(function() effect.undo("git.bogus", {}) end, "no undo is registered for effect kind 'git.bogus'")
    assert_error(function() effect.undo("git.tag", { repo = w }) end, "malformed git.tag undo record: no 'ref'")
    assert_error(function()
      effect.undo("git.tag", { repo = w, ref = "refs/tags/x", after = "zz", name = "x", target = "zz" })
    end, "malformed git.tag undo record: bad after")
    assert_error(function() git.clone("x", d .. "/c", { depth = "1" }) end, "depth")
    assert_nil(git.undo, "undo is reached through relish.effect, by registration")
    -- try returns runtime failures only: misuse raises through it
    assert_error(function() try(repo.tag, repo, "v", { mesage = "x" }) end, "unknown option 'mesage'")
    assert_error(function() try(git.open, 5) end, "string expected")
  end)

  test("a number where a name, revision or path goes raises, it is not taken as its digits", function()
    local d = tmpdir()
    local w = G.repo(d, "w")
    local repo <close> = assert(git.open(w))
    local calls = {
      { "git.open", function() return git.open(5) end },
      { "git.init", function() return git.init(5) end },
      { "git.clone", function() return git.clone(5, d .. "/c") end },
      { "git.clone", function() return git.clone(w, 5) end },
      { "tag", function() return repo:tag(5) end },
      { "delete_tag", function() return repo:delete_tag(5) end },
      { "create_branch", function() return repo:create_branch(5) end },
      { "delete_branch", function() return repo:delete_branch(5) end },
      { "resolve", function() return repo:resolve(5) end },
      { "revert", function() return repo:revert(5) end },
      { "diff_stat", function() return repo:diff_stat(5) end },
      { "diff_stat", function() return repo:diff_stat("HEAD", 5) end },
      { "remote_url", function() return repo:remote_url(5) end },
      { "fetch", function() return repo:fetch(5) end },
    }
    local ok, err = pcall(function()
      for _, c in ipairs(calls) do
        assert_error(c[2], "bad argument #%d+ to '" .. c[1]:match("[%w_]+$") .. "' %(string expected, got number%)", c[1])
      end
    end)
    -- git.init(5) and git.clone(w, 5) would make ./5
    local made = io.open("5") ~= nil
    if made then os.execute("rm -rf ./5") end
    if not ok then error(err, 0) end
    assert_false(made, "nothing made at ./5")
    assert_eq(G.refs(w, "refs/tags"), {}, "no tag named 5")
    assert_eq(G.refs(w, "refs/heads"), { ["refs/heads/main"] = G.rev(w, "HEAD") }, "no branch named 5")
  end)
end)
