/* Unit tests of what all backends share: parse_size, the extent list and
 * backend_open's spec parsing and read-only handling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "backend.h"
#include "log.h"

#define WRITE_CAPS (BACKEND_CAN_WRITE | BACKEND_CAN_FUA | BACKEND_CAN_TRIM | \
                    BACKEND_CAN_ZERO | BACKEND_CAN_FAST_ZERO)

static void test_parse_size_good(void **state)
{
  (void)state;
  static const struct { const char *s; uint64_t v; } ok[] = {
    { "0", 0 }, { "1", 1 }, { "4096", 4096 }, { "00012", 12 },
    { "10k", 10240 }, { "10K", 10240 }, { "512M", 512ull << 20 },
    { "512m", 512ull << 20 }, { "1G", 1ull << 30 }, { "1g", 1ull << 30 },
    { "3T", 3ull << 40 }, { "1t", 1ull << 40 }, { "2P", 2ull << 50 },
    { "7E", 7ull << 60 }, { "7e", 7ull << 60 }, { "8191P", 8191ull << 50 },
    { "9223372036854775807", INT64_MAX }, { "0E", 0 },
  };
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    uint64_t v = 12345;
    if (parse_size(ok[i].s, &v) != 0)
      fail_msg("parse_size(\"%s\") failed: %s", ok[i].s, get_error());
    if (v != ok[i].v)
      fail_msg("parse_size(\"%s\") = %llu, want %llu", ok[i].s,
               (unsigned long long)v, (unsigned long long)ok[i].v);
  }
}

static void test_parse_size_bad(void **state)
{
  (void)state;
  static const struct { const char *s; int err; } bad[] = {
    { "", EINVAL }, { "-1", EINVAL }, { "+1", EINVAL }, { " 1", EINVAL },
    { "1 ", EINVAL }, { "1X", EINVAL }, { "1GB", EINVAL }, { "1kk", EINVAL },
    { "G", EINVAL }, { "0x10", EINVAL }, { "1.5G", EINVAL },
    { "12\n", EINVAL }, { "1\x80", EINVAL }, { "1 G", EINVAL },
    { "16E", ERANGE }, { "8E", ERANGE }, { "8192P", ERANGE },
    { "99999999999999999999", ERANGE }, { "9223372036854775808", ERANGE },
    { "18446744073709551616", ERANGE }, { "18446744073709551615", ERANGE },
    { "9007199254740992T", ERANGE },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t v = 12345;
    if (parse_size(bad[i].s, &v) != -1)
      fail_msg("parse_size(\"%s\") accepted: %llu", bad[i].s,
               (unsigned long long)v);
    assert_int_equal(v, 12345);             /* untouched on failure */
    if (get_errno() != bad[i].err)
      fail_msg("parse_size(\"%s\"): errno %d, want %d", bad[i].s,
               get_errno(), bad[i].err);
  }
  uint64_t v;
  assert_int_equal(parse_size(NULL, &v), -1);
}

static void test_extents_merge(void **state)
{
  (void)state;
  struct extents e;
  extents_init(&e, 0, 100, 0);
  assert_int_equal(extents_add(&e, 0, 0, 0), 0);          /* empty: no-op */
  assert_int_equal(e.n, 0);
  assert_int_equal(extents_add(&e, 0, 10, 0), 0);
  assert_int_equal(extents_add(&e, 10, 10, 0), 0);        /* merges */
  assert_int_equal(e.n, 1);
  assert_int_equal(e.v[0].length, 20);
  assert_int_equal(extents_add(&e, 20, 5, EXTENT_HOLE | EXTENT_ZERO), 0);
  assert_int_equal(e.n, 2);
  /* reaching end says stop, and the merge still happened */
  assert_int_equal(extents_add(&e, 25, 75, EXTENT_HOLE | EXTENT_ZERO), 1);
  assert_int_equal(e.n, 2);
  assert_int_equal(e.v[1].offset, 20);
  assert_int_equal(e.v[1].length, 80);
  assert_int_equal(e.v[1].flags, EXTENT_HOLE | EXTENT_ZERO);
  assert_int_equal(extents_add(&e, 100, 5, 0), 1);        /* past end */
  assert_int_equal(e.n, 2);
  extents_free(&e);
  assert_null(e.v);
  assert_int_equal(e.n, 0);
}

static void test_extents_clip(void **state)
{
  (void)state;
  struct extents e;
  extents_init(&e, 50, 150, 0);
  assert_int_equal(extents_add(&e, 0, 40, 0), 0);         /* all before */
  assert_int_equal(e.n, 0);
  assert_int_equal(extents_add(&e, 0, 60, 0), 0);         /* front cut */
  assert_int_equal(e.n, 1);
  assert_int_equal(e.v[0].offset, 50);
  assert_int_equal(e.v[0].length, 10);
  assert_int_equal(extents_add(&e, 60, 1000, EXTENT_ZERO), 1); /* back cut */
  assert_int_equal(e.n, 2);
  assert_int_equal(e.v[1].offset, 60);
  assert_int_equal(e.v[1].length, 90);
  extents_free(&e);

  /* lengths that would wrap past 2^64 are clipped, not wrapped */
  extents_init(&e, 0, UINT64_MAX, 0);
  assert_int_equal(extents_add(&e, 0, 10, 0), 0);
  assert_int_equal(extents_add(&e, 10, UINT64_MAX, EXTENT_HOLE), 1);
  assert_int_equal(e.n, 2);
  assert_true(e.v[1].length == UINT64_MAX - 10);
  extents_free(&e);
}

