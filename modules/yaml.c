/* yaml.c: relish.yaml, YAML 1.2 core-schema decoding and block-style encoding
 * over libyaml, sharing relish.json's array/object marks and null sentinel. */
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "relish.h"

#define YAML_MAX_DEPTH 512
/* Nodes reachable through aliases, counted with repetition: a consumer that
 * walks the result (json.encode, yaml.encode) sees that many nodes. */
#define YAML_MAX_ALIASED 1000000u
#define YAML_MAX_OUTPUT ((size_t)512 << 20)
#define YAML_SIZE_CAP ((uint64_t)1 << 62)

#define TAG_PREFIX "tag:yaml.org,2002:"
#define TAG_PREFIX_LEN (sizeof TAG_PREFIX - 1)

/* Upvalues shared by every function of the module. */
#define UV_NULL lua_upvalueindex(1)
#define UV_ARRAY lua_upvalueindex(2)
#define UV_OBJECT lua_upvalueindex(3)

#define PARSER_MT "relish.yaml.Parser"
#define EMITTER_MT "relish.yaml.Emitter"

/* Used as json.null only when relish.json cannot be loaded. */
static const char yaml_null_fallback = 0;

static uint64_t size_add(uint64_t a, uint64_t b) {
  return (a > YAML_SIZE_CAP - b) ? YAML_SIZE_CAP : a + b;
}

/* ---- core schema ------------------------------------------------------- */

enum { K_STR, K_NULL, K_BOOL, K_INT, K_FLOAT };

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static int str_is(const char *s, size_t n, const char *lit) {
  return n == strlen(lit) && memcmp(s, lit, n) == 0;
}

static int str_in(const char *s, size_t n, const char *const *list) {
  for (; *list; list++)
    if (str_is(s, n, *list)) return 1;
  return 0;
}

static const char *const core_nulls[] = {"null", "Null", "NULL", "~", NULL};
static const char *const core_trues[] = {"true", "True", "TRUE", NULL};
static const char *const core_falses[] = {"false", "False", "FALSE", NULL};
static const char *const core_infs[] = {".inf", ".Inf", ".INF", NULL};
static const char *const core_nans[] = {".nan", ".NaN", ".NAN", NULL};

static int all_of(const char *s, size_t n, int (*pred)(char)) {
  if (n == 0) return 0;
  for (size_t i = 0; i < n; i++)
    if (!pred(s[i])) return 0;
  return 1;
}

static int is_octal(char c) { return c >= '0' && c <= '7'; }

static int core_is_int(const char *s, size_t n) {
  if (n > 2 && s[0] == '0' && s[1] == 'o') return all_of(s + 2, n - 2, is_octal);
  if (n > 2 && s[0] == '0' && s[1] == 'x') return all_of(s + 2, n - 2, is_hex);
  if (n > 0 && (s[0] == '-' || s[0] == '+')) s++, n--;
  return all_of(s, n, is_digit);
}

