/* journal.c: the SQLite journal's native side. A thin binding (exec/query
 * with bound parameters) serves the SQLite backend in stdlib/relish/journal.lua,
 * which owns the schema and all other SQL; the gate's two hot writes (an
 * action's row and its mark) are prepared statements here. WAL; an action's "pending" row
 * is committed with synchronous=FULL, so it is on disk before the action
 * starts; other commits (step status, events) use NORMAL and ride along. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sqlite3.h>

#include "hostint.h"

#define JOURNAL_MT "relish.Journal"

/* The files the journal is, as this connection found them: another process
 * deleting, replacing or truncating them under a live run is noticed at the
 * run's next durable write (journal_verify). */
typedef struct {
  int known;
  dev_t dev;
  ino_t ino;
} file_id;

struct relish_journal {
  sqlite3 *db;
  sqlite3_stmt *ins, *upd;
  int durable; /* current synchronous setting is FULL */
  file_id main, wal;
  off_t size;        /* the main file's size at the last check: it never shrinks */
  char broken[4352]; /* set once the files were found changed: every later check fails */
};

relish_journal *relish_journal_check(lua_State *L, int idx) {
  relish_journal *j = luaL_checkudata(L, idx, JOURNAL_MT);
  if (!j->db) luaL_error(L, "journal is closed");
  return j;
}

const char *relish_journal_filename(relish_journal *j) {
  const char *f = j && j->db ? sqlite3_db_filename(j->db, "main") : NULL;
  return f && *f ? f : NULL;
}

/* A SQLite error that says the file is not a sound database. */
static int is_corrupt(int rc) {
  rc &= 0xff;
  return rc == SQLITE_CORRUPT || rc == SQLITE_NOTADB;
}

/* Raises the error of a damaged journal: {kind="journal", exit=2,
 * corrupt=true}. The same exit code for every command (usage or invalid
 * input: the journal cannot be read, so nothing is done). */
static int raise_corrupt(lua_State *L, relish_journal *j) {
  const char *path = relish_journal_filename(j);
  relish_push_error(L, "journal",
                    "journal %s is damaged (%s): move it away or restore it from a backup "
                    "(sqlite3 %s .recover salvages what is left)",
                    path ? path : "?", sqlite3_errmsg(j->db), path ? path : "FILE");
  lua_pushinteger(L, RELISH_EXIT_USAGE);
  lua_setfield(L, -2, "exit");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "corrupt");
  return lua_error(L);
}

static int same_file(const file_id *id, const struct stat *st) {
  return id->dev == st->st_dev && id->ino == st->st_ino;
}

/* Checks that the journal's files are still the ones this connection
 * writes: the main file neither replaced nor shrunk, the write-ahead log
 * (where every commit since the last checkpoint lives) neither deleted nor
 * replaced. Two stat calls. Returns 0, or -1 with j->broken set (and kept:
 * the record of the run can no longer be trusted to survive). When only the
 * log went, what it holds is first checkpointed into the main file, so the
 * run's record survives a crash. */
static int journal_verify(relish_journal *j) {
  if (j->broken[0]) return -1;
  const char *path = relish_journal_filename(j);
  if (!path) return 0; /* in memory */
  struct stat st;
  if (stat(path, &st) != 0 || (j->main.known && !same_file(&j->main, &st))) {
    snprintf(j->broken, sizeof j->broken, "the journal file %s was deleted or replaced", path);
    return -1;
  }
  if (!j->main.known) j->main = (file_id){1, st.st_dev, st.st_ino};
  if (st.st_size < j->size) {
    snprintf(j->broken, sizeof j->broken,
             "the journal file %s was truncated (from %lld to %lld bytes)", path,
             (long long)j->size, (long long)st.st_size);
    return -1;
  }
  j->size = st.st_size;
  char wal[4096];
  snprintf(wal, sizeof wal, "%s-wal", path);
  if (stat(wal, &st) != 0 || (j->wal.known && !same_file(&j->wal, &st))) {
    if (!j->wal.known && errno == ENOENT) return 0; /* not made yet */
    snprintf(j->broken, sizeof j->broken,
             "the journal's write-ahead log %s was deleted or replaced", wal);
    sqlite3_wal_checkpoint_v2(j->db, "main", SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return -1;
  }
  if (!j->wal.known) j->wal = (file_id){1, st.st_dev, st.st_ino};
  return 0;
}

static int mkdirs(const char *path) {
  char buf[4096];
  size_t n = strlen(path);
  if (n >= sizeof buf) return -1;
  memcpy(buf, path, n + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0700) != 0 && errno != EEXIST) return -1;
    *p = '/';
  }
  return 0;
}

