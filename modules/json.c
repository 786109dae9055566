/* json.c: relish.json, JSON text <-> Lua values. A strict RFC 8259 reader that
 * builds Lua tables directly, and a writer into one growing buffer whose errors
 * name the JSON path of the offending value. */

/* Why not cJSON's parser: cJSON keeps a number only as a double (so 1 and 1.0
 * and 2^63-1 cannot be told apart or kept exact), ends strings at \u0000,
 * accepts "01", "1." and raw control characters, and points its error pointer
 * near, not at, the fault. Reading the text ourselves is what the round-trip
 * and line/column promises need, and it is also faster than a tree. */

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "relish.h"

#define JSON_MAX_DEPTH 512
/* Past these, decoding or encoding pauses the collector (relish_gc_pause). */
#define JSON_BIG_TEXT ((size_t)32 << 10)
#define JSON_BIG_VALUES 2048
#define JSON_ARRAY_MT "relish.json.array"
#define JSON_OBJECT_MT "relish.json.object"

/* Every function of the module gets the two shared metatables as upvalues. */
#define UP_ARRAY_MT lua_upvalueindex(1)
#define UP_OBJECT_MT lua_upvalueindex(2)

/* json.null is the address of this byte. */
static char json_null_sentinel;
#define JSON_NULL ((void *)&json_null_sentinel)

/* Length of the well-formed UTF-8 sequence at p (*p >= 0x80), or 0 when it is
 * malformed: overlong forms, surrogates and code points past U+10FFFF are. */
static size_t utf8_sequence(const unsigned char *p, const unsigned char *end) {
  unsigned c = p[0];
  size_t n, avail = (size_t)(end - p);

  if (c >= 0xC2 && c <= 0xDF)
    n = 2;
  else if (c >= 0xE0 && c <= 0xEF)
    n = 3;
  else if (c >= 0xF0 && c <= 0xF4)
    n = 4;
  else
    return 0;
  if (avail < n) return 0;
  for (size_t i = 1; i < n; i++)
    if ((p[i] & 0xC0) != 0x80) return 0;
  if (c == 0xE0 && p[1] < 0xA0) return 0;
  if (c == 0xED && p[1] >= 0xA0) return 0;
  if (c == 0xF0 && p[1] < 0x90) return 0;
  if (c == 0xF4 && p[1] >= 0x90) return 0;
  return n;
}

/* ------------------------------------------------------------------------ */
/* Decoding                                                                 */

/* Byte classes inside a JSON string: 0 copies through. */
enum { SC_PLAIN = 0, SC_QUOTE, SC_BACKSLASH, SC_CONTROL, SC_HIGH };
#define SC_ROW(c) c, c, c, c, c, c, c, c, c, c, c, c, c, c, c, c
static const unsigned char string_class[256] = {
    SC_ROW(SC_CONTROL),
    SC_ROW(SC_CONTROL),
    0,
    0,
    SC_QUOTE,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0, /* 0x20: '"' */
    SC_ROW(0),
    SC_ROW(0),
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    0,
    SC_BACKSLASH,
    0,
    0,
    0, /* 0x50: '\\' */
    SC_ROW(0),
    SC_ROW(0),
    SC_ROW(SC_HIGH),
    SC_ROW(SC_HIGH),
    SC_ROW(SC_HIGH),
    SC_ROW(SC_HIGH),
    SC_ROW(SC_HIGH),
    SC_ROW(SC_HIGH),
    SC_ROW(SC_HIGH),
    SC_ROW(SC_HIGH),
};

typedef struct {
  lua_State *L;
  const char *start, *p, *end;
  const char *err_at;  /* where the first error is */
  const char *err_msg; /* static text */
  char *scratch;       /* for strings with escapes; a userdata at scratch_idx */
  size_t scratch_cap;
  int scratch_idx;
} decoder;

static int dec_fail(decoder *d, const char *at, const char *msg) {
  d->err_at = at;
  d->err_msg = msg;
  return 0;
}

static void dec_skip_space(decoder *d) {
  const char *p = d->p, *end = d->end;
  while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
    p++;
  d->p = p;
}

static char *dec_scratch(decoder *d, size_t need) {
  if (need > d->scratch_cap) {
    size_t cap = d->scratch_cap ? d->scratch_cap * 2 : 256;
    if (cap < need) cap = need;
    d->scratch = lua_newuserdatauv(d->L, cap, 0);
    lua_replace(d->L, d->scratch_idx);
    d->scratch_cap = cap;
  }
  return d->scratch;
}

static int hex4(const char *p) {
  int v = 0;
  for (int i = 0; i < 4; i++) {
    int c = (unsigned char)p[i], x;
    if (c >= '0' && c <= '9')
      x = c - '0';
    else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
      x = (c | 0x20) - 'a' + 10;
    else
      return -1;
    v = v * 16 + x;
  }
  return v;
}

