/* changes.c: what a commit or a revert does besides making objects: work
 * tree files, index entries and one ref, each with its value before and
 * after. Acting writes the after sides and moves the ref last; undoing moves
 * the ref back only from the value relish made, and puts back only the
 * files and entries that still hold what relish wrote, so an undo is right
 * whether the action finished, stopped half way (a crash) or never began,
 * and running it twice is running it once. Also ref compare-and-swap and
 * the diffstat shown in plans. */
#define _GNU_SOURCE
#include "gitint.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- the list ---- */

void rg_changes_free(void *p) {
  rg_changes *c = p;
  for (size_t i = 0; i < c->n; i++)
    free(c->v[i].path);
  free(c->v);
  free(c);
}

rg_change *rg_changes_add(rg_changes *c, const char *path) {
  rg_change *v = relish_grow(c->v, c->n, &c->cap, sizeof *v, 16);
  if (v == NULL) return NULL;
  c->v = v;
  rg_change *ch = &c->v[c->n];
  memset(ch, 0, sizeof *ch);
  if ((ch->path = strdup(path)) == NULL) return NULL;
  c->n++;
  return ch;
}

static void push_side(lua_State *L, const rg_side *s) {
  char mode[16];
  snprintf(mode, sizeof mode, "%06o", (unsigned)s->mode);
  lua_createtable(L, 0, 2);
  rg_rec_set_oid(L, "id", &s->id);
  rg_rec_set(L, "mode", mode);
}

/* key = {before = side, after = side}, an absent side left out */
static void set_pair(lua_State *L, const char *key, const rg_side *before, const rg_side *after) {
  lua_createtable(L, 0, 2);
  if (before->present) {
    push_side(L, before);
    lua_setfield(L, -2, "before");
  }
  if (after->present) {
    push_side(L, after);
    lua_setfield(L, -2, "after");
  }
  lua_setfield(L, -2, key);
}

void rg_changes_push(lua_State *L, const rg_changes *c) {
  luaL_checkstack(L, 8, "git changes");
  lua_createtable(L, c->n < INT_MAX ? (int)c->n : 0, 0);
  for (size_t i = 0; i < c->n; i++) {
    const rg_change *ch = &c->v[i];
    lua_createtable(L, 0, 3);
    rg_rec_set(L, "path", ch->path);
    if (ch->wt) set_pair(L, "wt", &ch->wt_before, &ch->wt_after);
    if (ch->ix) set_pair(L, "ix", &ch->ix_before, &ch->ix_after);
    lua_rawseti(L, -2, (lua_Integer)i + 1);
  }
}

static void malformed(lua_State *L, const char *kind, const char *what) {
  luaL_error(L, "git.undo: malformed %s undo record: %s", kind, what);
}

static void side_from_lua(lua_State *L, int pair, const char *key, rg_side *s, const char *kind) {
  memset(s, 0, sizeof *s);
  if (lua_getfield(L, pair, key) == LUA_TTABLE) {
    lua_getfield(L, -1, "id");
    lua_getfield(L, -2, "mode");
    const char *id = lua_tostring(L, -2), *mode = lua_tostring(L, -1);
    char *end = NULL;
    unsigned long m = mode != NULL ? strtoul(mode, &end, 8) : 0;
    if (id == NULL || rg_parse_oid(id, &s->id) != 0 || mode == NULL || *end != '\0' || m == 0)
      malformed(L, kind, "a change without id or mode");
    s->present = 1;
    s->mode = (uint32_t)m;
    lua_pop(L, 2);
  }
  lua_pop(L, 1);
}

void rg_changes_from_lua(lua_State *L, int idx, rg_changes *c, const char *kind) {
  idx = lua_absindex(L, idx);
  if (lua_type(L, idx) != LUA_TTABLE) malformed(L, kind, "no changes list");
  lua_Integer n = luaL_len(L, idx);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, idx, i) != LUA_TTABLE) malformed(L, kind, "a change is not a table");
    int t = lua_gettop(L);
    lua_getfield(L, t, "path");
    const char *path = lua_tostring(L, -1);
    if (path == NULL || path[0] == '\0' || path[0] == '/')
      malformed(L, kind, "a change without path");
    rg_change *ch = rg_changes_add(c, path);
    if (ch == NULL) luaL_error(L, "not enough memory");
    lua_pop(L, 1);
    if (lua_getfield(L, t, "wt") == LUA_TTABLE) {
      ch->wt = 1;
      side_from_lua(L, lua_gettop(L), "before", &ch->wt_before, kind);
      side_from_lua(L, lua_gettop(L), "after", &ch->wt_after, kind);
    }
    lua_pop(L, 1);
    if (lua_getfield(L, t, "ix") == LUA_TTABLE) {
      ch->ix = 1;
      side_from_lua(L, lua_gettop(L), "before", &ch->ix_before, kind);
      side_from_lua(L, lua_gettop(L), "after", &ch->ix_after, kind);
    }
    lua_pop(L, 2);
  }
}