static void journal_free(relish_journal *j) {
  if (!j->db) return;
  sqlite3_finalize(j->ins);
  sqlite3_finalize(j->upd);
  sqlite3_close_v2(j->db);
  j->db = NULL;
  j->ins = j->upd = NULL;
}

static int l_journal_close(lua_State *L) {
  journal_free(luaL_checkudata(L, 1, JOURNAL_MT));
  return 0;
}

static int set_durable(relish_journal *j, int on) {
  if (j->durable == on) return SQLITE_OK;
  j->durable = on;
  /* NORMAL in WAL mode: a commit survives a crash of the process, and is
   * synced to disk by the next FULL commit or checkpoint */
  return sqlite3_exec(j->db, on ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL", 0, 0, 0);
}

/* open(path [, create_dirs]) -> journal | nil, err */
static int l_journal_open(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int create_dirs = lua_toboolean(L, 2);
  relish_journal *j = lua_newuserdatauv(L, sizeof *j, 0);
  memset(j, 0, sizeof *j);
  luaL_setmetatable(L, JOURNAL_MT);
  if (create_dirs && strcmp(path, ":memory:") != 0 && mkdirs(path) != 0)
    return relish_fail(L, "io", "journal: cannot create the directory of %s: %s", path,
                       strerror(errno));
  if (sqlite3_open_v2(path, &j->db,
                      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX,
                      NULL) != SQLITE_OK) {
    const char *msg = j->db ? sqlite3_errmsg(j->db) : "out of memory";
    lua_pushfstring(L, "journal: cannot open %s: %s", path, msg);
    journal_free(j);
    return relish_fail(L, "io", "%s", lua_tostring(L, -1));
  }
  sqlite3_busy_timeout(j->db, 30000);
  char *err = NULL;
  int rc = sqlite3_exec(
      j->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;", 0, 0,
      &err);
  if (rc != SQLITE_OK) {
    sqlite3_free(err);
    if (is_corrupt(rc)) return raise_corrupt(L, j);
    lua_pushfstring(L, "journal: %s: %s", path, sqlite3_errmsg(j->db));
    journal_free(j);
    return relish_fail(L, "io", "%s", lua_tostring(L, -1));
  }
  j->durable = 0;
  journal_verify(j); /* the files as they are now */
  return 1;
}

static int bind_args(lua_State *L, sqlite3_stmt *st, int first) {
  int n = lua_gettop(L) - first + 1;
  for (int i = 0; i < n; i++) {
    int idx = first + i, rc;
    switch (lua_type(L, idx)) {
    case LUA_TNIL:
      rc = sqlite3_bind_null(st, i + 1);
      break;
    case LUA_TBOOLEAN:
      rc = sqlite3_bind_int(st, i + 1, lua_toboolean(L, idx));
      break;
    case LUA_TNUMBER:
      rc = lua_isinteger(L, idx) ? sqlite3_bind_int64(st, i + 1, lua_tointeger(L, idx))
                                 : sqlite3_bind_double(st, i + 1, lua_tonumber(L, idx));
      break;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      rc = sqlite3_bind_text(st, i + 1, s, (int)len, SQLITE_TRANSIENT);
      break;
    }
    default:
      return -(i + 1);
    }
    if (rc != SQLITE_OK) return -(i + 1);
  }
  return 0;
}

