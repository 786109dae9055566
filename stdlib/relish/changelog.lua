-- relish.changelog: Conventional Commits between two refs, the version they
-- imply, Markdown release notes grouped by type, and CHANGELOG.md updates.
local errors = require "relish._errors"
local semver = require "relish.semver"

local M = {}

-- Raises a usage error located at the first caller outside this file.
local usage = errors.usage_for(debug.getinfo(1, "S").source)

-- Raises the error value of a failure: the step fails (try returns it).
local function fail(kind, fmt, ...)
  error(errors.value(kind, fmt, ...), 0)
end

-- The version of v (a version or a string, else misuse) for fname's option
-- or argument `what`; text that is not a version raises "invalid".
local function version_of(fname, what, v)
  if getmetatable(v) ~= semver.Version and type(v) ~= "string" then
    usage(fname, what .. " must be a version or a string, got " .. type(v))
  end
  local ok = errors.try(semver.parse, v)
  if not ok then fail("invalid", "%s: %s %q is not a semantic version", fname, what, tostring(v)) end
  return ok
end

-- The options table of fname: a table (or nil) whose keys are all known.
local function check_opts(fname, opts, known)
  return errors.check_options(usage, fname, opts, known)
end

local byte, find, sub, match = string.byte, string.find, string.sub, string.match

local SPACE = { [32] = true, [9] = true, [10] = true, [11] = true, [12] = true, [13] = true }

-- s without leading and trailing blanks; walks bytes (a pattern like "%s+$"
-- would try every position of a long body)
local function trim(s)
  local i, j = 1, #s
  while i <= j and SPACE[byte(s, i)] do i = i + 1 end
  while j >= i and SPACE[byte(s, j)] do j = j - 1 end
  if i == 1 and j == #s then return s end
  return sub(s, i, j)
end

-- ---- parsing ------------------------------------------------------------------

-- A footer line at position p of s: "Token: value", "Token #value", or the
-- one token with a space, "BREAKING CHANGE: value".
local function footer_at(s, p)
  return find(s, "^BREAKING CHANGE:", p) or find(s, "^%a[%w%-]*: ", p) or find(s, "^%a[%w%-]* #", p)
end

local function footer_line(line)
  local tok, val = match(line, "^(BREAKING CHANGE): ?(.*)$")
  if tok then return tok, val end
  tok, val = match(line, "^(%a[%w%-]*): (.*)$")
  if tok then return tok, val end
  return match(line, "^(%a[%w%-]*) (#.*)$")
end

-- Position after the blank lines starting at p.
local function skip_blank_lines(s, p)
  while true do
    local _, e = find(s, "^[ \t\r]*\n", p)
    if not e then return p end
    p = e + 1
  end
end

-- Start of the next paragraph (a line after a blank line) from q, or nil.
-- Plain finds of "\n" only: a pattern scan would try every position.
local function next_paragraph(s, q)
  local e = find(s, "\n", q, true)
  while e do
    local _, be = find(s, "^[ \t\r]*\n", e + 1)
    if be then return skip_blank_lines(s, be + 1) end
    e = find(s, "\n", e + 1, true)
  end
  return nil
end

