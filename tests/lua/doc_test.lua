-- relish doc: Markdown documentation of recipes from their source. Each
-- section on a small recipe written here, -o with an index, -p with the
-- actions a dry-run plans (in a throw-away journal), exit 2 for bad input,
-- and the checked-in docs/recipes/ against what relish doc makes now.
local support = require "support"
local fs = require "relish.fs"
local relish, recipe, read = support.relish, support.recipe, support.read

local ROOT = fixture_path("../..")

local SMALL = [[
-- Ships the app to a directory.
--
-- A second paragraph of the leading comment.
local fs = require "relish.fs"

return recipe "ship-app" {
  description = "Ship the app somewhere",
  params = {
    dir = param.string { required = true, description = "where it goes" },
    version = param.string { default = os.date("!%Y"), match = "^%d+$" },
    replicas = param.integer { default = 2, min = 1, max = 9, description = "how | many" },
    mode = param.enum { choices = { "fast", "safe" }, default = "safe" },
    note = param.string { default = "", allow_empty = true },
    token = param.string { secret = true, default = "s3cret-value" },
  },
  lock = function(p) return "ship:" .. p.dir end,
  deploys = { service = "app", environment = function(p) return p.mode end },
  timeout = "1h30m",
  rollback_timeout = 90,
  on_failure = "stop",
  notify = { on_failure = function() end, on_start = function() end },

  step "write" {
    description = "Writes the version file.",
    timeout = "10m",
    retries = 2,
    run = function(ctx) fs.write(ctx.params.dir .. "/VERSION", ctx.params.version) end,
  },
  step "maybe" {
    when = function(ctx) return ctx.params.mode == "fast" end,
    run = function(ctx) fs.write(ctx.params.dir .. "/FAST", "1") end,
    undo = function(ctx) end,
    needs = { params = { "dir" }, secrets = { "SHIP_TOKEN", { file = "/etc/ship.key" } } },
  },
}
]]

