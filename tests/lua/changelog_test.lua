-- relish.changelog: Conventional Commits parsing, the version they imply
-- (with the 0.x rule), Markdown release notes, CHANGELOG.md updates, and the
-- same against real repositories made with the git CLI.
local changelog = require "relish.changelog"
local semver = require "relish.semver"
local try = require("relish._errors").try

local parse = changelog.parse

describe("parse", function()
  test("type, scope, description", function()
    local c = parse("feat(api): add the orders endpoint")
    assert_true(c.conventional)
    assert_eq(c.type, "feat")
    assert_eq(c.scope, "api")
    assert_eq(c.description, "add the orders endpoint")
    assert_false(c.breaking)
    assert_eq(c.body, "")
    assert_eq(c.footers, {})
  end)

  test("without a scope; types are not case sensitive", function()
    local c = parse("FIX: handle empty input")
    assert_eq(c.type, "fix")
    assert_nil(c.scope)
    assert_eq(c.description, "handle empty input")
  end)

  test("! marks a breaking change; the description is its note", function()
    local c = parse("refactor(db)!: drop the legacy schema")
    assert_true(c.breaking)
    assert_eq(c.type, "refactor")
    assert_eq(c.scope, "db")
    c = parse("feat!: new config format")
    assert_true(c.breaking)
    assert_nil(c.scope)
  end)

  test("BREAKING CHANGE and BREAKING-CHANGE footers", function()
    local c = parse("feat: allow provided config object to extend other configs\n\n" ..
      "BREAKING CHANGE: `extends` key in config file is now used for extending other config files\n")
    assert_true(c.breaking)
    assert_eq(c.breaking_note, "`extends` key in config file is now used for extending other config files")
    c = parse("fix(cli): rename --out\n\nBREAKING-CHANGE: use --output instead")
    assert_true(c.breaking)
    assert_eq(c.breaking_note, "use --output instead")
  end)

  test("a body, then footers; a footer value may span lines", function()
    local c = parse("fix: prevent racing of requests\n\n" ..
      "Introduce a request id and a reference to latest request. Dismiss\n" ..
      "incoming responses other than from latest request.\n\n" ..
      "Remove timeouts which were used to mitigate the racing issue but are\nobsolete now.\n\n" ..
      "Reviewed-by: Z\nRefs: #123\nBREAKING CHANGE: responses are now\n  dismissed silently\n")
    assert_true(c.breaking)
    assert_match(c.body, "^Introduce a request id")
    assert_match(c.body, "obsolete now%.$")
    assert_eq(#c.footers, 3)
    assert_eq(c.footers[1], { token = "Reviewed-by", value = "Z" })
    assert_eq(c.footers[2], { token = "Refs", value = "#123" })
    assert_eq(c.footers[3].token, "BREAKING CHANGE")
    assert_eq(c.breaking_note, "responses are now\n  dismissed silently")
  end)

  test("a footer with the # separator; a line in the middle of a paragraph is body", function()
    local c = parse("fix: x\n\nsee the note\nCloses: nothing, this is prose\n\nFixes #42\n")
    assert_eq(c.footers, { { token = "Fixes", value = "#42" } })
    assert_match(c.body, "Closes: nothing")
  end)

  test("BREAKING CHANGE must be upper case to count", function()
    local c = parse("feat: x\n\nbreaking change: not really\n")
    assert_false(c.breaking)
  end)

  test("messages that are not Conventional Commits", function()
    for _, m in ipairs { "Update README", "feat:missing space", "feat(: broken", "feat(x)", "feat: ",
      "Merge branch 'main' into dev", ": no type", "fix(a)(b): two scopes" } do
      local c = parse(m)
      assert_false(c.conventional, m)
      assert_nil(c.type, m)
      assert_eq(c.description, m:gsub("%s+$", ""), m)
    end
  end)

  test("git's revert message is a revert", function()
    local c = parse('Revert "feat(api): add orders"\n\nThis reverts commit 0123abc.\n')
    assert_eq(c.type, "revert")
    assert_false(c.conventional)
    assert_eq(c.description, "feat(api): add orders")
  end)

  test("CRLF line ends, trailing blanks and a trailing newline", function()
    local c = parse("feat(ui):   dark mode  \r\n\r\nBREAKING CHANGE: colours moved\r\n")
    assert_eq(c.description, "dark mode")
    assert_eq(c.breaking_note, "colours moved")
  end)

  test("misuse raises at the caller's line", function()
    assert_misuse(function() parse(nil) end, "changelog.parse: expected a string, got nil")
    assert_misuse(function() parse("fix: x", "c") end, "changelog.parse: into must be a table, got string")
  end)
end)

local function commits(list)
  local out = {}
  for i, m in ipairs(list) do
    out[i] = { message = m, id = string.format("%040x", i), short = string.format("%07x", i),
      author = "Dev " .. i, parents = { "p" } }
  end
  return out
end

describe("the version commits imply", function()
  test("breaking > feat > fix/perf/revert > nothing", function()
    assert_eq(changelog.bump(commits { "fix: a", "feat: b", "chore: c" }, "1.2.3"), "minor")
    assert_eq(changelog.bump(commits { "fix: a", "feat!: b" }, "1.2.3"), "major")
    assert_eq(changelog.bump(commits { "perf: a", "docs: b" }, "1.2.3"), "patch")
    assert_eq(changelog.bump(commits { 'Revert "feat: x"' }, "1.2.3"), "patch")
    assert_nil(changelog.bump(commits { "docs: a", "chore: b", "Update README", "ci: c" }, "1.2.3"))
    assert_nil(changelog.bump({}, "1.2.3"))
    assert_eq(changelog.bump(commits { "fix: a\n\nBREAKING CHANGE: b" }, "2.0.0"), "major")
  end)

  test("the 0.x rule: a breaking change bumps the minor version", function()
    assert_eq(changelog.bump(commits { "feat!: b" }, "0.4.1"), "minor")
    assert_eq(changelog.bump(commits { "feat: b" }, "0.4.1"), "minor")
    assert_eq(changelog.bump(commits { "fix: b" }, "v0.4.1"), "patch")
    assert_eq(tostring(changelog.next_version("0.4.1", commits { "feat!: b" })), "0.5.0")
    assert_eq(tostring(changelog.next_version("1.4.1", commits { "feat!: b" })), "2.0.0")
  end)

  test("next_version keeps the prefix; nothing releasable is nil; no tag gives the initial", function()
    local v, part = changelog.next_version("v1.2.3", commits { "feat: x" })
    assert_eq(v:tag(), "v1.3.0")
    assert_eq(part, "minor")
    assert_nil(changelog.next_version("v1.2.3", commits { "chore: x" }))
    v, part = changelog.next_version(nil, commits { "chore: x" })
    assert_eq(tostring(v), "0.1.0")
    assert_eq(part, "initial")
    assert_eq(changelog.next_version(nil, {}, { initial = "1.0.0", prefix = "v" }):tag(), "v1.0.0")
  end)

  test("a current or initial version that is not one raises an invalid error value (try returns it)", function()
    local e = assert_raises(function() changelog.bump({}, "one") end, "invalid")
    assert_eq(e.message, 'changelog.bump: current "one" is not a semantic version')
    assert_raises(function() changelog.next_version("1.2", commits { "feat: x" }) end, "invalid",
      '^changelog%.next_version: current "1%.2" is not')
    assert_raises(function() changelog.next_version(nil, {}, { initial = "1" }) end, "invalid",
      '^changelog%.next_version: initial "1" is not')
    local v, err = try(changelog.bump, {}, "one")
    assert_nil(v)
    assert_eq(err.kind, "invalid")
  end)

  test("misuse raises at the caller's line", function()
    assert_misuse(function() changelog.bump("feat: x") end, "changelog.bump: commits must be a list, got string")
    assert_misuse(function() changelog.bump({}, 1.5) end, "changelog.bump: current must be a version or a string, got number")
    assert_misuse(function() changelog.next_version("1.0.0", nil) end, "changelog.next_version: commits must be a list, got nil")
    assert_misuse(function() changelog.next_version(nil, {}, { prefix = 1 }) end,
      "changelog.next_version: prefix must be a string, got number")
    assert_misuse(function() changelog.next_version(nil, {}, { initial = {} }) end,
      "changelog.next_version: initial must be a version or a string, got table")
  end)
end)

describe("release notes", function()
  local list = commits {
    "feat(api)!: drop the v1 endpoints\n\nBREAKING CHANGE: /v1 is gone; use /v2.",
    "feat(cli): add --json",
    "fix: handle an empty body",
    "perf(db): batch the inserts",
    "docs: explain tags",
    "chore: bump deps",
    "Tidy up",
    'Revert "fix: a bad idea"',
    "feat: retries",
  }

  test("grouped by type, in log order, with short hashes and authors", function()
    local md = changelog.notes(list, { version = "v2.0.0", date = "2026-11-26" })
    assert_eq(md, table.concat({
      "## v2.0.0 (2026-11-26)",
      "",
      "### Breaking changes",
      "",
      "- **api:** drop the v1 endpoints (0000001, Dev 1)",
      "  /v1 is gone; use /v2.",
      "",
      "### Features",
      "",
      "- **cli:** add --json (0000002, Dev 2)",
      "- retries (0000009, Dev 9)",
      "",
      "### Bug fixes",
      "",
      "- handle an empty body (0000003, Dev 3)",
      "",
      "### Performance",
      "",
      "- **db:** batch the inserts (0000004, Dev 4)",
      "",
      "### Reverts",
      "",
      "- fix: a bad idea (0000008, Dev 8)",
      "",
      "### Documentation",
      "",
      "- explain tags (0000005, Dev 5)",
      "",
      "### Other changes",
      "",
      "- bump deps (0000006, Dev 6)",
      "- Tidy up (0000007, Dev 7)",
      "",
    }, "\n"))
  end)

  test("links to commits and the comparison; other changes can be left out", function()
    local md = changelog.notes(list, { version = "v2.0.0", previous = "v1.9.0", date = false, other = false,
      commit_url = "https://git.example.com/shop/commit/%s", compare_url = "https://git.example.com/shop/compare/%s...%s" })
    assert_match(md, "^## %[v2%.0%.0%]%(https://git%.example%.com/shop/compare/v1%.9%.0%.%.%.v2%.0%.0%)\n")
    assert_match(md, "%- %*%*cli:%*%* add %-%-json %(%[0000002%]%(https://git%.example%.com/shop/commit/" ..
      string.format("%040x", 2) .. "%), Dev 2%)")
    assert_false(md:find("Other changes", 1, true) ~= nil)
  end)

  test("merge commits are left out unless asked; nothing gives 'No changes.'", function()
    local m = commits { "Merge branch 'x'", "fix: y" }
    m[1].parents = { "a", "b" }
    assert_false(changelog.notes(m, { version = "1.0.1" }):find("Merge", 1, true) ~= nil)
    assert_match(changelog.notes(m, { version = "1.0.1", merges = true }), "Merge branch 'x'")
    assert_eq(changelog.notes({}, { version = "1.0.1", date = "2026-01-02" }), "## 1.0.1 (2026-01-02)\n\nNo changes.\n")
  end)

  test("an unknown option or options that are not a table raise at the caller's line, naming it", function()
    assert_misuse(function() changelog.notes(list, { verison = "1" }) end, "changelog.notes: unknown option 'verison' (did you mean 'version'?)")
    assert_misuse(function() changelog.notes(list, "v1") end, "changelog.notes: options must be a table, got string")
    assert_misuse(function() changelog.notes(nil) end, "changelog.notes: expected a list of commits, got nil")
    assert_misuse(function() changelog.next_version(nil, {}, { inital = "1.0.0" }) end,
      "changelog.next_version: unknown option 'inital' (did you mean 'initial'?)")
    -- checked before the repository is read
    local repo = {}
    assert_misuse(function() changelog.release(repo, { verison = "1.0.0" }) end,
      "changelog.release: unknown option 'verison' (did you mean 'version'?)")
    assert_misuse(function() changelog.commits(repo, { form = "v1" }) end, "changelog.commits: unknown option 'form' (did you mean 'from'?)")
    assert_misuse(function() changelog.last_tag(repo, { perfix = "v" }) end,
      "changelog.last_tag: unknown option 'perfix' (did you mean 'prefix'?)")
    assert_misuse(function() changelog.release(repo, { version = 2 }) end,
      "changelog.release: version must be a version or a string, got number")
    assert_misuse(function() changelog.release(repo, { from = 2 }) end, "changelog.release: from must be a string, got number")
    assert_misuse(function() changelog.release(nil) end,
      "changelog.release: expected a repository from relish.git (git.open), got nil")
    -- the versions given are read before the repository too
    assert_raises(function() changelog.release(repo, { version = "2.0" }) end, "invalid",
      '^changelog%.release: version "2%.0" is not a semantic version$')
  end)

  test("a version object is shown with its prefix", function()
    assert_match(changelog.notes({}, { version = semver.parse("v3.1.0"), date = false }), "^## v3%.1%.0\n")
  end)
end)

describe("CHANGELOG.md", function()
  local section = "## v1.1.0 (2026-11-26)\n\n### Features\n\n- x (abc1234, Dev)\n"

  test("a new file gets a title", function()
    assert_eq(changelog.prepend(nil, section), "# Changelog\n\n" .. section)
    assert_eq(changelog.prepend("\n", section), "# Changelog\n\n" .. section)
  end)

  test("the new section goes on top, after the title and introduction", function()
    local old = "# Changelog\n\nAll notable changes.\n\n## v1.0.0 (2026-01-01)\n\n- first\n"
    assert_eq(changelog.prepend(old, section),
      "# Changelog\n\nAll notable changes.\n\n" .. section .. "\n## v1.0.0 (2026-01-01)\n\n- first\n")
  end)

  test("a file that starts with a section, or has none yet", function()
    assert_eq(changelog.prepend("## v1.0.0\n\n- first\n", section), section .. "\n## v1.0.0\n\n- first\n")
    assert_eq(changelog.prepend("# Changelog\n", section), "# Changelog\n\n" .. section)
  end)

  test("misuse raises at the caller's line", function()
    assert_misuse(function() changelog.prepend(5, section) end, "changelog.prepend: expected a string or nil, got number")
    assert_misuse(function() changelog.prepend("", nil) end, "changelog.prepend: section must be a string, got nil")
  end)
end)

describe("from a repository", function()
  local G = require "gitsupport"
  local git = require "relish.git"

  -- a repository tagged v1.2.0 (and "latest", not a version), with a
  -- feature and a fix after the tag
  local function history(d)
    local work = G.repo(d, "work", { message = "feat: start" })
    G.git(work, "tag", "v1.2.0")
    G.git(work, "tag", "latest")
    G.commit(work, { a = "a\n" }, "feat(api): orders")
    G.commit(work, { b = "b\n" }, "fix: rounding")
    return work
  end

  test("release: the next version, the commits since the last tag and the notes", function()
    local d = tmpdir()
    local repo <close> = git.open(history(d))
    local last, v = changelog.last_tag(repo)
    assert_eq({ last.name, tostring(v) }, { "v1.2.0", "1.2.0" })
    local plan = changelog.release(repo, { date = false })
    assert_eq({ plan.previous, tostring(plan.version), plan.tag, plan.bump, plan.releasable, #plan.commits },
      { "v1.2.0", "1.3.0", "v1.3.0", "minor", true, 2 })
    assert_match(plan.notes, "^## v1%.3%.0\n\n### Features\n\n%- %*%*api:%*%* orders")
    plan = changelog.release(repo, { from = plan.commits[2].id, date = false })
    assert_eq({ plan.previous_version, #plan.commits }, { nil, 1 }, "a from that is no version tag")
  end)

  test("a forced version that is not above the last release raises invalid", function()
    local d = tmpdir()
    local repo <close> = git.open(history(d))
    local e = assert_raises(function() changelog.release(repo, { version = "1.1.0" }) end, "invalid")
    assert_eq(e.message, "changelog.release: version 1.1.0 is not above the last release 1.2.0")
    local plan, err = try(changelog.release, repo, { version = "1.2.0" })
    assert_nil(plan)
    assert_match(err.message, "is not above the last release")
    assert_eq(tostring(changelog.release(repo, { version = "v2.0.0" }).version), "2.0.0")
  end)

  test("a ref that is not there fails with relish.git's error, as it is", function()
    local d = tmpdir()
    local repo <close> = git.open(history(d))
    local ok, err = pcall(changelog.commits, repo, { from = "v9.9.9" })
    assert_false(ok)
    assert_eq(type(err), "table")
    assert_match(err.message, "v9%.9%.9")
    assert_raises(function() changelog.release(repo, { from = "v9.9.9" }) end, err.kind, "v9%.9%.9")
  end)

  test("a commit and its git revert, both since the tag, cancel out: not in the notes, no bump", function()
    local d = tmpdir()
    local work = history(d)
    G.commit(work, { c = "c\n" }, "feat!: a breaking change, regretted")
    G.git(work, "revert", "--no-edit", "HEAD") -- "Revert ...", "This reverts commit <id>."
    assert_match(G.git(work, "log", "-1", "--format=%B"), "This reverts commit %x+%.")
    local repo <close> = git.open(work)
    local plan = changelog.release(repo, { date = false })
    assert_eq({ tostring(plan.version), #plan.commits }, { "1.3.0", 2 })
    assert_false(plan.notes:find("regretted", 1, true) ~= nil, plan.notes)
    assert_false(plan.notes:find("Revert", 1, true) ~= nil, plan.notes)
    -- a revert of a revert brings the change back
    G.git(work, "revert", "--no-edit", "HEAD")
    plan = changelog.release(repo, { date = false })
    assert_eq({ tostring(plan.version), #plan.commits }, { "2.0.0", 3 })
    assert_match(plan.notes, "a breaking change, regretted")
  end)

  test("a release relish rolled back (Relish-Revert: A..B) cancels out with the commits it reverts", function()
    local d = tmpdir()
    local work = history(d)
    local base = G.rev(work, "HEAD")
    G.commit(work, { c = "c\n" }, "feat: pushed then rolled back")
    G.commit(work, { CHANGELOG = "v1.3.0\n" }, "chore(release): v1.3.0")
    local top = G.rev(work, "HEAD")
    -- the revert a rollback pushes: the tree of base, the trailer naming the range
    G.git(work, "rm", "-q", "c", "CHANGELOG")
    G.git(work, "commit", "-q", "-m", "Revert " .. base:sub(1, 7) .. ".." .. top:sub(1, 7) .. " on main\n\n" ..
      "This reverts the commits " .. base .. ".." .. top .. ", pushed to main and rolled back by relish.\n\n" ..
      "Relish-Revert: " .. base .. ".." .. top)
    local repo <close> = git.open(work)
    local plan = changelog.release(repo, { date = false })
    assert_eq({ tostring(plan.version), #plan.commits }, { "1.3.0", 2 })
    assert_false(plan.notes:find("rolled back", 1, true) ~= nil, plan.notes)
    assert_false(plan.notes:find("chore", 1, true) ~= nil, plan.notes)
    assert_false(plan.notes:find("Revert", 1, true) ~= nil, plan.notes)
  end)

  test("a revert of a commit released before the tag stays (a fix of the release)", function()
    local d = tmpdir()
    local work = G.repo(d, "work", { message = "feat: start" })
    G.commit(work, { a = "a\n" }, "feat: shipped in 1.2.0")
    G.git(work, "tag", "v1.2.0")
    G.git(work, "revert", "--no-edit", "HEAD")
    local repo <close> = git.open(work)
    local plan = changelog.release(repo, { date = false })
    assert_eq({ tostring(plan.version), #plan.commits }, { "1.2.1", 1 })
    assert_match(plan.notes, "### Reverts\n\n%- feat: shipped in 1%.2%.0")
  end)

  test("no version tag: last_tag is nil, release proposes the initial version", function()
    local d = tmpdir()
    local work = G.repo(d, "fresh", { message = "feat: start" })
    G.git(work, "tag", "nightly")
    local repo <close> = git.open(work)
    assert_nil(changelog.last_tag(repo))
    local plan = changelog.release(repo, { date = false, initial = "1.0.0" })
    assert_eq({ plan.previous, tostring(plan.version), plan.bump }, { nil, "1.0.0", "initial" })
  end)
end)