-- Footers start at the first line that begins a paragraph (the first line of
-- the body, or a line after a blank one) and reads as a footer; each footer
-- runs until the next footer line (values may span lines). The body is
-- s[from..], the message after its header line.
local function parse_body(s, from, c)
  local n = #s
  local fstart
  local q = skip_blank_lines(s, from)
  while q and q <= n do
    if footer_at(s, q) then fstart = q break end
    q = next_paragraph(s, q)
  end
  local i, j = from, (fstart or n + 1) - 1
  while i <= j and SPACE[byte(s, i)] do i = i + 1 end
  while j >= i and SPACE[byte(s, j)] do j = j - 1 end
  local body = sub(s, i, j)
  if find(body, "\r", 1, true) then body = body:gsub("\r\n", "\n") end
  c.body = body
  local footers = {}
  c.footers = footers
  if not fstart then return end
  local current
  for line in (sub(s, fstart) .. "\n"):gmatch("([^\n]*)\n") do
    if byte(line, -1) == 13 then line = sub(line, 1, -2) end
    local tok, val = footer_line(line)
    if tok then
      current = { token = tok, value = val }
      footers[#footers + 1] = current
    else
      current.value = current.value .. "\n" .. line
    end
  end
  for _, f in ipairs(footers) do
    f.value = trim(f.value)
    if f.token == "BREAKING CHANGE" or f.token == "BREAKING-CHANGE" then
      c.breaking = true
      c.breaking_note = c.breaking_note and (c.breaking_note .. "\n" .. f.value) or f.value
    end
  end
end

-- Bodies and footers are read when first asked for: a changelog needs only
-- the header and whether a BREAKING CHANGE footer is there, and a plain
-- search for "BREAKING" settles the second. The message is the commit's own
-- `message` field, or (when that is another text) kept aside here.
local pending = setmetatable({}, { __mode = "k" })
local Lazy = {
  __index = function(c, k)
    if k ~= "body" and k ~= "footers" then return nil end
    local m = pending[c] or rawget(c, "message")
    pending[c] = nil
    local nl = m and find(m, "\n", 1, true)
    if not nl then
      rawset(c, "body", "")
      rawset(c, "footers", {})
    else
      parse_body(m, nl + 1, c)
    end
    return rawget(c, k)
  end,
}

-- What a header's "type(scope)!" part means, by its text: a history has few
-- distinct ones, so each is read once. {type, scope or false, breaking} or
-- false when it is not a Conventional Commit's.
local HEADS, nheads = {}, 0

local function head_of(prefix)
  local h = HEADS[prefix]
  if h ~= nil then return h end
  local typ, bang = match(prefix, "^(%a[%w%-]*)(!?)$")
  local scope
  if not typ then
    typ, scope, bang = match(prefix, "^(%a[%w%-]*)(%b())(!?)$")
    if typ and find(scope, "[()]", 2) ~= #scope then typ = nil end -- "fix((a))"
    if typ then
      scope = trim(sub(scope, 2, -2))
      if scope == "" then scope = false end
    end
  end
  h = typ and { typ:lower(), scope or false, bang == "!" } or false
  if nheads < 4096 then
    HEADS[prefix] = h
    nheads = nheads + 1
  end
  return h
end

-- parse(message [, into]) -> {type=, scope=, breaking=, description=, body=,
-- footers=, breaking_note=, conventional=, message=} (the fields are set on
-- `into` when given; body and footers are computed on first use). type is
-- lower case; a message that is not a Conventional Commit has conventional =
-- false and its first line as description (a git revert's "Revert \"...\""
-- gets type "revert").
function M.parse(message, into)
  if type(message) ~= "string" then usage("changelog.parse", "expected a string, got " .. type(message)) end
  if into ~= nil and type(into) ~= "table" then usage("changelog.parse", "into must be a table, got " .. type(into)) end
  local c = into
  if c == nil then
    c = { message = message }
  elseif c.conventional ~= nil then -- parsed before: start afresh
    c.type, c.scope, c.breaking_note, c.body, c.footers = nil, nil, nil, nil, nil
    pending[c] = nil
  end
  local nl = find(message, "\n", 1, true)
  local stop = (nl or #message + 1) - 1 -- end of the first line
  -- "type(scope)!: description": plain searches, and the part before the
  -- colon looked up (the patterns run once per distinct prefix)
  local colon = find(message, ":", 1, true)
  local h, desc = false, nil
  if colon and colon <= stop then
    local prefix = sub(message, 1, colon - 1)
    h = HEADS[prefix]
    if h == nil then h = head_of(prefix) end
    if not h and find(prefix, "(", 1, true) then
      -- a colon inside the scope: "feat(a:b): x"
      local typ, scope, bang, rest = match(message, "^(%a[%w%-]*)(%b())(!?)(:[ \t][^\n]*)")
      if typ and find(scope, "[()\n]", 2) == #scope then
        h = head_of(typ .. scope .. bang)
        colon = #typ + #scope + #bang + 1
        stop = colon + #rest - 1
      end
    end
    local b1, b2 = byte(message, colon + 1, colon + 2)
    if h and (b1 == 32 or b1 == 9) then
      local i, j = colon + 2, stop
      if SPACE[b2] then
        while i <= j and SPACE[byte(message, i)] do i = i + 1 end
      end
      while j >= i and SPACE[byte(message, j)] do j = j - 1 end
      if i <= j then desc = sub(message, i, j) end
    end
  end
  if desc then
    c.conventional = true
    c.type = h[1]
    if h[2] then c.scope = h[2] end
    c.description = desc
    c.breaking = h[3]
  else
    c.conventional, c.breaking = false, false
    local header = trim(nl and sub(message, 1, nl - 1) or message)
    c.description = header
    local reverted = match(header, '^Revert "(.*)"$')
    if reverted then
      c.type = "revert"
      c.description = reverted
    end
  end
  local mt = getmetatable(c)
  if mt ~= nil and mt ~= Lazy then -- a table with a metatable of its own: all now
    if nl then parse_body(message, nl + 1, c) else c.body, c.footers = "", {} end
  elseif nl and nl < #message and find(message, "BREAKING", nl, true) then
    parse_body(message, nl + 1, c)
  else
    if c.message ~= message then pending[c] = message end
    if mt == nil then setmetatable(c, Lazy) end
  end
  return c
end

-- ---- what a set of commits implies ---------------------------------------------

local LEVEL = { major = 3, minor = 2, patch = 1 }
local NAMES = { "patch", "minor", "major" }

-- The change a commit makes to the version: breaking -> major, feat -> minor,
-- fix, perf and revert -> patch; anything else none.
local function level_of(c)
  if c.breaking then return 3 end
  if c.type == "feat" then return 2 end
  if c.type == "fix" or c.type == "perf" or c.type == "revert" then return 1 end
  return 0
end

-- bump(commits [, current]) -> "major" | "minor" | "patch" | nil. While the
-- major version is 0 (initial development, semver §4) a breaking change
-- bumps the minor version: going to 1.0.0 is a decision, not a side effect.
local function bump(fname, commits, current)
  if type(commits) ~= "table" then usage(fname, "commits must be a list, got " .. type(commits)) end
  local v = current ~= nil and version_of(fname, "current", current)
  local top = 0
  for _, c in ipairs(commits) do
    if c.type == nil and c.conventional == nil and c.message then M.parse(c.message, c) end
    local l = level_of(c)
    if l > top then top = l end
    if top == 3 then break end
  end
  if top == 0 then return nil end
  if v and v.major == 0 and top == 3 then top = 2 end
  return NAMES[top]
end

function M.bump(commits, current)
  return bump("changelog.bump", commits, current)
end

-- next_version(current, commits [, {initial=, prefix=}]) -> version | nil:
-- current bumped as the commits say (nil when none is releasable); without a
-- current version, the initial one (default 0.1.0).
local NEXT_OPTS = { initial = true, prefix = true }

local function next_version(fname, current, commits, opts)
  if opts.prefix ~= nil and type(opts.prefix) ~= "string" then
    usage(fname, "prefix must be a string, got " .. type(opts.prefix))
  end
  if current == nil then
    if type(commits) ~= "table" then usage(fname, "commits must be a list, got " .. type(commits)) end
    -- a fresh copy: the prefix is set on it
    local v = semver.parse(tostring(version_of(fname, "initial", opts.initial or "0.1.0")))
    if opts.prefix then v.prefix = opts.prefix end
    return v, "initial"
  end
  local part = bump(fname, commits, current)
  if not part then return nil end
  return semver.bump(current, part), part
end

function M.next_version(current, commits, opts)
  return next_version("changelog.next_version", current, commits,
    check_opts("changelog.next_version", opts, NEXT_OPTS))
end

-- ---- release notes -------------------------------------------------------------

M.GROUPS = {
  { key = "breaking", title = "Breaking changes" },
  { key = "feat", title = "Features" },
  { key = "fix", title = "Bug fixes" },
  { key = "perf", title = "Performance" },
  { key = "revert", title = "Reverts" },
  { key = "docs", title = "Documentation" },
  { key = "other", title = "Other changes" },
}

local function group_of(c)
  if c.breaking then return "breaking" end
  local t = c.type
  if t == "feat" or t == "fix" or t == "perf" or t == "revert" or t == "docs" then return t end
  return "other"
end

local function short_of(c)
  return c.short or (c.id and c.id:sub(1, 7)) or nil
end

local function line_for(c, opts)
  local desc = c.description or c.summary or ""
  local line = c.scope and ("- **" .. c.scope .. ":** " .. desc) or ("- " .. desc)
  local short, author = short_of(c), c.author
  if author == "" then author = nil end
  if short and opts.commit_url and c.id then
    short = "[" .. short .. "](" .. string.format(opts.commit_url, c.id) .. ")"
  end
  if short and author then
    line = line .. " (" .. short .. ", " .. author .. ")"
  elseif short or author then
    line = line .. " (" .. (short or author) .. ")"
  end
  if c.breaking and c.breaking_note and c.breaking_note ~= "" and c.breaking_note ~= c.description then
    line = line .. "\n" .. ("  " .. c.breaking_note:gsub("\n", "\n  ")):gsub("\n  \n", "\n\n")
  end
  return line
end

-- notes(commits, {version=, previous=, date=, title=, commit_url=,
-- compare_url=, merges=, other=}) -> Markdown: a "## version (date)" heading
-- and one "### Group" list per kind of change, in log order.
local NOTES_OPTS = { version = true, previous = true, date = true, title = true, commit_url = true,
  compare_url = true, merges = true, other = true }

function M.notes(commits, opts)
  if type(commits) ~= "table" then usage("changelog.notes", "expected a list of commits, got " .. type(commits)) end
  opts = check_opts("changelog.notes", opts, NOTES_OPTS)
  local version = opts.version and tostring(opts.version) or nil
  if opts.version and getmetatable(opts.version) == semver.Version then version = opts.version:tag() end
  local title = opts.title or version or "Unreleased"
  if opts.compare_url and opts.previous and version then
    title = string.format("[%s](%s)", title, string.format(opts.compare_url, opts.previous, version))
  end
  local date = opts.date
  if date == nil then date = os.date("!%Y-%m-%d") end
  local out = { "## " .. title .. (date and date ~= false and (" (" .. date .. ")") or "") }
  local groups = {}
  local count = 0
  for _, c in ipairs(commits) do
    if c.conventional == nil and c.message then M.parse(c.message, c) end
    local merge = c.parents and #c.parents > 1
    if not merge or opts.merges then
      local g = group_of(c)
      if g ~= "other" or opts.other ~= false then
        groups[g] = groups[g] or {}
        table.insert(groups[g], line_for(c, opts))
        count = count + 1
      end
    end
  end
  if count == 0 then
    out[#out + 1] = "\nNo changes."
  end
  for _, g in ipairs(M.GROUPS) do
    if groups[g.key] then
      out[#out + 1] = "\n### " .. g.title .. "\n"
      out[#out + 1] = table.concat(groups[g.key], "\n")
    end
  end
  return table.concat(out, "\n") .. "\n"
end

-- prepend(changelog_text, section) -> the text with section as its newest
-- entry: after the title and introduction, before the first "## " heading.
function M.prepend(text, section)
  if text ~= nil and type(text) ~= "string" then usage("changelog.prepend", "expected a string or nil, got " .. type(text)) end
  if type(section) ~= "string" then usage("changelog.prepend", "section must be a string, got " .. type(section)) end
  section = section:gsub("\n*$", "") .. "\n"
  if text == nil or not text:find("%S") then
    return "# Changelog\n\n" .. section
  end
  local pos
  if text:match("^## ") then pos = 1 else pos = text:find("\n## ", 1, true) end
  if pos then
    if pos > 1 then pos = pos + 1 end
    return text:sub(1, pos - 1) .. section .. "\n" .. text:sub(pos)
  end
  return text:gsub("\n*$", "") .. "\n\n" .. section
end

-- ---- from a repository -------------------------------------------------------

local function check_repo(repo, fname)
  if type(repo) ~= "userdata" and type(repo) ~= "table" then
    usage(fname, "expected a repository from relish.git (git.open), got " .. type(repo))
  end
end

-- The ids of the commits a revert takes back, or nil: relish's trailer
-- "Relish-Revert: A..B" (the commits in A..B, as the rollback of a push
-- writes it) or git revert's "This reverts commit <id>." (an id or a prefix
-- of at least 7 digits).
local function reverted_ids(repo, message, paths)
  local a, b = match(message, "\nRelish%-Revert: (%x+)%.%.(%x+)")
  if a then
    local range = errors.try(repo.log, repo, { from = a, to = b, paths = paths })
    if range then
      local ids = {}
      for i, c in ipairs(range) do ids[i] = c.id end
      return ids
    end
  end
  local id = match(message, "This reverts commit (%x+)")
  if id and #id >= 7 then return { id } end
  return nil
end

-- The commits of log (newest first) that cancel out: a revert and what it
-- takes back when all of it is in the log too (a revert of a commit from an
-- earlier release stays). A revert of a revert cancels that one, and the
-- original stays. paths: the log's, for a range revert's commits too.
-- -> set of ids.
local function cancelled(repo, log, paths)
  local at, gone = {}, {}
  for i, c in ipairs(log) do at[c.id] = i end
  local function position(id)
    if at[id] then return at[id] end
    if #id < 40 then
      for i, c in ipairs(log) do
        if sub(c.id, 1, #id) == id then return i end
      end
    end
  end
  for i, c in ipairs(log) do
    local m = c.message or ""
    if not gone[c.id] and (find(m, "This reverts commit ", 1, true) or find(m, "\nRelish-Revert: ", 1, true)) then
      local ids = reverted_ids(repo, m, paths)
      local hits = {}
      for _, id in ipairs(ids or {}) do
        local j = position(id)
        if not j or j <= i or gone[log[j].id] then
          hits = nil
          break
        end
        hits[#hits + 1] = log[j].id
      end
      if hits and #hits > 0 then
        gone[c.id] = true
        for _, id in ipairs(hits) do gone[id] = true end
      end
    end
  end
  return gone
end

-- commits(repo [, {from=, to=, paths=, merges=}]) -> list: the commits in
-- from..to (newest first), each the git log record with the parsed fields
-- added. Merge commits are left out unless merges = true; so are a revert
-- and the commits it takes back when both are in the range (a release that
-- was rolled back, then made again). relish.git's errors (an unknown ref:
-- not_found) are raised as they are.
local COMMITS_OPTS = { from = true, to = true, paths = true, merges = true }

function M.commits(repo, opts)
  check_repo(repo, "changelog.commits")
  opts = check_opts("changelog.commits", opts, COMMITS_OPTS)
  local log = repo:log { from = opts.from, to = opts.to, paths = opts.paths }
  local out = {}
  -- finding reverts and parsing add to thousands of records that all stay
  -- reachable: the collector is paused meanwhile (as relish.json and repo:log
  -- do), else its incremental steps re-mark the whole log again and again
  local running = collectgarbage("isrunning")
  if running then collectgarbage("stop") end
  local ok, perr = pcall(function()
    local gone = cancelled(repo, log, opts.paths)
    for _, c in ipairs(log) do
      if (opts.merges or not (c.parents and #c.parents > 1)) and not gone[c.id] then
        M.parse(c.message or c.summary or "", c)
        out[#out + 1] = c
      end
    end
  end)
  if running then collectgarbage("restart") end
  if not ok then error(perr, 0) end
  return out
end

-- last_tag(repo [, {prefix=, prerelease=}]) -> tag record, version | nil:
-- the highest semantic version among the tags named prefix .. version
-- (prefix "v" by default; pre-releases only with prerelease = true); nil
-- when there is none (not a failure).
local LAST_TAG_OPTS = { prefix = true, prerelease = true }

function M.last_tag(repo, opts)
  check_repo(repo, "changelog.last_tag")
  opts = check_opts("changelog.last_tag", opts, LAST_TAG_OPTS)
  local prefix = opts.prefix or "v"
  if type(prefix) ~= "string" then usage("changelog.last_tag", "prefix must be a string, got " .. type(prefix)) end
  local tags = repo:tags()
  local best, best_v
  for _, t in ipairs(tags) do
    local name = t.name
    if name:sub(1, #prefix) == prefix and semver.valid(name:sub(#prefix + 1)) then
      local v = semver.parse(name:sub(#prefix + 1))
      if v.prefix == "" and (opts.prerelease or not v:is_prerelease()) then
        if not best_v or semver.compare(v, best_v) > 0 then best, best_v = t, v end
      end
    end
  end
  return best, best_v
end

-- release(repo [, opts]) -> plan. What the next release would be:
--   opts: to (default "HEAD"), from (default: the last tag), prefix ("v"),
--         initial ("0.1.0"), bump (force "major" | "minor" | "patch"),
--         version (force an exact version), date, commit_url, compare_url
--   plan: {previous = tag name or nil, previous_version=, version = Version,
--          tag = "v1.4.0", bump = "minor" | "initial" | "forced" | nil,
--          commits = {...}, notes = markdown, releasable = bool}
local RELEASE_OPTS = { to = true, from = true, prefix = true, initial = true, bump = true, version = true,
  date = true, commit_url = true, compare_url = true, merges = true }

function M.release(repo, opts)
  check_repo(repo, "changelog.release")
  opts = check_opts("changelog.release", opts, RELEASE_OPTS)
  local prefix = opts.prefix or "v"
  if type(prefix) ~= "string" then usage("changelog.release", "prefix must be a string") end
  if opts.bump ~= nil and not LEVEL[opts.bump] then
    usage("changelog.release", "bump must be \"major\", \"minor\" or \"patch\"")
  end
  if opts.from ~= nil and type(opts.from) ~= "string" then
    usage("changelog.release", "from must be a string, got " .. type(opts.from))
  end
  -- the versions given are read before the repository is
  local forced = opts.version ~= nil and version_of("changelog.release", "version", opts.version)
  local initial = version_of("changelog.release", "initial", opts.initial or "0.1.0")
  local prev_tag, prev_v, from = nil, nil, opts.from
  if from == nil then
    prev_tag, prev_v = M.last_tag(repo, { prefix = prefix })
    if prev_tag then from = prev_tag.target end
  else
    -- a from that is not a version tag (a commit id) has no version
    local text = from:gsub("^" .. prefix:gsub("%p", "%%%0"), "")
    prev_v = semver.valid(text) and semver.parse(text) or nil
    prev_tag = { name = from }
  end
  local commits = M.commits(repo, { from = from, to = opts.to, merges = opts.merges })
  local version, how
  if forced then
    version, how = forced, "forced" -- copied, prefix-free, with the other versions below
  elseif opts.bump then
    version = prev_v and semver.bump(prev_v, opts.bump) or initial
    how = "forced"
  elseif prev_v then
    version, how = next_version("changelog.release", prev_v, commits, {})
  elseif #commits > 0 then
    version, how = next_version("changelog.release", nil, commits, { initial = initial })
  end
  local plan = { previous = prev_tag and prev_tag.name or nil, previous_version = prev_v,
    commits = commits, bump = how, releasable = version ~= nil }
  if version then
    version = semver.parse(tostring(version)) -- a fresh copy, prefix-free
    if prev_v and semver.compare(version, prev_v) <= 0 then
      fail("invalid", "changelog.release: version %s is not above the last release %s",
        tostring(version), tostring(prev_v))
    end
    plan.version = version
    plan.tag = prefix .. tostring(version)
    plan.notes = M.notes(commits, { version = plan.tag, previous = plan.previous, date = opts.date,
      commit_url = opts.commit_url, compare_url = opts.compare_url, merges = opts.merges })
  end
  return plan
end

return M
