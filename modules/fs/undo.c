/* undo.c: the automatic undo of fs effects, each kind's undo(record) as the
 * gate calls it (the record is the table the effect journaled). It puts the
 * pre-image back whether or not the action took effect (an action can be left
 * in doubt by a crash), so running it twice is running it once. It acts
 * directly, never through the gate: rollback is not a new plan.
 *
 * It acts only on what the run made. The directory it acts in is reached
 * from / one component at a time without following a link, and must be the
 * directory the action acted in (its st_dev and st_ino are in the record);
 * everything after that is done relative to that open directory. What is at
 * the path must be what the action left there (the content it wrote, the
 * link it made, the mode it set; nothing, after a remove) or already what
 * was there before; anything else was changed since the run and is left as
 * it is (kind "conflict") unless the undo is forced ({force = true}, from
 * `relish rollback --force`). A directory that is not the one the run acted
 * in is refused even then. */
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
  int force;  /* undo also what changed since the run */
  int remove; /* fs.remove: the run left nothing at any path of the tree */
  int after;  /* stack index of what the action left ({type, sha256 | target}), or 0 */
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

/* ---- the directory it acts in ---- */

/* Opens the directory at the absolute path dir one component at a time from
 * /, never following a symlink: -1 with errno (ELOOP or ENOTDIR when a
 * component is a link or not a directory now, ENOENT when it is gone). */
static int open_dir_nofollow(const char *dir) {
  char buf[PATH_MAX];
  snprintf(buf, sizeof buf, "%s", dir);
  int fd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  for (char *save = NULL, *c = strtok_r(buf, "/", &save); fd >= 0 && c != NULL;
       c = strtok_r(NULL, "/", &save)) {
    if (strcmp(c, ".") == 0 || strcmp(c, "..") == 0) { /* never in a real path */
      close(fd);
      errno = ELOOP;
      return -1;
    }
    int next = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int e = errno;
    close(fd);
    errno = e;
    fd = next;
  }
  return fd;
}

/* Opens the directory holding path, checking it is the one the action acted
 * in (the record's dir = {dev, ino} at t, when it has one). Returns the fd,
 * -1 with st set, or -2 when the directory is gone (nothing to undo in it). */
static int open_acted_dir(undo_ctx *u, int t, const char *path, char base[PATH_MAX],
                          relish_status *st) {
  lua_State *L = u->L;
  char dir[PATH_MAX];
  fs_split(path, dir, base);
  int dfd = open_dir_nofollow(dir);
  if (dfd < 0) {
    if (errno == ENOENT) return -2;
    if (errno == ELOOP || errno == ENOTDIR)
      return relish_status_set(st, "conflict",
                               "%s: a directory on its path is a symlink or not a directory now, "
                               "so it is not where the run acted: left as is",
                               path);
    return relish_status_errno(st, errno, dir);
  }
  if (lua_getfield(L, t, "dir") == LUA_TTABLE) {
    lua_Integer dev, ino;
    struct stat sb;
    int have = rec_int(L, -1, "dev", &dev) && rec_int(L, -1, "ino", &ino);
    if (have && fstat(dfd, &sb) == 0 &&
        ((lua_Integer)sb.st_dev != dev || (lua_Integer)sb.st_ino != ino)) {
      close(dfd);
      lua_pop(L, 1);
      return relish_status_set(st, "conflict",
                               "%s: %s is another directory than the one the run acted in "
                               "(replaced since): left as is",
                               path, dir);
    }
  }
  lua_pop(L, 1);
  return dfd;
}

/* ---- what is there now ---- */

/* Refuses to replace what is at path (it is neither what the action left
 * nor what was there before), unless forced. */
static int changed_since(undo_ctx *u, const char *path, const char *why, relish_status *st) {
  if (u->force) return 0;
  return relish_status_set(st, "conflict",
                           "%s: %s since the run: left as is (relish rollback --force %s it)", path,
                           why, u->remove ? "replaces" : "undoes");
}

/* Lower-case sha256 of the regular file name in dfd, without following a
 * link or opening anything else (a FIFO would block). 0, or -1. */
