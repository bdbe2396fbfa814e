/* snbd-server: reply queue and the per-connection writer (see reply.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "cleanup.h"
#include "log.h"
#include "reply.h"

#define WRITER_BATCH_IOV 256

struct reply {
  struct reply *next;
  uint64_t bytes;            /* payload bytes counted for back-pressure
                                (64 bits: an extended READ may claim more) */
  int niov, max_iov;
  struct iovec *iov;
  void *own[2];
  int nown;
  size_t hdr_used, hdr_cap;
  uint8_t *hdr;              /* header arena, after the iov array */
  int file_fd;               /* file piece after the iovs (reply_file) */
  uint64_t file_off;
  size_t file_len;           /* 0: none */
};

static uint64_t req_bytes(const struct nbd_req *r)
{
  return r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE ? r->count : 0;
}

struct reply *reply_new(const struct nbd_req *r, int max_iov,
                        size_t hdr_bytes)
{
  size_t size = sizeof(struct reply) + (size_t)max_iov * sizeof(struct iovec)
                + hdr_bytes;
  struct reply *rp = malloc(size);
  if (!rp)
    return NULL;
  memset(rp, 0, sizeof *rp);
  rp->bytes = req_bytes(r);
  rp->max_iov = max_iov;
  rp->iov = (struct iovec *)(rp + 1);
  rp->hdr = (uint8_t *)(rp->iov + max_iov);
  rp->hdr_cap = hdr_bytes;
  return rp;
}

void *reply_hdr(struct reply *rp, size_t len)
{
  /* Callers size the arena and the iov array for what they add. */
  if (rp->hdr_used + len > rp->hdr_cap || rp->niov == rp->max_iov)
    abort();
  void *p = rp->hdr + rp->hdr_used;
  rp->hdr_used += len;
  rp->iov[rp->niov++] = (struct iovec){ p, len };
  return p;
}

void reply_data(struct reply *rp, const void *p, size_t len)
{
  if (rp->niov == rp->max_iov)
    abort();
  rp->iov[rp->niov++] = (struct iovec){ (void *)p, len };
}

void reply_file(struct reply *rp, int fd, uint64_t off, size_t len)
{
  rp->file_fd = fd;
  rp->file_off = off;
  rp->file_len = len;
}

void reply_own(struct reply *rp, void *p)
{
  if (rp->nown == 2)
    abort();
  rp->own[rp->nown++] = p;
}

/* Frees sent replies; the buffers they own go back to c's pool. */
static void free_list(struct conn *c, struct reply *rp)
{
  while (rp) {
    struct reply *next = rp->next;
    for (int i = 0; i < rp->nown; i++)
      buf_pool_put(&c->bufs, rp->own[i]);
    free(rp);
    rp = next;
  }
}

/* Under c->lock: a send failed or we gave up; the reader must stop. */
static void mark_dead(struct conn *c)
{
  if (!c->dead) {
    c->dead = true;
    shutdown(c->fd, SHUT_RDWR);
    pthread_cond_broadcast(&c->cond);
  }
}

/* Under c->lock: n replies carrying bytes of payload are out of flight;
 * the reader may have room for more requests. */
static void replies_done(struct conn *c, int n, uint64_t bytes)
{
  c->inflight -= n;
  c->inflight_bytes -= bytes;
  atomic_fetch_sub(&c->srv->queued_bytes, bytes);
  pthread_cond_broadcast(&c->cond);
}

/* Under c->lock: these replies will never be sent (a send failed, or no
 * writer could be started): out of flight, freed, and the reader stops. */
static void drop_replies(struct conn *c, struct reply *list)
{
  int n = 0;
  uint64_t bytes = 0;
  for (struct reply *rp = list; rp; rp = rp->next) {
    n++;
    bytes += rp->bytes;
  }
  free_list(c, list);
  mark_dead(c);
  replies_done(c, n, bytes);
}

/* ---- the writer thread ---- */

/* One batch on its way out: pieces gathered for one sendv. */
struct batch_out {
  struct transport *t;
  bool failed;               /* a send failed: the rest is not sent */
  int k;
  struct iovec iov[WRITER_BATCH_IOV];
};

