-- relish.k8s: Kubernetes through its REST API, on relish.http (so on the event
-- loop: a wait yields inside a task, and tasks share connections). Every write
-- is an effect: journaled with the object's pre-image before it is sent,
-- planned with dryRun=All and a diff in a dry-run, undone by restoring the
-- pre-image. See docs/reference/k8s.md.
local http = require "relish.http"
local json = require "relish.json"
local yaml = require "relish.yaml"
local effect = require "relish.effect"
local gate = require "relish._gate"
local config = require "relish.k8s.config"
local fs = require "relish.fs"
local host = require "relish._host"
local task = require "relish.task"
local E = require "relish._errors"

local M = {}

local SELF = debug.getinfo(1, "S").source
local usage = E.usage_for(SELF)

local FIELD_MANAGER = "relish"
local PAGE = 500

-- ---- errors ----------------------------------------------------------------

-- The kind of a failed request, from the Status reason or the HTTP code.
local BY_REASON = { AlreadyExists = "already_exists", Gone = "expired", Expired = "expired" }
local BY_CODE = {
  [400] = "bad_request", [401] = "unauthorized", [403] = "forbidden", [404] = "not_found",
  [405] = "method_not_allowed", [406] = "not_acceptable", [409] = "conflict", [410] = "expired",
  [413] = "too_large", [415] = "unsupported_media_type", [422] = "invalid", [429] = "too_many_requests",
  [500] = "internal", [503] = "unavailable", [504] = "server_timeout",
}

local function k8s_error(what, status, st, resp)
  st = type(st) == "table" and st or {}
  local details = type(st.details) == "table" and st.details or nil
  local kind = BY_REASON[st.reason] or BY_CODE[status] or "http_status"
  local msg = type(st.message) == "string" and st.message or ("HTTP " .. tostring(status))
  return setmetatable({
    kind = kind, message = what .. ": " .. msg, code = status, reason = st.reason,
    causes = details and details.causes or nil, details = details,
    retry_after = resp and resp.retry_after or nil,
  }, E.MT)
end
M.error_kinds = BY_CODE

-- ---- objects ---------------------------------------------------------------

local function copy(v)
  if type(v) ~= "table" then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = copy(x) end
  return setmetatable(out, getmetatable(v))
end

local SERVER_META = { "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields", "selfLink",
  "deletionTimestamp", "deletionGracePeriodSeconds" }

-- the object as a client would write it: no status, no server-managed metadata
local function writable(obj)
  local o = copy(obj)
  o.status = nil
  if type(o.metadata) == "table" then
    for _, k in ipairs(SERVER_META) do o.metadata[k] = nil end
  end
  return o
end
M.writable = writable

-- the object as a plan shows it: also without timestamps; a Secret's values
-- as ***, marked on the side after the write when they differ from before's
local function shown(obj, before)
  if obj == nil then return "" end
  local o = writable(obj)
  if type(o.metadata) == "table" and type(o.metadata.annotations) == "table" then
    o.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"] = nil
    if next(o.metadata.annotations) == nil then o.metadata.annotations = nil end
  end
  if o.kind == "Secret" then
    for _, field in ipairs { "data", "stringData" } do
      if type(o[field]) == "table" then
        local old = before and type(before[field]) == "table" and before[field] or {}
        for k, v in pairs(o[field]) do
          o[field][k] = (before and old[k] ~= v) and "*** (changed)" or "***"
        end
      end
    end
  end
  return yaml.encode(o)
end

local function obj_name(obj) return type(obj.metadata) == "table" and obj.metadata.name or nil end
local function obj_namespace(obj) return type(obj.metadata) == "table" and obj.metadata.namespace or nil end

-- ---- the connection ----------------------------------------------------------

local Client = {}
Client.__index = Client
Client.__name = "relish.k8s.Client"

-- gv, names: discovery, cached per connection
local function new_client(cfg, origin, timeout)
  return setmetatable({ cfg = cfg, server = cfg.server, namespace = cfg.namespace, timeout = timeout,
    origin = origin, groups = nil, gv = {}, names = {} }, Client)
end

local CONNECT_OPTS = { kubeconfig = true, context = true, namespace = true, timeout = true }

-- connect{kubeconfig=, context=, namespace=, timeout=} -> client
function M.connect(opts)
  opts = E.check_options(usage, "k8s.connect", opts, CONNECT_OPTS)
  for _, k in ipairs { "kubeconfig", "context", "namespace" } do
    if opts[k] ~= nil and (type(opts[k]) ~= "string" or opts[k] == "") then
      usage("k8s.connect", k .. " must be a non-empty string, got " .. type(opts[k]))
    end
  end
  if opts.timeout ~= nil and (type(opts.timeout) ~= "number" or opts.timeout <= 0) then
    usage("k8s.connect", "timeout must be a positive number of seconds")
  end
  local cfg = config.resolve(opts)
  -- origin: where a rollback in another process connects again (never a credential)
  return new_client(cfg, { kubeconfig = opts.kubeconfig, kubeconfig_env = os.getenv("KUBECONFIG"),
    context = cfg.context, server = cfg.server }, opts.timeout or 60)
end

local function encode_query(q)
  if not q then return nil end
  local out = {}
  for k, v in pairs(q) do
    if v ~= nil and v ~= false then out[k] = v == true and "true" or v end
  end
  return out
end

-- send(method, path, {query=, body=, content_type=, accept=, stream=, timeout=,
-- idempotent=, what=, ok=}) -> response; raises a structured error for a
-- status that is not 2xx (or in ok)
local MANAGED = { POST = true, PUT = true, PATCH = true }

-- whether a request may be sent again after a 429, a 5xx or a dropped
-- connection: reads, server-side apply, merge patches (they set values) and
-- deletes (a second one finds nothing); not creates, PUTs (a second one is
-- a conflict) or JSON patches (an "add" would add twice)
local function idempotent(method, o)
  if o.idempotent ~= nil then return o.idempotent end
  if method == "GET" or method == "HEAD" or method == "DELETE" then return true end
  if method == "PATCH" then return o.content_type ~= "application/json-patch+json" end
  return false
end

-- ---- the dry-run view -----------------------------------------------------------
-- In a dry-run nothing is written, so an object the plan creates (or scales,
-- or patches) is not on the server for the plan's later steps to read. The
-- view keeps what the plan has written so far, by URL (false: deleted);
-- reads in the same dry-run see it first, so a plan can create a
-- Deployment and then scale it. It starts afresh with each plan and each
-- preview of a runbook's step (the gate's session).
local view = { session = -1, objects = {} }

