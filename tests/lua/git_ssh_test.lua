-- relish.git over ssh against a real OpenSSH sshd on a loopback port: a key
-- file (with and without a passphrase), the ssh-agent, refused keys (kind
-- auth) and an unknown host key (kind network: libgit2 checks the host
-- against ~/.ssh/known_hosts). relish runs as a subprocess (`relish lua`) so
-- that HOME (known_hosts) and SSH_AUTH_SOCK are the test's own.
local G = require "gitsupport"
local support = require "support"
local json = require "relish.json"

local ssh, agent
after_each(function()
  if agent then agent:stop() end
  if ssh then ssh:stop() end
  ssh, agent = nil, nil
end)

local CLIENT = [[
local git = require "relish.git"
local json = require "relish.json"
local secret = require "relish.secret"
local try = require("relish._errors").try
local op, a, b, how, key = ...
local auth
if how == "agent" then
  auth = "agent"
elseif how == "key" then
  local pass = os.getenv("KEY_PASS")
  auth = { ssh_key = key, passphrase = pass and secret.value(pass, "KEY_PASS") or nil }
end
local r, err
if op == "clone" then
  r, err = try(git.clone, a, b, { auth = auth })
  if r then r = r:head().id end
else
  local repo <close> = assert(git.open(a))
  if op == "fetch" then
    r, err = try(repo.fetch, repo, "origin", { auth = auth })
    if r then r = repo:resolve("refs/remotes/origin/main") end
  else
    r, err = try(repo.push, repo, { auth = auth })
    if r then r = repo:head().id end
  end
end
print(json.encode(err and { kind = err.kind, message = err.message } or { id = r }))
]]

-- libgit2 1.5 leaks each ssh connection's known_hosts list (libgit2#6598):
-- suppressed for these subprocesses only, so a sanitizer build still checks relish
local SUPP = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/../fixtures/lsan-libgit2-ssh.supp"

-- client(d, env, op, args...) -> { id = } | { kind =, message = } from a relish subprocess
local function client(d, env, ...)
  local script = d .. "/client.lua"
  if not G.read(script) then support.write(script, CLIENT) end
  env.LSAN_OPTIONS = "fast_unwind_on_malloc=0:suppressions=" .. SUPP
  local r = support.relish({ "lua", script, ... }, { env = G.env(env), timeout = 120 })
  assert(r.code == 0, "relish lua failed: " .. r.stderr .. r.stdout)
  return json.decode(r.stdout)
end

local function start(d, opts)
  local why
  ssh, why = G.sshd(d, opts)
  if not ssh then
    print("git_ssh_test: skipping: " .. why)
    skip(why)
  end
  local remote = G.bare(d, "remote.git")
  local seed = G.repo(d, "seed", { remote = remote, files = { ["app.yaml"] = "image: app:1.0\n" } })
  G.git(seed, "push", "-q", "origin", "main")
  return remote, seed, ssh.url .. remote
end

-- a commit on the remote made by someone else (the CLI over the file system)
local function upstream(d, remote, name)
  local other = G.clone(remote, d .. "/" .. name)
  local id = G.commit(other, { [name .. ".txt"] = name .. "\n" }, name)
  G.git(other, "push", "-q", "origin", "main")
  return id
end

