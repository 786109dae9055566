/* loop.c: the one event loop of the host (libcurl transfers through a multi
 * handle, timers, child processes, all in one ppoll) and the scheduler of
 * Lua tasks, coroutines that yield while they wait. Waiting outside a task
 * runs the loop in place, resuming tasks as their waits complete. Nothing
 * here calls Lua while C state is being walked: sources and libcurl
 * callbacks only set flags, and tasks are resumed between polls. */
#define _GNU_SOURCE
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "hostint.h"

#define TASK_MT "relish.Task"
#define TIMER_MT "relish.loop.Timer"
#define JOIN_MT "relish.loop.Join"
#define TICKER_MT "relish.loop.Ticker"
#define LONGEST_POLL 3600.0 /* a huge timeout only means waking up to recheck */

enum { T_NEW, T_RUNNING, T_WAITING, T_YIELDED, T_DONE, T_FAILED, T_CANCELLED };
static const char *const task_status[] = {"pending", "running", "waiting",  "running",
                                          "done",    "failed",  "cancelled"};

typedef struct task task;
struct task {
  lua_State *co;
  task *parent;
  task *prev, *next;      /* live tasks */
  task *ready_next;       /* the ready queue */
  relish_waiter *waiting; /* what it is suspended on */
  int state, cancelled, queued, nargs;
};

static struct {
  relish_waiter *waiters; /* linked sources */
  task *tasks;            /* live tasks */
  task *ready_head, *ready_tail;
  int nready;
  task *current; /* the task being resumed, innermost */
  int norphans;
  /* libcurl */
  CURLM *multi;
  struct pollfd *socks; /* what curl wants watched */
  size_t nsocks, capsocks;
  double curl_at; /* when curl wants its timeout action; < 0: never */
  int transfers;
  /* the poll set, rebuilt each round */
  struct pollfd *pfd;
  size_t cappfd;
} LP = {.curl_at = -1};

static int anchors_key; /* registry: lightuserdata -> the value kept alive */
static int anchors_gc(lua_State *L);

/* Tickers: a function called every so many seconds while the loop runs
 * (anything waits), between polls, outside every task. Not a task: a step's
 * end (reset), an interrupt or a cancellation leaves them alone. */
typedef struct ticker ticker;
struct ticker {
  double every, at;
  int on, due;
  ticker *next;
};
static ticker *tickers;
static int in_tick;

double relish_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- anchors: what the loop keeps alive ---------------------------------- */

static void push_anchors(lua_State *L) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key) == LUA_TTABLE) return;
  lua_pop(L, 1);
  lua_newtable(L);
  lua_createtable(L, 0, 1);
  lua_pushcfunction(L, anchors_gc);
  lua_setfield(L, -2, "__gc");
  lua_setmetatable(L, -2);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &anchors_key);
}

static void anchor(lua_State *L, const void *key, int idx) {
  idx = lua_absindex(L, idx);
  push_anchors(L);
  lua_pushvalue(L, idx);
  lua_rawsetp(L, -2, key);
  lua_pop(L, 1);
}

/* Never allocates (setting an existing or absent key to nil does not), so
 * it is safe from __gc and between walks of C state. */
static void unanchor(lua_State *L, const void *key) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &anchors_key) == LUA_TTABLE) {
    lua_pushnil(L);
    lua_rawsetp(L, -2, key);
  }
  lua_pop(L, 1);
}

/* ---- the ready queue ------------------------------------------------------ */

static void ready_push(task *t) {
  if (t->queued) return;
  t->queued = 1;
  t->ready_next = NULL;
  if (LP.ready_tail)
    LP.ready_tail->ready_next = t;
  else
    LP.ready_head = t;
  LP.ready_tail = t;
  LP.nready++;
}

static task *ready_pop(void) {
  task *t = LP.ready_head;
  if (!t) return NULL;
  LP.ready_head = t->ready_next;
  if (!LP.ready_head) LP.ready_tail = NULL;
  t->queued = 0;
  LP.nready--;
  return t;
}

/* Takes t out of the ready queue if it is in it: a task that finishes there
 * (one cancelled before it ever ran, or while its wait was ready) is
 * unanchored and may be collected, and the queue must not point at it. */
static void ready_remove(task *t) {
  if (!t->queued) return;
  task *prev = NULL;
  for (task *q = LP.ready_head; q; prev = q, q = q->ready_next) {
    if (q != t) continue;
    if (prev)
      prev->ready_next = t->ready_next;
    else
      LP.ready_head = t->ready_next;
    if (LP.ready_tail == t) LP.ready_tail = prev;
    LP.nready--;
    break;
  }
  t->queued = 0;
  t->ready_next = NULL;
}

void relish_waiter_wake(relish_waiter *w) {
  w->ready = 1;
  task *t = w->task;
  if (t && t->waiting == w && t->state == T_WAITING) ready_push(t);
}