local function the_view()
  local st = gate.state()
  if not st.dry_run then return nil end
  if st.session ~= view.session then view.objects = {} end
  view.session = st.session
  return view.objects
end

-- what the view says of a GET of path: nil (ask the server), false (gone),
-- or the object (a copy); a subresource scale is made from its object
local function view_get(server, path)
  local v = the_view()
  if not v then return nil end
  local obj = v[server .. path]
  if obj ~= nil then return obj and copy(obj) end
  local base = path:match("^(.*)/scale$")
  obj = base and v[server .. base]
  if obj == nil then return nil end
  if obj == false then return false end
  return { apiVersion = "autoscaling/v1", kind = "Scale", metadata = copy(obj.metadata),
    spec = { replicas = obj.spec and obj.spec.replicas or 0 }, status = { replicas = 0 } }
end

local planned_locally -- below, with the writes

local function view_put(server, path, obj)
  local v = the_view()
  if v then v[server .. path] = obj and copy(obj) or false end
end
M._view_reset = function() view.objects, view.session = {}, -1 end

function Client:send(method, path, o)
  o = o or {}
  local refreshed = false
  if MANAGED[method] and not (o.query and o.query.fieldManager) then
    -- every write of relish is owned by one field manager, undo included
    o.query = o.query or {}
    o.query.fieldManager = FIELD_MANAGER
  end
  while true do
    local cred = self.cfg:credentials(refreshed)
    local headers = { Accept = o.accept or "application/json", ["User-Agent"] = "relish-k8s" }
    if o.content_type then headers["Content-Type"] = o.content_type end
    local r = http.request {
      method = method, url = self.server .. path, query = encode_query(o.query), body = o.body,
      headers = headers, timeout = o.timeout or (not o.stream and self.timeout or nil), effect = false,
      idempotent = idempotent(method, o), stream = o.stream,
      ca = cred.ca, cert = cred.cert, key = cred.key, insecure = cred.insecure, proxy = cred.proxy,
      auth = cred.auth, tls_server_name = self.cfg.tls_server_name,
    }
    -- a token that expired or rotated: the exec plugin or the token file once more
    if r.status == 401 and not refreshed and (self.cfg.exec or self.cfg.token_file) then
      refreshed = true
    elseif r.status >= 200 and r.status < 300 or (o.ok and o.ok[r.status]) then
      return r
    else
      local ok, st = pcall(json.decode, r.body)
      error(k8s_error(o.what or (method .. " " .. path), r.status, ok and st or nil, r), 0)
    end
  end
end

function Client:json(method, path, o)
  if method == "GET" then
    local seen = view_get(self.server, path)
    if seen then return seen end
    if seen == false then
      if o and o.ok and o.ok[404] then return nil end
      error(E.value("not_found", "%s: not found (deleted earlier in this plan)", o and o.what or ("GET " .. path)), 0)
    end
  end
  local r = self:send(method, path, o)
  if r.status == 404 and o and o.ok and o.ok[404] then return nil end
  return json.decode(r.body)
end

-- ---- discovery ---------------------------------------------------------------

-- A resource: { group=, version=, gv=, name= (plural), kind=, namespaced=, verbs= }

local function gv_path(gv) return gv:find("/", 1, true) and ("/apis/" .. gv) or ("/api/" .. gv) end

-- after a CustomResourceDefinition was written: discover again
function Client:forget_discovery()
  self.groups, self.gv, self.names = nil, {}, {}
end

-- the resources of one group/version, cached per connection
function Client:gv_resources(gv)
  local cached = self.gv[gv]
  if cached ~= nil then return cached or nil end
  local list = self:json("GET", gv_path(gv), { ok = { [404] = true }, what = "discover " .. gv })
  if not list then
    self.gv[gv] = false
    return nil
  end
  local group, version = gv:match("^(.*)/(.*)$")
  if not group then group, version = "", gv end
  local by = { kinds = {}, names = {} }
  for _, r in ipairs(list.resources or {}) do
    if not r.name:find("/", 1, true) then
      local res = { group = group, version = version, gv = gv, name = r.name, kind = r.kind,
        namespaced = r.namespaced == true, verbs = r.verbs }
      by.kinds[r.kind] = res
      by.names[r.name] = by.names[r.name] or res
      if r.singularName and r.singularName ~= "" then by.names[r.singularName] = by.names[r.singularName] or res end
      by.names[r.kind:lower()] = by.names[r.kind:lower()] or res
      for _, s in ipairs(r.shortNames or {}) do by.names[s] = by.names[s] or res end
    end
  end
  self.gv[gv] = by
  return by
end

