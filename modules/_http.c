/* _http.c: relish._http, one HTTP transfer on libcurl, driven by the host's
 * event loop (so a task yields while it waits). Policy (retries, expect,
 * JSON, clients, effects) is in stdlib/relish/http.lua; this file only moves
 * bytes: credentials from secrets, TLS material from files or PEM text, a
 * capped body, and line-by-line delivery of a streamed body. libcurl's
 * callbacks only fill C buffers; errors become values after the transfer. */
#define _GNU_SOURCE
#include "relish.h"

#include <curl/curl.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define XFER_MT "relish.http.Transfer"
#define HEADERS_MT "relish.http.Headers"
#define DEFAULT_MAX_BODY ((size_t)64 << 20)
#define DEFAULT_MAX_REDIRECTS 10
#define MAX_HEADER_BYTES ((size_t)1 << 20)
/* A stream pauses the transfer when this many bytes of whole lines wait for
 * the Lua side, so a slow consumer holds the server back, not our memory. */
#define STREAM_PAUSE_AT ((size_t)1 << 20)

typedef struct {
  char *data;
  size_t len, cap;
} xbuf;

typedef struct {
  relish_waiter w; /* first: the loop's view */
  CURL *easy;
  struct curl_slist *headers;
  struct curl_slist *connect_to; /* tls_server_name: "name:port:host:port" */
  char *display;                 /* the URL as messages show it: secrets and user-info as *** */
  char method[16];
  xbuf body, head, lines;
  size_t max_body, delivered;
  int stream, streaming, decided, paused;
  int sent; /* a request went out on a connection, new or reused */
  int too_large, oom;
  char errbuf[CURL_ERROR_SIZE];
} xfer;

/* ---- buffers ------------------------------------------------------------- */

static int xbuf_add(xbuf *b, const char *p, size_t n) {
  if (n > SIZE_MAX / 2 - b->len) return -1;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 1024;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d) return -1;
    b->data = d;
    b->cap = cap;
  }
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

static void xbuf_free(xbuf *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* ---- libcurl callbacks: C only, never Lua --------------------------------- */

static size_t on_header(char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) x->head.len = 0; /* a new response: keep the last */
  if (x->head.len + len > MAX_HEADER_BYTES || xbuf_add(&x->head, p, len) < 0) return 0;
  return len;
}

static int has_whole_line(const xbuf *b) { return b->len && memchr(b->data, '\n', b->len); }

static size_t on_body(char *p, size_t size, size_t n, void *ud) {
  xfer *x = ud;
  size_t len = size * n;
  if (x->stream && !x->decided) {
    long code = 0;
    curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
    x->streaming = code >= 200 && code < 300; /* an error status keeps its body whole */
    x->decided = 1;
  }
  xbuf *b = x->streaming ? &x->lines : &x->body;
  if (x->streaming && b->len >= STREAM_PAUSE_AT && has_whole_line(b)) {
    x->paused = 1;
    return CURL_WRITEFUNC_PAUSE; /* curl keeps this chunk and gives it again */
  }
  if ((x->streaming ? b->len : x->delivered) + len > x->max_body) {
    x->too_large = 1;
    return 0;
  }
  if (xbuf_add(b, p, len) < 0) {
    x->oom = 1;
    return 0;
  }
  x->delivered += len;
  if (x->streaming && memchr(p, '\n', len)) relish_waiter_wake(&x->w);
  return len;
}

/* Called once a connection is ready for the request, whether libcurl just
 * made it or took it from the pool; a timeout after this is a timeout of the
 * exchange (the server may have the request), not of the connection.
 * CURLINFO_CONNECT_TIME_T cannot tell: it is 0 on a reused connection. */
static int on_prereq(void *ud, char *conn_ip, char *local_ip, int conn_port, int local_port) {
  (void)conn_ip, (void)local_ip, (void)conn_port, (void)local_port;
  ((xfer *)ud)->sent = 1;
  return CURL_PREREQFUNC_OK;
}

/* ---- the box ---------------------------------------------------------------- */

static void xfer_free(lua_State *L, xfer *x) {
  relish_loop_remove(L, &x->w);
  if (x->easy) curl_easy_cleanup(x->easy);
  x->easy = NULL;
  curl_slist_free_all(x->headers);
  x->headers = NULL;
  curl_slist_free_all(x->connect_to);
  x->connect_to = NULL;
  free(x->display);
  x->display = NULL;
  xbuf_free(&x->body);
  xbuf_free(&x->head);
  xbuf_free(&x->lines);
}