/* ---- libcurl: the multi handle and its sockets ---------------------------- */

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp) {
  (void)easy, (void)userp, (void)socketp;
  size_t i = 0;
  while (i < LP.nsocks && LP.socks[i].fd != s)
    i++;
  if (what == CURL_POLL_REMOVE) {
    if (i < LP.nsocks) LP.socks[i] = LP.socks[--LP.nsocks];
    return 0;
  }
  if (i == LP.nsocks) {
    if (LP.nsocks == LP.capsocks) {
      size_t cap = LP.capsocks ? LP.capsocks * 2 : 16;
      struct pollfd *p = realloc(LP.socks, cap * sizeof *p);
      if (!p) return -1; /* curl fails the transfer */
      LP.socks = p;
      LP.capsocks = cap;
    }
    LP.nsocks++;
  }
  LP.socks[i].fd = s;
  LP.socks[i].events =
      (short)(((what & CURL_POLL_IN) ? POLLIN : 0) | ((what & CURL_POLL_OUT) ? POLLOUT : 0));
  LP.socks[i].revents = 0;
  return 0;
}

static int on_timer(CURLM *multi, long ms, void *userp) {
  (void)multi, (void)userp;
  LP.curl_at = ms < 0 ? -1 : relish_now() + (double)ms / 1000.0;
  return 0;
}

static void multi_done(void) {
  if (LP.multi) curl_multi_cleanup(LP.multi);
  LP.multi = NULL;
  free(LP.socks);
  free(LP.pfd);
  LP.socks = NULL;
  LP.pfd = NULL;
  LP.nsocks = LP.capsocks = LP.cappfd = 0;
}

/* At exit, after lua_close, whose __gc took every easy handle out. */
static void cleanup_at_exit(void) {
  static int registered;
  if (!registered) {
    registered = 1;
    atexit(multi_done);
  }
}

static CURLM *multi(void) {
  if (LP.multi) return LP.multi;
  relish_need_curl();
  LP.multi = curl_multi_init();
  if (!LP.multi) return NULL;
  curl_multi_setopt(LP.multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(LP.multi, CURLMOPT_TIMERFUNCTION, on_timer);
  cleanup_at_exit();
  return LP.multi;
}

/* Take finished transfers out of the multi handle. */
static void collect_transfers(void) {
  CURLMsg *m;
  int left;
  while ((m = curl_multi_info_read(LP.multi, &left)) != NULL) {
    if (m->msg != CURLMSG_DONE) continue;
    relish_waiter *w = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&w);
    CURLcode code = m->data.result;
    curl_multi_remove_handle(LP.multi, m->easy_handle);
    if (!w) continue;
    w->in_multi = 0;
    LP.transfers--;
    w->curl_code = (int)code;
    w->finished = 1;
    relish_waiter_wake(w);
  }
}

/* ---- waiters ---------------------------------------------------------------- */

/* Takes w's transfer out of the multi handle, if it is in it. */
static void leave_multi(relish_waiter *w) {
  if (!w->in_multi || !LP.multi) return;
  curl_multi_remove_handle(LP.multi, w->easy);
  w->in_multi = 0;
  LP.transfers--;
}

static void link_waiter(relish_waiter *w) {
  w->prev = NULL;
  w->next = LP.waiters;
  if (LP.waiters) LP.waiters->prev = w;
  LP.waiters = w;
  w->linked = 1;
}

static void unlink_waiter(relish_waiter *w) {
  if (!w->linked) return;
  if (w->prev)
    w->prev->next = w->next;
  else
    LP.waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  w->prev = w->next = NULL;
  w->linked = 0;
  if (w->orphan) {
    w->orphan = 0;
    LP.norphans--;
  }
  leave_multi(w);
}

static void init_waiter(lua_State *L, relish_waiter *w, int box_idx) {
  w->ready = w->finished = 0;
  w->outcome = RELISH_WAIT_READY;
  w->task = LP.current;
  w->orphan = 0;
  w->wake_at = 0;
  link_waiter(w);
  anchor(L, w, box_idx);
}

void relish_loop_add(lua_State *L, relish_waiter *w, int box_idx) {
  w->easy = NULL;
  w->in_multi = 0;
  init_waiter(L, w, box_idx);
}

int relish_loop_add_transfer(lua_State *L, relish_waiter *w, void *easy, int box_idx) {
  CURLM *m = multi();
  w->easy = easy;
  w->in_multi = 0;
  if (!m) return -1;
  curl_easy_setopt(easy, CURLOPT_PRIVATE, (char *)w);
  if (curl_multi_add_handle(m, easy) != CURLM_OK) return -1;
  w->in_multi = 1;
  LP.transfers++;
  init_waiter(L, w, box_idx);
  return 0;
}

