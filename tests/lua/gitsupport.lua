-- Git fixtures for the tests: repositories and bare remotes made with the git
-- CLI in temporary directories, a git daemon on a loopback port, and reads of
-- what the CLI sees (refs, objects, fsck). The git CLI runs isolated: its own
-- HOME, no system config, fixed identities, no prompts.
--
--   local G = require "gitsupport"
--   local d = tmpdir()
--   local remote = G.bare(d, "remote.git")
--   local work = G.repo(d, "work", { files = { ["a.txt"] = "a\n" }, remote = remote })
--   G.git(work, "push", "-q", "origin", "main")
--   local daemon = G.daemon(d)          -- serves every repository under d
--   ... daemon.url .. "remote.git" ...  -- git://127.0.0.1:PORT/remote.git
--   daemon:stop()                       -- also in after_each: stop is idempotent
--   local web = G.http(d, "x-access-token", "s3cret")  -- smart HTTP with Basic auth
--   ... web.url .. "remote.git" ...     -- http://127.0.0.1:PORT/remote.git; web:stop()
local sh = require "relish.sh"
local support = require "support"

local M = {}

M.AUTHOR = { name = "Ada Tester", email = "ada@example.test" }
M.COMMITTER = { name = "Relish Tests", email = "tests@example.test" }

-- Environment for the git CLI (and for relish subprocesses, so libgit2 sees
-- the same isolation): a HOME that does not exist, no system or global config,
-- fixed identities, UTC. extra adds or overrides variables.
function M.env(extra)
  local env = {
    HOME = "/nonexistent/relish-git-home", XDG_CONFIG_HOME = "/nonexistent/relish-git-home",
    GIT_CONFIG_NOSYSTEM = "1", GIT_CONFIG_GLOBAL = "/dev/null",
    GIT_AUTHOR_NAME = M.AUTHOR.name, GIT_AUTHOR_EMAIL = M.AUTHOR.email,
    GIT_COMMITTER_NAME = M.COMMITTER.name, GIT_COMMITTER_EMAIL = M.COMMITTER.email,
    GIT_TERMINAL_PROMPT = "0", GIT_ASKPASS = "/bin/false", SSH_ASKPASS = "/bin/false",
    LC_ALL = "C", TZ = "UTC",
  }
  for k, v in pairs(extra or {}) do env[k] = v end
  return env
end

local function parent(path)
  return path:match("^(.*)/[^/]+/?$") or "."
end

-- try(dir, args...) -> sh.run result of `git -C dir args...` (no assertion)
function M.try(dir, ...)
  local argv = { "git", "-C", dir, ... }
  return assert(sh.run { argv = argv, env = M.env(), timeout = 120 })
end

-- git(dir, args...) -> stdout without its final newline; raises on failure
function M.git(dir, ...)
  local r = M.try(dir, ...)
  if r.code ~= 0 then
    error(string.format("git %s (in %s) failed (%s): %s", table.concat({ ... }, " "), dir,
      tostring(r.code or r.signal), r.stderr), 2)
  end
  return (r.stdout:gsub("\n$", ""))
end

-- write(path, content), making the directories it needs
local function write(path, content)
  os.execute("mkdir -p '" .. parent(path) .. "'")
  support.write(path, content)
end
M.write = write

M.read = support.read

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- commit(dir, files, message) -> id: writes files ({path = content}; false
-- removes), stages everything and commits with the CLI
function M.commit(dir, files, message)
  for _, p in ipairs(sorted_keys(files or {})) do
    local content = files[p]
    if content == false then
      M.git(dir, "rm", "-q", "--", p)
    else
      write(dir .. "/" .. p, content)
    end
  end
  M.git(dir, "add", "-A")
  M.git(dir, "commit", "-q", "--allow-empty", "-m", message or "change")
  return M.git(dir, "rev-parse", "HEAD")
end

-- repo(base, name, {files=, message=, branch="main", remote=, empty=}) -> path:
-- a work repository with one commit (files, default README.md) on branch, and
-- the identity in its local config (so libgit2 in the test process uses it).
-- remote: URL or path of a remote named origin.
function M.repo(base, name, opts)
  opts = opts or {}
  local path = base .. "/" .. name
  assert(sh.run { argv = { "git", "init", "-q", "-b", opts.branch or "main", path }, env = M.env() }.code == 0)
  M.git(path, "config", "user.name", M.COMMITTER.name)
  M.git(path, "config", "user.email", M.COMMITTER.email)
  if opts.remote then M.git(path, "remote", "add", "origin", opts.remote) end
  if not opts.empty then
    M.commit(path, opts.files or { ["README.md"] = "# " .. name .. "\n" }, opts.message or "initial")
  end
  return path
end

