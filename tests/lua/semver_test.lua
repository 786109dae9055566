-- relish.semver: parsing per Semantic Versioning 2.0.0, precedence (§11),
-- sorting, bumps and npm-style ranges.
local semver = require "relish.semver"
local try = require("relish._errors").try

describe("parse", function()
  test("a full version with pre-release and build metadata", function()
    local v = assert(semver.parse("1.2.3-rc.1+build.5.sha-9f2c"))
    assert_eq(v.major, 1)
    assert_eq(v.minor, 2)
    assert_eq(v.patch, 3)
    assert_eq(v.prerelease, { "rc", 1 })
    assert_eq(v.build, { "build", "5", "sha-9f2c" })
    assert_eq(tostring(v), "1.2.3-rc.1+build.5.sha-9f2c")
  end)

  test("a leading v is kept as the prefix, not in tostring", function()
    local v = assert(semver.parse("v2.0.0"))
    assert_eq(v.prefix, "v")
    assert_eq(tostring(v), "2.0.0")
    assert_eq(v:tag(), "v2.0.0")
    assert_eq(v:tag(""), "2.0.0")
    assert_eq("release " .. v, "release 2.0.0")
  end)

  test("valid versions from the specification", function()
    for _, s in ipairs { "0.0.4", "1.2.3", "10.20.30", "1.1.2-prerelease+meta", "1.1.2+meta",
      "1.1.2+meta-valid", "1.0.0-alpha", "1.0.0-beta", "1.0.0-alpha.beta", "1.0.0-alpha.beta.1",
      "1.0.0-alpha.1", "1.0.0-alpha0.valid", "1.0.0-alpha.0valid",
      "1.0.0-alpha-a.b-c-somethinglong+build.1-aef.1-its-okay", "1.0.0-rc.1+build.1",
      "2.0.0-rc.1+build.123", "1.2.3-beta", "10.2.3-DEV-SNAPSHOT", "1.2.3-SNAPSHOT-123",
      "2.0.0+build.1848", "2.0.1-alpha.1227", "1.0.0-alpha+beta", "1.2.3----RC-SNAPSHOT.12.9.1--.12+788",
      "1.2.3----R-S.12.9.1--.12+meta", "1.0.0+0.build.1-rc.10000aaa-kk-0.1", "1.0.0-0A.is.legal",
      "99999999999999999999999.999999999.99999999" } do
      if s:match("^9999") then
        assert_raises(function() semver.parse(s) end, "invalid", "too large", s)
      else
        assert_eq(tostring(semver.parse(s)), s)
      end
    end
  end)

  test("invalid versions are refused with a reason", function()
    local cases = {
      ["1"] = "not a semantic version", ["1.2"] = "not a semantic version",
      ["1.2.3-0123"] = "leading zero", ["1.2.3-0123.0123"] = "leading zero",
      ["1.1.2+.123"] = "empty identifier", ["+invalid"] = "not a semantic version",
      ["-invalid"] = "not a semantic version", ["alpha"] = "not a semantic version",
      ["1.2.3.DEV"] = "unexpected", ["1.2-SNAPSHOT"] = "not a semantic version",
      ["1.2.31.2.3----RC-SNAPSHOT.12.09.1--..12+788"] = "unexpected",
      ["01.1.1"] = "leading zero", ["1.01.1"] = "leading zero", ["1.1.01"] = "leading zero",
      ["1.2.3-"] = "empty pre%-release", ["1.2.3+"] = "empty build",
      ["1.2.3-a..b"] = "empty identifier", ["1.2.3-a_b"] = "may only hold",
      [" 1.2.3"] = "not a semantic version", ["1.2.3 "] = "unexpected", [""] = "not a semantic version",
      ["vv1.2.3"] = "not a semantic version",
    }
    for s, why in pairs(cases) do
      local err = assert_raises(function() semver.parse(s) end, "invalid", why, s)
      assert_eq(err.message:sub(1, 14), "semver.parse: ", s)
      assert_false(semver.valid(s), s)
    end
    assert_false(semver.valid("1.2"))
    assert_true(semver.valid("v1.2.0"))
    assert_true(semver.valid(semver.parse("1.2.0")))
  end)

  test("try(semver.parse, s) returns nil and the error value for text that is not a version", function()
    local v, err = try(semver.parse, "1.2")
    assert_nil(v)
    assert_eq(err.kind, "invalid")
    assert_eq(err.message, 'semver.parse: "1.2" is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.4.2)')
    assert_eq(tostring(err), err.message)
    assert_eq(tostring(try(semver.parse, "v1.2.3")), "1.2.3")
  end)

  test("a value that is not text is misuse, raised at the caller's line", function()
    assert_misuse(function() semver.parse(12) end, "semver.parse: expected a string, got number")
    assert_misuse(function() semver.parse() end, "semver.parse: expected a string, got nil")
    assert_misuse(function() semver.valid(12) end, "semver.valid: expected a string, got number")
    assert_eq(assert_error(function() try(semver.parse, {}) end), "semver.parse: expected a string, got table")
  end)
end)

