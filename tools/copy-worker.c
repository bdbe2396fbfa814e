/* snbd-copy: the workers.  Each worker owns one connection to each NBD
 * endpoint and a ring of request slots.  It takes a unit of the source at
 * a time, asks what the unit holds (data, or zeroes), and keeps up to
 * --requests slots busy: read then write for data, one zero request for a
 * run of zeroes.  Endpoints are used through their ops (copy.h), never
 * by kind.  A request ends with a callback, from libsnbd's reader threads
 * for NBD or before the call returns for a file; callbacks only change a
 * slot's state and wake the worker, which issues every request itself
 * and never holds its lock while doing so. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "copy.h"

enum slot_state { S_FREE, S_READING, S_READY, S_WRITING, S_DONE };

struct worker;

struct slot {
  struct worker *w;
  enum slot_state st;
  uint64_t off, len;
  bool zero;                /* write zeroes instead of buf */
  int err;
  char *errmsg;
  char *buf;                /* request_size bytes */
  struct ep_req req;        /* the request in flight */
};

struct worker {
  struct copy *c;
  int id;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  struct slot slots[MAX_REQUESTS];
  int nslots;
  struct extent_vec ext;    /* the current unit */
  size_t next;
  uint64_t pos;             /* bytes of ext[next] already handed out */
  bool no_more;
  bool ordered;             /* a pipe destination: write in order */
  uint64_t write_next;
};

static int conn(const struct worker *w, const struct endpoint *e)
{
  return w->id < e->nconn ? w->id : 0;
}

/* A request's end (ep_req.done), from whichever thread finished it: the
 * slot moves on from reading to ready, from writing to done. */
static void slot_done(void *ud, int err, const char *msg)
{
  struct slot *s = ud;
  struct worker *w = s->w;
  pthread_mutex_lock(&w->lock);
  if (err && s->zero && s->req.fast && err == ENOTSUP) {
    /* Not faster than writing: zero it without the flag from now on. */
    atomic_store(&w->c->dst.fast_zero, false);
    s->st = S_READY;
  }
  else {
    s->err = err;
    if (err && !s->errmsg && msg)
      s->errmsg = strdup(msg);
    s->st = err ? S_DONE : s->st == S_READING ? S_READY : S_DONE;
  }
  pthread_cond_signal(&w->cond);
  pthread_mutex_unlock(&w->lock);
}

/* Sets up the slot's request to endpoint e. */
static struct ep_req *slot_req(struct worker *w, struct slot *s,
                               const struct endpoint *e)
{
  s->req = (struct ep_req){
    .conn = conn(w, e), .buf = s->buf, .buflen = w->c->o.request_size,
    .off = s->off, .len = s->len, .done = slot_done, .ud = s,
  };
  return &s->req;
}

/* What [off, off+len) of the source holds: asked of it when sparse,
 * else all data. */
static int unit_extents(struct worker *w, uint64_t off, uint64_t len)
{
  struct copy *c = w->c;
  struct endpoint *e = &c->src;
  if (c->o.sparse && e->has_extents)
    return e->ops->extents(c, e, conn(w, e), off, len, &w->ext);
  if (extent_add(&w->ext, off, len, false) == -1) {
    copy_fail(c, "out of memory");
    return -1;
  }
  return 0;
}

static bool zero_in_one(const struct copy *c);

/* A zero run claimed at once when the destination would cut its zero
 * request into pieces (a compact NBD server): 256 pieces of a 64 MiB
 * maximum in flight for one request at most. */
#define HOLE_RUN_SPLIT (16ull << 30)

/* While the worker's extents end in zeroes at the next unclaimed byte,
 * claims what follows too, and keeps it if the source goes on with
 * zeroes: a large hole then reaches the destination as one zero request
 * (one 64-bit request when the server has extended headers, one
 * fallocate for a file), not one per unit; a destination that splits
 * zero requests gets runs of at most HOLE_RUN_SPLIT.  Each step asks
 * about as much as the hole already covers, so a 16 TiB hole takes a few
 * dozen questions.  Called without w->lock. */
