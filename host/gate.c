/* gate.c: the one door every effect goes through. Modules register effect
 * kinds (providers: apply, plan, undo, the undo record's fields); the gate
 * runs the same protocol for every kind: refuse where no effect may happen,
 * check a saved plan, journal the action and its undo record durably before
 * acting, plan instead in a dry-run, mark it done or failed. Undo is
 * dispatched by registration. Fault injection (RELISH_FAULT) lives here. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostint.h"

/* CLOSED: no effect may happen (a recipe file is being loaded). */
enum { MODE_NONE, MODE_CAPTURE, MODE_RUN, MODE_CLOSED };

static struct {
  int mode, dry_run;
  int capture_ref; /* capture: list of effect records */
  int journal_ref, sink_ref, expect_ref, touched_ref, guard_ref;
  char closed_why[256];
  relish_journal *journal;
  char run_id[64];
  lua_Integer step, seq, expect_pos;
  long count, crash_before, crash_after, fail_action, fail_step;
} G = {.capture_ref = LUA_NOREF,
       .journal_ref = LUA_NOREF,
       .sink_ref = LUA_NOREF,
       .expect_ref = LUA_NOREF,
       .touched_ref = LUA_NOREF,
       .guard_ref = LUA_NOREF};

/* Per state, in the registry under these addresses: kind -> provider table;
 * relish.json.encode; thread -> depth of applies and undos running in it. */
static const char PROVIDERS, ENCODE, ACTING;

/* Pushes the registry's table at key, made (weak-keyed if weak) if missing. */
static void push_keyed(lua_State *L, const void *key, int weak) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, key) != LUA_TNIL) return;
  lua_pop(L, 1);
  lua_newtable(L);
  if (weak) {
    lua_createtable(L, 0, 1);
    lua_pushliteral(L, "k");
    lua_setfield(L, -2, "__mode");
    lua_setmetatable(L, -2);
  }
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, key);
}

/* RELISH_FAULT, read at the start of every run: crash-before-action:N and
 * crash-after-action:N kill the process (SIGKILL) around the Nth action;
 * fail-action:N makes the Nth action fail cleanly and fail-step:N every
 * action of step N: journaled, then failed with a "fault" error before
 * acting, as if the action itself had failed (the run rolls back). */
static void parse_faults(void) {
  G.crash_before = G.crash_after = G.fail_action = G.fail_step = 0;
  const char *f = getenv("RELISH_FAULT");
  if (!f) return;
  const char *p;
  if ((p = strstr(f, "crash-before-action:"))) G.crash_before = atol(p + 20);
  if ((p = strstr(f, "crash-after-action:"))) G.crash_after = atol(p + 19);
  if ((p = strstr(f, "fail-action:"))) G.fail_action = atol(p + 12);
  if ((p = strstr(f, "fail-step:"))) G.fail_step = atol(p + 10);
}

static void crash_now(void) {
  fflush(stdout);
  fflush(stderr);
  kill(getpid(), SIGKILL);
  _exit(137);
}

/* Bumped at the start of every run and capture, so a module that keeps
 * per-run state (the fs dry-run overlay) knows when a new one began. */
static lua_Integer session;

lua_Integer relish_gate_session(void) { return session; }

const char *relish_gate_journal_path(void) {
  return G.mode == MODE_RUN ? relish_journal_filename(G.journal) : NULL;
}

int relish_gate_dry_run(lua_State *L) {
  (void)L;
  return G.mode != MODE_NONE && G.dry_run;
}

/* A journaled fingerprint is "LIVE #pin: PIN" when the action has a pin (what
 * it will do); the pin starts after the last separator, since it never
 * holds one. NULL when there is none. */
#define PIN_SEP " #pin: "
static const char *pin_of(const char *fp) {
  const char *pin = NULL;
  for (const char *p = fp; p != NULL && (p = strstr(p, PIN_SEP)) != NULL; p += 1)
    pin = p + strlen(PIN_SEP);
  return pin;
}

/* Pushes a table describing the action (for the sink and the capture list):
 * its fingerprint is the live state, its pin what it will do. */
