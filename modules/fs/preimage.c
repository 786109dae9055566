/* preimage.c: the state an action is about to change, captured as a Lua
 * table for its undo record (content, mode, owner, link target, whole trees
 * within a byte budget), and the fingerprint a saved plan checks. */
#define _GNU_SOURCE
#include "fsint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char b64chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

void fs_base64(const char *data, size_t len, char *out) {
  const unsigned char *s = (const unsigned char *)data;
  char *o = out;
  size_t i = 0;
  for (; i + 2 < len; i += 3) {
    unsigned v = (unsigned)s[i] << 16 | (unsigned)s[i + 1] << 8 | s[i + 2];
    *o++ = b64chars[v >> 18];
    *o++ = b64chars[v >> 12 & 63];
    *o++ = b64chars[v >> 6 & 63];
    *o++ = b64chars[v & 63];
  }
  if (i < len) {
    unsigned v = (unsigned)s[i] << 16 | (i + 1 < len ? (unsigned)s[i + 1] << 8 : 0);
    *o++ = b64chars[v >> 18];
    *o++ = b64chars[v >> 12 & 63];
    *o++ = i + 1 < len ? b64chars[v >> 6 & 63] : '=';
    *o++ = '=';
  }
}

long fs_unbase64(const char *in, size_t len, char *out) {
  unsigned acc = 0;
  int bits = 0;
  long n = 0;
  size_t pad = 0;
  if (len % 4 != 0) return -1;
  for (size_t i = 0; i < len; i++) {
    const char *p;
    if (in[i] == '=') {
      if (++pad > 2 || i + 3 - pad < len - 1) return -1;
      continue;
    }
    if (pad > 0 || in[i] == '\0' || (p = strchr(b64chars, in[i])) == NULL) return -1;
    acc = acc << 6 | (unsigned)(p - b64chars);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[n++] = (char)(acc >> bits & 0xff);
    }
  }
  return n;
}

void fs_set_bytes(lua_State *L, int t, const char *key, const char *data, size_t len) {
  t = lua_absindex(L, t);
  if (fs_is_text(data, len)) {
    lua_pushlstring(L, data, len);
    lua_setfield(L, t, key);
    return;
  }
  /* the buffer owns the stack top until pushresult: nothing else in between */
  luaL_Buffer B;
  size_t n = (len + 2) / 3 * 4;
  fs_base64(data, len, luaL_buffinitsize(L, &B, n));
  luaL_pushresultsize(&B, n);
  char k[64];
  snprintf(k, sizeof k, "%s_b64", key);
  lua_setfield(L, t, k);
}

/* A path in a record: key always holds text (bytes that are not UTF-8 shown
 * as U+FFFD, so every record names its path readably), and key_b64 the exact
 * bytes when they are not text. Readers take key_b64 first. */
void fs_set_path(lua_State *L, int t, const char *key, const char *data, size_t len) {
  t = lua_absindex(L, t);
  if (fs_is_text(data, len)) {
    lua_pushlstring(L, data, len);
    lua_setfield(L, t, key);
    return;
  }
  fs_set_bytes(L, t, key, data, len);
  luaL_Buffer B;
  luaL_buffinit(L, &B);
  for (size_t i = 0; i < len;) {
    size_t n = fs_text_prefix(data + i, len - i);
    luaL_addlstring(&B, data + i, n);
    i += n;
    if (i < len) {
      luaL_addstring(&B, "\xEF\xBF\xBD"); /* U+FFFD for one byte that is not text */
      i++;
    }
  }
  luaL_pushresult(&B);
  lua_setfield(L, t, key);
}

static void set_int(lua_State *L, int t, const char *k, lua_Integer v) {
  lua_pushinteger(L, v);
  lua_setfield(L, t, k);
}

static void set_str(lua_State *L, int t, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, t, k);
}

static int holds_secret(lua_State *L, const char *data, size_t len) {
  size_t rlen;
  const char *r = relish_redact(L, data, len, &rlen);
  int differs = r == NULL || rlen != len || memcmp(r, data, len) != 0;
  lua_pop(L, 1);
  return differs;
}

/* Times in nanoseconds since the epoch: undo puts them back, so a restored
 * file looks untouched to make, rsync and backups. Not in fingerprints. */
