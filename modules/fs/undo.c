/* undo.c: the automatic undo of fs effects, each kind's undo(record) as the
 * gate calls it (the record is the table the effect journaled). It puts the
 * pre-image back whether or not the action took effect (an action can be left
 * in doubt by a crash), so running it twice is running it once. It acts
 * directly, never through the gate: rollback is not a new plan. */
#define _GNU_SOURCE
#include "fsint.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  lua_State *L;
  const char *kind;
} undo_ctx;

static int malformed(undo_ctx *u, const char *what) {
  return luaL_error(u->L, "fs undo of %s: malformed undo record: %s", u->kind, what);
}

/* Bytes stored under key_b64 (base64: exact) or key (a string); the value
 * stays on the stack. NULL (one value pushed) when neither is there. */
static const char *rec_bytes(lua_State *L, int t, const char *key, size_t *len) {
  char k[64];
  snprintf(k, sizeof k, "%s_b64", key);
  if (lua_getfield(L, t, k) != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_getfield(L, t, key);
    return lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, len) : NULL;
  }
  size_t elen;
  const char *enc = lua_tolstring(L, -1, &elen);
  char *out = lua_newuserdatauv(L, elen / 4 * 3 + 1, 0);
  long n = fs_unbase64(enc, elen, out);
  lua_remove(L, -2);
  if (n < 0) return NULL;
  out[n] = '\0';
  *len = (size_t)n;
  return out;
}

static int rec_int(lua_State *L, int t, const char *key, lua_Integer *out) {
  int isint = 0;
  lua_getfield(L, t, key);
  *out = lua_tointegerx(L, -1, &isint);
  lua_pop(L, 1);
  return isint;
}

/* A path from the record: absolute, no NUL, fits. Copied into out. */
static void rec_path(undo_ctx *u, int t, const char *key, char out[PATH_MAX]) {
  size_t len;
  const char *p = rec_bytes(u->L, t, key, &len);
  if (p == NULL || len == 0 || p[0] != '/' || strlen(p) != len || len >= PATH_MAX)
    malformed(u, "no absolute path");
  memcpy(out, p, len + 1);
  lua_pop(u->L, 1);
}

/* Put "path: " in front of a failure's message. */
static int at_path(relish_status *st, const char *path) {
  char msg[sizeof st->msg];
  snprintf(msg, sizeof msg, "%s", st->msg);
  return relish_status_set(st, st->kind, "%s: %s", path, msg);
}

static void fix_owner(const char *path, const struct stat *sb, lua_Integer uid, lua_Integer gid) {
  if ((uid < 0 || (uid_t)uid == sb->st_uid) && (gid < 0 || (gid_t)gid == sb->st_gid)) return;
  /* Best effort, as in fs_put_file: only privilege can give files away. */
  if (lchown(path, uid >= 0 ? (uid_t)uid : (uid_t)-1, gid >= 0 ? (gid_t)gid : (gid_t)-1) != 0)
    return;
}

/* Puts back the recorded times (mtime_ns, atime_ns) of the node at path,
 * without following a link. Last of all, since writing content or entries
 * moves them. Best effort without privilege, as for the owner. */
static int restore_times(lua_State *L, int node, const char *path, relish_status *st) {
  lua_Integer ns[2];
  static const char *const keys[2] = {"atime_ns", "mtime_ns"};
  struct timespec ts[2];
  int any = 0;
  for (int i = 0; i < 2; i++) {
    if (!rec_int(L, node, keys[i], &ns[i])) {
      ts[i] = (struct timespec){.tv_sec = 0, .tv_nsec = UTIME_OMIT};
      continue;
    }
    lua_Integer sec = ns[i] / 1000000000, nsec = ns[i] % 1000000000;
    if (nsec < 0) {
      nsec += 1000000000;
      sec--;
    }
    ts[i] = (struct timespec){.tv_sec = (time_t)sec, .tv_nsec = (long)nsec};
    any = 1;
  }
  if (!any) return 0; /* a record from before times were kept */
  if (utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW) != 0 && errno != EPERM && errno != EACCES)
    return relish_status_errno(st, errno, path);
  return 0;
}

