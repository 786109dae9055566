-- relish.metrics.stats: the Mann-Whitney U test against published values and
-- an exact enumeration, the canary judgement, and SLO budget and burn gates.
local stats = require "relish.metrics.stats"

-- U1 counted pair by pair (a tie counts a half): independent of the ranking
local function pairwise_u(a, b)
  local u = 0
  for _, x in ipairs(a) do
    for _, y in ipairs(b) do u = u + (x > y and 1 or x == y and 0.5 or 0) end
  end
  return u
end

-- every way to split the pooled sample into groups of #a and #b: the exact
-- permutation distribution of U1, ties included (a list of U1 values)
local function permutation_us(a, b)
  local pooled = {}
  for _, x in ipairs(a) do pooled[#pooled + 1] = x end
  for _, y in ipairs(b) do pooled[#pooled + 1] = y end
  local n, k, us = #pooled, #a, {}
  local function walk(start, chosen)
    if #chosen == k then
      local in_a, xs, ys = {}, {}, {}
      for _, i in ipairs(chosen) do in_a[i] = true end
      for i = 1, n do
        if in_a[i] then xs[#xs + 1] = pooled[i] else ys[#ys + 1] = pooled[i] end
      end
      us[#us + 1] = pairwise_u(xs, ys)
      return
    end
    for i = start, n do
      chosen[#chosen + 1] = i
      walk(i + 1, chosen)
      chosen[#chosen] = nil
    end
  end
  walk(1, {})
  return us
end

local function range(from, to, step)
  local t = {}
  for x = from, to, step or 1 do t[#t + 1] = x end
  return t
end

describe("mann_whitney", function()
  -- scipy.stats.mannwhitneyu documentation (ages of male and female
  -- authors): U1 = 17, exact two-sided p = 0.1111111111111111, asymptotic
  -- (continuity-corrected) p = 0.11134688653314041
  local males, females = { 19, 22, 16, 29, 24 }, { 20, 11, 17, 12 }

  test("scipy's example, exact", function()
    local r = stats.mann_whitney(males, females)
    assert_eq(r.method, "exact")
    assert_eq(r.u1, 17)
    assert_eq(r.u2, 3)
    assert_eq(r.u, 3)
    assert_eq(r.n1, 5)
    assert_eq(r.n2, 4)
    assert_near(r.p, 1 / 9, 1e-12)
    assert_near(r.effect, 17 / 20, 1e-12)
  end)

  test("scipy's example, normal approximation with continuity correction", function()
    local r = stats.mann_whitney(males, females, { method = "normal" })
    assert_eq(r.method, "normal")
    assert_near(r.p, 0.11134688653314041, 1e-7)
    -- z = (17 - 10 - 0.5) / sqrt(5*4*10/12)
    assert_near(r.z, 6.5 / math.sqrt(50 / 3), 1e-12)
    assert_near(r.p_greater, 0.05567344326657024, 1e-7)
  end)

  -- R's ?wilcox.test example (Hollander & Wolfe, permeability constants):
  -- wilcox.test(x, y, alternative = "g") gives W = 35, p-value = 0.1272
  test("R's wilcox.test example, one-sided exact", function()
    local x = { 0.80, 0.83, 1.89, 1.04, 1.45, 1.38, 1.91, 1.64, 0.73, 1.46 }
    local y = { 1.15, 0.88, 0.90, 0.74, 1.21 }
    local r = stats.mann_whitney(x, y, { alternative = "greater" })
    assert_eq(r.method, "exact")
    assert_eq(r.u1, 35)
    assert_near(r.p, 0.1272061272061272, 1e-12) -- 0.1272 as R prints it
    assert_near(r.p_greater, r.p, 0)
    -- the two-sided normal approximation, by hand: z = (35-25-0.5)/sqrt(200/3)
    local n = stats.mann_whitney(x, y, { method = "normal" })
    assert_near(n.p, 0.24462360512698333, 1e-7)
  end)

  test("the exact distribution matches an enumeration of every split", function()
    local a, b = { 3.1, 7.4, 1.2, 9.9, 5.5, 6.0 }, { 2.2, 8.8, 4.4, 0.5, 10.1 }
    local us, u1 = permutation_us(a, b), pairwise_u(a, b)
    local ge, le = 0, 0
    for _, u in ipairs(us) do
      if u >= u1 then ge = ge + 1 end
      if u <= u1 then le = le + 1 end
    end
    local r = stats.mann_whitney(a, b, { method = "exact" })
    assert_eq(r.u1, u1)
    assert_near(r.p_greater, ge / #us, 1e-12)
    assert_near(r.p_less, le / #us, 1e-12)
    assert_near(r.p_two_sided, math.min(1, 2 * math.min(ge, le) / #us), 1e-12)
  end)

  -- ties: average ranks, and a variance equal to the exact permutation
  -- variance of U1 (what the tie correction is). By hand: tie groups
  -- {2,2} {3,3,3} {4,4} {5,5} {7,7} give sum(t^3-t) = 48, so
  -- var = 7*8/12 * (16 - 48/210) = 73.6; z = (9.5-28+0.5)/sqrt(73.6);
  -- two-sided p = 0.035893149244152836 (python3, math.erfc)
  test("textbook data with ties", function()
    local a, b = { 1, 2, 2, 3, 4, 5, 5 }, { 3, 3, 4, 6, 7, 7, 8, 9 }
    local r = stats.mann_whitney(a, b)
    assert_eq(r.method, "normal") -- ties: no exact test
    assert_true(r.ties)
    assert_eq(r.u1, pairwise_u(a, b))
    assert_eq(r.u1, 9.5)
    local us, mean, var = permutation_us(a, b), 0, 0
    for _, u in ipairs(us) do mean = mean + u / #us end
    for _, u in ipairs(us) do var = var + (u - mean) ^ 2 / #us end
    assert_near(r.mean, mean, 1e-9)
    assert_near(r.sd ^ 2, var, 1e-9)
    assert_near(r.sd ^ 2, 73.6, 1e-9)
    assert_near(r.z, -18 / math.sqrt(73.6), 1e-12)
    assert_near(r.p, 0.035893149244152836, 1e-7)
    assert_near(r.p_less, 0.017946574622076418, 1e-7)
    assert_near(r.p_greater, 0.9866096314610023, 1e-7)
    assert_error(function() stats.mann_whitney(a, b, { method = "exact" }) end, "without ties")
  end)

  test("identical samples: p is 1", function()
    local a = range(1, 40)
    local r = stats.mann_whitney(a, a)
    assert_eq(r.u1, 800)
    assert_near(r.effect, 0.5, 1e-12)
    assert_near(r.z, 0, 0)
    assert_near(r.p, 1, 1e-9)
    local flat = stats.mann_whitney({ 5, 5, 5 }, { 5, 5, 5, 5 })
    assert_near(flat.sd, 0, 0)
    assert_eq(flat.p, 1)
  end)

  test("clearly shifted samples: p is tiny, in the right direction", function()
    local lo, hi = range(1, 50), range(101, 150)
    local r = stats.mann_whitney(hi, lo)
    assert_eq(r.u1, 2500)
    assert_near(r.effect, 1, 0)
    assert_true(r.p < 1e-15, r.p)
    assert_true(r.p_greater < 1e-15)
    assert_near(r.p_less, 1, 1e-9)
    assert_true(r.z > 8)
  end)

  test("NaN values are dropped and counted, empty samples are no data", function()
    local r = stats.mann_whitney({ 1, 0 / 0, 2 }, { 3, 4 })
    assert_eq(r.n1, 2)
    assert_eq(r.dropped, 1)
    local e = stats.mann_whitney({}, { 1, 2 })
    assert_true(e.no_data)
    assert_nil(e.p)
    assert_true(stats.mann_whitney({ 0 / 0 }, { 1 }).no_data)
  end)

  test("misuse raises at the caller", function()
    assert_misuse(function() stats.mann_whitney(nil, {}) end,
      "stats.mann_whitney: a: expected a list of numbers, got nil")
    assert_misuse(function() stats.mann_whitney({ 1, "2" }, {}) end,
      "stats.mann_whitney: a[2]: expected a number, got string")
    assert_misuse(function() stats.mann_whitney({}, {}, { alternative = "bigger" }) end,
      "stats.mann_whitney: alternative must be \"two-sided\", \"greater\" or \"less\", got bigger")
  end)
end)

describe("compare", function()
  local baseline = {}
  local same = {}
  local worse = {}
  for i = 1, 30 do
    baseline[i] = 0.010 + (i % 7) * 0.001 -- error ratios about 1 %
    same[i] = 0.010 + ((i + 3) % 7) * 0.001
    worse[i] = 0.030 + (i % 5) * 0.001
  end

  test("a clearly worse canary fails when increase is bad", function()
    local r = stats.compare(baseline, worse, { direction = "increase" })
    assert_eq(r.verdict, "fail")
    assert_eq(r.score, 0)
    assert_true(r.p < 1e-9, r.p)
    assert_match(r.reason, "canary higher than baseline")
    assert_eq(r.test.n1, 30)
  end)

  test("the same canary passes under each direction", function()
    for _, dir in ipairs { "increase", "decrease", "either" } do
      local r = stats.compare(baseline, same, { direction = dir })
      assert_eq(r.verdict, "pass", dir)
      assert_eq(r.score, 100, dir)
      assert_match(r.reason, "no significant difference", dir)
    end
  end)

  test("a higher canary passes when only decrease is bad, fails under either", function()
    assert_eq(stats.compare(baseline, worse, { direction = "decrease" }).verdict, "pass")
    local r = stats.compare(baseline, worse, { direction = "either" })
    assert_eq(r.verdict, "fail")
    local lower = stats.compare(worse, baseline, { direction = "decrease" })
    assert_eq(lower.verdict, "fail")
    assert_match(lower.reason, "canary lower")
  end)

  test("a small significant shift scores between, marginal by the thresholds", function()
    -- canary j+26.2 is below baseline i only when i - j >= 27: 1+2+...+73
    -- = 2701 of the 10,000 pairs, so 72.99 % are worse and the score is
    -- 200 * (1 - 0.7299) = 54.02 -> 54
    local b, c = range(1, 100), {}
    for i = 1, 100 do c[i] = i + 26.2 end
    local r = stats.compare(b, c)
    assert_true(r.p < 0.05, r.p)
    assert_near(r.harm, 0.7299, 1e-12)
    assert_eq(r.score, 54)
    assert_eq(r.verdict, "marginal")
    assert_eq(stats.compare(b, c, { pass = 50, marginal = 25 }).verdict, "pass")
    assert_eq(stats.compare(b, c, { alpha = 1e-9 }).verdict, "pass")
  end)

  test("an empty canary or baseline follows the no-data policy", function()
    local cases = { fail = { "fail", 0 }, pass = { "pass", 100 }, inconclusive = { "inconclusive", nil } }
    for policy, want in pairs(cases) do
      for _, dir in ipairs { "increase", "decrease", "either" } do
        local r = stats.compare(baseline, {}, { direction = dir, no_data = policy })
        assert_eq(r.verdict, want[1], policy .. " " .. dir)
        assert_eq(r.score, want[2], policy .. " " .. dir)
        assert_true(r.no_data)
        assert_match(r.reason, "no data: canary has no samples")
      end
    end
    local d = stats.compare({}, worse)
    assert_eq(d.verdict, "inconclusive") -- the default: no data never passes silently
    assert_match(d.reason, "baseline has no samples")
  end)

  test("misuse raises at the caller", function()
    assert_misuse(function() stats.compare({}, {}, { direction = "up" }) end,
      "stats.compare: direction must be \"increase\", \"decrease\" or \"either\", got up")
    assert_misuse(function() stats.compare({}, {}, { no_data = "skip" }) end,
      "stats.compare: no_data must be \"fail\", \"inconclusive\" or \"pass\", got skip")
    assert_misuse(function() stats.compare({}, {}, { pass = 40, marginal = 60 }) end,
      "stats.compare: thresholds must be numbers with 0 <= marginal <= pass <= 100")
    assert_misuse(function() stats.compare({}, {}, { treshold = 1 }) end,
      "stats.compare: unknown option 'treshold'")
  end)
end)

describe("SLO math", function()
  test("error budget from good and total", function()
    -- 99.9 % over 1,000,000 requests allows 1,000 bad; 250 bad spent 25 %
    local b = stats.error_budget { objective = 0.999, good = 999750, total = 1000000 }
    assert_near(b.sli, 0.99975, 1e-12)
    assert_near(b.error_ratio, 0.00025, 1e-12)
    assert_near(b.budget, 0.001, 1e-12)
    assert_near(b.allowed, 1000, 1e-6)
    assert_eq(b.bad, 250)
    assert_near(b.consumed, 0.25, 1e-9)
    assert_near(b.remaining, 0.75, 1e-9)
    assert_near(b.burn_rate, 0.25, 1e-9)
  end)

  test("an overspent budget has a negative remainder", function()
    local b = stats.error_budget { objective = 0.99, bad = 300, total = 10000 }
    assert_near(b.sli, 0.97, 1e-12)
    assert_near(b.remaining, -2, 1e-9)
  end)

  test("no traffic is no data", function()
    local b = stats.error_budget { objective = 0.999, good = 0, total = 0 }
    assert_true(b.no_data)
    assert_nil(b.sli)
    assert_nil(b.remaining)
  end)

  test("burn rate", function()
    assert_near(stats.burn_rate(0.0144, 0.999), 14.4, 1e-9)
    assert_near(stats.burn_rate(0.001, 0.999), 1, 1e-9)
    assert_near(stats.burn_rate(0, 0.99), 0, 0)
    assert_nil(stats.burn_rate(0 / 0, 0.99))
    assert_misuse(function() stats.burn_rate(0.1, 1) end,
      "stats.burn_rate: objective must be a number between 0 and 1 (e.g. 0.999), got 1")
  end)

  test("error budget misuse", function()
    assert_misuse(function() stats.error_budget { objective = 0.999, total = 10 } end,
      "stats.error_budget: give one of good and bad")
    assert_misuse(function() stats.error_budget { objective = 0.999, good = 11, total = 10 } end,
      "stats.error_budget: good and bad must be between 0 and total")
  end)
end)

describe("burn_gate", function()
  local quiet = { ["1h"] = 0.5, ["5m"] = 0.5, ["6h"] = 0.5, ["30m"] = 0.5, ["3d"] = 0.5 }
  local function with(over)
    local t = {}
    for k, v in pairs(quiet) do t[k] = v end
    for k, v in pairs(over) do t[k] = v end
    return t
  end

  test("nothing burning is ok, with the numbers", function()
    local g = stats.burn_gate(quiet)
    assert_eq(g.verdict, "ok")
    assert_nil(g.fired)
    assert_eq(#g.pairs, 3)
    assert_eq(g.pairs[1].long_rate, 0.5)
    assert_near(g.pairs[1].budget_spent, 0.02, 1e-12)
    assert_near(g.pairs[2].budget_spent, 0.05, 1e-12)
    assert_near(g.pairs[3].budget_spent, 0.10, 1e-12)
    assert_match(g.reason, "^ok: 1h/5m burn 0.50x/0.50x vs 14.4x")
  end)

  test("1h and 5m above 14.4 page", function()
    local g = stats.burn_gate(with { ["1h"] = 15, ["5m"] = 20 })
    assert_eq(g.verdict, "page")
    assert_eq(g.fired.long, "1h")
    assert_eq(g.fired.short, "5m")
    assert_match(g.reason, "page: 1h/5m burn 15.00x/20.00x vs 14.4x %(2%% of the budget%)")
  end)

  test("a long window alone, or a short one alone, does not fire", function()
    assert_eq(stats.burn_gate(with { ["1h"] = 15 }).verdict, "ok") -- already recovered
    assert_eq(stats.burn_gate(with { ["5m"] = 30 }).verdict, "ok") -- a blip
    assert_eq(stats.burn_gate(with { ["1h"] = 14.4, ["5m"] = 14.4 }).verdict, "ok") -- must exceed
  end)

  test("6h and 30m above 6 page", function()
    local g = stats.burn_gate(with { ["6h"] = 7, ["30m"] = 6.5 })
    assert_eq(g.verdict, "page")
    assert_eq(g.fired.long, "6h")
    assert_eq(stats.burn_gate(with { ["6h"] = 7, ["30m"] = 5 }).verdict, "ok")
  end)

  test("3d and 6h above 1 open a ticket, and a page outranks it", function()
    local g = stats.burn_gate(with { ["3d"] = 1.2, ["6h"] = 1.5 })
    assert_eq(g.verdict, "ticket")
    assert_eq(g.fired.long, "3d")
    assert_eq(stats.burn_gate(with { ["3d"] = 0.9, ["6h"] = 1.5 }).verdict, "ok")
    local both = stats.burn_gate(with { ["3d"] = 2, ["6h"] = 7, ["30m"] = 8 })
    assert_eq(both.verdict, "page")
    assert_eq(both.fired.long, "6h")
    assert_true(both.pairs[3].fired)
  end)

  test("windows are matched by duration, and a custom policy applies", function()
    local g = stats.burn_gate({ ["60m"] = 3, ["300s"] = 3 },
      { { long = "1h", short = "5m", factor = 2, severity = "block" } }, { window = "7d" })
    assert_eq(g.verdict, "block")
    assert_near(g.fired.budget_spent, 2 / (7 * 24), 1e-12)
  end)

  test("missing rates: a pair without both is no data, none at all is no_data", function()
    local g = stats.burn_gate { ["1h"] = 20 }
    assert_eq(g.verdict, "no_data")
    assert_true(g.pairs[1].no_data)
    local partial = stats.burn_gate { ["6h"] = 7, ["30m"] = 7 }
    assert_eq(partial.verdict, "page")
    assert_true(partial.pairs[1].no_data)
  end)

  test("misuse raises at the caller", function()
    assert_misuse(function() stats.burn_gate { ["1 hour"] = 3 } end,
      "stats.burn_gate: window 1 hour: cannot read duration \"1 hour\" (use e.g. 30s, 10m, 1h30m)")
    assert_misuse(function() stats.burn_gate({}, { { long = "1h", short = "5m" } }) end,
      "stats.burn_gate: policy[1].factor must be a positive number")
  end)
end)
