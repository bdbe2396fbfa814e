/* Unit tests of the sparse memory backend: data round trips, RAM taken
 * and given back, extents, huge sizes, out of memory, and many threads at
 * once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "backend.h"
#include "log.h"
#include "memory.h"

#define CHUNK ((uint64_t)BACKEND_MEMORY_CHUNK)
#define TIB   (UINT64_C(1) << 40)
#define HZ    (EXTENT_HOLE | EXTENT_ZERO)

/* Sanitizers that reserve huge address space, so RLIMIT_AS cannot be
 * used under them. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define UNDER_SANITIZER 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
#define UNDER_SANITIZER 1
#endif
#endif

static uint64_t chunks_of(struct backend *b)
{
  uint64_t chunks, nodes;
  assert_int_equal(backend_memory_stats(b, &chunks, &nodes), 0);
  return chunks;
}

static uint64_t nodes_of(struct backend *b)
{
  uint64_t chunks, nodes;
  assert_int_equal(backend_memory_stats(b, &chunks, &nodes), 0);
  return nodes;
}

static bool all_bytes(const uint8_t *p, size_t n, uint8_t v)
{
  for (size_t i = 0; i < n; i++)
    if (p[i] != v)
      return false;
  return true;
}

/* Reads [offset, offset+n) and checks every byte is v. */
static void expect_bytes(struct backend *b, uint64_t offset, size_t n,
                         uint8_t v)
{
  uint8_t *buf = malloc(n);
  assert_non_null(buf);
  memset(buf, v ^ 0x5a, n);
  assert_int_equal(b->ops->pread(b, buf, n, offset), 0);
  if (!all_bytes(buf, n, v))
    fail_msg("bytes at %llu+%zu are not all 0x%02x",
             (unsigned long long)offset, n, v);
  free(buf);
}

static void expect_extents(struct backend *b, uint64_t count, uint64_t offset,
                           const struct extent *want, size_t nwant)
{
  struct extents e;
  extents_init(&e, offset, offset + count, 0);
  assert_int_equal(b->ops->extents(b, count, offset, &e), 0);
  if (e.n != nwant)
    fail_msg("%zu extents, want %zu", e.n, nwant);
  for (size_t i = 0; i < nwant; i++) {
    if (e.v[i].offset != want[i].offset || e.v[i].length != want[i].length ||
        e.v[i].flags != want[i].flags)
      fail_msg("extent %zu: %llu+%llu/%u, want %llu+%llu/%u", i,
               (unsigned long long)e.v[i].offset,
               (unsigned long long)e.v[i].length, e.v[i].flags,
               (unsigned long long)want[i].offset,
               (unsigned long long)want[i].length, want[i].flags);
  }
  extents_free(&e);
}

static void test_caps(void **state)
{
  (void)state;
  struct backend *b = backend_memory_open(1 << 20);
  const unsigned want = BACKEND_CAN_WRITE | BACKEND_CAN_FLUSH |
    BACKEND_CAN_FUA | BACKEND_CAN_TRIM | BACKEND_CAN_ZERO |
    BACKEND_CAN_FAST_ZERO | BACKEND_CAN_EXTENTS | BACKEND_CAN_CACHE |
    BACKEND_CAN_MULTI_CONN | BACKEND_CHEAP_EXTENTS;
  assert_non_null(b);
  assert_int_equal(b->caps, want);
  assert_true(backend_never_waits(b));       /* RAM: run inline */
  assert_null(backend_map(b, 0, 4096));
  assert_int_equal(b->block_min, 1);
  assert_int_equal(b->ops->flush(b), 0);
  assert_int_equal(b->ops->cache(b, 4096, 0), 0);
  backend_close(b);
  assert_null(backend_memory_open((uint64_t)INT64_MAX + 1));
  assert_int_equal(get_errno(), EINVAL);
  struct backend *f = backend_open("error:0:EIO:memory:1M", false);
  uint64_t c, n;
  assert_int_equal(backend_memory_stats(f, &c, &n), -1);  /* not memory */
  backend_close(f);
}