static int restore_absent(const char *path, int present, const struct stat *sb, relish_status *st) {
  if (!present) return 0;
  if (S_ISDIR(sb->st_mode))
    return relish_status_set(st, "exists", "%s is a directory now; undo expected nothing there",
                             path);
  if (unlink(path) != 0 && errno != ENOENT) return relish_status_errno(st, errno, path);
  return fs_sync_parent(path, st);
}

/* 1 when the regular file at path already has exactly this content. */
static int same_content(const char *path, const char *data, size_t len) {
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return 0;
  char *have;
  size_t hlen;
  relish_status st = {0};
  int rc = fs_read_fd(fd, len, &have, &hlen, &st);
  close(fd);
  if (rc != 0) return 0;
  int same = hlen == len && memcmp(have, data, len) == 0;
  free(have);
  return same;
}

static int restore_file(undo_ctx *u, const char *path, int node, int present, const struct stat *sb,
                        relish_status *st) {
  lua_State *L = u->L;
  lua_getfield(L, node, "redacted");
  int redacted = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (redacted)
    return relish_status_set(st, "io",
                             "%s: its earlier content held a secret, which is never journaled; "
                             "restore it by hand",
                             path);
  size_t len;
  const char *data = rec_bytes(L, node, "content", &len);
  lua_Integer mode, uid = -1, gid = -1;
  if (data == NULL) return malformed(u, "file without content");
  if (!rec_int(L, node, "mode", &mode) || mode < 0 || mode > 07777)
    return malformed(u, "file without mode");
  rec_int(L, node, "uid", &uid);
  rec_int(L, node, "gid", &gid);
  if (lua_getfield(L, node, "sha256") == LUA_TSTRING) {
    char hex[65];
    fs_sha256_hex(data, len, hex);
    if (strcmp(hex, lua_tostring(L, -1)) != 0)
      return relish_status_set(
          st, "io", "%s: the undo record is corrupt (content does not match its sha256)", path);
  }
  lua_pop(L, 1);
  if (present) {
    if (S_ISDIR(sb->st_mode))
      return relish_status_set(st, "exists", "%s is a directory now; undo expected a file", path);
    if (S_ISREG(sb->st_mode) && (sb->st_mode & 07777) == (mode_t)mode &&
        (size_t)sb->st_size == len && same_content(path, data, len)) {
      fix_owner(path, sb, uid, gid);
      if (mode & 06000) chmod(path, (mode_t)mode); /* chown dropped set-id bits */
      return restore_times(L, node, path, st);
    }
  }
  /* fs_put_file sets owner, then mode (chown clears set-id bits) */
  if (fs_put_file(path, data, len, (mode_t)mode, uid, gid, st) != 0) return at_path(st, path);
  return restore_times(L, node, path, st);
}

static int restore_link(undo_ctx *u, const char *path, int node, int present, const struct stat *sb,
                        relish_status *st) {
  size_t len;
  const char *target = rec_bytes(u->L, node, "target", &len);
  if (target == NULL || len == 0 || strlen(target) != len || len >= PATH_MAX)
    return malformed(u, "link without target");
  if (present) {
    if (S_ISDIR(sb->st_mode))
      return relish_status_set(st, "exists", "%s is a directory now; undo expected a link", path);
    if (S_ISLNK(sb->st_mode)) {
      char have[PATH_MAX];
      ssize_t n = readlink(path, have, sizeof have - 1);
      if (n >= 0 && (size_t)n == len && memcmp(have, target, len) == 0)
        return restore_times(u->L, node, path, st);
    }
  }
  if (fs_put_link(path, target, st) != 0) return at_path(st, path);
  return restore_times(u->L, node, path, st);
}

static int restore_node(undo_ctx *u, char path[PATH_MAX], int node, int depth, relish_status *st);

