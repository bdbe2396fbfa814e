/* Unit tests of the RBD backend's parts that need no cluster
 * (server/backends/rbd_spec.c): the spec POOL/[NAMESPACE/]IMAGE[@SNAP],
 * ceph-timeout, the errno a request reports for a librbd result, the
 * one-line refusals at start; and the export keys of the registry
 * (backend_key_get, and keys refused by a backend that does not take
 * them). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "backend.h"
#include "log.h"
#include "rbd.h"

static void test_spec_good(void **state)
{
  (void)state;
  static const struct { const char *in, *pool, *ns, *image, *snap; } t[] = {
    { "rbd/vm1", "rbd", "", "vm1", "" },
    { "pool/base@gold", "pool", "", "base", "gold" },
    { "p/tenant/img", "p", "tenant", "img", "" },
    { "p/tenant/img@s.1", "p", "tenant", "img", "s.1" },
    { "a-b_c/x.y", "a-b_c", "", "x.y", "" },
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    struct rbd_spec sp;
    assert_int_equal(rbd_spec_parse(t[i].in, &sp), 0);
    assert_string_equal(sp.pool, t[i].pool);
    assert_string_equal(sp.ns, t[i].ns);
    assert_string_equal(sp.image, t[i].image);
    assert_string_equal(sp.snap, t[i].snap);
  }
}

static void test_spec_bad(void **state)
{
  (void)state;
  static const char *const bad[] = {
    "", "rbd", "rbd/", "/img", "rbd//img", "a/b/c/d", "rbd/img@",
    "rbd/img@s@t", "rbd/img@s/t", "@snap", "rbd/@s", "p/n/@s",
    "rbd/im\x01g", "rbd/img@\n",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    struct rbd_spec sp;
    clear_error();
    assert_int_equal(rbd_spec_parse(bad[i], &sp), -1);
    assert_int_equal(get_errno(), EINVAL);
    assert_non_null(strstr(get_error(), "rbd: "));
  }
  /* a name longer than RBD_NAME_MAX */
  char big[RBD_NAME_MAX + 8] = "p/";
  memset(big + 2, 'i', RBD_NAME_MAX + 1);
  big[RBD_NAME_MAX + 3] = '\0';
  struct rbd_spec sp;
  assert_int_equal(rbd_spec_parse(big, &sp), -1);
  assert_non_null(strstr(get_error(), "too long"));
  big[RBD_NAME_MAX + 2] = '\0';             /* exactly the limit */
  assert_int_equal(rbd_spec_parse(big, &sp), 0);
  assert_int_equal(strlen(sp.image), RBD_NAME_MAX);
}

static void test_timeout(void **state)
{
  (void)state;
  int t = 0;
  assert_int_equal(rbd_parse_timeout("1", &t), 0);
  assert_int_equal(t, 1);
  assert_int_equal(rbd_parse_timeout("3600", &t), 0);
  assert_int_equal(t, 3600);
  static const char *const bad[] = { "0", "3601", "-1", "", "5s", " 5",
                                     "99999999999999999999", "x" };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    t = 7;
    assert_int_equal(rbd_parse_timeout(bad[i], &t), -1);
    assert_int_equal(t, 7);
    assert_non_null(strstr(get_error(), "ceph-timeout"));
  }
  assert_int_equal(rbd_parse_timeout(NULL, &t), -1);
}

static void test_errno(void **state)
{
  (void)state;
  static const struct { int ret, err; } t[] = {
    { -ENOSPC, ENOSPC }, { -EDQUOT, ENOSPC }, { -EROFS, EPERM },
    { -EPERM, EPERM }, { -EINVAL, EINVAL }, { -EOPNOTSUPP, ENOTSUP },
    { -ETIMEDOUT, EIO }, { -EIO, EIO }, { -ESHUTDOWN, EIO },
    { -ENOENT, EIO }, { -EACCES, EIO }, { -EBADMSG, EIO },
    { -ENOTCONN, EIO }, { -12345, EIO },
  };
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++)
    assert_int_equal(rbd_errno(t[i].ret), t[i].err);
}

