-- relish.libs: recipe libraries shared across repositories: the manifest
-- (relish.deps.lua), the lock (relish.lock), the content-addressed cache and
-- the tree hash. `relish install`/`relish outdated` and the loader build on
-- it (docs/reference/libraries.md).
local fs = require "relish.fs"
local host = require "relish._host"
local json = require "relish.json"
local invalid = require("relish._errors").invalid

local M = {}

M.MANIFEST = "relish.deps.lua"
M.LOCK = "relish.lock"
M.LOCK_VERSION = 1

-- cache_dir() -> $XDG_CACHE_HOME/relish, else ~/.cache/relish
function M.cache_dir()
  local xdg = os.getenv("XDG_CACHE_HOME")
  if xdg and xdg:sub(1, 1) == "/" then return (xdg:gsub("/+$", "")) .. "/relish" end
  local home = os.getenv("HOME")
  if not home or home == "" then invalid("cannot find the cache: neither XDG_CACHE_HOME nor HOME is set") end
  return (home:gsub("/+$", "")) .. "/.cache/relish"
end

-- The directory of a library's tree in the cache, by its tree hash.
function M.tree_dir(sha256) return M.cache_dir() .. "/libs/" .. sha256 end

-- The bare mirror of a source in the cache.
function M.mirror_dir(source) return M.cache_dir() .. "/git/" .. fs.sha256(source) .. ".git" end

