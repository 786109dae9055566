/* relish.h: what the host offers native modules (error values, interruption,
 * lazy library initialisation, helpers shared by every module). */
#ifndef RELISH_H
#define RELISH_H

#include <lua.h>
#include <lauxlib.h>
#include <stddef.h>

#define RELISH_VERSION "0.1.0"

/* Exit codes fixed by DESIGN.md. */
enum {
  RELISH_EXIT_OK = 0,
  RELISH_EXIT_FAILED = 1,
  RELISH_EXIT_USAGE = 2,
  RELISH_EXIT_INCOMPLETE = 3,
  RELISH_EXIT_LOCKED = 4,
  RELISH_EXIT_INTERRUPTED = 130
};

/* Push a structured error value {kind=, message=} with a __tostring
 * metamethod (metatable "relish.Error"). Returns nothing; the table is on the
 * stack top. Extra fields can be set on it with lua_setfield afterwards. */
void relish_push_error(lua_State *L, const char *kind, const char *fmt, ...);

/* The usual failure return of a runtime error: pushes nil and the error table
 * and returns 2, so a module writes `return relish_fail(L, "parse", ...)`. */
int relish_fail(lua_State *L, const char *kind, const char *fmt, ...);

/* Raise a structured error (never returns). */
int relish_raise(lua_State *L, const char *kind, const char *fmt, ...);

/* True once SIGINT or SIGTERM has arrived. Long blocking C loops (poll,
 * waitpid) check it and return so Lua can raise "interrupted". */
int relish_interrupted(void);
/* Raise the "interrupted" error (kind = "interrupted"). */
int relish_raise_interrupted(lua_State *L);

/* Initialise libcurl / libgit2 once, on first use; cleaned up at exit. */
void relish_need_curl(void);
void relish_need_git(void);

/* Path of the running relish executable. */
const char *relish_exe_path(void);

#endif
