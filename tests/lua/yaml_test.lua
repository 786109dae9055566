-- Tests for relish.yaml: the core schema, anchors and merges, errors with
-- positions, multi-document streams, safe quoting, and Kubernetes round trips.
local yaml = require "relish.yaml"
local try = require("relish._errors").try

local function read_fixture(rel)
  local f = assert(io.open(fixture_path(rel), "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function decode_ok(s)
  local v, extra = yaml.decode(s)
  assert_nil(extra, "decode returns one value")
  return v
end

-- decode must raise a parse error value: returns it.
local function decode_err(s, pattern)
  local err = assert_raises(function() yaml.decode(s) end, "parse", pattern, "expected a decode error")
  assert_eq(getmetatable(err).__name, "relish.Error")
  assert_eq(tostring(err), err.message)
  return err
end

local function mt_name(t)
  local mt = getmetatable(t)
  return mt and mt.__name
end

describe("core schema for plain scalars", function()
  local null = yaml.null
  local cases = {
    -- text, expected value, expected math.type or type
    { "null", null }, { "Null", null }, { "NULL", null }, { "~", null }, { "", null },
    { "true", true }, { "True", true }, { "TRUE", true },
    { "false", false }, { "False", false }, { "FALSE", false },
    { "0", 0, "integer" }, { "42", 42, "integer" }, { "-17", -17, "integer" }, { "+3", 3, "integer" },
    { "0755", 755, "integer" }, { "0o17", 15, "integer" }, { "0x1F", 31, "integer" }, { "0xff", 255, "integer" },
    { "9223372036854775807", math.maxinteger, "integer" },
    { "-9223372036854775808", math.mininteger, "integer" },
    { "0x7FFFFFFFFFFFFFFF", math.maxinteger, "integer" },
    { "99999999999999999999", 1e20, "float" }, { "0x10000000000000000", 2.0 ^ 64, "float" },
    { "1.5", 1.5, "float" }, { ".5", 0.5, "float" }, { "1.", 1.0, "float" }, { "-2.5e3", -2500.0, "float" },
    { "1e3", 1000.0, "float" }, { "+.5E-3", 0.0005, "float" },
    { ".inf", math.huge, "float" }, { ".Inf", math.huge, "float" }, { "+.INF", math.huge, "float" },
    { "-.inf", -math.huge, "float" },
    { "yes", "yes" }, { "No", "No" }, { "on", "on" }, { "off", "off" }, { "y", "y" },
    { "TrUe", "TrUe" }, { "nULL", "nULL" }, { "1.2.3", "1.2.3" }, { "0o8", "0o8" }, { "0xG", "0xG" },
    { "-0x1F", "-0x1F" }, { "1e", "1e" }, { ".e3", ".e3" }, { "1_000", "1_000" }, { "12:30", "12:30" },
    { "2024-01-02", "2024-01-02" }, { ".infinity", ".infinity" }, { "v1", "v1" },
  }
  for _, c in ipairs(cases) do
    test(string.format("%q", c[1]), function()
      local v = decode_ok("v: " .. c[1] .. "\n").v
      assert_eq(v, c[2])
      if c[3] then assert_eq(math.type(v), c[3]) end
    end)
  end

  test("NaN forms", function()
    for _, s in ipairs { ".nan", ".NaN", ".NAN" } do
      local v = decode_ok("v: " .. s).v
      assert_eq(math.type(v), "float")
      assert_true(v ~= v, s .. " is NaN")
    end
  end)

  test("null is json.null", function()
    local ok, json = pcall(require, "relish.json")
    if ok then assert_true(yaml.null == json.null) end
    assert_eq(type(yaml.null), "userdata")
    assert_true(decode_ok("a:\n").a == yaml.null)
  end)

  test("quoted and block scalars are always strings", function()
    local v = decode_ok([[
a: '1'
b: "true"
c: 'null'
d: "~"
e: ''
f: |
  42
g: >-
  3.5
h: "0x1F"
]])
    assert_eq(v, { a = "1", b = "true", c = "null", d = "~", e = "", f = "42\n", g = "3.5", h = "0x1F" })
  end)

  test("explicit tags", function()
    local v = decode_ok([[
s: !!str 123
t: !!str true
i: !!int "42"
f: !!float 1
g: !!float '2.5'
b: !!bool "false"
n: !!null ""
x: ! 12
u: !custom 12
q: !custom '12'
ts: !!timestamp 2001-12-14
]])
    assert_eq(v, { s = "123", t = "true", i = 42, f = 1.0, g = 2.5, b = false, n = yaml.null, x = "12",
                   u = 12, q = "12", ts = "2001-12-14" })
    assert_eq(math.type(v.f), "float")
    assert_eq(math.type(v.i), "integer")
  end)

  test("a tag that does not fit its value is an error", function()
    local err = decode_err("a: 1\nb: !!int twelve\n")
    assert_eq(err.line, 2)
    assert_eq(err.column, 4)
    assert_match(err.message, "invalid !!int value \"twelve\"")
    decode_err("!!bool yes")
    decode_err("!!float abc")
  end)

  test("mapping keys are strings as written", function()
    local v = decode_ok("1: a\ntrue: b\n~: c\n0x1F: d\n'q': e\n")
    assert_eq(v, { ["1"] = "a", ["true"] = "b", ["~"] = "c", ["0x1F"] = "d", q = "e" })
  end)

  test("sequences and mappings carry relish.json marks", function()
    local v = decode_ok("a: []\nb: {}\nc: [1]\n")
    assert_eq(mt_name(v), "relish.json.object")
    assert_eq(mt_name(v.a), "relish.json.array")
    assert_eq(mt_name(v.b), "relish.json.object")
    assert_eq(mt_name(v.c), "relish.json.array")
  end)

  test("JSON text is YAML", function()
    local v = decode_ok('{"a": [1, 2.5, null, true, "x"], "b": {}}')
    assert_eq(v, { a = { 1, 2.5, yaml.null, true, "x" }, b = {} })
  end)

  test("complex keys are refused", function()
    local err = decode_err("[a, b]: c\n")
    assert_match(err.message, "not supported")
  end)
end)

describe("anchors and aliases", function()
  test("an alias yields the anchored value", function()
    local v = decode_ok([[
base: &base
  image: nginx
  ports: [80]
copy: *base
n: &n 5
m: *n
]])
    assert_true(v.copy == v.base, "same table")
    assert_eq(v.copy.image, "nginx")
    assert_eq(v.m, 5)
  end)

  test("an alias can be a key", function()
    local v = decode_ok("a: &k name\n*k : value\n")
    assert_eq(v, { a = "name", name = "value" })
  end)

  test("an alias to an undefined anchor is an error", function()
    local err = decode_err("a: 1\nb: *missing\n")
    assert_eq(err.line, 2)
    assert_eq(err.column, 4)
    assert_match(err.message, "unknown anchor 'missing'")
  end)

  test("anchors do not cross documents", function()
    assert_raises(function() yaml.decode_all("a: &x 1\n---\nb: *x\n") end, "parse", "unknown anchor 'x'")
  end)

  test("billion laughs is refused quickly", function()
    local lines = { "a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]" }
    for i = 1, 9 do
      local refs = {}
      for j = 1, 10 do refs[j] = "*a" .. (i - 1) end
      lines[#lines + 1] = string.format("a%d: &a%d [%s]", i, i, table.concat(refs, ", "))
    end
    local t0 = os.clock()
    decode_err(table.concat(lines, "\n"), "aliases expand to more than 1000000 nodes")
    assert_true(os.clock() - t0 < 1, "refused without expanding")
  end)

  test("moderate alias use is fine", function()
    local v = decode_ok("a: &a [1, 2, 3]\nb: [*a, *a, *a]\n")
    assert_eq(v.b, { { 1, 2, 3 }, { 1, 2, 3 }, { 1, 2, 3 } })
  end)
end)

describe("merge keys", function()
  test("a single mapping; explicit keys win", function()
    local v = decode_ok([[
defaults: &d
  timeout: 30
  retries: 3
job:
  <<: *d
  retries: 5
]])
    assert_eq(v.job, { timeout = 30, retries = 5 })
    assert_eq(v.defaults, { timeout = 30, retries = 3 }, "the source is unchanged")
  end)

  test("explicit keys win even when written before the merge", function()
    local v = decode_ok("d: &d {a: 1, b: 2}\nx:\n  a: 9\n  <<: *d\n")
    assert_eq(v.x, { a = 9, b = 2 })
  end)

  test("a list of mappings: earlier ones win", function()
    local v = decode_ok([[
a: &a {x: 1, y: 1}
b: &b {y: 2, z: 2}
c:
  <<: [*a, *b, {w: 3, z: 3}]
  v: 0
]])
    assert_eq(v.c, { v = 0, x = 1, y = 1, z = 2, w = 3 })
  end)

  test("a quoted << is an ordinary key", function()
    assert_eq(decode_ok("'<<': 1\n"), { ["<<"] = 1 })
  end)

  test("merging a scalar is an error", function()
    local err = decode_err("a: 1\n<<: 2\n")
    assert_eq(err.line, 2)
    assert_match(err.message, "merge key '<<' needs a mapping or a list of mappings")
    decode_err("<<: [{a: 1}, 2]\n")
  end)
end)

describe("errors", function()
  test("a duplicate key names the key, line and column", function()
    local err = decode_err("metadata:\n  name: a\n  labels: {}\n  name: b\n")
    assert_eq(err.line, 4)
    assert_eq(err.column, 3)
    assert_eq(err.message, 'yaml: line 4, column 3: duplicate key "name"')
    assert_eq(tostring(err), err.message)
  end)

  test("a syntax error carries libyaml's problem and position", function()
    local err = decode_err("a: 1\nb:\n  c: d: e\n")
    assert_eq(err.line, 3)
    assert_eq(err.column, 7)
    assert_eq(err.message, "yaml: line 3, column 7: mapping values are not allowed in this context")
  end)

  test("a parser error names its context", function()
    local err = decode_err("a:\n  b: c\n d: e\n")
    assert_eq(err.line, 3)
    assert_match(err.message, "did not find expected key %(while parsing a block mapping at line 1, column 1%)")
  end)

  test("control characters and bad UTF-8 are reported with a position", function()
    local err = decode_err("a: 1\nb: x\1\n")
    assert_eq(err.line, 2)
    assert_eq(err.column, 5)
    decode_err("a: \xff\xff\n")
  end)

  test("nesting deeper than 512 levels is an error", function()
    local err = decode_err(string.rep("[", 513) .. string.rep("]", 513))
    assert_match(err.message, "nesting deeper than 512 levels")
    local v = decode_ok(string.rep("[", 512) .. string.rep("]", 512))
    assert_eq(type(v), "table")
    local lines = {}
    for i = 1, 600 do lines[i] = string.rep(" ", i - 1) .. "k:" end
    decode_err(table.concat(lines, "\n"))
  end)

  test("try(yaml.decode, text) returns nil and the parse error instead of raising", function()
    local v, err = try(yaml.decode, "a: 1\nb: *missing\n")
    assert_nil(v)
    assert_eq({ err.kind, err.line, err.column }, { "parse", 2, 4 })
    assert_match(err.message, "^yaml: line 2, column 4: .*unknown anchor 'missing'")
    assert_eq({ try(yaml.decode, "a: 1\n") }, { { a = 1 } })
    v, err = try(yaml.decode_all, "a: 1\n---\nb: [\n")
    assert_nil(v)
    assert_eq(err.kind, "parse")
  end)

  test("misuse raises at the caller's line", function()
    assert_misuse(function() yaml.decode() end, "yaml.decode: expected a string, got no value")
    assert_misuse(function() yaml.decode({}) end, "yaml.decode: expected a string, got table")
    assert_misuse(function() yaml.decode(42) end, "yaml.decode: expected a string, got number")
    assert_misuse(function() yaml.decode_all(42) end, "yaml.decode_all: expected a string, got number")
  end)
end)

describe("documents", function()
  test("decode_all reads a multi-document manifest, skipping empty documents", function()
    local docs = assert(yaml.decode_all(read_fixture("yaml/bundle.yaml")))
    assert_eq(#docs, 3)
    assert_eq(mt_name(docs), "relish.json.array")
    assert_eq(docs[1].kind, "Namespace")
    assert_eq(docs[2].kind, "Service")
    assert_eq(docs[2].spec.selector, { ["app.kubernetes.io/name"] = "api" })
    assert_eq(docs[2].spec.ports[2].targetPort, 9090)
    assert_eq(docs[3].kind, "ServiceAccount")
    assert_eq(docs[3].automountServiceAccountToken, false)
  end)

  test("an explicit null document is kept", function()
    local docs = assert(yaml.decode_all("a: 1\n--- null\n---\n--- ~\n"))
    assert_eq(#docs, 3)
    assert_true(docs[2] == yaml.null and docs[3] == yaml.null)
  end)

  test("decode_all of nothing is an empty list", function()
    assert_eq(assert(yaml.decode_all("")), {})
    assert_eq(assert(yaml.decode_all("# just a comment\n")), {})
  end)

  test("decode returns the first document", function()
    assert_eq(decode_ok("---\na: 1\n---\nb: 2\n"), { a = 1 })
    assert_true(yaml.decode("") == yaml.null)
    assert_eq(decode_ok("just text"), "just text")
  end)

  test("a syntax error in a later document fails decode_all", function()
    local err = assert_raises(function() yaml.decode_all("a: 1\n---\nb: [\n") end, "parse")
    assert_eq(err.line, 4)
  end)
end)

describe("encode", function()
  -- Each must come back as the same string, and never as a plain scalar.
  local tricky = {
    "yes", "no", "on", "off", "y", "N", "true", "False", "1.0", "null", "Null", "~", "0755", "0x1F", "0o17",
    "42", "-1", "+1", "1e3", ".inf", "-.inf", ".nan", "", " lead", "trail ", "a: b", "a #b", "-x", "- x",
    "?x", "*x", "&x", "!x", "%x", "@x", "`x", "{x}", "[x]", "|x", ">x", "'x", '"x', "#x", ",x", "x:",
    "<<", "=", "---", "...", "12:30", "2024-01-02", "1_000", "3scale", "a\tb", "a\0b", "\r", "\xc2\x85",
  }
  for _, s in ipairs(tricky) do
    test(string.format("quotes %q", s), function()
      local out = yaml.encode({ v = s })
      assert_false(out:match("^v: [^\"'|>]") ~= nil, "plain: " .. out)
      assert_eq(decode_ok(out).v, s)
    end)
  end

  test("quoting style is double quotes", function()
    assert_eq(yaml.encode({ "yes", "8080", "true", "" }), '- "yes"\n- "8080"\n- "true"\n- ""\n')
  end)

  test("safe strings stay plain", function()
    local out = yaml.encode({ a = "nginx:1.25", b = "http://x.example/a?b=c", c = "v1.2.3", d = "hello world",
                              e = "a, b", f = "ünïcödé", g = "x-y" })
    assert_eq(out, "a: nginx:1.25\nb: http://x.example/a?b=c\nc: v1.2.3\nd: hello world\ne: a, b\n"
                   .. "f: ünïcödé\ng: x-y\n")
  end)

  test("multi-line strings use literal blocks and read back exactly", function()
    for _, s in ipairs { "a\nb\n", "a\nb", "a\n\n", "  indented\nx\n", "x\n  y\n", "trailing \nspace",
                         "crlf\r\nline", "tab\tin\nblock\n" } do
      local out = yaml.encode({ s })
      assert_eq(decode_ok(out)[1], s)
    end
    assert_eq(yaml.encode({ k = "a\nb\n" }), "k: |\n  a\n  b\n")
    assert_eq(yaml.encode({ k = "a\nb" }), "k: |-\n  a\n  b\n")
  end)

  test("numbers, booleans and null", function()
    assert_eq(yaml.encode({ i = 3, f = 3.0, h = 0.1, b = true, n = yaml.null, big = 1e20, neg = -0.5 }),
      "b: true\nbig: 1.0e+20\nf: 3.0\nh: 0.1\ni: 3\n\"n\": null\nneg: -0.5\n")
    assert_eq(yaml.encode({ 1 / 0, -1 / 0, 0 / 0 }), "- .inf\n- -.inf\n- .nan\n")
    local back = decode_ok(yaml.encode({ i = 3, f = 3.0, x = 1 / 3 }))
    assert_eq(math.type(back.i), "integer")
    assert_eq(math.type(back.f), "float")
    assert_eq(back.x, 1 / 3)
  end)

  test("tables: sequences, mappings and empties", function()
    assert_eq(yaml.encode({}), "{}\n")
    assert_eq(yaml.encode({ a = {}, b = decode_ok("[]"), c = decode_ok("{}") }), "a: {}\nb: []\nc: {}\n")
    assert_eq(yaml.encode({ 1, 2, 3 }), "- 1\n- 2\n- 3\n")
    assert_eq(yaml.encode({ [1] = "a", [3] = "c" }), "1: a\n3: c\n")
    assert_eq(yaml.encode({ [1] = "a", [2.5] = "b", [true] = "c" }), "1: a\n2.5: b\ntrue: c\n")
    assert_eq(yaml.encode({ a = { { name = "x", port = 80 } } }), "a:\n- name: x\n  port: 80\n")
  end)

  test("keys are sorted unless sort_keys is false", function()
    assert_eq(yaml.encode({ b = 1, a = 2, C = 3, ["a.b"] = 4 }), "C: 3\na: 2\na.b: 4\nb: 1\n")
    local out = yaml.encode({ b = 1, a = 2 }, { sort_keys = false })
    assert_true(out == "a: 2\nb: 1\n" or out == "b: 1\na: 2\n")
    assert_eq(yaml.encode({ a = { b = 1 } }, { indent = 4 }), "a:\n    b: 1\n")
  end)

  test("top-level scalars and encode_all", function()
    assert_eq(decode_ok(yaml.encode("hello")), "hello")
    assert_eq(decode_ok(yaml.encode(42)), 42)
    assert_true(decode_ok(yaml.encode(nil)) == yaml.null)
    local out = yaml.encode_all({ { kind = "A" }, { kind = "B" } })
    assert_eq(out, "---\nkind: A\n---\nkind: B\n")
    assert_eq(assert(yaml.decode_all(out)), { { kind = "A" }, { kind = "B" } })
    assert_eq(yaml.encode_all({}), "")
  end)

  test("unencodable values raise with a path", function()
    assert_error(function() yaml.encode({ spec = { template = { run = print } } }) end,
      "cannot encode a function at %$%.spec%.template%.run")
    assert_error(function() yaml.encode({ items = { 1, 2, io.stdout } }) end,
      "cannot encode a userdata at %$%.items%[3%]")
    assert_error(function() yaml.encode({ ["app.kubernetes.io/name"] = { coroutine.create(print) } }) end,
      'cannot encode a thread at %$%["app.kubernetes.io/name"%]%[1%]')
    assert_error(function() yaml.encode({ a = { [{}] = 1 } }) end, "cannot encode a table as a mapping key at %$%.a")
    assert_error(function() yaml.encode({ [1] = "a", ["1"] = "b" }) end, 'keys 1 and "1" clash')
    assert_error(function() yaml.encode({ bad = "\xff" }) end, "not valid UTF%-8 at %$%.bad")
    assert_error(function() yaml.encode_all({ { a = 1 }, { b = print } }) end, "at %$%[2%]%.b")
  end)

  test("cycles raise with a path", function()
    local t = { spec = { template = {} } }
    t.spec.template.back = t.spec
    assert_error(function() yaml.encode(t) end, "cycle: the table contains itself at %$%.spec%.template%.back")
    local shared = { x = 1 }
    assert_eq(decode_ok(yaml.encode({ a = shared, b = shared })), { a = { x = 1 }, b = { x = 1 } })
  end)

  test("nesting deeper than 512 levels raises", function()
    local function nest(n)
      local root = {}
      local cur = root
      for _ = 1, n do
        cur[1] = {}
        cur = cur[1]
      end
      return root
    end
    assert_error(function() yaml.encode(nest(512)) end, "nesting deeper than 512 levels")
    local out = yaml.encode(nest(511))
    assert_eq(type(decode_ok(out)), "table")
  end)

  test("encode and encode_all write back whatever decode and decode_all read: 512 levels", function()
    local deep = string.rep("[", 512) .. string.rep("]", 512)
    local docs = yaml.decode_all(deep .. "\n---\n" .. deep)
    assert_eq(#docs, 2)
    assert_eq(yaml.decode_all(yaml.encode_all(docs)), docs)
    assert_eq(yaml.decode(yaml.encode(docs[1])), docs[1])
    -- one more level is refused on both sides, with the same message
    local deeper = string.rep("[", 513) .. string.rep("]", 513)
    assert_error(function() yaml.decode_all(deeper) end, "nesting deeper than 512 levels")
    docs[1] = { docs[1] }
    assert_error(function() yaml.encode_all(docs) end, "nesting deeper than 512 levels at %$%[1%]")
  end)

  test("bad arguments and options are misuse, raised at the caller's line", function()
    assert_misuse(function() yaml.encode({}, { sortkeys = true }) end, "yaml.encode: unknown option 'sortkeys' (did you mean 'sort_keys'?)")
    assert_misuse(function() yaml.encode({}, { sort_keys = 1 }) end, "yaml.encode: sort_keys must be a boolean, got number")
    assert_misuse(function() yaml.encode({}, { indent = 1 }) end, "yaml.encode: indent must be an integer from 2 to 9")
    assert_misuse(function() yaml.encode({}, "x") end, "yaml.encode: options must be a table, got string")
    assert_misuse(function() yaml.encode() end, "yaml.encode: expected a value, got no value")
    assert_misuse(function() yaml.encode_all("x") end, "yaml.encode_all: expected a list of documents, got string")
    assert_misuse(function() yaml.encode_all({}, { indent = 10 }) end, "yaml.encode_all: indent must be an integer from 2 to 9")
    assert_misuse(function() yaml.encode_all({ { a = 1 }, { b = print } }) end,
      "yaml.encode_all: cannot encode a function at $[2].b")
  end)
end)

describe("Kubernetes manifests", function()
  local fixtures = { "yaml/deployment.yaml", "yaml/configmap.yaml", "yaml/service.yaml", "yaml/kustomization.yaml" }

  test("the deployment decodes as Kubernetes expects", function()
    local d = decode_ok(read_fixture("yaml/deployment.yaml"))
    assert_eq(d.metadata.annotations["prometheus.io/scrape"], "true")
    assert_eq(d.metadata.annotations["prometheus.io/port"], "8080")
    assert_eq(d.metadata.labels["app.kubernetes.io/version"], "1.21")
    assert_eq(d.spec.replicas, 3)
    assert_eq(d.spec.strategy.rollingUpdate.maxSurge, "25%")
    assert_true(d.spec.template.metadata.creationTimestamp == yaml.null)
    local c = d.spec.template.spec.containers[1]
    assert_eq(c.env[2], { name = "FEATURE_CHECKOUT_V2", value = "on" })
    assert_eq(c.env[3].value, "0755")
    assert_eq(c.resources.limits.cpu, "1")
    assert_eq(c.livenessProbe.httpGet.port, 8080)
    assert_eq(c.livenessProbe.httpGet.httpHeaders[1].value, "yes")
    assert_eq(d.spec.template.spec.volumes[1].configMap.defaultMode, 420)
    assert_eq(d.spec.template.spec.tolerations, {})
    assert_eq(mt_name(d.spec.template.spec.tolerations), "relish.json.array")
  end)

  test("the config map keeps its literal blocks", function()
    local cm = decode_ok(read_fixture("yaml/configmap.yaml"))
    assert_eq(cm.data["config.yaml"],
      'server:\n  listen: ":8080"\n  timeout: 30s\nfeatures:\n  checkout_v2: true\n'
      .. "# a comment inside the value is text, not YAML\n")
    assert_eq(cm.data["nginx.conf"]:sub(-1), "}")
    assert_eq(cm.data["banner.txt"], "Welcome\n\n")
    assert_eq(cm.data.folded, "folded text joins lines\n")
    local out = yaml.encode(cm)
    assert_match(out, "\n  config%.yaml: |\n    server:\n")
  end)

  for _, rel in ipairs(fixtures) do
    test("yaml round trip of " .. rel, function()
      local v = decode_ok(read_fixture(rel))
      local again = decode_ok(yaml.encode(v))
      assert_eq(again, v)
      assert_eq(yaml.encode(again), yaml.encode(v), "encoding is stable")
    end)

    test("yaml -> json -> yaml round trip of " .. rel, function()
      local json = require "relish.json"
      local v = decode_ok(read_fixture(rel))
      local through = assert(json.decode(json.encode(v)))
      local again = decode_ok(yaml.encode(through))
      assert_eq(again, v)
      assert_eq(mt_name(again), "relish.json.object")
    end)
  end

  test("yaml -> json -> yaml round trip of a multi-document bundle", function()
    local json = require "relish.json"
    local docs = assert(yaml.decode_all(read_fixture("yaml/bundle.yaml")))
    local through = assert(json.decode(json.encode(docs)))
    assert_eq(assert(yaml.decode_all(yaml.encode_all(through))), docs)
  end)
end)
