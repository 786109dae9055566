-- relish._ask: asking a person during a run. A question (a step's confirm or
-- choose; ctx.confirm, ctx.choose, ctx.ask in a step's run) is answered, in
-- this order, by:
--   1. the answer the step's preview already got (relish runbook asks while
--      it plans a step, then runs the step with the same answers);
--   2. an answer given in advance: -a KEY=ANSWER, --answers FILE;
--   3. the person at the terminal (stdin and stdout a terminal, text output);
--   4. in a dry-run, which never waits for a person: a confirmation is taken
--      as yes, a choice or a question as its default (or a choice's first
--      option), each said as "would ask";
--   5. --yes: a confirmation is yes, a choice or a question its default.
-- Otherwise nobody can answer: the error "unanswered" (exit 2 when the run
-- changed nothing). Every question and answer is journaled ("prompt" and
-- "answer" events, with the step, who answered and when; a secret as ***).
--
-- KEY: a step's confirm and choose are the step's name; ctx.confirm,
-- ctx.choose and ctx.ask are "STEP.ID", ID their id= (else their question);
-- "STEP.*" answers every ctx.confirm of the step.
local errors = require "relish._errors"
local host = require "relish._host"
local J = require "relish.journal"
local loop = require "relish._loop"
local secret = require "relish.secret"

local M = {}

M.POLL = 0.1 -- seconds between two looks at stdin

-- read_line(out, question, accept [, opts]) -> accept's value, or nil when
-- stdin ended. Asks question on the terminal until accept(line) returns a
-- value (nil and a hint: asked again under the hint). Polls stdin between
-- sleeps on the event loop, so the run's other tasks go on while a person
-- thinks; Ctrl-C raises "interrupted" from the sleep. opts.secret: typed
-- unseen (echo off, back on however this ends); opts.on_close() runs however
-- it ends.
function M.read_line(out, question, accept, opts)
  opts = opts or {}
  host.progress(nil) -- the spinner would draw over the question
  local echo_was = opts.secret and host.tty_echo(0, false)
  local _ <close> = setmetatable({}, { __close = function()
    if echo_was then host.tty_echo(0, true) end
    out:prompt(nil)
    if opts.on_close then opts.on_close() end
  end })
  out:prompt(question)
  local buf = ""
  while true do
    local got = host.read_ready(0)
    if got == "" then
      out:write("\n")
      return nil
    end
    if got then
      buf = buf .. got
      while true do
        local line, rest = buf:match("^([^\n]*)\n(.*)$")
        if not line then break end
        buf = rest
        if opts.secret then out:write("\n") end -- the Enter was not echoed either
        local v, hint = accept((line:gsub("\r$", "")))
        if v ~= nil then return v end
        out:line("      " .. hint)
      end
    end
    loop.sleep(M.POLL)
  end
end

-- ---- what an answer may be ------------------------------------------------------

local CONFIRM = { y = "yes", yes = "yes", n = "no", no = "no", q = "quit", quit = "quit" }

local function trim(s) return (s:match("^%s*(.-)%s*$")) end

-- accept functions: text -> the answer, or nil and why not
local function accept_confirm(text)
  local a = CONFIRM[trim(text):lower()]
  if a then return a end
  return nil, "please answer yes, no or quit"
end

