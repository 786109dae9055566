-- relish.notify: telling people and systems what a release is doing: Slack
-- incoming webhooks and generic JSON webhooks. Each message is an effect
-- (journaled; planned, not sent, in a dry-run; irreversible) and is retried
-- on connection failures, 429 and 5xx, honouring Retry-After. A message that
-- cannot be delivered raises.
local _http = require "relish._http"
local effect = require "relish.effect"
local http = require "relish.http"
local json = require "relish.json"
local secret = require "relish.secret"

local M = {}

local OK = { 200, 201, 202, 204 }

local function is_text(v)
  if type(v) == "string" or secret.is(v) then return true end
  if type(v) ~= "table" or #v == 0 then return false end
  for _, p in ipairs(v) do
    if type(p) ~= "string" and not secret.is(p) then return false end
  end
  return true
end

local function check(who, spec, fields)
  if type(spec) ~= "table" then error(who .. ": takes a table of options, got " .. type(spec), 3) end
  for k in pairs(spec) do
    if not fields[k] then error(string.format("%s: unknown field '%s'", who, tostring(k)), 3) end
  end
  for k, kind in pairs(fields) do
    local v = spec[k]
    if v ~= nil then
      local ok = (kind == "text" and is_text(v)) or (kind == "string" and type(v) == "string")
        or (kind == "table" and type(v) == "table") or (kind == "any")
        or (kind == "seconds" and type(v) == "number" and v > 0)
        or (kind == "count" and math.type(v) == "integer" and v >= 0)
      if not ok then
        local want = ({ text = "a string or a secret", string = "a string", table = "a table",
          seconds = "a positive number of seconds", count = "a non-negative integer" })[kind]
        error(string.format("%s: %s must be %s, got %s", who, k, want, type(v)), 3)
      end
    end
  end
end

-- The payload as a plan may show it: secrets as ***.
local function shown(v, depth)
  depth = depth or 0
  if secret.is(v) then return "***" end
  if type(v) ~= "table" or depth > 50 then return v end
  local out = {}
  for k, x in pairs(v) do out[k] = shown(x, depth + 1) end
  return setmetatable(out, getmetatable(v))
end

local function excerpt(s, n)
  s = tostring(s):gsub("%s+", " ")
  if #s > n then s = s:sub(1, n - 3) .. "..." end
  return s
end

-- Each message is an effect of a registered kind ("notify.slack",
-- "notify.webhook"): irreversible, planned in a dry-run. apply sends it with
-- effect = false (the message is the effect, not the request) and raises when
-- delivery fails.
local function apply_send(m)
  local o = m.opts
  return http.request {
    method = o.method or "POST", url = m.url, json = m.payload, headers = o.headers,
    timeout = o.timeout or 30, retries = o.retries or 3, idempotent = true,
    expect = o.expect or OK, effect = false, ca = o.ca,
  }
end

local function plan_send()
  return setmetatable({ status = 0, planned = true, ok = true, headers = {}, body = "" },
    { __index = { json = function() return nil end } })
end

for _, kind in ipairs { "notify.slack", "notify.webhook" } do
  effect.register { kind = kind, module = "relish.notify", apply = apply_send, plan = plan_send }
end

-- One message through the gate: the response, a planned response
-- {status = 0, planned = true} in a dry-run, or a raised error.
local function send(kind, url, payload, opts, describe)
  local target = _http.display(url, "url")
  local ok, text = pcall(json.encode, shown(payload), { sort_keys = true })
  return effect.run(kind, { target = target, describe = describe, detail = ok and text or nil },
    { url = url, payload = payload, opts = opts })
end

local SLACK = { webhook = "text", text = "string", blocks = "table", attachments = "table",
  thread_ts = "string", unfurl_links = "any", unfurl_media = "any", mrkdwn = "any",
  username = "string", icon_emoji = "string", icon_url = "string", channel = "string",
  timeout = "seconds", retries = "count", ca = "text" }

-- slack{webhook=, text=, blocks=, ...} -> response (raises when it fails): a message to a
-- Slack incoming webhook (https://api.slack.com/messaging/webhooks). The
-- webhook URL is a credential: give it as a secret.
function M.slack(spec)
  check("notify.slack", spec, SLACK)
  if spec.webhook == nil then error("notify.slack: webhook is required", 2) end
  if spec.text == nil and spec.blocks == nil then error("notify.slack: give text, blocks or both", 2) end
  local payload = {}
  for k, v in pairs(spec) do
    if k ~= "webhook" and k ~= "timeout" and k ~= "retries" and k ~= "ca" then payload[k] = v end
  end
  if payload.blocks then payload.blocks = json.array(payload.blocks) end
  if payload.attachments then payload.attachments = json.array(payload.attachments) end
  local describe = "slack: " .. (spec.text and excerpt(spec.text, 80) or ("%d block(s)"):format(#spec.blocks))
  return send("notify.slack", spec.webhook, payload, spec, describe)
end

local WEBHOOK = { url = "text", json = "any", headers = "table", method = "string",
  timeout = "seconds", retries = "count", expect = "any", ca = "text" }

-- webhook{url=, json=, headers=, method = "POST"} -> response (raises when it fails): a
-- JSON document to any endpoint; a status other than 200, 201, 202 or 204
-- (or those of `expect`) is an error of kind "http_status".
function M.webhook(spec)
  check("notify.webhook", spec, WEBHOOK)
  if spec.url == nil then error("notify.webhook: url is required", 2) end
  local method = (spec.method or "POST"):upper()
  local describe = method .. " " .. _http.display(spec.url, "url")
  return send("notify.webhook", spec.url, spec.json == nil and json.object {} or spec.json,
    { method = method, headers = spec.headers, timeout = spec.timeout, retries = spec.retries,
      expect = spec.expect, ca = spec.ca }, describe)
end

return M
