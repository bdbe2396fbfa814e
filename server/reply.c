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

/* Under c->lock: a send failed or we gave up; the reader must stop. */
static void mark_dead(struct conn *c)
{
  if (!c->dead) {
    c->dead = true;
    shutdown(c->fd, SHUT_RDWR);
    pthread_cond_broadcast(&c->cond);
  }
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
    if (!failed && k > 0 && !next)
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
  for (struct reply *rp = batch; rp; ) {
    struct reply *next = rp->next;
    reply_free(rp);
    rp = next;
  }
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

static bool writer_start(struct conn *c);

/* Set while the reader runs a request inline: its reply is sent at once
 * from the reader's thread instead of going through the writer. */
static __thread bool direct;

void reply_set_direct(bool on)
{
  direct = on;
}

/* Drops the first n bytes of rp's pieces (they were sent). */
static void reply_advance(struct reply *rp, size_t n)
{
  int i = 0;
  while (i < rp->niov && n >= rp->iov[i].iov_len)
    n -= rp->iov[i++].iov_len;
  memmove(rp->iov, rp->iov + i, (size_t)(rp->niov - i) * sizeof *rp->iov);
  rp->niov -= i;
  if (n > 0) {
    rp->iov[0].iov_base = (char *)rp->iov[0].iov_base + n;
    rp->iov[0].iov_len -= n;
  }
}

/* The reader's own send of an inline request's reply, which must never
 * block: a client that writes before it reads would otherwise deadlock
 * with us.  What the socket takes now goes out; a remainder goes to the
 * head of the writer's queue (nothing else may be sent before it).
 * False if the writer is busy: then the caller queues the whole reply. */
static bool try_direct(struct conn *c, struct reply *rp)
{
  ssize_t (*try_sendv)(struct transport *, const struct iovec *, int) =
    c->t->ops->try_sendv;
  size_t total = 0;
  for (int i = 0; i < rp->niov; i++)
    total += rp->iov[i].iov_len;

  pthread_mutex_lock(&c->lock);
  if (!try_sendv || c->outq || c->writer_busy || c->dead ||
      rp->niov > WRITER_BATCH_IOV ||
      pthread_mutex_trylock(&c->send_lock) != 0) {
    pthread_mutex_unlock(&c->lock);
    return false;
  }
  pthread_mutex_unlock(&c->lock);
  ssize_t w = try_sendv(c->t, rp->iov, rp->niov);
  pthread_mutex_lock(&c->lock);
  if (w >= 0 && (size_t)w < total) {
    reply_advance(rp, (size_t)w);
    rp->next = c->outq;
    c->outq = rp;
    if (!c->outq_tail)
      c->outq_tail = rp;
    if (writer_start(c)) {
      pthread_cond_signal(&c->out_cond);
      rp = NULL;
    }
    else {
      c->outq = c->outq_tail = NULL;
      w = -1;
    }
  }
  if (rp) {                 /* all sent, or failed */
    if (w < 0)
      mark_dead(c);
    c->inflight--;
    c->inflight_bytes -= rp->bytes;
    pthread_cond_broadcast(&c->cond);
  }
  pthread_mutex_unlock(&c->send_lock);
  pthread_mutex_unlock(&c->lock);
  if (rp)
    reply_free(rp);
  return true;
}

void reply_queue(struct conn *c, const struct nbd_req *r, struct reply *rp)
{
  if (direct && rp && try_direct(c, rp))
    return;
  pthread_mutex_lock(&c->lock);
  if (!rp || !writer_start(c)) {
    if (rp)
      reply_free(rp);
    log_error("%s: out of memory for a reply; closing", c->peer);
    mark_dead(c);
    c->inflight--;
    c->inflight_bytes -= req_bytes(r);
    pthread_cond_broadcast(&c->cond);
  }
  else {
    if (c->outq_tail)
      c->outq_tail->next = rp;
    else
      c->outq = rp;
    c->outq_tail = rp;
    pthread_cond_signal(&c->out_cond);
  }
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
