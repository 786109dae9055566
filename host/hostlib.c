/* hostlib.c: "relish._host", the small set of host services the Lua side of
 * relish (CLI commands, the test runner) needs before relish.fs exists:
 * directory walking, temporary directories, clocks, terminal checks. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <pwd.h>
#include <signal.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <git2.h>
#include <sqlite3.h>
#include <yaml.h>

#include "hostint.h"

const char *relish_exe_path(void) {
  static char path[PATH_MAX];
  if (!path[0]) {
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n < 0) n = 0;
    path[n] = '\0';
  }
  return path;
}

static int l_host_exe(lua_State *L) {
  lua_pushstring(L, relish_exe_path());
  return 1;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* listdir(path) -> sorted names (without . and ..) | nil, err */
static int l_host_listdir(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  DIR *d = opendir(path);
  if (!d)
    return relish_fail(L, errno == ENOENT ? "not_found" : "io", "%s: %s", path, strerror(errno));
  lua_newtable(L);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    lua_pushstring(L, e->d_name); /* may raise on memory: acceptable leak of DIR avoided below */
    lua_seti(L, -2, ++n);
  }
  closedir(d);
  /* sort in Lua order via table.sort-equivalent: copy out, qsort, copy in */
  const char **names = lua_newuserdatauv(L, sizeof(char *) * (size_t)(n ? n : 1), 0);
  for (int i = 1; i <= n; i++) {
    lua_geti(L, -2, i);
    names[i - 1] = lua_tostring(L, -1);
    lua_pop(L, 1); /* strings stay alive: the table still holds them */
  }
  qsort(names, (size_t)n, sizeof(char *), cmp_str);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_seti(L, -2, i + 1);
  }
  return 1;
}

/* filetype(path [, follow]) -> "file"|"dir"|"link"|"other" | nil */
static int l_host_filetype(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  int r = lua_toboolean(L, 2) ? stat(path, &st) : lstat(path, &st);
  if (r != 0) {
    lua_pushnil(L);
    return 1;
  }
  if (S_ISREG(st.st_mode))
    lua_pushliteral(L, "file");
  else if (S_ISDIR(st.st_mode))
    lua_pushliteral(L, "dir");
  else if (S_ISLNK(st.st_mode))
    lua_pushliteral(L, "link");
  else
    lua_pushliteral(L, "other");
  return 1;
}

static int l_host_mkdtemp(lua_State *L) {
  const char *prefix = luaL_optstring(L, 1, "relish");
  const char *tmp = getenv("TMPDIR");
  if (!tmp || !*tmp) tmp = "/tmp";
  lua_pushfstring(L, "%s/%s-XXXXXX", tmp, prefix);
  char *buf = lua_newuserdatauv(L, lua_rawlen(L, -1) + 1, 0);
  memcpy(buf, lua_tostring(L, -2), lua_rawlen(L, -2) + 1);
  if (!mkdtemp(buf)) return relish_fail(L, "io", "mkdtemp %s: %s", buf, strerror(errno));
  lua_pushstring(L, buf);
  return 1;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)ftw;
  if (flag == FTW_DP) return rmdir(path) == 0 ? 0 : -1;
  return unlink(path) == 0 ? 0 : -1;
}

/* rmtree(path): remove a tree without following links; true | nil, err */
static int l_host_rmtree(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct stat st;
  if (lstat(path, &st) != 0 && errno == ENOENT) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS) != 0)
    return relish_fail(L, "io", "remove %s: %s", path, strerror(errno));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_host_now(lua_State *L) {
  lua_pushnumber(L, relish_now());
  return 1;
}

static int l_host_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  lua_pushnumber(L, (lua_Number)ts.tv_sec + (lua_Number)ts.tv_nsec / 1e9);
  return 1;
}

static int l_host_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 1)));
  return 1;
}

/* read_ready(fd) -> the bytes waiting on fd now (one read, up to 4 KiB; ""
 * at the end of input or when fd cannot be read), or nil when nothing is
 * waiting: a prompt polls stdin between sleeps on the event loop, so the
 * run's other tasks go on while a person thinks. Raw read(2): nothing is
 * left in a stdio buffer that poll cannot see. */
