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
/* the sanitizer build frees all, for its leak check (gcc says so with
 * __SANITIZE_ADDRESS__, clang with __has_feature) */
#if defined(__SANITIZE_ADDRESS__)
#define RELISH_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RELISH_ASAN 1
#endif
#endif

#ifndef RELISH_ASAN
static void *alloc_at_exit(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  (void)osize;
  return nsize == 0 ? NULL : realloc(ptr, nsize);
}
#endif

/* The error at idx is Lua's own out-of-memory error: its message, raw or
 * as the message handler wrapped it (after a pcall in Lua re-raised it). */
static int is_out_of_memory(lua_State *L, int idx) {
  const char *msg = NULL;
  if (lua_type(L, idx) == LUA_TSTRING) {
    msg = lua_tostring(L, idx);
  } else if (lua_type(L, idx) == LUA_TTABLE) {
    lua_getfield(L, idx, "message");
    msg = lua_tostring(L, -1);
    lua_pop(L, 1); /* the string stays alive in the table */
  }
  return msg != NULL && strcmp(msg, "not enough memory") == 0;
}

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
  int code, status = lua_pcall(L, 2, 1, 1);
  if (status == LUA_OK) {
    code = (int)lua_tointeger(L, -1);
  } else if (lua_type(L, -1) != LUA_TTABLE || is_out_of_memory(L, -1)) {
    /* no message handler ran: Lua does not call it when memory runs out
     * (nor for an error inside it); say what happened, allocating nothing */
    const char *msg = lua_tostring(L, -1);
    if (status == LUA_ERRMEM || is_out_of_memory(L, -1))
      fputs("relish: out of memory\n", stderr);
    else
      fprintf(stderr, "relish: %s\n", msg ? msg : "error");
    code = RELISH_EXIT_FAILED;
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
#ifndef RELISH_ASAN
  lua_setallocf(L, alloc_at_exit, NULL);
#endif
  lua_close(L);
  return code;
}
