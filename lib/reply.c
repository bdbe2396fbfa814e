/* libsnbd, middle layer: the reader thread (started by tx.c).  It reads
 * every reply, checks it against the request it answers before using a
 * byte of it (docs/security.md 23-25; doc/proto.md "Simple reply
 * message", "Structured reply chunk message", "Structured reply types"),
 * and completes commands through the in-flight table (inflight.c).  Any
 * reply that breaks the protocol ends the connection: the stream can no
 * longer be trusted to be in step. */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cleanup.h"
#include "internal.h"
#include "wire.h"

/* Error chunks: u32 error, u16 message length, message, and for
 * ERROR_OFFSET a u64 offset.  Anything longer is refused. */
#define MAX_ERROR_CHUNK (6 + NBD_MAX_STRING + 8)
/* The longest extended reply payload accepted: no READ part is larger
 * than 64 MiB, plus OFFSET_DATA's offset ("a client MAY initiate hard
 * disconnect if a server's reply length is unexpectedly large"); a
 * BLOCK_STATUS_EXT chunk of 2^20 descriptors is 16 MiB. */
#define MAX_EXT_REPLY ((uint64_t)NBD_MAX_PAYLOAD + WIRE_OFFSET_DATA_HDR)

static int reply_errno(uint32_t e)
{
  switch (e) {
  case NBD_EPERM: return EPERM;
  case NBD_EIO: return EIO;
  case NBD_ENOMEM: return ENOMEM;
  case NBD_EINVAL: return EINVAL;
  case NBD_ENOSPC: return ENOSPC;
  case NBD_EOVERFLOW: return EOVERFLOW;
  case NBD_ENOTSUP: return ENOTSUP;
  case NBD_ESHUTDOWN: return ESHUTDOWN;
  default: return EINVAL;   /* doc/proto.md "Error values" */
  }
}

/* A protocol violation: the connection ends. */
static int fatal(int err, const char *fmt, ...)
  __attribute__((format(printf, 2, 3)));
static int fatal(int err, const char *fmt, ...)
{
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  set_error_at("libsnbd", err, "%s", msg);
  return -1;
}

/* With a request timeout (snbd_set_request_timeout): wait until the
 * server sends something.  Before a reply (begun false) the connection
 * ends once commands in flight have had no reply for the timeout; inside
 * one, once the server has sent nothing for the timeout.  The reader
 * polls the socket rather than setting the transport's deadline, which
 * the senders share. */
static int await_data(struct snbd_handle *h, bool begun)
{
  int64_t limit = (int64_t)h->req_timeout * 1000000000;
  if (!limit)
    return 0;
  while (transport_pending(h->t) == 0) {
    struct pollfd p = { .fd = h->t->fd, .events = POLLIN };
    int r = poll(&p, 1, (int)(h->req_timeout * 1000));
    if (r != 0)
      break;                    /* readable, or an error recv will see */
    if (begun)
      return fatal(ETIMEDOUT, "the server sent nothing for %u s in the "
                   "middle of a reply (request timeout)", h->req_timeout);
    pthread_mutex_lock(&h->lock);
    bool stalled = h->nr_reqs > 0 && monotonic_ns() - h->last_heard >= limit;
    pthread_mutex_unlock(&h->lock);
    if (stalled)
      return fatal(ETIMEDOUT, "no reply from the server for %u s (request "
                   "timeout)", h->req_timeout);
  }
  if (!begun) {
    pthread_mutex_lock(&h->lock);
    h->last_heard = monotonic_ns();
    pthread_mutex_unlock(&h->lock);
  }
  return 0;
}

static int read_or_fatal(struct snbd_handle *h, void *buf, size_t len)
{
  int e = 0;
  for (size_t got = 0; got < len && !e;) {
    if (await_data(h, true) == -1)
      return -1;
    ssize_t n = transport_recv(h->t, (char *)buf + got, len - got);
    if (n > 0)
      got += (size_t)n;
    else
      e = n == 0 ? ECONNRESET : errno == EINTR ? 0 : errno;
  }
  if (e == ECONNRESET)
    return fatal(e, "the server closed the connection in the middle of a "
                 "reply");
  if (e)
    return fatal(e, "reading a reply: %s", strerror(e));
  return 0;
}

