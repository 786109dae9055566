/* push.c: the push effect and its undo. A push connects first and reads the
 * remote's refs (a read, also in a dry-run), checks leases and fast-forwards
 * against them, then hands the gate the action (apply uploads, plan returns
 * the planned values) with an undo record that says, per ref, how a
 * rollback takes it back:
 *   delete   the ref was new: delete it (tags, new branches)
 *   restore  put the old value back (a deleted ref, a moved tag, a forced
 *            rewrite): only while the remote still has what relish pushed
 *   revert   an existing branch moved forward: push a revert commit on top,
 *            so history others may have fetched is never rewritten
 * Every rollback update is a lease: it only lands if the remote ref still has
 * the value relish last saw. */
#define _GNU_SOURCE
#include "gitint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  rg_update *v;
  size_t n, cap;
} updates;

static void updates_free(void *p) {
  updates *u = p;
  for (size_t i = 0; i < u->n; i++) {
    free(u->v[i].dst);
    free(u->v[i].src);
  }
  free(u->v);
  free(u);
}

static rg_update *updates_add(updates *u, const char *dst) {
  for (size_t i = 0; i < u->n; i++)
    if (strcmp(u->v[i].dst, dst) == 0) return &u->v[i];
  rg_update *v = relish_grow(u->v, u->n, &u->cap, sizeof *v, 4);
  if (v == NULL) return NULL;
  u->v = v;
  rg_update *x = &u->v[u->n];
  memset(x, 0, sizeof *x);
  if ((x->dst = strdup(dst)) == NULL) return NULL;
  u->n++;
  return x;
}

/* ---- refspecs ---- */

/* dst for a short name: under the source's kind of ref (tags stay tags). */
static int full_dst(const char *dst, const char *srcname, char out[1024], relish_status *st) {
  int valid = 0;
  if (strncmp(dst, "refs/", 5) == 0)
    snprintf(out, 1024, "%s", dst);
  else if (srcname != NULL && strncmp(srcname, "refs/tags/", 10) == 0)
    snprintf(out, 1024, "refs/tags/%.1000s", dst);
  else
    snprintf(out, 1024, "refs/heads/%.1000s", dst);
  if (git_reference_name_is_valid(&valid, out) < 0 || !valid) {
    git_error_clear();
    return relish_status_set(st, "invalid", "'%s' is not a valid ref on the remote", dst);
  }
  return 0;
}

/* One refspec "[+]src[:dst]" (":dst" deletes) into an update; the source is
 * resolved here (planned values first in a dry-run). */
static int parse_spec(lua_State *L, git_repository *repo, git_repository *look, git_remote *remote,
                      rg_net *n, const char *spec, updates *us, relish_status *st) {
  int force = spec[0] == '+';
  if (force) spec++;
  char src[1024] = "", dst[1024] = "", srcname[1024] = "";
  const char *colon = strchr(spec, ':');
  if (colon != NULL) {
    snprintf(src, sizeof src, "%.*s", (int)(colon - spec), spec);
    snprintf(dst, sizeof dst, "%s", colon + 1);
  } else {
    snprintf(src, sizeof src, "%s", spec);
  }
  git_oid id;
  int has_new = 0;
  if (src[0] != '\0') {
    git_reference *ref = NULL;
    if (strcmp(src, "HEAD") == 0) {
      char *h = rg_head_ref(repo);
      snprintf(srcname, sizeof srcname, "%s", h != NULL ? h : "");
      free(h);
    } else if (git_reference_dwim(&ref, repo, src) == 0) {
      snprintf(srcname, sizeof srcname, "%s", git_reference_name(ref));
    } else if (rg_plan_active(L)) { /* maybe a ref only planned so far */
      static const char *const fmts[] = {"%.1000s", "refs/%.1000s", "refs/tags/%.1000s",
                                         "refs/heads/%.1000s"};
      git_oid tmp;
      for (size_t i = 0; i < 4 && srcname[0] == '\0'; i++) {
        char name[1100];
        snprintf(name, sizeof name, fmts[i], src);
        if ((i > 0 || strncmp(src, "refs/", 5) == 0) && rg_plan_ref(L, repo, name, &tmp) != 0)
          snprintf(srcname, sizeof srcname, "%.1000s", name);
      }
    }
    git_reference_free(ref);
    git_error_clear();
    int rc = srcname[0] != '\0' ? rg_ref_value(L, repo, srcname, &id) : 0;
    if (rc < 0) return rg_set_git(st, rc, src);
    if (rc == 0) {
      /* not a ref: an expression like HEAD~1 or an id, and dst must say where */
      git_object *obj = NULL;
      if (rg_resolve(L, repo, look, src, GIT_OBJECT_ANY, &obj, st) != 0) return -1;
      git_oid_cpy(&id, git_object_id(obj));
      git_object_free(obj);
      srcname[0] = '\0';
    }
    has_new = 1;
    if (dst[0] == '\0') {
      if (srcname[0] == '\0')
        return relish_status_set(st, "invalid",
                                 "refspec '%s' needs a destination (src:refs/heads/NAME)", spec);
      snprintf(dst, sizeof dst, "%s", srcname);
    }
  } else if (dst[0] == '\0') {
    return relish_status_set(st, "invalid", "refspec '%s' names nothing", spec);
  } else if (strncmp(dst, "refs/", 5) != 0) {
    /* a deletion by short name: what the remote has */
    char guess[1100];
    git_oid tmp;
    snprintf(guess, sizeof guess, "refs/heads/%.1000s", dst);
    if (!rg_net_remote_value(n, remote, guess, &tmp))
      snprintf(guess, sizeof guess, "refs/tags/%.1000s", dst);
    snprintf(dst, sizeof dst, "%.1000s", guess);
  }
  char full[1024];
  if (full_dst(dst, srcname[0] ? srcname : NULL, full, st) != 0) return -1;
  rg_update *u = updates_add(us, full);
  if (u == NULL) return relish_status_set(st, "io", "not enough memory");
  u->force = force;
  u->has_new = has_new;
  if (has_new) u->new = id;
  free(u->src);
  u->src = NULL;
  if (srcname[0] != '\0' && (u->src = strdup(srcname)) == NULL)
    return relish_status_set(st, "io", "not enough memory");
  return 0;
}

