-- Tests for relish.http against the fixture server (tests/fixtures/http_server.py):
-- what the server saw is the referee (requests, headers, bodies, peak in flight).
local http = require "relish.http"
local task = require "relish.task"
local json = require "relish.json"
local secret = require "relish.secret"
local gate = require "relish._gate"
local loop = require "relish._loop"
local fixture = require "http_fixture"
local support = require "support"
local try = require("relish._errors").try

-- The structured error fn(...) raises (try gives back every kind but the
-- stops, such as timeout, which it raises again).
local function failure(fn, ...)
  local ok, err = pcall(fn, ...)
  assert_false(ok, "expected an error")
  assert_eq(type(err) == "table" and type(err.kind), "string", "a structured error: " .. tostring(err))
  assert_nil(rawget(err, "code"), "kind only")
  return err
end

-- Connections this process holds open to a local port (client side), from
-- /proc/net/tcp: ESTABLISHED sockets whose remote port is `port`.
local function established_to(port)
  local n = 0
  for _, file in ipairs { "/proc/net/tcp", "/proc/net/tcp6" } do
    local f = io.open(file)
    if f then
      for line in f:lines() do
        local rem, st = line:match("^%s*%d+: %x+:%x+ %x+:(%x+) (%x%x)")
        if rem and tonumber(rem, 16) == port and st == "01" then n = n + 1 end
      end
      f:close()
    end
  end
  return n
end

local function eventually(pred, what)
  for _ = 1, 250 do
    if pred() then return end
    task.sleep(0.02)
  end
  error("never happened: " .. what, 2)
end

local function no_transfers_left()
  local st = loop.stats()
  assert_eq({ st.transfers, st.waiters, st.tasks }, { 0, 0, 0 })
end