static void batch_sendv(struct batch_out *o, const struct iovec *iov, int n,
                        int more)
{
  if (!o->failed && transport_sendv(o->t, iov, n, more) == -1)
    o->failed = true;
}

/* Sends what is gathered (more: the batch goes on). */
static void batch_push(struct batch_out *o, int more)
{
  batch_sendv(o, o->iov, o->k, more);
  o->k = 0;
}

/* Adds one reply to the batch: its pieces join the others' (the array is
 * sent first if they would not fit), a huge one goes on its own, a file
 * piece follows whatever is gathered before it.  The last reply sends the
 * batch. */
static void batch_add(struct batch_out *o, const struct reply *rp, bool last)
{
  if (o->failed)
    return;
  if (o->k > 0 && o->k + rp->niov > WRITER_BATCH_IOV)
    batch_push(o, 1);
  if (rp->niov > WRITER_BATCH_IOV)            /* huge structured read */
    batch_sendv(o, rp->iov, rp->niov, !last);
  else {
    memcpy(o->iov + o->k, rp->iov, (size_t)rp->niov * sizeof *o->iov);
    o->k += rp->niov;
  }
  if (rp->file_len) {                 /* what is gathered, then the file */
    if (o->k > 0)
      batch_push(o, 1);
    if (!o->failed && transport_sendfile(o->t, rp->file_fd, rp->file_off,
                                         rp->file_len, true) == -1)
      o->failed = true;
  }
  /* k == 0 with bytes still buffered by the reader's try_sendv: the
   * reply it queued is empty, and this sendv writes them out. */
  if (last && (o->k > 0 || transport_send_pending(o->t)))
    batch_push(o, 0);
}

/* Sends a batch of replies with as few sendv calls as the iov limit
 * allows (none once the connection is dead) and frees them.  Returns
 * the count and payload bytes completed. */
static void send_batch(struct conn *c, struct reply *batch, bool dead,
                       int *n, uint64_t *bytes)
{
  struct batch_out o = { .t = c->t, .failed = dead };

  *n = 0;
  *bytes = 0;
  pthread_mutex_lock(&c->send_lock);
  for (struct reply *rp = batch; rp; rp = rp->next) {
    batch_add(&o, rp, rp->next == NULL);
    (*n)++;
    *bytes += rp->bytes;
  }
  pthread_mutex_unlock(&c->send_lock);
  if (o.failed && !dead)
    log_debug("%s: send: %m", c->peer);
  /* Buffers of replies already gathered must outlive the sendv: the
   * batch is freed only now. */
  free_list(c, batch);
  if (o.failed && !dead) {
    SCOPED_LOCK(&c->lock);
    mark_dead(c);
  }
}

static void *writer_thread(void *arg)
{
  struct conn *c = arg;
  pthread_mutex_lock(&c->lock);
  for (;;) {
    while (!c->outq && !c->writer_stop)
      pthread_cond_wait(&c->out_cond, &c->lock);
    struct reply *batch = c->outq;
    if (!batch)
      break;
    c->outq = c->outq_tail = NULL;
    /* Until this batch is out, the reader must not send directly: its
     * bytes would land between ours or, if cut short, ahead of them. */
    c->writer_busy = true;
    bool dead = c->dead;
    pthread_mutex_unlock(&c->lock);
    int n;
    uint64_t bytes;
    send_batch(c, batch, dead, &n, &bytes);
    pthread_mutex_lock(&c->lock);
    c->writer_busy = false;
    replies_done(c, n, bytes);
  }
  pthread_mutex_unlock(&c->lock);
  return NULL;
}

/* Under c->lock.  Started with the first reply, so an idle connection
 * costs one thread, not two. */
static bool writer_start(struct conn *c)
{
  if (c->writer_started)
    return true;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, 256 * 1024);
  int err = pthread_create(&c->writer, &attr, writer_thread, c);
  pthread_attr_destroy(&attr);
  if (err) {
    log_error("%s: cannot start a writer thread: %s", c->peer, strerror(err));
    return false;
  }
  c->writer_started = true;
  return true;
}

