-- The Kubernetes double's traffic (tests/fixtures/k8s_api.py, "traffic"):
-- kube-proxy, ingress-nginx and Gateway API routers splitting a request
-- rate over ready pods, each image's error ratio and latency, the counters
-- of /_control/traffic and /metrics, and a real Prometheus scraping it.
local json = require "relish.json"
local metrics = require "relish.metrics"
local sh = require "relish.sh"
local k8s_fixture = require "k8s_fixture"
local pf = require "prom_fixture"

local eventually = k8s_fixture.eventually

local DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
local SVCS = "/api/v1/namespaces/default/services"
local INGS = "/apis/networking.k8s.io/v1/namespaces/default/ingresses"
local ROUTES = "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes"
local HOST = "web.example.com"

local function start()
  if not k8s_fixture.available() then skip("openssl or python3 is not installed") end
  return k8s_fixture.start { time_scale = 0.01 }
end

local function create(k, path, obj)
  local status, body = k:json("POST", path, { json = obj })
  assert_eq(status, 201, json.encode(body))
  return body
end

local function merge(k, path, patch)
  local status, body = k:json("PATCH", path, { headers = { ["Content-Type"] = "application/merge-patch+json" },
    body = json.encode(patch) })
  assert_eq(status, 200, json.encode(body))
  return body
end

-- a Deployment whose pods are labelled app=web, track=NAME (and labels)
local function deployment(k, name, image, replicas, labels)
  local l = { app = "web", track = name }
  for key, v in pairs(labels or {}) do l[key] = v end
  create(k, DEPLOYS, { metadata = { name = name }, spec = { replicas = replicas,
    selector = { matchLabels = { app = "web", track = name } },
    template = { metadata = { labels = l }, spec = { containers = { { name = "app", image = image } } } } } })
end

local function service(k, name, selector)
  create(k, SVCS, { metadata = { name = name }, spec = { selector = selector, ports = { { port = 80 } } } })
end

local function ready_count(k, selector)
  local n = 0
  for _, p in ipairs(k:pods(selector)) do
    for _, c in ipairs((p.status or {}).conditions or {}) do
      if c.type == "Ready" and c.status == "True" and not p.metadata.deletionTimestamp then n = n + 1 end
    end
  end
  return n
end

local function ready(k, selector, n)
  eventually(n .. " ready pods " .. selector, function()
    return ready_count(k, selector) == n and #k:pods(selector) == n
  end, 20)
end

local function scale(k, name, replicas)
  merge(k, DEPLOYS .. "/" .. name, { spec = { replicas = replicas } })
  ready(k, "track=" .. name, replicas)
end

local function ingress(k, name, svc, annotations)
  return create(k, INGS, { metadata = { name = name, annotations = annotations }, spec = { rules = { {
    host = HOST, http = { paths = { { path = "/", pathType = "Prefix",
      backend = { service = { name = svc, port = { number = 80 } } } } } } } } } })
end

local function by_version(report)
  local out = {}
  for _, s in ipairs(report.requests) do out[s.version] = (out[s.version] or 0) + s.value end
  return out
end