-- at a terminal a number is the position in the list shown; an answer
-- given in advance names the option (a number only when no option is
-- named so: -a pick=1 with options "3", "2", "1" is "1")
local function accept_choose(q, at_terminal)
  return function(text)
    local t = trim(text)
    local low = t:lower()
    if t == "" and q.default then return q.default end
    if q.skip and (low == "skip" or low == "s") then return "skip" end
    if low == "quit" or low == "q" then return "quit" end
    if not at_terminal then
      for _, o in ipairs(q.options) do if o.value == t then return o.value end end
    end
    local n = math.tointeger(tonumber(t))
    if n and q.options[n] then return q.options[n].value end
    for _, o in ipairs(q.options) do if o.value == t then return o.value end end
    -- a unique prefix, ignoring case
    local found
    for _, o in ipairs(q.options) do
      if t ~= "" and o.value:lower():sub(1, #low) == low then
        if found then found = false break end
        found = o.value
      end
    end
    if found then return found end
    return nil, string.format("please answer a number from 1 to %d or an option's name%s, or quit", #q.options,
      q.skip and ", skip" or "")
  end
end

local function accept_ask(q)
  return function(text)
    local t = q.secret and text or trim(text)
    if t == "" then
      if q.default ~= nil then t = q.default else return nil, "an answer is needed" end
    end
    if q.match and not t:match(q.match) then
      return nil, q.secret and string.format("the answer does not match %s", q.match)
        or string.format("%q does not match %s", t, q.match)
    end
    if q.validate then
      local ok, fine, why = pcall(q.validate, t)
      if not ok then return nil, (tostring(type(fine) == "table" and fine.message or fine):gsub("^[^\n]-:%d+: ", "", 1)) end
      if fine == false or (fine == nil and why ~= nil) then
        return nil, why ~= nil and tostring(why) or "the answer was refused by its validate function"
      end
    end
    return t
  end
end

local function accept_for(q, at_terminal)
  if q.kind == "confirm" then return accept_confirm end
  if q.kind == "choose" then return accept_choose(q, at_terminal) end
  return accept_ask(q)
end

-- the question as the terminal shows it
local function terminal_text(q)
  if q.kind == "confirm" then
    return string.format("    ? %s [yes/no/quit] ", q.question)
  elseif q.kind == "choose" then
    return string.format("      number or name%s%s, %squit: ", q.default and
      string.format(" (Enter: %s)", q.default) or "", "", q.skip and "skip, " or "")
  end
  local extra = q.secret and " (typed unseen)" or ""
  if q.default ~= nil and not q.secret then extra = extra .. string.format(" [%s]", q.default) end
  return string.format("    ? %s%s: ", q.question, extra)
end

-- ---- the asker of a run ---------------------------------------------------------

local Asker = {}
Asker.__index = Asker

-- new{out=, journal=, run_id=, dry_run=, yes=, answers = {KEY = {value=, via=}},
-- terminal=} -> an asker; asker.pause_clock(), when set, is called before a
-- person is asked and returns the function called once they answered
function M.new(o)
  return setmetatable({ out = o.out, journal = o.journal, run_id = o.run_id, dry_run = o.dry_run, yes = o.yes,
    answers = o.answers or {}, terminal = o.terminal, used = {} }, Asker)
end

-- Whether the person at this process's terminal can be asked.
function M.terminal(out)
  return host.isatty(0) and out.tty and out.format == "text" or false
end

-- The answer given in advance for key: {value=, via=} or nil.
function Asker:given(q)
  local a = self.answers[q.key]
  if a == nil and q.wildcard then a = self.answers[q.wildcard] end
  return a
end

-- journals (unless a preview replays it) and shows an answer not typed here
function Asker:record(q, answer, via, typed)
  local shown = q.secret and "***" or answer
  if q.preview_of then return end -- said when the preview asked it
  local actor = J.actor()
  self.journal:event(self.run_id, "prompt", secret.redact(q.question), actor, q.step)
  self.journal:event(self.run_id, "answer", string.format("%s (via %s)", secret.redact(shown), via), actor, q.step)
  self.out:event("answer", { step = q.step_name, key = q.key, question = q.question, answer = shown, via = via,
    by = actor, shown = typed })
end

local function unanswered(q, why)
  local how = q.kind == "confirm" and "yes|no" or q.kind == "choose" and "OPTION" or "VALUE"
  local e = errors.value("unanswered", "%s: %q needs an answer and %s: give -a %s=%s or --answers FILE%s",
    q.kind == "ask" and "ctx.ask" or q.scope, q.question, why, q.key:find("[%s\"']") and ("'" .. q.key .. "'") or q.key,
    how, q.kind == "confirm" and ", or --yes" or (q.default and "" or ""))
  e.key = q.key
  return e
end

-- get(q) -> the answer. q = {kind = "confirm"|"choose"|"ask", key=, step=,
-- step_name=, scope=, question=, options=, default=, skip=, match=,
-- validate=, secret=, wildcard=}
function Asker:get(q)
  -- 1. the preview asked it already: the same answer, said once
  local queue = self.replay and self.replay[q.key]
  if queue and #queue > 0 then
    self.last_via = "preview"
    return table.remove(queue, 1)
  end
  local answer, via, typed = self:resolve(q)
  self.last_via = via
  if self.recording then
    local list = self.recording[q.key] or {}
    list[#list + 1] = answer
    self.recording[q.key] = list
  end
  self:record(q, answer, via, typed)
  if q.secret then return secret.value(answer, q.key) end
  return answer
end

function Asker:resolve(q)
  local accept = accept_for(q)
  -- 2. given in advance
  local given = self:given(q)
  if given then
    local v, why = accept(tostring(given.value))
    if v == nil then
      local e = errors.value("unanswered", "%s %s=%s: %s", given.via, q.key, q.secret and "***" or
        tostring(given.value), why)
      e.key = q.key
      error(e, 0)
    end
    self.used[q.key] = true
    return v, given.via
  end
  -- 3. the person at the terminal (a dry-run asks only what shapes its plan)
  if self.terminal and not (self.dry_run and q.kind == "confirm") then
    if q.kind == "choose" then
      self.out:line(string.format("    ? %s", q.question))
      for i, o in ipairs(q.options) do
        self.out:line(string.format("        %d) %s%s%s", i, o.value, o.text and ("  " .. o.text) or "",
          q.default == o.value and "  (default)" or ""))
      end
    end
    -- the time a person takes to answer is not the step's: its deadline
    -- waits meanwhile
    local resume = self.pause_clock and self.pause_clock()
    local v = M.read_line(self.out, terminal_text(q), accept_for(q, true), { secret = q.secret, on_close = resume })
    if v == nil then error(unanswered(q, "stdin ended before an answer"), 0) end
    return v, "terminal", true
  end
  -- 4. a dry-run: what the plan assumes
  if self.dry_run then
    if q.kind == "confirm" then return "yes", "dry-run: would ask" end
    if q.default ~= nil then return q.default, "dry-run: the default" end
    if q.kind == "choose" then return q.options[1].value, "dry-run: the first option" end
    error(unanswered(q, "a dry-run asks nobody and it has no default"), 0)
  end
  -- 5. --yes
  if self.yes then
    if q.kind == "confirm" then return "yes", "--yes" end
    if q.default ~= nil then return q.default, "--yes: the default" end
    error(unanswered(q, "--yes gives only confirmations and defaults"), 0)
  end
  error(unanswered(q, "stdin is not a terminal"), 0)
end

-- Answers given in advance that no question took (at the end of a run: a
-- misspelt key is worth a warning).
function Asker:unused()
  local out = {}
  for k in pairs(self.answers) do
    if not self.used[k] and not k:find("%.%*$") then out[#out + 1] = k end
  end
  table.sort(out)
  return out
end

-- ---- answers given in advance -----------------------------------------------------

-- answers(list of "KEY=ANSWER", file or nil) -> {KEY = {value=, via=}};
-- the file is YAML or JSON: a map of KEY: ANSWER. -a wins over the file.
function M.answers(list, file)
  local out = {}
  if file then
    local fh, err = io.open(file, "rb")
    if not fh then errors.invalid("--answers: cannot read " .. tostring(err)) end
    local text = fh:read("a")
    fh:close()
    local ok, doc = pcall(require("relish.yaml").decode, text)
    if not ok then
      errors.invalid(string.format("--answers %s: not YAML or JSON: %s", file,
        tostring(type(doc) == "table" and doc.message or doc)))
    end
    if type(doc) ~= "table" then
      errors.invalid(string.format("--answers %s: expected a map of STEP: ANSWER", file))
    end
    for k, v in pairs(doc) do
      if type(k) ~= "string" or (type(v) ~= "string" and type(v) ~= "number" and type(v) ~= "boolean") then
        errors.invalid(string.format("--answers %s: %s: expected STEP: ANSWER (text, a number or yes/no)", file,
          tostring(k)))
      end
      if type(v) == "boolean" then v = v and "yes" or "no" end
      out[k] = { value = tostring(v), via = "answers file" }
    end
  end
  for _, kv in ipairs(list or {}) do
    local k, v = kv:match("^([^=]+)=(.*)$")
    if not k then errors.invalid(string.format("-a %s: expected STEP=ANSWER", kv)) end
    out[k] = { value = v, via = "-a" }
  end
  return out
end

-- check_answers(recipe, answers, file): every key names a step (STEP or
-- STEP.ID), and an answer to a step's own choose (options written out) is
-- one of them; raises a usage error listing every problem.
function M.check_answers(recipe, answers, file)
  local problems, names, by_name = {}, {}, {}
  for i, s in ipairs(recipe.steps) do
    names[i] = s.name
    by_name[s.name] = s
  end
  for key, a in pairs(answers) do
    local s = by_name[key]
    if not s then
      -- the longest step name that prefixes it with a "."
      for name, st in pairs(by_name) do
        if key:sub(1, #name + 1) == name .. "." and (not s or #name > #s.name) then s = st end
      end
      if not s then
        local near = host.nearest(key:match("^([^.]*)") or key, names)
        problems[#problems + 1] = string.format("answer '%s': no step of that name%s", key,
          near and string.format(" (did you mean '%s'?)", near) or "")
      end
    elseif s.check then
      problems[#problems + 1] = string.format("answer '%s': %q is a check, it asks nothing", key, key)
    elseif s.choose then
      -- options a function gives are known at run time: the answer is checked then
      local v = type(s.choose) ~= "table" or
        accept_choose({ options = s.choose.options, default = s.choose.default, skip = true })(a.value)
      if v == nil then
        local opts = {}
        for i, o in ipairs(s.choose.options) do opts[i] = o.value end
        problems[#problems + 1] = string.format("answer '%s': %q is not one of %s, skip, quit", key, a.value,
          table.concat(opts, ", "))
      end
    elseif not s.confirm and not s.choose then
      -- a step asks at its start only with confirm or choose (or, in
      -- relish runbook, when it changes something): yes, no, quit fit
      if not CONFIRM[trim(a.value):lower()] then
        problems[#problems + 1] = string.format("answer '%s': %q is not yes, no or quit", key, a.value)
      end
    elseif s.confirm and not CONFIRM[trim(a.value):lower()] then
      problems[#problems + 1] = string.format("answer '%s': %q is not yes, no or quit", key, a.value)
    end
  end
  if #problems > 0 then
    table.sort(problems)
    errors.invalid(string.format("%s: invalid answers:\n  %s", file or recipe.name, table.concat(problems, "\n  ")))
  end
end

-- needed(recipe, answers, opts{yes=, guided=}) -> the questions a run without
-- a terminal could not answer, known before it starts (a step's confirm and
-- choose; in relish runbook, every step's confirmation): lines for a usage
-- error, empty when none.
function M.needed(recipe, answers, opts)
  local missing = {}
  for _, s in ipairs(recipe.steps) do
    if s.check then goto continue end
    if s.choose then
      -- a function's default is known at run time (none: unanswered then)
      local default = type(s.choose) ~= "table" or s.choose.default
      if not answers[s.name] and not (opts.yes and default) then
        missing[#missing + 1] = string.format("step %q chooses%s: -a '%s=OPTION'", s.name,
          opts.yes and " and has no default" or "", s.name)
      end
      if s.confirm and not opts.yes and not answers[s.name .. ".confirm"] then
        missing[#missing + 1] = string.format("step %q asks for a confirmation: -a '%s.confirm=yes' (or --yes)",
          s.name, s.name)
      end
    elseif (s.confirm or opts.guided) and not opts.yes and not answers[s.name] then
      missing[#missing + 1] = string.format("step %q asks for a confirmation: -a '%s=yes' (or --yes)", s.name, s.name)
    end
    ::continue::
  end
  return missing
end

return M