static size_t put_utf8(char *out, unsigned long cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (char)(0xE0 | (cp >> 12));
    out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (char)(0xF0 | (cp >> 18));
  out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Reads one \uXXXX (or a surrogate pair) at p; returns the code point and
 * sets *len to the bytes read, or returns -1 after recording the error. */
static long dec_unicode_escape(decoder *d, const char *p, size_t *len) {
  long hi, lo;

  if (d->end - p < 6 || (hi = hex4(p + 2)) < 0) return dec_fail(d, p, "invalid \\u escape"), -1;
  if (hi >= 0xDC00 && hi <= 0xDFFF) return dec_fail(d, p, "lone surrogate in \\u escape"), -1;
  if (hi < 0xD800 || hi > 0xDBFF) {
    *len = 6;
    return hi;
  }
  if (d->end - p < 12 || p[6] != '\\' || p[7] != 'u' || (lo = hex4(p + 8)) < 0xDC00 || lo > 0xDFFF)
    return dec_fail(d, p, "lone surrogate in \\u escape"), -1;
  *len = 12;
  return 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
}

/* The slow path of dec_string: s is the first byte of the contents, p the
 * first backslash; everything in between is already checked. */
static int dec_string_escaped(decoder *d, const char *s, const char *p) {
  const char *end = d->end, *q = p;
  char *out, *o;

  /* Decoded text is never longer than the escaped text. */
  while (q < end && *q != '"')
    q += (*q == '\\') ? 2 : 1;
  if (q > end) q = end;
  out = dec_scratch(d, (size_t)(q - s));
  memcpy(out, s, (size_t)(p - s));
  o = out + (p - s);

  for (;;) {
    unsigned char c;
    const char *run = p;
    while (p < end && string_class[(unsigned char)*p] == SC_PLAIN)
      p++;
    memcpy(o, run, (size_t)(p - run));
    o += p - run;
    if (p == end) return dec_fail(d, end, "unexpected end of input");
    c = (unsigned char)*p;
    switch (string_class[c]) {
    case SC_QUOTE:
      lua_pushlstring(d->L, out, (size_t)(o - out));
      d->p = p + 1;
      return 1;
    case SC_CONTROL:
      return dec_fail(d, p, "control character in string");
    case SC_HIGH: {
      size_t n = utf8_sequence((const unsigned char *)p, (const unsigned char *)end);
      if (n == 0) return dec_fail(d, p, "invalid UTF-8");
      memcpy(o, p, n);
      o += n;
      p += n;
      break;
    }
    default: /* backslash */
      if (p + 1 == end) return dec_fail(d, end, "unexpected end of input");
      switch (p[1]) {
      case '"':
        *o++ = '"';
        break;
      case '\\':
        *o++ = '\\';
        break;
      case '/':
        *o++ = '/';
        break;
      case 'b':
        *o++ = '\b';
        break;
      case 'f':
        *o++ = '\f';
        break;
      case 'n':
        *o++ = '\n';
        break;
      case 'r':
        *o++ = '\r';
        break;
      case 't':
        *o++ = '\t';
        break;
      case 'u': {
        size_t len;
        long cp = dec_unicode_escape(d, p, &len);
        if (cp < 0) return 0;
        o += put_utf8(o, (unsigned long)cp);
        p += len;
        continue;
      }
      default:
        return dec_fail(d, p, "invalid escape");
      }
      p += 2;
    }
  }
}

/* At the opening quote; pushes the string. */
static int dec_string(decoder *d) {
  const char *s = d->p + 1, *p = s, *end = d->end;

  for (;;) {
    while (p < end && string_class[(unsigned char)*p] == SC_PLAIN)
      p++;
    if (p == end) return dec_fail(d, end, "unexpected end of input");
    switch (string_class[(unsigned char)*p]) {
    case SC_QUOTE:
      lua_pushlstring(d->L, s, (size_t)(p - s));
      d->p = p + 1;
      return 1;
    case SC_BACKSLASH:
      return dec_string_escaped(d, s, p);
    case SC_CONTROL:
      return dec_fail(d, p, "control character in string");
    default: {
      size_t n = utf8_sequence((const unsigned char *)p, (const unsigned char *)end);
      if (n == 0) return dec_fail(d, p, "invalid UTF-8");
      p += n;
    }
    }
  }
}

static int is_digit(int c) { return c >= '0' && c <= '9'; }

/* Integers stay integers when they fit in 64 bits; anything with a fraction
 * or an exponent is a float, so 1.0 comes back as a float. */
static int dec_number(decoder *d) {
  const char *s = d->p, *p = s, *end = d->end;
  int negative = 0, is_float = 0;
  size_t len;

  if (*p == '-') {
    negative = 1;
    p++;
  }
  if (p < end && *p == '0') {
    p++;
    if (p < end && is_digit(*p)) return dec_fail(d, s, "invalid number");
  } else if (p < end && is_digit(*p)) {
    while (p < end && is_digit(*p))
      p++;
  } else {
    return dec_fail(d, s, "invalid number");
  }
  if (p < end && *p == '.') {
    is_float = 1;
    p++;
    if (p == end || !is_digit(*p)) return dec_fail(d, s, "invalid number");
    while (p < end && is_digit(*p))
      p++;
  }
  if (p < end && (*p == 'e' || *p == 'E')) {
    is_float = 1;
    p++;
    if (p < end && (*p == '+' || *p == '-')) p++;
    if (p == end || !is_digit(*p)) return dec_fail(d, s, "invalid number");
    while (p < end && is_digit(*p))
      p++;
  }
  d->p = p;
  len = (size_t)(p - s);

  if (!is_float && len - (size_t)negative <= 18) { /* cannot overflow */
    lua_Integer v = 0;
    for (const char *q = s + negative; q < p; q++)
      v = v * 10 + (*q - '0');
    lua_pushinteger(d->L, negative ? -v : v);
    return 1;
  }
  /* Lua's own conversion: exact int64 where it fits, else the nearest
   * double, and it copes with the locale's decimal point. */
  {
    char small[64], *text = len < sizeof small ? small : dec_scratch(d, len + 1);
    memcpy(text, s, len);
    text[len] = '\0';
    if (lua_stringtonumber(d->L, text) != len + 1) return dec_fail(d, s, "invalid number");
    if (lua_isinteger(d->L, -1)) return 1;
    if (isinf(lua_tonumber(d->L, -1))) {
      lua_pop(d->L, 1);
      return dec_fail(d, s, "number out of range");
    }
    return 1;
  }
}

/* Matches a keyword; on a mismatch, points at the first wrong byte. */
static int dec_literal(decoder *d, const char *word, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (d->p + i == d->end) return dec_fail(d, d->end, "unexpected end of input");
    if (d->p[i] != word[i]) return dec_fail(d, d->p + i, "unexpected character");
  }
  d->p += n;
  return 1;
}

