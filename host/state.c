/* state.c: the Lua state: standard libraries, native modules preloaded, the
 * embedded stdlib found by require, user code loaded as text only into a
 * strict environment, and the message handler every protected call uses. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>

#include <lualib.h>

#include "hostint.h"

/* ---- strict environments ---------------------------------------------- */

/* Globals made on first use rather than at start-up: name -> module field. */
static const struct {
  const char *name, *module;
} lazy_globals[] = {{"try", "relish._errors"}, {NULL, NULL}};

/* Looks name (at idx) up in lazy_globals; on a hit requires the module,
 * stores the field in the table at base and pushes it, else pushes nothing. */
static int push_lazy_global(lua_State *L, int idx, int base) {
  if (lua_type(L, idx) != LUA_TSTRING) return 0;
  const char *name = lua_tostring(L, idx);
  for (int i = 0; lazy_globals[i].name; i++) {
    if (strcmp(name, lazy_globals[i].name) != 0) continue;
    lua_getglobal(L, "require");
    lua_pushstring(L, lazy_globals[i].module);
    lua_call(L, 1, 1);
    lua_getfield(L, -1, name);
    lua_remove(L, -2);
    lua_pushvalue(L, idx);
    lua_pushvalue(L, -2);
    lua_rawset(L, base);
    return 1;
  }
  return 0;
}

/* __index of a strict environment: upvalue 1 is the table of the names it
 * may read (the global table, or a recipe's sandbox). */
static int strict_index(lua_State *L) {
  lua_settop(L, 2);
  lua_pushvalue(L, 2);
  if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
  if (push_lazy_global(L, 2, lua_upvalueindex(1))) return 1;
  luaL_where(L, 1);
  lua_pushfstring(L, "undeclared global '%s' (use 'local')",
                  lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : luaL_typename(L, 2));
  lua_concat(L, 2);
  return lua_error(L);
}

static int strict_newindex(lua_State *L) {
  luaL_where(L, 1);
  lua_pushfstring(L, "assignment to undeclared global '%s' (use 'local')",
                  lua_type(L, 2) == LUA_TSTRING ? lua_tostring(L, 2) : luaL_typename(L, 2));
  lua_concat(L, 2);
  return lua_error(L);
}

/* Fills the metatable at mt: reads go to the table at base, undeclared
 * names raise, assignments to globals raise (both absolute indices). */
static void strict_meta(lua_State *L, int mt, int base) {
  lua_pushvalue(L, base);
  lua_pushcclosure(L, strict_index, 1);
  lua_setfield(L, mt, "__index");
  lua_pushcfunction(L, strict_newindex);
  lua_setfield(L, mt, "__newindex");
  lua_pushliteral(L, "environment");
  lua_setfield(L, mt, "__name");
}

void relish_push_strict_env(lua_State *L) {
  lua_newtable(L);
  if (luaL_newmetatable(L, "relish.StrictEnv")) {
    lua_pushglobaltable(L);
    strict_meta(L, lua_gettop(L) - 1, lua_gettop(L));
    lua_pop(L, 1);
  }
  lua_setmetatable(L, -2);
}

/* A strict environment reading the table at base instead of the globals
 * (a recipe's sandbox). Its metatable is its own and protected, so code in
 * it can neither reach the table behind it through getmetatable nor swap it. */
void relish_push_strict_env_over(lua_State *L, int base) {
  base = lua_absindex(L, base);
  lua_newtable(L);
  lua_createtable(L, 0, 4);
  strict_meta(L, lua_gettop(L), base);
  lua_pushboolean(L, 0);
  lua_setfield(L, -2, "__metatable");
  lua_setmetatable(L, -2);
}

/* Loads path as text; on success pushes the function (its _ENV a new strict
 * environment, pushed too, below it) and returns LUA_OK; else pushes the
 * message and returns the load status. */
int relish_load_user(lua_State *L, const char *path) {
  int st = luaL_loadfilex(L, path, "t");
  if (st != LUA_OK) return st;
  relish_push_strict_env(L);
  lua_pushvalue(L, -1);
  if (!lua_setupvalue(L, -3, 1)) lua_pop(L, 1);
  lua_insert(L, -2); /* env, fn */
  return LUA_OK;
}

/* ---- require: embedded stdlib and text-only user modules --------------- */