void relish_loop_remove(lua_State *L, relish_waiter *w) {
  if (w->linked) {
    unlink_waiter(w);
    unanchor(L, w);
  }
}

/* Stop one waiter: it is cancelled for `why`; a source that must be driven on
 * (a process between TERM and KILL) stays linked as an orphan, owned by no
 * task, until it finishes. */
static void stop_waiter(lua_State *L, relish_waiter *w, int why) {
  if (w->finished || w->outcome != RELISH_WAIT_READY) return;
  w->outcome = why;
  leave_multi(w);
  int released = w->ops && w->ops->cancel ? w->ops->cancel(w, relish_now()) : 1;
  relish_waiter_wake(w);
  w->task = NULL;
  if (released) {
    w->finished = 1;
    relish_loop_remove(L, w);
  } else if (!w->orphan) {
    w->orphan = 1;
    LP.norphans++;
  }
}

/* After a round of C-only work: let go of finished waiters, wake owners. */
static void sweep(lua_State *L) {
  relish_waiter *w = LP.waiters;
  while (w) {
    relish_waiter *next = w->next;
    if (w->ready) relish_waiter_wake(w);
    if (w->finished) relish_loop_remove(L, w);
    w = next;
  }
}

/* ---- one round: poll everything, act on what is ready --------------------- */

static struct pollfd *pfd_room(size_t n) {
  if (n <= LP.cappfd) return LP.pfd;
  size_t cap = LP.cappfd ? LP.cappfd : 32;
  while (cap < n)
    cap *= 2;
  struct pollfd *p = realloc(LP.pfd, cap * sizeof *p);
  if (!p) return NULL;
  LP.pfd = p;
  LP.cappfd = cap;
  cleanup_at_exit();
  return p;
}

static double sooner(double a, double b) { return a < 0 || (b >= 0 && b < a) ? b : a; }

/* Polls once, at most until `limit` seconds from now (< 0: no limit of the
 * caller's), and advances every source. Returns 0, or -1 when nothing at all
 * could ever end this wait (no descriptor, no timer, no transfer). */
