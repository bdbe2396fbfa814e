/* snbd-server: the transmission phase.  One reader (this connection's
 * thread) validates each request at the edge and hands it to the worker
 * pool; workers run it on the backend and queue the whole reply for the
 * connection's writer (reply.c).  Spec: proto.md "Transmission phase". */
#include <endian.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "log.h"
#include "reply.h"
#include "wire.h"

#define XMIT_DESC_MAX_LEN 0xfffff000u   /* one descriptor, 4 KiB aligned */

struct req {
  struct conn *c;
  struct nbd_req r;
  void *buf;                 /* WRITE payload, or NULL */
  bool written;              /* WRITE payload already in place ... */
  int write_err;             /* ... with this outcome (write_into_map) */
};

/* The one errno -> NBD_E* mapping (proto.md "Error values"). */
uint32_t xmit_nbd_errno(int err)
{
  switch (err) {
  case 0: return NBD_SUCCESS;
  case EPERM: case EROFS: return NBD_EPERM;
  case EIO: return NBD_EIO;
  case ENOMEM: return NBD_ENOMEM;
  case EINVAL: return NBD_EINVAL;
  case ENOSPC: case EDQUOT: case EFBIG: return NBD_ENOSPC;
  case EOVERFLOW: return NBD_EOVERFLOW;
  case ENOTSUP: return NBD_ENOTSUP;
  case ESHUTDOWN: return NBD_ESHUTDOWN;
  default: return NBD_EIO;
  }
}

/* ---- replies (queued to the connection's writer, reply.c) ---- */

/* How this thread's replies go (reply.h): REPLY_TO_WRITER on workers and
 * for the reader's own error replies; REPLY_NOW or REPLY_BATCH while the
 * reader runs a request itself (xmit_run). */
static __thread enum reply_route xmit_route = REPLY_TO_WRITER;

static void send_simple(struct conn *c, const struct nbd_req *r, uint32_t err)
{
  struct reply *rp = reply_new(r, 1, 16);
  if (rp)
    wire_encode_simple_reply(reply_hdr(rp, 16), err, r->cookie);
  reply_queue(c, r, rp, xmit_route);
}

/* An error: a structured ERROR chunk with a message when structured
 * replies are on (required for READ), else a simple reply. */
static void send_error(struct conn *c, const struct nbd_req *r, int err,
                       const char *what)
{
  uint32_t nerr = xmit_nbd_errno(err);
  if (!c->structured) {
    send_simple(c, r, nerr);
    return;
  }
  char msg[256];
  int n = snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  if (n < 0)
    n = 0;
  if ((size_t)n >= sizeof msg)
    n = sizeof msg - 1;
  struct reply *rp = reply_new(r, 1, 26 + (size_t)n);
  if (rp) {
    uint8_t *p = reply_hdr(rp, 26 + (size_t)n);
    uint32_t be_err = htobe32(nerr);
    uint16_t be_len = htobe16((uint16_t)n);
    wire_encode_chunk_hdr(p, NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_ERROR,
                          r->cookie, (uint32_t)(6 + n));
    memcpy(p + 20, &be_err, 4);
    memcpy(p + 24, &be_len, 2);
    memcpy(p + 26, msg, (size_t)n);
  }
  reply_queue(c, r, rp, xmit_route);
}

static void send_ok(struct conn *c, const struct nbd_req *r)
{
  send_simple(c, r, 0);
}

/* ---- commands ---- */

/* An OFFSET_DATA chunk header for length bytes at offset; the data is
 * the next piece the caller adds. */
static void data_chunk(struct reply *rp, const struct nbd_req *r, uint16_t fl,
                       uint64_t offset, uint64_t length)
{
  uint8_t *h = reply_hdr(rp, 28);
  uint64_t off = htobe64(offset);
  wire_encode_chunk_hdr(h, fl, NBD_REPLY_TYPE_OFFSET_DATA, r->cookie,
                        (uint32_t)(8 + length));
  memcpy(h + 20, &off, 8);
}

/* Structured READ: holes of a sparse backend go out as OFFSET_HOLE chunks
 * and only data is read (docs/architecture.md "Structured replies").  On
 * success the reply owns buf. */
