-- relish run FILE: run a recipe (or plan it with --dry-run).
local common = require "relish.cli.common"
local engine = require "relish.engine"

-- start(opts [, guided]): the run of FILE with the command line's flags
local function start(opts, guided)
  local f = opts.flags
  return engine.run { file = opts.args[1], params = common.params(f.param), dry_run = f["dry-run"],
    output = f.output, state = f.state, yes = f.yes, answers = f.answer, answers_file = f.answers,
    guided = guided, wait_lock = common.wait_lock(f) }
end

return { main = function(opts) return start(opts) end, start = start }
