-- relish.lock: leases on names, for the engine and `relish lock`. The journal
-- keeps them (journal:lock_*) and owns the stale rule (J.lease_stale: expired,
-- or its pid dead on this host); a takeover is written to the journal.
local J = require "relish.journal"

local M = {}

M.TTL = 600 -- seconds; renewed at every step

M.holder_text = J.holder_text
M.stale = J.lease_stale

-- acquire(journal, name, run_id [, reclaim]): takes the lease or raises exit 4;
-- returns the takeover message when a stale lease was taken over. With
-- reclaim, a lease already held by run_id (an earlier, dead process of the
-- same run: resume, rollback) is taken over as well.
function M.acquire(journal, name, run_id, reclaim)
  return journal:lock_acquire(name, run_id, { ttl = M.TTL, reclaim = reclaim })
end

function M.renew(journal, name, run_id) journal:lock_renew(name, run_id, M.TTL) end
function M.release(journal, name, run_id) journal:lock_release(name, run_id) end
function M.list(journal) return journal:lock_list() end
function M.break_lock(journal, name) return journal:lock_break(name) end

return M