static int poll_once(lua_State *L, double limit) {
  double t0 = relish_now();
  size_t count = 0, need = LP.nsocks;
  for (relish_waiter *w = LP.waiters; w; w = w->next)
    need += RELISH_WAITER_MAXFD;
  struct pollfd *pfd = pfd_room(need ? need : 1);
  if (!pfd) return luaL_error(L, "event loop: not enough memory");
  size_t nsocks = LP.nsocks; /* curl may change its list while we act on this copy */
  if (nsocks) memcpy(pfd, LP.socks, nsocks * sizeof *pfd);
  count = nsocks;
  double timeout = limit;
  if (LP.curl_at >= 0) timeout = sooner(timeout, LP.curl_at > t0 ? LP.curl_at - t0 : 0);
  for (relish_waiter *w = LP.waiters; w; w = w->next) {
    w->pfd_first = (int)count;
    w->pfd_n = 0;
    w->wake_at = -1;
    if (!w->ops || !w->ops->interest) continue;
    double t = w->ops->interest(w, pfd + count, &w->pfd_n, t0);
    count += (size_t)w->pfd_n;
    if (t >= 0) {
      w->wake_at = t0 + t;
      timeout = sooner(timeout, t);
    }
  }
  if (LP.ready_head) timeout = 0;
  if (timeout < 0 && count == 0 && LP.transfers == 0) return -1;
  for (ticker *k = tickers; k; k = k->next) /* never a reason to wait by itself */
    timeout = sooner(timeout, k->at > t0 ? k->at - t0 : 0);
  double tick = relish_progress_tick(); /* a terminal's spinner while we wait */
  if (tick > 0) timeout = sooner(timeout, tick);
  if (timeout > LONGEST_POLL) timeout = LONGEST_POLL;

  /* INT and TERM are blocked except inside ppoll, so a signal can never slip
   * in between the check and the wait. */
  sigset_t block, old, during;
  sigemptyset(&block);
  sigaddset(&block, SIGINT);
  sigaddset(&block, SIGTERM);
  sigprocmask(SIG_BLOCK, &block, &old);
  during = old;
  sigdelset(&during, SIGINT);
  sigdelset(&during, SIGTERM);
  if (relish_interrupted()) timeout = 0;
  struct timespec ts, *tsp = NULL;
  if (timeout >= 0) {
    ts.tv_sec = (time_t)timeout;
    ts.tv_nsec = (long)((timeout - (double)ts.tv_sec) * 1e9);
    tsp = &ts;
  }
  int r = ppoll(pfd, (nfds_t)count, tsp, &during);
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (r < 0) {
    for (size_t i = 0; i < count; i++)
      pfd[i].revents = 0;
  }

  double t1 = relish_now();
  if (LP.multi) {
    int running;
    for (size_t i = 0; i < nsocks && r > 0; i++) {
      if (!pfd[i].revents) continue;
      int ev = ((pfd[i].revents & POLLIN) ? CURL_CSELECT_IN : 0) |
               ((pfd[i].revents & POLLOUT) ? CURL_CSELECT_OUT : 0) |
               ((pfd[i].revents & (POLLERR | POLLHUP | POLLNVAL)) ? CURL_CSELECT_ERR : 0);
      curl_multi_socket_action(LP.multi, pfd[i].fd, ev, &running);
    }
    if (LP.curl_at >= 0 && t1 >= LP.curl_at) {
      LP.curl_at = -1;
      curl_multi_socket_action(LP.multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    collect_transfers();
  }
  for (relish_waiter *w = LP.waiters; w; w = w->next) {
    if (!w->ops || !w->ops->advance || w->finished) continue;
    int any = 0;
    for (int i = 0; i < w->pfd_n; i++)
      any |= pfd[w->pfd_first + i].revents != 0;
    if (any || (w->wake_at >= 0 && t1 >= w->wake_at))
      w->ops->advance(w, pfd + w->pfd_first, w->pfd_n, t1);
  }
  sweep(L);
  return 0;
}

/* ---- tasks ------------------------------------------------------------------ */

static int is_finished(const task *t) { return t->state >= T_DONE; }

static void push_task(lua_State *L, task *t) {
  push_anchors(L);
  lua_rawgetp(L, -1, t);
  lua_remove(L, -2);
}

static void wake_joiners(task *t);
static void resume_task(lua_State *from, task *t);

/* A task ended (status from lua_resume, or -1: cancelled before it ran):
 * keep its results or its error in the handle, let go of its thread. */
static void finish_task(lua_State *from, task *t, int status, int nres) {
  lua_State *co = t->co;
  luaL_checkstack(from, nres + 8, "task results");
  push_task(from, t);
  int ud = lua_gettop(from);
  if (status == LUA_OK && !t->cancelled) {
    lua_createtable(from, nres, 1);
    lua_xmove(co, from, nres);
    for (int i = nres; i >= 1; i--)
      lua_rawseti(from, ud + 1, i);
    lua_pushinteger(from, nres);
    lua_setfield(from, ud + 1, "n");
    t->state = T_DONE;
  } else if (t->cancelled) {
    relish_push_error(from, "cancelled", "task cancelled");
    t->state = T_CANCELLED;
  } else {
    lua_xmove(co, from, 1);
    t->state = T_FAILED;
  }
  lua_setiuservalue(from, ud, 2);
  if (status != LUA_OK && status != -1) lua_resetthread(co); /* runs its __close handlers */
  t->co = NULL;
  t->waiting = NULL;
  ready_remove(t);
  if (t->prev)
    t->prev->next = t->next;
  else
    LP.tasks = t->next;
  if (t->next) t->next->prev = t->prev;
  t->prev = t->next = NULL;
  for (task *c = LP.tasks; c; c = c->next)            /* its children outlive it: cancelling */
    if (c->parent == t) c->parent = t->parent;        /* an ancestor still reaches them */
  for (relish_waiter *w = LP.waiters; w; w = w->next) /* a transfer it started and left */
    if (w->task == t) w->task = NULL;
  lua_pushnil(from);
  lua_setiuservalue(from, ud, 1); /* the thread can go */
  lua_settop(from, ud - 1);
  unanchor(from, t);
  wake_joiners(t);
}

static void resume_task(lua_State *from, task *t) {
  int nargs = 0;
  if (t->state == T_NEW) {
    nargs = t->nargs;
  } else if (t->state == T_WAITING) {
    if (!t->waiting || !t->waiting->ready) return;
  } else if (t->state != T_YIELDED) {
    return;
  }
  task *saved = LP.current;
  LP.current = t;
  t->state = T_RUNNING;
  t->waiting = NULL;
  int nres = 0;
  lua_State *outer = relish_running_task(t->co); /* a signal reaches it too */
  int st = lua_resume(t->co, from, nargs, &nres);
  relish_running_task(outer);
  LP.current = saved;
  if (st == LUA_YIELD) {
    lua_pop(t->co, nres);
    if (t->waiting) {
      t->state = T_WAITING;
      if (t->waiting->ready) ready_push(t);
    } else if (t->cancelled) {
      /* it yielded by itself after being cancelled: it is not coming back */
      finish_task(from, t, LUA_ERRRUN, 0);
    } else {
      t->state = T_YIELDED; /* a plain coroutine.yield: give way to the others */
      ready_push(t);
    }
    return;
  }
  finish_task(from, t, st, nres);
}

/* Resumes as many tasks as were ready when called (not all that become ready
 * meanwhile, so one that keeps yielding cannot starve the poll). */
static void run_ready(lua_State *from) {
  task *t;
  for (int n = LP.nready; n > 0 && (t = ready_pop()) != NULL; n--)
    resume_task(from, t);
}

static void drain(lua_State *L);

/* The first live task not yet cancelled: a child of parent, or any when
 * parent is NULL; running ones (further down the C stack) only when
 * `running` is set. */
static task *find_uncancelled(const task *parent, int running) {
  for (task *t = LP.tasks; t; t = t->next) {
    if (t->cancelled || (parent && t->parent != parent)) continue;
    if (running || t->state != T_RUNNING) return t;
  }
  return NULL;
}

static task *first_uncancelled(const task *parent) { return find_uncancelled(parent, 1); }

/* Cancels t and everything it spawned: waits stop (transfers released at
 * once, processes sent TERM), then the task runs on just long enough to
 * unwind, its waits raising "cancelled". A task running further down the C
 * stack is only marked: its own wait notices. */
static void cancel_task(lua_State *from, task *t) {
  if (is_finished(t) || t->cancelled) return;
  t->cancelled = 1;
  task *c;
  while ((c = first_uncancelled(t)) != NULL)
    cancel_task(from, c);
  relish_waiter *w = LP.waiters;
  while (w) {
    relish_waiter *next = w->next;
    if (w->task == t) stop_waiter(from, w, RELISH_WAIT_CANCELLED);
    w = next;
  }
  if (t->state == T_NEW) {
    finish_task(from, t, -1, 0);
  } else if (t->state == T_WAITING || t->state == T_YIELDED) {
    if (t->state == T_WAITING && t->waiting) t->waiting->ready = 1;
    resume_task(from, t);
    if (!is_finished(t)) finish_task(from, t, LUA_ERRRUN, 0);
  }
}

/* Interrupt or deadline: every task is cancelled, every wait stopped. */
static void stop_everything(lua_State *L, int why) {
  /* waits first, so that each says why it stopped (a join must not see its
   * task finish as cancelled and report that instead) */
  relish_waiter *w = LP.waiters;
  while (w) {
    relish_waiter *next = w->next;
    if (!w->orphan) stop_waiter(L, w, why);
    w = next;
  }
  task *t;
  while ((t = find_uncancelled(NULL, 1)) != NULL)
    cancel_task(L, t);
}

/* Drives the loop until no cancelled process is left running. */
static void drain(lua_State *L) {
  while (LP.norphans > 0) {
    if (poll_once(L, -1) < 0) break;
  }
}

/* Calls each ticker that is due, once. Each runs protected (an error is
 * reported and forgotten) and never inside another; a call may stop
 * tickers, so the list is searched again after each. */
static void run_tickers(lua_State *L) {
  if (in_tick || !tickers) return;
  in_tick = 1;
  double now = relish_now();
  for (ticker *k = tickers; k; k = k->next)
    k->due = now >= k->at;
  for (;;) {
    ticker *k = tickers;
    while (k && !k->due)
      k = k->next;
    if (!k) break;
    k->due = 0;
    int top = lua_gettop(L);
    luaL_checkstack(L, 4, "ticker");
    push_anchors(L);
    if (lua_rawgetp(L, -1, k) == LUA_TUSERDATA && lua_getiuservalue(L, -1, 1) == LUA_TFUNCTION &&
        lua_pcall(L, 0, 0, 0) != LUA_OK) {
      const char *msg = lua_tostring(L, -1);
      fprintf(stderr, "relish: background: %s\n", msg ? msg : "(error object is not a string)");
    }
    k->at = relish_now() + k->every; /* still ours: the box is on the stack */
    lua_settop(L, top);
  }
  in_tick = 0;
}

/* Runs the loop here until w is ready: the wait of code outside any task, or
 * of a task where it cannot yield. */
static void loop_block(lua_State *L, relish_waiter *w) {
  task *self = LP.current;
  while (!w->ready) {
    if (relish_interrupted()) {
      stop_everything(L, RELISH_WAIT_INTERRUPTED);
      drain(L);
      break;
    }
    double deadline = relish_deadline(), t = relish_now();
    if (deadline > 0 && t >= deadline) {
      stop_everything(L, RELISH_WAIT_TIMEOUT);
      drain(L);
      break;
    }
    if (self && self->cancelled) {
      stop_waiter(L, w, RELISH_WAIT_CANCELLED);
      break;
    }
    run_tickers(L);
    run_ready(L);
    if (w->ready) break;
    if (poll_once(L, deadline > 0 ? deadline - t : -1) < 0) {
      stop_waiter(L, w, RELISH_WAIT_DEADLOCK);
      break;
    }
  }
}

int relish_task_cancelled(lua_State *L) {
  (void)L;
  return LP.current && LP.current->cancelled;
}

int relish_loop_wait(lua_State *L, relish_waiter *w, lua_KContext ctx, lua_KFunction k) {
  task *t = LP.current;
  if (t && t->cancelled) stop_waiter(L, w, RELISH_WAIT_CANCELLED);
  if (!w->ready && t && t->co == L && lua_isyieldable(L)) {
    t->waiting = w;
    return lua_yieldk(L, 0, ctx, k);
  }
  if (!w->ready) loop_block(L, w);
  return k(L, LUA_OK, ctx);
}

int relish_loop_raise(lua_State *L, const relish_waiter *w) {
  switch (w->outcome) {
  case RELISH_WAIT_INTERRUPTED:
    return relish_raise_interrupted(L);
  case RELISH_WAIT_TIMEOUT:
    return relish_raise(L, "timeout", "timed out");
  case RELISH_WAIT_DEADLOCK:
    return relish_raise(L, "deadlock",
                        "waiting for something that can never happen "
                        "(a task waiting for itself?)");
  default:
    return relish_raise(L, "cancelled", "cancelled");
  }
}

/* ---- timers and joins: waiters of the loop's own -------------------------- */

typedef struct {
  relish_waiter w;
  double at;
} timer_box;

static double timer_interest(relish_waiter *w, struct pollfd *pfd, int *n, double t) {
  (void)pfd;
  *n = 0;
  double left = ((timer_box *)w)->at - t;
  return left < 0 ? 0 : left;
}

static void timer_advance(relish_waiter *w, const struct pollfd *pfd, int n, double t) {
  (void)pfd, (void)n;
  if (t >= ((timer_box *)w)->at) w->finished = w->ready = 1;
}

static const relish_waiter_ops timer_ops = {timer_interest, timer_advance, NULL};

static int box_gc(lua_State *L) {
  relish_loop_remove(L, lua_touserdata(L, 1));
  return 0;
}

static void set_box_mt(lua_State *L, const char *name) {
  if (luaL_newmetatable(L, name)) {
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
}

typedef struct {
  relish_waiter w;
  double at; /* < 0: no timeout */
  int n;
  task *winner;
  task *tasks[];
} join_box;

static double join_interest(relish_waiter *w, struct pollfd *pfd, int *n, double t) {
  (void)pfd;
  join_box *j = (join_box *)w;
  *n = 0;
  if (j->at < 0) return -1;
  return j->at - t < 0 ? 0 : j->at - t;
}

static void join_advance(relish_waiter *w, const struct pollfd *pfd, int n, double t) {
  (void)pfd, (void)n;
  join_box *j = (join_box *)w;
  if (j->at >= 0 && t >= j->at) w->finished = w->ready = 1;
}

static const relish_waiter_ops join_ops = {join_interest, join_advance, NULL};

static void wake_joiners(task *t) {
  for (relish_waiter *w = LP.waiters; w; w = w->next) {
    if (w->ops != &join_ops || w->finished) continue;
    join_box *j = (join_box *)w;
    for (int i = 0; i < j->n; i++) {
      if (j->tasks[i] == t) {
        j->winner = t;
        w->finished = 1;
        relish_waiter_wake(w);
        break;
      }
    }
  }
}

/* ---- the Lua side: relish._loop --------------------------------------------- */

static task *check_task(lua_State *L, int idx) { return luaL_checkudata(L, idx, TASK_MT); }

/* A number, not a string that looks like one (luaL_checknumber takes "1"). */
static double check_seconds(lua_State *L, int idx, const char *what) {
  if (lua_type(L, idx) != LUA_TNUMBER)
    luaL_error(L, "%s: seconds must be a non-negative number, got %s", what, luaL_typename(L, idx));
  double s = lua_tonumber(L, idx);
  if (!isfinite(s) || s < 0)
    luaL_error(L, "%s: seconds must be a non-negative number, got %s", what, lua_tostring(L, idx));
  return s;
}

static int sleep_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  timer_box *b = lua_touserdata(L, 2);
  relish_loop_remove(L, &b->w);
  if (b->w.outcome != RELISH_WAIT_READY) return relish_loop_raise(L, &b->w);
  return 0;
}

/* sleep(seconds) */
static int l_loop_sleep(lua_State *L) {
  double s = check_seconds(L, 1, "task.sleep");
  lua_settop(L, 1);
  timer_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  b->w.ops = &timer_ops;
  b->at = relish_now() + s;
  set_box_mt(L, TIMER_MT);
  relish_loop_add(L, &b->w, 2);
  return relish_loop_wait(L, &b->w, 0, sleep_k);
}

/* spawn(fn, ...) -> task (task.spawn: errors say so, not relish._loop's name) */
static int l_loop_spawn(lua_State *L) {
  if (lua_type(L, 1) != LUA_TFUNCTION)
    return luaL_error(L, "task.spawn: fn must be a function, got %s", luaL_typename(L, 1));
  int nargs = lua_gettop(L) - 1;
  task *t = lua_newuserdatauv(L, sizeof *t, 2);
  memset(t, 0, sizeof *t);
  luaL_setmetatable(L, TASK_MT);
  int ud = lua_gettop(L);
  lua_State *co = lua_newthread(L);
  lua_setiuservalue(L, ud, 1);
  for (int i = 1; i <= nargs + 1; i++)
    lua_pushvalue(L, i);
  lua_xmove(L, co, nargs + 1);
  t->co = co;
  t->nargs = nargs;
  t->state = T_NEW;
  t->parent = LP.current;
  t->next = LP.tasks;
  if (LP.tasks) LP.tasks->prev = t;
  LP.tasks = t;
  anchor(L, t, ud);
  ready_push(t);
  return 1;
}

/* Pushes a join of n tasks (filled in by the caller) that gives up at `at`
 * (< 0: never). */
static join_box *push_join(lua_State *L, int n, double at) {
  join_box *j = lua_newuserdatauv(L, sizeof *j + (size_t)n * sizeof(task *), 0);
  memset(j, 0, sizeof *j);
  j->w.ops = &join_ops;
  j->n = n;
  j->at = at;
  set_box_mt(L, JOIN_MT);
  return j;
}

static int join_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  join_box *j = lua_touserdata(L, 3);
  relish_loop_remove(L, &j->w);
  if (j->w.outcome != RELISH_WAIT_READY) return relish_loop_raise(L, &j->w);
  if (!j->winner) return 0; /* timed out */
  for (int i = 0; i < j->n; i++) {
    if (j->tasks[i] == j->winner) {
      lua_rawgeti(L, 1, i + 1);
      lua_pushinteger(L, i + 1);
      return 2;
    }
  }
  return 0;
}

/* wait_any({task, ...} [, seconds]) -> the first finished task and its index,
 * or nothing when the seconds passed first */
static int l_loop_wait_any(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  double limit = lua_isnoneornil(L, 2) ? -1 : check_seconds(L, 2, "wait");
  lua_settop(L, 2);
  int n = (int)luaL_len(L, 1);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    task *t = luaL_testudata(L, -1, TASK_MT);
    if (!t) return luaL_error(L, "wait: item %d is not a task", i);
    lua_pop(L, 1);
    if (is_finished(t)) {
      lua_rawgeti(L, 1, i);
      lua_pushinteger(L, i);
      return 2;
    }
    if (t == LP.current) return luaL_error(L, "a task cannot wait for itself");
  }
  join_box *j = push_join(L, n, limit < 0 ? -1 : relish_now() + limit);
  for (int i = 1; i <= n; i++) {
    lua_rawgeti(L, 1, i);
    j->tasks[i - 1] = lua_touserdata(L, -1);
    lua_pop(L, 1);
  }
  relish_loop_add(L, &j->w, 3);
  if (n == 0 && limit < 0) {
    j->w.finished = 1;
    relish_waiter_wake(&j->w);
  }
  return relish_loop_wait(L, &j->w, 0, join_k);
}

