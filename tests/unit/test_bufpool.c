/* Unit tests of server/bufpool.c: large request buffers are reused,
 * small ones are not kept, a kept buffer is never more than twice the
 * size asked for, and the per-connection and server-wide bounds hold. */
#include <malloc.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include "bufpool.h"

#define K 1024u

static void test_reuse(void **state)
{
  (void)state;
  struct buf_pool_total total = { .max = BUF_POOL_TOTAL_MAX };
  struct buf_pool p;
  buf_pool_init(&p, &total);
  assert_false(buf_pool_holds(&p));
  void *a = buf_pool_get(&p, 256 * K);
  assert_non_null(a);
  buf_pool_put(&p, a);
  assert_true(buf_pool_holds(&p));
  assert_int_equal(total.bytes, malloc_usable_size(a));
  /* The same buffer serves a request of the same size, or a bit less. */
  assert_ptr_equal(buf_pool_get(&p, 200 * K), a);
  assert_false(buf_pool_holds(&p));
  assert_int_equal(total.bytes, 0);
  buf_pool_put(&p, a);
  /* Not for a larger one, nor one under half its size. */
  void *b = buf_pool_get(&p, 512 * K);
  assert_ptr_not_equal(b, a);
  void *c = buf_pool_get(&p, 100 * K);
  assert_ptr_not_equal(c, a);
  assert_true(buf_pool_holds(&p));
  free(b);
  free(c);
  /* Small buffers are malloc's business. */
  void *s = buf_pool_get(&p, 4 * K);
  buf_pool_put(&p, s);
  assert_int_equal(p.n, 1);
  buf_pool_put(&p, NULL);
  buf_pool_drain(&p);
  assert_false(buf_pool_holds(&p));
  assert_int_equal(total.bytes, 0);
  buf_pool_destroy(&p);
}

static void test_bounds(void **state)
{
  (void)state;
  struct buf_pool_total total = { .max = BUF_POOL_TOTAL_MAX };
  struct buf_pool p, q;
  buf_pool_init(&p, &total);
  buf_pool_init(&q, &total);
  /* Per connection: at most BUF_POOL_MAX_BYTES. */
  for (unsigned i = 0; i < BUF_POOL_MAX_N; i++)
    buf_pool_put(&p, malloc(1024 * K));
  assert_true(p.bytes <= BUF_POOL_MAX_BYTES);
  assert_true(p.n < BUF_POOL_MAX_N);
  assert_true(p.n >= (int)(BUF_POOL_MAX_BYTES / (1024 * K)) - 1);
  /* At most BUF_POOL_MAX_N, however small. */
  for (unsigned i = 0; i < BUF_POOL_MAX_N + 4; i++)
    buf_pool_put(&q, malloc(BUF_POOL_MIN));
  assert_int_equal(q.n, BUF_POOL_MAX_N);
  buf_pool_drain(&p);
  buf_pool_drain(&q);
  assert_int_equal(total.bytes, 0);

  /* Server-wide: the pools together stay under total.max. */
  total.max = 3 * 300 * K;
  buf_pool_put(&p, malloc(256 * K));
  buf_pool_put(&q, malloc(256 * K));
  buf_pool_put(&q, malloc(256 * K));
  buf_pool_put(&p, malloc(256 * K));      /* over: freed */
  assert_int_equal(p.n + q.n, 3);
  assert_true(total.bytes <= total.max);
  assert_int_equal(total.bytes, p.bytes + q.bytes);
  buf_pool_destroy(&p);
  buf_pool_destroy(&q);
  assert_int_equal(total.bytes, 0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_reuse),
    cmocka_unit_test(test_bounds),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
