/* snbd-server: reply queue and the per-connection writer (see reply.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "reply.h"

#define WRITER_BATCH_IOV 256

struct reply {
  struct reply *next;
  uint32_t bytes;            /* payload bytes counted for back-pressure */
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

static uint32_t req_bytes(const struct nbd_req *r)
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

static void reply_free(struct reply *rp)
{
  for (int i = 0; i < rp->nown; i++)
    free(rp->own[i]);
  free(rp);
}

static void free_list(struct reply *rp)
{
  while (rp) {
    struct reply *next = rp->next;
    reply_free(rp);
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

/* Under c->lock: these replies will never be sent (a send failed, or no
 * writer could be started): out of flight, freed, and the reader stops. */
static void drop_replies(struct conn *c, struct reply *list)
{
  for (struct reply *rp = list; rp; rp = rp->next) {
    c->inflight--;
    c->inflight_bytes -= rp->bytes;
  }
  free_list(list);
  mark_dead(c);
  pthread_cond_broadcast(&c->cond);
}

/* Sends a batch of replies with as few sendv calls as the iov limit
 * allows; frees them.  Returns the count and payload bytes completed. */
static void send_batch(struct conn *c, struct reply *batch, bool dead,
                       int *n, uint64_t *bytes)
{
  struct iovec iov[WRITER_BATCH_IOV];
  int k = 0;
  bool failed = dead;

  *n = 0;
  *bytes = 0;
  pthread_mutex_lock(&c->send_lock);
  for (struct reply *rp = batch; rp; ) {
    struct reply *next = rp->next;
    if (!failed && k > 0 && k + rp->niov > WRITER_BATCH_IOV) {
      failed = transport_sendv(c->t, iov, k, 1) == -1;
      k = 0;
    }
    if (!failed && rp->niov > WRITER_BATCH_IOV)   /* huge structured read */
      failed = transport_sendv(c->t, rp->iov, rp->niov, next != NULL) == -1;
    else if (!failed) {
      memcpy(iov + k, rp->iov, (size_t)rp->niov * sizeof *iov);
      k += rp->niov;
    }
    if (!failed && rp->file_len) {      /* what is queued, then the file */
      failed = (k > 0 && transport_sendv(c->t, iov, k, 1) == -1) ||
               transport_sendfile(c->t, rp->file_fd, rp->file_off,
                                   rp->file_len, true) == -1;
      k = 0;
    }
    /* k == 0 with bytes still buffered by the reader's try_sendv: the
     * reply it queued is empty, and this sendv writes them out. */
    if (!failed && !next && (k > 0 || transport_send_pending(c->t)))
      failed = transport_sendv(c->t, iov, k, 0) == -1;
    /* Buffers of replies already copied into iov must outlive the
     * sendv: free this batch only at the end. */
    (*n)++;
    *bytes += rp->bytes;
    rp = next;
  }
  pthread_mutex_unlock(&c->send_lock);
  if (failed && !dead)
    log_debug("%s: send: %m", c->peer);
  free_list(batch);
  if (failed && !dead) {
    pthread_mutex_lock(&c->lock);
    mark_dead(c);
    pthread_mutex_unlock(&c->lock);
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
    c->inflight -= n;
    c->inflight_bytes -= bytes;
    pthread_cond_broadcast(&c->cond);
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

/* Under c->lock: puts the list first..last at the head of the writer's
 * queue (nothing may be sent before it) and wakes the writer.  False if
 * the writer cannot be started. */
static bool queue_at_head(struct conn *c, struct reply *first,
                          struct reply *last)
{
  last->next = c->outq;
  if (!c->outq)
    c->outq_tail = last;
  c->outq = first;
  if (!writer_start(c))
    return false;
  pthread_cond_signal(&c->out_cond);
  return true;
}

/* The reader's own send of the replies of inline requests (a list, in
 * order), which must never block: a client that writes before it reads
 * would otherwise deadlock with us.  What the socket takes now goes out
 * in one send; the rest (from the first reply not wholly sent) goes to
 * the head of the writer's queue.  False if the writer is busy or has
 * work queued: then the caller queues the whole list. */
static bool try_direct(struct conn *c, struct reply *list, int niov)
{
  struct iovec iov[HELD_IOV];
  size_t total = 0;

  pthread_mutex_lock(&c->lock);
  if (!transport_can_try_send(c->t) || c->outq || c->writer_busy || c->dead ||
      niov > HELD_IOV || pthread_mutex_trylock(&c->send_lock) != 0) {
    pthread_mutex_unlock(&c->lock);
    return false;
  }
  pthread_mutex_unlock(&c->lock);
  int k = 0;
  for (struct reply *rp = list; rp; rp = rp->next) {
    memcpy(iov + k, rp->iov, (size_t)rp->niov * sizeof *iov);
    k += rp->niov;
  }
  total = iov_len(iov, k);
  ssize_t w = transport_try_sendv(c->t, iov, k);
  /* A reply with a file piece comes alone (direct_reply): its file part
   * once all before it went. */
  if (w >= 0 && (size_t)w == total && list->file_len) {
    ssize_t wf = transport_sendfile(c->t, list->file_fd, list->file_off,
                                     list->file_len, false);
    w = wf < 0 ? -1 : w + wf;
    total += list->file_len;
  }
  /* TLS may have taken everything but kept some of it buffered: then the
   * last reply stays queued, empty, for the writer to flush. */
  bool pending = w >= 0 && (size_t)w == total &&
                 transport_send_pending(c->t);

  /* Replies wholly sent are done; the first that is not, and all after
   * it, go to the writer. */
  struct reply *rest = list, *prev = NULL;
  int ndone = 0;
  uint64_t bytes = 0;
  size_t left = w > 0 ? (size_t)w : 0;
  while (w >= 0 && rest) {
    size_t len = reply_len(rest);
    if (left < len || (pending && !rest->next)) {
      reply_advance(rest, left < len ? left : len);
      break;
    }
    left -= len;
    ndone++;
    bytes += rest->bytes;
    prev = rest;
    rest = rest->next;
  }
  if (prev)                /* detach the finished ones */
    prev->next = NULL;

  pthread_mutex_lock(&c->lock);
  if (w >= 0 && rest) {
    struct reply *last = rest;
    while (last->next)
      last = last->next;
    if (!queue_at_head(c, rest, last)) {
      c->outq = c->outq_tail = NULL;
      if (prev)
        prev->next = rest;
      w = -1;
    }
  }
  if (w < 0)               /* the list is whole again: none will be sent */
    drop_replies(c, list);
  else {
    c->inflight -= ndone;
    c->inflight_bytes -= bytes;
    pthread_cond_broadcast(&c->cond);
  }
  pthread_mutex_unlock(&c->send_lock);
  pthread_mutex_unlock(&c->lock);
  if (w >= 0 && prev)
    free_list(list);
  return true;
}

/* Queues a list (in order) for the writer. */
static void queue_list(struct conn *c, struct reply *first, struct reply *last)
{
  pthread_mutex_lock(&c->lock);
  if (writer_start(c)) {
    if (c->outq_tail)
      c->outq_tail->next = first;
    else
      c->outq = first;
    c->outq_tail = last;
    pthread_cond_signal(&c->out_cond);
  }
  else
    drop_replies(c, first);
  pthread_mutex_unlock(&c->lock);
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
 * are already buffered (so their replies share one send), else sent with
 * whatever was held. */
static void direct_reply(struct conn *c, struct reply *rp, bool hold)
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
  if (!hold || rp->niov > HELD_IOV || len > HELD_BYTES || rp->file_len)
    reply_flush_held(c);
}

void reply_queue(struct conn *c, const struct nbd_req *r,
                 struct reply *rp, enum reply_route route)
{
  if (rp) {
    if (route != REPLY_TO_WRITER)
      direct_reply(c, rp, route == REPLY_BATCH);
    else
      queue_list(c, rp, rp);
    return;
  }
  pthread_mutex_lock(&c->lock);
  log_error("%s: out of memory for a reply; closing", c->peer);
  mark_dead(c);
  c->inflight--;
  c->inflight_bytes -= req_bytes(r);
  pthread_cond_broadcast(&c->cond);
  pthread_mutex_unlock(&c->lock);
}

void reply_account(struct conn *c, const struct nbd_req *r)
{
  pthread_mutex_lock(&c->lock);
  c->inflight++;
  c->inflight_bytes += req_bytes(r);
  pthread_mutex_unlock(&c->lock);
}

bool reply_wait_room(struct conn *c)
{
  /* Held replies count as in flight: never wait for room with any. */
  if (c->held) {
    pthread_mutex_lock(&c->lock);
    bool full = c->inflight >= c->srv->max_inflight ||
                c->inflight_bytes >= REPLY_MAX_INFLIGHT_BYTES;
    pthread_mutex_unlock(&c->lock);
    if (full)
      reply_flush_held(c);
  }
  pthread_mutex_lock(&c->lock);
  while (!c->dead && (c->inflight >= c->srv->max_inflight ||
                      c->inflight_bytes >= REPLY_MAX_INFLIGHT_BYTES))
    pthread_cond_wait(&c->cond, &c->lock);
  bool ok = !c->dead;
  pthread_mutex_unlock(&c->lock);
  return ok;
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
