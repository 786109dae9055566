-- relish.k8s writes as effects, in recipes run by relish: a dry-run changes
-- nothing (the double's write counter) and shows diffs; a rollback, after a
-- failure or a crash at any action, restores the objects exactly as they
-- were (compared with kubectl get -o json, server fields aside); the
-- kubeconfig's token never shows. And recipes/rolling-release.lua.
local json = require "relish.json"
local support = require "support"
local k8s_fixture = require "k8s_fixture"

local relish = support.relish

local function start(opts)
  if not k8s_fixture.available(true) then skip("openssl, python3 or kubectl is not installed") end
  return k8s_fixture.start(opts)
end

local MANIFEST = [[
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: shop}
data: {color: "%s", size: "10"}
---
apiVersion: v1
kind: Secret
metadata: {name: creds, namespace: shop}
stringData: {password: "%s"}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, namespace: shop}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "%s"}]
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: shop}
spec:
  selector: {app: api}
  ports: [{port: 80}]
]]

-- a recipe applying the manifest, then failing when asked
local RECIPE = [[
local k8s = require "relish.k8s"
return recipe "shop" {
  params = { kubeconfig = param.string { required = true }, manifest = param.string { required = true },
    fail = param.boolean { default = false } },
  step "apply" { run = function(ctx)
    local c = k8s.connect { kubeconfig = ctx.params.kubeconfig }
    c:apply(ctx.params.manifest, { force = true })
  end },
  step "scale" { run = function(ctx)
    local c = k8s.connect { kubeconfig = ctx.params.kubeconfig }
    c:scale("deployments/api", 3, { namespace = "shop" })
    if ctx.params.fail then error("failing on purpose") end
  end },
}
]]

-- what kubectl shows of the shop's objects, without what the server manages
local SHOP = { "namespace/shop", "configmap/settings", "secret/creds", "deployment/api", "service/api" }

local function objects(d, names, ns)
  local out = {}
  for _, kind in ipairs(names or SHOP) do
    local r = d:kubectl { "get", kind, "-n", ns or "shop", "-o", "json" }
    if r.code == 0 then
      local o = json.decode(r.stdout)
      o.status = nil
      for _, k in ipairs { "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields" } do
        o.metadata[k] = nil
      end
      if o.metadata.annotations then o.metadata.annotations["deployment.kubernetes.io/revision"] = nil end
      if o.kind == "Service" then o.spec.clusterIP, o.spec.clusterIPs = nil, nil end
      out[kind] = o
    else
      assert_match(r.stderr, "NotFound")
      out[kind] = "absent"
    end
  end
  return out
end

local function setup(d, color, password, image)
  local dir = tmpdir()
  local f = support.recipe(dir, "shop.lua", RECIPE)
  support.write(dir .. "/shop.yaml", string.format(MANIFEST, color, password, image))
  return dir, f, dir .. "/shop.yaml"
end

local function run(d, dir, f, manifest, ...)
  return relish { "run", f, "-p", "kubeconfig=" .. d.kubeconfig, "-p", "manifest=" .. manifest,
    "--state", support.state(dir), ... }
end