static int xfer_gc(lua_State *L) {
  xfer_free(L, luaL_checkudata(L, 1, XFER_MT));
  return 0;
}

static xfer *check_xfer(lua_State *L, int idx) { return luaL_checkudata(L, idx, XFER_MT); }

static int xfer_cancel(relish_waiter *w, double now) {
  (void)w, (void)now;
  return 1; /* the loop took the handle out of the multi: nothing is left running */
}

static const relish_waiter_ops xfer_ops = {NULL, NULL, xfer_cancel};

/* ---- text values: a string, a secret, or a list of both ------------------- */

/* Pushes the plain value of the text at idx (raises naming `what` for
 * anything else); with display set, pushes instead what people may see:
 * each secret as "***". */
static const char *push_text(lua_State *L, int idx, const char *what, int display, size_t *len) {
  idx = lua_absindex(L, idx);
  size_t n;
  const char *s;
  if (lua_type(L, idx) == LUA_TNUMBER) {
    lua_pushvalue(L, idx);
    return lua_tolstring(L, -1, len);
  }
  if (lua_type(L, idx) == LUA_TSTRING || relish_issecret(L, idx)) {
    if (display && relish_issecret(L, idx)) {
      lua_pushliteral(L, "***");
    } else {
      s = relish_tosecret(L, idx, &n);
      lua_pushlstring(L, s, n);
    }
    return lua_tolstring(L, -1, len);
  }
  if (lua_type(L, idx) != LUA_TTABLE)
    luaL_error(L, "http: %s must be a string, a secret or a list of them, got %s", what,
               luaL_typename(L, idx));
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  lua_Integer count = (lua_Integer)lua_rawlen(L, idx);
  for (lua_Integer i = 1; i <= count; i++) {
    lua_rawgeti(L, idx, i);
    int isstr = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER;
    int issec = relish_issecret(L, -1);
    if (!isstr && !issec)
      luaL_error(L, "http: %s[%d] must be a string or a secret, got %s", what, (int)i,
                 luaL_typename(L, -1));
    char num[64]; /* a number's string form is far shorter */
    if (display && issec) {
      s = "***";
      n = 3;
    } else if (lua_type(L, -1) == LUA_TNUMBER) {
      /* its string form lives only in this stack slot: copy it out before
       * the pop, as nothing else keeps it alive */
      s = lua_tolstring(L, -1, &n);
      n = n < sizeof num ? n : sizeof num;
      memcpy(num, s, n);
      s = num;
    } else {
      s = issec ? relish_tosecret(L, -1, &n) : lua_tolstring(L, -1, &n);
    }
    lua_pop(L, 1); /* the buffer owns the stack top; the list keeps a string or secret alive */
    luaL_addlstring(&b, s, n);
  }
  luaL_pushresult(&b);
  return lua_tolstring(L, -1, len);
}

/* The displayed form of a text, redacted: for messages, plans and errors. */
static const char *push_display(lua_State *L, int idx, const char *what) {
  size_t len;
  const char *s = push_text(L, idx, what, 1, &len);
  relish_redact(L, s, len, NULL);
  lua_remove(L, -2);
  return lua_tostring(L, -1);
}

static void check_no_nul(lua_State *L, const char *s, size_t len, const char *what) {
  if (strlen(s) != len) luaL_error(L, "http: %s contains a NUL byte", what);
}

static void check_header_text(lua_State *L, const char *s, size_t len, const char *what) {
  for (size_t i = 0; i < len; i++) {
    if (s[i] == '\r' || s[i] == '\n' || s[i] == '\0')
      luaL_error(L, "http: %s contains a line break or NUL byte", what);
  }
}

/* ---- options ------------------------------------------------------------------ */

static int opt_type(lua_State *L, int t, const char *k) { return lua_getfield(L, t, k); }

static double opt_seconds(lua_State *L, int t, const char *k) {
  int type = opt_type(L, t, k);
  double v = -1;
  if (type != LUA_TNIL) {
    if (type != LUA_TNUMBER) luaL_error(L, "http: %s must be a number of seconds", k);
    v = lua_tonumber(L, -1);
    if (!isfinite(v) || v <= 0) luaL_error(L, "http: %s must be a positive number of seconds", k);
  }
  lua_pop(L, 1);
  return v;
}

