/* libsnbd, lower layer: the table of commands in flight.  An op is one
 * command as the caller sees it (one cookie); a req is one wire request
 * (an op is split into several when it exceeds the server's maximum).
 * Both live in hash tables in the handle, keyed by cookie.  The command
 * issuers (commands.c) create and register them, the reader thread
 * (reply.c) finds and completes them, and the transmission lifetime
 * fails what is left (inflight_fail_all, from the reader's exit).
 * Every function here expects h->lock held, except
 * inflight_complete_ready, which takes it. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define BUCKET(c) ((size_t)((c) % HASH_BUCKETS))

struct op *inflight_op_new(struct snbd_handle *h, const struct op *init)
{
  struct op *op = calloc(1, sizeof *op);
  if (!op) {
    lib_error(errno, "calloc");
    return NULL;
  }
  *op = *init;
  op->cookie = h->next_op_cookie++;
  op->parts_left = 1;      /* held until every part is sent */
  op->next = h->ops[BUCKET((uint64_t)op->cookie)];
  h->ops[BUCKET((uint64_t)op->cookie)] = op;
  h->nr_ops++;
  return op;
}

int inflight_req_add(struct snbd_handle *h, struct op *op, struct nbd_req *q,
                     char *buf)
{
  struct req *r = calloc(1, sizeof *r);
  if (!r) {
    inflight_op_error(op, ENOMEM, "out of memory");
    return -1;
  }
  q->cookie = h->next_wire_cookie++;
  r->cookie = q->cookie;
  r->op = op;
  r->type = q->type;
  r->flags = q->flags;
  r->offset = q->offset;
  r->count = q->count;
  r->buf = buf;
  r->next = h->reqs[BUCKET(r->cookie)];
  h->reqs[BUCKET(r->cookie)] = r;
  if (h->nr_reqs++ == 0)
    h->last_heard = monotonic_ns();   /* reply.c: the request timeout */
  op->parts_left++;
  return 0;
}

struct req *inflight_find_req(struct snbd_handle *h, uint64_t cookie)
{
  struct req *r = h->reqs[BUCKET(cookie)];
  while (r && r->cookie != cookie)
    r = r->next;
  return r;
}

struct op *inflight_find_op(struct snbd_handle *h, int64_t cookie)
{
  struct op *o = cookie > 0 ? h->ops[BUCKET((uint64_t)cookie)] : NULL;
  while (o && o->cookie != cookie)
    o = o->next;
  return o;
}

void inflight_unlink_op(struct snbd_handle *h, struct op *op)
{
  struct op **p = &h->ops[BUCKET((uint64_t)op->cookie)];
  while (*p != op)
    p = &(*p)->next;
  *p = op->next;
  op->next = NULL;
  h->nr_ops--;
}

void inflight_free_op(struct op *op)
{
  free(op->errmsg);
  free(op);
}

void inflight_op_error(struct op *op, int err, const char *fmt, ...)
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

void inflight_op_part_done(struct snbd_handle *h, struct op *op)
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
    inflight_unlink_op(h, op);
    op->next = h->ready;
    h->ready = op;
  }
  pthread_cond_broadcast(&h->cond);
}

void inflight_req_done(struct snbd_handle *h, struct req *r)
{
  struct req **p = &h->reqs[BUCKET(r->cookie)];
  while (*p != r)
    p = &(*p)->next;
  *p = r->next;
  h->nr_reqs--;
  inflight_op_part_done(h, r->op);
  cover_reset(&r->cover);
  free(r);
}

void inflight_fail_all(struct snbd_handle *h)
{
  for (size_t b = 0; b < HASH_BUCKETS; b++) {
    while (h->reqs[b]) {
      struct req *r = h->reqs[b];
      inflight_op_error(r->op, h->dead_errno ? h->dead_errno : ENOTCONN,
                        "%s: the connection is closed: %s",
                        nbd_cmd_name(r->type), h->dead_msg);
      inflight_req_done(h, r);
    }
  }
}

void inflight_complete_ready(struct snbd_handle *h)
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
    inflight_free_op(op);
  }
}
