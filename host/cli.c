/* cli.c: the command line. Each command is a row of the table below (its
 * flags, its help); parsing and help are generic, the work is done by a C
 * function or by the Lua module relish.cli.<name> of the stdlib. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostint.h"

typedef struct {
  const char *name;    /* "dry-run" */
  char short_name;     /* 'p' or 0 */
  const char *value;   /* metavar, or NULL for a boolean flag */
  int repeat;          /* may be given several times: a list */
  const char *choices; /* "text|json" or NULL */
  const char *help;
} cli_flag;

typedef struct cli_command cli_command;
struct cli_command {
  const char *name;
  const char *args; /* "FILE [ARG]..." */
  const char *summary;
  const char *help;
  const cli_flag *flags;
  int min_pos, max_pos; /* max -1: unlimited */
  int passthrough;      /* after the first positional, everything is positional */
  int (*run)(lua_State *L, const cli_command *cmd, int argc, char **argv);
};

static int run_lua(lua_State *L, const cli_command *cmd, int argc, char **argv);
static int parse(lua_State *L, const cli_command *c, int argc, char **argv);
static int run_module(lua_State *L, const cli_command *cmd, int argc, char **argv);
static int run_help(lua_State *L, const cli_command *cmd, int argc, char **argv);

static const cli_flag no_flags[] = {{0}};

static const cli_flag test_flags[] = {
    {"filter", 'f', "PATTERN", 0, NULL, "run only tests whose full name contains PATTERN"},
    {"verbose", 'v', NULL, 0, NULL, "print every test, not only failures"},
    {0}};

static const cli_flag install_flags[] = {
    {"frozen", 0, NULL, 0, NULL,
     "install exactly the lock (CI): exit 2 if it does not match the manifest"},
    {"update", 'u', NULL, 0, NULL,
     "move the named libraries (default: all) to the newest their constraints allow"},
    {"output", 0, "FORMAT", 0, "text|json", "text (default) or json"},
    {0}};

static const cli_flag outdated_flags[] = {
    {"output", 0, "FORMAT", 0, "text|json", "text (default) or json"}, {0}};

static const cli_flag version_flags[] = {
    {"output", 0, "FORMAT", 0, "text|json", "text (default) or json"}, {0}};

#define STATE_FLAG                                                                                 \
  {                                                                                                \
    "state", 0, "URL", 0, NULL,                                                                    \
        "journal: sqlite:PATH (default $RELISH_STATE or $XDG_STATE_HOME/relish/journal.db)"        \
  }
#define OUTPUT_FLAG                                                                                \
  { "output", 0, "FORMAT", 0, "text|json", "text for people (default), json: one event per line" }
#define PARAM_FLAG                                                                                 \
  { "param", 'p', "KEY=VALUE", 1, NULL, "set a recipe param (repeatable)" }
#define WAIT_LOCK_FLAG                                                                             \
  {                                                                                                \
    "wait-lock", 0, "DURATION", 0, NULL,                                                           \
        "wait up to DURATION (30s, 10m) for a held lock instead of exiting 4"                      \
  }

#define YES_FLAG                                                                                   \
  { "yes", 'y', NULL, 0, NULL, "answer yes to confirmations (and take defaults)" }
#define ANSWER_FLAG                                                                                \
  {                                                                                                \
    "answer", 'a', "STEP=ANSWER", 1, NULL,                                                         \
        "answer a step's question in advance (STEP.ID for ctx.ask; repeatable)"                    \
  }
#define ANSWERS_FLAG                                                                               \
  { "answers", 0, "FILE", 0, NULL, "answers in advance from a YAML or JSON map STEP: ANSWER" }

static const cli_flag run_flags[] = {
    PARAM_FLAG,   {"dry-run", 'n', NULL, 0, NULL, "plan only: show every change, change nothing"},
    YES_FLAG,     ANSWER_FLAG,
    ANSWERS_FLAG, WAIT_LOCK_FLAG,
    OUTPUT_FLAG,  STATE_FLAG,
    {0}};

static const cli_flag runbook_flags[] = {
    PARAM_FLAG,   {"dry-run", 'n', NULL, 0, NULL, "walk the whole runbook, change nothing"},
    YES_FLAG,     ANSWER_FLAG,
    ANSWERS_FLAG, WAIT_LOCK_FLAG,
    OUTPUT_FLAG,  STATE_FLAG,
    {0}};

