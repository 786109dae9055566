/* refs.c: the ref effects of relish.git: tag, delete_tag, create_branch and
 * delete_branch. Each computes the ref's value before and after, writes any
 * object it needs (an annotated tag; in a dry-run only to memory), asks the
 * gate with an undo record and a fingerprint (the value it expects), and then
 * moves the ref with a compare-and-swap, so a ref changed meanwhile is never
 * overwritten. An effect that would change nothing is not an effect. */
#define _GNU_SOURCE
#include "gitint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  const char *verb, *kind;
  char ref[1024];
  char target[4096 + 1100]; /* "LABEL:REF" */
  int has_before, has_after;
  git_oid before, after;
  char describe[2048];
  cJSON *rec;
} ref_effect;

static void push_hex(lua_State *L, const git_oid *id) {
  char hex[GIT_OID_HEXSZ + 1];
  rg_hex(id, hex);
  lua_pushstring(L, hex);
}

static void field_hex(lua_State *L, const char *k, const git_oid *id) {
  push_hex(L, id);
  lua_setfield(L, -2, k);
}

/* A full ref name under prefix for name, or a failure when git would refuse it. */
static int ref_name(const char *prefix, const char *name, char out[1024], rg_status *st) {
  int valid = 0;
  if (strncmp(name, prefix, strlen(prefix)) == 0) name += strlen(prefix);
  if (name[0] == '\0' || snprintf(out, 1024, "%s%s", prefix, name) >= 1024 ||
      git_reference_name_is_valid(&valid, out) < 0 || !valid) {
    git_error_clear();
    return rg_set(st, "invalid", "'%s' is not a valid %s name", name,
                  strcmp(prefix, "refs/tags/") == 0 ? "tag" : "branch");
  }
  return 0;
}

/* Starts e on the ref prefix + *name (a name given with the prefix is taken
 * as it is); *name becomes the name without the prefix. Fails when git would
 * refuse the name. */
static int effect_start(ref_effect *e, const char *verb, const char *kind, git_repository *repo,
                        const char *prefix, const char **name, rg_status *st) {
  char label[4096];
  memset(e, 0, sizeof *e);
  e->verb = verb;
  e->kind = kind;
  if (ref_name(prefix, *name, e->ref, st) != 0) return -1;
  *name = e->ref + strlen(prefix);
  snprintf(e->target, sizeof e->target, "%s:%s", rg_label(repo, label, sizeof label), e->ref);
  return 0;
}

/* The record every ref effect starts from: {v, repo, ref, before, after}. */
static cJSON *base_record(rg_box *b, git_repository *repo, const ref_effect *e) {
  char hex[GIT_OID_HEXSZ + 1];
  cJSON *rec = rg_box_add(b, cJSON_CreateObject(), rg_free_json);
  if (rec == NULL || cJSON_AddNumberToObject(rec, "v", 1) == NULL ||
      cJSON_AddStringToObject(rec, "repo", git_repository_path(repo)) == NULL ||
      cJSON_AddStringToObject(rec, "ref", e->ref) == NULL)
    return NULL;
  if (e->has_before) {
    rg_hex(&e->before, hex);
    if (cJSON_AddStringToObject(rec, "before", hex) == NULL) return NULL;
  }
  if (e->has_after) {
    rg_hex(&e->after, hex);
    if (cJSON_AddStringToObject(rec, "after", hex) == NULL) return NULL;
  }
  return rec;
}

/* Gate, then act: the planned or the done result is for the caller to push.
 * Returns 1 planned, 0 done, -1 failed (nil, err pushed). */