static void node_times(lua_State *L, int node, const struct stat *sb) {
  set_int(L, node, "mtime_ns", (lua_Integer)sb->st_mtim.tv_sec * 1000000000 + sb->st_mtim.tv_nsec);
  set_int(L, node, "atime_ns", (lua_Integer)sb->st_atim.tv_sec * 1000000000 + sb->st_atim.tv_nsec);
}

/* Fields shared by files and directories: owner, permission bits, times. */
static void node_meta(lua_State *L, int node, const char *type, const struct stat *sb) {
  set_str(L, node, "type", type);
  set_int(L, node, "mode", sb->st_mode & 07777);
  set_int(L, node, "uid", (lua_Integer)sb->st_uid);
  set_int(L, node, "gid", (lua_Integer)sb->st_gid);
  node_times(L, node, sb);
}

void fs_node_file(lua_State *L, int node, const char *data, size_t len, const struct stat *sb) {
  char hex[65];
  node = lua_absindex(L, node);
  fs_sha256_hex(data, len, hex);
  node_meta(L, node, "file", sb);
  set_int(L, node, "size", (lua_Integer)len);
  set_str(L, node, "sha256", hex);
  if (holds_secret(L, data, len)) {
    lua_pushboolean(L, 1);
    lua_setfield(L, node, "redacted");
    return;
  }
  fs_set_bytes(L, node, "content", data, len);
}

void fs_node_stat(lua_State *L, int node, const struct stat *sb) {
  node = lua_absindex(L, node);
  node_meta(L, node, "file", sb);
  set_int(L, node, "size", (lua_Integer)sb->st_size);
}

void fs_node_link(lua_State *L, int node, const char *target) {
  node = lua_absindex(L, node);
  set_str(L, node, "type", "link");
  fs_set_bytes(L, node, "target", target, strlen(target));
}

/* Pushes the entries of a directory, sorted, as a list of {name = ...}. */
static int list_entries(lua_State *L, relish_box *b, const char *path, relish_status *st) {
  size_t n;
  int err;
  char **names = relish_box_add(b, fs_read_names(path, &n, &err), free);
  if (names == NULL) return relish_status_errno(st, err, path);
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_createtable(L, 0, 8);
    fs_set_bytes(L, -1, "name", names[i], strlen(names[i]));
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  relish_box_drop(b, names);
  return 0;
}

/* The raw name of an entry table made by list_entries. */
static int entry_name(lua_State *L, int child, char out[NAME_MAX + 1]) {
  size_t l;
  if (lua_getfield(L, child, "name") == LUA_TSTRING) {
    snprintf(out, NAME_MAX + 1, "%s", lua_tostring(L, -1));
    lua_pop(L, 1);
    return 0;
  }
  lua_pop(L, 1);
  lua_getfield(L, child, "name_b64");
  const char *s = lua_tolstring(L, -1, &l);
  char buf[NAME_MAX + 8];
  long n = s != NULL && l > 0 && l / 4 * 3 <= sizeof buf ? fs_unbase64(s, l, buf) : -1;
  lua_pop(L, 1);
  if (n < 0 || n > NAME_MAX) return -1;
  memcpy(out, buf, (size_t)n);
  out[n] = '\0';
  return 0;
}

static __attribute__((noinline)) int capture_link(lua_State *L, int node, const char *path,
                                                  const struct stat *sb, relish_status *st) {
  char target[PATH_MAX];
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) return relish_status_errno(st, errno, path);
  target[n] = '\0';
  fs_node_link(L, node, target);
  node_times(L, node, sb);
  return 0;
}

static int capture_file(lua_State *L, relish_box *b, int node, const char *path,
                        const struct stat *sb, fs_budget *bud, relish_status *st) {
  size_t size = (size_t)sb->st_size;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return relish_status_errno(st, errno, path);
  char *data;
  size_t len;
  relish_status rst = {0};
  int rc = fs_read_fd(fd, bud->cap - bud->used, &data, &len, &rst);
  close(fd);
  if (rc != 0) {
    if (rst.kind != NULL) { /* grew past the cap while we looked */
      bud->over = 1;
      bud->used += size;
      return 0;
    }
    st->code = rst.code;
    return relish_status_set(st, rst.kind, "%s: %s", path, rst.msg);
  }
  bud->used += len;
  relish_box_add(b, data, free);
  fs_node_file(L, node, data, len, sb);
  relish_box_drop(b, data);
  return 0;
}

