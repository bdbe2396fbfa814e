/* fuzz: the reply oracle of fuzz_request (see check_replies.h).
 * Spec: doc/proto.md of the NBD project, "Structured reply chunk message",
 * "Structured reply types", "Request types", "Error values". */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check_replies.h"
#include "snbd/protocol.h"

#define MODEL_MAX (1024 * 1024)      /* bytes of the export modelled */
#define MAX_OPT_PAYLOAD 65536

struct creq {
  uint64_t cookie, offset;
  uint64_t count;                   /* BLOCK_STATUS's payload form: the
                                       effect length from the payload */
  uint16_t type, flags;
  const uint8_t *payload;           /* WRITE data, inside the input */
  bool done, failed, started;
  unsigned content_chunks;
  unsigned ctx_chunks;
  uint64_t covered;
  struct ivl { uint64_t start, end; } *cov;
  size_t ncov, capcov;
};

struct checker {
  struct peer *p;
  const struct check_params *cp;
  struct creq *reqs;
  size_t nreqs;
  bool structured, meta_active;
  bool ext;                         /* extended headers agreed */
  uint32_t meta_id;
  uint64_t size;
  uint16_t eflags;
  uint64_t msize;                   /* bytes of the export modelled */
  bool gave_up;                     /* ambiguous cookies: stop checking */
  struct creq cut;                  /* a WRITE whose payload the input cuts
                                       short (count 0: none) */
};

/* ---- helpers ---- */

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const uint8_t *p)
{
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 |
         p[3];
}
static uint64_t be64(const uint8_t *p)
{
  return (uint64_t)be32(p) << 32 | be32(p + 4);
}

__attribute__((format(printf, 2, 3), noreturn))
static void violation(const struct creq *r, const char *fmt, ...)
{
  va_list ap;
  fprintf(stderr, "fuzz_request: the server broke the protocol: ");
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  if (r)
    fprintf(stderr, " [request type %u flags 0x%x cookie %llu offset %llu "
            "count %llu]", r->type, r->flags, (unsigned long long)r->cookie,
            (unsigned long long)r->offset, (unsigned long long)r->count);
  fputc('\n', stderr);
  abort();
}

/* Exactly n bytes; false at a clean end of the stream or a hang-up. */
static bool rd(struct checker *k, void *buf, size_t n)
{
  if (peer_read(k->p, buf, n))
    return true;
  if (k->p->partial)
    violation(NULL, "the stream ends inside a message");
  return false;
}

static bool in_range(uint64_t off, uint64_t len, uint64_t start,
                     uint64_t count)
{
  return off >= start && len <= count && off - start <= count - len;
}

static bool known_error(uint32_t e)
{
  switch (e) {
  case NBD_EPERM: case NBD_EIO: case NBD_ENOMEM: case NBD_EINVAL:
  case NBD_ENOSPC: case NBD_EOVERFLOW: case NBD_ENOTSUP: case NBD_ESHUTDOWN:
    return true;
  default:
    return false;
  }
}

/* ---- the client's requests, from the input ---- */

static void add_request(struct checker *k, const struct creq *r, size_t *cap)
{
  if (k->nreqs == *cap) {
    *cap = *cap ? *cap * 2 : 64;
    k->reqs = realloc(k->reqs, *cap * sizeof *k->reqs);
    if (!k->reqs)
      abort();
  }
  k->reqs[k->nreqs++] = *r;
}

/* One request header at in (n bytes left): false at anything the server
 * stops at (too short, a magic not of the mode). */
static bool parse_header(const struct checker *k, const uint8_t *in,
                         size_t n, struct creq *r, size_t *hlen)
{
  *hlen = k->cp->extended ? 32 : 28;
  if (n < *hlen)
    return false;
  *r = (struct creq){
    .flags = be16(in + 4), .type = be16(in + 6), .cookie = be64(in + 8),
    .offset = be64(in + 16),
    .count = k->cp->extended ? be64(in + 24) : be32(in + 24),
  };
  return be32(in) == (k->cp->extended ? NBD_EXTENDED_REQUEST_MAGIC
                                      : NBD_REQUEST_MAGIC);
}

