/* snbd: sparse RAM disk.
 *
 * The disk is cut into chunks of BACKEND_MEMORY_CHUNK (64 KiB) bytes and
 * only chunks that were written hold RAM.  A radix tree of 512-slot nodes
 * maps a chunk's index to its memory, with as many levels as the size
 * needs (1 GiB: 2, 1 TiB: 3, INT64_MAX: 6), so an empty disk of any size
 * costs one 4 KiB node.  Unallocated chunks read as zeroes and are
 * reported as holes.  Zero and trim free the chunks they cover whole and
 * clear the others in part; a write of zeroes never allocates a chunk and
 * gives back a whole chunk it turns to zeroes.
 *
 * Locking.  lock is a read-write lock.  Whatever only adds to the tree
 * (pread, pwrite, extents, a zero or trim that covers no whole chunk)
 * takes it shared and fills empty slots with compare-and-swap, so writers
 * racing for one slot agree on a single winner and the loser frees its
 * copy.  Whatever frees a chunk or node takes it exclusive, so no thread
 * can hold a pointer into memory being freed.  The lock prefers writers so
 * that a stream of reads cannot starve a trim.  Overlapping data I/O from
 * several threads is not ordered (NBD leaves its outcome undefined, as a
 * disk does), but always touches live memory.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/mman.h>

#include "backend.h"
#include "log.h"
#include "memory.h"

#define CHUNK      ((uint64_t)BACKEND_MEMORY_CHUNK)
#define NODE_BITS  9
#define NODE_SLOTS (1u << NODE_BITS)
#define MIN(a, b)  ((a) < (b) ? (a) : (b))
#define MAX(a, b)  ((a) > (b) ? (a) : (b))

struct mem_node {
  _Atomic(void *) slot[NODE_SLOTS];   /* child nodes, or chunks at height 0 */
};

/* Chunks come from 2 MiB anonymous mappings, not malloc: their pages are
 * only resident once written (a 4 KiB write costs 4 KiB, not 64), and a
 * freed chunk goes back to the kernel at once (MADV_DONTNEED) and reads
 * as zeroes when reused, where free() would keep it in the heap. */
#define SLAB_BYTES (2u * 1024 * 1024)
struct chunk_pool {
  pthread_mutex_t lock;
  void **free;                        /* released chunks, reusable */
  size_t nfree, capfree;
  uint8_t *cur;                       /* slab being carved */
  size_t cur_used;
  void **slabs;                       /* every mapping, for close */
  size_t nslabs, capslabs;
};

struct mem_backend {
  struct backend b;                   /* first, so ops can cast back */
  struct chunk_pool pool;
  pthread_rwlock_t lock;              /* see the top of this file */
  unsigned height;                    /* root's; 0: its slots are chunks */
  struct mem_node *root;              /* lives until close */
  atomic_uint_fast64_t chunks, nodes; /* allocated, for the stats */
};

static const struct backend_ops mem_ops;

static struct mem_backend *mem(struct backend *b)
{
  return (struct mem_backend *)b;
}

/* The index one past the last chunk wholly inside [.., end): a chunk
 * counts as whole if it covers end of disk, even if the disk's size is not
 * a multiple of CHUNK. */
static uint64_t whole_chunks_end(const struct mem_backend *m, uint64_t end)
{
  return end == m->b.size ? (end + CHUNK - 1) / CHUNK : end / CHUNK;
}

/* The slot of chunk idx in a node of height h. */
static unsigned slot_of(uint64_t idx, unsigned h)
{
  return (unsigned)(idx >> (NODE_BITS * h)) & (NODE_SLOTS - 1);
}

static bool is_zero(const void *p, size_t len)
{
  const uint8_t *s = p;
  return len == 0 || (s[0] == 0 && memcmp(s, s + 1, len - 1) == 0);
}

static int check_writable(const struct backend *b)
{
  if (b->caps & BACKEND_CAN_WRITE)
    return 0;
  set_error(EPERM, "%s is read-only", b->desc);
  return -1;
}

