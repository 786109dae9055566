/* host_state.c: the Lua state the host builds: embedded stdlib lookup, strict
 * environments, text-only loading, structured errors and the message handler. */
#define _GNU_SOURCE
#include <stdlib.h>

#include "check.h"
#include "hostint.h"

/* Runs chunk in a strict environment; returns the pcall status and leaves the
 * result (or the handled error table) on the stack. */
static int run_strict(lua_State *L, const char *chunk) {
  lua_pushcfunction(L, relish_msghandler);
  if (luaL_loadbufferx(L, chunk, strlen(chunk), "=chunk", "t") != LUA_OK) return -1;
  relish_push_strict_env(L);
  lua_setupvalue(L, -2, 1);
  int st = lua_pcall(L, 0, 1, -2);
  return st;
}

static void test_embedded_stdlib_found(void) {
  lua_State *L = relish_newstate();
  CHECK(luaL_dostring(L, "return require('relish.testing').show({1, 2, a = 'x'})") == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "{1, 2, a = \"x\"}");
  /* the chunk name is the source path, so tracebacks point at real files */
  CHECK(luaL_dostring(L, "return package.loaded['relish.testing'] and "
                         "debug.getinfo(require('relish.testing').show, 'S').source") == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "@stdlib/relish/testing.lua");
  lua_close(L);
}

static void test_strict_read_names_variable_and_line(void) {
  lua_State *L = relish_newstate();
  CHECK(run_strict(L, "local a = 1\nreturn undefined_thing") != LUA_OK);
  lua_getfield(L, -1, "message");
  CHECK_STR(lua_tostring(L, -1), "chunk:2: undeclared global 'undefined_thing' (use 'local')");
  lua_close(L);
}

static void test_strict_write_is_an_error(void) {
  lua_State *L = relish_newstate();
  CHECK(run_strict(L, "x = 1") != LUA_OK);
  lua_getfield(L, -1, "message");
  CHECK_STR(lua_tostring(L, -1), "chunk:1: assignment to undeclared global 'x' (use 'local')");
  lua_close(L);
}

static void test_strict_sees_standard_globals(void) {
  lua_State *L = relish_newstate();
  CHECK(run_strict(L, "return string.format('%d', #table.pack(1, 2))") == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "2");
  lua_close(L);
}

static void test_bytecode_refused(void) {
  lua_State *L = relish_newstate();
  CHECK(luaL_dostring(L, "local f, err = load(string.dump(function() return 1 end))\n"
                         "return tostring(f) .. ' ' .. tostring(err)") == LUA_OK);
  const char *s = lua_tostring(L, -1);
  CHECK(s && strstr(s, "nil") == s && strstr(s, "binary chunk"));
  CHECK(luaL_dostring(L, "return select(2, pcall(load, 'return 1', 'x', 'b'))") == LUA_OK);
  s = lua_tostring(L, -1);
  CHECK(s && strstr(s, "bytecode is refused"));
  /* text still loads, and an absent env is not a nil env */
  CHECK(luaL_dostring(L, "return load('return type(string)')()") == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "table");
  lua_close(L);
}

static void test_structured_error_values(void) {
  lua_State *L = relish_newstate();
  relish_push_error(L, "parse", "bad thing at %d", 7);
  lua_getfield(L, -1, "kind");
  CHECK_STR(lua_tostring(L, -1), "parse");
  lua_pop(L, 1);
  CHECK_STR(luaL_tolstring(L, -1, NULL), "bad thing at 7");
  lua_close(L);
}

static void test_exit_codes_from_errors(void) {
  lua_State *L = relish_newstate();
  CHECK(run_strict(L, "error('plain')") != LUA_OK);
  CHECK(relish_error_exit(L, -1) == RELISH_EXIT_FAILED);
  lua_settop(L, 0);
  CHECK(run_strict(L, "error({kind = 'usage', message = 'bad flag'})") != LUA_OK);
  CHECK(relish_error_exit(L, -1) == RELISH_EXIT_USAGE);
  lua_settop(L, 0);
  CHECK(run_strict(L, "error({kind = 'interrupted', message = 'interrupted'})") != LUA_OK);
  CHECK(relish_error_exit(L, -1) == RELISH_EXIT_INTERRUPTED);
  lua_settop(L, 0);
  CHECK(run_strict(L, "error({exit = 4, message = 'locked'})") != LUA_OK);
  CHECK(relish_error_exit(L, -1) == RELISH_EXIT_LOCKED);
  lua_close(L);
}

static void test_stdlib_path_overrides_embedded(void) {
  char dir[] = "/tmp/relish-stdlib-XXXXXX";
  CHECK(mkdtemp(dir) != NULL);
  char path[256];
  snprintf(path, sizeof path, "%s/relish", dir);
  {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mkdir -p %s && printf 'return {dev = true}' > %s/testing.lua", path,
             path);
    CHECK(system(cmd) == 0);
  }
  setenv("RELISH_STDLIB_PATH", dir, 1);
  lua_State *L = relish_newstate();
  CHECK(luaL_dostring(L, "return require('relish.testing').dev") == LUA_OK);
  CHECK(lua_toboolean(L, -1));
  lua_close(L);
  unsetenv("RELISH_STDLIB_PATH");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  CHECK(system(cmd) == 0);
}

int main(void) {
  RUN(test_embedded_stdlib_found);
  RUN(test_strict_read_names_variable_and_line);
  RUN(test_strict_write_is_an_error);
  RUN(test_strict_sees_standard_globals);
  RUN(test_bytecode_refused);
  RUN(test_structured_error_values);
  RUN(test_exit_codes_from_errors);
  RUN(test_stdlib_path_overrides_embedded);
  CHECK_MAIN();
}