/* ---- Completing requests ---- */

static void req_error(struct snbd_handle *h, struct req *r, int err,
                      const char *fmt, ...)
  __attribute__((format(printf, 4, 5)));
static void req_error(struct snbd_handle *h, struct req *r, int err,
                      const char *fmt, ...)
{
  char msg[900];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  pthread_mutex_lock(&h->lock);
  r->failed = true;
  inflight_op_error(r->op, err, "%s (offset %llu, length %" PRIu64 "): %s",
                    nbd_cmd_name(r->type), (unsigned long long)r->offset,
                    r->count, msg);
  if (err == ESHUTDOWN)
    h->server_shutdown = true;
  pthread_mutex_unlock(&h->lock);
}

/* The server's error, named (doc/proto.md "Error values"), with its
 * message quoted. */
static void server_error(struct snbd_handle *h, struct req *r, uint32_t e,
                         const uint8_t *msg, size_t msglen)
{
  char q[NBD_MAX_STRING / 8];
  quote_bytes(q, sizeof q, msg, msglen);
  if (e == 0) {
    req_error(h, r, EPROTO, "the server sent an error chunk with error 0%s%s%s",
              msglen ? ": \"" : "", q, msglen ? "\"" : "");
    return;
  }
  int err = reply_errno(e);
  req_error(h, r, err, "the server replied %s (%s)%s%s%s", nbd_err_name(e),
            strerror(err), msglen ? ": \"" : "", q, msglen ? "\"" : "");
}

static void finish(struct snbd_handle *h, struct req *r)
{
  pthread_mutex_lock(&h->lock);
  inflight_req_done(h, r);
  pthread_mutex_unlock(&h->lock);
  inflight_complete_ready(h);
}

static struct req *find(struct snbd_handle *h, uint64_t cookie)
{
  pthread_mutex_lock(&h->lock);
  struct req *r = inflight_find_req(h, cookie);
  pthread_mutex_unlock(&h->lock);
  if (!r)
    fatal(EPROTO, "the server replied to cookie %llu, which is not in "
          "flight", (unsigned long long)cookie);
  return r;
}

/* ---- Simple replies ---- */

static int simple_reply(struct snbd_handle *h, const uint8_t hdr[16])
{
  uint32_t e;
  uint64_t cookie;
  wire_decode_simple_reply(hdr, &e, &cookie);
  struct req *r = find(h, cookie);
  if (!r)
    return -1;
  /* With structured replies a READ gets a structured reply, always: a
   * simple one would leave us guessing whether data follows. */
  if (h->sr && r->type == NBD_CMD_READ)
    return fatal(EPROTO, "the server sent a simple reply to NBD_CMD_READ "
                 "although structured replies were negotiated");
  if (e != 0)
    server_error(h, r, e, NULL, 0);
  else if (r->type == NBD_CMD_READ) {
    if (read_or_fatal(h, r->buf, r->count) == -1)
      return -1;
  }
  else if (r->type == NBD_CMD_BLOCK_STATUS)
    req_error(h, r, EPROTO, "the server sent no block status");
  finish(h, r);
  return 0;
}

/* ---- Structured replies ---- */

/* [off, off+len) inside the request, computed without overflow. */
static bool in_request(const struct req *r, uint64_t off, uint64_t len)
{
  return len > 0 && off >= r->offset && len <= r->count &&
         off - r->offset <= r->count - len;
}

static int not_allowed(const struct req *r, const struct nbd_chunk_hdr *c)
{
  return fatal(EPROTO, "the server sent a %s chunk in reply to %s",
               nbd_reply_type_name(c->type), nbd_cmd_name(r->type));
}