static int restore_dir(undo_ctx *u, char path[PATH_MAX], int node, int depth, int present,
                       const struct stat *sb, relish_status *st) {
  lua_State *L = u->L;
  lua_Integer mode, uid = -1, gid = -1;
  if (!rec_int(L, node, "mode", &mode) || mode < 0 || mode > 07777)
    return malformed(u, "directory without mode");
  rec_int(L, node, "uid", &uid);
  rec_int(L, node, "gid", &gid);
  if (depth >= FS_MAX_DEPTH)
    return relish_status_set(st, "io", "%s: deeper than %d levels", path, FS_MAX_DEPTH);
  if (present && !S_ISDIR(sb->st_mode))
    return relish_status_set(st, "exists", "%s is not a directory now; undo expected one", path);
  if (!present) {
    if (mkdir(path, 0700) != 0) return relish_status_errno(st, errno, path);
    if (fs_sync_parent(path, st) != 0) return -1;
  } else if ((sb->st_mode & 0700) != 0700 && sb->st_uid == geteuid()) {
    /* room to put entries back; the recorded mode comes last */
    if (chmod(path, (sb->st_mode & 07777) | 0700) != 0) return relish_status_errno(st, errno, path);
  }
  lua_getfield(L, node, "entries");
  int entries = lua_gettop(L);
  if (!lua_isnil(L, entries) && !lua_istable(L, entries))
    return malformed(u, "entries is not a list");
  lua_Integer n = lua_istable(L, entries) ? (lua_Integer)lua_rawlen(L, entries) : 0;
  size_t plen = strlen(path);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_rawgeti(L, entries, i) != LUA_TTABLE) return malformed(u, "entry is not an object");
    int child = lua_gettop(L);
    size_t nlen;
    const char *name = rec_bytes(L, child, "name", &nlen);
    if (name == NULL || nlen == 0 || strlen(name) != nlen || strchr(name, '/') != NULL ||
        strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
      return malformed(u, "entry with a bad name");
    if (plen + 1 + nlen >= PATH_MAX) return relish_status_errno(st, ENAMETOOLONG, path);
    snprintf(path + plen, PATH_MAX - plen, "/%s", name);
    int rc = restore_node(u, path, child, depth + 1, st);
    path[plen] = '\0';
    lua_settop(L, entries);
    if (rc != 0) return -1;
  }
  lua_pop(L, 1);
  struct stat now;
  if (lstat(path, &now) != 0) return relish_status_errno(st, errno, path);
  fix_owner(path, &now, uid, gid);
  /* chown can drop set-id bits, so the mode goes last */
  if ((now.st_mode & 07777) != (mode_t)mode || uid >= 0 || gid >= 0)
    if (chmod(path, (mode_t)mode) != 0) return relish_status_errno(st, errno, path);
  /* times last: putting the entries back moved the directory's mtime */
  return restore_times(L, node, path, st);
}

static int restore_node(undo_ctx *u, char path[PATH_MAX], int node, int depth, relish_status *st) {
  lua_State *L = u->L;
  int top = lua_gettop(L);
  luaL_checkstack(L, 10, "undo record too deep");
  if (!lua_istable(L, node)) return malformed(u, "no pre-image");
  lua_getfield(L, node, "type");
  const char *type = lua_tostring(L, -1);
  if (type == NULL) return malformed(u, "pre-image without type");
  struct stat sb;
  int present = lstat(path, &sb) == 0;
  if (!present && errno != ENOENT && errno != ENOTDIR) return relish_status_errno(st, errno, path);
  int rc;
  if (strcmp(type, "absent") == 0)
    rc = restore_absent(path, present, &sb, st);
  else if (strcmp(type, "file") == 0)
    rc = restore_file(u, path, node, present, &sb, st);
  else if (strcmp(type, "link") == 0)
    rc = restore_link(u, path, node, present, &sb, st);
  else if (strcmp(type, "dir") == 0)
    rc = restore_dir(u, path, node, depth, present, &sb, st);
  else
    rc = malformed(u, "unknown pre-image type");
  lua_settop(L, top);
  return rc;
}

