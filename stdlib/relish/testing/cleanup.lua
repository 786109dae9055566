-- Clean-ups the testing kit registers while a test runs (temporary
-- journals, fixture servers, repositories): `relish test` runs them, newest
-- first, when the test ends, whether it passed or not.
local M = {}

local pending = {}

-- add(fn) -> fn: runs fn when the current test ends
function M.add(fn)
  pending[#pending + 1] = fn
  return fn
end

-- run() -> the first error a clean-up raised, or nil (every one runs)
function M.run()
  local first
  while #pending > 0 do
    local fn = table.remove(pending)
    local ok, err = pcall(fn)
    if not ok and first == nil then first = err end
  end
  return first
end

return M
