-- relish install [--frozen] [--update [NAME]...]: resolves the libraries of
-- relish.deps.lua (and theirs) against their remotes, checks each commit's
-- tree out into the content-addressed cache and writes relish.lock
-- (docs/reference/libraries.md). The functions shared with `relish outdated`
-- are exported.
local libs = require "relish.libs"
local git = require "relish.git"
local json = require "relish.json"
local semver = require "relish.semver"
local sh = require "relish.sh"
local task = require "relish.task"
local host = require "relish._host"
local errors = require "relish._errors"
local invalid = errors.invalid
local try = errors.try

local M = {}

local function warn(fmt, ...)
  io.stderr:write("warning: ", string.format(fmt, ...), "\n")
end

local function short(id) return id:sub(1, 7) end

local function mkdirs(path)
  if not os.execute("mkdir -p " .. sh.quote(path)) then invalid("cannot create directory " .. path) end
end

-- The auth relish.git takes, from a manifest's description of it: secrets
-- are read from where it says (environment, file), never written in it.
function M.git_auth(auth)
  if auth == nil or auth == "agent" then return auth end
  local secret = require "relish.secret"
  local a = {}
  if auth.token_env or auth.token_file then
    a.token = auth.token_env and secret.env(auth.token_env) or secret.file(auth.token_file)
  end
  if auth.ssh_key then
    a.ssh_key = auth.ssh_key:gsub("^~/", (os.getenv("HOME") or "") .. "/")
    if auth.passphrase_env or auth.passphrase_file then
      a.passphrase = auth.passphrase_env and secret.env(auth.passphrase_env) or secret.file(auth.passphrase_file)
    end
  end
  a.username = auth.username
  if a.token and not a.username and not a.ssh_key then return a.token end
  return a
end

-- ---- mirrors ------------------------------------------------------------

local REFSPECS = { "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*" }

-- fetch(url, auth) -> the mirror's repository, fetched now; or the mirror
-- as it is with a warning when the remote cannot be reached; raises the
-- fetch's error when there is no mirror either.
function M.fetch(url, auth)
  local dir = libs.mirror_dir(url)
  local have = host.filetype(dir) == "dir"
  if not have then
    mkdirs(libs.cache_dir() .. "/git")
    local tmp = string.format("%s.tmp.%d", dir, host.getpid())
    host.rmtree(tmp)
    local repo <close> = git.init(tmp, { bare = true })
    local ok, err = try(repo.fetch, repo, url, { refspecs = REFSPECS, auth = M.git_auth(auth) })
    repo:close()
    if not ok then
      host.rmtree(tmp)
      error(err, 0)
    end
    if not os.rename(tmp, dir) then host.rmtree(tmp) end -- another install made it meanwhile
    return git.open(dir), "fetched"
  end
  local repo = git.open(dir)
  local ok, err = try(repo.fetch, repo, url, { refspecs = REFSPECS, auth = M.git_auth(auth) })
  if not ok then
    warn("cannot fetch %s (%s): working from the cache", url, err.message)
    return repo, "offline"
  end
  return repo, "fetched"
end

