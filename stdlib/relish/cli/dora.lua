-- relish dora: the four DORA metrics of the deployments in the journal, per
-- service and environment, each with its performance band. The journal does
-- the counting and the medians in SQL (journal:dora); this file judges and
-- prints. The definitions and thresholds are in docs/reference/cli.md.
local invalid = require("relish._errors").invalid
local J = require "relish.journal"
local json = require "relish.json"
local host = require "relish._host"

local DAY, WEEK, MONTH = 86400, 7 * 86400, 30 * 86400

-- A successful deployment rolled back (relish rollback) within this long of
-- its end is a failed change (so is one rolled back before the next
-- deployment of its service and environment started).
local ROLLBACK_WINDOW = DAY

-- The bands of the 2023 State of DevOps report (Accelerate), numerically:
-- frequency in successful deployments per day; lead time and recovery in
-- seconds; the failure rate as a ratio. The first band whose test holds.
local BANDS = {
  frequency = { { "elite", function(v) return v >= 1 end }, { "high", function(v) return v >= 1 / 7 end },
    { "medium", function(v) return v >= 1 / 30 end }, { "low", function() return true end } },
  lead_time = { { "elite", function(v) return v < DAY end }, { "high", function(v) return v <= WEEK end },
    { "medium", function(v) return v <= MONTH end }, { "low", function() return true end } },
  change_failure_rate = { { "elite", function(v) return v <= 0.05 end }, { "high", function(v) return v <= 0.10 end },
    { "medium", function(v) return v <= 0.15 end }, { "low", function() return true end } },
  recovery_time = { { "elite", function(v) return v < 3600 end }, { "high", function(v) return v < DAY end },
    { "medium", function(v) return v <= WEEK end }, { "low", function() return true end } },
}

local function band(metric, v)
  if v == nil then return nil end
  for _, b in ipairs(BANDS[metric]) do
    if b[2](v) then return b[1] end
  end
end

-- seconds or nil -> 45s, 12m, 3.5h, 2.1d
local function span(s)
  if s == nil then return "-" end
  if s < 60 then return string.format("%ds", math.floor(s + 0.5)) end
  if s < 3600 then return string.format("%dm", math.floor(s / 60 + 0.5)) end
  if s < DAY then return string.format("%.1fh", s / 3600) end
  return string.format("%.1fd", s / DAY)
end

local iso = J.iso

local function report(f)
  local since = f.since or "30d"
  local seconds, err = require("relish.dsl").duration(since, "--since")
  if not seconds then invalid(err) end
  local now = host.time()
  local journal = J.open(f.state)
  local rows = journal:dora { since = now - seconds, ["until"] = now, recipe = f.recipe, service = f.service,
    environment = f.environment, window = ROLLBACK_WINDOW }
  journal:close()
  local days = seconds / DAY
  local out = { since = iso(now - seconds), ["until"] = iso(now), days = days, rollback_window_s = ROLLBACK_WINDOW,
    bands = "State of DevOps 2023", services = {} }
  for i, r in ipairs(rows) do
    local per_day = r.succeeded / days
    local rate = r.deployments > 0 and r.failed / r.deployments or nil
    out.services[i] = {
      service = r.service, environment = r.environment, deployments = r.deployments, succeeded = r.succeeded,
      failed = r.failed, first_deployment = r.first_t and iso(r.first_t), last_deployment = r.last_t and iso(r.last_t),
      deployment_frequency = { per_day = per_day, per_week = per_day * 7, band = band("frequency", per_day) },
      lead_time = { median_s = r.lead_median, commits = r.lead_commits, band = band("lead_time", r.lead_median) },
      change_failure_rate = { rate = rate, failed = r.failed, deployments = r.deployments,
        band = band("change_failure_rate", rate) },
      recovery_time = { median_s = r.recovery_median, recoveries = r.recoveries, unrecovered = r.unrecovered,
        band = band("recovery_time", r.recovery_median) },
    }
  end
  return out
end

local function as_json(rep)
  -- what has no data (no commits recorded, no failure recovered) is null
  local N = { lead_time = { "median_s", "band" }, recovery_time = { "median_s", "band" },
    change_failure_rate = { "rate", "band" }, deployment_frequency = { "band" } }
  for _, s in ipairs(rep.services) do
    for m, keys in pairs(N) do
      for _, k in ipairs(keys) do
        if s[m][k] == nil then s[m][k] = json.null end
      end
    end
  end
  rep.services = json.array(rep.services)
  return json.encode(rep, { pretty = true }) .. "\n"
end

