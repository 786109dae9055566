/* undo.c: the automatic undo of relish.git effects, the providers' undo
 * (the gate dispatches to them by kind; effect.undo(kind, record) too).
 * Each one compares what is there now with what the action left and what
 * was there before: already as before means nothing to do (the action never
 * happened, or the undo ran already); as the action left it means put it
 * back, with a compare-and-swap; anything else was changed by someone since
 * and is left alone, and the undo fails saying so. It acts directly, never
 * through the gate: a rollback is not a new plan. */
#define _GNU_SOURCE
#include "gitint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *rg_rec_str(lua_State *L, int t, const char *kind, const char *key, int required) {
  lua_getfield(L, t, key);
  const char *s = lua_tostring(L, -1);
  lua_pop(L, 1); /* the record keeps it */
  if (s == NULL && required) luaL_error(L, "git.undo: malformed %s undo record: no %s", kind, key);
  return s;
}

int rg_rec_oid(lua_State *L, int t, const char *kind, const char *key, git_oid *out) {
  const char *s = rg_rec_str(L, t, kind, key, 0);
  if (s == NULL) return 0;
  if (rg_parse_oid(s, out) != 0)
    luaL_error(L, "git.undo: malformed %s undo record: bad %s", kind, key);
  return 1;
}

static git_repository *open_repo(lua_State *L, relish_box *b, int t, const char *kind) {
  const char *path = rg_rec_str(L, t, kind, "repo", 1);
  git_repository *repo = NULL;
  int rc = git_repository_open(&repo, path);
  if (rc < 0) {
    relish_status st = {0};
    rg_set_git(&st, rc, path);
    rg_raise(L, "undo", path, &st);
  }
  return relish_box_add(b, repo, rg_free_repo);
}

int rg_same_oid(int pa, const git_oid *a, int pb, const git_oid *b) {
  return pa == pb && (!pa || git_oid_equal(a, b));
}

/* A deleted tag's object may have been pruned since: write it back from the
 * record (the same bytes give the same id). */
static void restore_tag_object(lua_State *L, git_repository *repo, int t, const git_oid *id) {
  git_odb *odb = NULL;
  if (git_repository_odb(&odb, repo) != 0) return;
  if (!git_odb_exists(odb, id)) {
    size_t len;
    lua_getfield(L, t, "object");
    const char *raw = lua_tolstring(L, -1, &len);
    git_oid got;
    if (raw != NULL && git_odb_write(&got, odb, raw, len, GIT_OBJECT_TAG) == 0 &&
        !git_oid_equal(&got, id))
      git_error_clear();
    lua_pop(L, 1);
  }
  git_odb_free(odb);
}

/* tag, delete_tag, branch, delete_branch: one ref from after back to before;
 * forced (relish rollback --force), also from where someone moved it since. */
static int undo_ref(lua_State *L, const char *kind, int t, int force) {
  relish_box *b = relish_box_new(L);
  git_repository *repo = open_repo(L, b, t, kind);
  const char *ref = rg_rec_str(L, t, kind, "ref", 1);
  git_oid before, after, cur;
  int hb = rg_rec_oid(L, t, kind, "before", &before), ha = rg_rec_oid(L, t, kind, "after", &after);
  int rc = git_reference_name_to_id(&cur, repo, ref);
  relish_status st = {0};
  if (rc < 0 && rc != GIT_ENOTFOUND) {
    rg_set_git(&st, rc, ref);
    return rg_raise(L, "undo", ref, &st);
  }
  git_error_clear();
  int hc = rc == 0;
  if (rg_same_oid(hc, &cur, hb, &before)) return 0;
  if (!rg_same_oid(hc, &cur, ha, &after)) {
    char now[8] = "deleted";
    if (hc) rg_short(&cur, now);
    if (!force) {
      relish_status_set(&st, "conflict",
                        "changed since relish set it (now %s): left as is (relish rollback "
                        "--force undoes it)",
                        now);
      return rg_raise(L, "undo", ref, &st);
    }
    after = cur; /* the compare-and-swap is against what is there now */
    ha = hc;
  }
  if (hb) restore_tag_object(L, repo, t, &before);
  if (rg_ref_cas(repo, ref, ha ? &after : NULL, hb ? &before : NULL, "relish: undo", &st) != 0)
    return rg_raise(L, "undo", ref, &st);
  relish_box_release(b);
  return 0;
}

