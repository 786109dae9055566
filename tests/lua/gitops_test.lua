-- relish.gitops: yaml.locate (where a scalar is written), text edits that
-- leave every other byte of a commented manifest as it was, the three shapes
-- (Deployment image, kustomization images:, Helm values), and update{}
-- committing and pushing to real repositories with revert on rollback.
local yaml = require "relish.yaml"
local gitops = require "relish.gitops"
local try = require("relish._errors").try

local function fixture(name)
  local f = assert(io.open(fixture_path("gitops/" .. name), "rb"))
  local s = f:read("a")
  f:close()
  return s
end

-- The lines of a and b that differ, as {line number = {a, b}}, and how many.
local function changed_lines(a, b)
  local la, lb = {}, {}
  for l in (a .. "\n"):gmatch("([^\n]*)\n") do la[#la + 1] = l end
  for l in (b .. "\n"):gmatch("([^\n]*)\n") do lb[#lb + 1] = l end
  assert_eq(#la, #lb, "line count")
  local out, n = {}, 0
  for i = 1, #la do
    if la[i] ~= lb[i] then out[i] = { la[i], lb[i] } n = n + 1 end
  end
  return out, n
end

describe("yaml.locate", function()
  test("byte offsets (1-based start, exclusive stop), style, document, position, value", function()
    local text = "a: 1\nb:\n  c: 'x y'\n  d: \"q\"\n"
    local s, e, info = yaml.locate(text, { "b", "c" })
    assert_eq({ s, e }, { 14, 19 })
    assert_eq(text:sub(s, e - 1), "'x y'")
    assert_eq(info, { style = "single", document = 1, line = 3, column = 6, value = "x y" })
    s, e, info = yaml.locate(text, { "b", "d" })
    assert_eq(text:sub(s, e - 1), '"q"')
    assert_eq(info.style, "double")
    s, e = yaml.locate(text, { "a" })
    assert_eq(text:sub(s, e - 1), "1")
  end)

  test("sequences by 1-based index and by key=value selector, in block and flow style", function()
    local text = fixture("deployment.yaml")
    local s, e, info = yaml.locate(text, { "spec", "template", "spec", "containers", "name=api", "image" })
    assert_eq(text:sub(s, e - 1), "registry.example.com/shop/api:v2.14.0")
    assert_eq(info.line, 29)
    s, e = yaml.locate(text, { "spec", "template", "spec", "containers", 1, "image" })
    assert_eq(text:sub(s, e - 1), "registry.example.com/tools/envoy:1.28.0")
    s, e = yaml.locate(text, { "spec", "template", "spec", "containers", "name=api", "env", "name=LOG_LEVEL", "value" })
    assert_eq(text:sub(s, e - 1), "info")
    s, e = yaml.locate(text, { "metadata", "labels", "tier" })
    assert_eq(text:sub(s, e - 1), '"backend"')
    s, e = yaml.locate(text, { "spec", "template", "spec", "initContainers", 1, "args", 2 })
    assert_eq(text:sub(s, e - 1), "--wait")
  end)

  test("multi-document files: the first document that has the path, or the one asked for", function()
    local text = fixture("deployment.yaml")
    local path = { "spec", "jobTemplate", "spec", "template", "spec", "containers", "name=report", "image" }
    local s, e, info = yaml.locate(text, path)
    assert_eq(info.document, 2)
    assert_eq(info.style, "single")
    assert_eq(text:sub(s, e - 1), "'registry.example.com/shop/report:v2.14.0'")
    local err = assert_raises(function() yaml.locate(text, path, { document = 1 }) end, "not_found")
    assert_match(err.message, "no spec%.jobTemplate%.spec%.template%.spec%.containers%[name=report%]%.image: " ..
      "spec has no jobTemplate %(document 1%)")
    assert_raises(function() yaml.locate(text, path, { document = 3 }) end, "not_found", "there is no document 3")
    -- documents count as decode_all counts them: empty ones are skipped
    s, e, info = yaml.locate("---\n# nothing\n---\nx: 1\n", { "x" })
    assert_eq(info.document, 1)
  end)

  test("anchors and tags before a scalar are not part of its text", function()
    local text = "a: &anchor !!str\n  # why\n  'héllo'\nb: !custom &x plain\n"
    local s, e, info = yaml.locate(text, { "a" })
    assert_eq(text:sub(s, e - 1), "'héllo'")
    assert_eq(info.line, 3)
    s, e = yaml.locate(text, { "b" })
    assert_eq(text:sub(s, e - 1), "plain")
  end)

  test("offsets are bytes, whatever the UTF-8, CRLF line ends or a BOM before", function()
    local text = "\239\187\191é: ünï\r\nκλειδί: [ä, 'ö']\r\n"
    local s, e, info = yaml.locate(text, { "κλειδί", 2 })
    assert_eq(text:sub(s, e - 1), "'ö'")
    assert_eq(info.line, 2)
    assert_eq(info.column, 13)
    s, e = yaml.locate(text, { "é" })
    assert_eq(text:sub(s, e - 1), "ünï")
  end)

  test("what is not a scalar, or only reached through an alias, is refused", function()
    local text = fixture("deployment.yaml")
    local err = assert_raises(function() yaml.locate(text, { "spec", "template" }) end, "invalid")
    assert_eq(err.message, "yaml.locate: spec.template is a mapping, not a scalar (document 1)")
    assert_eq(err.path, "spec.template")
    assert_raises(function()
      yaml.locate(text, { "spec", "template", "spec", "containers", "name=api", "env", "name=RELEASE_COPY", "value" })
    end, "invalid", "is an alias, not a scalar")
    assert_raises(function() yaml.locate("a: &m {b: 1}\nc: *m\n", { "c", "b" }) end, "invalid",
      "c%.b passes through an alias at c")
    -- merged keys are not where they are written
    assert_raises(function() yaml.locate("base: &b {x: 1}\nd:\n  <<: *b\n", { "d", "x" }) end, "not_found")
  end)

  test("a missing key, index or selector names where the path stopped", function()
    local text = fixture("deployment.yaml")
    local err = assert_raises(function()
      yaml.locate(text, { "spec", "template", "spec", "containers", "name=web", "image" })
    end, "not_found")
    assert_eq(err.message, "yaml.locate: no spec.template.spec.containers[name=web].image: " ..
      "spec.template.spec.containers has no [name=web] (document 1)")
    assert_eq(err.path, "spec.template.spec.containers[name=web].image")
    assert_raises(function() yaml.locate(text, { "spec", "template", "spec", "containers", 9 }) end, "not_found",
      "containers has no %[9%]")
    err = assert_raises(function() yaml.locate("a: 1\n", { "b" }) end, "not_found")
    assert_eq(err.message, "yaml.locate: no b: the document has no b (document 1)")
    assert_raises(function() yaml.locate("", { "a" }) end, "not_found", "the text has no document")
  end)

  test("a long path in an error is whole (its text is built in a luaL_Buffer)", function()
    -- 40 keys of 100 bytes and more: the buffer moves to the heap while
    -- path elements are pushed and added
    local path, text = {}, {}
    for i = 1, 40 do path[i] = "k" .. i .. string.rep("x", 100) end
    path[41] = "a.b"
    path[42] = "name=x"
    path[43] = 12
    for i = 1, 40 do text[i] = string.rep("  ", i - 1) .. path[i] .. ":" end
    text[41] = string.rep("  ", 40) .. "z: 1"
    local err = assert_raises(function() yaml.locate(table.concat(text, "\n") .. "\n", path) end, "not_found")
    local want = table.concat(path, ".", 1, 40) .. '["a.b"][name=x][12]'
    assert_eq(err.path, want)
    assert_eq(err.message, "yaml.locate: no " .. want .. ": " .. table.concat(path, ".", 1, 40) ..
      ' has no ["a.b"] (document 1)')
  end)

  test("try(yaml.locate, ...) returns nil, err for a value that may be absent", function()
    local s, err = try(yaml.locate, "a: 1\n", { "b" })
    assert_nil(s)
    assert_eq({ err.kind, err.path }, { "not_found", "b" })
    local start, stop, info = try(yaml.locate, "a: 1\n", { "a" })
    assert_eq({ start, stop, info.value }, { 4, 5, "1" })
  end)

  test("invalid YAML is a parse error with a position", function()
    local err = assert_raises(function() yaml.locate("a: [1, 2\nb: 3\n", { "a" }) end, "parse", "^yaml: line 2")
    assert_eq(err.line, 2)
  end)

  test("misuse raises at the caller's line", function()
    assert_misuse(function() yaml.locate(nil, { "a" }) end, "yaml.locate: expected a string, got nil")
    assert_misuse(function() yaml.locate(5, { "a" }) end, "yaml.locate: expected a string, got number")
    assert_misuse(function() yaml.locate("a: 1", {}) end, "yaml.locate: path must be a non-empty list of keys and indices")
    assert_misuse(function() yaml.locate("a: 1", "a") end, "yaml.locate: path must be a list of keys and indices, got string")
    assert_misuse(function() yaml.locate("a: 1", { "a", 0 }) end,
      "yaml.locate: path element 2 must be a string or a positive integer")
    assert_misuse(function() yaml.locate("a: 1", { "a" }, { document = 0 }) end,
      "yaml.locate: document must be a positive integer")
    assert_misuse(function() yaml.locate("a: 1", { "a" }, { docment = 1 }) end, "yaml.locate: unknown option 'docment' (did you mean 'document'?)")
    assert_misuse(function() yaml.locate("a: 1", { "a" }, 1) end, "yaml.locate: options must be a table, got number")
  end)
end)

describe("paths", function()
  test("dotted text with indices, selectors and quoted keys", function()
    assert_eq(gitops.parse_path("spec.template.spec.containers[name=app].image"),
      { "spec", "template", "spec", "containers", "name=app", "image" })
    assert_eq(gitops.parse_path("images[name=registry.example.com/shop/api].newTag"),
      { "images", "name=registry.example.com/shop/api", "newTag" })
    assert_eq(gitops.parse_path('metadata.annotations["app.kubernetes.io/version"]'),
      { "metadata", "annotations", "app.kubernetes.io/version" })
    assert_eq(gitops.parse_path("items[2].name"), { "items", 2, "name" })
    assert_eq(gitops.parse_path("image.tag"), { "image", "tag" })
    assert_eq(gitops.parse_path({ "a", 1 }), { "a", 1 })
  end)

  test("malformed paths say what is wrong", function()
    for s, why in pairs { [""] = "the path is empty", ["a..b"] = 'path "a..b": empty key at 3',
      ["a."] = 'path "a." ends with a dot', ["a[0]"] = 'path "a[0]": index 0 must be 1 or more',
      ["a[x]"] = 'path "a[x]": [x] is neither an index, a key=value selector nor a "quoted key"',
      ["a[name=x"] = 'path "a[name=x": [ at 2 is not closed' } do
      assert_misuse(function() gitops.parse_path(s) end, "gitops.parse_path: " .. why, s)
    end
    assert_misuse(function() gitops.parse_path({ "a", 0 }) end,
      "gitops.parse_path: path element 2 must be a string or a positive integer")
    assert_misuse(function() gitops.parse_path(5) end, "gitops.parse_path: path must be a string or a list, got number")
    assert_misuse(function() gitops.set("a: 1\n", "a..b", "x") end, 'gitops.set: path "a..b": empty key at 3')
    assert_misuse(function() gitops.get("a: 1\n", "a.") end, 'gitops.get: path "a." ends with a dot')
  end)
end)

describe("set", function()
  test("changes only the value's bytes in a commented manifest", function()
    local text = fixture("deployment.yaml")
    local out, old, info = assert(gitops.set(text, "spec.template.spec.containers[name=api].image",
      "registry.example.com/shop/api:v2.15.0"))
    assert_eq(old, "registry.example.com/shop/api:v2.14.0")
    assert_eq(out, text:sub(1, info.start - 1) .. "registry.example.com/shop/api:v2.15.0" .. text:sub(info.stop))
    local lines, n = changed_lines(text, out)
    assert_eq(n, 1)
    assert_eq(lines[29], { "      -   image: registry.example.com/shop/api:v2.14.0 # the app",
      "      -   image: registry.example.com/shop/api:v2.15.0 # the app" })
    assert_eq(yaml.decode_all(out)[1].spec.template.spec.containers[2].image, "registry.example.com/shop/api:v2.15.0")
  end)

  test("the quoting style stays: plain, single (with '' escapes), double (with escapes)", function()
    local text = "p: old\ns: 'old'\nd: \"old\"\n"
    assert_eq(gitops.set(text, "p", "new"), "p: new\ns: 'old'\nd: \"old\"\n")
    assert_eq(gitops.set(text, "s", "it's"), "p: old\ns: 'it''s'\nd: \"old\"\n")
    assert_eq(gitops.set(text, "d", 'say "hi"\\'), "p: old\ns: 'old'\nd: \"say \\\"hi\\\"\\\\\"\n")
    assert_eq(gitops.set(text, "s", "two\nlines"), "p: old\ns: \"two\\nlines\"\nd: \"old\"\n")
  end)

  test("a string that would read as another type is quoted; numbers and booleans stay plain", function()
    local text = fixture("values.yaml")
    local out = assert(gitops.set(text, "extra.version", "1.22"))
    assert_match(out, '\n  version: "1%.22"\n')
    assert_eq(yaml.decode(out).extra.version, "1.22")
    out = assert(gitops.set(text, "extra.version", 1.22))
    assert_match(out, "\n  version: 1%.22\n")
    out = assert(gitops.set(text, "replicaCount", 5))
    assert_match(out, "\nreplicaCount: 5\n")
    out = assert(gitops.set(text, "autoscaling.enabled", true))
    assert_match(out, "\n  enabled: true\n")
    for _, s in ipairs { "yes", "on", "null", "~", "0755", "1e3", "0x1F", "1_000", "12:30", "2024-01-02", "",
      "-x", "a: b", "a #b", "[x]", "*x", " x" } do
      out = assert(gitops.set("v: old\n", "v", s))
      assert_eq(yaml.decode(out).v, s, s)
      assert_match(out, '^v: "', s)
    end
    for _, s in ipairs { "v1.2.3", "1.2.3", "sha-9f2c1e", "registry:5000/app:v1", "a#b", "x-y_z" } do
      assert_eq(gitops.set("v: old\n", "v", s), "v: " .. s .. "\n", s)
    end
  end)

  test("an empty value gets one", function()
    local text = fixture("values.yaml")
    local out = assert(gitops.set(text, "extra.empty", "filled"))
    local lines, n = changed_lines(text, out)
    assert_eq(n, 1)
    assert_eq(lines[24], { "  empty:", "  empty: filled" })
    assert_eq(gitops.set("a: \nb: 1\n", "a", "x"), "a: x\nb: 1\n")
    assert_eq(gitops.set("a: # note\n", "a", "x"), "a: x # note\n")
  end)

  test("block scalars, aliases and collections are refused", function()
    local text = fixture("values.yaml")
    assert_raises(function() gitops.set(text, "extra.note", "x") end, "invalid", "extra%.note is a block scalar")
    assert_raises(function() gitops.set(text, "image", "x") end, "invalid", "image is a mapping, not a scalar")
    assert_raises(function()
      gitops.set(fixture("deployment.yaml"), "spec.template.spec.containers[name=api].env[name=RELEASE_COPY].value", "v3")
    end, "invalid", "is an alias")
  end)

  test("the anchored value can be set; its aliases follow", function()
    local text = fixture("deployment.yaml")
    local out = assert(gitops.set(text, "spec.template.spec.containers[name=api].env[name=RELEASE].value", "v2.15.0"))
    local env = yaml.decode(out).spec.template.spec.containers[2].env
    assert_eq(env[2].value, "v2.15.0")
    assert_eq(env[3].value, "v2.15.0")
    assert_match(out, 'value: &release "v2%.15%.0"\n')
  end)

  test("a missing path is not_found (try returns it); bad arguments are misuse at the caller's line", function()
    assert_raises(function() gitops.set("a: 1\n", "b.c", "x") end, "not_found", "the document has no b")
    local out, err = try(gitops.set, "a: 1\n", "b.c", "x")
    assert_nil(out)
    assert_eq(err.kind, "not_found")
    assert_raises(function() gitops.set("a: [1\n", "a", "x") end, "parse")
    assert_misuse(function() gitops.set("a: 1\n", "a", {}) end,
      "gitops.set: value must be a string, a number or a boolean, got table")
    assert_misuse(function() gitops.set(nil, "a", "x") end, "gitops.set: expected a string, got nil")
    assert_misuse(function() gitops.set("a: 1\n", "a", 0 / 0) end, "gitops.set: value must not be NaN")
    assert_misuse(function() gitops.set("a: 1\n", "a", "x", { document = 0 }) end,
      "gitops.set: document must be a positive integer, got integer")
    assert_misuse(function() gitops.set("a: 1\n", "a", "x", { doc = 1 }) end, "gitops.set: unknown option 'doc' (did you mean 'document'?)")
    assert_misuse(function() gitops.get(5, "a") end, "gitops.get: expected a string, got number")
    assert_misuse(function() gitops.get("a: 1\n", "a", "1") end, "gitops.get: options must be a table, got string")
  end)

  test("get reads the value as written", function()
    local v, info = gitops.get(fixture("values.yaml"), "image.tag")
    assert_eq(v, "2.14.0")
    assert_eq(info.style, "double")
  end)
end)

describe("the three shapes", function()
  test("a container's image tag in a Deployment, other containers untouched", function()
    local text = fixture("deployment.yaml")
    local out, old = assert(gitops.set_image(text, { container = "api", tag = "v2.15.0" }))
    assert_eq(old, "registry.example.com/shop/api:v2.14.0")
    local _, n = changed_lines(text, out)
    assert_eq(n, 1)
    local d = yaml.decode_all(out)
    assert_eq(d[1].spec.template.spec.containers[2].image, "registry.example.com/shop/api:v2.15.0")
    assert_eq(d[1].spec.template.spec.initContainers[1].image, "registry.example.com/shop/api:v2.14.0")
    assert_eq(d[1].spec.template.spec.containers[1].image, "registry.example.com/tools/envoy:1.28.0")
  end)

  test("init containers, CronJobs, a full image, a digest", function()
    local text = fixture("deployment.yaml")
    local out = assert(gitops.set_image(text, { container = "migrate", tag = "v2.15.0" }))
    assert_match(out, 'image: "registry%.example%.com/shop/api:v2%.15%.0"   # same image, runs migrations\n')
    out = assert(gitops.set_image(text, { container = "report", image = "registry.example.com/shop/report:v3" }))
    assert_match(out, "image: 'registry%.example%.com/shop/report:v3'\n")
    local digest = "sha256:" .. string.rep("ab", 32)
    out = assert(gitops.set_image(text, { container = "sidecar", digest = digest, kind = "Deployment", name = "api" }))
    assert_match(out, "image: registry%.example%.com/tools/envoy@" .. digest .. "\n")
  end)

  test("a container that is not there, or in two documents", function()
    local text = fixture("deployment.yaml")
    assert_raises(function() gitops.set_image(text, { container = "web", tag = "v1" }) end, "not_found",
      'no container "web"')
    assert_raises(function() gitops.set_image(text .. "---\n" .. text, { container = "api", tag = "v1" }) end,
      "invalid", "2 documents have a container \"api\": pass kind= or name=")
    assert_raises(function() gitops.set_image(text, { container = "api", tag = "v1", kind = "CronJob" }) end,
      "not_found")
    assert_raises(function() gitops.set_image("a: [\n", { container = "api", tag = "v1" }) end, "parse")
  end)

  test("set_image checks its options", function()
    local text = fixture("deployment.yaml")
    assert_misuse(function() gitops.set_image(text, { tag = "v1" }) end, "gitops.set_image: container is required")
    assert_misuse(function() gitops.set_image(text, { container = "api" }) end,
      "gitops.set_image: give exactly one of image, tag and digest")
    assert_misuse(function() gitops.set_image(text, { container = "api", tag = "v 1" }) end,
      'gitops.set_image: tag "v 1" is malformed')
    assert_misuse(function() gitops.set_image(text, { container = "api", tga = "v1" }) end,
      "gitops.set_image: unknown option 'tga' (did you mean 'tag'?)")
    assert_misuse(function() gitops.set_image(text, { container = 5, tag = "v1" }) end,
      "gitops.set_image: container must be a non-empty string, got number")
    assert_misuse(function() gitops.set_image(text, "api") end, "gitops.set_image: options must be a table, got string")
    assert_misuse(function() gitops.set_image(nil, { container = "api", tag = "v1" }) end,
      "gitops.set_image: expected a string, got nil")
  end)

  test("an images: entry of a kustomization", function()
    local text = fixture("kustomization.yaml")
    local out, old = assert(gitops.set_kustomize_image(text, { name = "registry.example.com/shop/api", tag = "v2.15.0" }))
    assert_eq(old, "v2.14.0")
    local lines, n = changed_lines(text, out)
    assert_eq(n, 1)
    assert_eq(lines[10][2], "    newTag: v2.15.0   # keep in step with the worker")
    out = assert(gitops.set_kustomize_image(text, { name = "registry.example.com/shop/worker", tag = "v2.15.0" }))
    assert_match(out, '\n    newTag: "v2%.15%.0"\n')
    local digest = "sha256:" .. string.rep("fe", 32)
    out = assert(gitops.set_kustomize_image(text, { name = "redis", digest = digest }))
    assert_match(out, "digest: " .. digest .. "\n")
    assert_raises(function() gitops.set_kustomize_image(text, { name = "redis", tag = "7" }) end, "not_found",
      'no images entry named "redis" with a newTag field')
    -- other failures pass through as they are
    assert_raises(function() gitops.set_kustomize_image("images: [\n", { name = "redis", tag = "7" }) end, "parse")
    assert_misuse(function() gitops.set_kustomize_image(text, { tag = "7" }) end,
      "gitops.set_kustomize_image: name is required")
  end)

  test("a Helm values key", function()
    local text = fixture("values.yaml")
    local out, old = assert(gitops.set_helm_value(text, "image.tag", "2.15.0"))
    assert_eq(old, "2.14.0")
    local lines, n = changed_lines(text, out)
    assert_eq(n, 1)
    assert_eq(lines[7], { '  tag: "2.14.0"', '  tag: "2.15.0"' })
    out = assert(gitops.set_helm_value(text, "resources.limits.cpu", "750m"))
    assert_match(out, "cpu: 750m     # half a core\n")
  end)
end)

describe("update: commit and push", function()
  local G = require "gitsupport"
  local git = require "relish.git"
  local gate = require "relish._gate"

  -- a manifest repository (bare) with the fixtures, and a clone to work in
  local function manifests(d)
    local remote = G.bare(d, "manifests.git")
    local seed = G.repo(d, "seed", { remote = remote, files = { ["apps/api/deployment.yaml"] = fixture("deployment.yaml"),
      ["apps/api/kustomization.yaml"] = fixture("kustomization.yaml"), ["charts/shop/values.yaml"] = fixture("values.yaml") } })
    G.git(seed, "push", "-q", "origin", "main")
    return remote, G.clone(remote, d .. "/work")
  end

  test("commits the one-value change and pushes it; the git CLI sees exactly that", function()
    local d = tmpdir()
    local remote, work = manifests(d)
    local before = G.rev(remote, "main")
    local r = assert(gitops.update { repo = work, file = "apps/api/deployment.yaml",
      image = { container = "api", tag = "v2.15.0" }, message = "release api v2.15.0" })
    assert_true(r.changed)
    assert_eq(r.old, "registry.example.com/shop/api:v2.14.0")
    assert_eq(r.new, "registry.example.com/shop/api:v2.15.0")
    assert_eq(r.branch, "main")
    assert_eq(G.rev(remote, "main"), r.commit)
    assert_eq(G.git(remote, "rev-parse", "main^"), before)
    assert_eq(G.git(remote, "log", "-1", "--format=%s", "main"), "release api v2.15.0")
    local diff = G.git(remote, "diff", "--numstat", before, "main")
    assert_eq(diff, "1\t1\tapps/api/deployment.yaml")
    local text = G.git(remote, "show", "main:apps/api/deployment.yaml") .. "\n"
    assert_eq(text, (fixture("deployment.yaml"):gsub("shop/api:v2%.14%.0 # the app", "shop/api:v2.15.0 # the app")))
    assert_true(G.fsck(remote))
    assert_true(G.fsck(work))
    assert_eq(G.git(work, "status", "--porcelain"), "")
  end)

  test("the three shapes and a plain path, each one line of the file", function()
    local d = tmpdir()
    local remote, work = manifests(d)
    local repo <close> = assert(git.open(work))
    local cases = {
      { file = "apps/api/kustomization.yaml", kustomize = { name = "registry.example.com/shop/api", tag = "v2.16.0" } },
      { file = "charts/shop/values.yaml", helm = { key = "image.tag", value = "2.16.0" } },
      { file = "charts/shop/values.yaml", path = "replicaCount", value = 4 },
      { file = "apps/api/deployment.yaml", path = { "spec", "replicas" }, value = 5 },
    }
    for _, c in ipairs(cases) do
      local before = G.rev(remote, "main")
      c.repo = repo
      local r = assert(gitops.update(c))
      assert_true(r.changed)
      assert_eq(G.git(remote, "diff", "--numstat", before, "main"), "1\t1\t" .. c.file)
    end
    local values = G.git(remote, "show", "main:charts/shop/values.yaml") .. "\n"
    assert_match(values, '\n  tag: "2%.16%.0"\n')
    assert_match(values, "\nreplicaCount: 4\n")
    assert_match(G.git(remote, "show", "main:apps/api/deployment.yaml"), "\n  replicas: 5        # HPA min is 3\n")
  end)

  test("nothing to change: no commit, no push", function()
    local d = tmpdir()
    local remote, work = manifests(d)
    local before = G.refs(remote)
    local r = assert(gitops.update { repo = work, file = "charts/shop/values.yaml", helm = { key = "image.tag", value = "2.14.0" } })
    assert_false(r.changed)
    assert_nil(r.commit)
    assert_eq(G.refs(remote), before)
    assert_eq(G.git(work, "rev-parse", "HEAD"), before["refs/heads/main"])
  end)

  test("an edit that cannot be made changes nothing", function()
    local d = tmpdir()
    local remote, work = manifests(d)
    local before, local_before = G.refs(remote), G.refs(work)
    assert_raises(function()
      gitops.update { repo = work, file = "apps/api/deployment.yaml", image = { container = "web", tag = "v1" } }
    end, "not_found", 'no container "web"')
    assert_raises(function() gitops.update { repo = work, file = "apps/api/missing.yaml", path = "a", value = "b" } end,
      "not_found", "^gitops%.update: cannot read apps/api/missing%.yaml")
    assert_raises(function()
      gitops.update { repo = work, file = "apps/api/deployment.yaml", edit = function() error({ kind = "mine", message = "no" }) end }
    end, "mine", "^no$")
    local r, err = try(gitops.update, { repo = work, file = "charts/shop/values.yaml", path = "image.nope", value = "x" })
    assert_nil(r)
    assert_eq(err.kind, "not_found")
    assert_eq(G.refs(remote), before)
    assert_eq(G.refs(work), local_before)
  end)

  test("a remote that moved on is a non_fast_forward error", function()
    local d = tmpdir()
    local remote, work = manifests(d)
    local other = G.clone(remote, d .. "/other")
    G.commit(other, { ["README.md"] = "someone else\n" }, "docs: readme")
    G.git(other, "push", "-q", "origin", "main")
    local theirs = G.rev(remote, "main")
    assert_raises(function()
      gitops.update { repo = work, file = "charts/shop/values.yaml", helm = { key = "image.tag", value = "3.0.0" } }
    end, "non_fast_forward")
    assert_eq(G.rev(remote, "main"), theirs)
  end)

  test("the undo of the run's effects reverts the commit and pushes the revert, over later commits", function()
    local d = tmpdir()
    local remote, work = manifests(d)
    local original = fixture("values.yaml")
    local effects = gate.capture(function()
      assert(gitops.update { repo = work, file = "charts/shop/values.yaml", helm = { key = "image.tag", value = "2.15.0" } })
    end)
    assert_eq(#effects, 2)
    assert_eq(effects[1].kind, "git.commit")
    assert_eq(effects[2].kind, "git.push")
    -- someone pushes on top before the rollback
    local other = G.clone(remote, d .. "/other")
    G.commit(other, { ["README.md"] = "later\n" }, "docs: later")
    G.git(other, "push", "-q", "origin", "main")
    for i = #effects, 1, -1 do require("relish.effect").undo(effects[i].kind, effects[i].undo) end
    assert_eq(G.git(remote, "show", "main:charts/shop/values.yaml") .. "\n", original)
    assert_eq(G.git(remote, "show", "main:README.md"), "later")
    assert_match(G.git(remote, "log", "-1", "--format=%s", "main"), '^Revert "chore%(gitops%): set image%.tag')
    assert_eq(G.git(remote, "rev-list", "--count", "main"), "4")
    assert_true(G.fsck(remote))
  end)

  test("in a dry-run nothing is committed or pushed; the plan has both", function()
    local d = tmpdir()
    local remote, work = manifests(d)
    local before, local_before = G.refs(remote), G.refs(work)
    local effects, r = gate.capture(function()
      return assert(gitops.update { repo = work, file = "apps/api/deployment.yaml", image = { container = "api", tag = "v9" } })
    end, { dry_run = true })
    assert_true(r.changed)
    assert_eq(#effects, 2)
    assert_match(effects[1].describe, "commit on main")
    assert_match(effects[2].describe, "push to origin")
    assert_eq(G.refs(remote), before)
    assert_eq(G.refs(work), local_before)
    assert_eq(G.git(work, "status", "--porcelain"), "")
  end)

  test("a repository that is not there fails with relish.git's error", function()
    local d = tmpdir()
    local e = assert_raises(function() gitops.update { repo = d .. "/nothing", file = "a.yaml", path = "a", value = 1 } end,
      "not_found")
    assert_match(e.message, "nothing")
  end)

  test("misuse raises at the caller's line", function()
    local d = tmpdir()
    local _, work = manifests(d)
    assert_misuse(function() gitops.update { repo = work, file = "/abs.yaml", path = "a", value = 1 } end,
      "gitops.update: file must be a path relative to the repository's work tree")
    assert_misuse(function() gitops.update { repo = work, file = "a.yaml" } end,
      "gitops.update: give exactly one of path (with value), image, kustomize, helm and edit")
    assert_misuse(function() gitops.update { repo = work, file = "a.yaml", path = "a", value = 1, helm = {} } end,
      "gitops.update: give exactly one of path (with value), image, kustomize, helm and edit")
    assert_misuse(function() gitops.update { repo = work, file = "a.yaml", path = "a", value = 1, push = 3 } end,
      "gitops.update: push must be a table {remote=, branch=} or false, got number")
    assert_misuse(function() gitops.update { repo = work, file = "a.yaml", path = "a", value = 1, pushh = {} } end,
      "gitops.update: unknown option 'pushh' (did you mean 'push'?)")
    assert_misuse(function() gitops.update { repo = work, file = "a.yaml", path = "a", value = 1, push = { remot = "o" } } end,
      "gitops.update: unknown option 'push.remot' (did you mean 'push.remote'?)")
    assert_misuse(function() gitops.update { repo = 42, file = "a.yaml", path = "a", value = 1 } end,
      "gitops.update: repo must be a path or a repository from git.open, got number")
    assert_misuse(function() gitops.update { repo = work, file = "a.yaml", path = "a..b", value = 1 } end,
      'gitops.update: path "a..b": empty key at 3')
    assert_misuse(function() gitops.update { repo = work, file = "a.yaml", path = "a", value = 1, document = 0 } end,
      "gitops.update: document must be a positive integer, got integer")
    assert_misuse(function() gitops.update { repo = work, file = "a.yaml", edit = "x" } end,
      "gitops.update: edit must be a function(text) -> new_text, got string")
    assert_misuse(function() gitops.update "x" end, "gitops.update: options must be a table, got string")
    assert_misuse(function() gitops.update { repo = work, file = "charts/shop/values.yaml", edit = function() end } end,
      "gitops.update: edit must return the new text, got nil")
  end)
end)