/* The bytes of payload after r's header (proto.md "Request message"). */
static uint64_t payload_len(const struct checker *k, const struct creq *r)
{
  if (k->cp->extended)
    return r->flags & NBD_CMD_FLAG_PAYLOAD_LEN ? r->count : 0;
  return r->type == NBD_CMD_WRITE ? r->count : 0;
}

static void parse_requests(struct checker *k)
{
  const uint8_t *in = k->cp->requests;
  size_t n = k->cp->nrequests, off = 0, cap = 0, hlen;
  struct creq r;
  while (parse_header(k, in + off, n - off, &r, &hlen)) {
    off += hlen;
    if (r.type == NBD_CMD_DISC)
      break;                        /* the server reads nothing after it */
    uint64_t plen = payload_len(k, &r);
    if (k->cp->extended && plen > NBD_MAX_PAYLOAD)
      break;                        /* hard disconnect, nothing read */
    if (plen > 0) {                 /* payload read or drained: no reply */
      if (n - off < plen) {         /* if it is cut short */
        if (r.type == NBD_CMD_WRITE)
          k->cut = r;
        break;
      }
      r.payload = in + off;
      off += plen;
    }
    /* The payload form of BLOCK_STATUS: the effect length is in it. */
    if (k->cp->extended && r.type == NBD_CMD_BLOCK_STATUS && plen >= 8)
      r.count = be64(r.payload);
    add_request(k, &r, &cap);
  }
}

/* The request a reply to cookie answers: the oldest one in flight.  Two
 * different requests in flight under one cookie cannot be told apart
 * (errors for invalid requests overtake valid ones): stop checking. */
static struct creq *match(struct checker *k, uint64_t cookie)
{
  struct creq *first = NULL;
  for (size_t i = 0; i < k->nreqs; i++) {
    struct creq *r = &k->reqs[i];
    if (r->done || r->cookie != cookie)
      continue;
    if (r->started)
      return r;
    if (!first)
      first = r;
    else if (r->type != first->type || r->flags != first->flags ||
             r->offset != first->offset || r->count != first->count) {
      k->gave_up = true;
      return NULL;
    }
  }
  if (!first)
    violation(NULL, "a reply to cookie %llu, which is not in flight",
              (unsigned long long)cookie);
  return first;
}

/* ---- the model of the export ---- */

/* model[o] is what byte o must read back as where known[o]; unknown bytes
 * are 0 in model, so "every known byte of a range is zero" is a memcmp.
 * The buffers live across runs (a fresh megabyte per run costs more page
 * faults than the server's work); dirty_lo/hi say what to reset. */
static uint8_t model[MODEL_MAX], known[MODEL_MAX];
static uint64_t dirty_lo = MODEL_MAX, dirty_hi;
static const uint8_t zeroes[65536];

static void model_reset(void)
{
  if (dirty_lo < dirty_hi) {
    memset(model + dirty_lo, 0, dirty_hi - dirty_lo);
    memset(known + dirty_lo, 1, dirty_hi - dirty_lo);
  }
  dirty_lo = MODEL_MAX;
  dirty_hi = 0;
}

static void model_set(struct checker *k, uint64_t off, uint64_t len,
                      const uint8_t *data, bool is_known)
{
  if (off >= k->msize)
    return;
  uint64_t n = len < k->msize - off ? len : k->msize - off;
  if (data && is_known)
    memcpy(model + off, data, n);
  else
    memset(model + off, 0, n);
  memset(known + off, is_known, n);
  if (off < dirty_lo)
    dirty_lo = off;
  if (off + n > dirty_hi)
    dirty_hi = off + n;
}

/* The first byte of [off, off+len) where data (NULL: zeroes) contradicts
 * the model, or -1. */
static int64_t model_diff(const struct checker *k, uint64_t off,
                          const uint8_t *data, uint64_t len)
{
  if (off >= k->msize)
    return -1;
  uint64_t n = len < k->msize - off ? len : k->msize - off;
  for (uint64_t done = 0; done < n;) {
    size_t m = n - done < sizeof zeroes ? (size_t)(n - done) : sizeof zeroes;
    const uint8_t *want = model + off + done;
    const uint8_t *got = data ? data + done : zeroes;
    if (memcmp(want, got, m) != 0)     /* slow path only on a difference */
      for (size_t i = 0; i < m; i++)
        if (known[off + done + i] && want[i] != got[i])
          return (int64_t)(off + done + i);
    done += m;
  }
  return -1;
}