-- fetch_all({url = auth, ...}) -> {url = {repo=, how=} | {error=}}: one
-- fetch per source, as tasks.
function M.fetch_all(sources)
  local urls = {}
  for url in pairs(sources) do urls[#urls + 1] = url end
  table.sort(urls)
  local fns = {}
  for i, url in ipairs(urls) do
    fns[i] = function()
      local repo, how = try(M.fetch, url, sources[url].auth)
      if not repo then return { error = how } end
      return { repo = repo, how = how }
    end
  end
  local results = task.parallel(fns, { limit = 8 })
  local out = {}
  for i, url in ipairs(urls) do out[url] = results[i] end
  return out
end

-- The semantic-version tags of a mirror: {name=, target=}.
function M.version_tags(repo)
  local out = {}
  for _, t in ipairs(repo:tags()) do
    if semver.valid(t.name) then out[#out + 1] = { name = t.name, target = t.target } end
  end
  return out
end

-- ---- the cache ----------------------------------------------------------

local function commit_file(commit) return libs.cache_dir() .. "/commits/" .. commit end

-- cached(sha256) -> the tree's directory when it is in the cache
local function cached(sha)
  local dir = libs.tree_dir(sha)
  if host.filetype(dir) == "dir" then return dir end
  return nil
end

-- checkout(repo, commit) -> sha256, "cached"|"fetched": the commit's tree
-- in the cache (written into a temporary directory, files made read-only,
-- then renamed to libs/<sha256>). A cached tree whose hash is not its name
-- any more is checked out again, with a warning.
function M.checkout(repo, commit, name)
  local f = io.open(commit_file(commit), "rb")
  if f then
    local sha = f:read("l")
    f:close()
    local dir = sha and cached(sha)
    if dir then
      if libs.tree_hash(dir) == sha then return sha, "cached" end
      warn("library '%s': the cached tree %s was changed: checking it out again", name, dir)
      host.rmtree(dir)
    end
  end
  local base = libs.cache_dir() .. "/libs"
  mkdirs(base)
  mkdirs(libs.cache_dir() .. "/commits")
  local tmp = string.format("%s/.tmp-%s-%d", base, commit, host.getpid())
  host.rmtree(tmp)
  local script = { "set -e", "mkdir -p " .. sh.quote(tmp) }
  local entries = repo:tree(commit)
  local dirs = {}
  for _, e in ipairs(entries) do
    local d = e.path:match("^(.*)/[^/]*$")
    if d and not dirs[d] then
      dirs[d] = true
      script[#script + 1] = "mkdir -p " .. sh.quote(tmp .. "/" .. d)
    end
  end
  local sink = io.open(tmp .. ".sh", "wb") -- the directories first
  if not sink then invalid("cannot write in the cache " .. base) end
  sink:write(table.concat(script, "\n"), "\n")
  sink:close()
  if not os.execute("sh " .. sh.quote(tmp .. ".sh")) then invalid("cannot write in the cache " .. base) end
  script = { "set -e" }
  for _, e in ipairs(entries) do
    local path = tmp .. "/" .. e.path
    if e.type == "blob" and e.mode == "120000" then
      script[#script + 1] = string.format("ln -s %s %s", sh.quote(repo:blob(e.id)), sh.quote(path))
    elseif e.type == "blob" then
      local out = io.open(path, "wb")
      if not out then invalid("cannot write in the cache " .. path) end
      out:write(repo:blob(e.id))
      out:close()
      if e.mode == "100755" then script[#script + 1] = "chmod 755 " .. sh.quote(path) end
    end -- a submodule (type commit) is not part of the library
  end
  script[#script + 1] = "find " .. sh.quote(tmp) .. " -type f -exec chmod a-w {} +"
  sink = io.open(tmp .. ".sh", "wb")
  sink:write(table.concat(script, "\n"), "\n")
  sink:close()
  local ok = os.execute("sh " .. sh.quote(tmp .. ".sh"))
  os.remove(tmp .. ".sh")
  if not ok then invalid("cannot write in the cache " .. tmp) end
  local sha = libs.tree_hash(tmp)
  local dir = libs.tree_dir(sha)
  if cached(sha) or not os.rename(tmp, dir) then host.rmtree(tmp) end
  local cf = io.open(commit_file(commit) .. ".tmp", "wb")
  if cf then
    cf:write(sha, "\n")
    cf:close()
    os.rename(commit_file(commit) .. ".tmp", commit_file(commit))
  end
  return sha, "fetched"
end

-- The manifest of a library's tree, if it has one: its requirements, with
-- a relative source resolved against the library's own source when that is
-- a path or file:// URL.
local function library_manifest(name, url, sha)
  local file = libs.tree_dir(sha) .. "/" .. libs.MANIFEST
  if host.filetype(file) ~= "file" then return {} end
  local base
  if url:sub(1, 1) == "/" then
    base = url
  elseif url:match("^file://") then
    base = url:sub(8)
  end
  local m = libs.read_manifest(file)
  -- read_manifest resolved relative paths against the cache: do it again
  for _, e in pairs(m) do
    if not (e.source:match("^%a[%w+.-]*://") or e.source:match("^[%w._-]+@[%w._-]+:") or e.source:sub(1, 1) == "/") then
      if not base then
        invalid(string.format("library '%s' (%s): relative source %s in its %s: only a library fetched from a path " ..
          "or file:// may use one", name, url, e.source, libs.MANIFEST))
      end
      e.url = libs.resolve_source(e.source, base)
    end
  end
  return m
end

-- ---- resolution ---------------------------------------------------------

-- The requirement text of a requirer for messages.
local function who(r) return r.by == "(root)" and libs.MANIFEST or ("library '" .. r.by .. "'") end

-- decide(name, reqs, mirror, locked, update) -> {commit=, version=} or raises
-- (exit 2) naming the requirers whose constraints no version satisfies.
local function decide(name, reqs, repo, locked, update)
  local url = reqs[1].url
  for _, r in ipairs(reqs) do
    if r.url ~= url then
      invalid(string.format("library '%s': %s wants %s, %s wants %s", name, who(reqs[1]), reqs[1].url, who(r), r.url))
    end
  end
  local ranges, pin, pinned_by = {}, nil, nil
  for _, r in ipairs(reqs) do
    local commit
    if r.version then
      ranges[#ranges + 1] = r
    elseif r.branch then
      if locked and not update and locked.constraint == r.constraint and locked.source_url == url then
        commit = locked.commit
      else
        commit = try(repo.resolve, repo, "refs/heads/" .. r.branch)
        if not commit then invalid(string.format("library '%s': no branch %s at %s", name, r.branch, url)) end
      end
    else
      commit = try(repo.resolve, repo, r.commit)
      if not commit then invalid(string.format("library '%s': no commit %s at %s", name, r.commit, url)) end
    end
    if commit then
      if pin and pin ~= commit then
        invalid(string.format("library '%s': %s wants %s (%s), %s wants %s (%s)", name, who(pinned_by),
          pinned_by.constraint, short(pin), who(r), r.constraint, short(commit)))
      end
      pin, pinned_by = commit, r
    end
  end
  if #ranges == 0 then return { commit = pin } end
  local tags = M.version_tags(repo)
  local function fits(t, list)
    for _, r in ipairs(list) do
      if not semver.satisfies(t.name, r.version) then return false end
    end
    return pin == nil or t.target == pin
  end
  -- the locked version while it still fits, unless updating
  if locked and not update and locked.version and locked.source_url == url then
    local ok = true
    for _, r in ipairs(ranges) do ok = ok and semver.satisfies(locked.version, r.version) end
    if ok then
      for _, t in ipairs(tags) do
        if t.name == locked.version and t.target ~= locked.commit then
          warn("library '%s': tag %s now names %s, the lock has %s: keeping the lock's commit", name, t.name,
            short(t.target), short(locked.commit))
        end
      end
      if pin == nil or pin == locked.commit then return { commit = locked.commit, version = locked.version } end
    end
  end
  local fitting = {}
  for _, t in ipairs(tags) do
    if fits(t, ranges) then fitting[#fitting + 1] = t end
  end
  local best = semver.max(fitting, { key = "name" })
  if best then return { commit = best.target, version = best.name } end
  -- name the requirers: the first range that another one (or the pin) excludes
  for i, a in ipairs(ranges) do
    for j = i + 1, #ranges do
      local b = ranges[j]
      local both = false
      for _, t in ipairs(tags) do both = both or fits(t, { a, b }) end
      if not both then
        invalid(string.format("library '%s': no version satisfies both %s (required by %s) and %s (required by %s)",
          name, a.version, who(a), b.version, who(b)))
      end
    end
  end
  if pin then
    invalid(string.format("library '%s': %s (required by %s) is not a version %s (required by %s) allows", name,
      pinned_by.constraint, who(pinned_by), ranges[1].version, who(ranges[1])))
  end
  invalid(string.format("library '%s': no tag of %s satisfies %s (required by %s)", name, url, ranges[1].version,
    who(ranges[1])))
end

-- requirements(manifest, by, reqs): adds the manifest's libraries to reqs
local function add_reqs(reqs, manifest, by)
  for name, e in pairs(manifest) do
    reqs[name] = reqs[name] or {}
    table.insert(reqs[name], { name = name, by = by, source = e.source, url = e.url, version = e.version,
      branch = e.branch, commit = e.commit, constraint = e.constraint, auth = e.auth })
  end
end

-- resolve(root, manifest, lock, update) -> {NAME = {source=, url=, constraint=,
-- version=, commit=, sha256=, requires=, required_by=, how=}}. update: nil,
-- true (all) or a set of names.
function M.resolve(manifest, lock, update)
  local locked = {}
  for name, l in pairs(lock and lock.libraries or {}) do
    locked[name] = l
    l.source_url = libs.resolve_source(l.source, "/")
  end
  -- root libraries: the lock's source is as written, resolved as the manifest does
  for name, e in pairs(manifest) do
    if locked[name] and locked[name].source == e.source then locked[name].source_url = e.url end
  end
  local mirrors, decisions, manifests = {}, {}, {}
  for _ = 1, 64 do
    local reqs = {}
    add_reqs(reqs, manifest, "(root)")
    for name, d in pairs(decisions) do add_reqs(reqs, manifests[d.sha256 .. name], name) end
    local want = {}
    for _, list in pairs(reqs) do
      for _, r in ipairs(list) do
        if not mirrors[r.url] and not want[r.url] then want[r.url] = { auth = r.auth } end
      end
    end
    for url, res in pairs(M.fetch_all(want)) do
      if res.error then error(res.error, 0) end
      mirrors[url] = res
    end
    local new, changed = {}, false
    local names = {}
    for name in pairs(reqs) do names[#names + 1] = name end
    table.sort(names)
    for _, name in ipairs(names) do
      local list = reqs[name]
      table.sort(list, function(a, b) return a.by < b.by end)
      local m = mirrors[list[1].url]
      local upd = update == true or (type(update) == "table" and update[name])
      local d = decide(name, list, m.repo, locked[name], upd)
      local old = decisions[name]
      if old and old.commit == d.commit then
        d = old
      else
        changed = true
        d.sha256, d.how = M.checkout(m.repo, d.commit, name)
        manifests[d.sha256 .. name] = library_manifest(name, list[1].url, d.sha256)
      end
      d.reqs = list
      new[name] = d
    end
    for name in pairs(decisions) do changed = changed or not new[name] end
    decisions = new
    if not changed then break end
  end
  local out = {}
  for name, d in pairs(decisions) do
    local r = d.reqs[1]
    local root
    for _, q in ipairs(d.reqs) do if q.by == "(root)" then root = q end end
    local requires, required_by = {}, {}
    for n in pairs(manifests[d.sha256 .. name]) do requires[#requires + 1] = n end
    for _, q in ipairs(d.reqs) do required_by[#required_by + 1] = q.by end
    out[name] = { name = name, source = root and root.source or r.url, url = r.url,
      constraint = (root or r).constraint, version = d.version, commit = d.commit, sha256 = d.sha256,
      requires = requires, required_by = required_by, how = d.how }
  end
  return out
end

-- ---- frozen -------------------------------------------------------------

-- frozen(root, manifest, lock) -> the lock's libraries, each in the cache:
-- exactly the locked commits, every tree's hash verified.
function M.frozen(manifest, lock)
  local diff = libs.diff_lock(manifest, lock)
  if diff then invalid("--frozen: " .. libs.LOCK .. " does not match " .. libs.MANIFEST .. ": " .. diff) end
  local out, missing = {}, {}
  for name, l in pairs(lock.libraries) do
    local url = manifest[name] and manifest[name].url or libs.resolve_source(l.source, "/")
    out[name] = { name = name, source = l.source, url = url, constraint = l.constraint, version = l.version,
      commit = l.commit, sha256 = l.sha256, requires = l.requires, required_by = l.required_by }
    local dir = cached(l.sha256)
    if dir then
      local got = libs.tree_hash(dir)
      if got ~= l.sha256 then
        invalid(string.format("--frozen: library '%s': the cached tree %s has sha256 %s, the lock says %s " ..
          "(a file was changed: remove the directory to check it out again)", name, dir, got, l.sha256))
      end
      out[name].how = "cached"
    else
      missing[url] = missing[url] or { auth = manifest[name] and manifest[name].auth, names = {} }
      table.insert(missing[url].names, name)
    end
  end
  if next(missing) then
    for url, res in pairs(M.fetch_all(missing)) do
      if res.error then error(res.error, 0) end
      for _, name in ipairs(missing[url].names) do
        local l = out[name]
        if not try(res.repo.resolve, res.repo, l.commit) then
          invalid(string.format("--frozen: library '%s': the locked commit %s is not at %s", name, l.commit, url))
        end
        if l.version then
          for _, t in ipairs(M.version_tags(res.repo)) do
            if t.name == l.version and t.target ~= l.commit then
              warn("library '%s': tag %s now names %s, the lock has %s: keeping the lock's commit", name, t.name,
                short(t.target), short(l.commit))
            end
          end
        end
        local sha = M.checkout(res.repo, l.commit, name)
        if sha ~= l.sha256 then
          invalid(string.format("--frozen: library '%s': commit %s has sha256 %s, the lock says %s", name,
            short(l.commit), sha, l.sha256))
        end
        l.how = "fetched"
      end
    end
  end
  return out
end

-- ---- output -------------------------------------------------------------

function M.report(libraries, flags, lockfile)
  local names = {}
  for name in pairs(libraries) do names[#names + 1] = name end
  table.sort(names)
  if flags.output == "json" then
    local list = json.array {}
    for _, name in ipairs(names) do
      local l = libraries[name]
      list[#list + 1] = { name = name, source = l.source, constraint = l.constraint, version = l.version or json.null,
        commit = l.commit, sha256 = l.sha256, status = l.how }
    end
    io.write(json.encode({ lock = lockfile, libraries = list }), "\n")
    return
  end
  local width = 1
  for _, name in ipairs(names) do width = math.max(width, #name) end
  for _, name in ipairs(names) do
    local l = libraries[name]
    io.write(string.format("%-" .. width .. "s  %-10s  %s  %s\n", name, l.version or l.constraint, short(l.commit), l.how))
  end
  if #names == 0 then io.write("no libraries in " .. libs.MANIFEST .. "\n") end
end

-- The manifest's directory from the current one, or a usage error.
function M.root()
  local cwd = host.getcwd()
  local root = libs.find_manifest(cwd)
  if not root then invalid(string.format("no %s in %s or a directory above it", libs.MANIFEST, cwd)) end
  return root
end

function M.main(opts)
  local flags = opts.flags
  local names = opts.args or {}
  if flags.frozen and flags.update then invalid("install: --frozen and --update exclude each other") end
  if #names > 0 and not flags.update then invalid("install: library names are only taken with --update") end
  local root = M.root()
  local manifest = libs.read_manifest(root .. "/" .. libs.MANIFEST)
  local lockfile = root .. "/" .. libs.LOCK
  local lock = libs.read_lock(lockfile)
  local libraries
  if flags.frozen then
    if not lock then invalid("--frozen: there is no " .. lockfile .. ": run `relish install` and commit it") end
    libraries = M.frozen(manifest, lock)
  else
    local update
    if flags.update then
      if #names == 0 then
        update = true
      else
        update = {}
        for _, n in ipairs(names) do
          if not (lock and lock.libraries[n]) and not manifest[n] then
            local all = {}
            for k in pairs(manifest) do all[#all + 1] = k end
            table.sort(all)
            local near = host.nearest(n, all)
            invalid(string.format("install --update: no library '%s'%s", n,
              near and string.format(" (did you mean '%s'?)", near) or ""))
          end
          update[n] = true
        end
      end
    end
    libraries = M.resolve(manifest, lock, update)
    libs.write_lock(lockfile, libraries)
  end
  M.report(libraries, flags, lockfile)
  return 0
end

return M
