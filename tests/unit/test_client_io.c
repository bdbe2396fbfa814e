/* libsnbd against a real server: synchronous and asynchronous I/O, split
 * requests, zero/trim/flush/cache/block status, many threads on one
 * handle, and the errors a caller can provoke.
 *
 *   test_client_io            spawns "nbdkit -s memory 128M" (exit 77 if
 *                             nbdkit is missing)
 *   test_client_io URI        runs against URI (an export of >= 64 MiB,
 *                             writable, contents may be destroyed)
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "snbd/snbd.h"

#define MiB (1024 * 1024)

static void fail(int line, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
static void fail(int line, const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "test_client_io:%d: ", line);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fprintf(stderr, " [last libsnbd error: %s]\n", snbd_get_error());
  exit(1);
}
#define CHECK(cond) do { if (!(cond)) fail(__LINE__, "%s", #cond); } while (0)
#define OK(call) do { if ((call) == -1) fail(__LINE__, "%s failed", #call); } while (0)

static const char *uri;

static struct snbd_handle *open_handle(void)
{
  struct snbd_handle *h = snbd_create();
  CHECK(h != NULL);
  OK(snbd_add_meta_context(h, "base:allocation"));
  OK(snbd_set_uri_allow_local_file(h, true));
  if (uri)
    OK(snbd_connect_uri(h, uri));
  else {
    char *argv[] = { "nbdkit", "-s", "--exit-with-parent", "memory", "128M",
                     NULL };
    OK(snbd_connect_command(h, argv));
  }
  return h;
}

static void fill(char *buf, size_t n, uint64_t seed)
{
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    buf[i] = (char)x;
  }
}

static bool all_zero(const char *b, size_t n)
{
  for (size_t i = 0; i < n; i++)
    if (b[i])
      return false;
  return true;
}

/* Writes and reads back, including a 40 MiB request the library splits. */
static void test_sync_io(struct snbd_handle *h)
{
  size_t n = 40 * MiB;
  char *w = malloc(n), *r = malloc(n);
  CHECK(w && r);
  fill(w, n, 1);
  OK(snbd_pwrite(h, w, n, 4096, 0));
  OK(snbd_pread(h, r, n, 4096, 0));
  CHECK(memcmp(w, r, n) == 0);
  int fua = snbd_can_fua(h);
  CHECK(fua >= 0);
  fill(w, 65536, 2);
  OK(snbd_pwrite(h, w, 65536, 0, fua ? SNBD_CMD_FLAG_FUA : 0));
  OK(snbd_pread(h, r, 65536, 0, snbd_can_df(h) == 1 ? SNBD_CMD_FLAG_DF : 0));
  CHECK(memcmp(w, r, 65536) == 0);
  free(w);
  free(r);
}

static void test_zero_trim_flush(struct snbd_handle *h)
{
  char *b = malloc(MiB);
  CHECK(b);
  fill(b, MiB, 3);
  OK(snbd_pwrite(h, b, MiB, 8 * MiB, 0));
  if (snbd_can_zero(h) == 1) {
    OK(snbd_zero(h, MiB / 2, 8 * MiB, 0));
    OK(snbd_zero(h, MiB / 2, 8 * MiB + MiB / 2, SNBD_CMD_FLAG_NO_HOLE));
    OK(snbd_pread(h, b, MiB, 8 * MiB, 0));
    CHECK(all_zero(b, MiB));
    if (snbd_can_fast_zero(h) == 1) {
      int r = snbd_zero(h, MiB, 8 * MiB, SNBD_CMD_FLAG_FAST_ZERO);
      CHECK(r == 0 || snbd_get_errno() == ENOTSUP);
    }
  }
  else
    CHECK(snbd_zero(h, MiB, 0, 0) == -1 && snbd_get_errno() == ENOTSUP);
  if (snbd_can_trim(h) == 1)
    OK(snbd_trim(h, MiB, 8 * MiB, 0));
  if (snbd_can_flush(h) == 1)
    OK(snbd_flush(h, 0));
  if (snbd_can_cache(h) == 1)
    OK(snbd_cache(h, MiB, 0, 0));
  free(b);
}

struct extents { uint64_t covered; int calls; };

static int extent_cb(void *ud, const char *ctx, uint64_t off,
                     const struct snbd_extent *e, size_t n, int *error)
{
  struct extents *x = ud;
  (void)error;
  if (strcmp(ctx, "base:allocation") != 0 || off != 16 * MiB || n == 0)
    return -1;
  x->calls++;
  for (size_t i = 0; i < n; i++)
    x->covered += e[i].length;
  return 0;
}

static void test_block_status(struct snbd_handle *h)
{
  if (snbd_can_meta_context(h, "base:allocation") != 1) {
    CHECK(snbd_block_status(h, MiB, 0, extent_cb, NULL, 0) == -1);
    return;
  }
  struct extents x = { 0 };
  OK(snbd_block_status(h, 4 * MiB, 16 * MiB, extent_cb, &x, 0));
  CHECK(x.calls == 1 && x.covered > 0);
  x = (struct extents){ 0 };
  OK(snbd_block_status(h, 4 * MiB, 16 * MiB, extent_cb, &x,
                       SNBD_CMD_FLAG_REQ_ONE));
  CHECK(x.calls == 1 && x.covered > 0 && x.covered <= 4 * MiB);
}

/* ---- Asynchronous ---- */

struct aio_state {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  int done, errors;
};

static void completed(void *ud, int64_t cookie, int error)
{
  struct aio_state *s = ud;
  pthread_mutex_lock(&s->lock);
  s->done++;
  if (error || cookie <= 0)
    s->errors++;
  pthread_cond_signal(&s->cond);
  pthread_mutex_unlock(&s->lock);
}