static int content(struct snbd_handle *h, struct req *r, uint64_t off,
                   uint64_t len)
{
  if (!in_request(r, off, len))
    return fatal(EPROTO, "the server sent data for offset %llu length %llu, "
                 "outside the read of offset %llu length %" PRIu64,
                 (unsigned long long)off, (unsigned long long)len,
                 (unsigned long long)r->offset, r->count);
  if ((r->flags & NBD_CMD_FLAG_DF) && r->content_chunks > 0)
    return fatal(EPROTO, "the server fragmented a read sent with "
                 "NBD_CMD_FLAG_DF");
  if (cover_add(&r->cover, off, off + len) == -1)
    return fatal(EPROTO, "the server sent overlapping (or too many) data "
                 "chunks at offset %llu", (unsigned long long)off);
  (void)h;
  r->covered += len;
  r->content_chunks++;
  return 0;
}

static int offset_data(struct snbd_handle *h, struct req *r,
                       const struct nbd_chunk_hdr *c)
{
  uint8_t b[WIRE_OFFSET_DATA_HDR];
  struct wire_offset_chunk o;
  if (r->type != NBD_CMD_READ)
    return not_allowed(r, c);
  if (!wire_chunk_length_ok(c->type, c->length))
    return fatal(EPROTO, "NBD_REPLY_TYPE_OFFSET_DATA of length %" PRIu64, c->length);
  if (read_or_fatal(h, b, sizeof b) == -1)
    return -1;
  wire_decode_offset_data(b, sizeof b, c->length, &o);
  if (content(h, r, o.offset, o.length) == -1)
    return -1;
  return read_or_fatal(h, r->buf + (o.offset - r->offset), o.length);
}

static int offset_hole(struct snbd_handle *h, struct req *r,
                       const struct nbd_chunk_hdr *c)
{
  uint8_t b[WIRE_OFFSET_HOLE_PAYLOAD];
  struct wire_offset_chunk o;
  if (r->type != NBD_CMD_READ)
    return not_allowed(r, c);
  if (!wire_chunk_length_ok(c->type, c->length))
    return fatal(EPROTO, "NBD_REPLY_TYPE_OFFSET_HOLE of length %" PRIu64, c->length);
  if (read_or_fatal(h, b, sizeof b) == -1)
    return -1;
  wire_decode_offset_hole(b, sizeof b, &o);
  if (content(h, r, o.offset, o.length) == -1)
    return -1;
  memset(r->buf + (o.offset - r->offset), 0, o.length);
  return 0;
}

/* Reads k (at most DESC_BATCH) descriptors of the chunk's type (32-bit,
 * or BLOCK_STATUS_EXT's 64-bit ones) into w. */
enum { DESC_BATCH = 256 };
static int read_descs(struct snbd_handle *h, bool ext64, uint8_t *b,
                      struct wire_extent64 *w, size_t k)
{
  size_t one = ext64 ? sizeof(struct nbd_block_descriptor_ext)
                     : sizeof(struct nbd_block_descriptor);
  if (read_or_fatal(h, b, k * one) == -1)
    return -1;
  if (ext64) {
    wire_decode_block_descs_ext(b, k * one, w, k);
    return 0;
  }
  struct wire_extent w32[DESC_BATCH];
  wire_decode_block_descs(b, k * one, w32, k);
  for (size_t j = 0; j < k; j++)
    w[j] = (struct wire_extent64){ w32[j].length, w32[j].flags };
  return 0;
}

/* Reads n descriptors; checks them (doc/proto.md NBD_REPLY_TYPE_BLOCK_STATUS:
 * lengths nonzero; with REQ_ONE one extent within the request; else all
 * but the last inside the request; in a base: context the high 32 bits
 * of a 64-bit status "MUST be all zeroes"). */
static int read_extents(struct snbd_handle *h, struct req *r, bool ext64,
                        bool base, struct snbd_extent *ext, size_t n)
{
  uint8_t b[DESC_BATCH * sizeof(struct nbd_block_descriptor_ext)];
  struct wire_extent64 w[DESC_BATCH];
  uint64_t sum = 0;
  for (size_t i = 0; i < n;) {
    size_t k = n - i < DESC_BATCH ? n - i : DESC_BATCH;
    if (read_descs(h, ext64, b, w, k) == -1)
      return -1;
    for (size_t j = 0; j < k; j++, i++) {
      if (w[j].length == 0)
        return fatal(EPROTO, "the server sent an extent of length 0");
      if (i + 1 < n && (sum += w[j].length) >= r->count)
        return fatal(EPROTO, "the server sent extents past the end of the "
                     "block status request");
      if (base && w[j].flags > UINT32_MAX)
        return fatal(EPROTO, "the server sent a base: status with its high "
                     "32 bits set");
      ext[i].length = w[j].length;
      ext[i].flags = (uint32_t)w[j].flags;
    }
  }
  if ((r->flags & NBD_CMD_FLAG_REQ_ONE) &&
      (n != 1 || ext[0].length > r->count))
    return fatal(EPROTO, "the server ignored NBD_CMD_FLAG_REQ_ONE");
  return 0;
}