/* The chunk with index idx, or NULL if it holds no RAM.  Lock held. */
static uint8_t *chunk_find(struct mem_backend *m, uint64_t idx)
{
  struct mem_node *n = m->root;
  for (unsigned h = m->height; h > 0; h--) {
    n = atomic_load_explicit(&n->slot[slot_of(idx, h)], memory_order_acquire);
    if (n == NULL)
      return NULL;
  }
  return atomic_load_explicit(&n->slot[slot_of(idx, 0)],
                              memory_order_acquire);
}

static bool grow(void ***v, size_t *cap, size_t need)
{
  if (need <= *cap)
    return true;
  size_t ncap = *cap ? *cap * 2 : 64;
  void **nv = realloc(*v, ncap * sizeof *nv);
  if (nv == NULL)
    return false;
  *v = nv;
  *cap = ncap;
  return true;
}

/* A zeroed chunk; NULL when out of memory. */
static void *chunk_alloc(struct chunk_pool *p)
{
  void *c = NULL;
  pthread_mutex_lock(&p->lock);
  if (p->nfree > 0)
    c = p->free[--p->nfree];
  else {
    if (p->cur == NULL || p->cur_used == SLAB_BYTES) {
      void *slab = MAP_FAILED;
      if (grow(&p->slabs, &p->capslabs, p->nslabs + 1))
        slab = mmap(NULL, SLAB_BYTES, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (slab == MAP_FAILED) {
        pthread_mutex_unlock(&p->lock);
        return NULL;
      }
      p->slabs[p->nslabs++] = slab;
      p->cur = slab;
      p->cur_used = 0;
    }
    c = p->cur + p->cur_used;
    p->cur_used += CHUNK;
  }
  pthread_mutex_unlock(&p->lock);
  return c;
}

static void chunk_release(struct chunk_pool *p, void *c)
{
  /* Give the pages back now; the chunk reads as zeroes when reused. */
  madvise(c, CHUNK, MADV_DONTNEED);
  pthread_mutex_lock(&p->lock);
  if (grow(&p->free, &p->capfree, p->nfree + 1))
    p->free[p->nfree++] = c;
  /* else: the chunk's address is lost until close, its memory is not. */
  pthread_mutex_unlock(&p->lock);
}

static void pool_destroy(struct chunk_pool *p)
{
  for (size_t i = 0; i < p->nslabs; i++)
    munmap(p->slabs[i], SLAB_BYTES);
  free(p->slabs);
  free(p->free);
  pthread_mutex_destroy(&p->lock);
}

/* What slot points to, after filling it with len zeroed bytes if it was
 * empty; NULL with ENOMEM.  Lock held at least shared. */
static void *slot_fill(struct mem_backend *m, _Atomic(void *) *slot,
                       size_t len, atomic_uint_fast64_t *counter)
{
  void *p = atomic_load_explicit(slot, memory_order_acquire);
  if (p != NULL)
    return p;
  bool is_chunk = counter == &m->chunks;
  void *fresh = is_chunk ? chunk_alloc(&m->pool) : calloc(1, len);
  if (fresh == NULL) {
    set_error(ENOMEM, "%s: out of memory", m->b.desc);
    return NULL;
  }
  if (atomic_compare_exchange_strong_explicit(slot, &p, fresh,
                                              memory_order_acq_rel,
                                              memory_order_acquire)) {
    atomic_fetch_add_explicit(counter, 1, memory_order_relaxed);
    return fresh;
  }
  if (is_chunk)                       /* another thread won: use its */
    chunk_release(&m->pool, fresh);
  else
    free(fresh);
  return p;
}

/* The chunk with index idx, allocated if need be; NULL with ENOMEM. */
static uint8_t *chunk_get(struct mem_backend *m, uint64_t idx)
{
  struct mem_node *n = m->root;
  for (unsigned h = m->height; h > 0; h--) {
    n = slot_fill(m, &n->slot[slot_of(idx, h)], sizeof *n, &m->nodes);
    if (n == NULL)
      return NULL;
  }
  return slot_fill(m, &n->slot[slot_of(idx, 0)], CHUNK, &m->chunks);
}

static bool node_empty(struct mem_node *n)
{
  for (unsigned i = 0; i < NODE_SLOTS; i++)
    if (atomic_load_explicit(&n->slot[i], memory_order_relaxed) != NULL)
      return false;
  return true;
}

/* Frees chunks lo..hi (inclusive indexes) below n, a node of height h
 * whose first chunk is base, and every node this leaves empty.  Returns
 * whether n itself is now empty.  Lock held exclusive. */
static bool free_range(struct mem_backend *m, struct mem_node *n, unsigned h,
                       uint64_t base, uint64_t lo, uint64_t hi)
{
  unsigned shift = NODE_BITS * h;
  unsigned first = (unsigned)((lo - base) >> shift);
  unsigned last = (unsigned)((hi - base) >> shift);

  for (unsigned i = first; i <= last; i++) {
    void *p = atomic_load_explicit(&n->slot[i], memory_order_relaxed);
    if (p == NULL)
      continue;
    uint64_t sb = base + ((uint64_t)i << shift);
    uint64_t se = sb + ((UINT64_C(1) << shift) - 1);
    if (h > 0 && !free_range(m, p, h - 1, sb, MAX(lo, sb), MIN(hi, se)))
      continue;                       /* child node still in use */
    atomic_store_explicit(&n->slot[i], NULL, memory_order_relaxed);
    if (h > 0)
      free(p);
    else
      chunk_release(&m->pool, p);
    atomic_fetch_sub_explicit(h > 0 ? &m->nodes : &m->chunks, 1,
                              memory_order_relaxed);
  }
  return node_empty(n);
}

static void free_tree(struct mem_node *n, unsigned h)
{
  for (unsigned i = 0; i < NODE_SLOTS; i++) {
    void *c = atomic_load_explicit(&n->slot[i], memory_order_relaxed);
    if (c != NULL && h > 0)
      free_tree(c, h - 1);
    /* chunks live in the pool's slabs, unmapped by pool_destroy */
  }
  free(n);
}

static int mem_pread(struct backend *b, void *buf, size_t count,
                     uint64_t offset)
{
  struct mem_backend *m = mem(b);
  uint8_t *out = buf;

  assert(offset <= b->size && count <= b->size - offset);
  pthread_rwlock_rdlock(&m->lock);
  while (count > 0) {
    size_t at = offset % CHUNK, n = MIN(count, CHUNK - at);
    const uint8_t *c = chunk_find(m, offset / CHUNK);
    if (c != NULL)
      memcpy(out, c + at, n);
    else
      memset(out, 0, n);
    out += n;
    offset += n;
    count -= n;
  }
  pthread_rwlock_unlock(&m->lock);
  return 0;
}

/* After a write of zeroes over whole chunks [lo, hi): frees those that
 * hold only zeroes, as they read the same unallocated.  The test is made
 * under the exclusive lock, so data another thread wrote since is kept. */
static void reclaim_zero_chunks(struct mem_backend *m, uint64_t lo,
                                uint64_t hi)
{
  pthread_rwlock_wrlock(&m->lock);
  for (uint64_t idx = lo; idx < hi; idx++) {
    const uint8_t *c = chunk_find(m, idx);
    if (c != NULL && is_zero(c, CHUNK))
      free_range(m, m->root, m->height, 0, idx, idx);
  }
  pthread_rwlock_unlock(&m->lock);
}

static int mem_pwrite(struct backend *b, const void *buf, size_t count,
                      uint64_t offset, unsigned flags)
{
  struct mem_backend *m = mem(b);
  const uint8_t *in = buf;
  uint64_t first = offset;
  bool reclaim = false;               /* zeroes written over a whole chunk */
  int r = 0;

  (void)flags;                        /* FUA: RAM is as durable as it gets */
  if (check_writable(b) == -1)
    return -1;
  assert(offset <= b->size && count <= b->size - offset);
  pthread_rwlock_rdlock(&m->lock);
  while (count > 0) {
    size_t at = offset % CHUNK, n = MIN(count, CHUNK - at);
    uint8_t *c = chunk_find(m, offset / CHUNK);
    if (c != NULL || !is_zero(in, n)) {   /* zeroes on a hole: no-op */
      if (c == NULL && (c = chunk_get(m, offset / CHUNK)) == NULL) {
        r = -1;
        break;
      }
      memcpy(c + at, in, n);
      if (at == 0 && whole_chunks_end(m, offset + n) > offset / CHUNK &&
          is_zero(in, n))
        reclaim = true;
    }
    in += n;
    offset += n;
    count -= n;
  }
  pthread_rwlock_unlock(&m->lock);
  if (reclaim)
    reclaim_zero_chunks(m, (first + CHUNK - 1) / CHUNK,
                        whole_chunks_end(m, offset));
  return r;
}

/* Zeroes [start, end), which lies inside one chunk.  Lock held. */
static void zero_partial(struct mem_backend *m, uint64_t start, uint64_t end)
{
  uint8_t *c = chunk_find(m, start / CHUNK);
  if (c != NULL)
    memset(c + start % CHUNK, 0, end - start);
}

/* Trim and zero both give RAM back: whole chunks are freed (under the
 * exclusive lock), the partial ones at either end are cleared (under the
 * shared lock, if that is all there is to do). */
static int mem_zero(struct backend *b, uint64_t count, uint64_t offset,
                    unsigned flags)
{
  struct mem_backend *m = mem(b);

  (void)flags;        /* FUA, MAY_TRIM, FAST: this is always all three */
  if (check_writable(b) == -1)
    return -1;
  assert(offset <= b->size && count <= b->size - offset);
  uint64_t end = offset + count;
  uint64_t lo = (offset + CHUNK - 1) / CHUNK;
  uint64_t hi = whole_chunks_end(m, end);
  if (lo < hi) {                      /* whole chunks lo..hi-1 */
    pthread_rwlock_wrlock(&m->lock);
    free_range(m, m->root, m->height, 0, lo, hi - 1);
  }
  else
    pthread_rwlock_rdlock(&m->lock);
  uint64_t head_end = MIN(end, lo * CHUNK);
  if (offset < head_end)
    zero_partial(m, offset, head_end);
  uint64_t tail = MAX(hi * CHUNK, head_end);
  if (tail < end)
    zero_partial(m, tail, end);
  pthread_rwlock_unlock(&m->lock);
  return 0;
}

static int mem_trim(struct backend *b, uint64_t count, uint64_t offset,
                    unsigned flags)
{
  return mem_zero(b, count, offset, flags);
}

/* Adds extents for chunks lo..hi (inclusive) below n, a node of height h
 * whose first chunk is base, skipping empty subtrees in one step.  Returns
 * extents_add's verdict: 0 go on, 1 stop, -1 error. */
static int walk_extents(struct mem_node *n, unsigned h, uint64_t base,
                        uint64_t lo, uint64_t hi, struct extents *e)
{
  unsigned shift = NODE_BITS * h;
  unsigned first = (unsigned)((lo - base) >> shift);
  unsigned last = (unsigned)((hi - base) >> shift);
  int r = 0;

  for (unsigned i = first; r == 0 && i <= last; i++) {
    void *p = atomic_load_explicit(&n->slot[i], memory_order_acquire);
    uint64_t sb = base + ((uint64_t)i << shift);
    uint64_t se = sb + ((UINT64_C(1) << shift) - 1);
    uint64_t a = MAX(lo, sb), z = MIN(hi, se);
    if (p == NULL)
      r = extents_add(e, a * CHUNK, (z - a + 1) * CHUNK,
                      EXTENT_HOLE | EXTENT_ZERO);
    else if (h == 0)
      r = extents_add(e, a * CHUNK, CHUNK, 0);
    else
      r = walk_extents(p, h - 1, sb, a, z, e);
  }
  return r;
}

static int mem_extents(struct backend *b, uint64_t count, uint64_t offset,
                       struct extents *e)
{
  struct mem_backend *m = mem(b);

  if (count == 0) {
    set_error(EINVAL, "extents of an empty range");
    return -1;
  }
  assert(offset <= b->size && count <= b->size - offset);
  pthread_rwlock_rdlock(&m->lock);
  int r = walk_extents(m->root, m->height, 0, offset / CHUNK,
                       (offset + count - 1) / CHUNK, e);
  pthread_rwlock_unlock(&m->lock);
  return r == -1 ? -1 : 0;
}

static int mem_flush(struct backend *b)
{
  (void)b;
  return 0;
}

static int mem_cache(struct backend *b, uint64_t count, uint64_t offset)
{
  (void)b, (void)count, (void)offset;   /* RAM is the cache */
  return 0;
}

static bool mem_never_waits(struct backend *b)
{
  (void)b;
  return true;
}

static void mem_close(struct backend *b)
{
  struct mem_backend *m = mem(b);
  free_tree(m->root, m->height);
  pool_destroy(&m->pool);
  pthread_rwlock_destroy(&m->lock);
  free(b->desc);
  free(m);
}

static const struct backend_ops mem_ops = {
  .name = "memory",
  .pread = mem_pread,
  .pwrite = mem_pwrite,
  .flush = mem_flush,
  .trim = mem_trim,
  .zero = mem_zero,
  .extents = mem_extents,
  .cache = mem_cache,
  .close = mem_close,
  .never_waits = mem_never_waits,
};

/* The root's height: the fewest levels that reach the last chunk. */
static unsigned tree_height(uint64_t size)
{
  uint64_t last = size > 0 ? (size - 1) / CHUNK : 0;
  unsigned h = 0;
  while (NODE_BITS * (h + 1) < 64 && (last >> (NODE_BITS * (h + 1))) != 0)
    h++;
  return h;
}

/* "memory:" and the size, with the largest binary suffix that is exact. */
static char *mem_desc(uint64_t size)
{
  static const char suffix[] = "KMGTPE";
  uint64_t v = size;
  int i = 0;
  char *desc;

  while (v != 0 && v % 1024 == 0 && i < 6) {
    v /= 1024;
    i++;
  }
  if (asprintf(&desc, "memory:%" PRIu64 "%.*s", v, i > 0,
               i > 0 ? &suffix[i - 1] : "") == -1)
    return NULL;
  return desc;
}

struct backend *backend_memory_open(uint64_t size)
{
  struct mem_backend *m;
  pthread_rwlockattr_t attr;

  if (size > (uint64_t)INT64_MAX) {
    set_error(EINVAL, "memory size %" PRIu64 " is larger than %" PRId64,
              size, INT64_MAX);
    return NULL;
  }
  m = calloc(1, sizeof *m);
  if (m == NULL || (m->root = calloc(1, sizeof *m->root)) == NULL ||
      (m->b.desc = mem_desc(size)) == NULL) {
    if (m != NULL)
      free(m->root);
    free(m);
    set_error(ENOMEM, "memory backend: out of memory");
    return NULL;
  }
  pthread_mutex_init(&m->pool.lock, NULL);
  pthread_rwlockattr_init(&attr);
  pthread_rwlockattr_setkind_np(&attr,
                                PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
  pthread_rwlock_init(&m->lock, &attr);
  pthread_rwlockattr_destroy(&attr);
  m->height = tree_height(size);
  atomic_init(&m->chunks, 0);
  atomic_init(&m->nodes, 1);
  m->b.ops = &mem_ops;
  m->b.size = size;
  m->b.caps = BACKEND_CAN_WRITE | BACKEND_CAN_FLUSH | BACKEND_CAN_FUA |
              BACKEND_CAN_TRIM | BACKEND_CAN_ZERO | BACKEND_CAN_FAST_ZERO |
              BACKEND_CAN_EXTENTS | BACKEND_CAN_CACHE |
              BACKEND_CAN_MULTI_CONN | BACKEND_CHEAP_EXTENTS;
  m->b.block_min = 1;
  m->b.block_pref = 4096;
  return &m->b;
}

int backend_memory_stats(const struct backend *b, uint64_t *chunks,
                         uint64_t *nodes)
{
  if (b == NULL || b->ops != &mem_ops) {
    set_error(EINVAL, "not a memory backend");
    return -1;
  }
  const struct mem_backend *m = (const struct mem_backend *)b;
  *chunks = atomic_load(&m->chunks);
  *nodes = atomic_load(&m->nodes);
  return 0;
}
