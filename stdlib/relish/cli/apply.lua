-- relish apply PLAN.json: execute exactly a saved plan.
local common = require "relish.cli.common"
local engine = require "relish.engine"
return {
  main = function(opts)
    local f = opts.flags
    return engine.apply { plan = opts.args[1], output = f.output, state = f.state, wait_lock = common.wait_lock(f) }
  end,
}