static void push_action(lua_State *L, const relish_action_row *e, lua_Integer seq,
                        const char *status) {
  lua_createtable(L, 0, 9);
  lua_pushinteger(L, seq);
  lua_setfield(L, -2, "seq");
  lua_pushinteger(L, G.step);
  lua_setfield(L, -2, "step");
  lua_pushstring(L, e->kind);
  lua_setfield(L, -2, "kind");
  lua_pushstring(L, e->target);
  lua_setfield(L, -2, "target");
  lua_pushstring(L, e->describe);
  lua_setfield(L, -2, "describe");
  if (e->detail) {
    lua_pushstring(L, e->detail);
    lua_setfield(L, -2, "detail");
  }
  if (e->fingerprint) {
    const char *pin = pin_of(e->fingerprint);
    size_t len = pin ? (size_t)(pin - e->fingerprint) - strlen(PIN_SEP) : strlen(e->fingerprint);
    lua_pushlstring(L, e->fingerprint, len);
    lua_setfield(L, -2, "fingerprint");
    if (pin) {
      lua_pushstring(L, pin);
      lua_setfield(L, -2, "pin");
    }
  }
  lua_pushboolean(L, e->irreversible);
  lua_setfield(L, -2, "irreversible");
  lua_pushstring(L, status);
  lua_setfield(L, -2, "status");
}

static void emit(lua_State *L, const char *event, int action, const char *error) {
  if (G.sink_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, G.sink_ref);
  lua_pushstring(L, event);
  lua_pushvalue(L, action);
  if (error) {
    lua_pushstring(L, error);
    lua_setfield(L, -2, "error");
  }
  lua_call(L, 2, 0);
}

/* Marks target as touched by this run; returns whether it was already. A
 * dry-run does not act, so the live state of a target an earlier action of
 * the run changed differs between plan and apply by design: only the first
 * action on a target carries a precondition worth checking. */
static int touch(lua_State *L, const char *target) {
  if (G.touched_ref == LUA_NOREF) return 0;
  lua_rawgeti(L, LUA_REGISTRYINDEX, G.touched_ref);
  int seen = lua_getfield(L, -1, target) != LUA_TNIL;
  lua_pop(L, 1);
  if (!seen) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, target);
  }
  lua_pop(L, 1);
  return seen;
}

/* A saved plan expects this action next: same kind and target, the same pin
 * (what it will do: where it writes, what) and, for the first action on a
 * target, the same fingerprint of the live state. */
static void check_expected(lua_State *L, const relish_action_row *e, int touched) {
  if (G.expect_ref == LUA_NOREF) return;
  lua_rawgeti(L, LUA_REGISTRYINDEX, G.expect_ref);
  int list = lua_gettop(L);
  G.expect_pos++;
  relish_push_error(L, "drift", "");
  int err = lua_gettop(L);
  if (lua_geti(L, list, G.expect_pos) != LUA_TTABLE) {
    lua_pushfstring(L, "the plan has no action %d, but the recipe now does %s %s",
                    (int)G.expect_pos, e->kind, e->target);
    lua_setfield(L, err, "message");
    lua_pushvalue(L, err);
    lua_error(L);
  }
  int want = lua_gettop(L);
  lua_getfield(L, want, "kind");
  lua_getfield(L, want, "target");
  lua_getfield(L, want, "fingerprint");
  const char *wk = lua_tostring(L, -3), *wt = lua_tostring(L, -2), *wf = lua_tostring(L, -1);
  const char *fp = e->fingerprint ? e->fingerprint : "";
  const char *wpin = pin_of(wf), *pin = pin_of(fp);
  if (!wk || !wt || strcmp(wk, e->kind) != 0 || strcmp(wt, e->target) != 0) {
    lua_pushfstring(L, "action %d differs from the plan:\n  planned: %s %s\n  now:     %s %s",
                    (int)G.expect_pos, wk ? wk : "?", wt ? wt : "?", e->kind, e->target);
  } else if ((wpin || pin) && strcmp(wpin ? wpin : "", pin ? pin : "") != 0) {
    lua_pushfstring(L,
                    "what action %d (%s %s) would do changed since the plan: it now resolves "
                    "to another file or writes other content: %s\n"
                    "  planned: %s\n  now:     %s",
                    (int)G.expect_pos, e->kind, e->target, e->describe, wpin ? wpin : "(none)",
                    pin ? pin : "(none)");
  } else if (!touched && strcmp(wf ? wf : "", fp) != 0) {
    lua_pushfstring(L,
                    "the live state of %s changed since the plan (action %d, %s)\n"
                    "  planned against: %s\n  live now:        %s",
                    e->target, (int)G.expect_pos, e->kind, wf ? wf : "(none)", fp);
  } else {
    lua_settop(L, list - 1);
    return;
  }
  lua_setfield(L, err, "message");
  lua_pushvalue(L, err);
  lua_error(L);
}