static void test_read_after_write(void **state)
{
  (void)state;
  struct backend *b = backend_memory_open(1 << 20);
  uint8_t w[100000], r[sizeof w];
  assert_non_null(b);
  for (size_t i = 0; i < sizeof w; i++)
    w[i] = (uint8_t)(i * 7 + 1);
  /* from inside chunk 0 across chunk 1 into chunk 2 */
  uint64_t off = CHUNK - 1000;
  assert_int_equal(b->ops->pwrite(b, w, sizeof w, off, BACKEND_FUA), 0);
  assert_int_equal(chunks_of(b), 3);
  assert_int_equal(b->ops->pread(b, r, sizeof r, off), 0);
  assert_memory_equal(w, r, sizeof w);
  expect_bytes(b, 0, off, 0);
  expect_bytes(b, off + sizeof w, (1 << 20) - off - sizeof w, 0);
  /* a read straddling written and unwritten bytes */
  assert_int_equal(b->ops->pread(b, r, 20, off - 10), 0);
  assert_true(all_bytes(r, 10, 0));
  assert_memory_equal(r + 10, w, 10);
  /* the last byte of the disk */
  assert_int_equal(b->ops->pwrite(b, "Z", 1, (1 << 20) - 1, 0), 0);
  assert_int_equal(b->ops->pread(b, r, 2, (1 << 20) - 2), 0);
  assert_int_equal(r[0], 0);
  assert_int_equal(r[1], 'Z');
  backend_close(b);
}

/* 1 TiB costs a node until written; one byte takes one chunk and its
 * path; trim gives all of it back. */
static void test_sparse_tib(void **state)
{
  (void)state;
  struct backend *b = backend_memory_open(TIB);
  assert_non_null(b);
  assert_string_equal(b->desc, "memory:1T");
  assert_int_equal(chunks_of(b), 0);
  assert_int_equal(nodes_of(b), 1);
  expect_bytes(b, TIB - 4096, 4096, 0);
  const struct extent hole[] = { { 0, TIB, HZ } };
  expect_extents(b, TIB, 0, hole, 1);

  assert_int_equal(b->ops->pwrite(b, "X", 1, TIB - 1, 0), 0);
  assert_int_equal(chunks_of(b), 1);
  assert_int_equal(nodes_of(b), 3);         /* 2^24 chunks: 3 levels */
  const struct extent two[] = { { 0, TIB - CHUNK, HZ },
                                { TIB - CHUNK, CHUNK, 0 } };
  expect_extents(b, TIB, 0, two, 2);
  const struct extent tail[] = { { TIB - 10, 10, 0 } };
  expect_extents(b, 10, TIB - 10, tail, 1);
  const struct extent mid[] = { { TIB - CHUNK - 5, 5, HZ },
                                { TIB - CHUNK, 3, 0 } };
  expect_extents(b, 8, TIB - CHUNK - 5, mid, 2);

  /* trimming part of the chunk clears it but keeps it */
  assert_int_equal(b->ops->trim(b, 1, TIB - 1, 0), 0);
  assert_int_equal(chunks_of(b), 1);
  expect_bytes(b, TIB - 1, 1, 0);
  /* trimming the whole chunk frees it and the nodes above it */
  assert_int_equal(b->ops->pwrite(b, "X", 1, TIB - 1, 0), 0);
  assert_int_equal(b->ops->trim(b, CHUNK, TIB - CHUNK, 0), 0);
  assert_int_equal(chunks_of(b), 0);
  assert_int_equal(nodes_of(b), 1);
  expect_extents(b, TIB, 0, hole, 1);
  expect_bytes(b, TIB - 1, 1, 0);
  backend_close(b);
}

/* The largest size there is: still one node, and whole-disk extents and
 * trims skip the empty parts of the tree instead of walking 2^47 chunks. */
