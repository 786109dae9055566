-- relish.lock: leases on names, for the engine and `relish lock`. The journal
-- keeps them (journal:lock_*) and owns the stale rule (J.lease_stale: expired,
-- or its pid dead on this host); a takeover is written to the journal.
local J = require "relish.journal"

local M = {}

M.TTL = 600 -- seconds; renewed at every step

M.holder_text = J.holder_text
M.stale = J.lease_stale

M.POLL = 0.5 -- seconds between two looks at a held lock (--wait-lock)

local function holder_of(journal, name)
  for _, l in ipairs(journal:lock_list()) do
    if l.name == name then return l end
  end
end

-- acquire(journal, name, run_id [, reclaim [, wait]]): takes the lease or
-- raises exit 4; returns the takeover message when a stale lease was taken
-- over. With reclaim, a lease already held by run_id (an earlier, dead
-- process of the same run: resume, rollback) is taken over as well.
-- wait = {seconds=, on_wait=fn(lock), on_done=fn()}: a live holder is waited
-- for up to seconds, looking again every POLL seconds (a lease that goes
-- stale meanwhile is taken over as usual); on_wait is told of each holder
-- met, on_done when the wait ends either way. Past the time, exit 4 naming
-- the holder and how long it waited.
function M.acquire(journal, name, run_id, reclaim, wait)
  local opts = { ttl = M.TTL, reclaim = reclaim }
  if not wait then return journal:lock_acquire(name, run_id, opts) end
  local host = require "relish._host"
  local loop = require "relish._loop"
  local deadline = host.now() + wait.seconds
  local seen, waited
  local function done()
    if waited and wait.on_done then wait.on_done() end
    waited = nil
  end
  local ok, r = xpcall(function()
    while true do
      local got, v = pcall(journal.lock_acquire, journal, name, run_id, opts)
      if got then return v end
      if type(v) ~= "table" or v.kind ~= "locked" then error(v, 0) end
      local left = deadline - host.now()
      if left <= 0 then
        error({ kind = "locked", exit = 4, message = string.format("%s; waited %s", v.message,
          require("relish.output").fmt_elapsed(wait.seconds)) }, 0)
      end
      local l = holder_of(journal, name)
      if l and l.run_id ~= seen then
        seen, waited = l.run_id, true
        if wait.on_wait then wait.on_wait(l) end
      end
      loop.sleep(math.min(M.POLL, left))
    end
  end, function(e) return e end)
  done()
  if not ok then error(r, 0) end
  return r
end

function M.renew(journal, name, run_id) journal:lock_renew(name, run_id, M.TTL) end
function M.release(journal, name, run_id) journal:lock_release(name, run_id) end
function M.list(journal) return journal:lock_list() end
function M.break_lock(journal, name) return journal:lock_break(name) end

return M