static void model_check(struct checker *k, const struct creq *r,
                        uint64_t off, const uint8_t *data, size_t len)
{
  int64_t o = model_diff(k, off, data, len);
  if (o >= 0)
    violation(r, "byte %lld reads back as 0x%02x, but 0x%02x was written "
              "there", (long long)o, data[(uint64_t)o - off], model[o]);
}

/* Copies the model over the bytes of data ([off, off+len)) that q may
 * change. */
static void mask(const struct checker *k, const struct creq *q, uint64_t off,
                 uint8_t *data, size_t len)
{
  uint64_t end = off + len < k->msize ? off + len : k->msize;
  uint64_t qend = q->offset > UINT64_MAX - q->count ? UINT64_MAX
                  : q->offset + q->count;
  uint64_t lo = q->offset > off ? q->offset : off;
  uint64_t hi = qend < end ? qend : end;
  if (lo < hi)
    memcpy(data + (lo - off), model + lo, hi - lo);
}

/* With zero-copy reads (the file export: sendfile), a READ's bytes are
 * taken from the page cache as the socket takes them, so a WRITE,
 * WRITE_ZEROES or TRIM sent after the READ may already show in them: the
 * two were in flight together, and the spec lets a server process such
 * requests in any order.  So may the part that arrived of a WRITE whose
 * payload the input cuts short (it lands as it arrives, as a torn write
 * may).  Those bytes (only those) pass unchecked. */
static void mask_later_writes(const struct checker *k, const struct creq *r,
                              uint64_t off, uint8_t *data, size_t len)
{
  for (const struct creq *q = r + 1; q < k->reqs + k->nreqs; q++)
    if (q->type == NBD_CMD_WRITE || q->type == NBD_CMD_WRITE_ZEROES ||
        q->type == NBD_CMD_TRIM)
      mask(k, q, off, data, len);
  if (k->cut.count)
    mask(k, &k->cut, off, data, len);
}

/* The end of a write sent before r that covers byte o, when r may not
 * see it yet, or 0.  Behind the async filter a BLOCK_STATUS runs on the
 * worker pool while writes sent before it may still wait in the filter's
 * queue: the client sent them all without waiting, so the spec lets the
 * server answer from before the writes ("The server MAY process commands
 * out of order"), whichever reply arrives first. */
static uint64_t earlier_write_unordered(const struct checker *k,
                                        const struct creq *r, uint64_t o)
{
  if (!k->cp->unordered_status)
    return 0;
  for (const struct creq *q = k->reqs; q < r; q++)
    if ((q->type == NBD_CMD_WRITE || q->type == NBD_CMD_WRITE_ZEROES) &&
        in_range(o, 1, q->offset, q->count))
      return q->offset + q->count;
  return 0;
}

/* Checks that [off, off+len), which r says reads as zeroes, holds no
 * data written before r (but what r may not see yet). */
static void check_zero(const struct checker *k, const struct creq *r,
                       uint64_t off, uint64_t len, const char *what)
{
  uint64_t end = off + len < off ? UINT64_MAX : off + len;
  while (off < end) {
    int64_t o = model_diff(k, off, NULL, end - off);
    if (o < 0)
      return;
    uint64_t skip = earlier_write_unordered(k, r, (uint64_t)o);
    if (skip == 0)
      violation(r, "%s at %lld where data was written", what, (long long)o);
    off = skip;
  }
}

/* Reads len bytes of READ data for [off, off+len) and checks them. */
static bool read_data(struct checker *k, const struct creq *r, uint64_t off,
                      uint64_t len)
{
  uint8_t buf[65536];
  while (len > 0) {
    size_t n = len < sizeof buf ? (size_t)len : sizeof buf;
    if (!rd(k, buf, n))
      return false;
    if (k->cp->zero_copy_reads)
      mask_later_writes(k, r, off, buf, n);
    model_check(k, r, off, buf, n);
    off += n;
    len -= n;
  }
  return true;
}

