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

/* The current deadline (CLOCK_MONOTONIC seconds) of the running step, or 0:
 * blocking C waits (processes, transfers) should not wait past it. */
double relish_deadline(void);

/* Long waits call this about every tenth of a second: on a terminal it
 * redraws the running step's spinner. Returns the seconds until it wants to be
 * called again, or a negative number when no progress is shown. */
double relish_progress_tick(void);

/* Initialise libcurl / libgit2 once, on first use; cleaned up at exit. */
void relish_need_curl(void);
void relish_need_git(void);

/* Path of the running relish executable. */
const char *relish_exe_path(void);

/* ---- the effect gate ----------------------------------------------------
 * Every operation that changes the world goes through the gate:
 *
 *   relish_effect e = {.kind = "fs.write", .target = path, .describe = "...",
 *                      .undo = undo_json, .fingerprint = fp};
 *   lua_Integer id;
 *   switch (relish_gate_begin(L, &e, &id)) {
 *   case RELISH_GATE_PLANNED: return planned_result(L);  // dry-run: do not act
 *   case RELISH_GATE_ACT: break;
 *   }
 *   ... act; on failure: relish_gate_failed(L, id, msg); return relish_fail(...)
 *   relish_gate_done(L, id, NULL);
 *
 * Before returning ACT the action (with its undo record) is durable in the
 * journal; outside a run (relish lua) there is no journal and the gate always
 * says ACT. relish_gate_begin raises (a Lua error) when the journal cannot be
 * written or a saved plan does not match, so call it before acquiring C
 * resources. Undo: an effect of kind "MOD.verb" is undone by calling
 * require("relish.MOD").undo(kind, record) with the decoded undo record; the
 * undo must be correct whether or not the action took effect (in doubt). */
typedef struct {
  const char *kind;        /* "fs.write": module "." verb */
  const char *target;      /* what it acts on: a path, a URL, a ref */
  const char *describe;    /* one line for people (the gate redacts secrets) */
  const char *detail;      /* optional multi-line detail for plans, e.g. a unified diff */
  const char *undo;        /* JSON object text: the undo record; NULL = irreversible */
  const char *fingerprint; /* precondition: what the live state looked like, or NULL */
} relish_effect;

enum { RELISH_GATE_ACT = 1, RELISH_GATE_PLANNED = 2 };

int relish_gate_begin(lua_State *L, const relish_effect *e, lua_Integer *id);
void relish_gate_done(lua_State *L, lua_Integer id, const char *result_json);
void relish_gate_failed(lua_State *L, lua_Integer id, const char *message);
/* True while a dry-run is in progress. */
int relish_gate_dry_run(lua_State *L);
/* Changes at the start of every run (and test capture): state a module keeps
 * for one run is stale once it differs from what the module saw. */
lua_Integer relish_gate_session(void);

/* ---- secrets -------------------------------------------------------------
 * Secrets are userdata ("relish.Secret") that print as "***". Modules accept
 * them where credentials go: relish_checksecret returns the plain value of a
 * secret or a string at idx (NULL for other types, with *len untouched). Every
 * secret value in use is redacted from output, the journal, errors and plans:
 * relish_redact pushes s with each secret value replaced by "***". */
const char *relish_tosecret(lua_State *L, int idx, size_t *len);
int relish_issecret(lua_State *L, int idx);
const char *relish_redact(lua_State *L, const char *s, size_t len, size_t *outlen);

#endif