static int read_structured(struct conn *c, const struct nbd_req *r,
                           uint8_t *buf)
{
  struct backend *be = c->exp->be;
  struct extents ex;
  bool sparse = (be->caps & BACKEND_CHEAP_EXTENTS) &&
                !(r->flags & NBD_CMD_FLAG_DF) && r->count > 0;
  extents_init(&ex, r->offset, r->offset + r->count, 1024);
  if (sparse && be->ops->extents(be, r->count, r->offset, &ex) == -1) {
    extents_free(&ex);
    return -1;
  }
  if (!sparse || ex.n == 0 ||
      ex.v[ex.n - 1].offset + ex.v[ex.n - 1].length != r->offset + r->count) {
    /* One data chunk for the whole range. */
    ex.n = 0;
    if (r->count > 0 && extents_add(&ex, r->offset, r->count, 0) == -1) {
      extents_free(&ex);
      errno = ENOMEM;
      return -1;
    }
  }
  /* Read every data extent first: a chunk is only sent once its data is
   * known good, so the last chunk can carry DONE. */
  for (size_t i = 0; i < ex.n; i++)
    if (!(ex.v[i].flags & EXTENT_ZERO) &&
        be->ops->pread(be, buf + (ex.v[i].offset - r->offset),
                       ex.v[i].length, ex.v[i].offset) == -1) {
      extents_free(&ex);
      return -1;
    }
  struct reply *rp = reply_new(r, ex.n ? 2 * (int)ex.n : 1,
                               ex.n ? 32 * ex.n : 20);
  if (!rp) {
    extents_free(&ex);
    errno = ENOMEM;
    return -1;
  }
  for (size_t i = 0; i < ex.n; i++) {
    const struct extent *x = &ex.v[i];
    uint16_t fl = i + 1 == ex.n ? NBD_REPLY_FLAG_DONE : 0;
    uint64_t off = htobe64(x->offset);
    if (x->flags & EXTENT_ZERO) {
      uint8_t *h = reply_hdr(rp, 32);
      uint32_t len = htobe32((uint32_t)x->length);
      wire_encode_chunk_hdr(h, fl, NBD_REPLY_TYPE_OFFSET_HOLE, r->cookie, 12);
      memcpy(h + 20, &off, 8);
      memcpy(h + 28, &len, 4);
    }
    else {
      data_chunk(rp, r, fl, x->offset, x->length);
      reply_data(rp, buf + (x->offset - r->offset), (size_t)x->length);
    }
  }
  if (ex.n == 0)     /* zero-length read: just NONE */
    wire_encode_chunk_hdr(reply_hdr(rp, 20), NBD_REPLY_FLAG_DONE,
                          NBD_REPLY_TYPE_NONE, r->cookie, 0);
  extents_free(&ex);
  reply_own(rp, buf);
  reply_queue(c, r, rp, xmit_route);
  return 0;
}

/* Large READs from a backend whose data is a file that cannot fail a
 * read (BACKEND_SENDFILE), over a plain socket, skip the read buffer.
 * Small reads gain less than they lose by not sharing a send with other
 * replies.
 *
 * Usually the file's pages go to the socket with sendfile, no copy: a
 * NIC reads them by DMA, a Unix socket peer copies them once.  To a TCP
 * peer on this host the data is copied into the socket from the file's
 * mapping instead: there the receiving CPU is ours too, and a stream of
 * page-cache pages cost it more than the copy costs us (docs/design.md
 * "Loopback TCP").  Only for ranges wholly in memory: reading a hole
 * through a shared tmpfs mapping would allocate its pages.  Only the
 * kernel reads the mapping, so a page the file lost since fails the send
 * with EFAULT instead of raising SIGBUS.  Either way a file cut short by
 * someone else ends the connection (the header is already out), where
 * pread would have answered EIO. */
#define SENDFILE_MIN (128 * 1024)

/* Every page of the range is in memory (mincore: not a hole, not
 * swapped out).  lseek(SEEK_HOLE) would say the same, but walks the file
 * to the next hole, however far. */
static bool all_in_memory(const struct backend *be, uint64_t off, uint32_t len)
{
  const uint64_t page = (uint64_t)sysconf(_SC_PAGESIZE);
  unsigned char vec[256];
  uint64_t start = off & ~(page - 1), end = off + len;
  while (start < end) {
    uint64_t n = (end - start + page - 1) / page;
    if (n > sizeof vec)
      n = sizeof vec;
    if (mincore(be->map + start, (size_t)(n * page), vec) == -1)
      return false;
    for (uint64_t i = 0; i < n; i++)
      if (!(vec[i] & 1))
        return false;
    start += n * page;
  }
  return true;
}

