-- Tests for relish.notify (Slack and generic webhooks) and a recipe's notify
-- handlers, against the HTTP fixture server.
local notify = require "relish.notify"
local json = require "relish.json"
local secret = require "relish.secret"
local gate = require "relish._gate"
local fixture = require "http_fixture"
local support = require "support"
local try = require("relish._errors").try

describe("slack", function()
  test("posts Slack's incoming-webhook JSON; the webhook stays a secret", function()
    local fx <close> = fixture.start()
    local hook = secret.value(fx.url "/slack/T000/B000/hook-secret-42", "slack")
    local effects, r = gate.capture(function()
      return assert(notify.slack { webhook = hook, text = "Release *v1.2.0* started",
        blocks = { { type = "section", text = { type = "mrkdwn", text = "hello" } } } })
    end)
    assert_eq({ r.status, r.body }, { 200, "ok" })
    local seen = fx:requests()
    assert_eq(#seen, 1)
    assert_eq(seen[1].method, "POST")
    assert_eq(seen[1].headers["content-type"], "application/json")
    local body = json.decode(seen[1].body)
    assert_eq(body.text, "Release *v1.2.0* started")
    assert_eq(body.blocks[1].text.text, "hello")
    assert_eq(#effects, 1)
    local a = effects[1]
    assert_eq({ a.kind, a.target, a.describe, a.status, a.irreversible },
      { "notify.slack", "***", "slack: Release *v1.2.0* started", "done", true })
  end)

  test("a payload Slack refuses is an http_status error", function()
    local fx <close> = fixture.start()
    local r, err = try(notify.slack, { webhook = fx.url "/slack/x", blocks = {} })
    assert_nil(r)
    assert_eq({ err.kind, err.status, err.body }, { "http_status", 400, "invalid_payload" })
    local effects, ok, raised = gate.capture(function()
      return pcall(notify.slack, { webhook = fx.url "/slack/x", blocks = {} })
    end)
    assert_false(ok)
    assert_eq({ raised.kind, raised.status }, { "http_status", 400 })
    assert_eq({ effects[1].kind, effects[1].status }, { "notify.slack", "failed" })
    assert_match(effects[1].error, "expected status 200 or 201 or 202 or 204, got 400: invalid_payload")
  end)

  test("misuse raises", function()
    assert_error(function() notify.slack { text = "x" } end, "webhook is required")
    assert_error(function() notify.slack { webhook = "http://x/" } end, "give text, blocks or both")
    assert_error(function() notify.slack { webhook = "http://x/", txt = "x" } end, "unknown field 'txt'")
    assert_error(function() notify.slack { webhook = 1, text = "x" } end, "webhook must be a string or a secret")
    assert_error(function() notify.webhook { json = {} } end, "url is required")
  end)
end)

describe("webhook", function()
  test("sends JSON with headers and method, retried until it gets through", function()
    local fx <close> = fixture.start()
    local r = assert(notify.webhook { url = fx.url "/flaky?key=w&fail=2", json = { event = "deployed" },
      headers = { ["X-Signature"] = "sig" } })
    assert_eq({ r.status, r.attempts }, { 200, 3 })
    local seen = fx:requests "/flaky"
    assert_eq(#seen, 3)
    assert_eq(json.decode(seen[3].body), { event = "deployed" })
    assert_eq(seen[3].headers["x-signature"], "sig")
    r = assert(notify.webhook { url = fx.url "/echo", method = "put" })
    assert_eq(assert(r:json()).method, "PUT")
  end)

  test("a status it does not accept is an error after the retries", function()
    local fx <close> = fixture.start()
    local msg, err = assert_error(function() notify.webhook { url = fx.url "/status/503", retries = 1 } end)
    assert_eq({ err.kind, err.status }, { "http_status", 503 })
    assert_match(msg, "^POST [^ ]*/status/503: expected status 200 or 201 or 202 or 204, got 503")
    assert_eq(#fx:requests "/status/503", 2)
    local r = notify.webhook { url = fx.url "/status/418", expect = { 418 } }
    assert_eq(r.status, 418)
  end)

  test("in a dry-run nothing is sent and the message is planned, irreversible", function()
    local fx <close> = fixture.start()
    local effects, r = gate.capture(function()
      return notify.webhook { url = fx.url "/webhook", json = { token = secret.value("wh-secret-77") } }
    end, { dry_run = true })
    assert_eq({ r.status, r.planned }, { 0, true })
    assert_eq(#fx:requests(), 0)
    assert_eq({ effects[1].kind, effects[1].status, effects[1].irreversible }, { "notify.webhook", "planned", true })
    assert_eq(effects[1].describe, "POST " .. fx.url "/webhook")
    assert_eq(effects[1].detail, '{"token":"***"}')
  end)
end)

describe("a recipe's notify handlers", function()
  local RECIPE = [[
local notify = require "relish.notify"
local fs = require "relish.fs"
local function tell(event)
  return function(ctx, o)
    notify.webhook { url = ctx.params.hook, json = { event = event, status = o.status,
      exit_code = o.exit_code, rollback = o.rollback, step = o.step, run_id = o.run_id } }
    if ctx.params.broken == event then error("the " .. event .. " handler broke") end
  end
end
return recipe "notified" {
  params = { hook = param.string { required = true }, dir = param.string { required = true },
    fail = param.boolean { default = false }, broken = param.string { default = "" } },
  notify = { on_start = tell("start"), on_success = tell("success"), on_failure = tell("failure"),
    on_rollback = tell("rollback") },
  step "write" { run = function(ctx) assert(fs.write(ctx.params.dir .. "/f", "x")) end },
  step "maybe fail" { run = function(ctx) if ctx.params.fail then error("failing on purpose") end end },
}
]]

  local function events(fx)
    local out = {}
    for _, r in ipairs(fx:requests "/webhook") do out[#out + 1] = json.decode(r.body) end
    return out
  end

  test("on_start and on_success with the outcome", function()
    local fx <close> = fixture.start()
    local d = tmpdir()
    local f = support.recipe(d, "r.lua", RECIPE)
    local r = support.relish { "run", f, "-p", "hook=" .. fx.url "/webhook", "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local ev = events(fx)
    assert_eq(#ev, 2)
    assert_eq({ ev[1].event, ev[1].status }, { "start", "running" })
    assert_eq({ ev[2].event, ev[2].status, ev[2].exit_code }, { "success", "succeeded", 0 })
    assert_match(r.stdout, "notify on_success: POST http://127%.0%.0%.1:%d+/webhook %(done%)")
    local show = support.relish { "show", "last", "--state", support.state(d) }
    assert_match(show.stdout, "notify on_start")
  end)

  test("a failing run: on_rollback then on_failure", function()
    local fx <close> = fixture.start()
    local d = tmpdir()
    local f = support.recipe(d, "r.lua", RECIPE)
    local r = support.relish { "run", f, "-p", "hook=" .. fx.url "/webhook", "-p", "dir=" .. d, "-p", "fail=true",
      "--state", support.state(d) }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    local ev = events(fx)
    assert_eq(#ev, 3)
    assert_eq(ev[1].event, "start")
    assert_eq({ ev[2].event, ev[2].rollback, ev[2].status }, { "rollback", "complete", "rolled_back" })
    assert_eq({ ev[3].event, ev[3].status, ev[3].exit_code, ev[3].step }, { "failure", "rolled_back", 1, "maybe fail" })
  end)

  test("a dry-run sends nothing and shows the planned messages", function()
    local fx <close> = fixture.start()
    local d = tmpdir()
    local f = support.recipe(d, "r.lua", RECIPE)
    local r = support.relish { "run", f, "-p", "hook=" .. fx.url "/webhook", "-p", "dir=" .. d, "--dry-run",
      "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(#fx:requests(), 0)
    assert_match(r.stdout, "notify on_start: POST [^\n]*/webhook %(planned%)")
    assert_match(r.stdout, "notify on_success: POST [^\n]*/webhook %(planned%)")
    assert_match(r.stdout, "Plan: 1 action%(s%)") -- the file write; notifications are not in the plan
  end)

  test("a failing handler is logged and does not change the outcome", function()
    local fx <close> = fixture.start()
    local d = tmpdir()
    local f = support.recipe(d, "r.lua", RECIPE)
    local r = support.relish { "run", f, "-p", "hook=" .. fx.url "/webhook", "-p", "dir=" .. d,
      "-p", "broken=success", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "notify on_success failed: [^\n]*the success handler broke")
    assert_match(r.stdout, "Succeeded")
    r = support.relish { "run", f, "-p", "hook=http://127.0.0.1:1/nothing", "-p", "dir=" .. d,
      "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "notify on_start: POST http://127%.0%.0%.1:1/nothing %(failed: POST http://127%.0%.0%.1:1/nothing: [^\n]*%)")
    assert_match(r.stdout, "notify on_start failed: POST http://127%.0%.0%.1:1/nothing: ")
    assert_match(r.stdout, "Succeeded")
  end)

  test("a wrong notify field is exit 2 naming it", function()
    local d = tmpdir()
    local f = support.recipe(d, "r.lua", [[
return recipe "x" { notify = { on_sucess = function() end }, step "a" { run = function() end } }
]])
    local r = support.relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "notify%.on_sucess is not a handler")
  end)
end)
