/* signals.c: SIGINT/SIGTERM only set a flag and a hook, as lua.c does; the
 * hook raises "interrupted" at the next safe point of the Lua VM, and blocking
 * C loops poll relish_interrupted() (handlers are installed without SA_RESTART
 * so poll and waitpid return EINTR). */
#define _GNU_SOURCE
#include <signal.h>
#include <string.h>

#include "hostint.h"

static volatile sig_atomic_t interrupted;
static lua_State *mainL;

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  relish_raise_interrupted(L);
}

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
  if (mainL) /* lua_sethook is safe to call from a signal handler */
    lua_sethook(mainL, interrupt_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

void relish_signals_install(lua_State *L) {
  struct sigaction sa;
  mainL = L;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: blocking calls return EINTR */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

int relish_interrupted(void) { return interrupted != 0; }

/* ---- deadlines: a step's or a run's timeout ----------------------------- */

static double deadline;

static void deadline_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  if (deadline > 0 && relish_now() >= deadline) {
    lua_sethook(L, NULL, 0, 0);
    deadline = 0;
    relish_raise(L, "timeout", "timed out");
  }
}

void relish_set_deadline(lua_State *L, double t) {
  deadline = t;
  if (interrupted) return; /* the interrupt hook has priority */
  if (t > 0)
    lua_sethook(L, deadline_hook, LUA_MASKCOUNT, 10000);
  else
    lua_sethook(L, NULL, 0, 0);
}

double relish_deadline(void) { return deadline; }

void relish_interrupt_reset(void) {
  interrupted = 0;
  if (mainL) lua_sethook(mainL, NULL, 0, 0);
}
