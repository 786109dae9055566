/* fs_diff.c: relish.fs's unified diffs, plan details, base64 and text
 * detection, the pieces of plans and undo records not reachable from Lua. */
#define _GNU_SOURCE
#include <stdlib.h>

#include "../../modules/fs/fsint.h"
#include "check.h"

static char *diff(const char *a, const char *b) {
  return fs_diff(a, strlen(a), "/x", b, strlen(b), "/x");
}

static void test_identical_is_empty(void) {
  char *d = diff("a\nb\n", "a\nb\n");
  CHECK_STR(d, "");
  free(d);
}

static void test_one_change_with_context(void) {
  char *d = diff("1\n2\n3\n4\n5\n6\n7\n8\n9\n", "1\n2\n3\n4\nfive\n6\n7\n8\n9\n");
  CHECK_STR(d, "--- /x\n+++ /x\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n");
  free(d);
}

static void test_far_changes_make_two_hunks(void) {
  char *d = diff("a\n1\n2\n3\n4\n5\n6\n7\n8\nb\n", "A\n1\n2\n3\n4\n5\n6\n7\n8\nB\n");
  CHECK_STR(d, "--- /x\n+++ /x\n@@ -1,4 +1,4 @@\n-a\n+A\n 1\n 2\n 3\n"
               "@@ -7,4 +7,4 @@\n 6\n 7\n 8\n-b\n+B\n");
  free(d);
}

static void test_near_changes_share_a_hunk(void) {
  char *d = diff("a\n1\n2\n3\n4\n5\n6\nb\n", "A\n1\n2\n3\n4\n5\n6\nB\n");
  CHECK_STR(d, "--- /x\n+++ /x\n@@ -1,8 +1,8 @@\n-a\n+A\n 1\n 2\n 3\n 4\n 5\n 6\n-b\n+B\n");
  free(d);
}

static void test_new_and_removed_files(void) {
  char *d = fs_diff("", 0, "/dev/null", "x\ny\n", 4, "/f");
  CHECK_STR(d, "--- /dev/null\n+++ /f\n@@ -0,0 +1,2 @@\n+x\n+y\n");
  free(d);
  d = fs_diff("x\n", 2, "/f", "", 0, "/dev/null");
  CHECK_STR(d, "--- /f\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n");
  free(d);
}

static void test_missing_final_newline_is_marked(void) {
  char *d = diff("a\nb", "a\nb\n");
  CHECK_STR(d, "--- /x\n+++ /x\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n");
  free(d);
}

static void test_insertions_keep_minimal(void) {
  char *d = diff("a\nc\ne\n", "a\nb\nc\nd\ne\n");
  CHECK_STR(d, "--- /x\n+++ /x\n@@ -1,3 +1,5 @@\n a\n+b\n c\n+d\n e\n");
  free(d);
}

/* Beyond the edit bound the middle is shown replaced, still a valid diff. */
static void test_huge_difference_falls_back(void) {
  size_t n = 3000;
  char *a = malloc(n * 8), *b = malloc(n * 8);
  size_t al = 0, bl = 0;
  for (size_t i = 0; i < n; i++) {
    al += (size_t)sprintf(a + al, "a%zu\n", i);
    bl += (size_t)sprintf(b + bl, "b%zu\n", i);
  }
  char *d = fs_diff(a, al, "/x", b, bl, "/x");
  CHECK(d != NULL && strstr(d, "@@ -1,3000 +1,3000 @@\n-a0\n") != NULL);
  CHECK(d != NULL && strstr(d, "-a2999\n+b0\n") != NULL);
  free(d);
  free(a);
  free(b);
}

static void test_detail_for_binary(void) {
  char *d = fs_detail("/f", "x", 1, 1, "a\0b", 3, 1);
  CHECK(d != NULL && strncmp(d, "binary or large content: 3 B, sha256 ", 37) == 0);
  CHECK(d != NULL && strstr(d, "(was 1 B, sha256 2d711642b726b044") != NULL);
  free(d);
}

static void test_base64_round_trip(void) {
  const char *cases[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char *want[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (size_t i = 0; i < 7; i++) {
    size_t n = (strlen(cases[i]) + 2) / 3 * 4;
    char e[16] = {0};
    fs_base64(cases[i], strlen(cases[i]), e);
    CHECK(strlen(e) == n);
    CHECK_STR(e, want[i]);
    char out[16];
    long m = fs_unbase64(e, n, out);
    CHECK(m == (long)strlen(cases[i]) && memcmp(out, cases[i], (size_t)m) == 0);
  }
  char out[16];
  CHECK(fs_unbase64("Zm9", 3, out) < 0);
  CHECK(fs_unbase64("Zm=v", 4, out) < 0);
  CHECK(fs_unbase64("Z!9v", 4, out) < 0);
}

static void test_text_detection(void) {
  CHECK(fs_is_text("plain\n", 6));
  CHECK(fs_is_text("caf\xc3\xa9 \xe2\x86\x92 \xf0\x9f\x99\x82", 14));
  CHECK(!fs_is_text("a\0b", 3));
  CHECK(!fs_is_text("\xc3", 1));         /* cut short */
  CHECK(!fs_is_text("\xc0\xaf", 2));     /* overlong */
  CHECK(!fs_is_text("\xed\xa0\x80", 3)); /* surrogate */
  CHECK(!fs_is_text("\xff", 1));
}

int main(void) {
  RUN(test_identical_is_empty);
  RUN(test_one_change_with_context);
  RUN(test_far_changes_make_two_hunks);
  RUN(test_near_changes_share_a_hunk);
  RUN(test_new_and_removed_files);
  RUN(test_missing_final_newline_is_marked);
  RUN(test_insertions_keep_minimal);
  RUN(test_huge_difference_falls_back);
  RUN(test_detail_for_binary);
  RUN(test_base64_round_trip);
  RUN(test_text_detection);
  CHECK_MAIN();
}
