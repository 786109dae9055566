/* effects.c: the fs functions that change the world, and the providers the
 * gate runs for them. Each Lua-called function resolves what it acts on,
 * captures the pre-image into an undo record (a Lua table, capped),
 * describes itself, prepares an fs_op, and ends with relish_effect_run: the
 * gate journals the action and then calls the kind's apply (which acts and
 * raises on failure) or, in a dry-run, its plan (which updates the overlay
 * of plan.c). An effect that would change nothing is not an effect: it
 * returns true without going through the gate. */
#define _GNU_SOURCE
#include "fsint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- shared steps ---- */

static int done(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

/* Pushes a new op for verb (with room for nends directories), path as given. */
static fs_op *op_new(lua_State *L, const char *verb, const char *path, size_t nends) {
  fs_op *op = lua_newuserdatauv(L, sizeof *op + nends * sizeof op->ends[0], 1);
  memset(op, 0, sizeof *op);
  snprintf(op->verb, sizeof op->verb, "%s", verb);
  snprintf(op->path, sizeof op->path, "%s", path);
  op->uid = op->gid = -1;
  op->nends = nends;
  luaL_setmetatable(L, FS_OP_MT);
  return op;
}

static fs_op *check_op(lua_State *L) { return luaL_checkudata(L, 1, FS_OP_MT); }

/* Raises the failure of an op while acting (the gate marks it failed). */
static int op_raise(lua_State *L, const fs_op *op, const relish_status *st) {
  return fs_raise(L, op->verb, op->path, st);
}

/* Pushes a new undo record {v = 1, path = real}. */
static int new_record(lua_State *L, const char *real) {
  lua_createtable(L, 0, 4);
  lua_pushinteger(L, 1);
  lua_setfield(L, -2, "v");
  fs_set_path(L, -1, "path", real, strlen(real));
  return lua_gettop(L);
}

/* rec.dir = {dev, ino}: the directory holding path as the action finds it,
 * so an undo acts there or nowhere (a missing one, only planned, is left out). */
static void record_dir(lua_State *L, int rec, const char *path) {
  char dir[PATH_MAX], base[PATH_MAX];
  struct stat sb;
  fs_split(path, dir, base);
  if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return;
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, (lua_Integer)sb.st_dev);
  lua_setfield(L, -2, "dev");
  lua_pushinteger(L, (lua_Integer)sb.st_ino);
  lua_setfield(L, -2, "ino");
  lua_setfield(L, rec, "dir");
}

/* The pin of an action on real: what it will do whatever the live state,
 * "WHAT at:REAL" (the resolved path last; its sha256 when it is not text or
 * holds the gate's separator). A saved plan compares it for every action. */
#define FS_PIN_MAX (PATH_MAX + 200)
static void make_pin(char out[FS_PIN_MAX], const char *what, const char *real) {
  size_t rl = strlen(real);
  if (fs_is_text(real, rl) && strstr(real, "#pin:") == NULL) {
    snprintf(out, FS_PIN_MAX, "%s at:%s", what, real);
  } else {
    char h[65];
    fs_sha256_hex(real, rl, h);
    snprintf(out, FS_PIN_MAX, "%s at:sha256:%s", what, h);
  }
}

/* Appends " ino:DEV:INO" of what is on disk (not only planned) at the path
 * to the live fingerprint fp: the same content in another file is another
 * state. */
static void fp_ino(char *fp, size_t size, const fs_pre *pre) {
  if (!pre->exists || pre->fresh) return;
  size_t n = strlen(fp);
  snprintf(fp + n, size - n, " ino:%llu:%llu", (unsigned long long)pre->sb.st_dev,
           (unsigned long long)pre->sb.st_ino);
}

/* Pushes a boxed C string (the box lets go of it) and returns the copy;
 * NULL or "" gives NULL with nil pushed. */
static const char *push_text(lua_State *L, relish_box *b, char *text) {
  if (text == NULL || text[0] == '\0') {
    relish_box_drop(b, text);
    lua_pushnil(L);
    return NULL;
  }
  lua_pushstring(L, text);
  relish_box_drop(b, text);
  return lua_tostring(L, -1);
}

/* Real path of an effect's target. In a dry-run a missing parent (that an
 * earlier planned step may create) is no failure: the deepest existing
 * ancestor's real path with the rest appended stands in, and *later is set. */
static int resolve_target(lua_State *L, const char *path, int follow, char real[PATH_MAX],
                          int *later, relish_status *st) {
  *later = 0;
  if (fs_resolve(path, follow, real, st) == 0) return 0;
  if (st->code != ENOENT || !fs_plan_active(L)) return -1;
  *later = 1;
  memset(st, 0, sizeof *st);
  return fs_resolve_partial(path, real, st);
}

/* The journal of the run, its -wal, -shm and -journal files, and every
 * directory holding it are not an effect's to change: a recipe that could
 * remove them would delete its own history and rollback. */
static int guard_journal(const char *real, relish_status *st) {
  const char *j = relish_gate_journal_path();
  if (j == NULL) return 0;
  size_t rl = strlen(real), jl = strlen(j);
  int holds = rl < jl && strncmp(j, real, rl) == 0 && (j[rl] == '/' || (rl == 1 && real[0] == '/'));
  int same = strncmp(real, j, jl) == 0 &&
             (real[jl] == '\0' || strcmp(real + jl, "-wal") == 0 ||
              strcmp(real + jl, "-shm") == 0 || strcmp(real + jl, "-journal") == 0);
  if (!holds && !same) return 0;
  return relish_status_set(st, "permission", "%s is relish's journal%s: effects may not change it",
                           real, holds ? " directory" : "");
}

