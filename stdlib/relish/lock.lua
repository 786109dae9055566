-- relish.lock: leases on names, kept in the journal. A lease has a holder
-- (run id, user, host, pid) and an expiry; a stale one (its pid dead on this
-- host, or expired) is taken over, and that is written to the journal.
local host = require "relish._host"
local J = require "relish.journal"

local M = {}

M.TTL = 600 -- seconds; renewed at every step

local function holder_text(l)
  return string.format("run %s (user %s, host %s, pid %s, since %s)", l.run_id, l.user or "?",
    l.host or "?", tostring(l.pid or "?"), l.acquired_at)
end
M.holder_text = holder_text

function M.stale(l)
  if l.expires_at < host.time() then return true, "its lease expired" end
  if l.host == host.hostname() and not host.pid_alive(l.pid) then
    return true, string.format("its process %d is gone", l.pid)
  end
  return false
end

-- acquire(journal, name, run_id [, reclaim]): takes the lease or raises exit 4.
-- With reclaim, a lease already held by run_id (an earlier, dead process of the
-- same run: resume, rollback) is taken over as well.
function M.acquire(journal, name, run_id, reclaim)
  local took_over
  journal:tx(function()
    local cur = journal:query("SELECT * FROM locks WHERE name = ?", name)[1]
    if cur and not (reclaim and cur.run_id == run_id) then
      local stale, why = M.stale(cur)
      if not stale then
        error({ kind = "locked", exit = 4,
          message = string.format("lock '%s' is held by %s", name, holder_text(cur)) }, 0)
      end
      took_over = string.format("took over stale lock '%s' from %s: %s", name, holder_text(cur), why)
    end
    journal:exec("INSERT OR REPLACE INTO locks (name, run_id, user, host, pid, acquired_at, expires_at)" ..
      " VALUES (?, ?, ?, ?, ?, ?, ?)", name, run_id, J.actor(), host.hostname(), host.getpid(),
      J.now_iso(), host.time() + M.TTL)
    if took_over then journal:event(run_id, "lock", took_over) end
  end)
  return took_over
end

function M.renew(journal, name, run_id)
  journal:exec("UPDATE locks SET expires_at = ?, pid = ? WHERE name = ? AND run_id = ?",
    host.time() + M.TTL, host.getpid(), name, run_id)
end

function M.release(journal, name, run_id)
  journal:exec("DELETE FROM locks WHERE name = ? AND run_id = ?", name, run_id)
end

function M.list(journal)
  return journal:query("SELECT * FROM locks ORDER BY name")
end

function M.break_lock(journal, name)
  local cur = journal:query("SELECT * FROM locks WHERE name = ?", name)[1]
  if not cur then return nil end
  journal:exec("DELETE FROM locks WHERE name = ?", name)
  journal:event(cur.run_id, "lock", string.format("lock '%s' broken by %s (was held by %s)", name,
    J.actor(), holder_text(cur)))
  return cur
end

return M
