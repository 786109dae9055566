-- The machine's kubectl against the Kubernetes API double
-- (tests/fixtures/k8s_api.py): what kubectl accepts, the double answers
-- rightly. Each double has its own HOME and KUBECACHEDIR.
local json = require "relish.json"
local k8s_fixture = require "k8s_fixture"

local eventually = k8s_fixture.eventually

local function start(opts)
  if not k8s_fixture.available(true) then skip("kubectl, openssl or python3 is not installed") end
  return k8s_fixture.start(opts)
end

-- A Deployment manifest (YAML) named name with image.
local function deployment(name, image)
  return string.format([[
apiVersion: apps/v1
kind: Deployment
metadata:
  name: %s
  labels: {app: %s}
spec:
  replicas: 3
  selector: {matchLabels: {app: %s}}
  template:
    metadata: {labels: {app: %s}}
    spec:
      containers:
      - name: app
        image: %s
        ports: [{containerPort: 80}]
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
]], name, name, name, name, image)
end

local SERVICE = [[
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80}]
]]

-- kubectl that must succeed: returns its stdout
local function ok(k, args, opts)
  local r = k:kubectl(args, opts)
  if r.code ~= 0 then error("kubectl " .. table.concat(args, " ") .. ": " .. r.stderr .. r.stdout, 2) end
  return r.stdout
end

local DEPLOYS = "/apis/apps/v1/namespaces/default/deployments"