/* Runs sql with parameters 3..; with rows set, pushes the result rows. */
static int run_sql(lua_State *L, int rows) {
  relish_journal *j = relish_journal_check(L, 1);
  const char *sql = luaL_checkstring(L, 2);
  sqlite3_stmt *st = NULL;
  int prc = sqlite3_prepare_v2(j->db, sql, -1, &st, NULL);
  if (prc != SQLITE_OK) {
    if (is_corrupt(prc)) return raise_corrupt(L, j);
    return relish_raise(L, "journal", "journal: %s in: %s", sqlite3_errmsg(j->db), sql);
  }
  int b = bind_args(L, st, 3);
  if (b < 0) {
    sqlite3_finalize(st);
    return luaL_error(L, "journal: parameter %d has an unsupported type", -b);
  }
  if (rows) lua_newtable(L);
  int rc, n = 0, ncol = sqlite3_column_count(st);
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    if (!rows) continue;
    if (!lua_checkstack(L, 4)) break;
    lua_createtable(L, 0, ncol);
    for (int c = 0; c < ncol; c++) {
      switch (sqlite3_column_type(st, c)) {
      case SQLITE_INTEGER:
        lua_pushinteger(L, sqlite3_column_int64(st, c));
        break;
      case SQLITE_FLOAT:
        lua_pushnumber(L, sqlite3_column_double(st, c));
        break;
      case SQLITE_NULL:
        continue;
      default:
        lua_pushlstring(L, (const char *)sqlite3_column_text(st, c),
                        (size_t)sqlite3_column_bytes(st, c));
      }
      lua_setfield(L, -2, sqlite3_column_name(st, c));
    }
    lua_seti(L, -2, ++n);
  }
  if (rc != SQLITE_DONE) {
    lua_pushstring(L, sqlite3_errmsg(j->db));
    int busy = rc == SQLITE_BUSY || rc == SQLITE_LOCKED;
    sqlite3_finalize(st);
    if (is_corrupt(sqlite3_errcode(j->db)) || is_corrupt(rc)) return raise_corrupt(L, j);
    return relish_raise(L, busy ? "busy" : "journal", "journal: %s", lua_tostring(L, -1));
  }
  sqlite3_finalize(st);
  if (rows) return 1;
  lua_pushinteger(L, sqlite3_changes(j->db));
  return 1;
}

/* ---- the reserve: room for a rollback's own rows on a full disk ---------- */

static int reserve_path(relish_journal *j, char out[4096]) {
  const char *f = relish_journal_filename(j);
  if (f == NULL) return -1;
  int n = snprintf(out, 4096, "%s.reserve", f);
  return n > 0 && n < 4096 ? 0 : -1;
}

/* reserve(bytes) -> true | nil, err: keeps bytes of disk next to the journal
 * (JOURNAL.reserve, allocated, not sparse), so a rollback that finds the disk
 * full can free them and still journal what it undoes */
static int l_journal_reserve(lua_State *L) {
  relish_journal *j = relish_journal_check(L, 1);
  lua_Integer bytes = luaL_checkinteger(L, 2);
  char path[4096];
  if (reserve_path(j, path) != 0)
    return relish_fail(L, "io", "journal: no file to reserve space next to");
  struct stat sb;
  if (stat(path, &sb) == 0 && sb.st_size >= bytes) {
    lua_pushboolean(L, 1);
    return 1;
  }
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return relish_fail(L, "io", "journal: %s: %s", path, strerror(errno));
  int rc = bytes > 0 ? posix_fallocate(fd, 0, (off_t)bytes) : 0;
  if (rc == 0 && fsync(fd) != 0) rc = errno;
  close(fd);
  if (rc != 0) {
    unlink(path); /* half a reserve would only take the room it was meant to keep */
    return relish_fail(L, "io", "journal: %s: %s", path, strerror(rc));
  }
  lua_pushboolean(L, 1);
  return 1;
}

/* release_reserve() -> true when there was one to free */
static int l_journal_release_reserve(lua_State *L) {
  relish_journal *j = relish_journal_check(L, 1);
  char path[4096];
  lua_pushboolean(L, reserve_path(j, path) == 0 && unlink(path) == 0);
  return 1;
}

static int l_journal_exec(lua_State *L) { return run_sql(L, 0); }
static int l_journal_query(lua_State *L) { return run_sql(L, 1); }

/* script(sql): several statements, no parameters (schema migrations) */
static int l_journal_script(lua_State *L) {
  relish_journal *j = relish_journal_check(L, 1);
  char *err = NULL;
  int rc = sqlite3_exec(j->db, luaL_checkstring(L, 2), 0, 0, &err);
  if (rc != SQLITE_OK) {
    lua_pushstring(L, err ? err : "error");
    sqlite3_free(err);
    if (is_corrupt(rc)) return raise_corrupt(L, j);
    return relish_raise(L, "journal", "journal: %s", lua_tostring(L, -1));
  }
  return 0;
}

