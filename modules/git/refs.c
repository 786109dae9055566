/* refs.c: the ref effects of relish.git: tag, delete_tag, create_branch and
 * delete_branch. Each computes the ref's value before and after, writes any
 * object it needs (an annotated tag; in a dry-run only to memory) and hands
 * the gate the action with its undo record and fingerprint (the value it
 * expects). The providers' apply moves the ref with a compare-and-swap, so a
 * ref changed meanwhile is never overwritten; their plan moves it in the
 * dry-run view. An effect that would change nothing is not an effect. */
#define _GNU_SOURCE
#include "gitint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The prepared request of a ref effect (its action's struct). */
typedef struct {
  rg_action a;
  const char *verb;
  char ref[1024];
  char target[4096 + 1100]; /* "LABEL:REF" */
  int has_before, has_after;
  git_oid before, after;
  char describe[2048];
  char fingerprint[1200];
  enum { RESULT_TRUE, RESULT_ID, RESULT_TAG } result;
  git_oid tagged;     /* RESULT_TAG: the object the tag names */
  const git_tag *tag; /* and its tag object (boxed), NULL when lightweight */
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
static int ref_name(const char *prefix, const char *name, char out[1024], relish_status *st) {
  int valid = 0;
  if (strncmp(name, prefix, strlen(prefix)) == 0) name += strlen(prefix);
  if (name[0] == '\0' || snprintf(out, 1024, "%s%s", prefix, name) >= 1024 ||
      git_reference_name_is_valid(&valid, out) < 0 || !valid) {
    git_error_clear();
    return relish_status_set(st, "invalid", "'%s' is not a valid %s name", name,
                             strcmp(prefix, "refs/tags/") == 0 ? "tag" : "branch");
  }
  return 0;
}

/* Pushes the action of a ref effect on the ref prefix + *name (a name given
 * with the prefix is taken as it is), with the box at box_idx; *name becomes
 * the name without the prefix. Raises when git would refuse the name. */
static ref_effect *effect_start(lua_State *L, const char *verb, const char *kind, int box_idx,
                                const char *prefix, const char **name) {
  char label[4096];
  relish_status st = {0};
  ref_effect *e = rg_action_new(L, sizeof *e, kind, box_idx, 1);
  e->verb = verb;
  if (ref_name(prefix, *name, e->ref, &st) != 0) rg_raise(L, verb, *name, &st);
  *name = e->ref + strlen(prefix);
  snprintf(e->target, sizeof e->target, "%s:%s", rg_label(e->a.repo, label, sizeof label), e->ref);
  return e;
}

/* Pushes the record every ref effect starts from: {v, repo, ref, before, after}. */
static void base_record(lua_State *L, const ref_effect *e) {
  lua_createtable(L, 0, 8);
  lua_pushinteger(L, 1);
  lua_setfield(L, -2, "v");
  rg_rec_set(L, "repo", git_repository_path(e->a.repo));
  rg_rec_set(L, "ref", e->ref);
  if (e->has_before) rg_rec_set_oid(L, "before", &e->before);
  if (e->has_after) rg_rec_set_oid(L, "after", &e->after);
}

/* Hands the effect (its action at act, its record at rec) to the gate. */
static int run_effect(lua_State *L, ref_effect *e, int act, int rec) {
  char before[GIT_OID_HEXSZ + 1];
  if (e->has_before) rg_hex(&e->before, before);
  snprintf(e->fingerprint, sizeof e->fingerprint, "%s=%s", e->ref,
           e->has_before ? before : "absent");
  return relish_effect_run(L, &(relish_action){.kind = e->a.kind,
                                               .target = e->target,
                                               .describe = e->describe,
                                               .fingerprint = e->fingerprint,
                                               .record = rec,
                                               .arg = act});
}

static void push_tag_info(lua_State *L, const char *name, const git_oid *target, const git_tag *tag,
                          int planned);

/* What the Lua-called function returns, done or planned. */
static int push_result(lua_State *L, ref_effect *e, int planned) {
  if (e->result == RESULT_TAG)
    push_tag_info(L, e->ref + strlen("refs/tags/"), &e->tagged, e->tag, planned);
  else if (e->result == RESULT_ID)
    push_hex(L, &e->after);
  else
    lua_pushboolean(L, 1);
  e->tag = NULL;
  relish_box_release(e->a.box);
  return 1;
}

/* apply: the ref from before to after with a compare-and-swap, so a ref
 * changed meanwhile is never overwritten. */
static int apply_ref(lua_State *L, const char *kind) {
  ref_effect *e = rg_action_check(L, 1, kind);
  relish_status st = {0};
  char reflog[2100];
  snprintf(reflog, sizeof reflog, "relish: %s", e->describe);
  if (relish_interrupted()) return relish_raise_interrupted(L);
  if (rg_ref_cas(e->a.repo, e->ref, e->has_before ? &e->before : NULL,
                 e->has_after ? &e->after : NULL, reflog, &st) != 0)
    return rg_raise(L, e->verb, e->ref, &st);
  return push_result(L, e, 0);
}

/* plan: the dry-run view has the ref at after (or deleted). */
static int plan_ref(lua_State *L, const char *kind) {
  ref_effect *e = rg_action_check(L, 1, kind);
  rg_plan_set_ref(L, e->a.repo, e->ref, e->has_after ? &e->after : NULL);
  return push_result(L, e, 1);
}

static int apply_tag(lua_State *L) { return apply_ref(L, "git.tag"); }
static int plan_tag(lua_State *L) { return plan_ref(L, "git.tag"); }
static int apply_delete_tag(lua_State *L) { return apply_ref(L, "git.delete_tag"); }
static int plan_delete_tag(lua_State *L) { return plan_ref(L, "git.delete_tag"); }
static int apply_branch(lua_State *L) { return apply_ref(L, "git.branch"); }
static int plan_branch(lua_State *L) { return plan_ref(L, "git.branch"); }
static int apply_delete_branch(lua_State *L) { return apply_ref(L, "git.delete_branch"); }
static int plan_delete_branch(lua_State *L) { return plan_ref(L, "git.delete_branch"); }

static const char *const tag_fields[] = {"repo", "ref", "after", "name", "target", NULL};
static const char *const delete_tag_fields[] = {"repo", "ref", "before", "name", NULL};
static const char *const branch_fields[] = {"repo", "ref", "after", NULL};
static const char *const delete_branch_fields[] = {"repo", "ref", "before", NULL};

const relish_provider rg_ref_providers[] = {{.kind = "git.tag",
                                             .apply = apply_tag,
                                             .plan = plan_tag,
                                             .undo = rg_undo_tag,
                                             .fields = tag_fields},
                                            {.kind = "git.delete_tag",
                                             .apply = apply_delete_tag,
                                             .plan = plan_delete_tag,
                                             .undo = rg_undo_delete_tag,
                                             .fields = delete_tag_fields},
                                            {.kind = "git.branch",
                                             .apply = apply_branch,
                                             .plan = plan_branch,
                                             .undo = rg_undo_branch,
                                             .fields = branch_fields},
                                            {.kind = "git.delete_branch",
                                             .apply = apply_delete_branch,
                                             .plan = plan_delete_branch,
                                             .undo = rg_undo_delete_branch,
                                             .fields = delete_branch_fields},
                                            {NULL}};

/* The repository objects are looked up in: the scratch one in a dry-run. */
static git_repository *lookup_repo(lua_State *L, git_repository *repo, relish_status *st) {
  if (!rg_plan_active(L)) return repo;
  return rg_plan_scratch(L, repo, st);
}

/* The object a tag or branch points at: commits peeled from tags. */
static int target_object(lua_State *L, git_repository *repo, git_repository *look, const char *rev,
                         git_object **out, relish_status *st) {
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
  relish_box *b = relish_box_new(L);
  git_strarray *names = relish_box_add(b, calloc(1, sizeof *names), free_strarray);
  if (names == NULL) return luaL_error(L, "not enough memory");
  int rc = git_tag_list(names, repo);
  if (rc < 0) return rg_raise_git(L, "tags", NULL, rc);
  size_t n = names->count;
  char **list = relish_box_add(b, calloc(n + 1, sizeof *list), rg_free_mem);
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
    relish_box_add(b, obj, rg_free_object);
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
        peeled = relish_box_add(b, cur, rg_free_object);
        target = git_object_id(cur);
      }
    }
    push_tag_info(L, list[i], target,
                  git_object_type(obj) == GIT_OBJECT_TAG ? (const git_tag *)obj : NULL, 0);
    lua_rawseti(L, -2, ++k);
    relish_box_drop(b, obj);
    relish_box_drop(b, peeled);
  }
  relish_box_release(b);
  return 1;
}

