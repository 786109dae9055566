-- relish runbook FILE: a runbook for a person at a terminal (guided: each
-- step's planned changes before its confirmation).
local common = require "relish.cli.common"
local engine = require "relish.engine"

return {
  main = function(opts)
    local f = opts.flags
    return engine.run { file = opts.args[1], params = common.params(f.param), dry_run = f["dry-run"],
      output = f.output, state = f.state, yes = f.yes, answers = f.answer, answers_file = f.answers,
      guided = true, wait_lock = common.wait_lock(f) }
  end,
}
