/* log.c: repo:log, the commits of from..to newest first. It walks history
 * itself rather than through git_revwalk, which reads and inflates every
 * commit once to order it and the caller again to read it: here each commit
 * is read once, raw from the object database, and its few fields are taken
 * from the text without building a git_commit (a changelog over 20,000
 * commits is mostly that reading). The walk is git's: commits by committer
 * date from a queue, the ancestors of `from` marked uninteresting as they
 * come up, and the walk stops once only uninteresting commits older than
 * everything collected are left (a few more for clock skew), before anything
 * is returned. */
#define _GNU_SOURCE
#include "gitint.h"

#include <stdlib.h>
#include <string.h>

enum { SEEN = 1, UNINTERESTING = 2, QUEUED = 4 };
#define SLOP 5

typedef struct {
  git_oid id;
  git_odb_object *c; /* the raw commit, kept for the commits the walk collects */
  int64_t time;      /* committer date */
  uint32_t seq;
  int flags;
} node;

typedef struct {
  node *v;
  size_t n, cap;
  uint32_t *slots; /* hash of ids -> index + 1 */
  size_t nslots;
  size_t *heap;
  size_t nheap, capheap;
  size_t interesting; /* interesting nodes in the queue */
  size_t *out;        /* collected, in walk order */
  size_t nout, capout;
  git_odb *odb;
} walker;

static void walker_free(void *p) {
  walker *w = p;
  for (size_t i = 0; i < w->n; i++)
    git_odb_object_free(w->v[i].c);
  git_odb_free(w->odb);
  free(w->v);
  free(w->slots);
  free(w->heap);
  free(w->out);
  free(w);
}

static size_t hash(const git_oid *id) {
  size_t h;
  memcpy(&h, id->id, sizeof h);
  return h;
}

static int grow_slots(walker *w) {
  size_t ns = w->nslots ? w->nslots * 2 : 4096;
  uint32_t *s = calloc(ns, sizeof *s);
  if (s == NULL) return -1;
  for (size_t i = 0; i < w->n; i++) {
    size_t k = hash(&w->v[i].id) & (ns - 1);
    while (s[k] != 0)
      k = (k + 1) & (ns - 1);
    s[k] = (uint32_t)i + 1;
  }
  free(w->slots);
  w->slots = s;
  w->nslots = ns;
  return 0;
}

/* The node of id, made when new (*fresh set). NULL when out of memory. */
static node *lookup(walker *w, const git_oid *id, int *fresh) {
  *fresh = 0;
  if (w->n * 2 >= w->nslots && grow_slots(w) != 0) return NULL;
  size_t k = hash(id) & (w->nslots - 1);
  while (w->slots[k] != 0) {
    node *x = &w->v[w->slots[k] - 1];
    if (git_oid_equal(&x->id, id)) return x;
    k = (k + 1) & (w->nslots - 1);
  }
  node *v = relish_grow(w->v, w->n, &w->cap, sizeof *v, 1024);
  if (v == NULL) return NULL;
  w->v = v;
  node *x = &w->v[w->n];
  memset(x, 0, sizeof *x);
  x->id = *id;
  x->seq = (uint32_t)w->n;
  w->slots[k] = (uint32_t)++w->n;
  *fresh = 1;
  return x;
}

/* ---- the raw commit: "tree", "parent"..., "author", "committer", other
 * headers (continued on lines starting with a space), a blank line, the
 * message ---- */

typedef struct {
  const char *p, *end;
} text;

static text raw_text(git_odb_object *o) {
  const char *p = git_odb_object_data(o);
  return (text){p, p + git_odb_object_size(o)};
}

/* The value of the next header line named key, advancing *cur past it; NULL
 * when the next line is another header. */
static const char *header(text *cur, const char *key, size_t klen, const char **vend) {
  if ((size_t)(cur->end - cur->p) <= klen || memcmp(cur->p, key, klen) != 0 || cur->p[klen] != ' ')
    return NULL;
  const char *v = cur->p + klen + 1;
  const char *nl = memchr(v, '\n', (size_t)(cur->end - v));
  *vend = nl != NULL ? nl : cur->end;
  cur->p = nl != NULL ? nl + 1 : cur->end;
  return v;
}

/* The i-th parent id; 0 when there is none. */
static int raw_parent(git_odb_object *o, unsigned i, git_oid *out) {
  text t = raw_text(o);
  const char *v, *ve;
  if (header(&t, "tree", 4, &ve) == NULL) return 0;
  for (unsigned k = 0; (v = header(&t, "parent", 6, &ve)) != NULL; k++)
    if (k == i) return ve - v >= GIT_OID_HEXSZ && git_oid_fromstrn(out, v, GIT_OID_HEXSZ) == 0;
  return 0;
}

