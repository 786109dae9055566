/* secret.c: secret values. A secret is a userdata that prints as "***"; every
 * secret value ever made in this process is remembered, with the forms JSON
 * gives it, so that relish_redact can remove it from any text bound for the
 * terminal, the journal, an error or a plan. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hostint.h"

#define SECRET_MT "relish.Secret"
#define MIN_REDACT 3 /* shorter values would redact ordinary text */

typedef struct {
  size_t len;
  char value[];
} secret_box;

/* A growable list of byte strings (copies). */
typedef struct {
  char **v;
  size_t *len, n, cap;
} strlist;

static void strlist_add(strlist *l, const char *v, size_t len) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    char **k = realloc(l->v, cap * sizeof *k);
    if (!k) return;
    l->v = k;
    size_t *kl = realloc(l->len, cap * sizeof *kl);
    if (!kl) return;
    l->len = kl;
    l->cap = cap;
  }
  char *copy = malloc(len ? len : 1);
  if (!copy) return;
  memcpy(copy, v, len);
  l->v[l->n] = copy;
  l->len[l->n++] = len;
}

static void strlist_free(strlist *l) {
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  free(l->len);
  *l = (strlist){0};
}

/* The values the redactor replaces. */
static strlist known;

static void remember_form(const char *v, size_t len) {
  if (len < MIN_REDACT) return;
  for (size_t i = 0; i < known.n; i++)
    if (known.len[i] == len && memcmp(known.v[i], v, len) == 0) return;
  strlist_add(&known, v, len);
}

/* Values whose JSON forms differ from them (a quote, a backslash, a control
 * or non-ASCII character) wait here until the next relish_redact, which has
 * a Lua state to run relish.json's encoder with: one JSON codec. */
static strlist pending;

static int needs_json_forms(const char *v, size_t len) {
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)v[i];
    if (c < 0x20 || c >= 0x80 || c == '"' || c == '\\') return 1;
  }
  return 0;
}

/* relish.json's encode, pushed (loaded like require would). */
static void push_json_encode(lua_State *L) {
  for (const relish_native_module *m = relish_native_modules; m->name; m++)
    if (strcmp(m->name, "relish.json") == 0) {
      luaL_requiref(L, m->name, m->open, 0);
      lua_getfield(L, -1, "encode");
      lua_remove(L, -2);
      return;
    }
  lua_pushnil(L);
}

/* encode(v, {ascii = ascii}) without its quotes, remembered; the encoded text
 * stays pushed (nil when the encoder refused v: invalid UTF-8). */
static void remember_encoded(lua_State *L, int encode, const char *v, size_t len, int ascii) {
  lua_pushvalue(L, encode);
  lua_pushlstring(L, v, len);
  lua_createtable(L, 0, 1);
  lua_pushboolean(L, ascii);
  lua_setfield(L, -2, "ascii");
  if (lua_pcall(L, 2, 1, 0) != LUA_OK || lua_type(L, -1) != LUA_TSTRING) {
    lua_pop(L, 1);
    lua_pushnil(L);
    return;
  }
  size_t n;
  const char *t = lua_tolstring(L, -1, &n);
  lua_pushlstring(L, t + 1, n - 2); /* without the quotes */
  lua_replace(L, -2);
  remember_form(lua_tostring(L, -1), n - 2);
}

/* The forms a value takes inside JSON: escaped once (a secret in a JSON
 * document, or in a command's JSON output) and twice (that document echoed
 * inside a JSON string, as an API that reports the request it got does),
 * each as relish, JavaScript and Go write it and, for a non-ASCII value,
 * with non-ASCII as \u escapes too (Python's default). */
static void remember_pending(lua_State *L) {
  if (pending.n == 0 || !lua_checkstack(L, 8)) return;
  push_json_encode(L);
  int encode = lua_gettop(L);
  while (pending.n > 0 && !lua_isnil(L, encode)) {
    const char *v = pending.v[pending.n - 1];
    size_t len = pending.len[pending.n - 1];
    int non_ascii = 0;
    for (size_t j = 0; j < len && !non_ascii; j++)
      non_ascii = (unsigned char)v[j] >= 0x80;
    for (int ascii = 0; ascii <= non_ascii; ascii++) {
      remember_encoded(L, encode, v, len, ascii);
      if (lua_type(L, -1) == LUA_TSTRING) {
        size_t n;
        const char *once = lua_tolstring(L, -1, &n);
        remember_encoded(L, encode, once, n, ascii);
        lua_pop(L, 1);
      }
      lua_pop(L, 1);
    }
    free(pending.v[--pending.n]); /* only now: an error above leaves it pending */
  }
  lua_settop(L, encode - 1);
}

static void remember(const char *v, size_t len) {
  remember_form(v, len);
  if (len >= MIN_REDACT && needs_json_forms(v, len)) strlist_add(&pending, v, len);
  /* each line of a multi-line secret too: messages are often cut to their
   * first line, and a key's lines travel alone (a PEM body in a log) */
  if (memchr(v, '\n', len) == NULL) return;
  const char *p = v, *end = v + len;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    size_t n = (size_t)((nl ? nl : end) - p);
    if (n > 0 && p[n - 1] == '\r') n--;
    remember_form(p, n);
    p = nl ? nl + 1 : end;
  }
}

const char *relish_tosecret(lua_State *L, int idx, size_t *len) {
  if (lua_type(L, idx) == LUA_TSTRING) return lua_tolstring(L, idx, len);
  secret_box *s = luaL_testudata(L, idx, SECRET_MT);
  if (!s) return NULL;
  if (len) *len = s->len;
  return s->value;
}