-- bare(base, name, {branch="main"}) -> path of a new bare repository that
-- accepts pushes of any kind (the daemon and file:// pushes)
function M.bare(base, name, opts)
  opts = opts or {}
  local path = base .. "/" .. name
  assert(sh.run { argv = { "git", "init", "-q", "--bare", "-b", opts.branch or "main", path }, env = M.env() }.code == 0)
  M.git(path, "config", "receive.denyNonFastForwards", "false")
  return path
end

-- clone(url, path) -> path, cloned with the CLI
function M.clone(url, path)
  local r = assert(sh.run { argv = { "git", "clone", "-q", url, path }, env = M.env(), timeout = 120 })
  if r.code ~= 0 then error("git clone " .. url .. " failed: " .. r.stderr, 2) end
  M.git(path, "config", "user.name", M.COMMITTER.name)
  M.git(path, "config", "user.email", M.COMMITTER.email)
  return path
end

-- rev(dir, rev) -> full id, or nil when it does not resolve
function M.rev(dir, rev)
  local r = M.try(dir, "rev-parse", "-q", "--verify", rev .. "^{}")
  if r.code ~= 0 then return nil end
  return (r.stdout:gsub("%s+$", ""))
end

-- refs(dir) -> { ["refs/heads/main"] = id, ["refs/tags/v1"] = id of the ref itself, ... }
function M.refs(dir, prefix)
  local out = {}
  local text = M.git(dir, "for-each-ref", "--format=%(refname) %(objectname)", prefix)
  for name, id in text:gmatch("(%S+) (%x+)") do out[name] = id end
  return out
end

-- objects(dir) -> `git count-objects -v` as a table of numbers
function M.objects(dir)
  local out = {}
  for k, v in M.git(dir, "count-objects", "-v"):gmatch("([%w-]+): (%d+)") do out[k] = tonumber(v) end
  return out
end

-- fsck(dir) -> true | false, output: `git fsck --strict --no-dangling`
function M.fsck(dir)
  local r = M.try(dir, "fsck", "--strict", "--no-dangling", "--no-progress")
  return r.code == 0, r.stdout .. r.stderr
end

-- free_port() -> a TCP port on 127.0.0.1 that nobody listens on right now
function M.free_port()
  local r = assert(sh.run { argv = { "python3", "-c",
    "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1]); s.close()" } })
  assert(r.code == 0, r.stderr)
  return tonumber(r.stdout:match("%d+"))
end

local function port_open(port)
  local r = sh.run { argv = { "python3", "-c", string.format(
    "import socket, sys\ntry:\n  socket.create_connection(('127.0.0.1', %d), 1).close()\nexcept OSError:\n  sys.exit(1)", port) } }
  return r and r.code == 0
end

local Daemon = {}
Daemon.__index = Daemon

-- Stops the daemon (idempotent); waits until it is gone.
function Daemon:stop()
  if not self.pid then return end
  local pid = self.pid
  self.pid = nil
  sh.run { argv = { "kill", tostring(pid) } }
  for _ = 1, 100 do
    if sh.run { argv = { "kill", "-0", tostring(pid) } }.code ~= 0 then return end
    sh.run { argv = { "sleep", "0.05" } }
  end
  sh.run { argv = { "kill", "-9", tostring(pid) } }
end

-- daemon(base) -> { url = "git://127.0.0.1:PORT/", port =, pid =, stop = } serving
-- every repository under base (read and push: --enable=receive-pack).
function M.daemon(base)
  local pidfile = base .. "/.git-daemon.pid"
  for _ = 1, 5 do
    local port = M.free_port()
    os.remove(pidfile)
    local r = assert(sh.run { argv = { "git", "daemon", "--enable=receive-pack", "--base-path=" .. base,
      "--export-all", "--reuseaddr", "--listen=127.0.0.1", "--port=" .. port, "--detach",
      "--pid-file=" .. pidfile, base }, env = M.env(), timeout = 30 })
    assert(r.code == 0, "git daemon: " .. r.stderr)
    local pid
    for _ = 1, 100 do
      pid = pid or tonumber((M.read(pidfile) or ""):match("%d+"))
      if pid and port_open(port) then
        return setmetatable({ url = string.format("git://127.0.0.1:%d/", port), port = port, pid = pid }, Daemon)
      end
      if pid and sh.run { argv = { "kill", "-0", tostring(pid) } }.code ~= 0 then break end -- lost the port race
      sh.run { argv = { "sleep", "0.05" } }
    end
    if pid then setmetatable({ pid = pid }, Daemon):stop() end
  end
  error("git daemon did not start on a free port", 2)
end

local FIXTURES = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/../fixtures"

-- http(base, user, password) -> { url = "http://127.0.0.1:PORT/", port =, pid =,
-- log =, stop = }: git's smart HTTP (git http-backend) for every repository
-- under base, behind Basic authentication; log is the file of requests.
function M.http(base, user, password)
  local portfile, log = base .. "/.git-http.port", base .. "/.git-http.log"
  os.remove(portfile)
  local r = assert(sh.run { argv = { "sh", "-c", 'setsid -f python3 "$1" "$2" "$3" "$4" "$5" </dev/null >/dev/null 2>>"$6"',
    "sh", FIXTURES .. "/git_http.py", base, portfile, user, password, log }, env = M.env(), timeout = 30 })
  assert(r.code == 0, "git http server: " .. r.stderr)
  for _ = 1, 200 do
    local port, pid = (M.read(portfile) or ""):match("^(%d+) (%d+)$")
    if port then
      return setmetatable({ url = string.format("http://127.0.0.1:%s/", port), port = tonumber(port),
        pid = tonumber(pid), log = log }, Daemon)
    end
    sh.run { argv = { "sleep", "0.05" } }
  end
  error("the git http server did not start: " .. (M.read(log) or ""), 2)
end

return M
