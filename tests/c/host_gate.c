/* host_gate.c: the effect gate outside a run and in capture mode, secret
 * redaction, and the lazy initialisation of libcurl and libgit2. */
#define _GNU_SOURCE
#include <stdlib.h>

#include "check.h"
#include "hostint.h"

static void test_outside_a_run_the_gate_lets_effects_act(void) {
  lua_State *L = relish_newstate();
  relish_effect e = {.kind = "test.poke", .target = "/x", .describe = "poke /x"};
  lua_Integer id = -1;
  CHECK(relish_gate_begin(L, &e, &id) == RELISH_GATE_ACT);
  CHECK(id == 0);
  CHECK(!relish_gate_dry_run(L));
  relish_gate_done(L, id, NULL); /* harmless */
  CHECK(lua_gettop(L) == 0);
  lua_close(L);
}

static void test_capture_records_plans_and_redacts(void) {
  lua_State *L = relish_newstate();
  const char *chunk = "local gate = require 'relish._gate'\n"
                      "local secret = require 'relish.secret'\n"
                      "local s = secret.value('hunter2-very-secret')\n"
                      "local effects, verdict = gate.capture(function()\n"
                      "  return gate.begin{kind = 'test.poke', target = 'x', describe = 'token "
                      "hunter2-very-secret',\n"
                      "    undo = '{\"was\":1}', fingerprint = 'fp'}\n"
                      "end, {dry_run = true})\n"
                      "local e = effects[1]\n"
                      "return verdict .. '|' .. e.describe .. '|' .. e.status .. '|' .. e.undo.was "
                      ".. '|' .. #effects";
  CHECK(luaL_dostring(L, chunk) == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "planned|token ***|planned|1|1");
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
  CHECK(1); /* cleaned up once at exit: the sanitizer build checks for leaks */
}

int main(void) {
  RUN(test_outside_a_run_the_gate_lets_effects_act);
  RUN(test_capture_records_plans_and_redacts);
  RUN(test_redact_replaces_every_known_secret);
  RUN(test_lazy_library_initialisation_is_idempotent);
  CHECK_MAIN();
}
