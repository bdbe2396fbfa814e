/* snbd-server: running a validated request (xmit.h) and building its
 * reply.  Every backend call goes through the backend layer
 * (backends/backend.h), which checks it, emulates FUA and zeroing, and
 * completes either at once or later from a backend's own thread; the
 * reply then goes where the request's route says (reply.h).
 * Spec: proto.md "Transmission phase". */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "xmit.h"

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

/* After its reply was queued the connection may be gone: q->buf is NULL
 * by then (req_reply), so the pool is not touched. */
static void req_free(struct req *q)
{
  extents_free(&q->ex);
  if (q->buf)
    buf_pool_put(&q->c->bufs, q->buf);
  free(q);
}

static struct req *req_of(struct backend_req *br)
{
  return (struct req *)((char *)br - offsetof(struct req, br));
}

/* ---- replies ---- */

/* Every request's reply goes out through here, once: the request is
 * counted (nbd_err: the NBD error it gets, 0 for success) before its
 * reply is queued, after which the connection may end at any moment
 * (so a buffer the reply does not own goes back to the pool first). */
static void req_reply(struct req *q, struct reply *rp, uint32_t nbd_err)
{
  metrics_request(q->c, q->r.type, q->r.count, nbd_err, q->t0);
  buf_pool_put(&q->c->bufs, q->buf);
  q->buf = NULL;
  reply_queue(q->c, &q->r, rp, q->route);
}

/* Whom a chunk answers: the request's cookie and, under extended headers,
 * its offset (proto.md "Extended reply chunk message": "MUST match"). */
static struct wire_reply_to reply_to(const struct req *q)
{
  return (struct wire_reply_to){ .ext = q->c->ext, .cookie = q->r.cookie,
                                 .offset = q->r.offset };
}

/* Success without data: a simple reply, or under extended headers (which
 * forbid simple replies, even for FLUSH) a NONE chunk with DONE. */
static void send_simple(struct req *q, uint32_t err)
{
  struct wire_reply_to to = reply_to(q);
  size_t len = to.ext ? WIRE_EXT_CHUNK_HDR_LEN : WIRE_SIMPLE_REPLY_LEN;
  struct reply *rp = reply_new(&q->r, 1, len);
  if (rp && to.ext)
    wire_encode_chunk(reply_hdr(rp, len), &to, NBD_REPLY_FLAG_DONE,
                      NBD_REPLY_TYPE_NONE, 0);
  else if (rp)
    wire_encode_simple_reply(reply_hdr(rp, len), err, q->r.cookie);
  req_reply(q, rp, err);
}

/* An error: an ERROR chunk with a message when structured replies or
 * extended headers are on (required for READ), else a simple reply. */
void xmit_send_error(struct req *q, int err, const char *what)
{
  uint32_t nerr = xmit_nbd_errno(err);
  if (!q->c->structured && !q->c->ext) {
    send_simple(q, nerr);
    return;
  }
  char msg[256];
  int n = snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  if (n < 0)
    n = 0;
  if ((size_t)n >= sizeof msg)
    n = sizeof msg - 1;
  struct wire_reply_to to = reply_to(q);
  size_t len = wire_error_chunk_len(to.ext, (size_t)n);
  struct reply *rp = reply_new(&q->r, 1, len);
  if (rp)
    wire_encode_error_chunk(reply_hdr(rp, len), &to, NBD_REPLY_FLAG_DONE,
                            nerr, msg, (uint16_t)n);
  req_reply(q, rp, nerr);
}

/* The reply to a request whose backend work finished (backend_req.done). */
static void cmd_done(struct backend_req *br, int err)
{
  struct req *q = req_of(br);
  if (err)
    xmit_send_error(q, err, nbd_cmd_name(q->r.type));
  else
    send_simple(q, 0);
  req_free(q);
}

/* ---- READ ---- */

