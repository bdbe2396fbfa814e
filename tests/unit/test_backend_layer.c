/* Unit tests of the backend layer (server/backends/backend.c): FUA and
 * zero emulation, the errors it passes on, sparse reads, and the
 * asynchronous form driven through the async filter (async.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "backend.h"
#include "log.h"

#define DISK (1024 * 1024)

/* A backend that counts what reaches it; it may lack FUA and zero. */
struct probe {
  struct backend b;
  uint8_t data[DISK];
  int pwrites, flushes, zeroes;
  unsigned last_flags;
  uint64_t largest_write;
  bool fail_writes;
};

static struct probe *pb(struct backend *b)
{
  return (struct probe *)b;
}

static int probe_pread(struct backend *b, void *buf, size_t count,
                       uint64_t offset)
{
  memcpy(buf, pb(b)->data + offset, count);
  return 0;
}

static int probe_pwrite(struct backend *b, const void *buf, size_t count,
                        uint64_t offset, unsigned flags)
{
  struct probe *p = pb(b);
  p->pwrites++;
  p->last_flags = flags;
  if (count > p->largest_write)
    p->largest_write = count;
  if (p->fail_writes) {
    set_error(ENOSPC, "probe: the disk is full at %llu",
              (unsigned long long)offset);
    return -1;
  }
  memcpy(p->data + offset, buf, count);
  return 0;
}

static int probe_flush(struct backend *b)
{
  pb(b)->flushes++;
  return 0;
}

static int probe_zero(struct backend *b, uint64_t count, uint64_t offset,
                      unsigned flags)
{
  struct probe *p = pb(b);
  p->zeroes++;
  p->last_flags = flags;
  memset(p->data + offset, 0, count);
  return 0;
}

static void probe_close(struct backend *b)
{
  (void)b;
}

static const struct backend_ops probe_ops = {
  .name = "probe", .pread = probe_pread, .pwrite = probe_pwrite,
  .flush = probe_flush, .zero = probe_zero, .close = probe_close,
};

static struct probe *probe_new(unsigned caps)
{
  struct probe *p = calloc(1, sizeof *p);
  assert_non_null(p);
  p->b = (struct backend){ .ops = &probe_ops, .size = DISK,
                           .caps = BACKEND_CAN_WRITE | BACKEND_CAN_FLUSH | caps,
                           .desc = "probe" };
  return p;
}

struct waiter {
  struct backend_req br;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int calls, err;
  pthread_t thread;          /* that ran done */
};