/* Journals (or plans, or captures) the action row; record is the stack
 * index of its undo record table, or 0. Returns ACT or PLANNED. */
enum { GATE_ACT = 1, GATE_PLANNED = 2 };

static void gate_failed(lua_State *L, lua_Integer id, const char *message);

static int gate_begin(lua_State *L, const relish_action_row *e, int record, lua_Integer *id) {
  *id = 0;
  if (G.mode == MODE_NONE) return GATE_ACT;
  if (G.mode == MODE_CLOSED)
    return relish_raise(L, "effect", "%s %s: %s", e->kind, e->target, G.closed_why);
  int top = lua_gettop(L);
  luaL_checkstack(L, 16, "gate");
  /* what the gate shows or keeps for display is redacted; the undo record
   * is kept as it is (providers keep secret values out of it) */
  relish_action_row r = *e;
  r.target = relish_redact(L, e->target, strlen(e->target), NULL);
  r.describe = relish_redact(L, e->describe, strlen(e->describe), NULL);
  if (e->detail) r.detail = relish_redact(L, e->detail, strlen(e->detail), NULL);
  const char *status = G.dry_run ? "planned" : "pending";

  if (G.mode == MODE_CAPTURE) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, G.capture_ref);
    push_action(L, &r, (lua_Integer)luaL_len(L, -1) + 1, status);
    if (record) { /* as the undo will get it, for tests */
      lua_pushvalue(L, record);
      lua_setfield(L, -2, "undo");
    }
    *id = (lua_Integer)luaL_len(L, -2) + 1;
    lua_seti(L, -2, *id);
    lua_settop(L, top);
    return G.dry_run ? GATE_PLANNED : GATE_ACT;
  }

  if (G.guard_ref != LUA_NOREF && !G.dry_run) { /* may the run act? (its lock) raises if not */
    lua_rawgeti(L, LUA_REGISTRYINDEX, G.guard_ref);
    lua_call(L, 0, 0);
  }
  check_expected(L, &r, touch(L, r.target));
  G.count++;
  *id = ++G.seq;
  char *err = NULL;
  if (relish_journal_action_begin(G.journal, G.run_id, G.step, *id, &r, status, !G.dry_run, &err) !=
      0) {
    lua_pushfstring(L, "journal: cannot record %s %s: %s", r.kind, r.target, err ? err : "?");
    free(err);
    relish_raise(L, "journal", "%s", lua_tostring(L, -1));
  }
  push_action(L, &r, *id, status);
  emit(L, G.dry_run ? "action_planned" : "action_started", lua_gettop(L), NULL);
  lua_settop(L, top);
  if (G.dry_run) return GATE_PLANNED;
  if (G.crash_before && G.count == G.crash_before) crash_now();
  if ((G.fail_action && G.count == G.fail_action) || (G.fail_step && G.step == G.fail_step)) {
    const char *why = G.fail_action && G.count == G.fail_action ? "fail-action" : "fail-step";
    long n = G.fail_action && G.count == G.fail_action ? G.fail_action : G.fail_step;
    lua_pushfstring(L, "injected failure (RELISH_FAULT=%s:%d) before %s", why, (int)n, r.describe);
    gate_failed(L, *id, lua_tostring(L, -1));
    return relish_raise(L, "fault", "%s", lua_tostring(L, -1));
  }
  return GATE_ACT;
}

