/* remote.c: the network side of relish.git: credentials, the callbacks
 * libgit2 calls during a transfer, and fetch, clone and push. No callback
 * ever raises a Lua error or calls Lua: each one stashes what it saw
 * (interruption, a timeout, a refused credential, a rejected ref, a failed
 * lease) in the rg_net payload and tells libgit2 to stop; the Lua-facing
 * function turns that into an error after libgit2 has returned. */
#define _GNU_SOURCE
#include "gitint.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  char *ref;
  char *msg;
} rg_reject;

typedef struct {
  char *ref;
  git_oid old, new;
} rg_tip;

struct rg_net {
  const rg_auth *auth;
  char *ca; /* a CA file to trust instead of the system's, or NULL */
  int cred_calls, auth_offered, auth_missing;
  int interrupted, timed_out, oom;
  rg_update *updates; /* the push in progress, for the lease check */
  size_t nupdates;
  int lease_failed, moved;
  char lease_ref[1024];
  rg_reject *rejects;
  size_t nrejects, caprejects;
  rg_tip *tips;
  size_t ntips, captips;
};

/* ---- credentials ---- */

static void wipe_free(char *s) {
  if (s == NULL) return;
  volatile char *p = s;
  while (*p)
    *p++ = '\0';
  free(s);
}

static void auth_free(void *p) {
  rg_auth *a = p;
  free(a->user);
  wipe_free(a->secret);
  free(a->key);
  free(a->source_env);
  free(a->source_file);
  free(a);
}

/* Where a secret came from, so an undo in another process can read it again:
 * the environment variable or file named by the secret, when it still holds
 * exactly this value. */
static void secret_source(lua_State *L, int idx, rg_auth *a, const char *value, size_t len) {
  if (!relish_issecret(L, idx)) return;
  lua_getiuservalue(L, idx, 1);
  const char *name = lua_tostring(L, -1);
  if (name != NULL && name[0] != '\0') {
    const char *env = getenv(name);
    if (env != NULL && strlen(env) == len && memcmp(env, value, len) == 0) {
      a->source_env = strdup(name);
    } else if (strchr(name, '/') != NULL) {
      FILE *f = fopen(name, "rb");
      if (f != NULL) {
        char buf[8192];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        if (n > 0 && buf[n - 1] == '\n') n--;
        if (n > 0 && buf[n - 1] == '\r') n--;
        if (n == len && memcmp(buf, value, len) == 0) a->source_file = strdup(name);
        memset(buf, 0, sizeof buf);
      }
    }
  }
  lua_pop(L, 1);
}

static char *secret_copy(lua_State *L, int idx, const char *fname, const char *field, rg_auth *a) {
  if (!relish_issecret(L, idx))
    luaL_error(L, "%s: %s must be a secret (secret(\"NAME\")), not a %s: it would leak", fname,
               field, luaL_typename(L, idx));
  size_t len;
  const char *v = relish_tosecret(L, idx, &len);
  char *s = malloc(len + 1);
  if (s == NULL) luaL_error(L, "not enough memory");
  memcpy(s, v, len);
  s[len] = '\0';
  secret_source(L, idx, a, v, len);
  return s;
}

rg_auth *rg_auth_check(lua_State *L, relish_box *b, int idx, const char *fname) {
  int t = lua_type(L, idx);
  if (t == LUA_TNIL || t == LUA_TNONE) return NULL;
  rg_auth *a = relish_box_add(b, calloc(1, sizeof *a), auth_free);
  if (a == NULL) luaL_error(L, "not enough memory");
  if (t == LUA_TSTRING) {
    if (strcmp(lua_tostring(L, idx), "agent") != 0)
      luaL_error(L, "%s: auth must be a secret token, \"agent\" or {ssh_key=, passphrase=}", fname);
    a->type = RG_AUTH_AGENT;
  } else if (t == LUA_TUSERDATA) {
    a->type = RG_AUTH_TOKEN;
    a->secret = secret_copy(L, idx, fname, "auth", a);
  } else if (t == LUA_TTABLE) {
    static const char *const keys[] = {"token", "username", "ssh_key", "passphrase", NULL};
    relish_checkopts(L, idx, fname, keys);
    const char *user = NULL, *key = NULL;
    lua_getfield(L, idx, "username");
    if (!lua_isnil(L, -1) && (user = lua_tostring(L, -1)) == NULL)
      luaL_error(L, "%s: auth.username must be a string", fname);
    lua_getfield(L, idx, "ssh_key");
    if (!lua_isnil(L, -1) && (key = lua_tostring(L, -1)) == NULL)
      luaL_error(L, "%s: auth.ssh_key must be a path", fname);
    if (user != NULL && (a->user = strdup(user)) == NULL) luaL_error(L, "not enough memory");
    lua_pop(L, 2);
    if (lua_getfield(L, idx, "token") != LUA_TNIL) {
      a->type = RG_AUTH_TOKEN;
      a->secret = secret_copy(L, lua_gettop(L), fname, "auth.token", a);
    } else if (key != NULL) {
      a->type = RG_AUTH_KEY;
      if ((a->key = strdup(key)) == NULL) luaL_error(L, "not enough memory");
      if (lua_getfield(L, idx, "passphrase") != LUA_TNIL)
        a->secret = secret_copy(L, lua_gettop(L), fname, "auth.passphrase", a);
      lua_pop(L, 1);
    } else {
      luaL_error(L, "%s: auth needs token= or ssh_key=", fname);
    }
    lua_pop(L, 1);
  } else {
    luaL_error(L, "%s: auth must be a secret token, \"agent\" or {ssh_key=, passphrase=}", fname);
  }
  return a;
}