/* Queues a list (in order) for the writer.  Any thread. */
static void queue_list(struct conn *c, struct reply *first, struct reply *last)
{
  SCOPED_LOCK(&c->lock);
  if (!writer_start(c)) {
    drop_replies(c, first);
    return;
  }
  if (c->outq_tail)
    c->outq_tail->next = first;
  else
    c->outq = first;
  c->outq_tail = last;
  pthread_cond_signal(&c->out_cond);
}

/* Under c->lock: puts the list at the head of the writer's queue (nothing
 * may be sent before it) and wakes the writer.  False if the writer
 * cannot be started. */
static bool queue_at_head(struct conn *c, struct reply *list)
{
  if (!writer_start(c))
    return false;
  struct reply *last = list;
  while (last->next)
    last = last->next;
  last->next = c->outq;
  if (!c->outq)
    c->outq_tail = last;
  c->outq = list;
  pthread_cond_signal(&c->out_cond);
  return true;
}

/* ---- the reader's own sends (REPLY_NOW, REPLY_BATCH) ---- */

/* Held replies go out together: at most this many, iovecs, bytes. */
#define HELD_MAX 16
#define HELD_IOV 64
#define HELD_BYTES (128u * 1024)

/* Drops the first n bytes of rp's pieces (they were sent). */
static void reply_advance(struct reply *rp, size_t n)
{
  int i = 0;
  while (i < rp->niov && n >= rp->iov[i].iov_len)
    n -= rp->iov[i++].iov_len;
  memmove(rp->iov, rp->iov + i, (size_t)(rp->niov - i) * sizeof *rp->iov);
  rp->niov -= i;
  if (n > 0 && rp->niov > 0) {
    rp->iov[0].iov_base = (char *)rp->iov[0].iov_base + n;
    rp->iov[0].iov_len -= n;
  }
  else if (n > 0) {                 /* into the file piece */
    rp->file_off += n;
    rp->file_len -= n;
  }
}

static size_t iov_len(const struct iovec *iov, int n)
{
  size_t len = 0;
  for (int i = 0; i < n; i++)
    len += iov[i].iov_len;
  return len;
}

static size_t reply_len(const struct reply *rp)
{
  return iov_len(rp->iov, rp->niov) + rp->file_len;
}

/* Takes c->send_lock if the reader may send now: the transport can send
 * without blocking, the writer has nothing queued or in hand (our bytes
 * would land between its, or ahead of them) and the connection lives.
 * Never waits: c->lock is held, so send_lock is only tried. */
static bool direct_lock(struct conn *c, int niov)
{
  if (niov > HELD_IOV)
    return false;
  SCOPED_LOCK(&c->lock);
  return transport_can_try_send(c->t) && !c->outq && !c->writer_busy &&
         !c->dead && pthread_mutex_trylock(&c->send_lock) == 0;
}

/* Under c->send_lock: sends what the socket takes now of the list's
 * pieces, in one send, and of its file piece once all before it went (a
 * reply with one comes alone: reader_reply).  Bytes taken, or -1; *total
 * is what was offered. */
static ssize_t direct_send(struct conn *c, const struct reply *list,
                           size_t *total)
{
  struct iovec iov[HELD_IOV];
  int k = 0;
  for (const struct reply *rp = list; rp; rp = rp->next) {
    memcpy(iov + k, rp->iov, (size_t)rp->niov * sizeof *iov);
    k += rp->niov;
  }
  *total = iov_len(iov, k);
  ssize_t w = transport_try_sendv(c->t, iov, k);
  if (w >= 0 && (size_t)w == *total && list->file_len) {
    ssize_t wf = transport_sendfile(c->t, list->file_fd, list->file_off,
                                     list->file_len, false);
    w = wf < 0 ? -1 : w + wf;
    *total += list->file_len;
  }
  return w;
}

/* A list of replies cut where a send stopped. */
struct reply_split {
  struct reply *done;        /* wholly sent, in order */
  struct reply *rest;        /* the first not wholly sent, and all after */
  int ndone;
  uint64_t done_bytes;       /* payload bytes of the done ones */
};