static size_t skip_digits(const char *s, size_t n, size_t i) {
  while (i < n && is_digit(s[i]))
    i++;
  return i;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? or an infinity/NaN. */
static int core_is_float(const char *s, size_t n) {
  size_t i = 0, j;
  if (str_in(s, n, core_nans)) return 1;
  if (n > 0 && (s[0] == '-' || s[0] == '+')) i++;
  if (str_in(s + i, n - i, core_infs)) return 1;
  if (i < n && s[i] == '.') {
    j = skip_digits(s, n, i + 1);
    if (j == i + 1) return 0;
  } else {
    j = skip_digits(s, n, i);
    if (j == i) return 0;
    if (j < n && s[j] == '.') j = skip_digits(s, n, j + 1);
  }
  if (j < n && (s[j] == 'e' || s[j] == 'E')) {
    size_t k = j + 1;
    if (k < n && (s[k] == '-' || s[k] == '+')) k++;
    j = skip_digits(s, n, k);
    if (j == k) return 0;
  }
  return j == n;
}

static int core_kind(const char *s, size_t n) {
  if (n == 0 || str_in(s, n, core_nulls)) return K_NULL;
  if (str_in(s, n, core_trues) || str_in(s, n, core_falses)) return K_BOOL;
  if (core_is_int(s, n)) return K_INT;
  if (core_is_float(s, n)) return K_FLOAT;
  return K_STR;
}

static int hex_value(char c) {
  if (is_digit(c)) return c - '0';
  return (c | 0x20) - 'a' + 10;
}

/* 0o / 0x literals: an integer while it fits in lua_Integer, else a float. */
static void push_radix(lua_State *L, const char *s, size_t n, int base) {
  lua_Unsigned u = 0, limit = (lua_Unsigned)LUA_MAXINTEGER;
  double d = 0;
  int fits = 1;
  for (size_t i = 0; i < n; i++) {
    int v = hex_value(s[i]);
    d = d * base + v;
    if (fits && u > (limit - (lua_Unsigned)v) / (lua_Unsigned)base) fits = 0;
    if (fits) u = u * (lua_Unsigned)base + (lua_Unsigned)v;
  }
  if (fits)
    lua_pushinteger(L, (lua_Integer)u);
  else
    lua_pushnumber(L, (lua_Number)d);
}

/* Push the core-schema value of s, already known to be of kind k. s is
 * NUL-terminated (libyaml terminates every scalar). */
static void push_core(lua_State *L, const char *s, size_t n, int k) {
  switch (k) {
  case K_NULL:
    lua_pushvalue(L, UV_NULL);
    break;
  case K_BOOL:
    lua_pushboolean(L, s[0] == 't' || s[0] == 'T');
    break;
  case K_INT:
    if (n > 2 && s[1] == 'o')
      push_radix(L, s + 2, n - 2, 8);
    else if (n > 2 && s[1] == 'x')
      push_radix(L, s + 2, n - 2, 16);
    else if (lua_stringtonumber(L, s) == 0) /* overflow gives a float */
      lua_pushnumber(L, 0);
    break;
  case K_FLOAT:
    if (str_in(s, n, core_nans))
      lua_pushnumber(L, (lua_Number)NAN);
    else if (s[0] == '-' && str_in(s + 1, n - 1, core_infs))
      lua_pushnumber(L, (lua_Number)-HUGE_VAL);
    else if (str_in(s, n, core_infs) || (s[0] == '+' && str_in(s + 1, n - 1, core_infs)))
      lua_pushnumber(L, (lua_Number)HUGE_VAL);
    else if (lua_stringtonumber(L, s) == 0) /* has '.' or 'e': a float */
      lua_pushnumber(L, 0);
    break;
  default:
    lua_pushlstring(L, s, n);
  }
}

/* ---- decoding ---------------------------------------------------------- */

typedef struct {
  yaml_parser_t parser;
  yaml_event_t event;
  int parser_live, event_live;
} parser_box;

static void parser_box_free(parser_box *b) {
  if (b->event_live) yaml_event_delete(&b->event);
  if (b->parser_live) yaml_parser_delete(&b->parser);
  b->event_live = b->parser_live = 0;
}

static int parser_box_gc(lua_State *L) {
  parser_box_free(luaL_checkudata(L, 1, PARSER_MT));
  return 0;
}

typedef struct {
  lua_State *L;
  parser_box *box;
  yaml_event_t *ev; /* &box->event: the current event */
  const char *input;
  size_t input_len;
  int anchors;  /* stack index: anchor name -> value */
  int sizes;    /* anchor name -> expanded node count */
  int keytexts; /* anchor name -> text, for scalar anchors (alias keys) */
  uint64_t aliased;
  int depth;
  size_t line, column; /* 1-based position of the first error */
  char msg[400];
} decoder;

static int dec_fail(decoder *d, size_t line0, size_t col0, const char *fmt, ...) {
  va_list ap;
  d->line = line0 + 1;
  d->column = col0 + 1;
  va_start(ap, fmt);
  vsnprintf(d->msg, sizeof d->msg, fmt, ap);
  va_end(ap);
  return 0;
}

#define dec_fail_mark(d, mark, ...) dec_fail((d), (mark).line, (mark).column, __VA_ARGS__)

static int dec_parser_error(decoder *d) {
  yaml_parser_t *p = &d->box->parser;
  const char *problem = p->problem ? p->problem : "cannot parse the document";
  if (p->error == YAML_MEMORY_ERROR) return dec_fail(d, 0, 0, "out of memory");
  if (p->error == YAML_READER_ERROR) {
    /* Reader errors carry a byte offset, not a mark. */
    size_t line = 0, col = 0, off = p->problem_offset;
    for (size_t i = 0; i < off && i < d->input_len; i++) {
      if (d->input[i] == '\n')
        line++, col = 0;
      else
        col++;
    }
    return dec_fail(d, line, col, "%s", problem);
  }
  if (p->context)
    return dec_fail_mark(d, p->problem_mark, "%s (%s at line %zu, column %zu)", problem, p->context,
                         p->context_mark.line + 1, p->context_mark.column + 1);
  return dec_fail_mark(d, p->problem_mark, "%s", problem);
}

static int dec_next(decoder *d) {
  parser_box *b = d->box;
  if (b->event_live) {
    yaml_event_delete(&b->event);
    b->event_live = 0;
  }
  if (!yaml_parser_parse(&b->parser, &b->event)) return dec_parser_error(d);
  b->event_live = 1;
  return 1;
}

/* Record the value on the stack top under the anchor named at name_idx. */
static void dec_anchor(decoder *d, int name_idx, uint64_t size) {
  lua_State *L = d->L;
  lua_pushvalue(L, name_idx);
  lua_pushvalue(L, -2);
  lua_rawset(L, d->anchors);
  lua_pushvalue(L, name_idx);
  lua_pushinteger(L, (lua_Integer)size);
  lua_rawset(L, d->sizes);
}

static int is_table_with(lua_State *L, int idx, int mt) {
  int same;
  if (lua_type(L, idx) != LUA_TTABLE || !lua_getmetatable(L, idx)) return 0;
  same = lua_rawequal(L, -1, mt);
  lua_pop(L, 1);
  return same;
}

/* Push the value of the current scalar event: explicit standard tags first,
 * then the core schema for untagged plain scalars; everything else is text. */
static int dec_push_scalar(decoder *d) {
  lua_State *L = d->L;
  yaml_event_t *ev = d->ev;
  const char *s = (const char *)ev->data.scalar.value;
  size_t n = ev->data.scalar.length;
  const char *tag = (const char *)ev->data.scalar.tag;
  int k = K_STR;

  if (tag && strcmp(tag, "!") == 0) {
    lua_pushlstring(L, s, n); /* the non-specific tag forces a string */
    return 1;
  }
  if (tag && strncmp(tag, TAG_PREFIX, TAG_PREFIX_LEN) == 0) {
    const char *t = tag + TAG_PREFIX_LEN;
    if (strcmp(t, "str") == 0) {
      lua_pushlstring(L, s, n);
      return 1;
    }
    if (strlen(s) == n) k = core_kind(s, n);
    if (strcmp(t, "null") == 0 || strcmp(t, "bool") == 0 || strcmp(t, "int") == 0) {
      int want = t[0] == 'n' ? K_NULL : t[0] == 'b' ? K_BOOL : K_INT;
      if (k != want) return dec_fail_mark(d, ev->start_mark, "invalid !!%s value \"%.100s\"", t, s);
      push_core(L, s, n, k);
      return 1;
    }
    if (strcmp(t, "float") == 0) {
      if (k != K_INT && k != K_FLOAT)
        return dec_fail_mark(d, ev->start_mark, "invalid !!float value \"%.100s\"", s);
      push_core(L, s, n, k);
      if (lua_isinteger(L, -1)) {
        lua_Number x = (lua_Number)lua_tointeger(L, -1);
        lua_pop(L, 1);
        lua_pushnumber(L, x);
      }
      return 1;
    }
    /* other standard tags (!!binary, !!timestamp, ...): untagged reading */
  }
  if (ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) k = core_kind(s, n);
  push_core(L, s, n, k);
  return 1;
}

static int dec_node(decoder *d, uint64_t *size);

static int dec_alias(decoder *d, uint64_t *size) {
  lua_State *L = d->L;
  const char *name = (const char *)d->ev->data.alias.anchor;
  uint64_t n;
  lua_getfield(L, d->sizes, name);
  if (lua_isnil(L, -1))
    return dec_fail_mark(d, d->ev->start_mark, "unknown anchor '%.100s' referenced", name);
  n = (uint64_t)lua_tointeger(L, -1);
  lua_pop(L, 1);
  d->aliased = size_add(d->aliased, n);
  if (d->aliased > YAML_MAX_ALIASED)
    return dec_fail_mark(d, d->ev->start_mark, "aliases expand to more than %u nodes",
                         YAML_MAX_ALIASED);
  lua_getfield(L, d->anchors, name);
  *size = n;
  return 1;
}

static int dec_scalar(decoder *d, uint64_t *size) {
  lua_State *L = d->L;
  yaml_event_t *ev = d->ev;
  if (!dec_push_scalar(d)) return 0;
  *size = 1;
  if (ev->data.scalar.anchor) {
    int v = lua_gettop(L), name;
    lua_pushstring(L, (const char *)ev->data.scalar.anchor);
    name = lua_gettop(L);
    lua_pushvalue(L, v);
    dec_anchor(d, name, 1);
    lua_pushvalue(L, name);
    lua_pushlstring(L, (const char *)ev->data.scalar.value, ev->data.scalar.length);
    lua_rawset(L, d->keytexts);
    lua_settop(L, v);
  }
  return 1;
}

static int dec_enter(decoder *d) {
  if (++d->depth > YAML_MAX_DEPTH)
    return dec_fail_mark(d, d->ev->start_mark, "nesting deeper than %d levels", YAML_MAX_DEPTH);
  if (!lua_checkstack(d->L, 12))
    return dec_fail_mark(d, d->ev->start_mark, "nesting too deep for the Lua stack");
  return 1;
}

/* Push the anchor name of a collection (the event is gone once its children
 * are parsed); returns its stack index or 0. */
static int dec_push_anchor_name(decoder *d, yaml_char_t *anchor) {
  if (!anchor) return 0;
  lua_pushstring(d->L, (const char *)anchor);
  return lua_gettop(d->L);
}

static void dec_leave(decoder *d, int name_idx, uint64_t size) {
  d->depth--;
  if (name_idx) {
    dec_anchor(d, name_idx, size);
    lua_remove(d->L, name_idx);
  }
}

static int dec_sequence(decoder *d, uint64_t *size) {
  lua_State *L = d->L;
  int name_idx, t;
  lua_Integer i = 0;
  uint64_t total = 1, child;
  if (!dec_enter(d)) return 0;
  name_idx = dec_push_anchor_name(d, d->ev->data.sequence_start.anchor);
  lua_newtable(L);
  lua_pushvalue(L, UV_ARRAY);
  lua_setmetatable(L, -2);
  t = lua_gettop(L);
  for (;;) {
    if (!dec_next(d)) return 0;
    if (d->ev->type == YAML_SEQUENCE_END_EVENT) break;
    if (!dec_node(d, &child)) return 0;
    lua_rawseti(L, t, ++i);
    total = size_add(total, child);
  }
  dec_leave(d, name_idx, total);
  *size = total;
  return 1;
}

/* Push the key of the current event as a string: the text as written.
 * Sets *merge (and pushes nothing) for the merge key `<<`. */
static int dec_key(decoder *d, int *merge) {
  lua_State *L = d->L;
  yaml_event_t *ev = d->ev;
  *merge = 0;
  if (ev->type == YAML_SCALAR_EVENT) {
    const char *tag = (const char *)ev->data.scalar.tag;
    const char *s = (const char *)ev->data.scalar.value;
    size_t n = ev->data.scalar.length;
    if ((!tag && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE && str_is(s, n, "<<")) ||
        (tag && strcmp(tag, TAG_PREFIX "merge") == 0)) {
      *merge = 1;
      return 1;
    }
    if (ev->data.scalar.anchor) {
      uint64_t one;
      if (!dec_scalar(d, &one)) return 0;
      lua_pop(L, 1);
    }
    lua_pushlstring(L, s, n);
    return 1;
  }
  if (ev->type == YAML_ALIAS_EVENT) {
    const char *name = (const char *)ev->data.alias.anchor;
    if (lua_getfield(L, d->keytexts, name) == LUA_TSTRING) {
      d->aliased = size_add(d->aliased, 1);
      return 1;
    }
    lua_pop(L, 1);
    if (lua_getfield(L, d->anchors, name) == LUA_TNIL)
      return dec_fail_mark(d, ev->start_mark, "unknown anchor '%.100s' referenced", name);
    return dec_fail_mark(d, ev->start_mark, "alias *%.100s used as a key does not name a scalar",
                         name);
  }
  return dec_fail_mark(d, ev->start_mark,
                       "sequence or mapping used as a mapping key is not supported");
}

/* Copy into t the keys of the mapping at src that t lacks. */
static void dec_merge_from(lua_State *L, int t, int src) {
  lua_pushnil(L);
  while (lua_next(L, src)) {
    lua_pushvalue(L, -2);
    if (lua_rawget(L, t) == LUA_TNIL) {
      lua_pop(L, 1);
      lua_pushvalue(L, -2);
      lua_insert(L, -2);
      lua_rawset(L, t);
    } else {
      lua_pop(L, 2);
    }
  }
}

/* Explicit keys were set first; merged mappings fill only the gaps, in list
 * order, so explicit keys win and earlier mappings win over later ones. */
static int dec_apply_merge(decoder *d, int t, int m, yaml_mark_t mark) {
  lua_State *L = d->L;
  if (is_table_with(L, m, UV_OBJECT)) {
    dec_merge_from(L, t, m);
    return 1;
  }
  if (is_table_with(L, m, UV_ARRAY)) {
    lua_Integer n = (lua_Integer)lua_rawlen(L, m);
    for (lua_Integer i = 1; i <= n; i++) {
      lua_rawgeti(L, m, i);
      if (!is_table_with(L, -1, UV_OBJECT)) break;
      lua_pop(L, 1);
    }
    if (lua_gettop(L) == m) {
      for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, m, i);
        dec_merge_from(L, t, lua_gettop(L));
        lua_pop(L, 1);
      }
      return 1;
    }
  }
  return dec_fail_mark(d, mark, "merge key '<<' needs a mapping or a list of mappings");
}

