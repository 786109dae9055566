-- relish.metrics: Prometheus for releases. A client for the HTTP API
-- (reads: effect = false, planned runs query too) whose results keep their
-- type, and a registry of counters, gauges and histograms rendered in the
-- text exposition format and pushed to a Pushgateway (an effect with an
-- undo). See docs/reference/metrics.md.
local effect = require "relish.effect"
local errors = require "relish._errors"
local http = require "relish.http"
local json = require "relish.json"

local M = {}

local usage = errors.usage_for(debug.getinfo(1, "S").source)

local function is_text(v)
  if type(v) == "string" then return true end
  local ok, secret = pcall(require, "relish.secret")
  if ok and secret.is(v) then return true end
  if type(v) ~= "table" or #v == 0 then return false end
  for _, p in ipairs(v) do
    if type(p) ~= "string" and not (ok and secret.is(p)) then return false end
  end
  return true
end

local function check_type(fname, name, v, want, ok)
  if v ~= nil and not ok then usage(fname, string.format("%s must be %s, got %s", name, want, type(v))) end
end

-- ---- numbers ---------------------------------------------------------------

-- Prometheus' sample values are strings: "NaN", "+Inf", "-Inf" or a number.
local function number(s)
  if s == "NaN" then return 0 / 0 end
  if s == "+Inf" or s == "Inf" then return math.huge end
  if s == "-Inf" then return -math.huge end
  return tonumber(s)
end
M.number = number

-- A number as Prometheus writes it.
local function format_number(v)
  if v ~= v then return "NaN" end
  if v == math.huge then return "+Inf" end
  if v == -math.huge then return "-Inf" end
  if math.type(v) == "integer" then return string.format("%d", v) end
  if v == math.floor(v) and math.abs(v) < 2 ^ 53 then return string.format("%d", math.tointeger(v)) end
  for digits = 15, 17 do
    local text = string.format("%." .. digits .. "g", v)
    if digits == 17 or tonumber(text) == v then return text end
  end
end

-- A time for the API: a number of seconds since the epoch, or a string
-- (RFC 3339) passed as is.
local function api_time(fname, name, v)
  if v == nil then return nil end
  if type(v) == "number" then return string.format("%.3f", v) end
  if type(v) == "string" then return v end
  usage(fname, string.format("%s must be a number of seconds since the epoch or a string, got %s", name, type(v)))
end

-- ---- the Prometheus client -------------------------------------------------

local Result = {}
Result.__index = Result

local Client = {}
Client.__index = Client

local CLIENT_OPTS = { url = true, auth = true, headers = true, ca = true, timeout = true }

-- prometheus{url=, auth=, headers=, ca=, timeout=} -> client
function M.prometheus(opts)
  local fname = "metrics.prometheus"
  if type(opts) ~= "table" then usage(fname, "expected a table of options, got " .. type(opts)) end
  errors.check_options(usage, fname, opts, CLIENT_OPTS)
  if opts.url == nil then usage(fname, "url is required") end
  if type(opts.url) ~= "string" then usage(fname, "url must be a string, got " .. type(opts.url)) end
  check_type(fname, "auth", opts.auth, "a table", type(opts.auth) == "table")
  check_type(fname, "headers", opts.headers, "a table", type(opts.headers) == "table")
  check_type(fname, "ca", opts.ca, "a string or a secret", is_text(opts.ca))
  check_type(fname, "timeout", opts.timeout, "a positive number of seconds",
    type(opts.timeout) == "number" and opts.timeout > 0)
  return setmetatable({ url = (opts.url:gsub("/+$", "")), auth = opts.auth, headers = opts.headers, ca = opts.ca,
    timeout = opts.timeout or 30 }, Client)
end

