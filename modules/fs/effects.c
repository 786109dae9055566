/* effects.c: the fs functions that change the world. Each one resolves what
 * it acts on, captures the pre-image into an undo record (capped), describes
 * itself, asks the gate, and only then acts. An effect that would change
 * nothing is not an effect: it returns true without asking the gate. */
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

static int planned(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

/* Ask the gate (which redacts all it keeps or shows); an empty detail is none. */
static int ask_gate(lua_State *L, const char *kind, const char *target, const char *describe,
                    const char *detail, const char *undo, const char *fp, lua_Integer *id) {
  const char *dt = detail != NULL && detail[0] != '\0' ? detail : NULL;
  relish_effect e = {.kind = kind,
                     .target = target,
                     .describe = describe,
                     .detail = dt,
                     .undo = undo,
                     .fingerprint = fp};
  return relish_gate_begin(L, &e, id);
}

/* The action was allowed but failed: tell the gate, return nil, err. */
static int acted_fail(lua_State *L, lua_Integer id, const char *verb, const char *path,
                      const fs_status *st) {
  fs_fail(L, verb, path, st);
  lua_getfield(L, -1, "message");
  relish_gate_failed(L, id, lua_tostring(L, -1));
  lua_pop(L, 1);
  return 2;
}

static cJSON *new_record(lua_State *L, fs_box *b, const char *path) {
  cJSON *rec = fs_box_json(b, cJSON_CreateObject());
  if (rec == NULL || cJSON_AddNumberToObject(rec, "v", 1) == NULL ||
      fs_json_bytes(rec, "path", path, strlen(path)) != 0)
    luaL_error(L, "not enough memory");
  return rec;
}

static const char *record_text(lua_State *L, fs_box *b, const cJSON *rec) {
  char *t = fs_box_text(b, cJSON_PrintUnformatted(rec));
  if (t == NULL) luaL_error(L, "not enough memory");
  return t;
}

/* Real path of an effect's target. In a dry-run a missing parent (that an
 * earlier planned step may create) is no failure: the deepest existing
 * ancestor's real path with the rest appended stands in, and *later is set. */
static int target_path(lua_State *L, const char *path, int follow, char real[PATH_MAX], int *later,
                       fs_status *st) {
  *later = 0;
  if (fs_resolve(path, follow, real, st) == 0) return 0;
  if (st->code != ENOENT || !fs_plan_active(L)) return -1;
  *later = 1;
  memset(st, 0, sizeof *st);
  return fs_resolve_partial(path, real, st);
}

/* Whole content of the regular file at path, boxed. */
static int slurp(fs_box *b, const char *path, size_t max, char **out, size_t *len, fs_status *st) {
  b->fd[0] = open(path, O_RDONLY | O_CLOEXEC);
  if (b->fd[0] < 0) return fs_set_errno(st, errno, NULL);
  int rc = fs_read_fd(b->fd[0], max, out, len, st);
  close(b->fd[0]);
  b->fd[0] = -1;
  if (rc == 0) fs_box_mem(b, *out);
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
  int secret, has_mode;
  mode_t mode;
  size_t cap;
};

static int fs_put(lua_State *L, fs_box *b, const struct put_req *r) {
  fs_status st = {0};
  char abs[PATH_MAX], real[PATH_MAX];
  int later;
  if (r->path[strlen(r->path) - 1] == '/') { /* names a directory */
    fs_set_errno(&st, EISDIR, NULL);
    return fs_fail(L, r->verb, r->path, &st);
  }
  if (fs_abspath(r->path, abs, &st) != 0 || target_path(L, r->path, 1, real, &later, &st) != 0)
    return fs_fail(L, r->verb, r->path, &st);
  fs_pre pre;
  if (fs_pre_stat(L, real, &pre, &st) != 0) return fs_fail(L, r->verb, r->path, &st);
  if (pre.planned && pre.exists && !S_ISREG(pre.sb.st_mode) && fs_live_stat(real, &pre, &st) != 0)
    return fs_fail(L, r->verb, r->path, &st);
  const char *old = NULL;
  size_t oldlen = 0;
  if (pre.exists) {
    if (S_ISDIR(pre.sb.st_mode)) {
      fs_set_errno(&st, EISDIR, NULL);
      return fs_fail(L, r->verb, r->path, &st);
    }
    if (!S_ISREG(pre.sb.st_mode)) {
      fs_set(&st, 0, "%s exists and is not a regular file", real);
      return fs_fail(L, r->verb, r->path, &st);
    }
    if ((size_t)pre.sb.st_size > r->cap) {
      fs_budget bud = {.cap = r->cap, .used = (size_t)pre.sb.st_size};
      fs_set_too_large(&st, &bud);
      return fs_fail(L, r->verb, r->path, &st);
    }
    if (pre.fresh) {
      old = pre.content != NULL ? pre.content : "";
      oldlen = pre.len;
    } else {
      char *buf;
      if (slurp(b, real, r->cap, &buf, &oldlen, &st) != 0) {
        if (st.kind != NULL) { /* grew past the cap meanwhile */
          fs_budget bud = {.cap = r->cap, .used = r->cap + 1};
          fs_set_too_large(&st, &bud);
        }
        return fs_fail(L, r->verb, r->path, &st);
      }
      old = buf;
    }
  }
  int present = pre.exists;
  mode_t oldmode = present ? pre.sb.st_mode & 07777 : 0;
  mode_t mode = r->has_mode ? r->mode : present ? oldmode : 0644;
  if (present && r->data != NULL && oldlen == r->len && oldmode == mode &&
      memcmp(old, r->data, oldlen) == 0)
    return planned(L); /* already so: nothing to do */

  cJSON *rec = new_record(L, b, real);
  cJSON *before = cJSON_AddObjectToObject(rec, "before");
  if (before == NULL || (present ? fs_node_file(L, before, old, oldlen, &pre.sb)
                                 : cJSON_AddStringToObject(before, "type", "absent") == NULL))
    return luaL_error(L, "not enough memory");
  const char *undo = record_text(L, b, rec);
  char fp[160];
  fs_fingerprint(before, fp, sizeof fp);

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
  char secretline[96];
  if (r->secret) {
    snprintf(secretline, sizeof secretline, "secret content: %zu bytes, not shown", r->len);
    detail = secretline;
  } else if (r->data != NULL) {
    detail = fs_box_mem(b, fs_detail(abs, old, oldlen, present, r->data, r->len, 1));
    if (detail == NULL) return luaL_error(L, "not enough memory");
  }

  lua_Integer id;
  if (ask_gate(L, r->kind, abs, desc, detail, undo, fp, &id) == RELISH_GATE_PLANNED) {
    fs_plan_note_id(L, id);
    fs_plan_set(L, real, "file", mode, r->data, r->len, NULL, 1);
    return planned(L);
  }
  if (later || r->data == NULL) { /* only a dry-run gets this far with these */
    fs_set_errno(&st, ENOENT, NULL);
    return acted_fail(L, id, r->verb, r->path, &st);
  }
  long long uid = -1, gid = -1;
  if (present && pre.sb.st_uid != geteuid()) uid = pre.sb.st_uid;
  if (present && pre.sb.st_gid != getegid()) gid = pre.sb.st_gid;
  if (fs_put_file(b, real, r->data, r->len, mode, uid, gid, &st) != 0)
    return acted_fail(L, id, r->verb, r->path, &st);
  relish_gate_done(L, id, NULL);
  fs_box_release(b);
  return planned(L);
}

static const char *const put_opts[] = {"mode", "max_undo", NULL};

static void put_options(lua_State *L, int idx, const char *fname, struct put_req *r) {
  fs_checkopts(L, idx, fname, put_opts);
  r->cap = fs_optcap(L, idx, fname);
  if (lua_type(L, idx) == LUA_TTABLE) {
    if (lua_getfield(L, idx, "mode") != LUA_TNIL) {
      r->has_mode = 1;
      r->mode = fs_checkmode(L, -1, fname);
    }
    lua_pop(L, 1);
  }
}

/* fs.write(path, content, {mode=, max_undo=}) -> true | nil, err */
int l_fs_write(lua_State *L) {
  struct put_req r = {.verb = "write", .kind = "fs.write"};
  r.path = fs_checkpath(L, 1, "fs.write");
  if (lua_type(L, 2) == LUA_TSTRING) {
    r.data = lua_tolstring(L, 2, &r.len);
  } else {
    r.data = relish_tosecret(L, 2, &r.len);
    if (r.data == NULL) return luaL_typeerror(L, 2, "string or secret");
    r.secret = 1;
  }
  put_options(L, 3, "fs.write", &r);
  lua_settop(L, 3);
  return fs_put(L, fs_box_new(L), &r);
}

/* fs.copy(src, dst, {mode=, max_undo=}) -> true | nil, err: write(dst, the
 * content of src, {mode = src's mode}). */
int l_fs_copy(lua_State *L) {
  struct put_req r = {.verb = "copy", .kind = "fs.copy"};
  const char *src = fs_checkpath(L, 1, "fs.copy");
  r.path = fs_checkpath(L, 2, "fs.copy");
  put_options(L, 3, "fs.copy", &r);
  lua_settop(L, 3);
  fs_box *b = fs_box_new(L);
  fs_status st = {0};
  char srcabs[PATH_MAX], srcreal[PATH_MAX];
  int later;
  if (fs_abspath(src, srcabs, &st) != 0 || target_path(L, src, 1, srcreal, &later, &st) != 0)
    return fs_fail(L, "copy", src, &st);
  r.src = srcabs;
  fs_pre pre;
  if (fs_pre_stat(L, srcreal, &pre, &st) != 0) return fs_fail(L, "copy", src, &st);
  if (pre.planned && !(pre.exists && S_ISREG(pre.sb.st_mode)) &&
      fs_live_stat(srcreal, &pre, &st) != 0)
    return fs_fail(L, "copy", src, &st);
  if (!pre.exists) {
    if (fs_plan_active(L)) return fs_put(L, b, &r); /* made by something the plan cannot see */
    fs_set_errno(&st, ENOENT, NULL);
    return fs_fail(L, "copy", src, &st);
  }
  if (!S_ISREG(pre.sb.st_mode)) {
    if (S_ISDIR(pre.sb.st_mode))
      fs_set_errno(&st, EISDIR, NULL);
    else
      fs_set(&st, 0, "not a regular file");
    return fs_fail(L, "copy", src, &st);
  }
  if (pre.fresh) {
    /* a copy on the stack: the overlay may let go of its own while planning */
    lua_pushlstring(L, pre.content ? pre.content : "", pre.len);
    r.data = lua_tolstring(L, -1, &r.len);
  } else {
    char *data;
    if (slurp(b, srcreal, SIZE_MAX, &data, &r.len, &st) != 0) return fs_fail(L, "copy", src, &st);
    r.data = data;
  }
  if (!r.has_mode) r.mode = pre.sb.st_mode & 07777;
  r.has_mode = 1;
  return fs_put(L, b, &r);
}

/* ---- mkdir ---- */

/* 1 when path is (or, in a dry-run, will be) a directory, 0 when nothing is
 * there, -1 with st set otherwise. */
static int is_dir(lua_State *L, const char *path, fs_status *st) {
  fs_pre pre;
  if (fs_pre_stat(L, path, &pre, st) != 0) return -1;
  if (pre.planned && pre.exists && !S_ISDIR(pre.sb.st_mode) && fs_live_stat(path, &pre, st) != 0)
    return -1;
  if (!pre.exists) return 0;
  struct stat sb = pre.sb;
  if (S_ISLNK(sb.st_mode) && !pre.fresh && stat(path, &sb) != 0)
    return fs_set(st, EEXIST, "%s is a dangling symlink", path);
  if (S_ISDIR(sb.st_mode)) return 1;
  return fs_set(st, EEXIST, "%s exists and is not a directory", path);
}

static const char *const mkdir_opts[] = {"mode", "parents", NULL};

/* fs.mkdir(path, {mode=, parents=}) -> true | nil, err. An existing
 * directory is left as it is. */
int l_fs_mkdir(lua_State *L) {
  const char *path = fs_checkpath(L, 1, "fs.mkdir");
  fs_checkopts(L, 2, "fs.mkdir", mkdir_opts);
  mode_t mode = 0755;
  int parents = 0;
  if (lua_type(L, 2) == LUA_TTABLE) {
    if (lua_getfield(L, 2, "mode") != LUA_TNIL) mode = fs_checkmode(L, -1, "fs.mkdir");
    lua_getfield(L, 2, "parents");
    parents = lua_toboolean(L, -1);
    lua_pop(L, 2);
  }
  lua_settop(L, 2);
  fs_box *b = fs_box_new(L);
  fs_status st = {0};
  char abs[PATH_MAX], leaf[PATH_MAX];
  if (fs_abspath(path, abs, &st) != 0) return fs_fail(L, "mkdir", path, &st);
  if (fs_resolve(path, 0, leaf, &st) != 0) {
    if (st.code != ENOENT) return fs_fail(L, "mkdir", path, &st);
    memset(&st, 0, sizeof st);
    if (fs_resolve_partial(path, leaf, &st) != 0) return fs_fail(L, "mkdir", path, &st);
  }
  int d = is_dir(L, leaf, &st);
  if (d != 0) {
    if (d < 0) return fs_fail(L, "mkdir", path, &st);
    return planned(L); /* already a directory */
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
    if ((d = is_dir(L, anc, &st)) < 0) return fs_fail(L, "mkdir", path, &st);
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
      fs_set_errno(&st, errno, NULL);
      return fs_fail(L, "mkdir", path, &st);
    }
  }

  cJSON *rec = new_record(L, b, leaf);
  cJSON *created = cJSON_AddArrayToObject(rec, "created");
  if (created == NULL) return luaL_error(L, "not enough memory");
  for (size_t i = 0; i < nends; i++) {
    cJSON *o = cJSON_CreateObject();
    if (o == NULL || !cJSON_AddItemToArray(created, o) || fs_json_bytes(o, "path", leaf, ends[i]))
      return luaL_error(L, "not enough memory");
  }
  const char *undo = record_text(L, b, rec);
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

  lua_Integer id;
  if (ask_gate(L, "fs.mkdir", abs, desc, NULL, undo, fp, &id) == RELISH_GATE_PLANNED) {
    fs_plan_note_id(L, id);
    for (size_t i = 0; i < nends; i++) {
      char p[PATH_MAX];
      memcpy(p, leaf, ends[i]);
      p[ends[i]] = '\0';
      fs_plan_set(L, p, "dir", i + 1 == nends ? mode : 0755, NULL, 0, NULL, 1);
    }
    return planned(L);
  }
  for (size_t i = 0; i < nends; i++) {
    char p[PATH_MAX];
    struct stat sb;
    memcpy(p, leaf, ends[i]);
    p[ends[i]] = '\0';
    if (mkdir(p, 0700) != 0) {
      int e = errno;
      if (e == EEXIST && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode))
        continue; /* made meanwhile by someone else: leave its mode alone */
      fs_set_errno(&st, e, strcmp(p, leaf) == 0 ? NULL : p);
      return acted_fail(L, id, "mkdir", path, &st);
    }
    if (chmod(p, i + 1 == nends ? mode : 0755) != 0 || fs_sync_parent(p, &st) != 0) {
      if (st.msg[0] == '\0') fs_set_errno(&st, errno, p);
      return acted_fail(L, id, "mkdir", path, &st);
    }
  }
  relish_gate_done(L, id, NULL);
  fs_box_release(b);
  return planned(L);
}