static int dec_mapping(decoder *d, uint64_t *size) {
  lua_State *L = d->L;
  int name_idx, t, m = 0, merge;
  uint64_t total = 1, child;
  yaml_mark_t merge_mark = {0, 0, 0};
  if (!dec_enter(d)) return 0;
  name_idx = dec_push_anchor_name(d, d->ev->data.mapping_start.anchor);
  lua_newtable(L);
  lua_pushvalue(L, UV_OBJECT);
  lua_setmetatable(L, -2);
  t = lua_gettop(L);
  for (;;) {
    yaml_mark_t km;
    if (!dec_next(d)) return 0;
    if (d->ev->type == YAML_MAPPING_END_EVENT) break;
    km = d->ev->start_mark;
    if (!dec_key(d, &merge)) return 0;
    if (merge) {
      if (m) return dec_fail_mark(d, km, "duplicate key \"<<\"");
      if (!dec_next(d) || !dec_node(d, &child)) return 0;
      m = lua_gettop(L);
      merge_mark = km;
    } else {
      lua_pushvalue(L, -1);
      if (lua_rawget(L, t) != LUA_TNIL)
        return dec_fail_mark(d, km, "duplicate key \"%.100s\"", lua_tostring(L, -2));
      lua_pop(L, 1);
      if (!dec_next(d) || !dec_node(d, &child)) return 0;
      lua_rawset(L, t);
    }
    total = size_add(total, size_add(child, 1));
  }
  if (m) {
    if (!dec_apply_merge(d, t, m, merge_mark)) return 0;
    lua_settop(L, t);
  }
  dec_leave(d, name_idx, total);
  *size = total;
  return 1;
}

static int dec_node(decoder *d, uint64_t *size) {
  switch (d->ev->type) {
  case YAML_ALIAS_EVENT:
    return dec_alias(d, size);
  case YAML_SCALAR_EVENT:
    return dec_scalar(d, size);
  case YAML_SEQUENCE_START_EVENT:
    return dec_sequence(d, size);
  case YAML_MAPPING_START_EVENT:
    return dec_mapping(d, size);
  default:
    return dec_fail_mark(d, d->ev->start_mark, "unexpected parser event");
  }
}

/* At DOCUMENT_START: push the document's root. Anchors are per document. */
static int dec_document(decoder *d, int *empty) {
  lua_State *L = d->L;
  uint64_t size;
  yaml_event_t *ev = d->ev;
  lua_newtable(L);
  lua_replace(L, d->anchors);
  lua_newtable(L);
  lua_replace(L, d->sizes);
  lua_newtable(L);
  lua_replace(L, d->keytexts);
  if (!dec_next(d)) return 0;
  *empty = ev->type == YAML_SCALAR_EVENT && ev->data.scalar.length == 0 && !ev->data.scalar.tag &&
           !ev->data.scalar.anchor && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  if (!dec_node(d, &size)) return 0;
  if (!dec_next(d)) return 0;
  if (ev->type != YAML_DOCUMENT_END_EVENT)
    return dec_fail_mark(d, ev->start_mark, "expected the end of the document");
  return 1;
}

/* Leaves the input at 1, the parser box at 2 and the anchor tables at 3..5;
 * the stream start has been read. */
static int dec_begin(lua_State *L, decoder *d, const char *fname) {
  memset(d, 0, sizeof *d);
  d->L = L;
  /* text only: luaL_checklstring would turn a number into its digits */
  if (lua_type(L, 1) != LUA_TSTRING)
    luaL_error(L, "%s: expected a string, got %s", fname, luaL_typename(L, 1));
  d->input = lua_tolstring(L, 1, &d->input_len);
  lua_settop(L, 1);
  d->box = lua_newuserdatauv(L, sizeof *d->box, 0);
  memset(d->box, 0, sizeof *d->box);
  luaL_setmetatable(L, PARSER_MT);
  if (!yaml_parser_initialize(&d->box->parser)) return luaL_error(L, "yaml: out of memory");
  d->box->parser_live = 1;
  yaml_parser_set_input_string(&d->box->parser, (const unsigned char *)d->input, d->input_len);
  d->ev = &d->box->event;
  lua_newtable(L);
  d->anchors = lua_gettop(L);
  lua_newtable(L);
  d->sizes = lua_gettop(L);
  lua_newtable(L);
  d->keytexts = lua_gettop(L);
  return dec_next(d);
}

