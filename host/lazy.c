/* lazy.c: libcurl and libgit2 are initialised once, on first use, so that
 * commands that need neither start fast; both are cleaned up at exit. */
#include <stdlib.h>
#include <curl/curl.h>
#include <git2.h>

#include "relish.h"

static int curl_ready, git_ready;

static void curl_done(void) { curl_global_cleanup(); }
static void git_done(void) { git_libgit2_shutdown(); }

void relish_need_curl(void) {
  if (curl_ready) return;
  curl_ready = 1;
  curl_global_init(CURL_GLOBAL_DEFAULT);
  atexit(curl_done);
}

void relish_need_git(void) {
  if (git_ready) return;
  git_ready = 1;
  git_libgit2_init();
  atexit(git_done);
}