static int l_host_read_ready(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  struct pollfd p = {.fd = fd, .events = POLLIN};
  int r = poll(&p, 1, 0);
  if (r < 0 && errno != EINTR) {
    lua_pushliteral(L, "");
    return 1;
  }
  if (r <= 0) {
    lua_pushnil(L);
    return 1;
  }
  if (p.revents & POLLNVAL) {
    lua_pushliteral(L, "");
    return 1;
  }
  char buf[4096];
  ssize_t n = read(fd, buf, sizeof buf);
  if (n < 0) {
    if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)
      lua_pushnil(L);
    else
      lua_pushliteral(L, "");
    return 1;
  }
  lua_pushlstring(L, buf, (size_t)n);
  return 1;
}

/* The terminal's settings before a secret was typed unseen, restored at exit
 * should the process end while echo is off (an error, the watchdog). */
static struct termios saved_tty;
static int saved_tty_fd = -1;

static void restore_tty(void) {
  if (saved_tty_fd >= 0) tcsetattr(saved_tty_fd, TCSANOW, &saved_tty);
}

/* tty_echo(fd, on) -> whether echo was on, or nil when fd is no terminal: a
 * secret answer is typed unseen (echo off), then echo comes back. */
static int l_host_tty_echo(lua_State *L) {
  int fd = (int)luaL_checkinteger(L, 1);
  int on = lua_toboolean(L, 2);
  struct termios t;
  if (tcgetattr(fd, &t) != 0) {
    lua_pushnil(L);
    return 1;
  }
  int was = (t.c_lflag & ECHO) != 0;
  if (!on && was && saved_tty_fd < 0) {
    static int registered;
    saved_tty = t;
    saved_tty_fd = fd;
    if (!registered) registered = atexit(restore_tty) == 0;
  }
  if (on) {
    t.c_lflag |= ECHO;
    saved_tty_fd = -1;
  } else {
    t.c_lflag &= ~(tcflag_t)ECHO;
  }
  tcsetattr(fd, TCSANOW, &t);
  lua_pushboolean(L, was);
  return 1;
}

/* load_user(path) -> fn, env | nil, message, "syntax"|"file" */
static int l_host_load_user(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int st = relish_load_user(L, path);
  if (st == LUA_OK) {
    lua_insert(L, -2); /* fn, env */
    return 2;
  }
  lua_pushnil(L);
  lua_insert(L, -2);
  lua_pushstring(L, st == LUA_ERRSYNTAX ? "syntax" : "file");
  return 3;
}

/* strict_env([base]): over the globals, or over the table base */
static int l_host_strict_env(lua_State *L) {
  if (lua_istable(L, 1))
    relish_push_strict_env_over(L, 1);
  else
    relish_push_strict_env(L);
  return 1;
}

static int l_host_realpath(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  char buf[PATH_MAX];
  if (!realpath(path, buf)) return relish_fail(L, "not_found", "%s: %s", path, strerror(errno));
  lua_pushstring(L, buf);
  return 1;
}

static int l_host_getcwd(lua_State *L) {
  char buf[PATH_MAX];
  if (!getcwd(buf, sizeof buf)) return relish_fail(L, "io", "getcwd: %s", strerror(errno));
  lua_pushstring(L, buf);
  return 1;
}

static int l_host_hostname(lua_State *L) {
  char buf[256];
  if (gethostname(buf, sizeof buf) != 0) strcpy(buf, "localhost");
  buf[sizeof buf - 1] = '\0';
  lua_pushstring(L, buf);
  return 1;
}

/* username(): the login name of the effective user, for the journal's actor */
static int l_host_username(lua_State *L) {
  struct passwd *pw = getpwuid(geteuid());
  if (pw && pw->pw_name)
    lua_pushstring(L, pw->pw_name);
  else
    lua_pushfstring(L, "uid%d", (int)geteuid());
  return 1;
}

static int l_host_getpid(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)getpid());
  return 1;
}

/* pid_alive(pid): a process with this pid exists (EPERM counts as alive) */
static int l_host_pid_alive(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  if (pid <= 0) {
    lua_pushboolean(L, 0);
    return 1;
  }
  int r = kill((pid_t)pid, 0);
  lua_pushboolean(L, r == 0 || errno == EPERM);
  return 1;
}

/* set_deadline(monotonic seconds | nil [, what]): past it, Lua code raises
 * "timeout"; what ('step "x" of run R') is named should the watchdog have to
 * end the process */
static int l_host_set_deadline(lua_State *L) {
  relish_set_deadline(L, luaL_optnumber(L, 1, 0), luaL_optstring(L, 2, NULL));
  return 0;
}

/* deadline_passed() -> true once the running step's (or rollback's) deadline
 * has passed: a "timeout" then is the step's, not an operation's own */