static int claim_hole(struct worker *w)
{
  struct copy *c = w->c;
  uint64_t max_run = c->dst.zero_any_size || c->o.dst_is_zero
                     ? UINT64_MAX : HOLE_RUN_SPLIT;
  if (!zero_in_one(c))
    return 0;
  for (int steps = 0; steps < 64 && w->ext.len > 0; steps++) {
    const struct extent *last = &w->ext.ptr[w->ext.len - 1];
    uint64_t end = last->off + last->len, len = 0;
    if (!last->zero || last->len >= max_run)
      return 0;
    pthread_mutex_lock(&c->lock);
    if (c->next == end && end < c->total) {
      uint64_t want = last->len > c->unit ? last->len : c->unit;
      len = c->total - end < want ? c->total - end : want;
      c->next += len;
    }
    pthread_mutex_unlock(&c->lock);
    if (len == 0 || unit_extents(w, end, len) == -1)
      return len == 0 ? 0 : -1;
  }
  return 0;
}

/* Hands the worker its next unit of the source; false when none is left.
 * Called with w->lock held, which is dropped while asking the source what
 * the unit holds: a completion callback on the same connection needs it
 * before the reply to that question can be read. */
static bool next_unit(struct worker *w)
{
  struct copy *c = w->c;
  extent_vec_reset(&w->ext);
  w->next = 0;
  w->pos = 0;
  pthread_mutex_lock(&c->lock);
  uint64_t off = c->next, len = 0;
  if (off < c->total) {
    len = c->total - off < c->unit ? c->total - off : c->unit;
    c->next += len;
  }
  pthread_mutex_unlock(&c->lock);
  if (len == 0)
    return false;
  pthread_mutex_unlock(&w->lock);
  int r = unit_extents(w, off, len);
  if (r == 0)
    r = claim_hole(w);
  pthread_mutex_lock(&w->lock);
  return r == 0;
}

/* Whether a run of zeroes can be written in one request rather than as
 * buffers of zeroes. */
static bool zero_in_one(const struct copy *c)
{
  return c->dst.can_zero || c->o.dst_is_zero;
}

static bool next_piece(struct worker *w, struct slot *s)
{
  struct copy *c = w->c;
  while (w->next >= w->ext.len)
    if (atomic_load(&c->stop) || !next_unit(w))
      return false;
  const struct extent *x = &w->ext.ptr[w->next];
  uint64_t left = x->len - w->pos;
  s->off = x->off + w->pos;
  s->zero = x->zero;
  s->len = x->zero && zero_in_one(c) ? left
           : left < c->o.request_size ? left : c->o.request_size;
  w->pos += s->len;
  if (w->pos == x->len) {
    w->next++;
    w->pos = 0;
  }
  return true;
}

static bool all_zero(const char *b, uint64_t n)
{
  return n == 0 || (b[0] == 0 && memcmp(b, b + 1, n - 1) == 0);
}

/* Reads the next piece of a stream source (a pipe), in order.  It has no
 * extents to ask about, so a piece of zeroes is noticed by looking. */
static bool stream_piece(struct worker *w, struct slot *s)
{
  struct copy *c = w->c;
  pthread_mutex_unlock(&w->lock);
  int64_t n = c->src.ops->read_next(c, &c->src, s->buf, c->o.request_size);
  pthread_mutex_lock(&w->lock);
  if (n <= 0)
    return false;
  s->off = c->next;
  s->len = (uint64_t)n;
  s->zero = c->o.sparse && all_zero(s->buf, s->len);
  c->next += (uint64_t)n;
  if (c->dst.ops->fixed_size && c->next > (uint64_t)c->dst.size) {
    copy_fail(c, "the source is larger than the destination (%lld bytes)",
              (long long)c->dst.size);
    return false;
  }
  s->st = S_READY;
  return true;
}

/* Starts a free slot on the next piece: false when there is none.  Called
 * and returns with w->lock held. */
static bool fill(struct worker *w, struct slot *s)
{
  struct copy *c = w->c;
  if (c->src.ops->stream)
    return stream_piece(w, s);
  if (!next_piece(w, s))
    return false;
  s->err = 0;
  if (s->zero) {
    s->st = S_READY;
    return true;
  }
  s->st = S_READING;
  struct ep_req *r = slot_req(w, s, &c->src);
  pthread_mutex_unlock(&w->lock);
  c->src.ops->read(c, &c->src, r);
  pthread_mutex_lock(&w->lock);
  return true;
}

/* Writes a ready slot.  Called and returns with w->lock held. */
static void write_slot(struct worker *w, struct slot *s)
{
  struct copy *c = w->c;
  if (s->zero && c->o.dst_is_zero && !c->dst.ops->stream) {
    s->st = S_DONE;         /* a stream is given every byte */
    return;
  }
  s->st = S_WRITING;
  struct ep_req *r = slot_req(w, s, &c->dst);
  pthread_mutex_unlock(&w->lock);
  if (s->zero)
    c->dst.ops->zero(c, &c->dst, r);
  else
    c->dst.ops->write(c, &c->dst, r);
  pthread_mutex_lock(&w->lock);
}

