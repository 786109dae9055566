-- relish.testing.proc: what the fixture servers share: reading and writing
-- their files, and stopping one (SIGTERM, then waiting until it is gone or a zombie).
local sh = require "relish.sh"
local task = require "relish.task"

local M = {}

-- read(path) -> the file's bytes, or nil when it cannot be read
function M.read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- write(path, text): the file's bytes become text (a fixture's own files)
function M.write(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
end

-- stop(pid): TERM (never raises: the server may be gone already, it exits
-- with its parent), then up to 5 s for it to end
function M.stop(pid)
  sh.run { readonly = true, argv = { "kill", tostring(pid) }, check = false }
  for _ = 1, 250 do
    local stat = M.read("/proc/" .. pid .. "/stat")
    if not stat or stat:match("^%d+ %b() (%a)") == "Z" then return end
    task.sleep(0.02)
  end
end

return M