/* BLOCK_STATUS, or under extended headers BLOCK_STATUS_EXT ("only
 * NBD_REPLY_TYPE_BLOCK_STATUS for structured replies, and only
 * NBD_REPLY_TYPE_BLOCK_STATUS_EXT for extended headers"). */
static int block_status(struct snbd_handle *h, struct req *r,
                        const struct nbd_chunk_hdr *c)
{
  bool ext64 = c->type == NBD_REPLY_TYPE_BLOCK_STATUS_EXT;
  if (r->type != NBD_CMD_BLOCK_STATUS)
    return not_allowed(r, c);
  if (ext64 != h->eh)
    return fatal(EPROTO, "the server sent %s %s extended headers",
                 nbd_reply_type_name(c->type), h->eh ? "under" : "without");
  if (!wire_chunk_length_ok(c->type, c->length))
    return fatal(EPROTO, "%s of length %" PRIu64,
                 nbd_reply_type_name(c->type), c->length);
  uint8_t b[WIRE_BLOCK_STATUS_EXT_HDR];
  uint32_t id;
  size_t n;
  size_t hl = ext64 ? WIRE_BLOCK_STATUS_EXT_HDR : WIRE_BLOCK_STATUS_HDR;
  if (read_or_fatal(h, b, hl) == -1)
    return -1;
  if (ext64 && !wire_decode_block_status_ext(b, hl, c->length, &id, &n))
    return fatal(EPROTO, "NBD_REPLY_TYPE_BLOCK_STATUS_EXT whose descriptor "
                 "count disagrees with its length %" PRIu64, c->length);
  if (!ext64)
    wire_decode_block_status(b, hl, c->length, &id, &n);
  int i = 0;
  while (i < h->nr_ctx && h->ctx[i].id != id)
    i++;
  if (i == h->nr_ctx || (r->ctx_seen & (1u << i)))
    return fatal(EPROTO, "the server sent block status for metadata "
                 "context id %u, %s", id, i == h->nr_ctx ? "which was never "
                 "negotiated" : "twice in one reply");
  r->ctx_seen |= 1u << i;
  CLEANUP_FREE struct snbd_extent *ext = malloc(n * sizeof *ext);
  if (!ext)
    return fatal(ENOMEM, "out of memory for %zu extents", n);
  if (read_extents(h, r, ext64, strncmp(h->ctx[i].name, "base:", 5) == 0,
                   ext, n) == -1)
    return -1;
  struct op *op = r->op;
  if (!r->failed && op->extent_cb) {
    int err = 0;
    if (op->extent_cb(op->extent_user_data, h->ctx[i].name, r->offset, ext,
                      n, &err) < 0)
      req_error(h, r, err ? err : EIO, "the extent callback failed");
  }
  return 0;
}

/* Error chunks (doc/proto.md: u32 error, u16 message length, message,
 * then type-specific fields).  An unknown error type fails the command
 * but keeps the connection, as long as its lengths add up. */
