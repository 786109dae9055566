-- relish doc FILE... [-o DIR] [-p KEY=VALUE]...: Markdown documentation of
-- recipes from their source. A file is loaded the way `relish run` loads it
-- (dsl.load: nothing runs, the gate is closed); what the loaded recipe no
-- longer holds as written (a default computed from the environment, a
-- deploys field) is read from the source text, so the page does not change
-- with the machine it is made on. With -p the recipe is also dry-run (the
-- path of `relish plan`) into a throw-away journal and the planned actions
-- are listed per step.
--
-- describe(file) builds a model {kind = "recipe" | "runbook", ...};
-- RENDER[kind] turns it into Markdown. A directory is read with its
-- subdirectories (recipes/runbooks/), each page written at the same
-- relative path under -o.
local common = require "relish.cli.common"
local dsl = require "relish.dsl"
local fs = require "relish.fs"
local invalid = require("relish._errors").invalid
local try = require("relish._errors").try

local M = {}

-- ---- the source text -------------------------------------------------------

-- The leading comment block of a file (after a #! line), without the "--".
local function leading_comment(source)
  local lines = {}
  local first = true
  for line in (source .. "\n"):gmatch("(.-)\r?\n") do
    if first and line:match("^#!") then
      first = false
    else
      first = false
      local text = line:match("^%-%-(.*)$")
      if not text or line:match("^%-%-%[=*%[") then break end
      lines[#lines + 1] = text:gsub("^ ", "")
    end
  end
  while #lines > 0 and lines[#lines]:match("^%s*$") do lines[#lines] = nil end
  return #lines > 0 and table.concat(lines, "\n") or nil
end

-- The position just after the string, long string or comment starting at i
-- of s, or nil when s[i] starts none of them.
local function skip_literal(s, i)
  local c = s:sub(i, i)
  if c == '"' or c == "'" then
    local j = i + 1
    while j <= #s do
      local d = s:sub(j, j)
      if d == "\\" then
        j = j + 2
      elseif d == c then
        return j + 1
      else
        j = j + 1
      end
    end
    return #s + 1
  end
  local long = s:match("^%[(=*)%[", i)
  if long then
    local _, e = s:find("]" .. long .. "]", i, true)
    return (e or #s) + 1
  end
  if s:sub(i, i + 1) == "--" then
    local lc = s:match("^%-%-%[(=*)%[", i)
    if lc then
      local _, e = s:find("]" .. lc .. "]", i, true)
      return (e or #s) + 1
    end
    local e = s:find("\n", i, true)
    return (e or #s) + 1
  end
end

-- The table constructor starting at the "{" at i: its fields at the top
-- level as { name = "source text of the value" }, and the position after it.
local function fields_of(s, i)
  local out, depth, j = {}, 0, i
  local key, vstart
  local function close_value(e)
    if key then out[key] = s:sub(vstart, e):match("^%s*(.-)%s*$") end
    key = nil
  end
  while j <= #s do
    local after = skip_literal(s, j)
    if after then
      j = after
    else
      local c = s:sub(j, j)
      if c == "{" or c == "(" or c == "[" then
        depth = depth + 1
        j = j + 1
      elseif c == "}" or c == ")" or c == "]" then
        depth = depth - 1
        if depth == 0 then
          close_value(j - 1)
          return out, j + 1
        end
        j = j + 1
      elseif depth == 1 and c == "," then
        close_value(j - 1)
        j = j + 1
      elseif depth == 1 and not key then
        local name, e = s:match("^([%a_][%w_]*)%s*=()", j)
        if name and s:sub(e, e) ~= "=" and s:sub(j - 1, j - 1):match("[%s,{;]") then
          key, vstart = name, e
          j = e
        else
          j = j + 1
        end
      else
        if depth == 1 and c == ";" then close_value(j - 1) end
        j = j + 1
      end
    end
  end
  return out, j
end

-- Where name = <pattern-after> starts in the source (outside strings and
-- comments): the position of the "{" that follows, or nil.
local function find_table(s, prefix_pattern)
  local j = 1
  while j <= #s do
    local after = skip_literal(s, j)
    if after then
      j = after
    else
      local _, e = s:find("^" .. prefix_pattern, j)
      if e and (j == 1 or not s:sub(j - 1, j - 1):match("[%w_.]")) then return e end
      j = j + 1
    end
  end
end

local function param_source(source, name)
  local at = find_table(source, "%[?[\"']?" .. name:gsub("%p", "%%%0") .. "[\"']?%]?%s*=%s*param%.%a+%s*{")
  if not at then return {} end
  return (fields_of(source, at))
end

local function recipe_source(source)
  local at = find_table(source, "recipe%s*%(?%s*[\"'][^\"']*[\"']%s*%)?%s*{")
    or find_table(source, "runbook%s*%(?%s*[\"'][^\"']*[\"']%s*%)?%s*{")
  if not at then return {} end
  return (fields_of(source, at))
end

local function deploys_source(source)
  local at = find_table(source, "deploys%s*=%s*{")
  if not at then return {} end
  return (fields_of(source, at))
end

-- ---- values as text --------------------------------------------------------

local function code(s)
  s = tostring(s):gsub("\n%s*", " ")
  local fence = s:find("`", 1, true) and "``" or "`"
  return fence .. s .. fence
end

local function cell(s) return (tostring(s):gsub("|", "\\|"):gsub("\n", " ")) end

local function value_text(v)
  if type(v) == "table" then
    local mt = getmetatable(v)
    if mt and mt.__tostring then return tostring(v) end
    local parts = {}
    for i, e in ipairs(v) do parts[i] = value_text(e) end
    return "{ " .. table.concat(parts, ", ") .. " }"
  end
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "function" then return "a function" end
  return tostring(v)
end

-- seconds -> 90s, 10m, 1h30m
local function duration_text(s)
  if not s then return nil end
  if s < 1 then return string.format("%dms", math.floor(s * 1000 + 0.5)) end
  local h, m, sec = math.floor(s / 3600), math.floor(s % 3600 / 60), s % 60
  local out = ""
  if h > 0 then out = out .. h .. "h" end
  if m > 0 then out = out .. m .. "m" end
  if sec > 0 or out == "" then out = out .. (math.type(sec) == "float" and sec % 1 ~= 0 and sec or math.floor(sec)) .. "s" end
  return out
end

local function is_function_text(t) return t and t:match("^function[%s(]") ~= nil end

-- "a function of the params", with its source when that is one short line
local function function_text(t)
  local s = "a function of the params"
  if t and is_function_text(t) and not t:find("\n") and #t <= 120 then s = s .. ": " .. code(t) end
  return s
end

-- ---- the model -------------------------------------------------------------

local function param_model(name, p, src)
  local m = { name = name, kind = p.kind, description = p.description, constraints = {} }
  local function shown(field)
    local t = src[field]
    if t and not is_function_text(t) then return code(t) end
    return code(value_text(p[field]))
  end
  if p.required then
    m.required = "required"
  elseif p.default ~= nil then
    m.required = "default " .. (p.secret and "`***`" or shown("default"))
  else
    m.required = "optional"
  end
  local c = m.constraints
  if p.of ~= nil then c[#c + 1] = "of " .. shown("of") end
  if p.choices ~= nil then c[#c + 1] = "one of " .. shown("choices") end
  if p.match ~= nil then c[#c + 1] = "matches " .. shown("match") end
  if p.min ~= nil then c[#c + 1] = "min " .. shown("min") end
  if p.max ~= nil then c[#c + 1] = "max " .. shown("max") end
  if p.range ~= nil then c[#c + 1] = "in range " .. shown("range") end
  if p.allow_empty then c[#c + 1] = "may be empty" end
  if p.validate ~= nil then c[#c + 1] = "checked by a validate function" end
  if p.secret then c[#c + 1] = "secret (never shown or journaled)" end
  return m
end

-- a step's choose and confirm, as the page says them; the source text of a
-- function when it is one short line
local function asks_model(s)
  local out = {}
  if type(s.choose) == "table" then
    local opts = {}
    for i, o in ipairs(s.choose.options) do opts[i] = code(o.value) .. (o.text and (" (" .. o.text .. ")") or "") end
    out.choose = "one of " .. table.concat(opts, ", ") ..
      (s.choose.default and ("; default " .. code(s.choose.default)) or "") ..
      (s.choose.prompt and ("; asked as " .. code(s.choose.prompt)) or "")
  elseif s.choose then
    out.choose = "options from a function of ctx (read when the step starts)"
  end
  if type(s.confirm) == "string" then
    out.confirm = code(s.confirm)
  elseif s.confirm then
    out.confirm = "a question from a function of ctx (with the live state when the step starts)"
  end
  if s.choose and s.confirm then
    out.keys = string.format("answer in advance with `-a '%s=OPTION' -a '%s.confirm=yes'`", s.name, s.name)
  elseif s.choose then
    out.keys = string.format("answer in advance with `-a '%s=OPTION'`", s.name)
  elseif s.confirm then
    out.keys = string.format("answer in advance with `-a '%s=yes'` (or `--yes`)", s.name)
  end
  return out
end

local function step_model(s)
  if s.check then
    return { name = s.name, description = s.description, check = true, timeout = duration_text(s.timeout),
      conditional = s.when ~= nil, needs = {}, asks = {} }
  end
  local needs = {}
  for _, pname in ipairs(s.needs and s.needs.params or {}) do needs[#needs + 1] = "param " .. code(pname) end
  for _, e in ipairs(s.needs and s.needs.secrets or {}) do
    if type(e) == "string" then
      needs[#needs + 1] = "secret " .. code(e)
    elseif e.env then
      needs[#needs + 1] = "secret from env " .. code(e.env)
    else
      needs[#needs + 1] = "secret from file " .. code(e.file)
    end
  end
  return { name = s.name, description = s.description, timeout = duration_text(s.timeout),
    retries = s.retries and s.retries > 0 and s.retries or nil, conditional = s.when ~= nil,
    undo = s.undo and "its own undo" or "automatic undo of its effects", needs = needs, asks = asks_model(s) }
end

-- A dry-run of file with params (the code path of `relish plan`) into a
-- journal in a throw-away directory, its output discarded: the planned
-- actions per step index, and the exit code.
local function plan(file, params)
  local engine = require "relish.engine"
  local J = require "relish.journal"
  local sh = require "relish.sh"
  local mk = assert(io.popen("mktemp -d"))
  local dir = mk:read("l")
  mk:close()
  if not dir or dir == "" then invalid("relish doc -p: cannot make a temporary directory") end
  local state = "sqlite:" .. dir .. "/journal.db"
  local sink = assert(io.open("/dev/null", "w"))
  local stdout, default_out = io.stdout, io.output()
  io.stdout = sink
  io.output(sink)
  local ok, code = pcall(engine.run, { file = file, params = params, dry_run = true, output = "json", state = state })
  io.stdout = stdout
  io.output(default_out)
  sink:close()
  local by_step, failed = {}, nil
  local cleanup = function() os.execute("rm -rf " .. sh.quote(dir)) end
  if not ok then
    cleanup()
    error(code, 0)
  end
  local journal = J.open(state)
  local run = journal:list_runs({ limit = 1 })[1]
  if run then
    for _, a in ipairs(journal:actions(run.id)) do
      local list = by_step[a.step] or {}
      by_step[a.step] = list
      list[#list + 1] = { kind = a.kind, describe = a.describe, target = a.target }
    end
    if code ~= 0 then failed = run.error end
  end
  journal:close()
  cleanup()
  return { steps = by_step, code = code, error = failed }
end

function M.describe(file, params)
  local recipe, _, source = dsl.load(file)
  local m = { kind = recipe.kind == "runbook" and "runbook" or "recipe", name = recipe.name, file = file:gsub("^%./", ""), description = recipe.description,
    comment = leading_comment(source), on_failure = recipe.on_failure, timeout = duration_text(recipe.timeout),
    rollback_timeout = duration_text(recipe.rollback_timeout), params = {}, steps = {}, notify = {} }
  local names = {}
  for name in pairs(recipe.params) do names[#names + 1] = name end
  table.sort(names)
  for i, name in ipairs(names) do m.params[i] = param_model(name, recipe.params[name], param_source(source, name)) end
  local checked = params and dsl.check_params(recipe, params, file)
  if type(recipe.lock) == "string" then
    m.lock = code(recipe.lock)
  elseif recipe.lock then
    m.lock = function_text(recipe_source(source).lock)
    if checked then
      local ok, v = pcall(recipe.lock, checked)
      if ok and v ~= nil then m.lock = m.lock .. "; with these params: " .. code(tostring(v)) end
    end
  end
  if recipe.deploys then
    local src = deploys_source(source)
    local got = checked and recipe.deploys(checked)
    m.deploys = {}
    for _, k in ipairs { "service", "environment", "version" } do
      local t = src[k]
      if got and got[k] then
        m.deploys[#m.deploys + 1] = { k, code(got[k]) }
      elseif t then
        m.deploys[#m.deploys + 1] = { k, is_function_text(t) and function_text(t) or code(t) }
      end
    end
  end
  for _, h in ipairs { "on_start", "on_success", "on_failure", "on_rollback" } do
    if recipe.notify and recipe.notify[h] then m.notify[#m.notify + 1] = h end
  end
  for i, s in ipairs(recipe.steps) do m.steps[i] = step_model(s) end
  if recipe.meta then
    m.severity, m.service, m.owner, m.links = recipe.meta.severity, recipe.meta.service, recipe.meta.owner,
      recipe.meta.links
  end
  if params then
    local keys = {}
    for k in pairs(params) do keys[#keys + 1] = k end
    table.sort(keys)
    local given = {}
    for i, k in ipairs(keys) do
      local p = recipe.params[k]
      given[i] = k .. "=" .. ((p and p.secret) and "***" or tostring(params[k]))
    end
    m.plan = plan(file, params)
    m.plan.given = given
  end
  return m
end

-- ---- Markdown --------------------------------------------------------------

local RENDER = {}

local function params_section(put, m)
  put("## Params", "")
  if #m.params == 0 then
    put("None.", "")
  else
    put("| Name | Type | Required / default | Constraints | Description |", "| --- | --- | --- | --- | --- |")
    for _, p in ipairs(m.params) do
      put(string.format("| `%s` | %s | %s | %s | %s |", p.name, p.kind, cell(p.required),
        cell(#p.constraints > 0 and table.concat(p.constraints, "; ") or ""), cell(p.description or "")))
    end
    put("")
  end
end

local function run_section(put, m)
  put("## Run", "")
  put("- Lock: " .. (m.lock or "none"))
  if m.deploys then
    local parts = {}
    for i, d in ipairs(m.deploys) do parts[i] = d[1] .. ": " .. d[2] end
    put("- Deploys: " .. table.concat(parts, "; "))
  end
  put("- Timeout: " .. (m.timeout or "none"))
  put("- Rollback timeout: " .. (m.rollback_timeout or "none"))
  put("- On failure: " .. (m.on_failure == "stop" and "stop (left for `relish resume` or `relish rollback`)"
    or "roll back, newest change first"))
  put("- Notify: " .. (#m.notify > 0 and table.concat(m.notify, ", ") or "none"), "")
end

local function steps_section(put, m)
  put("## Steps", "")
  for i, s in ipairs(m.steps) do
    put(string.format("### %d. %s%s", i, s.check and "check: " or "", s.name), "")
    if s.description then put(s.description, "") end
    if s.check then
      put("- Check: only reads, and shows what it finds; it gates nothing")
    else
      if s.asks.choose then put("- Chooses: " .. s.asks.choose) end
      if s.asks.confirm then put("- Confirmation: " .. s.asks.confirm) end
      if s.asks.keys then put("- Answers: " .. s.asks.keys) end
      put("- Undo: " .. s.undo)
    end
    if s.timeout then put("- Timeout: " .. s.timeout) end
    if s.retries then put("- Retries: " .. s.retries) end
    if s.conditional then put("- Conditional: runs only when its `when` function says so") end
    if #s.needs > 0 then put("- Its undo needs: " .. table.concat(s.needs, ", ")) end
    if m.plan then
      local planned = m.plan.steps[i] or {}
      if #planned == 0 then
        put("- Planned actions: none")
      else
        put("- Planned actions:")
        for _, a in ipairs(planned) do put("  - `" .. a.kind .. "` " .. cell(a.describe or a.target or "")) end
      end
    end
    put("")
  end
  if m.plan then
    put("## Dry-run", "", "Planned with " .. (#m.plan.given > 0 and code(table.concat(m.plan.given, " ")) or
      "the defaults") .. " (`relish plan`).")
    if m.plan.code ~= 0 then
      put("", "The dry-run stopped (exit " .. m.plan.code .. ")" .. (m.plan.error and (": " .. cell(m.plan.error)) or ".")
        .. " The steps after it are not planned.")
    end
    put("")
  end
end

local function page()
  local o = {}
  return o, function(...)
    for _, s in ipairs { ... } do o[#o + 1] = s end
  end
end

function RENDER.recipe(m)
  local o, put = page()
  put("# Recipe `" .. m.name .. "`", "")
  if m.description then put(m.description, "") end
  if m.comment then put(m.comment, "") end
  put("Source: `" .. m.file .. "`. Run it with `relish run " .. m.file .. " -p KEY=VALUE...`;"
    .. " see what it would change with `relish plan`.", "")
  params_section(put, m)
  run_section(put, m)
  steps_section(put, m)
  return table.concat(o, "\n")
end

function RENDER.runbook(m)
  local o, put = page()
  put("# Runbook `" .. m.name .. "`", "")
  if m.description then put(m.description, "") end
  local facts = {}
  for _, k in ipairs { "severity", "service", "owner" } do
    if m[k] then facts[#facts + 1] = string.format("%s%s: %s", k:sub(1, 1):upper(), k:sub(2), m[k]) end
  end
  if #facts > 0 then put("- " .. table.concat(facts, "\n- "), "") end
  if m.links and #m.links > 0 then
    put("Links:", "")
    for _, l in ipairs(m.links) do
      -- a path is the repository's, which a page in a subdirectory cannot link to as written
      if l.url:match("^%a[%w+.-]*://") then
        put(string.format("- [%s](%s)", l.title or l.url, l.url))
      else
        put(string.format("- %s%s", l.title and (l.title .. ": ") or "", code(l.url)))
      end
    end
    put("")
  end
  if m.comment then put(m.comment, "") end
  put("Source: `" .. m.file .. "`. Run it with `relish runbook " .. m.file .. " -p KEY=VALUE...`: the checks "
    .. "show what they find, then each step shows what it will change and asks before it acts; "
    .. "`--dry-run` walks it changing nothing, `--yes` or `-a STEP=ANSWER` answer in advance.", "")
  params_section(put, m)
  run_section(put, m)
  steps_section(put, m)
  return table.concat(o, "\n")
end

function M.markdown(m) return RENDER[m.kind](m) end

-- ---- the command -------------------------------------------------------

-- FILE or DIR arguments -> the files ({path=, rel=}: rel is the path under
-- the directory given, where its page goes), and whether an index is due. A
-- directory's *.lua files come first, then its subdirectories' (recipes/runbooks/).
local function inputs(args)
  local files, many = {}, #args > 1
  local function walk(dir, rel, depth)
    local names, dirs = {}, {}
    for _, n in ipairs(fs.list(dir)) do
      local st = try(fs.stat, dir .. "/" .. n)
      if n:match("%.lua$") and st and st.type ~= "dir" then
        names[#names + 1] = n
      elseif st and st.type == "dir" and depth < 8 then
        dirs[#dirs + 1] = n
      end
    end
    table.sort(names)
    table.sort(dirs)
    for _, n in ipairs(names) do files[#files + 1] = { path = dir .. "/" .. n, rel = rel .. n } end
    for _, n in ipairs(dirs) do walk(dir .. "/" .. n, rel .. n .. "/", depth + 1) end
  end
  for _, a in ipairs(args) do
    local st = try(fs.stat, a)
    if st and st.type == "dir" then
      many = true
      walk((a:gsub("/$", "")), "", 1)
    else
      if not st then invalid("cannot open recipe " .. a) end
      files[#files + 1] = { path = a, rel = a:match("([^/]*)$") }
    end
  end
  return files, many
end

local function write_file(path, text)
  local f, err = io.open(path, "wb")
  if not f then invalid("cannot write " .. tostring(err)) end
  f:write(text)
  f:close()
end

function M.main(opts)
  local f = opts.flags
  local params = f.param and common.params(f.param) or nil
  local files, many = inputs(opts.args)
  local models = {}
  for i, file in ipairs(files) do models[i] = M.describe(file.path, params) end
  if not f.out then
    local pages = {}
    for i, m in ipairs(models) do pages[i] = M.markdown(m) end
    io.write(table.concat(pages, "\n---\n\n"))
    return 0
  end
  local sh = require "relish.sh"
  if not os.execute("mkdir -p " .. sh.quote(f.out)) then invalid("cannot create directory " .. f.out) end
  local index = { "# Recipes", "", "| Recipe | File | Description |", "| --- | --- | --- |" }
  local runbooks = { "", "## Runbooks", "", "| Runbook | File | Severity | Service | Description |",
    "| --- | --- | --- | --- | --- |" }
  local made = {}
  for i, m in ipairs(models) do
    local page = files[i].rel:gsub("%.lua$", "") .. ".md"
    local sub = page:match("^(.*)/[^/]*$")
    if sub and not made[sub] then
      if not os.execute("mkdir -p " .. sh.quote(f.out .. "/" .. sub)) then invalid("cannot create directory " .. sub) end
      made[sub] = true
    end
    write_file(f.out .. "/" .. page, M.markdown(m))
    if m.kind == "runbook" then
      runbooks[#runbooks + 1] = string.format("| [%s](%s) | `%s` | %s | %s | %s |", m.name, page, files[i].rel,
        cell(m.severity or ""), cell(m.service or ""), cell(m.description or ""))
    else
      index[#index + 1] = string.format("| [%s](%s) | `%s` | %s |", m.name, page, files[i].rel,
        cell(m.description or ""))
    end
  end
  if #runbooks > 5 then table.move(runbooks, 1, #runbooks, #index + 1, index) end
  if many then write_file(f.out .. "/index.md", table.concat(index, "\n") .. "\n") end
  return 0
end

return M