static bool read_without_buffer(struct conn *c, const struct nbd_req *r)
{
  struct backend *be = c->exp->be;
  if (r->count < SENDFILE_MIN || !(be->caps & BACKEND_SENDFILE) ||
      !transport_can_sendfile(c->t) ||
      (c->structured && (be->caps & BACKEND_CHEAP_EXTENTS)))
    return false;
  bool copy = c->tcp_loopback && be->map &&
              all_in_memory(be, r->offset, r->count);
  struct reply *rp = reply_new(r, 2, 28);
  if (rp) {
    if (c->structured)
      data_chunk(rp, r, NBD_REPLY_FLAG_DONE, r->offset, r->count);
    else
      wire_encode_simple_reply(reply_hdr(rp, 16), 0, r->cookie);
    if (copy)
      reply_data(rp, be->map + r->offset, r->count);
    else
      reply_file(rp, be->data_fd, r->offset, r->count);
  }
  reply_queue(c, r, rp, xmit_route);
  return true;
}

static void cmd_read(struct conn *c, const struct nbd_req *r)
{
  struct backend *be = c->exp->be;
  if (read_without_buffer(c, r))
    return;
  /* Not zeroed: bytes only leave this buffer after a successful read
   * filled them (holes go out as OFFSET_HOLE, failures send no payload),
   * so nothing stale can reach the client (docs/security.md 17, 25). */
  uint8_t *buf = malloc(r->count ? r->count : 1);
  if (!buf) {
    send_error(c, r, ENOMEM, "read");
    return;
  }
  if (c->structured) {
    if (read_structured(c, r, buf) == -1) {
      send_error(c, r, errno, "read");
      free(buf);
    }
    return;
  }
  if (r->count && be->ops->pread(be, buf, r->count, r->offset) == -1) {
    send_error(c, r, errno, "read");
    free(buf);
    return;
  }
  struct reply *rp = reply_new(r, 2, 16);
  if (rp) {
    wire_encode_simple_reply(reply_hdr(rp, 16), 0, r->cookie);
    if (r->count)
      reply_data(rp, buf, r->count);
    reply_own(rp, buf);
  }
  else
    free(buf);
  reply_queue(c, r, rp, xmit_route);
}

/* FUA on a backend without native FUA: do the op, then flush. */
static int fua_done(struct backend *be, uint16_t flags, int rc)
{
  if (rc == 0 && (flags & NBD_CMD_FLAG_FUA) && !(be->caps & BACKEND_CAN_FUA) &&
      (be->caps & BACKEND_CAN_FLUSH))
    rc = be->ops->flush(be);
  return rc;
}

static unsigned be_fua(const struct backend *be, uint16_t flags)
{
  return (flags & NBD_CMD_FLAG_FUA) && (be->caps & BACKEND_CAN_FUA)
         ? BACKEND_FUA : 0;
}

/* WRITE_ZEROES on a backend without zero(): write zeroes in bounded
 * pieces (never a partial success: any failure fails the request). */
static int zero_by_writing(struct backend *be, uint64_t count, uint64_t off,
                           unsigned fl)
{
  static const uint8_t zeroes[65536];
  while (count > 0) {
    size_t n = count < sizeof zeroes ? (size_t)count : sizeof zeroes;
    if (be->ops->pwrite(be, zeroes, n, off, fl) == -1)
      return -1;
    off += n;
    count -= n;
  }
  return 0;
}

static int cmd_zero(struct conn *c, const struct nbd_req *r)
{
  struct backend *be = c->exp->be;
  unsigned fl = be_fua(be, r->flags);
  if (!(r->flags & NBD_CMD_FLAG_NO_HOLE))
    fl |= BACKEND_MAY_TRIM;
  if (r->flags & NBD_CMD_FLAG_FAST_ZERO) {
    if (!(be->caps & BACKEND_CAN_FAST_ZERO) || !be->ops->zero) {
      errno = ENOTSUP;
      return -1;
    }
    fl |= BACKEND_FAST;
  }
  if (be->ops->zero && (be->caps & BACKEND_CAN_ZERO))
    return be->ops->zero(be, r->count, r->offset, fl);
  return zero_by_writing(be, r->count, r->offset, fl & BACKEND_FUA);
}

/* BLOCK_STATUS for base:allocation, at most 2^20 descriptors, lengths in
 * 64 bits until encoded (docs/security.md 15). */
