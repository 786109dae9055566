-- recipes/runbooks/: rollback-release (local releases made by
-- recipes/local-release.lua, and a Deployment on the Kubernetes double),
-- scale-up (the double, and a real Prometheus with the pods' CPU) and
-- free-disk (a directory of files and releases). Each with answers given in
-- advance (-a, --answers, --yes), on a pseudo-terminal (tests/fixtures/
-- pty_drive.py), undone by `relish rollback last`, and dry-run changing
-- nothing; the world is asserted after each, and the journal's prompts,
-- answers, skips and notes with their actor and step.
local support = require "support"
local k8s_fixture = require "k8s_fixture"
local pf = require "prom_fixture"
local sf = require "strategy_fixture"
local fs = require "relish.fs"
local json = require "relish.json"
local J = require "relish.journal"
local sh = require "relish.sh"
local host = require "relish._host"

local relish, read, write = support.relish, support.read, support.write
local ROOT = fixture_path("../..")
local RB = ROOT .. "/recipes/runbooks/"
local PTY = ROOT .. "/tests/fixtures/pty_drive.py"
local ACTOR = "oncall-alice"

-- relish runbook FILE ARGS... with the actor set and the test's journal
local function runbook(state, file, args, env)
  local argv = { "runbook", RB .. file, "--state", state }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  argv.env = { RELISH_ACTOR = ACTOR }
  for k, v in pairs(env or {}) do argv.env[k] = v end
  argv.timeout = 300
  return relish(argv)
end

-- the same on a pseudo-terminal, playing moves: -> {output=, code=, missed=}
local function on_pty(state, file, args, moves)
  local d = tmpdir()
  write(d .. "/script.json", json.encode(json.array(moves)))
  local argv = { "python3", PTY, d .. "/script.json", "--timeout", "60", "--", host.exe(), "runbook", RB .. file,
    "--state", state }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = sh.run { argv = argv, readonly = true, check = false, timeout = 300,
    env = { NO_COLOR = "1", RELISH_ACTOR = ACTOR, TERM = "dumb" } }
  assert_eq(r.code, 0, r.stderr)
  local got = json.decode(r.stdout)
  assert_eq(got.missed, json.null, "an expected text did not show:\n" .. got.output)
  return got
end

-- the last run of a journal, and its events
local function last_run(state)
  local j = J.open(state)
  local run = j:list_runs({ limit = 1 })[1]
  local events = j:events(run.id)
  j:close()
  return run, events
end

-- the events of one type, as "text" (each asserted to carry the actor)
local function said(events, type_)
  local out = {}
  for _, e in ipairs(events) do
    if e.type == type_ then
      if type_ == "prompt" or type_ == "answer" or type_ == "note" or type_ == "skip" then
        assert_eq(e.actor, ACTOR, "the actor of " .. type_ .. " " .. e.text)
      end
      out[#out + 1] = e.text
    end
  end
  return out
end

local function has(list, pattern)
  for _, s in ipairs(list) do if s:find(pattern) then return s end end
  error("nothing matches " .. pattern .. " in:\n  " .. table.concat(list, "\n  "), 2)
end

local function step_of(events, type_, pattern)
  for _, e in ipairs(events) do
    if e.type == type_ and e.text:find(pattern) then return e.step end
  end
end

-- ---- rollback-release, local ---------------------------------------------------

-- releases v1, v2, v3 made by recipes/local-release.lua, current -> v3
local function releases(d)
  local state = support.state(d)
  for _, v in ipairs { "v1", "v2", "v3" } do
    local r = relish { "run", ROOT .. "/recipes/local-release.lua", "-p", "deploy_to=" .. d .. "/app",
      "-p", "version=" .. v, "-p", "keep=9", "--state", state }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
  end
  assert_eq(fs.stat(d .. "/app/current").target, d .. "/app/releases/v3")
  return state, d .. "/app"
end

local function current(app) return (fs.stat(app .. "/current").target:match("([^/]+)$")) end

describe("rollback-release, local releases", function()
  test("answers in advance (-a): the chosen release is live, journaled; relish rollback last undoes it", function()
    local d = tmpdir()
    local state, app = releases(d)
    local r = runbook(state, "rollback-release.lua", { "-p", "deploy_to=" .. app, "-a", "roll back=v1",
      "-a", "roll back.confirm=yes" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(current(app), "v1")
    assert_match(r.stdout, "%[ok%] current %-> " .. app:gsub("%p", "%%%0") .. "/releases/v3")
    assert_match(r.stdout, "%[ok%] v1: test %-s index%.html")
    local run, events = last_run(state)
    assert_eq(run.recipe, "rollback-release")
    assert_eq(run.status, "succeeded")
    local prompts, answers = said(events, "prompt"), said(events, "answer")
    assert_eq(prompts, { "Roll back to which release?", "Roll " .. app .. " back from v3 to v1?" })
    assert_eq(answers, { "v1 (via -a)", "yes (via -a)" })
    assert_eq(step_of(events, "prompt", "which release"), 4)
    has(said(events, "note"), "^rolled back from v3 to v1$")
    has(said(events, "check"), "^recent releases: ")

    r = relish { "rollback", "last", "--state", state }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(current(app), "v3")
  end)

  test("--yes goes back to the previous release; an answers file picks another", function()
    local d = tmpdir()
    local state, app = releases(d)
    local r = runbook(state, "rollback-release.lua", { "-p", "deploy_to=" .. app, "--yes" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(current(app), "v2")
    local _, events = last_run(state)
    assert_eq(said(events, "answer"), { "v2 (via --yes: the default)", "yes (via --yes)" })

    write(d .. "/answers.yaml", "roll back: v1\nroll back.confirm: yes\n")
    r = runbook(state, "rollback-release.lua", { "-p", "deploy_to=" .. app, "--answers", d .. "/answers.yaml" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(current(app), "v1")
    _, events = last_run(state)
    assert_eq(said(events, "answer"), { "v1 (via answers file)", "yes (via answers file)" })
    has(said(events, "prompt"), "back from v2 to v1%?$")
  end)

  test("a release that fails its health command is not left live: the switch is rolled back", function()
    local d = tmpdir()
    local state, app = releases(d)
    assert(os.remove(app .. "/releases/v1/REVISION"))
    local r = runbook(state, "rollback-release.lua", { "-p", "deploy_to=" .. app, "-a", "roll back=v1", "--yes" })
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_eq(current(app), "v3")
    assert_eq(last_run(state).status, "rolled_back")
  end)

  test("a no to the confirmation skips the switch, journaled as a skip", function()
    local d = tmpdir()
    local state, app = releases(d)
    local r = runbook(state, "rollback-release.lua", { "-p", "deploy_to=" .. app, "-a", "roll back=v2",
      "-a", "roll back.confirm=no" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(current(app), "v3")
    local _, events = last_run(state)
    has(said(events, "skip"), 'step "roll back" skipped: answered no')
  end)

  test("on a terminal: the release chosen by its number, then confirmed", function()
    local d = tmpdir()
    local state, app = releases(d)
    local got = on_pty(state, "rollback-release.lua", { "-p", "deploy_to=" .. app }, {
      { expect = "Roll back to which release?" },
      { expect = "1) v2" }, { expect = "(default)" }, { expect = "2) v1" },
      { expect = "quit: " }, { send = "2\n" },
      { expect = "back from v3 to v1? [yes/no/quit]" }, { send = "yes\n" },
      { expect = "Succeeded" },
    })
    assert_eq(got.code, 0, got.output)
    assert_eq(current(app), "v1")
    local _, events = last_run(state)
    assert_eq(said(events, "answer"), { "v1 (via terminal)", "yes (via terminal)" })
  end)

  test("--dry-run shows the plan and changes nothing", function()
    local d = tmpdir()
    local state, app = releases(d)
    local before = support.snapshot(app)
    local r = runbook(state, "rollback-release.lua", { "-p", "deploy_to=" .. app, "--dry-run" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "symlink " .. app:gsub("%p", "%%%0") .. "/current → .*/releases/v2")
    assert_eq(support.snapshot(app), before)
  end)
end)

-- ---- rollback-release, Kubernetes -------------------------------------------------

local function image(k, name)
  local d = k:get("/apis/apps/v1/namespaces/default/deployments/" .. (name or "web"))
  return d.spec.template.spec.containers[1].image
end

-- web at web:1, then web:2, then web:3: revisions 1, 2, 3
local function web_history(k)
  sf.world(k, 2)
  for _, v in ipairs { "web:2", "web:3" } do
    local r = k:kubectl { "set", "image", "deployment/web", "web=" .. v }
    assert_eq(r.code, 0, r.stderr)
    k8s_fixture.eventually(v .. " rolled out", function()
      local d = k:get("/apis/apps/v1/namespaces/default/deployments/web")
      return d.status.updatedReplicas == 2 and d.status.readyReplicas == 2 and (d.status.replicas or 0) == 2
        and d.status.observedGeneration == d.metadata.generation and image(k) == v
    end)
  end
end

describe("rollback-release, a Kubernetes Deployment", function()
  test("--yes rolls back to the previous revision and waits; -a picks an older one; rollback last undoes", function()
    if not k8s_fixture.available() then skip("openssl or python3 is not installed") end
    local k <close> = sf.start()
    web_history(k)
    local state = support.state(tmpdir())
    local args = { "-p", "target=k8s", "-p", "kubeconfig=" .. k.kubeconfig, "-p", "timeout=120" }
    local r = runbook(state, "rollback-release.lua", { "--dry-run", table.unpack(args) })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "web: revision 3, web:3, 2/2 ready")
    assert_eq(image(k), "web:3")

    local yes = { "--yes" }
    for _, a in ipairs(args) do yes[#yes + 1] = a end
    r = runbook(state, "rollback-release.lua", yes)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(image(k), "web:2")
    local _, events = last_run(state)
    assert_eq(said(events, "answer"), { "rev2 (via --yes: the default)", "yes (via --yes)" })
    has(said(events, "prompt"), "^Roll web back from rev3 to rev2%?$")
    has(said(events, "note"), "^rolled back from rev3 to rev2$")

    r = relish { "rollback", "last", "--state", state }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(image(k), "web:3")

    local one = { "-a", "roll back=rev1", "-a", "roll back.confirm=yes" }
    for _, a in ipairs(args) do one[#one + 1] = a end
    r = runbook(state, "rollback-release.lua", one)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(image(k), "web:1")
    local d = k:get("/apis/apps/v1/namespaces/default/deployments/web")
    assert_eq(d.status.readyReplicas, 2)
  end)
end)

-- ---- scale-up -------------------------------------------------------------------

local API = [[
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, labels: {app: api}}
spec:
  replicas: 3
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: "api:1"
        resources: {requests: {cpu: 500m}}
]]

-- three pods each using 0.435 cores for the last ten minutes, one sample
-- every 15 s, ending a moment ago: 1.305 of the 1.5 cores requested, 87 %
local function cpu_backfill()
  local now = os.time()
  local lines = { "# TYPE container_cpu_usage_seconds_total counter" }
  for i = 1, 3 do
    for t = now - 600, now - 5, 15 do
      lines[#lines + 1] = string.format(
        'container_cpu_usage_seconds_total{namespace="default",pod="api-5d8f-%d",container="api"} %.3f %d',
        i, 1000 + 0.435 * (t - (now - 600)), t)
    end
  end
  return table.concat(lines, "\n") .. "\n"
end

local function scale_world()
  if not (k8s_fixture.available() and pf.available()) then skip("openssl, python3 or prometheus is not installed") end
  local k = sf.start()
  k:kubectl({ "apply", "-f", "-" }, { input = API })
  k8s_fixture.eventually("api ready", function()
    local d = k:get("/apis/apps/v1/namespaces/default/deployments/api")
    return d.status and d.status.readyReplicas == 3
  end)
  local p = pf.prometheus { backfill = cpu_backfill() }
  return setmetatable({ k = k, p = p }, { __close = function() p:stop(); k:stop() end })
end

local function api(k)
  local d = k:get("/apis/apps/v1/namespaces/default/deployments/api")
  return d.spec.replicas, d.status.readyReplicas
end

describe("scale-up", function()
  test("answers in advance, --yes capped by max, a terminal with a refused count, dry-run, rollback", function()
    local env <close> = scale_world()
    local state = support.state(tmpdir())
    local args = { "-p", "kubeconfig=" .. env.k.kubeconfig, "-p", "prometheus=" .. env.p.url, "-p", "timeout=120" }
    local function with(...)
      local out = { ... }
      for _, a in ipairs(args) do out[#out + 1] = a end
      return out
    end

    -- a dry-run shows the live numbers and changes nothing
    local r = runbook(state, "scale-up.lua", with("--dry-run"))
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "api: 3 replicas, 3 ready, 3 available")
    assert_match(r.stdout, "CPU 8%d%% of requests %(1%.%d%d cores used, 1%.50 requested%)")
    assert_match(r.stdout, "scale deployments%.apps/api in default from 3 to 6")
    assert_eq({ api(env.k) }, { 3, 3 })

    -- -a: the count and the confirmation; the question shows the live numbers
    r = runbook(state, "scale-up.lua", with("-a", "scale up.replicas=5", "-a", "scale up=yes"))
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq({ api(env.k) }, { 5, 5 })
    local _, events = last_run(state)
    local prompts = said(events, "prompt")
    has(prompts, "^Replicas for api %(now 3, at most 10%)$")
    has(prompts, "^api: 3 replicas, CPU 8%d%% of requests %-> scale to 5%?$")
    assert_eq(said(events, "answer"), { "5 (via -a)", "yes (via -a)" })
    has(said(events, "note"), "^scaled api from 3 to 5 replicas$")
    assert_eq(step_of(events, "note", "scaled api"), 3)
    has(said(events, "check"), "^after: %[ok%] api: 5 replicas, 5 ready")

    r = relish { "rollback", "last", "--state", state }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq((api(env.k)), 3)
    k8s_fixture.eventually("api back to 3", function() return select(2, api(env.k)) == 3 end)

    -- --yes: twice the count, capped by max
    r = runbook(state, "scale-up.lua", with("--yes", "-p", "max=4"))
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq({ api(env.k) }, { 4, 4 })
    _, events = last_run(state)
    assert_eq(said(events, "answer"), { "4 (via --yes: the default)", "yes (via --yes)" })

    -- a terminal: an answer over max is asked again, then taken and confirmed
    local got = on_pty(state, "scale-up.lua", args, {
      { expect = "Replicas for api (now 4, at most 10) [8]: " }, { send = "50\n" },
      { expect = "between 1 and 10, please" }, { send = "7\n" },
      { expect = "scale deployments.apps/api in default from 4 to 7" },
      { expect = "api: 4 replicas, CPU " }, { expect = "-> scale to 7? [yes/no/quit]" }, { send = "y\n" },
      { expect = "Succeeded" },
    })
    assert_eq(got.code, 0, got.output)
    assert_eq({ api(env.k) }, { 7, 7 })
    _, events = last_run(state)
    assert_eq(said(events, "answer"), { "7 (via terminal)", "yes (via terminal)" })
  end)
end)

-- ---- free-disk --------------------------------------------------------------------

-- d/logs with two large files and a small one; d/app with releases v1..v4
-- (current -> v4) made by local-release
local function disk(d, keep)
  os.execute(string.format("mkdir -p %s/logs/sub", d))
  write(d .. "/logs/big.log", string.rep("log line\n", 300000))     -- 2.7 MB
  write(d .. "/logs/sub/dump.bin", string.rep("\1\2\3\4", 400000)) -- 1.6 MB
  write(d .. "/logs/small.txt", "small\n")
  local state = support.state(d)
  for _, v in ipairs { "v1", "v2", "v3", "v4" } do
    local r = relish { "run", ROOT .. "/recipes/local-release.lua", "-p", "deploy_to=" .. d .. "/app",
      "-p", "version=" .. v, "-p", "keep=9", "--state", state }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
  end
  return state, { "-p", "dir=" .. d .. "/logs", "-p", "deploy_to=" .. d .. "/app", "-p", "keep=" .. (keep or 2) }
end

local function names(dir)
  local out = fs.list(dir)
  table.sort(out)
  return out
end

describe("free-disk", function()
  test("answers in advance: each deletion as answered, noted; relish rollback last puts everything back", function()
    local d = tmpdir()
    local state, args = disk(d)
    local before = { logs = support.snapshot(d .. "/logs"), app = support.snapshot(d .. "/app") }
    for _, a in ipairs { "-a", "delete old releases.*=yes", "-a", "delete old releases=yes",
      "-a", "delete large files." .. d .. "/logs/big.log=no",
      "-a", "delete large files." .. d .. "/logs/sub/dump.bin=yes", "-a", "delete large files=yes" } do
      args[#args + 1] = a
    end
    local r = runbook(state, "free-disk.lua", args)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(names(d .. "/app/releases"), { "v3", "v4" })
    assert_eq(names(d .. "/logs"), { "big.log", "small.txt", "sub" })
    assert_eq(names(d .. "/logs/sub"), {})
    assert_match(r.stdout, "%[ok%] " .. d:gsub("%p", "%%%0") .. "/logs on .*: %d+%% used")
    local run, events = last_run(state)
    assert_eq(run.status, "succeeded")
    local prompts = said(events, "prompt")
    has(prompts, "^Delete " .. d:gsub("%p", "%%%0") .. "/app/releases/v1 %(%d+ B%)%?$")
    has(prompts, "^Delete " .. d:gsub("%p", "%%%0") .. "/logs/big%.log %(2%.%d MiB%)%?$")
    has(prompts, "^Delete " .. d:gsub("%p", "%%%0") .. "/logs/sub/dump%.bin %(1%.%d MiB%)%?$")
    local answers = said(events, "answer")
    assert_eq(#answers, 6) -- two releases, two files, two steps' confirmations
    has(answers, "^no %(via %-a%)$")
    local notes = said(events, "note")
    has(notes, "^freed %d+ B: " .. d:gsub("%p", "%%%0") .. "/app/releases/v1, .*/releases/v2$")
    has(notes, "^freed 1%.%d MiB: " .. d:gsub("%p", "%%%0") .. "/logs/sub/dump%.bin$")
    assert_eq(step_of(events, "note", "dump%.bin"), 5)

    r = relish { "rollback", "last", "--state", state }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(support.snapshot(d .. "/logs"), before.logs)
    assert_eq(support.snapshot(d .. "/app"), before.app)
  end)

  test("on a terminal: one deletion declined, another accepted", function()
    local d = tmpdir()
    local state, args = disk(d, 9) -- no old releases: the large files only
    local q = d .. "/logs/"
    local got = on_pty(state, "free-disk.lua", args, {
      { expect = "none beyond the newest 9" },
      { expect = "Delete " .. q .. "big.log (2.6 MiB)? [yes/no/quit]" }, { send = "no\n" },
      { expect = "Delete " .. q .. "sub/dump.bin (1.5 MiB)? [yes/no/quit]" }, { send = "yes\n" },
      { expect = "Make this change? [yes/no/quit]" }, { send = "yes\n" },
      { expect = "Succeeded" },
    })
    assert_eq(got.code, 0, got.output)
    assert_eq(names(d .. "/logs"), { "big.log", "small.txt", "sub" })
    assert_eq(names(d .. "/logs/sub"), {})
    assert_eq(names(d .. "/app/releases"), { "v1", "v2", "v3", "v4" })
    local _, events = last_run(state)
    local answers = said(events, "answer")
    assert_eq(answers, { "no (via terminal)", "yes (via terminal)", "yes (via terminal)" })
  end)

  test("Ctrl-C at a prompt stops the run and rolls back what it deleted (exit 130)", function()
    local d = tmpdir()
    local state, args = disk(d)
    local before = support.snapshot(d .. "/app")
    local q = d .. "/logs/"
    local got = on_pty(state, "free-disk.lua", args, {
      { expect = "releases/v1 (" }, { send = "yes\n" },
      { expect = "releases/v2 (" }, { send = "yes\n" },
      { expect = "Make these 2 changes? [yes/no/quit]" }, { send = "yes\n" },
      { expect = "note: freed" },
      { expect = "Delete " .. q .. "big.log" }, { sleep = 0.2 }, { ctrl_c = true },
      { expect = "Rollback complete" },
    })
    assert_eq(got.code, 130, got.output)
    assert_eq(support.snapshot(d .. "/app"), before)
    assert_eq(names(d .. "/logs/sub"), { "dump.bin" })
    local run, events = last_run(state)
    assert_eq(run.status, "interrupted")
    has(said(events, "rollback"), ".")
    local j = J.open(state)
    local rb = j:rollbacks(run.id)
    j:close()
    assert_eq(#rb, 1)
    assert_eq(rb[1].status, "complete")
  end)

  test("--dry-run changes nothing", function()
    local d = tmpdir()
    local state, args = disk(d)
    local before = { logs = support.snapshot(d .. "/logs"), app = support.snapshot(d .. "/app") }
    args[#args + 1] = "--dry-run"
    local r = runbook(state, "free-disk.lua", args)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "remove " .. d:gsub("%p", "%%%0") .. "/logs/big%.log")
    assert_match(r.stdout, "remove " .. d:gsub("%p", "%%%0") .. "/app/releases/v2")
    assert_eq(support.snapshot(d .. "/logs"), before.logs)
    assert_eq(support.snapshot(d .. "/app"), before.app)
  end)
end)

-- ---- relish doc ------------------------------------------------------------------

describe("relish doc of a runbook", function()
  test("its facts, checks, choices and confirmations; recipes/runbooks/ is in the index", function()
    local d = tmpdir()
    local file = support.recipe(d, "rb.lua", [[
return runbook "restart" {
  description = "Restart a thing",
  severity = "SEV1", service = "shop", owner = "ops",
  links = { { title = "Dashboard", url = "https://grafana.example/d/shop" }, "docs/shop.md" },
  check "is it up" { description = "Looks.", run = function() return "up" end },
  step "pick" {
    choose = { "blue", { value = "green", text = "the new one" }, default = "green", prompt = "Which colour?" },
    confirm = "Restart it?",
    run = function() end,
  },
  step "again" { confirm = function(ctx) return "Again?" end, run = function() end },
}
]])
    local r = relish { "doc", file }
    assert_eq(r.code, 0, r.stderr)
    local md = r.stdout
    local function has_text(t) assert_true(md:find(t, 1, true) ~= nil, "missing: " .. t .. "\n" .. md) end
    has_text("# Runbook `restart`\n\nRestart a thing\n\n- Severity: SEV1\n- Service: shop\n- Owner: ops\n")
    has_text("- [Dashboard](https://grafana.example/d/shop)\n- `docs/shop.md`\n")
    has_text("Run it with `relish runbook " .. file)
    has_text("### 1. check: is it up\n\nLooks.\n\n- Check: only reads, and shows what it finds; it gates nothing\n")
    has_text("### 2. pick\n\n- Chooses: one of `blue`, `green` (the new one); default `green`; asked as `Which colour?`\n" ..
      "- Confirmation: `Restart it?`\n- Answers: answer in advance with `-a 'pick=OPTION' -a 'pick.confirm=yes'`\n")
    has_text("### 3. again\n\n- Confirmation: a question from a function of ctx")

    r = relish { "doc", ROOT .. "/recipes", "-o", d .. "/out" }
    assert_eq(r.code, 0, r.stderr)
    local index = read(d .. "/out/index.md")
    assert_match(index, "\n## Runbooks\n")
    for _, name in ipairs { "rollback-release", "scale-up", "free-disk" } do
      assert_match(index, "%[" .. name:gsub("%-", "%%-") .. "%]%(runbooks/" .. name:gsub("%-", "%%-") .. "%.md%)")
      assert_match(read(d .. "/out/runbooks/" .. name .. ".md"), "^# Runbook `" .. name:gsub("%-", "%%-") .. "`")
    end
  end)
end)
