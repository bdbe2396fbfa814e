/* snbd: the wire codec (see wire.h).  Pure: no I/O. */
#include <endian.h>
#include <stdlib.h>
#include <string.h>

#include "wire.h"

bool wire_get_bytes(struct wire_cursor *c, void *dst, size_t len)
{
  if (c->bad || c->left < len) {
    c->bad = true;
    memset(dst, 0, len);
    return false;
  }
  memcpy(dst, c->p, len);
  c->p += len;
  c->left -= len;
  return true;
}

bool wire_get_u16(struct wire_cursor *c, uint16_t *v)
{
  uint16_t x;
  bool ok = wire_get_bytes(c, &x, sizeof x);
  *v = be16toh(x);
  return ok;
}

bool wire_get_u32(struct wire_cursor *c, uint32_t *v)
{
  uint32_t x;
  bool ok = wire_get_bytes(c, &x, sizeof x);
  *v = be32toh(x);
  return ok;
}

bool wire_get_u64(struct wire_cursor *c, uint64_t *v)
{
  uint64_t x;
  bool ok = wire_get_bytes(c, &x, sizeof x);
  *v = be64toh(x);
  return ok;
}

bool wire_get_string(struct wire_cursor *c, const char **s, uint32_t *len,
                     uint32_t maxlen)
{
  uint32_t n;
  *s = NULL;
  *len = 0;
  if (!wire_get_u32(c, &n))
    return false;
  if (n > c->left || n > maxlen) {
    c->bad = true;
    return false;
  }
  *s = (const char *)c->p;
  *len = n;
  c->p += n;
  c->left -= n;
  return true;
}

void wire_buf_init(struct wire_buf *b)
{
  memset(b, 0, sizeof *b);
}

void wire_buf_free(struct wire_buf *b)
{
  free(b->data);
  wire_buf_init(b);
}

void wire_buf_reset(struct wire_buf *b)
{
  b->len = 0;
  b->oom = false;
}

void wire_put_bytes(struct wire_buf *b, const void *p, size_t len)
{
  if (b->oom)
    return;
  if (len > b->cap - b->len) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len < len) {
      if (cap > SIZE_MAX / 2) {
        b->oom = true;
        return;
      }
      cap *= 2;
    }
    uint8_t *d = realloc(b->data, cap);
    if (!d) {
      b->oom = true;
      return;
    }
    b->data = d;
    b->cap = cap;
  }
  if (len)
    memcpy(b->data + b->len, p, len);
  b->len += len;
}

void wire_put_u16(struct wire_buf *b, uint16_t v)
{
  v = htobe16(v);
  wire_put_bytes(b, &v, sizeof v);
}

void wire_put_u32(struct wire_buf *b, uint32_t v)
{
  v = htobe32(v);
  wire_put_bytes(b, &v, sizeof v);
}

void wire_put_u64(struct wire_buf *b, uint64_t v)
{
  v = htobe64(v);
  wire_put_bytes(b, &v, sizeof v);
}

void wire_put_string(struct wire_buf *b, const char *s, size_t len)
{
  wire_put_u32(b, (uint32_t)len);
  wire_put_bytes(b, s, len);
}

/* ---- fixed headers ---- */

static uint16_t ld16(const uint8_t *p) { uint16_t v; memcpy(&v, p, 2); return be16toh(v); }
static uint32_t ld32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return be32toh(v); }
static uint64_t ld64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return be64toh(v); }
static void st16(uint8_t *p, uint16_t v) { v = htobe16(v); memcpy(p, &v, 2); }
static void st32(uint8_t *p, uint32_t v) { v = htobe32(v); memcpy(p, &v, 4); }
static void st64(uint8_t *p, uint64_t v) { v = htobe64(v); memcpy(p, &v, 8); }

bool wire_decode_opt_hdr(const uint8_t in[16], struct nbd_opt_hdr *h)
{
  h->option = ld32(in + 8);
  h->length = ld32(in + 12);
  return ld64(in) == NBD_OPTS_MAGIC;
}

void wire_encode_opt_hdr(uint8_t out[16], uint32_t option, uint32_t length)
{
  st64(out, NBD_OPTS_MAGIC);
  st32(out + 8, option);
  st32(out + 12, length);
}

bool wire_decode_opt_reply(const uint8_t in[20], struct nbd_opt_reply *r)
{
  r->option = ld32(in + 8);
  r->type = ld32(in + 12);
  r->length = ld32(in + 16);
  return ld64(in) == NBD_REP_MAGIC;
}

