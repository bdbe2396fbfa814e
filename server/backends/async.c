/* snbd: a filter that completes operations later, for tests.
 *
 * "async:DELAY_US:SPEC" wraps SPEC (opened by registry.c) in the
 * asynchronous form of the backend interface (backend.h
 * backend_io_complete): submit queues each pread, pwrite, flush, trim and
 * zero, and one thread of the filter runs it on SPEC and completes it, as
 * a backend over librbd completes from librbd's callback thread.  Each
 * operation waits a random time up to DELAY_US microseconds, and the
 * thread runs whichever is due first, so operations complete out of
 * order; with DELAY_US 0 they complete in the order submitted.  Extents
 * and cache pass through synchronously.  It has none of the optional fast
 * paths (never_waits, send_fd, map): the server must send every request
 * through submit.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "backend.h"
#include "log.h"

#define DELAY_US_MAX 1000000u

struct async_item {
  struct backend_io *io;
  int64_t due;                   /* CLOCK_MONOTONIC ns */
  struct async_item *next;       /* in submission order */
};

struct async_backend {
  struct backend b;              /* first, so ops can cast back */
  struct backend *inner;
  unsigned delay_us;
  pthread_t thread;
  pthread_mutex_t lock;          /* guards the fields below; a leaf lock:
                                    never held while completing */
  pthread_cond_t cond;
  struct async_item *head;
  bool stopping;
  uint64_t rng;
};

static struct async_backend *ab_of(struct backend *b)
{
  return (struct async_backend *)b;
}

