/* sh.c: relish.sh, running processes from an argv (never a shell unless asked)
 * in their own process group, with bounded output, input, timeout and cleanup.
 * The wait is a waiter of the host's event loop: a task yields while its
 * command runs, and many commands (and transfers) run at once. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "relish.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define SH_PROCESS_MT "relish.sh.Process"
#define SH_DEFAULT_MAX_OUTPUT ((size_t)16 << 20)
#define SH_DEFAULT_GRACE 2.0
/* What execvp uses when PATH is unset. */
#define SH_DEFAULT_PATH "/bin:/usr/bin"
#define SH_CHUNK 65536
/* Poll period when the kernel offers no pidfd. */
#define SH_TICK 0.02
/* An undo command's time limit when the step gives none. */
#define SH_UNDO_TIMEOUT 600.0

enum { SH_IN, SH_OUT, SH_ERR, SH_NFD };

/* Why a child could not start, sent over the CLOEXEC report pipe. */
enum { SH_STAGE_NONE, SH_STAGE_PIPE, SH_STAGE_FORK, SH_STAGE_SETUP, SH_STAGE_CWD, SH_STAGE_EXEC };

struct sh_report {
  int stage;
  int err;
};

/* Captured output: everything up to max is kept, the rest counted as lost. */
struct sh_buf {
  char *data;
  size_t len, cap, max;
  int truncated;
};

/* One process from spawn to reap. Everything C-allocated hangs here, and the
 * struct lives in a userdata, so a Lua error at any point frees it in __gc. */
struct sh_proc {
  relish_waiter w; /* first: the loop's view of this process */
  /* what to run, built before fork */
  char **argv;
  char **envp;  /* NULL: inherit environ */
  char **paths; /* execve candidates, in execvp order */
  char *cwd;
  const char *input; /* anchored as the userdata's user value */
  size_t input_len, input_off;
  int has_input;
  double timeout; /* <= 0: none */
  double grace;

  /* running state */
  pid_t pid;
  int pidfd;
  int fd[SH_NFD];
  struct sh_buf out, err;
  int reaped, status, status_known;
  int timed_out, sent_kill;
  double start, end, kill_at, linger_until;
  struct sh_report spawn;

  /* what counts as success */
  int check;                  /* 0: return the result whatever happened */
  unsigned char ok_codes[32]; /* bitmap of the accepted exit codes */
};

/* ---- small helpers ---- */

static void sh_close(int *fd) {
  if (*fd >= 0) {
    close(*fd);
    *fd = -1;
  }
}

static void sh_strvec_free(char ***v) {
  if (*v == NULL) return;
  for (char **s = *v; *s != NULL; s++)
    free(*s);
  free(*v);
  *v = NULL;
}

static void *sh_alloc(lua_State *L, size_t n) {
  void *p = calloc(1, n ? n : 1);
  if (p == NULL) luaL_error(L, "not enough memory");
  return p;
}

static char *sh_strndup(lua_State *L, const char *s, size_t n) {
  char *d = sh_alloc(L, n + 1);
  memcpy(d, s, n);
  return d;
}

/* Keep the stdio slots free: the child dup2s pipe ends onto 0, 1 and 2, which
 * only works (and only clears CLOEXEC) when each end is a different, higher fd. */
static int sh_fd_high(int *fd) {
  if (*fd >= 3) return 0;
  int moved = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
  if (moved < 0) return -1;
  close(*fd);
  *fd = moved;
  return 0;
}

static int sh_pipe(int fds[2]) {
  if (pipe2(fds, O_CLOEXEC) < 0) return -1;
  if (sh_fd_high(&fds[0]) < 0 || sh_fd_high(&fds[1]) < 0) {
    int e = errno;
    sh_close(&fds[0]);
    sh_close(&fds[1]);
    errno = e;
    return -1;
  }
  return 0;
}

static void sh_buf_add(struct sh_buf *b, const char *src, size_t n) {
  size_t room = b->max - b->len;
  if (n > room) {
    b->truncated = 1;
    n = room;
  }
  if (n == 0) return;
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + n)
      cap = cap > b->max / 2 ? b->max : cap * 2;
    char *d = realloc(b->data, cap);
    if (d == NULL) {
      /* Out of memory: keep what we have and drain the rest, flagged, rather
       * than leave the child blocked on a full pipe. */
      b->truncated = 1;
      b->max = b->len;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, src, n);
  b->len += n;
}

static const char *sh_errno_kind(int e) {
  if (e == ENOENT || e == ENOTDIR) return "not_found";
  if (e == EACCES || e == EPERM) return "permission";
  return "spawn";
}

static const char *sh_signame(int sig, char *buf, size_t n) {
  const char *name = sigabbrev_np(sig);
  if (name != NULL) return name;
  snprintf(buf, n, "%d", sig);
  return buf;
}

/* ---- the process box ---- */

static void sh_proc_free(lua_State *L, struct sh_proc *p) {
  relish_loop_remove(L, &p->w);
  if (p->pid > 0 && !p->reaped) {
    /* Only reached when a Lua error unwound past a live child. */
    killpg(p->pid, SIGKILL);
    while (waitpid(p->pid, &p->status, 0) < 0 && errno == EINTR)
      ;
    p->reaped = 1;
  }
  for (int i = 0; i < SH_NFD; i++)
    sh_close(&p->fd[i]);
  sh_close(&p->pidfd);
  sh_strvec_free(&p->argv);
  sh_strvec_free(&p->envp);
  sh_strvec_free(&p->paths);
  free(p->cwd);
  p->cwd = NULL;
  free(p->out.data);
  free(p->err.data);
  p->out.data = p->err.data = NULL;
}

static int sh_proc_gc(lua_State *L) {
  sh_proc_free(L, luaL_checkudata(L, 1, SH_PROCESS_MT));
  return 0;
}