void rg_auth_push(lua_State *L, const rg_auth *a) {
  static const char *const types[] = {"none", "token", "agent", "ssh_key"};
  lua_createtable(L, 0, 4);
  rg_rec_set(L, "type", types[a ? a->type : 0]);
  if (a == NULL) return;
  if (a->user != NULL) rg_rec_set(L, "username", a->user);
  if (a->key != NULL) rg_rec_set(L, "ssh_key", a->key);
  if (a->source_env != NULL) rg_rec_set(L, "secret_env", a->source_env);
  if (a->source_file != NULL) rg_rec_set(L, "secret_file", a->source_file);
}

/* Reads a secret back through relish.secret, so it is redacted like any other. */
static char *secret_again(lua_State *L, const char *fn, const char *arg) {
  lua_getglobal(L, "require");
  lua_pushliteral(L, "relish.secret");
  lua_call(L, 1, 1);
  lua_getfield(L, -1, fn);
  lua_pushstring(L, arg);
  lua_call(L, 1, 1);
  char *out = NULL;
  size_t len;
  const char *v = relish_tosecret(L, -1, &len);
  if (v != NULL && (out = malloc(len + 1)) != NULL) {
    memcpy(out, v, len);
    out[len] = '\0';
  }
  lua_pop(L, 2);
  return out;
}