static int error_chunk(struct snbd_handle *h, struct req *r,
                       const struct nbd_chunk_hdr *c)
{
  uint8_t b[MAX_ERROR_CHUNK];
  struct wire_error_chunk e;
  uint64_t off;
  if (!wire_chunk_length_ok(c->type, c->length) ||
      c->length > MAX_ERROR_CHUNK)
    return fatal(EPROTO, "%s chunk of length %" PRIu64, nbd_reply_type_name(c->type),
                 c->length);
  if (read_or_fatal(h, b, c->length) == -1)
    return -1;
  if (!wire_decode_error_chunk(b, c->length, &e))
    return fatal(EPROTO, "the server's error message (%zu bytes) does not "
                 "fit its %" PRIu64 "-byte chunk", e.msg.len, c->length);
  if (c->type == NBD_REPLY_TYPE_ERROR && e.rest.len != 0)
    return fatal(EPROTO, "NBD_REPLY_TYPE_ERROR with %zu extra bytes",
                 e.rest.len);
  if (c->type == NBD_REPLY_TYPE_ERROR_OFFSET) {
    if (!wire_decode_error_offset(&e, &off))
      return fatal(EPROTO, "NBD_REPLY_TYPE_ERROR_OFFSET of length %" PRIu64,
                   c->length);
    if (r->type == NBD_CMD_FLUSH)
      return not_allowed(r, c);
    if (!in_request(r, off, 1))
      return fatal(EPROTO, "the server reported an error at offset %llu, "
                   "outside the request", (unsigned long long)off);
  }
  server_error(h, r, e.error, e.msg.p, e.msg.len);
  return 0;
}

static int chunk_done(struct snbd_handle *h, struct req *r)
{
  if (!r->failed && r->type == NBD_CMD_READ && r->covered != r->count)
    req_error(h, r, EIO, "the server reported success after sending %llu of "
              "%" PRIu64 " bytes", (unsigned long long)r->covered, r->count);
  if (!r->failed && r->type == NBD_CMD_BLOCK_STATUS &&
      r->ctx_seen != (1u << h->nr_ctx) - 1)
    req_error(h, r, EPROTO, "the server did not send block status for every "
              "metadata context");
  finish(h, r);
  return 0;
}

/* One chunk of a structured or extended reply to r, its header read. */
static int chunk(struct snbd_handle *h, struct req *r,
                 const struct nbd_chunk_hdr *c)
{
  int rc;
  switch (c->type) {
  case NBD_REPLY_TYPE_NONE:
    if (!wire_chunk_length_ok(c->type, c->length) ||
        !(c->flags & NBD_REPLY_FLAG_DONE))
      return fatal(EPROTO, "NBD_REPLY_TYPE_NONE must be empty and final");
    rc = 0;
    break;
  case NBD_REPLY_TYPE_OFFSET_DATA: rc = offset_data(h, r, c); break;
  case NBD_REPLY_TYPE_OFFSET_HOLE: rc = offset_hole(h, r, c); break;
  case NBD_REPLY_TYPE_BLOCK_STATUS:
  case NBD_REPLY_TYPE_BLOCK_STATUS_EXT: rc = block_status(h, r, c); break;
  default:
    if (!NBD_REPLY_TYPE_IS_ERR(c->type))
      return fatal(EPROTO, "the server sent a chunk of unknown type %u",
                   c->type);
    rc = error_chunk(h, r, c);
  }
  if (rc == 0 && (c->flags & NBD_REPLY_FLAG_DONE))
    rc = chunk_done(h, r);
  return rc;
}

/* The first bytes of a chunk, as long as a simple reply, are read; the
 * rest of its header (hlen bytes in all) follows. */
static int rest_of_header(struct snbd_handle *h, uint8_t *hdr,
                          const uint8_t first[16], size_t hlen)
{
  const size_t have = sizeof(struct nbd_simple_reply);
  memcpy(hdr, first, have);
  return read_or_fatal(h, hdr + have, hlen - have);
}

static int structured_reply(struct snbd_handle *h, const uint8_t first[16])
{
  uint8_t hdr[sizeof(struct nbd_structured_reply)];
  if (rest_of_header(h, hdr, first, sizeof hdr) == -1)
    return -1;
  struct nbd_chunk_hdr c;
  wire_decode_chunk_hdr(hdr, &c);
  if (!h->sr)
    return fatal(EPROTO, "the server sent a structured reply, which was "
                 "never negotiated");
  struct req *r = find(h, c.cookie);
  return r ? chunk(h, r, &c) : -1;
}

/* proto.md "Extended reply chunk message": the offset "MUST match the
 * offset of the client's request"; the length is 64 bits but "a client
 * MAY initiate hard disconnect if a server's reply length is
 * unexpectedly large". */