static lua_Integer opt_count(lua_State *L, int t, const char *k, lua_Integer dflt) {
  int type = opt_type(L, t, k);
  lua_Integer v = dflt;
  if (type != LUA_TNIL) {
    int isint;
    v = lua_tointegerx(L, -1, &isint);
    if (!isint || v < 0) luaL_error(L, "http: %s must be a non-negative integer", k);
  }
  lua_pop(L, 1);
  return v;
}

/* A secret or a credential in a header goes to the redactor: the value, and
 * the part after an auth scheme ("Bearer abc" also redacts "abc"). */
static void redact_credential(const char *v, size_t len) {
  relish_redact_add(v, len);
  const char *sp = memchr(v, ' ', len);
  if (sp) relish_redact_add(sp + 1, len - (size_t)(sp + 1 - v));
}

static int sensitive_header(const char *name) {
  return strcasecmp(name, "authorization") == 0 || strcasecmp(name, "proxy-authorization") == 0 ||
         strcasecmp(name, "cookie") == 0;
}

/* Adds a header line ("Name: value", or "Name:" to keep libcurl from
 * sending one of its own). */
static void add_header_line(lua_State *L, xfer *x, const char *line) {
  struct curl_slist *h = curl_slist_append(x->headers, line);
  if (!h) luaL_error(L, "not enough memory");
  x->headers = h;
}

static void add_header(lua_State *L, xfer *x, const char *name, const char *value) {
  lua_pushfstring(L, "%s: %s", name, value);
  add_header_line(L, x, lua_tostring(L, -1));
  lua_pop(L, 1);
}

/* True when the text at idx is a secret or a list holding one. */
static int text_has_secret(lua_State *L, int idx) {
  if (relish_issecret(L, idx)) return 1;
  if (!lua_istable(L, idx)) return 0;
  idx = lua_absindex(L, idx);
  int found = 0;
  for (lua_Integer i = 1, n = (lua_Integer)lua_rawlen(L, idx); i <= n && !found; i++) {
    lua_rawgeti(L, idx, i);
    found = relish_issecret(L, -1);
    lua_pop(L, 1);
  }
  return found;
}

static int valid_token(const char *s, size_t len) {
  if (len == 0) return 0;
  for (size_t i = 0; i < len; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c <= 32 || c >= 127 || strchr("()<>@,;:\\\"/[]?={}", c)) return 0;
  }
  return 1;
}

/* headers = {Name = text, ...} */
static void opt_headers(lua_State *L, int t, xfer *x, int *has_auth, int *has_ua) {
  int type = opt_type(L, t, "headers");
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (type != LUA_TTABLE) luaL_error(L, "http: headers must be a table of name = value");
  int h = lua_gettop(L);
  lua_pushnil(L);
  while (lua_next(L, h)) {
    if (lua_type(L, -2) != LUA_TSTRING)
      luaL_error(L, "http: header names must be strings, got %s", luaL_typename(L, -2));
    size_t nlen, vlen;
    const char *name = lua_tolstring(L, -2, &nlen);
    if (!valid_token(name, nlen)) luaL_error(L, "http: invalid header name '%s'", name);
    if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
      /* false removes a header libcurl would send ("Accept", "User-Agent") */
      lua_pushfstring(L, "%s:", name);
      add_header_line(L, x, lua_tostring(L, -1));
      lua_pop(L, 2);
      continue;
    }
    lua_pushfstring(L, "headers['%s']", name);
    const char *value = push_text(L, -2, lua_tostring(L, -1), 0, &vlen);
    check_header_text(L, value, vlen, lua_tostring(L, -2));
    if (sensitive_header(name) || text_has_secret(L, -3)) redact_credential(value, vlen);
    if (strcasecmp(name, "authorization") == 0) *has_auth = 1;
    if (strcasecmp(name, "user-agent") == 0) *has_ua = 1;
    add_header(L, x, name, value);
    lua_pop(L, 3);
  }
  lua_pop(L, 1);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static void push_base64(lua_State *L, const char *s, size_t len) {
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (size_t i = 0; i < len; i += 3) {
    unsigned v = (unsigned char)s[i] << 16;
    if (i + 1 < len) v |= (unsigned char)s[i + 1] << 8;
    if (i + 2 < len) v |= (unsigned char)s[i + 2];
    luaL_addchar(&b, B64[(v >> 18) & 63]);
    luaL_addchar(&b, B64[(v >> 12) & 63]);
    luaL_addchar(&b, i + 1 < len ? B64[(v >> 6) & 63] : '=');
    luaL_addchar(&b, i + 2 < len ? B64[v & 63] : '=');
  }
  luaL_pushresult(&b);
}