static struct sh_proc *sh_proc_new(lua_State *L) {
  struct sh_proc *p = lua_newuserdatauv(L, sizeof *p, 1);
  memset(p, 0, sizeof *p);
  p->pid = -1;
  p->pidfd = -1;
  for (int i = 0; i < SH_NFD; i++)
    p->fd[i] = -1;
  p->grace = SH_DEFAULT_GRACE;
  p->out.max = p->err.max = SH_DEFAULT_MAX_OUTPUT;
  p->check = 1;
  p->ok_codes[0] = 1; /* exit code 0 */
  relish_resource_metatable(L, SH_PROCESS_MT, sh_proc_gc, NULL);
  lua_setmetatable(L, -2);
  return p;
}

/* ---- options ---- */

static const char *const sh_run_options[] = {"argv",    "env",      "cwd",        "input",
                                             "timeout", "grace",    "max_output", "readonly",
                                             "undo",    "ok_codes", "check",      NULL};

static void sh_check_keys(lua_State *L, int opts) {
  lua_pushnil(L);
  while (lua_next(L, opts) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING) {
      luaL_error(L, "sh.run: unexpected %s key in options; pass the command as argv = {...}",
                 luaL_typename(L, -1));
    }
    const char *key = lua_tostring(L, -1);
    int known = 0;
    for (int i = 0; sh_run_options[i] != NULL; i++)
      known |= strcmp(key, sh_run_options[i]) == 0;
    if (!known) luaL_error(L, "sh.run: unknown option '%s'", key);
  }
}

static void sh_opt_argv(lua_State *L, int opts, struct sh_proc *p) {
  if (lua_getfield(L, opts, "argv") != LUA_TTABLE)
    luaL_error(L, "sh.run: argv must be a table of strings, got %s", luaL_typename(L, -1));
  int t = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, t);
  if (n == 0) luaL_error(L, "sh.run: argv must not be empty");
  for (lua_Integer i = 1; i <= n; i++) {
    int type = lua_rawgeti(L, t, i);
    if (type == LUA_TNIL)
      luaL_error(L, "sh.run: argv must be a list of strings without holes, argv[%d] is nil",
                 (int)i);
    if (type != LUA_TSTRING)
      luaL_error(L, "sh.run: argv[%d] must be a string, got %s", (int)i, luaL_typename(L, -1));
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len) luaL_error(L, "sh.run: argv[%d] contains a NUL byte", (int)i);
    if (i == 1 && len == 0) luaL_error(L, "sh.run: argv[1] must not be empty");
    lua_pop(L, 1);
  }
  /* The length of a table with holes is any of its borders: 1..n are strings,
   * so any other key means a hole or a stray field. */
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n) {
      const char *key = luaL_tolstring(L, -1, NULL);
      luaL_error(L, "sh.run: argv must be a list of strings without holes, found argv[%s]", key);
    }
  }
  p->argv = sh_alloc(L, ((size_t)n + 1) * sizeof *p->argv);
  for (lua_Integer i = 1; i <= n; i++) {
    size_t len;
    lua_rawgeti(L, t, i);
    const char *s = lua_tolstring(L, -1, &len);
    p->argv[i - 1] = sh_strndup(L, s, len);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

/* The one place an env value becomes a C string, so other value types (such
 * as secrets) can be accepted later. Returns 1 and sets *out to set the
 * variable, 0 to remove it; raises on values that cannot go in an environment. */
static int sh_env_value(lua_State *L, int idx, const char *name, const char **out, size_t *len) {
  switch (lua_type(L, idx)) {
  case LUA_TBOOLEAN:
    if (!lua_toboolean(L, idx)) return 0;
    break;
  case LUA_TSTRING:
  case LUA_TNUMBER:
    *out = lua_tolstring(L, idx, len); /* idx is a copy: converting it is harmless */
    if (strlen(*out) != *len) luaL_error(L, "sh.run: env.%s contains a NUL byte", name);
    return 1;
  case LUA_TUSERDATA:
    if ((*out = relish_tosecret(L, idx, len)) != NULL) {
      if (strlen(*out) != *len) luaL_error(L, "sh.run: env.%s contains a NUL byte", name);
      return 1;
    }
    break;
  default:
    break;
  }
  return luaL_error(L, "sh.run: env.%s must be a string, a number or false, got %s", name,
                    lua_type(L, idx) == LUA_TBOOLEAN ? "true" : luaL_typename(L, idx));
}

static void sh_check_env_name(lua_State *L, int key) {
  if (lua_type(L, key) != LUA_TSTRING)
    luaL_error(L, "sh.run: env keys must be variable names, got %s", luaL_typename(L, key));
  size_t len;
  const char *name = lua_tolstring(L, key, &len);
  if (len == 0 || strchr(name, '=') != NULL || strlen(name) != len)
    luaL_error(L, "sh.run: env has an invalid variable name '%s'", name);
}

static void sh_opt_env(lua_State *L, int opts, struct sh_proc *p) {
  int type = lua_getfield(L, opts, "env");
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (type != LUA_TTABLE)
    luaL_error(L, "sh.run: env must be a table, got %s", luaL_typename(L, -1));
  int t = lua_gettop(L);
  const char *value;
  size_t vlen, n = 0, m = 0;

  /* Validate everything before allocating. */
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    sh_check_env_name(L, -2);
    m += (size_t)sh_env_value(L, -1, lua_tostring(L, -2), &value, &vlen);
    lua_pop(L, 1);
  }
  while (environ != NULL && environ[n] != NULL)
    n++;
  p->envp = sh_alloc(L, (n + m + 1) * sizeof *p->envp);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const char *eq = strchr(environ[i], '=');
    size_t nlen = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
    lua_pushlstring(L, environ[i], nlen);
    int overridden = lua_rawget(L, t) != LUA_TNIL;
    lua_pop(L, 1);
    if (!overridden) p->envp[k++] = sh_strndup(L, environ[i], strlen(environ[i]));
  }
  lua_pushnil(L);
  while (lua_next(L, t) != 0) {
    size_t nlen;
    const char *name = lua_tolstring(L, -2, &nlen);
    if (sh_env_value(L, -1, name, &value, &vlen)) {
      char *s = sh_alloc(L, nlen + vlen + 2);
      memcpy(s, name, nlen);
      s[nlen] = '=';
      memcpy(s + nlen + 1, value, vlen);
      p->envp[k++] = s;
    }
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
}