static const cli_flag plan_flags[] = {
    PARAM_FLAG,
    {"out", 'o', "PLAN.json", 0, NULL, "save the plan, to be executed by 'relish apply'"},
    OUTPUT_FLAG,
    STATE_FLAG,
    {0}};

static const cli_flag apply_flags[] = {WAIT_LOCK_FLAG, OUTPUT_FLAG, STATE_FLAG, {0}};

static const cli_flag rollback_flags[] = {
    {"dry-run", 'n', NULL, 0, NULL, "show what would be undone, undo nothing"},
    {"force", 0, NULL, 0, NULL, "undo also what was changed since the run (overwrite it)"},
    WAIT_LOCK_FLAG,
    OUTPUT_FLAG,
    STATE_FLAG,
    {0}};

static const cli_flag resume_flags[] = {PARAM_FLAG,  YES_FLAG,   WAIT_LOCK_FLAG,
                                        OUTPUT_FLAG, STATE_FLAG, {0}};

static const cli_flag history_flags[] = {
    {"recipe", 'r', "NAME", 0, NULL, "only runs of this recipe"},
    {"limit", 'l', "N", 0, NULL, "at most N runs (default 20)"},
    {"format", 'f', "FORMAT", 0, "text|json|html",
     "text (default), json, or html (links: SHORT_ID.html)"},
    {"output", 0, "FORMAT", 0, "text|json|html", "the same as --format"},
    STATE_FLAG,
    {0}};

static const cli_flag show_flags[] = {
    {"format", 'f', "FORMAT", 0, "text|json|markdown|html",
     "text (default), json, markdown or html"},
    {"output", 0, "FORMAT", 0, "text|json|markdown|html", "the same as --format"},
    STATE_FLAG,
    {0}};

/* Flags that are another spelling of a flag of the same command: they set
 * that flag (given both ways, the last wins). */
static const struct {
  const cli_flag *flag;
  const char *name;
} aliases[] = {{&show_flags[1], "format"}, {&history_flags[3], "format"}}; /* --output */

static const cli_flag lock_flags[] = {OUTPUT_FLAG, STATE_FLAG, {0}};

static const cli_flag dora_flags[] = {
    {"since", 's', "DURATION", 0, NULL,
     "the window: deployments that ended in the last DURATION (default 30d)"},
    {"recipe", 'r', "NAME", 0, NULL, "only deployments made by this recipe"},
    {"service", 0, "S", 0, NULL, "only this service"},
    {"environment", 'e', "E", 0, NULL, "only this environment"},
    {"format", 'f', "FORMAT", 0, "table|json|prometheus", "table (default), json or prometheus"},
    STATE_FLAG,
    {0}};

static const cli_flag doc_flags[] = {
    {"out", 'o', "DIR", 0, NULL,
     "write one FILE.md per recipe (and index.md for several) into DIR"},
    {"param", 'p', "KEY=VALUE", 1, NULL,
     "list the actions a dry-run with these params plans (repeatable)"},
    {0}};

