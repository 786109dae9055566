/* progress.c: the spinner a terminal shows while a step waits. Blocking waits
 * (a command, later a transfer) call relish_progress_tick, which redraws the
 * current step's line with a spinner and its elapsed time. */
#define _GNU_SOURCE
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hostint.h"

#define TICK 0.1

static struct {
  int active;
  char label[256];
  char detail[256]; /* what the wait is at: "2 of 3 replicas available" */
  double started, drawn;
  unsigned frame;
} P;

double relish_progress_tick(void) {
  if (!P.active) return -1;
  double t = relish_now();
  if (t - P.drawn >= TICK) {
    static const char *frames[] = {"⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"};
    P.drawn = t;
    double el = t - P.started;
    fprintf(stdout, "\r\033[K  %s %s %.1fs%s%s", frames[P.frame++ % 10], P.label, el,
            P.detail[0] ? " · " : "", P.detail);
    fflush(stdout);
  }
  return TICK;
}

/* progress(label | nil): start or stop the spinner (only on a terminal). */
static int l_progress(lua_State *L) {
  if (lua_isnoneornil(L, 1)) {
    P.active = 0;
    P.detail[0] = '\0';
    return 0;
  }
  snprintf(P.label, sizeof P.label, "%s", luaL_checkstring(L, 1));
  P.detail[0] = '\0';
  P.active = isatty(1);
  P.started = relish_now();
  P.drawn = P.started; /* the caller drew the line already */
  return 0;
}

/* progress_detail(text | nil): what the current wait is at, shown after the
 * spinner's time; the step's label and elapsed time stay. */
static int l_progress_detail(lua_State *L) {
  snprintf(P.detail, sizeof P.detail, "%s", luaL_optstring(L, 1, ""));
  return 0;
}

void relish_progress_register(lua_State *L) {
  lua_pushcfunction(L, l_progress);
  lua_setfield(L, -2, "progress");
  lua_pushcfunction(L, l_progress_detail);
  lua_setfield(L, -2, "progress_detail");
}
