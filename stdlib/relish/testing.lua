-- relish.testing: deep comparison, readable values and the assert_* helpers
-- that `relish test` puts in every test file (and that users may require),
-- and the kit for testing recipes: plan, run (with failures injected),
-- http_stub, git_repo and k8s (loaded on first use).
local M = {}

local KIT = { plan = "relish.testing.run", run = "relish.testing.run", http_stub = "relish.testing.fixtures",
  git_repo = "relish.testing.fixtures", k8s = "relish.testing.fixtures" }
setmetatable(M, { __index = function(_, k)
  local mod = KIT[k]
  if mod then return require(mod)[k] end
end })

local function is_ident(k)
  return type(k) == "string" and k:match("^[%a_][%w_]*$") ~= nil
end

local function key_path(path, k)
  if is_ident(k) then return path .. "." .. k end
  if type(k) == "string" then return string.format("%s[%q]", path, k) end
  return string.format("%s[%s]", path, tostring(k))
end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta < tb end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

-- show(v): a compact, stable, one-line rendering (sorted keys, cycles marked).
function M.show(v, limit)
  limit = limit or 400
  local seen, out, len = {}, {}, 0
  local function put(s)
    out[#out + 1] = s
    len = len + #s
  end
  local function walk(x, depth)
    if len > limit then return end
    local tx = type(x)
    if tx == "string" then
      put(string.format("%q", x):gsub("\\\n", "\\n"))
    elseif tx ~= "table" then
      put(tostring(x))
    elseif seen[x] then
      put("<cycle>")
    elseif depth > 20 then
      put("{...}")
    else
      seen[x] = true
      put("{")
      local n = #x
      local first = true
      for i = 1, n do
        if not first then put(", ") end
        first = false
        walk(x[i], depth + 1)
      end
      for _, k in ipairs(sorted_keys(x)) do
        if not (math.type(k) == "integer" and k >= 1 and k <= n) then
          if not first then put(", ") end
          first = false
          put(is_ident(k) and k or "[" .. M.show(k) .. "]")
          put(" = ")
          walk(x[k], depth + 1)
        end
      end
      put("}")
      seen[x] = nil
    end
  end
  walk(v, 0)
  local s = table.concat(out)
  if #s > limit then s = s:sub(1, limit) .. "..." end
  return s
end

-- diff(a, b): the list of differences between expected a and actual b, as
-- {path=, expected=, actual=, missing=, extra=}; empty when deeply equal.
function M.diff(expected, actual, max)
  max = max or 20
  local diffs = {}
  local seen = {}
  local function walk(e, a, path)
    if #diffs >= max then return end
    if e == a and math.type(e) == math.type(a) then return end
    if type(e) ~= "table" or type(a) ~= "table" then
      if not (type(e) == "number" and type(a) == "number" and e ~= e and a ~= a) then
        diffs[#diffs + 1] = { path = path, expected = e, actual = a }
      end
      return
    end
    if seen[e] == a then return end
    seen[e] = a
    for _, k in ipairs(sorted_keys(e)) do
      if a[k] == nil then
        if #diffs < max then diffs[#diffs + 1] = { path = key_path(path, k), expected = e[k], missing = true } end
      else
        walk(e[k], a[k], key_path(path, k))
      end
    end
    for _, k in ipairs(sorted_keys(a)) do
      if e[k] == nil and #diffs < max then
        diffs[#diffs + 1] = { path = key_path(path, k), actual = a[k], extra = true }
      end
    end
  end
  walk(expected, actual, "$")
  return diffs
end

function M.equal(a, b)
  return #M.diff(a, b, 1) == 0
end

local function typed(v)
  if type(v) == "number" then return string.format("%s (%s)", M.show(v), math.type(v)) end
  return M.show(v) .. " (" .. type(v) .. ")"
end

local function fail(msg, extra)
  if extra and extra ~= "" then msg = extra .. ": " .. msg end
  error(msg, 3)
end

function M.format_diff(expected, actual)
  local diffs = M.diff(expected, actual)
  if type(expected) ~= "table" or type(actual) ~= "table" then
    return string.format("expected %s, got %s", typed(expected), typed(actual))
  end
  local lines = { "values differ:" }
  for _, d in ipairs(diffs) do
    if d.missing then
      lines[#lines + 1] = string.format("  %s: missing (expected %s)", d.path, M.show(d.expected, 120))
    elseif d.extra then
      lines[#lines + 1] = string.format("  %s: unexpected %s", d.path, M.show(d.actual, 120))
    else
      lines[#lines + 1] = string.format("  %s: expected %s, got %s", d.path, typed(d.expected), typed(d.actual))
    end
  end
  lines[#lines + 1] = "  expected: " .. M.show(expected)
  lines[#lines + 1] = "  actual:   " .. M.show(actual)
  return table.concat(lines, "\n")
end

function M.assert_eq(actual, expected, msg)
  if not M.equal(expected, actual) then fail(M.format_diff(expected, actual), msg) end
end

function M.assert_ne(actual, unexpected, msg)
  if M.equal(unexpected, actual) then fail("expected a value other than " .. M.show(unexpected), msg) end
end

function M.assert_true(v, msg)
  if not v then fail("expected a true value, got " .. typed(v), msg) end
end

function M.assert_false(v, msg)
  if v then fail("expected a false value, got " .. typed(v), msg) end
end

function M.assert_nil(v, msg)
  if v ~= nil then fail("expected nil, got " .. typed(v), msg) end
end

function M.assert_match(s, pattern, msg)
  if type(s) ~= "string" then fail("expected a string matching " .. M.show(pattern) .. ", got " .. typed(s), msg) end
  if not s:find(pattern) then fail(string.format("%s does not match pattern %s", M.show(s), M.show(pattern)), msg) end
end

-- assert_error(fn, pattern?) -> the error message (fn must raise).
function M.assert_error(fn, pattern, msg)
  local ok, err = pcall(fn)
  if ok then fail("expected an error, but the function returned", msg) end
  local text = type(err) == "string" and err or tostring(err)
  if pattern and not text:find(pattern) then
    fail(string.format("error %s does not match pattern %s", M.show(text), M.show(pattern)), msg)
  end
  return text, err
end

-- assert_raises(fn, kind, pattern?) -> the error value: fn must fail with a
-- structured error (a table with a kind, as every module raises at run time)
-- of that kind, its message matching the Lua pattern when given.
function M.assert_raises(fn, kind, pattern, msg)
  local ok, err = pcall(fn)
  if ok then fail("expected a " .. tostring(kind) .. " error, but the function returned", msg) end
  if type(err) ~= "table" or type(err.kind) ~= "string" then
    fail(string.format("expected a %s error value, got %s", tostring(kind), typed(err)), msg)
  end
  if err.kind ~= kind then
    fail(string.format("expected a %s error, got a %s error: %s", tostring(kind), err.kind, tostring(err.message)), msg)
  end
  if pattern and not (type(err.message) == "string" and err.message:find(pattern)) then
    fail(string.format("error message %s does not match pattern %s", M.show(err.message), M.show(pattern)), msg)
  end
  return err
end

-- assert_misuse(fn, message) -> the error text: fn must raise a misuse
-- error, a plain string located in fn's own lines (at the caller of the
-- misused function, not inside the module), reading "FILE:LINE: message".
function M.assert_misuse(fn, message, msg)
  local info = debug.getinfo(fn, "S")
  local ok, err = pcall(fn)
  if ok then fail("expected a misuse error, but the function returned", msg) end
  if type(err) ~= "string" then fail("expected a misuse error (a string), got " .. typed(err), msg) end
  local prefix = info.short_src .. ":"
  local line, text = err:sub(#prefix + 1):match("^(%d+): (.*)$")
  line = tonumber(line)
  if err:sub(1, #prefix) ~= prefix or not line or line < info.linedefined or line > info.lastlinedefined then
    fail(string.format("error %s is not located at the caller (%s%d)", M.show(err), prefix, info.linedefined), msg)
  end
  if text ~= message then fail(string.format("expected the message %s, got %s", M.show(message), M.show(text)), msg) end
  return err
end

function M.assert_near(actual, expected, eps, msg)
  eps = eps or 1e-9
  if type(actual) ~= "number" or math.abs(actual - expected) > eps then
    fail(string.format("expected %s within %s, got %s", tostring(expected), tostring(eps), typed(actual)), msg)
  end
end

return M