static void cmd_block_status(struct conn *c, const struct nbd_req *r)
{
  struct backend *be = c->exp->be;
  bool one = r->flags & NBD_CMD_FLAG_REQ_ONE;
  struct extents ex;
  extents_init(&ex, r->offset, r->offset + r->count,
               one ? 1 : NBD_MAX_BLOCK_STATUS_DESCS);
  int rc = 0;
  if ((be->caps & BACKEND_CAN_EXTENTS) && be->ops->extents)
    rc = be->ops->extents(be, r->count, r->offset, &ex);
  else
    rc = extents_add(&ex, r->offset, r->count, 0) == -1 ? -1 : 0;
  if (rc == -1 || ex.n == 0) {
    if (rc != -1)
      errno = EIO;
    send_error(c, r, errno, "block status");
    extents_free(&ex);
    return;
  }
  struct wire_buf b;
  wire_buf_init(&b);
  wire_put_u32(&b, 1);                   /* context id of base:allocation */
  size_t ndesc = 0;
  for (size_t i = 0; i < ex.n && ndesc < ex.max; i++) {
    uint64_t len = ex.v[i].length;
    while (len > 0 && ndesc < ex.max) {
      uint32_t piece = len > XMIT_DESC_MAX_LEN ? XMIT_DESC_MAX_LEN
                                               : (uint32_t)len;
      wire_put_u32(&b, piece);
      wire_put_u32(&b, ex.v[i].flags & (NBD_STATE_HOLE | NBD_STATE_ZERO));
      len -= piece;
      ndesc++;
    }
  }
  extents_free(&ex);
  if (b.oom) {
    wire_buf_free(&b);
    send_error(c, r, ENOMEM, "block status");
    return;
  }
  struct reply *rp = reply_new(r, 2, 20);
  if (rp) {
    wire_encode_chunk_hdr(reply_hdr(rp, 20), NBD_REPLY_FLAG_DONE,
                          NBD_REPLY_TYPE_BLOCK_STATUS, r->cookie,
                          (uint32_t)b.len);
    reply_data(rp, b.data, b.len);
    reply_own(rp, b.data);       /* the reply frees the descriptors */
  }
  else
    wire_buf_free(&b);
  reply_queue(c, r, rp, xmit_route);
}

/* Runs on a worker thread. */
static void req_run(void *arg)
{
  struct req *q = arg;
  struct conn *c = q->c;
  struct backend *be = c->exp->be;
  const struct nbd_req *r = &q->r;
  int rc = 0;

  switch (r->type) {
  case NBD_CMD_READ:
    cmd_read(c, r);
    goto done;
  case NBD_CMD_BLOCK_STATUS:
    cmd_block_status(c, r);
    goto done;
  case NBD_CMD_WRITE:
    if (q->written) {
      /* The data went in without FUA: a flush stands in for the one a
       * backend with native FUA would have done (fua_done below covers
       * the others). */
      errno = q->write_err;
      rc = q->write_err ? -1 : 0;
      if (rc == 0 && be_fua(be, r->flags) && (be->caps & BACKEND_CAN_FLUSH))
        rc = be->ops->flush(be);
    }
    else
      rc = r->count ? be->ops->pwrite(be, q->buf, r->count, r->offset,
                                      be_fua(be, r->flags)) : 0;
    break;
  case NBD_CMD_FLUSH:
    rc = (be->caps & BACKEND_CAN_FLUSH) ? be->ops->flush(be) : 0;
    break;
  case NBD_CMD_TRIM:
    rc = r->count ? be->ops->trim(be, r->count, r->offset,
                                  be_fua(be, r->flags)) : 0;
    break;
  case NBD_CMD_WRITE_ZEROES:
    rc = r->count ? cmd_zero(c, r) : 0;
    break;
  case NBD_CMD_CACHE:
    /* Advisory: a failure changes nothing but speed, so report it. */
    rc = (be->caps & BACKEND_CAN_CACHE) && be->ops->cache && r->count
         ? be->ops->cache(be, r->count, r->offset) : 0;
    break;
  }
  if (r->type != NBD_CMD_CACHE && r->type != NBD_CMD_FLUSH)
    rc = fua_done(be, r->flags, rc);
  if (rc == -1)
    send_error(c, r, errno, nbd_cmd_name(r->type));
  else
    send_ok(c, r);
done:
  free(q->buf);
  free(q);
}

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

/* 0 if the request may run, else the errno to answer with. */
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

/* ---- the reader ---- */

