-- relish.dsl: what a recipe file sees: recipe, step, param and secret, and
-- the checks that turn a wrong recipe or wrong params into exit 2 with every
-- problem listed.
local invalid = require("relish._errors").invalid
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

-- ---- params --------------------------------------------------------------

local PARAM_FIELDS = { required = true, default = true, match = true, min = true, max = true,
  choices = true, description = true, secret = true, of = true }

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
    local p = { kind = kind }
    for k, v in pairs(spec) do p[k] = v end
    return setmetatable(p, { __name = "relish.Param" })
  end
end

local PARAM_KINDS = { "string", "number", "integer", "boolean", "enum", "list" }
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
    local v = tonumber(raw)
    if v == nil then return nil, string.format("%q is not a number", tostring(raw)) end
    if k == "integer" then
      v = math.tointeger(v)
      if v == nil then return nil, string.format("%q is not an integer", tostring(raw)) end
    end
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
    if p.min and #items < p.min then return nil, string.format("needs at least %d items", p.min) end
    if p.max and #items > p.max then return nil, string.format("takes at most %d items", p.max) end
    if p.match then
      for _, it in ipairs(items) do
        if not it:match(p.match) then return nil, string.format("item %q does not match %s", it, p.match) end
      end
    end
    return items
  end
end

function M.nearest(word, names)
  local best, bestd
  for _, n in ipairs(names) do
    local d = 0
    local la, lb = #word, #n
    -- Levenshtein distance, small strings only
    local prev = {}
    for j = 0, lb do prev[j] = j end
    for i = 1, la do
      local cur = { [0] = i }
      for j = 1, lb do
        cur[j] = math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (word:sub(i, i) == n:sub(j, j) and 0 or 1))
      end
      prev = cur
    end
    d = prev[lb]
    if d <= 2 and (not bestd or d < bestd) then best, bestd = n, d end
  end
  return best
