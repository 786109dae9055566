/* diff.c: unified diffs of old -> new text for plans (Myers' O(ND) algorithm
 * with a bound on D, past which the changed middle is shown as replaced), and
 * the one-line summary used for binary or large content. */
#define _GNU_SOURCE
#include "fsint.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DIFF_CONTEXT 3
/* Past this many edits the search stops and the middle is replaced whole,
 * keeping time and memory (D^2 ints) bounded. */
#define DIFF_MAX_D 1000

typedef struct {
  const char *p;
  size_t n; /* with the newline, when the line has one */
  uint64_t h;
} line_t;

enum { OP_EQ, OP_DEL, OP_INS };

void fs_buf_add(fs_buf *b, const char *s, size_t n) {
  if (!b->oom && relish_buf_add(&b->b, s, n) != 0) b->oom = 1;
}

void fs_buf_printf(fs_buf *b, const char *fmt, ...) {
  char tmp[PATH_MAX + 256];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n > 0) fs_buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

char *fs_buf_finish(fs_buf *b) {
  if (b->oom) {
    relish_buf_free(&b->b);
    return NULL;
  }
  if (b->b.data == NULL) return strdup("");
  return b->b.data;
}

static size_t split_lines(const char *s, size_t len, line_t **out) {
  size_t n = 0;
  for (size_t i = 0; i < len; i++)
    if (s[i] == '\n') n++;
  if (len > 0 && s[len - 1] != '\n') n++;
  line_t *v = malloc((n ? n : 1) * sizeof *v);
  if (v == NULL) return (size_t)-1;
  size_t k = 0, start = 0;
  for (size_t i = 0; i <= len && k < n; i++) {
    if (i == len || s[i] == '\n') {
      size_t end = i < len ? i + 1 : i;
      uint64_t h = 1469598103934665603ull;
      for (size_t j = start; j < end; j++)
        h = (h ^ (unsigned char)s[j]) * 1099511628211ull;
      v[k].p = s + start;
      v[k].n = end - start;
      v[k].h = h;
      k++;
      start = end;
    }
  }
  *out = v;
  return n;
}

static int line_eq(const line_t *a, const line_t *b) {
  return a->h == b->h && a->n == b->n && memcmp(a->p, b->p, a->n) == 0;
}

/* Edit script for a[0..n) -> b[0..m) appended to ops (reversed), or -1 when
 * D exceeds the bound or memory runs out. */
static int myers(const line_t *a, int n, const line_t *b, int m, char *ops, int *nops) {
  int max = n + m, lim = max < DIFF_MAX_D ? max : DIFF_MAX_D;
  int *v = calloc((size_t)(2 * lim + 3), sizeof *v);
  int *trace = NULL;
  size_t tcap = 0;
  int off = lim + 1, found = -1;
  if (v == NULL) return -1;
  v[off + 1] = 0;
  for (int d = 0; d <= lim && found < 0; d++) {
    size_t need = (size_t)(d + 1) * (size_t)(d + 1);
    if (need > tcap) {
      size_t ncap = tcap ? tcap * 2 : 1024;
      while (ncap < need)
        ncap *= 2;
      int *nt = realloc(trace, ncap * sizeof *nt);
      if (nt == NULL) break;
      trace = nt;
      tcap = ncap;
    }
    /* snapshot d: V before step d, for k in [-d, d] */
    for (int k = -d; k <= d; k++)
      trace[(size_t)d * (size_t)d + (size_t)(k + d)] = v[off + k];
    for (int k = -d; k <= d; k += 2) {
      int x = (k == -d || (k != d && v[off + k - 1] < v[off + k + 1])) ? v[off + k + 1]
                                                                       : v[off + k - 1] + 1;
      int y = x - k;
      while (x < n && y < m && line_eq(&a[x], &b[y]))
        x++, y++;
      v[off + k] = x;
      if (x >= n && y >= m) {
        found = d;
        break;
      }
    }
  }
  free(v);
  if (found < 0) {
    free(trace);
    return -1;
  }
  int x = n, y = m;
  for (int d = found; d > 0; d--) {
    const int *vp = trace + (size_t)d * (size_t)d + (size_t)d; /* indexed by k */
    int k = x - y;
    int down = k == -d || (k != d && vp[k - 1] < vp[k + 1]);
    int pk = down ? k + 1 : k - 1;
    int px = vp[pk], py = px - pk;
    /* the edit went from (px, py) to (mx, my), then a snake to (x, y) */
    int mx = down ? px : px + 1, my = down ? py + 1 : py;
    while (x > mx && y > my) {
      ops[(*nops)++] = OP_EQ;
      x--, y--;
    }
    ops[(*nops)++] = down ? OP_INS : OP_DEL;
    x = px;
    y = py;
  }
  while (x > 0 && y > 0) {
    ops[(*nops)++] = OP_EQ;
    x--, y--;
  }
  free(trace);
  return 0;
}

static void emit_line(fs_buf *o, char mark, const line_t *l) {
  fs_buf_add(o, &mark, 1);
  fs_buf_add(o, l->p, l->n);
  if (l->n == 0 || l->p[l->n - 1] != '\n') fs_buf_add(o, "\n\\ No newline at end of file\n", 29);
}

static void range(fs_buf *o, char mark, size_t start, size_t count) {
  /* GNU style: "-3" for one line, "-3,0" after line 3 for none. */
  if (count == 1)
    fs_buf_printf(o, "%c%zu", mark, start + 1);
  else
    fs_buf_printf(o, "%c%zu,%zu", mark, count == 0 ? start : start + 1, count);
}

