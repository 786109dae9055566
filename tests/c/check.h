/* check.h: the C unit tests' tiny harness. Each test is a function; CHECK
 * records a failure with file:line and goes on; RUN prints one line a test and
 * CHECK_MAIN the closing "N passed, N failed". */
#ifndef RELISH_CHECK_H
#define RELISH_CHECK_H

#include <stdio.h>
#include <string.h>

static int check_failures_in_test, check_passed, check_failed;

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "    %s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                 \
      check_failures_in_test++;                                                                    \
    }                                                                                              \
  } while (0)

#define CHECK_STR(a, b)                                                                            \
  do {                                                                                             \
    const char *check_a_ = (a), *check_b_ = (b);                                                   \
    if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {                               \
      fprintf(stderr, "    %s:%d: %s == %s\n      got:      %s\n      expected: %s\n", __FILE__,   \
              __LINE__, #a, #b, check_a_ ? check_a_ : "(null)", check_b_ ? check_b_ : "(null)");   \
      check_failures_in_test++;                                                                    \
    }                                                                                              \
  } while (0)

#define RUN(fn)                                                                                    \
  do {                                                                                             \
    check_failures_in_test = 0;                                                                    \
    fn();                                                                                          \
    if (check_failures_in_test) {                                                                  \
      check_failed++;                                                                              \
      fprintf(stderr, "FAIL %s\n", #fn);                                                           \
    } else {                                                                                       \
      check_passed++;                                                                              \
    }                                                                                              \
  } while (0)

#define CHECK_MAIN()                                                                               \
  do {                                                                                             \
    printf("%d passed, %d failed\n", check_passed, check_failed);                                  \
    return check_failed ? 1 : 0;                                                                   \
  } while (0)

#endif
