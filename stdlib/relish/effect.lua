-- relish.effect: the Lua door of the effect gate, for the stdlib and for
-- recipes, and the dispatch of undo records to the code that knows them.
local gate = require "relish._gate"
local json = require "relish.json"

local M = {}

-- Undo handlers of effects declared in Lua, by kind. A recipe file is loaded
-- again by `relish rollback`, so its effect{} calls register them again.
local handlers = {}

local function call(fn, ...)
  if fn == nil then return nil end
  return fn(...)
end

-- effect{kind=, target=, describe=, detail=, data=, apply=fn(data), undo=fn(data),
--        fingerprint=fn(), planned=} -> apply's result, or `planned` in a dry-run
function M.effect(spec)
  if type(spec) ~= "table" then error("effect{kind=, target=, apply=, ...} takes a table", 2) end
  local kind, target = spec.kind, spec.target
  if type(kind) ~= "string" or not kind:find(".", 1, true) then
    error("effect: kind must be a string 'module.verb'", 2)
  end
  if type(target) ~= "string" then error("effect: target must be a string", 2) end
  if type(spec.apply) ~= "function" then error("effect: apply must be a function", 2) end
  if spec.undo ~= nil then
    if type(spec.undo) ~= "function" then error("effect: undo must be a function", 2) end
    handlers[kind] = spec.undo
  end
  local data = spec.data or {}
  local fp = spec.fingerprint
  if type(fp) == "function" then fp = fp() end
  local verdict, id = gate.begin {
    kind = kind, target = target,
    describe = type(spec.describe) == "function" and spec.describe() or spec.describe,
    detail = spec.detail,
    undo = spec.undo and json.encode(data) or nil,
    fingerprint = fp ~= nil and tostring(fp) or nil,
  }
  if verdict == "planned" then return spec.planned end
  local ok, res = pcall(spec.apply, data)
  if not ok then
    gate.failed(id, tostring(res))
    error(res, 0)
  end
  gate.done(id)
  return res
end

-- define(kind, undo): registers the undo of a kind when the file loads, so a
-- later `relish rollback` (another process, which loads the recipe again but
-- runs none of its steps) finds it.
function M.define(kind, undo)
  if type(kind) ~= "string" or not kind:find(".", 1, true) then
    error("effect.define: kind must be a string 'module.verb'", 2)
  end
  if type(undo) ~= "function" then error("effect.define: undo must be a function", 2) end
  handlers[kind] = undo
end

-- undo(kind, record): runs the undo of one journaled action.
function M.undo(kind, record)
  local h = handlers[kind]
  if h then return h(record) end
  local mod = kind:match("^([%w_]+)%.")
  local ok, m = pcall(require, "relish." .. (mod or ""))
  if not ok or type(m) ~= "table" or type(m.undo) ~= "function" then
    error(string.format("no undo handler for effect kind '%s' (declare it with effect.define at the top of the recipe)", kind), 0)
  end
  return m.undo(kind, record)
end

-- What recipes see as `effect`: effect{...} and effect.define(kind, undo).
M.door = setmetatable({ define = M.define }, { __call = function(_, spec) return M.effect(spec) end })

return M