static int dec_value(decoder *d, int depth);

/* Expects ',' or the closer after an element; 1 = more, 0 = done, -1 = error. */
static int dec_next(decoder *d, char closer) {
  dec_skip_space(d);
  if (d->p == d->end) return dec_fail(d, d->end, "unexpected end of input"), -1;
  if (*d->p == ',') {
    d->p++;
    return 1;
  }
  if (*d->p == closer) {
    d->p++;
    return 0;
  }
  return dec_fail(d, d->p, "unexpected character"), -1;
}

/* Elements wait on the stack so each table is created at its final size
 * (growing tables one rehash at a time is most of the cost of decoding);
 * past DEC_CHUNK they are flushed into the table to keep the stack small. */
#define DEC_CHUNK 64

/* Moves the values above base (pairs for objects) into the table at base, or
 * creates that table at the right size first if base holds nil. */
static void dec_flush(decoder *d, int base, int is_array, lua_Integer *n) {
  lua_State *L = d->L;
  int top = lua_gettop(L), count = top - base;

  if (lua_isnil(L, base)) {
    if (is_array)
      lua_createtable(L, count, 0);
    else
      lua_createtable(L, 0, count / 2);
    lua_pushvalue(L, is_array ? UP_ARRAY_MT : UP_OBJECT_MT);
    lua_setmetatable(L, -2);
    lua_replace(L, base);
  }
  if (is_array) {
    for (int i = 1; i <= count; i++) {
      lua_pushvalue(L, base + i);
      lua_rawseti(L, base, *n + i);
    }
    *n += count;
  } else {
    for (int i = 1; i < count; i += 2) {
      lua_pushvalue(L, base + i);
      lua_pushvalue(L, base + i + 1);
      lua_rawset(L, base); /* a repeated key: the last one wins */
    }
  }
  lua_settop(L, base);
}

static int dec_open(decoder *d, int depth) {
  if (depth > JSON_MAX_DEPTH) return dec_fail(d, d->p, "nesting deeper than 512");
  luaL_checkstack(d->L, DEC_CHUNK + 4, "json: nesting too deep");
  d->p++;
  lua_pushnil(d->L); /* the table, once its size is known */
  dec_skip_space(d);
  return 1;
}

static int dec_array(decoder *d, int depth) {
  lua_Integer n = 0;
  int more, base = lua_gettop(d->L) + 1;

  if (!dec_open(d, depth)) return 0;
  if (d->p < d->end && *d->p == ']') {
    d->p++;
  } else {
    do {
      if (!dec_value(d, depth)) return 0;
      if (lua_gettop(d->L) - base == DEC_CHUNK) dec_flush(d, base, 1, &n);
    } while ((more = dec_next(d, ']')) > 0);
    if (more < 0) return 0;
  }
  dec_flush(d, base, 1, &n);
  return 1;
}