/* 64 writes in flight with callbacks, then 64 reads, then compare. */
static void test_aio_callbacks(struct snbd_handle *h)
{
  enum { N = 64, SZ = 256 * 1024 };
  char *w = malloc((size_t)N * SZ), *r = malloc((size_t)N * SZ);
  CHECK(w && r);
  fill(w, (size_t)N * SZ, 4);
  struct aio_state s = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
                         0, 0 };
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < N; i++) {
      uint64_t off = 24 * MiB + (uint64_t)i * SZ;
      int64_t c = pass == 0
        ? snbd_aio_pwrite(h, w + (size_t)i * SZ, SZ, off, completed, &s, 0)
        : snbd_aio_pread(h, r + (size_t)i * SZ, SZ, off, completed, &s, 0);
      CHECK(c > 0);
    }
    pthread_mutex_lock(&s.lock);
    while (s.done < N * (pass + 1))
      pthread_cond_wait(&s.cond, &s.lock);
    pthread_mutex_unlock(&s.lock);
  }
  CHECK(s.errors == 0);
  CHECK(memcmp(w, r, (size_t)N * SZ) == 0);
  CHECK(snbd_aio_in_flight(h) == 0);
  free(w);
  free(r);
}

/* Without callbacks: collect with aio_wait and command_completed. */
static void test_aio_wait(struct snbd_handle *h)
{
  char a[4096], b[4096];
  fill(a, sizeof a, 5);
  int64_t c1 = snbd_aio_pwrite(h, a, sizeof a, 0, NULL, NULL, 0);
  CHECK(c1 > 0);
  OK(snbd_aio_wait(h, c1));
  CHECK(snbd_aio_wait(h, c1) == -1);            /* already collected */
  int64_t c2 = snbd_aio_pread(h, b, sizeof b, 0, NULL, NULL, 0);
  CHECK(c2 > 0 && c2 != c1);
  CHECK(snbd_aio_in_flight(h) == 1);
  int r;
  for (int i = 0; (r = snbd_aio_command_completed(h, c2)) == 0 && i < 1000;
       i++)
    usleep(1000);
  CHECK(r == 1);
  CHECK(memcmp(a, b, sizeof a) == 0);
  CHECK(snbd_aio_in_flight(h) == 0);
}

struct thread_arg { struct snbd_handle *h; int id; int ok; };

static void *worker(void *p)
{
  struct thread_arg *t = p;
  char w[65536], r[65536];
  t->ok = 1;
  for (int i = 0; i < 20; i++) {
    uint64_t off = 48 * MiB + (uint64_t)t->id * MiB + (uint64_t)(i % 16) * 65536;
    fill(w, sizeof w, (uint64_t)t->id * 1000 + (uint64_t)i);
    if (snbd_pwrite(t->h, w, sizeof w, off, 0) == -1 ||
        snbd_pread(t->h, r, sizeof r, off, 0) == -1 ||
        memcmp(w, r, sizeof w) != 0)
      t->ok = 0;
  }
  return NULL;
}

static void test_threads(struct snbd_handle *h)
{
  pthread_t th[8];
  struct thread_arg a[8];
  for (int i = 0; i < 8; i++) {
    a[i] = (struct thread_arg){ h, i, 0 };
    CHECK(pthread_create(&th[i], NULL, worker, &a[i]) == 0);
  }
  for (int i = 0; i < 8; i++) {
    pthread_join(th[i], NULL);
    CHECK(a[i].ok);
  }
}

/* What the caller gets wrong is refused before anything is sent, and a
 * read buffer is never left with stale contents. */
static void test_caller_errors(struct snbd_handle *h)
{
  int64_t size = snbd_get_size(h);
  char b[4096];
  memset(b, 0xff, sizeof b);
  CHECK(snbd_pread(h, b, sizeof b, (uint64_t)size - 512, 0) == -1);
  CHECK(snbd_get_errno() == EINVAL);
  CHECK(strstr(snbd_get_error(), "snbd_pread") != NULL);
  CHECK(all_zero(b, sizeof b));
  CHECK(snbd_pread(h, b, sizeof b, UINT64_MAX - 100, 0) == -1);
  CHECK(snbd_pwrite(h, b, 0, 0, 0) == -1 && snbd_get_errno() == EINVAL);
  CHECK(snbd_pwrite(h, b, sizeof b, 0, SNBD_CMD_FLAG_REQ_ONE) == -1);
  CHECK(snbd_pread(h, b, sizeof b, 0, 1u << 20) == -1);
  CHECK(snbd_aio_wait(h, 999999) == -1);
  CHECK(snbd_set_export_name(h, "x") == -1);    /* too late */
}

static void test_shutdown(struct snbd_handle *h)
{
  char b[512];
  OK(snbd_shutdown(h));
  memset(b, 0xff, sizeof b);
  CHECK(snbd_pread(h, b, sizeof b, 0, 0) == -1);
  CHECK(all_zero(b, sizeof b));
  CHECK(snbd_get_errno() == ENOTCONN);
}

int main(int argc, char *argv[])
{
  if (argc > 1)
    uri = argv[1];
  else if (system("nbdkit --version >/dev/null 2>&1") != 0) {
    printf("SKIP: nbdkit is not installed\n");
    return 77;
  }
  struct snbd_handle *h = open_handle();
  CHECK(snbd_get_size(h) >= 64 * MiB);
  test_sync_io(h);
  test_zero_trim_flush(h);
  test_block_status(h);
  test_aio_callbacks(h);
  test_aio_wait(h);
  test_threads(h);
  test_caller_errors(h);
  test_shutdown(h);
  snbd_close(h);
  printf("test_client_io: all checks passed (%s)\n", uri ? uri : "nbdkit -s");
  return 0;
}
