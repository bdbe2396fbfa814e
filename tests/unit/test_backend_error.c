/* Unit tests of the error-injecting wrapper: every errno it knows at rate
 * 1, none at rate 0, a repeatable sequence for a given seed, its spec
 * syntax. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "backend.h"
#include "log.h"

#define NDRAWS 2000

static void test_rate_one(void **state)
{
  (void)state;
  static const struct { const char *name; int err; } errs[] = {
    { "EIO", EIO }, { "ENOSPC", ENOSPC }, { "EPERM", EPERM },
    { "EINVAL", EINVAL }, { "ENOMEM", ENOMEM }, { "ENOTSUP", ENOTSUP },
    { "EOVERFLOW", EOVERFLOW }, { "ESHUTDOWN", ESHUTDOWN },
    { "EROFS", EROFS }, { "EDQUOT", EDQUOT }, { "EFBIG", EFBIG },
  };
  for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
    char spec[64];
    uint8_t buf[100];
    snprintf(spec, sizeof spec, "error:1:%s:memory:1M", errs[i].name);
    struct backend *b = backend_open(spec, false);
    assert_non_null(b);
    struct backend *m = backend_memory_open(1 << 20);
    /* as the wrapped backend, less CHEAP_EXTENTS (holes must be read so
     * reads see the injected errors) */
    assert_int_equal(b->caps, m->caps & ~BACKEND_CHEAP_EXTENTS);
    assert_int_equal(b->size, m->size);
    assert_int_equal(b->block_min, m->block_min);
    backend_close(m);

    memset(buf, 0xee, sizeof buf);
    assert_int_equal(b->ops->pread(b, buf, sizeof buf, 0), -1);
    assert_int_equal(errno, errs[i].err);
    for (size_t j = 0; j < sizeof buf; j++)
      assert_int_equal(buf[j], 0);           /* no stale bytes */
    assert_int_equal(b->ops->pwrite(b, buf, sizeof buf, 0, 0), -1);
    assert_int_equal(errno, errs[i].err);
    assert_int_equal(get_errno(), errs[i].err);
    assert_non_null(strstr(get_error(), errs[i].name));
    assert_int_equal(b->ops->trim(b, 4096, 0, 0), -1);
    assert_int_equal(errno, errs[i].err);
    assert_int_equal(b->ops->zero(b, 4096, 0, 0), -1);
    assert_int_equal(errno, errs[i].err);
    assert_int_equal(b->ops->flush(b), -1);
    assert_int_equal(errno, errs[i].err);
    /* extents and cache pass through */
    struct extents e;
    extents_init(&e, 0, 1 << 20, 0);
    assert_int_equal(b->ops->extents(b, 1 << 20, 0, &e), 0);
    assert_int_equal(e.n, 1);
    assert_int_equal(e.v[0].flags, EXTENT_HOLE | EXTENT_ZERO);
    extents_free(&e);
    assert_int_equal(b->ops->cache(b, 4096, 0), 0);
    backend_close(b);
  }
}

/* Over a file in RAM: the server would bypass pread and pwrite with
 * sendfile and a mapping of the file, so the filter must not offer those
 * (it has no send_fd or map), or injected errors could never be seen;
 * it still never waits, so requests keep running inline. */
static void test_over_tmpfs_file(void **state)
{
  (void)state;
  char path[] = "/dev/shm/snbd-error-XXXXXX";
  int fd = mkstemp(path);
  if (fd == -1)
    skip();
  assert_int_equal(ftruncate(fd, 1 << 20), 0);
  char spec[64];
  snprintf(spec, sizeof spec, "error:1:EIO:file:%s", path);
  struct backend *f = backend_open(spec + strlen("error:1:EIO:"), false);
  struct backend *b = backend_open(spec, false);
  unlink(path);
  close(fd);
  assert_non_null(f);
  assert_non_null(b);
  uint64_t off;
  assert_int_not_equal(backend_send_fd(f, 0, 4096, &off), -1);
  assert_non_null(backend_map(f, 0, 4096));
  assert_int_equal(backend_send_fd(b, 0, 4096, &off), -1);
  assert_null(backend_map(b, 0, 4096));
  /* The filter hides cheap extents: a hole must still be read, so the
   * injected read errors reach it. */
  assert_int_equal(b->caps, f->caps & ~BACKEND_CHEAP_EXTENTS);
  assert_true(backend_never_waits(f));
  assert_true(backend_never_waits(b));
  backend_close(f);
  backend_close(b);
}