static int dec_object(decoder *d, int depth) {
  lua_Integer n = 0;
  int more, base = lua_gettop(d->L) + 1;

  if (!dec_open(d, depth)) return 0;
  if (d->p < d->end && *d->p == '}') {
    d->p++;
  } else {
    do {
      dec_skip_space(d);
      if (d->p == d->end) return dec_fail(d, d->end, "unexpected end of input");
      if (*d->p != '"') return dec_fail(d, d->p, "unexpected character");
      if (!dec_string(d)) return 0;
      dec_skip_space(d);
      if (d->p == d->end) return dec_fail(d, d->end, "unexpected end of input");
      if (*d->p != ':') return dec_fail(d, d->p, "unexpected character");
      d->p++;
      if (!dec_value(d, depth)) return 0;
      if (lua_gettop(d->L) - base == DEC_CHUNK) dec_flush(d, base, 0, &n);
    } while ((more = dec_next(d, '}')) > 0);
    if (more < 0) return 0;
  }
  dec_flush(d, base, 0, &n);
  return 1;
}

static int dec_value(decoder *d, int depth) {
  dec_skip_space(d);
  if (d->p == d->end) return dec_fail(d, d->end, "unexpected end of input");
  switch (*d->p) {
  case '{':
    return dec_object(d, depth + 1);
  case '[':
    return dec_array(d, depth + 1);
  case '"':
    return dec_string(d);
  case 't':
    if (!dec_literal(d, "true", 4)) return 0;
    lua_pushboolean(d->L, 1);
    return 1;
  case 'f':
    if (!dec_literal(d, "false", 5)) return 0;
    lua_pushboolean(d->L, 0);
    return 1;
  case 'n':
    if (!dec_literal(d, "null", 4)) return 0;
    lua_pushlightuserdata(d->L, JSON_NULL);
    return 1;
  case '-':
  case '0':
  case '1':
  case '2':
  case '3':
  case '4':
  case '5':
  case '6':
  case '7':
  case '8':
  case '9':
    return dec_number(d);
  default:
    return dec_fail(d, d->p, "unexpected character");
  }
}

/* Raises the parse error {kind="parse", message=, line=, column=}; the
 * column counts characters (UTF-8 sequences), both are 1-based. */
static int dec_error(decoder *d) {
  lua_Integer line = 1, column = 1;
  const char *line_start = d->start;
  char message[160];

  for (const char *p = d->start; p < d->err_at; p++)
    if (*p == '\n') {
      line++;
      line_start = p + 1;
    }
  for (const char *p = line_start; p < d->err_at; p++)
    if ((*p & 0xC0) != 0x80) column++;
  snprintf(message, sizeof message, "json: %s at line %lld, column %lld", d->err_msg,
           (long long)line, (long long)column);
  relish_push_error(d->L, "parse", "%s", message);
  lua_pushinteger(d->L, line);
  lua_setfield(d->L, -2, "line");
  lua_pushinteger(d->L, column);
  lua_setfield(d->L, -2, "column");
  return lua_error(d->L);
}

static int l_json_decode(lua_State *L) {
  decoder d;
  size_t len;

  /* text only: luaL_checklstring would turn a number into its digits */
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_error(L, "json.decode: expected a string, got %s", luaL_typename(L, 1));
  d.start = d.p = lua_tolstring(L, 1, &len);
  d.end = d.start + len;
  d.L = L;
  d.err_at = d.start;
  d.err_msg = "";
  d.scratch = NULL;
  d.scratch_cap = 0;
  lua_settop(L, 1);
  lua_pushnil(L);
  d.scratch_idx = 2;

  relish_gc_pause(L, len > JSON_BIG_TEXT); /* index 3: tens of thousands of objects, all kept */
  if (len >= 3 && memcmp(d.p, "\xEF\xBB\xBF", 3) == 0) d.p += 3; /* a BOM is ignored */
  if (dec_value(&d, 0)) {
    dec_skip_space(&d);
    if (d.p == d.end) return 1;
    dec_fail(&d, d.p, "unexpected character");
  }
  relish_gc_resume(L, 3); /* before lua_settop drops its slot */
  lua_settop(L, 2);
  return dec_error(&d);
}

/* ------------------------------------------------------------------------ */
/* Encoding                                                                 */

/* How the value being written was reached from its parent, for error paths. */
enum { SEG_INDEX, SEG_KEY, SEG_INTKEY };
typedef struct {
  int kind;
  const char *key; /* SEG_KEY: anchored on the stack or in the scratch table */
  size_t len;
  lua_Integer n; /* SEG_INDEX: 0-based; SEG_INTKEY: the key */
} path_seg;

/* One key of an object being sorted; the key and value sit in the scratch
 * table at slot and slot + 1. */
typedef struct {
  const char *s;
  size_t len;
  lua_Integer slot;
} sort_key;

typedef struct {
  lua_State *L;
  int pretty, sort_keys, ascii;
  char *buf; /* userdata at buf_idx, replaced as it grows */
  size_t len, cap;
  int buf_idx;
  int scratch_idx; /* table of keys and values being sorted */
  lua_Integer scratch_top;
  sort_key *keys; /* userdata at keys_idx */
  size_t nkeys, keys_cap;
  int keys_idx;
  int depth;                        /* open tables */
  const void *open[JSON_MAX_DEPTH]; /* those tables, for cycles */
  int nsegs;                        /* path of the value being written */
  path_seg segs[JSON_MAX_DEPTH + 1];
} encoder;

