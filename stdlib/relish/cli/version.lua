-- relish version: relish's version and those of the libraries it runs with.
local host = require "relish._host"

local M = {}

local ORDER = { "lua", "libcurl", "libgit2", "cjson", "libyaml", "sqlite" }
local LABEL = { lua = "Lua", libcurl = "libcurl", libgit2 = "libgit2", cjson = "cJSON",
  libyaml = "libyaml", sqlite = "SQLite" }

function M.main(opts)
  local v = host.versions()
  if opts.flags.output == "json" then
    local json = require "relish.json"
    io.write(json.encode(v, { sort_keys = true }), "\n")
    return 0
  end
  io.write("relish ", v.relish, "\n")
  for _, k in ipairs(ORDER) do
    io.write(string.format("  %-8s %s\n", LABEL[k], v[k]))
  end
  return 0
end

return M
