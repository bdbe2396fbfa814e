/* snbd-server: the transmission phase's reader.  One reader (this
 * connection's thread) validates each request at the edge, receives a
 * WRITE's payload, and decides where the request runs (dispatch): on
 * this thread when the backend never waits, submitted from it when the
 * backend completes asynchronously, else on the worker pool.
 * xmit_cmd.c runs it; reply.c sends the reply.
 * Spec: proto.md "Transmission phase". */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xmit.h"

/* ---- validation at the edge ---- */

/* Flags each command accepts (FUA is valid for every command once
 * advertised, proto.md "Command flags"). */
static uint16_t allowed_flags(const struct conn *c, uint16_t type)
{
  uint16_t f = NBD_CMD_FLAG_FUA;
  switch (type) {
  case NBD_CMD_READ:
    return f | (c->structured ? NBD_CMD_FLAG_DF : 0);
  case NBD_CMD_WRITE_ZEROES:
    return f | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
  case NBD_CMD_BLOCK_STATUS:
    return f | NBD_CMD_FLAG_REQ_ONE;
  default:
    return f;
  }
}

/* 0 if the request may run, else the errno to answer with.  The backend
 * layer asserts the same facts (backend.c assert_valid). */
static int validate(const struct conn *c, const struct nbd_req *r)
{
  const struct export *e = c->exp;
  uint64_t size = e->be->size;
  bool writes = r->type == NBD_CMD_WRITE || r->type == NBD_CMD_TRIM ||
                r->type == NBD_CMD_WRITE_ZEROES;

  if (r->type > NBD_CMD_BLOCK_STATUS || r->type == NBD_CMD_DISC)
    return EINVAL;
  if (r->flags & ~allowed_flags(c, r->type))
    return EINVAL;
  if (r->type == NBD_CMD_TRIM && !(c->eflags & NBD_FLAG_SEND_TRIM))
    return e->readonly ? EPERM : EINVAL;
  if (r->type == NBD_CMD_BLOCK_STATUS && !c->meta_active)
    return EINVAL;
  if (writes && e->readonly)
    return EPERM;
  if (r->type == NBD_CMD_FLUSH)
    return 0;
  if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) &&
      r->count > NBD_MAX_PAYLOAD)
    return EINVAL;
  if (!wire_range_ok(r->offset, r->count, size))
    return (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES)
           ? ENOSPC : EINVAL;
  if (r->type == NBD_CMD_BLOCK_STATUS && r->count == 0)
    return EINVAL;
  return 0;
}

/* ---- receiving ---- */

/* A WRITE payload received straight into the backend's shared mapping
 * (backend_map): one copy, socket to page cache, instead of two, and no
 * inode lock for concurrent writers to spin on.  Only the kernel writes
 * the mapping (bytes already read ahead go in with pwrite, the rest with
 * recv_kernel), so a page it cannot provide (a full tmpfs, a file cut
 * short by someone else) fails a recv with EFAULT instead of raising
 * SIGBUS; the rest of the payload then goes through a buffer and pwrite,
 * which reports the real error.  Data lands as it arrives: a payload cut
 * short leaves part of it written, as any torn write may.  0 with *err
 * the request's outcome, or -1 if the stream broke. */
static int write_into_map(struct conn *c, const struct nbd_req *r,
                          uint8_t *map, int *err)
{
  struct transport *t = c->t;
  struct backend *be = c->exp->be;
  const void *p;
  size_t done = transport_take_buffered(t, &p, r->count);

  *err = 0;
  if (done > 0 && backend_pwrite(be, p, done, r->offset, 0) == -1)
    *err = errno;
  while (*err == 0 && done < r->count) {
    ssize_t n = transport_recv_kernel(t, map + done, r->count - done);
    if (n > 0)
      done += (size_t)n;
    else if (n == 0 || errno != EFAULT) {
      if (n == 0)
        errno = ECONNRESET;
      return -1;
    }
    else
      break;
  }
  size_t rest = r->count - done;
  if (rest == 0)
    return 0;
  void *buf = *err ? NULL : malloc(rest);
  if (!buf) {
    if (*err == 0)
      *err = ENOMEM;
    return transport_discard(t, rest);
  }
  int rr = transport_read_full(t, buf, rest);
  if (rr == 0 && backend_pwrite(be, buf, rest, r->offset + done, 0) == -1)
    *err = errno;
  free(buf);
  return rr;
}

/* Receives a WRITE's payload: into q->buf, into the backend's mapping
 * (q->written), or drained when the request was refused (*err set).  A
 * refused write's payload is drained through the transport, without
 * allocating its claimed length (docs/security.md 14); a payload that has
 * begun is read whole even at shutdown.  -1 if the stream broke. */
static int receive_payload(struct conn *c, struct req *q, int *err)
{
  const struct nbd_req *r = &q->r;
  uint8_t *map = NULL;
  if (*err == 0 && r->count > 0 && transport_can_recv_kernel(c->t))
    map = backend_map(c->exp->be, r->offset, r->count);
  if (*err == 0 && !map && !(q->buf = malloc(r->count ? r->count : 1)))
    *err = ENOMEM;
  int wake = c->t->wake_fd;
  c->t->wake_fd = -1;
  int rr = *err ? transport_discard(c->t, r->count)
           : map ? write_into_map(c, r, map, &q->write_err)
           : transport_read_full(c->t, q->buf, r->count);
  c->t->wake_fd = wake;
  q->written = *err == 0 && map != NULL;
  return rr;
}