/* A WRITE payload received straight into the backend's shared mapping
 * (BACKEND_RECV_MAP): one copy, socket to page cache, instead of two, and
 * no inode lock for concurrent writers to spin on.  Only the kernel
 * writes the mapping (bytes already read ahead go in with pwrite, the
 * rest with recv_kernel), so a page it cannot provide (a full tmpfs, a
 * file cut short by someone else) fails a recv with EFAULT instead of
 * raising SIGBUS; the rest of the payload then goes through a buffer and
 * pwrite, which reports the real error.  Data lands as it arrives: a
 * payload cut short leaves part of it written, as any torn write may.
 * 0 with *err the request's outcome, or -1 if the stream broke. */
static int write_into_map(struct conn *c, const struct nbd_req *r, int *err)
{
  struct transport *t = c->t;
  struct backend *be = c->exp->be;
  const void *p;
  size_t done = transport_take_buffered(t, &p, r->count);

  *err = 0;
  if (done > 0 && be->ops->pwrite(be, p, done, r->offset, 0) == -1)
    *err = errno;
  while (*err == 0 && done < r->count) {
    ssize_t n = transport_recv_kernel(t, be->map + r->offset + done,
                                    r->count - done);
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
  if (rr == 0 && be->ops->pwrite(be, buf, rest, r->offset + done, 0) == -1)
    *err = errno;
  free(buf);
  return rr;
}

/* Reads one request header; handles the switch to shutdown mode.
 * 1 = got one, 0 = end of the connection. */
static int read_request(struct conn *c, struct nbd_req *r, bool *closing)
{
  uint8_t hdr[28];
  for (;;) {
    if (transport_read_msg(c->t, hdr, sizeof hdr) == 0)
      break;
    if (errno == ECANCELED && !*closing) {
      /* Shutdown: answer what still arrives with ESHUTDOWN, briefly. */
      *closing = true;
      c->t->wake_fd = -1;
      c->t->deadline = monotonic_ns() + 2000000000LL;
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

void xmit_run(struct conn *c)
{
  bool closing = false;
  struct nbd_req r;

  log_debug("%s: transmission on export \"%s\"", c->peer, c->exp->name);
  while (reply_wait_room(c) && read_request(c, &r, &closing)) {
    if (r.type == NBD_CMD_DISC)
      break;
    int err = closing ? ESHUTDOWN : validate(c, &r);
    void *buf = NULL;
    if ((r.type == NBD_CMD_READ || r.type == NBD_CMD_WRITE) && err == 0 &&
        r.count >= 128 * 1024)
      c->big_io = true;         /* conn.c: malloc_trim when idle */
    bool mapped = r.type == NBD_CMD_WRITE && err == 0 && r.count > 0 &&
                  (c->exp->be->caps & BACKEND_RECV_MAP) &&
                  transport_can_recv_kernel(c->t);
    int write_err = 0;
    if (r.type == NBD_CMD_WRITE) {
      if (err == 0 && !mapped && !(buf = malloc(r.count ? r.count : 1)))
        err = ENOMEM;
      /* A refused write's payload is drained through the transport,
       * without allocating its claimed length (docs/security.md 14). */
      /* A payload that has begun is read whole even at shutdown. */
      int wake = c->t->wake_fd;
      c->t->wake_fd = -1;
      int rr = err ? transport_discard(c->t, r.count)
               : mapped ? write_into_map(c, &r, &write_err)
               : transport_read_full(c->t, buf, r.count);
      c->t->wake_fd = wake;
      if (rr == -1) {
        free(buf);
        break;
      }
    }
    /* Every request from here on gets exactly one reply. */
    reply_account(c, &r);
    struct req *q = err ? NULL : malloc(sizeof *q);
    if (!q) {
      if (!err)
        err = ENOMEM;
      log_debug("%s: %s off=%llu len=%u: %s", c->peer, nbd_cmd_name(r.type),
                (unsigned long long)r.offset, r.count, strerror(err));
      send_error(c, &r, err, nbd_cmd_name(r.type));
      free(buf);
      continue;
    }
    *q = (struct req){ .c = c, .r = r, .buf = buf, .written = mapped,
                       .write_err = write_err };
    if (c->exp->be->caps & BACKEND_FAST_IO) {
      /* Nothing can block on a device: run it here and send the reply
       * straight away (never blocking, reply.c), saving two thread
       * hand-offs per request; or, if the next request's header is
       * already buffered, hold the reply to share a send with the next. */
      bool more = transport_pending(c->t) >= sizeof(struct nbd_request);
      xmit_route = more ? REPLY_BATCH : REPLY_NOW;
      req_run(q);
      xmit_route = REPLY_TO_WRITER;
    }
    else
      pool_submit(req_run, q);
  }
  replies_finish(c);
}