/* Real path of an effect's target (resolve_target), never the journal. */
static int target_path(lua_State *L, const char *path, int follow, char real[PATH_MAX], int *later,
                       relish_status *st) {
  if (resolve_target(L, path, follow, real, later, st) != 0) return -1;
  return guard_journal(real, st);
}

/* Whole content of the regular file at path, boxed. */
static int slurp(relish_box *b, const char *path, size_t max, char **out, size_t *len,
                 relish_status *st) {
  int fd = relish_open_file(path, 0, "io", st);
  if (fd < 0) return -1;
  int rc = fs_read_fd(fd, max, out, len, st);
  close(fd);
  if (rc == 0) relish_box_add(b, *out, free);
  return rc;
}

static void mode_text(char out[32], int has_old, mode_t old, mode_t mode) {
  if (has_old && old != mode)
    snprintf(out, 32, "mode %04o → %04o", (unsigned)old, (unsigned)mode);
  else
    snprintf(out, 32, "mode %04o", (unsigned)mode);
}

static const char *resolves_note(const char *abs, const char *real, char out[PATH_MAX + 32]) {
  if (strcmp(abs, real) == 0) return "";
  snprintf(out, PATH_MAX + 32, "; resolves to %s", real);
  return out;
}

/* ---- write and copy ---- */

struct put_req {
  const char *verb, *kind;
  const char *path; /* as given */
  const char *src;  /* copy: the source, absolute */
  const char *data; /* NULL: not known yet (dry-run copy of a missing source) */
  size_t len;
  int content; /* stack index of the content (a string or a secret), or 0 */
  int secret, has_mode;
  mode_t mode;
  size_t cap;
  int undo; /* 0: undo = false, irreversible on purpose */
};

/* The content of a put op (its user value), or NULL. Pushes one value. */
static const char *op_content(lua_State *L, int op, size_t *len) {
  *len = 0;
  lua_getiuservalue(L, op, 1);
  if (lua_type(L, -1) == LUA_TSTRING) return lua_tolstring(L, -1, len);
  return relish_tosecret(L, -1, len);
}

int fs_apply_put(lua_State *L) {
  fs_op *op = check_op(L);
  relish_status st = {0};
  size_t len;
  const char *data = op_content(L, 1, &len);
  if (op->later || data == NULL) { /* only a dry-run plans these */
    relish_status_errno(&st, ENOENT, NULL);
    return op_raise(L, op, &st);
  }
  if (fs_put_file(op->real, data, len, op->mode, op->uid, op->gid, &st) != 0)
    return op_raise(L, op, &st);
  return done(L);
}

int fs_plan_put(lua_State *L) {
  fs_op *op = check_op(L);
  size_t len;
  const char *data = op_content(L, 1, &len);
  fs_plan_open(L);
  fs_plan_set(L, op->real, "file", op->mode, data, len, NULL, 1);
  return done(L);
}