/* The remote-tracking value of dst (force_with_lease = true), if any. */
static int tracking_value(git_repository *repo, git_remote *remote, const char *dst, git_oid *out) {
  size_t n = git_remote_refspec_count(remote);
  for (size_t i = 0; i < n; i++) {
    const git_refspec *rs = git_remote_get_refspec(remote, i);
    if (git_refspec_direction(rs) != GIT_DIRECTION_FETCH || !git_refspec_src_matches(rs, dst))
      continue;
    git_buf buf = {0};
    int found = 0;
    if (git_refspec_transform(&buf, rs, dst) == 0)
      found = git_reference_name_to_id(out, repo, buf.ptr) == 0;
    git_buf_dispose(&buf);
    git_error_clear();
    if (found) return 1;
  }
  return 0;
}

/* force_with_lease: true (the tracking refs) or {[ref] = id | false}. */
static int set_leases(lua_State *L, git_repository *repo, git_remote *remote, int lease,
                      updates *us, relish_status *st) {
  int t = lua_type(L, lease);
  if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, lease))) return 0;
  if (t == LUA_TBOOLEAN) {
    for (size_t i = 0; i < us->n; i++) {
      rg_update *u = &us->v[i];
      u->lease = u->force = 1;
      u->has_expect = tracking_value(repo, remote, u->dst, &u->expect);
    }
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, lease) != 0) {
    const char *k = lua_tostring(L, -2);
    rg_update *u = NULL;
    for (size_t i = 0; k != NULL && i < us->n && u == NULL; i++) {
      const char *d = us->v[i].dst;
      size_t dl = strlen(d), kl = strlen(k);
      if (strcmp(d, k) == 0 || (kl < dl && d[dl - kl - 1] == '/' && strcmp(d + dl - kl, k) == 0))
        u = &us->v[i];
    }
    if (u == NULL)
      return relish_status_set(st, "invalid",
                               "force_with_lease names %s, which this push does not update",
                               k ? k : "a non-string key");
    u->lease = u->force = 1;
    if (lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1)) {
      u->has_expect = 0;
    } else if (lua_type(L, -1) == LUA_TSTRING) {
      const char *v = lua_tostring(L, -1);
      git_object *obj = NULL;
      if (rg_parse_oid(v, &u->expect) != 0) {
        if (git_revparse_single(&obj, repo, v) != 0) {
          git_error_clear();
          return relish_status_set(st, "invalid", "force_with_lease[%s]: '%s' is not an id", k, v);
        }
        git_oid_cpy(&u->expect, git_object_id(obj));
        git_object_free(obj);
      }
      u->has_expect = 1;
    } else {
      return relish_status_set(st, "invalid",
                               "force_with_lease[%s] must be an id or false (absent)", k);
    }
    lua_pop(L, 1);
  }
  return 0;
}

/* ---- the push effect ---- */

static void push_result(lua_State *L, const updates *us, int planned) {
  char hex[GIT_OID_HEXSZ + 1];
  lua_createtable(L, 0, (int)us->n);
  for (size_t i = 0; i < us->n; i++) {
    const rg_update *u = &us->v[i];
    lua_createtable(L, 0, 2);
    if (u->has_old) {
      rg_hex(&u->old, hex);
      lua_pushstring(L, hex);
      lua_setfield(L, -2, "old");
    }
    if (u->has_new) {
      rg_hex(&u->new, hex);
      lua_pushstring(L, hex);
      lua_setfield(L, -2, "new");
    }
    if (planned) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "planned");
    }
    lua_setfield(L, -2, u->dst);
  }
}

/* Raises the failure: interruption and timeouts as kinds of their own. */
static int push_fail(lua_State *L, rg_net *n, const char *target, const relish_status *st) {
  if (n != NULL && rg_net_stopped(n)) {
    if (strcmp(st->kind, "timeout") == 0)
      return relish_raise(L, "timeout", "git.push %s: timed out", target);
    return relish_raise_interrupted(L);
  }
  return rg_raise(L, "push", target, st);
}

/* Refuses what a plain push would: a branch that is not an ancestor of the
 * new value, a tag that already exists elsewhere. */
static int check_forward(git_repository *look, const rg_update *u, relish_status *st) {
  if (u->force || !u->has_old || !u->has_new || git_oid_equal(&u->old, &u->new)) return 0;
  char was[8];
  rg_short(&u->old, was);
  if (strncmp(u->dst, "refs/tags/", 10) == 0)
    return relish_status_set(st, "exists", "%s already exists on the remote (at %s)", u->dst, was);
  git_odb *odb = NULL;
  int have = git_repository_odb(&odb, look) == 0 && git_odb_exists(odb, &u->old);
  git_odb_free(odb);
  if (!have)
    return relish_status_set(st, "non_fast_forward",
                             "%s on the remote (at %s) has commits you do not have: fetch first",
                             u->dst, was);
  int desc = git_graph_descendant_of(look, &u->new, &u->old);
  git_error_clear();
  if (desc != 1)
    return relish_status_set(st, "non_fast_forward",
                             "%s on the remote (at %s) is not an ancestor of what you push", u->dst,
                             was);
  return 0;
}