static unsigned raw_parentcount(git_odb_object *o) {
  text t = raw_text(o);
  const char *ve;
  unsigned n = 0;
  if (header(&t, "tree", 4, &ve) == NULL) return 0;
  while (header(&t, "parent", 6, &ve) != NULL)
    n++;
  return n;
}

typedef struct {
  const char *name, *email, *msg;
  size_t name_len, email_len, msg_len;
  int64_t time, ctime;
} raw_commit;

/* "Name <email> 1700000000 +0100" */
static void signature(const char *v, const char *ve, const char **name, size_t *nlen,
                      const char **email, size_t *elen, int64_t *time) {
  const char *lt = memchr(v, '<', (size_t)(ve - v));
  const char *gt = lt != NULL ? memchr(lt, '>', (size_t)(ve - lt)) : NULL;
  *time = 0;
  if (lt == NULL || gt == NULL) {
    *name = v;
    *nlen = (size_t)(ve - v);
    *email = ve;
    *elen = 0;
    return;
  }
  const char *ne = lt;
  while (ne > v && ne[-1] == ' ')
    ne--;
  *name = v;
  *nlen = (size_t)(ne - v);
  *email = lt + 1;
  *elen = (size_t)(gt - lt - 1);
  for (const char *p = gt + 1; p < ve && *p == ' '; p++)
    if (p + 1 < ve && p[1] >= '0' && p[1] <= '9') {
      *time = strtoll(p + 1, NULL, 10);
      break;
    }
}

/* Parses a raw commit; -1 when it is not one. */
static int raw_parse(git_odb_object *o, raw_commit *c) {
  text t = raw_text(o);
  const char *v, *ve;
  memset(c, 0, sizeof *c);
  if (header(&t, "tree", 4, &ve) == NULL) return -1;
  while (header(&t, "parent", 6, &ve) != NULL)
    ;
  size_t el;
  const char *e;
  if ((v = header(&t, "author", 6, &ve)) == NULL) return -1;
  signature(v, ve, &c->name, &c->name_len, &c->email, &c->email_len, &c->time);
  if ((v = header(&t, "committer", 9, &ve)) != NULL) {
    const char *n;
    size_t nl;
    signature(v, ve, &n, &nl, &e, &el, &c->ctime);
  }
  /* the other headers, then the blank line */
  while (t.p < t.end && *t.p != '\n') {
    const char *nl = memchr(t.p, '\n', (size_t)(t.end - t.p));
    t.p = nl != NULL ? nl + 1 : t.end;
  }
  if (t.p < t.end) t.p++;
  c->msg = t.p;
  c->msg_len = (size_t)(t.end - t.p);
  return 0;
}

/* The queue: newest committer date first, then first queued first. */
static int before(const walker *w, size_t a, size_t b) {
  const node *x = &w->v[a], *y = &w->v[b];
  return x->time != y->time ? x->time > y->time : x->seq < y->seq;
}

static int push(walker *w, size_t i) {
  size_t *h = relish_grow(w->heap, w->nheap, &w->capheap, sizeof *h, 256);
  if (h == NULL) return -1;
  w->heap = h;
  size_t k = w->nheap++;
  while (k > 0 && before(w, i, w->heap[(k - 1) / 2])) {
    w->heap[k] = w->heap[(k - 1) / 2];
    k = (k - 1) / 2;
  }
  w->heap[k] = i;
  w->v[i].flags |= QUEUED;
  if (!(w->v[i].flags & UNINTERESTING)) w->interesting++;
  return 0;
}

static size_t pop(walker *w) {
  size_t top = w->heap[0], last = w->heap[--w->nheap], k = 0;
  for (;;) {
    size_t c = 2 * k + 1;
    if (c >= w->nheap) break;
    if (c + 1 < w->nheap && before(w, w->heap[c + 1], w->heap[c])) c++;
    if (!before(w, w->heap[c], last)) break;
    w->heap[k] = w->heap[c];
    k = c;
  }
  if (w->nheap > 0) w->heap[k] = last;
  w->v[top].flags &= ~QUEUED;
  if (!(w->v[top].flags & UNINTERESTING)) w->interesting--;
  return top;
}

