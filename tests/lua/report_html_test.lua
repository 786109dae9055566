-- relish show --format html and relish history --format html: one
-- self-contained page per run (real runs: fs writes, a failing step and its
-- rollback, notes, metric measurement log lines, text that tries to inject
-- markup), checked as text and opened by Debian's headless Chromium.
local support = require "support"
local sh = require "relish.sh"
local report = require "relish.report_html"
local runbook = require "runbook_journal"
local relish, recipe, read = support.relish, support.recipe, support.read

local INJECT = "<script>alert(1)</script>"

local RECIPE = [[
local fs = require "relish.fs"
return recipe "release <b>" {
  params = {
    dir = param.string { required = true },
    label = param.string { default = "x" },
    token = param.string { secret = true, default = "hunter2-SECRET" },
  },
  step "configure" {
    run = function(ctx)
      fs.write(ctx.params.dir .. "/app.conf", "version=1\nmode=blue\n")
      ctx.note("configured " .. ctx.params.label)
    end,
  },
  step "canary" {
    run = function(ctx)
      fs.write(ctx.params.dir .. "/app.conf", "version=2\nmode=green\n")
      ctx.log("request-success-rate  0.995  >= 0.99  ✓ (1/3)")
      ctx.log("latency-p99  0.21  <= 0.5  ✓ (1/3)")
      ctx.log("request-success-rate  0.97  >= 0.99  ✗ (2/3)")
      ctx.log("latency-p99  0.3  <= 0.5  ✓ (2/3)")
      ctx.log("request-success-rate  0.93  >= 0.99  ✗ (3/3)")
    end,
  },
  step "verify" { run = function(ctx) error("verification failed: " .. ctx.params.label) end },
}
]]

local function made_run()
  local d = tmpdir()
  local f = recipe(d, "release.lua", RECIPE)
  local r = relish { "run", f, "-p", "dir=" .. d, "-p", "label=" .. INJECT, "--state", support.state(d) }
  assert_eq(r.code, 1, r.stdout .. r.stderr)
  assert_nil(read(d .. "/app.conf")) -- rolled back
  return d
end

local function show_html(d, id)
  local r = relish { "show", id or "last", "--format", "html", "--state", support.state(d) }
  assert_eq(r.code, 0, r.stdout .. r.stderr)
  return r.stdout
end

local function count(s, plain)
  local n, i = 0, 1
  while true do
    local a, b = s:find(plain, i, true)
    if not a then return n end
    n, i = n + 1, b + 1
  end
end

-- ---- the PNG a browser wrote --------------------------------------------
local function png_size(path)
  local s = assert(read(path), "no screenshot at " .. path)
  assert_eq(s:sub(1, 8), "\137PNG\r\n\26\n", "not a PNG")
  assert_eq(s:sub(13, 16), "IHDR")
  return string.unpack(">I4", s, 17), string.unpack(">I4", s, 21), #s
end

-- how many distinct pixel colours (python3 decodes the PNG with zlib)
local DISTINCT = [[
import sys, zlib, struct
data = open(sys.argv[1], "rb").read()
w, h, depth, ctype = struct.unpack(">IIBB", data[16:26])
pos, idat = 8, b""
while pos < len(data):
    n, = struct.unpack(">I", data[pos:pos + 4]); kind = data[pos + 4:pos + 8]
    if kind == b"IDAT": idat += data[pos + 8:pos + 8 + n]
    pos += 12 + n
raw = zlib.decompress(idat)
bpp = {2: 3, 6: 4}[ctype]
stride = w * bpp
prev = bytearray(stride)
colours = set()
i = 0
for y in range(h):
    f = raw[i]; line = bytearray(raw[i + 1:i + 1 + stride]); i += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0
        b = prev[x]; c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    if y % 4 == 0:
        for x in range(0, stride, bpp * 2): colours.add(bytes(line[x:x + 3]))
    prev = line
print(len(colours))
]]