static void enc_reserve(encoder *e, size_t extra) {
  size_t need = e->len + extra, cap;
  char *b;

  if (need <= e->cap) return;
  if (need < e->len) luaL_error(e->L, "json.encode: output too large");
  cap = e->cap ? e->cap : 1024;
  while (cap < need)
    cap = cap * 2 > cap ? cap * 2 : need;
  b = lua_newuserdatauv(e->L, cap, 0);
  if (e->len) memcpy(b, e->buf, e->len);
  lua_replace(e->L, e->buf_idx);
  e->buf = b;
  e->cap = cap;
}

static void enc_put(encoder *e, const char *s, size_t n) {
  enc_reserve(e, n);
  memcpy(e->buf + e->len, s, n);
  e->len += n;
}

static void enc_putc(encoder *e, char c) {
  if (e->len == e->cap) enc_reserve(e, 1);
  e->buf[e->len++] = c;
}

static void enc_newline(encoder *e, int level) {
  static const char spaces[] = "                                ";
  size_t n = (size_t)level * 2;
  enc_putc(e, '\n');
  while (n > 0) {
    size_t k = n < sizeof spaces - 1 ? n : sizeof spaces - 1;
    enc_put(e, spaces, k);
    n -= k;
  }
}

static int is_identifier(const char *s, size_t len) {
  if (len == 0 || is_digit((unsigned char)s[0])) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (!(c == '_' || is_digit(c) || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z'))) return 0;
  }
  return 1;
}

/* Pushes the path of the first nsegs segments: $.spec.items[3]["a b"]. */
static const char *enc_push_path(encoder *e, int nsegs) {
  lua_State *L = e->L;
  luaL_Buffer b;

  luaL_buffinit(L, &b);
  luaL_addchar(&b, '$');
  for (int i = 0; i < nsegs; i++) {
    const path_seg *s = &e->segs[i];
    char num[32];
    if (s->kind == SEG_INDEX) {
      snprintf(num, sizeof num, "[%lld]", (long long)s->n);
      luaL_addstring(&b, num);
    } else if (s->kind == SEG_INTKEY) {
      snprintf(num, sizeof num, "[\"%lld\"]", (long long)s->n);
      luaL_addstring(&b, num);
    } else if (is_identifier(s->key, s->len)) {
      luaL_addchar(&b, '.');
      luaL_addlstring(&b, s->key, s->len);
    } else {
      luaL_addstring(&b, "[\"");
      for (size_t k = 0; k < s->len; k++) {
        unsigned char c = (unsigned char)s->key[k];
        if (c == '"' || c == '\\') luaL_addchar(&b, '\\');
        if (c < 0x20) {
          snprintf(num, sizeof num, "\\u%04x", c);
          luaL_addstring(&b, num);
        } else {
          luaL_addchar(&b, (char)c);
        }
      }
      luaL_addstring(&b, "\"]");
    }
  }
  luaL_pushresult(&b);
  return lua_tostring(L, -1);
}

static int enc_fail(encoder *e, const char *what) {
  const char *path = enc_push_path(e, e->nsegs);
  return luaL_error(e->L, "json.encode: %s at %s", what, path);
}

static void enc_string(encoder *e, const char *s, size_t len, const char *what) {
  static const char hex[] = "0123456789abcdef";
  const unsigned char *p = (const unsigned char *)s, *end = p + len, *run = p;

  enc_reserve(e, len + 2);
  e->buf[e->len++] = '"';
  while (p < end) {
    unsigned c = *p;
    char esc[6];
    size_t n = 2;
    if (string_class[c] == SC_PLAIN) {
      p++;
      continue;
    }
    if (c >= 0x80) {
      size_t k = utf8_sequence(p, end);
      if (k == 0) enc_fail(e, what);
      if (e->ascii) { /* \uXXXX, a surrogate pair past the BMP */
        unsigned long cp = c & (0x7Fu >> k);
        for (size_t j = 1; j < k; j++)
          cp = (cp << 6) | (p[j] & 0x3Fu);
        unsigned long unit[2] = {cp, 0};
        if (cp >= 0x10000) {
          unit[0] = 0xD800 + ((cp - 0x10000) >> 10);
          unit[1] = 0xDC00 + ((cp - 0x10000) & 0x3FF);
        }
        enc_put(e, (const char *)run, (size_t)(p - run));
        for (int u = 0; u < 2 && unit[u] != 0; u++) {
          char ue[7];
          snprintf(ue, sizeof ue, "\\u%04x", (unsigned)(unit[u] & 0xFFFF));
          enc_put(e, ue, 6);
        }
        run = p + k;
      }
      p += k;
      continue;
    }
    enc_put(e, (const char *)run, (size_t)(p - run));
    esc[0] = '\\';
    switch (c) {
    case '"':
      esc[1] = '"';
      break;
    case '\\':
      esc[1] = '\\';
      break;
    case '\b':
      esc[1] = 'b';
      break;
    case '\f':
      esc[1] = 'f';
      break;
    case '\n':
      esc[1] = 'n';
      break;
    case '\r':
      esc[1] = 'r';
      break;
    case '\t':
      esc[1] = 't';
      break;
    default:
      memcpy(esc + 1, "u00", 3);
      esc[4] = hex[c >> 4];
      esc[5] = hex[c & 15];
      n = 6;
    }
    enc_put(e, esc, n);
    run = ++p;
  }
  enc_put(e, (const char *)run, (size_t)(p - run));
  enc_putc(e, '"');
}

static size_t format_integer(char *out, lua_Integer i) {
  char tmp[24];
  size_t n = 0, k = 0;
  lua_Unsigned u = i < 0 ? 0u - (lua_Unsigned)i : (lua_Unsigned)i;

  do {
    tmp[n++] = (char)('0' + u % 10);
    u /= 10;
  } while (u);
  if (i < 0) out[k++] = '-';
  while (n)
    out[k++] = tmp[--n];
  return k;
}

static void enc_integer(encoder *e, lua_Integer i) {
  enc_reserve(e, 24);
  e->len += format_integer(e->buf + e->len, i);
}

/* The shortest of %.15g, %.16g and %.17g that reads back as the same double,
 * with a ".0" added to integral values so they come back as floats. */
static void enc_float(encoder *e, lua_Number x) {
  static const char *const formats[] = {"%.15g", "%.16g", "%.17g"};
  char text[64], out[72];
  const char *point = localeconv()->decimal_point;
  size_t plen = strlen(point), n = 0;
  int integral = 1;

  if (isnan(x)) enc_fail(e, "cannot encode NaN");
  if (isinf(x)) enc_fail(e, x > 0 ? "cannot encode inf" : "cannot encode -inf");
  for (int i = 0; i < 3; i++) {
    snprintf(text, sizeof text, formats[i], (double)x);
    if (strtod(text, NULL) == (double)x) break;
  }
  for (const char *p = text; *p;) {
    if (is_digit((unsigned char)*p) || *p == '-' || *p == '+') {
      out[n++] = *p++;
    } else if (*p == 'e') {
      integral = 0;
      out[n++] = *p++;
    } else { /* the locale's decimal point */
      integral = 0;
      out[n++] = '.';
      p += plen ? plen : 1;
    }
  }
  if (integral) {
    out[n++] = '.';
    out[n++] = '0';
  }
  enc_put(e, out, n);
}

static void enc_value(encoder *e, int idx);

static void enc_array(encoder *e, int idx, lua_Integer n) {
  lua_State *L = e->L;

  enc_putc(e, '[');
  for (lua_Integer i = 1; i <= n; i++) {
    if (i > 1) enc_putc(e, ',');
    if (e->pretty) enc_newline(e, e->depth);
    lua_rawgeti(L, idx, i);
    e->segs[e->nsegs].kind = SEG_INDEX;
    e->segs[e->nsegs].n = i - 1;
    e->nsegs++;
    enc_value(e, lua_gettop(L));
    e->nsegs--;
    lua_pop(L, 1);
  }
  if (e->pretty && n > 0) enc_newline(e, e->depth - 1);
  enc_putc(e, ']');
}

/* Object keys are all strings or all integers (a sparse array, written with
 * decimal keys); a mix could write the same key twice. Key at -2. */
static void enc_check_key(encoder *e, int *key_type) {
  int t = lua_type(e->L, -2);
  if (t == LUA_TNUMBER && lua_isinteger(e->L, -2)) {
    if (*key_type == LUA_TSTRING) enc_fail(e, "table mixes integer and string keys");
  } else if (t == LUA_TSTRING) {
    if (*key_type == LUA_TNUMBER) enc_fail(e, "table mixes integer and string keys");
  } else {
    char what[64];
    snprintf(what, sizeof what, "cannot encode %s key",
             t == LUA_TNUMBER ? "float" : lua_typename(e->L, t));
    enc_fail(e, what);
  }
  *key_type = t;
}

static void enc_key(encoder *e, int first, const char *s, size_t len) {
  if (!first) enc_putc(e, ',');
  if (e->pretty) enc_newline(e, e->depth);
  enc_string(e, s, len, "invalid UTF-8 in key");
  if (e->pretty)
    enc_put(e, ": ", 2);
  else
    enc_putc(e, ':');
}

static void enc_object_unsorted(encoder *e, int idx) {
  lua_State *L = e->L;
  int first = 1, key_type = LUA_TNONE;

  lua_pushnil(L);
  while (lua_next(L, idx)) {
    path_seg *seg = &e->segs[e->nsegs];
    enc_check_key(e, &key_type);
    if (key_type == LUA_TSTRING) {
      seg->kind = SEG_KEY;
      seg->key = lua_tolstring(L, -2, &seg->len);
      enc_key(e, first, seg->key, seg->len);
    } else {
      char num[24];
      seg->kind = SEG_INTKEY;
      seg->n = lua_tointeger(L, -2);
      enc_key(e, first, num, format_integer(num, seg->n));
    }
    first = 0;
    e->nsegs++;
    enc_value(e, lua_gettop(L));
    e->nsegs--;
    lua_pop(L, 1);
  }
  if (e->pretty && !first) enc_newline(e, e->depth - 1);
}

static int sort_key_cmp(const void *a, const void *b) {
  const sort_key *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->len < y->len ? x->len : y->len);
  if (c) return c;
  return (x->len > y->len) - (x->len < y->len);
}

