/* preimage.c: the state an action is about to change, captured as a JSON
 * node for its undo record (content, mode, owner, link target, whole trees
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

char *fs_base64(const char *data, size_t len, size_t *outlen) {
  const unsigned char *s = (const unsigned char *)data;
  size_t n = (len + 2) / 3 * 4;
  char *out = malloc(n + 1), *o = out;
  if (out == NULL) return NULL;
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
  *o = '\0';
  if (outlen != NULL) *outlen = n;
  return out;
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

int fs_json_bytes(cJSON *obj, const char *key, const char *data, size_t len) {
  if (fs_is_text(data, len)) {
    /* cJSON wants a C string; data may be a slice, so copy. */
    char *s = malloc(len + 1);
    if (s == NULL) return -1;
    memcpy(s, data, len);
    s[len] = '\0';
    cJSON *item = cJSON_CreateString(s);
    free(s);
    return item != NULL && cJSON_AddItemToObject(obj, key, item) ? 0 : (cJSON_Delete(item), -1);
  }
  char k[64];
  snprintf(k, sizeof k, "%s_b64", key);
  char *enc = fs_base64(data, len, NULL);
  cJSON *item = enc != NULL ? cJSON_CreateString(enc) : NULL;
  free(enc);
  return item != NULL && cJSON_AddItemToObject(obj, k, item) ? 0 : (cJSON_Delete(item), -1);
}

static int add_num(cJSON *o, const char *k, double v) {
  return cJSON_AddNumberToObject(o, k, v) != NULL ? 0 : -1;
}

static int add_str(cJSON *o, const char *k, const char *v) {
  return cJSON_AddStringToObject(o, k, v) != NULL ? 0 : -1;
}

static int holds_secret(lua_State *L, const char *data, size_t len) {
  size_t rlen;
  const char *r = relish_redact(L, data, len, &rlen);
  int differs = r == NULL || rlen != len || memcmp(r, data, len) != 0;
  lua_pop(L, 1);
  return differs;
}

/* Fields shared by files and directories: owner and permission bits. */
static int node_meta(cJSON *node, const char *type, const struct stat *sb) {
  return add_str(node, "type", type) || add_num(node, "mode", sb->st_mode & 07777) ||
                 add_num(node, "uid", sb->st_uid) || add_num(node, "gid", sb->st_gid)
             ? -1
             : 0;
}

int fs_node_file(lua_State *L, cJSON *node, const char *data, size_t len, const struct stat *sb) {
  char hex[65];
  fs_sha256_hex(data, len, hex);
  if (node_meta(node, "file", sb) || add_num(node, "size", (double)len) ||
      add_str(node, "sha256", hex))
    return -1;
  if (holds_secret(L, data, len)) return cJSON_AddTrueToObject(node, "redacted") != NULL ? 0 : -1;
  return fs_json_bytes(node, "content", data, len);
}

int fs_node_link(cJSON *node, const char *target) {
  if (add_str(node, "type", "link")) return -1;
  return fs_json_bytes(node, "target", target, strlen(target));
}

static int node_fail(fs_status *st) { return fs_set_errno(st, ENOMEM, NULL); }

/* The entries of a directory, sorted, as {name = ...} objects in arr. */
static int list_entries(const char *path, cJSON *arr, fs_status *st) {
  size_t n;
  int err;
  char **names = fs_read_names(path, &n, &err);
  if (names == NULL) return fs_set_errno(st, err, path);
  for (size_t i = 0; i < n && err == 0; i++) {
    cJSON *child = cJSON_CreateObject();
    if (child == NULL || !cJSON_AddItemToArray(arr, child)) {
      cJSON_Delete(child);
      err = ENOMEM;
    } else if (fs_json_bytes(child, "name", names[i], strlen(names[i])) != 0) {
      err = ENOMEM;
    }
  }
  free(names);
  return err ? fs_set_errno(st, err, path) : 0;
}

/* The raw name of an entry object built by list_entries. */
static int entry_name(const cJSON *child, char out[NAME_MAX + 1]) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(child, "name");
  if (cJSON_IsString(s)) {
    snprintf(out, NAME_MAX + 1, "%s", s->valuestring);
    return 0;
  }
  s = cJSON_GetObjectItemCaseSensitive(child, "name_b64");
  char buf[NAME_MAX + 8];
  size_t l = cJSON_IsString(s) ? strlen(s->valuestring) : 0;
  long n = l > 0 && l / 4 * 3 <= sizeof buf ? fs_unbase64(s->valuestring, l, buf) : -1;
  if (n < 0 || n > NAME_MAX) return -1;
  memcpy(out, buf, (size_t)n);
  out[n] = '\0';
  return 0;
}

static __attribute__((noinline)) int capture_link(cJSON *node, const char *path, fs_status *st) {
  char target[PATH_MAX];
  ssize_t n = readlink(path, target, sizeof target - 1);
  if (n < 0) return fs_set_errno(st, errno, path);
  target[n] = '\0';
  return fs_node_link(node, target) ? node_fail(st) : 0;
}