int rg_auth_from_lua(lua_State *L, relish_box *b, int idx, rg_auth **out, relish_status *st) {
  *out = NULL;
  if (lua_getfield(L, idx, "auth") != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  int t = lua_gettop(L);
  const char *type = rg_optfield(L, t, "git.undo", "type");
  if (type == NULL || strcmp(type, "none") == 0) {
    lua_pop(L, 1);
    return 0;
  }
  rg_auth *a = relish_box_add(b, calloc(1, sizeof *a), auth_free);
  if (a == NULL) return luaL_error(L, "not enough memory");
  const char *user = rg_optfield(L, t, "git.undo", "username");
  const char *key = rg_optfield(L, t, "git.undo", "ssh_key");
  const char *env = rg_optfield(L, t, "git.undo", "secret_env");
  const char *file = rg_optfield(L, t, "git.undo", "secret_file");
  if (user != NULL) a->user = strdup(user);
  if (key != NULL) a->key = strdup(key);
  a->type = strcmp(type, "token") == 0     ? RG_AUTH_TOKEN
            : strcmp(type, "agent") == 0   ? RG_AUTH_AGENT
            : strcmp(type, "ssh_key") == 0 ? RG_AUTH_KEY
                                           : RG_AUTH_NONE;
  if (env != NULL) {
    if (getenv(env) == NULL) {
      lua_pop(L, 1);
      return relish_status_set(st, "auth", "the credentials came from $%s, which is not set now",
                               env);
    }
    a->secret = secret_again(L, "env", env);
  } else if (file != NULL) {
    a->secret = secret_again(L, "file", file);
    if (a->secret == NULL) {
      lua_pop(L, 1);
      return relish_status_set(st, "auth", "the credentials came from %s, which cannot be read now",
                               file);
    }
  } else if (a->type == RG_AUTH_TOKEN) {
    lua_pop(L, 1);
    return relish_status_set(
        st, "auth", "the credentials were a secret value that cannot be read again: undo by hand");
  }
  lua_pop(L, 1);
  *out = a;
  return 0;
}

/* ---- remotes and URLs ---- */

void rg_url_clean(const char *url, char *out, size_t size) {
  const char *scheme = strstr(url, "://");
  const char *at = scheme != NULL ? strchr(scheme + 3, '@') : NULL;
  const char *slash = scheme != NULL ? strchr(scheme + 3, '/') : NULL;
  if (at != NULL && (slash == NULL || at < slash)) {
    const char *colon = memchr(scheme + 3, ':', (size_t)(at - scheme - 3));
    if (colon != NULL) {
      snprintf(out, size, "%.*s%s", (int)(colon - url), url, at);
      return;
    }
  }
  snprintf(out, size, "%s", url);
}

static int looks_like_url(const char *s) {
  return strstr(s, "://") != NULL || s[0] == '/' || s[0] == '.' || strchr(s, ':') != NULL;
}

/* A URL that is a local path as git reads one: no scheme, and no colon
 * before the first slash (that would be scp-like, host:path). */
static int local_path(const char *url) {
  const char *colon = strchr(url, ':'), *slash = strchr(url, '/');
  return strstr(url, "://") == NULL && (colon == NULL || (slash != NULL && slash < colon));
}

/* url as git reads it in repo: a relative path is relative to the work
 * tree's root (a bare repository's git dir), where git runs, not to this
 * process's directory; made absolute. malloc'd; NULL when url is not a
 * relative path (or out of memory). */
static char *url_resolve(git_repository *repo, const char *url) {
  if (url == NULL || url[0] == '\0' || url[0] == '/' || !local_path(url)) return NULL;
  char base[4096];
  rg_label(repo, base, sizeof base);
  size_t n = strlen(base) + strlen(url) + 2;
  char *joined = malloc(n);
  if (joined == NULL) return NULL;
  snprintf(joined, n, "%s/%s", base, url);
  for (size_t len = strlen(joined); len > 1 && joined[len - 1] == '/'; len--)
    joined[len - 1] = '\0';
  /* shown as realpath shows it; a path that is not there, from its directory */
  char *real = realpath(joined, NULL), *slash = strrchr(joined, '/');
  if (real == NULL && slash != NULL && slash != joined) {
    *slash = '\0';
    char *dir = realpath(joined, NULL);
    *slash = '/';
    size_t m = dir != NULL ? strlen(dir) + strlen(slash) + 1 : 0;
    if (dir != NULL && (real = malloc(m)) != NULL) snprintf(real, m, "%s%s", dir, slash);
    free(dir);
  }
  if (real == NULL) return joined;
  free(joined);
  return real;
}

/* url.<base>.insteadOf (or pushInsteadOf) as git applies it: the longest
 * matching prefix wins. Read with git_config_foreach: libgit2 1.5's own way,
 * a regex over every config entry, leaks on each entry it does not match. */
typedef struct {
  const char *url, *key; /* ".insteadof" or ".pushinsteadof" */
  char *best;
  size_t bestlen;
  int oom;
} insteadof;

static int cb_insteadof(const git_config_entry *e, void *payload) {
  insteadof *x = payload;
  size_t n = strlen(e->name), kl = strlen(x->key), vl = strlen(e->value);
  if (n <= 4 + kl || strncmp(e->name, "url.", 4) != 0 || strcasecmp(e->name + n - kl, x->key) != 0)
    return 0;
  if (vl == 0 || vl <= x->bestlen || strncmp(x->url, e->value, vl) != 0) return 0;
  size_t bl = n - 4 - kl;
  char *r = malloc(bl + strlen(x->url) - vl + 1);
  if (r == NULL) {
    x->oom = 1;
    return 0;
  }
  memcpy(r, e->name + 4, bl);
  strcpy(r + bl, x->url + vl);
  free(x->best);
  x->best = r;
  x->bestlen = vl;
  return 0;
}

/* The rewritten URL (malloc'd), or NULL when no rule matches. */
static char *rewrite(git_config *cfg, const char *url, const char *key) {
  insteadof x = {.url = url, .key = key};
  git_config_foreach(cfg, cb_insteadof, &x);
  git_error_clear();
  return x.best;
}

/* 0 and the value, or -1 (out left empty: NULL ptr) */
static int config_string(git_config *cfg, const char *fmt, const char *name, git_buf *out) {
  char key[1200];
  snprintf(key, sizeof key, fmt, name);
  int rc = git_config_get_string_buf(out, cfg, key);
  git_error_clear();
  if (rc == 0 && out->ptr != NULL && out->ptr[0] != '\0') return 0;
  git_buf_dispose(out);
  memset(out, 0, sizeof *out);
  return -1;
}

static int first_value(const git_config_entry *e, void *payload) {
  git_buf *b = payload;
  if (b->ptr == NULL) b->ptr = strdup(e->value);
  return 0;
}

int rg_remote_config_url(git_repository *repo, const char *name, char *out, size_t size) {
  git_config *cfg = NULL;
  git_buf url = {0};
  int rc = git_repository_config_snapshot(&cfg, repo);
  if (rc == 0) rc = config_string(cfg, "remote.%s.url", name, &url);
  if (rc == 0) {
    char *abs = url_resolve(repo, url.ptr);
    rg_url_clean(abs != NULL ? abs : url.ptr, out, size);
    free(abs);
  }
  git_buf_dispose(&url);
  git_config_free(cfg);
  git_error_clear();
  return rc;
}

int rg_remote_open(git_repository *repo, const char *name, git_remote **out, relish_status *st) {
  git_config *cfg = NULL;
  git_buf url = {0}, pushurl = {0};
  char *fetch = NULL, *u = NULL, *pu = NULL, *ua = NULL, *pa = NULL;
  int rc = git_repository_config_snapshot(&cfg, repo);
  if (rc < 0) return rg_set_git(st, rc, name);
  if (looks_like_url(name)) {
    rc = git_buf_set(&url, name, strlen(name));
  } else if (config_string(cfg, "remote.%s.url", name, &url) != 0) {
    rc = relish_status_set(st, "not_found", "no remote named '%s'", name);
  } else {
    char key[1200];
    git_buf first = {0};
    config_string(cfg, "remote.%s.pushurl", name, &pushurl);
    snprintf(key, sizeof key, "remote.%s.fetch", name);
    git_config_get_multivar_foreach(cfg, key, NULL, first_value, &first);
    git_error_clear();
    fetch = first.ptr;
  }
  if (rc == 0) {
    u = rewrite(cfg, url.ptr, ".insteadof");
    if (pushurl.ptr != NULL)
      pu = rewrite(cfg, pushurl.ptr, ".insteadof");
    else
      pu = rewrite(cfg, url.ptr, ".pushinsteadof");
    git_remote_create_options o;
    git_remote_create_options_init(&o, GIT_REMOTE_CREATE_OPTIONS_VERSION);
    o.repository = repo;
    o.fetchspec = fetch;
    o.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    const char *fu = u != NULL ? u : url.ptr, *push = pu != NULL ? pu : pushurl.ptr;
    /* a relative path is the repository's, as git reads it */
    if ((ua = url_resolve(repo, fu)) != NULL) fu = ua;
    if ((pa = url_resolve(repo, push)) != NULL) push = pa;
    rc = git_remote_create_with_opts(out, fu, &o);
    if (rc == 0 && push != NULL) rc = git_remote_set_instance_pushurl(*out, push);
    if (rc < 0) {
      rg_set_git(st, rc, name);
      git_remote_free(*out);
      *out = NULL;
    }
  }
  free(fetch);
  free(u);
  free(pu);
  free(ua);
  free(pa);
  git_buf_dispose(&url);
  git_buf_dispose(&pushurl);
  git_config_free(cfg);
  return rc < 0 ? -1 : 0;
}

/* ---- callbacks: they stash, never raise ---- */

static int check_stop(rg_net *n) {
  relish_progress_tick();
  if (relish_interrupted()) n->interrupted = 1;
  double d = relish_deadline();
  if (d > 0 && relish_now() >= d) n->timed_out = 1;
  return n->interrupted || n->timed_out ? GIT_EUSER : 0;
}

/* The credentials were offered once and refused: say which (libgit2 has no
 * message of its own then, or an empty one from libssh2). */
static int refused(const rg_auth *a, const char *user) {
  char m[512];
  if (a->type == RG_AUTH_TOKEN)
    snprintf(m, sizeof m, "the remote refused the token for user %s", user);
  else if (a->type == RG_AUTH_AGENT)
    snprintf(m, sizeof m,
             "the remote refused the keys of the ssh-agent (SSH_AUTH_SOCK) for user %s", user);
  else
    snprintf(m, sizeof m, "the remote refused the ssh key %s for user %s", a->key, user);
  git_error_set_str(GIT_ERROR_SSH, m);
  return GIT_EAUTH;
}

static int cb_credentials(git_credential **out, const char *url, const char *user_from_url,
                          unsigned int allowed, void *payload) {
  rg_net *n = payload;
  const rg_auth *a = n->auth;
  (void)url;
  if (check_stop(n)) return GIT_EUSER;
  if (++n->cred_calls > 3) return GIT_EAUTH; /* offered and refused: do not loop */
  const char *user = a != NULL && a->user != NULL ? a->user : user_from_url;
  if (a != NULL && a->type == RG_AUTH_TOKEN && (allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT)) {
    if (n->auth_offered++) return refused(a, user ? user : "x-access-token");
    return git_credential_userpass_plaintext_new(out, user ? user : "x-access-token",
                                                 a->secret ? a->secret : "");
  }
  if ((allowed & GIT_CREDENTIAL_USERNAME) && (a == NULL || a->type != RG_AUTH_TOKEN))
    return git_credential_username_new(out, user ? user : "git");
  if (a != NULL && a->type == RG_AUTH_AGENT && (allowed & GIT_CREDENTIAL_SSH_KEY)) {
    if (n->auth_offered++) return refused(a, user ? user : "git");
    return git_credential_ssh_key_from_agent(out, user ? user : "git");
  }
  if (a != NULL && a->type == RG_AUTH_KEY && (allowed & GIT_CREDENTIAL_SSH_KEY)) {
    if (n->auth_offered++) return refused(a, user ? user : "git");
    return git_credential_ssh_key_new(out, user ? user : "git", NULL, a->key, a->secret);
  }
  n->auth_missing = 1;
  return GIT_EAUTH;
}

static int cb_transfer(const git_indexer_progress *stats, void *payload) {
  (void)stats;
  return check_stop(payload);
}

static int cb_sideband(const char *str, int len, void *payload) {
  (void)str;
  (void)len;
  return check_stop(payload);
}

static int cb_pack(int stage, uint32_t current, uint32_t total, void *payload) {
  (void)stage;
  (void)current;
  (void)total;
  return check_stop(payload);
}

static int cb_push_transfer(unsigned int current, unsigned int total, size_t bytes, void *payload) {
  (void)current;
  (void)total;
  (void)bytes;
  return check_stop(payload);
}

static int cb_push_ref(const char *refname, const char *status, void *payload) {
  rg_net *n = payload;
  if (status == NULL) return 0;
  rg_reject *v = relish_grow(n->rejects, n->nrejects, &n->caprejects, sizeof *v, 4);
  if (v == NULL) {
    n->oom = 1;
    return 0;
  }
  n->rejects = v;
  n->rejects[n->nrejects].ref = strdup(refname);
  n->rejects[n->nrejects].msg = strdup(status);
  n->nrejects++;
  return 0;
}

static int same_value(int present, const git_oid *want, const git_oid *got) {
  if (!present) return git_oid_is_zero(got);
  return git_oid_equal(want, got);
}

/* The lease, checked on what the remote advertised to this very connection
 * (smart servers then refuse the update if the ref moved since). */
static int cb_negotiation(const git_push_update **updates, size_t len, void *payload) {
  rg_net *n = payload;
  for (size_t i = 0; i < len; i++) {
    for (size_t k = 0; k < n->nupdates; k++) {
      rg_update *u = &n->updates[k];
      if (strcmp(u->dst, updates[i]->dst_refname) != 0) continue;
      if (!same_value(u->has_new, &u->new, &updates[i]->dst)) {
        n->moved = 1; /* the local ref moved since the push was planned */
        snprintf(n->lease_ref, sizeof n->lease_ref, "%s", u->src ? u->src : u->dst);
        return GIT_EUSER;
      }
      if (!u->lease) continue;
      int present = !git_oid_is_zero(&updates[i]->src);
      if (present != u->has_expect || (present && !git_oid_equal(&updates[i]->src, &u->expect))) {
        n->lease_failed = 1;
        snprintf(n->lease_ref, sizeof n->lease_ref, "%s", u->dst);
        return GIT_EUSER;
      }
    }
  }
  return check_stop(n);
}

static int cb_tips(const char *refname, const git_oid *a, const git_oid *b, void *payload) {
  rg_net *n = payload;
  rg_tip *v = relish_grow(n->tips, n->ntips, &n->captips, sizeof *v, 8);
  if (v == NULL) {
    n->oom = 1;
    return 0;
  }
  n->tips = v;
  rg_tip *t = &n->tips[n->ntips];
  if ((t->ref = strdup(refname)) == NULL) {
    n->oom = 1;
    return 0;
  }
  t->old = *a;
  t->new = *b;
  n->ntips++;
  return 0;
}

static void net_free(void *p) {
  rg_net *n = p;
  for (size_t i = 0; i < n->nrejects; i++) {
    free(n->rejects[i].ref);
    free(n->rejects[i].msg);
  }
  free(n->rejects);
  for (size_t i = 0; i < n->ntips; i++)
    free(n->tips[i].ref);
  free(n->tips);
  free(n->ca);
  free(n);
}

rg_net *rg_net_new(relish_box *b, const rg_auth *auth, const char *ca) {
  rg_net *n = relish_box_add(b, calloc(1, sizeof *n), net_free);
  if (n == NULL) return NULL;
  n->auth = auth;
  /* absolute, so an undo in another directory reads the same file */
  if (ca != NULL && (n->ca = realpath(ca, NULL)) == NULL && (n->ca = strdup(ca)) == NULL)
    return NULL;
  return n;
}

const char *rg_net_ca(const rg_net *n) { return n->ca; }

/* The CAs TLS trusts are libgit2's, for the whole process
 * (GIT_OPT_SET_SSL_CERT_LOCATIONS): set before each operation that
 * connects, to the operation's ca= or back to the system bundle libgit2
 * loads at start-up (with mbedTLS, a new file replaces the old list). */
#ifndef RG_SYSTEM_CA
#define RG_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"
#endif

static int ca_replaced; /* a ca= is in force, not the system bundle */

static int apply_ca(rg_net *n, relish_status *st) {
  if (n->ca == NULL && !ca_replaced) return 0;
  const char *file = n->ca != NULL ? n->ca : RG_SYSTEM_CA;
  if (n->ca == NULL && access(file, R_OK) != 0) {
    ca_replaced = 0; /* no system bundle to go back to */
    return 0;
  }
  if (n->ca != NULL) {
    FILE *f = fopen(file, "rb");
    if (f == NULL)
      return relish_status_set(st, "io", "ca: cannot read %s: %s", file, strerror(errno));
    fclose(f);
  }
  int rc = git_libgit2_opts(GIT_OPT_SET_SSL_CERT_LOCATIONS, file, NULL);
  if (rc < 0) {
    const git_error *e = git_error_last();
    relish_status_set(st, "io", "ca: cannot load the certificates in %s: %s", file,
                      e != NULL && e->message != NULL ? e->message : "unknown error");
    git_error_clear();
    ca_replaced = 1; /* whatever libgit2 holds now, reload next time */
    return -1;
  }
  ca_replaced = n->ca != NULL;
  return 0;
}

static void callbacks(rg_net *n, git_remote_callbacks *cb) {
  git_remote_init_callbacks(cb, GIT_REMOTE_CALLBACKS_VERSION);
  cb->credentials = cb_credentials;
  cb->transfer_progress = cb_transfer;
  cb->sideband_progress = cb_sideband;
  cb->pack_progress = cb_pack;
  cb->push_transfer_progress = cb_push_transfer;
  cb->push_update_reference = cb_push_ref;
  cb->push_negotiation = cb_negotiation;
  cb->update_tips = cb_tips;
  cb->payload = n;
}

int rg_net_stopped(const rg_net *n) { return n->interrupted || n->timed_out; }

int rg_net_status(rg_net *n, int code, const char *what, relish_status *st) {
  if (n->interrupted) return relish_status_set(st, "interrupted", "interrupted");
  if (n->timed_out) return relish_status_set(st, "timeout", "timed out");
  if (n->moved)
    return relish_status_set(st, "conflict", "%s changed while pushing: nothing pushed",
                             n->lease_ref);
  if (n->lease_failed)
    return relish_status_set(st, "non_fast_forward",
                             "lease check failed: %s on the remote is not at the expected value",
                             n->lease_ref);
  rg_set_git(st, code, what);
  if (strcmp(st->kind, "io") == 0) st->kind = "network"; /* a socket's errors are the OS's */
  if (n->auth_missing || (n->auth_offered && strcmp(st->kind, "network") == 0) || code == GIT_EAUTH)
    st->kind = "auth";
  if (n->auth_missing && n->auth == NULL)
    relish_status_set(st, "auth", "%s: the remote asks for credentials: give auth =", what);
  return -1;
}

/* ---- reaching the host ----
 * libgit2 1.5 connects with a blocking connect() that no step deadline
 * bounds (and leaks a little when it fails): the host is tried here first,
 * with a bounded wait that interruption and the deadline cut short. */

#define CONNECT_WAIT 15.0

static int host_port(const char *url, char *host, size_t hsize, char *port, size_t psize) {
  static const struct {
    const char *scheme, *port;
  } schemes[] = {{"git://", "9418"}, {"http://", "80"}, {"https://", "443"}, {"ssh://", "22"}};
  const char *p = NULL, *dflt = NULL;
  for (size_t i = 0; i < sizeof schemes / sizeof schemes[0] && p == NULL; i++)
    if (strncmp(url, schemes[i].scheme, strlen(schemes[i].scheme)) == 0) {
      p = url + strlen(schemes[i].scheme);
      dflt = schemes[i].port;
    }
  if (p == NULL) { /* scp-like user@host:path, else a local path or file:// */
    const char *colon = strchr(url, ':'), *slash = strchr(url, '/');
    if (strstr(url, "://") != NULL) return 0;
    if (colon == NULL || (slash != NULL && slash < colon)) return 0;
    p = url;
    dflt = "22";
  }
  const char *end = p + strcspn(p, "/?#");
  const char *at = memchr(p, '@', (size_t)(end - p));
  if (at != NULL) p = at + 1;
  const char *hs = p, *he, *ps = NULL;
  if (*p == '[') { /* [v6]:port */
    hs = p + 1;
    he = memchr(hs, ']', (size_t)(end - hs));
    if (he == NULL) return 0;
    if (he + 1 < end && he[1] == ':') ps = he + 2;
  } else {
    he = memchr(p, ':', (size_t)(end - p));
    if (he != NULL)
      ps = he + 1;
    else
      he = end;
  }
  if (dflt != NULL && strcmp(dflt, "22") == 0 && strncmp(url, "ssh://", 6) != 0) ps = NULL;
  snprintf(host, hsize, "%.*s", (int)(he - hs), hs);
  if (ps != NULL && ps < end && *ps >= '0' && *ps <= '9')
    snprintf(port, psize, "%.*s", (int)(end - ps), ps);
  else
    snprintf(port, psize, "%s", dflt);
  return host[0] != '\0';
}

static int behind_proxy(const char *url) {
  if (strncmp(url, "http", 4) != 0) return 0;
  static const char *const vars[] = {"http_proxy",  "HTTP_PROXY", "https_proxy",
                                     "HTTPS_PROXY", "all_proxy",  "ALL_PROXY"};
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    if (getenv(vars[i]) != NULL && getenv(vars[i])[0] != '\0') return 1;
  return 0;
}

/* A path or file:// URL must lead to a repository (libgit2 says
 * "unsupported URL protocol" for a path that does not exist). */
static int local_repo(const char *url, relish_status *st) {
  const char *path = url;
  if (strncmp(url, "file://", 7) == 0) {
    path = url + 7;
    if (strncmp(path, "localhost/", 10) == 0) path += 9;
    if (path[0] != '/' || strchr(path, '%') != NULL) return 0; /* for libgit2 to read */
  } else if (!local_path(url)) {
    return 0;
  }
  int rc = git_repository_open_ext(NULL, path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
  git_error_clear();
  if (rc == GIT_ENOTFOUND) return relish_status_set(st, "not_found", "no repository at %s", path);
  return 0; /* there, or there but broken: libgit2 says how */
}

/* 0 when a TCP connection to the URL's host opens (or it needs none), or a
 * local URL leads to a repository. */
static int reach(rg_net *n, const char *url, relish_status *st) {
  char host[256], port[16];
  if (local_repo(url, st) != 0) return -1;
  if (!host_port(url, host, sizeof host, port, sizeof port) || behind_proxy(url)) return 0;
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  int gai = getaddrinfo(host, port, &hints, &res);
  if (gai != 0)
    return relish_status_set(st, "network", "cannot resolve %s: %s", host, gai_strerror(gai));
  int err = ETIMEDOUT, ok = 0;
  double until = relish_now() + CONNECT_WAIT, d = relish_deadline();
  if (d > 0 && d < until) until = d;
  for (struct addrinfo *a = res; a != NULL && !ok && !n->interrupted && !n->timed_out;
       a = a->ai_next) {
    int fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    if (connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
      ok = 1;
    } else if (errno != EINPROGRESS) {
      err = errno;
    } else {
      for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLOUT};
        double left = until - relish_now();
        if (left <= 0) {
          err = ETIMEDOUT;
          if (d > 0 && relish_now() >= d) n->timed_out = 1;
          break;
        }
        int r = poll(&pfd, 1, left > 0.1 ? 100 : (int)(left * 1000) + 1);
        if (check_stop(n)) break;
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
          err = errno;
          break;
        }
        if (r == 0) continue;
        int e = 0;
        socklen_t len = sizeof e;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len);
        if (e == 0)
          ok = 1;
        else
          err = e;
        break;
      }
    }
    close(fd);
  }
  freeaddrinfo(res);
  if (ok) return 0;
  if (n->interrupted) return relish_status_set(st, "interrupted", "interrupted");
  if (n->timed_out) return relish_status_set(st, "timeout", "timed out");
  return relish_status_set(st, "network", "cannot connect to %s port %s: %s", host, port,
                           strerror(err));
}