static int hash_at(int dfd, const char *name, char hex[65]) {
  int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) return -1;
  struct stat sb;
  if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
    close(fd);
    return -1;
  }
  fs_sha256_ctx c;
  fs_sha256_init(&c);
  char buf[65536];
  ssize_t n;
  while ((n = read(fd, buf, sizeof buf)) != 0) {
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      close(fd);
      return -1;
    }
    fs_sha256_update(&c, buf, (size_t)n);
  }
  close(fd);
  unsigned char d[32];
  fs_sha256_final(&c, d);
  fs_hex(d, 32, hex);
  return 0;
}

/* 1 when the link name in dfd points at target. */
static int link_is(int dfd, const char *name, const char *target, size_t len) {
  char have[PATH_MAX];
  ssize_t n = readlinkat(dfd, name, have, sizeof have - 1);
  return n >= 0 && (size_t)n == len && memcmp(have, target, len) == 0;
}

/* May the undo replace or delete the node at name (top level at depth 0),
 * which is not what was there before? It may when it is what the action
 * left there (or the record does not say: a record from before the check),
 * or when forced. */
static int may_replace(undo_ctx *u, int depth, int dfd, const char *name, const char *path,
                       const struct stat *sb, relish_status *st) {
  lua_State *L = u->L;
  if (u->remove) return changed_since(u, path, "something else is there", st);
  if (depth > 0 || u->after == 0) return 0;
  int top = lua_gettop(L);
  lua_getfield(L, u->after, "type");
  const char *type = lua_tostring(L, -1);
  int same = 0;
  if (type != NULL && strcmp(type, "file") == 0) {
    char hex[65];
    lua_getfield(L, u->after, "sha256");
    const char *want = lua_tostring(L, -1);
    same = want == NULL ||
           (S_ISREG(sb->st_mode) && hash_at(dfd, name, hex) == 0 && strcmp(hex, want) == 0);
  } else if (type != NULL && strcmp(type, "link") == 0) {
    size_t len;
    const char *target = rec_bytes(L, u->after, "target", &len);
    same = target == NULL || (S_ISLNK(sb->st_mode) && link_is(dfd, name, target, len));
  } else {
    same = 1;
  }
  int islink = type != NULL && strcmp(type, "link") == 0;
  lua_settop(L, top);
  if (same) return 0;
  const char *why = islink && S_ISLNK(sb->st_mode)    ? "the link was changed"
                    : !islink && S_ISREG(sb->st_mode) ? "its content changed"
                                                      : "it was replaced";
  return changed_since(u, path, why, st);
}

/* ---- putting the pre-image back ---- */

static void fix_owner(int dfd, const char *name, const struct stat *sb, lua_Integer uid,
                      lua_Integer gid) {
  if ((uid < 0 || (uid_t)uid == sb->st_uid) && (gid < 0 || (gid_t)gid == sb->st_gid)) return;
  /* Best effort, as in fs_put_file: only privilege can give files away. */
  if (fchownat(dfd, name, uid >= 0 ? (uid_t)uid : (uid_t)-1, gid >= 0 ? (gid_t)gid : (gid_t)-1,
               AT_SYMLINK_NOFOLLOW) != 0)
    return;
}

/* Puts back the recorded times (mtime_ns, atime_ns) of the node name in dfd,
 * without following a link. Last of all, since writing content or entries
 * moves them. Best effort without privilege, as for the owner. */
static int restore_times(lua_State *L, int node, int dfd, const char *name, const char *path,
                         relish_status *st) {
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
  if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) != 0 && errno != EPERM && errno != EACCES)
    return relish_status_errno(st, errno, path);
  return 0;
}

static int restore_absent(undo_ctx *u, int dfd, const char *name, const char *path, int present,
                          const struct stat *sb, relish_status *st) {
  if (!present) return 0;
  if (S_ISDIR(sb->st_mode))
    return relish_status_set(st, "exists", "%s is a directory now; undo expected nothing there",
                             path);
  if (may_replace(u, 0, dfd, name, path, sb, st) != 0) return -1;
  if (unlinkat(dfd, name, 0) != 0 && errno != ENOENT) return relish_status_errno(st, errno, path);
  return fs_sync_dir(dfd, st);
}

