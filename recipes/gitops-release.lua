-- A GitOps release: bump an image tag in a manifest repository (a
-- Deployment's container, a kustomization's images: entry or a Helm values
-- key), changing only that value's text, commit and push it; Argo CD or Flux
-- deploys from there. An optional check runs after the push; when it fails,
-- or on `relish rollback`, the commit is reverted and the revert pushed.
local git = require "relish.git"
local gitops = require "relish.gitops"
local sh = require "relish.sh"

local cache = os.getenv("XDG_CACHE_HOME") or ((os.getenv("HOME") or "/tmp") .. "/.cache")

local function open(ctx) return git.open(ctx.state.clone) end

-- The auth param: "" (paths, file://, git://), "agent", "key:PATH" or
-- "env:VAR" (a token for https, read from the environment: a rollback in
-- another process reads it again from there).
local function auth_of(spec)
  if spec == "" then return nil end
  if spec == "agent" then return "agent" end
  local key = spec:match("^key:(.+)$")
  if key then return { ssh_key = key } end
  local var = spec:match("^env:([%w_]+)$")
  if var then return secret(var) end
  error(string.format("auth %q: use agent, key:PATH or env:VARIABLE", spec), 0)
end

return recipe "gitops-release" {
  description = "Bump an image tag in a manifest repository, commit and push; rollback is a revert",
  params = {
    repo = param.string { required = true, description = "URL or path of the manifest repository" },
    branch = param.string { default = "main", description = "branch the GitOps controller deploys from" },
    file = param.string { default = "deployment.yaml", description = "manifest to change, relative to the repository" },
    kind = param.enum { choices = { "deployment", "kustomization", "helm" }, default = "deployment",
      description = "deployment: a container's image; kustomization: an images: entry's newTag; helm: a values key" },
    container = param.string { default = "app", description = "deployment: the container whose image tag changes" },
    image = param.string { default = "", description = "kustomization: the name of the images: entry" },
    key = param.string { default = "image.tag", description = "helm: the values key" },
    tag = param.string { required = true, match = "^[%w_][%w_.%-]*$", description = "the new image tag" },
    message = param.string { default = "", description = "commit message (default: chore(release): ...)" },
    workdir = param.string { default = cache .. "/relish/gitops",
      description = "where each run keeps its clone (a rollback reverts in it)" },
    verify = param.string { default = "",
      description = "shell command run after the push, in the clone, with TAG and COMMIT set; a failure rolls back" },
    auth = param.string { default = "",
      description = "credentials for the repository: env:VARIABLE (an https token), agent or key:PATH (ssh)" },
  },
  -- one release at a time per branch (a password in the URL stays out of the lock's name)
  lock = function(p) return "gitops:" .. p.repo:gsub("//[^/@]*@", "//") .. "#" .. p.branch end,

  step "clone" {
    run = function(ctx)
      local p = ctx.params
      -- one clone per run: the state the rollback reverts in, whoever pushed since
      local dir = p.workdir .. "/" .. ctx.run_id
      local repo = git.clone(p.repo, dir, { branch = p.branch, auth = auth_of(p.auth) })
      ctx.state.clone = repo:path()
      ctx.log("cloned %s (%s at %s) into %s", p.repo, p.branch, repo:head().short, ctx.state.clone)
      repo:close()
    end,
  },

  step "bump the tag" {
    run = function(ctx)
      local p, s = ctx.params, ctx.state
      local edit = {}
      if p.kind == "deployment" then
        edit.image = { container = p.container, tag = p.tag }
      elseif p.kind == "kustomization" then
        if p.image == "" then error("kind=kustomization needs -p image=<name of the images: entry>", 0) end
        edit.kustomize = { name = p.image, tag = p.tag }
      else
        edit.helm = { key = p.key, value = p.tag }
      end
      local repo <close> = open(ctx)
      local r = gitops.update {
        repo = repo, file = p.file, image = edit.image, kustomize = edit.kustomize, helm = edit.helm,
        message = p.message ~= "" and p.message or
          string.format("chore(release): %s %s in %s", p.kind == "deployment" and p.container or
            p.kind == "kustomization" and p.image or p.key, p.tag, p.file),
        push = { remote = "origin", branch = p.branch, auth = auth_of(p.auth) },
      }
      if not r.changed then
        ctx.log("%s already has %s: nothing to change", p.file, p.tag)
        s.unchanged = true
        return
      end
      s.commit = r.commit
      ctx.log("%s: %s → %s, commit %s %s %s%s", p.file, tostring(r.old), tostring(r.new), r.commit:sub(1, 7),
        ctx.dry_run and "would be pushed to" or "pushed to", p.branch, ctx.dry_run and " (planned)" or "")
    end,
  },

  step "verify" {
    when = function(ctx) return ctx.params.verify ~= "" and not ctx.state.unchanged end,
    run = function(ctx)
      if ctx.dry_run then return end -- nothing was pushed to check
      local p, s = ctx.params, ctx.state
      -- a failure (its exit code and stderr in the message) reverts the bump
      sh.run { argv = { "sh", "-c", p.verify }, cwd = s.clone, readonly = true, timeout = 600,
        env = { TAG = p.tag, COMMIT = s.commit } }
    end,
  },
}