/* A request is over: its effect on the export goes into the model. */
static void finish(struct checker *k, struct creq *r, bool ok)
{
  bool ranged = r->type != NBD_CMD_FLUSH;
  r->done = true;
  if (ok && ranged && r->count > 0 &&
      !in_range(r->offset, r->count, 0, k->size))
    violation(r, "success for a range outside the %llu-byte export",
              (unsigned long long)k->size);
  if (ok && r->type == NBD_CMD_BLOCK_STATUS && !k->meta_active)
    violation(r, "BLOCK_STATUS succeeded without a negotiated context");
  if (ok && r->type == NBD_CMD_READ && k->structured &&
      r->covered != r->count)
    violation(r, "READ succeeded after %llu of its bytes",
              (unsigned long long)r->covered);
  if (ok && r->type == NBD_CMD_BLOCK_STATUS && r->ctx_chunks != 1)
    violation(r, "BLOCK_STATUS succeeded with %u status chunks for one "
              "context", r->ctx_chunks);
  switch (r->type) {
  case NBD_CMD_WRITE:
    model_set(k, r->offset, r->count, r->payload, ok);
    break;
  case NBD_CMD_WRITE_ZEROES:
    model_set(k, r->offset, r->count, NULL, ok);
    break;
  case NBD_CMD_TRIM:         /* contents unspecified afterwards */
    if (ok)
      model_set(k, r->offset, r->count, NULL, false);
    break;
  }
  if (!ok && (r->type == NBD_CMD_WRITE || r->type == NBD_CMD_WRITE_ZEROES ||
              r->type == NBD_CMD_TRIM) && in_range(r->offset, r->count, 0,
                                                    k->size))
    model_set(k, r->offset, r->count, NULL, false);   /* maybe partial */
  free(r->cov);
  r->cov = NULL;
}

/* ---- simple replies ---- */

static bool simple_reply(struct checker *k, const uint8_t h[16])
{
  uint32_t err = be32(h + 4);
  struct creq *r = match(k, be64(h + 8));
  if (!r)
    return false;
  if (err && !known_error(err))
    violation(r, "error value %u is not an NBD error", err);
  if (k->structured && r->type == NBD_CMD_READ)
    violation(r, "a simple reply to READ with structured replies on");
  if (r->type == NBD_CMD_READ && err == 0 &&
      !read_data(k, r, r->offset, r->count))
    return false;
  finish(k, r, err == 0);
  return true;
}

/* ---- structured replies ---- */

/* A content chunk [off, off+len) of READ r: inside, not overlapping. */
static void content(struct creq *r, uint64_t off, uint64_t len)
{
  if (len == 0 || !in_range(off, len, r->offset, r->count))
    violation(r, "a content chunk at %llu+%llu outside the request",
              (unsigned long long)off, (unsigned long long)len);
  if ((r->flags & NBD_CMD_FLAG_DF) && r->content_chunks > 0)
    violation(r, "a second content chunk despite NBD_CMD_FLAG_DF");
  for (size_t i = 0; i < r->ncov; i++)
    if (off < r->cov[i].end && r->cov[i].start < off + len)
      violation(r, "content chunks overlap at %llu",
                (unsigned long long)off);
  if (r->ncov == r->capcov) {
    r->capcov = r->capcov ? 2 * r->capcov : 8;
    r->cov = realloc(r->cov, r->capcov * sizeof *r->cov);
    if (!r->cov)
      abort();
  }
  r->cov[r->ncov++] = (struct ivl){ off, off + len };
  r->covered += len;
  r->content_chunks++;
}

static bool chunk_data(struct checker *k, struct creq *r, uint32_t len)
{
  uint8_t b[8];
  if (r->type != NBD_CMD_READ || len < 9)
    violation(r, "OFFSET_DATA of length %u", len);
  if (!rd(k, b, 8))
    return false;
  uint64_t off = be64(b);
  content(r, off, len - 8u);
  return read_data(k, r, off, len - 8u);
}

