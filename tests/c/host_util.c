/* host_util.c: the helpers every module shares (util.c): the resource box,
 * the failure status, the growable buffer, the option checker and the
 * suggestions behind "did you mean". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "hostint.h"

/* ---- the box ---- */

static char freed[256];
static size_t nfreed;

static void note_free(void *p) {
  if (nfreed < sizeof freed - 1) freed[nfreed++] = *(char *)p;
  freed[nfreed] = '\0';
  free(p);
}

static char *item(char c) {
  char *p = malloc(1);
  *p = c;
  return p;
}

static void reset_freed(void) {
  nfreed = 0;
  freed[0] = '\0';
}

static int fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

static void test_box_frees_in_reverse_order_once(void) {
  lua_State *L = relish_newstate();
  reset_freed();
  relish_box *b = relish_box_new(L);
  CHECK(lua_type(L, -1) == LUA_TUSERDATA);
  CHECK(relish_box_add(b, NULL, note_free) == NULL);
  char *a = relish_box_add(b, item('a'), note_free);
  CHECK(a != NULL && *a == 'a');
  relish_box_add(b, item('b'), note_free);
  relish_box_add(b, item('c'), note_free);
  relish_box_release(b);
  CHECK_STR(freed, "cba");
  relish_box_release(b); /* idempotent */
  CHECK_STR(freed, "cba");
  relish_box_add(b, item('d'), note_free); /* still usable */
  lua_close(L);                            /* __gc */
  CHECK_STR(freed, "cbad");
}

static void test_box_drop_frees_now_forget_never(void) {
  lua_State *L = relish_newstate();
  reset_freed();
  relish_box *b = relish_box_new(L);
  char *a = relish_box_add(b, item('a'), note_free);
  char *x = relish_box_add(b, item('x'), note_free);
  relish_box_add(b, item('c'), note_free);
  relish_box_drop(b, x);
  CHECK_STR(freed, "x");
  relish_box_forget(b, a);
  relish_box_drop(b, x); /* no longer there: nothing happens */
  relish_box_release(b);
  CHECK_STR(freed, "xc");
  CHECK(*a == 'a'); /* forgotten, so still ours */
  free(a);
  lua_close(L);
}

static void test_box_grows_past_its_inline_slots(void) {
  lua_State *L = relish_newstate();
  reset_freed();
  relish_box *b = relish_box_new(L);
  for (int i = 0; i < 100; i++)
    relish_box_add(b, item((char)('0' + i % 10)), note_free);
  CHECK(nfreed == 0);
  lua_settop(L, 0); /* the box was only on the stack */
  lua_gc(L, LUA_GCCOLLECT);
  CHECK(nfreed == 100);
  CHECK(freed[0] == '9' && freed[99] == '0');
  lua_close(L);
}

static void test_box_closes_descriptors(void) {
  lua_State *L = relish_newstate();
  int p[2];
  CHECK(pipe(p) == 0);
  relish_box *b = relish_box_new(L);
  CHECK(relish_box_fd(b, p[0]) == p[0]);
  CHECK(relish_box_fd(b, p[1]) == p[1]);
  CHECK(relish_box_fd(b, -1) == -1);
  relish_box_fd_close(b, p[1]);
  CHECK(!fd_is_open(p[1]));
  CHECK(fd_is_open(p[0]));
  lua_close(L);
  CHECK(!fd_is_open(p[0]));
}

static int boxed_then_raise(lua_State *L) {
  relish_box *b = relish_box_new(L);
  relish_box_add(b, item('r'), note_free);
  return luaL_error(L, "boom");
}

static void test_box_freed_when_the_function_raises(void) {
  lua_State *L = relish_newstate();
  reset_freed();
  lua_pushcfunction(L, boxed_then_raise);
  CHECK(lua_pcall(L, 0, 0, 0) != LUA_OK);
  lua_settop(L, 0);
  lua_gc(L, LUA_GCCOLLECT);
  CHECK_STR(freed, "r");
  lua_close(L);
}

/* ---- status ---- */