describe("k8s effects in a run", function()
  test("a dry-run sends every write with dryRun=All, changes nothing, and shows diffs", function()
    local d <close> = start()
    local dir, f, manifest = setup(d, "blue", "s3cret-pass", "api:1")
    assert_eq(run(d, dir, f, manifest).code, 0)
    local before, writes = objects(d), d:control("GET", "/stats").writes
    support.write(manifest, string.format(MANIFEST, "green", "n3w-pass", "api:2"))
    local r = run(d, dir, f, manifest, "--dry-run")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(d:control("GET", "/stats").writes, writes)
    assert_eq(objects(d), before)
    assert_match(r.stdout, "%-  color: blue\n%s+%+  color: green")
    assert_match(r.stdout, "%-      %- image: api:1\n%s+%+      %- image: api:2")
    assert_match(r.stdout, "%-  password: \"%*%*%*\"\n%s+%+  password: \"%*%*%* %(changed%)\"")
    -- the plan's own view: the apply before it sets replicas to the manifest's 2
    assert_match(r.stdout, "scale deployments%.apps/api in shop from 2 to 3")
    for _, secret_value in ipairs { "s3cret-pass", "n3w-pass", "czNjcmV0LXBhc3M", "bjN3LXBhc3M" } do
      assert_nil(r.stdout:find(secret_value, 1, true), secret_value)
    end
    local dry = d:requests(function(q) return q.method == "PATCH" and q.query.dryRun == "All" end)
    assert_true(#dry >= 5)
  end)

  test("a saved plan of a multi-object apply is applied in the same order; drift is refused", function()
    local d <close> = start()
    local dir, f, manifest = setup(d, "blue", "pw-one", "api:1")
    assert_eq(run(d, dir, f, manifest).code, 0)
    support.write(manifest, string.format(MANIFEST, "green", "pw-one", "api:2"))
    local plan = dir .. "/plan.json"
    for _ = 1, 3 do -- the writes go at once, but are journaled in the manifest's order every time
      local p = relish { "plan", f, "-p", "kubeconfig=" .. d.kubeconfig, "-p", "manifest=" .. manifest, "-o", plan,
        "--state", support.state(dir) }
      assert_eq(p.code, 0, p.stdout .. p.stderr)
    end
    local a = relish { "apply", plan, "--state", support.state(dir) }
    assert_eq(a.code, 0, a.stdout .. a.stderr)
    assert_eq(objects(d)["configmap/settings"].data.color, "green")
    -- planned against a state that is gone: the ConfigMap changed since
    support.write(manifest, string.format(MANIFEST, "red", "pw-one", "api:2"))
    local p = relish { "plan", f, "-p", "kubeconfig=" .. d.kubeconfig, "-p", "manifest=" .. manifest, "-o", plan,
      "--state", support.state(dir) }
    assert_eq(p.code, 0, p.stdout .. p.stderr)
    local k = d:kubectl({ "apply", "--server-side", "--force-conflicts", "-f", "-" },
      { input = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata: {color: pink}\n" })
    assert_eq(k.code, 0, k.stderr)
    local before = objects(d)
    a = relish { "apply", plan, "--state", support.state(dir) }
    assert_eq(a.code, 1, a.stdout .. a.stderr)
    assert_match(a.stdout, "configmaps/settings changed since the plan")
    assert_eq(objects(d), before, "what was applied before the drift was rolled back")
  end)

  test("a failure rolls back to the objects as they were; so does relish rollback of a good run", function()
    local d <close> = start()
    local dir, f, manifest = setup(d, "blue", "pw-one", "api:1")
    assert_eq(run(d, dir, f, manifest).code, 0)
    local before = objects(d)
    support.write(manifest, string.format(MANIFEST, "green", "pw-one", "api:2"))
    local r = run(d, dir, f, manifest, "-p", "fail=true")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_eq(objects(d), before)
    r = run(d, dir, f, manifest)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_ne(objects(d)["configmap/settings"], before["configmap/settings"])
    local rb = relish { "rollback", "last", "--state", support.state(dir) }
    assert_eq(rb.code, 0, rb.stdout .. rb.stderr)
    assert_eq(objects(d), before)
  end)

  test("a first run rolled back leaves nothing behind: what it created is deleted", function()
    local d <close> = start()
    local dir, f, manifest = setup(d, "blue", "pw-one", "api:1")
    local before = objects(d)
    local r = run(d, dir, f, manifest, "-p", "fail=true")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    k8s_fixture.eventually("the namespace to be gone", function()
      return objects(d)["namespace/shop"] == "absent"
    end)
    assert_eq(objects(d), before)
  end)

  for n = 1, 6 do
    test(string.format("a crash after action %d, then relish rollback last: the exact objects of before", n), function()
      local d <close> = start()
      local dir, f, manifest = setup(d, "blue", "pw-one", "api:1")
      assert_eq(run(d, dir, f, manifest).code, 0)
      local before = objects(d)
      support.write(manifest, string.format(MANIFEST, "green", "pw-one", "api:2"))
      local r = relish { "run", f, "-p", "kubeconfig=" .. d.kubeconfig, "-p", "manifest=" .. manifest,
        "--state", support.state(dir), env = { RELISH_FAULT = "crash-after-action:" .. n } }
      assert_eq(r.signal, "KILL", r.stdout .. r.stderr)
      local rb = relish { "rollback", "last", "--state", support.state(dir) }
      assert_eq(rb.code, 0, rb.stdout .. rb.stderr)
      assert_eq(objects(d), before)
    end)
  end

  test("undo leaves what others made or changed since the run (exit 3), unless --force", function()
    local d <close> = start()
    local dir, f, manifest = setup(d, "blue", "pw-one", "api:1")
    assert_eq(run(d, dir, f, manifest).code, 0)
    local before = objects(d)
    support.write(manifest, string.format(MANIFEST, "green", "pw-one", "api:2"))
    assert_eq(run(d, dir, f, manifest).code, 0)
    -- after the run, someone edits the ConfigMap with kubectl
    local k = d:kubectl({ "apply", "--server-side", "--force-conflicts", "--field-manager", "alice", "-f", "-" },
      { input = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata: {color: pink}\n" })
    assert_eq(k.code, 0, k.stderr)
    local rb = relish { "rollback", "last", "--state", support.state(dir) }
    assert_eq(rb.code, 3, rb.stdout .. rb.stderr)
    assert_match(rb.stdout, "configmaps/settings in shop was changed by alice after the run: left as it is")
    assert_eq(json.decode(d:kubectl({ "get", "configmap/settings", "-n", "shop", "-o", "json" }).stdout).data.color, "pink")
    local after = objects(d)
    assert_eq(after["deployment/api"], before["deployment/api"]) -- the rest was undone
    rb = relish { "rollback", "last", "--force", "--state", support.state(dir) }
    assert_eq(rb.code, 0, rb.stdout .. rb.stderr)
    assert_eq(objects(d), before)
  end)

  test("an object the run created, deleted and made again by someone else, is not deleted by the rollback", function()
    local d <close> = start()
    local dir, f, manifest = setup(d, "blue", "pw-one", "api:1")
    assert_eq(run(d, dir, f, manifest).code, 0)
    assert_eq(d:kubectl({ "delete", "configmap/settings", "-n", "shop" }).code, 0)
    local k = d:kubectl({ "apply", "--server-side", "--field-manager", "bob", "-f", "-" },
      { input = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings, namespace: shop}\ndata: {owner: bob}\n" })
    assert_eq(k.code, 0, k.stderr)
    local rb = relish { "rollback", "last", "--state", support.state(dir) }
    assert_eq(rb.code, 3, rb.stdout .. rb.stderr)
    assert_match(rb.stdout, "configmaps/settings in shop is there again but was not made by relish")
    assert_eq(json.decode(d:kubectl({ "get", "configmap/settings", "-n", "shop", "-o", "json" }).stdout).data.owner, "bob")
  end)

  test("a Secret's values never reach the journal; a rollback says when it cannot put them back", function()
    local d <close> = start()
    local dir, f, manifest = setup(d, "blue", "first-Secret-value", "api:1")
    assert_eq(run(d, dir, f, manifest).code, 0)
    local before = objects(d)
    support.write(manifest, string.format(MANIFEST, "blue", "second-Secret-value", "api:1"))
    local r = run(d, dir, f, manifest, "-p", "fail=true")
    assert_eq(r.code, 3, r.stdout .. r.stderr)
    assert_match(r.stdout, "secrets/creds in shop: its labels, annotations and type are back; its values are as the run left them")
    local journal = support.read(dir .. "/journal.db") .. (support.read(dir .. "/journal.db-wal") or "")
    for _, v in ipairs { "first-Secret-value", "second-Secret-value", "Zmlyc3QtU2VjcmV0LXZhbHVl", "c2Vjb25kLVNlY3JldC12YWx1ZQ" } do
      assert_nil(journal:find(v, 1, true), v)
    end
    local after = objects(d)
    assert_eq(after["configmap/settings"], before["configmap/settings"])
    assert_ne(after["secret/creds"], before["secret/creds"])
  end)

  test("the kubeconfig's token never reaches the output, the journal or show", function()
    local d <close> = start()
    local dir, f, manifest = setup(d, "blue", "pw-one", "api:1")
    local r = run(d, dir, f, manifest, "-p", "fail=true", "--output", "json")
    assert_eq(r.code, 1)
    local show = relish { "show", "last", "--format", "json", "--state", support.state(dir) }
    local journal = support.read(dir .. "/journal.db") .. (support.read(dir .. "/journal.db-wal") or "")
    for _, text in ipairs { r.stdout, r.stderr, show.stdout, journal } do
      assert_nil(text:find(d.token, 1, true))
    end
  end)
end)

describe("recipes/rolling-release.lua", function()
  local RECIPE_FILE = fixture_path("../../recipes/rolling-release.lua")

  local function release(d, dir, image, ...)
    return relish { "run", RECIPE_FILE, "-p", "kubeconfig=" .. d.kubeconfig, "-p", "image=" .. image,
      "-p", "timeout=120", "--state", support.state(dir), ... }
  end

  test("plans, releases, then rolls back a crash-looping image by itself", function()
    local d <close> = start { time_scale = 0.05 }
    local dir = tmpdir()
    local p = release(d, dir, "web:1", "--dry-run")
    assert_eq(p.code, 0, p.stdout .. p.stderr)
    assert_match(p.stdout, "apply %(new%) deployments%.apps/web in default")
    assert_eq(d:control("GET", "/stats").writes, 0)
    local r = release(d, dir, "web:1")
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, 'deployment "web" successfully rolled out')
    assert_match(r.stdout, "service web answers /healthz")
    local web = { "deployment/web", "service/web" }
    local good = objects(d, web, "default")
    local template = d:kubectl { "get", "deployment/web", "-o", "jsonpath={.spec.template.spec.containers[0].image}" }
    assert_eq(template.stdout, "web:1")
    d:control("POST", "/images", { ["web:bad"] = { state = "CrashLoopBackOff" } })
    r = release(d, dir, "web:bad")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout, "container web is in CrashLoopBackOff")
    template = d:kubectl { "get", "deployment/web", "-o", "jsonpath={.spec.template.spec.containers[0].image}" }
    assert_eq(template.stdout, "web:1")
    assert_eq(objects(d, web, "default"), good)
    local status = d:kubectl { "rollout", "status", "deployment/web", "--timeout=60s" }
    assert_eq(status.code, 0, status.stderr)
    -- ready, but answering 500 through the Service: the smoke test fails, and the release rolls back
    d:control("POST", "/images", { ["web:broken"] = { http_status = 500 } })
    r = release(d, dir, "web:broken")
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout, "smoke test: service web answered 500 on /healthz")
    assert_eq(objects(d, web, "default"), good)
  end)
end)