static int load_embedded(lua_State *L, const char *name) {
  const char *dev = getenv("RELISH_STDLIB_PATH");
  if (dev && *dev && strncmp(name, "relish.", 7) == 0) {
    luaL_Buffer b;
    const char *suffix[] = {".lua", "/init.lua"};
    for (int i = 0; i < 2; i++) {
      luaL_buffinit(L, &b);
      luaL_addstring(&b, dev);
      luaL_addchar(&b, '/');
      luaL_addgsub(&b, name, ".", "/");
      luaL_addstring(&b, suffix[i]);
      luaL_pushresult(&b);
      const char *path = lua_tostring(L, -1);
      FILE *f = fopen(path, "r");
      if (f) {
        fclose(f);
        if (luaL_loadfilex(L, path, "t") != LUA_OK) return lua_error(L);
        lua_insert(L, -2); /* loader, path */
        return 2;
      }
      lua_pop(L, 1);
    }
  }
  for (const relish_embedded *e = relish_stdlib; e->name; e++) {
    if (strcmp(e->name, name) != 0) continue;
    /* bytecode compiled at build time (cmake/stdlib_compile.c) */
    if (luaL_loadbufferx(L, (const char *)e->data, e->size, e->chunkname, "b") != LUA_OK)
      return lua_error(L);
    lua_pushstring(L, e->chunkname + 1);
    return 2;
  }
  return -1;
}

static int searcher_stdlib(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  int n = load_embedded(L, name);
  if (n >= 0) return n;
  lua_pushfstring(L, "no embedded module '%s'", name);
  return 1;
}

static int searcher_user(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchpath");
  lua_pushstring(L, name);
  lua_getfield(L, -3, "path");
  lua_call(L, 2, 2);
  if (lua_isnil(L, -2)) return 1; /* the "no file" list */
  lua_pop(L, 1);
  const char *path = lua_tostring(L, -1);
  if (relish_load_user(L, path) != LUA_OK)
    return luaL_error(L, "error loading module '%s': %s", name, lua_tostring(L, -1));
  lua_remove(L, -2); /* drop env */
  lua_pushstring(L, path);
  return 2;
}

static void install_searchers(lua_State *L) {
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "searchers");
  /* searchers: 1 preload, then ours, then text-only Lua files, then C. */
  lua_Integer n = luaL_len(L, -1);
  lua_createtable(L, (int)n + 1, 0);
  lua_geti(L, -2, 1);
  lua_seti(L, -2, 1);
  lua_pushcfunction(L, searcher_stdlib);
  lua_seti(L, -2, 2);
  lua_pushcfunction(L, searcher_user);
  lua_seti(L, -2, 3);
  for (lua_Integer i = 3; i <= n; i++) {
    lua_geti(L, -2, i);
    lua_seti(L, -2, i + 1);
  }
  lua_setfield(L, -3, "searchers");
  lua_pop(L, 2);
}

/* ---- text-only load, loadfile, dofile ---------------------------------- */

static int l_load_text(lua_State *L) {
  /* load(chunk [, chunkname [, mode [, env]]]) with mode forced to "t";
   * an absent env stays absent (a nil env would mean _ENV = nil). */
  int n = lua_gettop(L);
  if (n >= 3 && !lua_isnil(L, 3) && strchr(luaL_checkstring(L, 3), 't') == NULL)
    return luaL_error(L, "bytecode is refused: relish loads Lua source only");
  if (n < 3) {
    lua_settop(L, 3);
    n = 3;
  }
  lua_pushliteral(L, "t");
  lua_replace(L, 3);
  lua_pushvalue(L, lua_upvalueindex(1));
  lua_insert(L, 1);
  lua_call(L, n, LUA_MULTRET);
  return lua_gettop(L);
}

static int l_loadfile_text(lua_State *L) {
  const char *path = luaL_optstring(L, 1, NULL);
  int env = !lua_isnone(L, 3);
  if (luaL_loadfilex(L, path, "t") != LUA_OK) {
    luaL_pushfail(L);
    lua_insert(L, -2);
    return 2;
  }
  if (env) {
    lua_pushvalue(L, 3);
    if (!lua_setupvalue(L, -2, 1)) lua_pop(L, 1);
  }
  return 1;
}

static int l_dofile_text(lua_State *L) {
  const char *path = luaL_optstring(L, 1, NULL);
  lua_settop(L, 1);
  if (luaL_loadfilex(L, path, "t") != LUA_OK) return lua_error(L);
  lua_call(L, 0, LUA_MULTRET);
  return lua_gettop(L) - 1;
}

static void install_text_loaders(lua_State *L) {
  lua_getglobal(L, "load");
  lua_pushcclosure(L, l_load_text, 1);
  lua_setglobal(L, "load");
  lua_pushcfunction(L, l_loadfile_text);
  lua_setglobal(L, "loadfile");
  lua_pushcfunction(L, l_dofile_text);
  lua_setglobal(L, "dofile");
}

