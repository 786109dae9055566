-- One analysis round's queries, for tests/bench/metrics.sh:
--   relish lua metrics_bench.lua PROMETHEUS_URL N
-- N different queries one after another (timing each), then the same N at
-- once (task.parallel); prints the slowest single query and both totals.
local metrics = require "relish.metrics"
local task = require "relish.task"
local host = require "relish._host"

local url, n = arg[1], tonumber(arg[2] or "100")
local prom = metrics.prometheus { url = url }
local queries = {}
for i = 1, n do
  queries[i] = string.format("sum(rate(prometheus_http_requests_total[1m])) * %d + count(up) * %d", i, i)
end
prom:query(queries[1]) -- the connection
local slowest, t0 = 0, host.now()
for _, q in ipairs(queries) do
  local s = host.now()
  prom:query(q)
  slowest = math.max(slowest, host.now() - s)
end
local sequential = host.now() - t0
local fns = {}
for i, q in ipairs(queries) do fns[i] = function() return prom:query(q) end end
t0 = host.now()
local cpu0 = os.clock()
task.parallel(fns)
local parallel, cpu = host.now() - t0, os.clock() - cpu0
print(string.format("queries=%d sequential=%.1fms parallel=%.1fms slowest_single=%.1fms ratio=%.2f client_cpu=%.1fms",
  n, sequential * 1000, parallel * 1000, slowest * 1000, parallel / slowest, cpu * 1000))
