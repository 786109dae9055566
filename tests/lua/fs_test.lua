-- relish.fs: reads, the six effects through the gate (described, fingerprinted,
-- planned in a dry-run), their undo (byte-identical, idempotent, correct when
-- the action never happened), the undo cap, errors and secrets.
local fs = require "relish.fs"
local effect = require "relish.effect"
local gate = require "relish._gate"
local try = require("relish._errors").try
local secret = require "relish.secret"
local sh = require "relish.sh"

local function mode(s) return tonumber(s, 8) end

local support = require "support"
local put, get = support.write, support.read

local function run(...)
  local r = assert(sh.run { argv = { ... } })
  assert(r.code == 0, r.stderr)
  return r.stdout
end

-- The tree under dir as find(1) sees it, independent of relish.fs:
-- { ["rel"] = "file 644 <bytes>" | "dir 755" | "link <target>" | "fifo 644" }.
local function snapshot(dir)
  local out = {}
  local listing = run("find", dir, "-mindepth", "1", "-printf", "%P\\0%y\\0%m\\0%l\\0")
  for rel, y, m, l in listing:gmatch("(%Z*)%z(%Z*)%z(%Z*)%z(%Z*)%z") do
    if y == "f" then
      out[rel] = "file " .. m .. " " .. get(dir .. "/" .. rel)
    elseif y == "d" then
      out[rel] = "dir " .. m
    elseif y == "l" then
      out[rel] = "link " .. l
    else
      out[rel] = (y == "p" and "fifo " or y .. " ") .. m
    end
  end
  return out
end

-- Runs fn under a capturing gate: the effects, then fn's results.
local function capture(fn, dry)
  return gate.capture(fn, { dry_run = dry or false })
end