/* 1 when the regular file name in dfd already has exactly this content. */
static int same_content(int dfd, const char *name, const char *data, size_t len) {
  int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
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

static int restore_file(undo_ctx *u, int dfd, const char *name, const char *path, int node,
                        int depth, int present, const struct stat *sb, relish_status *st) {
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
    if (S_ISREG(sb->st_mode) && (size_t)sb->st_size == len && same_content(dfd, name, data, len)) {
      /* the content is back already: only the metadata */
      fix_owner(dfd, name, sb, uid, gid);
      if ((sb->st_mode & 07777) != (mode_t)mode || (mode & 06000))
        if (fchmodat(dfd, name, (mode_t)mode, 0) != 0) return relish_status_errno(st, errno, path);
      return restore_times(L, node, dfd, name, path, st);
    }
    if (may_replace(u, depth, dfd, name, path, sb, st) != 0) return -1;
  }
  /* fs_put_file sets owner, then mode (chown clears set-id bits) */
  if (fs_put_file_at(dfd, name, data, len, (mode_t)mode, uid, gid, st) != 0)
    return at_path(st, path);
  return restore_times(L, node, dfd, name, path, st);
}

static int restore_link(undo_ctx *u, int dfd, const char *name, const char *path, int node,
                        int depth, int present, const struct stat *sb, relish_status *st) {
  size_t len;
  const char *target = rec_bytes(u->L, node, "target", &len);
  if (target == NULL || len == 0 || strlen(target) != len || len >= PATH_MAX)
    return malformed(u, "link without target");
  if (present) {
    if (S_ISDIR(sb->st_mode))
      return relish_status_set(st, "exists", "%s is a directory now; undo expected a link", path);
    if (S_ISLNK(sb->st_mode) && link_is(dfd, name, target, len))
      return restore_times(u->L, node, dfd, name, path, st);
    if (may_replace(u, depth, dfd, name, path, sb, st) != 0) return -1;
  }
  if (fs_put_link_at(dfd, name, target, st) != 0) return at_path(st, path);
  return restore_times(u->L, node, dfd, name, path, st);
}

static int restore_node(undo_ctx *u, int dfd, const char *name, char path[PATH_MAX], int node,
                        int depth, relish_status *st);

static int restore_entries(undo_ctx *u, int cfd, char path[PATH_MAX], int node, int depth,
                           relish_status *st) {
  lua_State *L = u->L;
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
    const char *cname = rec_bytes(L, child, "name", &nlen);
    if (cname == NULL || nlen == 0 || strlen(cname) != nlen || strchr(cname, '/') != NULL ||
        strcmp(cname, ".") == 0 || strcmp(cname, "..") == 0)
      return malformed(u, "entry with a bad name");
    if (plen + 1 + nlen >= PATH_MAX) return relish_status_errno(st, ENAMETOOLONG, path);
    snprintf(path + plen, PATH_MAX - plen, "/%s", cname);
    int rc = restore_node(u, cfd, cname, path, child, depth + 1, st);
    path[plen] = '\0';
    lua_settop(L, entries);
    if (rc != 0) return -1;
  }
  lua_pop(L, 1);
  return 0;
}