static void test_huge(void **state)
{
  (void)state;
  const uint64_t size = INT64_MAX;
  struct backend *b = backend_open("memory:9223372036854775807", false);
  assert_non_null(b);
  assert_int_equal(b->size, size);
  assert_int_equal(nodes_of(b), 1);
  uint64_t offs[] = { 0, UINT64_C(1) << 62, size - 1, size / 3 };
  for (size_t i = 0; i < 4; i++)
    assert_int_equal(b->ops->pwrite(b, "Q", 1, offs[i], 0), 0);
  assert_int_equal(chunks_of(b), 4);
  uint8_t c = 0;
  assert_int_equal(b->ops->pread(b, &c, 1, size - 1), 0);
  assert_int_equal(c, 'Q');

  struct extents e;
  extents_init(&e, 0, size, 0);
  assert_int_equal(b->ops->extents(b, size, 0, &e), 0);
  assert_int_equal(e.n, 7);                /* d h d h d h d */
  uint64_t pos = 0;
  for (size_t i = 0; i < e.n; i++) {
    assert_true(e.v[i].offset == pos);
    assert_int_equal(e.v[i].flags, i % 2 ? HZ : 0);
    pos += e.v[i].length;
  }
  assert_true(pos == size);
  assert_true(e.v[6].length == size % CHUNK);    /* last, partial chunk */
  extents_free(&e);

  assert_int_equal(b->ops->zero(b, size, 0, BACKEND_MAY_TRIM), 0);
  assert_int_equal(chunks_of(b), 0);
  assert_int_equal(nodes_of(b), 1);
  assert_int_equal(b->ops->pread(b, &c, 1, size - 1), 0);
  assert_int_equal(c, 0);
  backend_close(b);
}

static void test_zero_trim_partial(void **state)
{
  (void)state;
  const uint64_t size = 8 * CHUNK;
  struct backend *b = backend_memory_open(size);
  uint8_t *buf = malloc(3 * CHUNK);
  assert_non_null(b);
  assert_non_null(buf);
  memset(buf, 0xaa, 3 * CHUNK);
  assert_int_equal(b->ops->pwrite(b, buf, 3 * CHUNK, 0, 0), 0);
  assert_int_equal(chunks_of(b), 3);

  /* covers chunk 1 whole, the ends of chunks 0 and 2 in part */
  assert_int_equal(b->ops->zero(b, CHUNK + 200, CHUNK - 100, 0), 0);
  assert_int_equal(chunks_of(b), 2);
  expect_bytes(b, 0, CHUNK - 100, 0xaa);
  expect_bytes(b, CHUNK - 100, CHUNK + 200, 0);
  expect_bytes(b, 2 * CHUNK + 100, CHUNK - 100, 0xaa);
  const struct extent want[] = {
    { 0, CHUNK, 0 }, { CHUNK, CHUNK, HZ }, { 2 * CHUNK, CHUNK, 0 },
    { 3 * CHUNK, 5 * CHUNK, HZ },
  };
  expect_extents(b, size, 0, want, 4);

  /* inside one chunk: cleared, nothing freed */
  assert_int_equal(b->ops->trim(b, 10, 2 * CHUNK + 500, 0), 0);
  assert_int_equal(chunks_of(b), 2);
  expect_bytes(b, 2 * CHUNK + 500, 10, 0);
  expect_bytes(b, 2 * CHUNK + 490, 10, 0xaa);
  expect_bytes(b, 2 * CHUNK + 510, 10, 0xaa);
  /* across a chunk boundary, covering no chunk whole */
  assert_int_equal(b->ops->zero(b, 20, 3 * CHUNK - 10, BACKEND_FAST), 0);
  expect_bytes(b, 3 * CHUNK - 10, 20, 0);
  expect_bytes(b, 3 * CHUNK - 20, 10, 0xaa);
  assert_int_equal(chunks_of(b), 2);
  /* empty ranges are no-ops */
  assert_int_equal(b->ops->zero(b, 0, 5, 0), 0);
  assert_int_equal(b->ops->trim(b, 0, 0, 0), 0);
  expect_bytes(b, 0, 10, 0xaa);
  /* the whole disk */
  assert_int_equal(b->ops->trim(b, size, 0, BACKEND_FUA), 0);
  assert_int_equal(chunks_of(b), 0);
  expect_bytes(b, 0, size, 0);
  free(buf);
  backend_close(b);
}