static void proxy(git_proxy_options *p) {
  git_proxy_options_init(p, GIT_PROXY_OPTIONS_VERSION);
  p->type = GIT_PROXY_AUTO;
}

int rg_net_connect(rg_net *n, git_remote *remote, int direction, relish_status *st) {
  const char *url = direction == GIT_DIRECTION_PUSH && git_remote_pushurl(remote) != NULL
                        ? git_remote_pushurl(remote)
                        : git_remote_url(remote);
  if (reach(n, url, st) != 0 || apply_ca(n, st) != 0) return -1;
  git_remote_callbacks cb;
  git_proxy_options px;
  callbacks(n, &cb);
  proxy(&px);
  int rc = git_remote_connect(remote, (git_direction)direction, &cb, &px, NULL);
  if (rc < 0) return rg_net_status(n, rc, "connect", st);
  return 0;
}

int rg_net_remote_value(rg_net *n, git_remote *remote, const char *ref, git_oid *out) {
  (void)n;
  const git_remote_head **heads = NULL;
  size_t count = 0;
  if (git_remote_ls(&heads, &count, remote) < 0) {
    git_error_clear();
    return 0;
  }
  for (size_t i = 0; i < count; i++)
    if (strcmp(heads[i]->name, ref) == 0) {
      git_oid_cpy(out, &heads[i]->oid);
      return 1;
    }
  return 0;
}