/* Whether the commit was taken back by a revert relish pushed (the undo of a
 * push, which runs first): on the branch, which followed the revert, or on
 * one of its remote-tracking refs, when the branch has commits since (the
 * undo of the push said what to run). Then there is nothing to do here: the
 * branch never goes back behind what the remote has. */
static int reverted_by_push(git_repository *repo, const char *ref, const git_oid *after) {
  char *head = strcmp(ref, "HEAD") == 0 ? rg_head_ref(repo) : NULL;
  const char *name = head != NULL ? head : ref;
  git_oid tip;
  int found = git_reference_name_to_id(&tip, repo, name) == 0 && rg_reverted_on(repo, &tip, after);
  git_error_clear();
  char glob[1100];
  snprintf(glob, sizeof glob, "refs/remotes/*/%s",
           strncmp(name, "refs/heads/", 11) == 0 ? name + 11 : name);
  free(head);
  git_reference_iterator *it = NULL;
  if (!found && git_reference_iterator_glob_new(&it, repo, glob) == 0) {
    git_reference *r = NULL;
    while (!found && git_reference_next(&r, it) == 0) {
      found = git_reference_target(r) != NULL &&
              git_graph_descendant_of(repo, git_reference_target(r), after) == 1 &&
              rg_reverted_on(repo, git_reference_target(r), after);
      git_reference_free(r);
    }
    git_reference_iterator_free(it);
  }
  git_error_clear();
  return found;
}

/* commit, revert: the branch back, then the work tree and index entries that
 * still hold what the action wrote. */
static int undo_commit(lua_State *L, const char *kind, int t, int force) {
  (void)force; /* rg_changes_revert leaves what changed since as is, always */
  relish_box *b = relish_box_new(L);
  git_repository *repo = open_repo(L, b, t, kind);
  const char *ref = rg_rec_str(L, t, kind, "ref", 1);
  git_oid before, after;
  int hb = rg_rec_oid(L, t, kind, "before", &before);
  if (!rg_rec_oid(L, t, kind, "after", &after))
    luaL_error(L, "git.undo: malformed %s undo record: no after", kind);
  rg_changes *c = relish_box_add(b, calloc(1, sizeof *c), rg_changes_free);
  if (c == NULL) return luaL_error(L, "not enough memory");
  lua_getfield(L, t, "changes");
  rg_changes_from_lua(L, -1, c, kind);
  lua_pop(L, 1);
  relish_status st = {0};
  if (reverted_by_push(repo, ref, &after)) {
    relish_box_release(b);
    return 0;
  }
  if (rg_changes_revert(repo, c, ref, hb ? &before : NULL, &after, &st) != 0)
    return rg_raise(L, "undo", ref, &st);
  relish_box_release(b);
  return 0;
}

/* The providers' undo(record, opts) -> true; each raises when it cannot
 * undo. opts.force: a ref moved since the run is moved back all the same. */
static int undo_kind(lua_State *L, const char *kind,
                     int (*undo)(lua_State *L, const char *kind, int t, int force)) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int force = 0;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "force");
    force = lua_toboolean(L, -1);
  }
  lua_settop(L, 1);
  relish_need_git();
  undo(L, kind, 1, force);
  lua_settop(L, 1);
  lua_pushboolean(L, 1);
  return 1;
}

int rg_undo_tag(lua_State *L) { return undo_kind(L, "git.tag", undo_ref); }
int rg_undo_delete_tag(lua_State *L) { return undo_kind(L, "git.delete_tag", undo_ref); }
int rg_undo_branch(lua_State *L) { return undo_kind(L, "git.branch", undo_ref); }
int rg_undo_delete_branch(lua_State *L) { return undo_kind(L, "git.delete_branch", undo_ref); }
int rg_undo_commit(lua_State *L) { return undo_kind(L, "git.commit", undo_commit); }
int rg_undo_revert(lua_State *L) { return undo_kind(L, "git.revert", undo_commit); }
