-- Tag a release from Conventional Commits: the next version from the commits
-- since the last release tag, CHANGELOG.md with the new section on top, a
-- commit, an annotated tag, and one push of both. An optional check runs
-- after the push; when it fails the release is rolled back: the tag deleted
-- here and on the remote, the commit reverted and the revert pushed.
local git = require "relish.git"
local changelog = require "relish.changelog"
local sh = require "relish.sh"

local function open(ctx) return git.open(ctx.params.repo) end

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

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

return recipe "tag-release" {
  description = "Version, CHANGELOG.md, annotated tag and push, from the Conventional Commits since the last tag",
  params = {
    repo = param.string { default = ".", description = "the repository's work tree (or a directory in it)" },
    remote = param.string { default = "origin", description = "remote to push the branch and the tag to" },
    branch = param.string { default = "", description = "branch to release (default: the current one, which it must be)" },
    prefix = param.string { default = "v", match = "^[%w./_-]*$", description = "tag prefix: v1.2.3" },
    bump = param.enum { choices = { "auto", "patch", "minor", "major" }, default = "auto",
      description = "auto: from the commits (breaking, feat, fix; 0.x: breaking bumps the minor)" },
    version = param.string { default = "", match = "^[%w.+-]*$", description = "exact version instead of the computed one" },
    initial = param.string { default = "0.1.0", description = "version of the first release, when there is no tag yet" },
    changelog = param.string { default = "CHANGELOG.md", description = "file the notes go on top of; empty: none (the tag is on HEAD)" },
    push = param.boolean { default = true, description = "push the branch and the tag" },
    verify = param.string { default = "",
      description = "shell command run after the push, in the work tree, with VERSION and TAG set; a failure rolls the release back" },
    allow_dirty = param.boolean { default = false, description = "release even with uncommitted changes in the work tree" },
    auth = param.string { default = "",
      description = "credentials for the remote: env:VARIABLE (an https token), agent or key:PATH (ssh)" },
  },
  lock = function(p)
    local repo = try(git.open, p.repo)
    if not repo then return "tag-release:" .. p.repo end
    local path = repo:path()
    repo:close()
    return "tag-release:" .. path
  end,

  step "plan the release" {
    run = function(ctx)
      local p, s = ctx.params, ctx.state
      local repo <close> = open(ctx)
      local branch = repo:branch()
      if not branch then error("HEAD is detached: check out the branch to release", 0) end
      if p.branch ~= "" and p.branch ~= branch then
        error(string.format("the current branch is %s, not %s: check out %s first", branch, p.branch, p.branch), 0)
      end
      if not p.allow_dirty and repo:is_dirty() then
        error("the work tree has uncommitted changes: commit or stash them first (or -p allow_dirty=true)", 0)
      end
      if p.push then
        -- a release is cut from what the remote has: nothing of it may be missing here
        repo:fetch(p.remote, { auth = auth_of(p.auth) })
        local theirs = try(repo.resolve, repo, "refs/remotes/" .. p.remote .. "/" .. branch)
        if theirs then
          local missing = repo:log { from = "HEAD", to = theirs, max = 1 }
          if #missing > 0 then
            error(string.format("%s/%s has commits this branch lacks (%s %s): pull first", p.remote, branch,
              missing[1].short, missing[1].summary), 0)
          end
        end
      end
      local plan = changelog.release(repo, {
        prefix = p.prefix, initial = p.initial,
        bump = p.bump ~= "auto" and p.bump or nil,
        version = p.version ~= "" and p.version or nil,
      })
      s.branch, s.head = branch, repo:head().id
      if not plan.releasable then
        s.skip = true
        ctx.log("nothing to release: %d commit(s) since %s, none a feature, a fix or a breaking change",
          #plan.commits, plan.previous or "the first commit")
        return
      end
      if try(repo.resolve, repo, "refs/tags/" .. plan.tag) then
        error(string.format("tag %s already exists: choose the version with -p version=...", plan.tag), 0)
      end
      s.version, s.tag, s.previous, s.notes = tostring(plan.version), plan.tag, plan.previous, plan.notes
      ctx.log("%s → %s (%s, %d commit(s))", plan.previous or "no release yet", plan.tag, plan.bump, #plan.commits)
      for line in (plan.notes:gsub("\n$", "") .. "\n"):gmatch("(.-)\n") do -- blank lines too
        ctx.log(line == "" and "" or "  " .. line)
      end
    end,
  },

  step "commit the changelog" {
    when = function(ctx) return not ctx.state.skip end,
    run = function(ctx)
      local p, s = ctx.params, ctx.state
      local repo <close> = open(ctx)
      if p.changelog == "" then
        s.commit = s.head
        return
      end
      local text = changelog.prepend(read(repo:path() .. "/" .. p.changelog), s.notes)
      s.commit = repo:commit { files = { [p.changelog] = text },
        message = "chore(release): " .. s.tag .. "\n\n" .. s.notes }
    end,
  },

  step "tag" {
    when = function(ctx) return not ctx.state.skip end,
    run = function(ctx)
      local s = ctx.state
      local repo <close> = open(ctx)
      repo:tag(s.tag, { message = "Release " .. s.tag .. "\n\n" .. s.notes, target = s.commit })
    end,
  },

  step "push" {
    when = function(ctx) return ctx.params.push and not ctx.state.skip end,
    run = function(ctx)
      local p, s = ctx.params, ctx.state
      local repo <close> = open(ctx)
      local refspecs = { "refs/tags/" .. s.tag .. ":refs/tags/" .. s.tag }
      if s.commit ~= s.head then
        table.insert(refspecs, 1, "refs/heads/" .. s.branch .. ":refs/heads/" .. s.branch)
      end
      repo:push { remote = p.remote, refspecs = refspecs, auth = auth_of(p.auth) }
    end,
  },

  step "verify" {
    when = function(ctx) return ctx.params.verify ~= "" and not ctx.state.skip end,
    run = function(ctx)
      if ctx.dry_run then return end -- nothing was released to check
      local p, s = ctx.params, ctx.state
      local repo <close> = open(ctx)
      -- a failure (its exit code and stderr in the message) rolls the release back
      sh.run { argv = { "sh", "-c", p.verify }, cwd = repo:path(), readonly = true, timeout = 600,
        env = { VERSION = s.version, TAG = s.tag } }
    end,
  },
}
