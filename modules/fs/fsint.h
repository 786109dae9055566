/* fsint.h: what the files of relish.fs share (path resolution, pre-images,
 * diffs, SHA-256); nothing here is seen by other modules. */
#ifndef RELISH_FSINT_H
#define RELISH_FSINT_H

#include "relish.h"

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

/* Default ceiling on the content bytes an action's undo record may hold. */
#define FS_DEFAULT_UNDO_CAP ((size_t)16 << 20)
/* Text at most this large on both sides gets a unified diff in plans. */
#define FS_DIFF_MAX ((size_t)256 << 10)
/* Deepest directory tree remove captures and undo restores. */
#define FS_MAX_DEPTH 256

/* ---- sha256.c ---- */
typedef struct {
  uint32_t h[8];
  uint64_t total;
  unsigned char buf[64];
  size_t used;
} fs_sha256_ctx;

void fs_sha256_init(fs_sha256_ctx *c);
void fs_sha256_update(fs_sha256_ctx *c, const void *data, size_t n);
void fs_sha256_final(fs_sha256_ctx *c, unsigned char out[32]);
/* Lower-case hex digest of data into out (65 bytes with the NUL). */
void fs_sha256_hex(const void *data, size_t n, char out[65]);
void fs_hex(const unsigned char *d, size_t n, char *out);

/* ---- fs.c: failures, paths ---- */

/* The sorted names of a directory in one malloc'd block (NULL-terminated
 * pointers, then the strings): free() it once. NULL with *err on failure. */
char **fs_read_names(const char *dir, size_t *count, int *err);
/* Unlinks the temp files (.NAME.relish-XXXXXX) a killed write of name in the
 * open directory dfd left. */
void fs_remove_leftovers(int dfd, const char *name);

/* Raises {kind, message = "fs.VERB PATH: msg", path = PATH} from a failure
 * found in C: every runtime failure of relish.fs (kinds: not_found,
 * permission, exists, too_large, io). */
int fs_raise(lua_State *L, const char *verb, const char *path, const relish_status *st);

/* Path of up to PATH_MAX bytes; overlong ones fail with ENAMETOOLONG. */
int fs_join(char out[PATH_MAX], const char *dir, const char *name, relish_status *st);
/* Absolute, lexically cleaned path (no symlink resolution). */
int fs_abspath(const char *in, char out[PATH_MAX], relish_status *st);
/* The real path an effect acts on: the parent's realpath joined with the last
 * component, following symlinks at the last component when follow is set
 * (what open(2) would act on). Fails when the parent does not exist. */
int fs_resolve(const char *in, int follow, char out[PATH_MAX], relish_status *st);
/* For a path whose parent does not exist (yet): the deepest existing
 * ancestor's real path with the rest appended, cleaned lexically. */
int fs_resolve_partial(const char *in, char out[PATH_MAX], relish_status *st);
/* Split a resolved path into directory and last component (in place copies). */
void fs_split(const char *path, char dir[PATH_MAX], char base[PATH_MAX]);
/* fsync the directory holding path (after a rename or unlink in it). */
int fs_sync_parent(const char *path, relish_status *st);
/* fsync an open directory; file systems that cannot are no failure. */
int fs_sync_dir(int dfd, relish_status *st);
/* Read a whole open file into malloc'd memory, at most max bytes: more is
 * EFBIG. *out is NUL-terminated. */
int fs_read_fd(int fd, size_t max, char **out, size_t *len, relish_status *st);
/* Atomically put content at path: temp file in the same directory, exact
 * mode, owner if given (uid >= 0), fsync, rename, fsync of the directory. */
int fs_put_file(const char *path, const char *data, size_t len, mode_t mode, long long uid,
                long long gid, relish_status *st);
/* The same for the entry name of the open directory dfd (undo acts there:
 * the directory it checked, not whatever a path resolves to now). */
int fs_put_file_at(int dfd, const char *name, const char *data, size_t len, mode_t mode,
                   long long uid, long long gid, relish_status *st);
