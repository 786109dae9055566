/* gitint.h: what the files of relish.git share (the repository handle,
 * errors, revisions, the effects' actions, the dry-run plan, change sets
 * that the commit and revert effects apply and their undo reverses, the
 * network layer); nothing here is seen by other modules. */
#ifndef RELISH_GITINT_H
#define RELISH_GITINT_H

#include "relish.h"

#include <git2.h>
#include <stddef.h>
#include <stdint.h>

#define RG_REPO_MT "relish.git.Repository"

/* ---- git.c: the handle, the box, errors ---- */

typedef struct {
  git_repository *repo; /* NULL once closed */
} rg_repo;

/* The open repository at idx; raises when it is not one or is closed. */
git_repository *rg_checkrepo(lua_State *L, int idx);
/* Pushes a Repository userdata (closed until its repo is set). */
rg_repo *rg_newrepo(lua_State *L);
/* Work tree without its trailing slash, or the git dir of a bare repository
 * (into out, at most 4096 bytes). */
const char *rg_label(git_repository *repo, char *out, size_t size);

/* Every C resource a Lua-called function holds lives in a relish_box
 * (relish.h), so a Lua error at any point leaks nothing. */

/* Free functions of the libgit2 types, for the box. */
void rg_free_object(void *p);
void rg_free_ref(void *p);
void rg_free_index(void *p);
void rg_free_repo(void *p);
void rg_free_diff(void *p);
void rg_free_remote(void *p);
void rg_free_walk(void *p);
void rg_free_sig(void *p);
void rg_free_buf(void *p); /* a malloc'd git_buf */
void rg_free_mem(void *p);

/* Kind of a libgit2 error code (with git_error_last for the class). */
const char *rg_kind_of(int code);
/* Fill st from a libgit2 failure: "what: libgit2 message". Returns -1. */
int rg_set_git(relish_status *st, int code, const char *what);
/* Push an error value {kind, message = "git.VERB TARGET: msg"} (redacted). */
void rg_push_error(lua_State *L, const char *verb, const char *target, const relish_status *st);
/* Raise that error value (a runtime failure: the caller's step fails). */
int rg_raise(lua_State *L, const char *verb, const char *target, const relish_status *st);
/* rg_raise for a libgit2 code */
int rg_raise_git(lua_State *L, const char *verb, const char *target, int code);

/* relish_checkopts for a function that reads its options unconditionally: none or
 * nil becomes an empty table at idx (the last argument), anything else must
 * be a table (raises as luaL_checktype). */
void rg_checkopts_table(lua_State *L, int idx, const char *fname, const char *const *known);
/* The string argument at idx; raises when it is anything else (a number
 * too, which luaL_checkstring would take: repo:tag(5) is a mistake). */
const char *rg_checkstr(lua_State *L, int idx);
/* The same, or dflt when the argument is none or nil. */
const char *rg_optstr(lua_State *L, int idx, const char *dflt);
/* Optional string field of the table at idx (NULL when absent; raises when
 * not a string). The value stays referenced by the table. */
const char *rg_optfield(lua_State *L, int idx, const char *fname, const char *key);
/* Optional boolean field of the table at idx, by Lua truth (dflt when the
 * field or the table is absent). */
int rg_optbool(lua_State *L, int idx, const char *key, int dflt);

void rg_hex(const git_oid *id, char out[GIT_OID_HEXSZ + 1]);
void rg_short(const git_oid *id, char out[8]);
/* Parses a full 40-digit hex id; -1 when it is not one. */
int rg_parse_oid(const char *s, git_oid *out);

/* The identity for commits and tags: GIT_AUTHOR_* / GIT_COMMITTER_*, then
 * user.name / user.email of the repository's config. */
int rg_signature(git_repository *repo, int author, git_signature **out, relish_status *st);
/* A commit or tag message cleaned as git commit and git tag -m do: trailing
 * spaces and blank lines go, one final newline. malloc'd; NULL when out of
 * memory or when libgit2 refuses it. */
char *rg_clean_message(const char *msg);