static const cli_command commands[] = {
    {"run", "FILE", "run a recipe",
     "Runs the recipe in FILE: params are checked first (every problem listed,\n"
     "exit 2), the recipe's lock is taken, then the steps run in order. Every\n"
     "change goes through the effect gate and is journaled before it happens; on\n"
     "a failure the run is rolled back, newest change first (on_failure =\n"
     "\"stop\" leaves it for 'relish resume'). With --dry-run nothing changes and\n"
     "the plan is shown.",
     run_flags, 1, 1, 0, run_module},
    {"runbook", "FILE", "run a runbook: guided, confirmable steps",
     "Runs FILE for a person at a terminal: its facts (severity, service, owner,\n"
     "links) and step list first; then each check shows what it finds, and before\n"
     "each step that changes something its planned changes (a dry-run of that\n"
     "step) and a confirmation: yes runs it, no skips it, quit stops the runbook\n"
     "(what was done stays: resume or rollback). Ctrl-C rolls back. Every\n"
     "question, answer, skip and note is journaled with the actor ($RELISH_ACTOR,\n"
     "else the login user) and the time. Without a terminal the answers must be\n"
     "given in advance (-a, --answers, --yes), or nothing runs (exit 2).\n"
     "--dry-run walks the whole runbook and changes nothing.",
     runbook_flags, 1, 1, 0, run_module},
    {"plan", "FILE", "show what a run would change; optionally save the plan",
     "A dry-run of FILE: reads live state, changes nothing, and prints every\n"
     "action the run would take (with a diff for file writes). With -o the plan\n"
     "is saved: 'relish apply PLAN.json' then executes exactly that plan and\n"
     "stops at the first action that differs or whose live state changed.",
     plan_flags, 1, 1, 0, run_module},
    {"apply", "PLAN.json", "execute a saved plan; stop on drift",
     "Runs the recipe of a saved plan with the plan's params. Before each action\n"
     "the gate checks it is the next planned one, that it writes the same content\n"
     "to the same resolved file, and that the live state it was planned against\n"
     "is unchanged; otherwise the run stops before acting and rolls back. A plan\n"
     "modified after it was made, or whose recipe changed, is refused (exit 2).",
     apply_flags, 1, 1, 0, run_module},
    {"rollback", "RUN_ID", "undo a run's changes, newest first",
     "Undoes the actions of a run (failed, stopped, paused, crashed, or succeeded)\n"
     "newest first, using each step's undo where it has one and the automatic undo\n"
     "of each action otherwise; continues an interrupted rollback. For a run paused\n"
     "at a manual gate it is the decision to abort (journaled). RUN_ID may be\n"
     "'last'. Exit 3 lists what is left to do by hand, among it what was changed\n"
     "since the run (left as is unless --force).",
     rollback_flags, 1, 1, 0, run_module},
    {"resume", "RUN_ID", "continue a stopped, paused or crashed run",
     "Continues a stopped, paused or crashed run from its first unfinished step,\n"
     "with the ctx.state saved after its last finished step. For a run paused at\n"
     "a manual gate it is the decision to promote (journaled): the step that\n"
     "paused runs again and its gate returns \"promote\". RUN_ID may be 'last'.",
     resume_flags, 1, 1, 0, run_module},
    {"history", "", "list past runs", "Lists runs from the journal, newest first.", history_flags,
     0, 0, 0, run_module},
    {"show", "RUN_ID", "show one run: steps, actions, events",
     "Shows a run from the journal: params, steps, every action with its status,\n"
     "and the timeline of logs and notes. RUN_ID may be 'last'.",
     show_flags, 1, 1, 0, run_module},
    {"dora", "", "DORA metrics of the deployments in the journal",
     "Reports, per service and environment, the four DORA metrics of the runs of\n"
     "recipes with deploys = {...}: deployment frequency, lead time for changes\n"
     "(from the commits a run recorded), change failure rate and failed-deployment\n"
     "recovery time, each with its performance band (State of DevOps 2023).\n"
     "See docs/reference/cli.md for the definitions.",
     dora_flags, 0, 0, 0, run_module},
    {"doc", "FILE|DIR...", "Markdown documentation of recipes",
     "Writes Markdown documentation of each recipe from its source: description,\n"
     "params (type, default, constraints), lock, failure policy, notify handlers\n"
     "and every step with its timeout, retries, condition and undo. The recipe is\n"
     "loaded as 'relish run' loads it; nothing runs. With -p it is also dry-run\n"
     "into a throw-away journal (never yours) and the planned actions are listed\n"
     "per step. One FILE goes to stdout; with -o DIR each recipe is DIR/NAME.md and\n"
     "a directory or several files get an index.md.",
     doc_flags, 1, -1, 0, run_module},
    {"lock", "list | break NAME", "list locks or break one",
     "'relish lock list' shows every held lock with its holder and expiry;\n"
     "'relish lock break NAME' removes a lock (logged in the journal).",
     lock_flags, 1, 2, 0, run_module},
    {"install", "[NAME]...", "install the recipe libraries of relish.deps.lua",
     "Resolves the libraries of relish.deps.lua (found in the current directory or\n"
     "above), and theirs, against their Git remotes (one fetch per source, into a\n"
     "mirror in the cache), checks each commit's tree out into the cache\n"
     "($XDG_CACHE_HOME/relish/libs/SHA256) and writes relish.lock. A library in\n"
     "the lock keeps its commit unless --update names it (or names none). With\n"
     "--frozen nothing is resolved: the lock must match the manifest (exit 2\n"
     "naming the difference), its commits are installed and every tree's hash is\n"
     "checked. Works from the cache when a remote cannot be reached.\n"
     "See docs/reference/libraries.md.",
     install_flags, 0, -1, 0, run_module},
    {"outdated", "", "show newer versions of the locked libraries",
     "Fetches each library of relish.lock and shows, per library, the locked\n"
     "version, the newest its constraint allows (what 'relish install --update'\n"
     "would take) and the newest tag; a branch shows its new commit.",
     outdated_flags, 0, 0, 0, run_module},
    {"lua", "FILE [ARG]...", "run a Lua script with every relish module",
     "Runs FILE as a plain Lua script with every relish module available through\n"
     "require. The script's arguments are in the table `arg` (arg[0] is FILE) and\n"
     "in `...`. Undeclared globals are errors. A syntax error exits 2, a runtime\n"
     "error exits 1.",
     no_flags, 1, -1, 1, run_lua},
    {"test", "[PATH]...", "run *_test.lua files",
     "Runs every *_test.lua file under the given PATHs (files or directories;\n"
     "default: the current directory). Tests use test(name, fn), describe(name,\n"
     "fn) and the assert_* helpers (see docs/reference/test.md). Prints each\n"
     "failure with file:line and a final line `N passed, N failed`; exits 1 if\n"
     "anything failed.",
     test_flags, 0, -1, 0, run_module},
    {"version", "", "print the versions of relish and its libraries",
     "Prints relish's version and the versions of Lua, libcurl, libgit2, cJSON,\n"
     "libyaml and SQLite it runs with.",
     version_flags, 0, 0, 0, run_module},
    {"help", "[COMMAND]", "show help for relish or a command",
     "Shows the list of commands, or the usage, flags and description of COMMAND.", no_flags, 0, 1,
     0, run_help},
    {0}};