/* Reads the commit of node i (once) and queues it. */
static int load_and_queue(walker *w, size_t i, int uninteresting) {
  node *x = &w->v[i];
  if (uninteresting) x->flags |= UNINTERESTING;
  if (x->c == NULL) {
    raw_commit rc;
    int err = git_odb_read(&x->c, w->odb, &x->id);
    if (err < 0) return err;
    if (git_odb_object_type(x->c) != GIT_OBJECT_COMMIT || raw_parse(x->c, &rc) != 0) {
      git_error_set_str(GIT_ERROR_OBJECT, "not a commit, or a malformed one");
      return GIT_ERROR;
    }
    x->time = rc.ctime;
  }
  return push(w, i) == 0 ? 0 : GIT_ERROR;
}

static node *find(walker *w, const git_oid *id) {
  if (w->nslots == 0) return NULL;
  size_t k = hash(id) & (w->nslots - 1);
  while (w->slots[k] != 0) {
    node *x = &w->v[w->slots[k] - 1];
    if (git_oid_equal(&x->id, id)) return x;
    k = (k + 1) & (w->nslots - 1);
  }
  return NULL;
}

/* Marks node i and its known ancestors uninteresting: the walk reached them
 * from `to` before `from`'s side caught up. -2 when out of memory. */
static int spread(walker *w, size_t i) {
  size_t *stack = malloc(64 * sizeof *stack), n = 0, cap = 64;
  if (stack == NULL) return -2;
  stack[n++] = i;
  while (n > 0) {
    node *x = &w->v[stack[--n]];
    if (x->flags & UNINTERESTING) continue;
    x->flags |= UNINTERESTING;
    if (x->flags & QUEUED) w->interesting--;
    unsigned np = x->c != NULL ? raw_parentcount(x->c) : 0;
    for (unsigned p = 0; p < np; p++) {
      git_oid pid;
      node *y = raw_parent(x->c, p, &pid) ? find(w, &pid) : NULL;
      if (y == NULL || (y->flags & UNINTERESTING)) continue;
      size_t *s = relish_grow(stack, n, &cap, sizeof *s, 64);
      if (s == NULL) {
        free(stack);
        return -2;
      }
      stack = s;
      stack[n++] = (size_t)(y - w->v);
    }
  }
  free(stack);
  return 0;
}

/* Walks to..^from into w->out. Returns 0 or a libgit2 error; -2 when out of
 * memory. max < 0: all; without `from` the walk stops at max. */
static int walk(walker *w, const git_oid *to, const git_oid *from, int first_parent,
                long long max) {
  int fresh, rc;
  node *x = lookup(w, to, &fresh);
  if (x == NULL) return -2;
  x->flags |= SEEN;
  if ((rc = load_and_queue(w, (size_t)(x - w->v), 0)) < 0) return rc;
  if (from != NULL) {
    x = lookup(w, from, &fresh);
    if (x == NULL) return -2;
    if (!fresh) {
      if (spread(w, (size_t)(x - w->v)) != 0) return -2;
    } else {
      x->flags |= SEEN;
      if ((rc = load_and_queue(w, (size_t)(x - w->v), 1)) < 0) return rc;
    }
  }
  int64_t oldest = INT64_MAX;
  int slop = SLOP;
  while (w->nheap > 0) {
    if (w->interesting == 0) {
      /* only uninteresting commits left: go on while they may still reach
       * something collected, then a few more for clock skew */
      if (w->v[w->heap[0]].time < oldest && --slop < 0) break;
    } else {
      slop = SLOP;
    }
    if (from == NULL && max >= 0 && (long long)w->nout >= max) break;
    size_t i = pop(w);
    node *c = &w->v[i];
    int unint = (c->flags & UNINTERESTING) != 0;
    unsigned np = raw_parentcount(c->c);
    if (!unint && first_parent && np > 1) np = 1;
    for (unsigned p = 0; p < np; p++) {
      git_oid pid;
      if (!raw_parent(w->v[i].c, p, &pid)) break;
      node *y = lookup(w, &pid, &fresh);
      if (y == NULL) return -2;
      c = &w->v[i]; /* lookup may move the nodes */
      size_t yi = (size_t)(y - w->v);
      if (fresh) {
        y->flags |= SEEN;
        if ((rc = load_and_queue(w, yi, unint)) < 0) return rc;
      } else if (unint && !(y->flags & UNINTERESTING) && spread(w, yi) != 0) {
        return -2;
      }
    }
    c = &w->v[i];
    if (unint) {
      git_odb_object_free(c->c);
      c->c = NULL;
      continue;
    }
    size_t *o = relish_grow(w->out, w->nout, &w->capout, sizeof *o, 1024);
    if (o == NULL) return -2;
    w->out = o;
    w->out[w->nout++] = i;
    if (c->time < oldest) oldest = c->time;
    if ((w->nout & 1023) == 0 && relish_interrupted()) return GIT_EUSER;
  }
  return 0;
}