/* The refusal for stage/ret contains want (and the errno is -ret). */
static void check_open_error(enum rbd_stage stage, int ret, const char *spec,
                             const struct rbd_keys *k, const char *want)
{
  struct rbd_spec sp;
  assert_int_equal(rbd_spec_parse(spec, &sp), 0);
  clear_error();
  rbd_set_open_error(stage, ret, &sp, k);
  assert_int_equal(get_errno(), -ret);
  if (!strstr(get_error(), want))
    fail_msg("\"%s\" lacks \"%s\"", get_error(), want);
  assert_null(strchr(get_error(), '\n'));          /* one line */
}

static void test_open_errors(void **state)
{
  (void)state;
  struct rbd_keys k = { .conf = "/c/ceph.conf", .id = "snbd",
                        .keyring = "/c/k", .timeout = 7 };
  struct rbd_keys dflt = { .timeout = 30 };
  check_open_error(RBD_STAGE_CONNECT, -ETIMEDOUT, "p/i", &k, "within 7 s");
  check_open_error(RBD_STAGE_CONNECT, -ETIMEDOUT, "p/i", &k, "/c/ceph.conf");
  check_open_error(RBD_STAGE_CONNECT, -EACCES, "p/i", &k,
                   "refused client.snbd's key");
  check_open_error(RBD_STAGE_CONNECT, -EACCES, "p/i", &dflt, "client.admin");
  check_open_error(RBD_STAGE_CONNECT, -ENOENT, "p/i", &k, "no keyring");
  check_open_error(RBD_STAGE_CONNECT, -EIO, "p/i", &k, "cannot connect");
  check_open_error(RBD_STAGE_CONF, -ENOENT, "p/i", &k, "cannot read "
                   "/c/ceph.conf");
  check_open_error(RBD_STAGE_POOL, -ENOENT, "p/i", &k, "no pool \"p\"");
  check_open_error(RBD_STAGE_IMAGE, -ENOENT, "p/i", &k, "no image p/i");
  check_open_error(RBD_STAGE_IMAGE, -ENOENT, "p/n/i", &k, "no image p/n/i");
  check_open_error(RBD_STAGE_IMAGE, -EPERM, "p/i", &k,
                   "cannot open image p/i: Operation not permitted");
  check_open_error(RBD_STAGE_SNAP, -ENOENT, "p/i@s", &k,
                   "no snapshot p/i@s");
}

/* Keys: the export's own beats a fallback, the last of each wins; a key
 * no kind of backend takes is not known, and memory: refuses an export's
 * rbd key but ignores a server-wide one. */
static void test_keys(void **state)
{
  (void)state;
  const struct backend_key v[] = {
    { "ceph-id", "a", true }, { "ceph-id", "b", false },
    { "ceph-id", "c", true }, { "ceph-conf", "x", true },
    { "ceph-conf", "y", true },
  };
  struct backend_keys keys = { v, sizeof v / sizeof v[0] };
  assert_string_equal(backend_key_get(&keys, "ceph-id"), "b");
  assert_string_equal(backend_key_get(&keys, "ceph-conf"), "y");
  assert_null(backend_key_get(&keys, "ceph-keyring"));
  assert_null(backend_key_get(NULL, "ceph-id"));
  assert_false(backend_key_known("nosuch"));
  assert_false(backend_key_known("readonly"));

  struct backend_keys fallback = { v, 1 };
  struct backend *b = backend_open_keys("memory:1M", false, &fallback);
  assert_non_null(b);
  backend_close(b);
  struct backend_keys own = { v + 1, 1 };
  assert_null(backend_open_keys("memory:1M", false, &own));
  assert_non_null(strstr(get_error(), "ceph-id does not apply"));
  assert_null(backend_open_keys("async:0:memory:1M", false, &own));
#ifdef SNBD_HAVE_RBD
  assert_true(backend_key_known("ceph-conf"));
  assert_true(backend_key_known("ceph-timeout"));
  /* A bad spec or key fails before librados is touched. */
  assert_null(backend_open_keys("rbd:nopool", false, NULL));
  assert_non_null(strstr(get_error(), "POOL/IMAGE"));
  const struct backend_key t[] = { { "ceph-timeout", "0", false } };
  struct backend_keys bad_t = { t, 1 };
  assert_null(backend_open_keys("rbd:p/i", false, &bad_t));
  assert_non_null(strstr(get_error(), "ceph-timeout"));
#endif
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_spec_good),
    cmocka_unit_test(test_spec_bad),
    cmocka_unit_test(test_timeout),
    cmocka_unit_test(test_errno),
    cmocka_unit_test(test_open_errors),
    cmocka_unit_test(test_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