static int64_t now_ns(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Under lock: a delay in [0, delay_us] microseconds, in ns (xorshift64). */
static int64_t random_delay(struct async_backend *ab)
{
  if (ab->delay_us == 0)
    return 0;
  ab->rng ^= ab->rng << 13;
  ab->rng ^= ab->rng >> 7;
  ab->rng ^= ab->rng << 17;
  return (int64_t)(ab->rng % (ab->delay_us + 1u)) * 1000;
}

static int async_submit(struct backend *b, struct backend_io *io)
{
  struct async_backend *ab = ab_of(b);
  struct async_item *it = malloc(sizeof *it);
  if (it == NULL) {
    set_error(ENOMEM, "%s: out of memory", b->desc);
    return -1;
  }
  pthread_mutex_lock(&ab->lock);
  *it = (struct async_item){ .io = io, .due = now_ns() + random_delay(ab) };
  struct async_item **pp = &ab->head;
  while (*pp)
    pp = &(*pp)->next;
  *pp = it;
  pthread_cond_signal(&ab->cond);
  pthread_mutex_unlock(&ab->lock);
  return 0;
}

/* Under lock: unlinks and returns the item due first (the earliest
 * submitted among equals), waiting until it is due; NULL once stopping
 * with nothing queued. */
static struct async_item *take_due(struct async_backend *ab)
{
  for (;;) {
    struct async_item **best = NULL;
    for (struct async_item **pp = &ab->head; *pp; pp = &(*pp)->next)
      if (!best || (*pp)->due < (*best)->due)
        best = pp;
    if (best == NULL) {
      if (ab->stopping)
        return NULL;
      pthread_cond_wait(&ab->cond, &ab->lock);
      continue;
    }
    int64_t wait = (*best)->due - now_ns();
    if (wait <= 0) {
      struct async_item *it = *best;
      *best = it->next;
      return it;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_nsec += wait % 1000000000;
    ts.tv_sec += wait / 1000000000 + ts.tv_nsec / 1000000000;
    ts.tv_nsec %= 1000000000;
    pthread_cond_timedwait(&ab->cond, &ab->lock, &ts);
  }
}

static void *async_thread(void *arg)
{
  struct async_backend *ab = arg;
  pthread_mutex_lock(&ab->lock);
  struct async_item *it;
  while ((it = take_due(ab)) != NULL) {
    pthread_mutex_unlock(&ab->lock);
    int err = backend_io_run(ab->inner, it->io) == 0 ? 0
              : errno ? errno : EIO;
    backend_io_complete(it->io, err);   /* may submit again: unlocked */
    free(it);
    pthread_mutex_lock(&ab->lock);
  }
  pthread_mutex_unlock(&ab->lock);
  return NULL;
}

static int async_pread(struct backend *b, void *buf, size_t count,
                       uint64_t offset)
{
  struct backend *in = ab_of(b)->inner;
  return in->ops->pread(in, buf, count, offset);
}

static int async_pwrite(struct backend *b, const void *buf, size_t count,
                        uint64_t offset, unsigned flags)
{
  struct backend *in = ab_of(b)->inner;
  return in->ops->pwrite(in, buf, count, offset, flags);
}

static int async_flush(struct backend *b)
{
  struct backend *in = ab_of(b)->inner;
  return in->ops->flush(in);
}

static int async_trim(struct backend *b, uint64_t count, uint64_t offset,
                      unsigned flags)
{
  struct backend *in = ab_of(b)->inner;
  return in->ops->trim(in, count, offset, flags);
}

static int async_zero(struct backend *b, uint64_t count, uint64_t offset,
                      unsigned flags)
{
  struct backend *in = ab_of(b)->inner;
  return in->ops->zero(in, count, offset, flags);
}

static int async_extents(struct backend *b, uint64_t count, uint64_t offset,
                         struct extents *e)
{
  struct backend *in = ab_of(b)->inner;
  return in->ops->extents(in, count, offset, e);
}

static int async_cache(struct backend *b, uint64_t count, uint64_t offset)
{
  struct backend *in = ab_of(b)->inner;
  return in->ops->cache(in, count, offset);
}

/* Every request completed before close (backend.h), so the queue is
 * empty; the thread drains it anyway before it ends. */
static void async_close(struct backend *b)      /* the layer closes inner */
{
  struct async_backend *ab = ab_of(b);
  pthread_mutex_lock(&ab->lock);
  ab->stopping = true;
  pthread_cond_signal(&ab->cond);
  pthread_mutex_unlock(&ab->lock);
  pthread_join(ab->thread, NULL);
  pthread_cond_destroy(&ab->cond);
  pthread_mutex_destroy(&ab->lock);
  free(b->desc);
  free(ab);
}

static const struct backend_ops async_ops = {
  .name = "async",
  .pread = async_pread,
  .pwrite = async_pwrite,
  .flush = async_flush,
  .trim = async_trim,
  .zero = async_zero,
  .extents = async_extents,
  .cache = async_cache,
  .close = async_close,
  .submit = async_submit,
};

static int parse_delay(const char *s, unsigned *out)
{
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (*s < '0' || *s > '9' || *end != '\0' || errno != 0 ||
      v > DELAY_US_MAX) {
    set_error(EINVAL, "async: delay \"%.32s\" is not a number of "
              "microseconds up to %u", s, DELAY_US_MAX);
    return -1;
  }
  *out = (unsigned)v;
  return 0;
}

struct backend *backend_async_open(const char *args, struct backend *inner)
{
  struct async_backend *ab = calloc(1, sizeof *ab);
  if (ab == NULL || asprintf(&ab->b.desc, "async:%s:%s", args,
                             inner->desc) == -1) {
    free(ab);
    set_error(ENOMEM, "async backend: out of memory");
    return NULL;
  }
  pthread_condattr_t ca;
  if (parse_delay(args, &ab->delay_us) == -1)
    goto err;
  ab->inner = inner;
  ab->rng = (uint64_t)now_ns() | 1;
  pthread_mutex_init(&ab->lock, NULL);
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&ab->cond, &ca);
  pthread_condattr_destroy(&ca);
  if (pthread_create(&ab->thread, NULL, async_thread, ab) != 0) {
    set_error(EAGAIN, "async: cannot start its thread");
    pthread_cond_destroy(&ab->cond);
    pthread_mutex_destroy(&ab->lock);
    goto err;
  }
  ab->b.ops = &async_ops;
  ab->b.size = inner->size;
  ab->b.caps = inner->caps;
  ab->b.block_min = inner->block_min;
  ab->b.block_pref = inner->block_pref;
  return &ab->b;
err:
  free(ab->b.desc);
  free(ab);
  return NULL;
}
