-- relish history answers questions: how a run ended (and its exit code), how
-- long it took, with which params, whether it was rolled back later or failed
-- before changing anything; and the short run ids it shows can be typed back.
local support = require "support"
local json = require "relish.json"
local relish, recipe = support.relish, support.recipe

local RECIPE = [[
local fs = require "relish.fs"
return recipe "rel" {
  params = {
    dir = param.string { required = true },
    version = param.string { default = "1.2.3" },
    token = param.string { default = "hunter2-secret", secret = true },
    fail = param.string { default = "" },
  },
  step "check" { run = function(ctx) if ctx.params.fail == "early" then error("bad version") end end },
  step "write" { run = function(ctx) fs.write(ctx.params.dir .. "/out", ctx.params.version) end },
  step "verify" { run = function(ctx) if ctx.params.fail == "late" then error("verify failed") end end },
}
]]

local function setup()
  local d = tmpdir()
  return d, recipe(d, "rel.lua", RECIPE)
end

local function run(d, f, ...)
  return relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d), ... }
end

local function history(d, ...)
  local r = relish { "history", "--state", support.state(d), ... }
  assert_eq(r.code, 0, r.stdout .. r.stderr)
  return r.stdout
end

local function history_json(d)
  local rows = {}
  for line in history(d, "--output", "json"):gmatch("[^\n]+") do rows[#rows + 1] = json.decode(line) end
  return rows
end

describe("history", function()
  test("a run that failed before changing anything has its own status, text and json", function()
    local d, f = setup()
    assert_eq(run(d, f, "-p", "fail=early").code, 1)
    assert_match(history(d), "\n%x+%s+rel%s+failed %(nothing changed%)%s+1%s+%d+m?s ")
    local h = history_json(d)[1]
    assert_eq({ h.outcome, h.nothing_changed, h.exit_code, h.summary }, { "rolled_back", true, 1, "failed (nothing changed)" })
  end)

  test("a failed run that changed something and was rolled back says so", function()
    local d, f = setup()
    assert_eq(run(d, f, "-p", "fail=late").code, 1)
    assert_match(history(d), "\n%x+%s+rel%s+failed, rolled back%s+1%s")
    local h = history_json(d)[1]
    assert_eq({ h.nothing_changed, h.summary, h.rolled_back }, { false, "failed, rolled back", json.null })
  end)

  test("a succeeded run rolled back later by relish rollback: when and by whom, exit code kept", function()
    local d, f = setup()
    assert_eq(run(d, f).code, 0)
    assert_eq(relish { "rollback", "last", "--state", support.state(d) }.code, 0)
    local t = history(d)
    assert_match(t, "\n%x+%s+rel%s+succeeded, then rolled back at 20%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d by %S+%s+0%s")
    local h = history_json(d)[1]
    assert_eq({ h.status, h.outcome, h.exit_code, h.nothing_changed }, { "rolled_back", "succeeded", 0, false })
    assert_eq(h.rolled_back.status, "complete")
    assert_match(h.rolled_back.at, "Z$")
    assert_match(h.summary, "^succeeded, then rolled back at ")
  end)

  test("columns: short id, duration, exit code, key params with secrets as ***", function()
    local d, f = setup()
    assert_eq(run(d, f, "-p", "version=2.0.0").code, 0)
    local t = history(d)
    local header, row = t:match("^([^\n]*)\n([^\n]*)\n$")
    assert_match(header, "^RUN%s+RECIPE%s+STATUS%s+EXIT%s+TOOK%s+STARTED%s+USER%s+PARAMS$")
    local h = history_json(d)[1]
    assert_eq(h.short_id, h.run_id:match("%-(%x+)$"))
    assert_eq(#h.short_id, 8)
    assert_true(h.duration_s >= 0)
    assert_match(row, "^" .. h.short_id .. "%s+rel%s+succeeded%s+0%s+%d+m?s%s+20%d%d%-%d%d%-%d%d %d%d:%d%d:%d%d%s+%S+%s+")
    assert_match(row, "token=%*%*%*")
    assert_match(row, "version=2%.0%.0")
    assert_nil(t:find("hunter2", 1, true))
    assert_eq(h.params.token, "***")
    -- long params are cut to stay on the line
    assert_true(#row:match("dir=.*$") <= 60, row)
    assert_nil(row:find("fail=", 1, true), "empty values are left out")
  end)

  test("--recipe and --limit are kept", function()
    local d, f = setup()
    for _ = 1, 3 do assert_eq(run(d, f).code, 0) end
    local _, n = history(d, "--limit", "2"):gsub("\n", "")
    assert_eq(n, 3)
    assert_match(history(d, "--recipe", "none"), "no runs of recipe 'none'")
    assert_eq(#history_json(d), 3)
    assert_eq(relish { "history", "--limit", "0", "--state", support.state(d) }.code, 2)
  end)
end)

describe("run ids people can type", function()
  test("the short id history shows, or any unique part, names the run; '_' is no wildcard", function()
    local d, f = setup()
    assert_eq(run(d, f).code, 0)
    assert_eq(run(d, f).code, 0)
    local h = history_json(d)
    local short = h[2].short_id
    local s = relish { "show", short, "--format", "json", "--state", support.state(d) }
    assert_eq(s.code, 0, s.stderr)
    assert_eq(json.decode(s.stdout).run_id, h[2].run_id)
    local r = relish { "rollback", short:sub(3, 6), "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(history(d), short .. "%s+rel%s+succeeded, then rolled back at ")
    -- '_' and '%' match nothing: ids have none
    for _, id in ipairs { "_", "%", "2026_" } do
      r = relish { "show", id, "--state", support.state(d) }
      assert_eq(r.code, 2, id)
      assert_match(r.stderr, "no run '")
    end
    -- a part of both ids (the date) is ambiguous: exit 2, the candidates with recipe and start
    r = relish { "show", h[1].run_id:sub(1, 8), "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "is ambiguous")
    for i = 1, 2 do assert_match(r.stderr, h[i].run_id:gsub("%p", "%%%0") .. "  rel  started ") end
  end)
end)