/* Fills the node table at node with what is at path. */
static int capture_into(lua_State *L, relish_box *b, int node, char path[PATH_MAX], int recursive,
                        int depth, fs_budget *bud, relish_status *st) {
  struct stat sb;
  luaL_checkstack(L, 8, "directory tree too deep");
  if (lstat(path, &sb) != 0) {
    if (errno == ENOENT && depth == 0) {
      set_str(L, node, "type", "absent");
      return 0;
    }
    return relish_status_errno(st, errno, path);
  }
  if (S_ISREG(sb.st_mode)) {
    bud->files++;
    if (bud->no_content) {
      bud->used += (size_t)sb.st_size;
      fs_node_stat(L, node, &sb);
      return 0;
    }
    if (bud->over || (size_t)sb.st_size > bud->cap - bud->used) {
      /* Over the cap: go on counting so the error can give the full size. */
      bud->over = 1;
      bud->used += (size_t)sb.st_size;
      return 0;
    }
    return capture_file(L, b, node, path, &sb, bud, st);
  }
  if (S_ISLNK(sb.st_mode)) {
    bud->links++;
    return capture_link(L, node, path, &sb, st);
  }
  if (!S_ISDIR(sb.st_mode)) {
    const char *what = S_ISFIFO(sb.st_mode) ? "fifo" : S_ISSOCK(sb.st_mode) ? "socket" : "device";
    return relish_status_set(st, "io", "%s is a %s, which cannot be recorded for undo", path, what);
  }
  if (depth > 0) bud->dirs++;
  node_meta(L, node, "dir", &sb);
  if (!recursive) return 0;
  if (depth >= FS_MAX_DEPTH)
    return relish_status_set(st, "io", "%s: deeper than %d levels", path, FS_MAX_DEPTH);
  if (list_entries(L, b, path, st) != 0) return -1;
  int entries = lua_gettop(L);
  lua_pushvalue(L, entries);
  lua_setfield(L, node, "entries");
  size_t plen = strlen(path);
  lua_Integer n = (lua_Integer)lua_rawlen(L, entries);
  int rc = 0;
  for (lua_Integer i = 1; rc == 0 && i <= n; i++) {
    char name[NAME_MAX + 1];
    lua_rawgeti(L, entries, i);
    int child = lua_gettop(L);
    if (entry_name(L, child, name) != 0) {
      rc = relish_status_errno(st, ENOMEM, path);
    } else if (plen + 1 + strlen(name) >= PATH_MAX) {
      rc = relish_status_errno(st, ENAMETOOLONG, path);
    } else {
      snprintf(path + plen, PATH_MAX - plen, "%s%s", plen == 1 ? "" : "/", name);
      rc = capture_into(L, b, child, path, recursive, depth + 1, bud, st);
      path[plen] = '\0';
    }
    lua_settop(L, entries);
  }
  lua_settop(L, entries - 1);
  return rc;
}

int fs_capture(lua_State *L, relish_box *b, const char *path, int recursive, fs_budget *bud,
               relish_status *st) {
  char buf[PATH_MAX];
  lua_createtable(L, 0, 8);
  snprintf(buf, sizeof buf, "%s", path);
  if (capture_into(L, b, lua_gettop(L), buf, recursive, 0, bud, st) != 0) {
    lua_pop(L, 1);
    return -1;
  }
  if (bud->over) {
    lua_pop(L, 1);
    return fs_set_too_large(st, bud);
  }
  return 0;
}

int fs_set_too_large(relish_status *st, const fs_budget *bud) {
  char have[32], cap[32];
  fs_human(bud->used, have);
  fs_human(bud->cap, cap);
  st->code = EFBIG;
  return relish_status_set(
      st, "too_large",
      "the undo record would hold %zu bytes (%s), over the cap of %zu bytes (%s); "
      "raise it with the max_undo option",
      bud->used, have, bud->cap, cap);
}

/* ---- fingerprints ---- */

/* The keys a node can have, in the order capture adds them: a tree's digest
 * is over the tree as compact JSON with its keys in this order, so the same
 * live tree always gives the same fingerprint. */
static const char *const node_keys[] = {
    "name",     "name_b64", "type",        "mode",   "uid",        "gid",     "size", "sha256",
    "redacted", "content",  "content_b64", "target", "target_b64", "entries", NULL};

