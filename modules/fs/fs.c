/* fs.c: relish.fs, files with undo. This file holds the reads (never gated),
 * the shared plumbing (errors, the resource box, path resolution, atomic
 * puts) and luaopen, which registers the effect providers: effects.c builds
 * and acts, plan.c is the dry-run view, undo.c reverses. */
#define _GNU_SOURCE
#include "fsint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FS_CHUNK 65536

/* ---- failures ---- */

int fs_raise(lua_State *L, const char *verb, const char *path, const relish_status *st) {
  char what[PATH_MAX + 64];
  snprintf(what, sizeof what, "fs.%s %s", verb, path);
  relish_status_push(L, what, st);
  lua_pushstring(L, path);
  lua_setfield(L, -2, "path");
  return lua_error(L);
}

/* ---- paths ---- */

int fs_join(char out[PATH_MAX], const char *dir, const char *name, relish_status *st) {
  int n = strcmp(dir, "/") == 0 ? snprintf(out, PATH_MAX, "/%s", name)
                                : snprintf(out, PATH_MAX, "%s/%s", dir, name);
  if (n < 0 || n >= PATH_MAX) return relish_status_errno(st, ENAMETOOLONG, NULL);
  return 0;
}

int fs_abspath(const char *in, char out[PATH_MAX], relish_status *st) {
  char raw[PATH_MAX];
  if (in[0] == '/') {
    if (strlen(in) >= PATH_MAX) return relish_status_errno(st, ENAMETOOLONG, NULL);
    strcpy(raw, in);
  } else {
    char cwd[PATH_MAX];
    if (getcwd(cwd, sizeof cwd) == NULL) return relish_status_errno(st, errno, "current directory");
    if (fs_join(raw, cwd, in, st) != 0) return -1;
  }
  /* Clean lexically: drop empty and "." components, let ".." pop one. */
  size_t n = 0;
  out[0] = '\0';
  for (char *save = NULL, *c = strtok_r(raw, "/", &save); c != NULL;
       c = strtok_r(NULL, "/", &save)) {
    if (strcmp(c, ".") == 0) continue;
    if (strcmp(c, "..") == 0) {
      while (n > 0 && out[n - 1] != '/')
        n--;
      if (n > 0) n--;
      out[n] = '\0';
      continue;
    }
    size_t cl = strlen(c);
    memmove(out + n + 1, c, cl); /* raw and out differ; c fits as raw did */
    out[n] = '/';
    n += cl + 1;
    out[n] = '\0';
  }
  if (n == 0) strcpy(out, "/");
  return 0;
}

void fs_split(const char *path, char dir[PATH_MAX], char base[PATH_MAX]) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) {
    strcpy(dir, ".");
    strcpy(base, path);
  } else if (slash == path) {
    strcpy(dir, "/");
    strcpy(base, slash + 1);
  } else {
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    strcpy(base, slash + 1);
  }
}

int fs_resolve(const char *in, int follow, char out[PATH_MAX], relish_status *st) {
  char cur[PATH_MAX], dir[PATH_MAX], base[PATH_MAX], rdir[PATH_MAX];
  if (in[0] == '\0') return relish_status_errno(st, ENOENT, NULL);
  if (strlen(in) >= PATH_MAX) return relish_status_errno(st, ENAMETOOLONG, NULL);
  strcpy(cur, in);
  for (int hops = 0; hops <= 40; hops++) {
    size_t n = strlen(cur);
    while (n > 1 && cur[n - 1] == '/')
      cur[--n] = '\0';
    fs_split(cur, dir, base);
    if (base[0] == '\0') { /* the root */
      strcpy(out, "/");
      return 0;
    }
    if (strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
      if (realpath(cur, out) == NULL) return relish_status_errno(st, errno, NULL);
      return 0;
    }
    if (realpath(dir, rdir) == NULL) return relish_status_errno(st, errno, NULL);
    if (fs_join(out, rdir, base, st) != 0) return -1;
    if (!follow) return 0;
    struct stat sb;
    if (lstat(out, &sb) != 0) return errno == ENOENT ? 0 : relish_status_errno(st, errno, NULL);
    if (!S_ISLNK(sb.st_mode)) return 0;
    char target[PATH_MAX];
    ssize_t tl = readlink(out, target, sizeof target - 1);
    if (tl < 0) return relish_status_errno(st, errno, out);
    target[tl] = '\0';
    if (target[0] == '/')
      strcpy(cur, target);
    else if (fs_join(cur, rdir, target, st) != 0)
      return -1;
  }
  return relish_status_errno(st, ELOOP, NULL);
}

