/* snbd-server: the transmission phase's reader.  One reader (this
 * connection's thread) validates each request at the edge, receives a
 * WRITE's payload, and decides where the request runs (dispatch): on
 * this thread when the backend never waits, submitted from it when the
 * backend completes asynchronously, else on the worker pool.
 * xmit_cmd.c runs it; reply.c sends the reply.
 * Spec: proto.md "Transmission phase". */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "xmit.h"

/* ---- validation at the edge ---- */

/* Flags each command accepts (FUA is valid for every command once
 * advertised, proto.md "Command flags").  PAYLOAD_LEN only with extended
 * headers: WRITE must carry it, BLOCK_STATUS may when its payload form
 * was advertised. */
static uint16_t allowed_flags(const struct conn *c, uint16_t type)
{
  uint16_t f = NBD_CMD_FLAG_FUA;
  switch (type) {
  case NBD_CMD_READ:
    return f | (c->structured || c->ext ? NBD_CMD_FLAG_DF : 0);
  case NBD_CMD_WRITE:
    return f | (c->ext ? NBD_CMD_FLAG_PAYLOAD_LEN : 0);
  case NBD_CMD_WRITE_ZEROES:
    return f | NBD_CMD_FLAG_NO_HOLE | NBD_CMD_FLAG_FAST_ZERO;
  case NBD_CMD_BLOCK_STATUS:
    return f | NBD_CMD_FLAG_REQ_ONE |
           (c->eflags & NBD_FLAG_BLOCK_STATUS_PAYLOAD
            ? NBD_CMD_FLAG_PAYLOAD_LEN : 0);
  default:
    return f;
  }
}

/* How many payload bytes follow the header (proto.md "Request message"):
 * compact, a WRITE's length; extended, the length of a request flagged
 * NBD_CMD_FLAG_PAYLOAD_LEN, whatever its command. */
static uint64_t payload_len(const struct conn *c, const struct nbd_req *r)
{
  if (c->ext)
    return r->flags & NBD_CMD_FLAG_PAYLOAD_LEN ? r->count : 0;
  return r->type == NBD_CMD_WRITE ? r->count : 0;
}

/* Whether r is BLOCK_STATUS in its payload form (the effect length and
 * the context ids in the payload). */
static bool bs_payload_form(const struct nbd_req *r)
{
  return r->type == NBD_CMD_BLOCK_STATUS &&
         (r->flags & NBD_CMD_FLAG_PAYLOAD_LEN);
}

/* 0 if the request may run, else the errno to answer with.  The backend
 * layer asserts the same facts (backend.c assert_valid).  Lengths are 64
 * bits: under extended headers TRIM, WRITE_ZEROES, CACHE and
 * BLOCK_STATUS may cover the whole export in one request. */
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
  /* "The command NBD_CMD_WRITE MUST use the flag NBD_CMD_FLAG_PAYLOAD_LEN
   * in this mode": without it the length is no payload length. */
  if (c->ext && r->type == NBD_CMD_WRITE &&
      !(r->flags & NBD_CMD_FLAG_PAYLOAD_LEN))
    return EINVAL;
  if (r->type == NBD_CMD_TRIM && !(c->eflags & NBD_FLAG_SEND_TRIM))
    return e->readonly ? EPERM : EINVAL;
  if (r->type == NBD_CMD_BLOCK_STATUS && !c->meta_active)
    return EINVAL;
  if (writes && e->readonly)
    return EPERM;
  if (r->type == NBD_CMD_FLUSH || bs_payload_form(r))
    return 0;     /* the payload form's range: after its payload */
  if ((r->type == NBD_CMD_READ || r->type == NBD_CMD_WRITE) &&
      r->count > NBD_MAX_PAYLOAD)
    /* Extended: a READ is "a command without payload [that] requests a
     * length larger than an advertised maximum" ("Error values"). */
    return c->ext && r->type == NBD_CMD_READ ? EOVERFLOW : EINVAL;
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
  void *buf = *err ? NULL : buf_pool_get(&c->bufs, rest);
  if (!buf) {
    if (*err == 0)
      *err = ENOMEM;
    return transport_discard(t, rest);
  }
  int rr = transport_read_full(t, buf, rest);
  if (rr == 0 && backend_pwrite(be, buf, rest, r->offset + done, 0) == -1)
    *err = errno;
  buf_pool_put(&c->bufs, buf);
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
  if (*err == 0 && !map && !(q->buf = buf_pool_get(&c->bufs, r->count)))
    *err = ENOMEM;
  int rr = *err ? transport_discard(c->t, r->count)
           : map ? write_into_map(c, r, map, &q->write_err)
           : transport_read_full(c->t, q->buf, r->count);
  q->written = *err == 0 && map != NULL;
  return rr;
}

/* BLOCK_STATUS's payload form (proto.md NBD_CMD_BLOCK_STATUS): u64
 * effect length, then the context ids wanted.  The only context is
 * base:allocation (id 1), so a payload naming more than one id names an
 * unknown or a duplicate one: EINVAL, after the payload was consumed
 * ("MUST gracefully consume the client's payload before failing").  On
 * success r->count becomes the effect length.  The payload was bounded
 * by the maximum payload before this runs.  -1 if the stream broke. */
#define BS_PAYLOAD_MAX (WIRE_BS_PAYLOAD_HDR + 4 * 64)
static int receive_bs_payload(struct conn *c, struct nbd_req *r, int *err)
{
  uint8_t buf[BS_PAYLOAD_MAX];
  uint64_t effect;
  size_t nids;
  if (r->count > sizeof buf) {
    *err = EINVAL;
    return transport_discard(c->t, r->count);
  }
  if (transport_read_full(c->t, buf, r->count) == -1)
    return -1;
  if (!wire_decode_bs_payload(buf, r->count, &effect, &nids) || nids != 1 ||
      wire_bs_payload_id(buf, 0) != 1)
    *err = EINVAL;
  else if (effect == 0 || !wire_range_ok(r->offset, effect, c->exp->be->size))
    *err = EINVAL;
  else
    r->count = effect;
  return 0;
}

