-- relish.k8s against the Kubernetes API double (tests/fixtures/k8s_api.py):
-- each verb, errors, retries, TLS and credentials, watches resumed after a
-- close and after 410, rollouts (fail fast, kubectl parity for undo).
-- k8s_recipe_test.lua has the effects: dry-run, journal, rollback.
local k8s = require "relish.k8s"
local json = require "relish.json"
local sh = require "relish.sh"
local task = require "relish.task"
local secret = require "relish.secret"
local support = require "support"
local k8s_fixture = require "k8s_fixture"
local try = require("relish._errors").try

local function start(opts)
  if not k8s_fixture.available() then skip("openssl or python3 is not installed") end
  return k8s_fixture.start(opts)
end

local function cm(name, data, labels)
  return { apiVersion = "v1", kind = "ConfigMap", metadata = { name = name, labels = labels }, data = data }
end

local function deployment(name, image, extra)
  local d = { apiVersion = "apps/v1", kind = "Deployment", metadata = { name = name, labels = { app = name } },
    spec = { replicas = 2, selector = { matchLabels = { app = name } },
      template = { metadata = { labels = { app = name } },
        spec = { containers = { { name = "main", image = image } } } } } }
  for k, v in pairs(extra or {}) do d.spec[k] = v end
  return d
end

local function writes(d) return d:control("GET", "/stats").writes end