static void test_rate_zero(void **state)
{
  (void)state;
  struct backend *b = backend_open("error:0:EIO:memory:1M", false);
  uint8_t w[256], r[256];
  assert_non_null(b);
  assert_string_equal(b->desc, "error:0:EIO:memory:1M");
  for (int i = 0; i < NDRAWS; i++) {
    uint64_t off = (uint64_t)i * 509 % ((1 << 20) - sizeof w);
    memset(w, i & 0xff, sizeof w);
    assert_int_equal(b->ops->pwrite(b, w, sizeof w, off, 0), 0);
    assert_int_equal(b->ops->pread(b, r, sizeof r, off), 0);
    assert_memory_equal(w, r, sizeof w);
    assert_int_equal(b->ops->flush(b), 0);
    assert_int_equal(b->ops->zero(b, 10, off, 0), 0);
    assert_int_equal(b->ops->trim(b, 10, off + 10, 0), 0);
  }
  backend_close(b);
}

/* Which of NDRAWS flushes fail, as a bitmap; the failure count. */
static int draw_pattern(const char *spec, uint8_t *fails)
{
  struct backend *b = backend_open(spec, false);
  int n = 0;
  assert_non_null(b);
  memset(fails, 0, NDRAWS / 8);
  for (int i = 0; i < NDRAWS; i++)
    if (b->ops->flush(b) == -1) {
      assert_int_equal(errno, EIO);
      fails[i / 8] |= (uint8_t)(1 << (i % 8));
      n++;
    }
  backend_close(b);
  return n;
}

static void test_seeded(void **state)
{
  (void)state;
  uint8_t a[NDRAWS / 8], b[NDRAWS / 8];
  assert_int_equal(setenv("SNBD_ERROR_SEED", "42", 1), 0);
  int na = draw_pattern("error:0.5:EIO:memory:1M", a);
  int nb = draw_pattern("error:0.5:EIO:memory:1M", b);
  assert_int_equal(na, nb);
  assert_memory_equal(a, b, sizeof a);          /* same seed, same run */
  assert_in_range(na, 800, 1200);               /* mean 1000, sd 22 */
  assert_int_equal(setenv("SNBD_ERROR_SEED", "0x2b", 1), 0);
  nb = draw_pattern("error:.5:EIO:memory:1M", b);
  assert_memory_not_equal(a, b, sizeof a);      /* another seed */
  assert_in_range(nb, 800, 1200);
  /* a low rate fails about that often */
  assert_in_range(draw_pattern("error:0.1:EIO:memory:1M", a), 140, 260);

  assert_int_equal(setenv("SNBD_ERROR_SEED", "seven", 1), 0);
  assert_null(backend_open("error:0.5:EIO:memory:1M", false));
  assert_int_equal(get_errno(), EINVAL);
  assert_int_equal(unsetenv("SNBD_ERROR_SEED"), 0);
  assert_in_range(draw_pattern("error:0.5:EIO:memory:1M", a), 800, 1200);
}

static void test_bad_specs(void **state)
{
  (void)state;
  static const char *bad[] = {
    "error:", "error:1", "error:1:EIO", "error:1:EIO:", "error::EIO:memory:1M",
    "error:2:EIO:memory:1M", "error:1.01:EIO:memory:1M",
    "error:-0.5:EIO:memory:1M", "error:abc:EIO:memory:1M",
    "error:nan:EIO:memory:1M", "error:inf:EIO:memory:1M",
    "error:1e-1:EIO:memory:1M", "error:0.1.1:EIO:memory:1M",
    "error:0.1:EBOGUS:memory:1M", "error:0.1::memory:1M",
    "error:0.1:eio:memory:1M", "error:0.1:EIO:nope:1",
    "error:0.1:EIO:memory:16E",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    if (backend_open(bad[i], false) != NULL)
      fail_msg("backend_open(\"%s\") succeeded", bad[i]);
}

static void test_readonly_and_nesting(void **state)
{
  (void)state;
  struct backend *b = backend_open("error:0:EIO:memory:1M", true);
  assert_non_null(b);
  assert_int_equal(b->caps & BACKEND_CAN_WRITE, 0);
  assert_int_equal(b->ops->pwrite(b, "x", 1, 0, 0), -1);
  assert_int_equal(errno, EPERM);
  backend_close(b);

  b = backend_open("error:0:EIO:error:1:ENOSPC:memory:1M", false);
  assert_non_null(b);
  assert_string_equal(b->desc, "error:0:EIO:error:1:ENOSPC:memory:1M");
  assert_int_equal(b->ops->pwrite(b, "x", 1, 0, 0), -1);
  assert_int_equal(errno, ENOSPC);
  backend_close(b);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_rate_one),
    cmocka_unit_test(test_rate_zero),
    cmocka_unit_test(test_over_tmpfs_file),
    cmocka_unit_test(test_seeded),
    cmocka_unit_test(test_bad_specs),
    cmocka_unit_test(test_readonly_and_nesting),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