/* Kind of a ref the remote refused, from its reason. */
static const char *reject_kind(const char *msg) {
  static const char *const ff[] = {
      "non-fast-forward", "fetch first", "stale",          "failed to lock",
      "failed to update", "cannot lock", "already exists", NULL};
  for (int i = 0; ff[i] != NULL; i++)
    if (strstr(msg, ff[i]) != NULL)
      return strcmp(ff[i], "already exists") == 0 ? "exists" : "non_fast_forward";
  return "conflict";
}

static void temp_refs_drop(git_repository *repo, char **tmp, size_t nu) {
  for (size_t i = 0; i < nu; i++) {
    if (tmp[i] == NULL) continue;
    git_reference *r = NULL;
    if (git_reference_lookup(&r, repo, tmp[i]) == 0) git_reference_delete(r);
    git_reference_free(r);
    free(tmp[i]);
  }
  git_error_clear();
  free(tmp);
}

int rg_net_push(rg_net *n, git_repository *repo, git_remote *remote, rg_update *u, size_t nu,
                relish_status *st) {
  char **specs = calloc(nu + 1, sizeof *specs), **tmp = calloc(nu + 1, sizeof *tmp);
  int rc = specs == NULL || tmp == NULL ? relish_status_set(st, "io", "not enough memory") : 0;
  for (size_t i = 0; i < nu && rc == 0; i++) {
    const char *src = u[i].src;
    if (u[i].has_new && src == NULL) {
      char name[128];
      git_reference *r = NULL;
      snprintf(name, sizeof name, "refs/relish/push/%ld-%zu", (long)getpid(), i);
      if ((rc = git_reference_create(&r, repo, name, &u[i].new, 1, NULL)) < 0 ||
          (tmp[i] = strdup(name)) == NULL) {
        rc = rc < 0 ? rg_set_git(st, rc, "push") : relish_status_set(st, "io", "not enough memory");
        git_reference_free(r);
        break;
      }
      git_reference_free(r);
      src = tmp[i];
    }
    size_t len = strlen(u[i].dst) + (src ? strlen(src) : 0) + 4;
    if ((specs[i] = malloc(len)) == NULL) {
      rc = relish_status_set(st, "io", "not enough memory");
      break;
    }
    if (u[i].has_new)
      snprintf(specs[i], len, "%s%s:%s", u[i].force ? "+" : "", src, u[i].dst);
    else
      snprintf(specs[i], len, ":%s", u[i].dst);
  }
  if (rc == 0) rc = apply_ca(n, st);
  if (rc == 0) {
    git_strarray arr = {specs, nu};
    git_push_options po;
    git_push_options_init(&po, GIT_PUSH_OPTIONS_VERSION);
    callbacks(n, &po.callbacks);
    proxy(&po.proxy_opts);
    n->updates = u;
    n->nupdates = nu;
    rc = git_remote_upload(remote, &arr, &po);
    if (rc == 0 && n->nrejects == 0)
      rc = git_remote_update_tips(remote, &po.callbacks, 0, GIT_REMOTE_DOWNLOAD_TAGS_UNSPECIFIED,
                                  NULL);
    n->updates = NULL;
    n->nupdates = 0;
    if (rc < 0)
      rg_net_status(n, rc, "push", st);
    else if (n->nrejects > 0)
      rc = relish_status_set(st, reject_kind(n->rejects[0].msg), "the remote refused %s: %s%s",
                             n->rejects[0].ref, n->rejects[0].msg,
                             n->nrejects > 1 ? " (and more)" : "");
  }
  if (tmp != NULL) temp_refs_drop(repo, tmp, nu);
  for (size_t i = 0; specs != NULL && i < nu; i++)
    free(specs[i]);
  free(specs);
  return rc < 0 ? -1 : 0;
}