static int fs_put(lua_State *L, relish_box *b, const struct put_req *r) {
  relish_status st = {0};
  char abs[PATH_MAX], real[PATH_MAX];
  int later;
  if (r->path[strlen(r->path) - 1] == '/') { /* names a directory */
    relish_status_errno(&st, EISDIR, NULL);
    return fs_raise(L, r->verb, r->path, &st);
  }
  if (fs_abspath(r->path, abs, &st) != 0 || target_path(L, r->path, 1, real, &later, &st) != 0)
    return fs_raise(L, r->verb, r->path, &st);
  fs_pre pre;
  if (fs_pre_stat(L, real, &pre, &st) != 0) return fs_raise(L, r->verb, r->path, &st);
  if (pre.planned && pre.exists && !S_ISREG(pre.sb.st_mode) && fs_live_stat(real, &pre, &st) != 0)
    return fs_raise(L, r->verb, r->path, &st);
  const char *old = NULL;
  size_t oldlen = 0;
  int unread = 0;
  if (pre.exists) {
    if (S_ISDIR(pre.sb.st_mode)) {
      relish_status_errno(&st, EISDIR, NULL);
      return fs_raise(L, r->verb, r->path, &st);
    }
    if (!S_ISREG(pre.sb.st_mode)) {
      relish_status_set(&st, "io", "%s exists and is not a regular file", real);
      return fs_raise(L, r->verb, r->path, &st);
    }
    if ((size_t)pre.sb.st_size > r->cap && r->undo) {
      fs_budget bud = {.cap = r->cap, .used = (size_t)pre.sb.st_size};
      fs_set_too_large(&st, &bud);
      return fs_raise(L, r->verb, r->path, &st);
    }
    if ((size_t)pre.sb.st_size > r->cap && !pre.fresh) {
      unread = 1; /* undo = false: no need to hold a large old file in memory */
      oldlen = (size_t)pre.sb.st_size;
    } else if (pre.fresh) {
      old = pre.content != NULL ? pre.content : "";
      oldlen = pre.len;
    } else {
      char *buf;
      if (slurp(b, real, r->cap, &buf, &oldlen, &st) != 0) {
        if (st.kind != NULL) { /* grew past the cap meanwhile */
          fs_budget bud = {.cap = r->cap, .used = r->cap + 1};
          fs_set_too_large(&st, &bud);
        }
        return fs_raise(L, r->verb, r->path, &st);
      }
      old = buf;
    }
  }
  int present = pre.exists;
  mode_t oldmode = present ? pre.sb.st_mode & 07777 : 0;
  mode_t mode = r->has_mode ? r->mode : present ? oldmode : 0644;
  if (present && !unread && r->data != NULL && oldlen == r->len && oldmode == mode &&
      memcmp(old, r->data, oldlen) == 0)
    return done(L); /* already so: nothing to do */

  int rec = new_record(L, real);
  lua_createtable(L, 0, 8);
  if (unread)
    fs_node_stat(L, -1, &pre.sb);
  else if (present)
    fs_node_file(L, -1, old, oldlen, &pre.sb);
  else {
    lua_pushliteral(L, "absent");
    lua_setfield(L, -2, "type");
  }
  char fp[200], pin[FS_PIN_MAX], pinned[128];
  fs_fingerprint(L, -1, fp, sizeof fp);
  fp_ino(fp, sizeof fp, &pre);
  lua_setfield(L, rec, "before");
  record_dir(L, rec, real);
  char newsum[65] = "?";
  if (r->data != NULL) { /* what the run leaves: its undo replaces only that */
    fs_sha256_hex(r->data, r->len, newsum);
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "file");
    lua_setfield(L, -2, "type");
    lua_pushstring(L, newsum);
    lua_setfield(L, -2, "sha256");
    lua_setfield(L, rec, "after");
  }
  /* no digest of a secret in a plan file, which people pass around */
  snprintf(pinned, sizeof pinned, "new:%s:%04o", r->secret ? "secret" : newsum, (unsigned)mode);
  make_pin(pin, pinned, real);

  char size[32], modes[32], note[PATH_MAX + 32], desc[3 * PATH_MAX + 160];
  fs_human(r->len, size);
  mode_text(modes, present, oldmode, mode);
  const char *what = r->data == NULL ? "source does not exist yet" : size;
  const char *tail = present ? "" : later ? ", in a directory to be made" : ", new file";
  if (r->src != NULL)
    snprintf(desc, sizeof desc, "copy %s to %s (%s, %s%s)%s", r->src, abs, what, modes, tail,
             resolves_note(abs, real, note));
  else
    snprintf(desc, sizeof desc, "write %s (%s, %s%s)%s", abs, what, modes, tail,
             resolves_note(abs, real, note));
  const char *detail = NULL;
  char secretline[96], unreadline[160];
  if (r->secret) {
    snprintf(secretline, sizeof secretline, "secret content: %zu bytes, not shown", r->len);
    detail = secretline;
  } else if (unread) {
    char was[32];
    fs_human(oldlen, was);
    snprintf(unreadline, sizeof unreadline,
             "old content not read or kept: %s (undo = false); new content: %s", was, size);
    detail = unreadline;
  } else if (r->data != NULL) {
    char *d = relish_box_add(b, fs_detail(abs, old, oldlen, present, r->data, r->len, 1), free);
    if (d == NULL) return luaL_error(L, "not enough memory");
    detail = push_text(L, b, d);
  }

  fs_op *op = op_new(L, r->verb, r->path, 0);
  int arg = lua_gettop(L);
  snprintf(op->real, sizeof op->real, "%s", real);
  op->mode = mode;
  op->later = later;
  if (present && pre.sb.st_uid != geteuid()) op->uid = pre.sb.st_uid;
  if (present && pre.sb.st_gid != getegid()) op->gid = pre.sb.st_gid;
  if (r->content != 0) {
    lua_pushvalue(L, r->content);
    lua_setiuservalue(L, arg, 1);
  }
  relish_box_release(b); /* what the action needs is on the stack now */
  return relish_effect_run(L, &(relish_action){.kind = r->kind,
                                               .target = abs,
                                               .describe = desc,
                                               .detail = detail,
                                               .fingerprint = fp,
                                               .pin = pin,
                                               .record = r->undo ? rec : 0,
                                               .arg = arg});
}

static const char *const put_opts[] = {"mode", "max_undo", "undo", NULL};

static void put_options(lua_State *L, int idx, const char *fname, struct put_req *r) {
  relish_checkopts(L, idx, fname, put_opts);
  r->cap = fs_optcap(L, idx, fname);
  r->undo = fs_optundo(L, idx, fname);
  if (lua_type(L, idx) == LUA_TTABLE) {
    if (lua_getfield(L, idx, "mode") != LUA_TNIL) {
      r->has_mode = 1;
      r->mode = fs_checkmode(L, -1, fname);
    }
    lua_pop(L, 1);
  }
}

/* fs.write(path, content, {mode=, max_undo=}) -> true */
int l_fs_write(lua_State *L) {
  struct put_req r = {.verb = "write", .kind = "fs.write", .content = 2};
  r.path = fs_checkpath(L, 1, "fs.write");
  if (lua_type(L, 2) == LUA_TSTRING) {
    r.data = lua_tolstring(L, 2, &r.len);
  } else {
    r.data = relish_tosecret(L, 2, &r.len);
    if (r.data == NULL)
      return relish_argexpected(L, 2, "fs.write", "content as a string or secret");
    r.secret = 1;
  }
  put_options(L, 3, "fs.write", &r);
  lua_settop(L, 3);
  return fs_put(L, relish_box_new(L), &r);
}

/* fs.copy(src, dst, {mode=, max_undo=}) -> true: write(dst, the content of
 * src, {mode = src's mode}). */
