-- relish.dsl: what a recipe file sees: recipe, step, param and secret in a
-- sandbox that acts only through the gate, and the checks that turn a wrong
-- recipe or wrong params into exit 2 with every problem listed.
local errors = require "relish._errors"
local gate = require "relish._gate"
local host = require "relish._host"
local invalid = errors.invalid
local secret = require "relish.secret"

local M = {}

local function where(level)
  local info = debug.getinfo(level + 1, "Sl")
  if info and info.currentline and info.currentline > 0 then
    return info.short_src .. ":" .. info.currentline .. ": "
  end
  return ""
end

local function definition_error(level, msg)
  invalid(where(level + 1) .. msg)
end

-- "did you mean" for a misspelt field
local function field_hint(k, fields)
  local names = {}
  for f in pairs(fields) do names[#names + 1] = f end
  table.sort(names)
  local near = type(k) == "string" and M.nearest(k, names)
  return near and string.format(" (did you mean '%s'?)", near) or ""
end

-- "10m", "30s", "1h30m", "250ms", 90 -> seconds
function M.duration(v, what)
  if v == nil then return nil end
  if type(v) == "number" then
    if v <= 0 then return nil, what .. " must be positive" end
    return v
  end
  if type(v) ~= "string" then return nil, what .. " must be a number of seconds or a string like '10m'" end
  local total, rest = 0, v
  local units = { ms = 0.001, s = 1, m = 60, h = 3600, d = 86400 }
  while rest ~= "" do
    local num, unit, after = rest:match("^(%d+%.?%d*)(%a+)(.*)$")
    if not num or not units[unit] then
      return nil, string.format("%s: cannot read duration %q (use e.g. 30s, 10m, 1h30m)", what, v)
    end
    total = total + tonumber(num) * units[unit]
    rest = after
  end
  if total <= 0 then return nil, what .. " must be positive" end
  return total
end

-- A point in time -> Unix seconds, or nil: a number is Unix seconds; text is
-- ISO 8601 / RFC 3339 with a zone (Z, +02:00, +0200), as `git log
-- --format=%cI` writes it.
function M.timestamp(v)
  if math.type(v) or type(v) == "number" then return v == v and v or nil end
  if type(v) ~= "string" then return nil end
  local date, clock, frac, zone = v:match("^(%d%d%d%d%-%d%d%-%d%d)[T ](%d%d:%d%d:%d%d)(%.?%d*)(.*)$")
  if not date then return nil end
  local offset = 0
  if zone ~= "Z" and zone ~= "z" then
    local sign, hh, mm = zone:match("^([+-])(%d%d):?(%d%d)$")
    if not sign then return nil end
    offset = (tonumber(hh) * 3600 + tonumber(mm) * 60) * (sign == "-" and -1 or 1)
  end
  local s = require("relish.journal").iso_seconds(date .. "T" .. clock .. "Z")
  if not s then return nil end
  return s + (frac ~= "" and frac ~= "." and tonumber("0" .. frac) or 0) - offset
end

-- ---- params --------------------------------------------------------------

local PARAM_FIELDS = { required = true, default = true, match = true, min = true, max = true,
  choices = true, description = true, secret = true, of = true, validate = true, range = true,
  allow_empty = true }

local semver -- relish.semver, loaded when a recipe declares a param.semver

local function make_param(kind)
  return function(spec)
    spec = spec or {}
    if type(spec) ~= "table" then definition_error(2, "param." .. kind .. " takes a table") end
    for k in pairs(spec) do
      if not PARAM_FIELDS[k] then
        definition_error(2, "param." .. kind .. ": unknown field '" .. tostring(k) .. "'" .. field_hint(k, PARAM_FIELDS))
      end
    end
    if kind == "enum" and (type(spec.choices) ~= "table" or #spec.choices == 0) then
      definition_error(2, "param.enum needs choices = { ... }")
    end
    if spec.validate ~= nil and type(spec.validate) ~= "function" then
      definition_error(2, "param." .. kind .. ": validate must be a function(value)")
    end
    local p = { kind = kind }
    for k, v in pairs(spec) do p[k] = v end
    if kind == "semver" then
      -- bounds and range are read once, here: a malformed one is the recipe's fault
      semver = semver or require "relish.semver"
      for _, f in ipairs { "min", "max" } do
        if spec[f] ~= nil then
          local ok, v = pcall(semver.parse, spec[f])
          if not ok then
            definition_error(2, "param.semver: " .. f .. ": " .. tostring(type(v) == "table" and v.message or v))
          end
          p[f] = v
        end
      end
      if spec.range ~= nil then
        local ok, r = pcall(semver.range, spec.range)
        if not ok then
          definition_error(2, "param.semver: range: " .. tostring(type(r) == "table" and r.message or r))
        end
        p.range = r
      end
    elseif spec.range ~= nil then
      definition_error(2, "param." .. kind .. ": range is for param.semver")
    end
    return setmetatable(p, { __name = "relish.Param" })
  end
end

local PARAM_KINDS = { "string", "number", "integer", "boolean", "enum", "list", "semver" }
M.param = setmetatable({}, { __index = function(_, k)
  local near = type(k) == "string" and M.nearest(k, PARAM_KINDS)
  definition_error(2, string.format("param.%s does not exist%s (types: %s)", tostring(k),
    near and string.format(" (did you mean param.%s?)", near) or "", table.concat(PARAM_KINDS, ", ")))
end })
for _, kind in ipairs(PARAM_KINDS) do
  rawset(M.param, kind, make_param(kind))
end

local TRUE = { ["true"] = true, yes = true, ["1"] = true, on = true }
local FALSE = { ["false"] = true, no = true, ["0"] = true, off = true }

local INT_RANGE = "-9223372036854775808 to 9223372036854775807"

-- A number param's value from text or a number: the number written, or nil
-- and the problem. Never a different number: an integer too large for 64
-- bits is refused (Lua's tonumber would wrap hex and round decimal), and so
-- is a value that is not finite (1e400).
local function read_number(raw, kind)
  local v
  if type(raw) == "number" then
    v = raw
  elseif type(raw) == "string" then
    local text = raw:match("^%s*(.-)%s*$")
    local digits = text:match("^[-+]?(%d+)$")
    local hsign, hex = text:match("^([-+]?)0[xX](%x+)$")
    v = tonumber(text)
    if digits and kind == "integer" and math.type(v) ~= "integer" then
      return nil, string.format("%s is out of range (integers: %s)", text, INT_RANGE)
    elseif hex and (#(hex:gsub("^0+", "")) > 16 or (v < 0 and hsign ~= "-") or (v > 0 and hsign == "-")) then
      return nil, string.format("%s is out of range (integers: %s)", text, INT_RANGE)
    end
  end
  if v == nil then return nil, string.format("%q is not a number", tostring(raw)) end
  if v ~= v or v == math.huge or v == -math.huge then
    return nil, string.format("%s is not a finite number", tostring(raw))
  end
  if kind == "integer" then
    local i = math.tointeger(v)
    if i == nil then
      if math.abs(v) >= 2 ^ 63 then
        return nil, string.format("%s is out of range (integers: %s)", tostring(raw), INT_RANGE)
      end
      return nil, string.format("%q is not an integer", tostring(raw))
    end
    v = i
  end
  return v
end

-- Converts one raw value (a string from -p, or a Lua value from a plan or a
-- test) to the param's type; returns value or nil, problem.
local function convert(p, name, raw)
  local k = p.kind
  if k == "string" or k == "enum" then
    if secret.is(raw) then return raw end
    if type(raw) ~= "string" and type(raw) ~= "number" then return nil, "must be a string" end
    raw = tostring(raw)
    if p.match and not raw:match(p.match) then
      return nil, string.format("%q does not match %s", raw, p.match)
    end
    if k == "enum" then
      for _, c in ipairs(p.choices) do if c == raw then return raw end end
      return nil, string.format("%q is not one of %s", raw, table.concat(p.choices, ", "))
    end
    if p.secret then return secret.value(raw, name) end
    return raw
  elseif k == "number" or k == "integer" then
    local v, err = read_number(raw, k)
    if v == nil then return nil, err end
    if p.min and v < p.min then return nil, string.format("%s is below the minimum %s", v, p.min) end
    if p.max and v > p.max then return nil, string.format("%s is above the maximum %s", v, p.max) end
    return v
  elseif k == "boolean" then
    if type(raw) == "boolean" then return raw end
    local s = tostring(raw):lower()
    if TRUE[s] then return true end
    if FALSE[s] then return false end
    return nil, string.format("%q is not a boolean (true/false)", tostring(raw))
  elseif k == "list" then
    local items = {}
    if type(raw) == "table" then
      for i, v in ipairs(raw) do items[i] = tostring(v) end
    else
      for item in tostring(raw):gmatch("[^,]+") do items[#items + 1] = item:match("^%s*(.-)%s*$") end
    end
    for i, it in ipairs(items) do
      -- a list is kept in the journal as text: its items must be UTF-8
      if utf8.len(it) == nil then return nil, string.format("item %d is not UTF-8 text", i) end
    end
    if p.min and #items < p.min then return nil, string.format("needs at least %d items", p.min) end
    if p.max and #items > p.max then return nil, string.format("takes at most %d items", p.max) end
    if p.match then
      for _, it in ipairs(items) do
        if not it:match(p.match) then return nil, string.format("item %q does not match %s", it, p.match) end
      end
    end
    return items
  elseif k == "semver" then
    -- the value stays the text given (a tag keeps its "v"); semver.parse(v)
    -- gives the version when a step needs one
    if type(raw) ~= "string" then return nil, "must be a string" end
    if p.match and not raw:match(p.match) then
      return nil, string.format("%q does not match %s", raw, p.match)
    end
    local ok, v = pcall(semver.parse, raw)
    if not ok then
      return nil, string.format("%q is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.4.2)", raw)
    end
    if p.min and v < p.min then return nil, string.format("%s is below the minimum %s", raw, tostring(p.min)) end
    if p.max and p.max < v then return nil, string.format("%s is above the maximum %s", raw, tostring(p.max)) end
    if p.range and not p.range:test(v) then
      return nil, string.format("%s is not in the range %s", raw, tostring(p.range))
    end
    return raw
  end
end

local VALIDATING = "effects are not allowed in a param's validate function: it only checks the value"
local gate_closed -- below, with the recipe's lock function

-- A param's own check: validate(value) returns true or nothing when the
-- value is fine, nil or false and a message when it is not, or raises (the
-- error's message is the problem). Returns nil or the problem.
local function validate(p, value)
  local ok, r, msg = gate_closed(VALIDATING, function(e) return e end, p.validate, value)
  if not ok then
    if type(r) == "table" and r.message ~= nil then return tostring(r.message) end
    -- error("text") carries the validate function's position: the param's name says where
    return (tostring(r):gsub("^[^\n]-:%d+: ", "", 1))
  end
  if r == false or (r == nil and msg ~= nil) then
    return msg ~= nil and tostring(msg) or string.format("%s was refused by its validate function",
      secret.is(value) and "***" or (type(value) == "string" and string.format("%q", value) or tostring(value)))
  end
  return nil
end

-- "did you mean": the host's one edit distance, shared with the CLI
M.nearest = require("relish._host").nearest

-- Checks raw params (name -> raw value) against the recipe; returns the
-- typed params or raises a usage error listing every problem.
function M.check_params(recipe, raw, file)
  local problems, out = {}, {}
  local names = {}
  for name in pairs(recipe.params) do names[#names + 1] = name end
  table.sort(names)
  for name, _ in pairs(raw) do
    if not recipe.params[name] then
      local hint = M.nearest(name, names)
      problems[#problems + 1] = string.format("unknown param '%s'%s", name,
        hint and string.format(" (did you mean '%s'?)", hint) or
        (#names > 0 and " (params: " .. table.concat(names, ", ") .. ")" or " (this recipe takes no params)"))
    end
  end
  for _, name in ipairs(names) do
    local p = recipe.params[name]
    local v = raw[name]
    if v == nil then
      if p.default ~= nil then
        -- a default is checked and converted like a given value (a secret
        -- default becomes a secret; a bad default is reported)
        local value, err = convert(p, name, p.default)
        if value ~= nil and p.validate then err = validate(p, value) end
        if value == nil or err then
          problems[#problems + 1] = string.format("param '%s': its default %s", name, secret.redact(err))
        else
          out[name] = value
        end
      elseif p.required then
        problems[#problems + 1] = string.format("param '%s' is required%s", name,
          p.description and " (" .. p.description .. ")" or "")
      end
    else
      local value, err = convert(p, name, v)
      if value ~= nil and p.required and not p.allow_empty and (v == "" or (p.kind == "list" and #value == 0)) then
        -- -p dir= is no directory: a required param needs a value
        value, err = nil, string.format("an empty value is not allowed for a required param%s",
          p.kind == "list" and " (give at least one item)" or " (allow_empty = true accepts \"\")")
      end
      if value ~= nil and p.validate then err = validate(p, value) end
      if value == nil or err then
        problems[#problems + 1] = string.format("param '%s': %s", name, secret.redact(err))
      else
        out[name] = value
      end
    end
  end
  if #problems > 0 then
    table.sort(problems)
    invalid(string.format("%s: invalid params:\n  %s", file or recipe.name, table.concat(problems, "\n  ")))
  end
  return out
end

-- ---- steps and recipes -----------------------------------------------------

local STEP_FIELDS = { run = true, undo = true, timeout = true, retries = true, when = true, description = true,
  needs = true, confirm = true, choose = true }
local CHECK_FIELDS = { run = true, timeout = true, when = true, description = true }
local CHOOSE_FIELDS = { prompt = true, default = true }

-- choose = {"a", "b", prompt=, default=} or a function(ctx) returning one:
-- the options are strings or {value=, text=}; checked here when written out,
-- and again (M.options) when a function gives them at run time.
function M.options(name, c, level)
  local function bad(msg) error(string.format("step %q: choose: %s", name, msg), level) end
  if type(c) ~= "table" then bad("expected a list of options, got " .. type(c)) end
  for k in pairs(c) do
    if math.type(k) ~= "integer" and not CHOOSE_FIELDS[k] then
      bad(string.format("unknown field '%s'%s", tostring(k), field_hint(k, CHOOSE_FIELDS)))
    end
  end
  if #c == 0 then bad("needs at least one option") end
  local out, seen = {}, {}
  for i, o in ipairs(c) do
    local value, text
    if type(o) == "string" or math.type(o) == "integer" then
      value = tostring(o)
    elseif type(o) == "table" and (type(o.value) == "string" or math.type(o.value) == "integer") then
      value, text = tostring(o.value), o.text ~= nil and tostring(o.text) or nil
    else
      bad(string.format("option %d must be a string or {value=, text=}", i))
    end
    if value == "" then bad(string.format("option %d is empty", i)) end
    local low = value:lower()
    if low == "skip" or low == "quit" or low == "s" or low == "q" then
      bad(string.format("option %d: '%s' is an answer of its own (skip, quit)", i, value))
    end
    if seen[value] then bad(string.format("option '%s' is listed twice", value)) end
    seen[value] = true
    out[i] = { value = value, text = text }
  end
  local default = c.default
  if default ~= nil then
    if math.type(default) == "integer" and out[default] then
      default = out[default].value
    elseif not seen[tostring(default)] then
      bad(string.format("default %s is not one of the options", tostring(default)))
    end
    default = tostring(default)
  end
  if c.prompt ~= nil and type(c.prompt) ~= "string" then bad("prompt must be a string") end
  return { options = out, prompt = c.prompt, default = default }
end

-- needs = { secrets = {NAME | {env=} | {file=}, ...}, params = {name, ...} }:
-- what the step's undo needs from outside the journal, checked before a
-- run starts and before a rollback undoes anything.
local function check_needs(name, needs)
  if type(needs) ~= "table" then definition_error(3, string.format("step %q: needs must be a table", name)) end
  for k, v in pairs(needs) do
    if k ~= "secrets" and k ~= "params" then
      definition_error(3, string.format("step %q: needs.%s is not known (secrets, params)", name, tostring(k)))
    end
    if type(v) ~= "table" then definition_error(3, string.format("step %q: needs.%s must be a list", name, k)) end
    for i, e in ipairs(v) do
      local fine = type(e) == "string" and e ~= ""
      if k == "secrets" and type(e) == "table" then
        fine = (type(e.env) == "string") ~= (type(e.file) == "string")
      end
      if not fine then
        definition_error(3, string.format("step %q: needs.%s[%d] must be %s", name, k, i,
          k == "secrets" and "an environment variable's name, {env = NAME} or {file = PATH}" or "a param's name"))
      end
    end
  end
end
local Step = { __name = "relish.Step" }

function M.step(name)
  if type(name) ~= "string" or name == "" then definition_error(2, "step needs a name: step \"name\" { ... }") end
  local line = debug.getinfo(2, "l").currentline
  return function(spec)
    if type(spec) ~= "table" then definition_error(2, "step \"" .. name .. "\" takes a table") end
    for k in pairs(spec) do
      if not STEP_FIELDS[k] then
        definition_error(2, string.format("step %q: unknown field '%s'%s", name, tostring(k), field_hint(k, STEP_FIELDS)))
      end
    end
    if type(spec.run) ~= "function" then definition_error(2, string.format("step %q: run = function(ctx) ... end is required", name)) end
    for _, f in ipairs { "undo", "when" } do
      if spec[f] ~= nil and type(spec[f]) ~= "function" then
        definition_error(2, string.format("step %q: %s must be a function", name, f))
      end
    end
    if spec.needs ~= nil then
      check_needs(name, spec.needs)
      if spec.undo == nil then
        definition_error(2, string.format("step %q: needs names what the step's undo needs, and it has no undo", name))
      end
    end
    local timeout, terr = M.duration(spec.timeout, "step " .. name .. ": timeout")
    if spec.timeout ~= nil and not timeout then definition_error(2, terr) end
    local retries = spec.retries or 0
    if math.type(retries) ~= "integer" or retries < 0 then
      definition_error(2, string.format("step %q: retries must be a non-negative integer", name))
    end
    local confirm = spec.confirm
    if confirm ~= nil and (type(confirm) ~= "function" and (type(confirm) ~= "string" or confirm == "")) then
      definition_error(2, string.format("step %q: confirm must be the question (a string) or a function(ctx) " ..
        "returning it", name))
    end
    local choose = spec.choose
    if choose ~= nil and type(choose) ~= "function" then
      local ok, c = pcall(M.options, name, choose, 0)
      if not ok then definition_error(2, c) end
      choose = c
    end
    return setmetatable({ name = name, run = spec.run, undo = spec.undo, when = spec.when,
      timeout = timeout, retries = retries, description = spec.description, needs = spec.needs, line = line,
      confirm = confirm, choose = choose }, Step)
  end
end

-- check "name" {run = function(ctx) return finding end}: shows what it finds
-- (a value, a table, a verdict) and changes nothing; it gates nothing either:
-- a check that fails says so and the runbook goes on.
function M.check(name)
  if type(name) ~= "string" or name == "" then definition_error(2, "check needs a name: check \"name\" { ... }") end
  local line = debug.getinfo(2, "l").currentline
  return function(spec)
    if type(spec) ~= "table" then definition_error(2, "check \"" .. name .. "\" takes a table") end
    for k in pairs(spec) do
      if not CHECK_FIELDS[k] then
        local extra = STEP_FIELDS[k] and " (a check only reads: confirm, choose, undo and retries are for steps)" or ""
        definition_error(2, string.format("check %q: unknown field '%s'%s%s", name, tostring(k),
          field_hint(k, CHECK_FIELDS), extra))
      end
    end
    if type(spec.run) ~= "function" then
      definition_error(2, string.format("check %q: run = function(ctx) ... end is required", name))
    end
    if spec.when ~= nil and type(spec.when) ~= "function" then
      definition_error(2, string.format("check %q: when must be a function", name))
    end
    local timeout, terr = M.duration(spec.timeout, "check " .. name .. ": timeout")
    if spec.timeout ~= nil and not timeout then definition_error(2, terr) end
    return setmetatable({ name = name, run = spec.run, when = spec.when, timeout = timeout, retries = 0,
      description = spec.description, line = line, check = true }, Step)
  end
end

-- Runs fn(...) under xpcall with handler and the gate closed (an effect
-- raises {kind="effect", message="KIND TARGET: why"}), unless a run or a
-- capture already governs effects (a recipe loading another); reopens only
-- what it closed.
function gate_closed(why, handler, fn, ...)
  local closed_here = gate.state().mode == "none" and not gate.close(why)
  local r = table.pack(xpcall(fn, handler, ...))
  if closed_here then gate.close(nil) end
  return table.unpack(r, 1, r.n)
end

local LOADING = "effects are not allowed while the recipe file loads: move this into a step"
local LOCKING = "effects are not allowed in a recipe's lock function: it only names the lock"

local RECIPE_FIELDS = { description = true, params = true, lock = true, on_failure = true,
  timeout = true, rollback_timeout = true, notify = true, deploys = true }

local DEPLOYING = "effects are not allowed in a recipe's deploys functions: they only name what is deployed"
local DEPLOY_FIELDS = { service = true, environment = true, version = true }

local RUNBOOK_FIELDS = { severity = true, service = true, owner = true, links = true }
for k in pairs(RECIPE_FIELDS) do RUNBOOK_FIELDS[k] = true end

-- A runbook's links: a list of URLs or {title=, url=}.
local function check_links(name, links, definition_error)
  if type(links) ~= "table" then
    definition_error(2, string.format("runbook %q: links must be a list of URLs or {title=, url=}", name))
  end
  local out = {}
  for i, l in ipairs(links) do
    if type(l) == "string" and l ~= "" then
      out[i] = { url = l }
    elseif type(l) == "table" and type(l.url) == "string" and l.url ~= "" and (l.title == nil or type(l.title) == "string") then
      out[i] = { url = l.url, title = l.title }
    else
      definition_error(2, string.format("runbook %q: links[%d] must be a URL or {title=, url=}", name, i))
    end
  end
  return out
end

local function define(kind, name)
  local FIELDS = kind == "runbook" and RUNBOOK_FIELDS or RECIPE_FIELDS
  if type(name) ~= "string" or name == "" then
    definition_error(3, string.format("%s needs a name: %s \"name\" { ... }", kind, kind))
  end
  -- `return recipe "x" {...}` is a tail call: the file's line is gone by the
  -- time the table arrives, so remember it now
  local info = debug.getinfo(3, "Sl") -- define, recipe or runbook, the file
  local at = info and info.currentline > 0 and (info.short_src .. ":" .. info.currentline .. ": ") or ""
  local function definition_error(_, msg)
    invalid(at .. msg)
  end
  return function(spec)
    if type(spec) ~= "table" then definition_error(2, kind .. " \"" .. name .. "\" takes a table") end
    local r = { name = name, steps = {}, params = {}, on_failure = "rollback", kind = kind }
    local seen = {}
    for k, v in pairs(spec) do
      if math.type(k) == "integer" then
        if getmetatable(v) ~= Step then
          definition_error(2, string.format("%s %q: entry %d is not a step or a check", kind, name, k))
        end
      elseif not FIELDS[k] then
        local extra = RUNBOOK_FIELDS[k] and " (severity, service, owner and links are a runbook's: " ..
          "runbook \"" .. name .. "\" { ... })" or ""
        definition_error(2, string.format("%s %q: unknown field '%s'%s%s", kind, name, tostring(k),
          field_hint(k, FIELDS), extra))
      end
    end
    if kind == "runbook" then
      for _, f in ipairs { "severity", "service", "owner" } do
        if spec[f] ~= nil and (type(spec[f]) ~= "string" or spec[f] == "") then
          definition_error(2, string.format("runbook %q: %s must be a non-empty string", name, f))
        end
      end
      r.meta = { kind = "runbook", severity = spec.severity, service = spec.service, owner = spec.owner,
        links = spec.links ~= nil and check_links(name, spec.links, definition_error) or {},
        description = spec.description }
    end
    for i, s in ipairs(spec) do
      if seen[s.name] then definition_error(2, string.format(kind .. " %q: two steps named %q", name, s.name)) end
      seen[s.name] = true
      r.steps[i] = s
    end
    if #r.steps == 0 then definition_error(2, string.format(kind .. " %q has no steps", name)) end
    for pname, p in pairs(spec.params or {}) do
      if type(pname) ~= "string" or getmetatable(p) == nil or getmetatable(p).__name ~= "relish.Param" then
        definition_error(2, string.format(kind .. " %q: params.%s must be a param.<type>{...}", name, tostring(pname)))
      end
      r.params[pname] = p
    end
    for _, s in ipairs(r.steps) do
      for _, pname in ipairs(s.needs and s.needs.params or {}) do
        if not r.params[pname] then
          definition_error(2, string.format(kind .. " %q: step %q needs param '%s', which the recipe does not have",
            name, s.name, pname))
        end
      end
    end
    r.description = spec.description
    if spec.on_failure ~= nil then
      if spec.on_failure ~= "rollback" and spec.on_failure ~= "stop" then
        definition_error(2, string.format(kind .. " %q: on_failure must be \"rollback\" or \"stop\"", name))
      end
      r.on_failure = spec.on_failure
    end
    if spec.lock ~= nil and type(spec.lock) ~= "string" and type(spec.lock) ~= "function" then
      definition_error(2, string.format(kind .. " %q: lock must be a string or a function of params", name))
    end
    r.lock = spec.lock
    if type(spec.lock) == "function" then
      -- it runs before the run starts, in a dry-run too: it may only read
      local lock = spec.lock
      r.lock = function(params)
        local ok, v = gate_closed(LOCKING, function(e) return e end, lock, params)
        if not ok then error(v, 0) end
        return v
      end
    end
    local err
    r.timeout, err = M.duration(spec.timeout, "recipe timeout")
    if spec.timeout ~= nil and not r.timeout then definition_error(2, err) end
    r.rollback_timeout, err = M.duration(spec.rollback_timeout, "recipe rollback_timeout")
    if spec.rollback_timeout ~= nil and not r.rollback_timeout then definition_error(2, err) end
    if spec.notify ~= nil then
      if type(spec.notify) ~= "table" then
        definition_error(2, string.format(kind .. " %q: notify must be a table of handlers", name))
      end
      local HOOKS = { on_start = true, on_success = true, on_failure = true, on_rollback = true }
      for k, v in pairs(spec.notify) do
        if not HOOKS[k] then
          definition_error(2, string.format(kind .. " %q: notify.%s is not a handler (on_start, on_success, " ..
            "on_failure, on_rollback)", name, tostring(k)))
        end
        if type(v) ~= "function" then
          definition_error(2, string.format(kind .. " %q: notify.%s must be a function(ctx, outcome)", name, k))
        end
      end
    end
    r.notify = spec.notify
    if spec.deploys ~= nil then
      if type(spec.deploys) ~= "table" then
        definition_error(2, string.format(kind .. " %q: deploys must be a table {service=, environment=, version=}", name))
      end
      for k, v in pairs(spec.deploys) do
        if not DEPLOY_FIELDS[k] then
          definition_error(2, string.format(kind .. " %q: deploys.%s is not known%s", name, tostring(k),
            field_hint(k, DEPLOY_FIELDS)))
        end
        if type(v) ~= "string" and type(v) ~= "function" then
          definition_error(2, string.format(kind .. " %q: deploys.%s must be a string or a function of params", name, k))
        end
      end
      if spec.deploys.service == nil then
        definition_error(2, string.format(kind .. " %q: deploys needs a service", name))
      end
      local d = spec.deploys
      -- like lock: runs before the run starts, in a dry-run too; only reads
      r.deploys = function(params)
        local out = {}
        for k in pairs(DEPLOY_FIELDS) do
          local v = d[k]
          if type(v) == "function" then
            local ok, got = gate_closed(DEPLOYING, function(e) return e end, v, params)
            if not ok then error(got, 0) end
            v = got
          end
          if v ~= nil and (type(v) ~= "string" or v == "") then
            invalid(string.format(kind .. " %q: deploys.%s must give a non-empty string, got %s", name, k,
              type(v) == "string" and "an empty string" or type(v)))
          end
          out[k] = v
        end
        if not out.service then invalid(string.format(kind .. " %q: deploys.service gave no service", name)) end
        return out
      end
    end
    return setmetatable(r, { __name = "relish.Recipe" })
  end
end

function M.recipe(name)
  local def = define("recipe", name) -- not a tail call: define looks at the caller's line
  return def
end

-- runbook "name" {...}: a recipe for a person at a terminal, with the
-- incident's facts (severity, service, owner, links) kept with each run
function M.runbook(name)
  local def = define("runbook", name)
  return def
end

-- secret(name) in a recipe file: the environment variable NAME, as a secret.
function M.secret(spec)
  -- a secret that is not there raises not_found (try(secret, NAME) probes)
  if type(spec) == "string" then
    return secret.env(spec)
  elseif type(spec) == "table" and spec.env then
    return secret.env(spec.env)
  elseif type(spec) == "table" and spec.file then
    return secret.file(spec.file)
  end
  error("secret(name), secret{env=NAME} or secret{file=PATH}", 2)
end

-- ---- the recipe sandbox ----------------------------------------------------
-- A recipe changes the world only through the gate (dry-run, journal, undo).
-- Its os and io are fresh tables without the functions that would act
-- behind the gate's back, each replaced by one naming the gated way; its
-- _G, package, require, load, loadfile and dofile see the sandbox, never the
-- real globals; debug keeps traceback and a getinfo that hands out no
-- functions. The stdlib modules it requires keep the full library: their
-- effects are gated. Inside a provider's apply or undo (the recipe's own
-- effect{}, or a kind it registers: journaled first, planned in a dry-run)
-- the refused io and os functions act as usual.

local real = { open = io.open, output = io.output, setlocale = os.setlocale, require = require,
  load = load, loadfile = loadfile, traceback = debug.traceback, getinfo = debug.getinfo }

local GATED = "which dry-runs and undoes"
local REFUSED = {
  ["os.remove"] = "use relish.fs.remove, " .. GATED,
  ["os.rename"] = "use relish.fs.copy then relish.fs.remove (or relish.fs.symlink to switch a link), " ..
    "which dry-run and undo",
  ["os.execute"] = "use relish.sh.run, which dry-runs and journals (readonly = true for a command that " ..
    "changes nothing)",
  ["io.popen"] = "use relish.sh.run, which dry-runs and journals (readonly = true for a command that " ..
    "changes nothing)",
  ["os.tmpname"] = "it creates a file: use io.tmpfile for scratch space, or relish.fs.write, " .. GATED,
  ["io.open"] = "use relish.fs.write, " .. GATED,
  ["io.output"] = "use relish.fs.write, " .. GATED,
}
local KEEP_OS = { "clock", "date", "difftime", "getenv", "time" }
local KEEP_IO = { "close", "input", "lines", "read", "write", "type", "tmpfile", "stdin", "stdout", "stderr" }
local KEEP_G = { "assert", "collectgarbage", "error", "getmetatable", "ipairs", "next", "pairs", "pcall", "print",
  "rawequal", "rawget", "rawlen", "rawset", "select", "setmetatable", "tonumber", "tostring", "type", "warn",
  "xpcall", "_VERSION", "string", "table", "math", "utf8", "coroutine" }

-- relish.* modules a recipe may not require: the host's internals (which act
-- without the gate or open it) and the commands and engine that drive runs.
local function internal(name)
  return (name:find("^relish%._") and name ~= "relish._errors") or name:find("^relish%.cli%.")
    or name == "relish.engine" or name == "relish.journal" or name == "relish.lock"
end

-- The chunk sources loaded into a sandbox (to place an error in the user's
-- file), and the user modules loaded into one: once per process, as require
-- does, since a module may register effect kinds.
local sources, sandboxed = {}, {}

-- Modules whose undo acts at once, with no journal and no dry-run: only a
-- rollback runs undos, so a recipe sees these without theirs.
local UNDO_DOORS = { ["relish.fs"] = true, ["relish.sh"] = true, ["relish.git"] = true, ["relish.effect"] = true }

-- relish.fs as a recipe sees it: a copy whose undo is refused
local function without_undo(name, m)
  local view = {}
  for k, v in pairs(m) do view[k] = v end
  view.undo = function()
    error(name .. ".undo is not available in recipes: undos run in a rollback (relish rollback), " ..
      "from the journal", 2)
  end
  return view
end

-- ---- recipe libraries ------------------------------------------------------
-- require "lib.NAME.module" loads module.lua (or module/init.lua; dots are
-- directories) from the tree relish.lock pins for NAME, in the cache
-- (relish.libs), never from package.path. The lock is the one of the recipe
-- file's repository (libs.lock_for from the recipe's directory). Before the
-- first load of a tree in a process its files are hashed and compared with
-- the lock's sha256: a changed, added or removed file is refused, named.

local user_where -- below: "file:line: " of the innermost recipe frame
local libs -- relish.libs, loaded at the first lib.* require
local fs -- relish.fs, likewise
local verified = {} -- tree sha256 -> true: checked in this process
local lib_of = {} -- chunk source of a library module -> {name=, requires={NAME=true}}
local loading = {} -- the chunk sources of the library modules loading now, innermost last
-- what require gives every sandbox as it is (never a library's module)
local BUILTIN = { string = true, table = true, math = true, utf8 = true, coroutine = true, os = true, io = true,
  debug = true, package = true, _G = true }

local function listing_map(text)
  local map = {}
  for mode, sha, path in text:gmatch("(%d+) (%x+) ([^\n]+)\n") do map[path] = mode .. " " .. sha end
  return map
end

-- "v1.2.3 4f2a0c9e1b7d" (or "branch main ..."): which code a lock entry pins
local function lib_label(e)
  return string.format("%s %s", type(e.version) == "string" and e.version or tostring(e.constraint),
    tostring(e.commit):sub(1, 12))
end

-- The listing (as libs.tree_listing) of the commit a lock entry pins, read
-- from the library's mirror in the cache, when there is one and it is the
-- tree the lock names; else nil.
local function locked_listing(e, root)
  local ok, text = pcall(function()
    local git = require "relish.git"
    for _, src in ipairs { e.source, libs.resolve_source(e.source, root) } do
      local dir = libs.mirror_dir(src)
      if host.filetype(dir, true) == "dir" then
        local repo <close> = git.open(dir)
        local files = {}
        for _, f in ipairs(repo:tree(e.commit)) do
          if f.type == "blob" then files[#files + 1] = f end
        end
        table.sort(files, function(a, b) return a.path < b.path end)
        local lines = {}
        for i, f in ipairs(files) do lines[i] = f.mode .. " " .. fs.sha256(repo:blob(f.id)) .. " " .. f.path .. "\n" end
        local listing = table.concat(lines)
        if fs.sha256(listing) == e.sha256 then return listing end
      end
    end
  end)
  return ok and text or nil
end

-- Checks a library's tree against its lock entry once per process; raises a
-- usage error (exit 2), naming each file changed, added or removed when the
-- library's mirror holds the locked commit to compare with.
local function verify_tree(name, e, tree, root)
  if verified[e.sha256] then return end
  local text = libs.tree_listing(tree)
  if fs.sha256(text) == e.sha256 then
    verified[e.sha256] = true
    return
  end
  local what = {}
  local ref = locked_listing(e, root)
  if ref then
    local was, map = listing_map(ref), listing_map(text)
    local paths = {}
    for p in pairs(map) do if was[p] ~= map[p] then paths[#paths + 1] = p end end
    for p in pairs(was) do if map[p] == nil then paths[#paths + 1] = p end end
    table.sort(paths)
    for _, p in ipairs(paths) do
      what[#what + 1] = string.format("%s/%s %s", tree, p,
        was[p] == nil and "was added" or map[p] == nil and "was removed" or "was changed")
    end
  end
  invalid(string.format("%slibrary '%s' (%s): its installed tree does not match %s/relish.lock (sha256 %s, " ..
    "the lock has %s): %s; nothing ran: relish install in %s checks it out again",
    user_where(), name, lib_label(e), root, fs.sha256(text):sub(1, 12), e.sha256:sub(1, 12),
    #what > 0 and table.concat(what, ", ") or "a file in it was changed, added or removed (no mirror of its " ..
    "commit in the cache to compare with)", root))
end

-- The library module a lib.NAME.x require names: its file, after the
-- library's lock entry and tree are checked; records the library's use
-- (S.use) the first time a sandbox loads from it.
local function lib_file(name, S, caller)
  local lname, rest = name:match("^lib%.([%a_][%w_]*)(.*)$")
  if not lname or not (rest == "" or rest:find("^%.[%w_%-]+[%w_%-%.]*$")) or rest:find("%.%.") or rest:find("%.$") then
    error(string.format("require \"%s\": a library module is lib.NAME.module (NAME a library of relish.lock, " ..
      "module a path with dots for directories)", name), 3)
  end
  libs = libs or require "relish.libs"
  fs = fs or require "relish.fs"
  if S.lock == nil then
    local lock, root = libs.lock_for(S.dir)
    S.lock, S.root = lock or false, root
  end
  if not S.lock then
    invalid(string.format("%srequire \"%s\": there is no relish.deps.lua in %s or a directory above it: declare " ..
      "library '%s' there and run relish install", user_where(), name, S.dir, lname))
  end
  local e = type(S.lock.libraries) == "table" and S.lock.libraries[lname]
  if type(e) ~= "table" or type(e.sha256) ~= "string" or not e.sha256:find("^%x+$") then
    local names = {}
    for k in pairs(type(S.lock.libraries) == "table" and S.lock.libraries or {}) do names[#names + 1] = k end
    table.sort(names)
    local near = M.nearest(lname, names)
    invalid(string.format("%srequire \"%s\": library '%s' is not in %s/relish.lock%s (libraries: %s): add it " ..
      "to relish.deps.lua and run relish install", user_where(), name, lname, S.root,
      near and string.format(" (did you mean '%s'?)", near) or "", #names > 0 and table.concat(names, ", ") or "none"))
  end
  -- a library's module requires its own modules and its own dependencies
  local by = lib_of[caller]
  if by and by.name ~= lname and not by.requires[lname] then
    invalid(string.format("%srequire \"%s\": library '%s' does not depend on '%s' (relish.lock: it requires %s): " ..
      "add '%s' to its relish.deps.lua", user_where(), name, by.name, lname,
      next(by.requires) and table.concat(by.list, ", ") or "nothing", lname))
  end
  -- a recipe requires the libraries of its manifest, not its libraries' own
  if not by then
    local root_dep = false
    for _, r in ipairs(type(e.required_by) == "table" and e.required_by or {}) do root_dep = root_dep or r == "(root)" end
    if not root_dep then
      invalid(string.format("%srequire \"%s\": library '%s' is in %s/relish.lock only as a dependency of %s: " ..
        "add it to relish.deps.lua (and run relish install) to use it", user_where(), name, lname, S.root,
        table.concat(type(e.required_by) == "table" and e.required_by or {}, ", ")))
    end
  end
  local tree = libs.tree_dir(e.sha256)
  if host.filetype(tree, true) ~= "dir" then
    invalid(string.format("%srequire \"%s\": library '%s' (%s) is not installed (no %s): run relish install " ..
      "in %s", user_where(), name, lname, lib_label(e), tree, S.root))
  end
  verify_tree(lname, e, tree, S.root)
  S.use(lname, e)
  local rel = rest == "" and "init" or rest:sub(2):gsub("%.", "/")
  for _, p in ipairs { tree .. "/" .. rel .. ".lua", tree .. "/" .. rel .. "/init.lua" } do
    if host.filetype(p, true) == "file" then
      -- a symlink in the tree may not lead out of it
      local real_p, real_t = host.realpath(p), host.realpath(tree)
      if real_p:sub(1, #real_t + 1) ~= real_t .. "/" then
        invalid(string.format("%srequire \"%s\": %s leads out of the library's tree", user_where(), name, p))
      end
      if not lib_of["@" .. p] then
        local req, list = {}, {}
        for _, r in ipairs(type(e.requires) == "table" and e.requires or {}) do
          if type(r) == "string" then req[r], list[#list + 1] = true, r end
        end
        lib_of["@" .. p] = { name = lname, requires = req, list = list }
      end
      return p, e.sha256
    end
  end
  error(string.format("module '%s' not found: library '%s' (%s) has no %s.lua or %s/init.lua", name, lname,
    tree, rel, rel), 3)
end

-- A new sandbox: the table of the names its code reads. S: the recipe's
-- directory (S.dir) and the libraries it uses (S.use).
local function sandbox(S)
  local base, loaded = {}, {}
  for _, k in ipairs(KEEP_G) do base[k] = _G[k] end

  local function refused(name, what)
    error(string.format("%s%s is not available in recipes: %s", name, what or "", REFUSED[name]), 3)
  end
  -- a refused function: raises at the caller's line, except inside the gate
  local function guard(name, fn)
    return function(...)
      if not gate.acting() then refused(name) end
      return fn(...)
    end
  end

  local sos = {}
  for _, k in ipairs(KEEP_OS) do sos[k] = os[k] end
  for _, k in ipairs { "remove", "rename", "execute", "tmpname" } do sos[k] = guard("os." .. k, os[k]) end
  function sos.exit()
    error("os.exit is not available in recipes: raise an error, error(\"why\"), to fail the step and roll back", 2)
  end
  function sos.setlocale(locale, category)
    if locale ~= nil then
      error("os.setlocale is not available in recipes: os.setlocale() reads the locale, but changing it " ..
        "changes how relish reads and writes numbers", 2)
    end
    return real.setlocale(nil, category)
  end

  local sio = {}
  for _, k in ipairs(KEEP_IO) do sio[k] = io[k] end
  sio.popen = guard("io.popen", io.popen)
  function sio.open(path, mode)
    if type(path) ~= "string" and type(path) ~= "number" then
      error("bad argument #1 to 'open' (string expected, got " .. type(path) .. ")", 2)
    end
    if mode ~= nil and (type(mode) ~= "string" or not mode:find("^[rwa]%+?b*$")) then
      error("bad argument #2 to 'open' (invalid mode)", 2)
    end
    if mode and mode:find("[wa+]") and not gate.acting() then refused("io.open", " for writing") end
    return real.open(path, mode)
  end
  function sio.output(file)
    if type(file) == "string" or type(file) == "number" then
      if not gate.acting() then refused("io.output", " to a file") end
    elseif file ~= nil and io.type(file) == nil then
      error("bad argument #1 to 'output' (FILE* expected, got " .. type(file) .. ")", 2)
    end
    return real.output(file)
  end

  local function getinfo(...)
    local n, a1, a2, a3 = select("#", ...), ...
    local thread = type(a1) == "thread"
    local what = thread and a3 or a2
    if type(what) == "string" and what:find("f", 1, true) then
      error("debug.getinfo: option 'f' is not available in recipes (it hands out the functions of relish)", 2)
    end
    local at = thread and a2 or a1
    if math.type(at) == "integer" then at = at + 1 end -- this function is a level too
    if thread then return real.getinfo(a1, at, what) end
    if n < 2 then return real.getinfo(at) end
    return real.getinfo(at, what)
  end
  local sdebug = setmetatable({ traceback = real.traceback, getinfo = getinfo }, { __index = function(_, k)
    error(string.format("debug.%s is not available in recipes: it reaches past the sandbox " ..
      "(debug.traceback and debug.getinfo are)", tostring(k)), 2)
  end })

  local spackage = { loaded = loaded, path = package.path, config = package.config,
    searchpath = package.searchpath }

  local function env() return host.strict_env(base) end

  -- load, loadfile, dofile: text only (the host refuses bytecode), and an
  -- absent env means this sandbox, as it means the globals elsewhere
  function base.load(...)
    local n, chunk, name, mode, e = select("#", ...), ...
    if mode ~= nil and (type(mode) ~= "string" or not mode:find("t", 1, true)) then
      error("bytecode is refused: relish loads Lua source only", 2)
    end
    return real.load(chunk, name, "t", n >= 4 and e or env())
  end
  function base.loadfile(...)
    local n, path, _, e = select("#", ...), ...
    return real.loadfile(path, "t", n >= 3 and e or env())
  end
  function base.dofile(path)
    local fn, err = real.loadfile(path, "t", env())
    if not fn then error(err, 0) end
    return fn()
  end

  -- require: relish's own modules as they are (only the embedded stdlib and
  -- native modules, never a file on package.path borrowing the name); any
  -- other module is Lua source on package.path, loaded into a sandbox once
  -- per process
  function base.require(name)
    if type(name) ~= "string" then
      error("bad argument #1 to 'require' (string expected, got " .. type(name) .. ")", 2)
    end
    -- who asks: the calling function's file, or (a tail call: return
    -- require "...") the library module being loaded
    local caller = debug.getinfo(2, "S").source
    if not sources[caller] then caller = loading[#loading] end
    -- in a library, a plain name is the library's own module (a sibling), as
    -- in its own tests, never one of the recipe's
    local by = lib_of[caller]
    if by and not BUILTIN[name] and not name:find("^relish%.") and not name:find("^lib%.") then
      name = "lib." .. by.name .. "." .. name
    end
    local m = loaded[name]
    if m ~= nil then return m end
    if name:find("^relish%.") then
      if internal(name) then error(name .. " is internal to relish and not available in recipes", 2) end
      local path, cpath = package.path, package.cpath
      package.path, package.cpath = "", ""
      local ok, v = pcall(real.require, name)
      package.path, package.cpath = path, cpath
      if not ok then error(v, 2) end
      if UNDO_DOORS[name] and type(v) == "table" and v.undo ~= nil then v = without_undo(name, v) end
      loaded[name] = v
      return v
    end
    if name:find("^lib%.") then
      local path, sha = lib_file(name, S, caller)
      local key = sha .. ":" .. name -- one library name, other trees: other modules
      if sandboxed[key] == nil then
        local fn, lerr = real.loadfile(path, "t", env())
        if not fn then error(string.format("error loading module '%s' from file '%s':\n\t%s", name, path, lerr), 2) end
        sources["@" .. path] = true
        loading[#loading + 1] = "@" .. path
        local ok, v = pcall(fn, name, path)
        loading[#loading] = nil
        if not ok then error(v, 0) end
        m = v
        if m == nil then m = loaded[name] == nil and true or loaded[name] end
        sandboxed[key] = m
        if package.loaded[name] == nil then package.loaded[name] = m end
      end
      loaded[name] = sandboxed[key]
      return sandboxed[key], path
    end
    if sandboxed[name] ~= nil then
      loaded[name] = sandboxed[name]
      return sandboxed[name]
    end
    local path, err = package.searchpath(name, spackage.path)
    if not path then
      error(string.format("module '%s' not found (recipes load Lua modules from package.path):%s", name, err), 2)
    end
    local fn, lerr = real.loadfile(path, "t", env())
    if not fn then error(string.format("error loading module '%s' from file '%s':\n\t%s", name, path, lerr), 2) end
    sources["@" .. path] = true
    m = fn(name, path)
    if m == nil then m = loaded[name] == nil and true or loaded[name] end
    loaded[name], sandboxed[name] = m, m
    -- where the gate looks for a provider's module in a rollback
    if package.loaded[name] == nil then package.loaded[name] = m end
    return m, path
  end

  base.os, base.io, base.debug, base.package, base._G = sos, sio, sdebug, spackage, base
  base.try = errors.try
  for _, k in ipairs { "string", "table", "math", "utf8", "coroutine", "os", "io", "debug", "package", "_G" } do
    loaded[k] = base[k]
  end

  return base
end

-- "file:line: " of the innermost frame running code loaded into a sandbox
function user_where()
  for level = 2, 200 do
    local info = debug.getinfo(level, "Sl")
    if not info then break end
    if sources[info.source] and info.currentline > 0 then
      return info.short_src .. ":" .. info.currentline .. ": "
    end
  end
  return ""
end

-- Loads a recipe file: returns the recipe, its absolute path and its source
-- text; raises usage errors (exit 2) for anything wrong with the file,
-- including an effect at its top level (the gate is closed while it loads).
function M.load(file)
  local fh = io.open(file, "rb")
  if not fh then invalid("cannot open recipe " .. file) end
  local source = fh:read("a")
  fh:close()
  -- the libraries the recipe loads: known when it has loaded (S.libraries),
  -- and reported to S.hook (the run's journal) when a step loads another
  local S = { dir = (host.realpath(file) or file):match("^(.*)/[^/]*$") or ".", libraries = {}, seen = {} }
  if S.dir == "" then S.dir = "/" end
  function S.use(name, e)
    if S.seen[name] then return end
    S.seen[name] = true
    local lib = { name = name, version = type(e.version) == "string" and e.version or nil,
      commit = tostring(e.commit), sha256 = e.sha256, source = type(e.source) == "string" and e.source or nil }
    S.libraries[#S.libraries + 1] = lib
    if S.hook then S.hook(lib) end
  end
  local env = host.strict_env(sandbox(S))
  local fn, err = real.loadfile(file, "t", env)
  if not fn then invalid(tostring(err)) end
  sources["@" .. file] = true
  rawset(env, "recipe", M.recipe)
  rawset(env, "step", M.step)
  rawset(env, "runbook", M.runbook)
  rawset(env, "check", M.check)
  rawset(env, "param", M.param)
  rawset(env, "secret", M.secret)
  rawset(env, "effect", require("relish.effect").door)
  local ok, r = gate_closed(LOADING, function(e)
    if type(e) == "table" then
      if e.kind == "effect" and gate.state().mode == "none" then
        return { kind = "usage", exit = 2, message = user_where() .. tostring(e.message) }
      end
      return e
    end
    return { kind = "usage", exit = 2, message = tostring(e) }
  end, fn)
  if not ok then error(r, 0) end
  if type(r) ~= "table" or getmetatable(r) == nil or getmetatable(r).__name ~= "relish.Recipe" then
    invalid(file .. ": a recipe file must return recipe \"name\" { ... } (or runbook \"name\" { ... })")
  end
  r.libraries = S -- .libraries: the list {name=, version=, commit=, sha256=}; .hook(lib): later ones
  return r, host.realpath(file) or file, source
end

return M
