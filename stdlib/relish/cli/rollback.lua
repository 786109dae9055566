-- relish rollback RUN_ID: undo a run's actions, newest first.
local common = require "relish.cli.common"
local engine = require "relish.engine"
return {
  main = function(opts)
    local f = opts.flags
    return engine.rollback_cmd { run_id = opts.args[1], dry_run = f["dry-run"], force = f.force, output = f.output, state = f.state,
      wait_lock = common.wait_lock(f) }
  end,
}
