-- relish.testing's fixtures for the systems recipes drive: an HTTP stub
-- (routes given by the test, every request recorded), a Git repository with
-- a bare remote, and the Kubernetes API double. Each is removed (servers
-- stopped, directories deleted) when the test ends; servers also stop when
-- the test process dies (they watch its pid).
local sh = require "relish.sh"
local host = require "relish._host"
local json = require "relish.json"
local task = require "relish.task"
local cleanup = require "relish.testing.cleanup"

local M = {}

local proc = require "relish.testing.proc"
local read, write, stop_pid = proc.read, proc.write, proc.stop

-- ---- http_stub ---------------------------------------------------------------

-- The stub server (python3, standard library only): answers each "METHOD
-- /path" from routes.json (the path without its query), 404 otherwise, and
-- appends every request to requests.jsonl before answering.
local STUB = [=[
import json, os, sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit
d, parent = sys.argv[1], int(sys.argv[2])
routes = json.load(open(os.path.join(d, "routes.json")))
lock = threading.Lock()
class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a): pass
    def handle_any(self):
        n = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(n) if n else b""
        u = urlsplit(self.path)
        rec = {"method": self.command, "path": u.path, "query": u.query,
               "headers": {k.lower(): v for k, v in self.headers.items()},
               "body": body.decode("utf-8", "replace")}
        with lock:
            with open(os.path.join(d, "requests.jsonl"), "a") as f:
                f.write(json.dumps(rec) + "\n")
        r = routes.get(self.command + " " + u.path)
        if r is None:
            r = {"status": 404, "body": "no stub route for %s %s\n" % (self.command, u.path)}
        headers = dict(r.get("headers") or {})
        if "json" in r:
            out = r["json"].encode()
            headers.setdefault("content-type", "application/json")
        else:
            out = (r.get("body") or "").encode()
        self.send_response(int(r.get("status") or 200))
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)
    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = handle_any
srv = ThreadingHTTPServer(("127.0.0.1", 0), H)
srv.daemon_threads = True
def watch():
    while True:
        try:
            os.kill(parent, 0)
        except OSError:
            os._exit(0)
        time.sleep(0.5)
threading.Thread(target=watch, daemon=True).start()
with open(os.path.join(d, "port.tmp"), "w") as f:
    f.write("%d %d" % (srv.server_address[1], os.getpid()))
os.rename(os.path.join(d, "port.tmp"), os.path.join(d, "port"))
srv.serve_forever()
]=]

local Stub = {}