/* Raises the parse error {kind="parse", message=, line=, column=} of d. */
static int dec_raise(decoder *d) {
  lua_State *L = d->L;
  relish_push_error(L, "parse", "yaml: line %d, column %d: %s", (int)d->line, (int)d->column,
                    d->msg);
  lua_pushinteger(L, (lua_Integer)d->line);
  lua_setfield(L, -2, "line");
  lua_pushinteger(L, (lua_Integer)d->column);
  lua_setfield(L, -2, "column");
  return lua_error(L);
}

static int dec_finish(decoder *d, int ok) {
  parser_box_free(d->box);
  if (ok) return 1;
  lua_settop(d->L, 1);
  return dec_raise(d);
}

/* yaml.decode(s): the first document of s (null when there is none). */
static int l_yaml_decode(lua_State *L) {
  decoder d;
  int ok = dec_begin(L, &d, "yaml.decode"), empty;
  if (ok) ok = dec_next(&d);
  if (ok && d.ev->type == YAML_STREAM_END_EVENT)
    lua_pushvalue(L, UV_NULL);
  else if (ok)
    ok = dec_document(&d, &empty);
  return dec_finish(&d, ok);
}

/* yaml.decode_all(s): every document, skipping empty ones (as kubectl does). */
static int l_yaml_decode_all(lua_State *L) {
  decoder d;
  int ok = dec_begin(L, &d, "yaml.decode_all"), list, empty;
  lua_Integer n = 0;
  lua_newtable(L);
  lua_pushvalue(L, UV_ARRAY);
  lua_setmetatable(L, -2);
  list = lua_gettop(L);
  while (ok && (ok = dec_next(&d)) && d.ev->type != YAML_STREAM_END_EVENT) {
    ok = dec_document(&d, &empty);
    if (ok && empty)
      lua_pop(L, 1);
    else if (ok)
      lua_rawseti(L, list, ++n);
  }
  lua_settop(L, list);
  return dec_finish(&d, ok);
}

/* ---- encoding ---------------------------------------------------------- */

typedef struct {
  yaml_emitter_t emitter;
  int live;
  int too_big;
  char *buf;
  size_t len, cap;
} emitter_box;

static void emitter_box_free(emitter_box *b) {
  if (b->live) yaml_emitter_delete(&b->emitter);
  free(b->buf);
  b->live = 0;
  b->buf = NULL;
  b->len = b->cap = 0;
}

static int emitter_box_gc(lua_State *L) {
  emitter_box_free(luaL_checkudata(L, 1, EMITTER_MT));
  return 0;
}

/* libyaml output handler: must not raise, so it grows a C buffer. */
static int enc_write(void *data, unsigned char *p, size_t n) {
  emitter_box *b = data;
  if (n > YAML_MAX_OUTPUT - b->len) {
    b->too_big = 1;
    return 0;
  }
  if (b->len + n > b->cap) {
    size_t cap = b->cap ? b->cap : 4096;
    char *nb;
    while (cap < b->len + n)
      cap *= 2;
    nb = realloc(b->buf, cap);
    if (!nb) return 0;
    b->buf = nb;
    b->cap = cap;
  }
  memcpy(b->buf + b->len, p, n);
  b->len += n;
  return 1;
}

typedef struct {
  const void *table;
  const char *key; /* NULL: index */
  size_t keylen;
  lua_Integer index;
} enc_frame;

typedef struct {
  lua_State *L;
  const char *fname; /* "yaml.encode" or "yaml.encode_all", for messages */
  emitter_box *box;
  int sort_keys;
  int indent;
  int depth;
  int outer; /* frames below the value's own: 1 in encode_all (the list) */
  enc_frame frames[YAML_MAX_DEPTH + 1];
  char msg[512];
} encoder;

typedef struct {
  const char *s;
  size_t n;
  lua_Integer slot; /* original key at keys[2 * slot] */
  int is_string;
} enc_key;

static int is_ident_char(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == '-';
}

/* "$.spec.template", "$.items[2]", "$[\"app.kubernetes.io/name\"]" */
static int enc_fail(encoder *e, const char *fmt, ...) {
  char path[300];
  size_t p = 0;
  va_list ap;
  path[p++] = '$';
  path[p] = '\0';
  for (int i = 0; i < e->depth; i++) {
    const enc_frame *f = &e->frames[i];
    size_t room = sizeof path - 4 - p; /* keeps room for "..." */
    int w;
    if (!f->key && f->index == 0) /* no child entered yet */
      break;
    if (!f->key)
      w = snprintf(path + p, room, "[%lld]", (long long)f->index);
    else if (f->keylen > 0 && all_of(f->key, f->keylen, is_ident_char))
      w = snprintf(path + p, room, ".%.*s", (int)f->keylen, f->key);
    else
      w = snprintf(path + p, room, "[\"%.*s\"]", (int)(f->keylen > 60 ? 60 : f->keylen), f->key);
    if (w < 0 || (size_t)w >= room) {
      memcpy(path + p, "...", 4);
      break;
    }
    p += (size_t)w;
  }
  va_start(ap, fmt);
  p = (size_t)snprintf(e->msg, sizeof e->msg, "%s: ", e->fname);
  vsnprintf(e->msg + p, sizeof e->msg - p, fmt, ap);
  va_end(ap);
  p = strlen(e->msg);
  snprintf(e->msg + p, sizeof e->msg - p, " at %s", path);
  return 0;
}

static int enc_emit(encoder *e, yaml_event_t *ev) {
  yaml_emitter_t *em = &e->box->emitter;
  if (yaml_emitter_emit(em, ev)) return 1;
  if (e->box->too_big)
    return enc_fail(e, "output larger than %d MiB", (int)(YAML_MAX_OUTPUT >> 20));
  return enc_fail(e, "%s", em->problem ? em->problem : "cannot write the document");
}

static int enc_scalar(encoder *e, const char *s, size_t n, yaml_scalar_style_t style) {
  yaml_event_t ev;
  if (n > (size_t)INT32_MAX) return enc_fail(e, "string too long");
  if (!yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)s, (int)n, 1, 1, style))
    return enc_fail(e, "string is not valid UTF-8");
  return enc_emit(e, &ev);
}

static const char *const yaml11_words[] = {"y",   "Y",   "yes", "Yes", "YES", "n",  "N",
                                           "no",  "No",  "NO",  "on",  "On",  "ON", "off",
                                           "Off", "OFF", "<<",  "=",   NULL};

/* Whether s must be quoted: it would read back as another type under the
 * 1.2 core schema or a YAML 1.1 reader, or it is not a valid plain scalar. */
static int enc_needs_quotes(const char *s, size_t n) {
  unsigned char c0, cl;
  if (n == 0 || core_kind(s, n) != K_STR || str_in(s, n, yaml11_words)) return 1;
  c0 = (unsigned char)s[0];
  cl = (unsigned char)s[n - 1];
  if (is_digit((char)c0)) return 1; /* 0755, 1_000, 1:20, 2024-01-02, 1.2.3 */
  if (n > 1 && (c0 == '-' || c0 == '+' || c0 == '.') && (is_digit(s[1]) || s[1] == '.')) return 1;
  if (strchr("-?:,[]{}#&*!|>'\"%@`", c0)) return 1;
  if (c0 == ' ' || c0 == '\t' || cl == ' ' || cl == '\t' || cl == ':') return 1;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c < 0x20 || c == 0x7f) return 1;
    if (c == ':' && i + 1 < n && (s[i + 1] == ' ' || s[i + 1] == '\t')) return 1;
    if (c == '#' && i > 0 && (s[i - 1] == ' ' || s[i - 1] == '\t')) return 1;
  }
  return 0;
}

/* A literal block keeps the text exactly when lines end in plain \n and no
 * other control character or Unicode line break is present. */