int fs_resolve_partial(const char *in, char out[PATH_MAX], relish_status *st) {
  char abs[PATH_MAX], real[PATH_MAX];
  if (fs_abspath(in, abs, st) != 0) return -1;
  size_t cl = strlen(abs);
  struct stat sb;
  for (;;) {
    /* cut the last component; the root always exists */
    while (cl > 1 && abs[cl - 1] != '/')
      cl--;
    cl = cl > 1 ? cl - 1 : 1;
    char cur[PATH_MAX];
    memcpy(cur, abs, cl);
    cur[cl] = '\0';
    if (stat(cur, &sb) == 0) {
      if (!S_ISDIR(sb.st_mode)) {
        st->code = ENOTDIR;
        return relish_status_set(st, NULL, "%s is not a directory", cur);
      }
      if (realpath(cur, real) == NULL) return relish_status_errno(st, errno, cur);
      break;
    }
    if (errno != ENOENT) return relish_status_errno(st, errno, cur);
  }
  const char *rest = cl == 1 ? abs : abs + cl;
  int n = snprintf(out, PATH_MAX, "%s%s", strcmp(real, "/") == 0 ? "" : real, rest);
  if (n < 0 || n >= PATH_MAX) return relish_status_errno(st, ENAMETOOLONG, NULL);
  return 0;
}

int fs_sync_dir(int dfd, relish_status *st) {
  /* Some file systems cannot sync a directory; the rename is still done. */
  if (fsync(dfd) != 0 && errno != EINVAL && errno != EROFS)
    return relish_status_errno(st, errno, NULL);
  return 0;
}

int fs_sync_parent(const char *path, relish_status *st) {
  char dir[PATH_MAX], base[PATH_MAX];
  fs_split(path, dir, base);
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return relish_status_errno(st, errno, dir);
  int rc = fs_sync_dir(fd, st);
  close(fd);
  if (rc != 0) return relish_status_errno(st, st->code, dir);
  return 0;
}

int fs_read_fd(int fd, size_t max, char **out, size_t *len, relish_status *st) {
  struct stat sb;
  size_t cap = FS_CHUNK;
  if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode) && (size_t)sb.st_size + 1 > cap)
    cap = (size_t)sb.st_size + 1;
  if (max != SIZE_MAX && cap > max + 1) cap = max + 1;
  char *buf = malloc(cap + 1);
  size_t n = 0;
  if (buf == NULL) return relish_status_errno(st, ENOMEM, NULL);
  for (;;) {
    if (n == cap) {
      if (n > max) break;
      size_t ncap = cap * 2;
      if (max != SIZE_MAX && ncap > max + 1) ncap = max + 1;
      char *nb = realloc(buf, ncap + 1);
      if (nb == NULL) {
        free(buf);
        return relish_status_errno(st, ENOMEM, NULL);
      }
      buf = nb;
      cap = ncap;
    }
    ssize_t r = read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      int e = errno;
      free(buf);
      return relish_status_errno(st, e, NULL);
    }
    if (r == 0) break;
    n += (size_t)r;
  }
  if (n > max) {
    free(buf);
    st->code = EFBIG;
    return relish_status_set(st, "too_large", "larger than %zu bytes", max);
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  return 0;
}

static int fs_write_all(int fd, const char *data, size_t len) {
  while (len > 0) {
    ssize_t w = write(fd, data, len);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return errno;
    data += w;
    len -= (size_t)w;
  }
  return 0;
}

/* .NAME.relish-SUFFIX, the name cut short to stay within NAME_MAX. */
static void fs_tmpname(char out[NAME_MAX + 1], const char *base, const char *suffix) {
  snprintf(out, NAME_MAX + 1, ".%.200s.relish-%s", base, suffix);
}

/* Six characters that differ from call to call (the XXXXXX of mkstemp). */
static void fs_tmpsuffix(char out[7]) {
  static unsigned counter;
  snprintf(out, 7, "%06x",
           ((unsigned)getpid() * 2654435761u + counter++ * 40503u + (unsigned)time(NULL)) &
               0xffffff);
}