static void hash_str(fs_sha256_ctx *c, const char *s, size_t len) {
  fs_sha256_update(c, "\"", 1);
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = (unsigned char)s[i];
    char esc[8];
    const char *e = NULL;
    switch (ch) {
    case '"':
      e = "\\\"";
      break;
    case '\\':
      e = "\\\\";
      break;
    case '\b':
      e = "\\b";
      break;
    case '\f':
      e = "\\f";
      break;
    case '\n':
      e = "\\n";
      break;
    case '\r':
      e = "\\r";
      break;
    case '\t':
      e = "\\t";
      break;
    default:
      if (ch < 32) {
        snprintf(esc, sizeof esc, "\\u%04x", ch);
        e = esc;
      }
    }
    if (e != NULL)
      fs_sha256_update(c, e, strlen(e));
    else
      fs_sha256_update(c, &s[i], 1);
  }
  fs_sha256_update(c, "\"", 1);
}

static void hash_value(lua_State *L, int v, fs_sha256_ctx *c, int depth);

static void hash_node(lua_State *L, int node, fs_sha256_ctx *c, int depth) {
  luaL_checkstack(L, 4, "directory tree too deep");
  int first = 1;
  fs_sha256_update(c, "{", 1);
  for (const char *const *k = node_keys; *k != NULL; k++) {
    if (lua_getfield(L, node, *k) != LUA_TNIL) {
      if (!first) fs_sha256_update(c, ",", 1);
      first = 0;
      hash_str(c, *k, strlen(*k));
      fs_sha256_update(c, ":", 1);
      hash_value(L, lua_gettop(L), c, depth);
    }
    lua_pop(L, 1);
  }
  fs_sha256_update(c, "}", 1);
}

static void hash_value(lua_State *L, int v, fs_sha256_ctx *c, int depth) {
  char num[32];
  size_t len;
  switch (lua_type(L, v)) {
  case LUA_TSTRING: {
    const char *s = lua_tolstring(L, v, &len);
    hash_str(c, s, len);
    break;
  }
  case LUA_TNUMBER:
    snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, v));
    fs_sha256_update(c, num, strlen(num));
    break;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, v))
      fs_sha256_update(c, "true", 4);
    else
      fs_sha256_update(c, "false", 5);
    break;
  case LUA_TTABLE:
    if (depth > FS_MAX_DEPTH + 1) luaL_error(L, "directory tree too deep");
    fs_sha256_update(c, "[", 1); /* only entries is a table: a list of nodes */
    for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, v); i <= n; i++) {
      if (i > 1) fs_sha256_update(c, ",", 1);
      lua_rawgeti(L, v, i);
      hash_node(L, lua_gettop(L), c, depth + 1);
      lua_pop(L, 1);
    }
    fs_sha256_update(c, "]", 1);
    break;
  default:
    fs_sha256_update(c, "null", 4);
  }
}

static const char *str_field(lua_State *L, int node, const char *key) {
  lua_getfield(L, node, key);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1); /* still anchored by the node */
  return s;
}

void fs_fingerprint(lua_State *L, int node, char *out, size_t outlen) {
  node = lua_absindex(L, node);
  const char *type = str_field(L, node, "type");
  lua_getfield(L, node, "mode");
  unsigned mode = (unsigned)lua_tointeger(L, -1);
  lua_pop(L, 1);
  if (type == NULL || strcmp(type, "absent") == 0) {
    snprintf(out, outlen, "absent");
  } else if (strcmp(type, "file") == 0) {
    const char *h = str_field(L, node, "sha256");
    snprintf(out, outlen, "file:%s:%04o", h ? h : "?", mode);
  } else if (strcmp(type, "link") == 0) {
    const char *t = str_field(L, node, "target");
    if (t != NULL)
      snprintf(out, outlen, "link:%s", t);
    else
      snprintf(out, outlen, "link:b64:%s", str_field(L, node, "target_b64"));
  } else {
    int tree = lua_getfield(L, node, "entries") == LUA_TTABLE && lua_rawlen(L, -1) > 0;
    lua_pop(L, 1);
    if (tree) {
      fs_sha256_ctx c;
      unsigned char d[32];
      char hex[65];
      fs_sha256_init(&c);
      hash_node(L, node, &c, 0);
      fs_sha256_final(&c, d);
      fs_hex(d, 32, hex);
      snprintf(out, outlen, "dir:%04o:%s", mode, hex);
    } else {
      snprintf(out, outlen, "dir:%04o", mode);
    }
  }
}