/* Shutdown: whether a request begins before `until`.  Polled here, not
 * with the transport's deadline, which would also cut the replies still
 * being sent (128 MiB of TLS replies in flight at SIGTERM were cut after
 * 2 s on a loaded machine: tests/security/test-shutdown.py). */
static bool request_begins(struct conn *c, int64_t until)
{
  while (transport_pending(c->t) == 0) {
    int64_t left = until - monotonic_ns();
    struct pollfd p = { .fd = c->fd, .events = POLLIN };
    /* Past the window, requests already sent are still taken in. */
    int r = poll(&p, 1, left > 0 ? (int)(left / 1000000) + 1 : 0);
    if (r == 0 || (r < 0 && errno != EINTR))
      return false;
    if (r > 0)
      break;
  }
  return true;
}

/* Reads one request header; handles the switch to shutdown mode
 * (*closing: 0, or until when requests are still read, to be answered
 * ESHUTDOWN).  1 = got one, 0 = end of the connection. */
static int read_request(struct conn *c, struct nbd_req *r, int64_t *closing)
{
  uint8_t hdr[sizeof(struct nbd_request)];
  for (;;) {
    if (*closing && !request_begins(c, *closing)) {
      log_debug("%s: shutting down: no more requests read", c->peer);
      return 0;
    }
    if (transport_read_msg(c->t, hdr, sizeof hdr) == 0)
      break;
    if (errno == ECANCELED && !*closing) {
      /* Shutdown: answer what still arrives with ESHUTDOWN, briefly. */
      *closing = monotonic_ns() + 2000000000LL;
      c->t->wake_fd = -1;
      continue;
    }
    if (errno != ECONNRESET && errno != ETIMEDOUT)
      log_debug("%s: reading request: %m", c->peer);
    return 0;
  }
  if (!wire_decode_request(hdr, r)) {
    log_info("%s: bad request magic; closing", c->peer);
    return 0;
  }
  return 1;
}

/* ---- dispatch ---- */

/* Runs q where its backend wants it.  A backend that never waits (RAM,
 * tmpfs) runs it here and the reply goes out straight away (never
 * blocking, reply.c), saving two thread hand-offs per request; or, if
 * the next request's header is already buffered, it is held to share a
 * send with the next.  An asynchronous backend is handed its operations
 * from here too: no thread waits for them, and their completion queues
 * the reply for the writer.  Anything else may block on a device, so a
 * worker runs it. */
static void dispatch(struct conn *c, struct req *q)
{
  struct backend *be = c->exp->be;
  uint16_t type = q->r.type;
  bool async_ok = backend_is_async(be) && type != NBD_CMD_BLOCK_STATUS &&
                  type != NBD_CMD_CACHE;    /* those run synchronously */

  q->route = REPLY_TO_WRITER;
  if (!c->srv->xmit_workers_only && backend_never_waits(be)) {
    bool more = transport_pending(c->t) >= sizeof(struct nbd_request);
    q->route = more ? REPLY_BATCH : REPLY_NOW;
    xmit_req_start(q);
  }
  else if (async_ok && !c->srv->xmit_workers_only)
    xmit_req_start(q);
  else
    pool_submit(xmit_req_start, q);
}

void xmit_run(struct conn *c)
{
  int64_t closing = 0;
  struct nbd_req r;

  log_debug("%s: transmission on export \"%s\"", c->peer, c->exp->name);
  while (reply_wait_room(c) && read_request(c, &r, &closing)) {
    if (r.type == NBD_CMD_DISC)
      break;
    int err = closing ? ESHUTDOWN : validate(c, &r);
    if (err == 0 && !reply_wait_budget(c, &r))
      break;
    if ((r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE) && err == 0 &&
        r.count >= 128 * 1024)
      c->big_io = true;         /* conn.c: malloc_trim when it closes */
    struct req *q = err ? NULL : malloc(sizeof *q);
    struct req refused;        /* stands in for a request refused here */
    if (!q && !err)
      err = ENOMEM;
    struct req *in = q ? q : &refused;
    *in = (struct req){ .c = c, .r = r, .route = REPLY_TO_WRITER,
                        .t0 = metrics_clock() };
    if (r.type == NBD_CMD_WRITE && receive_payload(c, in, &err) == -1) {
      free(in->buf);
      free(q);
      break;
    }
    /* Every request from here on gets exactly one reply. */
    reply_account(c, &r);
    if (err) {
      log_debug("%s: %s off=%llu len=%u: %s", c->peer, nbd_cmd_name(r.type),
                (unsigned long long)r.offset, r.count, strerror(err));
      xmit_send_error(in, err, nbd_cmd_name(r.type));
      free(in->buf);
      free(q);
      continue;
    }
    dispatch(c, q);
  }
  replies_finish(c);
}
