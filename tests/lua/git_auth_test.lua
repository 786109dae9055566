-- relish.git with credentials: a token sent as Basic auth over git's smart
-- HTTP (git http-backend behind a password on a loopback port), the auth
-- error kind, and secrets kept out of plans, undo records, errors and the
-- journal; a rollback in another process gets the token again from where the
-- secret came from.
local G = require "gitsupport"
local support = require "support"
local git = require "relish.git"
local gate = require "relish._gate"
local json = require "relish.json"
local secret = require "relish.secret"
local try = require("relish._errors").try

local TOKEN = "tok-" .. string.format("%08x%08x", math.random(0, 0x7fffffff), os.time())

local web
after_each(function()
  if web then web:stop() end
  web = nil
end)

local function setup(d)
  local remote = G.bare(d, "remote.git")
  G.git(remote, "config", "http.receivepack", "true")
  local w = G.repo(d, "work", { remote = remote, files = { ["app.yaml"] = "image: app:1.0\n" } })
  G.git(w, "push", "-q", "origin", "main")
  web = G.http(d, "x-access-token", TOKEN)
  G.git(w, "remote", "set-url", "origin", web.url .. "remote.git")
  return remote, w
end

describe("auth", function()
  test("a token secret is sent as Basic auth; fetch and push work", function()
    local d = tmpdir()
    local remote, w = setup(d)
    local repo <close> = assert(git.open(w))
    local tok = secret.value(TOKEN, "GIT_TOKEN")
    assert(repo:fetch("origin", { auth = tok }))
    local id = assert(repo:commit { files = { ["app.yaml"] = "image: app:1.1\n" }, message = "deploy 1.1" })
    assert(repo:push { auth = tok })
    assert_eq(G.rev(remote, "main"), id)
    local c <close> = assert(git.clone(web.url .. "remote.git", d .. "/c", { auth = { token = tok, username = "x-access-token" } }))
    assert_eq(c:head().id, id)
    assert_match(G.read(web.log), "POST /remote%.git/git%-receive%-pack auth=ok")
  end)

  test("no credentials or wrong ones: kind auth, nothing pushed", function()
    local d = tmpdir()
    local remote, w = setup(d)
    local before = G.rev(remote, "main")
    local repo <close> = assert(git.open(w))
    assert(repo:commit { files = { x = "x" }, message = "x" })
    local r, err = try(repo.push, repo)
    assert_nil(r)
    assert_eq(err.kind, "auth")
    assert_match(err.message, "give auth =")
    r, err = try(repo.push, repo, { auth = secret.value("wrong-token-value") })
    assert_nil(r)
    assert_eq(err.kind, "auth")
    r, err = try(repo.fetch, repo, "origin")
    assert_eq(err.kind, "auth")
    r, err = try(git.clone, web.url .. "remote.git", d .. "/c")
    assert_eq(err.kind, "auth")
    assert_eq(G.rev(remote, "main"), before)
  end)

  test("the token is nowhere: plan, undo record, errors", function()
    local d = tmpdir()
    local _, w = setup(d)
    local repo <close> = assert(git.open(w))
    local tok = secret.value(TOKEN, "GIT_TOKEN")
    assert(repo:commit { files = { x = "x" }, message = "x" })
    local effects = gate.capture(function() return assert(repo:push { auth = tok }) end, { dry_run = true })
    local text = json.encode(effects)
    assert_nil(text:find(TOKEN, 1, true))
    assert_eq(effects[1].undo.auth, { type = "token" }, "a secret value has no source to read again")
    G.git(w, "remote", "set-url", "origin", web.url:gsub("//", "//x-access-token:" .. TOKEN .. "@") .. "remote.git")
    assert_eq(repo:remote_url("origin"), web.url:gsub("//", "//x-access-token@") .. "remote.git")
    effects = gate.capture(function() return assert(repo:push()) end, { dry_run = true })
    text = json.encode(effects)
    assert_nil(text:find(TOKEN, 1, true), "a password in the remote's URL stays out of plans")
    G.git(w, "remote", "set-url", "origin", web.url:gsub("//", "//x-access-token:wrong@") .. "remote.git")
    local r, err = try(repo.push, repo)
    assert_nil(r)
    assert_nil(err.message:find("wrong@", 1, true))
  end)

  test("a recipe run: the token comes from the environment, the rollback reads it again; the journal never holds it", function()
    local d = tmpdir()
    local remote, w = setup(d)
    local before = G.refs(remote)
    local recipe = support.recipe(d, "release.lua", [[
local git = require "relish.git"
return recipe "auth-release" {
  params = { repo = param.string { required = true } },
  step "release" { run = function(ctx)
    local repo <close> = assert(git.open(ctx.params.repo))
    local id = assert(repo:commit { files = { ["app.yaml"] = "image: app:2.0\n" }, message = "deploy 2.0" })
    assert(repo:tag("v2.0.0", { message = "two" }))
    assert(repo:push { refspecs = { "main", "v2.0.0" }, auth = ctx.secret("GIT_TOKEN") })
  end },
  step "verify" { run = function() error("smoke test failed") end },
}
]])
    local state = support.state(d)
    local r = support.relish { "run", recipe, "-p", "repo=" .. w, "--state", state,
      env = G.env { GIT_TOKEN = TOKEN } }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_nil((r.stdout .. r.stderr):find(TOKEN, 1, true))
    assert_nil(G.rev(remote, "refs/tags/v2.0.0"))
    assert_eq(G.git(remote, "log", "-1", "--format=%s", "main"), 'Revert "deploy 2.0"')
    assert_eq(G.git(remote, "diff", before["refs/heads/main"], "main"), "")
    assert_nil(G.rev(w, "refs/tags/v2.0.0"))
    local db = G.read(d .. "/journal.db") .. (G.read(d .. "/journal.db-wal") or "")
    assert_nil(db:find(TOKEN, 1, true), "the journal holds no token")
    assert_match(db, "GIT_TOKEN")
  end)
end)

