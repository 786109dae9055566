-- relish.k8s.config: the kubeconfig rules kubectl follows (merge order,
-- relative paths, -data over paths, token over tokenFile, exec plugins v1 and
-- v1beta1 with expiry and a re-run, in-cluster), errors naming the file and
-- the field, and every credential a secret.
local config = require "relish.k8s.config"
local json = require "relish.json"
local secret = require "relish.secret"
local output = require "relish.output"
local support = require "support"
local try = require("relish._errors").try

local write, read = support.write, support.read

-- an environment for resolve: only what the table holds
local function env(t) return function(k) return t[k] end end

local function kubeconfig(path, clusters, users, contexts, current)
  local lines = { "apiVersion: v1", "kind: Config" }
  if current then lines[#lines + 1] = "current-context: " .. current end
  local function list(name, field, entries)
    if not entries then return end
    lines[#lines + 1] = name .. ":"
    for _, e in ipairs(entries) do
      lines[#lines + 1] = "- name: " .. e[1]
      lines[#lines + 1] = "  " .. field .. ":"
      for k, v in pairs(e[2]) do lines[#lines + 1] = "    " .. k .. ": " .. json.encode(v) end
    end
  end
  list("clusters", "cluster", clusters)
  list("users", "user", users)
  list("contexts", "context", contexts)
  write(path, table.concat(lines, "\n") .. "\n")
  return path
end

local function config_error(fn, pattern)
  local r, err = try(fn)
  assert_nil(r)
  assert_eq(err.kind, "config", tostring(err))
  assert_match(err.message, pattern)
  return err
end

describe("which kubeconfig", function()
  test("KUBECONFIG is a ':' list: the first file defining a name wins the whole entry; missing files skipped", function()
    local d = tmpdir()
    local a = kubeconfig(d .. "/a", { { "c1", { server = "https://a.example:6443" } } },
      { { "u1", { token = "token-from-a" } } }, { { "ctx", { cluster = "c1", user = "u1", namespace = "ns-a" } } })
    local b = kubeconfig(d .. "/b", { { "c1", { server = "https://b.example:6443" } }, { "c2", { server = "https://c2:1" } } },
      { { "u1", { token = "token-from-b" } } }, { { "ctx", { cluster = "c2", user = "u1" } }, { "other", { cluster = "c2" } } },
      "ctx")
    local cfg = config.resolve({}, env { KUBECONFIG = d .. "/missing:" .. a .. ":" .. b })
    -- current-context from b (the first file that sets it), the context itself from a
    assert_eq(cfg.context, "ctx")
    assert_eq(cfg.server, "https://a.example:6443")
    assert_eq(cfg.namespace, "ns-a")
    assert_eq(secret.reveal(cfg:credentials().auth.bearer), "token-from-a")
    local other = config.resolve({ context = "other" }, env { KUBECONFIG = a .. ":" .. b })
    assert_eq(other.server, "https://c2:1")
    assert_eq(other.namespace, "default")
    assert_nil(other:credentials().auth)
  end)

  test("kubeconfig= wins over KUBECONFIG, and must exist", function()
    local d = tmpdir()
    local a = kubeconfig(d .. "/a", { { "c", { server = "https://given:1" } } }, nil, { { "x", { cluster = "c" } } }, "x")
    local b = kubeconfig(d .. "/b", { { "c", { server = "https://env:1" } } }, nil, { { "x", { cluster = "c" } } }, "x")
    assert_eq(config.resolve({ kubeconfig = a }, env { KUBECONFIG = b }).server, "https://given:1")
    config_error(function() return config.resolve({ kubeconfig = d .. "/nope" }, env {}) end, "kubeconfig .*/nope")
  end)

  test("~/.kube/config without KUBECONFIG; namespace: explicit, then the context's, then default", function()
    local home = tmpdir()
    assert(os.execute("mkdir " .. home .. "/.kube"))
    kubeconfig(home .. "/.kube/config", { { "c", { server = "https://home:1/" } } }, nil,
      { { "x", { cluster = "c", namespace = "team" } } }, "x")
    local e = env { HOME = home }
    assert_eq(config.resolve({}, e).server, "https://home:1")
    assert_eq(config.resolve({}, e).namespace, "team")
    assert_eq(config.resolve({ namespace = "mine" }, e).namespace, "mine")
  end)

  test("in-cluster when no kubeconfig exists: service host and port, the account's token, CA and namespace", function()
    local d = tmpdir()
    write(d .. "/token", "sa-token-1\n")
    write(d .. "/ca.crt", "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
    write(d .. "/namespace", "payments")
    local e = env { HOME = d, KUBERNETES_SERVICE_HOST = "10.0.0.1", KUBERNETES_SERVICE_PORT = "443",
      RELISH_K8S_SERVICEACCOUNT = d }
    local cfg = config.resolve({}, e)
    assert_eq(cfg.server, "https://10.0.0.1:443")
    assert_eq(cfg.namespace, "payments")
    assert_match(cfg.ca, "BEGIN CERTIFICATE")
    assert_eq(secret.reveal(cfg:credentials().auth.bearer), "sa-token-1")
    -- the token rotates: a refresh (after a 401) reads it again
    write(d .. "/token", "sa-token-2\n")
    assert_eq(secret.reveal(cfg:credentials(true).auth.bearer), "sa-token-2")
    assert_eq(config.resolve({}, env { HOME = d, KUBERNETES_SERVICE_HOST = "fd00::1", KUBERNETES_SERVICE_PORT = "6443",
      RELISH_K8S_SERVICEACCOUNT = d }).server, "https://[fd00::1]:6443")
    config_error(function() return config.resolve({}, env { HOME = d }) end, "no kubeconfig found .*KUBERNETES_SERVICE_HOST")
  end)
end)

describe("clusters and users", function()
  test("relative paths resolve against the file that defined the entry; -data wins over the path", function()
    local d = tmpdir()
    assert(os.execute("mkdir -p " .. d .. "/conf/certs " .. d .. "/other"))
    write(d .. "/conf/certs/ca.pem", "CA FROM FILE")
    write(d .. "/conf/certs/client.pem", "CERT FROM FILE")
    write(d .. "/conf/certs/client.key", "KEY FROM FILE")
    local f = kubeconfig(d .. "/conf/kc", { { "c", { server = "https://x:1", ["certificate-authority"] = "certs/ca.pem" } } },
      { { "u", { ["client-certificate"] = "certs/client.pem", ["client-key"] = "certs/client.key" } } },
      { { "x", { cluster = "c", user = "u" } } }, "x")
    local cfg = config.resolve({}, env { KUBECONFIG = f, PWD = d .. "/other" })
    assert_eq(cfg.ca, "CA FROM FILE")
    local cred = cfg:credentials()
    assert_eq(cred.cert, "CERT FROM FILE")
    assert_true(secret.is(cred.key))
    assert_eq(secret.reveal(cred.key), "KEY FROM FILE")
    local g = kubeconfig(d .. "/other/kc", { { "c", { server = "https://x:1", ["certificate-authority"] = "nope.pem",
      ["certificate-authority-data"] = output.base64("CA FROM DATA") } } },
      { { "u", { ["client-certificate"] = "nope", ["client-certificate-data"] = output.base64("CERT DATA"),
        ["client-key"] = "nope", ["client-key-data"] = output.base64("KEY DATA") } } },
      { { "x", { cluster = "c", user = "u" } } }, "x")
    cfg = config.resolve({}, env { KUBECONFIG = g })
    assert_eq(cfg.ca, "CA FROM DATA")
    assert_eq(cfg:credentials().cert, "CERT DATA")
    assert_eq(secret.reveal(cfg:credentials().key), "KEY DATA")
  end)

  test("token wins over tokenFile; tokenFile is read relative to its kubeconfig and re-read on refresh", function()
    local d = tmpdir()
    write(d .. "/tok", "file-token-1\n")
    local both = kubeconfig(d .. "/both", { { "c", { server = "https://x:1" } } },
      { { "u", { token = "inline-token", tokenFile = "tok" } } }, { { "x", { cluster = "c", user = "u" } } }, "x")
    assert_eq(secret.reveal(config.resolve({}, env { KUBECONFIG = both }):credentials().auth.bearer), "inline-token")
    local file = kubeconfig(d .. "/file", { { "c", { server = "https://x:1" } } },
      { { "u", { tokenFile = "tok" } } }, { { "x", { cluster = "c", user = "u" } } }, "x")
    local cfg = config.resolve({}, env { KUBECONFIG = file })
    assert_eq(secret.reveal(cfg:credentials().auth.bearer), "file-token-1")
    write(d .. "/tok", "file-token-2\n")
    assert_eq(secret.reveal(cfg:credentials(true).auth.bearer), "file-token-2")
  end)

  test("username and password are HTTP Basic; with a token it is an error, as in kubectl", function()
    local d = tmpdir()
    local f = kubeconfig(d .. "/kc", { { "c", { server = "https://x:1" } } },
      { { "u", { username = "admin", password = "hunter2-pw" } } }, { { "x", { cluster = "c", user = "u" } } }, "x")
    local auth = config.resolve({}, env { KUBECONFIG = f }):credentials().auth
    assert_eq(auth.user, "admin")
    assert_eq(secret.reveal(auth.password), "hunter2-pw")
    local g = kubeconfig(d .. "/kc2", { { "c", { server = "https://x:1" } } },
      { { "u", { username = "admin", password = "pw1", token = "t1" } } }, { { "x", { cluster = "c", user = "u" } } }, "x")
    config_error(function() return config.resolve({}, env { KUBECONFIG = g }) end,
      "users%[0%] %(u%)%.user: more than one authentication method")
  end)

  test("tls-server-name, proxy-url and insecure-skip-tls-verify are kept; insecure with a CA is an error", function()
    local d = tmpdir()
    local f = kubeconfig(d .. "/kc", { { "c", { server = "https://10.1.1.1:6443", ["tls-server-name"] = "api.internal",
      ["proxy-url"] = "socks5://proxy:1080" } }, { "i", { server = "https://x:1", ["insecure-skip-tls-verify"] = true } },
      { "bad", { server = "https://x:1", ["insecure-skip-tls-verify"] = true,
        ["certificate-authority-data"] = output.base64("CA") } } }, nil,
      { { "x", { cluster = "c" } }, { "i", { cluster = "i" } }, { "bad", { cluster = "bad" } } }, "x")
    local e = env { KUBECONFIG = f }
    local cfg = config.resolve({}, e)
    assert_eq(cfg.tls_server_name, "api.internal")
    assert_eq(cfg.proxy, "socks5://proxy:1080")
    assert_true(config.resolve({ context = "i" }, e):credentials().insecure)
    config_error(function() return config.resolve({ context = "bad" }, e) end,
      "clusters%[2%] %(bad%)%.cluster: insecure%-skip%-tls%-verify together with a certificate authority")
  end)

  test("errors name the file and the field", function()
    local d = tmpdir()
    local f = kubeconfig(d .. "/kc", { { "c", { ["insecure-skip-tls-verify"] = true } } },
      { { "u", { ["client-certificate"] = "missing.pem", ["client-key"] = "missing.key" } },
        { "half", { ["client-certificate-data"] = output.base64("C") } } },
      { { "x", { cluster = "c" } }, { "y", { cluster = "nope" } }, { "z", { cluster = "ok", user = "u" } },
        { "h", { cluster = "ok", user = "half" } } }, "x")
    write(d .. "/ok", "clusters:\n- name: ok\n  cluster: {server: 'https://ok:1'}\n")
    local e = env { KUBECONFIG = f .. ":" .. d .. "/ok" }
    config_error(function() return config.resolve({}, e) end, "^" .. d:gsub("%p", "%%%0") .. "/kc: clusters%[0%] %(c%)%.cluster%.server is required")
    config_error(function() return config.resolve({ context = "y" }, e) end, "contexts%[1%] %(y%)%.context%.cluster: cluster \"nope\" does not exist")
    config_error(function() return config.resolve({ context = "z" }, e) end, "users%[0%] %(u%)%.user%.client%-certificate: cannot read .*missing%.pem")
    config_error(function() return config.resolve({ context = "h" }, e) end, "client%-certificate and client%-key go together")
    config_error(function() return config.resolve({ context = "none" }, e) end, "context \"none\" does not exist")
    write(d .. "/broken", "clusters: [\n")
    config_error(function() return config.resolve({ kubeconfig = d .. "/broken" }, env {}) end, "kubeconfig .*/broken: ")
    write(d .. "/baddata", "clusters:\n- name: c\n  cluster: {server: 'https://x:1', certificate-authority-data: '%%%'}\n"
      .. "contexts:\n- name: x\n  context: {cluster: c}\ncurrent-context: x\n")
    config_error(function() return config.resolve({ kubeconfig = d .. "/baddata" }, env {}) end,
      "certificate%-authority%-data is not base64")
  end)
end)

describe("exec plugins", function()
  -- a plugin that records its environment and how often it ran, and prints
  -- an ExecCredential of the asked apiVersion
  local function plugin(d, body)
    write(d .. "/plugin.sh", "#!/bin/sh\necho run >> \"$COUNT\"\nprintf '%s' \"$KUBERNETES_EXEC_INFO\" > \"$INFO\"\n"
      .. body, 493)
  end
  local function exec_kubeconfig(d, exec, cluster)
    cluster = cluster or { server = "https://x:1" }
    local lines = { "current-context: x", "contexts:", "- name: x", "  context: {cluster: c, user: u}",
      "clusters:", "- name: c", "  cluster: " .. json.encode(cluster), "users:", "- name: u", "  user:",
      "    exec: " .. json.encode(exec) }
    write(d .. "/kc", table.concat(lines, "\n") .. "\n")
    return d .. "/kc"
  end
  local function runs(d) local s = read(d .. "/count") or "" return select(2, s:gsub("run", "")) end

  for _, version in ipairs { "client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1" } do
    test(version .. ": the token it prints, KUBERNETES_EXEC_INFO with the cluster, a relative command", function()
      local d = tmpdir()
      plugin(d, string.format([[echo '{"kind":"ExecCredential","apiVersion":"%s","status":{"token":"exec-token-%s"}}']],
        version, version:match("v%w+$")))
      local kc = exec_kubeconfig(d, { apiVersion = version, command = "./plugin.sh", interactiveMode = "Never",
        provideClusterInfo = true, env = { { name = "COUNT", value = d .. "/count" }, { name = "INFO", value = d .. "/info" } } },
        { server = "https://x:1", ["certificate-authority-data"] = output.base64("THE CA") })
      local cfg = config.resolve({}, env { KUBECONFIG = kc })
      local tok = cfg:credentials().auth.bearer
      assert_true(secret.is(tok))
      assert_eq(secret.reveal(tok), "exec-token-" .. version:match("v%w+$"))
      assert_eq(secret.redact("got exec-token-" .. version:match("v%w+$")), "got ***")
      local info = json.decode(read(d .. "/info"))
      assert_eq(info.kind, "ExecCredential")
      assert_eq(info.apiVersion, version)
      assert_eq(info.spec.interactive, false)
      assert_eq(info.spec.cluster.server, "https://x:1")
      assert_eq(info.spec.cluster["certificate-authority-data"], output.base64("THE CA"))
      -- no expiry: cached for the connection; a 401 runs it once more
      cfg:credentials()
      assert_eq(runs(d), 1)
      cfg:credentials(true)
      assert_eq(runs(d), 2)
    end)
  end

  test("cached until expirationTimestamp; client certificates from the plugin", function()
    local d = tmpdir()
    plugin(d, [[echo '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"clientCertificateData":"CERT PEM","clientKeyData":"KEY PEM","expirationTimestamp":"2001-01-01T00:00:00Z"}}']])
    local kc = exec_kubeconfig(d, { apiVersion = "client.authentication.k8s.io/v1", command = d .. "/plugin.sh",
      interactiveMode = "IfAvailable", env = { { name = "COUNT", value = d .. "/count" }, { name = "INFO", value = d .. "/info" } } })
    local cfg = config.resolve({}, env { KUBECONFIG = kc })
    local c = cfg:credentials()
    assert_eq(c.cert, "CERT PEM")
    assert_eq(secret.reveal(c.key), "KEY PEM")
    assert_nil(json.decode(read(d .. "/info")).spec.cluster) -- no provideClusterInfo
    cfg:credentials()
    assert_eq(runs(d), 2) -- expired long ago: run again each time
    plugin(d, [[echo '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{"token":"long-lived-token","expirationTimestamp":"2999-01-01T00:00:00+01:00"}}']])
    cfg:credentials()
    cfg:credentials()
    assert_eq(runs(d), 3)
  end)

  test("a plugin that fails or prints something else, a missing interactiveMode: config errors naming the user", function()
    local d = tmpdir()
    local base = { apiVersion = "client.authentication.k8s.io/v1", command = d .. "/plugin.sh", interactiveMode = "Never",
      env = { { name = "COUNT", value = d .. "/count" }, { name = "INFO", value = d .. "/info" } } }
    plugin(d, "echo nope; exit 3")
    local cfg = config.resolve({}, env { KUBECONFIG = exec_kubeconfig(d, base) })
    config_error(function() return cfg:credentials() end, "users%[0%] %(u%)%.user%.exec: the plugin .*plugin%.sh failed")
    plugin(d, [[echo '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1beta1","status":{"token":"t"}}']])
    cfg = config.resolve({}, env { KUBECONFIG = exec_kubeconfig(d, base) })
    config_error(function() return cfg:credentials() end, "answered apiVersion client%.authentication%.k8s%.io/v1beta1")
    plugin(d, [[echo '{"kind":"ExecCredential","apiVersion":"client.authentication.k8s.io/v1","status":{}}']])
    cfg = config.resolve({}, env { KUBECONFIG = exec_kubeconfig(d, base) })
    config_error(function() return cfg:credentials() end, "neither status%.token nor clientCertificateData")
    local v1 = { apiVersion = "client.authentication.k8s.io/v1", command = "x" }
    config_error(function() return config.resolve({}, env { KUBECONFIG = exec_kubeconfig(d, v1) }) end,
      "exec%.interactiveMode is required")
    config_error(function()
      return config.resolve({}, env { KUBECONFIG = exec_kubeconfig(d, { apiVersion = "client.authentication.k8s.io/v1alpha1", command = "x" }) })
    end, "exec%.apiVersion client%.authentication%.k8s%.io/v1alpha1 is not supported")
  end)

  test("a token in the kubeconfig wins over the plugin, which then never runs", function()
    local d = tmpdir()
    plugin(d, "exit 1")
    write(d .. "/kc", table.concat({ "current-context: x", "contexts:", "- name: x", "  context: {cluster: c, user: u}",
      "clusters:", "- name: c", "  cluster: {server: 'https://x:1'}", "users:", "- name: u", "  user:",
      "    token: static-token-1", "    exec: " .. json.encode { apiVersion = "client.authentication.k8s.io/v1",
        command = d .. "/plugin.sh", interactiveMode = "Never", env = { { name = "COUNT", value = d .. "/count" } } } }, "\n"))
    assert_eq(secret.reveal(config.resolve({}, env { KUBECONFIG = d .. "/kc" }):credentials().auth.bearer), "static-token-1")
    assert_eq(runs(d), 0)
  end)
end)

describe("RFC 3339 times", function()
  test("UTC, offsets and fractions", function()
    assert_eq(config.parse_time("1970-01-01T00:00:00Z"), 0)
    assert_eq(config.parse_time("2024-02-29T12:00:00Z"), 1709208000)
    assert_eq(config.parse_time("2024-02-29T13:30:00+01:30"), 1709208000)
    assert_eq(config.parse_time("2000-03-01T00:00:00.5Z"), 951868800.5)
    assert_nil(config.parse_time("yesterday"))
  end)
end)