static const char *const tag_opts[] = {"message", "target", "force", NULL};

/* repo:tag(name, {message=, target=, force=}) -> tag table */
int l_repo_tag(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *name = rg_checkstr(L, 2);
  relish_checkopts(L, 3, "repo:tag", tag_opts);
  const char *message = rg_optfield(L, 3, "repo:tag", "message");
  const char *rev = rg_optfield(L, 3, "repo:tag", "target");
  int force = rg_optbool(L, 3, "force", 0);
  lua_settop(L, 3);
  relish_box *b = relish_box_new(L); /* 4 */
  relish_status st = {0};
  ref_effect *e = effect_start(L, "tag", "git.tag", 4, "refs/tags/", &name); /* 5 */
  git_repository *look = lookup_repo(L, repo, &st);
  git_object *target = NULL;
  if (look == NULL || target_object(L, repo, look, rev ? rev : "HEAD", &target, &st) != 0)
    return rg_raise(L, "tag", name, &st);
  relish_box_add(b, target, rg_free_object);
  char *msg = message != NULL ? relish_box_add(b, rg_clean_message(message), rg_free_mem) : NULL;
  if (message != NULL && msg == NULL) return luaL_error(L, "not enough memory");

  int rc = rg_ref_value(L, repo, e->ref, &e->before);
  if (rc < 0) return rg_raise_git(L, "tag", name, rc);
  e->has_before = rc;
  git_oid at = e->before; /* what the existing tag names, for messages (not its tag object) */
  if (e->has_before) {
    /* the same tag again is no effect; another one needs force */
    git_object *old = NULL, *peeled = NULL;
    if (git_object_lookup(&old, look, &e->before, GIT_OBJECT_ANY) == 0) {
      relish_box_add(b, old, rg_free_object);
      int annotated = git_object_type(old) == GIT_OBJECT_TAG;
      const git_tag *t = annotated ? (const git_tag *)old : NULL;
      const git_oid *points = annotated ? git_tag_target_id(t) : &e->before;
      if (annotated && git_object_peel(&peeled, old, GIT_OBJECT_ANY) == 0) {
        git_oid_cpy(&at, git_object_id(peeled));
        git_object_free(peeled);
      }
      if (git_oid_equal(points, git_object_id(target)) && annotated == (msg != NULL) &&
          (!annotated || strcmp(git_tag_message(t) ? git_tag_message(t) : "", msg) == 0)) {
        push_tag_info(L, name, points, t, 0);
        relish_box_release(b);
        return 1;
      }
    }
    git_error_clear();
    if (!force) {
      char was[8];
      rg_short(&at, was);
      relish_status_set(&st, "exists", "tag already exists (at %s); give force = true to move it",
                        was);
      return rg_raise(L, "tag", name, &st);
    }
  }

  char tgt[8], line[80];
  rg_short(git_object_id(target), tgt);
  if (msg != NULL) {
    git_signature *tagger = NULL;
    git_tag *tag = NULL;
    if (rg_signature(repo, 0, &tagger, &st) != 0) return rg_raise(L, "tag", name, &st);
    relish_box_add(b, tagger, rg_free_sig);
    /* the tag object is written before the gate (in a dry-run to memory):
     * an object no ref points at changes nothing */
    rc = git_tag_annotation_create(&e->after, look, name, target, tagger, msg);
    if (rc < 0) return rg_raise_git(L, "tag", name, rc);
    if ((rc = git_tag_lookup(&tag, look, &e->after)) < 0) return rg_raise_git(L, "tag", name, rc);
    e->tag = relish_box_add(b, tag, rg_free_object);
    first_line(msg, line, sizeof line);
    snprintf(e->describe, sizeof e->describe, "tag %.900s → %s (annotated: \"%s\")", name, tgt,
             line);
  } else {
    git_oid_cpy(&e->after, git_object_id(target));
    snprintf(e->describe, sizeof e->describe, "tag %.900s → %s (lightweight)", name, tgt);
  }
  e->has_after = 1;
  e->result = RESULT_TAG;
  git_oid_cpy(&e->tagged, git_object_id(target));
  if (e->has_before) {
    char was[8];
    size_t n = strlen(e->describe);
    rg_short(&at, was);
    snprintf(e->describe + n, sizeof e->describe - n, ", replacing the tag at %s", was);
  }
  base_record(L, e); /* 6 */
  rg_rec_set(L, "name", name);
  rg_rec_set_oid(L, "target", git_object_id(target));
  return run_effect(L, e, 5, 6);
}