static void finish(lua_State *L, lua_Integer id, const char *status, const char *result,
                   const char *message) {
  if (G.mode == MODE_NONE || id == 0) return;
  int top = lua_gettop(L);
  if (message) message = relish_redact(L, message, strlen(message), NULL);
  if (G.mode == MODE_CAPTURE) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, G.capture_ref);
    if (lua_geti(L, -1, id) == LUA_TTABLE) {
      lua_pushstring(L, status);
      lua_setfield(L, -2, "status");
      if (message) {
        lua_pushstring(L, message);
        lua_setfield(L, -2, "error");
      }
    }
    lua_settop(L, top);
    return;
  }
  if (G.crash_after && G.count == G.crash_after) crash_now();
  char *err = NULL;
  if (relish_journal_action_end(G.journal, G.run_id, id, status, result, message, &err) != 0) {
    fprintf(stderr, "relish: journal: cannot mark action %lld %s: %s\n", (long long)id, status,
            err ? err : "?");
    free(err);
  }
  if (G.sink_ref != LUA_NOREF) {
    lua_rawgeti(L, LUA_REGISTRYINDEX, G.sink_ref);
    lua_pushstring(L, strcmp(status, "done") == 0 ? "action_done" : "action_failed");
    lua_createtable(L, 0, 3);
    lua_pushinteger(L, id);
    lua_setfield(L, -2, "seq");
    if (message) {
      lua_pushstring(L, message);
      lua_setfield(L, -2, "error");
    }
    if (lua_pcall(L, 2, 0, 0) != LUA_OK)
      fprintf(stderr, "relish: output: %s\n", lua_tostring(L, -1));
  }
  lua_settop(L, top);
}

static void gate_done(lua_State *L, lua_Integer id) { finish(L, id, "done", NULL, NULL); }

static void gate_failed(lua_State *L, lua_Integer id, const char *message) {
  finish(L, id, "failed", NULL, message ? message : "failed");
}

/* ---- providers ---------------------------------------------------------- */

static void push_providers(lua_State *L) { push_keyed(L, &PROVIDERS, 0); }

/* Pushes the provider table of kind, or nil. */
static int push_provider(lua_State *L, const char *kind) {
  push_providers(L);
  int t = lua_getfield(L, -1, kind);
  lua_remove(L, -2);
  return t == LUA_TTABLE;
}

static void set_fn(lua_State *L, const char *name, lua_CFunction fn) {
  if (fn == NULL) return;
  lua_pushcfunction(L, fn);
  lua_setfield(L, -2, name);
}

void relish_effect_register(lua_State *L, const char *module, const relish_provider *providers) {
  luaL_checkstack(L, 8, "effect register");
  push_providers(L);
  for (const relish_provider *p = providers; p->kind != NULL; p++) {
    lua_createtable(L, 0, 5);
    lua_pushstring(L, module);
    lua_setfield(L, -2, "module");
    set_fn(L, "apply", p->apply);
    set_fn(L, "plan", p->plan);
    set_fn(L, "undo", p->undo);
    lua_newtable(L);
    for (lua_Integer i = 0; p->fields != NULL && p->fields[i] != NULL; i++) {
      lua_pushstring(L, p->fields[i]);
      lua_rawseti(L, -2, i + 1);
    }
    lua_setfield(L, -2, "fields");
    lua_setfield(L, -2, p->kind);
  }
  lua_pop(L, 1);
}

/* The first field of the provider at prov that the record at rec lacks, or
 * NULL (the name stays alive in the provider's fields list). */
static const char *missing_field(lua_State *L, int prov, int rec) {
  const char *missing = NULL;
  int top = lua_gettop(L);
  lua_getfield(L, prov, "fields");
  for (lua_Integer i = 1; missing == NULL && lua_rawgeti(L, top + 1, i) == LUA_TSTRING; i++) {
    if (lua_getfield(L, rec, lua_tostring(L, -1)) == LUA_TNIL) missing = lua_tostring(L, -2);
    lua_settop(L, top + 1);
  }
  lua_settop(L, top);
  return missing;
}

/* Encodes the undo record at rec with relish.json (the one codec), pushing
 * the text; raises naming the action when it cannot be encoded. */
