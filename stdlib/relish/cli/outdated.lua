-- relish outdated: per library of relish.lock, the locked version, the
-- newest its constraint allows and the newest tag (a branch: its head).
local libs = require "relish.libs"
local install = require "relish.cli.install"
local json = require "relish.json"
local semver = require "relish.semver"
local invalid = require("relish._errors").invalid
local try = require("relish._errors").try

local M = {}

local function short(id) return id and id:sub(1, 7) end

function M.main(opts)
  local flags = opts.flags
  local root = install.root()
  local manifest = libs.read_manifest(root .. "/" .. libs.MANIFEST)
  local lock = libs.read_lock(root .. "/" .. libs.LOCK)
  if not lock then invalid("there is no " .. root .. "/" .. libs.LOCK .. ": run `relish install`") end
  local sources, urls = {}, {}
  for name, l in pairs(lock.libraries) do
    local m = manifest[name]
    local url = (m and m.source == l.source) and m.url or libs.resolve_source(l.source, "/")
    urls[name] = url
    sources[url] = sources[url] or { auth = m and m.auth }
  end
  local fetched = install.fetch_all(sources)
  local rows = {}
  local names = {}
  for name in pairs(lock.libraries) do names[#names + 1] = name end
  table.sort(names)
  for _, name in ipairs(names) do
    local l = lock.libraries[name]
    local res = fetched[urls[name]]
    local row = { name = name, constraint = l.constraint, current = l.version or short(l.commit), commit = l.commit }
    if res.error then
      row.error = res.error.message
    else
      local repo = res.repo
      local branch = l.constraint:match("^branch (.+)$")
      if branch then
        local head = try(repo.resolve, repo, "refs/heads/" .. branch)
        row.wanted = short(head)
        row.latest = row.wanted
      elseif l.constraint:match("^commit ") then
        row.wanted, row.latest = short(l.commit), short(l.commit)
      else
        local tags = install.version_tags(repo)
        local fit = {}
        for _, t in ipairs(tags) do
          if semver.satisfies(t.name, l.constraint) then fit[#fit + 1] = t end
        end
        local w, n = semver.max(fit, { key = "name" }), semver.max(tags, { key = "name" })
        row.wanted, row.latest = w and w.name, n and n.name
      end
      row.outdated = row.wanted ~= row.current or row.latest ~= row.current
    end
    rows[#rows + 1] = row
  end
  if flags.output == "json" then
    local list = json.array {}
    for _, r in ipairs(rows) do
      list[#list + 1] = { name = r.name, constraint = r.constraint, current = r.current, wanted = r.wanted or json.null,
        latest = r.latest or json.null, outdated = r.outdated or false, error = r.error or json.null }
    end
    io.write(json.encode({ libraries = list }), "\n")
    return 0
  end
  local w = { #"Library", #"Current", #"Wanted", #"Latest" }
  for _, r in ipairs(rows) do
    w[1] = math.max(w[1], #r.name)
    w[2] = math.max(w[2], #r.current)
    w[3] = math.max(w[3], #(r.wanted or "-"))
    w[4] = math.max(w[4], #(r.latest or "-"))
  end
  local fmt = string.format("%%-%ds  %%-%ds  %%-%ds  %%-%ds  %%s\n", w[1], w[2], w[3], w[4])
  io.write(string.format(fmt, "Library", "Current", "Wanted", "Latest", "Constraint"))
  for _, r in ipairs(rows) do
    io.write((string.format(fmt, r.name, r.current, r.wanted or "-", r.latest or "-",
      r.constraint .. (r.error and ("  (" .. r.error .. ")") or "")):gsub("%s+\n$", "\n")))
  end
  return 0
end

return M