static int l_host_deadline_passed(lua_State *L) {
  double d = relish_deadline();
  lua_pushboolean(L, d > 0 && relish_now() >= d);
  return 1;
}

static int l_host_interrupt_reset(lua_State *L) {
  (void)L;
  relish_interrupt_reset();
  return 0;
}

static int l_host_interrupted(lua_State *L) {
  lua_pushboolean(L, relish_interrupted());
  return 1;
}

/* versions() -> {relish=, lua=, curl=, libgit2=, cjson=, libyaml=, sqlite=} */
static int l_host_versions(lua_State *L) {
  int maj, min, rev;
  lua_createtable(L, 0, 7);
  lua_pushliteral(L, RELISH_VERSION);
  lua_setfield(L, -2, "relish");
  lua_pushliteral(L, LUA_RELEASE);
  lua_setfield(L, -2, "lua");
  lua_pushstring(L, curl_version_info(CURLVERSION_NOW)->version);
  lua_setfield(L, -2, "libcurl");
  git_libgit2_version(&maj, &min, &rev);
  lua_pushfstring(L, "%d.%d.%d", maj, min, rev);
  lua_setfield(L, -2, "libgit2");
  lua_pushstring(L, cJSON_Version());
  lua_setfield(L, -2, "cjson");
  lua_pushstring(L, yaml_get_version_string());
  lua_setfield(L, -2, "libyaml");
  lua_pushstring(L, sqlite3_libversion());
  lua_setfield(L, -2, "sqlite");
  return 1;
}

/* nearest(word, names) -> the name closest to word ("did you mean"), or nil:
 * the CLI's rule (relish_nearest) for the Lua side. */
static int l_host_nearest(lua_State *L) {
  const char *word = luaL_checkstring(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  size_t n = (size_t)luaL_len(L, 2);
  const char **names = lua_newuserdatauv(L, (n ? n : 1) * sizeof *names, 0);
  for (size_t i = 0; i < n; i++) {
    if (lua_geti(L, 2, (lua_Integer)i + 1) != LUA_TSTRING)
      return luaL_error(L, "nearest: names[%d] must be a string, got %s", (int)i + 1,
                        luaL_typename(L, -1));
    names[i] = lua_tostring(L, -1); /* the table keeps it alive */
    lua_pop(L, 1);
  }
  const char *best = relish_nearest(word, names, n);
  if (best != NULL)
    lua_pushstring(L, best);
  else
    lua_pushnil(L);
  return 1;
}

/* disk_free(path) -> free bytes, total bytes of the filesystem holding path
 * (free as an unprivileged user may use it: f_bavail) */
static int l_host_disk_free(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  struct statvfs sv;
  if (statvfs(path, &sv) != 0) return relish_fail(L, "io", "%s: %s", path, strerror(errno));
  lua_pushinteger(L, (lua_Integer)((unsigned long long)sv.f_bavail * sv.f_frsize));
  lua_pushinteger(L, (lua_Integer)((unsigned long long)sv.f_blocks * sv.f_frsize));
  return 2;
}

int luaopen_relish__host(lua_State *L) {
  static const luaL_Reg fns[] = {{"exe", l_host_exe},
                                 {"listdir", l_host_listdir},
                                 {"filetype", l_host_filetype},
                                 {"mkdtemp", l_host_mkdtemp},
                                 {"rmtree", l_host_rmtree},
                                 {"now", l_host_now},
                                 {"time", l_host_time},
                                 {"isatty", l_host_isatty},
                                 {"read_ready", l_host_read_ready},
                                 {"tty_echo", l_host_tty_echo},
                                 {"load_user", l_host_load_user},
                                 {"strict_env", l_host_strict_env},
                                 {"realpath", l_host_realpath},
                                 {"getcwd", l_host_getcwd},
                                 {"interrupted", l_host_interrupted},
                                 {"versions", l_host_versions},
                                 {"hostname", l_host_hostname},
                                 {"getpid", l_host_getpid},
                                 {"username", l_host_username},
                                 {"pid_alive", l_host_pid_alive},
                                 {"set_deadline", l_host_set_deadline},
                                 {"deadline_passed", l_host_deadline_passed},
                                 {"interrupt_reset", l_host_interrupt_reset},
                                 {"nearest", l_host_nearest},
                                 {"disk_free", l_host_disk_free},
                                 {NULL, NULL}};
  luaL_newlib(L, fns);
  relish_progress_register(L);
  return 1;
}