static void enc_object_sorted(encoder *e, int idx) {
  lua_State *L = e->L;
  lua_Integer scratch_base = e->scratch_top;
  size_t base = e->nkeys, n;
  int key_type = LUA_TNONE;

  /* Keys (integers turned to strings) and values go to the scratch table,
   * which keeps them alive; nested objects stack their keys above ours. */
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    sort_key *k;
    enc_check_key(e, &key_type);
    if (e->nkeys == e->keys_cap) {
      size_t cap = e->keys_cap ? e->keys_cap * 2 : 64;
      sort_key *keys = lua_newuserdatauv(L, cap * sizeof *keys, 0);
      if (e->nkeys) memcpy(keys, e->keys, e->nkeys * sizeof *keys);
      lua_replace(L, e->keys_idx);
      e->keys = keys;
      e->keys_cap = cap;
    }
    k = &e->keys[e->nkeys++];
    lua_pushvalue(L, -2);
    k->s = lua_tolstring(L, -1, &k->len); /* a copy: safe to convert */
    k->slot = e->scratch_top + 1;
    lua_rawseti(L, e->scratch_idx, ++e->scratch_top);
    lua_rawseti(L, e->scratch_idx, ++e->scratch_top);
  }
  n = e->nkeys - base;
  if (n > 16) {
    qsort(e->keys + base, n, sizeof *e->keys, sort_key_cmp);
  } else if (n > 1) { /* most objects are small: an insertion sort beats qsort here */
    sort_key *keys = e->keys + base; /* NULL until the first key: {} has none */
    for (size_t i = 1; i < n; i++) {
      sort_key k = keys[i];
      size_t j = i;
      for (; j > 0 && sort_key_cmp(&keys[j - 1], &k) > 0; j--)
        keys[j] = keys[j - 1];
      keys[j] = k;
    }
  }
  for (size_t i = 0; i < n; i++) {
    sort_key k = e->keys[base + i]; /* copied: nested objects may move keys */
    path_seg *seg = &e->segs[e->nsegs];
    enc_key(e, i == 0, k.s, k.len);
    seg->kind = SEG_KEY;
    seg->key = k.s;
    seg->len = k.len;
    lua_rawgeti(L, e->scratch_idx, k.slot + 1);
    e->nsegs++;
    enc_value(e, lua_gettop(L));
    e->nsegs--;
    lua_pop(L, 1);
  }
  if (e->pretty && n > 0) enc_newline(e, e->depth - 1);
  e->nkeys = base;
  e->scratch_top = scratch_base;
}