/* Removes temp files a write or link replacement of name in dfd left behind
 * when the process was killed between making and renaming them (the pattern
 * of fs_tmpname is relish's own, so what matches is ours). */
void fs_remove_leftovers(int dfd, const char *name) {
  char prefix[NAME_MAX + 1];
  int plen = snprintf(prefix, sizeof prefix, ".%.200s.relish-", name);
  int fd = dup(dfd);
  DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
  if (d == NULL) {
    if (fd >= 0) close(fd);
    return;
  }
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    struct stat sb;
    if (strncmp(e->d_name, prefix, (size_t)plen) != 0 || strlen(e->d_name) != (size_t)plen + 6)
      continue;
    if (fstatat(dfd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(sb.st_mode))
      unlinkat(dfd, e->d_name, 0);
  }
  closedir(d);
}

/* Pure C from the temp file to the rename: nothing can raise in between, so
 * the temp file is cleaned up here on every failure (a killed process leaves
 * it to fs_remove_leftovers). */
int fs_put_file_at(int dfd, const char *name, const char *data, size_t len, mode_t mode,
                   long long uid, long long gid, relish_status *st) {
  char tmp[NAME_MAX + 1], suffix[7];
  int e, fd;
  for (int attempt = 0;; attempt++) {
    fs_tmpsuffix(suffix);
    fs_tmpname(tmp, name, suffix);
    fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd >= 0) break;
    if (errno != EEXIST || attempt == 100) return relish_status_errno(st, errno, NULL);
  }
  if ((e = fs_write_all(fd, data, len)) != 0) goto fail;
  /* Owner first: chown clears set-id bits that fchmod then puts back. Keeping
   * another user's ownership needs privilege; without it the file becomes
   * ours, as with sed -i. */
  if ((uid >= 0 || gid >= 0) && fchown(fd, (uid_t)uid, (gid_t)gid) != 0 && errno != EPERM) {
    e = errno;
    goto fail;
  }
  if (fchmod(fd, mode) != 0 || fsync(fd) != 0) {
    e = errno;
    goto fail;
  }
  if (close(fd) != 0) {
    fd = -1;
    e = errno;
    goto fail;
  }
  fd = -1;
  if (renameat(dfd, tmp, dfd, name) != 0) {
    e = errno;
    goto fail;
  }
  return fs_sync_dir(dfd, st);
fail:
  if (fd >= 0) close(fd);
  unlinkat(dfd, tmp, 0);
  return relish_status_errno(st, e, NULL);
}

/* Opens the directory holding path (to act in it by name). */
static int open_parent(const char *path, char base[PATH_MAX], relish_status *st) {
  char dir[PATH_MAX];
  fs_split(path, dir, base);
  int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return relish_status_errno(st, errno, NULL);
  return dfd;
}

int fs_put_file(const char *path, const char *data, size_t len, mode_t mode, long long uid,
                long long gid, relish_status *st) {
  char base[PATH_MAX];
  int dfd = open_parent(path, base, st);
  if (dfd < 0) return -1;
  int rc = fs_put_file_at(dfd, base, data, len, mode, uid, gid, st);
  close(dfd);
  return rc;
}

int fs_put_link_at(int dfd, const char *name, const char *target, relish_status *st) {
  char tmp[NAME_MAX + 1], suffix[7];
  for (int attempt = 0;; attempt++) {
    fs_tmpsuffix(suffix);
    fs_tmpname(tmp, name, suffix);
    if (symlinkat(target, dfd, tmp) == 0) break;
    int e = errno;
    if (e != EEXIST || attempt == 100) return relish_status_errno(st, e, NULL);
  }
  if (renameat(dfd, tmp, dfd, name) != 0) {
    int e = errno;
    unlinkat(dfd, tmp, 0);
    return relish_status_errno(st, e, NULL);
  }
  return fs_sync_dir(dfd, st);
}

int fs_put_link(const char *path, const char *target, relish_status *st) {
  char base[PATH_MAX];
  int dfd = open_parent(path, base, st);
  if (dfd < 0) return -1;
  int rc = fs_put_link_at(dfd, base, target, st);
  close(dfd);
  return rc;
}

/* ---- small helpers ---- */