void rg_net_fetch_options(rg_net *n, git_fetch_options *fo) {
  git_fetch_options_init(fo, GIT_FETCH_OPTIONS_VERSION);
  callbacks(n, &fo->callbacks);
  proxy(&fo->proxy_opts);
}

int rg_net_fetch(rg_net *n, git_remote *remote, const char *const *refspecs, size_t nspecs,
                 relish_status *st) {
  if (reach(n, git_remote_url(remote), st) != 0 || apply_ca(n, st) != 0) return -1;
  git_fetch_options fo;
  rg_net_fetch_options(n, &fo);
  git_strarray arr = {(char **)refspecs, nspecs};
  int rc = git_remote_fetch(remote, nspecs > 0 ? &arr : NULL, &fo, NULL);
  if (rc < 0) return rg_net_status(n, rc, "fetch", st);
  return 0;
}

size_t rg_net_tips(rg_net *n, const char **ref, const git_oid **old, const git_oid **new,
                   size_t i) {
  if (i < n->ntips) {
    *ref = n->tips[i].ref;
    *old = &n->tips[i].old;
    *new = &n->tips[i].new;
  }
  return n->ntips;
}

/* ---- fetch and clone ---- */

/* Raises the failure: interruption and timeouts as kinds of their own. */
static int net_fail(lua_State *L, rg_net *n, const char *verb, const char *target,
                    const relish_status *st) {
  if (n->interrupted) return relish_raise_interrupted(L);
  if (n->timed_out) return relish_raise(L, "timeout", "git.%s %s: timed out", verb, target);
  return rg_raise(L, verb, target, st);
}

