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
