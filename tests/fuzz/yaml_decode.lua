-- yaml.decode and yaml.decode_all on any bytes: a parse error or values;
-- what was decoded encodes (encode and encode_all accept whatever decode
-- accepts), and decoding the encoded text gives the same values again.
local yaml = require "relish.yaml"
local common = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "common.lua")

local PARSE = { parse = true }

local function round_trip(what, v, encode, decode)
  local ok, text = pcall(encode, v)
  if not ok then error(what .. ": cannot encode what was decoded: " .. tostring(text), 0) end
  local ok2, back = pcall(decode, text)
  if not ok2 then
    error(what .. ": cannot decode what was encoded: " .. tostring(back) .. "\n--- text:\n" .. text, 0)
  end
  common.assert_same(what .. " round trip", v, back)
end

return function(data)
  local ok, v = pcall(yaml.decode, data)
  if not ok then
    common.expect_error("yaml.decode", v, PARSE)
  else
    round_trip("yaml.decode", v, yaml.encode, yaml.decode)
  end
  local ok_all, docs = pcall(yaml.decode_all, data)
  if not ok_all then return common.expect_error("yaml.decode_all", docs, PARSE) end
  round_trip("yaml.decode_all", docs, yaml.encode_all, yaml.decode_all)
end