static const char *const fetch_opts[] = {"refspecs", "auth", "ca", NULL};

/* A string or a list of strings at the field, boxed as a NULL-ended array. */
static const char **string_list(lua_State *L, relish_box *b, int t, const char *fname,
                                const char *key, size_t *count) {
  *count = 0;
  int ty = lua_getfield(L, t, key);
  const char **v = NULL;
  if (ty == LUA_TSTRING) {
    v = relish_box_add(b, calloc(2, sizeof *v), rg_free_mem);
    if (v == NULL) luaL_error(L, "not enough memory");
    v[0] = lua_tostring(L, -1);
    *count = 1;
  } else if (ty == LUA_TTABLE) {
    lua_Integer n = luaL_len(L, -1);
    v = relish_box_add(b, calloc((size_t)n + 1, sizeof *v), rg_free_mem);
    if (v == NULL) luaL_error(L, "not enough memory");
    for (lua_Integer i = 1; i <= n; i++) {
      if (lua_geti(L, -1, i) != LUA_TSTRING)
        luaL_error(L, "%s: %s[%d] must be a string", fname, key, (int)i);
      v[i - 1] = lua_tostring(L, -1);
      lua_pop(L, 1);
    }
    *count = (size_t)n;
  } else if (ty != LUA_TNIL) {
    luaL_error(L, "%s: %s must be a string or a list of strings", fname, key);
  }
  lua_pop(L, 1); /* the options table keeps the strings */
  return v;
}