/* t:status() -> "pending" | "running" | "waiting" | "done" | "failed" | "cancelled" */
static int l_task_status(lua_State *L) {
  task *t = check_task(L, 1);
  lua_pushstring(L, task_status[t->state]);
  return 1;
}

/* t:result() -> true, values... | false, err (a finished task only) */
static int l_task_result(lua_State *L) {
  task *t = check_task(L, 1);
  if (!is_finished(t)) return luaL_error(L, "task:result(): the task has not finished");
  lua_settop(L, 1);
  lua_getiuservalue(L, 1, 2);
  if (t->state != T_DONE) {
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
  }
  lua_getfield(L, 2, "n");
  int n = (int)lua_tointeger(L, -1);
  lua_pop(L, 1);
  luaL_checkstack(L, n + 1, "task results");
  lua_pushboolean(L, 1);
  for (int i = 1; i <= n; i++)
    lua_rawgeti(L, 2, i);
  return n + 1;
}

static int task_wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  join_box *j = lua_touserdata(L, 2);
  if (j) {
    relish_loop_remove(L, &j->w);
    if (j->w.outcome != RELISH_WAIT_READY) return relish_loop_raise(L, &j->w);
  }
  lua_settop(L, 1);
  int n = l_task_result(L);
  if (!lua_toboolean(L, -n)) return lua_error(L); /* the task's own error value */
  return n - 1;
}