describe("requests", function()
  test("GET sends the query and headers; the response has status, headers, body, json()", function()
    local fx <close> = fixture.start()
    local r, err = try(http.get, fx.url "/echo", { query = { b = { "x", "y z" }, a = 1, flag = true },
      headers = { ["X-Custom"] = "v1", Accept = "text/plain" } })
    assert_nil(err)
    assert_eq(r.status, 200)
    assert_true(r.ok)
    assert_eq(r.headers["Content-Type"], "application/json")
    assert_eq(r.headers["content-type"], "application/json")
    assert_eq(r.headers.CONTENT_TYPE, nil)
    assert_eq(r.version, "1.1")
    assert_eq(math.type(r.elapsed), "float")
    assert_eq(r.attempts, 1)
    local echo = assert(r:json())
    assert_eq(echo.method, "GET")
    assert_eq(echo.path, "/echo?a=1&b=x&b=y%20z&flag=true")
    assert_eq(echo.headers["x-custom"], "v1")
    assert_eq(echo.headers.accept, "text/plain")
    assert_eq(echo.headers["user-agent"], "relish/0.1.0")
    assert_nil(echo.headers.expect)
  end)

  test("every verb, with bodies and JSON", function()
    local fx <close> = fixture.start()
    local function echo(r)
      assert_eq(r.status, 200)
      return assert(r:json())
    end
    local e = echo(assert(http.post(fx.url "/echo", { json = { a = json.array { 1, 2 }, b = "x" } })))
    assert_eq({ e.method, e.headers["content-type"], json.decode(e.body) }, { "POST", "application/json", { a = { 1, 2 }, b = "x" } })
    e = echo(assert(http.put(fx.url "/echo", { body = "plain", headers = { ["Content-Type"] = "text/plain" } })))
    assert_eq({ e.method, e.body, e.headers["content-type"] }, { "PUT", "plain", "text/plain" })
    e = echo(assert(http.patch { url = fx.url "/echo", json = { op = "x" } }))
    assert_eq({ e.method, e.body }, { "PATCH", '{"op":"x"}' })
    e = echo(assert(http.delete(fx.url "/echo")))
    assert_eq({ e.method, e.body }, { "DELETE", "" })
    e = echo(assert(http.request { method = "options", url = fx.url "/echo" }))
    assert_eq(e.method, "OPTIONS")
    local h = assert(http.head(fx.url "/echo"))
    assert_eq({ h.status, h.body }, { 200, "" })
    assert_match(h.headers["content-length"], "^%d+$")
    local p = assert(http.post(fx.url "/echo"))
    assert_eq(echo(p).headers["content-length"], "0")
  end)

  test("a body that is not JSON: json() raises a json error", function()
    local fx <close> = fixture.start()
    local r = assert(http.get(fx.url "/status/200"))
    local err = failure(r.json, r)
    assert_eq(err.kind, "json")
    assert_match(tostring(err), "not JSON")
    local v, terr = try(r.json, r)
    assert_nil(v)
    assert_eq(terr.kind, "json")
  end)

  test("misuse raises at the caller, naming the field", function()
    assert_error(function() http.get("http://x/", { hedaers = {} }) end, "http.get: unknown field 'hedaers'")
    assert_error(function() http.request { url = "http://x/", timeout = -1 } end, "timeout must be a positive number")
    assert_error(function() http.request { url = "http://x/", retries = 1.5 } end, "retries must be a non%-negative integer")
    assert_error(function() http.post("http://x/", { body = "a", json = {} }) end, "give body or json, not both")
    assert_error(function() http.request { method = "GET" } end, "url is required")
    assert_error(function() http.request { url = "http://x/", method = "G T" } end, "invalid method")
    assert_error(function() http.request { url = "http://x/", expect = "200" } end, "expect must be a status code")
    assert_error(function() http.get(42) end, "url must be a string, a secret or a list of them, got 42")
    assert_error(function() http.request { url = "http://x/", auth = { token = "x" } } end, "auth must be")
    local msg = assert_error(function() http.get("http://x/", { headers = { ["Bad Name"] = "v" } }) end)
    assert_match(msg, "invalid header name 'Bad Name'")
    assert_error(function() http.get("http://x/", { headers = { X = "a\r\nInjected: 1" } }) end, "line break")
    local where = assert_error(function() http.get("http://x/", { nope = 1 }) end)
    assert_match(where, "http_test%.lua:%d+:")
  end)

  test("misuse names the bad value and points at the caller's line", function()
    local function raises(fn, message)
      local msg = assert_error(fn)
      assert_match(msg, "^[^\n]*http_test%.lua:%d+: ")
      assert_eq((msg:gsub("^.-http_test%.lua:%d+: ", "")), message)
    end
    raises(function() http.get("http://x/", { timeout = 0 }) end, "http.get: timeout must be a positive number of seconds, got 0")
    raises(function() http.get("http://x/", { retries = -1 }) end, "http.get: retries must be a non-negative integer, got -1")
    raises(function() http.get("http://x/", { retries = 1.5 }) end, "http.get: retries must be a non-negative integer, got 1.5")
    raises(function() http.get("http://x/", { timeout = "5" }) end, "http.get: timeout must be a positive number of seconds, got string")
    raises(function() http.get("http://x/", { http_version = "3" }) end, 'http.get: http_version must be "1.1" or "2", got "3"')
    raises(function() http.head("http://x/", { body = "x" }) end, "http.head: a HEAD request has no body")
    raises(function() http.get("http://x/", { auth = { user = "a:b", password = "p" } }) end,
      "http.get: auth.user must not contain ':'")
    raises(function() http.get("http://x/", { auth = { bearer = "a\nb" } }) end,
      "http.get: auth.bearer contains a line break or NUL byte")
    raises(function() http.get("http://x/", { headers = { X = { "a", "b\r\n" } } }) end,
      "http.get: headers['X'] contains a line break or NUL byte")
    raises(function() http.get("http://x/\0y") end, "http.get: url contains a NUL byte")
    raises(function() http.post("http://x/", { json = { f = print } }) end,
      "http.post: json: json.encode: cannot encode function at $.f")
    raises(function() http.many({ "http://x/" }, { limit = 0 }) end, "http.many: limit must be a positive integer, got 0")
    raises(function() http.client({}):many({ "x" }, { limit = 1.5 }) end, "http.many: limit must be a positive integer, got 1.5")
    raises(function() http.many({ { url = "http://x/", json = { f = print } } }) end,
      "http.many: requests[1]: json: json.encode: cannot encode function at $.f")
    raises(function() http.get("http://x/", { headers = { X = secret.value("sec\nret-1") } }) end,
      "http.get: headers['X'] contains a line break or NUL byte")
    raises(function() http.client({ auth = { bearer = "t" } }):get("http://x/", { headers = { authorization = "x" } }) end,
      "http.get: give auth or an Authorization header, not both")
  end)

  test("a query value that is neither a value nor a list of them raises, naming it", function()
    local fx <close> = fixture.start()
    local function raises(fn, message)
      local msg = assert_error(fn)
      assert_match(msg, "^[^\n]*http_test%.lua:%d+: ")
      assert_eq((msg:gsub("^.-http_test%.lua:%d+: ", "")), message)
    end
    raises(function() http.get(fx.url "/echo", { query = { a = { b = 1 } } }) end,
      "http.get: query.a must be a string, number, boolean, secret or a list of them, got table")
    raises(function() http.get(fx.url "/echo", { query = { a = { 1, { 2 } } } }) end,
      "http.get: query.a[2] must be a string, number, boolean or secret, got table")
    raises(function() http.get(fx.url "/echo", { query = { a = { 1, x = 2 } } }) end,
      "http.get: query.a must be a string, number, boolean, secret or a list of them, got table")
    raises(function() http.get(fx.url "/echo", { query = { a = print } }) end,
      "http.get: query.a must be a string, number, boolean, secret or a list of them, got function")
    raises(function() http.get(fx.url "/echo", { query = { "x" } }) end, "http.get: query keys must be strings, got number")
    assert_error(function() http.many({ fx.url "/echo", { url = fx.url "/echo", query = { a = { b = 1 } } } }) end,
      "http%.many: requests%[2%]: query%.a must be a string, number, boolean, secret or a list of them, got table")
    raises(function() http.client({ query = { a = { b = 1 } } }) end,
      "http.client: query.a must be a string, number, boolean, secret or a list of them, got table")
    assert_eq(#fx:requests(), 0)
    local e = assert(assert(http.get(fx.url "/echo", { query = { a = { 1, "x" }, b = {} } })):json())
    assert_eq(e.path, "/echo?a=1&a=x")
  end)

  test("the body is capped: max_body, and 64 MiB by default", function()
    local fx <close> = fixture.start()
    local r, err = try(http.get, fx.url "/large?bytes=5000", { max_body = 4096 })
    assert_nil(r)
    assert_eq(err.kind, "too_large")
    assert_match(err.message, "larger than max_body %(4096 bytes%)")
    assert(http.get(fx.url "/large?bytes=4096", { max_body = 4096 }))
    r, err = try(http.get, fx.url "/large?bytes=" .. (64 * 1024 * 1024 + 1))
    assert_eq(err and err.kind, "too_large")
    r = assert(http.get(fx.url "/large?bytes=" .. (64 * 1024 * 1024)))
    assert_eq(#r.body, 64 * 1024 * 1024)
  end)

  test("redirects are followed up to a limit", function()
    local fx <close> = fixture.start()
    local r = assert(http.get(fx.url "/redirect?n=3"))
    assert_eq(r.status, 200)
    assert_match(r.url, "/redirect%?n=0$")
    local err = failure(http.get, fx.url "/redirect?n=3", { max_redirects = 2 })
    assert_eq(err.kind, "redirect")
    r = assert(http.get(fx.url "/redirect?n=1", { max_redirects = 0 }))
    assert_eq({ r.status, r.headers.location }, { 302, "/redirect?n=0" })
  end)

  test("a proxy from the options or from the environment, and no_proxy", function()
    local fx <close> = fixture.start()
    local r = assert(http.get("http://service.invalid/echo", { proxy = fx.url "" }))
    assert_eq(assert(r:json()).path, "http://service.invalid/echo") -- an absolute URI: proxied
    local d = tmpdir()
    support.write(d .. "/p.lua", [[
local http = require "relish.http"
local r = assert(http.get(arg[1], { retries = 0 }))
print(require("relish.json").decode(r.body).path)
]])
    local out = support.relish { "lua", d .. "/p.lua", "http://service.invalid/echo", env = { http_proxy = fx.url "" } }
    assert_eq(out.stdout, "http://service.invalid/echo\n", out.stderr)
    out = support.relish { "lua", d .. "/p.lua", fx.url "/echo",
      env = { http_proxy = "http://127.0.0.1:1", no_proxy = "127.0.0.1" } }
    assert_eq(out.stdout, "/echo\n", out.stderr)
  end)

  test("connection failures and timeouts are errors with a kind", function()
    local fx <close> = fixture.start()
    local r, err = try(http.get, "http://127.0.0.1:1/nothing", { retries = 0 })
    assert_nil(r)
    assert_eq(err.kind, "connect")
    assert_match(err.message, "^GET http://127%.0%.0%.1:1/nothing: ")
    assert_nil(rawget(err, "code"), "kind only")
    err = failure(http.get, "http://127.0.0.1:1/nothing", { retries = 0 })
    assert_eq(err.kind, "connect")
    err = failure(http.get, fx.url "/reset", { retries = 0 })
    assert_eq(err.kind, "connection")
    err = failure(http.get, fx.url "/delay?ms=3000", { timeout = 0.2, retries = 0 })
    assert_eq(err.kind, "timeout")
    err = failure(http.get, "ftp://127.0.0.1/x")
    assert_eq(err.kind, "url")
  end)

  test("a timeout on a reused keep-alive connection is a timeout, sent once and not retried", function()
    local fx <close> = fixture.start()
    for _, method in ipairs { "GET", "POST" } do
      fx:reset()
      assert(http.get(fx.url "/echo")) -- leaves a keep-alive connection
      local err = failure(http.request, { method = method, url = fx.url "/delay?ms=5000", timeout = 0.3,
        body = method == "POST" and "x" or nil })
      assert_eq({ err.kind, err.attempts }, { "timeout", 1 }, method)
      local seen = fx:requests()
      assert_eq(#seen, 2, method .. ": /echo, then /delay once")
      assert_eq({ seen[2].method, seen[2].route }, { method, "/delay" })
      assert_eq(seen[2].conn, seen[1].conn, method .. ": the connection was reused")
    end
  end)

  test("a URL without http:// or https:// is a url error: nothing is sent", function()
    local fx <close> = fixture.start()
    local port = fx.ports.http
    for _, url in ipairs { "127.0.0.1:" .. port .. "/echo", "localhost:" .. port .. "/echo",
      "//127.0.0.1:" .. port .. "/echo", "http:127.0.0.1:" .. port .. "/echo", " http://127.0.0.1:" .. port .. "/echo",
      "not a url", "ftp://127.0.0.1/x" } do
      local r, err = try(http.get, url, { auth = { bearer = "no-scheme-token" } })
      assert_nil(r, url)
      assert_eq({ err.kind, err.attempts, err.method }, { "url", 1, "GET" }, url)
      assert_match(err.message, "^GET ", url)
    end
    local err = failure(http.post, { "127.0.0.1:" .. port, "/echo" }, { json = { a = 1 } })
    assert_eq(err.kind, "url")
    assert_eq(err.message, "POST 127.0.0.1:" .. port .. "/echo: the URL must start with http:// or https://")
    local c = http.client { base_url = "127.0.0.1:" .. port, auth = { bearer = "no-scheme-token" } }
    err = failure(c.get, c, "echo")
    assert_eq(err.kind, "url")
    err = failure(require("relish.notify").webhook, { url = "nope", retries = 0 })
    assert_eq(err.kind, "url")
    assert_eq(#fx:requests(), 0)
    assert(http.get("HTTP://127.0.0.1:" .. port .. "/echo")) -- the scheme in any case
  end)
end)

describe("TLS", function()
  test("verified against the CA given as a file or as PEM text; localhost by name", function()
    local fx <close> = fixture.start { tls = true }
    assert_eq(assert(http.get(fx.https "/status/200", { ca = fx.ca })).status, 200)
    assert_eq(assert(http.get(fx.https "/status/200", { ca = support.read(fx.ca) })).status, 200)
    local byname = fx.https("/status/200"):gsub("127%.0%.0%.1", "localhost")
    assert_eq(assert(http.get(byname, { ca = fx.ca })).status, 200)
  end)

  test("tls_server_name: the certificate is checked for that name, the connection goes to the URL's host", function()
    local fx <close> = fixture.start { tls = true }
    local url = fx.https "/status/200" -- 127.0.0.1, which the certificate also names
    assert_eq(assert(http.get(url, { ca = fx.ca, tls_server_name = "localhost" })).status, 200)
    -- a name the certificate does not hold fails, though the address would pass; and it is never resolved
    local err = failure(http.get, url, { ca = fx.ca, tls_server_name = "api.nowhere.invalid", retries = 0 })
    assert_eq(err.kind, "tls")
    assert_match(err.message, "api%.nowhere%.invalid")
    assert_misuse(function() http.get("http://127.0.0.1:1/", { tls_server_name = "x" }) end,
      "http.get: tls_server_name needs an https:// URL without user-info")
    assert_misuse(function() http.get("https://u:p@127.0.0.1:1/", { tls_server_name = "x" }) end,
      "http.get: tls_server_name needs an https:// URL without user-info")
    assert_misuse(function() http.get(url, { tls_server_name = "a b" }) end,
      "http.get: tls_server_name must be a host name, got a b")
    assert_eq(#fx:requests "/status/200", 1)
  end)

  test("a wrong CA is a clear tls error; insecure only when asked", function()
    local fx <close> = fixture.start { tls = true }
    local r, err = try(http.get, fx.https "/status/200", { ca = fx.other_ca, retries = 0 })
    assert_nil(r)
    assert_eq(err.kind, "tls")
    assert_match(err.message, "certificate")
    err = failure(http.get, fx.https "/status/200", { retries = 0 }) -- the system's CAs do not know ours
    assert_eq(err.kind, "tls")
    assert_eq(assert(http.get(fx.https "/status/200", { ca = fx.other_ca, insecure = true })).status, 200)
    assert_eq(#fx:requests "/status/200", 1) -- the refused ones never got to send anything
  end)

  test("client certificates, as files or as PEM text (the key a secret)", function()
    local fx <close> = fixture.start { tls = true }
    local r, err = try(http.get, fx.mtls "/client-cert", { ca = fx.ca, retries = 0 })
    assert_nil(r)
    assert_true(err.kind == "tls" or err.kind == "connection", err.kind)
    r = assert(http.get(fx.mtls "/client-cert", { ca = fx.ca, cert = fx.client_cert, key = fx.client_key }))
    assert_eq(assert(r:json()).subject, "relish-client")
    local key = secret.value(support.read(fx.client_key))
    r = assert(http.get(fx.mtls "/client-cert", { ca = fx.ca, cert = support.read(fx.client_cert), key = key }))
    assert_eq(assert(r:json()).subject, "relish-client")
  end)

  test("HTTP/2 when the server offers it", function()
    local fx <close> = fixture.start { h2 = true }
    if not fx.ports.h2 then skip("nghttpd (Debian package nghttp2-server) is not installed") end
    local r = assert(http.get(fx.h2 "/hello.txt", { ca = fx.ca }))
    assert_eq({ r.status, r.version, r.body }, { 200, "2", "hello over h2\n" })
    r = assert(http.get(fx.https "/status/200", { ca = fx.ca })) -- a server offering only HTTP/1.1
    assert_eq(r.version, "1.1")
  end)
end)

describe("retries", function()
  test("an idempotent request is retried on 503 until it succeeds", function()
    local fx <close> = fixture.start()
    local r = assert(http.get(fx.url "/flaky?key=a&fail=2", { backoff = 0.01 }))
    assert_eq({ r.status, r.attempts }, { 200, 3 })
    assert_eq(#fx:requests "/flaky", 3)
  end)

  test("retries run out: the last response comes back", function()
    local fx <close> = fixture.start()
    local r = assert(http.get(fx.url "/status/502", { retries = 3, backoff = 0.01 }))
    assert_eq({ r.status, r.attempts }, { 502, 4 })
    assert_eq(#fx:requests "/status/502", 4)
    r = assert(http.get(fx.url "/status/429", { retries = 0 }))
    assert_eq({ r.status, r.attempts }, { 429, 1 })
    r = assert(http.get(fx.url "/status/500", { backoff = 0.01 })) -- 500 is not worth retrying
    assert_eq(r.attempts, 1)
  end)

  test("Retry-After is honoured", function()
    local fx <close> = fixture.start()
    local r = assert(http.get(fx.url "/flaky?key=b&fail=1&retry_after=1", { backoff = 0.01 }))
    assert_eq({ r.status, r.attempts }, { 200, 2 })
    local seen = fx:requests "/flaky"
    assert_eq(#seen, 2)
    local gap = seen[2].start - seen[1]["end"]
    assert_true(gap >= 0.95, "the retry came " .. gap .. "s after the 503 asking for 1s")
  end)

  test("a Retry-After longer than max_retry_wait is not waited for", function()
    local fx <close> = fixture.start()
    local r = assert(http.get(fx.url "/flaky?key=c&fail=1&retry_after=120", { max_retry_wait = 5 }))
    assert_eq({ r.status, r.attempts, r.retry_after }, { 503, 1, 120 })
  end)

  test("connection resets are retried for GET", function()
    local fx <close> = fixture.start()
    local r = assert(http.get(fx.url "/flaky?key=d&fail=1&status=reset", { backoff = 0.01 }))
    assert_eq({ r.status, r.attempts }, { 200, 2 })
  end)

  test("a non-idempotent method is never retried (unless declared idempotent)", function()
    local fx <close> = fixture.start()
    -- first, on a fresh connection (libcurl itself resends once a request
    -- whose reused keep-alive connection turns out to be closed)
    local r, err = try(http.post, fx.url "/flaky?key=f&fail=1&status=reset", { retries = 5, backoff = 0.01 })
    assert_nil(r)
    assert_eq({ err.kind, err.attempts }, { "connection", 1 })
    r = assert(http.post(fx.url "/flaky?key=e&fail=1", { retries = 5, backoff = 0.01 }))
    assert_eq({ r.status, r.attempts }, { 503, 1 })
    r = assert(http.patch(fx.url "/flaky?key=g&fail=1", { retries = 5, backoff = 0.01 }))
    assert_eq({ r.status, r.attempts }, { 503, 1 })
    assert_eq(#fx:requests "/flaky", 3)
    r = assert(http.post(fx.url "/flaky?key=h&fail=1", { idempotent = true, backoff = 0.01 }))
    assert_eq({ r.status, r.attempts }, { 200, 2 })
    r = assert(http.post(fx.url "/flaky?key=i&fail=1", { effect = false, backoff = 0.01 }))
    assert_eq({ r.status, r.attempts }, { 200, 2 })
  end)
end)

describe("expect", function()
  test("another status is an error carrying the status and a body excerpt", function()
    local fx <close> = fixture.start()
    local r, err = try(http.get, fx.url "/status/404", { expect = 200 })
    assert_nil(r)
    assert_eq({ err.kind, err.status, err.body, err.attempts }, { "http_status", 404, "status 404", 1 })
    assert_match(tostring(err), "^GET http://127%.0%.0%.1:%d+/status/404: expected status 200, got 404: status 404$")
    assert_eq(err.response.status, 404)
    r = assert(http.get(fx.url "/status/201", { expect = { 200, 201 } }))
    assert_eq(r.status, 201)
    err = failure(http.get, fx.url "/status/503", { expect = 200, backoff = 0.01 })
    assert_eq(err.kind, "http_status")
    assert_eq({ err.status, err.response.attempts }, { 503, 3 }) -- retried first
  end)
end)

describe("streams", function()
  test("a line-delimited body is delivered line by line as it arrives", function()
    local fx <close> = fixture.start()
    local lines = {}
    local r = assert(http.get(fx.url "/lines?n=5&split=1&tail=last", {
      stream = function(line) lines[#lines + 1] = line end }))
    assert_eq(r.status, 200)
    assert_eq(r.body, "")
    assert_eq(#lines, 6)
    assert_eq(json.decode(lines[1]), { type = "ADDED", n = 1 })
    assert_eq(json.decode(lines[5]).n, 5)
    assert_eq(lines[6], "last")
  end)

  test("the reader can stop a stream; the connection is closed", function()
    local fx <close> = fixture.start()
    local got = 0
    local r = assert(http.get(fx.url "/lines?n=1000&interval_ms=20", { stream = function(line)
      got = got + 1
      if got == 3 then return false end
    end }))
    assert_eq({ r.status, r.stopped, got }, { 200, true, 3 })
    eventually(function() return fx:requests("/lines")[1].client_closed end, "the server saw the client leave")
    assert_eq(established_to(fx.ports.http), 0)
    no_transfers_left()
  end)

  test("an error status keeps its body whole instead of streaming it", function()
    local fx <close> = fixture.start()
    local lines = {}
    local r = assert(http.get(fx.url "/lines?n=2&status=410", { stream = function(l) lines[#lines + 1] = l end }))
    assert_eq(r.status, 410)
    assert_eq(#lines, 0)
    assert_match(r.body, '"n": 2')
  end)

  test("a reader's error closes the stream and is raised", function()
    local fx <close> = fixture.start()
    local ok, err = pcall(http.get, fx.url "/lines?n=100&interval_ms=20", { stream = function() error("reader broke") end })
    assert_false(ok)
    assert_match(err, "reader broke")
    no_transfers_left()
  end)
end)

describe("at once", function()
  test("many: responses in order, at most limit in flight", function()
    local fx <close> = fixture.start()
    local reqs = {}
    for i = 1, 12 do reqs[i] = fx.url("/delay?ms=200&i=" .. i) end
    reqs[13] = { url = fx.url "/status/404", expect = 200 }
    reqs[14] = { method = "POST", url = fx.url "/echo", json = { n = 14 } }
    local none, err = try(http.many, reqs, { limit = 4 })
    assert_nil(none)
    assert_eq({ err.kind, err.index, err.status }, { "http_status", 13, 404 })
    assert_match(err.message, "^http%.many: 1 of 14 request%(s%) failed; requests%[13%]: GET [^ ]*/status/404: expected status 200, got 404")
    local rs, errs = err.responses, err.errors
    for i = 1, 12 do assert_eq(rs[i].status, 200, "request " .. i) end
    assert_match(rs[1].url, "i=1$")
    assert_match(rs[12].url, "i=12$")
    assert_nil(rs[13])
    assert_eq(errs[13].kind, "http_status")
    assert_nil(errs[1])
    assert_eq(json.decode(rs[14]:json().body), { n = 14 })
    local peak = fx:stats().peak
    assert_true(peak <= 4 and peak >= 2, "peak in flight " .. peak)
    assert_eq(#fx:requests "/echo", 1, "every request ran to its end")
    rs = http.many({ fx.url "/status/200" })
    assert_eq(rs[1].status, 200)
    assert_error(function() http.many({ fx.url "/status/200", fx.url "/status/500", { url = "http://127.0.0.1:1/", retries = 0 } }) end,
      "http%.many: 1 of 3 request%(s%) failed; requests%[3%]: GET http://127%.0%.0%.1:1/")
    assert_error(function() http.many(reqs, { limt = 2 }) end, "unknown option 'limt'")
    assert_error(function() http.many({ { url = fx.url "/", hedaers = 1 } }) end, "requests%[1%]: unknown field")
    assert_error(function() http.many({ fx.url "/", { url = fx.url "/", headers = { ["a b"] = "x" } } }) end,
      "requests%[2%]: invalid header name 'a b'")
    assert_eq(#fx:requests "/", 0) -- checked before anything was sent
  end)

  test("task.parallel of requests respects its limit", function()
    local fx <close> = fixture.start()
    local fns = {}
    for i = 1, 9 do fns[i] = function() return assert(http.get(fx.url "/delay?ms=200")).status end end
    assert_eq(task.parallel(fns, { limit = 3 }), { 200, 200, 200, 200, 200, 200, 200, 200, 200 })
    local peak = fx:stats().peak
    assert_true(peak <= 3 and peak >= 2, "peak in flight " .. peak)
  end)

  test("requests and commands wait at the same time", function()
    local fx <close> = fixture.start()
    local sh = require "relish.sh"
    local r = task.parallel {
      function() return assert(http.get(fx.url "/delay?ms=100")).status end,
      function() return sh.run { argv = { "sh", "-c", "sleep 0.1; echo done" }, readonly = true }.stdout end,
    }
    assert_eq(r, { 200, "done\n" })
  end)

  test("cancelling (with_timeout) closes the transfers: no open connection left", function()
    local fx <close> = fixture.start()
    local ok, err = pcall(task.with_timeout, 0.3, function()
      http.many({ fx.url "/delay?ms=10000", fx.url "/delay?ms=10000", fx.url "/slow?bytes=100000&chunks=100" })
    end)
    assert_false(ok)
    assert_eq(err.kind, "timeout")
    no_transfers_left()
    assert_eq(established_to(fx.ports.http), 0)
    eventually(function() return fx:stats().open == 0 end, "the server's connections closed")
    for _, r in ipairs(fx:requests()) do assert_true(r.client_closed, r.path) end
  end)

  test("SIGINT during a request: exit 130, the server sees the client leave", function()
    local fx <close> = fixture.start()
    local d = tmpdir()
    support.write(d .. "/script.lua", string.format([[
local http = require "relish.http"
io.open(%q, "w"):close()
http.get(%q)
]], d .. "/ready", fx.url "/delay?ms=20000"))
    local r = support.signal_after({ "lua", d .. "/script.lua" }, d .. "/ready", "INT")
    assert_match(r.stdout, "code=130")
    eventually(function()
      local seen = fx:requests "/delay"
      return #seen == 0 or seen[1].client_closed
    end, "the request ended")
  end)

  test("a cancelled task's request ends; the step goes on", function()
    local fx <close> = fixture.start()
    local t = task.spawn(function() return http.get(fx.url "/delay?ms=10000") end)
    eventually(function() return fx:stats().in_flight == 1 end, "the request arrived")
    assert_true(t:cancel())
    assert_eq(t:status(), "cancelled")
    assert_eq(established_to(fx.ports.http), 0)
    assert_eq(assert(http.get(fx.url "/status/200")).status, 200)
  end)
end)

describe("clients", function()
  test("base_url, default headers and auth; connections are reused", function()
    local fx <close> = fixture.start()
    local c = http.client { base_url = fx.url "/", headers = { ["X-Team"] = "rel", Accept = "a/b" },
      auth = { bearer = "tok-123" }, retries = 0 }
    local e = assert(assert(c:get("echo", { headers = { accept = "c/d" } })):json())
    assert_eq(e.path, "/echo")
    assert_eq(e.headers["x-team"], "rel")
    assert_eq(e.headers.accept, "c/d")
    assert_eq(e.headers.authorization, "Bearer tok-123")
    assert(c:post("/echo", { json = {} }))
    local rs = c:many({ "/status/200", "/status/201" }, { limit = 1 })
    assert_eq({ rs[1].status, rs[2].status }, { 200, 201 })
    local seen = fx:requests()
    assert_eq(#seen, 4)
    for _, r in ipairs(seen) do assert_eq(r.conn, seen[1].conn, "one connection for every request") end
    assert_error(function() http.client { base = "x" } end, "unknown field 'base'")
    assert_error(function() http.client { url = "http://x/" } end, "unknown field 'url'")
  end)

  test("basic auth", function()
    local fx <close> = fixture.start()
    local c = http.client { auth = { user = "deploy", password = "pw-456" } }
    local e = assert(assert(c:get(fx.url "/echo")):json())
    assert_eq(e.headers.authorization, "Basic ZGVwbG95OnB3LTQ1Ng==")
  end)
end)

describe("secrets", function()
  local TOKEN = 'tok"en/+=9Zq'

  test("accepted in URL pieces, headers, auth, query and JSON; never shown", function()
    local fx <close> = fixture.start()
    local tok = secret.value(TOKEN, "token")
    local r = assert(http.post({ "http://bot:", http.escape(tok), "@127.0.0.1:" .. fx.ports.http .. "/echo" }, {
      headers = { ["X-Token"] = tok, ["X-Pieces"] = { "key=", tok } },
      query = { t = tok }, json = { token = tok, nested = { tok } } }))
    local e = assert(r:json())
    assert_eq(e.headers["x-token"], TOKEN)
    assert_eq(e.headers["x-pieces"], "key=" .. TOKEN)
    assert_eq(e.headers.authorization, "Basic Ym90OnRvayJlbi8rPTlacQ==") -- bot:<token>, from the URL
    assert_eq(json.decode(e.body), { token = TOKEN, nested = { TOKEN } })
    assert_match(e.path, "^/echo%?t=tok%%22en%%2F%%2B%%3D9Zq$")
    -- everything the server echoed back, redacted: no form of the token is left
    local shown = secret.redact(r.body)
    for _, form in ipairs { TOKEN, "tok%22en%2F%2B%3D9Zq", 'tok\\"en/+=9Zq', 'tok\\\\\\"en/+=9Zq', "Ym90OnRvayJlbi8rPTlacQ==" } do
      assert_nil(shown:find(form, 1, true), "visible: " .. form)
    end
    assert_eq(r.url, "http://***@127.0.0.1:" .. fx.ports.http .. "/echo?t=***")
    local _, err = try(http.get, { "http://bot:", http.escape(tok), "@127.0.0.1:1/x" }, { retries = 0, headers = { A = tok } })
    assert_eq(err.message, "GET http://***@127.0.0.1:1/x: " .. err.message:match(": (.*)$"))
    assert_nil(tostring(err):find("9Zq", 1, true))
  end)

  test("Authorization and Cookie values and URL user-info are redacted even as plain strings", function()
    local fx <close> = fixture.start()
    assert(http.get(fx.url "/echo", { headers = { Authorization = "Bearer plain-tok-777", Cookie = "sid=cookie-888" } }))
    assert(http.get("http://user:url-pw-999@127.0.0.1:" .. fx.ports.http .. "/echo"))
    local s = secret.redact("a plain-tok-777 b sid=cookie-888 c url-pw-999 d https://x:y@host/p")
    assert_eq(s, "a *** b *** c *** d https://***@host/p")
    assert_eq(secret.redact("ssh://git@h/r.git http://h/a@b mailto:a@b https://tok@h x://@h"),
      "ssh://***@h/r.git http://h/a@b mailto:a@b https://***@h x://@h")
  end)
end)

describe("effects", function()
  test("a dry-run plans writes and sends nothing; reads still go out", function()
    local fx <close> = fixture.start()
    local tok = secret.value("effect-secret-1", "t")
    local effects, r, g = gate.capture(function()
      local w = http.post(fx.url "/echo", { json = { a = 1, t = tok }, headers = { Authorization = { "Bearer ", tok } } })
      local read = assert(http.get(fx.url "/status/200"))
      return w, read
    end, { dry_run = true })
    assert_eq({ r.status, r.planned, r.body }, { 0, true, "" })
    assert_eq(g.status, 200)
    assert_eq(#fx:requests "/echo", 0)
    assert_eq(#fx:requests "/status/200", 1)
    assert_eq(#effects, 1)
    local a = effects[1]
    assert_eq({ a.kind, a.status, a.irreversible }, { "http.post", "planned", true })
    assert_eq(a.describe, "POST " .. fx.url "/echo")
    assert_match(a.detail, "Authorization: %*%*%*")
    assert_match(a.detail, '"t":"%*%*%*"')
    assert_nil(a.detail:find("effect-secret-1", 1, true))
  end)

  test("effect = false: a POST that changes nothing is sent even in a dry-run", function()
    local fx <close> = fixture.start()
    local effects, r = gate.capture(function()
      return assert(http.post(fx.url "/echo", { body = "query", effect = false }))
    end, { dry_run = true })
    assert_eq(#effects, 0)
    assert_eq(r.status, 200)
    assert_eq(#fx:requests "/echo", 1)
  end)

  test("writes for real: done, or failed when expect is not met", function()
    local fx <close> = fixture.start()
    local effects = gate.capture(function()
      assert(http.put(fx.url "/echo", { body = "x" }))
      assert(http.delete(fx.url "/echo"))
      assert_nil(try(http.patch, fx.url "/status/409", { body = "x", expect = 200 }))
      local err = failure(http.post, "http://127.0.0.1:1/refused", { retries = 0 })
      assert_eq(err.kind, "connect")
      assert(http.get(fx.url "/echo"))
    end)
    assert_eq(#effects, 4)
    assert_eq({ effects[1].kind, effects[1].status }, { "http.put", "done" })
    assert_eq({ effects[2].kind, effects[2].status }, { "http.delete", "done" })
    assert_eq({ effects[3].kind, effects[3].status }, { "http.patch", "failed" })
    assert_match(effects[3].error, "expected status 200, got 409")
    assert_eq({ effects[4].kind, effects[4].status }, { "http.post", "failed" })
    assert_match(effects[4].error, "^POST http://127%.0%.0%.1:1/refused: ")
  end)
end)

describe("text values", function()
  -- issue 8's audit: a number's string form in a text list lived only in a
  -- stack slot popped before the buffer copied it
  test("a list of pieces may hold numbers, whatever the collector does", function()
    local _http = require "relish._http"
    local old = collectgarbage("generational")
    for _ = 1, 300 do
      local parts = {}
      for k = 1, 40 do parts[k] = k % 2 == 0 and k + 0.5 or ("p" .. k) end
      local shown = _http.display(parts, "x")
      assert_eq(shown:sub(1, 15), "p12.5p34.5p56.5")
      assert_eq(shown:sub(-7), "p3940.5")
    end
    collectgarbage(old)
    assert_eq(_http.display({ "a", secret.value("sec-piece-1"), 7 }, "x"), "a***7")
  end)
end)

describe("binary bodies", function()
  test("a body that is not UTF-8 text is shown in the plan as its size and sha256", function()
    local fx <close> = fixture.start()
    local bin = "\0\255\254binary\128"
    local effects = gate.capture(function()
      http.put(fx.url "/echo", { body = bin, headers = { ["Content-Type"] = "application/octet-stream" } })
      http.post(fx.url "/echo", { body = "caf\u{e9} text" })
    end, { dry_run = true })
    assert_eq(effects[1].detail, "Content-Type: application/octet-stream\n\n(a binary body: 10 bytes, sha256 "
      .. require("relish.fs").sha256(bin) .. ")")
    assert_eq(effects[2].detail, "caf\u{e9} text")
    assert_eq(#fx:requests(), 0)
  end)
end)

describe("a refused write in a recipe", function()
  test("fails the step and rolls back what the run did before", function()
    local fx <close> = fixture.start()
    local d = tmpdir()
    local f = support.recipe(d, "refused.lua", string.format([[
local fs = require "relish.fs"
local http = require "relish.http"
return recipe "refused" {
  step "write" { run = function() fs.write(%q, "x") end },
  step "post" { run = function(ctx)
    local r, err = try(http.post, %q, { json = { probe = true }, expect = 200 })
    ctx.log("try gave %%s: %%s", tostring(r), err.kind)
    http.post(%q, { json = { release = "v1" }, expect = 200 })
    fs.write(%q, "x")
  end },
}
]], d .. "/written", fx.url "/status/500", fx.url "/status/500", d .. "/never"))
    local r = support.relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    local out = r.stdout .. r.stderr
    assert_match(out, "try gave nil: http_status")
    assert_match(out, "POST [^\n]*/status/500: expected status 200, got 500")
    assert_nil(out:find("Succeeded", 1, true))
    assert_nil(support.read(d .. "/written"), "rolled back")
    assert_nil(support.read(d .. "/never"))
    assert_eq(#fx:requests "/status/500", 2)
    local s = json.decode(support.relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    local statuses = {}
    for _, a in ipairs(s.actions) do statuses[#statuses + 1] = a.kind .. " " .. a.status end
    assert_eq(statuses, { "fs.write undone", "http.post failed", "http.post failed" })
  end)
end)

describe("writes in a recipe's plan", function()
  test("irreversible, unless the step has an undo", function()
    local fx <close> = fixture.start()
    local d = tmpdir()
    local f = support.recipe(d, "r.lua", string.format([[
local http = require "relish.http"
return recipe "writes" {
  step "no undo" { run = function() assert(http.post(%q, { json = { a = 1 } })) end },
  step "with undo" {
    run = function() assert(http.put(%q, { body = "x" })) end,
    undo = function() assert(http.delete(%q)) end,
  },
}
]], fx.url "/echo", fx.url "/echo", fx.url "/echo"))
    local r = support.relish { "run", f, "--dry-run", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "! POST [^\n]*/echo  %(irreversible%)")
    assert_match(r.stdout, "%+ PUT [^\n]*/echo\n")
    assert_match(r.stdout, "Plan: 2 action%(s%) %(1 irreversible%), nothing changed%.")
    assert_eq(#fx:requests(), 0)
  end)
end)

describe("a recipe with a secret", function()
  local TOKEN = 'rcp"Sec/+=77Xy'
  local RECIPE = [[
local http = require "relish.http"
local sh = require "relish.sh"
return recipe "secret-http" {
  params = { port = param.integer { required = true }, fail = param.boolean { default = false } },
  step "call" {
    run = function(ctx)
      local tok = ctx.secret("RELISH_TEST_TOKEN")
      local base = "127.0.0.1:" .. ctx.params.port
      local r = assert(http.post({ "http://bot:", http.escape(tok), "@", base, "/echo" }, {
        headers = { ["X-Token"] = tok, Authorization = { "Bearer ", tok } },
        json = { token = tok }, query = { t = tok }, expect = 200 }))
      ctx.log("echo: %s", r.body)
      local e = sh.run { argv = { "sh", "-c", 'echo "env: $TOKEN"' }, env = { TOKEN = tok }, readonly = true }
      ctx.log("sh: %s", e.stdout)
      local _, err = try(http.get, { "http://bot:", http.escape(tok), "@127.0.0.1:1/x" }, { retries = 0 })
      ctx.log("error: %s", tostring(err))
      ctx.state.note = "saw " .. require("relish.secret").reveal(tok)
      if ctx.params.fail then error("failing with " .. require("relish.secret").reveal(tok)) end
    end,
  },
}
]]

  test("no form of it reaches any output, the plan or the journal", function()
    local fx <close> = fixture.start()
    local d = tmpdir()
    local f = support.recipe(d, "secret.lua", RECIPE)
    local env = { RELISH_TEST_TOKEN = TOKEN }
    local port = "port=" .. fx.ports.http
    local state = support.state(d)
    local outputs = {}
    local function run(args)
      args.env = env
      local r = support.relish(args)
      outputs[#outputs + 1] = table.concat(args, " ") .. "\n" .. r.stdout .. r.stderr
      return r
    end
    -- a dry-run plans the POST and sends nothing
    local r = run { "run", f, "-p", port, "--dry-run", "--state", state }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "POST http://%*%*%*@127%.0%.0%.1:%d+/echo%?t=%*%*%*")
    assert_match(r.stdout, "irreversible")
    assert_eq(#fx:requests "/echo", 0)
    r = run { "plan", f, "-p", port, "-o", d .. "/plan.json", "--state", state }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    outputs[#outputs + 1] = support.read(d .. "/plan.json")
    -- for real, in text and in JSON, then failing (rollback: irreversible)
    r = run { "run", f, "-p", port, "--state", state }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "env: %*%*%*")
    assert_eq(#fx:requests "/echo", 1)
    assert_eq(fx:requests("/echo")[1].headers["x-token"], TOKEN) -- the server got the real one
    r = run { "run", f, "-p", port, "--output", "json", "--state", state }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    r = run { "run", f, "-p", port, "-p", "fail=true", "--state", state }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout, "failing with %*%*%*")
    for _, fmt in ipairs { "text", "json", "markdown" } do
      r = run { "show", "last", "--format", fmt, "--state", state }
      assert_eq(r.code, 0, r.stdout .. r.stderr)
    end
    run { "history", "--state", state }
    local journal = support.read(d .. "/journal.db") .. (support.read(d .. "/journal.db-wal") or "")
    assert_true(#journal > 0)
    local forms = { TOKEN, "rcp%22Sec%2F%2B%3D77Xy", 'rcp\\"Sec/+=77Xy', 'rcp\\\\\\"Sec/+=77Xy' }
    for _, text in ipairs(outputs) do
      for _, form in ipairs(forms) do
        assert_nil(text:find(form, 1, true), "visible in output: " .. form .. "\n" .. text)
      end
    end
    for _, form in ipairs(forms) do assert_nil(journal:find(form, 1, true), "in the journal: " .. form) end
    assert_match(table.concat(outputs), "echo: ")
  end)

  test("escaped once or twice as JSON, by http or by a command, it is still redacted", function()
    local fx <close> = fixture.start()
    local d = tmpdir()
    local f = support.recipe(d, "quote.lua", [==[
local http = require "relish.http"
local sh = require "relish.sh"
return recipe "quote" {
  params = { port = param.integer { required = true } },
  step "echo" {
    run = function(ctx)
      -- the server echoes the JSON body inside a JSON string: escaped twice
      local r = assert(http.post("http://127.0.0.1:" .. ctx.params.port .. "/echo",
        { json = { quote = ctx.secret("QTOKEN") }, expect = 200 }))
      ctx.log("%s", r.body)
      -- no http at all: a command prints secrets as JSON, Python-style
      -- (non-ASCII as \u escapes), once and twice
      local out = sh.run { readonly = true, env = { Q = ctx.secret("QTOKEN"), U = ctx.secret("UTOKEN") },
        argv = { "python3", "-c", "import json, os\nv = {'q': os.environ['Q'], 'u': os.environ['U']}\n"
          .. "print(json.dumps(v)); print(json.dumps(json.dumps(v)))\n"
          .. "print(json.dumps(v, ensure_ascii=False)); print(json.dumps(json.dumps(v, ensure_ascii=False), ensure_ascii=False))" } }
      ctx.log("%s", out.stdout)
    end,
  },
}
]==])
    local Q, U = 'q"u/o te%', "\u{fc}n\u{ef}\tcode-tok"
    local env = { QTOKEN = Q, UTOKEN = U }
    local state = support.state(d)
    local outputs = {}
    for _, args in ipairs {
      { "run", f, "-p", "port=" .. fx.ports.http, "--state", state },
      { "run", f, "-p", "port=" .. fx.ports.http, "--output", "json", "--state", state },
      { "show", "last", "--format", "json", "--state", state },
      { "show", "last", "--format", "text", "--state", state },
    } do
      args.env = env
      local r = support.relish(args)
      assert_eq(r.code, 0, r.stdout .. r.stderr)
      outputs[#outputs + 1] = r.stdout .. r.stderr
    end
    assert_eq(json.decode(fx:requests("/echo")[1].body), { quote = Q }) -- the server got the real one
    assert_match(outputs[1], '"body": "{\\"quote\\":\\"%*%*%*\\"}"')
    outputs[#outputs + 1] = support.read(d .. "/journal.db") .. (support.read(d .. "/journal.db-wal") or "")
    local forms = {
      Q, 'q\\"u/o te%', 'q\\\\\\"u/o te%', U, "\u{fc}n\u{ef}\\tcode-tok", "\u{fc}n\u{ef}\\\\tcode-tok",
      "\\u00fcn\\u00ef\\tcode-tok", "\\\\u00fcn\\\\u00ef\\\\tcode-tok",
      "te%", "code-tok", -- no piece of either
    }
    for i, text in ipairs(outputs) do
      for _, form in ipairs(forms) do
        assert_nil(text:find(form, 1, true), "visible in output " .. i .. ": " .. form .. "\n" .. text)
      end
    end
  end)
end)