/* auth = {bearer = text} | {user = text, password = text} */
static void opt_auth(lua_State *L, int t, xfer *x) {
  int type = opt_type(L, t, "auth");
  if (type == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  if (type != LUA_TTABLE)
    luaL_error(L, "http: auth must be {bearer = token} or {user =, password =}");
  int a = lua_gettop(L);
  size_t len;
  const char *v;
  if (lua_getfield(L, a, "bearer") != LUA_TNIL) {
    v = push_text(L, -1, "auth.bearer", 0, &len);
    check_header_text(L, v, len, "auth.bearer");
    relish_redact_add(v, len);
    lua_pushfstring(L, "Bearer %s", v);
  } else {
    lua_pop(L, 1);
    if (lua_getfield(L, a, "user") == LUA_TNIL || lua_getfield(L, a, "password") == LUA_TNIL)
      luaL_error(L, "http: auth must be {bearer = token} or {user =, password =}");
    size_t ulen, plen;
    const char *u = push_text(L, a + 1, "auth.user", 0, &ulen);
    if (memchr(u, ':', ulen)) luaL_error(L, "http: auth.user must not contain ':'");
    const char *p = push_text(L, a + 2, "auth.password", 0, &plen);
    relish_redact_add(p, plen);
    lua_pushfstring(L, "%s:%s", u, p);
    v = lua_tolstring(L, -1, &len);
    push_base64(L, v, len);
    v = lua_tolstring(L, -1, &len);
    relish_redact_add(v, len);
    lua_pushfstring(L, "Basic %s", v);
  }
  add_header(L, x, "Authorization", lua_tostring(L, -1));
  lua_settop(L, a - 1);
}

/* ca/cert/key: a file name, or PEM text (starts with -----BEGIN) */
static void opt_pem(lua_State *L, int t, xfer *x, const char *k, CURLoption file, CURLoption blob) {
  if (opt_type(L, t, k) == LUA_TNIL) {
    lua_pop(L, 1);
    return;
  }
  size_t len;
  const char *v = push_text(L, -1, k, 0, &len);
  CURLcode rc;
  if (len >= 10 && memcmp(v, "-----BEGIN", 10) == 0) {
    struct curl_blob b = {(void *)v, len, CURL_BLOB_COPY};
    rc = curl_easy_setopt(x->easy, blob, &b);
  } else {
    check_no_nul(L, v, len, k);
    rc = curl_easy_setopt(x->easy, file, v);
  }
  if (rc != CURLE_OK) luaL_error(L, "http: %s: %s", k, curl_easy_strerror(rc));
  lua_pop(L, 2);
}

/* The URL's user-info is a credential: redacted everywhere from now on, with
 * the Basic credentials libcurl makes of it. */
static void redact_userinfo(lua_State *L, const char *url) {
  CURLU *u = curl_url();
  if (!u) return;
  if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK) {
    char *user = NULL, *pw = NULL;
    curl_url_get(u, CURLUPART_USER, &user, CURLU_URLDECODE);
    curl_url_get(u, CURLUPART_PASSWORD, &pw, CURLU_URLDECODE);
    if (pw)
      relish_redact_add(pw, strlen(pw));
    else if (user)
      relish_redact_add(user, strlen(user)); /* a token as the user name */
    if (user || pw) {
      lua_pushfstring(L, "%s:%s", user ? user : "", pw ? pw : "");
      size_t len;
      const char *cred = lua_tolstring(L, -1, &len);
      push_base64(L, cred, len);
      cred = lua_tolstring(L, -1, &len);
      relish_redact_add(cred, len);
      lua_pop(L, 2);
    }
    curl_free(user);
    curl_free(pw);
    char *raw = NULL; /* and their encoded forms, as they appear in the URL */
    if (curl_url_get(u, CURLUPART_PASSWORD, &raw, CURLU_URLENCODE) == CURLUE_OK && raw)
      relish_redact_add(raw, strlen(raw));
    curl_free(raw);
  }
  curl_url_cleanup(u);
}

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* Only a URL spelled with http:// or https:// goes out: for "host:port/path"
 * libcurl would guess a scheme and send the request, credentials included,
 * somewhere the user never named. */
