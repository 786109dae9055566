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
--   local certs = G.certs(d)            -- certs.ca, certs.cert, certs.key, certs.other_ca (openssl)
--   local tls = G.http(d, "x-access-token", "s3cret", certs)  -- the same over https://
--   local ssh, why = G.sshd(d)          -- sshd on loopback; nil, why when it cannot start
--   ... ssh.url .. remote ...           -- ssh://USER@127.0.0.1:PORT + an absolute path
--   ssh.key, ssh.home                   -- an authorized key; a HOME whose known_hosts has sshd
--   local agent = G.ssh_agent(d, ssh.key) -- agent.sock; agent:stop()
local sh = require "relish.sh"
local support = require "support"
local task = require "relish.task"

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
  return sh.run { argv = argv, env = M.env(), timeout = 120, check = false }
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
    "import socket, sys\ntry:\n  socket.create_connection(('127.0.0.1', %d), 1).close()\nexcept OSError:\n  sys.exit(1)", port) },
    check = false }
  return r and r.code == 0
end

local Daemon = {}
Daemon.__index = Daemon

-- Stops the daemon (idempotent); waits until it is gone.
function Daemon:stop()
  if not self.pid then return end
  local pid = self.pid
  self.pid = nil
  sh.run { argv = { "kill", tostring(pid) }, check = false }
  for _ = 1, 100 do
    if sh.run { argv = { "kill", "-0", tostring(pid) }, check = false }.code ~= 0 then return end
    task.sleep(0.05)
  end
  sh.run { argv = { "kill", "-9", tostring(pid) }, check = false }
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
      if pid and sh.run { argv = { "kill", "-0", tostring(pid) }, check = false }.code ~= 0 then break end -- lost the port race
      task.sleep(0.05)
    end
    if pid then setmetatable({ pid = pid }, Daemon):stop() end
  end
  error("git daemon did not start on a free port", 2)
end

local FIXTURES = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/../fixtures"

-- certs(dir) -> { ca =, cert =, key =, other_ca = }: PEM files made by openssl
-- in dir/certs: a CA, a server certificate it signed for 127.0.0.1 and
-- localhost (and its key), and an unrelated CA that signed nothing here.
function M.certs(dir)
  local d = dir .. "/certs"
  os.execute("mkdir -p '" .. d .. "'")
  local key = { "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes" }
  local function openssl(...)
    local argv = { "openssl", ... }
    local r = assert(sh.run { argv = argv, cwd = d, env = M.env(), timeout = 60 })
    assert(r.code == 0, "openssl " .. argv[2] .. ": " .. r.stderr)
  end
  for name, cn in pairs { ca = "relish git test CA", ["other-ca"] = "unrelated CA" } do
    openssl("req", "-x509", key[1], key[2], key[3], key[4], key[5], "-keyout", name .. ".key", "-out", name .. ".pem",
      "-days", "2", "-subj", "/CN=" .. cn, "-addext", "basicConstraints=critical,CA:TRUE",
      "-addext", "keyUsage=critical,keyCertSign,cRLSign")
  end
  openssl("req", key[1], key[2], key[3], key[4], key[5], "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1")
  -- mbedTLS 2.x (Debian's libgit2) matches the host only against DNS names
  -- and the CN, never an IP address entry: 127.0.0.1 is also a DNS name here
  write(d .. "/server.ext", "subjectAltName=DNS:127.0.0.1,DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n")
  openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
    "-out", "server.pem", "-days", "2", "-extfile", "server.ext")
  return { ca = d .. "/ca.pem", cert = d .. "/server.pem", key = d .. "/server.key", other_ca = d .. "/other-ca.pem" }
end

-- http(base, user, password[, certs]) -> { url = "http://127.0.0.1:PORT/", port =,
-- pid =, log =, stop = }: git's smart HTTP (git http-backend) for every
-- repository under base, behind Basic authentication; log is the file of
-- requests. With certs (from M.certs: cert= and key=) it serves TLS only and
-- url is https://127.0.0.1:PORT/.
function M.http(base, user, password, certs)
  local portfile, log = base .. "/.git-http.port", base .. "/.git-http.log"
  os.remove(portfile)
  local r = assert(sh.run { argv = { "sh", "-c", 'setsid -f python3 "$@" </dev/null >/dev/null 2>>"$LOG"',
    "sh", FIXTURES .. "/git_http.py", base, portfile, user, password, certs and certs.cert or nil,
    certs and certs.key or nil }, env = M.env { LOG = log }, timeout = 30 })
  assert(r.code == 0, "git http server: " .. r.stderr)
  for _ = 1, 200 do
    local port, pid = (M.read(portfile) or ""):match("^(%d+) (%d+)$")
    if port then
      return setmetatable({ url = string.format("%s://127.0.0.1:%s/", certs and "https" or "http", port), port = tonumber(port),
        pid = tonumber(pid), log = log }, Daemon)
    end
    task.sleep(0.05)
  end
  error("the git http server did not start: " .. (M.read(log) or ""), 2)
