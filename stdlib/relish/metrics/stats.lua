-- relish.metrics.stats: the pure statistics behind relish.metrics: the
-- Mann-Whitney U test, a Kayenta-style canary judgement and SLO budget math.
local errors = require "relish._errors"

local M = {}

local usage = errors.usage_for(debug.getinfo(1, "S").source)

local function check_opts(fname, opts, known)
  return errors.check_options(usage, fname, opts, known)
end

-- ---- the normal distribution ----------------------------------------------

-- erfc(x) by the Chebyshev fit of Numerical Recipes (6.2): relative error
-- below 1.2e-7 everywhere, also far in the tail where p-values live.
local function erfc(x)
  local z = math.abs(x)
  local t = 1 / (1 + 0.5 * z)
  local r = t * math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 +
    t * (-0.82215223 + t * 0.17087277)))))))))
  return x >= 0 and r or 2 - r
end

-- P(Z > z) for a standard normal Z
local function normal_sf(z)
  return 0.5 * erfc(z / math.sqrt(2))
end

-- ---- Mann-Whitney U ---------------------------------------------------------

local function sample(fname, which, v)
  if type(v) ~= "table" then usage(fname, which .. ": expected a list of numbers, got " .. type(v)) end
  local out, dropped = {}, 0
  for i, x in ipairs(v) do
    if type(x) ~= "number" then
      usage(fname, string.format("%s[%d]: expected a number, got %s", which, i, type(x)))
    end
    if x ~= x then dropped = dropped + 1 else out[#out + 1] = x end
  end
  return out, dropped
end

-- The exact null distribution of U for n1, n2 without ties: the counts of
-- U = 0..n1*n2 are the coefficients of the Gaussian binomial [n1+n2, n1]_q,
-- built as the product over i of (1 - q^(n2+i)) / (1 - q^i); every partial
-- product is itself a Gaussian binomial, so the counts stay non-negative.
local function exact_counts(n1, n2)
  local top = n1 * n2
  local c = { [0] = 1 }
  for k = 1, top do c[k] = 0 end
  for i = 1, n1 do
    local j = n2 + i
    for k = top, j, -1 do c[k] = c[k] - c[k - j] end -- times (1 - q^j)
    for k = i, top do c[k] = c[k] + c[k - i] end -- divided by (1 - q^i)
  end
  return c
end

-- P(U >= u) under the exact distribution (c from exact_counts)
local function exact_sf(c, top, u)
  local above, total = 0, 0
  for k = 0, top do
    total = total + c[k]
    if k >= u then above = above + c[k] end
  end
  return above / total
end

local ALTERNATIVES = { ["two-sided"] = true, greater = true, less = true }
local METHODS = { auto = true, exact = true, normal = true }

-- mann_whitney(a, b [, {alternative=, method=}]) -> the test of whether a's
-- values tend to be larger or smaller than b's (see docs/reference/metrics-stats.md).
function M.mann_whitney(a, b, opts)
  local fname = "stats.mann_whitney"
  opts = check_opts(fname, opts, { alternative = true, method = true })
  local alternative, method = opts.alternative or "two-sided", opts.method or "auto"
  if not ALTERNATIVES[alternative] then
    usage(fname, "alternative must be \"two-sided\", \"greater\" or \"less\", got " .. tostring(alternative))
  end
  if not METHODS[method] then
    usage(fname, "method must be \"auto\", \"exact\" or \"normal\", got " .. tostring(method))
  end
  local xs, dropped_a = sample(fname, "a", a)
  local ys, dropped_b = sample(fname, "b", b)
  local n1, n2 = #xs, #ys
  local r = { n1 = n1, n2 = n2, dropped = dropped_a + dropped_b, alternative = alternative }
  if n1 == 0 or n2 == 0 then
    r.no_data = true
    return r
  end

  -- average ranks over the pooled sample; tie groups feed the correction
  local pooled = {}
  for _, x in ipairs(xs) do pooled[#pooled + 1] = { x, 1 } end
  for _, y in ipairs(ys) do pooled[#pooled + 1] = { y, 2 } end
  table.sort(pooled, function(p, q) return p[1] < q[1] end)
  local n = n1 + n2
  local r1, ties, i = 0, 0, 1
  while i <= n do
    local j = i
    while j < n and pooled[j + 1][1] == pooled[i][1] do j = j + 1 end
    local rank, t = (i + j) / 2, j - i + 1
    for k = i, j do
      if pooled[k][2] == 1 then r1 = r1 + rank end
    end
    ties = ties + (t * t * t - t)
    i = j + 1
  end
  local u1 = r1 - n1 * (n1 + 1) / 2
  local u2 = n1 * n2 - u1
  local mu = n1 * n2 / 2
  local variance = n1 * n2 / 12 * ((n + 1) - ties / (n * (n - 1)))
  local sd = math.sqrt(variance)
  -- whole counts read as integers (17, not 17.0); a tie can leave a half
  r.u1, r.u2 = math.tointeger(u1) or u1, math.tointeger(u2) or u2
  r.u = math.min(r.u1, r.u2)
  r.effect = u1 / (n1 * n2)
  r.mean, r.sd, r.ties = mu, sd, ties > 0

  -- z with the continuity correction toward the mean, signed like u1 - mu
  local d = u1 - mu
  r.z = sd > 0 and (d > 0 and 1 or -1) * math.max(0, math.abs(d) - 0.5) / sd or 0

  -- scipy's rule (a sample of at most 8, no ties), capped so the table of
  -- counts stays small
  local use_exact = method == "exact"
    or (method == "auto" and ties == 0 and math.min(n1, n2) <= 8 and n1 * n2 <= 20000)
  if use_exact and ties > 0 then
    usage(fname, "the exact method needs samples without ties; use method=\"normal\"")
  end
  local greater, less -- P(U1 >= u1), P(U1 <= u1)
  if use_exact then
    local c = exact_counts(n1, n2)
    greater = exact_sf(c, n1 * n2, u1)
    less = exact_sf(c, n1 * n2, u2) -- the distribution is symmetric
    r.method = "exact"
  elseif sd == 0 then
    greater, less = 1, 1 -- every value equal: no evidence either way
    r.method = "normal"
  else
    greater = normal_sf((u1 - mu - 0.5) / sd)
    less = normal_sf((u2 - mu - 0.5) / sd)
    r.method = "normal"
  end
  r.p_greater, r.p_less = math.min(1, greater), math.min(1, less)
  r.p_two_sided = math.min(1, 2 * math.min(greater, less))
  r.p = alternative == "greater" and r.p_greater or alternative == "less" and r.p_less or r.p_two_sided
  return r
end

-- ---- canary judgement -------------------------------------------------------

local DIRECTIONS = { increase = true, decrease = true, either = true }
local NO_DATA = { fail = true, inconclusive = true, pass = true }

local function pct(p)
  if p < 0.0001 then return string.format("%.1e", p) end
  return string.format("%.4f", p)
end

-- compare(baseline, canary [, opts]) -> {score=, verdict=, reason=, test=}
function M.compare(baseline, canary, opts)
  local fname = "stats.compare"
  opts = check_opts(fname, opts, { direction = true, pass = true, marginal = true, alpha = true, no_data = true })
  local direction = opts.direction or "increase"
  local pass, marginal, alpha = opts.pass or 75, opts.marginal or 50, opts.alpha or 0.05
  local no_data = opts.no_data or "inconclusive"
  if not DIRECTIONS[direction] then
    usage(fname, "direction must be \"increase\", \"decrease\" or \"either\", got " .. tostring(direction))
  end
  if not NO_DATA[no_data] then
    usage(fname, "no_data must be \"fail\", \"inconclusive\" or \"pass\", got " .. tostring(no_data))
  end
  if type(pass) ~= "number" or type(marginal) ~= "number" or not (0 <= marginal and marginal <= pass and pass <= 100) then
    usage(fname, "thresholds must be numbers with 0 <= marginal <= pass <= 100")
  end
  if type(alpha) ~= "number" or not (alpha > 0 and alpha < 1) then
    usage(fname, "alpha must be a number between 0 and 1")
  end
  local _ = sample(fname, "baseline", baseline) -- misuse before anything else
  _ = sample(fname, "canary", canary)

  -- canary first: effect = P(canary > baseline) and p_greater = "canary is higher"
  local t = M.mann_whitney(canary, baseline, { method = "auto" })
  local r = { test = t, direction = direction }
  if t.no_data then
    local which = t.n1 == 0 and t.n2 == 0 and "canary and baseline have" or t.n1 == 0 and "canary has" or "baseline has"
    r.no_data = true
    r.verdict = no_data
    r.score = no_data == "pass" and 100 or no_data == "fail" and 0 or nil
    r.reason = string.format("no data: %s no samples (no_data=%s)", which, no_data)
    return r
  end

  local p, harm, worse
  if direction == "increase" then
    p, harm, worse = t.p_greater, t.effect, "higher"
  elseif direction == "decrease" then
    p, harm, worse = t.p_less, 1 - t.effect, "lower"
  else
    p, harm, worse = t.p_two_sided, math.max(t.effect, 1 - t.effect), t.effect >= 0.5 and "higher" or "lower"
  end
  r.p, r.harm = p, harm
  if p >= alpha then
    r.score = 100
    r.reason = string.format("no significant difference: canary not %s than baseline (p=%s >= %g)", worse, pct(p), alpha)
  else
    r.score = math.floor(math.max(0, math.min(100, 200 * (1 - harm))) + 0.5)
    r.reason = string.format("canary %s than baseline (p=%s < %g): %.0f%% of pairs worse", worse, pct(p), alpha,
      100 * harm)
  end
  r.verdict = r.score >= pass and "pass" or r.score >= marginal and "marginal" or "fail"
  r.reason = string.format("score %d, %s: %s", r.score, r.verdict, r.reason)
  return r
end

-- ---- SLOs -------------------------------------------------------------------

local function objective_of(fname, objective)
  if type(objective) ~= "number" or not (objective > 0 and objective < 1) then
    usage(fname, "objective must be a number between 0 and 1 (e.g. 0.999), got " .. tostring(objective))
  end
  return objective
end

local function count(fname, name, v)
  if v ~= nil and (type(v) ~= "number" or v < 0 or v ~= v) then
    usage(fname, name .. " must be a non-negative number, got " .. tostring(v))
  end
  return v
end

-- error_budget{objective=, total=, good= | bad=} -> the SLI and the budget
function M.error_budget(spec)
  local fname = "stats.error_budget"
  if type(spec) ~= "table" then usage(fname, "expected a table, got " .. type(spec)) end
  check_opts(fname, spec, { objective = true, good = true, bad = true, total = true })
  local objective = objective_of(fname, spec.objective)
  local total = count(fname, "total", spec.total)
  local good, bad = count(fname, "good", spec.good), count(fname, "bad", spec.bad)
  if total == nil then usage(fname, "total is required") end
  if (good == nil) == (bad == nil) then usage(fname, "give one of good and bad") end
  bad = bad or total - good
  if bad < 0 or bad > total then usage(fname, "good and bad must be between 0 and total") end
  local budget = 1 - objective
  local r = { objective = objective, total = total, bad = bad, good = total - bad, budget = budget,
    allowed = total * budget }
  if total == 0 then
    r.no_data = true
    return r
  end
  r.error_ratio = bad / total
  r.sli = 1 - r.error_ratio
  r.consumed = r.error_ratio / budget
  r.remaining = 1 - r.consumed
  r.burn_rate = r.consumed
  return r
end

-- burn_rate(error_ratio, objective) -> how many times faster than the SLO
-- allows the budget is being spent (1 = exactly used up over the window)
function M.burn_rate(error_ratio, objective)
  local fname = "stats.burn_rate"
  objective_of(fname, objective)
  if error_ratio == nil or error_ratio ~= error_ratio then return nil end
  if type(error_ratio) ~= "number" or error_ratio < 0 or error_ratio > 1 then
    usage(fname, "error ratio must be a number between 0 and 1, got " .. tostring(error_ratio))
  end
  return error_ratio / (1 - objective)
end

-- The Google SRE Workbook's multiwindow, multi-burn-rate alerts for a 30-day
-- SLO: 2 % of the budget in an hour, 5 % in six hours, 10 % in three days.
M.DEFAULT_POLICY = {
  { long = "1h", short = "5m", factor = 14.4, severity = "page" },
  { long = "6h", short = "30m", factor = 6, severity = "page" },
  { long = "3d", short = "6h", factor = 1, severity = "ticket" },
}

local SEVERITY_RANK = { page = 2, ticket = 1 }

local function seconds(fname, v, what)
  local s, err = require("relish.dsl").duration(v, what)
  if not s then usage(fname, err or (what .. " is required")) end
  return s
end

local function rate_index(fname, rates)
  local by = {}
  for k, v in pairs(rates) do
    if v ~= nil and (type(v) ~= "number") then
      usage(fname, string.format("rate for %s must be a number, got %s", tostring(k), type(v)))
    end
    by[seconds(fname, k, "window " .. tostring(k))] = v
  end
  return by
end

-- burn_gate(rates_by_window [, policy [, {window=}]]) -> {verdict=, fired=,
-- pairs=, reason=}; verdict is the most severe severity whose pair has both
-- windows above its factor, "ok" when none, "no_data" when no pair has both rates.
function M.burn_gate(rates, policy, opts)
  local fname = "stats.burn_gate"
  if type(rates) ~= "table" then usage(fname, "expected a table of burn rates by window, got " .. type(rates)) end
  policy = policy or M.DEFAULT_POLICY
  if type(policy) ~= "table" or #policy == 0 then usage(fname, "policy must be a non-empty list of window pairs") end
  opts = check_opts(fname, opts, { window = true })
  local slo_window = seconds(fname, opts.window or "30d", "window")
  local by = rate_index(fname, rates)

  local r = { verdict = "ok", pairs = {} }
  local complete = 0
  for i, rule in ipairs(policy) do
    if type(rule) ~= "table" then usage(fname, string.format("policy[%d] must be a table", i)) end
    check_opts(fname, rule, { long = true, short = true, factor = true, severity = true }, "policy[" .. i .. "].")
    local long = seconds(fname, rule.long, string.format("policy[%d].long", i))
    local short = seconds(fname, rule.short, string.format("policy[%d].short", i))
    if type(rule.factor) ~= "number" or rule.factor <= 0 then
      usage(fname, string.format("policy[%d].factor must be a positive number", i))
    end
    local severity = rule.severity or "page"
    if type(severity) ~= "string" then usage(fname, string.format("policy[%d].severity must be a string", i)) end
    local pair = { long = rule.long, short = rule.short, factor = rule.factor, severity = severity,
      long_rate = by[long], short_rate = by[short], budget_spent = rule.factor * long / slo_window }
    if pair.long_rate == nil or pair.short_rate == nil or pair.long_rate ~= pair.long_rate
      or pair.short_rate ~= pair.short_rate then
      pair.no_data = true
      pair.fired = false
    else
      complete = complete + 1
      pair.fired = pair.long_rate > rule.factor and pair.short_rate > rule.factor
    end
    r.pairs[i] = pair
    if pair.fired and (r.fired == nil or (SEVERITY_RANK[severity] or 0) > (SEVERITY_RANK[r.fired.severity] or 0)) then
      r.fired = pair
    end
  end

  local function rate(x) return x and string.format("%.2fx", x) or "no data" end
  local function say(p)
    return string.format("%s/%s burn %s/%s vs %gx", p.long, p.short, rate(p.long_rate), rate(p.short_rate), p.factor)
  end
  if r.fired then
    r.verdict = r.fired.severity
    r.reason = string.format("%s: %s (%.0f%% of the budget)", r.verdict, say(r.fired), 100 * r.fired.budget_spent)
  elseif complete == 0 then
    r.verdict = "no_data"
    r.reason = "no data: no window pair has both burn rates"
  else
    local parts = {}
    for _, p in ipairs(r.pairs) do parts[#parts + 1] = say(p) end
    r.reason = "ok: " .. table.concat(parts, "; ")
  end
  return r
end

return M