static int http_scheme(const char *url) {
  return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

static void set_method(lua_State *L, xfer *x, const char *m, const char *body, size_t blen,
                       int has_body) {
  if (strcmp(m, "HEAD") == 0) {
    if (has_body) luaL_error(L, "http: a HEAD request has no body");
    curl_easy_setopt(x->easy, CURLOPT_NOBODY, 1L);
    return;
  }
  if (strcmp(m, "POST") == 0) {
    curl_easy_setopt(x->easy, CURLOPT_POST, 1L);
  } else if (strcmp(m, "GET") != 0 || has_body) {
    curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, m);
  }
  if (has_body || strcmp(m, "POST") == 0) {
    curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)blen);
    if (curl_easy_setopt(x->easy, CURLOPT_COPYPOSTFIELDS, body ? body : "") != CURLE_OK)
      luaL_error(L, "not enough memory");
  }
}

/* start{method=, url=, headers=, body=, auth=, timeout=, connect_timeout=,
 *       max_redirects=, max_body=, ca=, cert=, key=, insecure=, proxy=,
 *       no_proxy=, connect_to=, stream=, http_version=} -> transfer (already on its way),
 *       or nil, err (kind "url") for a URL that is not http:// or https:// */
static int l_http_start(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  xfer *x = lua_newuserdatauv(L, sizeof *x, 1); /* 2 */
  memset(x, 0, sizeof *x);
  luaL_setmetatable(L, XFER_MT);
  x->max_body = DEFAULT_MAX_BODY;
  if (relish_task_cancelled(L)) return relish_raise(L, "cancelled", "cancelled");

  if (opt_type(L, 1, "method") != LUA_TSTRING) luaL_error(L, "http: method must be a string");
  size_t mlen;
  const char *m = lua_tolstring(L, -1, &mlen);
  if (!valid_token(m, mlen) || mlen >= sizeof x->method)
    luaL_error(L, "http: invalid method '%s'", m);
  memcpy(x->method, m, mlen + 1);
  lua_pop(L, 1);

  if (opt_type(L, 1, "url") == LUA_TNIL) luaL_error(L, "http: url is required");
  size_t ulen;
  const char *url = push_text(L, -1, "url", 0, &ulen);
  check_no_nul(L, url, ulen, "url");
  lua_replace(L, -2); /* 3: the plain URL */
  lua_getfield(L, 1, "url");
  x->display = strdup(push_display(L, -1, "url"));
  lua_pop(L, 2);
  if (!x->display) luaL_error(L, "not enough memory");
  redact_userinfo(L, url);
  if (!http_scheme(url)) {
    relish_push_error(L, "url", "%s %s: the URL must start with http:// or https://", x->method,
                      x->display);
    set_str(L, "url", x->display);
    set_str(L, "method", x->method);
    lua_pushnil(L);
    lua_insert(L, -2);
    return 2;
  }

  relish_need_curl();
  x->easy = curl_easy_init();
  if (!x->easy) luaL_error(L, "http: cannot make a libcurl handle");
  CURL *e = x->easy;
  if (curl_easy_setopt(e, CURLOPT_URL, url) != CURLE_OK) luaL_error(L, "not enough memory");
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_ERRORBUFFER, x->errbuf);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
  curl_easy_setopt(e, CURLOPT_PREREQFUNCTION, on_prereq);
  curl_easy_setopt(e, CURLOPT_PREREQDATA, x);
  curl_easy_setopt(e, CURLOPT_ACCEPT_ENCODING, "");
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);

  int has_auth = 0, has_ua = 0;
  opt_headers(L, 1, x, &has_auth, &has_ua);
  if (opt_type(L, 1, "auth") != LUA_TNIL && has_auth)
    luaL_error(L, "http: give auth or an Authorization header, not both");
  lua_pop(L, 1);
  opt_auth(L, 1, x);
  if (!has_ua) add_header(L, x, "User-Agent", "relish/" RELISH_VERSION);
  add_header_line(L, x, "Expect:"); /* no 100-continue round trip */
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, x->headers);

  size_t blen = 0;
  const char *body = NULL;
  int has_body = opt_type(L, 1, "body") != LUA_TNIL;
  if (has_body) body = push_text(L, -1, "body", 0, &blen);
  set_method(L, x, x->method, body, blen, has_body);
  lua_settop(L, 3);

  double s;
  if ((s = opt_seconds(L, 1, "timeout")) > 0)
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)ceil(s * 1000));
  if ((s = opt_seconds(L, 1, "connect_timeout")) > 0)
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)ceil(s * 1000));
  lua_Integer redirects = opt_count(L, 1, "max_redirects", DEFAULT_MAX_REDIRECTS);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, redirects > 0 ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_MAXREDIRS, (long)redirects);
  lua_Integer maxb = opt_count(L, 1, "max_body", (lua_Integer)DEFAULT_MAX_BODY);
  x->max_body = (uint64_t)maxb > SIZE_MAX ? SIZE_MAX : (size_t)maxb;

  opt_pem(L, 1, x, "ca", CURLOPT_CAINFO, CURLOPT_CAINFO_BLOB);
  opt_pem(L, 1, x, "cert", CURLOPT_SSLCERT, CURLOPT_SSLCERT_BLOB);
  opt_pem(L, 1, x, "key", CURLOPT_SSLKEY, CURLOPT_SSLKEY_BLOB);
  opt_type(L, 1, "insecure");
  if (lua_toboolean(L, -1)) {
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  lua_pop(L, 1);
  if (opt_type(L, 1, "proxy") != LUA_TNIL) {
    size_t plen;
    const char *p = push_text(L, -1, "proxy", 0, &plen);
    check_no_nul(L, p, plen, "proxy");
    redact_userinfo(L, p);
    curl_easy_setopt(e, CURLOPT_PROXY, p);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  if (opt_type(L, 1, "connect_to") == LUA_TSTRING) {
    struct curl_slist *c = curl_slist_append(NULL, lua_tostring(L, -1));
    if (!c) luaL_error(L, "http: out of memory");
    x->connect_to = c;
    curl_easy_setopt(e, CURLOPT_CONNECT_TO, c);
  }
  lua_pop(L, 1);
  if (opt_type(L, 1, "no_proxy") == LUA_TSTRING)
    curl_easy_setopt(e, CURLOPT_NOPROXY, lua_tostring(L, -1));
  lua_pop(L, 1);
  opt_type(L, 1, "stream");
  x->stream = lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (opt_type(L, 1, "http_version") == LUA_TSTRING) {
    const char *v = lua_tostring(L, -1);
    if (strcmp(v, "1.1") == 0)
      curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    else if (strcmp(v, "2") == 0)
      curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    else
      luaL_error(L, "http: http_version must be \"1.1\" or \"2\"");
  }
  lua_pop(L, 1);

  x->w.ops = &xfer_ops;
  if (relish_loop_add_transfer(L, &x->w, e, 2) < 0)
    luaL_error(L, "http: the event loop refused the transfer");
  lua_settop(L, 2);
  return 1;
}

/* ---- waiting and results ----------------------------------------------------- */

/* Pushes the whole lines waiting in a stream (and, at the end, the last
 * unterminated one) as a list; "\r\n" endings lose their "\r". */
static void push_lines(lua_State *L, xfer *x, int final) {
  lua_newtable(L);
  xbuf *b = &x->lines;
  size_t start = 0;
  lua_Integer n = 0;
  for (size_t i = 0; i < b->len; i++) {
    if (b->data[i] != '\n') continue;
    size_t end = i > start && b->data[i - 1] == '\r' ? i - 1 : i;
    lua_pushlstring(L, b->data + start, end - start);
    lua_rawseti(L, -2, ++n);
    start = i + 1;
  }
  if (final && start < b->len) {
    lua_pushlstring(L, b->data + start, b->len - start);
    lua_rawseti(L, -2, ++n);
    start = b->len;
  }
  memmove(b->data, b->data + start, b->len - start);
  b->len -= start;
}

static int wait_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status, (void)ctx;
  xfer *x = check_xfer(L, 1);
  if (x->w.outcome != RELISH_WAIT_READY) {
    xfer_free(L, x);
    return relish_loop_raise(L, &x->w);
  }
  int done = x->w.finished;
  if (!done) x->w.ready = 0;
  if (x->streaming)
    push_lines(L, x, done);
  else
    lua_pushnil(L);
  lua_pushboolean(L, done);
  if (x->paused && !done && x->lines.len < STREAM_PAUSE_AT) {
    x->paused = 0;
    curl_easy_pause(x->easy, CURLPAUSE_CONT); /* may deliver at once: C only */
  }
  return 2;
}