int l_fs_copy(lua_State *L) {
  struct put_req r = {.verb = "copy", .kind = "fs.copy"};
  const char *src = fs_checkpath(L, 1, "fs.copy");
  r.path = fs_checkpath(L, 2, "fs.copy");
  put_options(L, 3, "fs.copy", &r);
  lua_settop(L, 3);
  relish_box *b = relish_box_new(L);
  relish_status st = {0};
  char srcabs[PATH_MAX], srcreal[PATH_MAX];
  int later;
  if (fs_abspath(src, srcabs, &st) != 0 || resolve_target(L, src, 1, srcreal, &later, &st) != 0)
    return fs_raise(L, "copy", src, &st);
  r.src = srcabs;
  fs_pre pre;
  if (fs_pre_stat(L, srcreal, &pre, &st) != 0) return fs_raise(L, "copy", src, &st);
  if (pre.planned && !(pre.exists && S_ISREG(pre.sb.st_mode)) &&
      fs_live_stat(srcreal, &pre, &st) != 0)
    return fs_raise(L, "copy", src, &st);
  if (!pre.exists) {
    if (fs_plan_active(L)) return fs_put(L, b, &r); /* made by something the plan cannot see */
    relish_status_errno(&st, ENOENT, NULL);
    return fs_raise(L, "copy", src, &st);
  }
  if (!S_ISREG(pre.sb.st_mode)) {
    if (S_ISDIR(pre.sb.st_mode))
      relish_status_errno(&st, EISDIR, NULL);
    else
      relish_status_set(&st, "io", "not a regular file");
    return fs_raise(L, "copy", src, &st);
  }
  if (pre.fresh) {
    /* a copy on the stack: the overlay may let go of its own while planning */
    lua_pushlstring(L, pre.content ? pre.content : "", pre.len);
  } else {
    char *data;
    size_t len;
    if (slurp(b, srcreal, SIZE_MAX, &data, &len, &st) != 0) return fs_raise(L, "copy", src, &st);
    lua_pushlstring(L, data, len);
    relish_box_drop(b, data);
  }
  r.content = lua_gettop(L);
  r.data = lua_tolstring(L, -1, &r.len);
  if (!r.has_mode) r.mode = pre.sb.st_mode & 07777;
  r.has_mode = 1;
  return fs_put(L, b, &r);
}

/* ---- mkdir ---- */

/* 1 when path is (or, in a dry-run, will be) a directory, 0 when nothing is
 * there, -1 with st set otherwise. */
static int is_dir(lua_State *L, const char *path, relish_status *st) {
  fs_pre pre;
  if (fs_pre_stat(L, path, &pre, st) != 0) return -1;
  if (pre.planned && pre.exists && !S_ISDIR(pre.sb.st_mode) && fs_live_stat(path, &pre, st) != 0)
    return -1;
  if (!pre.exists) return 0;
  struct stat sb = pre.sb;
  if (S_ISLNK(sb.st_mode) && !pre.fresh && stat(path, &sb) != 0)
    return relish_status_set(st, "exists", "%s is a dangling symlink", path);
  if (S_ISDIR(sb.st_mode)) return 1;
  return relish_status_set(st, "exists", "%s exists and is not a directory", path);
}

/* The i-th directory a mkdir op makes, into p. */
static void op_dir(const fs_op *op, size_t i, char p[PATH_MAX]) {
  memcpy(p, op->real, op->ends[i]);
  p[op->ends[i]] = '\0';
}