static void finish(struct worker *w, struct slot *s)
{
  if (s->err)
    copy_fail(w->c, "%s", s->errmsg ? s->errmsg : strerror(s->err));
  else {
    atomic_fetch_add(&w->c->done, s->len);
    if (w->ordered)
      w->write_next = s->off + s->len;
  }
  free(s->errmsg);
  s->errmsg = NULL;
  s->err = 0;
  s->st = S_FREE;
}

/* One pass over the slots; returns whether anything changed, and sets
 * *busy to the number of slots still in use. */
static bool step(struct worker *w, int *busy)
{
  bool stop = atomic_load(&w->c->stop), moved = false;
  for (int i = 0; i < w->nslots; i++) {
    struct slot *s = &w->slots[i];
    if (s->st == S_DONE) {
      finish(w, s);
      moved = true;
    }
    else if (stop && s->st == S_READY) {
      s->st = S_FREE;         /* read but never written: dropped */
      moved = true;
    }
    else if (s->st == S_READY &&
             (!w->ordered || s->off == w->write_next)) {
      write_slot(w, s);
      moved = true;
    }
  }
  for (int i = 0; i < w->nslots && !stop && !w->no_more; i++) {
    if (w->slots[i].st != S_FREE)
      continue;
    if (!fill(w, &w->slots[i]))
      w->no_more = true;
    else
      moved = true;
  }
  *busy = 0;
  for (int i = 0; i < w->nslots; i++)
    *busy += w->slots[i].st != S_FREE;
  return moved;
}

static void *worker_main(void *arg)
{
  struct worker *w = arg;
  pthread_mutex_lock(&w->lock);
  for (;;) {
    int busy;
    bool moved = step(w, &busy);
    if (busy == 0 && (w->no_more || atomic_load(&w->c->stop)))
      break;
    if (!moved) {
      /* Bounded wait: a stop request is noticed within 100 ms. */
      struct timespec t;
      clock_gettime(CLOCK_REALTIME, &t);
      t.tv_nsec += 100 * 1000000;
      if (t.tv_nsec >= 1000000000) {
        t.tv_sec++;
        t.tv_nsec -= 1000000000;
      }
      pthread_cond_timedwait(&w->cond, &w->lock, &t);
    }
  }
  pthread_mutex_unlock(&w->lock);
  return NULL;
}

static int worker_init(struct copy *c, struct worker *w, int id)
{
  memset(w, 0, sizeof *w);
  w->c = c;
  w->id = id;
  w->nslots = c->o.requests;
  w->ordered = c->dst.ops->stream;
  pthread_mutex_init(&w->lock, NULL);
  pthread_cond_init(&w->cond, NULL);
  for (int i = 0; i < w->nslots; i++) {
    w->slots[i].w = w;
    w->slots[i].buf = malloc(c->o.request_size);
    if (!w->slots[i].buf) {
      copy_fail(c, "out of memory");
      return -1;
    }
  }
  return 0;
}

static void worker_free(struct worker *w)
{
  for (int i = 0; i < w->nslots; i++)
    free(w->slots[i].buf);
  extent_vec_reset(&w->ext);
  pthread_mutex_destroy(&w->lock);
  pthread_cond_destroy(&w->cond);
}

int copy_run(struct copy *c)
{
  struct worker *ws = calloc((size_t)c->nworkers, sizeof *ws);
  int started = 0, inited = 0;
  if (!ws) {
    copy_fail(c, "out of memory");
    return -1;
  }
  for (int i = 0; i < c->nworkers; i++) {
    inited++;
    if (worker_init(c, &ws[i], i) == -1)
      break;
    if (pthread_create(&ws[i].thread, NULL, worker_main, &ws[i]) != 0) {
      copy_fail(c, "cannot start a worker thread");
      break;
    }
    started++;
  }
  for (int i = 0; i < started; i++) {
    while (pthread_tryjoin_np(ws[i].thread, NULL) == EBUSY) {
      copy_progress(c, false);
      struct timespec t = { 0, 50 * 1000000 };
      nanosleep(&t, NULL);
    }
  }
  copy_progress(c, true);
  for (int i = 0; i < inited; i++)
    worker_free(&ws[i]);
  free(ws);
  return c->err ? -1 : 0;
}
