-- relish history: past runs, newest first.
local invalid = require("relish._errors").invalid
local J = require "relish.journal"
local json = require "relish.json"

return {
  main = function(opts)
    local f = opts.flags
    local limit = 20
    if f.limit then
      limit = math.tointeger(tonumber(f.limit))
      if not limit or limit < 1 then
        invalid("--limit must be a positive integer, got '" .. f.limit .. "'")
      end
    end
    local journal = J.open(f.state)
    local rows = journal:list_runs { recipe = f.recipe, limit = limit }
    journal:close()
    if f.output == "json" then
      for _, r in ipairs(rows) do
        io.write(json.encode({ run_id = r.id, recipe = r.recipe, status = J.shown_status(r), exit_code = r.exit_code or json.null,
          dry_run = r.dry_run, user = r.user, started_at = r.started_at, finished_at = r.finished_at or json.null,
          params = json.decode(r.params) }, { sort_keys = true }), "\n")
      end
      return 0
    end
    if #rows == 0 then
      io.write(f.recipe and string.format("no runs of recipe '%s'\n", f.recipe) or "no runs yet\n")
      return 0
    end
    io.write(string.format("%-24s  %-20s  %-16s  %-9s  %s\n", "RUN", "RECIPE", "STATUS", "USER", "STARTED"))
    for _, r in ipairs(rows) do
      io.write(string.format("%-24s  %-20s  %-16s  %-9s  %s\n", r.id, r.recipe:sub(1, 20),
        J.shown_status(r) .. (r.dry_run and " (dry)" or ""), (r.user or "?"):sub(1, 9), r.started_at))
    end
    return 0
  end,
}
