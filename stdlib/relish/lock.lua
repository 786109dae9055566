-- relish.lock: leases on names, for the engine and `relish lock`. The journal
-- keeps them (journal:lock_*) and owns the stale rule (J.lease_stale: its
-- process gone from this host; a lease of another host, expired); a takeover
-- is written to the journal.
--
-- A run holds its leases with hold(): they are renewed from the event loop
-- every TTL/3 while anything waits (a command, a transfer, a sleep), and at
-- every step. A holder alive on this host is never taken over, so a step
-- the loop cannot tick in (pure Lua work) keeps its lock too. Losing a lease
-- (`relish lock break`, a takeover from another host) is noticed by the
-- renewal, and checked at every safe point: before each step and before each
-- effect is journaled (one indexed query); the run then stops there with an
-- error of kind "lock_lost".
--
-- A run that pauses at a manual gate parks its leases (lease:park() with
-- journal:pause_run): they stay held for the run with no process and no
-- expiry, so other runs of the recipe get exit 4 naming the paused run,
-- until `relish resume` or `relish rollback` takes them again (reclaim) or
-- `relish lock break` removes them.
local J = require "relish.journal"
local errors = require "relish._errors"

local M = {}

M.TTL = 600 -- seconds; RELISH_LOCK_TTL overrides it (tests)

-- The lease's time to live: RELISH_LOCK_TTL (seconds) or TTL.
function M.ttl()
  local env = os.getenv("RELISH_LOCK_TTL")
  if env == nil or env == "" then return M.TTL end
  local n = tonumber(env)
  if not n or n ~= n or n <= 0 or n == math.huge then
    errors.invalid("RELISH_LOCK_TTL must be a positive number of seconds, got '" .. env .. "'")
  end
  return n
end

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
  local opts = { ttl = M.ttl(), reclaim = reclaim }
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

function M.list(journal) return journal:lock_list() end
function M.break_lock(journal, name) return journal:lock_break(name) end

-- ---- a run's leases ----------------------------------------------------------

local Lease = {}
Lease.__index = Lease

-- Why the lease of name is lost: who holds it now, if anyone.
local function lost_text(journal, name)
  local l = holder_of(journal, name)
  if l then return string.format("lock '%s' was taken over by %s", name, J.holder_text(l)) end
  return string.format("lock '%s' was broken (relish lock break) while this run held it", name)
end

-- hold(journal, names, run_id [, reclaim [, wait]]) -> lease: takes every
-- name in order (as acquire; the ones taken are let go when a later one is
-- held), and renews them from the event loop until lease:release().
function M.hold(journal, names, run_id, reclaim, wait)
  local taken = {}
  for _, name in ipairs(names) do
    local ok, err = pcall(M.acquire, journal, name, run_id, reclaim, wait)
    if not ok then
      for _, n in ipairs(taken) do journal:lock_release(n, run_id, true) end
      error(err, 0)
    end
    taken[#taken + 1] = name
  end
  local lease = setmetatable({ journal = journal, names = taken, run_id = run_id, ttl = M.ttl() }, Lease)
  if #taken > 0 then
    -- a failing renewal (a busy journal) is tried again at the next tick; it
    -- never raises into whatever code the loop was waiting for
    lease.ticker = require("relish._loop").every(lease.ttl / 3, function() pcall(lease.renew, lease) end)
  end
  return lease
end

-- Renews every lease; returns false (and remembers why) when one is lost.
function Lease:renew()
  if self.lost then return false end
  for _, name in ipairs(self.names) do
    if not self.journal:lock_renew(name, self.run_id, self.ttl) then
      self.lost = lost_text(self.journal, name)
      return false
    end
  end
  return true
end

-- The error a run stops with once it lost a lease.
function Lease:error()
  return errors.value("lock_lost", "%s: the run stopped here", self.lost)
end

-- Raises kind "lock_lost" unless this process still holds every lease (a
-- safe point: a step or an effect is about to start).
function Lease:check()
  if not self.lost then
    local name = self.journal:lock_held(self.names, self.run_id)
    if name then self.lost = lost_text(self.journal, name) end
  end
  if self.lost then error(self:error(), 0) end
end

-- Stops the renewal and hands back the names this process holds, without
-- letting go of them: journal:pause_run parks them for a paused run. A
-- release afterwards lets go of nothing.
function Lease:park()
  if self.ticker then self.ticker:stop() end
  self.ticker = nil
  local names = self.names
  self.names = {}
  return names
end

-- Stops the renewal and lets go of what this process still holds.
function Lease:release()
  if self.ticker then self.ticker:stop() end
  self.ticker = nil
  for _, name in ipairs(self.names) do self.journal:lock_release(name, self.run_id, true) end
  self.names = {}
end

return M