/* t:wait() -> the task's results; raises its error (kind "cancelled" for a
 * cancelled task) */
static int l_task_wait(lua_State *L) {
  task *t = check_task(L, 1);
  lua_settop(L, 1);
  if (is_finished(t)) {
    lua_pushnil(L);
    return task_wait_k(L, LUA_OK, 0);
  }
  if (t == LP.current) return luaL_error(L, "a task cannot wait for itself");
  join_box *j = push_join(L, 1, -1);
  j->tasks[0] = t;
  relish_loop_add(L, &j->w, 2);
  return relish_loop_wait(L, &j->w, 0, task_wait_k);
}

/* t:cancel() -> true when it was still running; the task's processes are
 * gone when it returns */
static int l_task_cancel(lua_State *L) {
  task *t = check_task(L, 1);
  int alive = !is_finished(t) && !t->cancelled;
  if (t == LP.current) return luaL_error(L, "a task cannot cancel itself; raise an error instead");
  cancel_task(L, t);
  drain(L);
  lua_pushboolean(L, alive);
  return 1;
}

static int l_task_tostring(lua_State *L) {
  task *t = check_task(L, 1);
  lua_pushfstring(L, "task (%s): %p", task_status[t->state], (void *)t);
  return 1;
}

/* current() -> the running task, or nil outside any */
static int l_loop_current(lua_State *L) {
  if (!LP.current) return 0;
  push_task(L, LP.current);
  return 1;
}