int relish_issecret(lua_State *L, int idx) { return luaL_testudata(L, idx, SECRET_MT) != NULL; }

void relish_redact_add(const char *value, size_t len) { remember(value, len); }

static int userinfo_char(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         (c != 0 && strchr("-._~%!$&()*+,;=:", c) != NULL);
}

/* At s[i] == ':', the length of "://USERINFO@" when a URL's user-info starts
 * there, else 0. */
static size_t userinfo_at(const char *s, size_t i, size_t len) {
  if (i == 0 || len - i < 4 || s[i + 1] != '/' || s[i + 2] != '/') return 0;
  size_t j = i + 3;
  while (j < len && userinfo_char((unsigned char)s[j]))
    j++;
  return j < len && s[j] == '@' && j > i + 3 ? j + 1 - i : 0;
}

/* Replaces each known secret value in s, and the user-info of URLs, by "***";
 * pushes and returns it. */
const char *relish_redact(lua_State *L, const char *s, size_t len, size_t *outlen) {
  remember_pending(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  size_t i = 0;
  while (i < len) {
    size_t hit = 0;
    if (s[i] == ':' && (hit = userinfo_at(s, i, len)) > 0) {
      luaL_addstring(&b, "://***@");
      i += hit;
      continue;
    }
    for (size_t k = 0; k < known.n; k++) {
      if (known.len[k] <= len - i && s[i] == known.v[k][0] &&
          memcmp(s + i, known.v[k], known.len[k]) == 0 && known.len[k] > hit)
        hit = known.len[k];
    }
    if (hit) {
      luaL_addstring(&b, "***");
      i += hit;
    } else {
      luaL_addchar(&b, s[i]);
      i++;
    }
  }
  luaL_pushresult(&b);
  return lua_tolstring(L, -1, outlen);
}

static void push_secret(lua_State *L, const char *v, size_t len, const char *name) {
  secret_box *s = lua_newuserdatauv(L, sizeof *s + len + 1, 1);
  s->len = len;
  memcpy(s->value, v, len);
  s->value[len] = '\0';
  lua_pushstring(L, name ? name : "");
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, SECRET_MT);
  remember(v, len);
}

/* secret.value(s [, name]) */
static int l_secret_value(lua_State *L) {
  size_t len;
  const char *v = luaL_checklstring(L, 1, &len);
  push_secret(L, v, len, luaL_optstring(L, 2, "value"));
  return 1;
}

/* secret.env(NAME) -> secret; raises not_found when it is not set */
static int l_secret_env(lua_State *L) {
  const char *name = relish_checktext(L, 1, "secret.env", NULL);
  const char *v = getenv(name);
  if (!v) return relish_raise(L, "not_found", "secret: environment variable %s is not set", name);
  push_secret(L, v, strlen(v), name);
  return 1;
}

static void close_file(void *f) { fclose(f); }

/* secret.file(PATH) -> secret (one trailing newline dropped); raises
 * not_found when it cannot be read */
static int l_secret_file(lua_State *L) {
  const char *path = relish_checktext(L, 1, "secret.file", NULL);
  relish_status st = {0};
  int fd = relish_open_file(path, 0, "not_found", &st);
  FILE *f = fd < 0 ? NULL : fdopen(fd, "rb");
  if (!f) {
    if (fd >= 0) relish_status_errno(&st, errno, NULL), close(fd);
    return relish_raise(L, "not_found", "secret: cannot read %s: %s", path, st.msg);
  }
  relish_box *box = relish_box_new(L); /* closes f should the buffer raise */
  relish_box_add(box, f, close_file);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    luaL_addlstring(&b, buf, n);
  luaL_pushresult(&b);
  relish_box_release(box);
  size_t len;
  const char *v = lua_tolstring(L, -1, &len);
  if (len && v[len - 1] == '\n') len--;
  if (len && v[len - 1] == '\r') len--;
  push_secret(L, v, len, path);
  return 1;
}

static int l_secret_reveal(lua_State *L) {
  size_t len;
  const char *v = relish_tosecret(L, 1, &len);
  if (!v) return luaL_typeerror(L, 1, "secret");
  lua_pushlstring(L, v, len);
  return 1;
}

static int l_secret_is(lua_State *L) {
  lua_pushboolean(L, relish_issecret(L, 1));
  return 1;
}

static int l_secret_redact(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  relish_redact(L, s, len, NULL);
  return 1;
}

static int l_secret_tostring(lua_State *L) {
  lua_pushliteral(L, "***");
  return 1;
}

static int l_secret_concat(lua_State *L) {
  return luaL_error(L, "a secret cannot be concatenated into a string (it would leak); "
                       "pass the secret itself where it is needed");
}

static int l_secret_name(lua_State *L) {
  luaL_checkudata(L, 1, SECRET_MT);
  lua_getiuservalue(L, 1, 1);
  return 1;
}

static void free_known(void) {
  strlist_free(&known);
  strlist_free(&pending);
}

int luaopen_relish_secret(lua_State *L) {
  static const luaL_Reg fns[] = {{"value", l_secret_value}, {"env", l_secret_env},
                                 {"file", l_secret_file},   {"reveal", l_secret_reveal},
                                 {"is", l_secret_is},       {"redact", l_secret_redact},
                                 {"name", l_secret_name},   {NULL, NULL}};
  static int registered;
  if (!registered) {
    registered = 1;
    atexit(free_known);
  }
  if (luaL_newmetatable(L, SECRET_MT)) {
    lua_pushcfunction(L, l_secret_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, l_secret_concat);
    lua_setfield(L, -2, "__concat");
    lua_pushliteral(L, "secret");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  return 1;
}
