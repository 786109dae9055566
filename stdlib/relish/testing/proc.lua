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

-- await(dir, file [, seconds]) -> the text of dir/file once a server started
-- in the background has written it (polled every 10 ms, 15 s by default), or
-- nil and the server's log (dir/server.log) with dir removed: it did not start
function M.await(dir, file, seconds)
  for _ = 1, math.floor((seconds or 15) * 100) do
    local text = M.read(dir .. "/" .. file)
    if text then return text end
    task.sleep(0.01)
  end
  local log = M.read(dir .. "/server.log") or ""
  require("relish._host").rmtree(dir)
  return nil, log
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