/* Writing zeroes never allocates, and gives back whole chunks. */
static void test_zero_writes(void **state)
{
  (void)state;
  struct backend *b = backend_memory_open(8 * CHUNK);
  uint8_t *z = calloc(1, 2 * CHUNK), *d = malloc(2 * CHUNK);
  assert_non_null(b);
  assert_non_null(z);
  assert_non_null(d);
  memset(d, 0x33, 2 * CHUNK);
  assert_int_equal(b->ops->pwrite(b, z, 2 * CHUNK, 0, 0), 0);
  assert_int_equal(b->ops->pwrite(b, z, 100, 3 * CHUNK + 7, 0), 0);
  assert_int_equal(chunks_of(b), 0);

  assert_int_equal(b->ops->pwrite(b, d, 2 * CHUNK, 0, 0), 0);
  assert_int_equal(chunks_of(b), 2);
  /* whole chunk 1 overwritten with zeroes: freed */
  assert_int_equal(b->ops->pwrite(b, z, CHUNK, CHUNK, 0), 0);
  assert_int_equal(chunks_of(b), 1);
  expect_bytes(b, CHUNK, CHUNK, 0);
  expect_bytes(b, 0, CHUNK, 0x33);
  /* zeroes over part of a chunk: kept, cleared */
  assert_int_equal(b->ops->pwrite(b, z, 100, 50, 0), 0);
  assert_int_equal(chunks_of(b), 1);
  expect_bytes(b, 50, 100, 0);
  expect_bytes(b, 150, 100, 0x33);
  /* a chunk's worth of zeroes over two chunks covers neither whole */
  assert_int_equal(b->ops->pwrite(b, d, 2 * CHUNK, 4 * CHUNK, 0), 0);
  assert_int_equal(b->ops->pwrite(b, z, CHUNK, 4 * CHUNK + 10, 0), 0);
  assert_int_equal(chunks_of(b), 3);
  expect_bytes(b, 4 * CHUNK, 10, 0x33);
  expect_bytes(b, 4 * CHUNK + 10, CHUNK, 0);
  expect_bytes(b, 5 * CHUNK + 10, CHUNK - 10, 0x33);
  /* a write that is zero except for its last byte allocates */
  z[CHUNK - 1] = 1;
  assert_int_equal(b->ops->pwrite(b, z, CHUNK, 7 * CHUNK, 0), 0);
  assert_int_equal(chunks_of(b), 4);
  expect_bytes(b, 8 * CHUNK - 1, 1, 1);
  free(z);
  free(d);
  backend_close(b);
}

/* Out of memory is an error, not a crash, and the disk stays usable.  In
 * a child under an address-space limit; not under ASan (its allocator
 * aborts instead of returning NULL) or other sanitizers (see above). */