end

local function run(argv, env)
  return sh.run { argv = argv, env = env or M.env(), timeout = 60, check = false }
end

-- keygen(path, passphrase) -> path: an ed25519 key pair (path and path.pub)
function M.keygen(path, passphrase)
  local r = run { "ssh-keygen", "-q", "-t", "ed25519", "-N", passphrase or "", "-C", "relish-test", "-f", path }
  assert(r.code == 0, "ssh-keygen: " .. r.stderr)
  return path
end

-- sshd(base, {keys = {extra authorized key paths}}) -> { url = "ssh://USER@127.0.0.1:PORT",
-- port =, pid =, key = an authorized private key, home = a HOME whose
-- .ssh/known_hosts holds the server's host key, log =, stop = } | nil, why:
-- OpenSSH's sshd (Debian package openssh-server) on a loopback port with
-- everything under base/.sshd, public keys only. nil, why when it cannot run.
function M.sshd(base, opts)
  opts = opts or {}
  local sshd = "/usr/sbin/sshd"
  if not io.open(sshd, "r") then return nil, sshd .. " is missing (Debian package openssh-server)" end
  local dir = base .. "/.sshd"
  os.execute("mkdir -p '" .. dir .. "/home/.ssh'")
  if run { "mkdir", "-p", "/run/sshd" }.code ~= 0 then
    return nil, "sshd needs /run/sshd, which cannot be made here"
  end
  local user = run { "id", "-un" }.stdout:gsub("%s+$", "")
  M.keygen(dir .. "/host_ed25519")
  local key = M.keygen(dir .. "/client_ed25519")
  local authorized = { M.read(key .. ".pub") }
  for _, k in ipairs(opts.keys or {}) do authorized[#authorized + 1] = M.read(k .. ".pub") end
  write(dir .. "/authorized_keys", table.concat(authorized))
  local pidfile, log, config = dir .. "/sshd.pid", dir .. "/sshd.log", dir .. "/sshd_config"
  local hostpub = M.read(dir .. "/host_ed25519.pub"):match("^(%S+ %S+)")
  local why
  for _ = 1, 5 do
    local port = M.free_port()
    os.remove(pidfile)
    write(config, table.concat({
      "ListenAddress 127.0.0.1", "Port " .. port, "HostKey " .. dir .. "/host_ed25519",
      "PidFile " .. pidfile, "AuthorizedKeysFile " .. dir .. "/authorized_keys",
      "PermitRootLogin prohibit-password", "PasswordAuthentication no",
      "KbdInteractiveAuthentication no", "StrictModes no", "UsePAM no", "LogLevel VERBOSE", "",
    }, "\n"))
    local r = run { sshd, "-t", "-f", config }
    if r.code ~= 0 then return nil, "sshd -t refuses the test config: " .. r.stderr end
    r = run { "sh", "-c", 'setsid -f "$1" -D -e -f "$2" </dev/null >/dev/null 2>>"$3"', "sh", sshd, config, log }
    if r.code ~= 0 then return nil, "sshd did not start: " .. r.stderr end
    local pid
    for _ = 1, 100 do
      pid = pid or tonumber((M.read(pidfile) or ""):match("%d+"))
      if pid and port_open(port) then
        write(dir .. "/home/.ssh/known_hosts", string.format("[127.0.0.1]:%d %s\n", port, hostpub))
        return setmetatable({ url = string.format("ssh://%s@127.0.0.1:%d", user, port), port = port, pid = pid,
          key = key, home = dir .. "/home", log = log }, Daemon)
      end
      if pid and run { "kill", "-0", tostring(pid) }.code ~= 0 then break end -- lost the port race
      task.sleep(0.05)
    end
    if pid then setmetatable({ pid = pid }, Daemon):stop() end
    why = "sshd did not listen: " .. (M.read(log) or "")
  end
  return nil, why
end

-- ssh_agent(base, key...) -> { sock =, pid =, stop = }: an ssh-agent on a socket
-- under base holding the keys (no passphrase)
function M.ssh_agent(base, ...)
  local sock = base .. "/.ssh-agent.sock"
  os.remove(sock)
  local r = run { "ssh-agent", "-s", "-a", sock }
  assert(r.code == 0, "ssh-agent: " .. r.stderr)
  local agent = setmetatable({ sock = sock, pid = tonumber(r.stdout:match("SSH_AGENT_PID=(%d+)")) }, Daemon)
  for _, key in ipairs { ... } do
    r = run({ "ssh-add", "-q", key }, M.env { SSH_AUTH_SOCK = sock })
    if r.code ~= 0 then
      agent:stop()
      error("ssh-add " .. key .. ": " .. r.stderr, 2)
    end
  end
  return agent
end

return M