/* ---- effects (git.c) ----
 * A Lua-called effect prepares everything (objects written, values before
 * and after, the undo record as a Lua table) and hands the gate an action
 * whose argument is an rg_action userdata: the struct of the effect (which
 * starts with an rg_action) and, as user values, the box that owns its C
 * resources and the Repository handle its repo belongs to. The providers'
 * apply and plan get it back with rg_action_check. */
typedef struct {
  const char *kind; /* the registered kind, checked by rg_action_check */
  git_repository *repo;
  relish_box *box;
} rg_action;

/* Pushes an action userdata of size bytes (at least an rg_action), its box
 * and repo set from the values at box_idx and repo_idx (0: none). */
void *rg_action_new(lua_State *L, size_t size, const char *kind, int box_idx, int repo_idx);
/* The action at idx (raises unless it is one of kind). */
void *rg_action_check(lua_State *L, int idx, const char *kind);

/* Undo records are Lua tables: set a string or a full hex id on the table
 * at the stack top. */
void rg_rec_set(lua_State *L, const char *key, const char *value);
void rg_rec_set_oid(lua_State *L, const char *key, const git_oid *id);

/* ---- plan.c: the dry-run overlay ---- */

/* True in a dry-run; outside one, forgets what the last one planned. */
int rg_plan_active(lua_State *L);
/* The repository planned writes compute in: objects go to memory (a mempack
 * backend), and its index carries what earlier planned commits staged. One
 * per repository and run; owned by the plan. */
git_repository *rg_plan_scratch(lua_State *L, git_repository *repo, relish_status *st);
/* A planned ref value: 0 not planned, 1 planned at *out, -1 planned deleted.
 * "HEAD" follows the live symbolic HEAD to its branch. */
int rg_plan_ref(lua_State *L, git_repository *repo, const char *ref, git_oid *out);
void rg_plan_set_ref(lua_State *L, git_repository *repo, const char *ref, const git_oid *id);

/* ---- revisions (git.c) ---- */

/* The current value of ref (a full name or "HEAD"), planned values first in
 * a dry-run: 1 present (*out set), 0 absent, <0 libgit2 error. */
int rg_ref_value(lua_State *L, git_repository *repo, const char *ref, git_oid *out);
/* The full name of the branch HEAD points at ("refs/heads/main"), also when
 * unborn; NULL when detached. malloc'd. */
char *rg_head_ref(git_repository *repo);
/* Resolve a revision to an object, looked up in `look`: when that is the
 * plan's scratch repository (effects in a dry-run), planned refs first; a
 * read passes repo itself and sees the live refs.
 * peel: GIT_OBJECT_COMMIT to peel to a commit, GIT_OBJECT_ANY to keep tags. */
int rg_resolve(lua_State *L, git_repository *repo, git_repository *look, const char *rev,
               git_object_t peel, git_object **out, relish_status *st);

/* ---- changes.c: what a commit or revert does to the work tree and index ---- */

typedef struct {
  int present;
  git_oid id;
  uint32_t mode; /* git file mode: 0100644, 0100755, 0120000 */
} rg_side;

typedef struct {
  char *path;
  int wt, ix; /* the work tree file, the index entry are changed */
  rg_side wt_before, wt_after;
  rg_side ix_before, ix_after;
} rg_change;

typedef struct {
  rg_change *v;
  size_t n, cap;
} rg_changes;

int rg_side_eq(const rg_side *a, const rg_side *b);
void rg_changes_free(void *p); /* for the box: frees the list and its paths */
rg_change *rg_changes_add(rg_changes *c, const char *path);
/* Pushes the list as an undo record field:
 * {{path=, wt = {before=, after=}, ix = {...}}, ...}. */
void rg_changes_push(lua_State *L, const rg_changes *c);
/* From the decoded record (a Lua list at idx); raises when malformed. */
void rg_changes_from_lua(lua_State *L, int idx, rg_changes *c, const char *kind);

/* The work tree file at path: 1 present (id, mode), 0 absent; a directory
 * counts as present with mode 040000. -1 on failure. */
