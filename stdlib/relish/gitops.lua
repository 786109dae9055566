-- relish.gitops: change one value in a YAML file of a manifest repository
-- (an image tag, a kustomization image, a Helm value) rewriting only that
-- value's text, then commit and push it; the rollback is a revert.
local errors = require "relish._errors"
local yaml = require "relish.yaml"

local M = {}

-- Raises a usage error located at the first caller outside this file.
local usage = errors.usage_for(debug.getinfo(1, "S").source)

-- opts must be a table of known keys; within names the keys of an option
-- that is itself a table ("push.").
local function check_fields(fname, opts, known, within)
  if opts == nil then usage(fname, "options must be a table, got nil") end
  errors.check_options(usage, fname, opts, known, within)
end

-- Raises the error value of a failure: the step fails (try returns it).
local function fail(kind, fmt, ...)
  error(errors.value(kind, fmt, ...), 0)
end

-- ---- paths ------------------------------------------------------------------

-- parse(s) -> list of keys, 1-based indices and "key=value" selectors |
-- nil, why: the path is the recipe's own text, so a bad one is misuse.
local function parse(s)
  if type(s) == "table" then
    if #s == 0 then return nil, "the path is empty" end
    for i, e in ipairs(s) do
      if type(e) ~= "string" and not (math.type(e) == "integer" and e > 0) then
        return nil, string.format("path element %d must be a string or a positive integer", i)
      end
    end
    return s
  end
  if type(s) ~= "string" then return nil, "path must be a string or a list, got " .. type(s) end
  local out, i, n = {}, 1, #s
  while i <= n do
    local c = s:sub(i, i)
    if c == "[" then
      local close = s:find("]", i + 1, true)
      local quoted = s:match('^%["(.-)"%]', i)
      if quoted then
        out[#out + 1] = quoted
        i = i + #quoted + 4
      elseif not close then
        return nil, string.format("path %q: [ at %d is not closed", s, i)
      else
        local inner = s:sub(i + 1, close - 1)
        if inner:match("^%d+$") then
          local idx = math.tointeger(tonumber(inner))
          if not idx or idx < 1 then return nil, string.format("path %q: index %s must be 1 or more", s, inner) end
          out[#out + 1] = idx
        elseif inner:match("^[^=]+=.*$") then
          out[#out + 1] = inner
        else
          return nil, string.format("path %q: [%s] is neither an index, a key=value selector nor a \"quoted key\"", s, inner)
        end
        i = close + 1
      end
      if i <= n and s:sub(i, i) == "." then i = i + 1 end
    else
      local key = s:match("^[^.%[]+", i)
      if not key then return nil, string.format("path %q: empty key at %d", s, i) end
      out[#out + 1] = key
      i = i + #key
      if i <= n and s:sub(i, i) == "." then
        i = i + 1
        if i > n then return nil, string.format("path %q ends with a dot", s) end
      end
    end
  end
  if #out == 0 then return nil, "the path is empty" end
  return out
end

local function check_path(fname, path)
  local p, err = parse(path)
  if not p then usage(fname, err) end
  return p
end

-- parse_path("spec.template.spec.containers[name=app].image") -> list of
-- keys, 1-based indices and "key=value" selectors; ["a.b"] quotes a key.
-- A malformed path is misuse.
function M.parse_path(s)
  return check_path("gitops.parse_path", s)
end

local function path_text(path)
  if type(path) == "string" then return path end
  local parts = {}
  for i, e in ipairs(path) do
    if math.type(e) == "integer" then parts[#parts + 1] = "[" .. e .. "]"
    elseif e:find("=", 1, true) then parts[#parts + 1] = "[" .. e .. "]"
    elseif e:match("^[%w_%-]+$") then parts[#parts + 1] = (i > 1 and "." or "") .. e
    else parts[#parts + 1] = string.format('["%s"]', e) end
  end
  return table.concat(parts)
end

-- ---- writing one scalar --------------------------------------------------------

local YAML11_WORDS = {}
for w in ("y Y yes Yes YES n N no No NO true True TRUE false False FALSE on On ON off Off OFF " ..
  "null Null NULL ~ .inf .Inf .INF -.inf -.Inf -.INF +.inf +.Inf +.INF .nan .NaN .NAN = <<"):gmatch("%S+") do
  YAML11_WORDS[w] = true
end

-- Whether a plain scalar s would read as something other than a string by a
-- YAML 1.2 core-schema reader or a YAML 1.1 one (kubectl, Helm, PyYAML).
local function reads_typed(s)
  if YAML11_WORDS[s] then return true end
  local u = s:gsub("_", "")
  if u:match("^[-+]?%d+$") or u:match("^[-+]?0[xX]%x+$") or u:match("^[-+]?0[oObB]%d+$") then return true end
  if (u:match("^[-+]?%d*%.?%d*$") or u:match("^[-+]?%d*%.?%d*[eE][-+]?%d+$")) and u:find("%d") then return true end
  if s:match("^[-+]?%d[%d_]*:[0-5]?%d") then return true end -- sexagesimal 1:20 (YAML 1.1)
  if s:match("^%d%d%d%d%-%d%d?%-%d%d?") then return true end  -- a timestamp (YAML 1.1)
  return false
end

-- A string that can be written plain and read back as that very string, in
-- block or flow context.
local function plain_ok(s)
  if s == "" or s:find("[%c\127]") then return false end
  if s:match("^%s") or s:match("%s$") then return false end
  if s:match("^[%-?:,%[%]{}#&*!|>'\"%%@`]") then return false end
  if s:find("[,%[%]{}]") then return false end
  if s:find(": ", 1, true) or s:find(" #", 1, true) or s:match(":$") then return false end
  return not reads_typed(s)
end

local ESCAPES = { ["\\"] = "\\\\", ['"'] = '\\"', ["\n"] = "\\n", ["\t"] = "\\t", ["\r"] = "\\r",
  ["\0"] = "\\0", ["\a"] = "\\a", ["\b"] = "\\b", ["\f"] = "\\f", ["\v"] = "\\v", ["\27"] = "\\e" }

local function double_quoted(s)
  return '"' .. s:gsub('[%c\\"\127]', function(c)
    return ESCAPES[c] or string.format("\\x%02x", c:byte())
  end) .. '"'
end

local function format_number(v)
  if math.type(v) == "integer" then return string.format("%d", v) end
  if v ~= v then return ".nan" end
  if v == math.huge then return ".inf" end
  if v == -math.huge then return "-.inf" end
  for prec = 15, 17 do
    local s = string.format("%." .. prec .. "g", v)
    if tonumber(s) == v then
      if not s:find("[.eEn]") then s = s .. ".0" end
      return s
    end
  end
end

-- The text that replaces a scalar written in `style` with value: the same
-- style where it can hold the value, else double quotes. Strings stay
-- strings; numbers and booleans are written plain where the old value was.
local function render(value, style)
  local tv = type(value)
  if tv == "number" or tv == "boolean" then
    local s = tv == "number" and format_number(value) or tostring(value)
    if style == "single" then return "'" .. s .. "'" end
    if style == "double" then return '"' .. s .. '"' end
    return s
  end
  if style == "plain" and plain_ok(value) then return value end
  if style == "single" and not value:find("[%c\127]") then return "'" .. value:gsub("'", "''") .. "'" end
  return double_quoted(value)
end

local function check_value(fname, value)
  local tv = type(value)
  if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
    usage(fname, "value must be a string, a number or a boolean, got " .. tv)
  end
  if tv == "number" and value ~= value then usage(fname, "value must not be NaN") end
end

-- The decoded value at path in a decoded document (for checking an edit).
local function walk(doc, path)
  local at = doc
  for _, e in ipairs(path) do
    if type(at) ~= "table" then return nil end
    if math.type(e) == "integer" and #at > 0 then
      at = at[e]
    elseif type(e) == "string" and e:find("=", 1, true) and #at > 0 then
      local k, v = e:match("^([^=]*)=(.*)$")
      local found
      for _, item in ipairs(at) do
        if type(item) == "table" and item[k] ~= nil and tostring(item[k]) == v then found = item break end
      end
      at = found
    else
      at = at[tostring(e)]
    end
  end
  return at
end

local function same_value(decoded, value)
  if type(value) == "string" then return decoded == value end
  if type(value) == "number" then return type(decoded) == "number" and decoded == value end
  return decoded == value
end

local LOCATE_FIELDS = { document = true }

-- The {document=} options of get and set, checked here so that misuse is
-- reported at the caller, not inside yaml.locate.
local function check_locate_opts(fname, opts)
  if opts == nil then return nil end
  check_fields(fname, opts, LOCATE_FIELDS)
  local d = opts.document
  if d ~= nil and not (math.type(d) == "integer" and d > 0) then
    usage(fname, "document must be a positive integer, got " .. (math.type(d) or type(d)))
  end
  return opts
end

-- get(text, path [, {document=}]) -> value (the scalar's text), info; raises
-- not_found, invalid or parse (yaml.locate's errors).
function M.get(text, path, opts)
  if type(text) ~= "string" then usage("gitops.get", "expected a string, got " .. type(text)) end
  local p = check_path("gitops.get", path)
  opts = check_locate_opts("gitops.get", opts)
  local start, stop, info = yaml.locate(text, p, opts)
  info.start, info.stop = start, stop
  return info.value, info
end

-- set(text, path, value [, {document=}]) -> new_text, old_value, info; raises
-- like get, and invalid when the value cannot be written in place.
-- Only the bytes of that value change; everything else stays as it was.
local function set(fname, text, path, value, opts)
  if type(text) ~= "string" then usage(fname, "expected a string, got " .. type(text)) end
  local p = check_path(fname, path)
  check_value(fname, value)
  opts = check_locate_opts(fname, opts)
  local start, stop, info = yaml.locate(text, p, opts)
  if info.style == "literal" or info.style == "folded" then
    fail("invalid", "gitops.set: %s is a block scalar (%s); only one-line values can be set",
      path_text(p), info.style == "literal" and "|" or ">")
  end
  local new_text = render(value, info.style)
  local before, after = text:sub(1, start - 1), text:sub(stop)
  if start == stop then
    -- an empty value ("tag:"): the mark sits right after the colon
    if after:sub(1, 1) == " " then
      before, after = before .. " ", after:sub(2)
    else
      new_text = " " .. new_text
    end
    if after ~= "" and not after:match("^[%s]") then new_text = new_text .. " " end
  end
  local out = before .. new_text .. after
  -- the edit must read back as the value asked for, in a document that parses
  local s2, e2 = errors.try(yaml.locate, out, p, { document = info.document })
  if not s2 then
    fail("invalid", "gitops.set: writing %s at %s would break the document: %s", new_text,
      path_text(p), tostring(e2))
  end
  local docs, derr = errors.try(yaml.decode_all, out)
  if not docs then
    fail("invalid", "gitops.set: writing %s at %s would break the file: %s", new_text, path_text(p),
      tostring(derr))
  end
  if not same_value(walk(docs[info.document], p), value) then
    fail("invalid", "gitops.set: %s at %s would not read back as %s", new_text, path_text(p),
      tostring(value))
  end
  info.start, info.stop, info.text = start, stop, text:sub(start, stop - 1)
  info.new_text, info.new_value = new_text, value
  info.path = path_text(p)
  return out, info.value, info
end

function M.set(text, path, value, opts)
  return set("gitops.set", text, path, value, opts)
end

-- ---- the three shapes --------------------------------------------------------

-- An image reference: [registry/]repository[:tag][@digest].
function M.split_image(image)
  local name, digest = image:match("^([^@]*)@(.+)$")
  name = name or image
  local repo, tag = name:match("^(.*[^/]):([^:/]+)$")
  if not repo then repo = name end
  return repo, tag, digest
end

local CONTAINER_LISTS = {
  { "spec", "template", "spec" },                                  -- Deployment, StatefulSet, DaemonSet, Job, ReplicaSet
  { "spec", "jobTemplate", "spec", "template", "spec" },          -- CronJob
  { "spec" },                                                      -- Pod
}

local function concat(a, b)
  local out = {}
  for _, x in ipairs(a) do out[#out + 1] = x end
  for _, x in ipairs(b) do out[#out + 1] = x end
  return out
end

-- Finds the one document and path of container `name` (containers first,
-- then initContainers) in a workload; kind and resource narrow the search.
local function find_container(text, opts)
  local docs = yaml.decode_all(text)
  local found = {}
  for d, doc in ipairs(docs) do
    if type(doc) == "table" and (not opts.kind or doc.kind == opts.kind) and
      (not opts.name or (type(doc.metadata) == "table" and doc.metadata.name == opts.name)) then
      for _, base in ipairs(CONTAINER_LISTS) do
        local spec = walk(doc, base)
        local hit
        if type(spec) == "table" then
          for _, list in ipairs { "containers", "initContainers" } do
            local tail = { list, "name=" .. opts.container, "image" }
            if walk(spec, tail) ~= nil then hit = concat(base, tail) break end
          end
        end
        if hit then found[#found + 1] = { document = d, path = hit, kind = doc.kind } break end
      end
    end
  end
  local what = string.format("container %q%s%s", opts.container, opts.kind and (" in a " .. opts.kind) or "",
    opts.name and (" of " .. opts.name) or "")
  if #found == 0 then fail("not_found", "gitops.set_image: no %s with an image", what) end
  if #found > 1 then
    fail("invalid", "gitops.set_image: %d documents have a %s: pass kind= or name= to pick one", #found, what)
  end
  return found[1]
end

local IMAGE_FIELDS = { container = true, image = true, tag = true, digest = true, kind = true, name = true }

local function check_string(fname, opts, key, pattern)
  local v = opts[key]
  if v == nil then return end
  if type(v) ~= "string" or v == "" then
    usage(fname, key .. " must be a non-empty string, got " .. (v == "" and '""' or type(v)))
  end
  if pattern and not v:match(pattern) then usage(fname, string.format("%s %q is malformed", key, v)) end
end

-- set_image(text, {container=, image= | tag= | digest=, kind=, name=}) ->
-- new_text, old_image, info (raises not_found, invalid, parse): the image of a container in a
-- Deployment (StatefulSet, DaemonSet, Job, CronJob, Pod). tag and digest
-- keep the image's repository.
function M.set_image(text, opts)
  if type(text) ~= "string" then usage("gitops.set_image", "expected a string, got " .. type(text)) end
  check_fields("gitops.set_image", opts, IMAGE_FIELDS)
  check_string("gitops.set_image", opts, "container")
  if opts.container == nil then usage("gitops.set_image", "container is required") end
  check_string("gitops.set_image", opts, "image", "^[^%s]+$")
  check_string("gitops.set_image", opts, "tag", "^[%w_][%w_.%-]*$")
  check_string("gitops.set_image", opts, "digest", "^[%w+._-]+:%x+$")
  check_string("gitops.set_image", opts, "kind")
  check_string("gitops.set_image", opts, "name")
  local n = (opts.image and 1 or 0) + (opts.tag and 1 or 0) + (opts.digest and 1 or 0)
  if n ~= 1 then usage("gitops.set_image", "give exactly one of image, tag and digest") end
  local where = find_container(text, opts)
  local old = M.get(text, where.path, { document = where.document })
  local image = opts.image
  if not image then
    local repo = M.split_image(old)
    image = opts.tag and (repo .. ":" .. opts.tag) or (repo .. "@" .. opts.digest)
  end
  return set("gitops.set_image", text, where.path, image, { document = where.document })
end

local KUSTOMIZE_FIELDS = { name = true, tag = true, new_name = true, digest = true }

-- set_kustomize_image(text, {name=, tag= | new_name= | digest=}) -> new_text,
-- old_value, info (raises not_found, invalid, parse): newTag, newName or digest of the images: entry
-- named name in a kustomization.yaml. The field must be written already.
function M.set_kustomize_image(text, opts)
  if type(text) ~= "string" then usage("gitops.set_kustomize_image", "expected a string, got " .. type(text)) end
  check_fields("gitops.set_kustomize_image", opts, KUSTOMIZE_FIELDS)
  check_string("gitops.set_kustomize_image", opts, "name")
  if opts.name == nil then usage("gitops.set_kustomize_image", "name is required") end
  check_string("gitops.set_kustomize_image", opts, "tag", "^[%w_][%w_.%-]*$")
  check_string("gitops.set_kustomize_image", opts, "new_name", "^[^%s]+$")
  check_string("gitops.set_kustomize_image", opts, "digest", "^[%w+._-]+:%x+$")
  local n = (opts.tag and 1 or 0) + (opts.new_name and 1 or 0) + (opts.digest and 1 or 0)
  if n ~= 1 then usage("gitops.set_kustomize_image", "give exactly one of tag, new_name and digest") end
  local field = opts.tag and "newTag" or opts.new_name and "newName" or "digest"
  local value = opts.tag or opts.new_name or opts.digest
  local out, old, info = errors.try(set, "gitops.set_kustomize_image", text,
    { "images", "name=" .. opts.name, field }, value)
  if not out then
    if old.kind == "not_found" then
      fail("not_found", "gitops.set_kustomize_image: no images entry named %q with a %s field " ..
        "(add `%s:` to it once by hand; relish changes values, it does not add fields)", opts.name, field, field)
    end
    error(old, 0)
  end
  return out, old, info
end

-- set_helm_value(text, key, value) -> new_text, old_value, info (raises as
-- set): key is a dotted path into values.yaml ("image.tag").
function M.set_helm_value(text, key, value)
  if type(key) ~= "string" or key == "" then
    usage("gitops.set_helm_value", "key must be a dotted path like \"image.tag\", got " ..
      (key == "" and '""' or type(key)))
  end
  return set("gitops.set_helm_value", text, key, value)
end

-- The change an update or a plan makes to one text: a function of the text.
local EDIT_FIELDS = { path = true, value = true, document = true, image = true, kustomize = true,
  helm = true, edit = true }

local function edit_of(fname, opts)
  local n = 0
  for _, k in ipairs { "path", "image", "kustomize", "helm", "edit" } do
    if opts[k] ~= nil then n = n + 1 end
  end
  if n ~= 1 then usage(fname, "give exactly one of path (with value), image, kustomize, helm and edit") end
  if opts.path ~= nil then
    check_path(fname, opts.path)
    check_value(fname, opts.value)
    check_locate_opts(fname, { document = opts.document })
    return function(text) return M.set(text, opts.path, opts.value, { document = opts.document }) end,
      path_text(opts.path), opts.value
  elseif opts.image ~= nil then
    if type(opts.image) ~= "table" then
      usage(fname, "image must be a table {container=, tag=|image=|digest=}, got " .. type(opts.image))
    end
    local what = opts.image.image or opts.image.tag or opts.image.digest
    return function(text) return M.set_image(text, opts.image) end,
      string.format("image of container %s", tostring(opts.image.container)), what
  elseif opts.kustomize ~= nil then
    if type(opts.kustomize) ~= "table" then
      usage(fname, "kustomize must be a table {name=, tag=|new_name=|digest=}, got " .. type(opts.kustomize))
    end
    local what = opts.kustomize.tag or opts.kustomize.new_name or opts.kustomize.digest
    return function(text) return M.set_kustomize_image(text, opts.kustomize) end,
      string.format("image %s", tostring(opts.kustomize.name)), what
  elseif opts.helm ~= nil then
    if type(opts.helm) ~= "table" or type(opts.helm.key) ~= "string" then
      usage(fname, "helm must be a table {key=, value=}")
    end
    check_value(fname, opts.helm.value)
    return function(text) return M.set_helm_value(text, opts.helm.key, opts.helm.value) end,
      opts.helm.key, opts.helm.value
  end
  if type(opts.edit) ~= "function" then usage(fname, "edit must be a function(text) -> new_text, got " .. type(opts.edit)) end
  return opts.edit, "edit", nil
end

-- ---- commit and push -----------------------------------------------------------

local UPDATE_FIELDS = { repo = true, file = true, message = true, author = true, push = true }
for k in pairs(EDIT_FIELDS) do UPDATE_FIELDS[k] = true end
local PUSH_FIELDS = { remote = true, branch = true, auth = true }


local function read_file(fname, path, rel)
  local f, err = io.open(path, "rb")
  if not f then fail("not_found", "%s: cannot read %s: %s", fname, rel, tostring(err)) end
  local s = f:read("a")
  f:close()
  return s
end

-- update{repo=, file=, <edit>, message=, author=, push = {remote=, branch=, auth=} | false}
--   -> result; raises the edit's errors, not_found for a file it cannot read,
--   and relish.git's (non_fast_forward, auth, network, ...)
-- <edit> is one of: path= and value= (and document=), image = {...} (as
-- set_image), kustomize = {...} (as set_kustomize_image), helm = {key=, value=},
-- or edit = function(text) return new_text end.
-- Commits the changed file on the current branch (an effect git.commit) and
-- pushes that branch (git.push): rolling back reverts the commit and pushes
-- the revert. result: {changed=, file=, old=, new=, commit=, branch=, pushed=}.
-- When the file already holds the value nothing is committed (changed = false).
function M.update(opts)
  local fname = "gitops.update"
  check_fields(fname, opts, UPDATE_FIELDS)
  if type(opts.file) ~= "string" or opts.file == "" or opts.file:match("^/") or opts.file:find("%.%.") then
    usage(fname, "file must be a path relative to the repository's work tree")
  end
  if opts.message ~= nil and type(opts.message) ~= "string" then
    usage(fname, "message must be a string, got " .. type(opts.message))
  end
  local push = opts.push
  if push == nil then push = {} end
  if push ~= false then
    if type(push) ~= "table" then usage(fname, "push must be a table {remote=, branch=} or false, got " .. type(push)) end
    check_fields(fname, push, PUSH_FIELDS, "push.")
  end
  local edit, what, value = edit_of(fname, opts)
  local git = require "relish.git"
  local repo = opts.repo
  if type(repo) ~= "string" and type(repo) ~= "userdata" then
    usage(fname, "repo must be a path or a repository from git.open, got " .. type(repo))
  end
  -- a repository opened here is closed on every way out, errors included
  local owned <close> = type(repo) == "string" and git.open(repo) or nil
  if owned then repo = owned end
  local root = repo:path():gsub("/$", "")
  local text = read_file(fname, root .. "/" .. opts.file, opts.file)
  local new_text, old, info = edit(text)
  if type(new_text) ~= "string" then usage(fname, "edit must return the new text, got " .. type(new_text)) end
  local branch = repo:branch()
  local result = { file = opts.file, old = old, new = info and info.new_value or value,
    changed = new_text ~= text, branch = push and push.branch or branch, path = info and info.path or what }
  if not result.changed then return result end
  local message = opts.message or string.format("chore(gitops): set %s in %s to %s", result.path, opts.file,
    tostring(value or "new content"))
  result.commit = repo:commit { files = { [opts.file] = new_text }, message = message, author = opts.author }
  if push then
    if not branch then fail("invalid", "%s: HEAD is detached: no branch to push", fname) end
    local spec = "refs/heads/" .. branch .. ":refs/heads/" .. result.branch
    result.pushed = repo:push { remote = push.remote or "origin", refspecs = { spec }, auth = push.auth }
  end
  return result
end

return M
