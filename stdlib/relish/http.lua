-- relish.http: HTTP for recipes. The transfer itself is C (relish._http, on
-- the host's event loop, so requests inside tasks run at once); here is the
-- policy: fields and defaults, query strings and JSON bodies, retries with
-- backoff and Retry-After, expect, clients, many, and the effects of writes
-- (POST, PUT, PATCH, DELETE: providers "http.post" ... run by the gate,
-- journaled, planned in a dry-run, irreversible). Failures raise.
local _http = require "relish._http"
local effect = require "relish.effect"
local errors = require "relish._errors"
local json = require "relish.json"
local secret = require "relish.secret"
local task = require "relish.task"

local M = {}

local DEFAULTS = {
  retries = 2, backoff = 0.25, max_backoff = 10, max_retry_wait = 60,
  timeout = 300, connect_timeout = 30, many_limit = 10,
}
M.defaults = DEFAULTS

local WRITES = { POST = true, PUT = true, PATCH = true, DELETE = true }
local IDEMPOTENT = { GET = true, HEAD = true, PUT = true, DELETE = true, OPTIONS = true, TRACE = true }
local RETRY_STATUS = { [429] = true, [502] = true, [503] = true, [504] = true }
local RETRY_KINDS = { connect = true, connection = true }
local SENSITIVE = { authorization = true, ["proxy-authorization"] = true, cookie = true }

local function new_error(kind, message, fields)
  local e = fields or {}
  e.kind, e.message = kind, message
  return setmetatable(e, errors.MT)
end

-- ---- responses ----------------------------------------------------------------

local Response = { __name = "relish.http.Response" }
Response.__index = Response

-- r:json() -> the body decoded; raises (kind json, or planned in a dry-run)
function Response:json()
  if self.planned then
    error(new_error("planned", "a planned response (dry-run) has no body to decode"), 2)
  end
  local v, err = errors.try(json.decode, self.body)
  if v == nil and err ~= nil then
    error(new_error("json", string.format("%s %s: the response is not JSON: %s",
      self.method or "?", self.url or "?", tostring(err))), 2)
  end
  return v
end

local function planned_response(method, display)
  return setmetatable({ status = 0, planned = true, ok = true, headers = {}, body = "", elapsed = 0,
    method = method, url = display, attempts = 0 }, Response)
end

-- ---- requests: fields, checks, merging ------------------------------------------

local FIELDS = {
  method = "string", url = "text", headers = "table", query = "table", body = "text", json = "any",
  timeout = "seconds", connect_timeout = "seconds", retries = "count", expect = "expect",
  stream = "function", auth = "table", ca = "text", cert = "text", key = "text", insecure = "boolean",
  proxy = "text", no_proxy = "string", max_body = "count", max_redirects = "count",
  http_version = "version", effect = "boolean", idempotent = "boolean", backoff = "seconds",
  max_retry_wait = "seconds", tls_server_name = "string",
}
local CLIENT_ONLY = { base_url = "text" }

local function is_text(v)
  if type(v) == "string" or secret.is(v) then return true end
  if type(v) ~= "table" or getmetatable(v) ~= nil or #v == 0 then return false end
  for k, p in pairs(v) do
    if math.type(k) ~= "integer" or not (type(p) == "string" or secret.is(p)) then return false end
  end
  return true
end

-- A bad value as a message shows it: a number as itself ("timeout must be a
-- positive number of seconds, got 0"), anything else by its type (a string
-- in the wrong field may well be a credential).
local function shown(v)
  if secret.is(v) then return "a secret" end
  if type(v) == "number" then return tostring(v) end
  return type(v)
end

-- Whether a piece of the text v (a string, a secret, or a list of both)
-- matches pattern; a secret's value is looked at here, never shown.
local function text_has(v, pattern)
  for _, p in ipairs(type(v) == "table" and v or { v }) do
    local plain = secret.is(p) and secret.reveal(p) or p
    if type(plain) == "string" and plain:find(pattern) then return true end
  end
  return false
end

local function check_field(who, k, v, kind, level)
  local bad
  if kind == "string" then bad = type(v) ~= "string" and "a string"
  elseif kind == "text" then bad = not is_text(v) and "a string, a secret or a list of them"
  elseif kind == "table" then bad = type(v) ~= "table" and "a table"
  elseif kind == "function" then bad = type(v) ~= "function" and "a function"
  elseif kind == "boolean" then bad = type(v) ~= "boolean" and "a boolean"
  elseif kind == "seconds" then
    bad = (type(v) ~= "number" or v ~= v or v <= 0 or v == math.huge) and "a positive number of seconds"
  elseif kind == "count" then bad = (math.type(v) ~= "integer" or v < 0) and "a non-negative integer"
  elseif kind == "version" then
    if v ~= "1.1" and v ~= "2" then
      error(string.format('%s: %s must be "1.1" or "2", got %s', who, k,
        type(v) == "string" and string.format("%q", v) or shown(v)), level + 1)
    end
  elseif kind == "expect" then
    if math.type(v) == "integer" then return end
    bad = "a status code or a list of them"
    if type(v) == "table" and #v > 0 then
      bad = nil
      for _, s in ipairs(v) do if math.type(s) ~= "integer" then bad = "a status code or a list of them" end end
    end
  end
  if bad then error(string.format("%s: %s must be %s, got %s", who, k, bad, shown(v)), level + 1) end
end

local NOT_FOR_CLIENTS = { method = true, url = true, stream = true }

local function check_headers(who, h, level)
  for k, v in pairs(h) do
    if type(k) ~= "string" or not k:match("^[%w!#$%%&'*+.^_`|~-]+$") then
      error(string.format("%s: invalid header name '%s'", who, tostring(k)), level + 1)
    end
    if v ~= false and type(v) ~= "number" and not is_text(v) then
      error(string.format("%s: headers['%s'] must be a string, a secret, a list of them or false, got %s",
        who, k, shown(v)), level + 1)
    end
    if v ~= false and type(v) ~= "number" and text_has(v, "[\r\n\0]") then
      error(string.format("%s: headers['%s'] contains a line break or NUL byte", who, k), level + 1)
    end
  end
end

local function query_value(v)
  local t = type(v)
  return t == "string" or t == "number" or t == "boolean" or secret.is(v)
end

local function is_list(v)
  if type(v) ~= "table" or getmetatable(v) ~= nil then return false end
  local n = #v
  for k in pairs(v) do
    if math.type(k) ~= "integer" or k < 1 or k > n then return false end
  end
  return true
end

-- query = {name = value or list of values}: anything else (a nested table)
-- would be silently left out of the URL.
local function check_query(who, q, level)
  for k, v in pairs(q) do
    if type(k) ~= "string" then
      error(string.format("%s: query keys must be strings, got %s", who, type(k)), level + 1)
    end
    if not query_value(v) then
      if not is_list(v) then
        error(string.format("%s: query.%s must be a string, number, boolean, secret or a list of them, got %s",
          who, k, type(v)), level + 1)
      end
      for i, item in ipairs(v) do
        if not query_value(item) then
          error(string.format("%s: query.%s[%d] must be a string, number, boolean or secret, got %s",
            who, k, i, type(item)), level + 1)
        end
      end
    end
  end
end

-- auth = {bearer = text} | {user = text, password = text}
local function check_auth(who, a, level)
  if a.bearer == nil and (a.user == nil or a.password == nil) then
    error(who .. ": auth must be {bearer = token} or {user = ..., password = ...}", level + 1)
  end
  for _, k in ipairs(a.bearer ~= nil and { "bearer" } or { "user", "password" }) do
    check_field(who, "auth." .. k, a[k], "text", level + 1)
  end
  if a.bearer ~= nil and text_has(a.bearer, "[\r\n\0]") then
    error(who .. ": auth.bearer contains a line break or NUL byte", level + 1)
  end
  if a.bearer == nil and text_has(a.user, ":") then error(who .. ": auth.user must not contain ':'", level + 1) end
end

local function check_spec(who, spec, level, extra)
  if type(spec) ~= "table" then error(who .. ": options must be a table, got " .. type(spec), level + 1) end
  for k, v in pairs(spec) do
    local kind = FIELDS[k] or (extra and extra[k])
    if not kind or (extra and NOT_FOR_CLIENTS[k]) then
      error(string.format("%s: unknown field '%s'", who, tostring(k)), level + 1)
    end
    check_field(who, k, v, kind, level + 1)
  end
  if spec.headers then check_headers(who, spec.headers, level + 1) end
  if spec.query then check_query(who, spec.query, level + 1) end
  if spec.body ~= nil and spec.json ~= nil then
    error(who .. ": give body or json, not both", level + 1)
  end
  if spec.url == nil and not extra then error(who .. ": url is required", level + 1) end
  if spec.method ~= nil and not spec.method:upper():match("^[%u%-]+$") then
    error(who .. ": invalid method '" .. spec.method .. "'", level + 1)
  end
  for _, k in ipairs { "url", "proxy" } do
    if spec[k] ~= nil and text_has(spec[k], "\0") then error(who .. ": " .. k .. " contains a NUL byte", level + 1) end
  end
  if spec.auth ~= nil then check_auth(who, spec.auth, level + 1) end
end

-- Whether headers h (or nil) has one named name (lower case), whatever its case.
local function has_header(h, name)
  for k in pairs(h or {}) do if k:lower() == name then return true end end
  return false
end

-- Checks of the request as it will go, a client's defaults included.
local function check_request(who, req, level)
  if req.method == "HEAD" and (req.body ~= nil or req.json ~= nil) then
    error(who .. ": a HEAD request has no body", level + 1)
  end
  if req.auth ~= nil and has_header(req.headers, "authorization") then
    error(who .. ": give auth or an Authorization header, not both", level + 1)
  end
end

-- Headers merged by name whatever its case; later tables win.
local function merge_headers(a, b)
  if not a then return b end
  if not b then return a end
  local out, names = {}, {}
  for _, t in ipairs { a, b } do
    for k, v in pairs(t) do
      local low = k:lower()
      if names[low] then out[names[low]] = nil end
      names[low] = k
      out[k] = v
    end
  end
  return out
end

local function absolute(url)
  return type(url) == "string" and url:match("^%a[%w+.-]*://") ~= nil
end

-- base_url joined with a relative url: "https://h/api" + "v1/x" -> "https://h/api/v1/x"
local function join(base, url)
  if base == nil or absolute(url) or (type(url) ~= "string") then return url end
  if url == "" then return base end
  local path = url:gsub("^/+", "")
  if type(base) == "string" then return (base:gsub("/+$", "")) .. "/" .. path end
  local pieces = secret.is(base) and { base } or { table.unpack(base) }
  pieces[#pieces + 1] = "/" .. path
  return pieces
end

-- ---- query strings, JSON bodies and secrets in them --------------------------------
-- (their values were checked with the options: check_query)

local function escape(s)
  return (s:gsub("[^%w%-%._~]", function(c) return string.format("%%%02X", c:byte()) end))
end

-- A secret's value as it will appear in the request, escaped by f: when that
-- differs from the value, the escaped form becomes a secret too (so it is
-- redacted wherever it shows up).
local function escaped_secret(v, f, name)
  local plain = secret.reveal(v)
  local e = f(plain)
  if e == plain then return v end
  return secret.value(e, name)
end

-- escape(text) -> text percent-encoded for a URL (RFC 3986 unreserved kept);
-- a secret gives a secret, so a token can go in a URL's user-info or path:
--   url = { "https://bot:", http.escape(token), "@git.example.com/x" }
function M.escape(v)
  if secret.is(v) then return escaped_secret(v, escape, "escaped") end
  if type(v) ~= "string" and type(v) ~= "number" then
    error("http.escape: expected a string or a secret, got " .. type(v), 2)
  end
  return escape(tostring(v))
end

local function add_query(url, query)
  local keys = {}
  for k in pairs(query) do keys[#keys + 1] = k end
  table.sort(keys)
  local pieces, text = {}, {}
  local function put(s) text[#text + 1] = s end
  local function flush()
    if #text > 0 then pieces[#pieces + 1] = table.concat(text) text = {} end
  end
  for _, k in ipairs(keys) do
    local v = query[k]
    for _, item in ipairs(query_value(v) and { v } or v) do
      if #pieces > 0 or #text > 0 then put("&") end
      put(escape(k) .. "=")
      if secret.is(item) then
        flush()
        pieces[#pieces + 1] = escaped_secret(item, escape, "query." .. k)
      else
        put(escape(tostring(item)))
      end
    end
  end
  flush()
  if #pieces == 0 then return url end
  local has_q
  if type(url) == "string" then has_q = url:find("?", 1, true)
  else
    for _, p in ipairs(secret.is(url) and { url } or url) do
      if not secret.is(p) and p:find("?", 1, true) then has_q = true end
    end
  end
  local out = type(url) == "table" and { table.unpack(url) } or { url }
  out[#out + 1] = has_q and "&" or "?"
  for _, p in ipairs(pieces) do out[#out + 1] = p end
  return out
end

-- The JSON text of v, with the values of any secrets in it (the redactor
-- knows their JSON-escaped forms: every secret's are registered).
local function json_body(v, who, level)
  local found = false
  local function reveal(x, depth)
    if depth > 100 then error("json is nested too deep (a cycle?)", 0) end
    if secret.is(x) then
      found = true
      return secret.reveal(x)
    end
    if type(x) ~= "table" then return x end
    local out = {}
    for k, val in pairs(x) do out[k] = reveal(val, depth + 1) end
    return setmetatable(out, getmetatable(x))
  end
  local ok, plain = pcall(reveal, v, 0)
  local text = plain
  if ok then ok, text = pcall(json.encode, found and plain or v) end
  if not ok then error(who .. ": json: " .. tostring(text), level + 1) end
  return text
end

-- ---- the C options of one request ---------------------------------------------------

-- tls_server_name: the URL names the server by that name (TLS SNI and
-- certificate check) while the connection goes to the URL's host and port
local function server_name(url, name, who, level)
  if type(url) ~= "string" then error(who .. ": tls_server_name needs a plain URL", level + 1) end
  local scheme, host, port, rest = url:match("^(https://)([^/:%[]+)(:?%d*)(.*)$")
  if not scheme then scheme, host, port, rest = url:match("^(https://)(%[[^%]]+%])(:?%d*)(.*)$") end
  if not scheme or port == ":" or not (rest == "" or rest:match("^[/?#]")) then
    error(who .. ": tls_server_name needs an https:// URL without user-info", level + 1)
  end
  if not name:match("^[%w.-]+$") then error(who .. ": tls_server_name must be a host name, got " .. name, level + 1) end
  port = port ~= "" and port:sub(2) or "443"
  return scheme .. name .. ":" .. port .. rest, string.format("%s:%s:%s:%s", name, port, host, port)
end

local function c_options(req, who, level)
  local o = {
    method = req.method, headers = req.headers, body = req.body, auth = req.auth,
    timeout = req.timeout, connect_timeout = req.connect_timeout, max_body = req.max_body,
    max_redirects = req.max_redirects, ca = req.ca, cert = req.cert, key = req.key,
    insecure = req.insecure, proxy = req.proxy, no_proxy = req.no_proxy,
    stream = req.stream ~= nil, http_version = req.http_version,
  }
  o.url = req.query and add_query(req.url, req.query) or req.url
  if req.tls_server_name then o.url, o.connect_to = server_name(o.url, req.tls_server_name, who, level + 1) end
  if req.json ~= nil then
    o.body = json_body(req.json, who, level + 1)
    local h = {}
    for k, v in pairs(req.headers or {}) do h[k] = v end
    if not has_header(h, "content-type") then h["Content-Type"] = "application/json" end
    if not has_header(h, "accept") then h["Accept"] = "application/json" end
    o.headers = h
  end
  return o
end

-- What a plan shows of a write: headers (credentials as ***) and the start
-- of the body. The gate redacts secret values on top of this.
local function detail(o)
  local lines, names = {}, {}
  for k in pairs(o.headers or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do
    local v = o.headers[k]
    if v ~= false then
      local shown = SENSITIVE[k:lower()] and "***" or _http.display(v, "header")
      lines[#lines + 1] = k .. ": " .. shown
    end
  end
  if o.auth then lines[#lines + 1] = "Authorization: ***" end
  if o.body ~= nil then
    local b = _http.display(o.body, "body")
    if not utf8.len(b) then
      -- bytes that are not text would corrupt the plan and the journal
      b = string.format("(a binary body: %d bytes, sha256 %s)", #b, require("relish.fs").sha256(b))
    elseif #b > 2048 then
      b = b:sub(1, 2048) .. string.format("\n... (%d bytes in all)", #b)
    end
    if #lines > 0 then lines[#lines + 1] = "" end
    lines[#lines + 1] = b
  end
  return table.concat(lines, "\n")
end

-- ---- one attempt, retries, expect -------------------------------------------------------

-- One transfer: returns response | nil, err; a stream's lines go to its
-- reader as they arrive (returning false from it stops the stream).
local function attempt(req, o, state)
  local t <close>, bad_url = _http.start(o)
  if not t then return nil, bad_url end
  local stopped = false
  while not stopped do
    local lines, done = t:wait()
    if lines then
      for _, line in ipairs(lines) do
        state.delivered = true
        if req.stream(line) == false then stopped = true break end
      end
    end
    if done then break end
  end
  local resp, err = t:result()
  if resp then
    resp.stopped = stopped or nil
    resp.method = req.method
    resp.ok = resp.status >= 200 and resp.status < 300
    setmetatable(resp, Response)
  end
  return resp, err
end

local function retryable(req)
  if req.idempotent ~= nil then return req.idempotent end
  return IDEMPOTENT[req.method] or req.effect == false
end

-- Attempts until a response that is not worth retrying, or no tries left.
-- Only idempotent requests are retried: on connection failures and on 429,
-- 502, 503 and 504, after the server's Retry-After or else an exponential
-- backoff with full jitter.
local function send(req, o)
  local tries = retryable(req) and req.retries + 1 or 1
  local state = {}
  local resp, err
  local n = 0
  while true do
    n = n + 1
    resp, err = attempt(req, o, state)
    if n == tries or state.delivered then break end
    local wait
    if resp then
      if not RETRY_STATUS[resp.status] then break end
      wait = resp.retry_after
      if wait and wait > req.max_retry_wait then break end -- longer than we are willing to wait
    elseif not RETRY_KINDS[err.kind] then
      break
    end
    task.sleep(wait or math.random() * math.min(req.max_backoff, req.backoff * 2 ^ (n - 1)))
  end
  local r = resp or err
  r.attempts = n
  return resp, err
end

local function expected(expect, status)
  if type(expect) == "number" then return status == expect end
  for _, s in ipairs(expect) do if s == status then return true end end
  return false
end

local function status_error(req, resp, display)
  local excerpt = secret.redact(resp.body:sub(1, 512))
  local want = type(req.expect) == "number" and tostring(req.expect) or table.concat(req.expect, " or ")
  local first = excerpt:match("^[^\n]*"):sub(1, 200)
  return new_error("http_status", string.format("%s %s: expected status %s, got %d%s", req.method, display,
    want, resp.status, first ~= "" and (": " .. first) or ""),
    { status = resp.status, body = excerpt, url = display, method = req.method, response = resp })
end

-- A normalized request: every field present, defaults applied.
local function normalize(spec, defaults)
  local req = {}
  for k, v in pairs(defaults or {}) do req[k] = v end
  for k, v in pairs(spec) do req[k] = v end
  if defaults then
    req.headers = merge_headers(defaults.headers, spec.headers)
    if defaults.query and spec.query then
      req.query = {}
      for _, q in ipairs { defaults.query, spec.query } do
        for k, v in pairs(q) do req.query[k] = v end
      end
    end
    req.url = join(defaults.base_url, spec.url)
    req.base_url = nil
  end
  req.method = (req.method or "GET"):upper()
  for _, k in ipairs { "retries", "backoff", "max_backoff", "max_retry_wait", "connect_timeout" } do
    if req[k] == nil then req[k] = DEFAULTS[k] end
  end
  if req.timeout == nil and req.stream == nil then req.timeout = DEFAULTS.timeout end
  return req
end

-- A request ready to send: its options checked, a client's defaults
-- applied, its C options (query string, JSON body) made. Misuse raises at
-- `level`, counted from the caller of prepare as error() counts.
local function prepare(who, spec, defaults, level)
  check_spec(who, spec, level + 1)
  local req = normalize(spec, defaults)
  check_request(who, req, level + 1)
  return req, c_options(req, who, level + 1)
end

-- The exchange: the response, or a raised error (a transfer that failed, a
-- status expect does not allow).
local function exchange(req, o, display)
  local resp, err = send(req, o)
  if not resp then
    err.code = nil -- kind only
    error(err, 0)
  end
  resp.url = resp.url or display
  if req.expect and not expected(req.expect, resp.status) then
    err = status_error(req, resp, display)
    err.attempts = resp.attempts
    error(err, 0)
  end
  return resp
end

-- A write is an effect of kind "http.<method>": irreversible (no undo: a
-- step that needs one gives its own), planned in a dry-run.
local function apply_write(w) return exchange(w.req, w.o, w.display) end
local function plan_write(w) return planned_response(w.req.method, w.display) end

for m in pairs(WRITES) do
  effect.register { kind = "http." .. m:lower(), module = "relish.http", apply = apply_write, plan = plan_write }
end

local function perform(req, o)
  local display = _http.display(o.url, "url")
  if WRITES[req.method] and req.effect ~= false then
    return effect.run("http." .. req.method:lower(), {
      target = display, describe = req.method .. " " .. display, detail = detail(o),
    }, { req = req, o = o, display = display })
  end
  return exchange(req, o, display)
end

-- request{method=, url=, headers=, query=, body=, json=, timeout=, ...} -> response;
-- raises when the exchange fails or the status is not one `expect` allows
function M.request(spec)
  return perform(prepare("http.request", spec, nil, 2))
end

-- get(url [, opts]) or get{url=, ...}; likewise post, put, patch, delete, head
local function verb(method, call)
  return function(a, b, c)
    local self, url, opts = nil, a, b
    if call then self, url, opts = a, b, c end
    local who = "http." .. method:lower()
    local spec = {}
    if type(url) == "table" and not is_text(url) then
      opts = url
    else
      if opts ~= nil and type(opts) ~= "table" then error(who .. ": options must be a table", 2) end
      spec.url = url
    end
    for k, v in pairs(opts or {}) do spec[k] = v end
    if spec.method ~= nil and spec.method:upper() ~= method then
      error(who .. ": method is " .. method, 2)
    end
    spec.method = method
    return perform(prepare(who, spec, self and self.defaults, 2))
  end
end

for _, m in ipairs { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD" } do
  M[m:lower()] = verb(m, false)
end

-- many(requests, {limit=}) -> responses: each request (a table for
-- request(), or a URL to GET) at most `limit` at a time (default 10).
-- responses[i] is the response of requests[i]. When any failed, every
-- request still runs to its end, then the first failure is raised, with
-- err.responses (those that succeeded), err.errors (index -> error) and
-- err.index (the first that failed).
-- Misuse raises at the caller of many's caller (http.many, client:many).
local function many(requests, opts, defaults)
  if type(requests) ~= "table" then error("http.many: requests must be a list", 3) end
  opts = opts or {}
  if type(opts) ~= "table" then error("http.many: options must be a table", 3) end
  for k in pairs(opts) do
    if k ~= "limit" then error("http.many: unknown option '" .. tostring(k) .. "'", 3) end
  end
  local limit = opts.limit
  if limit ~= nil and (math.type(limit) ~= "integer" or limit < 1) then
    error("http.many: limit must be a positive integer, got " .. shown(limit), 3)
  end
  local n = #requests
  local reqs, os = {}, {}
  for i = 1, n do
    local r = requests[i]
    if is_text(r) then r = { url = r } end
    if type(r) ~= "table" then error(string.format("http.many: requests[%d] must be a table or a URL", i), 3) end
    reqs[i], os[i] = prepare(string.format("http.many: requests[%d]", i), r, defaults, 3)
  end
  local fns = {}
  for i = 1, n do fns[i] = function() return perform(reqs[i], os[i]) end end
  local results = task.parallel(fns, { limit = limit or DEFAULTS.many_limit, settle = true })
  local responses, failed, first, count = {}, {}, nil, 0
  for i = 1, n do
    local r = results[i]
    if r.ok then
      responses[i] = r.value
    else
      failed[i], first, count = r.error, first or i, count + 1
    end
  end
  if first then
    local e = failed[first]
    if type(e) ~= "table" or type(e.kind) ~= "string" then error(e, 0) end -- not a failure: misuse in a reader
    local out = {}
    for k, v in pairs(e) do out[k] = v end
    out.message = string.format("http.many: %d of %d request(s) failed; requests[%d]: %s", count, n, first,
      tostring(e.message))
    out.responses, out.errors, out.index = responses, failed, first
    error(setmetatable(out, getmetatable(e)), 0)
  end
  return responses
end

-- (not tail calls: many's errors are raised two levels up)
function M.many(requests, opts)
  local responses = many(requests, opts, nil)
  return responses
end

-- ---- clients ----------------------------------------------------------------------------

local Client = { __name = "relish.http.Client" }
Client.__index = Client

-- client{base_url=, headers=, auth=, ca=, cert=, key=, insecure=, retries=,
-- timeout=, ...} -> a client whose requests share these settings. Every
-- request of the process shares one pool of connections, so a client's
-- requests to the same server reuse them.
function M.client(opts)
  check_spec("http.client", opts or {}, 2, CLIENT_ONLY)
  local d = {}
  for k, v in pairs(opts or {}) do d[k] = v end
  return setmetatable({ defaults = d }, Client)
end

function Client:request(spec)
  return perform(prepare("client:request", spec, self.defaults, 2))
end

for _, m in ipairs { "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD" } do
  Client[m:lower()] = verb(m, true)
end

function Client:many(requests, opts)
  local responses = many(requests, opts, self.defaults)
  return responses
end

return M
