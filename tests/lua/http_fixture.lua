-- The HTTP fixture server (tests/fixtures/http_server.py) for Lua tests:
--   local fx <close> = http_fixture.start { tls = true }
--   http.get(fx.url "/echo"); fx:requests "/echo"; fx:stats().peak
-- It listens on ports the kernel picks and is stopped when the test ends
-- (the <close>), or when this process dies (it watches our pid).
local sh = require "relish.sh"
local host = require "relish._host"
local json = require "relish.json"
local task = require "relish.task"
local support = require "support"

local M = {}

local SERVER = (function()
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  return (host.realpath(here .. "/../fixtures/http_server.py"))
end)()

local Fixture = {}
Fixture.__index = Fixture

local read = support.read

-- start{tls=, h2=} -> fixture
function M.start(opts)
  opts = opts or {}
  local dir = assert(host.mkdtemp("relish-httpfx"))
  local flags = (opts.tls and " --tls" or "") .. (opts.h2 and " --h2" or "")
  sh.run { readonly = true, argv = { "sh", "-c",
    'python3 "$0" --dir "$1" --parent "$2"' .. flags .. ' >"$1/server.log" 2>&1 &',
    SERVER, dir, tostring(host.getpid()) } }
  local text, log = require("relish.testing.proc").await(dir, "ports.json")
  if not text then error("the HTTP fixture server did not start:\n" .. log, 2) end
  local ports = json.decode(text)
  local fx = setmetatable({ dir = dir, ports = ports, pid = ports.pid }, Fixture)
  local function base(kind, scheme, name)
    return function(path)
      if not ports[kind] then error("the fixture has no " .. kind .. " port (start it with " .. name .. ")", 2) end
      return string.format("%s://%s:%d%s", scheme, opts.host or "127.0.0.1", ports[kind], path or "")
    end
  end
  fx.url = base("http", "http", "")
  fx.https = base("https", "https", "tls = true")
  fx.mtls = base("mtls", "https", "tls = true")
  fx.h2 = base("h2", "https", "h2 = true")
  fx.control = base("control", "http", "")
  if opts.tls or opts.h2 then
    fx.ca, fx.other_ca = dir .. "/ca.pem", dir .. "/other-ca.pem"
    fx.client_cert, fx.client_key = dir .. "/client.pem", dir .. "/client.key"
  end
  return fx
end

local function control(fx, method, path)
  local http = require "relish.http"
  local r = assert(http.request { method = method, url = fx.control(path), retries = 0, timeout = 30 })
  assert(r.status == 200, "fixture control " .. path .. ": " .. r.status .. " " .. r.body)
  return json.decode(r.body)
end

-- requests([route]) -> every request the server saw (only those to route)
function Fixture:requests(route)
  local all = control(self, "GET", "/_requests")
  if not route then return all end
  local out = {}
  for _, r in ipairs(all) do
    if r.route == route then out[#out + 1] = r end
  end
  return out
end

-- stats() -> {in_flight=, peak=, total=, open=}: open counts the connections
-- the server holds on its test ports
function Fixture:stats() return control(self, "GET", "/_stats") end

function Fixture:reset() return control(self, "POST", "/_reset") end

-- Waits (up to 10 s) until pred(stats) holds; returns the last stats.
function Fixture:wait_stats(pred)
  local s
  for _ = 1, 500 do
    s = self:stats()
    if pred(s) then return s end
    task.sleep(0.02)
  end
  return s
end

function Fixture:stop()
  if not self.pid then return end
  require("relish.testing.proc").stop(self.pid)
  self.pid = nil
  host.rmtree(self.dir)
end

Fixture.__close = Fixture.stop

return M
