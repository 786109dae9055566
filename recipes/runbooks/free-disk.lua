-- Free disk space on a host. It shows how full the filesystem is, the largest
-- files under a directory and the releases beyond the newest `keep` (as
-- recipes/local-release.lua lays them out, never the live one); then it asks
-- before EACH deletion. Every deletion keeps its pre-image in the journal (up
-- to `max_undo` bytes), so a rollback puts the files back; a file larger than
-- that is said to be irreversible in its question.
local fs = require "relish.fs"
local sh = require "relish.sh"

local function size_text(n)
  local units, i = { "B", "KiB", "MiB", "GiB", "TiB" }, 1
  while n >= 1024 and i < #units do n, i = n / 1024, i + 1 end
  return i == 1 and string.format("%d B", n) or string.format("%.1f %s", n, units[i])
end

-- df -P -k DIR -> {size=, used=, avail=, percent=, mount=} in bytes
local function usage(dir)
  local r = sh.run { argv = { "df", "-P", "-k", dir }, readonly = true, timeout = 30 }
  local line = r.stdout:match("\n([^\n]+)")
  local size, used, avail, pct, mount = line:match("^%S+%s+(%d+)%s+(%d+)%s+(%d+)%s+(%d+)%%%s+(.*)$")
  if not size then error("df: cannot read " .. tostring(line), 0) end
  return { size = tonumber(size) * 1024, used = tonumber(used) * 1024, avail = tonumber(avail) * 1024,
    percent = tonumber(pct), mount = mount }
end

local function usage_finding(dir, warn)
  local u = usage(dir)
  return { verdict = u.percent >= warn and "bad" or u.percent >= warn - 10 and "warn" or "ok",
    text = string.format("%s on %s: %d%% used, %s free of %s", dir, u.mount, u.percent, size_text(u.avail),
      size_text(u.size)) }
end