static const char *encode_record(lua_State *L, const relish_action *a, int rec) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ENCODE) == LUA_TNIL) {
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "relish.json");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "encode");
    lua_remove(L, -2);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ENCODE);
  }
  lua_pushvalue(L, rec);
  if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
    const char *why = lua_tostring(L, -1);
    relish_raise(L, "effect", "%s %s: cannot journal its undo record: %s", a->kind, a->target,
                 why ? why : "not encodable");
  }
  return lua_tostring(L, -1);
}

static int error_text(lua_State *L, int idx, const char **out) {
  if (lua_type(L, idx) == LUA_TTABLE && lua_getfield(L, idx, "message") == LUA_TSTRING) {
    *out = lua_tostring(L, -1);
    return 1;
  }
  if (lua_type(L, idx) == LUA_TTABLE) lua_pop(L, 1);
  *out = luaL_tolstring(L, idx, NULL);
  return 1;
}

/* The threads (coroutines) inside a provider's apply or undo: the recipe
 * sandbox lets its functions act there, and only there. */
static void acting(lua_State *L, int delta) {
  push_keyed(L, &ACTING, 1);
  lua_pushthread(L);
  lua_pushvalue(L, -1);
  lua_Integer n = (lua_rawget(L, -3) == LUA_TNUMBER ? lua_tointeger(L, -1) : 0) + delta;
  lua_pop(L, 1);
  if (n > 0)
    lua_pushinteger(L, n);
  else
    lua_pushnil(L);
  lua_rawset(L, -3);
  lua_pop(L, 1);
}

/* After apply: done with its results, or failed and its error raised again. */
static int run_k(lua_State *L, int status, lua_KContext ctx) {
  int base = (int)ctx;
  lua_Integer id = lua_tointeger(L, base);
  acting(L, -1);
  if (status == LUA_OK || status == LUA_YIELD) {
    gate_done(L, id);
    return lua_gettop(L) - base;
  }
  int err = lua_gettop(L);
  const char *msg;
  error_text(L, err, &msg);
  gate_failed(L, id, msg);
  lua_settop(L, err);
  return lua_error(L);
}

int relish_effect_run(lua_State *L, const relish_action *a) {
  luaL_checkstack(L, 24, "effect");
  int rec = a->record ? lua_absindex(L, a->record) : 0;
  int arg = a->arg ? lua_absindex(L, a->arg) : 0;
  if (a->kind == NULL || !push_provider(L, a->kind))
    return luaL_error(L, "effect kind '%s' is not registered", a->kind ? a->kind : "(null)");
  int prov = lua_gettop(L);
  if (a->target == NULL) return luaL_error(L, "effect %s: no target", a->kind);
  relish_action_row row = {.kind = a->kind,
                           .target = a->target,
                           .describe = a->describe ? a->describe : a->target,
                           .detail = a->detail,
                           .fingerprint = a->fingerprint};
  if (a->pin != NULL) {
    if (strstr(a->pin, PIN_SEP) != NULL)
      return luaL_error(L, "effect %s: a pin may not hold \"" PIN_SEP "\"", a->kind);
    lua_pushfstring(L, "%s" PIN_SEP "%s", a->fingerprint ? a->fingerprint : "", a->pin);
    row.fingerprint = lua_tostring(L, -1);
  }
  lua_getfield(L, prov, "module");
  row.provider = lua_tostring(L, -1);
  if (rec) {
    if (!lua_istable(L, rec))
      return luaL_error(L, "effect %s: the undo record must be a table", a->kind);
    const char *missing = missing_field(L, prov, rec);
    if (missing) return luaL_error(L, "effect %s: the undo record has no '%s'", a->kind, missing);
    if (lua_getfield(L, prov, "undo") == LUA_TNIL) rec = 0; /* an irreversible kind */
    lua_pop(L, 1);
  }
  row.irreversible = rec == 0;
  /* a dry-run keeps no undo record: it undoes nothing, and a pre-image can
   * be large (a disk-full runbook must not fill the disk by planning) */
  if (rec && (G.mode == MODE_CAPTURE || (G.mode == MODE_RUN && !G.dry_run)))
    row.undo = encode_record(L, a, rec);
  lua_Integer id;
  if (gate_begin(L, &row, rec, &id) == GATE_PLANNED) {
    int base = lua_gettop(L);
    if (lua_getfield(L, prov, "plan") == LUA_TNIL) {
      lua_pushboolean(L, 1);
      return 1;
    }
    if (arg)
      lua_pushvalue(L, arg);
    else
      lua_pushnil(L);
    lua_call(L, 1, LUA_MULTRET);
    return lua_gettop(L) - base;
  }
  lua_pushinteger(L, id);
  int base = lua_gettop(L);
  acting(L, 1);
  lua_getfield(L, prov, "apply");
  if (arg)
    lua_pushvalue(L, arg);
  else
    lua_pushnil(L);
  return run_k(L, lua_pcallk(L, 1, LUA_MULTRET, 0, (lua_KContext)base, run_k), (lua_KContext)base);
}