static int restore_dir(undo_ctx *u, int dfd, const char *name, char path[PATH_MAX], int node,
                       int depth, int present, const struct stat *sb, relish_status *st) {
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
    if (mkdirat(dfd, name, 0700) != 0) return relish_status_errno(st, errno, path);
    if (fs_sync_dir(dfd, st) != 0) return at_path(st, path);
  }
  int cfd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (cfd < 0) {
    if (errno == ELOOP || errno == ENOTDIR)
      return relish_status_set(st, "conflict", "%s was replaced while it was undone: left as is",
                               path);
    return relish_status_errno(st, errno, path);
  }
  struct stat now;
  int rc = fstat(cfd, &now) != 0 ? relish_status_errno(st, errno, path) : 0;
  /* room to put entries back; the recorded mode comes last */
  if (rc == 0 && (now.st_mode & 0700) != 0700 && now.st_uid == geteuid() &&
      fchmod(cfd, (now.st_mode & 07777) | 0700) != 0)
    rc = relish_status_errno(st, errno, path);
  if (rc == 0) rc = restore_entries(u, cfd, path, node, depth, st);
  if (rc == 0 && fstat(cfd, &now) != 0) rc = relish_status_errno(st, errno, path);
  if (rc == 0) {
    if ((uid >= 0 && (uid_t)uid != now.st_uid) || (gid >= 0 && (gid_t)gid != now.st_gid))
      if (fchown(cfd, uid >= 0 ? (uid_t)uid : (uid_t)-1, gid >= 0 ? (gid_t)gid : (gid_t)-1) != 0)
        (void)0; /* best effort without privilege */
    /* chown can drop set-id bits, so the mode goes last */
    if ((now.st_mode & 07777) != (mode_t)mode || uid >= 0 || gid >= 0)
      if (fchmod(cfd, (mode_t)mode) != 0) rc = relish_status_errno(st, errno, path);
  }
  close(cfd);
  if (rc != 0) return -1;
  /* times last: putting the entries back moved the directory's mtime */
  return restore_times(L, node, dfd, name, path, st);
}

static int restore_node(undo_ctx *u, int dfd, const char *name, char path[PATH_MAX], int node,
                        int depth, relish_status *st) {
  lua_State *L = u->L;
  int top = lua_gettop(L);
  luaL_checkstack(L, 10, "undo record too deep");
  if (!lua_istable(L, node)) return malformed(u, "no pre-image");
  lua_getfield(L, node, "type");
  const char *type = lua_tostring(L, -1);
  if (type == NULL) return malformed(u, "pre-image without type");
  struct stat sb;
  int present = fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0;
  if (!present && errno != ENOENT) return relish_status_errno(st, errno, path);
  int rc;
  if (strcmp(type, "absent") == 0)
    rc = restore_absent(u, dfd, name, path, present, &sb, st);
  else if (strcmp(type, "file") == 0)
    rc = restore_file(u, dfd, name, path, node, depth, present, &sb, st);
  else if (strcmp(type, "link") == 0)
    rc = restore_link(u, dfd, name, path, node, depth, present, &sb, st);
  else if (strcmp(type, "dir") == 0)
    rc = restore_dir(u, dfd, name, path, node, depth, present, &sb, st);
  else
    rc = malformed(u, "unknown pre-image type");
  lua_settop(L, top);
  return rc;
}

/* The directories a mkdir made, innermost first: each removed when it is
 * still an empty directory, reached without following a link from the
 * directory that held the outermost (checked against the record's dir). */
static int undo_mkdir(undo_ctx *u, int rec, relish_status *st) {
  lua_State *L = u->L;
  if (lua_getfield(L, rec, "created") != LUA_TTABLE) return malformed(u, "no created list");
  int list = lua_gettop(L);
  lua_Integer n = (lua_Integer)lua_rawlen(L, list);
  if (n == 0) return 0;
  char p[PATH_MAX], base[PATH_MAX];
  lua_rawgeti(L, list, 1);
  if (!lua_istable(L, -1)) return malformed(u, "created entry is not an object");
  rec_path(u, lua_gettop(L), "path", p);
  lua_settop(L, list);
  int anchor = open_acted_dir(u, rec, p, base, st);
  if (anchor == -2) return 0; /* gone with everything below it */
  if (anchor < 0) return -1;
  close(anchor);
  for (lua_Integer i = n; i >= 1; i--) {
    if (lua_rawgeti(L, list, i) != LUA_TTABLE)
      return malformed(u, "created entry is not an object");
    rec_path(u, lua_gettop(L), "path", p);
    lua_settop(L, list);
    char dir[PATH_MAX];
    fs_split(p, dir, base);
    int dfd = open_dir_nofollow(dir);
    if (dfd < 0) {
      if (errno == ENOENT) continue; /* never made, or already undone */
      if (errno == ELOOP || errno == ENOTDIR)
        return relish_status_set(st, "conflict",
                                 "%s: a directory on its path is a symlink or not a directory "
                                 "now, so it is not what the run made: left as is",
                                 p);
      return relish_status_errno(st, errno, dir);
    }
    struct stat sb;
    int rc = 0;
    if (fstatat(dfd, base, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT) rc = relish_status_errno(st, errno, p);
    } else if (!S_ISDIR(sb.st_mode)) {
      rc = relish_status_set(st, "conflict", "%s is no longer a directory: left as is", p);
    } else if (unlinkat(dfd, base, AT_REMOVEDIR) != 0) {
      if (errno == ENOTEMPTY || errno == EEXIST)
        rc = relish_status_set(st, "exists",
                               "%s is not empty: it holds files this run did not create; "
                               "move them away and undo again",
                               p);
      else
        rc = relish_status_errno(st, errno, p);
    } else if (fs_sync_dir(dfd, st) != 0) {
      rc = at_path(st, p);
    }
    close(dfd);
    if (rc != 0) return -1;
  }
  lua_settop(L, list - 1);
  return 0;
}

