-- kubectl's rule for when a rollout is done, case by case
-- (../shared/notes/kubernetes.md, "When a Deployment rollout is done").
local k8s = require "relish.k8s"
local status = k8s.rollout.status

local function deploy(gen, observed, replicas, st, annotations)
  st.observedGeneration = observed
  return { kind = "Deployment", metadata = { name = "api", generation = gen, annotations = annotations },
    spec = { replicas = replicas }, status = st }
end

describe("Deployment rollout status", function()
  local cases = {
    { "spec not observed yet", deploy(3, 2, 3, { updatedReplicas = 3, replicas = 3, availableReplicas = 3 }),
      false, false, "Waiting for deployment spec update to be observed..." },
    { "progress deadline exceeded", deploy(2, 2, 3, { updatedReplicas = 1, replicas = 4, availableReplicas = 3,
      conditions = { { type = "Available", status = "True" },
        { type = "Progressing", status = "False", reason = "ProgressDeadlineExceeded" } } }),
      false, true, 'deployment "api" exceeded its progress deadline' },
    { "new replicas not all updated", deploy(2, 2, 3, { updatedReplicas = 1, replicas = 4, availableReplicas = 3 }),
      false, false, 'Waiting for deployment "api" rollout to finish: 1 out of 3 new replicas have been updated...' },
    { "old replicas terminating", deploy(2, 2, 3, { updatedReplicas = 3, replicas = 4, availableReplicas = 3 }),
      false, false, 'Waiting for deployment "api" rollout to finish: 1 old replicas are pending termination...' },
    { "updated not all available", deploy(2, 2, 3, { updatedReplicas = 3, replicas = 3, availableReplicas = 2 }),
      false, false, 'Waiting for deployment "api" rollout to finish: 2 of 3 updated replicas are available...' },
    { "done", deploy(2, 2, 3, { updatedReplicas = 3, replicas = 3, availableReplicas = 3 }),
      true, false, 'deployment "api" successfully rolled out' },
    { "replicas default to 1", deploy(1, 1, nil, { updatedReplicas = 1, replicas = 1, availableReplicas = 1 }),
      true, false, 'deployment "api" successfully rolled out' },
    { "scaled to zero is done", deploy(4, 4, 0, {}), true, false, 'deployment "api" successfully rolled out' },
  }
  for _, c in ipairs(cases) do
    test(c[1], function()
      local s = status(c[2])
      assert_eq(s.done, c[3])
      assert_eq(s.failed, c[4])
      assert_eq(s.message, c[5])
    end)
  end

  test("a revision other than the running one is a failure", function()
    local d = deploy(2, 2, 1, { updatedReplicas = 1, replicas = 1, availableReplicas = 1 },
      { ["deployment.kubernetes.io/revision"] = "4" })
    assert_true(status(d, 4).done)
    local s = status(d, 3)
    assert_true(s.failed)
    assert_eq(s.message, "desired revision (3) is different from the running revision (4)")
  end)
end)

describe("StatefulSet and DaemonSet rollout status", function()
  test("DaemonSet: updated, then available, then done; OnDelete has no status", function()
    local ds = { kind = "DaemonSet", metadata = { name = "agent", generation = 1 }, spec = {},
      status = { observedGeneration = 1, desiredNumberScheduled = 3, updatedNumberScheduled = 2, numberAvailable = 2 } }
    assert_eq(status(ds).message, 'Waiting for daemon set "agent" rollout to finish: 2 out of 3 new pods have been updated...')
    ds.status.updatedNumberScheduled = 3
    assert_eq(status(ds).message, 'Waiting for daemon set "agent" rollout to finish: 2 of 3 updated pods are available...')
    ds.status.numberAvailable = 3
    assert_true(status(ds).done)
    ds.spec.updateStrategy = { type = "OnDelete" }
    assert_true(status(ds).failed)
  end)

  test("StatefulSet: ready, partition, revisions", function()
    local ss = { kind = "StatefulSet", metadata = { name = "db", generation = 2 }, spec = { replicas = 3 },
      status = { observedGeneration = 2, readyReplicas = 2, updatedReplicas = 1, currentReplicas = 3,
        updateRevision = "db-2", currentRevision = "db-1" } }
    assert_eq(status(ss).message, "Waiting for 1 pods to be ready...")
    ss.status.readyReplicas = 3
    assert_eq(status(ss).message, "waiting for statefulset rolling update to complete 1 pods at revision db-2...")
    ss.spec.updateStrategy = { type = "RollingUpdate", rollingUpdate = { partition = 2 } }
    assert_true(status(ss).done)
    ss.spec.updateStrategy = nil
    ss.status.currentRevision = "db-2"
    assert_eq(status(ss).message, "statefulset rolling update complete 3 pods at revision db-2...")
  end)
end)

describe("templates compared as kubectl does", function()
  test("equal but for pod-template-hash", function()
    local same = k8s.rollout.same_template
    local a = { metadata = { labels = { app = "api", ["pod-template-hash"] = "abc" } }, spec = { containers = { { name = "c", image = "x:1" } } } }
    local b = { metadata = { labels = { app = "api" } }, spec = { containers = { { name = "c", image = "x:1" } } } }
    assert_true(same(a, b))
    b.spec.containers[1].image = "x:2"
    assert_false(same(a, b))
  end)
end)

describe("the order apply writes a manifest in", function()
  test("namespaces, then kinds others depend on, custom resources last; otherwise as written", function()
    local docs = k8s.manifests(table.concat({
      "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}",
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d1}",
      "apiVersion: v1\nkind: Service\nmetadata: {name: s}",
      "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d2}",
      "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: widgets.example.com}",
      "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}",
      "apiVersion: v1\nkind: Namespace\nmetadata: {name: n}",
      "apiVersion: v1\nkind: List\nitems: [{apiVersion: v1, kind: Secret, metadata: {name: x}}]",
    }, "\n---\n"))
    local names = {}
    for i, d in ipairs(docs) do names[i] = d.kind .. "/" .. d.metadata.name end
    assert_eq(names, { "Namespace/n", "Secret/x", "ConfigMap/c", "CustomResourceDefinition/widgets.example.com",
      "Service/s", "Deployment/d1", "Deployment/d2", "Widget/w" })
  end)
end)