static void test_enomem(void **state)
{
  (void)state;
#ifdef UNDER_SANITIZER
  skip();
#else
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    long vm_pages = 0;
    FILE *fp = fopen("/proc/self/statm", "r");
    if (fp == NULL || fscanf(fp, "%ld", &vm_pages) != 1)
      _exit(10);
    fclose(fp);
    uint64_t limit = (uint64_t)vm_pages * (uint64_t)sysconf(_SC_PAGESIZE) +
                     (32 << 20);
    struct rlimit rl = { limit, limit };
    struct backend *b = backend_memory_open(TIB);
    static uint8_t data[BACKEND_MEMORY_CHUNK];
    memset(data, 0x77, sizeof data);
    if (b == NULL || setrlimit(RLIMIT_AS, &rl) == -1)
      _exit(11);
    uint64_t i;
    for (i = 0; i < 4096; i++)              /* 256 MiB > the 32 MiB left */
      if (b->ops->pwrite(b, data, CHUNK, i * CHUNK * 3, 0) == -1)
        break;
    if (i == 4096 || errno != ENOMEM || get_errno() != ENOMEM || i == 0)
      _exit(12);
    uint8_t c = 0;
    if (b->ops->pread(b, &c, 1, 0) == -1 || c != 0x77)
      _exit(13);
    /* give memory back, then writing works again */
    if (b->ops->trim(b, TIB, 0, 0) == -1 ||
        b->ops->pwrite(b, data, CHUNK, i * CHUNK * 3, 0) == -1)
      _exit(14);
    backend_close(b);
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  assert_true(WIFEXITED(status));
  assert_int_equal(WEXITSTATUS(status), 0);
#endif
}

/* Stress: threads own adjacent regions whose edges fall inside chunks
 * (so neighbours share chunks) and mix write, write of zeroes, trim,
 * zero, read and extents on them, checking against a private copy; all
 * also hammer a shared area where nothing is checked but the absence of
 * crashes and sanitizer reports. */
#define NTHREADS 4
#define NOPS     20000
#define REGION   (3 * CHUNK + 12345)
#define SHARED_BASE ((NTHREADS * REGION + CHUNK - 1) / CHUNK * CHUNK)
#define SHARED   (4 * CHUNK)
#define DISK     (SHARED_BASE + SHARED)

struct worker {
  struct backend *b;
  pthread_barrier_t *start;
  unsigned id;
  uint64_t rng;
  uint8_t *shadow, *buf;
  atomic_int *failures;
};