/* The length of the longest prefix of data that is text: UTF-8 without NUL. */
size_t fs_text_prefix(const char *data, size_t len) {
  const unsigned char *s = (const unsigned char *)data;
  size_t i = 0;
  while (i < len) {
    unsigned c = s[i];
    if (c == 0) return i;
    if (c < 0x80) {
      i++;
      continue;
    }
    size_t need;
    unsigned min;
    if (c >= 0xc2 && c <= 0xdf) {
      need = 1;
      min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
      need = 2;
      min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
      need = 3;
      min = 0x10000;
    } else {
      return i;
    }
    unsigned cp = c & (0x3f >> need);
    for (size_t k = 1; k <= need; k++) {
      if (i + k >= len || (s[i + k] & 0xc0) != 0x80) return i;
      cp = cp << 6 | (s[i + k] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return i;
    i += need + 1;
  }
  return i;
}

int fs_is_text(const char *data, size_t len) { return fs_text_prefix(data, len) == len; }

void fs_human(size_t n, char out[32]) {
  if (n < 1000)
    snprintf(out, 32, "%zu B", n);
  else if (n < 1000000)
    snprintf(out, 32, "%.1f kB", (double)n / 1e3);
  else if (n < 1000000000)
    snprintf(out, 32, "%.1f MB", (double)n / 1e6);
  else
    snprintf(out, 32, "%.1f GB", (double)n / 1e9);
}

mode_t fs_checkmode(lua_State *L, int idx, const char *fname) {
  if (lua_type(L, idx) == LUA_TSTRING) {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    int ok = len >= 3 && len <= 5;
    for (size_t i = 0; ok && i < len; i++)
      ok = s[i] >= '0' && s[i] <= '7';
    long v = ok ? strtol(s, NULL, 8) : -1;
    if (v >= 0 && v <= 07777) return (mode_t)v;
  } else if (lua_type(L, idx) == LUA_TNUMBER) {
    int isint;
    lua_Integer v = lua_tointegerx(L, idx, &isint);
    if (isint && v >= 0 && v <= 07777) return (mode_t)v;
  }
  luaL_error(L,
             "%s: mode must be an integer from 0 to 4095 (octal 7777) or an octal string "
             "like \"0755\"",
             fname);
  return 0;
}

size_t fs_optcap(lua_State *L, int idx, const char *fname) {
  size_t cap = FS_DEFAULT_UNDO_CAP;
  if (lua_type(L, idx) != LUA_TTABLE) return cap;
  if (lua_getfield(L, idx, "max_undo") != LUA_TNIL) {
    int isint;
    lua_Integer v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < 0) luaL_error(L, "%s: max_undo must be a number of bytes", fname);
    cap = (size_t)v;
  }
  lua_pop(L, 1);
  return cap;
}

int fs_optundo(lua_State *L, int idx, const char *fname) {
  if (lua_type(L, idx) != LUA_TTABLE) return 1;
  int t = lua_getfield(L, idx, "undo");
  int undo = t == LUA_TNIL || lua_toboolean(L, -1);
  if (t != LUA_TNIL && t != LUA_TBOOLEAN) luaL_error(L, "%s: undo must be a boolean", fname);
  lua_pop(L, 1);
  return undo;
}

const char *fs_checkpath(lua_State *L, int idx, const char *fname) {
  size_t len;
  const char *p = relish_checktext(L, idx, fname, &len);
  if (len == 0 || strlen(p) != len)
    luaL_error(L, "%s: path must be a non-empty string without NUL bytes", fname);
  return p;
}

/* ---- reads ---- */

/* A descriptor open for reading a regular file, in the box: a directory,
 * fifo, socket or device raises (kind io) before any read could block. */
static int fs_open_read(lua_State *L, relish_box *b, const char *verb, const char *path) {
  relish_status st = {0};
  int fd = relish_open_file(path, 0, "io", &st);
  if (fd < 0) fs_raise(L, verb, path, &st);
  return relish_box_fd(b, fd);
}

/* fs.read(path) -> content; raises (not_found, ...) when it cannot */
static int l_fs_read(lua_State *L) {
  const char *path = fs_checkpath(L, 1, "fs.read");
  relish_box *b = relish_box_new(L);
  relish_status st = {0};
  int fd = fs_open_read(L, b, "read", path);
  char *buf;
  size_t len;
  if (fs_read_fd(fd, SIZE_MAX, &buf, &len, &st) != 0) return fs_raise(L, "read", path, &st);
  relish_box_add(b, buf, free);
  lua_pushlstring(L, buf, len);
  relish_box_release(b);
  return 1;
}

/* fs.exists(path) -> bool: anything at path, a dangling link included. A
 * probe: only a failure to look (permission) raises. */
static int l_fs_exists(lua_State *L) {
  const char *path = fs_checkpath(L, 1, "fs.exists");
  struct stat sb;
  if (lstat(path, &sb) == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  if (errno == ENOENT || errno == ENOTDIR) {
    lua_pushboolean(L, 0);
    return 1;
  }
  relish_status st = {0};
  relish_status_errno(&st, errno, NULL);
  return fs_raise(L, "exists", path, &st);
}

/* fs.stat(path) -> {type, mode, size, mtime, uid, gid, target}; a missing
 * path raises not_found (fs.exists is the probe, try(fs.stat, p) the form
 * that returns nil, err). */
static int l_fs_stat(lua_State *L) {
  const char *path = fs_checkpath(L, 1, "fs.stat");
  relish_status st = {0};
  struct stat sb;
  if (lstat(path, &sb) != 0) {
    relish_status_errno(&st, errno, NULL);
    return fs_raise(L, "stat", path, &st);
  }
  char target[PATH_MAX];
  ssize_t tl = -1;
  if (S_ISLNK(sb.st_mode) && (tl = readlink(path, target, sizeof target - 1)) < 0) {
    relish_status_errno(&st, errno, NULL);
    return fs_raise(L, "stat", path, &st);
  }
  lua_createtable(L, 0, 7);
  lua_pushstring(L, S_ISREG(sb.st_mode)   ? "file"
                    : S_ISDIR(sb.st_mode) ? "dir"
                    : S_ISLNK(sb.st_mode) ? "link"
                                          : "other");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, sb.st_mode & 07777);
  lua_setfield(L, -2, "mode");
  lua_pushinteger(L, (lua_Integer)sb.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)sb.st_mtim.tv_sec);
  lua_setfield(L, -2, "mtime");
  lua_pushinteger(L, (lua_Integer)sb.st_uid);
  lua_setfield(L, -2, "uid");
  lua_pushinteger(L, (lua_Integer)sb.st_gid);
  lua_setfield(L, -2, "gid");
  if (tl >= 0) {
    lua_pushlstring(L, target, (size_t)tl);
    lua_setfield(L, -2, "target");
  }
  return 1;
}