static bool chunk_hole(struct checker *k, struct creq *r, uint32_t len)
{
  uint8_t b[12];
  if (r->type != NBD_CMD_READ || len != 12)
    violation(r, "OFFSET_HOLE of length %u", len);
  if (!rd(k, b, 12))
    return false;
  uint64_t off = be64(b);
  uint32_t hlen = be32(b + 8);
  content(r, off, hlen);
  if (r->flags & NBD_CMD_FLAG_DF)
    violation(r, "OFFSET_HOLE despite NBD_CMD_FLAG_DF");
  check_zero(k, r, off, hlen, "a hole");
  return true;
}

/* One status chunk: BLOCK_STATUS (u32 id, then u32 length and flags
 * descriptors) or, under extended headers, BLOCK_STATUS_EXT (u32 id, u32
 * count, then u64 length and status descriptors). */
static bool chunk_status(struct checker *k, struct creq *r, uint32_t len,
                         bool ext)
{
  const uint32_t hdr = ext ? 8 : 4, one = ext ? 16 : 8;
  uint8_t b[16];
  if (r->type != NBD_CMD_BLOCK_STATUS || len < hdr + one ||
      (len - hdr) % one != 0 ||
      (len - hdr) / one > NBD_MAX_BLOCK_STATUS_DESCS)
    violation(r, "status chunk of length %u", len);
  if (!rd(k, b, hdr))
    return false;
  uint32_t n = (len - hdr) / one;
  if (!k->meta_active || be32(b) != k->meta_id || (ext && be32(b + 4) != n))
    violation(r, "block status for context id %u (negotiated: %s %u), %u "
              "descriptors", be32(b), k->meta_active ? "yes" : "no",
              k->meta_id, n);
  r->ctx_chunks++;
  uint64_t off = r->offset;
  for (uint32_t i = 0; i < n; i++) {
    if (!rd(k, b, one))
      return false;
    uint64_t elen = ext ? be64(b) : be32(b);
    uint64_t flags = ext ? be64(b + 8) : be32(b + 4);
    if (elen == 0 || (flags & ~(uint64_t)(NBD_STATE_HOLE | NBD_STATE_ZERO)))
      violation(r, "extent %u: length %llu flags 0x%llx", i,
                (unsigned long long)elen, (unsigned long long)flags);
    if ((r->flags & NBD_CMD_FLAG_REQ_ONE) && (n != 1 || elen > r->count))
      violation(r, "%u extents despite REQ_ONE", n);
    if (i + 1 < n && (elen >= r->count || off - r->offset >= r->count - elen))
      violation(r, "extent %u of %u ends past the request", i, n);
    if (flags & NBD_STATE_ZERO)
      check_zero(k, r, off, elen, "an extent says zero");
    off += elen;
  }
  return true;
}

static bool chunk_error(struct checker *k, struct creq *r, uint16_t type,
                        uint32_t len)
{
  uint8_t b[6 + NBD_MAX_STRING + 8];
  if (len < 6 || len > sizeof b)
    violation(r, "error chunk of length %u", len);
  if (!rd(k, b, len))
    return false;
  uint32_t err = be32(b);
  uint16_t msglen = be16(b + 4);
  if (err == 0 || !known_error(err))
    violation(r, "error chunk with error value %u", err);
  if (msglen > len - 6u || msglen > NBD_MAX_STRING)
    violation(r, "error message of %u bytes in a %u-byte chunk", msglen, len);
  uint32_t rest = len - 6u - msglen;
  if (type == NBD_REPLY_TYPE_ERROR && rest != 0)
    violation(r, "NBD_REPLY_TYPE_ERROR with %u extra bytes", rest);
  if (type == NBD_REPLY_TYPE_ERROR_OFFSET &&
      (rest != 8 || r->type == NBD_CMD_FLUSH ||
       !in_range(be64(b + 6 + msglen), 1, r->offset, r->count)))
    violation(r, "ERROR_OFFSET malformed or outside the request");
  r->failed = true;
  return true;
}