/* t:wait() -> lines | nil, done: the next news of the transfer. A streamed
 * 2xx body comes as lists of lines; done is true once it is over. */
static int l_xfer_wait(lua_State *L) {
  xfer *x = check_xfer(L, 1);
  lua_settop(L, 1);
  if (!x->easy) return luaL_error(L, "http: the transfer is closed");
  if (x->w.finished || (x->streaming && has_whole_line(&x->lines))) return wait_k(L, LUA_OK, 0);
  if (x->paused) {
    x->paused = 0;
    curl_easy_pause(x->easy, CURLPAUSE_CONT);
  }
  x->w.ready = 0;
  return relish_loop_wait(L, &x->w, 0, wait_k);
}

static const char *error_kind(CURLcode c, int sent) {
  switch (c) {
  case CURLE_OPERATION_TIMEDOUT:
    return sent ? "timeout" : "connect";
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
    return "connect";
  case CURLE_SSL_CONNECT_ERROR:
  case CURLE_PEER_FAILED_VERIFICATION:
  case CURLE_SSL_CERTPROBLEM:
  case CURLE_SSL_CIPHER:
  case CURLE_SSL_CACERT_BADFILE:
  case CURLE_SSL_ISSUER_ERROR:
  case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
  case CURLE_SSL_CRL_BADFILE:
  case CURLE_SSL_ENGINE_NOTFOUND:
  case CURLE_SSL_ENGINE_SETFAILED:
  case CURLE_SSL_INVALIDCERTSTATUS:
  case CURLE_USE_SSL_FAILED:
    return "tls";
  case CURLE_RECV_ERROR:
  case CURLE_SEND_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    return "connection";
  case CURLE_TOO_MANY_REDIRECTS:
    return "redirect";
  case CURLE_URL_MALFORMAT:
  case CURLE_UNSUPPORTED_PROTOCOL:
    return "url";
  default:
    return "http";
  }
}

