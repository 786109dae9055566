-- relish.semver: Semantic Versioning 2.0.0 versions (parse, compare, sort,
-- bump) and ranges in the npm dialect (^1.2, ~1.2, >=1.0 <2.0, 1.x, ||).
local errors = require "relish._errors"

local M = {}

local Version = { __name = "relish.semver.Version" }
Version.__index = Version

-- Raises a usage error located at the first caller outside this file.
local usage = errors.usage_for(debug.getinfo(1, "S").source)

-- Raises the error value of text that is not a version or a range: data
-- (a tag, a parameter), so a failure of the step that try can catch.
local function invalid(fname, why)
  error(errors.value("invalid", "%s: %s", fname, why), 0)
end

-- opts must be nil or a table of known keys.
local function check_opts(fname, opts, known)
  return errors.check_options(usage, fname, opts, known)
end

-- A numeric identifier: digits without a leading zero (except "0" itself).
local function numeric(s)
  return s:match("^%d+$") ~= nil and (s == "0" or s:sub(1, 1) ~= "0")
end

local function split_ids(s, what, text, build)
  local ids = {}
  if s == "" then return nil, string.format("%q: empty %s", text, what) end
  for id in (s .. "."):gmatch("([^.]*)%.") do
    if id == "" then return nil, string.format("%q: empty identifier in the %s", text, what) end
    if not id:match("^[0-9A-Za-z-]+$") then
      return nil, string.format("%q: %s identifier %q may only hold [0-9A-Za-z-]", text, what, id)
    end
    if not build and id:match("^%d+$") then
      if not numeric(id) then
        return nil, string.format("%q: numeric %s identifier %q has a leading zero", text, what, id)
      end
      -- kept as an integer when it fits, so 2 < 10; a huge one stays text
      ids[#ids + 1] = math.tointeger(tonumber(id)) or id
    else
      ids[#ids + 1] = id
    end
  end
  return ids
end

local function new(major, minor, patch, pre, build, prefix)
  return setmetatable({ major = major, minor = minor, patch = patch, prerelease = pre or {},
    build = build or {}, prefix = prefix or "" }, Version)
end

local function core_number(s, text, what)
  if not numeric(s) then return nil, string.format("%q: %s version %q has a leading zero", text, what, s) end
  local n = math.tointeger(tonumber(s))
  if not n then return nil, string.format("%q: %s version is too large", text, what) end
  return n
end

-- parse(s) -> version | nil, why: MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD],
-- with an optional leading "v" or "V" (as in tags), kept as version.prefix.
local function parse(s)
  local text = s
  local prefix = ""
  if s:match("^[vV]%d") then prefix, s = s:sub(1, 1), s:sub(2) end
  local core, rest = s:match("^(%d+%.%d+%.%d+)(.*)$")
  if not core then
    return nil, string.format("%q is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.4.2)", text)
  end
  local nums, err = {}, nil
  local names = { "major", "minor", "patch" }
  local i = 0
  for part in core:gmatch("%d+") do
    i = i + 1
    nums[i], err = core_number(part, text, names[i])
    if not nums[i] then return nil, err end
  end
  local pre, build = {}, {}
  local pre_text, build_text = rest:match("^%-([^+]*)(.*)$")
  if pre_text then
    pre, err = split_ids(pre_text, "pre-release", text, false)
    if not pre then return nil, err end
    rest = build_text
  end
  if rest ~= "" then
    local b = rest:match("^%+(.*)$")
    if not b then return nil, string.format("%q is not a semantic version: unexpected %q", text, rest) end
    build, err = split_ids(b, "build metadata", text, true)
    if not build then return nil, err end
  end
  return new(nums[1], nums[2], nums[3], pre, build, prefix)
end

-- v must be a string or a value of metatable mt (what: "version",
-- "range"), else misuse; which names the argument when it is not fname's
-- first. Every argument's type is checked before any text is read.
local function need(v, mt, what, fname, which)
  if getmetatable(v) ~= mt and type(v) ~= "string" then
    usage(fname, (which and (which .. " must be") or "expected") .. " a " .. what .. " or a string, got " .. type(v))
  end
end

-- The value of v (one of mt's, or a string read by read) for fname: text
-- read cannot take raises "invalid"; any other type is misuse.
local function checked(v, mt, what, read, fname, which)
  if getmetatable(v) == mt then return v end
  need(v, mt, what, fname, which)
  local r, why = read(v)
  if not r then invalid(fname, why) end
  return r
end

-- The version of v (a version or a string) for fname.
local function check(v, fname, which) return checked(v, Version, "version", parse, fname, which) end

-- parse(s) -> version; raises "invalid" when s is not a semantic version.
function M.parse(s)
  if getmetatable(s) == Version then return s end
  if type(s) ~= "string" then usage("semver.parse", "expected a string, got " .. type(s)) end
  return check(s, "semver.parse")
end

-- valid(s) -> boolean: whether the string s is a semantic version. A
-- predicate: it never raises on a string.
function M.valid(s)
  if getmetatable(s) == Version then return true end
  if type(s) ~= "string" then usage("semver.valid", "expected a string, got " .. type(s)) end
  return parse(s) ~= nil
end

function Version.__tostring(v)
  local s = string.format("%d.%d.%d", v.major, v.minor, v.patch)
  if #v.prerelease > 0 then
    local t = {}
    for i, id in ipairs(v.prerelease) do t[i] = tostring(id) end
    s = s .. "-" .. table.concat(t, ".")
  end
  if #v.build > 0 then s = s .. "+" .. table.concat(v.build, ".") end
  return s
end

function Version.__concat(a, b)
  return tostring(a) .. tostring(b)
end

-- Pre-release identifiers, per semver §11: numeric ones compare as numbers
-- and sort before alphanumeric ones (compared in ASCII order); a longer list
-- wins when all of the shorter one is equal.
local function compare_id(a, b)
  local na, nb = math.type(a) == "integer", math.type(b) == "integer"
  if na and nb then return a < b and -1 or (a > b and 1 or 0) end
  if na then return -1 end
  if nb then return 1 end
  -- numeric identifiers too large for an integer: longer is larger
  local da, db = a:match("^%d+$"), b:match("^%d+$")
  if da and db and #a ~= #b then return #a < #b and -1 or 1 end
  if da and not db then return -1 end
  if db and not da then return 1 end
  return a < b and -1 or (a > b and 1 or 0)
end

local function compare(a, b)
  for _, k in ipairs { "major", "minor", "patch" } do
    if a[k] ~= b[k] then return a[k] < b[k] and -1 or 1 end
  end
  local pa, pb = a.prerelease, b.prerelease
  -- a version without a pre-release has the higher precedence
  if #pa == 0 or #pb == 0 then
    if #pa == #pb then return 0 end
    return #pa == 0 and 1 or -1
  end
  for i = 1, math.min(#pa, #pb) do
    local c = compare_id(pa[i], pb[i])
    if c ~= 0 then return c end
  end
  if #pa == #pb then return 0 end
  return #pa < #pb and -1 or 1
end

-- compare(a, b) -> -1 | 0 | 1 by precedence (build metadata ignored)
local function compare_as(fname, a, b)
  need(a, Version, "version", fname)
  need(b, Version, "version", fname, "b")
  return compare(check(a, fname), check(b, fname, "b"))
end

function M.compare(a, b) return compare_as("semver.compare", a, b) end

function Version.__eq(a, b) return compare(a, b) == 0 end
function Version.__lt(a, b) return compare_as("semver <", a, b) < 0 end
function Version.__le(a, b) return compare_as("semver <=", a, b) <= 0 end

function Version:is_prerelease() return #self.prerelease > 0 end

-- The version as written in a tag: its prefix ("v" or none) kept, or the one given.
function Version:tag(prefix)
  return (prefix or self.prefix) .. tostring(self)
end

-- sort(list [, {key=, descending=}]) -> a new list of the entries that are
-- versions, by precedence. key names the field holding the version (for
-- git tags: key = "name") or is a function of the entry. Entries that are not
-- versions ("latest", "nightly") are left out; ties (build metadata) keep
-- their order by text.
local SORT_OPTS = { key = true, descending = true }

local function sort(fname, list, opts)
  if type(list) ~= "table" then usage(fname, "expected a list, got " .. type(list)) end
  local key = opts.key
  if key ~= nil and type(key) ~= "string" and type(key) ~= "function" then
    usage(fname, "key must be a field name or a function, got " .. type(key))
  end
  local items = {}
  for i, e in ipairs(list) do
    local k = e
    if type(key) == "string" then k = type(e) == "table" and e[key] or nil
    elseif key then k = key(e) end
    local v = getmetatable(k) == Version and k or (type(k) == "string" and parse(k)) or nil
    if v then items[#items + 1] = { e = e, v = v, text = tostring(k), i = i } end
  end
  table.sort(items, function(x, y)
    local c = compare(x.v, y.v)
    if c == 0 then
      if x.text ~= y.text then c = x.text < y.text and -1 or 1
      elseif x.i ~= y.i then c = x.i < y.i and -1 or 1 end
    end
    if opts.descending then return c > 0 end
    return c < 0
  end)
  local out = {}
  for i, it in ipairs(items) do out[i] = it.e end
  return out
end

function M.sort(list, opts)
  return sort("semver.sort", list, check_opts("semver.sort", opts, SORT_OPTS))
end

-- The version of entry e of a list sorted by sort (so a version).
local function version_in(e, key)
  local k = e
  if type(key) == "string" then k = e[key] elseif key then k = key(e) end
  return getmetatable(k) == Version and k or parse(k)
end

-- max(list [, {key=, prerelease=}]) -> the highest version entry, or nil.
-- Pre-releases count only with prerelease = true.
local MAX_OPTS = { key = true, prerelease = true }

function M.max(list, opts)
  opts = check_opts("semver.max", opts, MAX_OPTS)
  for _, e in ipairs(sort("semver.max", list, { key = opts.key, descending = true })) do
    if opts.prerelease or not version_in(e, opts.key):is_prerelease() then return e end
  end
  return nil
end

local BUMPS = { major = true, minor = true, patch = true, prerelease = true, release = true }
local BUMP_OPTS = { pre = true }

-- bump(v, part [, {pre = "rc"}]) -> new version. part: "major", "minor",
-- "patch", "prerelease" or "release". Bumping a pre-release to the release it
-- leads to gives that release (1.3.0-rc.2 bumped "minor" is 1.3.0); build
-- metadata is dropped; the prefix is kept.
function M.bump(v, part, opts)
  if not BUMPS[part] then
    usage("semver.bump", "part must be major, minor, patch, prerelease or release, got " ..
      (type(part) == "string" and string.format("%q", part) or type(part)))
  end
  opts = check_opts("semver.bump", opts, BUMP_OPTS)
  if opts.pre ~= nil and (type(opts.pre) ~= "string" or not opts.pre:match("^[0-9A-Za-z-]+$")) then
    usage("semver.bump", "pre must be an identifier like \"rc\"")
  end
  v = check(v, "semver.bump")
  local ma, mi, pa = v.major, v.minor, v.patch
  local pre = v.prerelease
  local is_pre = #pre > 0
  if part == "major" then
    if not (is_pre and mi == 0 and pa == 0) then ma, mi, pa = ma + 1, 0, 0 end
    return new(ma, mi, pa, {}, {}, v.prefix)
  elseif part == "minor" then
    if not (is_pre and pa == 0) then mi, pa = mi + 1, 0 end
    return new(ma, mi, pa, {}, {}, v.prefix)
  elseif part == "patch" then
    if not is_pre then pa = pa + 1 end
    return new(ma, mi, pa, {}, {}, v.prefix)
  elseif part == "release" then
    return new(ma, mi, pa, {}, {}, v.prefix)
  end
  -- prerelease: the next pre-release of the same release, or the first
  -- pre-release (".1") of the next patch
  local id = opts.pre
  if not is_pre then
    return new(ma, mi, pa + 1, id and { id, 1 } or { 1 }, {}, v.prefix)
  end
  local np = {}
  for i, x in ipairs(pre) do np[i] = x end
  if id and np[1] ~= id then return new(ma, mi, pa, { id, 1 }, {}, v.prefix) end
  if math.type(np[#np]) == "integer" then
    np[#np] = np[#np] + 1
  else
    np[#np + 1] = 1
  end
  return new(ma, mi, pa, np, {}, v.prefix)
end

-- ---- ranges ---------------------------------------------------------------

local Range = { __name = "relish.semver.Range" }
Range.__index = Range

local WILD = { x = true, X = true, ["*"] = true }

-- A partial version: "1", "1.2", "1.2.3-rc.1", "1.x", "*", with an optional v.
-- Returns {major=, minor=, patch=, prerelease=} with nil for wildcards.
local function partial(s, text)
  if s:match("^[vV]%d") then s = s:sub(2) end
  local parts = {}
  local core, rest = s:match("^([^-+]*)(.*)$")
  for p in (core .. "."):gmatch("([^.]*)%.") do parts[#parts + 1] = p end
  if #parts > 3 or core == "" then return nil, string.format("range %q: %q is not a version", text, s) end
  local out, wild = { prerelease = {} }, false
  for i, name in ipairs { "major", "minor", "patch" } do
    local p = parts[i]
    if p == nil or WILD[p] then
      wild = true
    elseif wild then
      return nil, string.format("range %q: %q has a number after a wildcard", text, s)
    elseif not p:match("^%d+$") then
      return nil, string.format("range %q: %q is not a version", text, s)
    else
      out[name] = math.tointeger(tonumber(p))
      if not out[name] then return nil, string.format("range %q: %q is too large", text, s) end
    end
  end
  if rest ~= "" then
    if wild then return nil, string.format("range %q: %q: a pre-release needs a full version", text, s) end
    local v, err = parse(string.format("%d.%d.%d%s", out.major, out.minor, out.patch, rest))
    if not v then return nil, string.format("range %q: %s", text, err) end
    out.prerelease = v.prerelease
  end
  return out
end

local function V(ma, mi, pa, pre) return new(ma, mi, pa, pre or {}, {}, "") end

-- The release after p's last given part ("1.2" -> 1.3.0): as an upper bound
-- X.Y.Z-0, the lowest version of that release, so its pre-releases are out.
local function next_up(p, upper)
  local pre = upper and { 0 } or {}
  if p.minor == nil then return V(p.major + 1, 0, 0, pre) end
  return V(p.major, p.minor + 1, 0, pre)
end

-- Comparators are {op, version}; upper bounds made from partial versions use
-- "<" against X.Y.Z-0, the lowest version of that release.
local function comparators(tok, text)
  local out = {}
  local function add(op, v) out[#out + 1] = { op = op, v = v } end
  local op, rest = tok:match("^([<>=~^]*)(.*)$")
  if op == "~>" then op = "~" end
  if rest == "" then return nil, string.format("range %q: %q has no version", text, tok) end
  local p, err = partial(rest, text)
  if not p then return nil, err end
  local lo = V(p.major or 0, p.minor or 0, p.patch or 0, p.prerelease)
  local full = p.patch ~= nil
  if op == "" or op == "=" then
    if p.major == nil then add(">=", V(0, 0, 0)) -- "*": anything (releases only)
    elseif full then add("=", lo)
    else
      add(">=", lo)
      add("<", next_up(p, true))
    end
  elseif op == "^" then
    add(">=", lo)
    if p.major == nil then return out end
    if p.major > 0 or p.minor == nil then add("<", V(p.major + 1, 0, 0, { 0 }))
    elseif p.minor > 0 or p.patch == nil then add("<", V(0, p.minor + 1, 0, { 0 }))
    else add("<", V(0, 0, p.patch + 1, { 0 })) end
  elseif op == "~" then
    add(">=", lo)
    if p.major == nil then return out end
    if p.minor == nil then add("<", V(p.major + 1, 0, 0, { 0 }))
    else add("<", V(p.major, p.minor + 1, 0, { 0 })) end
  elseif op == ">=" then
    add(">=", lo)
  elseif op == ">" then
    if p.major == nil then add("<", V(0, 0, 0, { 0 })) -- ">*": nothing
    elseif full then add(">", lo)
    else add(">=", next_up(p, false)) end
  elseif op == "<" then
    if p.major == nil then add("<", V(0, 0, 0, { 0 }))
    else add("<", full and lo or V(lo.major, lo.minor, lo.patch, { 0 })) end
  elseif op == "<=" then
    if p.major == nil then add(">=", V(0, 0, 0))
    elseif full then add("<=", lo)
    else add("<", next_up(p, true)) end
  else
    return nil, string.format("range %q: unknown operator %q", text, op)
  end
  return out
end

-- range(s) -> range | nil, why. Alternatives separated by "||"; within one,
-- comparators separated by blanks (or commas) must all hold; "A - B" is
-- ">=A <=B".
local function range(s)
  local text = s
  local sets = {}
  for alt in (s .. "||"):gmatch("(.-)||") do
    alt = alt:gsub(",", " "):gsub("^%s+", ""):gsub("%s+$", "")
    -- "1.2 - 2.3": a hyphen range
    local a, b = alt:match("^(%S+)%s+%-%s+(%S+)$")
    if a then alt = ">=" .. a .. " <=" .. b end
    -- an operator written apart from its version: ">= 1.2"
    alt = alt:gsub("([<>=~^]+)%s+", "%1")
    local set = {}
    if alt == "" then
      set[1] = { op = ">=", v = V(0, 0, 0) }
    else
      for tok in alt:gmatch("%S+") do
        local cs, err = comparators(tok, text)
        if not cs then return nil, err end
        for _, c in ipairs(cs) do set[#set + 1] = c end
      end
    end
    sets[#sets + 1] = set
  end
  return setmetatable({ sets = sets, text = text }, Range)
end

-- The range of r (a range or a string) for fname, as check is for versions.
local function check_range(r, fname, which) return checked(r, Range, "range", range, fname, which) end

-- range(s) -> range; raises "invalid" when s is not a range.
function M.range(s)
  return check_range(s, "semver.range")
end

local function holds(c, v)
  local r = compare(v, c.v)
  if c.op == "=" then return r == 0 end
  if c.op == ">=" then return r >= 0 end
  if c.op == ">" then return r > 0 end
  if c.op == "<" then return r < 0 end
  return r <= 0
end

-- A pre-release satisfies a comparator set only when one of its comparators
-- names a pre-release of the same MAJOR.MINOR.PATCH (as npm does), so that
-- ^1.2.0 does not pick 1.3.0-beta.1; include_prerelease lifts that rule.
-- Our own upper bounds (X.Y.Z-0) do not count as naming a pre-release.
local function set_allows(set, v, include_pre)
  for _, c in ipairs(set) do
    if not holds(c, v) then return false end
  end
  if #v.prerelease == 0 or include_pre then return true end
  for _, c in ipairs(set) do
    local cv = c.v
    if #cv.prerelease > 0 and not (c.op == "<" and #cv.prerelease == 1 and cv.prerelease[1] == 0)
      and cv.major == v.major and cv.minor == v.minor and cv.patch == v.patch then
      return true
    end
  end
  return false
end

local TEST_OPTS = { prerelease = true }

-- range:test(v [, {prerelease = true}]) -> boolean
function Range:test(v, opts)
  if getmetatable(self) ~= Range then usage("range:test", "call it as range:test(v), with a colon") end
  v = check(v, "range:test")
  local pre = check_opts("range:test", opts, TEST_OPTS).prerelease
  for _, set in ipairs(self.sets) do
    if set_allows(set, v, pre) then return true end
  end
  return false
end

function Range.__tostring(r)
  local alts = {}
  for i, set in ipairs(r.sets) do
    local cs = {}
    for j, c in ipairs(set) do cs[j] = c.op .. tostring(c.v) end
    alts[i] = table.concat(cs, " ")
  end
  return table.concat(alts, " || ")
end

-- satisfies(v, range [, {prerelease=}]) -> boolean; raises "invalid" on a
-- malformed version or range (try(semver.satisfies, ...) returns it).
function M.satisfies(v, r, opts)
  need(r, Range, "range", "semver.satisfies", "range")
  local v1 = check(v, "semver.satisfies")
  local r1 = check_range(r, "semver.satisfies", "range")
  local pre = check_opts("semver.satisfies", opts, TEST_OPTS).prerelease
  return r1:test(v1, { prerelease = pre })
end

-- max_satisfying(list, range [, {key=, prerelease=}]) -> the highest entry
-- of list whose version satisfies range, or nil.
function M.max_satisfying(list, r, opts)
  opts = check_opts("semver.max_satisfying", opts, MAX_OPTS)
  if type(list) ~= "table" then usage("semver.max_satisfying", "expected a list, got " .. type(list)) end
  local r1 = check_range(r, "semver.max_satisfying", "range")
  for _, e in ipairs(sort("semver.max_satisfying", list, { key = opts.key, descending = true })) do
    if r1:test(version_in(e, opts.key), { prerelease = opts.prerelease }) then return e end
  end
  return nil
end

M.Version = Version
M.Range = Range

return M
