/* util.c: the one copy of the helpers every module shares: the resource box,
 * the failure status, the growable buffer, the option checker and the edit
 * distance behind every "did you mean". */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "hostint.h"

/* ---- the resource box ---------------------------------------------------- */

#define BOX_MT "relish.Box"
#define BOX_INLINE 8

typedef struct {
  void *p; /* NULL: a descriptor (fd), or an empty slot (fd < 0) */
  relish_freefn fn;
  int fd;
} box_item;

struct relish_box {
  lua_State *L; /* the thread that made it: where it raises */
  box_item *v;  /* inline, or malloc'd once it outgrew it */
  size_t n, cap;
  box_item inline_items[BOX_INLINE];
};

static void box_free_item(box_item *it) {
  if (it->p != NULL)
    it->fn(it->p);
  else if (it->fd >= 0)
    close(it->fd);
  it->p = NULL;
  it->fd = -1;
}

void relish_box_release(relish_box *b) {
  while (b->n > 0)
    box_free_item(&b->v[--b->n]);
  if (b->v != b->inline_items) free(b->v);
  b->v = b->inline_items;
  b->cap = BOX_INLINE;
}

static int box_gc(lua_State *L) {
  relish_box_release(luaL_checkudata(L, 1, BOX_MT));
  return 0;
}

relish_box *relish_box_new(lua_State *L) {
  relish_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->L = L;
  b->v = b->inline_items;
  b->n = 0;
  b->cap = BOX_INLINE;
  relish_resource_metatable(L, BOX_MT, box_gc, NULL);
  lua_setmetatable(L, -2);
  return b;
}

/* A free slot, or NULL when the box cannot grow. Slots emptied by drop and
 * forget at the end are reused; holes in the middle stay (they are few). */
static box_item *box_slot(relish_box *b) {
  while (b->n > 0 && b->v[b->n - 1].p == NULL && b->v[b->n - 1].fd < 0)
    b->n--;
  if (b->n == b->cap) {
    size_t cap = b->cap * 2;
    box_item *v =
        b->v == b->inline_items ? malloc(cap * sizeof *v) : realloc(b->v, cap * sizeof *v);
    if (v == NULL) return NULL;
    if (b->v == b->inline_items) memcpy(v, b->inline_items, b->n * sizeof *v);
    b->v = v;
    b->cap = cap;
  }
  return &b->v[b->n++];
}

void *relish_box_add(relish_box *b, void *p, relish_freefn fn) {
  if (p == NULL) return NULL;
  box_item *it = box_slot(b);
  if (it == NULL) {
    fn(p);
    luaL_error(b->L, "not enough memory");
    return NULL;
  }
  *it = (box_item){.p = p, .fn = fn, .fd = -1};
  return p;
}

int relish_box_fd(relish_box *b, int fd) {
  if (fd < 0) return fd;
  box_item *it = box_slot(b);
  if (it == NULL) {
    close(fd);
    luaL_error(b->L, "not enough memory");
    return -1;
  }
  *it = (box_item){.p = NULL, .fn = NULL, .fd = fd};
  return fd;
}

static box_item *box_find(relish_box *b, const void *p, int fd) {
  for (size_t i = b->n; i > 0; i--) {
    box_item *it = &b->v[i - 1];
    if (p != NULL ? it->p == p : (it->p == NULL && it->fd == fd)) return it;
  }
  return NULL;
}

void relish_box_fd_close(relish_box *b, int fd) {
  box_item *it = fd >= 0 ? box_find(b, NULL, fd) : NULL;
  if (it != NULL) box_free_item(it);
}

void relish_box_drop(relish_box *b, void *p) {
  box_item *it = p != NULL ? box_find(b, p, -1) : NULL;
  if (it != NULL) box_free_item(it);
}

void relish_box_forget(relish_box *b, void *p) {
  box_item *it = p != NULL ? box_find(b, p, -1) : NULL;
  if (it != NULL) *it = (box_item){.p = NULL, .fn = NULL, .fd = -1};
}

/* ---- failures ------------------------------------------------------------ */

int relish_status_set(relish_status *st, const char *kind, const char *fmt, ...) {
  va_list ap;
  st->kind = kind;
  va_start(ap, fmt);
  vsnprintf(st->msg, sizeof st->msg, fmt, ap);
  va_end(ap);
  return -1;
}

int relish_status_errno(relish_status *st, int code, const char *where) {
  st->code = code;
  if (where != NULL) return relish_status_set(st, NULL, "%s: %s", where, strerror(code));
  return relish_status_set(st, NULL, "%s", strerror(code));
}

int relish_open_file(const char *path, int flags, const char *notfile_kind, relish_status *st) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | flags);
  if (fd < 0) return relish_status_errno(st, errno, NULL);
  struct stat sb;
  const char *what = NULL;
  if (fstat(fd, &sb) != 0) {
    int e = errno;
    close(fd);
    return relish_status_errno(st, e, NULL);
  }
  if (S_ISDIR(sb.st_mode)) {
    close(fd);
    return relish_status_errno(st, EISDIR, NULL);
  }
  if (S_ISFIFO(sb.st_mode))
    what = "a fifo";
  else if (S_ISSOCK(sb.st_mode))
    what = "a socket";
  else if (S_ISCHR(sb.st_mode) || S_ISBLK(sb.st_mode))
    what = "a device";
  else if (!S_ISREG(sb.st_mode))
    what = "not a file";
  if (what != NULL) {
    close(fd);
    st->code = 0;
    return relish_status_set(st, notfile_kind ? notfile_kind : "not_file",
                             "not a regular file (%s): refused, reading it could block", what);
  }
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
    int e = errno;
    close(fd);
    return relish_status_errno(st, e, NULL);
  }
  return fd;
}