static int undo_mkdir(undo_ctx *u, int rec, relish_status *st) {
  lua_State *L = u->L;
  if (lua_getfield(L, rec, "created") != LUA_TTABLE) return malformed(u, "no created list");
  int list = lua_gettop(L);
  for (lua_Integer i = (lua_Integer)lua_rawlen(L, list); i >= 1; i--) {
    char p[PATH_MAX];
    if (lua_rawgeti(L, list, i) != LUA_TTABLE)
      return malformed(u, "created entry is not an object");
    rec_path(u, lua_gettop(L), "path", p);
    lua_settop(L, list);
    struct stat sb;
    if (lstat(p, &sb) != 0) {
      if (errno == ENOENT || errno == ENOTDIR) continue; /* never made, or already undone */
      return relish_status_errno(st, errno, p);
    }
    if (!S_ISDIR(sb.st_mode))
      return relish_status_set(st, "exists", "%s is no longer a directory", p);
    if (rmdir(p) != 0) {
      if (errno == ENOTEMPTY || errno == EEXIST)
        return relish_status_set(st, "exists",
                                 "%s is not empty: it holds files this run did not create; "
                                 "move them away and undo again",
                                 p);
      return relish_status_errno(st, errno, p);
    }
    if (fs_sync_parent(p, st) != 0) return -1;
  }
  lua_settop(L, list - 1);
  return 0;
}

static int undo_chmod(undo_ctx *u, int rec, const char *path, relish_status *st) {
  lua_State *L = u->L;
  lua_getfield(L, rec, "absent");
  int absent = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (absent) return 0; /* only ever planned */
  lua_Integer mode;
  if (!rec_int(L, rec, "mode", &mode) || mode < 0 || mode > 07777) return malformed(u, "no mode");
  if (chmod(path, (mode_t)mode) != 0 && errno != ENOENT)
    return relish_status_errno(st, errno, NULL);
  return 0;
}

/* The undo of kind from the record at 1 -> true; raises naming the path
 * when it cannot. */
static int undo_kind(lua_State *L, const char *kind) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  undo_ctx u = {.L = L, .kind = kind};
  relish_status st = {0};
  char path[PATH_MAX];
  rec_path(&u, 1, "path", path);
  char verb[64];
  snprintf(verb, sizeof verb, "undo of %s", kind);
  int rc;
  if (strcmp(kind, "fs.mkdir") == 0) {
    rc = undo_mkdir(&u, 1, &st);
  } else if (strcmp(kind, "fs.chmod") == 0) {
    rc = undo_chmod(&u, 1, path, &st);
  } else {
    /* an action in doubt may have died between its temp file and the rename */
    if (strcmp(kind, "fs.remove") != 0) fs_remove_leftovers(path);
    lua_getfield(L, 1, "before");
    rc = restore_node(&u, path, lua_gettop(L), 0, &st);
  }
  if (rc != 0) {
    rec_path(&u, 1, "path", path); /* restore_node wrote below it */
    size_t pl = strlen(path);
    if (strncmp(st.msg, path, pl) == 0 && st.msg[pl] == ':' && st.msg[pl + 1] == ' ')
      memmove(st.msg, st.msg + pl + 2, strlen(st.msg + pl + 2) + 1);
    return fs_raise(L, verb, path, &st);
  }
  lua_pushboolean(L, 1);
  return 1;
}

int fs_undo_write(lua_State *L) { return undo_kind(L, "fs.write"); }
int fs_undo_copy(lua_State *L) { return undo_kind(L, "fs.copy"); }
int fs_undo_symlink(lua_State *L) { return undo_kind(L, "fs.symlink"); }
int fs_undo_remove(lua_State *L) { return undo_kind(L, "fs.remove"); }
int fs_undo_mkdir(lua_State *L) { return undo_kind(L, "fs.mkdir"); }
int fs_undo_chmod(lua_State *L) { return undo_kind(L, "fs.chmod"); }