/* Cuts list after its first sent bytes; the first reply not wholly sent
 * is advanced past what of it went.  With pending (the transport took
 * everything but still holds some), the last reply stays, emptied, for
 * the writer to flush. */
static struct reply_split split_sent(struct reply *list, size_t sent,
                                     bool pending)
{
  struct reply_split s = { .rest = list };
  struct reply *prev = NULL;
  while (s.rest) {
    size_t len = reply_len(s.rest);
    if (sent < len || (pending && !s.rest->next)) {
      reply_advance(s.rest, sent < len ? sent : len);
      break;
    }
    sent -= len;
    s.ndone++;
    s.done_bytes += s.rest->bytes;
    prev = s.rest;
    s.rest = s.rest->next;
  }
  if (prev) {                /* detach the finished ones */
    prev->next = NULL;
    s.done = list;
  }
  return s;
}

/* The reader's own send of the replies of inline requests (a list, in
 * order), which must never block: a client that writes before it reads
 * would otherwise deadlock with us.  What the socket takes now goes out
 * in one send; the rest (from the first reply not wholly sent) goes to
 * the head of the writer's queue.  False if the writer is busy or has
 * work queued: then the caller queues the whole list. */
static bool try_direct(struct conn *c, struct reply *list, int niov)
{
  if (!direct_lock(c, niov))
    return false;
  size_t total;
  ssize_t w = direct_send(c, list, &total);
  /* TLS may have taken everything but kept some of it buffered: then the
   * last reply stays queued, empty, for the writer to flush. */
  bool pending = w >= 0 && (size_t)w == total &&
                 transport_send_pending(c->t);
  struct reply_split s = w >= 0 ? split_sent(list, (size_t)w, pending)
                         : (struct reply_split){ .rest = list };

  pthread_mutex_lock(&c->lock);
  /* The unsent are queued before send_lock is let go: nothing else may
   * be sent ahead of them. */
  bool ok = w >= 0 && (!s.rest || queue_at_head(c, s.rest));
  if (ok)
    replies_done(c, s.ndone, s.done_bytes);
  else {                     /* none of the list will be sent */
    drop_replies(c, s.done);
    drop_replies(c, s.rest);
  }
  pthread_mutex_unlock(&c->send_lock);
  pthread_mutex_unlock(&c->lock);
  if (ok)
    free_list(c, s.done);
  return true;
}

void reply_flush_held(struct conn *c)
{
  struct reply *list = c->held, *last = c->held_tail;
  int niov = c->held_iov;
  if (!list)
    return;
  c->held = c->held_tail = NULL;
  c->held_n = c->held_iov = 0;
  c->held_len = 0;
  if (!try_direct(c, list, niov))
    queue_list(c, list, last);
}

/* The reader's reply to an inline request: held back while more requests
 * are already buffered (batch: so their replies share one send), else
 * sent with whatever was held. */
static void reader_reply(struct conn *c, struct reply *rp, bool batch)
{
  size_t len = reply_len(rp);
  if (c->held && (c->held_n >= HELD_MAX || c->held_iov + rp->niov > HELD_IOV ||
                  c->held_len + len > HELD_BYTES || rp->file_len))
    reply_flush_held(c);
  rp->next = NULL;
  if (c->held_tail)
    c->held_tail->next = rp;
  else
    c->held = rp;
  c->held_tail = rp;
  c->held_n++;
  c->held_iov += rp->niov;
  c->held_len += len;
  if (!batch || rp->niov > HELD_IOV || len > HELD_BYTES || rp->file_len)
    reply_flush_held(c);
}

void reply_queue(struct conn *c, const struct nbd_req *r, struct reply *rp,
                 enum reply_route route)
{
  if (rp && route == REPLY_TO_WRITER)
    queue_list(c, rp, rp);
  else if (rp)
    reader_reply(c, rp, route == REPLY_BATCH);
  else {
    SCOPED_LOCK(&c->lock);
    log_error("%s: out of memory for a reply; closing", c->peer);
    mark_dead(c);
    replies_done(c, 1, req_bytes(r));
  }
}