int rg_side_eq(const rg_side *a, const rg_side *b) {
  if (a->present != b->present) return 0;
  return !a->present || (a->mode == b->mode && git_oid_equal(&a->id, &b->id));
}

/* ---- the work tree ---- */

static int wt_path(git_repository *repo, const char *path, char out[PATH_MAX], relish_status *st) {
  const char *wd = git_repository_workdir(repo);
  if (wd == NULL) return relish_status_set(st, "invalid", "a bare repository has no work tree");
  if (snprintf(out, PATH_MAX, "%s%s", wd, path) >= PATH_MAX)
    return relish_status_set(st, "invalid", "%s: path too long", path);
  return 0;
}

int rg_wt_read(git_repository *repo, const char *path, rg_side *out, relish_status *st) {
  char full[PATH_MAX];
  struct stat sb;
  memset(out, 0, sizeof *out);
  if (wt_path(repo, path, full, st) != 0) return -1;
  if (lstat(full, &sb) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return 0;
    return relish_status_set(st, "io", "%s: %s", path, strerror(errno));
  }
  out->present = 1;
  int rc = 0;
  if (S_ISDIR(sb.st_mode)) {
    out->mode = 040000;
  } else if (S_ISLNK(sb.st_mode)) {
    char target[PATH_MAX];
    ssize_t n = readlink(full, target, sizeof target);
    if (n < 0) return relish_status_set(st, "io", "%s: %s", path, strerror(errno));
    out->mode = 0120000;
    rc = git_odb_hash(&out->id, target, (size_t)n, GIT_OBJECT_BLOB);
  } else if (S_ISREG(sb.st_mode)) {
    out->mode = (sb.st_mode & 0100) ? 0100755 : 0100644;
    rc = git_odb_hashfile(&out->id, full, GIT_OBJECT_BLOB);
  } else {
    return relish_status_set(st, "conflict", "%s is not a regular file", path);
  }
  if (rc < 0) return rg_set_git(st, rc, path);
  return 1;
}

static mode_t current_umask(void) {
  mode_t m = umask(022);
  umask(m);
  return m;
}

/* mkdir -p of the directories above full (inside the work tree). */
static int make_parents(const char *full, size_t wdlen, relish_status *st) {
  char buf[PATH_MAX];
  snprintf(buf, sizeof buf, "%s", full);
  for (char *p = buf + wdlen; *p; p++) {
    if (*p != '/') continue;
    *p = '\0';
    if (mkdir(buf, 0777) != 0 && errno != EEXIST)
      return relish_status_set(st, "io", "%s: %s", buf, strerror(errno));
    struct stat sb;
    if (lstat(buf, &sb) != 0 || !S_ISDIR(sb.st_mode))
      return relish_status_set(st, "conflict", "%s is in the way (not a directory)", buf + wdlen);
    *p = '/';
  }
  return 0;
}