/* reset(): cancels every task and waits for their processes to be gone;
 * the engine calls it when a step ends, so nothing outlives its step. */
static int l_loop_reset(lua_State *L) {
  task *t;
  while ((t = find_uncancelled(NULL, 0)) != NULL)
    cancel_task(L, t);
  drain(L);
  return 0;
}

static void ticker_off(lua_State *L, ticker *k) {
  if (!k->on) return;
  k->on = 0;
  for (ticker **p = &tickers; *p; p = &(*p)->next) {
    if (*p == k) {
      *p = k->next;
      break;
    }
  }
  k->next = NULL;
  unanchor(L, k);
}

/* every(seconds, fn) -> ticker: fn() is called about every `seconds` while
 * the loop runs (some code waits), until ticker:stop(). A step that waits
 * for minutes still gets its calls; code that never waits gets none. */
static int l_loop_every(lua_State *L) {
  double s = check_seconds(L, 1, "loop.every");
  if (s <= 0) return luaL_error(L, "loop.every: seconds must be positive");
  luaL_checktype(L, 2, LUA_TFUNCTION);
  ticker *k = lua_newuserdatauv(L, sizeof *k, 1);
  memset(k, 0, sizeof *k);
  luaL_setmetatable(L, TICKER_MT);
  lua_pushvalue(L, 2);
  lua_setiuservalue(L, -2, 1);
  k->every = s;
  k->at = relish_now() + s;
  k->on = 1;
  k->next = tickers;
  tickers = k;
  anchor(L, k, -1);
  return 1;
}