/* A tag's object as text in the undo record at the stack top when it is
 * plain ASCII text, so an undo can write back the very same object if it was
 * pruned meanwhile. */
static void add_raw_tag(lua_State *L, git_repository *repo, const git_oid *id) {
  git_odb *odb = NULL;
  git_odb_object *obj = NULL;
  if (git_repository_odb(&odb, repo) == 0 && git_odb_read(&obj, odb, id) == 0 &&
      git_odb_object_type(obj) == GIT_OBJECT_TAG) {
    const unsigned char *p = git_odb_object_data(obj);
    size_t n = git_odb_object_size(obj);
    int text = memchr(p, 0, n) == NULL;
    for (size_t i = 0; text && i < n; i++)
      if (p[i] >= 0x80) text = 0; /* keep to ASCII: JSON round trips it byte for byte */
    if (text) {
      lua_pushlstring(L, (const char *)p, n);
      lua_setfield(L, -2, "object");
    }
  }
  git_error_clear();
  git_odb_object_free(obj);
  git_odb_free(odb);
}

/* repo:delete_tag(name) -> true */
int l_repo_delete_tag(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *name = rg_checkstr(L, 2);
  lua_settop(L, 2);
  relish_box *b = relish_box_new(L); /* 3 */
  relish_status st = {0};
  ref_effect *e = effect_start(L, "delete_tag", "git.delete_tag", 3, "refs/tags/", &name); /* 4 */
  int rc = rg_ref_value(L, repo, e->ref, &e->before);
  if (rc < 0) return rg_raise_git(L, "delete_tag", name, rc);
  if (rc == 0) { /* already gone: nothing to do */
    lua_pushboolean(L, 1);
    return 1;
  }
  e->has_before = 1;
  git_repository *look = lookup_repo(L, repo, &st);
  if (look == NULL) return rg_raise(L, "delete_tag", name, &st);
  char was[8];
  rg_short(&e->before, was);
  base_record(L, e); /* 5 */
  rg_rec_set(L, "name", name);
  git_object *old = NULL;
  if (git_object_lookup(&old, look, &e->before, GIT_OBJECT_ANY) == 0) {
    relish_box_add(b, old, rg_free_object);
    if (git_object_type(old) == GIT_OBJECT_TAG) {
      add_raw_tag(L, look, &e->before);
      rg_short(git_tag_target_id((git_tag *)old), was);
    }
  }
  git_error_clear();
  snprintf(e->describe, sizeof e->describe, "delete tag %.900s (was → %s)", name, was);
  return run_effect(L, e, 4, 5);
}