-- The lines "MODE SHA256 PATH" of every file under dir, sorted by path.
local function tree_lines(dir, rel, out)
  for _, name in ipairs(fs.list(rel == "" and dir or dir .. "/" .. rel)) do
    if name ~= ".git" then
      local path = rel == "" and name or rel .. "/" .. name
      local full = dir .. "/" .. path
      local st = fs.stat(full)
      if st.type == "dir" then
        tree_lines(dir, path, out)
      elseif st.type == "link" then
        out[#out + 1] = { path, "120000 " .. fs.sha256(st.target) .. " " .. path }
      elseif st.type == "file" then
        local mode = (st.mode & 73) ~= 0 and "100755" or "100644"
        out[#out + 1] = { path, mode .. " " .. fs.hash(full) .. " " .. path }
      else
        invalid(string.format("%s: not a file, directory or symbolic link", full))
      end
    end
  end
  return out
end

-- tree_hash(dir) -> hex sha256 of the lines "MODE SHA256 PATH\n" of every
-- file under dir (relative paths, sorted bytewise, .git skipped; a link's
-- content is its target). Raises fs's not_found when dir is missing.
function M.tree_hash(dir)
  return fs.sha256(M.tree_listing(dir))
end

-- tree_listing(dir) -> the text tree_hash hashes (the loader compares it
-- file by file to name what changed in a tree)
function M.tree_listing(dir)
  local lines = tree_lines(dir, "", {})
  table.sort(lines, function(a, b) return a[1] < b[1] end)
  local text = {}
  for i, l in ipairs(lines) do text[i] = l[2] .. "\n" end
  return table.concat(text)
end

-- The manifest's fields; auth's are relish.git's.
local FIELDS = { source = true, version = true, branch = true, commit = true, auth = true }
local FIELD_NAMES = { "auth", "branch", "commit", "source", "version" }
-- auth: "agent", or a table naming where secrets are (never their values)
local AUTH_FIELDS = { "ssh_key", "passphrase_env", "passphrase_file", "token_env", "token_file", "username" }

-- Where the caller of a manifest's table is (file:line of the library's
-- entry is not known once loaded: the file is named).
local function bad(file, fmt, ...)
  invalid(file .. ": " .. string.format(fmt, ...))
end

-- The text of a source as the lock keeps it and where it is fetched from:
-- a path (relative to base) becomes an absolute file path.
function M.resolve_source(source, base)
  if source:match("^%a[%w+.-]*://") or source:match("^[%w._-]+@[%w._-]+:") then return source end
  local path = source:sub(1, 1) == "/" and source or base .. "/" .. source
  -- normalise "a/./b" and "a/x/../b" without touching the file system
  local parts = {}
  for p in path:gmatch("[^/]+") do
    if p == ".." then
      parts[#parts] = nil
    elseif p ~= "." then
      parts[#parts + 1] = p
    end
  end
  return "/" .. table.concat(parts, "/")
end

-- constraint(entry) -> the lock's text of its constraint
local function constraint(e)
  if e.version then return e.version end
  if e.branch then return "branch " .. e.branch end
  return "commit " .. e.commit
end

-- read_manifest(file) -> {NAME = {name=, source= (as written), url= (to fetch),
-- version=|branch=|commit=, constraint=, auth=}}: the file is run with an
-- empty environment (no modules, no I/O); any error is a usage error (exit 2)
-- with file:line.
function M.read_manifest(file)
  local f, err = io.open(file, "rb")
  if not f then invalid("cannot read " .. tostring(err)) end
  local text = f:read("a")
  f:close()
  local chunk, lerr = load(text, "@" .. file, "t", {})
  if not chunk then invalid(lerr) end
  local ok, t = pcall(chunk)
  if not ok then invalid(type(t) == "table" and tostring(t.message) or tostring(t)) end
  if type(t) ~= "table" then bad(file, "must return a table of libraries, got %s", type(t)) end
  local base = file:match("^(.*)/[^/]*$") or "."
  base = host.realpath(base) or (base:sub(1, 1) == "/" and base or host.getcwd() .. "/" .. base)
  local out = {}
  for name, e in pairs(t) do
    if type(name) ~= "string" or not name:match("^[%a_][%w_]*$") then
      bad(file, "library name %s: expected a name matching [A-Za-z_][A-Za-z0-9_]*", tostring(name))
    end
    if type(e) ~= "table" then bad(file, "library '%s': expected a table, got %s", name, type(e)) end
    for k in pairs(e) do
      if not FIELDS[k] then
        local near = type(k) == "string" and host.nearest(k, FIELD_NAMES)
        bad(file, "library '%s': unknown field '%s'%s", name, tostring(k),
          near and string.format(" (did you mean '%s'?)", near) or "")
      end
    end
    for _, k in ipairs { "source", "version", "branch", "commit" } do
      if e[k] ~= nil and (type(e[k]) ~= "string" or e[k] == "") then
        bad(file, "library '%s': %s must be a non-empty string, got %s", name, k, type(e[k]))
      end
    end
    if not e.source then bad(file, "library '%s': missing source", name) end
    local n = (e.version and 1 or 0) + (e.branch and 1 or 0) + (e.commit and 1 or 0)
    if n ~= 1 then
      bad(file, "library '%s': expected exactly one of version, branch or commit, got %d", name, n)
    end
    if e.version then
      local ok2, r = pcall(require("relish.semver").range, e.version)
      if not ok2 then
        bad(file, "library '%s': version %q is not a range: %s", name, e.version,
          type(r) == "table" and tostring(r.message) or tostring(r))
      end
    end
    if e.commit and not e.commit:match("^%x+$") then
      bad(file, "library '%s': commit %q is not a hexadecimal id", name, e.commit)
    end
    if e.auth ~= nil and e.auth ~= "agent" then
      if type(e.auth) ~= "table" then
        bad(file, "library '%s': auth must be \"agent\" or a table, got %s", name, type(e.auth))
      end
      for k, v in pairs(e.auth) do
        local known = false
        for _, a in ipairs(AUTH_FIELDS) do known = known or a == k end
        if not known then
          local near = type(k) == "string" and host.nearest(k, AUTH_FIELDS)
          bad(file, "library '%s': unknown auth field '%s'%s", name, tostring(k),
            near and string.format(" (did you mean '%s'?)", near) or "")
        end
        if type(v) ~= "string" then
          bad(file, "library '%s': auth.%s must be a string, got %s", name, k, type(v))
        end
      end
    end
    out[name] = { name = name, source = e.source, url = M.resolve_source(e.source, base), version = e.version,
      branch = e.branch, commit = e.commit and e.commit:lower(), auth = e.auth, constraint = constraint(e) }
  end
  return out
end

-- read_lock(file) -> the lock table, or nil when there is none; a lock that
-- is not one is a usage error.
function M.read_lock(file)
  local f = io.open(file, "rb")
  if not f then return nil end
  local text = f:read("a")
  f:close()
  local ok, t = pcall(json.decode, text)
  if not ok or type(t) ~= "table" or t.relish_lock ~= M.LOCK_VERSION or type(t.libraries) ~= "table" then
    invalid(string.format("%s: not a relish lock (version %d); run `relish install` to write it", file, M.LOCK_VERSION))
  end
  for name, l in pairs(t.libraries) do
    if type(l) ~= "table" or type(l.commit) ~= "string" or not l.commit:match("^%x+$") or #l.commit ~= 40
      or type(l.sha256) ~= "string" or not l.sha256:match("^%x+$") or #l.sha256 ~= 64
      or type(l.source) ~= "string" or type(l.constraint) ~= "string" then
      invalid(string.format("%s: library '%s' is malformed; run `relish install` to write it again", file, name))
    end
    if l.version == json.null then l.version = nil end
  end
  return t
end

-- diff_lock(manifest, lock) -> nil when the lock's libraries required by the
-- root are exactly the manifest's (same source, same constraint), else the
-- first difference as text.
function M.diff_lock(manifest, lock)
  local libs = lock and lock.libraries or {}
  local names = {}
  for name in pairs(manifest) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local m, l = manifest[name], libs[name]
    if not l then return string.format("library '%s' is in the manifest but not in the lock", name) end
    local root = false
    for _, r in ipairs(l.required_by or {}) do root = root or r == "(root)" end
    if not root then return string.format("library '%s' is in the manifest but the lock has it only as a dependency", name) end
    if l.source ~= m.source then
      return string.format("library '%s': source %s in the manifest, %s in the lock", name, m.source, l.source)
    end
    if l.constraint ~= m.constraint then
      return string.format("library '%s': %s in the manifest, %s in the lock", name, m.constraint, l.constraint)
    end
  end
  local locked = {}
  for name, l in pairs(libs) do
    for _, r in ipairs(l.required_by or {}) do
      if r == "(root)" and not manifest[name] then locked[#locked + 1] = name end
    end
  end
  table.sort(locked)
  if locked[1] then return string.format("library '%s' is in the lock but not in the manifest", locked[1]) end
  return nil
end

-- find_manifest(dir) -> the directory holding relish.deps.lua, walking up
-- from dir, or nil
function M.find_manifest(dir)
  local d = host.realpath(dir) or dir
  while true do
    if host.filetype(d .. "/" .. M.MANIFEST) == "file" then return d end
    if d == "/" or d == "" then return nil end
    d = d:match("^(.*)/[^/]*$")
    if d == "" then d = "/" end
  end
end

-- lock_for(dir) -> the lock table and the manifest's directory, walking up
-- from dir to the first directory holding relish.deps.lua; nil when there is
-- none. A manifest without a lock, or a lock that does not match it, is a
-- usage error naming `relish install`.
function M.lock_for(dir)
  local root = M.find_manifest(dir)
  if not root then return nil end
  local manifest = M.read_manifest(root .. "/" .. M.MANIFEST)
  local lock = M.read_lock(root .. "/" .. M.LOCK)
  if not lock then
    invalid(string.format("%s/%s has no lock (%s): run `relish install`", root, M.MANIFEST, M.LOCK))
  end
  local diff = M.diff_lock(manifest, lock)
  if diff then
    invalid(string.format("%s/%s does not match the manifest (%s): run `relish install`", root, M.LOCK, diff))
  end
  return lock, root
end

-- write_lock(file, libraries): pretty JSON, keys sorted, written to a
-- temporary file and renamed over the lock.
function M.write_lock(file, libraries)
  local out = {}
  for name, l in pairs(libraries) do
    local requires, required_by = {}, {}
    for i, r in ipairs(l.requires or {}) do requires[i] = r end
    for i, r in ipairs(l.required_by or {}) do required_by[i] = r end
    table.sort(requires)
    table.sort(required_by)
    out[name] = { source = l.source, constraint = l.constraint, version = l.version or json.null, commit = l.commit,
      sha256 = l.sha256, requires = json.array(requires), required_by = json.array(required_by) }
  end
  local text = json.encode({ relish_lock = M.LOCK_VERSION, libraries = json.object(out) }, { pretty = true }) .. "\n"
  local tmp = string.format("%s.tmp.%d", file, host.getpid())
  local f, err = io.open(tmp, "wb")
  if not f then invalid("cannot write " .. tostring(err)) end
  local ok, werr = f:write(text)
  local cok, cerr = f:close()
  if not ok or not cok then
    os.remove(tmp)
    invalid("cannot write " .. tmp .. ": " .. tostring(werr or cerr))
  end
  local rok, rerr = os.rename(tmp, file)
  if not rok then
    os.remove(tmp)
    invalid("cannot write " .. file .. ": " .. tostring(rerr))
  end
  return text
end

return M