/* True when commit c changes something under the pathspec compared with
 * each of its parents (a root commit: when the pathspec matches its tree). */
static int touches(git_repository *repo, const git_oid *id, git_pathspec *ps, git_diff_options *o,
                   int first_parent) {
  git_commit *c = NULL;
  git_tree *tree = NULL;
  if (git_commit_lookup(&c, repo, id) < 0 || git_commit_tree(&tree, c) < 0) {
    git_commit_free(c);
    git_error_clear();
    return 0;
  }
  unsigned np = git_commit_parentcount(c);
  int hit = 0;
  if (np == 0) {
    hit = git_pathspec_match_tree(NULL, tree, GIT_PATHSPEC_NO_MATCH_ERROR, ps) == 0;
  } else {
    hit = 1;
    for (unsigned i = 0; i < (first_parent ? 1 : np) && hit; i++) {
      git_commit *p = NULL;
      git_tree *pt = NULL;
      git_diff *d = NULL;
      if (git_commit_parent(&p, c, i) == 0 && git_commit_tree(&pt, p) == 0 &&
          git_diff_tree_to_tree(&d, repo, pt, tree, o) == 0)
        hit = git_diff_num_deltas(d) > 0;
      git_diff_free(d);
      git_tree_free(pt);
      git_commit_free(p);
    }
  }
  git_tree_free(tree);
  git_commit_free(c);
  git_error_clear();
  return hit;
}

/* One line at p: its length with the newline (*next) and without trailing
 * whitespace (returned). */
static size_t line_at(const char *p, const char *end, size_t *next) {
  const char *nl = memchr(p, '\n', (size_t)(end - p));
  *next = nl != NULL ? (size_t)(nl - p) + 1 : (size_t)(end - p);
  size_t n = nl != NULL ? (size_t)(nl - p) : (size_t)(end - p);
  while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t' || p[n - 1] == '\r'))
    n--;
  return n;
}

/* git log's %s: blank lines skipped, then the first paragraph's lines,
 * trailing whitespace trimmed, joined by one space. */
static void push_summary(lua_State *L, const char *m, size_t len) {
  const char *end = m + len;
  size_t next, n;
  while (m < end && (n = line_at(m, end, &next)) == 0)
    m += next;
  if (m >= end) {
    lua_pushliteral(L, "");
    return;
  }
  n = line_at(m, end, &next);
  size_t n2 = 0, next2 = 0;
  if (m + next >= end || (n2 = line_at(m + next, end, &next2)) == 0) {
    lua_pushlstring(L, m, n); /* the usual one-line subject */
    return;
  }
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (int first = 1; m < end && (n = line_at(m, end, &next)) > 0; first = 0, m += next) {
    if (!first) luaL_addchar(&b, ' ');
    luaL_addlstring(&b, m, n);
  }
  luaL_pushresult(&b);
}

static void push_commit(lua_State *L, const git_oid *id, git_odb_object *o) {
  char hex[GIT_OID_HEXSZ + 1];
  raw_commit c;
  raw_parse(o, &c);
  lua_createtable(L, 0, 9); /* the eight fields and parents: no rehash */
  rg_hex(id, hex);
  lua_pushlstring(L, hex, GIT_OID_HEXSZ);
  lua_setfield(L, -2, "id");
  lua_pushlstring(L, hex, 7);
  lua_setfield(L, -2, "short");
  lua_pushlstring(L, c.name, c.name_len);
  lua_setfield(L, -2, "author");
  lua_pushlstring(L, c.email, c.email_len);
  lua_setfield(L, -2, "email");
  lua_pushinteger(L, (lua_Integer)c.time);
  lua_setfield(L, -2, "time");
  push_summary(L, c.msg, c.msg_len);
  lua_setfield(L, -2, "summary");
  lua_pushlstring(L, c.msg, c.msg_len);
  lua_setfield(L, -2, "message");
  text t = raw_text(o);
  const char *v, *ve;
  header(&t, "tree", 4, &ve);
  lua_createtable(L, 1, 0);
  for (lua_Integer k = 1; (v = header(&t, "parent", 6, &ve)) != NULL; k++) {
    lua_pushlstring(L, v, ve - v >= GIT_OID_HEXSZ ? GIT_OID_HEXSZ : (size_t)(ve - v));
    lua_rawseti(L, -2, k);
  }
  lua_setfield(L, -2, "parents");
}

static void free_pathspec(void *p) { git_pathspec_free(p); }

static const char *const log_opts[] = {"from", "to", "paths", "max", "first_parent", NULL};

/* repo:log{from=, to=, paths=, max=, first_parent=} -> commits, newest first
 * (from exclusive, like `git log from..to`; to defaults to HEAD) */