/* ---- branches ---- */

static const char *const branch_opts[] = {"target", "force", NULL};

static int is_head(git_repository *repo, const char *ref) {
  char *h = rg_head_ref(repo);
  int same = h != NULL && strcmp(h, ref) == 0;
  free(h);
  return same;
}

/* repo:create_branch(name, {target=, force=}) -> commit id */
int l_repo_create_branch(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *name = rg_checkstr(L, 2);
  relish_checkopts(L, 3, "repo:create_branch", branch_opts);
  const char *rev = rg_optfield(L, 3, "repo:create_branch", "target");
  int force = rg_optbool(L, 3, "force", 0);
  lua_settop(L, 3);
  relish_box *b = relish_box_new(L); /* 4 */
  relish_status st = {0};
  ref_effect *e = effect_start(L, "create_branch", "git.branch", 4, "refs/heads/", &name); /* 5 */
  git_repository *look = lookup_repo(L, repo, &st);
  git_object *target = NULL;
  if (look == NULL ||
      rg_resolve(L, repo, look, rev ? rev : "HEAD", GIT_OBJECT_COMMIT, &target, &st) != 0)
    return rg_raise(L, "create_branch", name, &st);
  relish_box_add(b, target, rg_free_object);
  git_oid_cpy(&e->after, git_object_id(target));
  e->has_after = 1;
  e->result = RESULT_ID;
  int rc = rg_ref_value(L, repo, e->ref, &e->before);
  if (rc < 0) return rg_raise_git(L, "create_branch", name, rc);
  e->has_before = rc;
  char to[8], was[8];
  rg_short(&e->after, to);
  if (e->has_before) {
    if (git_oid_equal(&e->before, &e->after)) {
      push_hex(L, &e->after);
      return 1;
    }
    rg_short(&e->before, was);
    if (!force) {
      relish_status_set(&st, "exists",
                        "branch already exists (at %s); give force = true to move it", was);
      return rg_raise(L, "create_branch", name, &st);
    }
    if (is_head(repo, e->ref)) {
      relish_status_set(&st, "invalid", "cannot move the checked-out branch");
      return rg_raise(L, "create_branch", name, &st);
    }
    snprintf(e->describe, sizeof e->describe, "move branch %.900s %s → %s", name, was, to);
  } else {
    snprintf(e->describe, sizeof e->describe, "branch %.900s → %s", name, to);
  }
  base_record(L, e); /* 6 */
  return run_effect(L, e, 5, 6);
}

/* repo:delete_branch(name) -> true. Only the ref goes: the branch's config
 * (its upstream) stays, so an undo restores it whole. */
int l_repo_delete_branch(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  const char *name = rg_checkstr(L, 2);
  lua_settop(L, 2);
  relish_box_new(L); /* 3 */
  relish_status st = {0};
  ref_effect *e =
      effect_start(L, "delete_branch", "git.delete_branch", 3, "refs/heads/", &name); /* 4 */
  if (is_head(repo, e->ref)) {
    relish_status_set(&st, "invalid", "cannot delete the checked-out branch");
    return rg_raise(L, "delete_branch", name, &st);
  }
  int rc = rg_ref_value(L, repo, e->ref, &e->before);
  if (rc < 0) return rg_raise_git(L, "delete_branch", name, rc);
  if (rc == 0) {
    lua_pushboolean(L, 1);
    return 1;
  }
  e->has_before = 1;
  char was[8];
  rg_short(&e->before, was);
  snprintf(e->describe, sizeof e->describe, "delete branch %.900s (was → %s)", name, was);
  base_record(L, e); /* 5 */
  return run_effect(L, e, 4, 5);
}