-- the regular files under dir (links not followed), largest first, at most
-- top of them, none under min_size: {{path=, size=, mtime=}, ...}
local function largest(dir, top, min_size)
  local files = {}
  local function walk(d, depth)
    if depth > 32 then return end
    for _, name in ipairs(try(fs.list, d) or {}) do
      local path = d .. "/" .. name
      local st = try(fs.stat, path)
      if st and st.type == "dir" then
        walk(path, depth + 1)
      elseif st and st.type == "file" and st.size >= min_size then
        files[#files + 1] = { path = path, size = st.size, mtime = st.mtime }
      end
    end
  end
  walk(dir, 1)
  table.sort(files, function(a, b)
    if a.size ~= b.size then return a.size > b.size end
    return a.path < b.path
  end)
  while #files > top do files[#files] = nil end
  return files
end

-- bytes in a tree (links counted as themselves)
local function tree_size(path)
  local st = try(fs.stat, path)
  if not st then return 0 end
  if st.type ~= "dir" then return st.size end
  local n = 0
  for _, name in ipairs(try(fs.list, path) or {}) do n = n + tree_size(path .. "/" .. name) end
  return n
end

-- the releases beyond the newest `keep` (by name, as local-release sorts
-- them), never the one `current` points to: {{path=, name=, size=}, ...}
local function old_releases(p)
  local names = try(fs.list, p.deploy_to .. "/releases") or {}
  table.sort(names)
  local cur = try(fs.stat, p.deploy_to .. "/current")
  local live = cur and cur.target and cur.target:match("([^/]+)/*$")
  local out = {}
  for i, name in ipairs(names) do
    if i > #names - p.keep then break end
    if name ~= live then
      local path = p.deploy_to .. "/releases/" .. name
      out[#out + 1] = { path = path, name = name, size = tree_size(path) }
    end
  end
  return out
end

-- asks about each candidate and removes the ones a person says yes to; ->
-- bytes freed and the paths removed
local function delete_each(ctx, candidates)
  local freed, removed = 0, {}
  for _, c in ipairs(candidates) do
    local undoable = c.size <= ctx.params.max_undo
    local question = string.format("Delete %s (%s)%s?", c.path, size_text(c.size),
      undoable and "" or ", which cannot be undone")
    if ctx.confirm { id = c.path, question = question } then
      fs.remove(c.path, { recursive = true, max_undo = ctx.params.max_undo, undo = undoable })
      freed = freed + c.size
      removed[#removed + 1] = c.path
    else
      ctx.log("kept %s", c.path)
    end
  end
  if #removed > 0 then
    ctx.note(string.format("freed %s: %s", size_text(freed), table.concat(removed, ", ")))
  else
    ctx.note("deleted nothing")
  end
end

return runbook "free-disk" {
  description = "Free disk space on a host: old releases and the largest files, each deletion confirmed",
  severity = "SEV3",
  service = "host",
  owner = "on-call",
  links = {
    { title = "How releases are laid out", url = "docs/recipes/local-release.md" },
    { title = "fs.remove and its undo", url = "docs/reference/fs.md#fsremovepath-options--true" },
  },
  params = {
    dir = param.string { default = (os.getenv("TMPDIR") or "/tmp") .. "/relish-demo",
      description = "where to look for large files (logs, caches, dumps)" },
    top = param.integer { default = 10, min = 1, description = "how many of the largest files to offer" },
    min_size = param.integer { default = 1024 * 1024, min = 0, description = "bytes: smaller files are not offered" },
    deploy_to = param.string { default = (os.getenv("TMPDIR") or "/tmp") .. "/relish-demo/app",
      description = "where releases/ and current live (local-release's layout); without releases/ none are offered" },
    keep = param.integer { default = 3, min = 1, description = "releases to keep, the newest by name" },
    warn = param.integer { default = 90, min = 1, max = 100, description = "percent used that is bad (ten less: a warning)" },
    max_undo = param.integer { default = 16 * 1024 * 1024, min = 0,
      description = "bytes a deletion may keep for its undo; a larger one is irreversible (said in its question)" },
  },
  lock = function(p) return "free-disk:" .. p.dir end,

  check "filesystem use" {
    description = "How full the filesystem holding `dir` is (df).",
    run = function(ctx) return usage_finding(ctx.params.dir, ctx.params.warn) end,
  },

  check "largest files" {
    description = "The largest files under `dir`.",
    run = function(ctx)
      local rows = {}
      for i, f in ipairs(largest(ctx.params.dir, ctx.params.top, ctx.params.min_size)) do
        rows[i] = { size = size_text(f.size), modified = os.date("!%Y-%m-%d %H:%M", f.mtime), path = f.path }
      end
      if #rows == 0 then return "no file of at least " .. size_text(ctx.params.min_size) end
      return { rows = rows, columns = { "size", "modified", "path" } }
    end,
  },

  check "old releases" {
    description = "Releases beyond the newest `keep`, never the live one.",
    run = function(ctx)
      local rows = {}
      for i, r in ipairs(old_releases(ctx.params)) do rows[i] = { release = r.name, size = size_text(r.size) } end
      if #rows == 0 then return "none beyond the newest " .. ctx.params.keep end
      return { rows = rows, columns = { "release", "size" } }
    end,
  },

  step "delete old releases" {
    description = "Asks before deleting each old release (undo: the tree back from its pre-image). In advance: " ..
      "`-a 'delete old releases.PATH=yes|no'`, or `delete old releases.*` for all.",
    run = function(ctx) delete_each(ctx, old_releases(ctx.params)) end,
  },

  step "delete large files" {
    description = "Asks before deleting each of the largest files (undo: the file back from its pre-image). " ..
      "In advance: `-a 'delete large files.PATH=yes|no'`, or `delete large files.*` for all.",
    run = function(ctx) delete_each(ctx, largest(ctx.params.dir, ctx.params.top, ctx.params.min_size)) end,
  },

  check "filesystem use after" {
    description = "How full the filesystem is now.",
    run = function(ctx) return usage_finding(ctx.params.dir, ctx.params.warn) end,
  },
}