-- Prometheus text exposition: one gauge per metric, labels service and
-- environment; the band as relish_dora_band{metric=, band=} 1.
local function label(v)
  return (v:gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

local function number(v)
  if v ~= v then return "NaN" end
  if math.type(v) == "integer" then return tostring(v) end
  return string.format("%.15g", v)
end

local GAUGES = {
  { "relish_dora_deployments", "Deployments that finished in the window (succeeded or failed).",
    function(s) return s.deployments end },
  { "relish_dora_deployments_per_day", "Successful deployments per day over the window.",
    function(s) return s.deployment_frequency.per_day end },
  { "relish_dora_lead_time_seconds", "Median time from a shipped commit to the successful deployment that shipped it.",
    function(s) return s.lead_time.median_s end },
  { "relish_dora_change_failure_ratio", "Failed deployments (failed, rolled back, or followed by a rollback) / deployments.",
    function(s) return s.change_failure_rate.rate end },
  { "relish_dora_recovery_time_seconds", "Median time from a failed deployment to the next successful one.",
    function(s) return s.recovery_time.median_s end },
}

local function as_prometheus(rep)
  local lines = {}
  local function labels(s, extra)
    return string.format('{service="%s",environment="%s"%s}', label(s.service), label(s.environment), extra or "")
  end
  for _, g in ipairs(GAUGES) do
    lines[#lines + 1] = "# HELP " .. g[1] .. " " .. g[2]
    lines[#lines + 1] = "# TYPE " .. g[1] .. " gauge"
    for _, s in ipairs(rep.services) do
      local v = g[3](s)
      if v ~= nil then lines[#lines + 1] = g[1] .. labels(s) .. " " .. number(v) end
    end
  end
  lines[#lines + 1] = "# HELP relish_dora_band The DORA performance band of each metric (State of DevOps 2023): 1."
  lines[#lines + 1] = "# TYPE relish_dora_band gauge"
  for _, s in ipairs(rep.services) do
    for _, m in ipairs({ "deployment_frequency", "lead_time", "change_failure_rate", "recovery_time" }) do
      local b = s[m].band
      if b then lines[#lines + 1] = "relish_dora_band" .. labels(s, string.format(',metric="%s",band="%s"', m, b)) .. " 1" end
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

local function as_table(rep)
  local o = require "relish.output"
  local head = string.format("DORA metrics, %s to %s (%g days; bands: State of DevOps 2023)\n",
    rep.since:sub(1, 16):gsub("T", " "), rep["until"]:sub(1, 16):gsub("T", " "), math.floor(rep.days * 10 + 0.5) / 10)
  if #rep.services == 0 then return head .. "no deployments in this window\n" end
  -- the metric columns are a value and its band, each aligned
  local t = { { "SERVICE", "ENV", "DEPLOYS", { "FREQUENCY", "" }, { "LEAD TIME", "" }, { "CHANGE FAILURE", "" },
    { "RECOVERY", "" } } }
  for _, s in ipairs(rep.services) do
    local f = s.deployment_frequency
    local freq = f.per_day >= 1 and string.format("%.1f/day", f.per_day) or string.format("%.1f/week", f.per_week)
    local c = s.change_failure_rate
    t[#t + 1] = { o.text(s.service), o.text(s.environment ~= "" and s.environment or "-"), tostring(s.deployments),
      { freq, f.band or "" },
      { span(s.lead_time.median_s), s.lead_time.band or "" },
      { c.rate and string.format("%.1f%% (%d/%d)", c.rate * 100, c.failed, c.deployments) or "-", c.band or "" },
      { span(s.recovery_time.median_s), s.recovery_time.band or "" } }
  end
  local function len(c) return utf8.len(c) or #c end
  local vw, bw = {}, {}
  for _, row in ipairs(t) do
    for i, c in ipairs(row) do
      if type(c) == "table" then
        vw[i] = math.max(vw[i] or 0, len(c[1]))
        bw[i] = math.max(bw[i] or 0, len(c[2]))
      else
        vw[i] = math.max(vw[i] or 0, len(c))
      end
    end
  end
  local lines = { head }
  for r, row in ipairs(t) do
    local cells = {}
    for i, c in ipairs(row) do
      if type(c) == "table" then
        if r == 1 then -- the header spans the value and the band
          c = c[1] .. string.rep(" ", vw[i] + 2 + bw[i] - len(c[1]))
        else
          c = c[1] .. string.rep(" ", vw[i] - len(c[1])) .. "  " .. c[2] .. string.rep(" ", bw[i] - len(c[2]))
        end
      else
        c = c .. string.rep(" ", vw[i] - len(c))
      end
      cells[i] = c
    end
    lines[#lines + 1] = (table.concat(cells, "  "):gsub("%s+$", "")) .. "\n"
  end
  return table.concat(lines)
end

return {
  report = report, band = band,
  main = function(opts)
    local f = opts.flags
    local rep = report(f)
    local fmt = f.format or "table"
    if fmt == "json" then
      io.write(as_json(rep))
    elseif fmt == "prometheus" then
      io.write(as_prometheus(rep))
    else
      io.write(as_table(rep))
    end
    return 0
  end,
}