describe("ssh", function()
  test("a key file: clone, push and fetch", function()
    local d = tmpdir()
    local remote, _, url = start(d)
    local env = { HOME = ssh.home }
    local r = client(d, env, "clone", url, d .. "/c", "key", ssh.key)
    assert_eq(r.id, G.rev(remote, "main"), r.message)
    local id = G.commit(d .. "/c", { ["app.yaml"] = "image: app:1.1\n" }, "deploy 1.1")
    r = client(d, env, "push", d .. "/c", "", "key", ssh.key)
    assert_eq(r.id, id, r.message)
    assert_eq(G.rev(remote, "main"), id)
    local up = upstream(d, remote, "other")
    r = client(d, env, "fetch", d .. "/c", "", "key", ssh.key)
    assert_eq(r.id, up, r.message)
    assert_match(G.read(ssh.log), "Accepted publickey for")
  end)

  test("a key file with a passphrase; a wrong passphrase is auth", function()
    local d = tmpdir()
    os.execute("mkdir -p '" .. d .. "/keys'")
    local locked = G.keygen(d .. "/keys/locked", "open sesame")
    local remote, _, url = start(d, { keys = { locked } })
    local r = client(d, { HOME = ssh.home, KEY_PASS = "open sesame" }, "clone", url, d .. "/c", "key", locked)
    assert_eq(r.id, G.rev(remote, "main"), r.message)
    local id = G.commit(d .. "/c", { x = "x\n" }, "x")
    r = client(d, { HOME = ssh.home, KEY_PASS = "open sesame" }, "push", d .. "/c", "", "key", locked)
    assert_eq(r.id, id, r.message)
    assert_eq(G.rev(remote, "main"), id)
    r = client(d, { HOME = ssh.home, KEY_PASS = "wrong words" }, "clone", url, d .. "/c2", "key", locked)
    assert_eq(r.kind, "auth", r.message)
    assert_nil(r.message:find("wrong words", 1, true), "the passphrase stays out of errors")
    r = client(d, { HOME = ssh.home }, "clone", url, d .. "/c3", "key", locked)
    assert_eq(r.kind, "auth", r.message)
  end)

  test("the ssh-agent: clone, push and fetch", function()
    local d = tmpdir()
    local remote, _, url = start(d)
    agent = G.ssh_agent(d, ssh.key)
    local env = { HOME = ssh.home, SSH_AUTH_SOCK = agent.sock }
    local r = client(d, env, "clone", url, d .. "/c", "agent")
    assert_eq(r.id, G.rev(remote, "main"), r.message)
    local id = G.commit(d .. "/c", { y = "y\n" }, "y")
    r = client(d, env, "push", d .. "/c", "", "agent")
    assert_eq(r.id, id, r.message)
    assert_eq(G.rev(remote, "main"), id)
    local up = upstream(d, remote, "other")
    r = client(d, env, "fetch", d .. "/c", "", "agent")
    assert_eq(r.id, up, r.message)
  end)

  test("a key the server does not know: auth, offered once, nothing pushed", function()
    local d = tmpdir()
    local remote, _, url = start(d)
    os.execute("mkdir -p '" .. d .. "/keys'")
    local wrong = G.keygen(d .. "/keys/wrong")
    local r = client(d, { HOME = ssh.home }, "clone", url, d .. "/c", "key", wrong)
    assert_eq(r.kind, "auth", r.message)
    assert_match(r.message, "the remote refused the ssh key " .. wrong:gsub("%p", "%%%0") .. " for user")
    -- a clone that works, then a push with the wrong key
    r = client(d, { HOME = ssh.home }, "clone", url, d .. "/ok", "key", ssh.key)
    assert(r.id, r.message)
    local before = G.rev(remote, "main")
    G.commit(d .. "/ok", { z = "z\n" }, "z")
    r = client(d, { HOME = ssh.home }, "push", d .. "/ok", "", "key", wrong)
    assert_eq(r.kind, "auth", r.message)
    assert_eq(G.rev(remote, "main"), before)
    -- the agent with only the wrong key, and an agent with no keys
    agent = G.ssh_agent(d, wrong)
    r = client(d, { HOME = ssh.home, SSH_AUTH_SOCK = agent.sock }, "fetch", d .. "/ok", "", "agent")
    assert_eq(r.kind, "auth", r.message)
    assert_match(r.message, "refused the keys of the ssh%-agent")
    agent:stop()
    agent = G.ssh_agent(d)
    r = client(d, { HOME = ssh.home, SSH_AUTH_SOCK = agent.sock }, "push", d .. "/ok", "", "agent")
    assert_eq(r.kind, "auth", r.message)
    assert_eq(G.rev(remote, "main"), before)
    -- no credentials at all
    r = client(d, { HOME = ssh.home }, "fetch", d .. "/ok", "", "none")
    assert_eq(r.kind, "auth", r.message)
    assert_match(r.message, "give auth =")
  end)

  test("a host missing from known_hosts is refused: network, nothing sent", function()
    local d = tmpdir()
    local _, _, url = start(d)
    local home = d .. "/emptyhome"
    os.execute("mkdir -p '" .. home .. "'")
    local r = client(d, { HOME = home }, "clone", url, d .. "/c", "key", ssh.key)
    assert_eq(r.kind, "network", r.message)
    assert_match(r.message, "unknown remote ssh hostkey")
    -- a known_hosts entry with another key for the host is refused too
    os.execute("mkdir -p '" .. home .. "/.ssh'")
    local other = G.keygen(d .. "/otherhost")
    support.write(home .. "/.ssh/known_hosts",
      string.format("[127.0.0.1]:%d %s\n", ssh.port, G.read(other .. ".pub"):match("^(%S+ %S+)")))
    r = client(d, { HOME = home }, "clone", url, d .. "/c2", "key", ssh.key)
    assert_eq(r.kind, "network", r.message)
    assert_nil(G.read(ssh.log):match("Accepted publickey"), "no key was offered to an unknown host")
  end)
end)
