-- relish.k8s.config: which cluster a connection talks to and as whom, decided
-- as kubectl decides it (../shared/notes/kubernetes.md, "kubeconfig").
--
--   resolve({kubeconfig=, context=, namespace=} [, getenv]) -> cfg
--   cfg:credentials([refresh]) -> {auth=, cert=, key=}  (http options)
--
-- cfg holds server, namespace, ca, insecure, tls_server_name, proxy and where
-- each came from; every credential (token, password, key, exec output) is a
-- secret from the moment it is read. A bad kubeconfig raises kind `config`
-- naming the file and the field.
local yaml = require "relish.yaml"
local json = require "relish.json"
local secret = require "relish.secret"
local output = require "relish.output"
local E = require "relish._errors"

local M = {}

local SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
local EXEC_VERSIONS = { ["client.authentication.k8s.io/v1"] = true, ["client.authentication.k8s.io/v1beta1"] = true }

local function fail(fmt, ...) error(E.value("config", fmt, ...), 0) end

local function read_file(path)
  local fh, err = io.open(path, "rb")
  if not fh then return nil, err end
  local s = fh:read("a")
  fh:close()
  if not s then return nil, path .. ": cannot read" end
  return s
end

local function dir_of(path) return path:match("^(.*)/[^/]*$") or "." end

local function absolute(path, base)
  if path:sub(1, 1) == "/" then return path end
  return base .. "/" .. path
end

-- ---- loading and merging ---------------------------------------------------

-- one named entry of a kubeconfig list: where it was defined, for messages
-- and for relative paths
local function entries(doc, file, list, field, into)
  local items = doc[list]
  if items == nil or items == json.null then return end
  if type(items) ~= "table" then fail("%s: %s must be a list", file, list) end
  for i, item in ipairs(items) do
    local where = string.format("%s: %s[%d]", file, list, i - 1)
    if type(item) ~= "table" or type(item.name) ~= "string" or item.name == "" then
      fail("%s: needs a name", where)
    end
    local body = item[field]
    if body == nil or body == json.null then body = {} end
    if type(body) ~= "table" then fail("%s (%s).%s must be a mapping", where, item.name, field) end
    if not into[item.name] then -- the first file that defines a name wins the whole entry
      into[item.name] = { body = body, file = file, dir = dir_of(file),
        where = string.format("%s (%s).%s", where, item.name, field) }
    end
  end
end

