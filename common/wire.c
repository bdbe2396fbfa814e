/* snbd: the wire codec (see wire.h).  Pure: no I/O. */
#include <endian.h>
#include <stddef.h>
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

/* ---- Handshake (server) ---- */

bool wire_decode_client_flags(const uint8_t in[4], uint32_t *cflags)
{
  *cflags = ld32(in);
  return (*cflags & ~(uint32_t)(NBD_FLAG_C_FIXED_NEWSTYLE |
                                NBD_FLAG_C_NO_ZEROES)) == 0;
}

size_t wire_encode_export_name_reply(
  uint8_t out[sizeof(struct nbd_export_name_reply)], uint64_t size,
  uint16_t eflags, bool no_zeroes)
{
  st64(out + offsetof(struct nbd_export_name_reply, exportsize), size);
  st16(out + offsetof(struct nbd_export_name_reply, eflags), eflags);
  if (no_zeroes)
    return offsetof(struct nbd_export_name_reply, zeroes);
  memset(out + offsetof(struct nbd_export_name_reply, zeroes), 0,
         sizeof ((struct nbd_export_name_reply *)0)->zeroes);
  return sizeof(struct nbd_export_name_reply);
}

void wire_encode_info_export(uint8_t out[sizeof(struct nbd_info_export)],
                             uint64_t size, uint16_t eflags)
{
  st16(out + offsetof(struct nbd_info_export, info), NBD_INFO_EXPORT);
  st64(out + offsetof(struct nbd_info_export, exportsize), size);
  st16(out + offsetof(struct nbd_info_export, eflags), eflags);
}

void wire_encode_info_block_size(
  uint8_t out[sizeof(struct nbd_info_block_size)], uint32_t minimum,
  uint32_t preferred, uint32_t maximum)
{
  st16(out + offsetof(struct nbd_info_block_size, info), NBD_INFO_BLOCK_SIZE);
  st32(out + offsetof(struct nbd_info_block_size, minimum), minimum);
  st32(out + offsetof(struct nbd_info_block_size, preferred), preferred);
  st32(out + offsetof(struct nbd_info_block_size, maximum), maximum);
}

void wire_put_info_text(struct wire_buf *b, uint16_t info, const char *s,
                        size_t len)
{
  wire_put_u16(b, info);
  wire_put_bytes(b, s, len);
}

void wire_put_rep_server(struct wire_buf *b, const char *name, size_t namelen,
                         const char *desc, size_t desclen)
{
  wire_put_string(b, name, namelen);
  wire_put_bytes(b, desc, desclen);
}

void wire_put_rep_meta_context(struct wire_buf *b, uint32_t id,
                               const char *name, size_t len)
{
  wire_put_u32(b, id);
  wire_put_bytes(b, name, len);
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
  st32(out + 24, (uint32_t)r->count);
}

bool wire_decode_req(const uint8_t *in, bool ext, struct nbd_req *r)
{
  if (!ext)
    return wire_decode_request(in, r);
  r->flags = ld16(in + offsetof(struct nbd_extended_request, flags));
  r->type = ld16(in + offsetof(struct nbd_extended_request, type));
  r->cookie = ld64(in + offsetof(struct nbd_extended_request, cookie));
  r->offset = ld64(in + offsetof(struct nbd_extended_request, offset));
  r->count = ld64(in + offsetof(struct nbd_extended_request, count));
  return ld32(in) == NBD_EXTENDED_REQUEST_MAGIC;
}

size_t wire_encode_req(uint8_t *out, bool ext, const struct nbd_req *r)
{
  if (!ext) {
    wire_encode_request(out, r);
    return sizeof(struct nbd_request);
  }
  st32(out, NBD_EXTENDED_REQUEST_MAGIC);
  st16(out + offsetof(struct nbd_extended_request, flags), r->flags);
  st16(out + offsetof(struct nbd_extended_request, type), r->type);
  st64(out + offsetof(struct nbd_extended_request, cookie), r->cookie);
  st64(out + offsetof(struct nbd_extended_request, offset), r->offset);
  st64(out + offsetof(struct nbd_extended_request, count), r->count);
  return sizeof(struct nbd_extended_request);
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
  h->offset = 0;
  h->length = ld32(in + 16);
}

