-- relish.k8s.rollout: rollouts of Deployments (and the status of StatefulSets
-- and DaemonSets) with kubectl's semantics (../shared/notes/kubernetes.md),
-- and a wait that fails fast on pods that will never become ready.
-- install(Client, k) adds the methods; k holds the client's internals.
local json = require "relish.json"
local task = require "relish.task"
local host = require "relish._host"
local secret = require "relish.secret"
local E = require "relish._errors"

local REVISION = "deployment.kubernetes.io/revision"
local CHANGE_CAUSE = "kubernetes.io/change-cause"
local HASH = "pod-template-hash"
-- annotations a rollback keeps from the Deployment, not from the ReplicaSet
local SKIP = { ["kubectl.kubernetes.io/last-applied-configuration"] = true, [REVISION] = true,
  ["deployment.kubernetes.io/revision-history"] = true, ["deployment.kubernetes.io/desired-replicas"] = true,
  ["deployment.kubernetes.io/max-replicas"] = true, ["deprecated.deployment.rollback.to"] = true }
-- waiting reasons of a container that will not become ready by waiting
local BAD = { CrashLoopBackOff = true, ImagePullBackOff = true, ErrImagePull = true,
  CreateContainerConfigError = true, InvalidImageName = true, CreateContainerError = true }

local function fail(kind, fmt, ...) error(E.value(kind, fmt, ...), 0) end

local function revision_of(obj)
  local a = obj.metadata and obj.metadata.annotations
  return tonumber(type(a) == "table" and a[REVISION] or nil)
end

-- status(obj [, revision]) -> {done=, failed=, message=}: kubectl's rule
local function status(obj, revision)
  local kind, name, md = obj.kind, obj.metadata.name, obj.metadata
  local spec, st = obj.spec or {}, obj.status or {}
  local function waiting(fmt, ...) return { done = false, failed = false, message = string.format(fmt, ...) } end
  if kind == "Deployment" then
    if revision and revision_of(obj) ~= revision then
      return { done = false, failed = true, message = string.format("desired revision (%d) is different from the running revision (%s)",
        revision, tostring(revision_of(obj))) }
    end
    if (md.generation or 0) > (st.observedGeneration or 0) then
      return waiting("Waiting for deployment spec update to be observed...")
    end
    for _, c in ipairs(st.conditions or {}) do
      if c.type == "Progressing" and c.reason == "ProgressDeadlineExceeded" then
        return { done = false, failed = true, message = string.format("deployment %q exceeded its progress deadline", name) }
      end
    end
    local want, updated = spec.replicas or 1, st.updatedReplicas or 0
    if updated < want then
      return waiting("Waiting for deployment %q rollout to finish: %d out of %d new replicas have been updated...", name,
        updated, want)
    end
    if (st.replicas or 0) > updated then
      return waiting("Waiting for deployment %q rollout to finish: %d old replicas are pending termination...", name,
        (st.replicas or 0) - updated)
    end
    if (st.availableReplicas or 0) < updated then
      return waiting("Waiting for deployment %q rollout to finish: %d of %d updated replicas are available...", name,
        st.availableReplicas or 0, updated)
    end
    return { done = true, failed = false, message = string.format("deployment %q successfully rolled out", name) }
  elseif kind == "DaemonSet" then
    if (spec.updateStrategy or {}).type == "OnDelete" then
      return { done = false, failed = true, message = "rollout status is only available for RollingUpdate strategy type" }
    end
    if (md.generation or 0) > (st.observedGeneration or 0) then
      return waiting("Waiting for daemon set spec update to be observed...")
    end
    local want = st.desiredNumberScheduled or 0
    if (st.updatedNumberScheduled or 0) < want then
      return waiting("Waiting for daemon set %q rollout to finish: %d out of %d new pods have been updated...", name,
        st.updatedNumberScheduled or 0, want)
    end
    if (st.numberAvailable or 0) < want then
      return waiting("Waiting for daemon set %q rollout to finish: %d of %d updated pods are available...", name,
        st.numberAvailable or 0, want)
    end
    return { done = true, failed = false, message = string.format("daemon set %q successfully rolled out", name) }
  elseif kind == "StatefulSet" then
    if (spec.updateStrategy or {}).type == "OnDelete" then
      return { done = false, failed = true, message = "rollout status is only available for RollingUpdate strategy type" }
    end
    if (st.observedGeneration or 0) == 0 or (md.generation or 0) > (st.observedGeneration or 0) then
      return waiting("Waiting for statefulset spec update to be observed...")
    end
    local want = spec.replicas or 1
    if (st.readyReplicas or 0) < want then
      return waiting("Waiting for %d pods to be ready...", want - (st.readyReplicas or 0))
    end
    local ru = (spec.updateStrategy or {}).rollingUpdate
    if ru and ru.partition and ru.partition > 0 then
      if (st.updatedReplicas or 0) < want - ru.partition then
        return waiting("Waiting for partitioned roll out to finish: %d out of %d new pods have been updated...",
          st.updatedReplicas or 0, want - ru.partition)
      end
      return { done = true, failed = false, message = string.format(
        "partitioned roll out complete: %d new pods have been updated...", st.updatedReplicas or 0) }
    end
    if st.updateRevision ~= st.currentRevision then
      return waiting("waiting for statefulset rolling update to complete %d pods at revision %s...",
        st.updatedReplicas or 0, tostring(st.updateRevision))
    end
    return { done = true, failed = false, message = string.format(
      "statefulset rolling update complete %d pods at revision %s...", st.currentReplicas or 0, tostring(st.currentRevision)) }
  end
  fail("unsupported", "no rollout status for kind %s", tostring(kind))