describe("reads and writes", function()
  test("create, get, list (selectors, every page), replace, patch three ways, delete", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    for i = 1, 5 do c:create(cm("c" .. i, { n = tostring(i) }, { tier = i <= 3 and "web" or "db" })) end
    assert_eq(c:get("configmaps/c2").data.n, "2")
    assert_eq(c:get({ kind = "ConfigMap", name = "c3" }).data.n, "3")
    assert_eq(c:get("cm/c4").metadata.name, "c4") -- a short name, found by discovery
    local l = c:list("configmaps", { selector = { tier = "web" }, limit = 2 }) -- two pages
    assert_eq(#l.items, 3)
    assert_eq(l.items[1].kind, "ConfigMap")
    assert_eq(#c:list("configmaps", { selector = "tier in (db)" }).items, 2)
    assert_eq(#c:list("configmaps", { field_selector = { ["metadata.name"] = "c5" } }).items, 1)
    local paged = d:requests(function(r) return r.verb == "list" and r.query.limit == "2" end)
    assert_eq(#paged, 2)

    local obj = c:get("configmaps/c1")
    obj.data.n = "one"
    assert_eq(c:replace(obj).data.n, "one")
    assert_eq(c:patch("configmaps/c1", { data = { m = "merged" } }, { type = "merge" }).data.m, "merged")
    assert_eq(c:patch("configmaps/c1", { { op = "replace", path = "/data/n", value = "1" } }, { type = "json" }).data.n, "1")
    c:create(deployment("web", "web:1"))
    local p = c:patch("deployments/web", { spec = { template = { spec = { containers = { { name = "main", image = "web:2" } } } } } })
    assert_eq(p.spec.template.spec.containers[1].image, "web:2") -- strategic: merged by container name
    assert_eq(#p.spec.template.spec.containers, 1)

    assert_true(c:delete("configmaps/c1"))
    assert_false(c:delete("configmaps/c1")) -- not there: nothing to do
    assert_true(c:delete("deployments/web", { propagation = "Foreground" })) -- waits until it is gone
    assert_eq(#d:get("/apis/apps/v1/namespaces/default/replicasets").items, 0)
  end)

  test("server-side apply: creates, updates, a conflict names the other manager, force takes over", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    local a = c:apply(cm("app", { color = "blue" }))
    assert_eq(a.data.color, "blue")
    assert_eq(c:apply(cm("app", { color = "green" })).data.color, "green")
    local req = d:requests(function(r) return r.method == "PATCH" end)
    assert_eq(req[#req].content_type, "application/apply-patch+yaml")
    assert_eq(req[#req].query.fieldManager, "relish")
    -- someone else takes the field
    local status = d:json("PATCH", "/api/v1/namespaces/default/configmaps/app?fieldManager=other&force=true",
      { body = json.encode(cm("app", { color = "red" })), headers = { ["Content-Type"] = "application/apply-patch+yaml" } })
    assert_eq(status, 200)
    local _, err = try(c.apply, c, cm("app", { color = "green" }))
    assert_eq(err.kind, "conflict")
    assert_eq(err.code, 409)
    assert_eq(err.causes[1].reason, "FieldManagerConflict")
    assert_match(err.message, "other")
    assert_eq(c:apply(cm("app", { color = "green" }), { force = true }).data.color, "green")
  end)

  test("apply takes YAML text, several documents and a file, namespaces and CRDs first", function()
    local d <close> = start()
    local dir = tmpdir()
    support.write(dir .. "/all.yaml", [[
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: team}
data: {a: "1"}
---
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
# an empty document, skipped
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: team}
spec:
  selector: {app: api}
  ports: [{port: 80}]
]])
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    local out = c:apply(dir .. "/all.yaml")
    assert_eq(#out, 3)
    local kinds = {}
    for _, r in ipairs(d:requests(function(r) return r.method == "PATCH" end)) do kinds[#kinds + 1] = r.path end
    assert_match(kinds[1], "/namespaces/team$")
    assert_eq(c:get("configmaps/settings", { namespace = "team" }).data.a, "1")
    local _, err = try(c.apply, c, dir .. "/nope.yaml")
    assert_eq(err.kind, "not_found")
    assert_match(err.message, "nope%.yaml: no such file or directory")
    -- text and files give a list, whatever the number of documents
    assert_eq(c:apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\ndata: {x: y}\n")[1].data.x, "y")
  end)

  test("errors carry the kind, the HTTP code, the Status reason and causes", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    local _, err = try(c.get, c, "configmaps/nope")
    assert_eq({ err.kind, err.code, err.reason }, { "not_found", 404, "NotFound" })
    assert_match(tostring(err), 'get configmaps/nope in default: configmaps "nope" not found')
    c:create(cm("dup"))
    _, err = try(c.create, c, cm("dup"))
    assert_eq({ err.kind, err.code, err.reason }, { "already_exists", 409, "AlreadyExists" })
    local bad = deployment("bad", "x:1")
    bad.spec.selector.matchLabels = { app = "other" }
    _, err = try(c.create, c, bad)
    assert_eq({ err.kind, err.code }, { "invalid", 422 })
    assert_true(#err.causes > 0)
    _, err = try(c.get, c, "nosuchkinds/x")
    assert_eq(err.kind, "not_found")
    assert_match(err.message, 'no resource type "nosuchkinds"')
    -- misuse raises at the caller
    assert_misuse(function() c:get("configmaps") end, "k8s.get: the reference needs a name")
    assert_misuse(function() c:list("configmaps", { selectr = "a" }) end, "k8s.list: unknown option 'selectr' (did you mean 'selector'?)")
    assert_misuse(function() c:scale("deployments/x", -1) end, "k8s.scale: replicas must be a non-negative integer, got -1")
  end)

  test("reads are retried on 429 (after Retry-After) and 503; a write is not sent twice", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    c:create(cm("r"))
    d:control("POST", "/faults", { { status = 429, retry_after = 1, verb = "get" }, { status = 503, verb = "get" } })
    assert_eq(c:get("configmaps/r").metadata.name, "r")
    -- the double logs a request once it has answered: wait for the log to hold all three
    local function logged(verb, path, n)
      return k8s_fixture.eventually(n .. " " .. verb .. "s in the log", function()
        local got = d:requests(function(r) return r.verb == verb and r.path:find(path, 1, true) end)
        return #got >= n and got
      end)
    end
    local gets = logged("get", "/configmaps/r", 3)
    assert_eq(#gets, 3)
    assert_true(gets[2].time - gets[1].time >= 0.9, "waited for Retry-After")
    d:control("POST", "/faults", { status = 503, verb = "create" })
    local _, err = try(c.create, c, cm("s"))
    assert_eq(err.kind, "unavailable")
    assert_eq(#logged("create", "configmaps", 2), 2)
    -- a JSON patch is not sent twice either (an "add" would add twice); a merge patch is
    d:control("POST", "/faults", { status = 503, verb = "patch" })
    _, err = try(c.patch, c, "configmaps/r", { { op = "add", path = "/data", value = { a = "1" } } }, { type = "json" })
    assert_eq(err.kind, "unavailable")
    assert_eq(#logged("patch", "/configmaps/r", 1), 1)
    d:control("POST", "/faults", { status = 503, verb = "patch" })
    assert_eq(c:patch("configmaps/r", { data = { b = "2" } }, { type = "merge" }).data.b, "2")
    assert_eq(#logged("patch", "/configmaps/r", 3), 3)
  end)

  test("scale, update_with_retry through a conflict, pods and logs", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    c:create(deployment("web", "web:1"))
    assert_eq(c:scale("deployments/web", 3).spec.replicas, 3)
    k8s_fixture.eventually("three pods", function() return #c:pods({ app = "web" }) == 3 end)
    d:control("POST", "/faults", { status = 409, verb = "update" })
    local u = c:update_with_retry("deployments/web", function(obj) obj.metadata.labels.touched = "yes" end)
    assert_eq(u.metadata.labels.touched, "yes")
    local pod = c:pods({ app = "web" })[1].metadata.name
    d:control("POST", "/logs", { pod = pod, container = "main", lines = { "one", "two", "three" } })
    local logs = c:logs { pod = pod, tail = 2 }
    assert_eq(logs, "two\nthree\n")
  end)
end)

describe("connections", function()
  test("a client certificate instead of a token", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig_cert }
    c:create(cm("by-cert"))
    local r = d:requests(function(r) return r.verb == "create" end)
    assert_match(r[1].user, "^cert:")
  end)

  test("a CA that did not sign the server: a tls error, nothing sent", function()
    local d <close> = start()
    local dir = tmpdir()
    sh.run { argv = { "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir .. "/k.pem",
      "-out", dir .. "/ca.pem", "-days", "1", "-subj", "/CN=other-ca" }, readonly = true }
    local kc = support.read(d.kubeconfig):gsub('"certificate%-authority": "[^"]*"',
      '"certificate-authority": "' .. dir .. '/ca.pem"')
    support.write(dir .. "/kubeconfig", kc)
    local c = k8s.connect { kubeconfig = dir .. "/kubeconfig" }
    local before = #d:requests(function() return true end)
    local _, err = try(c.get, c, "configmaps/x")
    assert_eq(err.kind, "tls")
    assert_eq(#d:requests(function() return true end), before)
  end)

  test("an exec plugin's token; a 401 runs the plugin once more; the token is never shown", function()
    local d <close> = start()
    local dir = tmpdir()
    support.write(dir .. "/tok", d.token)
    support.write(dir .. "/plugin.sh", [[#!/bin/sh
echo run >> "$0.count"
printf '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"%s"}}' "$(cat "$TOK")"
]], 493)
    local kc = json.decode(support.read(d.kubeconfig))
    kc.users[1].user = { exec = { apiVersion = "client.authentication.k8s.io/v1", command = dir .. "/plugin.sh",
      interactiveMode = "Never", env = { { name = "TOK", value = dir .. "/tok" } } } }
    support.write(dir .. "/kubeconfig", json.encode(kc))
    local c = k8s.connect { kubeconfig = dir .. "/kubeconfig" }
    c:create(cm("a"))
    c:get("configmaps/a")
    assert_eq(select(2, support.read(dir .. "/plugin.sh.count"):gsub("run", "")), 1)
    -- the cluster rotates its tokens; the plugin now prints the new one
    d:control("POST", "/auth", { tokens = { "rotated-token-2" } })
    support.write(dir .. "/tok", "rotated-token-2")
    assert_eq(c:get("configmaps/a").metadata.name, "a")
    assert_eq(select(2, support.read(dir .. "/plugin.sh.count"):gsub("run", "")), 2)
    assert_eq(secret.redact("x rotated-token-2 y"), "x *** y")
    -- a plugin that keeps the old token: the 401 is the error
    d:control("POST", "/auth", { tokens = { "rotated-token-3" } })
    local _, err = try(c.get, c, "configmaps/a")
    assert_eq({ err.kind, err.code }, { "unauthorized", 401 })
  end)
end)

describe("watch", function()
  test("a watch closed early resumes from the last resourceVersion: nothing lost, nothing twice", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    local seen = {}
    d:control("POST", "/faults", { watch_close_after = 0.3 })
    local w = task.spawn(function()
      return c:watch("configmaps", function(t, obj)
        seen[#seen + 1] = t .. " " .. obj.metadata.name
        if #seen == 4 then return "enough" end
      end, { timeout = 30, resource_version = c:list("configmaps").metadata.resourceVersion })
    end)
    task.sleep(0.1)
    c:create(cm("w1"))
    c:create(cm("w2"))
    task.sleep(0.6) -- the first watch has been closed by now
    c:create(cm("w3"))
    c:create(cm("w4"))
    assert_eq(w:wait(), "enough")
    assert_eq(seen, { "ADDED w1", "ADDED w2", "ADDED w3", "ADDED w4" })
    k8s_fixture.eventually("a second watch in the log", function()
      return #d:requests(function(r) return r.verb == "watch" end) >= 2
    end)
  end)

  test("after 410 Expired the objects are listed again and the watch goes on", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    c:create(cm("w0"))
    local rv = c:list("configmaps").metadata.resourceVersion
    c:create(cm("w1"))
    d:control("POST", "/compact", {}) -- rv is too old now
    local seen = {}
    local w = task.spawn(function()
      return c:watch("configmaps", function(t, obj)
        seen[obj.metadata.name] = t
        if seen.w2 then return true end
      end, { timeout = 30, resource_version = rv })
    end)
    task.sleep(0.3)
    c:create(cm("w2"))
    assert_true(w:wait())
    assert_eq(seen, { w0 = "ADDED", w1 = "ADDED", w2 = "ADDED" })
    assert_true(#d:requests(function(r) return r.verb == "list" end) >= 2)
  end)

  test("a watch that sees nothing ends with kind timeout", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    local _, err = try(c.watch, c, "configmaps/never", function() end, { timeout = 1 })
    assert_eq(err.kind, "timeout")
  end)
end)

describe("rollouts", function()
  test("wait_rollout leaves nothing running after it returns (no poller left behind)", function()
    local d <close> = start { time_scale = 0.05 }
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    c:create(deployment("done", "web:1"))
    k8s_fixture.eventually("rolled out", function() return c:rollout_status("deployments/done").done end)
    -- the first look says "not done yet" (as when the controller is a step
    -- behind), so the watcher and the pod poller start, and the watcher's
    -- list then finds it done
    local real, first = c.json, true
    c.json = function(self, method, path, o)
      local r = real(self, method, path, o)
      if first and method == "GET" and path:match("/deployments/done$") then
        first = false
        r.status.updatedReplicas = 0
      end
      return r
    end
    local s = c:wait_rollout("deployments/done", { poll = 0.2 })
    c.json = nil
    assert_eq(s.done, true)
    assert_false(first, "the first look was the stale one")
    assert_eq(require("relish._loop").stats().tasks, 0)
    local function gets()
      return #d:requests(function(q) return q.method == "GET" and q.path:find("/done", 1, true) end)
    end
    local before = gets()
    task.sleep(1) -- a poller left behind would GET every 0.2 s meanwhile
    assert_eq(gets(), before)
  end)

  test("wait_rollout returns when kubectl's rule says done", function()
    local d <close> = start { time_scale = 0.05 }
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    d:control("POST", "/images", { ["slow:*"] = { ready_after = 4 } })
    c:apply(deployment("web", "slow:1"))
    local s = c:wait_rollout("deployments/web", { timeout = 60 })
    assert_true(s.done)
    assert_eq(s.message, 'deployment "web" successfully rolled out')
    local st = c:get("deployments/web").status
    assert_eq({ st.updatedReplicas, st.availableReplicas }, { 2, 2 })
  end)

  for _, state in ipairs { "CrashLoopBackOff", "ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError" } do
    test("fails fast on a new pod in " .. state .. ", naming pod, container and reason", function()
      local d <close> = start { time_scale = 0.05 }
      local c = k8s.connect { kubeconfig = d.kubeconfig }
      c:apply(deployment("web", "web:1"))
      c:wait_rollout("deployments/web", { timeout = 60 })
      d:control("POST", "/images", { ["web:bad"] = { state = state } })
      c:apply(deployment("web", "web:bad"))
      local _, err = try(c.wait_rollout, c, "deployments/web", { timeout = 300 })
      assert_eq(err.kind, "rollout_failed")
      assert_match(err.message, "pod web%-%w+%-%w+: container main is in " .. state)
    end)
  end

  test("fails on ProgressDeadlineExceeded", function()
    local d <close> = start { time_scale = 0.01 }
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    d:control("POST", "/images", { ["stuck:*"] = { state = "NotReady" } })
    c:apply(deployment("web", "stuck:1", { progressDeadlineSeconds = 30 }))
    local _, err = try(c.wait_rollout, c, "deployments/web", { timeout = 600 })
    assert_eq(err.kind, "rollout_failed")
    assert_match(err.message, 'deployment "web" exceeded its progress deadline')
  end)

  test("rollout_undo gives what kubectl rollout undo gives, on twin Deployments", function()
    local d <close> = start { time_scale = 0.05 }
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    for _, name in ipairs { "twin-a", "twin-b" } do
      for _, v in ipairs { "1", "2", "3" } do
        local dep = deployment(name, "app:" .. v)
        dep.metadata.annotations = { ["kubernetes.io/change-cause"] = "version " .. v }
        c:apply(dep, { force = true })
        c:wait_rollout("deployments/" .. name, { timeout = 60 })
      end
    end
    local hist = c:rollout_history("deployments/twin-b")
    assert_eq(#hist, 3)
    assert_eq(hist[1].change_cause, "version 1")
    for _, to in ipairs { 1, 0 } do
      local k = d:kubectl { "rollout", "undo", "deployment/twin-a", "--to-revision=" .. to }
      assert_eq(k.code, 0, k.stderr)
      c:rollout_undo("deployments/twin-b", { to_revision = to })
      c:wait_rollout("deployments/twin-a", { timeout = 60 })
      c:wait_rollout("deployments/twin-b", { timeout = 60 })
      local a, b = c:get("deployments/twin-a"), c:get("deployments/twin-b")
      local function template(x)
        local t = json.decode(json.encode(x.spec.template))
        t.metadata.labels.app = nil
        return json.encode(t, { sort_keys = true })
      end
      assert_eq(template(b), template(a))
      local function ann(x)
        local out = {}
        for key, v in pairs(x.metadata.annotations) do
          if key:match("^deployment%.kubernetes%.io/") or key == "kubernetes.io/change-cause" then out[key] = v end
        end
        return out
      end
      assert_eq(ann(b), ann(a))
    end
    local _, err = try(c.rollout_undo, c, "deployments/twin-b", { to_revision = 99 })
    assert_eq(err.kind, "not_found")
    assert_match(err.message, "unable to find the specified revision 99")
  end)
end)

describe("more kinds", function()
  test("a CustomResourceDefinition and its resources in one manifest: planned, then applied", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    local manifest = [[
apiVersion: example.com/v1
kind: Widget
metadata: {name: w1}
spec: {size: 3}
---
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
]]
    -- planned: the server has no widgets yet, so the Widget is planned from the manifest
    local actions = require("relish._gate").capture(function() c:apply(manifest) end, { dry_run = true })
    assert_eq(#actions, 2)
    assert_match(actions[1].describe, "customresourcedefinitions")
    assert_match(actions[2].describe, "apply %(new%) widgets%.example%.com/w1 in default")
    assert_eq(d:control("GET", "/stats").writes, 0)
    local out = c:apply(manifest)
    assert_eq(out[2].spec.size, 3)
    assert_eq(c:get("wd/w1").spec.size, 3) -- discovered again after the definition
    -- custom resources take merge patches (strategic merge is for built-in kinds)
    assert_eq(c:patch("widgets/w1", { spec = { size = 4 } }).spec.size, 4)
    local _, err = try(c.patch, c, "widgets/w1", { spec = { size = 5 } }, { type = "strategic" })
    assert_eq({ err.kind, err.code }, { "unsupported_media_type", 415 })
  end)

  test("a dry-run sees what the plan wrote before: create, then scale, patch, replace and delete it", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    c:create(deployment("stable", "web:1"))
    local seen = {}
    local actions = require("relish._gate").capture(function()
      local canary = deployment("canary", "web:2")
      canary.spec.replicas = 0
      c:create(canary)
      seen.created = c:get("deployments/canary").spec.replicas
      c:scale("deployments/canary", 2)
      seen.scaled = c:get("deployments/canary").spec.replicas
      c:patch("deployments/canary", { spec = { template = { spec = { containers = { { name = "main", image = "web:3" } } } } } })
      seen.image = c:get("deployments/canary").spec.template.spec.containers[1].image
      c:update_with_retry("deployments/canary", function(x) x.metadata.labels.track = "canary" end)
      seen.label = c:get("deployments/canary").metadata.labels.track
      -- an object the server has: its planned state, too
      c:scale("deployments/stable", 1)
      seen.stable = c:get("deployments/stable").spec.replicas
      c:delete("deployments/canary")
      seen.gone = select(2, try(c.get, c, "deployments/canary")).kind
    end, { dry_run = true })
    assert_eq(seen, { created = 0, scaled = 2, image = "web:3", label = "canary", stable = 1, gone = "not_found" })
    local said = {}
    for i, a in ipairs(actions) do said[i] = a.describe end
    assert_eq(said, { "create deployments.apps/canary in default", "scale deployments.apps/canary in default from 0 to 2",
      "patch deployments.apps/canary in default", "update deployments.apps/canary in default",
      "scale deployments.apps/stable in default from 2 to 1", "delete deployments.apps/canary in default" })
    assert_match(actions[3].detail, "\n%-%s+%- image: web:2\n%+%s+%- image: web:3\n")
    -- nothing was written, and the next real write reads the server again
    assert_eq(writes(d), 1)
    assert_eq(try(c.get, c, "deployments/canary"), nil)
    assert_eq(c:get("deployments/stable").spec.replicas, 2)
  end)

  test("restart, pause and resume a Deployment, each undone from its pre-image", function()
    local d <close> = start { time_scale = 0.05 }
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    c:apply(deployment("web", "web:1"))
    c:wait_rollout("deployments/web", { timeout = 60 })
    local before = c:get("deployments/web")
    local actions = require("relish._gate").capture(function()
      local r = c:restart("deployments/web")
      assert_match(r.spec.template.metadata.annotations["kubectl.kubernetes.io/restartedAt"], "^%d+%-%d+%-%d+T")
      assert_true(c:pause("deployments/web").spec.paused)
      assert_nil(c:resume("deployments/web").spec.paused)
    end)
    assert_eq(#actions, 3)
    c:wait_rollout("deployments/web", { timeout = 60 })
    assert_eq(c:get("deployments/web").metadata.annotations["deployment.kubernetes.io/revision"], "2")
    for i = #actions, 1, -1 do require("relish.effect").undo(actions[i].kind, actions[i].undo) end
    local after = c:get("deployments/web")
    assert_eq(after.spec.template, before.spec.template) -- the restart annotation is gone again
    assert_nil(after.spec.paused)
  end)

  test("wait_rollout follows a StatefulSet by kubectl's rule", function()
    local d <close> = start { time_scale = 0.05 }
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    c:apply { apiVersion = "apps/v1", kind = "StatefulSet", metadata = { name = "db" },
      spec = { replicas = 3, serviceName = "db", selector = { matchLabels = { app = "db" } },
        template = { metadata = { labels = { app = "db" } }, spec = { containers = { { name = "db", image = "db:1" } } } } } }
    local s = c:wait_rollout("statefulsets/db", { timeout = 60 })
    assert_match(s.message, "^statefulset rolling update complete 3 pods at revision db%-")
  end)
end)

describe("undo", function()
  local effect = require "relish.effect"
  local gate = require "relish._gate"

  test("an apply under another field manager is undone by that manager's rules", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    c:apply(cm("app", { color = "blue" }))
    local actions = gate.capture(function()
      c:apply(cm("app", { color = "green" }), { field_manager = "ci", force = true })
      c:apply(cm("made", { x = "1" }), { field_manager = "ci" })
    end)
    for i = #actions, 1, -1 do effect.undo(actions[i].kind, actions[i].undo) end
    assert_eq(c:get("configmaps/app").data.color, "blue")
    local _, err = try(c.get, c, "configmaps/made")
    assert_eq(err.kind, "not_found")
  end)

  test("a scale is undone while the count is the one it set; after another scale only with force", function()
    local d <close> = start()
    local c = k8s.connect { kubeconfig = d.kubeconfig }
    c:create(deployment("web", "web:1"))
    local actions = gate.capture(function() c:scale("deployments/web", 3) end)
    assert_eq(actions[1].fingerprint, "replicas:2")
    effect.undo(actions[1].kind, actions[1].undo)
    assert_eq(c:get("deployments/web").spec.replicas, 2)
    actions = gate.capture(function() c:scale("deployments/web", 4) end)
    d:kubectl { "scale", "deployment/web", "--replicas=6" }
    local ok, err = pcall(effect.undo, actions[1].kind, actions[1].undo)
    assert_false(ok)
    assert_eq(err.kind, "conflict")
    assert_match(err.message, "was scaled to 6 since the run")
    assert_eq(c:get("deployments/web").spec.replicas, 6)
    effect.undo(actions[1].kind, actions[1].undo, nil, { force = true })
    assert_eq(c:get("deployments/web").spec.replicas, 2)
  end)
end)