static int run_effect(lua_State *L, rg_box *b, git_repository *repo, ref_effect *e) {
  char fp[1200], before[GIT_OID_HEXSZ + 1];
  if (e->has_before) rg_hex(&e->before, before);
  snprintf(fp, sizeof fp, "%s=%s", e->ref, e->has_before ? before : "absent");
  char *undo = rg_box_add(b, cJSON_PrintUnformatted(e->rec), rg_free_text);
  if (undo == NULL) return luaL_error(L, "not enough memory");
  relish_effect eff = {.kind = e->kind,
                       .target = e->target,
                       .describe = e->describe,
                       .detail = NULL,
                       .undo = undo,
                       .fingerprint = fp};
  lua_Integer id;
  if (relish_gate_begin(L, &eff, &id) == RELISH_GATE_PLANNED) {
    rg_plan_set_ref(L, repo, e->ref, e->has_after ? &e->after : NULL);
    return 1;
  }
  rg_status st = {0};
  char reflog[2100];
  snprintf(reflog, sizeof reflog, "relish: %s", e->describe);
  if (relish_interrupted()) {
    relish_gate_failed(L, id, "interrupted");
    return relish_raise_interrupted(L);
  }
  if (rg_ref_cas(repo, e->ref, e->has_before ? &e->before : NULL, e->has_after ? &e->after : NULL,
                 reflog, &st) != 0) {
    rg_fail(L, e->verb, e->ref, &st);
    lua_getfield(L, -1, "message");
    relish_gate_failed(L, id, lua_tostring(L, -1));
    lua_pop(L, 1);
    return -1;
  }
  relish_gate_done(L, id, NULL);
  return 0;
}

/* The repository objects are looked up in: the scratch one in a dry-run. */
static git_repository *lookup_repo(lua_State *L, git_repository *repo, rg_status *st) {
  if (!rg_plan_active(L)) return repo;
  return rg_plan_scratch(L, repo, st);
}

/* The object a tag or branch points at: commits peeled from tags. */
static int target_object(lua_State *L, git_repository *repo, git_repository *look, const char *rev,
                         git_object **out, rg_status *st) {
  if (rg_resolve(L, repo, look, rev, GIT_OBJECT_ANY, out, st) != 0) return -1;
  if (git_object_type(*out) == GIT_OBJECT_TAG) {
    git_object *p = NULL;
    if (git_object_peel(&p, *out, GIT_OBJECT_COMMIT) == 0) {
      git_object_free(*out);
      *out = p;
    }
    git_error_clear();
  }
  return 0;
}

/* ---- tags ---- */

/* The first line of a message, shortened for one-line descriptions. */
static void first_line(const char *msg, char *out, size_t size) {
  size_t n = strcspn(msg, "\n");
  if (n > 60) {
    snprintf(out, size, "%.57s...", msg);
  } else {
    snprintf(out, size, "%.*s", (int)n, msg);
  }
}

/* The table repo:tags() and repo:tag() give for one tag. */
static void push_tag_info(lua_State *L, const char *name, const git_oid *target, const git_tag *tag,
                          int planned) {
  lua_createtable(L, 0, 7);
  lua_pushstring(L, name);
  lua_setfield(L, -2, "name");
  field_hex(L, "target", target);
  lua_pushboolean(L, tag != NULL);
  lua_setfield(L, -2, "annotated");
  if (tag != NULL) {
    field_hex(L, "id", git_tag_id(tag));
    lua_pushstring(L, git_tag_message(tag) ? git_tag_message(tag) : "");
    lua_setfield(L, -2, "message");
    const git_signature *s = git_tag_tagger(tag);
    if (s != NULL) {
      lua_createtable(L, 0, 3);
      lua_pushstring(L, s->name);
      lua_setfield(L, -2, "name");
      lua_pushstring(L, s->email);
      lua_setfield(L, -2, "email");
      lua_pushinteger(L, (lua_Integer)s->when.time);
      lua_setfield(L, -2, "time");
      lua_setfield(L, -2, "tagger");
    }
  }
  if (planned) {
    lua_pushboolean(L, 1);
    lua_setfield(L, -2, "planned");
  }
}

