/* read.c: the reads of relish.git that walk more than a ref: status,
 * is_dirty, describe, diff_stat, tree and blob (log.c has log). Reads are never gated; in a
 * dry-run they see the live repository. */
#define _GNU_SOURCE
#include "gitint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void free_status(void *p) { git_status_list_free(p); }
static void free_describe(void *p) { git_describe_result_free(p); }
static void free_patch(void *p) { git_patch_free(p); }

/* ---- status ---- */

static char index_code(unsigned s) {
  if (s & GIT_STATUS_INDEX_NEW) return 'A';
  if (s & GIT_STATUS_INDEX_DELETED) return 'D';
  if (s & GIT_STATUS_INDEX_RENAMED) return 'R';
  if (s & GIT_STATUS_INDEX_TYPECHANGE) return 'T';
  if (s & GIT_STATUS_INDEX_MODIFIED) return 'M';
  return ' ';
}

static char worktree_code(unsigned s) {
  if (s & GIT_STATUS_WT_DELETED) return 'D';
  if (s & GIT_STATUS_WT_RENAMED) return 'R';
  if (s & GIT_STATUS_WT_TYPECHANGE) return 'T';
  if (s & GIT_STATUS_WT_MODIFIED) return 'M';
  return ' ';
}

static int status_list(lua_State *L, relish_box *b, git_repository *repo, int untracked,
                       git_status_list **out, const char *verb) {
  relish_status st = {0};
  if (git_repository_is_bare(repo)) {
    relish_status_set(&st, "invalid", "a bare repository has no work tree");
    return rg_raise(L, verb, NULL, &st);
  }
  git_status_options o;
  git_status_options_init(&o, GIT_STATUS_OPTIONS_VERSION);
  o.show = GIT_STATUS_SHOW_INDEX_AND_WORKDIR;
  o.flags = GIT_STATUS_OPT_RENAMES_HEAD_TO_INDEX | GIT_STATUS_OPT_SORT_CASE_SENSITIVELY;
  if (untracked)
    o.flags |= GIT_STATUS_OPT_INCLUDE_UNTRACKED | GIT_STATUS_OPT_RECURSE_UNTRACKED_DIRS;
  int rc = git_status_list_new(out, repo, &o);
  if (rc < 0) return rg_raise_git(L, verb, NULL, rc);
  relish_box_add(b, *out, free_status);
  return 0;
}

static const char *const status_opts[] = {"untracked", NULL};

/* repo:status({untracked=true}) -> list of {path=, index=, worktree=, from=} */
int l_repo_status(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  relish_checkopts(L, 2, "repo:status", status_opts);
  int untracked = rg_optbool(L, 2, "untracked", 1);
  lua_settop(L, 2);
  relish_box *b = relish_box_new(L);
  git_status_list *list = NULL;
  int r = status_list(L, b, repo, untracked, &list, "status");
  if (r != 0) return r;
  size_t n = git_status_list_entrycount(list);
  lua_createtable(L, (int)n, 0);
  lua_Integer k = 0;
  for (size_t i = 0; i < n; i++) {
    const git_status_entry *e = git_status_byindex(list, i);
    if (e->status == GIT_STATUS_CURRENT || (e->status & GIT_STATUS_IGNORED)) continue;
    char ic[2] = {0}, wc[2] = {0};
    const char *path = NULL, *from = NULL;
    if (e->status & GIT_STATUS_CONFLICTED) {
      ic[0] = wc[0] = 'U';
    } else if (e->status & GIT_STATUS_WT_NEW) {
      ic[0] = wc[0] = '?';
    } else {
      ic[0] = index_code(e->status);
      wc[0] = worktree_code(e->status);
    }
    if (e->head_to_index != NULL) {
      path = e->head_to_index->new_file.path;
      if (e->status & GIT_STATUS_INDEX_RENAMED) from = e->head_to_index->old_file.path;
    }
    if (e->index_to_workdir != NULL && path == NULL) path = e->index_to_workdir->new_file.path;
    if (path == NULL) continue;
    lua_createtable(L, 0, 4);
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    lua_pushstring(L, ic);
    lua_setfield(L, -2, "index");
    lua_pushstring(L, wc);
    lua_setfield(L, -2, "worktree");
    if (from != NULL) {
      lua_pushstring(L, from);
      lua_setfield(L, -2, "from");
    }
    lua_rawseti(L, -2, ++k);
  }
  relish_box_release(b);
  return 1;
}

/* repo:is_dirty({untracked=false}) -> boolean: changes to tracked files,
 * staged or not (untracked files count only when asked). */
int l_repo_is_dirty(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  relish_checkopts(L, 2, "repo:is_dirty", status_opts);
  int untracked = rg_optbool(L, 2, "untracked", 0);
  lua_settop(L, 2);
  relish_box *b = relish_box_new(L);
  git_status_list *list = NULL;
  int r = status_list(L, b, repo, untracked, &list, "is_dirty");
  if (r != 0) return r;
  int dirty = 0;
  size_t n = git_status_list_entrycount(list);
  for (size_t i = 0; i < n && !dirty; i++) {
    unsigned s = git_status_byindex(list, i)->status;
    dirty = s != GIT_STATUS_CURRENT && !(s & GIT_STATUS_IGNORED);
  }
  relish_box_release(b);
  lua_pushboolean(L, dirty);
  return 1;
}