/* Large READs from a backend whose data is a file that cannot fail a
 * read (backend_send_fd), over a plain socket, skip the read buffer.
 * Small reads gain less than they lose by not sharing a send with other
 * replies.
 *
 * Usually the file's pages go to the socket with sendfile, no copy: a
 * NIC reads them by DMA, a Unix socket peer copies them once.  To a TCP
 * peer on this host the data is copied into the socket from the file's
 * mapping instead: there the receiving CPU is ours too, and a stream of
 * page-cache pages cost it more than the copy costs us (docs/architecture.md
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
static bool all_in_memory(const uint8_t *p, uint32_t len)
{
  const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  unsigned char vec[256];
  uintptr_t start = (uintptr_t)p & ~(page - 1), end = (uintptr_t)p + len;
  while (start < end) {
    uintptr_t n = (end - start + page - 1) / page;
    if (n > sizeof vec)
      n = sizeof vec;
    if (mincore((void *)start, (size_t)(n * page), vec) == -1)
      return false;
    for (uintptr_t i = 0; i < n; i++)
      if (!(vec[i] & 1))
        return false;
    start += n * page;
  }
  return true;
}

/* Whether replies to this connection's READs are chunks (structured
 * replies or extended headers) rather than simple replies. */
static bool chunked(const struct conn *c)
{
  return c->structured || c->ext;
}

/* The header of a reply carrying a READ's data in one piece: a simple
 * reply, or an OFFSET_DATA chunk with DONE. */
static void encode_read_hdr(struct reply *rp, const struct req *q)
{
  struct wire_reply_to to = reply_to(q);
  if (chunked(q->c))
    wire_encode_offset_data_hdr(
      reply_hdr(rp, wire_offset_data_hdr_len(to.ext)), &to,
      NBD_REPLY_FLAG_DONE, q->r.offset, (uint32_t)q->r.count);
  else
    wire_encode_simple_reply(reply_hdr(rp, WIRE_SIMPLE_REPLY_LEN), 0,
                             q->r.cookie);
}

/* A chunked READ whose extents are one run of data: sent like a simple
 * one, in a single piece. */
static bool all_data(const struct req *q)
{
  return !chunked(q->c) ||
         (q->ex.n == 1 && !(q->ex.v[0].flags & EXTENT_ZERO));
}

static bool read_without_buffer(struct req *q)
{
  struct conn *c = q->c;
  const struct nbd_req *r = &q->r;
  struct backend *be = c->exp->be;
  uint64_t fd_off;
  if (r->count < SENDFILE_MIN || !transport_can_sendfile(c->t) ||
      !all_data(q))
    return false;
  int fd = backend_send_fd(be, r->offset, r->count, &fd_off);
  if (fd == -1)
    return false;
  uint8_t *map = c->tcp_loopback ? backend_map(be, r->offset, r->count)
                                 : NULL;
  bool copy = map && all_in_memory(map, r->count);
  struct reply *rp = reply_new(r, 2, WIRE_REPLY_HDR_MAX);
  if (rp) {
    encode_read_hdr(rp, q);
    if (copy)
      reply_data(rp, map, r->count);
    else
      reply_file(rp, fd, fd_off, r->count);
  }
  req_reply(q, rp, 0);
  return true;
}

/* Chunked READ: holes of a sparse backend go out as OFFSET_HOLE chunks
 * (docs/architecture.md "Structured replies").  Every data extent was
 * read before any chunk is sent, so the last chunk can carry DONE. */
static void send_read_chunks(struct req *q)
{
  const struct nbd_req *r = &q->r;
  const struct extents *ex = &q->ex;
  struct wire_reply_to to = reply_to(q);
  struct reply *rp = reply_new(r, ex->n ? 2 * (int)ex->n : 1,
                               ex->n ? wire_offset_hole_len(to.ext) * ex->n
                                     : wire_chunk_hdr_len(to.ext));
  for (size_t i = 0; rp && i < ex->n; i++) {
    const struct extent *x = &ex->v[i];
    uint16_t fl = i + 1 == ex->n ? NBD_REPLY_FLAG_DONE : 0;
    if (x->flags & EXTENT_ZERO)
      wire_encode_offset_hole(reply_hdr(rp, wire_offset_hole_len(to.ext)),
                              &to, fl, x->offset, (uint32_t)x->length);
    else {
      wire_encode_offset_data_hdr(
        reply_hdr(rp, wire_offset_data_hdr_len(to.ext)), &to, fl,
        x->offset, (uint32_t)x->length);
      reply_data(rp, (uint8_t *)q->buf + (x->offset - r->offset),
                 (size_t)x->length);
    }
  }
  if (!rp) {
    xmit_send_error(q, ENOMEM, "read");
    return;
  }
  if (ex->n == 0)           /* zero-length read: just NONE */
    wire_encode_chunk(reply_hdr(rp, wire_chunk_hdr_len(to.ext)), &to,
                      NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE_NONE, 0);
  reply_own(rp, q->buf);
  q->buf = NULL;
  req_reply(q, rp, 0);
}

