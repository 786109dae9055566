/* secret.c: secret values. A secret is a userdata that prints as "***"; every
 * secret value ever made in this process is remembered, with the forms JSON
 * gives it, so that relish_redact can remove it from any text bound for the
 * terminal, the journal, an error or a plan. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostint.h"

#define SECRET_MT "relish.Secret"
#define MIN_REDACT 3 /* shorter values would redact ordinary text */

typedef struct {
  size_t len;
  char value[];
} secret_box;

static char **known;
static size_t *known_len, nknown, capknown;

static void remember_form(const char *v, size_t len) {
  if (len < MIN_REDACT) return;
  for (size_t i = 0; i < nknown; i++)
    if (known_len[i] == len && memcmp(known[i], v, len) == 0) return;
  if (nknown == capknown) {
    size_t cap = capknown ? capknown * 2 : 8;
    char **k = realloc(known, cap * sizeof *k);
    if (!k) return;
    known = k;
    size_t *kl = realloc(known_len, cap * sizeof *kl);
    if (!kl) return;
    known_len = kl;
    capknown = cap;
  }
  char *copy = malloc(len);
  if (!copy) return;
  memcpy(copy, v, len);
  known[nknown] = copy;
  known_len[nknown++] = len;
}

/* The letter of the short JSON escape of c ('n' for "\n"), or 0. */
static char short_escape(unsigned char c) {
  switch (c) {
  case '"':
    return '"';
  case '\\':
    return '\\';
  case '\b':
    return 'b';
  case '\f':
    return 'f';
  case '\n':
    return 'n';
  case '\r':
    return 'r';
  case '\t':
    return 't';
  default:
    return 0;
  }
}

/* The length (2 to 4) of the UTF-8 sequence of a non-ASCII character at p,
 * and its code point; 0 when the bytes are not one. */
static size_t utf8_decode(const unsigned char *p, size_t left, unsigned long *cp) {
  size_t k = p[0] >= 0xF5 ? 0 : p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC2 ? 2 : 0;
  if (k == 0 || k > left) return 0;
  unsigned long v = p[0] & (0x7Fu >> k);
  for (size_t j = 1; j < k; j++) {
    if ((p[j] & 0xC0) != 0x80) return 0;
    v = (v << 6) | (p[j] & 0x3Fu);
  }
  *cp = v;
  return k;
}

static size_t put_u_escape(char *out, unsigned long unit) {
  static const char hex[] = "0123456789abcdef";
  out[0] = '\\';
  out[1] = 'u';
  for (int i = 0; i < 4; i++)
    out[2 + i] = hex[(unit >> (12 - 4 * i)) & 15];
  return 6;
}

/* The text of v inside a JSON string, as encoders write it: '"', '\\' and
 * control characters escaped (as relish, JavaScript, Go and Python do); with
 * ascii set, every non-ASCII character as \uXXXX too (Python's default).
 * Returns malloc'd text, or NULL when out of memory. */
static char *json_escape(const char *v, size_t len, int ascii, size_t *outlen) {
  if (len > (SIZE_MAX - 1) / 6) return NULL;
  char *out = malloc(len * 6 + 1); /* at most 6 bytes per byte: \u001f */
  if (!out) return NULL;
  const unsigned char *p = (const unsigned char *)v;
  size_t n = 0, i = 0;
  while (i < len) {
    unsigned long cp;
    size_t k;
    char e = short_escape(p[i]);
    if (e) {
      out[n++] = '\\';
      out[n++] = e;
      i++;
    } else if (p[i] < 0x20) {
      n += put_u_escape(out + n, p[i++]);
    } else if (p[i] >= 0x80 && ascii && (k = utf8_decode(p + i, len - i, &cp)) > 0) {
      if (cp >= 0x10000) { /* a surrogate pair */
        n += put_u_escape(out + n, 0xD800 + ((cp - 0x10000) >> 10));
        n += put_u_escape(out + n, 0xDC00 + ((cp - 0x10000) & 0x3FF));
      } else {
        n += put_u_escape(out + n, cp);
      }
      i += k;
    } else {
      out[n++] = (char)p[i++]; /* invalid UTF-8 stays as it is */
    }
  }
  out[n] = '\0';
  *outlen = n;
  return out;
}

/* A value and the forms it takes inside JSON: escaped once (a secret in a
 * JSON document, or in a command's JSON output) and twice (that document
 * echoed inside a JSON string, as an API that reports the request it got
 * does), each as most encoders write it and with non-ASCII as \u escapes. */
static void remember(const char *v, size_t len) {
  remember_form(v, len);
  /* the \u forms differ from the plain ones only for a non-ASCII value */
  int non_ascii = 0;
  for (size_t i = 0; i < len && !non_ascii; i++)
    non_ascii = (unsigned char)v[i] >= 0x80;
  for (int ascii = 0; ascii <= non_ascii; ascii++) {
    size_t n1 = 0, n2 = 0;
    char *once = json_escape(v, len, ascii, &n1);
    char *twice = once ? json_escape(once, n1, ascii, &n2) : NULL;
    if (once) remember_form(once, n1);
    if (twice) remember_form(twice, n2);
    free(once);
    free(twice);
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
    for (size_t k = 0; k < nknown; k++) {
      if (known_len[k] <= len - i && s[i] == known[k][0] &&
          memcmp(s + i, known[k], known_len[k]) == 0 && known_len[k] > hit)
        hit = known_len[k];
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

/* secret.env(NAME) -> secret | nil, err */
static int l_secret_env(lua_State *L) {
  const char *name = luaL_checkstring(L, 1);
  const char *v = getenv(name);
  if (!v) return relish_fail(L, "not_found", "secret: environment variable %s is not set", name);
  push_secret(L, v, strlen(v), name);
  return 1;
}

/* secret.file(PATH) -> secret (one trailing newline dropped) | nil, err */
static int l_secret_file(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  FILE *f = fopen(path, "rb");
  if (!f) return relish_fail(L, "not_found", "secret: cannot read %s: %s", path, strerror(errno));
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    luaL_addlstring(&b, buf, n);
  fclose(f);
  luaL_pushresult(&b);
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
  for (size_t i = 0; i < nknown; i++)
    free(known[i]);
  free(known);
  free(known_len);
  known = NULL;
  known_len = NULL;
  nknown = capknown = 0;
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