/* repo:tags() -> list of tag tables, sorted by name */
static int tag_cmp(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_strarray(void *p) {
  git_strarray_dispose(p);
  free(p);
}

int l_repo_tags(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  rg_box *b = rg_box_new(L);
  git_strarray *names = rg_box_add(b, calloc(1, sizeof *names), free_strarray);
  if (names == NULL) return luaL_error(L, "not enough memory");
  int rc = git_tag_list(names, repo);
  if (rc < 0) return rg_fail_git(L, "tags", NULL, rc);
  size_t n = names->count;
  char **list = rg_box_add(b, calloc(n + 1, sizeof *list), rg_free_mem);
  if (list == NULL) return luaL_error(L, "not enough memory");
  memcpy(list, names->strings, n * sizeof *list);
  qsort(list, n, sizeof *list, tag_cmp);
  lua_createtable(L, (int)n, 0);
  lua_Integer k = 0;
  for (size_t i = 0; i < n; i++) {
    char ref[1100];
    git_oid id;
    git_object *obj = NULL, *peeled = NULL;
    snprintf(ref, sizeof ref, "refs/tags/%s", list[i]);
    if (git_reference_name_to_id(&id, repo, ref) != 0 ||
        git_object_lookup(&obj, repo, &id, GIT_OBJECT_ANY) != 0) {
      git_error_clear();
      continue;
    }
    rg_box_add(b, obj, rg_free_object);
    const git_oid *target = &id;
    if (git_object_type(obj) == GIT_OBJECT_TAG) {
      /* through tags of tags to what is not a tag */
      git_object *cur = obj;
      while (git_object_type(cur) == GIT_OBJECT_TAG) {
        git_object *next = NULL;
        if (git_tag_target(&next, (git_tag *)cur) != 0) break;
        if (cur != obj) git_object_free(cur);
        cur = next;
      }
      git_error_clear();
      if (cur != obj) {
        peeled = rg_box_add(b, cur, rg_free_object);
        target = git_object_id(cur);
      }
    }
    push_tag_info(L, list[i], target,
                  git_object_type(obj) == GIT_OBJECT_TAG ? (const git_tag *)obj : NULL, 0);
    lua_rawseti(L, -2, ++k);
    rg_box_drop(b, obj);
    rg_box_drop(b, peeled);
  }
  rg_box_release(b);
  return 1;
}

static const char *const tag_opts[] = {"message", "target", "force", NULL};

/* repo:tag(name, {message=, target=, force=}) -> tag table | nil, err */
int l_repo_tag(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *name = rg_checkstr(L, 2);
  rg_checkopts(L, 3, "repo:tag", tag_opts);
  const char *message = rg_optfield(L, 3, "repo:tag", "message");
  const char *rev = rg_optfield(L, 3, "repo:tag", "target");
  int force = rg_optbool(L, 3, "force", 0);
  lua_settop(L, 3);
  rg_box *b = rg_box_new(L);
  rg_status st = {0};
  ref_effect e;
  if (effect_start(&e, "tag", "git.tag", repo, "refs/tags/", &name, &st) != 0)
    return rg_fail(L, "tag", name, &st);
  git_repository *look = lookup_repo(L, repo, &st);
  git_object *target = NULL;
  if (look == NULL || target_object(L, repo, look, rev ? rev : "HEAD", &target, &st) != 0)
    return rg_fail(L, "tag", name, &st);
  rg_box_add(b, target, rg_free_object);
  char *msg = message != NULL ? rg_box_add(b, rg_clean_message(message), rg_free_mem) : NULL;
  if (message != NULL && msg == NULL) return luaL_error(L, "not enough memory");

  int rc = rg_ref_value(L, repo, e.ref, &e.before);
  if (rc < 0) return rg_fail_git(L, "tag", name, rc);
  e.has_before = rc;
  git_oid at = e.before; /* what the existing tag names, for messages (not its tag object) */
  if (e.has_before) {
    /* the same tag again is no effect; another one needs force */
    git_object *old = NULL, *peeled = NULL;
    if (git_object_lookup(&old, look, &e.before, GIT_OBJECT_ANY) == 0) {
      rg_box_add(b, old, rg_free_object);
      int annotated = git_object_type(old) == GIT_OBJECT_TAG;
      const git_tag *t = annotated ? (const git_tag *)old : NULL;
      const git_oid *points = annotated ? git_tag_target_id(t) : &e.before;
      if (annotated && git_object_peel(&peeled, old, GIT_OBJECT_ANY) == 0) {
        git_oid_cpy(&at, git_object_id(peeled));
        git_object_free(peeled);
      }
      if (git_oid_equal(points, git_object_id(target)) && annotated == (msg != NULL) &&
          (!annotated || strcmp(git_tag_message(t) ? git_tag_message(t) : "", msg) == 0)) {
        push_tag_info(L, name, points, t, 0);
        rg_box_release(b);
        return 1;
      }
    }
    git_error_clear();
    if (!force) {
      char was[8];
      rg_short(&at, was);
      rg_set(&st, "exists", "tag already exists (at %s); give force = true to move it", was);
      return rg_fail(L, "tag", name, &st);
    }
  }

  git_tag *tag = NULL;
  char tgt[8], line[80];
  rg_short(git_object_id(target), tgt);
  if (msg != NULL) {
    git_signature *tagger = NULL;
    if (rg_signature(repo, 0, &tagger, &st) != 0) return rg_fail(L, "tag", name, &st);
    rg_box_add(b, tagger, rg_free_sig);
    /* the tag object is written before the gate (in a dry-run to memory):
     * an object no ref points at changes nothing */
    rc = git_tag_annotation_create(&e.after, look, name, target, tagger, msg);
    if (rc < 0) return rg_fail_git(L, "tag", name, rc);
    if ((rc = git_tag_lookup(&tag, look, &e.after)) < 0) return rg_fail_git(L, "tag", name, rc);
    rg_box_add(b, tag, rg_free_object);
    first_line(msg, line, sizeof line);
    snprintf(e.describe, sizeof e.describe, "tag %.900s → %s (annotated: \"%s\")", name, tgt, line);
  } else {
    git_oid_cpy(&e.after, git_object_id(target));
    snprintf(e.describe, sizeof e.describe, "tag %.900s → %s (lightweight)", name, tgt);
  }
  e.has_after = 1;
  if (e.has_before) {
    char was[8];
    size_t n = strlen(e.describe);
    rg_short(&at, was);
    snprintf(e.describe + n, sizeof e.describe - n, ", replacing the tag at %s", was);
  }
  char hex[GIT_OID_HEXSZ + 1];
  rg_hex(git_object_id(target), hex);
  if ((e.rec = base_record(b, repo, &e)) == NULL ||
      cJSON_AddStringToObject(e.rec, "name", name) == NULL ||
      cJSON_AddStringToObject(e.rec, "target", hex) == NULL)
    return luaL_error(L, "not enough memory");
  rc = run_effect(L, b, repo, &e);
  if (rc < 0) return 2;
  push_tag_info(L, name, git_object_id(target), tag, rc == 1);
  rg_box_release(b);
  return 1;
}

/* A tag's object as text for the undo record when it is plain UTF-8 text, so
 * an undo can write back the very same object if it was pruned meanwhile. */
static int add_raw_tag(git_repository *repo, const git_oid *id, cJSON *rec) {
  git_odb *odb = NULL;
  git_odb_object *obj = NULL;
  int ok = 0;
  if (git_repository_odb(&odb, repo) == 0 && git_odb_read(&obj, odb, id) == 0 &&
      git_odb_object_type(obj) == GIT_OBJECT_TAG) {
    const unsigned char *p = git_odb_object_data(obj);
    size_t n = git_odb_object_size(obj);
    int text = memchr(p, 0, n) == NULL;
    for (size_t i = 0; text && i < n; i++)
      if (p[i] >= 0x80) text = 0; /* keep to ASCII: JSON round trips it byte for byte */
    if (text) {
      char *s = malloc(n + 1);
      if (s != NULL) {
        memcpy(s, p, n);
        s[n] = '\0';
        ok = cJSON_AddStringToObject(rec, "object", s) != NULL;
        free(s);
      }
    }
  }
  git_error_clear();
  git_odb_object_free(obj);
  git_odb_free(odb);
  return ok;
}

/* repo:delete_tag(name) -> true | nil, err */
int l_repo_delete_tag(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *name = rg_checkstr(L, 2);
  lua_settop(L, 2);
  rg_box *b = rg_box_new(L);
  rg_status st = {0};
  ref_effect e;
  if (effect_start(&e, "delete_tag", "git.delete_tag", repo, "refs/tags/", &name, &st) != 0)
    return rg_fail(L, "delete_tag", name, &st);
  int rc = rg_ref_value(L, repo, e.ref, &e.before);
  if (rc < 0) return rg_fail_git(L, "delete_tag", name, rc);
  if (rc == 0) { /* already gone: nothing to do */
    lua_pushboolean(L, 1);
    return 1;
  }
  e.has_before = 1;
  git_repository *look = lookup_repo(L, repo, &st);
  if (look == NULL) return rg_fail(L, "delete_tag", name, &st);
  char was[8];
  rg_short(&e.before, was);
  if ((e.rec = base_record(b, repo, &e)) == NULL ||
      cJSON_AddStringToObject(e.rec, "name", name) == NULL)
    return luaL_error(L, "not enough memory");
  git_object *old = NULL;
  if (git_object_lookup(&old, look, &e.before, GIT_OBJECT_ANY) == 0) {
    rg_box_add(b, old, rg_free_object);
    if (git_object_type(old) == GIT_OBJECT_TAG) {
      add_raw_tag(look, &e.before, e.rec);
      rg_short(git_tag_target_id((git_tag *)old), was);
    }
  }
  git_error_clear();
  snprintf(e.describe, sizeof e.describe, "delete tag %.900s (was → %s)", name, was);
  rc = run_effect(L, b, repo, &e);
  if (rc < 0) return 2;
  lua_pushboolean(L, 1);
  rg_box_release(b);
  return 1;
}

/* ---- branches ---- */

static const char *const branch_opts[] = {"target", "force", NULL};

static int is_head(git_repository *repo, const char *ref) {
  char *h = rg_head_ref(repo);
  int same = h != NULL && strcmp(h, ref) == 0;
  free(h);
  return same;
}

/* repo:create_branch(name, {target=, force=}) -> commit id | nil, err */
int l_repo_create_branch(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *name = rg_checkstr(L, 2);
  rg_checkopts(L, 3, "repo:create_branch", branch_opts);
  const char *rev = rg_optfield(L, 3, "repo:create_branch", "target");
  int force = rg_optbool(L, 3, "force", 0);
  lua_settop(L, 3);
  rg_box *b = rg_box_new(L);
  rg_status st = {0};
  ref_effect e;
  if (effect_start(&e, "create_branch", "git.branch", repo, "refs/heads/", &name, &st) != 0)
    return rg_fail(L, "create_branch", name, &st);
  git_repository *look = lookup_repo(L, repo, &st);
  git_object *target = NULL;
  if (look == NULL ||
      rg_resolve(L, repo, look, rev ? rev : "HEAD", GIT_OBJECT_COMMIT, &target, &st) != 0)
    return rg_fail(L, "create_branch", name, &st);
  rg_box_add(b, target, rg_free_object);
  git_oid_cpy(&e.after, git_object_id(target));
  e.has_after = 1;
  int rc = rg_ref_value(L, repo, e.ref, &e.before);
  if (rc < 0) return rg_fail_git(L, "create_branch", name, rc);
  e.has_before = rc;
  char to[8], was[8];
  rg_short(&e.after, to);
  if (e.has_before) {
    if (git_oid_equal(&e.before, &e.after)) {
      push_hex(L, &e.after);
      return 1;
    }
    rg_short(&e.before, was);
    if (!force) {
      rg_set(&st, "exists", "branch already exists (at %s); give force = true to move it", was);
      return rg_fail(L, "create_branch", name, &st);
    }
    if (is_head(repo, e.ref)) {
      rg_set(&st, "invalid", "cannot move the checked-out branch");
      return rg_fail(L, "create_branch", name, &st);
    }
    snprintf(e.describe, sizeof e.describe, "move branch %.900s %s → %s", name, was, to);
  } else {
    snprintf(e.describe, sizeof e.describe, "branch %.900s → %s", name, to);
  }
  if ((e.rec = base_record(b, repo, &e)) == NULL) return luaL_error(L, "not enough memory");
  rc = run_effect(L, b, repo, &e);
  if (rc < 0) return 2;
  push_hex(L, &e.after);
  rg_box_release(b);
  return 1;
}

/* repo:delete_branch(name) -> true | nil, err. Only the ref goes: the
 * branch's config (its upstream) stays, so an undo restores it whole. */
int l_repo_delete_branch(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *name = rg_checkstr(L, 2);
  lua_settop(L, 2);
  rg_box *b = rg_box_new(L);
  rg_status st = {0};
  ref_effect e;
  if (effect_start(&e, "delete_branch", "git.delete_branch", repo, "refs/heads/", &name, &st) != 0)
    return rg_fail(L, "delete_branch", name, &st);
  if (is_head(repo, e.ref)) {
    rg_set(&st, "invalid", "cannot delete the checked-out branch");
    return rg_fail(L, "delete_branch", name, &st);
  }
  int rc = rg_ref_value(L, repo, e.ref, &e.before);
  if (rc < 0) return rg_fail_git(L, "delete_branch", name, rc);
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  e.has_before = 1;
  char was[8];
  rg_short(&e.before, was);
  snprintf(e.describe, sizeof e.describe, "delete branch %.900s (was → %s)", name, was);
  if ((e.rec = base_record(b, repo, &e)) == NULL) return luaL_error(L, "not enough memory");
  rc = run_effect(L, b, repo, &e);
  if (rc < 0) return 2;
  lua_pushboolean(L, 1);
  rg_box_release(b);
  return 1;
}
