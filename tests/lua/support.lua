-- Helpers shared by the Lua tests: run relish as a user would, write files,
-- snapshot a directory tree (contents, modes, links) to compare it later.
local sh = require "relish.sh"
local host = require "relish._host"

local M = {}

-- eventually_every(default_timeout, poll) -> eventually(what, fn [, timeout]):
-- polls fn() every `poll` seconds (up to timeout seconds) until it returns
-- a true value; returns that value, or raises naming what, at the caller.
function M.eventually_every(default_timeout, poll)
  return function(what, fn, timeout)
    local task = require "relish.task"
    local deadline = host.now() + (timeout or default_timeout)
    repeat
      local v = fn()
      if v then return v end
      task.sleep(poll)
    until host.now() > deadline
    error("timed out waiting for " .. what, 2)
  end
end

function M.write(path, text, mode)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  if mode then assert(os.execute(string.format("chmod %o '%s'", mode, path))) end
end

function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- relish{args..., env=, cwd=, input=, timeout=} -> result of sh.run
function M.relish(args, opts)
  opts = opts or args -- options may come inside the argument list: relish { "run", f, env = {...} }
  local argv = { host.exe() }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local env = { NO_COLOR = "1" }
  for k, v in pairs(opts.env or {}) do env[k] = v end
  return sh.run { argv = argv, env = env, cwd = opts.cwd, input = opts.input, timeout = opts.timeout or 120,
    check = false }
end

-- snapshot(dir) -> { ["rel/path"] = "file 644 <content>" | "link -> target" | "dir 755" }
function M.snapshot(dir)
  local fs = require "relish.fs"
  local out = {}
  local function walk(rel)
    local path = rel == "" and dir or (dir .. "/" .. rel)
    for _, name in ipairs(assert(fs.list(path))) do
      local r = rel == "" and name or (rel .. "/" .. name)
      local p = dir .. "/" .. r
      local st = assert(fs.stat(p))
      if st.type == "link" then
        out[r] = "link -> " .. st.target
      elseif st.type == "dir" then
        out[r] = string.format("dir %o", st.mode)
        walk(r)
      else
        out[r] = string.format("file %o %s", st.mode, assert(fs.read(p)))
      end
    end
  end
  walk("")
  return out
end

-- The world tests/fixtures/recipes/eight.lua acts on, in d/w: a release v1,
-- a config, a log to remove and a current link. Returns d/w.
function M.eight_world(d)
  assert(os.execute(string.format("mkdir -p %s/w/releases/v1", d)))
  M.write(d .. "/w/releases/v1/app.txt", "app v1\n")
  M.write(d .. "/w/config.ini", "version=v1\n", tonumber("644", 8))
  M.write(d .. "/w/old.log", "old log line\n")
  assert(os.execute(string.format("ln -s %s/w/releases/v1 %s/w/current", d, d)))
  return d .. "/w"
end

-- Writes a recipe file d/name with text; returns its path.
function M.recipe(d, name, text)
  M.write(d .. "/" .. name, text)
  return d .. "/" .. name
end

-- Runs `relish ARGS...` in the background under sh, waits for the file
-- ready to appear, sends it signal sig, and returns what sh printed: the
-- exit code as "code=N". extra is more shell to run after the signal.
function M.signal_after(args, ready, sig, extra)
  local quoted = {}
  for i, a in ipairs(args) do quoted[i] = sh.quote(a) end
  local script = string.format("%s %s & pid=$!; for i in $(seq 200); do [ -e %s ] && break; sleep 0.05; done; " ..
    "kill -%s $pid; %s wait $pid; echo \"code=$?\"", sh.quote(host.exe()), table.concat(quoted, " "),
    sh.quote(ready), sig, extra or "")
  return assert(sh.run { argv = { "sh", "-c", script }, env = { NO_COLOR = "1" }, timeout = 60 })
end

-- A journal of its own for each test.
function M.state(dir)
  return "sqlite:" .. dir .. "/journal.db"
end

return M