static int enc_literal_ok(const char *s, size_t n) {
  int newline = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\n')
      newline = 1;
    else if ((c < 0x20 && c != '\t') || c == 0x7f)
      return 0;
    else if (c == 0xC2 && i + 1 < n && (unsigned char)s[i + 1] == 0x85)
      return 0;
    else if (c == 0xE2 && i + 2 < n && (unsigned char)s[i + 1] == 0x80 &&
             ((unsigned char)s[i + 2] == 0xA8 || (unsigned char)s[i + 2] == 0xA9))
      return 0;
  }
  return newline;
}

static int enc_string(encoder *e, const char *s, size_t n) {
  yaml_scalar_style_t style = YAML_PLAIN_SCALAR_STYLE;
  if (enc_needs_quotes(s, n)) {
    /* libyaml falls back to double quotes where a literal cannot go. */
    style = enc_literal_ok(s, n) ? YAML_LITERAL_SCALAR_STYLE : YAML_DOUBLE_QUOTED_SCALAR_STYLE;
  }
  return enc_scalar(e, s, n, style);
}

/* Shortest %g form that reads back as the same float, always with a '.'
 * so that YAML 1.1 readers see a float too. */
static void format_float(lua_Number x, char *out, size_t size) {
  char tmp[32];
  char *e;
  if (isnan(x)) {
    snprintf(out, size, ".nan");
    return;
  }
  if (isinf(x)) {
    snprintf(out, size, x > 0 ? ".inf" : "-.inf");
    return;
  }
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(tmp, sizeof tmp, "%.*g", prec, (double)x);
    if (strtod(tmp, NULL) == (double)x) break;
  }
  for (char *p = tmp; *p; p++) /* whatever the locale's decimal point is */
    if (!is_digit(*p) && *p != '-' && *p != '+' && *p != 'e') *p = '.';
  e = strchr(tmp, 'e');
  if (strchr(tmp, '.'))
    snprintf(out, size, "%s", tmp);
  else if (e)
    snprintf(out, size, "%.*s.0%s", (int)(e - tmp), tmp, e);
  else
    snprintf(out, size, "%s.0", tmp);
}

static int enc_value(encoder *e, int idx);

static int enc_sequence(encoder *e, int idx, lua_Integer n) {
  lua_State *L = e->L;
  yaml_event_t ev;
  enc_frame *f = &e->frames[e->depth - 1];
  yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
  if (!enc_emit(e, &ev)) return 0;
  for (lua_Integer i = 1; i <= n; i++) {
    f->key = NULL;
    f->index = i;
    lua_rawgeti(L, idx, i);
    if (!enc_value(e, lua_gettop(L))) return 0;
    lua_pop(L, 1);
  }
  yaml_sequence_end_event_initialize(&ev);
  return enc_emit(e, &ev);
}

static int enc_key_cmp(const void *a, const void *b) {
  const enc_key *x = a, *y = b;
  int c = memcmp(x->s, y->s, x->n < y->n ? x->n : y->n);
  if (c) return c;
  return (x->n > y->n) - (x->n < y->n);
}

/* Keys become strings: numbers and booleans by their text, which must not
 * clash with a string key. The keys table (left on the stack top) anchors the
 * strings that the enc_key array points to. */
static int enc_collect_keys(encoder *e, int idx, lua_Integer count, enc_key **out) {
  lua_State *L = e->L;
  int keys;
  lua_Integer i = 0;
  enc_key *k = NULL;
  lua_createtable(L, (int)(count * 2), 1);
  keys = lua_gettop(L);
  k = lua_newuserdatauv(L, (size_t)count * sizeof *k + 1, 0);
  lua_rawseti(L, keys, 0);
  lua_pushnil(L);
  while (i < count && lua_next(L, idx)) {
    int t = lua_type(L, -2);
    char num[64];
    lua_pop(L, 1);
    if (t == LUA_TNUMBER && lua_isinteger(L, -1)) {
      snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, -1));
      lua_pushstring(L, num);
    } else if (t == LUA_TNUMBER) {
      format_float(lua_tonumber(L, -1), num, sizeof num);
      lua_pushstring(L, num);
    } else if (t == LUA_TBOOLEAN) {
      lua_pushstring(L, lua_toboolean(L, -1) ? "true" : "false");
    } else if (t == LUA_TSTRING) {
      lua_pushvalue(L, -1);
    } else {
      return enc_fail(e, "cannot encode a %s as a mapping key", lua_typename(L, t));
    }
    if (t != LUA_TSTRING) {
      lua_pushvalue(L, -1);
      if (lua_rawget(L, idx) != LUA_TNIL)
        return enc_fail(e, "keys %s and \"%s\" clash", lua_tostring(L, -2), lua_tostring(L, -2));
      lua_pop(L, 1);
    }
    k[i].is_string = t == LUA_TSTRING;
    k[i].slot = i + 1;
    k[i].s = lua_tolstring(L, -1, &k[i].n);
    lua_rawseti(L, keys, 2 * i + 1);
    lua_pushvalue(L, -1);
    lua_rawseti(L, keys, 2 * i + 2);
    i++;
  }
  if (i == count) lua_pop(L, 1); /* the last key, when lua_next was not called again */
  *out = k;
  return 1;
}

static int enc_mapping(encoder *e, int idx, lua_Integer count) {
  lua_State *L = e->L;
  yaml_event_t ev;
  enc_frame *f = &e->frames[e->depth - 1];
  enc_key *k = NULL;
  int keys;
  if (!enc_collect_keys(e, idx, count, &k)) return 0;
  keys = lua_gettop(L);
  if (e->sort_keys) qsort(k, (size_t)count, sizeof *k, enc_key_cmp);
  yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
  if (!enc_emit(e, &ev)) return 0;
  for (lua_Integer i = 0; i < count; i++) {
    f->key = k[i].s;
    f->keylen = k[i].n;
    if (!(k[i].is_string ? enc_string(e, k[i].s, k[i].n)
                         : enc_scalar(e, k[i].s, k[i].n, YAML_PLAIN_SCALAR_STYLE)))
      return 0;
    lua_rawgeti(L, keys, 2 * k[i].slot);
    lua_rawget(L, idx);
    if (!enc_value(e, lua_gettop(L))) return 0;
    lua_pop(L, 1);
  }
  lua_settop(L, keys - 1);
  yaml_mapping_end_event_initialize(&ev);
  return enc_emit(e, &ev);
}

/* A json-marked table is what its mark says; a plain one is a sequence when
 * its keys are exactly 1..n (n > 0), else a mapping. */
static int enc_table(encoder *e, int idx) {
  lua_State *L = e->L;
  const void *p = lua_topointer(L, idx);
  lua_Integer count = 0, max = 0;
  int seq = -1, ok;
  for (int i = 0; i < e->depth; i++)
    if (e->frames[i].table == p) return enc_fail(e, "cycle: the table contains itself");
  /* the limit decode has: whatever it reads can be written back */
  if (e->depth - e->outer >= YAML_MAX_DEPTH)
    return enc_fail(e, "nesting deeper than %d levels", YAML_MAX_DEPTH);
  if (!lua_checkstack(L, 12)) return enc_fail(e, "nesting too deep for the Lua stack");
  if (lua_getmetatable(L, idx)) {
    if (lua_rawequal(L, -1, UV_ARRAY))
      seq = 1;
    else if (lua_rawequal(L, -1, UV_OBJECT))
      seq = 0;
    lua_pop(L, 1);
  }
  lua_pushnil(L);
  while (lua_next(L, idx)) {
    lua_pop(L, 1);
    count++;
    if (max >= 0 && lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1) {
      lua_Integer v = lua_tointeger(L, -1);
      if (v > max) max = v;
    } else {
      max = -1;
    }
  }
  if (seq < 0)
    seq = count > 0 && max == count;
  else if (seq == 1) /* a marked array: 1..#t */
    count = (lua_Integer)lua_rawlen(L, idx);
  e->frames[e->depth].table = p;
  e->frames[e->depth].key = NULL;
  e->frames[e->depth].index = 0;
  e->depth++;
  ok = seq ? enc_sequence(e, idx, count) : enc_mapping(e, idx, count);
  if (ok) e->depth--;
  return ok;
}

