-- metrics.analyze with Argo Rollouts' semantics against a real Prometheus
-- scraping the fixture exporter: every verdict, no data under each policy,
-- a background analysis failing a step (and the rollback), a dry-run.
local metrics = require "relish.metrics"
local json = require "relish.json"
local pf = require "prom_fixture"
local support = require "support"
local try = require("relish._errors").try

local RATIO = 'sum(http_requests_total{version="{{args.version}}",code="500"}) / sum(http_requests_total{version="{{args.version}}"})'

-- Prometheus scraping an exporter whose v2 answers `errors` in 1000
local function setup(errors_per_1000)
  if not pf.available() then skip("prometheus, promtool or prometheus-pushgateway is not installed") end
  local ex = pf.exporter()
  ex:set { requests = { { code = "200", version = "v2", value = 1000 - errors_per_1000 },
    { code = "500", version = "v2", value = errors_per_1000 } } }
  local p = pf.prometheus { targets = { exporter = ex.target } }
  local prom = metrics.prometheus { url = p.url }
  pf.eventually("the first scrape", function()
    return #prom:query('http_requests_total{version="v2"}').series == 2
  end)
  -- one value to close: Prometheus, then the exporter
  return setmetatable({ ex = ex, p = p, prom = prom, url = p.url },
    { __close = function() p:stop() ex.stop(ex) end })
end

local function analysis(prom, metric, extra)
  local o = { prometheus = prom, args = { version = "v2" }, interval = "1s", count = 3, metrics = { metric } }
  for k, v in pairs(extra or {}) do o[k] = v end
  return try(metrics.analyze, o)
end

