-- relish test: finds *_test.lua files, runs their test() bodies, and reports
-- failures with file:line and a final "N passed, N failed" line.
local host = require "relish._host"
local testing = require "relish.testing"
local invalid = require("relish._errors").invalid

local M = {}

local function collect(path, out)
  local kind = host.filetype(path, true)
  if kind == "dir" then
    local names = host.listdir(path) or {}
    for _, name in ipairs(names) do
      if name:sub(1, 1) ~= "." then
        local sub = path == "." and name or (path:gsub("/$", "") .. "/" .. name)
        local t = host.filetype(sub, true)
        if t == "dir" then
          collect(sub, out)
        elseif t == "file" and name:match("_test%.lua$") then
          out[#out + 1] = sub
        end
      end
    end
    return true
  elseif kind == "file" then
    out[#out + 1] = path
    return true
  end
  return false
end

local function color(code, s)
  if M.color then return "\27[" .. code .. "m" .. s .. "\27[0m" end
  return s
end

-- Where in the test file the failure happened: the innermost frame whose
-- chunk is that file.
local function locate(file, level)
  local source = "@" .. file
  local where
  for l = level, 60 do
    local info = debug.getinfo(l, "Sl")
    if not info then break end
    if info.source == source and info.currentline > 0 then
      where = file .. ":" .. info.currentline
      break
    end
  end
  return where
end

local function find_fixtures(file)
  local dir = file:match("^(.*)/[^/]*$") or "."
  for _ = 1, 6 do
    if host.filetype(dir .. "/fixtures", true) == "dir" then return dir .. "/fixtures" end
    dir = dir .. "/.."
  end
  return (file:match("^(.*)/[^/]*$") or ".") .. "/fixtures"
end

local SKIP = {}

local function run_file(file, opts, totals)
  local fn, env, kind = host.load_user(file)
  if not fn then
    totals.failed = totals.failed + 1
    io.write(color("31", "FAIL "), file, "\n    ", tostring(env), "\n")
    return
  end
  local abs = host.realpath(file) or file
  -- helpers next to the test file (tests/lua/support.lua) load with require
  local dir = abs:match("^(.*)/[^/]*$") or "."
  local saved_path = package.path
  package.path = dir .. "/?.lua;" .. package.path
  -- a recipe library tests itself from its checkout: its modules (and their
  -- plain requires of their siblings) are found at its root, the nearest
  -- directory above the test holding relish.deps.lua or .git
  local root = dir
  while root ~= "" and host.filetype(root .. "/relish.deps.lua") == nil and host.filetype(root .. "/.git") == nil do
    root = root:match("^(.*)/[^/]*$") or ""
  end
  if root ~= "" then
    package.path = dir .. "/?.lua;" .. root .. "/?.lua;" .. root .. "/?/init.lua;" .. saved_path
  end
  local tests, prefix, hooks = {}, {}, { { before = {}, after = {} } }
  local cleanup = {}

  local function full(name)
    if #prefix == 0 then return name end
    return table.concat(prefix, " ") .. " " .. name
  end
  local function copy_hooks()
    local before, after = {}, {}
    for _, h in ipairs(hooks) do
      for _, f in ipairs(h.before) do before[#before + 1] = f end
      for i = #h.after, 1, -1 do table.insert(after, 1, h.after[i]) end
    end
    return before, after
  end

  local G = {}
  function G.describe(name, body)
    assert(type(name) == "string" and type(body) == "function", "describe(name, fn)")
    prefix[#prefix + 1] = name
    hooks[#hooks + 1] = { before = {}, after = {} }
    body()
    hooks[#hooks] = nil
    prefix[#prefix] = nil
  end
  function G.test(name, body)
    assert(type(name) == "string" and type(body) == "function", "test(name, fn)")
    local info = debug.getinfo(2, "l")
    local before, after = copy_hooks()
    tests[#tests + 1] = { name = full(name), fn = body, line = info and info.currentline,
      before = before, after = after }
  end
  function G.before_each(f) table.insert(hooks[#hooks].before, f) end
  function G.after_each(f) table.insert(hooks[#hooks].after, f) end
  function G.skip(reason) error(setmetatable({ reason = reason }, SKIP), 2) end
  function G.tmpdir()
    local d = assert(host.mkdtemp("relish-test"))
    cleanup[#cleanup + 1] = d
    return d
  end
  function G.fixture_path(rel)
    local base = find_fixtures(abs)
    return (host.realpath(base) or base) .. "/" .. rel
  end
  function G.relish_exe() return host.exe() end
  for k, v in pairs(testing) do
    if k:match("^assert_") then G[k] = v end
  end
  for k, v in pairs(G) do rawset(env, k, v) end

  local ok, err = xpcall(function()
    local r = fn()
    package.path = saved_path
    return r
  end, function(e)
    local where = locate(file, 2)
    local msg = tostring(e)
    return (where and not msg:find(where, 1, true)) and (where .. ": " .. msg) or msg
  end)
  if not ok then
    totals.failed = totals.failed + 1
    io.write(color("31", "FAIL "), file, " (loading)\n    ", err, "\n")
    return
  end

  for _, t in ipairs(tests) do
    if not opts.filter or t.name:find(opts.filter, 1, true) then
      local started = host.now()
      local failure, skipped
      local function handler(e)
        if getmetatable(e) == SKIP then return e end
        if type(e) == "table" and e.kind == "interrupted" then return e end
        local where = locate(file, 2) or (file .. ":" .. tostring(t.line))
        local msg = tostring(e)
        if type(e) == "string" then
          -- drop a position the message already carries when it is the same line
          msg = msg:gsub("^" .. file:gsub("%p", "%%%0") .. ":%d+: ", "")
        end
        return { where = where, message = msg, traceback = debug.traceback("", 2) }
      end
      local okt, e = true, nil
      for _, h in ipairs(t.before) do
        okt, e = xpcall(h, handler)
        if not okt then break end
      end
      if okt then okt, e = xpcall(t.fn, handler) end
      for _, h in ipairs(t.after) do
        local oka, ea = xpcall(h, handler)
        if okt and not oka then okt, e = oka, ea end
      end
      require("relish._loop").reset() -- tasks a test left running end with it
      -- what the testing kit started (stubs, repositories, journals) ends with it
      local cerr = require("relish.testing.cleanup").run()
      if cerr ~= nil and okt then okt, e = false, handler(cerr) end
      for i = #cleanup, 1, -1 do
        host.rmtree(cleanup[i])
        cleanup[i] = nil
      end
      if not okt then
        if getmetatable(e) == SKIP then
          skipped = e.reason or "skipped"
        elseif type(e) == "table" and e.kind == "interrupted" then
          error(e, 0)
        else
          failure = e
        end
      end
      local ms = (host.now() - started) * 1000
      if failure then
        totals.failed = totals.failed + 1
        io.write(color("31", "FAIL "), t.name, "\n    ", failure.where, ": ",
          (failure.message:gsub("\n", "\n    ")), "\n")
        if os.getenv("RELISH_TEST_TRACEBACK") then io.write(failure.traceback, "\n") end
      elseif skipped then
        totals.skipped = totals.skipped + 1
        if opts.verbose then io.write(color("33", "skip "), t.name, ": ", tostring(skipped), "\n") end
      else
        totals.passed = totals.passed + 1
        if opts.verbose then io.write(color("32", "ok   "), t.name, string.format(" (%.0f ms)", ms), "\n") end
      end
      io.stdout:flush()
    end
  end
end

function M.main(opts)
  local paths = opts.args
  if #paths == 0 then paths = { "." } end
  M.color = host.isatty(1) and not os.getenv("NO_COLOR")
  local files = {}
  for _, p in ipairs(paths) do
    if not collect(p, files) then
      invalid("test: no such file or directory: " .. p)
    end
  end
  if #files == 0 then
    invalid("test: no *_test.lua files under " .. table.concat(paths, ", "))
  end
  local totals = { passed = 0, failed = 0, skipped = 0 }
  local verbose = opts.flags.verbose
  for _, f in ipairs(files) do
    if verbose and #files > 1 then io.write(f, "\n") end
    run_file(f, { filter = opts.flags.filter, verbose = verbose }, totals)
  end
  local line = string.format("%d passed, %d failed", totals.passed, totals.failed)
  if totals.skipped > 0 then line = line .. string.format(", %d skipped", totals.skipped) end
  io.write(line, "\n")
  return totals.failed > 0 and 1 or 0
end

return M