static void waiter_done(struct backend_req *br, int err)
{
  struct waiter *w = (struct waiter *)br;
  pthread_mutex_lock(&w->lock);
  w->calls++;
  w->err = err;
  w->thread = pthread_self();
  pthread_cond_broadcast(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

static void waiter_init(struct waiter *w, enum backend_op op, unsigned flags,
                        uint64_t offset, uint64_t count, void *buf)
{
  memset(w, 0, sizeof *w);
  w->br = (struct backend_req){ .op = op, .flags = flags, .offset = offset,
                                .count = count, .buf = buf,
                                .done = waiter_done };
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->cond, NULL);
}

static int waiter_wait(struct waiter *w)
{
  pthread_mutex_lock(&w->lock);
  while (w->calls == 0)
    pthread_cond_wait(&w->cond, &w->lock);
  int err = w->err;
  pthread_mutex_unlock(&w->lock);
  return err;
}

/* FUA: the backend's own where it has one, else exactly one flush after
 * the write; a payload already in place gets one flush either way. */
static void test_fua(void **state)
{
  (void)state;
  uint8_t buf[512] = { 1 };
  struct probe *p = probe_new(0);
  assert_int_equal(backend_pwrite(&p->b, buf, sizeof buf, 0, BACKEND_FUA), 0);
  assert_int_equal(p->pwrites, 1);
  assert_int_equal(p->last_flags, 0);
  assert_int_equal(p->flushes, 1);
  assert_int_equal(backend_pwrite(&p->b, buf, sizeof buf, 0, 0), 0);
  assert_int_equal(p->flushes, 1);
  free(p);

  p = probe_new(BACKEND_CAN_FUA);
  assert_int_equal(backend_pwrite(&p->b, buf, sizeof buf, 0, BACKEND_FUA), 0);
  assert_int_equal(p->last_flags, BACKEND_FUA);
  assert_int_equal(p->flushes, 0);
  struct waiter w;
  waiter_init(&w, BACKEND_OP_WRITE, BACKEND_FUA | BACKEND_IN_PLACE, 0,
              sizeof buf, NULL);
  backend_submit(&p->b, &w.br);
  assert_int_equal(waiter_wait(&w), 0);
  assert_int_equal(p->pwrites, 1);           /* no second write */
  assert_int_equal(p->flushes, 1);
  free(p);
}

/* Zeroing without zero(): zeroes written in bounded pieces; FAST is
 * refused with ENOTSUP before anything is written. */
static void test_zero_emulated(void **state)
{
  (void)state;
  struct probe *p = probe_new(0);
  memset(p->data, 0xaa, DISK);
  assert_int_equal(backend_zero(&p->b, 200000, 1000, BACKEND_MAY_TRIM), 0);
  assert_int_equal(p->zeroes, 0);
  assert_int_equal(p->pwrites, 4);
  assert_true(p->largest_write <= 64 * 1024);
  for (size_t i = 0; i < DISK; i++)
    assert_int_equal(p->data[i], i >= 1000 && i < 201000 ? 0 : 0xaa);
  assert_int_equal(backend_zero(&p->b, 4096, 0, BACKEND_FAST), -1);
  assert_int_equal(errno, ENOTSUP);
  assert_int_equal(p->pwrites, 4);
  free(p);

  p = probe_new(BACKEND_CAN_ZERO);
  assert_int_equal(backend_zero(&p->b, 4096, 0, BACKEND_FAST), -1);
  assert_int_equal(errno, ENOTSUP);         /* zero(), but not fast */
  assert_int_equal(backend_zero(&p->b, 4096, 0, BACKEND_MAY_TRIM), 0);
  assert_int_equal(p->zeroes, 1);
  assert_int_equal(p->last_flags, BACKEND_MAY_TRIM);
  free(p);
}

/* A failure keeps the backend's errno and message. */
static void test_error_passed_on(void **state)
{
  (void)state;
  struct probe *p = probe_new(0);
  p->fail_writes = true;
  assert_int_equal(backend_pwrite(&p->b, "x", 1, 77, BACKEND_FUA), -1);
  assert_int_equal(errno, ENOSPC);
  assert_non_null(strstr(get_error(), "the disk is full at 77"));
  assert_int_equal(p->flushes, 0);          /* no flush after a failure */
  free(p);
}

/* A sparse READ reads only the data extents it is given. */
static void test_sparse_read(void **state)
{
  (void)state;
  struct backend *b = backend_open("memory:1M", false);
  assert_non_null(b);
  assert_int_equal(backend_pwrite(b, "data", 4, 70000, 0), 0);
  struct extents ex;
  extents_init(&ex, 0, 262144, 0);
  assert_int_equal(backend_extents(b, 262144, 0, &ex), 0);
  assert_true(ex.n >= 2);
  uint8_t *buf = malloc(262144);
  memset(buf, 0xaa, 262144);
  struct waiter w;
  waiter_init(&w, BACKEND_OP_READ, 0, 0, 262144, buf);
  w.br.data = &ex;
  backend_submit(b, &w.br);
  assert_int_equal(waiter_wait(&w), 0);
  assert_memory_equal(buf + 70000, "data", 4);
  assert_int_equal(buf[65536], 0);          /* its data chunk was read */
  assert_int_equal(buf[0], 0xaa);           /* the holes were not */
  assert_int_equal(buf[262143], 0xaa);
  free(buf);
  extents_free(&ex);
  backend_close(b);
}

#define NASYNC 32

/* Through the async filter: every request completes exactly once, on the
 * filter's thread, out of order, with its own data and FUA flush. */
static void test_async_completions(void **state)
{
  (void)state;
  struct backend *b = backend_open("async:3000:memory:1M", false);
  assert_non_null(b);
  assert_true(backend_is_async(b));
  assert_false(backend_never_waits(b));
  static struct waiter w[NASYNC];
  static uint8_t data[NASYNC][4096];
  for (int i = 0; i < NASYNC; i++) {
    memset(data[i], i + 1, sizeof data[i]);
    waiter_init(&w[i], BACKEND_OP_WRITE, i % 2 ? BACKEND_FUA : 0,
                (uint64_t)i * 4096, 4096, data[i]);
    backend_submit(b, &w[i].br);
  }
  for (int i = 0; i < NASYNC; i++) {
    assert_int_equal(waiter_wait(&w[i]), 0);
    assert_false(pthread_equal(w[i].thread, pthread_self()));
  }
  for (int i = 0; i < NASYNC; i++) {
    uint8_t back[4096];
    assert_int_equal(backend_pread(b, back, 4096, (uint64_t)i * 4096), 0);
    assert_memory_equal(back, data[i], 4096);
    assert_int_equal(w[i].calls, 1);
  }
  backend_close(b);
}

/* The async thread's error message reaches the synchronous caller. */
static void test_async_error(void **state)
{
  (void)state;
  struct backend *b = backend_open("async:100:error:1:EIO:memory:1M", false);
  assert_non_null(b);
  char buf[16];
  assert_int_equal(backend_pread(b, buf, sizeof buf, 0), -1);
  assert_int_equal(errno, EIO);
  assert_non_null(strstr(get_error(), "injected EIO"));
  assert_int_equal(backend_flush(b), -1);
  assert_int_equal(backend_zero(b, 4096, 0, 0), -1);
  backend_close(b);
  assert_null(backend_open("async:x:memory:1M", false));
  assert_null(backend_open("async:memory:1M", false));
  assert_null(backend_open("nosuch:1", false));
#ifdef SNBD_HAVE_RBD
#define RBD_KIND "rbd:POOL/[NAMESPACE/]IMAGE[@SNAP], "
#else
#define RBD_KIND ""
#endif
  assert_non_null(strstr(get_error(), "memory:SIZE, file:PATH, " RBD_KIND
                         "error:RATE:ERRNAME:SPEC or async:DELAY_US:SPEC"));
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_fua),
    cmocka_unit_test(test_zero_emulated),
    cmocka_unit_test(test_error_passed_on),
    cmocka_unit_test(test_sparse_read),
    cmocka_unit_test(test_async_completions),
    cmocka_unit_test(test_async_error),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