/* ---- remove ---- */

static int rm_tree(int parent, const char *name, char path[PATH_MAX], int depth, fs_status *st) {
  if (depth > FS_MAX_DEPTH)
    return fs_set(st, ELOOP, "%s: deeper than %d levels", path, FS_MAX_DEPTH);
  int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return 0;
    if (errno == ENOTDIR || errno == ELOOP) /* no longer a directory */
      return unlinkat(parent, name, 0) == 0 || errno == ENOENT ? 0 : fs_set_errno(st, errno, path);
    return fs_set_errno(st, errno, path);
  }
  DIR *d = fdopendir(fd);
  if (d == NULL) {
    int e = errno;
    close(fd);
    return fs_set_errno(st, e, path);
  }
  size_t plen = strlen(path);
  int rc = 0;
  struct dirent *e;
  while (rc == 0 && (e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (plen + 1 + strlen(e->d_name) >= PATH_MAX) {
      rc = fs_set_errno(st, ENAMETOOLONG, path);
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
      rc = fs_set_errno(st, errno, path);
    path[plen] = '\0';
  }
  closedir(d);
  if (rc != 0) return rc;
  if (unlinkat(parent, name, AT_REMOVEDIR) != 0 && errno != ENOENT)
    return fs_set_errno(st, errno, path);
  return 0;
}

static int remove_path(const char *real, int isdir, fs_status *st) {
  if (!isdir) return unlink(real) == 0 || errno == ENOENT ? 0 : fs_set_errno(st, errno, NULL);
  char dir[PATH_MAX], base[PATH_MAX], buf[PATH_MAX];
  fs_split(real, dir, base);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return fs_set_errno(st, errno, dir);
  snprintf(buf, sizeof buf, "%s", real);
  int rc = rm_tree(dfd, base, buf, 0, st);
  close(dfd);
  return rc;
}

static int dir_is_empty(const char *path, fs_status *st) {
  DIR *d = opendir(path);
  if (d == NULL) return fs_set_errno(st, errno, NULL);
  struct dirent *e;
  int empty = 1;
  while (empty && (e = readdir(d)) != NULL)
    empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
  closedir(d);
  return empty;
}

/* Lines naming what a tree removal takes away, at most FS_LIST_MAX of them. */
#define FS_LIST_MAX 200
static void list_tree(fs_buf *o, const cJSON *node, char path[PATH_MAX], int *lines) {
  const cJSON *type = cJSON_GetObjectItemCaseSensitive(node, "type");
  const char *t = cJSON_IsString(type) ? type->valuestring : "?";
  if ((*lines)++ < FS_LIST_MAX) {
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(node, "size");
    char hs[32] = "";
    if (cJSON_IsNumber(size)) fs_human((size_t)size->valuedouble, hs);
    fs_buf_printf(o, "- %s%s (%s%s%s)\n", path, strcmp(t, "dir") == 0 ? "/" : "",
                  strcmp(t, "dir") == 0 ? "directory" : t, hs[0] ? ", " : "", hs);
  }
  const cJSON *entries = cJSON_GetObjectItemCaseSensitive(node, "entries"), *child;
  size_t plen = strlen(path);
  cJSON_ArrayForEach(child, entries) {
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(child, "name");
    snprintf(path + plen, PATH_MAX - plen, "/%s",
             cJSON_IsString(name) ? name->valuestring : "(binary name)");
    list_tree(o, child, path, lines);
    path[plen] = '\0';
  }
}

static char *remove_detail(const char *abs, const cJSON *node, int isdir) {
  fs_buf o = {0};
  if (isdir) {
    char path[PATH_MAX];
    int lines = 0;
    snprintf(path, sizeof path, "%s", abs);
    list_tree(&o, node, path, &lines);
    if (lines > FS_LIST_MAX) fs_buf_printf(&o, "… and %d more\n", lines - FS_LIST_MAX);
    return fs_buf_finish(&o);
  }
  const cJSON *content = cJSON_GetObjectItemCaseSensitive(node, "content");
  const cJSON *size = cJSON_GetObjectItemCaseSensitive(node, "size");
  const cJSON *hash = cJSON_GetObjectItemCaseSensitive(node, "sha256");
  if (cJSON_IsString(content) && strlen(content->valuestring) <= FS_DIFF_MAX)
    return fs_diff(content->valuestring, strlen(content->valuestring), abs, "", 0, "/dev/null");
  if (!cJSON_IsNumber(size) || !cJSON_IsString(hash)) return NULL;
  char hs[32];
  fs_human((size_t)size->valuedouble, hs);
  fs_buf_printf(&o, "binary or large content removed: %s, sha256 %.16s…", hs, hash->valuestring);
  return fs_buf_finish(&o);
}

/* The pre-image of something a dry-run planned to create. */
static cJSON *planned_node(lua_State *L, cJSON *rec, const fs_pre *pre, fs_budget *bud,
                           fs_status *st) {
  cJSON *node = cJSON_AddObjectToObject(rec, "before");
  int bad = node == NULL;
  if (!bad && S_ISREG(pre->sb.st_mode)) {
    bud->files++;
    bud->used = pre->len;
    if (pre->len > bud->cap) {
      fs_set_too_large(st, bud);
      return NULL;
    }
    bad = fs_node_file(L, node, pre->content ? pre->content : "", pre->len, &pre->sb);
  } else if (!bad && S_ISLNK(pre->sb.st_mode)) {
    bad = fs_node_link(node, pre->target ? pre->target : "");
  } else if (!bad) {
    bad = cJSON_AddStringToObject(node, "type", "dir") == NULL ||
          cJSON_AddNumberToObject(node, "mode", pre->sb.st_mode & 07777) == NULL ||
          cJSON_AddNumberToObject(node, "uid", pre->sb.st_uid) == NULL ||
          cJSON_AddNumberToObject(node, "gid", pre->sb.st_gid) == NULL;
  }
  if (bad) {
    fs_set_errno(st, ENOMEM, NULL);
    return NULL;
  }
  return node;
}

static const char *const remove_opts[] = {"recursive", "max_undo", NULL};

/* fs.remove(path, {recursive=, max_undo=}) -> true | nil, err. Nothing there
 * is success. Links are removed, never followed. */
int l_fs_remove(lua_State *L) {
  const char *path = fs_checkpath(L, 1, "fs.remove");
  fs_checkopts(L, 2, "fs.remove", remove_opts);
  int recursive = 0;
  fs_budget bud = {.cap = fs_optcap(L, 2, "fs.remove")};
  if (lua_type(L, 2) == LUA_TTABLE) {
    lua_getfield(L, 2, "recursive");
    recursive = lua_toboolean(L, -1);
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  fs_box *b = fs_box_new(L);
  fs_status st = {0};
  char abs[PATH_MAX], real[PATH_MAX], note[PATH_MAX + 32];
  int later;
  if (fs_abspath(path, abs, &st) != 0) return fs_fail(L, "remove", path, &st);
  if (target_path(L, path, 0, real, &later, &st) != 0) {
    if (st.code == ENOENT || st.code == ENOTDIR) return planned(L); /* nothing there */
    return fs_fail(L, "remove", path, &st);
  }
  fs_pre pre;
  if (strcmp(real, "/") == 0) return luaL_error(L, "fs.remove: refusing to remove /");
  if (fs_pre_stat(L, real, &pre, &st) != 0) return fs_fail(L, "remove", path, &st);
  if (!pre.exists) return planned(L);
  int isdir = S_ISDIR(pre.sb.st_mode);
  if (isdir && !recursive && !pre.fresh) {
    int empty = dir_is_empty(real, &st);
    if (empty <= 0) {
      if (empty == 0)
        fs_set(&st, ENOTEMPTY, "%s (use recursive = true for a tree)", strerror(ENOTEMPTY));
      return fs_fail(L, "remove", path, &st);
    }
  }
  cJSON *rec = new_record(L, b, real);
  cJSON *node = pre.fresh ? planned_node(L, rec, &pre, &bud, &st)
                          : fs_capture(L, b, rec, "before", real, 1, &bud, &st);
  if (node == NULL) return fs_fail(L, "remove", path, &st);
  if (pre.planned && !pre.fresh) /* a planned chmod of it */
    cJSON_ReplaceItemInObject(node, "mode", cJSON_CreateNumber(pre.sb.st_mode & 07777));
  const char *undo = record_text(L, b, rec);
  char fp[PATH_MAX + 16], desc[2 * PATH_MAX + 200], size[32];
  fs_fingerprint(node, fp, sizeof fp);
  fs_human(bud.used, size);
  if (S_ISLNK(pre.sb.st_mode)) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(node, "target");
    snprintf(desc, sizeof desc, "remove %s (link to %s)%s", abs,
             cJSON_IsString(t) ? t->valuestring : "?", resolves_note(abs, real, note));
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
  const char *detail = fs_box_mem(b, remove_detail(abs, node, isdir));

  lua_Integer id;
  if (ask_gate(L, "fs.remove", abs, desc, detail, undo, fp, &id) == RELISH_GATE_PLANNED) {
    fs_plan_note_id(L, id);
    fs_plan_set(L, real, "absent", 0, NULL, 0, NULL, 1);
    return planned(L);
  }
  if (remove_path(real, isdir, &st) != 0 || fs_sync_parent(real, &st) != 0)
    return acted_fail(L, id, "remove", path, &st);
  relish_gate_done(L, id, NULL);
  fs_box_release(b);
  return planned(L);
}

/* ---- symlink ---- */

/* fs.symlink(target, path) -> true | nil, err: creates the link, or
 * atomically replaces an existing link; any other file there is an error. */
int l_fs_symlink(lua_State *L) {
  size_t tlen;
  const char *target = luaL_checklstring(L, 1, &tlen);
  if (tlen == 0 || strlen(target) != tlen || tlen >= PATH_MAX)
    return luaL_error(L, "fs.symlink: target must be a non-empty string without NUL bytes");
  const char *path = fs_checkpath(L, 2, "fs.symlink");
  lua_settop(L, 2);
  fs_box *b = fs_box_new(L);
  fs_status st = {0};
  char abs[PATH_MAX], real[PATH_MAX], old[PATH_MAX];
  int later;
  if (fs_abspath(path, abs, &st) != 0 || target_path(L, path, 0, real, &later, &st) != 0)
    return fs_fail(L, "symlink", path, &st);
  fs_pre pre;
  if (fs_pre_stat(L, real, &pre, &st) != 0) return fs_fail(L, "symlink", path, &st);
  if (pre.planned && pre.exists && !S_ISLNK(pre.sb.st_mode) && fs_live_stat(real, &pre, &st) != 0)
    return fs_fail(L, "symlink", path, &st);
  if (pre.exists) {
    if (!S_ISLNK(pre.sb.st_mode)) {
      fs_set(&st, EEXIST, "exists and is not a symlink");
      return fs_fail(L, "symlink", path, &st);
    }
    if (pre.fresh) {
      snprintf(old, sizeof old, "%s", pre.target ? pre.target : "");
    } else {
      ssize_t n = readlink(real, old, sizeof old - 1);
      if (n < 0) {
        fs_set_errno(&st, errno, NULL);
        return fs_fail(L, "symlink", path, &st);
      }
      old[n] = '\0';
    }
    if (strcmp(old, target) == 0) return planned(L);
  }
  cJSON *rec = new_record(L, b, real);
  cJSON *before = cJSON_AddObjectToObject(rec, "before");
  if (before == NULL || (pre.exists ? fs_node_link(before, old)
                                    : cJSON_AddStringToObject(before, "type", "absent") == NULL))
    return luaL_error(L, "not enough memory");
  const char *undo = record_text(L, b, rec);
  char fp[PATH_MAX + 16], desc[3 * PATH_MAX + 64], note[PATH_MAX + 32];
  fs_fingerprint(before, fp, sizeof fp);
  snprintf(desc, sizeof desc, "symlink %s → %s (%s%s)%s", abs, target,
           pre.exists ? "was " : "new link", pre.exists ? old : "", resolves_note(abs, real, note));

  lua_Integer id;
  if (ask_gate(L, "fs.symlink", abs, desc, NULL, undo, fp, &id) == RELISH_GATE_PLANNED) {
    fs_plan_note_id(L, id);
    fs_plan_set(L, real, "link", 0777, NULL, 0, target, 1);
    return planned(L);
  }
  if (later) {
    fs_set_errno(&st, ENOENT, NULL);
    return acted_fail(L, id, "symlink", path, &st);
  }
  if (fs_put_link(b, real, target, &st) != 0) return acted_fail(L, id, "symlink", path, &st);
  relish_gate_done(L, id, NULL);
  fs_box_release(b);
  return planned(L);
}

/* ---- chmod ---- */

/* fs.chmod(path, mode) -> true | nil, err (follows symlinks, as chmod(2)). */
int l_fs_chmod(lua_State *L) {
  const char *path = fs_checkpath(L, 1, "fs.chmod");
  if (lua_isnoneornil(L, 2)) return luaL_error(L, "fs.chmod: mode expected");
  mode_t mode = fs_checkmode(L, 2, "fs.chmod");
  lua_settop(L, 2);
  fs_box *b = fs_box_new(L);
  fs_status st = {0};
  char abs[PATH_MAX], real[PATH_MAX], note[PATH_MAX + 32];
  int later;
  if (fs_abspath(path, abs, &st) != 0 || target_path(L, path, 1, real, &later, &st) != 0)
    return fs_fail(L, "chmod", path, &st);
  fs_pre pre;
  if (fs_pre_stat(L, real, &pre, &st) != 0) return fs_fail(L, "chmod", path, &st);
  if (pre.planned && !pre.exists && fs_live_stat(real, &pre, &st) != 0)
    return fs_fail(L, "chmod", path, &st);
  if (!pre.exists) {
    if (!fs_plan_active(L)) {
      fs_set_errno(&st, ENOENT, NULL);
      return fs_fail(L, "chmod", path, &st);
    }
    later = 1; /* made by something the plan cannot see */
  }
  mode_t old = pre.exists ? pre.sb.st_mode & 07777 : 0;
  if (pre.exists && old == mode) return planned(L);
  cJSON *rec = new_record(L, b, real);
  if (!pre.exists ? cJSON_AddTrueToObject(rec, "absent") == NULL
                  : cJSON_AddNumberToObject(rec, "mode", old) == NULL)
    return luaL_error(L, "not enough memory");
  const char *undo = record_text(L, b, rec);
  char fp[64], desc[2 * PATH_MAX + 64];
  if (!pre.exists)
    snprintf(fp, sizeof fp, "absent");
  else
    snprintf(fp, sizeof fp, "%s:%04o",
             S_ISREG(pre.sb.st_mode)   ? "file"
             : S_ISDIR(pre.sb.st_mode) ? "dir"
                                       : "other",
             (unsigned)old);
  if (!pre.exists)
    snprintf(desc, sizeof desc, "chmod %s %04o (does not exist yet)%s", abs, (unsigned)mode,
             resolves_note(abs, real, note));
  else
    snprintf(desc, sizeof desc, "chmod %s %04o → %04o%s", abs, (unsigned)old, (unsigned)mode,
             resolves_note(abs, real, note));

  lua_Integer id;
  if (ask_gate(L, "fs.chmod", abs, desc, NULL, undo, fp, &id) == RELISH_GATE_PLANNED) {
    fs_plan_note_id(L, id);
    if (pre.exists) fs_plan_chmod(L, real, &pre.sb, mode);
    return planned(L);
  }
  if (later) {
    fs_set_errno(&st, ENOENT, NULL);
    return acted_fail(L, id, "chmod", path, &st);
  }
  if (chmod(real, mode) != 0) {
    fs_set_errno(&st, errno, NULL);
    return acted_fail(L, id, "chmod", path, &st);
  }
  relish_gate_done(L, id, NULL);
  fs_box_release(b);
  return planned(L);
}
