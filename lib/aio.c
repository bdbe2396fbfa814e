/* libsnbd: the transmission phase as the caller sees it.  Commands are
 * checked against what was negotiated, split to the server's block-size
 * limits, registered (so the reader thread can match replies) and sent
 * under send_lock.  Completion runs callbacks or wakes snbd_aio_wait. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"
#include "wire.h"

#define BUCKET(c) ((size_t)((c) % HASH_BUCKETS))

/* ---- Reader thread lifetime ---- */

int xmit_start(struct snbd_handle *h)
{
  sigset_t all, old;
  h->t->deadline = 0;
  transport_readahead(h->t);        /* past STARTTLS: safe to read ahead */
  h->state = H_READY;
  /* Signals belong to the application's threads, not ours. */
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  int e = pthread_create(&h->reader, NULL, reply_reader, h);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  if (e != 0) {
    h->state = H_CREATED;   /* let h_fail_connection record it */
    return hs_broken(h, e, "cannot start the reader thread: %s", strerror(e));
  }
  h->reader_running = true;
  return 0;
}

/* Stops the reader (caller holds h->lock): it fails what is in flight
 * with err and runs their callbacks before it exits. */
void xmit_stop(struct snbd_handle *h, int err)
{
  if (!h->reader_running)
    return;
  if (h->state != H_DEAD)
    h_set_dead(h, err, "the handle was closed");
  shutdown(h->t->fd, SHUT_RDWR);
  h->reader_running = false;
  pthread_mutex_unlock(&h->lock);
  pthread_join(h->reader, NULL);
  pthread_mutex_lock(&h->lock);
}

/* NBD_CMD_DISC, then wait (bounded) for the server to close
 * (doc/proto.md "Terminating the transmission phase").  Caller holds
 * h->lock, nothing is in flight. */
int xmit_disconnect(struct snbd_handle *h)
{
  uint8_t req[28];
  struct nbd_req disc = { .type = NBD_CMD_DISC, .cookie = h->next_wire_cookie++ };
  wire_encode_request(req, &disc);
  h->state = H_DISCONNECTING;
  pthread_mutex_unlock(&h->lock);
  pthread_mutex_lock(&h->send_lock);
  if (transport_write_full(h->t, req, sizeof req, 0) == 0)
    transport_shutdown(h->t);
  pthread_mutex_unlock(&h->send_lock);
  pthread_mutex_lock(&h->lock);
  struct timespec until;
  clock_gettime(CLOCK_MONOTONIC, &until);
  until.tv_sec += 5;
  while (h->state == H_DISCONNECTING &&
         pthread_cond_timedwait(&h->cond, &h->lock, &until) != ETIMEDOUT)
    ;
  xmit_stop(h, ENOTCONN);
  return 0;
}

/* ---- Ops and requests ---- */

struct req *xmit_find_req(struct snbd_handle *h, uint64_t cookie)
{
  struct req *r = h->reqs[BUCKET(cookie)];
  while (r && r->cookie != cookie)
    r = r->next;
  return r;
}

struct op *xmit_find_op(struct snbd_handle *h, int64_t cookie)
{
  struct op *o = cookie > 0 ? h->ops[BUCKET((uint64_t)cookie)] : NULL;
  while (o && o->cookie != cookie)
    o = o->next;
  return o;
}

void xmit_unlink_op(struct snbd_handle *h, struct op *op)
{
  struct op **p = &h->ops[BUCKET((uint64_t)op->cookie)];
  while (*p != op)
    p = &(*p)->next;
  *p = op->next;
  op->next = NULL;
  h->nr_ops--;
}

void xmit_free_op(struct op *op)
{
  free(op->errmsg);
  free(op);
}

/* Records the first error of an op (caller holds h->lock). */
void xmit_op_error(struct op *op, int err, const char *fmt, ...)
{
  if (op->error)
    return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  op->error = err ? err : EIO;
  op->errmsg = strdup(msg);
}

/* Drops one part of op (caller holds h->lock); at zero the op is done:
 * queued for its callback, or kept for snbd_aio_wait. */
void xmit_op_part_done(struct snbd_handle *h, struct op *op)
{
  if (--op->parts_left > 0)
    return;
  /* A READ that succeeded had every byte covered (reply.c chunk_done);
   * one that failed may hold part of a reply: never stale or partial
   * data (docs/security.md 25). */
  if (op->error && op->rbuf)
    memset(op->rbuf, 0, op->rlen);
  op->done = true;
  if (op->cb) {
    xmit_unlink_op(h, op);
    op->next = h->ready;
    h->ready = op;
  }
  pthread_cond_broadcast(&h->cond);
}

void xmit_req_done(struct snbd_handle *h, struct req *r)
{
  struct req **p = &h->reqs[BUCKET(r->cookie)];
  while (*p != r)
    p = &(*p)->next;
  *p = r->next;
  h->nr_reqs--;
  xmit_op_part_done(h, r->op);
  cover_free(&r->cover);
  free(r);
}

/* Runs the callbacks of finished ops, outside the lock. */
void xmit_complete_ready(struct snbd_handle *h)
{
  pthread_mutex_lock(&h->lock);
  struct op *list = h->ready;
  h->ready = NULL;
  pthread_mutex_unlock(&h->lock);
  while (list) {
    struct op *op = list;
    list = op->next;
    if (op->error)
      set_error_at("libsnbd", op->error, "%s",
                   op->errmsg ? op->errmsg : strerror(op->error));
    op->cb(op->user_data, op->cookie, op->error);
    xmit_free_op(op);
  }
}