static int push_failure(lua_State *L, xfer *x) {
  CURLcode c = (CURLcode)x->w.curl_code;
  const char *kind, *why = x->errbuf[0] ? x->errbuf : curl_easy_strerror(c);
  if (x->too_large) {
    kind = "too_large";
    lua_pushfstring(L, "%s %s: the response body is larger than max_body (%I bytes)", x->method,
                    x->display, (lua_Integer)x->max_body);
  } else {
    kind = x->oom ? "http" : error_kind(c, x->sent);
    lua_pushfstring(L, "%s %s: %s", x->method, x->display, x->oom ? "not enough memory" : why);
  }
  size_t len;
  const char *msg = lua_tolstring(L, -1, &len);
  relish_redact(L, msg, len, NULL);
  relish_push_error(L, kind, "%s", lua_tostring(L, -1));
  set_str(L, "url", x->display);
  set_str(L, "method", x->method);
  lua_pushinteger(L, (lua_Integer)c);
  lua_setfield(L, -2, "curl_code");
  lua_pushnil(L);
  lua_insert(L, -2);
  return 2;
}

static int headers_index(lua_State *L) {
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  size_t len;
  const char *k = lua_tolstring(L, 2, &len);
  luaL_Buffer b;
  char *p = luaL_buffinitsize(L, &b, len);
  for (size_t i = 0; i < len; i++)
    p[i] = (char)(k[i] >= 'A' && k[i] <= 'Z' ? k[i] + 32 : k[i]);
  luaL_pushresultsize(&b, len);
  lua_rawget(L, 1);
  return 1;
}

/* The last response's header block as a table keyed by lower-case name
 * (looked up in any case); repeated headers are joined with ", ". */
