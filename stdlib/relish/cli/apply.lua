-- relish apply PLAN.json: execute exactly a saved plan.
local engine = require "relish.engine"

return {
  main = function(opts)
    return engine.apply { plan = opts.args[1], output = opts.flags.output, state = opts.flags.state }
  end,
}