/* ticker:stop() */
static int l_ticker_stop(lua_State *L) {
  ticker_off(L, luaL_checkudata(L, 1, TICKER_MT));
  return 0;
}

/* stats() -> {tasks=, waiters=, transfers=, orphans=, sockets=, ready=}: what
 * the loop holds right now, so tests can see that nothing leaked. */
static int l_loop_stats(lua_State *L) {
  int ntasks = 0, nwaiters = 0;
  for (task *t = LP.tasks; t; t = t->next)
    ntasks++;
  for (relish_waiter *w = LP.waiters; w; w = w->next)
    nwaiters++;
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, ntasks);
  lua_setfield(L, -2, "tasks");
  lua_pushinteger(L, nwaiters);
  lua_setfield(L, -2, "waiters");
  lua_pushinteger(L, LP.transfers);
  lua_setfield(L, -2, "transfers");
  lua_pushinteger(L, LP.norphans);
  lua_setfield(L, -2, "orphans");
  lua_pushinteger(L, (lua_Integer)LP.nsocks);
  lua_setfield(L, -2, "sockets");
  lua_pushinteger(L, LP.nready);
  lua_setfield(L, -2, "ready");
  return 1;
}

/* When the state closes, its tasks go with it. */
static int anchors_gc(lua_State *L) {
  (void)L;
  LP.tasks = NULL;
  LP.ready_head = LP.ready_tail = NULL;
  LP.nready = 0;
  LP.current = NULL;
  tickers = NULL;
  return 0;
}

int luaopen_relish__loop(lua_State *L) {
  static const luaL_Reg methods[] = {{"wait", l_task_wait},
                                     {"status", l_task_status},
                                     {"result", l_task_result},
                                     {"cancel", l_task_cancel},
                                     {NULL, NULL}};
  static const luaL_Reg fns[] = {{"spawn", l_loop_spawn},       {"sleep", l_loop_sleep},
                                 {"wait_any", l_loop_wait_any}, {"current", l_loop_current},
                                 {"reset", l_loop_reset},       {"stats", l_loop_stats},
                                 {"every", l_loop_every},       {NULL, NULL}};
  if (luaL_newmetatable(L, TICKER_MT)) {
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, l_ticker_stop);
    lua_setfield(L, -2, "stop");
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  if (luaL_newmetatable(L, TASK_MT)) {
    luaL_newlib(L, methods);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, l_task_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushliteral(L, "task");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  push_anchors(L);
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  return 1;
}
