-- relish.report_html: a run (relish show --format html) and the list of runs
-- (relish history --format html) as ONE self-contained HTML page each: inline
-- CSS and SVG, no script, no external asset; readable on a phone, printable.
-- Every text from the journal is HTML-escaped (and bytes that are not UTF-8
-- shown as U+FFFD). Metric measurements are the log lines metrics.analyze
-- writes: "NAME  VALUE  CONDITION  MARK (N/COUNT)...".
local J = require "relish.journal"
local json = require "relish.json"
local output = require "relish.output"

local M = {}

local ESC = { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&#39;" }

-- text for HTML: valid UTF-8, escaped, control characters shown as symbols
local function esc(s)
  if s == nil then return "" end
  s = output.text(tostring(s))
  s = s:gsub("[&<>\"']", ESC)
  return (s:gsub("[%z\1-\8\11\12\14-\31\127]", function(c)
    return c == "\127" and "\u{2421}" or utf8.char(0x2400 + c:byte())
  end))
end
M.esc = esc

local COLOR = {
  done = "#1a7f37", succeeded = "#1a7f37", complete = "#1a7f37", promoted = "#1a7f37", successful = "#1a7f37",
  failed = "#cf222e", undo_failed = "#82071e", rollback_failed = "#82071e", incomplete = "#82071e",
  interrupted = "#cf222e", crashed = "#82071e", aborted = "#cf222e",
  undone = "#bc4c00", rolled_back = "#bc4c00", stopped = "#9a6700",
  running = "#0969da", pending = "#8c959f", planned = "#8c959f", skipped = "#8c959f",
  paused = "#8250df", asked = "#8250df",
}
local function color(status) return COLOR[status] or "#57606a" end

local function badge(status, text)
  return string.format('<span class="badge" style="background:%s">%s</span>', color(status), esc(text or status))
end

local CSS = [[
*{box-sizing:border-box}
body{margin:0;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2328;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:16px}
h1{font-size:1.5em;margin:.2em 0;word-break:break-word}
h2{font-size:1.2em;margin:1.4em 0 .5em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
h3{font-size:1.05em;margin:.2em 0}
section>h2:first-child{margin-top:0}
section,.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px;margin:10px 0}
.badge{display:inline-block;color:#fff;border-radius:12px;padding:0 .6em;font-size:.85em;font-weight:600;white-space:nowrap}
dl.meta{display:grid;grid-template-columns:max-content 1fr;gap:2px 12px;margin:0}
dl.meta dt{color:#57606a}dl.meta dd{margin:0;word-break:break-word}
code,pre{font:13px/1.4 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:4px;padding:8px;overflow-x:auto;white-space:pre;margin:6px 0;max-height:28em}
pre .add{color:#116329;background:#dafbe1;display:block}pre .del{color:#82071e;background:#ffebe9;display:block}
pre .hunk{color:#0550ae;display:block}pre .file{font-weight:700;display:block}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #d0d7de;vertical-align:top}
th{color:#57606a;font-weight:600}
td.t{word-break:break-all}
.scroll{overflow-x:auto}
svg.timeline{display:block;width:100%;min-width:640px;height:auto}
svg.chart{display:block;width:100%;min-width:300px;height:auto}
.charts{display:grid;grid-template-columns:repeat(auto-fit,minmax(320px,1fr));gap:12px}
svg text{font:11px system-ui,sans-serif;fill:#1f2328}
svg .axis{stroke:#8c959f;stroke-width:1}svg .grid{stroke:#eaeef2;stroke-width:1}
.muted{color:#57606a}.err{color:#cf222e;white-space:pre-wrap;word-break:break-word}
ul.log{list-style:none;padding:0;margin:6px 0}ul.log li{padding:1px 0;white-space:pre-wrap;word-break:break-word}
ul.log time,td time{color:#57606a;font:12px ui-monospace,monospace}
.action{border-top:1px solid #eaeef2;padding:6px 0}
.legend span{margin-right:12px;white-space:nowrap}.legend i{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px}
@media (max-width:600px){main{padding:6px}body{font-size:14px}dl.meta{grid-template-columns:1fr}dl.meta dt{margin-top:4px}
 .hide-narrow{display:none}th,td{padding:3px 4px}}
@media print{body{background:#fff;font-size:11pt}main{max-width:none;padding:0}section,.card{border:none;padding:0;break-inside:avoid-page}
 pre{max-height:none;white-space:pre-wrap;word-break:break-all}.scroll{overflow:visible}svg.timeline,svg.chart{min-width:0}
 .badge{border:1px solid #000;color:#000!important;background:none!important}a{color:#000;text-decoration:none}}
]]

local function page(title, body)
  return table.concat {
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
    "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n",
    "<meta name=\"generator\" content=\"relish\">\n",
    "<title>", esc(title), "</title>\n<style>\n", CSS, "</style>\n</head>\n<body>\n<main>\n",
    body, "\n</main>\n</body>\n</html>\n",
  }
end

local function when(t) return t and (t:gsub("T", " "):gsub("Z$", " UTC")) or "-" end
local function timetag(t) return string.format('<time datetime="%s">%s</time>', esc(t), esc(when(t))) end
local function num(x) return string.format("%.1f", x) end

-- ---- metric measurements, from the log lines metrics.analyze writes -------
local MARKS = { ["✓"] = "successful", ["✗"] = "failed", ["?"] = "inconclusive", ["!"] = "error" }

local function parse_value(v)
  if v == "+Inf" then return math.huge elseif v == "-Inf" then return -math.huge end
  return tonumber(v)
end

-- a measurement {name, value (nil: none), cond, phase, thresholds} or nil
function M.measurement(text)
  local name, value, cond, mark = text:match("^(%S+)  (%S+)  (.-)  (%S+) %(%d+/?%d*%)")
  if not name or not MARKS[mark] then return nil end
  local m = { name = name, value = parse_value(value), raw = value, cond = cond, phase = MARKS[mark], thresholds = {} }
  local x = cond:match("^not [<>]=? (%S+)$") or cond:match("^[<>]=? (%S+)$")
  if x then m.thresholds[1] = tonumber(x) end
  local a, b = cond:match("^in %[(%S+), (%S+)%]$")
  if a then m.thresholds = { tonumber(a), tonumber(b) } end
  return m
end

local function metric_series(events)
  local by, order = {}, {}
  for _, e in ipairs(events) do
    if e.type == "log" then
      local m = M.measurement(e.text)
      if m then
        m.ts = e.ts
        if not by[m.name] then by[m.name] = { name = m.name, points = {} }; order[#order + 1] = by[m.name] end
        table.insert(by[m.name].points, m)
      end
    end
  end
  return order
end

local PHASE_COLOR = { successful = "#1a7f37", failed = "#cf222e", inconclusive = "#9a6700", error = "#57606a" }

local function nice(x)
  if x == 0 then return "0" end
  return (string.format("%.3g", x))
end

local function chart(series, t0)
  local W, H, L, R, T, B = 480, 240, 48, 12, 14, 30
  local lo, hi, tmin, tmax = math.huge, -math.huge, math.huge, -math.huge
  local conds = {}
  for _, p in ipairs(series.points) do
    p.t = J.duration(t0, p.ts) or 0
    tmin, tmax = math.min(tmin, p.t), math.max(tmax, p.t)
    if p.value and p.value == p.value and math.abs(p.value) ~= math.huge then
      lo, hi = math.min(lo, p.value), math.max(hi, p.value)
    end
    for _, th in ipairs(p.thresholds) do lo, hi = math.min(lo, th), math.max(hi, th) end
    conds[p.cond] = true
  end
  if lo == math.huge then lo, hi = 0, 1 end
  if hi - lo < 1e-12 then lo, hi = lo - 0.5, hi + 0.5 end
  local pad = (hi - lo) * 0.1
  lo, hi = lo - pad, hi + pad
  if tmax - tmin < 1e-9 then tmin, tmax = tmin - 0.5, tmax + 0.5 end
  local function X(t) return L + (t - tmin) / (tmax - tmin) * (W - L - R) end
  local function Y(v) return T + (hi - v) / (hi - lo) * (H - T - B) end
  local o = {}
  local function add(s) o[#o + 1] = s end
  add(string.format('<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="%s over time">', W, H,
    esc(series.name)))
  add(string.format("<title>%s over time</title>", esc(series.name)))
  for i = 0, 4 do
    local v = lo + (hi - lo) * i / 4
    add(string.format('<line class="grid" x1="%d" x2="%d" y1="%s" y2="%s"/><text x="%d" y="%s" text-anchor="end">%s</text>',
      L, W - R, num(Y(v)), num(Y(v)), L - 4, num(Y(v) + 4), esc(nice(v))))
  end
  add(string.format('<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>', L, W - R, H - B, H - B))
  add(string.format('<text x="%d" y="%d">+%s</text><text x="%d" y="%d" text-anchor="end">+%s</text>', L, H - 10,
    esc(J.duration_text(tmin)), W - R, H - 10, esc(J.duration_text(tmax))))
  -- the thresholds (the last condition's)
  local last = series.points[#series.points]
  for _, th in ipairs(last.thresholds) do
    add(string.format('<line class="threshold" x1="%d" x2="%d" y1="%s" y2="%s" stroke="#cf222e" stroke-dasharray="6 4"/>' ..
      '<text x="%d" y="%s" text-anchor="end" style="fill:#cf222e">%s</text>', L, W - R, num(Y(th)), num(Y(th)), W - R,
      num(Y(th) - 4), esc(last.cond)))
  end
  local pts = {}
  for _, p in ipairs(series.points) do
    if p.value and p.value == p.value and math.abs(p.value) ~= math.huge then
      pts[#pts + 1] = num(X(p.t)) .. "," .. num(Y(p.value))
    end
  end
  if #pts > 1 then
    add(string.format('<polyline points="%s" fill="none" stroke="#0969da" stroke-width="2"/>', table.concat(pts, " ")))
  end
  for _, p in ipairs(series.points) do
    local ok = p.value and p.value == p.value and math.abs(p.value) ~= math.huge
    local x, y = X(p.t), ok and Y(p.value) or (H - B)
    local tip = string.format("%s %s %s (%s) at %s", p.name, p.raw, p.cond, p.phase, when(p.ts))
    if p.phase == "failed" then
      add(string.format('<g class="point failed"><title>%s</title><circle cx="%s" cy="%s" r="6" fill="#cf222e"/>' ..
        '<path d="M%s %sl6 6m0 -6l-6 6" stroke="#fff" stroke-width="2"/></g>', esc(tip), num(x), num(y), num(x - 3),
        num(y - 3)))
    else
      add(string.format('<g class="point %s"><title>%s</title><circle cx="%s" cy="%s" r="4" fill="%s"/></g>', p.phase,
        esc(tip), num(x), num(y), PHASE_COLOR[p.phase]))
    end
  end
  add("</svg>")
  return table.concat(o)
end

-- ---- the timeline --------------------------------------------------------
-- the markers of the events row: {colour, class, shape}; a person's part
-- (prompts, answers, skips, a stop) is a circle, the rest diamonds
local MARKER = {
  note = { "#0969da", "note" }, gate = { "#8250df", "gate" }, decision = { "#8250df", "decision" },
  pause = { "#8250df", "pause" }, rollback = { "#bc4c00", "rollback" },
  prompt = { "#bf3989", "prompt", "circle" }, answer = { "#bf3989", "answer", "circle" },
  skip = { "#8c959f", "skip", "circle" }, stop = { "#24292f", "stop", "square" },
}

-- a check's finding, coloured by its verdict ("NAME: [bad] ...")
local VERDICT = { ok = "#1a7f37", warn = "#9a6700", bad = "#cf222e", error = "#82071e" }

local function check_marker(e)
  local v = e.text:match("^[^\n]-: %[(%a+)%] ")
  return { VERDICT[v] or "#0550ae", "check" .. (VERDICT[v] and (" " .. v) or ""), "triangle" }
end

local SHAPE = {
  diamond = "M%s %dl6 9l-6 9l-6 -9z",
  circle = "M%s %dm-7 9a7 7 0 1 0 14 0a7 7 0 1 0 -14 0z",
  square = "M%s %dm-6 3h12v12h-12z",
  triangle = "M%s %dl7 16h-14z",
}

-- an event worth a marker: a person's part, a check, a failed measurement,
-- a log line saying retry or error
local function marked_log(e)
  if e.type == "check" then return check_marker(e) end
  local m = e.type == "log" and M.measurement(e.text)
  if m then return m.phase ~= "successful" and { "#cf222e", "measurement" } or nil end
  if e.type == "log" and (e.text:find("fail") or e.text:find("error") or e.text:find("retry")) then
    return { "#9a6700", "log" }
  end
  if e.type == "notify" then return { "#57606a", "notify" } end
  return MARKER[e.type]
end

local function run_end(d)
  local t = d.run.finished_at or d.run.started_at
  local function later(x) if x and x > t then t = x end end
  for _, s in ipairs(d.steps) do later(s.finished_at); later(s.started_at) end
  for _, e in ipairs(d.events) do later(e.ts) end
  for _, rb in ipairs(d.rollbacks) do later(rb.finished_at); later(rb.started_at) end
  return t
end

local function timeline(d)
  local t0, t1 = d.run.started_at, run_end(d)
  local span = math.max(J.duration(t0, t1) or 0, 0.001)
  local rows = #d.steps + 2
  local W, LABEL, R, ROW, TOP = 1000, 180, 20, 26, 24
  local H = TOP + rows * ROW + 30
  local function X(t)
    local s = J.duration(t0, t) or 0
    return LABEL + math.max(0, math.min(s, span)) / span * (W - LABEL - R)
  end
  local o = {}
  local function add(s) o[#o + 1] = s end
  add(string.format('<svg class="timeline" id="timeline" viewBox="0 0 %d %d" role="img" aria-label="timeline of run %s">',
    W, H, esc(d.run.id)))
  add(string.format("<title>Timeline of run %s</title>", esc(d.run.id)))
  -- time ticks
  for i = 0, 5 do
    local x = LABEL + i / 5 * (W - LABEL - R)
    add(string.format('<line class="grid" x1="%s" x2="%s" y1="%d" y2="%d"/><text x="%s" y="%d" text-anchor="%s">+%s</text>',
      num(x), num(x), TOP - 4, H - 26, num(x), H - 10, i == 0 and "start" or i == 5 and "end" or "middle",
      esc(J.duration_text(span * i / 5))))
  end
  for i, s in ipairs(d.steps) do
    local y = TOP + (i - 1) * ROW
    add(string.format('<text x="4" y="%d">%s</text>', y + 17, esc(#s.name > 26 and (s.name:sub(1, 24) .. "…") or s.name)))
    if s.started_at then
      local x1, x2 = X(s.started_at), X(s.finished_at or t1)
      add(string.format('<g class="step-bar" data-step="%d"><title>%s: %s, %s</title><rect x="%s" y="%d" width="%s" height="%d" rx="3" fill="%s"/></g>',
        s.idx, esc(s.name), esc(s.status), esc(J.duration_text(J.duration(s.started_at, s.finished_at))), num(x1), y + 4,
        num(math.max(x2 - x1, 3)), ROW - 8, color(s.status)))
    else
      add(string.format('<text x="%d" y="%d" class="muted" style="fill:#8c959f">%s</text>', LABEL + 4, y + 17,
        esc(s.status)))
    end
  end
  -- rollbacks
  local yr = TOP + #d.steps * ROW
  add(string.format('<text x="4" y="%d">rollback</text>', yr + 17))
  for _, rb in ipairs(d.rollbacks) do
    local x1, x2 = X(rb.started_at), X(rb.finished_at or t1)
    add(string.format('<g class="rollback-bar"><title>rollback %d: %s</title><rect x="%s" y="%d" width="%s" height="%d" rx="3" fill="%s" fill-opacity=".85"/></g>',
      rb.n, esc(rb.status), num(x1), yr + 4, num(math.max(x2 - x1, 3)), ROW - 8, color(rb.status == "complete" and
        "undone" or rb.status)))
  end
  -- events
  local ye = yr + ROW
  add(string.format('<text x="4" y="%d">events</text>', ye + 17))
  for _, e in ipairs(d.events) do
    local mk = marked_log(e)
    if mk then
      local x = X(e.ts)
      add(string.format('<g class="marker %s"><title>%s %s by %s: %s</title><path d="' .. SHAPE[mk[3] or "diamond"] ..
        '" fill="%s"/></g>', esc(mk[2]), esc(when(e.ts)), esc(e.type), esc(e.actor or "?"), esc(e.text), num(x),
        ye + 3, mk[1]))
    end
  end
  add("</svg>")
  return table.concat(o)
end

-- ---- a diff, its lines coloured -----------------------------------------
local function diff_html(text)
  local o = {}
  for line in (text:gsub("\n$", "") .. "\n"):gmatch("(.-)\n") do
    local cls
    if line:match("^%+%+%+ ") or line:match("^%-%-%- ") then cls = "file"
    elseif line:sub(1, 1) == "+" then cls = "add"
    elseif line:sub(1, 1) == "-" then cls = "del"
    elseif line:sub(1, 2) == "@@" then cls = "hunk" end
    if cls then o[#o + 1] = string.format('<span class="%s">%s</span>', cls, esc(line))
    else o[#o + 1] = esc(line) .. "\n" end
  end
  return '<pre class="diff">' .. table.concat(o) .. "</pre>"
end

local function params_html(text)
  local p = J.decode_params(text)
  local keys = {}
  for k in pairs(p) do keys[#keys + 1] = k end
  table.sort(keys)
  if #keys == 0 then return '<span class="muted">none</span>' end
  local o = {}
  for _, k in ipairs(keys) do
    local v = p[k]
    if type(v) == "table" then v = json.encode(output.json_safe(v)) end
    o[#o + 1] = string.format("<code>%s</code>&nbsp;=&nbsp;<code>%s</code>", esc(k), esc(tostring(v)))
  end
  return table.concat(o, "<br>")
end

-- the events of a step: those journaled with its index, else (an older
-- journal) those between its start and its end
local function in_step(s, e)
  if e.step then return e.step == s.idx end
  return s.started_at and e.ts >= s.started_at and (not s.finished_at or e.ts <= s.finished_at)
end

-- a link from a runbook's facts (show's run_meta says which are web or
-- mail addresses: only those are links), the rest is text
local function link_html(l)
  if l.web then
    return string.format('<a href="%s">%s</a>', esc(l.url), esc(l.title))
  end
  return esc(l.title) .. (l.title ~= l.url and (" <code>" .. esc(l.url) .. "</code>") or "")
end

-- run(d, view) -> the page; d is show's gather(), view its helpers:
-- outcome(d), step_notes(d, s), action_notes(d, a), split_actions(d),
-- undo_step_name(d, a), rollback_label(rb), rollback_result(rb),
-- gate_text(d, g), decision_text(x), paused(d)
function M.run(d, view)
  local r = d.run
  local status = J.shown_status(r)
  local of_steps, orphans = view.split_actions(d)
  local o = {}
  local function add(s) o[#o + 1] = s end
  add(string.format('<header class="card" id="header"><h1>%s %s</h1>', esc(r.recipe), badge(r.outcome or status,
    (r.outcome or status) .. (r.exit_code and (" · exit " .. r.exit_code) or ""))))
  add('<dl class="meta">')
  local function meta(k, v) add(string.format("<dt>%s</dt><dd>%s</dd>", k, v)) end
  local facts = d.meta or { links = {} }
  if facts.severity then meta("Severity", '<span class="badge" style="background:#cf222e">' .. esc(facts.severity) ..
    "</span>") end
  if facts.service then meta("Service", esc(facts.service)) end
  if facts.owner then meta("Owner", esc(facts.owner)) end
  if facts.description then meta("About", esc(facts.description)) end
  if #facts.links > 0 then
    local links = {}
    for _, l in ipairs(facts.links) do links[#links + 1] = link_html(l) end
    meta("Links", '<span class="links">' .. table.concat(links, " · ") .. "</span>")
  end
  meta("Run", "<code>" .. esc(r.id) .. "</code>")
  meta("Status", badge(status) .. (r.dry_run and " (dry-run)" or ""))
  meta("Outcome", esc(view.outcome(d)))
  meta(facts.kind == "runbook" and "Runbook file" or "Recipe file", "<code>" .. esc(r.file) .. "</code>")
  meta("By", esc(string.format("%s on %s (pid %s)", r.user or "?", r.host or "?", tostring(r.pid))))
  meta("Started", timetag(r.started_at))
  meta("Finished", r.finished_at and timetag(r.finished_at) or "-")
  meta("Took", esc(J.duration_text(J.duration(r.started_at, r.finished_at))))
  if r.lock_name then meta("Lock", "<code>" .. esc(r.lock_name) .. "</code>") end
  meta("Params", params_html(r.params))
  if r.error then meta("Error", '<span class="err">' .. esc(r.error) .. "</span>") end
  local paused = view.paused(d)
  if paused then meta("Paused", esc(paused)) end
  add("</dl></header>")

  add('<section id="timeline-section"><h2>Timeline</h2><div class="scroll">')
  add(timeline(d))
  add('</div><p class="legend muted"><span><i style="background:#1a7f37"></i>done</span>' ..
    '<span><i style="background:#cf222e"></i>failed</span><span><i style="background:#bc4c00"></i>undone, rollback</span>' ..
    '<span><i style="background:#8250df"></i>gate, decision</span><span><i style="background:#0969da"></i>note</span>' ..
    '<span><i style="background:#9a6700"></i>log worth a look</span>' ..
    '<span><i style="background:#0550ae"></i>▲ check (green ok, amber warn, red bad or error)</span>' ..
    '<span><i style="background:#bf3989;border-radius:50%"></i>prompt, answer</span>' ..
    '<span><i style="background:#8c959f;border-radius:50%"></i>skip</span>' ..
    '<span><i style="background:#24292f"></i>stop</span></p></section>')

  local series = metric_series(d.events)
  if #series > 0 then
    add('<section id="metrics"><h2>Metrics</h2><div class="charts">')
    for _, s in ipairs(series) do
      local failed = 0
      for _, p in ipairs(s.points) do if p.phase == "failed" then failed = failed + 1 end end
      add(string.format('<div class="metric" data-metric="%s"><h3>%s <span class="muted">%d measurement(s), %d failed</span></h3><div class="scroll">',
        esc(s.name), esc(s.name), #s.points, failed))
      add(chart(s, r.started_at))
      add("</div></div>")
    end
    add("</div></section>")
  end

  add('<h2>Steps</h2>')
  local by_step = {}
  for _, a in ipairs(of_steps) do
    by_step[a.step] = by_step[a.step] or {}
    table.insert(by_step[a.step], a)
  end
  local function action_html(a, label)
    local notes = view.action_notes(d, a)
    add(string.format('<div class="action" data-seq="%d"><div>%s <code>%s</code> %s%s</div><div class="t"><code>%s</code></div>',
      a.seq, badge(a.status), esc(a.kind), esc(a.describe), label and (' <span class="muted">(' .. esc(label) .. ")</span>") or "",
      esc(a.target)))
    if #notes > 0 then add('<div class="muted">' .. esc(table.concat(notes, "; ")) .. "</div>") end
    if a.detail and a.detail ~= "" then add(diff_html(a.detail)) end
    add("</div>")
  end
  for _, s in ipairs(d.steps) do
    local notes = view.step_notes(d, s)
    add(string.format('<section class="step" id="step-%d"><h3>%d. %s %s <span class="muted">%s%s</span></h3>', s.idx,
      s.idx, esc(s.name), badge(s.status), esc(J.duration_text(J.duration(s.started_at, s.finished_at))),
      s.attempts > 1 and esc(", " .. s.attempts .. " attempts") or ""))
    if #notes > 0 then add('<div class="err">' .. esc(table.concat(notes, "\n")) .. "</div>") end
    for _, a in ipairs(by_step[s.idx] or {}) do action_html(a) end
    local logs = {}
    for _, e in ipairs(d.events) do
      if in_step(s, e) then
        -- a text of several lines (a check's table) keeps its columns
        local first, rest = e.text:match("^([^\n]*)\n(.*)$")
        logs[#logs + 1] = string.format('<li>%s <b>%s</b> <span class="muted">%s</span> %s</li>', timetag(e.ts),
          esc(e.type), esc(e.actor or "?"), first and (esc(first) .. "<pre>" .. esc(rest) .. "</pre>") or esc(e.text))
      end
    end
    if #logs > 0 then add('<ul class="log">' .. table.concat(logs) .. "</ul>") end
    add("</section>")
  end

  if #d.rollbacks > 0 or #orphans > 0 then
    add('<h2>Rollbacks</h2>')
    for _, rb in ipairs(d.rollbacks) do
      add(string.format('<section class="rollback" id="rollback-%d"><h3>%d. %s %s</h3><p>%s by %s: %s%s</p>', rb.n, rb.n,
        esc(view.rollback_label(rb)), badge(rb.status), timetag(rb.started_at), esc(rb.actor or "?"),
        esc(view.rollback_result(rb)), rb.finished_at and esc(", took " ..
          J.duration_text(J.duration(rb.started_at, rb.finished_at))) or ""))
      for _, l in ipairs(rb.left) do add('<div class="err">left to do by hand: ' .. esc(l) .. "</div>") end
      for _, a in ipairs(rb.actions) do action_html(a, view.undo_step_name(d, a)) end
      add("</section>")
    end
    for _, a in ipairs(orphans) do action_html(a, view.undo_step_name(d, a)) end
  end

  if #d.gates > 0 then
    add('<h2>Gates</h2><section id="gates"><ul>')
    for _, g in ipairs(d.gates) do
      add("<li>" .. badge(g.status) .. " " .. esc(view.gate_text(d, g)) .. "<ul>")
      for _, x in ipairs(g.decisions) do add("<li>" .. esc(view.decision_text(x)) .. "</li>") end
      add("</ul></li>")
    end
    add("</ul></section>")
  end

  if #d.events > 0 then
    add('<h2>Events</h2><section id="events"><div class="scroll"><table><thead><tr><th>time</th><th>type</th>' ..
      '<th>by</th><th>text</th></tr></thead><tbody>')
    for _, e in ipairs(d.events) do
      add(string.format('<tr class="event %s"><td>%s</td><td>%s</td><td class="actor">%s</td><td class="t" style="white-space:pre-wrap">%s</td></tr>',
        esc(e.type), timetag(e.ts), esc(e.type), esc(e.actor or "?"), esc(e.text)))
    end
    add("</tbody></table></div></section>")
  end
  add(string.format('<p class="muted">relish show %s --format html</p>', esc(r.id)))
  return page(string.format("%s: run %s (%s)", r.recipe, J.short_id(r.id), r.outcome or status), table.concat(o, "\n"))
end

-- history(rows) -> the page; rows are list_runs' with .summary (history's),
-- each linked to SHORT_ID.html (relish show SHORT_ID --format html)
function M.history(rows, title)
  local o = {}
  local function add(s) o[#o + 1] = s end
  add("<h1>" .. esc(title) .. "</h1>")
  if #rows == 0 then
    add('<p class="muted">no runs yet</p>')
  else
    add('<section id="runs"><div class="scroll"><table><thead><tr><th>run</th><th>recipe</th><th>status</th>' ..
      '<th>exit</th><th>when</th><th>took</th><th class="hide-narrow">user</th></tr></thead><tbody>')
    for _, r in ipairs(rows) do
      local short = J.short_id(r.id)
      add(string.format('<tr class="run"><td><a href="%s.html" title="%s"><code>%s</code></a></td><td>%s</td><td>%s</td>' ..
        '<td>%s</td><td>%s</td><td>%s</td><td class="hide-narrow">%s</td></tr>', esc(short), esc(r.id), esc(short),
        esc(r.recipe), badge(r.summary.outcome, r.summary.status), esc(r.exit_code and tostring(r.exit_code) or "-"),
        timetag(r.started_at), esc(J.duration_text(J.duration(r.started_at, r.finished_at))), esc(r.user or "?")))
    end
    add("</tbody></table></div></section>")
    add('<p class="muted">Each run links to <code>RUN.html</code> beside this page: ' ..
      '<code>relish show RUN --format html &gt; RUN.html</code>.</p>')
  end
  return page(title, table.concat(o, "\n"))
end

return M
