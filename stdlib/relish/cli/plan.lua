-- relish plan FILE [-o PLAN.json]: a dry-run, optionally saved for apply.
local common = require "relish.cli.common"
local engine = require "relish.engine"

return {
  main = function(opts)
    local f = opts.flags
    local code = engine.run { file = opts.args[1], params = common.params(f.param), dry_run = true,
      output = f.output, state = f.state, plan_out = f.out }
    if code == 0 and f.out and f.output ~= "json" then io.write("Plan saved to ", f.out, "\n") end
    return code
  end,
}
