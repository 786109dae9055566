-- relish install / outdated against real remotes: libraries published to bare
-- repositories served by git daemon on a loopback port (and by path and
-- file://); every constraint form, the lock written and honoured, --frozen,
-- a moved tag, transitive libraries and a conflict, offline from the cache,
-- --update NAME, outdated; the manifest's sandbox; the tree hash.
local G = require "gitsupport"
local support = require "support"
local json = require "relish.json"
local libs = require "relish.libs"
local sh = require "relish.sh"

local daemon
after_each(function()
  if daemon then daemon:stop() end
  daemon = nil
end)

-- A library: a bare remote d/NAME.git and its work repository d/NAME-src,
-- with files committed and each tag of tags made on that commit and pushed.
local function publish(w, files, tags, message)
  local id = G.commit(w, files, message or "release")
  for _, t in ipairs(tags or {}) do G.git(w, "tag", "-f", t) end
  G.git(w, "push", "-q", "-f", "origin", "main", "--tags")
  return id
end

local function library(d, name)
  daemon = daemon or G.daemon(d)
  local remote = G.bare(d, name .. ".git")
  local w = G.repo(d, name .. "-src", { remote = remote, files = { ["README.md"] = "# " .. name .. "\n" } })
  G.git(w, "push", "-q", "-u", "origin", "main")
  return w
end

-- The world: a daemon serving d, an app directory with a manifest, a cache
-- of its own. run(args...) runs relish in the app directory.
local function world(d, manifest)
  daemon = daemon or G.daemon(d)
  local app = d .. "/app"
  G.write(app .. "/relish.deps.lua", manifest)
  local env = G.env { XDG_CACHE_HOME = d .. "/cache" }
  local w = { app = app, cache = d .. "/cache/relish", url = daemon.url, env = env }
  function w.run(...)
    return support.relish({ ... }, { cwd = app, env = env })
  end
  function w.lock() return json.decode(support.read(app .. "/relish.lock")) end
  function w.manifest(text) G.write(app .. "/relish.deps.lua", text) end
  return w
end

local function ok(r)
  assert(r.code == 0, string.format("exit %s: %s%s", tostring(r.code), r.stdout, r.stderr))
  return r
end

local function fails(r, code, pattern)
  assert_eq(r.code, code, r.stdout .. r.stderr)
  assert_match(r.stderr, pattern)
  return r
end

-- The tree hash computed with the shell's tools, independently of relish.libs.
local function shell_tree_hash(dir)
  local r = sh.run { argv = { "sh", "-c", [[
cd "$1" && find . -name .git -prune -o \( -type f -o -type l \) -print | sed 's|^\./||' | LC_ALL=C sort |
while IFS= read -r p; do
  if [ -L "$p" ]; then printf '120000 %s %s\n' "$(readlink "$p" | tr -d '\n' | sha256sum | cut -c1-64)" "$p"
  elif [ -x "$p" ]; then printf '100755 %s %s\n' "$(sha256sum < "$p" | cut -c1-64)" "$p"
  else printf '100644 %s %s\n' "$(sha256sum < "$p" | cut -c1-64)" "$p"; fi
done | sha256sum | cut -c1-64]], "sh", dir } }
  assert(r.code == 0, r.stderr)
  return (r.stdout:gsub("%s+$", ""))
end

describe("the tree hash", function()
  test("is the sha256 of MODE SHA256 PATH lines, sorted, links by target, .git skipped", function()
    local d = tmpdir()
    G.write(d .. "/t/a.lua", "return 1\n")
    G.write(d .. "/t/sub/b.sh", "#!/bin/sh\n")
    G.write(d .. "/t/B", "upper sorts first\n")
    G.write(d .. "/t/.git/HEAD", "ignored\n")
    assert(sh.run { argv = { "chmod", "+x", d .. "/t/sub/b.sh" } })
    assert(sh.run { argv = { "ln", "-s", "sub/b.sh", d .. "/t/link" } })
    local h = libs.tree_hash(d .. "/t")
    assert_match(h, "^%x+$")
    assert_eq(#h, 64)
    assert_eq(h, shell_tree_hash(d .. "/t"))
    G.write(d .. "/t/.git/HEAD", "changed: still ignored\n")
    assert_eq(libs.tree_hash(d .. "/t"), h)
    G.write(d .. "/t/sub/b.sh", "#!/bin/sh\necho changed\n")
    assert_ne(libs.tree_hash(d .. "/t"), h)
  end)
end)

describe("the manifest", function()
  test("runs with no modules and no I/O; errors are exit 2 with file:line", function()
    local d = tmpdir()
    local w = world(d, "return { x = { source = io.open('/etc/passwd') } }\n")
    fails(w.run("install"), 2, "relish%.deps%.lua:1: attempt to index a nil value %(global 'io'%)")
    w.manifest("return {\n  x = { source = 'a', version = '^1' \n")
    fails(w.run("install"), 2, "relish%.deps%.lua:3:")
    w.manifest("return { x = { source = 'a', versoin = '^1' } }\n")
    fails(w.run("install"), 2, "library 'x': unknown field 'versoin' %(did you mean 'version'%?%)")
    w.manifest("return { x = { source = 'a', version = '^1', branch = 'main' } }\n")
    fails(w.run("install"), 2, "exactly one of version, branch or commit, got 2")
    w.manifest("return { ['bad-name'] = { source = 'a', branch = 'main' } }\n")
    fails(w.run("install"), 2, "library name bad%-name")
    w.manifest("return { x = { source = 'a', version = 'one' } }\n")
    fails(w.run("install"), 2, "library 'x': version \"one\" is not a range")
    w.manifest("return { x = { source = 'a', branch = 'main', auth = { token = 's3cret' } } }\n")
    fails(w.run("install"), 2, "unknown auth field 'token' %(did you mean 'token_env'%?%)")
    assert_false(support.read(w.app .. "/relish.lock") ~= nil)
  end)

  test("lock_for walks up to the manifest and wants a lock that matches it", function()
    local d = tmpdir()
    G.write(d .. "/repo/relish.deps.lua", "return { p = { source = '../p.git', version = '^1.0' } }\n")
    G.write(d .. "/repo/recipes/deep/x.lua", "-- a recipe\n")
    assert_nil(libs.lock_for(d))
    assert_raises(function() libs.lock_for(d .. "/repo/recipes/deep") end, "usage", "no lock.*run `relish install`")
    local entry = { source = "../p.git", constraint = "^1.0", version = "v1.0.0", commit = string.rep("a", 40),
      sha256 = string.rep("b", 64), requires = {}, required_by = { "(root)" } }
    libs.write_lock(d .. "/repo/relish.lock", { p = entry })
    local lock, root = libs.lock_for(d .. "/repo/recipes/deep")
    assert_eq(root, d .. "/repo")
    assert_eq(lock.libraries.p.commit, string.rep("a", 40))
    entry.constraint = "^2.0"
    libs.write_lock(d .. "/repo/relish.lock", { p = entry })
    assert_raises(function() libs.lock_for(d .. "/repo") end, "usage",
      "does not match the manifest %(library 'p': %^1%.0 in the manifest, %^2%.0 in the lock%): run `relish install`")
  end)
end)

describe("install", function()
  test("every constraint form over git://, a path and file://; the lock and the cache", function()
    local d = tmpdir()
    local p = library(d, "platform")
    local v12 = publish(p, { ["auth.lua"] = "return 'v1.2'\n" }, { "v1.2.0" })
    G.write(p .. "/bin/run.sh", "#!/bin/sh\n")
    assert(sh.run { argv = { "chmod", "+x", p .. "/bin/run.sh" } })
    local v13 = publish(p, { ["auth.lua"] = "return 'v1.3'\n" }, { "v1.3.0" })
    local rc = publish(p, { ["auth.lua"] = "return 'rc'\n" }, { "1.3.1-rc.1" }) -- a pre-release: not taken
    local v2 = publish(p, { ["auth.lua"] = "return 'v2'\n" }, { "v2.0.0" })
    local o = library(d, "obs")
    local head = publish(o, { ["obs.lua"] = "return {}\n" })
    local w = world(d, string.format([[
return {
  platform = { source = %q, version = "^1.2.0" },
  obs      = { source = "../obs.git", branch = "main" },
  pinned   = { source = %q, commit = %q },
}
]], daemon.url .. "platform.git", "file://" .. d .. "/platform.git", v12:sub(1, 10)))
    local r = ok(w.run("install"))
    assert_match(r.stdout, "platform%s+v1%.3%.0%s+" .. v13:sub(1, 7) .. "%s+fetched")
    assert_match(r.stdout, "obs%s+branch main%s+" .. head:sub(1, 7) .. "%s+fetched")
    assert_match(r.stdout, "pinned%s+commit " .. v12:sub(1, 10) .. "%s+" .. v12:sub(1, 7))
    local lock = w.lock()
    assert_eq(lock.relish_lock, 1)
    local pl = lock.libraries.platform
    assert_eq({ pl.source, pl.constraint, pl.version, pl.commit }, { daemon.url .. "platform.git", "^1.2.0", "v1.3.0", v13 })
    assert_eq(lock.libraries.obs.constraint, "branch main")
    assert_eq(lock.libraries.obs.source, "../obs.git")
    assert_eq(lock.libraries.obs.commit, head)
    assert_eq(lock.libraries.obs.version, json.null)
    assert_eq(lock.libraries.pinned.constraint, "commit " .. v12:sub(1, 10))
    assert_eq(lock.libraries.pinned.commit, v12)
    assert_eq(pl.required_by, { "(root)" })
    assert_eq(#pl.requires, 0)
    assert_ne(rc, v13)
    assert_ne(v2, v13)
    -- the cached tree is the commit's, read-only, and its name is its hash
    local dir = w.cache .. "/libs/" .. pl.sha256
    assert_eq(support.read(dir .. "/auth.lua"), "return 'v1.3'\n")
    assert_eq(shell_tree_hash(dir), pl.sha256)
    assert_eq(support.snapshot(dir)["bin/run.sh"], "file 555 #!/bin/sh\n")
    assert_eq(support.snapshot(dir)["auth.lua"], "file 444 return 'v1.3'\n")
    assert_eq(support.read(w.cache .. "/libs/" .. lock.libraries.pinned.sha256 .. "/auth.lua"), "return 'v1.2'\n")
    -- the lock's text: pretty, keys sorted, one final newline
    local text = support.read(w.app .. "/relish.lock")
    assert_eq(text, json.encode(json.decode(text), { pretty = true }) .. "\n")
    -- again: everything from the cache, the lock unchanged
    r = ok(w.run("install", "--output", "json"))
    local out = json.decode(r.stdout)
    assert_eq(#out.libraries, 3)
    for _, l in ipairs(out.libraries) do assert_eq(l.status, "cached") end
    assert_eq(support.read(w.app .. "/relish.lock"), text)
  end)

  test("the lock is honoured; --update NAME moves within the constraint; outdated shows it", function()
    local d = tmpdir()
    local p = library(d, "platform")
    local o = library(d, "obs")
    local p1 = publish(p, { ["a.lua"] = "1\n" }, { "v1.0.0" })
    local o1 = publish(o, { ["b.lua"] = "1\n" }, { "v1.0.0" })
    local w = world(d, string.format("return { platform = { source = %q, version = '^1' }, obs = { source = %q, version = '^1' } }\n",
      daemon.url .. "platform.git", daemon.url .. "obs.git"))
    ok(w.run("install"))
    local p2 = publish(p, { ["a.lua"] = "2\n" }, { "v1.1.0" })
    local o2 = publish(o, { ["b.lua"] = "2\n" }, { "v1.1.0" })
    publish(p, { ["a.lua"] = "3\n" }, { "v2.0.0" })
    ok(w.run("install"))
    assert_eq({ w.lock().libraries.platform.commit, w.lock().libraries.obs.commit }, { p1, o1 })
    local r = ok(w.run("outdated"))
    assert_match(r.stdout, "platform%s+v1%.0%.0%s+v1%.1%.0%s+v2%.0%.0%s+%^1")
    assert_match(r.stdout, "obs%s+v1%.0%.0%s+v1%.1%.0%s+v1%.1%.0")
    local js = json.decode(ok(w.run("outdated", "--output", "json")).stdout)
    assert_eq(js.libraries[2], { name = "platform", constraint = "^1", current = "v1.0.0", wanted = "v1.1.0",
      latest = "v2.0.0", outdated = true, error = json.null })
    ok(w.run("install", "--update", "platform"))
    assert_eq({ w.lock().libraries.platform.commit, w.lock().libraries.obs.commit }, { p2, o1 })
    assert_eq(w.lock().libraries.platform.version, "v1.1.0")
    ok(w.run("install", "--update"))
    assert_eq(w.lock().libraries.obs.commit, o2)
    fails(w.run("install", "--update", "platfrom"), 2, "no library 'platfrom' %(did you mean 'platform'%?%)")
    fails(w.run("install", "platform"), 2, "only taken with %-%-update")
  end)

  test("a branch stays at the locked commit until --update; a library's relative source is relative to its own", function()
    local d = tmpdir()
    local o = library(d, "obs")
    local o1 = publish(o, { ["obs.lua"] = "1\n" })
    local p = library(d, "platform")
    publish(p, { ["relish.deps.lua"] = "return { obs = { source = '../obs.git', branch = 'main' } }\n" }, { "v1.0.0" })
    local w = world(d, "return { platform = { source = '../platform.git', version = '1.x' } }\n")
    ok(w.run("install"))
    local lock = w.lock()
    assert_eq(lock.libraries.obs.source, d .. "/obs.git")
    assert_eq(lock.libraries.obs.commit, o1)
    assert_eq(lock.libraries.obs.required_by, { "platform" })
    local o2 = publish(o, { ["obs.lua"] = "2\n" })
    ok(w.run("install"))
    assert_eq(w.lock().libraries.obs.commit, o1)
    assert_match(ok(w.run("outdated")).stdout, "obs%s+" .. o1:sub(1, 7) .. "%s+" .. o2:sub(1, 7))
    local r = ok(w.run("install", "--update", "obs"))
    assert_match(r.stdout, "obs%s+branch main%s+" .. o2:sub(1, 7) .. "%s+fetched")
    assert_eq(w.lock().libraries.obs.commit, o2)
    assert_eq(support.read(w.cache .. "/libs/" .. w.lock().libraries.obs.sha256 .. "/obs.lua"), "2\n")
    -- a library fetched over git:// cannot name a path
    w.manifest(string.format("return { platform = { source = %q, version = '1.x' } }\n", daemon.url .. "platform.git"))
    fails(w.run("install"), 2, "relative source %.%./obs%.git in its relish%.deps%.lua: only a library fetched from a path")
  end)

  test("--frozen: exactly the lock, its failures exit 2 naming the difference", function()
    local d = tmpdir()
    local p = library(d, "platform")
    local p1 = publish(p, { ["a.lua"] = "1\n" }, { "v1.0.0" })
    local w = world(d, string.format("return { platform = { source = %q, version = '^1' } }\n", daemon.url .. "platform.git"))
    fails(w.run("install", "--frozen"), 2, "%-%-frozen: there is no .*relish%.lock")
    ok(w.run("install"))
    local text = support.read(w.app .. "/relish.lock")
    publish(p, { ["a.lua"] = "2\n" }, { "v1.1.0" })
    -- a fresh cache: the locked commit is fetched, not the newest
    require("relish._host").rmtree(w.cache)
    local r = ok(w.run("install", "--frozen"))
    assert_match(r.stdout, "platform%s+v1%.0%.0%s+" .. p1:sub(1, 7) .. "%s+fetched")
    assert_eq(support.read(w.cache .. "/libs/" .. w.lock().libraries.platform.sha256 .. "/a.lua"), "1\n")
    assert_match(ok(w.run("install", "--frozen")).stdout, "cached")
    assert_eq(support.read(w.app .. "/relish.lock"), text)
    -- a tampered cached file
    local f = w.cache .. "/libs/" .. w.lock().libraries.platform.sha256 .. "/a.lua"
    assert(sh.run { argv = { "chmod", "u+w", f } })
    support.write(f, "os.execute('curl evil')\n")
    fails(w.run("install", "--frozen"), 2, "library 'platform': the cached tree .* has sha256 %x+, the lock says")
    -- install (not frozen) puts it back
    r = ok(w.run("install"))
    assert_match(r.stderr, "was changed: checking it out again")
    assert_eq(support.read(f), "1\n")
    -- the manifest changed: the constraint, a new library, a library gone
    w.manifest(string.format("return { platform = { source = %q, version = '^1.1' } }\n", daemon.url .. "platform.git"))
    fails(w.run("install", "--frozen"), 2, "does not match relish%.deps%.lua: library 'platform': %^1%.1 in the manifest, %^1 in the lock")
    w.manifest(string.format("return { platform = { source = %q, version = '^1' }, obs = { source = 'x', branch = 'main' } }\n",
      daemon.url .. "platform.git"))
    fails(w.run("install", "--frozen"), 2, "library 'obs' is in the manifest but not in the lock")
    w.manifest("return {}\n")
    fails(w.run("install", "--frozen"), 2, "library 'platform' is in the lock but not in the manifest")
    assert_eq(support.read(w.app .. "/relish.lock"), text)
    fails(w.run("install", "--frozen", "--update"), 2, "exclude each other")
  end)

  test("a tag moved upstream: the lock's commit wins, with a warning", function()
    local d = tmpdir()
    local p = library(d, "platform")
    local p1 = publish(p, { ["a.lua"] = "1\n" }, { "v1.0.0" })
    local w = world(d, string.format("return { platform = { source = %q, version = '^1' } }\n", daemon.url .. "platform.git"))
    ok(w.run("install"))
    local moved = publish(p, { ["a.lua"] = "moved\n" }, { "v1.0.0" })
    assert_eq(G.rev(d .. "/platform.git", "v1.0.0"), moved)
    local r = ok(w.run("install"))
    assert_match(r.stderr, "library 'platform': tag v1%.0%.0 now names " .. moved:sub(1, 7) .. ", the lock has " ..
      p1:sub(1, 7) .. ": keeping the lock's commit")
    assert_eq(w.lock().libraries.platform.commit, p1)
    assert_eq(support.read(w.cache .. "/libs/" .. w.lock().libraries.platform.sha256 .. "/a.lua"), "1\n")
    -- --frozen from a cache that has the mirror but not the tree
    require("relish._host").rmtree(w.cache .. "/libs")
    require("relish._host").rmtree(w.cache .. "/commits")
    r = ok(w.run("install", "--frozen"))
    assert_match(r.stderr, "tag v1%.0%.0 now names")
    assert_eq(support.read(w.cache .. "/libs/" .. w.lock().libraries.platform.sha256 .. "/a.lua"), "1\n")
  end)

  test("transitive libraries are resolved together; a conflict names both requirers", function()
    local d = tmpdir()
    local o = library(d, "obs")
    publish(o, { ["obs.lua"] = "1.0\n" }, { "v1.0.0" })
    local o12 = publish(o, { ["obs.lua"] = "1.2\n" }, { "v1.2.0" })
    publish(o, { ["obs.lua"] = "2.0\n" }, { "v2.0.0" })
    local p = library(d, "platform")
    publish(p, { ["relish.deps.lua"] = string.format("return { obs = { source = %q, version = '^1.1' } }\n",
      daemon.url .. "obs.git"), ["a.lua"] = "1\n" }, { "v1.0.0" })
    local w = world(d, string.format("return { platform = { source = %q, version = '^1' } }\n", daemon.url .. "platform.git"))
    local r = ok(w.run("install"))
    assert_match(r.stdout, "obs%s+v1%.2%.0%s+" .. o12:sub(1, 7))
    local lock = w.lock()
    assert_eq(lock.libraries.obs.required_by, { "platform" })
    assert_eq(lock.libraries.obs.source, daemon.url .. "obs.git")
    assert_eq(lock.libraries.platform.requires, { "obs" })
    -- the root asks for obs too: one version satisfies both
    w.manifest(string.format("return { platform = { source = %q, version = '^1' }, obs = { source = %q, version = '>=1.0 <1.2' } }\n",
      daemon.url .. "platform.git", daemon.url .. "obs.git"))
    fails(w.run("install"), 2, "library 'obs': no version satisfies both >=1%.0 <1%.2 %(required by relish%.deps%.lua%) " ..
      "and %^1%.1 %(required by library 'platform'%)")
    w.manifest(string.format("return { platform = { source = %q, version = '^1' }, obs = { source = %q, version = '~1.2' } }\n",
      daemon.url .. "platform.git", daemon.url .. "obs.git"))
    ok(w.run("install"))
    lock = w.lock()
    assert_eq(lock.libraries.obs.required_by, { "(root)", "platform" })
    assert_eq(lock.libraries.obs.constraint, "~1.2")
    assert_eq(lock.libraries.obs.commit, o12)
    ok(w.run("install", "--frozen"))
  end)

  test("offline: install and --frozen work from the cache when the remote is gone", function()
    local d = tmpdir()
    local p = library(d, "platform")
    local p1 = publish(p, { ["a.lua"] = "1\n" }, { "v1.0.0" })
    local w = world(d, string.format("return { platform = { source = %q, version = '^1' } }\n", daemon.url .. "platform.git"))
    ok(w.run("install"))
    local text = support.read(w.app .. "/relish.lock")
    daemon:stop()
    local r = ok(w.run("install"))
    assert_match(r.stderr, "cannot fetch .*platform%.git.*working from the cache")
    assert_eq(support.read(w.app .. "/relish.lock"), text)
    ok(w.run("install", "--frozen"))
    -- the trees gone, the mirror kept: checked out again from the mirror
    require("relish._host").rmtree(w.cache .. "/libs")
    require("relish._host").rmtree(w.cache .. "/commits")
    r = ok(w.run("install", "--frozen"))
    assert_match(r.stdout, "platform%s+v1%.0%.0%s+" .. p1:sub(1, 7) .. "%s+fetched")
    -- nothing cached at all: the fetch's error, exit 1
    require("relish._host").rmtree(w.cache)
    r = w.run("install", "--frozen")
    assert_eq(r.code, 1, r.stderr)
    assert_match(r.stderr, "cannot connect")
  end)
end)