/* Atomically make path a symlink to target (temp link + rename). */
int fs_put_link(const char *path, const char *target, relish_status *st);
int fs_put_link_at(int dfd, const char *name, const char *target, relish_status *st);
/* 1 when data is UTF-8 text without NUL bytes. */
int fs_is_text(const char *data, size_t len);
size_t fs_text_prefix(const char *data, size_t len);
/* "1.2 kB", "12.0 MB": human sizes in decimal units. */
void fs_human(size_t n, char out[32]);
/* Mode argument: an integer or an octal string like "0755"; raises on misuse. */
mode_t fs_checkmode(lua_State *L, int idx, const char *fname);
size_t fs_optcap(lua_State *L, int idx, const char *fname);
/* The undo option of the options table at idx: 1 (the default) or 0 for
 * undo = false (irreversible on purpose: no pre-image is kept). */
int fs_optundo(lua_State *L, int idx, const char *fname);
/* A path argument: a non-empty string without NUL bytes; raises otherwise. */
const char *fs_checkpath(lua_State *L, int idx, const char *fname);

/* ---- preimage.c: what an action changes, as a Lua table ---- */

/* How many content bytes a pre-image may still take. */
typedef struct {
  size_t cap, used;
  int over;       /* went past cap: sizes still counted, content not read */
  int no_content; /* undo = false: only the tree's shape (names, types, modes, sizes) */
  size_t files, dirs, links;
} fs_budget;

/* Pushes the pre-image of path (lstat: links are not followed) as a node
 * table {type = "absent"|"file"|"link"|"dir", ...}; directories with their
 * entries when recursive. Content holding a secret in use is not recorded
 * (redacted = true) so secrets never reach the journal. Returns 0, or -1
 * with st set and nothing pushed. */
int fs_capture(lua_State *L, relish_box *b, const char *path, int recursive, fs_budget *bud,
               relish_status *st);
/* Set the fields of a file with this content, or of a symlink, in the node
 * table at idx. */
void fs_node_file(lua_State *L, int node, const char *data, size_t len, const struct stat *sb);
void fs_node_link(lua_State *L, int node, const char *target);
/* A file node without its content: type, owner, mode, times and size. */
void fs_node_stat(lua_State *L, int node, const struct stat *sb);
/* t[key] = bytes when UTF-8 text, else t[key_b64] = base64 (relish.json,
 * which journals the record, encodes only valid UTF-8). */
void fs_set_bytes(lua_State *L, int t, const char *key, const char *data, size_t len);
void fs_set_path(lua_State *L, int t, const char *key, const char *data, size_t len);
/* Fingerprint of a pre-image node: "absent", "file:<sha256>:0644",
 * "link:<target>", "dir:0755", or "dir:0755:<tree sha256>" for a tree (the
 * digest of the tree as compact JSON, keys in capture order). */
void fs_fingerprint(lua_State *L, int node, char *out, size_t outlen);
/* too_large failure naming the sizes. */
int fs_set_too_large(relish_status *st, const fs_budget *bud);
/* Base64 of data into out, room for (len + 2) / 3 * 4 bytes (no NUL). */
void fs_base64(const char *data, size_t len, char *out);
/* Decode into out (room for 3*len/4 bytes); -1 on malformed input. */
long fs_unbase64(const char *in, size_t len, char *out);

/* ---- plan.c: the dry-run overlay ---- */

/* What is at a path before an effect: on disk or, in a dry-run, as earlier
 * planned effects leave it. */
typedef struct {
  int exists;
  struct stat sb;      /* lstat, or made up from the plan */
  int planned;         /* the plan decided this */
  int fresh;           /* created or replaced by the plan: nothing on disk yet */
  const char *content; /* planned file content (anchored in the overlay) */
  size_t len;
  const char *target; /* planned link target */
} fs_pre;