local function form(params)
  local keys, parts = {}, {}
  for k in pairs(params) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local v = params[k]
    if type(v) == "table" then
      for _, x in ipairs(v) do parts[#parts + 1] = k .. "=" .. http.escape(x) end
    else
      parts[#parts + 1] = k .. "=" .. http.escape(v)
    end
  end
  return table.concat(parts, "&")
end

-- One API call by POST form: -> the decoded `data` and `warnings`, or raises.
local function call(client, path, params, promql)
  local headers = { ["Content-Type"] = "application/x-www-form-urlencoded", Accept = "application/json" }
  for k, v in pairs(client.headers or {}) do headers[k] = v end
  local r = http.request { method = "POST", url = client.url .. path, body = form(params), headers = headers,
    auth = client.auth, ca = client.ca, timeout = client.timeout, effect = false }
  local ok, body = pcall(json.decode, r.body)
  if not ok or type(body) ~= "table" then
    local e = errors.value("http_status", "POST %s%s: expected a Prometheus API answer, got status %d: %s",
      client.url, path, r.status, r.body:sub(1, 200))
    e.status, e.query = r.status, promql
    error(e, 0)
  end
  if body.status ~= "success" then
    local e = errors.value(body.errorType or "internal", "%s", tostring(body.error or "status " .. r.status))
    e.query, e.status = promql, r.status
    error(e, 0)
  end
  return body.data, body.warnings or {}
end

local function labels_of(metric)
  local out = {}
  for k, v in pairs(metric or {}) do out[k] = v end
  return out
end

local function result_of(data, warnings)
  local t, res = data.resultType, data.result
  local series = {}
  if t == "vector" then
    for _, s in ipairs(res) do
      series[#series + 1] = { labels = labels_of(s.metric), time = s.value[1], value = number(s.value[2]) }
    end
  elseif t == "matrix" then
    for _, s in ipairs(res) do
      local values = {}
      for _, p in ipairs(s.values or {}) do values[#values + 1] = { p[1], number(p[2]) } end
      series[#series + 1] = { labels = labels_of(s.metric), values = values }
    end
  elseif t == "scalar" then
    series[1] = { labels = {}, time = res[1], value = number(res[2]) }
  elseif t == "string" then
    series[1] = { labels = {}, time = res[1], value = res[2] }
  end
  return setmetatable({ type = t, series = series, warnings = warnings }, Result)
end

local function check_promql(fname, promql)
  if type(promql) ~= "string" then usage(fname, "expected a PromQL query (a string), got " .. type(promql)) end
end

-- client:query(promql [, {time=}]) -> result
function Client:query(promql, opts)
  local fname = "query"
  check_promql(fname, promql)
  opts = errors.check_options(usage, fname, opts, { time = true })
  local data, warnings = call(self, "/api/v1/query", { query = promql, time = api_time(fname, "time", opts.time) },
    promql)
  return result_of(data, warnings)
end

-- client:query_range(promql, {start=, stop=, step=}) -> result (a matrix)
function Client:query_range(promql, opts)
  local fname = "query_range"
  check_promql(fname, promql)
  opts = errors.check_options(usage, fname, opts, { start = true, stop = true, step = true })
  for _, k in ipairs { "start", "stop", "step" } do
    if opts[k] == nil then usage(fname, k .. " is required") end
  end
  local step = opts.step
  if type(step) == "number" then
    if step <= 0 then usage(fname, "step must be a positive number of seconds, got " .. step) end
    step = format_number(step)
  elseif type(step) ~= "string" then
    usage(fname, "step must be a number of seconds or a duration string, got " .. type(step))
  end
  local data, warnings = call(self, "/api/v1/query_range", { query = promql,
    start = api_time(fname, "start", opts.start), ["end"] = api_time(fname, "stop", opts.stop), step = step }, promql)
  return result_of(data, warnings)
end

-- client:series(matchers [, {start=, stop=}]) -> a list of label sets
function Client:series(matchers, opts)
  local fname = "series"
  if type(matchers) == "string" then matchers = { matchers } end
  if type(matchers) ~= "table" or #matchers == 0 then
    usage(fname, "expected a series selector or a list of them, got " .. type(matchers))
  end
  for i, m in ipairs(matchers) do
    if type(m) ~= "string" then usage(fname, string.format("matcher %d must be a string, got %s", i, type(m))) end
  end
  opts = errors.check_options(usage, fname, opts, { start = true, stop = true })
  local data = call(self, "/api/v1/series", { ["match[]"] = matchers, start = api_time(fname, "start", opts.start),
    ["end"] = api_time(fname, "stop", opts.stop) }, table.concat(matchers, ", "))
  local out = {}
  for i, s in ipairs(data) do out[i] = labels_of(s) end
  return out
end

-- client:labels() -> the sorted list of label names
function Client:labels()
  local data = call(self, "/api/v1/labels", {}, nil)
  local out = {}
  for i, s in ipairs(data) do out[i] = s end
  table.sort(out)
  return out
end

-- result:value() -> the one sample's value; raises `no_data` when the
-- result has none, `ambiguous` when it has more than one.
function Result:value()
  local n = 0
  local v
  for _, s in ipairs(self.series) do
    if s.values then
      n = n + #s.values
      if s.values[1] then v = s.values[#s.values][2] end
    else
      n = n + 1
      v = s.value
    end
  end
  if n == 1 then return v end
  if n == 0 then error(errors.value("no_data", "the %s result has no sample", self.type), 2) end
  local e = errors.value("ambiguous", "the %s result has %d samples in %d series, expected one", self.type, n,
    #self.series)
  e.count = n
  error(e, 2)
end

-- ---- the registry and the text exposition format --------------------------

local NAME = "^[a-zA-Z_:][a-zA-Z0-9_:]*$"
local LABEL = "^[a-zA-Z_][a-zA-Z0-9_]*$"

local function escape_help(s)
  return (s:gsub("\\", "\\\\"):gsub("\n", "\\n"))
end

local function escape_value(s)
  return (s:gsub("\\", "\\\\"):gsub("\n", "\\n"):gsub('"', '\\"'))
end

local function label_text(names, values, extra_name, extra_value)
  local parts = {}
  for i, n in ipairs(names) do parts[#parts + 1] = string.format('%s="%s"', n, escape_value(values[i])) end
  if extra_name then parts[#parts + 1] = string.format('%s="%s"', extra_name, escape_value(extra_value)) end
  if #parts == 0 then return "" end
  return "{" .. table.concat(parts, ",") .. "}"
end

local Registry = {}
Registry.__index = Registry

local Metric = {}
Metric.__index = Metric

-- registry() -> a registry of metrics
function M.registry()
  return setmetatable({ metrics = {}, by_name = {} }, Registry)
end

local DEFAULT_BUCKETS = { 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }

local function define(reg, kind, spec)
  local fname = kind
  if type(spec) ~= "table" then usage(fname, "expected a table {name=, help=, labels=}, got " .. type(spec)) end
  errors.check_options(usage, fname, spec, { name = true, help = true, labels = true, buckets = kind == "histogram" })
  if type(spec.name) ~= "string" or not spec.name:find(NAME) then
    usage(fname, "name must be a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), got " .. tostring(spec.name))
  end
  if reg.by_name[spec.name] then usage(fname, "a metric named '" .. spec.name .. "' is already registered") end
  check_type(fname, "help", spec.help, "a string", type(spec.help) == "string")
  local labels = {}
  if spec.labels ~= nil then
    if type(spec.labels) ~= "table" then usage(fname, "labels must be a list of names, got " .. type(spec.labels)) end
    local seen = {}
    for i, l in ipairs(spec.labels) do
      if type(l) ~= "string" or not l:find(LABEL) or l:sub(1, 2) == "__" then
        usage(fname, string.format("labels[%d] must be a label name, got %s", i, tostring(l)))
      end
      if kind == "histogram" and l == "le" then usage(fname, "a histogram cannot have a label 'le'") end
      if seen[l] then usage(fname, "label '" .. l .. "' given twice") end
      seen[l] = true
      labels[i] = l
    end
  end
  local buckets
  if kind == "histogram" then
    buckets = {}
    local given = spec.buckets or DEFAULT_BUCKETS
    if type(given) ~= "table" or #given == 0 then usage(fname, "buckets must be a list of numbers") end
    for i, b in ipairs(given) do
      if type(b) ~= "number" or b ~= b then usage(fname, string.format("buckets[%d] must be a number", i)) end
      if i > 1 and b <= given[i - 1] then usage(fname, "buckets must be in increasing order") end
      if b ~= math.huge then buckets[#buckets + 1] = b end
    end
  end
  local m = setmetatable({ kind = kind, name = spec.name, help = spec.help, labels = labels, buckets = buckets,
    children = {}, order = {} }, Metric)
  reg.metrics[#reg.metrics + 1] = m
  reg.by_name[m.name] = m
  return m
end

-- registry:counter{name=, help=, labels={...}} -> counter (inc)
function Registry:counter(spec) return define(self, "counter", spec) end
-- registry:gauge{name=, help=, labels={...}} -> gauge (set, inc)
function Registry:gauge(spec) return define(self, "gauge", spec) end
-- registry:histogram{name=, help=, labels={...}, buckets={...}} -> histogram (observe)
function Registry:histogram(spec) return define(self, "histogram", spec) end

-- The child of m for the label values given as a table name -> value.
local function child(m, fname, labels)
  if labels ~= nil and type(labels) ~= "table" then
    usage(fname, "labels must be a table of label values, got " .. type(labels))
  end
  labels = labels or {}
  local values = {}
  for i, n in ipairs(m.labels) do
    local v = labels[n]
    if type(v) == "number" then v = format_number(v) end
    if type(v) ~= "string" then usage(fname, string.format("label '%s' needs a value (a string)", n)) end
    values[i] = v
  end
  for k in pairs(labels) do
    local known = false
    for _, n in ipairs(m.labels) do known = known or n == k end
    if not known then usage(fname, string.format("%s has no label '%s'", m.name, tostring(k))) end
  end
  local key = table.concat(values, "\0")
  local c = m.children[key]
  if not c then
    c = { values = values, value = 0 }
    if m.buckets then
      c.counts, c.sum, c.count = {}, 0, 0
      for i = 1, #m.buckets do c.counts[i] = 0 end
    end
    m.children[key] = c
    m.order[#m.order + 1] = key
  end
  return c
end

-- inc([n = 1] [, labels]): counters and gauges
function Metric:inc(n, labels)
  if type(n) == "table" then n, labels = nil, n end
  local fname = self.kind .. ":inc"
  if self.kind == "histogram" then usage(fname, "a histogram takes observe, not inc") end
  if n ~= nil and (type(n) ~= "number" or n ~= n) then usage(fname, "expected a number, got " .. type(n)) end
  if self.kind == "counter" and n and n < 0 then usage(fname, "a counter cannot decrease (got " .. n .. ")") end
  local c = child(self, fname, labels)
  c.value = c.value + (n or 1)
  return c.value
end

-- set(v [, labels]): gauges
function Metric:set(v, labels)
  local fname = self.kind .. ":set"
  if self.kind ~= "gauge" then usage(fname, "only a gauge can be set") end
  if type(v) ~= "number" then usage(fname, "expected a number, got " .. type(v)) end
  child(self, fname, labels).value = v
end

-- observe(v [, labels]): histograms
function Metric:observe(v, labels)
  local fname = self.kind .. ":observe"
  if self.kind ~= "histogram" then usage(fname, "only a histogram observes") end
  if type(v) ~= "number" or v ~= v then usage(fname, "expected a number, got " .. type(v)) end
  local c = child(self, fname, labels)
  for i, b in ipairs(self.buckets) do
    if v <= b then c.counts[i] = c.counts[i] + 1 end
  end
  c.sum, c.count = c.sum + v, c.count + 1
end

local function sorted_children(m)
  local keys = {}
  for _, k in ipairs(m.order) do keys[#keys + 1] = k end
  table.sort(keys)
  if #m.labels == 0 and #keys == 0 then
    -- a metric without labels shows its zero before its first use
    return { { values = {}, value = 0, counts = m.buckets and setmetatable({}, { __index = function() return 0 end }),
      sum = 0, count = 0 } }
  end
  local out = {}
  for i, k in ipairs(keys) do out[i] = m.children[k] end
  return out
end

-- registry:render() -> the metrics in the text exposition format 0.0.4
function Registry:render()
  local out = {}
  for _, m in ipairs(self.metrics) do
    if m.help then out[#out + 1] = string.format("# HELP %s %s", m.name, escape_help(m.help)) end
    out[#out + 1] = string.format("# TYPE %s %s", m.name, m.kind)
    for _, c in ipairs(sorted_children(m)) do
      if m.kind == "histogram" then
        for i, b in ipairs(m.buckets) do
          out[#out + 1] = string.format("%s_bucket%s %s", m.name, label_text(m.labels, c.values, "le",
            format_number(b)), format_number(c.counts[i]))
        end
        out[#out + 1] = string.format("%s_bucket%s %s", m.name, label_text(m.labels, c.values, "le", "+Inf"),
          format_number(c.count))
        out[#out + 1] = string.format("%s_sum%s %s", m.name, label_text(m.labels, c.values), format_number(c.sum))
        out[#out + 1] = string.format("%s_count%s %s", m.name, label_text(m.labels, c.values),
          format_number(c.count))
      else
        out[#out + 1] = string.format("%s%s %s", m.name, label_text(m.labels, c.values), format_number(c.value))
      end
    end
  end
  return #out == 0 and "" or table.concat(out, "\n") .. "\n"
end

-- ---- Pushgateway -----------------------------------------------------------

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

-- base64url without padding
local function base64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local n = (a << 16) | ((b or 0) << 8) | (c or 0)
    local k = b == nil and 2 or (c == nil and 3 or 4)
    for j = 1, k do
      local idx = (n >> (6 * (4 - j))) & 63
      out[#out + 1] = B64:sub(idx + 1, idx + 1)
    end
  end
  return table.concat(out)
end
M.base64url = base64url

-- One segment pair of a grouping key: "name/value", or "name@base64/..." for
-- a value with "/" or an empty one.
local function key_segment(name, value)
  if value == "" then return name .. "@base64/=" end
  if value:find("/", 1, true) then return name .. "@base64/" .. base64url(value) end
  return name .. "/" .. http.escape(value)
end

-- grouping_path(job, grouping) -> "/metrics/job/JOB/NAME/VALUE..."
function M.grouping_path(job, grouping)
  local parts = { "/metrics", key_segment("job", job) }
  local names = {}
  for k in pairs(grouping or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do parts[#parts + 1] = key_segment(k, grouping[k]) end
  return table.concat(parts, "/")
end

-- The families of a group as /api/v1/metrics shows them, rendered back as
-- text (without the Pushgateway's own push_time_seconds and
-- push_failure_time_seconds); the group's own labels are left to the path.
local function render_group(group)
  local names = {}
  for k, v in pairs(group) do
    if type(v) == "table" and v.metrics and k ~= "push_time_seconds" and k ~= "push_failure_time_seconds" then
      names[#names + 1] = k
    end
  end
  table.sort(names)
  local glabels = group.labels or {}
  local out = {}
  local function labels(l, extra, ev)
    local keys, parts = {}, {}
    for k in pairs(l or {}) do
      -- an empty value is no label (the Pushgateway adds instance="")
      if glabels[k] == nil and l[k] ~= "" then keys[#keys + 1] = k end
    end
    table.sort(keys)
    for _, k in ipairs(keys) do parts[#parts + 1] = string.format('%s="%s"', k, escape_value(l[k])) end
    if extra then parts[#parts + 1] = string.format('%s="%s"', extra, escape_value(ev)) end
    return #parts == 0 and "" or "{" .. table.concat(parts, ",") .. "}"
  end
  for _, name in ipairs(names) do
    local f = group[name]
    local kind = (f.type or "untyped"):lower()
    if f.help and f.help ~= "" then out[#out + 1] = string.format("# HELP %s %s", name, escape_help(f.help)) end
    out[#out + 1] = string.format("# TYPE %s %s", name, kind)
    for _, s in ipairs(f.metrics) do
      if kind == "histogram" then
        local les = {}
        for le in pairs(s.buckets or {}) do les[#les + 1] = le end
        table.sort(les, function(a, b) return number(a) < number(b) end)
        for _, le in ipairs(les) do
          out[#out + 1] = string.format("%s_bucket%s %s", name, labels(s.labels, "le", le), s.buckets[le])
        end
        if not (s.buckets or {})["+Inf"] then
          out[#out + 1] = string.format("%s_bucket%s %s", name, labels(s.labels, "le", "+Inf"), s.count)
        end
        out[#out + 1] = string.format("%s_sum%s %s", name, labels(s.labels), s.sum)
        out[#out + 1] = string.format("%s_count%s %s", name, labels(s.labels), s.count)
      elseif kind == "summary" then
        local qs = {}
        for q in pairs(s.quantiles or {}) do qs[#qs + 1] = q end
        table.sort(qs, function(a, b) return number(a) < number(b) end)
        for _, q in ipairs(qs) do
          out[#out + 1] = string.format("%s%s %s", name, labels(s.labels, "quantile", q), s.quantiles[q])
        end
        out[#out + 1] = string.format("%s_sum%s %s", name, labels(s.labels), s.sum)
        out[#out + 1] = string.format("%s_count%s %s", name, labels(s.labels), s.count)
      else
        out[#out + 1] = string.format("%s%s %s", name, labels(s.labels), s.value)
      end
    end
  end
  return #out == 0 and "" or table.concat(out, "\n") .. "\n"
end
M._render_group = render_group

local function same_labels(a, b)
  for k, v in pairs(a) do if b[k] ~= v then return false end end
  for k, v in pairs(b) do if a[k] ~= v then return false end end
  return true
end

-- The group's current content as text, or nil when there is no such group.
local function read_group(base, job, grouping, opts)
  local r = http.request { url = base .. "/api/v1/metrics", ca = opts.ca, timeout = opts.timeout, effect = false,
    expect = 200 }
  local want = { job = job }
  for k, v in pairs(grouping or {}) do want[k] = v end
  for _, g in ipairs(r:json().data or {}) do
    if same_labels(g.labels or {}, want) then return render_group(g) end
  end
  return nil
end
M._read_group = read_group

local EXPOSITION = "text/plain; version=0.0.4"

local function send(method, url, body, opts)
  return http.request { method = method, url = url, body = body, ca = opts.ca, timeout = opts.timeout or 30,
    headers = body and { ["Content-Type"] = EXPOSITION } or nil, effect = false, expect = { 200, 202 } }
end

local function apply_push(a)
  local r = send(a.method, a.url, a.body, a)
  return { status = r.status, url = a.url }
end

local function plan_push(a)
  return { status = 0, planned = true, url = a.url }
end

-- Whether the Pushgateway still has the group at record.path.
local function has_group(record, opts)
  local r = http.request { url = record.base .. "/api/v1/metrics", ca = opts.ca, timeout = opts.timeout, effect = false,
    expect = 200 }
  for _, g in ipairs(r:json().data or {}) do
    local job, grouping = nil, {}
    for k, v in pairs(g.labels or {}) do
      if k == "job" then job = v else grouping[k] = v end
    end
    if job and M.grouping_path(job, grouping) == record.path then return true end
  end
  return false
end

local DELETE_WAIT = 10 -- seconds a deleted group may take to go

-- undo: the group back as it was: deleted when the push created it, else
-- replaced by its previous content. The Pushgateway answers a DELETE with
-- 202 and deletes later: the undo is done once the group is gone.
local function undo_push(record)
  local url = record.base .. record.path
  local opts = { ca = record.ca, timeout = record.timeout }
  if record.previous == nil then
    local r = send("DELETE", url, nil, opts)
    if r.status == 202 then
      local task = require "relish.task"
      local deadline = require("relish._host").now() + DELETE_WAIT
      while has_group(record, opts) do
        if require("relish._host").now() > deadline then
          error(errors.value("pushgateway", "the Pushgateway accepted the deletion of %s but still has the group " ..
            "after %ds", url, DELETE_WAIT), 0)
        end
        task.sleep(0.05)
      end
    end
  else
    send("PUT", url, record.previous, opts)
  end
end

effect.register { kind = "metrics.push", module = "relish.metrics", apply = apply_push, plan = plan_push,
  undo = undo_push, fields = { "base", "path" } }

local PUSH_OPTS = { url = true, job = true, grouping = true, method = true, ca = true, timeout = true }

-- registry:push{url=, job=, grouping={name=value}, method="put"|"post", ca=, timeout=}
-- -> {status=, url=} ({planned = true} in a dry-run): an effect of kind
-- metrics.push, undone by deleting the group it created or putting back
-- what the group held.
function Registry:push(opts)
  local fname = "push"
  if type(opts) ~= "table" then usage(fname, "expected a table {url=, job=, ...}, got " .. type(opts)) end
  errors.check_options(usage, fname, opts, PUSH_OPTS)
  if type(opts.url) ~= "string" then usage(fname, "url must be a string, got " .. type(opts.url)) end
  if type(opts.job) ~= "string" or opts.job == "" then
    usage(fname, "job must be a non-empty string, got " .. (opts.job == "" and "''" or type(opts.job)))
  end
  local grouping = {}
  if opts.grouping ~= nil then
    if type(opts.grouping) ~= "table" then usage(fname, "grouping must be a table, got " .. type(opts.grouping)) end
    for k, v in pairs(opts.grouping) do
      if type(k) ~= "string" or not k:find(LABEL) or k == "job" then
        usage(fname, "grouping key " .. tostring(k) .. " is not a label name other than job")
      end
      if type(v) == "number" then v = format_number(v) end
      if type(v) ~= "string" then usage(fname, string.format("grouping.%s must be a string, got %s", k, type(v))) end
      grouping[k] = v
    end
  end
  local method = (opts.method or "put"):lower()
  if method ~= "put" and method ~= "post" then usage(fname, "method must be 'put' or 'post', got " .. method) end
  check_type(fname, "ca", opts.ca, "a string (a file or PEM)", type(opts.ca) == "string")
  check_type(fname, "timeout", opts.timeout, "a positive number of seconds",
    type(opts.timeout) == "number" and opts.timeout > 0)
  local base = opts.url:gsub("/+$", "")
  local path = M.grouping_path(opts.job, grouping)
  local body = self:render()
  local previous = read_group(base, opts.job, grouping, opts)
  local keys = {}
  for k, v in pairs(grouping) do keys[#keys + 1] = k .. "=" .. v end
  table.sort(keys)
  local group = "job=" .. opts.job .. (#keys > 0 and "," .. table.concat(keys, ",") or "")
  return effect.run("metrics.push", {
    target = base .. path,
    describe = string.format("%s %d metric famil%s to the Pushgateway group {%s}%s", method:upper(), #self.metrics,
      #self.metrics == 1 and "y" or "ies", group, previous and " (replacing its content)" or ""),
    detail = body,
    record = { base = base, path = path, previous = previous, ca = opts.ca, timeout = opts.timeout },
  }, { method = method:upper(), url = base .. path, body = body, ca = opts.ca, timeout = opts.timeout })
end

-- ---- canary against baseline, and SLOs (the statistics: relish.metrics.stats) ----

local stats = require "relish.metrics.stats"

-- the numbers of a range query's every series, NaN left out by stats
local function samples(prom, promql, start, stop, step)
  local out = {}
  for _, s in ipairs(prom:query_range(promql, { start = start, stop = stop, step = step }).series) do
    for _, tv in ipairs(s.values) do out[#out + 1] = tv[2] end
  end
  return out
end

local COMPARE_OPTS = { prometheus = true, baseline = true, canary = true, window = true, step = true, at = true,
  direction = true, pass = true, marginal = true, alpha = true, no_data = true }

-- compare{prometheus=, baseline=, canary=, window="10m", step="30s", at=,
--         direction=, pass=, marginal=, alpha=, no_data=} -> stats.compare's judgement,
-- with .baseline and .canary (the samples) and .query: Kayenta's method over
-- the window that ends at `at` (default now)
function M.compare(opts)
  local fname = "metrics.compare"
  opts = errors.check_options(usage, fname, opts, COMPARE_OPTS)
  if getmetatable(opts.prometheus) ~= Client then usage(fname, "prometheus must be a client of metrics.prometheus") end
  check_promql(fname .. ": baseline", opts.baseline)
  check_promql(fname .. ": canary", opts.canary)
  local window = require("relish.dsl").duration(opts.window or "10m")
  local stop = opts.at or os.time()
  local start = stop - window
  local step = opts.step or "30s"
  local base, can
  require("relish.task").parallel {
    function() base = samples(opts.prometheus, opts.baseline, start, stop, step) end,
    function() can = samples(opts.prometheus, opts.canary, start, stop, step) end,
  }
  local r = stats.compare(base, can, { direction = opts.direction, pass = opts.pass, marginal = opts.marginal,
    alpha = opts.alpha, no_data = opts.no_data })
  r.baseline, r.canary, r.query = base, can, { baseline = opts.baseline, canary = opts.canary }
  return r
end

local SLO = {}
SLO.__index = SLO

local SLO_OPTS = { prometheus = true, name = true, objective = true, window = true, good = true, bad = true,
  total = true }

-- slo{prometheus=, name=, objective=0.999, window="30d", good= | bad=, total=} -> slo.
-- good, bad and total are PromQL giving one number each over a window written
-- {{window}}: 'sum(increase(http_requests_total{code!~"5.."}[{{window}}]))'.
function M.slo(opts)
  local fname = "metrics.slo"
  opts = errors.check_options(usage, fname, opts, SLO_OPTS)
  if getmetatable(opts.prometheus) ~= Client then usage(fname, "prometheus must be a client of metrics.prometheus") end
  if (opts.good == nil) == (opts.bad == nil) then usage(fname, "give good or bad (not both)") end
  for _, k in ipairs { "good", "bad", "total" } do
    if opts[k] ~= nil then check_promql(fname .. ": " .. k, opts[k]) end
  end
  if opts.total == nil then usage(fname, "total is required") end
  local objective = opts.objective or 0.999
  if type(objective) ~= "number" or not (objective > 0 and objective < 1) then
    usage(fname, "objective must be a number between 0 and 1 (e.g. 0.999), got " .. tostring(objective))
  end
  local window = opts.window or "30d"
  require("relish.dsl").duration(window) -- a bad window is misuse here, not later
  return setmetatable({ prometheus = opts.prometheus, name = opts.name or "slo", objective = objective,
    window = window, good = opts.good, bad = opts.bad, total = opts.total }, SLO)
end

-- the good (or bad) and total counts over a window, ending at `at`
function SLO:counts(window, at)
  local function one(q)
    local r = self.prometheus:query((q:gsub("{{%s*window%s*}}", window)), { time = at })
    if #r.series == 0 then return nil end
    return r:value()
  end
  local part, total
  require("relish.task").parallel {
    function() part = one(self.good or self.bad) end,
    function() total = one(self.total) end,
  }
  return part, total
end

-- slo:budget([{at=}]) -> stats.error_budget over the SLO's window
function SLO:budget(opts)
  opts = errors.check_options(usage, "slo:budget", opts, { at = true })
  local part, total = self:counts(self.window, opts.at)
  local spec = { objective = self.objective, total = total or 0 }
  if self.good then spec.good = part or 0 else spec.bad = part or 0 end
  local b = stats.error_budget(spec)
  b.name, b.window = self.name, self.window
  return b
end

-- slo:burn_rate(window [, {at=}]) -> the burn rate over that window (nil: no data)
function SLO:burn_rate(window, opts)
  opts = errors.check_options(usage, "slo:burn_rate", opts, { at = true })
  require("relish.dsl").duration(window)
  local part, total = self:counts(window, opts.at)
  if not part or not total or total <= 0 then return nil end
  local ratio = self.good and (1 - part / total) or (part / total)
  return stats.burn_rate(ratio, self.objective)
end

-- slo:gate([{policy=, at=}]) -> stats.burn_gate's verdict: every window of
-- the policy measured at once, both windows of a pair above its factor fires
function SLO:gate(opts)
  opts = errors.check_options(usage, "slo:gate", opts, { policy = true, at = true })
  local policy = opts.policy or stats.DEFAULT_POLICY
  local windows, seen = {}, {}
  for _, rule in ipairs(type(policy) == "table" and policy or {}) do
    for _, w in ipairs { rule.long, rule.short } do
      if type(w) == "string" and not seen[w] then windows[#windows + 1], seen[w] = w, true end
    end
  end
  local rates, fns = {}, {}
  for i, w in ipairs(windows) do fns[i] = function() rates[w] = self:burn_rate(w, { at = opts.at }) or (0 / 0) end end
  if #fns > 0 then require("relish.task").parallel(fns) end
  local g = stats.burn_gate(rates, policy, { window = self.window })
  g.name, g.objective = self.name, self.objective
  return g
end

-- ---- analysis, with Argo Rollouts' semantics ----------------------------------

-- Conditions: what a measured value must be. A condition is a table
-- {check = fn(value) -> boolean, describe = "< 0.01"}; a plain function is
-- one described as "custom".
local function condition(check, describe) return { check = check, describe = describe } end
local function shown_number(x) return format_number(x) end
function M.below(x) return condition(function(v) return v < x end, "< " .. shown_number(x)) end
function M.above(x) return condition(function(v) return v > x end, "> " .. shown_number(x)) end
function M.at_most(x) return condition(function(v) return v <= x end, "<= " .. shown_number(x)) end
function M.at_least(x) return condition(function(v) return v >= x end, ">= " .. shown_number(x)) end
function M.between(a, b)
  return condition(function(v) return v >= a and v <= b end, "in [" .. shown_number(a) .. ", " .. shown_number(b) .. "]")
end

local function as_condition(fname, c)
  if c == nil then return nil end
  if type(c) == "function" then return condition(c, "custom") end
  if type(c) == "table" and type(c.check) == "function" then
    return condition(c.check, type(c.describe) == "string" and c.describe or "custom")
  end
  usage(fname, "a condition is metrics.below(x), above, at_most, at_least, between, a function, or {check=, describe=}")
end

local METRIC_OPTS = { name = true, query = true, success = true, failure = true, failure_limit = true,
  inconclusive_limit = true, consecutive_error_limit = true, no_data = true, prometheus = true }
local NO_DATA = { fail = true, inconclusive = true, pass = true }

-- {{args.x}} and {{x}} in a query, from args
local function substitute(fname, query, args)
  local missing
  local out = query:gsub("{{%s*([%w_.-]+)%s*}}", function(key)
    local v = args[(key:gsub("^args%.", ""))]
    if v == nil then missing = missing or key end
    return v ~= nil and tostring(v) or nil
  end)
  -- raised here, not inside gsub, so that it points at the caller
  if missing then usage(fname, "the query uses {{" .. missing .. "}} but args has no " .. missing:gsub("^args%.", "")) end
  return out
end

-- one measurement: {value=, phase="successful"|"failed"|"inconclusive"|"error", message=, time=}
local function measure(m)
  local r, err = errors.try(m.prometheus.query, m.prometheus, m.query)
  local t = os.time()
  if not r then return { phase = "error", message = tostring(err.message or err), time = t } end
  if #r.series == 0 then
    local phase = m.no_data == "pass" and "successful" or m.no_data == "fail" and "failed" or "inconclusive"
    return { phase = phase, message = "no data (no_data = " .. m.no_data .. ")", time = t, no_data = true }
  end
  local v, verr = errors.try(r.value, r)
  if not v then return { phase = "error", message = tostring(verr.message or verr), time = t } end
  local ok_s = m.success and m.success.check(v)
  local ok_f = m.failure and m.failure.check(v)
  local phase
  if m.success and m.failure then
    phase = ok_f and "failed" or ok_s and "successful" or "inconclusive"
  elseif m.success then
    phase = ok_s and "successful" or "failed"
  else
    phase = ok_f and "failed" or "successful"
  end
  return { phase = phase, value = v, time = t }
end

-- a metric's status after its measurements, in Argo's order
local function assess(m, st, count)
  if st.failed > m.failure_limit then return "failed" end
  if st.consecutive_error > m.consecutive_error_limit then return "error" end
  if st.inconclusive > m.inconclusive_limit then return "inconclusive" end
  if #st.measurements >= count then return "successful" end
  return "running"
end

local MARK = { successful = "✓", failed = "✗", inconclusive = "?", error = "!" }
local RANK = { successful = 0, running = 0, inconclusive = 1, error = 2, failed = 3 }

local ANALYZE_OPTS = { prometheus = true, metrics = true, args = true, interval = true, count = true,
  initial_delay = true, dry_run_metrics = true, ctx = true }

-- analyze{prometheus=, metrics={...}, args=, interval="30s", count=5, initial_delay=,
--         dry_run_metrics={names}, ctx=} -> the result; raises kind `analysis`
-- (err.result) when it ends failed, error or inconclusive
function M.analyze(opts)
  local fname = "metrics.analyze"
  opts = errors.check_options(usage, fname, opts, ANALYZE_OPTS)
  local dsl = require "relish.dsl"
  if type(opts.metrics) ~= "table" or #opts.metrics == 0 then usage(fname, "metrics must be a non-empty list") end
  local args = opts.args or {}
  local interval = dsl.duration(opts.interval or "30s")
  local count = opts.count or 5
  if count ~= math.huge and (math.type(count) ~= "integer" or count < 1) then
    usage(fname, "count must be a positive integer (or math.huge: until stopped)")
  end
  local delay = opts.initial_delay and dsl.duration(opts.initial_delay) or 0
  local dry_names = {}
  for _, n in ipairs(opts.dry_run_metrics or {}) do dry_names[n] = true end
  local ms = {}
  for i, spec in ipairs(opts.metrics) do
    local mf = string.format("%s: metrics[%d]", fname, i)
    errors.check_options(usage, mf, spec, METRIC_OPTS)
    if type(spec.name) ~= "string" or spec.name == "" then usage(mf, "name is required") end
    check_promql(mf, spec.query)
    local m = { name = spec.name, query = substitute(mf, spec.query, args),
      success = as_condition(mf, spec.success), failure = as_condition(mf, spec.failure),
      failure_limit = spec.failure_limit or 0, inconclusive_limit = spec.inconclusive_limit or 0,
      consecutive_error_limit = spec.consecutive_error_limit or 4, no_data = spec.no_data or "inconclusive",
      prometheus = spec.prometheus or opts.prometheus, dry = dry_names[spec.name] or false }
    if not m.success and not m.failure then usage(mf, "give a success or a failure condition") end
    if not NO_DATA[m.no_data] then usage(mf, 'no_data must be "fail", "inconclusive" or "pass", got ' .. tostring(m.no_data)) end
    if getmetatable(m.prometheus) ~= Client then usage(mf, "no prometheus client (give prometheus= here or to analyze)") end
    ms[i] = m
  end
  local ctx = opts.ctx
  local dry_run = ctx and ctx.dry_run
  if dry_run then count = 1 end -- a plan measures once and says what the verdict would be
  local task = require "relish.task"
  local st = {}
  for i, m in ipairs(ms) do
    st[i] = { name = m.name, query = m.query, phase = "running", measurements = {}, successful = 0, failed = 0,
      inconclusive = 0, error = 0, consecutive_error = 0, dry_run = m.dry }
  end
  local function say(fmt, ...) if ctx then ctx.log(fmt, ...) end end
  local function verdict()
    local worst, done = "successful", true
    for i, s in ipairs(st) do
      if not ms[i].dry then
        if RANK[s.phase] > RANK[worst] then worst = s.phase end
        if s.phase == "running" then done = false end
      end
    end
    if worst ~= "successful" then return worst end
    return done and "successful" or "running"
  end
  if delay > 0 and not dry_run then task.sleep(delay) end
  local phase = "running"
  for round = 1, count do
    local fns = {}
    for i, m in ipairs(ms) do
      fns[#fns + 1] = function()
        if st[i].phase ~= "running" then return end
        local x = measure(m)
        local s = st[i]
        s.measurements[#s.measurements + 1] = x
        s[x.phase] = s[x.phase] + 1
        s.consecutive_error = x.phase == "error" and s.consecutive_error + 1 or 0
        s.phase = assess(m, s, count)
        local cond = x.value and (m.success and m.success.describe or ("not " .. m.failure.describe)) or ""
        say("%s  %s  %s  %s (%s)%s%s", m.name, x.value and format_number(x.value) or "-", cond, MARK[x.phase],
          count == math.huge and #s.measurements or (#s.measurements .. "/" .. count),
          x.message and ("  " .. x.message) or "", m.dry and "  (dry-run metric)" or "")
      end
    end
    task.parallel(fns)
    phase = verdict()
    if phase ~= "running" then break end
    if round < count then task.sleep(interval) end
  end
  if phase == "running" then phase = "successful" end
  local result = { phase = phase, metrics = st, dry_run = dry_run or nil }
  local parts = {}
  for _, s in ipairs(st) do
    parts[#parts + 1] = string.format("%s %s (%d ok, %d failed, %d inconclusive, %d errors)", s.name, s.phase,
      s.successful, s.failed, s.inconclusive, s.error)
  end
  result.message = "analysis " .. phase .. ": " .. table.concat(parts, "; ")
  say("%s%s", result.message, dry_run and " (dry-run: not failing the plan)" or "")
  if phase ~= "successful" and not dry_run then
    local e = errors.value("analysis", "%s", result.message)
    e.result = result
    error(e, 0)
  end
  return result
end

-- ---- checks users expect (Flagger's built-ins) -------------------------------

local function selector(fname, labels)
  if labels == nil then return "" end
  if type(labels) == "string" then return labels end
  if type(labels) ~= "table" then usage(fname, "labels must be a table of name = value or a selector string") end
  local keys = {}
  for k in pairs(labels) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = string.format('%s="%s"', k, escape_value(tostring(labels[k]))) end
  return table.concat(keys, ",")
end

-- request_success_rate{labels=, window="1m", min=0.99, name=} -> a metric for analyze:
-- the share of http_requests_total that is not 5xx
function M.request_success_rate(o)
  o = errors.check_options(usage, "metrics.request_success_rate", o, { labels = true, window = true, min = true,
    name = true, no_data = true })
  local sel, w = selector("metrics.request_success_rate", o.labels), o.window or "1m"
  local comma = sel ~= "" and "," or ""
  return { name = o.name or "request-success-rate",
    query = string.format('sum(rate(http_requests_total{%s%scode!~"5.."}[%s])) / sum(rate(http_requests_total{%s}[%s]))',
      sel, comma, w, sel, w),
    success = M.at_least(o.min or 0.99), no_data = o.no_data }
end

-- request_duration_p99{labels=, window="1m", max=0.5, name=} -> a metric for analyze:
-- the 99th percentile of http_request_duration_seconds, in seconds
function M.request_duration_p99(o)
  o = errors.check_options(usage, "metrics.request_duration_p99", o, { labels = true, window = true, max = true,
    name = true, no_data = true })
  local sel, w = selector("metrics.request_duration_p99", o.labels), o.window or "1m"
  return { name = o.name or "request-duration-p99",
    query = string.format("histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{%s}[%s])))",
      sel, w),
    success = M.at_most(o.max or 0.5), no_data = o.no_data }
end

return M
