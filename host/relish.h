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

/* CLOCK_MONOTONIC now, in seconds: the clock of deadlines and timeouts. */
double relish_now(void);

/* The current deadline (CLOCK_MONOTONIC seconds) of the running step, or 0:
 * blocking C waits (processes, transfers) should not wait past it. */
double relish_deadline(void);

/* Long waits call this about every tenth of a second: on a terminal it
 * redraws the running step's spinner. Returns the seconds until it wants to be
 * called again, or a negative number when no progress is shown. */
double relish_progress_tick(void);

/* Pauses Lua's garbage collector until the calling C function returns (or
 * raises): for functions that build thousands of objects that all stay
 * reachable (a decoded document, a commit log), where incremental collection
 * steps are pure overhead. Pushes one value (a to-be-closed slot): call it
 * once, after the function's fixed stack slots. Only when big is set: a
 * restarted collector owes a step at once, which for small work (an undo
 * record, an event) costs far more than it saves; then the slot is nil. */
void relish_gc_pause(lua_State *L, int big);
/* Ends the pause whose slot is at idx before the caller drops that slot
 * with lua_settop: Lua 5.4.4's lua_settop can go on with a stale stack
 * pointer when it runs a __close that grows the stack (a crash seen in
 * json.decode inside coroutines); lua_closeslot does not. */
void relish_gc_resume(lua_State *L, int idx);

/* The metatable tname of a userdata that owns C resources, made on first
 * use: release is both its __gc and its __close (so it must be idempotent),
 * and methods, unless NULL, are its __index. Pushes the metatable and, like
 * luaL_newmetatable, returns 1 when it was made just now (for the caller to
 * add fields), 0 when it existed already. */
int relish_resource_metatable(lua_State *L, const char *tname, lua_CFunction release,
                              const luaL_Reg *methods);

/* Initialise libcurl / libgit2 once, on first use; cleaned up at exit. */
void relish_need_curl(void);
void relish_need_git(void);

/* Path of the running relish executable. */
const char *relish_exe_path(void);

/* ---- one set of helpers for every module (util.c) ------------------------
 * The resource box: every C resource a Lua-called function holds lives in
 * one box, a userdata whose __gc/__close frees it, so a Lua error at any
 * point leaks nothing. Resources are freed in the reverse order of adding.
 * A box raises (out of memory) only from the thread that made it: add to it
 * from the function that made it (or its continuation), never from a loop
 * callback. */
typedef void (*relish_freefn)(void *);
typedef struct relish_box relish_box;
/* Pushes a new, empty box (metatable "relish.Box"). */
relish_box *relish_box_new(lua_State *L);
/* Hands p to the box, freed with fn; returns p (NULL p is fine: nothing is
 * added). Raises a memory error, after fn(p), only when the box cannot grow. */
void *relish_box_add(relish_box *b, void *p, relish_freefn fn);
/* A descriptor closed with the box; returns fd (a negative fd is ignored). */
int relish_box_fd(relish_box *b, int fd);
/* Closes fd now and takes it out of the box. */
void relish_box_fd_close(relish_box *b, int fd);
/* Frees p now and takes it out of the box. */
void relish_box_drop(relish_box *b, void *p);
/* Takes p out without freeing it (its ownership moved elsewhere). */
void relish_box_forget(relish_box *b, void *p);
/* Frees everything now; idempotent, and the box stays usable. */
void relish_box_release(relish_box *b);

/* A runtime failure found in C: kind (or an errno to derive it from) and a
 * one-line message; turned into a structured error by relish_status_push. */