/* repo:fetch(remote, {refspecs=, auth=, ca=}) -> {[ref] = {old=, new=}}.
 * Not an effect: it only updates remote-tracking refs, like git fetch. */
int l_repo_fetch(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *name = rg_optstr(L, 2, "origin");
  relish_checkopts(L, 3, "repo:fetch", fetch_opts);
  if (lua_isnoneornil(L, 3)) {
    lua_settop(L, 2);
    lua_newtable(L);
  }
  lua_settop(L, 3);
  relish_box *b = relish_box_new(L); /* 4 */
  size_t nspecs;
  const char **specs = string_list(L, b, 3, "repo:fetch", "refspecs", &nspecs);
  lua_getfield(L, 3, "auth");
  rg_auth *auth = rg_auth_check(L, b, lua_gettop(L), "repo:fetch");
  lua_pop(L, 1);
  const char *ca = rg_optfield(L, 3, "repo:fetch", "ca"); /* the options table keeps it */
  relish_status st = {0};
  git_remote *remote = NULL;
  char clean[4096];
  rg_url_clean(name, clean, sizeof clean);
  if (rg_remote_open(repo, name, &remote, &st) != 0) return rg_raise(L, "fetch", clean, &st);
  relish_box_add(b, remote, rg_free_remote);
  rg_net *n = rg_net_new(b, auth, ca);
  if (n == NULL) return luaL_error(L, "not enough memory");
  if (rg_net_fetch(n, remote, specs, nspecs, &st) != 0) return net_fail(L, n, "fetch", clean, &st);
  lua_newtable(L);
  const char *ref;
  const git_oid *old, *new;
  size_t count = rg_net_tips(n, &ref, &old, &new, 0);
  for (size_t i = 0; i < count; i++) {
    rg_net_tips(n, &ref, &old, &new, i);
    char hex[GIT_OID_HEXSZ + 1];
    lua_createtable(L, 0, 2);
    if (!git_oid_is_zero(old)) {
      rg_hex(old, hex);
      lua_pushstring(L, hex);
      lua_setfield(L, -2, "old");
    }
    if (!git_oid_is_zero(new)) {
      rg_hex(new, hex);
      lua_pushstring(L, hex);
      lua_setfield(L, -2, "new");
    }
    lua_setfield(L, -2, ref);
  }
  relish_box_release(b);
  return 1;
}

static const char *const clone_opts[] = {"branch", "depth", "auth", "bare", "ca", NULL};

/* The clone's "origin", made without libgit2's insteadOf lookup (see rewrite). */
static int clone_remote(git_remote **out, git_repository *repo, const char *name, const char *url,
                        void *payload) {
  (void)payload;
  git_remote_create_options o;
  git_remote_create_options_init(&o, GIT_REMOTE_CREATE_OPTIONS_VERSION);
  o.repository = repo;
  o.name = name;
  o.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF;
  return git_remote_create_with_opts(out, url, &o);
}

/* git.clone(url, path, {branch=, depth=, auth=, bare=, ca=}) -> repo.
 * Not an effect: it makes a new directory for the run to work in. depth is
 * accepted but libgit2 1.5 clones whole histories. */
int l_git_clone(lua_State *L) {
  const char *url = rg_checkstr(L, 1);
  const char *path = rg_checkstr(L, 2);
  relish_checkopts(L, 3, "git.clone", clone_opts);
  const char *branch = rg_optfield(L, 3, "git.clone", "branch");
  const char *ca = rg_optfield(L, 3, "git.clone", "ca");
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "depth");
    if (!lua_isnil(L, -1) && (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 0))
      luaL_error(L, "git.clone: depth must be a non-negative integer");
    lua_pop(L, 1);
  }
  int bare = rg_optbool(L, 3, "bare", 0);
  lua_settop(L, 3);
  relish_box *b = relish_box_new(L); /* 4 */
  rg_auth *auth = NULL;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "auth");
    auth = rg_auth_check(L, b, lua_gettop(L), "git.clone");
    lua_pop(L, 1);
  }
  relish_need_git();
  rg_net *n = rg_net_new(b, auth, ca);
  if (n == NULL) return luaL_error(L, "not enough memory");
  git_clone_options co;
  git_clone_options_init(&co, GIT_CLONE_OPTIONS_VERSION);
  rg_net_fetch_options(n, &co.fetch_opts);
  co.checkout_branch = branch;
  co.bare = bare;
  co.remote_cb = clone_remote;
  char clean[4096];
  rg_url_clean(url, clean, sizeof clean);
  rg_repo *r = rg_newrepo(L);
  relish_status st = {0};
  if (reach(n, url, &st) != 0 || apply_ca(n, &st) != 0) return net_fail(L, n, "clone", clean, &st);
  int rc = git_clone(&r->repo, url, path, &co);
  if (rc < 0) {
    rg_net_status(n, rc, clean, &st);
    if (rc == GIT_EEXISTS) st.kind = "exists";
    return net_fail(L, n, "clone", path, &st);
  }
  return 1;
}