const char *relish_status_kind(const relish_status *st) {
  if (st->kind != NULL) return st->kind;
  switch (st->code) {
  case ENOENT:
  case ENOTDIR:
    return "not_found";
  case EACCES:
  case EPERM:
  case EROFS:
    return "permission";
  case EEXIST:
  case ENOTEMPTY:
    return "exists";
  case EFBIG:
    return "too_large";
  default:
    return "io";
  }
}

void relish_status_push(lua_State *L, const char *what, const relish_status *st) {
  char line[sizeof st->msg + 512];
  if (what != NULL && what[0] != '\0')
    snprintf(line, sizeof line, "%s: %s", what, st->msg);
  else
    snprintf(line, sizeof line, "%s", st->msg);
  for (char *p = line; *p; p++) /* one line */
    if (*p == '\n' || *p == '\r') *p = ' ';
  size_t n = strlen(line);
  while (n > 0 && line[n - 1] == ' ')
    line[--n] = '\0';
  const char *red = relish_redact(L, line, n, NULL);
  relish_push_error(L, relish_status_kind(st), "%s", red);
  lua_remove(L, -2);
}

int relish_status_raise(lua_State *L, const char *what, const relish_status *st) {
  relish_status_push(L, what, st);
  return lua_error(L);
}

/* ---- the growable buffer ------------------------------------------------- */

void *relish_grow(void *v, size_t n, size_t *cap, size_t size, size_t first) {
  if (n < *cap) return v;
  size_t c = *cap ? *cap * 2 : first;
  if (c == 0 || c > SIZE_MAX / size) return NULL;
  void *p = realloc(v, c * size);
  if (p != NULL) *cap = c;
  return p;
}

int relish_buf_add(relish_buf *b, const void *p, size_t n) {
  if (n > SIZE_MAX - 1 - b->len) return -1;
  if (b->max != 0 && b->len + n > b->max) return -1;
  size_t need = b->len + n + 1;
  if (need > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
      cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    if (b->max != 0 && cap > b->max + 1 && need <= b->max + 1) cap = b->max + 1;
    char *d = realloc(b->data, cap);
    if (d == NULL) return -1;
    b->data = d;
    b->cap = cap;
  }
  if (n > 0) memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

void relish_buf_free(relish_buf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---- options and suggestions --------------------------------------------- */

void relish_checkopts(lua_State *L, int idx, const char *fname, const char *const *known) {
  if (lua_isnoneornil(L, idx)) return;
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "%s: options must be a table, got %s", fname, luaL_typename(L, idx));
  idx = lua_absindex(L, idx);
  lua_pushnil(L);
  while (lua_next(L, idx) != 0) {
    lua_pop(L, 1);
    if (lua_type(L, -1) != LUA_TSTRING)
      luaL_error(L, "%s: unknown option %s", fname, luaL_tolstring(L, -1, NULL));
    const char *k = lua_tostring(L, -1);
    size_t n = 0;
    while (known[n] != NULL && strcmp(k, known[n]) != 0)
      n++;
    if (known[n] != NULL) continue;
    const char *near = relish_nearest(k, known, n);
    if (near != NULL) luaL_error(L, "%s: unknown option '%s' (did you mean '%s'?)", fname, k, near);
    luaL_error(L, "%s: unknown option '%s'", fname, k);
  }
}

int relish_argexpected(lua_State *L, int idx, const char *fname, const char *what) {
  return luaL_error(L, "%s: expected %s, got %s", fname, what,
                    lua_isnone(L, idx) ? "no value" : luaL_typename(L, idx));
}

const char *relish_checktext(lua_State *L, int idx, const char *fname, size_t *len) {
  if (lua_type(L, idx) != LUA_TSTRING) relish_argexpected(L, idx, fname, "a string");
  return lua_tolstring(L, idx, len);
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  if (la > 64 || lb > 64) return 99;
  size_t row[65];
  for (size_t j = 0; j <= lb; j++)
    row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t cur = row[j];
      size_t best = prev + (a[i - 1] != b[j - 1]);
      if (row[j] + 1 < best) best = row[j] + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      prev = cur;
    }
  }
  return row[lb];
}

const char *relish_nearest(const char *word, const char *const *cands, size_t n) {
  const char *best = NULL;
  size_t bestd = 3, wl = strlen(word);
  for (size_t i = 0; i < n; i++) {
    size_t d = edit_distance(word, cands[i]);
    if (wl >= 2 && strncmp(word, cands[i], wl) == 0) d = 1;
    if (d < bestd) {
      bestd = d;
      best = cands[i];
    }
  }
  return best;
}