static int l_journal_last_id(lua_State *L) {
  relish_journal *j = relish_journal_check(L, 1);
  lua_pushinteger(L, sqlite3_last_insert_rowid(j->db));
  return 1;
}

/* db:verify(): raises {kind="journal", exit=3, tampered=true} when the
 * journal's files were deleted, replaced or truncated since the connection
 * opened them: what the run did may not be recorded, a person must look. */
static int l_journal_verify(lua_State *L) {
  relish_journal *j = relish_journal_check(L, 1);
  if (journal_verify(j) == 0) return 0;
  relish_push_error(L, "journal", "%s while this command was running: its record may be lost",
                    j->broken);
  lua_pushinteger(L, RELISH_EXIT_INCOMPLETE);
  lua_setfield(L, -2, "exit");
  lua_pushboolean(L, 1);
  lua_setfield(L, -2, "tampered");
  return lua_error(L);
}

static int l_journal_durable(lua_State *L) {
  relish_journal *j = relish_journal_check(L, 1);
  set_durable(j, lua_toboolean(L, 2));
  return 0;
}

/* ---- the gate's writes -------------------------------------------------- */

static int fail_with(relish_journal *j, char **err) {
  if (err) *err = strdup(sqlite3_errmsg(j->db));
  return -1;
}

int relish_journal_action_begin(relish_journal *j, const char *run_id, lua_Integer step,
                                lua_Integer seq, const relish_action_row *e, const char *status,
                                int durable, char **err) {
  if (!j->ins &&
      sqlite3_prepare_v2(j->db,
                         "INSERT INTO actions (run_id, seq, step, kind, target, describe, detail,"
                         " undo, fingerprint, irreversible, status, provider, started_at)"
                         " VALUES (?,?,?,?,?,?,?,?,?,?,?,?, strftime('%Y-%m-%dT%H:%M:%fZ','now'))",
                         -1, &j->ins, NULL) != SQLITE_OK)
    return fail_with(j, err);
  /* the pending row must be on disk before the action starts (syncing the
   * WAL also makes every earlier commit of this run durable), in the files
   * the run started with */
  if (durable && journal_verify(j) != 0) {
    if (err) *err = strdup(j->broken);
    return -1;
  }
  if (set_durable(j, durable) != SQLITE_OK) return fail_with(j, err);
  sqlite3_stmt *st = j->ins;
  sqlite3_reset(st);
  sqlite3_bind_text(st, 1, run_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, seq);
  sqlite3_bind_int64(st, 3, step);
  sqlite3_bind_text(st, 4, e->kind, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, e->target, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 6, e->describe, -1, SQLITE_STATIC);
  if (e->detail)
    sqlite3_bind_text(st, 7, e->detail, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 7);
  if (e->undo)
    sqlite3_bind_text(st, 8, e->undo, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 8);
  if (e->fingerprint)
    sqlite3_bind_text(st, 9, e->fingerprint, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 9);
  sqlite3_bind_int(st, 10, e->irreversible);
  sqlite3_bind_text(st, 11, status, -1, SQLITE_STATIC);
  if (e->provider)
    sqlite3_bind_text(st, 12, e->provider, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 12);
  int rc = sqlite3_step(st);
  sqlite3_clear_bindings(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : fail_with(j, err);
}

int relish_journal_action_end(relish_journal *j, const char *run_id, lua_Integer seq,
                              const char *status, const char *result, const char *error,
                              char **err) {
  if (!j->upd && sqlite3_prepare_v2(j->db,
                                    "UPDATE actions SET status = ?, result = ?, error = ?,"
                                    " finished_at = strftime('%Y-%m-%dT%H:%M:%fZ','now')"
                                    " WHERE run_id = ? AND seq = ?",
                                    -1, &j->upd, NULL) != SQLITE_OK)
    return fail_with(j, err);
  /* losing a "done" mark in a crash only leaves the action in doubt, which
   * the undo handles: no need to wait for the disk here */
  if (set_durable(j, 0) != SQLITE_OK) return fail_with(j, err);
  sqlite3_stmt *st = j->upd;
  sqlite3_reset(st);
  sqlite3_bind_text(st, 1, status, -1, SQLITE_STATIC);
  if (result)
    sqlite3_bind_text(st, 2, result, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 2);
  if (error)
    sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
  else
    sqlite3_bind_null(st, 3);
  sqlite3_bind_text(st, 4, run_id, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 5, seq);
  int rc = sqlite3_step(st);
  sqlite3_clear_bindings(st);
  sqlite3_reset(st);
  return rc == SQLITE_DONE ? 0 : fail_with(j, err);
}

/* The gate's two writes for the Lua side (journal:action_begin/action_end):
 * the same prepared statements the gate uses. */
static const char *optfield(lua_State *L, int t, const char *k) {
  lua_getfield(L, t, k);
  const char *s = lua_isnil(L, -1) ? NULL : luaL_checkstring(L, -1);
  lua_pop(L, 1); /* the string stays alive in the table */
  return s;
}

/* db:action_begin(run_id, step, seq, {kind=, target=, describe=, ...}, status, durable) */
static int l_journal_action_begin(lua_State *L) {
  relish_journal *j = relish_journal_check(L, 1);
  const char *run_id = luaL_checkstring(L, 2);
  lua_Integer step = luaL_checkinteger(L, 3), seq = luaL_checkinteger(L, 4);
  luaL_checktype(L, 5, LUA_TTABLE);
  const char *status = luaL_checkstring(L, 6);
  relish_action_row r = {.kind = optfield(L, 5, "kind"),
                         .provider = optfield(L, 5, "provider"),
                         .target = optfield(L, 5, "target"),
                         .describe = optfield(L, 5, "describe"),
                         .detail = optfield(L, 5, "detail"),
                         .fingerprint = optfield(L, 5, "fingerprint"),
                         .undo = optfield(L, 5, "undo")};
  /* irreversible when the row says so, else when it has no undo record */
  r.irreversible =
      lua_getfield(L, 5, "irreversible") == LUA_TNIL ? r.undo == NULL : lua_toboolean(L, -1);
  lua_pop(L, 1);
  if (!r.kind || !r.target || !r.describe)
    return luaL_error(L, "action_begin: kind, target and describe are required");
  char *err = NULL;
  if (relish_journal_action_begin(j, run_id, step, seq, &r, status, lua_toboolean(L, 7), &err)) {
    lua_pushstring(L, err ? err : "?");
    free(err);
    return relish_raise(L, "journal", "journal: %s", lua_tostring(L, -1));
  }
  return 0;
}

/* db:action_end(run_id, seq, status [, result [, error]]) */
static int l_journal_action_end(lua_State *L) {
  relish_journal *j = relish_journal_check(L, 1);
  const char *run_id = luaL_checkstring(L, 2);
  lua_Integer seq = luaL_checkinteger(L, 3);
  const char *status = luaL_checkstring(L, 4);
  const char *result = luaL_optstring(L, 5, NULL), *error = luaL_optstring(L, 6, NULL);
  char *err = NULL;
  if (relish_journal_action_end(j, run_id, seq, status, result, error, &err)) {
    lua_pushstring(L, err ? err : "?");
    free(err);
    return relish_raise(L, "journal", "journal: %s", lua_tostring(L, -1));
  }
  return 0;
}

int luaopen_relish__journal(lua_State *L) {
  static const luaL_Reg methods[] = {{"exec", l_journal_exec},
                                     {"query", l_journal_query},
                                     {"script", l_journal_script},
                                     {"last_id", l_journal_last_id},
                                     {"durable", l_journal_durable},
                                     {"verify", l_journal_verify},
                                     {"action_begin", l_journal_action_begin},
                                     {"action_end", l_journal_action_end},
                                     {"close", l_journal_close},
                                     {"reserve", l_journal_reserve},
                                     {"release_reserve", l_journal_release_reserve},
                                     {NULL, NULL}};
  if (relish_resource_metatable(L, JOURNAL_MT, l_journal_close, methods)) {
    lua_pushliteral(L, "journal");
    lua_setfield(L, -2, "__name");
  }
  lua_pop(L, 1);
  lua_newtable(L);
  lua_pushcfunction(L, l_journal_open);
  lua_setfield(L, -2, "open");
  return 1;
}
