-- The Kubernetes API double (tests/fixtures/k8s_api.py) for Lua tests; the
-- double's client lives in the testing kit (relish.testing.k8s), which
-- users reach as require("relish.testing").k8s{}:
--   local k8s <close> = k8s_fixture.start { time_scale = 0.01 }
--   k8s:kubectl { "get", "pods" }                -- the machine's kubectl
--   k8s:api("GET", "/api/v1/namespaces/default/pods") -> response
--   k8s:control("POST", "/images", { ["*:bad"] = { state = "CrashLoopBackOff" } })
local double = require "relish.testing.k8s"
local support = require "support"

local M = {}

local SCRIPT = (function()
  local here = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
  return (require("relish._host").realpath(here .. "/../fixtures/k8s_api.py"))
end)()

-- start{time_scale=} -> the double (see relish.testing.k8s)
function M.start(opts)
  local o = { script = SCRIPT }
  for k, v in pairs(opts or {}) do o[k] = v end
  return double.start(o)
end

M.available = double.available

-- eventually(what, fn [, timeout]): polls fn() (up to timeout seconds,
-- default 10) until it returns a true value; returns that value, or raises
-- naming what.
M.eventually = support.eventually_every(10, 0.02)

return M
