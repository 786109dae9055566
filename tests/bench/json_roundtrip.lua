-- Times relish.json on one document: json.decode, then json.encode, N times.
-- Usage: relish lua json_roundtrip.lua FILE [N] [--unsorted] [--out PATH]
--   N           timed iterations (default 10), after 2 untimed warm-up ones
--   --unsorted  encode with { sort_keys = false } (the default sorts keys)
--   --out PATH  write the last encoded text to PATH (to compare outputs)
-- Prints one line per iteration, then a "median" line (milliseconds).
-- A full GC runs before each iteration, outside the timed region.
local json = require "relish.json"
local now = require("relish._host").now

local file, n, sorted, out = nil, 10, true, nil
local args = { ... }
local i = 1
while i <= #args do
  local a = args[i]
  if a == "--unsorted" then
    sorted = false
  elseif a == "--out" then
    i = i + 1
    out = args[i]
  elseif not file then
    file = a
  else
    n = assert(math.tointeger(tonumber(a)), "N must be an integer")
  end
  i = i + 1
end
assert(file, "usage: relish lua json_roundtrip.lua FILE [N] [--unsorted] [--out PATH]")

local f = assert(io.open(file, "rb"))
local text = f:read("a")
f:close()
local opts = { sort_keys = sorted }

local function once()
  collectgarbage("collect")
  local t0 = now()
  local doc = assert(json.decode(text))
  local t1 = now()
  local s = json.encode(doc, opts)
  local t2 = now()
  return (t1 - t0) * 1e3, (t2 - t1) * 1e3, s
end

local function median(t)
  table.sort(t)
  local m = #t // 2
  if #t % 2 == 1 then return t[m + 1] end
  return (t[m] + t[m + 1]) / 2
end

for _ = 1, 2 do once() end
local dec, enc, tot, last = {}, {}, {}, nil
for k = 1, n do
  local d, e, s = once()
  dec[k], enc[k], tot[k], last = d, e, d + e, s
  print(string.format("iteration %2d  decode %8.2f ms  encode %8.2f ms  total %8.2f ms", k, d, e, d + e))
end
print(string.format("median        decode %8.2f ms  encode %8.2f ms  total %8.2f ms",
  median(dec), median(enc), median(tot)))
if out then
  local o = assert(io.open(out, "wb"))
  o:write(last)
  o:close()
end
