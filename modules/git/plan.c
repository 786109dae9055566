/* plan.c: the dry-run overlay of relish.git. A planned write acts nowhere,
 * but later steps must keep working against what it would have done: a
 * planned commit moves its branch here, and its objects live in a scratch
 * repository whose object database writes to memory only (a mempack
 * backend), so a tag of the planned commit, a second planned commit on top
 * of it or a planned push of it all compute against it. Nothing reaches the
 * repository's refs or object files. The overlay lasts one gate session. */
#define _GNU_SOURCE
#include "gitint.h"

#include <git2/sys/mempack.h>
#include <git2/sys/odb_backend.h>
#include <stdio.h>
#include <string.h>

#define PLAN_KEY "relish.git.plan"
#define SCRATCH_MT "relish.git.Scratch"

typedef struct {
  git_repository *repo;
} scratch;

static int scratch_gc(lua_State *L) {
  scratch *s = luaL_checkudata(L, 1, SCRATCH_MT);
  if (s->repo != NULL) git_repository_free(s->repo); /* frees the odb and its mempack */
  s->repo = NULL;
  return 0;
}

/* Pushes the plan table of the current session, making it when needed. */
static void push_plan(lua_State *L) {
  lua_Integer session = relish_gate_session();
  if (lua_getfield(L, LUA_REGISTRYINDEX, PLAN_KEY) == LUA_TTABLE) {
    lua_getfield(L, -1, "session");
    int same = lua_tointeger(L, -1) == session;
    lua_pop(L, 1);
    if (same) return;
  }
  lua_pop(L, 1);
  lua_createtable(L, 0, 2);
  lua_pushinteger(L, session);
  lua_setfield(L, -2, "session");
  lua_pushvalue(L, -1);
  lua_setfield(L, LUA_REGISTRYINDEX, PLAN_KEY);
}

int rg_plan_active(lua_State *L) {
  if (relish_gate_dry_run(L)) return 1;
  if (lua_getfield(L, LUA_REGISTRYINDEX, PLAN_KEY) != LUA_TNIL) {
    lua_pushnil(L);
    lua_setfield(L, LUA_REGISTRYINDEX, PLAN_KEY);
  }
  lua_pop(L, 1);
  return 0;
}

/* Pushes the plan entry of repo: {refs = {}, scratch = userdata}. */
static void push_entry(lua_State *L, git_repository *repo) {
  push_plan(L);
  const char *key = git_repository_path(repo);
  if (lua_getfield(L, -1, key) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_createtable(L, 0, 2);
    lua_newtable(L);
    lua_setfield(L, -2, "refs");
    lua_pushvalue(L, -1);
    lua_setfield(L, -3, key);
  }
  lua_remove(L, -2);
}

git_repository *rg_plan_scratch(lua_State *L, git_repository *repo, relish_status *st) {
  push_entry(L, repo);
  if (lua_getfield(L, -1, "scratch") == LUA_TUSERDATA) {
    scratch *s = luaL_checkudata(L, -1, SCRATCH_MT);
    lua_pop(L, 2); /* the plan table keeps it */
    return s->repo;
  }
  lua_pop(L, 1);
  scratch *s = lua_newuserdatauv(L, sizeof *s, 0);
  s->repo = NULL;
  if (luaL_newmetatable(L, SCRATCH_MT)) {
    lua_pushcfunction(L, scratch_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_setmetatable(L, -2);
  const char *at = git_repository_workdir(repo);
  int rc = git_repository_open_ext(&s->repo, at != NULL ? at : git_repository_path(repo),
                                   GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
  git_odb *odb = NULL;
  git_odb_backend *mem = NULL;
  if (rc == 0) rc = git_repository_odb(&odb, s->repo);
  if (rc == 0) rc = git_mempack_new(&mem);
  if (rc == 0) {
    rc = git_odb_add_backend(odb, mem, 1000); /* above every disk backend: writes land here */
    if (rc < 0) mem->free(mem);
  }
  git_odb_free(odb);
  if (rc < 0) {
    rg_set_git(st, rc, "dry-run scratch repository");
    lua_pop(L, 2);
    return NULL;
  }
  lua_setfield(L, -2, "scratch");
  lua_pop(L, 1);
  return s->repo;
}

/* "HEAD" as the plan sees it: the branch it points at, else "HEAD". */
static void plan_name(git_repository *repo, const char *ref, char *out, size_t size) {
  if (strcmp(ref, "HEAD") == 0) {
    char *b = rg_head_ref(repo);
    snprintf(out, size, "%s", b != NULL ? b : "HEAD");
    free(b);
  } else {
    snprintf(out, size, "%s", ref);
  }
}

int rg_plan_ref(lua_State *L, git_repository *repo, const char *ref, git_oid *out) {
  char name[1024];
  plan_name(repo, ref, name, sizeof name);
  push_entry(L, repo);
  lua_getfield(L, -1, "refs");
  int t = lua_getfield(L, -1, name);
  int r = 0;
  if (t == LUA_TSTRING && rg_parse_oid(lua_tostring(L, -1), out) == 0)
    r = 1;
  else if (t == LUA_TBOOLEAN)
    r = -1;
  lua_pop(L, 3);
  return r;
}

void rg_plan_set_ref(lua_State *L, git_repository *repo, const char *ref, const git_oid *id) {
  char name[1024];
  plan_name(repo, ref, name, sizeof name);
  push_entry(L, repo);
  lua_getfield(L, -1, "refs");
  if (id != NULL) {
    char hex[GIT_OID_HEXSZ + 1];
    rg_hex(id, hex);
    lua_pushstring(L, hex);
  } else {
    lua_pushboolean(L, 0);
  }
  lua_setfield(L, -2, name);
  lua_pop(L, 2);
}
