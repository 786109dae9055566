-- relish.task: many waits at once in one thread. Tasks are coroutines run by
-- the host's event loop: a waiting call (HTTP, sh.run, sleep) inside a task
-- yields to the others; outside any task it runs the loop until it is done.
local errors = require "relish._errors"
local loop = require "relish._loop"

local M = {}

M.spawn = loop.spawn
M.sleep = loop.sleep
M.current = loop.current

local function check_seconds(s, what)
  if type(s) ~= "number" or s ~= s or s < 0 or s == math.huge then
    error(string.format("%s: seconds must be a non-negative number, got %s", what,
      type(s) == "number" and tostring(s) or type(s)), 3)
  end
end

-- with_timeout(seconds, fn, ...) -> fn's results; past the seconds fn's task
-- is cancelled (its transfers closed, its processes killed) and an error of
-- kind "timeout" is raised.
function M.with_timeout(seconds, fn, ...)
  check_seconds(seconds, "task.with_timeout")
  if type(fn) ~= "function" then
    error("task.with_timeout: fn must be a function, got " .. type(fn), 2)
  end
  local t = loop.spawn(fn, ...)
  local guard <close> = setmetatable({}, { __close = function() t:cancel() end })
  if not loop.wait_any({ t }, seconds) then
    error(errors.value("timeout", "timed out after %gs", seconds), 2)
  end
  return t:wait()
end

local function check_fns(fns)
  if type(fns) ~= "table" then error("task.parallel: fns must be a list of functions, got " .. type(fns), 3) end
  local n = #fns
  for k in pairs(fns) do
    if math.type(k) ~= "integer" or k < 1 or k > n then
      error("task.parallel: fns must be a list of functions, found key " .. tostring(k), 3)
    end
  end
  for i = 1, n do
    if type(fns[i]) ~= "function" then
      error(string.format("task.parallel: fns[%d] must be a function, got %s", i, type(fns[i])), 3)
    end
  end
  return n
end

local PARALLEL_OPTS = { limit = true, settle = true }

local function check_opts(opts, n)
  opts = opts or {}
  if type(opts) ~= "table" then error("task.parallel: options must be a table", 3) end
  for k in pairs(opts) do
    if not PARALLEL_OPTS[k] then error("task.parallel: unknown option '" .. tostring(k) .. "'", 3) end
  end
  local limit = opts.limit
  if limit ~= nil and (math.type(limit) ~= "integer" or limit < 1) then
    error("task.parallel: limit must be a positive integer, got " .. tostring(limit), 3)
  end
  return limit or math.max(n, 1), opts.settle and true or false
end

-- parallel(fns, {limit=, settle=}) -> results: runs each function as a task,
-- at most `limit` at a time. results[i] is the first value fns[i] returned.
-- By default the first error cancels the others and is raised; with
-- settle = true every function runs to its end and results[i] is
-- {ok = true, value = v} or {ok = false, error = e}.
function M.parallel(fns, opts)
  local n = check_fns(fns)
  local limit, settle = check_opts(opts, n)
  local results, active, index = {}, {}, {}
  local next_fn = 1
  -- whatever way we leave (an error, an interrupt, our own cancellation),
  -- no task of ours is left running
  local guard <close> = setmetatable({}, { __close = function()
    for _, t in ipairs(active) do t:cancel() end
  end })
  while true do
    while #active < limit and next_fn <= n do
      local t = loop.spawn(fns[next_fn])
      active[#active + 1] = t
      index[t] = next_fn
      next_fn = next_fn + 1
    end
    if #active == 0 then break end
    local t, pos = loop.wait_any(active)
    table.remove(active, pos)
    local i = index[t]
    index[t] = nil
    local res = table.pack(t:result())
    if res[1] then
      results[i] = settle and { ok = true, value = res[2] } or res[2]
    elseif settle then
      results[i] = { ok = false, error = res[2] }
    else
      error(res[2], 0) -- the guard cancels the others
    end
  end
  return results
end

return M