static double sh_opt_seconds(lua_State *L, int opts, const char *name, double dflt, int zero_ok) {
  int type = lua_getfield(L, opts, name);
  double v = dflt;
  if (type != LUA_TNIL) {
    if (type != LUA_TNUMBER)
      luaL_error(L, "sh.run: %s must be a number of seconds, got %s", name, luaL_typename(L, -1));
    v = lua_tonumber(L, -1);
    if (!isfinite(v) || v < 0 || (v == 0 && !zero_ok))
      luaL_error(L, "sh.run: %s must be a %s number of seconds", name,
                 zero_ok ? "non-negative" : "positive");
  }
  lua_pop(L, 1);
  return v;
}

static void sh_opt_rest(lua_State *L, int opts, int box, struct sh_proc *p) {
  int type = lua_getfield(L, opts, "cwd");
  if (type != LUA_TNIL) {
    if (type != LUA_TSTRING)
      luaL_error(L, "sh.run: cwd must be a string, got %s", luaL_typename(L, -1));
    size_t len;
    const char *s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len) luaL_error(L, "sh.run: cwd contains a NUL byte");
    p->cwd = sh_strndup(L, s, len);
  }
  lua_pop(L, 1);

  type = lua_getfield(L, opts, "input");
  if (type != LUA_TNIL) {
    if (type != LUA_TSTRING)
      luaL_error(L, "sh.run: input must be a string, got %s", luaL_typename(L, -1));
    p->input = lua_tolstring(L, -1, &p->input_len);
    p->has_input = 1;
    lua_setiuservalue(L, box, 1); /* the box keeps the string alive */
  } else {
    lua_pop(L, 1);
  }

  p->timeout = sh_opt_seconds(L, opts, "timeout", 0, 0);
  double deadline = relish_deadline(); /* a step's timeout bounds its commands */
  if (deadline > 0) {
    double left = deadline - relish_now();
    if (left < 0.001) left = 0.001;
    if (p->timeout <= 0 || left < p->timeout) p->timeout = left;
  }
  p->grace = sh_opt_seconds(L, opts, "grace", SH_DEFAULT_GRACE, 1);

  type = lua_getfield(L, opts, "max_output");
  if (type != LUA_TNIL) {
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (type != LUA_TNUMBER || !isint || v < 0)
      luaL_error(L, "sh.run: max_output must be a non-negative integer (bytes)");
    p->out.max = p->err.max = (uint64_t)v > SIZE_MAX ? SIZE_MAX : (size_t)v;
  }
  lua_pop(L, 1);
}

/* execvp's search order, computed before fork so the child only calls execve.
 * PATH comes from the child's environment, so env = {PATH = ...} is honoured. */
static void sh_build_paths(lua_State *L, struct sh_proc *p) {
  const char *file = p->argv[0];
  if (strchr(file, '/') != NULL) {
    p->paths = sh_alloc(L, 2 * sizeof *p->paths);
    p->paths[0] = sh_strndup(L, file, strlen(file));
    return;
  }
  const char *path = NULL;
  char **env = p->envp ? p->envp : environ;
  for (size_t i = 0; env != NULL && env[i] != NULL; i++) {
    if (strncmp(env[i], "PATH=", 5) == 0) path = env[i] + 5;
  }
  if (path == NULL) path = SH_DEFAULT_PATH;
  size_t n = 1;
  for (const char *c = path; *c; c++)
    n += *c == ':';
  p->paths = sh_alloc(L, (n + 1) * sizeof *p->paths);
  size_t flen = strlen(file), k = 0;
  for (const char *dir = path;; dir++) {
    const char *end = strchrnul(dir, ':');
    size_t dlen = (size_t)(end - dir);
    if (dlen == 0) {
      p->paths[k++] = sh_strndup(L, file, flen); /* empty entry: current directory */
    } else {
      char *s = sh_alloc(L, dlen + flen + 2);
      memcpy(s, dir, dlen);
      s[dlen] = '/';
      memcpy(s + dlen + 1, file, flen);
      p->paths[k++] = s;
    }
    if (*end == '\0') break;
    dir = end;
  }
}

/* ---- spawn ---- */

static void sh_child_fail(int rep, int stage, int err) {
  struct sh_report r = {stage, err};
  ssize_t n;
  do
    n = write(rep, &r, sizeof r);
  while (n < 0 && errno == EINTR);
  _exit(127);
}

