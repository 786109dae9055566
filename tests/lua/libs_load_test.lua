-- Recipe libraries, the loading side: require "lib.NAME.module" loads from
-- the tree relish.lock pins (in $XDG_CACHE_HOME/relish/libs/<sha256>), after
-- checking the tree's files against the lock's sha256; a run records the
-- libraries it loaded, and relish show tells them. The trees and the lock
-- are made by hand here (relish install makes them in libs_install_test).
local support = require "support"
local json = require "relish.json"
local libs = require "relish.libs"
local J = require "relish.journal"
local G = require "gitsupport"
local fs = require "relish.fs"
local relish, write, read = support.relish, support.write, support.read

local function mkdir(p) assert(os.execute("mkdir -p '" .. p .. "'")) end

-- A library's tree in the cache: files {path = text}; returns its lock entry.
-- opts.mirror: the library is a git repository (a commit of files) with its
-- bare mirror in the cache, as relish install leaves it.
local function install(cache, name, files, opts)
  opts = opts or {}
  local source = opts.source or ("file:///srv/git/" .. name .. ".git")
  local commit = string.rep(string.format("%x", #name % 16), 40)
  if opts.mirror then
    local src = G.repo(cache .. "/..", name .. "-src", { files = files })
    commit = G.rev(src, "HEAD")
    G.git(cache .. "/..", "clone", "-q", "--bare", src, cache .. "/git/" .. fs.sha256(source) .. ".git")
  end
  local tmp = cache .. "/libs/tmp-" .. name
  for path, text in pairs(files) do
    local dir = (tmp .. "/" .. path):match("^(.*)/")
    mkdir(dir)
    write(tmp .. "/" .. path, text)
  end
  local sha = libs.tree_hash(tmp)
  assert(os.rename(tmp, cache .. "/libs/" .. sha))
  return { source = source, constraint = opts.constraint or "^1.0.0", version = opts.version or "v1.2.3", commit = commit,
    sha256 = sha, requires = json.array(opts.requires or {}), required_by = json.array { "(root)" } }
end

-- A recipe repository at root: relish.deps.lua and relish.lock for entries.
local function repo(root, entries)
  mkdir(root)
  local m = { "return {" }
  local names = {}
  for name in pairs(entries) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local e = entries[name]
    local form, value = e.constraint:match("^(%a+) (.+)$")
    if form ~= "branch" and form ~= "commit" then form, value = "version", e.constraint end
    m[#m + 1] = string.format("  %s = { source = %q, %s = %q },", name, e.source, form, value)
  end
  m[#m + 1] = "}"
  write(root .. "/relish.deps.lua", table.concat(m, "\n") .. "\n")
  write(root .. "/relish.lock", json.encode({ relish_lock = 1, libraries = entries },
    { pretty = true, sort_keys = true }) .. "\n")
end

local PLATFORM = {
  ["init.lua"] = 'return { name = "platform" }\n',
  ["auth.lua"] = 'local M = {}\nfunction M.header(user) return "Bearer " .. user end\nreturn M\n',
  -- a library module requiring its own sibling, and a directory module
  ["release.lua"] = 'local auth = require "lib.platform.auth"\nlocal text = require "lib.platform.util.text"\n' ..
    'return { tag = function(v) return text.upper(auth.header("rel")) .. " " .. v end }\n',
  ["util/text/init.lua"] = 'return { upper = string.upper }\n',
}
local OBS = {
  ["obs.lua"] = 'return { line = function(s) return "[obs] " .. s end }\n',
  ["README.md"] = "obs\n",
}

-- d/cache with platform and obs installed, and d/repo locking both
local function world()
  local d = tmpdir()
  local cache = d .. "/cache/relish"
  mkdir(cache .. "/libs")
  local entries = { platform = install(cache, "platform", PLATFORM, { mirror = true }),
    obs = install(cache, "obs", OBS, { version = json.null, constraint = "branch main" }) }
  repo(d .. "/repo", entries)
  return d, entries
end

local USES_TWO = [[
local release = require "lib.platform.release"
local obs = require "lib.obs.obs"
local fs = require "relish.fs"
return recipe "uses-two" {
  params = { out = param.string { required = true } },
  step "write" { run = function(ctx) fs.write(ctx.params.out, obs.line(release.tag("v2"))) end },
}
]]

local function run(d, file, extra)
  local args = { "run", file, "--state", support.state(d), env = { XDG_CACHE_HOME = d .. "/cache" } }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return relish(args)
end

local function show(d, fmt)
  local r = relish { "show", "last", "--format", fmt, "--state", support.state(d) }
  assert_eq(r.code, 0, r.stdout .. r.stderr)
  return r.stdout
end

local function runs(d)
  if not read(d .. "/journal.db") then return 0 end
  local j = J.open(support.state(d))
  local n = #j:list_runs()
  j:close()
  return n
end

describe("require lib.NAME.module", function()
  test("a recipe using two libraries runs, and the run records them", function()
    local d, e = world()
    local f = support.recipe(d .. "/repo", "two.lua", USES_TWO)
    local r = run(d, f, { "-p", "out=" .. d .. "/out" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(read(d .. "/out"), "[obs] BEARER REL v2")
    local s = json.decode(show(d, "json"))
    assert_eq(#s.libraries, 2)
    local p, o = s.libraries[1], s.libraries[2]
    assert_eq({ p.name, p.version, p.commit, p.sha256 }, { "platform", "v1.2.3", e.platform.commit, e.platform.sha256 })
    assert_eq({ o.name, o.version, o.commit, o.sha256 }, { "obs", json.null, e.obs.commit, e.obs.sha256 })
    local text = show(d, "text")
    assert_match(text, "\nlibraries:\n  platform +v1%.2%.3 +commit " .. e.platform.commit)
    assert_match(text, "\n  obs +%- +commit " .. e.obs.commit)
    local md = show(d, "markdown")
    assert_match(md, "### Libraries")
    assert_match(md, "| platform | v1%.2%.3 | `" .. e.platform.commit .. "` | `" .. e.platform.sha256:sub(1, 12) .. "` |")
  end)

  test("a dry-run records the libraries too", function()
    local d, e = world()
    local f = support.recipe(d .. "/repo", "two.lua", USES_TWO)
    local r = run(d, f, { "-p", "out=" .. d .. "/out", "--dry-run" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_nil(read(d .. "/out"))
    local j = J.open(support.state(d))
    local list = j:list_runs()
    assert_eq({ #list, list[1].dry_run }, { 1, true })
    local got = j:libraries(list[1].id)
    j:close()
    assert_eq({ #got, got[1].name, got[2].name, got[2].sha256 }, { 2, "platform", "obs", e.obs.sha256 })
  end)

  test("a library required inside a step is added when it loads", function()
    local d, e = world()
    local f = support.recipe(d .. "/repo", "lazy.lua", [[
      local obs = require "lib.obs.obs"
      return recipe "lazy" {
        step "one" { run = function(ctx) ctx.log(obs.line("one")) end },
        step "two" { run = function(ctx) ctx.log(require("lib.platform.auth").header("x")) end },
      }
    ]])
    local r = run(d, f)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local s = json.decode(show(d, "json"))
    assert_eq({ #s.libraries, s.libraries[1].name, s.libraries[2].name, s.libraries[2].commit },
      { 2, "obs", "platform", e.platform.commit })
  end)

  test("two recipes in one repository share one library", function()
    local d, e = world()
    mkdir(d .. "/repo/recipes/deploy")
    mkdir(d .. "/repo/runbooks")
    local a = support.recipe(d .. "/repo/recipes/deploy", "a.lua", [[
      local release = require "lib.platform.release"
      return recipe "a" { step "s" { run = function(ctx) ctx.log(release.tag("a")) end } }
    ]])
    local b = support.recipe(d .. "/repo/runbooks", "b.lua", [[
      local auth = require "lib.platform.auth"
      return recipe "b" { step "s" { run = function(ctx) ctx.log(auth.header("b")) end } }
    ]])
    for _, f in ipairs { a, b } do
      local r = run(d, f)
      assert_eq(r.code, 0, r.stdout .. r.stderr)
      local s = json.decode(show(d, "json"))
      assert_eq({ #s.libraries, s.libraries[1].name, s.libraries[1].sha256 }, { 1, "platform", e.platform.sha256 })
    end
    assert_eq(runs(d), 2)
  end)

  test("lib.NAME alone is the library's init.lua; a missing module is named", function()
    local d = world()
    local f = support.recipe(d .. "/repo", "init.lua", [[
      local p = require "lib.platform"
      return recipe "init" { step "s" { run = function(ctx) ctx.log("lib " .. p.name) end } }
    ]])
    local r = run(d, f)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "lib platform")
    local g = support.recipe(d .. "/repo", "missing.lua", [[
      local p = require "lib.platform.nope"
      return recipe "m" { step "s" { run = function() end } }
    ]])
    r = run(d, g)
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "module 'lib%.platform%.nope' not found: library 'platform' %(.-%) has no nope%.lua")
    local h = support.recipe(d .. "/repo", "dots.lua", [[
      local p = require "lib.platform...auth"
      return recipe "m" { step "s" { run = function() end } }
    ]])
    r = run(d, h)
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "a library module is lib%.NAME%.module")
    assert_eq(runs(d), 1)
  end)

  test("a library loads its own dependencies, and only those", function()
    local d, e = world()
    local cache = d .. "/cache/relish"
    e.deploy = install(cache, "deploy", {
      ["ship.lua"] = 'local auth = require "lib.platform.auth"\nreturn { go = function() return auth.header("d") end }\n',
      ["spy.lua"] = 'return require "lib.obs.obs"\n',
    }, { requires = { "inner", "platform" } })
    e.platform.required_by = json.array { "(root)", "deploy" }
    e.inner = install(cache, "inner", { ["x.lua"] = "return 1\n" })
    e.inner.required_by = json.array { "deploy" }
    repo(d .. "/repo", e)
    -- the manifest lists what the recipe depends on, not inner (deploy's own)
    write(d .. "/repo/relish.deps.lua", (read(d .. "/repo/relish.deps.lua"):gsub("\n  inner = [^\n]*", "")))
    local f = support.recipe(d .. "/repo", "dep.lua", [[
      local ship = require "lib.deploy.ship"
      return recipe "dep" { step "s" { run = function(ctx) ctx.log(ship.go()) end } }
    ]])
    local r = run(d, f)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "Bearer d")
    local s = json.decode(show(d, "json"))
    assert_eq({ #s.libraries, s.libraries[1].name, s.libraries[2].name }, { 2, "deploy", "platform" })
    local g = support.recipe(d .. "/repo", "spy.lua", [[
      local spy = require "lib.deploy.spy"
      return recipe "spy" { step "s" { run = function() end } }
    ]])
    r = run(d, g)
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "spy%.lua:1: require \"lib%.obs%.obs\": library 'deploy' does not depend on 'obs' " ..
      "%(relish%.lock: it requires inner, platform%): add 'obs' to its relish%.deps%.lua")
    local h = support.recipe(d .. "/repo", "inner.lua", [[
      local x = require "lib.inner.x"
      return recipe "inner" { step "s" { run = function() end } }
    ]])
    r = run(d, h)
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "inner%.lua:1: require \"lib%.inner%.x\": library 'inner' is in .-/repo/relish%.lock only " ..
      "as a dependency of deploy: add it to relish%.deps%.lua")
    assert_eq(runs(d), 1)
  end)
end)

describe("a library's own shape", function()
  -- modules that require their siblings by plain names, and a test of its own
  local LIB = {
    ["auth.lua"] = 'return { header = function(u) return "Bearer " .. u end }\n',
    ["release.lua"] = 'local auth = require "auth"\nlocal fmt = require "util.fmt"\n' ..
      'return { tag = function(v) return fmt.join(auth.header("ci"), v) end }\n',
    ["util/fmt/init.lua"] = 'return { join = function(a, b) return a .. " " .. b end }\n',
    ["tests/release_test.lua"] = 'local release = require "release"\n' ..
      'describe("release", function()\n  test("tag", function()\n' ..
      '    assert_eq(release.tag("v1"), "Bearer ci v1")\n  end)\nend)\n',
  }

  test("in a recipe, a library's plain require is its own sibling, never the recipe's module", function()
    local d = tmpdir()
    local cache = d .. "/cache/relish"
    mkdir(cache .. "/libs")
    local e = { shared = install(cache, "shared", LIB) }
    repo(d .. "/repo", e)
    -- the recipe's own auth.lua, which the library must not see
    write(d .. "/repo/auth.lua", 'return { header = function() return "the recipe\'s auth" end }\n')
    local f = support.recipe(d .. "/repo", "r.lua", [[
      local release = require "lib.shared.release"
      local auth = require "auth"
      return recipe "r" { step "s" { run = function(ctx) ctx.log(release.tag("v3") .. " / " .. auth.header()) end } }
    ]])
    local r = relish { "run", f, "--state", support.state(d), env = { XDG_CACHE_HOME = d .. "/cache" },
      cwd = d .. "/repo" }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "Bearer ci v3 / the recipe's auth")
  end)

  test("relish test runs a library's tests from its checkout, its modules found at its root", function()
    local d = tmpdir()
    local lib = d .. "/shared"
    for path, text in pairs(LIB) do
      mkdir((lib .. "/" .. path):match("^(.*)/"))
      write(lib .. "/" .. path, text)
    end
    mkdir(lib .. "/.git")
    local r = relish { "test", lib .. "/tests/release_test.lua" }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "1 passed, 0 failed")
    -- without the root (no .git, no relish.deps.lua): its siblings are not found
    assert(os.execute("rmdir '" .. lib .. "/.git'"))
    r = relish { "test", lib .. "/tests/release_test.lua", cwd = d }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout, "module 'release' not found")
  end)
end)

describe("refused: exit 2, nothing ran", function()
  test("a library not in the lock names relish install (and the nearest name)", function()
    local d = world()
    local f = support.recipe(d .. "/repo", "bad.lua", [[
      local p = require "lib.platfrom.auth"
      return recipe "bad" { step "s" { run = function() end } }
    ]])
    local r = run(d, f)
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "bad%.lua:1: require \"lib%.platfrom%.auth\": library 'platfrom' is not in " ..
      ".-/repo/relish%.lock %(did you mean 'platform'%?%) %(libraries: obs, platform%): add it to relish%.deps%.lua " ..
      "and run relish install")
    assert_eq(runs(d), 0)
  end)

  test("a library in the lock but not installed names relish install", function()
    local d, e = world()
    assert(os.execute("rm -rf '" .. d .. "/cache/relish/libs/" .. e.obs.sha256 .. "'"))
    local f = support.recipe(d .. "/repo", "two.lua", USES_TWO)
    local r = run(d, f, { "-p", "out=" .. d .. "/out" })
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "library 'obs' %(branch main " .. e.obs.commit:sub(1, 12) .. "%) is not installed " ..
      "%(no .-/libs/" .. e.obs.sha256 .. "%): run relish install in .-/repo")
    assert_eq(runs(d), 0)
  end)

  test("a recipe outside any repository with a manifest", function()
    local d = world()
    mkdir(d .. "/elsewhere")
    local f = support.recipe(d .. "/elsewhere", "two.lua", USES_TWO)
    local r = run(d, f, { "-p", "out=" .. d .. "/out" })
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "there is no relish%.deps%.lua in .-/elsewhere or a directory above it")
  end)

  test("a changed, added or removed file in a library's tree is refused, the file named", function()
    local d, e = world()
    local f = support.recipe(d .. "/repo", "two.lua", USES_TWO)
    local r = run(d, f, { "-p", "out=" .. d .. "/out1" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local tree = d .. "/cache/relish/libs/" .. e.platform.sha256
    write(tree .. "/auth.lua", 'return { header = function() os.exit(1) end }\n')
    r = run(d, f, { "-p", "out=" .. d .. "/out2" })
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "two%.lua:1: library 'platform' %(v1%.2%.3 " .. e.platform.commit:sub(1, 12) ..
      "%): its installed tree does not match .-/repo/relish%.lock %(sha256 %x+, the lock has " ..
      e.platform.sha256:sub(1, 12) .. "%): " .. tree:gsub("%p", "%%%0") .. "/auth%.lua was changed; nothing ran")
    assert_nil(read(d .. "/out2"))
    assert_eq(runs(d), 1)
    -- put back: loads again; then one added and one removed
    write(tree .. "/auth.lua", PLATFORM["auth.lua"])
    write(tree .. "/extra.lua", "return 1\n")
    os.remove(tree .. "/init.lua")
    r = run(d, f, { "-p", "out=" .. d .. "/out2" })
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "/extra%.lua was added, .-/init%.lua was removed; nothing ran")
    -- a mode counts: an executable bit set on a file
    os.remove(tree .. "/extra.lua")
    write(tree .. "/init.lua", PLATFORM["init.lua"], tonumber("755", 8))
    r = run(d, f, { "-p", "out=" .. d .. "/out2" })
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "/init%.lua was changed; nothing ran")
    assert_eq(runs(d), 1)
  end)

  test("a tree changed before it was ever loaded is refused too", function()
    local d, e = world()
    local tree = d .. "/cache/relish/libs/" .. e.obs.sha256
    write(tree .. "/obs.lua", 'return { line = function() return "forged" end }\n')
    local f = support.recipe(d .. "/repo", "two.lua", USES_TWO)
    local r = run(d, f, { "-p", "out=" .. d .. "/out" })
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "library 'obs' .-its installed tree does not match .-: a file in it was changed, added " ..
      "or removed %(no mirror of its commit in the cache to compare with%); nothing ran: relish install in " ..
      ".-/repo checks it out again")
    assert_nil(read(d .. "/out"))
    -- with its mirror in the cache, the file is named before any load too
    write(d .. "/cache/relish/libs/" .. e.platform.sha256 .. "/release.lua", "return {}\n")
    r = run(d, f, { "-p", "out=" .. d .. "/out" })
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "library 'platform' .-/libs/" .. e.platform.sha256 .. "/release%.lua was changed; nothing ran")
    assert_eq(runs(d), 0)
  end)
end)

describe("with relish install", function()
  test("installed by relish install from a path: loads, records the locked commit; a changed file is named", function()
    local d = tmpdir()
    local src = G.repo(d, "platform", { files = PLATFORM })
    G.git(src, "tag", "v1.4.0")
    local commit = G.rev(src, "HEAD")
    local app = d .. "/app"
    mkdir(app)
    write(app .. "/relish.deps.lua", 'return { platform = { source = "../platform", version = "^1.2.0" } }\n')
    local env = G.env { XDG_CACHE_HOME = d .. "/cache" }
    local r = relish({ "install" }, { cwd = app, env = env })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local lock = json.decode(read(app .. "/relish.lock"))
    local e = lock.libraries.platform
    assert_eq({ e.version, e.commit }, { "v1.4.0", commit })
    local f = support.recipe(app, "rel.lua", [[
      local release = require "lib.platform.release"
      return recipe "rel" { step "s" { run = function(ctx) ctx.log(release.tag("v9")) end } }
    ]])
    r = relish({ "run", f, "--state", support.state(d) }, { cwd = app, env = env })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "BEARER REL v9")
    local s = json.decode(show(d, "json"))
    assert_eq({ #s.libraries, s.libraries[1].version, s.libraries[1].commit, s.libraries[1].sha256 },
      { 1, "v1.4.0", commit, e.sha256 })
    -- the installed files are read-only; someone makes one writable and edits it
    local file = d .. "/cache/relish/libs/" .. e.sha256 .. "/util/text/init.lua"
    assert(os.execute("chmod u+w '" .. file .. "'"))
    write(file, "return { upper = string.lower }\n")
    r = relish({ "run", f, "--state", support.state(d) }, { cwd = app, env = env })
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "library 'platform' %(v1%.4%.0 " .. commit:sub(1, 12) .. "%): its installed tree does " ..
      "not match .-: .-/util/text/init%.lua was changed; nothing ran: relish install in .-/app checks it out again")
    assert_eq(runs(d), 1)
    -- as it says: install checks it out again, and the recipe runs
    r = relish({ "install" }, { cwd = app, env = env })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    r = relish({ "run", f, "--state", support.state(d) }, { cwd = app, env = env })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "BEARER REL v9")
  end)
end)

describe("the journal", function()
  test("a schema 8 journal (no run_libraries) is upgraded and keeps its runs", function()
    local d = world()
    local f = support.recipe(d .. "/repo", "two.lua", USES_TWO)
    local r = run(d, f, { "-p", "out=" .. d .. "/out" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local j = J.open(support.state(d))
    j.db:script("DROP TABLE run_libraries; PRAGMA user_version = " .. (J.SCHEMA_VERSION - 1) .. ";")
    j:close()
    j = J.open(support.state(d))
    assert_eq(j.db:query("PRAGMA user_version")[1].user_version, J.SCHEMA_VERSION)
    local runs_ = j:list_runs()
    assert_eq(#runs_, 1)
    assert_eq(j:libraries(runs_[1].id), {})
    j:close()
    assert_eq(json.decode(show(d, "json")).libraries, {})
  end)
end)