static void push_headers(lua_State *L, const xbuf *h) {
  lua_newtable(L);
  int t = lua_gettop(L);
  const char *p = h->data ? h->data : "", *end = p + h->len;
  while (p < end) {
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    const char *colon = memchr(p, ':', (size_t)(eol - p));
    if (colon && !(eol - p >= 5 && memcmp(p, "HTTP/", 5) == 0)) {
      luaL_Buffer b;
      luaL_buffinit(L, &b);
      for (const char *c = p; c < colon; c++)
        luaL_addchar(&b, (char)(*c >= 'A' && *c <= 'Z' ? *c + 32 : *c));
      luaL_pushresult(&b);
      const char *v = colon + 1, *ve = eol;
      while (v < ve && (*v == ' ' || *v == '\t'))
        v++;
      while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
        ve--;
      lua_pushvalue(L, -1);
      if (lua_rawget(L, t) == LUA_TSTRING) {
        lua_pushliteral(L, ", ");
        lua_pushlstring(L, v, (size_t)(ve - v));
        lua_concat(L, 3);
      } else {
        lua_pop(L, 1);
        lua_pushlstring(L, v, (size_t)(ve - v));
      }
      lua_rawset(L, t);
    }
    p = eol + 1;
  }
  luaL_setmetatable(L, HEADERS_MT);
}

/* t:result() -> response | nil, err, once the transfer is done (or, for a
 * stream, once its lines have started) */
static int l_xfer_result(lua_State *L) {
  xfer *x = check_xfer(L, 1);
  if (!x->easy) return luaL_error(L, "http: the transfer is closed");
  /* a stream its reader stopped early is not done, but its head is here */
  if (!x->w.finished && !x->streaming) return luaL_error(L, "http: the transfer is not done yet");
  if (x->w.finished && x->w.curl_code != CURLE_OK) return push_failure(L, x);
  long code = 0, version = 0;
  curl_off_t total_us = 0, retry_after = -1;
  char *final = NULL;
  curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
  curl_easy_getinfo(x->easy, CURLINFO_HTTP_VERSION, &version);
  curl_easy_getinfo(x->easy, CURLINFO_TOTAL_TIME_T, &total_us);
  curl_easy_getinfo(x->easy, CURLINFO_RETRY_AFTER, &retry_after);
  curl_easy_getinfo(x->easy, CURLINFO_EFFECTIVE_URL, &final);
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, code);
  lua_setfield(L, -2, "status");
  push_headers(L, &x->head);
  if (lua_getfield(L, -1, "retry-after") != LUA_TNIL && retry_after >= 0) {
    lua_pushinteger(L, (lua_Integer)retry_after);
    lua_setfield(L, -4, "retry_after");
  }
  lua_pop(L, 1);
  lua_setfield(L, -2, "headers");
  lua_pushlstring(L, x->body.data ? x->body.data : "", x->body.len);
  lua_setfield(L, -2, "body");
  lua_pushnumber(L, (double)total_us / 1e6);
  lua_setfield(L, -2, "elapsed");
  set_str(L, "version",
          version == CURL_HTTP_VERSION_2_0   ? "2"
          : version == CURL_HTTP_VERSION_3   ? "3"
          : version == CURL_HTTP_VERSION_1_0 ? "1.0"
                                             : "1.1");
  if (final) {
    relish_redact(L, final, strlen(final), NULL);
    lua_setfield(L, -2, "url");
  }
  return 1;
}

/* t:close(): ends the transfer now (its connection is not reused) */
static int l_xfer_close(lua_State *L) {
  xfer_free(L, check_xfer(L, 1));
  return 0;
}

/* display(text) -> the text as people may see it: secrets as ***, URL
 * user-info and known secret values redacted */
static int l_http_display(lua_State *L) {
  luaL_checkany(L, 1);
  push_display(L, 1, luaL_optstring(L, 2, "value"));
  return 1;
}

int luaopen_relish__http(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"wait", l_xfer_wait}, {"result", l_xfer_result}, {"close", l_xfer_close}, {NULL, NULL}};
  static const luaL_Reg fns[] = {
      {"start", l_http_start}, {"display", l_http_display}, {NULL, NULL}};
  relish_resource_metatable(L, XFER_MT, xfer_gc, methods);
  lua_pop(L, 1);
  if (luaL_newmetatable(L, HEADERS_MT)) {
    lua_pushcfunction(L, headers_index);
    lua_setfield(L, -2, "__index");
  }
  lua_pop(L, 1);
  luaL_newlib(L, fns);
  return 1;
}