/* Reads the payload that follows r's header, if any: a WRITE's data, the
 * payload form of BLOCK_STATUS, or (refused, or not expected on this
 * command) drained through the transport without being allocated.  -1
 * if the stream broke. */
static int receive_any_payload(struct conn *c, struct req *q, uint64_t plen,
                               int *err)
{
  int wake = c->t->wake_fd;
  int rr = 0;
  c->t->wake_fd = -1;          /* a payload that has begun is read whole */
  if (q->r.type == NBD_CMD_WRITE && *err == 0)
    rr = receive_payload(c, q, err);
  else if (bs_payload_form(&q->r) && *err == 0)
    rr = receive_bs_payload(c, &q->r, err);
  else if (plen > 0)
    rr = transport_discard(c->t, plen);
  c->t->wake_fd = wake;
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
  uint8_t hdr[WIRE_REQUEST_MAX];
  size_t len = wire_request_len(c->ext);
  for (;;) {
    if (*closing && !request_begins(c, *closing)) {
      log_debug("%s: shutting down: no more requests read", c->peer);
      return 0;
    }
    if (transport_read_msg(c->t, hdr, len) == 0)
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
  /* Under extended headers a compact request magic is as bad as any:
   * the header lengths differ, so the stream cannot be followed. */
  if (!wire_decode_req(hdr, c->ext, r)) {
    log_info("%s: bad request magic%s; closing", c->peer,
             c->ext ? " (extended headers)" : "");
    return 0;
  }
  return 1;
}

/* ---- dispatch ---- */

/* Runs q where its backend wants it.  A backend that never waits (RAM,
 * tmpfs) runs it here and the reply goes out straight away (never
 * blocking, reply.c), saving two thread hand-offs per request; or, if
 * the next request's header is already buffered, it is held to share a
 * send with the next (and true is returned: q was answered here, and the
 * next one waits).  An asynchronous backend is handed its operations
 * from here too: no thread waits for them, and their completion queues
 * the reply for the writer.  Anything else may block on a device, so a
 * worker runs it. */
static bool dispatch(struct conn *c, struct req *q)
{
  struct backend *be = c->exp->be;
  uint16_t type = q->r.type;
  bool async_ok = backend_is_async(be) && type != NBD_CMD_BLOCK_STATUS &&
                  type != NBD_CMD_CACHE;    /* those run synchronously */

  q->route = REPLY_TO_WRITER;
  if (!c->srv->xmit_workers_only && backend_never_waits(be)) {
    bool more = transport_pending(c->t) >= wire_request_len(c->ext);
    q->route = more ? REPLY_BATCH : REPLY_NOW;
    xmit_req_start(q);
    return more;
  }
  if (async_ok && !c->srv->xmit_workers_only)
    xmit_req_start(q);
  else
    pool_submit(xmit_req_start, q);
  return false;
}

/* Whether r's header already tells the session must end: under extended
 * headers, a payload above the maximum ("SHOULD initiate hard disconnect
 * if a client sets the NBD_CMD_FLAG_PAYLOAD_LEN flag and uses a length
 * larger than a server's advertised ... maximum payload length"), not
 * read. */
static bool payload_too_big(const struct conn *c, uint64_t plen)
{
  if (!c->ext || plen <= NBD_MAX_PAYLOAD)
    return false;
  log_info("%s: request payload of %" PRIu64 " bytes, above the maximum; "
           "closing", c->peer, plen);
  return true;
}

void xmit_run(struct conn *c)
{
  int64_t closing = 0;
  bool follows = false;      /* the last request was answered, this waited */
  struct nbd_req r;

  log_debug("%s: transmission on export " EXPORT_FMT "%s", c->peer,
            EXPORT_ARGS(c->exp->name), c->ext ? " (extended headers)" : "");
  while (reply_wait_room(c) && read_request(c, &r, &closing)) {
    if (r.type == NBD_CMD_DISC)
      break;
    uint64_t plen = payload_len(c, &r);
    if (payload_too_big(c, plen))
      break;
    int err = closing ? ESHUTDOWN : validate(c, &r);
    bool io = r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE;
    if (io && err == 0 && r.count >= 128 * 1024)
      c->big_io = true;         /* conn.c: malloc_trim when idle */
    if (io && err == 0 && !reply_wait_bytes(c, r.count))
      break;
    if (io && err == 0 && !reply_wait_budget(c, &r))
      break;
    struct req *q = err ? NULL : malloc(sizeof *q);
    struct req refused;        /* stands in for a request refused here */
    if (!q && !err)
      err = ENOMEM;
    struct req *in = q ? q : &refused;
    *in = (struct req){ .c = c, .r = r, .route = REPLY_TO_WRITER,
                        .t0 = metrics_request_start(follows) };
    follows = false;
    if (receive_any_payload(c, in, plen, &err) == -1) {
      buf_pool_put(&c->bufs, in->buf);
      free(q);
      break;
    }
    /* Every request from here on gets exactly one reply. */
    reply_account(c, &in->r);
    if (err) {
      log_debug("%s: %s off=%" PRIu64 " len=%" PRIu64 ": %s", c->peer,
                nbd_cmd_name(r.type), r.offset, r.count, strerror(err));
      xmit_send_error(in, err, nbd_cmd_name(r.type));
      free(q);
      continue;
    }
    follows = dispatch(c, q);
  }
  replies_finish(c);
}