int rg_wt_read(git_repository *repo, const char *path, rg_side *out, relish_status *st);
/* Make the work tree file at path what side says (blob content from the odb,
 * atomically; or removed). */
int rg_wt_write(git_repository *repo, const char *path, const rg_side *side, relish_status *st);

/* Act: write each change's after side to the work tree and index, then move
 * ref from before to after (compare-and-swap). Interruption is checked
 * between the steps; a stop leaves what the undo record describes. */
int rg_changes_apply(git_repository *repo, const rg_changes *c, const char *ref,
                     const git_oid *before, const git_oid *after, const char *reflog,
                     relish_status *st);
/* Undo: ref back from after to before when it is still at after, then each
 * work tree file and index entry that is still at after goes back to before.
 * Entries changed since are left and listed in st (kind conflict). */
int rg_changes_revert(git_repository *repo, const rg_changes *c, const char *ref,
                      const git_oid *before, const git_oid *after, relish_status *st);

/* Compare-and-swap of a ref: from (NULL: must be absent) to to (NULL: delete).
 * "HEAD" detached is updated directly. */
int rg_ref_cas(git_repository *repo, const char *ref, const git_oid *from, const git_oid *to,
               const char *reflog, relish_status *st);

/* Plan detail: git's diffstat of two trees ("N files changed, ..."), and
 * the summary line. malloc'd; NULL when out of memory. */
char *rg_diffstat_text(git_repository *repo, git_tree *a, git_tree *b, char *summary,
                       size_t summary_size);

/* ---- remote.c: the network ---- */

/* How a remote operation authenticates, and where its secret comes from
 * (so an undo in another process can get it again). */
typedef struct {
  enum { RG_AUTH_NONE, RG_AUTH_TOKEN, RG_AUTH_AGENT, RG_AUTH_KEY } type;
  char *user;       /* username for a token, default x-access-token */
  char *secret;     /* the token or the key's passphrase */
  char *key;        /* ssh private key file */
  char *source_env; /* the secret came from this environment variable */
  char *source_file;
} rg_auth;

/* One ref update of a push: dst on the remote from old to new (absent:
 * create / delete). */
typedef struct {
  char *dst;
  char *src; /* the local ref pushed, or NULL: a temporary ref under refs/relish/ */
  int has_old, has_new, force, lease, has_expect;
  git_oid old, new, expect;
  const char *rule; /* undo: "delete", "restore" or "revert" */
} rg_update;

typedef struct rg_net rg_net;

/* Parse auth (a secret, "agent", or {ssh_key=, passphrase=, username=}) at
 * idx; raises on misuse. The auth is boxed. */
rg_auth *rg_auth_check(lua_State *L, relish_box *b, int idx, const char *fname);
/* Pushes where the auth comes from, for an undo record: its type, user, key
 * file and the source of its secret, never the secret itself. */
void rg_auth_push(lua_State *L, const rg_auth *a);
/* From an undo record's auth: the secret is read again from its source. */
int rg_auth_from_lua(lua_State *L, relish_box *b, int idx, rg_auth **out, relish_status *st);

/* The URL of the remote called name in the config, without its password,
 * a relative path made absolute as git reads it (from the work tree's root,
 * or a bare repository's git dir): 0, or <0 when there is no such remote. */
int rg_remote_config_url(git_repository *repo, const char *name, char *out, size_t size);
/* The remote by name (its URL, push URL and fetch refspec from the config,
 * insteadOf applied), or one for a URL or path; a relative path is the
 * repository's, as for rg_remote_config_url. In memory either way. */
int rg_remote_open(git_repository *repo, const char *name, git_remote **out, relish_status *st);
/* A URL without its password, for messages, plans and records. */
void rg_url_clean(const char *url, char *out, size_t size);

/* ca: a CA file (PEM) TLS trusts instead of the system bundle, or NULL.
 * libgit2's trusted CAs are process-wide: each operation that connects sets
 * them (GIT_OPT_SET_SSL_CERT_LOCATIONS) to its ca or back to the system's. */