-- every served group/version, preferred versions first (core v1 first of all)
function Client:group_versions()
  if self.groups then return self.groups end
  local out = { "v1" }
  local apis = self:json("GET", "/apis", { what = "discover /apis" })
  for _, g in ipairs(apis.groups or {}) do
    local pref = g.preferredVersion and g.preferredVersion.groupVersion
    if pref then out[#out + 1] = pref end
  end
  for _, g in ipairs(apis.groups or {}) do
    for _, v in ipairs(g.versions or {}) do
      if v.groupVersion ~= (g.preferredVersion and g.preferredVersion.groupVersion) then out[#out + 1] = v.groupVersion end
    end
  end
  self.groups = out
  return out
end

local function fail(kind, fmt, ...) error(E.value(kind, fmt, ...), 0) end
local function not_found(fmt, ...) fail("not_found", fmt, ...) end

-- resource_for(type [, apiVersion]) -> resource: type is a Kind, a plural, a
-- singular or a short name, optionally with its group ("deployments.apps")
function Client:resource_for(kind, api_version)
  if api_version then
    local by = self:gv_resources(api_version)
    local res = by and (by.kinds[kind] or by.names[kind:lower()])
    if not res then not_found("the server has no %s in %s", kind, api_version) end
    return res
  end
  local key = kind:lower()
  local cached = self.names[key]
  if cached then return cached end
  local name, group = key:match("^([^.]+)%.(.+)$")
  name = name or key
  for _, gv in ipairs(self:group_versions()) do
    local g = gv:match("^(.*)/") or ""
    if not group or g == group then
      local by = self:gv_resources(gv)
      local res = by and (by.kinds[kind] or by.names[name])
      if res then
        self.names[key] = res
        return res
      end
    end
  end
  not_found("the server has no resource type %q", kind)
end

-- A reference: an object ({apiVersion=, kind=, metadata={name=, namespace=}}),
-- a table {kind=, name=, namespace=, apiVersion=}, or "type/name" / "type".
-- -> resource, name (or nil), namespace (nil for cluster-scoped)
function Client:ref(ref, who, namespace)
  local kind, name, ns, api_version
  if type(ref) == "string" then
    kind, name = ref:match("^([^/]+)/(.+)$")
    if not kind then kind = ref end
    if kind == "" then usage(who, "a reference is 'type/name' or 'type', got " .. ref) end
  elseif type(ref) == "table" then
    kind, api_version = ref.kind, ref.apiVersion
    if type(ref.metadata) == "table" then
      name, ns = ref.metadata.name, ref.metadata.namespace
    else
      name, ns = ref.name, ref.namespace
    end
    if type(kind) ~= "string" or kind == "" then usage(who, "the object needs a kind") end
  else
    usage(who, "expected a reference ('type/name', {kind=, name=} or an object), got " .. type(ref))
  end
  local res = self:resource_for(kind, api_version)
  if res.namespaced then
    ns = ns or namespace or self.namespace
  else
    ns = nil
  end
  return res, name, ns
end

local escape = http.escape -- percent-encoding of a path segment

local function path_of(res, ns, name, sub)
  local p = gv_path(res.gv)
  if ns then p = p .. "/namespaces/" .. escape(ns) end
  p = p .. "/" .. res.name
  if name then p = p .. "/" .. escape(name) end
  if sub then p = p .. "/" .. sub end
  return p
end

local function label(res, name, ns)
  local s = res.name .. (res.group ~= "" and ("." .. res.group) or "") .. "/" .. (name or "")
  if ns then s = s .. " in " .. ns end
  return s
end

-- ---- reads -------------------------------------------------------------------

local function need_name(who, name)
  if type(name) ~= "string" or name == "" then usage(who, "the reference needs a name") end
end

-- get(ref [, {namespace=}]) -> the object; raises not_found when it is not there
function Client:get(ref, opts)
  opts = E.check_options(usage, "k8s.get", opts, { namespace = true })
  local res, name, ns = self:ref(ref, "k8s.get", opts.namespace)
  need_name("k8s.get", name)
  return self:json("GET", path_of(res, ns, name), { what = "get " .. label(res, name, ns) })
end

-- the live object or nil
function Client:live(res, name, ns)
  return self:json("GET", path_of(res, ns, name), { ok = { [404] = true }, what = "get " .. label(res, name, ns) })
end

-- path(ref [, {namespace=, subresource=}]) -> the object's API path (of its
-- subresource), its name in messages: for a module whose own effect sends
-- the request with c:send (relish.strategy.argo patches a Rollout's status)
function Client:path(ref, opts)
  opts = E.check_options(usage, "k8s.path", opts, { namespace = true, subresource = true })
  local sub = opts.subresource
  if sub ~= nil and (type(sub) ~= "string" or not sub:match("^%l+$")) then
    usage("k8s.path", "subresource must be a word such as 'status', got " .. tostring(sub))
  end
  local res, name, ns = self:ref(ref, "k8s.path", opts.namespace)
  need_name("k8s.path", name)
  return path_of(res, ns, name, sub), label(res, name, ns)
end

local function selector(v, who, field)
  if v == nil then return nil end
  if type(v) == "string" then return v end
  if type(v) ~= "table" then usage(who, field .. " must be a string or a table of label = value") end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys)
  for i, k in ipairs(keys) do keys[i] = k .. "=" .. tostring(v[k]) end
  return table.concat(keys, ",")
end

local LIST_OPTS = { namespace = true, all_namespaces = true, selector = true, field_selector = true, limit = true }

-- list(type [, {namespace=, all_namespaces=, selector=, field_selector=, limit=}])
--   -> the list object, every page's items in .items
function Client:list(ref, opts)
  opts = E.check_options(usage, "k8s.list", opts, LIST_OPTS)
  local res, _, ns = self:ref(ref, "k8s.list", opts.namespace)
  if opts.all_namespaces then ns = nil end
  local q = { labelSelector = selector(opts.selector, "k8s.list", "selector"),
    fieldSelector = selector(opts.field_selector, "k8s.list", "field_selector"), limit = opts.limit or PAGE }
  local items, first = json.array {}, nil
  repeat
    local page = self:json("GET", path_of(res, ns), { query = q, what = "list " .. label(res, nil, ns) })
    first = first or page
    for _, it in ipairs(page.items or {}) do
      -- a list's items come without kind and apiVersion: give them theirs
      if type(it) == "table" then
        it.kind, it.apiVersion = it.kind or res.kind, it.apiVersion or res.gv
      end
      items[#items + 1] = it
    end
    local cont = page.metadata and page.metadata["continue"]
    q["continue"] = (cont ~= nil and cont ~= json.null and cont ~= "") and cont or nil
  until not q["continue"]
  first.items = items
  if type(first.metadata) == "table" then first.metadata["continue"] = nil end
  return first
end

-- pods(selector [, {namespace=}]) -> the pods' list of objects
function Client:pods(sel, opts)
  opts = E.check_options(usage, "k8s.pods", opts, { namespace = true })
  return self:list("pods", { selector = sel, namespace = opts.namespace }).items
end

-- logs{pod=, container=, tail=, since=, namespace=, previous=} -> text
function Client:logs(opts)
  opts = E.check_options(usage, "k8s.logs", opts,
    { pod = true, container = true, tail = true, since = true, namespace = true, previous = true })
  need_name("k8s.logs", opts.pod)
  local ns = opts.namespace or self.namespace
  local r = self:send("GET", "/api/v1/namespaces/" .. escape(ns) .. "/pods/" .. escape(opts.pod) .. "/log", {
    query = { container = opts.container, tailLines = opts.tail, sinceSeconds = opts.since, previous = opts.previous },
    accept = "*/*", what = "logs of pod " .. opts.pod .. " in " .. ns })
  return r.body
end

-- proxy(service, path [, {port=, namespace=, timeout=}]) -> {status=, ok=, body=, headers=}:
-- a GET through the API server's proxy to one of the Service's pods, which
-- is how a smoke test reaches a Service the machine cannot route to. Any
-- status comes back (check r.ok); the connection failing raises.
function Client:proxy(service, path, opts)
  opts = E.check_options(usage, "k8s.proxy", opts, { port = true, namespace = true, timeout = true })
  if type(service) ~= "string" or service == "" then usage("k8s.proxy", "expected a Service name, got " .. type(service)) end
  if type(path) ~= "string" then usage("k8s.proxy", "expected a path, got " .. type(path)) end
  local ns = opts.namespace or self.namespace
  local target = escape(service) .. (opts.port and (":" .. escape(tostring(opts.port))) or "")
  local r = self:send("GET", "/api/v1/namespaces/" .. escape(ns) .. "/services/" .. target .. "/proxy/"
    .. path:gsub("^/", ""), { accept = "*/*", timeout = opts.timeout, ok = setmetatable({}, { __index = function() return true end }),
    what = "GET service " .. service .. " in " .. ns .. " " .. path })
  return { status = r.status, ok = r.status >= 200 and r.status < 300, body = r.body, headers = r.headers }
end

-- ---- watch ---------------------------------------------------------------------

local WATCH_OPTS = { namespace = true, selector = true, field_selector = true, resource_version = true, timeout = true }

-- watch(type or ref, fn(type, object) [, opts]): fn is called per event
-- (ADDED, MODIFIED, DELETED); a value other than nil it returns ends the watch
-- and is returned. A closed watch resumes from the last resourceVersion seen
-- (bookmarks included); after 410 Expired the objects are listed again and
-- delivered as ADDED. timeout (seconds) bounds the whole watch: then it
-- raises kind `timeout`.
function Client:watch(ref, fn, opts)
  if type(fn) ~= "function" then usage("k8s.watch", "expected a function to call per event, got " .. type(fn)) end
  opts = E.check_options(usage, "k8s.watch", opts, WATCH_OPTS)
  local res, name, ns = self:ref(ref, "k8s.watch", opts.namespace)
  local fsel = selector(opts.field_selector, "k8s.watch", "field_selector")
  if name then fsel = (fsel and (fsel .. ",") or "") .. "metadata.name=" .. name end
  local lsel = selector(opts.selector, "k8s.watch", "selector")
  local rv = opts.resource_version
  local deadline = opts.timeout and (host.now() + opts.timeout)
  local what = "watch " .. label(res, name, ns)
  local result
  while result == nil do
    local left = deadline and (deadline - host.now())
    if left and left <= 0 then
      fail("timeout", "%s: no end after %ss", what, opts.timeout)
    end
    local expired = false
    local q = { watch = "1", allowWatchBookmarks = "true", resourceVersion = rv, labelSelector = lsel,
      fieldSelector = fsel, timeoutSeconds = math.max(1, math.floor(math.min(left or 300, 300))) }
    local r = self:send("GET", path_of(res, ns), { query = q, what = what, ok = { [410] = true },
      timeout = left and (left + 5) or nil,
      stream = function(line)
        if line == "" then return end
        local ev = json.decode(line)
        local obj = ev.object
        if ev.type == "ERROR" then
          if type(obj) == "table" and obj.code == 410 then
            expired = true
            return false
          end
          error(k8s_error(what, type(obj) == "table" and obj.code or 500, obj), 0)
        end
        if type(obj) == "table" and type(obj.metadata) == "table" and obj.metadata.resourceVersion then
          rv = obj.metadata.resourceVersion
        end
        if ev.type ~= "BOOKMARK" then
          result = fn(ev.type, obj)
          if result ~= nil then return false end
        end
      end })
    if r.status == 410 then expired = true end
    if expired and result == nil then
      -- too old to resume: start again from the current state
      local l = self:list(ref, { namespace = ns, selector = lsel, field_selector = fsel })
      rv = l.metadata and l.metadata.resourceVersion
      for _, obj in ipairs(l.items) do
        result = fn("ADDED", obj)
        if result ~= nil then break end
      end
    end
  end
  return result
end

-- ---- writes: effects -------------------------------------------------------------

local function dry_run() return gate.state().dry_run end

-- what a rollback needs to reach the same object again
-- A Secret's values as salted digests: enough for undo to tell whether they
-- are still the ones of before, never the values themselves.
local function salt()
  local fh = assert(io.open("/dev/urandom", "rb"))
  local b = fh:read(16)
  fh:close()
  return (b:gsub(".", function(ch) return string.format("%02x", ch:byte()) end))
end

local function values_digest(data, s)
  local out = {}
  if type(data) ~= "table" or not s then return out end
  local sha = fs.sha256
  for k, v in pairs(data) do out[k] = sha(s .. "\0" .. k .. "\0" .. tostring(v)) end
  return out
end

local function same_values(data, rec)
  local now = values_digest(data, rec.salt)
  for k, v in pairs(rec.values or {}) do if now[k] ~= v then return false end end
  for k in pairs(now) do if not (rec.values or {})[k] then return false end end
  return true
end

local function record_for(c, res, name, ns, before, extra)
  local rec = { conn = c.origin, api = { group = res.group, version = res.version, gv = res.gv, name = res.name,
    kind = res.kind, namespaced = res.namespaced }, namespace = ns, name = name,
    before = before and writable(before) or json.null, at = os.time(), seen = json.array {} }
  -- a Secret's values never reach the journal: its undo can put back
  -- everything else, and says the values are left as the run made them
  if res.kind == "Secret" and res.group == "" and rec.before ~= json.null then
    rec.values_not_kept = true
    rec.salt = salt()
    rec.values = values_digest(rec.before.data, rec.salt)
    rec.before.data, rec.before.stringData = nil, nil
  end
  -- the writes the pre-image already had, so that undo can tell later ones
  for _, m in ipairs(before and type(before.metadata.managedFields) == "table" and before.metadata.managedFields or {}) do
    rec.seen[#rec.seen + 1] = table.concat({ tostring(m.manager), tostring(m.operation), tostring(m.time) }, "|")
  end
  for k, v in pairs(extra or {}) do rec[k] = v end
  return rec
end

local function fingerprint(live) return live and ("rv:" .. tostring(live.metadata.resourceVersion)) or "absent" end

-- the request an effect sends: its apply; in a dry-run the server's dry-run
-- answer was got first (for the diff) and is what the plan returns
local function apply_request(w)
  local ok, r = pcall(w.client.send, w.client, w.method, w.path, w.o)
  -- a kind whose definition was applied just before: served within seconds
  local until_t = w.wait_served and (host.now() + 10)
  while not ok and until_t and type(r) == "table" and r.kind == "not_found"
    and host.now() < until_t do
    task.sleep(0.2)
    ok, r = pcall(w.client.send, w.client, w.method, w.path, w.o)
  end
  if not ok then error(r, 0) end
  if r.status == 404 and w.o.ok and w.o.ok[404] then return nil end
  if w.defines then w.client:forget_discovery() end
  return r.body ~= "" and json.decode(r.body) or nil
end
local function plan_request(w) return w.planned end

-- connections for undo, by origin: one per process
local undo_clients = {}

local function reconnect(origin)
  local key = json.encode { origin.kubeconfig or false, origin.kubeconfig_env or false, origin.context or false }
  local c = undo_clients[key]
  if c then return c end
  local cfg = config.resolve({ kubeconfig = origin.kubeconfig, context = origin.context ~= "in-cluster" and origin.context or nil },
    function(k)
      if k == "KUBECONFIG" then return origin.kubeconfig_env end
      return os.getenv(k)
    end)
  if cfg.server ~= origin.server then
    fail("config", "context %s now points at %s, not %s where the run acted: not undoing there",
      tostring(origin.context), cfg.server, origin.server)
  end
  c = new_client(cfg, origin, 60)
  undo_clients[key] = c
  return c
end

-- What lives in a namespace, that a namespace of its own has anyway (made by
-- the cluster) aside: "configmaps/x" for the first found, or nil.
local BUILT_IN = { ["serviceaccounts/default"] = true, ["configmaps/kube-root-ca.crt"] = true }
local NOT_CONTENT = { events = true, ["events.k8s.io"] = true, endpoints = true, endpointslices = true,
  controllerrevisions = true, replicasets = true, pods = true, leases = true }

function Client:namespace_content(ns)
  for _, gv in ipairs(self:group_versions()) do
    local by = self:gv_resources(gv)
    for name, res in pairs(by and by.kinds or {}) do
      local verbs = {}
      for _, v in ipairs(res.verbs or {}) do verbs[v] = true end
      if res.namespaced and verbs.list and not NOT_CONTENT[res.name] and name then
        local l = self:json("GET", path_of(res, ns), { query = { limit = 5 }, ok = { [404] = true, [405] = true },
          what = "list " .. res.name .. " in " .. ns })
        for _, it in ipairs(l and l.items or {}) do
          local key = res.name .. "/" .. it.metadata.name
          if not BUILT_IN[key] then return key end
        end
      end
    end
  end
end

-- Undo of every write: put back the pre-image. Created (no pre-image): delete
-- it if it is there. Existed: replace it with the pre-image (over whatever
-- resourceVersion is live now), or create it again when it is gone. Scale
-- puts back the replica count only.
-- Who else changed the object's content (spec, data) after the action, from
-- its managed fields: a manager other than relish, on the object itself (not
-- a subresource: controllers write status, autoscalers scale), later than
-- the action started.
local function changed_by_others(live, rec)
  local mine = rec.manager or FIELD_MANAGER
  local seen = {}
  for _, k in ipairs(type(rec.seen) == "table" and rec.seen or {}) do seen[k] = true end
  for _, m in ipairs(type(live.metadata.managedFields) == "table" and live.metadata.managedFields or {}) do
    local t = type(m.time) == "string" and config.parse_time(m.time)
    local f = type(m.fieldsV1) == "table" and m.fieldsV1 or {}
    local key = table.concat({ tostring(m.manager), tostring(m.operation), tostring(m.time) }, "|")
    if m.manager ~= mine and (m.subresource == nil or m.subresource == "") and t and rec.at
      and t >= rec.at and not seen[key] and (f["f:spec"] or f["f:data"] or f["f:stringData"]) then
      return m.manager
    end
  end
end

-- false when the object's managed fields name writers and relish is not one
-- of them (an object that sets no field has none: then it cannot be told)
local function made_by_relish(live, rec)
  local managed = type(live.metadata.managedFields) == "table" and live.metadata.managedFields or {}
  for _, m in ipairs(managed) do
    if m.manager == (rec.manager or FIELD_MANAGER) then return true end
  end
  return #managed == 0
end

local function refuse(fmt, ...) fail("conflict", fmt, ...) end

local function undo_object(rec, opts)
  local force = type(opts) == "table" and opts.force
  local c = reconnect(rec.conn)
  local res = rec.api
  local what = label(res, rec.name, rec.namespace)
  local live = c:live(res, rec.name, rec.namespace)
  -- undo acts only on what the run made: not on an object someone else
  -- recreated or changed since (unless relish rollback --force)
  -- a scale that never took effect (the run was killed before it was sent):
  -- the count is still the one from before, nothing to put back
  if rec.replicas and live and type(live.spec) == "table" and live.spec.replicas == rec.replicas then return end
  if live and not force then
    if (rec.before == json.null or rec.before == nil) and not rec.replicas and not made_by_relish(live, rec) then
      refuse("%s is there again but was not made by relish: left as it is (relish rollback --force deletes it)", what)
    end
    -- 6: a scale is undone only while the count is still the one the run set
    if rec.replicas and rec.to and type(live.spec) == "table" and live.spec.replicas ~= rec.to then
      refuse("%s was scaled to %s since the run: left as it is (relish rollback --force scales it back to %d)", what,
        tostring(live.spec.replicas), rec.replicas)
    end
    local other = not rec.replicas and changed_by_others(live, rec)
    if other then
      refuse("%s was changed by %s after the run: left as it is (relish rollback --force restores it)", what, other)
    end
  end
  if rec.replicas then
    if not live then return end
    c:send("PATCH", path_of(res, rec.namespace, rec.name, "scale"), {
      body = json.encode { spec = { replicas = rec.replicas } }, content_type = "application/merge-patch+json",
      what = "undo scale of " .. what })
    return
  end
  if rec.before == json.null or rec.before == nil then
    if live and not live.metadata.deletionTimestamp then
      if res.kind == "Namespace" and res.group == "" and not force then
        local other = c:namespace_content(rec.name)
        if other then
          refuse("namespace %s holds %s, which the run did not make (deleting the namespace would delete it): " ..
            "left as it is (relish rollback --force deletes it all)", rec.name, other)
        end
      end
      c:send("DELETE", path_of(res, rec.namespace, rec.name), { what = "undo: delete " .. what, ok = { [404] = true },
        body = json.encode { kind = "DeleteOptions", apiVersion = "v1", propagationPolicy = "Background" },
        content_type = "application/json" })
    end
    return
  end
  if rec.values_not_kept and not live then
    refuse("%s cannot be made again: its values were not kept (a Secret's values never reach the journal)", what)
  end
  for _ = 1, 5 do
    local body = copy(rec.before)
    if rec.values_not_kept and live then body.data = live.data end -- the rest goes back; the values stay
    if live and not live.metadata.deletionTimestamp then
      body.metadata.resourceVersion = live.metadata.resourceVersion
      local r = c:send("PUT", path_of(res, rec.namespace, rec.name), { body = json.encode(body),
        content_type = "application/json", what = "undo: restore " .. what, ok = { [409] = true } })
      if r.status ~= 409 then
        if rec.values_not_kept and not same_values(body.data, rec) then
          refuse("%s: its labels, annotations and type are back; its values are as the run left them " ..
            "(a Secret's values never reach the journal): put them back by hand if they changed", what)
        end
        return
      end
      live = c:live(res, rec.name, rec.namespace)
    else
      if live then -- still going away: wait for it
        task.sleep(0.2)
        live = c:live(res, rec.name, rec.namespace)
      else
        if res.kind == "Service" and type(body.spec) == "table" and body.spec.clusterIP ~= "None" then
          body.spec.clusterIP, body.spec.clusterIPs = nil, nil -- given out again by the cluster
        end
        local r = c:send("POST", path_of(res, rec.namespace), { body = json.encode(body),
          content_type = "application/json", what = "undo: recreate " .. what, ok = { [409] = true } })
        if r.status ~= 409 then return end
        live = c:live(res, rec.name, rec.namespace)
      end
    end
  end
  fail("conflict", "undo: %s kept changing; not restored", what)
end

local KINDS = { "apply", "create", "replace", "patch", "delete", "scale", "rollout_undo", "restart", "pause", "resume" }
for _, k in ipairs(KINDS) do
  effect.register { kind = "k8s." .. k, module = "relish.k8s", apply = apply_request, plan = plan_request,
    undo = undo_object, fields = { "conn", "api", "name", "before" } } -- namespace: none for cluster-scoped kinds
end

-- live -> would-be, as YAML, under the object's name
local function plan_diff(a, b, what, verb)
  if a == b then return "" end
  return fs.diff(a, b, a == "" and "(absent)" or (what .. " (live)"),
    b == "" and "(deleted)" or (what .. " (after " .. verb .. ")"))
end

-- write(verb, {res=, name=, ns=, live=, method=, path=, o=, describe=, record_extra=, new=})
--   in a dry-run the request goes with dryRun=All first: its answer is the
--   plan's result and, against the live object, the diff
-- the server's dry-run answer to w's request: what the write would make
-- A patch applied here, for objects the server has not got (a dry-run's
-- view): merge semantics, and lists of named items (containers, ports)
-- merged by name as a strategic merge patch does for them.
local function patched(obj, p)
  if type(p) ~= "table" or p[1] ~= nil then return p end
  if type(obj) ~= "table" then obj = {} end
  local out = copy(obj)
  for k, v in pairs(p) do
    if v == json.null then
      out[k] = nil
    elseif type(v) == "table" and v[1] ~= nil and type(v[1]) == "table" and v[1].name and type(out[k]) == "table" then
      local list = copy(out[k])
      for _, item in ipairs(v) do
        local found
        for i, have in ipairs(list) do
          if type(have) == "table" and have.name == item.name then list[i], found = patched(have, item), true end
        end
        if not found then list[#list + 1] = copy(item) end
      end
      out[k] = list
    elseif type(v) == "table" and v[1] == nil and next(v) ~= nil then
      out[k] = patched(out[k], v)
    else
      out[k] = copy(v)
    end
  end
  return out
end

planned_locally = function(w)
  if w.method == "PUT" then return json.decode(w.o.body) end
  local p = json.decode(w.o.body)
  if w.path:match("/scale$") then
    local sc = copy(w.live)
    sc.spec = sc.spec or {}
    sc.spec.replicas = p.spec.replicas
    return sc
  end
  if w.o.content_type == "application/json-patch+json" then return copy(w.live) end -- not worked out here
  return patched(w.live, p)
end

function Client:dry_result(w)
  local o = copy(w.o)
  o.query = o.query or {}
  o.query.dryRun = "All"
  local ok, r = pcall(self.send, self, w.method, w.path, o)
  if ok then return r.body ~= "" and json.decode(r.body) or nil end
  if type(r) == "table" and r.kind == "not_found" then
    if w.new then return w.new end -- its namespace is made by an earlier action of this plan, say
    -- an object only this plan made (the view): its would-be state, worked out here
    if w.live and view_get(self.server, path_of(w.res, w.ns, w.name)) then return planned_locally(w) end
  end
  error(r, 0)
end

function Client:write(verb, w)
  local detail, planned
  if dry_run() then
    if w.planned == nil then w.planned = self:dry_result(w) or false end
    planned = w.planned or nil
    local what = label(w.res, w.name, w.ns)
    if verb == "delete" then
      detail = plan_diff(shown(w.live), "", what, verb)
    else
      detail = plan_diff(shown(w.live), shown(planned, w.live or {}), what, verb)
    end
  end
  if dry_run() and w.name then
    -- what later reads of this plan see
    local objpath = path_of(w.res, w.ns, w.name)
    if verb == "delete" then
      view_put(self.server, objpath, false)
    elseif verb == "scale" then
      local full = self:json("GET", objpath, { ok = { [404] = true }, what = "get " .. label(w.res, w.name, w.ns) })
      if full then
        full.spec = full.spec or {}
        full.spec.replicas = w.record_extra.to
        view_put(self.server, objpath, full)
      end
    elseif type(planned) == "table" and planned.metadata then
      view_put(self.server, objpath, planned)
    end
  end
  local rec = record_for(self, w.res, w.name, w.ns, w.live, w.record_extra)
  local manager = w.o.query and w.o.query.fieldManager
  if manager and manager ~= FIELD_MANAGER then rec.manager = manager end
  return effect.run("k8s." .. verb, {
    target = self.server .. (w.target or w.path), describe = w.describe, detail = detail,
    fingerprint = w.fingerprint or fingerprint(w.live),
    record = rec,
  }, { client = self, method = w.method, path = w.path, o = w.o, planned = planned, wait_served = w.wait_served,
    defines = w.defines })
end

local function check_object(who, obj)
  if type(obj) ~= "table" then usage(who, "expected an object (a table), got " .. type(obj)) end
  if type(obj.apiVersion) ~= "string" or type(obj.kind) ~= "string" then usage(who, "the object needs apiVersion and kind") end
  if type(obj.metadata) ~= "table" or type(obj.metadata.name) ~= "string" or obj.metadata.name == "" then
    usage(who, "the object needs metadata.name")
  end
end

-- create(obj [, {namespace=}]) -> the created object
function Client:create(obj, opts)
  opts = E.check_options(usage, "k8s.create", opts, { namespace = true })
  check_object("k8s.create", obj)
  local res, name, ns = self:ref(obj, "k8s.create", opts.namespace)
  local body = copy(obj)
  if ns then body.metadata.namespace = ns end
  return self:write("create", { res = res, name = name, ns = ns, live = nil, method = "POST", path = path_of(res, ns),
    o = { body = json.encode(body), content_type = "application/json", idempotent = false,
      what = "create " .. label(res, name, ns) },
    describe = "create " .. label(res, name, ns), new = body })
end

-- apply: server-side apply of one object
-- The resource a CustomResourceDefinition in the same manifest defines, for
-- a custom resource the server does not serve yet (or, in a dry-run, ever).
local function defined_by(crds, obj, c, namespace)
  local group, version = obj.apiVersion:match("^(.+)/(.+)$")
  local crd = group and crds[group .. "/" .. obj.kind]
  if not crd then return nil end
  local res = { group = group, version = version, gv = obj.apiVersion, name = crd.spec.names.plural,
    kind = obj.kind, namespaced = crd.spec.scope ~= "Cluster" }
  local ns = res.namespaced and (obj.metadata.namespace or namespace or c.namespace) or nil
  return res, obj.metadata.name, ns
end

-- the write of one object by server-side apply, its live state still to read
local function apply_write(c, obj, opts, crds)
  check_object("k8s.apply", obj)
  local ok, res, name, ns = pcall(c.ref, c, obj, "k8s.apply", opts.namespace)
  local wait_served = false
  if not ok then
    if type(res) ~= "table" or res.kind ~= "not_found" then error(res, 0) end
    local err = res
    res, name, ns = defined_by(crds, obj, c, opts.namespace)
    if not res then error(err, 0) end
    wait_served = true
  end
  local body = copy(obj)
  if ns then body.metadata.namespace = ns end
  return { res = res, name = name, ns = ns, method = "PATCH", path = path_of(res, ns, name),
    o = { body = json.encode(body), content_type = "application/apply-patch+yaml", idempotent = true,
      query = { fieldManager = opts.field_manager or FIELD_MANAGER, force = opts.force and "true" or nil },
      what = "apply " .. label(res, name, ns) },
    new = body, wait_served = wait_served, defines = obj.kind == "CustomResourceDefinition" }
end

local function finish_write(c, w)
  w.describe = (w.live and "apply " or "apply (new) ") .. label(w.res, w.name, w.ns)
  return c:write("apply", w)
end

-- fns run at most LIMIT at a time, or just called when there is one
local LIMIT = 16
local function each(fns)
  if #fns == 1 then return fns[1]() end
  task.parallel(fns, { limit = LIMIT })
end

-- the order kubectl and Helm create kinds in: what others depend on first
local ORDER, LAST = {}, 0
for i, k in ipairs { "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange", "PodSecurityPolicy",
  "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList", "ConfigMap", "StorageClass", "PersistentVolume",
  "PersistentVolumeClaim", "CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
  "ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service", "DaemonSet", "Pod",
  "ReplicationController", "ReplicaSet", "Deployment", "HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob",
  "IngressClass", "Ingress", "APIService" } do
  ORDER[k], LAST = i, i
end

-- kinds not in the list (custom resources, say) come after all of those
local function rank(d) return ORDER[type(d) == "table" and d.kind] or LAST + 1 end

local function manifests(who, m)
  local docs
  if type(m) == "table" then
    docs = (m.kind == nil and #m > 0) and m or { m }
  elseif type(m) == "string" then
    local text = m
    -- one line naming something that exists is a file or a directory
    if not m:find("\n", 1, true) and fs.exists(m) then
      local st = fs.stat(m)
      if st.type == "dir" then
        local parts = {}
        for _, n in ipairs(fs.list(m)) do
          if n:match("%.ya?ml$") or n:match("%.json$") then parts[#parts + 1] = fs.read(m .. "/" .. n) end
        end
        text = table.concat(parts, "\n---\n")
      else
        text = fs.read(m)
      end
    end
    docs = {}
    if text == m and not m:find("\n", 1, true) and not m:find(":", 1, true) then
      -- neither YAML nor something that exists: a file name with a typo
      not_found("k8s.apply: %s: no such file or directory", m)
    end
    for _, d in ipairs(yaml.decode_all(text)) do
      if d ~= json.null then
        if d.kind == "List" and type(d.items) == "table" then
          for _, it in ipairs(d.items) do docs[#docs + 1] = it end
        else
          docs[#docs + 1] = d
        end
      end
    end
  else
    usage(who, "expected an object, a list of objects, YAML text or a file, got " .. type(m))
  end
  local indexed = {}
  for i, d in ipairs(docs) do indexed[i] = { d = d, i = i, o = rank(d) } end
  table.sort(indexed, function(a, b) if a.o ~= b.o then return a.o < b.o end return a.i < b.i end)
  local out = {}
  for i, x in ipairs(indexed) do out[i] = x.d end
  return out
end
M.manifests = function(m) return manifests("k8s.manifests", m) end

-- apply(manifest [, {force=, namespace=, field_manager=}]) -> the applied
-- object (one) or list of them (several); namespaces and CRDs first
function Client:apply(m, opts)
  opts = E.check_options(usage, "k8s.apply", opts, { force = true, namespace = true, field_manager = true })
  local single = type(m) == "table" and m.kind ~= nil
  local docs = manifests("k8s.apply", m)
  local out = json.array {}
  -- kind by kind in dependency order (a namespace before what goes in it);
  -- within a kind, the reads (live state, and in a dry-run the server's
  -- answer) go at once, then the writes are journaled in the manifest's
  -- order and sent without waiting for each other
  local crds = {}
  for _, d in ipairs(docs) do
    if d.kind == "CustomResourceDefinition" and type(d.spec) == "table" and type(d.spec.names) == "table" then
      crds[tostring(d.spec.group) .. "/" .. tostring(d.spec.names.kind)] = d
    end
  end
  local i = 1
  while i <= #docs do
    local j = i
    while docs[j + 1] and rank(docs[j + 1]) == rank(docs[i]) do j = j + 1 end
    local ws, reads, writes = {}, {}, {}
    for k = i, j do
      ws[k] = apply_write(self, docs[k], opts, crds)
      local w = ws[k]
      reads[#reads + 1] = function()
        w.live = self:live(w.res, w.name, w.ns)
        if dry_run() then w.planned = self:dry_result(w) or false end
      end
      writes[#writes + 1] = function() out[k] = finish_write(self, w) end
    end
    each(reads)
    each(writes)
    i = j + 1
  end
  if single then return out[1] end
  return out
end

-- replace(obj) -> the object: PUT, over the live resourceVersion unless obj has one
function Client:replace(obj, opts)
  opts = E.check_options(usage, "k8s.replace", opts, { namespace = true })
  check_object("k8s.replace", obj)
  local res, name, ns = self:ref(obj, "k8s.replace", opts.namespace)
  local live = self:live(res, name, ns)
  if not live then not_found("replace %s: not found", label(res, name, ns)) end
  local body = copy(obj)
  if ns then body.metadata.namespace = ns end
  body.metadata.resourceVersion = body.metadata.resourceVersion or live.metadata.resourceVersion
  return self:write("replace", { res = res, name = name, ns = ns, live = live, method = "PUT", path = path_of(res, ns, name),
    o = { body = json.encode(body), content_type = "application/json", what = "replace " .. label(res, name, ns) },
    describe = "replace " .. label(res, name, ns) })
end

local PATCH_TYPES = { merge = "application/merge-patch+json", json = "application/json-patch+json",
  strategic = "application/strategic-merge-patch+json" }

-- patch(ref, patch [, {type = "strategic"|"merge"|"json", namespace=}]) -> the object
function Client:patch(ref, p, opts)
  opts = E.check_options(usage, "k8s.patch", opts, { type = true, namespace = true })
  if opts.type ~= nil and not PATCH_TYPES[opts.type] then
    usage("k8s.patch", "type must be strategic, merge or json, got " .. tostring(opts.type))
  end
  if type(p) ~= "table" and type(p) ~= "string" then usage("k8s.patch", "the patch must be a table or JSON text") end
  local res, name, ns = self:ref(ref, "k8s.patch", opts.namespace)
  -- strategic merge is for the built-in kinds; custom resources take merge
  local builtin = res.group == "" or not res.group:find(".", 1, true) or res.group:match("%.k8s%.io$")
  local ct = PATCH_TYPES[opts.type or (builtin and "strategic" or "merge")]
  need_name("k8s.patch", name)
  local live = self:live(res, name, ns)
  if not live then not_found("patch %s: not found", label(res, name, ns)) end
  return self:write("patch", { res = res, name = name, ns = ns, live = live, method = "PATCH", path = path_of(res, ns, name),
    o = { body = type(p) == "string" and p or json.encode(p), content_type = ct, what = "patch " .. label(res, name, ns) },
    describe = "patch " .. label(res, name, ns) })
end

-- delete(ref [, {propagation=, wait=, timeout=, namespace=}]) -> true, or
-- false when it was not there (nothing done)
function Client:delete(ref, opts)
  opts = E.check_options(usage, "k8s.delete", opts, { propagation = true, wait = true, timeout = true, namespace = true })
  local prop = opts.propagation or "Background"
  if prop ~= "Background" and prop ~= "Foreground" and prop ~= "Orphan" then
    usage("k8s.delete", "propagation must be Background, Foreground or Orphan, got " .. tostring(prop))
  end
  local res, name, ns = self:ref(ref, "k8s.delete", opts.namespace)
  need_name("k8s.delete", name)
  local live = self:live(res, name, ns)
  if not live then return false end
  local path = path_of(res, ns, name)
  self:write("delete", { res = res, name = name, ns = ns, live = live, method = "DELETE", path = path,
    o = { body = json.encode { kind = "DeleteOptions", apiVersion = "v1", propagationPolicy = prop,
      preconditions = { uid = live.metadata.uid } }, content_type = "application/json", ok = { [404] = true },
      what = "delete " .. label(res, name, ns) },
    describe = "delete " .. label(res, name, ns) })
  if opts.wait ~= false and not dry_run() then
    local deadline = host.now() + (opts.timeout or 120)
    while self:live(res, name, ns) do
      if host.now() > deadline then
        fail("timeout", "delete %s: still there after %ss", label(res, name, ns), opts.timeout or 120)
      end
      task.sleep(0.1)
    end
  end
  return true
end

-- scale(ref, replicas [, {namespace=}]) -> the Scale object
function Client:scale(ref, replicas, opts)
  opts = E.check_options(usage, "k8s.scale", opts, { namespace = true })
  if math.type(replicas) ~= "integer" or replicas < 0 then
    usage("k8s.scale", "replicas must be a non-negative integer, got " .. tostring(replicas))
  end
  local res, name, ns = self:ref(ref, "k8s.scale", opts.namespace)
  need_name("k8s.scale", name)
  local path = path_of(res, ns, name, "scale")
  local cur = self:json("GET", path, { what = "get scale of " .. label(res, name, ns) })
  local before = cur.spec and cur.spec.replicas or 0
  return self:write("scale", { res = res, name = name, ns = ns, live = cur, method = "PATCH", path = path,
    o = { body = json.encode { spec = { replicas = replicas } }, content_type = "application/merge-patch+json",
      what = "scale " .. label(res, name, ns) },
    describe = string.format("scale %s from %d to %d", label(res, name, ns), before, replicas),
    record_extra = { replicas = before, to = replicas }, target = path_of(res, ns, name), -- the object it scales
    -- what a saved plan pins: the count (the object's resourceVersion moves with any write before)
    fingerprint = "replicas:" .. before })
end

-- update_with_retry(ref, fn [, {attempts=, namespace=}]) -> the object:
-- GET, fn(obj) changes it (or returns a new one), PUT; again on a conflict
function Client:update_with_retry(ref, fn, opts)
  opts = E.check_options(usage, "k8s.update_with_retry", opts, { attempts = true, namespace = true })
  if type(fn) ~= "function" then usage("k8s.update_with_retry", "expected a function, got " .. type(fn)) end
  local res, name, ns = self:ref(ref, "k8s.update_with_retry", opts.namespace)
  need_name("k8s.update_with_retry", name)
  local last
  for _ = 1, opts.attempts or 5 do
    local live = self:live(res, name, ns)
    if not live then not_found("update %s: not found", label(res, name, ns)) end
    local obj = copy(live)
    obj = fn(obj) or obj
    local ok, r = pcall(self.write, self, "replace", { res = res, name = name, ns = ns, live = live, method = "PUT",
      path = path_of(res, ns, name),
      o = { body = json.encode(obj), content_type = "application/json", what = "update " .. label(res, name, ns) },
      describe = "update " .. label(res, name, ns) })
    if ok then return r end
    if type(r) ~= "table" or r.kind ~= "conflict" then error(r, 0) end
    last = r
  end
  error(last, 0)
end

-- rollouts: status, wait, history, undo, restart, pause, resume
M.rollout = require("relish.k8s.rollout")(Client,
  { usage = usage, path_of = path_of, label = label, dry_run = dry_run, copy = copy })

M.Client = Client
return M