static const char *rule_of(git_repository *look, const rg_update *u, const char *rollback) {
  if (!u->has_old) return "delete";
  if (!u->has_new || strncmp(u->dst, "refs/heads/", 11) != 0) return "restore";
  if (rollback != NULL && strcmp(rollback, "restore") == 0) return "restore";
  int ff = git_graph_descendant_of(look, &u->new, &u->old) == 1;
  git_error_clear();
  return ff ? "revert" : "restore";
}

static const char *const push_opts[] = {
    "remote", "refspecs", "force_with_lease", "auth", "rollback", "ca", NULL};

static void describe_update(char *out, size_t size, const rg_update *u) {
  char a[8] = "(none)", z[8];
  if (u->has_old) rg_short(&u->old, a);
  if (u->has_new) rg_short(&u->new, z);
  if (!u->has_new)
    snprintf(out, size, "delete %s (was %s)", u->dst, a);
  else if (!u->has_old)
    snprintf(out, size, "%s (new) → %s", u->dst, z);
  else
    snprintf(out, size, "%s %s → %s%s", u->dst, a, z, u->force ? " (forced)" : "");
}

/* Pushes the undo record: where to push again (repository, remote, URL, CA
 * file), where the auth comes from (never a secret), and each ref with its
 * rule and values. */
static void push_record(lua_State *L, git_repository *repo, const char *name, const char *url,
                        const rg_auth *a, const char *ca, const updates *us) {
  lua_createtable(L, 0, 7);
  lua_pushinteger(L, 1);
  lua_setfield(L, -2, "v");
  rg_rec_set(L, "repo", git_repository_path(repo));
  rg_rec_set(L, "remote", name);
  rg_rec_set(L, "url", url);
  if (ca != NULL) rg_rec_set(L, "ca", ca);
  rg_auth_push(L, a);
  lua_setfield(L, -2, "auth");
  lua_createtable(L, (int)us->n, 0);
  for (size_t i = 0; i < us->n; i++) {
    const rg_update *u = &us->v[i];
    lua_createtable(L, 0, 4);
    rg_rec_set(L, "ref", u->dst);
    rg_rec_set(L, "rule", u->rule);
    /* the local branch pushed: after a revert lands, the undo moves it too */
    if (u->src != NULL && strncmp(u->src, "refs/heads/", 11) == 0) rg_rec_set(L, "src", u->src);
    if (u->has_old) rg_rec_set_oid(L, "old", &u->old);
    if (u->has_new) rg_rec_set_oid(L, "new", &u->new);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "refs");
}

/* The prepared request of a push (its action's struct): connected, with the
 * updates checked against what the remote has. */
typedef struct {
  rg_action a;
  rg_net *net;
  git_remote *remote;
  updates *us;
  char url[4096], describe[2048], fingerprint[4096], detail[4096];
} push_job;

/* apply: the upload; every lease is checked again right before it. */
static int apply_push(lua_State *L) {
  push_job *p = rg_action_check(L, 1, "git.push");
  relish_status st = {0};
  if (relish_interrupted()) return relish_raise_interrupted(L);
  if (rg_net_push(p->net, p->a.repo, p->remote, p->us->v, p->us->n, &st) != 0) {
    if (rg_net_stopped(p->net)) return push_fail(L, p->net, p->url, &st);
    rg_push_error(L, "push", p->url, &st);
    if (strcmp(st.kind, "non_fast_forward") == 0 && strstr(st.msg, "lease") != NULL) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "lease");
    }
    relish_box_release(p->a.box); /* the connection goes now, not at the next collection */
    return lua_error(L);
  }
  push_result(L, p->us, 0);
  relish_box_release(p->a.box);
  return 1;
}

static int plan_push(lua_State *L) {
  push_job *p = rg_action_check(L, 1, "git.push");
  push_result(L, p->us, 1);
  relish_box_release(p->a.box);
  return 1;
}

static const char *const push_fields[] = {"repo", "remote", "url", "auth", "refs", NULL};

const relish_provider rg_push_providers[] = {{.kind = "git.push",
                                              .apply = apply_push,
                                              .plan = plan_push,
                                              .undo = rg_undo_push,
                                              .fields = push_fields},
                                             {NULL}};

/* repo:push{remote=, refspecs=, force_with_lease=, auth=, rollback=, ca=}
 *   -> {[ref] = {old=, new=}} */