static int extended_reply(struct snbd_handle *h, const uint8_t first[16])
{
  uint8_t hdr[sizeof(struct nbd_extended_reply)];
  if (rest_of_header(h, hdr, first, sizeof hdr) == -1)
    return -1;
  struct nbd_chunk_hdr c;
  wire_decode_ext_chunk_hdr(hdr, &c);
  struct req *r = find(h, c.cookie);
  if (!r)
    return -1;
  if (c.offset != r->offset)
    return fatal(EPROTO, "the server's reply to offset %llu says offset "
                 "%llu", (unsigned long long)r->offset,
                 (unsigned long long)c.offset);
  if (c.length > MAX_EXT_REPLY)
    return fatal(EPROTO, "the server sent a reply of %" PRIu64 " bytes, "
                 "above the maximum payload", c.length);
  return chunk(h, r, &c);
}

/* Which reply comes next, by its magic, which must be the mode's: under
 * extended headers "all server replies MUST use an extended reply; the
 * server MUST NOT use simple replies even when there is no payload". */
static int dispatch(struct snbd_handle *h, const uint8_t hdr[16])
{
  uint32_t magic = wire_peek_magic32(hdr);
  if (h->eh && magic == NBD_EXTENDED_REPLY_MAGIC)
    return extended_reply(h, hdr);
  if (h->eh && (magic == NBD_SIMPLE_REPLY_MAGIC ||
                magic == NBD_STRUCTURED_REPLY_MAGIC))
    return fatal(EPROTO, "the server sent a %s reply under extended "
                 "headers", magic == NBD_SIMPLE_REPLY_MAGIC ? "simple"
                                                            : "structured");
  if (!h->eh && magic == NBD_SIMPLE_REPLY_MAGIC)
    return simple_reply(h, hdr);
  if (!h->eh && magic == NBD_STRUCTURED_REPLY_MAGIC)
    return structured_reply(h, hdr);
  if (magic == NBD_EXTENDED_REPLY_MAGIC)
    return fatal(EPROTO, "the server sent an extended reply, which was "
                 "never negotiated");
  return fatal(EPROTO, "the server sent a reply with unknown magic 0x%08x",
               magic);
}

/* 0: one reply handled; 1: clean end of stream; -1: fatal error. */
static int read_one(struct snbd_handle *h)
{
  uint8_t hdr[sizeof(struct nbd_simple_reply)];
  ssize_t n;
  if (await_data(h, false) == -1)
    return -1;
  do
    n = transport_recv(h->t, hdr, sizeof hdr);
  while (n == -1 && errno == EINTR);
  if (n == 0)
    return 1;
  if (n < 0)
    return fatal(errno, "reading a reply: %s", strerror(errno));
  if ((size_t)n < sizeof hdr &&
      read_or_fatal(h, hdr + n, sizeof hdr - (size_t)n) == -1)
    return -1;
  return dispatch(h, hdr);
}

void *reply_reader(void *arg)
{
  struct snbd_handle *h = arg;
  int rc;
  while ((rc = read_one(h)) == 0)
    ;
  pthread_mutex_lock(&h->lock);
  /* After NBD_CMD_DISC, EOF is expected; over TLS a server that closes
   * without close_notify shows up as ECONNRESET. */
  if ((rc == 1 || get_errno() == ECONNRESET) &&
      h->state == H_DISCONNECTING && h->nr_reqs == 0)
    h_set_dead(h, ENOTCONN, "the connection was shut down");
  else if (h->state != H_DEAD) {
    if (rc == 1)
      fatal(ECONNRESET, "the server closed the connection");
    const char *msg = get_error();
    if (strncmp(msg, "libsnbd: ", 9) == 0)
      msg += 9;         /* fatal()'s prefix; callers add their own */
    h_set_dead(h, get_errno(), msg);
  }
  shutdown(h->t->fd, SHUT_RDWR);   /* senders fail fast from now on */
  inflight_fail_all(h);
  pthread_mutex_unlock(&h->lock);
  inflight_complete_ready(h);
  return NULL;
}