void wire_decode_ext_chunk_hdr(const uint8_t in[32], struct nbd_chunk_hdr *h)
{
  h->flags = ld16(in + offsetof(struct nbd_extended_reply, flags));
  h->type = ld16(in + offsetof(struct nbd_extended_reply, type));
  h->cookie = ld64(in + offsetof(struct nbd_extended_reply, cookie));
  h->offset = ld64(in + offsetof(struct nbd_extended_reply, offset));
  h->length = ld64(in + offsetof(struct nbd_extended_reply, length));
}

void wire_encode_greeting(uint8_t out[18], uint16_t gflags)
{
  st64(out, NBD_MAGIC);
  st64(out + 8, NBD_OPTS_MAGIC);
  st16(out + 16, gflags);
}

/* ---- Client-side decoding ---- */

bool wire_decode_greeting(const uint8_t *in, size_t len, uint64_t *version)
{
  struct wire_cursor c = wire_cursor(in, len);
  uint64_t magic;
  wire_get_u64(&c, &magic);
  wire_get_u64(&c, version);
  return !c.bad && magic == NBD_MAGIC;
}

bool wire_decode_gflags(const uint8_t *in, size_t len, uint16_t *gflags)
{
  struct wire_cursor c = wire_cursor(in, len);
  return wire_get_u16(&c, gflags) && c.left == 0;
}

void wire_encode_client_flags(uint8_t out[4], uint32_t cflags)
{
  st32(out, cflags);
}

bool wire_decode_oldstyle_export(const uint8_t *in, size_t len,
                                 struct wire_export *e)
{
  struct wire_cursor c = wire_cursor(in, len);
  uint32_t flags;
  wire_get_u64(&c, &e->size);
  wire_get_u32(&c, &flags);
  e->eflags = (uint16_t)flags;
  return !c.bad && len == WIRE_OLDSTYLE_EXPORT;
}

bool wire_decode_export_name_reply(const uint8_t *in, size_t len,
                                   struct wire_export *e)
{
  struct wire_cursor c = wire_cursor(in, len);
  wire_get_u64(&c, &e->size);
  wire_get_u16(&c, &e->eflags);
  return !c.bad && (len == offsetof(struct nbd_export_name_reply, zeroes) ||
                    len == sizeof(struct nbd_export_name_reply));
}

bool wire_decode_rep_info(const uint8_t *in, size_t len, struct wire_info *i)
{
  struct wire_cursor c = wire_cursor(in, len);
  memset(i, 0, sizeof *i);
  if (!wire_get_u16(&c, &i->type))
    return false;
  switch (i->type) {
  case NBD_INFO_EXPORT:
    wire_get_u64(&c, &i->export.size);
    wire_get_u16(&c, &i->export.eflags);
    return len == sizeof(struct nbd_info_export);
  case NBD_INFO_BLOCK_SIZE:
    wire_get_u32(&c, &i->bs_min);
    wire_get_u32(&c, &i->bs_pref);
    wire_get_u32(&c, &i->bs_max);
    return len == sizeof(struct nbd_info_block_size);
  case NBD_INFO_NAME:
  case NBD_INFO_DESCRIPTION:
    i->str = (struct wire_bytes){ .p = c.p, .len = c.left };
    return true;
  default:
    return true;
  }
}

bool wire_decode_rep_meta_context(const uint8_t *in, size_t len,
                                  uint32_t *id, struct wire_bytes *name)
{
  struct wire_cursor c = wire_cursor(in, len);
  bool ok = wire_get_u32(&c, id);
  *name = (struct wire_bytes){ .p = c.p, .len = ok ? c.left : 0 };
  return ok;
}

bool wire_decode_rep_server(const uint8_t *in, size_t len,
                            struct wire_bytes *name, struct wire_bytes *desc)
{
  struct wire_cursor c = wire_cursor(in, len);
  const char *s;
  uint32_t n;
  *desc = (struct wire_bytes){ 0 };
  bool ok = wire_get_string(&c, &s, &n, UINT32_MAX);
  *name = (struct wire_bytes){ .p = (const uint8_t *)s, .len = n };
  if (ok)
    *desc = (struct wire_bytes){ .p = c.p, .len = c.left };
  return ok;
}

/* A header, then 1 to NBD_MAX_BLOCK_STATUS_DESCS descriptors of one size. */
static bool descs_length_ok(uint64_t length, size_t hdr, size_t one)
{
  return length >= hdr + one && (length - hdr) % one == 0 &&
         (length - hdr) / one <= NBD_MAX_BLOCK_STATUS_DESCS;
}