describe("kubectl against the double", function()
  test("get prints the server's tables (--watch too), and -o json the objects, with a token", function()
    local k <close> = start()
    ok(k, { "apply", "-f", "-" }, { input = deployment("web", "nginx:1.25") })
    eventually("three ready pods", function()
      return ok(k, { "get", "deployments" }):match("\nweb%s+3/3%s+3%s+3%s")
    end)
    local out = ok(k, { "get", "deployments" })
    assert_match(out, "^NAME%s+READY%s+UP%-TO%-DATE%s+AVAILABLE%s+AGE\n")
    k:control("POST", "/faults", { watch_close_after = 0.5 }) -- or --watch would go on
    assert_match(ok(k, { "get", "deployments", "--watch" }), "^NAME%s+READY%s+UP%-TO%-DATE%s+AVAILABLE%s+AGE\nweb%s+3/3%s")
    local discovery = k:requests(function(r) return r.path == "/apis" end)
    assert_match(discovery[1].accept, "^application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    assert_eq(#k:requests(function(r) return r.path == "/apis/apps/v1" end), 0, "aggregated discovery sufficed")
    assert_match(ok(k, { "api-resources" }), "\ndeployments%s+deploy%s+apps/v1%s+true%s+Deployment\n")
    local tables = k:requests(function(r) return r.path == DEPLOYS and r.accept:find("as=Table", 1, true) end)
    assert_true(#tables >= 1, "kubectl asked for a Table")
    assert_eq(tables[1].user, "token")
    assert_match(ok(k, { "get", "pods" }), "web%-%w+%-%w+%s+1/1%s+Running%s+0%s")
    local list = json.decode(ok(k, { "get", "pods", "-l", "app=web", "-o", "json" }))
    assert_eq(#list.items, 3)
    assert_eq(list.items[1].kind, "Pod")
    assert_eq(list.items[1].status.phase, "Running")
    local rs = json.decode(ok(k, { "get", "rs", "-o", "json" })).items[1]
    assert_match(rs.metadata.name, "^web%-%w+$")
    assert_eq(rs.metadata.name, "web-" .. rs.metadata.labels["pod-template-hash"])
    assert_eq(rs.metadata.annotations["deployment.kubernetes.io/revision"], "1")
  end)

  test("a client certificate authenticates; a wrong token or none is 401", function()
    local k <close> = start()
    assert_match(ok(k, { "get", "namespaces" }, { cert = true }), "\ndefault%s+Active")
    local seen = k:requests(function(r) return r.path == "/api/v1/namespaces" end)
    assert_eq(seen[#seen].user, "cert:relish-client")
    local r = k:kubectl { "get", "pods", "--token", "wrong" }
    assert_ne(r.code, 0)
    assert_match(r.stderr, "Unauthorized")
    local status, body = k:json("GET", "/api/v1/namespaces/default/pods", { token = false })
    assert_eq(status, 401)
    assert_eq({ body.kind, body.reason, body.code }, { "Status", "Unauthorized", 401 })
    assert_eq((k:json("GET", "/api/v1/namespaces", { token = false, cert = true })), 200)
  end)

  test("apply (client-side) creates, then sends a strategic merge patch by merge keys", function()
    local k <close> = start()
    assert_match(ok(k, { "apply", "-f", "-" }, { input = deployment("web", "nginx:1.25") .. "---\n" .. SERVICE }),
      "deployment.apps/web created\nservice/web created")
    local changed = deployment("web", "nginx:1.26"):gsub('{name: B, value: "2"}', '{name: C, value: "3"}')
    assert_eq(ok(k, { "apply", "-f", "-" }, { input = changed }), "deployment.apps/web configured\n")
    local patch = k:requests(function(r) return r.method == "PATCH" end)[1]
    assert_eq(patch.content_type, "application/strategic-merge-patch+json")
    local body = json.decode(patch.body)
    assert_eq(body.spec.template.spec["$setElementOrder/containers"], { { name = "app" } })
    assert_eq(body.spec.template.spec.containers[1].env, { { name = "C", value = "3" }, { ["$patch"] = "delete", name = "B" } })
    local c = k:get(DEPLOYS .. "/web").spec.template.spec.containers[1]
    assert_eq(c.env, { { name = "A", value = "1" }, { name = "C", value = "3" } })
    assert_eq(c.image, "nginx:1.26")
    assert_eq(c.ports, { { containerPort = 80, protocol = "TCP" } })
    assert_eq(ok(k, { "apply", "-f", "-" }, { input = changed }), "deployment.apps/web unchanged\n")
  end)

  test("apply --server-side: a second manager conflicts, --force-conflicts takes the field", function()
    local k <close> = start()
    assert_eq(ok(k, { "apply", "--server-side", "-f", "-" }, { input = deployment("api", "api:1") }),
      "deployment.apps/api serverside-applied\n")
    assert_eq(ok(k, { "apply", "--server-side", "-f", "-" }, { input = deployment("api", "api:1") }),
      "deployment.apps/api serverside-applied\n")
    local r = k:kubectl({ "apply", "--server-side", "--field-manager", "other", "-f", "-" },
      { input = deployment("api", "api:2") })
    assert_eq(r.code, 1)
    assert_match(r.stderr, 'Apply failed with 1 conflict: conflict with "kubectl" using apps/v1: '
      .. '%.spec%.template%.spec%.containers%[name="app"%]%.image')
    ok(k, { "apply", "--server-side", "--field-manager", "other", "--force-conflicts", "-f", "-" },
      { input = deployment("api", "api:2") })
    local d = k:get(DEPLOYS .. "/api")
    assert_eq(d.spec.template.spec.containers[1].image, "api:2")
    local owners = {}
    for _, m in ipairs(d.metadata.managedFields) do
      local img = m.fieldsV1["f:spec"] and m.fieldsV1["f:spec"]["f:template"] and
          m.fieldsV1["f:spec"]["f:template"]["f:spec"]["f:containers"]['k:{"name":"app"}']["f:image"]
      if img then owners[#owners + 1] = m.manager .. "/" .. m.operation end
    end
    assert_eq(owners, { "other/Apply" })
    -- a client-side apply's fields belong to kubectl-client-side-apply, until
    -- a server-side apply that changes nothing hands them over to kubectl
    ok(k, { "apply", "-f", "-" }, { input = deployment("web", "nginx:1.25") })
    r = k:kubectl({ "apply", "--server-side", "-f", "-" }, { input = deployment("web", "nginx:1.27") })
    assert_match(r.stderr, 'conflict with "kubectl%-client%-side%-apply"')
    ok(k, { "apply", "--server-side", "-f", "-" }, { input = deployment("web", "nginx:1.25") })
    local managers = {}
    for _, m in ipairs(k:get(DEPLOYS .. "/web").metadata.managedFields) do managers[m.manager] = m.operation end
    assert_nil(managers["kubectl-client-side-apply"])
    assert_eq(managers.kubectl, "Apply")
    ok(k, { "apply", "--server-side", "-f", "-" }, { input = deployment("web", "nginx:1.27") })
    assert_eq(k:get(DEPLOYS .. "/web").spec.template.spec.containers[1].image, "nginx:1.27")
  end)

  test("rollout status waits for the rollout; history and undo bring back a revision", function()
    local k <close> = start { time_scale = 0.05 }
    -- slow enough (3 s a pod, real time) that kubectl sees the rollout
    -- under way even on a loaded machine, where set image and annotate
    -- take a second or two
    k:control("POST", "/images", { ["*:slow"] = { ready_after = 60 } })
    ok(k, { "apply", "-f", "-" }, { input = deployment("web", "nginx:1.25") })
    assert_match(ok(k, { "rollout", "status", "deploy/web", "--timeout=60s" }), 'deployment "web" successfully rolled out')
    ok(k, { "set", "image", "deploy/web", "app=nginx:slow" })
    ok(k, { "annotate", "deploy/web", "kubernetes.io/change-cause=to slow" })
    local out = ok(k, { "rollout", "status", "deploy/web", "--timeout=60s" })
    assert_match(out, "Waiting for deployment \"web\" rollout to finish: %d out of 3 new replicas have been updated")
    assert_match(out, 'deployment "web" successfully rolled out\n$')
    assert_match(ok(k, { "rollout", "history", "deploy/web" }), "REVISION%s+CHANGE%-CAUSE\n1%s+<none>\n2%s+to slow\n")
    assert_eq(ok(k, { "rollout", "undo", "deploy/web" }), "deployment.apps/web rolled back\n")
    ok(k, { "rollout", "status", "deploy/web", "--timeout=60s" })
    local d = k:get(DEPLOYS .. "/web")
    assert_eq(d.spec.template.spec.containers[1].image, "nginx:1.25")
    assert_eq(d.metadata.annotations["deployment.kubernetes.io/revision"], "3")
    local rss = k:get("/apis/apps/v1/namespaces/default/replicasets").items
    assert_eq(#rss, 2, "the old ReplicaSet was reused")
    for _, rs in ipairs(rss) do
      local ann = rs.metadata.annotations
      if rs.spec.template.spec.containers[1].image == "nginx:1.25" then
        assert_eq({ ann["deployment.kubernetes.io/revision"], ann["deployment.kubernetes.io/revision-history"], rs.spec.replicas },
          { "3", "1", 3 })
      else
        assert_eq({ ann["deployment.kubernetes.io/revision"], rs.spec.replicas }, { "2", 0 })
      end
    end
    assert_match(ok(k, { "rollout", "history", "deploy/web" }), "\n2%s+to slow\n3%s+")
  end)

  test("rollout status fails when a crash-looping image passes the progress deadline (600 s in 6)", function()
    local k <close> = start { time_scale = 0.01 }
    k:control("POST", "/images", { ["*:crash"] = { state = "CrashLoopBackOff" } })
    ok(k, { "apply", "-f", "-" }, { input = deployment("web", "nginx:1.25") })
    ok(k, { "rollout", "status", "deploy/web", "--timeout=60s" })
    ok(k, { "set", "image", "deploy/web", "app=nginx:crash" })
    local r = k:kubectl { "rollout", "status", "deploy/web", "--timeout=60s" }
    assert_eq(r.code, 1)
    assert_match(r.stderr, 'deployment "web" exceeded its progress deadline')
    local d = k:get(DEPLOYS .. "/web")
    local cond
    for _, c in ipairs(d.status.conditions) do if c.type == "Progressing" then cond = c end end
    assert_eq({ cond.status, cond.reason }, { "False", "ProgressDeadlineExceeded" })
    assert_eq(d.status.availableReplicas, 3, "the old pods stay")
    local bad = k:pods("app=web")
    local crashing = 0
    for _, p in ipairs(bad) do
      local cs = p.status.containerStatuses[1]
      if cs.image == "nginx:crash" then
        crashing = crashing + 1
        assert_eq(cs.state.waiting.reason, "CrashLoopBackOff")
        assert_true(cs.restartCount > 0)
        assert_eq(cs.lastState.terminated.exitCode, 1)
      end
    end
    assert_eq(crashing, 1, "maxUnavailable 25% of 3 is 0, so one surge pod only")
    assert_match(ok(k, { "get", "pods" }), "0/1%s+CrashLoopBackOff%s+%d+")
  end)

  test("scale patches /scale; delete takes the ReplicaSets and pods along", function()
    local k <close> = start()
    ok(k, { "apply", "-f", "-" }, { input = deployment("web", "nginx:1.25") })
    assert_eq(ok(k, { "scale", "deploy/web", "--replicas=5" }), "deployment.apps/web scaled\n")
    local p = k:requests(function(r) return r.method == "PATCH" end)[1]
    assert_eq({ p.path, p.content_type, json.decode(p.body) },
      { DEPLOYS .. "/web/scale", "application/merge-patch+json", { spec = { replicas = 5 } } })
    eventually("five pods", function() return #k:pods("app=web") == 5 end)
    assert_eq(ok(k, { "delete", "deploy/web" }), 'deployment.apps "web" deleted\n')
    eventually("no pods", function() return #k:pods() == 0 end)
    assert_eq(#k:get("/apis/apps/v1/namespaces/default/replicasets").items, 0)
    local all = k:kubectl { "get", "all" }
    assert_eq({ all.code, all.stdout, all.stderr }, { 0, "", "No resources found in default namespace.\n" })
  end)

  test("wait, diff (a server-side dry run, nothing written), logs, rollout restart", function()
    local k <close> = start()
    ok(k, { "apply", "-f", "-" }, { input = deployment("web", "nginx:1.25") })
    assert_eq(ok(k, { "wait", "--for=condition=Available", "deploy/web", "--timeout=30s" }),
      "deployment.apps/web condition met\n")
    local before = k:control("GET", "/stats")
    local r = k:kubectl({ "diff", "-f", "-" }, { input = deployment("web", "nginx:1.26") })
    assert_eq(r.code, 1, r.stderr)
    assert_match(r.stdout, "\n%-        image: nginx:1%.25\n%+        image: nginx:1%.26\n")
    local after = k:control("GET", "/stats")
    assert_eq(after.writes, before.writes)
    assert_true(#k:requests(function(x) return x.method == "PATCH" and x.query.dryRun == "All" end) >= 1)
    assert_match(ok(k, { "logs", "deploy/web" }), "^starting app %(nginx:1%.25%)\n")
    assert_eq(ok(k, { "rollout", "restart", "deploy/web" }), "deployment.apps/web restarted\n")
    ok(k, { "rollout", "status", "deploy/web", "--timeout=60s" })
    local d = k:get(DEPLOYS .. "/web")
    assert_eq(d.metadata.annotations["deployment.kubernetes.io/revision"], "2")
    assert_true(d.spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"] ~= nil)
  end)

  test("StatefulSets and DaemonSets: rollout status, history and undo through ControllerRevisions", function()
    local k <close> = start { time_scale = 0.05 }
    ok(k, { "apply", "-f", "-" }, { input = [[
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  replicas: 3
  serviceName: db
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec:
      containers: [{name: db, image: "db:1"}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: "agent:1"}]
]] })
    assert_match(ok(k, { "rollout", "status", "sts/db", "--timeout=60s" }),
      "statefulset rolling update complete 3 pods at revision db%-%w+%.%.%.\n$")
    assert_match(ok(k, { "rollout", "status", "ds/agent", "--timeout=60s" }), 'daemon set "agent" successfully rolled out')
    assert_match(ok(k, { "get", "sts" }), "\ndb%s+3/3%s")
    assert_match(ok(k, { "get", "ds" }), "\nagent%s+1%s+1%s+1%s+1%s+1%s+<none>%s")
    ok(k, { "set", "image", "sts/db", "db=db:2" })
    ok(k, { "set", "image", "ds/agent", "agent=agent:2" })
    ok(k, { "rollout", "status", "sts/db", "--timeout=60s" })
    ok(k, { "rollout", "status", "ds/agent", "--timeout=60s" })
    assert_match(ok(k, { "rollout", "history", "sts/db" }), "REVISION%s+CHANGE%-CAUSE\n1%s+<none>\n2%s+<none>\n")
    assert_eq(ok(k, { "rollout", "undo", "sts/db" }), "statefulset.apps/db rolled back\n")
    assert_eq(ok(k, { "rollout", "undo", "ds/agent" }), "daemonset.apps/agent rolled back\n")
    ok(k, { "rollout", "status", "sts/db", "--timeout=60s" })
    ok(k, { "rollout", "status", "ds/agent", "--timeout=60s" })
    assert_match(ok(k, { "rollout", "history", "ds/agent" }), "REVISION%s+CHANGE%-CAUSE\n2%s+<none>\n3%s+<none>\n")
    local images = {}
    for _, p in ipairs(k:pods()) do images[p.metadata.name:match("^[a-z]+")] = p.spec.containers[1].image end
    assert_eq(images, { db = "db:1", agent = "agent:1" })
    local sts = k:get("/apis/apps/v1/namespaces/default/statefulsets/db")
    assert_eq(sts.status.currentRevision, sts.status.updateRevision)
    assert_eq(#k:pods("app=db"), 3)
  end)
end)
