/* git.c: relish.git on libgit2. This file holds the Repository handle,
 * errors, revisions and identities, the small reads (head, branch, resolve,
 * remote_url), open and init, and luaopen; read.c has the larger reads,
 * refs.c and commit.c the local effects, remote.c the network, push.c the
 * push, undo.c the undo of every effect. Every effect kind is a provider the
 * gate runs (registered here); every runtime failure raises a structured
 * error (rg_raise), misuse a plain one at the caller. C resources live in
 * relish boxes. */
#define _GNU_SOURCE
#include "gitint.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

/* ---- free functions for the box ---- */

void rg_free_object(void *p) { git_object_free(p); }
void rg_free_ref(void *p) { git_reference_free(p); }
void rg_free_index(void *p) { git_index_free(p); }
void rg_free_repo(void *p) { git_repository_free(p); }
void rg_free_diff(void *p) { git_diff_free(p); }
void rg_free_remote(void *p) { git_remote_free(p); }
void rg_free_walk(void *p) { git_revwalk_free(p); }
void rg_free_sig(void *p) { git_signature_free(p); }
void rg_free_mem(void *p) { free(p); }
void rg_free_buf(void *p) {
  git_buf_dispose(p);
  free(p);
}

/* ---- errors ---- */

static int contains(const char *s, const char *needle) { return strcasestr(s, needle) != NULL; }

const char *rg_kind_of(int code) {
  const git_error *e = git_error_last();
  int klass = e != NULL ? e->klass : GIT_ERROR_NONE;
  const char *msg = e != NULL && e->message != NULL ? e->message : "";
  switch (code) {
  case GIT_ENOTFOUND:
  case GIT_EUNBORNBRANCH:
    return "not_found";
  case GIT_EEXISTS:
    return "exists";
  case GIT_EAUTH:
    return "auth";
  case GIT_ENONFASTFORWARD:
    return "non_fast_forward";
  case GIT_ECONFLICT:
  case GIT_EMERGECONFLICT:
  case GIT_EUNMERGED:
  case GIT_EUNCOMMITTED:
  case GIT_ELOCKED:
  case GIT_EMODIFIED:
    return "conflict";
  case GIT_EINVALIDSPEC:
  case GIT_EINVALID:
  case GIT_EAMBIGUOUS:
  case GIT_EBAREREPO:
  case GIT_EPEEL:
  case GIT_EDIRECTORY:
    return "invalid";
  case GIT_ECERTIFICATE:
    return "network";
  default:
    break;
  }
  switch (klass) {
  case GIT_ERROR_NET:
  case GIT_ERROR_SSL:
  case GIT_ERROR_HTTP:
  case GIT_ERROR_SSH:
    if (contains(msg, "auth") || contains(msg, " 401") || contains(msg, " 403") ||
        contains(msg, "credential"))
      return "auth";
    return "network";
  default:
    return "io";
  }
}

int rg_set_git(relish_status *st, int code, const char *what) {
  const git_error *e = git_error_last();
  const char *m = e != NULL && e->message != NULL ? e->message : "unknown libgit2 error";
  st->kind = rg_kind_of(code);
  if (what != NULL && what[0] != '\0')
    snprintf(st->msg, sizeof st->msg, "%s: %s", what, m);
  else
    snprintf(st->msg, sizeof st->msg, "%s", m);
  return -1;
}

void rg_push_error(lua_State *L, const char *verb, const char *target, const relish_status *st) {
  char what[4200];
  if (target != NULL && target[0] != '\0')
    snprintf(what, sizeof what, "git.%s %s", verb, target);
  else
    snprintf(what, sizeof what, "git.%s", verb);
  relish_status_push(L, what, st);
}

int rg_raise(lua_State *L, const char *verb, const char *target, const relish_status *st) {
  rg_push_error(L, verb, target, st);
  return lua_error(L);
}

int rg_raise_git(lua_State *L, const char *verb, const char *target, int code) {
  relish_status st = {0};
  rg_set_git(&st, code, NULL);
  return rg_raise(L, verb, target, &st);
}

/* ---- effects ---- */

#define RG_ACTION_MT "relish.git.Action"

