/* host_gate.c: effect providers through the gate outside a run, in capture
 * mode and closed; undo by registration; secret redaction; the lazy
 * initialisation of libcurl and libgit2. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <curl/curl.h>
#include <git2.h>

#include "check.h"
#include "hostint.h"

/* A provider as a module registers it: apply counts and answers, plan
 * answers "planned", apply fails when asked to. */
static int applied, planned_calls, undone;

static int poke_apply(lua_State *L) {
  if (lua_toboolean(L, 1)) return relish_raise(L, "poke", "the poke was refused");
  applied++;
  lua_pushliteral(L, "poked");
  return 1;
}

static int poke_plan(lua_State *L) {
  planned_calls++;
  lua_pushliteral(L, "planned");
  return 1;
}

static int poke_undo(lua_State *L) {
  lua_getfield(L, 1, "was");
  undone = (int)lua_tointeger(L, -1);
  return 0;
}

static const char *const poke_fields[] = {"was", NULL};
static const relish_provider poke[] = {{.kind = "test.poke",
                                        .apply = poke_apply,
                                        .plan = poke_plan,
                                        .undo = poke_undo,
                                        .fields = poke_fields},
                                       {NULL}};

/* poke(fail) : the module's Lua-called function */
static int l_poke(lua_State *L) {
  lua_settop(L, 1);
  lua_createtable(L, 0, 1);
  lua_pushinteger(L, 41);
  lua_setfield(L, -2, "was");
  relish_action a = {.kind = "test.poke",
                     .target = "/x",
                     .describe = "poke /x with hunter2-very-secret",
                     .fingerprint = "fp",
                     .record = 2,
                     .arg = 1};
  return relish_effect_run(L, &a);
}

static lua_State *poke_state(void) {
  lua_State *L = relish_newstate();
  relish_effect_register(L, "test.pokemod", poke);
  lua_pushcfunction(L, l_poke);
  lua_setglobal(L, "poke");
  applied = planned_calls = undone = 0;
  return L;
}

static void test_outside_a_run_apply_acts_directly(void) {
  lua_State *L = poke_state();
  CHECK(luaL_dostring(L, "return poke(false)") == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "poked");
  CHECK(applied == 1 && planned_calls == 0);
  CHECK(!relish_gate_dry_run(L));
  CHECK(luaL_dostring(L, "local ok, e = pcall(poke, true) return e.kind .. ': ' .. e.message") ==
        LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "poke: the poke was refused");
  lua_close(L);
}

static void test_capture_plans_records_and_redacts(void) {
  lua_State *L = poke_state();
  const char *chunk = "local gate = require 'relish._gate'\n"
                      "require('relish.secret').value('hunter2-very-secret')\n"
                      "local effects, r = gate.capture(function() return poke(false) end,\n"
                      "  {dry_run = true})\n"
                      "local e = effects[1]\n"
                      "return r .. '|' .. e.describe .. '|' .. e.status .. '|' .. e.undo.was\n"
                      "  .. '|' .. e.fingerprint .. '|' .. #effects";
  CHECK(luaL_dostring(L, chunk) == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "planned|poke /x with ***|planned|41|fp|1");
  CHECK(applied == 0 && planned_calls == 1);
  lua_close(L);
}

static void test_a_failed_apply_is_marked_failed_and_raised(void) {
  lua_State *L = poke_state();
  const char *chunk =
      "local gate = require 'relish._gate'\n"
      "local effects, ok, e = gate.capture(function() return pcall(poke, true) end)\n"
      "return tostring(ok) .. '|' .. e.kind .. '|' .. effects[1].status .. '|' ..\n"
      "  effects[1].error";
  CHECK(luaL_dostring(L, chunk) == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "false|poke|failed|the poke was refused");
  lua_close(L);
}

static void test_undo_is_dispatched_by_registration(void) {
  lua_State *L = poke_state();
  CHECK(luaL_dostring(L, "local gate = require 'relish._gate'\n"
                         "gate.undo('test.poke', {was = 7})\n"
                         "local ok, e = pcall(gate.undo, 'test.poke', {})\n"
                         "local ok2, e2 = pcall(gate.undo, 'test.nothing', {})\n"
                         "return e.message .. '|' .. e2.kind") == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "malformed test.poke undo record: no 'was'|undo");
  CHECK(undone == 7);
  lua_close(L);
}

static void test_a_closed_gate_refuses_every_effect(void) {
  lua_State *L = poke_state();
  CHECK(luaL_dostring(L, "local gate = require 'relish._gate'\n"
                         "gate.close('not while loading')\n"
                         "local ok, e = pcall(poke, false)\n"
                         "gate.close(nil)\n"
                         "return e.kind .. '|' .. e.message .. '|' .. poke(false)") == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "effect|test.poke /x: not while loading|poked");
  CHECK(applied == 1);
  lua_close(L);
}

static void test_redact_replaces_every_known_secret(void) {
  lua_State *L = relish_newstate();
  CHECK(luaL_dostring(L, "local s = require 'relish.secret'\n"
                         "s.value('alpha-secret') s.value('beta-secret-longer')\n"
                         "return s.redact('a alpha-secret b beta-secret-longer c alpha-secret')") ==
        LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "a *** b *** c ***");
  CHECK(luaL_dostring(
            L, "local s = require 'relish.secret'\n"
               "return tostring(s.value('zzz-another')) .. select(2, pcall(function()\n"
               "  return 'x' .. s.value('zzz-another') end)):match('cannot be concatenated')") ==
        LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "***cannot be concatenated");
  lua_close(L);
}

static void test_lazy_library_initialisation_is_idempotent(void) {
  relish_need_curl();
  relish_need_curl();
  relish_need_git();
  relish_need_git();
  /* libgit2 counts its initialisations: ours plus this one make two */
  CHECK(git_libgit2_init() == 2);
  CHECK(git_libgit2_shutdown() == 1);
  CURL *easy = curl_easy_init();
  CHECK(easy != NULL);
  curl_easy_cleanup(easy);
  /* cleaned up once at exit: the sanitizer build checks for leaks */
}

int main(void) {
  RUN(test_outside_a_run_apply_acts_directly);
  RUN(test_capture_plans_records_and_redacts);
  RUN(test_a_failed_apply_is_marked_failed_and_raised);
  RUN(test_undo_is_dispatched_by_registration);
  RUN(test_a_closed_gate_refuses_every_effect);
  RUN(test_redact_replaces_every_known_secret);
  RUN(test_lazy_library_initialisation_is_idempotent);
  CHECK_MAIN();
}
