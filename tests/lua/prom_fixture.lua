-- Real Prometheus and Pushgateway, and the fixture exporter
-- (tests/fixtures/exporter.py), for the metrics tests:
--   if not prom_fixture.available() then skip("prometheus is not installed") end
--   local ex <close> = prom_fixture.exporter()
--   ex:set { requests = { { code = "200", version = "v1", value = 10 } } }
--   local pg <close> = prom_fixture.pushgateway()
--   local p <close> = prom_fixture.prometheus { targets = { exporter = ex.target, push = pg.target } }
--   http.get(p.url .. "/api/v1/query?query=up")
-- Every server listens on 127.0.0.1 on a port found free at run time, and is
-- stopped when the test ends (the <close>) or when this process dies (a
-- watcher kills it once our pid is gone).
local sh = require "relish.sh"
local host = require "relish._host"
local http = require "relish.http"
local json = require "relish.json"
local task = require "relish.task"
local support = require "support"

local M = {}

local EXPORTER = (function()
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  return (host.realpath(here .. "/../fixtures/exporter.py"))
end)()

-- available() -> whether prometheus, promtool, prometheus-pushgateway and
-- python3 are installed: the tests skip otherwise.
function M.available()
  return sh.which("prometheus") ~= nil and sh.which("promtool") ~= nil
    and sh.which("prometheus-pushgateway") ~= nil and sh.which("python3") ~= nil
end

-- free_port() -> a TCP port on 127.0.0.1 nobody listens on right now
function M.free_port()
  local r = sh.run { readonly = true, argv = { "python3", "-c",
    "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1]); s.close()" } }
  return tonumber(r.stdout:match("%d+"))
end

-- eventually(what, fn [, timeout]): polls fn() (up to timeout seconds,
-- default 20) until it returns a true value; returns it, or raises naming what.
M.eventually = require("support").eventually_every(20, 0.1)

local Server = {}
Server.__index = Server

local function alive(pid)
  local stat = support.read("/proc/" .. pid .. "/stat")
  return stat ~= nil and stat:match("^%d+ %b() (%a)") ~= "Z"
end

function Server:stop()
  if not self.pid then return end
  sh.run { readonly = true, argv = { "kill", tostring(self.pid) }, check = false }
  for _ = 1, 250 do
    if not alive(self.pid) then break end
    task.sleep(0.02)
  end
  if alive(self.pid) then sh.run { readonly = true, argv = { "kill", "-9", tostring(self.pid) }, check = false } end
  self.pid = nil
  host.rmtree(self.dir)
end

Server.__close = Server.stop