/* One chunk to r, its header read (structured or extended). */
static bool chunk(struct checker *k, struct creq *r, uint16_t flags,
                  uint16_t type, uint32_t len)
{
  bool ok;
  r->started = true;
  switch (type) {
  case NBD_REPLY_TYPE_NONE:
    if (len != 0 || !(flags & NBD_REPLY_FLAG_DONE))
      violation(r, "NBD_REPLY_TYPE_NONE not empty and final");
    ok = true;
    break;
  case NBD_REPLY_TYPE_OFFSET_DATA: ok = chunk_data(k, r, len); break;
  case NBD_REPLY_TYPE_OFFSET_HOLE: ok = chunk_hole(k, r, len); break;
  case NBD_REPLY_TYPE_BLOCK_STATUS:
    if (k->ext)
      violation(r, "BLOCK_STATUS under extended headers");
    ok = chunk_status(k, r, len, false);
    break;
  case NBD_REPLY_TYPE_BLOCK_STATUS_EXT:
    if (!k->ext)
      violation(r, "BLOCK_STATUS_EXT without extended headers");
    ok = chunk_status(k, r, len, true);
    break;
  case NBD_REPLY_TYPE_ERROR:
  case NBD_REPLY_TYPE_ERROR_OFFSET: ok = chunk_error(k, r, type, len); break;
  default:
    violation(r, "chunk type %u", type);
  }
  if (ok && (flags & NBD_REPLY_FLAG_DONE))
    finish(k, r, !r->failed);
  return ok;
}

static bool structured_reply(struct checker *k, const uint8_t first[16])
{
  uint8_t h[20];
  memcpy(h, first, 16);
  if (!rd(k, h + 16, 4))
    return false;
  if (!k->structured || k->ext)
    violation(NULL, "a structured reply, %s", k->ext ? "under extended "
              "headers" : "never negotiated");
  struct creq *r = match(k, be64(h + 8));
  return r ? chunk(k, r, be16(h + 4), be16(h + 6), be32(h + 16)) : false;
}

/* "offset ... MUST match the offset of the client's request"; the length
 * is 64 bits but only ever a payload length (proto.md "Extended reply
 * chunk message"). */
static bool extended_reply(struct checker *k, const uint8_t first[16])
{
  uint8_t h[32];
  memcpy(h, first, 16);
  if (!rd(k, h + 16, 16))
    return false;
  if (!k->ext)
    violation(NULL, "an extended reply, never negotiated");
  struct creq *r = match(k, be64(h + 8));
  if (!r)
    return false;
  uint64_t off = be64(h + 16), len = be64(h + 24);
  if (off != r->offset)
    violation(r, "an extended reply with offset %llu",
              (unsigned long long)off);
  if (len > (uint64_t)NBD_MAX_PAYLOAD + 4096)
    violation(r, "an extended reply of %llu bytes", (unsigned long long)len);
  return chunk(k, r, be16(h + 4), be16(h + 6), (uint32_t)len);
}

/* ---- the handshake the harness sent ---- */

static bool opt_reply(struct checker *k, uint32_t opt, uint32_t *type,
                      uint8_t *buf, uint32_t *len)
{
  uint8_t h[20];
  if (!rd(k, h, 20))
    return false;
  *type = be32(h + 12);
  *len = be32(h + 16);
  if (be64(h) != NBD_REP_MAGIC || be32(h + 8) != opt)
    violation(NULL, "a bad reply header to option %u", opt);
  if (*len > MAX_OPT_PAYLOAD)
    violation(NULL, "a %u-byte reply to option %u", *len, opt);
  return rd(k, buf, *len);
}