int l_repo_push(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  rg_checkopts_table(L, 2, "repo:push", push_opts);
  const char *name = rg_optfield(L, 2, "repo:push", "remote");
  const char *rollback = rg_optfield(L, 2, "repo:push", "rollback");
  const char *ca = rg_optfield(L, 2, "repo:push", "ca"); /* the options table keeps it */
  if (rollback != NULL && strcmp(rollback, "revert") != 0 && strcmp(rollback, "restore") != 0)
    luaL_error(L, "repo:push: rollback must be \"revert\" or \"restore\"");
  if (name == NULL) name = "origin";
  lua_settop(L, 2);
  lua_getfield(L, 2, "force_with_lease"); /* 3 */
  if (!lua_isnil(L, 3) && !lua_isboolean(L, 3) && !lua_istable(L, 3))
    luaL_error(L, "repo:push: force_with_lease must be true or {[ref] = id}");
  relish_box *b = relish_box_new(L); /* 4 */
  size_t nspecs = 0;
  lua_getfield(L, 2, "refspecs");
  int st_type = lua_type(L, -1);
  if (st_type != LUA_TNIL && st_type != LUA_TSTRING && st_type != LUA_TTABLE)
    luaL_error(L, "repo:push: refspecs must be a string or a list of strings");
  lua_pop(L, 1);
  lua_getfield(L, 2, "auth");
  rg_auth *auth = rg_auth_check(L, b, lua_gettop(L), "repo:push");
  lua_pop(L, 1);
  relish_status st = {0};
  char url[4096];
  rg_url_clean(name, url, sizeof url);
  git_remote *remote = NULL;
  if (rg_remote_open(repo, name, &remote, &st) != 0) return rg_raise(L, "push", url, &st);
  relish_box_add(b, remote, rg_free_remote);
  rg_url_clean(git_remote_pushurl(remote) ? git_remote_pushurl(remote) : git_remote_url(remote),
               url, sizeof url);
  git_repository *look = repo;
  if (rg_plan_active(L) && (look = rg_plan_scratch(L, repo, &st)) == NULL)
    return rg_raise(L, "push", url, &st);
  rg_net *n = rg_net_new(b, auth, ca);
  updates *us = relish_box_add(b, calloc(1, sizeof *us), updates_free);
  if (n == NULL || us == NULL) return luaL_error(L, "not enough memory");
  if (rg_net_connect(n, remote, GIT_DIRECTION_PUSH, &st) != 0) return push_fail(L, n, url, &st);

  /* what goes where */
  lua_getfield(L, 2, "refspecs");
  if (lua_isstring(L, -1)) {
    nspecs = 1;
    if (parse_spec(L, repo, look, remote, n, lua_tostring(L, -1), us, &st) != 0)
      return rg_raise(L, "push", url, &st);
  } else if (lua_istable(L, -1)) {
    nspecs = (size_t)luaL_len(L, -1);
    for (size_t i = 1; i <= nspecs; i++) {
      if (lua_geti(L, -1, (lua_Integer)i) != LUA_TSTRING)
        luaL_error(L, "repo:push: refspecs[%d] must be a string", (int)i);
      if (parse_spec(L, repo, look, remote, n, lua_tostring(L, -1), us, &st) != 0)
        return rg_raise(L, "push", url, &st);
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  if (nspecs == 0) { /* the current branch to the same name */
    char *h = rg_head_ref(repo);
    int ok = h != NULL && strncmp(h, "refs/heads/", 11) == 0;
    if (ok)
      ok = parse_spec(L, repo, look, remote, n, h, us, &st) == 0;
    else
      relish_status_set(&st, "invalid", "HEAD is detached: give refspecs");
    free(h);
    if (!ok) return rg_raise(L, "push", url, &st);
  }
  for (size_t i = 0; i < us->n; i++)
    us->v[i].has_old = rg_net_remote_value(n, remote, us->v[i].dst, &us->v[i].old);
  if (set_leases(L, repo, remote, 3, us, &st) != 0) return rg_raise(L, "push", url, &st);

  /* leases and fast-forwards, before anything is journaled */
  for (size_t i = 0; i < us->n; i++) {
    rg_update *u = &us->v[i];
    if (u->lease && !rg_same_oid(u->has_expect, &u->expect, u->has_old, &u->old)) {
      char want[8] = "absent", have[8] = "absent";
      if (u->has_expect) rg_short(&u->expect, want);
      if (u->has_old) rg_short(&u->old, have);
      relish_status_set(&st, "non_fast_forward",
                        "lease check failed: %s on the remote is at %s, expected %s", u->dst, have,
                        want);
      rg_push_error(L, "push", url, &st);
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "lease");
      lua_pushstring(L, u->dst);
      lua_setfield(L, -2, "ref");
      return lua_error(L);
    }
    if (check_forward(look, u, &st) != 0) {
      rg_push_error(L, "push", url, &st);
      lua_pushstring(L, u->dst);
      lua_setfield(L, -2, "ref");
      return lua_error(L);
    }
  }
  /* refs already there are no update */
  size_t k = 0;
  for (size_t i = 0; i < us->n; i++) {
    if (rg_same_oid(us->v[i].has_old, &us->v[i].old, us->v[i].has_new, &us->v[i].new)) {
      free(us->v[i].dst);
      free(us->v[i].src);
      continue;
    }
    us->v[k++] = us->v[i];
  }
  us->n = k;
  if (k == 0) { /* everything is there already: no effect */
    lua_newtable(L);
    return 1;
  }
  for (size_t i = 0; i < us->n; i++)
    us->v[i].rule = rule_of(look, &us->v[i], rollback);

  /* describe, record, gate */
  push_job *p = rg_action_new(L, sizeof *p, "git.push", 4, 1); /* 5 */
  p->net = n;
  p->remote = remote;
  p->us = us;
  snprintf(p->url, sizeof p->url, "%s", url);
  int dn = snprintf(p->describe, sizeof p->describe, "push to %s (%s):", name, url);
  for (size_t i = 0; i < us->n; i++) {
    const rg_update *u = &us->v[i];
    char one[1200], hex[GIT_OID_HEXSZ + 1] = "absent";
    describe_update(one, sizeof one, u);
    if (dn < (int)sizeof p->describe)
      dn += snprintf(p->describe + dn, sizeof p->describe - dn, "%s %s", i ? "," : "", one);
    if (u->has_old) rg_hex(&u->old, hex);
    size_t fl = strlen(p->fingerprint);
    snprintf(p->fingerprint + fl, sizeof p->fingerprint - fl, "%s%s=%s", i ? " " : "", u->dst, hex);
    size_t dl = strlen(p->detail);
    const char *how = strcmp(u->rule, "delete") == 0   ? "delete it"
                      : strcmp(u->rule, "revert") == 0 ? "push a revert of the pushed commits"
                                                       : "put the old value back";
    snprintf(p->detail + dl, sizeof p->detail - dl, "%s%s (rollback: %s)", i ? "\n" : "", one, how);
  }
  push_record(L, repo, name, url, auth, rg_net_ca(n), us); /* 6 */
  return relish_effect_run(L, &(relish_action){.kind = "git.push",
                                               .target = p->url,
                                               .describe = p->describe,
                                               .detail = p->detail,
                                               .fingerprint = p->fingerprint,
                                               .record = 6,
                                               .arg = 5});
}

/* ---- undo ---- */

typedef struct {
  const char *dst, *rule, *src;
  int has_old, has_new, reverted;
  git_oid old, new;
  git_oid cur, revert; /* reverted: the remote's value then, and the revert pushed on it */
} pushed;

static void free_odb(void *p) { git_odb_free(p); }

/* A revert of old..new that relish already pushed on top of cur. */
static int already_reverted(git_repository *repo, const git_oid *cur, const char *marker,
                            const git_oid *new) {
  git_oid id = *cur;
  for (int i = 0; i < 10000 && !git_oid_equal(&id, new); i++) {
    git_commit *c = NULL;
    if (git_commit_lookup(&c, repo, &id) != 0) break;
    const char *m = git_commit_message(c);
    int hit = m != NULL && strstr(m, marker) != NULL;
    int more = git_commit_parentcount(c) > 0;
    if (more) id = *git_commit_parent_id(c, 0);
    git_commit_free(c);
    if (hit) return 1;
    if (!more) break;
  }
  git_error_clear();
  return 0;
}

/* Whether a "Relish-Revert: A..B" trailer on tip's first-parent chain (down
 * to commit) takes commit back: commit is B, or between A and B. */
int rg_reverted_on(git_repository *repo, const git_oid *tip, const git_oid *commit) {
  git_oid id = *tip;
  int found = 0;
  for (int i = 0; i < 10000 && !found && !git_oid_equal(&id, commit); i++) {
    git_commit *c = NULL;
    if (git_commit_lookup(&c, repo, &id) != 0) break;
    const char *m = git_commit_message(c);
    for (const char *t = m; t != NULL && !found && (t = strstr(t, "Relish-Revert: ")) != NULL;
         t++) {
      char a[GIT_OID_HEXSZ + 1], z[GIT_OID_HEXSZ + 1];
      git_oid from, to;
      if (sscanf(t + 15, "%40[0-9a-f]..%40[0-9a-f]", a, z) != 2 || rg_parse_oid(a, &from) != 0 ||
          rg_parse_oid(z, &to) != 0)
        continue;
      found = git_oid_equal(&to, commit) || (git_graph_descendant_of(repo, &to, commit) == 1 &&
                                             git_graph_descendant_of(repo, commit, &from) == 1);
    }
    int more = git_commit_parentcount(c) > 0;
    if (more) id = *git_commit_parent_id(c, 0);
    git_commit_free(c);
    if (!more) break;
  }
  git_error_clear();
  return found;
}

static int signature_or_relish(git_repository *repo, int author, git_signature **out) {
  relish_status st = {0};
  if (rg_signature(repo, author, out, &st) == 0) return 0;
  return git_signature_now(out, "relish", "relish@localhost");
}

/* A commit on top of cur whose tree undoes old..new (a three-way merge with
 * new as the base and old as theirs), or a conflict. */
static int revert_commit(git_repository *repo, const pushed *p, const git_oid *cur, git_oid *out,
                         relish_status *st) {
  git_commit *cn = NULL, *co = NULL, *cc = NULL;
  git_tree *tn = NULL, *to = NULL, *tc = NULL, *tree = NULL;
  git_index *idx = NULL;
  git_signature *author = NULL, *committer = NULL;
  char oldhex[GIT_OID_HEXSZ + 1], newhex[GIT_OID_HEXSZ + 1], msg[4096];
  int rc;
  if ((rc = git_commit_lookup(&cn, repo, &p->new)) < 0 ||
      (rc = git_commit_lookup(&co, repo, &p->old)) < 0 ||
      (rc = git_commit_lookup(&cc, repo, cur)) < 0 || (rc = git_commit_tree(&tn, cn)) < 0 ||
      (rc = git_commit_tree(&to, co)) < 0 || (rc = git_commit_tree(&tc, cc)) < 0 ||
      (rc = git_merge_trees(&idx, repo, tn, tc, to, NULL)) < 0) {
    rg_set_git(st, rc, p->dst);
    goto done;
  }
  if (git_index_has_conflicts(idx)) {
    rc = relish_status_set(st, "conflict",
                           "%s: later commits on the remote conflict with the revert", p->dst);
    goto done;
  }
  git_oid tree_id;
  if ((rc = git_index_write_tree_to(&tree_id, idx, repo)) < 0 ||
      (rc = git_tree_lookup(&tree, repo, &tree_id)) < 0 ||
      (rc = signature_or_relish(repo, 1, &author)) < 0 ||
      (rc = signature_or_relish(repo, 0, &committer)) < 0) {
    rg_set_git(st, rc, p->dst);
    goto done;
  }
  rg_hex(&p->old, oldhex);
  rg_hex(&p->new, newhex);
  const char *branch = strncmp(p->dst, "refs/heads/", 11) == 0 ? p->dst + 11 : p->dst;
  if (git_commit_parentcount(cn) > 0 && git_oid_equal(git_commit_parent_id(cn, 0), &p->old)) {
    const char *sum = git_commit_summary(cn);
    snprintf(msg, sizeof msg,
             "Revert \"%s\"\n\nThis reverts commit %s, pushed to %s and rolled back by relish.\n\n"
             "Relish-Revert: %s..%s\n",
             sum ? sum : "", newhex, branch, oldhex, newhex);
  } else {
    snprintf(msg, sizeof msg,
             "Revert %.7s..%.7s on %s\n\nThis reverts the commits %s..%s, pushed to %s and rolled "
             "back by relish.\n\nRelish-Revert: %s..%s\n",
             oldhex, newhex, branch, oldhex, newhex, branch, oldhex, newhex);
  }
  const git_commit *parents[1] = {cc};
  if ((rc = git_commit_create(out, repo, NULL, author, committer, NULL, msg, tree, 1, parents)) < 0)
    rg_set_git(st, rc, p->dst);
done:
  git_signature_free(author);
  git_signature_free(committer);
  git_index_free(idx);
  git_tree_free(tree);
  git_tree_free(tn);
  git_tree_free(to);
  git_tree_free(tc);
  git_commit_free(cn);
  git_commit_free(co);
  git_commit_free(cc);
  return rc < 0 ? -1 : 0;
}

/* Gets the objects of dst on the remote (for a revert on top of them). */
static int fetch_ref(relish_box *b, git_remote *remote, const rg_auth *auth, const char *ca,
                     const char *dst, relish_status *st) {
  git_remote *dup = NULL;
  int rc = git_remote_dup(&dup, remote);
  if (rc < 0) return rg_set_git(st, rc, "fetch");
  relish_box_add(b, dup, rg_free_remote);
  rg_net *n = rg_net_new(b, auth, ca);
  if (n == NULL) return relish_status_set(st, "io", "not enough memory");
  const char *specs[1] = {dst};
  rc = rg_net_fetch(n, dup, specs, 1, st);
  relish_box_drop(b, dup);
  return rc;
}

static void add_note(char *buf, size_t size, const char *fmt, const char *ref, const git_oid *id) {
  size_t n = strlen(buf);
  char now[8] = "absent";
  if (id != NULL) rg_short(id, now);
  if (n > 0 && n + 2 < size) n += (size_t)snprintf(buf + n, size - n, "; ");
  if (n < size) snprintf(buf + n, size - n, fmt, ref, now);
}

/* A path as one shell word, for a command the user copies. */
static void shell_word(const char *s, char *out, size_t size) {
  if (strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789/._-+:@") ==
      strlen(s)) {
    snprintf(out, size, "%s", s);
    return;
  }
  size_t n = 0;
  if (n + 1 < size) out[n++] = '\'';
  for (; *s != '\0' && n + 5 < size; s++) {
    if (*s == '\'') {
      memcpy(out + n, "'\\''", 4);
      n += 4;
    } else {
      out[n++] = *s;
    }
  }
  if (n + 1 < size) out[n++] = '\'';
  out[n] = '\0';
}

/* Appends "; " and text to buf, cut to its size (a bounded message). */
static void add_text(char *buf, size_t size, const char *text) {
  size_t n = strlen(buf);
  if (n > 0 && n + 2 < size) {
    buf[n++] = ';';
    buf[n++] = ' ';
  }
  if (n + 1 >= size) return;
  size_t len = strlen(text);
  if (len > size - n - 1) len = size - n - 1;
  memcpy(buf + n, text, len);
  buf[n + len] = '\0';
}

/* Whether the work tree has changes to tracked files (staged or not). */
static int worktree_dirty(git_repository *repo) {
  git_status_options o;
  git_status_options_init(&o, GIT_STATUS_OPTIONS_VERSION);
  o.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
  git_status_list *list = NULL;
  if (git_status_list_new(&list, repo, &o) != 0) {
    git_error_clear();
    return 1; /* unknown: as dirty, nothing is touched */
  }
  int dirty = git_status_list_entrycount(list) > 0;
  git_status_list_free(list);
  return dirty;
}

/* After the revert of p landed on the remote (called remote): the local
 * branch that was pushed follows it when nobody committed on it since, that
 * is when it is still where the run left it (the pushed commit) or where the
 * run found the remote (the old value, where a rollback of the run's own
 * commit puts it back). A checked-out branch moves only with a clean work
 * tree, its files and index updated to the revert by a safe checkout (which
 * never overwrites uncommitted work). Otherwise the branch stays and the note
 * says what to run. Its remote-tracking ref was updated by the push. */
static void follow_revert(git_repository *repo, const char *remote, const pushed *p, char *note,
                          size_t size) {
  const char *ref = p->src != NULL ? p->src : p->dst;
  git_oid cur;
  if (strncmp(ref, "refs/heads/", 11) != 0 || git_reference_name_to_id(&cur, repo, ref) != 0) {
    git_error_clear();
    return; /* no local branch of that name: nothing to follow */
  }
  if (git_oid_equal(&cur, &p->revert)) return;
  char where[4200], dir[4096], r[8], now[8], text[5200];
  const char *wd = git_repository_workdir(repo);
  snprintf(dir, sizeof dir, "%s", wd != NULL ? wd : git_repository_path(repo));
  size_t dl = strlen(dir);
  if (dl > 1 && dir[dl - 1] == '/') dir[dl - 1] = '\0';
  shell_word(dir, where, sizeof where);
  rg_short(&p->revert, r);
  rg_short(&cur, now);
  const char *branch = ref + 11, *theirs = p->dst + 11;
  int left = git_oid_equal(&cur, &p->new) || (p->has_old && git_oid_equal(&cur, &p->old));
  if (!left) {
    snprintf(text, sizeof text,
             "local %s (at %s) has commits made since the run: it stays; run `git -C %s pull "
             "--rebase %s %s` to put them on top of the revert %s",
             branch, now, where, remote, theirs, r);
    add_text(note, size, text);
    return;
  }
  char *head = rg_head_ref(repo);
  int checked_out = head != NULL && strcmp(head, ref) == 0 && !git_repository_is_bare(repo);
  free(head);
  int rc = 0;
  if (checked_out) {
    git_commit *c = NULL;
    git_checkout_options co;
    git_checkout_options_init(&co, GIT_CHECKOUT_OPTIONS_VERSION);
    co.checkout_strategy = GIT_CHECKOUT_SAFE;
    rc = worktree_dirty(repo) ? -1 : git_commit_lookup(&c, repo, &p->revert);
    if (rc == 0) rc = git_checkout_tree(repo, (const git_object *)c, &co);
    git_commit_free(c);
    git_error_clear();
    if (rc != 0) {
      snprintf(text, sizeof text,
               "local %s stays at %s: the work tree has uncommitted changes; run `git -C %s pull "
               "--rebase --autostash %s %s` to move it to the revert %s",
               branch, now, where, remote, theirs, r);
      add_text(note, size, text);
      return;
    }
  }
  relish_status st = {0};
  if (rg_ref_cas(repo, ref, &cur, &p->revert, "relish: undo: follow the pushed revert", &st) != 0) {
    snprintf(text, sizeof text,
             "local %s moved while rolling back: run `git -C %s pull --rebase %s %s`", branch,
             where, remote, theirs);
    add_text(note, size, text);
    return;
  }
  snprintf(text, sizeof text, "local %s moved from %s to the revert %s, as on %s", branch, now, r,
           remote);
  add_text(note, size, text);
}

/* What an undo that pushed reverts did, for the rollback's journal: one
 * action per revert ({actions = {{kind=, target=, describe=, detail=}},
 * note = what happened to the local branches and what to run}). */
static void push_done(lua_State *L, git_repository *repo, const char *name, const char *url,
                      const pushed *ps, size_t count, const char *note) {
  lua_createtable(L, 0, 2);
  lua_newtable(L);
  int n = 0;
  for (size_t i = 0; i < count; i++) {
    const pushed *p = &ps[i];
    if (!p->reverted) continue;
    char a[8], z[8], o[8], w[8], d[2048];
    rg_short(&p->cur, a);
    rg_short(&p->revert, z);
    rg_short(&p->old, o);
    rg_short(&p->new, w);
    lua_createtable(L, 0, 4);
    rg_rec_set(L, "kind", "git.push");
    rg_rec_set(L, "target", url);
    snprintf(d, sizeof d, "push to %s (%s): %s %s → %s (the revert of %s..%s)", name, url, p->dst,
             a, z, o, w);
    rg_rec_set(L, "describe", d);
    git_commit *c = NULL;
    if (git_commit_lookup(&c, repo, &p->revert) == 0 && git_commit_summary(c) != NULL)
      rg_rec_set(L, "detail", git_commit_summary(c));
    git_commit_free(c);
    git_error_clear();
    lua_rawseti(L, -2, ++n);
  }
  lua_setfield(L, -2, "actions");
  if (note[0] != '\0') rg_rec_set(L, "note", note);
}

/* The undo of git.push (record at 1): takes each pushed ref back by its
 * rule, with a lease on the value the remote has now; refs already back are
 * left. */
int rg_undo_push(lua_State *L) {
  const int rec = 1;
  luaL_checktype(L, rec, LUA_TTABLE);
  lua_settop(L, rec);
  relish_need_git();
  relish_box *b = relish_box_new(L);
  relish_status st = {0};
  const char *path = rg_rec_str(L, rec, "git.push", "repo", 1),
             *name = rg_rec_str(L, rec, "git.push", "remote", 1);
  const char *url = rg_rec_str(L, rec, "git.push", "url", 1);
  git_repository *repo = NULL;
  int rc = git_repository_open(&repo, path);
  if (rc < 0) {
    rg_set_git(&st, rc, path);
    return rg_raise(L, "undo", url, &st);
  }
  relish_box_add(b, repo, rg_free_repo);
  git_remote *remote = NULL;
  char clean[4096];
  /* the named remote when it still goes where the push went (it may hold a
   * password the record does not), else the recorded URL */
  int named = 0;
  if (rg_remote_open(repo, name, &remote, &st) == 0) {
    const char *u =
        git_remote_pushurl(remote) ? git_remote_pushurl(remote) : git_remote_url(remote);
    rg_url_clean(u, clean, sizeof clean);
    if (strcmp(clean, url) != 0) {
      git_remote_free(remote);
      remote = NULL;
    } else {
      named = 1;
    }
  }
  if (remote == NULL && rg_remote_open(repo, url, &remote, &st) != 0)
    return rg_raise(L, "undo", url, &st);
  relish_box_add(b, remote, rg_free_remote);
  rg_auth *auth = NULL;
  if (rg_auth_from_lua(L, b, rec, &auth, &st) != 0) return rg_raise(L, "undo", url, &st);
  const char *ca = rg_rec_str(L, rec, "git.push", "ca", 0); /* the push's CA file */

  if (lua_getfield(L, rec, "refs") != LUA_TTABLE)
    luaL_error(L, "git.undo: malformed git.push undo record: no refs");
  int refs = lua_gettop(L);
  size_t count = (size_t)luaL_len(L, refs);
  pushed *ps = relish_box_add(b, calloc(count + 1, sizeof *ps), rg_free_mem);
  if (ps == NULL) return luaL_error(L, "not enough memory");
  for (size_t i = 0; i < count; i++) {
    if (lua_geti(L, refs, (lua_Integer)i + 1) != LUA_TTABLE)
      luaL_error(L, "git.undo: malformed git.push undo record: a ref is not a table");
    int t = lua_gettop(L);
    ps[i].dst = rg_rec_str(L, t, "git.push", "ref", 1);
    ps[i].rule = rg_rec_str(L, t, "git.push", "rule", 1);
    ps[i].src = rg_rec_str(L, t, "git.push", "src", 0);
    ps[i].has_old = rg_rec_oid(L, t, "git.push", "old", &ps[i].old);
    ps[i].has_new = rg_rec_oid(L, t, "git.push", "new", &ps[i].new);
    lua_pop(L, 1); /* the refs list keeps the strings */
  }

  rg_net *n = rg_net_new(b, auth, ca);
  updates *us = relish_box_add(b, calloc(1, sizeof *us), updates_free);
  if (n == NULL || us == NULL) return luaL_error(L, "not enough memory");
  if (rg_net_connect(n, remote, GIT_DIRECTION_PUSH, &st) != 0) {
    if (rg_net_stopped(n)) return relish_raise_interrupted(L);
    return rg_raise(L, "undo", url, &st);
  }
  char left[1024] = "";
  git_odb *odb = NULL;
  if ((rc = git_repository_odb(&odb, repo)) < 0) {
    rg_set_git(&st, rc, path);
    return rg_raise(L, "undo", url, &st);
  }
  relish_box_add(b, odb, free_odb);
  for (size_t i = 0; i < count; i++) {
    const pushed *p = &ps[i];
    git_oid cur;
    int has_cur = rg_net_remote_value(n, remote, p->dst, &cur);
    if (rg_same_oid(has_cur, &cur, p->has_old, &p->old))
      continue; /* back already, or never moved */
    int is_new = rg_same_oid(has_cur, &cur, p->has_new, &p->new);
    git_oid to;
    int has_to = p->has_old;
    if (p->has_old) to = p->old;
    if (strcmp(p->rule, "revert") == 0 && p->has_old && p->has_new) {
      if (!git_odb_exists(odb, &cur) && fetch_ref(b, remote, auth, ca, p->dst, &st) != 0) {
        if (strcmp(st.kind, "interrupted") == 0) return relish_raise_interrupted(L);
        add_note(left, sizeof left, "%s: cannot fetch it (now %s)", p->dst, &cur);
        continue;
      }
      int desc = is_new || git_graph_descendant_of(repo, &cur, &p->new) == 1;
      git_error_clear();
      if (!desc) {
        add_note(left, sizeof left, "%s was rewritten since (now %s): left as is", p->dst, &cur);
        continue;
      }
      char marker[128], oldhex[GIT_OID_HEXSZ + 1], newhex[GIT_OID_HEXSZ + 1];
      rg_hex(&p->old, oldhex);
      rg_hex(&p->new, newhex);
      snprintf(marker, sizeof marker, "Relish-Revert: %s..%s", oldhex, newhex);
      if (already_reverted(repo, &cur, marker, &p->new)) continue;
      if (revert_commit(repo, p, &cur, &to, &st) != 0) {
        add_note(left, sizeof left, "%s (now %s): the revert conflicts with later commits", p->dst,
                 &cur);
        continue;
      }
      has_to = 1;
      ps[i].reverted = 1;
      ps[i].cur = cur;
      ps[i].revert = to;
    } else if (!is_new) {
      add_note(left, sizeof left, "%s moved since (now %s): left as is", p->dst,
               has_cur ? &cur : NULL);
      continue;
    } else if (p->has_old && !git_odb_exists(odb, &p->old)) {
      add_note(left, sizeof left, "%s: the old value is not in this repository (now %s)", p->dst,
               &cur);
      continue;
    }
    rg_update *u = updates_add(us, p->dst);
    if (u == NULL) return luaL_error(L, "not enough memory");
    u->has_new = has_to;
    u->new = to;
    u->force = strcmp(p->rule, "revert") != 0;
    u->lease = 1;
    u->has_expect = has_cur;
    u->expect = cur;
  }
  if (us->n > 0 && rg_net_push(n, repo, remote, us->v, us->n, &st) != 0) {
    if (rg_net_stopped(n)) return relish_raise_interrupted(L);
    return rg_raise(L, "undo", url, &st);
  }
  /* the remote's name when the undo pushed through it, for the commands */
  const char *label = named ? name : url;
  char note[4096] = "";
  int reverted = 0;
  for (size_t i = 0; i < count; i++) {
    if (!ps[i].reverted) continue;
    reverted = 1;
    follow_revert(repo, label, &ps[i], note, sizeof note);
  }
  if (left[0] != '\0') {
    if (note[0] != '\0') add_text(left, sizeof left, note);
    relish_status_set(&st, "conflict", "%s", left);
    return rg_raise(L, "undo", url, &st);
  }
  if (reverted)
    push_done(L, repo, name, url, ps, count, note);
  else
    lua_pushboolean(L, 1);
  relish_box_release(b);
  return 1;
}