static int enc_value(encoder *e, int idx) {
  lua_State *L = e->L;
  char num[64];
  size_t n;
  const char *s;
  switch (lua_type(L, idx)) {
  case LUA_TNIL:
    return enc_scalar(e, "null", 4, YAML_PLAIN_SCALAR_STYLE);
  case LUA_TBOOLEAN:
    return lua_toboolean(L, idx) ? enc_scalar(e, "true", 4, YAML_PLAIN_SCALAR_STYLE)
                                 : enc_scalar(e, "false", 5, YAML_PLAIN_SCALAR_STYLE);
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx))
      snprintf(num, sizeof num, "%lld", (long long)lua_tointeger(L, idx));
    else
      format_float(lua_tonumber(L, idx), num, sizeof num);
    return enc_scalar(e, num, strlen(num), YAML_PLAIN_SCALAR_STYLE);
  case LUA_TSTRING:
    s = lua_tolstring(L, idx, &n);
    return enc_string(e, s, n);
  case LUA_TLIGHTUSERDATA:
    if (lua_rawequal(L, idx, UV_NULL)) return enc_scalar(e, "null", 4, YAML_PLAIN_SCALAR_STYLE);
    return enc_fail(e, "cannot encode a light userdata");
  case LUA_TTABLE:
    return enc_table(e, idx);
  default:
    return enc_fail(e, "cannot encode a %s", luaL_typename(L, idx));
  }
}

/* Options are checked before anything is allocated (misuse raises). */
static void enc_options(lua_State *L, int arg, encoder *e) {
  static const char *const options[] = {"sort_keys", "indent", NULL};
  const char *fname = e->fname;
  e->sort_keys = 1;
  e->indent = 2;
  relish_checkopts(L, arg, fname, options);
  if (lua_isnoneornil(L, arg)) return;
  lua_pushnil(L);
  while (lua_next(L, arg)) {
    const char *k = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "?";
    if (strcmp(k, "sort_keys") == 0) {
      if (!lua_isboolean(L, -1))
        luaL_error(L, "%s: sort_keys must be a boolean, got %s", fname, luaL_typename(L, -1));
      e->sort_keys = lua_toboolean(L, -1);
    } else if (strcmp(k, "indent") == 0) {
      int isnum;
      lua_Integer v = lua_tointegerx(L, -1, &isnum);
      if (!isnum || v < 2 || v > 9)
        luaL_error(L, "%s: indent must be an integer from 2 to 9", fname);
      e->indent = (int)v;
    }
    lua_pop(L, 1);
  }
}

/* Encode the value at 1 (one document) or, if all, each item of the list at
 * 1 as its own document after an explicit "---". */
static int enc_run(lua_State *L, int all) {
  encoder *e;
  emitter_box *b;
  yaml_event_t ev;
  lua_Integer n = 1;
  int ok;
  const char *fname = all ? "yaml.encode_all" : "yaml.encode";
  if (lua_isnone(L, 1)) return luaL_error(L, "%s: expected a value, got no value", fname);
  if (all && !lua_istable(L, 1))
    return luaL_error(L, "%s: expected a list of documents, got %s", fname, luaL_typename(L, 1));
  lua_settop(L, 2);
  e = lua_newuserdatauv(L, sizeof *e, 0); /* collected with the stack */
  memset(e, 0, sizeof *e);
  e->fname = fname;
  enc_options(L, 2, e);
  if (all) n = (lua_Integer)lua_rawlen(L, 1);
  b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, EMITTER_MT);
  if (!yaml_emitter_initialize(&b->emitter)) return luaL_error(L, "%s: out of memory", fname);
  b->live = 1;
  e->L = L;
  e->box = b;
  yaml_emitter_set_output(&b->emitter, enc_write, b);
  yaml_emitter_set_unicode(&b->emitter, 1);
  yaml_emitter_set_width(&b->emitter, -1);
  yaml_emitter_set_indent(&b->emitter, e->indent);

  yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
  ok = enc_emit(e, &ev);
  for (lua_Integer i = 1; ok && i <= n; i++) {
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, !all);
    ok = enc_emit(e, &ev);
    if (!ok) break;
    if (all) {
      lua_rawgeti(L, 1, i);
      e->frames[0].key = NULL;
      e->frames[0].index = i;
      e->depth = e->outer = 1; /* paths read $[i] for documents */
      e->frames[0].table = lua_topointer(L, 1);
    } else {
      lua_pushvalue(L, 1);
    }
    ok = enc_value(e, lua_gettop(L));
    if (!ok) break;
    lua_pop(L, 1);
    e->depth = 0;
    yaml_document_end_event_initialize(&ev, 1);
    ok = enc_emit(e, &ev);
  }
  if (ok) {
    yaml_stream_end_event_initialize(&ev);
    ok = enc_emit(e, &ev) && yaml_emitter_flush(&b->emitter);
    if (!ok && !e->msg[0]) enc_fail(e, "cannot write the document");
  }
  if (!ok) {
    emitter_box_free(b);
    return luaL_error(L, "%s", e->msg);
  }
  lua_pushlstring(L, b->buf ? b->buf : "", b->len);
  emitter_box_free(b);
  return 1;
}

/* yaml.encode(v, opts?) -> string */
static int l_yaml_encode(lua_State *L) { return enc_run(L, 0); }

/* yaml.encode_all(list, opts?) -> string of "---" separated documents */
static int l_yaml_encode_all(lua_State *L) { return enc_run(L, 1); }

/* ---- locating a scalar's text ------------------------------------------ */

/* yaml.locate finds where a value is written, so that a caller can replace
 * that text alone and keep every other byte (comments, order, quoting) as it
 * was. The document is read into a small tree of nodes carrying libyaml's
 * marks; nothing is resolved (aliases stay aliases, merges are not applied). */

#define LOCATOR_MT "relish.yaml.Locator"

enum { LN_SCALAR, LN_SEQUENCE, LN_MAPPING, LN_ALIAS };

typedef struct {
  int type, style, props;   /* props: the scalar carries an anchor or a tag */
  size_t start, end;        /* character indexes of libyaml's marks */
  size_t text, len;         /* scalar value in the pool */
  size_t first, last, next; /* children (mappings: key, value, key, ...); 0 = none */
} loc_node;

typedef struct {
  parser_box parser;
  loc_node *nodes; /* nodes[0] is unused, so 0 means none */
  size_t count, cap;
  char *pool;
  size_t used, room;
} locator_box;

static void locator_box_free(locator_box *b) {
  parser_box_free(&b->parser);
  free(b->nodes);
  free(b->pool);
  b->nodes = NULL;
  b->pool = NULL;
  b->count = b->cap = b->used = b->room = 0;
}

static int locator_box_gc(lua_State *L) {
  locator_box_free(luaL_checkudata(L, 1, LOCATOR_MT));
  return 0;
}

static int grow(void **p, size_t *cap, size_t need, size_t size) {
  size_t c = *cap ? *cap : 64;
  void *np;
  if (need <= *cap) return 1;
  while (c < need)
    c *= 2;
  np = realloc(*p, c * size);
  if (!np) return 0;
  *p = np;
  *cap = c;
  return 1;
}

