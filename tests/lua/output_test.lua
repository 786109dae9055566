-- --output json never changes a run's outcome: every event is one valid JSON
-- line, whatever bytes a body, a path or a log line carries.
local support = require "support"
local json = require "relish.json"
local fixture = require "http_fixture"

local relish, write = support.relish, support.write

-- bytes that are not UTF-8, like a tarball's
local BINARY = "\31\139\8\0\0\0\0\0\0\3\255\254\192\128 tar"

local function json_lines(r)
  local n = 0
  for line in r.stdout:gmatch("[^\n]*") do
    if line ~= "" then
      local ok, e = pcall(json.decode, line)
      assert_true(ok and type(e) == "table" and e.event, "not a JSON event: " .. line)
      n = n + 1
    end
  end
  assert_true(n > 0, "no events:\n" .. r.stdout .. r.stderr)
  return n
end

local function last_event(r)
  return json.decode(r.stdout:match("([^\n]+)\n*$"))
end

describe("binary bodies", function()
  local RECIPE = [[
local http = require "relish.http"
local fs = require "relish.fs"
return recipe "upload" {
  params = { port = param.integer { required = true }, tarball = param.string { required = true } },
  step "upload" {
    run = function(ctx)
      http.put("http://127.0.0.1:" .. ctx.params.port .. "/echo",
        { body = fs.read(ctx.params.tarball), expect = 200 })
    end,
  },
}
]]

  test("a PUT of a binary body: same outcome in text and json, dry-run and real", function()
    local fx <close> = fixture.start()
    local d = tmpdir()
    local f = support.recipe(d, "upload.lua", RECIPE)
    write(d .. "/app.tar.gz", BINARY)
    local base = { "run", f, "-p", "port=" .. fx.ports.http, "-p", "tarball=" .. d .. "/app.tar.gz",
      "--state", support.state(d) }
    local function run(...)
      local args = {}
      for _, a in ipairs(base) do args[#args + 1] = a end
      for _, a in ipairs { ... } do args[#args + 1] = a end
      return relish(args)
    end
    local text_plan = run("--dry-run")
    assert_eq(text_plan.code, 0, text_plan.stdout .. text_plan.stderr)
    assert_nil(text_plan.stdout:find(BINARY, 1, true), "raw bytes on the terminal")
    assert_true(utf8.len(text_plan.stdout), "the plan is not text:\n" .. text_plan.stdout)
    assert_match(text_plan.stdout, #BINARY .. " bytes, sha256 %x+")
    local json_plan = run("--dry-run", "--output", "json")
    assert_eq(json_plan.code, 0, json_plan.stdout .. json_plan.stderr)
    json_lines(json_plan)
    assert_match(json_plan.stdout, '"event":"action_planned"')
    assert_eq(#fx:requests "/echo", 0)
    local text_run = run()
    assert_eq(text_run.code, 0, text_run.stdout .. text_run.stderr)
    local json_run = run("--output", "json")
    assert_eq(json_run.code, 0, json_run.stdout .. json_run.stderr)
    json_lines(json_run)
    assert_eq(last_event(json_run).status, "succeeded")
    assert_eq(#fx:requests "/echo", 2)
  end)
end)

describe("bytes that are not UTF-8", function()
  local output = require "relish.output"

  test("a log line and an fs path: the run succeeds, every line is JSON, the bytes are kept", function()
    local d = tmpdir()
    local f = support.recipe(d, "bytes.lua", [[
local fs = require "relish.fs"
return recipe "bytes" {
  params = { dir = param.string { required = true }, fail = param.boolean { default = false } },
  step "write" {
    run = function(ctx)
      local path = ctx.params.dir .. "/caf\xe9.txt" -- a Latin-1 name
      fs.write(path, "x\n")
      ctx.log("wrote %s: \xff\xfe", path)
      if ctx.params.fail then error("failing on purpose") end
    end,
  },
}
]])
    local n = 0
    local function run(...)
      n = n + 1
      local dir = d .. "/w" .. n
      assert(os.execute("mkdir " .. dir))
      local args = { "run", f, "-p", "dir=" .. dir, "--state", support.state(d), ... }
      return relish(args), dir
    end
    for _, extra in ipairs { {}, { "--dry-run" }, { "-p", "fail=true" } } do
      local text = run(table.unpack(extra))
      local r, dir = run("--output", "json", table.unpack(extra))
      assert_eq(r.code, text.code, r.stdout .. r.stderr)
      assert_eq(r.code, extra[1] == "-p" and 1 or 0, r.stdout .. r.stderr)
      json_lines(r)
      local saw_log, saw_path
      for line in r.stdout:gmatch("[^\n]+") do
        local e = json.decode(line)
        if e.event == "log" then
          saw_log = true
          assert_eq(e.message, "wrote " .. dir .. "/caf\u{fffd}.txt: \u{fffd}\u{fffd}")
          assert_eq(e.message_b64, output.base64("wrote " .. dir .. "/caf\xe9.txt: \xff\xfe"))
        end
        if e.event == "action_started" or e.event == "action_planned" then
          saw_path = true
          assert_eq(e.target, dir .. "/caf\u{fffd}.txt")
          assert_eq(e.target_b64, output.base64(dir .. "/caf\xe9.txt"))
        end
      end
      assert_true(saw_log and saw_path, r.stdout)
      -- show and history encode the journal's rows: bytes there too
      local sh_json = relish { "show", "last", "--format", "json", "--state", support.state(d) }
      assert_eq(sh_json.code, 0, sh_json.stderr)
      assert_match(json.decode(sh_json.stdout).actions[1].describe_b64 or "", "^[%w+/=]+$")
      local hist = relish { "history", "--output", "json", "--state", support.state(d) }
      assert_eq(hist.code, 0, hist.stderr)
      for line in hist.stdout:gmatch("[^\n]+") do assert_eq(type(json.decode(line).run_id), "string") end
      if extra[1] == "-p" then -- rolled back: the file with that name is gone again
        assert_nil(io.open(dir .. "/caf\xe9.txt"))
        assert_match(r.stdout, '"status":"rolled_back"')
      end
    end
  end)

  test("a saved plan keeps the bytes of a path: plan -o then apply writes that very file", function()
    local d = tmpdir()
    local f = support.recipe(d, "plan.lua", [[
local fs = require "relish.fs"
return recipe "plan" {
  params = { dir = param.string { required = true } },
  step "write" { run = function(ctx) fs.write(ctx.params.dir .. "/caf\xe9.txt", "x\n") end },
}
]])
    local plan = d .. "/plan.json"
    local p = relish { "plan", f, "-p", "dir=" .. d, "-o", plan, "--state", support.state(d) }
    assert_eq(p.code, 0, p.stdout .. p.stderr)
    assert_nil(p.stdout:find("not text", 1, true)) -- the diff itself, with U+FFFD in the path
    assert_match(p.stdout, "%+x")
    local saved = json.decode(assert(io.open(plan)):read("a"))
    assert_eq(saved.actions[1].target_b64, output.base64(d .. "/caf\xe9.txt"))
    local a = relish { "apply", plan, "--state", support.state(d) }
    assert_eq(a.code, 0, a.stdout .. a.stderr)
    assert_eq(assert(io.open(d .. "/caf\xe9.txt")):read("a"), "x\n")
    assert_nil(io.open(d .. "/plan.json.tmp"))
  end)

  test("an event that cannot be encoded at all is a minimal valid event, never an error", function()
    local lines = {}
    local out = output.new { format = "json", tty = false,
      stream = { write = function(_, ...) for _, s in ipairs { ... } do lines[#lines + 1] = s end end,
        flush = function() end } }
    out:event("log", { message = "ok \xff", [("\xfe")] = "a key that is not text", f = print })
    local e = json.decode(table.concat(lines))
    assert_eq(e.event, "log")
    assert_true(e.unencodable)
    assert_match(e.error, "json")
  end)

  test("base64 and the U+FFFD form", function()
    assert_eq(output.base64(""), "")
    assert_eq(output.base64("f"), "Zg==")
    assert_eq(output.base64("fo"), "Zm8=")
    assert_eq(output.base64("foo"), "Zm9v")
    assert_eq(output.base64("\xff\xfe\x00"), "//4A")
    assert_eq(output.text("a\xffb\xe9"), "a\u{fffd}b\u{fffd}")
    assert_eq(output.text("d\u{e9}j\u{e0}"), "d\u{e9}j\u{e0}")
    assert_eq(json.decode(json.encode(output.json_safe { a = { { path = "/caf\xe9" } } })),
      { a = { { path = "/caf\u{fffd}", path_b64 = "L2NhZuk=" } } })
    for _, bytes in ipairs { "", "f", "fo", "foo", "\xff\xfe\x00", "/caf\xe9/\x80\x81\x82\x83" } do
      assert_eq(output.unbase64(output.base64(bytes)), bytes)
    end
    for _, bad in ipairs { "Zg=", "Z!==", "Zg==Zg==x", "=Zg=" } do assert_nil(output.unbase64(bad)) end
    local t = json.decode(json.encode(output.json_safe { a = { { path = "/caf\xe9", n = 1 } }, ok = "x" }))
    assert_eq(output.json_restore(t), { a = { { path = "/caf\xe9", n = 1 } }, ok = "x" })
    assert_nil(output.json_restore { path = "x", path_b64 = "%%%%" })
  end)
end)

describe("the journal's own disk", function()
  local output = require "relish.output"
  local host = require "relish._host"

  test("disk_free gives free and total bytes of a path's filesystem", function()
    local free, total = host.disk_free(tmpdir())
    assert_eq(math.type(free), "integer")
    assert_true(total > 0 and free >= 0 and free <= total, free .. " of " .. total)
    local none, err = host.disk_free("/nonexistent/relish")
    assert_nil(none)
    assert_match(tostring(err), "/nonexistent/relish")
  end)

  test("nearly full is below 5% or below 64 MiB", function()
    local GB, MB = 1000 ^ 3, 1024 * 1024
    assert_nil(output.low_disk("/j.db", 10 * GB, 100 * GB))
    assert_nil(output.low_disk("/j.db", 100 * MB, 1 * GB))
    local w = output.low_disk("/var/lib/relish/journal.db", 4 * GB, 100 * GB)
    assert_match(w, "4%.0 GB free of 100%.0 GB %(4%%%) on the filesystem of /var/lib/relish/journal%.db")
    assert_match(output.low_disk("/j.db", 60 * MB, 1 * GB), "62%.9 MB free")
    assert_match(output.low_disk("/j.db", 2 * GB, 10 * GB, 4 * GB), "2%.0 GB free") -- RELISH_LOW_DISK_BYTES
    assert_nil(output.low_disk("/j.db", 2 * GB, 10 * GB, 1 * GB))
  end)

  test("a real run says so before acting, and still runs; a dry-run does not", function()
    local d = tmpdir()
    local f = support.recipe(d, "free.lua", [[
local fs = require "relish.fs"
return recipe "free" {
  params = { dir = param.string { required = true } },
  step "free" { run = function(ctx) fs.write(ctx.params.dir .. "/out", "x") end },
}
]])
    local env = { RELISH_LOW_DISK_BYTES = tostring(math.maxinteger) }
    local args = { "run", f, "-p", "dir=" .. d, "--state", support.state(d), env = env }
    local r = relish(args)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local warn = r.stdout:find("warning: the journal's disk is nearly full", 1, true)
    assert_true(warn and warn < r.stdout:find("step 1/1 free: started", 1, true), r.stdout)
    assert_match(r.stdout, "on the filesystem of " .. (d .. "/journal.db"):gsub("%p", "%%%0"))
    assert_eq(support.read(d .. "/out"), "x")
    args[#args + 1] = "--output"
    args[#args + 1] = "json"
    r = relish(args)
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    json_lines(r)
    assert_match(r.stdout, '"event":"log","message":"warning: the journal\'s disk is nearly full')
    local plan = relish { "run", f, "-p", "dir=" .. d, "--dry-run", "--state", support.state(d), env = env }
    assert_eq(plan.code, 0, plan.stdout .. plan.stderr)
    assert_nil(plan.stdout:find("nearly full", 1, true), plan.stdout)
  end)
end)