/* Runs in the forked child: async-signal-safe calls only. */
static void sh_child(struct sh_proc *p, const int stdio[3], int rep) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  for (int sig = 1; sig < NSIG; sig++)
    sigaction(sig, &sa, NULL); /* fails harmlessly for KILL, STOP and glibc's own */
  setpgid(0, 0);
  for (int i = 0; i < 3; i++) {
    if (dup2(stdio[i], i) < 0) sh_child_fail(rep, SH_STAGE_SETUP, errno);
  }
  /* relish may have inherited descriptors without CLOEXEC; the command gets
   * only stdio. Marking rather than closing keeps the report pipe until exec. */
  if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0) {
    struct rlimit rl;
    int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int)rl.rlim_cur : 65536;
    for (int fd = 3; fd < max; fd++)
      fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  if (p->cwd != NULL && chdir(p->cwd) < 0) sh_child_fail(rep, SH_STAGE_CWD, errno);
  char **env = p->envp ? p->envp : environ;
  int err = ENOENT;
  for (char **path = p->paths; *path != NULL; path++) {
    execve(*path, p->argv, env);
    if (errno == EACCES) {
      err = EACCES; /* remembered, but keep looking like execvp */
    } else if (errno != ENOENT && errno != ENOTDIR && errno != ESTALE && errno != ENODEV &&
               errno != ETIMEDOUT) {
      err = errno;
      break;
    }
  }
  sh_child_fail(rep, SH_STAGE_EXEC, err);
}

/* Start the child. On failure returns -1 with p->spawn set, nothing left open. */
static int sh_spawn(struct sh_proc *p) {
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1}, rep[2] = {-1, -1};
  int devnull = -1;
  p->spawn.stage = SH_STAGE_PIPE;
  if (sh_pipe(out) < 0 || sh_pipe(err) < 0 || sh_pipe(rep) < 0) goto fail;
  if (p->has_input) {
    if (sh_pipe(in) < 0) goto fail;
  } else {
    devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (devnull < 0 || sh_fd_high(&devnull) < 0) goto fail;
  }
  int stdio[3] = {p->has_input ? in[0] : devnull, out[1], err[1]};

  /* Block every signal across fork so the child cannot run a parent handler
   * before it has reset the dispositions. */
  sigset_t all, old;
  sigfillset(&all);
  sigprocmask(SIG_BLOCK, &all, &old);
  p->start = relish_now();
  pid_t pid = fork();
  if (pid == 0) sh_child(p, stdio, rep[1]);
  int fork_errno = errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  sh_close(&in[0]);
  sh_close(&out[1]);
  sh_close(&err[1]);
  sh_close(&rep[1]);
  sh_close(&devnull);
  if (pid < 0) {
    p->spawn.stage = SH_STAGE_FORK;
    errno = fork_errno;
    goto fail;
  }
  p->pid = pid;
  setpgid(pid, pid); /* also from here, so killpg works whoever runs first */

  struct sh_report r;
  size_t got = 0;
  while (got < sizeof r) {
    ssize_t n = read(rep[0], (char *)&r + got, sizeof r - got);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    got += (size_t)n;
  }
  sh_close(&rep[0]);
  if (got == sizeof r) {
    while (waitpid(pid, &p->status, 0) < 0 && errno == EINTR)
      ;
    p->reaped = 1;
    p->spawn = r;
    sh_close(&in[1]);
    sh_close(&out[0]);
    sh_close(&err[0]);
    return -1;
  }

  p->fd[SH_IN] = in[1];
  p->fd[SH_OUT] = out[0];
  p->fd[SH_ERR] = err[0];
  for (int i = 0; i < SH_NFD; i++) {
    if (p->fd[i] >= 0) fcntl(p->fd[i], F_SETFL, fcntl(p->fd[i], F_GETFL) | O_NONBLOCK);
  }
  if (p->has_input && p->input_len == 0) sh_close(&p->fd[SH_IN]);
  p->pidfd = pidfd_open(pid, 0); /* may fail on old kernels: then we tick */
  p->spawn.stage = SH_STAGE_NONE;
  return 0;

fail:
  p->spawn.err = errno;
  sh_close(&in[0]);
  sh_close(&in[1]);
  sh_close(&out[0]);
  sh_close(&out[1]);
  sh_close(&err[0]);
  sh_close(&err[1]);
  sh_close(&rep[0]);
  sh_close(&rep[1]);
  sh_close(&devnull);
  return -1;
}

/* ---- the wait state machine: interest → poll → advance, until done ----
 * Kept apart from any blocking so an event loop can drive it later. */

static void sh_expire(struct sh_proc *p, double now) {
  if (p->timed_out) return;
  p->timed_out = 1;
  sh_close(&p->fd[SH_IN]);
  killpg(p->pid, SIGTERM);
  p->kill_at = now + p->grace;
}

/* Fill pfd with what the process waits on; return the seconds until the next
 * deadline, or -1 for none. */
static double sh_interest(const struct sh_proc *p, struct pollfd *pfd, nfds_t *n, double now) {
  *n = 0;
  for (int i = 0; i < SH_NFD; i++) {
    if (p->fd[i] >= 0)
      pfd[(*n)++] = (struct pollfd){.fd = p->fd[i], .events = i == SH_IN ? POLLOUT : POLLIN};
  }
  if (!p->reaped && p->pidfd >= 0) pfd[(*n)++] = (struct pollfd){.fd = p->pidfd, .events = POLLIN};

  double t = -1;
#define SH_SOONER(x)                                                                               \
  do {                                                                                             \
    double x_ = (x);                                                                               \
    if (t < 0 || x_ < t) t = x_ < 0 ? 0 : x_;                                                      \
  } while (0)
  if (!p->reaped && !p->timed_out && p->timeout > 0) SH_SOONER(p->start + p->timeout - now);
  if (p->timed_out && !p->sent_kill) SH_SOONER(p->kill_at - now);
  if (p->reaped && (p->fd[SH_OUT] >= 0 || p->fd[SH_ERR] >= 0)) SH_SOONER(p->linger_until - now);
  if (!p->reaped && p->pidfd < 0) SH_SOONER(SH_TICK);
#undef SH_SOONER
  return t;
}