int l_repo_log(lua_State *L) {
  git_repository *repo = rg_checkrepo(L, 1);
  rg_checkopts_table(L, 2, "repo:log", log_opts);
  const char *from = rg_optfield(L, 2, "repo:log", "from");
  const char *to = rg_optfield(L, 2, "repo:log", "to");
  int first_parent = rg_optbool(L, 2, "first_parent", 0);
  lua_Integer max = -1;
  lua_getfield(L, 2, "max");
  if (!lua_isnil(L, -1)) {
    int isint = 0;
    max = lua_tointegerx(L, -1, &isint);
    if (!isint || max < 0) luaL_error(L, "repo:log: max must be a non-negative integer");
  }
  lua_settop(L, 2);
  int pt = lua_getfield(L, 2, "paths"); /* 3 */
  if (pt == LUA_TSTRING) {
    lua_createtable(L, 1, 0);
    lua_insert(L, -2);
    lua_rawseti(L, -2, 1);
  } else if (pt != LUA_TNIL && pt != LUA_TTABLE) {
    luaL_error(L, "repo:log: paths must be a list of paths");
  }
  relish_box *b = relish_box_new(L); /* 4 */
  relish_status st = {0};
  git_pathspec *ps = NULL;
  git_diff_options dopt;
  git_diff_options_init(&dopt, GIT_DIFF_OPTIONS_VERSION);
  if (lua_istable(L, 3)) {
    lua_Integer n = luaL_len(L, 3);
    char **list = relish_box_add(b, calloc((size_t)n + 1, sizeof *list), rg_free_mem);
    if (list == NULL) return luaL_error(L, "not enough memory");
    for (lua_Integer i = 1; i <= n; i++) {
      if (lua_geti(L, 3, i) != LUA_TSTRING)
        luaL_error(L, "repo:log: paths[%d] must be a string", (int)i);
      list[i - 1] = (char *)lua_tostring(L, -1); /* the list keeps it */
      lua_pop(L, 1);
    }
    dopt.pathspec.strings = list;
    dopt.pathspec.count = (size_t)n;
    int rc = git_pathspec_new(&ps, &dopt.pathspec);
    if (rc < 0) return rg_raise_git(L, "log", NULL, rc);
    relish_box_add(b, ps, free_pathspec);
  }
  if (to == NULL && git_repository_head_unborn(repo) == 1) { /* no commits yet */
    lua_newtable(L);
    return 1;
  }
  git_object *obj = NULL;
  git_oid to_id, from_id;
  if (rg_resolve(L, repo, repo, to ? to : "HEAD", GIT_OBJECT_COMMIT, &obj, &st) != 0)
    return rg_raise(L, "log", to ? to : "HEAD", &st);
  git_oid_cpy(&to_id, git_object_id(obj));
  git_object_free(obj);
  if (from != NULL) {
    if (rg_resolve(L, repo, repo, from, GIT_OBJECT_COMMIT, &obj, &st) != 0)
      return rg_raise(L, "log", from, &st);
    git_oid_cpy(&from_id, git_object_id(obj));
    git_object_free(obj);
  }
  walker *w = relish_box_add(b, calloc(1, sizeof *w), walker_free);
  if (w == NULL) return luaL_error(L, "not enough memory");
  int rc = git_repository_odb(&w->odb, repo);
  if (rc < 0) return rg_raise_git(L, "log", NULL, rc);
  /* like git, which does not hash every object it reads either */
  git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 0);
  rc = walk(w, &to_id, from ? &from_id : NULL, first_parent, ps == NULL ? max : -1);
  git_libgit2_opts(GIT_OPT_ENABLE_STRICT_HASH_VERIFICATION, 1);
  if (rc == GIT_EUSER) return relish_raise_interrupted(L);
  if (rc == -2) return luaL_error(L, "not enough memory");
  if (rc < 0) return rg_raise_git(L, "log", NULL, rc);
  relish_gc_pause(L, w->nout > 256); /* thousands of commit tables, all returned */
  lua_createtable(L, (int)(max >= 0 && (size_t)max < w->nout ? (size_t)max : w->nout), 0);
  lua_Integer k = 0;
  for (size_t i = 0; i < w->nout && (max < 0 || k < max); i++) {
    node *x = &w->v[w->out[i]];
    if (x->flags & UNINTERESTING) continue; /* found reachable from `from` after all */
    if (ps != NULL && !touches(repo, &x->id, ps, &dopt, first_parent)) continue;
    push_commit(L, &x->id, x->c);
    lua_rawseti(L, -2, ++k);
  }
  relish_box_release(b);
  return 1;
}
