-- relish.json: decoding, encoding, round trips, error values and paths.
local json = require "relish.json"

local function nested_arrays(n)
  return string.rep("[", n) .. string.rep("]", n)
end

local function nested_tables(n)
  local root = {}
  local t = root
  for _ = 2, n do
    t[1] = {}
    t = t[1]
  end
  return root
end

local try = require("relish._errors").try

-- decode must raise a parse error: returns it after checking its shape.
local function decode_error(text)
  local err = assert_raises(function() json.decode(text) end, "parse", nil,
    "decode of " .. string.format("%q", text) .. " should fail")
  assert_eq(getmetatable(err).__name, "relish.Error")
  assert_eq(tostring(err), err.message)
  return err
end

describe("decode", function()
  test("scalars", function()
    assert_eq(json.decode("true"), true)
    assert_eq(json.decode("false"), false)
    assert_eq(json.decode('"hi"'), "hi")
    assert_eq(json.decode(" 42 "), 42)
    assert_eq(json.decode("-7"), -7)
    assert_eq(json.decode("2.5"), 2.5)
    assert_eq(json.decode("1E2"), 100.0)
    assert_eq(json.decode("1e-2"), 0.01)
  end)

  test("integers stay integers, anything with a fraction or exponent is a float", function()
    assert_eq(math.type(json.decode("1")), "integer")
    assert_eq(math.type(json.decode("1.0")), "float")
    assert_eq(math.type(json.decode("1e0")), "float")
    assert_eq(math.type(json.decode("-0")), "integer")
    assert_eq(1 / json.decode("-0.0"), -math.huge)
  end)

  test("big integers are exact up to 64 bits", function()
    assert_eq(json.decode("9007199254740992"), 1 << 53)
    assert_eq(json.decode("-9007199254740992"), -(1 << 53))
    assert_eq(json.decode("9007199254740993"), (1 << 53) + 1)
    assert_eq(json.decode("9223372036854775807"), math.maxinteger)
    assert_eq(json.decode("-9223372036854775808"), math.mininteger)
    assert_eq(json.decode("123456789012345678"), 123456789012345678)
    assert_eq(json.decode("1234567890123456789"), 1234567890123456789)
  end)

  test("integers beyond 64 bits become the nearest float", function()
    local v = json.decode("9223372036854775808")
    assert_eq(math.type(v), "float")
    assert_eq(v, 2.0 ^ 63)
    assert_eq(json.decode("-18446744073709551616"), -(2.0 ^ 64))
  end)

  test("null is json.null, in arrays too, so lengths survive", function()
    assert_eq(type(json.null), "userdata")
    assert_true(json.decode("null") == json.null)
    local t = json.decode("[1, null, 3, null]")
    assert_eq(#t, 4)
    assert_true(t[2] == json.null)
    assert_true(t[4] == json.null)
    assert_true(json.decode('{"a": null}').a == json.null)
  end)

  test("arrays and objects, nested", function()
    assert_eq(json.decode('{"a": [1, {"b": [true, false]}], "c": {"d": "e"}}'),
      { a = { 1, { b = { true, false } } }, c = { d = "e" } })
    assert_eq(json.decode(" [ ] "), {})
    assert_eq(json.decode(" { } "), {})
    assert_eq(json.decode('\t\r\n[\n1\r\n,\t2 ]\n'), { 1, 2 })
  end)

  test("decoded arrays and objects carry the json metatables", function()
    local arr, obj = json.decode("[]"), json.decode("{}")
    assert_true(getmetatable(arr) == getmetatable(json.array()))
    assert_true(getmetatable(obj) == getmetatable(json.object()))
    assert_true(getmetatable(arr) ~= getmetatable(obj))
    assert_match(tostring(arr), "^relish%.json%.array: ")
  end)

  test("object keys are strings and the last duplicate wins", function()
    local t = json.decode('{"1": "one", "a": 1, "a": 2}')
    assert_eq(t["1"], "one")
    assert_nil(t[1])
    assert_eq(t.a, 2)
  end)

  test("large arrays and objects", function()
    local items, fields = {}, {}
    for i = 1, 1000 do
      items[i] = tostring(i)
      fields[i] = string.format('"k%d": %d', i, i)
    end
    local arr = json.decode("[" .. table.concat(items, ",") .. "]")
    assert_eq(#arr, 1000)
    assert_eq(arr[1], 1)
    assert_eq(arr[1000], 1000)
    local obj = json.decode("{" .. table.concat(fields, ",") .. ', "k1": "last"}')
    local n = 0
    for _ in pairs(obj) do n = n + 1 end
    assert_eq(n, 1000)
    assert_eq(obj.k1, "last")
    assert_eq(obj.k999, 999)
  end)

  test("escapes", function()
    assert_eq(json.decode([["\"\\\/\b\f\n\r\t"]]), "\"\\/\b\f\n\r\t")
    assert_eq(json.decode([["\u0041\u00e9\u20AC"]]), "Aé€")
  end)

  test("UTF-8 passes through and surrogate pairs combine", function()
    assert_eq(json.decode('"héllo ✓ 😀"'), "héllo ✓ 😀")
    assert_eq(json.decode([["\ud83d\ude00"]]), "😀")
    assert_eq(json.decode([["\uD83D\uDE00"]]), "\u{1F600}")
    assert_eq(json.decode([["a\udbff\udfffb"]]), "a\u{10FFFF}b")
  end)

  test("NUL bytes: \\u0000 decodes to a NUL, the input may hold them in strings' escapes only", function()
    assert_eq(json.decode([["a\u0000b"]]), "a\0b")
    assert_eq(#json.decode([["\u0000\u0000"]]), 2)
    local err = decode_error("[1]\0")
    assert_eq(err.message, "json: unexpected character at line 1, column 4")
    err = decode_error('"a\0b"')
    assert_eq(err.message, "json: control character in string at line 1, column 3")
  end)

  test("a leading UTF-8 byte order mark is ignored", function()
    assert_eq(json.decode("\xEF\xBB\xBF[1]"), { 1 })
  end)

  test("malformed input: message, line and column", function()
    local cases = {
      { "", "unexpected end of input", 1, 1 },
      { "   ", "unexpected end of input", 1, 4 },
      { "[1,\n  x]", "unexpected character", 2, 3 },
      { '{\n  "a": 1,\n  "b": tru,\n}', "unexpected character", 3, 11 },
      { '{"a":1,}', "unexpected character", 1, 8 },
      { "[1,]", "unexpected character", 1, 4 },
      { "[1 2]", "unexpected character", 1, 4 },
      { '{"a" 1}', "unexpected character", 1, 6 },
      { "{1: 2}", "unexpected character", 1, 2 },
      { "[1,2", "unexpected end of input", 1, 5 },
      { '{"a":', "unexpected end of input", 1, 6 },
      { "[1] x", "unexpected character", 1, 5 },
      { "[1][2]", "unexpected character", 1, 4 },
      { "tru", "unexpected end of input", 1, 4 },
      { "nul", "unexpected end of input", 1, 4 },
      { "trux", "unexpected character", 1, 4 },
      { "NaN", "unexpected character", 1, 1 },
      { "Infinity", "unexpected character", 1, 1 },
      { "'a'", "unexpected character", 1, 1 },
      { "01", "invalid number", 1, 1 },
      { "[-01]", "invalid number", 1, 2 },
      { "1.", "invalid number", 1, 1 },
      { ".5", "unexpected character", 1, 1 },
      { "+1", "unexpected character", 1, 1 },
      { "-", "invalid number", 1, 1 },
      { "1e", "invalid number", 1, 1 },
      { "1e+", "invalid number", 1, 1 },
      { "0x10", "unexpected character", 1, 2 },
      { "1e400", "number out of range", 1, 1 },
      { "[-1e999]", "number out of range", 1, 2 },
      { '"abc', "unexpected end of input", 1, 5 },
      { '"abc\\', "unexpected end of input", 1, 6 },
      { '"a\tb"', "control character in string", 1, 3 },
      { '"a\nb"', "control character in string", 1, 3 },
      { '"a\\xb"', "invalid escape", 1, 3 },
      { '"\\u12"', "invalid \\u escape", 1, 2 },
      { '"\\u12g4"', "invalid \\u escape", 1, 2 },
      { '"\\ud800"', "lone surrogate in \\u escape", 1, 2 },
      { '"ab\\udc00"', "lone surrogate in \\u escape", 1, 4 },
      { '"\\ud800\\u0041"', "lone surrogate in \\u escape", 1, 2 },
      { '"\xff"', "invalid UTF-8", 1, 2 },
      { '"\xc3"', "invalid UTF-8", 1, 2 },
      { '"\xc0\xaf"', "invalid UTF-8", 1, 2 },      -- overlong "/"
      { '"\xed\xa0\x80"', "invalid UTF-8", 1, 2 },  -- an encoded surrogate
      { '"\xf4\x90\x80\x80"', "invalid UTF-8", 1, 2 }, -- past U+10FFFF
      { '\n\n  {"é": x}', "unexpected character", 3, 9 }, -- columns count characters
    }
    for _, c in ipairs(cases) do
      local text, what, line, column = c[1], c[2], c[3], c[4]
      local err = decode_error(text)
      local where = string.format("%q", text)
      assert_eq(err.message, string.format("json: %s at line %d, column %d", what, line, column), where)
      assert_eq(err.line, line, where)
      assert_eq(err.column, column, where)
    end
  end)

  test("nesting: 512 levels decode, 513 fail", function()
    local t = json.decode(nested_arrays(512))
    local depth = 0
    while type(t) == "table" do
      depth = depth + 1
      t = t[1]
    end
    assert_eq(depth, 512)
    local err = decode_error(nested_arrays(513))
    assert_eq(err.message, "json: nesting deeper than 512 at line 1, column 513")
    err = decode_error(string.rep('{"a":', 513) .. "1" .. string.rep("}", 513))
    assert_eq(err.column, 512 * 5 + 1)
    -- far deeper than any C stack would like: still an error value
    decode_error(string.rep("[", 100000))
  end)

  test("try(json.decode, text) returns nil and the parse error instead of raising", function()
    local v, err = try(json.decode, '{"a": [1,\n  ]}')
    assert_nil(v)
    assert_eq({ err.kind, err.line, err.column }, { "parse", 2, 3 })
    assert_eq(err.message, "json: unexpected character at line 2, column 3")
    assert_eq({ try(json.decode, '{"a": 1}') }, { { a = 1 } })
  end)

  test("wrong argument types are misuse, raised at the caller's line", function()
    assert_misuse(function() json.decode() end, "json.decode: expected a string, got no value")
    assert_misuse(function() json.decode(12) end, "json.decode: expected a string, got number")
    assert_misuse(function() json.decode({}) end, "json.decode: expected a string, got table")
    -- try does not swallow misuse (called from pcall, there is no Lua line to name)
    assert_eq(assert_error(function() try(json.decode, 12) end), "json.decode: expected a string, got number")
  end)
end)

describe("encode", function()
  test("scalars", function()
    assert_eq(json.encode(true), "true")
    assert_eq(json.encode(false), "false")
    assert_eq(json.encode(nil), "null")
    assert_eq(json.encode(json.null), "null")
    assert_eq(json.encode(0), "0")
    assert_eq(json.encode(-42), "-42")
    assert_eq(json.encode(math.maxinteger), "9223372036854775807")
    assert_eq(json.encode(math.mininteger), "-9223372036854775808")
    assert_eq(json.encode(1 << 53), "9007199254740992")
    assert_eq(json.encode("x"), '"x"')
  end)

  test("floats: shortest text that reads back, integral values keep a .0", function()
    assert_eq(json.encode(0.1), "0.1")
    assert_eq(json.encode(1.0), "1.0")
    assert_eq(json.encode(-0.0), "-0.0")
    assert_eq(json.encode(2.5), "2.5")
    assert_eq(json.encode(1 / 3), "0.3333333333333333")
    assert_eq(json.encode(0.1 + 0.2), "0.30000000000000004")
    assert_eq(json.encode(1e300), "1e+300")
    assert_eq(json.encode(2.0 ^ 63), "9.223372036854776e+18")
    assert_eq(json.encode(123456789.0), "123456789.0")
  end)

  test("strings: control characters escaped, '/' and non-ASCII kept", function()
    assert_eq(json.encode("a\"b\\c/d"), [["a\"b\\c/d"]])
    assert_eq(json.encode("\b\f\n\r\t"), [["\b\f\n\r\t"]])
    assert_eq(json.encode("\1\31\127"), '"\\u0001\\u001f\127"')
    assert_eq(json.encode("a\0b"), [["a\u0000b"]])
    assert_eq(json.encode("é ✓ 😀"), '"é ✓ 😀"')
  end)

  test("strings must be valid UTF-8", function()
    assert_error(function() json.encode({ a = { "ok", "\xff" } }) end,
      "json%.encode: invalid UTF%-8 in string at %$%.a%[1%]$")
    assert_error(function() json.encode("\xed\xa0\x80") end, "invalid UTF%-8 in string at %$$")
    assert_error(function() json.encode({ x = { ["\xc3"] = 1 } }) end,
      "json%.encode: invalid UTF%-8 in key at %$%.x$")
  end)

  test("tables: sequences are arrays, an empty table is an object", function()
    assert_eq(json.encode({ 1, 2, 3 }), "[1,2,3]")
    assert_eq(json.encode({ "a", { "b" } }), '["a",["b"]]')
    assert_eq(json.encode({}), "{}")
    assert_eq(json.encode({ a = {} }), '{"a":{}}')
    assert_eq(json.encode({ [1] = "a", [2] = "b" }), '["a","b"]')
  end)

  test("json.array and json.object mark tables", function()
    assert_eq(json.encode(json.array()), "[]")
    assert_eq(json.encode(json.array {}), "[]")
    assert_eq(json.encode(json.object()), "{}")
    assert_eq(json.encode(json.object { 1, 2 }), '{"1":1,"2":2}')
    assert_eq(json.encode(json.array { 1, json.null, 3 }), "[1,null,3]")
    local t = { 1 }
    assert_true(json.array(t) == t, "array returns its argument")
    assert_true(json.object(t) == t, "object returns its argument")
    assert_eq(json.encode(t), '{"1":1}')
  end)

  test("sparse integer keys make an object with decimal keys", function()
    assert_eq(json.encode({ [1] = "a", [3] = "c" }), '{"1":"a","3":"c"}')
    assert_eq(json.encode({ [-1] = true, [0] = false }), '{"-1":true,"0":false}')
  end)

  test("keys that cannot be written raise with the path", function()
    assert_error(function() json.encode({ spec = { 1, 2, x = 3 } }) end,
      "json%.encode: table mixes integer and string keys at %$%.spec$")
    assert_error(function() json.encode({ a = { [true] = 1 } }) end,
      "json%.encode: cannot encode boolean key at %$%.a$")
    assert_error(function() json.encode({ [1.5] = 1 }) end, "json%.encode: cannot encode float key at %$$")
    assert_error(function() json.encode({ [{}] = 1 }) end, "cannot encode table key at %$$")
    assert_error(function() json.encode({ 1, 2, x = 3 }, { sort_keys = false }) end, "mixes integer and string keys")
  end)

  test("keys are sorted by bytes by default", function()
    assert_eq(json.encode({ b = 1, a = 2, c = { z = 1, y = { 2 } } }), '{"a":2,"b":1,"c":{"y":[2],"z":1}}')
    assert_eq(json.encode({ a = 1, ab = 2, B = 3, _ = 4, ["é"] = 5, [""] = 6 }),
      '{"":6,"B":3,"_":4,"a":1,"ab":2,"é":5}')
    assert_eq(json.encode({ [10] = 1, [9] = 2, [2] = 3 }), '{"10":1,"2":3,"9":2}')
  end)

  test("sort_keys=false writes every key in table order", function()
    local v = { b = 1, a = { d = 2, c = 3 }, e = {} }
    local text = json.encode(v, { sort_keys = false })
    assert_eq(json.decode(text), v)
    assert_eq(#text, #json.encode(v))
  end)

  test("pretty: two-space indent, exact output", function()
    local v = { name = "web", ports = { 80, 443 }, meta = {}, list = json.array(), spec = { replicas = 3 } }
    local expected = table.concat({
      "{",
      '  "list": [],',
      '  "meta": {},',
      '  "name": "web",',
      '  "ports": [',
      "    80,",
      "    443",
      "  ],",
      '  "spec": {',
      '    "replicas": 3',
      "  }",
      "}",
    }, "\n")
    assert_eq(json.encode(v, { pretty = true }), expected)
    assert_eq(json.encode(v, { pretty = true, sort_keys = true }), expected)
    assert_eq(json.encode({ 1, { 2 } }, { pretty = true }), "[\n  1,\n  [\n    2\n  ]\n]")
    assert_eq(json.encode(1, { pretty = true }), "1")
    assert_eq(json.encode({}, { pretty = true }), "{}")
  end)

  test("pretty without sorting", function()
    assert_eq(json.encode({ a = { 1 } }, { pretty = true, sort_keys = false }), '{\n  "a": [\n    1\n  ]\n}')
    assert_eq(json.encode({ [7] = {} }, { pretty = true, sort_keys = false }), '{\n  "7": {}\n}')
  end)

  test("encode errors carry the caller's position, like other Lua errors", function()
    local ok, msg = pcall(json.encode, { f = print })
    assert_false(ok)
    assert_eq(msg, "json.encode: cannot encode function at $.f")
    local line = debug.getinfo(1, "l").currentline + 1
    msg = assert_error(function() json.encode({ f = print }) end)
    assert_match(msg, "json_test%.lua:" .. line .. ": json%.encode: cannot encode function at %$%.f$")
  end)

  test("values that cannot be encoded raise with their path", function()
    assert_error(function() json.encode({ spec = { x = print } }) end,
      "json%.encode: cannot encode function at %$%.spec%.x$")
    assert_error(function() json.encode({ spec = { template = { spec = io.stdout } } }) end,
      "json%.encode: cannot encode userdata at %$%.spec%.template%.spec$")
    assert_error(function() json.encode({ items = { 1, 2, 3, { name = coroutine.create(print) } } }) end,
      "json%.encode: cannot encode thread at %$%.items%[3%]%.name$")
    assert_error(function() json.encode({ a = { 0 / 0 } }) end, "json%.encode: cannot encode NaN at %$%.a%[0%]$")
    assert_error(function() json.encode(math.huge) end, "json%.encode: cannot encode inf at %$$")
    assert_error(function() json.encode({ x = -math.huge }) end, "json%.encode: cannot encode %-inf at %$%.x$")
    assert_error(function() json.encode({ ["a b"] = { ['q"1'] = print } }) end,
      'json%.encode: cannot encode function at %$%["a b"%]%["q\\"1"%]$')
    assert_error(function() json.encode({ x = { [3] = print } }) end,
      'json%.encode: cannot encode function at %$%.x%["3"%]$')
    assert_error(function() json.encode({ x = { [3] = print } }, { sort_keys = false }) end,
      'json%.encode: cannot encode function at %$%.x%["3"%]$')
  end)

  test("a long path in an error is whole (its text is built in a luaL_Buffer)", function()
    local t, keys = {}, {}
    local at = t
    for i = 1, 40 do
      keys[i] = "k" .. i .. string.rep("x", 100)
      at[keys[i]] = {}
      at = at[keys[i]]
    end
    at["a b"] = { print }
    assert_eq(assert_error(function() try(json.encode, t) end),
      "json.encode: cannot encode function at $." .. table.concat(keys, ".") .. '["a b"][0]')
    at["a b"] = t
    assert_eq(assert_error(function() try(json.encode, t) end),
      "json.encode: cycle at $." .. table.concat(keys, ".") .. '["a b"] (same table as $)')
  end)

  test("cycles raise with both paths; shared tables are fine", function()
    local t = { a = { b = {} } }
    t.a.b.c = t.a
    assert_error(function() json.encode(t) end,
      "json%.encode: cycle at %$%.a%.b%.c %(same table as %$%.a%)$")
    local s = {}
    s[1] = s
    assert_error(function() json.encode(s) end, "json%.encode: cycle at %$%[0%] %(same table as %$%)$")
    local shared = { 1 }
    assert_eq(json.encode({ x = shared, y = shared }), '{"x":[1],"y":[1]}')
  end)

  test("nesting: 512 levels encode, 513 raise", function()
    -- the innermost table is empty, so an object
    assert_eq(json.encode(nested_tables(512)), string.rep("[", 511) .. "{}" .. string.rep("]", 511))
    local msg = assert_error(function() json.encode(nested_tables(513)) end,
      "json%.encode: nesting deeper than 512 at %$")
    assert_eq(msg:match("json%.encode: .*"), "json.encode: nesting deeper than 512 at $" .. string.rep("[0]", 512))
  end)

  test("wrong arguments are misuse, raised at the caller's line", function()
    assert_misuse(function() json.encode() end, "json.encode: expected a value, got no value")
    assert_misuse(function() json.encode(1, 5) end, "json.encode: options must be a table, got number")
    assert_misuse(function() json.encode(1, { pritty = true }) end, "json.encode: unknown option 'pritty' (did you mean 'pretty'?)")
    assert_misuse(function() json.encode(1, { zzz = true }) end, "json.encode: unknown option 'zzz'")
    assert_misuse(function() json.encode(1, { pretty = "yes" }) end, "json.encode: pretty must be a boolean, got string")
    assert_misuse(function() json.encode(1, { sort_keys = 0 }) end, "json.encode: sort_keys must be a boolean, got number")
    assert_misuse(function() json.array(5) end, "json.array: expected a table, got number")
    assert_misuse(function() json.object("x") end, "json.object: expected a table, got string")
    assert_misuse(function() json.object(setmetatable({}, {})) end,
      "json.object: the table already has another metatable")
  end)

  test("a value that cannot be encoded is misuse too: try raises it again", function()
    assert_eq(assert_error(function() try(json.encode, { f = print }) end), "json.encode: cannot encode function at $.f")
  end)
end)

describe("round trips", function()
  test("[] and {} stay what they were, nested too", function()
    for _, text in ipairs({ "[]", "{}", '{"a":[],"b":{},"c":[[],{}]}', '[{"x":[]},[{}]]' }) do
      assert_eq(json.encode(json.decode(text)), text)
    end
  end)

  test("edited decoded documents keep their shape", function()
    local doc = json.decode('{"items":[],"meta":{}}')
    doc.items[#doc.items + 1] = { name = "x" }
    assert_eq(json.encode(doc), '{"items":[{"name":"x"}],"meta":{}}')
  end)

  test("numbers", function()
    for _, v in ipairs({ 0, 1, -1, 1 << 53, -(1 << 53), math.maxinteger, math.mininteger,
      0.1, 1e300, -1e300, 5e-324, 1.0, -0.0, 2.0 ^ 53, 1 / 3, 123.456e-7, 2.2250738585072014e-308 }) do
      local back = json.decode(json.encode(v))
      assert_eq(back, v, tostring(v))
      assert_eq(math.type(back), math.type(v), tostring(v))
    end
    assert_eq(1 / json.decode(json.encode(-0.0)), -math.huge)
  end)

  test("strings: every control character, NULs and all of UTF-8", function()
    local chars = {}
    for i = 0, 127 do chars[#chars + 1] = string.char(i) end
    for _, cp in ipairs({ 0x80, 0x7FF, 0x800, 0xD7FF, 0xE000, 0xFFFD, 0xFFFF, 0x10000, 0x1F600, 0x10FFFF }) do
      chars[#chars + 1] = utf8.char(cp)
    end
    local s = table.concat(chars)
    assert_eq(json.decode(json.encode(s)), s)
    assert_eq(json.decode(json.encode({ ["k\0ey"] = "v\0" }))["k\0ey"], "v\0")
  end)

  test("a document", function()
    local text = '{"apiVersion":"apps/v1","kind":"Deployment","metadata":{"labels":{"app":"web"},'
      .. '"name":"web","resourceVersion":"12"},"spec":{"replicas":3,"template":{"spec":{"containers":'
      .. '[{"args":[],"env":[{"name":"A","value":null}],"image":"web:1.2","ports":[{"containerPort":8080}],'
      .. '"resources":{"limits":{"cpu":0.5}}}],"nodeSelector":{}}}}}'
    assert_eq(json.encode(json.decode(text)), text)
    local pretty = json.encode(json.decode(text), { pretty = true })
    assert_eq(json.encode(json.decode(pretty)), text)
  end)
end)

-- issue 17 item 1: a failed decode big enough to pause the collector, inside
-- coroutines whose stacks sit at every offset, crashed (exit 139) when
-- lua_settop closed the pause's slot (Lua 5.4.4 kept a stale stack pointer)
describe("decode inside coroutines", function()
  test("a failed decode at every stack offset raises a parse error, small or big", function()
    local n = 0
    for _, body in ipairs { ("1,"):rep(44), ("1,"):rep(17000) } do
      for depth = 0, 40, 8 do
        local s = ("["):rep(depth) .. body .. "x"
        for pad = 0, 250 do
          local co = coroutine.create(function(...) return json.decode(s) end)
          local ok, e = coroutine.resume(co, table.unpack({}, 1, pad))
          assert_false(ok)
          assert_eq(type(e) == "table" and e.kind, "parse")
          n = n + 1
        end
      end
    end
    assert_eq(n, 2 * 6 * 251)
  end)
end)