static void sh_write_input(struct sh_proc *p) {
  size_t left = p->input_len - p->input_off;
  ssize_t n = write(p->fd[SH_IN], p->input + p->input_off, left < SH_CHUNK ? left : SH_CHUNK);
  if (n > 0)
    p->input_off += (size_t)n;
  else if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return;
  /* Done, or EPIPE: the child closed its stdin, the rest is not wanted. */
  if (n < 0 || p->input_off == p->input_len) sh_close(&p->fd[SH_IN]);
}

static void sh_read_output(struct sh_proc *p, int which) {
  char chunk[SH_CHUNK];
  ssize_t n = read(p->fd[which], chunk, sizeof chunk);
  if (n > 0)
    sh_buf_add(which == SH_OUT ? &p->out : &p->err, chunk, (size_t)n);
  else if (n == 0 || (errno != EAGAIN && errno != EINTR))
    sh_close(&p->fd[which]);
}

static void sh_try_reap(struct sh_proc *p, double now) {
  if (p->reaped) return;
  pid_t r = waitpid(p->pid, &p->status, WNOHANG);
  if (r == 0 || (r < 0 && errno == EINTR)) return;
  /* ECHILD: someone else reaped it (SIGCHLD ignored); the status is lost. */
  p->status_known = r == p->pid;
  p->reaped = 1;
  p->end = now;
  p->linger_until = now + p->grace;
  sh_close(&p->fd[SH_IN]);
  sh_close(&p->pidfd);
}

static void sh_advance(struct sh_proc *p, const struct pollfd *pfd, nfds_t n, double now) {
  /* Output first, so what arrived just before a deadline is kept. */
  for (nfds_t i = 0; i < n; i++) {
    if (pfd[i].revents == 0) continue;
    if (pfd[i].fd == p->fd[SH_IN]) {
      if (pfd[i].revents & (POLLERR | POLLHUP))
        sh_close(&p->fd[SH_IN]);
      else
        sh_write_input(p);
    } else if (pfd[i].fd == p->fd[SH_OUT]) {
      sh_read_output(p, SH_OUT);
    } else if (pfd[i].fd == p->fd[SH_ERR]) {
      sh_read_output(p, SH_ERR);
    }
  }
  sh_try_reap(p, now);
  if (!p->reaped && p->timeout > 0 && now >= p->start + p->timeout) sh_expire(p, now);
  /* KILL at the end of the grace period, or as soon as the command is gone
   * and its pipes are closed: whatever is left of the group then ignored TERM
   * or is a zombie nobody reaps, and waiting for it to vanish could be long. */
  int closed = p->fd[SH_OUT] < 0 && p->fd[SH_ERR] < 0;
  if (p->timed_out && !p->sent_kill && (now >= p->kill_at || (p->reaped && closed))) {
    killpg(p->pid, SIGKILL);
    p->sent_kill = 1;
  }
  /* A background process still holding the pipes after the command exited
   * gets grace seconds to let go; then we stop listening. */
  if (p->reaped && now >= p->linger_until) {
    sh_close(&p->fd[SH_OUT]);
    sh_close(&p->fd[SH_ERR]);
  }
}

static int sh_done(const struct sh_proc *p) {
  return p->reaped && p->fd[SH_OUT] < 0 && p->fd[SH_ERR] < 0 && (!p->timed_out || p->sent_kill);
}

/* ---- the loop's view: interest, advance and cancel on the waiter ---- */

static double sh_w_interest(relish_waiter *w, struct pollfd *pfd, int *n, double now) {
  nfds_t k;
  double t = sh_interest((struct sh_proc *)w, pfd, &k, now);
  *n = (int)k;
  return t;
}

static void sh_w_advance(relish_waiter *w, const struct pollfd *pfd, int n, double now) {
  struct sh_proc *p = (struct sh_proc *)w;
  sh_advance(p, pfd, (nfds_t)n, now);
  if (sh_done(p)) w->finished = w->ready = 1;
}

/* Cancelled (its task, an interrupt, the step's deadline): stopped the way
 * a timeout stops it, TERM then KILL after the grace period; the loop drives
 * it on until it is reaped. */
static int sh_w_cancel(relish_waiter *w, double now) {
  struct sh_proc *p = (struct sh_proc *)w;
  sh_expire(p, now);
  return sh_done(p);
}

static const relish_waiter_ops sh_waiter_ops = {sh_w_interest, sh_w_advance, sh_w_cancel};

/* ---- results and errors ---- */

/* An error value of sh: kind only (an exit code goes in `code`). */
static void sh_error_fields(lua_State *L) {
  lua_pushnil(L);
  lua_setfield(L, -2, "code");
}

/* Raises the structured error of a command that could not start. */
static int sh_raise_spawn(lua_State *L, struct sh_proc *p) {
  int e = p->spawn.err;
  const char *kind = sh_errno_kind(e);
  const char *argv0 = p->argv[0];
  switch (p->spawn.stage) {
  case SH_STAGE_CWD:
    relish_push_error(L, kind, "sh.run: cannot change directory to '%s': %s", p->cwd, strerror(e));
    break;
  case SH_STAGE_EXEC:
    if (e == ENOENT && strchr(argv0, '/') == NULL)
      relish_push_error(L, kind, "sh.run: command '%s' not found in PATH", argv0);
    else
      relish_push_error(L, kind, "sh.run: cannot run '%s': %s", argv0, strerror(e));
    break;
  default:
    relish_push_error(L, "spawn", "sh.run: cannot start '%s': %s", argv0, strerror(e));
    break;
  }
  sh_error_fields(L);
  sh_proc_free(L, p);
  return lua_error(L);
}

static void sh_set_bool(lua_State *L, const char *k, int v) {
  lua_pushboolean(L, v);
  lua_setfield(L, -2, k);
}

/* Sets the fields of a finished command on the table on top: code or
 * signal, stdout, stderr, duration and the flags. */
