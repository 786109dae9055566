-- Roll back the last release of a service, on this machine (releases/<version>/
-- and a `current` symlink, as recipes/local-release.lua lays them out) or on
-- Kubernetes (a Deployment's ReplicaSet revisions). It shows what is live, the
-- recent releases and the health first; a person picks the release to go back
-- to (the previous one unless told otherwise) and confirms from -> to; the
-- switch is journaled, so `relish rollback last` puts the newer release back.
local fs = require "relish.fs"
local k8s = require "relish.k8s"
local sh = require "relish.sh"

-- ---- the two targets: the same questions, each answered its own way ----------

local function utc(t) return t and os.date("!%Y-%m-%d %H:%M:%S UTC", t) or "?" end

local LOCAL, KUBE = {}, {}

-- live(p) -> {name=, text=}; releases(p) -> {{name=, when=, text=}, ...} newest
-- first; health(p) -> ok, why

function LOCAL.live(p)
  local cur = try(fs.stat, p.deploy_to .. "/current")
  if not cur or cur.type ~= "link" then return nil end
  local name = cur.target:match("([^/]+)/*$")
  return { name = name, text = string.format("current -> %s", cur.target) }
end

function LOCAL.releases(p)
  local out = {}
  for _, name in ipairs(try(fs.list, p.deploy_to .. "/releases") or {}) do
    local st = try(fs.stat, p.deploy_to .. "/releases/" .. name)
    if st and st.type == "dir" then
      local rev = try(fs.read, p.deploy_to .. "/releases/" .. name .. "/REVISION")
      out[#out + 1] = { name = name, time = st.mtime, when = utc(st.mtime),
        text = rev and ("REVISION " .. rev:gsub("%s+$", "")) or "no REVISION file" }
    end
  end
  table.sort(out, function(a, b)
    if a.time ~= b.time then return a.time > b.time end
    return a.name > b.name
  end)
  return out
end

function LOCAL.health(p)
  local r = sh.run { argv = { "sh", "-c", p.health }, cwd = p.deploy_to .. "/current", readonly = true,
    check = false, timeout = 60 }
  if r.code == 0 then return true, p.health .. ": passed" end
  return false, string.format("%s: exit %d %s", p.health, r.code, (r.stderr or ""):gsub("%s+$", ""))
end

local function client(p)
  return k8s.connect { kubeconfig = p.kubeconfig, context = p.context, namespace = p.namespace }
end

local REV = "deployment.kubernetes.io/revision"

local function image_of(template)
  local out = {}
  for i, c in ipairs(template and template.spec and template.spec.containers or {}) do out[i] = c.image end
  return table.concat(out, ", ")
end

function KUBE.live(p)
  local d = client(p):get("deployments/" .. p.deployment)
  local rev = (d.metadata.annotations or {})[REV] or "?"
  local st = d.status or {}
  -- "rev3", not "3": a number typed at a choice is the option's position
  return { name = "rev" .. rev, text = string.format("%s: revision %s, %s, %d/%d ready", p.deployment, rev,
    image_of(d.spec.template), st.readyReplicas or 0, d.spec.replicas or 0) }
end

function KUBE.releases(p)
  local c = client(p)
  local out = {}
  for _, r in ipairs(c:rollout_history("deployments/" .. p.deployment)) do
    local rs = try(c.get, c, "replicasets/" .. r.replicaset)
    local created = rs and rs.metadata.creationTimestamp -- "2026-12-03T19:30:00Z"
    out[#out + 1] = { name = "rev" .. r.revision, revision = r.revision,
      when = created and created:gsub("T", " "):gsub("Z$", " UTC") or "?",
      text = image_of(r.template) .. (r.change_cause and ("; " .. r.change_cause) or "") }
  end
  table.sort(out, function(a, b) return a.revision > b.revision end)
  return out
end

function KUBE.health(p)
  local st = client(p):rollout_status("deployments/" .. p.deployment)
  return st.done and not st.failed, st.message
end

local function target(p) return p.target == "k8s" and KUBE or LOCAL end

-- the releases a person may go back to: every one but the live one, newest
-- first, the one just before the live one as the default
local function candidates(p)
  local live = target(p).live(p)
  local list, default, seen_live = {}, nil, false
  for _, r in ipairs(target(p).releases(p)) do
    if live and r.name == live.name then
      seen_live = true
    else
      list[#list + 1] = { value = r.name, text = string.format("%s, %s", r.when, r.text) }
      if seen_live and not default then default = r.name end
    end
  end
  return list, default, live
end

return runbook "rollback-release" {
  description = "Roll back the last release of a service: local releases or a Kubernetes Deployment",
  severity = "SEV2",
  service = "web",
  owner = "release engineering",
  links = {
    { title = "How local releases are laid out", url = "docs/recipes/local-release.md" },
    { title = "Rollouts (k8s reference)", url = "docs/reference/k8s.md#rollouts" },
  },
  params = {
    target = param.enum { choices = { "local", "k8s" }, default = "local",
      description = "local: releases/<version> and a current symlink; k8s: a Deployment's revisions" },
    deploy_to = param.string { default = (os.getenv("TMPDIR") or "/tmp") .. "/relish-demo/app",
      description = "local: where releases/ and current live (as recipes/local-release.lua made them)" },
    health = param.string { default = "test -s index.html && test -s REVISION",
      description = "local: shell command run in current; non-zero means unhealthy" },
    deployment = param.string { default = "web", description = "k8s: the Deployment" },
    namespace = param.string { default = "default", description = "k8s: its namespace" },
    kubeconfig = param.string { description = "k8s: the kubeconfig (default: $KUBECONFIG, else ~/.kube/config)" },
    context = param.string { description = "k8s: the kubeconfig context (default: its current-context)" },
    timeout = param.integer { default = 300, min = 1, description = "k8s: seconds to wait for the rollout" },
  },
  lock = function(p)
    if p.target == "k8s" then return "rollback-release:k8s:" .. p.namespace .. "/" .. p.deployment end
    return "rollback-release:local:" .. p.deploy_to
  end,

  check "what is live" {
    description = "The release serving now.",
    run = function(ctx)
      local live = target(ctx.params).live(ctx.params)
      if not live then return { verdict = "bad", text = "nothing is live: no current release" } end
      return { verdict = "ok", text = live.text }
    end,
  },

  check "recent releases" {
    description = "The releases there are, newest first, with their times.",
    run = function(ctx)
      local live = target(ctx.params).live(ctx.params)
      local rows = {}
      for i, r in ipairs(target(ctx.params).releases(ctx.params)) do
        if i > 10 then break end
        rows[#rows + 1] = { release = r.name, time = r.when, what = r.text,
          live = (live and live.name == r.name) and "live" or "" }
      end
      return { rows = rows, columns = { "release", "time", "what", "live" } }
    end,
  },

  check "health now" {
    description = "The health probe on what is live: local, the health command in current; k8s, the rollout status.",
    run = function(ctx)
      local ok, why = target(ctx.params).health(ctx.params)
      return { verdict = ok and "ok" or "bad", text = why }
    end,
  },

  step "roll back" {
    description = "Switches to the chosen release: local, `current` relinked (undo: relinked back) and the " ..
      "health command run in it; k8s, `rollout undo` to that revision (undo: the previous template back) and " ..
      "the rollout waited for.",
    choose = function(ctx)
      local list, default = candidates(ctx.params)
      if #list == 0 then error("there is no other release to go back to", 0) end
      list.default = default or list[1].value
      list.prompt = "Roll back to which release?"
      return list
    end,
    confirm = function(ctx, choice)
      local live = target(ctx.params).live(ctx.params)
      return string.format("Roll %s back from %s to %s?", ctx.params.target == "k8s" and ctx.params.deployment
        or ctx.params.deploy_to, live and live.name or "nothing", choice)
    end,
    run = function(ctx, choice)
      local p = ctx.params
      local live = target(p).live(p)
      ctx.state.from, ctx.state.to = live and live.name, choice
      if p.target == "k8s" then
        local c = client(p)
        c:rollout_undo("deployments/" .. p.deployment, { to_revision = math.tointeger(tonumber(choice:match("^rev(%d+)$"))) })
        local st = c:wait_rollout("deployments/" .. p.deployment, { timeout = p.timeout })
        ctx.log("%s", st.message)
      else
        local release = p.deploy_to .. "/releases/" .. choice
        local st = try(fs.stat, release)
        if not st or st.type ~= "dir" then error("release " .. release .. " is not there", 0) end
        fs.symlink(release, p.deploy_to .. "/current")
        if not ctx.dry_run then
          -- a release that is not healthy fails the step: the switch is undone
          sh.run { argv = { "sh", "-c", p.health }, cwd = p.deploy_to .. "/current", readonly = true, timeout = 60 }
        end
      end
      ctx.note(string.format("rolled back from %s to %s", live and live.name or "nothing", choice))
    end,
  },

  check "health after" {
    description = "The health probe again, on the release now live.",
    run = function(ctx)
      local ok, why = target(ctx.params).health(ctx.params)
      local live = target(ctx.params).live(ctx.params)
      return { verdict = ok and "ok" or "bad", text = (live and live.name or "nothing live") .. ": " .. why }
    end,
  },
}