describe("precedence", function()
  test("the chain of the specification's §11", function()
    local chain = { "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
      "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "2.0.0", "2.1.0", "2.1.1" }
    for i = 1, #chain do
      for j = 1, #chain do
        local want = i < j and -1 or (i > j and 1 or 0)
        assert_eq(semver.compare(chain[i], chain[j]), want, chain[i] .. " vs " .. chain[j])
      end
    end
  end)

  test("numeric identifiers compare as numbers and before alphanumeric ones", function()
    assert_eq(semver.compare("1.0.0-2", "1.0.0-10"), -1)
    assert_eq(semver.compare("1.0.0-rc.2", "1.0.0-rc.10"), -1)
    assert_eq(semver.compare("1.0.0-rc.10", "1.0.0-rc.a"), -1)
    assert_eq(semver.compare("1.0.0-1", "1.0.0-A"), -1)
    assert_eq(semver.compare("1.0.0-B", "1.0.0-a"), -1, "ASCII order")
    assert_eq(semver.compare("1.0.0-99999999999999999999", "1.0.0-100000000000000000000"), -1)
    assert_eq(semver.compare("1.0.0-99999999999999999999", "1.0.0-5"), 1)
    assert_eq(semver.compare("10.0.0", "9.99.99"), 1)
  end)

  test("build metadata is ignored; the prefix too", function()
    assert_eq(semver.compare("1.0.0+a", "1.0.0+b"), 0)
    assert_eq(semver.compare("v1.0.0", "1.0.0+x"), 0)
    assert_true(semver.parse("1.0.0+a") == semver.parse("1.0.0+zzz"))
  end)

  test("operators on versions", function()
    local a, b = semver.parse("1.2.3"), semver.parse("1.10.0")
    assert_true(a < b)
    assert_true(a <= b)
    assert_false(b < a)
    assert_true(a < "1.2.4")
    assert_true(semver.parse("1.0.0-rc.1") < semver.parse("1.0.0"))
  end)

  test("comparing text that is not a version raises an error value naming it; other types are misuse", function()
    local e = assert_raises(function() semver.compare("1.2", "1.2.0") end, "invalid")
    assert_eq(e.message, 'semver.compare: "1.2" is not a semantic version (MAJOR.MINOR.PATCH, e.g. 1.4.2)')
    assert_raises(function() return semver.parse("1.0.0") < "nope" end, "invalid", '^semver <: "nope"')
    assert_raises(function() return "1.0" <= semver.parse("1.0.0") end, "invalid", '^semver <=: "1%.0"')
    assert_misuse(function() semver.compare(1, "1.0.0") end, "semver.compare: expected a version or a string, got number")
    assert_misuse(function() semver.compare("1.2", {}) end, "semver.compare: b must be a version or a string, got table")
    assert_misuse(function() semver.compare(1, {}) end, "semver.compare: expected a version or a string, got number")
    assert_misuse(function() return semver.parse("1.0.0") < {} end, "semver <: b must be a version or a string, got table")
  end)
end)

describe("sort and max", function()
  test("sorts by precedence, leaving out what is not a version", function()
    local sorted = semver.sort { "v1.10.0", "latest", "v1.2.0", "1.2.0-rc.1", "v1.9.9", "0.9.0", "nightly" }
    assert_eq(sorted, { "0.9.0", "1.2.0-rc.1", "v1.2.0", "v1.9.9", "v1.10.0" })
    assert_eq(semver.sort({ "1.0.0", "2.0.0", "1.5.0" }, { descending = true }), { "2.0.0", "1.5.0", "1.0.0" })
  end)

  test("ties on build metadata are broken by text, so the order is stable", function()
    assert_eq(semver.sort { "1.0.0+b", "1.0.0+a", "1.0.0+c" }, { "1.0.0+a", "1.0.0+b", "1.0.0+c" })
  end)

  test("sorts records by a key, like git tags", function()
    local tags = { { name = "v0.2.0", target = "b" }, { name = "v0.10.0", target = "c" },
      { name = "release-candidate", target = "d" }, { name = "v0.9.0", target = "a" } }
    local sorted = semver.sort(tags, { key = "name" })
    assert_eq(#sorted, 3)
    assert_eq(sorted[1].target, "b")
    assert_eq(sorted[3].name, "v0.10.0")
    assert_eq(semver.sort(tags, { key = function(t) return t.name end })[2].name, "v0.9.0")
  end)

  test("max skips pre-releases unless asked", function()
    local list = { "v1.0.0", "v1.1.0-rc.1", "v0.9.0" }
    assert_eq(semver.max(list), "v1.0.0")
    assert_eq(semver.max(list, { prerelease = true }), "v1.1.0-rc.1")
    assert_nil(semver.max { "latest" })
    assert_nil(semver.max {})
  end)

  test("misuse raises at the caller's line", function()
    assert_misuse(function() semver.sort("1.0.0") end, "semver.sort: expected a list, got string")
    assert_misuse(function() semver.sort({}, { key = 3 }) end, "semver.sort: key must be a field name or a function, got number")
    assert_misuse(function() semver.sort({}, { decending = true }) end, "semver.sort: unknown option 'decending' (did you mean 'descending'?)")
    assert_misuse(function() semver.sort({}, "name") end, "semver.sort: options must be a table, got string")
    assert_misuse(function() semver.max(nil) end, "semver.max: expected a list, got nil")
    assert_misuse(function() semver.max({}, { pre = true }) end, "semver.max: unknown option 'pre' (did you mean 'prerelease'?)")
    assert_misuse(function() semver.max({}, { zzz = true }) end, "semver.max: unknown option 'zzz'")
    assert_misuse(function() semver.max({}, { true }) end, "semver.max: unknown option 1")
  end)
end)

describe("bump", function()
  test("major, minor, patch reset what follows and drop build metadata", function()
    assert_eq(tostring(semver.bump("1.2.3", "major")), "2.0.0")
    assert_eq(tostring(semver.bump("1.2.3", "minor")), "1.3.0")
    assert_eq(tostring(semver.bump("1.2.3+b.7", "patch")), "1.2.4")
    assert_eq(tostring(semver.bump("0.9.9", "minor")), "0.10.0")
  end)

  test("a pre-release bumps to the release it leads to", function()
    assert_eq(tostring(semver.bump("2.0.0-rc.2", "major")), "2.0.0")
    assert_eq(tostring(semver.bump("2.1.0-rc.2", "major")), "3.0.0")
    assert_eq(tostring(semver.bump("1.3.0-rc.2", "minor")), "1.3.0")
    assert_eq(tostring(semver.bump("1.3.1-rc.2", "minor")), "1.4.0")
    assert_eq(tostring(semver.bump("1.3.1-rc.2", "patch")), "1.3.1")
    assert_eq(tostring(semver.bump("1.3.1-rc.2", "release")), "1.3.1")
  end)

  test("prerelease counts up, or starts the next patch's first pre-release", function()
    assert_eq(tostring(semver.bump("1.2.3", "prerelease")), "1.2.4-1")
    assert_eq(tostring(semver.bump("1.2.3", "prerelease", { pre = "rc" })), "1.2.4-rc.1")
    assert_eq(tostring(semver.bump("1.2.4-rc.1", "prerelease", { pre = "rc" })), "1.2.4-rc.2")
    assert_eq(tostring(semver.bump("1.2.4-rc.9", "prerelease")), "1.2.4-rc.10")
    assert_eq(tostring(semver.bump("1.2.4-alpha", "prerelease")), "1.2.4-alpha.1")
    assert_eq(tostring(semver.bump("1.2.4-alpha.3", "prerelease", { pre = "beta" })), "1.2.4-beta.1")
  end)

  test("the prefix survives, the input is not changed", function()
    local v = semver.parse("v1.2.3")
    local n = semver.bump(v, "minor")
    assert_eq(n:tag(), "v1.3.0")
    assert_eq(tostring(v), "1.2.3")
  end)

  test("text that is not a version raises an error value; misuse raises at the caller's line", function()
    assert_raises(function() semver.bump("1.2", "patch") end, "invalid", '^semver%.bump: "1%.2" is not')
    assert_misuse(function() semver.bump("1.2.3", "huge") end,
      'semver.bump: part must be major, minor, patch, prerelease or release, got "huge"')
    assert_misuse(function() semver.bump("1.2.3") end,
      "semver.bump: part must be major, minor, patch, prerelease or release, got nil")
    assert_misuse(function() semver.bump("1.2.3", "prerelease", { pre = "r c" }) end,
      'semver.bump: pre must be an identifier like "rc"')
    assert_misuse(function() semver.bump("1.2.3", "patch", { per = "rc" }) end, "semver.bump: unknown option 'per' (did you mean 'pre'?)")
    assert_misuse(function() semver.bump(123, "patch") end, "semver.bump: expected a version or a string, got number")
  end)
end)

describe("ranges", function()
  local function check(range, yes, no, opts)
    for _, v in ipairs(yes) do assert_true(semver.satisfies(v, range, opts), v .. " in " .. range) end
    for _, v in ipairs(no) do assert_false(semver.satisfies(v, range, opts), v .. " not in " .. range) end
  end

  test("caret: compatible within the leftmost non-zero part", function()
    check("^1.2.3", { "1.2.3", "1.2.4", "1.9.0", "1.99.99" }, { "1.2.2", "2.0.0", "2.0.0-rc.1", "1.3.0-beta.1" })
    check("^1.2", { "1.2.0", "1.99.0" }, { "1.1.9", "2.0.0" })
    check("^1", { "1.0.0", "1.5.5" }, { "0.9.0", "2.0.0" })
    check("^0.2.3", { "0.2.3", "0.2.9" }, { "0.3.0", "0.2.2" })
    check("^0.0.3", { "0.0.3" }, { "0.0.4", "0.0.2" })
    check("^0.0", { "0.0.0", "0.0.9" }, { "0.1.0" })
    check("^1.x", { "1.0.0", "1.8.0" }, { "2.0.0" })
    check("^0.x", { "0.0.1", "0.9.0" }, { "1.0.0" })
  end)

  test("tilde: patch-level changes", function()
    check("~1.2.3", { "1.2.3", "1.2.99" }, { "1.3.0", "1.2.2" })
    check("~1.2", { "1.2.0", "1.2.7" }, { "1.3.0", "1.1.9" })
    check("~1", { "1.0.0", "1.9.0" }, { "2.0.0" })
    check("~0.2.3", { "0.2.3", "0.2.4" }, { "0.3.0" })
    check("~>1.2", { "1.2.5" }, { "1.3.0" })
  end)

  test("comparators together must all hold", function()
    check(">=1.0 <2.0", { "1.0.0", "1.5.0", "1.99.99" }, { "0.9.9", "2.0.0", "2.0.0-alpha" })
    check(">=1.0.0, <1.5.0", { "1.4.9" }, { "1.5.0" })
    check(">= 1.2.0 < 1.3", { "1.2.5" }, { "1.3.0" })
    check(">1.2.3", { "1.2.4" }, { "1.2.3" })
    check(">1.2", { "1.3.0" }, { "1.2.9", "1.3.0-rc.1" })
    check("<=1.2", { "1.2.9", "0.1.0" }, { "1.3.0" })
    check("<1.2", { "1.1.9" }, { "1.2.0", "1.2.0-rc.1" })
    check("<=1.2.3", { "1.2.3" }, { "1.2.4" })
    check("=1.2.3", { "1.2.3", "1.2.3+build" }, { "1.2.4" })
    check("1.2.3", { "1.2.3" }, { "1.2.4" })
  end)

  test("x-ranges and partial versions", function()
    check("1.x", { "1.0.0", "1.9.9" }, { "2.0.0", "0.9.0" })
    check("1.2.x", { "1.2.0", "1.2.9" }, { "1.3.0" })
    check("1.2.*", { "1.2.5" }, { "1.3.0" })
    check("1", { "1.4.0" }, { "2.0.0" })
    check("*", { "0.0.0", "9.9.9" }, { "1.0.0-rc.1" })
    check("", { "1.0.0" }, {})
    check("x", { "3.0.0" }, {})
  end)

  test("alternatives with ||", function()
    check("^1.2 || ^2.1 || 4.x", { "1.2.0", "2.1.5", "4.0.0" }, { "2.0.0", "3.0.0", "5.0.0" })
    check("<1.0.0 || >=3", { "0.5.0", "3.0.0" }, { "1.0.0", "2.9.9" })
  end)

  test("hyphen ranges", function()
    check("1.2.3 - 2.3.4", { "1.2.3", "2.3.4" }, { "2.3.5", "1.2.2" })
    check("1.2 - 2.3", { "1.2.0", "2.3.9" }, { "2.4.0" })
  end)

  test("pre-releases satisfy a range only when it names one of the same release", function()
    check("^1.2.3-beta.2", { "1.2.3-beta.2", "1.2.3-beta.10", "1.2.3-rc.1", "1.2.3", "1.5.0" },
      { "1.2.3-beta.1", "1.2.4-rc.1", "1.3.0-beta.1" })
    check(">=1.0.0-rc.1 <2.0.0", { "1.0.0-rc.2", "1.0.0" }, { "1.1.0-rc.1", "1.0.0-beta" })
    check("^1.0.0", { "1.1.0-rc.1" }, { "2.0.0-rc.1" }, { prerelease = true })
  end)

  test("range objects test many versions; they print normalized", function()
    local r = assert(semver.range("^1.2 || ~0.5"))
    assert_true(r:test("1.4.0"))
    assert_false(r:test("0.6.0"))
    assert_eq(tostring(r), ">=1.2.0 <2.0.0-0 || >=0.5.0 <0.6.0-0")
  end)

  test("max_satisfying picks the highest match", function()
    local tags = { "v1.2.0", "v1.4.1", "v2.0.0", "v1.5.0-rc.1", "junk" }
    assert_eq(semver.max_satisfying(tags, "^1.2"), "v1.4.1")
    assert_eq(semver.max_satisfying(tags, "^1.2", { prerelease = true }), "v1.5.0-rc.1")
    assert_nil(semver.max_satisfying(tags, "^3"))
    local recs = { { name = "v1.0.0" }, { name = "v1.1.0" } }
    assert_eq(semver.max_satisfying(recs, "~1.0", { key = "name" }).name, "v1.0.0")
  end)

  test("a malformed range or version raises an error value (try returns it)", function()
    for _, bad in ipairs { "^1.2.3.4", ">=x.1", "1.x.3", "^", "1.2.x-rc.1", "=>1.0", "abc" } do
      assert_raises(function() semver.range(bad) end, "invalid", "^semver%.range: range ", bad)
      local r, err = try(semver.range, bad)
      assert_nil(r, bad)
      assert_eq(err.kind, "invalid", bad)
    end
    assert_raises(function() semver.satisfies("1.0.0", "^1.2.3.4") end, "invalid", '^semver%.satisfies: range "%^1%.2%.3%.4"')
    assert_raises(function() semver.satisfies("1.0", "^1") end, "invalid", '^semver%.satisfies: "1%.0" is not')
    assert_raises(function() semver.range("^1"):test("x") end, "invalid", '^range:test: "x" is not')
    assert_raises(function() semver.max_satisfying({ "1.0.0" }, "^1.x.3") end, "invalid", "^semver%.max_satisfying: range")
  end)

  test("ranges: misuse raises at the caller's line", function()
    assert_misuse(function() semver.range(5) end, "semver.range: expected a range or a string, got number")
    assert_misuse(function() semver.satisfies("1.0.0", 1) end, "semver.satisfies: range must be a range or a string, got number")
    -- the types of both arguments are checked before either text is read
    assert_misuse(function() semver.satisfies("x", 1) end, "semver.satisfies: range must be a range or a string, got number")
    assert_misuse(function() semver.satisfies("1.0.0", "^1", { prerelase = true }) end,
      "semver.satisfies: unknown option 'prerelase' (did you mean 'prerelease'?)")
    assert_misuse(function() semver.range("^1"):test(1) end, "range:test: expected a version or a string, got number")
    assert_misuse(function() semver.range("^1").test("1.0.0") end, "range:test: call it as range:test(v), with a colon")
    assert_misuse(function() semver.max_satisfying("v1", "^1") end, "semver.max_satisfying: expected a list, got string")
  end)
end)