rg_net *rg_net_new(relish_box *b, const rg_auth *auth, const char *ca);
/* The net's ca, made absolute (NULL: the system's CAs). */
const char *rg_net_ca(const rg_net *n);
/* Connect for push or fetch and list the remote's refs. */
int rg_net_connect(rg_net *n, git_remote *remote, int direction, relish_status *st);
/* The advertised value of ref after connect: 1 present, 0 absent. */
int rg_net_remote_value(rg_net *n, git_remote *remote, const char *ref, git_oid *out);
/* Push these updates on the connected remote; rejections land in st (kind
 * non_fast_forward for a stale or non-fast-forward ref, conflict for other
 * refusals). The lease of each update is checked against the remote again
 * right before the upload. libgit2 1.5 pushes only from refs: an update
 * without src goes through a temporary ref refs/relish/push/..., deleted
 * after the push. */
int rg_net_push(rg_net *n, git_repository *repo, git_remote *remote, rg_update *u, size_t nu,
                relish_status *st);
/* Fetch refspecs (NULL: the configured ones); updated refs collected. */
int rg_net_fetch(rg_net *n, git_remote *remote, const char *const *refspecs, size_t nspecs,
                 relish_status *st);
/* What a fetch updated, for the Lua result. */
size_t rg_net_tips(rg_net *n, const char **ref, const git_oid **old, const git_oid **new, size_t i);
/* The fetch options (callbacks) of the net, for clone. */
void rg_net_fetch_options(rg_net *n, git_fetch_options *fo);
/* After a failed libgit2 network call: interruption, timeout, auth or the
 * libgit2 error, into st. */
int rg_net_status(rg_net *n, int code, const char *what, relish_status *st);
/* True when the last failure was an interruption or a timeout (raised as
 * kinds of their own, "interrupted" and "timeout"). */
int rg_net_stopped(const rg_net *n);

/* ---- the functions Lua calls ---- */
int l_git_open(lua_State *L);
int l_git_init(lua_State *L);
int l_git_clone(lua_State *L);

int l_repo_status(lua_State *L);
int l_repo_is_dirty(lua_State *L);
int l_repo_describe(lua_State *L);
int l_repo_tags(lua_State *L);
int l_repo_log(lua_State *L);
int l_repo_diff_stat(lua_State *L);
int l_repo_tree(lua_State *L);
int l_repo_blob(lua_State *L);

int l_repo_tag(lua_State *L);
int l_repo_delete_tag(lua_State *L);
int l_repo_create_branch(lua_State *L);
int l_repo_delete_branch(lua_State *L);
int l_repo_commit(lua_State *L);
int l_repo_revert(lua_State *L);
int l_repo_fetch(lua_State *L);
int l_repo_push(lua_State *L);

/* The providers of every git effect kind, registered by luaopen: the apply
 * and plan of each next to its Lua-called function (refs.c, commit.c,
 * push.c), the undos in undo.c and push.c. */
extern const relish_provider rg_ref_providers[];    /* tag, delete_tag, branch, delete_branch */
extern const relish_provider rg_commit_providers[]; /* commit, revert */
extern const relish_provider rg_push_providers[];   /* push */
int rg_undo_tag(lua_State *L);
int rg_undo_delete_tag(lua_State *L);
int rg_undo_branch(lua_State *L);
int rg_undo_delete_branch(lua_State *L);
int rg_undo_commit(lua_State *L);
int rg_undo_revert(lua_State *L);
int rg_undo_push(lua_State *L);

/* Undo records (undo.c): field key of the record at t as a string (raises
 * "malformed <kind> undo record" when required and missing), or as a full
 * object id (0 when absent); and whether two maybe-absent ids are the same. */
const char *rg_rec_str(lua_State *L, int t, const char *kind, const char *key, int required);
int rg_rec_oid(lua_State *L, int t, const char *kind, const char *key, git_oid *out);
int rg_same_oid(int pa, const git_oid *a, int pb, const git_oid *b);
/* push.c: whether a revert relish pushed ("Relish-Revert: A..B") on tip's
 * first-parent chain takes commit back. */
int rg_reverted_on(git_repository *repo, const git_oid *tip, const git_oid *commit);

#endif
