/* main.c: makes the state and runs everything else under one protected call
 * whose message handler adds a traceback, as lua.c does. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostint.h"

/* At exit: Lua's allocator that gives nothing back. A CLI about to exit need
 * not free what the OS takes back (git does not either): lua_close still
 * runs every finalizer (files flushed, temporary files removed, processes
 * reaped, the journal closed) but skips thousands of free() calls. */
#ifndef __SANITIZE_ADDRESS__ /* the sanitizer build frees all, for its leak check */
static void *alloc_at_exit(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  return nsize == 0 ? NULL : realloc(ptr, nsize);
}
#endif

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  lua_pushinteger(L, relish_cli(L, argc, argv));
  return 1;
}

int main(int argc, char **argv) {
  lua_State *L = relish_newstate();
  if (!L) {
    fputs("relish: cannot create the Lua state (out of memory)\n", stderr);
    return RELISH_EXIT_FAILED;
  }
  relish_signals_install(L);
  lua_pushcfunction(L, relish_msghandler);
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int code;
  if (lua_pcall(L, 2, 1, 1) == LUA_OK) {
    code = (int)lua_tointeger(L, -1);
  } else {
    code = relish_error_exit(L, -1);
    lua_getfield(L, -1, "message");
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "relish: %s\n", msg ? msg : "(error object is not a string)");
    lua_pop(L, 1);
    /* structured errors are expected failures: their message says it all */
    lua_getfield(L, -1, "kind");
    const char *kind = lua_tostring(L, -1);
    int plain = kind == NULL || strcmp(kind, "error") == 0;
    lua_pop(L, 1);
    if (plain && code == RELISH_EXIT_FAILED) {
      lua_getfield(L, -1, "traceback");
      fprintf(stderr, "%s\n", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  }
  fflush(stdout);
#ifndef __SANITIZE_ADDRESS__
  lua_setallocf(L, alloc_at_exit, NULL);
#endif
  lua_close(L);
  return code;
}