int fs_apply_mkdir(lua_State *L) {
  fs_op *op = check_op(L);
  relish_status st = {0};
  for (size_t i = 0; i < op->nends; i++) {
    char p[PATH_MAX];
    struct stat sb;
    op_dir(op, i, p);
    if (mkdir(p, 0700) != 0) {
      int e = errno;
      if (e == EEXIST && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
        continue; /* made meanwhile by someone else: leave its mode alone */
      relish_status_errno(&st, e, strcmp(p, op->real) == 0 ? NULL : p);
      return op_raise(L, op, &st);
    }
    if (chmod(p, i + 1 == op->nends ? op->mode : 0755) != 0 || fs_sync_parent(p, &st) != 0) {
      if (st.msg[0] == '\0') relish_status_errno(&st, errno, p);
      return op_raise(L, op, &st);
    }
  }
  return done(L);
}

int fs_plan_mkdir(lua_State *L) {
  fs_op *op = check_op(L);
  fs_plan_open(L);
  for (size_t i = 0; i < op->nends; i++) {
    char p[PATH_MAX];
    op_dir(op, i, p);
    fs_plan_set(L, p, "dir", i + 1 == op->nends ? op->mode : 0755, NULL, 0, NULL, 1);
  }
  return done(L);
}

static const char *const mkdir_opts[] = {"mode", "parents", NULL};

/* fs.mkdir(path, {mode=, parents=}) -> true. An existing directory is left
 * as it is. */
int l_fs_mkdir(lua_State *L) {
  const char *path = fs_checkpath(L, 1, "fs.mkdir");
  relish_checkopts(L, 2, "fs.mkdir", mkdir_opts);
  mode_t mode = 0755;
  int parents = 0;
  if (lua_type(L, 2) == LUA_TTABLE) {
    if (lua_getfield(L, 2, "mode") != LUA_TNIL) mode = fs_checkmode(L, -1, "fs.mkdir");
    lua_getfield(L, 2, "parents");
    parents = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  lua_settop(L, 2);
  relish_status st = {0};
  char abs[PATH_MAX], leaf[PATH_MAX];
  if (fs_abspath(path, abs, &st) != 0) return fs_raise(L, "mkdir", path, &st);
  if (fs_resolve(path, 0, leaf, &st) != 0) {
    if (st.code != ENOENT) return fs_raise(L, "mkdir", path, &st);
    memset(&st, 0, sizeof st);
    if (fs_resolve_partial(path, leaf, &st) != 0) return fs_raise(L, "mkdir", path, &st);
  }
  int d = is_dir(L, leaf, &st);
  if (d != 0) {
    if (d < 0) return fs_raise(L, "mkdir", path, &st);
    return done(L); /* already a directory */
  }
  /* The directories to make are leaf[0..ends[i]), outermost first. */
  size_t ends[PATH_MAX / 2], nends = 0;
  ends[nends++] = strlen(leaf);
  for (size_t cut = ends[0]; parents;) {
    while (cut > 0 && leaf[cut - 1] != '/')
      cut--;
    if (cut <= 1) break; /* reached the root */
    cut--;
    char anc[PATH_MAX];
    memcpy(anc, leaf, cut);
    anc[cut] = '\0';
    if ((d = is_dir(L, anc, &st)) < 0) return fs_raise(L, "mkdir", path, &st);
    if (d == 1) break;
    ends[nends++] = cut;
  }
  for (size_t i = 0, j = nends - 1; i < j; i++, j--) {
    size_t t = ends[i];
    ends[i] = ends[j];
    ends[j] = t;
  }
  if (!parents && !fs_plan_active(L)) {
    char dir[PATH_MAX], base[PATH_MAX];
    struct stat sb;
    fs_split(leaf, dir, base);
    if (stat(dir, &sb) != 0) {
      relish_status_errno(&st, errno, NULL);
      return fs_raise(L, "mkdir", path, &st);
    }
  }

  int rec = new_record(L, leaf);
  lua_createtable(L, (int)nends, 0);
  for (size_t i = 0; i < nends; i++) {
    lua_createtable(L, 0, 1);
    fs_set_path(L, -1, "path", leaf, ends[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, rec, "created");
  {
    char outer[PATH_MAX];
    memcpy(outer, leaf, ends[0]);
    outer[ends[0]] = '\0';
    record_dir(L, rec, outer);
  }
  char fp[PATH_MAX + 16], desc[3 * PATH_MAX], note[PATH_MAX + 32];
  if (nends == 1)
    snprintf(fp, sizeof fp, "absent");
  else
    snprintf(fp, sizeof fp, "absent:%.*s", (int)ends[0], leaf);
  int dl = snprintf(desc, sizeof desc, "mkdir %s (mode %04o", abs, (unsigned)mode);
  if (nends > 1)
    dl += snprintf(desc + dl, sizeof desc - (size_t)dl, ", with %zu missing parent%s from %.*s",
                   nends - 1, nends > 2 ? "s" : "", (int)ends[0], leaf);
  snprintf(desc + dl, sizeof desc - (size_t)dl, ")%s", resolves_note(abs, leaf, note));

  fs_op *op = op_new(L, "mkdir", path, nends);
  snprintf(op->real, sizeof op->real, "%s", leaf);
  op->mode = mode;
  memcpy(op->ends, ends, nends * sizeof ends[0]);
  char pin[FS_PIN_MAX], what[32];
  snprintf(what, sizeof what, "dir:%04o", (unsigned)mode);
  make_pin(pin, what, leaf);
  return relish_effect_run(L, &(relish_action){.kind = "fs.mkdir",
                                               .target = abs,
                                               .describe = desc,
                                               .fingerprint = fp,
                                               .pin = pin,
                                               .record = rec,
                                               .arg = lua_gettop(L)});
}

/* ---- remove ---- */

static int rm_tree(int parent, const char *name, char path[PATH_MAX], int depth,
                   relish_status *st) {
  if (depth > FS_MAX_DEPTH)
    return relish_status_set(st, "io", "%s: deeper than %d levels", path, FS_MAX_DEPTH);
  int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return 0;
    if (errno == ENOTDIR || errno == ELOOP) /* no longer a directory */
      return unlinkat(parent, name, 0) == 0 || errno == ENOENT
                 ? 0
                 : relish_status_errno(st, errno, path);
    return relish_status_errno(st, errno, path);
  }
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    int e = errno;
    close(fd);
    return relish_status_errno(st, e, path);
  }
  size_t plen = strlen(path);
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (plen + 1 + strlen(e->d_name) >= PATH_MAX) {
      rc = relish_status_errno(st, ENAMETOOLONG, path);
      break;
    }
    snprintf(path + plen, PATH_MAX - plen, "/%s", e->d_name);
    int isdir = e->d_type == DT_DIR;
    struct stat sb;
    if (e->d_type == DT_UNKNOWN && fstatat(dirfd(d), e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0)
      isdir = S_ISDIR(sb.st_mode);
    if (isdir)
      rc = rm_tree(dirfd(d), e->d_name, path, depth + 1, st);
    else if (unlinkat(dirfd(d), e->d_name, 0) != 0 && errno != ENOENT)
      rc = relish_status_errno(st, errno, path);
    path[plen] = '\0';
  }
  closedir(d);
  if (rc != 0) return rc;
  if (unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
    return relish_status_errno(st, errno, path);
  return 0;
}

static int remove_path(const char *real, int isdir, relish_status *st) {
  if (!isdir)
    return unlink(real) == 0 || errno == ENOENT ? 0 : relish_status_errno(st, errno, NULL);
  char dir[PATH_MAX], base[PATH_MAX], buf[PATH_MAX];
  fs_split(real, dir, base);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return relish_status_errno(st, errno, dir);
  snprintf(buf, sizeof buf, "%s", real);
  int rc = rm_tree(dfd, base, buf, 0, st);
  close(dfd);
  return rc;
}

static int dir_is_empty(const char *path, relish_status *st) {
  DIR *d = opendir(path);
  if (d == NULL) return relish_status_errno(st, errno, NULL);
  struct dirent *e;
  int empty = 1;
  while (empty && (e = readdir(d)) != NULL)
    empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
  closedir(d);
  return empty;
}

/* Lines naming what a tree removal takes away, at most FS_LIST_MAX of them. */
#define FS_LIST_MAX 200
static void list_tree(lua_State *L, fs_buf *o, int node, char path[PATH_MAX], int *lines) {
  luaL_checkstack(L, 6, "directory tree too deep");
  lua_getfield(L, node, "type");
  const char *t = lua_isstring(L, -1) ? lua_tostring(L, -1) : "?";
  int dir = strcmp(t, "dir") == 0;
  if ((*lines)++ < FS_LIST_MAX) {
    char hs[32] = "";
    lua_getfield(L, node, "size");
    if (lua_isinteger(L, -1)) fs_human((size_t)lua_tointeger(L, -1), hs);
    lua_pop(L, 1);
    fs_buf_printf(o, "- %s%s (%s%s%s)\n", path, dir ? "/" : "", dir ? "directory" : t,
                  hs[0] ? ", " : "", hs);
  }
  lua_pop(L, 1);
  if (lua_getfield(L, node, "entries") == LUA_TTABLE) {
    int entries = lua_gettop(L);
    size_t plen = strlen(path);
    for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, entries); i <= n; i++) {
      lua_rawgeti(L, entries, i);
      lua_getfield(L, -1, "name");
      const char *name = lua_isstring(L, -1) ? lua_tostring(L, -1) : "(binary name)";
      snprintf(path + plen, PATH_MAX - plen, "/%s", name);
      lua_pop(L, 1);
      list_tree(L, o, lua_gettop(L), path, lines);
      path[plen] = '\0';
      lua_settop(L, entries);
    }
  }
  lua_pop(L, 1);
}

static char *remove_detail(lua_State *L, const char *abs, int node, int isdir) {
  fs_buf o = {0};
  if (isdir) {
    char path[PATH_MAX];
    int lines = 0;
    snprintf(path, sizeof path, "%s", abs);
    list_tree(L, &o, node, path, &lines);
    if (lines > FS_LIST_MAX) fs_buf_printf(&o, "… and %d more\n", lines - FS_LIST_MAX);
    return fs_buf_finish(&o);
  }
  int top = lua_gettop(L);
  lua_getfield(L, node, "content");
  lua_getfield(L, node, "size");
  lua_getfield(L, node, "sha256");
  size_t clen;
  const char *content =
      lua_type(L, top + 1) == LUA_TSTRING ? lua_tolstring(L, top + 1, &clen) : NULL;
  char *text = NULL;
  if (content != NULL && clen <= FS_DIFF_MAX) {
    text = fs_diff(content, clen, abs, "", 0, "/dev/null");
  } else if (lua_isinteger(L, top + 2) && lua_type(L, top + 3) == LUA_TSTRING) {
    char hs[32];
    fs_human((size_t)lua_tointeger(L, top + 2), hs);
    fs_buf_printf(&o, "binary or large content removed: %s, sha256 %.16s…", hs,
                  lua_tostring(L, top + 3));
    text = fs_buf_finish(&o);
  }
  lua_settop(L, top);
  return text;
}

/* Pushes the pre-image of something a dry-run planned to create. */
static int planned_node(lua_State *L, const fs_pre *pre, fs_budget *bud, relish_status *st) {
  if (S_ISREG(pre->sb.st_mode)) {
    bud->files++;
    bud->used = pre->len;
    if (pre->len > bud->cap) return fs_set_too_large(st, bud);
  }
  lua_createtable(L, 0, 8);
  if (S_ISREG(pre->sb.st_mode)) {
    fs_node_file(L, -1, pre->content ? pre->content : "", pre->len, &pre->sb);
  } else if (S_ISLNK(pre->sb.st_mode)) {
    fs_node_link(L, -1, pre->target ? pre->target : "");
  } else {
    lua_pushliteral(L, "dir");
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, pre->sb.st_mode & 07777);
    lua_setfield(L, -2, "mode");
    lua_pushinteger(L, (lua_Integer)pre->sb.st_uid);
    lua_setfield(L, -2, "uid");
    lua_pushinteger(L, (lua_Integer)pre->sb.st_gid);
    lua_setfield(L, -2, "gid");
  }
  return 0;
}

