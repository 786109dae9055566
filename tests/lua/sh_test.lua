-- Tests for relish.sh: running real processes and checking what they saw and did.
local sh = require "relish.sh"
local effect = require "relish.effect"
local gate = require "relish._gate"
local try = require("relish._errors").try

local support = require "support"
local read_file = support.read

-- mode is an octal string here, as chmod takes it
local function write_file(path, content, mode)
  support.write(path, content, mode and tonumber(mode, 8))
end

-- A process is gone when it has no /proc entry or is a zombie nobody reaped
-- (on some machines PID 1 never reaps orphans).
local function process_gone(pid)
  local stat = read_file("/proc/" .. pid .. "/stat")
  return stat == nil or stat:match("^%d+ %b() (%a)") == "Z"
end

-- The group got its signal; an orphaned child exits when the kernel gets to
-- it, which on a loaded machine is not at once.
local function gone_soon(pid)
  local deadline = os.time() + 5
  while not process_gone(pid) and os.time() <= deadline do sh.run{ argv = { "sleep", "0.05" } } end
  return process_gone(pid)
end

local function wait_for_file(path, seconds)
  local deadline = os.time() + seconds
  while os.time() <= deadline do
    local s = read_file(path)
    if s and s:match("\n$") then return s end
    sh.run{ argv = { "sleep", "0.05" } }
  end
  return read_file(path)
end

