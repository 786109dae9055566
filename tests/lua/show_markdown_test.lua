-- relish show RUN_ID --format markdown: a postmortem draft of any run. A
-- runbook run is built through the journal's API (checks, prompts, answers
-- with their actor, a secret answer, a skip, a stop, actions still in
-- effect); a real runbook run is answered in advance (`relish runbook -a`);
-- recipe runs are real (`relish run`, `relish rollback`).
local support = require "support"
local J = require "relish.journal"
local json = require "relish.json"
local relish, recipe, read, write = support.relish, support.recipe, support.read, support.write

local function show(d, id)
  local r = relish { "show", id or "last", "--format", "markdown", "--state", support.state(d) }
  assert_eq(r.code, 0, r.stdout .. r.stderr)
  return r.stdout
end

-- the text of section "## TITLE" (up to the next "## ")
local function section(md, title)
  local s = md:match("\n## " .. title:gsub("%p", "%%%0") .. "\n(.-)\n## ") or md:match("\n## " ..
    title:gsub("%p", "%%%0") .. "\n(.*)$")
  assert_true(s ~= nil, "no section " .. title .. " in:\n" .. md)
  return s
end

-- the rows of the first table in text, as lists of cells (header and rule dropped)
local function rows(text)
  local out = {}
  for line in text:gmatch("[^\n]+") do
    if line:match("^| ") and not line:match("^|%-") then
      -- cells end at a "|" that is not escaped ("\\|" is a pipe in a cell)
      local cells, from = {}, 2
      for i = 2, #line do
        if line:sub(i, i) == "|" and line:sub(i - 1, i - 1) ~= "\\" then
          cells[#cells + 1] = line:sub(from, i - 1):gsub("^ ", ""):gsub(" $", "")
          from = i + 1
        end
      end
      out[#out + 1] = cells
    end
  end
  table.remove(out, 1)
  return out
end

local SECTIONS = { "Summary", "Impact", "Detection", "Root cause", "Trigger", "Resolution", "Timeline",
  "What was changed and how to undo it", "Action items", "Lessons learned" }

local function assert_sections(md, extra)
  local at = 0
  for _, title in ipairs(SECTIONS) do
    local i = md:find("\n## " .. title .. "\n", 1, true)
    assert_true(i ~= nil and i > at, "section " .. title .. " missing or out of order")
    at = i
  end
  for _, title in ipairs(extra or {}) do assert_true(md:find("\n## " .. title .. "\n", 1, true) ~= nil, title) end
end

local runbook = require "runbook_journal"
local RUN, SECRET = runbook.RUN, "s3cr3t-deploy-token"
local runbook_run = runbook.run

describe("show --format markdown: a postmortem draft of a runbook run", function()
  test("the sections of the templates, in order, and the header from the runbook's facts", function()
    local d = tmpdir()
    runbook_run(d)
    local md = show(d, "0a0b0c0d")
    assert_match(md, "^# Postmortem: api%-errors, 2026%-12%-03\n")
    assert_sections(md, { "Links" })
    local head = {}
    for _, r in ipairs(rows(md:match("^(.-)\n## "))) do head[r[1]] = r[2] end
    assert_eq({ head["**Status**"], head["**Severity**"], head["**Service**"], head["**Owner**"], head["**Run**"],
      head["**Run status**"] }, { "draft", "SEV2", "api", "team-payments", "`" .. RUN .. "`", "stopped" })
    assert_eq(head["**Authors**"], "alice, bob, carol")
    assert_eq(head["**Runbook**"], "`api-errors` in `" .. d .. "/api-errors.lua`")
    assert_eq(head["**Params**"], '`{"env":"prod","token":"***"}`')
    -- the summary: one generated sentence, and a TODO for the people
    local summary = section(md, "Summary")
    assert_match(summary, "^\nRunbook `api%-errors` %(SEV2, service api%) ran on 2026%-12%-03 from %d%d:%d%d:%d%d UTC " ..
      "for %d+m?s; it ended stopped %(exit 1%)%. 2 of 4 steps done, 1 skipped, 1 pending; 2 actions, 2 still in effect%.\n")
    assert_match(summary, "\nAbout the runbook: The API answers 5xx")
    assert_match(summary, "\n_TODO_: ")
    -- blank for people
    assert_match(section(md, "Impact"), "\n%- %*%*Users affected:%*%*\n")
    assert_match(section(md, "Root cause"), "^\n<!%-%- [^\n]* %-%->\n$")
    assert_eq(rows(section(md, "Action items")), { { "", "", "", "", "" } })
    assert_match(section(md, "Lessons learned"), "### What went well\n.*### What went wrong\n.*### Where we got lucky\n")
    -- links: a title, or the address as its own title; only web and mail addresses are links
    assert_eq(section(md, "Links"), "\n- [dashboard](<https://grafana.example/d/api>)\n" ..
      "- [https://wiki.example/api (old)](<https://wiki.example/api%20(old)>)\n" ..
      "- not a link: `javascript:alert(1)`\n")
  end)

  test("the timeline: every event, action and step in time order, with step, actor and elapsed time", function()
    local d = tmpdir()
    runbook_run(d)
    local md = show(d, RUN)
    local tl = rows(section(md, "Timeline"))
    local got = {}
    for _, r in ipairs(tl) do got[#got + 1] = table.concat({ r[3], r[4], r[5] }, " / ") end
    assert_eq(got, {
      " / alice / run started",
      "error rate / alice / step started",
      "error rate / alice / check (bad)",
      "error rate / alice / check (ok)",
      "error rate / alice / step done",
      "roll back / alice / step started",
      "roll back / alice / prompt",
      "roll back / bob / answer",
      "roll back / bob / prompt",
      "roll back / bob / answer",
      "roll back / alice / action 1 started",
      "roll back / alice / action 1 done",
      "roll back / alice / action 2 started",
      "roll back / alice / action 2 done",
      "roll back / bob / note",
      "roll back / alice / step done",
      "purge cache / bob / prompt",
      "purge cache / bob / answer",
      "purge cache / bob / skip",
      " / carol / stop",
      " / alice / run ended",
    })
    -- times in UTC, elapsed growing from +0ms
    local last = -1
    for _, r in ipairs(tl) do
      assert_match(r[1], "^%d%d:%d%d:%d%d$")
      local n, unit = r[2]:match("^%+([%d.]+)(m?s)$")
      local s = tonumber(n) / (unit == "ms" and 1000 or 1)
      assert_true(s >= last, "elapsed goes back at " .. r[5])
      last = s
    end
    assert_eq(tl[1][2], "+0ms")
    -- the texts: the finding on one line, answers with how they came, a
    -- pipe in a note kept in its cell, the skip and the stop
    assert_eq(tl[3][6], "error rate: [bad] 5xx at 12% / route   rate / /pay    0.12 / /login  0.01")
    assert_eq({ tl[8][6], tl[10][6] }, { "yes (via terminal)", "*** (via terminal)" })
    assert_eq(tl[15][6], "rolled back to v41 \\| error rate falling")
    assert_eq(tl[19][6], 'step "purge cache" skipped: bob said no')
    assert_eq(tl[20][6], 'stopped by carol before step "verify"')
    assert_eq(tl[21][6], "stopped (exit 1)")
    -- the check's finding as it was written, a table stays a table
    assert_match(md, "\n### What the checks found\n\n%- %*%*error rate%*%* at %d%d:%d%d:%d%d by alice:\n\n" ..
      "  ```text\n  %[bad%] 5xx at 12%%\n  route   rate\n  /pay    0%.12\n  /login  0%.01\n  ```\n\n" ..
      "%- %*%*latency%*%* at [%d:]+ by alice:\n\n  ```text\n  %[ok%] p99 at 120ms\n  ```\n")
    -- the resolution: what each step changed; the skip with who skipped
    local res = rows(section(md, "Resolution"))
    assert_eq(res[2][5], "fs.write `/srv/api/current` (done); http.post `https://status.example/api` (done)")
    assert_eq({ res[3][3], res[3][6] }, { "skipped", 'step "purge cache" skipped: bob said no (by bob)' })
    assert_eq(res[4][3], "pending")
  end)

  test("what is still in effect and how to undo it: the command, each action's undo, irreversible flagged", function()
    local d = tmpdir()
    runbook_run(d)
    local s = section(show(d), "What was changed and how to undo it")
    assert_match(s, "^\nStill in effect: 2 actions%. `relish rollback " .. RUN:gsub("%p", "%%%0") .. "` undoes them, newest first")
    local t = rows(s)
    assert_eq(#t, 2)
    -- the runbook's file is gone: whether a step has its own undo is not known, and said so
    assert_eq({ t[1][1], t[1][2], t[1][3], t[1][4], t[1][5] }, { "1", "roll back", "fs.write", "`/srv/api/current`",
      "done" })
    assert_match(t[1][6], "^automatic: the `fs%.write` undo %(relish%.fs%), or its step's own `undo` if it has one$")
    assert_match(t[2][6], "^%*%*irreversible%*%* unless its step has its own `undo`")
    assert_match(s, "\nWhich steps have their own `undo` is not known: the recipe file [^\n]* does not load%.\n")
  end)

  test("a secret answer and a secret param stay *** in the draft", function()
    local d = tmpdir()
    runbook_run(d)
    local md = show(d)
    assert_match(md, "| bob | answer | %*%*%* %(via terminal%) |")
    assert_match(md, '"token":"%*%*%*"')
    -- and in a real run: the value given with -p is nowhere in the draft
    local f = recipe(d, "deploy.lua", [[
return recipe "deploy" {
  params = { token = param.string { secret = true, required = true } },
  step "use" { run = function(ctx) ctx.note("a token was given") end },
}
]])
    local r = relish { "run", f, "-p", "token=" .. SECRET, "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    md = show(d)
    assert_match(md, '"token":"%*%*%*"')
    assert_match(md, "| note | a token was given |")
    assert_nil(md:find(SECRET, 1, true), "the secret is in the draft")
  end)
end)

-- ---- a real runbook run, answered in advance -------------------------------------
local DISK = [[
local fs = require "relish.fs"
return runbook "disk-full" {
  description = "The data disk is full",
  severity = "SEV3", service = "storage", owner = "team-storage",
  links = { "https://wiki.example/disk", { title = "dashboard", url = "https://grafana.example/d/disk" } },
  params = { dir = param.string { required = true } },
  check "files" { run = function(ctx)
    local out = {}
    for _, n in ipairs(fs.list(ctx.params.dir .. "/data")) do
      out[#out + 1] = { name = n, size = fs.stat(ctx.params.dir .. "/data/" .. n).size }
    end
    table.sort(out, function(a, b) return a.name < b.name end)
    return out
  end },
  check "usage" { run = function(ctx) return { verdict = "bad", text = "disk 97% full" } end },
  step "archive" { confirm = "Archive old logs?", run = function(ctx) fs.write(ctx.params.dir .. "/archived", "yes") end },
  step "delete" { run = function(ctx)
    for _, n in ipairs { "a.log", "b.log" } do
      if ctx.confirm { id = n, question = "Delete " .. n .. "?" } then fs.remove(ctx.params.dir .. "/data/" .. n) end
    end
    local token = ctx.ask { id = "token", question = "Vault token", secret = true }
    ctx.note("cleaned up; a token was given")
  end },
  step "marker" {
    run = function(ctx) fs.write(ctx.params.dir .. "/marker", "m") end,
    undo = function(ctx) fs.remove(ctx.params.dir .. "/marker") end,
  },
}
]]

describe("show --format markdown of a real runbook run", function()
  test("relish runbook answered with -a: facts, checks, every question and answer by who, the skip, no secret", function()
    local d = tmpdir()
    assert(os.execute("mkdir -p " .. d .. "/data"))
    write(d .. "/data/a.log", "aaaa\n")
    write(d .. "/data/b.log", "bb\n")
    local f = recipe(d, "disk.lua", DISK)
    local r = relish({ "runbook", f, "-p", "dir=" .. d, "--state", support.state(d), "-a", "archive=no",
      "-a", "delete=yes", "-a", "delete.a.log=yes", "-a", "delete.b.log=no", "-a", "delete.token=" .. SECRET,
      "-a", "marker=yes" }, { input = "", env = { RELISH_ACTOR = "alice" } })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq({ read(d .. "/archived"), read(d .. "/data/a.log"), read(d .. "/data/b.log"), read(d .. "/marker") },
      { nil, nil, "bb\n", "m" })
    local md = show(d)
    assert_sections(md, { "Links" })
    assert_match(md, "^# Postmortem: disk%-full, ")
    assert_match(md, "\n| %*%*Authors%*%* | alice |\n| %*%*Severity%*%* | SEV3 |\n| %*%*Service%*%* | storage |\n" ..
      "| %*%*Owner%*%* | team%-storage |\n")
    assert_match(md, "\n| %*%*Runbook%*%* | `disk%-full` in `[^`]*/disk%.lua` |\n")
    assert_match(section(md, "Summary"), "^\nRunbook `disk%-full` %(SEV3, service storage%) ran on [^\n]*; it ended " ..
      "succeeded %(exit 0%)%. 4 of 5 steps done, 1 skipped; 2 actions, 2 still in effect%.\n\nAbout the runbook: The " ..
      "data disk is full\n")
    -- the timeline: what each person was asked and answered, in order, with the step and who
    local asked = {}
    for _, row in ipairs(rows(section(md, "Timeline"))) do
      if row[5]:match("^check") or row[5] == "prompt" or row[5] == "answer" or row[5] == "skip" or row[5] == "note" then
        asked[#asked + 1] = table.concat({ row[3], row[4], row[5], row[6] }, " | ")
      end
    end
    assert_eq(asked, {
      "files | alice | check | files: name   size / a.log  5 / b.log  3",
      "usage | alice | check (bad) | usage: [bad] disk 97% full",
      "archive | alice | prompt | Archive old logs?",
      "archive | alice | answer | no (via -a)",
      'archive | alice | skip | step "archive" skipped: answered no',
      "delete | alice | prompt | Delete a.log?",
      "delete | alice | answer | yes (via -a)",
      "delete | alice | prompt | Delete b.log?",
      "delete | alice | answer | no (via -a)",
      "delete | alice | prompt | Vault token",
      "delete | alice | answer | *** (via -a)",
      "delete | alice | prompt | Make this change?",
      "delete | alice | answer | yes (via -a)",
      "delete | alice | note | cleaned up; a token was given",
      "marker | alice | prompt | Make this change?",
      "marker | alice | answer | yes (via -a)",
    })
    assert_match(md, "\n%- %*%*files%*%* at [%d:]+ by alice:\n\n  ```text\n  name   size\n  a%.log  5\n  b%.log  3\n  ```\n")
    assert_match(section(md, "Resolution"), '| 3 | archive | skipped | [^|]* | %- | step "archive" skipped: answered no ' ..
      "%(by alice%) |")
    -- what is in effect: the removal by its automatic undo, the marker by its step's own undo
    local t = rows(section(md, "What was changed and how to undo it"))
    assert_eq(#t, 2)
    assert_eq({ t[1][2], t[1][3], t[1][6] }, { "delete", "fs.remove", "automatic: the `fs.remove` undo (relish.fs)" })
    assert_eq({ t[2][2], t[2][3], t[2][6] }, { "marker", "fs.write", "its step's own `undo`" })
    assert_eq(section(md, "Links"), "\n- [https://wiki.example/disk](<https://wiki.example/disk>)\n" ..
      "- [dashboard](<https://grafana.example/d/disk>)\n")
    -- the secret answer: *** in the draft and the report, its value in neither
    assert_nil(md:find(SECRET, 1, true), "the secret is in the draft")
    local html = relish({ "show", "last", "--format", "html", "--state", support.state(d) }, { input = "" }).stdout
    assert_match(html, '<g class="marker answer"><title>[^<]* answer by alice: %*%*%* %(via %-a%)</title>')
    assert_match(html, '<g class="marker check bad">')
    assert_match(html, '<g class="marker skip">')
    assert_nil(html:find(SECRET, 1, true), "the secret is in the report")
    -- rolled back: nothing left in effect, the marker by its step's own undo
    r = relish({ "rollback", "last", "--state", support.state(d) }, { input = "" })
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq({ read(d .. "/data/a.log"), read(d .. "/marker") }, { "aaaa\n", nil })
    assert_match(section(show(d), "What was changed and how to undo it"), "^\nNothing the run changed is still in effect")
  end)
end)

-- ---- recipe runs ----------------------------------------------------------------
-- upload's own undo needs a token that is missing the first time: the run's
-- rollback is incomplete (exit 3); `relish rollback` completes it later
local SHIP = support.read(fixture_path("recipes/ship.lua"))

describe("show --format markdown of a recipe run", function()
  test("a rollback left work: what is in effect, undone by its step's own undo, and what is left by hand", function()
    local d = tmpdir()
    local f = recipe(d, "ship.lua", SHIP)
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 3, r.stdout .. r.stderr)
    local md = show(d)
    assert_sections(md)
    assert_nil(md:find("\n## Links\n", 1, true)) -- no facts, no links
    assert_nil(md:find("**Severity**", 1, true))
    assert_match(md, "\n| %*%*Recipe%*%* | `ship` in `[^`]*ship%.lua` |\n")
    local s = section(md, "What was changed and how to undo it")
    assert_match(s, "^\nStill in effect: 1 action%. `relish rollback %S+` undoes it")
    local t = rows(s)
    assert_eq(#t, 1)
    assert_eq({ t[1][2], t[1][3], t[1][5], t[1][6] }, { "upload", "fs.write", "done", "its step's own `undo`" })
    assert_match(s, "\nLeft to do by hand %(rollback 1, incomplete%):\n\n%- undo of step \"upload\"[^\n]*SHIP_TOKEN is not set\n")
    assert_nil(s:find("not known", 1, true))
  end)

  test("rolled back in full later: nothing in effect, both rollbacks, the undo's own action", function()
    local d = tmpdir()
    local f = recipe(d, "ship.lua", SHIP)
    assert_eq(relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }.code, 3)
    write(d .. "/token", "t")
    local r = relish { "rollback", "last", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_nil(read(d .. "/uploaded"))
    local md = show(d)
    local s = section(md, "What was changed and how to undo it")
    assert_match(s, "^\nNothing the run changed is still in effect: every action was undone%.\n")
    assert_match(s, "\n%- action 3 %(undo of upload%): fs%.remove `[^`]*/uploaded`\n")
    assert_nil(s:find("Left to do by hand", 1, true)) -- the last rollback completed
    local res = section(md, "Resolution")
    assert_match(res, "\n1%. %S+ by %S+, on failure %(step \"verify\": [^\n]*: incomplete, 1 undone\n")
    assert_match(res, "\n2%. %S+ by %S+, relish rollback: complete, 1 undone\n")
    assert_match(res, "\n   %- action 3 %(undo of upload%): fs%.remove `[^`]*` done\n")
    assert_match(res, "| 2 | upload | undone | %d+m?s | fs%.write `[^`]*/uploaded` %(undone%) | undo failed: [^;]*SHIP_TOKEN " ..
      "is not set; undone by rollback 2 at ")
    assert_match(md, "\n| %*%*Outcome%*%* | rollback_failed %(exit 3%); then relish rollback at ")
    -- the timeline: the failure, both rollbacks and each undo, a multi-line log on one row
    local what = {}
    for _, row in ipairs(rows(section(md, "Timeline"))) do what[#what + 1] = row[5] end
    local text = table.concat(what, "\n")
    assert_match(text, "\nstep failed\nrollback\naction 1 undone\nrollback\nrun ended\nrollback\naction 3 started\n" ..
      "action 3 done\nstep undone\naction 2 undone\nrollback$")
    assert_match(md, "| log | uploaded: / %- first line / # second line |")
    assert_nil(md:find("\n%s*%- first line"))
    assert_nil(md:find("\n%s*# second line"))
  end)

  test("a run paused at a gate: not finished, how to go on, the gate, what is in effect", function()
    local d = tmpdir()
    local f = recipe(d, "gated.lua", support.read(fixture_path("recipes/gated.lua")))
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 5, r.stdout .. r.stderr)
    local md = show(d)
    assert_sections(md)
    assert_match(md, "\n| %*%*Paused%*%* | at gate canary%-50 of step \"canary\" since [^|]*: `relish resume %S+` promotes")
    assert_match(md, "\n| %*%*Finished%*%* | %- |\n")
    assert_match(section(md, "Summary"), " and has not finished; it is paused %(exit 5%)%. 1 of 2 steps done; " ..
      "1 action, 1 still in effect%.\n")
    assert_match(section(md, "Resolution"), "\n### Gates\n\n%- canary%-50 %(step canary%) paused: waiting for a person: " ..
      "Canary at 50%%: \\<promote>%?\n")
    local what = {}
    for _, row in ipairs(rows(section(md, "Timeline"))) do what[#what + 1] = row[3] .. " / " .. row[5] end
    assert_eq({ what[#what - 2], what[#what - 1], what[#what] }, { "canary / step started", " / pause", "canary / step paused" })
    local t = rows(section(md, "What was changed and how to undo it"))
    assert_eq({ #t, t[1][2], t[1][6] }, { 1, "prepare", "automatic: the `fs.write` undo (relish.fs)" })
  end)

  test("a run that changed nothing, and a dry-run", function()
    local d = tmpdir()
    local f = recipe(d, "noop.lua", 'return recipe "noop" { step "look" { run = function(ctx) ctx.log("all fine") end } }')
    assert_eq(relish { "run", f, "--state", support.state(d) }.code, 0)
    local md = show(d)
    assert_sections(md)
    assert_match(md, "\nRecipe `noop` ran on [%d-]+ from [%d:]+ UTC for %d+m?s; it ended succeeded %(exit 0%)%. " ..
      "1 of 1 step done; 0 actions, 0 still in effect%.\n")
    assert_match(section(md, "What was changed and how to undo it"), "^\nThe run changed nothing")
    local r = relish { "run", f, "--dry-run", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local id = relish { "history", "--format", "json", "--limit", "1", "--state", support.state(d) }.stdout
    id = json.decode(id:match("[^\n]+")).run_id
    md = show(d, id)
    assert_match(md, "ran as a dry%-run on ")
    assert_match(section(md, "What was changed and how to undo it"), "^\nA dry%-run: nothing was changed%.\n")
  end)
end)