/* ---- describe ---- */

static const char *const describe_opts[] = {"tags", "always", "dirty", "abbrev", "match", NULL};

/* repo:describe({tags=, always=, dirty=, abbrev=, match=}) -> "v1.2.0-3-gabc1234" */
int l_repo_describe(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  relish_checkopts(L, 2, "repo:describe", describe_opts);
  git_describe_options o;
  git_describe_options_init(&o, GIT_DESCRIBE_OPTIONS_VERSION);
  git_describe_format_options f;
  git_describe_format_options_init(&f, GIT_DESCRIBE_FORMAT_OPTIONS_VERSION);
  o.describe_strategy = rg_optbool(L, 2, "tags", 0) ? GIT_DESCRIBE_TAGS : GIT_DESCRIBE_DEFAULT;
  o.show_commit_oid_as_fallback = rg_optbool(L, 2, "always", 0);
  o.pattern = rg_optfield(L, 2, "repo:describe", "match");
  f.abbreviated_size = 7;
  if (lua_istable(L, 2)) {
    lua_getfield(L, 2, "abbrev");
    if (!lua_isnil(L, -1)) {
      lua_Integer a = luaL_checkinteger(L, -1);
      if (a < 0 || a > 40) luaL_error(L, "repo:describe: abbrev must be 0 to 40");
      f.abbreviated_size = (unsigned)a;
    }
    lua_pop(L, 1);
    lua_getfield(L, 2, "dirty");
    if (lua_isstring(L, -1))
      f.dirty_suffix = lua_tostring(L, -1);
    else if (lua_toboolean(L, -1))
      f.dirty_suffix = "-dirty";
    lua_pop(L, 1);
  }
  relish_box *b = relish_box_new(L);
  git_describe_result *res = NULL;
  int rc;
  if (f.dirty_suffix != NULL && !git_repository_is_bare(repo)) {
    rc = git_describe_workdir(&res, repo, &o);
  } else {
    git_object *head = NULL;
    if ((rc = git_revparse_single(&head, repo, "HEAD")) == 0) {
      relish_box_add(b, head, rg_free_object);
      rc = git_describe_commit(&res, head, &o);
    }
  }
  if (rc < 0) {
    relish_status st = {0};
    rg_set_git(&st, rc, NULL);
    const git_error *e = git_error_last();
    if (rc == GIT_ENOTFOUND || (e != NULL && e->klass == GIT_ERROR_DESCRIBE)) st.kind = "not_found";
    return rg_raise(L, "describe", NULL, &st);
  }
  relish_box_add(b, res, free_describe);
  git_buf *buf = relish_box_add(b, calloc(1, sizeof *buf), rg_free_buf);
  if (buf == NULL) return luaL_error(L, "not enough memory");
  if ((rc = git_describe_format(buf, res, &f)) < 0) return rg_raise_git(L, "describe", NULL, rc);
  lua_pushstring(L, buf->ptr);
  relish_box_release(b);
  return 1;
}

/* ---- diff_stat ---- */

static int tree_of(lua_State *L, git_repository *repo, const char *rev, git_tree **out,
                   relish_status *st) {
  git_object *obj = NULL;
  if (rg_resolve(L, repo, repo, rev, GIT_OBJECT_TREE, &obj, st) != 0) return -1;
  *out = (git_tree *)obj;
  return 0;
}

/* repo:diff_stat(a, b) -> {files = {{path=, added=, deleted=, binary=, from=}},
 * added=, deleted=, changed=} between two revisions (b defaults to HEAD) */
