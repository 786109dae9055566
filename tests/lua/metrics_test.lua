-- Tests for relish.metrics against real Prometheus and Pushgateway (Debian's
-- prometheus and prometheus-pushgateway, see tests/lua/prom_fixture.lua) and
-- the fixture exporter (tests/fixtures/exporter.py).
local metrics = require "relish.metrics"
local http = require "relish.http"
local gate = require "relish._gate"
local effect = require "relish.effect"
local pf = require "prom_fixture"
local try = require("relish._errors").try

local function need_servers()
  if not pf.available() then skip("prometheus, promtool or prometheus-pushgateway is not installed") end
end

-- The groups on the Pushgateway: {["job=..,k=v"] = {family name = {values...}}}
local function groups(pg)
  local out = {}
  for _, g in ipairs(http.get(pg.url .. "/api/v1/metrics", { expect = 200 }):json().data) do
    local keys = {}
    for k, v in pairs(g.labels) do keys[#keys + 1] = k .. "=" .. v end
    table.sort(keys)
    local fams = {}
    for name, f in pairs(g) do
      if type(f) == "table" and f.metrics and name ~= "push_time_seconds" and name ~= "push_failure_time_seconds" then
        local vals = {}
        for _, m in ipairs(f.metrics) do vals[#vals + 1] = m.value or m.count end
        table.sort(vals)
        fams[name] = vals
      end
    end
    out[table.concat(keys, ",")] = fams
  end
  return out
end

describe("prometheus client", function()
  test("each result type from a real Prometheus scraping the exporter", function()
    need_servers()
    local ex <close> = pf.exporter()
    ex:set { requests = { { code = "200", version = "v1", value = 90 }, { code = "500", version = "v1", value = 10 } },
      buckets = { { le = "0.1", version = "v1", value = 7 }, { le = "+Inf", version = "v1", value = 9 } } }
    local p <close> = pf.prometheus { targets = { exporter = ex.target } }
    local prom = metrics.prometheus { url = p.url, timeout = 10 }
    pf.eventually("the exporter scraped", function()
      return #prom:query('http_requests_total{version="v1"}').series == 2
    end)

    local up = prom:query('up{job="exporter"}')
    assert_eq(up.type, "vector")
    assert_eq(#up.series, 1)
    assert_eq(up.series[1].labels, { __name__ = "up", job = "exporter", instance = ex.target })
    assert_eq(up.series[1].value, 1)
    assert_eq(math.type(up.series[1].value), "integer")
    assert_true(type(up.series[1].time) == "number")
    assert_eq(up:value(), 1)

    local errs = prom:query('sum(http_requests_total{code="500"}) / sum(http_requests_total)')
    assert_near(errs:value(), 0.1, 1e-12)

    local at = os.time() - 60 -- once: a second may tick between two os.time() calls
    local one = prom:query("vector(1)", { time = at })
    assert_eq({ one.type, one:value() }, { "vector", 1 })
    assert_near(one.series[1].time, at, 0.01)

    local s = prom:query("scalar(sum(http_requests_total))")
    assert_eq({ s.type, s:value(), s.series[1].labels }, { "scalar", 100, {} })

    local str = prom:query('"a string"')
    assert_eq({ str.type, str:value() }, { "string", "a string" })

    pf.eventually("three scrapes", function()
      return #prom:query("up[10s]").series[1].values >= 3
    end)
    local m = prom:query("up[10s]")
    assert_eq(m.type, "matrix")
    assert_eq(m.series[1].labels.job, "exporter")
    assert_eq(m.series[1].values[1][2], 1)
    local now = os.time()
    local r = prom:query_range("vector(2)", { start = now - 10, stop = now, step = 5 })
    assert_eq(r.type, "matrix")
    assert_eq(#r.series[1].values, 3)
    assert_eq(r.series[1].values[3], { now, 2 })

    local series = prom:series('http_requests_total{version="v1"}', { start = now - 60, stop = now + 1 })
    table.sort(series, function(a, b) return a.code < b.code end)
    assert_eq(#series, 2)
    assert_eq({ series[1].code, series[2].code, series[1].__name__ }, { "200", "500", "http_requests_total" })
    local labels = prom:labels()
    for _, want in ipairs { "__name__", "code", "version", "le", "job", "instance" } do
      local found = false
      for _, l in ipairs(labels) do found = found or l == want end
      assert_true(found, "label " .. want)
    end

    -- a long query goes by POST form
    local long = "vector(1)" .. string.rep(" + vector(0)", 1500)
    assert_true(#long > 16000)
    assert_eq(prom:query(long):value(), 1)
  end)

  test("backfilled data (promtool) answers range queries deterministically", function()
    need_servers()
    -- 3 days of a counter every 10 minutes, 20 days ago: +60 good, +3 bad each step
    local t0 = (os.time() // 3600 - 20 * 24) * 3600
    local lines = {}
    for i = 0, 3 * 144 do
      lines[#lines + 1] = string.format('sli_total{code="200"} %d %d', 60 * i, t0 + 600 * i)
    end
    for i = 0, 3 * 144 do
      lines[#lines + 1] = string.format('sli_total{code="500"} %d %d', 3 * i, t0 + 600 * i)
    end
    local p <close> = pf.prometheus { backfill = "# TYPE sli_total counter\n" .. table.concat(lines, "\n") .. "\n" }
    local prom = metrics.prometheus { url = p.url }
    local at = t0 + 2 * 86400
    local ratio = prom:query('sum(increase(sli_total{code="500"}[1h])) / sum(increase(sli_total[1h]))', { time = at })
    assert_near(ratio:value(), 3 / 63, 1e-9)
    local r = prom:query_range('sli_total{code="200"}', { start = t0, stop = t0 + 3600, step = "10m" })
    assert_eq(r.type, "matrix")
    assert_eq(r.series[1].values, { { t0, 0 }, { t0 + 600, 60 }, { t0 + 1200, 120 }, { t0 + 1800, 180 },
      { t0 + 2400, 240 }, { t0 + 3000, 300 }, { t0 + 3600, 360 } })
    local series = prom:series("sli_total", { start = t0, stop = t0 + 86400 })
    assert_eq(#series, 2)
  end)

  test("NaN and infinities are numbers", function()
    need_servers()
    local p <close> = pf.prometheus {}
    local prom = metrics.prometheus { url = p.url }
    local nan = prom:query("vector(0/0)"):value()
    assert_true(nan ~= nan)
    assert_eq(prom:query("vector(1/0)"):value(), math.huge)
    assert_eq(prom:query("scalar(vector(-1/0))"):value(), -math.huge)
    assert_eq(prom:query("vector(0.25)"):value(), 0.25)
  end)

  test("value() needs exactly one sample", function()
    need_servers()
    local p <close> = pf.prometheus {}
    local prom = metrics.prometheus { url = p.url }
    local none = prom:query("absent_metric_xyz")
    assert_eq({ none.type, #none.series }, { "vector", 0 })
    local err = assert_raises(function() return none:value() end, "no_data", "has no sample")
    assert_eq(err.kind, "no_data")
    local two = prom:query('label_replace(vector(1), "a", "x", "", "") or label_replace(vector(2), "a", "y", "", "")')
    assert_eq(#two.series, 2)
    err = assert_raises(function() return two:value() end, "ambiguous", "2 samples in 2 series")
    assert_eq(err.count, 2)
    local _, e = try(two.value, two)
    assert_eq(e.kind, "ambiguous")
  end)

  test("a PromQL error carries Prometheus' message and the query", function()
    need_servers()
    local p <close> = pf.prometheus {}
    local prom = metrics.prometheus { url = p.url }
    local err = assert_raises(function() return prom:query("sum(rate(x[5m])") end, "bad_data")
    assert_match(err.message, "parse error")
    assert_eq({ err.query, err.status }, { "sum(rate(x[5m])", 400 })
    local r, e = try(prom.query, prom, "foo{")
    assert_nil(r)
    assert_eq(e.kind, "bad_data")
    assert_match(tostring(e), "parse error")
    err = assert_raises(function()
      return prom:query_range("up", { start = 10, stop = 0, step = 1 })
    end, "bad_data", "end timestamp must not be before start time")
    assert_eq(err.query, "up")
    -- too many points is Prometheus' own bad_data
    assert_raises(function()
      return prom:query_range("up", { start = 0, stop = 100000, step = 0.001 })
    end, "bad_data", "exceeded maximum resolution")
  end)

  test("an evaluation failure is an execution error", function()
    need_servers()
    local p <close> = pf.prometheus {}
    local prom = metrics.prometheus { url = p.url }
    local two = 'label_replace(vector(1), "a", "x", "", "") or label_replace(vector(2), "a", "y", "", "")'
    local err = assert_raises(function() return prom:query("vector(1) + on() (" .. two .. ")") end, "execution",
      "many%-to%-many matching not allowed")
    assert_eq(err.status, 422)
  end)

  test("warnings are surfaced, other error types keep their kind", function()
    need_servers()
    local ex <close> = pf.exporter()
    local prom = metrics.prometheus { url = ex.url }
    ex:set { api = { body = { status = "success", warnings = { "partial response: store down" },
      data = { resultType = "vector", result = { { metric = { job = "a" }, value = { 1700000000.5, "-Inf" } } } } } } }
    local r = prom:query("up")
    assert_eq(r.warnings, { "partial response: store down" })
    assert_eq(r.series[1], { labels = { job = "a" }, time = 1700000000.5, value = -math.huge })
    assert_eq(prom:query("vector(1)").warnings, { "partial response: store down" })
    for _, t in ipairs { "timeout", "canceled", "internal", "unavailable" } do
      ex:set { api = { status = 503, body = { status = "error", errorType = t, error = "it is " .. t } } }
      local e = assert_raises(function() return prom:query("up") end, t)
      assert_eq({ e.message, e.query, e.status }, { "it is " .. t, "up", 503 })
    end
  end)

  test("Prometheus down is a connect error", function()
    need_servers()
    local port = pf.free_port()
    local prom = metrics.prometheus { url = "http://127.0.0.1:" .. port, timeout = 5 }
    assert_raises(function() return prom:query("up") end, "connect")
    local r, e = try(prom.labels, prom)
    assert_nil(r)
    assert_eq(e.kind, "connect")
  end)

  test("something that is not Prometheus is an http_status error", function()
    need_servers()
    local ex <close> = pf.exporter()
    local prom = metrics.prometheus { url = ex.url }
    assert_raises(function() return prom:query("up") end, "http_status", "expected a Prometheus API answer")
  end)

  test("misuse raises at the caller", function()
    local prom = metrics.prometheus { url = "http://127.0.0.1:1" }
    assert_misuse(function() metrics.prometheus { url = "http://x", tiemout = 1 } end,
      "metrics.prometheus: unknown option 'tiemout' (did you mean 'timeout'?)")
    assert_misuse(function() metrics.prometheus {} end, "metrics.prometheus: url is required")
    assert_misuse(function() metrics.prometheus { url = "http://x", timeout = 0 } end,
      "metrics.prometheus: timeout must be a positive number of seconds, got number")
    assert_misuse(function() prom:query(42) end, "query: expected a PromQL query (a string), got number")
    assert_misuse(function() prom:query("up", { tme = 1 }) end, "query: unknown option 'tme' (did you mean 'time'?)")
    assert_misuse(function() prom:query_range("up", { start = 1, stop = 2 }) end, "query_range: step is required")
    assert_misuse(function() prom:query_range("up", { start = 1, stop = 2, step = -1 }) end,
      "query_range: step must be a positive number of seconds, got -1")
    assert_misuse(function() prom:series({}) end, "series: expected a series selector or a list of them, got table")
  end)
end)

describe("registry", function()
  test("renders the text exposition format", function()
    local reg = metrics.registry()
    local c = reg:counter { name = "deploys_total", help = "Deploys.\nWith a \\ backslash.", labels = { "env" } }
    local g = reg:gauge { name = "release_version_info", labels = { "version" } }
    local h = reg:histogram { name = "step_seconds", help = "Step time.", labels = { "step" }, buckets = { 0.5, 1, 5 } }
    local plain = reg:counter { name = "runs_total", help = "Runs." }
    c:inc { env = 'prod "eu"\n\\' }
    c:inc(2, { env = "dev" })
    g:set(1, { version = "1.2.0" })
    h:observe(0.2, { step = "build" })
    h:observe(1, { step = "build" })
    h:observe(7, { step = "build" })
    assert_eq(plain.name, "runs_total")
    assert_eq(reg:render(), table.concat({
      "# HELP deploys_total Deploys.\\nWith a \\\\ backslash.",
      "# TYPE deploys_total counter",
      'deploys_total{env="dev"} 2',
      'deploys_total{env="prod \\"eu\\"\\n\\\\"} 1',
      "# TYPE release_version_info gauge",
      'release_version_info{version="1.2.0"} 1',
      "# HELP step_seconds Step time.",
      "# TYPE step_seconds histogram",
      'step_seconds_bucket{step="build",le="0.5"} 1',
      'step_seconds_bucket{step="build",le="1"} 2',
      'step_seconds_bucket{step="build",le="5"} 2',
      'step_seconds_bucket{step="build",le="+Inf"} 3',
      'step_seconds_sum{step="build"} 8.2',
      'step_seconds_count{step="build"} 3',
      "# HELP runs_total Runs.",
      "# TYPE runs_total counter",
      "runs_total 0",
      "" }, "\n"))
    g:set(0 / 0, { version = "1.2.0" })
    g:set(math.huge, { version = "2" })
    assert_match(reg:render(), 'release_version_info{version="1.2.0"} NaN\nrelease_version_info{version="2"} %+Inf\n')
  end)

  test("misuse raises at the caller", function()
    local reg = metrics.registry()
    local c = reg:counter { name = "a_total", labels = { "x" } }
    assert_misuse(function() reg:counter { name = "a_total" } end, "counter: a metric named 'a_total' is already registered")
    assert_misuse(function() reg:gauge { name = "1bad" } end,
      "gauge: name must be a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), got 1bad")
    assert_misuse(function() reg:histogram { name = "h", labels = { "le" } } end,
      "histogram: a histogram cannot have a label 'le'")
    assert_misuse(function() reg:histogram { name = "h2", buckets = { 1, 1 } } end,
      "histogram: buckets must be in increasing order")
    assert_misuse(function() reg:counter { name = "b", lables = {} } end,
      "counter: unknown option 'lables' (did you mean 'labels'?)")
    assert_misuse(function() c:inc(-1, { x = "1" }) end, "counter:inc: a counter cannot decrease (got -1)")
    assert_misuse(function() c:inc() end, "counter:inc: label 'x' needs a value (a string)")
    assert_misuse(function() c:inc { x = "1", y = "2" } end, "counter:inc: a_total has no label 'y'")
    assert_misuse(function() c:set(1, { x = "1" }) end, "counter:set: only a gauge can be set")
    assert_misuse(function() reg:push { url = "http://x", job = "j", method = "patch" } end,
      "push: method must be 'put' or 'post', got patch")
    assert_misuse(function() reg:push { url = "http://x" } end, "push: job must be a non-empty string, got nil")
  end)

  test("grouping keys with / or empty values go base64url", function()
    assert_eq(metrics.grouping_path("relish", { env = "prod/eu" }), "/metrics/job/relish/env@base64/cHJvZC9ldQ")
    assert_eq(metrics.grouping_path("a/b", { z = "", a = "x y" }), "/metrics/job@base64/YS9i/a/x%20y/z@base64/=")
    assert_eq(metrics.base64url("\255\254\253"), "__79")
  end)
end)

describe("pushgateway", function()
  test("Prometheus parses the exposition back (scraped and pushed)", function()
    need_servers()
    local ex <close> = pf.exporter()
    local pg <close> = pf.pushgateway()
    local reg = metrics.registry()
    local c = reg:counter { name = "relish_fixture_total", help = 'Help with "quotes" and \\.', labels = { "v" } }
    local h = reg:histogram { name = "relish_fixture_seconds", help = "Latency.", labels = { "v" },
      buckets = { 0.1, 1 } }
    c:inc(3, { v = 'a"b\\c\nd' })
    h:observe(0.05, { v = "x" })
    h:observe(0.5, { v = "x" })
    ex:set { text = reg:render() }
    reg:push { url = pg.url, job = "relish", grouping = { env = "prod/eu" } }
    local p <close> = pf.prometheus { targets = { registry = { target = ex.target, path = "/text" },
      push = pg.target } }
    local prom = metrics.prometheus { url = p.url }
    pf.eventually("both scraped", function()
      return #prom:query("relish_fixture_total").series == 2
    end)
    local scraped = prom:query('relish_fixture_total{job="registry"}')
    assert_eq(scraped.series[1].labels.v, 'a"b\\c\nd')
    assert_eq(scraped:value(), 3)
    local pushed = prom:query('relish_fixture_total{job="relish"}')
    assert_eq(pushed.series[1].labels.env, "prod/eu")
    assert_eq(pushed.series[1].labels.v, 'a"b\\c\nd')
    assert_eq(pushed:value(), 3)
    assert_eq(prom:query('relish_fixture_seconds_bucket{job="relish",le="0.1"}'):value(), 1)
    assert_eq(prom:query('relish_fixture_seconds_bucket{job="registry",le="+Inf"}'):value(), 2)
    assert_eq(prom:query('relish_fixture_seconds_count{job="registry"}'):value(), 2)
    assert_eq(prom:query('relish_fixture_seconds_sum{job="relish"}'):value(), 0.55)
    assert_near(prom:query('histogram_quantile(0.5, relish_fixture_seconds_bucket{job="registry"})'):value(), 0.1,
      1e-9)
  end)

  test("a push that created its group is undone by deleting it", function()
    need_servers()
    local pg <close> = pf.pushgateway()
    local reg = metrics.registry()
    reg:gauge { name = "relish_last_deploy", help = "When." }:set(1700000000)
    local actions, r = gate.capture(function()
      return reg:push { url = pg.url, job = "deploy", grouping = { service = "api", env = "prod/eu" } }
    end)
    assert_eq(r.status, 200)
    assert_eq(#actions, 1)
    local a = actions[1]
    assert_eq({ a.kind, a.status, a.target }, { "metrics.push", "done",
      pg.url .. "/metrics/job/deploy/env@base64/cHJvZC9ldQ/service/api" })
    assert_match(a.describe, "^PUT 1 metric family to the Pushgateway group {job=deploy,env=prod/eu,service=api}$")
    assert_nil(a.undo.previous)
    assert_eq(groups(pg)["env=prod/eu,job=deploy,service=api"], { relish_last_deploy = { "1.7e+09" } })
    effect.undo("metrics.push", a.undo, "relish.metrics")
    assert_nil(groups(pg)["env=prod/eu,job=deploy,service=api"])
  end)

  test("a push that replaced a group is undone by putting back what was there", function()
    need_servers()
    local pg <close> = pf.pushgateway()
    local old = metrics.registry()
    old:counter { name = "relish_runs_total", help = "Runs.", labels = { "result" } }:inc(5, { result = "ok" })
    old:histogram { name = "relish_step_seconds", buckets = { 1 } }:observe(0.5)
    old:push { url = pg.url, job = "relish" }
    local before = groups(pg)["job=relish"]
    assert_eq(before.relish_runs_total, { "5" })

    local new = metrics.registry()
    new:gauge { name = "relish_other" }:set(7)
    local actions = gate.capture(function() return new:push { url = pg.url, job = "relish", method = "post" } end)
    local a = actions[1]
    assert_match(a.describe, "^POST 1 metric family to the Pushgateway group {job=relish} %(replacing its content%)$")
    assert_match(a.undo.previous, 'relish_runs_total{result="ok"} 5')
    local after = groups(pg)["job=relish"]
    assert_eq(after.relish_other, { "7" })
    assert_eq(after.relish_runs_total, { "5" }) -- POST keeps the other families
    effect.undo("metrics.push", a.undo, "relish.metrics")
    assert_eq(groups(pg)["job=relish"], before)

    -- PUT replaces the whole group; its undo restores the counter and histogram
    actions = gate.capture(function() return new:push { url = pg.url, job = "relish" } end)
    assert_eq(groups(pg)["job=relish"], { relish_other = { "7" } })
    effect.undo("metrics.push", actions[1].undo, "relish.metrics")
    assert_eq(groups(pg)["job=relish"], before)
  end)

  test("a dry-run plans the push and sends nothing", function()
    need_servers()
    local pg <close> = pf.pushgateway()
    local reg = metrics.registry()
    reg:counter { name = "relish_runs_total" }:inc()
    local actions, r = gate.capture(function() return reg:push { url = pg.url, job = "relish" } end, { dry_run = true })
    assert_eq(r.planned, true)
    assert_eq({ actions[1].kind, actions[1].detail }, { "metrics.push", "# TYPE relish_runs_total counter\nrelish_runs_total 1\n" })
    assert_eq(groups(pg), {})
  end)

  test("with RELISH_PUSHGATEWAY the engine pushes each real run's metrics; a dry-run pushes nothing", function()
    need_servers()
    local support = require "support"
    local pg <close> = pf.pushgateway()
    local d = tmpdir()
    local f = support.recipe(d, "r.lua", [[
return recipe "pushed" {
  params = { fail = param.string { default = "" } },
  step "work" { run = function(ctx) if ctx.params.fail ~= "" then error("it broke") end end },
}
]])
    local st = support.state(d)
    local env = { RELISH_PUSHGATEWAY = pg.url .. "/" }
    local function run(...)
      local r = support.relish { "run", f, "--state", st, env = env, ... }
      return r.code, r.stdout .. r.stderr
    end
    local before = os.time()
    assert_eq(run(), 0)
    assert_eq(run("--dry-run"), 0)
    assert_eq(groups(pg)["job=relish,recipe=pushed"].relish_runs_total, { "1" })
    assert_eq(run("-p", "fail=yes"), 1)
    assert_eq(run(), 0)
    local g
    for _, x in ipairs(http.get(pg.url .. "/api/v1/metrics", { expect = 200 }):json().data) do
      if x.labels.job == "relish" and x.labels.recipe == "pushed" then g = x end
    end
    local total = {}
    for _, m in ipairs(g.relish_runs_total.metrics) do total[m.labels.result] = tonumber(m.value) end
    assert_eq(total, { succeeded = 2, rolled_back = 1 })
    assert_eq(g.relish_runs_total.type, "COUNTER")
    local last = tonumber(g.relish_last_success_timestamp_seconds.metrics[1].value)
    assert_true(last >= before and last <= os.time() + 1, "last success " .. last)
    assert_true(tonumber(g.relish_run_duration_seconds.metrics[1].value) >= 0)
    -- a Pushgateway that is down: a warning without the URL's password, and the run's own outcome
    env.RELISH_PUSHGATEWAY = "http://user:hunter2@127.0.0.1:" .. pf.free_port()
    local code, out = run()
    assert_eq(code, 0)
    assert_match(out, "warning: the run's metrics were not pushed to http://127%.0%.0%.1:%d+")
    assert_eq(out:find("hunter2", 1, true), nil)
  end)

  test("a Pushgateway that is down fails the push", function()
    need_servers()
    local reg = metrics.registry()
    reg:counter { name = "x_total" }:inc()
    assert_raises(function() reg:push { url = "http://127.0.0.1:" .. pf.free_port(), job = "j", timeout = 5 } end,
      "connect")
  end)
end)