/* ---- help --------------------------------------------------------------- */

static void print_general_help(FILE *out) {
  fputs("relish: release recipes and runbooks as Lua\n\n"
        "Usage: relish COMMAND [ARGS]...\n\nCommands:\n",
        out);
  for (const cli_command *c = commands; c->name; c++) {
    char left[64];
    snprintf(left, sizeof left, "%s %s", c->name, c->args);
    fprintf(out, "  %-24s %s\n", left, c->summary);
  }
  fputs("\nRun 'relish help COMMAND' or 'relish COMMAND --help' for a command's flags.\n"
        "Exit codes: 0 ok, 1 failed (rolled back), 2 usage or invalid input,\n"
        "3 rollback incomplete, 4 lock held, 5 paused at a manual gate, 130 interrupted.\n",
        out);
}

static void print_command_help(FILE *out, const cli_command *c) {
  fprintf(out, "Usage: relish %s%s%s\n\n%s\n", c->name, *c->args ? " " : "", c->args, c->help);
  fputs("\nFlags:\n", out);
  for (const cli_flag *f = c->flags; f->name; f++) {
    char left[64];
    snprintf(left, sizeof left, "%c%c%s--%s%s%s", f->short_name ? '-' : ' ',
             f->short_name ? f->short_name : ' ', f->short_name ? ", " : "  ", f->name,
             f->value ? " " : "", f->value ? f->value : "");
    fprintf(out, "  %-26s %s%s%s%s\n", left, f->help, f->choices ? " (" : "",
            f->choices ? f->choices : "", f->choices ? ")" : "");
  }
  fprintf(out, "  %-26s %s\n", "-h, --help", "show this help");
}

static const cli_command *find_command(const char *name) {
  for (const cli_command *c = commands; c->name; c++)
    if (strcmp(c->name, name) == 0) return c;
  return NULL;
}

static int unknown_command(lua_State *L, const char *name) {
  const char *names[64];
  size_t n = 0;
  for (const cli_command *c = commands; c->name && n < 64; c++)
    names[n++] = c->name;
  const char *hint = relish_nearest(name, names, n);
  if (hint)
    return relish_raise(L, "usage", "unknown command '%s' (did you mean '%s'?); see 'relish help'",
                        name, hint);
  return relish_raise(L, "usage", "unknown command '%s'; see 'relish help'", name);
}