int l_repo_diff_stat(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *a = rg_checkstr(L, 2);
  const char *z = rg_optstr(L, 3, "HEAD");
  lua_settop(L, 3);
  relish_box *b = relish_box_new(L);
  relish_status st = {0};
  git_tree *ta = NULL, *tz = NULL;
  if (tree_of(L, repo, a, &ta, &st) != 0) return rg_raise(L, "diff_stat", a, &st);
  relish_box_add(b, ta, rg_free_object);
  if (tree_of(L, repo, z, &tz, &st) != 0) return rg_raise(L, "diff_stat", z, &st);
  relish_box_add(b, tz, rg_free_object);
  git_diff *diff = NULL;
  git_diff_find_options fo;
  git_diff_find_options_init(&fo, GIT_DIFF_FIND_OPTIONS_VERSION);
  fo.flags = GIT_DIFF_FIND_RENAMES;
  int rc = git_diff_tree_to_tree(&diff, repo, ta, tz, NULL);
  if (rc == 0) {
    relish_box_add(b, diff, rg_free_diff);
    rc = git_diff_find_similar(diff, &fo);
  }
  if (rc < 0) return rg_raise_git(L, "diff_stat", a, rc);
  size_t n = git_diff_num_deltas(diff);
  lua_createtable(L, 0, 4);
  lua_createtable(L, (int)n, 0);
  lua_Integer added = 0, deleted = 0;
  for (size_t i = 0; i < n; i++) {
    git_patch *patch = NULL;
    size_t adds = 0, dels = 0;
    if ((rc = git_patch_from_diff(&patch, diff, i)) < 0) return rg_raise_git(L, "diff_stat", a, rc);
    relish_box_add(b, patch, free_patch);
    const git_diff_delta *d = git_diff_get_delta(diff, i);
    int binary = (d->flags & GIT_DIFF_FLAG_BINARY) != 0;
    if (patch != NULL && !binary) git_patch_line_stats(NULL, &adds, &dels, patch);
    lua_createtable(L, 0, 5);
    lua_pushstring(L, d->new_file.path);
    lua_setfield(L, -2, "path");
    if (d->status == GIT_DELTA_RENAMED) {
      lua_pushstring(L, d->old_file.path);
      lua_setfield(L, -2, "from");
    }
    lua_pushinteger(L, (lua_Integer)adds);
    lua_setfield(L, -2, "added");
    lua_pushinteger(L, (lua_Integer)dels);
    lua_setfield(L, -2, "deleted");
    if (binary) {
      lua_pushboolean(L, 1);
      lua_setfield(L, -2, "binary");
    }
    lua_rawseti(L, -2, (lua_Integer)i + 1);
    added += (lua_Integer)adds;
    deleted += (lua_Integer)dels;
    relish_box_drop(b, patch);
  }
  lua_setfield(L, -2, "files");
  lua_pushinteger(L, added);
  lua_setfield(L, -2, "added");
  lua_pushinteger(L, deleted);
  lua_setfield(L, -2, "deleted");
  lua_pushinteger(L, (lua_Integer)n);
  lua_setfield(L, -2, "changed");
  relish_box_release(b);
  return 1;
}

/* ---- tree, blob ---- */

typedef struct {
  lua_State *L;
  lua_Integer n;
} tree_walk;

/* One entry of the walk into the list at the stack top (directories are
 * walked into, not listed). */
static int tree_entry(const char *root, const git_tree_entry *e, void *payload) {
  tree_walk *w = payload;
  git_object_t type = git_tree_entry_type(e);
  if (type == GIT_OBJECT_TREE) return 0;
  lua_State *L = w->L;
  char id[GIT_OID_HEXSZ + 1];
  rg_hex(git_tree_entry_id(e), id);
  lua_createtable(L, 0, 4);
  lua_pushfstring(L, "%s%s", root, git_tree_entry_name(e));
  lua_setfield(L, -2, "path");
  char mode[16];
  snprintf(mode, sizeof mode, "%06o", (unsigned)git_tree_entry_filemode(e));
  lua_pushstring(L, mode);
  lua_setfield(L, -2, "mode");
  lua_pushstring(L, id);
  lua_setfield(L, -2, "id");
  lua_pushstring(L, type == GIT_OBJECT_COMMIT ? "commit" : "blob");
  lua_setfield(L, -2, "type");
  lua_rawseti(L, -2, ++w->n);
  return 0;
}

/* repo:tree(rev) -> {{path=, mode=, id=, type=}, ...}: every file of the
 * tree of rev (a commit, tag or tree), recursively, in the tree's order
 * (directories not listed); mode is octal text ("100644", "100755",
 * "120000" for a symbolic link, "160000" for a submodule, whose type is
 * "commit"). */
int l_repo_tree(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *rev = rg_checkstr(L, 2);
  lua_settop(L, 2);
  relish_box *b = relish_box_new(L);
  relish_status st = {0};
  git_tree *tree = NULL;
  if (tree_of(L, repo, rev, &tree, &st) != 0) return rg_raise(L, "tree", rev, &st);
  relish_box_add(b, tree, rg_free_object);
  lua_newtable(L);
  tree_walk w = {L, 0};
  /* the callback only pushes onto a stack with room (checked per entry) */
  luaL_checkstack(L, 8, "repo:tree");
  int rc = git_tree_walk(tree, GIT_TREEWALK_PRE, tree_entry, &w);
  if (rc < 0) return rg_raise_git(L, "tree", rev, rc);
  relish_box_release(b);
  return 1;
}

/* repo:blob(id) -> the content of the blob id (a full hex id) */
int l_repo_blob(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *hex = rg_checkstr(L, 2);
  lua_settop(L, 2);
  git_oid oid;
  if (rg_parse_oid(hex, &oid) != 0) {
    relish_status st = {0};
    relish_status_set(&st, "invalid", "not a full object id");
    return rg_raise(L, "blob", hex, &st);
  }
  relish_box *b = relish_box_new(L);
  git_blob *blob = NULL;
  int rc = git_blob_lookup(&blob, repo, &oid);
  if (rc < 0) return rg_raise_git(L, "blob", hex, rc);
  relish_box_add(b, blob, rg_free_object);
  lua_pushlstring(L, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob));
  relish_box_release(b);
  return 1;
}
