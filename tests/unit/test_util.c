/* Unit tests of the cleanup attributes and the growable array. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "cleanup.h"
#include "vector.h"

DEFINE_VECTOR(u64_vec, uint64_t);

static void test_vector_grows(void **state)
{
  (void)state;
  struct u64_vec v = VECTOR_INIT;
  for (uint64_t i = 0; i < 1000; i++)
    assert_int_equal(u64_vec_append(&v, i * 3), 0);
  assert_int_equal(v.len, 1000);
  assert_true(v.cap >= 1000);
  for (size_t i = 0; i < v.len; i++)
    assert_int_equal(v.ptr[i], i * 3);
  u64_vec_reset(&v);
  assert_null(v.ptr);
  assert_int_equal(v.len, 0);
}

static void test_vector_overflow(void **state)
{
  (void)state;
  struct u64_vec v = VECTOR_INIT;
  assert_int_equal(u64_vec_append(&v, 1), 0);
  errno = 0;
  /* len + n elements would not fit in size_t bytes: refused, unchanged. */
  assert_int_equal(u64_vec_reserve(&v, SIZE_MAX / 4), -1);
  assert_int_equal(errno, ENOMEM);
  assert_int_equal(v.len, 1);
  assert_int_equal(v.ptr[0], 1);
  u64_vec_reset(&v);
}

static int fd_open(int fd)
{
  return fcntl(fd, F_GETFD) != -1;
}

static int scoped(pthread_mutex_t *m, int *fd_out, char **kept)
{
  SCOPED_LOCK(m);
  CLEANUP_CLOSE int fd = open("/dev/null", O_RDONLY);
  CLEANUP_FREE char *a = strdup("dropped");
  CLEANUP_FREE char *b = strdup("kept");
  *fd_out = fd;
  *kept = TAKE(b);
  assert_null(b);
  return a != NULL;
}

static void test_cleanup(void **state)
{
  (void)state;
  pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
  int fd;
  char *kept;
  assert_int_equal(scoped(&m, &fd, &kept), 1);
  /* The lock was released and the fd closed on return; b survived. */
  assert_int_equal(pthread_mutex_trylock(&m), 0);
  pthread_mutex_unlock(&m);
  assert_false(fd_open(fd));
  assert_string_equal(kept, "kept");
  free(kept);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_vector_grows),
    cmocka_unit_test(test_vector_overflow),
    cmocka_unit_test(test_cleanup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
