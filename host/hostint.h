/* hostint.h: the host's internal interfaces (state, loader, CLI, signals),
 * not for native modules, which include only relish.h. */
#ifndef RELISH_HOSTINT_H
#define RELISH_HOSTINT_H

#include "relish.h"

typedef struct {
  const char *name; /* "relish.json" */
  lua_CFunction open;
} relish_native_module;

typedef struct {
  const char *name;      /* "relish.testing" */
  const char *chunkname; /* "@stdlib/relish/testing.lua" */
  const unsigned char *data;
  size_t size;
} relish_embedded;

extern const relish_native_module relish_native_modules[];
extern const relish_embedded relish_stdlib[];

/* state.c */
lua_State *relish_newstate(void);
/* Load a user file as text into a function whose _ENV is a fresh strict
 * environment (the table is left below the function if keep_env is set). */
int relish_load_user(lua_State *L, const char *path);
/* Push a new strict environment table for user code. */
void relish_push_strict_env(lua_State *L);
/* The same, reading the names in the table at base instead of the globals. */
void relish_push_strict_env_over(lua_State *L, int base);
/* Message handler for lua_pcall: turns any error into a table
 * {message=, traceback=, kind=}. */
int relish_msghandler(lua_State *L);
/* Exit code for an error produced by relish_msghandler (at idx). */
int relish_error_exit(lua_State *L, int idx);

/* signals.c */
void relish_signals_install(lua_State *L);
void relish_interrupt_reset(void);
/* A deadline (monotonic seconds, 0: none) for the code about to run, and
 * what runs (a step: NULL when none runs), named if it must be ended. */
void relish_set_deadline(lua_State *L, double monotonic_seconds, const char *what);
/* The event loop is about to resume task co (NULL: back in the loop): a
 * signal hooks it too. Returns the task running before, to put back. */
lua_State *relish_running_task(lua_State *co);

/* cli.c */
int relish_cli(lua_State *L, int argc, char **argv);

/* hostlib.c: the internal module "relish._host" used by the stdlib. */
int luaopen_relish__host(lua_State *L);

/* secret.c, gate.c, journal.c: host modules preloaded as relish.secret,
 * relish._gate and relish._journal. */
int luaopen_relish_secret(lua_State *L);
int luaopen_relish__gate(lua_State *L);
int luaopen_relish__journal(lua_State *L);
/* loop.c: the event loop's Lua side (tasks, sleep), preloaded as relish._loop */
int luaopen_relish__loop(lua_State *L);

/* journal.c: what the gate writes. Each returns 0, or -1 with *err malloc'd. */
typedef struct relish_journal relish_journal;
relish_journal *relish_journal_check(lua_State *L, int idx);
/* The journal's database file (absolute), or NULL. */
const char *relish_journal_filename(relish_journal *j);
/* An action row as the gate journals it (display fields already redacted). */
typedef struct {
  const char *kind, *provider, *target, *describe, *detail, *fingerprint;
  const char *undo; /* the encoded undo record; NULL in a dry-run or when irreversible */
  int irreversible;
} relish_action_row;
int relish_journal_action_begin(relish_journal *j, const char *run_id, lua_Integer step,
                                lua_Integer seq, const relish_action_row *e, const char *status,
                                int durable, char **err);
int relish_journal_action_end(relish_journal *j, const char *run_id, lua_Integer seq,
                              const char *status, const char *result, const char *error,
                              char **err);

/* progress.c: adds progress(label|nil) to the table on the stack top */
void relish_progress_register(lua_State *L);

/* error.c */
void relish_error_register(lua_State *L);

#endif
