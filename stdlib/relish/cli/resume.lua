-- relish resume RUN_ID: continue a stopped, paused or crashed run (for a paused
-- one: the decision to promote at its gate).
local common = require "relish.cli.common"
local engine = require "relish.engine"

return {
  main = function(opts)
    local f = opts.flags
    return engine.resume { run_id = opts.args[1], params = common.params(f.param), output = f.output, state = f.state,
      yes = f.yes, wait_lock = common.wait_lock(f) }
  end,
}