end

-- templates equal but for the pod-template-hash label (kubectl's EqualIgnoreHash)
local function same_template(a, b)
  local function norm(t)
    t = json.decode(json.encode(t))
    if type(t.metadata) == "table" and type(t.metadata.labels) == "table" then
      t.metadata.labels[HASH] = nil
      if next(t.metadata.labels) == nil then t.metadata.labels = nil end
    end
    return json.encode(t, { sort_keys = true })
  end
  return norm(a or {}) == norm(b or {})
end

return function(Client, k)
  -- the ReplicaSets a Deployment controls, and which is its new one
  local function replica_sets(c, d)
    local sel = d.spec.selector and d.spec.selector.matchLabels or {}
    local owned = {}
    for _, rs in ipairs(c:list("replicasets.apps", { namespace = d.metadata.namespace, selector = sel }).items) do
      for _, ref in ipairs(rs.metadata.ownerReferences or {}) do
        if ref.controller and ref.uid == d.metadata.uid then owned[#owned + 1] = rs end
      end
    end
    local new
    for _, rs in ipairs(owned) do
      if same_template(rs.spec.template, d.spec.template) then new = rs end
    end
    return owned, new
  end

  local function deployment(c, ref, who)
    local res, name, ns = c:ref(ref, who)
    if not name or name == "" then k.usage(who, "the reference needs a name") end
    local d = c:json("GET", k.path_of(res, ns, name), { what = who .. " " .. k.label(res, name, ns) })
    return d, res, name, ns
  end

  -- rollout_status(ref [, {revision=}]) -> {done=, failed=, message=}
  function Client:rollout_status(ref, opts)
    opts = E.check_options(k.usage, "k8s.rollout_status", opts, { revision = true })
    local obj = deployment(self, ref, "k8s.rollout_status")
    return status(obj, opts.revision)
  end

  -- a pod of the new ReplicaSet stuck in a state waiting will not fix
  local function stuck_pod(c, d)
    local _, new = replica_sets(c, d)
    if not new then return nil end
    local sel = {}
    for key, v in pairs(new.spec.selector and new.spec.selector.matchLabels or {}) do sel[key] = v end
    for _, p in ipairs(c:list("pods", { namespace = d.metadata.namespace, selector = sel }).items) do
      local st = p.status or {}
      for _, list in ipairs { st.initContainerStatuses or {}, st.containerStatuses or {} } do
        for _, cs in ipairs(list) do
          local w = cs.state and cs.state.waiting
          if w and BAD[w.reason] then
            return string.format("pod %s: container %s is in %s%s", p.metadata.name, cs.name, w.reason,
              (type(w.message) == "string" and w.message ~= "") and (": " .. w.message) or "")
          end
        end
      end
    end
  end

  -- wait_rollout(ref [, {timeout=, revision=, poll=}]) -> the final status:
  -- watches the object until kubectl's rule says done; raises kind
  -- `rollout_failed` at once when the progress deadline passed or a pod of
  -- the new ReplicaSet is in CrashLoopBackOff, ImagePullBackOff, ErrImagePull
  -- or CreateContainerConfigError, and `timeout` after timeout seconds
  function Client:wait_rollout(ref, opts)
    opts = E.check_options(k.usage, "k8s.wait_rollout", opts, { timeout = true, revision = true, poll = true })
    if k.dry_run() then return { done = true, planned = true, message = "not waited for in a dry-run" } end
    local d, res, name, ns = deployment(self, ref, "k8s.wait_rollout")
    local what = k.label(res, name, ns)
    local timeout = opts.timeout or 600
    local last
    local function judge(obj)
      local s = status(obj, opts.revision)
      if s.message ~= last then
        last = s.message
        host.progress_detail(secret.redact(s.message))
      end
      if s.failed then fail("rollout_failed", "%s: %s", what, s.message) end
      if s.done then return s end
    end
    local first = judge(d)
    if first then
      host.progress_detail(nil)
      return first
    end
    local watcher, poller
    watcher = task.spawn(function()
      local l = self:list(res.name .. "." .. res.group, { namespace = ns, field_selector = { ["metadata.name"] = name } })
      for _, obj in ipairs(l.items) do
        local s = judge(obj)
        if s then return s end
      end
      local ok, r = pcall(self.watch, self, res.name .. "." .. res.group .. "/" .. name, function(t, obj)
        if t == "DELETED" then fail("rollout_failed", "%s: deleted while waiting for its rollout", what) end
        return judge(obj)
      end, { namespace = ns, resource_version = l.metadata.resourceVersion, timeout = timeout })
      if not ok and type(r) == "table" and r.kind == "cancelled" then error(r, 0) end -- by the poller
      if poller then poller:cancel() end
      if not ok then
        if type(r) == "table" and r.kind == "timeout" then
          fail("timeout", "%s: rollout not finished after %gs: %s", what, timeout, tostring(last))
        end
        error(r, 0)
      end
      return r
    end)
    if d.kind == "Deployment" then
      poller = task.spawn(function()
        while true do
          local bad = stuck_pod(self, self:json("GET", k.path_of(res, ns, name), { what = "get " .. what }))
          if bad then
            watcher:cancel()
            fail("rollout_failed", "%s: %s", what, bad)
          end
          task.sleep(opts.poll or 1)
        end
      end)
    end
    local ok, r = pcall(watcher.wait, watcher)
    host.progress_detail(nil)
    if ok then
      -- done, however the watcher saw it (its first list, the watch): the
      -- poller has nothing left to watch for
      if poller then poller:cancel() end
      return r
    end
    if poller then
      if type(r) == "table" and r.kind == "cancelled" and poller:status() ~= "cancelled" then
        -- the poller stopped the watch: its error is the one to tell
        local _, perr = pcall(poller.wait, poller)
        error(perr, 0)
      end
      poller:cancel()
    end
    error(r, 0)
  end

  -- rollout_history(ref) -> { {revision=, change_cause=, replicaset=, template=}, ... } oldest first
  function Client:rollout_history(ref)
    local d = deployment(self, ref, "k8s.rollout_history")
    local owned = replica_sets(self, d)
    local out = {}
    for _, rs in ipairs(owned) do
      local rev = revision_of(rs)
      if rev then
        local a = rs.metadata.annotations or {}
        out[#out + 1] = { revision = rev, change_cause = a[CHANGE_CAUSE], replicaset = rs.metadata.name,
          template = rs.spec.template }
      end
    end
    table.sort(out, function(a, b) return a.revision < b.revision end)
    return out
  end

  -- rollout_undo(ref [, {to_revision=}]) -> the Deployment, or nil when its
  -- template already is that revision's (kubectl's "skipped rollback")
  function Client:rollout_undo(ref, opts)
    opts = E.check_options(k.usage, "k8s.rollout_undo", opts, { to_revision = true })
    local to = opts.to_revision or 0
    if math.type(to) ~= "integer" or to < 0 then
      error("k8s.rollout_undo: to_revision must be a non-negative integer", 2)
    end
    local d, res, name, ns = deployment(self, ref, "k8s.rollout_undo")
    if d.spec.paused then
      fail("invalid", "you cannot rollback a paused deployment; resume it first and try again (%s)", k.label(res, name, ns))
    end
    local owned = replica_sets(self, d)
    local target, latest, latest_rev, prev_rev = nil, nil, -1, -1
    for _, rs in ipairs(owned) do
      local v = revision_of(rs)
      if v then
        if to == 0 then
          if v > latest_rev then
            target, prev_rev = latest, latest_rev
            latest, latest_rev = rs, v
          elseif v > prev_rev then
            target, prev_rev = rs, v
          end
        elseif v == to then
          target = rs
        end
      end
    end
    if not target then
      if to > 0 then fail("not_found", "unable to find the specified revision %d of %s", to, k.label(res, name, ns)) end
      fail("not_found", "no rollout history found for %s", k.label(res, name, ns))
    end
    if same_template(target.spec.template, d.spec.template) then return nil end
    local template = k.copy(target.spec.template)
    if type(template.metadata) == "table" and type(template.metadata.labels) == "table" then
      template.metadata.labels[HASH] = nil
    end
    local annotations = {}
    for key, v in pairs(d.metadata.annotations or {}) do if SKIP[key] then annotations[key] = v end end
    for key, v in pairs(target.metadata.annotations or {}) do if not SKIP[key] then annotations[key] = v end end
    local patch = json.array { { op = "replace", path = "/spec/template", value = template },
      { op = "replace", path = "/metadata/annotations", value = annotations } }
    return self:write("rollout_undo", { res = res, name = name, ns = ns, live = d, method = "PATCH",
      path = k.path_of(res, ns, name),
      o = { body = json.encode(patch), content_type = "application/json-patch+json", idempotent = true, -- replaces only
        what = "rollout undo " .. k.label(res, name, ns) },
      describe = string.format("rollout undo %s to revision %d", k.label(res, name, ns), revision_of(target)) })
  end

  local function template_patch(c, verb, ref, patch, ct, describe)
    local d, res, name, ns = deployment(c, ref, "k8s." .. verb)
    return c:write(verb, { res = res, name = name, ns = ns, live = d, method = "PATCH", path = k.path_of(res, ns, name),
      o = { body = json.encode(patch), content_type = ct, what = verb .. " " .. k.label(res, name, ns) },
      describe = describe .. " " .. k.label(res, name, ns) })
  end

  -- restart(ref): a new rollout of the same template (kubectl rollout restart)
  function Client:restart(ref)
    local now = os.date("!%Y-%m-%dT%H:%M:%SZ")
    return template_patch(self, "restart", ref,
      { spec = { template = { metadata = { annotations = { ["kubectl.kubernetes.io/restartedAt"] = now } } } } },
      "application/strategic-merge-patch+json", "restart")
  end

  function Client:pause(ref)
    return template_patch(self, "pause", ref, { spec = { paused = true } }, "application/merge-patch+json", "pause")
  end

  function Client:resume(ref)
    return template_patch(self, "resume", ref, { spec = { paused = json.null } }, "application/merge-patch+json", "resume")
  end

  return { status = status, same_template = same_template }
end