static int run_help(lua_State *L, const cli_command *cmd, int argc, char **argv) {
  if (parse(L, cmd, argc, argv)) return 0;
  if (argc == 0) {
    print_general_help(stdout);
    return 0;
  }
  const cli_command *c = find_command(argv[0]);
  if (!c) return unknown_command(L, argv[0]);
  print_command_help(stdout, c);
  return 0;
}

/* ---- parsing ------------------------------------------------------------ */

static const cli_flag *find_flag(const cli_command *c, const char *name, char short_name) {
  for (const cli_flag *f = c->flags; f->name; f++)
    if ((name && strcmp(f->name, name) == 0) || (short_name && f->short_name == short_name))
      return f;
  return NULL;
}

static int unknown_flag(lua_State *L, const cli_command *c, const char *arg) {
  const char *names[32];
  char buf[32][40];
  size_t n = 0;
  for (const cli_flag *f = c->flags; f->name && n < 31; f++, n++) {
    snprintf(buf[n], sizeof buf[n], "--%s", f->name);
    names[n] = buf[n];
  }
  names[n++] = "--help";
  char word[64];
  snprintf(word, sizeof word, "%s", arg);
  char *eq = strchr(word, '=');
  if (eq) *eq = '\0';
  const char *hint = relish_nearest(word, names, n);
  if (hint)
    return relish_raise(L, "usage", "%s: unknown flag '%s' (did you mean '%s'?)", c->name, word,
                        hint);
  return relish_raise(L, "usage", "%s: unknown flag '%s'; see 'relish help %s'", c->name, word,
                      c->name);
}

static void set_flag(lua_State *L, int flags, const cli_flag *f, const char *value) {
  if (!f->value) {
    lua_pushboolean(L, 1);
    lua_setfield(L, flags, f->name);
    return;
  }
  if (f->choices) {
    size_t vl = strlen(value);
    const char *p = f->choices;
    int ok = 0;
    while (*p) {
      const char *bar = strchr(p, '|');
      size_t len = bar ? (size_t)(bar - p) : strlen(p);
      if (len == vl && strncmp(p, value, len) == 0) ok = 1;
      p += len + (bar ? 1 : 0);
    }
    if (!ok)
      relish_raise(L, "usage", "--%s must be one of %s, got '%s'", f->name, f->choices, value);
  }
  if (f->repeat) {
    if (lua_getfield(L, flags, f->name) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_newtable(L);
      lua_pushvalue(L, -1);
      lua_setfield(L, flags, f->name);
    }
    lua_pushstring(L, value);
    lua_seti(L, -2, (lua_Integer)luaL_len(L, -2) + 1);
    lua_pop(L, 1);
  } else {
    const char *key = f->name;
    for (size_t i = 0; i < sizeof aliases / sizeof aliases[0]; i++)
      if (aliases[i].flag == f) key = aliases[i].name;
    lua_pushstring(L, value);
    lua_setfield(L, flags, key);
  }
}

/* Parses argv into {flags = {...}, args = {...}} on the stack. Returns 1 if
 * help was asked for (and printed). */