static void read_done(struct backend_req *br, int err)
{
  struct req *q = req_of(br);
  const struct nbd_req *r = &q->r;
  if (err)
    xmit_send_error(q, err, "read");
  else if (chunked(q->c))
    send_read_chunks(q);
  else {
    struct reply *rp = reply_new(r, 2, WIRE_SIMPLE_REPLY_LEN);
    if (rp) {
      encode_read_hdr(rp, q);
      if (r->count)
        reply_data(rp, q->buf, r->count);
      reply_own(rp, q->buf);
      q->buf = NULL;
    }
    req_reply(q, rp, 0);
  }
  req_free(q);
}

/* The extents a chunked READ replies with: a sparse backend's holes and
 * data (unless the client wants one chunk, DF), else one data extent for
 * the whole range.  Memory and regular files have cheap extents (a file
 * asks SEEK_HOLE/SEEK_DATA, remembering where data ends).  Not for an
 * asynchronous backend: the extents would be taken now, while writes
 * submitted before this READ may still wait in its queue, so a READ
 * pipelined after a WRITE could answer a hole where the data lands (legal
 * for requests in flight together, but not what a client expects). */
static int read_extents(struct req *q)
{
  const struct nbd_req *r = &q->r;
  struct backend *be = q->c->exp->be;
  struct extents *ex = &q->ex;
  bool sparse = (be->caps & BACKEND_CHEAP_EXTENTS) && !backend_is_async(be) &&
                !(r->flags & NBD_CMD_FLAG_DF) && r->count > 0;
  extents_init(ex, r->offset, r->offset + r->count, 1024);
  if (sparse && backend_extents(be, r->count, r->offset, ex) == -1)
    return -1;
  if (!sparse || !extents_complete(ex)) {
    ex->n = 0;
    if (r->count > 0 && extents_add(ex, r->offset, r->count, 0) == -1) {
      errno = ENOMEM;
      return -1;
    }
  }
  return 0;
}

static void cmd_read(struct req *q)
{
  const struct nbd_req *r = &q->r;
  if (chunked(q->c) && read_extents(q) == -1) {
    xmit_send_error(q, errno, "read");
    req_free(q);
    return;
  }
  if (read_without_buffer(q)) {
    req_free(q);
    return;
  }
  /* Not zeroed: bytes only leave this buffer after a successful read
   * filled them (holes go out as OFFSET_HOLE, failures send no payload),
   * so nothing stale can reach the client (docs/security.md 17, 25). */
  q->buf = buf_pool_get(&q->c->bufs, r->count);
  if (!q->buf) {
    xmit_send_error(q, ENOMEM, "read");
    req_free(q);
    return;
  }
  q->br = (struct backend_req){
    .op = BACKEND_OP_READ, .offset = r->offset, .count = r->count,
    .buf = q->buf, .data = chunked(q->c) ? &q->ex : NULL,
    .tag = q->c->exp->name, .done = read_done,
  };
  backend_submit(q->c->exp->be, &q->br);
}

/* ---- BLOCK_STATUS ---- */

/* base:allocation's status bits of an extent. */
static uint32_t bs_status(const struct extent *x)
{
  return x->flags & (NBD_STATE_HOLE | NBD_STATE_ZERO);
}

/* The payload of a BLOCK_STATUS chunk: compact, 32-bit descriptors, a
 * long extent cut into several; extended, BLOCK_STATUS_EXT ("only
 * NBD_REPLY_TYPE_BLOCK_STATUS_EXT for extended headers"), one 64-bit
 * descriptor per extent and their count.  At most ex->max descriptors
 * either way (2^20, master proto.md "SHOULD NOT send more than 2^20"). */