static void test_extents_max(void **state)
{
  (void)state;
  struct extents e;
  extents_init(&e, 0, 1000, 2);
  assert_int_equal(extents_add(&e, 0, 10, 0), 0);
  assert_int_equal(extents_add(&e, 10, 10, EXTENT_HOLE), 0);
  assert_int_equal(extents_add(&e, 20, 10, 0), 1);        /* full: dropped */
  assert_int_equal(e.n, 2);
  assert_int_equal(e.v[1].length, 10);
  assert_int_equal(extents_add(&e, 20, 10, EXTENT_HOLE), 0); /* merges */
  assert_int_equal(e.n, 2);
  assert_int_equal(e.v[1].length, 20);
  extents_free(&e);

  /* max 0: no limit but memory; growth past the first allocation works */
  extents_init(&e, 0, 1000000, 0);
  for (uint64_t i = 0; i < 10000; i++)
    assert_int_equal(extents_add(&e, i * 10, 10, (uint32_t)(i & 1)), 0);
  assert_int_equal(e.n, 10000);
  assert_int_equal(e.v[9999].offset, 99990);
  assert_int_equal(e.v[9999].flags, 1);
  extents_free(&e);
}

static void test_extents_contiguous(void **state)
{
  (void)state;
  struct extents e;
  extents_init(&e, 0, 100, 0);
  assert_int_equal(extents_add(&e, 10, 5, 0), -1);        /* gap at start */
  assert_int_equal(get_errno(), EINVAL);
  assert_int_equal(extents_add(&e, 0, 10, 0), 0);
  assert_int_equal(extents_add(&e, 20, 5, 0), -1);        /* gap */
  assert_int_equal(get_errno(), EINVAL);
  assert_int_equal(extents_add(&e, 5, 10, 0), -1);        /* overlap */
  assert_int_equal(get_errno(), EINVAL);
  assert_int_equal(e.n, 1);
  assert_int_equal(e.v[0].length, 10);
  extents_free(&e);
}

static void test_open_specs(void **state)
{
  (void)state;
  struct backend *b = backend_open("memory:1M", false);
  assert_non_null(b);
  assert_int_equal(b->size, 1 << 20);
  assert_string_equal(b->ops->name, "memory");
  assert_string_equal(b->desc, "memory:1M");
  assert_int_equal(b->caps & WRITE_CAPS, WRITE_CAPS);
  backend_close(b);

  b = backend_open("memory:1000", false);
  assert_non_null(b);
  assert_string_equal(b->desc, "memory:1000");
  backend_close(b);

  static const struct { const char *spec; int err; } bad[] = {
    { "memory:", EINVAL }, { "memory:abc", EINVAL }, { "memory:8E", ERANGE },
    { "memory", EINVAL }, { "nope:1", EINVAL }, { "", EINVAL },
    { "file:", EINVAL }, { "file:/nonexistent-snbd/x", ENOENT },
    { "file:/dev/null", EINVAL }, { "file:/", EISDIR },
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    if (backend_open(bad[i].spec, false) != NULL)
      fail_msg("backend_open(\"%s\") succeeded", bad[i].spec);
    if (get_errno() != bad[i].err)
      fail_msg("backend_open(\"%s\"): errno %d (%s), want %d", bad[i].spec,
               get_errno(), get_error(), bad[i].err);
  }
  assert_null(backend_open(NULL, false));
  backend_close(NULL);                      /* allowed, like free */
}

/* A FIFO is refused at once: the open must not wait for a writer. */
static void test_open_fifo(void **state)
{
  (void)state;
  char path[] = "snbd-fifo-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  close(fd);
  unlink(path);
  assert_int_equal(mkfifo(path, 0600), 0);
  char spec[64];
  snprintf(spec, sizeof spec, "file:%s", path);
  assert_null(backend_open(spec, true));
  assert_int_equal(get_errno(), EINVAL);
  assert_null(backend_open(spec, false));
  assert_int_equal(get_errno(), EINVAL);
  unlink(path);
}

static void test_open_readonly_memory(void **state)
{
  (void)state;
  struct backend *b = backend_open("memory:1M", true);
  uint8_t buf[512];
  assert_non_null(b);
  assert_int_equal(b->caps & WRITE_CAPS, 0);
  assert_true(b->caps & BACKEND_CAN_FLUSH);
  memset(buf, 0xee, sizeof buf);
  assert_int_equal(b->ops->pwrite(b, buf, sizeof buf, 0, 0), -1);
  assert_int_equal(errno, EPERM);
  assert_int_equal(b->ops->trim(b, 4096, 0, 0), -1);
  assert_int_equal(errno, EPERM);
  assert_int_equal(b->ops->zero(b, 4096, 0, 0), -1);
  assert_int_equal(errno, EPERM);
  assert_int_equal(b->ops->pread(b, buf, sizeof buf, 0), 0);
  for (size_t i = 0; i < sizeof buf; i++)
    assert_int_equal(buf[i], 0);
  assert_int_equal(b->ops->flush(b), 0);
  backend_close(b);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_parse_size_good),
    cmocka_unit_test(test_parse_size_bad),
    cmocka_unit_test(test_extents_merge),
    cmocka_unit_test(test_extents_clip),
    cmocka_unit_test(test_extents_max),
    cmocka_unit_test(test_extents_contiguous),
    cmocka_unit_test(test_open_specs),
    cmocka_unit_test(test_open_fifo),
    cmocka_unit_test(test_open_readonly_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
