-- relish.gitops: yaml.locate (where a scalar is written), text edits that
-- leave every other byte of a commented manifest as it was, the three shapes
-- (Deployment image, kustomization images:, Helm values), and update{}
-- committing and pushing to real repositories with revert on rollback.
local yaml = require "relish.yaml"
local gitops = require "relish.gitops"

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
    local n, err = yaml.locate(text, path, { document = 1 })
    assert_nil(n)
    assert_eq(err.kind, "not_found")
    assert_match(err.message, "no spec%.jobTemplate%.spec%.template%.spec%.containers%[name=report%]%.image: " ..
      "spec has no jobTemplate %(document 1%)")
    n, err = yaml.locate(text, path, { document = 3 })
    assert_nil(n)
    assert_match(err.message, "there is no document 3")
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
    local s, err = yaml.locate(text, { "spec", "template" })
    assert_nil(s)
    assert_eq(err.kind, "invalid")
    assert_eq(err.message, "yaml.locate: spec.template is a mapping, not a scalar (document 1)")
    assert_eq(err.path, "spec.template")
    s, err = yaml.locate(text, { "spec", "template", "spec", "containers", "name=api", "env", "name=RELEASE_COPY", "value" })
    assert_nil(s)
    assert_eq(err.kind, "invalid")
    assert_match(err.message, "is an alias, not a scalar")
    s, err = yaml.locate("a: &m {b: 1}\nc: *m\n", { "c", "b" })
    assert_match(err.message, "c%.b passes through an alias at c")
    -- merged keys are not where they are written
    s, err = yaml.locate("base: &b {x: 1}\nd:\n  <<: *b\n", { "d", "x" })
    assert_eq(err.kind, "not_found")
  end)

  test("a missing key, index or selector names where the path stopped", function()
    local text = fixture("deployment.yaml")
    local s, err = yaml.locate(text, { "spec", "template", "spec", "containers", "name=web", "image" })
    assert_nil(s)
    assert_eq(err.message, "yaml.locate: no spec.template.spec.containers[name=web].image: " ..
      "spec.template.spec.containers has no [name=web] (document 1)")
    s, err = yaml.locate(text, { "spec", "template", "spec", "containers", 9 })
    assert_match(err.message, "containers has no %[9%]")
    s, err = yaml.locate("a: 1\n", { "b" })
    assert_eq(err.message, "yaml.locate: no b: the document has no b (document 1)")
    s, err = yaml.locate("", { "a" })
    assert_eq(err.kind, "not_found")
  end)

  test("invalid YAML is a parse error with a position", function()
    local s, err = yaml.locate("a: [1, 2\nb: 3\n", { "a" })
    assert_nil(s)
    assert_eq(err.kind, "parse")
    assert_eq(err.line, 2)
    assert_match(err.message, "^yaml: line 2")
  end)

  test("misuse raises", function()
    assert_error(function() yaml.locate(nil, { "a" }) end, "string expected")
    assert_error(function() yaml.locate("a: 1", {}) end, "non%-empty list")
    assert_error(function() yaml.locate("a: 1", "a") end, "table expected")
    assert_error(function() yaml.locate("a: 1", { "a", 0 }) end, "path element 2 must be a string or a positive integer")
    assert_error(function() yaml.locate("a: 1", { "a" }, { document = 0 }) end, "document must be a positive integer")
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
    for s, why in pairs { [""] = "empty", ["a..b"] = "empty key", ["a."] = "ends with a dot",
      ["a[0]"] = "1 or more", ["a[x]"] = "neither an index", ["a[name=x"] = "not closed" } do
      local p, err = gitops.parse_path(s)
      assert_nil(p, s)
      assert_match(err, why, s)
    end
    assert_error(function() gitops.set("a: 1\n", "a..b", "x") end, "gitops.set: path \"a..b\": empty key")
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
    local out, err = gitops.set(text, "extra.note", "x")
    assert_nil(out)
    assert_eq(err.kind, "invalid")
    assert_match(err.message, "extra%.note is a block scalar")
    out, err = gitops.set(text, "image", "x")
    assert_match(err.message, "image is a mapping, not a scalar")
    out, err = gitops.set(fixture("deployment.yaml"),
      "spec.template.spec.containers[name=api].env[name=RELEASE_COPY].value", "v3")
    assert_match(err.message, "is an alias")
  end)

  test("the anchored value can be set; its aliases follow", function()
    local text = fixture("deployment.yaml")
    local out = assert(gitops.set(text, "spec.template.spec.containers[name=api].env[name=RELEASE].value", "v2.15.0"))
    local env = yaml.decode(out).spec.template.spec.containers[2].env
    assert_eq(env[2].value, "v2.15.0")
    assert_eq(env[3].value, "v2.15.0")
    assert_match(out, 'value: &release "v2%.15%.0"\n')
  end)

  test("a missing path is not_found; bad arguments raise", function()
    local out, err = gitops.set("a: 1\n", "b.c", "x")
    assert_nil(out)
    assert_eq(err.kind, "not_found")
    assert_error(function() gitops.set("a: 1\n", "a", {}) end, "value must be a string, a number or a boolean")
    assert_error(function() gitops.set(nil, "a", "x") end, "gitops.set: text must be a string")
    assert_error(function() gitops.set("a: 1\n", "a", 0 / 0) end, "NaN")
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
    local out, err = gitops.set_image(text, { container = "web", tag = "v1" })
    assert_nil(out)
    assert_eq(err.kind, "not_found")
    assert_match(err.message, 'no container "web"')
    out, err = gitops.set_image(text .. "---\n" .. text, { container = "api", tag = "v1" })
    assert_eq(err.kind, "invalid")
    assert_match(err.message, "2 documents have a container \"api\": pass kind= or name=")
    out, err = gitops.set_image(text, { container = "api", tag = "v1", kind = "CronJob" })
    assert_eq(err.kind, "not_found")
  end)

  test("set_image checks its options", function()
    local text = fixture("deployment.yaml")
    assert_error(function() gitops.set_image(text, { tag = "v1" }) end, "container is required")
    assert_error(function() gitops.set_image(text, { container = "api" }) end, "exactly one of image, tag and digest")
    assert_error(function() gitops.set_image(text, { container = "api", tag = "v 1" }) end, "tag \"v 1\" is malformed")
    assert_error(function() gitops.set_image(text, { container = "api", tga = "v1" }) end, "unknown option 'tga'")
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
    local _, err = gitops.set_kustomize_image(text, { name = "redis", tag = "7" })
    assert_eq(err.kind, "not_found")
    assert_match(err.message, 'no images entry named "redis" with a newTag field')
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
    local r, err = gitops.update { repo = work, file = "apps/api/deployment.yaml", image = { container = "web", tag = "v1" } }
    assert_nil(r)
    assert_eq(err.kind, "not_found")
    r, err = gitops.update { repo = work, file = "apps/api/missing.yaml", path = "a", value = "b" }
    assert_nil(r)
    assert_eq(err.kind, "not_found")
    assert_match(err.message, "cannot read apps/api/missing%.yaml")
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
    local r, err = require("relish._errors").try(gitops.update,
      { repo = work, file = "charts/shop/values.yaml", helm = { key = "image.tag", value = "3.0.0" } })
    assert_nil(r)
    assert_eq(err.kind, "non_fast_forward")
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

  test("misuse raises", function()
    local d = tmpdir()
    local _, work = manifests(d)
    assert_error(function() gitops.update { repo = work, file = "/abs.yaml", path = "a", value = 1 } end, "file must be a path relative")
    assert_error(function() gitops.update { repo = work, file = "a.yaml" } end, "exactly one of path")
    assert_error(function() gitops.update { repo = work, file = "a.yaml", path = "a", value = 1, helm = {} } end, "exactly one of path")
    assert_error(function() gitops.update { repo = work, file = "a.yaml", path = "a", value = 1, push = 3 } end, "push must be")
    assert_error(function() gitops.update { repo = work, file = "a.yaml", path = "a", value = 1, pushh = {} } end, "unknown option 'pushh'")
    assert_error(function() gitops.update { repo = 42, file = "a.yaml", path = "a", value = 1 } end, "repo must be a path")
  end)
end)