function Stub.__index(self, k)
  if k == "requests" then
    local out = {}
    for line in (read(rawget(self, "dir") .. "/requests.jsonl") or ""):gmatch("[^\n]+") do
      out[#out + 1] = json.decode(line)
    end
    return out
  end
  return Stub[k]
end

function Stub:close()
  local pid = rawget(self, "pid")
  if not pid then return end
  self.pid = nil
  stop_pid(pid)
  host.rmtree(self.dir)
end

Stub.__close = Stub.close

local function check_routes(routes)
  if type(routes) ~= "table" then error("testing.http_stub: routes: expected a table, got " .. type(routes), 3) end
  local out = {}
  for k, r in pairs(routes) do
    if type(k) ~= "string" or not k:match("^%u+ /") then
      error(string.format("testing.http_stub: route %s: expected \"METHOD /path\"", tostring(k)), 3)
    end
    if type(r) ~= "table" then error(string.format("testing.http_stub: route %q: expected a table", k), 3) end
    local x = { status = r.status or 200, headers = r.headers or {}, body = r.body }
    if r.json ~= nil then x.json = json.encode(r.json) end
    if x.body ~= nil and type(x.body) ~= "string" then
      error(string.format("testing.http_stub: route %q: body: expected a string, got %s", k, type(x.body)), 3)
    end
    out[k] = x
  end
  return out
end

-- http_stub{routes = {["GET /x"] = {status=, json=|body=, headers=}}} -> stub:
-- .url ("http://127.0.0.1:PORT"), .requests (each {method=, path=, query=,
-- headers= (lower-case names), body=}, in arrival order), :close()
function M.http_stub(spec)
  spec = spec or {}
  if type(spec) ~= "table" then error("testing.http_stub: expected a table, got " .. type(spec), 2) end
  local routes = check_routes(spec.routes or {})
  local dir = assert(host.mkdtemp("relish-stub"))
  write(dir .. "/routes.json", next(routes) and json.encode(routes) or "{}")
  write(dir .. "/stub.py", STUB)
  sh.run { readonly = true, argv = { "sh", "-c", 'python3 "$0/stub.py" "$0" "$1" >"$0/server.log" 2>&1 &',
    dir, tostring(host.getpid()) } }
  local text, log = proc.await(dir, "port", 10)
  local port, pid
  if text then port, pid = text:match("^(%d+) (%d+)$") end
  if not port then
    if text then -- not what the stub writes: it did not start right
      log = read(dir .. "/server.log") or ""
      host.rmtree(dir)
    end
    error("testing.http_stub: the stub server did not start (is python3 installed?)\n" .. log, 2)
  end
  local stub = setmetatable({ dir = dir, pid = tonumber(pid), port = tonumber(port),
    url = "http://127.0.0.1:" .. port }, Stub)
  cleanup.add(function() stub:close() end)
  return stub
end

-- ---- git_repo ----------------------------------------------------------------

-- The git CLI runs isolated: no system or global config, no prompts.
local GIT_ENV = { GIT_CONFIG_NOSYSTEM = "1", GIT_CONFIG_GLOBAL = "/dev/null", GIT_TERMINAL_PROMPT = "0",
  GIT_AUTHOR_NAME = "Relish Tests", GIT_AUTHOR_EMAIL = "tests@example.test",
  GIT_COMMITTER_NAME = "Relish Tests", GIT_COMMITTER_EMAIL = "tests@example.test", LC_ALL = "C", TZ = "UTC" }

local function git(dir, ...)
  local r = sh.run { argv = { "git", "-C", dir, ... }, env = GIT_ENV, readonly = true, check = false, timeout = 60 }
  if r.code ~= 0 then
    error(string.format("testing.git_repo: git %s: %s", table.concat({ ... }, " "), r.stderr .. r.stdout), 3)
  end
  return (r.stdout:gsub("\n$", ""))
end

local Repo = {}
Repo.__index = Repo

-- repo:git(args...) -> the git CLI's output (raises when git fails)
function Repo:git(...) return git(self.path, ...) end

-- repo:remote_git(args...) -> the same in the bare remote
function Repo:remote_git(...) return git(self.remote, ...) end

-- repo:tags([in_remote]) -> the sorted tag names of the work tree (or the remote)
function Repo:tags(in_remote)
  local out = {}
  for t in git(in_remote and self.remote or self.path, "tag", "--list"):gmatch("[^\n]+") do out[#out + 1] = t end
  table.sort(out)
  return out
end

local function commit_files(path, files, message)
  local names = {}
  for name, text in pairs(files or {}) do
    if type(name) ~= "string" or type(text) ~= "string" then
      error("testing.git_repo: files: expected path = text (strings)", 4)
    end
    local full = path .. "/" .. name
    local parent = full:match("^(.*)/[^/]*$")
    sh.run { argv = { "mkdir", "-p", parent }, readonly = true }
    write(full, text)
    names[#names + 1] = name
  end
  table.sort(names)
  if #names > 0 then git(path, "add", "--", table.unpack(names)) end
  git(path, "commit", "-q", "--allow-empty", "-m", message)
end

local function tag_all(path, tags)
  for _, t in ipairs(tags or {}) do git(path, "tag", "-a", t, "-m", "Release " .. t) end
end

-- git_repo{files=, message=, tags=, commits={{files=, message=, tags=}}, branch=} -> repo:
-- .path (the work tree), .remote (its bare remote "origin", everything
-- pushed), .url ("file://" .. remote), .branch, :git(...), :remote_git(...), :tags()
function M.git_repo(spec)
  spec = spec or {}
  if type(spec) ~= "table" then error("testing.git_repo: expected a table, got " .. type(spec), 2) end
  local root = assert(host.mkdtemp("relish-git"))
  cleanup.add(function() host.rmtree(root) end)
  local branch = spec.branch or "main"
  local path, remote = root .. "/work", root .. "/remote.git"
  git(root, "init", "-q", "--bare", "-b", branch, remote)
  git(root, "init", "-q", "-b", branch, path)
  git(path, "config", "user.name", GIT_ENV.GIT_AUTHOR_NAME)
  git(path, "config", "user.email", GIT_ENV.GIT_AUTHOR_EMAIL)
  git(path, "remote", "add", "origin", remote)
  commit_files(path, spec.files or { ["README.md"] = "# project\n" }, spec.message or "feat: first commit")
  tag_all(path, spec.tags)
  for _, c in ipairs(spec.commits or {}) do
    commit_files(path, c.files, c.message or "chore: a change")
    tag_all(path, c.tags)
  end
  git(path, "push", "-q", "--follow-tags", "origin", branch)
  git(path, "push", "-q", "--tags", "origin")
  git(path, "branch", "-q", "--set-upstream-to", "origin/" .. branch)
  return setmetatable({ path = path, remote = remote, url = "file://" .. remote, branch = branch, root = root }, Repo)
end

-- ---- k8s ---------------------------------------------------------------------

function M.k8s(opts)
  local double = require "relish.testing.k8s"
  local d = double.start(opts)
  cleanup.add(function() d:stop() end)
  return d
end

return M
