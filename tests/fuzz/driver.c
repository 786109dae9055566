/* driver.c: the one libFuzzer entry point of every harness. A harness is a
 * Lua file (tests/fuzz/NAME.lua) returning function(data): it runs a parser
 * on the bytes, expects the parser's own errors, and raises only when it
 * finds a bug (a wrong kind of error, a round trip that changes the value).
 * Any error out of it aborts, which libFuzzer reports as a crash with the
 * input saved. Built with clang -fsanitize=fuzzer (RELISH_FUZZ=ON), or with
 * replay.c's main to run the saved corpus as a plain test. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "hostint.h"

#ifndef RELISH_FUZZ_SCRIPT
#error "RELISH_FUZZ_SCRIPT must name the harness's Lua file"
#endif

static lua_State *fuzz_L;

#ifdef RELISH_LIBFUZZER
/* Coverage of the Lua code a harness runs (semver, params: parsers written
 * in Lua, which the compiler's coverage cannot see): a line hook counts each
 * pair (previous line, line) of each chunk in libFuzzer's extra counters,
 * so an input that reaches new Lua lines is kept like one reaching new C. */
__attribute__((section("__libfuzzer_extra_counters"))) static uint8_t lua_lines[1 << 16];

static void line_hook(lua_State *L, lua_Debug *ar) {
  static uintptr_t prev;
  if (!lua_getinfo(L, "S", ar)) return;
  uintptr_t here = (uintptr_t)ar->source * 31u + (uintptr_t)ar->currentline * 2654435761u;
  lua_lines[(here ^ (prev >> 1)) & (sizeof lua_lines - 1)]++;
  prev = here;
}
#endif

static lua_State *fuzz_state(void) {
  if (fuzz_L) return fuzz_L;
  lua_State *L = relish_newstate();
  if (!L) abort();
  lua_pushcfunction(L, relish_msghandler);
  if (luaL_loadfile(L, RELISH_FUZZ_SCRIPT) != LUA_OK || lua_pcall(L, 0, 1, 1) != LUA_OK ||
      lua_type(L, -1) != LUA_TFUNCTION) {
    fprintf(stderr, "fuzz: cannot load %s: %s\n", RELISH_FUZZ_SCRIPT,
            lua_type(L, -1) == LUA_TTABLE ? (lua_getfield(L, -1, "traceback"), lua_tostring(L, -1))
                                          : luaL_typename(L, -1));
    abort();
  }
  lua_setfield(L, LUA_REGISTRYINDEX, "relish.fuzz.target");
  lua_pop(L, 1);
#ifdef RELISH_LIBFUZZER
  lua_sethook(L, line_hook, LUA_MASKLINE, 0);
#endif
  fuzz_L = L;
  return L;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  lua_State *L = fuzz_state();
  int top = lua_gettop(L);
  lua_pushcfunction(L, relish_msghandler);
  lua_getfield(L, LUA_REGISTRYINDEX, "relish.fuzz.target");
  lua_pushlstring(L, (const char *)data, size);
  if (lua_pcall(L, 1, 0, top + 1) != LUA_OK) {
    const char *tb = NULL;
    if (lua_type(L, -1) == LUA_TTABLE) {
      lua_getfield(L, -1, "traceback");
      tb = lua_tostring(L, -1);
    }
    fprintf(stderr, "fuzz: %s: %s\n", RELISH_FUZZ_SCRIPT, tb ? tb : "(error)");
    abort();
  }
  lua_settop(L, top);
  return 0;
}
