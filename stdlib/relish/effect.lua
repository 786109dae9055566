-- relish.effect: the Lua door of the effect gate. A module (or a recipe)
-- registers an effect kind once and runs actions of it; the gate in the host
-- owns the protocol (journal, dry-run, saved plans, done/failed) and
-- dispatches undo by registration. See docs/internals.md.
local gate = require "relish._gate"

local M = {}

-- register{kind=, module=, apply=fn(arg), plan=fn(arg), undo=fn(record, opts), fields={...}}
--   module: the name require loads (so a rollback in another process finds
--   the undo); nil for a recipe's own kinds, which its file registers again
--   when it is loaded.
M.register = gate.register

-- run(kind, {target=, describe=, detail=, fingerprint=, pin=, record=}, arg)
--   -> apply(arg)'s results, or plan(arg)'s in a dry-run. pin: what the
--   action will do whatever the live state (a saved plan compares it for
--   every action, the fingerprint for the first on a target only)
M.run = gate.run

-- undo(kind, record [, module [, opts]]): the undo of one journaled action;
--   the undo gets (record, opts). opts.force: undo also what changed since
--   the run (relish rollback --force); an undo refuses that otherwise.
M.undo = gate.undo

-- A recipe's effect{}: its apply, undo and planned result come with each
-- call, so the kind's provider hands the action's own functions their data.
local function recipe_apply(a) return a.apply(a.data) end
local function recipe_plan(a) return a.planned end

-- What a recipe registered for a kind: its undo (or none).
local undos = {}

local function define(kind, undo, level)
  if type(kind) ~= "string" or not kind:find(".", 1, true) then
    error("effect: kind must be a string 'module.verb'", level + 1)
  end
  if undo ~= nil and type(undo) ~= "function" then error("effect: undo must be a function", level + 1) end
  local known = gate.registered(kind)
  if known and known ~= true then
    error(string.format("effect: kind '%s' belongs to %s; give your own kinds another module name", kind, known),
      level + 1)
  end
  if known and undos[kind] == undo then return end
  undos[kind] = undo
  gate.register { kind = kind, apply = recipe_apply, plan = recipe_plan, undo = undo }
end

-- effect{kind=, target=, describe=, detail=, data=, apply=fn(data), undo=fn(data),
--        fingerprint=, planned=} -> apply's result, or `planned` in a dry-run
function M.effect(spec)
  if type(spec) ~= "table" then error("effect{kind=, target=, apply=, ...} takes a table", 2) end
  if type(spec.target) ~= "string" then error("effect: target must be a string", 2) end
  if type(spec.apply) ~= "function" then error("effect: apply must be a function", 2) end
  define(spec.kind, spec.undo or undos[spec.kind], 2)
  local fp = spec.fingerprint
  if type(fp) == "function" then fp = fp() end
  local describe = spec.describe
  if type(describe) == "function" then describe = describe() end
  local data = spec.data or {}
  return gate.run(spec.kind, {
    target = spec.target, describe = describe, detail = spec.detail,
    fingerprint = fp ~= nil and tostring(fp) or nil,
    record = undos[spec.kind] and data or nil,
  }, { apply = spec.apply, data = data, planned = spec.planned })
end

-- define(kind, undo): registers a recipe's kind and its undo when the file
-- loads, so a later `relish rollback` (another process, which loads the
-- recipe again but runs none of its steps) finds it.
function M.define(kind, undo)
  if type(undo) ~= "function" then error("effect.define: undo must be a function", 2) end
  define(kind, undo, 2)
end

-- What recipes see as `effect`: effect{...} and effect.define(kind, undo).
M.door = setmetatable({ define = M.define }, { __call = function(_, spec) return M.effect(spec) end })

return M
