/* fs_sha256.c: relish.fs's own SHA-256 against the FIPS 180-4 example
 * vectors, lengths around the padding boundary, and streaming in pieces. */
#define _GNU_SOURCE
#include <stdlib.h>

#include "../../modules/fs/fsint.h"
#include "check.h"

static const char *hex_of(const void *data, size_t n) {
  static char out[65];
  fs_sha256_hex(data, n, out);
  return out;
}

static void test_fips_vectors(void) {
  CHECK_STR(hex_of("", 0), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK_STR(hex_of("abc", 3), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  CHECK_STR(hex_of(two, strlen(two)),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  const char *four = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmno"
                     "ijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
  CHECK_STR(hex_of(four, strlen(four)),
            "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

/* 55 and 56 bytes straddle the length field; 63, 64, 65 the block. */
static void test_padding_boundaries(void) {
  static const struct {
    size_t n;
    const char *hex;
  } cases[] = {
      {55, "d5e285683cd4efc02d021a5c62014694958901005d6f71e89e0989fac77e4072"},
      {56, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e"},
      {63, "75220b47218278e656f2013bb8f0c455a25eaf01e86c64924e9d48d89776d6f2"},
      {64, "7ce100971f64e7001e8fe5a51973ecdfe1ced42befe7ee8d5fd6219506b5393c"},
      {65, "9537c5fdf120482f7d58d25e9ed583f52c02b4e304ea814db1633ad565aed7e9"},
      {119, "000b48d4edf0fa7bee3c6236ecd2785baa5db4eeb8bb54341b029e0d9fa5fb0c"},
      {120, "13f05a0b594787f5ecd315edc96141bd3243203d1b7d4f0836f37308b276ba98"},
  };
  char buf[128];
  memset(buf, 'x', sizeof buf);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    CHECK_STR(hex_of(buf, cases[i].n), cases[i].hex);
}

/* A million 'a', fed in uneven pieces so updates cross block edges. */
static void test_streaming_million_a(void) {
  char *a = malloc(1000000);
  CHECK(a != NULL);
  if (a == NULL) return;
  memset(a, 'a', 1000000);
  fs_sha256_ctx c;
  unsigned char d[32];
  char hex[65];
  fs_sha256_init(&c);
  size_t off = 0, step = 1;
  while (off < 1000000) {
    size_t n = step < 1000000 - off ? step : 1000000 - off;
    fs_sha256_update(&c, a + off, n);
    off += n;
    step = step * 7 % 193 + 1;
  }
  fs_sha256_final(&c, d);
  fs_hex(d, 32, hex);
  CHECK_STR(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  CHECK_STR(hex_of(a, 1000000), hex);
  free(a);
}

int main(void) {
  RUN(test_fips_vectors);
  RUN(test_padding_boundaries);
  RUN(test_streaming_million_a);
  CHECK_MAIN();
}