-- measure(k [, config]) -> {version = share of the requests it answered}
-- ("" for those the router answered itself), over the traffic of at least
-- 20 simulated seconds at 100 requests a second from now (config, the
-- routers' targets, posted first when given)
local function measure(k, config)
  local before = by_version(config and k:traffic(config) or k:traffic())
  local t0 = k:traffic().total
  local report = eventually("traffic", function()
    local r = k:traffic()
    return r.total - t0 >= 2000 and r
  end)
  local after, sum, out = by_version(report), 0, {}
  for v, n in pairs(after) do
    if n > (before[v] or 0) then -- versions that got no requests meanwhile are left out
      out[v] = n - (before[v] or 0)
      sum = sum + out[v]
    end
  end
  for v, n in pairs(out) do out[v] = n / sum end
  return out, report
end

-- stable (3 pods, web:1) and canary (1 pod, web:2), with Services
-- web-stable and web-canary, and a Service web for both
local function two_tracks(k, stable, canary)
  deployment(k, "stable", "web:1", stable or 3)
  deployment(k, "canary", "web:2", canary or 1)
  service(k, "web", { app = "web" })
  service(k, "web-stable", { app = "web", track = "stable" })
  service(k, "web-canary", { app = "web", track = "canary" })
  ready(k, "track=stable", stable or 3)
  ready(k, "track=canary", canary or 1)
end

-- the samples of /metrics: {{name=, labels={...}, value=}}
local function samples(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    local name, labels, value = line:match("^([%w_:]+){(.*)} (%S+)$")
    if name then
      local l = {}
      for key, v in labels:gmatch('([%w_]+)="([^"]*)"') do l[key] = v end
      out[#out + 1] = { name = name, labels = l, value = tonumber(value) }
    end
  end
  return out
end

local function sample(all, name, want)
  for _, s in ipairs(all) do
    local ok = s.name == name
    for key, v in pairs(want) do ok = ok and s.labels[key] == v end
    if ok then return s.value end
  end
  return nil
end

local INGRESS = { targets = { { kind = "Ingress", host = HOST, rps = 100 } } }

describe("a Service", function()
  test("splits evenly over the ready pods of two Deployments: 3 stable + 1 canary gives the canary 25 %", function()
    local k <close> = start()
    deployment(k, "stable", "web:1", 3, { version = "v1" })
    deployment(k, "canary", "web:2", 1)
    service(k, "web", { app = "web" })
    ready(k, "app=web", 4)
    local shares, report = measure(k, { targets = { { kind = "Service", name = "web", rps = 100 } } })
    assert_near(shares.v1, 0.75, 1e-9, "the version label")
    assert_near(shares["2"], 0.25, 1e-9, "the image's tag")
    assert_nil(shares[""])
    assert_eq(#report.pods, 4)
    for _, p in ipairs(report.pods) do
      assert_eq(p.requests, report.pods[1].requests, "each pod as much: " .. p.name)
      assert_eq({ p.errors, p.deleted, p.after_deletion }, { 0.0, false, 0.0 })
    end
    assert_eq(report.targets, { { kind = "Service", namespace = "default", name = "web", rps = 100 } })
    assert_eq(report.dropped, 0.0)
  end)

  test("a pod that is not ready gets nothing; deleted pods are marked and get nothing after", function()
    local k <close> = start()
    k:control("POST", "/images", { ["web:stuck"] = { state = "NotReady" } })
    deployment(k, "stable", "web:1", 2)
    deployment(k, "stuck", "web:stuck", 1)
    service(k, "web", { app = "web" })
    ready(k, "track=stable", 2)
    eventually("the stuck pod running", function()
      local p = k:pods("track=stuck")[1]
      return p and p.status.phase == "Running"
    end)
    local shares, report = measure(k, { targets = { { kind = "Service", name = "web", rps = 100 } } })
    assert_eq(shares, { ["1"] = 1.0 })
    local stuck
    for _, p in ipairs(report.pods) do if p.version == "stuck" then stuck = p end end
    assert_eq({ stuck.requests, stuck.deleted }, { 0.0, false })
    -- scaled down: one pod goes, and gets nothing after
    merge(k, DEPLOYS .. "/stable", { spec = { replicas = 1 } })
    local gone = eventually("a deleted pod marked", function()
      for _, p in ipairs(k:traffic().pods) do
        if p.deleted then return p end
      end
    end)
    assert_true(gone.requests > 0)
    shares, report = measure(k)
    assert_eq(shares, { ["1"] = 1.0 })
    for _, p in ipairs(report.pods) do
      if p.uid == gone.uid then assert_eq({ p.requests, p.deleted }, { gone.requests, true }) end
      assert_eq(p.after_deletion, 0.0, p.name)
    end
  end)

  test("no ready endpoint: the requests are dropped, 503 with version \"\" on /metrics", function()
    local k <close> = start()
    deployment(k, "stable", "web:1", 1)
    service(k, "web", { app = "web" })
    service(k, "nobody", { app = "nobody" })
    ready(k, "track=stable", 1)
    local shares, report = measure(k, { targets = { { kind = "Service", name = "web", rps = 100 },
      { kind = "Service", name = "nobody", rps = 50 }, { kind = "Service", name = "missing", rps = 50 } } })
    assert_near(shares["1"], 0.5, 1e-9)
    assert_near(shares[""], 0.5, 1e-9)
    assert_near(report.dropped / report.total, 0.5, 1e-9)
    local all = samples(k:metrics())
    local nobody = sample(all, "http_requests_total", { service = "nobody", version = "", code = "503" })
    local missing = sample(all, "http_requests_total", { service = "missing", version = "", code = "503" })
    assert_true(nobody > 0 and missing > 0)
    assert_nil(sample(all, "http_request_duration_seconds_count", { service = "nobody" }), "no latency for a 503")
    scale(k, "stable", 0)
    shares = measure(k)
    assert_eq(shares, { [""] = 1.0 })
  end)
end)

describe("an ingress-nginx canary Ingress", function()
  test("by weight, out of canary-weight-total; the default IngressClass is set at creation", function()
    local k <close> = start()
    two_tracks(k)
    local main = ingress(k, "web", "web-stable")
    assert_eq(main.spec.ingressClassName, "nginx")
    ingress(k, "web-canary", "web-canary", { ["nginx.ingress.kubernetes.io/canary"] = "true",
      ["nginx.ingress.kubernetes.io/canary-weight"] = "20" })
    local shares = measure(k, INGRESS)
    assert_near(shares["2"], 0.2, 1e-9)
    assert_near(shares["1"], 0.8, 1e-9)
    merge(k, INGS .. "/web-canary", { metadata = { annotations = {
      ["nginx.ingress.kubernetes.io/canary-weight"] = "50", ["nginx.ingress.kubernetes.io/canary-weight-total"] = "200" } } })
    assert_near(measure(k)["2"], 0.25, 1e-9)
    -- a total under 100 counts as 100 (balancer.lua)
    merge(k, INGS .. "/web-canary", { metadata = { annotations = {
      ["nginx.ingress.kubernetes.io/canary-weight"] = "20", ["nginx.ingress.kubernetes.io/canary-weight-total"] = "50" } } })
    assert_near(measure(k)["2"], 0.2, 1e-9)
    merge(k, INGS .. "/web-canary", { metadata = { annotations = {
      ["nginx.ingress.kubernetes.io/canary-weight"] = "0" } } })
    assert_eq(measure(k), { ["1"] = 1.0 })
    -- not a canary any more: the first Ingress keeps its location
    merge(k, INGS .. "/web-canary", { metadata = { annotations = { ["nginx.ingress.kubernetes.io/canary"] = json.null } } })
    assert_eq(measure(k), { ["1"] = 1.0 })
  end)

  test("by header: always and never, then canary-by-header-value, then -pattern, before the weight", function()
    local k <close> = start()
    two_tracks(k)
    ingress(k, "web", "web-stable")
    local A = "nginx.ingress.kubernetes.io/"
    ingress(k, "web-canary", "web-canary", { [A .. "canary"] = "true", [A .. "canary-by-header"] = "X-Canary",
      [A .. "canary-weight"] = "50" })
    local config = { targets = { { kind = "Ingress", host = HOST, rps = 100, requests = {
      { share = 0.1, headers = { ["X-Canary"] = "always" } },
      { share = 0.2, headers = { ["x-canary"] = "never" } },
      { share = 0.1, headers = { ["X-CANARY"] = "maybe" } } } } } }
    -- always: canary; never: stable; other values: the weight
    assert_near(measure(k, config)["2"], 0.1 + 0.1 * 0.5 + 0.6 * 0.5, 1e-9)
    -- a header value: only it goes to the canary, never is no longer special
    merge(k, INGS .. "/web-canary", { metadata = { annotations = { [A .. "canary-by-header-value"] = "maybe",
      [A .. "canary-weight"] = "10" } } })
    assert_near(measure(k)["2"], 0.1 * 0.1 + 0.2 * 0.1 + 0.1 + 0.6 * 0.1, 1e-9)
    -- a pattern (ignored while a value is set)
    merge(k, INGS .. "/web-canary", { metadata = { annotations = { [A .. "canary-by-header-pattern"] = "^(al|ne)" } } })
    assert_near(measure(k)["2"], 0.1 * 0.1 + 0.2 * 0.1 + 0.1 + 0.6 * 0.1, 1e-9)
    merge(k, INGS .. "/web-canary", { metadata = { annotations = { [A .. "canary-by-header-value"] = json.null } } })
    assert_near(measure(k)["2"], 0.1 + 0.2 + 0.1 * 0.1 + 0.6 * 0.1, 1e-9)
  end)

  test("by cookie always and never, after the header and before the weight", function()
    local k <close> = start()
    two_tracks(k)
    ingress(k, "web", "web-stable")
    local A = "nginx.ingress.kubernetes.io/"
    ingress(k, "web-canary", "web-canary", { [A .. "canary"] = "true", [A .. "canary-by-cookie"] = "canary",
      [A .. "canary-weight"] = "10" })
    local config = { targets = { { kind = "Ingress", host = HOST, rps = 100, requests = {
      { share = 0.3, cookies = { canary = "always" } },
      { share = 0.2, cookies = { canary = "never" } },
      { share = 0.1, cookies = { canary = "sometimes" } },
      { share = 0.1, headers = { ["X-Canary"] = "never" }, cookies = { canary = "always" } } } } } }
    -- without canary-by-header the header is nothing
    assert_near(measure(k, config)["2"], 0.3 + 0.1 * 0.1 + 0.1 + 0.3 * 0.1, 1e-9)
    merge(k, INGS .. "/web-canary", { metadata = { annotations = { [A .. "canary-by-header"] = "X-Canary" } } })
    assert_near(measure(k)["2"], 0.3 + 0.1 * 0.1 + 0.3 * 0.1, 1e-9)
  end)

  test("a canary without endpoints leaves everything to the main backend; a main one without is 503", function()
    local k <close> = start()
    two_tracks(k)
    ingress(k, "web", "web-stable")
    ingress(k, "web-canary", "web-canary", { ["nginx.ingress.kubernetes.io/canary"] = "true",
      ["nginx.ingress.kubernetes.io/canary-by-header"] = "X-Canary" })
    local config = { targets = { { kind = "Ingress", host = HOST, rps = 100, requests = {
      { share = 1, headers = { ["X-Canary"] = "always" } } } } } }
    assert_eq(measure(k, config), { ["2"] = 1.0 })
    scale(k, "canary", 0)
    assert_eq(measure(k), { ["1"] = 1.0 })
    scale(k, "canary", 1)
    scale(k, "stable", 0)
    local shares, report = measure(k)
    assert_eq(shares, { [""] = 1.0 })
    assert_true(sample(samples(k:metrics()), "http_requests_total",
      { service = "web-stable", version = "", code = "503" }) > 0)
    assert_true(report.dropped > 0)
    -- no Ingress for the host: the default server's 404
    assert_eq(measure(k, { targets = { { kind = "Ingress", host = "other.example.com", rps = 100 } } }), { [""] = 1.0 })
    assert_true(sample(samples(k:metrics()), "http_requests_total", { service = "", code = "404" }) > 0)
  end)
end)

describe("a Gateway API HTTPRoute", function()
  test("backendRefs split by weight (80/20, 0 is none), rules chosen by their matches", function()
    local k <close> = start()
    two_tracks(k)
    local function refs(stable, canary)
      return { { name = "web-stable", port = 80, weight = stable }, { name = "web-canary", port = 80, weight = canary } }
    end
    create(k, ROUTES, { apiVersion = "gateway.networking.k8s.io/v1", kind = "HTTPRoute", metadata = { name = "web" },
      spec = { parentRefs = { { name = "gateway" } }, hostnames = { HOST }, rules = {
        { matches = { { headers = { { name = "X-Canary", value = "always" } } } },
          backendRefs = { { name = "web-canary", port = 80 } } },
        { backendRefs = refs(80, 20) } } } })
    local route = { targets = { { kind = "HTTPRoute", name = "web", rps = 100 } } }
    local shares = measure(k, route)
    assert_near(shares["1"], 0.8, 1e-9)
    assert_near(shares["2"], 0.2, 1e-9)
    route.targets[1].requests = { { share = 0.5, headers = { ["x-canary"] = "always" } } }
    assert_near(measure(k, route)["2"], 0.5 + 0.5 * 0.2, 1e-9)
    local live = k:get(ROUTES .. "/web")
    live.spec.rules[2].backendRefs = refs(100, 0)
    assert_eq((k:json("PUT", ROUTES .. "/web", { json = live })), 200)
    assert_eq(measure(k, { targets = { { kind = "HTTPRoute", name = "web", rps = 100 } } }), { ["1"] = 1.0 })
    -- a Service that does not exist: 500 for its share
    live = k:get(ROUTES .. "/web")
    live.spec.rules[2].backendRefs = { { name = "web-stable", port = 80, weight = 3 }, { name = "gone", port = 80 } }
    assert_eq((k:json("PUT", ROUTES .. "/web", { json = live })), 200)
    shares = measure(k)
    assert_near(shares[""], 0.25, 1e-9)
    assert_true(sample(samples(k:metrics()), "http_requests_total", { service = "gone", code = "500" }) > 0)
  end)
end)

describe("the kinds, with kubectl as the referee", function()
  test("kubectl applies and lists Ingresses, IngressClasses and HTTPRoutes", function()
    if not k8s_fixture.available(true) then skip("openssl, python3 or kubectl is not installed") end
    local k <close> = start()
    local manifest = [[
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  annotations:
    nginx.ingress.kubernetes.io/canary: "true"
    nginx.ingress.kubernetes.io/canary-weight: "20"
spec:
  rules:
  - host: web.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: web
spec:
  parentRefs:
  - name: gateway
  hostnames: ["web.example.com"]
  rules:
  - backendRefs:
    - name: web
      port: 80
      weight: 80
]]
    local r = k:kubectl({ "apply", "-f", "-" }, { input = manifest })
    assert_eq(r.code, 0, r.stderr)
    assert_match(r.stdout, "ingress.networking.k8s.io/web created")
    assert_match(r.stdout, "httproute.gateway.networking.k8s.io/web created")
    r = k:kubectl { "get", "ingress", "web" }
    assert_match(r.stdout, "web%s+nginx%s+web%.example%.com%s+80%s")
    r = k:kubectl { "get", "ingressclass" }
    assert_match(r.stdout, "nginx%s+k8s%.io/ingress%-nginx")
    r = k:kubectl { "get", "httproutes" }
    assert_match(r.stdout, "web%s+%[\"web%.example%.com\"%]")
    -- a weight change as a router would be given it: a merge patch of the annotation
    r = k:kubectl { "annotate", "--overwrite", "ingress", "web", "nginx.ingress.kubernetes.io/canary-weight=50" }
    assert_eq(r.code, 0, r.stderr)
    local ing = k:get(INGS .. "/web")
    assert_eq(ing.metadata.annotations["nginx.ingress.kubernetes.io/canary-weight"], "50")
    -- pathType is required
    local status, body = k:json("POST", INGS, { json = { metadata = { name = "bad" }, spec = { rules = { { http = {
      paths = { { path = "/", backend = { service = { name = "web", port = { number = 80 } } } } } } } } } } })
    assert_eq({ status, body.details.causes[1].field }, { 422, "spec.rules[0].http.paths[0].pathType" })
  end)
end)

describe("per image behaviour on /metrics", function()
  test("error_ratio and a log-normal latency through p50 and p99; the defaults", function()
    local k <close> = start()
    k:control("POST", "/images", { ["web:2"] = { error_ratio = 0.25, latency = { p50 = 0.1, p99 = 1 } } })
    two_tracks(k, 1, 1)
    measure(k, { targets = { { kind = "Service", name = "web", rps = 100 } } })
    local text = k:metrics()
    local all = samples(text)
    local function v(name, labels)
      labels.service = labels.service or "web"
      return assert(sample(all, name, labels), name .. " " .. json.encode(labels))
    end
    local errors, ok = v("http_requests_total", { version = "2", code = "500" }), v("http_requests_total", { version = "2", code = "200" })
    assert_near(errors / (errors + ok), 0.25, 1e-9)
    assert_nil(sample(all, "http_requests_total", { version = "1", code = "500" }), "no errors: no 500 series")
    local count = v("http_request_duration_seconds_count", { version = "2" })
    assert_near(count, errors + ok, 1e-6)
    assert_near(v("http_request_duration_seconds_bucket", { version = "2", le = "0.1" }) / count, 0.5, 1e-9)
    assert_near(v("http_request_duration_seconds_bucket", { version = "2", le = "1" }) / count, 0.99, 1e-9)
    assert_eq(v("http_request_duration_seconds_bucket", { version = "2", le = "+Inf" }), count)
    local sigma = (math.log(1) - math.log(0.1)) / 2.3263478740408408
    assert_near(v("http_request_duration_seconds_sum", { version = "2" }) / count, 0.1 * math.exp(sigma ^ 2 / 2), 1e-9)
    -- the defaults: p50 20 ms, p99 100 ms
    local count1 = v("http_request_duration_seconds_count", { version = "1" })
    assert_near(v("http_request_duration_seconds_bucket", { version = "1", le = "0.1" }) / count1, 0.99, 1e-9)
    assert_match(text, '# TYPE http_request_duration_seconds histogram\n')
    local les = {}
    for _, s in ipairs(all) do
      if s.name == "http_request_duration_seconds_bucket" and s.labels.version == "1" then les[#les + 1] = s.labels.le end
    end
    assert_eq(les, { "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf" })
    local report = k:traffic()
    for _, p in ipairs(report.pods) do
      assert_near(p.errors / p.requests, p.version == "2" and 0.25 or 0, 1e-9)
    end
    if sh.which("promtool") then
      local r = sh.run { readonly = true, check = false, argv = { "promtool", "check", "metrics" }, input = text }
      assert_eq(r.code, 0, r.stdout .. r.stderr)
    end
    -- bad rules and targets are refused
    for _, rule in ipairs { { error_ratio = 2 }, { latency = { p50 = 0.2, p99 = 0.1 } }, { latency = { p90 = 1 } } } do
      assert_eq(k:api("POST", "/_control/images", { json = { ["x:1"] = rule } }).status, 400, json.encode(rule))
    end
    for _, t in ipairs { { kind = "Pod", name = "x", rps = 1 }, { kind = "Service", rps = 1 },
      { kind = "Ingress", host = "h", rps = -1 }, { kind = "Service", name = "x", rps = 1, requests = {
        { share = 0.7 }, { share = 0.7 } } } } do
      assert_eq(k:api("POST", "/_control/traffic", { json = { targets = { t } } }).status, 400, json.encode(t))
    end
  end)
end)

describe("a real Prometheus scraping /metrics", function()
  test("the error ratio by version, as an analysis would ask it, is the configured one", function()
    if not pf.available() then skip("prometheus, promtool or prometheus-pushgateway is not installed") end
    local k <close> = start()
    k:control("POST", "/images", { ["web:1"] = { error_ratio = 0.02 }, ["web:2"] = { error_ratio = 0.3,
      latency = { p50 = 0.1, p99 = 1 } } })
    two_tracks(k, 2, 1)
    k:traffic { targets = { { kind = "Service", name = "web", rps = 100 } } }
    local p <close> = pf.prometheus { targets = { k8s = k.metrics_target } }
    local prom = metrics.prometheus { url = p.url }
    local q = 'sum by (version) (rate(http_requests_total{code=~"5.."}[10s]))'
      .. ' / sum by (version) (rate(http_requests_total[10s]))'
    local got = pf.eventually("two versions' error ratios", function()
      local r = prom:query(q)
      if #r.series ~= 2 then return nil end
      local out = {}
      for _, s in ipairs(r.series) do out[s.labels.version] = s.value end
      return out
    end, 30)
    assert_near(got["1"], 0.02, 1e-6)
    assert_near(got["2"], 0.3, 1e-6)
    local p50 = prom:query('histogram_quantile(0.5, sum by (le) (rate(http_request_duration_seconds_bucket{version="2"}[10s])))')
    assert_near(p50.series[1].value, 0.1, 1e-3)
  end)
end)