void wire_encode_opt_reply(uint8_t out[20], uint32_t option, uint32_t type,
                           uint32_t length)
{
  st64(out, NBD_REP_MAGIC);
  st32(out + 8, option);
  st32(out + 12, type);
  st32(out + 16, length);
}

bool wire_decode_request(const uint8_t in[28], struct nbd_req *r)
{
  r->flags = ld16(in + 4);
  r->type = ld16(in + 6);
  r->cookie = ld64(in + 8);
  r->offset = ld64(in + 16);
  r->count = ld32(in + 24);
  return ld32(in) == NBD_REQUEST_MAGIC;
}

void wire_encode_request(uint8_t out[28], const struct nbd_req *r)
{
  st32(out, NBD_REQUEST_MAGIC);
  st16(out + 4, r->flags);
  st16(out + 6, r->type);
  st64(out + 8, r->cookie);
  st64(out + 16, r->offset);
  st32(out + 24, r->count);
}

void wire_encode_simple_reply(uint8_t out[16], uint32_t error, uint64_t cookie)
{
  st32(out, NBD_SIMPLE_REPLY_MAGIC);
  st32(out + 4, error);
  st64(out + 8, cookie);
}

uint32_t wire_peek_magic32(const uint8_t in[4])
{
  return ld32(in);
}

void wire_decode_simple_reply(const uint8_t in[16], uint32_t *error,
                              uint64_t *cookie)
{
  *error = ld32(in + 4);
  *cookie = ld64(in + 8);
}

void wire_encode_chunk_hdr(uint8_t out[20], uint16_t flags, uint16_t type,
                           uint64_t cookie, uint32_t length)
{
  st32(out, NBD_STRUCTURED_REPLY_MAGIC);
  st16(out + 4, flags);
  st16(out + 6, type);
  st64(out + 8, cookie);
  st32(out + 16, length);
}

void wire_decode_chunk_hdr(const uint8_t in[20], struct nbd_chunk_hdr *h)
{
  h->flags = ld16(in + 4);
  h->type = ld16(in + 6);
  h->cookie = ld64(in + 8);
  h->length = ld32(in + 16);
}

void wire_encode_greeting(uint8_t out[18], uint16_t gflags)
{
  st64(out, NBD_MAGIC);
  st64(out + 8, NBD_OPTS_MAGIC);
  st16(out + 16, gflags);
}

/* ---- Transmission replies ---- */

size_t wire_encode_error_chunk(uint8_t *out, uint16_t flags, uint64_t cookie,
                               uint32_t error, const char *msg,
                               uint16_t msglen)
{
  wire_encode_chunk_hdr(out, flags, NBD_REPLY_TYPE_ERROR, cookie,
                        (uint32_t)(6 + msglen));
  st32(out + WIRE_CHUNK_HDR_LEN, error);
  st16(out + WIRE_CHUNK_HDR_LEN + 4, msglen);
  memcpy(out + WIRE_CHUNK_HDR_LEN + 6, msg, msglen);
  return WIRE_ERROR_CHUNK_LEN(msglen);
}

size_t wire_encode_offset_data_hdr(uint8_t *out, uint16_t flags,
                                   uint64_t cookie, uint64_t offset,
                                   uint32_t datalen)
{
  wire_encode_chunk_hdr(out, flags, NBD_REPLY_TYPE_OFFSET_DATA, cookie,
                        8 + datalen);
  st64(out + WIRE_CHUNK_HDR_LEN, offset);
  return WIRE_OFFSET_DATA_HDR_LEN;
}

size_t wire_encode_offset_hole(uint8_t *out, uint16_t flags, uint64_t cookie,
                               uint64_t offset, uint32_t length)
{
  wire_encode_chunk_hdr(out, flags, NBD_REPLY_TYPE_OFFSET_HOLE, cookie, 12);
  st64(out + WIRE_CHUNK_HDR_LEN, offset);
  st32(out + WIRE_CHUNK_HDR_LEN + 8, length);
  return WIRE_OFFSET_HOLE_LEN;
}

void wire_put_block_status_ctx(struct wire_buf *b, uint32_t context_id)
{
  wire_put_u32(b, context_id);
}

size_t wire_put_block_desc(struct wire_buf *b, uint64_t length,
                           uint32_t flags, size_t max)
{
  size_t n = 0;
  while (length > 0 && n < max) {
    uint32_t piece = length > WIRE_BLOCK_DESC_MAX_LEN ? WIRE_BLOCK_DESC_MAX_LEN
                                                      : (uint32_t)length;
    wire_put_u32(b, piece);
    wire_put_u32(b, flags);
    length -= piece;
    n++;
  }
  return n;
}
