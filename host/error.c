/* error.c: structured error values {kind=, message=, ...} shared by every
 * module, so callers can branch on err.kind and still print err; the
 * collector pause modules use around bulk construction; and the metatable of
 * a userdata that owns C resources. */
#include <stdarg.h>
#include <stdio.h>

#include "hostint.h"

static int error_tostring(lua_State *L) {
  if (lua_getfield(L, 1, "message") == LUA_TSTRING) return 1;
  lua_pop(L, 1);
  lua_pushliteral(L, "error");
  return 1;
}

void relish_error_register(lua_State *L) {
  if (luaL_newmetatable(L, "relish.Error")) {
    lua_pushcfunction(L, error_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "relish.Error");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
}

static void push_errorv(lua_State *L, const char *kind, const char *fmt, va_list ap) {
  lua_createtable(L, 0, 2);
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  lua_pushvfstring(L, fmt, ap);
  lua_setfield(L, -2, "message");
  relish_error_register(L);
  luaL_setmetatable(L, "relish.Error");
}

void relish_push_error(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_errorv(L, kind, fmt, ap);
  va_end(ap);
}

int relish_fail(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  lua_pushnil(L);
  va_start(ap, fmt);
  push_errorv(L, kind, fmt, ap);
  va_end(ap);
  return 2;
}

int relish_raise(lua_State *L, const char *kind, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  push_errorv(L, kind, fmt, ap);
  va_end(ap);
  return lua_error(L);
}

int relish_raise_interrupted(lua_State *L) { return relish_raise(L, "interrupted", "interrupted"); }

/* ---- the collector pause (relish_gc_pause) ---------------------------- */

static int gc_guard_close(lua_State *L) {
  int *was_running = lua_touserdata(L, 1);
  if (was_running && *was_running) {
    *was_running = 0;
    lua_gc(L, LUA_GCRESTART);
  }
  return 0;
}

void relish_gc_pause(lua_State *L, int big) {
  if (!big) {
    lua_pushnil(L);
    return;
  }
  int *was_running = lua_newuserdatauv(L, sizeof(int), 0);
  *was_running = lua_gc(L, LUA_GCISRUNNING);
  if (luaL_newmetatable(L, "relish.GcPause")) {
    lua_pushcfunction(L, gc_guard_close);
    lua_setfield(L, -2, "__close");
  }
  lua_setmetatable(L, -2);
  lua_toclose(L, -1);
  if (*was_running) lua_gc(L, LUA_GCSTOP);
}

void relish_gc_resume(lua_State *L, int idx) {
  if (lua_type(L, idx) == LUA_TUSERDATA) lua_closeslot(L, idx);
}

/* ---- userdata that own C resources ------------------------------------ */

int relish_resource_metatable(lua_State *L, const char *tname, lua_CFunction release,
                              const luaL_Reg *methods) {
  if (!luaL_newmetatable(L, tname)) return 0;
  if (methods != NULL) {
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_setfield(L, -2, "__index");
  }
  lua_pushcfunction(L, release);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, release);
  lua_setfield(L, -2, "__close");
  return 1;
}
