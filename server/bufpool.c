/* snbd-server: a connection's pool of large request buffers (bufpool.h
 * says why and how it is bounded). */
#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bufpool.h"
#include "cleanup.h"

void buf_pool_init(struct buf_pool *p, struct buf_pool_total *total)
{
  memset(p, 0, sizeof *p);
  pthread_mutex_init(&p->lock, NULL);
  p->total = total;
}

void buf_pool_destroy(struct buf_pool *p)
{
  buf_pool_drain(p);
  free(p->v);
  pthread_mutex_destroy(&p->lock);
}

/* Under p->lock: removes entry i (the last one takes its place). */
static void *take(struct buf_pool *p, int i)
{
  void *b = p->v[i].buf;
  p->bytes -= p->v[i].cap;
  atomic_fetch_sub_explicit(&p->total->bytes, p->v[i].cap,
                            memory_order_relaxed);
  p->n--;
  p->v[i] = p->v[p->n];
  return b;
}

void *buf_pool_get(struct buf_pool *p, size_t size)
{
  if (size >= BUF_POOL_MIN && buf_pool_holds(p)) {
    SCOPED_LOCK(&p->lock);
    for (int i = p->n - 1; i >= 0; i--)      /* the last put is warmest */
      if (p->v[i].cap >= size && p->v[i].cap / 2 <= size)
        return take(p, i);
  }
  return malloc(size ? size : 1);
}

/* Under p->lock: whether a buffer of cap bytes may be kept, reserving
 * its bytes server-wide if so. */
static bool room(struct buf_pool *p, size_t cap)
{
  if (p->n >= BUF_POOL_MAX_N || p->bytes + cap > BUF_POOL_MAX_BYTES)
    return false;
  if (!p->v && !(p->v = malloc(BUF_POOL_MAX_N * sizeof *p->v)))
    return false;
  uint64_t before = atomic_fetch_add_explicit(&p->total->bytes, cap,
                                              memory_order_relaxed);
  if (before + cap <= p->total->max)
    return true;
  atomic_fetch_sub_explicit(&p->total->bytes, cap, memory_order_relaxed);
  return false;
}

void buf_pool_put(struct buf_pool *p, void *buf)
{
  if (buf == NULL)
    return;
  size_t cap = malloc_usable_size(buf);
  if (cap >= BUF_POOL_MIN) {
    SCOPED_LOCK(&p->lock);
    if (room(p, cap)) {
      p->v[p->n] = (struct buf_pool_entry){ buf, cap };
      p->n++;
      p->bytes += cap;
      return;
    }
  }
  free(buf);
}

bool buf_pool_holds(struct buf_pool *p)
{
  return atomic_load_explicit(&p->n, memory_order_relaxed) > 0;
}

void buf_pool_drain(struct buf_pool *p)
{
  void *v[BUF_POOL_MAX_N];
  int n = 0;
  {
    SCOPED_LOCK(&p->lock);
    while (p->n > 0)
      v[n++] = take(p, p->n - 1);
  }
  for (int i = 0; i < n; i++)
    free(v[i]);
}