/* ---- the reader's accounting ---- */

void reply_account(struct conn *c, const struct nbd_req *r)
{
  SCOPED_LOCK(&c->lock);
  c->inflight++;
  c->inflight_bytes += req_bytes(r);
  atomic_fetch_add(&c->srv->queued_bytes, req_bytes(r));
  if (c->inflight_bytes >= 8u << 20)
    c->big_io = true;           /* conn.c: malloc_trim when it closes */
}

/* Under c->lock. */
static bool no_room(const struct conn *c)
{
  return c->inflight >= c->srv->max_inflight ||
         c->inflight_bytes >= REPLY_MAX_INFLIGHT_BYTES;
}

bool reply_wait_room(struct conn *c)
{
  /* Held replies count as in flight: never wait for room with any. */
  if (c->held) {
    pthread_mutex_lock(&c->lock);
    bool full = no_room(c);
    pthread_mutex_unlock(&c->lock);
    if (full)
      reply_flush_held(c);
  }
  SCOPED_LOCK(&c->lock);
  while (!c->dead && no_room(c))
    pthread_cond_wait(&c->cond, &c->lock);
  return !c->dead;
}

/* Whether bytes more would take the bytes queued server-wide over
 * --max-queued-mib (0: no bound).  No lock: the total is atomic. */
static bool server_over(const struct server *s, uint64_t bytes)
{
  uint64_t max = (uint64_t)s->max_queued_mib << 20;
  return max != 0 && atomic_load(&s->queued_bytes) + bytes > max;
}

/* Under c->lock. */
static bool over_budget(const struct conn *c, uint64_t bytes)
{
  if (c->srv->shutting_down)
    return false;
  if (c->inflight == 0 && bytes <= REPLY_ALWAYS_BYTES)
    return false;
  return server_over(c->srv, bytes);
}

bool reply_wait_budget(struct conn *c, const struct nbd_req *r)
{
  uint64_t bytes = req_bytes(r);
  if (bytes == 0)
    return true;
  if (!server_over(c->srv, bytes))     /* the common case: no lock */
    return true;
  /* Held replies are in flight but cannot drain while we wait (flushed
   * only now: on every request, they would never be held). */
  if (c->held)
    reply_flush_held(c);
  SCOPED_LOCK(&c->lock);
  bool waited = false;
  while (!c->dead && over_budget(c, bytes)) {
    if (!waited)
      log_debug("%s: %llu bytes queued server-wide; waiting for replies "
                "to drain", c->peer,
                (unsigned long long)atomic_load(&c->srv->queued_bytes));
    waited = true;
    /* Other connections' replies free the budget without signalling this
     * one, so look again every 20 ms; only readers over the bound wait. */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_nsec += 20000000;
    if (ts.tv_nsec >= 1000000000) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000;
    }
    pthread_cond_timedwait(&c->cond, &c->lock, &ts);
  }
  return !c->dead;
}

bool reply_wait_bytes(struct conn *c, uint64_t bytes)
{
  bool wait;
  {
    SCOPED_LOCK(&c->lock);
    wait = c->inflight > 0 &&
           c->inflight_bytes + bytes > REPLY_MAX_INFLIGHT_BYTES;
  }
  if (!wait)
    return true;
  reply_flush_held(c);      /* held replies count: never wait on them */
  SCOPED_LOCK(&c->lock);
  while (!c->dead && c->inflight > 0 &&
         c->inflight_bytes + bytes > REPLY_MAX_INFLIGHT_BYTES)
    pthread_cond_wait(&c->cond, &c->lock);
  return !c->dead;
}

void replies_finish(struct conn *c)
{
  reply_flush_held(c);
  pthread_mutex_lock(&c->lock);
  while (c->inflight > 0)
    pthread_cond_wait(&c->cond, &c->lock);
  c->writer_stop = true;
  pthread_cond_signal(&c->out_cond);
  bool started = c->writer_started;
  pthread_mutex_unlock(&c->lock);
  if (started)
    pthread_join(c->writer, NULL);
}