int fs_apply_remove(lua_State *L) {
  fs_op *op = check_op(L);
  relish_status st = {0};
  if (remove_path(op->real, op->isdir, &st) != 0 || fs_sync_parent(op->real, &st) != 0)
    return op_raise(L, op, &st);
  return done(L);
}

int fs_plan_remove(lua_State *L) {
  fs_op *op = check_op(L);
  fs_plan_open(L);
  fs_plan_set(L, op->real, "absent", 0, NULL, 0, NULL, 1);
  return done(L);
}

static const char *const remove_opts[] = {"recursive", "max_undo", "undo", NULL};

/* fs.remove(path, {recursive=, max_undo=}) -> true. Nothing there is
 * success. Links are removed, never followed. */
int l_fs_remove(lua_State *L) {
  const char *path = fs_checkpath(L, 1, "fs.remove");
  relish_checkopts(L, 2, "fs.remove", remove_opts);
  int recursive = 0;
  fs_budget bud = {.cap = fs_optcap(L, 2, "fs.remove")};
  int undo = fs_optundo(L, 2, "fs.remove");
  if (!undo) { /* no pre-image: the fingerprint is the tree's shape, not its content */
    bud.no_content = 1;
    bud.cap = SIZE_MAX;
  }
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_getfield(L, 2, "recursive");
    recursive = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  relish_box *b = relish_box_new(L);
  relish_status st = {0};
  char abs[PATH_MAX], real[PATH_MAX], note[PATH_MAX + 32];
  int later;
  if (fs_abspath(path, abs, &st) != 0) return fs_raise(L, "remove", path, &st);
  if (target_path(L, path, 0, real, &later, &st) != 0) {
    if (st.code == ENOENT || st.code == ENOTDIR) return done(L); /* nothing there */
    return fs_raise(L, "remove", path, &st);
  }
  fs_pre pre;
  if (strcmp(real, "/") == 0) return luaL_error(L, "fs.remove: refusing to remove /");
  if (fs_pre_stat(L, real, &pre, &st) != 0) return fs_raise(L, "remove", path, &st);
  if (!pre.exists) return done(L);
  int isdir = S_ISDIR(pre.sb.st_mode);
  if (isdir && !recursive && !pre.fresh) {
    int empty = dir_is_empty(real, &st);
    if (empty <= 0) {
      if (empty == 0)
        relish_status_set(&st, "exists", "%s (use recursive = true for a tree)",
                          strerror(ENOTEMPTY));
      return fs_raise(L, "remove", path, &st);
    }
  }
  int rec = new_record(L, real);
  if ((pre.fresh ? planned_node(L, &pre, &bud, &st) : fs_capture(L, b, real, 1, &bud, &st)) != 0)
    return fs_raise(L, "remove", path, &st);
  int node = lua_gettop(L);
  if (pre.planned && !pre.fresh) { /* a planned chmod of it */
    lua_pushinteger(L, pre.sb.st_mode & 07777);
    lua_setfield(L, node, "mode");
  }
  lua_pushvalue(L, node);
  lua_setfield(L, rec, "before");
  record_dir(L, rec, real);
  char fp[PATH_MAX + 80], desc[2 * PATH_MAX + 200], size[32], pin[FS_PIN_MAX];
  fs_fingerprint(L, node, fp, sizeof fp);
  fp_ino(fp, sizeof fp, &pre);
  make_pin(pin, "absent", real);
  fs_human(bud.used, size);
  if (S_ISLNK(pre.sb.st_mode)) {
    lua_getfield(L, node, "target");
    snprintf(desc, sizeof desc, "remove %s (link to %s)%s", abs,
             lua_isstring(L, -1) ? lua_tostring(L, -1) : "?", resolves_note(abs, real, note));
    lua_pop(L, 1);
  } else if (!isdir) {
    snprintf(desc, sizeof desc, "remove %s (file, %s, mode %04o)%s", abs, size,
             (unsigned)(pre.sb.st_mode & 07777), resolves_note(abs, real, note));
  } else if (bud.files + bud.dirs + bud.links == 0) {
    snprintf(desc, sizeof desc, "remove %s (empty directory)%s", abs,
             resolves_note(abs, real, note));
  } else {
    snprintf(desc, sizeof desc,
             "remove %s (directory tree: %zu file%s, %zu director%s, %zu link%s, %s)%s", abs,
             bud.files, bud.files == 1 ? "" : "s", bud.dirs, bud.dirs == 1 ? "y" : "ies", bud.links,
             bud.links == 1 ? "" : "s", size, resolves_note(abs, real, note));
  }
  const char *detail = push_text(L, b, relish_box_add(b, remove_detail(L, abs, node, isdir), free));

  fs_op *op = op_new(L, "remove", path, 0);
  snprintf(op->real, sizeof op->real, "%s", real);
  op->isdir = isdir;
  relish_box_release(b);
  return relish_effect_run(L, &(relish_action){.kind = "fs.remove",
                                               .target = abs,
                                               .describe = desc,
                                               .detail = detail,
                                               .fingerprint = fp,
                                               .pin = pin,
                                               .record = undo ? rec : 0,
                                               .arg = lua_gettop(L)});
}