end

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
        if value == nil then
          problems[#problems + 1] = string.format("param '%s': its default %s", name, err)
        else
          out[name] = value
        end
      elseif p.required then
        problems[#problems + 1] = string.format("param '%s' is required%s", name,
          p.description and " (" .. p.description .. ")" or "")
      end
    else
      local value, err = convert(p, name, v)
      if value == nil then
        problems[#problems + 1] = string.format("param '%s': %s", name, err)
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

local STEP_FIELDS = { run = true, undo = true, timeout = true, retries = true, when = true, description = true }
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
    local timeout, terr = M.duration(spec.timeout, "step " .. name .. ": timeout")
    if spec.timeout ~= nil and not timeout then definition_error(2, terr) end
    local retries = spec.retries or 0
    if math.type(retries) ~= "integer" or retries < 0 then
      definition_error(2, string.format("step %q: retries must be a non-negative integer", name))
    end
    return setmetatable({ name = name, run = spec.run, undo = spec.undo, when = spec.when,
      timeout = timeout, retries = retries, description = spec.description, line = line }, Step)
  end
end

local RECIPE_FIELDS = { description = true, params = true, lock = true, on_failure = true,
  timeout = true, rollback_timeout = true, notify = true }

function M.recipe(name)
  if type(name) ~= "string" or name == "" then definition_error(2, "recipe needs a name: recipe \"name\" { ... }") end
  -- `return recipe "x" {...}` is a tail call: the file's line is gone by the
  -- time the table arrives, so remember it now
  local info = debug.getinfo(2, "Sl")
  local at = info and info.currentline > 0 and (info.short_src .. ":" .. info.currentline .. ": ") or ""
  local function definition_error(_, msg)
    invalid(at .. msg)
  end
  return function(spec)
    if type(spec) ~= "table" then definition_error(2, "recipe \"" .. name .. "\" takes a table") end
    local r = { name = name, steps = {}, params = {}, on_failure = "rollback" }
    local seen = {}
    for k, v in pairs(spec) do
      if math.type(k) == "integer" then
        if getmetatable(v) ~= Step then definition_error(2, string.format("recipe %q: entry %d is not a step", name, k)) end
      elseif not RECIPE_FIELDS[k] then
        definition_error(2, string.format("recipe %q: unknown field '%s'%s", name, tostring(k), field_hint(k, RECIPE_FIELDS)))
      end
    end
    for i, s in ipairs(spec) do
      if seen[s.name] then definition_error(2, string.format("recipe %q: two steps named %q", name, s.name)) end
      seen[s.name] = true
      r.steps[i] = s
    end
    if #r.steps == 0 then definition_error(2, string.format("recipe %q has no steps", name)) end
    for pname, p in pairs(spec.params or {}) do
      if type(pname) ~= "string" or getmetatable(p) == nil or getmetatable(p).__name ~= "relish.Param" then
        definition_error(2, string.format("recipe %q: params.%s must be a param.<type>{...}", name, tostring(pname)))
      end
      r.params[pname] = p
    end
    r.description = spec.description
    if spec.on_failure ~= nil then
      if spec.on_failure ~= "rollback" and spec.on_failure ~= "stop" then
        definition_error(2, string.format("recipe %q: on_failure must be \"rollback\" or \"stop\"", name))
      end
      r.on_failure = spec.on_failure
    end
    if spec.lock ~= nil and type(spec.lock) ~= "string" and type(spec.lock) ~= "function" then
      definition_error(2, string.format("recipe %q: lock must be a string or a function of params", name))
    end
    r.lock = spec.lock
    local err
    r.timeout, err = M.duration(spec.timeout, "recipe timeout")
    if spec.timeout ~= nil and not r.timeout then definition_error(2, err) end
    r.rollback_timeout, err = M.duration(spec.rollback_timeout, "recipe rollback_timeout")
    if spec.rollback_timeout ~= nil and not r.rollback_timeout then definition_error(2, err) end
    if spec.notify ~= nil then
      if type(spec.notify) ~= "table" then
        definition_error(2, string.format("recipe %q: notify must be a table of handlers", name))
      end
      local HOOKS = { on_start = true, on_success = true, on_failure = true, on_rollback = true }
      for k, v in pairs(spec.notify) do
        if not HOOKS[k] then
          definition_error(2, string.format("recipe %q: notify.%s is not a handler (on_start, on_success, " ..
            "on_failure, on_rollback)", name, tostring(k)))
        end
        if type(v) ~= "function" then
          definition_error(2, string.format("recipe %q: notify.%s must be a function(ctx, outcome)", name, k))
        end
      end
    end
    r.notify = spec.notify
    return setmetatable(r, { __name = "relish.Recipe" })
  end
end

-- secret(name) in a recipe file: the environment variable NAME, as a secret.
function M.secret(spec)
  if type(spec) == "string" then
    local v, err = secret.env(spec)
    if not v then error(tostring(err), 2) end
    return v
  elseif type(spec) == "table" and spec.env then
    local v, err = secret.env(spec.env)
    if not v then error(tostring(err), 2) end
    return v
  elseif type(spec) == "table" and spec.file then
    local v, err = secret.file(spec.file)
    if not v then error(tostring(err), 2) end
    return v
  end
  error("secret(name), secret{env=NAME} or secret{file=PATH}", 2)
end

-- Loads a recipe file: returns the recipe, its absolute path and its source
-- text; raises usage errors (exit 2) for anything wrong with the file.
function M.load(file)
  local host = require "relish._host"
  local fh = io.open(file, "rb")
  if not fh then invalid("cannot open recipe " .. file) end
  local source = fh:read("a")
  fh:close()
  local fn, env = host.load_user(file)
  if not fn then invalid(tostring(env)) end
  rawset(env, "recipe", M.recipe)
  rawset(env, "step", M.step)
  rawset(env, "param", M.param)
  rawset(env, "secret", M.secret)
  rawset(env, "effect", require("relish.effect").door)
  rawset(env, "try", require("relish._errors").try)
  local ok, r = xpcall(fn, function(e)
    if type(e) == "table" then return e end
    return { kind = "usage", exit = 2, message = tostring(e) }
  end)
  if not ok then error(r, 0) end
  if type(r) ~= "table" or getmetatable(r) == nil or getmetatable(r).__name ~= "relish.Recipe" then
    invalid(file .. ": a recipe file must return recipe \"name\" { ... }")
  end
  return r, host.realpath(file) or file, source
end

return M