local function load_files(files, explicit)
  local merged = { clusters = {}, users = {}, contexts = {}, files = {} }
  for _, file in ipairs(files) do
    local text, err = read_file(file)
    if not text then
      if explicit then fail("kubeconfig %s: %s", file, tostring(err)) end
    else
      local ok, doc = pcall(yaml.decode, text)
      if not ok then fail("kubeconfig %s: %s", file, tostring(doc)) end
      if doc == json.null or doc == nil then doc = {} end
      if type(doc) ~= "table" then fail("kubeconfig %s: not a mapping", file) end
      merged.files[#merged.files + 1] = file
      entries(doc, file, "clusters", "cluster", merged.clusters)
      entries(doc, file, "users", "user", merged.users)
      entries(doc, file, "contexts", "context", merged.contexts)
      local cc = doc["current-context"]
      if merged.current == nil and type(cc) == "string" and cc ~= "" then
        merged.current, merged.current_file = cc, file
      end
    end
  end
  return merged
end

-- the kubeconfig files to read: the one given, else $KUBECONFIG (a ':' list,
-- missing files skipped), else ~/.kube/config
local function kubeconfig_files(given, getenv)
  if given then return { given }, true end
  local env = getenv("KUBECONFIG")
  if env and env ~= "" then
    local files, seen = {}, {}
    for f in env:gmatch("[^:]+") do
      if not seen[f] then files[#files + 1], seen[f] = f, true end
    end
    return files, false
  end
  local home = getenv("HOME")
  return { (home or "") .. "/.kube/config" }, false
end

-- ---- fields ----------------------------------------------------------------

local function str(entry, key)
  local v = entry.body[key]
  if v == nil or v == json.null or v == "" then return nil end
  if type(v) ~= "string" then fail("%s.%s must be a string", entry.where, key) end
  return v
end

local function bool(entry, key)
  local v = entry.body[key]
  if v == nil or v == json.null then return false end
  if type(v) ~= "boolean" then fail("%s.%s must be true or false", entry.where, key) end
  return v
end

-- a PEM from `key-data` (base64) or else from the file `key`, relative to the
-- kubeconfig that defined the entry; -data wins, as in kubectl
local function pem(entry, key)
  local data = str(entry, key .. "-data")
  if data then
    local bytes = output.unbase64((data:gsub("%s", "")))
    if not bytes then fail("%s.%s-data is not base64", entry.where, key) end
    return bytes, entry.where .. "." .. key .. "-data"
  end
  local path = str(entry, key)
  if not path then return nil end
  path = absolute(path, entry.dir)
  local bytes, err = read_file(path)
  if not bytes then fail("%s.%s: cannot read %s", entry.where, key, tostring(err)) end
  return bytes, path
end

local function exec_spec(entry)
  local e = entry.body.exec
  if e == nil or e == json.null then return nil end
  local where = entry.where .. ".exec"
  if type(e) ~= "table" then fail("%s must be a mapping", where) end
  local function field(k, kind)
    local v = e[k]
    if v == nil or v == json.null then return nil end
    if type(v) ~= kind then fail("%s.%s must be a %s", where, k, kind == "table" and "list" or kind) end
    return v
  end
  local spec = { api_version = field("apiVersion", "string"), command = field("command", "string"),
    args = field("args", "table") or {}, env = {}, where = where,
    provide_cluster_info = field("provideClusterInfo", "boolean") or false,
    interactive_mode = field("interactiveMode", "string") }
  if not spec.command then fail("%s.command is required", where) end
  if not spec.api_version then fail("%s.apiVersion is required", where) end
  if not EXEC_VERSIONS[spec.api_version] then
    fail("%s.apiVersion %s is not supported (client.authentication.k8s.io/v1 or v1beta1)", where, spec.api_version)
  end
  if spec.api_version:match("/v1$") and not spec.interactive_mode then
    fail("%s.interactiveMode is required for %s (Never or IfAvailable)", where, spec.api_version)
  end
  if spec.interactive_mode == "Always" then
    fail("%s.interactiveMode Always needs a person at a terminal; relish runs the plugin without one", where)
  elseif spec.interactive_mode and spec.interactive_mode ~= "Never" and spec.interactive_mode ~= "IfAvailable" then
    fail("%s.interactiveMode must be Never, IfAvailable or Always, got %s", where, spec.interactive_mode)
  end
  -- a command with a slash in it is a path relative to its kubeconfig
  if spec.command:find("/", 1, true) then spec.command = absolute(spec.command, entry.dir) end
  for i, a in ipairs(spec.args) do
    if type(a) ~= "string" then fail("%s.args[%d] must be a string", where, i - 1) end
  end
  for i, kv in ipairs(field("env", "table") or {}) do
    if type(kv) ~= "table" or type(kv.name) ~= "string" or type(kv.value) ~= "string" then
      fail("%s.env[%d] needs a name and a value", where, i - 1)
    end
    spec.env[kv.name] = kv.value
  end
  return spec
end

-- ---- resolving -------------------------------------------------------------

local Config = {}
Config.__index = Config

local function in_cluster(namespace, getenv)
  local host, port = getenv("KUBERNETES_SERVICE_HOST"), getenv("KUBERNETES_SERVICE_PORT")
  if not host or host == "" or not port or port == "" then return nil end
  local dir = getenv("RELISH_K8S_SERVICEACCOUNT") or SA_DIR
  local ca = read_file(dir .. "/ca.crt")
  if not ca then fail("in-cluster config: cannot read %s/ca.crt", dir) end
  if not read_file(dir .. "/token") then fail("in-cluster config: cannot read %s/token", dir) end
  local ns = namespace or (read_file(dir .. "/namespace") or ""):match("^%s*(.-)%s*$")
  if host:find(":", 1, true) then host = "[" .. host .. "]" end
  return setmetatable({ server = "https://" .. host .. ":" .. port, ca = ca, namespace = ns ~= "" and ns or "default",
    token_file = dir .. "/token", source = "in-cluster", context = "in-cluster" }, Config)
end

-- resolve(opts [, getenv]): getenv (os.getenv by default) is where the
-- environment is read, so tests can give one
function M.resolve(opts, getenv)
  opts, getenv = opts or {}, getenv or os.getenv
  local files, explicit = kubeconfig_files(opts.kubeconfig, getenv)
  local merged = load_files(files, explicit)
  if #merged.files == 0 and not opts.context then
    local cfg = in_cluster(opts.namespace, getenv)
    if cfg then return cfg end
    fail("no kubeconfig found (%s) and not running in a cluster (KUBERNETES_SERVICE_HOST is not set)",
      table.concat(files, ":"))
  end
  local name = opts.context or merged.current
  if not name then fail("kubeconfig %s: no current-context; pass context=", table.concat(merged.files, ":")) end
  local ctx = merged.contexts[name]
  if not ctx then fail("kubeconfig %s: context %q does not exist", table.concat(merged.files, ":"), name) end
  local cluster_name, user_name = str(ctx, "cluster"), str(ctx, "user")
  if not cluster_name then fail("%s.cluster is required", ctx.where) end
  local cl = merged.clusters[cluster_name]
  if not cl then fail("%s.cluster: cluster %q does not exist", ctx.where, cluster_name) end
  local server = str(cl, "server")
  if not server then fail("%s.server is required", cl.where) end
  if not server:match("^https?://") then server = "https://" .. server end
  server = server:gsub("/+$", "")

  local cfg = setmetatable({ server = server, context = name, source = ctx.file,
    namespace = opts.namespace or str(ctx, "namespace") or "default",
    insecure = bool(cl, "insecure-skip-tls-verify"), tls_server_name = str(cl, "tls-server-name"),
    proxy = str(cl, "proxy-url") }, Config)
  cfg.ca = pem(cl, "certificate-authority")
  if cfg.insecure and cfg.ca then
    fail("%s: insecure-skip-tls-verify together with a certificate authority is not allowed", cl.where)
  end
  if cfg.proxy and not cfg.proxy:match("^https?://") and not cfg.proxy:match("^socks5h?://") then
    fail("%s.proxy-url must be an http, https or socks5 URL", cl.where)
  end

  local user = user_name and merged.users[user_name]
  if user_name and not user then fail("%s.user: user %q does not exist", ctx.where, user_name) end
  if user then
    local token = str(user, "token")
    if token then
      cfg.token = secret.value(token, user.where .. ".token")
    else
      local tf = str(user, "tokenFile")
      if tf then cfg.token_file = absolute(tf, user.dir) end
    end
    local cert, cert_from = pem(user, "client-certificate")
    local key, key_from = pem(user, "client-key")
    if (cert == nil) ~= (key == nil) then
      fail("%s: client-certificate and client-key go together (only %s is set)", user.where,
        cert and "client-certificate" or "client-key")
    end
    if cert then cfg.cert, cfg.key = cert, secret.value(key, key_from) end
    cfg.cert_from = cert_from
    local username, password = str(user, "username"), str(user, "password")
    if username or password then
      if token or cfg.token_file then
        fail("%s: more than one authentication method (a token and a username/password); only one is allowed",
          user.where)
      end
      cfg.basic = { user = username or "", password = password and secret.value(password, user.where .. ".password") or "" }
    end
    cfg.exec = exec_spec(user)
  end
  return cfg
end

-- ---- credentials -----------------------------------------------------------

-- RFC 3339 (expirationTimestamp) -> seconds since the epoch, UTC
local function parse_time(s)
  local y, mo, d, h, mi, sec, frac, zone = s:match("^(%d+)-(%d+)-(%d+)[Tt ](%d+):(%d+):(%d+)(%.?%d*)(.*)$")
  if not y then return nil end
  local days_before = { 0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334 }
  y, mo = tonumber(y), tonumber(mo)
  local leap_days = (y - 1969) // 4 - (y - 1901) // 100 + (y - 1601) // 400
  if mo > 2 and (y % 4 == 0 and (y % 100 ~= 0 or y % 400 == 0)) then leap_days = leap_days + 1 end
  local days = (y - 1970) * 365 + leap_days + days_before[mo] + tonumber(d) - 1
  local t = days * 86400 + tonumber(h) * 3600 + tonumber(mi) * 60 + tonumber(sec) + (tonumber("0" .. frac) or 0)
  if zone == "Z" or zone == "z" or zone == "" then return t end
  local sign, zh, zm = zone:match("^([+-])(%d%d):?(%d%d)$")
  if not sign then return nil end
  local off = tonumber(zh) * 3600 + tonumber(zm) * 60
  return sign == "+" and t - off or t + off
end
M.parse_time = parse_time

function Config:exec_info()
  local e = self.exec
  local spec = { interactive = false }
  if e.provide_cluster_info then
    spec.cluster = { server = self.server, ["tls-server-name"] = self.tls_server_name,
      ["insecure-skip-tls-verify"] = self.insecure or nil, ["proxy-url"] = self.proxy,
      ["certificate-authority-data"] = self.ca and output.base64(self.ca) or nil }
  end
  return json.encode({ kind = "ExecCredential", apiVersion = e.api_version, spec = spec })
end

-- runs the exec plugin (a read: it changes nothing relish journals) and keeps
-- what it gives as secrets until its expirationTimestamp
function Config:run_exec()
  local e = self.exec
  local env = {}
  for k, v in pairs(e.env) do env[k] = v end
  env.KUBERNETES_EXEC_INFO = self:exec_info()
  local argv = { e.command }
  for _, a in ipairs(e.args) do argv[#argv + 1] = a end
  local r, err = E.try(require("relish.sh").run, { argv = argv, env = env, readonly = true, timeout = 60 })
  if not r then fail("%s: the plugin %s failed: %s", e.where, e.command, tostring(err.message or err)) end
  local ok, cred = pcall(json.decode, r.stdout)
  if not ok or type(cred) ~= "table" or cred.kind ~= "ExecCredential" then
    fail("%s: the plugin %s did not print an ExecCredential", e.where, e.command)
  end
  if cred.apiVersion ~= e.api_version then
    fail("%s: the plugin %s answered apiVersion %s, asked for %s", e.where, e.command, tostring(cred.apiVersion),
      e.api_version)
  end
  local st = type(cred.status) == "table" and cred.status or {}
  local c = {}
  if type(st.token) == "string" and st.token ~= "" then c.token = secret.value(st.token, e.command) end
  if type(st.clientCertificateData) == "string" and type(st.clientKeyData) == "string" then
    c.cert, c.key = st.clientCertificateData, secret.value(st.clientKeyData, e.command)
  end
  if not c.token and not c.cert then
    fail("%s: the plugin %s gave neither status.token nor clientCertificateData and clientKeyData", e.where, e.command)
  end
  if type(st.expirationTimestamp) == "string" then
    c.expires = parse_time(st.expirationTimestamp)
    if not c.expires then
      fail("%s: the plugin %s gave an expirationTimestamp that is not RFC 3339", e.where, e.command)
    end
  end
  self.exec_cache = c
  return c
end

-- credentials([refresh]) -> the http options that authenticate a request.
-- refresh (after a 401) runs the exec plugin again and re-reads a token file.
function Config:credentials(refresh)
  local o = { ca = self.ca, insecure = self.insecure or nil, proxy = self.proxy, cert = self.cert, key = self.key }
  -- a token in the kubeconfig wins over an exec plugin, as in client-go
  if self.exec and not self.token and not self.token_file then
    local c = self.exec_cache
    if refresh or not c or (c.expires and c.expires <= os.time() + 10) then c = self:run_exec() end
    if c.token then o.auth = { bearer = c.token } end
    if c.cert then o.cert, o.key = c.cert, c.key end
    return o
  end
  if self.token then
    o.auth = { bearer = self.token }
  elseif self.token_file then
    -- re-read as it rotates (kubectl re-reads it every minute)
    local now = os.time()
    if refresh or not self.file_token or now - self.file_token_at >= 60 then
      local t, err = read_file(self.token_file)
      if not t then fail("cannot read the token file %s: %s", self.token_file, tostring(err)) end
      self.file_token = secret.value((t:gsub("%s+$", "")), self.token_file)
      self.file_token_at = now
    end
    o.auth = { bearer = self.file_token }
  elseif self.basic then
    o.auth = self.basic
  end
  return o
end

return M