static bool handshake(struct checker *k)
{
  static uint8_t buf[MAX_OPT_PAYLOAD];
  uint32_t type, len;
  const struct check_params *cp = k->cp;
  if (!rd(k, buf, 18))
    return false;
  if (be64(buf) != NBD_MAGIC || be64(buf + 8) != NBD_OPTS_MAGIC)
    violation(NULL, "a bad greeting");
  if (cp->structured) {
    if (!opt_reply(k, NBD_OPT_STRUCTURED_REPLY, &type, buf, &len))
      return false;
    if (type != NBD_REP_ACK || len != 0)
      violation(NULL, "structured replies refused (reply %u)", type);
    k->structured = true;
  }
  if (cp->extended) {
    if (!opt_reply(k, NBD_OPT_EXTENDED_HEADERS, &type, buf, &len))
      return false;
    if (type != NBD_REP_ACK || len != 0)
      violation(NULL, "extended headers refused (reply %u)", type);
    k->ext = k->structured = true;
  }
  if (cp->meta) {
    bool got = false;
    do {
      if (!opt_reply(k, NBD_OPT_SET_META_CONTEXT, &type, buf, &len))
        return false;
      if (type == NBD_REP_META_CONTEXT) {
        if (len != 4 + strlen(NBD_META_BASE_ALLOCATION) ||
            memcmp(buf + 4, NBD_META_BASE_ALLOCATION, len - 4) != 0 || got)
          violation(NULL, "a bad NBD_REP_META_CONTEXT");
        k->meta_id = be32(buf);
        got = true;
      }
      else if (type != NBD_REP_ACK && !NBD_REP_IS_ERR(type))
        violation(NULL, "reply %u to SET_META_CONTEXT", type);
    } while (type == NBD_REP_META_CONTEXT);
    if (got != (type == NBD_REP_ACK) || got != k->structured)
      violation(NULL, "SET_META_CONTEXT %s", got ? "chose a context without "
                "structured replies" : "failed with structured replies");
    k->meta_active = got;
  }
  if (cp->export_name) {
    size_t n = cp->no_zeroes ? 10 : 134;
    if (!rd(k, buf, n))
      return false;
    for (size_t i = 10; i < n; i++)
      if (buf[i])
        violation(NULL, "NBD_OPT_EXPORT_NAME reply padding not zero");
    k->size = be64(buf);
    k->eflags = be16(buf + 8);
    return true;
  }
  bool got_export = false;
  do {
    if (!opt_reply(k, NBD_OPT_GO, &type, buf, &len))
      return false;
    if (type == NBD_REP_INFO && len >= 2 && be16(buf) == NBD_INFO_EXPORT) {
      if (len != 12)
        violation(NULL, "NBD_INFO_EXPORT of length %u", len);
      k->size = be64(buf + 2);
      k->eflags = be16(buf + 10);
      got_export = true;
    }
    else if (type != NBD_REP_INFO && type != NBD_REP_ACK)
      violation(NULL, "GO failed (reply %u)", type);
  } while (type == NBD_REP_INFO);
  if (len != 0 || !got_export)
    violation(NULL, "GO acknowledged without NBD_INFO_EXPORT");
  return true;
}

/* ---- the reader ---- */

static void transmission(struct checker *k)
{
  uint8_t h[16];
  while (!k->gave_up) {
    if (!rd(k, h, 16)) {
      if (k->p->hung_up)
        return;
      for (size_t i = 0; i < k->nreqs; i++)
        if (!k->reqs[i].done)
          violation(&k->reqs[i], "no reply before the server closed");
      return;
    }
    uint32_t magic = be32(h);
    if (k->ext && magic != NBD_EXTENDED_REPLY_MAGIC)
      /* "the server MUST NOT use simple replies even when there is no
       * payload" */
      violation(NULL, "reply magic 0x%08x under extended headers", magic);
    bool more = magic == NBD_SIMPLE_REPLY_MAGIC ? simple_reply(k, h)
              : magic == NBD_STRUCTURED_REPLY_MAGIC ? structured_reply(k, h)
              : magic == NBD_EXTENDED_REPLY_MAGIC ? extended_reply(k, h)
              : (violation(NULL, "reply magic 0x%08x", magic), false);
    if (!more && !k->gave_up && !k->p->hung_up)
      violation(NULL, "the stream ends inside a reply");
    if (!more)
      return;
  }
}

void check_replies(struct peer *p, void *ud)
{
  struct checker k = { .p = p, .cp = ud };
  parse_requests(&k);
  static bool model_ready;
  if (!model_ready) {               /* a fresh memory export is zeroes */
    memset(known, 1, sizeof known);
    model_ready = true;
  }
  if (handshake(&k)) {
    k.msize = k.size < MODEL_MAX ? k.size : MODEL_MAX;
    transmission(&k);
  }
  else if (!p->hung_up)
    violation(NULL, "the server closed during a valid handshake");
  /* Whatever is left (after giving up) is drained so the server can end. */
  peer_discard_rest(p);
  for (size_t i = 0; i < k.nreqs; i++)
    free(k.reqs[i].cov);
  free(k.reqs);
  model_reset();
}