/* Remove the directories above full that the removal left empty. */
static void prune_parents(const char *full, size_t wdlen) {
  char buf[PATH_MAX];
  snprintf(buf, sizeof buf, "%s", full);
  for (;;) {
    char *slash = strrchr(buf, '/');
    if (slash == NULL || (size_t)(slash - buf) <= wdlen) return;
    *slash = '\0';
    if (rmdir(buf) != 0) return;
  }
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Atomically put content (or a symlink) at full: a temporary name in the same
 * directory, then rename over. */
static int put_file(const char *full, const char *rel, const char *data, size_t len, uint32_t mode,
                    relish_status *st) {
  char tmp[PATH_MAX];
  const char *base = strrchr(full, '/');
  int dirlen = (int)(base - full);
  if (snprintf(tmp, sizeof tmp, "%.*s/.%s.relish-XXXXXX", dirlen, full, base + 1) >= PATH_MAX)
    return relish_status_set(st, "invalid", "%s: path too long", rel);
  int fd = mkstemp(tmp);
  if (fd < 0) return relish_status_set(st, "io", "%s: %s", rel, strerror(errno));
  int bad = 0;
  if (mode == 0120000) {
    close(fd);
    unlink(tmp);
    char target[PATH_MAX];
    if (len >= sizeof target)
      return relish_status_set(st, "invalid", "%s: link target too long", rel);
    memcpy(target, data, len);
    target[len] = '\0';
    if (symlink(target, tmp) != 0)
      return relish_status_set(st, "io", "%s: %s", rel, strerror(errno));
  } else {
    mode_t m = (mode == 0100755 ? 0777 : 0666) & ~current_umask();
    bad = write_all(fd, data, len) != 0 || fchmod(fd, m) != 0 || fsync(fd) != 0;
    int e = errno;
    if (close(fd) != 0 && !bad) {
      bad = 1;
      e = errno;
    }
    if (bad) {
      unlink(tmp);
      return relish_status_set(st, "io", "%s: %s", rel, strerror(e));
    }
  }
  struct stat sb;
  if (lstat(full, &sb) == 0 && S_ISDIR(sb.st_mode)) {
    unlink(tmp);
    return relish_status_set(st, "conflict", "%s is a directory", rel);
  }
  if (rename(tmp, full) != 0) {
    int e = errno;
    unlink(tmp);
    return relish_status_set(st, "io", "%s: %s", rel, strerror(e));
  }
  return 0;
}

int rg_wt_write(git_repository *repo, const char *path, const rg_side *side, relish_status *st) {
  char full[PATH_MAX];
  if (wt_path(repo, path, full, st) != 0) return -1;
  size_t wdlen = strlen(git_repository_workdir(repo));
  struct stat sb;
  if (!side->present) {
    if (lstat(full, &sb) != 0) return 0;
    if (S_ISDIR(sb.st_mode)) return relish_status_set(st, "conflict", "%s is a directory", path);
    if (unlink(full) != 0 && errno != ENOENT)
      return relish_status_set(st, "io", "%s: %s", path, strerror(errno));
    prune_parents(full, wdlen);
    return 0;
  }
  if (side->mode == 0160000)
    return relish_status_set(st, "invalid", "%s: submodules are not supported", path);
  git_blob *blob = NULL;
  int rc = git_blob_lookup(&blob, repo, &side->id);
  if (rc < 0) return rg_set_git(st, rc, path);
  rc = make_parents(full, wdlen, st);
  if (rc == 0)
    rc = put_file(full, path, git_blob_rawcontent(blob), (size_t)git_blob_rawsize(blob), side->mode,
                  st);
  git_blob_free(blob);
  return rc;
}

/* ---- refs ---- */

int rg_ref_cas(git_repository *repo, const char *ref, const git_oid *from, const git_oid *to,
               const char *reflog, relish_status *st) {
  char *branch = strcmp(ref, "HEAD") == 0 ? rg_head_ref(repo) : NULL;
  const char *name = branch != NULL ? branch : ref;
  git_reference *cur = NULL, *out = NULL;
  int rc = 0;
  if (to == NULL) {
    rc = git_reference_lookup(&cur, repo, name);
    if (rc == GIT_ENOTFOUND) {
      git_error_clear();
      rc = from == NULL
               ? 0
               : relish_status_set(st, "conflict", "%s is gone (expected it at a value)", name);
    } else if (rc < 0) {
      rc = rg_set_git(st, rc, name);
    } else if (from == NULL || git_reference_target(cur) == NULL ||
               !git_oid_equal(git_reference_target(cur), from)) {
      rc =
          relish_status_set(st, "conflict", "%s moved (it no longer has the expected value)", name);
    } else if ((rc = git_reference_delete(cur)) < 0) {
      rg_set_git(st, rc, name);
      if (rc == GIT_EMODIFIED) st->kind = "conflict";
    }
  } else {
    rc = git_reference_create_matching(&out, repo, name, to, from != NULL, from, reflog);
    if (rc == GIT_EEXISTS || rc == GIT_EMODIFIED || (rc == GIT_ENOTFOUND && from != NULL))
      relish_status_set(st, "conflict", "%s moved (it no longer has the expected value)", name);
    else if (rc < 0)
      rg_set_git(st, rc, name);
  }
  git_reference_free(cur);
  git_reference_free(out);
  free(branch);
  return rc < 0 ? -1 : 0;
}

/* ---- acting and undoing ---- */

static int stopped(relish_status *st) {
  if (!relish_interrupted()) return 0;
  return relish_status_set(st, "interrupted", "interrupted");
}

/* Set the index entry of path to side (or remove it); stat data from the
 * work tree when the file there is what the entry says. */
static int index_set(git_repository *repo, git_index *idx, const char *path, const rg_side *side,
                     int fresh_file, relish_status *st) {
  int rc;
  if (!side->present) {
    rc = git_index_remove(idx, path, 0);
    if (rc == GIT_ENOTFOUND) {
      git_error_clear();
      rc = 0;
    }
    return rc < 0 ? rg_set_git(st, rc, path) : 0;
  }
  git_index_entry e;
  memset(&e, 0, sizeof e);
  e.path = path;
  e.mode = side->mode;
  git_oid_cpy(&e.id, &side->id);
  char full[PATH_MAX];
  struct stat sb;
  if (fresh_file && wt_path(repo, path, full, st) == 0 && lstat(full, &sb) == 0) {
    e.ctime.seconds = (int32_t)sb.st_ctim.tv_sec;
    e.ctime.nanoseconds = (uint32_t)sb.st_ctim.tv_nsec;
    e.mtime.seconds = (int32_t)sb.st_mtim.tv_sec;
    e.mtime.nanoseconds = (uint32_t)sb.st_mtim.tv_nsec;
    e.dev = (uint32_t)sb.st_dev;
    e.ino = (uint32_t)sb.st_ino;
    e.uid = (uint32_t)sb.st_uid;
    e.gid = (uint32_t)sb.st_gid;
    e.file_size = (uint32_t)sb.st_size;
  }
  rc = git_index_add(idx, &e);
  return rc < 0 ? rg_set_git(st, rc, path) : 0;
}

static int fresh(const rg_change *ch, const rg_side *ix) {
  return ch->wt && rg_side_eq(ix, &ch->wt_after);
}

int rg_changes_apply(git_repository *repo, const rg_changes *c, const char *ref,
                     const git_oid *before, const git_oid *after, const char *reflog,
                     relish_status *st) {
  for (size_t i = 0; i < c->n; i++) {
    if (!c->v[i].wt) continue;
    if (stopped(st) || rg_wt_write(repo, c->v[i].path, &c->v[i].wt_after, st) != 0) return -1;
  }
  if (stopped(st)) return -1;
  git_index *idx = NULL;
  int rc = git_repository_index(&idx, repo);
  if (rc == 0) rc = git_index_read(idx, 1);
  if (rc < 0) {
    git_index_free(idx);
    return rg_set_git(st, rc, "index");
  }
  for (size_t i = 0; rc == 0 && i < c->n; i++) {
    const rg_change *ch = &c->v[i];
    if (ch->ix) rc = index_set(repo, idx, ch->path, &ch->ix_after, fresh(ch, &ch->ix_after), st);
  }
  if (rc == 0 && (rc = git_index_write(idx)) < 0) rg_set_git(st, rc, "index");
  git_index_free(idx);
  if (rc < 0 || stopped(st)) return -1;
  return rg_ref_cas(repo, ref, before, after, reflog, st);
}

/* Appends path to a "left as is" list in buf. */
static void note(char *buf, size_t size, const char *path) {
  size_t n = strlen(buf);
  if (n + strlen(path) + 8 >= size) {
    if (n + 5 < size && strcmp(buf + (n > 4 ? n - 4 : 0), ", …") != 0)
      snprintf(buf + n, size - n, ", …");
    return;
  }
  snprintf(buf + n, size - n, "%s%s", n ? ", " : "", path);
}

int rg_changes_revert(git_repository *repo, const rg_changes *c, const char *ref,
                      const git_oid *before, const git_oid *after, relish_status *st) {
  /* the ref first: if it moved on, later work builds on the commit and
   * nothing else may be taken away */
  char *branch = strcmp(ref, "HEAD") == 0 ? rg_head_ref(repo) : NULL;
  const char *name = branch != NULL ? branch : ref;
  git_oid cur;
  int rc = git_reference_name_to_id(&cur, repo, name);
  int present = rc == 0;
  if (rc < 0 && rc != GIT_ENOTFOUND) {
    free(branch);
    return rg_set_git(st, rc, name);
  }
  git_error_clear();
  if (present && git_oid_equal(&cur, after)) {
    rc = rg_ref_cas(repo, name, after, before, "relish: undo", st);
  } else if (present ? (before == NULL || !git_oid_equal(&cur, before)) : before != NULL) {
    char a[8], now[8];
    rg_short(after, a);
    if (present) rg_short(&cur, now);
    rc = relish_status_set(
        st, "conflict",
        "%s moved on since (now %s): commit %s stays; revert it instead of rolling back", name,
        present ? now : "deleted", a);
  }
  free(branch);
  if (rc < 0) return -1;
  /* the work tree and index belong to another branch now: only the ref */
  if (strcmp(ref, "HEAD") != 0) {
    char *head = rg_head_ref(repo);
    int elsewhere = head == NULL || strcmp(head, ref) != 0;
    free(head);
    if (elsewhere) return 0;
  }

  char left[512] = "";
  for (size_t i = 0; i < c->n; i++) {
    const rg_change *ch = &c->v[i];
    if (!ch->wt) continue;
    rg_side now;
    if (rg_wt_read(repo, ch->path, &now, st) < 0) return -1;
    if (rg_side_eq(&now, &ch->wt_after) && !rg_side_eq(&now, &ch->wt_before)) {
      if (rg_wt_write(repo, ch->path, &ch->wt_before, st) != 0) return -1;
    } else if (!rg_side_eq(&now, &ch->wt_before)) {
      note(left, sizeof left, ch->path);
    }
  }
  git_index *idx = NULL;
  int dirty = 0;
  rc = git_repository_index(&idx, repo);
  if (rc == 0) rc = git_index_read(idx, 1);
  if (rc < 0) {
    git_index_free(idx);
    return rg_set_git(st, rc, "index");
  }
  for (size_t i = 0; i < c->n; i++) {
    const rg_change *ch = &c->v[i];
    if (!ch->ix) continue;
    const git_index_entry *e = git_index_get_bypath(idx, ch->path, 0);
    rg_side now = {.present = e != NULL};
    if (e != NULL) {
      now.id = e->id;
      now.mode = e->mode;
    }
    if (rg_side_eq(&now, &ch->ix_after) && !rg_side_eq(&now, &ch->ix_before)) {
      if (index_set(repo, idx, ch->path, &ch->ix_before, 0, st) != 0) {
        git_index_free(idx);
        return -1;
      }
      dirty = 1;
    } else if (!rg_side_eq(&now, &ch->ix_before)) {
      note(left, sizeof left, ch->path);
    }
  }
  if (dirty && (rc = git_index_write(idx)) < 0) rg_set_git(st, rc, "index");
  git_index_free(idx);
  if (rc < 0) return -1;
  if (left[0] != '\0')
    return relish_status_set(st, "conflict", "changed since, left as is: %s", left);
  return 0;
}

/* ---- the diffstat of plans ---- */

char *rg_diffstat_text(git_repository *repo, git_tree *a, git_tree *b, char *summary,
                       size_t summary_size) {
  git_diff *diff = NULL;
  git_diff_stats *stats = NULL;
  git_buf buf = {0};
  char *out = NULL;
  git_diff_options o;
  git_diff_options_init(&o, GIT_DIFF_OPTIONS_VERSION);
  git_diff_find_options fo;
  git_diff_find_options_init(&fo, GIT_DIFF_FIND_OPTIONS_VERSION);
  fo.flags = GIT_DIFF_FIND_RENAMES;
  if (git_diff_tree_to_tree(&diff, repo, a, b, &o) == 0 && git_diff_find_similar(diff, &fo) == 0 &&
      git_diff_get_stats(&stats, diff) == 0 &&
      git_diff_stats_to_buf(&buf, stats, GIT_DIFF_STATS_FULL | GIT_DIFF_STATS_INCLUDE_SUMMARY,
                            80) == 0) {
    size_t files = git_diff_stats_files_changed(stats);
    size_t ins = git_diff_stats_insertions(stats), del = git_diff_stats_deletions(stats);
    snprintf(summary, summary_size, "%zu file%s changed, %zu insertion%s(+), %zu deletion%s(-)",
             files, files == 1 ? "" : "s", ins, ins == 1 ? "" : "s", del, del == 1 ? "" : "s");
    size_t n = buf.size;
    while (n > 0 && buf.ptr[n - 1] == '\n')
      n--;
    out = malloc(n + 1);
    if (out != NULL) {
      memcpy(out, buf.ptr, n);
      out[n] = '\0';
    }
  } else {
    git_error_clear();
    snprintf(summary, summary_size, "diffstat unavailable");
    out = strdup("");
  }
  git_buf_dispose(&buf);
  git_diff_stats_free(stats);
  git_diff_free(diff);
  return out;
}