void *rg_action_new(lua_State *L, size_t size, const char *kind, int box_idx, int repo_idx) {
  box_idx = box_idx ? lua_absindex(L, box_idx) : 0;
  repo_idx = repo_idx ? lua_absindex(L, repo_idx) : 0;
  rg_action *a = lua_newuserdatauv(L, size, 2);
  memset(a, 0, size);
  a->kind = kind;
  if (box_idx) {
    a->box = luaL_checkudata(L, box_idx, "relish.Box");
    lua_pushvalue(L, box_idx);
    lua_setiuservalue(L, -2, 1);
  }
  if (repo_idx) {
    a->repo = rg_checkrepo(L, repo_idx);
    lua_pushvalue(L, repo_idx);
    lua_setiuservalue(L, -2, 2);
  }
  luaL_setmetatable(L, RG_ACTION_MT);
  return a;
}

void *rg_action_check(lua_State *L, int idx, const char *kind) {
  rg_action *a = luaL_checkudata(L, idx, RG_ACTION_MT);
  if (strcmp(a->kind, kind) != 0) luaL_error(L, "%s: the action is a %s", kind, a->kind);
  return a;
}

void rg_rec_set(lua_State *L, const char *key, const char *value) {
  lua_pushstring(L, value);
  lua_setfield(L, -2, key);
}

void rg_rec_set_oid(lua_State *L, const char *key, const git_oid *id) {
  char hex[GIT_OID_HEXSZ + 1];
  rg_hex(id, hex);
  rg_rec_set(L, key, hex);
}

/* ---- argument checks ---- */

void rg_checkopts_table(lua_State *L, int idx, const char *fname, const char *const *known) {
  if (lua_isnoneornil(L, idx)) {
    lua_settop(L, idx - 1);
    lua_newtable(L);
  }
  luaL_checktype(L, idx, LUA_TTABLE);
  relish_checkopts(L, idx, fname, known);
}

const char *rg_checkstr(lua_State *L, int idx) {
  if (lua_type(L, idx) != LUA_TSTRING) luaL_typeerror(L, idx, "string");
  return lua_tostring(L, idx);
}

const char *rg_optstr(lua_State *L, int idx, const char *dflt) {
  return lua_isnoneornil(L, idx) ? dflt : rg_checkstr(L, idx);
}

const char *rg_optfield(lua_State *L, int idx, const char *fname, const char *key) {
  if (lua_type(L, idx) != LUA_TTABLE) return NULL;
  int t = lua_getfield(L, idx, key);
  const char *s = NULL;
  if (t == LUA_TSTRING)
    s = lua_tostring(L, -1);
  else if (t != LUA_TNIL)
    luaL_error(L, "%s: field '%s' must be a string, got %s", fname, key, luaL_typename(L, -1));
  lua_pop(L, 1); /* the table keeps the string alive */
  return s;
}