/* ---- symlink ---- */

int fs_apply_symlink(lua_State *L) {
  fs_op *op = check_op(L);
  relish_status st = {0};
  if (op->later) {
    relish_status_errno(&st, ENOENT, NULL);
    return op_raise(L, op, &st);
  }
  if (fs_put_link(op->real, op->target, &st) != 0) return op_raise(L, op, &st);
  return done(L);
}

int fs_plan_symlink(lua_State *L) {
  fs_op *op = check_op(L);
  fs_plan_open(L);
  fs_plan_set(L, op->real, "link", 0777, NULL, 0, op->target, 1);
  return done(L);
}

/* fs.symlink(target, path) -> true: creates the link, or atomically
 * replaces an existing link; any other file there is an error. */
int l_fs_symlink(lua_State *L) {
  size_t tlen;
  const char *target = relish_checktext(L, 1, "fs.symlink", &tlen);
  if (tlen == 0 || strlen(target) != tlen || tlen >= PATH_MAX)
    return luaL_error(L, "fs.symlink: target must be a non-empty string without NUL bytes");
  const char *path = fs_checkpath(L, 2, "fs.symlink");
  lua_settop(L, 2);
  relish_status st = {0};
  char abs[PATH_MAX], real[PATH_MAX], old[PATH_MAX];
  int later;
  if (fs_abspath(path, abs, &st) != 0 || target_path(L, path, 0, real, &later, &st) != 0)
    return fs_raise(L, "symlink", path, &st);
  fs_pre pre;
  if (fs_pre_stat(L, real, &pre, &st) != 0) return fs_raise(L, "symlink", path, &st);
  if (pre.planned && pre.exists && !S_ISLNK(pre.sb.st_mode) && fs_live_stat(real, &pre, &st) != 0)
    return fs_raise(L, "symlink", path, &st);
  if (pre.exists) {
    if (!S_ISLNK(pre.sb.st_mode)) {
      relish_status_set(&st, "exists", "exists and is not a symlink");
      return fs_raise(L, "symlink", path, &st);
    }
    if (pre.fresh) {
      snprintf(old, sizeof old, "%s", pre.target ? pre.target : "");
    } else {
      ssize_t n = readlink(real, old, sizeof old - 1);
      if (n < 0) {
        relish_status_errno(&st, errno, NULL);
        return fs_raise(L, "symlink", path, &st);
      }
      old[n] = '\0';
    }
    if (strcmp(old, target) == 0) return done(L);
  }
  int rec = new_record(L, real);
  lua_createtable(L, 0, 2);
  if (pre.exists) {
    fs_node_link(L, -1, old);
  } else {
    lua_pushliteral(L, "absent");
    lua_setfield(L, -2, "type");
  }
  char fp[PATH_MAX + 80], desc[3 * PATH_MAX + 64], note[PATH_MAX + 32], pin[FS_PIN_MAX];
  char what[96], th[65];
  fs_fingerprint(L, -1, fp, sizeof fp);
  fp_ino(fp, sizeof fp, &pre);
  fs_sha256_hex(target, strlen(target), th);
  snprintf(what, sizeof what, "link:%s", th);
  make_pin(pin, what, real);
  lua_setfield(L, rec, "before");
  record_dir(L, rec, real);
  lua_createtable(L, 0, 2);
  fs_node_link(L, -1, target);
  lua_setfield(L, rec, "after");
  snprintf(desc, sizeof desc, "symlink %s → %s (%s%s)%s", abs, target,
           pre.exists ? "was " : "new link", pre.exists ? old : "", resolves_note(abs, real, note));

  fs_op *op = op_new(L, "symlink", path, 0);
  snprintf(op->real, sizeof op->real, "%s", real);
  snprintf(op->target, sizeof op->target, "%s", target);
  op->later = later;
  return relish_effect_run(L, &(relish_action){.kind = "fs.symlink",
                                               .target = abs,
                                               .describe = desc,
                                               .fingerprint = fp,
                                               .pin = pin,
                                               .record = rec,
                                               .arg = lua_gettop(L)});
}