static void sh_set_result(lua_State *L, const struct sh_proc *p) {
  if (p->status_known && WIFEXITED(p->status)) {
    lua_pushinteger(L, WEXITSTATUS(p->status));
    lua_setfield(L, -2, "code");
  } else if (p->status_known && WIFSIGNALED(p->status)) {
    char buf[16];
    lua_pushstring(L, sh_signame(WTERMSIG(p->status), buf, sizeof buf));
    lua_setfield(L, -2, "signal");
  }
  lua_pushlstring(L, p->out.data ? p->out.data : "", p->out.len);
  lua_setfield(L, -2, "stdout");
  lua_pushlstring(L, p->err.data ? p->err.data : "", p->err.len);
  lua_setfield(L, -2, "stderr");
  lua_pushnumber(L, p->end - p->start);
  lua_setfield(L, -2, "duration");
  sh_set_bool(L, "truncated", p->out.truncated || p->err.truncated);
  sh_set_bool(L, "stdout_truncated", p->out.truncated);
  sh_set_bool(L, "stderr_truncated", p->err.truncated);
  sh_set_bool(L, "timed_out", p->timed_out);
}

static void sh_quote_one(luaL_Buffer *b, const char *s, size_t len);

/* Appends argv quoted for a shell, for plans and messages; at most max
 * bytes of it (0: all). */
/* Pushes argv with each argument redacted (a userdata holding the list, its
 * strings above it): what is shown is redacted BEFORE it is quoted, as a
 * quote inside a secret ('it'\''s') would hide it from the redactor. */
static char **sh_shown_argv(lua_State *L, char **argv) {
  size_t n = 0;
  while (argv[n])
    n++;
  luaL_checkstack(L, (int)n + 4, "sh.run: too many arguments");
  char **out = lua_newuserdatauv(L, (n + 1) * sizeof *out, 0);
  for (size_t i = 0; i < n; i++)
    out[i] = (char *)relish_redact(L, argv[i], strlen(argv[i]), NULL);
  out[n] = NULL;
  return out;
}

static void sh_add_command(luaL_Buffer *b, char **argv, size_t max) {
  size_t before = luaL_bufflen(b);
  for (char **a = argv; *a; a++) {
    if (max && luaL_bufflen(b) - before > max) {
      luaL_addstring(b, " ...");
      return;
    }
    if (a != argv) luaL_addchar(b, ' ');
    sh_quote_one(b, *a, strlen(*a));
  }
}

/* Whether the command's outcome is one the call accepts. */
static int sh_accepted(const struct sh_proc *p) {
  if (!p->check) return 1;
  if (p->timed_out || !p->status_known || !WIFEXITED(p->status)) return 0;
  int code = WEXITSTATUS(p->status);
  return (p->ok_codes[code / 8] >> (code % 8)) & 1;
}

/* The last lines of stderr (at most 5 lines, 400 bytes), trailing blanks
 * trimmed: what a failure message quotes. */
static const char *sh_stderr_tail(const struct sh_proc *p, size_t *len) {
  const char *s = p->err.data ? p->err.data : "";
  size_t n = p->err.len;
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == ' ' || s[n - 1] == '\t'))
    n--;
  size_t start = n > 400 ? n - 400 : 0;
  int lines = 0;
  for (size_t i = n; i > start; i--) {
    if (s[i - 1] == '\n' && ++lines == 5) {
      start = i;
      break;
    }
  }
  *len = n - start;
  return s + start;
}

/* Raises the structured error of a command that ran and failed: kind exit,
 * signal or timeout, with the result's fields and argv; the message names
 * the command, what happened and the end of its stderr, redacted. */
static int sh_raise_failed(lua_State *L, struct sh_proc *p) {
  const char *kind;
  char what[96];
  if (p->timed_out) {
    kind = "timeout";
    snprintf(what, sizeof what, "timed out after %.3gs", p->timeout);
  } else if (p->status_known && WIFEXITED(p->status)) {
    kind = "exit";
    snprintf(what, sizeof what, "exited with code %d", WEXITSTATUS(p->status));
  } else if (p->status_known) {
    char buf[16];
    kind = "signal";
    snprintf(what, sizeof what, "was killed by SIG%s",
             sh_signame(WTERMSIG(p->status), buf, sizeof buf));
  } else {
    kind = "signal";
    snprintf(what, sizeof what, "ended with an unknown status");
  }
  char **shown = sh_shown_argv(L, p->argv);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "sh.run: `");
  sh_add_command(&b, shown, 200);
  luaL_addstring(&b, "` ");
  luaL_addstring(&b, what);
  size_t tlen;
  const char *tail = sh_stderr_tail(p, &tlen);
  if (tlen > 0) {
    luaL_addstring(&b, ": ");
    luaL_addlstring(&b, tail, tlen);
  }
  luaL_pushresult(&b);
  size_t mlen;
  const char *msg = lua_tolstring(L, -1, &mlen);
  relish_redact(L, msg, mlen, NULL);
  relish_push_error(L, kind, "%s", lua_tostring(L, -1));
  sh_error_fields(L);
  sh_set_result(L, p);
  lua_createtable(L, 0, 0);
  for (int i = 0; p->argv[i] != NULL; i++) {
    lua_pushstring(L, p->argv[i]);
    lua_rawseti(L, -2, i + 1);
  }
  lua_setfield(L, -2, "argv");
  sh_proc_free(L, p);
  return lua_error(L);
}

/* ---- running: spawn, wait, then the result or a raised error ---- */

/* After the wait: the command is done, or the wait was stopped. The box is
 * at stack index ctx. */