/* ---- errors ------------------------------------------------------------ */

/* A raised table with neither a message nor __tostring: show its scalar
 * fields, e.g. "error object {code = 5}", rather than an address. */
static const char *describe_table(lua_State *L, int t) {
  int base = lua_gettop(L), n = 0;
  lua_pushliteral(L, "error object {");
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    int vt = lua_type(L, -1);
    if (n < 8 && lua_type(L, -2) == LUA_TSTRING &&
        (vt == LUA_TSTRING || vt == LUA_TNUMBER || vt == LUA_TBOOLEAN)) {
      const char *q = vt == LUA_TSTRING ? "\"" : "";
      const char *v =
          vt == LUA_TBOOLEAN ? (lua_toboolean(L, -1) ? "true" : "false") : lua_tostring(L, -1);
      lua_pushfstring(L, "%s%s = %s%s%s", n ? ", " : "", lua_tostring(L, -2), q, v, q);
      lua_insert(L, -3); /* below the key and the value */
      n++;
    }
    lua_pop(L, 1);
  }
  lua_pushliteral(L, "}");
  lua_concat(L, lua_gettop(L) - base);
  return lua_tostring(L, -1);
}

int relish_msghandler(lua_State *L) {
  const char *kind = "error";
  const char *msg;
  if (lua_type(L, 1) == LUA_TTABLE) {
    if (lua_getfield(L, 1, "kind") == LUA_TSTRING) kind = lua_tostring(L, -1);
    lua_pop(L, 1);
    if (luaL_getmetafield(L, 1, "__tostring") != LUA_TNIL) {
      lua_pop(L, 1);
      msg = luaL_tolstring(L, 1, NULL);
    } else if (lua_getfield(L, 1, "message") == LUA_TSTRING) {
      msg = lua_tostring(L, -1);
    } else {
      msg = describe_table(L, 1);
    }
  } else if (lua_type(L, 1) == LUA_TSTRING) {
    msg = lua_tostring(L, 1);
  } else {
    msg = luaL_tolstring(L, 1, NULL);
  }
  int m = lua_gettop(L);
  lua_createtable(L, 0, 4);
  lua_pushvalue(L, 1);
  lua_setfield(L, -2, "value");
  lua_pushstring(L, msg);
  lua_setfield(L, -2, "message");
  lua_pushstring(L, kind);
  lua_setfield(L, -2, "kind");
  luaL_traceback(L, L, NULL, 1);
  lua_setfield(L, -2, "traceback");
  lua_replace(L, m);
  lua_settop(L, m);
  return 1;
}

int relish_error_exit(lua_State *L, int idx) {
  int code = RELISH_EXIT_FAILED;
  int top = lua_gettop(L);
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) return code;
  /* an explicit exit code on the raised value wins */
  if (lua_getfield(L, idx, "value") == LUA_TTABLE && lua_getfield(L, -1, "exit") == LUA_TNUMBER) {
    code = (int)lua_tointeger(L, -1);
  } else if (lua_getfield(L, idx, "kind") == LUA_TSTRING) {
    const char *kind = lua_tostring(L, -1);
    if (strcmp(kind, "interrupted") == 0)
      code = RELISH_EXIT_INTERRUPTED;
    else if (strcmp(kind, "usage") == 0)
      code = RELISH_EXIT_USAGE;
  }
  lua_settop(L, top);
  return code;
}

/* ---- the state ---------------------------------------------------------- */

lua_State *relish_newstate(void) {
  lua_State *L = luaL_newstate();
  if (!L) return NULL;
  luaL_openlibs(L);
  relish_error_register(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  for (const relish_native_module *m = relish_native_modules; m->name; m++) {
    lua_pushcfunction(L, m->open);
    lua_setfield(L, -2, m->name);
  }
  lua_pushcfunction(L, luaopen_relish__host);
  lua_setfield(L, -2, "relish._host");
  lua_pushcfunction(L, luaopen_relish_secret);
  lua_setfield(L, -2, "relish.secret");
  lua_pushcfunction(L, luaopen_relish__gate);
  lua_setfield(L, -2, "relish._gate");
  lua_pushcfunction(L, luaopen_relish__journal);
  lua_setfield(L, -2, "relish._journal");
  lua_pushcfunction(L, luaopen_relish__loop);
  lua_setfield(L, -2, "relish._loop");
  lua_pop(L, 1);
  install_searchers(L);
  install_text_loaders(L);
  return L;
}