int fs_pre_stat(lua_State *L, const char *path, fs_pre *p, relish_status *st);
/* The same from disk only. Effects fall back to it when what the plan left
 * is something they cannot act on: the recipe's reads see the live world, so
 * it may have skipped a step (a remove) that its real run takes. */
int fs_live_stat(const char *path, fs_pre *p, relish_status *st);
/* True in a dry-run; outside one, forgets what the last one planned. */
int fs_plan_active(lua_State *L);
/* Each provider's plan calls it first: what an earlier dry-run (another gate
 * session) planned never happened, so its overlay is forgotten. */
void fs_plan_open(lua_State *L);
/* Record what a planned effect leaves at path: type "file" (data), "dir",
 * "link" (target) or "absent". */
void fs_plan_set(lua_State *L, const char *path, const char *type, mode_t mode, const char *data,
                 size_t len, const char *target, int fresh);
void fs_plan_set_mode(lua_State *L, const char *path, const struct stat *live, mode_t mode);

/* ---- diff.c ---- */

/* Text in a relish_buf; running out of memory is remembered and reported at
 * the end (by fs_buf_finish), so building code checks once. */
typedef struct {
  relish_buf b;
  int oom;
} fs_buf;

void fs_buf_add(fs_buf *b, const char *s, size_t n);
void fs_buf_printf(fs_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The text (malloc'd, "" when empty), or NULL after running out of memory. */
char *fs_buf_finish(fs_buf *b);

/* Unified diff (3 lines of context) of a -> b under the given labels, or
 * NULL when out of memory. Identical inputs give "". */
char *fs_diff(const char *a, size_t alen, const char *alabel, const char *b, size_t blen,
              const char *blabel);
/* The plan detail for replacing old (NULL: absent) with new: a diff when both
 * are small text, else one line with sizes and digests. malloc'd. */
char *fs_detail(const char *path, const char *old, size_t oldlen, int old_present, const char *new,
                size_t newlen, int new_present);

/* ---- effects.c: the functions Lua calls, and the providers the gate runs ---- */

/* What apply and plan get (the action's arg): the prepared request, made by
 * the Lua-called function after it read the live state. A write's content
 * (a string or a secret) is its user value. */
#define FS_OP_MT "relish.fs.Op"
typedef struct {
  char verb[8];          /* "write", "copy", ...: for messages */
  char path[PATH_MAX];   /* as the recipe gave it */
  char real[PATH_MAX];   /* what it acts on */
  char target[PATH_MAX]; /* symlink: the new link's target */
  mode_t mode;
  long long uid, gid; /* write: the owner to keep, or -1 */
  int later;          /* the parent does not exist yet (a dry-run planned it) */
  int isdir;          /* remove: a directory (tree) */
  int exists;         /* chmod: something is there */
  struct stat sb;     /* chmod: what it changes */
  size_t nends;       /* mkdir: the directories to make are real[0..ends[i]) */
  size_t ends[];
} fs_op;

int l_fs_write(lua_State *L);
int l_fs_copy(lua_State *L);
int l_fs_mkdir(lua_State *L);
int l_fs_remove(lua_State *L);
int l_fs_symlink(lua_State *L);
int l_fs_chmod(lua_State *L);

int fs_apply_put(lua_State *L); /* fs.write, fs.copy */
int fs_plan_put(lua_State *L);
int fs_apply_mkdir(lua_State *L);
int fs_plan_mkdir(lua_State *L);
int fs_apply_remove(lua_State *L);
int fs_plan_remove(lua_State *L);
int fs_apply_symlink(lua_State *L);
int fs_plan_symlink(lua_State *L);
int fs_apply_chmod(lua_State *L);
int fs_plan_chmod(lua_State *L);

/* ---- undo.c: each kind's undo(record), called by the gate ---- */
int fs_undo_write(lua_State *L);
int fs_undo_copy(lua_State *L);
int fs_undo_symlink(lua_State *L);
int fs_undo_remove(lua_State *L);
int fs_undo_mkdir(lua_State *L);
int fs_undo_chmod(lua_State *L);

#endif
