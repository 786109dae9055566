-- The engine's own run metrics, pushed to a Pushgateway when
-- RELISH_PUSHGATEWAY is set (a URL): after every real run (not a dry-run),
-- the group {job="relish", recipe=NAME} gets
--   relish_run_duration_seconds            the run's wall time
--   relish_runs_total{result=STATUS}       runs of the recipe per result
--   relish_last_success_timestamp_seconds  when a run last succeeded
-- relish_runs_total counts on from what the group holds (a Pushgateway
-- keeps the last push only), and the push is a POST, so a failed run
-- leaves the last success time where it was.
--
-- This is relish telling its monitoring about itself, not an action of the
-- recipe: it is not journaled, has no undo, and a Pushgateway that is down
-- or refuses costs a warning, never the run's outcome.
local metrics = require "relish.metrics"
local http = require "relish.http"

local M = {}

local JOB = "relish"

-- the URL without user:password@ (for messages)
local function shown(url)
  return (url:gsub("^(%a[%w+.-]*://)[^/@]*@", "%1"))
end

-- relish_runs_total's samples in the group, {result = count}
local function counts_so_far(base, recipe, timeout)
  local r = http.request { url = base .. "/api/v1/metrics", timeout = timeout, effect = false, expect = 200 }
  local out = {}
  for _, g in ipairs(r:json().data or {}) do
    local l = g.labels or {}
    local only = l.job == JOB and l.recipe == recipe
    for k in pairs(l) do
      if k ~= "job" and k ~= "recipe" and k ~= "instance" then only = false end
    end
    if only and l.instance ~= nil and l.instance ~= "" then only = false end
    local f = only and g.relish_runs_total
    for _, s in ipairs(f and f.metrics or {}) do
      local n = tonumber(s.value)
      if s.labels and s.labels.result and n then out[s.labels.result] = n end
    end
  end
  return out
end

-- push(url, {recipe=, status=, elapsed=, finished=(unix seconds)}, timeout)
-- -> true, or nil and a message for a warning
function M.push(url, run, timeout)
  timeout = timeout or 10
  local base = url:gsub("/+$", "")
  local ok, err = pcall(function()
    local reg = metrics.registry()
    reg:gauge { name = "relish_run_duration_seconds", help = "Wall time of the recipe's last run." }
      :set(run.elapsed)
    local total = reg:counter { name = "relish_runs_total", help = "Runs of the recipe, by result.",
      labels = { "result" } }
    local so_far = counts_so_far(base, run.recipe, timeout)
    so_far[run.status] = (so_far[run.status] or 0) + 1
    for result, n in pairs(so_far) do total:inc(n, { result = result }) end
    if run.status == "succeeded" then
      reg:gauge { name = "relish_last_success_timestamp_seconds", help = "When a run of the recipe last succeeded." }
        :set(run.finished)
    end
    http.request { method = "POST", url = base .. metrics.grouping_path(JOB, { recipe = run.recipe }),
      body = reg:render(), headers = { ["Content-Type"] = "text/plain; version=0.0.4" }, timeout = timeout,
      effect = false, expect = { 200, 202 } }
  end)
  if ok then return true end
  local msg = type(err) == "table" and (err.message or err.kind) or tostring(err)
  return nil, string.format("the run's metrics were not pushed to %s: %s", shown(base),
    (tostring(msg):gsub(base:gsub("%p", "%%%0"), shown(base))))
end

return M