local function chromium(args, d)
  local argv = { "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
    "--user-data-dir=" .. d .. "/chromium" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  local r = sh.run { argv = argv, timeout = 90, check = false, env = { HOME = d } }
  assert_eq(r.code, 0, r.stderr)
  return r.stdout
end

describe("show --format html", function()
  test("one self-contained page: header, timeline, steps, actions with diffs, logs, metric charts", function()
    local d = made_run()
    local html = show_html(d)
    assert_match(html, "^<!DOCTYPE html>\n<html lang=\"en\">")
    assert_match(html, "</html>\n$")
    -- nothing external, nothing to run
    for _, bad in ipairs { "<script", "<link", " src=", "url(", "@import", "http://", "https://" } do
      assert_nil(html:find(bad, 1, true), "the page has " .. bad)
    end
    -- the header: recipe (escaped), outcome and exit code, who, params with the secret hidden
    assert_match(html, "<h1>release &lt;b&gt; <span class=\"badge\" style=\"background:#bc4c00\">rolled_back · exit 1</span></h1>")
    assert_match(html, "<dt>By</dt><dd>[^<]+ on [^<]+ %(pid %d+%)</dd>")
    assert_match(html, "<dt>Took</dt><dd>%d+ms</dd>")
    assert_match(html, "<code>token</code>&nbsp;=&nbsp;<code>%*%*%*</code>")
    assert_nil(html:find("hunter2-SECRET", 1, true), "the secret is in the page")
    -- the timeline: one bar per step, coloured by status, the rollback, markers
    assert_match(html, '<svg class="timeline" id="timeline"')
    assert_eq(count(html, '<g class="step-bar"'), 3)
    assert_match(html, '<g class="step%-bar" data%-step="1"><title>configure: done, %d+ms</title><rect [^>]*fill="#1a7f37"')
    assert_match(html, '<g class="step%-bar" data%-step="3"><title>verify: failed, %d+ms</title><rect [^>]*fill="#cf222e"')
    assert_eq(count(html, '<g class="rollback-bar">'), 1)
    assert_eq(count(html, '<g class="marker note">'), 1)
    assert_eq(count(html, '<g class="marker measurement">'), 2) -- the failed measurements
    assert_true(count(html, '<g class="marker rollback">') >= 1)
    -- each step, its actions with their diffs (+/- lines), its log lines
    for i, name in ipairs { "configure", "canary", "verify" } do
      assert_match(html, string.format('<section class="step" id="step%%-%d"><h3>%d%%. %s <span', i, i, name))
    end
    assert_eq(count(html, '<div class="action"'), 2)
    assert_match(html, '<span class="del">%-mode=blue</span><span class="add">%+version=2</span><span class="add">%+mode=green</span>')
    assert_match(html, '<span class="add">%+version=1</span>')
    assert_match(html, '<pre class="diff">')
    local canary = html:match('<section class="step" id="step%-2">(.-)</section>')
    assert_match(canary, '<b>log</b> <span class="muted">[^<]+</span> request%-success%-rate  0%.97  &gt;= 0%.99  ✗ %(2/3%)</li>')
    assert_match(html:match('<section class="step" id="step%-3">(.-)</section>'), "verification failed")
    -- metric charts: one per metric, the threshold line, failed points marked
    assert_match(html, '<div class="metric" data%-metric="request%-success%-rate"><h3>request%-success%-rate ' ..
      '<span class="muted">3 measurement%(s%), 2 failed</span>')
    assert_match(html, '<div class="metric" data%-metric="latency%-p99"><h3>latency%-p99 ' ..
      '<span class="muted">2 measurement%(s%), 0 failed</span>')
    assert_eq(count(html, '<svg class="chart"'), 2)
    assert_eq(count(html, '<line class="threshold"'), 2)
    assert_eq(count(html, '<g class="point failed">'), 2)
    assert_eq(count(html, '<g class="point successful">'), 3)
    -- the rollback and its outcome
    assert_match(html, '<section class="rollback" id="rollback%-1"><h3>1%. on failure %(step &quot;verify&quot;')
    -- responsive and printable
    assert_match(html, '<meta name="viewport" content="width=device%-width, initial%-scale=1">')
    assert_match(html, "@media %(max%-width:600px%)")
    assert_match(html, "@media print")
  end)

  test("text from params, logs, notes and errors is escaped: no markup gets in", function()
    local d = made_run()
    local html = show_html(d)
    assert_nil(html:find(INJECT, 1, true), "raw markup from a param reached the page")
    assert_nil(html:find("release <b>", 1, true), "raw markup from the recipe name reached the page")
    local esc = "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert_true(count(html, esc) >= 4, "the param, the note, the step's error, the run's error") -- each escaped
    assert_match(html, '<li><time[^>]*>[^<]*</time> <b>note</b> <span class="muted">[^<]+</span> configured ' ..
      esc:gsub("%p", "%%%0") .. "</li>")
    -- the escaper itself: quotes, control bytes, bytes that are not UTF-8
    assert_eq(report.esc([["a" & 'b' <c>]]), "&quot;a&quot; &amp; &#39;b&#39; &lt;c&gt;")
    assert_eq(report.esc("a\27[31mb\0"), "a\u{241B}[31mb\u{2400}")
    assert_eq(report.esc("x\255y"), "x\u{FFFD}y")
  end)

  test("measurement lines as metrics.analyze writes them", function()
    local m = report.measurement("request-success-rate  0.98  >= 0.99  ✗ (3)")
    assert_eq({ m.name, m.value, m.cond, m.phase, m.thresholds }, { "request-success-rate", 0.98, ">= 0.99", "failed",
      { 0.99 } })
    m = report.measurement("error-rate  0.01  not < 0.05  ✓ (2/5)  (dry-run metric)")
    assert_eq({ m.name, m.value, m.phase, m.thresholds }, { "error-rate", 0.01, "successful", { 0.05 } })
    m = report.measurement("lat  0.2  in [0.1, 0.5]  ? (1/5)")
    assert_eq({ m.phase, m.thresholds }, { "inconclusive", { 0.1, 0.5 } })
    m = report.measurement("lat  -    ! (1/5)  connection refused")
    assert_eq({ m.name, m.value, m.cond, m.phase }, { "lat", nil, "", "error" })
    assert_nil(report.measurement("analysis failed: lat failed (0 ok, 1 failed, 0 inconclusive, 0 errors)"))
    assert_nil(report.measurement("deployed  v2  to  prod (eu)"))
  end)
end)

describe("show --format html of a run paused at a gate, then rolled back", function()
  test("the gate, its decision, the pause marker and the later rollback", function()
    local d = tmpdir()
    local f = recipe(d, "gated.lua", support.read(fixture_path("recipes/gated.lua")))
    local r = relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 5, r.stdout .. r.stderr)
    local paused = show_html(d)
    assert_match(paused, '<span class="badge" style="background:#8250df">paused · exit 5</span>')
    assert_match(paused, "<dt>Paused</dt><dd>at gate canary%-50")
    assert_match(paused, '<g class="step%-bar" data%-step="2"><title>canary: paused')
    assert_true(count(paused, '<g class="marker pause">') == 1)
    assert_match(paused, "Canary at 50%%: &lt;promote&gt;%?")
    r = relish { "rollback", "last", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_nil(read(d .. "/prepared"))
    local html = show_html(d)
    assert_match(html, '<h2>Gates</h2><section id="gates"><ul>\n<li><span class="badge" style="background:#cf222e">aborted</span> ' ..
      "canary%-50 %(step canary%) aborted: Canary at 50%%: &lt;promote&gt;%?")
    assert_match(html, "<li>[^<]+ abort by [^<]+ %(via rollback%)</li>")
    assert_match(html, '<section class="rollback" id="rollback%-1"><h3>1%. relish rollback ')
    assert_true(count(html, '<g class="marker decision">') >= 1)
  end)
end)

describe("show --format html of a runbook run", function()
  test("the header has the runbook's facts; the timeline marks checks, prompts, answers, skips and the stop", function()
    local d = tmpdir()
    runbook.run(d)
    local html = show_html(d, runbook.RUN)
    for _, bad in ipairs { "<script", "<link", " src=", "url(", "@import", "href=\"javascript" } do
      assert_nil(html:find(bad, 1, true), "the page has " .. bad)
    end
    -- the header: severity, service, owner, what the runbook is for, links
    assert_match(html, '<dt>Severity</dt><dd><span class="badge" style="background:#cf222e">SEV2</span></dd>')
    assert_match(html, "<dt>Service</dt><dd>api</dd>")
    assert_match(html, "<dt>Owner</dt><dd>team%-payments</dd>")
    assert_match(html, "<dt>Runbook file</dt><dd><code>[^<]*/api%-errors%.lua</code></dd>")
    assert_match(html, "<dt>About</dt><dd>The API answers 5xx")
    assert_match(html, '<dt>Links</dt><dd><span class="links"><a href="https://grafana%.example/d/api">dashboard</a> · ' ..
      '<a href="https://wiki%.example/api %(old%)">https://wiki%.example/api %(old%)</a> · ' ..
      "not a link <code>javascript:alert%(1%)</code></span></dd>")
    -- the markers: a check coloured by its verdict, a person's part as circles, the stop
    local tl = html:match('<svg class="timeline".-</svg>')
    assert_eq(count(tl, '<g class="marker check bad">'), 1)
    assert_eq(count(tl, '<g class="marker check ok">'), 1)
    assert_match(tl, '<g class="marker check bad"><title>[^<]* check by alice: error rate: %[bad%] 5xx at 12%%[^<]*' ..
      '</title><path d="[^"]+" fill="#cf222e"/></g>')
    assert_match(tl, '<g class="marker check ok"><title>[^<]*</title><path d="[^"]+" fill="#1a7f37"/></g>')
    assert_eq(count(tl, '<g class="marker prompt">'), 3)
    assert_eq(count(tl, '<g class="marker answer">'), 3)
    assert_match(tl, '<g class="marker answer"><title>[^<]* answer by bob: %*%*%* %(via terminal%)</title>')
    assert_eq(count(tl, '<g class="marker skip">'), 1)
    assert_eq(count(tl, '<g class="marker stop">'), 1)
    assert_match(tl, '<g class="marker stop"><title>[^<]* stop by carol: stopped by carol before step ' ..
      '&quot;verify&quot;</title>')
    assert_eq(count(tl, '<g class="marker note">'), 1)
    -- the legend names them
    local legend = html:match('<p class="legend muted">(.-)</p>')
    for _, name in ipairs { "check", "prompt, answer", "skip", "stop" } do
      assert_true(legend:find(name, 1, true) ~= nil, "the legend has no " .. name)
    end
    -- a finding's table keeps its columns (preformatted under its first line)
    local step1 = html:match('<section class="step" id="step%-1">(.-)</section>')
    assert_match(step1, '<b>check</b> <span class="muted">alice</span> error rate: %[bad%] 5xx at 12%%' ..
      '<pre>route   rate\n/pay    0%.12\n/login  0%.01</pre></li>')
    -- events by their step, with who; the events table too
    local step3 = html:match('<section class="step" id="step%-3">(.-)</section>')
    assert_match(step3, '<b>skip</b> <span class="muted">bob</span> step &quot;purge cache&quot; skipped: bob said no</li>')
    assert_nil(step3:find("<b>prompt</b> <span class=\"muted\">alice</span> Roll api", 1, true))
    assert_match(html, '<tr class="event answer"><td><time[^>]*>[^<]*</time></td><td>answer</td><td class="actor">bob</td>' ..
      '<td[^>]*>yes %(via terminal%)</td></tr>')
  end)
end)

describe("history --format html", function()
  test("lists runs with links to SHORT_ID.html, escaped", function()
    local d = made_run()
    local f = recipe(d, "ok.lua", 'return recipe "ok" { step "one" { run = function(ctx) ctx.log("hi") end } }')
    local r = relish { "run", f, "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    r = relish { "history", "--format", "html", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local html = r.stdout
    assert_match(html, "^<!DOCTYPE html>")
    assert_nil(html:find("<script", 1, true))
    assert_eq(count(html, '<tr class="run">'), 2)
    local text = relish { "history", "--output", "text", "--state", support.state(d) }.stdout
    for short in text:gmatch("\n(%x+)  ") do
      assert_match(html, '<a href="' .. short .. '%.html" title="[%d-]+' .. short .. '"><code>' .. short .. "</code></a>")
    end
    assert_match(html, "<td>release &lt;b&gt;</td><td><span class=\"badge\" style=\"background:#bc4c00\">failed, rolled back</span>")
    assert_match(html, "<td>ok</td><td><span class=\"badge\" style=\"background:#1a7f37\">succeeded</span>")
    -- --output html is the same flag
    assert_eq(relish { "history", "--output", "html", "--state", support.state(d) }.stdout, html)
    r = relish { "history", "--format", "xml", "--state", support.state(d) }
    assert_eq(r.code, 2)
  end)
end)

describe("the HTML report in a real browser", function()
  test("headless Chromium: the DOM has the timeline and each step; screenshots at 1280 and 390 wide", function()
    if not sh.which("chromium") then skip("chromium is not installed (scripts/setup.sh installs it)") end
    if not sh.which("python3") then skip("python3 is not installed") end
    local d = made_run()
    local page = d .. "/run.html"
    support.write(page, show_html(d))
    local dom = chromium({ "--dump-dom", "file://" .. page }, d)
    assert_match(dom, '<svg class="timeline" id="timeline"')
    for i, name in ipairs { "configure", "canary", "verify" } do
      assert_match(dom, string.format('<section class="step" id="step%%-%d"><h3>%d%%. %s', i, i, name))
      assert_match(dom, string.format('<g class="step%%-bar" data%%-step="%d">', i))
    end
    assert_match(dom, '<svg class="chart"')
    assert_nil(dom:find("<script", 1, true))
    -- a runbook's page: its markers are in the browser's DOM too
    runbook.run(d)
    local rb_page = d .. "/runbook.html"
    support.write(rb_page, show_html(d, runbook.RUN))
    local rb_dom = chromium({ "--dump-dom", "file://" .. rb_page }, d)
    for _, marker in ipairs { "check bad", "check ok", "prompt", "answer", "skip", "stop" } do
      assert_match(rb_dom, '<g class="marker ' .. marker .. '">')
    end
    assert_match(rb_dom, '<a href="https://grafana%.example/d/api">dashboard</a>')
    for _, size in ipairs { { 1280, 900 }, { 390, 844 } } do
      local png = string.format("%s/shot-%d.png", d, size[1])
      chromium({ "--screenshot=" .. png, string.format("--window-size=%d,%d", size[1], size[2]), "file://" .. page }, d)
      local w, h, bytes = png_size(png)
      assert_eq({ w, h }, size)
      assert_true(bytes > 10000, "a blank page compresses to a few KB: " .. bytes .. " bytes")
      local r = sh.run { argv = { "python3", "-c", DISTINCT, png }, check = false, timeout = 60 }
      assert_eq(r.code, 0, r.stderr)
      assert_true(tonumber(r.stdout) > 8, "the screenshot is (nearly) one colour: " .. r.stdout)
    end
  end)
end)