-- The same over real TLS: git_http.py wrapped with Python's ssl module, its
-- certificate signed by a CA openssl makes at test time. libgit2 (mbedTLS on
-- Debian) trusts only its compiled-in bundle, so ca = names the test CA.
local function setup_tls(d)
  local remote = G.bare(d, "remote.git")
  G.git(remote, "config", "http.receivepack", "true")
  local w = G.repo(d, "work", { remote = remote, files = { ["app.yaml"] = "image: app:1.0\n" } })
  G.git(w, "push", "-q", "origin", "main")
  local certs = G.certs(d)
  web = G.http(d, "x-access-token", TOKEN, certs)
  assert_match(web.url, "^https://127%.0%.0%.1:%d+/$")
  G.git(w, "remote", "set-url", "origin", web.url .. "remote.git")
  return remote, w, certs
end

describe("auth over https", function()
  test("a token secret with ca = the test CA: clone, fetch and push over TLS", function()
    local d = tmpdir()
    local remote, w, certs = setup_tls(d)
    local tok = secret.value(TOKEN, "GIT_TOKEN")
    local c <close> = assert(git.clone(web.url .. "remote.git", d .. "/c", { auth = tok, ca = certs.ca }))
    assert_eq(c:head().id, G.rev(remote, "main"))
    local repo <close> = assert(git.open(w))
    assert(repo:fetch("origin", { auth = tok, ca = certs.ca }))
    local id = assert(repo:commit { files = { ["app.yaml"] = "image: app:1.1\n" }, message = "deploy 1.1" })
    local res = assert(repo:push { auth = tok, ca = certs.ca })
    assert_eq(res["refs/heads/main"].new, id)
    assert_eq(G.rev(remote, "main"), id)
    local moved = assert(c:fetch("origin", { auth = tok, ca = certs.ca }))
    assert_eq(moved["refs/remotes/origin/main"].new, id)
    assert_match(G.read(web.log), "POST /remote%.git/git%-receive%-pack auth=ok")
  end)

  test("a wrong token is auth; no ca or another CA is network, certificate in the message", function()
    local d = tmpdir()
    local remote, w, certs = setup_tls(d)
    local before = G.rev(remote, "main")
    local repo <close> = assert(git.open(w))
    assert(repo:commit { files = { x = "x" }, message = "x" })
    local tok = secret.value(TOKEN, "GIT_TOKEN")
    local r, err = try(repo.push, repo, { auth = secret.value("wrong-token-value"), ca = certs.ca })
    assert_nil(r)
    assert_eq(err.kind, "auth")
    r, err = try(repo.fetch, repo, "origin", { auth = secret.value("wrong-token-value"), ca = certs.ca })
    assert_eq(err.kind, "auth")
    r, err = try(git.clone, web.url .. "remote.git", d .. "/c", { auth = secret.value("wrong-token-value"), ca = certs.ca })
    assert_eq(err.kind, "auth")
    for _, ca in ipairs { false, certs.other_ca } do
      local opts = { auth = tok, ca = ca or nil }
      r, err = try(repo.push, repo, opts)
      assert_nil(r)
      assert_eq(err.kind, "network", err.message)
      assert_match(err.message, "certificate")
      assert_nil(err.message:find(TOKEN, 1, true))
      r, err = try(repo.fetch, repo, "origin", opts)
      assert_eq(err.kind, "network", err.message)
      assert_match(err.message, "certificate")
      r, err = try(git.clone, web.url .. "remote.git", d .. "/c2", opts)
      assert_eq(err.kind, "network", err.message)
      assert_match(err.message, "certificate")
    end
    -- the CA is set per call: the one before does not leak into the next
    assert(repo:fetch("origin", { auth = tok, ca = certs.ca }))
    r, err = try(repo.fetch, repo, "origin", { auth = tok })
    assert_eq(err and err.kind, "network")
    r, err = try(repo.fetch, repo, "origin", { auth = tok, ca = d .. "/no-such-ca.pem" })
    assert_eq(err.kind, "io")
    assert_match(err.message, "no%-such%-ca%.pem")
    G.write(d .. "/junk.pem", "not a certificate\n")
    r, err = try(repo.fetch, repo, "origin", { auth = tok, ca = d .. "/junk.pem" })
    assert_eq(err.kind, "io")
    assert_match(err.message, "junk%.pem")
    assert(repo:fetch("origin", { auth = tok, ca = certs.ca }), "a good ca after a bad one")
    assert_eq(G.rev(remote, "main"), before)
    assert_nil(G.read(web.log):find("receive%-pack auth=ok"), "nothing pushed")
  end)

  test("the token is nowhere over https either; the undo record keeps the CA path", function()
    local d = tmpdir()
    local _, w, certs = setup_tls(d)
    local repo <close> = assert(git.open(w))
    assert(repo:commit { files = { x = "x" }, message = "x" })
    local tok = secret.value(TOKEN, "GIT_TOKEN")
    local effects = gate.capture(function() return assert(repo:push { auth = tok, ca = certs.ca }) end, { dry_run = true })
    local text = json.encode(effects)
    assert_nil(text:find(TOKEN, 1, true))
    assert_eq(effects[1].undo.ca, certs.ca)
    local r, err = try(repo.push, repo, { auth = secret.value(TOKEN) })
    assert_nil(r)
    assert_nil((err.message .. json.encode(err)):find(TOKEN, 1, true))
  end)

  test("relish rollback in another process connects with the recorded CA; the journal never holds the token", function()
    local d = tmpdir()
    local remote, w, certs = setup_tls(d)
    local before = G.refs(remote)
    local recipe = support.recipe(d, "release.lua", [[
local git = require "relish.git"
return recipe "tls-release" {
  params = { repo = param.string { required = true }, ca = param.string { required = true } },
  step "release" { run = function(ctx)
    local repo <close> = assert(git.open(ctx.params.repo))
    assert(repo:commit { files = { ["app.yaml"] = "image: app:2.0\n" }, message = "deploy 2.0" })
    assert(repo:tag("v2.0.0", { message = "two" }))
    assert(repo:push { refspecs = { "main", "v2.0.0" }, auth = ctx.secret("GIT_TOKEN"), ca = ctx.params.ca })
  end },
}
]])
    local state = support.state(d)
    local env = G.env { GIT_TOKEN = TOKEN }
    local r = support.relish { "run", recipe, "-p", "repo=" .. w, "-p", "ca=" .. certs.ca, "--state", state, env = env }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_nil((r.stdout .. r.stderr):find(TOKEN, 1, true))
    assert(G.rev(remote, "refs/tags/v2.0.0"))
    r = support.relish { "rollback", "last", "--state", state, env = env }
    assert_eq(r.code, 0, r.stderr .. r.stdout)
    assert_nil((r.stdout .. r.stderr):find(TOKEN, 1, true))
    assert_nil(G.rev(remote, "refs/tags/v2.0.0"))
    assert_eq(G.git(remote, "log", "-1", "--format=%s", "main"), 'Revert "deploy 2.0"')
    assert_eq(G.git(remote, "diff", before["refs/heads/main"], "main"), "")
    local db = G.read(d .. "/journal.db") .. (G.read(d .. "/journal.db-wal") or "")
    assert_nil(db:find(TOKEN, 1, true), "the journal holds no token")
    assert_match(db, "GIT_TOKEN")
    assert(db:find(certs.ca, 1, true), "the journal holds the CA path")
  end)
end)