static int sh_wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  struct sh_proc *p = lua_touserdata(L, (int)ctx);
  if (p->w.outcome != RELISH_WAIT_READY) {
    /* a cancelled command may still be between TERM and KILL: the loop
     * keeps driving it, and the box frees it once reaped */
    if (p->w.finished) sh_proc_free(L, p);
    return relish_loop_raise(L, &p->w);
  }
  if (!sh_accepted(p)) return sh_raise_failed(L, p);
  lua_createtable(L, 0, 10);
  sh_set_result(L, p);
  sh_proc_free(L, p);
  return 1;
}

/* Starts the prepared command in the box at idx and waits for it (yielding
 * inside a task). */
static int sh_start(lua_State *L, int idx) {
  struct sh_proc *p = luaL_checkudata(L, idx, SH_PROCESS_MT);
  if (p->argv == NULL) return luaL_error(L, "sh.run: this command was already run");
  if (relish_task_cancelled(L)) {
    sh_proc_free(L, p);
    return relish_raise(L, "cancelled", "cancelled");
  }
  if (sh_spawn(p) < 0) return sh_raise_spawn(L, p);
  p->w.ops = &sh_waiter_ops;
  relish_loop_add(L, &p->w, idx);
  return relish_loop_wait(L, &p->w, (lua_KContext)idx, sh_wait_k);
}

/* ---- the effect: provider "sh.run" ---- */

/* apply(box): runs the command. */
static int sh_apply(lua_State *L) {
  lua_settop(L, 1);
  return sh_start(L, 1);
}

/* plan(box): a dry-run runs nothing and answers as a command that succeeded. */
static int sh_plan(lua_State *L) {
  sh_proc_free(L, luaL_checkudata(L, 1, SH_PROCESS_MT));
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, 0);
  lua_setfield(L, -2, "code");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "stdout");
  lua_pushliteral(L, "");
  lua_setfield(L, -2, "stderr");
  lua_pushnumber(L, 0);
  lua_setfield(L, -2, "duration");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "planned");
  return 1;
}

/* undo(record): runs the journaled undo argv {argv = {...}, cwd = ...} with
 * relish's environment; raises (kind exit, signal, timeout, not_found ...)
 * when it fails. Acts directly, never through the gate. */
static int sh_undo(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  struct sh_proc *p = sh_proc_new(L); /* 2 */
  sh_opt_argv(L, 1, p);
  sh_opt_rest(L, 1, 2, p);
  if (p->timeout <= 0) p->timeout = SH_UNDO_TIMEOUT;
  sh_build_paths(L, p);
  return sh_start(L, 2);
}

/* The undo record {argv = undo, cwd = cwd} of a command, pushed. Records are
 * journaled as they are (never redacted), so an undo argv holding a secret
 * is refused: the undo command must find the credential itself. */
static void sh_push_record(lua_State *L, int opts, int undo) {
  lua_Integer n = (lua_Integer)lua_rawlen(L, undo);
  if (n == 0) luaL_error(L, "sh.run: undo must be a non-empty argv list");
  lua_createtable(L, 0, 2);
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 1; i <= n; i++) {
    int type = lua_rawgeti(L, undo, i);
    if (relish_issecret(L, -1))
      luaL_error(L,
                 "sh.run: undo[%d] is a secret; undo commands are journaled as they are, so "
                 "they cannot hold secrets (let the undo command read the credential itself)",
                 (int)i);
    if (type != LUA_TSTRING)
      luaL_error(L, "sh.run: undo[%d] must be a string, got %s", (int)i, luaL_typename(L, -1));
    size_t len, rlen;
    const char *s = lua_tolstring(L, -1, &len);
    if (strlen(s) != len) luaL_error(L, "sh.run: undo[%d] contains a NUL byte", (int)i);
    relish_redact(L, s, len, &rlen);
    if (rlen != len || memcmp(lua_tostring(L, -1), s, len) != 0)
      luaL_error(L,
                 "sh.run: undo[%d] holds a secret value; undo commands are journaled as they "
                 "are, so they cannot hold secrets (let the undo command read the credential "
                 "itself)",
                 (int)i);
    lua_pop(L, 1);
    lua_rawseti(L, -2, i);
  }
  lua_pushnil(L);
  while (lua_next(L, undo) != 0) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > n)
      luaL_error(L, "sh.run: undo must be a list of strings without holes");
  }
  lua_setfield(L, -2, "argv");
  if (lua_getfield(L, opts, "cwd") == LUA_TSTRING) /* checked by sh_opt_rest */
    lua_setfield(L, -2, "cwd");
  else
    lua_pop(L, 1);
}

/* ---- options of the outcome: check and ok_codes ---- */

static void sh_opt_check(lua_State *L, int opts, struct sh_proc *p) {
  int ctype = lua_getfield(L, opts, "check");
  if (ctype != LUA_TNIL && ctype != LUA_TBOOLEAN)
    luaL_error(L, "sh.run: check must be a boolean, got %s", luaL_typename(L, -1));
  if (ctype == LUA_TBOOLEAN) p->check = lua_toboolean(L, -1);
  lua_pop(L, 1);
  int type = lua_getfield(L, opts, "ok_codes");
  if (type != LUA_TNIL) {
    if (!p->check) luaL_error(L, "sh.run: give ok_codes or check = false, not both");
    if (type != LUA_TTABLE || lua_rawlen(L, -1) == 0)
      luaL_error(L, "sh.run: ok_codes must be a non-empty list of exit codes");
    memset(p->ok_codes, 0, sizeof p->ok_codes);
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, -1, i);
      int isint;
      lua_Integer c = lua_tointegerx(L, -1, &isint);
      if (lua_type(L, -1) != LUA_TNUMBER || !isint || c < 0 || c > 255)
        luaL_error(L, "sh.run: ok_codes[%d] must be an exit code (0 to 255)", (int)i);
      p->ok_codes[c / 8] |= (unsigned char)(1u << (c % 8));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
}