describe("run", function()
  test("reports the exit code", function()
    local r = sh.run{ argv = { "sh", "-c", "exit 3" }, check = false }
    assert_eq(r.code, 3)
    assert_nil(r.signal)
    assert_false(r.timed_out)
    assert_false(r.truncated)
    assert_eq(sh.run{ argv = { "true" } }.code, 0)
    assert_eq(sh.run{ argv = { "false" }, check = false }.code, 1)
  end)

  test("a non-zero exit raises an exit error with the result, naming the command", function()
    local script = "echo out; printf 'l1\\nl2\\nl3\\nl4\\nl5\\nl6\\nlast\\n' >&2; exit 3"
    local msg, err = assert_error(function() sh.run{ argv = { "sh", "-c", script } } end)
    assert_eq(getmetatable(err).__name, "relish.Error")
    assert_eq({ err.kind, err.code, err.stdout, err.signal, err.timed_out }, { "exit", 3, "out\n", nil, false })
    assert_eq(err.stderr, "l1\nl2\nl3\nl4\nl5\nl6\nlast\n")
    assert_eq(err.argv, { "sh", "-c", script })
    assert_match(msg, "^sh%.run: `sh %-c '[^`]*exit 3'` exited with code 3: l3\nl4\nl5\nl6\nlast$")
    assert_eq(tostring(err), msg)
    assert_eq(assert_error(function() sh.run{ argv = { "false" } } end), "sh.run: `false` exited with code 1")
  end)

  test("the failure message is redacted; a long command is cut", function()
    local s = require("relish.secret").value("hunter2-sh-token")
    local msg, err = assert_error(function()
      sh.run{ argv = { "sh", "-c", 'echo "auth failed for $T" >&2; exit 2' }, env = { T = s } }
    end)
    assert_eq(err.kind, "exit")
    assert_match(msg, "auth failed for %*%*%*$")
    assert_nil(msg:find("hunter2", 1, true))
    msg = assert_error(function() sh.run{ argv = { "sh", "-c", "exit 1", string.rep("a", 300), "b" } } end)
    assert_match(msg, "^sh%.run: `sh %-c 'exit 1' a+ %.%.%.` exited with code 1$")
  end)

  test("ok_codes lists the exit codes that are fine", function()
    local r = sh.run{ argv = { "sh", "-c", "echo found; exit 1" }, ok_codes = { 0, 1 } }
    assert_eq({ r.code, r.stdout }, { 1, "found\n" })
    assert_eq(sh.run{ argv = { "true" }, ok_codes = { 0, 1 } }.code, 0)
    local _, err = assert_error(function() sh.run{ argv = { "sh", "-c", "exit 2" }, ok_codes = { 0, 1 } } end,
      "exited with code 2")
    assert_eq(err.code, 2)
    -- a list without 0 makes success a failure
    _, err = assert_error(function() sh.run{ argv = { "true" }, ok_codes = { 1 } } end, "exited with code 0")
    assert_eq(err.kind, "exit")
    -- a signal is never an accepted code
    _, err = assert_error(function() sh.run{ argv = { "sh", "-c", "kill -TERM $$" }, ok_codes = { 0, 143 } } end)
    assert_eq({ err.kind, err.signal }, { "signal", "TERM" })
  end)

  test("check = false returns the result whatever happened", function()
    local r = sh.run{ argv = { "sh", "-c", "echo e >&2; exit 7" }, check = false }
    assert_eq({ r.code, r.stderr }, { 7, "e\n" })
    r = sh.run{ argv = { "sh", "-c", "kill -KILL $$" }, check = false }
    assert_eq(r.signal, "KILL")
    r = sh.run{ argv = { "sleep", "5" }, timeout = 0.2, check = false }
    assert_true(r.timed_out)
    -- a command that cannot start has no result: it still raises
    local _, err = assert_error(function() sh.run{ argv = { "relish-no-such-command-xyz" }, check = false } end)
    assert_eq(err.kind, "not_found")
  end)

  test("try returns nil and the error instead of raising", function()
    local r, err = try(sh.run, { argv = { "sh", "-c", "echo no >&2; exit 5" } })
    assert_nil(r)
    assert_eq({ err.kind, err.code, err.stderr }, { "exit", 5, "no\n" })
    r, err = try(sh.run, { argv = { "relish-no-such-command-xyz" } })
    assert_nil(r)
    assert_eq(err.kind, "not_found")
    r = try(sh.run, { argv = { "echo", "fine" } })
    assert_eq(r.stdout, "fine\n")
    -- misuse is not a failure: try raises it again
    assert_error(function() try(sh.run, { argv = { 1 } }) end, "argv%[1%] must be a string")
  end)

  test("keeps stdout and stderr apart", function()
    local r = sh.run{ argv = { "sh", "-c", "echo out; echo err >&2; echo out2" } }
    assert_eq(r.stdout, "out\nout2\n")
    assert_eq(r.stderr, "err\n")
  end)

  test("passes arguments without shell interpretation", function()
    local r = sh.run{ argv = { "echo", "$HOME", ";", "ls", "`id`", "a  b", "*" } }
    assert_eq(r.stdout, "$HOME ; ls `id` a  b *\n")
    r = sh.run{ argv = { "printf", "%s|", "it's", "\"q\"", "" } }
    assert_eq(r.stdout, "it's|\"q\"||")
  end)

  test("runs a shell only when argv asks for one", function()
    local r = sh.run{ argv = { "sh", "-c", 'echo "$0:$1"', "zero", "one" } }
    assert_eq(r.stdout, "zero:one\n")
  end)

  test("measures the duration", function()
    local r = sh.run{ argv = { "sleep", "0.2" } }
    assert_eq(r.code, 0)
    assert_eq(math.type(r.duration), "float")
    assert_true(r.duration >= 0.2, "duration " .. r.duration)
    assert_true(r.duration < 5, "duration " .. r.duration)
  end)

  test("a signal that killed the command raises a signal error", function()
    local msg, r = assert_error(function() sh.run{ argv = { "sh", "-c", "kill -KILL $$" } } end)
    assert_eq(r.kind, "signal")
    assert_nil(r.code)
    assert_eq(r.signal, "KILL")
    assert_false(r.timed_out)
    assert_eq(msg, "sh.run: `sh -c 'kill -KILL $$'` was killed by SIGKILL")
    r = sh.run{ argv = { "sh", "-c", "kill -USR1 $$" }, check = false }
    assert_eq(r.signal, "USR1")
  end)
end)

