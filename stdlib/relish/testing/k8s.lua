-- The Kubernetes API double (tests/fixtures/k8s_api.py) for tests, as
-- relish.testing.k8s{} starts it (and relish's own tests/lua/k8s_fixture.lua):
--   local k8s <close> = require("relish.testing.k8s").start { time_scale = 0.01 }
--   k8s:kubectl { "get", "pods" }                -- the machine's kubectl
--   k8s:api("GET", "/api/v1/namespaces/default/pods") -> response
--   k8s:control("POST", "/images", { ["*:bad"] = { state = "CrashLoopBackOff" } })
-- It listens on a port the kernel picks, with a CA, certificates and
-- kubeconfigs made in its own directory, and is stopped when the test ends
-- (the <close>), or when this process dies (it watches our pid).
local sh = require "relish.sh"
local host = require "relish._host"
local http = require "relish.http"
local json = require "relish.json"
local task = require "relish.task"

local M = {}

local proc = require "relish.testing.proc"
local read = proc.read

-- The double's script (tests/fixtures/k8s_api.py in relish's source tree;
-- it does not ship inside the binary): opts.script, $RELISH_K8S_DOUBLE, or
-- found from the current directory or the relish binary upwards.
function M.script(opts)
  if opts and opts.script then return opts.script end
  local env = os.getenv("RELISH_K8S_DOUBLE")
  if env and env ~= "" then return env end
  local starts = { host.realpath(".") or ".", (host.exe():match("^(.*)/[^/]*$")) }
  for _, dir in ipairs(starts) do
    while dir and dir ~= "" do
      local p = dir .. "/tests/fixtures/k8s_api.py"
      if read(p) then return host.realpath(p) end
      dir = dir:match("^(.*)/[^/]*$")
    end
  end
  return nil
end

local Double = {}
Double.__index = Double

-- start{time_scale=} -> the double: .server (its URL), .ca, .token,
-- .client_cert, .client_key, .kubeconfig (token user), .kubeconfig_cert
-- (client-certificate user), .dir
function M.start(opts)
  opts = opts or {}
  local SERVER = M.script(opts)
  if not SERVER then
    error("the Kubernetes API double's script (tests/fixtures/k8s_api.py) was not found: set RELISH_K8S_DOUBLE", 2)
  end
  local dir = assert(host.mkdtemp("relish-k8s"))
  sh.run { readonly = true, argv = { "sh", "-c",
    'python3 "$0" --dir "$1" --parent "$2" --time-scale "$3" >"$1/server.log" 2>&1 &',
    SERVER, dir, tostring(host.getpid()), tostring(opts.time_scale or 1) } }
  local text, log = proc.await(dir, "k8s.json")
  if not text then error("the Kubernetes API double did not start:\n" .. log, 2) end
  local info = json.decode(text)
  info.dir = dir
  info.metrics_target = info.metrics_port and ("127.0.0.1:" .. info.metrics_port)
  return setmetatable(info, Double)
end

-- api(method, path [, {json=, body=, headers=, query=, token=, cert=, basic=, stream=, timeout=}])
-- -> the response. Authenticated with the token unless token = false (then
-- with the client certificate when cert = true, with basic = {user=,
-- password=}, else anonymously).
function Double:api(method, path, opts)
  opts = opts or {}
  local req = { method = method, url = self.server .. path, ca = self.ca, retries = 0, effect = false,
    timeout = opts.timeout or 30, json = opts.json, body = opts.body, query = opts.query,
    headers = opts.headers, stream = opts.stream }
  if opts.token ~= false then
    req.auth = { bearer = opts.token or self.token }
  elseif opts.cert then
    req.cert, req.key = self.client_cert, self.client_key
  elseif opts.basic then
    req.auth = opts.basic
  end
  return http.request(req)
end

-- json(method, path [, options as for api]) -> status, the body decoded
-- (nil when it is not JSON), the response
function Double:json(method, path, opts)
  local r = self:api(method, path, opts)
  local ok, body = pcall(json.decode, r.body)
  return r.status, ok and body or nil, r
end

-- get(path) -> the decoded body of a GET that must answer 200
function Double:get(path)
  local status, body, r = self:json("GET", path)
  if status ~= 200 then error("GET " .. path .. ": " .. status .. " " .. r.body, 2) end
  return body
end

-- pods([selector]) -> the pods of the default namespace (matching the label selector)
function Double:pods(selector)
  return self:get("/api/v1/namespaces/default/pods?labelSelector=" .. (selector or "")).items
end

-- requests(pred) -> the requests the double logged (control ones aside) for which pred(r) holds:
-- {method, path, query, verb, status, user, accept, content_type, user_agent, body, time, elapsed}
function Double:requests(pred)
  local out = {}
  for _, r in ipairs(self:control("GET", "/requests")) do
    if pred(r) then out[#out + 1] = r end
  end
  return out
end

-- control(method, path [, value]) -> the decoded answer of /_control/PATH
function Double:control(method, path, value)
  local r = http.request { method = method, url = self.server .. "/_control" .. path, ca = self.ca,
    json = value, retries = 0, effect = false, timeout = 30 }
  assert(r.status == 200, "k8s double control " .. path .. ": " .. r.status .. " " .. r.body)
  return json.decode(r.body)
end

-- traffic([config]) -> GET /_control/traffic (the routers' targets and
-- counters), after a POST of config ({targets = {...}}) when given
function Double:traffic(config)
  if config then return self:control("POST", "/traffic", config) end
  return self:control("GET", "/traffic")
end

-- metrics() -> the text of /metrics, on the double's plain-HTTP metrics
-- listener (self.metrics_url; self.metrics_target = "127.0.0.1:PORT" for
-- a Prometheus scrape configuration)
function Double:metrics()
  local r = http.request { url = self.metrics_url, retries = 0, effect = false, timeout = 30 }
  assert(r.status == 200, "k8s double /metrics: " .. r.status .. " " .. r.body)
  return r.body
end

-- kubectl(args [, {cert=, kubeconfig=, input=, timeout=}]) -> the result
-- of sh.run (never raises for the exit code). Each double has its own HOME
-- and KUBECACHEDIR, so no discovery cache is shared.
function Double:kubectl(args, opts)
  opts = opts or {}
  local argv = { "kubectl", "--kubeconfig", opts.kubeconfig or (opts.cert and self.kubeconfig_cert or self.kubeconfig) }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  return sh.run { argv = argv, readonly = true, check = false, input = opts.input, timeout = opts.timeout or 120,
    env = { HOME = self.dir .. "/home", KUBECACHEDIR = self.dir .. "/cache", KUBECONFIG = false } }
end

function Double:stop()
  if not self.pid then return end
  proc.stop(self.pid)
  self.pid = nil
  host.rmtree(self.dir)
end

Double.__close = Double.stop

-- Whether the double can run (python3 and openssl are installed), and
-- kubectl too when with_kubectl: the tests skip otherwise.
function M.available(with_kubectl)
  return sh.which("python3") ~= nil and sh.which("openssl") ~= nil and (not with_kubectl or sh.which("kubectl") ~= nil)
end

return M