bool wire_chunk_length_ok(uint16_t type, uint64_t length)
{
  switch (type) {
  case NBD_REPLY_TYPE_NONE:
    return length == 0;
  case NBD_REPLY_TYPE_OFFSET_DATA:
    return length > WIRE_OFFSET_DATA_HDR && length <= UINT32_MAX;
  case NBD_REPLY_TYPE_OFFSET_HOLE:
    return length == WIRE_OFFSET_HOLE_PAYLOAD;
  case NBD_REPLY_TYPE_BLOCK_STATUS:
    return descs_length_ok(length, WIRE_BLOCK_STATUS_HDR,
                           sizeof(struct nbd_block_descriptor));
  case NBD_REPLY_TYPE_BLOCK_STATUS_EXT:
    return descs_length_ok(length, WIRE_BLOCK_STATUS_EXT_HDR,
                           sizeof(struct nbd_block_descriptor_ext));
  default:
    return NBD_REPLY_TYPE_IS_ERR(type) && length >= 6 &&
           length <= UINT32_MAX;
  }
}

bool wire_decode_offset_data(const uint8_t *in, size_t len,
                             uint32_t chunk_length,
                             struct wire_offset_chunk *o)
{
  struct wire_cursor c = wire_cursor(in, len);
  wire_get_u64(&c, &o->offset);
  o->length = chunk_length > WIRE_OFFSET_DATA_HDR
              ? chunk_length - WIRE_OFFSET_DATA_HDR : 0;
  return !c.bad && len == WIRE_OFFSET_DATA_HDR && o->length > 0;
}

bool wire_decode_offset_hole(const uint8_t *in, size_t len,
                             struct wire_offset_chunk *o)
{
  struct wire_cursor c = wire_cursor(in, len);
  wire_get_u64(&c, &o->offset);
  wire_get_u32(&c, &o->length);
  return !c.bad && c.left == 0;
}

bool wire_decode_block_status(const uint8_t *in, size_t len,
                              uint32_t chunk_length, uint32_t *ctx_id,
                              size_t *n)
{
  struct wire_cursor c = wire_cursor(in, len);
  wire_get_u32(&c, ctx_id);
  bool ok = !c.bad && c.left == 0 &&
            wire_chunk_length_ok(NBD_REPLY_TYPE_BLOCK_STATUS, chunk_length);
  *n = ok ? (chunk_length - WIRE_BLOCK_STATUS_HDR) /
            sizeof(struct nbd_block_descriptor) : 0;
  return ok;
}

bool wire_decode_block_descs(const uint8_t *in, size_t len,
                             struct wire_extent *out, size_t n)
{
  if (len / sizeof(struct nbd_block_descriptor) != n ||
      len % sizeof(struct nbd_block_descriptor) != 0)
    return false;
  struct wire_cursor c = wire_cursor(in, len);
  for (size_t i = 0; i < n; i++) {
    wire_get_u32(&c, &out[i].length);
    wire_get_u32(&c, &out[i].flags);
  }
  return !c.bad;
}

bool wire_decode_block_status_ext(const uint8_t *in, size_t len,
                                  uint64_t chunk_length, uint32_t *ctx_id,
                                  size_t *n)
{
  struct wire_cursor c = wire_cursor(in, len);
  uint32_t count;
  wire_get_u32(&c, ctx_id);
  wire_get_u32(&c, &count);
  bool ok = !c.bad && c.left == 0 &&
            wire_chunk_length_ok(NBD_REPLY_TYPE_BLOCK_STATUS_EXT,
                                 chunk_length) &&
            count == (chunk_length - WIRE_BLOCK_STATUS_EXT_HDR) /
                     sizeof(struct nbd_block_descriptor_ext);
  *n = ok ? count : 0;
  return ok;
}

bool wire_decode_block_descs_ext(const uint8_t *in, size_t len,
                                 struct wire_extent64 *out, size_t n)
{
  if (len / sizeof(struct nbd_block_descriptor_ext) != n ||
      len % sizeof(struct nbd_block_descriptor_ext) != 0)
    return false;
  struct wire_cursor c = wire_cursor(in, len);
  for (size_t i = 0; i < n; i++) {
    wire_get_u64(&c, &out[i].length);
    wire_get_u64(&c, &out[i].flags);
  }
  return !c.bad;
}

