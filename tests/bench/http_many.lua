-- The timed loop of http.sh: N GETs to the fixture's /delay route, either
-- with http.many at a limit or one after another; prints one line with the
-- wall time, the ideal, and the CPU time of this process per request.
-- usage: relish lua http_many.lua BASE_URL MODE N LIMIT DELAY_MS
--   MODE: parallel | sequential
local http = require "relish.http"
local host = require "relish._host"

local base, mode = assert(arg[1], "BASE_URL"), arg[2] or "parallel"
local n, limit, delay = tonumber(arg[3] or 500), tonumber(arg[4] or 50), tonumber(arg[5] or 50)
local url = base .. "/delay?ms=" .. delay

-- warm-up, not timed: the connections of the pool, the server's threads
local warm = {}
for i = 1, limit do warm[i] = base .. "/status/200" end
local _, errs = http.many(warm, { limit = limit })
assert(not errs, "warm-up failed")

local c0, t0 = os.clock(), host.now()
if mode == "parallel" then
  local reqs = {}
  for i = 1, n do reqs[i] = url end
  local rs, failed = http.many(reqs, { limit = limit })
  assert(not failed, "some requests failed")
  for i = 1, n do assert(rs[i].status == 200) end
else
  limit = 1
  for _ = 1, n do assert(assert(http.get(url)).status == 200) end
end
local wall, cpu = host.now() - t0, os.clock() - c0
local ideal = math.ceil(n / limit) * delay / 1000
print(string.format("%s n=%d limit=%d delay=%dms wall=%.3fs ideal=%.3fs ratio=%.2f cpu=%.3fs cpu_per_request=%.3fms",
  mode, n, limit, delay, wall, ideal, wall / ideal, cpu, cpu * 1000 / n))