-- Applies fn (one effect), then checks that undo restores the tree as it was,
-- and that a second undo changes nothing.
local function undo_roundtrip(dir, fn, changed)
  local before = snapshot(dir)
  local effects, ok, err = capture(fn)
  assert_true(ok, tostring(err))
  assert_eq(#effects, 1)
  local e = effects[1]
  assert_eq(e.status, "done")
  if changed then changed(e) end
  assert_ne(snapshot(dir), before, "the effect changed nothing")
  assert_true(effect.undo(e.kind, e.undo))
  assert_eq(snapshot(dir), before)
  assert_true(effect.undo(e.kind, e.undo))
  assert_eq(snapshot(dir), before)
  return e
end

-- The undo record of fn as planned in a dry-run: the action never happened.
local function planned_record(dir, fn)
  local before = snapshot(dir)
  local effects, r = capture(fn, true)
  assert_true(r)
  assert_eq(#effects, 1)
  assert_eq(effects[1].status, "planned")
  assert_eq(snapshot(dir), before, "a dry-run must not touch the world")
  return effects[1]
end

-- " ino:DEV:INO" of what is at path, as live fingerprints end
local function ino(path)
  return " ino:" .. run("stat", "-c", "%d:%i", path):gsub("%s+$", "")
end

local function temp_names(dir)
  local t = {}
  for _, name in ipairs(assert(fs.list(dir))) do
    if name:find("%.relish%-") then t[#t + 1] = name end
  end
  return t
end

describe("sha256", function()
  test("FIPS 180-4 vectors, strings and files", function()
    assert_eq(fs.sha256(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert_eq(fs.sha256("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    assert_eq(fs.sha256("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
      "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    local d = tmpdir()
    put(d .. "/empty", "")
    put(d .. "/abc", "abc")
    assert_eq(fs.hash(d .. "/empty"), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    assert_eq(fs.hash(d .. "/abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
  end)

  test("hash streams a large file and agrees with sha256sum", function()
    local d = tmpdir()
    put(d .. "/big", string.rep("0123456789abcdef", 300000) .. "tail")
    assert_eq(fs.hash(d .. "/big"), run("sha256sum", d .. "/big"):sub(1, 64))
  end)

  test("hash of a missing file or a directory raises", function()
    local d = tmpdir()
    local h, err = try(fs.hash, d .. "/nope")
    assert_nil(h)
    assert_eq(err.kind, "not_found")
    h, err = try(fs.hash, d)
    assert_nil(h)
    assert_match(err.message, "Is a directory")
  end)
end)

describe("what is not a regular file", function()
  -- a fifo with no writer blocks an ordinary open or read until a signal:
  -- each reader refuses it at once instead. Run in a child process, so a
  -- reader that blocks fails the test by its timeout instead of hanging it.
  test("fs.read, fs.hash, fs.copy and secret.file refuse a fifo or a device at once", function()
    local d = tmpdir()
    run("mkfifo", d .. "/fifo")
    put(d .. "/probe.lua", [[
local fs, secret = require "relish.fs", require "relish.secret"
local try = require("relish._errors").try
local d = ...
for _, c in ipairs {
  { "read", fs.read, d .. "/fifo" }, { "hash", fs.hash, d .. "/fifo" }, { "read", fs.read, "/dev/zero" },
  { "copy", fs.copy, d .. "/fifo", d .. "/copy" }, { "secret", secret.file, d .. "/fifo" },
} do
  local v, err = try(c[2], c[3], c[4])
  print(c[1], v == nil and err.kind or "value", v == nil and err.message or "")
end
]])
    local r = sh.run { argv = { relish_exe(), "lua", d .. "/probe.lua", d }, timeout = 30, check = false }
    assert_false(r.timed_out, "a reader blocked on the fifo")
    assert_eq(r.code, 0, r.stderr)
    local q = d:gsub("%p", "%%%0")
    assert_match(r.stdout, "read\tio\tfs%.read " .. q .. "/fifo: not a regular file %(a fifo%)")
    assert_match(r.stdout, "hash\tio\tfs%.hash " .. q .. "/fifo: not a regular file %(a fifo%)")
    assert_match(r.stdout, "read\tio\tfs%.read /dev/zero: not a regular file %(a device%)")
    assert_match(r.stdout, "copy\tio\tfs%.copy " .. q .. "/fifo: not a regular file")
    assert_match(r.stdout, "secret\tnot_found\tsecret: cannot read " .. q .. "/fifo: not a regular file %(a fifo%)")
    assert_nil(get(d .. "/copy"), "nothing copied")
  end)
end)

describe("reads", function()
  test("read returns the bytes, NULs included", function()
    local d = tmpdir()
    put(d .. "/b", "a\0b\255\n")
    assert_eq(fs.read(d .. "/b"), "a\0b\255\n")
    put(d .. "/e", "")
    assert_eq(fs.read(d .. "/e"), "")
  end)

  test("read failures raise structured errors naming the path", function()
    local d = tmpdir()
    local _, raised = assert_error(function() fs.read(d .. "/missing") end)
    assert_eq(getmetatable(raised).__name, "relish.Error")
    local v, err = try(fs.read, d .. "/missing")
    assert_eq(err, raised)
    assert_nil(v)
    assert_eq(err.kind, "not_found")
    assert_eq(err.path, d .. "/missing")
    assert_eq(err.message, "fs.read " .. d .. "/missing: No such file or directory")
    assert_eq(tostring(err), err.message)
    v, err = try(fs.read, d)
    assert_nil(v)
    assert_eq(err.kind, "io")
  end)

  test("exists sees files, directories and dangling links", function()
    local d = tmpdir()
    put(d .. "/f", "x")
    run("ln", "-s", d .. "/nowhere", d .. "/dangling")
    assert_true(fs.exists(d .. "/f"))
    assert_true(fs.exists(d))
    assert_true(fs.exists(d .. "/dangling"))
    assert_false(fs.exists(d .. "/missing"))
    assert_false(fs.exists(d .. "/f/under-a-file"))
  end)

  test("stat describes files, directories and links without following", function()
    local d = tmpdir()
    put(d .. "/f", "hello", mode "640")
    run("mkdir", "-m", "750", d .. "/sub")
    run("ln", "-s", "f", d .. "/l")
    local s = fs.stat(d .. "/f")
    assert_eq({ s.type, s.mode, s.size }, { "file", mode "640", 5 })
    assert_eq(math.type(s.mtime), "integer")
    assert_true(math.abs(s.mtime - os.time()) < 60)
    assert_eq({ fs.stat(d .. "/sub").type, fs.stat(d .. "/sub").mode }, { "dir", mode "750" })
    local l = fs.stat(d .. "/l")
    assert_eq({ l.type, l.target }, { "link", "f" })
    local v, err = try(fs.stat, d .. "/missing")
    assert_nil(v)
    assert_eq(err.kind, "not_found")
    assert_error(function() fs.stat(d .. "/missing") end, "^fs%.stat .*: No such file or directory$")
  end)

  test("list gives sorted names without . and ..", function()
    local d = tmpdir()
    for _, n in ipairs { "b", "a", "C", "a.txt", ".hidden" } do put(d .. "/" .. n, "") end
    run("mkdir", d .. "/dir")
    assert_eq(fs.list(d), { ".hidden", "C", "a", "a.txt", "b", "dir" })
    assert_eq(fs.list(d .. "/dir"), {})
    local v, err = try(fs.list, d .. "/missing")
    assert_nil(v)
    assert_eq(err.kind, "not_found")
  end)

  test("reads are never gated, even in a dry-run", function()
    local d = tmpdir()
    put(d .. "/f", "x")
    local effects = capture(function()
      return fs.read(d .. "/f"), fs.exists(d .. "/f"), fs.stat(d), fs.list(d), fs.hash(d .. "/f")
    end, true)
    assert_eq(#effects, 0)
  end)
end)

describe("misuse raises", function()
  test("wrong argument types and unknown options", function()
    local d = tmpdir()
    assert_error(function() fs.read(nil) end, "^[^\n]*fs_test%.lua:%d+: fs%.read: expected a string, got nil$")
    assert_error(function() fs.read(5) end, "fs%.read: expected a string, got number")
    assert_error(function() fs.read("") end, "non%-empty")
    assert_error(function() fs.write(d .. "/x", 42) end, "fs%.write: expected content as a string or secret, got number")
    assert_error(function() fs.write(d .. "/x", "x", { mdoe = 420 }) end, "unknown option 'mdoe' %(did you mean 'mode'%?%)")
    assert_error(function() fs.write(d .. "/x", "x", "0644") end, "options must be a table")
    assert_error(function() fs.write(d .. "/x", "x", { mode = "rw-r--r--" }) end, "octal string")
    assert_error(function() fs.chmod(d, "0999") end, "mode must be")
    assert_error(function() fs.chmod(d, 0x10000) end, "mode must be")
    assert_error(function() fs.chmod(d, 1.5) end, "mode must be")
    assert_error(function() fs.chmod(d) end, "mode expected")
    assert_error(function() fs.mkdir(d .. "/x", { parent = true }) end, "unknown option 'parent' %(did you mean 'parents'%?%)")
    assert_error(function() fs.remove(d .. "/x", { max_undo = -1 }) end, "max_undo")
    assert_error(function() fs.symlink("", d .. "/x") end, "target must be")
    assert_error(function() fs.remove("/", { recursive = true }) end, "refusing to remove /")
    assert_error(function() fs.remove(d .. "/../../../../../../../..", { recursive = true }) end, "refusing")
    assert_error(function() effect.undo("fs.bogus", { path = "/x" }) end, "no undo is registered for effect kind 'fs.bogus'")
    assert_error(function() effect.undo("fs.write", { before = { type = "absent" } }) end, "malformed")
    assert_false(fs.exists(d .. "/x"))
  end)

  test("the six effects are kinds registered by relish.fs", function()
    for _, kind in ipairs { "fs.write", "fs.copy", "fs.mkdir", "fs.remove", "fs.symlink", "fs.chmod" } do
      assert_eq(gate.registered(kind), "relish.fs", kind)
    end
    assert_nil(fs.undo, "undo is reached through relish.effect")
  end)

  test("modes are integers or octal strings", function()
    local d = tmpdir()
    assert_true(fs.write(d .. "/a", "", { mode = 0x1ed }))
    assert_true(fs.write(d .. "/b", "", { mode = "0750" }))
    assert_true(fs.write(d .. "/c", "", { mode = "600" }))
    assert_true(fs.write(d .. "/e", "", { mode = tonumber("04755", 8) }))
    assert_eq(snapshot(d), { a = "file 755 ", b = "file 750 ", c = "file 600 ", e = "file 4755 " })
  end)
end)

describe("write", function()
  test("a new file: mode 0644 whatever the umask, described and fingerprinted", function()
    local d = tmpdir()
    local effects, ok = capture(function() return fs.write(d .. "/new.txt", "hello\n") end)
    assert_true(ok)
    assert_eq(snapshot(d), { ["new.txt"] = "file 644 hello\n" })
    local e = effects[1]
    assert_eq(e.kind, "fs.write")
    assert_eq(e.target, d .. "/new.txt")
    assert_eq(e.describe, "write " .. d .. "/new.txt (6 B, mode 0644, new file)")
    assert_eq(e.fingerprint, "absent")
    assert_eq(e.status, "done")
    assert_eq(e.undo.before, { type = "absent" })
    assert_eq(e.undo.path, d .. "/new.txt")
    assert_eq(e.detail, "--- /dev/null\n+++ " .. d .. "/new.txt\n@@ -0,0 +1 @@\n+hello\n")
  end)

  test("an existing file keeps its mode unless one is given", function()
    local d = tmpdir()
    put(d .. "/f", "old", mode "600")
    assert_true(fs.write(d .. "/f", "new"))
    assert_eq(snapshot(d), { f = "file 600 new" })
    local effects = capture(function() return fs.write(d .. "/f", "newer", { mode = "0640" }) end)
    assert_eq(snapshot(d), { f = "file 640 newer" })
    assert_eq(effects[1].describe, "write " .. d .. "/f (5 B, mode 0600 → 0640)")
    assert_match(effects[1].fingerprint, "^file:" .. fs.sha256("new") .. ":0600 ino:%d+:%d+$")
  end)

  test("the detail is a unified diff of old and new text", function()
    local d = tmpdir()
    put(d .. "/config.yml", "name: api\nreplicas: 2\nimage: api:v1\nport: 80\n")
    local effects = capture(function()
      return fs.write(d .. "/config.yml", "name: api\nreplicas: 3\nimage: api:v2\nport: 80\n")
    end)
    assert_eq(effects[1].detail, table.concat({
      "--- " .. d .. "/config.yml",
      "+++ " .. d .. "/config.yml",
      "@@ -1,4 +1,4 @@",
      " name: api",
      "-replicas: 2",
      "-image: api:v1",
      "+replicas: 3",
      "+image: api:v2",
      " port: 80",
      "",
    }, "\n"))
  end)

  test("binary content with NUL bytes: written exactly, summarised, undone exactly", function()
    local d = tmpdir()
    local old = "\0\1\2old\255\0"
    put(d .. "/blob", old, mode "640")
    local bin = string.rep("\0\255\1binary", 200)
    local e = undo_roundtrip(d, function() return fs.write(d .. "/blob", bin) end, function(e)
      assert_eq(get(d .. "/blob"), bin)
      assert_match(e.detail, "^binary or large content: 1%.8 kB, sha256 %x+… %(was 8 B, sha256 %x+…%)$")
      assert_nil(e.undo.before.content)
      assert_eq(e.undo.before.content_b64, "AAECb2xk/wA=")
    end)
    assert_eq(e.undo.before.sha256, fs.sha256(old))
  end)

  test("non-UTF-8 pre-images of every size round-trip through base64 (the record's buffer)", function()
    -- sizes around the Lua buffer's first box (LUAL_BUFFERSIZE): the base64
    -- text is built in a luaL_Buffer that must own the stack top throughout
    local d = tmpdir()
    local json = require "relish.json"
    for _, n in ipairs { 1, 2, 3, 700, 767, 768, 769, 1024, 4096, 100000 } do
      local old = string.rep("\255\0\1", n // 3 + 1):sub(1, n)
      put(d .. "/blob", old, mode "600")
      local effects = capture(function() return fs.write(d .. "/blob", "new") end)
      local rec = effects[1].undo
      assert_eq(#rec.before.content_b64, (n + 2) // 3 * 4, n)
      assert_true(effect.undo("fs.write", json.decode(json.encode(rec))))
      assert_eq(get(d .. "/blob"), old, n)
    end
    -- names and link targets that are not UTF-8, inside a removed tree
    run("mkdir", d .. "/t")
    local odd = "n\255" .. string.rep("\254", 200)
    put(d .. "/t/" .. odd, string.rep("\0", 2000))
    run("ln", "-s", string.rep("\253", 300), d .. "/t/link")
    local before = snapshot(d)
    local effects = capture(function() return fs.remove(d .. "/t", { recursive = true }) end)
    local rec = effects[1].undo
    local link, file = rec.before.entries[1], rec.before.entries[2]
    assert_eq({ link.name, link.target, file.name, file.content }, { "link" })
    assert_eq({ #link.target_b64, #file.name_b64, #file.content_b64 }, { 400, 272, 2668 })
    assert_true(effect.undo("fs.remove", json.decode(json.encode(rec))))
    assert_eq(snapshot(d), before)
  end)

  test("large text is summarised instead of diffed", function()
    local d = tmpdir()
    local big = string.rep("line\n", 60000)
    local effects = capture(function() return fs.write(d .. "/big", big) end)
    assert_match(effects[1].detail, "^binary or large content: 300%.0 kB, sha256 " .. fs.sha256(big):sub(1, 16) .. "… %(new file%)$")
  end)

  test("the same content and mode again is not an effect", function()
    local d = tmpdir()
    put(d .. "/f", "same", mode "644")
    local effects, ok = capture(function() return fs.write(d .. "/f", "same") end)
    assert_true(ok)
    assert_eq(#effects, 0)
    effects = capture(function() return fs.write(d .. "/f", "same", { mode = "0600" }) end)
    assert_eq(#effects, 1)
    assert_nil(effects[1].detail, "only the mode changed")
  end)

  test("atomic: a new inode renamed into place, no temporary left behind", function()
    local d = tmpdir()
    put(d .. "/f", "v1")
    local ino = run("stat", "-c", "%i", d .. "/f")
    -- a reader holding the old file still sees the old content
    local held = assert(io.open(d .. "/f", "rb"))
    assert_true(fs.write(d .. "/f", "v2"))
    assert_eq(held:read("a"), "v1")
    held:close()
    assert_ne(run("stat", "-c", "%i", d .. "/f"), ino)
    assert_eq(get(d .. "/f"), "v2")
    assert_eq(temp_names(d), {})
    -- failures before acting leave nothing either
    assert_error(function() fs.write(d .. "/f/x", "nope") end, "Not a directory")
    assert_error(function() fs.write(d, "nope") end, "Is a directory")
    assert_eq(temp_names(d), {})
  end)

  test("through a symlink: the target file changes, the link stays", function()
    local d = tmpdir()
    run("mkdir", d .. "/releases", d .. "/releases/v1")
    put(d .. "/releases/v1/app.conf", "v1\n", mode "640")
    run("ln", "-s", "releases/v1", d .. "/current")
    run("ln", "-s", "current/app.conf", d .. "/app.conf")
    local e = undo_roundtrip(d, function() return fs.write(d .. "/app.conf", "v1 patched\n") end, function()
      assert_eq(get(d .. "/releases/v1/app.conf"), "v1 patched\n")
      assert_eq(fs.stat(d .. "/app.conf").type, "link")
      assert_eq(fs.stat(d .. "/releases/v1/app.conf").mode, mode "640")
    end)
    assert_eq(e.target, d .. "/app.conf")
    assert_eq(e.undo.path, d .. "/releases/v1/app.conf")
    assert_match(e.describe, "; resolves to " .. d:gsub("%p", "%%%0") .. "/releases/v1/app%.conf$")
  end)

  test("through a dangling symlink: the target is created", function()
    local d = tmpdir()
    run("ln", "-s", "real.txt", d .. "/link.txt")
    undo_roundtrip(d, function() return fs.write(d .. "/link.txt", "made") end, function()
      assert_eq(snapshot(d), { ["link.txt"] = "link real.txt", ["real.txt"] = "file 644 made" })
    end)
  end)

  test("relative paths are recorded absolute, so undo works from anywhere", function()
    local d = tmpdir()
    put(d .. "/script.lua", [[
local fs = require "relish.fs"
local json = require "relish.json"
local effects = require("relish._gate").capture(function() return fs.write("sub/../rel.txt", "x") end)
io.write(json.encode(effects[1]))
]])
    run("mkdir", d .. "/sub")
    local r = assert(sh.run { argv = { relish_exe(), "lua", "script.lua" }, cwd = d })
    assert_eq(r.code, 0, r.stderr)
    local e = require("relish.json").decode(r.stdout)
    assert_eq(e.target, d .. "/rel.txt")
    assert_eq(e.undo.path, d .. "/rel.txt")
    assert_eq(get(d .. "/rel.txt"), "x")
    assert_true(effect.undo(e.kind, e.undo))
    assert_false(fs.exists(d .. "/rel.txt"))
  end)

  test("runtime failures raise a structured error; try returns it", function()
    local d = tmpdir()
    put(d .. "/file", "x")
    local _, raised = assert_error(function() fs.write(d .. "/missing/f", "x") end)
    assert_eq(getmetatable(raised).__name, "relish.Error")
    assert_eq(tostring(raised), "fs.write " .. d .. "/missing/f: No such file or directory")
    local ok, err = try(fs.write, d .. "/missing/f", "x")
    assert_nil(ok)
    assert_eq(err.kind, "not_found")
    assert_eq(err.path, d .. "/missing/f")
    assert_eq(err.message, "fs.write " .. d .. "/missing/f: No such file or directory")
    ok, err = try(fs.write, d .. "/file/f", "x")
    assert_eq(err.kind, "not_found")
    ok, err = try(fs.write, d, "x")
    assert_eq({ ok, err.kind, err.message }, { nil, "io", "fs.write " .. d .. ": Is a directory" })
    run("mkfifo", d .. "/fifo")
    ok, err = try(fs.write, d .. "/fifo", "x")
    assert_match(err.message, "not a regular file")
    ok, err = try(fs.write, d .. "/dir-to-be/", "x")
    assert_eq({ ok, err.message }, { nil, "fs.write " .. d .. "/dir-to-be/: Is a directory" })
    assert_false(fs.exists(d .. "/dir-to-be"))
    -- misuse is not a failure: try raises it again
    assert_error(function() try(fs.write, d .. "/x", 42) end, "string or secret")
  end)

  test("a failure while acting is reported to the gate", function()
    if run("id", "-u") ~= "0\n" then skip("needs root to make a directory immutable") end
    local d = tmpdir()
    run("mkdir", d .. "/ro")
    local r = sh.run { argv = { "chattr", "+i", d .. "/ro" } }
    if not r or r.code ~= 0 then skip("chattr +i is not supported here") end
    local effects, ok, err = capture(function() return try(fs.write, d .. "/ro/f", "x") end)
    run("chattr", "-i", d .. "/ro")
    assert_nil(ok)
    assert_eq(err.kind, "permission")
    assert_eq(effects[1].status, "failed")
    assert_eq(temp_names(d .. "/ro"), {})
  end)

  test("undo restores the old content and mode, or removes a new file", function()
    local d = tmpdir()
    put(d .. "/keep", "keep\n")
    put(d .. "/f", "line 1\nline 2\n", mode "600")
    undo_roundtrip(d, function() return fs.write(d .. "/f", "other\n", { mode = "0755" }) end)
    undo_roundtrip(d, function() return fs.write(d .. "/new", "brand new") end)
  end)

  test("the owner of a replaced file is kept, and restored by undo, when privileged", function()
    if run("id", "-u") ~= "0\n" then skip("needs root to give files away") end
    local d = tmpdir()
    put(d .. "/owned", "theirs")
    run("chown", "65534:65534", d .. "/owned")
    local effects = capture(function() return fs.write(d .. "/owned", "ours now") end)
    assert_eq({ fs.stat(d .. "/owned").uid, fs.stat(d .. "/owned").gid }, { 65534, 65534 })
    run("chown", "0:0", d .. "/owned")
    assert_true(effect.undo("fs.write", effects[1].undo))
    assert_eq({ fs.stat(d .. "/owned").uid, get(d .. "/owned") }, { 65534, "theirs" })
  end)

  test("undo of a write that never happened changes nothing", function()
    local d = tmpdir()
    put(d .. "/f", "original", mode "640")
    local before = snapshot(d)
    local e = planned_record(d, function() return fs.write(d .. "/f", "changed") end)
    assert_true(effect.undo(e.kind, e.undo))
    assert_eq(snapshot(d), before)
    e = planned_record(d, function() return fs.write(d .. "/g", "never made") end)
    assert_true(effect.undo(e.kind, e.undo))
    assert_eq(snapshot(d), before)
  end)

  test("undo takes the record as the journal gives it back (relish.json)", function()
    local d = tmpdir()
    put(d .. "/f", "v1")
    put(d .. "/b", "\0\255bin")
    local json = require "relish.json"
    local effects = capture(function() return fs.write(d .. "/f", "v2"), fs.write(d .. "/b", "text") end)
    assert_eq(#effects, 2)
    for _, e in ipairs(effects) do
      assert_true(effect.undo(e.kind, json.decode(json.encode(e.undo))))
    end
    assert_eq({ get(d .. "/f"), get(d .. "/b") }, { "v1", "\0\255bin" })
  end)

  test("undo refuses a corrupt record and a directory in the way, naming the path", function()
    local d = tmpdir()
    put(d .. "/f", "v1")
    local effects = capture(function() return fs.write(d .. "/f", "v2") end)
    local rec = effects[1].undo
    rec.before.content = "tampered"
    assert_error(function() effect.undo("fs.write", rec) end, "sha256")
    assert_eq(get(d .. "/f"), "v2")
    os.remove(d .. "/f")
    run("mkdir", d .. "/f")
    rec.before.content = "v1"
    local msg = assert_error(function() effect.undo("fs.write", rec) end)
    assert_match(tostring(msg), "fs%.undo of fs%.write " .. d:gsub("%p", "%%%0") .. "/f: .*directory")
  end)
end)

describe("the undo cap", function()
  test("a pre-image over the cap is an error before acting, naming path and sizes", function()
    local d = tmpdir()
    put(d .. "/f", string.rep("x", 100))
    local effects, ok, err = capture(function() return try(fs.write, d .. "/f", "small", { max_undo = 50 }) end)
    assert_nil(ok)
    assert_eq(#effects, 0)
    assert_eq(err.kind, "too_large")
    assert_eq(err.path, d .. "/f")
    assert_match(err.message, "^fs%.write " .. d:gsub("%p", "%%%0") .. "/f: the undo record would hold 100 bytes %(100 B%), over the cap of 50 bytes %(50 B%)")
    assert_eq(get(d .. "/f"), string.rep("x", 100))
    assert_true(fs.write(d .. "/f", "small", { max_undo = 100 }))
  end)

  test("the default cap is 16 MiB", function()
    assert_eq(fs.UNDO_CAP, 16 * 1024 * 1024)
    local d = tmpdir()
    local f = assert(io.open(d .. "/huge", "wb"))
    f:seek("set", 16 * 1024 * 1024)
    f:write("!")
    f:close()
    local ok, err = try(fs.write, d .. "/huge", "tiny")
    assert_nil(ok)
    assert_match(err.message, "16777217 bytes %(16%.8 MB%), over the cap of 16777216 bytes")
    ok, err = try(fs.remove, d, { recursive = true })
    assert_eq(err.kind, "too_large")
    assert_true(fs.exists(d .. "/huge"))
  end)

  test("a tree counts all its files", function()
    local d = tmpdir()
    run("mkdir", "-p", d .. "/t/a/b")
    put(d .. "/t/one", string.rep("1", 40))
    put(d .. "/t/a/b/two", string.rep("2", 40))
    local ok, err = try(fs.remove, d .. "/t", { recursive = true, max_undo = 60 })
    assert_nil(ok)
    assert_match(err.message, "would hold 80 bytes")
    assert_true(fs.exists(d .. "/t/a/b/two"))
  end)
end)

describe("copy", function()
  test("copies content and mode; undo restores the destination", function()
    local d = tmpdir()
    put(d .. "/src.sh", "#!/bin/sh\necho hi\n", mode "750")
    local e = undo_roundtrip(d, function() return fs.copy(d .. "/src.sh", d .. "/dst.sh") end, function()
      assert_eq(snapshot(d)["dst.sh"], "file 750 #!/bin/sh\necho hi\n")
    end)
    assert_eq(e.kind, "fs.copy")
    assert_eq(e.describe, "copy " .. d .. "/src.sh to " .. d .. "/dst.sh (18 B, mode 0750, new file)")
    put(d .. "/dst.sh", "older\n", mode "600")
    undo_roundtrip(d, function() return fs.copy(d .. "/src.sh", d .. "/dst.sh", { mode = "0700" }) end, function()
      assert_eq(snapshot(d)["dst.sh"], "file 700 #!/bin/sh\necho hi\n")
    end)
  end)

  test("binary copies are exact", function()
    local d = tmpdir()
    local bytes = {}
    for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
    put(d .. "/all", table.concat(bytes):rep(50))
    assert_true(fs.copy(d .. "/all", d .. "/copy"))
    assert_eq(fs.hash(d .. "/copy"), fs.hash(d .. "/all"))
  end)

  test("a missing or unreadable source is an error", function()
    local d = tmpdir()
    local ok, err = try(fs.copy, d .. "/nope", d .. "/dst")
    assert_eq({ ok, err.kind, err.path }, { nil, "not_found", d .. "/nope" })
    ok, err = try(fs.copy, d, d .. "/dst")
    assert_match(err.message, "Is a directory")
    assert_false(fs.exists(d .. "/dst"))
  end)
end)

describe("mkdir", function()
  test("makes a directory with an exact mode; undo removes it", function()
    local d = tmpdir()
    local e = undo_roundtrip(d, function() return fs.mkdir(d .. "/new", { mode = "0750" }) end, function()
      assert_eq(snapshot(d), { new = "dir 750" })
    end)
    assert_eq(e.describe, "mkdir " .. d .. "/new (mode 0750)")
    assert_eq(e.fingerprint, "absent")
  end)

  test("an existing directory is success and no effect; a file there is an error", function()
    local d = tmpdir()
    run("mkdir", d .. "/there")
    put(d .. "/file", "")
    local effects, ok = capture(function() return fs.mkdir(d .. "/there") end)
    assert_eq({ #effects, ok }, { 0, true })
    local err
    ok, err = try(fs.mkdir, d .. "/file")
    assert_eq({ ok, err.kind }, { nil, "exists" })
    ok, err = try(fs.mkdir, d .. "/missing/child")
    assert_eq({ ok, err.kind }, { nil, "not_found" })
  end)

  test("parents: undo removes exactly the directories it made", function()
    local d = tmpdir()
    run("mkdir", d .. "/a")
    local e = undo_roundtrip(d, function() return fs.mkdir(d .. "/a/b/c/d", { parents = true, mode = "0700" }) end, function()
      assert_eq(snapshot(d), { a = "dir 755", ["a/b"] = "dir 755", ["a/b/c"] = "dir 755", ["a/b/c/d"] = "dir 700" })
    end)
    assert_eq(#e.undo.created, 3)
    assert_eq(e.fingerprint, "absent:" .. d .. "/a/b")
    assert_match(e.describe, "with 2 missing parents from " .. d:gsub("%p", "%%%0") .. "/a/b%)$")
  end)

  test("undo refuses a directory that is not empty, naming it", function()
    local d = tmpdir()
    local effects = capture(function() return fs.mkdir(d .. "/x/y", { parents = true }) end)
    put(d .. "/x/stranger", "not ours")
    local msg = assert_error(function() effect.undo("fs.mkdir", effects[1].undo) end)
    assert_match(tostring(msg), d:gsub("%p", "%%%0") .. "/x is not empty")
    assert_false(fs.exists(d .. "/x/y"), "the inner one, empty, went first")
    os.remove(d .. "/x/stranger")
    assert_true(effect.undo("fs.mkdir", effects[1].undo))
    assert_eq(snapshot(d), {})
  end)

  test("undo of a mkdir that never happened changes nothing", function()
    local d = tmpdir()
    local e = planned_record(d, function() return fs.mkdir(d .. "/p/q", { parents = true }) end)
    assert_true(effect.undo(e.kind, e.undo))
    assert_eq(snapshot(d), {})
  end)
end)

describe("remove", function()
  test("a file; undo puts it back with its mode", function()
    local d = tmpdir()
    put(d .. "/f", "content\n", mode "604")
    local e = undo_roundtrip(d, function() return fs.remove(d .. "/f") end)
    assert_eq(e.describe, "remove " .. d .. "/f (file, 8 B, mode 0604)")
    assert_eq(e.detail, "--- " .. d .. "/f\n+++ /dev/null\n@@ -1 +0,0 @@\n-content\n")
  end)

  test("a link is removed, not followed", function()
    local d = tmpdir()
    put(d .. "/target", "stays")
    run("ln", "-s", "target", d .. "/l")
    local e = undo_roundtrip(d, function() return fs.remove(d .. "/l") end, function()
      assert_eq(snapshot(d), { target = "file 644 stays" })
    end)
    assert_match(e.fingerprint, "^link:target ino:%d+:%d+$")
    assert_eq(e.describe, "remove " .. d .. "/l (link to target)")
  end)

  test("an empty directory without recursive; a full one needs it", function()
    local d = tmpdir()
    run("mkdir", "-m", "711", d .. "/empty", d .. "/full")
    put(d .. "/full/f", "x")
    undo_roundtrip(d, function() return fs.remove(d .. "/empty") end)
    local ok, err = try(fs.remove, d .. "/full")
    assert_eq({ ok, err.kind }, { nil, "exists" })
    assert_match(err.message, "recursive = true")
    assert_true(fs.exists(d .. "/full/f"))
  end)

  test("a whole tree: undo recreates paths, types, modes, contents and links", function()
    local d = tmpdir()
    local t = d .. "/tree"
    run("mkdir", "-p", t .. "/etc/conf.d", t .. "/bin", t .. "/empty")
    run("chmod", "700", t .. "/etc")
    run("chmod", "555", t .. "/bin")
    put(t .. "/etc/app.yml", "a: 1\n", mode "600")
    put(t .. "/etc/conf.d/zz.conf", "")
    put(t .. "/data.bin", "\0\1\2\3\255", mode "444")
    run("chmod", "555", t .. "/bin")
    run("ln", "-s", "../etc/app.yml", t .. "/empty/link")
    run("ln", "-s", "/nowhere/at/all", t .. "/dangling")
    run("chmod", "1777", t .. "/empty")
    local e = undo_roundtrip(d, function() return fs.remove(t, { recursive = true }) end, function()
      assert_false(fs.exists(t))
    end)
    assert_match(e.describe, "directory tree: 3 files, 4 directories, 2 links, 10 B%)$")
    assert_match(e.fingerprint, "^dir:0755:%x+ ino:%d+:%d+$")
    assert_match(e.detail, "%- " .. t:gsub("%p", "%%%0") .. "/etc/app%.yml %(file, 5 B%)\n")
  end)

  test("a tree's fingerprint is the digest of the tree as compact JSON, keys in capture order", function()
    -- saved plans compare fingerprints: this is the form they were made with
    local d = tmpdir()
    local t = d .. "/t"
    run("mkdir", "-m", "755", t)
    run("mkdir", "-m", "700", t .. "/s")
    put(t .. "/a", 'x"\n\1', mode "600")
    run("ln", "-s", "a", t .. "/l")
    local u, g = run("id", "-u"):match("%d+"), run("id", "-g"):match("%d+")
    local meta = function(m) return ('"mode":%d,"uid":%s,"gid":%s'):format(tonumber(m, 8), u, g) end
    local text = '{"type":"dir",' .. meta "755" .. ',"entries":['
      .. '{"name":"a","type":"file",' .. meta "600" .. ',"size":4,"sha256":"' .. fs.sha256('x"\n\1')
      .. '","content":"x\\"\\n\\u0001"},'
      .. '{"name":"l","type":"link","target":"a"},'
      .. '{"name":"s","type":"dir",' .. meta "700" .. ',"entries":[]}]}'
    local effects = capture(function() return fs.remove(t, { recursive = true }) end, true)
    assert_eq(effects[1].fingerprint, "dir:0755:" .. fs.sha256(text) .. ino(t))
  end)

  test("undo finishes a removal that was cut short", function()
    local d = tmpdir()
    run("mkdir", "-p", d .. "/t/a", d .. "/t/b")
    put(d .. "/t/a/1", "one")
    put(d .. "/t/b/2", "two")
    local before = snapshot(d)
    local e = planned_record(d, function() return fs.remove(d .. "/t", { recursive = true }) end)
    run("rm", "-r", d .. "/t/b")
    assert_true(effect.undo(e.kind, e.undo))
    assert_eq(snapshot(d), before)
    assert_true(effect.undo(e.kind, e.undo))
    assert_eq(snapshot(d), before)
  end)

  test("nothing there is success and no effect", function()
    local d = tmpdir()
    local effects, ok = capture(function() return fs.remove(d .. "/missing"), fs.remove(d .. "/no/such/dir") end)
    assert_eq({ #effects, ok }, { 0, true })
  end)

  test("what cannot be recorded is refused before acting", function()
    local d = tmpdir()
    run("mkdir", d .. "/t")
    run("mkfifo", d .. "/t/pipe")
    local ok, err = try(fs.remove, d .. "/t", { recursive = true })
    assert_nil(ok)
    assert_match(err.message, "pipe is a fifo, which cannot be recorded for undo")
    assert_true(fs.exists(d .. "/t/pipe"))
  end)
end)

describe("symlink", function()
  test("creates a link; undo removes it", function()
    local d = tmpdir()
    local e = undo_roundtrip(d, function() return fs.symlink("releases/v1", d .. "/current") end, function()
      assert_eq(snapshot(d), { current = "link releases/v1" })
    end)
    assert_eq(e.describe, "symlink " .. d .. "/current → releases/v1 (new link)")
    assert_eq(e.fingerprint, "absent")
  end)

  test("replaces a link atomically; undo restores the old target", function()
    local d = tmpdir()
    run("mkdir", d .. "/v1", d .. "/v2")
    run("ln", "-s", "v1", d .. "/current")
    local e = undo_roundtrip(d, function() return fs.symlink("v2", d .. "/current") end, function()
      assert_eq(fs.stat(d .. "/current").target, "v2")
    end)
    assert_eq(e.describe, "symlink " .. d .. "/current → v2 (was v1)")
    assert_match(e.fingerprint, "^link:v1 ino:%d+:%d+$")
    assert_eq(temp_names(d), {})
  end)

  test("the same target is no effect; a file or directory there is an error", function()
    local d = tmpdir()
    run("ln", "-s", "x", d .. "/l")
    put(d .. "/f", "file")
    run("mkdir", d .. "/dir")
    local effects, ok = capture(function() return fs.symlink("x", d .. "/l") end)
    assert_eq({ #effects, ok }, { 0, true })
    local err
    ok, err = try(fs.symlink, "x", d .. "/f")
    assert_eq({ ok, err.kind }, { nil, "exists" })
    ok, err = try(fs.symlink, "x", d .. "/dir")
    assert_eq({ ok, err.kind }, { nil, "exists" })
    assert_eq(snapshot(d), { l = "link x", f = "file 644 file", dir = "dir 755" })
  end)

  test("undo of a symlink that never happened changes nothing", function()
    local d = tmpdir()
    run("ln", "-s", "old", d .. "/l")
    local e = planned_record(d, function() return fs.symlink("new", d .. "/l") end)
    assert_true(effect.undo(e.kind, e.undo))
    assert_eq(snapshot(d), { l = "link old" })
  end)
end)

describe("chmod", function()
  test("changes the mode; undo restores it", function()
    local d = tmpdir()
    put(d .. "/f", "x", mode "644")
    local e = undo_roundtrip(d, function() return fs.chmod(d .. "/f", "0600") end, function()
      assert_eq(fs.stat(d .. "/f").mode, mode "600")
    end)
    assert_eq(e.describe, "chmod " .. d .. "/f 0644 → 0600")
    assert_eq(e.fingerprint, "file:0644" .. ino(d .. "/f"))
    run("mkdir", "-m", "700", d .. "/dir")
    undo_roundtrip(d, function() return fs.chmod(d .. "/dir", mode "2755") end)
  end)

  test("follows a symlink to its target", function()
    local d = tmpdir()
    put(d .. "/f", "x", mode "644")
    run("ln", "-s", "f", d .. "/l")
    undo_roundtrip(d, function() return fs.chmod(d .. "/l", "0400") end, function()
      assert_eq(fs.stat(d .. "/f").mode, mode "400")
    end)
  end)

  test("the same mode is no effect; a missing path is not_found", function()
    local d = tmpdir()
    put(d .. "/f", "x", mode "644")
    local effects, ok = capture(function() return fs.chmod(d .. "/f", mode "644") end)
    assert_eq({ #effects, ok }, { 0, true })
    local err
    ok, err = try(fs.chmod, d .. "/missing", "0644")
    assert_eq({ ok, err.kind }, { nil, "not_found" })
  end)

  test("undo of a chmod that never happened changes nothing", function()
    local d = tmpdir()
    put(d .. "/f", "x", mode "640")
    local e = planned_record(d, function() return fs.chmod(d .. "/f", "0777") end)
    assert_true(effect.undo(e.kind, e.undo))
    assert_eq(snapshot(d), { f = "file 640 x" })
  end)
end)

describe("dry-run", function()
  test("plans every effect, touches nothing, returns what a real run returns", function()
    local d = tmpdir()
    put(d .. "/config.ini", "version=v1\n")
    put(d .. "/old.log", "old\n")
    run("mkdir", d .. "/v1")
    run("ln", "-s", "v1", d .. "/current")
    local before = snapshot(d)
    local effects, a, b, c, e, f, g = capture(function()
      return fs.mkdir(d .. "/v2"),
        fs.write(d .. "/v2/app.txt", "app v2\n"),
        fs.write(d .. "/config.ini", "version=v2\n"),
        fs.chmod(d .. "/config.ini", "0600"),
        fs.copy(d .. "/config.ini", d .. "/v2/config.ini"),
        fs.remove(d .. "/old.log"),
        fs.symlink("v2", d .. "/current")
    end, true)
    assert_eq({ a, b, c, e, f, g }, { true, true, true, true, true, true })
    assert_eq(snapshot(d), before)
    local kinds = {}
    for i, x in ipairs(effects) do
      kinds[i] = x.kind
      assert_eq(x.status, "planned")
    end
    assert_eq(kinds, { "fs.mkdir", "fs.write", "fs.write", "fs.chmod", "fs.copy", "fs.remove", "fs.symlink" })
    -- later effects see what earlier planned ones leave behind
    assert_eq(effects[5].describe, "copy " .. d .. "/config.ini to " .. d .. "/v2/config.ini (11 B, mode 0600, in a directory to be made)")
    assert_match(effects[5].detail, "%+version=v2\n$")
  end)

  test("a chain on one new file fingerprints what apply will meet", function()
    local d = tmpdir()
    local planned = capture(function()
      fs.mkdir(d .. "/new")
      fs.write(d .. "/new/README", "hi\n")
      fs.chmod(d .. "/new/README", "0444")
      fs.write(d .. "/new/README", "hello\n")
      fs.remove(d .. "/new/README")
    end, true)
    assert_eq(snapshot(d), {})
    local applied = capture(function()
      fs.mkdir(d .. "/new")
      fs.write(d .. "/new/README", "hi\n")
      fs.chmod(d .. "/new/README", "0444")
      fs.write(d .. "/new/README", "hello\n")
      fs.remove(d .. "/new/README")
    end)
    assert_eq(#planned, 5)
    -- the same live state, but for the inode number of a file the run made
    -- (after the first action on a target, a plan compares only the pin)
    for i = 1, 5 do
      assert_eq({ planned[i].kind, planned[i].target, planned[i].fingerprint, planned[i].pin },
        { applied[i].kind, applied[i].target, applied[i].fingerprint:gsub(" ino:%d+:%d+$", ""), applied[i].pin })
    end
    assert_eq(planned[2].pin, "new:" .. fs.sha256("hi\n") .. ":0644 at:" .. d .. "/new/README")
    assert_eq(planned[3].describe, "chmod " .. d .. "/new/README 0644 → 0444")
    assert_eq(planned[4].fingerprint, "file:" .. fs.sha256("hi\n") .. ":0444")
  end)

  test("what the plan left that an effect cannot act on gives way to the live world", function()
    -- recipes read the live world in a dry-run: `if fs.exists(x) then fs.remove(x) end`
    -- skips the remove of a file only planned, and must not fail the plan
    local d = tmpdir()
    local effects, a, b, c = capture(function()
      return fs.write(d .. "/app.env", "X=1\n"),
        fs.symlink("../shared/app.env", d .. "/app.env"),
        fs.mkdir(d .. "/app.env")
    end, true)
    assert_eq({ a, b, c }, { true, true, true })
    assert_eq(effects[2].describe, "symlink " .. d .. "/app.env → ../shared/app.env (new link)")
    assert_eq(effects[3].fingerprint, "absent")
    assert_eq(snapshot(d), {})
  end)

  test("the planned diff shows live against would-be", function()
    local d = tmpdir()
    put(d .. "/f", "a\nb\n")
    local effects = capture(function() return fs.write(d .. "/f", "a\nB\n") end, true)
    assert_eq(effects[1].detail, "--- " .. d .. "/f\n+++ " .. d .. "/f\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n")
    assert_eq(get(d .. "/f"), "a\nb\n")
  end)

  test("a missing parent that something else may make is planned, not refused", function()
    local d = tmpdir()
    local effects, ok = capture(function()
      require("relish.sh") -- e.g. a command would make the directory in a real run
      return fs.write(d .. "/made-by-a-command/f", "x")
    end, true)
    assert_true(ok)
    assert_eq(effects[1].fingerprint, "absent")
    assert_match(effects[1].describe, "in a directory to be made")
  end)
end)

describe("secrets", function()
  test("secret content is written but never described", function()
    local d = tmpdir()
    local token = secret.value("tok-" .. tostring(math.random(1e6, 9e6)) .. "-xyzzy", "token")
    put(d .. "/creds", "old creds\n")
    local effects, ok = capture(function() return fs.write(d .. "/creds", token, { mode = "0600" }) end)
    assert_true(ok)
    local plain = secret.reveal(token)
    assert_eq(get(d .. "/creds"), plain)
    local e = effects[1]
    assert_eq(e.detail, "secret content: " .. #plain .. " bytes, not shown")
    for _, field in ipairs { "describe", "detail", "target", "fingerprint", "pin" } do
      assert_nil(tostring(e[field]):find(plain, 1, true), field)
    end
    -- nor its digest in the pin a plan file keeps
    assert_match(e.pin, "^new:secret:0600 at:")
  end)

  test("a pre-image holding a secret is not journaled; its undo says so", function()
    local d = tmpdir()
    local plain = "pw-" .. tostring(math.random(1e6, 9e6)) .. "-plugh"
    local _ = secret.value(plain, "db_password")
    put(d .. "/app.env", "DB_PASSWORD=" .. plain .. "\n")
    local effects = capture(function() return fs.write(d .. "/app.env", "DB_PASSWORD=rotated\n") end)
    local rec = effects[1].undo
    assert_true(rec.before.redacted)
    assert_nil(rec.before.content)
    assert_nil(require("relish.json").encode(rec):find(plain, 1, true))
    local msg = assert_error(function() effect.undo("fs.write", rec) end)
    assert_match(tostring(msg), d:gsub("%p", "%%%0") .. "/app%.env: .*held a secret.*restore it by hand")
  end)
end)

describe("a write killed between its temp file and the rename", function()
  test("its undo removes the temp file it left, so the directory can go too", function()
    local d = tmpdir()
    assert(fs.mkdir(d .. "/rel"))
    local effects = capture(function() return fs.write(d .. "/rel/app.txt", "v2\n") end)
    -- what kill -9 mid-write leaves: the renamed file may or may not exist,
    -- the temp file does
    put(d .. "/rel/.app.txt.relish-Ab12Cd", "half")
    put(d .. "/rel/.other.relish-Ab12Cd", "not ours to touch")
    effect.undo("fs.write", effects[1].undo)
    assert_eq(fs.list(d .. "/rel"), { ".other.relish-Ab12Cd" })
  end)
end)

describe("fail closed in a recipe", function()
  test("a write into a missing directory fails its step and rolls back the run's earlier effects", function()
    local d = tmpdir()
    local w = d .. "/w"
    run("mkdir", w)
    put(w .. "/config", "old\n", mode "640")
    local before = snapshot(w)
    local f = support.recipe(d, "fc.lua", [[
local fs = require "relish.fs"
return recipe "fc" {
  params = { dir = param.string { required = true } },
  step "prepare" { run = function(ctx)
    local d = ctx.params.dir
    fs.mkdir(d .. "/rel")
    fs.write(d .. "/rel/app.txt", "v2\n")
    fs.write(d .. "/config", "new\n")
  end },
  step "publish" { run = function(ctx)
    local d = ctx.params.dir
    fs.symlink("rel", d .. "/current")
    fs.write(d .. "/missing/out.txt", "x")
    ctx.log("not reached")
  end },
  step "after" { run = function(ctx) fs.write(ctx.params.dir .. "/after", "x") end },
}
]])
    local r = support.relish { "run", f, "-p", "dir=" .. w, "--state", support.state(d) }
    assert_eq(r.code, 1, r.stderr .. r.stdout)
    assert_nil(r.stdout:find("not reached", 1, true), r.stdout)
    assert_match(r.stdout, 'rolled_back %(exit 1%): step "publish": fs%.write [^\n]*/missing/out%.txt: No such file or directory')
    assert_eq(snapshot(w), before)
    local s = require("relish.json").decode(support.relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    assert_eq(s.status, "rolled_back")
    local steps, actions = {}, {}
    for i, st in ipairs(s.steps) do steps[i] = st.name .. " " .. st.status end
    for i, a in ipairs(s.actions) do actions[i] = a.kind .. " " .. a.status end
    assert_eq(steps, { "prepare done", "publish failed", "after pending" })
    assert_eq(actions, { "fs.mkdir undone", "fs.write undone", "fs.write undone", "fs.symlink undone" })
  end)
end)

describe("undo restores metadata", function()
  -- owner, group, mode, mtime (to the nanosecond) and atime as stat(1) sees them
  local function meta(path)
    return run("stat", "-c", "%u:%g %a %y %x", path)
  end

  local RECIPE = [[
local fs = require "relish.fs"
return recipe "meta" {
  params = { dir = param.string { required = true } },
  step "change" { run = function(ctx)
    local d = ctx.params.dir
    fs.write(d .. "/conf", "new\n")
    fs.copy(d .. "/conf", d .. "/copied")
    fs.symlink("conf", d .. "/linked")
    fs.remove(d .. "/tree", { recursive = true })
    error("failing on purpose")
  end },
}
]]

  test("a failing recipe's rollback gives back content, owner, group, mode and times, trees too", function()
    if run("id", "-u") ~= "0\n" then skip("needs root to give files away") end
    local d = tmpdir()
    local w = d .. "/w"
    run("mkdir", "-p", w .. "/tree/sub/deeper")
    put(w .. "/conf", "old\n", mode "640")
    put(w .. "/copied", "copied before\n", mode "604")
    put(w .. "/linked", "a file where the link goes\n", mode "600")
    put(w .. "/tree/a", "a\n", mode "4750")
    put(w .. "/tree/sub/b", "b\n", mode "444")
    run("chmod", "2750", w .. "/tree/sub")
    run("chmod", "700", w .. "/tree/sub/deeper")
    run("chown", "-R", "1234:2345", w)
    run("chmod", "4750", w .. "/tree/a") -- chown cleared the set-uid bit
    run("chmod", "2750", w .. "/tree/sub")
    run("chown", "4321:5432", w .. "/copied")
    run("sh", "-c", 'find "$1" -mindepth 1 -exec touch -h -m -d "2001-02-03 04:05:06.123456789" {} + && '
      .. 'find "$1" -mindepth 1 -exec touch -h -a -d "2002-03-04 05:06:07.987654321" {} +', "sh", w)
    local paths = { "conf", "copied", "linked", "tree", "tree/a", "tree/sub", "tree/sub/b", "tree/sub/deeper" }
    local before = {}
    for _, p in ipairs(paths) do before[p] = meta(w .. "/" .. p) end
    assert_match(before["tree/a"], "^1234:2345 4750 2001%-02%-03 04:05:06%.123456789")
    local r = support.relish { "run", support.recipe(d, "meta.lua", RECIPE), "-p", "dir=" .. w,
      "--state", support.state(d) }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_match(r.stdout, "Rollback complete")
    for _, p in ipairs(paths) do assert_eq(meta(w .. "/" .. p), before[p], p) end -- before reading moves atime
    assert_eq(get(w .. "/conf"), "old\n")
    assert_eq(get(w .. "/tree/sub/b"), "b\n")
  end)

  test("the pre-image records mtime and atime in nanoseconds; fingerprints ignore them", function()
    local d = tmpdir()
    put(d .. "/f", "x")
    run("touch", "-m", "-d", "2001-02-03 04:05:06.123456789 UTC", d .. "/f")
    local effects = capture(function() return fs.write(d .. "/f", "y") end)
    assert_eq(effects[1].undo.before.mtime_ns, 981173106123456789)
    assert_eq(math.type(effects[1].undo.before.atime_ns), "integer")
    run("mkdir", "-p", d .. "/t/sub")
    put(d .. "/t/sub/g", "g")
    local function remove_tree()
      local e = capture(function() return fs.remove(d .. "/t", { recursive = true }) end)[1]
      assert_true(effect.undo(e.kind, e.undo))
      return (e.fingerprint:gsub(" ino:%d+:%d+$", "")) -- undo made the tree anew
    end
    local a = remove_tree()
    run("touch", "-d", "2003-01-01", d .. "/t/sub/g", d .. "/t/sub")
    assert_eq(remove_tree(), a)
  end)
end)

describe("the journal's disk cost", function()
  local RECIPE = [[
local fs = require "relish.fs"
return recipe "free" {
  params = { dir = param.string { required = true }, keep = param.boolean { default = true },
    fail = param.boolean { default = false } },
  step "free" { run = function(ctx)
    fs.remove(ctx.params.dir .. "/logs", { recursive = true, undo = ctx.params.keep })
    fs.write(ctx.params.dir .. "/big.log", "", { undo = ctx.params.keep })
    fs.write(ctx.params.dir .. "/note", "freed\n")
    if ctx.params.fail then error("failing on purpose") end
  end },
}
]]

  local function esc(s) return (s:gsub("%p", "%%%0")) end

  local function journal_size(d)
    local n = 0
    for _, f in ipairs { "/journal.db", "/journal.db-wal" } do
      local fh = io.open(d .. f, "rb")
      if fh then n = n + fh:seek("end") fh:close() end
    end
    return n
  end

  -- a 5 MB tree of logs and a 2 MB log, incompressible
  local function world(d)
    local w = d .. "/w"
    run("mkdir", "-p", w .. "/logs/a", w .. "/logs/b")
    for i = 1, 5 do
      run("sh", "-c", 'head -c 1048576 /dev/urandom >"$1"', "sh", w .. "/logs/" .. (i % 2 == 0 and "a" or "b") .. "/" .. i .. ".log")
    end
    run("sh", "-c", 'head -c 2097152 /dev/urandom >"$1"', "sh", w .. "/big.log")
    return w
  end

  test("a dry-run of removing a 5 MB tree writes no pre-image to the journal", function()
    local d = tmpdir()
    local w = world(d)
    local f = support.recipe(d, "free.lua", RECIPE)
    run("mkdir", d .. "/empty")
    local r = support.relish { "run", f, "-p", "dir=" .. d .. "/empty", "--dry-run", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    local before = journal_size(d)
    r = support.relish { "run", f, "-p", "dir=" .. w, "--dry-run", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_match(r.stdout, "remove " .. esc(w) .. "/logs %(directory tree: 5 files")
    assert_true(journal_size(d) - before < 100 * 1024, "the journal grew by " .. (journal_size(d) - before))
  end)

  test("undo = false: no pre-image journaled, planned and rolled back as irreversible", function()
    local d = tmpdir()
    local w = world(d)
    local f = support.recipe(d, "free.lua", RECIPE)
    local state = support.state(d)
    local plan = support.relish { "run", f, "-p", "dir=" .. w, "-p", "keep=false", "--dry-run", "--state", state }
    assert_eq(plan.code, 0, plan.stdout .. plan.stderr)
    assert_match(plan.stdout, "! remove " .. esc(w) .. "/logs %(directory tree: 5 files[^\n]*%(irreversible%)")
    assert_match(plan.stdout, "! write " .. esc(w) .. "/big%.log[^\n]*%(irreversible%)")
    assert_match(plan.stdout, "Plan: 3 action%(s%) %(2 irreversible%)")
    local before = journal_size(d)
    local r = support.relish { "run", f, "-p", "dir=" .. w, "-p", "keep=false", "-p", "fail=true", "--state", state }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_true(journal_size(d) - before < 100 * 1024, "the journal grew by " .. (journal_size(d) - before))
    assert_match(r.stdout, "Rollback complete, but for 2 irreversible action%(s%)")
    assert_nil(io.open(w .. "/logs/1.log"))
    assert_eq(get(w .. "/big.log"), "")
    assert_nil(io.open(w .. "/note"), "the reversible write was undone")
    local s = require("relish.json").decode(support.relish { "show", "last", "--format", "json", "--state", state }.stdout)
    assert_eq(s.status, "rolled_back")
    -- the same with undo kept: the pre-images are in the journal
    w = world(tmpdir())
    before = journal_size(d)
    r = support.relish { "run", f, "-p", "dir=" .. w, "-p", "fail=true", "--state", state }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    assert_true(journal_size(d) - before > 5 * 1024 * 1024, "the journal grew by " .. (journal_size(d) - before))
    assert_eq(#get(w .. "/logs/a/2.log"), 1048576)
  end)

  test("undo = false in a capture: no record, irreversible; misuse raises", function()
    local d = tmpdir()
    put(d .. "/f", "old")
    local effects = capture(function() return fs.write(d .. "/f", "new", { undo = false }) end)
    assert_eq(#effects, 1)
    assert_nil(effects[1].undo)
    assert_true(effects[1].irreversible)
    assert_eq(get(d .. "/f"), "new")
    effects = capture(function() return fs.copy(d .. "/f", d .. "/g", { undo = false }) end)
    assert_true(effects[1].irreversible)
    effects = capture(function() return fs.write(d .. "/f", "newer", { undo = true }) end)
    assert_false(effects[1].irreversible)
    -- over max_undo, the old content is not even read: a huge log can be truncated
    put(d .. "/huge", string.rep("x", 4096))
    effects = capture(function() return fs.write(d .. "/huge", "", { undo = false, max_undo = 1024 }) end)
    assert_match(effects[1].detail, "old content not read or kept: 4%.1 kB %(undo = false%)")
    assert_eq(get(d .. "/huge"), "")
    assert_error(function() fs.write(d .. "/f", "x", { undo = "no" }) end, "fs.write: undo must be a boolean")
    assert_error(function() fs.remove(d .. "/f", { undo = 0 }) end, "fs.remove: undo must be a boolean")
  end)
end)

-- issue 17 item 13: a recipe cannot delete or change its own journal
describe("the journal is not an effect's to change", function()
  test("removing the journal, its WAL or a directory holding it fails the step; the history stays", function()
    local d = tmpdir()
    assert(os.execute("mkdir -p " .. d .. "/state"))
    local f = support.recipe(d, "rm.lua", [[
local fs = require "relish.fs"
return recipe "rmj" {
  params = { what = param.string { required = true } },
  step "rm" { run = function(ctx) fs.remove(ctx.params.what, { recursive = true }) end },
}
]])
    local state = "sqlite:" .. d .. "/state/journal.db"
    for _, what in ipairs { d .. "/state", d .. "/state/journal.db", d .. "/state/journal.db-wal", d } do
      local r = support.relish { "run", f, "-p", "what=" .. what, "--state", state }
      assert_eq(r.code, 1, r.stdout .. r.stderr)
      assert_match(r.stdout .. r.stderr, "is relish's journal")
      assert_true(fs.exists(d .. "/state/journal.db"))
    end
    local h = support.relish { "history", "--state", state }
    assert_eq(h.code, 0)
    local runs = 0
    for _ in h.stdout:gmatch("rmj") do runs = runs + 1 end
    assert_eq(runs, 4, h.stdout)
    -- a file beside the journal is fine
    local r = support.relish { "run", f, "-p", "what=" .. d .. "/rm.lua", "--state", state }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
  end)
end)

-- issue 17 item 6: an undo acts on the path it acted on, and only on what the
-- run made; what changed since is left as is (exit 3) unless --force
describe("undo acts only on what the run made", function()
  local function undo_error(kind, rec, opts)
    local ok, err = pcall(effect.undo, kind, rec, nil, opts)
    assert_false(ok, "the undo should have refused")
    return err
  end

  test("a directory swapped for a symlink: rollback leaves the other directory alone, exit 3", function()
    local d = tmpdir()
    local w = d .. "/w"
    run("mkdir", "-p", w .. "/conf")
    put(w .. "/conf/app.conf", "old app\n")
    local f = support.recipe(d, "conf.lua", [[
local fs = require "relish.fs"
return recipe "conf" {
  params = { dir = param.string { required = true } },
  step "write" { run = function(ctx)
    fs.write(ctx.params.dir .. "/conf/new.conf", "new\n")
    fs.write(ctx.params.dir .. "/conf/app.conf", "new app\n")
  end },
}
]])
    local r = support.relish { "run", f, "-p", "dir=" .. w, "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    -- someone moves the directory away and puts a link to another one in its place
    run("mv", w .. "/conf", w .. "/conf.moved")
    run("mkdir", w .. "/other")
    put(w .. "/other/new.conf", "theirs\n")
    put(w .. "/other/app.conf", "their app\n")
    run("ln", "-s", w .. "/other", w .. "/conf")
    local other, moved = snapshot(w .. "/other"), snapshot(w .. "/conf.moved")
    r = support.relish { "rollback", "last", "--state", support.state(d) }
    assert_eq(r.code, 3, r.stdout .. r.stderr)
    assert_eq(snapshot(w .. "/other"), other, "files in the other directory were changed")
    assert_eq(snapshot(w .. "/conf.moved"), moved)
    assert_match(r.stdout, "left to do by hand")
    assert_match(r.stdout, "conf/new%.conf[^\n]*symlink or not a directory now")
    -- --force does not make it act in another directory either
    r = support.relish { "rollback", "last", "--force", "--state", support.state(d) }
    assert_eq(r.code, 3, r.stdout .. r.stderr)
    assert_eq(snapshot(w .. "/other"), other)
    local s = require("relish.json").decode(
      support.relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    local a = s.rollbacks[#s.rollbacks]
    assert_eq({ a.status, #a.left }, { "incomplete", 2 })
    assert_match(a.left[1], "app%.conf")
    assert_match(a.left[2], "new%.conf")
  end)

  test("a directory replaced by another directory at the same path is refused, even forced", function()
    local d = tmpdir()
    run("mkdir", d .. "/sub")
    local effects = capture(function() return fs.write(d .. "/sub/f", "ours") end)
    run("mv", d .. "/sub", d .. "/sub.old")
    run("mkdir", d .. "/sub")
    put(d .. "/sub/f", "ours") -- even the same content: it is not the file the run wrote
    local err = undo_error("fs.write", effects[1].undo, { force = true })
    assert_eq(err.kind, "conflict")
    assert_match(err.message, "another directory than the one the run acted in")
    assert_eq(get(d .. "/sub/f"), "ours")
    assert_eq(get(d .. "/sub.old/f"), "ours")
  end)

  test("content changed since the run: not overwritten or deleted unless forced", function()
    local d = tmpdir()
    put(d .. "/f", "v1", mode "640")
    local effects = capture(function() return fs.write(d .. "/f", "v2"), fs.write(d .. "/new", "made") end)
    assert_eq(effects[1].undo.after.sha256, fs.sha256("v2"))
    put(d .. "/f", "edited later")
    put(d .. "/new", "edited too")
    local err = undo_error("fs.write", effects[1].undo)
    assert_eq(err.kind, "conflict")
    assert_match(err.message, "fs%.undo of fs%.write [^\n]*/f: its content changed since the run: left as is")
    assert_match(err.message, "%-%-force")
    assert_eq(undo_error("fs.write", effects[2].undo).kind, "conflict")
    assert_eq({ get(d .. "/f"), get(d .. "/new") }, { "edited later", "edited too" })
    -- what the run wrote, or what was there before, is undone as always
    assert_true(effect.undo("fs.write", effects[1].undo, nil, { force = true }))
    assert_true(effect.undo("fs.write", effects[2].undo, nil, { force = true }))
    assert_eq({ get(d .. "/f"), fs.exists(d .. "/new") }, { "v1", false })
    assert_eq(fs.stat(d .. "/f").mode, mode "640")
  end)

  test("a link re-pointed, a removed file back with other content, a mode changed: left as is", function()
    local d = tmpdir()
    put(d .. "/gone", "was here")
    put(d .. "/m", "m", mode "600")
    local effects = capture(function()
      return fs.symlink("a", d .. "/link"), fs.remove(d .. "/gone"), fs.chmod(d .. "/m", mode "644")
    end)
    run("ln", "-sfn", "b", d .. "/link")
    put(d .. "/gone", "someone else's")
    run("chmod", "640", d .. "/m")
    for i, want in ipairs { "the link was changed", "something else is there", "its mode was changed %(to 0640%)" } do
      local err = undo_error(effects[i].kind, effects[i].undo)
      assert_eq(err.kind, "conflict")
      assert_match(err.message, want)
    end
    assert_eq({ fs.stat(d .. "/link").target, get(d .. "/gone"), fs.stat(d .. "/m").mode },
      { "b", "someone else's", mode "640" })
    for _, e in ipairs(effects) do assert_true(effect.undo(e.kind, e.undo, nil, { force = true })) end
    assert_eq({ fs.exists(d .. "/link"), get(d .. "/gone"), fs.stat(d .. "/m").mode }, { false, "was here", mode "600" })
    -- a removed file that nobody put back is recreated without force
    local e = capture(function() return fs.remove(d .. "/gone") end)[1]
    assert_true(effect.undo(e.kind, e.undo))
    assert_eq(get(d .. "/gone"), "was here")
  end)

  test("mkdir: a parent swapped for a link to another tree is not rmdir'ed through", function()
    local d = tmpdir()
    local effects = capture(function() return fs.mkdir(d .. "/a/b/c", { parents = true }) end)
    assert_eq(#effects[1].undo.created, 3)
    run("mv", d .. "/a", d .. "/a.moved")
    run("mkdir", "-p", d .. "/x/b/c")
    run("ln", "-s", d .. "/x", d .. "/a")
    local err = undo_error("fs.mkdir", effects[1].undo, { force = true })
    assert_eq(err.kind, "conflict")
    assert_match(err.message, "symlink or not a directory now")
    assert_true(fs.exists(d .. "/x/b/c"))
    assert_true(fs.exists(d .. "/a.moved/b/c"))
  end)

  test("relish rollback --force undoes what changed since the run", function()
    local d = tmpdir()
    put(d .. "/cfg", "before\n")
    local f = support.recipe(d, "w.lua", [[
local fs = require "relish.fs"
return recipe "w" {
  params = { dir = param.string { required = true } },
  step "write" { run = function(ctx) fs.write(ctx.params.dir .. "/cfg", "by the run\n") end },
}
]])
    assert_eq(support.relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }.code, 0)
    put(d .. "/cfg", "edited by hand\n")
    local r = support.relish { "rollback", "last", "--state", support.state(d) }
    assert_eq(r.code, 3, r.stdout .. r.stderr)
    assert_match(r.stdout, "cfg[^\n]*its content changed since the run: left as is")
    assert_eq(get(d .. "/cfg"), "edited by hand\n")
    r = support.relish { "rollback", "last", "--force", "--state", support.state(d) }
    assert_eq(r.code, 0, r.stdout .. r.stderr)
    assert_eq(get(d .. "/cfg"), "before\n")
  end)
end)