/* Array when marked so, or when its keys are exactly 1..n with n > 0. The
 * count returned for an array is its raw length. */
static int enc_is_array(encoder *e, int idx, lua_Integer *n) {
  lua_State *L = e->L;
  lua_Integer count = 0;

  if (lua_getmetatable(L, idx)) {
    int array = lua_rawequal(L, -1, UP_ARRAY_MT);
    int object = lua_rawequal(L, -1, UP_OBJECT_MT);
    lua_pop(L, 1);
    if (array) {
      *n = (lua_Integer)lua_rawlen(L, idx);
      return 1;
    }
    if (object) return 0;
  }
  *n = (lua_Integer)lua_rawlen(L, idx);
  if (*n == 0) return 0;
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1 || lua_tointeger(L, -1) > *n) {
      lua_pop(L, 1);
      return 0;
    }
    count++;
  }
  return count == *n;
}

static void enc_table(encoder *e, int idx) {
  lua_State *L = e->L;
  const void *t = lua_topointer(L, idx);
  lua_Integer n;

  for (int i = 0; i < e->depth; i++) {
    if (e->open[i] == t) {
      const char *first = enc_push_path(e, i);
      const char *here = enc_push_path(e, e->nsegs);
      luaL_error(L, "json.encode: cycle at %s (same table as %s)", here, first);
    }
  }
  if (e->depth == JSON_MAX_DEPTH) enc_fail(e, "nesting deeper than 512");
  luaL_checkstack(L, 6, "json.encode: nesting too deep");
  e->open[e->depth++] = t;
  if (enc_is_array(e, idx, &n)) {
    enc_array(e, idx, n);
  } else {
    enc_putc(e, '{');
    if (e->sort_keys)
      enc_object_sorted(e, idx);
    else
      enc_object_unsorted(e, idx);
    enc_putc(e, '}');
  }
  e->depth--;
}