/* ---- the Lua door: relish._gate ---------------------------------------- */

static const char *opt_field(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  const char *s = lua_isnil(L, -1) ? NULL : lua_tostring(L, -1);
  if (!lua_isnil(L, -1) && !s) luaL_error(L, "effect: field '%s' must be a string", k);
  return s; /* left on the stack, so it stays alive */
}

static void opt_function(lua_State *L, int spec, int into, const char *k, int required) {
  int t = lua_getfield(L, spec, k);
  if (t == LUA_TNIL && !required) {
    lua_pop(L, 1);
    return;
  }
  if (t != LUA_TFUNCTION) luaL_error(L, "effect.register: %s must be a function", k);
  lua_setfield(L, into, k);
}

/* register{kind=, module=, apply=, plan=, undo=, fields={...}} */
static int l_gate_register(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  const char *kind = opt_field(L, 1, "kind");
  if (!kind || !strchr(kind, '.') || kind[0] == '.')
    return luaL_error(L, "effect.register: kind must be a string 'module.verb'");
  const char *module = opt_field(L, 1, "module");
  lua_createtable(L, 0, 5);
  int into = lua_gettop(L);
  if (module) {
    lua_pushstring(L, module);
    lua_setfield(L, into, "module");
  }
  opt_function(L, 1, into, "apply", 1);
  opt_function(L, 1, into, "plan", 0);
  opt_function(L, 1, into, "undo", 0);
  lua_newtable(L);
  if (lua_getfield(L, 1, "fields") != LUA_TNIL) {
    luaL_argexpected(L, lua_istable(L, -1), 1, "fields as a list of names");
    for (lua_Integer i = 1; lua_rawgeti(L, -1, i) != LUA_TNIL; i++) {
      if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "effect.register: fields must be a list of names");
      lua_rawseti(L, -3, i);
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  lua_setfield(L, into, "fields");
  push_providers(L);
  lua_pushvalue(L, into);
  lua_setfield(L, -2, kind);
  return 0;
}

/* run(kind, {target=, describe=, detail=, fingerprint=, pin=, record=}, arg) ->
 * apply's results, or plan's in a dry-run */
static int l_gate_run(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  lua_settop(L, 3);
  relish_action a = {.kind = kind, .arg = 3};
  a.target = opt_field(L, 2, "target");
  a.describe = opt_field(L, 2, "describe");
  a.detail = opt_field(L, 2, "detail");
  a.fingerprint = opt_field(L, 2, "fingerprint");
  a.pin = opt_field(L, 2, "pin");
  if (a.target == NULL) return luaL_error(L, "effect %s: target is required", kind);
  int t = lua_getfield(L, 2, "record");
  if (t != LUA_TNIL && t != LUA_TTABLE)
    return luaL_error(L, "effect %s: record must be a table", kind);
  if (t == LUA_TTABLE) a.record = lua_gettop(L);
  return relish_effect_run(L, &a);
}

/* undo(kind, record [, module [, opts]]): the undo of one journaled action,
 * found by registration (loading module first when the kind is not
 * registered yet); the undo gets (record, opts): opts.force = true undoes
 * also what changed since the run (relish rollback --force). */
static int l_gate_undo(lua_State *L) {
  const char *kind = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  const char *module = luaL_optstring(L, 3, NULL);
  if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
  lua_settop(L, 4);
  if (!push_provider(L, kind) && module != NULL) {
    lua_pop(L, 1);
    lua_getglobal(L, "require");
    lua_pushvalue(L, 3);
    lua_call(L, 1, 0);
    push_provider(L, kind);
  }
  int prov = lua_gettop(L);
  if (!lua_istable(L, prov))
    return relish_raise(L, "undo",
                        "no undo is registered for effect kind '%s' (a recipe's own kinds "
                        "are registered by effect.define at the top of the recipe)",
                        kind);
  if (lua_getfield(L, prov, "undo") != LUA_TFUNCTION)
    return relish_raise(L, "undo", "effect kind '%s' is irreversible", kind);
  const char *missing = missing_field(L, prov, 2);
  if (missing) return relish_raise(L, "undo", "malformed %s undo record: no '%s'", kind, missing);
  lua_pushvalue(L, 2);
  lua_pushvalue(L, 4);
  acting(L, 1);
  int st = lua_pcall(L, 2, 1, 0);
  acting(L, -1);
  if (st != LUA_OK) return lua_error(L);
  return 1;
}

/* acting() -> true inside a provider's apply or undo (in this coroutine) */
static int l_gate_acting(lua_State *L) {
  int on = 0;
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &ACTING) == LUA_TTABLE) {
    lua_pushthread(L);
    on = lua_rawget(L, -2) != LUA_TNIL;
  }
  lua_pushboolean(L, on);
  return 1;
}