describe("verdicts", function()
  test("successful after count measurements; failed at once past failure_limit", function()
    local env <close> = setup(4)
    local r = assert(analysis(env.prom, { name = "error-rate", query = RATIO, success = metrics.below(0.01) }))
    assert_eq(r.phase, "successful")
    assert_eq(#r.metrics[1].measurements, 3)
    assert_near(r.metrics[1].measurements[1].value, 0.004, 1e-12)
    local _, err = analysis(env.prom, { name = "error-rate", query = RATIO, failure = metrics.above(0.001) })
    assert_eq(err.kind, "analysis")
    assert_eq(err.result.phase, "failed")
    assert_eq(#err.result.metrics[1].measurements, 1)
    _, err = analysis(env.prom, { name = "error-rate", query = RATIO, failure = metrics.above(0.001), failure_limit = 1 })
    assert_eq(#err.result.metrics[1].measurements, 2)
    assert_match(err.message, "^analysis failed: error%-rate failed %(0 ok, 2 failed")
  end)

  test("inconclusive between the success and failure conditions", function()
    local env <close> = setup(20)
    local _, err = analysis(env.prom, { name = "error-rate", query = RATIO, success = metrics.below(0.01),
      failure = metrics.above(0.05) })
    assert_eq(err.result.phase, "inconclusive")
    local r = assert(analysis(env.prom, { name = "error-rate", query = RATIO, success = metrics.below(0.01),
      failure = metrics.above(0.05), inconclusive_limit = 3 }))
    assert_eq(r.phase, "successful") -- within its limit
  end)

  test("error after more consecutive errors than the limit (Prometheus down)", function()
    local down = metrics.prometheus { url = "http://127.0.0.1:" .. pf.free_port(), timeout = 2 }
    local _, err = try(metrics.analyze, { prometheus = down, interval = "0.2s", count = 5, metrics = {
      { name = "x", query = "vector(1)", success = metrics.above(0), consecutive_error_limit = 1 } } })
    assert_eq(err.result.phase, "error")
    assert_eq(#err.result.metrics[1].measurements, 2)
    assert_eq(err.result.metrics[1].measurements[1].phase, "error")
  end)

  test("no data is never a silent pass: each policy", function()
    local env <close> = setup(0)
    local function with(policy)
      return analysis(env.prom, { name = "gone", query = "absent_metric_xyz", success = metrics.below(1), no_data = policy },
        { count = 1 })
    end
    local _, err = with(nil)
    assert_eq(err.result.phase, "inconclusive")
    assert_match(err.result.metrics[1].measurements[1].message, "no data")
    _, err = with("fail")
    assert_eq(err.result.phase, "failed")
    assert_eq(assert(with("pass")).phase, "successful")
  end)

  test("a dry-run metric is measured but does not decide", function()
    local env <close> = setup(50)
    local r = assert(analysis(env.prom, { name = "error-rate", query = RATIO, success = metrics.below(0.01) },
      { dry_run_metrics = { "error-rate" }, metrics = {
        { name = "error-rate", query = RATIO, success = metrics.below(0.01) },
        { name = "up", query = "vector(1)", success = metrics.above(0) } } }))
    assert_eq(r.phase, "successful")
    assert_eq(r.metrics[1].phase, "failed")
  end)

  test("misuse raises at the caller", function()
    assert_misuse(function() metrics.analyze { metrics = {} } end, "metrics.analyze: metrics must be a non-empty list")
    assert_misuse(function()
      metrics.analyze { prometheus = metrics.prometheus { url = "http://x" }, metrics = { { name = "a", query = "{{args.nope}}",
        success = metrics.below(1) } } }
    end, "metrics.analyze: metrics[1]: the query uses {{args.nope}} but args has no nope")
  end)
end)

describe("in a recipe", function()
  local RECIPE = [[
local metrics = require "relish.metrics"
local fs = require "relish.fs"
local task = require "relish.task"
return recipe "canary" {
  params = { prom = param.string { required = true }, dir = param.string { required = true } },
  step "shift traffic under analysis" { run = function(ctx)
    local prom = metrics.prometheus { url = ctx.params.prom }
    task.parallel {
      function()
        fs.write(ctx.params.dir .. "/weight", "10\n")
        task.sleep(30) -- the rest of the rollout: cut short when the analysis fails
        fs.write(ctx.params.dir .. "/weight", "100\n")
      end,
      function()
        metrics.analyze { ctx = ctx, prometheus = prom, interval = "1s", count = 20, args = { version = "v2" },
          metrics = { { name = "error-rate", query = ']] .. RATIO .. [[', success = metrics.below(0.01) } } }
      end,
    }
  end },
}
]]

  test("a failing background analysis fails the step at once and rolls back; a dry-run only tells", function()
    local env <close> = setup(50)
    local d = tmpdir()
    local f = support.recipe(d, "canary.lua", RECIPE)
    local plan = support.relish { "run", f, "--dry-run", "-p", "prom=" .. env.url, "-p", "dir=" .. d,
      "--state", support.state(d), timeout = 120 }
    assert_eq(plan.code, 0, plan.stdout .. plan.stderr)
    assert_match(plan.stdout, "analysis failed: error%-rate failed .-%(dry%-run: not failing the plan%)")
    local r = support.relish { "run", f, "-p", "prom=" .. env.url, "-p", "dir=" .. d, "--state", support.state(d),
      timeout = 120 }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout, "error%-rate  0%.05  < 0%.01  ✗ %(1/20%)")
    assert_nil(support.read(d .. "/weight"), "rolled back")
    local show = json.decode(support.relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    local logged = false
    for _, e in ipairs(show.events or {}) do
      if (e.text or e.message or ""):match("error%-rate  0%.05") then logged = true end
    end
    assert_true(logged, "the measurement is in the journal")
  end)
end)

describe("built-in checks", function()
  test("request success rate and p99 latency, from label sets", function()
    local s = metrics.request_success_rate { labels = { service = "api", version = "v2" } }
    assert_eq(s.query, 'sum(rate(http_requests_total{service="api",version="v2",code!~"5.."}[1m])) / '
      .. 'sum(rate(http_requests_total{service="api",version="v2"}[1m]))')
    assert_true(s.success.check(0.99))
    assert_false(s.success.check(0.98))
    local l = metrics.request_duration_p99 { labels = 'job="api"', window = "5m", max = 0.3 }
    assert_eq(l.query, 'histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="api"}[5m])))')
    assert_eq(l.success.describe, "<= 0.3")
  end)
end)