/* A new node for the current event, child of parent (0: the root). */
static size_t loc_add(decoder *d, locator_box *b, int type, size_t parent) {
  yaml_event_t *ev = d->ev;
  loc_node *n;
  size_t id = b->count ? b->count : 1;
  if (!grow((void **)&b->nodes, &b->cap, id + 1, sizeof *b->nodes)) {
    dec_fail(d, 0, 0, "out of memory");
    return 0;
  }
  if (id == 1) /* node 0 stands for "none": links through it lead nowhere */
    memset(&b->nodes[0], 0, sizeof *b->nodes);
  n = &b->nodes[id];
  memset(n, 0, sizeof *n);
  n->type = type;
  n->start = ev->start_mark.index;
  n->end = ev->end_mark.index;
  if (type == LN_SCALAR || type == LN_ALIAS) {
    const char *s = type == LN_SCALAR ? (const char *)ev->data.scalar.value
                                      : (const char *)ev->data.alias.anchor;
    size_t len = type == LN_SCALAR ? ev->data.scalar.length : strlen(s);
    if (!grow((void **)&b->pool, &b->room, b->used + len + 1, 1)) {
      dec_fail(d, 0, 0, "out of memory");
      return 0;
    }
    memcpy(b->pool + b->used, s, len);
    b->pool[b->used + len] = '\0';
    n->text = b->used;
    n->len = len;
    b->used += len + 1;
  }
  if (type == LN_SCALAR) {
    n->style = ev->data.scalar.style;
    n->props = ev->data.scalar.anchor || ev->data.scalar.tag;
  }
  if (parent) {
    if (b->nodes[parent].last)
      b->nodes[b->nodes[parent].last].next = id;
    else
      b->nodes[parent].first = id;
    b->nodes[parent].last = id;
  }
  b->count = id + 1;
  return id;
}

/* The node whose first event is current, with everything under it. */
static int loc_build(decoder *d, locator_box *b, size_t parent) {
  yaml_event_type_t end;
  size_t id;
  switch (d->ev->type) {
  case YAML_SCALAR_EVENT:
    return loc_add(d, b, LN_SCALAR, parent) != 0;
  case YAML_ALIAS_EVENT:
    return loc_add(d, b, LN_ALIAS, parent) != 0;
  case YAML_SEQUENCE_START_EVENT:
    id = loc_add(d, b, LN_SEQUENCE, parent);
    end = YAML_SEQUENCE_END_EVENT;
    break;
  case YAML_MAPPING_START_EVENT:
    id = loc_add(d, b, LN_MAPPING, parent);
    end = YAML_MAPPING_END_EVENT;
    break;
  default:
    return dec_fail_mark(d, d->ev->start_mark, "unexpected parser event");
  }
  if (!id || !dec_enter(d)) return 0;
  for (;;) {
    if (!dec_next(d)) return 0;
    if (d->ev->type == end) break;
    if (!loc_build(d, b, id)) return 0;
  }
  b->nodes[id].end = d->ev->end_mark.index;
  d->depth--;
  return 1;
}

static int loc_text_is(const locator_box *b, size_t n, const char *s, size_t len) {
  const loc_node *x = &b->nodes[n];
  return x->type == LN_SCALAR && x->len == len && memcmp(b->pool + x->text, s, len) == 0;
}

/* The value of key in mapping m, or 0. */
static size_t loc_value_of(const locator_box *b, size_t m, const char *key, size_t len) {
  for (size_t k = b->nodes[m].first; k; k = b->nodes[b->nodes[k].next].next) {
    if (loc_text_is(b, k, key, len)) return b->nodes[k].next;
  }
  return 0;
}

/* One step of the path from node n by the element at the stack top: a key
 * of a mapping, a 1-based index or a "key=value" selector of a sequence. */
static size_t loc_step(lua_State *L, const locator_box *b, size_t n) {
  const loc_node *x = &b->nodes[n];
  size_t len;
  const char *s, *eq;
  if (x->type == LN_SEQUENCE && lua_isinteger(L, -1)) {
    lua_Integer i = lua_tointeger(L, -1);
    for (size_t c = x->first; c; c = b->nodes[c].next)
      if (--i == 0) return c;
    return 0;
  }
  if (lua_type(L, -1) != LUA_TSTRING) return 0;
  s = lua_tolstring(L, -1, &len);
  if (x->type == LN_MAPPING) return loc_value_of(b, n, s, len);
  if (x->type != LN_SEQUENCE || !(eq = memchr(s, '=', len))) return 0;
  for (size_t c = x->first; c; c = b->nodes[c].next) {
    size_t v;
    if (b->nodes[c].type != LN_MAPPING) continue;
    v = loc_value_of(b, c, s, (size_t)(eq - s));
    if (v && loc_text_is(b, v, eq + 1, len - (size_t)(eq - s) - 1)) return c;
  }
  return 0;
}

/* Follows the path (the table at 2) from the root; returns the node reached
 * and sets *depth to the number of elements followed. */
static size_t loc_walk(lua_State *L, const locator_box *b, size_t root, lua_Integer n,
                       lua_Integer *depth) {
  size_t at = root;
  for (*depth = 0; *depth < n; (*depth)++) {
    size_t next;
    lua_rawgeti(L, 2, *depth + 1);
    next = loc_step(L, b, at);
    lua_pop(L, 1);
    if (!next) break;
    at = next;
  }
  return at;
}

/* Pushes path elements from..to as text, like spec.containers[name=app].image
 * or items[2]["app.kubernetes.io/name"]. */
static void loc_push_path(lua_State *L, lua_Integer from, lua_Integer to) {
  luaL_Buffer buf;
  luaL_buffinit(L, &buf);
  for (lua_Integer i = from; i <= to; i++) {
    size_t len;
    const char *s;
    lua_rawgeti(L, 2, i);
    if (lua_isinteger(L, -1)) {
      lua_pushfstring(L, "[%I]", (LUAI_UACINT)lua_tointeger(L, -1));
    } else {
      s = lua_tolstring(L, -1, &len);
      if (len > 0 && all_of(s, len, is_ident_char))
        lua_pushfstring(L, i == from ? "%s" : ".%s", s);
      else if (memchr(s, '=', len))
        lua_pushfstring(L, "[%s]", s);
      else
        lua_pushfstring(L, "[\"%s\"]", s);
    }
    lua_remove(L, -2);
    luaL_addvalue(&buf);
  }
  luaL_pushresult(&buf);
}

static const char *const loc_styles[] = {"plain", "plain", "single", "double", "literal", "folded"};

/* Byte offset of character index ci (libyaml counts characters; a UTF-8 BOM
 * is skipped before counting). */