static uint64_t next_rand(uint64_t *s)
{
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

/* Each hole the backend reports inside the region must be zero in the
 * private copy (nobody else writes there). */
static bool check_extents(struct worker *w, uint64_t base, uint64_t off,
                          uint64_t len)
{
  struct extents e;
  bool ok = true;
  extents_init(&e, base + off, base + off + len, 0);
  if (w->b->ops->extents(w->b, len, base + off, &e) == -1 || e.n == 0)
    ok = false;
  uint64_t pos = base + off;
  for (size_t i = 0; ok && i < e.n; i++) {
    ok = e.v[i].offset == pos;
    if (e.v[i].flags & EXTENT_HOLE)
      ok = ok && all_bytes(w->shadow + (pos - base), e.v[i].length, 0);
    pos += e.v[i].length;
  }
  extents_free(&e);
  return ok && pos == base + off + len;
}

static bool stress_op(struct worker *w, uint64_t base)
{
  struct backend *b = w->b;
  uint64_t r = next_rand(&w->rng);
  uint64_t max = (r >> 8) % 4 == 0 ? 2 * CHUNK : 4096;
  uint64_t len = 1 + (r >> 16) % max, off = (r >> 40) % REGION;
  uint8_t v = (uint8_t)(r >> 56);
  if (len > REGION - off)
    len = REGION - off;

  switch (r % 8) {
  case 0: case 1: case 2:                       /* write a pattern */
    for (uint64_t i = 0; i < len; i++)
      w->buf[i] = (uint8_t)(v + (off + i) * 13);
    memcpy(w->shadow + off, w->buf, len);
    return b->ops->pwrite(b, w->buf, len, base + off, 0) == 0;
  case 3:                                       /* write zeroes */
    memset(w->buf, 0, len);
    memset(w->shadow + off, 0, len);
    return b->ops->pwrite(b, w->buf, len, base + off, 0) == 0;
  case 4:
    memset(w->shadow + off, 0, len);
    return b->ops->trim(b, len, base + off, 0) == 0;
  case 5:
    memset(w->shadow + off, 0, len);
    return b->ops->zero(b, len, base + off, BACKEND_MAY_TRIM) == 0;
  case 6:
    return check_extents(w, base, off, len);
  default:
    return b->ops->pread(b, w->buf, len, base + off) == 0 &&
           memcmp(w->buf, w->shadow + off, len) == 0;
  }
}

/* Unchecked traffic on the shared area. */
static void shared_op(struct worker *w)
{
  struct backend *b = w->b;
  uint64_t r = next_rand(&w->rng);
  uint64_t len = 1 + (r >> 8) % (2 * CHUNK);
  uint64_t off = SHARED_BASE + (r >> 32) % (SHARED - len + 1);
  struct extents e;

  switch (r % 4) {
  case 0:
    memset(w->buf, (int)(r >> 56) | 1, len);
    b->ops->pwrite(b, w->buf, len, off, 0);
    break;
  case 1:                             /* frees whole chunks */
    off = SHARED_BASE + (r >> 32) % 3 * CHUNK;
    b->ops->trim(b, len, off, 0);
    break;
  case 2:
    extents_init(&e, off, off + len, 0);
    b->ops->extents(b, len, off, &e);
    extents_free(&e);
    break;
  default:
    b->ops->pread(b, w->buf, len, off);
  }
}

static void *stress_thread(void *arg)
{
  struct worker *w = arg;
  uint64_t base = w->id * REGION;
  pthread_barrier_wait(w->start);       /* all threads at once */
  for (int i = 0; i < NOPS; i++) {
    if (!stress_op(w, base)) {
      atomic_fetch_add(w->failures, 1);
      break;
    }
    shared_op(w);
  }
  return NULL;
}

static void test_concurrent(void **state)
{
  (void)state;
  struct backend *b = backend_memory_open(DISK);
  struct worker w[NTHREADS];
  pthread_t tid[NTHREADS];
  atomic_int failures = 0;
  pthread_barrier_t start;
  assert_non_null(b);
  assert_int_equal(pthread_barrier_init(&start, NULL, NTHREADS), 0);
  for (unsigned t = 0; t < NTHREADS; t++) {
    w[t] = (struct worker){ .b = b, .start = &start, .id = t,
                            .rng = 0x9e3779b97f4a7c15u * (t + 1),
                            .shadow = calloc(1, REGION),
                            .buf = malloc(2 * CHUNK),
                            .failures = &failures };
    assert_non_null(w[t].shadow);
    assert_non_null(w[t].buf);
  }
  for (unsigned t = 0; t < NTHREADS; t++)
    assert_int_equal(pthread_create(&tid[t], NULL, stress_thread, &w[t]), 0);
  for (unsigned t = 0; t < NTHREADS; t++)
    assert_int_equal(pthread_join(tid[t], NULL), 0);
  assert_int_equal(atomic_load(&failures), 0);
  pthread_barrier_destroy(&start);

  uint8_t *all = malloc(REGION);
  assert_non_null(all);
  for (unsigned t = 0; t < NTHREADS; t++) {
    assert_int_equal(b->ops->pread(b, all, REGION, t * REGION), 0);
    assert_memory_equal(all, w[t].shadow, REGION);
    free(w[t].shadow);
    free(w[t].buf);
  }
  free(all);
  /* everything freed by trim goes back: only chunks still written remain */
  assert_int_equal(b->ops->trim(b, DISK, 0, 0), 0);
  assert_int_equal(chunks_of(b), 0);
  assert_int_equal(nodes_of(b), 1);
  backend_close(b);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_caps),
    cmocka_unit_test(test_read_after_write),
    cmocka_unit_test(test_sparse_tib),
    cmocka_unit_test(test_huge),
    cmocka_unit_test(test_zero_trim_partial),
    cmocka_unit_test(test_zero_writes),
    cmocka_unit_test(test_enomem),
    cmocka_unit_test(test_concurrent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
