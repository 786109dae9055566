-- A Capistrano-style release on this machine: each version gets its own
-- releases/<version>/ directory built from a source tree, shared files are
-- linked in, the `current` symlink is switched atomically, a health check
-- runs, and only the newest releases are kept. A failed health check rolls
-- everything back; `relish rollback last` returns to the previous release.
local fs = require "relish.fs"
local sh = require "relish.sh"

local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."

return recipe "local-release" {
  description = "Release a directory tree as releases/<version> and switch `current` to it",
  params = {
    source = param.string { default = here .. "/demo-site", description = "directory to release" },
    deploy_to = param.string { default = (os.getenv("TMPDIR") or "/tmp") .. "/relish-demo/app",
      description = "where releases/, shared/ and current live" },
    version = param.string { default = os.date("!%Y%m%d%H%M%S"), match = "^[%w][%w._-]*$",
      description = "release name" },
    shared = param.list { default = { "config/app.env" }, description = "files kept across releases, linked from shared/" },
    keep = param.integer { default = 3, min = 1, description = "releases to keep" },
    health = param.string { default = "test -s index.html && test -s REVISION",
      description = "shell command run in the new release; non-zero fails the release" },
  },
  lock = function(p) return "local-release:" .. p.deploy_to end,

  step "build release" {
    run = function(ctx)
      local p = ctx.params
      local st = try(fs.stat, p.source)
      if not st or st.type ~= "dir" then error("source " .. p.source .. " is not a directory") end
      local release = p.deploy_to .. "/releases/" .. p.version
      if fs.exists(release) then error("release " .. release .. " already exists: choose another version") end
      fs.mkdir(release, { parents = true })
      local function copy_tree(from, to)
        for _, name in ipairs(fs.list(from)) do
          local s = fs.stat(from .. "/" .. name)
          if s.type == "dir" then
            fs.mkdir(to .. "/" .. name, { mode = s.mode })
            copy_tree(from .. "/" .. name, to .. "/" .. name)
          elseif s.type == "file" then
            fs.copy(from .. "/" .. name, to .. "/" .. name)
          end
        end
      end
      copy_tree(p.source, release)
      fs.write(release .. "/REVISION", p.version .. "\n")
      ctx.state.release = release
      ctx.log("built %s from %s", release, p.source)
    end,
  },

  step "link shared files" {
    run = function(ctx)
      local p = ctx.params
      for _, file in ipairs(p.shared) do
        local shared = p.deploy_to .. "/shared/" .. file
        local dir = shared:match("^(.*)/[^/]*$")
        if not fs.exists(dir) then fs.mkdir(dir, { parents = true }) end
        if not fs.exists(shared) then
          -- first release: the shared copy starts from the source's default
          local default = p.source .. "/" .. file
          if fs.exists(default) then fs.copy(default, shared)
          else fs.write(shared, "") end
        end
        local target = ctx.state.release .. "/" .. file
        if fs.exists(target) then fs.remove(target) end
        fs.symlink(shared, target)
      end
    end,
  },

  step "switch current" {
    run = function(ctx)
      local p = ctx.params
      local cur = try(fs.stat, p.deploy_to .. "/current")
      ctx.state.previous = cur and cur.target or nil
      fs.symlink(ctx.state.release, p.deploy_to .. "/current")
      ctx.log("current -> %s (was %s)", ctx.state.release, ctx.state.previous or "nothing")
    end,
  },

  step "health check" {
    retries = 1,
    run = function(ctx)
      if ctx.dry_run then return end -- the release does not exist yet
      -- a non-zero exit fails the step, naming the command, its code and stderr
      sh.run { argv = { "sh", "-c", ctx.params.health }, cwd = ctx.params.deploy_to .. "/current",
        readonly = true, timeout = 60 }
    end,
  },

  step "clean up old releases" {
    run = function(ctx)
      local p = ctx.params
      local releases = try(fs.list, p.deploy_to .. "/releases") or {}
      local current = ctx.state.release:match("[^/]+$")
      if ctx.dry_run and not fs.exists(ctx.state.release) then releases[#releases + 1] = current end
      table.sort(releases)
      local excess = #releases - p.keep
      for _, name in ipairs(releases) do
        if excess <= 0 then break end
        if name ~= current then
          fs.remove(p.deploy_to .. "/releases/" .. name, { recursive = true })
          ctx.log("removed old release %s", name)
          excess = excess - 1
        end
      end
    end,
  },
}
