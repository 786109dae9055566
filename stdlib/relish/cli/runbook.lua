-- relish runbook FILE: `relish run` guided for a person at a terminal: each
-- step's planned changes before its confirmation.
return { main = function(opts) return require("relish.cli.run").start(opts, true) end }