local function doc(args, opts)
  local argv = { "doc" }
  for _, a in ipairs(args) do argv[#argv + 1] = a end
  opts = opts or {}
  argv.env, argv.cwd = opts.env, opts.cwd
  return relish(argv)
end

describe("the page of one recipe", function()
  test("every section, to stdout", function()
    local d = tmpdir()
    local file = recipe(d, "ship.lua", SMALL)
    local r = doc { file }
    assert_eq(r.code, 0, r.stderr)
    local md = r.stdout
    local function has(text) assert_true(md:find(text, 1, true) ~= nil, "missing: " .. text .. "\n" .. md) end
    has("# Recipe `ship-app`\n\nShip the app somewhere\n")
    has("Ships the app to a directory.\n\nA second paragraph of the leading comment.\n")
    has("Source: `" .. file .. "`. Run it with `relish run " .. file .. " -p KEY=VALUE...`")
    -- params: sorted, with type, required/default (as written), constraints
    has("| `dir` | string | required |  | where it goes |")
    has('| `version` | string | default `os.date("!%Y")` | matches `"^%d+$"` |  |')
    has("| `replicas` | integer | default `2` | min `1`; max `9` | how \\| many |")
    has('| `mode` | enum | default `"safe"` | one of `{ "fast", "safe" }` |  |')
    has('| `note` | string | default `""` | may be empty |  |')
    has("| `token` | string | default `***` | secret (never shown or journaled) |  |")
    assert_nil(md:find("s3cret", 1, true), "a secret's default is shown")
    assert_true(md:find("`dir`", 1, true) < md:find("`mode`", 1, true), "params not sorted")
    -- the run
    has('- Lock: a function of the params: `function(p) return "ship:" .. p.dir end`\n')
    has('- Deploys: service: `"app"`; environment: a function of the params: `function(p) return p.mode end`\n')
    has("- Timeout: 1h30m\n- Rollback timeout: 1m30s\n")
    has("- On failure: stop (left for `relish resume` or `relish rollback`)\n")
    has("- Notify: on_start, on_failure\n")
    -- the steps
    has("### 1. write\n\nWrites the version file.\n\n- Undo: automatic undo of its effects\n- Timeout: 10m\n" ..
      "- Retries: 2\n\n")
    has("### 2. maybe\n\n- Undo: its own undo\n- Conditional: runs only when its `when` function says so\n" ..
      "- Its undo needs: param `dir`, secret `SHIP_TOKEN`, secret from file `/etc/ship.key`\n")
    -- without -p nothing is planned
    assert_nil(md:find("Planned actions", 1, true))
    assert_nil(md:find("## Dry-run", 1, true))
  end)

  test("a recipe with no params, a string lock and the defaults", function()
    local d = tmpdir()
    local file = recipe(d, "tiny.lua", [[
return recipe "tiny" { lock = "tiny-lock", step "only" { run = function() end } }
]])
    local r = doc { file }
    assert_eq(r.code, 0, r.stderr)
    assert_match(r.stdout, "## Params\n\nNone%.\n")
    assert_match(r.stdout, "%- Lock: `tiny%-lock`\n")
    assert_match(r.stdout, "%- Timeout: none\n%- Rollback timeout: none\n%- On failure: roll back, newest change first\n" ..
      "%- Notify: none\n")
    assert_nil(r.stdout:find("Deploys", 1, true))
    assert_nil(r.stdout:find("Source: `tiny.lua`.\n\nreturn", 1, true)) -- no leading comment made up
  end)
end)

describe("-p: the actions a dry-run plans", function()
  test("listed per step; nothing changes, the user's journal is not touched", function()
    local d = tmpdir()
    local file = recipe(d, "ship.lua", SMALL)
    local state = d .. "/mine.db"
    local r = doc({ file, "-p", "dir=" .. d .. "/out", "-p", "version=2024", "-p", "mode=fast",
      "-p", "token=hush" }, { env = { RELISH_STATE = "sqlite:" .. state } })
    assert_eq(r.code, 0, r.stderr)
    local md = r.stdout
    assert_match(md, "### 1%. write\n.-%- Planned actions:\n  %- `fs%.write` [^\n]*" .. d:gsub("%p", "%%%0") ..
      "/out/VERSION")
    assert_match(md, "### 2%. maybe\n.-%- Planned actions:\n  %- `fs%.write` [^\n]*/out/FAST")
    assert_match(md, "## Dry%-run\n\nPlanned with `dir=[^`]* mode=fast token=%*%*%* version=2024`")
    assert_match(md, "%- Lock: a function of the params: `[^`]*`; with these params: `ship:" .. d:gsub("%p", "%%%0") .. "/out`")
    assert_match(md, "%- Deploys: service: `app`; environment: `fast`")
    assert_nil(md:find("hush", 1, true), "a secret param shown")
    assert_false(fs.exists(d .. "/out/VERSION"), "the dry-run wrote")
    assert_false(fs.exists(state), "the user's journal was opened")
  end)

  test("a step the dry-run does not reach: its failure is said, the later steps plan nothing", function()
    local d = tmpdir()
    local file = recipe(d, "fails.lua", [[
local fs = require "relish.fs"
return recipe "fails" {
  params = { dir = param.string { required = true } },
  step "one" { run = function(ctx) fs.write(ctx.params.dir .. "/a", "a") end },
  step "two" { run = function() error("no way", 0) end },
  step "three" { run = function(ctx) fs.write(ctx.params.dir .. "/c", "c") end },
}
]])
    local r = doc { file, "-p", "dir=" .. d }
    assert_eq(r.code, 0, r.stderr)
    assert_match(r.stdout, "### 1%. one\n.-%- Planned actions:\n  %- `fs%.write`")
    assert_match(r.stdout, "### 3%. three\n\n%- Undo: automatic undo of its effects\n%- Planned actions: none\n")
    assert_match(r.stdout, "The dry%-run stopped %(exit 1%)[^\n]*no way")
  end)
end)

describe("-o DIR", function()
  test("one page per recipe and an index for a directory", function()
    local d = tmpdir()
    assert(os.execute("mkdir " .. d .. "/in"))
    recipe(d .. "/in", "ship.lua", SMALL)
    recipe(d .. "/in", "tiny.lua", 'return recipe "tiny" { description = "A | tiny one", step "x" { run = function() end } }\n')
    support.write(d .. "/in/notes.txt", "not a recipe\n")
    local r = doc { d .. "/in", "-o", d .. "/out/docs" }
    assert_eq(r.code, 0, r.stderr)
    assert_eq(r.stdout, "")
    local names = fs.list(d .. "/out/docs")
    table.sort(names)
    assert_eq(names, { "index.md", "ship.md", "tiny.md" })
    assert_eq(read(d .. "/out/docs/index.md"), table.concat({ "# Recipes", "",
      "| Recipe | File | Description |", "| --- | --- | --- |",
      "| [ship-app](ship.md) | `ship.lua` | Ship the app somewhere |",
      "| [tiny](tiny.md) | `tiny.lua` | A \\| tiny one |", "" }, "\n"))
    assert_eq(read(d .. "/out/docs/ship.md"), doc({ d .. "/in/ship.lua" }).stdout)
  end)

  test("one file: its page and no index", function()
    local d = tmpdir()
    local file = recipe(d, "ship.lua", SMALL)
    local r = doc { file, "-o", d .. "/out" }
    assert_eq(r.code, 0, r.stderr)
    assert_eq(fs.list(d .. "/out"), { "ship.md" })
  end)
end)

describe("bad input exits 2", function()
  test("a missing file, named", function()
    local r = doc { "/nonexistent/x.lua" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "cannot open recipe /nonexistent/x%.lua")
  end)

  test("a recipe that does not load: file and line", function()
    local d = tmpdir()
    local bad = recipe(d, "bad.lua", 'return recipe "bad" {\n  colour = "red",\n  step "x" { run = function() end },\n}\n')
    local r = doc { bad }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "bad%.lua:1: recipe \"bad\": unknown field 'colour'")
    local syntax = recipe(d, "syntax.lua", 'return recipe "s" {\n  step "x" { run = function() end }\n  oops\n}\n')
    r = doc { syntax }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "syntax%.lua:3:")
    -- one bad file among good ones: nothing is written
    local good = recipe(d, "good.lua", 'return recipe "g" { step "x" { run = function() end } }\n')
    r = doc { good, bad, "-o", d .. "/out" }
    assert_eq(r.code, 2)
    assert_false(fs.exists(d .. "/out/good.md"))
  end)

  test("-p that the params refuse, and a malformed -p", function()
    local d = tmpdir()
    local file = recipe(d, "ship.lua", SMALL)
    local r = doc { file, "-p", "dir=" .. d, "-p", "replicas=99" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "replicas")
    r = doc { file, "-p", "nonsense" }
    assert_eq(r.code, 2)
    assert_match(r.stderr, "expected KEY=VALUE")
  end)