static size_t loc_byte(const char *s, size_t n, size_t ci) {
  size_t i = (n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
  for (; i < n; i++) {
    if (((unsigned char)s[i] & 0xC0) == 0x80) continue;
    if (ci-- == 0) break;
  }
  return i;
}

/* The scalar's own text starts after its anchor and tag, and whatever
 * blanks, line breaks and comments follow them. */
static size_t loc_skip_props(const char *s, size_t n, size_t i) {
  while (i < n && (s[i] == '&' || s[i] == '!')) {
    while (i < n && !strchr(" \t\r\n,[]{}", s[i]))
      i++;
    while (i < n && strchr(" \t\r\n#", s[i])) {
      if (s[i] == '#')
        while (i < n && s[i] != '\n')
          i++;
      else
        i++;
    }
  }
  return i;
}

/* Pushes start, stop and the info table for scalar node x of document doc. */
static int loc_push_result(lua_State *L, const char *s, size_t n, const locator_box *b,
                           const loc_node *x, lua_Integer doc) {
  size_t start = loc_byte(s, n, x->start), stop = loc_byte(s, n, x->end);
  size_t line = 1, column = 1;
  if (x->props) start = loc_skip_props(s, stop, start);
  for (size_t i = 0; i < start; i++) {
    if (s[i] == '\n')
      line++, column = 1;
    else if (((unsigned char)s[i] & 0xC0) != 0x80)
      column++;
  }
  lua_pushinteger(L, (lua_Integer)start + 1);
  lua_pushinteger(L, (lua_Integer)stop + 1);
  lua_createtable(L, 0, 5);
  lua_pushstring(L, loc_styles[x->style < 6 ? x->style : 0]);
  lua_setfield(L, -2, "style");
  lua_pushinteger(L, doc);
  lua_setfield(L, -2, "document");
  lua_pushinteger(L, (lua_Integer)line);
  lua_setfield(L, -2, "line");
  lua_pushinteger(L, (lua_Integer)column);
  lua_setfield(L, -2, "column");
  lua_pushlstring(L, b->pool + x->text, x->len);
  lua_setfield(L, -2, "value");
  return 3;
}

static const char *const loc_kinds[] = {"a scalar", "a sequence", "a mapping", "an alias"};

/* The path (table at 2) must be a non-empty list of strings and positive
 * integers; checked before anything is allocated. */
static lua_Integer loc_check_path(lua_State *L) {
  lua_Integer n;
  if (!lua_istable(L, 2))
    luaL_error(L, "yaml.locate: path must be a list of keys and indices, got %s",
               luaL_typename(L, 2));
  n = (lua_Integer)lua_rawlen(L, 2);
  if (n == 0) luaL_error(L, "yaml.locate: path must be a non-empty list of keys and indices");
  for (lua_Integer i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, 2, i);
    if (!(t == LUA_TSTRING || (lua_isinteger(L, -1) && lua_tointeger(L, -1) > 0)))
      luaL_error(L, "yaml.locate: path element %d must be a string or a positive integer", (int)i);
    lua_pop(L, 1);
  }
  return n;
}

/* yaml.locate(s, path [, {document = n}]) -> start, stop, info, or raises:
 * where the scalar at path is written in s (bytes start .. stop - 1). */
static int l_yaml_locate(lua_State *L) {
  static const char *const locate_options[] = {"document", NULL};
  decoder d;
  locator_box *b;
  lua_Integer n, want = 0, doc = 0, depth, best = -1, best_doc = 0;
  int ok, empty, best_type = LN_SCALAR;
  if (lua_type(L, 1) != LUA_TSTRING)
    return luaL_error(L, "yaml.locate: expected a string, got %s", luaL_typename(L, 1));
  n = loc_check_path(L);
  relish_checkopts(L, 3, "yaml.locate", locate_options);
  if (!lua_isnoneornil(L, 3)) {
    if (lua_getfield(L, 3, "document") != LUA_TNIL) {
      want = lua_tointeger(L, -1);
      if (!lua_isinteger(L, -1) || want <= 0)
        return luaL_error(L, "yaml.locate: document must be a positive integer");
    }
    lua_pop(L, 1);
  }
  lua_settop(L, 2);
  memset(&d, 0, sizeof d);
  d.L = L;
  d.input = lua_tolstring(L, 1, &d.input_len);
  b = lua_newuserdatauv(L, sizeof *b, 0);
  memset(b, 0, sizeof *b);
  luaL_setmetatable(L, LOCATOR_MT);
  if (!yaml_parser_initialize(&b->parser.parser))
    return luaL_error(L, "yaml.locate: out of memory");
  b->parser.parser_live = 1;
  yaml_parser_set_input_string(&b->parser.parser, (const unsigned char *)d.input, d.input_len);
  d.box = &b->parser;
  d.ev = &b->parser.event;
  ok = dec_next(&d);
  while (ok && (ok = dec_next(&d)) && d.ev->type != YAML_STREAM_END_EVENT) {
    size_t root, at;
    b->count = b->used = 0;
    if (!(ok = dec_next(&d))) break;
    empty = d.ev->type == YAML_SCALAR_EVENT && d.ev->data.scalar.length == 0 &&
            !d.ev->data.scalar.tag && !d.ev->data.scalar.anchor &&
            d.ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
    if (!(ok = loc_build(&d, b, 0)) || !(ok = dec_next(&d))) break;
    if (empty) continue;
    doc++;
    if (want && doc != want) continue;
    root = 1;
    at = loc_walk(L, b, root, n, &depth);
    if (depth == n && b->nodes[at].type == LN_SCALAR) {
      lua_settop(L, 3);
      loc_push_result(L, d.input, d.input_len, b, &b->nodes[at], doc);
      locator_box_free(b);
      return 3;
    }
    if (depth > best) {
      best = depth;
      best_doc = doc;
      best_type = b->nodes[at].type;
    }
    if (want) break;
  }
  locator_box_free(b);
  lua_settop(L, 2);
  if (!ok) return dec_raise(&d);
  if (best < 0) {
    if (want)
      return relish_raise(L, "not_found", "yaml.locate: there is no document %d", (int)want);
    return relish_raise(L, "not_found", "yaml.locate: the text has no document");
  }
  loc_push_path(L, 1, n);
  if (best == n) {
    relish_push_error(L, "invalid", "yaml.locate: %s is %s, not a scalar (document %d)",
                      lua_tostring(L, -1), loc_kinds[best_type], (int)best_doc);
  } else if (best_type == LN_ALIAS) {
    loc_push_path(L, 1, best);
    relish_push_error(L, "invalid", "yaml.locate: %s passes through an alias at %s (document %d)",
                      lua_tostring(L, -2), lua_tostring(L, -1), (int)best_doc);
  } else {
    loc_push_path(L, best + 1, best + 1);
    loc_push_path(L, 1, best);
    relish_push_error(L, "not_found", "yaml.locate: no %s: %s%s has no %s (document %d)",
                      lua_tostring(L, -3), best ? "" : "the document", lua_tostring(L, -1),
                      lua_tostring(L, -2), (int)best_doc);
  }
  lua_pushvalue(L, 3);
  lua_setfield(L, -2, "path");
  return lua_error(L);
}

/* ---- module ------------------------------------------------------------ */

/* json.null, so that YAML null and JSON null are one value. */
static void push_null(lua_State *L) {
  int top = lua_gettop(L);
  lua_getglobal(L, "require");
  lua_pushliteral(L, "relish.json");
  if (lua_pcall(L, 1, 1, 0) == LUA_OK && lua_type(L, -1) == LUA_TTABLE &&
      lua_getfield(L, -1, "null") == LUA_TLIGHTUSERDATA) {
    lua_remove(L, -2);
    return;
  }
  lua_settop(L, top);
  lua_pushlightuserdata(L, (void *)&yaml_null_fallback);
}

int luaopen_relish_yaml(lua_State *L) {
  static const luaL_Reg funcs[] = {
      {"decode", l_yaml_decode}, {"decode_all", l_yaml_decode_all},
      {"encode", l_yaml_encode}, {"encode_all", l_yaml_encode_all},
      {"locate", l_yaml_locate}, {NULL, NULL},
  };
  if (luaL_newmetatable(L, PARSER_MT)) {
    lua_pushcfunction(L, parser_box_gc);
    lua_setfield(L, -2, "__gc");
  }
  if (luaL_newmetatable(L, EMITTER_MT)) {
    lua_pushcfunction(L, emitter_box_gc);
    lua_setfield(L, -2, "__gc");
  }
  if (luaL_newmetatable(L, LOCATOR_MT)) {
    lua_pushcfunction(L, locator_box_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 3);
  lua_newtable(L);
  push_null(L);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, "null");
  luaL_newmetatable(L, "relish.json.array");
  luaL_newmetatable(L, "relish.json.object");
  luaL_setfuncs(L, funcs, 3);
  return 1;
}
