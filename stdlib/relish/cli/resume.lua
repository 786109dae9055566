-- relish resume RUN_ID: continue a stopped or crashed run.
local common = require "relish.cli.common"
local engine = require "relish.engine"

return {
  main = function(opts)
    local f = opts.flags
    return engine.resume { run_id = opts.args[1], params = common.params(f.param), output = f.output, state = f.state,
      wait_lock = common.wait_lock(f) }
  end,
}
