-- relish lock list | relish lock break NAME
local J = require "relish.journal"
local json = require "relish.json"
local lock = require "relish.lock"
local host = require "relish._host"

local usage = require("relish._errors").invalid

return {
  main = function(opts)
    local sub = opts.args[1]
    local journal = J.open(opts.flags.state)
    if sub == "list" then
      if opts.args[2] then usage("lock list takes no argument") end
      local rows = lock.list(journal)
      if opts.flags.output == "json" then
        -- one JSON array, [] when nothing is held: a reader parses one value
        local list = json.array {}
        for _, l in ipairs(rows) do
          local stale, why = lock.stale(l)
          local paused = l.paused == 1
          list[#list + 1] = { name = l.name, run_id = l.run_id, user = l.user, host = l.host, pid = l.pid or json.null,
            since = l.acquired_at, expires_in = paused and json.null or math.floor(l.expires_at - host.time()),
            stale = stale, stale_reason = why or json.null, paused = paused }
        end
        io.write(json.encode(list, { sort_keys = true }), "\n")
      elseif #rows == 0 then
        io.write("No locks held\n")
      else
        for _, l in ipairs(rows) do
          local stale, why = lock.stale(l)
          io.write(string.format("%s  held by %s%s\n", l.name, lock.holder_text(l), stale and ("  STALE: " .. why) or ""))
        end
      end
    elseif sub == "break" then
      local name = opts.args[2]
      if not name then usage("lock break NAME: missing NAME") end
      local was = lock.break_lock(journal, name)
      if not was then usage("no lock named '" .. name .. "'") end
      -- a holder that may still be running is told at its next safe point
      -- (before a step or an effect): it stops there, exit 4, "stopped"
      if was.paused == 1 then
        io.stderr:write(string.format("warning: lock '%s' was held by run %s, paused at a manual gate: another run " ..
          "may take it now; `relish resume %s` or `relish rollback %s` takes it again if it is free (exit 4 if not)\n",
          name, was.run_id, was.run_id, was.run_id))
      elseif J.lease_live_here(was) then
        io.stderr:write(string.format("warning: lock '%s' was held by a live process, pid %d of run %s on this host: " ..
          "it stops before its next step or effect (the run ends 'stopped': resume it or roll it back)\n",
          name, was.pid, was.run_id))
      elseif not lock.stale(was) then
        io.stderr:write(string.format("warning: lock '%s' was held by run %s on host %s, whose lease had not expired: " ..
          "if it is still running, it stops before its next step or effect\n", name, was.run_id, tostring(was.host)))
      end
      io.write(string.format("broke lock '%s' (was held by %s)\n", name, lock.holder_text(was)))
    else
      usage(string.format("unknown lock command '%s': use 'relish lock list' or 'relish lock break NAME'", tostring(sub)))
    end
    journal:close()
    return 0
  end,
}
