-- The Kubernetes API double (tests/fixtures/k8s_api.py) straight over
-- HTTP: discovery, the verbs, selectors, patches, server-side apply,
-- dry-run, watches, faults, the Deployment controller, garbage collection
-- and the other kinds. (k8s_kubectl_test.lua has kubectl as the referee.)
local json = require "relish.json"
local k8s_fixture = require "k8s_fixture"

local eventually = k8s_fixture.eventually

local function start(opts)
  if not k8s_fixture.available() then skip("openssl or python3 is not installed") end
  return k8s_fixture.start(opts)
end

local DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"
local CMS = "/api/v1/namespaces/default/configmaps"

describe("the API over HTTP", function()
  test("discovery: legacy lists, aggregated discovery on request, scale and status subresources", function()
    local k <close> = start()
    local apps = k:get("/apis/apps/v1")
    local names = {}
    for _, r in ipairs(apps.resources) do names[r.name] = r end
    assert_eq(names["deployments/scale"].kind, "Scale")
    assert_eq(names["deployments/scale"].group, "autoscaling")
    assert_true(names["deployments/status"] ~= nil)
    local status, body, r = k:json("GET", "/apis", { headers = {
      Accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json" } })
    assert_eq(status, 200)
    assert_match(r.headers["content-type"], "as=APIGroupDiscoveryList")
    local groups = {}
    for _, g in ipairs(body.items) do groups[#groups + 1] = g.metadata.name end
    assert_eq(groups, { "apiextensions.k8s.io", "apps", "argoproj.io", "coordination.k8s.io",
      "gateway.networking.k8s.io", "networking.k8s.io" })
    assert_eq(k:get("/version").minor, "32")
    assert_eq(k:get("/api").versions, { "v1" })
  end)

  test("credentials: tokens and Basic pairs set through the control endpoint", function()
    local k <close> = start()
    local ns = "/api/v1/namespaces"
    assert_eq((k:json("GET", ns, { token = false, basic = { user = "alice", password = "pw" } })), 401)
    k:control("POST", "/auth", { tokens = { "rotated" }, basic = { "alice:pw" } })
    assert_eq((k:json("GET", ns, { token = false, basic = { user = "alice", password = "pw" } })), 200)
    assert_eq((k:json("GET", ns, { token = false, basic = { user = "alice", password = "no" } })), 401)
    assert_eq((k:json("GET", ns)), 401, "the old token")
    assert_eq((k:json("GET", ns, { token = "rotated" })), 200)
    local users = {}
    for _, r in ipairs(k:requests(function(r) return r.path == ns end)) do users[#users + 1] = r.user ~= json.null and r.user or "-" end
    assert_eq(users, { "-", "basic:alice", "-", "-", "token" })
  end)

  test("list: label selectors, field selectors, limit and continue", function()
    local k <close> = start()
    for i, tier in ipairs { "web", "web", "db", "cache", "none" } do
      local labels = tier ~= "none" and { tier = tier, n = tostring(i) } or { n = tostring(i) }
      assert_eq((k:json("POST", CMS, { json = { metadata = { name = "c" .. i, labels = labels } } })), 201)
    end
    local function names(q)
      local out = {}
      for _, o in ipairs(k:get(CMS .. "?" .. q).items) do out[#out + 1] = o.metadata.name end
      return table.concat(out, " ")
    end
    assert_eq(names "labelSelector=tier%3Dweb", "c1 c2")
    assert_eq(names "labelSelector=tier%21%3Dweb", "c3 c4 c5")
    assert_eq(names "labelSelector=tier%20in%20(db,cache)", "c3 c4")
    assert_eq(names "labelSelector=tier%20notin%20(db,cache)", "c1 c2 c5")
    assert_eq(names "labelSelector=tier", "c1 c2 c3 c4")
    assert_eq(names "labelSelector=%21tier", "c5")
    assert_eq(names "labelSelector=tier%3Dweb,n%3D2", "c2")
    assert_eq(names "fieldSelector=metadata.name%3Dc3", "c3")
    assert_eq(names "fieldSelector=metadata.name%21%3Dc3,metadata.namespace%3Ddefault", "c1 c2 c4 c5")
    local status, body = k:json("GET", CMS .. "?fieldSelector=spec.nope%3D1")
    assert_eq({ status, body.reason }, { 400, "BadRequest" })
    local seen, cont, pages = {}, nil, 0
    repeat
      local page = k:get(CMS .. "?limit=2" .. (cont and ("&continue=" .. cont) or ""))
      pages = pages + 1
      for _, o in ipairs(page.items) do seen[#seen + 1] = o.metadata.name end
      cont = page.metadata.continue
    until not cont
    assert_eq({ pages, table.concat(seen, " ") }, { 3, "c1 c2 c3 c4 c5" })
    -- pods by phase
    k:control("POST", "/images", { ["pull:*"] = { state = "ErrImagePull" } })
    for _, img in ipairs { "run:1", "pull:1" } do
      k:json("POST", "/api/v1/namespaces/default/pods", { json = {
        metadata = { name = img:gsub(":", "") }, spec = { containers = { { name = "c", image = img } } } } })
    end
    eventually("both pods seen by the kubelet", function()
      for _, p in ipairs(k:pods()) do
        if not p.status.containerStatuses then return false end
      end
      return true
    end)
    local running = k:get("/api/v1/namespaces/default/pods?fieldSelector=status.phase%3DRunning").items
    local pending = k:get("/api/v1/namespaces/default/pods?fieldSelector=status.phase%3DPending").items
    assert_eq({ #running, running[1].metadata.name, #pending, pending[1].metadata.name }, { 1, "run1", 1, "pull1" })
    assert_eq(pending[1].status.containerStatuses[1].state.waiting.reason, "ErrImagePull")
  end)

  test("create, update: AlreadyExists, resourceVersion conflicts, generation, status ignored", function()
    local k <close> = start()
    local manifest = { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = "a" }, spec = {
      replicas = 0, selector = { matchLabels = { app = "a" } },
      template = { metadata = { labels = { app = "a" } }, spec = { containers = { { name = "c", image = "i:1" } } } } } }
    local status, obj = k:json("POST", DEPLOYS, { json = manifest })
    assert_eq({ status, obj.metadata.generation, obj.spec.strategy.rollingUpdate.maxSurge }, { 201, 1, "25%" })
    status, obj = k:json("POST", DEPLOYS, { json = manifest })
    assert_eq({ status, obj.reason, obj.message }, { 409, "AlreadyExists", 'deployments.apps "a" already exists' })
    -- the controller's first status write, before the read (else the PUT
    -- below races it and gets a Conflict on a slow machine)
    k8s_fixture.eventually("observed", function()
      return (k:get(DEPLOYS .. "/a").status or {}).observedGeneration == 1
    end)
    local live = k:get(DEPLOYS .. "/a")
    local stale = live.metadata.resourceVersion
    live.metadata.labels = { x = "1" }
    live.status = { replicas = 42 }
    status, obj = k:json("PUT", DEPLOYS .. "/a", { json = live })
    assert_eq({ status, obj.metadata.generation, obj.metadata.labels }, { 200, 1, { x = "1" } })
    assert_ne(obj.status and obj.status.replicas, 42)
    assert_true(tonumber(obj.metadata.resourceVersion) > tonumber(stale))
    live.spec.replicas = 2
    status, obj = k:json("PUT", DEPLOYS .. "/a", { json = live })
    assert_eq({ status, obj.reason }, { 409, "Conflict" })
    assert_match(obj.message, "the object has been modified")
    live = k:get(DEPLOYS .. "/a")
    live.spec.replicas = 2
    status, obj = k:json("PUT", DEPLOYS .. "/a", { json = live })
    assert_eq({ status, obj.metadata.generation }, { 200, 2 })
    status, obj = k:json("PUT", DEPLOYS .. "/a/status", { json = { metadata = { name = "a" }, status = { replicas = 7 } } })
    assert_eq({ status, obj.status.replicas, obj.metadata.generation }, { 200, 7, 2 })
    status, obj = k:json("POST", DEPLOYS, { json = { metadata = { name = "b" }, spec = { selector = { matchLabels = { a = "1" } },
      template = { metadata = { labels = { a = "2" } }, spec = { containers = { { name = "c", image = "i" } } } } } } })
    assert_eq({ status, obj.reason, obj.details.causes[1].field }, { 422, "Invalid", "spec.template.metadata.labels" })
    status, obj = k:json("POST", "/api/v1/namespaces/nowhere/configmaps", { json = { metadata = { name = "x" } } })
    assert_eq({ status, obj.reason, obj.message }, { 404, "NotFound", 'namespaces "nowhere" not found' })
  end)

  test("defaults, generateName, stringData, deletecollection; protobuf bodies are 415", function()
    local k <close> = start()
    local _, svc = k:json("POST", "/api/v1/namespaces/default/services", { json = { metadata = { name = "s" },
      spec = { selector = { app = "s" }, ports = { { port = 80 } } } } })
    assert_match(svc.spec.clusterIP, "^10%.96%.%d+%.%d+$")
    assert_eq({ svc.spec.type, svc.spec.ports[1].protocol, svc.spec.ports[1].targetPort }, { "ClusterIP", "TCP", 80 })
    local _, sec = k:json("POST", "/api/v1/namespaces/default/secrets", { json = { metadata = { name = "x" },
      stringData = { pw = "hunter2" } } })
    assert_eq({ sec.type, sec.data, sec.stringData }, { "Opaque", { pw = "aHVudGVyMg==" }, nil })
    local _, ns = k:json("POST", "/api/v1/namespaces", { json = { metadata = { name = "n1" } } })
    assert_eq({ ns.status.phase, ns.metadata.labels["kubernetes.io/metadata.name"] }, { "Active", "n1" })
    local _, pod = k:json("POST", "/api/v1/namespaces/default/pods", { json = { metadata = { generateName = "p-" },
      spec = { containers = { { name = "c", image = "i" } } } } })
    assert_match(pod.metadata.name, "^p%-%w%w%w%w%w$")
    assert_eq({ pod.spec.restartPolicy, pod.spec.containers[1].imagePullPolicy, pod.status.phase },
      { "Always", "Always", "Pending" })
    for i = 1, 3 do
      k:json("POST", CMS, { json = { metadata = { name = "c" .. i, labels = { batch = i < 3 and "a" or "b" } } } })
    end
    local status, body = k:json("DELETE", CMS .. "?labelSelector=batch%3Da")
    assert_eq({ status, #body.items }, { 200, 2 })
    assert_eq(#k:get(CMS).items, 1)
    status, body = k:json("POST", CMS, { body = "k8s\0...", headers = {
      ["Content-Type"] = "application/vnd.kubernetes.protobuf" } })
    assert_eq({ status, body.reason }, { 415, "UnsupportedMediaType" })
  end)

  test("patch: json, merge and strategic (merge keys, $patch, $setElementOrder); 415 on custom resources", function()
    local k <close> = start()
    local manifest = { metadata = { name = "p", labels = { a = "1", b = "2" } }, spec = { replicas = 0,
      selector = { matchLabels = { app = "p" } }, template = { metadata = { labels = { app = "p" } }, spec = {
        containers = { { name = "one", image = "i:1", env = { { name = "X", value = "1" }, { name = "Y", value = "2" } } },
          { name = "two", image = "j:1" } },
        volumes = { { name = "v1", emptyDir = {} }, { name = "v2", emptyDir = {} } } } } } }
    assert_eq((k:json("POST", DEPLOYS, { json = manifest })), 201)
    local function patch(ctype, body)
      local status, obj = k:json("PATCH", DEPLOYS .. "/p", { body = json.encode(body), headers = { ["Content-Type"] = ctype } })
      assert_eq(status, 200, json.encode(obj))
      return obj
    end
    local o = patch("application/json-patch+json", { { op = "replace", path = "/metadata/labels/a", value = "9" },
      { op = "remove", path = "/metadata/labels/b" }, { op = "add", path = "/spec/template/spec/containers/-",
        value = { name = "three", image = "k:1" } } })
    assert_eq(o.metadata.labels, { a = "9" })
    assert_eq(#o.spec.template.spec.containers, 3)
    o = patch("application/merge-patch+json", { metadata = { labels = { a = json.null, c = "3" } } })
    assert_eq(o.metadata.labels, { c = "3" })
    local sm = "application/strategic-merge-patch+json"
    o = patch(sm, { spec = { template = { spec = {
      ["$setElementOrder/containers"] = { { name = "two" }, { name = "one" }, { name = "three" } },
      containers = { { name = "one", image = "i:2", env = { { name = "Y", ["$patch"] = "delete" }, { name = "Z", value = "3" } } } } } } } })
    local cs = o.spec.template.spec.containers
    assert_eq({ cs[1].name, cs[2].name, cs[3].name }, { "two", "one", "three" })
    assert_eq({ cs[2].image, cs[2].env }, { "i:2", { { name = "X", value = "1" }, { name = "Z", value = "3" } } })
    o = patch(sm, { spec = { template = { spec = { containers = { { name = "three", ["$patch"] = "delete" } },
      volumes = { { name = "v3", emptyDir = {} }, { ["$patch"] = "replace" } } } } } })
    assert_eq(#o.spec.template.spec.containers, 2)
    assert_eq(o.spec.template.spec.volumes, { { name = "v3", emptyDir = {} } })
    o = patch(sm, { spec = { strategy = { ["$retainKeys"] = { "type" }, type = "Recreate" } } })
    assert_eq(o.spec.strategy, { type = "Recreate" })
    local status, body = k:json("PATCH", DEPLOYS .. "/p", { body = '{"metadata":{"resourceVersion":"1"}}',
      headers = { ["Content-Type"] = "application/merge-patch+json" } })
    assert_eq({ status, body.reason }, { 409, "Conflict" })
    -- custom resources: merge yes, strategic no
    local ro = "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts"
    assert_eq((k:json("POST", ro, { json = { apiVersion = "argoproj.io/v1alpha1", kind = "Rollout",
      metadata = { name = "r" }, spec = { replicas = 1 } } })), 201)
    status, body = k:json("PATCH", ro .. "/r", { body = '{"spec":{"replicas":2}}', headers = { ["Content-Type"] = sm } })
    assert_eq({ status, body.reason }, { 415, "UnsupportedMediaType" })
    status, body = k:json("PATCH", ro .. "/r", { body = '{"spec":{"replicas":2}}',
      headers = { ["Content-Type"] = "application/merge-patch+json" } })
    assert_eq({ status, body.spec.replicas }, { 200, 2 })
    assert_eq(k:get(ro .. "/r/scale").spec.replicas, 2)
  end)

  test("server-side apply: fieldManager required, creates, conflicts name their fields, force, removal", function()
    local k <close> = start()
    local cm = CMS .. "/s"
    local function apply(body, q)
      return k:json("PATCH", cm .. (q or ""), { body = json.encode(body),
        headers = { ["Content-Type"] = "application/apply-patch+yaml" } })
    end
    local cfg = { apiVersion = "v1", kind = "ConfigMap", metadata = { name = "s" }, data = { a = "1", b = "2" } }
    local status, body = apply(cfg)
    assert_eq({ status, body.reason, body.details.causes[1].field }, { 422, "Invalid", "fieldManager" })
    status, body = apply(cfg, "?fieldManager=one")
    assert_eq({ status, body.data }, { 201, { a = "1", b = "2" } })
    assert_eq(body.metadata.managedFields[1].manager, "one")
    assert_eq(body.metadata.managedFields[1].fieldsV1, { ["f:data"] = { ["f:a"] = {}, ["f:b"] = {} } })
    status, body = apply({ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "s" }, data = { a = "2", c = "3" } },
      "?fieldManager=two")
    assert_eq({ status, body.reason, body.message }, { 409, "Conflict",
      'Apply failed with 1 conflict: conflict with "one" using v1: .data.a' })
    assert_eq(body.details.causes, { { reason = "FieldManagerConflict", message = 'conflict with "one" using v1',
      field = ".data.a" } })
    -- the same value is shared, not a conflict
    status, body = apply({ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "s" }, data = { a = "1", c = "3" } },
      "?fieldManager=two")
    assert_eq({ status, body.data }, { 200, { a = "1", b = "2", c = "3" } })
    status, body = apply({ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "s" }, data = { a = "5" } },
      "?fieldManager=two&force=true")
    assert_eq({ status, body.data }, { 200, { a = "5", b = "2" } }, "c, applied by two only and dropped, is removed")
    -- one no longer owns a: dropping it from one's configuration keeps it
    status, body = apply({ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "s" }, data = { b = "2" } },
      "?fieldManager=one")
    assert_eq(body.data, { a = "5", b = "2" })
    status, body = apply({ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "s" }, data = { b = "2" } },
      "?fieldManager=one&force=false&dryRun=All")
    assert_eq(status, 200)
    status, body = k:json("PATCH", cm .. "?force=true", { body = "{}", headers = {
      ["Content-Type"] = "application/merge-patch+json" } })
    assert_eq({ status, body.reason }, { 422, "Invalid" })
    -- list elements: one applied no more goes, unless another manager owns part of it
    local function dep(containers)
      return { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = "x" }, spec = { replicas = 0,
        selector = { matchLabels = { app = "x" } }, template = { metadata = { labels = { app = "x" } },
          spec = { containers = containers } } } }
    end
    local function apply_dep(body, manager)
      return k:json("PATCH", DEPLOYS .. "/x?fieldManager=" .. manager, { body = json.encode(body),
        headers = { ["Content-Type"] = "application/apply-patch+yaml" } })
    end
    assert_eq((apply_dep(dep { { name = "a", image = "a:1" }, { name = "b", image = "b:1" },
      { name = "c", image = "c:1" } }, "one")), 201)
    assert_eq((apply_dep(dep { { name = "b", image = "b:1", args = { "x" } } }, "other")), 200)
    local _, d = apply_dep(dep { { name = "a", image = "a:1" } }, "one")
    local left = {}
    for _, c in ipairs(d.spec.template.spec.containers) do left[#left + 1] = c.name .. "=" .. c.image end
    assert_eq(left, { "a=a:1", "b=b:1" })
    -- managed fields a client rewrites are taken as sent
    status, body = k:json("PATCH", cm, { headers = { ["Content-Type"] = "application/json-patch+json" },
      json = { { op = "replace", path = "/metadata/managedFields", value = { { manager = "x", operation = "Apply",
        apiVersion = "v1", fieldsType = "FieldsV1", fieldsV1 = { ["f:data"] = { ["f:b"] = {} } } } } } } })
    assert_eq({ status, #body.metadata.managedFields, body.metadata.managedFields[1].manager }, { 200, 1, "x" })
    status, body = apply({ apiVersion = "v1", kind = "ConfigMap", metadata = { name = "s" }, data = { b = "9" } },
      "?fieldManager=one")
    assert_eq({ status, body.message }, { 409, 'Apply failed with 1 conflict: conflict with "x" using v1: .data.b' })
  end)

  test("dryRun=All on every write changes nothing", function()
    local k <close> = start()
    assert_eq((k:json("POST", CMS, { json = { metadata = { name = "d" }, data = { a = "1" } } })), 201)
    local before = k:control("GET", "/stats")
    local live = k:get(CMS .. "/d")
    local q = "?dryRun=All"
    local status, body = k:json("POST", CMS .. q, { json = { metadata = { name = "new" } } })
    assert_eq({ status, body.metadata.name }, { 201, "new" })
    live.data.a = "2"
    status, body = k:json("PUT", CMS .. "/d" .. q, { json = live })
    assert_eq({ status, body.data.a }, { 200, "2" })
    status, body = k:json("PATCH", CMS .. "/d" .. q, { body = '{"data":{"a":"3"}}',
      headers = { ["Content-Type"] = "application/merge-patch+json" } })
    assert_eq({ status, body.data.a }, { 200, "3" })
    status = k:json("PATCH", CMS .. "/e" .. q .. "&fieldManager=m", { body = '{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"e"}}',
      headers = { ["Content-Type"] = "application/apply-patch+yaml" } })
    assert_eq(status, 201)
    assert_eq((k:json("DELETE", CMS .. "/d" .. q)), 200)
    status = k:json("DELETE", CMS .. q)
    assert_eq(status, 200)
    local after = k:control("GET", "/stats")
    assert_eq({ after.writes, after.resourceVersion }, { before.writes, before.resourceVersion })
    assert_eq(k:get(CMS .. "/d").data, { a = "1" })
    assert_eq((k:json("GET", CMS .. "/new")), 404)
    assert_eq((k:json("GET", CMS .. "/e")), 404)
    assert_eq(after.requests.create, (before.requests.create or 0) + 1)
  end)
end)

-- watch(k, path, query) -> the events of a watch that ends by itself
-- (timeoutSeconds in query), or once until(events) holds
local function watch(k, path, query, until_)
  local events = {}
  local r = k:api("GET", path .. "?watch=1&" .. query, { timeout = 30, stream = function(line)
    events[#events + 1] = json.decode(line)
    if until_ and until_(events) then return false end
  end })
  return events, r
end

local function types(events)
  local out = {}
  for _, e in ipairs(events) do
    out[#out + 1] = e.type .. (e.object.metadata and e.object.metadata.name and (" " .. e.object.metadata.name) or "")
  end
  return table.concat(out, ", ")
end

local function cm(k, name, labels)
  local status, body = k:json("POST", CMS, { json = { metadata = { name = name, labels = labels } } })
  assert_eq(status, 201, json.encode(body))
  return body
end

describe("watches", function()
  test("from a resourceVersion: the changes since, selectors moving objects in and out, timeoutSeconds", function()
    local k <close> = start()
    local a = cm(k, "a", { w = "1" })
    cm(k, "b", { w = "1" })
    assert_eq((k:json("PATCH", CMS .. "/a", { body = '{"metadata":{"labels":{"w":"2"}}}',
      headers = { ["Content-Type"] = "application/merge-patch+json" } })), 200)
    assert_eq((k:json("DELETE", CMS .. "/b")), 200)
    cm(k, "c", { w = "2" })
    local events, r = watch(k, CMS, "resourceVersion=" .. a.metadata.resourceVersion .. "&timeoutSeconds=1")
    assert_eq(r.status, 200)
    assert_eq(types(events), "ADDED b, MODIFIED a, DELETED b, ADDED c")
    events = watch(k, CMS, "resourceVersion=" .. a.metadata.resourceVersion .. "&timeoutSeconds=1&labelSelector=w%3D1")
    assert_eq(types(events), "ADDED b, DELETED a, DELETED b")
    for i = 2, #events do
      assert_true(tonumber(events[i].object.metadata.resourceVersion) > tonumber(events[i - 1].object.metadata.resourceVersion))
    end
  end)

  test("without a resourceVersion: the objects first, then changes as they happen; bookmarks", function()
    local k <close> = start()
    cm(k, "a")
    k:control("POST", "/bookmarks", { interval = 0.2 })
    local task = require "relish.task"
    local marked = false
    local maker = task.spawn(function() -- once the watch had a bookmark
      eventually("a bookmark", function() return marked end)
      cm(k, "late")
    end)
    local events = watch(k, CMS, "allowWatchBookmarks=true&timeoutSeconds=20", function(evs)
      marked = marked or evs[#evs].type == "BOOKMARK"
      return evs[#evs].type == "ADDED" and evs[#evs].object.metadata.name == "late"
    end)
    maker:wait()
    assert_eq(events[1].type .. " " .. events[1].object.metadata.name, "ADDED a")
    assert_eq(events[#events].type .. " " .. events[#events].object.metadata.name, "ADDED late")
    local marks = 0
    for _, e in ipairs(events) do
      if e.type == "BOOKMARK" then
        marks = marks + 1
        assert_eq(e.object.kind, "ConfigMap")
        assert_match(e.object.metadata.resourceVersion, "^%d+$")
      end
    end
    assert_true(marks >= 1, types(events))
    local started = require("relish._host").now()
    events = watch(k, CMS, "resourceVersion=" .. events[#events].object.metadata.resourceVersion .. "&timeoutSeconds=1")
    assert_eq(#events, 0)
    local took = require("relish._host").now() - started
    assert_true(took >= 0.9 and took < 5, "timeoutSeconds=1 took " .. took)
  end)

  test("410 Expired: a watch from before a compaction, an old continue token", function()
    local k <close> = start()
    local a = cm(k, "a")
    cm(k, "b")
    local page = k:get(CMS .. "?limit=1")
    cm(k, "c")
    k:control("POST", "/compact")
    local events = watch(k, CMS, "resourceVersion=" .. a.metadata.resourceVersion .. "&timeoutSeconds=5")
    assert_eq(#events, 1)
    assert_eq({ events[1].type, events[1].object.kind, events[1].object.code, events[1].object.reason },
      { "ERROR", "Status", 410, "Expired" })
    local status, body = k:json("GET", CMS .. "?limit=1&continue=" .. page.metadata.continue)
    assert_eq({ status, body.reason }, { 410, "Expired" })
    -- from the current resourceVersion all is well
    events = watch(k, CMS, "resourceVersion=" .. k:get(CMS).metadata.resourceVersion .. "&timeoutSeconds=0.5")
    assert_eq(#events, 0)
  end)
end)

describe("faults", function()
  test("429 with Retry-After, N failures, then success; only the matching requests", function()
    local k <close> = start()
    k:control("POST", "/faults", { status = 429, retry_after = 2, count = 2, verb = "get" })
    local r = k:api("GET", CMS)
    assert_eq(r.status, 200, "a list is not a get")
    for _ = 1, 2 do
      local status, body, resp = k:json("GET", "/api/v1/namespaces/default")
      assert_eq({ status, body.reason, body.details.retryAfterSeconds, resp.headers["retry-after"] },
        { 429, "TooManyRequests", 2, "2" })
    end
    assert_eq((k:json("GET", "/api/v1/namespaces/default")), 200)
    k:control("POST", "/faults", { { status = 503, path = "/configmaps", method = "POST" }, { latency = 0.3 } })
    local status, body = k:json("POST", CMS, { json = { metadata = { name = "x" } } })
    assert_eq({ status, body.reason }, { 503, "ServiceUnavailable" })
    r = k:api("GET", CMS)
    assert_true(r.elapsed >= 0.3, "latency: " .. r.elapsed)
    assert_eq(k:control("GET", "/faults"), {})
    local stats = k:control("GET", "/stats")
    assert_eq({ stats.requests.get, stats.requests.list, stats.requests.create, stats.writes }, { 3, 2, 1, 0 })
  end)

  test("a watch closed early, cleanly or not; 410 on the next watch", function()
    local k <close> = start()
    local host = require "relish._host"
    k:control("POST", "/faults", { watch_close_after = 0.3 })
    local t0 = host.now()
    local events, r = watch(k, CMS, "timeoutSeconds=30")
    assert_eq({ r.status, #events }, { 200, 0 })
    assert_true(host.now() - t0 < 5)
    k:control("POST", "/faults", { watch_close_after = 0.3, abrupt = true })
    local okw, err = pcall(watch, k, CMS, "timeoutSeconds=30")
    assert_false(okw)
    assert_ne(err.kind, "timeout")
    k:control("POST", "/faults", { watch_expired = true })
    events = watch(k, CMS, "resourceVersion=" .. k:get(CMS).metadata.resourceVersion .. "&timeoutSeconds=5")
    assert_eq({ #events, events[1].type, events[1].object.code }, { 1, "ERROR", 410 })
    assert_eq(#k:control("GET", "/faults"), 0, "a watch fault is spent by watches only")
  end)
end)

-- A Deployment object (a Lua table) named name.
local function deploy_json(name, image, spec)
  local d = { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = name }, spec = {
    replicas = 3, selector = { matchLabels = { app = name } },
    template = { metadata = { labels = { app = name } }, spec = { containers = { { name = "app", image = image } } } } } }
  for key, v in pairs(spec or {}) do d.spec[key] = v end
  return d
end

local RSS = "/apis/apps/v1/namespaces/default/replicasets"

local function set_image(k, name, image)
  local status, body = k:json("PATCH", DEPLOYS .. "/" .. name, { headers = {
    ["Content-Type"] = "application/strategic-merge-patch+json" },
    body = json.encode { spec = { template = { spec = { containers = { { name = "app", image = image } } } } } } })
  assert_eq(status, 200, json.encode(body))
end

local function complete(k, name)
  return eventually(name .. " rolled out", function()
    local d = k:get(DEPLOYS .. "/" .. name)
    local s = d.status or {}
    return s.observedGeneration == d.metadata.generation and (s.updatedReplicas or 0) == d.spec.replicas
      and (s.replicas or 0) == d.spec.replicas and (s.availableReplicas or 0) == d.spec.replicas and d
  end, 20)
end

local function by_image(k)
  local out = {}
  for _, rs in ipairs(k:get(RSS).items) do out[rs.spec.template.spec.containers[1].image] = rs end
  return out
end

describe("the Deployment controller", function()
  test("rolling update: within maxSurge and maxUnavailable at every step", function()
    local k <close> = start { time_scale = 0.05 }
    k:control("POST", "/images", { ["app:*"] = { ready_after = 2 } })
    assert_eq((k:json("POST", DEPLOYS, { json = deploy_json("r", "app:1", { replicas = 4,
      strategy = { type = "RollingUpdate", rollingUpdate = { maxSurge = 1, maxUnavailable = 0 } } }) })), 201)
    complete(k, "r")
    local rs, list = {}, k:get(RSS)
    for _, x in ipairs(list.items) do rs[x.metadata.name] = x end
    local task = require "relish.task"
    local roller = task.spawn(function() set_image(k, "r", "app:2") end)
    local worst = { spec = 0, available = 99 }
    watch(k, RSS, "resourceVersion=" .. list.metadata.resourceVersion .. "&timeoutSeconds=30", function(events)
      local o = events[#events].object
      rs[o.metadata.name] = o
      local spec, avail, new = 0, 0, nil
      for _, x in pairs(rs) do
        spec = spec + x.spec.replicas
        avail = avail + ((x.status or {}).availableReplicas or 0)
        if x.spec.template.spec.containers[1].image == "app:2" then new = x end
      end
      worst.spec = math.max(worst.spec, spec)
      worst.available = math.min(worst.available, avail)
      return new and (new.status or {}).availableReplicas == 4 and spec == 4
    end)
    roller:wait()
    assert_eq(worst.spec, 5, "4 replicas + maxSurge 1")
    assert_true(worst.available >= 4, "maxUnavailable 0: " .. worst.available)
    local d = complete(k, "r")
    assert_eq(d.metadata.annotations["deployment.kubernetes.io/revision"], "2")
  end)

  test("percentages: maxSurge 25% of 10 is 3, maxUnavailable 2; a stuck rollout holds 8 old and 5 new", function()
    local k <close> = start()
    k:control("POST", "/images", { ["app:stuck"] = { state = "NotReady" } })
    assert_eq((k:json("POST", DEPLOYS, { json = deploy_json("p", "app:1", { replicas = 10 }) })), 201)
    complete(k, "p")
    set_image(k, "p", "app:stuck")
    -- 3 new (13 at most), then 8 old (8 available at least), then 5 new (13 again)
    local rss = eventually("5 new and 8 old", function()
      local m = by_image(k)
      return m["app:stuck"] and m["app:stuck"].spec.replicas == 5 and m["app:1"].spec.replicas == 8 and m
    end)
    assert_eq(rss["app:stuck"].metadata.annotations["deployment.kubernetes.io/max-replicas"], "13")
    assert_eq(rss["app:stuck"].metadata.annotations["deployment.kubernetes.io/desired-replicas"], "10")
    local d = eventually("status", function()
      local x = k:get(DEPLOYS .. "/p")
      return x.status.replicas == 13 and (x.status.readyReplicas or 0) == 8 and x
    end)
    assert_eq({ d.status.updatedReplicas, d.status.availableReplicas, d.status.unavailableReplicas }, { 5, 8, 5 })
    local avail
    for _, c in ipairs(d.status.conditions) do if c.type == "Available" then avail = c end end
    assert_eq({ avail.status, avail.reason }, { "True", "MinimumReplicasAvailable" })
  end)

  test("Recreate: the old pods are gone before the new ReplicaSet appears", function()
    local k <close> = start()
    assert_eq((k:json("POST", DEPLOYS, { json = deploy_json("c", "app:1", { strategy = { type = "Recreate" } }) })), 201)
    local d = complete(k, "c")
    local task = require "relish.task"
    local roller = task.spawn(function() set_image(k, "c", "app:2") end)
    local old_pods, new_rs_seen_with = 3, nil
    watch(k, "/api/v1/namespaces/default/pods", "resourceVersion=" .. d.metadata.resourceVersion .. "&timeoutSeconds=30",
      function(events)
        local e = events[#events]
        local image = e.object.spec.containers[1].image
        if e.type == "DELETED" and image == "app:1" then old_pods = old_pods - 1 end
        if e.type == "ADDED" and image == "app:2" then
          new_rs_seen_with = new_rs_seen_with or old_pods
          return true
        end
      end)
    roller:wait()
    assert_eq(new_rs_seen_with, 0)
    complete(k, "c")
  end)

  test("revisionHistoryLimit prunes the oldest idle ReplicaSets; paused holds the rollout", function()
    local k <close> = start()
    assert_eq((k:json("POST", DEPLOYS, { json = deploy_json("h", "app:1", { replicas = 1, revisionHistoryLimit = 1 }) })), 201)
    complete(k, "h")
    for i = 2, 4 do
      set_image(k, "h", "app:" .. i)
      complete(k, "h")
    end
    local revs = eventually("pruned", function()
      local items = k:get(RSS).items
      if #items ~= 2 then return nil end
      local out = {}
      for _, rs in ipairs(items) do out[rs.spec.template.spec.containers[1].image] = rs.metadata.annotations["deployment.kubernetes.io/revision"] end
      return out
    end)
    assert_eq(revs, { ["app:3"] = "3", ["app:4"] = "4" })
    assert_eq((k:json("PATCH", DEPLOYS .. "/h", { body = '{"spec":{"paused":true}}',
      headers = { ["Content-Type"] = "application/merge-patch+json" } })), 200)
    set_image(k, "h", "app:5")
    local d = eventually("paused", function()
      local x = k:get(DEPLOYS .. "/h")
      -- the pause and the new image both seen by the controller
      for _, c in ipairs(x.status.conditions) do
        if c.type == "Progressing" and c.reason == "DeploymentPaused"
          and x.status.observedGeneration == x.metadata.generation then
          return x
        end
      end
    end)
    assert_eq(d.status.observedGeneration, d.metadata.generation)
    assert_nil(by_image(k)["app:5"])
    assert_eq((k:json("PATCH", DEPLOYS .. "/h", { body = '{"spec":{"paused":false}}',
      headers = { ["Content-Type"] = "application/merge-patch+json" } })), 200)
    complete(k, "h")
    assert_eq(by_image(k)["app:5"].metadata.annotations["deployment.kubernetes.io/revision"], "5")
  end)

  test("a ReplicaSet name taken by an orphan: the next hash (collisionCount)", function()
    local k <close> = start()
    assert_eq((k:json("POST", DEPLOYS, { json = deploy_json("o", "app:1", { replicas = 1 }) })), 201)
    complete(k, "o")
    local first = k:get(RSS).items[1].metadata.name
    assert_eq((k:json("DELETE", DEPLOYS .. "/o?propagationPolicy=Orphan")), 200)
    eventually("o gone", function() return k:json("GET", DEPLOYS .. "/o") == 404 end)
    assert_eq((k:json("POST", DEPLOYS, { json = deploy_json("o", "app:1", { replicas = 1 }) })), 201)
    local d = complete(k, "o")
    assert_eq(d.status.collisionCount, 1)
    local names = {}
    for _, rs in ipairs(k:get(RSS).items) do names[#names + 1] = rs.metadata.name end
    assert_eq(#names, 2)
    assert_true(names[1] == first or names[2] == first, "the orphan stays")
    assert_ne(names[1], names[2])
  end)

  test("minReadySeconds: ready pods count as available once ready that long (simulated time)", function()
    local k <close> = start()
    assert_eq((k:json("POST", DEPLOYS, { json = deploy_json("m", "app:1", { replicas = 2, minReadySeconds = 30 }) })), 201)
    local d = eventually("ready", function()
      local x = k:get(DEPLOYS .. "/m")
      return (x.status or {}).readyReplicas == 2 and x
    end)
    assert_nil(d.status.availableReplicas)
    assert_eq(d.status.unavailableReplicas, 2)
    k:control("POST", "/time", { advance = 31 })
    complete(k, "m")
  end)

  test("pods in bad states: waiting reasons, phases and restart counts as the kubelet reports them", function()
    local k <close> = start { time_scale = 0.01 }
    local states = { "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError" }
    local rules = {}
    for _, s in ipairs(states) do rules["bad:" .. s] = { state = s } end
    k:control("POST", "/images", rules)
    for _, s in ipairs(states) do
      assert_eq((k:json("POST", "/api/v1/namespaces/default/pods", { json = { metadata = { name = s:lower() },
        spec = { containers = { { name = "c", image = "bad:" .. s } } } } })), 201)
    end
    eventually("restarts", function()
      return (k:get("/api/v1/namespaces/default/pods/crashloopbackoff").status.containerStatuses[1].restartCount or 0) >= 2
    end)
    for _, s in ipairs(states) do
      local p = k:get("/api/v1/namespaces/default/pods/" .. s:lower())
      local cs = p.status.containerStatuses[1]
      assert_eq({ p.status.phase, cs.state.waiting.reason, cs.ready },
        { s == "CrashLoopBackOff" and "Running" or "Pending", s, false }, s)
      if s ~= "CrashLoopBackOff" then assert_eq(cs.restartCount, 0, s) end
      local ready
      for _, c in ipairs(p.status.conditions) do if c.type == "Ready" then ready = c end end
      assert_eq({ ready.status, ready.reason }, { "False", "ContainersNotReady" })
    end
  end)
end)

describe("StatefulSets and DaemonSets", function()
  test("pods made in order once the ones before are ready, replaced from the highest ordinal", function()
    local k <close> = start { time_scale = 0.05 }
    k:control("POST", "/images", { ["db:*"] = { ready_after = 2 } })
    local path = "/apis/apps/v1/namespaces/default/statefulsets"
    local list = k:get("/api/v1/namespaces/default/pods")
    local task = require "relish.task"
    local maker = task.spawn(function()
      assert_eq((k:json("POST", path, { json = { metadata = { name = "db" }, spec = { replicas = 3, serviceName = "db",
        selector = { matchLabels = { app = "db" } }, template = { metadata = { labels = { app = "db" } },
          spec = { containers = { { name = "db", image = "db:1" } } } } } } })), 201)
    end)
    local seen, ready = {}, {}
    watch(k, "/api/v1/namespaces/default/pods", "resourceVersion=" .. list.metadata.resourceVersion ..
      "&timeoutSeconds=30", function(events)
        local e = events[#events]
        local name = e.object.metadata.name
        if e.type == "ADDED" then
          local i = tonumber(name:match("%d+$"))
          seen[#seen + 1] = (i == 0 or ready["db-" .. (i - 1)]) and name or (name .. " before db-" .. (i - 1) .. " was ready")
        end
        for _, c in ipairs(e.object.status.conditions or {}) do
          if c.type == "Ready" and c.status == "True" then ready[name] = true end
        end
        return ready["db-2"]
      end)
    maker:wait()
    assert_eq(seen, { "db-0", "db-1", "db-2" })
    local before = k:get("/api/v1/namespaces/default/pods")
    maker = task.spawn(function()
      assert_eq((k:json("PATCH", path .. "/db", { headers = { ["Content-Type"] = "application/strategic-merge-patch+json" },
        json = { spec = { template = { spec = { containers = { { name = "db", image = "db:2" } } } } } } })), 200)
    end)
    local deleted = {}
    watch(k, "/api/v1/namespaces/default/pods", "resourceVersion=" .. before.metadata.resourceVersion ..
      "&timeoutSeconds=30", function(events)
        local e = events[#events]
        if e.type == "DELETED" then deleted[#deleted + 1] = e.object.metadata.name end
        return e.object.metadata.name == "db-0" and e.object.spec.containers[1].image == "db:2"
          and (e.object.status.containerStatuses or {})[1] and e.object.status.containerStatuses[1].ready
      end)
    maker:wait()
    assert_eq(deleted, { "db-2", "db-1", "db-0" })
    local sts = eventually("updated", function()
      local x = k:get(path .. "/db")
      return x.status.currentRevision == x.status.updateRevision and x.status.readyReplicas == 3 and x
    end)
    assert_eq({ sts.status.updatedReplicas, sts.status.currentReplicas }, { 3, 3 })
    local revs = k:get("/apis/apps/v1/namespaces/default/controllerrevisions").items
    assert_eq(#revs, 2)
  end)
end)

describe("deletion and garbage collection", function()
  local function owned_cm(k, name, owner, finalizers)
    local status, body = k:json("POST", CMS, { json = { metadata = { name = name, finalizers = finalizers,
      ownerReferences = { { apiVersion = "apps/v1", kind = "Deployment", name = owner.metadata.name,
        uid = owner.metadata.uid, blockOwnerDeletion = true } } } } })
    assert_eq(status, 201, json.encode(body))
  end

  test("foreground: the owner stays, marked, until its dependents are gone", function()
    local k <close> = start()
    local status, d = k:json("POST", DEPLOYS, { json = deploy_json("f", "app:1", { replicas = 1 }) })
    assert_eq(status, 201)
    owned_cm(k, "held", d, { "test/hold" })
    local body
    status, body = k:json("DELETE", DEPLOYS .. "/f", { json = { kind = "DeleteOptions", apiVersion = "v1",
      propagationPolicy = "Foreground" } })
    assert_eq(status, 200)
    assert_true(body.metadata.deletionTimestamp ~= nil)
    assert_eq(body.metadata.finalizers, { "foregroundDeletion" })
    eventually("pods and ReplicaSets gone", function() return #k:pods() == 0 and #k:get(RSS).items == 0 end)
    local held = eventually("the dependent marked", function()
      local c = k:get(CMS .. "/held")
      return c.metadata.deletionTimestamp and c
    end)
    assert_eq(held.metadata.finalizers, { "test/hold" })
    assert_eq((k:json("GET", DEPLOYS .. "/f")), 200, "held by its dependent")
    assert_eq((k:json("PATCH", CMS .. "/held", { body = '{"metadata":{"finalizers":null}}',
      headers = { ["Content-Type"] = "application/merge-patch+json" } })), 200)
    eventually("the owner gone", function() return k:json("GET", DEPLOYS .. "/f") == 404 end)
    assert_eq((k:json("GET", CMS .. "/held")), 404)
  end)

  test("background takes the dependents; orphan leaves them without the owner reference", function()
    local k <close> = start()
    local _, a = k:json("POST", DEPLOYS, { json = deploy_json("a", "app:1", { replicas = 0 }) })
    local _, b = k:json("POST", DEPLOYS, { json = deploy_json("b", "app:1", { replicas = 0 }) })
    owned_cm(k, "of-a", a)
    owned_cm(k, "of-b", b)
    assert_eq((k:json("DELETE", DEPLOYS .. "/a?propagationPolicy=Background")), 200)
    assert_eq((k:json("DELETE", DEPLOYS .. "/b?propagationPolicy=Orphan")), 200)
    eventually("of-a collected", function() return k:json("GET", CMS .. "/of-a") == 404 end)
    local kept = eventually("of-b orphaned", function()
      local c = k:get(CMS .. "/of-b")
      return not c.metadata.ownerReferences and c
    end)
    assert_nil(kept.metadata.deletionTimestamp)
    eventually("b gone", function() return k:json("GET", DEPLOYS .. "/b") == 404 end)
  end)

  test("a namespace goes Terminating, takes its objects, then goes", function()
    local k <close> = start()
    assert_eq((k:json("POST", "/api/v1/namespaces", { json = { metadata = { name = "tmp" } } })), 201)
    assert_eq((k:json("POST", "/api/v1/namespaces/tmp/configmaps", { json = { metadata = { name = "x" } } })), 201)
    local status, ns = k:json("DELETE", "/api/v1/namespaces/tmp")
    assert_eq({ status, ns.status.phase }, { 200, "Terminating" })
    eventually("tmp gone", function() return k:json("GET", "/api/v1/namespaces/tmp") == 404 end)
    assert_eq((k:json("GET", "/api/v1/namespaces/tmp/configmaps/x")), 404)
  end)
end)

describe("other kinds", function()
  test("custom resources are served while their CRD exists", function()
    local k <close> = start()
    local crd = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    assert_eq((k:json("POST", crd, { json = { apiVersion = "apiextensions.k8s.io/v1", kind = "CustomResourceDefinition",
      metadata = { name = "widgets.example.com" }, spec = { group = "example.com", scope = "Cluster",
        names = { plural = "widgets", singular = "widget", kind = "Widget" },
        versions = { { name = "v1", served = true, storage = true, schema = { openAPIV3Schema = { type = "object" } } } } } } })), 201)
    assert_eq((k:json("POST", "/apis/example.com/v1/widgets", { json = { apiVersion = "example.com/v1", kind = "Widget",
      metadata = { name = "w" }, spec = { size = 1 } } })), 201)
    local w = k:get("/apis/example.com/v1/widgets/w")
    assert_eq({ w.kind, w.metadata.generation, w.spec.size }, { "Widget", 1, 1 })
    local function table_of(path)
      local _, t = k:json("GET", path, { headers = { Accept = "application/json;as=Table;v=v1;g=meta.k8s.io" } })
      local names = {}
      for _, c in ipairs(t.columnDefinitions) do names[#names + 1] = c.name end
      return table.concat(names, " "), t.rows[1].cells
    end
    local columns, cells = table_of("/apis/example.com/v1/widgets")
    assert_eq({ columns, cells[1] }, { "Name Age", "w" })
    assert_eq((k:json("DELETE", crd .. "/widgets.example.com")), 200)
    assert_eq((k:json("GET", "/apis/example.com/v1/widgets/w")), 404)
    assert_eq((k:json("GET", "/apis/example.com/v1")), 404)
    local ro = "/apis/argoproj.io/v1alpha1/namespaces/default/rollouts"
    assert_eq((k:json("POST", ro, { json = { apiVersion = "argoproj.io/v1alpha1", kind = "Rollout",
      metadata = { name = "r" }, spec = { replicas = 2 } } })), 201)
    columns, cells = table_of(ro)
    assert_eq({ columns, cells[1], cells[2] }, { "Name Desired Current Age", "r", 2 })
  end)

  test("leases: create, take over with the resourceVersion, 409 when someone else won", function()
    local k <close> = start()
    local path = "/apis/coordination.k8s.io/v1/namespaces/default/leases"
    local status, lease = k:json("POST", path, { json = { metadata = { name = "lock" }, spec = { holderIdentity = "a" } } })
    assert_eq(status, 201)
    local mine = json.decode(json.encode(lease))
    lease.spec.holderIdentity = "b"
    assert_eq((k:json("PUT", path .. "/lock", { json = lease })), 200)
    mine.spec.holderIdentity = "c"
    local body
    status, body = k:json("PUT", path .. "/lock", { json = mine })
    assert_eq({ status, body.reason }, { 409, "Conflict" })
    assert_eq(k:get(path .. "/lock").spec.holderIdentity, "b")
  end)

  test("the service proxy: a ready pod behind the Service answers, with its image's http_status", function()
    local k <close> = start()
    k:control("POST", "/images", { ["app:bad"] = { http_status = 500 } })
    assert_eq((k:json("POST", DEPLOYS, { json = deploy_json("web", "app:1", { replicas = 2 }) })), 201)
    assert_eq((k:json("POST", "/api/v1/namespaces/default/services", { json = { metadata = { name = "web" },
      spec = { selector = { app = "web" }, ports = { { port = 80 } } } } })), 201)
    complete(k, "web")
    local proxy = "/api/v1/namespaces/default/services/web:80/proxy/healthz"
    local status, body = k:json("GET", proxy)
    assert_eq({ status, body.service, body.image, body.path, body.method }, { 200, "web", "app:1", "/healthz", "GET" })
    assert_match(body.pod, "^web%-")
    set_image(k, "web", "app:bad")
    complete(k, "web")
    status, body = k:json("GET", proxy)
    assert_eq({ status, body.image }, { 500, "app:bad" })
    assert_eq((k:json("PATCH", DEPLOYS .. "/web/scale", { body = '{"spec":{"replicas":0}}',
      headers = { ["Content-Type"] = "application/merge-patch+json" } })), 200)
    eventually("no pods", function() return #k:pods() == 0 end)
    status, body = k:json("GET", proxy)
    assert_eq({ status, body.reason, body.message }, { 503, "ServiceUnavailable", 'no endpoints available for service "web"' })
    local err = assert_error(function() k:control("POST", "/images", { x = { state = "Sleepy" } }) end)
    assert_match(err, "400")
    -- every change, the controllers' too, with its real time
    local events = k:control("GET", "/events?kind=Deployment&name=web")
    local done
    for _, e in ipairs(events) do
      for _, c in ipairs((e.object.status or {}).conditions or {}) do
        if c.reason == "NewReplicaSetAvailable" and not done then done = e end
      end
    end
    assert_true(done ~= nil and done.type == "MODIFIED" and done.time > 0)
  end)

  test("pod logs: tailLines, and lines added through the control endpoint", function()
    local k <close> = start()
    assert_eq((k:json("POST", "/api/v1/namespaces/default/pods", { json = { metadata = { name = "p" },
      spec = { containers = { { name = "c", image = "img:1" } } } } })), 201)
    local r = k:api("GET", "/api/v1/namespaces/default/pods/p/log")
    assert_eq({ r.status, r.body }, { 200, "starting c (img:1)\n" })
    k:control("POST", "/logs", { pod = "p", container = "c", lines = { "one", "two" } })
    assert_eq(k:api("GET", "/api/v1/namespaces/default/pods/p/log", { query = { tailLines = 2 } }).body, "one\ntwo\n")
    assert_eq(k:api("GET", "/api/v1/namespaces/default/pods/p/log", { query = { container = "nope" } }).status, 400)
  end)
end)
