/* commit.c: the commit and revert effects of relish.git. Both compute the
 * whole result first in a repository handle of their own (in a dry-run the
 * plan's scratch repository, whose objects stay in memory): the new tree,
 * the commit object, and the change set (work tree files, index entries,
 * the branch) with every value before and after. Then they hand the gate the
 * action, with that change set as the undo record; only its apply touches
 * the work tree, the index and the branch, in that order (changes.c). A
 * revert that conflicts stops before the gate: nothing is half applied. */
#define _GNU_SOURCE
#include "gitint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- shared ---- */

/* The prepared request of a commit or revert (its action's struct); a.repo
 * is the user's handle, its C resources are in a.box. */
typedef struct {
  rg_action a;
  const char *verb;
  git_repository *work; /* where the result is computed */
  char *ref;            /* "refs/heads/main", or "HEAD" when detached */
  int has_before, reverting;
  git_oid before, after;
  git_tree *before_tree, *after_tree;
  rg_changes *changes;
  char target[4096 + 1100], describe[1024], fingerprint[1200], reflog[1200];
} commit_job;

/* The work handle: in a dry-run the plan's scratch repository, else a new
 * handle on the same repository (its index is private until acting). */
static int open_work(lua_State *L, relish_box *b, commit_job *j, relish_status *st) {
  if (git_repository_is_bare(j->a.repo))
    return relish_status_set(st, "invalid", "a bare repository has no work tree to %s in", j->verb);
  if (rg_plan_active(L)) {
    j->work = rg_plan_scratch(L, j->a.repo, st);
    return j->work != NULL ? 0 : -1;
  }
  int rc = git_repository_open_ext(&j->work, git_repository_workdir(j->a.repo),
                                   GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
  if (rc < 0) return rg_set_git(st, rc, "open");
  relish_box_add(b, j->work, rg_free_repo);
  return 0;
}

/* The branch the new commit goes on and its current value. */
static int find_branch(lua_State *L, relish_box *b, commit_job *j, relish_status *st) {
  char *head = rg_head_ref(j->a.repo);
  j->ref = relish_box_add(b, head != NULL ? head : strdup("HEAD"), rg_free_mem);
  if (j->ref == NULL) return relish_status_set(st, "io", "not enough memory");
  int rc = rg_ref_value(L, j->a.repo, j->ref, &j->before);
  if (rc < 0) return rg_set_git(st, rc, j->ref);
  j->has_before = rc;
  if (j->has_before) {
    git_commit *c = NULL;
    if ((rc = git_commit_lookup(&c, j->work, &j->before)) == 0) {
      rc = git_commit_tree(&j->before_tree, c);
      git_commit_free(c);
    }
    if (rc < 0) return rg_set_git(st, rc, j->ref);
    relish_box_add(b, j->before_tree, rg_free_object);
  }
  return 0;
}

static void push_hex_id(lua_State *L, const git_oid *id) {
  char hex[GIT_OID_HEXSZ + 1];
  rg_hex(id, hex);
  lua_pushstring(L, hex);
}

static const char *branch_label(const char *ref) {
  if (strncmp(ref, "refs/heads/", 11) == 0) return ref + 11;
  return strcmp(ref, "HEAD") == 0 ? "detached HEAD" : ref;
}

/* apply: the work tree, the index, then the branch (changes.c). */
static int apply_commit_job(lua_State *L, const char *kind) {
  commit_job *j = rg_action_check(L, 1, kind);
  relish_status st = {0};
  if (rg_changes_apply(j->work, j->changes, j->ref, j->has_before ? &j->before : NULL, &j->after,
                       j->reflog, &st) != 0) {
    if (strcmp(st.kind, "interrupted") == 0) return relish_raise_interrupted(L);
    return rg_raise(L, j->verb, branch_label(j->ref), &st);
  }
  push_hex_id(L, &j->after);
  relish_box_release(j->a.box);
  return 1;
}

/* plan: the dry-run view has the branch at the new commit; after a revert
 * the scratch index holds its tree, so later planned commits build on it
 * (a commit staged its own on the scratch index already). */
static int plan_commit_job(lua_State *L, const char *kind) {
  commit_job *j = rg_action_check(L, 1, kind);
  rg_plan_set_ref(L, j->a.repo, j->ref, &j->after);
  if (j->reverting) {
    git_index *sidx = NULL;
    if (git_repository_index(&sidx, j->work) == 0) git_index_read_tree(sidx, j->after_tree);
    git_index_free(sidx);
    git_error_clear();
  }
  push_hex_id(L, &j->after);
  relish_box_release(j->a.box);
  return 1;
}

static int apply_commit(lua_State *L) { return apply_commit_job(L, "git.commit"); }
static int plan_commit(lua_State *L) { return plan_commit_job(L, "git.commit"); }
static int apply_revert(lua_State *L) { return apply_commit_job(L, "git.revert"); }
static int plan_revert(lua_State *L) { return plan_commit_job(L, "git.revert"); }

static const char *const commit_fields[] = {"repo", "ref", "after", "changes", NULL};

const relish_provider rg_commit_providers[] = {{.kind = "git.commit",
                                                .apply = apply_commit,
                                                .plan = plan_commit,
                                                .undo = rg_undo_commit,
                                                .fields = commit_fields},
                                               {.kind = "git.revert",
                                                .apply = apply_revert,
                                                .plan = plan_revert,
                                                .undo = rg_undo_revert,
                                                .fields = commit_fields},
                                               {NULL}};

/* Describe, record (the change set), and hand the action at act to the
 * gate: the result is the commit id. */
static int finish(lua_State *L, relish_box *b, commit_job *j, int act, const char *message,
                  const char *what) {
  char from[8], to[8], summary[160], line[80], label[4096];
  char *detail = relish_box_add(
      b, rg_diffstat_text(j->work, j->before_tree, j->after_tree, summary, sizeof summary),
      rg_free_mem);
  if (detail == NULL) return luaL_error(L, "not enough memory");
  size_t n = strcspn(message, "\n");
  if (n > 60)
    snprintf(line, sizeof line, "%.57s...", message);
  else
    snprintf(line, sizeof line, "%.*s", (int)n, message);
  rg_short(&j->after, to);
  if (j->has_before) rg_short(&j->before, from);
  snprintf(j->describe, sizeof j->describe, "%s on %s %s → %s \"%s\" (%s)", what,
           branch_label(j->ref), j->has_before ? from : "(no commits yet)", to, line, summary);
  snprintf(j->reflog, sizeof j->reflog, "%s: %s", j->verb, line);

  lua_createtable(L, 0, 6);
  int rec = lua_gettop(L);
  lua_pushinteger(L, 1);
  lua_setfield(L, rec, "v");
  rg_rec_set(L, "repo", git_repository_path(j->a.repo));
  rg_rec_set(L, "ref", j->ref);
  rg_rec_set_oid(L, "after", &j->after);
  if (j->has_before) rg_rec_set_oid(L, "before", &j->before);
  rg_changes_push(L, j->changes);
  lua_setfield(L, rec, "changes");
  char before[GIT_OID_HEXSZ + 1];
  if (j->has_before) rg_hex(&j->before, before);
  snprintf(j->fingerprint, sizeof j->fingerprint, "%s=%s", j->ref,
           j->has_before ? before : "absent");
  snprintf(j->target, sizeof j->target, "%s:%s", rg_label(j->a.repo, label, sizeof label), j->ref);
  return relish_effect_run(L, &(relish_action){.kind = j->a.kind,
                                               .target = j->target,
                                               .describe = j->describe,
                                               .detail = detail[0] != '\0' ? detail : NULL,
                                               .fingerprint = j->fingerprint,
                                               .record = rec,
                                               .arg = act});
}

static int make_commit(commit_job *j, relish_box *b, const git_signature *author,
                       const git_signature *committer, const char *message, relish_status *st) {
  const git_commit *parents[1];
  git_commit *parent = NULL;
  int rc = 0;
  if (j->has_before) {
    if ((rc = git_commit_lookup(&parent, j->work, &j->before)) < 0)
      return rg_set_git(st, rc, "parent");
    relish_box_add(b, parent, rg_free_object);
    parents[0] = parent;
  }
  rc = git_commit_create(&j->after, j->work, NULL, author, committer, NULL, message, j->after_tree,
                         j->has_before ? 1 : 0, parents);
  relish_box_drop(b, parent);
  return rc < 0 ? rg_set_git(st, rc, "commit") : 0;
}

/* ---- commit ---- */

/* The index entries as they are now, sorted by path (the index keeps them so). */
typedef struct {
  char *path;
  git_oid id;
  uint32_t mode;
} snap_entry;

typedef struct {
  snap_entry *v;
  size_t n;
} snapshot;

static void snapshot_free(void *p) {
  snapshot *s = p;
  for (size_t i = 0; i < s->n; i++)
    free(s->v[i].path);
  free(s->v);
  free(s);
}

static snapshot *take_snapshot(git_index *idx) {
  snapshot *s = calloc(1, sizeof *s);
  size_t n = git_index_entrycount(idx);
  if (s == NULL || (n > 0 && (s->v = calloc(n, sizeof *s->v)) == NULL)) {
    free(s);
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    const git_index_entry *e = git_index_get_byindex(idx, i);
    if (e == NULL || GIT_INDEX_ENTRY_STAGE(e) != 0) continue;
    snap_entry *se = &s->v[s->n];
    if ((se->path = strdup(e->path)) == NULL) {
      snapshot_free(s);
      return NULL;
    }
    se->id = e->id;
    se->mode = e->mode;
    s->n++;
  }
  return s;
}

/* The index changes between two snapshots (both sorted by path). */
static int diff_snapshots(const snapshot *a, const snapshot *z, rg_changes *c) {
  size_t i = 0, k = 0;
  while (i < a->n || k < z->n) {
    int cmp = i >= a->n ? 1 : k >= z->n ? -1 : strcmp(a->v[i].path, z->v[k].path);
    const snap_entry *x = cmp <= 0 ? &a->v[i] : NULL, *y = cmp >= 0 ? &z->v[k] : NULL;
    if (x == NULL || y == NULL || x->mode != y->mode || !git_oid_equal(&x->id, &y->id)) {
      rg_change *ch = rg_changes_add(c, x != NULL ? x->path : y->path);
      if (ch == NULL) return -1;
      ch->ix = 1;
      if (x != NULL) ch->ix_before = (rg_side){.present = 1, .id = x->id, .mode = x->mode};
      if (y != NULL) ch->ix_after = (rg_side){.present = 1, .id = y->id, .mode = y->mode};
    }
    if (cmp <= 0) i++;
    if (cmp >= 0) k++;
  }
  return 0;
}

static rg_change *find_change(rg_changes *c, const char *path) {
  for (size_t i = 0; i < c->n; i++)
    if (strcmp(c->v[i].path, path) == 0) return &c->v[i];
  return NULL;
}

/* A path of files= or add=: relative, inside the work tree, not in .git. */
static void check_path(lua_State *L, const char *field, const char *p) {
  const char *why = NULL;
  if (p[0] == '\0')
    why = "is empty";
  else if (p[0] == '/')
    why = "must be relative to the work tree";
  else {
    for (const char *s = p; *s && why == NULL;) {
      size_t n = strcspn(s, "/");
      if ((n == 2 && strncmp(s, "..", 2) == 0) || (n == 1 && s[0] == '.') || n == 0)
        why = "may not contain '.', '..' or empty components";
      else if (n == 4 && strncasecmp(s, ".git", 4) == 0)
        why = "may not reach into .git";
      s += n;
      if (*s == '/') s++;
    }
  }
  if (why != NULL) luaL_error(L, "repo:commit: %s path '%s' %s", field, p, why);
}

static const char *const commit_opts[] = {"files", "add", "message", "author", "allow_empty", NULL};

/* Checks files= and add= (misuse raises) before anything is acquired. */
static void check_commit_args(lua_State *L) {
  if (lua_getfield(L, 2, "files") != LUA_TNIL) {
    if (!lua_istable(L, -1))
      luaL_error(L, "repo:commit: field 'files' must be a table path → content");
    lua_pushnil(L);
    while (lua_next(L, -2) != 0) {
      if (lua_type(L, -2) != LUA_TSTRING) luaL_error(L, "repo:commit: files keys must be paths");
      if (lua_type(L, -1) != LUA_TSTRING)
        luaL_error(L, "repo:commit: files['%s'] must be a string, got %s", lua_tostring(L, -2),
                   luaL_typename(L, -1));
      check_path(L, "files", lua_tostring(L, -2));
      lua_pop(L, 1);
    }
  }
  lua_pop(L, 1);
  int t = lua_getfield(L, 2, "add");
  if (t == LUA_TTABLE) {
    lua_Integer n = luaL_len(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
      if (lua_geti(L, -1, i) != LUA_TSTRING)
        luaL_error(L, "repo:commit: add[%d] must be a path", (int)i);
      check_path(L, "add", lua_tostring(L, -1));
      lua_pop(L, 1);
    }
  } else if (t == LUA_TSTRING) {
    check_path(L, "add", lua_tostring(L, -1));
  } else if (t != LUA_TNIL && t != LUA_TBOOLEAN) {
    luaL_error(L, "repo:commit: field 'add' must be a list of paths or true");
  }
  lua_pop(L, 1);
  if (lua_getfield(L, 2, "author") != LUA_TNIL) {
    if (!lua_istable(L, -1)) luaL_error(L, "repo:commit: field 'author' must be {name=, email=}");
    rg_optfield(L, lua_gettop(L), "repo:commit author", "name");
    rg_optfield(L, lua_gettop(L), "repo:commit author", "email");
  }
  lua_pop(L, 1);
}

/* Stages add= on the work index: like `git add -A PATHS` (true: everything). */
static int stage_add(lua_State *L, relish_box *b, git_index *idx, relish_status *st) {
  int t = lua_getfield(L, 2, "add");
  if (t == LUA_TNIL || (t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
    lua_pop(L, 1);
    return 0;
  }
  git_strarray spec = {0};
  char **paths = NULL;
  if (t != LUA_TBOOLEAN) {
    lua_Integer n = t == LUA_TSTRING ? 1 : luaL_len(L, -1);
    paths = relish_box_add(b, calloc((size_t)n + 1, sizeof *paths), rg_free_mem);
    if (paths == NULL) return luaL_error(L, "not enough memory");
    for (lua_Integer i = 1; i <= n; i++) {
      if (t == LUA_TTABLE) lua_geti(L, -1, i);
      paths[i - 1] = (char *)lua_tostring(L, -1); /* kept alive by the options table */
      if (t == LUA_TTABLE) lua_pop(L, 1);
    }
    spec.strings = paths;
    spec.count = (size_t)n;
  }
  lua_pop(L, 1);
  int rc = git_index_add_all(idx, &spec, GIT_INDEX_ADD_DEFAULT, NULL, NULL);
  if (rc == 0) rc = git_index_update_all(idx, &spec, NULL, NULL);
  relish_box_drop(b, paths);
  return rc < 0 ? rg_set_git(st, rc, "add") : 0;
}

/* The file files= replaces, kept as a blob so an undo can put it back (it
 * may be untracked or hold local changes no object has). */
static int keep_preimage(commit_job *j, const char *path, const rg_side *now, relish_status *st) {
  char full[4096];
  git_oid id;
  int rc;
  snprintf(full, sizeof full, "%s%s", git_repository_workdir(j->a.repo), path);
  if (now->mode == 0120000) {
    char target[4096];
    ssize_t n = readlink(full, target, sizeof target);
    if (n < 0) return relish_status_set(st, "io", "%s: %s", path, strerror(errno));
    rc = git_blob_create_from_buffer(&id, j->work, target, (size_t)n);
  } else {
    rc = git_blob_create_from_disk(&id, j->work, full);
  }
  if (rc < 0) return rg_set_git(st, rc, path);
  if (!git_oid_equal(&id, &now->id))
    return relish_status_set(st, "conflict", "%s changed while committing", path);
  return 0;
}

/* Stages files= on the work index and records their work tree changes. */
static int stage_files(lua_State *L, commit_job *j, git_index *idx, rg_changes *wt,
                       relish_status *st) {
  if (lua_getfield(L, 2, "files") != LUA_TTABLE) {
    lua_pop(L, 1);
    return 0;
  }
  lua_pushnil(L);
  while (lua_next(L, -2) != 0) {
    size_t len;
    const char *path = lua_tostring(L, -2), *data = lua_tolstring(L, -1, &len);
    rg_side now;
    int rc = rg_wt_read(j->a.repo, path, &now, st);
    if (rc < 0) return -1;
    if (now.present && now.mode == 040000)
      return relish_status_set(st, "invalid", "%s is a directory", path);
    if (now.present && keep_preimage(j, path, &now, st) != 0) return -1;
    rg_change *ch = rg_changes_add(wt, path);
    if (ch == NULL) return luaL_error(L, "not enough memory");
    ch->wt = 1;
    ch->wt_before = now;
    ch->wt_after.present = 1;
    ch->wt_after.mode = now.present && now.mode == 0100755 ? 0100755 : 0100644;
    if ((rc = git_blob_create_from_buffer(&ch->wt_after.id, j->work, data, len)) < 0)
      return rg_set_git(st, rc, path);
    git_index_entry e;
    memset(&e, 0, sizeof e);
    e.path = path;
    e.mode = ch->wt_after.mode;
    e.id = ch->wt_after.id;
    if ((rc = git_index_add(idx, &e)) < 0) return rg_set_git(st, rc, path);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  return 0;
}

/* author = {name=, email=} or the configured identity */
static int author_of(lua_State *L, relish_box *b, git_repository *repo, git_signature **out,
                     relish_status *st) {
  const char *name = NULL, *email = NULL;
  if (lua_getfield(L, 2, "author") == LUA_TTABLE) {
    name = rg_optfield(L, lua_gettop(L), "repo:commit author", "name");
    email = rg_optfield(L, lua_gettop(L), "repo:commit author", "email");
  }
  lua_pop(L, 1);
  git_signature *dflt = NULL;
  if ((name == NULL || email == NULL) && rg_signature(repo, 1, &dflt, st) != 0) return -1;
  relish_box_add(b, dflt, rg_free_sig);
  int rc = git_signature_now(out, name ? name : dflt->name, email ? email : dflt->email);
  relish_box_drop(b, dflt);
  if (rc < 0) return rg_set_git(st, rc, "author");
  relish_box_add(b, *out, rg_free_sig);
  return 0;
}

/* repo:commit{files=, add=, message=, author=, allow_empty=} -> id */
int l_repo_commit(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  relish_checkopts(L, 2, "repo:commit", commit_opts);
  const char *message = rg_optfield(L, 2, "repo:commit", "message");
  if (message == NULL || message[0] == '\0')
    return luaL_error(L, "repo:commit: field 'message' is required");
  check_commit_args(L);
  int allow_empty = rg_optbool(L, 2, "allow_empty", 0);
  lua_settop(L, 2);
  relish_box *b = relish_box_new(L); /* 3 */
  relish_status st = {0};
  commit_job *j = rg_action_new(L, sizeof *j, "git.commit", 3, 1); /* 4 */
  j->verb = "commit";
  git_index *idx = NULL;
  if (open_work(L, b, j, &st) != 0 || find_branch(L, b, j, &st) != 0)
    return rg_raise(L, "commit", NULL, &st);
  int rc = git_repository_index(&idx, j->work);
  if (rc < 0) return rg_raise_git(L, "commit", "index", rc);
  relish_box_add(b, idx, rg_free_index);
  if (git_index_has_conflicts(idx)) {
    relish_status_set(&st, "conflict", "the index has unmerged paths: resolve them first");
    return rg_raise(L, "commit", branch_label(j->ref), &st);
  }
  snapshot *pre = relish_box_add(b, take_snapshot(idx), snapshot_free);
  rg_changes *wt = relish_box_add(b, calloc(1, sizeof *wt), rg_changes_free);
  j->changes = relish_box_add(b, calloc(1, sizeof *j->changes), rg_changes_free);
  if (pre == NULL || wt == NULL || j->changes == NULL) return luaL_error(L, "not enough memory");
  /* add= first: files= then overrides what the work tree holds for its paths */
  if (stage_add(L, b, idx, &st) != 0 || stage_files(L, j, idx, wt, &st) != 0)
    return rg_raise(L, "commit", branch_label(j->ref), &st);
  snapshot *post = relish_box_add(b, take_snapshot(idx), snapshot_free);
  if (post == NULL || diff_snapshots(pre, post, j->changes) != 0)
    return luaL_error(L, "not enough memory");
  for (size_t i = 0; i < wt->n; i++) {
    if (rg_side_eq(&wt->v[i].wt_before, &wt->v[i].wt_after)) continue; /* already there */
    rg_change *ch = find_change(j->changes, wt->v[i].path);
    if (ch == NULL && (ch = rg_changes_add(j->changes, wt->v[i].path)) == NULL)
      return luaL_error(L, "not enough memory");
    ch->wt = 1;
    ch->wt_before = wt->v[i].wt_before;
    ch->wt_after = wt->v[i].wt_after;
  }
  git_oid tree_id;
  if ((rc = git_index_write_tree(&tree_id, idx)) < 0) return rg_raise_git(L, "commit", "tree", rc);
  if ((rc = git_tree_lookup(&j->after_tree, j->work, &tree_id)) < 0)
    return rg_raise_git(L, "commit", "tree", rc);
  relish_box_add(b, j->after_tree, rg_free_object);
  if (!allow_empty && (j->before_tree != NULL ? git_oid_equal(&tree_id, git_tree_id(j->before_tree))
                                              : git_index_entrycount(idx) == 0)) {
    relish_status_set(&st, "invalid", "nothing to commit");
    rg_push_error(L, "commit", branch_label(j->ref), &st);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "empty");
    return lua_error(L);
  }
  git_signature *author = NULL, *committer = NULL;
  if (author_of(L, b, repo, &author, &st) != 0 || rg_signature(repo, 0, &committer, &st) != 0)
    return rg_raise(L, "commit", branch_label(j->ref), &st);
  relish_box_add(b, committer, rg_free_sig);
  char *msg = relish_box_add(b, rg_clean_message(message), rg_free_mem);
  if (msg == NULL) return luaL_error(L, "not enough memory");
  if (make_commit(j, b, author, committer, msg, &st) != 0)
    return rg_raise(L, "commit", branch_label(j->ref), &st);
  return finish(L, b, j, 4, msg, "commit");
}

/* ---- revert ---- */

/* Paths as a list under "files" on the error at the stack top. */
static void set_files(lua_State *L, char **paths, size_t n) {
  lua_createtable(L, (int)n, 0);
  for (size_t i = 0; i < n; i++) {
    lua_pushstring(L, paths[i]);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
  lua_setfield(L, -2, "files");
}

typedef struct {
  char **v;
  size_t n, cap;
} pathlist;

static void pathlist_free(void *p) {
  pathlist *l = p;
  for (size_t i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  free(l);
}

static int pathlist_add(pathlist *l, const char *path) {
  if (l->n > 0 && strcmp(l->v[l->n - 1], path) == 0) return 0;
  char **v = relish_grow(l->v, l->n, &l->cap, sizeof *v, 8);
  if (v == NULL) return -1;
  l->v = v;
  if ((l->v[l->n] = strdup(path)) == NULL) return -1;
  l->n++;
  return 0;
}

/* Raises {kind = "conflict", files = {...}}. */
static int fail_files(lua_State *L, const char *target, relish_status *st, pathlist *l) {
  rg_push_error(L, "revert", target, st);
  set_files(L, l->v, l->n);
  return lua_error(L);
}

static int conflicted_paths(git_index *idx, pathlist *l) {
  git_index_conflict_iterator *it = NULL;
  const git_index_entry *anc, *ours, *theirs;
  if (git_index_conflict_iterator_new(&it, idx) < 0) return -1;
  int rc = 0;
  while (rc == 0 && git_index_conflict_next(&anc, &ours, &theirs, it) == 0) {
    const git_index_entry *e = ours ? ours : theirs ? theirs : anc;
    rc = pathlist_add(l, e->path);
  }
  git_index_conflict_iterator_free(it);
  git_error_clear();
  return rc;
}

/* Changes from the tree diff before -> after: work tree and index alike. */
static int tree_changes(commit_job *j, relish_status *st) {
  git_diff *diff = NULL;
  git_diff_options o;
  git_diff_options_init(&o, GIT_DIFF_OPTIONS_VERSION);
  o.flags = GIT_DIFF_INCLUDE_TYPECHANGE;
  int rc = git_diff_tree_to_tree(&diff, j->work, j->before_tree, j->after_tree, &o);
  if (rc < 0) return rg_set_git(st, rc, "diff");
  size_t n = git_diff_num_deltas(diff);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const git_diff_delta *d = git_diff_get_delta(diff, i);
    if (d->old_file.mode == GIT_FILEMODE_COMMIT || d->new_file.mode == GIT_FILEMODE_COMMIT) {
      rc = relish_status_set(st, "invalid", "%s: submodules are not supported", d->new_file.path);
      break;
    }
    rg_change *ch = rg_changes_add(j->changes, d->new_file.path);
    if (ch == NULL) {
      rc = relish_status_set(st, "io", "not enough memory");
      break;
    }
    rg_side a = {0}, z = {0};
    if (d->status != GIT_DELTA_ADDED) a = (rg_side){1, d->old_file.id, d->old_file.mode};
    if (d->status != GIT_DELTA_DELETED) z = (rg_side){1, d->new_file.id, d->new_file.mode};
    ch->wt = ch->ix = 1;
    ch->wt_before = ch->ix_before = a;
    ch->wt_after = ch->ix_after = z;
  }
  git_diff_free(diff);
  return rc < 0 ? -1 : 0;
}

/* Every path the revert writes must hold the branch's version in the work
 * tree and the index, or local work would be overwritten. */
static int check_clean(commit_job *j, pathlist *dirty, relish_status *st) {
  git_index *idx = NULL;
  int rc = git_repository_index(&idx, j->a.repo);
  if (rc == 0) rc = git_index_read(idx, 0);
  if (rc < 0) {
    git_index_free(idx);
    return rg_set_git(st, rc, "index");
  }
  for (size_t i = 0; rc == 0 && i < j->changes->n; i++) {
    const rg_change *ch = &j->changes->v[i];
    rg_side now;
    if (rg_wt_read(j->a.repo, ch->path, &now, st) < 0) {
      rc = -1;
      break;
    }
    const git_index_entry *e = git_index_get_bypath(idx, ch->path, 0);
    rg_side in = {.present = e != NULL};
    if (e != NULL) {
      in.id = e->id;
      in.mode = e->mode;
    }
    if ((!rg_side_eq(&now, &ch->wt_before) || !rg_side_eq(&in, &ch->ix_before)) &&
        pathlist_add(dirty, ch->path) != 0)
      rc = relish_status_set(st, "io", "not enough memory");
  }
  git_index_free(idx);
  return rc;
}

static const char *const revert_opts[] = {"message", "mainline", NULL};

/* repo:revert(rev, {message=, mainline=}) -> id; a conflict raises kind
 * "conflict" with files, and nothing is touched */
int l_repo_revert(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *rev = rg_checkstr(L, 2);
  relish_checkopts(L, 3, "repo:revert", revert_opts);
  const char *message = rg_optfield(L, 3, "repo:revert", "message");
  lua_Integer mainline = 0;
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "mainline");
    if (!lua_isnil(L, -1)) {
      int isint = 0;
      mainline = lua_tointegerx(L, -1, &isint);
      if (!isint || mainline < 1)
        luaL_error(L, "repo:revert: mainline must be a parent number (1, 2, ...)");
    }
  }
  lua_settop(L, 3);
  relish_box *b = relish_box_new(L); /* 4 */
  relish_status st = {0};
  commit_job *j = rg_action_new(L, sizeof *j, "git.revert", 4, 1); /* 5 */
  j->verb = "revert";
  j->reverting = 1;
  if (open_work(L, b, j, &st) != 0 || find_branch(L, b, j, &st) != 0)
    return rg_raise(L, "revert", rev, &st);
  if (!j->has_before) {
    relish_status_set(&st, "invalid", "%s has no commits to revert on", branch_label(j->ref));
    return rg_raise(L, "revert", rev, &st);
  }
  git_object *obj = NULL;
  if (rg_resolve(L, repo, j->work, rev, GIT_OBJECT_COMMIT, &obj, &st) != 0)
    return rg_raise(L, "revert", rev, &st);
  git_commit *theirs = relish_box_add(b, obj, rg_free_object), *ours = NULL;
  if (git_commit_parentcount(theirs) > 1 && mainline == 0) {
    relish_status_set(&st, "invalid",
                      "is a merge commit: give mainline = the parent number to keep");
    return rg_raise(L, "revert", rev, &st);
  }
  int rc = git_commit_lookup(&ours, j->work, &j->before);
  if (rc < 0) return rg_raise_git(L, "revert", rev, rc);
  relish_box_add(b, ours, rg_free_object);
  git_merge_options mo;
  git_merge_options_init(&mo, GIT_MERGE_OPTIONS_VERSION);
  git_index *ridx = NULL;
  if ((rc = git_revert_commit(&ridx, j->work, theirs, ours, (unsigned)mainline, &mo)) < 0)
    return rg_raise_git(L, "revert", rev, rc);
  relish_box_add(b, ridx, rg_free_index);
  pathlist *files = relish_box_add(b, calloc(1, sizeof *files), pathlist_free);
  j->changes = relish_box_add(b, calloc(1, sizeof *j->changes), rg_changes_free);
  if (files == NULL || j->changes == NULL) return luaL_error(L, "not enough memory");
  if (git_index_has_conflicts(ridx)) {
    if (conflicted_paths(ridx, files) != 0) return luaL_error(L, "not enough memory");
    relish_status_set(&st, "conflict",
                      "reverting it conflicts with later changes in %zu file%s; nothing changed",
                      files->n, files->n == 1 ? "" : "s");
    return fail_files(L, rev, &st, files);
  }
  git_oid tree_id;
  if ((rc = git_index_write_tree_to(&tree_id, ridx, j->work)) < 0)
    return rg_raise_git(L, "revert", rev, rc);
  if ((rc = git_tree_lookup(&j->after_tree, j->work, &tree_id)) < 0)
    return rg_raise_git(L, "revert", rev, rc);
  relish_box_add(b, j->after_tree, rg_free_object);
  if (git_oid_equal(&tree_id, git_tree_id(j->before_tree))) {
    relish_status_set(&st, "invalid", "nothing to revert: its changes are not in %s",
                      branch_label(j->ref));
    rg_push_error(L, "revert", rev, &st);
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "empty");
    return lua_error(L);
  }
  if (tree_changes(j, &st) != 0) return rg_raise(L, "revert", rev, &st);
  git_oid planned_head;
  int dry = rg_plan_active(L);
  if (!dry || rg_plan_ref(L, repo, j->ref, &planned_head) == 0) {
    if (check_clean(j, files, &st) != 0) return rg_raise(L, "revert", rev, &st);
    if (files->n > 0) {
      relish_status_set(&st, "conflict",
                        "local changes would be overwritten (%s%s); nothing changed", files->v[0],
                        files->n > 1 ? ", ..." : "");
      return fail_files(L, rev, &st, files);
    }
  }
  char *msg;
  if (message != NULL) {
    msg = relish_box_add(b, rg_clean_message(message), rg_free_mem);
  } else {
    char hex[GIT_OID_HEXSZ + 1], buf[2048];
    const char *sum = git_commit_summary(theirs);
    rg_hex(git_commit_id(theirs), hex);
    snprintf(buf, sizeof buf, "Revert \"%s\"\n\nThis reverts commit %s.\n", sum ? sum : "", hex);
    msg = relish_box_add(b, strdup(buf), rg_free_mem);
  }
  if (msg == NULL) return luaL_error(L, "not enough memory");
  git_signature *author = NULL, *committer = NULL;
  if (rg_signature(repo, 1, &author, &st) != 0) return rg_raise(L, "revert", rev, &st);
  relish_box_add(b, author, rg_free_sig);
  if (rg_signature(repo, 0, &committer, &st) != 0) return rg_raise(L, "revert", rev, &st);
  relish_box_add(b, committer, rg_free_sig);
  if (make_commit(j, b, author, committer, msg, &st) != 0) return rg_raise(L, "revert", rev, &st);
  char what[64], sh[8];
  rg_short(git_commit_id(theirs), sh);
  snprintf(what, sizeof what, "revert %s", sh);
  return finish(L, b, j, 5, msg, what);
}