static int fs_cmpname(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in dir (without "." and ".."), sorted, as one malloc'd block: a
 * NULL-terminated pointer array followed by the strings, so one free() (or
 * one box slot) releases it. Returns NULL with *err set on failure. */
char **fs_read_names(const char *dir, size_t *count, int *err) {
  DIR *d = opendir(dir);
  *count = 0;
  *err = 0;
  if (d == NULL) {
    *err = errno;
    return NULL;
  }
  char **names = NULL;
  size_t n = 0, cap = 0, bytes = 0;
  struct dirent *e;
  errno = 0;
  while ((e = readdir(d)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    if (n == cap) {
      size_t ncap = cap ? cap * 2 : 32;
      char **nn = realloc(names, ncap * sizeof *nn);
      if (nn == NULL) {
        *err = ENOMEM;
        break;
      }
      names = nn;
      cap = ncap;
    }
    if ((names[n] = strdup(e->d_name)) == NULL) {
      *err = ENOMEM;
      break;
    }
    bytes += strlen(names[n]) + 1;
    n++;
  }
  if (*err == 0 && errno != 0) *err = errno;
  closedir(d);
  char **block = NULL;
  if (*err == 0) {
    block = malloc((n + 1) * sizeof *block + bytes);
    if (block == NULL) *err = ENOMEM;
  }
  if (block != NULL) {
    char *strings = (char *)(block + n + 1);
    for (size_t i = 0, off = 0; i < n; i++) {
      size_t l = strlen(names[i]) + 1;
      memcpy(strings + off, names[i], l);
      block[i] = strings + off;
      off += l;
    }
    block[n] = NULL;
    if (n > 1) qsort(block, n, sizeof *block, fs_cmpname);
    *count = n;
  }
  for (size_t i = 0; i < n; i++)
    free(names[i]);
  free(names);
  return block;
}

/* fs.list(dir) -> sorted names (without "." and "..") */
static int l_fs_list(lua_State *L) {
  const char *path = fs_checkpath(L, 1, "fs.list");
  relish_box *b = relish_box_new(L);
  relish_status st = {0};
  size_t n;
  int err;
  char **names = relish_box_add(b, fs_read_names(path, &n, &err), free);
  if (names == NULL) {
    relish_status_errno(&st, err, NULL);
    return fs_raise(L, "list", path, &st);
  }
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, names[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  relish_box_release(b);
  return 1;
}

/* fs.hash(path) -> sha256 hex */
static int l_fs_hash(lua_State *L) {
  const char *path = fs_checkpath(L, 1, "fs.hash");
  relish_box *b = relish_box_new(L);
  relish_status st = {0};
  int fd = fs_open_read(L, b, "hash", path);
  char *buf = relish_box_add(b, malloc(FS_CHUNK), free);
  if (buf == NULL) return luaL_error(L, "not enough memory");
  fs_sha256_ctx c;
  fs_sha256_init(&c);
  for (;;) {
    ssize_t n = read(fd, buf, FS_CHUNK);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      relish_status_errno(&st, errno, NULL);
      return fs_raise(L, "hash", path, &st);
    }
    if (n == 0) break;
    fs_sha256_update(&c, buf, (size_t)n);
  }
  unsigned char d[32];
  char hex[65];
  fs_sha256_final(&c, d);
  fs_hex(d, 32, hex);
  lua_pushstring(L, hex);
  relish_box_release(b);
  return 1;
}

/* fs.sha256(data) -> hex digest of a string */
static int l_fs_sha256(lua_State *L) {
  size_t len;
  const char *s = relish_checktext(L, 1, "fs.sha256", &len);
  char hex[65];
  fs_sha256_hex(s, len, hex);
  lua_pushstring(L, hex);
  return 1;
}

/* diff(old, new [, from, to]) -> unified diff with 3 lines of context, "" when
 * equal: what plans show, for modules that describe other things as text */
static int l_fs_diff(lua_State *L) {
  size_t alen, blen;
  const char *a = relish_checktext(L, 1, "fs.diff", &alen);
  const char *b = relish_checktext(L, 2, "fs.diff", &blen);
  const char *from = luaL_optstring(L, 3, "a");
  const char *to = luaL_optstring(L, 4, from);
  char *d = fs_diff(a, alen, from, b, blen, to);
  if (!d) return luaL_error(L, "fs.diff: out of memory");
  lua_pushstring(L, d);
  free(d);
  return 1;
}

/* The effects, registered once: the gate journals, plans and undoes them. */
static const char *const node_fields[] = {"v", "path", "before", NULL};
static const char *const mkdir_fields[] = {"v", "path", "created", NULL};
static const char *const chmod_fields[] = {"v", "path", NULL};
static const relish_provider providers[] = {
    /* kind, apply, plan, undo, fields */
    {"fs.write", fs_apply_put, fs_plan_put, fs_undo_write, node_fields},
    {"fs.copy", fs_apply_put, fs_plan_put, fs_undo_copy, node_fields},
    {"fs.mkdir", fs_apply_mkdir, fs_plan_mkdir, fs_undo_mkdir, mkdir_fields},
    {"fs.remove", fs_apply_remove, fs_plan_remove, fs_undo_remove, node_fields},
    {"fs.symlink", fs_apply_symlink, fs_plan_symlink, fs_undo_symlink, node_fields},
    {"fs.chmod", fs_apply_chmod, fs_plan_chmod, fs_undo_chmod, chmod_fields},
    {NULL}};

int luaopen_relish_fs(lua_State *L) {
  static const luaL_Reg funcs[] = {{"read", l_fs_read},     {"exists", l_fs_exists},
                                   {"stat", l_fs_stat},     {"list", l_fs_list},
                                   {"hash", l_fs_hash},     {"write", l_fs_write},
                                   {"copy", l_fs_copy},     {"mkdir", l_fs_mkdir},
                                   {"remove", l_fs_remove}, {"symlink", l_fs_symlink},
                                   {"chmod", l_fs_chmod},   {"sha256", l_fs_sha256},
                                   {"diff", l_fs_diff},     {NULL, NULL}};
  luaL_newmetatable(L, FS_OP_MT); /* plain memory: nothing to release */
  lua_pop(L, 1);
  relish_effect_register(L, "relish.fs", providers);
  luaL_newlib(L, funcs);
  lua_pushinteger(L, (lua_Integer)FS_DEFAULT_UNDO_CAP);
  lua_setfield(L, -2, "UNDO_CAP");
  return 1;
}