int rg_optbool(lua_State *L, int idx, const char *key, int dflt) {
  if (!lua_istable(L, idx)) return dflt;
  lua_getfield(L, idx, key);
  int v = lua_isnil(L, -1) ? dflt : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

/* ---- ids, identities and messages ---- */

void rg_hex(const git_oid *id, char out[GIT_OID_HEXSZ + 1]) {
  git_oid_tostr(out, GIT_OID_HEXSZ + 1, id);
}

void rg_short(const git_oid *id, char out[8]) { git_oid_tostr(out, 8, id); }

int rg_parse_oid(const char *s, git_oid *out) {
  if (s == NULL || strlen(s) != GIT_OID_HEXSZ) return -1;
  for (const char *p = s; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') || (*p >= 'A' && *p <= 'F')))
      return -1;
  return git_oid_fromstr(out, s) == 0 ? 0 : -1;
}

int rg_signature(git_repository *repo, int author, git_signature **out, relish_status *st) {
  const char *name = getenv(author ? "GIT_AUTHOR_NAME" : "GIT_COMMITTER_NAME");
  const char *email = getenv(author ? "GIT_AUTHOR_EMAIL" : "GIT_COMMITTER_EMAIL");
  git_config *cfg = NULL;
  git_buf cname = {0}, cemail = {0};
  int rc = 0;
  if ((name == NULL || name[0] == '\0' || email == NULL || email[0] == '\0') &&
      git_repository_config(&cfg, repo) == 0) {
    if ((name == NULL || name[0] == '\0') &&
        git_config_get_string_buf(&cname, cfg, "user.name") == 0)
      name = cname.ptr;
    if ((email == NULL || email[0] == '\0') &&
        git_config_get_string_buf(&cemail, cfg, "user.email") == 0)
      email = cemail.ptr;
  }
  if (name == NULL || name[0] == '\0' || email == NULL || email[0] == '\0') {
    rc = relish_status_set(st, "invalid",
                           "no identity: set user.name and user.email in the git config (or "
                           "GIT_%s_NAME and GIT_%s_EMAIL)",
                           author ? "AUTHOR" : "COMMITTER", author ? "AUTHOR" : "COMMITTER");
  } else if ((rc = git_signature_now(out, name, email)) < 0) {
    rg_set_git(st, rc, "identity");
  }
  git_buf_dispose(&cname);
  git_buf_dispose(&cemail);
  git_config_free(cfg);
  return rc < 0 ? -1 : 0;
}

char *rg_clean_message(const char *msg) {
  git_buf buf = {0};
  char *out = NULL;
  if (git_message_prettify(&buf, msg, 0, '#') == 0) out = strdup(buf.ptr);
  git_buf_dispose(&buf);
  return out;
}

/* ---- the Repository handle ---- */

static int repo_close(lua_State *L) {
  rg_repo *r = luaL_checkudata(L, 1, RG_REPO_MT);
  if (r->repo != NULL) git_repository_free(r->repo);
  r->repo = NULL;
  return 0;
}

git_repository *rg_checkrepo(lua_State *L, int idx) {
  rg_repo *r = luaL_checkudata(L, idx, RG_REPO_MT);
  if (r->repo == NULL) luaL_error(L, "git: the repository is closed");
  return r->repo;
}

rg_repo *rg_newrepo(lua_State *L) {
  rg_repo *r = lua_newuserdatauv(L, sizeof *r, 0);
  r->repo = NULL;
  luaL_setmetatable(L, RG_REPO_MT);
  return r;
}

const char *rg_label(git_repository *repo, char *out, size_t size) {
  const char *p = git_repository_workdir(repo);
  if (p == NULL) p = git_repository_path(repo);
  snprintf(out, size, "%s", p);
  size_t n = strlen(out);
  while (n > 1 && out[n - 1] == '/')
    out[--n] = '\0';
  return out;
}

static int repo_tostring(lua_State *L) {
  rg_repo *r = luaL_checkudata(L, 1, RG_REPO_MT);
  char label[4096];
  if (r->repo == NULL)
    lua_pushliteral(L, "relish.git.Repository (closed)");
  else
    lua_pushfstring(L, "relish.git.Repository (%s)", rg_label(r->repo, label, sizeof label));
  return 1;
}

/* ---- revisions ---- */

char *rg_head_ref(git_repository *repo) {
  git_reference *head = NULL;
  char *name = NULL;
  if (git_reference_lookup(&head, repo, "HEAD") == 0 &&
      git_reference_type(head) == GIT_REFERENCE_SYMBOLIC)
    name = strdup(git_reference_symbolic_target(head));
  git_reference_free(head);
  git_error_clear();
  return name;
}

int rg_ref_value(lua_State *L, git_repository *repo, const char *ref, git_oid *out) {
  if (rg_plan_active(L)) {
    int p = rg_plan_ref(L, repo, ref, out);
    if (p != 0) return p > 0 ? 1 : 0;
  }
  int rc = git_reference_name_to_id(out, repo, ref);
  if (rc == GIT_ENOTFOUND) {
    git_error_clear();
    return 0;
  }
  return rc < 0 ? rc : 1;
}

/* A short name as git's DWIM rules read it, planned refs only. */
static int planned_rev(lua_State *L, git_repository *repo, const char *rev, git_oid *out) {
  static const char *const fmts[] = {"%s", "refs/%s", "refs/tags/%s", "refs/heads/%s",
                                     "refs/remotes/%s"};
  char name[1024];
  for (size_t i = 0; i < sizeof fmts / sizeof fmts[0]; i++) {
    snprintf(name, sizeof name, fmts[i], rev);
    if (i == 0 && strcmp(rev, "HEAD") != 0 && strncmp(rev, "refs/", 5) != 0) continue;
    int p = rg_plan_ref(L, repo, name, out);
    if (p != 0) return p;
  }
  return 0;
}

int rg_resolve(lua_State *L, git_repository *repo, git_repository *look, const char *rev,
               git_object_t peel, git_object **out, relish_status *st) {
  git_object *obj = NULL;
  git_oid id;
  int rc;
  *out = NULL;
  /* planned refs count only where planned objects can be found */
  int planned = look != repo && rg_plan_active(L) ? planned_rev(L, repo, rev, &id) : 0;
  if (planned < 0) return relish_status_set(st, "not_found", "%s is planned to be deleted", rev);
  if (planned > 0)
    rc = git_object_lookup(&obj, look, &id, GIT_OBJECT_ANY);
  else
    rc = git_revparse_single(&obj, look, rev);
  if (rc < 0) {
    rg_set_git(st, rc, NULL);
    if (rc == GIT_ENOTFOUND || rc == GIT_EINVALIDSPEC)
      relish_status_set(st, rc == GIT_ENOTFOUND ? "not_found" : "invalid",
                        "revision '%s' not found", rev);
    if (rc == GIT_EAMBIGUOUS) relish_status_set(st, "invalid", "revision '%s' is ambiguous", rev);
    return -1;
  }
  if (peel != GIT_OBJECT_ANY && git_object_type(obj) != peel) {
    git_object *p = NULL;
    rc = git_object_peel(&p, obj, peel);
    git_object_free(obj);
    if (rc < 0) {
      git_error_clear();
      return relish_status_set(st, "invalid", "'%s' is not a %s", rev,
                               git_object_type2string(peel));
    }
    obj = p;
  }
  *out = obj;
  return 0;
}

/* ---- small reads ---- */

static int l_repo_path(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  char label[4096];
  lua_pushstring(L, rg_label(repo, label, sizeof label));
  return 1;
}

static void set_str(lua_State *L, const char *k, const char *v) {
  lua_pushstring(L, v);
  lua_setfield(L, -2, k);
}

/* repo:head() -> {id=, short=, ref=, branch=, detached=} */
static int l_repo_head(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  char *ref = rg_head_ref(repo);
  git_oid id;
  int rc = git_reference_name_to_id(&id, repo, "HEAD");
  if (rc < 0 && rc != GIT_ENOTFOUND && rc != GIT_EUNBORNBRANCH) {
    free(ref);
    return rg_raise_git(L, "head", NULL, rc);
  }
  git_error_clear();
  lua_createtable(L, 0, 5);
  if (rc == 0) {
    char hex[GIT_OID_HEXSZ + 1], sh[8];
    rg_hex(&id, hex);
    rg_short(&id, sh);
    set_str(L, "id", hex);
    set_str(L, "short", sh);
  }
  if (ref != NULL) {
    lua_pushstring(L, ref);
    lua_setfield(L, -2, "ref");
    if (strncmp(ref, "refs/heads/", 11) == 0) set_str(L, "branch", ref + 11);
    lua_pushboolean(L, 0);
  } else {
    set_str(L, "ref", "HEAD");
    lua_pushboolean(L, 1);
  }
  lua_setfield(L, -2, "detached");
  free(ref);
  return 1;
}

/* repo:branch() -> the current branch's name, or nil when detached */
static int l_repo_branch(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  char *ref = rg_head_ref(repo);
  if (ref != NULL && strncmp(ref, "refs/heads/", 11) == 0)
    lua_pushstring(L, ref + 11);
  else
    lua_pushnil(L);
  free(ref);
  return 1;
}

/* repo:resolve(rev) -> full id (peeled to a commit when it is a tag or a
 * commit). A read: in a dry-run it sees the live refs. */
static int l_repo_resolve(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *rev = rg_checkstr(L, 2);
  git_object *obj = NULL;
  int rc = git_revparse_single(&obj, repo, rev);
  if (rc < 0) {
    relish_status st = {0};
    rg_set_git(&st, rc, NULL);
    if (rc == GIT_ENOTFOUND || rc == GIT_EINVALIDSPEC)
      relish_status_set(&st, "not_found", "revision '%s' not found", rev);
    else if (rc == GIT_EAMBIGUOUS)
      relish_status_set(&st, "invalid", "revision '%s' is ambiguous", rev);
    return rg_raise(L, "resolve", rev, &st);
  }
  git_oid id;
  git_oid_cpy(&id, git_object_id(obj));
  if (git_object_type(obj) == GIT_OBJECT_TAG) {
    git_object *p = NULL;
    if (git_object_peel(&p, obj, GIT_OBJECT_COMMIT) == 0) git_oid_cpy(&id, git_object_id(p));
    git_object_free(p);
    git_error_clear();
  }
  git_object_free(obj);
  char hex[GIT_OID_HEXSZ + 1];
  rg_hex(&id, hex);
  lua_pushstring(L, hex);
  return 1;
}

/* repo:remote_url(name) -> url (a password in it is left out) */
static int l_repo_remote_url(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *name = rg_optstr(L, 2, "origin");
  char clean[4096];
  if (rg_remote_config_url(repo, name, clean, sizeof clean) != 0) {
    relish_status st = {0};
    relish_status_set(&st, "not_found", "no remote named '%s'", name);
    return rg_raise(L, "remote_url", name, &st);
  }
  lua_pushstring(L, clean);
  return 1;
}

/* ---- open and init ---- */

/* git.open(path) -> repo: discovers upwards like git does. */
int l_git_open(lua_State *L) {
  const char *path = rg_optstr(L, 1, ".");
  relish_need_git();
  struct stat sb;
  relish_status st = {0};
  if (stat(path, &sb) != 0) {
    relish_status_set(&st, errno == ENOENT ? "not_found" : "io", "%s", strerror(errno));
    return rg_raise(L, "open", path, &st);
  }
  rg_repo *r = rg_newrepo(L);
  int rc = git_repository_open_ext(&r->repo, path, 0, NULL);
  if (rc < 0) {
    rg_set_git(&st, rc, NULL);
    if (rc == GIT_ENOTFOUND)
      relish_status_set(&st, "not_a_repo", "not a git repository (or any parent)");
    return rg_raise(L, "open", path, &st);
  }
  return 1;
}

static const char *const init_opts[] = {"bare", "branch", NULL};

/* git.init(path, {bare=, branch=}) -> repo. Not an effect: like
 * clone it makes a new repository for the run to work in. */
int l_git_init(lua_State *L) {
  const char *path = rg_checkstr(L, 1);
  relish_checkopts(L, 2, "git.init", init_opts);
  int bare = rg_optbool(L, 2, "bare", 0);
  const char *branch = rg_optfield(L, 2, "git.init", "branch");
  relish_need_git();
  git_repository_init_options o;
  git_repository_init_options_init(&o, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
  o.flags = GIT_REPOSITORY_INIT_MKPATH;
  if (bare) o.flags |= GIT_REPOSITORY_INIT_BARE;
  o.initial_head = branch;
  rg_repo *r = rg_newrepo(L);
  int rc = git_repository_init_ext(&r->repo, path, &o);
  if (rc < 0) return rg_raise_git(L, "init", path, rc);
  return 1;
}

int luaopen_relish_git(lua_State *L) {
  static const luaL_Reg methods[] = {{"close", repo_close},
                                     {"path", l_repo_path},
                                     {"head", l_repo_head},
                                     {"branch", l_repo_branch},
                                     {"resolve", l_repo_resolve},
                                     {"remote_url", l_repo_remote_url},
                                     {"status", l_repo_status},
                                     {"is_dirty", l_repo_is_dirty},
                                     {"describe", l_repo_describe},
                                     {"tags", l_repo_tags},
                                     {"log", l_repo_log},
                                     {"diff_stat", l_repo_diff_stat},
                                     {"tree", l_repo_tree},
                                     {"blob", l_repo_blob},
                                     {"tag", l_repo_tag},
                                     {"delete_tag", l_repo_delete_tag},
                                     {"create_branch", l_repo_create_branch},
                                     {"delete_branch", l_repo_delete_branch},
                                     {"commit", l_repo_commit},
                                     {"revert", l_repo_revert},
                                     {"fetch", l_repo_fetch},
                                     {"push", l_repo_push},
                                     {NULL, NULL}};
  static const luaL_Reg funcs[] = {
      {"open", l_git_open}, {"init", l_git_init}, {"clone", l_git_clone}, {NULL, NULL}};
  luaL_newmetatable(L, RG_ACTION_MT); /* no __gc: the box it keeps owns the resources */
  lua_pop(L, 1);
  if (relish_resource_metatable(L, RG_REPO_MT, repo_close, methods)) {
    lua_pushcfunction(L, repo_tostring);
    lua_setfield(L, -2, "__tostring");
  }
  lua_pop(L, 1);
  relish_effect_register(L, "relish.git", rg_ref_providers);
  relish_effect_register(L, "relish.git", rg_commit_providers);
  relish_effect_register(L, "relish.git", rg_push_providers);
  luaL_newlib(L, funcs);
  return 1;
}