static void enc_value(encoder *e, int idx) {
  lua_State *L = e->L;

  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    enc_put(e, "null", 4);
    break;
  case LUA_TBOOLEAN:
    if (lua_toboolean(L, idx))
      enc_put(e, "true", 4);
    else
      enc_put(e, "false", 5);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      enc_integer(e, lua_tointeger(L, idx));
    else
      enc_float(e, lua_tonumber(L, idx));
    break;
  case LUA_TSTRING: {
    size_t len;
    const char *s = lua_tolstring(L, idx, &len);
    enc_string(e, s, len, "invalid UTF-8 in string");
    break;
  }
  case LUA_TLIGHTUSERDATA:
    if (lua_touserdata(L, idx) == JSON_NULL) {
      enc_put(e, "null", 4);
      break;
    }
    enc_fail(e, "cannot encode userdata");
    break;
  case LUA_TTABLE:
    enc_table(e, idx);
    break;
  default: {
    char what[64];
    snprintf(what, sizeof what, "cannot encode %s", luaL_typename(L, idx));
    enc_fail(e, what);
  }
  }
}

static int opt_boolean(lua_State *L, const char *name, int def) {
  int t = lua_getfield(L, 2, name), v = def;
  if (t == LUA_TBOOLEAN)
    v = lua_toboolean(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "json.encode: %s must be a boolean, got %s", name, luaL_typename(L, -1));
  lua_pop(L, 1);
  return v;
}

/* Counts the values in v (at idx), stopping at *left == 0: a walk of at
 * most JSON_BIG_VALUES entries, deep first. */
static void count_values(lua_State *L, int idx, int depth, int *left) {
  if (--*left <= 0 || lua_type(L, idx) != LUA_TTABLE || depth > 32 || !lua_checkstack(L, 3)) return;
  lua_pushnil(L);
  while (*left > 0 && lua_next(L, idx) != 0) {
    count_values(L, lua_gettop(L), depth + 1, left);
    lua_pop(L, 1);
  }
  if (*left <= 0) lua_settop(L, idx); /* left the walk early: drop the key */
}

/* True when the value at idx has more than JSON_BIG_VALUES values in all. */
static int enc_is_big(lua_State *L, int idx) {
  int top = lua_gettop(L), left = JSON_BIG_VALUES;
  count_values(L, lua_absindex(L, idx), 0, &left);
  lua_settop(L, top);
  return left <= 0;
}

static int l_json_encode(lua_State *L) {
  static const char *const options[] = {"pretty", "sort_keys", "ascii", NULL};
  encoder e;

  if (lua_isnone(L, 1)) return luaL_error(L, "json.encode: expected a value, got no value");
  e.pretty = 0;
  e.sort_keys = 1;
  e.ascii = 0;
  relish_checkopts(L, 2, "json.encode", options);
  if (!lua_isnoneornil(L, 2)) {
    e.pretty = opt_boolean(L, "pretty", 0);
    e.sort_keys = opt_boolean(L, "sort_keys", 1);
    e.ascii = opt_boolean(L, "ascii", 0);
  }
  lua_settop(L, 2);

  e.L = L;
  e.buf = NULL;
  e.len = e.cap = 0;
  e.keys = NULL;
  e.nkeys = e.keys_cap = 0;
  e.scratch_top = 0;
  e.depth = 0;
  e.nsegs = 0;
  lua_pushnil(L);
  e.buf_idx = 3;
  lua_newtable(L);
  e.scratch_idx = 4;
  lua_pushnil(L);
  e.keys_idx = 5;
  relish_gc_pause(L, enc_is_big(L, 1)); /* index 6 */

  enc_value(&e, 1);
  lua_pushlstring(L, e.buf, e.len);
  return 1;
}

/* array(t) / object(t): mark t (or a new table) and return it. */
static int json_mark(lua_State *L, int mt, const char *fname) {
  if (lua_isnoneornil(L, 1)) {
    lua_settop(L, 0);
    lua_newtable(L);
  } else {
    if (!lua_istable(L, 1))
      return luaL_error(L, "%s: expected a table, got %s", fname, luaL_typename(L, 1));
    lua_settop(L, 1);
    if (lua_getmetatable(L, 1)) {
      if (!lua_rawequal(L, -1, UP_ARRAY_MT) && !lua_rawequal(L, -1, UP_OBJECT_MT))
        return luaL_error(L, "%s: the table already has another metatable", fname);
      lua_pop(L, 1);
    }
  }
  lua_pushvalue(L, mt);
  lua_setmetatable(L, 1);
  return 1;
}

static int l_json_array(lua_State *L) { return json_mark(L, UP_ARRAY_MT, "json.array"); }

static int l_json_object(lua_State *L) { return json_mark(L, UP_OBJECT_MT, "json.object"); }

int luaopen_relish_json(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"decode", l_json_decode},
      {"encode", l_json_encode},
      {"array", l_json_array},
      {"object", l_json_object},
      {NULL, NULL},
  };

  lua_newtable(L);
  luaL_newmetatable(L, JSON_ARRAY_MT);
  luaL_newmetatable(L, JSON_OBJECT_MT);
  luaL_setfuncs(L, funcs, 2);
  lua_pushlightuserdata(L, JSON_NULL);
  lua_setfield(L, -2, "null");
  return 1;
}