static int capture_file(lua_State *L, fs_box *b, cJSON *node, const char *path,
                        const struct stat *sb, fs_budget *bud, fs_status *st) {
  size_t size = (size_t)sb->st_size;
  int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return fs_set_errno(st, errno, path);
  char *data;
  size_t len;
  fs_status rst = {0};
  int rc = fs_read_fd(fd, bud->cap - bud->used, &data, &len, &rst);
  close(fd);
  if (rc != 0) {
    if (rst.kind != NULL) { /* grew past the cap while we looked */
      bud->over = 1;
      bud->used += size;
      return 0;
    }
    return fs_set(st, rst.code, "%s: %s", path, rst.msg);
  }
  bud->used += len;
  fs_box_mem(b, data);
  rc = fs_node_file(L, node, data, len, sb);
  fs_box_free(b, data);
  return rc ? node_fail(st) : 0;
}

static int capture_into(lua_State *L, fs_box *b, cJSON *node, char path[PATH_MAX], int recursive,
                        int depth, fs_budget *bud, fs_status *st) {
  struct stat sb;
  if (lstat(path, &sb) != 0) {
    if (errno == ENOENT && depth == 0) return add_str(node, "type", "absent") ? node_fail(st) : 0;
    return fs_set_errno(st, errno, path);
  }
  if (S_ISREG(sb.st_mode)) {
    bud->files++;
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
    return capture_link(node, path, st);
  }
  if (!S_ISDIR(sb.st_mode)) {
    const char *what = S_ISFIFO(sb.st_mode) ? "fifo" : S_ISSOCK(sb.st_mode) ? "socket" : "device";
    return fs_set(st, 0, "%s is a %s, which cannot be recorded for undo", path, what);
  }
  if (depth > 0) bud->dirs++;
  if (node_meta(node, "dir", &sb)) return node_fail(st);
  if (!recursive) return 0;
  if (depth >= FS_MAX_DEPTH)
    return fs_set(st, ELOOP, "%s: deeper than %d levels", path, FS_MAX_DEPTH);
  cJSON *arr = cJSON_AddArrayToObject(node, "entries");
  if (arr == NULL) return node_fail(st);
  if (list_entries(path, arr, st) != 0) return -1;
  size_t plen = strlen(path);
  cJSON *child;
  cJSON_ArrayForEach(child, arr) {
    char name[NAME_MAX + 1];
    if (entry_name(child, name) != 0) return node_fail(st);
    char *end = path + plen;
    if (plen + 1 + strlen(name) >= PATH_MAX) return fs_set_errno(st, ENAMETOOLONG, path);
    snprintf(end, PATH_MAX - plen, "%s%s", plen == 1 ? "" : "/", name);
    int rc = capture_into(L, b, child, path, recursive, depth + 1, bud, st);
    path[plen] = '\0';
    if (rc != 0) return -1;
  }
  return 0;
}

cJSON *fs_capture(lua_State *L, fs_box *b, cJSON *into, const char *key, const char *path,
                  int recursive, fs_budget *bud, fs_status *st) {
  char buf[PATH_MAX];
  cJSON *node = cJSON_AddObjectToObject(into, key);
  if (node == NULL) {
    node_fail(st);
    return NULL;
  }
  snprintf(buf, sizeof buf, "%s", path);
  if (capture_into(L, b, node, buf, recursive, 0, bud, st) != 0) return NULL;
  if (bud->over) {
    fs_set_too_large(st, bud);
    return NULL;
  }
  return node;
}

int fs_set_too_large(fs_status *st, const fs_budget *bud) {
  char have[32], cap[32];
  fs_human(bud->used, have);
  fs_human(bud->cap, cap);
  st->kind = "too_large";
  return fs_set(st, EFBIG,
                "the undo record would hold %zu bytes (%s), over the cap of %zu bytes (%s); "
                "raise it with the max_undo option",
                bud->used, have, bud->cap, cap);
}

static const char *str_field(const cJSON *node, const char *key) {
  const cJSON *s = cJSON_GetObjectItemCaseSensitive(node, key);
  return cJSON_IsString(s) ? s->valuestring : NULL;
}

void fs_fingerprint(const cJSON *node, char *out, size_t outlen) {
  const char *type = str_field(node, "type");
  const cJSON *m = cJSON_GetObjectItemCaseSensitive(node, "mode");
  unsigned mode = cJSON_IsNumber(m) ? (unsigned)m->valueint : 0;
  if (type == NULL || strcmp(type, "absent") == 0) {
    snprintf(out, outlen, "absent");
  } else if (strcmp(type, "file") == 0) {
    const char *h = str_field(node, "sha256");
    snprintf(out, outlen, "file:%s:%04o", h ? h : "?", mode);
  } else if (strcmp(type, "link") == 0) {
    const char *t = str_field(node, "target");
    if (t != NULL)
      snprintf(out, outlen, "link:%s", t);
    else
      snprintf(out, outlen, "link:b64:%s", str_field(node, "target_b64"));
  } else {
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(node, "entries");
    char *text = cJSON_GetArraySize(e) > 0 ? cJSON_PrintUnformatted(node) : NULL;
    if (text != NULL) {
      char hex[65];
      fs_sha256_hex(text, strlen(text), hex);
      cJSON_free(text);
      snprintf(out, outlen, "dir:%04o:%s", mode, hex);
    } else {
      snprintf(out, outlen, "dir:%04o", mode);
    }
  }
}