end)

describe("docs/recipes/", function()
  test("is what relish doc makes of recipes/ now", function()
    local d = tmpdir()
    local r = doc({ "recipes", "-o", d }, { cwd = ROOT })
    assert_eq(r.code, 0, r.stderr)
    local refresh = "refresh with: build/relish doc recipes -o docs/recipes (from the repository's root)"
    -- every page, in subdirectories too (recipes/runbooks/ -> docs/recipes/runbooks/)
    local made, kept = {}, {}
    for n, what in pairs(support.snapshot(d)) do made[n] = what:match("^file ") ~= nil or nil end
    for n, what in pairs(support.snapshot(ROOT .. "/docs/recipes")) do kept[n] = what:match("^file ") ~= nil or nil end
    local stale = {}
    for n in pairs(made) do
      if not kept[n] then
        stale[#stale + 1] = "docs/recipes/" .. n .. " is missing"
      elseif read(d .. "/" .. n) ~= read(ROOT .. "/docs/recipes/" .. n) then
        stale[#stale + 1] = "docs/recipes/" .. n .. " is stale"
      end
    end
    for n in pairs(kept) do
      if not made[n] then stale[#stale + 1] = "docs/recipes/" .. n .. " has no recipe any more" end
    end
    table.sort(stale)
    assert_eq(#stale, 0, table.concat(stale, "\n") .. "\n" .. refresh)
    assert_true(made["index.md"] and made["local-release.md"] and made["runbooks/rollback-release.md"], "too few pages")
  end)
end)