/* registered(kind) -> the provider's module (or true), or nil */
static int l_gate_registered(lua_State *L) {
  if (!push_provider(L, luaL_checkstring(L, 1))) return 1;
  if (lua_getfield(L, -1, "module") == LUA_TNIL) lua_pushboolean(L, 1);
  return 1;
}

/* close(why) / close(nil): while closed, every effect raises why (a recipe
 * file being loaded may not act). Returns what it replaced. */
static int l_gate_close(lua_State *L) {
  const char *why = luaL_optstring(L, 1, NULL);
  int was = G.mode == MODE_CLOSED;
  if (why != NULL) {
    if (G.mode != MODE_NONE && G.mode != MODE_CLOSED)
      return luaL_error(L, "gate.close: a run or capture is active");
    snprintf(G.closed_why, sizeof G.closed_why, "%s", why);
    G.mode = MODE_CLOSED;
  } else if (G.mode == MODE_CLOSED) {
    G.mode = MODE_NONE;
  }
  lua_pushboolean(L, was);
  return 1;
}

static void unref(lua_State *L, int *ref) {
  luaL_unref(L, LUA_REGISTRYINDEX, *ref);
  *ref = LUA_NOREF;
}

static int capture_finish(lua_State *L, int status, lua_KContext ctx) {
  (void)ctx;
  int saved_mode = (int)lua_tointeger(L, 3), saved_dry = (int)lua_tointeger(L, 4);
  lua_rawgeti(L, LUA_REGISTRYINDEX, G.capture_ref);
  unref(L, &G.capture_ref);
  G.mode = saved_mode;
  G.dry_run = saved_dry;
  session++; /* what a preview planned is not the run's (the dry-run views) */
  if (status != LUA_OK && status != LUA_YIELD) {
    lua_pushvalue(L, -2); /* the error */
    return lua_error(L);
  }
  lua_replace(L, 4); /* effects go where dry_run was; results follow from 5 */
  return lua_gettop(L) - 3;
}

/* capture(fn, {dry_run=}) -> effects, fn's results: for module tests, and a
 * step's preview inside a run (a runbook shows what a step will change
 * before its confirmation): there only as a dry-run, journaling nothing. */
static int l_gate_capture(lua_State *L) {
  luaL_checktype(L, 1, LUA_TFUNCTION);
  int dry = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "dry_run");
    dry = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  if (G.mode != MODE_NONE && !(G.mode == MODE_RUN && dry))
    return luaL_error(L, "gate.capture: a run or capture is active");
  lua_settop(L, 1);
  lua_pushnil(L); /* 2: placeholder */
  lua_pushinteger(L, G.mode);
  lua_pushinteger(L, G.dry_run);
  lua_newtable(L);
  G.capture_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  session++;
  G.mode = MODE_CAPTURE;
  G.dry_run = dry;
  lua_pushvalue(L, 1);
  int st = lua_pcallk(L, 0, LUA_MULTRET, 0, 0, capture_finish);
  return capture_finish(L, st, 0);
}