/* ---- chmod ---- */

int fs_apply_chmod(lua_State *L) {
  fs_op *op = check_op(L);
  relish_status st = {0};
  if (op->later) {
    relish_status_errno(&st, ENOENT, NULL);
    return op_raise(L, op, &st);
  }
  if (chmod(op->real, op->mode) != 0) {
    relish_status_errno(&st, errno, NULL);
    return op_raise(L, op, &st);
  }
  return done(L);
}

int fs_plan_chmod(lua_State *L) {
  fs_op *op = check_op(L);
  fs_plan_open(L);
  if (op->exists) fs_plan_set_mode(L, op->real, &op->sb, op->mode);
  return done(L);
}

/* fs.chmod(path, mode) -> true (follows symlinks, as chmod(2)). */
int l_fs_chmod(lua_State *L) {
  const char *path = fs_checkpath(L, 1, "fs.chmod");
  if (lua_isnoneornil(L, 2)) return luaL_error(L, "fs.chmod: mode expected");
  mode_t mode = fs_checkmode(L, 2, "fs.chmod");
  lua_settop(L, 2);
  relish_status st = {0};
  char abs[PATH_MAX], real[PATH_MAX], note[PATH_MAX + 32];
  int later;
  if (fs_abspath(path, abs, &st) != 0 || target_path(L, path, 1, real, &later, &st) != 0)
    return fs_raise(L, "chmod", path, &st);
  fs_pre pre;
  if (fs_pre_stat(L, real, &pre, &st) != 0) return fs_raise(L, "chmod", path, &st);
  if (pre.planned && !pre.exists && fs_live_stat(real, &pre, &st) != 0)
    return fs_raise(L, "chmod", path, &st);
  if (!pre.exists) {
    if (!fs_plan_active(L)) {
      relish_status_errno(&st, ENOENT, NULL);
      return fs_raise(L, "chmod", path, &st);
    }
    later = 1; /* made by something the plan cannot see */
  }
  mode_t old = pre.exists ? pre.sb.st_mode & 07777 : 0;
  if (pre.exists && old == mode) return done(L);
  int rec = new_record(L, real);
  if (!pre.exists)
    lua_pushboolean(L, 1);
  else
    lua_pushinteger(L, old);
  lua_setfield(L, rec, pre.exists ? "mode" : "absent");
  lua_pushinteger(L, mode);
  lua_setfield(L, rec, "after_mode");
  record_dir(L, rec, real);
  char fp[128], desc[2 * PATH_MAX + 64], pin[FS_PIN_MAX], what[32];
  snprintf(what, sizeof what, "mode:%04o", (unsigned)mode);
  make_pin(pin, what, real);
  if (!pre.exists)
    snprintf(fp, sizeof fp, "absent");
  else
    snprintf(fp, sizeof fp, "%s:%04o",
             S_ISREG(pre.sb.st_mode)   ? "file"
             : S_ISDIR(pre.sb.st_mode) ? "dir"
                                       : "other",
             (unsigned)old);
  fp_ino(fp, sizeof fp, &pre);
  if (!pre.exists)
    snprintf(desc, sizeof desc, "chmod %s %04o (does not exist yet)%s", abs, (unsigned)mode,
             resolves_note(abs, real, note));
  else
    snprintf(desc, sizeof desc, "chmod %s %04o → %04o%s", abs, (unsigned)old, (unsigned)mode,
             resolves_note(abs, real, note));

  fs_op *op = op_new(L, "chmod", path, 0);
  snprintf(op->real, sizeof op->real, "%s", real);
  op->mode = mode;
  op->later = later;
  op->exists = pre.exists;
  op->sb = pre.sb;
  return relish_effect_run(L, &(relish_action){.kind = "fs.chmod",
                                               .target = abs,
                                               .describe = desc,
                                               .fingerprint = fp,
                                               .pin = pin,
                                               .record = rec,
                                               .arg = lua_gettop(L)});
}