static int parse(lua_State *L, const cli_command *c, int argc, char **argv) {
  lua_createtable(L, 0, 3);
  int opts = lua_gettop(L);
  lua_newtable(L);
  int flags = lua_gettop(L);
  lua_newtable(L);
  int args = lua_gettop(L);
  int npos = 0, only_pos = 0;
  for (int i = 0; i < argc; i++) {
    const char *a = argv[i];
    if (only_pos || a[0] != '-' || a[1] == '\0') {
      lua_pushstring(L, a);
      lua_seti(L, args, ++npos);
      if (c->passthrough) only_pos = 1;
      continue;
    }
    if (strcmp(a, "--") == 0) {
      only_pos = 1;
      continue;
    }
    if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      print_command_help(stdout, c);
      return 1;
    }
    const cli_flag *f;
    const char *value = NULL;
    if (a[1] == '-') {
      char name[64];
      const char *eq = strchr(a + 2, '=');
      size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
      if (len >= sizeof name) return unknown_flag(L, c, a);
      memcpy(name, a + 2, len);
      name[len] = '\0';
      f = find_flag(c, name, 0);
      if (!f) return unknown_flag(L, c, a);
      if (eq) {
        if (!f->value) return relish_raise(L, "usage", "%s: --%s takes no value", c->name, name);
        value = eq + 1;
      }
    } else {
      f = a[2] == '\0' ? find_flag(c, NULL, a[1]) : NULL;
      if (!f && a[2] != '\0' && find_flag(c, NULL, a[1]) && find_flag(c, NULL, a[1])->value) {
        f = find_flag(c, NULL, a[1]); /* -pkey=value */
        value = a + 2;
      }
      if (!f) return unknown_flag(L, c, a);
    }
    if (f->value && !value) {
      if (i + 1 >= argc)
        return relish_raise(L, "usage", "%s: --%s needs a value (%s)", c->name, f->name, f->value);
      value = argv[++i];
    }
    set_flag(L, flags, f, value);
  }
  if (npos < c->min_pos)
    return relish_raise(L, "usage", "%s: missing %s; usage: relish %s %s", c->name, c->args,
                        c->name, c->args);
  if (c->max_pos >= 0 && npos > c->max_pos)
    return relish_raise(L, "usage", "%s: unexpected argument '%s'; usage: relish %s %s", c->name,
                        lua_tostring(L, (lua_geti(L, args, c->max_pos + 1), -1)), c->name, c->args);
  lua_pushstring(L, c->name);
  lua_setfield(L, opts, "command");
  lua_pushvalue(L, args);
  lua_setfield(L, opts, "args");
  lua_pushvalue(L, flags);
  lua_setfield(L, opts, "flags");
  lua_settop(L, opts);
  return 0;
}

/* ---- commands ----------------------------------------------------------- */

static int run_module(lua_State *L, const cli_command *cmd, int argc, char **argv) {
  if (parse(L, cmd, argc, argv)) return 0;
  int opts = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushfstring(L, "relish.cli.%s", cmd->name);
  lua_call(L, 1, 1);
  lua_getfield(L, -1, "main");
  lua_pushvalue(L, opts);
  lua_call(L, 1, 1);
  return (int)luaL_optinteger(L, -1, 0);
}

static int run_lua(lua_State *L, const cli_command *cmd, int argc, char **argv) {
  if (parse(L, cmd, argc, argv)) return 0;
  lua_getfield(L, -1, "args");
  int args = lua_gettop(L);
  lua_geti(L, args, 1);
  const char *path = lua_tostring(L, -1);
  int st = relish_load_user(L, path);
  if (st != LUA_OK) {
    fprintf(stderr, "relish: %s\n", lua_tostring(L, -1));
    return RELISH_EXIT_USAGE;
  }
  lua_remove(L, -2); /* env */
  int fn = lua_gettop(L);
  /* arg table as lua.c builds it: arg[0] = FILE, arg[1..] = its arguments */
  lua_Integer n = (lua_Integer)luaL_len(L, args);
  lua_createtable(L, (int)n, 1);
  for (lua_Integer i = 1; i <= n; i++) {
    lua_geti(L, args, i);
    lua_seti(L, -2, i - 1);
  }
  lua_setglobal(L, "arg");
  luaL_checkstack(L, (int)n, "too many arguments");
  for (lua_Integer i = 2; i <= n; i++)
    lua_geti(L, args, i);
  lua_call(L, (int)n - 1, 0);
  (void)fn;
  return 0;
}

int relish_cli(lua_State *L, int argc, char **argv) {
  if (argc < 2) {
    print_general_help(stderr);
    return RELISH_EXIT_USAGE;
  }
  const char *name = argv[1];
  if (strcmp(name, "-h") == 0 || strcmp(name, "--help") == 0) {
    print_general_help(stdout);
    return 0;
  }
  if (strcmp(name, "--version") == 0)
    name = "version";
  else if (name[0] == '-')
    return relish_raise(L, "usage", "unknown flag '%s' before the command; see 'relish help'",
                        name);
  const cli_command *c = find_command(name);
  if (!c) return unknown_command(L, name);
  return c->run(L, c, argc - 2, argv + 2);
}