typedef struct {
  int code;         /* errno value, or 0 */
  const char *kind; /* NULL: derived from code (relish_status_kind) */
  char msg[4352];
} relish_status;
/* Sets kind and the message (code is left as it is). Returns -1. */
int relish_status_set(relish_status *st, const char *kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* code, and the message "where: strerror(code)" (or strerror alone when
 * where is NULL); kind is derived from code. Returns -1. */
int relish_status_errno(relish_status *st, int code, const char *where);
/* st->kind, or from st->code: "not_found" (ENOENT, ENOTDIR), "permission"
 * (EACCES, EPERM, EROFS), "exists" (EEXIST, ENOTEMPTY), "too_large" (EFBIG),
 * "io" (everything else). */
const char *relish_status_kind(const relish_status *st);
/* Pushes the error {kind, message = what .. ": " .. msg} (msg alone when
 * what is NULL), on one line and redacted. */
void relish_status_push(lua_State *L, const char *what, const relish_status *st);
/* relish_status_push, then raises it. */
int relish_status_raise(lua_State *L, const char *what, const relish_status *st);

/* Opens the regular file at path for reading (O_RDONLY | O_CLOEXEC | flags,
 * e.g. O_NOFOLLOW): a descriptor in blocking mode, or -1 with st set. It
 * opens without blocking and looks before it reads, so a fifo, a socket or a
 * device is refused at once (kind not_file, or notfile_kind when not NULL)
 * instead of blocking until a signal; a directory is EISDIR. */
int relish_open_file(const char *path, int flags, const char *notfile_kind, relish_status *st);

/* A growable byte buffer, always NUL-terminated once anything was added;
 * start it zeroed, with max set to cap it (0: no cap). */
typedef struct {
  char *data;
  size_t len, cap, max;
} relish_buf;
/* Appends n bytes; 0, or -1 (buffer untouched) when it would pass max or
 * memory runs out. */
int relish_buf_add(relish_buf *b, const void *p, size_t n);
/* Frees the data; len and cap back to 0, max kept. */
void relish_buf_free(relish_buf *b);
/* Room for one more element in the array v of n elements of size bytes and
 * capacity *cap (doubled when full; first when nothing is allocated yet):
 * returns v or where realloc moved it, with *cap updated; NULL when out of
 * memory, v untouched. */
void *relish_grow(void *v, size_t n, size_t *cap, size_t size, size_t first);

/* Checks the options table at idx against known (NULL-terminated): nil or
 * none is fine; raises at the caller (luaL_error) "FNAME: options must be a
 * table, got T" or "FNAME: unknown option 'k' (did you mean 'x'?)". */
void relish_checkopts(lua_State *L, int idx, const char *fname, const char *const *known);
/* Misuse of an argument in the one wording of every module, raised at the
 * caller's line: "FNAME: expected WHAT, got TYPE". */
int relish_argexpected(lua_State *L, int idx, const char *fname, const char *what);
/* The string at idx (not a number: a number where text goes is misuse), or
 * relish_argexpected(..., "a string"). */
const char *relish_checktext(lua_State *L, int idx, const char *fname, size_t *len);
/* The candidate closest to word, for "did you mean": within edit distance 2,
 * or one that word (2 characters or more) begins; NULL when none is. */
const char *relish_nearest(const char *word, const char *const *cands, size_t n);

/* ---- effects: providers run by the gate ---------------------------------
 * Every operation that changes the world is an effect of a registered kind.
 * A module registers each kind once (at luaopen) with what only it knows:
 *
 *   apply(arg)    acts; returns its results, or raises a structured error
 *                 (relish_raise) when it fails. May yield (a process, a
 *                 transfer) like any lua_CFunction with a continuation.
 *   plan(arg)     dry-run: adds the effect to the module's dry-run view and
 *                 returns the planned results. NULL: returns true.
 *   undo(record, opts)  reverses one journaled action from its undo record
 *                 (a table); acts directly, never through the gate; raises
 *                 when it cannot. Must be right whether or not the action
 *                 took effect (an action left in doubt by a crash), and act
 *                 only on what the action left (else raise, kind conflict,
 *                 unless opts.force). NULL: the kind is irreversible.
 *   fields        the fields every undo record of the kind has (checked
 *                 when the action is journaled and again before its undo).
 *
 * A Lua-called function of the module checks its arguments, reads the live
 * state, builds the action (target, redacted-at-display description, detail,
 * fingerprint, undo record as a Lua table) and ends with
 *
 *   return relish_effect_run(L, &action);
 *
 * The gate owns the protocol, the same for every kind: it refuses effects
 * where none may happen (a recipe being loaded), checks a saved plan's next
 * action and fingerprint, encodes the undo record once (relish.json) and
 * journals the action durably before it acts; in a dry-run it calls plan
 * instead of apply; afterwards it marks the action done, or failed and
 * re-raises apply's error. Descriptions are redacted for display; undo
 * records are never redacted as text, so a provider keeps secret values out
 * of them by structure (the source of a secret, never its value). Outside a
 * run (relish lua) apply runs directly. See docs/internals.md. */
typedef struct {
  const char *kind;          /* "fs.write": module "." verb */
  lua_CFunction apply;       /* required */
  lua_CFunction plan;        /* optional */
  lua_CFunction undo;        /* optional: NULL = irreversible */
  const char *const *fields; /* optional, NULL-terminated */
} relish_provider;

/* Registers providers (an array ended by {NULL}) as kinds of module (the
 * name require loads, "relish.fs": a rollback in another process loads it
 * to find the undo). Registering a kind again replaces it. */
void relish_effect_register(lua_State *L, const char *module, const relish_provider *providers);

typedef struct {
  const char *kind;        /* a registered kind */
  const char *target;      /* what it acts on: a path, a URL, a ref */
  const char *describe;    /* one line for people; NULL: the target */
  const char *detail;      /* optional multi-line detail for plans (a diff) */
  const char *fingerprint; /* the live state it was computed from, or NULL */
  /* What it will do, whatever the live state: the resolved target, a digest
   * of the content it writes. A saved plan pins it for every action (the
   * fingerprint only for the first action on a target). Text without " #pin: ",
   * or NULL. */
  const char *pin;
  int record; /* stack index of the undo record table; 0: none */
  int arg;    /* stack index of the value apply/plan get; 0: nil */
} relish_action;

/* Runs the action through the gate and returns the number of results on the
 * stack (apply's or plan's). Call it last: `return relish_effect_run(L, &a);`
 * (it may yield, and it raises apply's error after marking the action
 * failed). Everything the action points at must stay alive on the stack. */
int relish_effect_run(lua_State *L, const relish_action *a);

/* True while a dry-run is in progress. */
int relish_gate_dry_run(lua_State *L);
/* The running journal's database file, or NULL outside a run: effects must
 * not touch it, its WAL or a directory holding it (a recipe cannot delete
 * its own history). */
const char *relish_gate_journal_path(void);
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

/* Register a value for redaction for the rest of the process (an Authorization
 * header value, a password from a URL, an encoded form of a secret): from now
 * on relish_redact replaces it by three stars like a secret's value; it
 * also replaces the user-info of any URL: "https://user:pw@host" becomes
 * "https://" "***@host". */
void relish_redact_add(const char *value, size_t len);

/* ---- the event loop ------------------------------------------------------
 * One loop in the host waits on everything at once: libcurl transfers (one
 * multi handle), timers and child processes. Lua tasks (relish.task) are
 * coroutines the loop schedules. A source of events is a relish_waiter
 * embedded in a userdata (its box) that owns the C resources:
 *
 *   relish_loop_add(L, &box->w, box_idx);   // the loop keeps the box alive
 *   return relish_loop_wait(L, &box->w, ctx, k);
 *
 * relish_loop_wait yields the current task (inside a task) or runs the loop
 * right there (outside one, or where a yield is impossible) until the waiter
 * is ready, then continues in k, which looks at w->outcome: RELISH_WAIT_READY,
 * or a reason the wait was stopped (its task was cancelled, SIGINT/SIGTERM,
 * the step's deadline). A stopped waiter was cancelled through ops->cancel;
 * k cleans up what it owns and calls relish_loop_raise. Sources never call
 * Lua: callbacks (poll readiness, libcurl's) only fill C buffers and set
 * ready/finished; errors are stashed and raised by k. */
#include <poll.h>

typedef struct relish_waiter relish_waiter;

#define RELISH_WAITER_MAXFD 4

typedef struct {
  /* Fill pfd (room for RELISH_WAITER_MAXFD) with the descriptors to watch;
   * return the seconds until advance must run anyway, or -1. NULL: none. */
  double (*interest)(relish_waiter *w, struct pollfd *pfd, int *n, double now);
  /* Act on poll's answer (this waiter's entries) or on time passing; set
   * w->finished (and so ready) when done. NULL: nothing to do. */
  void (*advance)(relish_waiter *w, const struct pollfd *pfd, int n, double now);
  /* Stop: release what can be released at once and return 1, or return 0 to
   * be driven on until finished (a process between TERM and KILL). NULL: 1. */
  int (*cancel)(relish_waiter *w, double now);
} relish_waiter_ops;

enum {
  RELISH_WAIT_READY = 0,
  RELISH_WAIT_CANCELLED,   /* the task was cancelled ("cancelled") */
  RELISH_WAIT_INTERRUPTED, /* SIGINT or SIGTERM ("interrupted") */
  RELISH_WAIT_TIMEOUT,     /* the step's deadline passed ("timeout") */
  RELISH_WAIT_DEADLOCK     /* nothing left that could ever wake it ("deadlock") */
};

struct relish_waiter {
  const relish_waiter_ops *ops;
  int ready;    /* set by the source: wake whoever waits (cleared by them) */
  int finished; /* set by the source: nothing more will happen */
  int outcome;  /* RELISH_WAIT_*, set by the loop */
  /* the loop's own */
  relish_waiter *prev, *next;
  void *task;
  int linked, orphan, pfd_first, pfd_n;
  double wake_at;
  void *easy; /* CURL *: a transfer driven by the multi handle */
  int in_multi, curl_code;
};

/* Link w into the loop, owned by the running task; the value at box_idx is
 * kept alive while w is linked. */
void relish_loop_add(lua_State *L, relish_waiter *w, int box_idx);
/* The same for a libcurl easy handle: added to the loop's multi handle; when
 * the transfer ends w->curl_code holds its CURLcode and w is finished.
 * Returns 0, or -1 when the multi handle refused it. */
int relish_loop_add_transfer(lua_State *L, relish_waiter *w, void *easy, int box_idx);
/* Unlink w (and take its easy handle out of the multi handle); idempotent,
 * safe in __gc. */
void relish_loop_remove(lua_State *L, relish_waiter *w);
/* A source's news outside poll (a libcurl callback): wake whoever waits. */
void relish_waiter_wake(relish_waiter *w);
int relish_loop_wait(lua_State *L, relish_waiter *w, lua_KContext ctx, lua_KFunction k);
/* Raise the error that goes with w->outcome (never returns). */
int relish_loop_raise(lua_State *L, const relish_waiter *w);
/* True when the running task has been cancelled: modules check it before
 * starting something new. */
int relish_task_cancelled(lua_State *L);

#endif
