/* signals.c: how a run is stopped. SIGINT/SIGTERM only set a flag and a hook,
 * as lua.c does; one count hook raises "interrupted", or "timeout" past the
 * running step's deadline, at the next safe point of the Lua VM, and blocking
 * C loops poll relish_interrupted() and relish_deadline() (handlers are
 * installed without SA_RESTART so poll and waitpid return EINTR). A hook
 * cannot fire inside one long C call (a backtracking string.find): a
 * watchdog thread ends the process when a stop is not taken within a grace
 * period, which leaves the run crashed with its journal consistent. */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "hostint.h"

/* Every HOOK_COUNT VM instructions the hook looks at the clock and the flag.
 * Any hook makes the VM trap on every instruction (about twice as slow in a
 * tight loop, docs/performance.md), so it is on only while a deadline is set
 * or once a signal came. */
#define HOOK_COUNT 10000

static volatile sig_atomic_t interrupted;
/* a stop was raised already: it is raised again only in a recipe's own code,
 * so a pcall there cannot swallow it, while relish's stdlib unwinds freely */
static volatile sig_atomic_t raised;
static lua_State *mainL;
static double deadline; /* monotonic seconds; 0: none */
/* the task the event loop is running (a coroutine), which a signal hooks too */
static lua_State *volatile running;

/* ---- the watchdog ----------------------------------------------------------- */

static struct {
  pthread_mutex_t mu;
  sem_t wake; /* posted by the signal handler (async-signal-safe) and setters */
  int started;
  double grace;     /* seconds a stop may take before the process ends */
  double deadline;  /* the deadline being watched, 0: none */
  double signal_at; /* when a pending signal was first seen, 0: none */
  char what[512];   /* what runs: 'step "x" of run R' */
} W = {.mu = PTHREAD_MUTEX_INITIALIZER, .grace = 10};

static void wd_poke(void) {
  if (W.started) sem_post(&W.wake);
}

static void wd_end(const char *why, int code) {
  char msg[1024];
  int n = snprintf(
      msg, sizeof msg,
      "\nrelish: %s did not stop within %gs of %s: it is stuck in a call that cannot be "
      "interrupted; ending the process.%s\n",
      W.what[0] ? W.what : "the running code", W.grace, why,
      W.what[0] ? " The journal is consistent: the run is left crashed, to `relish rollback` "
                  "or `relish resume`."
                : "");
  if (n > 0) {
    ssize_t w = write(2, msg, (size_t)n < sizeof msg ? (size_t)n : sizeof msg - 1);
    (void)w;
  }
  _exit(code);
}

static void *wd_main(void *arg) {
  (void)arg;
  for (;;) {
    pthread_mutex_lock(&W.mu);
    double now = relish_now(), end_at = 0;
    int code = 0;
    const char *why = NULL;
    if (!interrupted)
      W.signal_at = 0;
    else if (W.signal_at == 0)
      W.signal_at = now;
    if (W.signal_at > 0)
      end_at = W.signal_at + W.grace, code = RELISH_EXIT_INTERRUPTED, why = "the signal";
    if (W.deadline > 0 && (end_at == 0 || W.deadline + W.grace < end_at))
      end_at = W.deadline + W.grace, code = RELISH_EXIT_INCOMPLETE, why = "its deadline";
    if (end_at > 0 && now >= end_at) wd_end(why, code);
    pthread_mutex_unlock(&W.mu);
    if (end_at == 0) {
      while (sem_wait(&W.wake) != 0 && errno == EINTR) {
      }
    } else {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      double wait = end_at - now + 0.01;
      ts.tv_sec += (time_t)wait;
      ts.tv_nsec += (long)((wait - (double)(time_t)wait) * 1e9);
      if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
      while (sem_timedwait(&W.wake, &ts) != 0 && errno == EINTR) {
      }
    }
  }
  return NULL;
}

static void wd_start(void) {
  const char *g = getenv("RELISH_STOP_GRACE");
  if (g && *g) {
    char *end;
    double v = strtod(g, &end);
    if (*end == '\0' && v >= 0) W.grace = v;
  }
  if (sem_init(&W.wake, 0, 0) != 0) return;
  /* the thread must never take a signal meant for the main thread */
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t t;
  if (pthread_create(&t, NULL, wd_main, NULL) == 0) {
    pthread_detach(t);
    W.started = 1;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
}

/* ---- the hook --------------------------------------------------------------- */

static int in_stdlib(lua_State *L, lua_Debug *ar) {
  return lua_getinfo(L, "S", ar) && strncmp(ar->source, "@stdlib/relish/", 15) == 0;
}

static void stop_hook(lua_State *L, lua_Debug *ar) {
  int stop = interrupted ? 1 : (deadline > 0 && relish_now() >= deadline) ? 2 : 0;
  if (!stop || (raised && in_stdlib(L, ar))) {
    /* back to the slow pace (the signal handler asks for every instruction) */
    if (stop || deadline > 0)
      lua_sethook(L, stop_hook, LUA_MASKCOUNT, HOOK_COUNT);
    else
      lua_sethook(L, NULL, 0, 0);
    return;
  }
  raised = 1;
  lua_sethook(L, stop_hook, LUA_MASKCOUNT, HOOK_COUNT);
  if (stop == 1) relish_raise_interrupted(L);
  relish_raise(L, "timeout", "timed out");
}

static void on_signal(int sig) {
  (void)sig;
  interrupted = 1;
  /* lua_sethook is safe to call from a signal handler */
  lua_State *r = running;
  if (mainL) lua_sethook(mainL, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  if (r) lua_sethook(r, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
  wd_poke();
}

void relish_signals_install(lua_State *L) {
  struct sigaction sa;
  mainL = L;
  wd_start();
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = 0; /* no SA_RESTART: blocking calls return EINTR */
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  signal(SIGPIPE, SIG_IGN);
}

int relish_interrupted(void) { return interrupted != 0; }

lua_State *relish_running_task(lua_State *co) {
  lua_State *prev = running;
  running = co;
  /* a task that was waiting when the signal came has no hook yet */
  if (co && interrupted) lua_sethook(co, stop_hook, LUA_MASKCOUNT, 1);
  return prev;
}

/* ---- deadlines: a step's or a run's timeout --------------------------------- */

void relish_set_deadline(lua_State *L, double t, const char *what) {
  deadline = t;
  raised = interrupted ? raised : 0;
  pthread_mutex_lock(&W.mu);
  W.deadline = t;
  snprintf(W.what, sizeof W.what, "%s", what ? what : "");
  pthread_mutex_unlock(&W.mu);
  wd_poke();
  if (interrupted) return; /* the signal's hook stays as it is */
  if (t > 0)
    lua_sethook(L, stop_hook, LUA_MASKCOUNT, HOOK_COUNT);
  else
    lua_sethook(L, NULL, 0, 0);
}

double relish_deadline(void) { return deadline; }

/* The stop was taken (a rollback starts): a later signal is a new one. */
void relish_interrupt_reset(void) {
  interrupted = 0;
  raised = 0;
  if (mainL) lua_sethook(mainL, deadline > 0 ? stop_hook : NULL, LUA_MASKCOUNT, HOOK_COUNT);
  wd_poke();
}