char *fs_diff(const char *a, size_t alen, const char *alabel, const char *b, size_t blen,
              const char *blabel) {
  line_t *la = NULL, *lb = NULL;
  char *ops = NULL;
  size_t *apos = NULL, *bpos = NULL;
  fs_buf o = {0};
  size_t n = split_lines(a, alen, &la), m = split_lines(b, blen, &lb);
  if (n == (size_t)-1 || m == (size_t)-1 || n > INT32_MAX / 4 || m > INT32_MAX / 4) goto oom;
  /* The script is built back to front: common suffix, middle, common prefix. */
  size_t pre = 0, suf = 0;
  while (pre < n && pre < m && line_eq(&la[pre], &lb[pre]))
    pre++;
  while (suf < n - pre && suf < m - pre && line_eq(&la[n - 1 - suf], &lb[m - 1 - suf]))
    suf++;
  ops = malloc(n + m + 1);
  if (ops == NULL) goto oom;
  int nops = 0;
  for (size_t i = 0; i < suf; i++)
    ops[nops++] = OP_EQ;
  int mn = (int)(n - pre - suf), mm = (int)(m - pre - suf);
  if (myers(la + pre, mn, lb + pre, mm, ops, &nops) != 0) {
    nops = (int)suf;
    for (int i = 0; i < mm; i++)
      ops[nops++] = OP_INS;
    for (int i = 0; i < mn; i++)
      ops[nops++] = OP_DEL;
  }
  for (size_t i = 0; i < pre; i++)
    ops[nops++] = OP_EQ;
  for (int i = 0, j = nops - 1; i < j; i++, j--) {
    char t = ops[i];
    ops[i] = ops[j];
    ops[j] = t;
  }
  apos = malloc(((size_t)nops + 1) * sizeof *apos);
  bpos = malloc(((size_t)nops + 1) * sizeof *bpos);
  if (apos == NULL || bpos == NULL) goto oom;
  apos[0] = bpos[0] = 0;
  for (int k = 0; k < nops; k++) {
    apos[k + 1] = apos[k] + (ops[k] != OP_INS);
    bpos[k + 1] = bpos[k] + (ops[k] != OP_DEL);
  }
  int header = 0, k = 0;
  while (k < nops) {
    if (ops[k] == OP_EQ) {
      k++;
      continue;
    }
    int start = k - DIFF_CONTEXT > 0 ? k - DIFF_CONTEXT : 0;
    int j = k, last = k;
    while (j < nops) {
      if (ops[j] != OP_EQ) {
        last = j++;
        continue;
      }
      int r = j;
      while (r < nops && ops[r] == OP_EQ)
        r++;
      if (r < nops && r - j <= 2 * DIFF_CONTEXT) {
        j = r;
        continue;
      }
      break;
    }
    int end = last + 1 + DIFF_CONTEXT < nops ? last + 1 + DIFF_CONTEXT : nops;
    if (!header) {
      fs_buf_printf(&o, "--- %s\n+++ %s\n", alabel, blabel);
      header = 1;
    }
    fs_buf_add(&o, "@@ ", 3);
    range(&o, '-', apos[start], apos[end] - apos[start]);
    fs_buf_add(&o, " ", 1);
    range(&o, '+', bpos[start], bpos[end] - bpos[start]);
    fs_buf_add(&o, " @@\n", 4);
    for (int i = start; i < end; i++) {
      if (ops[i] == OP_INS)
        emit_line(&o, '+', &lb[bpos[i]]);
      else
        emit_line(&o, ops[i] == OP_DEL ? '-' : ' ', &la[apos[i]]);
    }
    k = end;
  }
  free(la);
  free(lb);
  free(ops);
  free(apos);
  free(bpos);
  return fs_buf_finish(&o);
oom:
  free(la);
  free(lb);
  free(ops);
  free(apos);
  free(bpos);
  relish_buf_free(&o.b);
  return NULL;
}

static void summary(fs_buf *o, const char *data, size_t len) {
  char size[32], hex[65];
  fs_human(len, size);
  fs_sha256_hex(data, len, hex);
  fs_buf_printf(o, "%s, sha256 %.16s…", size, hex);
}

char *fs_detail(const char *path, const char *old, size_t oldlen, int old_present, const char *new,
                size_t newlen, int new_present) {
  int small = (!old_present || (oldlen <= FS_DIFF_MAX && fs_is_text(old, oldlen))) &&
              (!new_present || (newlen <= FS_DIFF_MAX && fs_is_text(new, newlen)));
  if (small)
    return fs_diff(old_present ? old : "", old_present ? oldlen : 0,
                   old_present ? path : "/dev/null", new_present ? new : "",
                   new_present ? newlen : 0, new_present ? path : "/dev/null");
  fs_buf o = {0};
  fs_buf_add(&o, "binary or large content", 23);
  if (new_present) {
    fs_buf_add(&o, ": ", 2);
    summary(&o, new, newlen);
    if (old_present) {
      fs_buf_add(&o, " (was ", 6);
      summary(&o, old, oldlen);
      fs_buf_add(&o, ")", 1);
    } else {
      fs_buf_add(&o, " (new file)", 11);
    }
  } else {
    fs_buf_add(&o, " removed: ", 10);
    summary(&o, old, oldlen);
  }
  return fs_buf_finish(&o);
}
