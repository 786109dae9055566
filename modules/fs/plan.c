/* plan.c: what earlier planned effects of a dry-run leave behind. A dry-run
 * does not act, so a chmod planned after a planned write would see no file;
 * effects (never reads: reads see the live world) consult this overlay so
 * their pre-images and fingerprints are what apply will meet. The providers'
 * plan functions (effects.c) write it; the effects' pre-stat reads it. */
#define _GNU_SOURCE
#include "fsint.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

/* Registry key of the overlay: {[path] = {t=, mode=, content=, target=,
 * fresh=}, [1] = the gate session it belongs to}. fresh marks what the plan creates or
 * replaces, as opposed to a chmod of something live. */
static const char plan_key = 'p';

static void plan_forget(lua_State *L) {
  lua_pushnil(L);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &plan_key);
}

/* Pushes the overlay (creating it) or returns 0 with nothing pushed. */
static int plan_table(lua_State *L, int create) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &plan_key) == LUA_TTABLE) return 1;
  lua_pop(L, 1);
  if (!create) return 0;
  lua_newtable(L);
  lua_pushvalue(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &plan_key);
  return 1;
}

int fs_plan_active(lua_State *L) {
  if (relish_gate_dry_run(L)) return 1;
  plan_forget(L); /* a dry-run, if any, is over */
  return 0;
}

void fs_plan_open(lua_State *L) {
  /* What an earlier dry-run (another gate session) planned never happened. */
  lua_Integer now = relish_gate_session();
  plan_table(L, 1);
  int isint;
  lua_rawgeti(L, -1, 1);
  lua_Integer last = lua_tointegerx(L, -1, &isint);
  lua_pop(L, 2);
  if (isint && now != last) plan_forget(L);
  plan_table(L, 1);
  lua_pushinteger(L, now);
  lua_rawseti(L, -2, 1);
  lua_pop(L, 1);
}

void fs_plan_set(lua_State *L, const char *path, const char *type, mode_t mode, const char *data,
                 size_t len, const char *target, int fresh) {
  plan_table(L, 1);
  int t = lua_gettop(L);
  if (strcmp(type, "absent") == 0 || strcmp(type, "file") == 0 || strcmp(type, "link") == 0) {
    /* whatever was planned below path is gone with it */
    size_t pl = strlen(path);
    lua_pushnil(L);
    while (lua_next(L, t) != 0) {
      lua_pop(L, 1);
      size_t kl;
      const char *k = lua_type(L, -1) == LUA_TSTRING ? lua_tolstring(L, -1, &kl) : NULL;
      if (k != NULL && kl > pl && k[pl] == '/' && memcmp(k, path, pl) == 0) {
        lua_pushvalue(L, -1);
        lua_pushnil(L);
        lua_rawset(L, t);
      }
    }
  }
  lua_createtable(L, 0, 5);
  lua_pushstring(L, type);
  lua_setfield(L, -2, "t");
  lua_pushinteger(L, (lua_Integer)mode);
  lua_setfield(L, -2, "mode");
  if (data != NULL) {
    lua_pushlstring(L, data, len);
    lua_setfield(L, -2, "content");
  }
  if (target != NULL) {
    lua_pushstring(L, target);
    lua_setfield(L, -2, "target");
  }
  lua_pushboolean(L, fresh);
  lua_setfield(L, -2, "fresh");
  lua_setfield(L, t, path);
  lua_settop(L, t - 1);
}

void fs_plan_set_mode(lua_State *L, const char *path, const struct stat *live, mode_t mode) {
  plan_table(L, 1);
  if (lua_getfield(L, -1, path) == LUA_TTABLE) {
    lua_pushinteger(L, (lua_Integer)mode);
    lua_setfield(L, -2, "mode");
    lua_pop(L, 2);
    return;
  }
  lua_pop(L, 2);
  fs_plan_set(L, path,
              S_ISDIR(live->st_mode)   ? "dir"
              : S_ISLNK(live->st_mode) ? "link"
                                       : "file",
              mode, NULL, 0, NULL, 0);
}

static int type_bits(const char *t) {
  return strcmp(t, "dir") == 0 ? S_IFDIR : strcmp(t, "link") == 0 ? S_IFLNK : S_IFREG;
}

/* Fill p from the overlay entry on the stack top (popped). */
static int from_entry(lua_State *L, const char *path, fs_pre *p, relish_status *st) {
  lua_getfield(L, -1, "t");
  const char *t = lua_tostring(L, -1);
  lua_getfield(L, -2, "fresh");
  int fresh = lua_toboolean(L, -1);
  lua_getfield(L, -3, "mode");
  mode_t mode = (mode_t)lua_tointeger(L, -1);
  lua_pop(L, 3);
  p->planned = 1;
  if (t == NULL || strcmp(t, "absent") == 0) {
    lua_pop(L, 1);
    return 0;
  }
  if (!fresh) { /* a planned chmod of something live */
    if (lstat(path, &p->sb) != 0) {
      lua_pop(L, 1);
      return errno == ENOENT || errno == ENOTDIR ? 0 : relish_status_errno(st, errno, NULL);
    }
    p->exists = 1;
    p->sb.st_mode = (p->sb.st_mode & ~(mode_t)07777) | mode;
    lua_pop(L, 1);
    return 0;
  }
  p->exists = 1;
  p->fresh = 1;
  memset(&p->sb, 0, sizeof p->sb);
  p->sb.st_mode = (mode_t)type_bits(t) | mode;
  p->sb.st_uid = geteuid();
  p->sb.st_gid = getegid();
  if (lua_getfield(L, -1, "content") == LUA_TSTRING) /* anchored by the overlay */
    p->content = lua_tolstring(L, -1, &p->len);
  lua_pop(L, 1);
  p->sb.st_size = (off_t)p->len;
  if (lua_getfield(L, -1, "target") == LUA_TSTRING) p->target = lua_tostring(L, -1);
  lua_pop(L, 2);
  return 0;
}

int fs_pre_stat(lua_State *L, const char *path, fs_pre *p, relish_status *st) {
  memset(p, 0, sizeof *p);
  if (fs_plan_active(L) && plan_table(L, 0)) {
    int t = lua_gettop(L);
    if (lua_getfield(L, t, path) == LUA_TTABLE) {
      int rc = from_entry(L, path, p, st);
      lua_settop(L, t - 1);
      return rc;
    }
    lua_pop(L, 1);
    /* the nearest ancestor the plan creates, removes or replaces decides */
    char anc[PATH_MAX];
    snprintf(anc, sizeof anc, "%s", path);
    for (char *slash; (slash = strrchr(anc, '/')) != NULL && slash != anc;) {
      *slash = '\0';
      if (lua_getfield(L, t, anc) == LUA_TTABLE) {
        lua_getfield(L, -1, "fresh");
        int fresh = lua_toboolean(L, -1);
        lua_getfield(L, -2, "t");
        int absent = lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "absent") == 0;
        if (fresh || absent) {
          p->planned = 1; /* nothing planned at path itself: it does not exist */
          lua_settop(L, t - 1);
          return 0;
        }
      }
      lua_settop(L, t);
    }
    lua_settop(L, t - 1);
  }
  return fs_live_stat(path, p, st);
}

int fs_live_stat(const char *path, fs_pre *p, relish_status *st) {
  memset(p, 0, sizeof *p);
  if (lstat(path, &p->sb) == 0) {
    p->exists = 1;
    return 0;
  }
  if (errno == ENOENT || errno == ENOTDIR) return 0;
  return relish_status_errno(st, errno, NULL);
}
