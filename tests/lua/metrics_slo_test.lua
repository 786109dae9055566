-- metrics.compare (canary against baseline, Mann-Whitney) and metrics.slo
-- (error budget, burn rates, the multiwindow multi-burn-rate gate) against a
-- real Prometheus fed with deterministic data by promtool's backfill.
local metrics = require "relish.metrics"
local pf = require "prom_fixture"
local try = require("relish._errors").try

-- the data ends at AT, ten days ago on an hour, so every answer is fixed
local AT = (os.time() // 3600 - 240) * 3600
local STEP = 60

-- a deterministic sequence in [0, 1)
local function lcg(seed)
  local x = seed
  return function()
    x = (x * 1103515245 + 12345) % 2147483648
    return x / 2147483648
  end
end

local function backfill()
  local lines = { "# TYPE sli_total counter" }
  -- four days of requests, one sample a minute: 1000 a minute, and errors
  -- per scenario: "calm" 0.05 % all along; "burst" 2 % in the last hour
  -- (a 20x burn of a 99.9 % objective); "slow" 0.8 % in the last 6 hours
  local first = AT - 4 * 86400
  for _, sc in ipairs { "calm", "burst", "slow", "simmer" } do
    local good, bad = 0, 0
    local good_lines, bad_lines = {}, {}
    for t = first, AT, STEP do
      local rate = 0.0005
      if sc == "burst" and t > AT - 3600 then rate = 0.02 end
      if sc == "slow" and t > AT - 6 * 3600 then rate = 0.008 end
      if sc == "simmer" then rate = 0.0015 end -- 1.5x for days: a ticket, not a page
      bad = bad + 1000 * rate
      good = good + 1000 * (1 - rate)
      good_lines[#good_lines + 1] = string.format('sli_total{scenario="%s",code="200"} %.4f %d', sc, good, t)
      bad_lines[#bad_lines + 1] = string.format('sli_total{scenario="%s",code="500"} %.4f %d', sc, bad, t)
    end
    for _, l in ipairs(good_lines) do lines[#lines + 1] = l end
    for _, l in ipairs(bad_lines) do lines[#lines + 1] = l end
  end
  -- latency of a baseline and of canaries over the last 30 minutes, every 15 s
  lines[#lines + 1] = "# TYPE latency_seconds gauge"
  for _, v in ipairs { { "baseline", 0, 1 }, { "same", 0, 2 }, { "worse", 0.05, 3 } } do
    local rnd = lcg(v[3])
    for t = AT - 1800, AT, 15 do
      lines[#lines + 1] = string.format('latency_seconds{version="%s"} %.6f %d', v[1], 0.1 + 0.02 * rnd() + v[2], t)
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

local function start()
  if not pf.available() then skip("prometheus, promtool or prometheus-pushgateway is not installed") end
  return pf.prometheus { backfill = backfill() }
end

describe("canary against baseline", function()
  test("a clearly worse canary fails, an equal one passes, an empty one follows the no-data policy", function()
    local p <close> = start()
    local prom = metrics.prometheus { url = p.url }
    local function cmp(canary, extra)
      local o = { prometheus = prom, baseline = 'latency_seconds{version="baseline"}', canary = canary,
        window = "20m", step = "15s", at = AT }
      for k, v in pairs(extra or {}) do o[k] = v end
      return metrics.compare(o)
    end
    local worse = cmp 'latency_seconds{version="worse"}'
    assert_eq(worse.verdict, "fail")
    assert_eq(worse.score, 0)
    assert_eq(#worse.baseline, 81)
    assert_eq(#worse.canary, 81)
    local same = cmp 'latency_seconds{version="same"}'
    assert_eq(same.verdict, "pass", same.reason)
    assert_eq(same.score, 100)
    -- a lower latency is no harm when only an increase is bad
    assert_eq(cmp('latency_seconds{version="baseline"} - 0.05', { direction = "increase" }).verdict, "pass")
    assert_eq(cmp('latency_seconds{version="baseline"} - 0.05', { direction = "either" }).verdict, "fail")
    local none = cmp 'latency_seconds{version="nobody"}'
    assert_eq(none.verdict, "inconclusive")
    assert_match(none.reason, "no data: canary has no samples")
    assert_eq(cmp('latency_seconds{version="nobody"}', { no_data = "fail" }).verdict, "fail")
    assert_misuse(function() metrics.compare { prometheus = prom, baseline = "x" } end,
      "metrics.compare: canary: expected a PromQL query (a string), got nil")
  end)
end)

describe("SLOs", function()
  local function slo(prom, sc)
    return metrics.slo { prometheus = prom, name = sc, objective = 0.999, window = "3d",
      good = string.format('sum(increase(sli_total{scenario="%s",code="200"}[{{window}}]))', sc),
      total = string.format('sum(increase(sli_total{scenario="%s"}[{{window}}]))', sc) }
  end

  test("error budget and burn rates from real series", function()
    local p <close> = start()
    local prom = metrics.prometheus { url = p.url }
    local calm = slo(prom, "calm")
    local b = calm:budget { at = AT }
    assert_near(b.sli, 0.9995, 1e-6)
    assert_near(b.remaining, 0.5, 1e-3) -- half the budget used
    assert_near(calm:burn_rate("1h", { at = AT }), 0.5, 1e-3)
    assert_near(slo(prom, "burst"):burn_rate("1h", { at = AT }), 20, 0.05)
    assert_near(slo(prom, "burst"):burn_rate("5m", { at = AT }), 20, 0.05)
    local bad = metrics.slo { prometheus = prom, objective = 0.999, window = "3d",
      bad = 'sum(increase(sli_total{scenario="calm",code="500"}[{{window}}]))',
      total = 'sum(increase(sli_total{scenario="calm"}[{{window}}]))' }
    assert_near(bad:burn_rate("6h", { at = AT }), 0.5, 1e-3)
    assert_nil(slo(prom, "nobody"):burn_rate("1h", { at = AT }))
  end)

  test("the multiwindow gate: quiet, a fast burn pages on 1h/5m, a slow one on 6h/30m, a simmer tickets on 3d/6h", function()
    local p <close> = start()
    local prom = metrics.prometheus { url = p.url }
    local calm = slo(prom, "calm"):gate { at = AT }
    assert_eq(calm.verdict, "ok")
    local burst = slo(prom, "burst"):gate { at = AT }
    assert_eq(burst.verdict, "page")
    assert_eq({ burst.fired.long, burst.fired.short }, { "1h", "5m" })
    local slow = slo(prom, "slow"):gate { at = AT }
    assert_eq(slow.verdict, "page")
    assert_eq({ slow.fired.long, slow.fired.short }, { "6h", "30m" })
    local simmer = slo(prom, "simmer"):gate { at = AT }
    assert_eq(simmer.verdict, "ticket")
    assert_eq({ simmer.fired.long, simmer.fired.short }, { "3d", "6h" })
    -- an hour later the burst's short window is clean again: no page
    local later = slo(prom, "burst"):gate { at = AT + 3600 }
    assert_ne(later.verdict, "page")
    local none = slo(prom, "nobody"):gate { at = AT }
    assert_eq(none.verdict, "no_data")
  end)

  test("misuse raises at the caller", function()
    local p <close> = start()
    local prom = metrics.prometheus { url = p.url }
    assert_misuse(function() metrics.slo { prometheus = prom, total = "x" } end, "metrics.slo: give good or bad (not both)")
    assert_misuse(function() metrics.slo { prometheus = prom, good = "x", total = "y", objective = 2 } end,
      "metrics.slo: objective must be a number between 0 and 1 (e.g. 0.999), got 2")
    local _, err = try(function() return slo(prom, "calm"):burn_rate("1h", { at = AT }) end)
    assert_nil(err)
  end)
end)