/* The mode back, when it is still the one the action set (the record's
 * after_mode; a record without it predates the check) or when forced. */
static int undo_chmod(undo_ctx *u, int rec, const char *path, relish_status *st) {
  lua_State *L = u->L;
  lua_getfield(L, rec, "absent");
  int absent = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (absent) return 0; /* only ever planned */
  lua_Integer mode, set = -1;
  if (!rec_int(L, rec, "mode", &mode) || mode < 0 || mode > 07777) return malformed(u, "no mode");
  rec_int(L, rec, "after_mode", &set);
  char base[PATH_MAX];
  int dfd = open_acted_dir(u, rec, path, base, st);
  if (dfd == -2) return 0;
  if (dfd < 0) return -1;
  struct stat sb;
  int rc = 0;
  if (fstatat(dfd, base, &sb, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno != ENOENT) rc = relish_status_errno(st, errno, NULL);
  } else if (S_ISLNK(sb.st_mode)) { /* chmod would follow it: never, forced or not */
    rc = relish_status_set(st, "conflict", "%s is a symlink now: left as is", path);
  } else if ((sb.st_mode & 07777) != (mode_t)mode) {
    if (set >= 0 && (sb.st_mode & 07777) != (mode_t)set) {
      char why[64];
      snprintf(why, sizeof why, "its mode was changed (to %04o)", (unsigned)(sb.st_mode & 07777));
      rc = changed_since(u, path, why, st);
    }
    if (rc == 0 && fchmodat(dfd, base, (mode_t)mode, 0) != 0)
      rc = relish_status_errno(st, errno, NULL);
  }
  close(dfd);
  return rc;
}

/* The undo of kind from the record at 1 (options at 2: {force = true})
 * -> true; raises naming the path when it cannot. */
static int undo_kind(lua_State *L, const char *kind) {
  luaL_checktype(L, 1, LUA_TTABLE);
  undo_ctx u = {.L = L, .kind = kind};
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "force");
    u.force = lua_toboolean(L, -1);
  }
  lua_settop(L, 1);
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
    u.remove = strcmp(kind, "fs.remove") == 0;
    if (lua_getfield(L, 1, "after") == LUA_TTABLE) u.after = lua_gettop(L);
    lua_getfield(L, 1, "before");
    int before = lua_gettop(L);
    char base[PATH_MAX];
    int dfd = open_acted_dir(&u, 1, path, base, &st);
    if (dfd == -2) { /* its directory is gone: nothing of the run is left there */
      lua_getfield(L, before, "type");
      const char *type = lua_tostring(L, -1);
      rc = type != NULL && strcmp(type, "absent") == 0 ? 0 : relish_status_errno(&st, ENOENT, NULL);
    } else if (dfd < 0) {
      rc = -1;
    } else {
      /* an action in doubt may have died between its temp file and the rename */
      if (!u.remove) fs_remove_leftovers(dfd, base);
      rc = restore_node(&u, dfd, base, path, before, 0, &st);
      close(dfd);
    }
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