describe("input", function()
  test("1 MiB through cat comes back whole (no deadlock)", function()
    local input = string.rep("0123456789abcdef", 65536)
    local r = sh.run{ argv = { "cat" }, input = input }
    assert_eq(r.code, 0)
    assert_eq(#r.stdout, #input)
    assert_true(r.stdout == input, "output differs from input")
  end)

  test("big input and big output on both streams at once", function()
    local input = string.rep("x", 3 * 1024 * 1024)
    local r = sh.run{ argv = { "sh", "-c", "tee /dev/stderr" }, input = input }
    assert_eq(r.code, 0)
    assert_eq(#r.stdout, #input)
    assert_eq(#r.stderr, #input)
  end)

  test("stdin is /dev/null without input, and empty input is EOF", function()
    assert_eq(sh.run{ argv = { "cat" } }.stdout, "")
    assert_eq(sh.run{ argv = { "cat" }, input = "" }.stdout, "")
    assert_eq(sh.run{ argv = { "readlink", "/proc/self/fd/0" } }.stdout, "/dev/null\n")
  end)

  test("input the command does not read is dropped quietly", function()
    local r = sh.run{ argv = { "true" }, input = string.rep("y", 2 * 1024 * 1024) }
    assert_eq(r.code, 0)
  end)
end)

describe("output", function()
  test("large output is read while the command runs", function()
    local r = sh.run{ argv = { "head", "-c", "5000000", "/dev/zero" } }
    assert_eq(r.code, 0)
    assert_eq(#r.stdout, 5000000)
    assert_false(r.truncated)
  end)

  test("max_output caps each stream, drains the rest and flags it", function()
    local r = sh.run{
      argv = { "sh", "-c", "head -c 300000 /dev/zero; echo short >&2" },
      max_output = 1000,
    }
    assert_eq(r.code, 0)
    assert_eq(#r.stdout, 1000)
    assert_eq(r.stderr, "short\n")
    assert_true(r.truncated)
    assert_true(r.stdout_truncated)
    assert_false(r.stderr_truncated)
  end)

  test("max_output = 0 keeps nothing", function()
    local r = sh.run{ argv = { "echo", "hi" }, max_output = 0 }
    assert_eq(r.stdout, "")
    assert_true(r.stdout_truncated)
  end)

  test("a background process holding the pipes does not hold up run", function()
    local r = sh.run{ argv = { "sh", "-c", "sleep 3 & echo started" }, grace = 0.2 }
    assert_eq(r.code, 0)
    assert_eq(r.stdout, "started\n")
    assert_true(r.duration < 2, "duration " .. r.duration)
  end)
end)

describe("env", function()
  test("adds, overrides and removes variables", function()
    local r = sh.run{
      argv = { "sh", "-c", 'printf "%s|%s|%s|%s" "$RELISH_SH_A" "$HOME" "${USER-unset}" "$N"' },
      env = { RELISH_SH_A = "a value", HOME = "/nowhere", USER = false, N = 42 },
    }
    assert_eq(r.stdout, "a value|/nowhere|unset|42")
  end)

  test("inherits the parent's environment", function()
    local r = sh.run{ argv = { "sh", "-c", 'printf "%s" "$PATH"' }, env = { X = "1" } }
    assert_eq(r.stdout, os.getenv("PATH"))
    r = sh.run{ argv = { "sh", "-c", 'printf "%s" "$PATH"' } }
    assert_eq(r.stdout, os.getenv("PATH"))
  end)

  test("PATH from env is used to find the command", function()
    local dir = tmpdir()
    write_file(dir .. "/relish-sh-hello", "#!/bin/sh\necho hello from path\n", "755")
    local r = assert(sh.run{ argv = { "relish-sh-hello" }, env = { PATH = dir .. ":/bin:/usr/bin" } })
    assert_eq(r.stdout, "hello from path\n")
  end)

  test("rejects values that cannot be environment strings", function()
    assert_error(function() sh.run{ argv = { "true" }, env = { A = {} } } end,
      "env%.A must be a string, a number or false, got table")
    assert_error(function() sh.run{ argv = { "true" }, env = { A = true } } end, "got true")
    assert_error(function() sh.run{ argv = { "true" }, env = { "x" } } end, "env keys")
    assert_error(function() sh.run{ argv = { "true" }, env = { ["A=B"] = "1" } } end,
      "invalid variable name")
    assert_error(function() sh.run{ argv = { "true" }, env = "A=1" } end, "env must be a table")
  end)
end)

describe("cwd", function()
  test("runs the command in cwd", function()
    local dir = tmpdir()
    write_file(dir .. "/marker", "")
    assert_eq(sh.run{ argv = { "ls" }, cwd = dir }.stdout, "marker\n")
  end)

  test("a missing cwd is a not_found error naming it", function()
    local dir = tmpdir() .. "/missing"
    local r, err = try(sh.run, { argv = { "true" }, cwd = dir })
    assert_nil(r)
    assert_eq(err.kind, "not_found")
    assert_true(err.message:find(dir, 1, true) ~= nil, err.message)
    assert_match(tostring(err), "cannot change directory")
  end)

  test("a file as cwd is not_found too", function()
    local file = tmpdir() .. "/f"
    write_file(file, "")
    local r, err = try(sh.run, { argv = { "true" }, cwd = file })
    assert_nil(r)
    assert_eq(err.kind, "not_found")
  end)
end)

describe("start failures", function()
  test("a missing command is not_found, naming it", function()
    local r, err = try(sh.run, { argv = { "relish-no-such-command-xyz", "arg" } })
    assert_nil(r)
    assert_eq(err.kind, "not_found")
    assert_match(err.message, "relish%-no%-such%-command%-xyz")
    local _, raised = assert_error(function() sh.run{ argv = { "relish-no-such-command-xyz" } } end)
    assert_eq(raised.kind, "not_found")
    r, err = try(sh.run, { argv = { "/nonexistent/bin/tool" } })
    assert_nil(r)
    assert_eq(err.kind, "not_found")
    assert_match(err.message, "/nonexistent/bin/tool")
  end)

  test("a file that is not executable is a permission error", function()
    local file = tmpdir() .. "/script"
    write_file(file, "#!/bin/sh\necho no\n", "644")
    local r, err = try(sh.run, { argv = { file } })
    assert_nil(r)
    assert_eq(err.kind, "permission")
    assert_true(err.message:find(file, 1, true) ~= nil, err.message)
  end)

  test("a script without #! is not handed to /bin/sh", function()
    local file = tmpdir() .. "/noshebang"
    write_file(file, "echo hi\n", "755")
    local r, err = try(sh.run, { argv = { file } })
    assert_nil(r)
    assert_eq(err.kind, "spawn")
    assert_match(err.message, "format")
  end)

  test("a directory is a permission error", function()
    local r, err = try(sh.run, { argv = { tmpdir() } })
    assert_nil(r)
    assert_eq(err.kind, "permission")
  end)
end)

describe("argument checks", function()
  test("argv must be a non-empty list of strings", function()
    assert_error(function() sh.run{} end, "sh%.run: argv must be a table of strings, got nil")
    assert_error(function() sh.run{ argv = "ls -l" } end, "argv must be a table of strings, got string")
    assert_error(function() sh.run{ argv = {} } end, "argv must not be empty")
    assert_error(function() sh.run{ argv = { "ls", {} } } end, "sh%.run: argv%[2%] must be a string, got table")
    assert_error(function() sh.run{ argv = { "ls", 1 } } end, "argv%[2%] must be a string, got number")
    assert_error(function() sh.run{ argv = { "" } } end, "argv%[1%] must not be empty")
    assert_error(function() sh.run{ argv = { "a\0b" } } end, "NUL")
    local holey = { "echo", "a" }
    holey[4] = "b"
    assert_error(function() sh.run{ argv = holey } end, "without holes")
    assert_error(function() sh.run{ argv = { "echo", x = 1 } } end, "found argv%[x%]")
  end)

  test("options are checked", function()
    assert_error(function() sh.run("ls") end, "sh_test%.lua:%d+: sh%.run: expected a table {argv = {...}, ...}, got string")
    assert_error(function() sh.run{ "ls" } end, "pass the command as argv")
    assert_error(function() sh.run{ argv = { "true" }, timout = 1 } end, "unknown option 'timout'")
    assert_error(function() sh.run{ argv = { "true" }, timeout = -1 } end, "timeout must be a positive")
    assert_error(function() sh.run{ argv = { "true" }, timeout = 0 } end, "timeout must be a positive")
    assert_error(function() sh.run{ argv = { "true" }, timeout = "1s" } end, "timeout must be a number")
    assert_error(function() sh.run{ argv = { "true" }, grace = -1 } end, "grace must be a non%-negative")
    assert_error(function() sh.run{ argv = { "true" }, max_output = 1.5 } end, "max_output")
    assert_error(function() sh.run{ argv = { "true" }, cwd = 1 } end, "cwd must be a string")
    assert_error(function() sh.run{ argv = { "true" }, input = 5 } end, "input must be a string")
    assert_error(function() sh.run{ argv = { "true" }, check = 0 } end, "check must be a boolean, got number")
    assert_error(function() sh.run{ argv = { "true" }, ok_codes = 1 } end, "ok_codes must be a non%-empty list")
    assert_error(function() sh.run{ argv = { "true" }, ok_codes = {} } end, "ok_codes must be a non%-empty list")
    assert_error(function() sh.run{ argv = { "true" }, ok_codes = { 0, 256 } } end, "ok_codes%[2%] must be an exit code")
    assert_error(function() sh.run{ argv = { "true" }, ok_codes = { "1" } } end, "ok_codes%[1%] must be an exit code")
    assert_error(function() sh.run{ argv = { "true" }, ok_codes = { 1 }, check = false } end, "not both")
    assert_error(function() sh.run{ argv = { "true" }, undo = "rm x" } end, "undo must be an argv list, got string")
    assert_error(function() sh.run{ argv = { "true" }, undo = {} } end, "undo must be a non%-empty argv list")
    assert_error(function() sh.run{ argv = { "true" }, undo = { "rm", 1 } } end, "undo%[2%] must be a string, got number")
    assert_error(function() sh.run{ argv = { "true" }, readonly = true, undo = { "rm" } } end, "readonly command")
  end)

  test("errors point at the caller's line", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local msg = assert_error(function() sh.run{ argv = { 1 } } end)
    assert_match(msg, "sh_test%.lua:" .. line .. ": sh%.run")
  end)
end)

describe("timeout", function()
  test("kills the whole process group", function()
    local dir = tmpdir()
    local pidfile = dir .. "/pid"
    local msg, r = assert_error(function()
      -- 2 s: long enough for the shell to write its child's pid on a loaded machine
      sh.run{ argv = { "sh", "-c", 'sleep 100 & echo $! > "$1"; sleep 100', "sh", pidfile }, timeout = 2 }
    end)
    assert_eq(r.kind, "timeout")
    assert_match(msg, "^sh%.run: `sh %-c [^`]*` timed out after 2s$")
    assert_true(r.timed_out)
    assert_nil(r.code)
    assert_eq(r.signal, "TERM")
    assert_true(r.duration >= 2 and r.duration < 6, "duration " .. r.duration)
    local pid = assert(read_file(pidfile)):match("%d+")
    assert_true(gone_soon(pid), "background sleep " .. pid .. " survived")
  end)

  test("a command ignoring TERM gets KILL after the grace period", function()
    local r = sh.run{
      argv = { "sh", "-c", 'trap "" TERM; echo ready; sleep 100; echo never' },
      timeout = 0.3,
      grace = 0.4,
      check = false,
    }
    assert_true(r.timed_out)
    assert_nil(r.code)
    assert_eq(r.signal, "KILL")
    assert_eq(r.stdout, "ready\n")
    assert_true(r.duration >= 0.7 and r.duration < 4, "duration " .. r.duration)
  end)

  test("keeps the output produced before the timeout", function()
    local _, r = assert_error(function()
      sh.run{ argv = { "sh", "-c", "echo partial; exec sleep 100" }, timeout = 0.3 }
    end)
    assert_eq(r.kind, "timeout")
    assert_true(r.timed_out)
    assert_eq(r.stdout, "partial\n")
  end)

  test("a huge timeout is just a long one", function()
    local r = sh.run{ argv = { "true" }, timeout = 1e300 }
    assert_false(r.timed_out)
    assert_eq(r.code, 0)
  end)

  test("a command that finishes in time is not timed out", function()
    local r = sh.run{ argv = { "echo", "quick" }, timeout = 10 }
    assert_false(r.timed_out)
    assert_eq(r.code, 0)
    assert_true(r.duration < 5)
  end)
end)

describe("child setup", function()
  test("signal dispositions and mask are reset", function()
    -- relish itself ignores SIGPIPE; the child must not inherit that.
    local r = sh.run{ argv = { "grep", "-E", "^Sig(Ign|Blk)", "/proc/self/status" } }
    assert_eq(r.stdout, "SigBlk:\t0000000000000000\nSigIgn:\t0000000000000000\n")
    r = sh.run{ argv = { "sh", "-c", "yes | head -c 4" } }
    assert_eq(r.stdout, "y\ny\n")
    assert_eq(r.stderr, "")
  end)

  test("only stdin, stdout and stderr are inherited", function()
    local r = sh.run{ argv = { "ls", "/proc/self/fd" } }
    -- ls's own directory handle is the fourth entry
    assert_eq(r.stdout, "0\n1\n2\n3\n")
  end)

  test("the command leads its own process group", function()
    local r = sh.run{ argv = { "sh", "-c", 'ps -o pgid= -p $$; echo $$' } }
    local pgid, pid = r.stdout:match("^%s*(%d+)\n(%d+)\n$")
    assert_eq(pgid, pid)
  end)
end)

describe("interrupt", function()
  test("SIGINT stops the command and its group, and relish exits 130", function()
    local dir = tmpdir()
    local pidfile = dir .. "/pid"
    local inner = dir .. "/inner_test.lua"
    write_file(inner, string.format([[
local sh = require "relish.sh"
test("waits", function()
  sh.run{ argv = { "sh", "-c", 'sleep 100 & echo $! > %q; wait' } }
end)
]], pidfile))
    local r = sh.run{
      argv = { "sh", "-c", [[
"$1" test "$2" & p=$!
i=0; while [ ! -s "$3" ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
kill -INT $p; wait $p; echo "exit $?"]], "sh", relish_exe(), inner, pidfile },
      timeout = 30,
    }
    assert_false(r.timed_out)
    assert_eq(r.stdout:match("exit %d+\n$"), "exit 130\n")
    local pid = assert(read_file(pidfile)):match("%d+")
    assert_true(gone_soon(pid), "sleep " .. pid .. " survived the interrupt")
  end)
end)

describe("which", function()
  test("finds commands on PATH", function()
    assert_match(sh.which("sh"), "^/.*/sh$")
    assert_nil(sh.which("relish-no-such-command-xyz"))
    assert_nil(sh.which(""))
  end)

  test("checks a path directly", function()
    local dir = tmpdir()
    write_file(dir .. "/x", "#!/bin/sh\n", "755")
    write_file(dir .. "/y", "#!/bin/sh\n", "644")
    assert_eq(sh.which(dir .. "/x"), dir .. "/x")
    assert_nil(sh.which(dir .. "/y"))
    assert_nil(sh.which(dir))
  end)
end)

describe("quote", function()
  test("leaves plain words alone and quotes the rest", function()
    assert_eq(sh.quote("abc-1.2/x=y"), "abc-1.2/x=y")
    assert_eq(sh.quote(""), "''")
    assert_eq(sh.quote("a b"), "'a b'")
    assert_eq(sh.quote("it's"), "'it'\\''s'")
    assert_eq(sh.quote("$HOME"), "'$HOME'")
    assert_eq(sh.quote{ "git", "commit", "-m", "fix: it's done" },
      "git commit -m 'fix: it'\\''s done'")
    assert_error(function() sh.quote{ "a", {} } end, "must be a string")
  end)

  test("a quoted word reaches the command unchanged through sh -c", function()
    local words = { "plain", "", "a b", "it's", "$(id) `id` $HOME", "*?[]", "new\nline", "\\" }
    for _, w in ipairs(words) do
      local r = sh.run{ argv = { "sh", "-c", "printf %s " .. sh.quote(w) } }
      assert_eq(r.stdout, w)
    end
  end)
end)

describe("sh.run as an effect", function()
  local support = require "support"
  local json = require "relish.json"

  -- issue 8: the undo record was written with a luaL_Buffer open while the
  -- stack was used, which crashed at these lengths
  test("undo argv of any length is recorded whole (no crash)", function()
    for _, n in ipairs { 1000, 2000, 2020, 2048, 5000, 100000 } do
      local long = string.rep("x", n)
      assert_eq(sh.run{ argv = { "true" }, cwd = "/tmp", undo = { "echo", long } }.code, 0)
      local effects, r = gate.capture(function()
        return sh.run{ argv = { "true" }, cwd = "/tmp", undo = { "echo", long, 'q"\\\n' } }
      end)
      assert_eq(r.code, 0)
      assert_eq(#effects, 1)
      assert_eq(effects[1].kind, "sh.run")
      assert_eq(effects[1].status, "done")
      assert_eq(effects[1].undo, { argv = { "echo", long, 'q"\\\n' }, cwd = "/tmp" }, "length " .. n)
      local back = json.decode(json.encode(effects[1].undo))
      assert_eq(back.argv[2], long)
    end
  end)

  test("a dry-run runs nothing and answers as a success", function()
    local d = tmpdir()
    local effects, r = gate.capture(function()
      return sh.run{ argv = { "touch", d .. "/made" }, undo = { "rm", d .. "/made" } }
    end, { dry_run = true })
    assert_nil(read_file(d .. "/made"))
    assert_eq({ r.code, r.stdout, r.planned }, { 0, "", true })
    assert_eq(#effects, 1)
    assert_match(effects[1].describe, "^run touch .*/made$")
  end)

  test("a failed command is a failed action; its error is raised", function()
    local effects, ok, err = gate.capture(function()
      return pcall(sh.run, { argv = { "sh", "-c", "echo bad >&2; exit 3" } })
    end)
    assert_false(ok)
    assert_eq({ err.kind, err.code }, { "exit", 3 })
    assert_eq(effects[1].status, "failed")
    assert_match(effects[1].error, "exited with code 3: bad")
    effects = gate.capture(function() sh.run{ argv = { "sh", "-c", "exit 3" }, ok_codes = { 3 } } end)
    assert_eq(effects[1].status, "done")
    effects = gate.capture(function() pcall(sh.run, { argv = { "relish-no-such-command-xyz" } }) end)
    assert_eq(effects[1].status, "failed")
    assert_match(effects[1].error, "not found")
  end)

  test("readonly commands are not effects and run while the gate is closed", function()
    local effects, r = gate.capture(function() return sh.run{ argv = { "echo", "hi" }, readonly = true } end)
    assert_eq(#effects, 0)
    assert_eq(r.stdout, "hi\n")
    gate.close("a recipe is being loaded")
    local ok, ro = pcall(sh.run, { argv = { "echo", "ro" }, readonly = true })
    local bad, err = pcall(sh.run, { argv = { "echo", "effect" } })
    gate.close(nil)
    assert_true(ok, tostring(ro))
    assert_eq(ro.stdout, "ro\n")
    assert_false(bad)
    assert_match(tostring(err), "a recipe is being loaded")
    -- a readonly command still fails closed
    assert_error(function() sh.run{ argv = { "false" }, readonly = true } end, "exited with code 1")
  end)

  test("effect.undo runs the recorded argv in its cwd, and raises when it fails", function()
    local d = tmpdir()
    local effects = gate.capture(function()
      sh.run{ argv = { "touch", "made" }, cwd = d, undo = { "rm", "made" } }
    end)
    assert_eq(read_file(d .. "/made"), "")
    local r = effect.undo("sh.run", effects[1].undo)
    assert_eq(r.code, 0)
    assert_nil(read_file(d .. "/made"))
    local _, err = assert_error(function() effect.undo("sh.run", effects[1].undo) end, "exited with code 1")
    assert_eq(err.kind, "exit")
    assert_match(err.stderr, "made")
    _, err = assert_error(function() effect.undo("sh.run", { cwd = d }) end, "no 'argv'")
    assert_eq(err.kind, "undo")
    assert_nil(sh.undo, "undo goes through the registry")
  end)

  test("an undo argv holding a secret is refused: records are journaled as they are", function()
    local s = require("relish.secret").value("undo-secret-value-1")
    assert_error(function() sh.run{ argv = { "true" }, undo = { "revoke", s } } end, "undo%[2%] is a secret")
    assert_error(function()
      sh.run{ argv = { "true" }, undo = { "revoke", "--token=" .. require("relish.secret").reveal(s) } }
    end, "undo%[2%] holds a secret value")
    assert_error(function() sh.run{ argv = { "true" }, undo = { "curl", "https://u:pw@example.com/x" } } end,
      "undo%[2%] holds a secret value")
  end)

  test("a recipe step whose command exits 3 fails, and earlier effects are undone", function()
    local d = tmpdir()
    local f = support.recipe(d, "fails.lua", [[
local fs = require "relish.fs"
local sh = require "relish.sh"
return recipe "fails" {
  params = { dir = param.string { required = true } },
  step "prepare" { run = function(ctx)
    fs.write(ctx.params.dir .. "/written", "x")
    sh.run { argv = { "touch", ctx.params.dir .. "/touched" }, undo = { "rm", ctx.params.dir .. "/touched" } }
  end },
  step "deploy" { run = function(ctx)
    local r = sh.run { argv = { "sh", "-c", "exit 1" }, ok_codes = { 0, 1 } }
    ctx.log("probe exited %d", r.code)
    sh.run { argv = { "sh", "-c", "echo deploy broke >&2; exit 3" } }
    fs.write(ctx.params.dir .. "/never", "x")
  end },
}
]])
    local r = support.relish { "run", f, "-p", "dir=" .. d, "--state", support.state(d) }
    assert_eq(r.code, 1, r.stdout .. r.stderr)
    local out = r.stdout .. r.stderr
    assert_match(out, "probe exited 1")
    assert_match(out, "exited with code 3: deploy broke")
    assert_nil(out:find("Succeeded", 1, true))
    assert_nil(read_file(d .. "/written"), "the fs effect was undone")
    assert_nil(read_file(d .. "/touched"), "the undo argv ran")
    assert_nil(read_file(d .. "/never"))
    local s = json.decode(support.relish { "show", "last", "--format", "json", "--state", support.state(d) }.stdout)
    local statuses = {}
    for _, a in ipairs(s.actions) do statuses[#statuses + 1] = a.kind .. " " .. a.status end
    assert_eq(statuses, { "fs.write undone", "sh.run undone", "sh.run done", "sh.run failed" })
  end)
end)

-- issue 17 items 2 and 3: a secret is redacted before it is quoted or cut
describe("secrets in what sh shows", function()
  test("a secret holding a quote is redacted in the description and the failure", function()
    local secret = require "relish.secret"
    secret.value("it's-a-quoted-token")
    local effects = require("relish._gate").capture(function()
      sh.run { argv = { "echo", "it's-a-quoted-token" } }
    end, { dry_run = true })
    assert_eq(effects[1].describe, "run echo '***'")
    local _, err = assert_error(function()
      sh.run { argv = { "sh", "-c", "exit 4", "it's-a-quoted-token" }, readonly = true }
    end)
    assert_nil(tostring(err):find("quoted-token", 1, true), tostring(err))
  end)

  test("each line of a multi-line secret is redacted, so a cut message cannot leak one", function()
    local secret = require "relish.secret"
    secret.value("multi-line-first\nmulti-line-second\n")
    assert_eq(secret.redact("a multi-line-first b multi-line-second c"), "a *** b *** c")
  end)
end)