/* sh.run{argv=, env=, cwd=, input=, timeout=, grace=, max_output=, readonly=,
 * undo=, ok_codes=, check=} -> {code, signal, stdout, stderr, ...}; raises
 * when the command fails (unless ok_codes or check say it is fine). A command
 * that is not readonly is the effect "sh.run": journaled, planned in a
 * dry-run, irreversible unless undo = argv is given. */
static int l_sh_run(lua_State *L) {
  if (!lua_istable(L, 1)) return relish_argexpected(L, 1, "sh.run", "a table {argv = {...}, ...}");
  lua_settop(L, 1);
  sh_check_keys(L, 1);
  struct sh_proc *p = sh_proc_new(L); /* index 2: owns all C memory from here */
  sh_opt_argv(L, 1, p);
  sh_opt_env(L, 1, p);
  sh_opt_rest(L, 1, 2, p);
  sh_opt_check(L, 1, p);
  lua_getfield(L, 1, "readonly");
  int readonly = lua_toboolean(L, -1);
  int utype = lua_getfield(L, 1, "undo");
  lua_settop(L, 2);
  if (utype != LUA_TNIL && utype != LUA_TTABLE)
    return luaL_error(L, "sh.run: undo must be an argv list, got %s", lua_typename(L, utype));
  if (readonly && utype != LUA_TNIL)
    return luaL_error(L, "sh.run: a readonly command changes nothing, so it has no undo");
  sh_build_paths(L, p);
  if (readonly) return sh_start(L, 2); /* not an effect: the gate never sees it */

  int record = 0;
  if (utype == LUA_TTABLE) {
    lua_getfield(L, 1, "undo");
    sh_push_record(L, 1, lua_gettop(L));
    record = lua_gettop(L);
  }
  char **shown = sh_shown_argv(L, p->argv);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  luaL_addstring(&b, "run ");
  sh_add_command(&b, shown, 0);
  if (p->cwd) {
    luaL_addstring(&b, " (in ");
    luaL_addstring(&b, p->cwd);
    luaL_addchar(&b, ')');
  }
  luaL_pushresult(&b);
  return relish_effect_run(L, &(relish_action){.kind = "sh.run",
                                               .target = p->argv[0],
                                               .describe = lua_tostring(L, -1),
                                               .record = record,
                                               .arg = 2});
}

static int sh_executable(const char *path) {
  struct stat st;
  return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* sh.which(name) -> path or nil, searching PATH like run does. */
static int l_sh_which(lua_State *L) {
  size_t nlen;
  const char *name = luaL_checklstring(L, 1, &nlen);
  if (nlen == 0 || strlen(name) != nlen) return 0;
  if (strchr(name, '/') != NULL) {
    if (!sh_executable(name)) return 0;
    lua_pushvalue(L, 1);
    return 1;
  }
  const char *path = getenv("PATH");
  if (path == NULL) path = SH_DEFAULT_PATH;
  for (const char *dir = path;; dir++) {
    const char *end = strchrnul(dir, ':');
    int dlen = (int)(end - dir);
    char buf[PATH_MAX];
    int len = dlen == 0 ? snprintf(buf, sizeof buf, "./%s", name)
                        : snprintf(buf, sizeof buf, "%.*s/%s", dlen, dir, name);
    if (len > 0 && (size_t)len < sizeof buf && sh_executable(buf)) {
      lua_pushstring(L, buf);
      return 1;
    }
    if (*end == '\0') return 0;
    dir = end;
  }
}

static void sh_quote_one(luaL_Buffer *b, const char *s, size_t len) {
  int plain = len > 0;
  for (size_t i = 0; i < len && plain; i++) {
    unsigned char c = (unsigned char)s[i];
    plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            strchr("_-+=.,/:@%", c) != NULL;
  }
  if (plain) {
    luaL_addlstring(b, s, len);
    return;
  }
  luaL_addchar(b, '\'');
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '\'')
      luaL_addstring(b, "'\\''");
    else
      luaL_addchar(b, s[i]);
  }
  luaL_addchar(b, '\'');
}

/* sh.quote(s) or sh.quote{argv...}: POSIX shell words, for display. */
static int l_sh_quote(lua_State *L) {
  luaL_Buffer b;
  if (lua_type(L, 1) == LUA_TTABLE) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, 1);
    for (lua_Integer i = 1; i <= n; i++) {
      if (lua_rawgeti(L, 1, i) != LUA_TSTRING)
        luaL_error(L, "sh.quote: [%d] must be a string, got %s", (int)i, luaL_typename(L, -1));
      lua_pop(L, 1);
    }
    luaL_buffinit(L, &b);
    for (lua_Integer i = 1; i <= n; i++) {
      if (i > 1) luaL_addchar(&b, ' ');
      /* Pop before adding (the buffer owns the stack top); the table keeps
       * the string alive. */
      size_t len;
      lua_rawgeti(L, 1, i);
      const char *s = lua_tolstring(L, -1, &len);
      lua_pop(L, 1);
      sh_quote_one(&b, s, len);
    }
  } else {
    size_t len;
    luaL_checktype(L, 1, LUA_TSTRING);
    const char *s = lua_tolstring(L, 1, &len);
    luaL_buffinit(L, &b);
    sh_quote_one(&b, s, len);
  }
  luaL_pushresult(&b);
  return 1;
}

int luaopen_relish_sh(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"run", l_sh_run}, {"which", l_sh_which}, {"quote", l_sh_quote}, {NULL, NULL}};
  static const char *const fields[] = {"argv", NULL};
  static const relish_provider providers[] = {
      {.kind = "sh.run", .apply = sh_apply, .plan = sh_plan, .undo = sh_undo, .fields = fields},
      {NULL}};
  relish_effect_register(L, "relish.sh", providers);
  luaL_newlib(L, funcs);
  return 1;
}
