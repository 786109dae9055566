/* host_secret.c: redaction of secret values and of the forms JSON gives them
 * (escaped once and twice, with non-ASCII as \u escapes or not), produced by
 * relish.json's encoder. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "hostint.h"

/* Runs chunk (which returns one string) and returns that string. */
static const char *eval(lua_State *L, const char *chunk) {
  if (luaL_dostring(L, chunk) != LUA_OK) return lua_tostring(L, -1);
  return lua_tostring(L, -1);
}

static const char *redact(lua_State *L, const char *s) {
  return relish_redact(L, s, strlen(s), NULL);
}

static void test_json_encode_ascii_option(void) {
  lua_State *L = relish_newstate();
  CHECK_STR(eval(L, "local j = require 'relish.json'\n"
                    "return j.encode('\\u{fc}\\u{1F600}/x\\t', {ascii = true})"),
            "\"\\u00fc\\ud83d\\ude00/x\\t\"");
  CHECK_STR(eval(L, "return require('relish.json').encode('\\u{fc}', {ascii = false})"),
            "\"\xc3\xbc\"");
  CHECK_STR(
      eval(L, "return require('relish.json').encode({k = '\\u{7ff}\\u{800}'}, {ascii = true})"),
      "{\"k\":\"\\u07ff\\u0800\"}");
  lua_close(L);
}

static void test_quotes_redacted_escaped_once_and_twice(void) {
  lua_State *L = relish_newstate();
  CHECK(luaL_dostring(L, "S1 = require('relish.secret').value('q\"u/o te%')") == LUA_OK);
  CHECK_STR(redact(L, "a q\"u/o te% b"), "a *** b");
  CHECK_STR(redact(L, "a q\\\"u/o te% b"), "a *** b");
  CHECK_STR(redact(L, "a q\\\\\\\"u/o te% b"), "a *** b");
  lua_close(L);
}

static void test_non_ascii_redacted_in_every_form(void) {
  lua_State *L = relish_newstate();
  CHECK(
      luaL_dostring(L, "S2 = require('relish.secret').value('\\u{fc}n\\u{ef}\\tsm\\u{1F600}le')") ==
      LUA_OK);
  CHECK_STR(redact(L, "[\xc3\xbcn\xc3\xaf\tsm\xf0\x9f\x98\x80le]"), "[***]");
  CHECK_STR(redact(L, "[\xc3\xbcn\xc3\xaf\\tsm\xf0\x9f\x98\x80le]"), "[***]");
  CHECK_STR(redact(L, "[\xc3\xbcn\xc3\xaf\\\\tsm\xf0\x9f\x98\x80le]"), "[***]");
  CHECK_STR(redact(L, "[\\u00fcn\\u00ef\\tsm\\ud83d\\ude00le]"), "[***]");
  CHECK_STR(redact(L, "[\\\\u00fcn\\\\u00ef\\\\tsm\\\\ud83d\\\\ude00le]"), "[***]");
  lua_close(L);
}

static void test_values_added_from_c_get_their_json_forms(void) {
  lua_State *L = relish_newstate();
  const char *v = "Bearer to\"ken\\x";
  relish_redact_add(v, strlen(v));
  CHECK_STR(redact(L, "{\"h\":\"Bearer to\\\"ken\\\\x\"}"), "{\"h\":\"***\"}");
  lua_close(L);
}

static void test_invalid_utf8_still_redacted_as_it_is(void) {
  lua_State *L = relish_newstate();
  const char *v = "bad\xff\"utf8";
  relish_redact_add(v, strlen(v));
  CHECK_STR(redact(L, "<bad\xff\"utf8>"), "<***>");
  CHECK(lua_gettop(L) == 1); /* the encoder's refusal left nothing behind */
  lua_close(L);
}

static void test_long_text_redacted_at_every_length(void) {
  lua_State *L = relish_newstate();
  CHECK(luaL_dostring(L, "S3 = require('relish.secret').value('long\\\"secret')") == LUA_OK);
  size_t lens[] = {1000, 2020, 2048, 10000};
  for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
    size_t n = lens[k];
    char *s = malloc(n + 1);
    memset(s, 'x', n);
    const char *twice = "long\\\\\\\"secret"; /* long"secret escaped twice: 14 bytes */
    memcpy(s + n / 2, twice, 14);
    memcpy(s + n - 13, twice, 13); /* cut short: not a secret */
    s[n] = '\0';
    size_t outlen = 0;
    const char *r = relish_redact(L, s, n, &outlen);
    CHECK(outlen == n - 14 + 3);
    CHECK(r != NULL && strstr(r, "***") == r + n / 2 && strstr(r, "secret") == NULL);
    CHECK(lua_gettop(L) == 1);
    lua_settop(L, 0);
    free(s);
  }
  lua_close(L);
}

static void test_secret_file_reads_and_redacts(void) {
  lua_State *L = relish_newstate();
  char path[] = "/tmp/relish-secret-XXXXXX";
  int fd = mkstemp(path);
  CHECK(fd >= 0);
  CHECK(write(fd, "from-file-tok\n", 14) == 14);
  close(fd);
  lua_pushstring(L, path);
  lua_setglobal(L, "P");
  CHECK_STR(eval(L,
                 "local secret = require 'relish.secret'\n"
                 "local s = assert(secret.file(P))\n"
                 "return secret.reveal(s) .. '|' .. secret.redact('a from-file-tok b') .. '|' ..\n"
                 "  select(2, pcall(secret.file, P .. '.missing')).kind"),
            "from-file-tok|a *** b|not_found");
  unlink(path);
  lua_close(L);
}

int main(void) {
  RUN(test_json_encode_ascii_option);
  RUN(test_quotes_redacted_escaped_once_and_twice);
  RUN(test_non_ascii_redacted_in_every_form);
  RUN(test_values_added_from_c_get_their_json_forms);
  RUN(test_invalid_utf8_still_redacted_as_it_is);
  RUN(test_long_text_redacted_at_every_length);
  RUN(test_secret_file_reads_and_redacts);
  CHECK_MAIN();
}