static void put_block_status(struct wire_buf *b, const struct extents *ex,
                             bool ext)
{
  const uint32_t ctx = 1;                /* base:allocation's id */
  size_t ndesc = 0;
  if (ext) {
    size_t n = ex->n < ex->max ? ex->n : ex->max;
    wire_put_block_status_ext_hdr(b, ctx, (uint32_t)n);
    for (size_t i = 0; i < n; i++)
      wire_put_block_desc_ext(b, ex->v[i].length, bs_status(&ex->v[i]));
    return;
  }
  wire_put_block_status_ctx(b, ctx);
  for (size_t i = 0; i < ex->n && ndesc < ex->max; i++)
    ndesc += wire_put_block_desc(b, ex->v[i].length, bs_status(&ex->v[i]),
                                 ex->max - ndesc);
}

/* For base:allocation, at most 2^20 descriptors, lengths in 64 bits
 * until encoded (docs/security.md 15).  The effect length is 64 bits
 * under extended headers: one request may cover a whole export. */
static void cmd_block_status(struct req *q)
{
  const struct nbd_req *r = &q->r;
  struct backend *be = q->c->exp->be;
  struct extents *ex = &q->ex;
  struct wire_reply_to to = reply_to(q);
  extents_init(ex, r->offset, r->offset + r->count,
               r->flags & NBD_CMD_FLAG_REQ_ONE ? 1
                                               : NBD_MAX_BLOCK_STATUS_DESCS);
  int rc = backend_extents(be, r->count, r->offset, ex);
  if (rc == -1 || ex->n == 0) {
    xmit_send_error(q, rc == -1 ? errno : EIO, "block status");
    return;
  }
  struct wire_buf b;
  wire_buf_init(&b);
  put_block_status(&b, ex, to.ext);
  if (b.oom) {
    wire_buf_free(&b);
    xmit_send_error(q, ENOMEM, "block status");
    return;
  }
  size_t hlen = wire_chunk_hdr_len(to.ext);
  struct reply *rp = reply_new(r, 2, hlen);
  if (rp) {
    wire_encode_chunk(reply_hdr(rp, hlen), &to, NBD_REPLY_FLAG_DONE,
                      to.ext ? NBD_REPLY_TYPE_BLOCK_STATUS_EXT
                             : NBD_REPLY_TYPE_BLOCK_STATUS, b.len);
    reply_data(rp, b.data, b.len);
    reply_own(rp, b.data);       /* the reply frees the descriptors */
  }
  else
    wire_buf_free(&b);
  req_reply(q, rp, 0);
}

/* ---- the rest: one backend request each ---- */

static const enum backend_op cmd_ops[] = {
  [NBD_CMD_WRITE] = BACKEND_OP_WRITE, [NBD_CMD_FLUSH] = BACKEND_OP_FLUSH,
  [NBD_CMD_TRIM] = BACKEND_OP_TRIM, [NBD_CMD_WRITE_ZEROES] = BACKEND_OP_ZERO,
  [NBD_CMD_CACHE] = BACKEND_OP_CACHE,
};

/* The layer's flags for a request's NBD flags. */
static unsigned backend_flags(const struct req *q)
{
  const struct nbd_req *r = &q->r;
  unsigned fl = 0;
  if (r->flags & NBD_CMD_FLAG_FUA)
    fl |= BACKEND_FUA;
  if (q->written)
    fl |= BACKEND_IN_PLACE;
  if (r->type == NBD_CMD_WRITE_ZEROES) {
    if (!(r->flags & NBD_CMD_FLAG_NO_HOLE))
      fl |= BACKEND_MAY_TRIM;
    if (r->flags & NBD_CMD_FLAG_FAST_ZERO)
      fl |= BACKEND_FAST;
  }
  return fl;
}

void xmit_req_start(void *arg)
{
  struct req *q = arg;
  const struct nbd_req *r = &q->r;

  switch (r->type) {
  case NBD_CMD_READ:
    cmd_read(q);
    return;
  case NBD_CMD_BLOCK_STATUS:
    cmd_block_status(q);
    req_free(q);
    return;
  case NBD_CMD_WRITE:
    if (q->written && q->write_err) {
      xmit_send_error(q, q->write_err, nbd_cmd_name(r->type));
      req_free(q);
      return;
    }
    break;
  }
  q->br = (struct backend_req){
    .op = cmd_ops[r->type], .flags = backend_flags(q), .offset = r->offset,
    .count = r->count, .buf = q->buf, .tag = q->c->exp->name,
    .done = cmd_done,
  };
  backend_submit(q->c->exp->be, &q->br);
}