-- Starts argv in the background with its output in dir/server.log, and a
-- watcher that kills it when this process is gone; -> its pid.
local function spawn(dir, argv)
  local script = [[
dir=$1; parent=$2; shift 2
"$@" >"$dir/server.log" 2>&1 &
child=$!
echo $child >"$dir/pid"
( while kill -0 "$parent" 2>/dev/null && kill -0 "$child" 2>/dev/null; do sleep 0.5; done
  kill "$child" 2>/dev/null ) >/dev/null 2>&1 &
]]
  local args = { "sh", "-c", script, "sh", dir, tostring(host.getpid()) }
  for _, a in ipairs(argv) do args[#args + 1] = a end
  sh.run { readonly = true, argv = args }
  local pid
  for _ = 1, 500 do
    pid = tonumber(support.read(dir .. "/pid") or "")
    if pid then break end
    task.sleep(0.01)
  end
  return assert(pid, "no pid")
end

local function ready(url)
  local ok, r = pcall(http.request, { url = url, retries = 0, timeout = 2, connect_timeout = 1, effect = false })
  return ok and r.status == 200
end

local function start(name, dir, argv, port, path, timeout)
  local s = setmetatable({ dir = dir, port = port, url = "http://127.0.0.1:" .. port,
    target = "127.0.0.1:" .. port }, Server)
  s.pid = spawn(dir, argv)
  local deadline = host.now() + (timeout or 60)
  while not ready(s.url .. path) do
    if not alive(s.pid) or host.now() > deadline then
      local log = support.read(dir .. "/server.log") or ""
      s:stop()
      error(name .. " did not start:\n" .. log, 3)
    end
    task.sleep(0.05)
  end
  return s
end

-- pushgateway() -> server {url=, target=, port=, dir=}
function M.pushgateway()
  local dir = assert(host.mkdtemp("relish-pushgw"))
  local port = M.free_port()
  return start("prometheus-pushgateway", dir, { "prometheus-pushgateway",
    "--web.listen-address=127.0.0.1:" .. port,
    -- Debian's default keeps groups in /var/lib/prometheus/pushgateway.data
    "--persistence.file=" .. dir .. "/pushgateway.data" }, port, "/-/ready")
end

-- backfill(text, dir): OpenMetrics text (one sample a line with a
-- timestamp in seconds, ending with "# EOF", which is added when missing)
-- made into TSDB blocks by promtool in dir (a --storage.tsdb.path).
function M.backfill(text, dir)
  if not text:find("# EOF\n?$") then text = text .. (text:sub(-1) == "\n" and "" or "\n") .. "# EOF\n" end
  local input = dir .. "/backfill.om"
  support.write(input, text)
  local r = sh.run { readonly = true, check = false, timeout = 120,
    argv = { "promtool", "tsdb", "create-blocks-from", "openmetrics", input, dir } }
  os.remove(input)
  if r.code ~= 0 then error("promtool create-blocks-from openmetrics: " .. r.stdout .. r.stderr, 2) end
end

-- prometheus{targets = {job = "host:port" or {target=, path=}}, backfill = text}
-- -> server {url=, target=, port=, dir=}: scrapes every target each second;
-- backfill (OpenMetrics text, see backfill) is loaded before it starts.
function M.prometheus(opts)
  opts = opts or {}
  local dir = assert(host.mkdtemp("relish-prom"))
  local data = dir .. "/data"
  sh.run { readonly = true, argv = { "mkdir", "-p", data } }
  if opts.backfill then M.backfill(opts.backfill, data) end
  local lines = { "global:", "  scrape_interval: 1s", "  evaluation_interval: 1s", "scrape_configs:" }
  local jobs = {}
  for job in pairs(opts.targets or {}) do jobs[#jobs + 1] = job end
  table.sort(jobs)
  for _, job in ipairs(jobs) do
    local t = opts.targets[job]
    if type(t) == "string" then t = { target = t } end
    lines[#lines + 1] = "  - job_name: " .. json.encode(job)
    lines[#lines + 1] = "    honor_labels: true"
    lines[#lines + 1] = "    metrics_path: " .. json.encode(t.path or "/metrics")
    lines[#lines + 1] = "    static_configs:"
    lines[#lines + 1] = "      - targets: [" .. json.encode(t.target) .. "]"
  end
  support.write(dir .. "/prometheus.yml", table.concat(lines, "\n") .. "\n")
  local port = M.free_port()
  return start("prometheus", dir, { "prometheus", "--config.file=" .. dir .. "/prometheus.yml",
    "--storage.tsdb.path=" .. data, "--web.listen-address=127.0.0.1:" .. port,
    "--storage.tsdb.retention.time=60d", "--log.level=warn" }, port, "/-/ready", 120)
end

local Exporter = setmetatable({}, { __index = Server })
Exporter.__index = Exporter
Exporter.__close = Server.stop

-- exporter() -> the fixture exporter {url=, target=, port=}; ex:set{...}
-- replaces parts of what /metrics shows (see tests/fixtures/exporter.py).
function M.exporter()
  local dir = assert(host.mkdtemp("relish-exporter"))
  sh.run { readonly = true, argv = { "sh", "-c", 'python3 "$0" --dir "$1" --parent "$2" >"$1/server.log" 2>&1 &',
    EXPORTER, dir, tostring(host.getpid()) } }
  local info
  for _ = 1, 1500 do
    local text = support.read(dir .. "/exporter.json")
    if text then info = json.decode(text) break end
    task.sleep(0.01)
  end
  if not info then
    local log = support.read(dir .. "/server.log") or ""
    host.rmtree(dir)
    error("the fixture exporter did not start:\n" .. log, 2)
  end
  return setmetatable({ dir = dir, pid = info.pid, port = info.port, url = "http://127.0.0.1:" .. info.port,
    target = "127.0.0.1:" .. info.port }, Exporter)
end

-- set{requests=, buckets=, sum=, text=} -> the exporter's new state
function Exporter:set(state)
  local r = http.request { method = "POST", url = self.url .. "/control", json = state, retries = 0,
    effect = false, timeout = 30 }
  assert(r.status == 200, "exporter control: " .. r.status .. " " .. r.body)
  return json.decode(r.body)
end

return M