bool wire_decode_error_chunk(const uint8_t *in, size_t len,
                             struct wire_error_chunk *e)
{
  struct wire_cursor c = wire_cursor(in, len);
  uint16_t msglen;
  memset(e, 0, sizeof *e);
  wire_get_u32(&c, &e->error);
  wire_get_u16(&c, &msglen);
  e->msg.len = msglen;
  if (c.bad || msglen > c.left || msglen > NBD_MAX_STRING)
    return false;
  e->msg.p = c.p;
  e->rest = (struct wire_bytes){ .p = c.p + msglen, .len = c.left - msglen };
  return true;
}

bool wire_decode_error_offset(const struct wire_error_chunk *e,
                              uint64_t *offset)
{
  struct wire_cursor c = wire_cursor(e->rest.p, e->rest.len);
  wire_get_u64(&c, offset);
  return !c.bad && c.left == 0;
}

/* ---- Transmission replies ---- */

size_t wire_encode_chunk(uint8_t *out, const struct wire_reply_to *to,
                         uint16_t flags, uint16_t type, uint64_t length)
{
  if (!to->ext) {
    wire_encode_chunk_hdr(out, flags, type, to->cookie, (uint32_t)length);
    return WIRE_CHUNK_HDR_LEN;
  }
  st32(out, NBD_EXTENDED_REPLY_MAGIC);
  st16(out + offsetof(struct nbd_extended_reply, flags), flags);
  st16(out + offsetof(struct nbd_extended_reply, type), type);
  st64(out + offsetof(struct nbd_extended_reply, cookie), to->cookie);
  st64(out + offsetof(struct nbd_extended_reply, offset), to->offset);
  st64(out + offsetof(struct nbd_extended_reply, length), length);
  return WIRE_EXT_CHUNK_HDR_LEN;
}

size_t wire_encode_error_chunk(uint8_t *out, const struct wire_reply_to *to,
                               uint16_t flags, uint32_t error,
                               const char *msg, uint16_t msglen)
{
  size_t h = wire_encode_chunk(out, to, flags, NBD_REPLY_TYPE_ERROR,
                               (uint32_t)(6 + msglen));
  st32(out + h, error);
  st16(out + h + 4, msglen);
  memcpy(out + h + 6, msg, msglen);
  return wire_error_chunk_len(to->ext, msglen);
}

size_t wire_encode_offset_data_hdr(uint8_t *out,
                                   const struct wire_reply_to *to,
                                   uint16_t flags, uint64_t offset,
                                   uint32_t datalen)
{
  size_t h = wire_encode_chunk(out, to, flags, NBD_REPLY_TYPE_OFFSET_DATA,
                               (uint64_t)WIRE_OFFSET_DATA_HDR + datalen);
  st64(out + h, offset);
  return wire_offset_data_hdr_len(to->ext);
}

size_t wire_encode_offset_hole(uint8_t *out, const struct wire_reply_to *to,
                               uint16_t flags, uint64_t offset,
                               uint32_t length)
{
  size_t h = wire_encode_chunk(out, to, flags, NBD_REPLY_TYPE_OFFSET_HOLE,
                               WIRE_OFFSET_HOLE_PAYLOAD);
  st64(out + h, offset);
  st32(out + h + 8, length);
  return wire_offset_hole_len(to->ext);
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

void wire_put_block_status_ext_hdr(struct wire_buf *b, uint32_t context_id,
                                   uint32_t ndesc)
{
  wire_put_u32(b, context_id);
  wire_put_u32(b, ndesc);
}

void wire_put_block_desc_ext(struct wire_buf *b, uint64_t length,
                             uint64_t status)
{
  wire_put_u64(b, length);
  wire_put_u64(b, status);
}

bool wire_decode_bs_payload(const uint8_t *in, size_t len, uint64_t *effect,
                            size_t *nids)
{
  struct wire_cursor c = wire_cursor(in, len);
  wire_get_u64(&c, effect);
  *nids = c.bad ? 0 : c.left / 4;
  return !c.bad && c.left > 0 && c.left % 4 == 0;
}

uint32_t wire_bs_payload_id(const uint8_t *in, size_t i)
{
  return ld32(in + WIRE_BS_PAYLOAD_HDR + 4 * i);
}

void wire_put_bs_payload(struct wire_buf *b, uint64_t effect,
                         const uint32_t *ids, size_t n)
{
  wire_put_u64(b, effect);
  for (size_t i = 0; i < n; i++)
    wire_put_u32(b, ids[i]);
}