static void test_status_kinds_from_errno(void) {
  struct {
    int code;
    const char *kind;
  } cases[] = {{ENOENT, "not_found"}, {ENOTDIR, "not_found"}, {EACCES, "permission"},
               {EPERM, "permission"}, {EROFS, "permission"},  {EEXIST, "exists"},
               {ENOTEMPTY, "exists"}, {EFBIG, "too_large"},   {EIO, "io"},
               {ENOSPC, "io"},        {EISDIR, "io"},         {0, "io"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    relish_status st = {0};
    CHECK(relish_status_errno(&st, cases[i].code, "open /x") == -1);
    CHECK_STR(relish_status_kind(&st), cases[i].kind);
  }
  relish_status st = {0};
  relish_status_errno(&st, ENOENT, "open /x");
  CHECK_STR(st.msg, "open /x: No such file or directory");
  relish_status_errno(&st, ENOENT, NULL);
  CHECK_STR(st.msg, "No such file or directory");
  CHECK(relish_status_set(&st, "conflict", "ref %s moved", "main") == -1);
  CHECK_STR(relish_status_kind(&st), "conflict");
  CHECK_STR(st.msg, "ref main moved");
  CHECK(st.code == ENOENT); /* set leaves code alone */
}

static int raise_status(lua_State *L) {
  relish_status st = {0};
  relish_status_errno(&st, EACCES, "open /etc/x");
  return relish_status_raise(L, lua_tostring(L, 1), &st);
}

static void test_status_raises_a_structured_error(void) {
  lua_State *L = relish_newstate();
  lua_pushcfunction(L, raise_status);
  lua_pushliteral(L, "fs.read /etc/x");
  CHECK(lua_pcall(L, 1, 1, 0) != LUA_OK);
  CHECK(lua_type(L, -1) == LUA_TTABLE);
  lua_getfield(L, -1, "kind");
  CHECK_STR(lua_tostring(L, -1), "permission");
  lua_getfield(L, -2, "message");
  CHECK_STR(lua_tostring(L, -1), "fs.read /etc/x: open /etc/x: Permission denied");
  CHECK(lua_getfield(L, -3, "code") == LUA_TNIL); /* kind only */
  lua_settop(L, 0);

  relish_status st = {0};
  relish_status_set(&st, NULL, "two\nlines\n");
  relish_status_push(L, NULL, &st);
  lua_getfield(L, -1, "message");
  CHECK_STR(lua_tostring(L, -1), "two lines");
  lua_getfield(L, -2, "kind");
  CHECK_STR(lua_tostring(L, -1), "io");
  CHECK(lua_gettop(L) == 3);
  lua_close(L);
}

static void test_status_push_redacts_secrets(void) {
  lua_State *L = relish_newstate();
  CHECK(luaL_dostring(L, "S = require('relish.secret').value('hunter2-very-secret')") == LUA_OK);
  relish_status st = {0};
  relish_status_set(&st, "auth", "token hunter2-very-secret refused");
  relish_status_push(L, "http.get", &st);
  lua_getfield(L, -1, "message");
  CHECK_STR(lua_tostring(L, -1), "http.get: token *** refused");
  lua_close(L);
}

static void test_error_values_carry_kind_only(void) {
  lua_State *L = relish_newstate();
  CHECK(luaL_dostring(L,
                      "local e = require('relish._errors').value('parse', 'bad %d', 1)\n"
                      "return e.kind .. '|' .. tostring(e.code) .. '|' .. tostring(e)") == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "parse|nil|bad 1");
  relish_push_error(L, "io", "disk %s", "full");
  CHECK(lua_getfield(L, -1, "code") == LUA_TNIL);
  CHECK(lua_getfield(L, -2, "kind") == LUA_TSTRING);
  CHECK_STR(lua_tostring(L, -1), "io");
  lua_close(L);
}

/* ---- buffers ---- */

static void test_buf_appends_and_stays_terminated(void) {
  relish_buf b = {0};
  CHECK(relish_buf_add(&b, "", 0) == 0);
  CHECK(b.data != NULL && b.data[0] == '\0' && b.len == 0);
  CHECK(relish_buf_add(&b, "abc", 3) == 0);
  for (int i = 0; i < 1000; i++)
    CHECK(relish_buf_add(&b, "0123456789", 10) == 0);
  CHECK(b.len == 10003);
  CHECK(strlen(b.data) == 10003);
  CHECK(strncmp(b.data, "abc0123", 7) == 0);
  CHECK(strcmp(b.data + 9993, "0123456789") == 0);
  relish_buf_free(&b);
  CHECK(b.data == NULL && b.len == 0 && b.cap == 0);
}

static void test_buf_refuses_past_max(void) {
  relish_buf b = {.max = 8};
  CHECK(relish_buf_add(&b, "12345", 5) == 0);
  CHECK(relish_buf_add(&b, "6789", 4) == -1);
  CHECK_STR(b.data, "12345"); /* untouched */
  CHECK(relish_buf_add(&b, "678", 3) == 0);
  CHECK_STR(b.data, "12345678");
  CHECK(relish_buf_add(&b, "9", 1) == -1);
  CHECK(relish_buf_add(&b, "", 0) == 0);
  relish_buf_free(&b);
  CHECK(b.max == 8);
}

static void test_grow_doubles(void) {
  int *v = NULL;
  size_t n = 0, cap = 0;
  for (int i = 0; i < 100; i++) {
    int *g = relish_grow(v, n, &cap, sizeof *v, 4);
    CHECK(g != NULL);
    v = g;
    v[n++] = i;
  }
  CHECK(cap == 128);
  CHECK(v[0] == 0 && v[99] == 99);
  free(v);
}

/* ---- options and suggestions ---- */

static int checked(lua_State *L) {
  static const char *const known[] = {"mode", "parents", "max_undo", NULL};
  relish_checkopts(L, 1, "fs.mkdir", known);
  lua_pushboolean(L, 1);
  return 1;
}

/* The message of checked(opts) with opts from Lua source, without the
 * caller's position (checked), or "ok". */
static const char *check_opts(lua_State *L, const char *opts) {
  lua_settop(L, 0);
  lua_pushcfunction(L, checked);
  lua_setglobal(L, "checked");
  char chunk[256];
  snprintf(chunk, sizeof chunk, "return checked(%s)", opts);
  if (luaL_dostring(L, chunk) == LUA_OK) return "ok";
  const char *msg = lua_tostring(L, -1);
  const char *at = "[string \"return checked(";
  if (strncmp(msg, at, strlen(at)) != 0) return msg;
  const char *rest = strstr(msg, "]:1: "); /* raised at the caller's line */
  return rest != NULL ? rest + 5 : msg;
}

static void test_checkopts_wording(void) {
  lua_State *L = relish_newstate();
  CHECK_STR(check_opts(L, ""), "ok");
  CHECK_STR(check_opts(L, "nil"), "ok");
  CHECK_STR(check_opts(L, "{mode = 1, parents = true}"), "ok");
  CHECK_STR(check_opts(L, "5"), "fs.mkdir: options must be a table, got number");
  CHECK_STR(check_opts(L, "{parent = true}"),
            "fs.mkdir: unknown option 'parent' (did you mean 'parents'?)");
  CHECK_STR(check_opts(L, "{max = 1}"),
            "fs.mkdir: unknown option 'max' (did you mean 'max_undo'?)");
  CHECK_STR(check_opts(L, "{colour = 'red'}"), "fs.mkdir: unknown option 'colour'");
  CHECK_STR(check_opts(L, "{1}"), "fs.mkdir: unknown option 1");
  lua_close(L);
}

static void test_nearest(void) {
  const char *const cmds[] = {"run", "plan", "history", "show", "rollback", "test"};
  size_t n = sizeof cmds / sizeof cmds[0];
  CHECK_STR(relish_nearest("rnu", cmds, n), "run");
  CHECK_STR(relish_nearest("plna", cmds, n), "plan");
  CHECK_STR(relish_nearest("hist", cmds, n), "history"); /* a prefix */
  CHECK_STR(relish_nearest("roll", cmds, n), "rollback");
  CHECK(relish_nearest("r", cmds, 0) == NULL);
  CHECK(relish_nearest("deploy", cmds, n) == NULL);
  CHECK(relish_nearest("xyzzyxyzzy", cmds, n) == NULL);
  CHECK_STR(relish_nearest("tset", cmds, n), "test");
}

static void test_nearest_from_lua(void) {
  lua_State *L = relish_newstate();
  CHECK(luaL_dostring(L, "local h = require 'relish._host'\n"
                         "return tostring(h.nearest('retires', {'retries', 'timeout'})) .. '|' ..\n"
                         "  tostring(h.nearest('zzz', {'retries', 'timeout'})) .. '|' ..\n"
                         "  tostring(h.nearest('x', {}))") == LUA_OK);
  CHECK_STR(lua_tostring(L, -1), "retries|nil|nil");
  CHECK(luaL_dostring(L, "return require('relish._host').nearest('a', {1})") != LUA_OK);
  lua_close(L);
}

int main(void) {
  RUN(test_box_frees_in_reverse_order_once);
  RUN(test_box_drop_frees_now_forget_never);
  RUN(test_box_grows_past_its_inline_slots);
  RUN(test_box_closes_descriptors);
  RUN(test_box_freed_when_the_function_raises);
  RUN(test_status_kinds_from_errno);
  RUN(test_status_raises_a_structured_error);
  RUN(test_status_push_redacts_secrets);
  RUN(test_error_values_carry_kind_only);
  RUN(test_buf_appends_and_stays_terminated);
  RUN(test_buf_refuses_past_max);
  RUN(test_grow_doubles);
  RUN(test_checkopts_wording);
  RUN(test_nearest);
  RUN(test_nearest_from_lua);
  CHECK_MAIN();
}