/* set_run{journal=, run_id=, dry_run=, on_event=, expect=, seq=, guard=}:
 * guard() is called before each action of a real run is journaled, and
 * raises when the run may no longer act (it lost its lock) */
static int l_gate_set_run(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_getfield(L, 1, "journal");
  G.journal = relish_journal_check(L, -1);
  unref(L, &G.journal_ref);
  G.journal_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  lua_getfield(L, 1, "run_id");
  snprintf(G.run_id, sizeof G.run_id, "%s", luaL_checkstring(L, -1));
  lua_getfield(L, 1, "dry_run");
  G.dry_run = lua_toboolean(L, -1);
  lua_getfield(L, 1, "seq");
  G.seq = luaL_optinteger(L, -1, 0);
  lua_pop(L, 3);
  unref(L, &G.sink_ref);
  if (lua_getfield(L, 1, "on_event") == LUA_TFUNCTION)
    G.sink_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  unref(L, &G.guard_ref);
  if (lua_getfield(L, 1, "guard") == LUA_TFUNCTION)
    G.guard_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  unref(L, &G.expect_ref);
  G.expect_pos = 0;
  if (lua_getfield(L, 1, "expect") == LUA_TTABLE)
    G.expect_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  else
    lua_pop(L, 1);
  unref(L, &G.touched_ref);
  lua_newtable(L);
  G.touched_ref = luaL_ref(L, LUA_REGISTRYINDEX);
  G.step = 0;
  G.count = 0;
  parse_faults();
  lua_getfield(L, 1, "faults"); /* faults = false: no injection (a rollback) */
  if (lua_isboolean(L, -1) && !lua_toboolean(L, -1))
    G.crash_before = G.crash_after = G.fail_action = G.fail_step = 0;
  lua_pop(L, 1);
  session++;
  G.mode = MODE_RUN;
  return 0;
}

static int l_gate_clear_run(lua_State *L) {
  unref(L, &G.touched_ref);
  unref(L, &G.journal_ref);
  unref(L, &G.sink_ref);
  unref(L, &G.expect_ref);
  unref(L, &G.guard_ref);
  G.journal = NULL;
  G.mode = MODE_NONE;
  G.dry_run = 0;
  return 0;
}

static int l_gate_set_step(lua_State *L) {
  G.step = luaL_checkinteger(L, 1);
  return 0;
}

/* expect_left() -> how many planned actions were not reached */
static int l_gate_expect_left(lua_State *L) {
  if (G.expect_ref == LUA_NOREF) {
    lua_pushinteger(L, 0);
    return 1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, G.expect_ref);
  lua_pushinteger(L, (lua_Integer)luaL_len(L, -1) - G.expect_pos);
  return 1;
}

static int l_gate_state(lua_State *L) {
  lua_createtable(L, 0, 5);
  lua_pushstring(L, G.mode == MODE_RUN ? "run" : G.mode == MODE_CAPTURE ? "capture" : "none");
  lua_setfield(L, -2, "mode");
  lua_pushboolean(L, G.dry_run);
  lua_setfield(L, -2, "dry_run");
  lua_pushinteger(L, G.seq);
  lua_setfield(L, -2, "seq");
  lua_pushinteger(L, G.step);
  lua_setfield(L, -2, "step");
  lua_pushinteger(L, session);
  lua_setfield(L, -2, "session");
  return 1;
}

int luaopen_relish__gate(lua_State *L) {
  static const luaL_Reg fns[] = {{"register", l_gate_register},
                                 {"run", l_gate_run},
                                 {"undo", l_gate_undo},
                                 {"registered", l_gate_registered},
                                 {"acting", l_gate_acting},
                                 {"close", l_gate_close},
                                 {"capture", l_gate_capture},
                                 {"set_run", l_gate_set_run},
                                 {"clear_run", l_gate_clear_run},
                                 {"set_step", l_gate_set_step},
                                 {"expect_left", l_gate_expect_left},
                                 {"state", l_gate_state},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  return 1;
}
