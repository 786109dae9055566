-- Runbooks as an on-call engineer meets them: checks that show what they
-- find, steps that ask (confirm, choose, ctx.confirm, ctx.ask), answered at
-- a terminal (a pty driven by tests/fixtures/pty_drive.py) or in advance
-- (-a, --answers, --yes), refused without either (exit 2, nothing ran); a
-- person may skip a step, quit, or press Ctrl-C (rollback). Every question,
-- answer, skip and note is in the journal with the actor and UTC time, and
-- no secret answer is anywhere.
local support = require "support"
local json = require "relish.json"
local sh = require "relish.sh"
local host = require "relish._host"

local relish, read = support.relish, support.read
local DRIVE = host.realpath((debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or ".") .. "/../fixtures/pty_drive.py")

local RUNBOOK = [[
local fs = require "relish.fs"
return runbook "disk-full" {
  description = "The data disk is full",
  severity = "SEV3", service = "storage", owner = "team-storage",
  links = { "https://wiki.example/disk", { title = "dashboard", url = "https://grafana.example/d/disk" } },
  params = { dir = param.string { required = true } },
  lock = "disk-full",
  check "files" { run = function(ctx)
    local out = {}
    for _, n in ipairs(fs.list(ctx.params.dir .. "/data")) do
      out[#out + 1] = { name = n, size = fs.stat(ctx.params.dir .. "/data/" .. n).size }
    end
    table.sort(out, function(a, b) return a.name < b.name end)
    return out
  end },
  check "verdict" { run = function(ctx) return { verdict = "bad", text = "disk 97% full" } end },
  check "greedy" { run = function(ctx)
    fs.write(ctx.params.dir .. "/greedy", "x")
    return "never shown"
  end },
  step "archive" { confirm = "Archive old logs?", run = function(ctx)
    fs.write(ctx.params.dir .. "/archived", "yes")
  end },
  step "mode" {
    choose = { { value = "gentle", text = "keep a week" }, "aggressive", default = "gentle", prompt = "How hard?" },
    run = function(ctx, mode) fs.write(ctx.params.dir .. "/mode", mode) end,
  },
  step "delete" { run = function(ctx)
    for _, n in ipairs { "a.log", "b.log" } do
      if ctx.confirm { id = n, question = "Delete " .. n .. "?" } then fs.remove(ctx.params.dir .. "/data/" .. n) end
    end
  end },
  step "token" { run = function(ctx)
    local t = ctx.ask { id = "token", question = "Vault token", secret = true }
    local n = ctx.ask { id = "keep", question = "Days to keep", default = "7", match = "^%d+$" }
    ctx.note("kept " .. n .. " days")
    ctx.log("token is %s", t)
    fs.write(ctx.params.dir .. "/keep", n)
  end },
}
]]

local SECRET = "s3cr3t-9f2c"

local function setup()
  local d = host.mkdtemp()
  assert(os.execute("mkdir -p " .. d .. "/data"))
  support.write(d .. "/data/a.log", "aaaa\n")
  support.write(d .. "/data/b.log", "bb\n")
  return d, support.recipe(d, "disk.lua", RUNBOOK)
end

-- relish COMMAND FILE -p dir=D --state ... EXTRA..., stdin not a terminal
local function run(d, f, command, extra, env)
  local args = { command or "runbook", f, "-p", "dir=" .. d, "--state", support.state(d) }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return relish(args, { input = "", env = env })
end

local function show(d)
  local r = relish({ "show", "last", "--format", "json", "--state", support.state(d) }, { input = "" })
  assert_eq(r.code, 0, r.stderr)
  return json.decode(r.stdout)
end

-- the journal's events of a type, as "step|actor|text"
local function events(s, type_)
  local out = {}
  for _, e in ipairs(s.events) do
    if e.type == type_ then out[#out + 1] = string.format("%s|%s|%s", tostring(e.step), e.actor, e.text) end
  end
  return out
end

local function step_status(s)
  local out = {}
  for _, st in ipairs(s.steps) do out[st.name] = st.status end
  return out
end

-- Runs relish on a pty with the moves of script; -> code, transcript, missed.
-- shell: run it under sh -c with this text after it (what follows on the
-- same terminal)
local function on_terminal(d, f, script, extra, shell, command)
  support.write(d .. "/script.json", json.encode(script))
  local argv = { "python3", DRIVE, d .. "/script.json", "--" }
  if shell then
    for _, a in ipairs { "sh", "-c", 'trap : INT; "$@"; echo "code=$?"; ' .. shell, "sh" } do argv[#argv + 1] = a end
  end
  for _, a in ipairs { host.exe(), command or "runbook", f, "-p", "dir=" .. d, "--state", support.state(d) } do
    argv[#argv + 1] = a
  end
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  local r = assert(sh.run { argv = argv, env = { NO_COLOR = "1", RELISH_ACTOR = "bob" }, timeout = 120 })
  local o = json.decode(r.stdout)
  return o.code, o.output, o.missed
end

describe("answers given in advance", function()
  test("without a terminal and without answers nothing runs: exit 2 names every question", function()
    local d, f = setup()
    local r = run(d, f)
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stderr, "this runbook asks a person, and stdin is not a terminal")
    assert_match(r.stderr, "step \"archive\" asks for a confirmation: %-a 'archive=yes' %(or %-%-yes%)")
    assert_match(r.stderr, "step \"mode\" chooses: %-a 'mode=OPTION'")
    -- relish runbook confirms every step that changes something
    assert_match(r.stderr, "step \"delete\" asks for a confirmation")
    assert_match(r.stderr, "step \"token\" asks for a confirmation")
    assert_eq(read(d .. "/archived"), nil)
    assert_eq(relish({ "history", "--state", support.state(d) }, { input = "" }).stdout:find("disk%-full"), nil)
    -- relish run asks only what the runbook asks
    r = run(d, f, "run")
    assert_eq(r.code, 2)
    assert_match(r.stderr, "step \"archive\"")
    assert_eq(r.stderr:find("step \"delete\"", 1, true), nil, r.stderr)
  end)

  test("an answers file and -a: skips, choices, per-item confirmations, a secret; journaled with the actor", function()
    local d, f = setup()
    support.write(d .. "/answers.yaml", table.concat({
      "archive: no", "mode: aggressive", "delete: yes", "delete.a.log: yes", "delete.b.log: no",
      "token: yes", "token.token: " .. SECRET, "token.keep: 3", "" }, "\n"))
    local r = run(d, f, "runbook", { "--answers", d .. "/answers.yaml", "-a", "mode=gentle" }, { RELISH_ACTOR = "alice" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    -- the world: archive skipped, -a won over the file, a.log deleted, b.log kept
    assert_eq({ read(d .. "/archived"), read(d .. "/mode"), read(d .. "/data/a.log"), read(d .. "/data/b.log"),
      read(d .. "/keep"), read(d .. "/greedy") }, { nil, "gentle", nil, "bb\n", "3", nil })
    local s = show(d)
    assert_eq(step_status(s), { files = "done", verdict = "done", greedy = "done", archive = "skipped", mode = "done",
      delete = "done", token = "done" })
    assert_eq(s.meta, { kind = "runbook", severity = "SEV3", service = "storage", owner = "team-storage",
      description = "The data disk is full", links = { { url = "https://wiki.example/disk" },
        { title = "dashboard", url = "https://grafana.example/d/disk" } } })
    assert_eq(events(s, "skip"), { "4|alice|step \"archive\" skipped: answered no" })
    local answers = events(s, "answer")
    assert_eq(answers, {
      "4|alice|no (via answers file)", "5|alice|gentle (via -a)",
      "6|alice|yes (via answers file)", "6|alice|no (via answers file)", "6|alice|yes (via answers file)",
      "7|alice|*** (via answers file)", "7|alice|3 (via answers file)", "7|alice|yes (via answers file)" })
    assert_eq(events(s, "prompt"), { "4|alice|Archive old logs?", "5|alice|How hard?", "6|alice|Delete a.log?",
      "6|alice|Delete b.log?", "6|alice|Make this change?", "7|alice|Vault token", "7|alice|Days to keep",
      "7|alice|Make this change?" })
    assert_eq(events(s, "note"), { "7|alice|kept 3 days" })
    -- checks: a table, a verdict, and one that tried to write (refused, nothing written)
    local checks = events(s, "check")
    assert_eq(checks[1], "1|alice|files: name   size\na.log  5\nb.log  3")
    assert_eq(checks[2], "2|alice|verdict: [bad] disk 97% full")
    assert_match(checks[3], "^3|alice|greedy: %[error%] a check only reads, and this one would change write .*/greedy")
    for _, e in ipairs(s.events) do assert_match(e.ts, "^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d+Z$") end
    -- the secret: nowhere in the output, the journal or its files
    assert_eq(r.stdout:find(SECRET, 1, true), nil)
    assert_match(r.stdout, "token is %*%*%*")
    for _, name in ipairs { "journal.db", "journal.db-wal" } do
      local bytes = read(d .. "/" .. name) or ""
      assert_eq(bytes:find(SECRET, 1, true), nil, name)
    end
    -- what was asked and answered shows in the output with where it came from
    assert_match(r.stdout, "%? Archive old logs%? → no %(answers file%)")
    assert_match(r.stdout, "step 4/7 archive: skipped")
  end)

  test("--yes confirms and takes defaults; the run is the same as answering them", function()
    local d, f = setup()
    local r = run(d, f, "runbook", { "--yes", "-a", "token.token=" .. SECRET })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq({ read(d .. "/archived"), read(d .. "/mode"), read(d .. "/data/a.log"), read(d .. "/data/b.log"),
      read(d .. "/keep") }, { "yes", "gentle", nil, nil, "7" })
    local s = show(d)
    assert_match(table.concat(events(s, "answer"), "\n"), "gentle %(via %-%-yes: the default%)")
    assert_eq(events(s, "answer")[1], "4|" .. require("relish.journal").actor() .. "|yes (via --yes)")
  end)

  test("answers that fit no question are refused before anything runs", function()
    local d, f = setup()
    local r = run(d, f, "runbook", { "--yes", "-a", "mode=medium", "-a", "arhive=yes", "-a", "files=yes" })
    assert_eq(r.code, 2)
    assert_match(r.stderr, "invalid answers:")
    assert_match(r.stderr, "answer 'mode': \"medium\" is not one of gentle, aggressive, skip, quit")
    assert_match(r.stderr, "answer 'arhive': no step of that name %(did you mean 'archive'%?%)")
    assert_match(r.stderr, "answer 'files': \"files\" is a check, it asks nothing")
    support.write(d .. "/bad.yaml", "archive: [1, 2]\n")
    r = run(d, f, "runbook", { "--answers", d .. "/bad.yaml" })
    assert_eq(r.code, 2)
    assert_match(r.stderr, "%-%-answers .*bad%.yaml: archive: expected STEP: ANSWER")
    assert_eq(read(d .. "/archived"), nil)
  end)

  test("a question nobody can answer before anything changed is exit 2; after a change, a rollback", function()
    local d, f = setup()
    -- --yes answers no secret: the token step cannot go on, and the run
    -- had changed things by then: rolled back
    local r = run(d, f, "runbook", { "--yes" })
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout, "ctx%.ask: \"Vault token\" needs an answer and %-%-yes gives only confirmations and defaults: " ..
      "give %-a token%.token=VALUE")
    assert_eq({ read(d .. "/archived"), read(d .. "/data/a.log") }, { nil, "aaaa\n" })
    -- the first thing a runbook does is ask: nothing changed, exit 2
    local f2 = support.recipe(d, "ask.lua", [[
      local fs = require "relish.fs"
      return runbook "ask-first" {
        params = { dir = param.string { required = true } },
        step "how many" { run = function(ctx)
          local n = ctx.ask { id = "n", question = "How many?", match = "^%d+$" }
          fs.write(ctx.params.dir .. "/n", n)
        end },
      }]])
    r = run(d, f2, "run")
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    assert_match(r.stdout, "needs an answer and stdin is not a terminal: give %-a 'how many%.n'=VALUE")
    r = run(d, f2, "run", { "-a", "how many.n=twelve" })
    assert_eq(r.code, 2)
    assert_match(r.stdout, "%-a how many%.n=twelve: \"twelve\" does not match %^%%d%+%$")
    r = run(d, f2, "run", { "-a", "how many.n=12" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(read(d .. "/n"), "12")
  end)

  test("an option named by a number is that option in advance; a confirm function's question is asked once", function()
    local d = host.mkdtemp()
    local f = support.recipe(d, "nums.lua", [[
      local fs = require "relish.fs"
      return runbook "nums" {
        params = { dir = param.string { required = true } },
        step "pick" { choose = { "3", "2", "1" }, run = function(ctx, c) fs.write(ctx.params.dir .. "/pick", c) end },
        step "scale" {
          confirm = function(ctx)
            return "scale to " .. ctx.ask { id = "n", question = "How many?", match = "^%d+$" } .. "?"
          end,
          run = function(ctx) fs.write(ctx.params.dir .. "/n", ctx.ask { id = "n", question = "How many?" }) end,
        },
      }]])
    local code, out = on_terminal(d, f, { { expect = "skip, quit: " }, { send = "1\n" },
      { expect = "How many?: " }, { send = "4\n" }, { expect = "scale to 4? [yes/no/quit] " }, { send = "yes\n" },
      { expect = "Succeeded" } }, nil, nil, "run")
    assert_eq(code, 0, out)
    -- at the terminal, 1 is the first line of the list; the question once
    assert_eq({ read(d .. "/pick"), read(d .. "/n") }, { "3", "4" })
    assert_eq(select(2, out:gsub("How many%?", "")), 1, out)
    -- in advance, 1 is the option "1"; guided, the same answer serves the
    -- preview, the confirmation and the run
    local r = run(d, f, "runbook", { "-a", "pick=1", "-a", "scale.n=6", "-a", "scale=yes" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq({ read(d .. "/pick"), read(d .. "/n") }, { "1", "6" })
    assert_match(r.stdout, "%? scale to 6%? → yes %(%-a%)")
    assert_eq(#events(show(d), "prompt"), 3)
  end)

  test("--dry-run walks the whole runbook and changes nothing", function()
    local d, f = setup()
    local before = support.snapshot(d)
    local r = run(d, f, "runbook", { "--dry-run", "-a", "token.token=x" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "%? Archive old logs%? → yes %(dry%-run: would ask%)")
    assert_match(r.stdout, "%? How hard%? → gentle %(dry%-run: the default%)")
    assert_match(r.stdout, "%+ write .*/archived")
    assert_match(r.stdout, "%[bad%] disk 97%% full")
    local after = support.snapshot(d)
    after["journal.db"], after["journal.db-wal"], after["journal.db-shm"], after["journal.db.reserve"] = nil, nil, nil, nil
    after["script.json"] = nil
    assert_eq(after, before)
  end)
end)

describe("the runbook's definition", function()
  local function load_error(text)
    local d = host.mkdtemp()
    local f = support.recipe(d, "bad.lua", text)
    local r = relish({ "runbook", f, "--dry-run", "--state", support.state(d) }, { input = "" })
    assert_eq(r.code, 2, r.stdout .. r.stderr)
    return r.stderr
  end

  test("mistakes are exit 2 with the file and line", function()
    assert_match(load_error([[return runbook "x" {
      check "c" { confirm = "sure?", run = function() end } }]]),
      "bad%.lua:2: check \"c\": unknown field 'confirm' %(a check only reads: confirm, choose, undo and retries are for steps%)")
    assert_match(load_error([[return runbook "x" {
      step "s" { choose = { "a", "skip" }, run = function() end } }]]),
      "bad%.lua:2: step \"s\": choose: option 2: 'skip' is an answer of its own")
    assert_match(load_error([[return runbook "x" {
      step "s" { choose = { "a", "b", default = "c" }, run = function() end } }]]),
      "step \"s\": choose: default c is not one of the options")
    assert_match(load_error([[return recipe "x" { severity = "SEV1",
      step "s" { run = function() end } }]]),
      "bad%.lua:1: recipe \"x\": unknown field 'severity' %(severity, service, owner and links are a runbook's")
    assert_match(load_error([[return runbook "x" { links = { 4 },
      step "s" { run = function() end } }]]), "runbook \"x\": links%[1%] must be a URL or {title=, url=}")
    assert_match(load_error([[return runbook "x" {
      step "s" { confirm = 3, run = function() end } }]]), "step \"s\": confirm must be the question")
  end)

  test("misuse of ctx.ask raises at the caller's line", function()
    local d = host.mkdtemp()
    local f = support.recipe(d, "bad.lua", [[return runbook "x" {
      step "s" { run = function(ctx)
        ctx.ask { question = "n?", secret = true, default = "1" } end } }]])
    local r = relish({ "run", f, "--yes", "--state", support.state(d) }, { input = "" })
    assert_eq(r.code, 1)
    assert_match(r.stdout, "bad%.lua:3: ctx%.ask: a secret question takes no default")
  end)
end)

describe("on a terminal", function()
  test("confirm, re-ask, choose by number, per-item confirmations, a validated and a secret answer", function()
    local d, f = setup()
    local code, out, missed = on_terminal(d, f, {
      { expect = "Archive old logs? [yes/no/quit] " }, { send = "maybe\n" },
      { expect = "please answer yes, no or quit" }, { expect = "Archive old logs? [yes/no/quit] " }, { send = "no\n" },
      { expect = "2) aggressive" }, { expect = "number or name (Enter: gentle), skip, quit: " }, { send = "2\n" },
      { expect = "this step will make 1 change:" }, { expect = "Make this change? [yes/no/quit] " }, { send = "yes\n" },
      { expect = "Delete a.log? [yes/no/quit] " }, { send = "yes\n" },
      { expect = "Delete b.log? [yes/no/quit] " }, { send = "n\n" },
      { expect = "this step will make 1 change:" }, { expect = "Make this change? [yes/no/quit] " }, { send = "y\n" },
      { expect = "Vault token (typed unseen): " }, { send = SECRET .. "\n" },
      { expect = "Days to keep [7]: " }, { send = "x\n" }, { expect = "does not match" },
      { expect = "Days to keep [7]: " }, { send = "3\n" },
      { expect = "Make this change? [yes/no/quit] " }, { send = "yes\n" },
      { expect = "Succeeded" },
    })
    assert_eq({ code, missed }, { 0, json.null }, out)
    assert_eq({ read(d .. "/archived"), read(d .. "/mode"), read(d .. "/data/a.log"), read(d .. "/data/b.log"),
      read(d .. "/keep") }, { nil, "aggressive", nil, "bb\n", "3" })
    -- the secret was typed unseen: the terminal never showed it
    assert_eq(out:find(SECRET, 1, true), nil, out)
    -- each question once: the step's run took the answers its preview got
    assert_eq(select(2, out:gsub("Delete a%.log%?", "")), 1, out)
    -- the runbook's facts and step list come first
    assert_match(out, "SEV3 · service storage · owner team%-storage")
    assert_match(out, "4%. step  archive  %(confirm%)")
    assert_match(out, "── 4/7 archive  T%+0m%d%ds")
    local s = show(d)
    assert_eq(events(s, "answer"), { "4|bob|no (via terminal)", "5|bob|aggressive (via terminal)",
      "5|bob|yes (via terminal)", "6|bob|yes (via terminal)", "6|bob|no (via terminal)", "6|bob|yes (via terminal)",
      "7|bob|*** (via terminal)", "7|bob|3 (via terminal)", "7|bob|yes (via terminal)" })
    assert_eq(events(s, "skip"), { "4|bob|step \"archive\" skipped: answered no" })
  end)

  test("the time a person takes to answer is not the step's: a 1s step waits 2s for an answer", function()
    local d = host.mkdtemp()
    local f = support.recipe(d, "slow.lua", [[
      local fs = require "relish.fs"
      return runbook "slow-person" {
        params = { dir = param.string { required = true } },
        step "ask" { timeout = "1s", run = function(ctx)
          fs.write(ctx.params.dir .. "/n", ctx.ask { id = "n", question = "How many?" })
        end },
      }]])
    local code, out = on_terminal(d, f, { { expect = "How many?: " }, { sleep = 2 }, { send = "5\n" },
      { expect = "Make this change? [yes/no/quit] " }, { sleep = 1.2 }, { send = "yes\n" }, { expect = "Succeeded" } })
    assert_eq(code, 0, out)
    assert_eq(read(d .. "/n"), "5")
  end)

  test("relish run asks what the runbook asks, no previews", function()
    local d, f = setup()
    local code, out = on_terminal(d, f, {
      { expect = "Archive old logs? [yes/no/quit] " }, { send = "yes\n" },
      { expect = "skip, quit: " }, { send = "aggr\n" },
      { expect = "Delete a.log? [yes/no/quit] " }, { send = "yes\n" },
      { expect = "Delete b.log? [yes/no/quit] " }, { send = "yes\n" },
      { expect = "Vault token (typed unseen): " }, { send = "t\n" },
      { expect = "Days to keep [7]: " }, { send = "\n" }, { expect = "Succeeded" } }, nil, nil, "run")
    assert_eq(code, 0, out)
    assert_eq(out:find("this step will make", 1, true), nil, out)
    assert_eq(out:find("Make this change", 1, true), nil, out)
    -- the question does not share its line with the step's "… archive"
    assert_eq(out:find("… archive    ?", 1, true), nil, out)
    assert_eq({ read(d .. "/archived"), read(d .. "/mode"), read(d .. "/data/b.log"), read(d .. "/keep") },
      { "yes", "aggressive", nil, "7" })
  end)

  test("quit stops before the step: what was done stays, resume or rollback later (exit 1)", function()
    local d, f = setup()
    local code, out = on_terminal(d, f, {
      { expect = "Archive old logs? [yes/no/quit] " }, { send = "yes\n" },
      { expect = "skip, quit: " }, { send = "quit\n" }, { expect = "relish rollback" } })
    assert_eq(code, 1, out)
    assert_match(out, "stopped %(exit 1%): stopped by bob before step \"mode\"")
    assert_match(out, "relish resume [%w-]+   goes on from where it stopped")
    assert_eq(read(d .. "/archived"), "yes")
    local s = show(d)
    assert_eq({ s.status, step_status(s).archive, step_status(s).mode }, { "stopped", "done", "pending" })
    assert_eq(events(s, "stop"), { "5|bob|stopped by bob before step \"mode\"" })
    local r = relish({ "rollback", "last", "--state", support.state(d) }, { input = "" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(read(d .. "/archived"), nil)
  end)

  test("Ctrl-C at a prompt rolls back what the run did (exit 130)", function()
    local d, f = setup()
    local code, out = on_terminal(d, f, {
      { expect = "Archive old logs? [yes/no/quit] " }, { send = "yes\n" },
      { expect = "skip, quit: " }, { ctrl_c = true }, { expect = "interrupted" } })
    assert_eq(code, 130, out)
    assert_match(out, "undo: write .*/archived")
    assert_eq(read(d .. "/archived"), nil)
    assert_eq(show(d).status, "interrupted")
  end)

  test("Ctrl-C while a secret is typed: rolled back, and the terminal echoes again", function()
    local d, f = setup()
    local _, out = on_terminal(d, f, {
      { expect = "Archive old logs? [yes/no/quit] " }, { send = "yes\n" },
      { expect = "skip, quit: " }, { send = "1\n" }, { expect = "Make this change? [yes/no/quit] " }, { send = "yes\n" },
      { expect = "Delete a.log? [yes/no/quit] " }, { send = "no\n" }, { expect = "Delete b.log? [yes/no/quit] " },
      { send = "no\n" }, { expect = "Vault token (typed unseen): " }, { send = "abc" }, { ctrl_c = true },
      { expect = "code=" } }, nil, "stty -a")
    assert_match(out, "code=130", out)
    assert_eq({ read(d .. "/archived"), read(d .. "/mode") }, { nil, nil })
    -- what stty says of the terminal once relish has gone: echo on
    assert_match(out, "[ \n]echo[ \n]", out)
    assert_eq(out:find("-echo ", 1, true), nil, out)
  end)
end)
